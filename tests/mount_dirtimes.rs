//! A directory's times, link count and size over a real mount (FORMAT §11,
//! "Directory times"): its mtime and ctime move when an entry is created,
//! removed or renamed in or out of it, not when an entry's content or
//! attributes change; a utime of the directory after such a change wins and
//! an attribute change keeps the mtime; `st_nlink` is 2 plus its
//! subdirectories; `st_size` is not zero; and a second node with the same
//! versions shows the same times.
//!
//! Stats ask with `AT_STATX_FORCE_SYNC`, so the kernel asks the mount each
//! time instead of answering from attributes it cached.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;
#[path = "common/nodes.rs"]
mod nodes;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use globofs::vfs::{ROOT_INO, Vfs};
use mount::{Mounted, cpath, cvt};
use nodes::Cluster;

/// What a forced `statx` says: (mtime, ctime) in nanoseconds, nlink, size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    mtime: i128,
    ctime: i128,
    nlink: u32,
    size: u64,
}

fn seen(path: &Path) -> Seen {
    let c = cpath(path);
    let mut out: libc::statx = unsafe { std::mem::zeroed() };
    cvt(unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_FORCE_SYNC,
            libc::STATX_BASIC_STATS,
            &mut out,
        )
    })
    .unwrap_or_else(|err| panic!("statx {}: {err}", path.display()));
    let ns =
        |t: libc::statx_timestamp| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    Seen {
        mtime: ns(out.stx_mtime),
        ctime: ns(out.stx_ctime),
        nlink: out.stx_nlink,
        size: out.stx_size,
    }
}

/// Runs `change` and checks that every directory of `dirs` shows a later
/// mtime and ctime afterwards.
fn moves(what: &str, dirs: &[&Path], change: impl FnOnce()) {
    let before: Vec<Seen> = dirs.iter().map(|d| seen(d)).collect();
    change();
    for (dir, before) in dirs.iter().zip(before) {
        let after = seen(dir);
        assert!(
            after.mtime > before.mtime,
            "{what}: mtime of {} did not grow ({before:?} -> {after:?})",
            dir.display()
        );
        assert!(
            after.ctime > before.ctime,
            "{what}: ctime of {} did not grow ({before:?} -> {after:?})",
            dir.display()
        );
    }
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let c = cpath(path);
    cvt(unsafe { libc::mknod(c.as_ptr(), mode, dev) }).unwrap();
}

#[test]
fn a_directory_changes_times_when_its_entries_come_and_go() {
    let m = Mounted::new();
    let d = m.path("d");
    let e = m.path("e");
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir(&e).unwrap();
    moves("create", &[&d], || {
        std::fs::write(d.join("f"), b"x").unwrap();
    });
    moves("mkdir", &[&d], || {
        std::fs::create_dir(d.join("sub")).unwrap()
    });
    moves("symlink", &[&d], || {
        std::os::unix::fs::symlink("f", d.join("link")).unwrap();
    });
    moves("mkfifo", &[&d], || {
        mknod(&d.join("fifo"), libc::S_IFIFO | 0o600, 0)
    });
    moves("mknod", &[&d], || {
        mknod(&d.join("null"), libc::S_IFCHR | 0o600, libc::makedev(1, 3))
    });
    moves("unlink", &[&d], || {
        std::fs::remove_file(d.join("link")).unwrap()
    });
    moves("rmdir", &[&d], || {
        std::fs::remove_dir(d.join("sub")).unwrap()
    });
    moves("rename within", &[&d], || {
        std::fs::rename(d.join("f"), d.join("g")).unwrap();
    });
    moves("rename out and in", &[&d, &e], || {
        std::fs::rename(d.join("g"), e.join("g")).unwrap();
    });
    moves("rename back", &[&e, &d], || {
        std::fs::rename(e.join("g"), d.join("g")).unwrap();
    });
    // The mount's root is a directory like any other.
    moves("create in the root", &[&m.mnt], || {
        std::fs::write(m.path("top"), b"x").unwrap();
    });
}

/// A new file has no version until its first close: the directory's times
/// move then, and the kernel, which may have cached them since the create,
/// is told at once (a plain `stat`, answered from the kernel's cache when it
/// holds the attributes).
#[test]
fn a_new_file_moves_its_directory_at_its_first_close() {
    let m = Mounted::new();
    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    let mut file = std::fs::File::create(d.join("f")).unwrap();
    file.write_all(b"being written").unwrap();
    let open = std::fs::metadata(&d).unwrap();
    drop(file);
    let closed = std::fs::metadata(&d).unwrap();
    assert!(
        closed.modified().unwrap() > open.modified().unwrap(),
        "{open:?} -> {closed:?}"
    );
}

#[test]
fn a_change_inside_an_entry_leaves_the_directory_alone() {
    let m = Mounted::new();
    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    moves("create", &[&d], || {
        std::fs::write(d.join("f"), b"x").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
    });
    let before = seen(&d);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("f"))
        .unwrap();
    file.write_all(b"more").unwrap();
    drop(file);
    std::fs::write(d.join("f"), b"rewritten").unwrap();
    std::fs::set_permissions(
        d.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // An entry of the subdirectory changes the subdirectory, not `d`.
    std::fs::write(d.join("sub/deeper"), b"y").unwrap();
    assert_eq!(seen(&d), before);
}

