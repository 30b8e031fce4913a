//! Several processes on one store: two writer processes (`globofs put` in loops)
//! and a `prune` + `gc` loop run at once. Afterwards every kept version reads back
//! byte-exact, every path's current version is its last write, and `verify` is clean.

#[path = "common/store.rs"]
mod store_common;

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use store_common::*;

/// Content number `s`: its size tells which one it is.
fn content_of(s: usize) -> Vec<u8> {
    data(3 * BS + 100 * s + 1, s as u64 + 1)
}

fn which(size: u64) -> usize {
    (size as usize - 3 * BS - 1) / 100
}

const CONTENTS: usize = 6;
const PUTS: usize = 30;

#[test]
fn two_writers_and_gc_at_once() {
    let vol = Arc::new(Vol::with("retention:\n  keep_last: 2\n", false));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2usize)
        .map(|w| {
            let vol = Arc::clone(&vol);
            std::thread::spawn(move || {
                let dir = vol.scratch(&format!("writer-{w}"));
                let mut last: HashMap<String, usize> = HashMap::new();
                for i in 0..PUTS {
                    // Contents repeat, so blocks that prune+gc just freed are
                    // wanted again: dedup must never trust a block gc is deleting.
                    let s = (i * 7 + w) % CONTENTS;
                    let local = dir.join(format!("f{i}"));
                    fs::write(&local, content_of(s)).unwrap();
                    let dest = if i % 5 == 4 {
                        "/shared/file".to_string()
                    } else {
                        format!("/w{w}/dir{}/file{}", i % 2, i % 3)
                    };
                    vol.ok(["put".as_ref(), local.as_os_str(), dest.as_ref()]);
                    if !dest.starts_with("/shared") {
                        last.insert(dest, s);
                    }
                }
                last
            })
        })
        .collect();
    let collector = {
        let vol = Arc::clone(&vol);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) || runs < 2 {
                vol.ok(["prune"]);
                vol.ok(["gc"]);
                runs += 1;
            }
            runs
        })
    };
    let mut expected = HashMap::new();
    for writer in writers {
        expected.extend(writer.join().expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let runs = collector.join().expect("gc loop");
    assert!(runs >= 2);

    let verify = vol.ok(["verify"]);
    assert!(
        verify.contains(" 0 corrupt") && verify.contains(" 0 missing"),
        "{verify}"
    );
    let store = vol.store();
    let mut checked = 0;
    for (path, version) in store.walk(&vp("/")).unwrap() {
        if version.kind != globofs::store::Kind::File {
            continue;
        }
        for old in store.versions(&path).unwrap() {
            if old.kind == globofs::store::Kind::File {
                assert_eq!(
                    read_all(&store, &old),
                    content_of(which(old.size)),
                    "{path} {}",
                    old.id
                );
                checked += 1;
            }
        }
        if let Some(s) = expected.get(&path.display()) {
            assert_eq!(content(&store, &path), content_of(*s), "{path}");
        }
    }
    assert_eq!(expected.len(), 2 * 2 * 3);
    assert!(checked > expected.len(), "{checked}");
    // The shared path was written by both: one chain, one head.
    assert_eq!(store.heads(&vp("/shared/file")).unwrap().len(), 1);
}
