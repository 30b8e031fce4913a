//! `globofs reconcile`: the volume layout a spec declares (the seed example
//! exactly), idempotence down to mtimes, drift (removed peers, wrong links),
//! refusing to touch what is not ours, `--dry-run`, and the ways to name the spec.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Output, globofs, run, write_file};

const NODE: &str = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
const PEER: &str = "ea8192ee-593f-437f-af60-90d213995480";
const PEER2: &str = "0b6f3c1e-2a4d-4e8f-9c1b-7d5e3f2a1b0c";

/// The directories every store has, relative to the store.
const STORE_DIRS: &[&str] = &[
    "ack",
    "hashes",
    "journal",
    "root",
    "spool",
    "spool/inbound",
    "spool/outbound",
    "state",
    "state/locks",
    "tmp",
];

/// A temporary place with a volume directory, peer stores and a spec.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn volume(&self) -> PathBuf {
        self.root().join("srv").join("globofs")
    }

    fn store(&self) -> PathBuf {
        self.volume().join(NODE)
    }

    /// Where the peer `id`'s store is mounted (created only by `mount_peer`).
    fn peer_path(&self, id: &str) -> PathBuf {
        self.root()
            .join("mnt")
            .join("somewhereelse")
            .join("globofs")
            .join(id)
    }

    fn mount_peer(&self, id: &str) {
        std::fs::create_dir_all(self.peer_path(id)).unwrap();
    }

    /// Writes the spec (node [`NODE`], the given peers) and returns its path.
    fn spec(&self, peers: &[&str]) -> PathBuf {
        let mut text = format!(
            "volume: {}\nnode:\n  id: {NODE}\n  major: 100\nblock_size: 1MiB\n",
            self.volume().display()
        );
        if !peers.is_empty() {
            text.push_str("peers:\n");
            for peer in peers {
                text.push_str(&format!(
                    "  - id: {peer}\n    path: {}\n",
                    self.peer_path(peer).display()
                ));
            }
        }
        text.push_str("sync:\n  interval: 30s\n");
        write_file(self.root(), "spec.yaml", text)
    }

    /// `globofs --spec SPEC reconcile [ARGS]`.
    fn reconcile(&self, spec: &Path, args: &[&str]) -> Output {
        run(globofs(["--spec".as_ref(), spec.as_os_str(), "reconcile".as_ref()]).args(args))
    }
}

/// Everything about one entry of a tree that a change would show.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    inode: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    link: Option<PathBuf>,
    content: Option<Vec<u8>>,
}

