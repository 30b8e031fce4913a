//! POSIX metadata through a real mount: owners (the creating process's ids,
//! chown and chgrp as the kernel allows them, a setgid directory's group),
//! `mount.ownership: mount-user`, special files (FIFOs, sockets, device
//! nodes), extended attributes with Linux's errnos, ctime and atime, and the
//! mount root as a directory like any other. Tests run as root; "a normal
//! user" is a child process run with `setpriv` under uid/gid 1000 or 1001.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use mount::{Mounted, cpath, cvt, errno};

/// Runs `script` with sh as `uid:gid` (no supplementary groups); its exit
/// status and stderr.
fn as_user(uid: u32, gid: u32, script: &str) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mount whose directories other users may walk through (tempdirs are 0700).
fn shared_mount(extra: &str) -> Mounted {
    let m = Mounted::with("4KiB", extra);
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    m
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

#[test]
fn a_normal_user_creates_appends_chmods_and_chgrps_in_a_shared_directory() {
    let m = shared_mount("");
    std::fs::create_dir(m.path("shared")).unwrap();
    std::fs::set_permissions(m.path("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = m.path("shared/mine");
    let f = file.display();
    let (ok, err) = as_user(
        1000,
        1000,
        &format!("echo one > {f} && echo two >> {f} && chmod 600 {f} && chgrp 1000 {f}"),
    );
    assert!(ok, "{err}");
    assert_eq!(owner(&file), (1000, 1000));
    assert_eq!(std::fs::read(&file).unwrap(), b"one\ntwo\n");
    let mode = std::fs::metadata(&file).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    // As on ext4: giving the file away, or another user reading it, is refused.
    let (ok, err) = as_user(1000, 1000, &format!("chown 0 {f}"));
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    let (ok, err) = as_user(1001, 1001, &format!("cat {f}"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    // Root may give it away.
    std::os::unix::fs::chown(&file, Some(1001), Some(1001)).unwrap();
    assert_eq!(owner(&file), (1001, 1001));
    // A directory and a symlink the user makes are the user's too.
    let (ok, err) = as_user(
        1000,
        1000,
        &format!(
            "mkdir {d}/dir && ln -s mine {d}/link",
            d = m.path("shared").display()
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(owner(&m.path("shared/dir")), (1000, 1000));
    assert_eq!(owner(&m.path("shared/link")), (1000, 1000));
}

#[test]
fn owners_survive_a_remount() {
    let mut m = shared_mount("");
    std::fs::write(m.path("f"), b"x").unwrap();
    std::os::unix::fs::chown(m.path("f"), Some(4242), Some(4343)).unwrap();
    m.stop();
    m.start();
    assert_eq!(owner(&m.path("f")), (4242, 4343));
}

#[test]
fn a_setgid_directory_hands_down_its_group() {
    let m = shared_mount("");
    std::fs::create_dir(m.path("team")).unwrap();
    std::os::unix::fs::chown(m.path("team"), Some(0), Some(1234)).unwrap();
    std::fs::set_permissions(m.path("team"), std::fs::Permissions::from_mode(0o2777)).unwrap();
    let (ok, err) = as_user(
        1000,
        1000,
        &format!(
            "touch {d}/file && mkdir {d}/sub",
            d = m.path("team").display()
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(owner(&m.path("team/file")), (1000, 1234));
    assert_eq!(owner(&m.path("team/sub")), (1000, 1234));
    let sub = std::fs::metadata(m.path("team/sub")).unwrap().mode();
    assert_eq!(sub & 0o2000, 0o2000, "a new subdirectory keeps setgid");
}

#[test]
fn ownership_mount_user_shows_every_file_as_the_mounting_user() {
    let m = shared_mount("  ownership: mount-user\n");
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::set_permissions(m.path("d"), std::fs::Permissions::from_mode(0o777)).unwrap();
    // Created by another user, but shown as the mounting user's (root here);
    // so that user cannot change its times afterwards: the trade-off the
    // README describes (this setting is for single-user machines).
    let (ok, err) = as_user(1000, 1000, &format!(": > {}", m.path("d/f").display()));
    assert!(ok, "{err}");
    assert_eq!(owner(&m.path("d/f")), (0, 0));
    assert_eq!(
        errno(std::os::unix::fs::chown(m.path("d/f"), Some(1000), None)),
        libc::EPERM
    );
}

#[test]
fn the_mount_root_is_chmod_and_chowned_like_any_directory() {
    let mut m = shared_mount("");
    std::fs::set_permissions(&m.mnt, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(&m.mnt, Some(1000), Some(100)).unwrap();
    let meta = std::fs::metadata(&m.mnt).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o1777, 1000, 100)
    );
    m.stop();
    m.start();
    let meta = std::fs::metadata(&m.mnt).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o1777, 1000, 100)
    );
}

#[test]
fn fifos_sockets_and_device_nodes_are_made_and_keep_their_kind() {
    let mut m = shared_mount("");
    let fifo = cpath(&m.path("fifo"));
    cvt(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }).unwrap();
    let dev = cpath(&m.path("null"));
    cvt(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }).unwrap();
    let blk = cpath(&m.path("loop"));
    cvt(unsafe { libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o660, libc::makedev(7, 9)) }).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(m.path("sock")).unwrap();
    drop(socket);
    let check = |m: &Mounted| {
        let t = |name: &str| std::fs::symlink_metadata(m.path(name)).unwrap();
        assert!(t("fifo").file_type().is_fifo());
        assert_eq!(t("fifo").mode() & 0o777, 0o640);
        assert!(t("sock").file_type().is_socket());
        assert!(t("null").file_type().is_char_device());
        assert_eq!(t("null").rdev(), libc::makedev(1, 3));
        assert!(t("loop").file_type().is_block_device());
        assert_eq!(t("loop").rdev(), libc::makedev(7, 9));
    };
    check(&m);
    // The FIFO works: a writer and a reader meet in the kernel.
    let path = m.path("fifo");
    let writer = std::thread::spawn(move || std::fs::write(path, b"through the pipe").unwrap());
    assert_eq!(std::fs::read(m.path("fifo")).unwrap(), b"through the pipe");
    writer.join().unwrap();
    m.stop();
    m.start();
    check(&m);
    std::fs::remove_file(m.path("fifo")).unwrap();
    assert!(!m.path("fifo").exists());
}

fn setxattr(path: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<libc::c_int> {
    let path = cpath(path);
    let name = std::ffi::CString::new(name).unwrap();
    cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

fn getxattr(path: &Path, name: &str, size: usize) -> std::io::Result<Vec<u8>> {
    let path = cpath(path);
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    let got = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let got = cvt(got as libc::c_int)?;
    buf.truncate(got as usize);
    Ok(buf)
}

fn listxattr(path: &Path) -> Vec<String> {
    let path = cpath(path);
    let mut buf = vec![0u8; 4096];
    let got = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let got = cvt(got as libc::c_int).unwrap() as usize;
    buf[..got]
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

#[test]
fn extended_attributes_round_trip_with_the_linux_errnos() {
    let mut m = shared_mount("");
    let f = m.path("f");
    std::fs::write(&f, b"content").unwrap();
    setxattr(&f, "user.note", b"hello", 0).unwrap();
    setxattr(&f, "trusted.root", b"\x00\x01", 0).unwrap();
    assert_eq!(getxattr(&f, "user.note", 100).unwrap(), b"hello");
    assert_eq!(getxattr(&f, "trusted.root", 100).unwrap(), b"\x00\x01");
    assert_eq!(listxattr(&f), vec!["trusted.root", "user.note"]);
    assert_eq!(errno(getxattr(&f, "user.none", 100)), libc::ENODATA);
    assert_eq!(errno(getxattr(&f, "user.note", 2)), libc::ERANGE);
    assert_eq!(
        errno(setxattr(&f, "user.note", b"x", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(setxattr(&f, "user.none", b"x", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(
        errno(setxattr(&f, "user.big", &vec![7u8; 64 * 1024 + 1], 0)),
        libc::E2BIG
    );
    setxattr(&f, "user.max", &vec![7u8; 64 * 1024], 0).unwrap();
    // A write keeps them; they survive a remount.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b" more"))
        .unwrap();
    m.stop();
    m.start();
    assert_eq!(std::fs::read(&f).unwrap(), b"content more");
    assert_eq!(getxattr(&f, "user.note", 100).unwrap(), b"hello");
    assert_eq!(getxattr(&f, "user.max", 70_000).unwrap().len(), 64 * 1024);
    let name = std::ffi::CString::new("user.note").unwrap();
    let path = cpath(&f);
    cvt(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).unwrap();
    assert_eq!(errno(getxattr(&f, "user.note", 100)), libc::ENODATA);
    assert_eq!(
        errno(cvt(unsafe {
            libc::removexattr(path.as_ptr(), name.as_ptr())
        })),
        libc::ENODATA
    );
    // trusted.* is root's: a normal user neither sees nor sets it.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "getfattr",
            "-m",
            "-",
        ])
        .arg(&f)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("user.max") && !listed.contains("trusted"),
        "{listed}"
    );
    let (ok, err) = as_user(
        1000,
        1000,
        &format!("setfattr -n trusted.x -v 1 {}", f.display()),
    );
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
}

#[test]
fn chmod_moves_ctime_and_atime_alone_can_be_set() {
    let m = shared_mount("");
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    let before = std::fs::metadata(&f).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let after = std::fs::metadata(&f).unwrap();
    let ctime = |meta: &std::fs::Metadata| (meta.ctime(), meta.ctime_nsec());
    assert!(ctime(&after) > ctime(&before), "chmod moves ctime");
    assert_eq!(after.mtime(), before.mtime(), "chmod keeps mtime");
    // utimensat with only the access time (UTIME_OMIT for mtime).
    let path = cpath(&f);
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) }).unwrap();
    let touched = std::fs::metadata(&f).unwrap();
    assert_eq!((touched.atime(), touched.atime_nsec()), (1_000_000_000, 5));
    assert_eq!(touched.mtime(), before.mtime());
    // Reading stores no access time.
    let _ = std::fs::read(&f).unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().atime(), 1_000_000_000);
}

/// `getfacl -c` of `path` (the ACL without the header lines); panics with
/// getfacl's words if it fails.
fn getfacl(path: &Path) -> String {
    let out = Command::new("getfacl")
        .arg("-cp")
        .arg(path)
        .output()
        .expect("run getfacl");
    assert!(
        out.status.success(),
        "getfacl {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setfacl(args: &[&str], path: &Path) -> std::process::Output {
    Command::new("setfacl")
        .args(args)
        .arg(path)
        .output()
        .expect("run setfacl")
}

/// `cp -a` and `mv` from another file system keep modes and ACLs (found by
/// black-box testing: copies ended up 0600 when ACLs were half supported).
#[test]
fn cp_a_and_mv_into_the_mount_keep_modes_and_acls() {
    let m = shared_mount("");
    let src = m.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    std::fs::set_permissions(src.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(src.join("g"), b"y").unwrap();
    assert!(
        setfacl(&["-m", "u:nobody:rw,g:daemon:r,m::rw"], &src.join("g"))
            .status
            .success()
    );
    std::fs::create_dir(src.join("d")).unwrap();
    std::fs::set_permissions(src.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        setfacl(&["-d", "-m", "u:nobody:rwx"], &src.join("d"))
            .status
            .success()
    );
    for name in ["f", "g"] {
        let cp = Command::new("cp")
            .arg("-a")
            .arg(src.join(name))
            .arg(m.path(name))
            .status()
            .unwrap();
        assert!(cp.success());
    }
    let acl_of_d = getfacl(&src.join("d"));
    let mv = Command::new("mv")
        .arg(src.join("d"))
        .arg(m.path("d"))
        .status()
        .unwrap();
    assert!(mv.success());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&m.path("f")), 0o644);
    assert_eq!(mode(&m.path("d")), 0o755);
    // A file without an ACL has none in the mount either.
    assert!(listxattr(&m.path("f")).is_empty());
    assert_eq!(getfacl(&m.path("g")), getfacl(&src.join("g")));
    assert_eq!(mode(&m.path("g")), mode(&src.join("g")));
    assert_eq!(getfacl(&m.path("d")), acl_of_d);
    assert!(listxattr(&m.path("g")).contains(&"system.posix_acl_access".to_string()));
}

/// The kernel enforces an access ACL; chmod moves its mask; both survive a
/// remount.
#[test]
fn access_acls_are_enforced_and_follow_chmod() {
    let mut m = shared_mount("");
    let f = m.path("secret");
    std::fs::write(&f, b"for nobody's eyes").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let read = format!("cat {}", f.display());
    let (ok, _) = as_user(65534, 65534, &read);
    assert!(!ok, "nobody read a 0600 root file");
    assert!(setfacl(&["-m", "u:nobody:r"], &f).status.success());
    let (ok, err) = as_user(65534, 65534, &read);
    assert!(ok, "nobody could not read with u:nobody:r: {err}");
    // The mode's group bits show the mask.
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o640);
    // chmod g-r narrows the mask: the named entry no longer gives access.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(getfacl(&f).contains("mask::---"), "{}", getfacl(&f));
    let (ok, _) = as_user(65534, 65534, &read);
    assert!(!ok, "nobody read through a masked-out ACL entry");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    m.stop();
    m.start();
    assert!(getfacl(&f).contains("user:nobody:r--"), "{}", getfacl(&f));
    let (ok, err) = as_user(65534, 65534, &read);
    assert!(ok, "after a remount: {err}");
    // Removing the ACL leaves the owner, group entry and other bits as the
    // mode (group::--- here: 0600, as on ext4).
    assert!(setfacl(&["-b"], &f).status.success());
    assert!(listxattr(&f).is_empty());
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    let (ok, _) = as_user(65534, 65534, &read);
    assert!(!ok);
}

/// Entries made in a directory with a default ACL inherit it, narrowed to
/// the mode asked for, and the umask does not apply; elsewhere it does.
#[test]
fn default_acls_are_inherited_and_the_umask_yields_to_them() {
    let m = shared_mount("");
    let d = m.path("shared");
    std::fs::create_dir(&d).unwrap();
    assert!(
        setfacl(&["-d", "-m", "u:nobody:rwx,g::r-x,o::---"], &d)
            .status
            .success()
    );
    let script = format!(
        "umask 077 && touch {d}/file && mkdir {d}/sub && touch {top}/plain && mkdir {top}/plaindir",
        d = d.display(),
        top = m.mnt.display()
    );
    let (ok, err) = as_user(0, 0, &script);
    assert!(ok, "{err}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    // touch asks for 0666, mkdir for 0777: the default ACL's owner, mask
    // and other entries narrowed to those, the umask 077 ignored.
    assert_eq!(mode(&d.join("file")), 0o660);
    assert_eq!(mode(&d.join("sub")), 0o770);
    let file_acl = getfacl(&d.join("file"));
    assert!(
        file_acl.contains("user:nobody:rwx\t#effective:rw-")
            || file_acl.contains("user:nobody:rwx"),
        "{file_acl}"
    );
    assert!(file_acl.contains("mask::rw-"), "{file_acl}");
    assert!(!file_acl.contains("default:"), "{file_acl}");
    // A subdirectory passes the default on.
    assert!(getfacl(&d.join("sub")).contains("default:user:nobody:rwx"));
    // Outside, the umask rules and no ACL appears.
    assert_eq!(mode(&m.path("plain")), 0o600);
    assert_eq!(mode(&m.path("plaindir")), 0o700);
    assert!(listxattr(&m.path("plain")).is_empty());
    // nobody may write the inherited file through the named entry.
    let (ok, err) = as_user(
        65534,
        65534,
        &format!("echo hi >> {d}/file", d = d.display()),
    );
    assert!(ok, "{err}");
}

/// An ACL that says only what the mode says is not kept (as on ext4), and a
/// default ACL is only for directories.
#[test]
fn a_mode_only_acl_sets_the_mode_and_a_file_has_no_default_acl() {
    let m = shared_mount("");
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    assert!(setfacl(&["-m", "u::rwx,g::r-x,o::-"], &f).status.success());
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o750);
    assert!(listxattr(&f).is_empty());
    let out = setfacl(&["-d", "-m", "u:nobody:r"], &f);
    assert!(!out.status.success(), "a default ACL on a file was taken");
    // A malformed ACL is refused with EINVAL, nothing stored.
    assert_eq!(
        errno(setxattr(
            &f,
            "system.posix_acl_access",
            &[2, 0, 0, 0, 1, 0],
            0
        )),
        libc::EINVAL
    );
    assert!(listxattr(&f).is_empty());
}

/// A metadata change through an open file (fchmod, futimens, fsetxattr, as
/// `tar -x` makes them) moves the ctime that fstat shows at once (found by
/// black-box testing: tar -c then said "file changed as we read it").
#[test]
fn a_change_through_an_open_writer_moves_its_ctime_at_once() {
    use std::os::fd::AsRawFd;
    let m = shared_mount("");
    let mut file = std::fs::File::create(m.path("f")).unwrap();
    std::io::Write::write_all(&mut file, b"data").unwrap();
    // Committed: the ctime is now that version's.
    file.sync_all().unwrap();
    let before = file.metadata().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cvt(unsafe { libc::fchmod(file.as_raw_fd(), 0o600) }).unwrap();
    let after = file.metadata().unwrap();
    let ctime = |meta: &std::fs::Metadata| (meta.ctime(), meta.ctime_nsec());
    assert!(
        ctime(&after) > ctime(&before),
        "{:?} !> {:?}",
        ctime(&after),
        ctime(&before)
    );
    drop(file);
    let closed = std::fs::metadata(m.path("f")).unwrap();
    assert!(ctime(&closed) >= ctime(&after));
    assert_eq!(closed.mode() & 0o7777, 0o600);
}

/// The mount is nosuid and nodev whatever the defaults of the FUSE library:
/// a device node (which any peer could push) is stored and shown but does
/// not open, and the mount table says so.
#[test]
fn device_nodes_do_not_open_and_the_mount_is_nosuid_nodev() {
    let m = shared_mount("");
    let dev = cpath(&m.path("zero"));
    cvt(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) }).unwrap();
    let err = std::fs::File::open(m.path("zero")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mnt = m.mnt.canonicalize().unwrap();
    let line = table
        .lines()
        .find(|line| line.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not in the mount table", mnt.display()));
    let options = line.split(' ').nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "nosuid") && options.split(',').any(|o| o == "nodev"),
        "{line}"
    );
}

fn mode_bits(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A file of uid/gid 1000 holding `bits`, made and set by root ("x" in it,
/// or nothing when its name starts with "empty").
fn privileged_file(path: &Path, bits: u32) {
    let empty = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("empty");
    std::fs::write(path, if empty { &b""[..] } else { b"x" }).unwrap();
    std::os::unix::fs::chown(path, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits)).unwrap();
    assert_eq!(mode_bits(path), bits, "{}", path.display());
}

/// A write, a truncation or an `O_TRUNC` open by a process without
/// `CAP_FSETID` drops a file's setuid bit, and its setgid bit when the group
/// may execute it (setgid alone marks locking and stays); any chown drops
/// them; root's own writes keep them. The mount does this itself (it asks
/// the kernel for FUSE_HANDLE_KILLPRIV_V2, so that the kernel stops asking
/// for `security.capability` before every write): each case fails if the
/// mount does not, the append to an empty file also if such a file were
/// written through passthrough (the mount would never see the write), and
/// the last two if a setattr that sets nothing (the kernel asking for the
/// drop) were ignored.
#[test]
fn writes_truncations_and_chowns_drop_setuid_and_setgid_as_linux_does() {
    let mut m = shared_mount("");
    std::fs::create_dir(m.path("s")).unwrap();
    std::fs::set_permissions(m.path("s"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cases: [(&str, u32, &str, u32); 9] = [
        ("append", 0o6775, "printf y >> {}", 0o0775),
        ("empty-append", 0o4755, "printf y >> {}", 0o0755),
        ("read-write", 0o4755, "printf y 1<> {}", 0o0755),
        ("locking", 0o2764, "printf y >> {}", 0o2764),
        ("truncate", 0o4755, "truncate -s 1 {}", 0o0755),
        ("o-trunc", 0o6755, "printf x > {}", 0o0755),
        ("fallocate", 0o6775, "fallocate -n -l 8192 {}", 0o0775),
        // Root of a user namespace of its own has no CAP_FSETID outside it.
        (
            "userns-truncate",
            0o4755,
            "unshare -U -r truncate -s 1 {}",
            0o0755,
        ),
        (
            "userns-o-trunc",
            0o4755,
            "unshare -U -r sh -c 'printf x > {}'",
            0o0755,
        ),
    ];
    for (name, bits, script, after) in cases {
        let file = m.path(&format!("s/{name}"));
        privileged_file(&file, bits);
        let (ok, err) = as_user(
            1000,
            1000,
            &script.replace("{}", &file.display().to_string()),
        );
        assert!(ok, "{name}: {err}");
        assert_eq!(
            mode_bits(&file),
            after,
            "{name}: mode after the user's change"
        );
    }
    assert_eq!(std::fs::read(m.path("s/append")).unwrap(), b"xy");
    assert_eq!(std::fs::read(m.path("s/empty-append")).unwrap(), b"y");
    assert_eq!(std::fs::read(m.path("s/o-trunc")).unwrap(), b"x");

    // Setgid without group execute goes when the writer is not in the group.
    let lone = m.path("s/lone-setgid");
    privileged_file(&lone, 0o2766);
    std::os::unix::fs::chown(&lone, None, Some(0)).unwrap();
    std::fs::set_permissions(&lone, std::fs::Permissions::from_mode(0o2766)).unwrap();
    let (ok, err) = as_user(1000, 1000, &format!("printf y >> {}", lone.display()));
    assert!(ok, "{err}");
    assert_eq!(
        mode_bits(&lone),
        0o0766,
        "a writer outside the file's group drops it"
    );

    // Root (CAP_FSETID) truncates, opens with O_TRUNC and allocates: kept.
    for (name, script) in [
        ("root-truncate", "truncate -s 1 {}"),
        ("root-o-trunc", "printf x > {}"),
        ("root-fallocate", "fallocate -l 8192 {}"),
    ] {
        let file = m.path(&format!("s/{name}"));
        privileged_file(&file, 0o6755);
        let script = script.replace("{}", &file.display().to_string());
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(mode_bits(&file), 0o6755, "{name}: root keeps them");
    }

    let root = m.path("s/root");
    privileged_file(&root, 0o6755);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&root)
        .unwrap();
    std::io::Write::write_all(&mut f, b"y").unwrap();
    drop(f);
    assert_eq!(mode_bits(&root), 0o6755, "root (CAP_FSETID) keeps them");
    std::os::unix::fs::chown(&root, Some(1001), None).unwrap();
    assert_eq!(mode_bits(&root), 0o0755, "a chown drops them, even by root");
    let same = m.path("s/same-owner");
    privileged_file(&same, 0o4755);
    std::os::unix::fs::chown(&same, None, None).unwrap();
    assert_eq!(mode_bits(&same), 0o0755, "chown(f, -1, -1) drops them too");

    // Root writes a new file through passthrough and makes it setuid while
    // still writing; another process without CAP_FSETID writes it too.
    let shared = m.path("s/shared");
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&shared)
        .unwrap();
    std::io::Write::write_all(&mut writer, b"root").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o4777)).unwrap();
    let (ok, err) = as_user(1000, 1000, &format!("printf user >> {}", shared.display()));
    assert!(ok, "{err}");
    drop(writer);
    assert_eq!(
        mode_bits(&shared),
        0o0777,
        "the other process's write dropped setuid"
    );

    // A file made setuid by its own writer (through passthrough) loses it
    // at that writer's next write, the user having no CAP_FSETID.
    let own = m.path("s/own-writer");
    let o = own.display();
    let script = format!("exec 3> {o}; printf a >&3; chmod 4755 {o}; printf b >&3; exec 3>&-");
    let (ok, err) = as_user(1000, 1000, &script);
    assert!(ok, "{err}");
    assert_eq!(
        mode_bits(&own),
        0o0755,
        "its own writer's next write dropped setuid"
    );
    assert_eq!(std::fs::read(&own).unwrap(), b"ab");

    m.stop();
    m.start();
    assert_eq!(mode_bits(&m.path("s/append")), 0o0775);
    assert_eq!(mode_bits(&m.path("s/locking")), 0o2764);
    assert_eq!(mode_bits(&root), 0o0755);
}

