//! Versions: deletes as tombstones, renames without copying, history, restore,
//! version ids (unique, integer-ordered, never before a parent) and "current"
//! decided from the version files, never from `versions/log`.

#[path = "common/store.rs"]
mod store_common;

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use globofs::ids::VersionId;
use globofs::store::{Kind, Mtime, StoreError, Version, resolve};
use store_common::*;

#[test]
fn a_delete_is_a_tombstone_that_keeps_history() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/docs/note.txt");
    let bytes = data(BS + 10, 1);
    let first = put(&store, &path, &bytes);
    let gone = store.remove(&path).unwrap();
    assert_eq!(gone.kind, Kind::Tombstone);
    assert_eq!(gone.parents, vec![first.id]);
    assert!(store.live(&path).unwrap().is_none());
    assert_eq!(store.current(&path).unwrap().unwrap(), gone);
    let history = store.versions(&path).unwrap();
    assert_eq!(history, vec![first.clone(), gone.clone()]);
    // The old content is still readable by version.
    let old = store.read_version(&path, first.id).unwrap();
    assert_eq!(read_all(&store, &old), bytes);
    assert!(store.list_dir(&vp("/docs")).unwrap().is_empty());
    assert!(matches!(store.remove(&path), Err(StoreError::NotFound(_))));
    // A non-empty directory is refused; an empty one becomes a tombstone too.
    put(&store, &vp("/docs/other"), b"x");
    assert!(matches!(
        store.remove(&vp("/docs")),
        Err(StoreError::NotEmpty(_))
    ));
    store.remove(&vp("/docs/other")).unwrap();
    assert_eq!(store.remove(&vp("/docs")).unwrap().kind, Kind::Tombstone);
    // Writing again after a delete continues the history.
    let back = put(&store, &path, b"again");
    assert_eq!(back.parents, vec![gone.id]);
    assert_eq!(store.versions(&path).unwrap().len(), 3);
}

#[test]
fn a_rename_copies_no_block_and_says_where_it_came_from() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(4 * BS, 2);
    let old = put(&store, &vp("/a/file"), &bytes);
    put(&store, &vp("/a/sub/inner"), b"inner");
    let blocks = store_blocks(&vol);
    store.rename(&vp("/a/file"), &vp("/b"), false).unwrap();
    assert_eq!(store_blocks(&vol), blocks, "no block written or removed");
    let moved = store.live(&vp("/b")).unwrap().unwrap();
    assert_eq!(moved.hashes, old.hashes);
    assert_eq!(moved.from, Some((old.id, vp("/a/file"))));
    let file = store
        .path_dir(&vp("/b"))
        .join("versions")
        .join(moved.id.to_string());
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("\nfrom {} a/file\n", old.id)),
        "{text}"
    );
    assert_eq!(
        store.current(&vp("/a/file")).unwrap().unwrap().kind,
        Kind::Tombstone
    );
    assert_eq!(content(&store, &vp("/b")), bytes);

    // A directory moves with everything below it.
    store.rename(&vp("/a"), &vp("/c"), false).unwrap();
    assert_eq!(content(&store, &vp("/c/sub/inner")), b"inner");
    assert!(store.live(&vp("/a/sub/inner")).unwrap().is_none());
    assert!(store.live(&vp("/a")).unwrap().is_none());
    assert_eq!(store_blocks(&vol), blocks);

    // Over an existing file: the new version's parent is the replaced head, so
    // it is a plain overwrite, not a conflict.
    let target = put(&store, &vp("/t"), b"target");
    store.rename(&vp("/b"), &vp("/t"), false).unwrap();
    let now = store.live(&vp("/t")).unwrap().unwrap();
    assert_eq!(now.parents, vec![target.id]);
    assert_eq!(store.heads(&vp("/t")).unwrap(), vec![now.id]);
    assert!(matches!(
        store.rename(&vp("/t"), &vp("/c"), false),
        Err(StoreError::IsADirectory(_))
    ));
    assert!(matches!(
        store.rename(&vp("/c"), &vp("/c/sub/x"), false),
        Err(StoreError::Invalid { .. })
    ));
}

