//! chmod, utimens and chown over a real mount: modes and mtimes are versions in
//! the store and survive later writes; ownership is the mounting user's only.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use mount::{Mounted, cpath, cvt, errno, log_lines};

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn chmod_changes_the_mode_as_a_new_version() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    let before = log_lines(&m, "/f").len();
    std::fs::set_permissions(m.path("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode_of(&m.path("f")), 0o600);
    assert_eq!(log_lines(&m, "/f").len(), before + 1);
    assert!(log_lines(&m, "/f").last().unwrap().contains(" 0600 "));
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::set_permissions(m.path("d"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(mode_of(&m.path("d")), 0o700);
}

#[test]
fn the_mode_survives_a_later_write() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    std::fs::set_permissions(m.path("f"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let mut f = OpenOptions::new().append(true).open(m.path("f")).unwrap();
    f.write_all(b"y").unwrap();
    drop(f);
    assert_eq!(mode_of(&m.path("f")), 0o751);
    // And a chmod through a handle that has pending writes keeps both.
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"Z", 0).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .unwrap();
    drop(f);
    assert_eq!(mode_of(&m.path("f")), 0o640);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"Zy");
}

#[test]
fn mtimes_before_1970_with_fractions_are_kept_exactly() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    for nanos in [-1_500_000_000i64, -1, -86_400_000_000_001] {
        let when = SystemTime::UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs());
        std::fs::File::open(m.path("f"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        let meta = std::fs::metadata(m.path("f")).unwrap();
        let got = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        assert_eq!(got, nanos, "set {nanos} ns before 1970");
    }
    // The store holds the same time (FORMAT.md: floor seconds, then the
    // nanoseconds forward from them): -86,400.000000001 s.
    let out = m.globofs(&["ls", "-l", "/"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let line = listing.lines().find(|l| l.ends_with(" f")).unwrap();
    assert!(line.contains(" -86401.999999999 "), "{listing}");
}

#[test]
fn utimens_sets_the_mtime() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.set_modified(when).unwrap();
    drop(f);
    let meta = std::fs::metadata(m.path("f")).unwrap();
    assert_eq!(meta.modified().unwrap(), when);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
    // By path, on a directory, with utimensat.
    std::fs::create_dir(m.path("d")).unwrap();
    let c = cpath(&m.path("d"));
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 0,
        },
    ];
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }).unwrap();
    assert_eq!(
        std::fs::metadata(m.path("d")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn chmod_and_utimens_of_a_missing_path_are_enoent() {
    let m = Mounted::new();
    assert_eq!(
        errno(std::fs::set_permissions(
            m.path("missing"),
            std::fs::Permissions::from_mode(0o600)
        )),
        libc::ENOENT
    );
    let c = cpath(&m.path("missing"));
    assert_eq!(
        errno(cvt(unsafe {
            libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0)
        })),
        libc::ENOENT
    );
}

#[test]
fn chown_to_another_owner_is_eperm_and_files_belong_to_the_mounting_user() {
    // `mount.ownership: mount-user` (with the default, `keep`, chown records
    // the new owner: tests/mount_posix.rs).
    let m = Mounted::with("4KiB", "  ownership: mount-user\n");
    std::fs::write(m.path("f"), b"x").unwrap();
    let meta = std::fs::metadata(m.path("f")).unwrap();
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert_eq!(meta.gid(), unsafe { libc::getegid() });
    assert_eq!(
        errno(std::os::unix::fs::chown(m.path("f"), Some(65534), None)),
        libc::EPERM
    );
    // Chown to the owner it already has is allowed.
    std::os::unix::fs::chown(m.path("f"), Some(meta.uid()), Some(meta.gid())).unwrap();
}

/// A file's mtime is when its content last changed, not when it was
/// committed: a file created and closed unwritten keeps the mtime it was
/// shown at creation, and setting only the atime leaves the mtime alone
/// (pjdfstest utimensat::utime_omit).
#[test]
fn the_mtime_is_when_content_changed_not_when_it_was_committed() {
    let m = Mounted::new();
    let f = m.path("made");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&f)
        .unwrap();
    let shown = file.metadata().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(file);
    let atime = libc::timespec {
        tv_sec: 1_900_000_000,
        tv_nsec: 0,
    };
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let path = cpath(&f);
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), [atime, omit].as_ptr(), 0) })
        .unwrap();
    let after = std::fs::metadata(&f).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (shown.mtime(), shown.mtime_nsec())
    );
    assert_eq!(after.atime(), 1_900_000_000);
}

