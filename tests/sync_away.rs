//! Peers that are away (missing, unmounted, hung), cloned node ids, and a long
//! queue delivered when a peer returns.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::time::{Duration, Instant};

use globofs::store::{Store, StoreMeta};
use globofs::sync::{Syncer, sync_once};
use nodes::{Cluster, Options, data, vp};

#[test]
fn a_missing_peer_does_not_block_and_its_queue_waits() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let away = send_away(b);

    for i in 0..40 {
        a.put(&format!("/queue/f{i:03}"), &data(100 + i, i as u64));
    }
    let report = a.sync();
    assert_eq!(report.unreachable(), 1);
    assert_eq!(report.pushed(), 0);
    let why = report.peer(b.id).unwrap().away.clone().unwrap();
    assert!(why.contains("No such file"), "{why}");
    let status = globofs::sync::status(&a.store(), &a.spec()).unwrap();
    assert!(!status.peers[0].reachable);
    assert_eq!(status.peers[0].queued_outbound, 41);

    // An unmounted peer: the mount point is there, the store is not.
    fs::create_dir_all(b.store_dir()).unwrap();
    let report = a.sync();
    assert_eq!(report.unreachable(), 1);
    assert!(
        report
            .peer(b.id)
            .unwrap()
            .away
            .as_ref()
            .unwrap()
            .contains("format"),
        "{report:?}"
    );
    fs::remove_dir_all(&b.volume).unwrap();

    fs::rename(&away, &b.volume).unwrap();
    let report = a.sync();
    assert_eq!(report.unreachable(), 0);
    assert_eq!(report.pushed(), 41);
    let report = b.sync();
    assert_eq!(report.applied(), 41);
    assert_eq!(a.tree(), b.tree());
    let status = globofs::sync::status(&a.store(), &a.spec()).unwrap();
    assert_eq!(status.peers[0].queued_outbound, 0);
    assert!(status.peers[0].last_push.is_some());
}

#[test]
fn a_hung_peer_is_away_within_the_deadline() {
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            timeout: "500ms",
            ..Options::default()
        },
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/x", b"waiting");
    // Reading B's `format` blocks forever: a FIFO with no writer, as a hung
    // NFS server would.
    let format = b.store_dir().join("format");
    let real = b.store_dir().join("format.real");
    fs::rename(&format, &real).unwrap();
    nix::unistd::mkfifo(&format, nix::sys::stat::Mode::S_IRWXU).unwrap();

    let spec = a.spec();
    let store = Store::open_spec(&spec).unwrap();
    let syncer = Syncer::new(&spec);
    let started = Instant::now();
    let report = syncer.pass(&store).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(report.unreachable(), 1);
    let why = report.peer(b.id).unwrap().away.clone().unwrap();
    assert!(why.contains("no answer"), "{why}");
    // While the call is stuck, the peer stays away at once.
    let started = Instant::now();
    let report = syncer.pass(&store).unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(
        report
            .peer(b.id)
            .unwrap()
            .away
            .as_ref()
            .unwrap()
            .contains("not returned"),
        "{report:?}"
    );

    // Unstick the reader (a writer opens and closes), restore the store.
    drop(fs::OpenOptions::new().write(true).open(&format).unwrap());
    fs::remove_file(&format).unwrap();
    fs::rename(&real, &format).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let report = syncer.pass(&store).unwrap();
    assert_eq!(report.unreachable(), 0, "{report:?}");
    assert_eq!(report.pushed(), 1);
}

