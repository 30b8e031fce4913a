//! Hard links travel with versions: a group linked, written, renamed and
//! unlinked through one node's core ends on its peer with the same names
//! linked (one inode, the same link count), a reader that ignores the link
//! keys reads identical bytes at every name, and names whose versions
//! disagree (a node that does not know the keys wrote one of them) show as
//! files of their own on every node.

#[path = "common/nodes.rs"]
mod nodes;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::Arc;

use globofs::store::{Store, Version};
use globofs::vfs::{ROOT_INO, SetAttr, Vfs};
use nodes::{Cluster, Node, vp};

/// Writes `bytes` over the file at `ino` through an open handle of the core.
fn write_through(vfs: &Vfs, ino: u64, bytes: &[u8]) {
    let opened = vfs.open(ino, true, true).unwrap();
    vfs.write(opened.fh, 0, bytes).unwrap();
    vfs.commit(opened.fh, false).unwrap();
    vfs.release(opened.fh).unwrap();
}

/// The linked names of `path` on `store` (empty: a file of its own).
fn group(store: &Store, path: &str) -> Vec<String> {
    let version = store.live(&vp(path)).unwrap().expect("a live file");
    store
        .linked_names(&version)
        .unwrap()
        .map(|group| group.names.iter().map(|name| name.display()).collect())
        .unwrap_or_default()
}

/// A node's core, and the inode and link count it shows for `path`.
fn ino_and_nlink(vfs: &Vfs, path: &str) -> (u64, u32) {
    let mut dir = ROOT_INO;
    let names: Vec<&str> = path.split('/').collect();
    for name in &names[..names.len() - 1] {
        dir = vfs.lookup(dir, OsStr::new(name)).unwrap().ino;
    }
    let attr = vfs.lookup(dir, OsStr::new(names[names.len() - 1])).unwrap();
    (attr.ino, attr.nlink)
}

/// What a reader of the format before link groups takes from `version`.
fn without_link_keys(version: &Version) -> Version {
    let text: String = version
        .to_text()
        .lines()
        .filter(|line| !line.starts_with("link-group ") && !line.starts_with("link "))
        .map(|line| format!("{line}\n"))
        .collect();
    Version::parse(std::path::Path::new("v"), text.as_bytes()).unwrap()
}

fn bytes_for_old_reader(node: &Node, path: &str) -> Vec<u8> {
    let store = node.reader();
    let version = store.live(&vp(path)).unwrap().unwrap();
    let old = without_link_keys(&version);
    assert!(old.posix.links.is_none());
    let mut out = Vec::new();
    store.copy_to(&old, &mut out).unwrap();
    out
}

#[test]
fn a_link_group_changed_on_one_node_is_the_same_group_on_its_peer() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    a.put("docs/readme", b"first words");
    a.put("team/keep", b"k");
    let vfs = Vfs::new(Arc::new(a.store()));
    let docs = vfs.lookup(ROOT_INO, OsStr::new("docs")).unwrap().ino;
    let team = vfs.lookup(ROOT_INO, OsStr::new("team")).unwrap().ino;
    let readme = vfs.lookup(docs, OsStr::new("readme")).unwrap();
    let second = vfs
        .link(readme.ino, docs, OsStr::new("readme-link"))
        .unwrap();
    let third = vfs.link(readme.ino, team, OsStr::new("third")).unwrap();
    assert_eq!((second.ino, third.ino), (readme.ino, readme.ino));
    assert_eq!(third.nlink, 3);
    // A write and a chmod through one name, a rename and an unlink of others.
    write_through(&vfs, second.ino, b"new words, longer");
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    vfs.set_attributes(third.ino, None, &chmod).unwrap();
    vfs.rename(
        team,
        OsStr::new("third"),
        team,
        OsStr::new("renamed"),
        false,
        false,
    )
    .unwrap();
    a.put("spare", b"spare");
    let spare = vfs.lookup(ROOT_INO, OsStr::new("spare")).unwrap();
    vfs.link(spare.ino, ROOT_INO, OsStr::new("spare-link"))
        .unwrap();
    vfs.unlink(ROOT_INO, OsStr::new("spare")).unwrap();
    assert_eq!(ino_and_nlink(&vfs, "spare-link").1, 1);
    a.sync();
    b.sync();

    let linked = vec!["/docs/readme", "/docs/readme-link", "/team/renamed"];
    let peer = b.reader();
    for name in ["docs/readme", "docs/readme-link", "team/renamed"] {
        assert_eq!(group(&a.store(), name), linked, "{name} on the writer");
        assert_eq!(group(&peer, name), linked, "{name} on the peer");
        assert_eq!(b.read(name).unwrap(), b"new words, longer");
        assert_eq!(peer.live(&vp(name)).unwrap().unwrap().mode, 0o600);
        // A node that ignores the keys reads the same bytes at every name.
        assert_eq!(bytes_for_old_reader(b, name), b"new words, longer");
    }
    assert!(group(&peer, "spare-link").is_empty());
    assert!(b.read("team/third").is_none() && b.read("spare").is_none());
    // The peer's mount shows one inode for the three names, with three links.
    let peer_vfs = Vfs::new(Arc::new(b.reader()));
    let inos: BTreeSet<(u64, u32)> = ["docs/readme", "docs/readme-link", "team/renamed"]
        .iter()
        .map(|name| ino_and_nlink(&peer_vfs, name))
        .collect();
    assert_eq!(inos.len(), 1, "{inos:?}");
    assert_eq!(inos.first().unwrap().1, 3);
    assert_ne!(
        ino_and_nlink(&peer_vfs, "team/keep").0,
        inos.first().unwrap().0
    );
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after the link changes");
}