/// A full listing of the tree under `root` (symlinks not followed), `root` included.
fn listing(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, path: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let kind = if meta.file_type().is_symlink() {
            'l'
        } else if meta.is_dir() {
            'd'
        } else {
            'f'
        };
        out.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            Entry {
                kind,
                mode: meta.mode(),
                inode: meta.ino(),
                size: meta.size(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
                link: (kind == 'l').then(|| std::fs::read_link(path).unwrap()),
                content: (kind == 'f').then(|| std::fs::read(path).unwrap()),
            },
        );
        if kind == 'd' {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(root, &entry.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The listing reduced to names, kinds and link targets.
fn shape(root: &Path) -> Vec<String> {
    listing(root)
        .into_iter()
        .map(|(path, entry)| match entry.link {
            Some(target) => format!("{} -> {}", path.display(), target.display()),
            None => format!("{} {}", path.display(), entry.kind),
        })
        .collect()
}

/// What the seed example's volume must look like, given the peers declared.
fn expected_shape(setup: &Setup, peers: &[&str]) -> Vec<String> {
    let mut lines = vec![
        " d".to_string(),
        format!("self -> {NODE}"),
        format!("{NODE} d"),
        format!("{NODE}/format f"),
    ];
    for dir in STORE_DIRS {
        lines.push(format!("{NODE}/{dir} d"));
    }
    for peer in peers {
        lines.push(format!("{peer} -> {}", setup.peer_path(peer).display()));
        lines.push(format!("{NODE}/spool/inbound/{peer} d"));
        lines.push(format!("{NODE}/spool/outbound/{peer} d"));
    }
    // `listing` sorts by path; the root is the empty path.
    let mut sorted: Vec<(PathBuf, String)> = lines
        .into_iter()
        .map(|line| {
            let path = line.split([' ']).next().unwrap_or_default().to_string();
            (PathBuf::from(path), line)
        })
        .collect();
    sorted.sort();
    sorted.into_iter().map(|(_, line)| line).collect()
}

fn assert_format_file(store: &Path) {
    let text = std::fs::read_to_string(store.join("format")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"globofs-store 1"), "{text}");
    assert!(lines.contains(&format!("node {NODE}").as_str()), "{text}");
    let nonce = lines
        .iter()
        .find_map(|line| line.strip_prefix("nonce "))
        .unwrap_or_else(|| panic!("no nonce line in {text}"));
    assert!(
        nonce.len() == 32
            && nonce
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "nonce {nonce:?} is not 32 hex digits"
    );
}

#[test]
fn seed_example_gets_exactly_its_layout_and_a_second_run_changes_nothing() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);

    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stdout.contains("create store"), "{output:?}");
    assert!(
        !output.stderr.contains("warning"),
        "no warning expected: {output:?}"
    );

    assert_eq!(shape(&setup.volume()), expected_shape(&setup, &[PEER]));
    assert_format_file(&setup.store());
    // `self` is relative (the volume can move) and leads to the store.
    assert_eq!(
        std::fs::read_link(setup.volume().join("self")).unwrap(),
        PathBuf::from(NODE)
    );
    assert_eq!(
        std::fs::canonicalize(setup.volume().join("self")).unwrap(),
        std::fs::canonicalize(setup.store()).unwrap()
    );
    assert_eq!(
        std::fs::canonicalize(setup.volume().join(PEER)).unwrap(),
        std::fs::canonicalize(setup.peer_path(PEER)).unwrap()
    );

    let before = listing(&setup.volume());
    // Long enough for any filesystem's timestamps to show a change.
    std::thread::sleep(Duration::from_millis(1100));
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");
    assert_eq!(output.stdout.lines().count(), 1, "{output:?}");
    let after = listing(&setup.volume());
    assert_eq!(before, after, "the second run changed the volume");
    // The peer's store is not written to.
    assert_eq!(shape(&setup.peer_path(PEER)), vec![" d".to_string()]);
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);

    let output = setup.reconcile(&spec, &["--dry-run"]);
    output.expect_code(0);
    assert!(!setup.volume().exists(), "--dry-run created the volume");
    for needle in ["would create store", "would link", "self", PEER] {
        assert!(output.stdout.contains(needle), "{needle}: {output:?}");
    }
    assert!(output.stdout.lines().all(|line| line.starts_with("would ")));

    setup.reconcile(&spec, &[]).expect_code(0);
    // Drift of every kind, then a dry run: reported, not done.
    let spec = setup.spec(&[PEER2]);
    std::fs::remove_file(setup.volume().join("self")).unwrap();
    symlink("/elsewhere", setup.volume().join("self")).unwrap();
    let before = listing(&setup.volume());
    let output = setup.reconcile(&spec, &["--dry-run"]);
    output.expect_code(0);
    assert!(output.stdout.contains("would fix link"), "{output:?}");
    assert!(output.stdout.contains("would remove link"), "{output:?}");
    assert!(
        output.stdout.contains(&format!(
            "would link {}",
            setup.volume().join(PEER2).display()
        )),
        "{output:?}"
    );
    assert_eq!(
        before,
        listing(&setup.volume()),
        "--dry-run changed the volume"
    );
}

#[test]
fn the_spec_comes_from_a_global_flag_before_or_after_the_command_or_the_environment() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);

    let output = run(&mut globofs([
        "reconcile".as_ref(),
        "--spec".as_ref(),
        spec.as_os_str(),
    ]));
    output.expect_code(0);
    assert!(output.stdout.contains("create store"));

    let output = run(&mut globofs([
        "--spec".as_ref(),
        spec.as_os_str(),
        "reconcile".as_ref(),
    ]));
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");

    let output = run(globofs(["reconcile"]).env("GLOBOFS_SPEC", &spec));
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");

    let output = run(globofs(["reconcile", "--dry-run"]).env("GLOBOFS_SPEC", &spec));
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");

    // No spec at all is a usage error that says how to give one.
    let output = run(&mut globofs(["reconcile"]));
    output.expect_code(2);
    assert!(output.stderr.contains("--spec"), "{output:?}");
}

