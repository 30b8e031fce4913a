//! Where things live: the volume directory, a store's fixed subdirectories, and
//! how a path inside the volume becomes a path inside `root/` (name escaping).
//!
//! Escaping (docs/FORMAT.md, "Names"): in each name, `%`, control bytes (0x00-0x1F,
//! 0x7F) and bytes that are not part of valid UTF-8 become `%XX` (uppercase hex);
//! the reserved names `versions` and `hashes` get their first byte escaped
//! (`%76ersions`, `%68ashes`). Names the layout owns start with `%` and a
//! character that is not a hex digit (`%journal`), so they never meet a user name.
//! An escaped name longer than 255 bytes is stored as `%~` + the SHA-256 of the
//! raw name (hex); its real name is kept in its version files' `path` header.
//!
//! Modes (docs/FORMAT.md section 18): what the store creates is readable by
//! peers: directories 0755, files 0644, whatever the process's umask says
//! ([`create_dirs`], [`open_append`], [`FILE_MODE`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::ids::NodeId;

/// Longest name a POSIX filesystem takes in one directory entry.
pub const NAME_MAX: usize = 255;

/// Directory names the store owns inside `root/<path>/`.
pub const RESERVED: [&str; 2] = ["versions", "hashes"];

/// A path inside the volume: a list of names, none empty, `.`, `..`, or containing
/// `/` or NUL. The empty list is the volume's root directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VPath(Vec<Vec<u8>>);

/// Why a name or path is not acceptable: what is wrong with it ([`BadPathKind`])
/// and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct BadPath {
    pub kind: BadPathKind,
    pub why: String,
}

/// What is wrong with a name or path (the errno a filesystem call reports
/// for it is decided from this, never from the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPathKind {
    /// Empty, `.` or `..` where a name belongs.
    NotAName,
    /// `..` inside a volume path.
    DotDot,
    /// Holds `/` or NUL.
    SlashOrNul,
    /// Longer than [`NAME_MAX`] bytes.
    TooLong,
    /// Escaped text that is not a canonical escape of a name.
    BadEscape,
    /// Not a symlink target (empty, with NUL, or over 4096 bytes).
    BadTarget,
}

impl BadPath {
    pub fn new(kind: BadPathKind, why: impl Into<String>) -> BadPath {
        BadPath {
            kind,
            why: why.into(),
        }
    }
}

impl VPath {
    pub fn root() -> VPath {
        VPath(Vec::new())
    }

    /// Parses a user path (`/Photos/a.jpg` or `Photos/a.jpg`); `.` parts and
    /// repeated slashes are dropped, `..` is refused.
    pub fn parse(text: &OsStr) -> Result<VPath, BadPath> {
        let mut names = Vec::new();
        for part in text.as_bytes().split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    return Err(BadPath::new(
                        BadPathKind::DotDot,
                        format!("{:?}: `..` is not allowed in a volume path", text),
                    ));
                }
                name => {
                    check_name(name)?;
                    names.push(name.to_vec());
                }
            }
        }
        Ok(VPath(names))
    }

    pub fn names(&self) -> &[Vec<u8>] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last name, if this is not the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.0.last().map(Vec::as_slice)
    }

    pub fn parent(&self) -> Option<VPath> {
        if self.0.is_empty() {
            None
        } else {
            Some(VPath(self.0[..self.0.len() - 1].to_vec()))
        }
    }

    pub fn join(&self, name: &[u8]) -> Result<VPath, BadPath> {
        check_name(name)?;
        let mut names = self.0.clone();
        names.push(name.to_vec());
        Ok(VPath(names))
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &VPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path as raw bytes, `/`-separated, without a leading slash.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }

    /// The path in escaped text form (`Photos/%68ashes/a b.jpg`): one line of
    /// text, used in version headers and journals. Long names are not hashed here.
    pub fn escaped(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|name| escape_name(name)).collect();
        names.join("/")
    }

    /// Parses the escaped text form; refuses anything that is not canonical.
    pub fn from_escaped(text: &str) -> Result<VPath, BadPath> {
        if text.is_empty() {
            return Ok(VPath::root());
        }
        let mut names = Vec::new();
        for part in text.split('/') {
            let name = unescape_name(part)?;
            check_name(&name)?;
            if escape_name(&name) != part {
                return Err(BadPath::new(
                    BadPathKind::BadEscape,
                    format!("{part:?} is not a canonically escaped name"),
                ));
            }
            names.push(name);
        }
        Ok(VPath(names))
    }

    /// The directory for this path under a tree root (`root/` or a spool).
    pub fn disk_path(&self, tree: &Path) -> PathBuf {
        let mut out = tree.to_path_buf();
        for name in &self.0 {
            out.push(disk_name(name));
        }
        out
    }

    /// For messages: the path with a leading `/`, non-UTF-8 bytes escaped.
    pub fn display(&self) -> String {
        format!("/{}", self.escaped())
    }

    pub fn to_os_string(&self) -> OsString {
        OsString::from_vec(self.to_bytes())
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl fmt::Debug for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VPath({})", self.display())
    }
}

