//! The same operations applied to the mount and to a plain directory on the real
//! disk must leave byte-identical trees: files of sizes around block boundaries,
//! seeded random pwrites on open handles, truncation up and down, rename over an
//! existing file, and unlink while open (read through the open handle after).

#[path = "common/mount.rs"]
mod mount;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mount::{BLOCK, Mounted, Rng, files_below};

const SIZES: [usize; 6] = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 10 * BLOCK + 7];

/// Applies each step to both roots.
struct Both {
    roots: [PathBuf; 2],
}

impl Both {
    fn each(&self, mut step: impl FnMut(&Path)) {
        for root in &self.roots {
            step(root);
        }
    }

    fn open(&self, name: &str) -> [File; 2] {
        self.roots.clone().map(|root| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(root.join(name))
                .unwrap_or_else(|err| panic!("{name}: {err}"))
        })
    }
}

/// Contents, sizes and modes of every file below `root`, by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, (u64, u32, Vec<u8>)> {
    files_below(root)
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path).unwrap();
            (rel, (meta.len(), meta.permissions().mode() & 0o7777, data))
        })
        .collect()
}

fn assert_same(both: &Both) {
    let [mounted, local] = [snapshot(&both.roots[0]), snapshot(&both.roots[1])];
    assert_eq!(
        mounted.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>(),
        "the same names"
    );
    for (name, (size, mode, data)) in &local {
        let (m_size, m_mode, m_data) = &mounted[name];
        assert_eq!(m_size, size, "{name}: size");
        assert_eq!(m_mode, mode, "{name}: mode");
        assert!(m_data == data, "{name}: content differs");
    }
}

#[test]
fn the_mount_matches_a_plain_directory() {
    let m = Mounted::new();
    let local = tempfile::tempdir_in(m.dir.path()).unwrap();
    let both = Both {
        roots: [m.mnt.clone(), local.path().to_path_buf()],
    };
    let mut rng = Rng::new(2024);

    // Files of every size, with a few modes.
    std::fs::create_dir(m.path("sub")).unwrap();
    std::fs::create_dir(local.path().join("sub")).unwrap();
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = rng.bytes(size);
        let name = if i % 2 == 0 {
            format!("f{size}")
        } else {
            format!("sub/f{size}")
        };
        let mode = [0o644, 0o600, 0o755][i % 3];
        both.each(|root| {
            std::fs::write(root.join(&name), &data).unwrap();
            std::fs::set_permissions(root.join(&name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        });
    }
    assert_same(&both);

    // Random-offset writes on open handles, several per file (some past the end).
    for (i, size) in SIZES.into_iter().enumerate() {
        let name = if i % 2 == 0 {
            format!("f{size}")
        } else {
            format!("sub/f{size}")
        };
        let files = both.open(&name);
        for _ in 0..6 {
            let span = (size + 2 * BLOCK) as u64;
            let offset = rng.below(span);
            let len = 1 + rng.below(2 * BLOCK as u64) as usize;
            let data = rng.bytes(len);
            for f in &files {
                f.write_all_at(&data, offset).unwrap();
            }
        }
        // The writer's own view matches before close.
        let len = files[1].metadata().unwrap().len();
        assert_eq!(files[0].metadata().unwrap().len(), len, "{name}");
        let mut views = [vec![0u8; len as usize], vec![0u8; len as usize]];
        for (f, view) in files.iter().zip(views.iter_mut()) {
            f.read_exact_at(view, 0).unwrap();
        }
        assert!(views[0] == views[1], "{name}: the writer's view differs");
    }
    assert_same(&both);

    // Truncation down and up, by handle and by path.
    for (name, sizes) in [
        ("f0", [5000u64, 3]),
        (
            &format!("sub/f{}", 10 * BLOCK + 7) as &str,
            [BLOCK as u64 + 3, 9 * BLOCK as u64],
        ),
        (
            &format!("f{}", BLOCK - 1) as &str,
            [0, BLOCK as u64 * 2 + 1],
        ),
    ] {
        let files = both.open(name);
        for f in &files {
            f.set_len(sizes[0]).unwrap();
        }
        drop(files);
        both.each(|root| {
            OpenOptions::new()
                .write(true)
                .open(root.join(name))
                .unwrap()
                .set_len(sizes[1])
                .unwrap()
        });
    }
    assert_same(&both);

    // Rename over an existing file.
    both.each(|root| std::fs::rename(root.join("sub/f1"), root.join("f1")).unwrap());
    both.each(|root| std::fs::rename(root.join("f1"), root.join(format!("sub/f{BLOCK}"))).unwrap());
    assert_same(&both);

    // Unlink while open: the open handle still reads the old content.
    let name = format!("f{}", BLOCK + 1);
    let expect = std::fs::read(local.path().join(&name)).unwrap();
    let readers = both
        .roots
        .clone()
        .map(|root| File::open(root.join(&name)).unwrap());
    both.each(|root| std::fs::remove_file(root.join(&name)).unwrap());
    for f in &readers {
        let mut got = vec![0u8; expect.len()];
        f.read_exact_at(&mut got, 0).unwrap();
        assert!(got == expect, "reading an unlinked file through its handle");
    }
    drop(readers);
    assert_same(&both);

    // A new file written in pieces and appended; a large file overwritten (O_TRUNC).
    both.each(|root| {
        let mut f = File::create(root.join("new")).unwrap();
        f.write_all(&[7u8; 3 * BLOCK + 5]).unwrap();
        f.write_all_at(b"middle", BLOCK as u64 + 2).unwrap();
        drop(f);
        let mut f = OpenOptions::new()
            .append(true)
            .open(root.join("new"))
            .unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        std::fs::write(root.join(format!("sub/f{}", 10 * BLOCK + 7)), b"replaced").unwrap();
    });
    assert_same(&both);
}
