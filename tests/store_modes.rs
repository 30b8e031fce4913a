//! The modes of what a store holds (docs/FORMAT.md section 18), and that
//! section's recipe done for real: a peer running as another Unix user reads a
//! root-owned store (pulls its blocks, applies its versions) and pushes into
//! the inbound spool handed to it, and can write nowhere else in that store.
//!
//! Needs root (to make the peer's user and to run as it); without it the tests
//! print `skipped:` and why.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use nodes::{Cluster, Node, Options, data};

/// The Unix user the peer node runs as (made once, kept: tests share it).
const PEER_USER: &str = "globofs-test-peer";
/// Its group, the recipe's group of peers.
const PEER_GROUP: &str = "globofs-peers";

/// Who runs a command, and with which umask.
#[derive(Clone, Copy)]
struct As {
    user: Option<(u32, u32)>,
    umask: u32,
}

const ROOT: As = As {
    user: None,
    umask: 0o022,
};

/// Runs `globofs --spec <node's spec> ARGS` as `who`.
fn cli(node: &Node, who: As, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_globofs"));
    command
        .arg("--spec")
        .arg(&node.spec_path)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("GLOBOFS_SPEC");
    run_as(&mut command, who)
}

/// Runs `command` as `who` (uid/gid switched and umask set in the child).
fn run_as(command: &mut Command, who: As) -> Output {
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::umask(who.umask as libc::mode_t);
            if let Some((uid, gid)) = who.user {
                if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.output().expect("run a command")
}

/// Runs a globofs command that must succeed; returns its stdout bytes.
#[track_caller]
fn ok(node: &Node, who: As, args: &[&str]) -> Vec<u8> {
    let out = cli(node, who, args);
    assert!(
        out.status.success(),
        "globofs {args:?} (node {}) failed ({:?})\n--- stdout:\n{}\n--- stderr:\n{}",
        node.index,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The peer's uid and gid, making the user and group when missing (as the
/// recipe does). None (after `skipped:`) when not root.
fn peer_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: not root (the test makes a Unix user and runs as it)");
        return None;
    }
    let lookup = || {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, PEER_USER]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        Some((id("-u")?, id("-g")?))
    };
    if let Some(found) = lookup() {
        return Some(found);
    }
    // Several tests may get here at once: a failure because another made it
    // meanwhile is fine, the lookup below decides.
    let _ = Command::new("groupadd").args(["-f", PEER_GROUP]).status();
    // A password of `*` (not `!`): sshd refuses logins of locked accounts.
    let _ = Command::new("useradd")
        .args([
            "--system",
            "--gid",
            PEER_GROUP,
            "--shell",
            "/usr/sbin/nologin",
        ])
        .args(["--home-dir", "/nonexistent", "--password", "*", PEER_USER])
        .status();
    Some(lookup().expect("the peer's user exists after useradd"))
}

