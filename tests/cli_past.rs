//! The past from the command line, running the real binary: `ls --at`,
//! `get --at`, `diff` and `restore --at [-r] [--exact]` over a history made
//! through the store API on days of fake time; the same past on a second
//! node after sync, and a restore that syncs.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::process::Command;
use std::time::Duration;

use globofs::ids::set_test_clock;
use nodes::{Cluster, Node, data, stdout, vp};

/// 2026-11-28T00:00:00Z.
const DAY0: u64 = 1_795_824_000;
const DAY: u64 = 86_400;
/// Noon of days 0, 1 and 2.
const T0: &str = "2026-11-28T12:00:00Z";
const T1: &str = "2026-11-29T12:00:00Z";
const T2: &str = "2026-11-30T12:00:00Z";

fn at<T>(secs: u64, edit: impl FnOnce() -> T) -> T {
    set_test_clock(Some(Duration::from_secs(secs)));
    let out = edit();
    set_test_clock(None);
    out
}

/// Day 0: /docs/a.txt, /docs/sub/b.txt (several blocks), /top.txt. Day 1:
/// /top.txt edited, /docs/c.txt added. Day 2: /docs deleted, /late.txt added.
fn history(node: &Node) -> Vec<u8> {
    let big = data(3 * nodes::BS + 17, 9);
    at(DAY0, || {
        node.put("/docs/a.txt", b"alpha");
        node.put("/docs/sub/b.txt", &big);
        node.put("/top.txt", b"top v1");
    });
    at(DAY0 + DAY, || {
        node.put("/top.txt", b"top v2");
        node.put("/docs/c.txt", b"gamma");
    });
    at(DAY0 + 2 * DAY, || {
        node.store().remove_tree(&vp("/docs")).unwrap();
        node.put("/late.txt", b"late");
    });
    big
}

/// Runs the binary for `node` with extra environment; returns the output.
fn run_env(node: &Node, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_globofs"));
    command
        .arg("--spec")
        .arg(&node.spec_path)
        .args(args)
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run globofs");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{args:?} panicked"
    );
    output
}

/// The raw stdout of a command that must succeed.
fn raw(node: &Node, args: &[&str]) -> Vec<u8> {
    let output = node.cli(args);
    assert!(output.status.success(), "{args:?}: {output:?}");
    output.stdout
}

