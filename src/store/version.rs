//! Version files: what one version of one path is. Header lines `key value`, a
//! blank line, then the seed's hash lines (one SHA-256 a line, in order).
//!
//! ```text
//! globofs-version 1
//! id 1348096782.553456124100
//! kind file
//! path Photos/Trip/Moon/Photo1.jpg
//! node 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53
//! parent 1348096028.125255438
//! size 3145728
//! mode 644
//! mtime 1348096782.553456124
//! block-size 1048576
//!
//! 98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4
//! ...
//! ```
//!
//! Parsing is strict and bounded: input may come from a peer.

use std::fmt::Write as _;
use std::path::Path;

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::layout::{VPath, escape_name, unescape_name};

use super::StoreError;
use super::entry::parse_mtime;
pub use super::entry::{Kind, Mtime};
use super::posix::{Posix, Seen as PosixSeen};

/// The version-file format this build writes.
pub const VERSION_FORMAT: u32 = 1;
/// Largest file size a version may claim (1 PiB): anything larger is refused as absurd.
pub const MAX_FILE_SIZE: u64 = 1 << 50;
/// Largest version file accepted (a 1 PiB file at 64 MiB blocks needs 16 M lines;
/// 1 GiB of hash lines is already absurd for a peer to send).
pub const MAX_VERSION_FILE: u64 = 1 << 30;

/// One version of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub id: VersionId,
    pub kind: Kind,
    pub path: VPath,
    /// The node that wrote it.
    pub node: NodeId,
    /// The heads of this path the writer knew when it wrote this version.
    pub parents: Vec<VersionId>,
    /// For a rename: the path and version it came from.
    pub from: Option<(VersionId, VPath)>,
    /// For a conflict copy: the path and version this copy preserves.
    pub conflict_of: Option<(VersionId, VPath)>,
    pub size: u64,
    /// Permission bits (07777).
    pub mode: u32,
    pub mtime: Mtime,
    pub block_size: u32,
    /// Symlink target bytes.
    pub target: Option<Vec<u8>>,
    pub hashes: Vec<BlockHash>,
    /// Owners, access time, extended attributes, special kind, link group
    /// (optional keys; see [`super::posix`]).
    pub posix: Posix,
}

impl Version {
    /// How many blocks a file of `size` cut at `block_size` has.
    pub fn block_count(size: u64, block_size: u32) -> u64 {
        if block_size == 0 {
            return 0;
        }
        size.div_ceil(u64::from(block_size))
    }

