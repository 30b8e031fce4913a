//! The three kinds of names GloboFS gives things: node ids (UUIDs), version ids
//! (`<seconds>.<9-digit nanoseconds><major>`) and block hashes (SHA-256, 64 hex).
//!
//! Each parses strictly (one canonical text form, so comparing values and comparing
//! names agree) and version ids order as integers, never as strings.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A node's id: a UUID written lowercase and hyphenated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub uuid::Uuid);

impl NodeId {
    pub const NIL: NodeId = NodeId(uuid::Uuid::nil());

    /// A fresh random id.
    pub fn random() -> NodeId {
        NodeId(uuid::Uuid::new_v4())
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match uuid::Uuid::try_parse(text) {
            Ok(id) if id.hyphenated().to_string() == text => Ok(NodeId(id)),
            Ok(id) => Err(format!(
                "{text:?} is not a lowercase hyphenated UUID (write {:?})",
                id.hyphenated().to_string()
            )),
            Err(_) => Err(format!("{text:?} is not a UUID")),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// A version id: `<unix seconds>.<nanoseconds, 9 digits>` with the writing node's
/// optional major appended to the nanoseconds (`1348096782.553456124100` is
/// seconds 1348096782, nanoseconds 553456124, major 100).
///
/// Ordered as integers: seconds, then nanoseconds, then major (absent = 0).
/// The text form is canonical (no leading zeros but in the nanoseconds, no major 0),
/// so equal ids have equal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionId {
    pub secs: u64,
    pub nanos: u32,
    pub major: Option<u32>,
}

impl VersionId {
    /// Largest seconds a version id may have: a signed 64-bit `time_t`. The room
    /// above it keeps "one nanosecond later" (a child's id) representable.
    pub const MAX_SECS: u64 = i64::MAX as u64;

    /// The lowest id this implementation gives a version: `1.000000000`. Ids
    /// with seconds 0 are never made (in memory they mean "nothing committed").
    pub const LOWEST: VersionId = VersionId {
        secs: 1,
        nanos: 0,
        major: None,
    };

    /// The id for "now" on a node with `major`; [`VersionId::LOWEST`] (with
    /// `major`) when the clock reads before 1970.
    pub fn now(major: Option<u32>) -> VersionId {
        VersionId::at(major, clock())
    }

    /// The id for a clock reading (time since the epoch; None before it).
    fn at(major: Option<u32>, since: Option<std::time::Duration>) -> VersionId {
        match since {
            Some(since) if since.as_secs() >= VersionId::LOWEST.secs => VersionId {
                secs: since.as_secs(),
                nanos: since.subsec_nanos(),
                major,
            },
            _ => {
                clock_warning();
                VersionId {
                    major,
                    ..VersionId::LOWEST
                }
            }
        }
    }

    /// The same instant one nanosecond later (carrying into the seconds).
    pub fn next_nanosecond(self) -> VersionId {
        if self.nanos >= 999_999_999 {
            VersionId {
                secs: self.secs + 1,
                nanos: 0,
                major: self.major,
            }
        } else {
            VersionId {
                nanos: self.nanos + 1,
                ..self
            }
        }
    }

    /// The time part as one integer of nanoseconds.
    pub fn as_nanos(self) -> u128 {
        u128::from(self.secs) * 1_000_000_000 + u128::from(self.nanos)
    }

    /// The id a node with `major` gives a new version whose parents are `parents`:
    /// now, or one nanosecond past the newest parent if the clock is behind it
    /// (never past the last nanosecond of [`VersionId::MAX_SECS`]: a child of a
    /// parent there is not newer, and readers refuse it by name). A clock before
    /// 1970 counts as behind everything (docs/FORMAT.md section 5).
    pub fn for_new_version(major: Option<u32>, parents: &[VersionId]) -> VersionId {
        VersionId::new_after(major, parents, clock())
    }

    /// [`VersionId::for_new_version`] for a given clock reading.
    fn new_after(
        major: Option<u32>,
        parents: &[VersionId],
        since: Option<std::time::Duration>,
    ) -> VersionId {
        let now = VersionId::at(major, since);
        let last = u128::from(VersionId::MAX_SECS) * 1_000_000_000 + 999_999_999;
        let floor = parents
            .iter()
            .map(|parent| parent.as_nanos())
            .max()
            .map(|nanos| (nanos + 1).min(last));
        match floor {
            Some(floor) if floor > now.as_nanos() => VersionId {
                secs: (floor / 1_000_000_000) as u64,
                nanos: (floor % 1_000_000_000) as u32,
                major,
            },
            _ => now,
        }
    }
}

/// The system clock as time since the epoch; None when it reads before it.
/// A thread's [`set_test_clock`] reading replaces it.
fn clock() -> Option<std::time::Duration> {
    if let Some(fixed) = TEST_CLOCK.with(std::cell::Cell::get) {
        return Some(fixed);
    }
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

thread_local! {
    static TEST_CLOCK: std::cell::Cell<Option<std::time::Duration>> =
        const { std::cell::Cell::new(None) };
}

/// For tests that build a history over days of fake time through the store
/// API: new version ids made on this thread read `since` (time since the
/// epoch) as the clock; `None` gives the system clock back. Parents still
/// order ids (a child is never before its parent), so set times ascending.
#[doc(hidden)]
pub fn set_test_clock(since: Option<std::time::Duration>) {
    TEST_CLOCK.with(|clock| clock.set(since));
}

/// Warns, once per process, that the clock reads before 1970 (ids then follow
/// their parents, or start at [`VersionId::LOWEST`]).
fn clock_warning() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            lowest = %VersionId::LOWEST,
            "the system clock reads before 1970 (or within its first second): new version ids follow their parents by one nanosecond, or are the lowest id, until the clock is set"
        );
    }
}

