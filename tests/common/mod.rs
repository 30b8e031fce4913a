//! Helpers shared by the integration tests: running the `globofs` binary and
//! checking that it never panics or dies of a signal.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `globofs` binary cargo built for these tests.
pub fn globofs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_globofs"))
}

/// What one run of `globofs` printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails the test unless the run exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A `globofs` command with a clean environment (no `GLOBOFS_SPEC`, no `RUST_LOG`).
pub fn globofs<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(globofs_bin());
    command
        .args(args)
        .env_remove("GLOBOFS_SPEC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to the end; fails the test if it panicked or died of a signal.
#[track_caller]
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run globofs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let Some(code) = output.status.code() else {
        panic!(
            "globofs died of signal {:?}: {command:?}\n--- stderr:\n{stderr}",
            output.status.signal()
        );
    };
    assert!(
        code != 101 && !stderr.contains("panicked"),
        "globofs panicked: {command:?}\n--- stderr:\n{stderr}"
    );
    Output {
        code,
        stdout,
        stderr,
    }
}

/// Runs `globofs ARGS...`.
#[track_caller]
pub fn globofs_run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut globofs(args))
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// The source tree's root (where `Cargo.toml` is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
