//! Space and repair across nodes on one machine (peers as plain directories):
//! `verify --repair` brings corrupt and lost blocks back from a peer, `drop`
//! evicts only blocks enough other nodes hold (and reads pull them back),
//! `cache.max_size` evicts the least recently read first, and `status` counts
//! the blocks that are not local.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use globofs::ids::BlockHash;
use nodes::{BS, Cluster, Node, data, stdout};

/// A block's file in a node's `hashes/`.
fn block_file(node: &Node, hash: &BlockHash) -> PathBuf {
    node.store_dir().join("hashes").join(hash.relative_path())
}

/// A block's link under `root/<name>/hashes/` (top-level plain names only).
fn path_link(node: &Node, name: &str, hash: &BlockHash) -> PathBuf {
    node.store_dir()
        .join("root")
        .join(name)
        .join("hashes")
        .join(hash.relative_path())
}

fn flip_byte(path: &Path, offset: usize) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o644));
    let mut bytes = fs::read(path).expect("read the file to damage");
    bytes[offset] ^= 0x20;
    // Rewrites the same inode, so every link of the block sees the damage.
    fs::write(path, bytes).expect("write the damaged file");
}

/// Appends a `cache:` section to a node's spec.
fn set_cache(node: &Node, yaml: &str) {
    let mut spec = fs::read_to_string(&node.spec_path).expect("read spec");
    spec.push_str("cache:\n");
    spec.push_str(yaml);
    fs::write(&node.spec_path, spec).expect("write spec");
}

/// Runs a command that must succeed; returns its stdout.
#[track_caller]
fn ok(node: &Node, args: &[&str]) -> String {
    let out = node.cli(args);
    assert!(
        out.status.success(),
        "globofs {args:?} failed ({:?})\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[track_caller]
fn json(node: &Node, args: &[&str]) -> serde_json::Value {
    let text = ok(node, args);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: {err}: {text}"))
}

/// Reads a file through `globofs get` (which pulls blocks from peers).
#[track_caller]
fn get(node: &Node, path: &str) -> Vec<u8> {
    let out = node.cli(&["get", path, "-"]);
    assert!(
        out.status.success(),
        "get {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Files under a directory (recursively), for checking per-path links.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for item in listing.flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                out.push(item.path());
            }
        }
    }
    out
}

/// Two nodes; A wrote `files` (name, bytes), B mirrored every block of them.
fn two_nodes_b_mirrors(files: &[(&str, Vec<u8>)]) -> Cluster {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    for (name, bytes) in files {
        a.put(&format!("/{name}"), bytes);
    }
    cluster.settle();
    for (name, _) in files {
        ok(b, &["mirror", &format!("/{name}")]);
    }
    cluster
}

