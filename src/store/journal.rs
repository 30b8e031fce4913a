//! Append-only journals: numbered segments of checksummed lines, read from a
//! remembered (segment, offset).
//!
//! A segment is a file named by its number (16 digits, zero-padded). Its first
//! line is `<crc> globofs-journal 1 <writer nonce> <segment number>`; every line
//! is `<crc32 of the rest, 8 hex> <payload>\n`, written with one `write(2)` in
//! append mode. A reader acts on complete lines with a good checksum only and
//! stops at the first line that is not (still being written, torn, or zeros);
//! a bad *complete* line is reported as [`Stuck`] (where and why).
//! A segment is finished once a higher-numbered one exists; a torn last line of
//! a finished segment is skipped with a warning. Only the writer trims segments.

use super::read_dir_if_present;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::lock::FileLock;
use super::{IoContext, StoreError};

/// Start a new segment once the current one is this large.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// Longest journal line accepted.
pub const MAX_LINE: usize = 64 << 10;

const MAGIC: &str = "globofs-journal 1";

fn segment_name(number: u64) -> String {
    format!("{number:016}")
}

/// Lists the segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut numbers = Vec::new();
    let Some(entries) = read_dir_if_present(dir)? else {
        return Ok(numbers);
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        if let Some(name) = entry.file_name().to_str() {
            if name.len() == 16 && name.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(number) = name.parse() {
                    numbers.push(number);
                }
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn checksum_line(payload: &str) -> String {
    format!("{:08x} {payload}\n", crc32fast::hash(payload.as_bytes()))
}

/// Checks one line (without its newline); returns the payload.
fn check_line(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let (crc, payload) = text.split_once(' ')?;
    if crc.len() != 8 {
        return None;
    }
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32fast::hash(payload.as_bytes()) == crc).then_some(payload)
}

/// Appends lines to a journal directory; safe for several processes of one node
/// (appends hold a shared lock, starting a segment an exclusive one).
pub struct JournalWriter {
    dir: PathBuf,
    lock: PathBuf,
    nonce: String,
    /// The segment the last append wrote to, kept open: while no segment
    /// after it exists it is still the last one (segments start only after
    /// the last, and trimming never removes the last), so the next append
    /// needs no listing of the directory.
    open: std::sync::Mutex<Option<(u64, File)>>,
}

impl JournalWriter {
    /// `lock` is a local file used to serialise segment changes.
    pub fn new(dir: impl Into<PathBuf>, lock: impl Into<PathBuf>, nonce: &str) -> JournalWriter {
        JournalWriter {
            dir: dir.into(),
            lock: lock.into(),
            nonce: nonce.to_string(),
            open: std::sync::Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `payloads` (no newlines in them), as one write.
    pub fn append(&self, payloads: &[String]) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for payload in payloads {
            if payload.contains('\n') {
                return Err(StoreError::Internal(format!(
                    "journal payload {payload:?} contains a newline"
                )));
            }
            text.push_str(&checksum_line(payload));
        }
        loop {
            let guard = FileLock::shared(&self.lock)?;
            let mut open = crate::lock(&self.open);
            let kept = open.take().and_then(|(number, file)| {
                let meta = file.metadata().ok()?;
                let last = meta.nlink() > 0 && !self.dir.join(segment_name(number + 1)).exists();
                last.then_some((number, file, meta.len()))
            });
            let latest = match kept {
                Some(kept) => Some(kept),
                None => self.open_latest()?,
            };
            let number = latest.as_ref().map(|(number, ..)| *number);
            if let Some((number, mut file, len)) = latest {
                let path = self.dir.join(segment_name(number));
                if len < SEGMENT_BYTES && last_byte_is_newline(&file, len).at(&path)? {
                    file.write_all(text.as_bytes()).at(&path)?;
                    *open = Some((number, file));
                    return Ok(());
                }
            }
            drop(open);
            drop(guard);
            self.start_segment(number)?;
        }
    }

    /// The last segment, opened for appending: its number, file and length.
    fn open_latest(&self) -> Result<Option<(u64, File, u64)>, StoreError> {
        let Some(number) = segments(&self.dir)?.last().copied() else {
            return Ok(None);
        };
        let path = self.dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        let len = file.metadata().at(&path)?.len();
        Ok(Some((number, file, len)))
    }

    /// Starts the segment after `latest` unless someone already did.
    fn start_segment(&self, latest: Option<u64>) -> Result<(), StoreError> {
        let _guard = FileLock::exclusive(&self.lock)?;
        if segments(&self.dir)?.last().copied() != latest {
            return Ok(());
        }
        crate::layout::create_dirs(&self.dir).at(&self.dir)?;
        let number = latest.map_or(1, |n| n + 1);
        let path = self.dir.join(segment_name(number));
        let header = checksum_line(&format!("{MAGIC} {} {number}", self.nonce));
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).at(&self.dir)?;
        tmp.write_all(header.as_bytes()).at(&path)?;
        crate::store::set_mode(tmp.path(), 0o644)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => Ok(()),
            Err(err) if err.error.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(StoreError::io(&path, err.error)),
        }
    }

    /// Removes whole segments below `keep_from` (only the writer trims).
    pub fn trim_before(&self, keep_from: u64) -> Result<usize, StoreError> {
        let _guard = FileLock::exclusive(&self.lock)?;
        let mut removed = 0;
        let all = segments(&self.dir)?;
        let last = all.last().copied();
        for number in all {
            if number < keep_from && Some(number) != last {
                let path = self.dir.join(segment_name(number));
                fs::remove_file(&path).at(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The last segment's file in `dir`, if the journal has one.
pub fn last_segment(dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    Ok(segments(dir)?
        .last()
        .map(|number| dir.join(segment_name(*number))))
}

/// Where the journal in `dir` ends now: (last segment, its length), or None
/// when it has no segment yet. A reader that has read everything stands at
/// this point or past it (at the start of a later segment).
pub fn end(dir: &Path) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(last) = segments(dir)?.last().copied() else {
        return Ok(None);
    };
    let path = dir.join(segment_name(last));
    let len = fs::metadata(&path).at(&path)?.len();
    Ok(Some((last, len)))
}

/// Whether the open `file`, `len` bytes long, ends with a newline.
fn last_byte_is_newline(file: &File, len: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// Where a reader stands in a journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The writer's nonce seen in the segment header (empty before the first read).
    pub nonce: String,
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub fn to_text(&self) -> String {
        format!(
            "{} {} {}\n",
            if self.nonce.is_empty() {
                "-"
            } else {
                &self.nonce
            },
            self.segment,
            self.offset
        )
    }

    pub fn parse(text: &str) -> Option<Position> {
        let mut parts = text.split_whitespace();
        let nonce = parts.next()?;
        Some(Position {
            nonce: if nonce == "-" {
                String::new()
            } else {
                nonce.to_string()
            },
            segment: parts.next()?.parse().ok()?,
            offset: parts.next()?.parse().ok()?,
        })
    }

    /// Reads a saved position; a missing file is the start.
    pub fn load(path: &Path) -> Result<Position, StoreError> {
        match fs::read_to_string(path) {
            Ok(text) => Position::parse(&text).ok_or_else(|| StoreError::Corrupt {
                path: path.to_path_buf(),
                why: format!("bad journal position {text:?}"),
            }),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(Position::default()),
            Err(err) => Err(StoreError::io(path, err)),
        }
    }

    /// Saves the position atomically.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        write_atomic(path, self.to_text().as_bytes())
    }
}

/// Writes a small file atomically: temp file in the same directory, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::layout::create_dirs(dir).at(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    tmp.write_all(bytes).at(path)?;
    crate::store::set_mode(tmp.path(), 0o644)?;
    tmp.persist(path)
        .map_err(|err| StoreError::io(path, err.error))?;
    Ok(())
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Batch {
    /// Complete, checked payloads, in order.
    pub lines: Vec<String>,
    /// Where to continue next time.
    pub next: Position,
    /// Problems met (a torn tail skipped, a bad line stopped at, a nonce change).
    pub warnings: Vec<String>,
    /// True when the reader restarted from the beginning (the writer's nonce changed).
    pub restarted: bool,
    /// Set when the reader stopped at a bad complete line (it stays there, pass
    /// after pass, until the writer repairs it).
    pub stuck: Option<Stuck>,
}

/// A bad complete line a reader stopped at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stuck {
    pub segment: u64,
    /// Where the bad line starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Where the line after it starts (for counting what waits behind it).
    #[serde(skip)]
    pub past: u64,
}

/// Why `line` (without its newline) is not a good journal line.
fn why_bad(line: &[u8], header: bool) -> String {
    if line.len() > MAX_LINE {
        return format!("a line longer than {} KiB", MAX_LINE >> 10);
    }
    if line.iter().all(|b| *b == 0) {
        return "zeros".into();
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return "not UTF-8".into();
    };
    let Some((crc, _)) = text.split_once(' ') else {
        return "no checksum".into();
    };
    if crc.len() != 8 || u32::from_str_radix(crc, 16).is_err() {
        return format!(
            "{:?} is not an 8-hex-digit checksum",
            crate::ids::clip(crc, 16)
        );
    }
    if check_line(line).is_none() {
        return "checksum mismatch".into();
    }
    if header {
        return "not a `globofs-journal 1` segment header".into();
    }
    "a bad line".into()
}

/// Reads lines from `dir` starting at `from`, at most `max_lines`.
pub fn read(dir: &Path, from: &Position, max_lines: usize) -> Result<Batch, StoreError> {
    read_lines(dir, from, max_lines, true)
}

/// [`read`]'s common case, for a reader standing inside segment
/// `from.segment` (past its header) that it keeps open as `file`: the
/// complete lines added since, read with one `pread`, without listing the
/// directory or opening anything. `None` whenever anything is unusual (no
/// new bytes, a partial or bad line, a segment at its full size or one after
/// it): then [`read`] decides, and reports.
pub fn read_open(file: &File, dir: &Path, from: &Position, max_lines: usize) -> Option<Batch> {
    use std::os::unix::fs::FileExt;
    if from.offset == 0 || from.nonce.is_empty() {
        return None;
    }
    let len = file.metadata().ok()?.len();
    if len <= from.offset || len >= SEGMENT_BYTES {
        return None;
    }
    let mut data = vec![0u8; usize::try_from(len - from.offset).ok()?];
    file.read_exact_at(&mut data, from.offset).ok()?;
    let mut batch = Batch {
        next: from.clone(),
        ..Batch::default()
    };
    let mut consumed = 0usize;
    while batch.lines.len() < max_lines && consumed < data.len() {
        let rest = &data[consumed..];
        let end = rest.iter().take(MAX_LINE + 1).position(|b| *b == b'\n')?;
        batch.lines.push(check_line(&rest[..end])?.to_string());
        consumed += end + 1;
    }
    if consumed == data.len() && dir.join(segment_name(from.segment + 1)).exists() {
        return None;
    }
    batch.next.offset = from.offset + consumed as u64;
    Some(batch)
}

/// [`read`]; `may_restart` is false once a read has started over for a new
/// nonce: segments that then disagree on the nonce are damage (a stop at the
/// disagreeing header), never another restart (they would alternate for ever).
fn read_lines(
    dir: &Path,
    from: &Position,
    max_lines: usize,
    may_restart: bool,
) -> Result<Batch, StoreError> {
    let all = segments(dir)?;
    let mut batch = Batch {
        next: from.clone(),
        ..Batch::default()
    };
    let Some(&first) = all.first() else {
        return Ok(batch);
    };
    let mut pos = from.clone();
    if pos.segment == 0 || pos.segment < first {
        if pos.segment != 0 {
            batch.warnings.push(format!(
                "{}: segment {} is gone (trimmed before we read it); continuing at {first}",
                dir.display(),
                pos.segment
            ));
        }
        pos = Position {
            nonce: pos.nonce,
            segment: first,
            offset: 0,
        };
    }
    loop {
        let path = dir.join(segment_name(pos.segment));
        if pos.offset > 0 && !pos.nonce.is_empty() {
            if let Some(nonce) = segment_nonce(&path)? {
                if nonce != pos.nonce {
                    if may_restart {
                        return restart(dir, &pos.nonce, nonce, max_lines);
                    }
                    let reason = format!(
                        "the segment's writer nonce {nonce} differs from {} of the segments before it",
                        pos.nonce
                    );
                    // Read no further: the segments contradict each other.
                    batch
                        .warnings
                        .push(format!("{}: {reason}; reading stops here", path.display()));
                    break;
                }
            }
        }
        let data = match read_from(&path, pos.offset) {
            Ok(data) => data,
            Err(err) if err.is_not_found() => break,
            Err(err) => return Err(err),
        };
        if data.is_empty() && pos.offset > 0 {
            let len = fs::metadata(&path).at(&path)?.len();
            if len < pos.offset {
                // Cut below where we stand: what we read there may be gone or
                // rewritten. Stay, and say so (found by fuzzing; it was silent).
                let reason = format!(
                    "the segment is {len} bytes, shorter than the reader's position {} (truncated?)",
                    pos.offset
                );
                batch.warnings.push(format!("{}: {reason}", path.display()));
                batch.stuck = Some(Stuck {
                    segment: pos.segment,
                    offset: pos.offset,
                    reason,
                    past: pos.offset,
                });
                batch.next = pos;
                break;
            }
        }
        let mut consumed = 0usize;
        let mut stopped_on_bad = false;
        let mut reason = String::new();
        while batch.lines.len() < max_lines {
            let rest = &data[consumed..];
            let header = pos.offset == 0 && consumed == 0;
            let Some(end) = rest.iter().take(MAX_LINE + 1).position(|b| *b == b'\n') else {
                if rest.len() > MAX_LINE {
                    stopped_on_bad = true;
                    reason = why_bad(rest, header);
                }
                break;
            };
            let Some(payload) = check_line(&rest[..end]) else {
                stopped_on_bad = true;
                reason = why_bad(&rest[..end], header);
                break;
            };
            if header {
                // The header line: check the writer's nonce.
                let header: Vec<&str> = payload.split(' ').collect();
                if header.len() != 4 || format!("{} {}", header[0], header[1]) != MAGIC {
                    stopped_on_bad = true;
                    reason = why_bad(&rest[..end], true);
                    break;
                }
                let nonce = header[2].to_string();
                if !pos.nonce.is_empty() && pos.nonce != nonce {
                    if may_restart {
                        return restart(dir, &pos.nonce, nonce, max_lines);
                    }
                    stopped_on_bad = true;
                    reason = format!(
                        "the segment's writer nonce {nonce} differs from {} of the segments before it",
                        pos.nonce
                    );
                    break;
                }
                pos.nonce = nonce;
            } else {
                batch.lines.push(payload.to_string());
            }
            consumed += end + 1;
        }
        pos.offset += consumed as u64;
        batch.next = pos.clone();
        if batch.lines.len() >= max_lines {
            break;
        }
        // At the end of what is readable here: move on only if a later segment exists.
        let later = all.iter().copied().find(|n| *n > pos.segment);
        match later {
            Some(next) => {
                let left = data.len() - consumed;
                if left > 0 {
                    if stopped_on_bad && consumed < data.len() && data[consumed..].contains(&b'\n')
                    {
                        // A bad complete line inside a finished segment: stop, do not skip.
                        batch.warnings.push(format!(
                            "{}: bad line at offset {} ({reason}); stopping here until it is repaired",
                            path.display(),
                            pos.offset
                        ));
                        batch.stuck = Some(stuck(&pos, &data[consumed..], reason));
                        break;
                    }
                    batch.warnings.push(format!(
                        "{}: skipping a torn last line ({left} bytes) of a finished segment",
                        path.display()
                    ));
                }
                pos = Position {
                    nonce: pos.nonce,
                    segment: next,
                    offset: 0,
                };
                batch.next = pos.clone();
            }
            None => {
                if stopped_on_bad && data[consumed..].contains(&b'\n') {
                    batch.warnings.push(format!(
                        "{}: bad line at offset {} ({reason}); stopping here until it is repaired",
                        path.display(),
                        pos.offset
                    ));
                    batch.stuck = Some(stuck(&pos, &data[consumed..], reason));
                }
                break;
            }
        }
    }
    Ok(batch)
}

/// The stop at the bad line starting `rest` (at `pos`), which has a newline.
fn stuck(pos: &Position, rest: &[u8], reason: String) -> Stuck {
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .map_or(rest.len(), |end| end + 1);
    Stuck {
        segment: pos.segment,
        offset: pos.offset,
        reason,
        past: pos.offset + end as u64,
    }
}

/// The journal was re-created by its writer: read it again from the start.
fn restart(dir: &Path, old: &str, nonce: String, max_lines: usize) -> Result<Batch, StoreError> {
    let warning = format!(
        "{}: the writer's nonce changed ({old} -> {nonce}): the journal was re-created; reading it again from the start",
        dir.display()
    );
    let start = Position {
        nonce,
        segment: 0,
        offset: 0,
    };
    let mut again = read_lines(dir, &start, max_lines, false)?;
    again.restarted = true;
    again.warnings.insert(0, warning);
    Ok(again)
}

/// The writer nonce in a segment's header line, if the header is readable.
pub fn segment_nonce(path: &Path) -> Result<Option<String>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(path, err)),
    };
    let mut head = vec![0u8; 256];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read(&mut head[filled..]).at(path)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let Some(end) = head[..filled].iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    Ok(check_line(&head[..end]).and_then(|payload| {
        let parts: Vec<&str> = payload.split(' ').collect();
        (parts.len() == 4).then(|| parts[2].to_string())
    }))
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at(path)?;
    // A position past the end reads nothing (the caller says the segment is
    // shorter); past what a seek can reach, the same.
    if offset > file.metadata().at(path)?.len() {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(offset)).at(path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).at(path)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_lines_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let writer = JournalWriter::new(&journal, dir.path().join("lock"), "n1");
        writer.append(&["a 1".into(), "b 2".into()]).unwrap();
        let batch = read(&journal, &Position::default(), 100).unwrap();
        assert_eq!(batch.lines, vec!["a 1", "b 2"]);
        writer.append(&["c 3".into()]).unwrap();
        let more = read(&journal, &batch.next, 100).unwrap();
        assert_eq!(more.lines, vec!["c 3"]);
        let none = read(&journal, &more.next, 100).unwrap();
        assert!(none.lines.is_empty());
        assert_eq!(none.next, more.next);
    }

    #[test]
    fn a_writer_keeping_its_segment_open_follows_a_segment_another_writer_started() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let lock = dir.path().join("lock");
        let ours = JournalWriter::new(&journal, &lock, "n1");
        let theirs = JournalWriter::new(&journal, &lock, "n1");
        ours.append(&["first".into()]).unwrap();
        // A third writer is half-way through its line when another one looks:
        // that one finds the segment's last line torn and goes on in the next.
        let seg = journal.join(segment_name(1));
        let slow = checksum_line("slow");
        let (head, tail) = slow.split_at(5);
        let mut raw = OpenOptions::new().append(true).open(&seg).unwrap();
        raw.write_all(head.as_bytes()).unwrap();
        theirs.append(&["theirs".into()]).unwrap();
        raw.write_all(tail.as_bytes()).unwrap();
        // Segment 1 ends with a whole line again, far from full: only the
        // segment after it says it is finished.
        ours.append(&["last".into()]).unwrap();
        assert_eq!(segments(&journal).unwrap(), vec![1, 2]);
        let mut at = Position::default();
        let mut lines = Vec::new();
        loop {
            let batch = read(&journal, &at, 100_000).unwrap();
            if batch.lines.is_empty() {
                break;
            }
            assert!(batch.warnings.is_empty(), "{:?}", batch.warnings);
            lines.extend(batch.lines);
            at = batch.next;
        }
        assert_eq!(lines.first().map(String::as_str), Some("first"));
        // Written after every filler line, so read after them, in segment 2.
        assert_eq!(lines.last().map(String::as_str), Some("last"));
        let second = fs::read_to_string(journal.join(segment_name(2))).unwrap();
        assert!(second.ends_with(" last\n"), "{second:?}");
    }

    #[test]
    fn a_writer_keeping_its_segment_open_writes_into_a_journal_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let lock = dir.path().join("lock");
        let writer = JournalWriter::new(&journal, &lock, "n1");
        writer.append(&["before".into()]).unwrap();
        fs::remove_dir_all(&journal).unwrap();
        JournalWriter::new(&journal, &lock, "n1")
            .append(&["other".into()])
            .unwrap();
        writer.append(&["after".into()]).unwrap();
        let batch = read(&journal, &Position::default(), 100).unwrap();
        assert_eq!(batch.lines, vec!["other", "after"]);
    }

    #[test]
    fn reading_an_open_segment_takes_only_complete_good_lines() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let writer = JournalWriter::new(&journal, dir.path().join("lock"), "n1");
        writer.append(&["a".into()]).unwrap();
        let at = read(&journal, &Position::default(), 100).unwrap().next;
        let seg = journal.join(segment_name(1));
        let file = File::open(&seg).unwrap();
        assert!(
            read_open(&file, &journal, &at, 100).is_none(),
            "nothing new"
        );
        writer.append(&["b".into(), "c".into()]).unwrap();
        let batch = read_open(&file, &journal, &at, 100).unwrap();
        assert_eq!(batch.lines, vec!["b", "c"]);
        assert_eq!(batch.next, read(&journal, &at, 100).unwrap().next);
        assert_eq!(read_open(&file, &journal, &at, 1).unwrap().lines, vec!["b"]);
        // A line still being written, or a bad one: the full read decides.
        let mut raw = OpenOptions::new().append(true).open(&seg).unwrap();
        raw.write_all(b"0000").unwrap();
        assert!(read_open(&file, &journal, &batch.next, 100).is_none());
        raw.write_all(b"0000 bad\n").unwrap();
        assert!(read_open(&file, &journal, &batch.next, 100).is_none());
    }

    #[test]
    fn stops_at_partial_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let writer = JournalWriter::new(&journal, dir.path().join("lock"), "n1");
        writer.append(&["good".into()]).unwrap();
        let seg = journal.join(segment_name(1));
        let mut file = OpenOptions::new().append(true).open(&seg).unwrap();
        file.write_all(b"0000").unwrap(); // a line still being written
        let batch = read(&journal, &Position::default(), 100).unwrap();
        assert_eq!(batch.lines, vec!["good"]);
        file.write_all(b"0000 bad checksum\n").unwrap();
        file.write_all(checksum_line("after").as_bytes()).unwrap();
        let again = read(&journal, &batch.next, 100).unwrap();
        assert!(
            again.lines.is_empty(),
            "a bad line stops the reader: {:?}",
            again.lines
        );
        assert_eq!(again.next, batch.next);
        // Zero-filled ranges (as remote filesystems show) stop it too.
        let dir2 = tempfile::tempdir().unwrap();
        let j2 = dir2.path().join("j");
        JournalWriter::new(&j2, dir2.path().join("lock"), "n")
            .append(&["x".into()])
            .unwrap();
        OpenOptions::new()
            .append(true)
            .open(j2.join(segment_name(1)))
            .unwrap()
            .write_all(&[0u8; 64])
            .unwrap();
        assert_eq!(
            read(&j2, &Position::default(), 100).unwrap().lines,
            vec!["x"]
        );
    }

    #[test]
    fn a_torn_segment_is_left_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let writer = JournalWriter::new(&journal, dir.path().join("lock"), "n1");
        writer.append(&["one".into()]).unwrap();
        OpenOptions::new()
            .append(true)
            .open(journal.join(segment_name(1)))
            .unwrap()
            .write_all(b"1234")
            .unwrap();
        // The writer sees the torn tail and starts segment 2.
        writer.append(&["two".into()]).unwrap();
        assert_eq!(segments(&journal).unwrap(), vec![1, 2]);
        let batch = read(&journal, &Position::default(), 100).unwrap();
        assert_eq!(batch.lines, vec!["one", "two"]);
        assert_eq!(batch.warnings.len(), 1, "{:?}", batch.warnings);
    }

    /// Found by the journal fuzz target: a segment cut below a saved reader
    /// position (its header unreadable, so no nonce check) left the reader
    /// waiting past the end with no warning.
    #[test]
    fn a_segment_shorter_than_the_position_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        fs::create_dir(&journal).unwrap();
        fs::write(journal.join(segment_name(1)), b"df- 0 0d\n").unwrap();
        let from = Position::parse("old 1 40").unwrap();
        let batch = read(&journal, &from, 100).unwrap();
        assert!(batch.lines.is_empty());
        let stuck = batch.stuck.expect("a stop is reported");
        assert_eq!((stuck.segment, stuck.offset), (1, 40));
        assert!(stuck.reason.contains("9 bytes"), "{}", stuck.reason);
        assert!(
            batch
                .warnings
                .iter()
                .any(|w| w.contains("0000000000000001")),
            "{:?}",
            batch.warnings
        );
    }

    #[test]
    fn a_new_nonce_restarts_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        JournalWriter::new(&journal, dir.path().join("lock"), "old")
            .append(&["a".into()])
            .unwrap();
        let batch = read(&journal, &Position::default(), 100).unwrap();
        fs::remove_dir_all(&journal).unwrap();
        JournalWriter::new(&journal, dir.path().join("lock"), "new")
            .append(&["b".into(), "c".into()])
            .unwrap();
        let again = read(&journal, &batch.next, 100).unwrap();
        assert!(again.restarted);
        assert_eq!(again.lines, vec!["b", "c"]);
    }

    /// Found by the journal fuzz target in CI: segments whose headers name
    /// two different writer nonces made the reader restart for one, then for
    /// the other, for ever (a stack overflow). Now it restarts once and stops
    /// at the disagreeing segment, as at any bad line.
    #[test]
    fn segments_disagreeing_on_the_nonce_stop_the_reader_instead_of_restarting_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        fs::create_dir(&journal).unwrap();
        let first = format!(
            "{}{}",
            checksum_line(&format!("{MAGIC} n1 1")),
            checksum_line("1700000000.000000000 a")
        );
        let second = format!(
            "{}{}",
            checksum_line(&format!("{MAGIC} n2 2")),
            checksum_line("1700000001.000000000 b")
        );
        fs::write(journal.join(format!("{:016}", 1)), first).unwrap();
        fs::write(journal.join(format!("{:016}", 2)), second).unwrap();
        let from = Position {
            nonce: "n1".into(),
            segment: 0,
            offset: 0,
        };
        let batch = read(&journal, &from, 100).unwrap();
        assert!(batch.restarted);
        let stuck = batch.stuck.expect("a stop at the disagreeing segment");
        assert!(stuck.reason.contains("nonce"), "{}", stuck.reason);
    }

    /// Found by the journal fuzz target: a saved position far past the end
    /// (beyond what a seek can reach) was an I/O error; it is a segment
    /// shorter than the position, reported as such.
    #[test]
    fn a_position_past_any_seek_is_a_shorter_segment() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        JournalWriter::new(&journal, dir.path().join("lock"), "n1")
            .append(&["a".into()])
            .unwrap();
        let from = Position {
            nonce: "n1".into(),
            segment: 1,
            offset: u64::MAX - 7,
        };
        let batch = read(&journal, &from, 100).unwrap();
        let stuck = batch.stuck.expect("reported");
        assert!(stuck.reason.contains("shorter"), "{}", stuck.reason);
    }
}