/// Checks one name of a volume path.
pub fn check_name(name: &[u8]) -> Result<(), BadPath> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(BadPath::new(
            BadPathKind::NotAName,
            format!("{:?} is not a file name", String::from_utf8_lossy(name)),
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(BadPath::new(
            BadPathKind::SlashOrNul,
            format!("{:?} contains `/` or NUL", String::from_utf8_lossy(name)),
        ));
    }
    if name.len() > NAME_MAX {
        return Err(BadPath::new(
            BadPathKind::TooLong,
            format!(
                "{:?}... is {} bytes long; a name has at most {NAME_MAX}",
                String::from_utf8_lossy(&name[..40]),
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Escapes one name (see the module docs); never hashes.
pub fn escape_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    let reserved = RESERVED.iter().any(|r| r.as_bytes() == name);
    let mut rest = name;
    let mut first = true;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(err) => {
                let (good, bad) = rest.split_at(err.valid_up_to());
                let bad_len = err.error_len().unwrap_or(bad.len());
                // from_utf8 accepted `good`, so this cannot fail.
                (std::str::from_utf8(good).unwrap_or(""), &bad[..bad_len])
            }
        };
        for ch in valid.chars() {
            let code = ch as u32;
            if ch == '%' || code < 0x20 || code == 0x7f || (first && reserved) {
                let mut buf = [0u8; 4];
                for byte in ch.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            } else {
                out.push(ch);
            }
            first = false;
        }
        for byte in invalid {
            out.push_str(&format!("%{byte:02X}"));
            first = false;
        }
        rest = &rest[valid.len() + invalid.len()..];
    }
    out
}

/// Reverses [`escape_name`]; `%~` (hashed) names cannot be reversed and are refused.
pub fn unescape_name(text: &str) -> Result<Vec<u8>, BadPath> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or_else(|| {
                BadPath::new(
                    BadPathKind::BadEscape,
                    format!("{text:?}: `%` must be followed by two hex digits"),
                )
            })?;
            let hex = std::str::from_utf8(hex).map_err(|_| {
                BadPath::new(BadPathKind::BadEscape, format!("{text:?}: bad escape"))
            })?;
            let byte = u8::from_str_radix(hex, 16)
                .ok()
                .filter(|_| {
                    hex.bytes()
                        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                })
                .ok_or_else(|| {
                    BadPath::new(
                        BadPathKind::BadEscape,
                        format!("{text:?}: `%{hex}` is not an escape"),
                    )
                })?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Ok(out)
}

/// The directory-entry name of a user name: escaped, or hashed when too long.
pub fn disk_name(name: &[u8]) -> OsString {
    let escaped = escape_name(name);
    if escaped.len() <= NAME_MAX {
        OsString::from(escaped)
    } else {
        OsString::from(format!("%~{}", crate::ids::BlockHash::of(name)))
    }
}

/// The user name of a directory entry under `root/`, or `None` for layout entries
/// (`versions`, `hashes`, `%...` layout names) and for hashed long names, whose
/// name must be read from their version files.
pub fn name_from_disk(entry: &OsStr) -> Option<Vec<u8>> {
    let text = entry.to_str()?;
    // Not a directory entry at all (too long, or a path): never a disk name,
    // so what is read back always is what `disk_name` gives.
    if text.len() > NAME_MAX || text.contains('/') {
        return None;
    }
    if RESERVED.contains(&text) || text.starts_with("%~") {
        return None;
    }
    let name = unescape_name(text).ok()?;
    (escape_name(&name) == text).then_some(name)
}

/// True when a `root/` entry is a hashed long name.
pub fn is_hashed_name(entry: &OsStr) -> bool {
    entry.as_bytes().starts_with(b"%~")
}

/// The fixed parts of one node's store directory.
/// The mode of every directory the store creates (docs/FORMAT.md section 18).
pub const DIR_MODE: u32 = 0o755;

/// The mode of every file the store keeps (docs/FORMAT.md section 18); temp
/// files (0600 when made) get it before they take their final name.
pub const FILE_MODE: u32 = 0o644;

/// `mkdir -p` giving each directory it makes [`DIR_MODE`] exactly (a chmod
/// after the mkdir, so a strict umask cannot hide the store from peers and a
/// loose one cannot open it to them). Existing directories are left as they
/// are: an administrator's `chmod` of a store (section 18) stays.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_dirs(parent)?;
            }
            match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => {}
                Err(_) if dir.is_dir() => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Err(_) if dir.is_dir() => return Ok(()),
        Err(err) => return Err(err),
    }
    if umask_keeps(DIR_MODE) {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

/// [`create_dirs`] for a `dir` whose last `depth` components are most
/// likely missing while the rest is there (a fan-out chain such as
/// `hashes/aa/bb/cc/dd` under a directory the caller knows exists): makes
/// them top-down, one `mkdir` each (an existing one is passed), instead of
/// probing upward one failed `mkdir` at a time. When a level's parent turns
/// out missing (the base was not there, or went away meanwhile) it falls back
/// to [`create_dirs`]. Modes as [`create_dirs`] gives them.
pub fn create_dirs_tail(dir: &Path, depth: usize) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut chain: Vec<&Path> = dir.ancestors().take(depth.max(1)).collect();
    chain.reverse();
    for (at, level) in chain.iter().enumerate() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(level) {
            Ok(()) => {
                if !umask_keeps(DIR_MODE) {
                    std::fs::set_permissions(level, std::fs::Permissions::from_mode(DIR_MODE))?;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return create_dirs(dir),
            // Not a directory: the next level's mkdir says so (ENOTDIR), or
            // for the last one the check below.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                if at + 1 == chain.len() && !level.is_dir() {
                    return Err(err);
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Whether this process's umask leaves `mode` whole, so a directory made
/// with it needs no chmod after (read once from `/proc/self/status`; when
/// that cannot be read, no: the chmod is made). globofs never changes its
/// umask.
pub(crate) fn umask_keeps(mode: u32) -> bool {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let umask = UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    umask.is_some_and(|umask| umask & mode == 0)
}

/// A named temp file in `dir` (`<prefix>XXXXXX`) that will be renamed or
/// linked into the store: made [`FILE_MODE`] at once when the umask leaves
/// that whole (no `fchmod` after), else 0600 until [`set_file_mode`].
/// Returns whether the mode still has to be set.
pub fn store_temp_file(
    dir: &Path,
    prefix: &str,
) -> std::io::Result<(tempfile::NamedTempFile, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let direct = umask_keeps(FILE_MODE);
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    if direct {
        builder.permissions(std::fs::Permissions::from_mode(FILE_MODE));
    }
    Ok((builder.tempfile_in(dir)?, !direct))
}

/// Gives an open file (a temp file about to be renamed or linked into the
/// store) [`FILE_MODE`], whatever the umask or the temp file's 0600.
pub fn set_file_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

/// Opens `path` for appending (and reading: a caller may check its last
/// byte on the same descriptor), creating it with [`FILE_MODE`] exactly if
/// it is not there (an existing file's mode is left alone, like
/// [`create_dirs`]).
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    open_append_making(path, 0)
}

/// [`open_append`] for a `path` whose directory may be missing too (a
/// path's `versions/log` at its first version): makes the last `depth`
/// directories above it top-down ([`create_dirs_tail`]) when the file is
/// not there.
pub fn open_append_making(path: &Path, depth: usize) -> std::io::Result<std::fs::File> {
    match open_existing_append(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|_| depth > 0) {
                create_dirs_tail(dir, depth)?;
            }
            create_append(path)
        }
        other => other,
    }
}

/// Opens an existing `path` for appending and reading.
fn open_existing_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
}

