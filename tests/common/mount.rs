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

include!("mountinfo.rs");

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

    /// A second mount of this node's volume (another `globofs mount` process,
    /// at a mount point of its own), mounted.
    pub fn second_mount(&self) -> Mounted {
        Mounted::of_spec(&self.spec, &self.volume)
    }

    /// A mount of the node `spec` describes (its volume at `volume`), at a
    /// mount point of its own.
    pub fn of_spec(spec: &Path, volume: &Path) -> Mounted {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let mut mounted = Mounted {
            mnt: mnt.clone(),
            volume: volume.to_path_buf(),
            spec: spec.to_path_buf(),
            dir,
            child: None,
        };
        mounted.start_with(&[mnt.to_str().expect("UTF-8 temp path")]);
        mounted
    }

    /// Starts `globofs mount` and waits until the mount is there.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `globofs mount ARGS...` and waits until the mount is there.
    pub fn start_with(&mut self, args: &[&str]) {
        self.start_full(args, &[]);
    }

    /// Starts `globofs mount` with extra environment variables (crash points).
    #[allow(dead_code)]
    pub fn start_env(&mut self, env: &[(&str, &str)]) {
        self.start_full(&[], env);
    }

    fn start_full(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.path().join("mount.log")).expect("log file");
        let child = Command::new(BIN)
            .arg("--spec")
            .arg(&self.spec)
            .arg("mount")
            .args(args)
            .envs(env.iter().copied())
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

    /// Sends SIGTERM to the mount process without waiting for it.
    pub fn terminate(&self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Unmounts with SIGTERM and waits; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let child = self.child.as_ref()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        self.wait_exit()
    }

    /// Waits up to 20 s for the mount process to end on its own; returns its
    /// exit code (None when it had to be killed).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
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

// ----- helpers for the per-operation mount tests (tests/mount_*.rs) -----

/// The fixture's block size (`Mounted::new()` mounts with 4 KiB blocks).
pub const BLOCK: usize = 4096;

/// The errno of a failed call; fails the test if it succeeded.
#[track_caller]
pub fn errno<T: std::fmt::Debug>(result: std::io::Result<T>) -> i32 {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(err) => err
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {err}")),
    }
}

/// `Ok(ret)` for a libc call's non-negative return, else the errno.
pub fn cvt(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A NUL-terminated copy of a path for libc calls.
pub fn cpath(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// A small seeded PRNG (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The version lines of `globofs log PATH` (one per version).
pub fn log_lines(m: &Mounted, volume_path: &str) -> Vec<String> {
    let out = m.globofs(&["log", volume_path]);
    assert!(out.status.success(), "globofs log {volume_path}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A file's content as the store has it (`globofs get PATH -`).
pub fn store_get(m: &Mounted, volume_path: &str) -> Vec<u8> {
    let out = m.globofs(&["get", volume_path, "-"]);
    assert!(out.status.success(), "globofs get {volume_path}: {out:?}");
    out.stdout
}

/// The node's directory in the volume (`vol/<node>`).
pub fn node_dir(m: &Mounted) -> PathBuf {
    let spec = std::fs::read_to_string(&m.spec).expect("read spec");
    let node = spec
        .lines()
        .find_map(|line| line.trim().strip_prefix("id: "))
        .expect("node id in the spec")
        .trim()
        .to_owned();
    m.volume.join(node)
}

/// How many commits a top-level file `name` had: the lines of its
/// `versions/log` (a commit that replaced a version it coalesced away still
/// appended its id there).
#[allow(dead_code)]
pub fn commits(m: &Mounted, name: &str) -> usize {
    let log = node_dir(m)
        .join("root")
        .join(name)
        .join("versions")
        .join("log");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|err| panic!("{}: {err}", log.display()))
        .lines()
        .count()
}

/// The version files of a top-level file `name`, oldest first.
pub fn version_files(m: &Mounted, name: &str) -> Vec<PathBuf> {
    let dir = node_dir(m).join("root").join(name).join("versions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            path.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    files.sort();
    files
}

/// Every regular file below `dir` (recursively).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(kind) if kind.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// Names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A file of the source tree (where `Cargo.toml` is).
pub fn project_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
