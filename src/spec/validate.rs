//! Checks a spec file and reports each problem as `FILE:LINE:COL: KEY: message`.
//!
//! Order of checks: size and encoding of the file (UTF-8, no control
//! characters), nesting depth and alias expansion (measured on the event stream,
//! before anything is expanded or parsed deeply), YAML syntax (serde_yaml), the
//! generated JSON Schema (jsonschema) and the ranges of numbers, then the rules a
//! schema cannot say (UUIDs, uniqueness, powers of two, normalised paths, nesting
//! of volume and peers). Only the spec file is read: never the volume or a peer
//! path, so this runs in a Nix build sandbox.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path};

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde::Serialize;

use super::positions::{
    MAX_ALIAS_NODES, MAX_NESTING, Position, PositionMap, Segment, display_path,
};
use super::units::{ByteSize, Span};
use super::{MAX_BLOCK_SIZE, MAX_MAJOR, MAX_SPEC_BYTES, MIN_BLOCK_SIZE, RawSpec};
use crate::ids::NodeId;

/// One problem found in a spec file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The key path the problem is about (`node.id`, `peers[1].path`), or
    /// `(root)`, `(file)` or `(yaml)` for the document, the file and its syntax.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

/// What validating one file found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// The parsed spec, when it could be read at all.
    #[serde(skip)]
    pub spec: Option<RawSpec>,
}

/// The JSON Schema of the volume spec, pretty-printed with a trailing newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RawSpec);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Validates the spec file at `path`.
pub fn validate_file(path: &Path) -> Report {
    let name = path.display().to_string();
    let file_problem = |message: String| Report {
        file: name.clone(),
        valid: false,
        problems: vec![Problem {
            file: name.clone(),
            line: 1,
            column: 1,
            key: "(file)".into(),
            message,
        }],
        spec: None,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) => return file_problem(format!("cannot open: {err}")),
    };
    let mut bytes = Vec::new();
    if let Err(err) = file.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes) {
        return file_problem(format!("cannot read: {err}"));
    }
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return file_problem(format!(
            "larger than the {} bytes a spec may have",
            MAX_SPEC_BYTES
        ));
    }
    validate_bytes(&name, &bytes)
}

/// Validates spec bytes; `name` is the file name used in messages.
pub fn validate_bytes(name: &str, bytes: &[u8]) -> Report {
    match std::str::from_utf8(bytes) {
        Ok(text) => validate_text(name, text),
        Err(err) => {
            // Everything before the bad byte is UTF-8: count its characters.
            let before = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
            let Position { line, column } = offset_position(before, before.len());
            Report {
                file: name.into(),
                valid: false,
                problems: vec![Problem {
                    file: name.into(),
                    line,
                    column,
                    key: "(file)".into(),
                    message: format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        err.valid_up_to()
                    ),
                }],
                spec: None,
            }
        }
    }
}

/// Collects problems with their positions.
struct Checker<'a> {
    file: &'a str,
    positions: PositionMap,
    problems: Vec<Problem>,
    /// Problems not reported because [`MAX_PROBLEMS`] were already.
    dropped: bool,
}

/// Most problems reported for one file (a broken file can have one per line).
const MAX_PROBLEMS: usize = 100;

impl Checker<'_> {
    fn full(&self) -> bool {
        self.problems.len() >= MAX_PROBLEMS
    }

    fn at(&mut self, position: Position, key: String, message: String) {
        if self.full() {
            self.dropped = true;
            return;
        }
        self.problems.push(Problem {
            file: self.file.into(),
            line: position.line,
            column: position.column,
            key,
            message,
        });
    }

    fn value(&mut self, path: &[Segment], message: String) {
        let position = self.positions.value(path);
        self.at(position, display_path(path), message);
    }
}

fn key(name: &str) -> Segment {
    Segment::Key(name.into())
}

