//! readdir over a real mount: names and types, large directories (several
//! readdir batches), files still being written, and the errors.

#[path = "common/mount.rs"]
mod mount;

use std::collections::BTreeMap;

use mount::{Mounted, errno, names};

#[test]
fn lists_names_with_their_types() {
    let m = Mounted::new();
    std::fs::write(m.path("file"), b"x").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::os::unix::fs::symlink("file", m.path("link")).unwrap();
    let kinds: BTreeMap<String, &str> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let kind = if kind.is_symlink() {
                "symlink"
            } else if kind.is_dir() {
                "dir"
            } else {
                "file"
            };
            (entry.file_name().to_string_lossy().into_owned(), kind)
        })
        .collect();
    let expect: BTreeMap<String, &str> = [("dir", "dir"), ("file", "file"), ("link", "symlink")]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
    assert_eq!(kinds, expect);
}

#[test]
fn an_empty_directory_lists_nothing_but_dot_entries() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("empty")).unwrap();
    assert!(names(&m.path("empty")).is_empty());
    // `.` and `..` are there for getdents callers.
    let dir = m.path("empty");
    let c = mount::cpath(&dir);
    let mut seen = Vec::new();
    unsafe {
        let handle = libc::opendir(c.as_ptr());
        assert!(!handle.is_null());
        loop {
            let entry = libc::readdir(handle);
            if entry.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr());
            seen.push(name.to_string_lossy().into_owned());
        }
        libc::closedir(handle);
    }
    seen.sort();
    assert_eq!(seen, vec![".", ".."]);
}

#[test]
fn a_large_directory_lists_every_entry_once() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("big")).unwrap();
    // Long names make the listing span several readdir replies.
    let mut expect: Vec<String> = (0..600)
        .map(|i| format!("entry-{i:04}-{}", "x".repeat(100)))
        .collect();
    for name in &expect {
        std::fs::write(m.path("big").join(name), name.as_bytes()).unwrap();
    }
    expect.sort();
    assert_eq!(names(&m.path("big")), expect);
}

#[test]
fn removed_and_renamed_entries_leave_the_listing() {
    let m = Mounted::new();
    for name in ["a", "b", "c"] {
        std::fs::write(m.path(name), name).unwrap();
    }
    std::fs::remove_file(m.path("b")).unwrap();
    std::fs::rename(m.path("c"), m.path("d")).unwrap();
    assert_eq!(names(&m.mnt), vec!["a", "d"]);
}

#[test]
fn a_file_still_open_for_writing_is_listed() {
    let m = Mounted::new();
    let _open = std::fs::File::create(m.path("pending")).unwrap();
    assert_eq!(names(&m.mnt), vec!["pending"]);
}

#[test]
fn reading_a_file_or_a_missing_dir_as_a_directory_fails() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    assert_eq!(errno(std::fs::read_dir(m.path("f"))), libc::ENOTDIR);
    assert_eq!(errno(std::fs::read_dir(m.path("missing"))), libc::ENOENT);
}
