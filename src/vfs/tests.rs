//! The core driven directly, without a kernel mount.

use std::sync::atomic::Ordering;

use super::*;

/// A result as the kernel sees it.
fn errno<T>(result: VfsResult<T>) -> Result<T, Errno> {
    result.map_err(|err| err.errno())
}

fn vfs() -> (tempfile::TempDir, Vfs) {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let store = Store::open_spec(&spec).unwrap();
    (dir, Vfs::new(Arc::new(store)))
}

/// A committed file, its inode, and the vfs with passthrough on.
fn committed_file(vfs: &Vfs, name: &str, data: &[u8]) -> u64 {
    vfs.enable_passthrough();
    let path = VPath::root().join(name.as_bytes()).unwrap();
    vfs.write_whole(&path, data).unwrap();
    vfs.lookup(ROOT_INO, OsStr::new(name)).unwrap().ino
}

fn mode_of(vfs: &Vfs, ino: u64, write: bool, attached: bool) -> (u64, Mode) {
    let opened = vfs.open(ino, write, false).unwrap();
    let fh = opened.fh;
    (fh, vfs.mode(ino, opened, attached))
}

#[test]
fn readers_never_attach_a_store_block() {
    let (_dir, vfs) = vfs();
    for (name, len) in [("small", 100), ("big", 3 * 4096 + 1)] {
        let ino = committed_file(&vfs, name, &vec![7u8; len]);
        let (fh, mode) = mode_of(&vfs, ino, false, false);
        assert!(matches!(mode, Mode::Cached { .. }), "{name}: {mode:?}");
        vfs.release(fh).unwrap();
    }
}

#[test]
fn later_opens_share_a_passthrough_writers_cache() {
    let (_dir, vfs) = vfs();
    vfs.enable_passthrough();
    let (attr, created) = vfs.create(ROOT_INO, OsStr::new("new"), 0o644).unwrap();
    let writer = created.fh;
    let Mode::Attach(file) = vfs.mode(attr.ino, created, false) else {
        panic!("a new file's writer was not given its cache file");
    };
    std::io::Write::write_all(&mut &file, b"written by the kernel").unwrap();
    // A reader opened now shares the cache as it is (the bytes of the
    // open file, as on a local disk).
    let (reader, mode) = mode_of(&vfs, attr.ino, false, true);
    assert!(matches!(mode, Mode::Share { direct: false }), "{mode:?}");
    assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"written by the kernel");
    vfs.release(reader).unwrap();
    vfs.commit(writer, false).unwrap();
    vfs.release(writer).unwrap();
    assert_eq!(
        vfs.read_whole(&VPath::root().join(b"new").unwrap())
            .unwrap(),
        b"written by the kernel"
    );
}

#[test]
fn an_open_that_must_not_use_the_attached_file_gets_direct_io() {
    let (_dir, vfs) = vfs();
    let ino = committed_file(&vfs, "f", b"committed");
    // The kernel still has a writer's cache attached (its release is on
    // its way): this reader must not read that cache.
    let (reader, mode) = mode_of(&vfs, ino, false, true);
    assert!(matches!(mode, Mode::Share { direct: true }), "{mode:?}");
    assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"committed");
}

#[test]
fn nothing_attaches_while_a_handle_is_served_through_the_page_cache() {
    let (_dir, vfs) = vfs();
    let ino = committed_file(&vfs, "f", b"bytes");
    // A reader is served through the page cache.
    let (_reader, mode) = mode_of(&vfs, ino, false, false);
    assert!(matches!(mode, Mode::Cached { .. }), "{mode:?}");
    // So a truncating writer may not attach its cache file now.
    let opened = vfs.open(ino, true, true).unwrap();
    let mode = vfs.mode(ino, opened, false);
    assert!(matches!(mode, Mode::Cached { .. }), "{mode:?}");
    // Alone, it may.
    let other = committed_file(&vfs, "g", b"bytes");
    let opened = vfs.open(other, true, true).unwrap();
    assert!(opened.backing.is_some());
    assert!(matches!(vfs.mode(other, opened, false), Mode::Attach(_)));
}

#[test]
fn create_write_close_read() {
    let (_dir, vfs) = vfs();
    let (attr, opened) = vfs.create(ROOT_INO, OsStr::new("a.txt"), 0o600).unwrap();
    let fh = opened.fh;
    assert_eq!(
        vfs.lookup(ROOT_INO, OsStr::new("a.txt")).unwrap().ino,
        attr.ino
    );
    vfs.write(fh, 0, b"hello world").unwrap();
    assert_eq!(vfs.getattr(attr.ino).unwrap().size, 11);
    vfs.commit(fh, false).unwrap();
    vfs.release(fh).unwrap();
    let fh = vfs.open(attr.ino, false, false).unwrap().fh;
    assert_eq!(vfs.read(fh, 6, 100).unwrap(), b"world");
    assert_eq!(vfs.getattr(attr.ino).unwrap().perm, 0o600);
}

