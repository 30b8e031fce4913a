//! Small files a peer writes into our view: its store's `format` file
//! (src/store/meta.rs) and the ack of how far it applied our journal (a
//! journal position, src/store/journal.rs). Both parse or are refused with an
//! error naming the file, and what parses writes back to the same value.
#![no_main]

use std::path::Path;

use globofs::store::StoreMeta;
use globofs::store::journal::Position;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "peer/format";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match StoreMeta::parse(Path::new(FILE), text) {
        Ok(meta) => {
            let again = StoreMeta::parse(Path::new(FILE), &meta.to_text());
            assert_eq!(again.as_ref().ok(), Some(&meta), "{:?}", meta.to_text());
        }
        Err(err) => assert!(err.to_string().contains(FILE), "{err}"),
    }
    if let Some(position) = Position::parse(text) {
        let written = position.to_text();
        assert_eq!(
            Position::parse(&written),
            Some(position.clone()),
            "{written:?}"
        );
        assert!(!position.nonce.chars().any(char::is_whitespace));
    }
});
