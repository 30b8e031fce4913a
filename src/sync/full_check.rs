//! Anti-entropy: a full comparison of our version sets with one peer's, so
//! nothing depends on a journal line having survived.
//!
//! Both stores keep digests of their version sets (`src/store/digest.rs`,
//! `root/<path>/%digest`). The check reads the peer's root digest (one small
//! file on the peer's worker, with the deadline); where it differs from ours it
//! reads the peer's digest files of the differing directories only, down to
//! the paths whose version sets differ: O(differences x depth) remote reads,
//! never a walk of the peer's tree. For each such path it lists the peer's
//! `versions/`:
//!
//! - versions the peer has and we lack (not pruned here, not ignored) are read
//!   from the peer's `root/`, checked like any inbound version and taken in
//!   through the apply path (import, conflict copies, relayed blocks);
//! - versions we have and the peer lacks (not pruned there) are journaled
//!   again in our journal, so the ordinary push delivers them.
//!
//! A peer without digest files (an older globofs) is compared by listing its
//! `root/` directories instead: a walk, said in the report. Runs on demand
//! (`globofs sync --full`), every `sync.full_check`, and in the same pass
//! after a damaged inbound journal or spool was detected. The first two digest
//! our own `root/` afresh from disk first (a local walk), so even versions our
//! own journal lost are counted; after damage found in an inbound spool our
//! journal is not in doubt and our digests are only brought up to date. `state/full-check/<peer>`
//! remembers when it last ran and what it found (shown by `status`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::ids::VersionId;
use crate::layout::VPath;
use crate::store::digest::{self, DIGEST_FILE, DirDigest, MAX_DIGEST_BYTES};
use crate::store::journal::write_atomic;
use crate::store::version::MAX_VERSION_FILE;
use crate::store::{Store, StoreError, Version, version_ids_in};

use super::remote::{Away, Remote};
use super::{PeerReport, apply, safe, state};

/// Most directories one check descends into (a bound on a pass's remote work;
/// the rest is found by the next check).
const MAX_DIRS: usize = 100_000;

/// What a full check with one peer found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FullCheck {
    /// Unix seconds when it ran (when it was scheduled, if none ran yet).
    pub at: u64,
    /// A check ran (false: none yet; the first waits one interval from `at`).
    pub ran: bool,
    /// Digest files (directories) compared.
    pub dirs: u64,
    /// Paths whose version lists were compared.
    pub paths: u64,
    /// Versions the peer had and we lacked, taken in.
    pub taken: u64,
    /// Versions we had and the peer lacked, journaled again for the push.
    pub offered: u64,
    /// The peer keeps no digests (older globofs): its tree was listed.
    pub walked: bool,
    /// The whole tree was compared (not cut short by the peer going away or
    /// the bound on directories).
    pub complete: bool,
    /// Why it ran (`on demand`, `interval`, or the damage that was found).
    pub why: String,
}

impl FullCheck {
    fn to_text(&self) -> String {
        format!(
            "at {}\nran {}\ndirs {}\npaths {}\ntaken {}\noffered {}\nwalked {}\ncomplete {}\nwhy {}\n",
            self.at,
            self.ran,
            self.dirs,
            self.paths,
            self.taken,
            self.offered,
            self.walked,
            self.complete,
            self.why.replace('\n', " ")
        )
    }

