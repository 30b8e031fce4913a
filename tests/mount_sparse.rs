//! Sparse files over a real mount: holes cost no block in the store,
//! `st_blocks` counts what is stored, SEEK_DATA / SEEK_HOLE find holes at
//! block granularity, `fallocate` modes 0, KEEP_SIZE and PUNCH_HOLE |
//! KEEP_SIZE work (others: EOPNOTSUPP), and a sparse file reaches a peer the
//! same and sparse.

// The test calls libc directly (lseek and fallocate are not wrapped).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;
#[path = "common/nodes.rs"]
mod nodes;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use mount::{BLOCK, Mounted, Rng, errno, node_dir, store_get};

const MIB: u64 = 1 << 20;

/// Bytes the files below `dir` take on disk.
fn allocated(dir: &Path) -> u64 {
    mount::files_below(dir)
        .iter()
        .filter_map(|path| std::fs::symlink_metadata(path).ok())
        .map(|meta| meta.blocks() * 512)
        .sum()
}

fn seek(file: &std::fs::File, offset: i64, whence: i32) -> std::io::Result<i64> {
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if at < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(at)
    }
}

fn fallocate(file: &std::fs::File, mode: i32, offset: i64, len: i64) -> std::io::Result<()> {
    mount::cvt(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) }).map(|_| ())
}

#[test]
fn truncate_to_ten_mib_stores_holes_and_reads_zeros() {
    let m = Mounted::with("128KiB", "");
    let store = node_dir(&m);
    let before = allocated(&store);
    let made = Command::new("truncate")
        .args(["-s", "10M"])
        .arg(m.path("big"))
        .status()
        .unwrap();
    assert!(made.success());
    let meta = std::fs::metadata(m.path("big")).unwrap();
    assert_eq!(meta.len(), 10 * MIB);
    assert!(meta.blocks() <= 16, "st_blocks {}", meta.blocks());
    let du = Command::new("du")
        .arg("-k")
        .arg(m.path("big"))
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib <= 8, "du says {kib} KiB");
    let data = std::fs::read(m.path("big")).unwrap();
    assert_eq!(data.len() as u64, 10 * MIB);
    assert!(data.iter().all(|b| *b == 0));
    let grown = allocated(&store) - before.min(allocated(&store));
    assert!(grown < 100 * 1024, "the store grew by {grown} bytes");
    // What the store reads back is the same zeros.
    assert_eq!(store_get(&m, "/big"), data);
    // Extending an existing file with data: only the data block is counted.
    let f = OpenOptions::new().write(true).open(m.path("big")).unwrap();
    f.write_all_at(&[7u8; 100], 3 * MIB).unwrap();
    drop(f);
    let meta = std::fs::metadata(m.path("big")).unwrap();
    assert_eq!(meta.blocks(), 128 * 1024 / 512, "one data block");
}

#[test]
fn zeros_written_through_the_mount_are_stored_as_holes() {
    let m = Mounted::with("128KiB", "");
    let store = node_dir(&m);
    let before = allocated(&store);
    std::fs::write(m.path("zeros"), vec![0u8; 4 * MIB as usize]).unwrap();
    let cp = Command::new("cp")
        .arg("--sparse=never")
        .arg(m.path("zeros"))
        .arg(m.path("copy"))
        .status()
        .unwrap();
    assert!(cp.success());
    for name in ["zeros", "copy"] {
        let meta = std::fs::metadata(m.path(name)).unwrap();
        assert_eq!(meta.len(), 4 * MIB);
        assert_eq!(meta.blocks(), 0, "{name}");
        assert_eq!(
            std::fs::read(m.path(name)).unwrap(),
            vec![0u8; 4 * MIB as usize]
        );
    }
    let grown = allocated(&store).saturating_sub(before);
    assert!(grown < 100 * 1024, "the store grew by {grown} bytes");
}

#[test]
fn seek_data_and_seek_hole_find_the_hole_between_two_data_blocks() {
    let m = Mounted::new();
    let mut rng = Rng::new(3);
    let head = rng.bytes(BLOCK);
    let tail = rng.bytes(100);
    let size = 3 * BLOCK as i64 + 100;
    let check = |f: &std::fs::File, when: &str| {
        assert_eq!(seek(f, 0, libc::SEEK_DATA).unwrap(), 0, "{when}");
        assert_eq!(seek(f, 0, libc::SEEK_HOLE).unwrap(), BLOCK as i64, "{when}");
        assert_eq!(
            seek(f, 10, libc::SEEK_HOLE).unwrap(),
            BLOCK as i64,
            "{when}"
        );
        let data = seek(f, BLOCK as i64 + 5, libc::SEEK_DATA).unwrap();
        assert_eq!(data, 3 * BLOCK as i64, "{when}");
        assert_eq!(
            seek(f, 3 * BLOCK as i64, libc::SEEK_HOLE).unwrap(),
            size,
            "{when}"
        );
        assert_eq!(errno(seek(f, size, libc::SEEK_DATA)), libc::ENXIO, "{when}");
        assert_eq!(errno(seek(f, size, libc::SEEK_HOLE)), libc::ENXIO, "{when}");
    };
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(m.path("f"))
        .unwrap();
    f.write_all_at(&head, 0).unwrap();
    f.write_all_at(&tail, 3 * BLOCK as u64).unwrap();
    check(&f, "while open for writing");
    drop(f);
    let f = std::fs::File::open(m.path("f")).unwrap();
    check(&f, "committed");
    let meta = f.metadata().unwrap();
    assert_eq!(meta.blocks(), (BLOCK as u64 + 100).div_ceil(512));
    let mut expect = head.clone();
    expect.resize(3 * BLOCK, 0);
    expect.extend_from_slice(&tail);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), expect);
}

