//! create, open for writing and write over a real mount: close-to-open
//! visibility, one version per close, the data and blocks in the store, and the
//! errors of create/open (EEXIST, ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG).

#[path = "common/mount.rs"]
mod mount;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

use mount::{BLOCK, Mounted, Rng, commits, errno, log_lines, node_dir, store_get, version_files};

#[test]
fn create_new_honours_the_mode_and_o_excl_gives_eexist() {
    let m = Mounted::new();
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(m.path("new"))
        .unwrap();
    drop(f);
    let meta = std::fs::metadata(m.path("new")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.len(), 0);
    let again = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("new"));
    assert_eq!(errno(again), libc::EEXIST);
}

#[test]
fn o_excl_on_a_file_still_being_written_gives_eexist() {
    let m = Mounted::new();
    let _first = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("pending"))
        .unwrap();
    let second = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("pending"));
    assert_eq!(errno(second), libc::EEXIST);
}

#[test]
fn create_errors() {
    let m = Mounted::new();
    std::fs::write(m.path("file"), b"x").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    assert_eq!(
        errno(std::fs::write(m.path("missing/f"), b"x")),
        libc::ENOENT
    );
    assert_eq!(errno(std::fs::write(m.path("file/f"), b"x")), libc::ENOTDIR);
    assert_eq!(errno(std::fs::write(m.path("dir"), b"x")), libc::EISDIR);
    assert_eq!(
        errno(OpenOptions::new().write(true).open(m.path("dir"))),
        libc::EISDIR
    );
    assert_eq!(
        errno(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(m.path("dir"))
        ),
        libc::EISDIR
    );
    assert_eq!(
        errno(std::fs::write(m.path(&"x".repeat(256)), b"x")),
        libc::ENAMETOOLONG
    );
    // Opening a missing file without O_CREAT.
    assert_eq!(
        errno(OpenOptions::new().write(true).open(m.path("absent"))),
        libc::ENOENT
    );
}

#[test]
fn the_writer_sees_its_own_writes_before_close() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"committed").unwrap();
    let before = version_files(&m, "f").len();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.write_all_at(b"CHANGED", 0).unwrap();
    f.write_all_at(b"!", 20).unwrap();
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut buf).unwrap();
    let mut expect = b"CHANGEDed".to_vec();
    expect.resize(20, 0);
    expect.push(b'!');
    assert_eq!(buf, expect);
    assert_eq!(f.metadata().unwrap().len(), 21);
    // Not committed yet. (Counted in-process: a child process closing an
    // inherited descriptor, as at exec, is a close too and commits.)
    assert_eq!(version_files(&m, "f").len(), before);
    drop(f);
    assert_eq!(version_files(&m, "f").len(), before + 1);
    assert_eq!(store_get(&m, "/f"), expect);
}

#[test]
fn a_reader_opened_after_close_sees_the_new_content() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"old content").unwrap();
    let mut w = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    w.write_all(b"NEW").unwrap();
    drop(w);
    let mut r = std::fs::File::open(m.path("f")).unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"NEW content");
}

#[test]
fn overwriting_with_o_trunc_replaces_the_whole_content() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"hello world, a long first version").unwrap();
    std::fs::write(m.path("f"), b"ab").unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"ab");
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 2);
    assert_eq!(store_get(&m, "/f"), b"ab");
    // O_TRUNC without a write empties the file.
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.path("f"))
            .unwrap(),
    );
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 0);
    assert_eq!(store_get(&m, "/f"), b"");
}

#[test]
fn a_file_can_be_opened_again_while_it_is_being_written() {
    let m = Mounted::new();
    // A new file (its writer may be in FUSE passthrough).
    let mut w = std::fs::File::create(m.path("new")).unwrap();
    w.write_all(b"abc").unwrap();
    let r = std::fs::File::open(m.path("new")).unwrap();
    let w2 = OpenOptions::new().write(true).open(m.path("new")).unwrap();
    w2.write_all_at(b"Z", 1).unwrap();
    drop(w2);
    drop(w);
    drop(r);
    assert_eq!(std::fs::read(m.path("new")).unwrap(), b"aZc");
    assert_eq!(store_get(&m, "/new"), b"aZc");
    // A small committed file, open for reading while another handle writes.
    let r = std::fs::File::open(m.path("new")).unwrap();
    std::fs::write(m.path("new"), b"xyz!").unwrap();
    let mut buf = [0u8; 3];
    r.read_exact_at(&mut buf, 0).unwrap();
    drop(r);
    assert_eq!(std::fs::read(m.path("new")).unwrap(), b"xyz!");
}

#[test]
fn every_close_of_a_written_file_is_one_new_version() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), b"one").unwrap();
    let before = commits(&m, "f");
    for round in 0..3u8 {
        let mut f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
        f.write_all(&[b'a' + round; 5]).unwrap();
        f.write_all(b"more").unwrap();
        drop(f);
        assert_eq!(commits(&m, "f"), before + round as usize + 1);
        assert_eq!(
            store_get(&m, "/f"),
            [&[b'a' + round; 5][..], b"more"].concat()
        );
    }
    // A close without a write adds no version.
    drop(OpenOptions::new().write(true).open(m.path("f")).unwrap());
    drop(std::fs::File::open(m.path("f")).unwrap());
    assert_eq!(commits(&m, "f"), before + 3);
    let current: Vec<String> = log_lines(&m, "/f")
        .into_iter()
        .filter(|line| line.starts_with('*'))
        .collect();
    assert_eq!(current.len(), 1, "one current version");
}

