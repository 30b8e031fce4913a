//! FUSE passthrough and the files it must never touch, over a real mount: the
//! kernel writes a new or truncated file straight into its private cache file,
//! and gives every later open of that inode the same backing file. Store blocks
//! are shared by every file with the same bytes, so whatever other handles do
//! meanwhile (readers, writers, changes from another process, private and
//! shared writable mappings), no block may change.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use mount::{BLOCK, Mounted, Rng, cvt, store_get};

fn read_all(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn read_at(file: &std::fs::File, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len + 16];
    let mut done = 0;
    loop {
        let n = file.read_at(&mut buf[done..], done as u64).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

/// What a handle opened before a change reads after it: the version it opened,
/// or, as pages of the kernel's page cache are shared by all handles of a file
/// (as on NFS), the newer committed one; never bytes of neither.
fn assert_open_reader_reads(file: &std::fs::File, opened: &[u8], newer: &[u8]) {
    let got = read_at(file, BLOCK);
    assert!(
        got == opened || got == newer,
        "an open reader read bytes of neither version"
    );
}

/// `globofs verify` finds every block intact.
fn assert_verify_clean(m: &Mounted) {
    let out = m.globofs(&["verify"]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until a fresh open of `path` reads `want`.
fn wait_for(path: &std::path::Path, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while read_all(path) != want {
        assert!(
            Instant::now() < deadline,
            "{} never showed the new content",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Maps `len` bytes of `file` writable (`libc::MAP_SHARED` or
/// `libc::MAP_PRIVATE`), runs `f` on them, flushes and unmaps.
fn with_mapping(file: &std::fs::File, len: usize, sharing: libc::c_int, f: impl FnOnce(&mut [u8])) {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh mapping of `len` bytes of an open file, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            sharing,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is `len` bytes long and only this thread uses it.
    f(unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) });
    // SAFETY: flushing and unmapping what was mapped above.
    cvt(unsafe { libc::msync(addr, len, libc::MS_SYNC) }).unwrap();
    cvt(unsafe { libc::munmap(addr, len) }).unwrap();
}

#[test]
fn a_shared_writable_mapping_while_a_reader_is_open_changes_only_its_own_file() {
    let m = Mounted::new();
    // Two files with the same bytes share one stored block.
    let data = Rng::new(11).bytes(BLOCK - 10);
    std::fs::write(m.path("a"), &data).unwrap();
    std::fs::write(m.path("twin"), &data).unwrap();
    let reader = std::fs::File::open(m.path("a")).unwrap();
    assert!(read_at(&reader, BLOCK) == data);
    let writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("a"))
        .unwrap();
    with_mapping(&writer, data.len(), libc::MAP_SHARED, |bytes| {
        assert!(bytes == data.as_slice(), "the mapping reads other bytes");
        bytes[..4].copy_from_slice(b"XXXX");
    });
    drop(writer);
    drop(reader);
    let mut changed = data.clone();
    changed[..4].copy_from_slice(b"XXXX");
    assert!(
        read_all(&m.path("a")) == changed,
        "the mapped write was lost"
    );
    assert!(
        read_all(&m.path("twin")) == data,
        "a write through a mapping of one file changed its twin"
    );
    assert!(store_get(&m, "/twin") == data);
    assert_verify_clean(&m);
}

#[test]
fn a_writer_while_readers_hold_the_block_never_writes_the_block() {
    let m = Mounted::new();
    let old = Rng::new(1).bytes(3000);
    std::fs::write(m.path("f"), &old).unwrap();
    let reader = std::fs::File::open(m.path("f")).unwrap();
    assert!(read_at(&reader, BLOCK) == old);

    // A writer on the same inode, not truncating: its writes go to its own cache.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    writer.write_all_at(b"NEW", 10).unwrap();
    let mut second = old.clone();
    second[10..13].copy_from_slice(b"NEW");
    // On one mount every handle sees the writer's bytes at once, as on a
    // local disk. (Whether the store has them yet is not asked here: starting
    // `globofs get` forks, and the child's close-on-exec of the writer's
    // descriptor is a close, which commits.)
    assert!(read_at(&reader, BLOCK) == second);
    assert!(read_all(&m.path("f")) == second);
    drop(writer);
    assert!(store_get(&m, "/f") == second);
    // A new open while the old reader is still open sees the committed version.
    let again = std::fs::File::open(m.path("f")).unwrap();
    assert!(read_at(&again, BLOCK) == second);
    assert_open_reader_reads(&reader, &old, &second);

    // A truncating writer while both readers are open.
    std::fs::write(m.path("f"), b"third").unwrap();
    assert!(read_all(&m.path("f")) == b"third");
    assert_open_reader_reads(&reader, &old, b"third");
    assert_open_reader_reads(&again, &second, b"third");
    drop(reader);
    drop(again);
    assert!(read_all(&m.path("f")) == b"third");
    assert_eq!(store_get(&m, "/f"), b"third");
    // Every block still matches its hash: nothing wrote into a stored block.
    assert_verify_clean(&m);
}

#[test]
fn a_read_write_handle_opened_after_a_reader_reads_and_writes_correctly() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"0123456789").unwrap();
    let reader = std::fs::File::open(m.path("f")).unwrap();
    let mut rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    rw.write_all_at(b"ab", 2).unwrap();
    // The writer sees its own writes.
    let mut seen = Vec::new();
    rw.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"01ab456789");
    rw.flush().unwrap();
    drop(rw);
    assert_open_reader_reads(&reader, b"0123456789", b"01ab456789");
    assert_eq!(read_all(&m.path("f")), b"01ab456789");
    drop(reader);
    assert_verify_clean(&m);
}

#[test]
fn a_change_from_another_process_reaches_new_opens_while_a_reader_holds_the_old_block() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"from the mount").unwrap();
    let reader = std::fs::File::open(m.path("f")).unwrap();
    assert_eq!(read_at(&reader, 64), b"from the mount");
    let src = m.dir.path().join("src");
    std::fs::write(&src, b"from globofs put").unwrap();
    let out = m.globofs(&["put", src.to_str().unwrap(), "/f"]);
    assert!(out.status.success(), "put: {out:?}");
    wait_for(&m.path("f"), b"from globofs put");
    assert_open_reader_reads(&reader, b"from the mount", b"from globofs put");
    drop(reader);
    assert_eq!(read_all(&m.path("f")), b"from globofs put");
    assert_verify_clean(&m);
}

#[test]
fn a_writable_private_mapping_of_a_one_block_file_leaves_the_file_alone() {
    let m = Mounted::new();
    let data = Rng::new(3).bytes(BLOCK / 2);
    std::fs::write(m.path("f"), &data).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(m.path("f"))
        .unwrap();
    with_mapping(&file, data.len(), libc::MAP_PRIVATE, |bytes| {
        assert!(bytes == data.as_slice(), "the mapping reads other bytes");
        bytes[..4].copy_from_slice(b"XXXX");
    });
    drop(file);
    assert!(
        read_all(&m.path("f")) == data,
        "a private mapping's write reached the file"
    );
    assert_verify_clean(&m);
}