/// Validates spec text; `name` is the file name used in messages.
pub fn validate_text(name: &str, text: &str) -> Report {
    // Editors on some systems start files with a byte order mark; it is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(problem) = unprintable(name, text) {
        return Report {
            file: name.into(),
            valid: false,
            problems: vec![problem],
            spec: None,
        };
    }
    let mut checker = Checker {
        file: name,
        positions: PositionMap::from_text(text),
        problems: Vec::new(),
        dropped: false,
    };
    let spec = check(&mut checker, text);
    let mut problems = checker.problems;
    if checker.dropped {
        problems.push(Problem {
            file: name.into(),
            line: 1,
            column: 1,
            key: "(file)".into(),
            message: format!("more problems not shown (at most {MAX_PROBLEMS} are reported)"),
        });
    }
    Report {
        file: name.into(),
        valid: problems.is_empty(),
        problems,
        spec,
    }
}

fn check(checker: &mut Checker<'_>, text: &str) -> Option<RawSpec> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|line| line.trim_start().starts_with('#') || line.trim().is_empty())
    {
        checker.at(
            Position::START,
            "(root)".into(),
            "the spec is empty: expected a mapping with at least `volume` and `node`".into(),
        );
        return None;
    }
    if let Some(position) = checker.positions.too_deep() {
        checker.at(
            position,
            "(yaml)".into(),
            format!("nested more than {MAX_NESTING} levels deep"),
        );
        return None;
    }
    if let Some(position) = checker.positions.alias_overflow() {
        checker.at(
            position,
            "(yaml)".into(),
            format!("aliases expand to more than {MAX_ALIAS_NODES} nodes here (an alias bomb?)"),
        );
        return None;
    }
    let mut value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            yaml_problem(checker, text, &err);
            return None;
        }
    };
    if let Err(err) = value.apply_merge() {
        checker.at(
            Position::START,
            "(yaml)".into(),
            format!("merge keys: {err}"),
        );
        return None;
    }
    let json = to_json(&value, &mut Vec::new(), checker)?;
    if !check_schema(checker, &json) || !check_numbers(checker, &json) {
        return None;
    }
    let spec: RawSpec = match serde_yaml::from_value(value) {
        Ok(spec) => spec,
        Err(err) => {
            checker.at(Position::START, "(root)".into(), err.to_string());
            return None;
        }
    };
    check_rules(checker, &spec);
    Some(spec)
}

/// Converts YAML to JSON for the schema validator; mapping keys must be strings.
fn to_json(
    value: &serde_yaml::Value,
    path: &mut Vec<Segment>,
    checker: &mut Checker<'_>,
) -> Option<serde_json::Value> {
    use serde_yaml::Value as Y;
    Some(match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or_else(|| serde_json::Value::String(n.to_string()))
            }
        }
        Y::String(s) => serde_json::Value::String(s.clone()),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                let converted = to_json(item, path, checker);
                path.pop();
                out.push(converted?);
            }
            serde_json::Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let name = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        // Where the key stands: `?` for a mapping or sequence used as a
                        // key, its text for a null key; else the mapping itself.
                        let texts: &[&str] = match other {
                            Y::Null => &["~", "null", "Null", "NULL", ""],
                            _ => &["?"],
                        };
                        let position = texts
                            .iter()
                            .find_map(|text| {
                                let mut child = path.clone();
                                child.push(key(text));
                                checker.positions.key_exact(&child)
                            })
                            .unwrap_or_else(|| checker.positions.value(path));
                        checker.at(
                            position,
                            display_path(path),
                            "mapping keys must be plain strings".into(),
                        );
                        return None;
                    }
                };
                path.push(Segment::Key(name.clone()));
                let converted = to_json(v, path, checker);
                path.pop();
                out.insert(name, converted?);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(tagged) => to_json(&tagged.value, path, checker)?,
    })
}

fn segments_of(location: &jsonschema::paths::Location) -> Vec<Segment> {
    location
        .segments()
        .map(|segment| match segment {
            LocationSegment::Property(name) => Segment::Key(name.to_string()),
            LocationSegment::Index(index) => Segment::Index(index),
        })
        .collect()
}

fn describe(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!("{}...", &text[..char_boundary(&text, 57)])
    } else {
        text
    }
}

