//! read over a real mount: whole files of the sizes around block boundaries,
//! reads at offsets and past the end, a directory, reading an unlinked file
//! through a handle opened before the unlink, and a second mount of the node
//! reading files rewritten in the first (close-to-open between mounts).

#[path = "common/mount.rs"]
mod mount;

use std::io::Read;
use std::os::unix::fs::FileExt;

use mount::{BLOCK, Mounted, Rng, errno};

const SIZES: [usize; 6] = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 10 * BLOCK + 7];

#[test]
fn files_read_back_byte_exact_at_every_size() {
    let m = Mounted::new();
    let mut rng = Rng::new(42);
    for size in SIZES {
        let data = rng.bytes(size);
        let name = format!("f{size}");
        std::fs::write(m.path(&name), &data).unwrap();
        assert_eq!(std::fs::read(m.path(&name)).unwrap(), data, "size {size}");
        assert_eq!(std::fs::metadata(m.path(&name)).unwrap().len(), size as u64);
    }
}

#[test]
fn reads_at_offsets_across_blocks_and_past_the_end() {
    let m = Mounted::new();
    let data = Rng::new(3).bytes(10 * BLOCK + 7);
    std::fs::write(m.path("f"), &data).unwrap();
    let f = std::fs::File::open(m.path("f")).unwrap();
    let mut rng = Rng::new(4);
    for _ in 0..50 {
        let offset = rng.below(data.len() as u64) as usize;
        let len = 1 + rng.below(3 * BLOCK as u64) as usize;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, offset as u64).unwrap();
        let end = (offset + len).min(data.len());
        assert_eq!(&buf[..n], &data[offset..end], "offset {offset} len {len}");
        assert!(n > 0);
    }
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, data.len() as u64).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, data.len() as u64 + 5000).unwrap(), 0);
}

#[test]
fn a_sequential_reader_in_small_chunks_gets_everything() {
    let m = Mounted::new();
    let data = Rng::new(5).bytes(5 * BLOCK + 3);
    std::fs::write(m.path("f"), &data).unwrap();
    let mut f = std::fs::File::open(m.path("f")).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1000];
    loop {
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, data);
}

#[test]
fn reading_a_directory_is_eisdir_and_a_missing_file_enoent() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    assert_eq!(errno(std::fs::read(m.path("d"))), libc::EISDIR);
    assert_eq!(errno(std::fs::read(m.path("missing"))), libc::ENOENT);
}

#[test]
fn an_unlinked_file_reads_through_a_handle_opened_before() {
    let m = Mounted::new();
    let data = Rng::new(6).bytes(3 * BLOCK + 9);
    std::fs::write(m.path("f"), &data).unwrap();
    let f = std::fs::File::open(m.path("f")).unwrap();
    std::fs::remove_file(m.path("f")).unwrap();
    assert_eq!(errno(std::fs::metadata(m.path("f"))), libc::ENOENT);
    let mut got = vec![0u8; data.len()];
    f.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, data);
}

#[test]
fn a_second_mount_reads_a_file_rewritten_in_the_first_whole_at_once() {
    // Mount B looks at a file (so its kernel holds the size), mount A rewrites
    // it with another size and closes it; an open in B after that close must
    // read the new bytes, all of them, though B's kernel cached the old size
    // for up to a second.
    let a = Mounted::new();
    let b = a.second_mount();
    let mut rng = Rng::new(3);
    let sizes = [1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 16 * BLOCK];
    for i in 0..60 {
        let name = format!("f{}", i % 5);
        let _ = std::fs::read(b.path(&name));
        let size = sizes[rng.below(sizes.len() as u64) as usize];
        let data = rng.bytes(size);
        std::fs::write(a.path(&name), &data).unwrap();
        let got = std::fs::read(b.path(&name)).unwrap();
        assert!(
            got == data,
            "iteration {i}: wrote {} bytes in A, B read {} bytes",
            data.len(),
            got.len()
        );
    }
}

/// The one block file under the store's `hashes/` (a store holding one block).
fn only_block(m: &Mounted) -> std::path::PathBuf {
    let mut stack = vec![mount::node_dir(m).join("hashes")];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                found.push(item.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// A block damaged on disk in place (same length) is never handed out by
/// the mount: every read is checked against the block's hash by default
/// (EIO, the log names the hash); with `verify_reads: false` the mount
/// trusts a block of the right length, as documented.
#[test]
fn a_block_damaged_on_disk_reads_as_eio_not_as_wrong_bytes() {
    for (extra, checked) in [("", true), ("verify_reads: false\n", false)] {
        let mut m = Mounted::with("64KiB", extra);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(m.path("f"), &data).unwrap();
        m.stop();
        let block = only_block(&m);
        let mut bytes = std::fs::read(&block).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&block, &bytes).unwrap();
        m.start();
        let read = std::fs::read(m.path("f"));
        if checked {
            let err = read.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
            let hash: String = block
                .strip_prefix(mount::node_dir(&m).join("hashes"))
                .unwrap()
                .to_string_lossy()
                .replace('/', "");
            assert!(m.log().contains(&hash), "log names no {hash}:\n{}", m.log());
        } else {
            let got = read.unwrap();
            assert_ne!(got, data);
            assert_eq!(got.len(), data.len());
        }
    }
}
