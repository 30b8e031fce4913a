//! The scripting commands that work on a store without a mount: put, get, ls,
//! log, restore, rm, mv, mkdir, gc, prune, verify (and verify --repair).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Failure, out};
use crate::layout::VPath;
use crate::spec::Spec;
use crate::store::{Attrs, Kind, Mtime, Store, StoreError, Version};

pub fn vpath(text: &OsStr) -> Result<VPath, Failure> {
    VPath::parse(text).map_err(Failure::input)
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

fn attrs_of(meta: &fs::Metadata) -> Attrs {
    Attrs {
        mode: meta.permissions().mode() & 0o7777,
        mtime: Mtime {
            secs: meta.mtime(),
            nanos: meta.mtime_nsec() as u32,
        },
    }
}

/// `put SRC DEST`: a file, or a directory tree (recursively).
pub fn put(spec: &Spec, src: &Path, dest: &OsStr) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let dest = vpath(dest)?;
    let meta = fs::symlink_metadata(src)
        .map_err(|err| Failure::input(format!("{}: {err}", src.display())))?;
    if !meta.is_dir() {
        // `put file /dir` puts it inside an existing directory, like cp.
        let target = if store.is_dir(&dest)? && !dest.is_root() || dest.is_root() {
            let name = src
                .file_name()
                .ok_or_else(|| Failure::input(format!("{}: no file name", src.display())))?;
            dest.join(name.as_bytes()).map_err(Failure::input)?
        } else {
            dest
        };
        put_one(&store, src, &meta, &target, true)?;
        return Ok(());
    }
    let mut items = Vec::new();
    collect(src, &mut items)?;
    let bar = progress(items.len() as u64 + 1, "put");
    if !dest.is_root() && !store.is_dir(&dest)? {
        store
            .make_parents(&dest.join(b"x").map_err(Failure::input)?, Mtime::now())
            .map_err(|err| {
                let mut failure = Failure::from(err);
                failure.message = format!("{}: {}", dest.display(), failure.message);
                failure
            })?;
    }
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut dirs = Vec::new();
    for relative in items {
        let local = src.join(&relative);
        let meta = fs::symlink_metadata(&local)
            .map_err(|err| Failure::runtime(format!("{}: {err}", local.display())))?;
        let mut target = dest.clone();
        for part in relative.iter() {
            target = target.join(part.as_bytes()).map_err(Failure::input)?;
        }
        // Each file is committed atomically but not flushed; one flush of the
        // whole filesystem below makes the tree durable when `put` returns.
        bytes += put_one(&store, &local, &meta, &target, false)?;
        files += 1;
        bar.inc(1);
        if meta.is_dir() {
            dirs.push(target);
        }
    }
    // A directory's shown mtime moves with its entries' creation (FORMAT
    // §11): give each its own again, children first.
    for dir in dirs.iter().rev() {
        store.keep_dir_mtime(dir)?;
    }
    crate::store::sync_filesystem(&store.layout().dir)?;
    bar.finish_and_clear();
    tracing::info!(files, bytes, "put");
    Ok(())
}