#[test]
fn an_invalid_spec_is_reported_and_nothing_is_created() {
    let setup = Setup::new();
    let spec = setup.spec(&[PEER]);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("block_size: 1MiB", "block_size: 3MiB");
    std::fs::write(&spec, text).unwrap();
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(1);
    assert!(
        output
            .stderr
            .contains(&format!("{}:5:13: block_size:", spec.display())),
        "{output:?}"
    );
    assert!(!setup.volume().exists());
}

#[test]
fn a_peer_removed_from_the_spec_loses_its_link_and_keeps_its_spools() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    setup.mount_peer(PEER2);
    setup
        .reconcile(&setup.spec(&[PEER, PEER2]), &[])
        .expect_code(0);
    let inbound = setup.store().join("spool/inbound").join(PEER2);
    let outbound = setup.store().join("spool/outbound").join(PEER2);
    write_file(&inbound, "journal-data", "pushed by the peer\n");
    write_file(&outbound, "owed", "still owed\n");

    let spec = setup.spec(&[PEER]);
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    let link = setup.volume().join(PEER2);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link of the removed peer is still there"
    );
    assert!(
        output
            .stdout
            .contains(&format!("remove link {}", link.display())),
        "{output:?}"
    );
    assert!(
        output
            .stdout
            .contains(&format!("kept {}", inbound.display())),
        "{output:?}"
    );
    assert!(
        output
            .stdout
            .contains(&format!("kept {}", outbound.display())),
        "{output:?}"
    );
    assert_eq!(
        std::fs::read_to_string(inbound.join("journal-data")).unwrap(),
        "pushed by the peer\n"
    );
    assert_eq!(
        std::fs::read_to_string(outbound.join("owed")).unwrap(),
        "still owed\n"
    );
    // The peer's own store is never touched.
    assert!(setup.peer_path(PEER2).is_dir());

    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");
}

#[test]
fn wrong_link_targets_are_fixed() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);
    setup.reconcile(&spec, &[]).expect_code(0);

    let peer_link = setup.volume().join(PEER);
    let self_link = setup.volume().join("self");
    std::fs::remove_file(&peer_link).unwrap();
    symlink("/somewhere/else", &peer_link).unwrap();
    std::fs::remove_file(&self_link).unwrap();
    symlink(setup.store(), &self_link).unwrap(); // absolute: not what the seed says

    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(
        output.stdout.contains("(was -> /somewhere/else)"),
        "{output:?}"
    );
    assert_eq!(
        std::fs::read_link(&peer_link).unwrap(),
        setup.peer_path(PEER)
    );
    assert_eq!(std::fs::read_link(&self_link).unwrap(), PathBuf::from(NODE));
    assert_eq!(shape(&setup.volume()), expected_shape(&setup, &[PEER]));
    assert!(
        setup.reconcile(&spec, &[]).stdout.contains("nothing to do"),
        "not idempotent after a fix"
    );
}

/// Runs reconcile where something not ours stands at `path`; it must fail with
/// exit code 1, name the path, and leave it exactly as it was.
fn assert_refused(setup: &Setup, spec: &Path, path: &Path) {
    let before = listing(setup.root());
    for args in [&["--dry-run"][..], &[][..]] {
        let output = setup.reconcile(spec, args);
        output.expect_code(1);
        assert!(
            output.stderr.contains(&path.display().to_string()),
            "the error must name {}: {output:?}",
            path.display()
        );
    }
    let after = listing(setup.root());
    let (path_before, path_after): (Vec<_>, Vec<_>) = (
        before
            .iter()
            .filter(|(p, _)| setup.root().join(p).starts_with(path))
            .collect(),
        after
            .iter()
            .filter(|(p, _)| setup.root().join(p).starts_with(path))
            .collect(),
    );
    assert!(!path_before.is_empty());
    assert_eq!(path_before, path_after, "{} was changed", path.display());
}

