//! The commands that look at or bring back the volume's past: `get --at`,
//! `diff` and `restore --at` (`ls --at` shares `ls` in files.rs). The past
//! itself is decided by the store (`store/past.rs`, `store/restore.rs`).

use std::ffi::OsStr;
use std::path::Path;

use super::files::{get_entries, get_one, version_json, vpath};
use super::{Failure, out};
use crate::spec::Spec;
use crate::store::{Store, StoreError};
use crate::when::Moment;

/// A user's time (an `--at` value or a `diff` argument), or an input error
/// naming it.
pub fn moment(text: &str) -> Result<Moment, Failure> {
    text.parse().map_err(Failure::input)
}

/// `get --at TIME SRC DEST`: SRC as it was then.
pub fn get_at(spec: &Spec, src: &OsStr, dest: &Path, at: &Moment) -> Result<(), Failure> {
    let store = super::open_with_peers(spec)?;
    let src = vpath(src)?;
    if store.is_dir_at(&src, at)? {
        if dest == Path::new("-") {
            return Err(StoreError::IsADirectory(src).into());
        }
        let entries = store.walk_at(&src, at)?;
        return get_entries(&store, &src, dest, entries);
    }
    let version = store
        .lookup_at(&src, at)?
        .ok_or_else(|| StoreError::NotThen {
            path: src.clone(),
            at: at.to_string(),
        })?;
    get_one(&store, &src, &version, dest)
}

/// `diff TIME1 TIME2 [PATH]`: `A`, `D` or `M`, a tab, the path; by path.
pub fn diff(
    spec: &Spec,
    from: &Moment,
    to: &Moment,
    path: &OsStr,
    json: bool,
) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let path = vpath(path)?;
    let changes = store.diff_at(&path, from, to)?;
    if json {
        let list: Vec<serde_json::Value> = changes
            .iter()
            .map(|(path, change)| {
                serde_json::json!({ "path": path.display(), "change": change.as_str() })
            })
            .collect();
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&list).map_err(Failure::runtime)?
        ));
    }
    let mut text = String::new();
    for (path, change) in &changes {
        text.push(change.letter());
        text.push('\t');
        text.push_str(&path.display());
        text.push('\n');
    }
    out(&text)
}

/// `restore --at TIME PATH [-r] [--exact]`.
pub fn restore_at(
    spec: &Spec,
    path: &OsStr,
    at: &Moment,
    recursive: bool,
    exact: bool,
    json: bool,
) -> Result<(), Failure> {
    let store = Store::open_spec(spec)?;
    let path = vpath(path)?;
    let done = store.restore_at(&path, at, recursive, exact)?;
    if json {
        let mut value = serde_json::to_value(&done).map_err(Failure::runtime)?;
        if let Some(version) = store.live(&path)? {
            value["current"] = version_json(&path, &version);
        }
        return out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).map_err(Failure::runtime)?
        ));
    }
    let mut text = String::new();
    for written in &done.written {
        text.push_str(&format!("restored {written}\n"));
    }
    for removed in &done.removed {
        text.push_str(&format!("removed {removed}\n"));
    }
    text.push_str(&format!(
        "{path}: {} restored, {} removed, {} already as at {at}\n",
        done.written.len(),
        done.removed.len(),
        done.unchanged
    ));
    out(&text)
}
