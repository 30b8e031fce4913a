//! Where each key of a YAML document stands (line and column), so that every
//! problem found in a spec can be reported as `FILE:LINE:COL: KEY: message`.
//!
//! serde_yaml gives values without positions; this walks the same text with the
//! event parser of yaml-rust2 and records, for every key path (`node.id`,
//! `peers[1].path`), where its key and its value start. Aliases are not expanded,
//! so an alias bomb costs nothing here.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A line and column, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };
}

/// Renders a key path as the user writes it: `peers[1].path`; the document itself is `(root)`.
pub fn display_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    if out.is_empty() { "(root)".into() } else { out }
}

/// Positions of the keys and values of one YAML document.
#[derive(Debug, Default)]
pub struct PositionMap {
    values: HashMap<Vec<Segment>, Position>,
    keys: HashMap<Vec<Segment>, Position>,
    /// Keys given twice in one mapping: (path, first, again).
    duplicates: Vec<(Vec<Segment>, Position, Position)>,
    /// Where a second document starts, if the stream has one.
    second_document: Option<Position>,
    /// Every alias with the running total of alias jumps a loader makes up to it.
    alias_jumps: Vec<(u64, Position)>,
    /// Events in the first document (a loader's budget for alias jumps is a multiple).
    events: u64,
}

/// Deeper than this, nodes get no positions (a spec is a few levels deep; the
/// YAML loader refuses anything deeper than 128 anyway).
const MAX_DEPTH: usize = 256;

impl PositionMap {
    /// Reads the positions out of `text`; a document the event parser cannot read
    /// yields what was read before the error (the syntax error is reported by the
    /// real parser).
    pub fn from_text(text: &str) -> PositionMap {
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        // Events are pulled one by one (`Parser::load` recurses once per nesting
        // level, and deep input must not exhaust the stack). Errors are reported by
        // serde_yaml with their own position; keep what was read.
        while let Ok((event, mark)) = parser.next_token() {
            if event == Event::StreamEnd {
                break;
            }
            recorder.on_event(event, mark);
        }
        recorder.map
    }

    /// Where the value at `path` starts; for a path that is not in the document,
    /// where the key of its nearest present ancestor stands.
    pub fn value(&self, path: &[Segment]) -> Position {
        if let Some(position) = self.values.get(path) {
            return *position;
        }
        let mut path = path.to_vec();
        while path.pop().is_some() {
            if let Some(position) = self.keys.get(&path).or_else(|| self.values.get(&path)) {
                return *position;
            }
        }
        Position::START
    }

    /// Where the key naming `path` stands (for unknown keys), or the value's position.
    pub fn key(&self, path: &[Segment]) -> Position {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }

    /// Where the key naming `path` stands, if the document has that key.
    pub fn key_exact(&self, path: &[Segment]) -> Option<Position> {
        self.keys.get(path).copied()
    }

    /// The deepest key path whose value starts at `position`, if any.
    pub fn path_at(&self, position: Position) -> Option<Vec<Segment>> {
        self.values
            .iter()
            .filter(|(_, at)| **at == position)
            .map(|(path, _)| path)
            .max_by_key(|path| path.len())
            .cloned()
    }

    /// The first key given twice in one mapping: its path, where it was first
    /// given and where again.
    pub fn first_duplicate(&self) -> Option<&(Vec<Segment>, Position, Position)> {
        self.duplicates.first()
    }

    /// Where a second YAML document starts, if there is one.
    pub fn second_document(&self) -> Option<Position> {
        self.second_document
    }

    /// The alias at which a loader that allows `factor` alias jumps per event runs
    /// out (the alias bomb); failing that, the last alias.
    pub fn alias_bomb(&self, factor: u64) -> Option<Position> {
        let budget = self.events.saturating_mul(factor);
        self.alias_jumps
            .iter()
            .find(|(jumps, _)| *jumps > budget)
            .or(self.alias_jumps.last())
            .map(|(_, position)| *position)
    }
}

enum Frame {
    Mapping {
        path: Vec<Segment>,
        pending_key: Option<String>,
        in_complex_key: bool,
        has_keys: bool,
        anchor: usize,
        jumps: u64,
    },
    Sequence {
        path: Vec<Segment>,
        next: usize,
        anchor: usize,
        jumps: u64,
    },
    /// A node nested deeper than [`MAX_DEPTH`]: not located.
    Deep,
}

#[derive(Default)]
struct Recorder {
    map: PositionMap,
    stack: Vec<Frame>,
    /// Documents started so far.
    documents: usize,
    /// Alias jumps a loader makes when it replays each anchored node.
    anchor_jumps: HashMap<usize, u64>,
    /// Running total of alias jumps.
    jumps: u64,
}

