//! The core's locks, each with its rank in the lock order written at the top
//! of [`super`]. Debug builds keep, per thread, the ranks it holds and panic when
//! a lock is taken while one of an equal or higher rank is held (before it
//! could deadlock), so every test run checks the documented order; release
//! builds keep nothing. A lock poisoned by a panicking thread is taken anyway:
//! the data behind these locks stays consistent between statements.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, RwLock};

/// A lock's place in the order: lower ranks are taken first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Rank {
    Names = 1,
    Handles = 2,
    Handle = 3,
    DirtyMap = 4,
    WriteState = 5,
    Created = 6,
    Inodes = 7,
    Listings = 8,
    OpenDirs = 9,
    Own = 10,
}

/// A mutex with a rank.
pub(super) struct Ranked<T> {
    rank: Rank,
    inner: Mutex<T>,
}

/// A reader-writer lock with a rank.
pub(super) struct RankedRw<T> {
    rank: Rank,
    inner: RwLock<T>,
}

/// A held lock: its guard, and (debug builds) its rank, given back on drop.
pub(super) struct Held<G> {
    guard: G,
    #[cfg(debug_assertions)]
    rank: Rank,
}

impl<T> Ranked<T> {
    pub(super) fn new(rank: Rank, value: T) -> Ranked<T> {
        Ranked {
            rank,
            inner: Mutex::new(value),
        }
    }
}

impl<T> RankedRw<T> {
    pub(super) fn new(rank: Rank, value: T) -> RankedRw<T> {
        RankedRw {
            rank,
            inner: RwLock::new(value),
        }
    }

    pub(super) fn read(&self) -> Held<std::sync::RwLockReadGuard<'_, T>> {
        let rank = taking(self.rank);
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        held(guard, rank)
    }

    pub(super) fn write(&self) -> Held<std::sync::RwLockWriteGuard<'_, T>> {
        let rank = taking(self.rank);
        let guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        held(guard, rank)
    }
}

/// Locks `mutex` (the core's counterpart of [`crate::lock`]).
pub(super) fn lock<T>(mutex: &Ranked<T>) -> Held<std::sync::MutexGuard<'_, T>> {
    let rank = taking(mutex.rank);
    let guard = mutex.inner.lock().unwrap_or_else(|p| p.into_inner());
    held(guard, rank)
}

#[cfg(debug_assertions)]
fn held<G>(guard: G, rank: Rank) -> Held<G> {
    Held { guard, rank }
}

#[cfg(not(debug_assertions))]
fn held<G>(guard: G, _rank: Rank) -> Held<G> {
    Held { guard }
}

#[cfg(debug_assertions)]
thread_local! {
    static HELD: std::cell::RefCell<Vec<Rank>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks that `rank` may be taken now and counts it as held.
#[cfg(debug_assertions)]
fn taking(rank: Rank) -> Rank {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if let Some(top) = held.iter().max().filter(|top| **top >= rank) {
            panic!("lock order: taking {rank:?} while holding {top:?} (held: {held:?})");
        }
        held.push(rank);
    });
    rank
}

#[cfg(not(debug_assertions))]
fn taking(rank: Rank) -> Rank {
    rank
}

#[cfg(debug_assertions)]
impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        let rank = self.rank;
        // Not while the thread is being torn down (the list may be gone).
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|r| *r == rank) {
                held.remove(at);
            }
        });
    }
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_taken_in_rank_order_are_fine_in_any_release_order() {
        let names = RankedRw::new(Rank::Names, ());
        let map = Ranked::new(Rank::DirtyMap, 1);
        let inodes = Ranked::new(Rank::Inodes, 2);
        let n = names.read();
        let m = lock(&map);
        drop(n);
        let i = lock(&inodes);
        assert_eq!(*m + *i, 3);
        drop(m);
        drop(i);
        // Everything was given back: the lowest rank can be taken again.
        let _again = names.write();
    }

    #[cfg(debug_assertions)]
    #[test]
    fn a_lock_taken_out_of_order_panics_in_debug_builds() {
        let result = std::thread::spawn(|| {
            let inodes = Ranked::new(Rank::Inodes, ());
            let handles = Ranked::new(Rank::Handles, ());
            let _i = lock(&inodes);
            let _h = lock(&handles);
        })
        .join();
        let message = result.unwrap_err();
        let text = message.downcast_ref::<String>().unwrap();
        assert!(
            text.contains("taking Handles while holding Inodes"),
            "{text}"
        );
    }

    #[cfg(debug_assertions)]
    #[test]
    fn two_locks_of_one_rank_at_once_panic_in_debug_builds() {
        let result = std::thread::spawn(|| {
            let a = Ranked::new(Rank::Handle, ());
            let b = Ranked::new(Rank::Handle, ());
            let _a = lock(&a);
            let _b = lock(&b);
        })
        .join();
        assert!(result.is_err());
    }
}
