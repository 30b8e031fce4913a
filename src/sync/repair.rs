//! `globofs verify --repair`: after a verify pass, bring back every corrupt or
//! lost block from a good copy, and say what stays broken.
//!
//! A good copy is, in this order: a link of the block under some
//! `root/<path>/hashes/` whose content still matches (a block that only
//! `hashes/` lost: relinked, nothing copied), then the peers, through the
//! store's [`BlockFetcher`] (per-peer workers with deadlines; the bytes checked
//! for length and SHA-256). A fetched block is written like every block (temp
//! file, flushed, renamed into place) and linked under every `root/<path>/hashes/`
//! whose kept versions name it.
//!
//! A corrupt file is never just deleted: it is hard-linked into
//! `state/corrupt/<hash>[.zst].<unix nanos>` before the good copy replaces it, and
//! it stays where it is when no good copy is found. Blocks that are only remote
//! (a peer holds them, no trace here) are not fetched: that is `mirror`'s job.
//! The swaps hold the gc lock exclusively (no writer between "this block
//! exists" and "my version naming it is published"); fetching does not.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::BlockHash;
use crate::layout::VPath;
use crate::spec::Compression;
use crate::store::gc::{Damage, Damaged, Need, VerifyReport, block_file_matches};
use crate::store::{Blocks, IoContext, Store, StoreError, copy_block, link_block};

/// Where corrupt block files are kept aside (inside `state/`).
pub const CORRUPT_DIR: &str = "corrupt";

/// What `verify --repair` found and did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairReport {
    /// The verify pass that came first.
    pub found: VerifyReport,
    /// Blocks good again in `hashes/` and linked under their paths.
    pub repaired: u64,
    /// Of those, relinked from an intact per-path link (nothing copied).
    pub from_local_links: u64,
    /// Of those, fetched from a peer.
    pub from_peers: u64,
    /// Corrupt files moved aside into `state/corrupt/` (disk paths there).
    pub moved_aside: Vec<String>,
    /// Blocks still corrupt or missing (with why).
    pub still_broken: Vec<String>,
    /// Of those, corrupt here (the damaged file left in place) ...
    pub still_corrupt: u64,
    /// ... and missing (no good copy found anywhere).
    pub still_missing: u64,
}

impl RepairReport {
    /// Records a file kept aside (once, however many names it had).
    fn kept_aside(&mut self, aside: &Path) {
        let text = aside.display().to_string();
        if !self.moved_aside.contains(&text) {
            self.moved_aside.push(text);
        }
    }

    /// Nothing stays broken (blocks and version files).
    pub fn is_clean(&self) -> bool {
        self.still_broken.is_empty() && self.found.bad_versions.is_empty()
    }
}

/// Runs `verify`, then repairs what it found. The store should have a fetcher
/// ([`Store::set_fetcher`]); without one only local links can help.
pub fn repair(store: &Store, progress: &mut dyn FnMut(u64)) -> Result<RepairReport, StoreError> {
    let found = store.verify(progress)?;
    let mut report = RepairReport {
        found: found.clone(),
        ..RepairReport::default()
    };
    for damaged in &found.damaged {
        repair_one(store, damaged, &mut report)?;
    }
    Ok(report)
}

fn repair_one(
    store: &Store,
    damaged: &Damaged,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    let hash = damaged.hash;
    let bad_files: Vec<PathBuf> = match &damaged.damage {
        Damage::Corrupt { files } => files.clone(),
        Damage::Lost | Damage::Missing => Vec::new(),
    };
    let Some(need) = &damaged.need else {
        // No kept version names it (damaged garbage), or a good file of it is
        // here too: only the bad file has to go. Keep it aside.
        let _lock = store.gc_lock()?;
        for file in &bad_files {
            let aside = move_aside(store, file, &hash, true)?;
            report.kept_aside(&aside);
        }
        return Ok(());
    };
    let what = format!(
        "{}: block {hash}",
        need.versions.keys().next().cloned().unwrap_or_default()
    );
    // 1. An intact per-path link (a block that only `hashes/` lost).
    if let Some(link) = intact_link(store, &hash, need) {
        let _lock = store.gc_lock()?;
        let dest = if link.extension().is_some_and(|ext| ext == "zst") {
            store.blocks().zst_path(&hash)
        } else {
            store.blocks().raw_path(&hash)
        };
        for file in &bad_files {
            let aside = move_aside(store, file, &hash, true)?;
            report.kept_aside(&aside);
        }
        if !link_block(&link, &dest)? {
            copy_block(&link, &dest)?;
        }
        relink(store, &hash, need, report)?;
        report.repaired += 1;
        report.from_local_links += 1;
        return Ok(());
    }
    // 2. A peer.
    let corrupt = matches!(damaged.damage, Damage::Corrupt { .. });
    let state = if corrupt {
        "corrupt (left in place)"
    } else {
        "missing"
    };
    let why = match store.fetcher() {
        None => Some("no intact copy here and no peers to ask".to_string()),
        Some(fetcher) => match fetcher.fetch(&hash, need.len, need.origin) {
            Ok(data) if data.len() == need.len && BlockHash::of(&data) == hash => {
                let _lock = store.gc_lock()?;
                install(store, &hash, &data, &bad_files, report)?;
                relink(store, &hash, need, report)?;
                report.repaired += 1;
                report.from_peers += 1;
                None
            }
            Ok(_) => Some("a peer sent bytes that do not match".to_string()),
            Err(err) => Some(err.to_string()),
        },
    };
    if let Some(why) = why {
        report
            .still_broken
            .push(format!("{what} stays {state}: {why}"));
        if corrupt {
            report.still_corrupt += 1;
        } else {
            report.still_missing += 1;
        }
    }
    Ok(())
}