#[test]
fn a_cloned_node_id_is_refused() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/first", b"1");
    a.sync();
    let nonce_file = b.inbound(a).join("%nonce");
    let ours = StoreMeta::read(&a.store_dir().join("format"))
        .unwrap()
        .nonce;
    assert_eq!(fs::read_to_string(&nonce_file).unwrap().trim(), ours);

    // Another store claiming A's id pushed here first.
    fs::write(&nonce_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    a.put("/second", b"2");
    let spec = a.spec();
    let report = sync_once(&Store::open_spec(&spec).unwrap(), &spec).unwrap();
    let peer = report.peer(b.id).unwrap();
    assert_eq!(peer.pushed, 0);
    assert!(
        peer.errors.iter().any(|e| e.contains("cloned")),
        "{:?}",
        peer.errors
    );
    assert!(!b.inbound(a).join("second").exists());
    // The CLI reports it and fails.
    let out = a.cli(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn the_writer_trims_its_journal_once_the_reader_acked() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/one", b"1");
    a.sync();
    let journal = b.inbound(a).join("%journal");
    let first = journal.join(format!("{:016}", 1));
    // A torn tail (as a crash mid-append leaves): the writer starts segment 2.
    let mut file = fs::OpenOptions::new().append(true).open(&first).unwrap();
    std::io::Write::write_all(&mut file, b"1234abcd torn").unwrap();
    drop(file);
    a.put("/two", b"2");
    a.sync();
    assert!(journal.join(format!("{:016}", 2)).exists());
    let report = b.sync();
    assert_eq!(report.applied(), 2, "{report:?}");
    let report = a.sync();
    assert_eq!(report.peer(b.id).unwrap().trimmed, 1);
    assert!(!first.exists());
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_peer_back_after_many_changes_catches_up_in_one_pass() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let away = send_away(b);
    let store = a.store();
    store.mkdir(&vp("/many"), 0o755).unwrap();
    let count = 1500;
    for i in 0..count {
        store
            .write_file(
                &vp(&format!("/many/{i}")),
                &mut &format!("{i}")[..].as_bytes()[..],
                Default::default(),
                false,
            )
            .unwrap();
    }
    drop(store);
    assert_eq!(a.sync().pushed(), 0);
    fs::rename(&away, &b.volume).unwrap();
    let report = a.sync();
    assert_eq!(report.pushed(), count + 1);
    let report = b.sync();
    assert_eq!(report.applied(), count + 1);
    assert_eq!(a.listing(), b.listing());
}

#[test]
fn a_peer_whose_store_was_made_anew_gets_everything_again() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/one", b"first");
    a.put("/two", b"second");
    b.put("/bee", b"written on b");
    cluster.settle();
    assert_eq!(b.read("/one").as_deref(), Some(&b"first"[..]));
    // Reading B's file on A pulls its block (blocks travel lazily: had no one
    // read it, its bytes would be lost with B's disk).
    assert_eq!(a.read("/bee").as_deref(), Some(&b"written on b"[..]));

    // B's disk is replaced: a new, empty store under the same node id.
    replace_disk(b);
    assert_eq!(b.read("/one"), None);
    a.put("/three", b"third");

    let report = a.sync();
    let notes = &report.peer(b.id).unwrap().notes;
    assert!(notes.iter().any(|n| n.contains("made anew")), "{notes:?}");
    // B applies (its own push to A is refused: A still holds the old store's
    // spool, which only an operator can retire).
    sync_once(&b.store(), &b.spec()).unwrap();
    for (path, bytes) in [
        ("/one", &b"first"[..]),
        ("/two", b"second"),
        ("/three", b"third"),
        ("/bee", b"written on b"),
    ] {
        assert_eq!(b.read(path).as_deref(), Some(bytes), "{path} on the new B");
    }
    // The resend happened once: the next pass owes nothing.
    assert_eq!(a.sync().pushed(), 0);

    // B's pushes are refused (A holds the old store's spool: a clone looks the
    // same) until the operator says the old store is gone for good.
    b.put("/new-on-b", b"after the disk change");
    let refused = sync_once(&b.store(), &b.spec()).unwrap();
    let errors = &refused.peer(a.id).unwrap().errors;
    assert!(
        errors.iter().any(|e| e.contains("--take-over")),
        "{errors:?}"
    );
    // Applying from A worked all along, and status says so.
    let status = globofs::sync::status(&b.store(), &b.spec()).unwrap();
    assert!(status.peers[0].last_apply.is_some(), "{status:?}");
    assert!(status.peers[0].last_push.is_none(), "{status:?}");
    let taken = take_over(b);
    assert!(taken.peer(a.id).unwrap().errors.is_empty(), "{taken:?}");
    a.sync();
    assert_eq!(
        a.read("/new-on-b").as_deref(),
        Some(&b"after the disk change"[..])
    );
    // Both sides are in step again: plain passes work and owe nothing.
    assert_eq!(b.sync().pushed(), 0);
    assert_eq!(a.sync().pushed(), 0);
}

