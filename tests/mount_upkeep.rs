//! The mount's own upkeep: every `retention.every` it prunes by the spec's
//! retention rule and runs gc, so old versions and deleted files give their
//! space back without anyone running `globofs prune` and `gc`.

#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use mount::Mounted;

/// `globofs du --json` of the mounted node.
fn usage(m: &Mounted) -> serde_json::Value {
    let out = m.globofs(&["du", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn count(value: &serde_json::Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .or_else(|| value[key]["files"].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {value}"))
}

/// Waits (up to 30 s) until `done` holds for the store's usage.
fn wait_for(
    m: &Mounted,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let now = usage(m);
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: still {now}\nmount log:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_mount_prunes_and_collects_garbage_on_its_own() {
    let m = Mounted::with(
        "4KiB",
        // Every version kept until prune (no coalescing): a history to prune.
        "retention:\n  keep_last: 1\n  keep_within: 1s\n  every: 2s\n  coalesce_within: 0s\n",
    );
    let f = m.path("edited");
    for round in 0..4u8 {
        std::fs::write(&f, vec![round; 64 << 10]).unwrap();
    }
    std::fs::write(m.path("gone"), vec![9u8; 256 << 10]).unwrap();
    std::fs::remove_file(m.path("gone")).unwrap();
    let before = usage(&m);
    assert!(count(&before, "old_versions") >= 4, "{before}");
    // Every old version and the deleted file go, and their blocks with them.
    let after = wait_for(&m, "upkeep", |u| {
        count(u, "old_versions") == 0
            && count(u, "history_blocks") == 0
            && count(u, "garbage_blocks") == 0
    });
    assert_eq!(count(&after, "deleted_paths"), 0, "{after}");
    assert_eq!(count(&after, "live_blocks"), 1, "{after}");
    assert_eq!(std::fs::read(&f).unwrap(), vec![3u8; 64 << 10]);
    assert!(m.log().contains("retention upkeep"), "{}", m.log());
}

#[test]
fn keep_all_keeps_every_version_and_every_0s_never_prunes() {
    for extra in [
        "retention:\n  keep_all: true\n  every: 1s\n",
        "retention:\n  keep_last: 1\n  every: 0s\n  coalesce_within: 0s\n",
    ] {
        let m = Mounted::with("4KiB", extra);
        let f = m.path("edited");
        for round in 0..3u8 {
            std::fs::write(&f, vec![round; 8 << 10]).unwrap();
        }
        std::thread::sleep(Duration::from_secs(3));
        let now = usage(&m);
        assert_eq!(count(&now, "old_versions"), 2, "{extra}: {now}");
    }
}