/// Every entry below `dir`, parents before children, as paths relative to `dir`.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let here = dir.join(&relative);
        let mut names: Vec<OsString> = fs::read_dir(&here)
            .map_err(|err| Failure::input(format!("{}: {err}", here.display())))?
            .filter_map(|item| item.ok().map(|item| item.file_name()))
            .collect();
        names.sort();
        for name in names.into_iter().rev() {
            let child = relative.join(&name);
            let is_dir = fs::symlink_metadata(dir.join(&child))
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_dir {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(())
}

fn put_one(
    store: &Store,
    local: &Path,
    meta: &fs::Metadata,
    target: &VPath,
    durable: bool,
) -> Result<u64, Failure> {
    put_entry(store, local, meta, target, durable).map_err(|err| match err {
        // An I/O error names a disk path of the store; say which volume path it hit.
        PutError::Store(err @ StoreError::Io { .. }) => {
            let mut failure = Failure::from(err);
            failure.message = format!("{}: {}", target.display(), failure.message);
            failure
        }
        PutError::Store(err) => Failure::from(err),
        PutError::Other(failure) => failure,
    })
}

/// A failure of one entry of a put, keeping the store's error apart so the
/// caller can name the volume path.
enum PutError {
    Store(StoreError),
    Other(Failure),
}

impl From<StoreError> for PutError {
    fn from(err: StoreError) -> PutError {
        PutError::Store(err)
    }
}

impl From<Failure> for PutError {
    fn from(failure: Failure) -> PutError {
        PutError::Other(failure)
    }
}

fn put_entry(
    store: &Store,
    local: &Path,
    meta: &fs::Metadata,
    target: &VPath,
    durable: bool,
) -> Result<u64, PutError> {
    let attrs = attrs_of(meta);
    let kind = meta.file_type();
    if kind.is_dir() {
        match store.live(target)? {
            Some(v) if v.kind == Kind::Dir => {
                if v.mode != attrs.mode || v.mtime != attrs.mtime {
                    store.set_attrs(target, Some(attrs.mode), Some(attrs.mtime))?;
                }
            }
            Some(_) => return Err(StoreError::NotADirectory(target.clone()).into()),
            None => {
                store.make_parents(target, attrs.mtime)?;
                store.mkdir_at(target, attrs.mode, attrs.mtime)?;
            }
        }
        return Ok(0);
    }
    if kind.is_symlink() {
        let link = fs::read_link(local)
            .map_err(|err| Failure::runtime(format!("{}: {err}", local.display())))?;
        if store.live(target)?.is_some() {
            store.remove(target)?;
        }
        store.make_parents(target, attrs.mtime)?;
        store.symlink(target, link.as_os_str().as_bytes())?;
        return Ok(0);
    }
    if !kind.is_file() {
        tracing::warn!(path = %local.display(), "not a regular file, directory or symlink; skipped");
        return Ok(0);
    }
    let mut file = fs::File::open(local)
        .map_err(|err| Failure::input(format!("{}: {err}", local.display())))?;
    let version = store.write_file(target, &mut file, attrs, durable)?;
    Ok(version.size)
}

/// `get SRC DEST`: a file to a local file or `-` (stdout), or a tree to a directory.
pub fn get(spec: &Spec, src: &OsStr, dest: &Path, at: Option<&str>) -> Result<(), Failure> {
    let store = super::open_with_peers(spec)?;
    let src = vpath(src)?;
    let version = match at {
        Some(id) => store
            .read_version(&src, id.parse().map_err(Failure::input)?)
            .map_err(|err| match err {
                err if err.is_not_found() => Failure::input(format!("{src}: no version {id}")),
                err => err.into(),
            })?,
        None => {
            if src.is_root() {
                return get_tree(&store, &src, dest);
            }
            store
                .live(&src)?
                .ok_or_else(|| StoreError::NotFound(src.clone()))?
        }
    };
    if version.kind == Kind::Dir && dest != Path::new("-") {
        return get_tree(&store, &src, dest);
    }
    get_one(&store, &src, &version, dest)
}

/// Copies out one version of `src` that is not a directory (to a local
/// file, into a local directory, or `-` for standard output).
pub(super) fn get_one(
    store: &Store,
    src: &VPath,
    version: &Version,
    dest: &Path,
) -> Result<(), Failure> {
    let src = src.clone();
    if dest == Path::new("-") {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        return match version.kind {
            Kind::File => {
                store.copy_to(version, &mut lock)?;
                lock.flush().or_else(ignore_broken_pipe)?;
                Ok(())
            }
            Kind::Symlink => out(&format!(
                "{}\n",
                String::from_utf8_lossy(version.target.as_deref().unwrap_or_default())
            )),
            Kind::Dir => Err(StoreError::IsADirectory(src).into()),
            Kind::Tombstone => Err(StoreError::NotFound(src).into()),
        };
    }
    match version.kind {
        Kind::Dir => Err(StoreError::IsADirectory(src).into()),
        Kind::Tombstone => Err(StoreError::NotFound(src).into()),
        _ => {
            let target = if dest.is_dir() {
                dest.join(OsStr::from_bytes(src.file_name().unwrap_or(b"file")))
            } else {
                dest.to_path_buf()
            };
            write_local(store, version, &target)
        }
    }
}

fn ignore_broken_pipe(err: std::io::Error) -> Result<(), std::io::Error> {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(err)
    }
}

