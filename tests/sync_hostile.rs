//! A peer's files are input, not instructions: hostile or damaged entries in an
//! inbound spool are refused and logged, and the rest still applies.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::path::PathBuf;

use globofs::ids::{BlockHash, VersionId};
use globofs::store::journal::JournalWriter;
use globofs::store::{Kind, Mtime, Store, StoreMeta, Version};
use globofs::sync::{SyncReport, sync_once};
use nodes::{Cluster, Node, vp};

/// Writes into B's inbound spool from A as A would (A's nonce), by hand.
struct Forger {
    spool: PathBuf,
    journal: JournalWriter,
    node: globofs::ids::NodeId,
    next: u64,
}

impl Forger {
    fn new(a: &Node, b: &Node) -> Forger {
        let nonce = StoreMeta::read(&a.store_dir().join("format"))
            .unwrap()
            .nonce;
        let spool = b.inbound(a);
        Forger {
            journal: JournalWriter::new(
                spool.join("%journal"),
                a.store_dir()
                    .join("state/locks")
                    .join(format!("push-{}", b.id)),
                &nonce,
            ),
            spool,
            node: a.id,
            next: 1,
        }
    }

    fn id(&mut self) -> VersionId {
        self.next += 1;
        format!("1800000000.{:09}", self.next).parse().unwrap()
    }

    fn version(&mut self, path: &str, bytes: &[u8]) -> Version {
        Version {
            id: self.id(),
            kind: Kind::File,
            path: vp(path),
            node: self.node,
            parents: Vec::new(),
            from: None,
            conflict_of: None,
            size: bytes.len() as u64,
            mode: 0o644,
            mtime: Mtime::default(),
            block_size: 4096,
            target: None,
            hashes: if bytes.is_empty() {
                Vec::new()
            } else {
                vec![BlockHash::of(bytes)]
            },
            posix: globofs::store::posix::Posix::default(),
        }
    }

    /// The version file's directory in the spool for an escaped path.
    fn dir(&self, escaped: &str) -> PathBuf {
        self.spool.join(escaped).join("versions")
    }

    fn write_file(&self, escaped: &str, id: &str, text: &[u8]) {
        let dir = self.dir(escaped);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(id), text).unwrap();
    }

    fn publish(&self, version: &Version) {
        self.write_file(
            &version.path.escaped(),
            &version.id.to_string(),
            version.to_text().as_bytes(),
        );
    }

    fn line(&self, payload: &str) {
        self.journal.append(&[payload.to_string()]).unwrap();
    }

    fn line_for(&self, version: &Version) {
        self.line(&format!("{} {}", version.id, version.path.escaped()));
    }
}

fn sync(node: &Node) -> SyncReport {
    let spec = node.spec();
    sync_once(&Store::open_spec(&spec).unwrap(), &spec).unwrap()
}

fn refused_with(report: &SyncReport, needle: &str) -> bool {
    report
        .peers
        .iter()
        .flat_map(|p| p.refused.iter())
        .any(|why| why.contains(needle))
}

