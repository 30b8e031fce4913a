//! readdir over a real mount: names and types, large directories (several
//! readdir batches), files still being written, and the errors.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

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

/// What a program sees of an open directory descriptor, as `os.listdir(fd)`
/// in Python does it: `fstat` (by `fdopendir`), then glibc's `readdir` to the
/// end. Returns the link count and the names other than `.` and `..`.
fn list_fd(fd: libc::c_int) -> Result<(u64, Vec<String>), i32> {
    // SAFETY: plain calls on a descriptor the caller owns; `fdopendir` takes a
    // duplicate, so the caller's descriptor stays open.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        let dir = libc::fdopendir(libc::dup(fd));
        if dir.is_null() {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        let mut names = Vec::new();
        loop {
            *libc::__errno_location() = 0;
            let entry = libc::readdir(dir);
            if entry.is_null() {
                let err = *libc::__errno_location();
                libc::closedir(dir);
                if err != 0 {
                    return Err(err);
                }
                return Ok((st.st_nlink, names));
            }
            let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr())
                .to_string_lossy()
                .into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
    }
}

#[test]
fn a_directory_removed_while_open_lists_as_empty() {
    let m = Mounted::new();
    for (name, remove) in [("by-rmdir", true), ("by-the-cli", false)] {
        let dir = m.path(name);
        std::fs::create_dir(&dir).unwrap();
        let cdir = mount::cpath(&dir);
        // SAFETY: a valid C path.
        let fd =
            mount::cvt(unsafe { libc::open(cdir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) })
                .unwrap();
        if remove {
            std::fs::remove_dir(&dir).unwrap();
        } else {
            let out = m.globofs(&["rm", &format!("/{name}")]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Past the kernel's attribute cache, so `fstat` asks the mount.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(list_fd(fd), Ok((0, Vec::new())), "{name}");
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
    }
}

#[test]
fn an_unlinked_open_file_can_still_be_fstated() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"twelve bytes").unwrap();
    let f = std::fs::File::open(m.path("f")).unwrap();
    std::fs::remove_file(m.path("f")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let meta = f.metadata().unwrap();
    assert_eq!(meta.len(), 12);
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 0);
}

#[test]
fn two_large_directories_listed_at_the_same_time_keep_their_own_entries() {
    let m = Mounted::new();
    let mut expect = Vec::new();
    for dir in ["one", "two"] {
        std::fs::create_dir(m.path(dir)).unwrap();
        // Long names: each listing (about 180 KiB) spans two of the kernel's
        // 128 KiB readdir requests.
        let names: Vec<String> = (0..700)
            .map(|i| format!("{dir}-{i:04}-{}", "n".repeat(240)))
            .collect();
        for name in &names {
            std::fs::write(m.path(&format!("{dir}/{name}")), b"").unwrap();
        }
        expect.push(names);
    }
    // Past the kernel's caches, so both listings are asked of the mount.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut seen: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    // SAFETY: directory streams opened, read and closed here.
    unsafe {
        let dirs = [
            libc::opendir(mount::cpath(&m.path("one")).as_ptr()),
            libc::opendir(mount::cpath(&m.path("two")).as_ptr()),
        ];
        assert!(dirs.iter().all(|d| !d.is_null()));
        let mut done = [false, false];
        // One entry from each in turn: their readdir requests interleave.
        while !done.iter().all(|d| *d) {
            for which in 0..2 {
                if done[which] {
                    continue;
                }
                let entry = libc::readdir(dirs[which]);
                if entry.is_null() {
                    done[which] = true;
                    continue;
                }
                let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                if name != "." && name != ".." {
                    seen[which].push(name);
                }
            }
        }
        for dir in dirs {
            libc::closedir(dir);
        }
    }
    for which in 0..2 {
        seen[which].sort();
        assert_eq!(seen[which], expect[which], "directory {which}");
    }
}

#[test]
fn a_removed_current_directory_lists_as_empty() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("rmdir ../d && ls -a . && stat -c 'links %h' .")
        .current_dir(m.path("d"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("links 0"), "{text}");
    assert!(!text.contains('d'), "{text}");
}

/// Waits up to 10 s (the journal follower polls twice a second; the kernel
/// may keep an entry or a listing for a minute) for `dir`'s names to be `want`.
fn names_become(dir: &std::path::Path, want: &[&str]) -> Vec<String> {
    let want: Vec<String> = want.iter().map(|n| (*n).to_owned()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = names(dir);
        if now == want || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_listing_the_kernel_keeps_shows_names_added_and_removed_by_another_process() {
    let m = Mounted::new();
    std::fs::create_dir_all(m.path("d/old")).unwrap();
    std::fs::write(m.path("d/a"), b"a").unwrap();
    // Listed twice: the kernel now holds the listing and every name in it.
    assert_eq!(names(&m.path("d")), ["a", "old"]);
    assert_eq!(names(&m.path("d")), ["a", "old"]);
    let local = m.dir.path().join("local");
    std::fs::write(&local, b"from another process").unwrap();
    let local = local.to_str().unwrap();
    // A new name in the directory, and one in a new subtree of it.
    let out = m.globofs(&["put", local, "/d/b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = m.globofs(&["put", local, "/d/new/deeper/c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        names_become(&m.path("d"), &["a", "b", "new", "old"]),
        ["a", "b", "new", "old"]
    );
    assert_eq!(
        std::fs::read(m.path("d/new/deeper/c")).unwrap(),
        b"from another process"
    );
    // A name removed elsewhere leaves the kept listing too.
    let out = m.globofs(&["rm", "/d/a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        names_become(&m.path("d"), &["b", "new", "old"]),
        ["b", "new", "old"]
    );
    assert_eq!(errno(std::fs::metadata(m.path("d/a"))), libc::ENOENT);
}
