//! Where each key of a YAML document stands (line and column), so that every
//! problem found in a spec can be reported as `FILE:LINE:COL: KEY: message`.
//!
//! serde_yaml gives values without positions; this walks the same text with the
//! event parser of yaml-rust2 and records, for every key path (`node.id`,
//! `peers[1].path`), where its key and its value start. Aliases are not expanded,
//! so an alias bomb costs nothing here.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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
    /// Where the first node nested deeper than [`MAX_NESTING`] starts.
    too_deep: Option<Position>,
    /// The alias at which aliases have expanded to more than [`MAX_ALIAS_NODES`].
    alias_overflow: Option<Position>,
}

/// Most nodes that aliases may add to a document when expanded. serde_yaml's
/// own limit counts alias jumps, not nodes: one alias of a long list costs one
/// jump, and a few thousand of them expand to billions of nodes.
pub const MAX_ALIAS_NODES: u64 = 100_000;

/// Deepest nesting of mappings and sequences a spec may have. serde_yaml refuses
/// deeper documents too, but only after libyaml has parsed them, which takes
/// time quadratic in the depth: deep input must be refused before that.
pub const MAX_NESTING: usize = 128;

/// Nodes nested deeper than this get no position of their own (a spec is four
/// levels deep; recording paths costs time proportional to their length).
const MAX_LOCATED: usize = 16;

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
        let mut complete = false;
        while let Ok((event, mark)) = parser.next_token() {
            if event == Event::StreamEnd {
                complete = true;
                break;
            }
            recorder.on_event(event, mark);
        }
        let mut map = recorder.map;
        if !complete && map.too_deep.is_none() {
            // The event parser gave up early (a syntax error, or something it reads
            // differently): bound the depth by counting brackets instead.
            map.too_deep = bracket_depth(text);
        }
        map
    }

    /// Where the first node nested deeper than [`MAX_NESTING`] starts, if any.
    pub fn too_deep(&self) -> Option<Position> {
        self.too_deep
    }

    /// The alias at which expanding aliases adds more than [`MAX_ALIAS_NODES`]
    /// nodes, if any.
    pub fn alias_overflow(&self) -> Option<Position> {
        self.alias_overflow
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

/// Where the open brackets (`[`, `{`) outnumber the closing ones by more than
/// [`MAX_NESTING`], counting every bracket (a crude upper bound of flow nesting).
fn bracket_depth(text: &str) -> Option<Position> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut column = 0;
    for ch in text.chars() {
        column += 1;
        match ch {
            '\n' => {
                line += 1;
                column = 0;
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(Position { line, column });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// What loading a node costs once aliases are expanded.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    /// Alias jumps (serde_yaml's measure).
    jumps: u64,
    /// Nodes.
    nodes: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.jumps = self.jumps.saturating_add(other.jumps);
        self.nodes = self.nodes.saturating_add(other.nodes);
    }
}

enum Frame {
    Mapping {
        path: Vec<Segment>,
        pending_key: Option<String>,
        in_complex_key: bool,
        has_keys: bool,
        anchor: usize,
        cost: Cost,
    },
    Sequence {
        path: Vec<Segment>,
        next: usize,
        anchor: usize,
        cost: Cost,
    },
    /// A node nested deeper than [`MAX_LOCATED`]: not located (its problems are
    /// reported at its nearest located ancestor).
    Deep { anchor: usize, cost: Cost },
}

impl Frame {
    fn cost(&mut self) -> &mut Cost {
        match self {
            Frame::Mapping { cost, .. }
            | Frame::Sequence { cost, .. }
            | Frame::Deep { cost, .. } => cost,
        }
    }

    fn anchor(&self) -> usize {
        match self {
            Frame::Mapping { anchor, .. }
            | Frame::Sequence { anchor, .. }
            | Frame::Deep { anchor, .. } => *anchor,
        }
    }
}

#[derive(Default)]
struct Recorder {
    map: PositionMap,
    stack: Vec<Frame>,
    /// Documents started so far.
    documents: usize,
    /// What replaying each anchored node costs.
    anchors: HashMap<usize, Cost>,
    /// Running totals over the document: alias jumps, and nodes added by aliases.
    aliases: Cost,
    /// `too_deep` was set at a block mapping's start, which is marked late (at its
    /// first `:`): move it to the first key.
    too_deep_at_mapping: bool,
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
        if self.too_deep_at_mapping {
            self.too_deep_at_mapping = false;
            if let Some(deep) = self.map.too_deep.as_mut() {
                if (position.line, position.column) < (deep.line, deep.column) {
                    *deep = position;
                }
            }
        }
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
            Some(Frame::Deep { .. }) => Some(Vec::new()),
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

    /// Adds the cost of a node to the innermost container.
    fn add_cost(&mut self, cost: Cost) {
        if let Some(frame) = self.stack.last_mut() {
            frame.cost().add(cost);
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
            Event::Scalar(text, style, anchor, _) => {
                let cost = Cost { jumps: 0, nodes: 1 };
                if anchor != 0 {
                    self.anchors.insert(anchor, cost);
                }
                self.add_cost(cost);
                match self.place_node(mark) {
                    None => self.place_key(Some(text), position_of(mark)),
                    // An empty value (`node:` and nothing) is marked where the next
                    // token starts, often on a later line: place it at its key.
                    Some(path) if text.is_empty() && style == TScalarStyle::Plain => {
                        if let Some(key) = self.map.keys.get(&path).copied() {
                            self.map.values.insert(path, key);
                        }
                    }
                    Some(_) => {}
                }
            }
            Event::Alias(anchor) => {
                // A loader replays the anchored node: one jump plus the jumps inside
                // it, and all its nodes.
                let target = self
                    .anchors
                    .get(&anchor)
                    .copied()
                    .unwrap_or(Cost { jumps: 0, nodes: 1 });
                let cost = Cost {
                    jumps: target.jumps.saturating_add(1),
                    nodes: target.nodes,
                };
                self.aliases.add(cost);
                self.add_cost(cost);
                let position = position_of(mark);
                self.map.alias_jumps.push((self.aliases.jumps, position));
                if self.aliases.nodes > MAX_ALIAS_NODES && self.map.alias_overflow.is_none() {
                    self.map.alias_overflow = Some(position);
                }
                if self.place_node(mark).is_none() {
                    self.place_key(None, position);
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_mapping = matches!(event, Event::MappingStart(..));
                let cost = Cost { jumps: 0, nodes: 1 };
                let placed = self.place_node(mark);
                if self.stack.len() >= MAX_NESTING && self.map.too_deep.is_none() {
                    self.map.too_deep = Some(position_of(mark));
                    self.too_deep_at_mapping = is_mapping;
                }
                if self.stack.len() >= MAX_LOCATED {
                    self.stack.push(Frame::Deep { anchor, cost });
                    return;
                }
                let path = match placed {
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
                        cost,
                    }
                } else {
                    Frame::Sequence {
                        path,
                        next: 0,
                        anchor,
                        cost,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(mut frame) = self.stack.pop() else {
                    return;
                };
                let cost = *frame.cost();
                if frame.anchor() != 0 {
                    self.anchors.insert(frame.anchor(), cost);
                }
                self.add_cost(cost);
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
