//! Writing and reading files through the store: sizes around the block size,
//! byte-exact round trips, random access, dedup, compression, kinds and attributes.

#[path = "common/store.rs"]
mod store_common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use globofs::ids::BlockHash;
use globofs::store::{Kind, Mtime, StoreError};
use store_common::*;

#[test]
fn sizes_around_the_block_size_round_trip_byte_exact() {
    let vol = Vol::new();
    let store = vol.store();
    let sizes = [0, 1, BS - 1, BS, BS + 1, 10 * BS + 7];
    for (seed, size) in sizes.into_iter().enumerate() {
        let bytes = data(size, seed as u64 + 1);
        let path = vp(&format!("/size-{size}"));
        let version = put(&store, &path, &bytes);
        assert_eq!(version.kind, Kind::File);
        assert_eq!(version.size, size as u64);
        assert_eq!(version.block_size, BS as u32);
        assert_eq!(version.hashes.len(), size.div_ceil(BS), "size {size}");
        for (index, chunk) in bytes.chunks(BS).enumerate() {
            assert_eq!(version.hashes[index], BlockHash::of(chunk), "block {index}");
            let block = block_path(&vol, &version.hashes[index]);
            assert_eq!(fs::read(&block).unwrap(), chunk, "{}", block.display());
        }
        // Read back from a fresh handle, by the current version.
        let again = vol.store();
        let current = again.live(&path).unwrap().expect("current version");
        assert_eq!(current, version);
        assert_eq!(read_all(&again, &current), bytes, "size {size}");
    }
    // An empty file is a file of size 0, not a missing one.
    let empty = store.live(&vp("/size-0")).unwrap().unwrap();
    assert_eq!((empty.kind, empty.size), (Kind::File, 0));
    assert!(empty.hashes.is_empty());
}

#[test]
fn read_at_touches_only_the_blocks_it_needs() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(10 * BS + 7, 42);
    let path = vp("/big");
    let version = put(&store, &path, &bytes);

    // A range inside block 7, one crossing blocks 7-8, and the short tail.
    for (offset, len) in [(7 * BS + 100, 50), (7 * BS + 4000, 5000), (10 * BS, 100)] {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = store
                .read_at(&version, (offset + done) as u64, &mut buf[done..])
                .unwrap();
            if n == 0 {
                break;
            }
            done += n;
        }
        let end = (offset + len).min(bytes.len());
        assert_eq!(&buf[..done], &bytes[offset..end], "offset {offset}");
    }
    let mut buf = [0u8; 10];
    assert_eq!(
        store
            .read_at(&version, bytes.len() as u64, &mut buf)
            .unwrap(),
        0
    );

    // Reading block 7 does not need block 0.
    let first = block_path(&vol, &version.hashes[0]);
    fs::remove_file(&first).unwrap();
    let mut buf = vec![0u8; BS];
    let n = store
        .read_at(&version, 7 * BS as u64, &mut buf)
        .expect("block 7 is still there");
    assert_eq!(&buf[..n], &bytes[7 * BS..7 * BS + n]);
    // Block 0 itself fails with an error naming the path and the hash.
    let err = store.read_at(&version, 0, &mut buf).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("/big") && message.contains(&version.hashes[0].to_string()),
        "{message}"
    );
}

#[test]
fn the_same_content_at_another_path_adds_no_block() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(5 * BS + 3, 7);
    let first = put(&store, &vp("/a/one"), &bytes);
    let blocks_before = store_blocks(&vol);
    assert_eq!(blocks_before.len(), 6);
    let links_before: Vec<u64> = blocks_before.iter().map(|p| nlink(p)).collect();

    let second = put(&store, &vp("/b/two"), &bytes);
    assert_eq!(first.hashes, second.hashes);
    assert_eq!(store_blocks(&vol), blocks_before, "no new block file");
    for (block, before) in blocks_before.iter().zip(links_before) {
        assert_eq!(nlink(block), before + 1, "{}", block.display());
    }
    // One link per block under each path's hashes/, the same inode as the block.
    for path in ["/a/one", "/b/two"] {
        let dir = store.path_dir(&vp(path)).join("hashes");
        let links = block_files(&dir);
        assert_eq!(links.len(), 6, "{path}");
        for hash in &first.hashes {
            let link = dir.join(hash.relative_path());
            let block = block_path(&vol, hash);
            assert_eq!(
                fs::metadata(&link).unwrap().ino(),
                fs::metadata(&block).unwrap().ino()
            );
        }
    }
    assert_eq!(read_all(&store, &second), bytes);
}

