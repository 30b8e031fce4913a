//! Space: gc deletes only what no kept version and no outbound entry needs,
//! prune drops old versions by retention and never what decides "current".

#[path = "common/store.rs"]
mod store_common;

use std::collections::HashSet;
use std::fs;

use globofs::ids::{BlockHash, VersionId};
use globofs::spec::RetentionRule;
use globofs::store::Kind;
use globofs::store::gc::PeerApplied;
use store_common::*;

fn hashes_of(vol: &Vol) -> HashSet<BlockHash> {
    store_blocks(vol)
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(vol.dir().join("hashes")).unwrap();
            let text: String = rel
                .to_string_lossy()
                .trim_end_matches(".zst")
                .replace('/', "");
            text.parse().unwrap()
        })
        .collect()
}

#[test]
fn gc_deletes_only_unreferenced_blocks_and_temp_files() {
    let vol = Vol::new();
    let store = vol.store();
    let old = put(&store, &vp("/a"), &data(3 * BS, 1));
    let new = put(&store, &vp("/a"), &data(2 * BS, 2));
    let deleted = put(&store, &vp("/gone"), &data(BS, 3));
    store.remove(&vp("/gone")).unwrap();
    // A block nothing names (as left by a writer that died before its commit).
    let garbage = data(BS, 99);
    let garbage_hash = BlockHash::of(&garbage);
    {
        let lock = store.writer_lock().unwrap();
        let mut writer = store.block_writer(&lock);
        writer.put(&garbage_hash, &garbage).unwrap();
        writer.finish().unwrap();
    }
    // Temp files of a crashed writer.
    fs::write(vol.dir().join("tmp/block-crashed"), b"half a block").unwrap();
    fs::write(
        vol.dir().join("tmp/version-crashed"),
        b"globofs-version 1\n",
    )
    .unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 1, "{report:?}");
    assert_eq!(report.temp_files_deleted, 2, "{report:?}");
    assert!(!block_path(&vol, &garbage_hash).exists());
    let kept = hashes_of(&vol);
    // Every block of every kept version, including the old one and the deleted file's.
    for version in [&old, &new, &deleted] {
        for hash in &version.hashes {
            assert!(
                kept.contains(hash),
                "{hash} of {} {}",
                version.path,
                version.id
            );
        }
    }
    assert_eq!(fs::read_dir(vol.dir().join("tmp")).unwrap().count(), 0);
    // Everything still reads, and a second gc has nothing to do.
    assert_eq!(read_all(&store, &old), data(3 * BS, 1));
    let again = store.gc().unwrap();
    assert_eq!((again.blocks_deleted, again.temp_files_deleted), (0, 0));
}

#[test]
fn gc_does_not_trust_link_counts() {
    // A store copied without -H: every block has one link. The mark pass keeps them.
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(4 * BS, 4);
    let version = put(&store, &vp("/f"), &bytes);
    fs::remove_dir_all(store.path_dir(&vp("/f")).join("hashes")).unwrap();
    for hash in &version.hashes {
        assert_eq!(nlink(&block_path(&vol, hash)), 1);
    }
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 0);
    assert_eq!(content(&store, &vp("/f")), bytes);
}