#[test]
fn history_lists_reads_and_restores_old_versions() {
    // Every version kept (quick rewrites would coalesce).
    let vol = Vol::with("retention:\n  coalesce_within: 0s\n", false);
    let store = vol.store();
    let path = vp("/h");
    let contents: Vec<Vec<u8>> = (0..4).map(|i| data(BS * i + 3, i as u64)).collect();
    let ids: Vec<VersionId> = contents.iter().map(|c| put(&store, &path, c).id).collect();
    assert_eq!(store.version_ids(&path).unwrap(), ids);
    assert_eq!(
        log_lines(&store, &path),
        ids.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    for (id, bytes) in ids.iter().zip(&contents) {
        let version = store.read_version(&path, *id).unwrap();
        assert_eq!(&read_all(&store, &version), bytes);
    }
    let restored = store.restore(&path, ids[1]).unwrap();
    assert!(restored.id > ids[3]);
    assert_eq!(restored.parents, vec![ids[3]]);
    assert_eq!(content(&store, &path), contents[1]);
    assert_eq!(
        log_lines(&store, &path).last().unwrap(),
        &restored.id.to_string()
    );
    // Restoring a deleted file brings it back.
    store.remove(&path).unwrap();
    store.restore(&path, ids[2]).unwrap();
    assert_eq!(content(&store, &path), contents[2]);
    let missing: VersionId = "1.000000000".parse().unwrap();
    assert!(matches!(
        store.restore(&path, missing),
        Err(StoreError::NoSuchVersion(..))
    ));
}

#[test]
fn quick_commits_get_unique_increasing_ids() {
    let vol = Vol::new();
    let mut store = vol.store();
    // Every version kept (quick rewrites would coalesce).
    store.config_mut().coalesce = None;
    let path = vp("/busy");
    let mut ids = Vec::new();
    for i in 0..300u32 {
        // Attribute-only commits: no block I/O, as quick as a commit gets.
        let version = if i == 0 {
            put(&store, &path, b"x")
        } else {
            store.set_attrs(&path, Some(0o600 + (i % 8)), None).unwrap()
        };
        ids.push(version.id);
    }
    let unique: HashSet<VersionId> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "version ids collided");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert_eq!(store.version_ids(&path).unwrap(), ids);
    let lines = log_lines(&store, &path);
    assert_eq!(
        lines,
        ids.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

#[test]
fn concurrent_writers_of_one_path_make_one_chain() {
    // Every version kept (quick rewrites would coalesce; see the next test).
    let vol = Arc::new(Vol::with("retention:\n  coalesce_within: 0s\n", false));
    let path = vp("/shared");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let vol = Arc::clone(&vol);
            let path = path.clone();
            std::thread::spawn(move || {
                let store = vol.store();
                (0..25u64)
                    .map(|i| put(&store, &path, &data(100, t * 100 + i)).id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<VersionId> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    ids.sort();
    let store = vol.store();
    assert_eq!(store.version_ids(&path).unwrap(), ids, "every id unique");
    let versions = store.versions(&path).unwrap();
    // Writers of one path are serialised: each version's parent is the one before.
    for pair in versions.windows(2) {
        assert_eq!(pair[1].parents, vec![pair[0].id]);
    }
    assert_eq!(store.heads(&path).unwrap(), vec![*ids.last().unwrap()]);
}

#[test]
fn concurrent_writers_that_coalesce_still_leave_one_head() {
    let vol = Arc::new(Vol::new());
    let path = vp("/shared");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let vol = Arc::clone(&vol);
            let path = path.clone();
            std::thread::spawn(move || {
                let store = vol.store();
                (0..25u64)
                    .map(|i| (put(&store, &path, &data(100, t * 100 + i)).id, t * 100 + i))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut made: Vec<(VersionId, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    made.sort();
    let store = vol.store();
    let kept = store.version_ids(&path).unwrap();
    assert!(
        kept.len() < made.len(),
        "some rewrites were coalesced: {kept:?}"
    );
    let (last, seed) = *made.last().unwrap();
    assert_eq!(store.heads(&path).unwrap(), vec![last]);
    assert_eq!(content(&store, &path), data(100, seed));
    // Nothing concurrent was made: no conflict copy next to the file.
    assert_eq!(store.list_dir(&vp("/")).unwrap().len(), 1);
}

#[test]
fn a_new_id_is_past_its_parent_even_when_the_clock_is_behind() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/future");
    let now = put(&store, &path, b"now");
    // A version from a node whose clock runs a day ahead.
    let ahead = VersionId {
        secs: now.id.secs + 86_400,
        nanos: 999_999_999,
        major: Some(7),
    };
    let mut future = now.clone();
    future.id = ahead;
    future.parents = vec![now.id];
    future.node = "ea8192ee-593f-437f-af60-90d213995480".parse().unwrap();
    store.import_version(&future).unwrap();
    let next = store.set_attrs(&path, Some(0o600), None).unwrap();
    assert_eq!(next.parents, vec![ahead]);
    assert_eq!(
        next.id,
        VersionId {
            secs: ahead.secs + 1,
            nanos: 0,
            major: None
        }
    );
    assert_eq!(store.current(&path).unwrap().unwrap().id, next.id);
}

#[test]
fn current_comes_from_the_version_files_not_the_log() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/f");
    put(&store, &path, b"one");
    let two = put(&store, &path, b"two");
    let log = store.path_dir(&path).join("versions/log");
    // A bogus last line naming a version that does not exist, then an old id.
    append(&log, b"9999999999.000000000\n");
    assert_eq!(store.current(&path).unwrap().unwrap(), two);
    let one = store.versions(&path).unwrap()[0].id;
    append(&log, format!("{one}\n").as_bytes());
    assert_eq!(store.current(&path).unwrap().unwrap(), two);
    // No log at all: still the same answer.
    fs::remove_file(&log).unwrap();
    assert_eq!(content(&store, &path), b"two");
}

#[test]
fn a_log_with_a_partial_last_line_still_ends_with_the_current_id() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/p");
    put(&store, &path, b"one");
    let log = store.path_dir(&path).join("versions/log");
    append(&log, b"17956"); // a torn append
    assert_eq!(content(&store, &path), b"one");
    let two = put(&store, &path, b"two");
    assert_eq!(content(&store, &path), b"two");
    let lines = log_lines(&store, &path);
    assert_eq!(lines.last().unwrap(), &two.id.to_string(), "{lines:?}");
    assert!(lines.iter().any(|l| l == "17956"), "{lines:?}");
}

/// A hand-made version of `path` by another node (as sync would apply it).
fn foreign(base: &Version, id: &str, kind: Kind, parents: &[VersionId]) -> Version {
    let mut v = base.clone();
    v.id = id.parse().unwrap();
    v.kind = kind;
    v.parents = parents.to_vec();
    v.node = "ea8192ee-593f-437f-af60-90d213995480".parse().unwrap();
    v.mtime = Mtime::default();
    if kind != Kind::File {
        v.size = 0;
        v.block_size = 0;
        v.hashes.clear();
    } else {
        // Its own bytes (as many blocks): concurrent edits are real conflicts.
        for hash in &mut v.hashes {
            *hash = globofs::ids::BlockHash::of(id.as_bytes());
        }
    }
    v
}

#[test]
fn current_agrees_with_resolve_whatever_the_shape_of_history() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/x");
    let base = put(&store, &path, b"base");
    let dir = store.path_dir(&path).join("versions");
    // As every publisher does (FORMAT §13): the version file, then its
    // line in the path's log.
    let write = |v: &Version| {
        fs::write(dir.join(v.id.to_string()), v.to_text()).unwrap();
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("log"))
            .unwrap();
        std::io::Write::write_all(&mut log, format!("{}\n", v.id).as_bytes()).unwrap();
    };
    let later = |secs: u64| format!("{}.000000000", base.id.secs + secs);
    // Two concurrent edits of the base: the higher id wins, the other is a loser.
    let a = foreign(&base, &later(10), Kind::File, &[base.id]);
    let b = foreign(&base, &later(20), Kind::File, &[base.id]);
    write(&a);
    write(&b);
    let check = |label: &str| {
        let all = store.versions(&path).unwrap();
        let resolved = resolve::resolve(&all).current.cloned();
        assert_eq!(store.current(&path).unwrap(), resolved, "{label}");
        resolved
    };
    assert_eq!(check("two edits").unwrap().id, b.id);
    let losers = {
        let all = store.versions(&path).unwrap();
        resolve::resolve(&all)
            .losers
            .iter()
            .map(|v| v.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(losers, vec![a.id]);
    let copy = resolve::conflict_name(&a).unwrap();
    assert!(
        copy.display().starts_with("/x.sync-conflict-") && copy.display().ends_with("-ea8192ee"),
        "{copy}"
    );
    // A delete newer than an edit it did not see: the edit survives.
    let del = foreign(&base, &later(30), Kind::Tombstone, &[a.id]);
    write(&del);
    assert_eq!(check("delete vs edit").unwrap().id, b.id);
    // A concurrent directory beats a newer file (its children stay reachable).
    let d = foreign(&base, &later(25), Kind::Dir, &[base.id]);
    write(&d);
    let merged = foreign(&base, &later(40), Kind::File, &[b.id]);
    write(&merged);
    assert_eq!(check("dir vs newer file").unwrap().kind, Kind::Dir);
}
