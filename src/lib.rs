//! GloboFS: a filesystem shared by many machines with no servers of its own.
//!
//! Layers, bottom up: [`ids`] and [`layout`] (names and places), [`spec`] (the
//! volume spec; [`ignore`] its `ignore` patterns), [`store`] (one node's
//! store), [`reconcile`] (the on-disk layout a spec declares), [`sync`]
//! (exchange through peers' spools), [`vfs`] (the filesystem core, fuser-free),
//! `fuse` (the thin fuser adapter), [`mount`] (the mount session) and [`cli`].

pub mod cli;
pub mod failpoint;
pub mod fuse;
pub mod ids;
pub mod ignore;
pub mod layout;
pub mod mount;
pub mod reconcile;
pub mod spec;
pub mod store;
pub mod supervise;
pub mod sync;
pub mod vfs;
pub mod when;

/// Locks `mutex`, also after another thread panicked holding it: the data
/// behind this crate's mutexes stays consistent between statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