fn get_tree(store: &Store, src: &VPath, dest: &Path) -> Result<(), Failure> {
    get_entries(store, src, dest, store.walk(src)?)
}

/// Writes `entries` (a walk of `src`, sorted) below local directory `dest`.
pub(super) fn get_entries(
    store: &Store,
    src: &VPath,
    dest: &Path,
    entries: Vec<(VPath, Version)>,
) -> Result<(), Failure> {
    fs::create_dir_all(dest)
        .map_err(|err| Failure::runtime(format!("{}: {err}", dest.display())))?;
    let bar = progress(entries.len() as u64, "get");
    let mut dirs = Vec::new();
    for (path, version) in entries {
        let mut local = dest.to_path_buf();
        for name in &path.names()[src.names().len()..] {
            local.push(OsStr::from_bytes(name));
        }
        if version.kind == Kind::Dir {
            fs::create_dir_all(&local)
                .map_err(|err| Failure::runtime(format!("{}: {err}", local.display())))?;
            dirs.push((local, version));
        } else {
            write_local(store, &version, &local)?;
        }
        bar.inc(1);
    }
    // Directory times last: writing inside a directory changes its mtime.
    for (local, version) in dirs.into_iter().rev() {
        set_local_attrs(&local, &version)?;
    }
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn write_local(store: &Store, version: &Version, target: &Path) -> Result<(), Failure> {
    let fail = |err: std::io::Error| Failure::runtime(format!("{}: {err}", target.display()));
    if version.kind == Kind::Symlink {
        let _ = fs::remove_file(target);
        std::os::unix::fs::symlink(
            OsStr::from_bytes(version.target.as_deref().unwrap_or_default()),
            target,
        )
        .map_err(fail)?;
        return Ok(());
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    store.copy_to(version, tmp.as_file_mut())?;
    tmp.persist(target).map_err(|err| fail(err.error))?;
    set_local_attrs(target, version)
}

fn set_local_attrs(target: &Path, version: &Version) -> Result<(), Failure> {
    let fail = |err: std::io::Error| Failure::runtime(format!("{}: {err}", target.display()));
    fs::set_permissions(target, fs::Permissions::from_mode(version.mode)).map_err(fail)?;
    let file = fs::File::options()
        .write(version.kind == Kind::File)
        .read(true)
        .open(target)
        .map_err(fail)?;
    file.set_modified(version.mtime.to_system()).map_err(fail)?;
    Ok(())
}

fn kind_char(kind: Kind) -> char {
    match kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Tombstone => 'x',
    }
}

pub(super) fn version_json(path: &VPath, version: &Version) -> serde_json::Value {
    serde_json::json!({
        "path": path.display(),
        "name": String::from_utf8_lossy(path.file_name().unwrap_or(b"/")),
        "kind": version.kind.as_str(),
        "size": version.size,
        "mode": format!("{:o}", version.mode),
        "mtime": format!("{}.{:09}", version.mtime.secs, version.mtime.nanos),
        "version": version.id.to_string(),
        "node": version.node.to_string(),
        "parents": version.parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "from": version.from.as_ref().map(|(id, p)| format!("{} {}", p.display(), id)),
        "target": version.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
        "hashes": version.hashes.len(),
    })
}

/// A name for one line of text output: printable as is, escaped otherwise.
fn line_name(path: &VPath) -> String {
    path.display()
}

/// `ls [-R] [-l] [PATH]`.
pub fn ls(
    spec: &Spec,
    path: &OsStr,
    recursive: bool,
    long: bool,
    json: bool,
    at: Option<&crate::when::Moment>,
) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let path = vpath(path)?;
    let is_dir = match at {
        Some(at) => store.is_dir_at(&path, at)?,
        None => store.is_dir(&path)?,
    };
    let rows: Vec<(VPath, Version)> = if !is_dir {
        let version = match at {
            Some(at) => store
                .lookup_at(&path, at)?
                .ok_or_else(|| StoreError::NotThen {
                    path: path.clone(),
                    at: at.to_string(),
                })?,
            None => store
                .live(&path)?
                .ok_or_else(|| StoreError::NotFound(path.clone()))?,
        };
        vec![(path.clone(), version)]
    } else if recursive {
        match at {
            Some(at) => store.walk_at(&path, at)?,
            None => store.walk(&path)?,
        }
    } else {
        match at {
            Some(at) => store.list_dir_at(&path, at)?,
            None => store.list_dir(&path)?,
        }
        .into_iter()
        .map(|entry| {
            Ok((
                path.join(&entry.name).map_err(Failure::input)?,
                entry.version,
            ))
        })
        .collect::<Result<_, Failure>>()?
    };
    if json {
        let list: Vec<serde_json::Value> = rows.iter().map(|(p, v)| version_json(p, v)).collect();
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&list).map_err(Failure::runtime)?
        ));
    }
    let mut text = String::new();
    for (entry_path, version) in &rows {
        let name = if recursive || !is_dir {
            line_name(entry_path)
        } else {
            crate::layout::escape_name(entry_path.file_name().unwrap_or_default())
        };
        if long {
            text.push_str(&format!(
                "{}{:04o} {:>12} {}.{:09} {} {}",
                kind_char(version.kind),
                version.mode,
                version.size,
                version.mtime.secs,
                version.mtime.nanos,
                version.id,
                name
            ));
            if let Some(target) = &version.target {
                text.push_str(&format!(" -> {}", String::from_utf8_lossy(target)));
            }
        } else {
            text.push_str(&name);
        }
        text.push('\n');
    }
    out(&text)
}

