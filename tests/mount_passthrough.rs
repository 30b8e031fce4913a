//! FUSE passthrough over a real mount: a file that fits in one block is read by
//! the kernel straight from its block file, and the block is never written,
//! whatever other handles of the same file do meanwhile (writers, changes from
//! another process, writable private mappings).
//!
//! The kernel gives all open handles of an inode the one backing file attached
//! by the first; these tests open files in the orders that make that matter.

#[path = "common/mount.rs"]
mod mount;

use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use mount::{BLOCK, Mounted, Rng, cvt, store_get};

/// Whether the mount says the kernel took passthrough.
fn passthrough_on(m: &Mounted) -> bool {
    let log = m.log();
    if log.contains("FUSE passthrough: on") {
        return true;
    }
    assert!(
        log.contains("FUSE passthrough: unavailable"),
        "the mount log says nothing about passthrough:\n{log}"
    );
    false
}

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

/// What a handle opened before a change reads after it. With passthrough it
/// reads the block it opened, always; served through the kernel's page cache
/// (one per inode, as on NFS) it may read the newer committed version, never a
/// mix of the two.
fn assert_open_reader_reads(file: &std::fs::File, passthrough: bool, opened: &[u8], newer: &[u8]) {
    let got = read_at(file, BLOCK);
    if passthrough {
        assert!(
            got == opened,
            "an open reader's bytes changed under passthrough"
        );
    } else {
        assert!(
            got == opened || got == newer,
            "an open reader read a mix of versions"
        );
    }
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

#[test]
fn a_one_block_file_is_read_without_the_mount_process() {
    let m = Mounted::new();
    if !passthrough_on(&m) {
        eprintln!("skipped: the kernel refused FUSE passthrough here");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dropping the page cache needs root");
        return;
    }
    let data = Rng::new(7).bytes(BLOCK - 100);
    std::fs::write(m.path("f"), &data).unwrap();
    let file = std::fs::File::open(m.path("f")).unwrap();
    // Nothing of the file may be in any page cache: a read that the kernel
    // served in FUSE's cached mode would have to ask the (stopped) mount.
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let pid = nix::unistd::Pid::from_raw(m.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let got = read_at(&file, BLOCK);
        let _ = tx.send(());
        got
    });
    let done = rx.recv_timeout(Duration::from_secs(5));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let got = reader.join().unwrap();
    assert!(
        done.is_ok(),
        "the read waited for the stopped mount process: it was not passthrough"
    );
    assert!(got == data, "passthrough read the wrong bytes");
}

#[test]
fn a_writer_while_readers_hold_the_block_never_writes_the_block() {
    let m = Mounted::new();
    let on = passthrough_on(&m);
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
    // Nothing is committed before the close: readers see the old bytes.
    assert!(read_at(&reader, BLOCK) == old);
    assert!(read_all(&m.path("f")) == old);
    drop(writer);
    let mut second = old.clone();
    second[10..13].copy_from_slice(b"NEW");
    // A new open while the old reader is still open sees the committed version.
    let again = std::fs::File::open(m.path("f")).unwrap();
    assert!(read_at(&again, BLOCK) == second);
    assert_open_reader_reads(&reader, on, &old, &second);

    // A truncating writer while both readers are open.
    std::fs::write(m.path("f"), b"third").unwrap();
    assert!(read_all(&m.path("f")) == b"third");
    assert_open_reader_reads(&reader, on, &old, b"third");
    assert_open_reader_reads(&again, on, &second, b"third");
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
    let on = passthrough_on(&m);
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
    assert_open_reader_reads(&reader, on, b"0123456789", b"01ab456789");
    assert_eq!(read_all(&m.path("f")), b"01ab456789");
    drop(reader);
    assert_verify_clean(&m);
}

#[test]
fn a_change_from_another_process_reaches_new_opens_while_a_reader_holds_the_old_block() {
    let m = Mounted::new();
    let on = passthrough_on(&m);
    std::fs::write(m.path("f"), b"from the mount").unwrap();
    let reader = std::fs::File::open(m.path("f")).unwrap();
    assert_eq!(read_at(&reader, 64), b"from the mount");
    let src = m.dir.path().join("src");
    std::fs::write(&src, b"from globofs put").unwrap();
    let out = m.globofs(&["put", src.to_str().unwrap(), "/f"]);
    assert!(out.status.success(), "put: {out:?}");
    wait_for(&m.path("f"), b"from globofs put");
    assert_open_reader_reads(&reader, on, b"from the mount", b"from globofs put");
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
    use std::os::fd::AsRawFd;
    let len = data.len();
    // SAFETY: a fresh private mapping of `len` bytes of an open file, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
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
    let mapped = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
    assert!(mapped == data.as_slice(), "the mapping reads other bytes");
    mapped[..4].copy_from_slice(b"XXXX");
    // SAFETY: unmapping what was mapped above.
    cvt(unsafe { libc::munmap(addr, len) }).unwrap();
    drop(file);
    assert!(
        read_all(&m.path("f")) == data,
        "a private mapping's write reached the file"
    );
    assert_verify_clean(&m);
}
