//! Hard links through a real mount: `ln` gives a file another name with the
//! same inode, content and attributes; `st_nlink` counts the names; a write,
//! chmod, chown, xattr or utime through one name shows through all; unlink
//! and rename of one name keep the rest; `rsync -aH` into the mount keeps a
//! tree's link groups; and a second node ends with the same names linked.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/peer.rs"]
mod peer;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use mount::{Mounted, errno};
use peer::{PeerNode, node_id};

fn meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

/// The regular files below `dir` grouped by inode: each group's names
/// (relative, sorted), groups sorted (what `rsync -H` and `tar` rely on).
fn link_groups(dir: &Path) -> BTreeSet<Vec<String>> {
    fn walk(dir: &Path, top: &Path, out: &mut BTreeMap<u64, Vec<String>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, top, out);
            } else if meta.is_file() {
                let name = path.strip_prefix(top).unwrap().display().to_string();
                out.entry(meta.ino()).or_default().push(name);
            }
        }
    }
    let mut by_ino = BTreeMap::new();
    walk(dir, dir, &mut by_ino);
    by_ino
        .into_values()
        .map(|mut names| {
            names.sort();
            names
        })
        .collect()
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_link_shares_the_inode_the_content_and_counts_the_names() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("a"), b"one").unwrap();
    std::fs::hard_link(m.path("a"), m.path("d/b")).unwrap();
    let (a, b) = (meta(&m.path("a")), meta(&m.path("d/b")));
    assert_eq!(a.ino(), b.ino());
    assert_eq!((a.nlink(), b.nlink()), (2, 2));
    // A write through one name is read through the other.
    std::fs::write(m.path("d/b"), b"two, longer").unwrap();
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"two, longer");
    // A handle open on one name sees what was written through the other.
    let mut reader = std::fs::File::open(m.path("a")).unwrap();
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("d/b"))
        .unwrap();
    writer.write_all(b"TWO").unwrap();
    drop(writer);
    let mut seen = String::new();
    reader.rewind().unwrap();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "TWO, longer");
    // A third name, then its count everywhere.
    std::fs::hard_link(m.path("d/b"), m.path("c")).unwrap();
    for name in ["a", "d/b", "c"] {
        assert_eq!(meta(&m.path(name)).nlink(), 3, "{name}");
        assert_eq!(meta(&m.path(name)).ino(), a.ino(), "{name}");
    }
    // The listing shows the same inode for each name.
    let listed: BTreeSet<u64> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "d")
        .map(|entry| entry.ino())
        .collect();
    assert_eq!(listed, BTreeSet::from([a.ino()]));
}

#[test]
fn unlink_and_rename_of_one_name_keep_the_others() {
    let m = Mounted::new();
    std::fs::write(m.path("a"), b"kept").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    std::fs::hard_link(m.path("a"), m.path("c")).unwrap();
    let ino = meta(&m.path("a")).ino();
    let ctime = meta(&m.path("b")).ctime_nsec() as i128
        + meta(&m.path("b")).ctime() as i128 * 1_000_000_000;
    std::fs::remove_file(m.path("a")).unwrap();
    assert!(!m.path("a").exists());
    for name in ["b", "c"] {
        let now = meta(&m.path(name));
        assert_eq!((now.ino(), now.nlink()), (ino, 2), "{name}");
        assert_eq!(std::fs::read(m.path(name)).unwrap(), b"kept");
        let changed = now.ctime_nsec() as i128 + now.ctime() as i128 * 1_000_000_000;
        assert!(changed > ctime, "{name}: the unlink moves ctime");
    }
    std::fs::create_dir(m.path("sub")).unwrap();
    std::fs::rename(m.path("c"), m.path("sub/moved")).unwrap();
    let (b, moved) = (meta(&m.path("b")), meta(&m.path("sub/moved")));
    assert_eq!((b.ino(), moved.ino()), (ino, ino));
    assert_eq!((b.nlink(), moved.nlink()), (2, 2));
    // A rename between two names of one file does nothing.
    std::fs::rename(m.path("b"), m.path("sub/moved")).unwrap();
    assert!(m.path("b").exists() && m.path("sub/moved").exists());
    // The last name but one goes: the other is a file of its own.
    std::fs::remove_file(m.path("b")).unwrap();
    assert_eq!(meta(&m.path("sub/moved")).nlink(), 1);
    assert_eq!(std::fs::read(m.path("sub/moved")).unwrap(), b"kept");
}

