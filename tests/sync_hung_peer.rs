//! A hung peer never hangs a command: node A reaches B through sshfs, and B's
//! sshd is stopped with SIGSTOP, so calls on the mount sleep in the kernel
//! (uninterruptibly, once sshfs has read them). Every command that touches
//! peers (`sync`, `status`, `mirror`, `verify --repair`, `drop`) still returns
//! within a bound, with its usual exit code, names B as away, and lets go of
//! the pipes it was given (`x=$(globofs status)` returns); a running mount
//! keeps syncing and exits on SIGTERM. Each run has a wall-clock bound, so a
//! hang fails the test instead of stalling the suite.

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nodes::{Cluster, Node, Options, data, mount_point};

/// `sync.timeout` of the nodes.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Far more than a command needs with a hung peer (about one timeout), far
/// less than a hang.
const BOUND: Duration = Duration::from_secs(20);

fn two_nodes() -> Cluster {
    Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            timeout: "2s",
            ..Options::default()
        }
        .with_mount_points(),
    )
}

/// How a bounded run ended.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `command` with stdout and stderr piped; it must exit and close both
/// pipes within [`BOUND`], and not die of a signal.
#[track_caller]
// On a hang the child is killed but not waited for: it cannot be reaped until
// the peer answers, and the test must fail, not wait.
#[allow(clippy::zombie_processes)]
fn run_bounded(mut command: Command, what: &str) -> Ran {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let mut child = command.spawn().expect("start globofs");
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    for (is_out, pipe) in [
        (
            true,
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        ),
        (false, Box::new(child.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        let mut pipe = pipe;
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send((is_out, text));
        });
    }
    let (mut stdout, mut stderr, mut status) = (None, None, None);
    while stdout.is_none() || stderr.is_none() || status.is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!(
                "{what} did not return within {BOUND:?} (exited: {status:?}, stdout closed: {}, stderr closed: {})\n--- stdout:\n{}\n--- stderr:\n{}",
                stdout.is_some(),
                stderr.is_some(),
                stdout.unwrap_or_default(),
                stderr.unwrap_or_default()
            );
        }
        if status.is_none() {
            status = child.try_wait().expect("wait for globofs");
        }
        if let Ok((is_out, text)) = rx.recv_timeout(Duration::from_millis(20)) {
            if is_out {
                stdout = Some(text);
            } else {
                stderr = Some(text);
            }
        }
    }
    let took = started.elapsed();
    let status = status.unwrap();
    let (stdout, stderr) = (stdout.unwrap(), stderr.unwrap());
    let Some(code) = status.code() else {
        panic!(
            "{what} died of signal {:?}\n--- stderr:\n{stderr}",
            status.signal()
        );
    };
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    println!("{what}: exit {code} after {took:.2?}");
    Ran {
        code,
        stdout,
        stderr,
        took,
    }
}

fn globofs(node: &Node, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_globofs"));
    command.arg("--spec").arg(&node.spec_path).args(args);
    command
}

/// Fails unless the run exited with `code` and its output names `peer` as
/// away (in `sync`'s words or `status`'s, or the warning every command logs).
#[track_caller]
fn expect(ran: &Ran, what: &str, code: i32, peer: &Node) {
    let all = format!("{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.code, code,
        "{what}: exit code\n--- stdout:\n{}\n--- stderr:\n{}",
        ran.stdout, ran.stderr
    );
    let id = peer.id.to_string();
    let named = all.lines().any(|line| {
        line.contains(&id)
            && (line.contains("away") || line.contains("unreachable") || line.contains("no answer"))
    });
    assert!(named, "{what}: no line names peer {id} as away:\n{all}");
}

/// Overwrites the start of one block file of `node`'s store in place (its
/// links under `root/` share the inode, so no intact copy is left here).
fn corrupt_a_block(node: &Node) -> PathBuf {
    let mut stack = vec![node.store_dir().join("hashes")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read hashes/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                use std::io::{Seek, Write};
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open a block file");
                file.seek(std::io::SeekFrom::Start(0)).unwrap();
                file.write_all(b"not the bytes that were hashed").unwrap();
                return path;
            }
        }
    }
    panic!("no block file in {}", node.store_dir().display());
}

