//! Crash points for the fault tests: `GLOBOFS_CRASH_AT=<name>` makes the
//! process kill itself with SIGKILL when it reaches the point of that name, so
//! a test can stop a writer at an exact step of a commit or an import (the
//! windows docs/FORMAT.md §14 describes) instead of hoping a random kill lands
//! there. Unset (always, outside tests), a point costs one relaxed load.
//!
//! `GLOBOFS_STALL_AT=<name>` instead makes the thread that reaches it sleep
//! for two minutes (a pass that takes long, for the stop tests).
//!
//! Points: `commit:published` (version file linked, nothing logged),
//! `commit:logged` (log line written, not journaled), `import:published`,
//! `import:logged` (the same for a version sync imports), `fuse:create`
//! (a create request, before anything is made: its caller holds the
//! directory's lock while it waits).

use std::sync::OnceLock;

static TARGET: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();

/// Dies of SIGKILL here if `GLOBOFS_CRASH_AT` names `point`; sleeps here if
/// `GLOBOFS_STALL_AT` does.
pub fn hit(point: &str) {
    let (crash, stall) = TARGET.get_or_init(|| {
        (
            std::env::var("GLOBOFS_CRASH_AT").ok(),
            std::env::var("GLOBOFS_STALL_AT").ok(),
        )
    });
    if crash.as_deref() == Some(point) {
        tracing::warn!(point, "GLOBOFS_CRASH_AT: killing this process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    if stall.as_deref() == Some(point) {
        tracing::warn!(point, "GLOBOFS_STALL_AT: stalling this thread");
        std::thread::sleep(std::time::Duration::from_secs(120));
    }
}