#[test]
fn the_journal_follower_skips_what_this_mount_made() {
    let (_dir, vfs) = vfs();
    let attr = vfs.mkdir(ROOT_INO, OsStr::new("d"), 0o755).unwrap();
    let path = VPath::parse(OsStr::new("/d")).unwrap();
    let made = vfs.store().current(&path).unwrap().unwrap();
    assert_eq!(vfs.changed_elsewhere(made.id, &path), None);
    // A commit of this process whose journal line the follower reads before
    // the commit returned (so the mount has not noted it yet) is its own too.
    let early = vfs.store().set_attrs(&path, Some(0o750), None).unwrap();
    assert_eq!(vfs.changed_elsewhere(early.id, &path), None);
    // Another process's change to the same path is invalidated.
    let elsewhere = Store::open(
        vfs.store().layout().dir.as_path(),
        vfs.store().config().clone(),
    )
    .unwrap();
    let other = elsewhere.set_attrs(&path, Some(0o700), None).unwrap();
    let (ino, entry) = vfs.changed_elsewhere(other.id, &path).unwrap();
    assert_eq!(ino, Some(attr.ino));
    assert_eq!(entry, Some((ROOT_INO, b"d".to_vec())));
}

#[test]
fn page_cache_is_kept_only_for_the_version_it_holds() {
    let (_dir, vfs) = vfs();
    let path = VPath::parse(OsStr::new("/p")).unwrap();
    vfs.write_whole(&path, b"one").unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("p")).unwrap().ino;
    let open_read = || {
        let opened = vfs.open(ino, false, false).unwrap();
        vfs.release(opened.fh).unwrap();
        opened.keep_cache
    };
    // The first open fills the cache; the next one of the same version keeps it.
    assert!(!open_read());
    assert!(open_read());
    // A reader open at the same time as a writer never vouches for the cache,
    // and the writer's bytes mean the next reader starts afresh.
    let writer = vfs.open(ino, true, false).unwrap().fh;
    assert!(!open_read());
    vfs.write(writer, 0, b"two").unwrap();
    vfs.release(writer).unwrap();
    assert!(!open_read());
    assert!(open_read());
    // A change from elsewhere (the journal follower calls `changed`).
    vfs.write_whole(&path, b"three").unwrap();
    vfs.changed(&path);
    assert!(!open_read());
    // A new version not announced yet: the version id differs, so no keep.
    vfs.write_whole(&path, b"four").unwrap();
    assert!(!open_read());
    assert!(open_read());
    let fh = vfs.open(ino, false, false).unwrap().fh;
    assert_eq!(vfs.read(fh, 0, 10).unwrap(), b"four");
    vfs.release(fh).unwrap();
}

#[test]
fn partial_writes_keep_the_rest_and_rehash_only_touched_blocks() {
    let (_dir, vfs) = vfs();
    let data: Vec<u8> = (0..10 * 4096 + 7).map(|i| (i % 251) as u8).collect();
    let path = VPath::from_escaped("big").unwrap();
    let before = vfs.write_whole(&path, &data).unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("big")).unwrap().ino;
    let fh = vfs.open(ino, true, false).unwrap().fh;
    vfs.write(fh, 4096 * 3 + 10, b"XYZ").unwrap();
    vfs.release(fh).unwrap();
    let after = vfs.store().live(&path).unwrap().unwrap();
    let changed: Vec<usize> = (0..after.hashes.len())
        .filter(|i| after.hashes[*i] != before.hashes[*i])
        .collect();
    assert_eq!(changed, vec![3]);
    let mut expect = data.clone();
    expect[4096 * 3 + 10..4096 * 3 + 13].copy_from_slice(b"XYZ");
    assert_eq!(vfs.read_whole(&path).unwrap(), expect);
}

#[test]
fn truncate_down_then_up_reads_zeros() {
    let (_dir, vfs) = vfs();
    let path = VPath::from_escaped("t").unwrap();
    vfs.write_whole(&path, &[7u8; 9000]).unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("t")).unwrap().ino;
    vfs.setattr(ino, None, None, Some(100), None).unwrap();
    vfs.setattr(ino, None, None, Some(5000), None).unwrap();
    let got = vfs.read_whole(&path).unwrap();
    assert_eq!(got.len(), 5000);
    assert!(got[..100].iter().all(|b| *b == 7));
    assert!(got[100..].iter().all(|b| *b == 0));
}

#[test]
fn unlinked_open_file_stays_readable() {
    let (_dir, vfs) = vfs();
    let path = VPath::from_escaped("gone").unwrap();
    vfs.write_whole(&path, b"still here").unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("gone")).unwrap().ino;
    let fh = vfs.open(ino, false, false).unwrap().fh;
    vfs.unlink(ROOT_INO, OsStr::new("gone")).unwrap();
    assert_eq!(
        errno(vfs.lookup(ROOT_INO, OsStr::new("gone"))),
        Err(libc::ENOENT)
    );
    assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"still here");
    assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
    vfs.release(fh).unwrap();
}

#[test]
fn a_write_cache_the_kernel_wrote_keeps_its_bytes_when_served_here_later() {
    let (_dir, vfs) = vfs();
    vfs.enable_passthrough();
    let (attr, created) = vfs.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
    let (ino, first) = (attr.ino, created.fh);
    let Mode::Attach(file) = vfs.mode(ino, created, false) else {
        panic!("a new file's writer was not given its cache file");
    };
    let data: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i % 251) as u8).collect();
    std::io::Write::write_all(&mut &file, &data).unwrap();
    // Another writer shares the attached file; both close (FLUSH commits,
    // the second time with nothing new).
    let opened = vfs.open(ino, true, false).unwrap();
    let second = opened.fh;
    assert!(matches!(
        vfs.mode(ino, opened, true),
        Mode::Share { direct: false }
    ));
    vfs.commit(first, false).unwrap();
    vfs.commit(second, false).unwrap();
    vfs.release(first).unwrap();
    // The kernel already let go of the backing file, but the second
    // handle's RELEASE is still on its way: a new open joins the write
    // state and is served here.
    for write in [false, true] {
        let opened = vfs.open(ino, write, false).unwrap();
        let fh = opened.fh;
        assert!(matches!(vfs.mode(ino, opened, false), Mode::Cached { .. }));
        assert_eq!(vfs.read(fh, 0, data.len() as u32 + 10).unwrap(), data);
        if write {
            vfs.write(fh, 0, b"Z").unwrap();
            vfs.commit(fh, false).unwrap();
        }
        vfs.release(fh).unwrap();
    }
    vfs.release(second).unwrap();
    let mut want = data.clone();
    want[0] = b'Z';
    let path = VPath::from_escaped("f").unwrap();
    assert_eq!(vfs.read_whole(&path).unwrap(), want);
}

