//! How the mount process stops, as its log tells it: a SIGTERM stop (idle,
//! or with a file still open) and an unmount from outside leave no
//! "Unmount failed" warning. The session used to unmount a second time when
//! it was dropped, after the mount was already gone (EINVAL), and could have
//! unmounted whatever was mounted at the same place meanwhile.

#[path = "common/mount.rs"]
mod mount;

use std::io::Write;
use std::time::{Duration, Instant};

use mount::{Mounted, is_mounted};

/// Lines of the log about a failed unmount.
fn unmount_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.contains("unmount failed") || line.contains("failed to umount")
        })
        .collect()
}

#[test]
fn a_sigterm_stop_logs_no_unmount_warning() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"x").expect("write");
    assert_eq!(m.stop(), Some(0), "log: {}", m.log());
    assert!(!is_mounted(&m.mnt));
    let log = m.log();
    assert!(log.contains("unmounting"), "the stop is logged: {log}");
    assert!(
        unmount_warnings(&log).is_empty(),
        "warnings after a SIGTERM stop: {:?}",
        unmount_warnings(&log)
    );
}

#[test]
fn a_sigterm_stop_with_a_file_open_logs_no_unmount_warning() {
    let mut m = Mounted::new();
    let mut open = std::fs::File::create(m.path("open")).expect("create");
    open.write_all(b"still open at the stop\n").expect("write");
    m.terminate();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_mounted(&m.mnt) {
        assert!(Instant::now() < deadline, "still mounted: {}", m.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(open);
    assert_eq!(m.wait_exit(), Some(0), "log: {}", m.log());
    let log = m.log();
    assert!(log.contains("detached the mount"), "the busy stop: {log}");
    assert!(
        unmount_warnings(&log).is_empty(),
        "warnings after a busy SIGTERM stop: {:?}",
        unmount_warnings(&log)
    );
    assert_eq!(mount::store_get(&m, "/open"), b"still open at the stop\n");
}

#[test]
fn an_unmount_from_outside_logs_no_unmount_warning() {
    let mut m = Mounted::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&m.mnt)
            .output()
            .expect("run fusermount3");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fusermount3 -u: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(m.wait_exit(), Some(0), "log: {}", m.log());
    let log = m.log();
    assert!(log.contains("unmounted from outside"), "{log}");
    assert!(
        unmount_warnings(&log).is_empty(),
        "warnings after an unmount from outside: {:?}",
        unmount_warnings(&log)
    );
}