/// `log PATH`: every version of a path, oldest first; `*` marks the current one.
pub fn log(spec: &Spec, path: &OsStr, json: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let path = vpath(path)?;
    let versions = store.versions(&path)?;
    if versions.is_empty() {
        return Err(StoreError::NotFound(path).into());
    }
    let current = store.current(&path)?.map(|v| v.id);
    if json {
        let list: Vec<serde_json::Value> = versions
            .iter()
            .map(|v| {
                let mut value = version_json(&path, v);
                value["current"] = serde_json::Value::Bool(Some(v.id) == current);
                value
            })
            .collect();
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&list).map_err(Failure::runtime)?
        ));
    }
    let mut text = String::new();
    for v in &versions {
        let parents: Vec<String> = v.parents.iter().map(ToString::to_string).collect();
        text.push_str(&format!(
            "{} {} {:<9} {:>12} {:04o} node={} parents={}{}\n",
            if Some(v.id) == current { '*' } else { ' ' },
            v.id,
            v.kind.as_str(),
            v.size,
            v.mode,
            v.node,
            if parents.is_empty() {
                "-".into()
            } else {
                parents.join(",")
            },
            v.from
                .as_ref()
                .map(|(id, p)| format!(" from={}@{}", p.display(), id))
                .unwrap_or_default()
        ));
    }
    out(&text)
}

pub fn restore(spec: &Spec, path: &OsStr, id: &str) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let path = vpath(path)?;
    let id = id.parse().map_err(Failure::input)?;
    let version = store.restore(&path, id)?;
    out(&format!("{} restored as version {}\n", path, version.id))
}

pub fn rm(spec: &Spec, paths: &[OsString], recursive: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    for path in paths {
        let path = vpath(path)?;
        if recursive && store.is_dir(&path)? {
            store.remove_tree(&path)?;
        } else {
            store.remove(&path)?;
        }
    }
    Ok(())
}

pub fn mv(spec: &Spec, src: &OsStr, dst: &OsStr) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let src = vpath(src)?;
    let mut dst = vpath(dst)?;
    if store.is_dir(&dst)? && src != dst {
        // Like mv(1): moving onto an existing directory moves into it.
        dst = dst
            .join(src.file_name().unwrap_or_default())
            .map_err(Failure::input)?;
    }
    store.rename(&src, &dst, false)?;
    Ok(())
}

