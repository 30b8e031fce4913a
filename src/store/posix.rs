//! The POSIX attributes a version may carry beyond mode and mtime: owner and
//! group, access time, extended attributes (POSIX ACLs among them), the kind
//! of a special file, and the names of a hard-link group. Each is an optional
//! header key of the version file (docs/FORMAT.md, section 6), so a reader
//! that predates them ignores them and still reads the same bytes at the same
//! path: a special file reads as an empty file, every name of a link group as
//! a file of its own with the same content.
//!
//! ```text
//! uid 1000
//! gid 100
//! atime 1348096782.553456124
//! special char 1 3
//! xattr user.comment 68656c6c6f
//! link-group 1348096782.553456124100
//! link Photos/Trip/a.jpg
//! link Photos/Trip/b.jpg
//! ```
//!
//! Parsing is strict and bounded (a peer may send anything): a key twice, a
//! value that is not in its one canonical form, or more than the Linux limits
//! allow is refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::entry::{Kind, Mtime, parse_mtime};
use crate::ids::VersionId;
use crate::layout::{VPath, escape_name, unescape_name};

/// Largest value of one extended attribute (Linux's XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 64 << 10;
/// Largest name of one extended attribute (Linux's XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest list of names, each with its NUL (Linux's XATTR_LIST_MAX).
pub const XATTR_LIST_MAX: usize = 64 << 10;
/// Largest sum of the values of one version's extended attributes.
pub const XATTR_TOTAL_MAX: usize = 4 << 20;
/// Most names in one hard-link group (ext4's limit on links to a file).
pub const LINKS_MAX: usize = 65_000;

/// What a special file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    Char,
    Block,
}

/// A special file: a version of kind `file`, size 0, with this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Special {
    pub kind: SpecialKind,
    /// Device numbers (character and block devices only; 0 otherwise).
    pub major: u32,
    pub minor: u32,
}

/// The names of a hard-link group, as every one of its versions records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkGroup {
    /// The group's identity: the id of the version that first linked it.
    pub group: VersionId,
    /// Every name of the group, sorted, this version's path among them.
    pub names: Vec<VPath>,
}

/// The optional POSIX attributes of a version (all absent in a version written
/// before they existed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posix {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The access time, when it was set explicitly (reads never store one).
    pub atime: Option<Mtime>,
    pub special: Option<Special>,
    /// Extended attributes by full name (`user.x`, `system.posix_acl_access`, ...).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Boxed: most versions are in no group.
    pub links: Option<Box<LinkGroup>>,
}

/// Which keys a version file gave already (each may come once).
#[derive(Default)]
pub struct Seen {
    uid: bool,
    gid: bool,
    atime: bool,
    special: bool,
    group: bool,
    xattr_bytes: usize,
    xattr_list: usize,
}

