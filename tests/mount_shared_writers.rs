//! Several handles on one file of one mount, and two mounts of one node: writers share the file's writes
//! (appends interleave, closes never undo another handle's writes, a truncate
//! by path is not reverted), and every handle reads what was written, as on a
//! local file system. Each case was a bug found by black-box testing.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{Mounted, names, store_get, version_files};

fn appender(m: &Mounted, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.path(name))
        .unwrap()
}

#[test]
fn two_appenders_on_an_existing_file_keep_every_line() {
    let m = Mounted::new();
    std::fs::write(m.path("log"), b"start\n").unwrap();
    // A daemon keeps its log open; a cron job appends a line and closes.
    let mut daemon = appender(&m, "log");
    daemon.write_all(b"daemon-1\n").unwrap();
    let mut cron = appender(&m, "log");
    cron.write_all(b"cron\n").unwrap();
    drop(cron);
    daemon.write_all(b"daemon-2\n").unwrap();
    drop(daemon);
    let want = b"start\ndaemon-1\ncron\ndaemon-2\n";
    assert_eq!(std::fs::read(m.path("log")).unwrap(), want);
    assert_eq!(store_get(&m, "/log"), want);
}

#[test]
fn closing_one_writer_never_undoes_another_writers_bytes() {
    let m = Mounted::new();
    let old = vec![b'.'; 3 * 4096];
    std::fs::write(m.path("f"), &old).unwrap();
    let open_rw = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.path("f"))
            .unwrap()
    };
    let (a, b) = (open_rw(), open_rw());
    a.write_all_at(b"AAAAAAAAAA", 0).unwrap();
    b.write_all_at(b"BBBBBBBBBB", 8192).unwrap();
    // Each sees the other's bytes at once.
    let mut seen = [0u8; 10];
    a.read_exact_at(&mut seen, 8192).unwrap();
    assert_eq!(&seen, b"BBBBBBBBBB");
    drop(a);
    drop(b);
    let mut want = old;
    want[..10].copy_from_slice(b"AAAAAAAAAA");
    want[8192..8202].copy_from_slice(b"BBBBBBBBBB");
    assert!(std::fs::read(m.path("f")).unwrap() == want);
    assert!(store_get(&m, "/f") == want);
}

#[test]
fn a_truncate_by_path_is_not_undone_by_a_handle_opened_before_it() {
    let m = Mounted::new();
    // logrotate's copytruncate: the daemon's log is emptied under it.
    std::fs::write(m.path("app.log"), b"old-line\n").unwrap();
    let mut daemon = appender(&m, "app.log");
    daemon.write_all(b"daemon-1\n").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("app.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    daemon.write_all(b"daemon-2\n").unwrap();
    drop(daemon);
    assert_eq!(std::fs::read(m.path("app.log")).unwrap(), b"daemon-2\n");

    // truncate(2) by path while a read-write handle is open.
    std::fs::write(m.path("f"), vec![b'q'; 9000]).unwrap();
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    let c = mount::cpath(&m.path("f"));
    // SAFETY: a valid C path.
    mount::cvt(unsafe { libc::truncate(c.as_ptr(), 20) }).unwrap();
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 20);
    fd.write_all_at(b"W", 20).unwrap();
    drop(fd);
    let mut want = vec![b'q'; 20];
    want.push(b'W');
    assert_eq!(std::fs::read(m.path("f")).unwrap(), want);
    assert_eq!(store_get(&m, "/f"), want);
}

#[test]
fn a_writer_reads_its_own_bytes_after_another_handle_read_the_page() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), vec![b'.'; 8192]).unwrap();
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    // Part of a page: the kernel cannot mark the page as known from this write.
    w.write_all_at(&[b'W'; 100], 4096).unwrap();
    let r = std::fs::File::open(m.path("f")).unwrap();
    let mut all = vec![0u8; 8192];
    r.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(&all[4096..4196], &[b'W'; 100][..], "the reader's view");
    let mut mine = [0u8; 8];
    w.read_exact_at(&mut mine, 4096).unwrap();
    assert_eq!(&mine, b"WWWWWWWW", "the writer's view");
}