#[test]
fn written_data_is_in_the_store_and_its_blocks_in_hashes() {
    let m = Mounted::new();
    let data = Rng::new(7).bytes(3 * BLOCK + 100);
    std::fs::write(m.path("data.bin"), &data).unwrap();
    assert_eq!(store_get(&m, "/data.bin"), data);
    let versions = version_files(&m, "data.bin");
    let newest = std::fs::read_to_string(versions.last().unwrap()).unwrap();
    let hashes = hash_lines(&newest);
    assert_eq!(hashes.len(), 4, "{newest}");
    let hashes_dir = node_dir(&m).join("hashes");
    for hash in &hashes {
        let rel = fanned(hash);
        let plain = hashes_dir.join(&rel);
        let zst = hashes_dir.join(format!("{rel}.zst"));
        assert!(
            plain.exists() || zst.exists(),
            "block {hash} is not in {}",
            hashes_dir.display()
        );
    }
}

#[test]
fn writing_one_block_of_ten_keeps_the_other_nine_hashes() {
    let m = Mounted::new();
    let mut data = Rng::new(11).bytes(10 * BLOCK);
    std::fs::write(m.path("ten"), &data).unwrap();
    let before_files = version_files(&m, "ten");
    let f = OpenOptions::new().write(true).open(m.path("ten")).unwrap();
    f.write_all_at(b"patch", (6 * BLOCK + 123) as u64).unwrap();
    drop(f);
    data[6 * BLOCK + 123..6 * BLOCK + 128].copy_from_slice(b"patch");
    let after_files = version_files(&m, "ten");
    assert_eq!(after_files.len(), before_files.len() + 1);
    let before = hash_lines(&std::fs::read_to_string(before_files.last().unwrap()).unwrap());
    let after = hash_lines(&std::fs::read_to_string(after_files.last().unwrap()).unwrap());
    assert_eq!(before.len(), 10);
    assert_eq!(after.len(), 10);
    let changed: Vec<usize> = (0..10).filter(|i| before[*i] != after[*i]).collect();
    assert_eq!(changed, vec![6]);
    assert_eq!(std::fs::read(m.path("ten")).unwrap(), data);
}

#[test]
fn appends_extend_the_file() {
    let m = Mounted::new();
    std::fs::write(m.path("log"), b"line 1\n").unwrap();
    let mut f = OpenOptions::new().append(true).open(m.path("log")).unwrap();
    f.write_all(b"line 2\n").unwrap();
    drop(f);
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"line 1\nline 2\n");
}

/// Where a block of `hash` sits below a `hashes/` directory: `aa/bb/cc/dd/<rest>`.
fn fanned(hash: &str) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        &hash[0..2],
        &hash[2..4],
        &hash[4..6],
        &hash[6..8],
        &hash[8..]
    )
}

/// The block hashes of a version file: the lines after the blank line.
fn hash_lines(text: &str) -> Vec<String> {
    text.split_once("\n\n")
        .map(|(_, rest)| {
            rest.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Links of `name`'s newest version's blocks missing under
/// `root/<name>/hashes/aa/bb/cc/dd/<rest>`.
fn missing_path_links(m: &Mounted, name: &str) -> usize {
    let newest = version_files(m, name).pop().expect("a version");
    let text = std::fs::read_to_string(&newest).unwrap();
    let links = node_dir(m).join("root").join(name).join("hashes");
    hash_lines(&text)
        .iter()
        .filter(|hash| !links.join(fanned(hash)).is_file())
        .count()
}

/// The mount makes the links of each path's blocks (`root/<path>/hashes/`)
/// in the background, in batches (FORMAT §7). Killed with some still
/// queued, it leaves them missing: the files read back whole all the same
/// (readers use the store's `hashes/`), and `gc` makes the missing links.
#[test]
fn links_a_killed_mount_left_unmade_are_made_by_gc() {
    let mut m = Mounted::new();
    let mut rng = Rng::new(7);
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}"), rng.bytes(3 * BLOCK + 100)))
        .collect();
    for (name, bytes) in &files {
        std::fs::write(m.path(name), bytes).unwrap();
    }
    m.kill();
    let before: usize = files.iter().map(|(n, _)| missing_path_links(&m, n)).sum();
    m.start();
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(m.path(name)).unwrap(), bytes, "{name}");
    }
    m.stop();
    let out = m.globofs(&["gc"]);
    assert!(out.status.success(), "{out:?}");
    let after: usize = files.iter().map(|(n, _)| missing_path_links(&m, n)).sum();
    assert_eq!(after, 0, "gc made every missing link");
    if before == 0 {
        println!("skipped: the linking thread ran before the kill; gc had no link to make");
    } else {
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("{before} missing path links made")),
            "{said}"
        );
    }
}
