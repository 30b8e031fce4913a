//! unlink over a real mount: files and symlinks, a file open for reading or
//! writing while it is unlinked, and the errors (ENOENT, EISDIR, ENOTDIR).

#[path = "common/mount.rs"]
mod mount;

use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{Mounted, errno, log_lines, names};

#[test]
fn unlink_removes_the_name_and_keeps_the_history() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    std::fs::remove_file(m.path("f")).unwrap();
    assert_eq!(errno(std::fs::metadata(m.path("f"))), libc::ENOENT);
    assert!(names(&m.mnt).is_empty());
    // A delete is a version (a tombstone) in the store.
    assert!(log_lines(&m, "/f").len() >= 2);
}

#[test]
fn unlinking_a_symlink_leaves_its_target() {
    let m = Mounted::new();
    std::fs::write(m.path("target"), b"kept").unwrap();
    std::os::unix::fs::symlink("target", m.path("link")).unwrap();
    std::fs::remove_file(m.path("link")).unwrap();
    assert_eq!(std::fs::read(m.path("target")).unwrap(), b"kept");
    assert_eq!(names(&m.mnt), vec!["target"]);
}

#[test]
fn unlink_errors() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(errno(std::fs::remove_file(m.path("missing"))), libc::ENOENT);
    assert_eq!(errno(std::fs::remove_file(m.path("d"))), libc::EISDIR);
    assert_eq!(errno(std::fs::remove_file(m.path("f/x"))), libc::ENOTDIR);
    assert_eq!(
        errno(std::fs::remove_file(m.path(&"u".repeat(256)))),
        libc::ENAMETOOLONG
    );
}

#[test]
fn a_file_open_for_reading_stays_readable_after_unlink() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"still here").unwrap();
    let f = std::fs::File::open(m.path("f")).unwrap();
    std::fs::remove_file(m.path("f")).unwrap();
    let mut buf = [0u8; 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
}

#[test]
fn a_file_unlinked_while_being_written_does_not_come_back_on_close() {
    let m = Mounted::new();
    let mut f = std::fs::File::create(m.path("tmp")).unwrap();
    f.write_all(b"scratch").unwrap();
    std::fs::remove_file(m.path("tmp")).unwrap();
    f.write_all(b" more").unwrap();
    drop(f);
    assert_eq!(errno(std::fs::metadata(m.path("tmp"))), libc::ENOENT);
    assert!(names(&m.mnt).is_empty());
    // The name is free for a new file.
    std::fs::write(m.path("tmp"), b"new").unwrap();
    assert_eq!(std::fs::read(m.path("tmp")).unwrap(), b"new");
}