/// Runs the generated schema; returns whether the document passed.
fn check_schema(checker: &mut Checker<'_>, json: &serde_json::Value) -> bool {
    let schema: serde_json::Value = match serde_json::to_value(schemars::schema_for!(RawSpec)) {
        Ok(schema) => schema,
        Err(err) => {
            checker.at(
                Position::START,
                "(schema)".into(),
                format!("internal: schema: {err}"),
            );
            return false;
        }
    };
    let validator = match jsonschema::validator_for(&schema) {
        Ok(validator) => validator,
        Err(err) => {
            checker.at(
                Position::START,
                "(schema)".into(),
                format!("internal: schema: {err}"),
            );
            return false;
        }
    };
    let mut passed = true;
    let mut seen = HashSet::new();
    for error in validator.iter_errors(json) {
        passed = false;
        if checker.full() {
            checker.dropped = true;
            break;
        }
        let path = segments_of(error.instance_path());
        let instance = error.instance().clone().into_owned();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let mut child = path.clone();
                    child.push(key(name));
                    let position = checker.positions.key(&child);
                    checker.at(position, display_path(&child), "unknown key".into());
                }
            }
            ValidationErrorKind::Required { property } => {
                let mut child = path.clone();
                child.push(key(property.as_str().unwrap_or("?")));
                let position = checker.positions.key(&path);
                checker.at(
                    position,
                    display_path(&child),
                    "missing required key".into(),
                );
            }
            kind => {
                let message = match kind {
                    ValidationErrorKind::AnyOf { .. } if is_size_key(&path) => {
                        size_message(&instance)
                    }
                    ValidationErrorKind::AnyOf { .. } if is_span_key(&path) => {
                        span_message(&instance)
                    }
                    ValidationErrorKind::AnyOf { .. } if last_key(&path) == "owner" => format!(
                        "{} is not a user name or a uid (0 to {})",
                        describe(&instance),
                        u32::MAX
                    ),
                    ValidationErrorKind::Type { kind } => {
                        format!("{} is not of type {}", describe(&instance), type_name(kind))
                    }
                    ValidationErrorKind::OneOfNotValid { .. }
                        if last_key(&path) == "compression" =>
                    {
                        format!("{} is not one of \"none\", \"zstd\"", describe(&instance))
                    }
                    ValidationErrorKind::Enum { options } => {
                        format!("{} is not one of {}", describe(&instance), options)
                    }
                    ValidationErrorKind::Minimum { limit } => {
                        format!("{} is less than the minimum {limit}", describe(&instance))
                    }
                    ValidationErrorKind::Maximum { limit } => {
                        format!("{} is more than the maximum {limit}", describe(&instance))
                    }
                    _ => error.to_string(),
                };
                // anyOf branches can repeat one problem; report each once.
                if seen.insert((path.clone(), message.clone())) {
                    checker.value(&path, message);
                }
            }
        }
    }
    passed
}

/// How many alias jumps per event serde_yaml allows before it calls a document an
/// alias bomb ("repetition limit exceeded").
const ALIAS_JUMPS_PER_EVENT: u64 = 100;

