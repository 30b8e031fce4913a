//! POSIX attributes travel with versions: owners, modes with setgid, atime,
//! extended attributes and special files made on one node come out the same
//! on its peer, and a node whose reader predates these keys (simulated by
//! stripping them from the version file) still converges on the same bytes.

#[path = "common/nodes.rs"]
mod nodes;

use std::ffi::OsStr;
use std::sync::Arc;

use globofs::store::Kind;
use globofs::store::posix::SpecialKind;
use globofs::vfs::{Caller, ROOT_INO, SetAttr, Vfs};
use nodes::{Cluster, vp};

#[test]
fn owners_xattrs_times_and_special_files_arrive_on_the_peer() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    let vfs = Vfs::new(Arc::new(a.store()));
    let user = Caller {
        uid: 1000,
        gid: 100,
    };
    let dir = vfs
        .mkdir_as(ROOT_INO, OsStr::new("team"), 0o2775, user)
        .unwrap();
    let (file, opened) = vfs
        .create_as(dir.ino, OsStr::new("notes"), 0o640, user)
        .unwrap();
    vfs.write(opened.fh, 0, b"shared notes").unwrap();
    vfs.commit(opened.fh, false).unwrap();
    vfs.release(opened.fh).unwrap();
    vfs.setxattr(file.ino, OsStr::new("user.tag"), b"blue", 0, user)
        .unwrap();
    let change = SetAttr {
        atime: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(77)),
        ..SetAttr::default()
    };
    vfs.set_attributes(file.ino, None, &change).unwrap();
    vfs.mknod_as(dir.ino, OsStr::new("pipe"), libc::S_IFIFO | 0o600, 0, user)
        .unwrap();
    vfs.mknod_as(
        dir.ino,
        OsStr::new("tty"),
        libc::S_IFCHR | 0o620,
        libc::makedev(4, 1) as u32,
        Caller { uid: 0, gid: 0 },
    )
    .unwrap();

    a.sync();
    b.sync();
    let mine = a.store();
    let theirs = b.store();
    for path in ["team", "team/notes", "team/pipe", "team/tty"] {
        let here = mine.live(&vp(path)).unwrap().unwrap();
        let there = theirs.live(&vp(path)).unwrap().unwrap();
        assert_eq!(there, here, "{path}");
    }
    let notes = theirs.live(&vp("team/notes")).unwrap().unwrap();
    assert_eq!((notes.posix.uid, notes.posix.gid), (Some(1000), Some(100)));
    assert_eq!(
        notes.posix.xattrs.get(b"user.tag".as_slice()).unwrap(),
        b"blue"
    );
    assert_eq!(notes.posix.atime.unwrap().secs, 77);
    let team = theirs.live(&vp("team")).unwrap().unwrap();
    assert_eq!(team.mode & 0o7777, 0o2775);
    let tty = theirs.live(&vp("team/tty")).unwrap().unwrap();
    let special = tty.posix.special.unwrap();
    assert_eq!(
        (tty.kind, special.kind, special.major, special.minor),
        (Kind::File, SpecialKind::Char, 4, 1)
    );
    // The peer's mount shows the same kinds and owners.
    let peer_vfs = Vfs::new(Arc::new(b.reader()));
    let team = peer_vfs.lookup(ROOT_INO, OsStr::new("team")).unwrap();
    let pipe = peer_vfs.lookup(team.ino, OsStr::new("pipe")).unwrap();
    assert_eq!(pipe.kind, globofs::vfs::NodeKind::Fifo);
    let notes = peer_vfs.lookup(team.ino, OsStr::new("notes")).unwrap();
    assert_eq!((notes.uid, notes.gid, notes.perm), (1000, 100, 0o640));
    assert_eq!(
        peer_vfs.read_whole(&vp("team/notes")).unwrap(),
        b"shared notes"
    );
}

#[test]
fn a_reader_without_the_new_keys_reads_the_same_bytes() {
    let cluster = Cluster::mesh(1);
    let a = cluster.node(0);
    let vfs = Vfs::new(Arc::new(a.store()));
    let user = Caller { uid: 7, gid: 7 };
    let (file, opened) = vfs
        .create_as(ROOT_INO, OsStr::new("f"), 0o644, user)
        .unwrap();
    vfs.write(opened.fh, 0, b"same bytes").unwrap();
    vfs.commit(opened.fh, false).unwrap();
    vfs.release(opened.fh).unwrap();
    vfs.setxattr(file.ino, OsStr::new("user.x"), b"1", 0, user)
        .unwrap();
    let version = a.store().live(&vp("f")).unwrap().unwrap();
    let text = version.to_text();
    assert!(
        text.contains("\nuid 7\n") && text.contains("\nxattr user.x 31\n"),
        "{text}"
    );
    // What a reader of the earlier format takes from it: every other line.
    let old_keys: String = text
        .lines()
        .filter(|line| {
            !["uid ", "gid ", "xattr "]
                .iter()
                .any(|k| line.starts_with(k))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let old =
        globofs::store::Version::parse(std::path::Path::new("v"), old_keys.as_bytes()).unwrap();
    assert_eq!(
        (old.size, &old.hashes, old.mode),
        (version.size, &version.hashes, version.mode)
    );
    let mut bytes = Vec::new();
    a.store().copy_to(&old, &mut bytes).unwrap();
    assert_eq!(bytes, b"same bytes");
}

/// The mount root is a version like any other: its mode, owner and xattrs
/// travel with the normal journal, not only with a full check.
#[test]
fn the_volume_roots_attributes_reach_the_peer() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    let vfs = Vfs::new(Arc::new(a.store()));
    let root = Caller { uid: 0, gid: 0 };
    let change = SetAttr {
        mode: Some(0o1777),
        uid: Some(1000),
        gid: Some(1001),
        ..SetAttr::default()
    };
    vfs.set_attributes(ROOT_INO, None, &change).unwrap();
    vfs.setxattr(ROOT_INO, OsStr::new("user.r"), b"r", 0, root)
        .unwrap();
    a.sync();
    let report = b.sync();
    assert!(report.peers.iter().all(|p| p.errors.is_empty()));
    let there = b
        .store()
        .live(&vp(""))
        .unwrap()
        .expect("a root version on the peer");
    assert_eq!(there.mode & 0o7777, 0o1777);
    assert_eq!((there.posix.uid, there.posix.gid), (Some(1000), Some(1001)));
    assert_eq!(there.posix.xattrs.get(b"user.r".as_slice()).unwrap(), b"r");
    let peer = Vfs::new(Arc::new(b.store()));
    let attr = peer.getattr(ROOT_INO).unwrap();
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o1777, 1000, 1001));
}