pub fn mkdir(spec: &Spec, paths: &[OsString], parents: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    for path in paths {
        let path = vpath(path)?;
        if parents {
            if store.is_dir(&path)? {
                continue;
            }
            store.make_parents(&path, Mtime::now())?;
        }
        store.mkdir(&path, 0o755)?;
    }
    Ok(())
}

pub fn gc(spec: &Spec, json: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let report = store.gc()?;
    if json {
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report).map_err(Failure::runtime)?
        ));
    }
    let relinked = match report.path_links_made {
        0 => String::new(),
        n => format!("; {n} missing path links made"),
    };
    out(&format!(
        "gc: {} versions scanned, {} blocks kept, {} deleted ({} bytes), {} path links, {} temp files, {} empty directories and {} delivered outbound entries removed{relinked}\n",
        report.versions_scanned,
        report.blocks_kept,
        report.blocks_deleted,
        report.bytes_freed,
        report.path_links_deleted,
        report.temp_files_deleted,
        report.empty_dirs_removed,
        report.outbound_entries_removed
    ))
}

/// `bytes` in B, KiB, MiB, GiB or TiB with one decimal.
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

pub fn du(spec: &Spec, json: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let usage = store.usage()?;
    if json {
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&usage).map_err(Failure::runtime)?
        ));
    }
    let mut text = format!(
        "store {}: {} paths ({} deleted), {} versions ({} not current)\n",
        store.layout().dir.display(),
        usage.paths,
        usage.deleted_paths,
        usage.versions,
        usage.old_versions
    );
    let rows = [
        ("live data (current versions' blocks)", usage.live_blocks),
        ("old versions only (prune + gc)", usage.history_blocks),
        ("pushes not acknowledged", usage.outbound_blocks),
        ("unreferenced blocks (gc)", usage.garbage_blocks),
        ("layout (root/, hashes/ directories)", usage.layout),
        ("spool/inbound", usage.spool_inbound),
        ("spool/outbound", usage.spool_outbound),
        ("other (journal, state, tmp)", usage.other),
        ("total", usage.total),
    ];
    for (what, space) in rows {
        text.push_str(&format!(
            "  {what:<40} {:>10} files {:>12}\n",
            space.files,
            binary_size(space.bytes)
        ));
    }
    out(&text)
}

pub fn prune(spec: &Spec, json: bool) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    // Old versions and tombstones go only once every peer has applied past them.
    let peers = crate::sync::applied_by_peers(&store, spec)?;
    let report = store.prune(&spec.retention, &peers.applied)?;
    if json {
        let mut value = serde_json::to_value(&report).map_err(Failure::runtime)?;
        let away: Vec<serde_json::Value> = peers
            .away
            .iter()
            .map(|(peer, why)| serde_json::json!({ "peer": peer.to_string(), "why": why }))
            .collect();
        value["peers_away"] = serde_json::Value::Array(away);
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).map_err(Failure::runtime)?
        ));
    }
    if spec.retention.keeps_all() {
        eprintln!("prune: the spec says `retention.keep_all`; every version is kept");
    }
    let mut text = format!(
        "prune: {} versions removed ({} tombstones) from {} paths (run `globofs gc` to free their blocks)\n",
        report.versions_removed, report.tombstones_removed, report.paths
    );
    if report.versions_waiting > 0 {
        text.push_str(&format!(
            "prune: {} versions wait until every peer has applied past them:\n",
            report.versions_waiting
        ));
        for waiting in &report.waiting_for {
            let why = peers
                .away
                .iter()
                .find(|(peer, _)| peer.to_string() == waiting.peer)
                .map(|(_, why)| format!(" (away: {})", crate::ids::clip(why, 160)))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {}: {} versions{why}\n",
                waiting.peer, waiting.versions
            ));
        }
    }
    out(&text)
}

