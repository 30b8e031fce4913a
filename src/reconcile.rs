//! Brings a volume directory to what the spec declares: the `self` symlink, this
//! node's store with its fixed subdirectories and `format` file, per-peer spools,
//! and one symlink per peer. Idempotent; never deletes anything that is not a
//! symlink of ours.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, symlink};
use std::path::{Path, PathBuf};

use crate::ids::NodeId;
use crate::layout::StoreLayout;
use crate::spec::{PeerOwner, Spec};
use crate::store::{StoreError, StoreMeta, set_mode};

/// One thing reconcile did (or would do with `--dry-run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    CreateDir(PathBuf),
    CreateStore {
        dir: PathBuf,
        node: NodeId,
    },
    Link {
        link: PathBuf,
        target: PathBuf,
    },
    Relink {
        link: PathBuf,
        old: PathBuf,
        target: PathBuf,
    },
    Unlink {
        link: PathBuf,
        kept: Vec<PathBuf>,
    },
    /// A peer's inbound spool given to its login (`peers[].owner`).
    GiveInbound {
        dir: PathBuf,
        peer: NodeId,
        owner: String,
        uid: u32,
        gid: Option<u32>,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateDir(dir) => write!(f, "create directory {}", dir.display()),
            Action::CreateStore { dir, node } => write!(
                f,
                "create store {} for node {node} (format {})",
                dir.display(),
                crate::store::FORMAT_VERSION
            ),
            Action::Link { link, target } => {
                write!(f, "link {} -> {}", link.display(), target.display())
            }
            Action::Relink { link, old, target } => write!(
                f,
                "fix link {} -> {} (was -> {})",
                link.display(),
                target.display(),
                old.display()
            ),
            Action::Unlink { link, kept } => {
                write!(
                    f,
                    "remove link {} (peer no longer in the spec)",
                    link.display()
                )?;
                for dir in kept {
                    write!(f, "; kept {}", dir.display())?;
                }
                Ok(())
            }
            Action::GiveInbound {
                dir,
                peer,
                owner,
                uid,
                gid,
            } => {
                write!(
                    f,
                    "give {} (peer {peer}) to {owner} (uid {uid}",
                    dir.display()
                )?;
                match gid {
                    Some(gid) => write!(f, ", gid {gid})"),
                    None => write!(f, ", group unchanged)"),
                }
            }
        }
    }
}

/// What a reconcile run did and noticed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{}: {why}; it is not globofs's to change, so nothing was touched there", path.display())]
    NotOurs { path: PathBuf, why: String },
    #[error(
        "peers[] {peer}: owner {owner} does not exist on this machine (create the user first, or give a numeric uid); {dir} was left as it is",
        dir = dir.display()
    )]
    UnknownOwner {
        peer: NodeId,
        owner: PeerOwner,
        dir: PathBuf,
    },
    #[error("peers[] {peer}: cannot look up owner {owner}: {source}")]
    OwnerLookup {
        peer: NodeId,
        owner: PeerOwner,
        source: nix::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Run {
    dry_run: bool,
    outcome: Outcome,
}

impl Run {
    fn mkdir(&mut self, dir: &Path, mode: u32) -> Result<(), ReconcileError> {
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ReconcileError::NotOurs {
                path: dir.to_path_buf(),
                why: "a directory belongs here, but something else is there".into(),
            }),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.outcome
                    .actions
                    .push(Action::CreateDir(dir.to_path_buf()));
                if !self.dry_run {
                    crate::layout::create_dirs(dir).map_err(|err| StoreError::io(dir, err))?;
                    if mode != crate::layout::DIR_MODE {
                        set_mode(dir, mode)?;
                    }
                }
                Ok(())
            }
            Err(err) => Err(StoreError::io(dir, err).into()),
        }
    }

    /// Makes `link` a symlink to `target`, replacing only a symlink.
    fn link(&mut self, link: &Path, target: &Path) -> Result<(), ReconcileError> {
        match fs::symlink_metadata(link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let old = fs::read_link(link).map_err(|err| StoreError::io(link, err))?;
                if old == target {
                    return Ok(());
                }
                self.outcome.actions.push(Action::Relink {
                    link: link.to_path_buf(),
                    old,
                    target: target.to_path_buf(),
                });
                if !self.dry_run {
                    // Make the new link beside the old one, then rename over it: never a moment without a link.
                    let tmp = link.with_file_name(format!(
                        ".{}.globofs-tmp",
                        link.file_name().and_then(|n| n.to_str()).unwrap_or("link")
                    ));
                    let _ = fs::remove_file(&tmp);
                    symlink(target, &tmp).map_err(|err| StoreError::io(&tmp, err))?;
                    fs::rename(&tmp, link).map_err(|err| StoreError::io(link, err))?;
                }
                Ok(())
            }
            Ok(meta) => Err(ReconcileError::NotOurs {
                path: link.to_path_buf(),
                why: format!(
                    "a symlink to {} belongs here, but a {} is there",
                    target.display(),
                    if meta.is_dir() { "directory" } else { "file" }
                ),
            }),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.outcome.actions.push(Action::Link {
                    link: link.to_path_buf(),
                    target: target.to_path_buf(),
                });
                if !self.dry_run {
                    symlink(target, link).map_err(|err| StoreError::io(link, err))?;
                }
                Ok(())
            }
            Err(err) => Err(StoreError::io(link, err).into()),
        }
    }
}

