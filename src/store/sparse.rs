//! Holes: blocks of zero bytes. Such a block keeps its ordinary name (the
//! SHA-256 of `len` zero bytes), but its file under `hashes/` is written
//! sparse (a temp file given its length, no data), so every hole of one
//! length in the store costs one inode and no data blocks, and any reader
//! reads zeros from it (docs/FORMAT.md section 4, "Zero blocks"). This
//! module owns telling zero data apart cheaply and the table of zero hashes
//! per block length.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::ids::BlockHash;

/// Lengths kept in the table at most (a store has one block size and a few
/// tail lengths in use at a time; past this the table starts over).
const TABLE_LIMIT: usize = 256;

/// Whether every byte of `data` is zero (word at a time).
pub fn is_zero(data: &[u8]) -> bool {
    let words = data.chunks_exact(16);
    let tail = words.remainder();
    tail.iter().all(|b| *b == 0)
        && words
            .map(|w| {
                let mut word = [0u8; 16];
                word.copy_from_slice(w);
                u128::from_ne_bytes(word)
            })
            .all(|w| w == 0)
}

/// The hash of `len` zero bytes, from a small table filled on first use.
pub fn zero_hash(len: usize) -> BlockHash {
    static TABLE: OnceLock<Mutex<HashMap<usize, BlockHash>>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    if let Some(hash) = crate::lock(table).get(&len) {
        return *hash;
    }
    // Hashed outside the lock, in pieces: no buffer of `len` bytes.
    let hash = hash_of_zeros(len);
    let mut table = crate::lock(table);
    if table.len() >= TABLE_LIMIT {
        table.clear();
    }
    table.insert(len, hash);
    hash
}

/// Whether `hash` names the block of `len` zero bytes (a hole).
pub fn is_zero_block(hash: &BlockHash, len: usize) -> bool {
    len > 0 && *hash == zero_hash(len)
}

/// Zero bytes a rung of [`hash_of_zeros`]'s ladder stands for.
const RUNG: usize = 4096;

/// Rungs the ladder holds at most (64 MiB, the largest block size); longer
/// runs of zeros are hashed from the top rung on.
const RUNGS: usize = 64 * 1024 * 1024 / RUNG;

/// The SHA-256 of `len` zero bytes, from a ladder of hasher states after
/// 0, 4 KiB, 8 KiB, ... of zeros (built once, up to the longest asked for),
/// so a length costs at most 4 KiB of hashing: every file's tail block has
/// its own length, and `stat` of a file asks whether its tail is a hole.
fn hash_of_zeros(len: usize) -> BlockHash {
    use sha2::Digest;
    static LADDER: OnceLock<Mutex<Vec<sha2::Sha256>>> = OnceLock::new();
    const ZEROS: [u8; RUNG] = [0u8; RUNG];
    let rung = (len / RUNG).min(RUNGS);
    let mut hasher = {
        let mut ladder = crate::lock(LADDER.get_or_init(Default::default));
        if ladder.is_empty() {
            ladder.push(sha2::Sha256::new());
        }
        while ladder.len() <= rung {
            let mut next = ladder[ladder.len() - 1].clone();
            next.update(ZEROS);
            ladder.push(next);
        }
        ladder[rung].clone()
    };
    let mut left = len - rung * RUNG;
    while left > 0 {
        let n = left.min(RUNG);
        hasher.update(&ZEROS[..n]);
        left -= n;
    }
    BlockHash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_hashes_match_hashing_zero_bytes() {
        for len in [
            1usize,
            15,
            16,
            17,
            4095,
            4096,
            4097,
            100_000,
            128 * 1024,
            1 << 20,
        ] {
            let zeros = vec![0u8; len];
            assert_eq!(zero_hash(len), BlockHash::of(&zeros), "len {len}");
            // Asked again: from the table, the same.
            assert_eq!(zero_hash(len), BlockHash::of(&zeros), "len {len}");
            assert!(is_zero_block(&BlockHash::of(&zeros), len));
            assert!(!is_zero_block(&BlockHash::of(&zeros), len + 1));
        }
    }

    #[test]
    fn one_non_zero_byte_anywhere_is_data() {
        assert!(is_zero(&[]));
        for len in [1usize, 15, 16, 17, 33, 4096] {
            let mut data = vec![0u8; len];
            assert!(is_zero(&data), "len {len}");
            for at in [0, len / 2, len - 1] {
                data[at] = 1;
                assert!(!is_zero(&data), "len {len}, byte {at}");
                data[at] = 0;
            }
        }
    }

    #[test]
    fn the_table_starts_over_when_full_and_stays_right() {
        for len in 1..=(TABLE_LIMIT + 10) {
            let _ = zero_hash(len);
        }
        assert_eq!(zero_hash(3), BlockHash::of(&[0, 0, 0]));
    }
}
