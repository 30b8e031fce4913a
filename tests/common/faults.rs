//! Fixtures for the standing fault suite (`tests/fault_*.rs`): seeded randomness
//! that a failure can replay (`GLOBOFS_FAULT_SEED`), a bounded number of rounds
//! that `GLOBOFS_FAULT_ITERATIONS` raises, the `globofs` binary run for a
//! cluster node with its exit code and both streams, the convergence check
//! between two nodes (sync passes, `get` of the whole tree on both, listings,
//! conflict copies, `status`), a `globofs mount` of a cluster node that can be
//! killed, and a small real filesystem (tmpfs with `size=`) for disk-full tests,
//! unmounted on drop.
//!
//! Include after `nodes.rs` and `mount.rs`:
//! `#[path = "common/nodes.rs"] mod nodes; #[path = "common/mount.rs"] mod mount;
//! #[path = "common/faults.rs"] mod faults;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mount::{Rng, is_mounted};
use crate::nodes::Node;

/// The seed of a fault test: `GLOBOFS_FAULT_SEED` when set (to replay a
/// failure), else one from the clock. Printed, so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("GLOBOFS_FAULT_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GLOBOFS_FAULT_SEED={text:?} is not a number")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970");
            now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!("{test}: seed {seed} (replay with GLOBOFS_FAULT_SEED={seed})");
    seed
}

/// A seeded generator for `test` (see [`seed`]), and the seed.
pub fn rng(test: &str) -> (Rng, u64) {
    let seed = seed(test);
    (Rng::new(seed), seed)
}

/// How many rounds a fault test runs: `GLOBOFS_FAULT_ITERATIONS` when set,
/// else `default` (kept small so the suite stays quick in `cargo test`).
pub fn iterations(default: usize) -> usize {
    match std::env::var("GLOBOFS_FAULT_ITERATIONS") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GLOBOFS_FAULT_ITERATIONS={text:?} is not a number")),
        Err(_) => default,
    }
}

/// A value in `low..=high`.
pub fn between(rng: &mut Rng, low: u64, high: u64) -> u64 {
    low + rng.below(high - low + 1)
}

/// What one `globofs` run printed and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    /// Standard output as text (lossy) and as the bytes printed.
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails the test unless the run succeeded.
    #[track_caller]
    pub fn expect_ok(&self) -> &Run {
        assert!(self.ok(), "{}", self.describe());
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "globofs {:?} exited {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// The `globofs` command for a node (its spec, a clean environment).
pub fn command(node: &Node, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_globofs"));
    command
        .arg("--spec")
        .arg(&node.spec_path)
        .args(args)
        .env_remove("GLOBOFS_SPEC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs `globofs ARGS` for a node to its end. Fails the test if it panicked or
/// died of a signal (nothing here kills it).
#[track_caller]
pub fn cli(node: &Node, args: &[&str]) -> Run {
    let output = command(node, args).output().expect("run globofs");
    let run = Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stdout_bytes: output.stdout.clone(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        run.code.is_some(),
        "globofs died of signal {:?}: {}",
        output.status.signal(),
        run.describe()
    );
    assert!(
        run.code != Some(101) && !run.stderr.contains("panicked"),
        "globofs panicked: {}",
        run.describe()
    );
    run
}

/// Starts `globofs ARGS` for a node in the background (stdout and stderr into
/// files under `logs`, named by `tag`).
pub fn spawn(node: &Node, args: &[&str], logs: &Path, tag: &str) -> Child {
    fs::create_dir_all(logs).expect("log dir");
    let out = fs::File::create(logs.join(format!("{tag}.out"))).expect("log file");
    let err = fs::File::create(logs.join(format!("{tag}.err"))).expect("log file");
    command(node, args)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start globofs")
}

/// Kills `child` with SIGKILL after `delay` unless it ended by then; reaps it.
/// Returns true when the kill landed (the process was still running).
pub fn kill_after(child: &mut Child, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1).min(deadline - Instant::now()));
    }
    let landed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let status = child.wait().expect("reap globofs");
    landed && status.signal() == Some(libc::SIGKILL)
}

