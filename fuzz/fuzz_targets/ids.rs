//! Version ids, node ids and block hashes (src/ids.rs) name files a peer
//! wrote: each has one canonical text form, so what parses prints back as the
//! same text; version ids built from numbers print and parse back to the same
//! value, and their order is the order of (nanoseconds, major) as integers.
#![no_main]

use std::cmp::Ordering;

use globofs::ids::{BlockHash, NodeId, VersionId};
use libfuzzer_sys::fuzz_target;

fn key(id: &VersionId) -> (u128, u32) {
    (id.as_nanos(), id.major.unwrap_or(0))
}

/// A version id from 16 bytes: any seconds an id may have, nanoseconds below
/// 10^9, no major or one from 1 to 999999 (the majors a spec may give).
fn built(bytes: &[u8]) -> Option<VersionId> {
    let secs = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?) % (VersionId::MAX_SECS + 1);
    let nanos = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) % 1_000_000_000;
    let major = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?) % 1_000_000;
    Some(VersionId {
        secs,
        nanos,
        major: (major != 0).then_some(major),
    })
}

fuzz_target!(|data: &[u8]| {
    // Text: what parses is canonical.
    if let Ok(text) = std::str::from_utf8(data) {
        let mut parsed = Vec::new();
        for word in text.split(['\n', ' ']) {
            if let Ok(id) = word.parse::<VersionId>() {
                assert_eq!(id.to_string(), word, "a version id is not canonical");
                assert!(id.nanos < 1_000_000_000);
                assert_ne!(id.major, Some(0));
                let child = VersionId::for_new_version(id.major, &[id]);
                let at_the_end = id.secs == VersionId::MAX_SECS && id.nanos == 999_999_999;
                assert!(
                    child > id || at_the_end,
                    "the child {child} of {id} is not after it"
                );
                assert_eq!(child.to_string().parse::<VersionId>(), Ok(child));
                parsed.push(id);
            }
            if let Ok(node) = word.parse::<NodeId>() {
                assert_eq!(node.to_string(), word, "a node id is not canonical");
            }
            if let Ok(hash) = word.parse::<BlockHash>() {
                assert_eq!(hash.to_string(), word, "a block hash is not canonical");
                let path = hash.relative_path();
                assert_eq!(path.to_string_lossy().replace('/', ""), word);
            }
        }
        for pair in parsed.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(a.cmp(&b), key(&a).cmp(&key(&b)), "{a} vs {b}");
            assert_eq!(a == b, a.to_string() == b.to_string(), "{a} vs {b}");
        }
    }
    // Numbers: print and parse back; order agrees with the integers.
    let ids: Vec<VersionId> = data.chunks_exact(16).filter_map(built).collect();
    for id in &ids {
        let text = id.to_string();
        let back: VersionId = match text.parse() {
            Ok(back) => back,
            Err(err) => panic!("{id:?} prints as {text:?}, which does not parse: {err}"),
        };
        assert_eq!(back, *id);
        let next = id.next_nanosecond();
        assert!(next > *id, "{next} is not after {id}");
    }
    for pair in ids.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let order = a.cmp(&b);
        assert_eq!(order, key(&a).cmp(&key(&b)), "{a} vs {b}");
        assert_eq!(order == Ordering::Equal, a == b, "{a} vs {b}");
        assert_eq!(b.cmp(&a), order.reverse());
        let newer = VersionId::for_new_version(b.major, &[a, b]);
        let end = a.max(b).secs == VersionId::MAX_SECS && a.max(b).nanos == 999_999_999;
        assert!(
            end || (newer > a && newer > b),
            "{newer} is not after its parents {a} and {b}"
        );
        assert_eq!(newer.to_string().parse::<VersionId>(), Ok(newer));
    }
});
