//! Fixtures for the store tests (`tests/store_*.rs`): a volume made the way a user
//! makes one (`globofs init` + `globofs reconcile`) in a temp dir, the library
//! `Store` opened on it, and small helpers to look at the files on disk.
//!
//! Included with `#[path = "common/store.rs"] mod store_common;` so each test
//! binary compiles only what it uses.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use globofs::ids::BlockHash;
use globofs::layout::VPath;
use globofs::spec::Spec;
use globofs::store::{Attrs, Mtime, Store, Version};

/// The smallest block size a spec may choose; every store test uses it.
pub const BS: usize = 4096;

/// A peer id used by fixtures that need an outbound spool.
pub const PEER: &str = "11111111-2222-4333-8444-555555555555";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_globofs")
}

/// A volume in a temp dir, its spec file and the loaded spec.
pub struct Vol {
    pub tmp: tempfile::TempDir,
    pub spec_path: PathBuf,
    pub spec: Spec,
}

impl Vol {
    /// A fresh volume with 4 KiB blocks and no peers.
    pub fn new() -> Vol {
        Vol::with("", false)
    }

    /// A fresh volume; `extra` is YAML appended to the spec `init` wrote, and
    /// `peer` adds one (absent) peer so every version is queued in an outbound spool.
    pub fn with(extra: &str, peer: bool) -> Vol {
        let tmp = tempfile::tempdir().expect("temp dir");
        let volume = tmp.path().join("vol");
        let mut init = Command::new(bin());
        init.args(["init", "--block-size", "4KiB", "--volume"])
            .arg(&volume);
        if peer {
            init.arg("--peer")
                .arg(format!("{PEER}={}", tmp.path().join("peer").display()));
        }
        let out = init.output().expect("run globofs init");
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        let spec_path = tmp.path().join("spec.yaml");
        let mut spec_text = text(&out.stdout);
        spec_text.push_str(extra);
        fs::write(&spec_path, spec_text).expect("write spec");
        let out = Command::new(bin())
            .arg("--spec")
            .arg(&spec_path)
            .arg("reconcile")
            .output()
            .expect("run globofs reconcile");
        assert!(out.status.success(), "reconcile: {}", text(&out.stderr));
        let spec = Spec::load(&spec_path).expect("load spec");
        Vol {
            tmp,
            spec_path,
            spec,
        }
    }

    /// The library store, opened as the CLI opens it.
    pub fn store(&self) -> Store {
        Store::open_spec(&self.spec).expect("open store")
    }

    /// This node's store directory.
    pub fn dir(&self) -> PathBuf {
        self.spec.volume.join(self.spec.node.to_string())
    }

    /// A scratch directory for local files.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Runs the CLI with `--spec`.
    pub fn cli<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = Command::new(bin())
            .arg("--spec")
            .arg(&self.spec_path)
            .args(args)
            .output()
            .expect("run globofs");
        assert_no_panic(&out);
        out
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "globofs failed ({:?}): {}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A failing command must fail cleanly: an exit code that is not Rust's panic
/// code (101), and no panic message.
pub fn assert_no_panic(out: &Output) {
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "globofs panicked: {stderr}");
    assert!(
        out.status.code().is_some(),
        "globofs died of a signal: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "globofs panicked: {stderr}");
}

/// Deterministic pseudo-random bytes (xorshift), different for every seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A volume path from text.
pub fn vp(text: &str) -> VPath {
    VPath::parse(OsStr::new(text)).expect("volume path")
}

/// A volume path from raw name bytes.
pub fn vp_names(names: &[&[u8]]) -> VPath {
    let mut path = VPath::root();
    for name in names {
        path = path.join(name).expect("name");
    }
    path
}

/// Writes `bytes` at `path` (durable) and returns the new version.
pub fn put(store: &Store, path: &VPath, bytes: &[u8]) -> Version {
    store
        .write_file(path, &mut &bytes[..], Attrs::default(), true)
        .expect("write_file")
}

/// Writes with given mode and mtime.
pub fn put_attrs(store: &Store, path: &VPath, bytes: &[u8], mode: u32, mtime: Mtime) -> Version {
    store
        .write_file(path, &mut &bytes[..], Attrs { mode, mtime }, true)
        .expect("write_file")
}

/// The whole content of a file version.
pub fn read_all(store: &Store, version: &Version) -> Vec<u8> {
    let mut out = Vec::new();
    store.copy_to(version, &mut out).expect("copy_to");
    out
}

/// The current live content of `path`.
pub fn content(store: &Store, path: &VPath) -> Vec<u8> {
    let version = store
        .live(path)
        .expect("live")
        .unwrap_or_else(|| panic!("{path} does not exist"));
    read_all(store, &version)
}

/// Every file under a `hashes/` tree (blocks, raw or `.zst`), sorted.
pub fn block_files(hashes: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![hashes.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for item in listing {
            let item = item.expect("dir entry");
            if item.file_type().expect("file type").is_dir() {
                stack.push(item.path());
            } else {
                out.push(item.path());
            }
        }
    }
    out.sort();
    out
}

/// The store's block files.
pub fn store_blocks(vol: &Vol) -> Vec<PathBuf> {
    block_files(&vol.dir().join("hashes"))
}

/// Where a raw block of `hash` lives in the store.
pub fn block_path(vol: &Vol, hash: &BlockHash) -> PathBuf {
    vol.dir().join("hashes").join(hash.relative_path())
}

/// The disk directory of a volume path (`root/<escaped path>`).
pub fn path_dir(store: &Store, path: &VPath) -> PathBuf {
    store.path_dir(path)
}

/// Hard-link count of a file.
pub fn nlink(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .nlink()
}

/// Appends raw bytes to a file.
pub fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .write_all(bytes)
        .expect("append");
}

/// Flips one bit of the byte at `offset`.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).expect("read file to damage");
    bytes[offset] ^= 0x20;
    set_writable(path);
    fs::write(path, bytes).expect("write damaged file");
}

/// Makes a file writable (version files are written 0644; blocks may not be).
pub fn set_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o644));
}

/// A local path from raw bytes.
pub fn local(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// The lines of a `versions/log` file.
pub fn log_lines(store: &Store, path: &VPath) -> Vec<String> {
    let log = store.path_dir(path).join("versions").join("log");
    fs::read_to_string(&log)
        .unwrap_or_else(|err| panic!("{}: {err}", log.display()))
        .lines()
        .map(str::to_string)
        .collect()
}
