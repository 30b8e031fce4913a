//! Attributes of an entry: chmod, chown, utimens and truncate (setattr), the
//! owner and group of what is created (the caller's, or a setgid directory's
//! group), and extended attributes. Every change is one new version of the
//! path, the mount root's too; open writers carry it into their next commit.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::Vfs;
use super::acl;
use super::error::{VfsError, VfsResult};
use super::locks::lock;
use super::privileges;
use super::types::{Attr, Caller};
use crate::layout::VPath;
use crate::spec::Ownership;
use crate::store::posix::{
    Posix, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_TOTAL_MAX, XATTR_VALUE_MAX,
};
use crate::store::{Content, Kind, Mtime, Version};

/// What is being created, for [`Vfs::new_owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Made {
    Dir,
    File,
    Symlink,
}

/// What a setattr changes (each `None` stays as it is).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    /// The change drops the file's setuid, setgid and capability
    /// (privileges.rs): a change of owner of a file, a truncation by a
    /// process without `CAP_FSETID`.
    pub drop_privileges: Option<privileges::Changer>,
}

const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

impl Vfs {
    /// chmod / utimens / truncate by path.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> VfsResult<Attr> {
        let change = SetAttr {
            mode,
            size,
            mtime,
            ..SetAttr::default()
        };
        self.set_attributes(ino, fh, &change)
    }

    /// Every attribute change of a setattr, as one new version (after a
    /// truncation, which commits the new size on its own). The kernel checked
    /// the caller's permission first (the mount uses `default_permissions`).
    pub fn set_attributes(&self, ino: u64, fh: Option<u64>, change: &SetAttr) -> VfsResult<Attr> {
        if super::past::is_virtual(ino) {
            return Err(VfsError::new(libc::EROFS, "the history view is read-only"));
        }
        if let Some(size) = change.size {
            self.truncate(ino, fh, size)?;
        }
        let owners = change.uid.is_some() || change.gid.is_some();
        if owners && self.ownership == Ownership::MountUser {
            self.chown_as_mount_user(ino, change.uid, change.gid)?;
        }
        let mut records_owner = owners && self.ownership == Ownership::Keep;
        if records_owner
            && change.mode.is_none()
            && change.mtime.is_none()
            && change.atime.is_none()
        {
            // A chown to the owners the file has changes nothing, and makes
            // no version: a version from a node that only read the file
            // would be an edit concurrent with what others did meanwhile (a
            // delete there would be undone; SQLite as root fchowns a journal
            // it only opened to read).
            let now = self.getattr(ino)?;
            records_owner = change.uid.is_some_and(|uid| uid != now.uid)
                || change.gid.is_some_and(|gid| gid != now.gid);
        }
        let drops = match &change.drop_privileges {
            Some(_) => self.holds_privileges(ino)?,
            None => false,
        };
        if change.mode.is_some()
            || change.mtime.is_some()
            || change.atime.is_some()
            || records_owner
            || drops
        {
            self.change_attrs(ino, change.mtime.is_some(), |content| {
                if let Some(changer) = change.drop_privileges.as_ref().filter(|_| drops) {
                    let gid = content.posix.gid.unwrap_or(0);
                    privileges::drop_from(
                        &mut content.mode,
                        &mut content.posix.xattrs,
                        gid,
                        changer,
                    );
                }
                if let Some(mode) = change.mode {
                    content.mode = mode & 0o7777;
                    acl::follow_chmod(&mut content.posix.xattrs, content.mode);
                }
                if let Some(mtime) = change.mtime {
                    content.mtime = Mtime::from_system(mtime);
                }
                if let Some(atime) = change.atime {
                    content.posix.atime = Some(Mtime::from_system(atime));
                }
                if records_owner {
                    if let Some(uid) = change.uid {
                        content.posix.uid = Some(uid);
                    }
                    if let Some(gid) = change.gid {
                        content.posix.gid = Some(gid);
                    }
                }
            })?;
        }
        self.getattr(ino)
    }

    /// With `mount.ownership: mount-user` every file is the mounting user's:
    /// a change of owner only to that user and group is accepted (and changes nothing).
    fn chown_as_mount_user(&self, ino: u64, uid: Option<u32>, gid: Option<u32>) -> VfsResult<()> {
        if uid.is_some_and(|u| u != self.uid) || gid.is_some_and(|g| g != self.gid) {
            return Err(VfsError::new(
                libc::EPERM,
                format!(
                    "inode {ino}: mount.ownership is mount-user: every file belongs to the mounting user"
                ),
            ));
        }
        Ok(())
    }

    /// Changes the current version of `ino`'s path as `change` says, in one
    /// new version (`sets_mtime`: `change` sets the mtime). A file that
    /// writers have open in this mount takes the change into its write
    /// state instead: it shows at once here, and its next commit (close,
    /// fsync) writes content and attributes as one version, so tar's
    /// write, futimens, fchown, fchmod, close make one version, not four.
    pub(super) fn change_attrs(
        &self,
        ino: u64,
        sets_mtime: bool,
        change: impl FnOnce(&mut Content),
    ) -> VfsResult<Version> {
        let path = self.path_of(ino)?;
        if let Some(dirty) = self.dirty_of(ino) {
            let mut state = lock(&dirty);
            let state = &mut *state;
            if let Some(base) = state.base.as_mut().filter(|_| state.writers > 0) {
                if base.kind == Kind::File {
                    let mut content = Content::of(base);
                    change(&mut content);
                    base.mode = content.mode & 0o7777;
                    base.mtime = content.mtime;
                    base.posix = content.posix;
                    state.cache.attributes_changed(sets_mtime);
                    return Ok(base.clone());
                }
            }
        }
        if let Some(dirty) = self.dirty_of(ino) {
            self.commit_dirty(ino, &dirty, false)?;
        }
        // A directory keeps the mtime it shows (its entries' changes are
        // not in its own version); a utime in `change` sets it anew.
        let keep = self.dir_mtime_to_keep(&path);
        let made = self.store.change_attrs_each(&path, |content| {
            if let Some(mtime) = keep {
                content.mtime = mtime;
            }
            change(content);
        })?;
        for version in &made {
            self.made_here(version);
        }
        let version = crate::store::links::first(made)?;
        if let Some(dirty) = self.dirty_of(ino) {
            let mut state = lock(&dirty);
            match state.base.as_mut() {
                // The new version has the content just committed: it is the
                // base from now on (its id is the ctime an fstat shows).
                Some(base) if base.hashes == version.hashes && base.size == version.size => {
                    *base = version.clone();
                }
                Some(base) => {
                    base.mode = version.mode;
                    base.mtime = version.mtime;
                    base.posix = version.posix.clone();
                }
                None => {}
            }
        }
        Ok(version)
    }

    /// The owner, group, mode and ACLs of something `caller` creates in
    /// `parent` with `mode`: the caller's ids, but a setgid directory's group
    /// (and, for a directory, its setgid bit), as POSIX file systems do; the
    /// parent's default ACL narrowed to `mode` (the umask does not apply
    /// then), else `mode` less the caller's umask.
    pub(super) fn new_owner(
        &self,
        parent: &VPath,
        caller: Caller,
        mode: u32,
        made: Made,
    ) -> (Posix, u32) {
        let parent_version = self.live(parent).ok().flatten();
        let parent_version =
            parent_version.or_else(|| parent.is_root().then(|| self.root_version()));
        let setgid_parent = parent_version.as_ref().filter(|v| v.mode & 0o2000 != 0);
        let gid = match setgid_parent {
            Some(parent) => self.owner_of(parent).1,
            None => caller.gid,
        };
        let dir = made == Made::Dir;
        let (mode, xattrs) = match made {
            // A symlink's mode is always 0777 and it has no ACL.
            Made::Symlink => (mode & 0o7777, Default::default()),
            Made::Dir | Made::File => {
                let default = parent_version
                    .as_ref()
                    .and_then(|parent| parent.posix.xattrs.get(acl::DEFAULT))
                    .and_then(|value| acl::Acl::parse(value).ok());
                acl::on_create(mode & 0o7777, caller.umask, default.as_ref(), dir)
            }
        };
        let mut mode = mode;
        if dir && setgid_parent.is_some() {
            mode |= 0o2000;
        } else if !dir && mode & 0o2000 != 0 && gid != caller.gid && caller.uid != 0 {
            // A setgid file in a group the caller is not in (as far as the
            // request tells) would hand out that group's rights.
            mode &= !0o2000;
        }
        let posix = Posix {
            uid: Some(caller.uid),
            gid: Some(gid),
            xattrs,
            ..Posix::default()
        };
        (posix, mode)
    }

    /// The current version whose xattrs `ino` shows (a file being written
    /// shows its base's).
    fn xattr_version(&self, ino: u64) -> VfsResult<Version> {
        if let Some(dirty) = self.dirty_of(ino) {
            if let Some(base) = lock(&dirty).base.clone() {
                return Ok(base);
            }
        }
        let path = self.path_of(ino)?;
        match self.live(&path)? {
            Some(version) => Ok(version),
            None if path.is_root() => Ok(self.root_version()),
            None => Err(VfsError::new(
                libc::ENOENT,
                format!("{path}: no such file or directory"),
            )),
        }
    }

    pub fn setxattr(
        &self,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        caller: Caller,
    ) -> VfsResult<()> {
        let privileged = || privileges::Changer {
            fsetid: true,
            ..privileges::Changer::default()
        };
        self.setxattr_by(ino, name, value, flags, caller, privileged)
    }

    /// [`Vfs::setxattr`] by the process `changer` describes (asked only
    /// when an access ACL is set on an entry holding setgid): as Linux's
    /// `posix_acl_update_mode` does, setgid goes when that process is
    /// outside the entry's group and lacks `CAP_FSETID`.
    pub fn setxattr_by(
        &self,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        caller: Caller,
        changer: impl FnOnce() -> privileges::Changer,
    ) -> VfsResult<()> {
        let name = name.as_bytes();
        check_xattr_name(ino, name, caller, true)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(VfsError::new(
                libc::E2BIG,
                format!(
                    "inode {ino}: an xattr value of {} bytes (at most {XATTR_VALUE_MAX})",
                    value.len()
                ),
            ));
        }
        let current = self.xattr_version(ino)?;
        let exists = current.posix.xattrs.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(VfsError::new(
                libc::EEXIST,
                format!("inode {ino}: xattr {} exists", show(name)),
            ));
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(VfsError::new(
                libc::ENODATA,
                format!("inode {ino}: no xattr {}", show(name)),
            ));
        }
        let mut xattrs = current.posix.xattrs.clone();
        let mut mode = None;
        let mut kill_setgid = false;
        if acl::is_acl(name) {
            mode = acl::on_set(ino, &current, name, value, &mut xattrs)?;
            if mode.is_some() && current.mode & libc::S_ISGID != 0 {
                let gid = current.posix.gid.unwrap_or(0);
                kill_setgid = !changer().keeps_setgid(gid);
            }
        } else {
            xattrs.insert(name.to_vec(), value.to_vec());
        }
        let total: usize = xattrs.values().map(Vec::len).sum();
        let list: usize = xattrs.keys().map(|k| k.len() + 1).sum();
        if total > XATTR_TOTAL_MAX || list > XATTR_LIST_MAX {
            return Err(VfsError::new(
                libc::ENOSPC,
                format!("inode {ino}: no room for more extended attributes"),
            ));
        }
        self.change_attrs(ino, false, |content| {
            content.posix.xattrs = xattrs;
            if let Some(bits) = mode {
                content.mode = content.mode & !0o777 | bits;
            }
            if kill_setgid {
                content.mode &= !libc::S_ISGID;
            }
        })?;
        Ok(())
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr, caller: Caller) -> VfsResult<Vec<u8>> {
        let name = name.as_bytes();
        check_xattr_name(ino, name, caller, false)?;
        if super::past::is_virtual(ino) {
            // The view keeps no extended attributes (reads ask for ACLs).
            return Err(VfsError::new(
                libc::ENODATA,
                "no xattrs in the history view",
            ));
        }
        let current = self.xattr_version(ino)?;
        let value = current.posix.xattrs.get(name);
        // A peer may have written anything: the kernel is only handed an
        // ACL it can parse (else it would refuse every access).
        let value =
            value.filter(|value| !acl::is_acl(name) || acl::usable(&current.path, name, value));
        value.cloned().ok_or_else(|| {
            VfsError::new(
                libc::ENODATA,
                format!("inode {ino}: no xattr {}", show(name)),
            )
        })
    }

    /// The names of an inode's extended attributes, each followed by a NUL
    /// (`trusted.*` only for root, as Linux lists them).
    pub fn listxattr(&self, ino: u64, caller: Caller) -> VfsResult<Vec<u8>> {
        if super::past::is_virtual(ino) {
            return Ok(Vec::new());
        }
        let current = self.xattr_version(ino)?;
        let mut out = Vec::new();
        for name in current.posix.xattrs.keys() {
            if name.starts_with(b"trusted.") && caller.uid != 0
                || name.starts_with(b"system.") && !acl::is_acl(name)
            {
                continue;
            }
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr, caller: Caller) -> VfsResult<()> {
        let name = name.as_bytes();
        check_xattr_name(ino, name, caller, true)?;
        let current = self.xattr_version(ino)?;
        if !current.posix.xattrs.contains_key(name) {
            return Err(VfsError::new(
                libc::ENODATA,
                format!("inode {ino}: no xattr {}", show(name)),
            ));
        }
        let name = name.to_vec();
        self.change_attrs(ino, false, |content| {
            content.posix.xattrs.remove(&name);
        })?;
        Ok(())
    }

    /// The root directory as shown before any version of it exists.
    fn root_version(&self) -> Version {
        let mut version = Version {
            id: crate::ids::VersionId {
                secs: 0,
                nanos: 0,
                major: None,
            },
            kind: Kind::Dir,
            path: VPath::root(),
            node: self.store.config().node,
            parents: Vec::new(),
            from: None,
            conflict_of: None,
            size: 0,
            mode: 0o755,
            mtime: Mtime::default(),
            block_size: 0,
            target: None,
            hashes: Vec::new(),
            posix: Posix::default(),
        };
        version.posix.uid = Some(self.uid);
        version.posix.gid = Some(self.gid);
        version
    }
}

/// Checks an xattr name: its length, a namespace Linux knows, and `trusted.*`
/// only for root; the two POSIX ACL names of `system.*` (see [`acl`]).
fn check_xattr_name(ino: u64, name: &[u8], caller: Caller, changing: bool) -> VfsResult<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(VfsError::new(
            libc::ERANGE,
            format!(
                "inode {ino}: an xattr name of {} bytes (1 to {XATTR_NAME_MAX})",
                name.len()
            ),
        ));
    }
    let known = [b"user.".as_slice(), b"trusted.", b"security."]
        .iter()
        .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len())
        || acl::is_acl(name);
    if !known {
        return Err(VfsError::new(
            libc::ENOTSUP,
            format!(
                "inode {ino}: xattr {}: not a namespace this mount keeps",
                show(name)
            ),
        ));
    }
    if name.starts_with(b"trusted.") && caller.uid != 0 {
        let errno = if changing { libc::EPERM } else { libc::ENODATA };
        return Err(VfsError::new(
            errno,
            format!("inode {ino}: trusted.* xattrs are root's"),
        ));
    }
    Ok(())
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