/// Creates `path` with [`FILE_MODE`] for appending (and reading), or opens
/// it when another writer made it meanwhile.
fn create_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(file) => {
                if !umask_keeps(FILE_MODE) {
                    set_file_mode(&file)?;
                }
                return Ok(file);
            }
            // Another writer made it meanwhile: open theirs.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        match open_existing_append(path) {
            // ... and removed it again (gc): make it anew.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StoreLayout {
    pub dir: PathBuf,
}

impl StoreLayout {
    pub fn new(dir: impl Into<PathBuf>) -> StoreLayout {
        StoreLayout { dir: dir.into() }
    }

    /// The file that records format version, node id and nonce.
    pub fn format_file(&self) -> PathBuf {
        self.dir.join("format")
    }
    pub fn hashes(&self) -> PathBuf {
        self.dir.join("hashes")
    }
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn locks(&self) -> PathBuf {
        self.dir.join("state").join("locks")
    }
    pub fn acks(&self) -> PathBuf {
        self.dir.join("ack")
    }
    /// `state/intents/`: the intent files of processes publishing versions.
    pub fn intents(&self) -> PathBuf {
        self.dir.join("state").join("intents")
    }
    /// `state/redo/`: the redo files of processes with durable commits.
    pub fn redo(&self) -> PathBuf {
        self.dir.join("state").join("redo")
    }
    pub fn inbound(&self, peer: NodeId) -> PathBuf {
        self.dir
            .join("spool")
            .join("inbound")
            .join(peer.to_string())
    }
    pub fn outbound(&self, peer: NodeId) -> PathBuf {
        self.dir
            .join("spool")
            .join("outbound")
            .join(peer.to_string())
    }
    pub fn inbound_dir(&self) -> PathBuf {
        self.dir.join("spool").join("inbound")
    }
    pub fn outbound_dir(&self) -> PathBuf {
        self.dir.join("spool").join("outbound")
    }

