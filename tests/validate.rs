//! `globofs validate`: the corpus of bad specs under `tests/spec_corpus/` (each
//! with the line, column, key and message it must be reported with), inputs that
//! cannot be committed (empty, binary, huge, deep, alias bombs) generated here,
//! valid specs, `--format json`, and never a panic whatever the input.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Output, globofs, globofs_run, project_root, run, write_file};

/// One problem a spec must be reported with: `FILE:LINE:COL: KEY: ...MESSAGE...`.
#[derive(Clone, Copy, Debug)]
struct Expect {
    line: usize,
    column: usize,
    key: &'static str,
    /// A substring of the message.
    message: &'static str,
}

const fn at(line: usize, column: usize, key: &'static str, message: &'static str) -> Expect {
    Expect {
        line,
        column,
        key,
        message,
    }
}

/// The committed bad specs and every problem each must report (no more, no less).
const CORPUS: &[(&str, &[Expect])] = &[
    (
        "01-syntax-unclosed-flow.yaml",
        &[at(
            3,
            11,
            "(yaml)",
            "while parsing a flow mapping at line 2",
        )],
    ),
    (
        "02-syntax-tab-indent.yaml",
        &[at(
            3,
            1,
            "(yaml)",
            "found character that cannot start any token",
        )],
    ),
    (
        "03-syntax-duplicate-key.yaml",
        &[at(4, 1, "volume", "key given twice (first at line 1)")],
    ),
    (
        "04-syntax-bad-indent.yaml",
        &[at(4, 9, "(yaml)", "mapping values are not allowed")],
    ),
    (
        "05-syntax-two-documents.yaml",
        &[at(4, 1, "(yaml)", "a second YAML document")],
    ),
    (
        "06-root-is-a-list.yaml",
        &[at(2, 1, "(root)", "is not of type object")],
    ),
    (
        "07-root-is-a-scalar.yaml",
        &[at(
            1,
            1,
            "(root)",
            "\"just some words\" is not of type object",
        )],
    ),
    (
        "08-missing-volume.yaml",
        &[at(1, 1, "volume", "missing required key")],
    ),
    (
        "09-missing-node.yaml",
        &[at(1, 1, "node", "missing required key")],
    ),
    (
        "10-missing-node-id.yaml",
        &[at(2, 1, "node.id", "missing required key")],
    ),
    (
        "11-missing-peer-path.yaml",
        &[at(7, 5, "peers[1].path", "missing required key")],
    ),
    (
        "12-unknown-top-key.yaml",
        &[at(4, 1, "colour", "unknown key")],
    ),
    (
        "13-unknown-node-key.yaml",
        &[at(4, 3, "node.name", "unknown key")],
    ),
    (
        "14-unknown-peer-key.yaml",
        &[at(7, 5, "peers[0].url", "unknown key")],
    ),
    ("15-typo-key.yaml", &[at(4, 1, "blocksize", "unknown key")]),
    (
        "16-volume-wrong-type.yaml",
        &[at(2, 3, "volume", "is not of type string")],
    ),
    (
        "17-volume-relative.yaml",
        &[at(
            1,
            9,
            "volume",
            "\"srv/globofs\" is not an absolute path",
        )],
    ),
    (
        "18-volume-dotdot.yaml",
        &[at(1, 9, "volume", "\"/srv/../globofs\" is not normalised")],
    ),
    (
        "19-volume-trailing-slash.yaml",
        &[at(1, 9, "volume", "\"/srv/globofs/\" is not normalised")],
    ),
    (
        "20-volume-is-root.yaml",
        &[at(1, 9, "volume", "\"/\" cannot be used")],
    ),
    (
        "21-node-id-not-uuid.yaml",
        &[at(3, 7, "node.id", "\"abc\" is not a UUID")],
    ),
    (
        "22-node-id-uppercase.yaml",
        &[at(
            3,
            7,
            "node.id",
            "is not a lowercase hyphenated UUID (write \"68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\")",
        )],
    ),
    (
        "23-node-id-number.yaml",
        &[at(3, 7, "node.id", "12345 is not of type string")],
    ),
    (
        "24-node-is-null.yaml",
        &[at(2, 1, "node", "null is not of type object")],
    ),
    (
        "25-major-zero.yaml",
        &[at(4, 10, "node.major", "0 is less than the minimum 1")],
    ),
    (
        "26-major-too-big.yaml",
        &[at(
            4,
            10,
            "node.major",
            "1000000 is more than the maximum 999999",
        )],
    ),
    (
        "27-major-negative.yaml",
        &[at(4, 10, "node.major", "-5 is less than the minimum 1")],
    ),
    (
        "28-major-string.yaml",
        &[at(4, 10, "node.major", "\"lots\" is not of type integer")],
    ),
    (
        "29-block-size-zero.yaml",
        &[at(
            4,
            13,
            "block_size",
            "0 bytes is not a power of two from 4KiB to 64MiB",
        )],
    ),
    (
        "30-block-size-huge.yaml",
        &[at(
            4,
            13,
            "block_size",
            "1099511627776 bytes is not a power of two",
        )],
    ),
    (
        "31-block-size-not-power-of-two.yaml",
        &[at(
            4,
            13,
            "block_size",
            "3145728 bytes is not a power of two",
        )],
    ),
    (
        "32-block-size-too-small.yaml",
        &[at(4, 13, "block_size", "2048 bytes is not a power of two")],
    ),
    (
        "33-block-size-bad-unit.yaml",
        &[at(4, 13, "block_size", "\"4MB\" is not a size")],
    ),
    (
        "34-block-size-float.yaml",
        &[at(4, 13, "block_size", "1.5 is not a size")],
    ),
    (
        "35-block-size-negative.yaml",
        &[at(4, 13, "block_size", "-4096 is not a size")],
    ),
    (
        "36-block-size-overflow.yaml",
        &[at(
            4,
            13,
            "block_size",
            "\"99999999999999999999999T\" is not a size",
        )],
    ),
    (
        "37-peers-not-a-list.yaml",
        &[at(5, 3, "peers", "is not of type array")],
    ),
    (
        "38-peer-duplicate.yaml",
        &[at(
            7,
            9,
            "peers[1].id",
            "\"ea8192ee-593f-437f-af60-90d213995480\" is declared twice",
        )],
    ),
    (
        "39-peer-is-own-node.yaml",
        &[at(5, 9, "peers[0].id", "is this node's own id")],
    ),
    (
        "40-peer-bad-uuid.yaml",
        &[at(
            7,
            9,
            "peers[1].id",
            "\"ea8192ee-593f-437f-af60-90d21399548\" is not a UUID",
        )],
    ),
    (
        "41-peer-relative-path.yaml",
        &[at(6, 11, "peers[0].path", "is not an absolute path")],
    ),
    (
        "42-peer-path-double-slash.yaml",
        &[at(6, 11, "peers[0].path", "is not normalised")],
    ),
    (
        "43-volume-inside-peer-path.yaml",
        &[at(
            6,
            11,
            "peers[0].path",
            "the volume \"/srv/globofs\" is inside this peer path",
        )],
    ),
    (
        "44-peer-path-inside-volume.yaml",
        &[at(
            6,
            11,
            "peers[0].path",
            "is inside the volume \"/srv/globofs\"",
        )],
    ),
    (
        "45-mount-relative.yaml",
        &[at(
            5,
            9,
            "mount.path",
            "\"mnt/globofs\" is not an absolute path",
        )],
    ),
    (
        "46-mount-inside-volume.yaml",
        &[at(5, 9, "mount.path", "must not contain each other")],
    ),
    (
        "47-sync-interval-words.yaml",
        &[at(5, 13, "sync.interval", "\"soon\" is not a duration")],
    ),
    (
        "48-sync-timeout-zero.yaml",
        &[at(6, 12, "sync.timeout", "must be longer than zero")],
    ),
    (
        "49-compression-unknown.yaml",
        &[at(
            4,
            14,
            "compression",
            "\"lz4\" is not one of \"none\", \"zstd\"",
        )],
    ),
    (
        "50-replicate-not-bool.yaml",
        &[at(
            7,
            16,
            "peers[0].replicate",
            "\"yes\" is not of type boolean",
        )],
    ),
    (
        "51-ignore-bad-glob.yaml",
        &[at(6, 5, "ignore[1]", "\"build/[abc\" is not a glob")],
    ),
    (
        "52-retention-keep-last-zero.yaml",
        &[at(
            5,
            14,
            "retention.keep_last",
            "0 is less than the minimum 1",
        )],
    ),
    (
        "53-cache-max-size-bad.yaml",
        &[at(5, 13, "cache.max_size", "\"lots\" is not a size")],
    ),
    (
        "54-complex-key.yaml",
        &[at(4, 3, "(root)", "mapping keys must be plain strings")],
    ),
    (
        "55-flow-style-bad-uuid.yaml",
        &[at(1, 35, "node.id", "\"not-a-uuid\" is not a UUID")],
    ),
    (
        "56-comments-only.yaml",
        &[at(1, 1, "(root)", "the spec is empty")],
    ),
    (
        "57-volume-null.yaml",
        &[at(1, 9, "volume", "null is not of type string")],
    ),
    (
        "58-merge-key-unknown.yaml",
        &[at(1, 1, "base", "unknown key")],
    ),
    (
        "59-tagged-value.yaml",
        &[at(1, 18, "volume", "is not an absolute path")],
    ),
    (
        "60-undefined-alias.yaml",
        &[at(3, 7, "(yaml)", "unknown anchor")],
    ),
    (
        "61-several-problems.yaml",
        &[
            at(1, 9, "volume", "\"srv/globofs\" is not an absolute path"),
            at(3, 7, "node.id", "is not a UUID"),
            at(4, 13, "block_size", "5000 bytes is not a power of two"),
            at(7, 11, "peers[0].path", "is not normalised"),
        ],
    ),
    (
        "62-sync-is-a-string.yaml",
        &[at(4, 7, "sync", "\"30s\" is not of type object")],
    ),
    (
        "63-ignore-not-a-list.yaml",
        &[at(4, 9, "ignore", "\"*.swp\" is not of type array")],
    ),
    (
        "64-keep-within-words.yaml",
        &[at(
            6,
            16,
            "retention.keep_within",
            "\"1 week\" is not a duration",
        )],
    ),
    (
        "65-mount-is-a-string.yaml",
        &[at(4, 8, "mount", "\"/mnt/globofs\" is not of type object")],
    ),
    (
        "66-node-id-no-hyphens.yaml",
        &[at(3, 7, "node.id", "is not a lowercase hyphenated UUID")],
    ),
    (
        "67-missing-peer-id.yaml",
        &[at(5, 5, "peers[0].id", "missing required key")],
    ),
    (
        "68-peer-is-a-string.yaml",
        &[at(5, 5, "peers[0]", "is not of type object")],
    ),
    (
        "69-unknown-key-in-flow.yaml",
        &[at(2, 60, "node.zone", "unknown key")],
    ),
    (
        "70-unterminated-quote.yaml",
        &[at(
            4,
            1,
            "(yaml)",
            "while scanning a quoted scalar at line 1 column 9",
        )],
    ),
    (
        "71-ignore-never-matches.yaml",
        &[
            at(5, 5, "ignore[0]", "\"/secret/\" matches no path"),
            at(6, 5, "ignore[1]", "\"\" matches no path"),
        ],
    ),
    (
        "72-peer-owner-not-a-login.yaml",
        &[at(
            7,
            12,
            "peers[0].owner",
            "-5 is not a user name or a uid",
        )],
    ),
    (
        "73-peer-owner-bad-name.yaml",
        &[
            at(7, 12, "peers[0].owner", "\"gfs peer\" is not a user name"),
            at(10, 12, "peers[1].owner", "write a uid as a plain number"),
        ],
    ),
    (
        "74-copies-more-than-nodes.yaml",
        &[at(
            7,
            9,
            "copies",
            "3 copies need 3 nodes, and this spec has 2 (this node and 1 peer)",
        )],
    ),
    (
        "75-copies-zero.yaml",
        &[at(4, 9, "copies", "0 is less than the minimum 1")],
    ),
    (
        "76-mount-history-dir-not-a-name.yaml",
        &[at(
            5,
            16,
            "mount.history_dir",
            "\"a/b\" is not one file name",
        )],
    ),
];

