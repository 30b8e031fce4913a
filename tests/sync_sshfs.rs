//! Sync over a real remote filesystem: each node reaches the other's store
//! through sshfs (an sshd on 127.0.0.1), as users mount their peers. Also a
//! hung peer: the sshfs process stopped with SIGSTOP; and a peer whose sshfs is
//! killed in the middle of a push.

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::time::{Duration, Instant};

use globofs::store::Store;
use globofs::sync::Syncer;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nodes::{Cluster, Options, data, mount_point};

/// Two peers reaching each other through mount points (for sshfs), with a
/// short sync deadline.
fn two_nodes() -> Cluster {
    Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            timeout: "2s",
            ..Options::default()
        }
        .with_mount_points(),
    )
}

#[test]
fn two_nodes_sync_over_sshfs_and_a_stopped_server_is_away() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = two_nodes();
    let root = cluster.root();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let a_sees_b = server.mount(&b.store_dir(), &mount_point(&root, 0, 1));
    let _b_sees_a = server.mount(&a.store_dir(), &mount_point(&root, 1, 0));

    let bytes = data(6 * nodes::BS + 11, 5);
    a.put("/over/ssh.bin", &bytes);
    a.put("/over/small", b"small");
    let report = a.sync();
    assert_eq!(report.pushed(), 3, "{report:?}");
    let report = b.sync();
    assert_eq!(report.applied(), 3, "{report:?}");
    assert_eq!(
        b.read("/over/ssh.bin").unwrap(),
        bytes,
        "blocks pulled over sshfs"
    );

    // Concurrent edits over sshfs converge too.
    a.put("/over/small", b"from A");
    b.put("/over/small", b"from B");
    cluster.settle();
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after concurrent edits");

    // A hung server: every call on the mount blocks. The pass still ends in
    // about the deadline and reports the peer away; local work goes on.
    let pid = Pid::from_raw(a_sees_b.pid().unwrap() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    a.put("/while/hung", b"queued");
    let spec = a.spec();
    let store = Store::open_spec(&spec).unwrap();
    let syncer = Syncer::new(&spec);
    let started = Instant::now();
    let report = syncer.pass(&store).unwrap();
    let took = started.elapsed();
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(report.unreachable(), 1, "{report:?}");

    // Back: the queue goes out.
    std::thread::sleep(Duration::from_millis(200));
    let report = a.sync();
    assert!(report.pushed() >= 2, "{report:?}");
    b.sync();
    assert_eq!(b.read("/while/hung").unwrap(), b"queued");
}

#[test]
fn a_peer_killed_mid_push_loses_nothing() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = two_nodes();
    let root = cluster.root();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let mut a_sees_b = server.mount(&b.store_dir(), &mount_point(&root, 0, 1));
    let _b_sees_a = server.mount(&a.store_dir(), &mount_point(&root, 1, 0));
    let files = 200;
    let content = |i: usize| data(100 + i * 37, i as u64);
    for i in 0..files {
        a.put(&format!("/batch/f{i}"), &content(i));
    }
    // The push of ~200 versions over sshfs takes a while: kill sshfs during it.
    let spec = a.spec();
    let pusher = std::thread::spawn(move || {
        let store = Store::open_spec(&spec).unwrap();
        Syncer::new(&spec).pass(&store)
    });
    // Kill once part of the push is in B's spool (B's store is local here, so
    // the test can watch it directly).
    let spooled = b.inbound(a).join("batch");
    let spooled_paths = || std::fs::read_dir(&spooled).map_or(0, |dir| dir.count());
    let deadline = Instant::now() + Duration::from_secs(30);
    while spooled_paths() < 20 && !pusher.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    a_sees_b.kill();
    let cut = pusher.join().expect("the pass returns");
    println!("pass cut by the kill: {cut:?}");
    let cut = cut.expect("a pass that loses its peer still reports");
    assert!(
        cut.pushed() < files as u64,
        "the kill came too late: {cut:?}"
    );
    // The peer is mounted again; whatever the kill tore, the next passes finish
    // the job: every version arrives once and every byte reads back.
    let _a_sees_b = server.mount(&b.store_dir(), &mount_point(&root, 0, 1));
    cluster.settle();
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after a push cut by a kill");
    for i in 0..files {
        assert_eq!(
            b.read(&format!("/batch/f{i}")).as_deref(),
            Some(&content(i)[..]),
            "/batch/f{i}"
        );
    }
    // Nothing was applied twice: one version per path.
    let store = b.store();
    for i in 0..files {
        let path = nodes::vp(&format!("/batch/f{i}"));
        assert_eq!(store.versions(&path).unwrap().len(), 1, "{path}");
    }
}