#[test]
fn a_file_replaced_by_rename_still_opens_by_inode_with_its_old_bytes() {
    let (_dir, vfs) = vfs();
    vfs.write_whole(&VPath::from_escaped("target").unwrap(), b"old target")
        .unwrap();
    vfs.write_whole(&VPath::from_escaped("tmp").unwrap(), b"new")
        .unwrap();
    // A reader resolved the name just before the replace.
    let old = vfs.lookup(ROOT_INO, OsStr::new("target")).unwrap().ino;
    vfs.rename(
        ROOT_INO,
        OsStr::new("tmp"),
        ROOT_INO,
        OsStr::new("target"),
        false,
        false,
    )
    .unwrap();
    let attr = vfs.getattr(old).unwrap();
    assert_eq!((attr.size, attr.nlink), (10, 0));
    let fh = vfs.open(old, false, false).unwrap().fh;
    assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"old target");
    vfs.release(fh).unwrap();
    // Nothing can write it any more; the name shows the new file.
    assert_eq!(
        vfs.open(old, true, false).err().map(|e| e.errno()),
        Some(libc::ENOENT)
    );
    let now = vfs.lookup(ROOT_INO, OsStr::new("target")).unwrap();
    assert_ne!(now.ino, old);
    assert_eq!(now.size, 3);
    // Once the kernel forgets it, it is gone.
    vfs.forget(old, 1);
    assert_eq!(errno(vfs.getattr(old)), Err(libc::ENOENT));
}

#[test]
fn every_open_reads_the_version_its_inode_was_described_with_across_renames_over() {
    // The atomic-save pattern: a writer renames a new file over `cur` again
    // and again while readers resolve `cur`, open its inode and read it. The
    // size a lookup gave the kernel for an inode must be the size of what an
    // open of that inode reads, or the kernel cuts reads short (or pads them).
    let (_dir, vfs) = vfs();
    let vfs = Arc::new(vfs);
    let cur = VPath::from_escaped("cur").unwrap();
    vfs.write_whole(&cur, b"first").unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (vfs, done) = (Arc::clone(&vfs), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut mismatches = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let attr = vfs.lookup(ROOT_INO, OsStr::new("cur")).unwrap();
                    let opened = vfs.open(attr.ino, false, false).unwrap();
                    let read = vfs.read(opened.fh, 0, 1 << 20).unwrap();
                    vfs.release(opened.fh).unwrap();
                    vfs.forget(attr.ino, 1);
                    if read.len() as u64 != attr.size {
                        mismatches.push((attr.size, read.len()));
                    }
                }
                mismatches
            })
        })
        .collect();
    let tmp = VPath::from_escaped("tmp").unwrap();
    for i in 0..100usize {
        vfs.write_whole(&tmp, &vec![b'x'; 1 + (i * 7919) % 9000])
            .unwrap();
        let (tmp_name, cur_name) = (OsStr::new("tmp"), OsStr::new("cur"));
        vfs.rename(ROOT_INO, tmp_name, ROOT_INO, cur_name, false, false)
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        let mismatches = reader.join().unwrap();
        assert!(
            mismatches.is_empty(),
            "(size described, bytes read): {mismatches:?}"
        );
    }
}

#[test]
fn an_open_of_a_version_the_kernel_has_not_been_told_of_drops_its_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let vfs = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    let path = VPath::from_escaped("f").unwrap();
    vfs.write_whole(&path, b"old").unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    // The kernel was told of this version: nothing to drop.
    let opened = vfs.open(ino, false, false).unwrap();
    assert!(!opened.stale_attrs);
    vfs.release(opened.fh).unwrap();
    // Another process of the node (a second mount, `globofs put`) commits a
    // longer version; the kernel still holds the old size.
    let elsewhere = Store::open_spec(&spec).unwrap();
    elsewhere
        .write_file(
            &path,
            &mut Cursor::new(b"new and longer"),
            crate::store::Attrs::default(),
            false,
        )
        .unwrap();
    let opened = vfs.open(ino, false, false).unwrap();
    assert!(
        opened.stale_attrs,
        "the kernel would read the new bytes cut at 3"
    );
    // The GETATTR the kernel then sends gives the new size.
    assert_eq!(vfs.getattr(ino).unwrap().size, 14);
    assert_eq!(vfs.read(opened.fh, 0, 100).unwrap(), b"new and longer");
    let again = vfs.open(ino, false, false).unwrap();
    assert!(!again.stale_attrs);
    vfs.release(opened.fh).unwrap();
    vfs.release(again.fh).unwrap();
}

