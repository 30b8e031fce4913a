//! The tools people back up and copy trees with, against the mount: a tree on
//! a plain directory with several owners, modes with a setgid
//! directory, extended attributes, ACLs, a FIFO, a unix socket, a device node,
//! a file with a hole, a file with three hard-linked names and old mtimes
//! goes in with `rsync -aHAX` (exit 0, and a
//! second `rsync -aHAXn -i` has nothing to do) and `cp -a`, and comes out the
//! same entry for entry: on this node, and on a second node after sync (its
//! store a plain directory, or reached over sshfs).

#[path = "common/mount.rs"]
mod mount;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use mount::Mounted;
use peer::{PeerNode, eventually, node_id};

const PEER: &str = "b0b0b0b0-0000-4000-8000-0000000000b7";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script))
}

/// Builds the source tree under `src` (on the local disk).
fn make_tree(src: &Path) {
    std::fs::create_dir_all(src).unwrap();
    let s = src.display();
    sh(&format!(
        "set -e; cd {s}
         mkdir -p docs/deep team empty
         printf 'hello\\n' > docs/readme
         head -c 70000 /dev/urandom > docs/deep/blob
         printf 'x' > docs/deep/tiny
         : > docs/empty-file
         chown 1000:100 docs/readme
         chown 1001:1001 docs/deep/blob
         chown 65534:65534 docs/deep
         chmod 2775 team && chgrp 100 team
         chmod 4755 docs/deep/tiny
         chmod 600 docs/empty-file
         ln -s ../docs/readme team/link-to-readme
         ln -s dangling team/dangling
         ln docs/readme docs/readme-link
         ln docs/readme team/readme-third
         setfattr -n user.comment -v 'a note' docs/readme
         setfattr -n user.bin -v 0x00ff10 docs/deep/blob
         setfattr -n trusted.root-only -v secret docs/deep/tiny
         setfacl -m u:65534:rw,g:100:r docs/deep/blob
         setfacl -d -m u:1000:rwx team
         mkfifo team/pipe
         mknod team/null c 1 3
         truncate -s 10M docs/sparse
         printf 'end' | dd of=docs/sparse bs=1 seek=5000000 conv=notrunc 2>/dev/null
         touch -h -d '2001-02-03 04:05:06.123456789' team/link-to-readme
         touch -h -d '2002-02-02 02:02:02' team/dangling
         touch -d '2003-03-03' docs/deep/tiny docs/empty-file
         touch -d '1999-12-31 23:59:59.5' docs/deep/blob docs/readme
         touch -d '2010-01-01' docs/sparse team/pipe team/null empty
         touch -d '2005-05-05' docs/deep docs team"
    ));
    // A unix socket, bound and left behind (its entry is what is copied).
    let socket = src.join("team/sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    sh(&format!(
        "touch -h -d '2011-11-11' {} && touch -d '2005-05-05' {s}/team",
        socket.display()
    ));
}

/// What is compared of one entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Size and content digest for files, the target for symlinks.
    content: String,
    mtime: (i64, i64),
    rdev: u64,
    nlink: u64,
    /// The first name (in sorted order) of the entry's hard-link group.
    group: String,
    xattrs: String,
    acl: String,
}

/// Every entry under `root` (not `root` itself) by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut paths = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            out.push(path.clone());
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(&path, out);
            }
        }
    }
    walk(root, &mut paths);
    let mut groups: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for path in paths {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "file"
        };
        let content = match kind {
            "file" => {
                let bytes = std::fs::read(&path).unwrap();
                let sum: u64 = bytes
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as u64 + 1).wrapping_mul(u64::from(*b) + 7))
                    .fold(0u64, u64::wrapping_add);
                format!("{} bytes, sum {sum}", bytes.len())
            }
            "symlink" => std::fs::read_link(&path).unwrap().display().to_string(),
            _ => String::new(),
        };
        let group = if kind == "file" && meta.nlink() > 1 {
            groups
                .entry(meta.ino())
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            rel.clone()
        };
        let xattrs = run(Command::new("getfattr")
            .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
            .arg(&path));
        let xattrs: String = xattrs
            .lines()
            .filter(|l| !l.starts_with("# file:") && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let acl = if kind == "symlink" {
            String::new()
        } else {
            run(Command::new("getfacl").args(["-c", "-p"]).arg(&path))
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                // A directory's mtime is compared too: rsync sets it last.
                mtime: (meta.mtime(), meta.mtime_nsec()),
                rdev: meta.rdev(),
                nlink: if kind == "dir" || kind == "file" {
                    meta.nlink()
                } else {
                    0
                },
                group,
                xattrs,
                acl,
            },
        );
    }
    out
}