    /// Length of block `index`.
    pub fn block_len(&self, index: usize) -> usize {
        let bs = u64::from(self.block_size);
        let start = index as u64 * bs;
        (self.size.saturating_sub(start)).min(bs) as usize
    }

    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(256 + self.hashes.len() * 65);
        let _ = writeln!(out, "globofs-version {VERSION_FORMAT}");
        let _ = writeln!(out, "id {}", self.id);
        let _ = writeln!(out, "kind {}", self.kind.as_str());
        let _ = writeln!(out, "path {}", self.path.escaped());
        let _ = writeln!(out, "node {}", self.node);
        for parent in &self.parents {
            let _ = writeln!(out, "parent {parent}");
        }
        if let Some((id, path)) = &self.from {
            let _ = writeln!(out, "from {id} {}", path.escaped());
        }
        if let Some((id, path)) = &self.conflict_of {
            let _ = writeln!(out, "conflict-of {id} {}", path.escaped());
        }
        if self.kind == Kind::File {
            let _ = writeln!(out, "size {}", self.size);
        }
        if self.kind != Kind::Tombstone {
            let _ = writeln!(out, "mode {:o}", self.mode);
            let _ = writeln!(out, "mtime {}.{:09}", self.mtime.secs, self.mtime.nanos);
        }
        if self.kind == Kind::File {
            let _ = writeln!(out, "block-size {}", self.block_size);
        }
        if let Some(target) = &self.target {
            let _ = writeln!(out, "target {}", escape_target(target));
        }
        self.posix.write(self.kind, &mut out);
        out.push('\n');
        for hash in &self.hashes {
            let _ = writeln!(out, "{hash}");
        }
        out
    }

    /// Parses a version file; `file` names it in errors.
    pub fn parse(file: &Path, text: &[u8]) -> Result<Version, StoreError> {
        let bad = |why: String| StoreError::Corrupt {
            path: file.to_path_buf(),
            why,
        };
        if text.len() as u64 > MAX_VERSION_FILE {
            return Err(bad(format!(
                "{} bytes is more than a version file may have",
                text.len()
            )));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
        if !text.ends_with('\n') {
            return Err(bad("truncated: no final newline".into()));
        }
        let (header, body) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line after the header".into()))?;
        let mut lines = header.lines();
        match lines.next() {
            Some(first) if first.starts_with("globofs-version ") => {
                let format: u32 = first["globofs-version ".len()..]
                    .parse()
                    .map_err(|_| bad(format!("bad first line {first:?}")))?;
                if format > VERSION_FORMAT {
                    return Err(bad(format!(
                        "version format {format} is newer than this globofs reads ({VERSION_FORMAT})"
                    )));
                }
            }
            _ => return Err(bad("does not start with `globofs-version`".into())),
        }
        let mut id = None;
        let mut kind = None;
        let mut path = None;
        let mut node = None;
        let mut parents = Vec::new();
        let mut from = None;
        let mut conflict_of = None;
        let mut size = None;
        let mut mode = None;
        let mut mtime = None;
        let mut block_size = None;
        let mut target = None;
        let mut posix = Posix::default();
        let mut seen = PosixSeen::default();
        for line in lines {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| bad(format!("header line {line:?} has no value")))?;
            match key {
                "id" => id = Some(value.parse::<VersionId>().map_err(bad)?),
                "kind" => {
                    kind = Some(
                        Kind::parse(value).ok_or_else(|| bad(format!("unknown kind {value:?}")))?,
                    )
                }
                "path" => path = Some(VPath::from_escaped(value).map_err(|err| bad(err.why))?),
                "node" => node = Some(value.parse::<NodeId>().map_err(bad)?),
                "parent" => {
                    if parents.len() >= 1024 {
                        return Err(bad("more than 1024 parents".into()));
                    }
                    parents.push(value.parse::<VersionId>().map_err(bad)?)
                }
                "from" | "conflict-of" => {
                    let (vid, p) = value
                        .split_once(' ')
                        .ok_or_else(|| bad(format!("{key} needs a version and a path")))?;
                    let pair = (
                        vid.parse::<VersionId>().map_err(bad)?,
                        VPath::from_escaped(p).map_err(|err| bad(err.why))?,
                    );
                    if key == "from" {
                        from = Some(pair);
                    } else {
                        conflict_of = Some(pair);
                    }
                }
                "size" => {
                    let n: u64 = value
                        .parse()
                        .map_err(|_| bad(format!("bad size {value:?}")))?;
                    if n > MAX_FILE_SIZE {
                        return Err(bad(format!("size {n} is absurd")));
                    }
                    size = Some(n);
                }
                "mode" => {
                    let m = u32::from_str_radix(value, 8)
                        .map_err(|_| bad(format!("bad mode {value:?}")))?;
                    if m > 0o7777 {
                        return Err(bad(format!("mode {value} has bits beyond 7777")));
                    }
                    mode = Some(m);
                }
                "mtime" => {
                    mtime = Some(
                        parse_mtime(value).ok_or_else(|| bad(format!("bad mtime {value:?}")))?,
                    )
                }
                "block-size" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| bad(format!("bad block size {value:?}")))?;
                    if !n.is_power_of_two() || !(512..=(1 << 30)).contains(&n) {
                        return Err(bad(format!(
                            "block size {n} is not a power of two from 512 to 1GiB"
                        )));
                    }
                    block_size = Some(n);
                }
                "target" => target = Some(unescape_target(value).map_err(|err| bad(err.why))?),
                // Keys of later format revisions are ignored, so old readers keep working.
                _ => {
                    posix
                        .parse_key(key, value, &mut seen)
                        .map_err(|why| bad(format!("{key}: {why}")))?;
                }
            }
        }
        let kind = kind.ok_or_else(|| bad("no `kind`".into()))?;
        let mut hashes = Vec::new();
        for line in body.lines() {
            hashes.push(
                line.parse::<BlockHash>()
                    .map_err(|err| bad(format!("hash line: {err}")))?,
            );
        }
        let (size, block_size) = match kind {
            Kind::File => (
                size.ok_or_else(|| bad("a file version has no `size`".into()))?,
                block_size.ok_or_else(|| bad("a file version has no `block-size`".into()))?,
            ),
            // Only a file has a block size (to_text writes none for the others).
            _ => (0, 0),
        };
        let expected = if kind == Kind::File {
            Version::block_count(size, block_size)
        } else {
            0
        };
        if hashes.len() as u64 != expected {
            return Err(bad(format!(
                "{} hash lines, but size {size} at block size {block_size} needs {expected} (truncated?)",
                hashes.len()
            )));
        }
        if kind == Kind::Symlink && target.is_none() {
            return Err(bad("a symlink version has no `target`".into()));
        }
        let id = id.ok_or_else(|| bad("no `id`".into()))?;
        let path = path.ok_or_else(|| bad("no `path`".into()))?;
        posix.finish(&seen, kind, &path, size).map_err(bad)?;
        if let Some(parent) = parents.iter().find(|parent| **parent >= id) {
            return Err(bad(format!(
                "parent {parent} is not older than the version {id}"
            )));
        }
        Ok(Version {
            id,
            kind,
            path,
            node: node.ok_or_else(|| bad("no `node`".into()))?,
            parents,
            from,
            conflict_of,
            size,
            // A tombstone has no mode or mtime (to_text writes none): ignored if given.
            mode: match kind {
                Kind::Tombstone => 0,
                Kind::Dir => mode.unwrap_or(0o755),
                _ => mode.unwrap_or(0o644),
            },
            mtime: match kind {
                Kind::Tombstone => Mtime::default(),
                _ => mtime.unwrap_or_default(),
            },
            block_size,
            target,
            hashes,
            posix,
        })
    }
}