#[test]
fn handles_share_one_write_state_until_the_last_one_goes() {
    let (_dir, vfs) = vfs();
    let (attr, created) = vfs.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
    let ino = attr.ino;
    let writer = created.fh;
    vfs.write(writer, 0, b"one two").unwrap();
    vfs.commit(writer, false).unwrap();
    // The kernel sends RELEASE in the background: a reader may open first.
    let reader = vfs.open(ino, false, false).unwrap().fh;
    let second = vfs.open(ino, true, false).unwrap().fh;
    vfs.write(second, 4, b"TWO").unwrap();
    assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
    vfs.release(writer).unwrap();
    // The second writer's bytes are still there for every handle.
    assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
    assert_eq!(vfs.getattr(ino).unwrap().size, 7);
    vfs.release(second).unwrap();
    let path = VPath::from_escaped("f").unwrap();
    assert_eq!(vfs.read_whole(&path).unwrap(), b"one TWO");
    // Unlinked while the reader still holds the state: no links.
    vfs.unlink(ROOT_INO, OsStr::new("f")).unwrap();
    assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
    vfs.release(reader).unwrap();
    // The kernel still holds the inode until it forgets it.
    assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
    vfs.forget(ino, 1);
    assert_eq!(errno(vfs.getattr(ino)), Err(libc::ENOENT));
}

/// The mount's reads go through the store's one block read: with
/// `verify_reads` a block damaged in place is an error naming it (EIO), not
/// its damaged bytes; and a compressed block reads back whole.
#[test]
fn reads_through_the_mount_honour_verify_reads_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let mut store = Store::open_spec(&spec).unwrap();
    store.config_mut().verify_reads = true;
    let vfs = Vfs::new(Arc::new(store));
    let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 253) as u8).collect();
    let ino = committed_file(&vfs, "f", &data);
    let path = VPath::root().join(b"f").unwrap();
    let version = vfs.store().live(&path).unwrap().unwrap();
    let block = vfs.store().blocks().raw_path(&version.hashes[1]);
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[9] ^= 0x40;
    std::fs::remove_file(&block).unwrap();
    std::fs::write(&block, &bytes).unwrap();
    let fh = vfs.open(ino, false, false).unwrap().fh;
    assert_eq!(vfs.read(fh, 0, 4096).unwrap(), &data[..4096]);
    let err = vfs.read(fh, 4096, 4096).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(
        err.to_string().contains(&version.hashes[1].to_string()),
        "{err}"
    );
    vfs.release(fh).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let mut store = Store::open_spec(&spec).unwrap();
    store.config_mut().compression = crate::spec::Compression::Zstd;
    let vfs = Vfs::new(Arc::new(store));
    let ino = committed_file(&vfs, "z", &data);
    let fh = vfs.open(ino, false, false).unwrap().fh;
    let mut back = Vec::new();
    for offset in (0..data.len()).step_by(1000) {
        back.extend(vfs.read(fh, offset as u64, 1000).unwrap());
    }
    assert_eq!(back, data);
    vfs.release(fh).unwrap();
}

#[test]
fn a_directory_counts_its_subdirectories_as_they_come_and_go() {
    let (_dir, vfs) = vfs();
    assert_eq!(vfs.getattr(ROOT_INO).unwrap().nlink, 2);
    let d = vfs.mkdir(ROOT_INO, OsStr::new("d"), 0o755).unwrap();
    assert_eq!(vfs.getattr(ROOT_INO).unwrap().nlink, 3);
    vfs.mkdir(d.ino, OsStr::new("a"), 0o755).unwrap();
    vfs.mkdir(d.ino, OsStr::new("b"), 0o755).unwrap();
    assert_eq!(vfs.getattr(d.ino).unwrap().nlink, 4);
    vfs.rename(
        d.ino,
        OsStr::new("a"),
        ROOT_INO,
        OsStr::new("a"),
        false,
        false,
    )
    .unwrap();
    assert_eq!(vfs.getattr(d.ino).unwrap().nlink, 3);
    assert_eq!(vfs.getattr(ROOT_INO).unwrap().nlink, 4);
    vfs.rmdir(d.ino, OsStr::new("b")).unwrap();
    assert_eq!(vfs.getattr(d.ino).unwrap().nlink, 2);
}

/// An attribute change that reaches a passthrough writer after its last
/// flush (the close's commit) but before its release (which comes later,
/// and does not commit a direct cache) is committed at the release, not
/// lost with the write state (pjdfstest utimensat::utime_omit caught it).
#[test]
fn an_attribute_change_between_the_flush_and_the_release_is_committed() {
    let (_dir, vfs) = vfs();
    vfs.enable_passthrough();
    let (attr, created) = vfs.create(ROOT_INO, OsStr::new("new"), 0o644).unwrap();
    let writer = created.fh;
    let Mode::Attach(file) = vfs.mode(attr.ino, created, false) else {
        panic!("a new file's writer was not given its cache file");
    };
    std::io::Write::write_all(&mut &file, b"bytes").unwrap();
    vfs.commit(writer, false).unwrap();
    let change = SetAttr {
        mode: Some(0o600),
        atime: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000)),
        ..SetAttr::default()
    };
    vfs.set_attributes(attr.ino, None, &change).unwrap();
    vfs.release(writer).unwrap();
    let path = VPath::root().join(b"new").unwrap();
    let current = vfs.store.current(&path).unwrap().unwrap();
    assert_eq!(current.mode, 0o600);
    assert_eq!(current.posix.atime.map(|t| t.secs), Some(1_900_000_000));
    assert_eq!(vfs.read_whole(&path).unwrap(), b"bytes");
}