fn corpus_dir() -> PathBuf {
    project_root().join("tests").join("spec_corpus")
}

fn valid_dir() -> PathBuf {
    corpus_dir().join("valid")
}

/// The `.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// A line of text output split into its parts: `FILE:LINE:COL: KEY: message`.
#[derive(Debug)]
struct Line {
    file: String,
    line: usize,
    column: usize,
    key: String,
    message: String,
}

/// Parses one output line; `file` is the name it must start with (names may hold `:`).
fn parse_line(text: &str, file: &str) -> Option<Line> {
    let rest = text.strip_prefix(file)?.strip_prefix(':')?;
    let (line, rest) = rest.split_once(':')?;
    let (column, rest) = rest.split_once(": ")?;
    let (key, message) = rest.split_once(": ")?;
    Some(Line {
        file: file.to_string(),
        line: line.parse().ok()?,
        column: column.parse().ok()?,
        key: key.to_string(),
        message: message.to_string(),
    })
}

fn matches(line: &Line, expect: &Expect) -> bool {
    line.line == expect.line
        && line.column == expect.column
        && line.key == expect.key
        && line.message.contains(expect.message)
}

/// Checks the text output for `file` against `expects`: exit code 1, one line per
/// expected problem (no others), each with the exact position and key. Returns a
/// description of what is wrong, if anything.
fn check_text(file: &str, output: &Output, expects: &[Expect]) -> Result<(), String> {
    let context = || {
        format!(
            "--- stdout:\n{}--- stderr:\n{}",
            output.stdout, output.stderr
        )
    };
    if output.code != 1 {
        return Err(format!(
            "{file}: exit code {} (expected 1)\n{}",
            output.code,
            context()
        ));
    }
    let mut lines = Vec::new();
    for text in output.stdout.lines() {
        match parse_line(text, file) {
            Some(line) => lines.push(line),
            None => {
                return Err(format!(
                    "{file}: line not of the form `{file}:LINE:COL: KEY: message`: {text:?}\n{}",
                    context()
                ));
            }
        }
    }
    for expect in expects {
        if !lines.iter().any(|line| matches(line, expect)) {
            return Err(format!(
                "{file}: no line `{file}:{}:{}: {}: ...{}...`\n{}",
                expect.line,
                expect.column,
                expect.key,
                expect.message,
                context()
            ));
        }
    }
    if lines.len() != expects.len() {
        return Err(format!(
            "{file}: {} problems reported, expected {}\n{}",
            lines.len(),
            expects.len(),
            context()
        ));
    }
    Ok(())
}

