//! `globofs schema` and the committed copy `schema/globofs-volume.schema.json`:
//! the copy must be what the binary prints (run with `UPDATE_SCHEMA=1` to rewrite
//! it), and the schema must say what the validator enforces.

mod common;

use common::{globofs_run, project_root};

const REGENERATE: &str = "cargo run -q -- schema > schema/globofs-volume.schema.json";

fn committed_path() -> std::path::PathBuf {
    project_root()
        .join("schema")
        .join("globofs-volume.schema.json")
}

fn printed_schema() -> String {
    let output = globofs_run(["schema"]);
    output.expect_code(0);
    output.stdout
}

#[test]
fn committed_schema_is_up_to_date() {
    let printed = printed_schema();
    let path = committed_path();
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|value| value == "1") {
        std::fs::write(&path, &printed)
            .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != printed {
        let first_difference = committed
            .lines()
            .zip(printed.lines())
            .position(|(old, new)| old != new)
            .map_or_else(
                || "one is a prefix of the other".to_string(),
                |index| format!("first difference at line {}", index + 1),
            );
        panic!(
            "{} is stale ({first_difference}).\nRegenerate it with:\n\n    {REGENERATE}\n\n(or run this test with UPDATE_SCHEMA=1)",
            path.display()
        );
    }
}

#[test]
fn schema_is_json_schema_that_describes_the_spec() {
    let schema: serde_json::Value = serde_json::from_str(&printed_schema()).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys must be an error"
    );
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|key| key.as_str())
        .collect();
    assert!(required.contains(&"volume") && required.contains(&"node"));
    let properties = schema["properties"].as_object().expect("properties");
    for key in [
        "volume",
        "node",
        "block_size",
        "peers",
        "mount",
        "sync",
        "compression",
        "retention",
        "ignore",
        "cache",
        "copies",
    ] {
        let property = &properties[key];
        assert!(property.is_object(), "no `{key}` in the schema");
        assert!(
            property["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "`{key}` has no description (editors show it)"
        );
    }
    // Nested objects deny unknown keys too.
    let defs = schema["$defs"].as_object().expect("$defs");
    for (name, def) in defs {
        if def["type"] == "object" {
            assert_eq!(
                def["additionalProperties"], false,
                "{name} must deny unknown keys"
            );
        }
    }
}

#[test]
fn schema_output_is_stable_and_ends_with_a_newline() {
    let first = printed_schema();
    assert!(first.ends_with("}\n"));
    assert_eq!(first, printed_schema());
}

/// A YAML spec as JSON, the way an editor's YAML language server sees it.
fn yaml_to_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn committed_schema_accepts_the_valid_specs_and_rejects_bad_shapes() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a usable JSON Schema");
    let corpus = project_root().join("tests").join("spec_corpus");
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus.join("valid")).unwrap() {
        let path = entry.unwrap().path();
        let instance = yaml_to_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 5);
    // Shapes the schema alone must refuse (the rules beyond it are validate's).
    for name in [
        "08-missing-volume.yaml",
        "12-unknown-top-key.yaml",
        "14-unknown-peer-key.yaml",
        "23-node-id-number.yaml",
        "26-major-too-big.yaml",
        "33-block-size-bad-unit.yaml",
        "37-peers-not-a-list.yaml",
        "49-compression-unknown.yaml",
        "65-mount-is-a-string.yaml",
    ] {
        let instance = yaml_to_json(&corpus.join(name));
        assert!(!validator.is_valid(&instance), "{name} passes the schema");
    }
}
