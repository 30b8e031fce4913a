//! fsync and flush (close) over a real mount: fsync commits a version while the
//! file stays open, a close without writes commits nothing, and every close of a
//! written descriptor (also a duplicate) commits what was written.

#[path = "common/mount.rs"]
mod mount;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{Mounted, version_files};

#[test]
fn fsync_commits_while_the_file_stays_open() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"v1").unwrap();
    let before = version_files(&m, "f").len();
    let mut f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.write_all(b"v2 longer").unwrap();
    assert_eq!(version_files(&m, "f").len(), before);
    f.sync_all().unwrap();
    assert_eq!(version_files(&m, "f").len(), before + 1);
    // A second fsync with nothing new adds nothing; neither does the close.
    f.sync_data().unwrap();
    drop(f);
    assert_eq!(version_files(&m, "f").len(), before + 1);
    // A reader opened now sees the fsynced content.
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"v2 longer");
}

#[test]
fn fsync_of_a_new_file_makes_it_visible_in_the_store() {
    let m = Mounted::new();
    let mut f = std::fs::File::create(m.path("new")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    let versions = version_files(&m, "new");
    assert!(!versions.is_empty());
    drop(f);
}

#[test]
fn closing_without_writing_commits_nothing() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"same").unwrap();
    let before = version_files(&m, "f").len();
    drop(OpenOptions::new().write(true).open(m.path("f")).unwrap());
    drop(OpenOptions::new().read(true).open(m.path("f")).unwrap());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(version_files(&m, "f").len(), before);
}

#[test]
fn closing_a_duplicate_descriptor_commits_what_was_written() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"aaaa").unwrap();
    let before = version_files(&m, "f").len();
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.write_all_at(b"b", 0).unwrap();
    let dup = f.try_clone().unwrap();
    drop(dup); // close(2) of the duplicate: a flush
    assert_eq!(version_files(&m, "f").len(), before + 1);
    f.write_all_at(b"c", 1).unwrap();
    drop(f);
    assert_eq!(version_files(&m, "f").len(), before + 2);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"bcaa");
}
