//! A real remote filesystem for tests: an `sshd` on 127.0.0.1 (its own config,
//! keys and port, in a temp dir) and `sshfs` mounts through it, as users mount
//! their peers. Everything is torn down on Drop.
//!
//! Include with `#[path = "common/sshfs.rs"] mod sshfs;`. Tests that need it call
//! [`SshServer::start`]; when sshd or sshfs is not installed it returns `None`
//! after printing `skipped: ...`, and the test says so rather than passing silently.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private sshd listening on 127.0.0.1.
pub struct SshServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

fn have(path: &str) -> bool {
    Path::new(path).exists()
}

impl SshServer {
    /// Starts sshd; `None` (after printing why) when the tools are missing.
    pub fn start() -> Option<SshServer> {
        if !have("/usr/sbin/sshd") || !have("/usr/bin/sshfs") {
            println!(
                "skipped: sshd or sshfs is not installed (apt-get install openssh-server sshfs)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir for sshd");
        let keygen = |name: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(name))
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        };
        keygen("host_key");
        keygen("client_key");
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {dir}/sshd.pid\nSubsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let server = SshServer { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start listening on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// Mounts `remote` (a directory on this machine, reached through sshd) at `local`.
    pub fn mount(&self, remote: &Path, local: &Path) -> SshfsMount {
        self.mount_with("root", remote, local, "")
    }

    /// Mounts `remote` at `local` logged in as `user` (so the SFTP server reads
    /// and writes as that user), open to every local user (`allow_other`) and
    /// with no permission checks on this side: the server's are the ones that count.
    pub fn mount_as(&self, user: &str, remote: &Path, local: &Path) -> SshfsMount {
        // sshd reads the authorized keys as the user logging in.
        use std::os::unix::fs::PermissionsExt;
        let open = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .expect("chmod for sshd")
        };
        open(self.dir.path(), 0o755);
        open(&self.dir.path().join("authorized_keys"), 0o644);
        self.mount_with(user, remote, local, ",allow_other")
    }

    fn mount_with(&self, user: &str, remote: &Path, local: &Path, extra: &str) -> SshfsMount {
        std::fs::create_dir_all(local).expect("sshfs mount point");
        let child = Command::new("sshfs")
            .arg(format!("{user}@127.0.0.1:{}", remote.display()))
            .arg(local)
            .args(["-f", "-o"])
            .arg(format!(
                "port={},IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes{extra}",
                self.port,
                self.dir.path().join("client_key").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshfs");
        let mount = SshfsMount {
            local: local.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_mounted(local) {
            assert!(
                Instant::now() < deadline,
                "sshfs did not mount {}",
                local.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }
}

impl SshServer {
    /// Stops the server (the listening sshd and every process serving a
    /// connection) with SIGSTOP: each sshfs mount through it hangs, its calls
    /// waiting in the kernel for answers that do not come. The server goes on
    /// (SIGCONT) when the returned guard is dropped, also when a test fails.
    pub fn hang(&self) -> Hung {
        let mut pids = vec![self.child.id()];
        let mut next = 0;
        while next < pids.len() {
            pids.extend(children_of(pids[next]));
            next += 1;
        }
        for pid in &pids {
            signal(*pid, "-STOP");
        }
        Hung { pids }
    }
}

/// A stopped server; dropping it lets the server go on.
pub struct Hung {
    pub pids: Vec<u32>,
}

impl Hung {
    /// Lets the server go on now.
    pub fn resume(&mut self) {
        for pid in self.pids.drain(..) {
            signal(pid, "-CONT");
        }
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.resume();
    }
}

fn signal(pid: u32, which: &str) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

include!("mountinfo.rs");

/// An sshfs mount, unmounted on Drop.
pub struct SshfsMount {
    pub local: PathBuf,
    child: Option<Child>,
}

impl SshfsMount {
    /// The sshfs process id (to SIGSTOP it and simulate a hung server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills sshfs abruptly (a peer vanishing mid-operation).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.local)
            .status();
    }
}

impl Drop for SshfsMount {
    fn drop(&mut self) {
        self.kill();
    }
}