#[test]
fn the_history_view_forgets_inodes_the_kernel_no_longer_holds() {
    let (_dir, vfs) = vfs();
    let vfs = vfs.with_history_dir(Some(".globofs"));
    for i in 0..20 {
        let path = VPath::root().join(format!("f{i}").as_bytes()).unwrap();
        vfs.write_whole(&path, format!("data {i}").as_bytes())
            .unwrap();
    }
    let name = |s: &str| OsStr::new(s).to_owned();
    let top = vfs.lookup(ROOT_INO, &name(".globofs")).unwrap().ino;
    let at = vfs.lookup(top, &name("at")).unwrap().ino;
    let when = vfs.lookup(at, &name("2999-01-01T00:00:00Z")).unwrap().ino;
    let held = vfs.view_inodes();
    assert_eq!(held, 3, "the view's own directories and the moment");

    // Looked up twice each (two kernel references), then forgotten.
    let mut files = Vec::new();
    for i in 0..20 {
        let a = vfs.lookup(when, &name(&format!("f{i}"))).unwrap();
        let b = vfs.lookup(when, &name(&format!("f{i}"))).unwrap();
        assert_eq!(a.ino, b.ino, "one inode per past path while it is held");
        files.push(a.ino);
    }
    assert_eq!(vfs.view_inodes(), held + 20);
    for &ino in &files {
        vfs.forget(ino, 1);
    }
    assert_eq!(
        vfs.view_inodes(),
        held + 20,
        "one reference each is still held"
    );
    let fh = vfs.open(files[0], false, false).unwrap().fh;
    for &ino in &files {
        vfs.forget(ino, 1);
    }
    assert_eq!(
        vfs.view_inodes(),
        held,
        "forgotten once the kernel holds none"
    );
    // An open handle keeps reading what it opened.
    assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"data 0");
    vfs.release(fh).unwrap();

    // A plain readdir hands out no references: its inodes go at the second sweep
    // after they were last named; one the kernel took a reference on stays.
    let listed = vfs.readdir(when).unwrap();
    assert_eq!(listed.len(), 20);
    vfs.remember(listed[3].attr.ino);
    assert_eq!(vfs.view_inodes(), held + 20);
    vfs.past_sweep_now();
    assert_eq!(
        vfs.view_inodes(),
        held + 20,
        "named in this generation: kept"
    );
    vfs.past_sweep_now();
    assert_eq!(vfs.view_inodes(), held + 1);
    let kept = String::from_utf8(listed[3].name.clone()).unwrap();
    let data = format!("data {}", &kept[1..]);
    assert_eq!(
        vfs.getattr(listed[3].attr.ino).unwrap().size,
        data.len() as u64
    );
    // A forgotten past path looked up again gets an inode again.
    let again = vfs.lookup(when, &name("f7")).unwrap();
    assert_eq!(vfs.getattr(again.ino).unwrap().size, b"data 7".len() as u64);
}

/// A vfs over a store of `block_size` blocks.
fn vfs_cut(block_size: &str) -> (tempfile::TempDir, Vfs) {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec_cut(dir.path(), block_size);
    let store = Store::open_spec(&spec).unwrap();
    (dir, Vfs::new(Arc::new(store)))
}

#[test]
fn commits_that_hash_from_kept_states_store_exactly_the_bytes_written() {
    // Random writes (appends mostly, edits, cuts, punched holes) with lazy and
    // durable commits in between: every committed version holds the model's
    // bytes and its block hashes are the bytes' own. Debug builds also check
    // each durable commit's delta hints rebuild their blocks.
    // Through this mount's writes, and (a new file with passthrough) by the
    // kernel into the cache file, which tells nothing of where.
    for seed in [0x9e37_79b9_7f4a_7c15u64, 7, 1 << 40, 0xdead_beef] {
        random_commits(seed, 400, false);
        random_commits(seed, 300, true);
    }
}

fn random_commits(mut seed: u64, steps: u64, direct: bool) {
    use std::os::unix::fs::FileExt;
    // Big blocks: the first fsync re-cuts the file in 64 KiB ones.
    let (_dir, vfs) = vfs_cut(if seed % 2 == 0 { "64KiB" } else { "256KiB" });
    let path = VPath::from_escaped("wal").unwrap();
    let (ino, fh, kernel, mut model) = if direct {
        vfs.enable_passthrough();
        let (attr, created) = vfs.create(ROOT_INO, OsStr::new("wal"), 0o644).unwrap();
        let fh = created.fh;
        let Mode::Attach(file) = vfs.mode(attr.ino, created, false) else {
            panic!("a new file's writer was not given its cache file");
        };
        (attr.ino, fh, Some(file), Vec::new())
    } else {
        vfs.write_whole(&path, b"start").unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("wal")).unwrap().ino;
        let fh = vfs.open(ino, true, false).unwrap().fh;
        (ino, fh, None, b"start".to_vec())
    };
    let write = |at: u64, data: &[u8]| match &kernel {
        Some(file) => file.write_all_at(data, at).unwrap(),
        None => assert_eq!(vfs.write(fh, at, data).unwrap() as usize, data.len()),
    };
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for step in 0..steps {
        let size = model.len() as u64;
        match next(10) {
            0..=4 => {
                let len = 1 + next(9000) as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 + step) as u8 | 1).collect();
                write(size, &data);
                model.extend_from_slice(&data);
            }
            5 | 6 => {
                let at = next(size + 1);
                let len = 1 + next(3000) as usize;
                let data = vec![(step % 250) as u8 + 3; len];
                write(at, &data);
                let end = at as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[at as usize..end].copy_from_slice(&data);
            }
            7 => {
                let to = next(size + 70_000);
                vfs.truncate(ino, Some(fh), to).unwrap();
                model.resize(to as usize, 0);
            }
            8 => {
                let at = next(size + 1);
                let len = next(150_000);
                let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                vfs.fallocate(fh, at, len, mode).unwrap();
                let end = ((at + len) as usize).min(model.len());
                if (at as usize) < end {
                    model[at as usize..end].fill(0);
                }
            }
            _ => {}
        }
        if next(4) == 0 {
            vfs.commit(fh, next(2) == 0).unwrap();
            let version = vfs.store().live(&path).unwrap().unwrap();
            assert_eq!(version.size, model.len() as u64, "step {step}");
            let bs = version.block_size as usize;
            for (index, hash) in version.hashes.iter().enumerate() {
                let start = index * bs;
                let end = (start + bs).min(model.len());
                assert_eq!(
                    *hash,
                    crate::ids::BlockHash::of(&model[start..end]),
                    "seed {seed} direct {direct}, step {step}: block {index}"
                );
            }
            assert!(vfs.read_whole(&path).unwrap() == model, "step {step}");
        }
    }
    // The kernel's FLUSH at close commits what is left.
    vfs.commit(fh, false).unwrap();
    vfs.release(fh).unwrap();
    assert!(vfs.read_whole(&path).unwrap() == model);
}