impl Ord for VersionId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.secs, self.nanos, self.major.unwrap_or(0)).cmp(&(
            other.secs,
            other.nanos,
            other.major.unwrap_or(0),
        ))
    }
}

impl PartialOrd for VersionId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for VersionId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a version id ({why})");
        let (secs, rest) = text.split_once('.').ok_or_else(|| bad("no `.`"))?;
        if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("seconds must be digits"));
        }
        if secs.len() > 1 && secs.starts_with('0') {
            return Err(bad("seconds have a leading zero"));
        }
        if rest.len() < 9 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("nanoseconds must be 9 digits, then the major's digits"));
        }
        let (nanos, major) = rest.split_at(9);
        if major.starts_with('0') {
            return Err(bad("a major has no leading zero and is never 0"));
        }
        if major.len() > 6 {
            return Err(bad("a major has at most 6 digits"));
        }
        let secs: u64 = secs
            .parse()
            .ok()
            .filter(|secs| *secs <= VersionId::MAX_SECS)
            .ok_or_else(|| bad("seconds beyond 9223372036854775807"))?;
        Ok(VersionId {
            secs,
            nanos: nanos.parse().map_err(|_| bad("bad nanoseconds"))?,
            major: if major.is_empty() {
                None
            } else {
                Some(major.parse().map_err(|_| bad("bad major"))?)
            },
        })
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)?;
        if let Some(major) = self.major {
            write!(f, "{major}")?;
        }
        Ok(())
    }
}

/// The SHA-256 of a block's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    /// Hashes `data`.
    pub fn of(data: &[u8]) -> BlockHash {
        use sha2::Digest;
        BlockHash(sha2::Sha256::digest(data).into())
    }

    /// The store-relative path: `aa/bb/cc/dd/<remaining 56 hex>`.
    pub fn relative_path(&self) -> std::path::PathBuf {
        let hex = self.hex();
        let mut text = String::with_capacity(68);
        for level in 0..4 {
            text.push_str(ascii(&hex[level * 2..level * 2 + 2]));
            text.push('/');
        }
        text.push_str(ascii(&hex[8..]));
        std::path::PathBuf::from(text)
    }

    /// The 64 lowercase hex digits (a table lookup per byte: block paths are
    /// made for every block read, written and linked).
    pub fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }
}

/// Hex digits as text (they are ASCII, so this never fails; empty otherwise).
fn ascii(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

impl FromStr for BlockHash {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "{:?} is not a block hash (64 lowercase hex digits)",
                clip(text, 80)
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|err| format!("{text:?}: {err}"))?;
        Ok(BlockHash(bytes))
    }
}