#[test]
fn names_a_node_without_the_keys_changed_are_files_of_their_own_everywhere() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    a.put("x", b"shared");
    a.store().link(&vp("x"), &vp("y")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(group(&b.store(), "x"), vec!["/x", "/y"]);
    // An older release on b writes x as a plain file (it knows no keys).
    b.put("x", b"b's own bytes");
    b.sync();
    a.sync();
    for node in [a, b] {
        let store = node.store();
        assert!(group(&store, "x").is_empty() && group(&store, "y").is_empty());
        assert_eq!(node.read("x").unwrap(), b"b's own bytes");
        assert_eq!(node.read("y").unwrap(), b"shared");
        let vfs = Vfs::new(Arc::new(node.reader()));
        let (x, y) = (ino_and_nlink(&vfs, "x"), ino_and_nlink(&vfs, "y"));
        assert_ne!(x.0, y.0);
        assert_eq!((x.1, y.1), (1, 1));
    }
    // A change through y now writes y alone, without the keys.
    let vfs = Vfs::new(Arc::new(a.store()));
    let y = vfs.lookup(ROOT_INO, OsStr::new("y")).unwrap();
    write_through(&vfs, y.ino, b"y alone");
    assert_eq!(a.read("x").unwrap(), b"b's own bytes");
    assert!(
        a.store()
            .live(&vp("y"))
            .unwrap()
            .unwrap()
            .posix
            .links
            .is_none()
    );
}

#[test]
fn concurrent_changes_through_two_names_converge_on_every_node() {
    let cluster = Cluster::mesh(2);
    let a = cluster.node(0);
    let b = cluster.node(1);
    a.put("x", b"start");
    a.store().link(&vp("x"), &vp("y")).unwrap();
    a.sync();
    b.sync();
    // Both nodes change the file, each through another name, before syncing:
    // every name gets a version from each, and each name resolves on its own.
    let on_a = Vfs::new(Arc::new(a.store()));
    write_through(
        &on_a,
        on_a.lookup(ROOT_INO, OsStr::new("x")).unwrap().ino,
        b"from a",
    );
    let on_b = Vfs::new(Arc::new(b.store()));
    write_through(
        &on_b,
        on_b.lookup(ROOT_INO, OsStr::new("y")).unwrap().ino,
        b"from b",
    );
    a.sync();
    b.sync();
    a.sync();
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after concurrent changes");
    for node in [a, b] {
        let store = node.store();
        let (x, y) = (node.read("x").unwrap(), node.read("y").unwrap());
        // Linked only where the same change won at both names; else two files.
        match group(&store, "x").len() {
            2 => assert_eq!(x, y),
            0 => assert!(group(&store, "y").is_empty()),
            other => panic!("a group of {other}"),
        }
        // Nothing is lost: the losing change is a conflict copy.
        let tree = node.tree();
        let copies = tree
            .keys()
            .filter(|p| p.contains(".sync-conflict-"))
            .count();
        assert!(copies >= 2, "{tree:?}");
    }
}