/// After close commits a new version, the ctime this mount shows at once is
/// that version's, the same a fresh mount shows (it was the kernel's cached
/// creation-time ctime until the attribute timeout).
#[test]
fn the_ctime_after_close_is_the_committed_versions() {
    let m = Mounted::new();
    let f = m.path("f");
    let mut file = std::fs::File::create(&f).unwrap();
    file.write_all(b"content").unwrap();
    let _ = file.metadata().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(file);
    let here = std::fs::metadata(&f).unwrap();
    let other = m.second_mount();
    let there = std::fs::metadata(other.path("f")).unwrap();
    assert_eq!(
        (here.ctime(), here.ctime_nsec()),
        (there.ctime(), there.ctime_nsec())
    );
}

/// Sets `path`'s atime and mtime to a second long ago, so a change that
/// moves them cannot land on the same clock tick.
fn age(path: &std::path::Path) {
    let old = libc::timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    let c = cpath(path);
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [old, old].as_ptr(), 0) }).unwrap();
}

/// `open(O_TRUNC)` of an existing file moves its mtime and ctime, as on
/// ext4: `: > log` is how shells empty a file, and backup tools that go by
/// mtime must see it changed. Also when the file was empty already.
#[test]
fn open_with_o_trunc_moves_mtime_and_ctime() {
    let m = Mounted::new();
    for (name, content) in [("full", &b"some bytes"[..]), ("empty", &b""[..])] {
        let f = m.path(name);
        std::fs::write(&f, content).unwrap();
        age(&f);
        let before = std::fs::metadata(&f).unwrap();
        assert_eq!(before.mtime(), 1_000_000_000);
        std::thread::sleep(Duration::from_millis(20));
        drop(std::fs::File::create(&f).unwrap());
        let after = std::fs::metadata(&f).unwrap();
        assert_eq!(after.len(), 0, "{name}");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (now - after.mtime()).abs() < 60,
            "{name}: mtime {} after O_TRUNC, now {now}",
            after.mtime()
        );
        assert!(
            (after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()),
            "{name}: ctime did not move"
        );
        // A fresh mount reads the same: the time is in the version.
        let other = m.second_mount();
        assert_eq!(
            std::fs::metadata(other.path(name)).unwrap().mtime(),
            after.mtime(),
            "{name}"
        );
    }
}

/// `truncate(2)` to the size a file has already still moves mtime and
/// ctime (Linux always does), through a path and through a descriptor.
#[test]
fn truncating_to_the_same_size_moves_mtime_and_ctime() {
    let m = Mounted::new();
    let f = m.path("f");
    std::fs::write(&f, b"0123456789").unwrap();
    for through_fd in [false, true] {
        age(&f);
        let before = std::fs::metadata(&f).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if through_fd {
            let file = OpenOptions::new().write(true).open(&f).unwrap();
            file.set_len(10).unwrap();
        } else {
            let c = cpath(&f);
            cvt(unsafe { libc::truncate(c.as_ptr(), 10) }).unwrap();
        }
        let after = std::fs::metadata(&f).unwrap();
        assert_eq!(after.len(), 10);
        assert_ne!(after.mtime(), 1_000_000_000, "fd {through_fd}: mtime kept");
        assert!(
            (after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()),
            "fd {through_fd}: ctime did not move"
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"0123456789");
    }
}

