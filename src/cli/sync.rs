//! The commands that talk to peers: sync, status, mirror (filled in by the sync layer).

use std::path::Path;

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// One sync pass: push queued changes to every reachable peer, then apply
    /// what peers pushed to us.
    Sync,
}

pub fn run(spec_path: Option<&Path>, command: SyncCommand) -> Result<(), Failure> {
    let _spec = super::load_spec(spec_path)?;
    match command {
        SyncCommand::Sync => Err(Failure::runtime("sync is not implemented yet")),
    }
}
