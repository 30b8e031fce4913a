//! fsync and flush (close) over a real mount: fsync commits a version while the
//! file stays open, a close without writes commits nothing, and every close of a
//! written descriptor (also a duplicate) commits what was written.

#[path = "common/mount.rs"]
mod mount;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{Mounted, commits, version_files};

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
    let before = commits(&m, "f");
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.write_all_at(b"b", 0).unwrap();
    let dup = f.try_clone().unwrap();
    drop(dup); // close(2) of the duplicate: a flush
    assert_eq!(commits(&m, "f"), before + 1);
    f.write_all_at(b"c", 1).unwrap();
    drop(f);
    assert_eq!(commits(&m, "f"), before + 2);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"bcaa");
}

/// The mount's worker process (the child of the supervisor the test started).
fn worker_pids(m: &Mounted) -> Vec<String> {
    let pid = m.pid().expect("the mount runs").to_string();
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid])
        .output()
        .expect("run pgrep");
    let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    pids.push(pid);
    pids
}

#[test]
fn fsync_is_one_fdatasync_of_the_redo_file_not_a_flush_of_the_filesystem() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        println!("skipped: strace is not installed (scripts/test.sh installs it)");
        return;
    }
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/warm"), b"first file").unwrap();
    let trace = m.dir.path().join("trace");
    let mut strace = std::process::Command::new("strace");
    strace.args([
        "-f",
        "-qq",
        "-y",
        "-e",
        "trace=syncfs,sync,fsync,fdatasync",
        "-o",
    ]);
    strace.arg(&trace);
    for pid in worker_pids(&m) {
        strace.args(["-p", &pid]);
    }
    let mut strace = strace
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run strace");
    // strace attaches within a moment; a trace line from a probe fsync says so.
    let probe = m.path("d/probe");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&probe)
            .unwrap();
        f.write_all(b"p").unwrap();
        f.sync_all().unwrap();
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("fdatasync(") || text.contains("fsync(") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "strace never attached"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::write(&trace, b"").unwrap();
    // A new file written and fsynced, an overwrite and fsync, a rename and
    // an fsync of its directory.
    let mut f = std::fs::File::create(m.path("d/new")).unwrap();
    f.write_all(&vec![7u8; 300_000]).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(b"over", 10).unwrap();
    f.sync_data().unwrap();
    drop(f);
    std::fs::rename(m.path("d/new"), m.path("d/renamed")).unwrap();
    std::fs::File::open(m.path("d"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = strace.kill();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let count = |call: &str| text.lines().filter(|l| l.contains(call)).count();
    assert_eq!(
        count("syncfs("),
        0,
        "an fsync flushed the whole filesystem:\n{text}"
    );
    assert_eq!(
        count(" sync("),
        0,
        "an fsync flushed every filesystem:\n{text}"
    );
    // Three durable points (fsync, fdatasync, fsync of the directory), each
    // one fdatasync of the mount's redo file (FORMAT §14), nothing else.
    let syncs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .collect();
    assert_eq!(syncs.len(), 3, "one flush per durable point:\n{text}");
    assert!(
        syncs
            .iter()
            .all(|l| l.contains("fdatasync(") && l.contains("/state/redo/")),
        "every flush is of the redo file:\n{text}"
    );
    assert_eq!(
        std::fs::read(m.path("d/renamed")).unwrap()[10..14],
        *b"over"
    );
}

#[test]
fn a_file_committed_again_and_again_keeps_a_version_a_minute_and_its_directory_times() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/db"), b"created").unwrap();
    let dir_before = std::fs::metadata(m.path("d")).unwrap().modified().unwrap();
    // A database committing row by row: write and fsync, 40 times.
    let f = OpenOptions::new().write(true).open(m.path("d/db")).unwrap();
    for n in 0..40u64 {
        f.write_all_at(format!("row {n:03}").as_bytes(), n * 7)
            .unwrap();
        f.sync_data().unwrap();
    }
    drop(f);
    let versions = version_files(&m, "d/db");
    assert_eq!(
        versions.len(),
        2,
        "its creation and its last version: {versions:?}"
    );
    // `echo x > f`, twice: a truncating open and a write, closed. The first
    // keeps the fsynced version (a close is not durable: replacing that
    // version by it could lose what fsync promised); the second replaces
    // the first (both lazy).
    std::fs::write(m.path("d/db"), b"echoed\n").unwrap();
    assert_eq!(version_files(&m, "d/db").len(), 3);
    std::fs::write(m.path("d/db"), b"echoed again\n").unwrap();
    assert_eq!(version_files(&m, "d/db").len(), 3);
    assert_eq!(std::fs::read(m.path("d/db")).unwrap(), b"echoed again\n");
    // Dropping edits moved no name: the directory's times stay.
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    assert_eq!(
        std::fs::metadata(m.path("d")).unwrap().modified().unwrap(),
        dir_before
    );
}