/// How many versions `path` (a volume path) has, by `globofs log`.
fn versions_of(m: &Mounted, path: &str) -> usize {
    let out = m.globofs(&["log", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Attribute changes to a file open for writing join its write state: they
/// show at once (fstat, and a path's stat), and the close writes content and
/// attributes as one version. GNU tar writes, futimens, fchown, fchmod, then
/// closes each file: one version per file, not four.
#[test]
fn attribute_changes_of_an_open_writer_are_one_version_with_its_content() {
    use std::os::fd::AsRawFd;
    let m = Mounted::new();
    let f = m.path("f");
    let mut file = std::fs::File::create(&f).unwrap();
    file.write_all(b"content").unwrap();
    let when = libc::timespec {
        tv_sec: 1_200_000_000,
        tv_nsec: 5,
    };
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    cvt(unsafe { libc::futimens(file.as_raw_fd(), [omit, when].as_ptr()) }).unwrap();
    cvt(unsafe { libc::fchmod(file.as_raw_fd(), 0o640) }).unwrap();
    let shown = file.metadata().unwrap();
    assert_eq!(shown.mode() & 0o7777, 0o640);
    assert_eq!((shown.mtime(), shown.mtime_nsec()), (1_200_000_000, 5));
    assert_eq!(mode_of(&f) & 0o7777, 0o640);
    drop(file);
    assert_eq!(versions_of(&m, "/f"), 1);
    // Another mount (a fresh reader of the store) sees all of it.
    let other = m.second_mount();
    let there = std::fs::metadata(other.path("f")).unwrap();
    assert_eq!(there.mode() & 0o7777, 0o640);
    assert_eq!((there.mtime(), there.mtime_nsec()), (1_200_000_000, 5));
    assert_eq!(std::fs::read(other.path("f")).unwrap(), b"content");
    drop(other);

    // tar: one version per file it extracts.
    let src = m.dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for n in 0..5 {
        std::fs::write(src.join(format!("d/f{n}")), format!("file {n}")).unwrap();
        std::fs::set_permissions(
            src.join(format!("d/f{n}")),
            std::fs::Permissions::from_mode(0o600 + n),
        )
        .unwrap();
    }
    let tar = m.dir.path().join("t.tar");
    let made = std::process::Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("d")
        .status()
        .unwrap();
    assert!(made.success());
    let out = std::process::Command::new("tar")
        .arg("xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 0..5 {
        let path = format!("/d/f{n}");
        assert_eq!(versions_of(&m, &path), 1, "{path}");
        let meta = std::fs::metadata(m.path(&path[1..])).unwrap();
        let orig = std::fs::metadata(src.join(&path[1..])).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600 + n);
        assert_eq!(meta.mtime(), orig.mtime());
    }
}

/// Once its writers have closed, a file that a reader still holds takes a
/// chmod as a version of its own at once (nothing would commit it later).
#[test]
fn a_chmod_after_the_last_writer_closed_is_committed_at_once() {
    let m = Mounted::new();
    let f = m.path("f");
    let mut writer = std::fs::File::create(&f).unwrap();
    writer.write_all(b"abc").unwrap();
    let reader = std::fs::File::open(&f).unwrap();
    drop(writer);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o604)).unwrap();
    let other = m.second_mount();
    assert_eq!(mode_of(&other.path("f")) & 0o7777, 0o604);
    drop(reader);
    assert_eq!(versions_of(&m, "/f"), 2);
}

#[test]
fn a_chown_to_the_owners_a_file_has_makes_no_version() {
    use std::os::unix::fs::MetadataExt;
    let m = Mounted::new();
    std::fs::write(m.path("j"), b"journal").unwrap();
    let before = mount::commits(&m, "j");
    let meta = std::fs::metadata(m.path("j")).unwrap();
    // What SQLite as root does to a journal it opened only to read.
    let reader = std::fs::File::open(m.path("j")).unwrap();
    std::os::unix::fs::fchown(&reader, Some(meta.uid()), Some(meta.gid())).unwrap();
    std::os::unix::fs::chown(m.path("j"), Some(meta.uid()), None).unwrap();
    drop(reader);
    assert_eq!(
        mount::commits(&m, "j"),
        before,
        "an unchanged owner is no change"
    );
    std::os::unix::fs::chown(m.path("j"), Some(meta.uid() + 1), None).unwrap();
    assert_eq!(mount::commits(&m, "j"), before + 1);
    assert_eq!(
        std::fs::metadata(m.path("j")).unwrap().uid(),
        meta.uid() + 1
    );
}