#[test]
fn prune_keeps_heads_and_records_what_it_dropped() {
    // Quick rewrites make a history to prune only without coalescing.
    let vol = Vol::with("retention:\n  keep_last: 2\n  coalesce_within: 0s\n", false);
    let store = vol.store();
    assert_eq!(vol.spec.retention.keep_last, Some(2));
    // A file with five versions: the first three go.
    let path = vp("/file");
    let versions: Vec<_> = (0..5)
        .map(|i| put(&store, &path, &data(2 * BS, 10 + i)))
        .collect();
    // A history with a tombstone in it: v1, delete, v3, v4, v5. An old
    // tombstone is history like any other version: v1, the delete and v3 go.
    let other = vp("/other");
    let o1 = put(&store, &other, b"one");
    let t = store.remove(&other).unwrap();
    let rest: Vec<VersionId> = (0..3)
        .map(|i| put(&store, &other, format!("v{i}").as_bytes()).id)
        .collect();
    // A deleted file with a long history: the tombstone (its head) stays
    // (keep_last alone never removes a deleted path whole).
    let dead = vp("/dead");
    for i in 0..4 {
        put(&store, &dead, &data(BS, 50 + i));
    }
    let dead_tomb = store.remove(&dead).unwrap();

    // No peers: nothing to wait for.
    let report = store.prune(&vol.spec.retention, &[]).unwrap();
    let ids = |p| store.version_ids(p).unwrap();
    assert_eq!(
        ids(&path),
        vec![versions[3].id, versions[4].id],
        "keep_last 2"
    );
    assert_eq!(ids(&other), rest[1..].to_vec());
    assert!(!ids(&other).contains(&t.id));
    let dead_ids = ids(&dead);
    assert_eq!(dead_ids.last(), Some(&dead_tomb.id));
    assert_eq!(dead_ids.len(), 2);
    assert_eq!(store.current(&dead).unwrap().unwrap().kind, Kind::Tombstone);
    assert_eq!(report.versions_removed, 3 + 3 + 3, "{report:?}");
    assert_eq!(report.tombstones_removed, 1, "{report:?}");
    assert_eq!(report.versions_waiting, 0, "{report:?}");
    // versions/pruned lists what went, so a peer's copy is not taken back.
    let pruned: HashSet<VersionId> = versions[..3].iter().map(|v| v.id).collect();
    assert_eq!(store.pruned_ids(&path).unwrap(), pruned);
    assert_eq!(
        store.pruned_ids(&other).unwrap(),
        HashSet::from([o1.id, t.id, rest[0]])
    );
    assert_eq!(content(&store, &path), data(2 * BS, 14));

    // gc then frees the pruned versions' blocks and their per-path links,
    // and keeps every block a kept version names.
    let links_before = block_files(&store.path_dir(&path).join("hashes")).len();
    assert_eq!(links_before, 10);
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 6 + 2 + 3, "{report:?}");
    assert_eq!(report.path_links_deleted, 6 + 2 + 3, "{report:?}");
    assert_eq!(block_files(&store.path_dir(&path).join("hashes")).len(), 4);
    for id in ids(&path) {
        let version = store.read_version(&path, id).unwrap();
        assert_eq!(read_all(&store, &version).len(), 2 * BS);
    }
    // A second prune finds nothing more to drop.
    let again = store.prune(&vol.spec.retention, &[]).unwrap();
    assert_eq!(again.versions_removed, 0);
    // No rule, nothing pruned.
    assert_eq!(
        store
            .prune(&RetentionRule::default(), &[])
            .unwrap()
            .versions_removed,
        0
    );
}

#[test]
fn blocks_waiting_in_an_outbound_spool_are_kept() {
    let vol = Vol::with("retention:\n  keep_last: 1\n", true);
    let store = vol.store();
    let path = vp("/queued");
    let first = put(&store, &path, &data(3 * BS, 1));
    put(&store, &path, &data(3 * BS, 2));
    let outbound = vol
        .dir()
        .join(format!("spool/outbound/{PEER}/queued/versions"));
    assert!(outbound.join(first.id.to_string()).is_file());
    // Outbound version files are hard links of ours.
    assert_eq!(nlink(&outbound.join(first.id.to_string())), 2);
    assert_eq!(
        fs::read_to_string(outbound.join("log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // The peer has applied nothing yet: the old version waits for it.
    let report = store.prune(&vol.spec.retention, &[]).unwrap();
    assert_eq!(report.versions_removed, 0, "{report:?}");
    assert_eq!(report.versions_waiting, 1, "{report:?}");
    assert_eq!(report.waiting_for[0].peer, PEER);
    assert_eq!(store.version_ids(&path).unwrap().len(), 2);
    // Once it has applied everything, the version goes.
    let caught_up = [PeerApplied {
        peer: PEER.parse().unwrap(),
        through: Some((u64::MAX, 0)),
    }];
    let report = store.prune(&vol.spec.retention, &caught_up).unwrap();
    assert_eq!(report.versions_removed, 1, "{report:?}");
    assert_eq!(store.version_ids(&path).unwrap().len(), 1);
    // The peer has not taken the first version yet: its blocks stay.
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 0, "{report:?}");
    for hash in &first.hashes {
        assert!(block_path(&vol, hash).is_file());
    }
    // Once the outbound entry is gone (sent and acknowledged), gc frees them.
    fs::remove_file(outbound.join(first.id.to_string())).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 3, "{report:?}");
    for hash in &first.hashes {
        assert!(!block_path(&vol, hash).exists());
    }
    assert_eq!(content(&store, &path), data(3 * BS, 2));
}

#[test]
fn gc_deletes_nothing_when_a_version_file_is_unreadable() {
    let vol = Vol::new();
    let store = vol.store();
    let version = put(&store, &vp("/f"), &data(2 * BS, 1));
    // Garbage that gc would normally delete.
    let garbage = data(BS, 2);
    {
        let lock = store.writer_lock().unwrap();
        let mut writer = store.block_writer(&lock);
        writer.put(&BlockHash::of(&garbage), &garbage).unwrap();
        writer.finish().unwrap();
    }
    let file = store
        .path_dir(&vp("/f"))
        .join("versions")
        .join(version.id.to_string());
    let text = fs::read(&file).unwrap();
    fs::write(&file, &text[..text.len() - 20]).unwrap();
    let blocks = store_blocks(&vol);
    let err = store.gc().unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert_eq!(store_blocks(&vol), blocks, "nothing deleted");
}

/// Allocated bytes of every inode under `dir`, each once, as `du` counts.
fn du_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if seen.insert(meta.ino()) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    total
}