/// Reconciles the volume of `spec`; with `dry_run`, only reports.
pub fn reconcile(spec: &Spec, dry_run: bool) -> Result<Outcome, ReconcileError> {
    let mut run = Run {
        dry_run,
        outcome: Outcome::default(),
    };
    let volume = &spec.volume;
    let node = spec.node.to_string();
    run.mkdir(volume, 0o755)?;

    let layout = StoreLayout::new(volume.join(&node));
    let format_file = layout.format_file();
    match fs::symlink_metadata(&layout.dir) {
        Ok(meta) if meta.is_dir() => match StoreMeta::read(&format_file) {
            Ok(meta) if meta.node == spec.node => {}
            Ok(meta) => {
                // Another node's store: not ours to change (exit 1, like any squatter).
                return Err(ReconcileError::NotOurs {
                    path: layout.dir.clone(),
                    why: format!(
                        "its `format` file says this is the store of node {}, but the spec says this node is {node}",
                        meta.node
                    ),
                });
            }
            Err(err) if err.is_not_found() => {
                let empty = fs::read_dir(&layout.dir)
                    .map_err(|err| StoreError::io(&layout.dir, err))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(ReconcileError::NotOurs {
                        path: layout.dir.clone(),
                        why: "a directory without a `format` file, and not empty".into(),
                    });
                }
                create_store(&mut run, &layout, spec.node)?;
            }
            Err(err) => return Err(err.into()),
        },
        Ok(_) => {
            return Err(ReconcileError::NotOurs {
                path: layout.dir.clone(),
                why: "this node's store belongs here, but it is not a directory".into(),
            });
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            if !dry_run {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&layout.dir)
                    .and_then(|()| set_mode_io(&layout.dir))
                    .map_err(|err| StoreError::io(&layout.dir, err))?;
            }
            create_store(&mut run, &layout, spec.node)?;
        }
        Err(err) => return Err(StoreError::io(&layout.dir, err).into()),
    }
    for dir in layout.fixed_dirs() {
        run.mkdir(&dir, 0o755)?;
    }
    run.link(&volume.join("self"), Path::new(&node))?;

    for peer in &spec.peers {
        run.mkdir(&layout.inbound(peer.id), 0o755)?;
        run.mkdir(&layout.outbound(peer.id), 0o755)?;
        run.link(&volume.join(peer.id.to_string()), &peer.path)?;
        match exists_within(&peer.path, spec.timeout) {
            Some(true) => {}
            Some(false) => run.outcome.warnings.push(format!(
                "peer {}: {} does not exist yet (unmounted or away); its changes wait in {}",
                peer.id,
                peer.path.display(),
                layout.outbound(peer.id).display()
            )),
            None => run.outcome.warnings.push(format!(
                "peer {}: {} did not answer within {:?} (a hung remote filesystem?); its changes wait in {}",
                peer.id,
                peer.path.display(),
                spec.timeout,
                layout.outbound(peer.id).display()
            )),
        }
    }

    give_inbound_to_owners(&mut run, spec, &layout)?;

    // Links to peers no longer in the spec: remove the link, keep the spools.
    if let Ok(entries) = fs::read_dir(volume) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<NodeId>().ok()) else {
                continue;
            };
            if id == spec.node || spec.peer(id).is_some() {
                continue;
            }
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if !is_link {
                run.outcome.warnings.push(format!(
                    "{}: a directory named like a node id that is neither this node nor a peer; left alone",
                    entry.path().display()
                ));
                continue;
            }
            let kept: Vec<PathBuf> = [layout.inbound(id), layout.outbound(id)]
                .into_iter()
                .filter(|dir| dir.exists())
                .collect();
            run.outcome.actions.push(Action::Unlink {
                link: entry.path(),
                kept,
            });
            if !dry_run {
                fs::remove_file(entry.path()).map_err(|err| StoreError::io(entry.path(), err))?;
            }
        }
    }

    if let Some(warning) = probe_case_folding(&layout) {
        run.outcome.warnings.push(warning);
    }
    Ok(run.outcome)
}

