//! symlink and readlink over a real mount: relative, absolute and dangling
//! targets, following links, and the errors (EEXIST, ENOENT, EINVAL, ENAMETOOLONG).

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use mount::{Mounted, errno};

#[test]
fn symlinks_read_back_and_are_followed() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/f"), b"through the link").unwrap();
    symlink("d/f", m.path("rel")).unwrap();
    symlink(m.path("d"), m.path("abs")).unwrap();
    symlink("nowhere", m.path("dangling")).unwrap();
    assert_eq!(
        std::fs::read_link(m.path("rel")).unwrap(),
        PathBuf::from("d/f")
    );
    assert_eq!(std::fs::read_link(m.path("abs")).unwrap(), m.path("d"));
    assert_eq!(std::fs::read(m.path("rel")).unwrap(), b"through the link");
    assert_eq!(std::fs::read(m.path("abs/f")).unwrap(), b"through the link");
    assert_eq!(errno(std::fs::read(m.path("dangling"))), libc::ENOENT);
    let meta = std::fs::symlink_metadata(m.path("dangling")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), "nowhere".len() as u64);
}

#[test]
fn a_long_target_round_trips() {
    let m = Mounted::new();
    let target = format!("{}/end", "t".repeat(200).repeat(5));
    symlink(&target, m.path("long")).unwrap();
    assert_eq!(
        std::fs::read_link(m.path("long")).unwrap(),
        PathBuf::from(target)
    );
}

#[test]
fn symlink_errors() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    std::fs::create_dir(m.path("d")).unwrap();
    assert_eq!(errno(symlink("x", m.path("f"))), libc::EEXIST);
    assert_eq!(errno(symlink("x", m.path("d"))), libc::EEXIST);
    assert_eq!(errno(symlink("x", m.path("missing/l"))), libc::ENOENT);
    assert_eq!(errno(symlink("x", m.path("f/l"))), libc::ENOTDIR);
    assert_eq!(
        errno(symlink("x", m.path(&"s".repeat(256)))),
        libc::ENAMETOOLONG
    );
    // readlink of something that is not a link.
    assert_eq!(errno(std::fs::read_link(m.path("f"))), libc::EINVAL);
    assert_eq!(errno(std::fs::read_link(m.path("d"))), libc::EINVAL);
    assert_eq!(errno(std::fs::read_link(m.path("missing"))), libc::ENOENT);
}

#[test]
fn a_symlink_loop_is_eloop() {
    let m = Mounted::new();
    symlink("b", m.path("a")).unwrap();
    symlink("a", m.path("b")).unwrap();
    assert_eq!(errno(std::fs::read(m.path("a"))), libc::ELOOP);
}