/// `globofs du`'s figures match what a count over the store finds: live
/// blocks are the current versions', history the old versions' only, and
/// after prune the old blocks are garbage until gc frees them; every byte of
/// the store is in one of the parts.
#[test]
fn usage_splits_the_store_by_what_needs_each_block() {
    let vol = Vol::new();
    let store = vol.store();
    let old = put(&store, &vp("/a"), &data(3 * BS, 1));
    let new = put(&store, &vp("/a"), &data(2 * BS, 2));
    let gone = put(&store, &vp("/gone"), &data(BS, 3));
    store.remove(&vp("/gone")).unwrap();

    let usage = store.usage().unwrap();
    assert_eq!((usage.paths, usage.deleted_paths), (2, 1));
    assert_eq!((usage.versions, usage.old_versions), (4, 2));
    assert_eq!(usage.live_blocks.files, new.hashes.len() as u64);
    assert_eq!(
        usage.history_blocks.files,
        (old.hashes.len() + gone.hashes.len()) as u64
    );
    assert_eq!(usage.garbage_blocks.files, 0);
    assert!(usage.layout.files > 0 && usage.layout.bytes > 0);
    // Every block is a whole 4 KiB block on disk.
    assert_eq!(usage.live_blocks.bytes, 2 * BS as u64);
    // The parts add up to the whole store, each inode once.
    assert_eq!(usage.total.bytes, du_bytes(&vol.dir()));

    // Prune to one version per path (a deleted path goes whole): the old
    // blocks are now unreferenced.
    let rule = RetentionRule {
        keep_last: Some(1),
        keep_within: None,
    };
    store.prune(&rule, &[]).unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(usage.history_blocks.files, 0);
    assert_eq!(
        usage.garbage_blocks.files,
        (old.hashes.len() + gone.hashes.len()) as u64
    );
    assert_eq!(usage.live_blocks.files, new.hashes.len() as u64);
    store.gc().unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(usage.garbage_blocks.files, 0);
    assert_eq!(usage.total.bytes, du_bytes(&vol.dir()));
}

/// Directories below `dir`, `dir` itself not counted.
fn dirs_below(dir: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if item.file_type().unwrap().is_dir() {
                count += 1;
                stack.push(item.path());
            }
        }
    }
    count
}