#[test]
fn a_real_directory_where_a_peer_link_belongs_is_an_error_and_is_kept() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);
    let squatter = setup.volume().join(PEER);
    std::fs::create_dir_all(&squatter).unwrap();
    write_file(&squatter, "precious", "user data\n");
    assert_refused(&setup, &spec, &squatter);
}

#[test]
fn a_file_where_the_self_link_belongs_is_an_error_and_is_kept() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let spec = setup.spec(&[PEER]);
    std::fs::create_dir_all(setup.volume()).unwrap();
    let squatter = write_file(&setup.volume(), "self", "not a link\n");
    assert_refused(&setup, &spec, &squatter);
}

#[test]
fn a_file_where_the_store_belongs_is_an_error_and_is_kept() {
    let setup = Setup::new();
    let spec = setup.spec(&[]);
    std::fs::create_dir_all(setup.volume()).unwrap();
    let squatter = write_file(&setup.volume(), NODE, "not a store\n");
    assert_refused(&setup, &spec, &squatter);
}

#[test]
fn a_non_empty_directory_without_format_where_the_store_belongs_is_kept() {
    let setup = Setup::new();
    let spec = setup.spec(&[]);
    std::fs::create_dir_all(setup.store().join("photos")).unwrap();
    write_file(&setup.store(), "notes.txt", "mine\n");
    assert_refused(&setup, &spec, &setup.store());
}

#[test]
fn another_nodes_store_where_ours_belongs_is_an_error_and_is_kept() {
    let setup = Setup::new();
    let spec = setup.spec(&[]);
    setup.reconcile(&spec, &[]).expect_code(0);
    let format = setup.store().join("format");
    let text = std::fs::read_to_string(&format)
        .unwrap()
        .replace(NODE, PEER2);
    std::fs::write(&format, text).unwrap();
    assert_refused(&setup, &spec, &setup.store());
}

#[test]
fn a_volume_path_that_is_a_file_is_an_error() {
    let setup = Setup::new();
    let spec = setup.spec(&[]);
    std::fs::create_dir_all(setup.volume().parent().unwrap()).unwrap();
    let squatter = write_file(setup.volume().parent().unwrap(), "globofs", "a file\n");
    assert_refused(&setup, &spec, &squatter);
}

#[test]
fn a_peer_path_that_does_not_exist_is_a_warning_not_an_error() {
    let setup = Setup::new();
    let spec = setup.spec(&[PEER]);
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stderr.contains("warning"), "{output:?}");
    assert!(
        output
            .stderr
            .contains(&setup.peer_path(PEER).display().to_string()),
        "{output:?}"
    );
    // The link is made anyway (dangling until the peer is mounted).
    assert_eq!(
        std::fs::read_link(setup.volume().join(PEER)).unwrap(),
        setup.peer_path(PEER)
    );
    assert_eq!(shape(&setup.volume()), expected_shape(&setup, &[PEER]));
    // Still a warning, and nothing to do, the next time.
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");
    assert!(output.stderr.contains("warning"), "{output:?}");
    // Once mounted, the warning goes.
    setup.mount_peer(PEER);
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(!output.stderr.contains("warning"), "{output:?}");
}

#[test]
fn a_spec_from_init_reconciles() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    let peer = format!("{PEER}={}", setup.peer_path(PEER).display());
    let output = run(&mut globofs([
        "init".as_ref(),
        "--volume".as_ref(),
        setup.volume().as_os_str(),
        "--peer".as_ref(),
        peer.as_ref(),
    ]));
    output.expect_code(0);
    let spec = write_file(setup.root(), "init.yaml", &output.stdout);
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    let node = std::fs::read_link(setup.volume().join("self")).unwrap();
    assert!(setup.volume().join(&node).join("format").is_file());
    assert!(setup.reconcile(&spec, &[]).stdout.contains("nothing to do"));
}

// ---- peers[].owner: the peer's inbound spool belongs to its login ------------------

