//! A mount killed with SIGKILL while one of its threads waits in the kernel
//! for a directory's lock (telling the kernel to drop a name another process
//! changed, while a program holding that lock waits for the mount) must not
//! leave the programs using the mount hanging: its FUSE connection guard
//! aborts the connection, the program gets an error, the process ends and
//! the next mount comes up.

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mount::Mounted;

/// Aborts FUSE connection `connection` (the test's own clean-up when the
/// mount's guard did not).
fn abort_by_hand(connection: u32) {
    let dir = Path::new("/sys/fs/fuse/connections");
    if !dir.join(connection.to_string()).exists() {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "none"])
            .arg(dir)
            .status();
    }
    let _ = std::fs::write(dir.join(connection.to_string()).join("abort"), b"1");
}

/// The pid of the mount's worker (the supervisor's child).
fn worker_of(supervisor: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[test]
fn a_mount_killed_while_its_thread_waits_for_a_directory_lock_leaves_no_program_hanging() {
    let mut m = Mounted::new();
    m.stop();
    m.start_env(&[("GLOBOFS_STALL_AT", "fuse:create")]);
    std::fs::create_dir(m.path("d")).unwrap();
    // The kernel caches the (missing) name another process is about to make.
    assert!(std::fs::symlink_metadata(m.path("d/y")).is_err());
    let connection = nix::sys::stat::minor(std::fs::metadata(&m.mnt).unwrap().dev()) as u32;
    let worker = worker_of(m.pid().unwrap()).expect("the mount's worker process");
    // A program creating d/x: the mount stalls on it, the program holds d's lock.
    let mut creator = Command::new("touch")
        .arg(m.path("d/x"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Another process of the node makes d/y: the mount's journal reader tells
    // the kernel to drop the name, and waits for d's lock.
    let local = m.dir.path().join("y");
    std::fs::write(&local, b"from another process").unwrap();
    let put = m.globofs(&["put", local.to_str().unwrap(), "/d/y"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        creator.try_wait().unwrap().is_none(),
        "the create was meant to be stalled"
    );
    m.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        if creator.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !ended {
        abort_by_hand(connection);
        let _ = creator.wait();
    }
    assert!(
        ended,
        "a program using the mount still hung 15 s after the mount was killed: {}",
        m.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{worker}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the killed mount process is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next mount detaches the dead one and serves what was made.
    m.start();
    assert_eq!(
        std::fs::read(m.path("d/y")).unwrap(),
        b"from another process"
    );
}