/// `chown -R -h` (never following the volume's symlinks to other stores).
fn chown_tree(path: &Path, (uid, gid): (u32, u32)) {
    let status = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {}", path.display());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What a walk of a store found: files and directories whose mode is not the
/// documented one, and how many files each top-level part holds.
#[derive(Default, Debug)]
struct Walk {
    wrong: Vec<String>,
    files: BTreeMap<String, usize>,
}

/// Walks `store` (not following symlinks) and checks every mode against
/// docs/FORMAT.md section 18: directories 0755, files 0644, lock files 0600.
/// Entries under `skip` (a tree another user owns) are not checked.
fn walk_store(store: &Path, skip: Option<&Path>) -> Walk {
    fn visit(store: &Path, dir: &Path, skip: Option<&Path>, walk: &mut Walk) {
        for entry in fs::read_dir(dir).expect("read a store directory") {
            let path = entry.expect("directory entry").path();
            if Some(path.as_path()) == skip {
                continue;
            }
            let meta = fs::symlink_metadata(&path).expect("stat");
            let mode = meta.mode() & 0o7777;
            let relative = path.strip_prefix(store).expect("inside the store");
            let top = relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let expected = if meta.is_dir() {
                0o755
            } else if meta.is_file() {
                *walk.files.entry(top.clone()).or_default() += 1;
                if relative.starts_with("state/locks") {
                    0o600
                } else if top == "tmp" {
                    // A writer's temp file; none should be left after a command.
                    walk.wrong
                        .push(format!("{}: a temp file left behind", relative.display()));
                    continue;
                } else {
                    0o644
                }
            } else {
                walk.wrong.push(format!(
                    "{}: neither a file nor a directory",
                    relative.display()
                ));
                continue;
            };
            if mode != expected {
                walk.wrong.push(format!(
                    "{}: mode {mode:04o}, expected {expected:04o}",
                    relative.display()
                ));
            }
            if meta.is_dir() {
                visit(store, &path, skip, walk);
            }
        }
    }
    let mut walk = Walk::default();
    let mode = fs::metadata(store).expect("stat the store").mode() & 0o7777;
    if mode != 0o755 {
        walk.wrong.push(format!(
            "the store directory: mode {mode:04o}, expected 0755"
        ));
    }
    visit(store, store, skip, &mut walk);
    walk
}

/// Every file and directory of two fresh stores after reconcile, put, sync,
/// get (pulling blocks) and a conflict, all run with umask 077: the modes are
/// the documented ones, whatever the umask.
#[test]
fn every_file_and_directory_of_a_store_has_the_documented_mode_whatever_the_umask() {
    let cluster = Cluster::with_edges(2, &[(0, 1)], Options::default());
    let strict = As {
        user: None,
        umask: 0o077,
    };
    let (a, b) = (cluster.node(0), cluster.node(1));
    // The stores again, made by the CLI under the strict umask.
    for node in [a, b] {
        fs::remove_dir_all(&node.volume).expect("remove the in-process store");
        ok(node, strict, &["reconcile"]);
    }
    let src = cluster.root().join("src");
    fs::create_dir_all(src.join("sub/deeper")).expect("source tree");
    fs::write(src.join("one"), data(3 * nodes::BS + 17, 1)).expect("write");
    fs::write(src.join("sub/deeper/two"), data(2 * nodes::BS, 2)).expect("write");
    ok(a, strict, &["put", src.to_str().expect("UTF-8"), "/tree"]);
    let local = cluster.root().join("local");
    fs::write(&local, b"a's edit").expect("write");
    ok(a, strict, &["put", local.to_str().expect("UTF-8"), "/both"]);
    fs::write(&local, b"b's concurrent edit").expect("write");
    ok(b, strict, &["put", local.to_str().expect("UTF-8"), "/both"]);
    for _ in 0..2 {
        ok(a, strict, &["sync"]);
        ok(b, strict, &["sync"]);
    }
    // B reads A's files: their blocks come from A's store into B's.
    let got = ok(b, strict, &["get", "/tree/one", "-"]);
    assert_eq!(got, data(3 * nodes::BS + 17, 1));
    ok(b, strict, &["get", "/tree/sub/deeper/two", "-"]);
    let listing = String::from_utf8(ok(b, strict, &["ls", "/"])).expect("UTF-8 listing");
    assert!(
        listing.contains("sync-conflict"),
        "the concurrent edits made a conflict copy: {listing}"
    );
    for node in [a, b] {
        let walk = walk_store(&node.store_dir(), None);
        assert!(
            walk.wrong.is_empty(),
            "node {}: modes differ from docs/FORMAT.md section 18:\n  {}",
            node.index,
            walk.wrong.join("\n  ")
        );
        // The walk saw every kind of file the commands make.
        for part in [
            "hashes", "root", "journal", "state", "ack", "spool", "format",
        ] {
            assert!(
                walk.files.get(part).copied().unwrap_or(0) > 0,
                "node {}: no file under {part} ({:?})",
                node.index,
                walk.files
            );
        }
    }
}

/// docs/FORMAT.md section 18 for real, with a plain directory: node A's store
/// belongs to root with reconcile's modes, A's `spool/inbound/<B>` is handed to
/// B's user; node B runs as that user with its own store. B gets A's file
/// (pulling A's blocks), B's write reaches A through A's inbound spool, and B
/// cannot write anywhere else in A's store.
#[test]
fn a_peer_running_as_another_user_pulls_and_pushes_as_the_recipe_says() {
    let Some(peer) = peer_user() else {
        return;
    };
    let cluster = Cluster::with_edges(2, &[(0, 1)], Options::default());
    let (a, b) = (cluster.node(0), cluster.node(1));
    recipe(&cluster, peer);
    exchange(a, b, peer);
}

/// The same over sshfs: B reaches A's store through a real sshfs login as
/// B's user to sshd on 127.0.0.1, so the SFTP server enforces the modes.
#[test]
fn a_peer_logged_in_over_sshfs_as_another_user_pulls_and_pushes_as_the_recipe_says() {
    let Some(peer) = peer_user() else {
        return;
    };
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = Cluster::with_edges(2, &[(0, 1)], Options::default().with_mount_points());
    let (a, b) = (cluster.node(0), cluster.node(1));
    recipe(&cluster, peer);
    // A reaches B's store directly (root), B reaches A's through sshfs as its user.
    let root = cluster.root();
    let a_to_b = nodes::mount_point(&root, 0, 1);
    if let Some(parent) = a_to_b.parent() {
        fs::create_dir_all(parent).expect("mount point parent");
        chmod(parent, 0o755);
    }
    std::os::unix::fs::symlink(b.store_dir(), &a_to_b).expect("A's path to B");
    let b_to_a = nodes::mount_point(&root, 1, 0);
    let _mount = server.mount_as(PEER_USER, &a.store_dir(), &b_to_a);
    exchange(a, b, peer);
}

/// Sets up section 18's recipe: B's volume belongs to B's user, A's store
/// stays root's with reconcile's modes, and A's inbound spool for B is B's.
fn recipe(cluster: &Cluster, peer: (u32, u32)) {
    let (a, b) = (cluster.node(0), cluster.node(1));
    // The temp dir is 0700; the recipe's volume directories are 0755.
    chmod(&cluster.root(), 0o755);
    chmod(&a.volume, 0o755);
    chown_tree(&b.volume, peer);
    let inbound = a.inbound(b);
    chown_tree(&inbound, peer);
    chmod(&inbound, 0o755);
}

/// A writes, B reads it; B writes, A reads it; B cannot write elsewhere in A.
fn exchange(a: &Node, b: &Node, peer: (u32, u32)) {
    let as_peer = As {
        user: Some(peer),
        umask: 0o022,
    };
    let src = a.volume.parent().expect("cluster root").join("from-a");
    let content = data(5 * nodes::BS + 3, 7);
    fs::write(&src, &content).expect("write");
    chmod(&src, 0o644);
    ok(a, ROOT, &["put", src.to_str().expect("UTF-8"), "/from-a"]);
    ok(a, ROOT, &["sync"]);
    ok(b, as_peer, &["sync"]);
    // B pulls A's blocks: A's hashes/ must be readable to B's user.
    let got = ok(b, as_peer, &["get", "/from-a", "-"]);
    assert_eq!(got.len(), content.len(), "B read A's file");
    assert!(got == content, "B read A's file with the right bytes");
    let their = b.volume.parent().expect("cluster root").join("from-b");
    fs::write(&their, b"written by the peer's user").expect("write");
    chmod(&their, 0o644);
    ok(
        b,
        as_peer,
        &["put", their.to_str().expect("UTF-8"), "/from-b"],
    );
    ok(b, as_peer, &["sync"]);
    // B's push went into A's inbound spool, as B's user.
    let journal = a.inbound(b).join("%journal");
    let owner = fs::metadata(&journal)
        .expect("B's journal in A's spool")
        .uid();
    assert_eq!(owner, peer.0, "B's journal at A is B's user's");
    ok(a, ROOT, &["sync"]);
    assert_eq!(
        ok(a, ROOT, &["get", "/from-b", "-"]),
        b"written by the peer's user"
    );

    // Anywhere else in A's store, B's user cannot write: EACCES.
    let store = a.store_dir();
    let hash_dir = fs::read_dir(store.join("hashes"))
        .expect("A's hashes")
        .next()
        .expect("a block directory")
        .expect("entry")
        .path();
    for dir in [
        store.join("root"),
        store.join("root/from-a/versions"),
        store.join("hashes"),
        hash_dir,
        store.join("journal"),
        store.join("ack"),
        store.join("state"),
        store.join("spool/inbound"),
        store.join("spool/outbound"),
        store.clone(),
    ] {
        let target = dir.join("intruder");
        let out = run_as(Command::new("touch").arg(&target), as_peer);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Permission denied"),
            "B's user could write {} (or failed otherwise: {stderr})",
            target.display()
        );
        assert!(!target.exists(), "{} was made", target.display());
    }
    // Nor change what is there.
    let version = fs::read_dir(store.join("root/from-a/versions"))
        .expect("versions")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n != "log"))
        .expect("a version file");
    for file in [
        store.join("format"),
        store.join("root/from-a/versions/log"),
        version,
    ] {
        let out = run_as(
            Command::new("sh")
                .arg("-c")
                .arg("echo x >> \"$0\"")
                .arg(&file),
            as_peer,
        );
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "B's user could append to {}",
            file.display()
        );
    }
    // A's store keeps the documented modes (B's own spool there is B's business).
    let walk = walk_store(&store, Some(&a.inbound(b)));
    assert!(
        walk.wrong.is_empty(),
        "A's store: modes differ from docs/FORMAT.md section 18:\n  {}",
        walk.wrong.join("\n  ")
    );
}