/// One entry of a tree copied out with `globofs get`.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Dir => write!(f, "dir"),
            Entry::File(bytes) => write!(
                f,
                "file of {} bytes {:?}",
                bytes.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            ),
            Entry::Symlink(target) => write!(f, "symlink -> {}", target.display()),
        }
    }
}

/// Every entry below `dir` by its path relative to `dir` (`/a/b`).
pub fn local_tree(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        let listing = fs::read_dir(&here).unwrap_or_else(|err| panic!("{}: {err}", here.display()));
        for item in listing {
            let item = item.expect("dir entry");
            let path = item.path();
            let key = format!(
                "/{}",
                path.strip_prefix(dir).expect("below dir").to_string_lossy()
            );
            let kind = item.file_type().expect("file type");
            let entry = if kind.is_dir() {
                stack.push(path.clone());
                Entry::Dir
            } else if kind.is_symlink() {
                Entry::Symlink(fs::read_link(&path).expect("read link"))
            } else {
                Entry::File(
                    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display())),
                )
            };
            out.insert(key, entry);
        }
    }
    out
}

/// What a node holds, seen through the CLI: `ls -R /` and `get /` into a fresh
/// directory (`scratch/<tag>`), read back.
pub struct Snapshot {
    pub listing: Vec<String>,
    pub tree: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// The paths that look like conflict copies.
    pub fn conflict_copies(&self) -> Vec<String> {
        self.listing
            .iter()
            .filter(|line| line.contains(".sync-conflict-"))
            .cloned()
            .collect()
    }
}

/// `ls -R /` and `get /` of a node.
#[track_caller]
pub fn snapshot(node: &Node, scratch: &Path, tag: &str) -> Snapshot {
    let listing = cli(node, &["ls", "-R", "/"]);
    listing.expect_ok();
    let dest = scratch.join(tag);
    if dest.exists() {
        fs::remove_dir_all(&dest).expect("remove old copy");
    }
    let dest_text = dest.to_str().expect("UTF-8 scratch path").to_owned();
    cli(node, &["get", "/", &dest_text]).expect_ok();
    let tree = local_tree(&dest);
    fs::remove_dir_all(&dest).expect("remove copy");
    Snapshot {
        listing: listing
            .stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        tree,
    }
}

/// What differs between two trees, one line per path (empty when equal).
pub fn tree_diff(left: &BTreeMap<String, Entry>, right: &BTreeMap<String, Entry>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (l, r) = (left.get(key), right.get(key));
            (l != r).then(|| format!("{key}: A has {l:?}, B has {r:?}"))
        })
        .collect()
}

/// The paths whose entries differ between two trees.
pub fn differing_paths(
    left: &BTreeMap<String, Entry>,
    right: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter(|key| left.get(*key) != right.get(*key))
        .cloned()
        .collect()
}

/// Whether a node's current version of `path` is named in its own journal
/// (`journal/`), as a line for a diagnosis: a version in `root/` that the
/// journal never names is never pushed (issue 13's first finding).
pub fn journal_diagnosis(node: &Node, who: &str, path: &str) -> String {
    let log = cli(node, &["log", path]);
    let Some(id) = log
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("* "))
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return format!("{who} has no current version of {path}");
    };
    let needle = format!("{id} ");
    let journal = node.store_dir().join("journal");
    let named = segments(&journal).iter().any(|segment| {
        fs::read(segment)
            .map(|bytes| String::from_utf8_lossy(&bytes).contains(&needle))
            .unwrap_or(false)
    });
    format!(
        "{who}'s current version {id} of {path} is {}named in {who}'s journal{}",
        if named { "" } else { "NOT " },
        if named {
            ""
        } else {
            " (published in root/ but never journaled, so never pushed)"
        }
    )
}