pub fn verify(spec: &Spec, store: &Store, json: bool) -> Result<(), Failure> {
    let bar = progress(0, "verify");
    let report = store.verify(&mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let copies = verify_copies(spec, store)?;
    if json {
        let mut value = serde_json::to_value(&report).map_err(Failure::runtime)?;
        if let Some(copies) = &copies {
            value["copies"] = serde_json::to_value(copies).map_err(Failure::runtime)?;
        }
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).map_err(Failure::runtime)?
        ))?;
    } else {
        let mut text = verify_summary(&report);
        if let Some(copies) = &copies {
            text.push_str(&copies_summary(copies));
        }
        out(&text)?;
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::runtime("verify found problems"))
    }
}

/// `copies` above 1: every reachable copy of the current tree's blocks,
/// content checked (not a failure of verify when some are short: that is
/// what sync repairs).
fn verify_copies(
    spec: &Spec,
    store: &Store,
) -> Result<Option<crate::sync::copies::VerifyCopies>, Failure> {
    if spec.copies <= 1 {
        return Ok(None);
    }
    let remotes = crate::sync::remote::remotes(spec);
    Ok(Some(crate::sync::copies::verify_copies(
        store,
        &remotes,
        spec.copies,
    )?))
}

fn copies_summary(copies: &crate::sync::copies::VerifyCopies) -> String {
    let short = &copies.under_replicated;
    let mut text = format!(
        "copies: {} wanted; {} good copies checked of {} blocks of the current tree; {} blocks ({} bytes) held by fewer nodes\n",
        copies.wanted, copies.copies_checked, copies.blocks, short.blocks, short.bytes
    );
    for prefix in &short.prefixes {
        text.push_str(&format!(
            "  under-replicated {}: {} blocks, {} bytes\n",
            prefix.prefix, prefix.blocks, prefix.bytes
        ));
    }
    for why in &copies.not_counted {
        text.push_str(&format!("  not counted: {why}\n"));
    }
    text
}

/// The text `verify` prints: the counts, then one line per problem.
fn verify_summary(report: &crate::store::gc::VerifyReport) -> String {
    let mut text = format!(
        "verify: {} blocks checked, {} corrupt, {} remote (held by a peer), {} missing, {} bad version files\n",
        report.blocks_checked,
        report.corrupt.len(),
        report.remote,
        report.missing.len(),
        report.bad_versions.len()
    );
    for line in report
        .corrupt
        .iter()
        .chain(&report.missing)
        .chain(&report.bad_versions)
    {
        text.push_str(&format!("  {line}\n"));
    }
    text
}

/// `verify --repair`: verify, then bring back corrupt and lost blocks.
pub fn verify_repair(spec: &Spec, store: &Store, json: bool) -> Result<(), Failure> {
    let bar = progress(0, "verify");
    let report = crate::sync::repair(store, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let copies = verify_copies(spec, store)?;
    let found = &report.found;
    if json {
        let mut value = serde_json::to_value(&report).map_err(Failure::runtime)?;
        if let Some(copies) = &copies {
            value["copies"] = serde_json::to_value(copies).map_err(Failure::runtime)?;
        }
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).map_err(Failure::runtime)?
        ))?;
    } else {
        let mut text = verify_summary(found);
        if let Some(copies) = &copies {
            text.push_str(&copies_summary(copies));
        }
        text.push_str(&format!(
            "repair: {} repaired ({} from local links, {} from peers), {} still broken ({} corrupt, {} missing), {} corrupt files kept aside\n",
            report.repaired,
            report.from_local_links,
            report.from_peers,
            report.still_broken.len(),
            report.still_corrupt,
            report.still_missing,
            report.moved_aside.len()
        ));
        for line in &report.moved_aside {
            text.push_str(&format!("  kept aside: {line}\n"));
        }
        for line in &report.still_broken {
            text.push_str(&format!("  still broken: {line}\n"));
        }
        out(&text)?;
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "verify --repair: {} block(s) still broken, {} bad version file(s)",
            report.still_broken.len(),
            found.bad_versions.len()
        )))
    }
}
