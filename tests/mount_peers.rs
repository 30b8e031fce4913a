//! The mount with peers: blocks a read needs are pulled from a peer's store (a
//! plain directory, or an sshfs mount through a real sshd on 127.0.0.1),
//! verified and kept, so the node reads them with the peer gone; the mount syncs
//! on its own; and a hung peer cannot hang the mount.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mount::Mounted;
use peer::{PeerNode, eventually, node_id};

const PEER: &str = "b0b0b0b0-0000-4000-8000-00000000000b";

fn blocks_in(store: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&entry.path(), n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&store.join("hashes"), &mut n);
    n
}

/// Mounts node A with B's store at `b_seen_at`.
fn mount_a(b_seen_at: &Path) -> Mounted {
    Mounted::with(
        "4KiB",
        &format!(
            "peers:\n  - id: {PEER}\n    path: {}\nsync:\n  interval: 1s\n  timeout: 2s\n",
            b_seen_at.display()
        ),
    )
}

fn pulls_and_keeps_blocks(b_seen_by_a: impl FnOnce(&Path) -> (PathBuf, Option<sshfs::SshfsMount>)) {
    // B's store must exist before A is mounted; A's store is needed for B's spec.
    let b_home = tempfile::tempdir().unwrap();
    let b = PeerNode::new(PEER);
    let (seen_at, sshfs_mount) = b_seen_by_a(&b.store);
    let a = mount_a(&seen_at);
    let a_id = node_id(&a.spec);
    let a_store = a.volume.join(&a_id);
    b.wire(Some((&a_id, &a_store)));

    // B writes a 10-block file and pushes it to A.
    let data: Vec<u8> = (0..10 * 4096 + 7).map(|i| (i * 7 % 253) as u8).collect();
    let src = b_home.path().join("src");
    std::fs::write(&src, &data).unwrap();
    b.run(&["put", src.to_str().unwrap(), "/shared.bin"]);
    b.run(&["sync"]);

    // A's mount applies it on its own and pulls the blocks on read.
    let before = blocks_in(&a_store);
    eventually("the file to appear on A", || a.path("shared.bin").exists());
    assert_eq!(std::fs::read(a.path("shared.bin")).unwrap(), data);
    assert!(
        blocks_in(&a_store) >= before + 10,
        "the blocks are now held by A"
    );

    // With B's store gone, A still reads every byte.
    drop(sshfs_mount);
    std::fs::rename(&b.store, b_home.path().join("moved-away")).unwrap();
    let again = std::fs::read(a.path("shared.bin")).unwrap();
    assert_eq!(again, data);
}

#[test]
fn a_read_pulls_blocks_from_a_plain_directory_peer() {
    pulls_and_keeps_blocks(|b_store| (b_store.to_path_buf(), None));
}

#[test]
fn a_read_pulls_blocks_from_an_sshfs_peer() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let mounts = tempfile::tempdir().unwrap();
    let local = mounts.path().join("b");
    pulls_and_keeps_blocks(|b_store| {
        let mount = server.mount(b_store, &local);
        (local.clone(), Some(mount))
    });
}

#[test]
fn writes_in_the_mount_reach_the_peer_without_a_manual_sync() {
    let b = PeerNode::new(PEER);
    let a = mount_a(&b.store);
    let a_id = node_id(&a.spec);
    b.wire(Some((&a_id, &a.volume.join(&a_id))));
    std::fs::write(a.path("from-a.txt"), b"written in the mount").unwrap();
    eventually("B to receive the version", || {
        b.run(&["sync"]);
        b.run(&["ls", "/"]).lines().any(|l| l == "from-a.txt")
    });
    let out = b.run(&["get", "/from-a.txt", "-"]);
    assert_eq!(out, "written in the mount");
}

#[test]
fn a_hung_peer_does_not_hang_the_mount() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let mounts = tempfile::tempdir().unwrap();
    let b = PeerNode::new(PEER);
    let local = mounts.path().join("b");
    let sshfs_mount = server.mount(&b.store, &local);
    let a = mount_a(&local);
    let a_id = node_id(&a.spec);
    b.wire(Some((&a_id, &a.volume.join(&a_id))));
    let src = mounts.path().join("src");
    std::fs::write(&src, vec![9u8; 3 * 4096]).unwrap();
    b.run(&["put", src.to_str().unwrap(), "/remote-only.bin"]);
    b.run(&["sync"]);
    std::fs::write(a.path("local.txt"), b"local").unwrap();
    eventually("the remote file's version on A", || {
        a.path("remote-only.bin").exists()
    });

    // Freeze sshfs: every call on the peer path now blocks forever.
    let pid = sshfs_mount.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let reader = std::thread::spawn({
        let path = a.path("remote-only.bin");
        move || {
            let started = Instant::now();
            let result = std::fs::read(path);
            (result.map_err(|e| e.raw_os_error()), started.elapsed())
        }
    });
    // Local reads keep working meanwhile.
    let started = Instant::now();
    assert_eq!(std::fs::read(a.path("local.txt")).unwrap(), b"local");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (result, took) = reader.join().unwrap();
    assert_eq!(
        result,
        Err(Some(libc::EIO)),
        "a block no reachable peer can give is EIO"
    );
    assert!(
        took < Duration::from_secs(15),
        "the read gave up after the peer timeout (took {took:?})"
    );
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
}
