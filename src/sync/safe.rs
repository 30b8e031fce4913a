//! Reading files a peer wrote into our inbound spool without trusting it: every
//! path component is opened with `openat(O_NOFOLLOW)` from the spool directory
//! down, so a symlink anywhere inside the spool is refused rather than followed,
//! and only a regular file is read (a FIFO or device would block or lie).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::Mode;

fn c_name(name: &OsStr) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a plain name"),
        ));
    }
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "NUL in name"))
}

/// `openat(dir, name, flags | O_CLOEXEC)`, relative to the working
/// directory without `dir`; retried when interrupted.
fn open_at(dir: Option<&OwnedFd>, name: &CString, flags: OFlag) -> io::Result<OwnedFd> {
    let base = dir.map_or(AT_FDCWD, AsFd::as_fd);
    loop {
        match nix::fcntl::openat(
            base,
            name.as_c_str(),
            flags | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(io::Error::from(err)),
        }
    }
}

fn refusing_symlinks(err: io::Error, at: &Path) -> io::Error {
    match err.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "{}: a symlink or non-directory inside the spool (refused)",
                at.display()
            ),
        ),
        _ => io::Error::new(err.kind(), format!("{}: {err}", at.display())),
    }
}

/// Opens `base/<names...>` for reading; `base` itself must be a real directory
/// (not a symlink), every name below it a real directory, the last a regular file.
pub fn open_under(base: &Path, names: &[OsString]) -> io::Result<File> {
    let base_c = CString::new(base.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "NUL in path"))?;
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let mut at = base.to_path_buf();
    let mut dir = open_at(None, &base_c, dir_flags).map_err(|err| refusing_symlinks(err, &at))?;
    let Some((last, parents)) = names.split_last() else {
        return Err(io::Error::new(ErrorKind::InvalidInput, "no file name"));
    };
    for name in parents {
        at.push(name);
        dir = open_at(Some(&dir), &c_name(name)?, dir_flags)
            .map_err(|err| refusing_symlinks(err, &at))?;
    }
    at.push(last);
    let fd = open_at(
        Some(&dir),
        &c_name(last)?,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
    )
    .map_err(|err| refusing_symlinks(err, &at))?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("{}: not a regular file (refused)", at.display()),
        ));
    }
    Ok(file)
}

/// Reads at most `max` bytes; more is an error (an absurd file).
pub fn read_bounded(file: File, max: u64, what: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes (refused)", what.display()),
        ));
    }
    Ok(bytes)
}

/// Whether `path` is a real directory (not a symlink to one); `None` if absent.
pub fn real_dir(path: &Path) -> io::Result<Option<bool>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta.is_dir())),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// `base` joined with `names` (for messages).
pub fn joined(base: &Path, names: &[OsString]) -> PathBuf {
    let mut path = base.to_path_buf();
    for name in names {
        path.push(name);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_at_any_level() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("spool");
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::fs::write(base.join("a/b/f"), b"ok").unwrap();
        let names = |parts: &[&str]| parts.iter().map(OsString::from).collect::<Vec<_>>();
        let file = open_under(&base, &names(&["a", "b", "f"])).unwrap();
        assert_eq!(read_bounded(file, 10, &base).unwrap(), b"ok");
        std::os::unix::fs::symlink(base.join("a/b"), base.join("link")).unwrap();
        assert!(open_under(&base, &names(&["link", "f"])).is_err());
        std::os::unix::fs::symlink(base.join("a/b/f"), base.join("a/fl")).unwrap();
        assert!(open_under(&base, &names(&["a", "fl"])).is_err());
        assert!(open_under(&base, &names(&["a", "..", "a", "b", "f"])).is_err());
        nix::unistd::mkfifo(&base.join("a/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(open_under(&base, &names(&["a", "fifo"])).is_err());
        let big = open_under(&base, &names(&["a", "b", "f"])).unwrap();
        assert!(read_bounded(big, 1, &base).is_err());
    }
}