#[test]
fn a_block_of_the_wrong_size_is_not_trusted_for_dedup() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(2 * BS, 9);
    let version = put(&store, &vp("/f"), &bytes);
    let block = block_path(&vol, &version.hashes[1]);
    // A torn block (say, a crash on a filesystem that lost its tail).
    fs::remove_file(&block).unwrap();
    fs::write(&block, &bytes[BS..BS + 100]).unwrap();
    // Reading it is an error naming the hash, never short or wrong bytes.
    let err = store.live(&vp("/f")).unwrap().map(|v| {
        let mut out = Vec::new();
        store.copy_to(&v, &mut out).unwrap_err()
    });
    let message = err.expect("file exists").to_string();
    assert!(
        message.contains(&version.hashes[1].to_string()),
        "{message}"
    );
    // Writing the same content again repairs it instead of deduplicating.
    put(&store, &vp("/g"), &bytes);
    assert_eq!(fs::metadata(&block).unwrap().len(), BS as u64);
    assert_eq!(content(&store, &vp("/f")), bytes);
}

#[test]
fn zstd_blocks_read_back_identical_and_a_store_reads_both_forms() {
    let vol = Vol::with("compression: zstd\n", false);
    let store = vol.store();
    // Compressible content, and random content.
    let text: Vec<u8> = b"globofs "
        .iter()
        .cycle()
        .take(3 * BS + 5)
        .copied()
        .collect();
    let random = data(2 * BS + 1, 3);
    let packed = put(&store, &vp("/text"), &text);
    put(&store, &vp("/random"), &random);
    let blocks = store_blocks(&vol);
    assert!(!blocks.is_empty());
    for block in &blocks {
        assert_eq!(
            block.extension().and_then(|e| e.to_str()),
            Some("zst"),
            "{}",
            block.display()
        );
    }
    // The hash is of the uncompressed bytes; the file is a zstd frame of them.
    let zst = vol.dir().join(format!(
        "hashes/{}.zst",
        packed.hashes[0].relative_path().display()
    ));
    let raw = zstd::decode_all(fs::File::open(&zst).unwrap()).unwrap();
    assert_eq!(raw, &text[..BS]);
    assert!(fs::metadata(&zst).unwrap().len() < BS as u64 / 4);
    // Per-path links keep the suffix.
    let link = store.path_dir(&vp("/text")).join("hashes").join(format!(
        "{}.zst",
        packed.hashes[0].relative_path().display()
    ));
    assert!(link.exists(), "{}", link.display());
    assert_eq!(content(&store, &vp("/text")), text);
    assert_eq!(content(&store, &vp("/random")), random);
    let mut buf = vec![0u8; 10];
    let n = store.read_at(&packed, BS as u64 + 3, &mut buf).unwrap();
    assert_eq!(&buf[..n], &text[BS + 3..BS + 3 + n]);

    // The same store with compression switched off writes raw blocks and still
    // reads the compressed ones.
    let mut plain = vol.store();
    plain.config_mut().compression = globofs::spec::Compression::None;
    let other = data(BS, 77);
    let version = put(&plain, &vp("/plain"), &other);
    assert!(block_path(&vol, &version.hashes[0]).is_file());
    assert_eq!(content(&plain, &vp("/text")), text);
    assert_eq!(content(&plain, &vp("/plain")), other);
    // Compressed content written again is deduplicated against the .zst block.
    let before = store_blocks(&vol).len();
    put(&plain, &vp("/text-again"), &text);
    assert_eq!(store_blocks(&vol).len(), before);
    plain.config_mut().verify_reads = true;
    assert_eq!(content(&plain, &vp("/text-again")), text);
}

#[test]
fn modes_mtimes_symlinks_and_empty_dirs_are_kept() {
    let vol = Vol::new();
    let store = vol.store();
    let mtime = Mtime {
        secs: 1_348_096_782,
        nanos: 553_456_124,
    };
    let version = put_attrs(&store, &vp("/script.sh"), b"#!/bin/sh\n", 0o4755, mtime);
    let again = vol.store().live(&vp("/script.sh")).unwrap().unwrap();
    assert_eq!((again.mode, again.mtime), (0o4755, mtime));
    assert_eq!(again, version);
    let old = Mtime {
        secs: -86_400,
        nanos: 5,
    };
    put_attrs(&store, &vp("/old"), b"x", 0o600, old);
    assert_eq!(store.live(&vp("/old")).unwrap().unwrap().mtime, old);
    // Changing attributes makes a version naming the same blocks.
    let changed = store
        .set_attrs(&vp("/script.sh"), Some(0o700), None)
        .unwrap();
    assert_eq!(changed.hashes, version.hashes);
    assert_eq!(changed.parents, vec![version.id]);
    assert_eq!((changed.mode, changed.mtime), (0o700, mtime));

    store.mkdir(&vp("/empty"), 0o750).unwrap();
    let dir = store.live(&vp("/empty")).unwrap().unwrap();
    assert_eq!((dir.kind, dir.mode), (Kind::Dir, 0o750));
    assert!(store.list_dir(&vp("/empty")).unwrap().is_empty());
    let names: Vec<Vec<u8>> = store
        .list_dir(&vp("/"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"empty".to_vec()));

    store.symlink(&vp("/link"), b"../some where/\xff").unwrap();
    let link = vol.store().live(&vp("/link")).unwrap().unwrap();
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(link.target.as_deref(), Some(&b"../some where/\xff"[..]));
    assert!(link.hashes.is_empty());
    let mut buf = [0u8; 4];
    assert_eq!(store.read_at(&link, 0, &mut buf).unwrap(), 0);

    // Kind clashes are refused cleanly.
    assert!(matches!(
        store.mkdir(&vp("/old"), 0o755),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.write_file(&vp("/empty"), &mut &b"x"[..], Default::default(), false),
        Err(StoreError::IsADirectory(_))
    ));
    assert!(matches!(
        store.write_file(&vp("/old/child"), &mut &b"x"[..], Default::default(), false),
        Err(StoreError::NotADirectory(_))
    ));
}