#[test]
fn several_processes_creating_one_file_at_once_all_open_it() {
    let m = Mounted::new();
    const THREADS: usize = 6;
    const FILES: usize = 300;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = &m;
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for i in 0..FILES {
                        // O_CREAT without O_EXCL: whoever comes second opens it.
                        let opened = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(m.path(&format!("f{i}")));
                        match opened.and_then(|mut f| f.write_all(&[b'a' + t as u8])) {
                            Ok(()) => {}
                            Err(err) => failed.push(format!("thread {t} f{i}: {err}")),
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failed opens: {failures:?}",
        failures.len()
    );
    for i in 0..FILES {
        let bytes = std::fs::read(m.path(&format!("f{i}"))).unwrap();
        assert_eq!(bytes.len(), THREADS, "f{i}: {bytes:?}");
    }
}

/// A file open for writing in one mount while another mount of the node
/// (or a peer's version applied by sync) replaces it: the writer's close
/// must not silently supersede that version. Its version builds on the
/// base it was opened on, so the two are concurrent: the later one is the
/// file, the other is kept as its conflict copy (QA: the first writer's
/// bytes were lost, the log a straight line).
#[test]
fn a_writer_whose_base_was_replaced_meanwhile_keeps_the_other_version_as_a_conflict_copy() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"base").unwrap();
    let other = m.second_mount();
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    writer.write_all_at(b"HERE", 0).unwrap();
    // Meanwhile the other mount saves a new content (close commits it).
    std::fs::write(other.path("f"), b"elsewhere").unwrap();
    drop(writer);
    let names: Vec<String> = std::fs::read_dir(&other.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let copies: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("f.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{names:?}");
    let file = store_get(&m, "/f");
    let copy = store_get(&m, &format!("/{}", copies[0]));
    let mut both = [file, copy];
    both.sort();
    assert_eq!(both, [b"HERE".to_vec(), b"elsewhere".to_vec()]);
    // The conflict is listed as open.
    let status = m.globofs(&["status", "--no-blocks"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("sync-conflict"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn a_writer_whose_base_was_coalesced_away_still_keeps_the_other_version_as_a_conflict_copy() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"created").unwrap();
    let other = m.second_mount();
    // An edit by the other mount, which it may drop once it replaces it
    // (young, its own lazy commit, never pushed).
    std::fs::write(other.path("f"), b"base").unwrap();
    // This mount follows the journal twice a second: then it opens "base".
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(m.path("f")).unwrap() != b"base" {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit never showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    writer.write_all_at(b"HERE", 0).unwrap();
    let before = version_files(&m, "f").len();
    std::fs::write(other.path("f"), b"elsewhere").unwrap();
    assert_eq!(
        version_files(&m, "f").len(),
        before,
        "the other mount's save dropped the edit it replaced"
    );
    drop(writer);
    // The writer built on a version that is gone: still concurrent with
    // what replaced it, so neither edit is lost.
    let names = names(&m.mnt);
    let copies: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("f.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{names:?}");
    let file = store_get(&m, "/f");
    let copy = store_get(&m, &format!("/{}", copies[0]));
    let mut both = [file, copy];
    both.sort();
    assert_eq!(both, [b"HERE".to_vec(), b"elsewhere".to_vec()]);
}

/// `>>` through a second mount of the node whose kernel still holds the
/// file's old size lands at the end, not over the other mount's bytes or
/// past the end (QA: lines overwritten and NUL bytes when two mounts
/// appended to one log); and a logger holding the file open on one mount
/// while the other appends keeps both in one file, without a conflict copy.
#[test]
fn appends_through_two_mounts_of_a_node_land_at_the_end_of_one_file() {
    let m = Mounted::new();
    let other = m.second_mount();
    std::fs::write(m.path("log"), b"aaaa\n").unwrap();
    // The other mount's kernel learns size 5.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(other.path("log")).unwrap() != b"aaaa\n" {
        assert!(std::time::Instant::now() < deadline, "never showed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::metadata(other.path("log")).unwrap().len(), 5);
    appender(&m, "log").write_all(b"bbbbbbbb\n").unwrap();
    // At once: before the other mount's journal follower hears of it.
    appender(&other, "log").write_all(b"x\n").unwrap();
    assert_eq!(store_get(&m, "/log"), b"aaaa\nbbbbbbbb\nx\n");
    // What the other mount shows agrees (its kernel was told).
    assert_eq!(
        std::fs::read(other.path("log")).unwrap(),
        b"aaaa\nbbbbbbbb\nx\n"
    );

    let mut logger = appender(&m, "log");
    logger.write_all(b"held 1\n").unwrap();
    appender(&other, "log").write_all(b"other\n").unwrap();
    logger.write_all(b"held 2\n").unwrap();
    drop(logger);
    let want = b"aaaa\nbbbbbbbb\nx\nother\nheld 1\nheld 2\n";
    assert_eq!(store_get(&m, "/log"), want);
    assert_eq!(std::fs::read(m.path("log")).unwrap(), want);
    assert_eq!(names(&m.mnt), ["log"], "no conflict copy");
}

/// A name another mount of the node removed a moment ago (before this
/// mount's journal follower heard of it) is created again by
/// `open(O_CREAT|O_TRUNC)` (QA: ENOENT from the open, the kernel trusting
/// its cached entry of the removed file).
#[test]
fn a_create_of_a_name_another_mount_just_removed_creates_it() {
    let m = Mounted::new();
    let other = m.second_mount();
    for round in 0..20 {
        std::fs::write(m.path("n"), format!("{round}")).unwrap();
        if round % 2 == 1 {
            // The kernel holds fresh attributes: it sends OPEN at once.
            // Otherwise (dropped at the close) it asks for them first.
            assert!(std::fs::metadata(m.path("n")).is_ok());
        }
        std::fs::remove_file(other.path("n")).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.path("n"))
            .unwrap_or_else(|err| panic!("round {round}: {err}"));
        file.write_all(b"again").unwrap();
        drop(file);
        assert_eq!(store_get(&m, "/n"), b"again");
        std::fs::remove_file(m.path("n")).unwrap();
    }
}

/// Opens `name` relative to the directory `dir` (as a process whose working
/// directory it is would), with `flags`.
fn open_at(dir: &std::fs::File, name: &str, flags: i32) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: `name` is a valid C string; the returned descriptor is owned.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o644) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A directory renamed through another mount of the node: this mount's
/// open directory (a shell's working directory) and open files follow it
/// to the new name, as on a local file system (QA: ENOENT for everything
/// relative to the working directory, and a writer's close brought the old
/// directory back with its file).
#[test]
fn a_directory_renamed_through_another_mount_is_followed_by_open_files_and_directories() {
    let m = Mounted::new();
    let other = m.second_mount();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/f"), b"one\n").unwrap();
    let cwd = std::fs::File::open(m.path("d")).unwrap();
    let mut writer = open_at(&cwd, "f", libc::O_WRONLY | libc::O_APPEND).unwrap();
    // The other mount sees the directory (its journal follower is not needed
    // for its own lookups) and renames it.
    assert_eq!(std::fs::read(other.path("d/f")).unwrap(), b"one\n");
    std::fs::rename(other.path("d"), other.path("e")).unwrap();
    // Within the journal follower's poll, names relative to the open
    // directory resolve under the new name.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reader = loop {
        match open_at(&cwd, "f", libc::O_RDONLY) {
            Ok(file) => break file,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never followed the rename: {err}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    drop(reader);
    writer.write_all(b"two\n").unwrap();
    drop(writer);
    drop(open_at(&cwd, "g", libc::O_WRONLY | libc::O_CREAT).unwrap());
    assert_eq!(store_get(&m, "/e/f"), b"one\ntwo\n");
    assert_eq!(names(&m.mnt), ["e"], "the old name came back");
    assert_eq!(names(&m.path("e")), ["f", "g"]);

    // A file renamed there while written here: its writes go to the new name.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("e/g"))
        .unwrap();
    writer.write_all(b"before\n").unwrap();
    std::fs::rename(other.path("e/g"), other.path("e/h")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while names(&m.path("e")) != ["f", "h"] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            names(&m.path("e"))
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    writer.write_all(b"after\n").unwrap();
    drop(writer);
    assert_eq!(store_get(&m, "/e/h"), b"before\nafter\n");
    assert_eq!(names(&m.path("e")), ["f", "h"], "the old name came back");
}

#[test]
fn a_file_whose_name_becomes_a_directory_through_another_mount_keeps_its_bytes_beside_it() {
    // Found by black-box QA: `rm f; mkdir f` through a second mount while
    // this one had `f` open for writing: its fsync and close failed with
    // EISDIR and the bytes were kept nowhere (4 of 4).
    let m = Mounted::new();
    let other = m.second_mount();
    std::fs::write(m.path("f"), b"old").unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    file.write_all(b"edited").unwrap();
    std::fs::remove_file(other.path("f")).unwrap();
    std::fs::create_dir(other.path("f")).unwrap();
    // This mount's journal follower hears of the directory (it polls every
    // half second).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    file.sync_all().expect("the edit is kept, not refused");
    drop(file);
    assert!(std::fs::metadata(other.path("f")).unwrap().is_dir());
    let copies: Vec<String> = names(&other.mnt)
        .into_iter()
        .filter(|n| n.starts_with("f.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", names(&other.mnt));
    assert_eq!(std::fs::read(other.path(&copies[0])).unwrap(), b"edited");
}