/// What differs between two listings (empty when equal).
pub fn listing_diff(left: &[String], right: &[String]) -> Vec<String> {
    let l: std::collections::BTreeSet<&String> = left.iter().collect();
    let r: std::collections::BTreeSet<&String> = right.iter().collect();
    let mut out: Vec<String> = l
        .difference(&r)
        .map(|p| format!("only on A: {p}"))
        .collect();
    out.extend(r.difference(&l).map(|p| format!("only on B: {p}")));
    out
}

/// Everything the sync passes of a convergence check printed.
#[derive(Default, Debug)]
pub struct Passes {
    pub runs: Vec<(String, Run)>,
}

impl Passes {
    /// Every stderr line of every pass (warnings), prefixed with the node.
    pub fn stderr(&self) -> String {
        let mut out = String::new();
        for (who, run) in &self.runs {
            for line in run.stderr.lines() {
                out.push_str(&format!("[{who} {:?}] {line}\n", run.args));
            }
        }
        out
    }

    /// Every pass, briefly: who ran what and the exit code, with its totals line.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (who, run) in &self.runs {
            let total = run
                .stdout
                .lines()
                .filter(|l| {
                    l.starts_with("total:") || l.contains("error:") || l.contains("refused:")
                })
                .collect::<Vec<_>>()
                .join(" | ");
            out.push_str(&format!(
                "  {who} {:?} exit {:?}: {total}\n",
                run.args, run.code
            ));
        }
        out
    }

    pub fn push(&mut self, who: &str, run: Run) {
        self.runs.push((who.to_owned(), run));
    }
}

/// Runs `globofs sync` (with `extra` args) on each of `order` (`(name, node)`),
/// in order, recording what it printed. Does not fail on a non-zero exit: the
/// caller decides (a pass may report a damaged journal with exit 3).
pub fn sync_passes(passes: &mut Passes, order: &[(&str, &Node)], extra: &[&str]) {
    for (who, node) in order {
        let mut args = vec!["sync"];
        args.extend_from_slice(extra);
        passes.push(who, cli(node, &args));
    }
}

/// The JSON of `globofs status --json --no-blocks`.
#[track_caller]
pub fn status(node: &Node) -> serde_json::Value {
    let run = cli(node, &["status", "--json", "--no-blocks"]);
    run.expect_ok();
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("status --json is not JSON ({err}): {}", run.stdout))
}

/// What `status` of a node reports as still owed or stuck (empty when clean):
/// queued outbound, unapplied inbound, a stuck inbound journal, an away peer.
pub fn status_backlog(status: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for peer in status["peers"].as_array().into_iter().flatten() {
        let name = peer["peer"].as_str().unwrap_or("?");
        let queued = peer["queued_outbound"].as_u64().unwrap_or(0);
        let unapplied = peer["unapplied_inbound"].as_u64().unwrap_or(0);
        if queued > 0 {
            out.push(format!("peer {name}: {queued} queued outbound"));
        }
        if unapplied > 0 {
            out.push(format!("peer {name}: {unapplied} unapplied inbound"));
        }
        if !peer["inbound_stuck"].is_null() {
            out.push(format!(
                "peer {name}: inbound stuck {}",
                peer["inbound_stuck"]
            ));
        }
        if peer["reachable"] == serde_json::Value::Bool(false) {
            out.push(format!("peer {name}: unreachable {}", peer["away"]));
        }
    }
    out
}

/// The outcome of comparing two nodes after sync passes.
pub struct Check {
    pub a: Snapshot,
    pub b: Snapshot,
    pub problems: Vec<String>,
}