    fn parse(text: &str) -> Option<FullCheck> {
        let mut check = FullCheck::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "at" => check.at = value.parse().ok()?,
                "dirs" => check.dirs = value.parse().ok()?,
                "paths" => check.paths = value.parse().ok()?,
                "taken" => check.taken = value.parse().ok()?,
                "offered" => check.offered = value.parse().ok()?,
                "walked" => check.walked = value == "true",
                "ran" => check.ran = value == "true",
                "complete" => check.complete = value == "true",
                "why" => check.why = value.to_string(),
                _ => {}
            }
        }
        Some(check)
    }

    /// The last full check with `peer`, if any ran.
    pub fn load(store: &Store, peer: crate::ids::NodeId) -> Result<Option<FullCheck>, StoreError> {
        let file = state_file(store, peer);
        match fs::read_to_string(&file) {
            Ok(text) => Ok(FullCheck::parse(&text)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::io(&file, err)),
        }
    }

    /// Starts the interval for a peer never checked: as if a check ran now.
    pub fn schedule(store: &Store, peer: crate::ids::NodeId) -> Result<(), StoreError> {
        FullCheck {
            at: state::now_secs(),
            why: "none yet (the first check waits one interval)".to_string(),
            ..FullCheck::default()
        }
        .save(store, peer)
    }

    fn save(&self, store: &Store, peer: crate::ids::NodeId) -> Result<(), StoreError> {
        write_atomic(&state_file(store, peer), self.to_text().as_bytes())
    }
}

/// `state/full-check/<peer>`.
fn state_file(store: &Store, peer: crate::ids::NodeId) -> PathBuf {
    store
        .layout()
        .state()
        .join("full-check")
        .join(peer.to_string())
}

/// Compares our version sets with `remote`'s and repairs both directions.
/// `relay`: the peer's remote when our other peers may need its blocks.
pub fn full_check(
    store: &Store,
    remote: &Remote,
    relay: Option<&Remote>,
    why: &str,
    rebuild: bool,
    report: &mut PeerReport,
) -> Result<FullCheck, StoreError> {
    if rebuild {
        digest::rebuild_now(store)?;
    } else {
        digest::refresh(store)?;
    }
    let mut check = Checker {
        store,
        remote,
        relay,
        peer_root: remote.layout().root(),
        result: FullCheck {
            at: state::now_secs(),
            ran: true,
            why: why.to_string(),
            ..FullCheck::default()
        },
        offer: Vec::new(),
    };
    let outcome = check.compare_tree(report);
    let offered = std::mem::take(&mut check.offer);
    if !offered.is_empty() {
        store.journal().append(&offered)?;
    }
    let mut result = check.result;
    result.offered = offered.len() as u64;
    match outcome {
        Ok(()) => result.complete = result.dirs < MAX_DIRS as u64,
        Err(CheckError::Away(away)) => {
            report.note(format!("full check cut short: {}", away.why));
        }
        Err(CheckError::Store(err)) => return Err(err),
    }
    if result.taken > 0 || result.offered > 0 {
        report.warn(format!(
            "full check: took {} version(s) we lacked from this peer and offered {} it lacked ({})",
            result.taken, result.offered, result.why
        ));
    }
    result.save(store, remote.id())?;
    tracing::info!(
        peer = %remote.id(),
        dirs = result.dirs,
        paths = result.paths,
        taken = result.taken,
        offered = result.offered,
        complete = result.complete,
        "full check"
    );
    Ok(result)
}

enum CheckError {
    Away(Away),
    Store(StoreError),
}

impl From<Away> for CheckError {
    fn from(away: Away) -> CheckError {
        CheckError::Away(away)
    }
}

impl From<StoreError> for CheckError {
    fn from(err: StoreError) -> CheckError {
        CheckError::Store(err)
    }
}

struct Checker<'a> {
    store: &'a Store,
    remote: &'a Remote,
    relay: Option<&'a Remote>,
    peer_root: PathBuf,
    result: FullCheck,
    /// Journal lines for versions the peer lacks.
    offer: Vec<String>,
}

/// A node of the comparison: a path, and whether to compare its own versions.
struct Todo {
    path: VPath,
    /// Disk names from the root to this path (for the peer's side).
    names: Vec<OsString>,
}

