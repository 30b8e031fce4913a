//! Incremental SHA-256 of the blocks in a write cache: for a block whose
//! bytes sit in the cache file, the hash states after every [`STEP`] bytes
//! of it (its "rungs"), kept from one commit to the next. A commit hashes a
//! block from the highest rung still valid, so an append (a database's
//! journal or WAL growing at fsync after fsync) rehashes only the new bytes
//! and an edit in the middle only what follows it, not the whole block.
//!
//! The write cache owns the rule that keeps rungs true: every change of a
//! block's bytes in the cache file calls [`Ladders::changed`] with the
//! first offset changed, before the next hash.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::ids::BlockHash;

/// Bytes between two rungs.
pub(super) const STEP: usize = 16 * 1024;

/// Blocks whose rungs are kept at most (a file written whole and closed
/// does not keep them for all its blocks).
const MAX_BLOCKS: usize = 64;

/// The rungs of each block, by index.
#[derive(Default)]
pub(super) struct Ladders {
    by_block: HashMap<u64, Vec<Sha256>>,
}

impl Ladders {
    /// The bytes of block `index` changed from offset `from` (in the block)
    /// on: the rungs past it no longer hold.
    pub(super) fn changed(&mut self, index: u64, from: usize) {
        if let Some(rungs) = self.by_block.get_mut(&index) {
            rungs.truncate(from / STEP);
            if rungs.is_empty() {
                self.by_block.remove(&index);
            }
        }
    }

    /// Forgets block `index` (its bytes are no longer in the cache file).
    pub(super) fn forget(&mut self, index: u64) {
        self.by_block.remove(&index);
    }

    /// Forgets blocks at or past `count`.
    pub(super) fn keep_below(&mut self, count: u64) {
        self.by_block.retain(|index, _| *index < count);
    }

    /// The hash of block `index`, whose bytes are now `data`, from its
    /// highest valid rung; the rungs then cover `data`.
    pub(super) fn hash(&mut self, index: u64, data: &[u8]) -> BlockHash {
        if !self.by_block.contains_key(&index) && self.by_block.len() >= MAX_BLOCKS {
            self.by_block.clear();
        }
        let rungs = self.by_block.entry(index).or_default();
        let whole = data.len() / STEP;
        rungs.truncate(whole);
        let mut state = rungs.last().cloned().unwrap_or_default();
        for rung in rungs.len()..whole {
            state.update(&data[rung * STEP..(rung + 1) * STEP]);
            rungs.push(state.clone());
        }
        state.update(&data[whole * STEP..]);
        BlockHash(state.finalize().into())
    }

    #[cfg(test)]
    pub(super) fn rungs(&self, index: u64) -> usize {
        self.by_block.get(&index).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_from_the_rungs_equal_a_whole_hash_after_appends_and_edits() {
        let mut ladders = Ladders::default();
        let mut data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 253) as u8).collect();
        assert_eq!(ladders.hash(0, &data), BlockHash::of(&data));
        assert_eq!(ladders.rungs(0), 100_000 / STEP);
        // An append keeps every rung.
        data.extend_from_slice(&[9; 5000]);
        assert_eq!(ladders.hash(0, &data), BlockHash::of(&data));
        // An edit in the middle: rungs past it go, the hash is still whole.
        data[40_000] ^= 0xff;
        ladders.changed(0, 40_000);
        assert_eq!(ladders.rungs(0), 40_000 / STEP);
        assert_eq!(ladders.hash(0, &data), BlockHash::of(&data));
        // A cut below a rung.
        data.truncate(20_000);
        assert_eq!(ladders.hash(0, &data), BlockHash::of(&data));
        assert_eq!(ladders.rungs(0), 1);
        // Without the call to `changed`, an edit would be missed: the rule
        // the write cache keeps is what makes the hash true.
        data[100] ^= 1;
        assert_ne!(ladders.hash(0, &data), BlockHash::of(&data));
        ladders.changed(0, 100);
        assert_eq!(ladders.hash(0, &data), BlockHash::of(&data));
    }
}
