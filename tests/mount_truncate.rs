//! truncate and ftruncate over a real mount: down, up (zeros), through an open
//! handle (also one the kernel writes in passthrough), O_TRUNC, and the errors.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{BLOCK, Mounted, Rng, cpath, cvt, errno, store_get};

fn truncate_path(path: &std::path::Path, len: i64) -> std::io::Result<libc::c_int> {
    let c = cpath(path);
    cvt(unsafe { libc::truncate(c.as_ptr(), len) })
}

#[test]
fn truncate_by_path_down_and_up() {
    let m = Mounted::new();
    let data = Rng::new(1).bytes(3 * BLOCK + 50);
    std::fs::write(m.path("f"), &data).unwrap();
    truncate_path(&m.path("f"), (BLOCK + 10) as i64).unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), &data[..BLOCK + 10]);
    truncate_path(&m.path("f"), (2 * BLOCK) as i64).unwrap();
    let mut expect = data[..BLOCK + 10].to_vec();
    expect.resize(2 * BLOCK, 0);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), expect);
    assert_eq!(store_get(&m, "/f"), expect);
    truncate_path(&m.path("f"), 0).unwrap();
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 0);
}

#[test]
fn set_len_on_an_open_handle_down_then_up_reads_zeros() {
    let m = Mounted::new();
    let data = Rng::new(2).bytes(2 * BLOCK + 7);
    std::fs::write(m.path("f"), &data).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(100).unwrap();
    f.set_len(BLOCK as u64 + 1).unwrap();
    let mut expect = data[..100].to_vec();
    expect.resize(BLOCK + 1, 0);
    let mut got = vec![0u8; BLOCK + 1];
    f.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, expect);
    drop(f);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), expect);
}

#[test]
fn truncating_a_new_file_before_close_shortens_it() {
    let m = Mounted::new();
    // A new file: its writer may be in FUSE passthrough (the kernel writes the
    // cache file directly), where the cache file's length is the size.
    let mut f = std::fs::File::create(m.path("new")).unwrap();
    f.write_all(&[9u8; 10_000]).unwrap();
    f.set_len(100).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100);
    drop(f);
    assert_eq!(std::fs::read(m.path("new")).unwrap(), vec![9u8; 100]);
    assert_eq!(store_get(&m, "/new"), vec![9u8; 100]);
    // The same through a second handle on the file while the first is open.
    let mut a = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("two"))
        .unwrap();
    a.write_all(&[5u8; 30_000]).unwrap();
    let b = OpenOptions::new().write(true).open(m.path("two")).unwrap();
    b.set_len(1).unwrap();
    assert_eq!(std::fs::metadata(m.path("two")).unwrap().len(), 1);
    drop(b);
    drop(a);
    assert_eq!(std::fs::read(m.path("two")).unwrap(), vec![5u8]);
}

#[test]
fn o_trunc_empties_an_existing_file() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), vec![1u8; 3 * BLOCK]).unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("f"))
        .unwrap();
    f.write_all(b"short").unwrap();
    drop(f);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"short");
}

#[test]
fn truncate_errors() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("file"), b"x").unwrap();
    assert_eq!(errno(truncate_path(&m.path("dir"), 0)), libc::EISDIR);
    assert_eq!(errno(truncate_path(&m.path("missing"), 0)), libc::ENOENT);
    assert_eq!(errno(truncate_path(&m.path("file/x"), 0)), libc::ENOTDIR);
    assert_eq!(errno(truncate_path(&m.path("file"), -1)), libc::EINVAL);
    let read_only = std::fs::File::open(m.path("file")).unwrap();
    assert_eq!(errno(read_only.set_len(0)), libc::EINVAL);
}