impl Checker<'_> {
    fn compare_tree(&mut self, report: &mut PeerReport) -> Result<(), CheckError> {
        let mut stack = vec![Todo {
            path: VPath::root(),
            names: Vec::new(),
        }];
        while let Some(todo) = stack.pop() {
            if self.result.dirs >= MAX_DIRS as u64 {
                return Ok(());
            }
            self.result.dirs += 1;
            let ours = digest::read_own(self.store, &todo.path)?.unwrap_or_else(|| DirDigest {
                own: String::new(),
                children: BTreeMap::new(),
            });
            let theirs = match self.peer_digest(&todo.names)? {
                Some(theirs) => theirs,
                None => {
                    // No digest there: a leaf there (no children), or a peer
                    // that keeps none; its listing says which.
                    match self.peer_listing(&todo.names)? {
                        Some(listing) => {
                            self.result.walked = true;
                            listing
                        }
                        None => DirDigest::default(),
                    }
                }
            };
            let our_own = if ours.own.is_empty() {
                digest::own_digest(&self.store.version_ids(&todo.path)?)
            } else {
                ours.own.clone()
            };
            if theirs.own != our_own {
                self.compare_versions(&todo.path, &todo.names, report)?;
            }
            let names: BTreeSet<&OsString> =
                ours.children.keys().chain(theirs.children.keys()).collect();
            for name in names {
                let (mine, other) = (ours.children.get(name), theirs.children.get(name));
                if mine.is_some() && mine == other {
                    continue;
                }
                let Some(path) = self.child_path(&todo.path, &todo.names, name)? else {
                    continue;
                };
                let mut names = todo.names.clone();
                names.push(name.clone());
                let deeper =
                    mine.is_some_and(|c| c.has_children) || other.is_some_and(|c| c.has_children);
                if deeper {
                    stack.push(Todo { path, names });
                } else {
                    self.compare_versions(&path, &names, report)?;
                }
            }
        }
        Ok(())
    }

    /// The volume path of child `name` (a disk name) of `parent`.
    fn child_path(
        &self,
        parent: &VPath,
        parent_names: &[OsString],
        name: &OsString,
    ) -> Result<Option<VPath>, CheckError> {
        if let Some(raw) = crate::layout::name_from_disk(name) {
            return Ok(parent.join(&raw).ok());
        }
        if !crate::layout::is_hashed_name(name) {
            return Ok(None);
        }
        // A hashed long name: the path is in its version files (ours, or the peer's).
        let ours = self
            .store
            .layout()
            .root()
            .join(safe::joined(Path::new(""), parent_names))
            .join(name);
        if let Ok(Some(path)) = self.store.hashed_child(&ours) {
            return Ok(Some(path));
        }
        let mut names = parent_names.to_vec();
        names.push(name.clone());
        let ids = self.peer_ids(&names)?;
        let Some(id) = ids.last() else {
            return Ok(None);
        };
        Ok(self
            .peer_version(&names, *id)?
            .ok()
            .map(|version| version.path))
    }

    /// The peer's digest file of the path at `names`.
    fn peer_digest(&self, names: &[OsString]) -> Result<Option<DirDigest>, Away> {
        let mut names = names.to_vec();
        names.push(OsString::from(DIGEST_FILE));
        let root = self.peer_root.clone();
        self.remote.run(move || {
            let file = safe::open_under(&root, &names).ok()?;
            let shown = safe::joined(&root, &names);
            let bytes = safe::read_bounded(file, MAX_DIGEST_BYTES, &shown).ok()?;
            DirDigest::parse(&bytes)
        })
    }

    /// For a peer without digests: its children of the path at `names`, each
    /// marked as differing (so every one is compared). `None` if not a directory there.
    fn peer_listing(&self, names: &[OsString]) -> Result<Option<DirDigest>, Away> {
        let dir = safe::joined(&self.peer_root, names);
        let listing = self.remote.run(move || -> Option<Vec<(OsString, bool)>> {
            let mut out = Vec::new();
            for entry in fs::read_dir(&dir).ok()?.flatten() {
                let name = entry.file_name();
                if name == "versions" || name == "hashes" {
                    continue;
                }
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir {
                    continue;
                }
                // A child with children of its own has entries besides versions/ and hashes/.
                let deeper = fs::read_dir(entry.path()).is_ok_and(|d| {
                    d.flatten().any(|e| {
                        let n = e.file_name();
                        n != "versions" && n != "hashes" && e.file_type().is_ok_and(|t| t.is_dir())
                    })
                });
                out.push((name, deeper));
            }
            Some(out)
        })?;
        let Some(listing) = listing else {
            return Ok(None);
        };
        if listing.is_empty() {
            return Ok(None);
        }
        let mut digest = DirDigest::default();
        for (name, deeper) in listing {
            digest.children.insert(
                name,
                digest::ChildDigest {
                    has_children: deeper,
                    // Never equal to ours: every child gets compared.
                    tree: String::new(),
                },
            );
        }
        Ok(Some(digest))
    }

    fn peer_ids(&self, names: &[OsString]) -> Result<Vec<VersionId>, Away> {
        let dir = safe::joined(&self.peer_root, names).join("versions");
        self.remote
            .run(move || version_ids_in(&dir).unwrap_or_default())
    }

    fn peer_pruned(&self, names: &[OsString]) -> Result<BTreeSet<VersionId>, Away> {
        let mut names = names.to_vec();
        names.push(OsString::from("versions"));
        names.push(OsString::from("pruned"));
        let root = self.peer_root.clone();
        self.remote.run(move || {
            let Ok(file) = safe::open_under(&root, &names) else {
                return BTreeSet::new();
            };
            let shown = safe::joined(&root, &names);
            let bytes = safe::read_bounded(file, MAX_VERSION_FILE, &shown).unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|line| line.parse().ok())
                .collect()
        })
    }

    /// Reads and parses one of the peer's version files (an error says why it
    /// is refused).
    fn peer_version(
        &self,
        names: &[OsString],
        id: VersionId,
    ) -> Result<Result<Version, String>, Away> {
        let mut names = names.to_vec();
        names.push(OsString::from("versions"));
        names.push(OsString::from(id.to_string()));
        let root = self.peer_root.clone();
        self.remote.run(move || {
            let shown = safe::joined(&root, &names);
            let file = safe::open_under(&root, &names)
                .map_err(|err| format!("{}: {err}", shown.display()))?;
            let bytes = safe::read_bounded(file, MAX_VERSION_FILE, &shown)
                .map_err(|err| format!("{}: {err}", shown.display()))?;
            Version::parse(&shown, &bytes).map_err(|err| err.to_string())
        })
    }

    /// Compares the version lists of one path and repairs both directions.
    fn compare_versions(
        &mut self,
        path: &VPath,
        names: &[OsString],
        report: &mut PeerReport,
    ) -> Result<(), CheckError> {
        self.result.paths += 1;
        if self.store.is_ignored(path) {
            return Ok(());
        }
        let ours: BTreeSet<VersionId> = self.store.version_ids(path)?.into_iter().collect();
        let theirs: BTreeSet<VersionId> = self.peer_ids(names)?.into_iter().collect();
        if ours == theirs {
            return Ok(());
        }
        let lacking_here: Vec<VersionId> = theirs.difference(&ours).copied().collect();
        if !lacking_here.is_empty() {
            let pruned = self.store.pruned_ids(path)?;
            for id in lacking_here {
                if pruned.contains(&id) {
                    continue;
                }
                let version = match self.peer_version(names, id)? {
                    Ok(version) => version,
                    Err(why) => {
                        report.refuse(format!("full check: {why}"));
                        continue;
                    }
                };
                if version.id != id || version.path != *path {
                    report.refuse(format!(
                        "full check: the peer's version file {id} of {path} says it is version {} of {}",
                        version.id, version.path
                    ));
                    continue;
                }
                if apply::take_checked(
                    self.store,
                    self.remote.id(),
                    Some(self.remote),
                    self.relay,
                    report,
                    &version,
                )? {
                    self.result.taken += 1;
                }
            }
        }
        let lacking_there: Vec<VersionId> = ours.difference(&theirs).copied().collect();
        if !lacking_there.is_empty() {
            let pruned = self.peer_pruned(names)?;
            for id in lacking_there {
                if !pruned.contains(&id) {
                    self.offer.push(format!("{id} {}", path.escaped()));
                }
            }
        }
        Ok(())
    }
}