#[test]
fn hostile_inbound_entries_are_refused_and_the_rest_applies() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/legit", b"from A");
    a.sync();
    let mut forger = Forger::new(a, b);

    // 1. A good forged version (to show the reader goes on).
    let good1 = forger.version("/good1", b"one");
    forger.publish(&good1);
    forger.line_for(&good1);

    // 2. A path escaping the tree.
    for bad in ["../../etc/passwd", "/abs", "a/./b"] {
        let id = forger.id();
        forger.line(&format!("{id} {bad}"));
    }

    // 3. A symlink inside the spool (at a directory, and at the version file).
    let outside = cluster.dir.path().join("outside");
    let evil = forger.version("/evil", b"evil");
    fs::create_dir_all(outside.join("versions")).unwrap();
    fs::write(
        outside.join("versions").join(evil.id.to_string()),
        evil.to_text(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, forger.spool.join("evil")).unwrap();
    forger.line_for(&evil);
    let evil2 = forger.version("/evil2", b"evil");
    fs::create_dir_all(forger.dir("evil2")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("versions").join(evil.id.to_string()),
        forger.dir("evil2").join(evil2.id.to_string()),
    )
    .unwrap();
    forger.line_for(&evil2);

    // 4. A malformed version file.
    let id = forger.id();
    forger.write_file("malformed", &id.to_string(), b"this is not a version\n");
    forger.line(&format!("{id} malformed"));

    // 5. A hash that is not 64 hex digits.
    let short = forger.version("/shorthash", b"x");
    let text = short
        .to_text()
        .replace(&short.hashes[0].to_string(), "abc123");
    forger.write_file("shorthash", &short.id.to_string(), text.as_bytes());
    forger.line_for(&short);

    // 6. An absurd size.
    let huge = forger.version("/huge", b"x");
    let text = huge
        .to_text()
        .replace("size 1\n", "size 1152921504606846976\n");
    forger.write_file("huge", &huge.id.to_string(), text.as_bytes());
    forger.line_for(&huge);

    // 7. A version file that is not what the line says.
    let liar = forger.version("/liar", b"x");
    let other = forger.version("/elsewhere", b"x");
    forger.write_file("liar", &liar.id.to_string(), other.to_text().as_bytes());
    forger.line_for(&liar);

    // 8. A FIFO where a version file belongs.
    let fifo = forger.version("/fifo", b"x");
    fs::create_dir_all(forger.dir("fifo")).unwrap();
    nix::unistd::mkfifo(
        &forger.dir("fifo").join(fifo.id.to_string()),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    forger.line_for(&fifo);

    // 9. An eagerly pushed block whose bytes do not match its hash.
    let blocky = forger.version("/blocky", b"the real bytes");
    let block_file = forger
        .spool
        .join("%blocks")
        .join(blocky.hashes[0].relative_path());
    fs::create_dir_all(block_file.parent().unwrap()).unwrap();
    fs::write(&block_file, b"other bytes!!!").unwrap();
    forger.publish(&blocky);
    forger.line_for(&blocky);

    // 10. A second good version.
    let good2 = forger.version("/good2", b"two");
    forger.publish(&good2);
    forger.line_for(&good2);

    // 11. A line with a bad checksum stops the reader; what follows waits.
    let journal_dir = forger.spool.join("%journal");
    let last = fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().len() == 16)
        .max()
        .unwrap();
    let after = forger.version("/after", b"three");
    forger.publish(&after);
    let mut file = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(
        &mut file,
        format!("00000000 {} after\n", after.id).as_bytes(),
    )
    .unwrap();
    drop(file);
    forger.line_for(&after);

    let report = sync(b);
    let peer = report.peer(a.id).unwrap();
    assert_eq!(peer.applied, 4, "legit, good1, blocky, good2: {peer:#?}");
    for needle in [
        "../../etc/passwd",
        "/abs",
        "a/./b",
        "symlink",
        "malformed",
        "not a block hash",
        "absurd",
        "says it is version",
        "not a regular file",
        "does not match block",
    ] {
        assert!(
            refused_with(&report, needle),
            "{needle}: {:#?}",
            peer.refused
        );
    }

    let store = b.store();
    for path in ["/legit", "/good1", "/good2", "/blocky"] {
        assert!(store.live(&vp(path)).unwrap().is_some(), "{path}");
    }
    for path in [
        "/evil",
        "/evil2",
        "/malformed",
        "/shorthash",
        "/huge",
        "/liar",
        "/elsewhere",
        "/fifo",
        "/after",
    ] {
        assert!(store.live(&vp(path)).unwrap().is_none(), "{path}");
    }
    // The mismatching block was not taken in.
    assert!(store.blocks().locate(&blocky.hashes[0], None).is_none());
    // Nothing refused was stored: B's tree has only what applied.
    let tree = b.listing();
    assert_eq!(
        tree.keys().cloned().collect::<Vec<_>>(),
        ["/blocky", "/good1", "/good2", "/legit"]
    );

    // The bad line stops the reader: an error of the pass, not a refusal.
    assert!(
        peer.errors.iter().any(|why| why.contains("bad line")),
        "{:#?}",
        peer.errors
    );
    // The reader stays stopped at the bad line, pass after pass.
    let report = sync(b);
    assert_eq!(report.applied(), 0);
    assert_eq!(report.errors(), 1, "{report:#?}");
}