/// Deleted files whose history prune removed leave no block fan-out behind:
/// gc removes the `aa/bb/cc/dd` directories it emptied, in the store's
/// `hashes/` and under each path.
#[test]
fn gc_removes_the_fan_out_directories_it_empties() {
    let vol = Vol::with("retention:\n  keep_last: 1\n  keep_within: 0s\n", false);
    let store = vol.store();
    let kept = put(&store, &vp("/kept"), &data(BS, 200));
    let before = dirs_below(&vol.dir().join("hashes"));
    for n in 0..20u64 {
        put(&store, &vp(&format!("/d/f{n}")), &data(2 * BS, n));
        store.remove(&vp(&format!("/d/f{n}"))).unwrap();
    }
    assert!(dirs_below(&vol.dir().join("hashes")) > before);
    let pruned = store.prune(&vol.spec.retention, &[]).unwrap();
    assert_eq!(pruned.paths_emptied, 20, "{pruned:?}");
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_deleted, 40, "{report:?}");
    assert!(report.empty_dirs_removed > 0, "{report:?}");
    // The store's fan-out is what the kept file needs, nothing more.
    assert_eq!(dirs_below(&vol.dir().join("hashes")), before);
    for n in 0..20u64 {
        let path_dir = vol.dir().join(format!("root/d/f{n}"));
        assert!(!path_dir.join("hashes").exists(), "{}", path_dir.display());
        // Without peers the deleted path's record goes too (see the test
        // below); with peers only its `versions/` record would stay.
        assert!(!path_dir.exists(), "{}", path_dir.display());
    }
    // The kept file still reads, its links stay.
    assert!(vol.dir().join("root/kept/hashes").is_dir());
    assert_eq!(store.current(&vp("/kept")).unwrap().unwrap().id, kept.id);
    for hash in &kept.hashes {
        assert!(block_path(&vol, hash).is_file());
    }
    // A new file at a cleaned path gets its layout back.
    put(&store, &vp("/d/f0"), &data(BS, 77));
    assert!(vol.dir().join("root/d/f0/hashes").is_dir());
}

/// Once push delivered an outbound entry (its version file unlinked), gc
/// removes what it leaves (the entry's `log` and directories); an entry
/// still waiting stays whole (QA: 59,536 leftover files in one spool).
#[test]
fn gc_removes_delivered_outbound_entries_and_keeps_waiting_ones() {
    let vol = Vol::with("", true);
    let store = vol.store();
    let sent = put(&store, &vp("/deep/dir/sent"), &data(BS, 1));
    let waiting = put(&store, &vp("/deep/waiting"), &data(BS, 2));
    let outbound = vol.dir().join(format!("spool/outbound/{PEER}"));
    let sent_dir = outbound.join("deep/dir/sent/versions");
    assert!(sent_dir.join(sent.id.to_string()).is_file());
    // Delivered: push unlinks the version file (directories and log stay).
    fs::remove_file(sent_dir.join(sent.id.to_string())).unwrap();
    // The directory versions of /deep and /deep/dir were delivered too.
    for dir in ["deep/versions", "deep/dir/versions"] {
        for item in fs::read_dir(outbound.join(dir)).unwrap() {
            let item = item.unwrap();
            if item.file_name() != "log" {
                fs::remove_file(item.path()).unwrap();
            }
        }
    }
    let report = store.gc().unwrap();
    assert_eq!(report.outbound_entries_removed, 3, "{report:?}");
    assert!(!outbound.join("deep/dir").exists());
    assert!(!outbound.join("deep/versions").exists());
    let waiting_dir = outbound.join("deep/waiting/versions");
    assert!(waiting_dir.join(waiting.id.to_string()).is_file());
    assert!(waiting_dir.join("log").is_file());
    assert!(outbound.is_dir());
    // A new version of the delivered path is queued again as before.
    let again = put(&store, &vp("/deep/dir/sent"), &data(BS, 3));
    assert!(sent_dir.join(again.id.to_string()).is_file());
}

#[test]
fn a_store_without_peers_forgets_deleted_paths_once_pruned_and_collected() {
    let vol = Vol::with("retention:\n  keep_last: 1\n  keep_within: 1s\n", false);
    let store = vol.store();
    let root = vol.dir().join("root");
    put(&store, &vp("/keep"), b"kept");
    let empty = fs::read_dir(&root).unwrap().count();
    for n in 0..20 {
        put(&store, &vp(&format!("/gone/sub/f{n}")), &data(BS, n));
    }
    vol.ok(["rm", "-r", "/gone"]);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    vol.ok(["prune"]);
    // No peer will ever refresh digests from a list: none is kept.
    assert!(!vol.dir().join("state/digest-dirty").exists());
    let gc: serde_json::Value = serde_json::from_str(&vol.ok(["gc", "--json"])).unwrap();
    assert_eq!(gc["deleted_paths_forgotten"], 22, "{gc}");
    // Nothing of the deleted tree is left under root/: no record, no directory.
    assert_eq!(fs::read_dir(&root).unwrap().count(), empty);
    assert!(!root.join("gone").exists());
    assert_eq!(content(&store, &vp("/keep")), b"kept");
    // The name can be used again.
    put(&store, &vp("/gone/sub/f0"), b"again");
    assert_eq!(content(&store, &vp("/gone/sub/f0")), b"again");
}
