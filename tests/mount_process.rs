//! The mount process: mounts, serves, unmounts cleanly on SIGTERM, recovers a dead
//! mount left by SIGKILL, and shows changes made by other processes of the node.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::time::{Duration, Instant};

use mount::{Mounted, is_mounted};

#[test]
fn sigterm_unmounts_cleanly() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"x").unwrap();
    assert_eq!(m.stop(), Some(0), "log: {}", m.log());
    assert!(!is_mounted(&m.mnt));
}

#[test]
fn an_unmount_from_outside_ends_the_mount_process() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"x").unwrap();
    // The kernel holds the mount until the daemon has answered the file's
    // RELEASE, which it sends in the background: right after a close, the
    // unmount may be busy for a moment.
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
        let why = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            why.contains("busy") && Instant::now() < deadline,
            "fusermount3 -u failed: {why}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The daemon notices, stops its threads and exits cleanly; before, it
    // waited for a signal forever.
    assert_eq!(m.wait_exit(), Some(0), "log: {}", m.log());
    assert!(
        m.log().contains("unmounted from outside"),
        "log: {}",
        m.log()
    );
    assert!(!is_mounted(&m.mnt));
}

#[test]
fn sigterm_with_files_open_serves_them_until_they_are_closed() {
    use std::io::Write;
    let mut m = Mounted::new();
    std::fs::write(m.path("old"), b"committed\n").unwrap();
    let mut new = std::fs::File::create(m.path("new")).unwrap();
    new.write_all(b"acknowledged\n").unwrap();
    let mut old = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("old"))
        .unwrap();
    old.write_all(b"appended\n").unwrap();
    m.terminate();
    // The mount leaves the file tree at once (nothing new can be opened)...
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_mounted(&m.mnt) {
        assert!(Instant::now() < deadline, "still mounted: {}", m.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...but the files still open keep working, and closing them commits.
    new.write_all(b"more\n").unwrap();
    new.sync_all().unwrap();
    drop(new);
    drop(old);
    assert_eq!(m.wait_exit(), Some(0), "log: {}", m.log());
    assert_eq!(mount::store_get(&m, "/new"), b"acknowledged\nmore\n");
    assert_eq!(mount::store_get(&m, "/old"), b"committed\nappended\n");
}

#[test]
fn sigterm_commits_what_is_still_open_when_the_grace_ends() {
    use std::io::Write;
    let mut m = Mounted::new();
    m.stop();
    m.start_with(&["--stop-grace", "1"]);
    let mut kept = std::fs::File::create(m.path("kept")).unwrap();
    kept.write_all(b"written, never closed\n").unwrap();
    m.terminate();
    assert_eq!(m.wait_exit(), Some(0), "log: {}", m.log());
    assert!(
        m.log().contains("leaving with files still open"),
        "{}",
        m.log()
    );
    assert!(!is_mounted(&m.mnt));
    assert_eq!(mount::store_get(&m, "/kept"), b"written, never closed\n");
    drop(kept);
}

#[test]
fn a_mount_killed_with_sigkill_is_recovered_by_the_next_mount() {
    let mut m = Mounted::new();
    std::fs::write(m.path("kept"), b"before the kill").unwrap();
    m.kill();
    // The dead mount stays in the mount table (answering ENOTCONN once the
    // kernel's cached attributes expire) until someone detaches it.
    assert!(is_mounted(&m.mnt));
    std::thread::sleep(Duration::from_millis(1100));
    let err = std::fs::read_dir(&m.mnt).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
    m.start();
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), b"before the kill");
}

#[test]
fn changes_by_other_processes_appear_without_remounting() {
    let m = Mounted::new();
    // Make the kernel cache the directory's entry list and the file's attributes.
    std::fs::write(m.path("f"), b"one").unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"one");
    // Read twice, so the second open keeps the page cache; the replacement has
    // the same size, so only the version check can tell the cache is stale.
    std::fs::write(m.path("g"), b"uno").unwrap();
    assert_eq!(std::fs::read(m.path("g")).unwrap(), b"uno");
    assert_eq!(std::fs::read(m.path("g")).unwrap(), b"uno");
    let src = m.dir.path().join("src");
    std::fs::write(&src, b"two, longer").unwrap();
    let out = m.globofs(&["put", src.to_str().unwrap(), "/f"]);
    assert!(out.status.success(), "{out:?}");
    let out = m.globofs(&["put", src.to_str().unwrap(), "/new"]);
    assert!(out.status.success(), "{out:?}");
    let same_size = m.dir.path().join("same-size");
    std::fs::write(&same_size, b"dos").unwrap();
    let out = m.globofs(&["put", same_size.to_str().unwrap(), "/g"]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = std::fs::read(m.path("f")).unwrap_or_default();
        let new = std::fs::read(m.path("new")).unwrap_or_default();
        let g = std::fs::read(m.path("g")).unwrap_or_default();
        if f == b"two, longer" && new == b"two, longer" && g == b"dos" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mount still shows {:?}",
            String::from_utf8_lossy(&f)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sshfs_fixture_mounts_a_remote_directory() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    std::fs::write(remote.join("hello"), b"over ssh").unwrap();
    let mount = server.mount(&remote, &dir.path().join("local"));
    assert_eq!(
        std::fs::read(mount.local.join("hello")).unwrap(),
        b"over ssh"
    );
}
