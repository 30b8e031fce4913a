//! The tree at a past moment (store level, no mount): a tree edited over
//! several days of fake time through the store API, and a model of it in
//! the test that says what the tree was at each moment; restores of the
//! past as new versions.

#[path = "common/past_model.rs"]
mod past_model;
#[path = "common/store.rs"]
mod store_common;

use globofs::store::past::Change;
use globofs::store::{Kind, Mtime, Store, resolve};
use globofs::when::Moment;
use past_model::*;
use store_common::*;

/// The store's tree at `at`, in the model's terms.
fn store_tree(store: &Store, at: &Moment) -> Tree {
    store
        .walk_at(&vp("/"), at)
        .unwrap()
        .into_iter()
        .map(|(path, version)| {
            let node = match version.kind {
                Kind::Dir => Node::Dir,
                Kind::File => Node::File(read_all(store, &version)),
                other => panic!("{path}: {other:?} in a walk"),
            };
            (path.display(), node)
        })
        .collect()
}

#[test]
fn the_tree_at_each_moment_is_the_one_the_model_computes() {
    let vol = Vol::new();
    let store = vol.store();
    let steps = history(&store, 16);
    assert!(steps.len() > 30, "too few edits made: {}", steps.len());
    // Before the first edit: nothing.
    assert!(store_tree(&store, &moment(DAY0)).is_empty());
    let mut checked = 0;
    for (i, (time, tree)) in steps.iter().enumerate() {
        // At the edit's second and just before the next edit.
        let next = steps.get(i + 1).map_or(time + HOUR, |(t, _)| *t);
        for when in [*time, next - 1] {
            assert_eq!(
                store_tree(&store, &moment(when)),
                *tree,
                "at {} (edit {i})",
                globofs::when::rfc3339(when, 0)
            );
            checked += 1;
        }
    }
    assert!(checked > 60);
    // The latest moment is the current tree.
    let last = &steps.last().unwrap().1;
    let current: Tree = store
        .walk(&vp("/"))
        .unwrap()
        .into_iter()
        .map(|(path, v)| {
            let node = if v.kind == Kind::Dir {
                Node::Dir
            } else {
                Node::File(read_all(&store, &v))
            };
            (path.display(), node)
        })
        .collect();
    assert_eq!(&current, last);
    // A user's time text names the same moment.
    let (time, tree) = &steps[10];
    let text = globofs::when::rfc3339(*time, 0);
    let parsed: Moment = text.parse().unwrap();
    assert_eq!(store_tree(&store, &parsed), *tree, "{text}");
}

#[test]
fn the_past_agrees_with_resolving_the_versions_of_then() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/x");
    let base = at(DAY0, || put(&store, &path, b"base"));
    // A concurrent edit from another node, a day later, and a delete of the
    // base seen by neither.
    let dir = store.path_dir(&path).join("versions");
    let mut other = base.clone();
    other.id = format!("{}.000000000", DAY0 + 86_400).parse().unwrap();
    other.node = "ea8192ee-593f-437f-af60-90d213995480".parse().unwrap();
    other.parents = vec![base.id];
    other.hashes = vec![globofs::ids::BlockHash::of(b"other")];
    std::fs::write(dir.join(other.id.to_string()), other.to_text()).unwrap();
    let mine = at(DAY0 + 2 * 86_400, || put(&store, &path, b"mine"));
    at(DAY0 + 3 * 86_400, || store.remove(&path).unwrap());
    let all = store.versions(&path).unwrap();
    for secs in (DAY0 - 10..DAY0 + 4 * 86_400).step_by(6 * HOUR as usize) {
        let m = moment(secs);
        let then: Vec<_> = all.iter().filter(|v| m.includes(v.id)).cloned().collect();
        let expected = resolve::resolve(&then).current.cloned();
        assert_eq!(store.current_at(&path, &m).unwrap(), expected, "at {secs}");
    }
    assert_eq!(
        store
            .live_at(&path, &moment(DAY0 + 2 * 86_400))
            .unwrap()
            .unwrap()
            .id,
        mine.id
    );
    // A version id as the moment: that version and what came before.
    let m = Moment::at_version(other.id);
    assert_eq!(store.live_at(&path, &m).unwrap().unwrap().id, other.id);
}