#[test]
fn fallocate_extends_keeps_size_and_punches_holes() {
    let m = Mounted::new();
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(m.path("f"))
        .unwrap();
    // Mode 0: the file grows, with zeros.
    fallocate(&f, 0, 0, 3 * BLOCK as i64).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3 * BLOCK as u64);
    // KEEP_SIZE past the end: nothing visible changes.
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 10 * BLOCK as i64).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3 * BLOCK as u64);
    let data = Rng::new(4).bytes(3 * BLOCK);
    f.write_all_at(&data, 0).unwrap();
    // Punch the whole middle block and ten bytes of the first.
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, punch, BLOCK as i64, BLOCK as i64).unwrap();
    fallocate(&f, punch, 20, 10).unwrap();
    let mut expect = data.clone();
    expect[BLOCK..2 * BLOCK].fill(0);
    expect[20..30].fill(0);
    let mut got = vec![0u8; 3 * BLOCK];
    f.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, expect);
    assert_eq!(f.metadata().unwrap().len(), 3 * BLOCK as u64);
    // Modes this mount does not do.
    assert_eq!(
        errno(fallocate(
            &f,
            libc::FALLOC_FL_COLLAPSE_RANGE,
            0,
            BLOCK as i64
        )),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 0, BLOCK as i64)),
        libc::EOPNOTSUPP
    );
    drop(f);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), expect);
    assert_eq!(store_get(&m, "/f"), expect);
    let f = std::fs::File::open(m.path("f")).unwrap();
    assert_eq!(f.metadata().unwrap().blocks(), 2 * BLOCK as u64 / 512);
    assert_eq!(seek(&f, 0, libc::SEEK_HOLE).unwrap(), BLOCK as i64);
    assert_eq!(
        seek(&f, BLOCK as i64, libc::SEEK_DATA).unwrap(),
        2 * BLOCK as i64
    );
    // posix_fallocate (mode 0) through a path: the file is long enough after.
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    assert_eq!(
        unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, 5 * BLOCK as i64) },
        0
    );
    drop(f);
    assert_eq!(
        std::fs::metadata(m.path("f")).unwrap().len(),
        5 * BLOCK as u64
    );
}

#[test]
fn a_sparse_file_reaches_a_peer_identical_and_sparse() {
    use globofs::vfs::{ROOT_INO, SetAttr, Vfs};
    use std::ffi::OsStr;
    use std::sync::Arc;

    let cluster = nodes::Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    let vfs = Vfs::new(Arc::new(a.store()));
    let (file, opened) = vfs.create(ROOT_INO, OsStr::new("sparse"), 0o644).unwrap();
    vfs.write(opened.fh, 0, b"head").unwrap();
    let grow = SetAttr {
        size: Some(8 * MIB),
        ..SetAttr::default()
    };
    vfs.set_attributes(file.ino, Some(opened.fh), &grow)
        .unwrap();
    vfs.write(opened.fh, 8 * MIB - 4, b"tail").unwrap();
    vfs.commit(opened.fh, false).unwrap();
    vfs.release(opened.fh).unwrap();
    let ours = a.store().live(&nodes::vp("sparse")).unwrap().unwrap();
    let holes = ours.hashes.iter().filter(|h| **h == ours.hashes[1]).count();
    assert!(holes >= ours.hashes.len() - 2, "{} holes", holes);

    a.sync();
    b.sync();
    let theirs = b.store().live(&nodes::vp("sparse")).unwrap().unwrap();
    assert_eq!(theirs, ours);
    let mut expect = vec![0u8; 8 * MIB as usize];
    expect[..4].copy_from_slice(b"head");
    expect[8 * MIB as usize - 4..].copy_from_slice(b"tail");
    assert_eq!(b.read("sparse").unwrap(), expect);
    let peer_vfs = Vfs::new(Arc::new(b.reader()));
    let seen = peer_vfs.lookup(ROOT_INO, OsStr::new("sparse")).unwrap();
    assert_eq!(seen.size, 8 * MIB);
    assert!(
        seen.blocks <= 2 * ours.block_size as u64 / 512,
        "{} blocks",
        seen.blocks
    );
    // Whatever the peer holds of the hole is stored sparse there too.
    let hashes = b.store_dir().join("hashes");
    assert!(allocated(&hashes) < 2 * MIB, "{} bytes", allocated(&hashes));
}