#[test]
fn attributes_changed_through_one_name_show_through_all() {
    let m = Mounted::new();
    std::fs::write(m.path("a"), b"x").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    std::fs::set_permissions(m.path("b"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(meta(&m.path("a")).mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(m.path("a"), Some(1234), Some(4321)).unwrap();
    assert_eq!(
        (meta(&m.path("b")).uid(), meta(&m.path("b")).gid()),
        (1234, 4321)
    );
    run(Command::new("setfattr")
        .args(["-n", "user.tag", "-v", "hello"])
        .arg(m.path("b")));
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "user.tag"])
        .arg(m.path("a"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hello");
    run(Command::new("touch")
        .args(["-m", "-d", "@1000000000"])
        .arg(m.path("a")));
    assert_eq!(meta(&m.path("b")).mtime(), 1_000_000_000);
    assert_eq!(meta(&m.path("b")).nlink(), 2);
}

#[test]
fn what_cannot_be_linked_gets_the_errno_of_a_local_disk() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("f"), b"f").unwrap();
    std::fs::write(m.path("g"), b"g").unwrap();
    std::os::unix::fs::symlink("f", m.path("s")).unwrap();
    assert_eq!(
        errno(std::fs::hard_link(m.path("dir"), m.path("dir2"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::hard_link(m.path("s"), m.path("s2"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::hard_link(m.path("f"), m.path("g"))),
        libc::EEXIST
    );
    assert_eq!(std::fs::read(m.path("g")).unwrap(), b"g");
    assert_eq!(meta(&m.path("f")).nlink(), 1);
    // What can be linked, is (the kernel itself refuses the cases above on
    // any file system; the link below reaches the mount).
    std::fs::hard_link(m.path("f"), m.path("h")).unwrap();
    assert_eq!(meta(&m.path("f")).nlink(), 2);
}

#[test]
fn rsync_cp_and_tar_keep_a_trees_link_groups() {
    let m = Mounted::new();
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    std::fs::create_dir_all(s.join("docs")).unwrap();
    std::fs::create_dir_all(s.join("team")).unwrap();
    std::fs::write(s.join("docs/readme"), b"read me").unwrap();
    std::fs::write(s.join("docs/alone"), b"alone").unwrap();
    std::fs::write(s.join("team/pair"), b"pair").unwrap();
    std::fs::hard_link(s.join("docs/readme"), s.join("docs/readme-link")).unwrap();
    std::fs::hard_link(s.join("docs/readme"), s.join("team/readme-third")).unwrap();
    std::fs::hard_link(s.join("team/pair"), s.join("team/pair-2")).unwrap();
    let expected = link_groups(s);
    assert_eq!(expected.len(), 3);
    run(Command::new("rsync")
        .arg("-aH")
        .arg(format!("{}/", s.display()))
        .arg(m.path("copy")));
    assert_eq!(link_groups(&m.path("copy")), expected);
    assert_eq!(
        std::fs::read(m.path("copy/team/readme-third")).unwrap(),
        b"read me"
    );
    // And back out of the mount with cp -a: the same groups.
    let back = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(m.path("copy"))
        .arg(back.path().join("copy")));
    assert_eq!(link_groups(&back.path().join("copy")), expected);
    // tar through a pipe, into the mount: the same groups.
    std::fs::create_dir(m.path("tarred")).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -cf - . | tar -C {} -xf -",
        s.display(),
        m.path("tarred").display()
    )));
    assert_eq!(link_groups(&m.path("tarred")), expected);
}

#[test]
fn a_second_node_ends_with_the_same_names_linked() {
    const PEER: &str = "b0b0b0b0-0000-4000-8000-00000000000b";
    let b = PeerNode::new(PEER);
    let a = Mounted::with(
        "4KiB",
        &format!(
            "peers:\n  - id: {PEER}\n    path: {}\nsync:\n  interval: 1h\n",
            b.store.display()
        ),
    );
    let a_id = node_id(&a.spec);
    b.wire(Some((&a_id, &a.volume.join(&a_id))));
    std::fs::create_dir(a.path("d")).unwrap();
    std::fs::write(a.path("d/one"), b"linked bytes").unwrap();
    std::fs::write(a.path("other"), b"other").unwrap();
    std::fs::hard_link(a.path("d/one"), a.path("d/two")).unwrap();
    std::fs::hard_link(a.path("d/one"), a.path("three")).unwrap();
    std::fs::rename(a.path("three"), a.path("d/three")).unwrap();
    let expected = link_groups(&a.mnt);
    let out = a.globofs(&["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.run(&["sync"]);
    let b_mount = Mounted::of_spec(&b.spec, b.store.parent().unwrap());
    assert_eq!(link_groups(&b_mount.mnt), expected);
    assert_eq!(meta(&b_mount.path("d/two")).nlink(), 3);
    assert_eq!(
        std::fs::read(b_mount.path("d/three")).unwrap(),
        b"linked bytes"
    );
}