#[test]
fn take_over_waits_until_the_peer_applied_what_the_old_store_sent() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/from-a", b"a's");
    cluster.settle();
    // B pushes a version, and its disk dies before A applies it.
    b.put("/precious", b"only in A's inbound spool");
    let pushed = Syncer::new(&b.spec()).pass(&b.store()).unwrap();
    assert_eq!(pushed.pushed(), 1);
    replace_disk(b);

    // Taking over now would delete it from A's spool: refused.
    let refused = take_over(b);
    let errors = &refused.peer(a.id).unwrap().errors;
    assert!(
        errors.iter().any(|e| e.contains("not taken over")),
        "{errors:?}"
    );
    // A applies it (the version must survive; its bytes went with B's disk,
    // as blocks travel lazily).
    sync_once(&a.store(), &a.spec()).unwrap();
    assert!(a.store().live(&vp("/precious")).unwrap().is_some());
    // The take-over was remembered: B's next plain pass (the mount's, say)
    // goes through with it, and the version reaches the new B.
    let taken = sync_once(&b.store(), &b.spec()).unwrap();
    assert!(taken.peer(a.id).unwrap().errors.is_empty(), "{taken:?}");
    assert!(!take_over_pending(b));
    a.sync();
    sync_once(&b.store(), &b.spec()).unwrap();
    assert!(b.store().live(&vp("/precious")).unwrap().is_some());
    assert_eq!(b.read("/from-a").as_deref(), Some(&b"a's"[..]));
}

#[test]
fn a_take_over_goes_on_when_a_peer_that_was_away_comes_back() {
    let cluster = Cluster::mesh(3);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    b.put("/from-b", b"old b");
    cluster.settle();
    // B's disk is replaced while C is away.
    replace_disk(b);
    let away = send_away(c);

    let taken = take_over(b);
    assert!(taken.peer(a.id).unwrap().errors.is_empty(), "{taken:?}");
    assert!(take_over_pending(b), "C was not taken over yet");
    // Before C is back, passes go on without it; a clone's spool would still
    // be refused, so A's spool is ours now and nothing else changed.
    b.put("/new-on-b", b"new b");
    b.sync();
    assert!(take_over_pending(b));

    // C comes back: a plain pass of B takes its spool over too, with no
    // second --take-over, and the take-over ends.
    fs::rename(&away, &c.volume).unwrap();
    let report = b.sync();
    assert!(report.peer(c.id).unwrap().errors.is_empty(), "{report:?}");
    assert!(!take_over_pending(b));
    c.sync();
    assert_eq!(c.read("/new-on-b").as_deref(), Some(&b"new b"[..]));
    // Later passes push as usual.
    b.put("/later", b"later");
    b.sync();
    c.sync();
    assert_eq!(c.read("/later").as_deref(), Some(&b"later"[..]));
}

#[test]
fn a_remembered_take_over_replaces_only_the_earlier_stores_spools() {
    let cluster = Cluster::mesh(3);
    let (b, c) = (cluster.node(1), cluster.node(2));
    b.put("/x", b"x");
    cluster.settle();
    replace_disk(b);
    let away = send_away(c);
    take_over(b);
    assert!(take_over_pending(b));
    // Meanwhile C's spool for B got a nonce that is not the earlier store's
    // (another store claiming B's id: a clone): the remembered take-over does
    // not replace it; only an explicit --take-over would.
    fs::rename(&away, &c.volume).unwrap();
    let nonce = c
        .store_dir()
        .join("spool/inbound")
        .join(b.id.to_string())
        .join("%nonce");
    fs::write(&nonce, "some-other-store\n").unwrap();
    let report = sync_once(&b.store(), &b.spec()).unwrap();
    let errors = &report.peer(c.id).unwrap().errors;
    assert!(
        errors.iter().any(|e| e.contains("some-other-store")),
        "{errors:?}"
    );
    assert_eq!(fs::read_to_string(&nonce).unwrap(), "some-other-store\n");
    assert!(take_over_pending(b));
}

/// `node`'s disk is replaced: a new, empty store under the same node id.
fn replace_disk(node: &nodes::Node) {
    fs::remove_dir_all(node.store_dir()).unwrap();
    globofs::reconcile::reconcile(&node.spec(), false).unwrap();
}

/// Takes `node`'s volume away (its peers find nothing at its path); returns
/// where it is, to rename it back.
fn send_away(node: &nodes::Node) -> std::path::PathBuf {
    let away = node.volume.with_extension("away");
    fs::rename(&node.volume, &away).unwrap();
    away
}

/// Whether `node` remembers a take-over it has not finished.
fn take_over_pending(node: &nodes::Node) -> bool {
    node.store_dir().join("state/take-over").exists()
}

/// One `globofs sync --take-over` pass on `node`.
fn take_over(node: &nodes::Node) -> globofs::sync::SyncReport {
    Syncer::new(&node.spec())
        .taking_over()
        .pass(&node.store())
        .unwrap()
}
