//! GloboFS: a filesystem shared by many machines with no servers of its own.
//!
//! Layers, bottom up: [`ids`] and [`layout`] (names and places), [`spec`] (the
//! volume spec), [`store`] (one node's store), [`reconcile`] (the on-disk
//! layout a spec declares), [`sync`] (exchange through peers' spools), [`vfs`]
//! (the filesystem core, fuser-free), `fuse` (the thin fuser adapter) and [`cli`].

pub mod cli;
pub mod fuse;
pub mod ids;
pub mod layout;
pub mod reconcile;
pub mod spec;
pub mod store;
pub mod sync;
pub mod vfs;