#[test]
fn verify_repair_brings_corrupt_and_lost_blocks_back_from_a_peer() {
    let f1 = data(3 * BS + 10, 1);
    let f2 = data(2 * BS, 2);
    let cluster = two_nodes_b_mirrors(&[("f1", f1.clone()), ("f2", f2.clone())]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    ok(a, &["verify"]);
    let store = a.store();
    let v1 = store.live(&nodes::vp("/f1")).unwrap().unwrap();
    let v2 = store.live(&nodes::vp("/f2")).unwrap().unwrap();
    // Corrupt: a flipped byte (the per-path link is the same inode: damaged too).
    let corrupt = v1.hashes[1];
    flip_byte(&block_file(a, &corrupt), 7);
    // Lost: gone from hashes/, its per-path link intact.
    let lost = v2.hashes[0];
    fs::remove_file(block_file(a, &lost)).unwrap();
    // Gone: gone from hashes/, and its per-path link damaged too.
    let gone = v1.hashes[2];
    flip_byte(&block_file(a, &gone), 0);
    fs::remove_file(block_file(a, &gone)).unwrap();

    let out = a.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("1 corrupt"), "{text}");
    assert!(text.contains("2 missing"), "{text}");
    for hash in [corrupt, lost, gone] {
        assert!(text.contains(&hash.to_string()), "{hash} in {text}");
    }

    let report = json(a, &["verify", "--repair", "--json"]);
    assert_eq!(report["repaired"], 3, "{report}");
    assert_eq!(report["from_peers"], 2, "{report}");
    assert_eq!(report["from_local_links"], 1, "{report}");
    assert_eq!(report["still_broken"].as_array().unwrap().len(), 0);
    // The damaged files were kept aside (once each), not dropped.
    assert_eq!(
        report["moved_aside"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    let aside = a.store_dir().join("state/corrupt");
    let kept: Vec<String> = fs::read_dir(&aside)
        .unwrap()
        .map(|item| item.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for hash in [corrupt, gone] {
        assert!(
            kept.iter().any(|name| name.starts_with(&hash.to_string())),
            "{hash} kept aside: {kept:?}"
        );
    }

    let text = ok(a, &["verify"]);
    assert!(
        text.contains(" 0 corrupt") && text.contains(" 0 missing"),
        "{text}"
    );
    // The blocks are back under hashes/ and under their paths, with the right bytes.
    for (name, hash) in [("f1", corrupt), ("f2", lost), ("f1", gone)] {
        for file in [block_file(a, &hash), path_link(a, name, &hash)] {
            assert_eq!(
                BlockHash::of(&fs::read(&file).unwrap()),
                hash,
                "{}",
                file.display()
            );
        }
    }
    // Read back with B away: everything is local again.
    let b_store = b.store_dir();
    let moved = b_store.with_extension("away");
    fs::rename(&b_store, &moved).unwrap();
    assert_eq!(get(a, "/f1"), f1);
    assert_eq!(get(a, "/f2"), f2);
    fs::rename(&moved, &b_store).unwrap();
}

#[test]
fn verify_repair_fails_and_keeps_the_block_when_no_peer_has_a_good_copy() {
    let bytes = data(2 * BS, 3);
    let cluster = two_nodes_b_mirrors(&[("f", bytes.clone())]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let hash = a.store().live(&nodes::vp("/f")).unwrap().unwrap().hashes[0];
    flip_byte(&block_file(a, &hash), 3);
    // B's copy is damaged as well: no good copy anywhere.
    flip_byte(&block_file(b, &hash), 5);
    let damaged = fs::read(block_file(a, &hash)).unwrap();
    // And a block no one holds any more: missing.
    let version = a.store().live(&nodes::vp("/f")).unwrap().unwrap();
    let lost = version.hashes[1];
    fs::remove_file(block_file(a, &lost)).unwrap();
    fs::remove_file(path_link(a, "f", &lost)).unwrap();
    fs::remove_file(block_file(b, &lost)).unwrap();
    let out = a.cli(&["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("0 repaired") && text.contains("2 still broken (1 corrupt, 1 missing)"),
        "{text}"
    );
    assert!(text.contains(&hash.to_string()), "{text}");
    assert!(text.contains(&lost.to_string()), "{text}");
    // The corrupt file is left where it was (never the only copy thrown away).
    assert_eq!(fs::read(block_file(a, &hash)).unwrap(), damaged);
    assert_eq!(a.cli(&["verify"]).status.code(), Some(3));
}

#[test]
fn drop_evicts_blocks_a_peer_holds_keeps_the_others_and_get_pulls_them_back() {
    let shared = data(3 * BS, 4);
    let cluster = two_nodes_b_mirrors(&[("shared", shared.clone())]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let only_a = data(2 * BS + 1, 5);
    a.put("/only_a", &only_a);
    cluster.settle(); // B knows the version, not its blocks
    let store = a.store();
    let vs = store.live(&nodes::vp("/shared")).unwrap().unwrap();
    let vo = store.live(&nodes::vp("/only_a")).unwrap().unwrap();
    assert!(vo.hashes.iter().all(|h| !block_file(b, h).exists()));
    let status = json(a, &["status", "--json"]);
    assert_eq!(status["missing_blocks"], 0, "{status}");
    assert_eq!(status["current_blocks"], 6, "{status}");

    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 3, "{report}");
    assert_eq!(report["kept_too_few_copies"], 3, "{report}");
    assert_eq!(report["bytes_freed"], 3 * BS as u64, "{report}");
    for hash in &vs.hashes {
        assert!(!block_file(a, hash).exists(), "{hash} evicted");
        assert!(block_file(b, hash).exists(), "B keeps {hash}");
    }
    // Space is freed: no link of an evicted block is left under root/.
    assert!(files_under(&a.store_dir().join("root/shared/hashes")).is_empty());
    for hash in &vo.hashes {
        assert!(block_file(a, hash).exists(), "{hash} is only here: kept");
        assert!(path_link(a, "only_a", hash).exists());
    }
    // Evicted is remote, not missing.
    let text = ok(a, &["verify"]);
    assert!(
        text.contains("3 remote") && text.contains(" 0 missing"),
        "{text}"
    );
    let status = json(a, &["status", "--json"]);
    assert_eq!(status["missing_blocks"], 3, "{status}");
    // A read pulls them back, byte-exact, and links them again.
    assert_eq!(get(a, "/shared"), shared);
    for hash in &vs.hashes {
        assert!(block_file(a, hash).exists());
        assert!(path_link(a, "shared", hash).exists());
    }
    let status = json(a, &["status", "--json"]);
    assert_eq!(status["missing_blocks"], 0, "{status}");
    assert_eq!(get(a, "/only_a"), only_a);
    ok(a, &["verify"]);
}

#[test]
fn drop_with_min_copies_2_and_one_peer_evicts_nothing() {
    let bytes = data(3 * BS, 6);
    let cluster = two_nodes_b_mirrors(&[("f", bytes.clone())]);
    let a = cluster.node(0);
    set_cache(a, "  min_copies: 2\n");
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 0, "{report}");
    assert_eq!(report["kept_too_few_copies"], 3, "{report}");
    let version = a.store().live(&nodes::vp("/f")).unwrap().unwrap();
    for hash in &version.hashes {
        assert!(block_file(a, hash).exists());
    }
}

/// Two nodes evicting one block at the same moment must not each count the
/// other's copy. Reliance is one-way (a node counts only copies on nodes whose
/// id sorts after its own): B, the higher id, keeps blocks only A also holds,
/// whatever A does, and A may evict them because B keeps them. (Checked one
/// after the other: the rule, not a lucky interleaving, is what is tested.)
#[test]
fn only_the_lower_id_of_two_holders_evicts() {
    let bytes = data(4 * BS, 8);
    let cluster = two_nodes_b_mirrors(&[("both", bytes.clone())]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    assert!(a.id < b.id, "the cluster numbers ids in order");
    let version = a.store().live(&nodes::vp("/both")).unwrap().unwrap();
    let from_b = json(b, &["drop", "--json"]);
    assert_eq!(from_b["evicted"], 0, "{from_b}");
    assert_eq!(from_b["kept_too_few_copies"], 4, "{from_b}");
    let from_a = json(a, &["drop", "--json"]);
    assert_eq!(from_a["evicted"], 4, "{from_a}");
    for hash in &version.hashes {
        assert!(block_file(b, hash).exists(), "{hash} kept by B");
    }
    assert_eq!(get(a, "/both"), bytes);
}

#[test]
fn drop_does_not_count_a_damaged_or_unreachable_copy() {
    let bytes = data(3 * BS, 7);
    let cluster = two_nodes_b_mirrors(&[("f", bytes.clone())]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let version = a.store().live(&nodes::vp("/f")).unwrap().unwrap();
    // B's copy of block 1 has the right size and the wrong bytes.
    flip_byte(&block_file(b, &version.hashes[1]), 9);
    let report = json(a, &["drop", "/f", "--json"]);
    assert_eq!(report["evicted"], 2, "{report}");
    assert_eq!(report["kept_too_few_copies"], 1, "{report}");
    assert!(block_file(a, &version.hashes[1]).exists());
    assert!(!block_file(a, &version.hashes[0]).exists());
    // With B away nothing more is evicted.
    let b_store = b.store_dir();
    let moved = b_store.with_extension("away");
    fs::rename(&b_store, &moved).unwrap();
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 0, "{report}");
    assert!(block_file(a, &version.hashes[1]).exists());
    fs::rename(&moved, &b_store).unwrap();
    // A's own good copy of the block B damaged is what `get` reads.
    assert_eq!(get(a, "/f").len(), bytes.len());
}

/// Sets a block file's access and modification times (seconds since the epoch).
fn set_used(file: &Path, secs: u64) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let times = fs::FileTimes::new().set_accessed(at).set_modified(at);
    fs::File::open(file)
        .and_then(|f| f.set_times(times))
        .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
}

#[test]
fn cache_max_size_evicts_least_recently_read_first_and_never_below_min_copies() {
    let old = data(4 * BS, 8);
    let new = data(4 * BS, 9);
    let cluster = two_nodes_b_mirrors(&[("old", old.clone()), ("new", new.clone())]);
    let a = cluster.node(0);
    let mine = data(4 * BS, 10);
    a.put("/mine", &mine);
    cluster.settle();
    let store = a.store();
    let hashes = |name: &str| {
        store
            .live(&nodes::vp(name))
            .unwrap()
            .unwrap()
            .hashes
            .clone()
    };
    let (h_old, h_new, h_mine) = (hashes("/old"), hashes("/new"), hashes("/mine"));
    // Least recently read: /mine (but only A holds it), then /old, then /new.
    for hash in &h_mine {
        set_used(&block_file(a, hash), 1_000_000_000);
    }
    for hash in &h_old {
        set_used(&block_file(a, hash), 1_100_000_000);
    }
    for hash in &h_new {
        set_used(&block_file(a, hash), 1_200_000_000);
    }
    // 12 blocks of 4 KiB are here; 33 KiB lets 8 stay.
    set_cache(a, "  max_size: 33KiB\n");
    let report = json(a, &["sync", "--json"]);
    let cache = &report["cache"];
    assert_eq!(cache["local_bytes_before"], 12 * BS as u64, "{report}");
    assert_eq!(cache["evicted"], 4, "{report}");
    assert_eq!(cache["local_bytes_after"], 8 * BS as u64, "{report}");
    for hash in &h_old {
        assert!(!block_file(a, hash).exists(), "/old is least recently read");
    }
    for hash in h_new.iter().chain(&h_mine) {
        assert!(block_file(a, hash).exists());
    }
    // Under the limit: another pass evicts nothing.
    let report = json(a, &["sync", "--json"]);
    assert_eq!(report["cache"]["evicted"], 0, "{report}");

    // A limit only the blocks A alone holds stand in the way of.
    let spec = fs::read_to_string(&a.spec_path).unwrap();
    fs::write(&a.spec_path, spec.replace("33KiB", "4KiB")).unwrap();
    let report = json(a, &["sync", "--json"]);
    let cache = &report["cache"];
    assert_eq!(cache["evicted"], 4, "{report}");
    assert_eq!(cache["kept_too_few_copies"], 4, "{report}");
    assert_eq!(cache["local_bytes_after"], 4 * BS as u64, "{report}");
    for hash in &h_mine {
        assert!(block_file(a, hash).exists(), "only A holds /mine");
    }
    let text = ok(a, &["sync"]);
    assert!(text.contains("cache: 16384 bytes"), "{text}");
    // Everything still reads, byte-exact.
    assert_eq!(get(a, "/old"), old);
    assert_eq!(get(a, "/mine"), mine);
}

/// `globofs mount` of a cluster node, unmounted on drop.
struct NodeMount {
    child: std::process::Child,
    mnt: PathBuf,
}

impl NodeMount {
    fn start(node: &Node, mnt: &Path) -> NodeMount {
        fs::create_dir_all(mnt).unwrap();
        let log = fs::File::create(mnt.with_extension("log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_globofs"))
            .arg("--spec")
            .arg(&node.spec_path)
            .args(["-vv", "mount"])
            .arg(mnt)
            .env_remove("GLOBOFS_SPEC")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start globofs mount");
        let mut mount = NodeMount {
            child,
            mnt: mnt.to_path_buf(),
        };
        eventually("the mount to appear", || {
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!(
                    "globofs mount exited ({status}): {}",
                    fs::read_to_string(mnt.with_extension("log")).unwrap_or_default()
                );
            }
            mount::is_mounted(mnt) && fs::read_dir(mnt).is_ok()
        });
        mount
    }
}

impl Drop for NodeMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if mount::is_mounted(&self.mnt) {
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mnt)
                .status();
        }
    }
}

