//! Name escaping (src/layout.rs): every name escapes to text that unescapes to
//! it again; the disk name of an acceptable name is a single directory entry of
//! at most 255 bytes that reads back as that name (or, hashed, as none); and
//! escaped paths a peer writes parse only in their canonical form.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globofs::layout::{
    NAME_MAX, RESERVED, VPath, check_name, disk_name, escape_name, is_hashed_name, name_from_disk,
    unescape_name,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any bytes as one name.
    let escaped = escape_name(data);
    assert_eq!(unescape_name(&escaped).as_deref(), Ok(data), "{escaped:?}");
    assert!(!escaped.contains('/') || data.contains(&b'/'));
    assert!(
        !escaped.bytes().any(|b| b < 0x20 || b == 0x7f),
        "{escaped:?}"
    );
    if check_name(data).is_ok() {
        let disk = disk_name(data);
        let bytes = disk.as_bytes();
        assert!(bytes.len() <= NAME_MAX, "{} bytes: {disk:?}", bytes.len());
        assert!(!bytes.is_empty() && bytes != b"." && bytes != b"..");
        assert!(!bytes.contains(&b'/') && !bytes.contains(&0), "{disk:?}");
        assert!(!RESERVED.iter().any(|r| r.as_bytes() == bytes), "{disk:?}");
        if is_hashed_name(&disk) {
            assert!(escaped.len() > NAME_MAX);
            assert_eq!(name_from_disk(&disk), None);
        } else {
            assert_eq!(name_from_disk(&disk).as_deref(), Some(data), "{disk:?}");
        }
    }

    // Any bytes as a directory entry: a name read back escapes to that entry.
    if let Some(name) = name_from_disk(OsStr::from_bytes(data)) {
        assert_eq!(escape_name(&name).as_bytes(), data);
        assert_eq!(disk_name(&name).as_bytes(), data);
    }

    // Any text as an escaped path (version headers, journal lines).
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(path) = VPath::from_escaped(text) {
            assert_eq!(path.escaped(), text, "a non-canonical path was accepted");
            for name in path.names() {
                assert!(check_name(name).is_ok());
            }
        }
        if let Ok(name) = unescape_name(text) {
            assert_eq!(unescape_name(&escape_name(&name)), Ok(name));
        }
    }

    // Any bytes as a user path: it escapes and parses back to itself.
    if let Ok(path) = VPath::parse(OsStr::from_bytes(data)) {
        let text = path.escaped();
        assert_eq!(VPath::from_escaped(&text), Ok(path.clone()), "{text:?}");
        assert_eq!(VPath::parse(&path.to_os_string()), Ok(path));
    }
});
