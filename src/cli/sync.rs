//! The commands that talk to peers: sync, status, mirror.

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
    },

    /// Per peer: reachable, queued outbound, unapplied inbound, last push and
    /// apply; and the open conflict copies.
    Status {
        /// JSON output.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Node-exporter textfile format.
        #[arg(long)]
        prometheus: bool,
    },

    /// Pull every block of the current tree (or PATH) that is not local from
    /// peers. Resumable: blocks already here are skipped.
    Mirror {
        /// Volume path (default: the whole volume).
        path: Option<OsString>,
        /// Blocks pulled at a time.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
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
        SyncCommand::Sync { json: as_json } => {
            let store = Store::open_spec(&spec)?;
            let report = sync::sync_once(&store, &spec)?;
            if as_json {
                json(&report)?;
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
                }
                text.push_str(&format!(
                    "total: pushed {}, applied {}, conflicts {}, unreachable {}\n",
                    report.pushed(),
                    report.applied(),
                    report.conflicts(),
                    report.unreachable()
                ));
                out(&text)?;
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
        } => {
            let store = Store::open_spec(&spec)?;
            let status = sync::status(&store, &spec)?;
            if as_json {
                json(&status)
            } else if prometheus {
                out(&status.to_prometheus())
            } else {
                out(&status.to_text())
            }
        }
        SyncCommand::Mirror {
            path,
            threads,
            json: as_json,
        } => {
            let store = super::open_with_peers(&spec)?;
            let path = match path {
                Some(text) => VPath::parse(&text).map_err(Failure::input)?,
                None => VPath::root(),
            };
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