#[test]
fn an_fsync_re_cuts_a_file_in_big_blocks_into_small_ones_once() {
    let (_dir, vfs) = vfs_cut("1MiB");
    let path = VPath::from_escaped("db").unwrap();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    vfs.write_whole(&path, &data).unwrap();
    assert_eq!(
        vfs.store().live(&path).unwrap().unwrap().block_size,
        1 << 20
    );
    let ino = vfs.lookup(ROOT_INO, OsStr::new("db")).unwrap().ino;
    let fh = vfs.open(ino, true, false).unwrap().fh;
    // A close keeps the volume's blocks; an fsync re-cuts.
    vfs.write(fh, 10, b"close").unwrap();
    vfs.commit(fh, false).unwrap();
    assert_eq!(
        vfs.store().live(&path).unwrap().unwrap().block_size,
        1 << 20
    );
    vfs.write(fh, 700_000, b"fsync").unwrap();
    vfs.commit(fh, true).unwrap();
    let cut = vfs.store().live(&path).unwrap().unwrap();
    assert_eq!(cut.block_size, super::write::FSYNC_BLOCK);
    assert_eq!(cut.hashes.len(), 1_500_000usize.div_ceil(64 * 1024));
    let mut want = data.clone();
    want[10..15].copy_from_slice(b"close");
    want[700_000..700_005].copy_from_slice(b"fsync");
    assert!(vfs.read_whole(&path).unwrap() == want);
    // Later fsyncs store one small block each.
    vfs.write(fh, 1_200_000, b"again").unwrap();
    vfs.commit(fh, true).unwrap();
    let next = vfs.store().live(&path).unwrap().unwrap();
    let changed = (0..next.hashes.len())
        .filter(|i| next.hashes[*i] != cut.hashes[*i])
        .count();
    assert_eq!(changed, 1);
    vfs.release(fh).unwrap();
    want[1_200_000..1_200_005].copy_from_slice(b"again");
    assert!(vfs.read_whole(&path).unwrap() == want);

    // A file bigger than the re-cut limit keeps its blocks.
    let big = VPath::from_escaped("big").unwrap();
    vfs.write_whole(&big, b"x").unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("big")).unwrap().ino;
    let fh = vfs.open(ino, true, false).unwrap().fh;
    vfs.write(fh, super::write::RECUT_MAX, b"end").unwrap();
    vfs.commit(fh, true).unwrap();
    vfs.release(fh).unwrap();
    assert_eq!(vfs.store().live(&big).unwrap().unwrap().block_size, 1 << 20);
}

#[test]
fn a_release_while_another_writer_is_writing_commits_nothing_of_its_writes() {
    // close(2) returns after FLUSH; the RELEASE comes later, on another
    // thread, while the file is open again and a write(2) split in several
    // requests is half done (QA: a version held half a pwrite).
    let (_dir, vfs) = vfs();
    let path = VPath::from_escaped("f").unwrap();
    vfs.write_whole(&path, &[b'a'; 10_000]).unwrap();
    let ino = vfs.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let first = vfs.open(ino, true, false).unwrap().fh;
    vfs.write(first, 0, b"first").unwrap();
    vfs.commit(first, false).unwrap(); // its FLUSH
    let committed = vfs.store().live(&path).unwrap().unwrap();
    let second = vfs.open(ino, true, false).unwrap().fh;
    vfs.write(second, 4000, &[b'1'; 200]).unwrap(); // the first request of a write(2)
    vfs.release(first).unwrap(); // the first handle's RELEASE, late
    let after = vfs.store().live(&path).unwrap().unwrap();
    let mut stored = Vec::new();
    vfs.store().copy_to(&after, &mut stored).unwrap();
    assert_eq!(
        after.id, committed.id,
        "a release made a version of another writer's half-done write"
    );
    assert_eq!(stored[4000], b'a');
    vfs.write(second, 4200, &[b'2'; 200]).unwrap(); // the rest of it
    vfs.commit(second, false).unwrap();
    vfs.release(second).unwrap();
    let mut want = vec![b'a'; 10_000];
    want[..5].copy_from_slice(b"first");
    want[4000..4200].fill(b'1');
    want[4200..4400].fill(b'2');
    assert!(vfs.read_whole(&path).unwrap() == want);
}

