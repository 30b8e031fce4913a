//! Journal segments (src/store/journal.rs) are read from peers' spools and may
//! be cut, zero-filled or garbage. The input is split at "\n--8<--\n" into a
//! saved reader position (the first part, as an ack or position file holds it)
//! and up to four segments written to a temporary journal directory. Reading
//! must succeed, stay inside the segments, hand out only checked lines, and
//! give the same lines whether read in one batch or one line at a time from
//! each returned position (how a reader resumes after a restart).
#![no_main]

use std::fs;

use globofs::store::journal::{self, Batch, Position};
use libfuzzer_sys::fuzz_target;

const CUT: &[u8] = b"\n--8<--\n";
/// Most lines one run asks for (bounds the work per input).
const MAX_LINES: usize = 64;

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(CUT.len()).position(|window| window == CUT) {
        parts.push(&rest[..at]);
        rest = &rest[at + CUT.len()..];
    }
    parts.push(rest);
    parts
}

fn check(batch: &Batch, sizes: &[(u64, u64)]) {
    for line in &batch.lines {
        assert!(!line.contains('\n'), "a payload holds a newline: {line:?}");
    }
    let next = &batch.next;
    if let Some(stuck) = &batch.stuck {
        let (_, len) = sizes
            .iter()
            .find(|(number, _)| *number == stuck.segment)
            .unwrap_or_else(|| panic!("stuck in a segment that does not exist: {stuck:?}"));
        assert!(!stuck.reason.is_empty());
        if stuck.offset > *len {
            // A segment cut below the position: reported, the reader stays.
            assert!(stuck.reason.contains("shorter"), "{stuck:?}");
            assert_eq!((next.segment, next.offset), (stuck.segment, stuck.offset));
            return;
        }
        assert!(
            stuck.offset < stuck.past && stuck.past <= *len,
            "{stuck:?} of {len} bytes"
        );
    }
    if let Some((_, len)) = sizes.iter().find(|(number, _)| *number == next.segment) {
        assert!(
            next.offset <= *len,
            "position {next:?} is past the segment's {len} bytes, unreported"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    // split always gives at least one part.
    let (position, segments) = (parts[0], &parts[1..]);
    let from = std::str::from_utf8(position)
        .ok()
        .and_then(Position::parse)
        .unwrap_or_default();
    if let Some(parsed) = std::str::from_utf8(position).ok().and_then(Position::parse) {
        assert_eq!(Position::parse(&parsed.to_text()), Some(parsed.clone()));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let journal_dir = dir.path().join("journal");
    fs::create_dir(&journal_dir).expect("journal dir");
    let mut sizes = Vec::new();
    let mut number = 0u64;
    for bytes in segments.iter().take(4) {
        // Segments 1, 2, ... or, when the first byte says so, a gap (trimmed ones).
        number += 1 + u64::from(bytes.first() == Some(&b'#'));
        fs::write(journal_dir.join(format!("{number:016}")), bytes).expect("segment");
        sizes.push((number, bytes.len() as u64));
    }

    let whole =
        journal::read(&journal_dir, &from, MAX_LINES).expect("reading a journal of plain files");
    check(&whole, &sizes);

    // The same again one line at a time, resuming from each returned position.
    let mut pos = from.clone();
    let mut lines = Vec::new();
    let mut restarted = false;
    for _ in 0..MAX_LINES * 2 {
        let batch = journal::read(&journal_dir, &pos, 1).expect("reading one line");
        check(&batch, &sizes);
        assert!(batch.lines.len() <= 1);
        restarted |= batch.restarted;
        let done = batch.lines.is_empty();
        lines.extend(batch.lines);
        pos = batch.next;
        if done || lines.len() >= whole.lines.len() {
            break;
        }
    }
    if !restarted && !whole.restarted {
        assert_eq!(
            lines, whole.lines,
            "one-at-a-time reading differs from one batch"
        );
    }
    if whole.lines.len() < MAX_LINES {
        let again =
            journal::read(&journal_dir, &whole.next, MAX_LINES).expect("reading at the end");
        if !again.restarted {
            assert!(
                again.lines.is_empty(),
                "lines after the end: {:?}",
                again.lines
            );
        }
    }
});