/// `globofs validate ARGS...` run from the corpus directory (so messages name the
/// files as given).
fn validate_in(dir: &Path, args: &[&str]) -> Output {
    run(globofs(["validate"]).args(args).current_dir(dir))
}

#[test]
fn corpus_has_at_least_30_cases_and_each_file_has_its_expectation() {
    let on_disk: BTreeSet<String> = yaml_files(&corpus_dir())
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let in_table: BTreeSet<String> = CORPUS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(
        in_table.len(),
        CORPUS.len(),
        "a corpus file is listed twice in CORPUS"
    );
    assert_eq!(
        on_disk, in_table,
        "tests/spec_corpus/*.yaml and the CORPUS table must name the same files"
    );
    assert!(CORPUS.len() >= 30, "only {} corpus cases", CORPUS.len());
    assert!(CORPUS.iter().all(|(_, expects)| !expects.is_empty()));
}

#[test]
fn every_bad_spec_in_the_corpus_is_reported_with_line_and_key() {
    let mut failures = Vec::new();
    for (name, expects) in CORPUS {
        let output = validate_in(&corpus_dir(), &[name]);
        if let Err(failure) = check_text(name, &output, expects) {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_issue_example_prints_exactly_this_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(valid_dir().join("design-notes-example.yaml"))
        .unwrap()
        .replace("68d25a11-a34a-4bbb-a29e-c9bd06ff8c53", "abc");
    write_file(dir.path(), "spec.yaml", text);
    let output = validate_in(dir.path(), &["spec.yaml"]);
    output.expect_code(1);
    assert_eq!(
        output.stdout,
        "spec.yaml:3:7: node.id: \"abc\" is not a UUID\n"
    );
}

#[test]
fn valid_specs_pass_silently() {
    let files = yaml_files(&valid_dir());
    assert!(
        files.len() >= 5,
        "expected the valid specs in {:?}",
        valid_dir()
    );
    for file in &files {
        let output = globofs_run([OsStr::new("validate"), file.as_os_str()]);
        assert_eq!(
            (output.code, output.stdout.as_str()),
            (0, ""),
            "{} should be valid\n--- stderr:\n{}",
            file.display(),
            output.stderr
        );
    }
}

#[test]
fn the_shipped_examples_are_valid() {
    let dir = project_root().join("examples");
    if !dir.is_dir() {
        return;
    }
    for file in yaml_files(&dir) {
        let output = globofs_run([OsStr::new("validate"), file.as_os_str()]);
        assert_eq!(
            (output.code, output.stdout.as_str()),
            (0, ""),
            "{} should be valid\n--- stderr:\n{}",
            file.display(),
            output.stderr
        );
    }
}

#[test]
fn many_files_in_one_run_report_each_and_exit_1() {
    let mut args: Vec<String> = CORPUS.iter().map(|(name, _)| name.to_string()).collect();
    args.push("valid/minimal.yaml".into());
    args.push("valid/every-key.yaml".into());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = validate_in(&corpus_dir(), &arg_refs);
    output.expect_code(1);
    let expected: usize = CORPUS.iter().map(|(_, expects)| expects.len()).sum();
    assert_eq!(output.stdout.lines().count(), expected, "{}", output.stdout);
    for (name, expects) in CORPUS {
        let lines: Vec<Line> = output
            .stdout
            .lines()
            .filter_map(|text| parse_line(text, name))
            .collect();
        for expect in *expects {
            assert!(
                lines.iter().any(|line| matches(line, expect)),
                "{name}: {expect:?} missing from\n{}",
                output.stdout
            );
        }
    }
    assert!(!output.stdout.contains("valid/"), "valid files reported");

    // All valid: exit 0, nothing printed.
    let output = validate_in(
        &corpus_dir(),
        &["valid/minimal.yaml", "valid/design-notes-example.yaml"],
    );
    output.expect_code(0);
    assert_eq!(output.stdout, "");
}

#[test]
fn json_format_gives_the_same_problems_machine_readably() {
    let mut args: Vec<&str> = vec!["--format", "json"];
    args.extend(CORPUS.iter().map(|(name, _)| *name));
    args.push("valid/every-key.yaml");
    let output = validate_in(&corpus_dir(), &args);
    output.expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", output.stdout));
    assert_eq!(json["valid"], serde_json::Value::Bool(false));
    let files = json["files"].as_array().expect("files array");
    assert_eq!(files.len(), CORPUS.len() + 1);
    for (report, (name, expects)) in files.iter().zip(CORPUS) {
        assert_eq!(report["file"], *name);
        assert_eq!(report["valid"], false, "{name}");
        let problems = report["problems"].as_array().expect("problems array");
        assert_eq!(problems.len(), expects.len(), "{name}: {problems:?}");
        for expect in *expects {
            assert!(
                problems.iter().any(|problem| {
                    problem["file"] == *name
                        && problem["line"] == expect.line
                        && problem["column"] == expect.column
                        && problem["key"] == expect.key
                        && problem["message"]
                            .as_str()
                            .is_some_and(|message| message.contains(expect.message))
                }),
                "{name}: {expect:?} not in {problems:?}"
            );
        }
    }
    let last = files.last().unwrap();
    assert_eq!(last["file"], "valid/every-key.yaml");
    assert_eq!(last["valid"], true);
    assert_eq!(last["problems"], serde_json::json!([]));

    let output = validate_in(&corpus_dir(), &["--format", "json", "valid/minimal.yaml"]);
    output.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
    assert_eq!(json["valid"], true);
    assert_eq!(json["files"][0]["valid"], true);
}

/// A valid spec to build generated inputs from.
const GOOD: &str = "volume: /srv/globofs\nnode:\n  id: 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\n  major: 100\nblock_size: 1MiB\npeers:\n  - id: ea8192ee-593f-437f-af60-90d213995480\n    path: /mnt/somewhereelse/globofs/ea8192ee-593f-437f-af60-90d213995480\nmount:\n  path: /mnt/globofs\nsync:\n  interval: 30s\n";

/// The billion laughs: nine levels of nine aliases of the level before.
fn billion_laughs() -> String {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text + GOOD
}

/// A short list aliased thousands of times: few alias jumps, millions of nodes.
fn wide_alias_bomb() -> String {
    let items = vec!["x"; 2000].join(",");
    let refs = vec!["*a"; 2000].join(",");
    format!("{GOOD}ignore: &a [{items}]\ncache: [{refs}]\n")
}

/// `depth` block mappings nested by indentation.
fn deep_block_nesting(depth: usize) -> String {
    let mut text = String::from("volume: /srv/globofs\nnode:\n");
    for level in 0..depth {
        text.push_str(&format!("{}k{level}:\n", "  ".repeat(level + 1)));
    }
    text
}

/// Input that cannot sensibly be committed, and what it must be reported as.
fn generated_cases() -> Vec<(&'static str, Vec<u8>, Vec<Expect>)> {
    let mut ten_mb = b"volume: /srv/globofs\n".to_vec();
    while ten_mb.len() < 10 << 20 {
        ten_mb.extend_from_slice(
            b"# padding padding padding padding padding padding padding padding\n",
        );
    }
    let mut png = b"volume: /srv/globofs\nnode:\n  id: ".to_vec();
    png.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0");
    vec![
        (
            "empty.yaml",
            Vec::new(),
            vec![at(1, 1, "(root)", "the spec is empty")],
        ),
        (
            "whitespace.yaml",
            b"\n   \n\t\n\n".to_vec(),
            vec![at(1, 1, "(root)", "the spec is empty")],
        ),
        (
            "binary-garbage.yaml",
            png,
            vec![at(
                3,
                7,
                "(file)",
                "not UTF-8 text (invalid byte at offset 33)",
            )],
        ),
        (
            "random-bytes.yaml",
            pseudo_random_bytes(7, 4096),
            // The generator starts with 0xd4 0x21: a two-byte sequence cut short.
            vec![at(
                1,
                1,
                "(file)",
                "not UTF-8 text (invalid byte at offset 0)",
            )],
        ),
        (
            "nul-byte.yaml",
            b"volume: /srv/glo\0bofs\nnode:\n  id: 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\n".to_vec(),
            vec![at(1, 17, "(file)", "control character U+0000")],
        ),
        (
            "control-characters.yaml",
            format!("{GOOD}ignore:\n  - \"a\x07b\"\n").into_bytes(),
            vec![at(14, 7, "(file)", "control character U+0007")],
        ),
        (
            "ten-megabytes.yaml",
            ten_mb,
            vec![at(
                1,
                1,
                "(file)",
                "larger than the 1048576 bytes a spec may have",
            )],
        ),
        (
            "deep-flow-nesting.yaml",
            format!("volume: {}", "[".repeat(100_000)).into_bytes(),
            vec![at(1, 137, "(yaml)", "nested more than 128 levels deep")],
        ),
        (
            "deep-flow-nesting-closed.yaml",
            format!("{GOOD}ignore: {}{}\n", "[".repeat(3000), "]".repeat(3000)).into_bytes(),
            vec![at(13, 137, "(yaml)", "nested more than 128 levels deep")],
        ),
        (
            "deep-block-nesting.yaml",
            deep_block_nesting(200).into_bytes(),
            vec![at(130, 257, "(yaml)", "nested more than 128 levels deep")],
        ),
        (
            "billion-laughs.yaml",
            billion_laughs().into_bytes(),
            vec![at(6, 8, "(yaml)", "alias bomb")],
        ),
        (
            "wide-alias-bomb.yaml",
            wide_alias_bomb().into_bytes(),
            vec![at(14, 156, "(yaml)", "alias bomb")],
        ),
    ]
}

/// Deterministic bytes (xorshift), for garbage input that is the same every run.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn generated_hostile_inputs_are_reported_quickly_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (name, bytes, expects) in generated_cases() {
        write_file(dir.path(), name, &bytes);
        let started = Instant::now();
        let output = validate_in(dir.path(), &[name]);
        let took = started.elapsed();
        if let Err(failure) = check_text(name, &output, &expects) {
            failures.push(failure);
        }
        if took > Duration::from_secs(10) {
            failures.push(format!("{name}: took {took:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_spec_of_exactly_the_size_limit_is_read_one_byte_more_is_not() {
    const LIMIT: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut text = GOOD.to_string();
    while text.len() < LIMIT {
        let room = LIMIT - text.len();
        let line = format!("#{}\n", "x".repeat(room.clamp(2, 80) - 2));
        text.push_str(&line[..line.len().min(room)]);
    }
    assert_eq!(text.len(), LIMIT);
    write_file(dir.path(), "limit.yaml", &text);
    text.push('\n');
    write_file(dir.path(), "over.yaml", &text);
    validate_in(dir.path(), &["limit.yaml"]).expect_code(0);
    let output = validate_in(dir.path(), &["over.yaml"]);
    check_text(
        "over.yaml",
        &output,
        &[at(1, 1, "(file)", "larger than the 1048576 bytes")],
    )
    .unwrap();
}

#[test]
fn byte_order_mark_and_crlf_line_ends_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("\u{feff}{}", GOOD.replace('\n', "\r\n"));
    write_file(dir.path(), "windows.yaml", &text);
    let output = validate_in(dir.path(), &["windows.yaml"]);
    assert_eq!((output.code, output.stdout.as_str()), (0, ""), "{output:?}");
    // Positions still count from the first visible character.
    let bad = text.replace("68d25a11-a34a-4bbb-a29e-c9bd06ff8c53", "abc");
    write_file(dir.path(), "windows-bad.yaml", bad);
    let output = validate_in(dir.path(), &["windows-bad.yaml"]);
    check_text(
        "windows-bad.yaml",
        &output,
        &[at(3, 7, "node.id", "\"abc\" is not a UUID")],
    )
    .unwrap();
}

#[test]
fn files_that_cannot_be_read_are_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-directory.yaml")).unwrap();
    write_file(dir.path(), "good.yaml", GOOD);
    let output = validate_in(
        dir.path(),
        &["missing.yaml", "a-directory.yaml", "good.yaml"],
    );
    output.expect_code(1);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", output.stdout);
    assert!(lines[0].starts_with("missing.yaml:1:1: (file): cannot open"));
    assert!(lines[1].starts_with("a-directory.yaml:1:1: (file): cannot read"));
    // No file at all is a usage error.
    let output = validate_in(dir.path(), &[]);
    output.expect_code(2);
}

#[test]
fn validate_reads_only_the_spec_never_the_volume_or_peers() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("no").join("volume");
    let peer = dir.path().join("no").join("peer");
    let mount = dir.path().join("no").join("mount");
    let text = format!(
        "volume: {}\nnode:\n  id: 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\npeers:\n  - id: ea8192ee-593f-437f-af60-90d213995480\n    path: {}\nmount:\n  path: {}\n",
        volume.display(),
        peer.display(),
        mount.display()
    );
    let spec = write_file(dir.path(), "spec.yaml", text);
    let output = globofs_run([OsStr::new("validate"), spec.as_os_str()]);
    assert_eq!((output.code, output.stdout.as_str()), (0, ""), "{output:?}");
    assert!(
        !dir.path().join("no").exists(),
        "validate created something"
    );
}

/// Small edits that turn a valid spec into all sorts of broken YAML.
fn mutate(base: &[u8], seed: u64) -> Vec<u8> {
    const PUNCTUATION: &[u8] = b"[]{}&*!|>:-?#%@,'\"\t\n \\~<=";
    let random = pseudo_random_bytes(seed, 64);
    let mut text = base.to_vec();
    let edits = 1 + random[0] as usize % 4;
    for edit in 0..edits {
        let r = &random[1 + edit * 8..];
        let position = (usize::from(r[0]) << 8 | usize::from(r[1])) % (text.len() + 1);
        match r[2] % 6 {
            0 => text.insert(position, PUNCTUATION[r[3] as usize % PUNCTUATION.len()]),
            1 => {
                let end = (position + r[3] as usize % 16).min(text.len());
                text.drain(position..end);
            }
            2 => {
                if position < text.len() {
                    text[position] = r[3];
                }
            }
            3 => {
                let end = (position + r[3] as usize % 40).min(text.len());
                let copy = text[position..end].to_vec();
                text.splice(position..position, copy);
            }
            4 => {
                let snippet: &[u8] = match r[3] % 6 {
                    0 => b"&x ",
                    1 => b"*x",
                    2 => b"<<: *x\n",
                    3 => b"\n- ",
                    4 => b"!!str ",
                    _ => b"? ",
                };
                text.splice(position..position, snippet.iter().copied());
            }
            _ => text.truncate(position),
        }
    }
    text
}

#[test]
fn mutated_specs_never_panic_and_every_problem_is_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let bases: Vec<Vec<u8>> = yaml_files(&valid_dir())
        .into_iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    let mut names = Vec::new();
    let mut texts = Vec::new();
    for seed in 0..300u64 {
        let base = &bases[seed as usize % bases.len()];
        let bytes = if seed % 10 == 9 {
            pseudo_random_bytes(seed, 1 + seed as usize * 7)
        } else {
            mutate(base, seed)
        };
        let name = format!("m{seed:03}.yaml");
        write_file(dir.path(), &name, &bytes);
        names.push(name);
        texts.push(bytes);
    }
    for chunk in names.chunks(100) {
        let args: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let output = validate_in(dir.path(), &args);
        assert!(output.code == 0 || output.code == 1, "{output:?}");
        for text in output.stdout.lines() {
            let parsed = chunk.iter().find_map(|name| parse_line(text, name));
            let Some(line) = parsed else {
                panic!("malformed problem line {text:?}");
            };
            let source = &texts[names.iter().position(|n| *n == line.file).unwrap()];
            let line_count = source.iter().filter(|b| **b == b'\n').count() + 1;
            assert!(
                line.line >= 1 && line.line <= line_count && line.column >= 1,
                "{text:?} points outside its file ({line_count} lines)"
            );
            assert!(!line.key.is_empty() && !line.message.is_empty(), "{text:?}");
        }
        let mut json_args = vec!["--format", "json"];
        json_args.extend(&args);
        let output = validate_in(dir.path(), &json_args);
        let json: serde_json::Value = serde_json::from_str(&output.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", output.stdout));
        assert_eq!(json["valid"], output.code == 0);
    }
}

#[test]
fn mutated_specs_in_process_never_panic() {
    // The library entry point, without a process per input: many more inputs.
    let base = GOOD.as_bytes();
    for seed in 1000..1600u64 {
        let bytes = mutate(base, seed);
        let text = String::from_utf8_lossy(&bytes);
        let report = globofs::spec::validate_text("fuzz.yaml", &text);
        assert_eq!(report.valid, report.problems.is_empty());
        for problem in &report.problems {
            assert!(problem.line >= 1 && problem.column >= 1, "{problem}");
        }
    }
}

/// `globofs init ARGS...` must succeed; returns the spec it printed.
fn init(args: &[&str]) -> String {
    let output = run(globofs(["init"]).args(args));
    output.expect_code(0);
    output.stdout
}

fn node_id_of(spec: &str) -> String {
    let value: serde_yaml::Value = serde_yaml::from_str(spec).expect("init prints YAML");
    value["node"]["id"]
        .as_str()
        .expect("node.id is a string")
        .to_string()
}

#[test]
fn init_prints_a_valid_spec_with_a_fresh_node_id_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--volume",
        "/srv/globofs",
        "--peer",
        "ea8192ee-593f-437f-af60-90d213995480=/mnt/somewhereelse/globofs/ea8192ee-593f-437f-af60-90d213995480",
    ];
    let first = init(&args);
    let second = init(&args);
    write_file(dir.path(), "first.yaml", &first);
    write_file(dir.path(), "second.yaml", &second);
    let output = validate_in(dir.path(), &["first.yaml", "second.yaml"]);
    assert_eq!(
        (output.code, output.stdout.as_str()),
        (0, ""),
        "{output:?}\n{first}"
    );

    let (one, two) = (node_id_of(&first), node_id_of(&second));
    assert_ne!(one, two, "two runs of init gave the same node id");
    for id in [&one, &two] {
        let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
        assert_eq!(
            parsed.hyphenated().to_string(),
            *id,
            "lowercase, hyphenated"
        );
        assert_ne!(id.as_str(), "ea8192ee-593f-437f-af60-90d213995480");
    }
    let value: serde_yaml::Value = serde_yaml::from_str(&first).unwrap();
    assert_eq!(value["volume"], "/srv/globofs");
    assert_eq!(
        value["peers"][0]["id"],
        "ea8192ee-593f-437f-af60-90d213995480"
    );
    assert_eq!(value["block_size"], "1MiB", "the default block size");
}

