//! lookup and getattr over a real mount: kinds, sizes, modes, and the errors a
//! path walk gives (ENOENT, ENOTDIR, ENAMETOOLONG).

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use mount::{Mounted, errno};

#[test]
fn stat_reports_kind_size_and_mode() {
    let m = Mounted::new();
    std::fs::write(m.path("file"), b"twelve bytes").unwrap();
    std::fs::set_permissions(m.path("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::os::unix::fs::symlink("file", m.path("link")).unwrap();

    let file = std::fs::metadata(m.path("file")).unwrap();
    assert!(file.is_file());
    assert_eq!(file.len(), 12);
    assert_eq!(file.mode() & 0o7777, 0o640);
    assert_eq!(file.nlink(), 1);

    let dir = std::fs::metadata(m.path("dir")).unwrap();
    assert!(dir.is_dir());

    let link = std::fs::symlink_metadata(m.path("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.len(), "file".len() as u64);
    // stat follows the link.
    assert_eq!(std::fs::metadata(m.path("link")).unwrap().len(), 12);

    let root = std::fs::metadata(&m.mnt).unwrap();
    assert!(root.is_dir());
    assert_eq!(root.ino(), 1);
}

#[test]
fn distinct_files_have_distinct_stable_inodes() {
    let m = Mounted::new();
    std::fs::write(m.path("a"), b"a").unwrap();
    std::fs::write(m.path("b"), b"b").unwrap();
    let a = std::fs::metadata(m.path("a")).unwrap().ino();
    let b = std::fs::metadata(m.path("b")).unwrap().ino();
    assert_ne!(a, b);
    assert_eq!(std::fs::metadata(m.path("a")).unwrap().ino(), a);
}

#[test]
fn a_missing_name_is_enoent() {
    let m = Mounted::new();
    assert_eq!(errno(std::fs::metadata(m.path("nope"))), libc::ENOENT);
    assert_eq!(
        errno(std::fs::metadata(m.path("nope/deeper"))),
        libc::ENOENT
    );
    std::fs::create_dir(m.path("d")).unwrap();
    assert_eq!(errno(std::fs::metadata(m.path("d/nope"))), libc::ENOENT);
}

#[test]
fn a_file_used_as_a_directory_is_enotdir() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(errno(std::fs::metadata(m.path("f/x"))), libc::ENOTDIR);
}

#[test]
fn a_256_byte_name_is_enametoolong_and_255_works() {
    let m = Mounted::new();
    let long = "n".repeat(256);
    assert_eq!(errno(std::fs::metadata(m.path(&long))), libc::ENAMETOOLONG);
    assert_eq!(
        errno(std::fs::write(m.path(&long), b"x")),
        libc::ENAMETOOLONG
    );
    let max = "m".repeat(255);
    std::fs::write(m.path(&max), b"longest name").unwrap();
    assert_eq!(std::fs::read(m.path(&max)).unwrap(), b"longest name");
    assert_eq!(std::fs::metadata(m.path(&max)).unwrap().len(), 12);
}

#[test]
fn a_file_being_written_shows_its_size_before_close() {
    let m = Mounted::new();
    use std::io::Write;
    let mut f = std::fs::File::create(m.path("growing")).unwrap();
    f.write_all(&[1u8; 10_000]).unwrap();
    assert_eq!(std::fs::metadata(m.path("growing")).unwrap().len(), 10_000);
    assert_eq!(f.metadata().unwrap().len(), 10_000);
}