#[test]
fn a_utime_of_the_directory_after_a_change_wins_and_chmod_keeps_it() {
    let m = Mounted::new();
    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("f"), b"x").unwrap();
    let changed = seen(&d);
    // touch -d 2001-09-09: older than the entry's change, but set after it.
    let when = 1_000_000_000i64;
    let times = [
        libc::timespec {
            tv_sec: when,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: when,
            tv_nsec: 0,
        },
    ];
    let c = cpath(&d);
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }).unwrap();
    let touched = seen(&d);
    assert_eq!(touched.mtime, i128::from(when) * 1_000_000_000);
    assert!(touched.ctime > changed.ctime, "{changed:?} -> {touched:?}");
    // chmod of the directory: a new version of it, the mtime stays.
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let chmodded = seen(&d);
    assert_eq!(chmodded.mtime, touched.mtime);
    assert!(chmodded.ctime > touched.ctime);
    // And a chmod after an entry's change keeps that change's time.
    std::fs::write(d.join("g"), b"y").unwrap();
    let created = seen(&d);
    assert!(created.mtime > chmodded.mtime);
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let again = seen(&d);
    assert_eq!(again.mtime, created.mtime);
    assert!(again.ctime > created.ctime);
}

#[test]
fn a_directory_moved_with_its_entries_keeps_its_mtime() {
    let m = Mounted::new();
    std::fs::create_dir_all(m.path("from/d")).unwrap();
    std::fs::create_dir(m.path("to")).unwrap();
    std::fs::write(m.path("from/d/f"), b"x").unwrap();
    std::fs::create_dir(m.path("from/d/sub")).unwrap();
    let before = seen(&m.path("from/d"));
    moves(
        "moving a directory",
        &[&m.path("from"), &m.path("to")],
        || {
            std::fs::rename(m.path("from/d"), m.path("to/d")).unwrap();
        },
    );
    let after = seen(&m.path("to/d"));
    assert_eq!(after.mtime, before.mtime, "{before:?} -> {after:?}");
    assert!(after.ctime > before.ctime);
    assert_eq!(after.nlink, 3);
    std::fs::set_permissions(
        m.path("to/d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert_eq!(seen(&m.path("to/d")).mtime, before.mtime);
}

#[test]
fn nlink_counts_subdirectories_and_the_size_is_not_zero() {
    let m = Mounted::new();
    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    assert_eq!(seen(&d).nlink, 2);
    for sub in ["a", "b", "c"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink("a", d.join("link")).unwrap();
    assert_eq!(seen(&d).nlink, 5);
    std::fs::remove_dir(d.join("b")).unwrap();
    assert_eq!(seen(&d).nlink, 4);
    std::fs::rename(d.join("c"), m.path("c")).unwrap();
    assert_eq!(seen(&d).nlink, 3);
    assert!(seen(&d).size > 0);
    assert!(seen(&m.mnt).size > 0);
    assert_eq!(seen(&m.mnt).nlink, 4, "the root holds d and c");
    // What `ls -l` sees through a listing (READDIRPLUS) agrees.
    let listed = std::fs::read_dir(&d).unwrap().count();
    assert_eq!(listed, 3);
    let meta = std::fs::symlink_metadata(d.join("a")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 2);
    assert!(std::os::unix::fs::MetadataExt::size(&meta) > 0);
}

#[test]
fn a_peer_with_the_same_versions_shows_the_same_directory_times() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    let here = Vfs::new(Arc::new(a.store()));
    let dir = here.mkdir(ROOT_INO, OsStr::new("d"), 0o755).unwrap();
    here.mkdir(dir.ino, OsStr::new("sub"), 0o755).unwrap();
    here.symlink(dir.ino, OsStr::new("link"), b"sub").unwrap();
    here.symlink(dir.ino, OsStr::new("gone"), b"sub").unwrap();
    here.unlink(dir.ino, OsStr::new("gone")).unwrap();
    here.rename(
        dir.ino,
        OsStr::new("link"),
        dir.ino,
        OsStr::new("moved"),
        false,
        false,
    )
    .unwrap();
    let mine = here.getattr(dir.ino).unwrap();
    a.sync();
    b.sync();
    let there = Vfs::new(Arc::new(b.store()));
    let theirs = there.lookup(ROOT_INO, OsStr::new("d")).unwrap();
    assert_eq!(
        (theirs.mtime, theirs.ctime, theirs.nlink, theirs.size),
        (mine.mtime, mine.ctime, mine.nlink, mine.size)
    );
    assert_eq!(mine.nlink, 3);
    // The removal was the last change: its tombstone's time.
    let tombstone = a.store().current(&nodes::vp("d/link")).unwrap().unwrap();
    assert_eq!(
        mine.mtime,
        std::time::UNIX_EPOCH + std::time::Duration::new(tombstone.id.secs, tombstone.id.nanos)
    );
    let root_here = here.getattr(ROOT_INO).unwrap();
    let root_there = there.getattr(ROOT_INO).unwrap();
    assert_eq!(
        (root_here.mtime, root_here.ctime, root_here.nlink),
        (root_there.mtime, root_there.ctime, root_there.nlink)
    );
}

/// `globofs put` of a tree writes a directory before its entries; it then
/// writes the directory's own mtime again, so the mount shows the local
/// directory's mtime (and a second put of the same tree writes nothing).
#[test]
fn a_put_tree_keeps_its_directories_mtimes() {
    let m = Mounted::new();
    let local = m.dir.path().join("local");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/f"), b"x").unwrap();
    std::fs::write(local.join("g"), b"y").unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    for dir in [local.join("sub"), local.clone()] {
        std::fs::File::open(&dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let out = m.globofs(&["put", local.to_str().unwrap(), "/tree"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = |p: &str| std::fs::metadata(m.path(p)).unwrap().modified().unwrap();
    assert_eq!(shown("tree/sub"), old);
    let versions = mount::log_lines(&m, "/tree/sub").len();
    let out = m.globofs(&["put", local.to_str().unwrap(), "/tree"]);
    assert!(out.status.success());
    assert_eq!(mount::log_lines(&m, "/tree/sub").len(), versions);
    assert_eq!(shown("tree/sub"), old);
}
