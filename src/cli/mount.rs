//! `globofs mount`: picks the mount point from the arguments or the spec and
//! hands over to the mount session, [`crate::mount::run`]. With `--volume DIR`
//! it first makes (once) and then keeps a spec of its own in the volume
//! directory, `DIR/globofs.yaml`, so an ad-hoc mount needs no spec written
//! by hand and its node id stays the same from one run to the next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;
use crate::ids::NodeId;
use crate::mount::{MountError, Options};
use crate::spec::Spec;
use crate::spec::units::ByteSize;

/// The spec `globofs mount --volume DIR` keeps, inside DIR.
pub const KEPT_SPEC: &str = "globofs.yaml";

/// A line of a kept spec the command still manages: while it is there,
/// `--peer` arguments that differ from the spec's peers rewrite them.
const MANAGED: &str = "# Made by `globofs mount --volume`: its peers follow the --peer arguments of the next run that gives any. Delete this line to keep edits of your own.\n";

pub fn mount(
    spec: &Spec,
    mountpoint: Option<PathBuf>,
    threads: usize,
    stop_grace: Duration,
) -> Result<(), Failure> {
    let mountpoint_from_spec = mountpoint.is_none();
    let mountpoint = mountpoint
        .or_else(|| spec.mount_path.clone())
        .ok_or_else(|| {
            Failure::input("no mount point: give one or set `mount.path` in the spec")
        })?;
    let options = Options {
        mountpoint,
        mountpoint_from_spec,
        threads,
        stop_grace,
    };
    crate::mount::run(spec, &options).map_err(Failure::from)
}

/// The spec for `globofs mount --volume DIR [--peer ID=PATH]...`:
/// `DIR/globofs.yaml`, made when missing (with the node id of a store already
/// in DIR, else a new one), else kept as it is; `peers`, when given and
/// different from the kept spec's, replace them as long as the file still
/// has its [`MANAGED`] line.
pub fn kept_spec(volume: &Path, peers: &[String]) -> Result<PathBuf, Failure> {
    let volume = std::path::absolute(volume)
        .map_err(|err| Failure::input(format!("--volume {}: {err}", volume.display())))?;
    std::fs::create_dir_all(&volume)
        .map_err(|err| Failure::runtime(format!("{}: {err}", volume.display())))?;
    let file = volume.join(KEPT_SPEC);
    let wanted = parse_peers(peers)?;
    let (node, block_size) = match std::fs::read_to_string(&file) {
        Ok(text) => {
            let spec = Spec::load(&file)?;
            let have: Vec<(NodeId, PathBuf)> = spec
                .peers
                .iter()
                .map(|peer| (peer.id, peer.path.clone()))
                .collect();
            if peers.is_empty() || same_peers(&have, &wanted) {
                return Ok(file);
            }
            if !text.lines().any(|line| line == MANAGED.trim_end()) {
                return Err(Failure::input(format!(
                    "{}: its peers differ from the --peer arguments, and it is no longer managed by `globofs mount --volume` (its line \"# Made by ...\" was removed): edit its peers there, or run without --peer",
                    file.display()
                )));
            }
            eprintln!(
                "globofs: {}: peers now as given by --peer ({})",
                file.display(),
                peers.join(", ")
            );
            (
                spec.node,
                Some(ByteSize(u64::from(spec.block_size)).to_string()),
            )
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let node = store_in(&volume).unwrap_or_else(NodeId::random);
            eprintln!(
                "globofs: made {} (node {node}); later runs with --volume {} use it",
                file.display(),
                volume.display()
            );
            (node, None)
        }
        Err(err) => return Err(Failure::runtime(format!("{}: {err}", file.display()))),
    };
    let peers: Vec<String> = wanted
        .iter()
        .map(|(id, path)| format!("{id}={}", path.display()))
        .collect();
    let text = super::commands::spec_text(volume.clone(), node, block_size, None, peers, MANAGED)?;
    // Whole or not at all: a new name, then renamed over the old one.
    let new = volume.join(format!(".{KEPT_SPEC}.new"));
    std::fs::write(&new, text)
        .and_then(|()| std::fs::rename(&new, &file))
        .map_err(|err| Failure::runtime(format!("{}: {err}", file.display())))?;
    Ok(file)
}

/// The node whose store the volume directory's `self` link names, if any.
fn store_in(volume: &Path) -> Option<NodeId> {
    let target = std::fs::read_link(volume.join("self")).ok()?;
    target.to_str()?.parse().ok()
}

/// `ID=PATH` arguments, with relative paths made absolute.
fn parse_peers(peers: &[String]) -> Result<Vec<(NodeId, PathBuf)>, Failure> {
    peers
        .iter()
        .map(|peer| {
            let (id, path) = peer
                .split_once('=')
                .ok_or_else(|| Failure::input(format!("--peer {peer:?}: write ID=PATH")))?;
            let id = super::parse_node_id(id)?;
            let path = std::path::absolute(path)
                .map_err(|err| Failure::input(format!("--peer {peer:?}: {err}")))?;
            Ok((id, path))
        })
        .collect()
}

fn same_peers(have: &[(NodeId, PathBuf)], wanted: &[(NodeId, PathBuf)]) -> bool {
    let mut have = have.to_vec();
    let mut wanted = wanted.to_vec();
    have.sort();
    wanted.sort();
    have == wanted
}

impl From<MountError> for Failure {
    fn from(err: MountError) -> Failure {
        match err {
            MountError::Input(message) => Failure::input(message),
            MountError::Runtime(message) => Failure::runtime(message),
            MountError::Store(err) => Failure::from(err),
        }
    }
}