/// Escapes a symlink target like a name, but keeps `/`.
pub fn escape_target(target: &[u8]) -> String {
    let parts: Vec<String> = target
        .split(|b| *b == b'/')
        .map(|part| {
            // Reserved names need no escaping inside a target; only bytes do.
            let escaped = escape_name(part);
            match escaped.as_str() {
                "%76ersions" => "versions".to_string(),
                "%68ashes" => "hashes".to_string(),
                _ => escaped,
            }
        })
        .collect();
    parts.join("/")
}

fn unescape_target(text: &str) -> Result<Vec<u8>, crate::layout::BadPath> {
    let target = unescape_name(text)?;
    if target.is_empty() || target.contains(&0) || target.len() > 4096 {
        return Err(crate::layout::BadPath::new(
            crate::layout::BadPathKind::BadTarget,
            format!("{text:?} is not a symlink target"),
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Version {
        Version {
            id: "1348096782.553456124100".parse().unwrap(),
            kind: Kind::File,
            path: VPath::from_escaped("Photos/Trip/Moon/Photo1.jpg").unwrap(),
            node: "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53".parse().unwrap(),
            parents: vec!["1348096028.125255438".parse().unwrap()],
            from: None,
            conflict_of: None,
            size: 5,
            mode: 0o644,
            mtime: Mtime {
                secs: 1348096782,
                nanos: 5,
            },
            block_size: 4096,
            target: None,
            hashes: vec![BlockHash::of(b"hello")],
            posix: Posix::default(),
        }
    }

    #[test]
    fn round_trips() {
        let version = sample();
        let text = version.to_text();
        assert!(text.ends_with(&format!("\n\n{}\n", BlockHash::of(b"hello"))));
        assert_eq!(
            Version::parse(Path::new("v"), text.as_bytes()).unwrap(),
            version
        );
    }

    #[test]
    fn posix_keys_read_back_byte_for_byte() {
        let mut version = sample();
        version.posix.uid = Some(1000);
        version.posix.gid = Some(100);
        version.posix.atime = Some(Mtime { secs: 9, nanos: 1 });
        version
            .posix
            .xattrs
            .insert(b"user.note".to_vec(), b"hi".to_vec());
        let text = version.to_text();
        let back = Version::parse(Path::new("v"), text.as_bytes()).unwrap();
        assert_eq!(back, version);
        assert_eq!(back.to_text(), text);
        // A reader before these keys skipped them: the rest of the header is
        // what it always was.
        let plain = sample().to_text();
        let stripped: String = text
            .lines()
            .filter(|line| {
                !["uid ", "gid ", "atime ", "xattr "]
                    .iter()
                    .any(|k| line.starts_with(k))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(stripped, plain);
        let twice = text.replace("uid 1000\n", "uid 1000\nuid 1000\n");
        let err = Version::parse(Path::new("root/v"), twice.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    #[test]
    fn refuses_damage() {
        let text = sample().to_text();
        let truncated = &text.as_bytes()[..text.len() - 10];
        let err = Version::parse(Path::new("root/x/versions/1"), truncated).unwrap_err();
        assert!(err.to_string().contains("root/x/versions/1"), "{err}");
        let no_hash = text.replace(&BlockHash::of(b"hello").to_string(), "");
        assert!(Version::parse(Path::new("v"), no_hash.as_bytes()).is_err());
        let huge = text.replace("size 5", "size 99999999999999999");
        assert!(Version::parse(Path::new("v"), huge.as_bytes()).is_err());
        let escape = text.replace("path Photos", "path ../Photos");
        assert!(Version::parse(Path::new("v"), escape.as_bytes()).is_err());
        let young_parent =
            text.replace("parent 1348096028.125255438", "parent 1999999999.000000000");
        assert!(Version::parse(Path::new("v"), young_parent.as_bytes()).is_err());
        assert!(Version::parse(Path::new("v"), b"\xff\xfe").is_err());
    }

    /// Found by the version_file fuzz target: keys to_text never writes for a
    /// kind (a tombstone's mode and mtime, a directory's block size) made a
    /// parsed version differ from the same version read back from its text.
    #[test]
    fn keys_a_kind_does_not_have_do_not_change_the_version() {
        let node = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
        let inputs = [
            format!(
                "globofs-version 1\nid 5.000000000\nkind tombstone\npath a\nnode {node}\nmode 644\nmtime 7.000000009\n\n"
            ),
            format!(
                "globofs-version 1\nid 5.000000000\nkind dir\npath a\nnode {node}\nblock-size 4096\n\n"
            ),
        ];
        for input in inputs {
            let version = Version::parse(Path::new("v"), input.as_bytes()).unwrap();
            let again = Version::parse(Path::new("v"), version.to_text().as_bytes()).unwrap();
            assert_eq!(again, version, "{input}");
            assert_eq!(version.block_size, 0, "{input}");
            if version.kind == Kind::Tombstone {
                assert_eq!((version.mode, version.mtime), (0, Mtime::default()));
            }
        }
    }

    #[test]
    fn targets_keep_slashes_and_escape_bytes() {
        assert_eq!(escape_target(b"../a b/versions\n"), "../a b/versions%0A");
        assert_eq!(
            unescape_target("../a b/versions%0A").unwrap(),
            b"../a b/versions\n"
        );
    }
}
