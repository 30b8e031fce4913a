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
    /// Live heads that lost to `current`: concurrent edits to keep as conflict
    /// copies. Conflict copies themselves are never losers (FORMAT §10.4): two
    /// copies meet at one name only when one node lost twice within a second,
    /// and then its first losing edit was already superseded, at its own path,
    /// by a version written after seeing it.
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
        .filter(|v| v.kind.is_live() && v.kind != Kind::Dir && v.conflict_of.is_none())
        // The same bytes and attributes written on two nodes lost nothing:
        // a copy would only duplicate the file (FORMAT §10.4).
        .filter(|v| current.is_none_or(|winner| !same_entry(v, winner)))
        .collect();
    Resolution {
        heads,
        current,
        losers,
    }
}

/// Whether two versions of one path hold the same entry: kind, bytes (size
/// and hashes, or symlink target), mode and the POSIX attributes. The mtime
/// and the writer may differ (the same tree unpacked on two nodes).
fn same_entry(a: &Version, b: &Version) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.hashes == b.hashes
        && a.target == b.target
        && a.mode == b.mode
        && a.posix == b.posix
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
///
/// When the name would exceed [`NAME_MAX`](crate::layout::NAME_MAX) bytes, the
/// stem is cut (at a byte count) to make room. When even an empty stem leaves
/// no room (an extension longer than `NAME_MAX` minus the marker's 39 bytes), the
/// whole name counts as the stem and there is no extension: the copy is the
/// name's first bytes (cut back to the start of a UTF-8 character the cut would
/// split) followed by the marker. `None` only for the root.
pub fn conflict_name(loser: &Version) -> Option<VPath> {
    use crate::layout::NAME_MAX;
    let name = loser.path.file_name()?;
    let (date, time) = civil_from_unix(loser.id.secs as i64);
    let node = loser.node.to_string();
    let marker = format!(".sync-conflict-{date}-{time}-{}", &node[..8]);
    let (stem, ext) = match name.iter().rposition(|b| *b == b'.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, &b""[..]),
    };
    let mut copy = if marker.len() + ext.len() <= NAME_MAX {
        // Keep the extension; shorten the stem if needed.
        let keep = NAME_MAX - marker.len() - ext.len();
        stem[..keep.min(stem.len())].to_vec()
    } else {
        // No room for the extension: the whole name is the stem.
        let keep = utf8_floor(name, NAME_MAX - marker.len());
        name[..keep].to_vec()
    };
    copy.extend_from_slice(marker.as_bytes());
    if marker.len() + ext.len() <= NAME_MAX {
        copy.extend_from_slice(ext);
    }
    loser.path.parent()?.join(&copy).ok()
}

/// The conflict copy of `loser` (section 10.4): a pure function of the
/// losing version, so every node makes the identical copy. It keeps the
/// loser's parents: when a node's later edit loses again within the same
/// second (so its copy gets the same name), its copy supersedes the earlier
/// copy instead of conflicting with it. `None` only for the root.
pub fn conflict_copy(loser: &Version) -> Option<Version> {
    Some(Version {
        id: loser.id,
        kind: loser.kind,
        path: conflict_name(loser)?,
        node: loser.node,
        parents: loser.parents.clone(),
        from: None,
        conflict_of: Some((loser.id, loser.path.clone())),
        size: loser.size,
        mode: loser.mode,
        mtime: loser.mtime,
        block_size: loser.block_size,
        target: loser.target.clone(),
        hashes: loser.hashes.clone(),
        // A copy is a file of its own: in no link group.
        posix: crate::store::posix::Posix {
            links: None,
            ..loser.posix.clone()
        },
    })
}

