//! The command line: clap definitions, logging set-up, and the one place errors
//! are reported and turned into exit codes.
//!
//! Exit codes: 0 success; 1 invalid input (a spec, a path, a value); 2 usage
//! (clap); 3 failure while working (I/O, a corrupt store, a missing block).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::ids::NodeId;
use crate::spec::units::ByteSize;
use crate::spec::{self, Spec};

mod commands;
mod files;
mod mount;
mod past;
mod sync;

/// GloboFS: a filesystem shared by many machines with no servers of its own.
#[derive(Debug, Parser)]
#[command(name = "globofs", version, about, long_about = None)]
pub struct Cli {
    /// The volume spec (YAML).
    #[arg(long, global = true, env = "GLOBOFS_SPEC", value_name = "FILE")]
    pub spec: Option<PathBuf>,

    /// The spec of a volume by name: `/etc/globofs/NAME.yaml` (the NixOS
    /// module's volumes; GLOBOFS_SPEC_DIR names another directory).
    #[arg(long, global = true, value_name = "NAME")]
    pub volume_name: Option<String>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Output format of `validate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the JSON Schema of the volume spec.
    Schema,

    /// Check spec files; print `FILE:LINE:COL: KEY: message` per problem.
    ///
    /// Reads only the files given (never the volume or peer paths), so it runs
    /// in CI jobs and Nix build sandboxes. Exit 0 when every file is valid, 1 otherwise.
    Validate {
        /// Spec files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },

    /// Print a new, valid spec for a node (a fresh node id unless given).
    Init {
        /// The volume directory.
        #[arg(long, value_name = "DIR")]
        volume: PathBuf,
        /// The node id (default: a fresh random UUID).
        #[arg(long, value_name = "UUID")]
        node_id: Option<String>,
        /// Block size (default 1MiB).
        #[arg(long, value_name = "SIZE")]
        block_size: Option<String>,
        /// Default mount point.
        #[arg(long, value_name = "DIR")]
        mount: Option<PathBuf>,
        /// A peer, as ID=PATH (repeatable).
        #[arg(long = "peer", value_name = "ID=PATH")]
        peers: Vec<String>,
    },

    /// Bring the volume directory to what the spec declares.
    ///
    /// Creates the store and its fixed directories, the `self` link and one link
    /// per peer; fixes wrong links; removes links of peers no longer declared
    /// (keeping their spools). Never deletes anything that is not its own link.
    Reconcile {
        /// Only print what would be done.
        #[arg(long)]
        dry_run: bool,
    },

    /// Store a local file or directory tree at DEST in the volume.
    ///
    /// A file put onto an existing directory goes inside it. Each file becomes a
    /// new version, durable when the command returns.
    Put {
        /// Local file or directory.
        src: PathBuf,
        /// Volume path (e.g. /Photos/Moon).
        dest: OsString,
    },

    /// Copy a volume file or tree out to DEST (`-` for standard output).
    Get {
        /// Volume path.
        src: OsString,
        /// Local path, or `-`.
        dest: PathBuf,
        /// Read this version instead of the current one.
        #[arg(long, value_name = "ID", conflicts_with = "at")]
        version: Option<String>,
        /// Copy out what SRC was at TIME (RFC 3339, a local date-time such
        /// as `2026-12-01 09:30`, or a version id).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },

    /// List a directory (one entry a line; full volume paths with -R).
    Ls {
        /// Volume path.
        #[arg(default_value = "/")]
        path: OsString,
        /// Recurse; print full volume paths.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Kind, mode, size, mtime and version of each entry.
        #[arg(short, long)]
        long: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// List the tree as it was at TIME (RFC 3339, a local date-time
        /// such as `2026-12-01 09:30`, or a version id).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },

    /// What changed from TIME1 to TIME2 at and below PATH: one line per path,
    /// `A` added, `D` removed, `M` changed, sorted by path.
    Diff {
        /// The earlier moment (RFC 3339, a local date-time or a version id).
        from: String,
        /// The later moment.
        to: String,
        /// Volume path.
        #[arg(default_value = "/")]
        path: OsString,
        #[arg(long)]
        json: bool,
    },

    /// Every version of a path, oldest first (`*` marks the current one).
    Log {
        path: OsString,
        #[arg(long)]
        json: bool,
    },

    /// Make an old version of a path, or the path (-r: the tree) as it was
    /// at a time, current again (as new versions, which sync).
    ///
    /// With --at, files deleted since come back and files made since are
    /// kept (--exact: deleted too). Blocks are reused, not copied; mode,
    /// mtime, owners and xattrs are those of then.
    Restore {
        path: OsString,
        /// The version to restore.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "at",
            conflicts_with = "at"
        )]
        version: Option<String>,
        /// Restore PATH as it was at TIME (RFC 3339, a local date-time such
        /// as `2026-12-01 09:30`, or a version id).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// A directory with everything below it (with --at).
        #[arg(short, long)]
        recursive: bool,
        /// Also delete what was made below PATH since TIME (with --at).
        #[arg(long)]
        exact: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },

    /// Delete files or empty directories (-r: whole trees). Deletes are versions too.
    Rm {
        #[arg(required = true)]
        paths: Vec<OsString>,
        #[arg(short, long)]
        recursive: bool,
    },

    /// Rename or move a file or directory (no block is copied).
    Mv { src: OsString, dst: OsString },

    /// Create directories.
    Mkdir {
        #[arg(required = true)]
        paths: Vec<OsString>,
        /// Create missing parents; no error if it exists.
        #[arg(short, long)]
        parents: bool,
    },

    /// Delete blocks that no kept version and no outbound spool entry needs.
    Gc {
        #[arg(long)]
        json: bool,
    },

    /// Where the store's disk space goes: live data, old versions, pushes not
    /// acknowledged, what gc would free, the layout's own cost, the spools
    Du {
        #[arg(long)]
        json: bool,
    },

    /// Drop old versions outside the spec's `retention` rule.
    Prune {
        #[arg(long)]
        json: bool,
    },

    /// Re-hash every local block; report corrupt, remote and missing blocks.
    ///
    /// With --repair, bring back corrupt and lost blocks from an intact local
    /// link or from peers (checked against their SHA-256); corrupt files are
    /// kept aside in `state/corrupt/`. Exit 3 when anything stays broken.
    /// With `copies` above 1, also reads every copy of the current tree's
    /// blocks on this node and the reachable peers (SHA-256 checked) and
    /// counts them, and the blocks held by fewer nodes (not an error: sync
    /// makes the copies).
    Verify {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Repair what can be repaired.
        #[arg(long)]
        repair: bool,
    },

    // --- sync commands: defined in src/cli/sync.rs (SyncCommand) ---
    #[command(flatten)]
    Sync(sync::SyncCommand),

    /// Mount the volume with FUSE (in the foreground) at MOUNTPOINT or `mount.path`.
    ///
    /// Reconciles first; unmounts on SIGINT/SIGTERM; re-reads the spec on SIGHUP
    /// (peers, sync, cache, ignore and retention apply live; a change of the volume,
    /// node, block size, compression, verify_reads, history view name or mount point is refused with a
    /// log line);
    /// signals readiness to systemd (NOTIFY_SOCKET). Semantics: close-to-open (close
    /// commits a version, fsync makes it durable).
    ///
    /// With `--volume DIR` no spec is needed: the first run makes one in
    /// `DIR/globofs.yaml` (a new node id, or that of the store already in DIR)
    /// and later runs use it, so the node id stays the same.
    Mount {
        mountpoint: Option<PathBuf>,
        /// Mount this volume directory with a spec kept in it
        /// (`DIR/globofs.yaml`, made on the first run) instead of `--spec`.
        #[arg(long, value_name = "DIR")]
        volume: Option<PathBuf>,
        /// With --volume: a peer, as ID=PATH (repeatable). Given, it sets the
        /// kept spec's peers.
        #[arg(long = "peer", value_name = "ID=PATH", requires = "volume")]
        peers: Vec<String>,
        /// FUSE request threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// On SIGINT/SIGTERM with files still open: detach the mount and serve
        /// them up to this many seconds for their writers to close them; what
        /// is still open then is committed as it is.
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        stop_grace: u64,
    },
    /// Write man pages for globofs and its subcommands into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },

    /// The guard a mount starts for its FUSE connection (not for users).
    #[command(hide = true)]
    FuseGuard { connection: u32, pid: u32 },

    /// Print a shell completion script.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

/// An error reported at the top, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn input(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }

    pub fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: 3,
            message: message.to_string(),
        }
    }
}

impl From<spec::SpecError> for Failure {
    fn from(err: spec::SpecError) -> Failure {
        Failure::input(err)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(err: crate::store::StoreError) -> Failure {
        use crate::store::StoreError as E;
        match err {
            E::NotFound(_)
            | E::Exists(_)
            | E::NotADirectory(_)
            | E::IsADirectory(_)
            | E::NotEmpty(_)
            | E::Invalid { .. }
            | E::NoSuchVersion(..)
            | E::NotThen { .. }
            | E::WasADirectory { .. }
            | E::BadPath(_)
            // Once one catch-all refusal: still the user's to act on.
            | E::BadSymlinkTarget { .. }
            | E::RemoveRoot
            | E::IdClash { .. }
            | E::PeerAway { .. }
            | E::UnreadableVersions { .. }
            | E::BadConfig { .. }
            | E::Internal(_) => Failure::input(err),
            other => Failure::runtime(other),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Failure {
        Failure::runtime(err)
    }
}

/// Runs the command line; returns the exit code.
///
/// A command that can touch a peer runs in a supervised worker process
/// ([`crate::supervise`]), so a call stuck on a hung peer's filesystem cannot
/// keep the command from exiting.
pub fn main() -> i32 {
    let worker = crate::supervise::enter_worker();
    let code = run_command_line(worker);
    if worker {
        crate::supervise::finish(code);
    }
    code
}

fn run_command_line(worker: bool) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    if !worker && touches_peers(&cli.command) {
        if let Some(code) = crate::supervise::supervise() {
            return code;
        }
    }
    // The mount is a service: its few info lines (mounted, which I/O path,
    // sync passes, unmounting) belong in its log by default.
    let service = matches!(cli.command, Command::Mount { .. });
    init_logging(cli.verbose.saturating_add(u8::from(service)));
    match run(cli) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("globofs: {}", failure.message);
            failure.code
        }
    }
}

/// The commands whose work can call into a peer's filesystem: `sync`,
/// `status`, `drop`, `mirror`, `verify` (it asks peers for blocks), `get`
/// (it pulls blocks not held here) and `mount`.
fn touches_peers(command: &Command) -> bool {
    matches!(
        command,
        Command::Sync(_) | Command::Verify { .. } | Command::Get { .. } | Command::Mount { .. }
    )
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The spec named by `--spec` / `GLOBOFS_SPEC`, loaded and checked.
pub fn load_spec(path: Option<&Path>) -> Result<Spec, Failure> {
    let path = path.ok_or_else(|| Failure {
        code: 2,
        message: "no spec given: pass --spec FILE or set GLOBOFS_SPEC".into(),
    })?;
    Ok(Spec::load(path)?)
}

/// Where `--volume-name NAME` looks for `NAME.yaml` unless [`SPEC_DIR_ENV`] says.
pub const SPEC_DIR: &str = "/etc/globofs";
/// Names another directory for `--volume-name` (tests; a non-NixOS layout).
pub const SPEC_DIR_ENV: &str = "GLOBOFS_SPEC_DIR";

/// The spec file `--volume-name NAME` names: `NAME.yaml` in [`SPEC_DIR`].
fn named_spec(name: &str) -> Result<PathBuf, Failure> {
    let dir = std::env::var_os(SPEC_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SPEC_DIR));
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !plain {
        return Err(Failure::input(format!(
            "--volume-name {name:?}: a volume name has only letters, digits, `_`, `.` and `-`"
        )));
    }
    let file = dir.join(format!("{name}.yaml"));
    if file.exists() {
        return Ok(file);
    }
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            Some(name.strip_suffix(".yaml")?.to_string())
        })
        .collect();
    known.sort();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    Err(Failure::input(format!(
        "--volume-name {name}: no {} (volumes in {}: {known})",
        file.display(),
        dir.display()
    )))
}

fn run(mut cli: Cli) -> Result<(), Failure> {
    // A GLOBOFS_SPEC from the environment gives way to a spec named on the
    // command line (`--volume-name`, `mount --volume`); `--spec` does not.
    let from_env = cli.spec.is_some()
        && std::env::var_os("GLOBOFS_SPEC").is_some_and(|env| Some(PathBuf::from(env)) == cli.spec)
        && !std::env::args_os().any(|arg| {
            arg == "--spec" || arg.to_str().is_some_and(|arg| arg.starts_with("--spec="))
        });
    let names_own_spec = cli.volume_name.is_some()
        || matches!(
            &cli.command,
            Command::Mount {
                volume: Some(_),
                ..
            }
        );
    if from_env && names_own_spec {
        cli.spec = None;
    }
    let named = match cli.volume_name.as_deref() {
        Some(_) if cli.spec.is_some() => {
            return Err(Failure {
                code: 2,
                message: "give --spec FILE (or GLOBOFS_SPEC) or --volume-name NAME, not both"
                    .into(),
            });
        }
        Some(name) => Some(named_spec(name)?),
        None => None,
    };
    let spec_path = named.as_deref().or(cli.spec.as_deref());
    match cli.command {
        Command::Schema => {
            print!("{}", spec::schema_json());
            Ok(())
        }
        Command::Validate { files, format } => commands::validate(&files, format),
        Command::Init {
            volume,
            node_id,
            block_size,
            mount,
            peers,
        } => commands::init(volume, node_id, block_size, mount, peers),
        Command::Reconcile { dry_run } => commands::reconcile(&load_spec(spec_path)?, dry_run),
        Command::Put { src, dest } => files::put(&load_spec(spec_path)?, &src, &dest),
        Command::Get {
            src,
            dest,
            version,
            at,
        } => match at {
            Some(at) => past::get_at(&load_spec(spec_path)?, &src, &dest, &past::moment(&at)?),
            None => files::get(&load_spec(spec_path)?, &src, &dest, version.as_deref()),
        },
        Command::Ls {
            path,
            recursive,
            long,
            json,
            at,
        } => {
            let at = at.as_deref().map(past::moment).transpose()?;
            files::ls(
                &load_spec(spec_path)?,
                &path,
                recursive,
                long,
                json,
                at.as_ref(),
            )
        }
        Command::Diff {
            from,
            to,
            path,
            json,
        } => past::diff(
            &load_spec(spec_path)?,
            &past::moment(&from)?,
            &past::moment(&to)?,
            &path,
            json,
        ),
        Command::Log { path, json } => files::log(&load_spec(spec_path)?, &path, json),
        Command::Restore {
            path,
            version,
            at,
            recursive,
            exact,
            json,
        } => match (at, version) {
            (Some(at), _) => past::restore_at(
                &load_spec(spec_path)?,
                &path,
                &past::moment(&at)?,
                recursive,
                exact,
                json,
            ),
            (None, _) if recursive || exact => Err(Failure {
                code: 2,
                message: "restore: -r and --exact go with --at TIME".into(),
            }),
            (None, Some(version)) => files::restore(&load_spec(spec_path)?, &path, &version),
            (None, None) => Err(Failure {
                code: 2,
                message: "restore: give --version ID or --at TIME".into(),
            }),
        },
        Command::Rm { paths, recursive } => files::rm(&load_spec(spec_path)?, &paths, recursive),
        Command::Mv { src, dst } => files::mv(&load_spec(spec_path)?, &src, &dst),
        Command::Mkdir { paths, parents } => files::mkdir(&load_spec(spec_path)?, &paths, parents),
        Command::Gc { json } => files::gc(&load_spec(spec_path)?, json),
        Command::Prune { json } => files::prune(&load_spec(spec_path)?, json),
        Command::Du { json } => files::du(&load_spec(spec_path)?, json),
        Command::Verify { json, repair } => {
            let spec = load_spec(spec_path)?;
            if repair {
                files::verify_repair(&spec, &open_with_peers(&spec)?, json)
            } else {
                files::verify(&spec, &open_with_peers(&spec)?, json)
            }
        }
        Command::Sync(command) => sync::run(spec_path, command),
        Command::Mount {
            mountpoint,
            volume,
            peers,
            threads,
            stop_grace,
        } => mount::mount(
            &match volume {
                Some(_) if spec_path.is_some() => {
                    return Err(Failure {
                        code: 2,
                        message: "--volume makes and keeps its own spec: drop --spec, GLOBOFS_SPEC or --volume-name".into(),
                    });
                }
                Some(volume) => load_spec(Some(&mount::kept_spec(&volume, &peers)?))?,
                None => load_spec(spec_path)?,
            },
            mountpoint,
            threads,
            std::time::Duration::from_secs(stop_grace),
        ),
        Command::Man { dir } => commands::man(&dir),
        Command::FuseGuard { connection, pid } => {
            crate::mount::watch_fuse_connection(connection, pid);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "globofs", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Opens the spec's store with a fetcher that pulls missing blocks from peers.
pub fn open_with_peers(spec: &Spec) -> Result<crate::store::Store, Failure> {
    let mut store = crate::store::Store::open_spec(spec)?;
    store.set_fetcher(std::sync::Arc::new(crate::sync::PeerFetcher::new(spec)));
    Ok(store)
}

/// Writes to stdout, treating a closed pipe as the end of output.
pub fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[doc(hidden)]
pub fn parse_node_id(text: &str) -> Result<NodeId, Failure> {
    text.parse().map_err(Failure::input)
}

#[doc(hidden)]
pub fn parse_size(text: &str) -> Result<ByteSize, Failure> {
    text.parse().map_err(Failure::input)
}
