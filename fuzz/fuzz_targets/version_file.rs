//! Version files (src/store/version.rs) come from peers: any bytes must parse
//! or be refused with an error naming the file, and what parses must write
//! back to text that parses to the same version (and to the same text).
#![no_main]

use std::path::Path;

use globofs::store::Version;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "root/fuzz/versions/1.000000000";

fuzz_target!(|data: &[u8]| {
    let file = Path::new(FILE);
    match Version::parse(file, data) {
        Ok(version) => {
            let text = version.to_text();
            let again = match Version::parse(file, text.as_bytes()) {
                Ok(again) => again,
                Err(err) => panic!("to_text of a parsed version does not parse: {err}\n{text}"),
            };
            assert_eq!(
                again, version,
                "the version changed on a round trip:\n{text}"
            );
            assert_eq!(again.to_text(), text, "to_text is not stable");
            assert!(version.parents.iter().all(|parent| *parent < version.id));
            if version.kind == globofs::store::Kind::File {
                let blocks = Version::block_count(version.size, version.block_size);
                assert_eq!(blocks, version.hashes.len() as u64);
                let total: u64 = (0..version.hashes.len())
                    .map(|index| version.block_len(index) as u64)
                    .sum();
                assert_eq!(
                    total, version.size,
                    "block lengths do not add up to the size"
                );
            } else {
                assert!(version.hashes.is_empty());
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.contains(FILE),
                "the error does not name the file: {message}"
            );
        }
    }
});
