//! Which version of a path is current, decided from the set of versions alone, so
//! every node agrees whatever order the versions arrived in.
//!
//! A version supersedes every version in its parent chain. The versions nothing
//! supersedes are the heads. Among the heads, a live one (file, dir, symlink)
//! beats a tombstone (an edit concurrent with a delete is kept), then the highest
//! version id wins. Every other live head lost a concurrent edit: it is a conflict,
//! and is kept as a conflict copy (see [`conflict_name`]).

use std::collections::{HashMap, HashSet};

use crate::ids::{NodeId, VersionId};
use crate::layout::VPath;

use super::version::{Kind, Version};

/// The outcome of resolving one path.
#[derive(Debug, Default)]
pub struct Resolution<'a> {
    /// The heads (no other version supersedes them), highest id first.
    pub heads: Vec<&'a Version>,
    /// The winner, if any version exists.
    pub current: Option<&'a Version>,
    /// Live heads that lost to `current`: concurrent edits to keep as conflict copies.
    pub losers: Vec<&'a Version>,
}

/// Resolves `versions` (all versions of one path, any order).
pub fn resolve(versions: &[Version]) -> Resolution<'_> {
    let by_id: HashMap<VersionId, &Version> = versions.iter().map(|v| (v.id, v)).collect();
    let mut superseded: HashSet<VersionId> = HashSet::new();
    for version in versions {
        let mut stack: Vec<VersionId> = version.parents.clone();
        while let Some(id) = stack.pop() {
            if superseded.insert(id) {
                if let Some(parent) = by_id.get(&id) {
                    stack.extend(parent.parents.iter().copied());
                }
            }
        }
    }
    let mut heads: Vec<&Version> = versions
        .iter()
        .filter(|v| !superseded.contains(&v.id))
        .collect();
    heads.sort_by_key(|v| std::cmp::Reverse(rank(v)));
    heads.dedup_by_key(|v| v.id);
    let current = heads.first().copied();
    let losers = heads
        .iter()
        .skip(1)
        .copied()
        .filter(|v| v.kind.is_live() && v.kind != Kind::Dir)
        .collect();
    Resolution {
        heads,
        current,
        losers,
    }
}

/// Sort key of a head: live before tombstone, a directory before a file or
/// symlink (its children stay reachable; the file becomes a conflict copy), then
/// id, then writer.
fn rank(version: &Version) -> (bool, bool, VersionId, NodeId) {
    (
        version.kind.is_live(),
        version.kind == Kind::Dir,
        version.id,
        version.node,
    )
}

/// The name of the conflict copy of `loser` (Syncthing's convention):
/// `name.sync-conflict-<YYYYMMDD-HHMMSS>-<first 8 of node id>.ext`, in the same
/// directory. The date is the loser's version id (UTC), so the name is a pure
/// function of the losing version.
pub fn conflict_name(loser: &Version) -> Option<VPath> {
    let name = loser.path.file_name()?;
    let (stem, ext) = match name.iter().rposition(|b| *b == b'.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, &b""[..]),
    };
    let (date, time) = civil_from_unix(loser.id.secs as i64);
    let node = loser.node.to_string();
    let mut copy = stem.to_vec();
    copy.extend_from_slice(format!(".sync-conflict-{date}-{time}-{}", &node[..8]).as_bytes());
    copy.extend_from_slice(ext);
    if copy.len() > crate::layout::NAME_MAX {
        // Keep the suffix; shorten the stem.
        let suffix_len = copy.len() - stem.len();
        let keep = crate::layout::NAME_MAX.saturating_sub(suffix_len);
        let mut short = stem[..keep.min(stem.len())].to_vec();
        short.extend_from_slice(&copy[stem.len()..]);
        copy = short;
    }
    loser.path.parent()?.join(&copy).ok()
}

/// `YYYYMMDD` and `HHMMSS` (UTC) of a Unix time.
fn civil_from_unix(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::version::Mtime;

    fn v(id: &str, node: u8, kind: Kind, parents: &[&str]) -> Version {
        Version {
            id: id.parse().unwrap(),
            kind,
            path: VPath::from_escaped("dir/photo.jpg").unwrap(),
            node: NodeId(uuid::Uuid::from_bytes([node; 16])),
            parents: parents.iter().map(|p| p.parse().unwrap()).collect(),
            from: None,
            conflict_of: None,
            size: 0,
            mode: 0o644,
            mtime: Mtime::default(),
            block_size: 4096,
            target: None,
            hashes: vec![],
        }
    }

    #[test]
    fn a_child_beats_its_parent_whatever_the_ids() {
        let versions = vec![
            v("10.000000000", 1, Kind::File, &[]),
            v("20.000000000", 2, Kind::File, &["10.000000000"]),
        ];
        let r = resolve(&versions);
        assert_eq!(r.current.unwrap().id.secs, 20);
        assert!(r.losers.is_empty());
    }

    #[test]
    fn concurrent_edits_pick_the_highest_and_keep_the_other() {
        let mut versions = vec![
            v("10.000000000", 1, Kind::File, &[]),
            v("30.000000000", 1, Kind::File, &["10.000000000"]),
            v("20.000000000", 2, Kind::File, &["10.000000000"]),
        ];
        let order_a: Vec<u64> = {
            let r = resolve(&versions);
            assert_eq!(r.losers.len(), 1);
            vec![r.current.unwrap().id.secs, r.losers[0].id.secs]
        };
        versions.reverse();
        let r = resolve(&versions);
        assert_eq!(
            vec![r.current.unwrap().id.secs, r.losers[0].id.secs],
            order_a
        );
        assert_eq!(order_a, vec![30, 20]);
    }

    #[test]
    fn an_edit_concurrent_with_a_delete_survives() {
        let versions = vec![
            v("10.000000000", 1, Kind::File, &[]),
            v("30.000000000", 1, Kind::Tombstone, &["10.000000000"]),
            v("20.000000000", 2, Kind::File, &["10.000000000"]),
        ];
        let r = resolve(&versions);
        assert_eq!(r.current.unwrap().id.secs, 20);
        assert!(r.losers.is_empty());
        // A delete that saw the edit wins.
        let versions = vec![
            v("10.000000000", 1, Kind::File, &[]),
            v("20.000000000", 2, Kind::File, &["10.000000000"]),
            v("30.000000000", 1, Kind::Tombstone, &["20.000000000"]),
        ];
        assert_eq!(resolve(&versions).current.unwrap().kind, Kind::Tombstone);
    }

    #[test]
    fn a_merge_supersedes_both_heads() {
        let versions = vec![
            v("10.000000000", 1, Kind::File, &[]),
            v("50.000000000", 2, Kind::File, &["10.000000000"]),
            v("20.000000000", 1, Kind::File, &["10.000000000"]),
            v(
                "60.000000000",
                1,
                Kind::File,
                &["50.000000000", "20.000000000"],
            ),
        ];
        let r = resolve(&versions);
        assert_eq!(r.heads.len(), 1);
        assert!(r.losers.is_empty());
    }

    #[test]
    fn conflict_names_follow_syncthing() {
        let loser = v("1348096782.553456124", 0xea, Kind::File, &[]);
        let name = conflict_name(&loser).unwrap();
        assert_eq!(
            name.escaped(),
            "dir/photo.sync-conflict-20120919-231942-eaeaeaea.jpg"
        );
    }
}
