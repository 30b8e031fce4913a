//! Process and kernel settings a mount makes for itself: fewer malloc
//! arenas, giving freed heap back after the kernel forgets many inodes, and
//! a readahead of one block on the mount's device.

// FFI: malloc_trim and mallopt have no safe wrapper; every block says why it is sound.
#![allow(unsafe_code)]

use std::path::Path;

/// After the kernel forgets this many inodes (memory reclaim drops whole
/// trees), the mount gives the memory they held back to the system.
pub(super) const TRIM_AFTER_FORGETS: u64 = 4096;

/// Returns freed heap memory to the system: without it the allocator keeps
/// what a forgotten tree of inodes used, and a tree listed again afterwards
/// lands beside it rather than in it.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// glibc gives busy threads arenas of their own (up to eight per core), each
/// keeping the memory freed into it: with request threads and listing threads
/// that is tens of MiB of resident memory held for nothing. Two arenas serve
/// the mount's few contended allocations just as well.
pub(super) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called before the
    // mount's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// FUSE mounts start with the kernel's default readahead (128 KiB), which caps
/// sequential reads at one small request per round trip; ask for 1 MiB (a block).
pub(super) fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, "1024") {
        Ok(()) => tracing::debug!(%knob, "readahead 1 MiB"),
        Err(err) => tracing::debug!(%knob, error = %err, "readahead left at the default"),
    }
}
