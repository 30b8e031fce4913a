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
}

impl PositionMap {
    /// Reads the positions out of `text`; a document the event parser cannot read
    /// yields an empty map (the syntax error is reported by the real parser).
    pub fn from_text(text: &str) -> PositionMap {
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        // Errors are reported by serde_yaml with their own position; keep what was read.
        let _ = parser.load(&mut recorder, false);
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
}

enum Frame {
    Mapping {
        path: Vec<Segment>,
        pending_key: Option<String>,
        in_complex_key: bool,
    },
    Sequence {
        path: Vec<Segment>,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    map: PositionMap,
    stack: Vec<Frame>,
}

impl Recorder {
    /// Works out the path of the node that starts now, or `None` when it is a mapping key.
    fn place_node(&mut self, mark: Marker) -> Option<Vec<Segment>> {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => {
                self.map.values.entry(Vec::new()).or_insert(position);
                Some(Vec::new())
            }
            Some(Frame::Sequence { path, next }) => {
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
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if self.place_node(mark).is_none() {
                    if let Some(Frame::Mapping {
                        path,
                        pending_key,
                        in_complex_key: false,
                    }) = self.stack.last_mut()
                    {
                        let mut child = path.clone();
                        child.push(Segment::Key(text.clone()));
                        self.map.keys.insert(
                            child,
                            Position {
                                line: mark.line(),
                                column: mark.col() + 1,
                            },
                        );
                        *pending_key = Some(text);
                    }
                }
            }
            Event::Alias(_) => {
                if self.place_node(mark).is_none() {
                    if let Some(Frame::Mapping { pending_key, .. }) = self.stack.last_mut() {
                        *pending_key = Some("*alias".into());
                    }
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_mapping = matches!(event, Event::MappingStart(..));
                let path = match self.place_node(mark) {
                    Some(path) => path,
                    None => {
                        // A mapping or sequence used as a key: its contents have no key path.
                        if let Some(Frame::Mapping { in_complex_key, .. }) = self.stack.last_mut() {
                            *in_complex_key = true;
                        }
                        vec![Segment::Key("?".into())]
                    }
                };
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        path,
                        pending_key: None,
                        in_complex_key: false,
                    }
                } else {
                    Frame::Sequence { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
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