#[test]
fn a_deleted_directory_comes_back_with_its_blocks_and_attributes() {
    let vol = Vol::new();
    let store = vol.store();
    let big = data(3 * BS + 5, 7);
    let mtime = Mtime {
        secs: 1_700_000_000,
        nanos: 5,
    };
    at(DAY0, || {
        put_attrs(&store, &vp("/docs/big"), &big, 0o640, mtime);
        put(&store, &vp("/docs/sub/small"), b"small");
        store.symlink(&vp("/docs/link"), b"big").unwrap();
    });
    at(DAY0 + 10, || {
        store
            .change_attrs(&vp("/docs/big"), |c| {
                c.posix
                    .xattrs
                    .insert(b"user.tag".to_vec(), b"kept".to_vec());
            })
            .unwrap();
    });
    at(DAY0 + 86_400, || store.remove_tree(&vp("/docs")).unwrap());
    at(DAY0 + 2 * 86_400, || put(&store, &vp("/other"), b"other"));
    let blocks = store_blocks(&vol);
    let then = moment(DAY0 + HOUR);
    // Not a directory restore without -r.
    assert!(matches!(
        store.restore_at(&vp("/docs"), &then, false, false),
        Err(globofs::store::StoreError::WasADirectory { .. })
    ));
    let done = store.restore_at(&vp("/docs"), &then, true, false).unwrap();
    assert_eq!(
        done.written,
        [
            "/docs",
            "/docs/big",
            "/docs/link",
            "/docs/sub",
            "/docs/sub/small"
        ]
    );
    assert_eq!(
        store_blocks(&vol),
        blocks,
        "no block written: they are reused"
    );
    let back = store.live(&vp("/docs/big")).unwrap().unwrap();
    let old = store.live_at(&vp("/docs/big"), &then).unwrap().unwrap();
    assert_eq!(back.hashes, old.hashes);
    assert_eq!(back.mode, 0o640);
    assert_eq!(back.mtime, mtime);
    assert_eq!(back.posix.xattrs.get(&b"user.tag"[..]).unwrap(), b"kept");
    assert!(
        back.id.secs > DAY0 + 2 * 86_400,
        "a new version: {}",
        back.id
    );
    assert_eq!(content(&store, &vp("/docs/big")), big);
    assert_eq!(content(&store, &vp("/docs/sub/small")), b"small");
    assert_eq!(
        store
            .live(&vp("/docs/link"))
            .unwrap()
            .unwrap()
            .target
            .unwrap(),
        b"big"
    );
    assert_eq!(content(&store, &vp("/other")), b"other", "kept");
    // Again: everything is already as it was.
    let again = store.restore_at(&vp("/docs"), &then, true, false).unwrap();
    assert!(again.written.is_empty(), "{again:?}");
    assert_eq!(again.unchanged, 5);
    // Exact at the root: what was made since goes.
    let exact = store.restore_at(&vp("/"), &then, true, true).unwrap();
    assert_eq!(exact.removed, ["/other"]);
    assert!(store.live(&vp("/other")).unwrap().is_none());
    // A moment where a path was not there: refused, naming path and time.
    let err = store
        .restore_at(&vp("/other"), &moment(DAY0), false, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/other") && err.contains("2026-11-28T00:00:00Z"),
        "{err}"
    );
}

#[test]
fn restore_replaces_what_changed_kind_and_diff_says_what_moved() {
    let vol = Vol::new();
    let store = vol.store();
    at(DAY0, || {
        put(&store, &vp("/t/keep"), b"keep");
        put(&store, &vp("/t/edit"), b"v1");
        put(&store, &vp("/t/was_file"), b"file");
    });
    at(DAY0 + HOUR, || {
        put(&store, &vp("/t/edit"), b"v2");
        store.remove(&vp("/t/was_file")).unwrap();
        put(&store, &vp("/t/was_file/inside"), b"now a dir");
        put(&store, &vp("/t/new"), b"new");
    });
    let (t0, t1) = (moment(DAY0 + 1), moment(DAY0 + HOUR + 1));
    let diff = store.diff_at(&vp("/t"), &t0, &t1).unwrap();
    let shown: Vec<(String, Change)> = diff.into_iter().map(|(p, c)| (p.display(), c)).collect();
    assert_eq!(
        shown,
        [
            ("/t/edit".to_string(), Change::Changed),
            ("/t/new".to_string(), Change::Added),
            ("/t/was_file".to_string(), Change::Changed),
            ("/t/was_file/inside".to_string(), Change::Added),
        ]
    );
    assert_eq!(store.diff_at(&vp("/t"), &t1, &t1).unwrap(), []);
    let done = store.restore_at(&vp("/t"), &t0, true, false).unwrap();
    assert_eq!(done.written, ["/t/edit", "/t/was_file"]);
    assert_eq!(done.removed, ["/t/was_file/inside"], "below a file then");
    assert_eq!(content(&store, &vp("/t/edit")), b"v1");
    assert_eq!(content(&store, &vp("/t/was_file")), b"file");
    assert_eq!(content(&store, &vp("/t/new")), b"new", "kept without exact");
    // The restore is itself history: the tree just before it is still there.
    let before = moment(DAY0 + 2 * HOUR);
    assert!(
        store
            .live_at(&vp("/t/was_file/inside"), &before)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_long_history_is_decided_at_every_moment_and_after_the_last() {
    let vol = Vol::new();
    let store = vol.store();
    let path = vp("/long");
    for i in 0..40u64 {
        at(DAY0 + i * HOUR, || {
            put(&store, &path, format!("save {i}").as_bytes())
        });
    }
    for i in 0..40u64 {
        let then = store
            .live_at(&path, &moment(DAY0 + i * HOUR + 1))
            .unwrap()
            .unwrap();
        assert_eq!(read_all(&store, &then), format!("save {i}").as_bytes());
    }
    // After the last save (the remembered heads decide), and `now`.
    for m in [moment(DAY0 + 50 * HOUR), "now".parse().unwrap()] {
        assert_eq!(
            store.live_at(&path, &m).unwrap(),
            store.live(&path).unwrap(),
            "at {m}"
        );
    }
}