/// The largest `cut <= max` (and `<= bytes.len()`) that does not split a valid
/// UTF-8 character of `bytes` (bytes that are not valid UTF-8 count one by one).
fn utf8_floor(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    let mut cut = 0;
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if cut + ch.len_utf8() > max {
                return cut;
            }
            cut += ch.len_utf8();
        }
        for _ in chunk.invalid() {
            if cut + 1 > max {
                return cut;
            }
            cut += 1;
        }
    }
    cut
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
            // Each version its own bytes: concurrent ones are real conflicts.
            size: id.len() as u64,
            mode: 0o644,
            mtime: Mtime::default(),
            block_size: 4096,
            target: None,
            hashes: vec![crate::ids::BlockHash::of(id.as_bytes())],
            posix: crate::store::posix::Posix::default(),
        }
    }

    /// The same bytes written on two nodes are no conflict; other bytes,
    /// or the same bytes with another mode, are.
    #[test]
    fn identical_concurrent_entries_make_no_conflict_copy() {
        let hash = crate::ids::BlockHash::of(b"same");
        let with = |id: &str, node: u8, byte: &[u8], mode: u32| {
            let mut version = v(id, node, Kind::File, &["1.000000001"]);
            version.size = byte.len() as u64;
            version.hashes = vec![crate::ids::BlockHash::of(byte)];
            version.mode = mode;
            version.mtime = Mtime {
                secs: i64::from(node),
                nanos: 0,
            };
            version
        };
        let base = v("1.000000001", 1, Kind::File, &[]);
        let a = with("5.000000001", 1, b"same", 0o644);
        assert_eq!(a.hashes, vec![hash]);
        let same = [
            base.clone(),
            a.clone(),
            with("6.000000001", 2, b"same", 0o644),
        ];
        let resolution = resolve(&same);
        assert_eq!(resolution.heads.len(), 2);
        assert!(resolution.losers.is_empty());
        for other in [
            with("6.000000001", 2, b"other", 0o644),
            with("6.000000001", 2, b"same", 0o600),
        ] {
            let versions = [base.clone(), a.clone(), other];
            let resolution = resolve(&versions);
            assert_eq!(resolution.losers.len(), 1);
            assert_eq!(resolution.losers[0].id, a.id);
        }
    }

    #[test]
    fn two_conflict_copies_at_one_name_make_no_copy_of_a_copy() {
        // Node 1 lost twice within one second; in between node 2 resolved the
        // first loss, so the second copy's parents do not reach the first.
        let original = VPath::from_escaped("dir/photo.jpg").unwrap();
        let mut first = v("100.000000001", 1, Kind::File, &["99.000000000"]);
        first.conflict_of = Some((first.id, original.clone()));
        let mut second = v("100.000000500", 1, Kind::File, &["100.000000300"]);
        second.conflict_of = Some((second.id, original));
        let versions = vec![first, second];
        let r = resolve(&versions);
        assert_eq!(r.heads.len(), 2);
        assert_eq!(r.current.unwrap().id, versions[1].id);
        assert!(r.losers.is_empty(), "{:?}", r.losers);
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

    fn named(name: &[u8]) -> Version {
        let mut loser = v("1348096782.553456124", 0xea, Kind::File, &[]);
        loser.path = VPath::from_escaped("dir").unwrap().join(name).unwrap();
        loser
    }

    const MARKER: &str = ".sync-conflict-20120919-231942-eaeaeaea";

    #[test]
    fn a_long_stem_is_cut_and_the_extension_kept() {
        let name = [b"s".repeat(250), b".jpg".to_vec()].concat();
        let copy = conflict_name(&named(&name)).unwrap();
        let copy = copy.file_name().unwrap();
        assert_eq!(copy.len(), 255);
        assert_eq!(
            copy,
            [
                b"s".repeat(212),
                MARKER.as_bytes().to_vec(),
                b".jpg".to_vec()
            ]
            .concat()
        );
    }

    #[test]
    fn an_extension_with_no_room_makes_the_whole_name_the_stem() {
        // Extension of 254 bytes: even an empty stem leaves no room for it.
        let name = [b"a.".to_vec(), b"b".repeat(253)].concat();
        let copy = conflict_name(&named(&name)).unwrap();
        let copy = copy.file_name().unwrap();
        assert_eq!(copy.len(), 255);
        assert_eq!(
            copy,
            [name[..216].to_vec(), MARKER.as_bytes().to_vec()].concat()
        );
        // The largest extension that still fits is kept, with an empty stem.
        let name = [b"a.".to_vec(), b"b".repeat(215)].concat();
        let copy = conflict_name(&named(&name)).unwrap();
        assert_eq!(
            copy.file_name().unwrap(),
            [MARKER.as_bytes(), &name[1..]].concat()
        );
        let name = [b"a.".to_vec(), b"b".repeat(216)].concat();
        let copy = conflict_name(&named(&name)).unwrap();
        assert_eq!(
            copy.file_name().unwrap(),
            [&name[..216], MARKER.as_bytes()].concat()
        );
    }

    #[test]
    fn the_whole_name_cut_keeps_utf8_characters_whole() {
        // "a." then 4-byte characters: byte 216 falls inside one.
        let name = [b"a.".to_vec(), "\u{1F600}".repeat(63).into_bytes()].concat();
        assert_eq!(name.len(), 254);
        let copy = conflict_name(&named(&name)).unwrap();
        let copy = copy.file_name().unwrap();
        assert_eq!(copy, [&name[..2 + 4 * 53], MARKER.as_bytes()].concat());
        assert!(std::str::from_utf8(copy).is_ok());
        // Bytes that are not UTF-8 are cut anywhere.
        let name = [b"a.".to_vec(), vec![0xff; 250]].concat();
        let copy = conflict_name(&named(&name)).unwrap();
        assert_eq!(copy.file_name().unwrap().len(), 255);
    }
}
