//! Names that collide with the layout or are awkward on disk: `versions`,
//! `hashes`, `log`, spaces, newlines, `%`, non-UTF-8 bytes, 255-byte names (the
//! hashed on-disk form), and deep trees.

#[path = "common/store.rs"]
mod store_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use globofs::layout::{BadPathKind, VPath};
use globofs::store::{Kind, StoreError};
use store_common::*;

const ODD: [&[u8]; 10] = [
    b"versions",
    b"hashes",
    b"log",
    b"pruned",
    b"a name with spaces",
    b"line\nbreak",
    b"50%",
    b"%journal",
    b"bad\xffbyte",
    b"caf\xc3\xa9",
];

#[test]
fn layout_names_are_user_names_too() {
    let vol = Vol::new();
    let store = vol.store();
    for (seed, name) in ODD.iter().enumerate() {
        // As a file at the top, and as a directory holding a file of the same name.
        let file = vp_names(&[name]);
        let nested = vp_names(&[b"dirs", name, name]);
        let bytes = data(BS + seed, seed as u64);
        put(&store, &file, &bytes);
        put(&store, &nested, &bytes);
        assert_eq!(content(&store, &file), bytes, "{file}");
        assert_eq!(content(&store, &nested), bytes, "{nested}");
        let parent = nested.parent().unwrap();
        assert_eq!(store.live(&parent).unwrap().unwrap().kind, Kind::Dir);
    }
    let mut listed: Vec<Vec<u8>> = store
        .list_dir(&VPath::root())
        .unwrap()
        .into_iter()
        .filter(|e| e.version.kind == Kind::File)
        .map(|e| e.name)
        .collect();
    let mut expected: Vec<Vec<u8>> = ODD.iter().map(|n| n.to_vec()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    // On disk: the reserved names and `%` are escaped, so `root/versions` is
    // only ever this directory's own layout.
    let root = vol.dir().join("root");
    for disk in [
        "%76ersions",
        "%68ashes",
        "log",
        "pruned",
        "a name with spaces",
        "line%0Abreak",
        "50%25",
        "%25journal",
        "bad%FFbyte",
        "caf\u{e9}",
    ] {
        assert!(root.join(disk).join("versions").is_dir(), "root/{disk}");
        assert!(
            root.join("dirs")
                .join(disk)
                .join(disk)
                .join("versions")
                .is_dir(),
            "root/dirs/{disk}/{disk}"
        );
    }
    assert!(!root.join("versions").exists());
    assert!(!root.join("hashes").exists());
    let version = store.live(&vp_names(&[b"line\nbreak"])).unwrap().unwrap();
    let file = root
        .join("line%0Abreak/versions")
        .join(version.id.to_string());
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("\npath line%0Abreak\n"), "{text}");
}

#[test]
fn long_names_get_a_hashed_form_and_list_back_right() {
    let vol = Vol::new();
    let store = vol.store();
    // 255 plain bytes: stored as is.
    let plain = vec![b'a'; 255];
    // 255 bytes whose escaped form is longer than 255: stored hashed.
    let mut awkward = b"%\n".repeat(100);
    awkward.extend_from_slice(&[b'z'; 55]);
    assert_eq!(awkward.len(), 255);
    // 255 bytes of two-byte UTF-8 characters plus one: no escaping needed.
    let mut accents = "\u{e9}".repeat(127).into_bytes();
    accents.push(b'e');
    for (seed, name) in [&plain, &awkward, &accents].into_iter().enumerate() {
        let path = vp_names(&[b"long", name]);
        let bytes = data(BS + 1, seed as u64);
        put(&store, &path, &bytes);
        assert_eq!(content(&vol.store(), &path), bytes);
        // And as a directory in the middle of a path.
        put(&store, &vp_names(&[b"long-dirs", name, b"inner"]), &bytes);
    }
    let root = vol.dir().join("root/long");
    assert!(root.join(OsStr::from_bytes(&plain)).is_dir());
    let hashed = format!("%~{}", globofs::ids::BlockHash::of(&awkward));
    assert!(root.join(&hashed).join("versions").is_dir(), "{hashed}");
    for item in fs::read_dir(&root).unwrap() {
        assert!(item.unwrap().file_name().len() <= 255);
    }
    let mut names: Vec<Vec<u8>> = store
        .list_dir(&vp("/long"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    let mut expected = vec![plain.clone(), awkward.clone(), accents.clone()];
    expected.sort();
    assert_eq!(names, expected);
    let walked: Vec<VPath> = store
        .walk(&vp("/long-dirs"))
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(walked.contains(&vp_names(&[b"long-dirs", &awkward, b"inner"])));

    // A rename to a long name and back keeps the content.
    let from = vp_names(&[b"long", &plain]);
    let to = vp_names(&[b"long", b"short"]);
    store.rename(&from, &to, false).unwrap();
    assert_eq!(content(&store, &to), data(BS + 1, 0));

    // 256 bytes is too long: a clean refusal.
    let too_long = vec![b'b'; 256];
    assert!(VPath::root().join(&too_long).is_err());
    let err = VPath::parse(OsStr::from_bytes(&too_long)).unwrap_err();
    assert!(err.why.contains("255"), "{}", err.why);
    assert_eq!(err.kind, BadPathKind::TooLong);
    assert_eq!(
        globofs::vfs::error::store_errno(&StoreError::from(err)),
        libc::ENAMETOOLONG
    );
}

#[test]
fn deep_trees_work() {
    let vol = Vol::new();
    let store = vol.store();
    let mut names: Vec<Vec<u8>> = (0..50).map(|i| format!("d{i}").into_bytes()).collect();
    names[10] = b"versions".to_vec();
    names[20] = b"hashes".to_vec();
    let mut path = VPath::root();
    for name in &names {
        path = path.join(name).unwrap();
    }
    let file = path.join(b"leaf").unwrap();
    let bytes = data(3 * BS, 50);
    put(&store, &file, &bytes);
    assert_eq!(content(&vol.store(), &file), bytes);
    let walked = store.walk(&VPath::root()).unwrap();
    assert_eq!(walked.len(), 51);
    assert_eq!(walked.last().unwrap().0, file);
    // Every level is a directory version of its own.
    let mut dir = VPath::root();
    for name in &names {
        dir = dir.join(name).unwrap();
        assert_eq!(store.live(&dir).unwrap().unwrap().kind, Kind::Dir, "{dir}");
    }
    // Removing the whole tree leaves tombstones at every level.
    assert_eq!(store.remove_tree(&vp("/d0")).unwrap(), 51);
    assert!(store.list_dir(&VPath::root()).unwrap().is_empty());
    assert_eq!(store.current(&file).unwrap().unwrap().kind, Kind::Tombstone);
}