#[test]
fn a_link_count_at_the_limit_falls_back_to_a_copy() {
    let vol = Vol::new();
    let store = vol.store();
    let bytes = data(100, 5);
    let version = put(&store, &vp("/first"), &bytes);
    let block = block_path(&vol, &version.hashes[0]);
    let spare = vol.scratch("links");
    let mut made = 0u64;
    let limit = loop {
        match fs::hard_link(&block, spare.join(made.to_string())) {
            Ok(()) => made += 1,
            Err(err) if err.raw_os_error() == Some(libc::EMLINK) => break Some(made),
            Err(err) => panic!("hard link {made}: {err}"),
        }
        if made >= 70_000 {
            break None;
        }
    };
    let Some(_) = limit else {
        println!("skipped: this filesystem allows more than 70,000 links per file");
        return;
    };
    let second = put(&store, &vp("/second"), &bytes);
    assert_eq!(second.hashes, version.hashes);
    let link = store
        .path_dir(&vp("/second"))
        .join("hashes")
        .join(version.hashes[0].relative_path());
    let meta = fs::metadata(&link).expect("the path has its own copy");
    assert_ne!(meta.ino(), fs::metadata(&block).unwrap().ino());
    assert_eq!(fs::read(&link).unwrap(), bytes);
    assert_eq!(content(&store, &vp("/second")), bytes);
    assert_eq!(content(&store, &vp("/first")), bytes);
    // gc still keeps the block and the copy (both named by kept versions).
    fs::remove_dir_all(&spare).unwrap();
    store.gc().unwrap();
    assert!(block.exists() && link.exists());
    assert_eq!(content(&store, &vp("/second")), bytes);
}

#[test]
fn a_file_of_many_blocks_is_stored_and_linked_whole_by_the_parallel_writers() {
    // 1,000 blocks: written by the hashing threads, placed and linked by a
    // thread per share of `hashes/aa/` (past 64 of them). Every tenth block
    // repeats an earlier one, so two threads may write one block at once.
    let vol = Vol::new();
    let store = vol.store();
    let mut bytes = Vec::new();
    for block in 0..1000u64 {
        let seed = match block % 10 {
            9 => block / 2 + 1,
            _ => block + 1,
        };
        bytes.extend_from_slice(&data(BS, seed));
    }
    let path = vp("/many");
    let version = put(&store, &path, &bytes);
    let unique: std::collections::HashSet<_> = version.hashes.iter().copied().collect();
    assert!(
        unique.len() < 1000 && unique.len() > 850,
        "{}",
        unique.len()
    );
    assert_eq!(
        store_blocks(&vol).len(),
        unique.len(),
        "one block file per distinct block"
    );
    let links = store.path_dir(&path).join("hashes");
    assert_eq!(
        block_files(&links).len(),
        unique.len(),
        "one link per distinct block"
    );
    for hash in &unique {
        let block = block_path(&vol, hash);
        assert_eq!(nlink(&block), 2, "{}", block.display());
        assert_eq!(
            fs::metadata(links.join(hash.relative_path()))
                .unwrap()
                .ino(),
            fs::metadata(&block).unwrap().ino()
        );
    }
    // No temp file of a block written twice is left behind.
    let tmp: Vec<_> = fs::read_dir(vol.dir().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(read_all(&vol.store(), &version), bytes);
    // The same bytes again: nothing new is written.
    let again = put(&store, &vp("/again"), &bytes);
    assert_eq!(again.hashes, version.hashes);
    assert_eq!(store_blocks(&vol).len(), unique.len());
}