    /// The fixed directories every store has.
    pub fn fixed_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.hashes(),
            self.root(),
            self.journal(),
            self.tmp(),
            self.state(),
            self.locks(),
            self.acks(),
            self.inbound_dir(),
            self.outbound_dir(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_out_chain_is_made_top_down_and_a_missing_base_made_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("hashes");
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(base.join("aa")).unwrap();
        let chain = base.join("aa/bb/cc/dd");
        create_dirs_tail(&chain, 4).unwrap();
        assert!(chain.is_dir());
        let mode = std::fs::metadata(base.join("aa/bb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, DIR_MODE);
        // All there already: nothing to do, no error.
        create_dirs_tail(&chain, 4).unwrap();
        // The base itself missing: made like `mkdir -p`.
        let deep = dir.path().join("root/x/hashes/aa/bb/cc/dd");
        create_dirs_tail(&deep, 5).unwrap();
        assert!(deep.is_dir());
        // A file in the way is an error, at any level.
        std::fs::write(base.join("ff"), b"").unwrap();
        assert!(create_dirs_tail(&base.join("ff/00/11/22"), 4).is_err());
        std::fs::write(base.join("ee"), b"").unwrap();
        assert!(create_dirs_tail(&base.join("ee"), 1).is_err());
    }

    #[test]
    fn a_log_opened_making_its_directories_is_appended_to_and_read() {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("p/versions/log");
        let mut file = open_append_making(&log, 2).unwrap();
        file.write_all(b"one\n").unwrap();
        let mut again = open_append_making(&log, 2).unwrap();
        again.write_all(b"two\n").unwrap();
        let mut last = [0u8; 1];
        again.read_exact_at(&mut last, 7).unwrap();
        assert_eq!(&last, b"\n");
        assert_eq!(std::fs::read(&log).unwrap(), b"one\ntwo\n");
    }

    /// Found by the names fuzz target: a 265-byte text with `/` in it read
    /// back as a name whose disk name is the hashed form, not that text.
    #[test]
    fn what_cannot_be_a_directory_entry_is_no_disk_name() {
        let long = "a".repeat(NAME_MAX + 1);
        assert_eq!(name_from_disk(OsStr::new(&long)), None);
        assert_eq!(name_from_disk(OsStr::new("a/b")), None);
        let max = "b".repeat(NAME_MAX);
        assert_eq!(
            name_from_disk(OsStr::new(&max)),
            Some(max.clone().into_bytes())
        );
        assert_eq!(disk_name(max.as_bytes()), OsStr::new(&max));
    }

    #[test]
    fn reserved_and_odd_names_round_trip() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"versions", "%76ersions"),
            (b"hashes", "%68ashes"),
            (b"log", "log"),
            (b"a b", "a b"),
            (b"50%", "50%25"),
            (b"line\nbreak", "line%0Abreak"),
            (b"caf\xc3\xa9", "caf\u{e9}"),
            (b"bad\xffbyte", "bad%FFbyte"),
            (b"%journal", "%25journal"),
            (b"Versions", "Versions"),
        ];
        for (raw, escaped) in cases {
            assert_eq!(escape_name(raw), escaped);
            assert_eq!(unescape_name(escaped).unwrap(), raw);
            assert_eq!(name_from_disk(OsStr::new(escaped)).as_deref(), Some(raw));
        }
        assert_eq!(name_from_disk(OsStr::new("versions")), None);
        assert_eq!(name_from_disk(OsStr::new("%journal")), None);
        assert_eq!(
            name_from_disk(OsStr::new("%2a")),
            None,
            "lowercase hex is not canonical"
        );
    }

    #[test]
    fn long_names_are_hashed_on_disk() {
        let name = vec![b'%'; 255];
        let disk = disk_name(&name);
        assert!(disk.len() <= NAME_MAX);
        assert!(is_hashed_name(&disk));
        let short = vec![b'a'; 255];
        assert_eq!(disk_name(&short), OsString::from_vec(short.clone()));
    }

    #[test]
    fn paths_parse_and_refuse_escapes() {
        let path = VPath::parse(OsStr::new("/Photos//Trip/./Moon/")).unwrap();
        assert_eq!(path.escaped(), "Photos/Trip/Moon");
        assert!(VPath::parse(OsStr::new("/a/../b")).is_err());
        assert_eq!(
            VPath::from_escaped("Photos/%68ashes").unwrap().names()[1],
            b"hashes"
        );
        assert!(VPath::from_escaped("a/../b").is_err());
        assert!(VPath::from_escaped("a//b").is_err());
        assert!(
            VPath::from_escaped("hashes").is_err(),
            "unescaped reserved name"
        );
    }
}