/// Waits until `check` holds (the mount syncs on its own schedule).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        if std::time::Instant::now() > deadline {
            let log = what
                .split("(log: ")
                .nth(1)
                .map(|rest| fs::read_to_string(rest.trim_end_matches(')')).unwrap_or_default())
                .unwrap_or_default();
            panic!("timed out waiting for: {what}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_mount_shrinks_the_cache_and_a_read_through_it_pulls_blocks_back() {
    if !Path::new("/dev/fuse").exists() {
        println!("skipped: no /dev/fuse here");
        return;
    }
    let f = data(4 * BS, 11);
    let g = data(4 * BS + 3, 12);
    let cluster = two_nodes_b_mirrors(&[("f", f.clone()), ("g", g.clone())]);
    let a = cluster.node(0);
    let store = a.store();
    let hf = store
        .live(&nodes::vp("/f"))
        .unwrap()
        .unwrap()
        .hashes
        .clone();
    let hg = store
        .live(&nodes::vp("/g"))
        .unwrap()
        .unwrap()
        .hashes
        .clone();
    drop(store);
    // B holds every block: the mount's first pass may evict them all.
    set_cache(a, "  max_size: 4KiB\n");
    let mnt = cluster.root().join("mnt-a");
    let _mount = NodeMount::start(a, &mnt);
    let log = mnt.with_extension("log");
    // 4 KiB of 9 blocks (8 of 4 KiB, one of 3 bytes) stay: at most one full block.
    let local = || {
        hf.iter()
            .chain(&hg)
            .filter(|hash| block_file(a, hash).exists())
            .count()
    };
    eventually(
        &format!("the mount to evict A's blocks (log: {})", log.display()),
        || local() <= 2,
    );
    let after: u64 = hf
        .iter()
        .chain(&hg)
        .filter_map(|hash| fs::metadata(block_file(a, hash)).ok())
        .map(|meta| meta.len())
        .sum();
    assert!(after <= 4096, "{after} bytes of blocks left");
    // Evicted is remote: reading through the mount pulls the blocks back.
    assert_eq!(fs::read(mnt.join("f")).unwrap(), f);
    assert_eq!(fs::read(mnt.join("g")).unwrap(), g);
    for hash in hf.iter().chain(&hg) {
        assert!(block_file(a, hash).exists(), "{hash} pulled back");
    }
}

