//! Coalescing (FORMAT §15): a file rewritten many times a minute keeps its
//! creation and its last version, not one per write; a version a peer was
//! sent, one older than `retention.coalesce_within`, and every version under
//! `keep_all` stay; peers end up agreeing with no conflict copy.

#[path = "common/store.rs"]
mod store_common;

use std::fs;

use globofs::ids::VersionId;
use globofs::store::Attrs;
use store_common::*;

/// Writes `count` contents at `path` through one store (as one mount does).
fn rewrite(store: &globofs::store::Store, path: &str, count: usize) -> Vec<VersionId> {
    (0..count)
        .map(|n| put(store, &vp(path), format!("content {n}").as_bytes()).id)
        .collect()
}

fn pruned(store: &globofs::store::Store, path: &str) -> Vec<String> {
    let file = path_dir(store, &vp(path)).join("versions").join("pruned");
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_file_rewritten_many_times_keeps_its_creation_and_its_last_version() {
    let vol = Vol::new();
    let store = vol.store();
    let ids = rewrite(&store, "/db", 30);
    assert_eq!(store.version_ids(&vp("/db")).unwrap(), [ids[0], ids[29]]);
    assert_eq!(content(&store, &vp("/db")), b"content 29");
    // The dropped ones are recorded like pruned versions (never taken back).
    let dropped: Vec<String> = ids[1..29].iter().map(ToString::to_string).collect();
    assert_eq!(pruned(&store, "/db"), dropped);
    // The last version still reaches the creation, and supersedes what went.
    let last = store.read_version(&vp("/db"), ids[29]).unwrap();
    assert!(last.parents.contains(&ids[28]) && last.parents.contains(&ids[0]));
    assert_eq!(last.parents.len(), 2, "{:?}", last.parents);
    // gc frees the blocks only dropped versions named.
    vol.ok(["gc"]);
    let named: std::collections::HashSet<_> = [ids[0], ids[29]]
        .iter()
        .flat_map(|id| store.read_version(&vp("/db"), *id).unwrap().hashes)
        .collect();
    assert_eq!(store_blocks(&vol).len(), named.len());
}

#[test]
fn keep_all_or_a_zero_window_keeps_every_version() {
    for extra in [
        "retention:\n  keep_all: true\n",
        "retention:\n  coalesce_within: 0s\n",
    ] {
        let vol = Vol::with(extra, false);
        let store = vol.store();
        let ids = rewrite(&store, "/db", 5);
        assert_eq!(store.version_ids(&vp("/db")).unwrap(), ids, "{extra}");
        assert!(pruned(&store, "/db").is_empty());
    }
}

#[test]
fn a_busy_file_keeps_a_version_per_window() {
    let vol = Vol::with("retention:\n  coalesce_within: 1s\n", false);
    let store = vol.store();
    let start = std::time::Instant::now();
    let mut made = Vec::new();
    for _ in 0..25 {
        made.extend(rewrite(&store, "/f", 1));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let kept = store.version_ids(&vp("/f")).unwrap();
    // The creation, then one version each time the one kept before is a
    // window old, and the last: never every edit, never only the ends.
    assert!(kept.len() < made.len(), "{kept:?}");
    assert!(
        kept.len() >= 2 + (elapsed as usize).saturating_sub(1).min(1),
        "{elapsed} s, kept {kept:?}"
    );
    let windows = |a: &VersionId, b: &VersionId| {
        b.secs * 1_000 + u64::from(b.nanos / 1_000_000)
            - a.secs * 1_000
            - u64::from(a.nanos / 1_000_000)
    };
    // Between the creation and the last one, kept versions are about a
    // window apart: one stays once the next commit comes a window after the
    // one kept before it (less one step between edits, 100 ms plus a commit).
    for pair in kept[1..kept.len() - 1].windows(2) {
        assert!(windows(&pair[0], &pair[1]) >= 600, "{kept:?}");
    }
    assert_eq!(*kept.last().unwrap(), *made.last().unwrap());
}

#[test]
fn creates_renames_and_other_processes_lazy_commits_are_not_dropped() {
    let vol = Vol::new();
    let store = vol.store();
    let created = put(&store, &vp("/a"), b"one");
    store.rename(&vp("/a"), &vp("/b"), false).unwrap();
    let moved = store.live(&vp("/b")).unwrap().unwrap();
    put(&store, &vp("/b"), b"two");
    // The rename's version at /b made the name: it stays.
    assert!(store.version_ids(&vp("/b")).unwrap().contains(&moved.id));
    assert!(store.version_ids(&vp("/a")).unwrap().contains(&created.id));
    // A lazy commit by another process (another store): this process cannot
    // tell whether an fsync made it durable, so a lazy commit here keeps it.
    let other = vol.store();
    let theirs = other
        .write_file(&vp("/b"), &mut &b"three"[..], Attrs::default(), false)
        .unwrap();
    let ours = store
        .write_file(&vp("/b"), &mut &b"four"[..], Attrs::default(), false)
        .unwrap();
    let ids = store.version_ids(&vp("/b")).unwrap();
    assert!(
        ids.contains(&theirs.id) && ids.contains(&ours.id),
        "{ids:?}"
    );
}

#[test]
fn a_version_a_peer_was_sent_stays_and_both_nodes_agree() {
    let vol = Vol::with("", true);
    let store = vol.store();
    let ids = rewrite(&store, "/f", 3);
    assert_eq!(store.version_ids(&vp("/f")).unwrap(), [ids[0], ids[2]]);
    // What a push does once the peer took a version: the outbound link goes.
    let outbound = vol.dir().join("spool").join("outbound");
    let peer = fs::read_dir(&outbound)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let link = peer.join("f").join("versions").join(ids[2].to_string());
    fs::remove_file(&link).unwrap();
    let more = rewrite(&store, "/f", 2);
    assert_eq!(
        store.version_ids(&vp("/f")).unwrap(),
        [ids[0], ids[2], more[1]],
        "the delivered version stays; the undelivered one after it went"
    );
    // The dropped version's outbound link went with it: it is never pushed.
    assert!(
        !peer
            .join("f")
            .join("versions")
            .join(more[0].to_string())
            .exists()
    );
}
