//! The scripting CLI on a store made by `globofs init` + `globofs reconcile`:
//! put/get/ls/log/restore/rm/mv/mkdir/gc/prune/verify, exit codes, --json.

#[path = "common/store.rs"]
mod store_common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use store_common::*;

/// A local tree with awkward names, modes, mtimes, a symlink and an empty dir.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("sub/deeper/big.bin"), data(10 * BS + 7, 1)).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    for name in [
        &b"versions"[..],
        b"hashes",
        b"log",
        b"a b",
        b"new\nline",
        b"bad\xffname",
    ] {
        fs::write(local(root, name), name).unwrap();
    }
    let script = root.join("run.sh");
    fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/deeper/big.bin", root.join("link")).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_348_096_782, 553_456_124);
    fs::File::options()
        .write(true)
        .open(root.join("zero"))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Compares two local trees: names, kinds, bytes, modes, file mtimes, link targets.
fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "{} vs {}", a.display(), b.display());
    for name in names_a {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
        } else {
            assert_eq!(
                fs::read(&pa).unwrap(),
                fs::read(&pb).unwrap(),
                "{}",
                pa.display()
            );
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{}", pa.display());
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "{}",
                pa.display()
            );
        }
    }
}

#[test]
fn put_and_get_a_tree_round_trip() {
    let vol = Vol::new();
    let src = vol.scratch("src");
    make_tree(&src);
    vol.ok(["put".as_ref(), src.as_os_str(), "/backup".as_ref()]);
    let out = vol.scratch("out").join("copy");
    vol.ok(["get".as_ref(), "/backup".as_ref(), out.as_os_str()]);
    assert_same_tree(&src, &out);
    // One line per entry, names escaped.
    let listing = vol.ok(["ls", "-R", "/backup"]);
    for line in [
        "/backup/%76ersions",
        "/backup/%68ashes",
        "/backup/log",
        "/backup/a b",
        "/backup/new%0Aline",
        "/backup/bad%FFname",
        "/backup/empty",
        "/backup/sub/deeper/big.bin",
    ] {
        assert!(
            listing.lines().any(|l| l == line),
            "{line} not in:\n{listing}"
        );
    }
    assert_eq!(listing.lines().count(), 13, "{listing}");
    let long = vol.ok(["ls", "-l", "/backup"]);
    assert!(
        long.lines()
            .any(|l| l.starts_with("-0750") && l.ends_with(" run.sh")),
        "{long}"
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with('l') && l.ends_with("link -> sub/deeper/big.bin"))
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with('d') && l.ends_with(" empty"))
    );
    let json: serde_json::Value =
        serde_json::from_str(&vol.ok(["ls", "--json", "/backup/sub/deeper"])).unwrap();
    assert_eq!(json[0]["size"], 10 * BS as u64 + 7);
    assert_eq!(json[0]["kind"], "file");
    // A single file to stdout, byte-exact.
    let out = vol.cli(["get", "/backup/sub/deeper/big.bin", "-"]);
    assert_eq!(out.stdout, data(10 * BS + 7, 1));
    // A second put of the same tree adds no block.
    let blocks = store_blocks(&vol).len();
    vol.ok(["put".as_ref(), src.as_os_str(), "/again".as_ref()]);
    assert_eq!(store_blocks(&vol).len(), blocks);
}

