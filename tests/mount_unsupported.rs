//! What the mount refuses: hard links (EPERM: a volume path has one name),
//! ioctls (ENOTTY, quietly) and RENAME_EXCHANGE (EINVAL, in mount_rename).
//! Extended attributes and special files: tests/mount_posix.rs.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use mount::{Mounted, cvt, errno, names};

#[test]
fn hard_links_are_eperm() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(
        errno(std::fs::hard_link(m.path("f"), m.path("g"))),
        libc::EPERM
    );
    assert_eq!(names(&m.mnt), vec!["f"]);
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
