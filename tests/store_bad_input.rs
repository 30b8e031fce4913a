//! Damaged stores: corrupt or truncated version files, partial log lines, blocks
//! whose content does not match their name, missing blocks, leftover temp files,
//! a newer format. Each gives a clear error naming the path and the hash, never
//! a panic and never wrong bytes.

#[path = "common/store.rs"]
mod store_common;

use std::fs;

use globofs::store::{Store, StoreConfig, StoreError};
use store_common::*;

fn version_file(vol: &Vol, path: &str) -> std::path::PathBuf {
    let store = vol.store();
    let id = *store.version_ids(&vp(path)).unwrap().last().unwrap();
    store
        .path_dir(&vp(path))
        .join("versions")
        .join(id.to_string())
}

/// `get PATH -` must fail with exit 3 and a message containing every needle.
fn get_fails(vol: &Vol, path: &str, needles: &[&str]) -> String {
    let out = vol.cli(["get", path, "-"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "get {path}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    stderr
}

#[test]
fn a_corrupt_or_truncated_version_file_is_named() {
    let vol = Vol::new();
    let store = vol.store();
    put(&store, &vp("/garbage"), &data(2 * BS, 1));
    put(&store, &vp("/cut"), &data(3 * BS, 2));
    let garbage = version_file(&vol, "/garbage");
    fs::write(&garbage, b"\x00\xffnot a version at all").unwrap();
    let cut = version_file(&vol, "/cut");
    let bytes = fs::read(&cut).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();

    for (path, file) in [("/garbage", &garbage), ("/cut", &cut)] {
        let err = store.versions(&vp(path)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        // The only version is unreadable: the file reads as absent, and the
        // warning names the damaged version file.
        let out = vol.cli(["get", path, "-"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty(), "no bytes for {path}");
        assert!(
            text(&out.stderr).contains(&file.display().to_string()),
            "{}",
            text(&out.stderr)
        );
        let log = vol.cli(["log", path]);
        assert_eq!(log.status.code(), Some(3));
        assert!(text(&log.stderr).contains(&file.display().to_string()));
    }
    let cut_err = store.versions(&vp("/cut")).unwrap_err().to_string();
    assert!(
        cut_err.contains("truncated") || cut_err.contains("hash lines"),
        "{cut_err}"
    );
    // verify counts them as bad version files and exits 3.
    let out = vol.cli(["verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("2 bad version files"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_torn_newest_version_leaves_the_previous_one_current() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/f");
    let one = data(2 * BS, 1);
    put(&store, &path, &one);
    put(&store, &path, &data(2 * BS, 2));
    let newest = version_file(&vol, "/f");
    let bytes = fs::read(&newest).unwrap();
    fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    // Never a mix of the two: the previous version, whole, for a reader
    // (the writer knows its own newest version whole without reading it).
    assert_eq!(content(&vol.store(), &path), one);
}

#[test]
fn wrong_header_values_are_refused_and_unknown_keys_ignored() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/f");
    let version = put(&store, &path, &data(BS + 1, 1));
    let file = version_file(&vol, "/f");
    let good = fs::read_to_string(&file).unwrap();
    // A key from a later revision is ignored.
    fs::write(
        &file,
        good.replacen("\n\n", "\nfuture-key some value\n\n", 1),
    )
    .unwrap();
    assert_eq!(store.read_version(&path, version.id).unwrap(), version);
    for (from, to) in [
        ("globofs-version 1", "globofs-version 2"),
        ("size 4097", "size 409700"),
        ("block-size 4096", "block-size 4095"),
        ("kind file", "kind fifo"),
        ("mode 644", "mode 99999"),
        ("path f", "path ../f"),
        ("path f", "path g"),
    ] {
        fs::write(&file, good.replace(from, to)).unwrap();
        let err = store
            .read_version(&path, version.id)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{to}: {err}");
    }
    fs::write(
        &file,
        good.replace("globofs-version 1", "globofs-version 2"),
    )
    .unwrap();
    let err = store
        .read_version(&path, version.id)
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer"), "{err}");
    // A bad hash line.
    let hash = version.hashes[0].to_string();
    fs::write(&file, good.replace(&hash, &hash.to_uppercase())).unwrap();
    assert!(store.read_version(&path, version.id).is_err());
}

#[test]
fn a_missing_block_is_an_error_naming_path_and_hash() {
    let vol = Vol::new();
    let store = vol.store();
    let version = put(&store, &vp("/dir/f"), &data(3 * BS, 1));
    let hash = version.hashes[1];
    fs::remove_file(block_path(&vol, &hash)).unwrap();
    let err = read_err(&store, "/dir/f");
    assert!(matches!(err, StoreError::MissingBlock { .. }), "{err}");
    assert!(err.to_string().contains("/dir/f") && err.to_string().contains(&hash.to_string()));
    get_fails(&vol, "/dir/f", &["/dir/f", &hash.to_string()]);
    // get to a file leaves no partial file behind.
    let dest = vol.scratch("out").join("f");
    let out = vol.cli(["get".as_ref(), "/dir/f".as_ref(), dest.as_os_str()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!dest.exists(), "no partial output");
    let out = vol.cli(["verify"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 missing") && stdout.contains(&hash.to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("/dir/f"), "{stdout}");
}

fn read_err(store: &Store, path: &str) -> StoreError {
    let version = store.live(&vp(path)).unwrap().unwrap();
    let mut out = Vec::new();
    store.copy_to(&version, &mut out).unwrap_err()
}

#[test]
fn a_block_that_does_not_match_its_name_is_caught() {
    let vol = Vol::new();
    let mut store = vol.store();
    let bytes = data(2 * BS, 3);
    let version = put(&store, &vp("/f"), &bytes);
    let hash = version.hashes[0];
    let block = block_path(&vol, &hash);
    flip_byte(&block, 100);
    // Read with verify-on-read: an error naming the hash, no bytes.
    store.config_mut().verify_reads = true;
    let err = read_err(&store, "/f");
    assert!(matches!(err, StoreError::BadBlock { .. }), "{err}");
    assert!(err.to_string().contains(&hash.to_string()), "{err}");
    let mut buf = vec![0u8; 10];
    assert!(store.read_at(&version, 50, &mut buf).is_err());
    // Block 1 is fine and still reads.
    let n = store.read_at(&version, BS as u64, &mut buf).unwrap();
    assert_eq!(&buf[..n], &bytes[BS..BS + n]);
    // `get` checks every block it copies, with or without verify-on-read.
    get_fails(&vol, "/f", &["/f", &hash.to_string()]);
    // verify names the block by hash and by path, and exits 3.
    let out = vol.cli(["verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 corrupt"), "{stdout}");
    assert!(stdout.contains(&hash.to_string()), "{stdout}");
    assert!(stdout.contains(&block.display().to_string()), "{stdout}");
    let json = vol.cli(["verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 1);
    // A compressed block with damage is caught the same way.
    let zvol = Vol::with("compression: zstd\n", false);
    let zstore = zvol.store();
    let zversion = put(&zstore, &vp("/z"), &data(BS, 4));
    let zst = zvol.dir().join(format!(
        "hashes/{}.zst",
        zversion.hashes[0].relative_path().display()
    ));
    let len = fs::metadata(&zst).unwrap().len() as usize;
    flip_byte(&zst, len / 2);
    let out = zvol.cli(["get", "/z", "-"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&zversion.hashes[0].to_string()));
    let out = zvol.cli(["verify"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn leftover_temp_files_and_partial_log_lines_change_nothing() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(BS + 5, 5);
    put(&store, &vp("/f"), &bytes);
    fs::write(vol.dir().join("tmp/block-abandoned"), data(BS, 6)).unwrap();
    fs::write(
        vol.dir().join("tmp/version-abandoned"),
        b"globofs-version 1\nid",
    )
    .unwrap();
    append(&store.path_dir(&vp("/f")).join("versions/log"), b"179");
    let out = vol.cli(["get", "/f", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, bytes);
    vol.ok(["verify"]);
    let ls = vol.ok(["ls"]);
    assert_eq!(ls, "f\n");
}

#[test]
fn a_newer_store_format_is_refused_and_unknown_keys_ignored() {
    let vol = Vol::new();
    let format = vol.dir().join("format");
    let good = fs::read_to_string(&format).unwrap();
    fs::write(&format, format!("{good}later-key value\n")).unwrap();
    vol.ok(["ls"]);
    fs::write(&format, good.replace("globofs-store 1", "globofs-store 2")).unwrap();
    let out = vol.cli(["ls"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("newer") && stderr.contains(&format.display().to_string()),
        "{stderr}"
    );
    let err = Store::open(&vol.dir(), StoreConfig::from_spec(&vol.spec).unwrap()).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerFormat { found: 2, .. }),
        "{err}"
    );
    fs::write(&format, "garbage\n").unwrap();
    let out = vol.cli(["ls"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_arguments_fail_cleanly() {
    let vol = Vol::new();
    let cases: [&[&str]; 7] = [
        &["get", "/nope", "-"],
        &["get", "/../etc/passwd", "-"],
        &["log", "/nope"],
        &["restore", "/nope", "--version", "not-an-id"],
        &["rm", "/"],
        &["mv", "/a", "/b"],
        &["get", "/f", "-", "--version", "1.000000000"],
    ];
    for args in cases {
        let out = vol.cli(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("globofs: "), "{args:?}");
    }
}

/// A version file that cannot be read at all (a directory or a dangling
/// symlink in its place) is skipped like one of garbage: the path's earlier
/// version is current, and the rest of the directory still lists (QA: one
/// such file made the whole directory unlistable, in the mount too).
#[test]
fn an_unreadable_version_file_is_skipped_not_fatal_to_its_directory() {
    let vol = Vol::new();
    let store = vol.store();
    let one = data(BS, 1);
    put(&store, &vp("/d/victim"), &one);
    put(&store, &vp("/d/victim"), &data(BS, 2));
    put(&store, &vp("/d/other"), &data(BS, 3));
    for damage in ["dir", "symlink"] {
        let newest = version_file(&vol, "/d/victim");
        fs::remove_file(&newest)
            .or_else(|_| fs::remove_dir(&newest))
            .unwrap();
        match damage {
            "dir" => fs::create_dir(&newest).unwrap(),
            _ => std::os::unix::fs::symlink("/nowhere", &newest).unwrap(),
        }
        let store = vol.store();
        assert_eq!(content(&store, &vp("/d/victim")), one, "{damage}");
        let out = vol.cli(["ls", "/d"]);
        assert!(out.status.success(), "{damage}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "other\nvictim\n", "{damage}");
        assert!(
            text(&out.stderr).contains("unreadable"),
            "{damage}: {}",
            text(&out.stderr)
        );
    }
}