impl Posix {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        *self == Posix::default()
    }

    /// Appends the keys to a version file's header (`kind` decides which apply:
    /// a tombstone has none, only a file is special).
    pub fn write(&self, kind: Kind, out: &mut String) {
        if kind == Kind::Tombstone {
            return;
        }
        if let Some(uid) = self.uid {
            let _ = writeln!(out, "uid {uid}");
        }
        if let Some(gid) = self.gid {
            let _ = writeln!(out, "gid {gid}");
        }
        if let Some(atime) = self.atime {
            let _ = writeln!(out, "atime {}.{:09}", atime.secs, atime.nanos);
        }
        if let (Some(special), Kind::File) = (self.special, kind) {
            let _ = match special.kind {
                SpecialKind::Fifo => writeln!(out, "special fifo"),
                SpecialKind::Socket => writeln!(out, "special socket"),
                SpecialKind::Char => {
                    writeln!(out, "special char {} {}", special.major, special.minor)
                }
                SpecialKind::Block => {
                    writeln!(out, "special block {} {}", special.major, special.minor)
                }
            };
        }
        for (name, value) in &self.xattrs {
            let _ = write!(out, "xattr {} ", escape_name(name));
            for byte in value {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\n');
        }
        if let (Some(links), Kind::File) = (&self.links, kind) {
            let _ = writeln!(out, "link-group {}", links.group);
            for name in &links.names {
                let _ = writeln!(out, "link {}", name.escaped());
            }
        }
    }

    /// Takes one header line if it is one of these keys: `Ok(false)` when the
    /// key is not one of them, an error (the reason) when its value is bad.
    pub fn parse_key(&mut self, key: &str, value: &str, seen: &mut Seen) -> Result<bool, String> {
        let once = |flag: &mut bool| {
            if std::mem::replace(flag, true) {
                Err(format!("`{key}` given twice"))
            } else {
                Ok(())
            }
        };
        match key {
            "uid" | "gid" => {
                let id = parse_id(value).ok_or_else(|| format!("bad {key} {value:?}"))?;
                if key == "uid" {
                    once(&mut seen.uid)?;
                    self.uid = Some(id);
                } else {
                    once(&mut seen.gid)?;
                    self.gid = Some(id);
                }
            }
            "atime" => {
                once(&mut seen.atime)?;
                self.atime =
                    Some(parse_mtime(value).ok_or_else(|| format!("bad atime {value:?}"))?);
            }
            "special" => {
                once(&mut seen.special)?;
                self.special =
                    Some(parse_special(value).ok_or_else(|| format!("bad special {value:?}"))?);
            }
            "xattr" => {
                let value_text = value;
                let (name, hex) = value
                    .rsplit_once(' ')
                    .ok_or_else(|| format!("xattr {value:?} needs a name and a value"))?;
                let name = unescape_name(name).map_err(|err| format!("xattr name: {}", err.why))?;
                if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
                    return Err(format!(
                        "xattr name {value:?} is empty, too long or has a NUL"
                    ));
                }
                let value = parse_hex(hex)
                    .ok_or_else(|| format!("xattr value {hex:?} is not lowercase hex"))?;
                if value.len() > XATTR_VALUE_MAX {
                    return Err(format!(
                        "xattr value of {} bytes (at most {XATTR_VALUE_MAX})",
                        value.len()
                    ));
                }
                seen.xattr_bytes += value.len();
                seen.xattr_list += name.len() + 1;
                if seen.xattr_bytes > XATTR_TOTAL_MAX || seen.xattr_list > XATTR_LIST_MAX {
                    return Err("more extended attributes than a version may have".into());
                }
                if let Some(old) = self.xattrs.insert(name, value) {
                    let _ = old;
                    return Err(format!("xattr {:?} given twice", value_name(value_text)));
                }
            }
            "link-group" => {
                once(&mut seen.group)?;
                let group = value.parse::<VersionId>()?;
                self.links_mut().group = group;
            }
            "link" => {
                let name = VPath::from_escaped(value).map_err(|err| err.why)?;
                let links = self.links_mut();
                if links.names.len() >= LINKS_MAX {
                    return Err(format!("more than {LINKS_MAX} names in a link group"));
                }
                if links.names.last().is_some_and(|last| *last >= name) {
                    return Err(format!("link {value:?}: names not sorted or given twice"));
                }
                links.names.push(name);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn links_mut(&mut self) -> &mut LinkGroup {
        self.links.get_or_insert_with(|| {
            Box::new(LinkGroup {
                group: VersionId {
                    secs: 0,
                    nanos: 0,
                    major: None,
                },
                names: Vec::new(),
            })
        })
    }

    /// Checks the keys together once the header is read, for a version of
    /// `kind` at `path` with `size` bytes; drops what the kind does not carry
    /// (so a version reads back from its own text the same).
    pub fn finish(
        &mut self,
        seen: &Seen,
        kind: Kind,
        path: &VPath,
        size: u64,
    ) -> Result<(), String> {
        if kind == Kind::Tombstone {
            *self = Posix::default();
            return Ok(());
        }
        if kind != Kind::File {
            self.special = None;
            self.links = None;
        }
        if self.special.is_some() && size != 0 {
            return Err(format!("a special file of {size} bytes"));
        }
        if let Some(links) = &self.links {
            if !seen.group {
                return Err("`link` names without a `link-group`".into());
            }
            if !links.names.contains(path) {
                return Err(format!(
                    "the link group does not name the version's own path {path}"
                ));
            }
        }
        Ok(())
    }
}

/// The name part of an `xattr` line's value, for messages.
fn value_name(text: &str) -> &str {
    text.rsplit_once(' ').map_or(text, |(name, _)| name)
}

/// A numeric id in its one canonical decimal form (no sign, no leading zero).
fn parse_id(text: &str) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

fn parse_special(text: &str) -> Option<Special> {
    let mut words = text.split(' ');
    let kind = match words.next()? {
        "fifo" => SpecialKind::Fifo,
        "socket" => SpecialKind::Socket,
        "char" => SpecialKind::Char,
        "block" => SpecialKind::Block,
        _ => return None,
    };
    let (major, minor) = match kind {
        SpecialKind::Char | SpecialKind::Block => {
            (parse_id(words.next()?)?, parse_id(words.next()?)?)
        }
        _ => (0, 0),
    };
    if words.next().is_some() {
        return None;
    }
    Some(Special { kind, major, minor })
}

/// Lowercase hex, two digits a byte (the empty value is the empty string).
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0
        || bytes
            .iter()
            .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lines: &[(&str, &str)], kind: Kind, path: &VPath) -> Result<Posix, String> {
        let mut posix = Posix::default();
        let mut seen = Seen::default();
        for (key, value) in lines {
            assert!(posix.parse_key(key, value, &mut seen)?, "{key} not taken");
        }
        posix.finish(&seen, kind, path, 0)?;
        Ok(posix)
    }

    fn path(text: &str) -> VPath {
        VPath::from_escaped(text).unwrap()
    }

    #[test]
    fn every_key_reads_back_as_written() {
        let mut posix = Posix {
            uid: Some(1000),
            gid: Some(0),
            atime: Some(Mtime { secs: -3, nanos: 7 }),
            special: Some(Special {
                kind: SpecialKind::Char,
                major: 1,
                minor: 3,
            }),
            ..Posix::default()
        };
        posix.xattrs.insert(b"user.a b%".to_vec(), vec![0, 255, 16]);
        posix
            .xattrs
            .insert(b"system.posix_acl_access".to_vec(), Vec::new());
        posix.links = Some(Box::new(LinkGroup {
            group: "5.000000001".parse().unwrap(),
            names: vec![path("a"), path("d/b c")],
        }));
        let mut text = String::new();
        posix.write(Kind::File, &mut text);
        let lines: Vec<(&str, &str)> = text
            .lines()
            .map(|line| line.split_once(' ').unwrap())
            .collect();
        assert_eq!(parsed(&lines, Kind::File, &path("a")).unwrap(), posix);
        assert!(text.contains("xattr user.a b%25 00ff10\n"), "{text}");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let a = path("a");
        for (lines, why) in [
            (vec![("uid", "01")], "bad uid"),
            (vec![("uid", "-1")], "bad uid"),
            (vec![("gid", "4294967296")], "bad gid"),
            (vec![("uid", "1"), ("uid", "1")], "twice"),
            (vec![("special", "char 1")], "bad special"),
            (vec![("special", "fifo 1 2")], "bad special"),
            (vec![("xattr", "user.x 0A")], "lowercase hex"),
            (vec![("xattr", "user.x")], "needs a name"),
            (
                vec![("xattr", "user.x 00"), ("xattr", "user.x 01")],
                "twice",
            ),
            (
                vec![("link-group", "5.000000001"), ("link", "b"), ("link", "a")],
                "sorted",
            ),
            (vec![("link", "a")], "without a `link-group`"),
            (
                vec![("link-group", "5.000000001"), ("link", "b")],
                "own path",
            ),
        ] {
            let err = parsed(&lines, Kind::File, &a).unwrap_err();
            assert!(err.contains(why), "{lines:?}: {err}");
        }
        let big = "00".repeat(XATTR_VALUE_MAX + 1);
        let err = parsed(&[("xattr", &format!("user.x {big}"))], Kind::File, &a).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn a_tombstone_keeps_nothing_and_only_a_file_is_special_or_linked() {
        let a = path("a");
        let lines = [("uid", "5"), ("special", "fifo")];
        assert!(parsed(&lines, Kind::Tombstone, &a).unwrap().is_empty());
        let dir = parsed(&lines, Kind::Dir, &a).unwrap();
        assert_eq!((dir.uid, dir.special), (Some(5), None));
        let mut text = String::new();
        dir.write(Kind::Dir, &mut text);
        assert_eq!(text, "uid 5\n");
    }
}
