//! Several handles on one file of one mount: writers share the file's writes
//! (appends interleave, closes never undo another handle's writes, a truncate
//! by path is not reverted), and every handle reads what was written, as on a
//! local file system. Each case was a bug found by black-box testing.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::io::Write;
use std::os::unix::fs::FileExt;

use mount::{Mounted, store_get};

fn appender(m: &Mounted, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.path(name))
        .unwrap()
}

#[test]
fn two_appenders_on_an_existing_file_keep_every_line() {
    let m = Mounted::new();
    std::fs::write(m.path("log"), b"start\n").unwrap();
    // A daemon keeps its log open; a cron job appends a line and closes.
    let mut daemon = appender(&m, "log");
    daemon.write_all(b"daemon-1\n").unwrap();
    let mut cron = appender(&m, "log");
    cron.write_all(b"cron\n").unwrap();
    drop(cron);
    daemon.write_all(b"daemon-2\n").unwrap();
    drop(daemon);
    let want = b"start\ndaemon-1\ncron\ndaemon-2\n";
    assert_eq!(std::fs::read(m.path("log")).unwrap(), want);
    assert_eq!(store_get(&m, "/log"), want);
}

#[test]
fn closing_one_writer_never_undoes_another_writers_bytes() {
    let m = Mounted::new();
    let old = vec![b'.'; 3 * 4096];
    std::fs::write(m.path("f"), &old).unwrap();
    let open_rw = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.path("f"))
            .unwrap()
    };
    let (a, b) = (open_rw(), open_rw());
    a.write_all_at(b"AAAAAAAAAA", 0).unwrap();
    b.write_all_at(b"BBBBBBBBBB", 8192).unwrap();
    // Each sees the other's bytes at once.
    let mut seen = [0u8; 10];
    a.read_exact_at(&mut seen, 8192).unwrap();
    assert_eq!(&seen, b"BBBBBBBBBB");
    drop(a);
    drop(b);
    let mut want = old;
    want[..10].copy_from_slice(b"AAAAAAAAAA");
    want[8192..8202].copy_from_slice(b"BBBBBBBBBB");
    assert!(std::fs::read(m.path("f")).unwrap() == want);
    assert!(store_get(&m, "/f") == want);
}

#[test]
fn a_truncate_by_path_is_not_undone_by_a_handle_opened_before_it() {
    let m = Mounted::new();
    // logrotate's copytruncate: the daemon's log is emptied under it.
    std::fs::write(m.path("app.log"), b"old-line\n").unwrap();
    let mut daemon = appender(&m, "app.log");
    daemon.write_all(b"daemon-1\n").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("app.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    daemon.write_all(b"daemon-2\n").unwrap();
    drop(daemon);
    assert_eq!(std::fs::read(m.path("app.log")).unwrap(), b"daemon-2\n");

    // truncate(2) by path while a read-write handle is open.
    std::fs::write(m.path("f"), vec![b'q'; 9000]).unwrap();
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    let c = mount::cpath(&m.path("f"));
    // SAFETY: a valid C path.
    mount::cvt(unsafe { libc::truncate(c.as_ptr(), 20) }).unwrap();
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 20);
    fd.write_all_at(b"W", 20).unwrap();
    drop(fd);
    let mut want = vec![b'q'; 20];
    want.push(b'W');
    assert_eq!(std::fs::read(m.path("f")).unwrap(), want);
    assert_eq!(store_get(&m, "/f"), want);
}

#[test]
fn a_writer_reads_its_own_bytes_after_another_handle_read_the_page() {
    let m = Mounted::new();
    std::fs::write(m.path("f"), vec![b'.'; 8192]).unwrap();
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    // Part of a page: the kernel cannot mark the page as known from this write.
    w.write_all_at(&[b'W'; 100], 4096).unwrap();
    let r = std::fs::File::open(m.path("f")).unwrap();
    let mut all = vec![0u8; 8192];
    r.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(&all[4096..4196], &[b'W'; 100][..], "the reader's view");
    let mut mine = [0u8; 8];
    w.read_exact_at(&mut mine, 4096).unwrap();
    assert_eq!(&mine, b"WWWWWWWW", "the writer's view");
}

#[test]
fn several_processes_creating_one_file_at_once_all_open_it() {
    let m = Mounted::new();
    const THREADS: usize = 6;
    const FILES: usize = 300;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = &m;
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for i in 0..FILES {
                        // O_CREAT without O_EXCL: whoever comes second opens it.
                        let opened = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(m.path(&format!("f{i}")));
                        match opened.and_then(|mut f| f.write_all(&[b'a' + t as u8])) {
                            Ok(()) => {}
                            Err(err) => failed.push(format!("thread {t} f{i}: {err}")),
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failed opens: {failures:?}",
        failures.len()
    );
    for i in 0..FILES {
        let bytes = std::fs::read(m.path(&format!("f{i}"))).unwrap();
        assert_eq!(bytes.len(), THREADS, "f{i}: {bytes:?}");
    }
}
