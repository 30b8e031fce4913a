//! The commands that talk to peers: sync, status, mirror, drop.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use clap::Subcommand;

use super::{Failure, out};
use crate::layout::VPath;
use crate::store::Store;
use crate::sync::{self, SyncError};

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// One sync pass: push queued changes to every reachable peer, then apply
    /// what peers pushed to us.
    ///
    /// Prints one line per peer and the totals. A peer that is away is reported,
    /// not an error: its queue waits for the next pass. Exit 3 when something
    /// stopped the pass with a peer (see the `error` lines).
    Sync {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// This node's store was made anew (a replaced disk) and the old one is
        /// gone for good: replace what the old store left in peers' spools for
        /// this node instead of refusing to push there. Remembered until every
        /// peer is taken over (later passes, the mount's too, go on with peers
        /// that were away). Never use it while the old store may still run (two
        /// stores claiming one node id diverge).
        #[arg(long)]
        take_over: bool,
        /// Also compare this node's whole version set with every reachable
        /// peer's (anti-entropy: per-directory digests, descending only where
        /// they differ) and repair both directions: take what we lack from the
        /// peer's store, push again what it lacks. Runs by itself every
        /// `sync.full_check` and after damage is found.
        #[arg(long)]
        full: bool,
    },

    /// Per peer: reachable, queued outbound, unapplied inbound (and whether
    /// applying is stuck at a bad line of the peer's journal), last push and
    /// apply; the open conflict copies; how many blocks of the current tree are
    /// not local; with `copies` above 1, the blocks and bytes held by fewer
    /// nodes, per top-level directory (counted from the reachable peers' stores).
    Status {
        /// JSON output.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Node-exporter textfile format.
        #[arg(long)]
        prometheus: bool,
        /// Skip the block count (it reads every current version and stats
        /// every block of the tree).
        #[arg(long)]
        no_blocks: bool,
    },

    /// Evict local blocks of the current tree (or PATH) that other nodes hold.
    ///
    /// A block is evicted only when at least `cache.min_copies` (default 1)
    /// other reachable nodes hold it, and at least `copies` when the spec asks
    /// for more (so that many still hold it after); each of their copies is
    /// read on the peer and its SHA-256 checked first. Kept blocks are listed
    /// with a path naming them. Eviction removes the block from `hashes/`
    /// and its links under `root/`. Evicted blocks stay readable: a read (`get`,
    /// the mount) pulls them back.
    Drop {
        /// Volume path (default: the whole volume).
        path: Option<OsString>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },

    /// Pull every block of the current tree (or PATH) that is not local from
    /// peers. Resumable: blocks already here are skipped.
    Mirror {
        /// Volume path (default: the whole volume).
        path: Option<OsString>,
        /// Blocks pulled at a time.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: u16,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

impl From<SyncError> for Failure {
    fn from(err: SyncError) -> Failure {
        match err {
            SyncError::Store(err) => err.into(),
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).map_err(Failure::runtime)?
    ))
}