#[test]
fn verify_repair_moves_a_bad_raw_file_aside_when_a_good_compressed_twin_is_here() {
    let cluster = Cluster::mesh(1);
    let a = cluster.node(0);
    let bytes = data(2 * BS, 13);
    let version = a.put("/f", &bytes);
    let hash = version.hashes[0];
    let raw = block_file(a, &hash);
    let mut zst = raw.clone().into_os_string();
    zst.push(".zst");
    fs::write(&zst, zstd::bulk::compress(&bytes[..BS], 3).unwrap()).unwrap();
    // Readers prefer a raw file of the right length: this one lies.
    flip_byte(&raw, 1);
    let out = a.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let report = json(a, &["verify", "--repair", "--json"]);
    assert_eq!(
        report["moved_aside"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(!raw.exists(), "the bad raw file left hashes/");
    assert!(Path::new(&zst).exists());
    let text = ok(a, &["verify"]);
    assert!(text.contains(" 0 corrupt"), "{text}");
    assert_eq!(get(a, "/f"), bytes);
}

#[test]
fn drop_and_repair_over_sshfs_and_a_hung_peer_holds_nothing() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        nodes::Options {
            timeout: "2s",
            ..nodes::Options::default()
        }
        .with_mount_points(),
    );
    let root = cluster.root();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let a_sees_b = server.mount(&b.store_dir(), &nodes::mount_point(&root, 0, 1));
    let _b_sees_a = server.mount(&a.store_dir(), &nodes::mount_point(&root, 1, 0));
    let bytes = data(4 * BS + 5, 14);
    let version = a.put("/f", &bytes);
    cluster.settle();
    ok(b, &["mirror"]);

    // Copies checked over sshfs; the evicted blocks come back over sshfs.
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 5, "{report}");
    assert_eq!(get(a, "/f"), bytes);
    // A corrupt block is repaired from B over sshfs.
    flip_byte(&block_file(a, &version.hashes[0]), 2);
    let report = json(a, &["verify", "--repair", "--json"]);
    assert_eq!(report["from_peers"], 1, "{report}");
    ok(a, &["verify"]);

    // A hung peer (its sshfs stopped) holds nothing: nothing is evicted, and
    // the call returns (each copy check is bounded by the deadline).
    let pid = nix::unistd::Pid::from_raw(a_sees_b.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let spec = a.spec();
    let store = a.store();
    let remotes = globofs::sync::remote::remotes(&spec);
    let outcome = globofs::sync::drop_tree(&store, &remotes, &nodes::vp("/"), 1);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let report = outcome.unwrap();
    assert_eq!(report.evicted, 0, "{report:?}");
    assert_eq!(report.kept_too_few_copies, 5, "{report:?}");
    for hash in &version.hashes {
        assert!(block_file(a, hash).exists());
    }
}