/// Gives each peer's `spool/inbound/<peer>/` to the login the spec names as its
/// `owner` (FORMAT.md section 18): the user, and the user's primary group when
/// it has a passwd entry. The directory and everything under it change owner
/// only while the directory itself is not the owner's yet, so a second run
/// changes nothing. A user name that does not exist is an error, before
/// anything of that peer is touched.
fn give_inbound_to_owners(
    run: &mut Run,
    spec: &Spec,
    layout: &StoreLayout,
) -> Result<(), ReconcileError> {
    use nix::unistd::{Uid, User};
    use std::os::unix::fs::MetadataExt;
    for peer in &spec.peers {
        let Some(owner) = &peer.owner else { continue };
        let dir = layout.inbound(peer.id);
        let lookup = |found: nix::Result<Option<User>>| {
            found.map_err(|source| ReconcileError::OwnerLookup {
                peer: peer.id,
                owner: owner.clone(),
                source,
            })
        };
        let (uid, gid) = match owner {
            PeerOwner::Name(name) => match lookup(User::from_name(name))? {
                Some(user) => (user.uid.as_raw(), Some(user.gid.as_raw())),
                None => {
                    return Err(ReconcileError::UnknownOwner {
                        peer: peer.id,
                        owner: owner.clone(),
                        dir,
                    });
                }
            },
            PeerOwner::Uid(uid) => {
                let user = lookup(User::from_uid(Uid::from_raw(*uid)))?;
                (*uid, user.map(|user| user.gid.as_raw()))
            }
        };
        let current = match fs::symlink_metadata(&dir) {
            Ok(meta) => Some((meta.uid(), meta.gid())),
            // Only in a dry run: reconcile made the directory above.
            Err(err) if err.kind() == ErrorKind::NotFound => None,
            Err(err) => return Err(StoreError::io(&dir, err).into()),
        };
        if current.is_some_and(|(u, g)| u == uid && gid.is_none_or(|gid| gid == g)) {
            continue;
        }
        tracing::info!(peer = %peer.id, %owner, uid, dir = %dir.display(), "inbound spool to its peer's login");
        run.outcome.actions.push(Action::GiveInbound {
            dir: dir.clone(),
            peer: peer.id,
            owner: owner.to_string(),
            uid,
            gid,
        });
        if !run.dry_run {
            chown_tree(&dir, uid, gid)?;
        }
    }
    Ok(())
}

/// `chown -R` without following symlinks.
fn chown_tree(path: &Path, uid: u32, gid: Option<u32>) -> Result<(), StoreError> {
    std::os::unix::fs::lchown(path, Some(uid), gid).map_err(|err| StoreError::io(path, err))?;
    let meta = fs::symlink_metadata(path).map_err(|err| StoreError::io(path, err))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|err| StoreError::io(path, err))? {
            let entry = entry.map_err(|err| StoreError::io(path, err))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn create_store(run: &mut Run, layout: &StoreLayout, node: NodeId) -> Result<(), ReconcileError> {
    run.outcome.actions.push(Action::CreateStore {
        dir: layout.dir.clone(),
        node,
    });
    if run.dry_run {
        return Ok(());
    }
    for dir in layout.fixed_dirs() {
        crate::layout::create_dirs(&dir).map_err(|err| StoreError::io(&dir, err))?;
    }
    StoreMeta::fresh(node).write(&layout.format_file())?;
    Ok(())
}

/// Warns when the store's filesystem folds case (`A` and `a` would merge).
///
/// Read-only, so that a run with nothing to do changes nothing (not even a
/// directory's mtime): on a case-folding filesystem `FORMAT` names the same file
/// as the store's `format`.
fn probe_case_folding(layout: &StoreLayout) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let lower = fs::symlink_metadata(layout.format_file()).ok()?;
    let upper = fs::symlink_metadata(layout.dir.join("FORMAT")).ok()?;
    let folded = lower.dev() == upper.dev() && lower.ino() == upper.ino();
    folded.then(|| {
        format!(
            "{}: this filesystem folds case, so names differing only in case would merge; use a case-sensitive filesystem for the store",
            layout.dir.display()
        )
    })
}

/// Whether `path` exists, asked on a thread of its own so that a hung remote
/// filesystem (a stat stuck in the kernel) costs at most `timeout`; `None`
/// when it did not answer in time (the thread is left behind).
fn exists_within(path: &Path, timeout: std::time::Duration) -> Option<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("reconcile-peer-check".into())
        .spawn(move || {
            let _ = tx.send(path.exists());
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// Gives a directory this code just made the store's directory mode exactly
/// (its `mkdir` mode went through the umask).
fn set_mode_io(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(crate::layout::DIR_MODE))
}
