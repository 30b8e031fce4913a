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
        umask: 0,
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
        Caller {
            uid: 0,
            gid: 0,
            umask: 0,
        },
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
    let user = Caller {
        uid: 7,
        gid: 7,
        umask: 0,
    };
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
    let root = Caller {
        uid: 0,
        gid: 0,
        umask: 0,
    };
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

/// RENAME_EXCHANGE on one node: the peer ends with the two names swapped
/// (the same versions, so the same tree), each new version naming where
/// its content came from.
#[test]
fn an_exchange_of_two_names_reaches_the_peer() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    a.put("file", b"the file");
    a.put("dir/inner", b"inside");
    a.put("dir/sub/deep", b"deep");
    a.put("x", b"x's");
    a.put("y", b"y's, longer");
    a.sync();
    b.sync();
    let vfs = Vfs::new(Arc::new(a.store()));
    vfs.rename(
        ROOT_INO,
        OsStr::new("file"),
        ROOT_INO,
        OsStr::new("dir"),
        false,
        true,
    )
    .unwrap();
    vfs.rename(
        ROOT_INO,
        OsStr::new("x"),
        ROOT_INO,
        OsStr::new("y"),
        false,
        true,
    )
    .unwrap();
    a.sync();
    b.sync();
    assert_eq!(b.read("dir").unwrap(), b"the file");
    assert_eq!(b.read("file/inner").unwrap(), b"inside");
    assert_eq!(b.read("file/sub/deep").unwrap(), b"deep");
    assert_eq!(b.read("x").unwrap(), b"y's, longer");
    assert_eq!(b.read("y").unwrap(), b"x's");
    assert!(b.read("dir/inner").is_none());
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after the exchange");
    assert_eq!(a.listing(), b.listing());
    let moved = b.store().live(&vp("x")).unwrap().unwrap();
    assert_eq!(moved.from.as_ref().map(|(_, p)| p.clone()), Some(vp("y")));
}

/// An ACL in the kernel's binary form: the version, then (tag, perm, id).
fn acl_bytes(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// A default ACL set on one node is inherited by what is created under it,
/// and both ACLs and the modes they imply arrive on the peer; an ACL a peer
/// wrote that does not parse is not handed to the kernel.
#[test]
fn acls_are_inherited_and_arrive_on_the_peer() {
    const NONE: u32 = u32::MAX;
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    let vfs = Vfs::new(Arc::new(a.store()));
    let root = Caller {
        uid: 0,
        gid: 0,
        umask: 0o077,
    };
    let dir = vfs
        .mkdir_as(ROOT_INO, OsStr::new("lab"), 0o755, root)
        .unwrap();
    let default = acl_bytes(&[
        (0x01, 7, NONE),
        (0x02, 7, 1234),
        (0x04, 5, NONE),
        (0x10, 7, NONE),
        (0x20, 0, NONE),
    ]);
    vfs.setxattr(
        dir.ino,
        OsStr::new("system.posix_acl_default"),
        &default,
        0,
        root,
    )
    .unwrap();
    let (file, opened) = vfs
        .create_as(dir.ino, OsStr::new("data"), 0o666, root)
        .unwrap();
    vfs.release(opened.fh).unwrap();
    // The umask 077 yields to the default ACL: 0666 narrowed by it.
    assert_eq!(file.perm, 0o660);
    let inherited = acl_bytes(&[
        (0x01, 6, NONE),
        (0x02, 7, 1234),
        (0x04, 5, NONE),
        (0x10, 6, NONE),
        (0x20, 0, NONE),
    ]);
    let access = OsStr::new("system.posix_acl_access");
    assert_eq!(vfs.getxattr(file.ino, access, root).unwrap(), inherited);

    a.sync();
    b.sync();
    let peer_vfs = Vfs::new(Arc::new(b.reader()));
    let lab = peer_vfs.lookup(ROOT_INO, OsStr::new("lab")).unwrap();
    let data = peer_vfs.lookup(lab.ino, OsStr::new("data")).unwrap();
    assert_eq!(data.perm, 0o660);
    assert_eq!(
        peer_vfs.getxattr(data.ino, access, root).unwrap(),
        inherited
    );
    assert_eq!(
        peer_vfs
            .getxattr(lab.ino, OsStr::new("system.posix_acl_default"), root)
            .unwrap(),
        default
    );

    // A bad ACL (named entries, no mask) written straight into a version.
    let bad = acl_bytes(&[
        (0x01, 7, NONE),
        (0x02, 7, 9),
        (0x04, 5, NONE),
        (0x20, 0, NONE),
    ]);
    a.store()
        .change_attrs(&vp("lab/data"), |content| {
            content
                .posix
                .xattrs
                .insert(b"system.posix_acl_access".to_vec(), bad);
        })
        .unwrap();
    let fresh = Vfs::new(Arc::new(a.store()));
    let lab = fresh.lookup(ROOT_INO, OsStr::new("lab")).unwrap();
    let data = fresh.lookup(lab.ino, OsStr::new("data")).unwrap();
    let err = fresh.getxattr(data.ino, access, root).unwrap_err();
    assert_eq!(err.errno(), libc::ENODATA);
}