#[test]
fn repair_and_drop_with_compressed_blocks() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let mut spec = fs::read_to_string(&a.spec_path).unwrap();
    spec.push_str("compression: zstd\n");
    fs::write(&a.spec_path, spec).unwrap();
    let bytes: Vec<u8> = data(BS, 15).into_iter().chain(vec![7u8; 2 * BS]).collect();
    let version = a.put("/z", &bytes);
    cluster.settle();
    ok(b, &["mirror"]);
    let zst = |hash: &BlockHash| {
        let mut path = block_file(a, hash).into_os_string();
        path.push(".zst");
        PathBuf::from(path)
    };
    let first = version.hashes[0];
    assert!(zst(&first).exists() && !block_file(a, &first).exists());
    let len = fs::metadata(zst(&first)).unwrap().len() as usize;
    flip_byte(&zst(&first), len / 2);
    let report = json(a, &["verify", "--repair", "--json"]);
    assert_eq!(report["from_peers"], 1, "{report}");
    assert!(
        zst(&first).exists(),
        "stored compressed again, like the store's setting"
    );
    ok(a, &["verify"]);
    assert_eq!(get(a, "/z"), bytes);
    // Two distinct blocks (the last two are the same); both compressed files go.
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 2, "{report}");
    let freed = report["bytes_freed"].as_u64().unwrap();
    assert!(freed < 2 * BS as u64, "compressed sizes: {freed}");
    for hash in &version.hashes {
        assert!(!zst(hash).exists());
    }
    assert_eq!(get(a, "/z"), bytes);
}

#[test]
fn verify_names_each_path_with_its_own_version_of_a_shared_missing_block() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let shared = data(BS, 7);
    let f1 = a.put("/f", &shared);
    let f2 = a.put("/f", &data(BS, 8));
    let g = a.put("/g", &shared);
    let h = a.put("/h", &shared);
    a.put("/h", &data(BS, 9));
    cluster.settle();
    let hash = f1.hashes[0];
    assert_eq!(g.hashes[0], hash);
    // Gone everywhere, and no link left: held by no one reachable.
    for node in [a, b] {
        let _ = fs::remove_file(block_file(node, &hash));
    }
    for name in ["f", "g", "h"] {
        fs::remove_file(path_link(a, name, &hash)).unwrap();
    }
    let out = a.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|line| line.contains(&hash.to_string()))
        .unwrap_or_else(|| panic!("no line names {hash}:\n{text}"));
    // /f's newest version naming the block is its first one, not /f's current
    // one and not /g's.
    assert_eq!(
        line.trim(),
        format!(
            "/f (version {}), /g (version {}), /h (version {}): block {hash} is held by no one reachable",
            f1.id, g.id, h.id
        ),
        "{text}"
    );
    assert_ne!(f2.id, f1.id);
}
