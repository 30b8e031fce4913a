//! Volume specs (src/spec/) are what a user writes: any bytes must give a
//! report, never a panic. A report is valid exactly when it lists no problem,
//! every problem names the file and a line and column inside the text, and a
//! valid spec loads and resolves to the node and peers it declares.
#![no_main]

use globofs::ids::NodeId;
use globofs::spec::{Spec, validate_file, validate_text};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let report = match std::str::from_utf8(data) {
        Ok(text) => validate_text(NAME, text),
        Err(_) => {
            // Bytes that are not UTF-8 go through the file reader.
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join(NAME);
            std::fs::write(&path, data).expect("spec file");
            let report = validate_file(&path);
            assert!(!report.valid, "bytes that are not UTF-8 were accepted");
            return;
        }
    };
    let text = std::str::from_utf8(data).unwrap_or_default();
    // Lines as YAML counts them: a lone CR ends a line too.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() + 1;
    assert_eq!(
        report.valid,
        report.problems.is_empty(),
        "{:?}",
        report.problems
    );
    for problem in &report.problems {
        assert_eq!(problem.file, NAME);
        assert!(
            problem.line >= 1 && problem.line <= lines,
            "{problem} of {lines} lines"
        );
        assert!(problem.column >= 1, "{problem}");
        assert!(
            !problem.key.is_empty() && !problem.message.is_empty(),
            "{problem:?}"
        );
    }
    if report.valid {
        let raw = report
            .spec
            .clone()
            .expect("a valid report carries its spec");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(NAME);
        std::fs::write(&path, data).expect("spec file");
        let spec = match Spec::load(&path) {
            Ok(spec) => spec,
            Err(err) => panic!("validate accepted a spec that does not load: {err}"),
        };
        assert_eq!(spec.node.to_string(), raw.node.id, "the node id changed");
        assert_ne!(spec.node, NodeId::NIL);
        assert_eq!(spec.peers.len(), raw.peers.len());
        for (peer, raw_peer) in spec.peers.iter().zip(&raw.peers) {
            assert_eq!(peer.id.to_string(), raw_peer.id);
            assert_ne!(peer.id, spec.node, "a peer is the node itself");
        }
        assert!(spec.block_size.is_power_of_two());
    }
});