pub fn run(spec_path: Option<&Path>, command: SyncCommand) -> Result<(), Failure> {
    let spec = super::load_spec(spec_path)?;
    match command {
        SyncCommand::Sync {
            json: as_json,
            take_over,
            full,
        } => {
            let store = Store::open_spec(&spec)?;
            let mut syncer = sync::Syncer::new(&spec);
            if take_over {
                syncer = syncer.taking_over();
            }
            if full {
                syncer = syncer.full();
            }
            let report = syncer.pass(&store)?;
            // `cache.max_size`: evict least recently read blocks after the pass.
            // Reported after the pass's own output, so a failure here hides nothing.
            let (cache, cache_error) = match spec.cache_max_size {
                Some(max) => {
                    let needed = sync::copies::others_needed(spec.min_copies, spec.copies);
                    match sync::shrink_to(&store, syncer.fetcher().remotes(), max, needed) {
                        Ok(report) => (Some(report), None),
                        Err(err) => (None, Some(err)),
                    }
                }
                None => (None, None),
            };
            if as_json {
                #[derive(serde::Serialize)]
                struct Output<'a> {
                    #[serde(flatten)]
                    report: &'a sync::SyncReport,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    cache: Option<sync::EvictReport>,
                }
                json(&Output {
                    report: &report,
                    cache,
                })?;
            } else {
                let mut text = String::new();
                for peer in &report.peers {
                    text.push_str(&format!(
                        "peer {}: {}pushed {}, applied {}, conflicts {}",
                        peer.peer,
                        match &peer.away {
                            Some(why) => format!("unreachable ({why}); "),
                            None => String::new(),
                        },
                        peer.pushed,
                        peer.applied,
                        peer.conflicts
                    ));
                    if peer.repaired > 0 {
                        text.push_str(&format!(", repaired {}", peer.repaired));
                    }
                    if !peer.refused.is_empty() {
                        text.push_str(&format!(", refused {}", peer.refused.len()));
                    }
                    text.push('\n');
                    for why in &peer.refused {
                        text.push_str(&format!("  refused: {why}\n"));
                    }
                    for why in &peer.errors {
                        text.push_str(&format!("  error: {why}\n"));
                    }
                    for why in &peer.warnings {
                        text.push_str(&format!("  warning: {why}\n"));
                    }
                    // What explains a count: another process of this node
                    // pushing (the mount), a torn journal tail skipped...
                    for why in &peer.notes {
                        text.push_str(&format!("  note: {why}\n"));
                    }
                }
                text.push_str(&format!(
                    "total: pushed {}, applied {}, conflicts {}, unreachable {}\n",
                    report.pushed(),
                    report.applied(),
                    report.conflicts(),
                    report.unreachable()
                ));
                if let Some(copies) = &report.copies {
                    text.push_str(&format!(
                        "copies: {} wanted; {} blocks in the current tree, {} held by fewer nodes before this pass, {} copied to peers, {} still short",
                        copies.wanted,
                        copies.blocks,
                        copies.short_before,
                        copies.copied,
                        copies.short_after
                    ));
                    if copies.short_after > 0 {
                        text.push_str(&format!(
                            " ({} not held here, {} with too few peers accepting)",
                            copies.not_local, copies.too_few_peers
                        ));
                    }
                    text.push('\n');
                    for why in &copies.not_counted {
                        text.push_str(&format!("  not counted: {why}\n"));
                    }
                }
                if let Some(cache) = &cache {
                    text.push_str(&format!(
                        "cache: {} bytes of blocks here (max {}); evicted {} blocks ({} bytes), kept {} with too few copies elsewhere\n",
                        cache.local_bytes_after.unwrap_or(0),
                        spec.cache_max_size.unwrap_or(0),
                        cache.evicted,
                        cache.bytes_freed,
                        cache.kept_too_few_copies
                    ));
                }
                out(&text)?;
            }
            if let Some(err) = cache_error {
                return Err(Failure::runtime(format!("cache.max_size: {err}")));
            }
            if report.errors() > 0 {
                return Err(Failure::runtime(format!(
                    "sync: {} peer error(s)",
                    report.errors()
                )));
            }
            Ok(())
        }
        SyncCommand::Status {
            json: as_json,
            prometheus,
            no_blocks,
        } => {
            let store = Store::open_spec(&spec)?;
            let status = sync::status_with(&store, &spec, !no_blocks)?;
            if as_json {
                json(&status)
            } else if prometheus {
                out(&status.to_prometheus())
            } else {
                out(&status.to_text())
            }
        }
        SyncCommand::Drop {
            path,
            json: as_json,
        } => {
            let store = super::open_with_peers(&spec)?;
            let path = path_or_root(path)?;
            let remotes = sync::remote::remotes(&spec);
            let needed = sync::copies::others_needed(spec.min_copies, spec.copies);
            let report = sync::drop_tree(&store, &remotes, &path, needed)?;
            if as_json {
                json(&report)
            } else {
                let rule = if spec.copies > spec.min_copies {
                    format!(
                        "`copies: {}` keeps every block on {} nodes",
                        spec.copies, spec.copies
                    )
                } else {
                    format!("cache.min_copies: {}", spec.min_copies)
                };
                let mut text = format!(
                    "drop: {} local blocks considered: {} evicted ({} bytes, {} path links), {} kept (fewer than {needed} other reachable node(s) hold a good copy; {rule}); {} were not local\n",
                    report.considered,
                    report.evicted,
                    report.bytes_freed,
                    report.links_removed,
                    report.kept_too_few_copies,
                    report.not_local
                );
                for kept in &report.kept {
                    text.push_str(&format!(
                        "  kept: block {} of {}: fewer than {needed} other reachable node(s) hold it\n",
                        kept.hash, kept.path
                    ));
                }
                if report.kept_too_few_copies > report.kept.len() as u64 {
                    text.push_str(&format!(
                        "  ... and {} more kept blocks\n",
                        report.kept_too_few_copies - report.kept.len() as u64
                    ));
                }
                out(&text)
            }
        }
        SyncCommand::Mirror {
            path,
            threads,
            json: as_json,
        } => {
            let store = super::open_with_peers(&spec)?;
            let path = path_or_root(path)?;
            let bar = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "mirror {wide_bar} {pos}/{len} blocks ({eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            } else {
                indicatif::ProgressBar::hidden()
            };
            let report = sync::mirror(&store, &path, usize::from(threads), &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            if as_json {
                json(&report)?;
            } else {
                let mut text = format!(
                    "mirror: {} files, {} blocks: {} were here, {} fetched ({} bytes), {} failed\n",
                    report.files,
                    report.blocks,
                    report.present,
                    report.fetched,
                    report.bytes_fetched,
                    report.failed.len()
                );
                for why in &report.failed {
                    text.push_str(&format!("  {why}\n"));
                }
                out(&text)?;
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::runtime("mirror: some blocks could not be fetched"))
            }
        }
    }
}

/// A volume path from the command line, the root when none was given.
fn path_or_root(path: Option<OsString>) -> Result<VPath, Failure> {
    match path {
        Some(text) => VPath::parse(&text).map_err(Failure::input),
        None => Ok(VPath::root()),
    }
}
