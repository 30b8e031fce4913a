//! The history view over a real mount: `.globofs/at/<time>/` shows the tree
//! a model computes for days of fake-time edits, `.globofs/versions/<path>/`
//! lists and reads every kept version, everything in the view is read-only
//! (EROFS), nothing of it reaches the store, and `mount.history_dir` renames
//! or turns off the view (a real `.globofs` then shows again).

#[path = "common/mount.rs"]
mod mount;
#[path = "common/past_model.rs"]
mod past_model;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/store.rs"]
mod store_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use globofs::spec::Spec;
use globofs::store::{Kind, Store};
use globofs::vfs::past::version_name;
use globofs::when::rfc3339;
use mount::{Mounted, errno};
use past_model::{Node, Tree, history};
use store_common::vp;

fn store_of(m: &Mounted) -> Store {
    Store::open_spec(&Spec::load(&m.spec).expect("spec")).expect("store")
}

/// What the mount shows below `dir`, in the model's terms (`ls -R` and a read
/// of every file).
fn mount_tree(dir: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((local, shown)) = stack.pop() {
        for item in fs::read_dir(&local).unwrap_or_else(|e| panic!("{}: {e}", local.display())) {
            let item = item.unwrap();
            let name = format!("{shown}/{}", item.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(item.path()).unwrap();
            if meta.is_dir() {
                stack.push((item.path(), name.clone()));
                out.insert(name, Node::Dir);
            } else {
                out.insert(name, Node::File(fs::read(item.path()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn at_shows_the_model_tree_at_each_time_and_versions_read_back() {
    let m = Mounted::new();
    let store = store_of(&m);
    let steps = history(&store, 77);
    assert!(steps.len() > 30, "{} edits", steps.len());
    // The view is not listed at the root (tools walking the mount stay out).
    let root: Vec<_> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!root.iter().any(|n| n == ".globofs"), "{root:?}");
    let mut checked = 0;
    for (time, tree) in steps.iter().step_by(7) {
        let name = rfc3339(*time, 0);
        let shown = mount_tree(&m.path(&format!(".globofs/at/{name}")));
        assert_eq!(&shown, tree, "at {name}");
        checked += 1;
    }
    assert!(checked >= 5);
    // A version id names a moment too, and a time before everything is empty.
    let (time, tree) = &steps[3];
    let id = format!("{time}.000000000");
    assert_eq!(&mount_tree(&m.path(&format!(".globofs/at/{id}"))), tree);
    assert!(mount_tree(&m.path(".globofs/at/2026-01-01T00:00:00Z")).is_empty());
    assert_eq!(
        errno(fs::metadata(m.path(".globofs/at/not-a-time"))),
        libc::ENOENT
    );
    // `at/` lists one point per hour with changes, the newest first among them.
    let last = steps.last().unwrap().0;
    let listed: Vec<String> = fs::read_dir(m.path(".globofs/at"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let newest = rfc3339((last / 3600 + 1) * 3600, 0);
    assert!(listed.contains(&newest), "{newest} not in {listed:?}");
    assert!(listed.len() <= 48, "{}", listed.len());
    assert_eq!(
        mount_tree(&m.path(&format!(".globofs/at/{newest}"))),
        steps.last().unwrap().1
    );
    // Once the kernel drops the view's inodes (its FORGETs reach the view,
    // which then forgets them), every moment reads the same again.
    match fs::write("/proc/sys/vm/drop_caches", "2") {
        Ok(()) => {
            for (time, tree) in steps.iter().step_by(11) {
                let name = rfc3339(*time, 0);
                let shown = mount_tree(&m.path(&format!(".globofs/at/{name}")));
                assert_eq!(&shown, tree, "at {name} after the kernel forgot");
            }
        }
        Err(err) => eprintln!("skipped: dropping the kernel's inodes needs root ({err})"),
    }

    // versions/<file>/: every kept file version, by time and id, with its bytes.
    let (path, versions) = store
        .walk(&vp("/"))
        .unwrap()
        .into_iter()
        .filter(|(_, v)| v.kind == Kind::File)
        .map(|(p, _)| {
            let all: Vec<_> = store
                .versions(&p)
                .unwrap()
                .into_iter()
                .filter(|v| v.kind == Kind::File)
                .collect();
            (p, all)
        })
        .max_by_key(|(_, all)| all.len())
        .expect("some file");
    assert!(versions.len() >= 2, "{path}: {} versions", versions.len());
    let dir = m.path(&format!(".globofs/versions{}", path.display()));
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = versions.iter().map(|v| version_name(v.id)).collect();
    expected.sort();
    assert_eq!(names, expected);
    for version in &versions {
        let file = dir.join(version_name(version.id));
        let mut bytes = Vec::new();
        store.copy_to(version, &mut bytes).unwrap();
        assert!(fs::read(&file).unwrap() == bytes, "{}", file.display());
        let meta = fs::metadata(&file).unwrap();
        assert_eq!(meta.len(), version.size);
        assert_eq!(meta.permissions().mode() & 0o222, 0, "read-only");
    }
    // versions/ lists deleted names too: the top directory lists every name
    // the root ever had.
    let top: Vec<String> = fs::read_dir(m.path(".globofs/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for (_, tree) in &steps {
        for name in tree.keys().filter(|p| p.matches('/').count() == 1) {
            assert!(top.contains(&name[1..].to_string()), "{name} in {top:?}");
        }
    }
}

#[test]
fn the_view_is_read_only_and_never_stored() {
    let m = Mounted::new();
    let store = store_of(&m);
    history(&store, 5);
    let at = m.path(".globofs/at/now");
    let (file, dir) = {
        let tree = mount_tree(&at);
        let file = tree
            .iter()
            .find(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .expect("a file now");
        let dir = tree
            .iter()
            .find(|(_, n)| **n == Node::Dir)
            .map(|(p, _)| p.clone())
            .unwrap();
        (at.join(&file[1..]), at.join(&dir[1..]))
    };
    let erofs = |what: &str, result: std::io::Result<()>| {
        assert_eq!(errno(result), libc::EROFS, "{what}");
    };
    erofs("create", fs::write(dir.join("new"), b"x"));
    erofs("mkdir", fs::create_dir(dir.join("sub")));
    erofs("mkdir in .globofs", fs::create_dir(m.path(".globofs/mine")));
    erofs("unlink", fs::remove_file(&file));
    erofs("rmdir", fs::remove_dir(&dir));
    erofs("rename", fs::rename(&file, dir.join("moved")));
    erofs("rename out", fs::rename(&file, m.path("stolen")));
    erofs(
        "chmod",
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)),
    );
    erofs(
        "open for writing",
        fs::OpenOptions::new().write(true).open(&file).map(|_| ()),
    );
    erofs("symlink", std::os::unix::fs::symlink("x", dir.join("l")));
    erofs("rm .globofs", fs::remove_dir(m.path(".globofs")));
    // Nothing of the view is in the store (so nothing of it can sync).
    let store = store_of(&m);
    assert!(store.version_ids(&vp("/.globofs")).unwrap().is_empty());
    assert!(
        store
            .walk(&vp("/"))
            .unwrap()
            .iter()
            .all(|(p, _)| !p.display().starts_with("/.globofs")),
    );
}

#[test]
fn a_real_globofs_entry_is_hidden_by_the_view_and_shown_without_it() {
    for (extra, view) in [
        ("", true),
        ("  history_dir: \"\"\n", false),
        ("  history_dir: .past\n", true),
    ] {
        let m = Mounted::with("4KiB", extra);
        let store = store_of(&m);
        store_common::put(&store, &vp("/.globofs/mine.txt"), b"mine");
        let root: Vec<String> = fs::read_dir(m.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let real_shown = extra.contains(".past") || !view;
        assert_eq!(
            root.contains(&".globofs".to_string()),
            real_shown,
            "{extra:?}: {root:?}"
        );
        assert_eq!(
            fs::read(m.path(".globofs/mine.txt")).ok(),
            real_shown.then(|| b"mine".to_vec()),
            "{extra:?}"
        );
        let name = if extra.contains(".past") {
            ".past"
        } else {
            ".globofs"
        };
        assert_eq!(
            m.path(&format!("{name}/at")).is_dir(),
            view,
            "{extra:?}: the view at {name}"
        );
    }
}

#[test]
fn a_peer_mount_shows_the_same_past_after_sync_and_keeps_the_view_to_itself() {
    const B: &str = "b0b0b0b0-0000-4000-8000-00000000000b";
    let b = peer::PeerNode::new(B);
    let a = Mounted::with(
        "4KiB",
        &format!(
            "peers:\n  - id: {B}\n    path: {}\nsync:\n  interval: 1s\n  timeout: 2s\n",
            b.store.display()
        ),
    );
    let a_id = peer::node_id(&a.spec);
    let a_store = a.volume.join(&a_id);
    b.wire(Some((&a_id, &a_store)));
    // B makes the history; A's mount applies it by itself.
    let b_store = Store::open_spec(&Spec::load(&b.spec).unwrap()).unwrap();
    let steps = history(&b_store, 31);
    b.run(&["sync"]);
    let (last, last_tree) = steps.last().unwrap().clone();
    let at_last = a.path(&format!(".globofs/at/{}", rfc3339(last, 0)));
    peer::eventually("A to hold B's history", || {
        let a_store = store_of(&a);
        a_store.walk(&vp("/")).map(|w| w.len()).unwrap_or(0)
            == b_store.walk(&vp("/")).unwrap().len()
            && mount_tree(&at_last) == last_tree
    });
    // `at/` lists A's last sync passes with B too.
    let times = a_store.join("state/sync").join(B);
    peer::eventually("at/ to list A's last pass with B", || {
        let Ok(text) = fs::read_to_string(&times) else {
            return false;
        };
        let listed: Vec<String> = fs::read_dir(a.path(".globofs/at"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        text.lines()
            .filter_map(|line| line.strip_prefix("last-apply "))
            .filter_map(|secs| secs.parse::<u64>().ok())
            .any(|secs| listed.contains(&rfc3339(secs, 0)))
    });
    // Every checked moment, read on A (blocks A lacks are pulled from B).
    for (time, tree) in steps.iter().step_by(9) {
        let name = rfc3339(*time, 0);
        assert_eq!(
            &mount_tree(&a.path(&format!(".globofs/at/{name}"))),
            tree,
            "on A at {name}"
        );
    }
    // Attempts to write in the view change nothing on either node.
    assert_eq!(errno(fs::write(at_last.join("new"), b"x")), libc::EROFS);
    a.globofs(&["sync"]);
    b.run(&["sync"]);
    for store in [
        store_of(&a),
        Store::open_spec(&Spec::load(&b.spec).unwrap()).unwrap(),
    ] {
        assert!(store.version_ids(&vp("/.globofs")).unwrap().is_empty());
        assert!(store.version_ids(&vp("/new")).unwrap().is_empty());
    }
}