#[test]
fn every_peer_command_returns_while_a_peer_is_hung() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = two_nodes();
    let root = cluster.root();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let _a_sees_b = server.mount(&b.store_dir(), &mount_point(&root, 0, 1));
    let _b_sees_a = server.mount(&a.store_dir(), &mount_point(&root, 1, 0));

    // A holds its own file's blocks; B's file reaches A without its blocks
    // (they stay at B until read or mirrored).
    a.put("/from-a/own", &data(5 * nodes::BS + 3, 1));
    b.put("/from-b/theirs", &data(4 * nodes::BS + 9, 2));
    cluster.settle();
    // B keeps a copy of A's blocks (to repair A from, once B answers again).
    b.ok(&["mirror"]);
    let before = a.ok(&["status"]);
    assert!(
        before.contains("reachable;")
            && !before.contains("blocks: 0 in")
            && !before.contains(" 0 not local"),
        "before the hang, B is reachable and some blocks are at B only:\n{before}"
    );
    a.put("/from-a/queued", b"waits for B");

    let mut hung = server.hang();
    let mut took = Vec::new();

    let ran = run_bounded(globofs(a, &["status"]), "status");
    expect(&ran, "status", 0, b);
    assert!(ran.stdout.contains("away ("), "{}", ran.stdout);
    // The hang is real: the call stayed stuck in the kernel after the
    // command ended (the supervisor says it left that process behind).
    assert!(
        ran.stderr.contains("still stuck in the kernel"),
        "{}",
        ran.stderr
    );
    took.push(ran.took);

    // As a script captures it: the shell waits for the end of the output.
    let mut script = Command::new("sh");
    script
        .arg("-c")
        .arg("x=$(\"$0\" --spec \"$1\" status --no-blocks) || exit $?; printf '%s\\n' \"$x\"")
        .arg(env!("CARGO_BIN_EXE_globofs"))
        .arg(&a.spec_path);
    let ran = run_bounded(script, "x=$(globofs status)");
    expect(&ran, "x=$(globofs status)", 0, b);
    took.push(ran.took);

    // An away peer is reported, not an error: exit 0, the queue waits.
    let ran = run_bounded(globofs(a, &["sync"]), "sync");
    expect(&ran, "sync", 0, b);
    assert!(ran.stdout.contains("unreachable 1"), "{}", ran.stdout);
    took.push(ran.took);

    // B's blocks cannot come: exit 3.
    let ran = run_bounded(globofs(a, &["mirror"]), "mirror");
    expect(&ran, "mirror", 3, b);
    assert!(ran.stdout.contains("failed"), "{}", ran.stdout);
    took.push(ran.took);

    // Nothing is evicted while B cannot confirm its copies.
    let ran = run_bounded(globofs(a, &["drop"]), "drop");
    expect(&ran, "drop", 0, b);
    assert!(ran.stdout.contains(" 0 evicted"), "{}", ran.stdout);
    took.push(ran.took);

    // A corrupt block that only B could bring back stays broken: exit 3.
    let corrupted = corrupt_a_block(a);
    let ran = run_bounded(globofs(a, &["verify", "--repair"]), "verify --repair");
    expect(&ran, "verify --repair", 3, b);
    took.push(ran.took);

    // SIGTERM to a command stuck on B ends it by SIGTERM, as it did when it
    // was one process, and at once.
    let mut sync = globofs(a, &["sync"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    std::thread::sleep(TIMEOUT / 4);
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &sync.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = sync.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < BOUND,
            "sync did not end within {BOUND:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    sync.stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "{status:?} after {:.2?}: {rest}",
        signalled.elapsed()
    );
    println!("sync ended by SIGTERM after {:.2?}", signalled.elapsed());

    // B answers again: the lingering calls end and the queue goes out.
    hung.resume();
    let deadline = Instant::now() + BOUND;
    loop {
        let ran = run_bounded(globofs(a, &["sync"]), "sync after the hang");
        if ran.code == 0 && ran.stdout.contains("unreachable 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not come back:\n{}{}",
            ran.stdout,
            ran.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.settle();
    assert_eq!(
        b.read("/from-a/queued").as_deref(),
        Some(&b"waits for B"[..])
    );
    let ran = run_bounded(
        globofs(a, &["verify", "--repair"]),
        "verify --repair (B back)",
    );
    assert_eq!(
        ran.code,
        0,
        "{} is repaired from B once B answers:\n{}{}",
        corrupted.display(),
        ran.stdout,
        ran.stderr
    );
    println!(
        "with B hung (sync.timeout {TIMEOUT:?}): {:?}",
        took.iter().map(|t| format!("{t:.2?}")).collect::<Vec<_>>()
    );
}

/// `globofs mount` of a node, stopped with SIGTERM (then SIGKILL and a lazy
/// unmount) on drop if the test did not stop it.
struct MountProcess {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
}

impl MountProcess {
    fn start(node: &Node, mnt: &Path, log: &Path) -> MountProcess {
        std::fs::create_dir_all(mnt).unwrap();
        let child = globofs(node, &["mount"])
            .arg(mnt)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start globofs mount");
        let process = MountProcess {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + BOUND;
        while !(sshfs::is_mounted(mnt) && std::fs::read_dir(mnt).is_ok()) {
            assert!(
                Instant::now() < deadline,
                "the mount did not appear:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// The mount's log, without terminal colours.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Sync passes the mount logged with a peer unreachable.
    fn passes_with_one_away(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(" sync") && line.contains("unreachable=1"))
            .count()
    }
}

impl Drop for MountProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_mount_keeps_syncing_and_stops_while_a_peer_is_hung() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    let cluster = two_nodes();
    let root = cluster.root();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let _a_sees_b = server.mount(&b.store_dir(), &mount_point(&root, 0, 1));
    let _b_sees_a = server.mount(&a.store_dir(), &mount_point(&root, 1, 0));
    let mnt = root.join("a-mnt");
    let mut mount = MountProcess::start(a, &mnt, &root.join("mount.log"));
    std::fs::write(mnt.join("before"), b"before the hang").unwrap();
    // The mount's pass takes it to B.
    let deadline = Instant::now() + BOUND;
    while b.read("/before").is_none() {
        assert!(Instant::now() < deadline, "not synced:\n{}", mount.log());
        b.sync();
        std::thread::sleep(Duration::from_millis(200));
    }

    let _hung = server.hang();
    // Each local change starts a pass: the first one waits out the deadline,
    // the next finds B still away; the mount serves all along.
    for round in 0..2 {
        let wanted = round + 1;
        std::fs::write(mnt.join(format!("during-{round}")), b"while B hangs").unwrap();
        let deadline = Instant::now() + BOUND;
        while mount.passes_with_one_away() < wanted {
            assert!(
                Instant::now() < deadline,
                "the mount's sync loop made no pass {wanted} with B away:\n{}",
                mount.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            std::fs::read(mnt.join(format!("during-{round}"))).unwrap(),
            b"while B hangs"
        );
    }
    assert!(
        mount.log().contains(&b.id.to_string()),
        "the mount's log names B:\n{}",
        mount.log()
    );

    // SIGTERM: the mount unmounts and its process exits, stuck call or not.
    let mut child = mount.child.take().unwrap();
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!(
                "the mount did not exit within {BOUND:?} of SIGTERM:\n{}",
                mount.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("mount exit after SIGTERM: {:.2?}", started.elapsed());
    assert_eq!(status.code(), Some(0), "{status:?}:\n{}", mount.log());
    assert!(!sshfs::is_mounted(&mnt), "still mounted after the exit");
}

/// The worker's exit codes come through as they are: 2 for usage (no spec),
/// 1 for bad input, 0 for success.
#[test]
fn exit_codes_pass_through_the_supervisor() {
    let cluster = Cluster::with_edges(1, &[], Options::default());
    let a = cluster.node(0);
    let ran = run_bounded(
        {
            let mut command = Command::new(env!("CARGO_BIN_EXE_globofs"));
            command.arg("status").env_remove("GLOBOFS_SPEC");
            command
        },
        "status without a spec",
    );
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("no spec given"), "{ran:?}");
    let ran = run_bounded(
        globofs(a, &["mirror", "no-leading-slash"]),
        "mirror of a bad path",
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains("no-leading-slash"), "{ran:?}");
    let ran = run_bounded(globofs(a, &["status", "--no-blocks"]), "status");
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with(&format!("node {}", a.id)), "{ran:?}");
}
