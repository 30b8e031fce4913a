//! mkdir and rmdir over a real mount, with their errors (EEXIST, ENOENT,
//! ENOTDIR, ENOTEMPTY, ENAMETOOLONG).

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use mount::{Mounted, errno, names};

#[test]
fn mkdir_creates_nested_directories_with_their_mode() {
    let m = Mounted::new();
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(m.path("a"))
        .unwrap();
    std::fs::create_dir(m.path("a/b")).unwrap();
    std::fs::create_dir_all(m.path("a/b/c/d")).unwrap();
    assert!(std::fs::metadata(m.path("a/b/c/d")).unwrap().is_dir());
    let mode = std::fs::metadata(m.path("a")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o750);
    assert_eq!(names(&m.path("a")), vec!["b"]);
    std::fs::write(m.path("a/b/c/d/f"), b"deep").unwrap();
    assert_eq!(std::fs::read(m.path("a/b/c/d/f")).unwrap(), b"deep");
}

#[test]
fn mkdir_errors() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(errno(std::fs::create_dir(m.path("d"))), libc::EEXIST);
    assert_eq!(errno(std::fs::create_dir(m.path("f"))), libc::EEXIST);
    assert_eq!(errno(std::fs::create_dir(m.path("no/d"))), libc::ENOENT);
    assert_eq!(errno(std::fs::create_dir(m.path("f/d"))), libc::ENOTDIR);
    assert_eq!(
        errno(std::fs::create_dir(m.path(&"d".repeat(256)))),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(std::fs::create_dir(&m.mnt)), libc::EEXIST);
}

#[test]
fn rmdir_removes_an_empty_directory() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::remove_dir(m.path("d")).unwrap();
    assert_eq!(errno(std::fs::metadata(m.path("d"))), libc::ENOENT);
    assert!(names(&m.mnt).is_empty());
    // The name can be used again, also for a file.
    std::fs::write(m.path("d"), b"now a file").unwrap();
    assert_eq!(std::fs::read(m.path("d")).unwrap(), b"now a file");
}

#[test]
fn rmdir_errors() {
    let m = Mounted::new();
    std::fs::create_dir_all(m.path("full/child")).unwrap();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(errno(std::fs::remove_dir(m.path("full"))), libc::ENOTEMPTY);
    assert_eq!(errno(std::fs::remove_dir(m.path("f"))), libc::ENOTDIR);
    assert_eq!(errno(std::fs::remove_dir(m.path("missing"))), libc::ENOENT);
    assert_eq!(errno(std::fs::remove_dir(m.path("f/x"))), libc::ENOTDIR);
    // A directory holding only a file still open for writing is not empty.
    std::fs::create_dir(m.path("pending")).unwrap();
    let _open = std::fs::File::create(m.path("pending/f")).unwrap();
    std::fs::remove_dir_all(m.path("full")).unwrap();
    assert_eq!(names(&m.mnt), vec!["f", "pending"]);
}

/// A directory made through the mount and then used as a mount point stays
/// one: the journal follower must not invalidate the kernel's entry for a
/// change this mount made itself (that would detach the mount on it), and
/// rmdir of the mount point is EBUSY (pjdfstest rmdir::ebusy, which was flaky).
#[test]
fn a_mount_on_a_directory_made_here_survives_the_journal_follower() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("from")).unwrap();
    std::fs::write(m.path("from/inside"), b"bound").unwrap();
    std::fs::create_dir(m.path("onto")).unwrap();
    let status = std::process::Command::new("mount")
        .arg("--bind")
        .arg(m.path("from"))
        .arg(m.path("onto"))
        .status()
        .expect("run mount --bind");
    assert!(status.success());
    // The follower reads the journal every 0.5 s: give it several rounds.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let still_mounted = mount::is_mounted(&m.path("onto"));
    let rmdir = std::fs::remove_dir(m.path("onto"));
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(m.path("onto"))
        .status();
    assert!(still_mounted, "the bind mount was detached");
    assert_eq!(errno(rmdir), libc::EBUSY);
    assert_eq!(std::fs::read(m.path("from/inside")).unwrap(), b"bound");
}
