//! A real GloboFS mount for tests: a volume made with `globofs init` +
//! `reconcile`, `globofs mount` running as a child process, and an unmount on Drop
//! (SIGTERM, then `fusermount3 -uz` if it is still there).
//!
//! Include with `#[path = "common/mount.rs"] mod mount;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_globofs");

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(want.as_ref()))
}

/// A mounted volume.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub spec: PathBuf,
    pub mnt: PathBuf,
    pub volume: PathBuf,
    child: Option<Child>,
}

/// Writes a spec for a node in `dir` (block size `block_size`, extra YAML appended).
pub fn write_spec(dir: &Path, node: &str, block_size: &str, extra: &str) -> PathBuf {
    let spec = dir.join("spec.yaml");
    let text = format!(
        "volume: {}\nnode:\n  id: {node}\nblock_size: {block_size}\nmount:\n  path: {}\n{extra}",
        dir.join("vol").display(),
        dir.join("mnt").display()
    );
    std::fs::write(&spec, text).expect("write spec");
    spec
}

impl Mounted {
    /// A fresh node with a 4 KiB block size, mounted.
    pub fn new() -> Mounted {
        Mounted::with("4KiB", "")
    }

    pub fn with(block_size: &str, extra: &str) -> Mounted {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = uuid_for(dir.path());
        let spec = write_spec(dir.path(), &node, block_size, extra);
        let mut mounted = Mounted {
            mnt: dir.path().join("mnt"),
            volume: dir.path().join("vol"),
            spec,
            dir,
            child: None,
        };
        mounted.start();
        mounted
    }

    /// Starts `globofs mount` and waits until the mount is there.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mount.log")).expect("log file");
        let child = Command::new(BIN)
            .arg("--spec")
            .arg(&self.spec)
            .arg("mount")
            .env_remove("GLOBOFS_SPEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start globofs mount");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // A dead mount left behind is in the table too: wait for one that answers.
        while !(is_mounted(&self.mnt) && std::fs::read_dir(&self.mnt).is_ok()) {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("globofs mount exited early ({status}): {}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mount.log")).unwrap_or_default()
    }

    /// A path inside the mount.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.mnt.join(relative)
    }

    /// The mount's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Unmounts with SIGTERM and waits; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the mount process with SIGKILL (leaving a dead mount behind).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `globofs --spec SPEC ARGS...` for this node.
    pub fn globofs(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("--spec")
            .arg(&self.spec)
            .args(args)
            .env_remove("GLOBOFS_SPEC")
            .output()
            .expect("run globofs")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mnt)
                .status();
        }
    }
}

/// A node id unique to a test directory.
pub fn uuid_for(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    let a = hasher.finish();
    "x".hash(&mut hasher);
    let b = hasher.finish();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