/// A writer served by passthrough goes on writing after its file gains
/// setuid and is opened again by someone else, and every byte it wrote is
/// in the file (QA: serving the second handle in user space for the drop
/// stopped the mount following the first writer's writes: "second" was lost,
/// fsync or not).
#[test]
fn a_passthrough_writer_keeps_its_writes_after_its_file_gains_setuid_and_is_opened_again() {
    let m = shared_mount("");
    for (name, bits) in [("suid", "4755"), ("sgid", "2775"), ("plain", "0755")] {
        let f = m.path(name);
        let f = f.display();
        let script = format!(
            "exec 3> {f}; echo first >&3; chmod {bits} {f}; cat {f} >/dev/null; \
             echo second >&3; exec 3>&-; cat {f}"
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "first\nsecond\n",
            "{name}"
        );
        assert_eq!(
            std::fs::read(m.path(name)).unwrap(),
            b"first\nsecond\n",
            "{name}"
        );
    }
}

/// Setting an access ACL drops setgid when the owner setting it is outside
/// the file's group (Linux's `posix_acl_update_mode`), on the mount as on
/// the disk beside it; inside the group, or as root, it stays.
#[test]
fn an_acl_set_by_an_owner_outside_the_group_drops_setgid_as_linux_does() {
    let m = shared_mount("");
    std::fs::create_dir(m.path("s")).unwrap();
    std::fs::set_permissions(m.path("s"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let native = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(native.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // (name, the setter's uid and gid, or root)
    let cases: [(&str, Option<(u32, u32)>); 3] = [
        ("outside", Some((1000, 1001))),
        ("inside", Some((1000, 1000))),
        ("root", None),
    ];
    for (name, who) in cases {
        let mut modes = Vec::new();
        for dir in [m.path("s"), native.path().to_path_buf()] {
            let file = dir.join(name);
            privileged_file(&file, 0o2775);
            let script = format!("setfacl -m u:nobody:r {}", file.display());
            match who {
                Some((uid, gid)) => {
                    let (ok, err) = as_user(uid, gid, &script);
                    assert!(ok, "{name}: {err}");
                }
                None => assert!(setfacl(&["-m", "u:nobody:r"], &file).status.success()),
            }
            modes.push(mode_bits(&file));
        }
        let expected = if name == "outside" { 0o0775 } else { 0o2775 };
        assert_eq!(modes, vec![expected, expected], "{name}: mount, disk");
    }
}
