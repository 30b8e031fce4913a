//! What the mount refuses: a hard link to a symlink (EPERM; hard links of
//! files are tests/mount_links.rs) and ioctls (ENOTTY, quietly). Extended
//! attributes and special files: tests/mount_posix.rs.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use mount::{Mounted, cvt, errno, names};

#[test]
fn a_hard_link_to_a_symlink_is_eperm() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    std::os::unix::fs::symlink("f", m.path("s")).unwrap();
    assert_eq!(
        errno(std::fs::hard_link(m.path("s"), m.path("g"))),
        libc::EPERM
    );
    assert_eq!(names(&m.mnt), vec!["f", "s"]);
}

#[test]
fn an_ioctl_is_enotty_and_logs_no_warning() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    let file = std::fs::File::open(m.path("f")).unwrap();
    // FS_IOC_GETFLAGS, as `lsattr` asks it.
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    let mut flags: libc::c_long = 0;
    let got = unsafe {
        use std::os::fd::AsRawFd;
        libc::ioctl(file.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags)
    };
    assert_eq!(errno(cvt(got)), libc::ENOTTY);
    drop(file);
    let log = m.log();
    assert!(!log.contains("Not Implemented"), "{log}");
}