/// Compares A and B through the CLI: identical `ls -R`, identical contents of
/// `get /`, no conflict copies when `one_writer`, and (when `clean_status`)
/// nothing queued, unapplied or stuck in either node's `status`.
pub fn compare(a: &Node, b: &Node, scratch: &Path, one_writer: bool, clean_status: bool) -> Check {
    let sa = snapshot(a, scratch, "a");
    let sb = snapshot(b, scratch, "b");
    let mut problems = Vec::new();
    let listing = listing_diff(&sa.listing, &sb.listing);
    if !listing.is_empty() {
        problems.push(format!(
            "`ls -R /` differs:\n    {}",
            listing.join("\n    ")
        ));
    }
    let tree = tree_diff(&sa.tree, &sb.tree);
    if !tree.is_empty() {
        let shown: Vec<&String> = tree.iter().take(20).collect();
        problems.push(format!(
            "`get /` differs at {} path(s):\n    {}{}",
            tree.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    "),
            if tree.len() > 20 { "\n    ..." } else { "" }
        ));
        let diagnosis: Vec<String> = differing_paths(&sa.tree, &sb.tree)
            .iter()
            .take(5)
            .flat_map(|path| {
                [
                    journal_diagnosis(a, "A", path),
                    journal_diagnosis(b, "B", path),
                ]
            })
            .collect();
        problems.push(format!("diagnosis:\n    {}", diagnosis.join("\n    ")));
    }
    if one_writer {
        for (who, snap) in [("A", &sa), ("B", &sb)] {
            let copies = snap.conflict_copies();
            if !copies.is_empty() {
                problems.push(format!(
                    "conflict copies on {who} though only one node wrote: {copies:?}"
                ));
            }
        }
    }
    if clean_status {
        for (who, node) in [("A", a), ("B", b)] {
            let backlog = status_backlog(&status(node));
            if !backlog.is_empty() {
                problems.push(format!("status of {who} after the passes: {backlog:?}"));
            }
        }
    }
    Check {
        a: sa,
        b: sb,
        problems,
    }
}

/// `globofs mount` of a cluster node (its spec) at `mnt`, as a child process.
/// Drop stops it (SIGTERM, then SIGKILL) and detaches whatever mount is left.
pub struct NodeMount {
    child: Option<Child>,
    pub mnt: PathBuf,
    pub log: PathBuf,
}