fn assert_same(want: &BTreeMap<String, Entry>, got: &BTreeMap<String, Entry>, what: &str) {
    let want_names: Vec<_> = want.keys().collect();
    let got_names: Vec<_> = got.keys().collect();
    assert_eq!(got_names, want_names, "{what}: the names");
    for (name, entry) in want {
        assert_eq!(&got[name], entry, "{what}: {name}");
    }
}

fn rsync(args: &[&str], from: &Path, to: &Path) -> String {
    run(Command::new("rsync")
        .args(args)
        .arg(format!("{}/", from.display()))
        .arg(to))
}

/// The tree into node A's mount with rsync and cp, compared there, then on
/// node B (whose store A sees at `b_seen_at`) after sync, through B's own mount.
fn round_trip(b: &PeerNode, b_seen_at: &Path) {
    let a = Mounted::with(
        "4KiB",
        &format!(
            "peers:\n  - id: {PEER}\n    path: {}\nsync:\n  interval: 1s\n  timeout: 2s\n",
            b_seen_at.display()
        ),
    );
    std::fs::set_permissions(a.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = a.dir.path().join("src");
    make_tree(&src);
    let want = snapshot(&src);
    // The three names of docs/readme are one file (compared by group below).
    for name in ["docs/readme-link", "team/readme-third"] {
        assert_eq!(want[name].group, "docs/readme", "{name}");
        assert_eq!(want[name].nlink, 3, "{name}");
    }

    let dst = a.path("rsynced");
    rsync(&["-aHAX"], &src, &dst);
    let again = rsync(&["-aHAXn", "-i"], &src, &dst);
    assert_eq!(again, "", "a second rsync would still change these");
    assert_same(&want, &snapshot(&dst), "rsync -aHAX into the mount");

    // The file with a hole stays small in the mount (rsync wrote its zeros).
    let sparse = std::fs::metadata(dst.join("docs/sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "a 10 MiB sparse file takes {} bytes",
        sparse.blocks() * 512
    );

    let copied = a.path("copied");
    run(Command::new("cp").arg("-a").arg(&src).arg(&copied));
    assert_same(&want, &snapshot(&copied), "cp -a into the mount");

    // Node B: it syncs from A, then its own mount shows the same tree.
    let a_id = node_id(&a.spec);
    b.wire(Some((&a_id, &a.volume.join(&a_id))));
    eventually("the tree to reach B", || {
        b.files().iter().any(|name| name == "rsynced")
            && b.run(&["ls", "/rsynced/team"]).lines().any(|l| l == "sock")
    });
    b.run(&["sync"]);
    let b_mount = Mounted::of_spec(&b.spec, b.store.parent().unwrap());
    assert_same(&want, &snapshot(&b_mount.path("rsynced")), "on node B");
}

#[test]
fn rsync_and_cp_round_trip_a_posix_tree_and_it_syncs() {
    let b = PeerNode::new(PEER);
    let store = b.store.clone();
    round_trip(&b, &store);
}

#[test]
fn the_round_tripped_tree_arrives_over_sshfs() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let b = PeerNode::new(PEER);
    let mounts = tempfile::tempdir().unwrap();
    let local = mounts.path().join("b");
    let _mount = server.mount(&b.store, &local);
    round_trip(&b, &local);
}
