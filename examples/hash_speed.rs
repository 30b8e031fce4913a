//! SHA-256 throughput the way the store hashes blocks (`BlockHash::of` on each
//! whole block, one core), for `scripts/bench-store.sh`. Prints MB/s (10^6 bytes).
//!
//! Usage: `hash_speed [TOTAL_BYTES] [BLOCK_BYTES]` (default 1 GiB in 1 MiB blocks).

use std::time::Instant;

use globofs::ids::BlockHash;

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1 << 30);
    let block: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1 << 20);
    // Non-constant content, made once and kept in memory.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let buf: Vec<u8> = (0..block)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let blocks = total.div_ceil(block);
    let start = Instant::now();
    let mut fold = 0u8;
    for _ in 0..blocks {
        fold ^= BlockHash::of(&buf).0[0];
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (blocks * block) as f64;
    println!(
        "{:.1} MB/s ({blocks} blocks of {block} bytes in {secs:.3} s; {fold:02x})",
        bytes / secs / 1e6
    );
}