impl NodeMount {
    /// Starts the mount and waits until it answers.
    pub fn start(node: &Node, mnt: &Path) -> NodeMount {
        if !is_mounted(mnt) {
            fs::create_dir_all(mnt).expect("mount point");
        }
        let log = mnt.with_extension("log");
        // Appends: a restarted mount's log follows the killed one's.
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("mount log");
        let before = mounted_lines(&fs::read_to_string(&log).unwrap_or_default());
        let child = command(node, &["mount"])
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start globofs mount");
        let mut mount = NodeMount {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !new_mount_answers(mnt, &mount.log_text(), before) {
            if let Some(Ok(Some(status))) = mount.child.as_mut().map(Child::try_wait) {
                panic!(
                    "globofs mount exited early ({status}): {}",
                    mount.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the mount did not appear: {}",
                mount.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL to the mount process (the kernel's mount stays behind, dead),
    /// then a wait until the dead mount answers ENOTCONN (see [`wait_dead`]).
    pub fn kill_and_wait_dead(&mut self) {
        self.kill();
        wait_dead(&self.mnt);
    }

    /// SIGKILL to the mount process (the kernel's mount stays behind, dead).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and a wait for a clean unmount; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
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
}

impl Drop for NodeMount {
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

/// The mount ids (first field of /proc/self/mountinfo) of mounts at `path`.
pub fn mount_ids(path: &Path) -> Vec<String> {
    let want = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.split(' ').nth(4) == Some(want.as_ref()))
        .filter_map(|line| line.split(' ').next().map(str::to_owned))
        .collect()
}

/// How many times a mount log says the mount is up (`globofs mount` logs
/// "mounted" at info level, from the mount session `globofs::mount`, once the
/// kernel has it).
pub fn mounted_lines(log: &str) -> usize {
    // Without colour codes (the log may have them between target and message).
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|line| line.contains("globofs::mount:") && line.contains(" mounted "))
        .count()
}

/// Whether a mount started after `before` "mounted" lines of `log` is up and
/// answers. (A dead mount can still answer a listing from the kernel's caches,
/// and a new mount may get the dead one's mount id, so neither "is mounted and
/// lists" nor the mount table tells a restarted mount from a dead one.)
pub fn new_mount_answers(mnt: &Path, log: &str, before: usize) -> bool {
    mounted_lines(log) > before
        && is_mounted(mnt)
        && fs::metadata(mnt).is_ok()
        && fs::read_dir(mnt).is_ok()
}

/// Starts a `Mounted` again after its process was killed, and waits until the
/// new mount (not the dead one) answers.
pub fn restart(m: &mut crate::mount::Mounted) {
    m.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    // `Mounted` starts each process with a fresh log.
    while !new_mount_answers(&m.mnt, &m.log(), 0) {
        assert!(
            Instant::now() < deadline,
            "the restarted mount did not appear: {}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 10 s) until a mount whose process was killed answers ENOTCONN:
/// until the kernel's cached attributes of its root expire, `stat` still
/// succeeds and a new `globofs mount` does not see the dead mount (see
/// `fault_kill::a_mount_restarted_at_once_after_sigkill_comes_up`).
pub fn wait_dead(mnt: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(mnt) && Instant::now() < deadline {
        if let Err(err) = fs::metadata(mnt) {
            if err.raw_os_error() == Some(libc::ENOTCONN) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small real filesystem (tmpfs with `size=`) mounted at a directory;
/// unmounted on drop (lazily if something still holds it).
pub struct SmallFs {
    pub dir: PathBuf,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (e.g. `4m`) at `dir` (created if needed).
    pub fn mount(dir: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(dir).expect("small fs mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("globofs-fault-test")
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs at {}: {status}",
            dir.display()
        );
        SmallFs {
            dir: dir.to_path_buf(),
        }
    }

    /// Moves a node's volume directory (its store, `self` link and peer links)
    /// onto a small filesystem: its files are copied aside, the tmpfs is
    /// mounted over the directory, and they are copied back (same paths, same
    /// nonce: the node and its peers see the same store).
    pub fn under_volume(node: &Node, size: &str) -> SmallFs {
        let volume = &node.volume;
        let aside = volume.with_extension("aside");
        copy_tree(volume, &aside);
        let small = SmallFs::mount(volume, size);
        copy_tree(&aside, volume);
        fs::remove_dir_all(&aside).expect("remove the copy aside");
        small
    }

    /// Bytes free for an unprivileged writer.
    pub fn free_bytes(&self) -> u64 {
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let path = crate::mount::cpath(&self.dir);
        let ret = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        assert_eq!(ret, 0, "statvfs {}", self.dir.display());
        stat.f_bavail as u64 * stat.f_frsize as u64
    }

    /// Fills the filesystem with a file `name` until writes fail with ENOSPC;
    /// returns its path (remove it to give the space back).
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join(name);
        let mut file = fs::File::create(&path).expect("create filler");
        let chunk = vec![0x5au8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling {}: {err}", path.display()),
            }
        }
        // Then byte by byte to the very end.
        let small = [0x5au8; 512];
        while let Ok(n) = file.write(&small) {
            if n == 0 {
                break;
            }
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if !is_mounted(&self.dir) {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Copies a tree (files, dirs, symlinks; hard links become copies), keeping modes.
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("run cp");
    if !status.success() {
        // `cp -a SRC/. DEST` needs DEST: make it and try once more.
        fs::create_dir_all(to).expect("copy target");
        let again = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .expect("run cp");
        assert!(again.success(), "cp -a {} {}", from.display(), to.display());
    }
}

/// Makes `path` writable (version files are 0644; some store files may not be).
pub fn make_writable(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o200);
        let _ = fs::set_permissions(path, perms);
    }
}

/// The segments of a journal directory (16-digit names), sorted.
pub fn segments(journal: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(journal)
        .unwrap_or_else(|err| panic!("{}: {err}", journal.display()))
        .map(|item| item.expect("dir entry").path())
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.len() == 16 && name.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    out.sort();
    out
}