#[test]
fn a_spool_journal_that_is_a_symlink_or_a_fifo_is_refused() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/x", b"x");
    a.sync();
    let journal = b.inbound(a).join("%journal");
    let moved = cluster.dir.path().join("moved-journal");
    fs::rename(&journal, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &journal).unwrap();
    let report = sync(b);
    assert_eq!(report.applied(), 0);
    assert!(refused_with(&report, "not a real directory"), "{report:?}");
    // Nothing is read through the symlink; the damage starts a full check,
    // which takes /x from A's root/ instead (issue 13: spools heal).
    assert_eq!(report.peer(a.id).unwrap().repaired, 1, "{report:?}");

    fs::remove_file(&journal).unwrap();
    fs::rename(&moved, &journal).unwrap();
    nix::unistd::mkfifo(
        &journal.join(format!("{:016}", 7)),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let report = sync(b);
    assert_eq!(report.applied(), 0);
    assert!(refused_with(&report, "not a regular file"), "{report:?}");

    fs::remove_file(journal.join(format!("{:016}", 7))).unwrap();
    let report = sync(b);
    assert!(report.peer(a.id).unwrap().refused.is_empty(), "{report:?}");
    assert!(b.store().live(&vp("/x")).unwrap().is_some());
    // And the journal, sane again, delivers what comes next.
    a.put("/y", b"y");
    a.sync();
    assert_eq!(sync(b).applied(), 1);
}

#[test]
fn a_torn_local_version_is_repaired_from_a_peer_copy() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let version = a.put("/t", b"intact");
    a.sync();
    b.sync();
    // B's copy is cut short (as a crash after a lazy write leaves it); A pushes
    // the same version again (a re-created journal makes B read it all again).
    let file = b
        .store()
        .path_dir(&vp("/t"))
        .join("versions")
        .join(version.id.to_string());
    let text = fs::read(&file).unwrap();
    fs::write(&file, &text[..text.len() / 2]).unwrap();
    fs::remove_file(b.store_dir().join("state/apply").join(a.id.to_string())).unwrap();
    let report = sync(b);
    assert_eq!(report.applied(), 1, "{report:?}");
    assert_eq!(b.store().live(&vp("/t")).unwrap().unwrap(), version);
}

#[test]
fn a_bad_inbound_journal_line_shows_as_stuck_and_fails_sync() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/ok1", b"one");
    cluster.settle();
    let journal_dir = b.inbound(a).join("%journal");
    let last = fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().len() == 16)
        .max()
        .unwrap();
    let offset = fs::metadata(&last).unwrap().len();
    // One complete line with a bad checksum, then two good changes behind it.
    let mut file = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut file, b"deadbeef 1795600000.000000001 zzz\n").unwrap();
    drop(file);
    a.put("/ok2", b"two");
    a.put("/ok3", b"three");
    a.sync();

    let out = b.cli(&["sync"]);
    let text = nodes::stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("error: inbound journal stuck"), "{text}");
    assert!(b.store().live(&vp("/ok2")).unwrap().is_none());

    let status = b.ok(&["status", "--json", "--no-blocks"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["unapplied_inbound"], 2, "{status}");
    let stuck = &peer["inbound_stuck"];
    assert_eq!(stuck["segment"], last.display().to_string(), "{status}");
    assert_eq!(stuck["offset"], offset, "{status}");
    assert_eq!(stuck["reason"], "checksum mismatch", "{status}");

    let text = b.ok(&["status", "--no-blocks"]);
    assert!(
        text.contains(&format!(
            "2 unapplied in (STUCK at a bad line: {} offset {offset}: checksum mismatch)",
            last.display()
        )),
        "{text}"
    );
    assert_stuck_gauge(b, a, 1);
    // A healthy peer says so.
    assert_stuck_gauge(a, b, 0);
    let status = a.ok(&["status", "--json", "--no-blocks"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["peers"][0]["inbound_stuck"].is_null(), "{status}");
}

/// `node`'s Prometheus output says `peer`'s inbound stuck gauge is `value`.
#[track_caller]
fn assert_stuck_gauge(node: &nodes::Node, peer: &nodes::Node, value: u32) {
    let metrics = node.ok(&["status", "--prometheus", "--no-blocks"]);
    let line = format!(
        "globofs_peer_inbound_stuck{{node=\"{}\",peer=\"{}\"}} {value}\n",
        node.id, peer.id
    );
    assert!(metrics.contains(&line), "{metrics}");
}
