//! The redo log over a real mount (FORMAT §14): an `fsync` is one
//! `fdatasync` of the mount's redo file, and what it promised survives the
//! loss of every layout write the page cache still held. A power loss is
//! played here by killing the mount with SIGKILL and then deleting what a
//! crash may take from the seed layout: the newest version files and the
//! blocks they alone name.

#[path = "common/mount.rs"]
mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;

use common::{Mounted, Rng, node_dir, version_files};

/// Deletes `name`'s newest version file and every block file its versions
/// name that `keep` (bytes the test still needs elsewhere) does not.
fn lose_newest_layout(m: &Mounted, name: &str) {
    let newest = version_files(m, name)
        .pop()
        .unwrap_or_else(|| panic!("{name} has no version file"));
    let text = std::fs::read_to_string(&newest).unwrap();
    std::fs::remove_file(&newest).unwrap();
    let store = node_dir(m);
    // The hashes follow the blank line of the version file.
    let hashes = text.split("\n\n").nth(1).unwrap_or_default();
    // `aa/bb/cc/dd/<rest>` under a `hashes/` directory.
    let fanned = |top: std::path::PathBuf, hash: &str| {
        top.join(&hash[..2])
            .join(&hash[2..4])
            .join(&hash[4..6])
            .join(&hash[6..8])
            .join(&hash[8..])
    };
    for hash in hashes.lines().filter(|l| l.len() == 64) {
        let raw = fanned(store.join("hashes"), hash);
        let _ = std::fs::remove_file(&raw);
        let _ = std::fs::remove_file(raw.with_extension("zst"));
        // Its link under the path too (a crash can take both names).
        let _ = std::fs::remove_file(fanned(store.join("root").join(name).join("hashes"), hash));
    }
}

fn redo_files(m: &Mounted) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(node_dir(m).join("state/redo"))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn what_fsync_promised_survives_losing_the_layout_writes_and_a_killed_mount() {
    let mut m = Mounted::new();
    let mut rng = Rng::new(18);
    // A new file of several blocks, fsynced.
    let first = rng.bytes(70_000);
    let mut f = std::fs::File::create(m.path("db")).unwrap();
    f.write_all(&first).unwrap();
    f.sync_all().unwrap();
    // Then an overwrite in the middle, fsynced through the same handle.
    let mut second = first.clone();
    second[30_000..30_100].copy_from_slice(&[0xab; 100]);
    f.write_all_at(&[0xab; 100], 30_000).unwrap();
    f.sync_data().unwrap();
    // Another process of the node sees the fsynced version at once, while
    // only the redo record makes it durable (the layout is not flushed).
    let out = m.globofs(&["get", "/db", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, second, "get sees what fsync committed");
    drop(f);
    // A directory and a file in it, made durable by an fsync of the
    // directory (the "write, fsync, rename, fsync dir" pattern).
    std::fs::create_dir(m.path("d")).unwrap();
    let mut tmp = std::fs::File::create(m.path("d/new.tmp")).unwrap();
    tmp.write_all(b"renamed into place").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    std::fs::rename(m.path("d/new.tmp"), m.path("d/final")).unwrap();
    std::fs::File::open(m.path("d"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(redo_files(&m).len(), 1, "the mount keeps one redo file");

    m.kill();
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&m.mnt)
        .status();
    // The crash took the newest layout writes of both files.
    lose_newest_layout(&m, "db");
    let store = node_dir(&m);
    let final_versions = store.join("root/d/final/versions");
    let newest_final = std::fs::read_dir(&final_versions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .max()
        .unwrap();
    std::fs::remove_file(&newest_final).unwrap();

    m.start();
    assert_eq!(
        std::fs::read(m.path("db")).unwrap(),
        second,
        "the fsynced overwrite came back whole from the redo log"
    );
    assert_eq!(
        std::fs::read(m.path("d/final")).unwrap(),
        b"renamed into place"
    );
    assert!(
        m.log()
            .contains("put back versions that were durable only in the redo log"),
        "the replay says what it did: {}",
        m.log()
    );
    // The dead mount's redo file is gone once replayed; the new mount has
    // made none (nothing fsynced yet).
    assert!(redo_files(&m).is_empty(), "left: {:?}", redo_files(&m));
    // The store agrees with itself: verify finds nothing damaged.
    let out = m.globofs(&["verify"]);
    assert!(
        out.status.success(),
        "verify after the replay: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_mount_killed_right_after_its_redo_record_keeps_the_fsynced_file() {
    // The crash point right after the redo record's fdatasync: the fsync
    // never returned to the program, yet the record is whole, so the next
    // mount has the file (a kill there may keep it; it must never tear it).
    let mut m = Mounted::new();
    std::fs::write(m.path("warm"), b"warm").unwrap();
    m.kill();
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&m.mnt)
        .status();
    m.start_env(&[("GLOBOFS_CRASH_AT", "durable:recorded")]);
    let data = Rng::new(7).bytes(20_000);
    let mut f = std::fs::File::create(m.path("f")).unwrap();
    f.write_all(&data).unwrap();
    assert!(f.sync_all().is_err(), "the mount died inside the fsync");
    drop(f);
    m.kill();
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&m.mnt)
        .status();
    lose_newest_layout(&m, "f");
    m.start();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), data);
}