fn position_of(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl Recorder {
    /// Works out the path of the node that starts now, or `None` when it is a mapping key.
    fn place_node(&mut self, mark: Marker) -> Option<Vec<Segment>> {
        let position = position_of(mark);
        match self.stack.last_mut() {
            None => {
                self.map.values.entry(Vec::new()).or_insert(position);
                Some(Vec::new())
            }
            Some(Frame::Sequence { path, next, .. }) => {
                let mut child = path.clone();
                child.push(Segment::Index(*next));
                *next += 1;
                self.map.values.insert(child.clone(), position);
                Some(child)
            }
            Some(Frame::Mapping {
                path, pending_key, ..
            }) => match pending_key.take() {
                Some(key) => {
                    let mut child = path.clone();
                    child.push(Segment::Key(key));
                    self.map.values.insert(child.clone(), position);
                    Some(child)
                }
                None => None,
            },
            Some(Frame::Deep) => Some(Vec::new()),
        }
    }

    /// Records a key of the innermost mapping; `text` is `None` for a key that is
    /// not a plain scalar (recorded as `?`).
    fn place_key(&mut self, text: Option<String>, position: Position) {
        let Some(Frame::Mapping {
            path,
            pending_key,
            in_complex_key: false,
            has_keys,
            ..
        }) = self.stack.last_mut()
        else {
            return;
        };
        // A block mapping's start event is marked at its first `:`; the mapping
        // starts where its first key does.
        if !*has_keys {
            *has_keys = true;
            if let Some(start) = self.map.values.get_mut(path.as_slice()) {
                if (position.line, position.column) < (start.line, start.column) {
                    *start = position;
                }
            }
        }
        let name = text.clone().unwrap_or_else(|| "?".into());
        let mut child = path.clone();
        child.push(Segment::Key(name.clone()));
        match self.map.keys.get(&child) {
            Some(first) if text.is_some() => {
                let first = *first;
                self.map.duplicates.push((child, first, position));
            }
            Some(_) => {}
            None => {
                self.map.keys.insert(child, position);
            }
        }
        *pending_key = Some(name);
    }

    /// Adds `jumps` alias jumps to the innermost container.
    fn add_jumps(&mut self, jumps: u64) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { jumps: total, .. } | Frame::Sequence { jumps: total, .. }) => {
                *total = total.saturating_add(jumps);
            }
            _ => {}
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.map.second_document = Some(position_of(mark));
                }
                return;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => return,
            _ if self.documents > 1 => return,
            _ => self.map.events += 1,
        }
        match event {
            Event::Scalar(text, _, anchor, _) => {
                if anchor != 0 {
                    self.anchor_jumps.insert(anchor, 0);
                }
                if self.place_node(mark).is_none() {
                    self.place_key(Some(text), position_of(mark));
                }
            }
            Event::Alias(anchor) => {
                // A loader replays the anchored node: one jump, plus the jumps inside it.
                let cost = self
                    .anchor_jumps
                    .get(&anchor)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1);
                self.jumps = self.jumps.saturating_add(cost);
                self.add_jumps(cost);
                self.map.alias_jumps.push((self.jumps, position_of(mark)));
                if self.place_node(mark).is_none() {
                    self.place_key(None, position_of(mark));
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_mapping = matches!(event, Event::MappingStart(..));
                if self.stack.len() >= MAX_DEPTH || matches!(self.stack.last(), Some(Frame::Deep)) {
                    self.stack.push(Frame::Deep);
                    return;
                }
                let path = match self.place_node(mark) {
                    Some(path) => path,
                    None => {
                        // A mapping or sequence used as a key: its contents have no key path.
                        self.place_key(None, position_of(mark));
                        if let Some(Frame::Mapping {
                            in_complex_key,
                            pending_key,
                            ..
                        }) = self.stack.last_mut()
                        {
                            *in_complex_key = true;
                            *pending_key = None;
                        }
                        vec![Segment::Key("?".into())]
                    }
                };
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        path,
                        pending_key: None,
                        in_complex_key: false,
                        has_keys: false,
                        anchor,
                        jumps: 0,
                    }
                } else {
                    Frame::Sequence {
                        path,
                        next: 0,
                        anchor,
                        jumps: 0,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (anchor, jumps) = match self.stack.pop() {
                    Some(
                        Frame::Mapping { anchor, jumps, .. }
                        | Frame::Sequence { anchor, jumps, .. },
                    ) => (anchor, jumps),
                    _ => (0, 0),
                };
                if anchor != 0 {
                    self.anchor_jumps.insert(anchor, jumps);
                }
                self.add_jumps(jumps);
                if let Some(Frame::Mapping {
                    in_complex_key,
                    pending_key,
                    ..
                }) = self.stack.last_mut()
                {
                    if *in_complex_key {
                        *in_complex_key = false;
                        *pending_key = Some("?".into());
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Vec<Segment> {
        path.split('.')
            .map(|part| match part.parse() {
                Ok(index) => Segment::Index(index),
                Err(_) => Segment::Key(part.into()),
            })
            .collect()
    }

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let text = "volume: /srv\nnode:\n  id: abc\npeers:\n  - id: x\n    path: /p\n  - id: y\n";
        let map = PositionMap::from_text(text);
        assert_eq!(map.value(&key("node.id")), Position { line: 3, column: 7 });
        assert_eq!(
            map.value(&key("peers.1.id")),
            Position { line: 7, column: 9 }
        );
        assert_eq!(
            map.key(&key("peers.0.path")),
            Position { line: 6, column: 5 }
        );
        // A path that is not there falls back to its nearest ancestor.
        assert_eq!(
            map.value(&key("node.major")),
            Position { line: 2, column: 1 }
        );
        assert_eq!(
            display_path(&key("peers.1.path")),
            "peers[1].path".to_string()
        );
    }

    #[test]
    fn flow_style_is_located_too() {
        let map = PositionMap::from_text("node: {id: abc, major: 3}\n");
        assert_eq!(
            map.value(&key("node.major")),
            Position {
                line: 1,
                column: 24
            }
        );
    }
}