/// At most `max` bytes of `text`, cut at a character boundary (for messages).
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ascii(&self.hex()))
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_compare_as_integers() {
        let a: VersionId = "1348096782.5534561241".parse().unwrap();
        let b: VersionId = "1348096782.55345612410".parse().unwrap();
        assert!(a < b, "major 1 sorts before major 10");
        let c: VersionId = "999.000000000".parse().unwrap();
        let d: VersionId = "1000.000000000".parse().unwrap();
        assert!(c < d, "seconds compare as numbers");
        assert_eq!(a.to_string(), "1348096782.5534561241");
        assert_eq!(
            "1348096782.553456124100"
                .parse::<VersionId>()
                .unwrap()
                .major,
            Some(100)
        );
        for bad in [
            "1.5",
            "01.000000000",
            "1.0000000000",
            "x.000000000",
            "1.000000000a",
            "",
        ] {
            assert!(bad.parse::<VersionId>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn new_ids_never_precede_their_parents() {
        let future = VersionId {
            secs: u64::from(u32::MAX) * 4,
            nanos: 999_999_999,
            major: Some(7),
        };
        let id = VersionId::for_new_version(Some(3), &[future]);
        assert!(id > future);
        assert_eq!(id.as_nanos(), future.as_nanos() + 1);
        assert_eq!(id.major, Some(3));
    }

    /// Found by the ids fuzz target: a peer's id at the largest u64 seconds made
    /// the child id wrap to 0 (older than its parent, refused when read back).
    #[test]
    fn seconds_beyond_time_t_are_refused_and_the_largest_id_has_a_child() {
        let err = "18446744073709551615.999999999"
            .parse::<VersionId>()
            .unwrap_err();
        assert!(err.contains("18446744073709551615.999999999"), "{err}");
        assert!(
            "9223372036854775808.000000000"
                .parse::<VersionId>()
                .is_err()
        );
        let near: VersionId = "9223372036854775806.999999999".parse().unwrap();
        let child = VersionId::for_new_version(None, &[near]);
        assert!(child > near, "{child} is not after {near}");
        assert_eq!(child.to_string(), "9223372036854775807.000000000");
        let last: VersionId = "9223372036854775807.999999999".parse().unwrap();
        let child = VersionId::for_new_version(Some(7), &[last]);
        assert_eq!(child.to_string().parse::<VersionId>(), Ok(child));
        assert!(child > last, "a higher major still sorts after: {child}");
    }

    /// A clock before 1970 (a dead RTC) must not give id 0: a child still
    /// sorts after its parents, and a first version gets the lowest id.
    #[test]
    fn a_clock_before_1970_follows_the_parents() {
        let parent: VersionId = "1700000000.999999999".parse().unwrap();
        let other: VersionId = "1600000000.000000005".parse().unwrap();
        let child = VersionId::new_after(Some(4), &[other, parent], None);
        assert_eq!(child.to_string(), "1700000001.0000000004");
        assert!(child > parent && child > other);
        let first = VersionId::new_after(None, &[], None);
        assert_eq!(first, VersionId::LOWEST);
        assert_eq!(first.to_string(), "1.000000000");
        assert_eq!(first.to_string().parse::<VersionId>().unwrap(), first);
        // Within the epoch's first second counts as before it (seconds 0 is never made).
        let early = VersionId::new_after(Some(2), &[], Some(std::time::Duration::from_millis(5)));
        assert_eq!(early.to_string(), "1.0000000002");
        // A second write on a clock still stuck: one nanosecond past the first.
        let second = VersionId::new_after(None, &[first], None);
        assert_eq!(second.to_string(), "1.000000001");
        // A working clock is used as it is.
        let now = VersionId::new_after(
            None,
            &[first],
            Some(std::time::Duration::new(1_800_000_000, 7)),
        );
        assert_eq!(now.to_string(), "1800000000.000000007");
        assert_eq!(VersionId::at(None, None), VersionId::LOWEST);
    }

    #[test]
    fn block_paths_have_four_levels() {
        let hash: BlockHash = "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
            .parse()
            .unwrap();
        assert_eq!(
            hash.relative_path(),
            std::path::Path::new(
                "98/ea/6e/4f/216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
            )
        );
        assert!("98EA".parse::<BlockHash>().is_err());
    }

    #[test]
    fn block_hashes_print_as_lowercase_hex_and_parse_back() {
        for seed in 0..64u8 {
            let hash = BlockHash::of(&[seed; 3]);
            let text = hash.to_string();
            assert_eq!(text, hex::encode(hash.0));
            assert_eq!(text.parse::<BlockHash>().unwrap(), hash);
            let path = hash.relative_path();
            assert_eq!(path.to_str().unwrap().replace('/', ""), text);
        }
    }
}