/// Two mounts of one node (two `Vfs` on one store) and a file `f` holding
/// `data`, looked up in both.
fn two_mounts(data: &[u8]) -> (tempfile::TempDir, Vfs, Vfs, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let one = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    let two = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    one.write_whole(&VPath::from_escaped("f").unwrap(), data)
        .unwrap();
    let ino_one = one.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let ino_two = two.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    (dir, one, two, ino_one, ino_two)
}

/// `>>` through `vfs`: open `ino`, an O_APPEND write its kernel places at
/// `kernel_size`, close.
fn append_and_close(vfs: &Vfs, ino: u64, kernel_size: u64, data: &[u8]) {
    let fh = vfs.open(ino, true, false).unwrap().fh;
    vfs.write_at(fh, WriteAt::End(kernel_size), data).unwrap();
    vfs.commit(fh, false).unwrap();
    vfs.release(fh).unwrap();
}

/// The names in the root (conflict copies show there).
fn root_names(vfs: &Vfs) -> Vec<String> {
    let mut names: Vec<String> = vfs
        .readdir(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

#[test]
fn an_append_goes_to_the_end_of_the_file_not_to_the_size_the_kernel_holds() {
    let (_dir, one, two, ino_one, ino_two) = two_mounts(b"aaaa\n");
    // The second mount's kernel holds size 5; the first mount appends.
    let fh = one.open(ino_one, true, false).unwrap().fh;
    one.write_at(fh, WriteAt::End(5), b"bbbbbbbb\n").unwrap();
    one.commit(fh, false).unwrap();
    one.release(fh).unwrap();
    // An O_APPEND write through the second mount, placed by its kernel at 5.
    let fh = two.open(ino_two, true, false).unwrap().fh;
    let at = WriteAt::End(5);
    let written = two.write_at(fh, at, b"x\n").unwrap();
    assert_eq!(written.offset, 14, "appended where the file ends");
    assert!(written.moved(at), "the kernel is told its pages are wrong");
    two.commit(fh, false).unwrap();
    two.release(fh).unwrap();
    let path = VPath::from_escaped("f").unwrap();
    assert_eq!(one.read_whole(&path).unwrap(), b"aaaa\nbbbbbbbb\nx\n");
    // A positioned write stays where it was asked to go.
    let fh = two.open(ino_two, true, false).unwrap().fh;
    let at = WriteAt::Offset(0);
    assert!(!two.write_at(fh, at, b"A").unwrap().moved(at));
    two.commit(fh, false).unwrap();
    two.release(fh).unwrap();
    assert_eq!(one.read_whole(&path).unwrap(), b"Aaaa\nbbbbbbbb\nx\n");
}

#[test]
fn appends_through_two_mounts_of_a_node_end_up_in_one_file() {
    let (_dir, one, two, ino_one, ino_two) = two_mounts(b"start\n");
    let path = VPath::from_escaped("f").unwrap();
    // A logger holds the file open on the first mount...
    let logger = one.open(ino_one, true, false).unwrap().fh;
    one.write_at(logger, WriteAt::End(6), b"one 1\n").unwrap();
    // ...while another process appends through the second mount and closes.
    let other = two.open(ino_two, true, false).unwrap().fh;
    two.write_at(other, WriteAt::End(6), b"two 1\n").unwrap();
    assert!(!two.commit_for_kernel(other, false).unwrap().rebased);
    two.release(other).unwrap();
    // The logger's close moves its lines after those.
    one.write_at(logger, WriteAt::End(12), b"one 2\n").unwrap();
    let flushed = one.commit_for_kernel(logger, false).unwrap();
    assert!(flushed.changed && flushed.rebased, "{flushed:?}");
    assert_eq!(
        one.read_whole(&path).unwrap(),
        b"start\ntwo 1\none 1\none 2\n"
    );
    // The state goes on from the rebased version: later appends follow.
    one.write_at(logger, WriteAt::End(18), b"one 3\n").unwrap();
    one.commit(logger, false).unwrap();
    one.release(logger).unwrap();
    assert_eq!(
        two.read_whole(&path).unwrap(),
        b"start\ntwo 1\none 1\none 2\none 3\n"
    );
    assert_eq!(root_names(&one), ["f"], "no conflict copy");
}

#[test]
fn a_write_below_the_end_is_not_rebased_and_keeps_its_conflict_copy() {
    let (_dir, one, two, ino_one, ino_two) = two_mounts(b"0123456789\n");
    let editor = one.open(ino_one, true, false).unwrap().fh;
    one.write(editor, 0, b"AB").unwrap();
    append_and_close(&two, ino_two, 11, b"more\n");
    let flushed = one.commit_for_kernel(editor, false).unwrap();
    assert!(!flushed.rebased);
    one.release(editor).unwrap();
    // Both kept: the file and one conflict copy, holding the two edits.
    let names = root_names(&one);
    assert_eq!(names.len(), 2, "{names:?}");
    let mut contents: Vec<Vec<u8>> = names
        .iter()
        .map(|n| one.read_whole(&VPath::from_escaped(n).unwrap()).unwrap())
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        [b"0123456789\nmore\n".to_vec(), b"AB23456789\n".to_vec()]
    );
}

#[test]
fn two_mounts_appending_at_once_keep_every_line_in_one_file() {
    let (_dir, one, two, ino_one, ino_two) = two_mounts(b"");
    let path = VPath::from_escaped("f").unwrap();
    // Each appender opens, appends a line and closes, as `echo >>` does,
    // its kernel placing the write at the size it last heard of.
    let append = |vfs: &Vfs, ino: u64, who: &str| {
        let mut kernel_size = 0;
        for i in 0..150 {
            let fh = vfs.open(ino, true, false).unwrap().fh;
            let line = format!("{who}{i}\n");
            let written = vfs
                .write_at(fh, WriteAt::End(kernel_size), line.as_bytes())
                .unwrap();
            kernel_size = written.offset + u64::from(written.count);
            vfs.commit(fh, false).unwrap();
            vfs.release(fh).unwrap();
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| append(&one, ino_one, "a"));
        s.spawn(|| append(&two, ino_two, "b"));
    });
    let text = String::from_utf8(one.read_whole(&path).unwrap()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 300, "{text}");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 300, "every line once");
    for who in ["a", "b"] {
        let mine: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix(who)?.parse().ok())
            .collect();
        assert_eq!(mine, (0..150).collect::<Vec<_>>(), "{who}'s lines in order");
    }
    assert_eq!(root_names(&one), ["f"], "no conflict copy");
}