#[test]
fn history_commands() {
    // Three quick puts are three versions only without coalescing.
    let vol = Vol::with("retention:\n  coalesce_within: 0s\n", false);
    let dir = vol.scratch("files");
    let file = dir.join("f");
    for i in 0..3 {
        fs::write(&file, data(BS + i, i as u64)).unwrap();
        vol.ok(["put".as_ref(), file.as_os_str(), "/f".as_ref()]);
    }
    let log = vol.ok(["log", "/f"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[2].starts_with('*') && !lines[0].starts_with('*'),
        "{log}"
    );
    let first = lines[0].split_whitespace().next().unwrap().to_string();
    let old = vol.cli(["get", "/f", "-", "--version", &first]);
    assert_eq!(old.stdout, data(BS, 0));
    let restored = vol.ok(["restore", "/f", "--version", &first]);
    assert!(restored.contains("restored as version"), "{restored}");
    assert_eq!(vol.cli(["get", "/f", "-"]).stdout, data(BS, 0));
    let json: serde_json::Value = serde_json::from_str(&vol.ok(["log", "--json", "/f"])).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[3]["current"], true);
    assert_eq!(list[0]["version"], first.as_str());

    vol.ok(["mv", "/f", "/g"]);
    let log = vol.ok(["log", "/g"]);
    assert!(log.contains("from=/f@"), "{log}");
    vol.ok(["rm", "/g"]);
    assert_eq!(vol.ok(["ls"]), "");
    let log = vol.ok(["log", "/g"]);
    assert!(log.lines().last().unwrap().contains("tombstone"), "{log}");
    assert_eq!(vol.cli(["get", "/g", "-"]).status.code(), Some(1));

    vol.ok(["mkdir", "-p", "/x/y/z"]);
    vol.ok(["mkdir", "-p", "/x/y/z"]);
    assert_eq!(vol.ok(["ls", "-R"]), "/x\n/x/y\n/x/y/z\n");
    assert_eq!(vol.cli(["rm", "/x"]).status.code(), Some(1), "not empty");
    vol.ok(["rm", "-r", "/x"]);
    assert_eq!(vol.ok(["ls", "-R"]), "");
}

#[test]
fn gc_prune_and_verify_commands() {
    // Three quick puts make a history to prune only without coalescing.
    let vol = Vol::with("retention:\n  keep_last: 1\n  coalesce_within: 0s\n", false);
    let dir = vol.scratch("files");
    let file = dir.join("f");
    for i in 0..3 {
        fs::write(&file, data(2 * BS, 10 + i)).unwrap();
        vol.ok(["put".as_ref(), file.as_os_str(), "/f".as_ref()]);
    }
    assert_eq!(store_blocks(&vol).len(), 6);
    let prune: serde_json::Value = serde_json::from_str(&vol.ok(["prune", "--json"])).unwrap();
    assert_eq!(prune["versions_removed"], 2);
    let gc: serde_json::Value = serde_json::from_str(&vol.ok(["gc", "--json"])).unwrap();
    assert_eq!(gc["blocks_deleted"], 4);
    assert_eq!(store_blocks(&vol).len(), 2);
    let text = vol.ok(["gc"]);
    assert!(text.starts_with("gc: "), "{text}");
    let verify = vol.ok(["verify"]);
    assert!(verify.contains("2 blocks checked, 0 corrupt"), "{verify}");
    let json: serde_json::Value = serde_json::from_str(&vol.ok(["verify", "--json"])).unwrap();
    assert_eq!(json["blocks_checked"], 2);
    assert_eq!(vol.cli(["get", "/f", "-"]).stdout, data(2 * BS, 12));
}

#[test]
fn usage_and_spec_errors_have_their_exit_codes() {
    let vol = Vol::new();
    // No spec: usage (2).
    let out = std::process::Command::new(bin())
        .args(["ls"])
        .env_remove("GLOBOFS_SPEC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // An unknown flag: usage (2).
    assert_eq!(vol.cli(["ls", "--bogus"]).status.code(), Some(2));
    // A missing local source: input (1).
    assert_eq!(
        vol.cli(["put", "/does/not/exist", "/x"]).status.code(),
        Some(1)
    );
    // A spec whose store was never reconciled: failure (3), saying what to do.
    let spec = vol.tmp.path().join("other.yaml");
    let text = fs::read_to_string(&vol.spec_path).unwrap().replace(
        &vol.spec.volume.display().to_string(),
        &vol.tmp.path().join("nowhere").display().to_string(),
    );
    fs::write(&spec, text).unwrap();
    let out = std::process::Command::new(bin())
        .arg("--spec")
        .arg(&spec)
        .arg("ls")
        .output()
        .unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(store_common::text(&out.stderr).contains("reconcile"));
}
