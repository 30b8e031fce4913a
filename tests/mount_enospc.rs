//! A full disk under a real mount: the store on a small tmpfs, filled. A
//! writer's `write`, `fsync` and `close` fail with ENOSPC (not EIO), files
//! committed before stay intact, and once space is freed writes work again;
//! `globofs put` says "No space left on device" and names what it was putting.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};

use mount::{Mounted, cvt, errno};

/// A tmpfs mounted over a directory, lazily unmounted on drop (the mount
/// above may still hold it while a failing test unwinds).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: not root (the test mounts a tmpfs)");
            return None;
        }
        fs::create_dir_all(dir).expect("tmpfs mount point");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", dir.display());
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Fills the filesystem at `dir` with a file of its own; returns it.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = fs::File::create(&filler).expect("filler");
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "filling: {err}");
                break;
            }
        }
    }
    // The last pages too: byte by byte up to the end.
    while file.write(&[0x5a]).is_ok_and(|n| n == 1) {}
    filler
}

/// `close(2)` of `file`'s descriptor, returning what close returned.
fn close(file: fs::File) -> std::io::Result<libc::c_int> {
    let fd = file.into_raw_fd();
    // SAFETY: closing a descriptor we own and never use again.
    cvt(unsafe { libc::close(fd) })
}

#[test]
fn a_full_store_fails_write_fsync_and_close_with_enospc_and_recovers() {
    let mut mounted = Mounted::new();
    mounted.stop();
    let Some(_tmpfs) = Tmpfs::mount(&mounted.volume, "16m") else {
        return;
    };
    mounted.start();
    let old = mounted.path("old.txt");
    fs::write(&old, b"committed before the disk filled").expect("write old");
    let before = fs::read(&old).expect("read old");

    let filler = fill(&mounted.volume);

    // A new file: its data may fit the write cache's pages, but the commit
    // cannot store its blocks. Whichever call meets the full disk says ENOSPC.
    let new = mounted.path("new.bin");
    let mut file = fs::File::create(&new).expect("create on a full disk");
    let data = vec![0xa5u8; 256 << 10];
    let mut failed = None;
    for _ in 0..8 {
        if let Err(err) = file.write_all(&data) {
            failed = Some(("write", err));
            break;
        }
    }
    let failed = failed.or_else(|| file.sync_all().err().map(|err| ("fsync", err)));
    let (call, err) = failed.expect("write or fsync fails on a full store");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "{call} on a full store: {err}"
    );
    // close commits too: ENOSPC again, not EIO.
    assert_eq!(errno(close(file)), libc::ENOSPC, "close on a full store");

    // fsync of a file that fit in the cache (a small write) fails at commit.
    let mut small = fs::File::create(mounted.path("small.txt")).expect("create small");
    let small_write = small.write_all(b"a few bytes");
    if let Err(err) = &small_write {
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "small write: {err}");
    }
    assert_eq!(
        errno(small.sync_all()),
        libc::ENOSPC,
        "fsync of a small file"
    );
    assert_eq!(errno(close(small)), libc::ENOSPC, "close of a small file");

    // An O_APPEND writer of the old file: write or its fsync says ENOSPC.
    let mut append = fs::OpenOptions::new()
        .append(true)
        .open(&old)
        .expect("open old for append");
    let result = append
        .write_all(&data)
        .map(|_| "write")
        .and_then(|_| append.sync_all().map(|_| "fsync"));
    let err = result.expect_err("appending on a full store fails");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "append: {err}");
    let _ = close(append);

    // `globofs put` on the full store: the message says so and names the path.
    let local = mounted.dir.path().join("local.bin");
    fs::write(&local, vec![7u8; 64 << 10]).expect("local file");
    let out = mounted.globofs(&["put", local.to_str().expect("UTF-8"), "/put.bin"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "put on a full store must fail");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("put.bin"),
        "put's message says the disk is full and names the path: {stderr}"
    );

    // What was committed before is intact.
    assert_eq!(fs::read(&old).expect("read old"), before);

    // Space again: writes work and commit.
    fs::remove_file(&filler).expect("free space");
    let again = mounted.path("again.bin");
    fs::write(&again, &data).expect("write after freeing space");
    let reopened = fs::File::open(&again).expect("open");
    reopened.sync_all().expect("fsync after freeing space");
    assert_eq!(fs::read(&again).expect("read back"), data);
    assert_eq!(fs::read(&old).expect("read old"), before);
    let out = mounted.globofs(&["put", local.to_str().expect("UTF-8"), "/put.bin"]);
    assert!(
        out.status.success(),
        "put after freeing space: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(mounted);
}