/// A failing command: its exit code and its stderr.
fn fails(node: &Node, args: &[&str]) -> (Option<i32>, String) {
    let output = node.cli(args);
    assert!(
        !output.status.success(),
        "{args:?} succeeded: {}",
        stdout(&output)
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every block file of a node's store.
fn block_count(node: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node.store_dir().join("hashes")];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

const TREE0: &str = "/docs\n/docs/a.txt\n/docs/sub\n/docs/sub/b.txt\n/top.txt\n";

#[test]
fn ls_and_get_at_show_the_tree_of_then() {
    let cluster = Cluster::mesh(1);
    let a = cluster.node(0);
    let big = history(a);
    assert_eq!(a.ok(&["ls", "-R", "--at", T0, "/"]), TREE0);
    assert_eq!(
        a.ok(&["ls", "-R", "--at", T1, "/"]),
        "/docs\n/docs/a.txt\n/docs/c.txt\n/docs/sub\n/docs/sub/b.txt\n/top.txt\n"
    );
    assert_eq!(
        a.ok(&["ls", "-R", "--at", T2, "/"]),
        "/late.txt\n/top.txt\n"
    );
    assert_eq!(a.ok(&["ls", "-R", "/"]), "/late.txt\n/top.txt\n");
    assert_eq!(a.ok(&["ls", "--at", T1, "/docs"]), "a.txt\nc.txt\nsub\n");
    let long = a.ok(&["ls", "-l", "--at", T0, "/top.txt"]);
    assert!(
        long.contains(&format!("{}.", DAY0)),
        "the day-0 version: {long}"
    );
    // Before anything was written: an empty root.
    assert_eq!(a.ok(&["ls", "--at", "2026-11-27T00:00:00Z", "/"]), "");
    // get --at: a file to stdout, a whole tree to a directory.
    assert_eq!(a.ok(&["get", "--at", T0, "/top.txt", "-"]), "top v1");
    assert_eq!(a.ok(&["get", "--at", T1, "/top.txt", "-"]), "top v2");
    let out = cluster.dir.path().join("out");
    a.ok(&["get", "--at", T1, "/docs", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(out.join("c.txt")).unwrap(), b"gamma");
    assert_eq!(fs::read(out.join("sub/b.txt")).unwrap(), big);
    // A version id is a moment too: the first version of /top.txt.
    let first = a.store().versions(&vp("/top.txt")).unwrap()[0]
        .id
        .to_string();
    assert_eq!(a.ok(&["get", "--at", &first, "/top.txt", "-"]), "top v1");
    // A local date-time is read in the machine's zone (here TZ says it):
    // 18:59 at UTC-5 is just before day 1, 19:00 is day 1's first second.
    for (local, bytes) in [
        ("2026-11-28 18:59", "top v1"),
        ("2026-11-28 19:00:00", "top v2"),
    ] {
        let output = run_env(
            a,
            &[("TZ", "EST5")],
            &["get", "--at", local, "/top.txt", "-"],
        );
        assert!(output.status.success(), "{local}: {output:?}");
        assert_eq!(stdout(&output), bytes, "{local}");
    }
    // What was not there then is refused, naming the path and the time.
    let (code, err) = fails(a, &["get", "--at", T0, "/docs/c.txt", "-"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/docs/c.txt") && err.contains(T0), "{err}");
    let (code, err) = fails(a, &["ls", "--at", "yesterday", "/"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("\"yesterday\"") && err.contains("RFC 3339"),
        "{err}"
    );
}

#[test]
fn diff_lists_added_removed_and_changed_paths_sorted() {
    let cluster = Cluster::mesh(1);
    let a = cluster.node(0);
    history(a);
    assert_eq!(
        a.ok(&["diff", T0, T2]),
        "D\t/docs\nD\t/docs/a.txt\nD\t/docs/sub\nD\t/docs/sub/b.txt\nA\t/late.txt\nM\t/top.txt\n"
    );
    assert_eq!(a.ok(&["diff", T0, T1, "/docs"]), "A\t/docs/c.txt\n");
    assert_eq!(a.ok(&["diff", T2, "now"]), "");
    // The other way round, added and removed swap.
    assert_eq!(a.ok(&["diff", T1, T0]), "D\t/docs/c.txt\nM\t/top.txt\n");
    let json: serde_json::Value = serde_json::from_str(&a.ok(&["diff", "--json", T0, T1])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            { "path": "/docs/c.txt", "change": "added" },
            { "path": "/top.txt", "change": "changed" },
        ])
    );
    let (code, err) = fails(a, &["diff", T0, "2026-02-30T00:00:00Z"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("2026-02-30T00:00:00Z"), "{err}");
}

#[test]
fn restore_brings_back_a_deleted_directory_and_exact_removes_what_came_since() {
    let cluster = Cluster::mesh(1);
    let a = cluster.node(0);
    let big = history(a);
    let blocks = block_count(a);
    // A directory needs -r; -r needs --at.
    let (code, err) = fails(a, &["restore", "--at", T1, "/docs"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/docs") && err.contains("-r"), "{err}");
    let (code, _) = fails(a, &["restore", "-r", "--version", "1.000000000", "/docs"]);
    assert_eq!(code, Some(2), "usage");
    let said = a.ok(&["restore", "--at", T1, "-r", "/docs"]);
    assert!(said.contains("restored /docs/c.txt\n"), "{said}");
    assert!(said.contains("/docs: 5 restored, 0 removed"), "{said}");
    assert_eq!(
        block_count(a),
        blocks,
        "the old blocks are reused, none copied"
    );
    assert!(
        raw(a, &["get", "/docs/sub/b.txt", "-"]) == big,
        "b.txt's bytes"
    );
    assert_eq!(a.ok(&["get", "/docs/c.txt", "-"]), "gamma");
    // Made since, and kept: /late.txt; /top.txt is not below /docs.
    assert_eq!(
        a.ok(&["ls", "-R", "/"]),
        "/docs\n/docs/a.txt\n/docs/c.txt\n/docs/sub\n/docs/sub/b.txt\n/late.txt\n/top.txt\n"
    );
    // The restore is a new version on top of the tombstone, so it syncs.
    let log = a.ok(&["log", "/docs/a.txt"]);
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(log.lines().last().unwrap().starts_with('*'), "{log}");
    // Exact, at the root, at day 0: /docs/c.txt and /late.txt go.
    let said = a.ok(&["restore", "--at", T0, "-r", "--exact", "/"]);
    assert!(said.contains("removed /docs/c.txt\n"), "{said}");
    assert!(said.contains("removed /late.txt\n"), "{said}");
    assert_eq!(a.ok(&["ls", "-R", "/"]), TREE0);
    assert_eq!(a.ok(&["get", "/top.txt", "-"]), "top v1");
    assert_eq!(a.ok(&["diff", T0, "now"]), "", "now is day 0 again");
    // One file, not recursive: the version of then, with its mtime.
    a.ok(&["restore", "--at", T2, "/top.txt"]);
    assert_eq!(a.ok(&["get", "/top.txt", "-"]), "top v2");
    let then = a.ok(&["ls", "-l", "--at", T2, "/top.txt"]);
    let now = a.ok(&["ls", "-l", "/top.txt"]);
    let mtime = |line: &str| line.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(mtime(&then), mtime(&now), "{then} / {now}");
}

#[test]
fn a_second_node_shows_the_same_past_after_sync_and_gets_the_restore() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let big = history(a);
    a.sync();
    b.sync();
    for t in [T0, T1, T2] {
        assert_eq!(
            b.ok(&["ls", "-R", "-l", "--at", t, "/"]),
            a.ok(&["ls", "-R", "-l", "--at", t, "/"]),
            "at {t}"
        );
    }
    assert_eq!(b.ok(&["ls", "-R", "--at", T0, "/"]), TREE0);
    assert_eq!(b.ok(&["diff", T0, T2]), a.ok(&["diff", T0, T2]));
    // B holds no block of A's: reading the past pulls them like any read.
    let old = a
        .store()
        .live_at(&vp("/docs/sub/b.txt"), &T1.parse().unwrap())
        .unwrap()
        .unwrap();
    assert!(b.store().blocks().locate(&old.hashes[0], None).is_none());
    assert!(
        raw(b, &["get", "--at", T1, "/docs/sub/b.txt", "-"]) == big,
        "b.txt's bytes on B"
    );
    // A restores; B gets the new versions by sync.
    a.ok(&["restore", "--at", T1, "-r", "/docs"]);
    a.sync();
    b.sync();
    assert_eq!(b.ok(&["ls", "-R", "/"]), a.ok(&["ls", "-R", "/"]));
    assert_eq!(b.ok(&["get", "/docs/c.txt", "-"]), "gamma");
    // The past before the restore is unchanged on both.
    assert_eq!(
        b.ok(&["ls", "-R", "--at", T2, "/"]),
        "/late.txt\n/top.txt\n"
    );
}
