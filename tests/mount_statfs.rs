//! statfs over a real mount: the totals of the disk under the volume and the
//! name length limit.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use mount::{Mounted, cpath, cvt};

fn statvfs(path: &std::path::Path) -> libc::statvfs {
    let c = cpath(path);
    let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::statvfs(c.as_ptr(), &mut out) }).unwrap();
    out
}

#[test]
fn statfs_reports_the_disk_under_the_volume() {
    let m = Mounted::new();
    let mounted = statvfs(&m.mnt);
    let disk = statvfs(&m.volume);
    assert_eq!(mounted.f_namemax, 255);
    assert!(mounted.f_bsize > 0);
    assert!(mounted.f_blocks > 0);
    assert!(mounted.f_bavail <= mounted.f_bfree);
    assert!(mounted.f_bfree <= mounted.f_blocks);
    // Same totals as the disk the volume is on (block counts in the same unit).
    assert_eq!(
        mounted.f_blocks * mounted.f_frsize,
        disk.f_blocks * disk.f_frsize
    );
    // The store's real inodes and free space, not made-up numbers (other
    // tests use the same disk meanwhile: free counts only roughly).
    assert_eq!(mounted.f_files, disk.f_files);
    assert!(mounted.f_files > 0);
    assert!(mounted.f_ffree.abs_diff(disk.f_ffree) < 100_000);
    let free = |s: &libc::statvfs| s.f_bavail * s.f_frsize;
    assert!(free(&mounted).abs_diff(free(&disk)) < 1 << 30);
    // statfs inside a subdirectory answers the same.
    std::fs::create_dir(m.path("d")).unwrap();
    assert_eq!(statvfs(&m.path("d")).f_namemax, 255);
}
