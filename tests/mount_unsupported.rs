//! What the mount refuses: hard links (EPERM: a volume path has one name),
//! extended attributes (ENOTSUP; listxattr is an empty list), special files
//! (mknod, mkfifo: not implemented), ioctls (ENOTTY, quietly) and
//! RENAME_EXCHANGE (EINVAL, in mount_rename).

#[path = "common/mount.rs"]
mod mount;

use mount::{Mounted, cpath, cvt, errno, names};

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
fn setxattr_and_getxattr_are_enotsup_and_listxattr_is_empty() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    let path = cpath(&m.path("f"));
    let name = c"user.test";
    let value = b"v";
    let set = cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    });
    assert_eq!(errno(set), libc::ENOTSUP);
    let mut buf = [0u8; 64];
    let got = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(errno(cvt(got as libc::c_int)), libc::ENOTSUP);
    let removed = unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
    assert_eq!(errno(cvt(removed)), libc::ENOTSUP);
    let size = unsafe { libc::listxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(size, 0);
    let listed = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(listed, 0);
}

#[test]
fn special_files_cannot_be_made() {
    let m = Mounted::new();
    let fifo = cpath(&m.path("fifo"));
    let err = errno(cvt(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }));
    assert_eq!(err, libc::ENOSYS);
    let node = cpath(&m.path("node"));
    let err = errno(cvt(unsafe {
        libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3))
    }));
    assert_eq!(err, libc::ENOSYS);
    assert!(names(&m.mnt).is_empty());
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