/// Reports a YAML syntax (or loading) error with the best position we can find.
fn yaml_problem(checker: &mut Checker<'_>, text: &str, err: &serde_yaml::Error) {
    let mut message = err.to_string();
    let mut position = Position::START;
    if let Some(loc) = err.location() {
        position = Position {
            line: loc.line(),
            column: loc.column(),
        };
        // serde_yaml puts " at line L column C" after the problem (and may add the
        // context after it, ", while parsing a flow mapping at line ..."); the
        // position is already in front, the context is worth keeping.
        let mark = format!(" at line {} column {}", loc.line(), loc.column());
        message = message.replacen(&mark, "", 1);
    } else if let Some(index) = message.find(" at position ") {
        // Reader errors (control characters, bad encoding) give a byte offset.
        let digits: String = message[index + 13..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(offset) = digits.parse::<usize>() {
            position = offset_position(text, offset);
            message.replace_range(index..index + 13 + digits.len(), "");
        }
    }
    // libyaml marks some errors at the end of input one line past a last line
    // that has no line feed: keep the position inside the file.
    let end = offset_position(text, text.len());
    if (position.line, position.column) > (end.line, end.column) {
        position = end;
    }
    if message.starts_with("duplicate entry with key") {
        if let Some((path, first, again)) = checker.positions.first_duplicate().cloned() {
            checker.at(
                again,
                display_path(&path),
                format!("key given twice (first at line {})", first.line),
            );
            return;
        }
    }
    if message.contains("more than one document") {
        if let Some(at) = checker.positions.second_document() {
            position = at;
            message = "a second YAML document (`---`): a spec is one document".into();
        }
    }
    if message.contains("repetition limit exceeded") {
        if let Some(at) = checker.positions.alias_bomb(ALIAS_JUMPS_PER_EVENT) {
            position = at;
        }
        message = "aliases expand to too much (an alias bomb?): repetition limit exceeded".into();
    }
    // serde_yaml prefixes some messages with the key path (`block_size: ...`).
    let mut key_name = "(yaml)".to_string();
    if let Some(path) = checker
        .positions
        .path_at(position)
        .filter(|p| !p.is_empty())
    {
        let name = display_path(&path);
        if let Some(rest) = message.strip_prefix(&format!("{name}: ")) {
            message = rest.to_string();
            key_name = name;
        }
    }
    if message.contains(" as u128") || message.contains(" as i128") {
        let number = message
            .split('`')
            .nth(1)
            .unwrap_or("the number")
            .to_string();
        message = format!("{number} is too large a number");
    }
    checker.at(position, key_name, message);
}

/// The largest character boundary of `text` at or before byte `index`
/// (`str::floor_char_boundary`, which needs a newer Rust than the MSRV).
fn char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Line and column (in characters) of byte `offset` in `text`.
fn offset_position(text: &str, offset: usize) -> Position {
    let before = &text[..char_boundary(text, offset)];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The first character YAML does not allow in a document (C0 and C1 controls but
/// tab, line feed, carriage return and next line; DEL; U+FFFE and U+FFFF).
fn unprintable(name: &str, text: &str) -> Option<Problem> {
    let (offset, ch) = text.char_indices().find(|(_, ch)| {
        let code = *ch as u32;
        !matches!(ch, '\t' | '\n' | '\r' | '\u{85}')
            && (code < 0x20 || (0x7f..=0x9f).contains(&code) || code == 0xfffe || code == 0xffff)
    })?;
    let position = offset_position(text, offset);
    Some(Problem {
        file: name.into(),
        line: position.line,
        column: position.column,
        key: "(file)".into(),
        message: format!(
            "control character U+{:04X} is not allowed in YAML (binary data?)",
            ch as u32
        ),
    })
}

/// What a number-like spec value must be, beyond its schema type.
#[derive(Clone, Copy)]
enum Number {
    Size,
    Span,
    U32,
}

/// Checks that sizes, durations and counts that passed the schema also fit the
/// types they are read into (no overflow, no fractions), so that reading the spec
/// cannot fail without naming the key. Returns whether all fit.
fn check_numbers(checker: &mut Checker<'_>, json: &serde_json::Value) -> bool {
    const FIELDS: &[(&[&str], Number)] = &[
        (&["block_size"], Number::Size),
        (&["cache", "max_size"], Number::Size),
        (&["sync", "interval"], Number::Span),
        (&["sync", "timeout"], Number::Span),
        (&["sync", "full_check"], Number::Span),
        (&["retention", "keep_within"], Number::Span),
        (&["retention", "every"], Number::Span),
        (&["node", "major"], Number::U32),
        (&["retention", "keep_last"], Number::U32),
        (&["cache", "min_copies"], Number::U32),
        (&["copies"], Number::U32),
    ];
    let mut passed = true;
    for (names, kind) in FIELDS {
        let Some(value) = names
            .iter()
            .try_fold(json, |value, name| value.get(*name))
            .filter(|value| !value.is_null())
        else {
            continue;
        };
        let path: Vec<Segment> = names.iter().map(|name| key(name)).collect();
        let problem = match (kind, value) {
            (Number::Size, serde_json::Value::String(text)) => text.parse::<ByteSize>().err(),
            (Number::Span, serde_json::Value::String(text)) => text.parse::<Span>().err(),
            (Number::Size, other) => match other.as_u64() {
                Some(_) => None,
                None => Some(size_message(other)),
            },
            (Number::Span, other) => match other.as_u64() {
                Some(seconds) => seconds
                    .checked_mul(1000)
                    .is_none()
                    .then(|| format!("{seconds} is too long a duration")),
                None => Some(span_message(other)),
            },
            (Number::U32, other) => match other.as_u64() {
                Some(number) if number > u64::from(u32::MAX) => {
                    Some(format!("{number} is more than the maximum {}", u32::MAX))
                }
                Some(_) => None,
                None => Some(format!("{} is not an integer", describe(other))),
            },
        };
        if let Some(message) = problem {
            passed = false;
            checker.value(&path, message);
        }
    }
    passed
}

fn last_key(path: &[Segment]) -> &str {
    match path.last() {
        Some(Segment::Key(name)) => name,
        _ => "",
    }
}

fn is_size_key(path: &[Segment]) -> bool {
    matches!(last_key(path), "block_size" | "max_size")
}

fn is_span_key(path: &[Segment]) -> bool {
    matches!(
        last_key(path),
        "interval" | "timeout" | "keep_within" | "full_check" | "every"
    )
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

fn size_message(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => match text.parse::<ByteSize>() {
            Err(message) => message,
            Ok(_) => format!("{text:?} is not a size"),
        },
        other => format!(
            "{} is not a size: write bytes as an integer or with a binary unit (K, KiB, M, MiB, G, GiB, T, TiB)",
            describe(other)
        ),
    }
}

fn span_message(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => match text.parse::<Span>() {
            Err(message) => message,
            Ok(_) => format!("{text:?} is not a duration"),
        },
        other => format!(
            "{} is not a duration: write seconds as an integer or use a unit (ms, s, m, h, d)",
            describe(other)
        ),
    }
}

/// Why `path` is not an absolute, normalised path, if it is not.
fn path_problem(path: &Path) -> Option<String> {
    let text = path.to_string_lossy();
    if !path.is_absolute() {
        return Some(format!("{text:?} is not an absolute path"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
        || text.contains("//")
        || (text.len() > 1 && text.ends_with('/'))
        || text.split('/').any(|part| part == "." || part == "..")
    {
        return Some(format!(
            "{text:?} is not normalised (no `.`, `..`, `//` or trailing `/`)"
        ));
    }
    if text.contains('\0') {
        return Some(format!("{text:?} contains a NUL byte"));
    }
    if path == Path::new("/") {
        return Some("\"/\" cannot be used: name a directory".into());
    }
    None
}

/// Why `name` cannot be a user name, if it cannot. Whether the user exists is
/// for `reconcile` to find out: `validate` reads only the spec file.
fn login_problem(name: &str) -> Option<String> {
    let portable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() {
        Some("an empty user name: give a user name or a numeric uid".into())
    } else if name.starts_with('-') || name.bytes().all(|b| b.is_ascii_digit()) {
        Some(format!(
            "{name:?} is not a user name (write a uid as a plain number: owner: 1001)"
        ))
    } else if name.len() > 32 || !name.trim_end_matches('$').chars().all(portable) {
        Some(format!(
            "{name:?} is not a user name (letters, digits, `_`, `-`, `.`, at most 32)"
        ))
    } else {
        None
    }
}

fn uuid_problem(text: &str) -> Option<String> {
    text.parse::<NodeId>().err()
}

/// The rules a schema cannot say.
fn check_rules(checker: &mut Checker<'_>, spec: &RawSpec) {
    if let Some(message) = path_problem(&spec.volume) {
        checker.value(&[key("volume")], message);
    }
    let node_path = [key("node"), key("id")];
    let node_id = match uuid_problem(&spec.node.id) {
        Some(message) => {
            checker.value(&node_path, message);
            None
        }
        None => Some(spec.node.id.as_str()),
    };
    if let Some(major) = spec.node.major {
        if major == 0 || major > MAX_MAJOR {
            checker.value(
                &[key("node"), key("major")],
                format!("{major} is out of range: a major is from 1 to {MAX_MAJOR}"),
            );
        }
    }
    if let Some(size) = spec.block_size {
        let bytes = size.0;
        if !bytes.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bytes) {
            checker.value(
                &[key("block_size")],
                format!(
                    "{bytes} bytes is not a power of two from {} to {}",
                    ByteSize(MIN_BLOCK_SIZE),
                    ByteSize(MAX_BLOCK_SIZE)
                ),
            );
        }
    }
    let mut seen = HashSet::new();
    for (index, peer) in spec.peers.iter().enumerate() {
        let here = |name: &str| vec![key("peers"), Segment::Index(index), key(name)];
        if let Some(message) = uuid_problem(&peer.id) {
            checker.value(&here("id"), message);
        } else if Some(peer.id.as_str()) == node_id {
            checker.value(&here("id"), format!("{:?} is this node's own id", peer.id));
        } else if !seen.insert(peer.id.clone()) {
            checker.value(&here("id"), format!("{:?} is declared twice", peer.id));
        }
        if let Some(super::PeerOwner::Name(name)) = &peer.owner {
            if let Some(message) = login_problem(name) {
                checker.value(&here("owner"), message);
            }
        }
        if let Some(message) = path_problem(&peer.path) {
            checker.value(&here("path"), message);
        } else if spec.volume.starts_with(&peer.path) {
            checker.value(
                &here("path"),
                format!(
                    "the volume {:?} is inside this peer path",
                    spec.volume.display().to_string()
                ),
            );
        } else if peer.path.starts_with(&spec.volume) {
            checker.value(
                &here("path"),
                format!(
                    "{:?} is inside the volume {:?}",
                    peer.path.display().to_string(),
                    spec.volume.display().to_string()
                ),
            );
        }
    }
    if let Some(mount) = spec.mount.as_ref().and_then(|m| m.path.as_ref()) {
        let path = [key("mount"), key("path")];
        if let Some(message) = path_problem(mount) {
            checker.value(&path, message);
        } else if mount.starts_with(&spec.volume) || spec.volume.starts_with(mount) {
            checker.value(
                &path,
                format!(
                    "{:?} and the volume must not contain each other",
                    mount.display().to_string()
                ),
            );
        }
    }
    if let Some(name) = spec.mount.as_ref().and_then(|m| m.history_dir.as_ref()) {
        let bad = name == "."
            || name == ".."
            || (!name.is_empty() && crate::layout::check_name(name.as_bytes()).is_err());
        if bad {
            checker.value(
                &[key("mount"), key("history_dir")],
                format!("{name:?} is not one file name (no `/`, not `.` or `..`; \"\" turns the view off)"),
            );
        }
    }
    if let Some(sync) = &spec.sync {
        for (name, span) in [("interval", sync.interval), ("timeout", sync.timeout)] {
            if let Some(span) = span {
                if span.0.is_zero() {
                    checker.value(&[key("sync"), key(name)], "must be longer than zero".into());
                }
            }
        }
    }
    if let Some(retention) = &spec.retention {
        if retention.keep_all == Some(true) {
            for (name, given) in [
                ("keep_last", retention.keep_last.is_some()),
                ("keep_within", retention.keep_within.is_some()),
                (
                    "coalesce_within",
                    retention
                        .coalesce_within
                        .is_some_and(|span| !span.0.is_zero()),
                ),
            ] {
                if given {
                    checker.value(
                        &[key("retention"), key(name)],
                        "contradicts `keep_all: true` (which keeps every version)".into(),
                    );
                }
            }
        }
    }
    if let Some(copies) = spec.copies {
        let nodes = spec.peers.len() as u64 + 1;
        if u64::from(copies) > nodes {
            checker.value(
                &[key("copies")],
                format!(
                    "{copies} copies need {copies} nodes, and this spec has {nodes} (this node and {} peer{}): add peers or lower `copies`",
                    nodes - 1,
                    if nodes == 2 { "" } else { "s" }
                ),
            );
        }
    }
    for (index, pattern) in spec.ignore.iter().enumerate() {
        if let Err(message) = crate::ignore::check_pattern(pattern) {
            checker.value(&[key("ignore"), Segment::Index(index)], message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "volume: /srv/globofs\nnode:\n  id: 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\n  major: 100\nblock_size: 1MiB\npeers:\n  - id: ea8192ee-593f-437f-af60-90d213995480\n    path: /mnt/somewhereelse/globofs/ea8192ee-593f-437f-af60-90d213995480\nmount:\n  path: /mnt/globofs\nsync:\n  interval: 30s\n";

    #[test]
    fn the_design_example_is_valid() {
        let report = validate_text("spec.yaml", GOOD);
        assert_eq!(report.problems, vec![]);
        assert!(report.valid);
    }

    #[test]
    fn a_bad_uuid_names_line_column_and_key() {
        let text = GOOD.replace("68d25a11-a34a-4bbb-a29e-c9bd06ff8c53", "abc");
        let report = validate_text("spec.yaml", &text);
        let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            vec!["spec.yaml:3:7: node.id: \"abc\" is not a UUID".to_string()]
        );
    }

    #[test]
    fn retention_defaults_keep_all_and_its_contradictions() {
        use std::time::Duration;
        let spec_of = |extra: &str| {
            let text = format!("{GOOD}{extra}");
            let report = validate_text("spec.yaml", &text);
            (
                report
                    .problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>(),
                text,
            )
        };
        let rule = |extra: &str| {
            let (problems, text) = spec_of(extra);
            assert!(problems.is_empty(), "{problems:?}");
            let raw: RawSpec = serde_yaml::from_str(&text).unwrap();
            let spec = super::super::Spec::resolve(Path::new("spec.yaml"), raw);
            (spec.retention, spec.maintain_every)
        };
        let (default, every) = rule("");
        assert_eq!(default.keep_last, Some(10));
        assert_eq!(default.keep_within, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(every, Some(Duration::from_secs(3600)));
        let (only_last, _) = rule("retention:\n  keep_last: 3\n");
        assert_eq!(
            (only_last.keep_last, only_last.keep_within),
            (Some(3), None)
        );
        let (all, never) = rule("retention:\n  keep_all: true\n  every: 0s\n");
        assert!(all.keeps_all());
        assert_eq!(never, None);
        let (problems, _) = spec_of("retention:\n  keep_all: true\n  keep_last: 2\n");
        assert_eq!(
            problems,
            vec![
                "spec.yaml:15:14: retention.keep_last: contradicts `keep_all: true` (which keeps every version)"
                    .to_string()
            ]
        );
        let coalesce = |extra: &str| {
            let (problems, text) = spec_of(extra);
            assert!(problems.is_empty(), "{problems:?}");
            let raw: RawSpec = serde_yaml::from_str(&text).unwrap();
            super::super::Spec::resolve(Path::new("spec.yaml"), raw).coalesce_within
        };
        assert_eq!(coalesce(""), Some(Duration::from_secs(60)));
        assert_eq!(
            coalesce("retention:\n  coalesce_within: 5m\n"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(coalesce("retention:\n  coalesce_within: 0s\n"), None);
        assert_eq!(coalesce("retention:\n  keep_all: true\n"), None);
        let (problems, _) = spec_of("retention:\n  keep_all: true\n  coalesce_within: 1m\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("retention.coalesce_within: contradicts"),
            "{problems:?}"
        );
        let (problems, _) = spec_of("retention:\n  every: soon\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("retention.every"), "{problems:?}");
    }
}