/// Two mounts of one node on an empty store.
fn two_empty_mounts() -> (tempfile::TempDir, Vfs, Vfs) {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec(dir.path());
    let one = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    let two = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    (dir, one, two)
}

/// The contents of every file in the root, sorted.
fn root_contents(vfs: &Vfs) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = root_names(vfs)
        .iter()
        .map(|n| vfs.read_whole(&VPath::from_escaped(n).unwrap()).unwrap())
        .collect();
    all.sort();
    all
}

#[test]
fn a_file_created_on_two_mounts_at_once_keeps_both_writers_bytes() {
    // Appenders (`>>` of a name that does not exist yet, on both mounts):
    // one file holding both, the one that committed first first.
    let (_dir, one, two) = two_empty_mounts();
    let (_, held) = one.create(ROOT_INO, OsStr::new("log"), 0o644).unwrap();
    one.write_at(held.fh, WriteAt::End(0), b"one 1\n").unwrap();
    let (_, other) = two.create(ROOT_INO, OsStr::new("log"), 0o644).unwrap();
    two.write_at(other.fh, WriteAt::End(0), b"two 1\n").unwrap();
    two.commit(other.fh, false).unwrap();
    two.release(other.fh).unwrap();
    one.write_at(held.fh, WriteAt::End(6), b"one 2\n").unwrap();
    let flushed = one.commit_for_kernel(held.fh, false).unwrap();
    assert!(flushed.rebased, "{flushed:?}");
    one.release(held.fh).unwrap();
    assert_eq!(root_names(&one), ["log"]);
    assert_eq!(root_contents(&two), [b"two 1\none 1\none 2\n".to_vec()]);

    // Positioned writers (`>` on both): concurrent creates, both kept.
    let (_dir, one, two) = two_empty_mounts();
    let (_, held) = one.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
    one.write(held.fh, 0, b"made here").unwrap();
    let (_, other) = two.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
    two.write(other.fh, 0, b"made there").unwrap();
    two.commit(other.fh, false).unwrap();
    two.release(other.fh).unwrap();
    assert!(!one.commit_for_kernel(held.fh, false).unwrap().rebased);
    one.release(held.fh).unwrap();
    assert_eq!(root_names(&one).len(), 2, "{:?}", root_names(&one));
    assert_eq!(
        root_contents(&one),
        [b"made here".to_vec(), b"made there".to_vec()]
    );
}

#[test]
fn a_positioned_write_past_the_end_is_not_moved_by_a_rebase() {
    // A program that extends a file at offsets it chose (a database
    // growing by a page) must not have those bytes moved elsewhere.
    let (_dir, one, two, ino_one, ino_two) = two_mounts(b"base\n");
    let fh = one.open(ino_one, true, false).unwrap().fh;
    one.write(fh, 5, b"page").unwrap();
    append_and_close(&two, ino_two, 5, b"line\n");
    assert!(!one.commit_for_kernel(fh, false).unwrap().rebased);
    one.release(fh).unwrap();
    assert_eq!(
        root_contents(&one),
        [b"base\nline\n".to_vec(), b"base\npage".to_vec()]
    );
}

#[test]
fn an_appender_that_fsyncs_still_rebases_onto_another_mounts_appends() {
    // 1 MiB blocks: an fsync re-cuts the file in 64 KiB ones, so the other
    // mount's base and what replaced it are cut differently (QA: the
    // appends forked into conflict copies).
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::store::scratch_spec_cut(dir.path(), "1MiB");
    let one = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    let two = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
    let path = VPath::from_escaped("f").unwrap();
    one.write_whole(&path, b"start\n").unwrap();
    let ino_one = one.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let ino_two = two.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let holder = one.open(ino_one, true, false).unwrap().fh;
    for i in 0..40 {
        // The other mount opens first, the holder writes (and fsyncs),
        // then the other appends and closes.
        let other = two.open(ino_two, true, false).unwrap().fh;
        one.write_at(holder, WriteAt::End(0), format!("h{i}\n").as_bytes())
            .unwrap();
        if i % 4 == 3 {
            one.commit(holder, true).unwrap();
        }
        two.write_at(other, WriteAt::End(0), format!("e{i}\n").as_bytes())
            .unwrap();
        two.commit(other, false).unwrap();
        two.release(other).unwrap();
    }
    one.commit(holder, false).unwrap();
    one.release(holder).unwrap();
    assert_eq!(root_names(&one), ["f"], "no conflict copy");
    let text = String::from_utf8(one.read_whole(&path).unwrap()).unwrap();
    assert_eq!(text.lines().count(), 81, "{text}");
}
