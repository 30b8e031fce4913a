//! One node's store on local disk: content-addressed blocks under `hashes/`,
//! per-path version logs and version files under `root/`, hard links as
//! reference counts, the node's journal and its per-peer spools.
//!
//! This layer knows nothing of FUSE; the CLI, the mount and sync all use it.

mod error;
mod meta;

pub use error::{IoContext, StoreError};
pub use meta::{FORMAT_VERSION, StoreMeta, set_mode};