/// A link of `hash` under one of `need`'s paths whose content matches.
fn intact_link(store: &Store, hash: &BlockHash, need: &Need) -> Option<PathBuf> {
    for path in need.versions.keys() {
        let links = Blocks::new(store.path_dir(path).join("hashes"));
        for candidate in [links.raw_path(hash), links.zst_path(hash)] {
            if candidate.is_file() && block_file_matches(&candidate, hash).unwrap_or(false) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Writes verified bytes as the block (temp file, fsync, rename), keeping every
/// bad file of that hash aside first. Callers hold the gc lock exclusively.
fn install(
    store: &Store,
    hash: &BlockHash,
    data: &[u8],
    bad_files: &[PathBuf],
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    let blocks = store.blocks();
    let (dest, bytes) = match store.config().compression {
        Compression::None => (blocks.raw_path(hash), std::borrow::Cow::Borrowed(data)),
        Compression::Zstd => (
            blocks.zst_path(hash),
            std::borrow::Cow::Owned(zstd::bulk::compress(data, 3).at(blocks.zst_path(hash))?),
        ),
    };
    let tmp_dir = store.layout().tmp();
    let mut tmp = tempfile::Builder::new()
        .prefix("block-")
        .tempfile_in(&tmp_dir)
        .at(&tmp_dir)?;
    tmp.write_all(&bytes).at(tmp.path())?;
    crate::layout::set_file_mode(tmp.as_file()).at(tmp.path())?;
    tmp.as_file().sync_all().at(tmp.path())?;
    for file in bad_files {
        // Linked aside first, so the rename below never drops the only copy.
        let aside = move_aside(store, file, hash, false)?;
        report.kept_aside(&aside);
    }
    if let Some(parent) = dest.parent() {
        crate::layout::create_dirs(parent).at(parent)?;
    }
    tmp.persist(&dest)
        .map_err(|err| StoreError::io(&dest, err.error))?;
    for file in bad_files {
        if *file != dest {
            remove_if_present(file)?;
        }
    }
    Ok(())
}

/// Links `hash` under every path of `need`, after moving aside any link there
/// whose content does not match (a link of the corrupt file, or a bad copy).
fn relink(
    store: &Store,
    hash: &BlockHash,
    need: &Need,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    for path in need.versions.keys() {
        let links = Blocks::new(store.path_dir(path).join("hashes"));
        for link in [links.raw_path(hash), links.zst_path(hash)] {
            if !link.is_file() || block_file_matches(&link, hash).unwrap_or(false) {
                continue;
            }
            let aside = move_aside(store, &link, hash, true)?;
            report.kept_aside(&aside);
        }
        link_path(store, path, hash)?;
    }
    Ok(())
}

fn link_path(store: &Store, path: &VPath, hash: &BlockHash) -> Result<(), StoreError> {
    store.link_blocks(path, std::slice::from_ref(hash))
}

/// Hard-links a bad file into `state/corrupt/` (and with `remove`, unlinks it
/// where it was). Several names of one inode keep one file aside.
fn move_aside(
    store: &Store,
    file: &Path,
    hash: &BlockHash,
    remove: bool,
) -> Result<PathBuf, StoreError> {
    let dir = store.layout().state().join(CORRUPT_DIR);
    crate::layout::create_dirs(&dir).at(&dir)?;
    let suffix = if file.extension().is_some_and(|ext| ext == "zst") {
        ".zst"
    } else {
        ""
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    if let Some(kept) = already_aside(&dir, file, hash) {
        if remove {
            remove_if_present(file)?;
        }
        return Ok(kept);
    }
    let mut aside = dir.join(format!("{hash}{suffix}.{nanos}"));
    let mut attempt = 0;
    loop {
        match fs::hard_link(file, &aside) {
            Ok(()) => break,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
                aside = dir.join(format!("{hash}{suffix}.{nanos}-{attempt}"));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(aside),
            Err(err) => return Err(StoreError::io(&aside, err)),
        }
    }
    tracing::info!(file = %file.display(), aside = %aside.display(), %hash, "corrupt block kept aside");
    if remove {
        remove_if_present(file)?;
    }
    Ok(aside)
}

/// A name in `dir` for the same inode as `file` (another link of one corrupt file).
fn already_aside(dir: &Path, file: &Path, hash: &BlockHash) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(file).ok()?;
    let prefix = hash.to_string();
    fs::read_dir(dir).ok()?.flatten().find_map(|item| {
        let name = item.file_name();
        let same = name.to_string_lossy().starts_with(&prefix)
            && item
                .metadata()
                .is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev());
        same.then(|| item.path())
    })
}

fn remove_if_present(file: &Path) -> Result<(), StoreError> {
    match fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(file, err)),
        _ => Ok(()),
    }
}
