//! Specs found or made by the command line: `--volume-name NAME` reads
//! `NAME.yaml` from /etc/globofs (GLOBOFS_SPEC_DIR here), and
//! `globofs mount --volume DIR [--peer ID=PATH]... MOUNTPOINT` makes a spec in
//! `DIR/globofs.yaml` on its first run and keeps it (same node id, same files)
//! on the next, through a real FUSE mount.

#[path = "common/mount.rs"]
mod mount;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mount::{BIN, is_mounted};

const PEER: &str = "c0c0c0c0-0000-4000-8000-0000000000c1";
const OTHER: &str = "c0c0c0c0-0000-4000-8000-0000000000c2";

fn globofs(args: &[&str], spec_dir: Option<&Path>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("GLOBOFS_SPEC");
    if let Some(dir) = spec_dir {
        command.env("GLOBOFS_SPEC_DIR", dir);
    }
    command.output().expect("run globofs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A spec `globofs init` made, for volume `vol`.
fn init_spec(file: &Path, vol: &Path) {
    let out = globofs(&["init", "--volume", vol.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(file, &out.stdout).unwrap();
}

#[test]
fn volume_name_finds_the_spec_in_the_spec_directory() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("etc");
    std::fs::create_dir(&specs).unwrap();
    init_spec(&specs.join("photos.yaml"), &dir.path().join("photos"));
    init_spec(&specs.join("music.yaml"), &dir.path().join("music"));
    let src = dir.path().join("moon.txt");
    std::fs::write(&src, b"the moon").unwrap();

    let out = globofs(&["--volume-name", "photos", "reconcile"], Some(&specs));
    assert!(out.status.success(), "{}", text(&out));
    let out = globofs(
        &[
            "--volume-name",
            "photos",
            "put",
            src.to_str().unwrap(),
            "/moon.txt",
        ],
        Some(&specs),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = globofs(&["ls", "/", "--volume-name", "photos"], Some(&specs));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "moon.txt\n",
        "{}",
        text(&out)
    );
    assert!(dir.path().join("photos/self").is_symlink());
    assert!(!dir.path().join("music").exists(), "only the named volume");

    // GLOBOFS_SPEC from the environment gives way to --volume-name.
    let out = Command::new(BIN)
        .args(["--volume-name", "photos", "ls", "/"])
        .env("GLOBOFS_SPEC", specs.join("music.yaml"))
        .env("GLOBOFS_SPEC_DIR", &specs)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "moon.txt\n",
        "{}",
        text(&out)
    );

    // An unknown name lists the known ones; a name is no path; not both.
    let out = globofs(&["--volume-name", "films", "ls"], Some(&specs));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("volumes in") && text(&out).contains("music, photos"),
        "{}",
        text(&out)
    );
    let out = globofs(&["--volume-name", "../etc/photos", "ls"], Some(&specs));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let photos = specs.join("photos.yaml");
    let out = globofs(
        &[
            "--spec",
            photos.to_str().unwrap(),
            "--volume-name",
            "photos",
            "ls",
        ],
        Some(&specs),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `globofs mount ARGS...`, waited for until the mount answers.
fn start_mount(args: &[&str], mnt: &Path, log: &Path) -> Child {
    let mut child = Command::new(BIN)
        .arg("mount")
        .args(args)
        .env_remove("GLOBOFS_SPEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(is_mounted(mnt) && std::fs::read_dir(mnt).is_ok()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "mount exited early ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop_mount(mut child: Child, mnt: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!is_mounted(mnt));
}

fn node_of(spec: &Path) -> String {
    std::fs::read_to_string(spec)
        .unwrap()
        .lines()
        .skip_while(|line| !line.starts_with("node:"))
        .find_map(|line| line.trim().strip_prefix("id: ").map(str::to_string))
        .unwrap()
}

#[test]
fn mount_volume_makes_a_spec_once_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let mnt = dir.path().join("mnt");
    let log = dir.path().join("mount.log");
    let kept = vol.join("globofs.yaml");
    let (vol_arg, mnt_arg) = (vol.to_str().unwrap(), mnt.to_str().unwrap());
    let peer_path = dir.path().join("peer-store");
    let peer_arg = format!("{PEER}={}", peer_path.display());

    // First run: no spec anywhere; one is made, with the peer.
    let child = start_mount(
        &["--volume", vol_arg, "--peer", &peer_arg, mnt_arg],
        &mnt,
        &log,
    );
    std::fs::write(mnt.join("kept.txt"), b"still here next time").unwrap();
    stop_mount(child, &mnt);
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("made "),
        "says it made the spec"
    );
    let node = node_of(&kept);
    let spec_text = std::fs::read_to_string(&kept).unwrap();
    assert!(spec_text.contains(PEER), "{spec_text}");
    let out = globofs(&["validate", kept.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out));

    // Second run, no --peer: the same spec, node and files.
    let child = start_mount(&["--volume", vol_arg, mnt_arg], &mnt, &log);
    assert_eq!(
        std::fs::read(mnt.join("kept.txt")).unwrap(),
        b"still here next time"
    );
    stop_mount(child, &mnt);
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        spec_text,
        "kept as it was"
    );

    // Other peers given: the managed spec follows them, node id unchanged.
    let other_arg = format!("{OTHER}={}", peer_path.display());
    let child = start_mount(
        &["--volume", vol_arg, "--peer", &other_arg, mnt_arg],
        &mnt,
        &log,
    );
    stop_mount(child, &mnt);
    let now = std::fs::read_to_string(&kept).unwrap();
    assert!(now.contains(OTHER) && !now.contains(PEER), "{now}");
    assert_eq!(node_of(&kept), node);

    // A spec whose "Made by" line the user removed is theirs: refused, untouched.
    let edited: String = now
        .lines()
        .filter(|line| !line.starts_with("# Made by"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(edited, now);
    std::fs::write(&kept, &edited).unwrap();
    let out = globofs(
        &["mount", "--volume", vol_arg, "--peer", &peer_arg, mnt_arg],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("edit its peers there"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), edited);

    // The spec lost: a new one takes the node id of the store in the volume.
    std::fs::remove_file(&kept).unwrap();
    let child = start_mount(&["--volume", vol_arg, mnt_arg], &mnt, &log);
    assert!(mnt.join("kept.txt").exists());
    stop_mount(child, &mnt);
    assert_eq!(node_of(&kept), node);

    // --peer needs --volume; --volume and --spec do not go together.
    let out = globofs(&["mount", "--peer", &peer_arg, mnt_arg], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = globofs(
        &[
            "--spec",
            kept.to_str().unwrap(),
            "mount",
            "--volume",
            vol_arg,
            mnt_arg,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