impl Setup {
    /// The spec with one peer ([`PEER`]) whose `owner` line is `owner` (YAML text).
    fn spec_with_owner(&self, owner: &str) -> PathBuf {
        let spec = self.spec(&[PEER]);
        let peer_path = format!("    path: {}\n", self.peer_path(PEER).display());
        let text = std::fs::read_to_string(&spec)
            .unwrap()
            .replace(&peer_path, &format!("{peer_path}    owner: {owner}\n"));
        assert!(text.contains("owner:"), "{text}");
        std::fs::write(&spec, text).unwrap();
        spec
    }

    fn inbound(&self, peer: &str) -> PathBuf {
        self.store().join("spool").join("inbound").join(peer)
    }
}

/// Changing owners needs root; as another user these tests say so and stop.
fn needs_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!("skipped: {test}: chown needs root");
    }
    root
}

#[test]
fn an_owner_by_name_gets_the_peers_inbound_spool_with_its_group() {
    if !needs_root("owner by name") {
        return;
    }
    let setup = Setup::new();
    setup.mount_peer(PEER);
    // Reconciled once without an owner, with a file the spool already holds.
    setup.reconcile(&setup.spec(&[PEER]), &[]).expect_code(0);
    let held = setup.inbound(PEER).join("held");
    std::fs::write(&held, b"x").unwrap();
    let inbound_before = std::fs::metadata(setup.inbound(PEER)).unwrap();
    assert_eq!(inbound_before.uid(), 0);

    // `nobody` (uid 65534, primary group 65534) is in every passwd database.
    let spec = setup.spec_with_owner("nobody");
    let output = setup.reconcile(&spec, &["--dry-run"]);
    output.expect_code(0);
    assert!(
        output.stdout.contains(&format!(
            "would give {} (peer {PEER}) to user \"nobody\" (uid 65534, gid 65534)",
            setup.inbound(PEER).display()
        )),
        "{output:?}"
    );
    assert_eq!(std::fs::metadata(setup.inbound(PEER)).unwrap().uid(), 0);

    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    for path in [setup.inbound(PEER), held] {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{path:?}");
    }
    // Only that directory: the rest of the store and the outbound spool stay ours.
    for path in [
        setup.store(),
        setup.store().join("spool").join("inbound"),
        setup.store().join("spool").join("outbound").join(PEER),
        setup.store().join("root"),
    ] {
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0, "{path:?}");
    }
    // Nothing more to do the second time.
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(0);
    assert!(output.stdout.contains("nothing to do"), "{output:?}");
}

#[test]
fn an_owner_by_uid_without_a_user_keeps_the_group() {
    if !needs_root("owner by uid") {
        return;
    }
    let setup = Setup::new();
    setup.mount_peer(PEER);
    // A uid no passwd entry has (as with an NFS anonuid).
    let uid = 4_000_123;
    assert!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .unwrap()
            .is_none()
    );
    let output = setup.reconcile(&setup.spec_with_owner(&uid.to_string()), &[]);
    output.expect_code(0);
    assert!(
        output
            .stdout
            .contains(&format!("to uid {uid} (uid {uid}, group unchanged)")),
        "{output:?}"
    );
    let meta = std::fs::metadata(setup.inbound(PEER)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, 0));
}

#[test]
fn an_owner_that_does_not_exist_is_a_clear_error_and_changes_no_owner() {
    let setup = Setup::new();
    setup.mount_peer(PEER);
    setup.reconcile(&setup.spec(&[PEER]), &[]).expect_code(0);
    let owner_before = std::fs::metadata(setup.inbound(PEER)).unwrap().uid();

    let spec = setup.spec_with_owner("gfs-no-such-login");
    let output = setup.reconcile(&spec, &[]);
    output.expect_code(1);
    for needle in [
        PEER,
        "user \"gfs-no-such-login\" does not exist on this machine",
        &setup.inbound(PEER).display().to_string(),
    ] {
        assert!(output.stderr.contains(needle), "{needle}: {output:?}");
    }
    assert_eq!(
        std::fs::metadata(setup.inbound(PEER)).unwrap().uid(),
        owner_before
    );
    // A dry run finds it too.
    setup.reconcile(&spec, &["--dry-run"]).expect_code(1);
}