#[test]
fn init_takes_a_node_id_and_block_size() {
    let spec = init(&[
        "--volume",
        "/srv/globofs",
        "--node-id",
        "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53",
        "--block-size",
        "4M",
        "--mount",
        "/mnt/globofs",
    ]);
    assert_eq!(node_id_of(&spec), "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53");
    let value: serde_yaml::Value = serde_yaml::from_str(&spec).unwrap();
    assert_eq!(value["block_size"], "4MiB");
    assert_eq!(value["mount"]["path"], "/mnt/globofs");
    let report = globofs::spec::validate_text("init.yaml", &spec);
    assert!(report.valid, "{:?}", report.problems);
}

#[test]
fn init_refuses_what_would_make_an_invalid_spec() {
    let node = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
    let cases: &[(&[&str], &str)] = &[
        (
            &["--volume", "/srv/globofs", "--node-id", "abc"],
            "\"abc\" is not a UUID",
        ),
        (&["--volume", "srv/globofs"], "is not an absolute path"),
        (
            &["--volume", "/srv/globofs", "--block-size", "3M"],
            "is not a power of two",
        ),
        (
            &["--volume", "/srv/globofs", "--block-size", "lots"],
            "is not a size",
        ),
        (
            &["--volume", "/srv/globofs", "--peer", "no-equals-sign"],
            "ID=PATH",
        ),
        (
            &["--volume", "/srv/globofs", "--peer", "abc=/mnt/x"],
            "\"abc\" is not a UUID",
        ),
        (
            &[
                "--volume",
                "/srv/globofs",
                "--node-id",
                node,
                "--peer",
                &format!("{node}=/mnt/x"),
            ],
            "this node's own id",
        ),
        (
            &[
                "--volume",
                "/srv/globofs",
                "--peer",
                "ea8192ee-593f-437f-af60-90d213995480=/srv",
            ],
            "inside this peer path",
        ),
    ];
    for (args, message) in cases {
        let output = run(globofs(["init"]).args(*args));
        output.expect_code(1);
        assert!(output.stderr.contains(message), "{args:?}: {output:?}");
        assert_eq!(output.stdout, "", "{args:?}: printed a spec anyway");
    }
}
