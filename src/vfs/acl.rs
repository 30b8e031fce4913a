//! POSIX ACLs: the `system.posix_acl_access` and `system.posix_acl_default`
//! extended attributes in Linux's binary form, and the three places where an
//! ACL and the mode bits must agree: setting an access ACL (the mode follows
//! it, and an ACL that says no more than the mode is not kept), chmod (the
//! ACL follows the mode) and creating in a directory with a default ACL (the
//! new entry inherits it, and the umask does not apply). The kernel enforces
//! the ACLs (the mount asks for `FUSE_POSIX_ACL`); this module only keeps
//! them consistent with the mode, as an ACL-aware local file system does.
//!
//! The binary form: a little-endian `u32` version (2), then one 8-byte entry
//! per rule: `u16` tag, `u16` permissions (`rwx` as 4, 2, 1), `u32` id (the
//! uid or gid of a named entry; unused for the others).

use std::collections::BTreeMap;

use super::error::{VfsError, VfsResult};
use crate::layout::VPath;
use crate::store::{Kind, Version};

/// The name of the access ACL attribute.
pub(super) const ACCESS: &[u8] = b"system.posix_acl_access";
/// The name of a directory's default ACL attribute.
pub(super) const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// One rule of an ACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed, valid ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Acl {
    entries: Vec<Entry>,
}

/// Why an ACL value was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadAcl(pub(super) &'static str);

impl Acl {
    /// Parses and checks an ACL as `setfacl` hands it to the kernel: the
    /// owner, group and other entries once each, a mask when there are named
    /// entries, no id named twice, entries in the kernel's order.
    pub(super) fn parse(value: &[u8]) -> Result<Acl, BadAcl> {
        let Some((head, body)) = value.split_first_chunk::<4>() else {
            return Err(BadAcl("shorter than its 4-byte header"));
        };
        if u32::from_le_bytes(*head) != VERSION {
            return Err(BadAcl("not version 2"));
        }
        if body.len() % 8 != 0 {
            return Err(BadAcl("not a whole number of 8-byte entries"));
        }
        let entries: Vec<Entry> = body
            .chunks_exact(8)
            .map(|raw| Entry {
                tag: u16::from_le_bytes([raw[0], raw[1]]),
                perm: u16::from_le_bytes([raw[2], raw[3]]),
                id: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
            })
            .collect();
        let acl = Acl { entries };
        acl.check()?;
        Ok(acl)
    }

    fn check(&self) -> Result<(), BadAcl> {
        let rank = |tag| match tag {
            USER_OBJ => Some(0),
            USER => Some(1),
            GROUP_OBJ => Some(2),
            GROUP => Some(3),
            MASK => Some(4),
            OTHER => Some(5),
            _ => None,
        };
        let mut last: Option<(u8, u32)> = None;
        let mut count = [0usize; 6];
        for entry in &self.entries {
            let Some(rank) = rank(entry.tag) else {
                return Err(BadAcl("an entry of an unknown kind"));
            };
            if entry.perm & !7 != 0 {
                return Err(BadAcl("permissions beyond rwx"));
            }
            let named = entry.tag == USER || entry.tag == GROUP;
            let key = (rank, if named { entry.id } else { 0 });
            if last.is_some_and(|last| last >= key) {
                return Err(BadAcl("entries out of order or named twice"));
            }
            last = Some(key);
            count[rank as usize] += 1;
        }
        if count[0] != 1 || count[2] != 1 || count[5] != 1 {
            return Err(BadAcl("not exactly one owner, group and other entry"));
        }
        if count[1] + count[3] > 0 && count[4] == 0 {
            return Err(BadAcl("named entries without a mask"));
        }
        Ok(())
    }

    /// The binary form.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.tag.to_le_bytes());
            out.extend_from_slice(&entry.perm.to_le_bytes());
            out.extend_from_slice(&entry.id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: u16) -> Option<u32> {
        self.entries
            .iter()
            .find(|entry| entry.tag == tag)
            .map(|entry| u32::from(entry.perm))
    }

    /// The `rwxrwxrwx` bits this ACL stands for: the owner entry, the mask
    /// (or the group entry when there is no mask), the other entry.
    pub(super) fn mode_bits(&self) -> u32 {
        let owner = self.perm_of(USER_OBJ).unwrap_or(0);
        let group = self
            .perm_of(MASK)
            .or_else(|| self.perm_of(GROUP_OBJ))
            .unwrap_or(0);
        let other = self.perm_of(OTHER).unwrap_or(0);
        owner << 6 | group << 3 | other
    }

    /// Whether the mode bits say all of it (owner, group and other only).
    pub(super) fn is_just_the_mode(&self) -> bool {
        self.entries
            .iter()
            .all(|entry| matches!(entry.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    /// Calls `change(perm, bits)` on the owner, mask (or group, when there
    /// is no mask) and other entries, with `mode`'s bits for each.
    fn each_class(&mut self, mode: u32, change: impl Fn(&mut u16, u16)) {
        let has_mask = self.perm_of(MASK).is_some();
        for entry in &mut self.entries {
            let bits = match entry.tag {
                USER_OBJ => mode >> 6,
                GROUP_OBJ if !has_mask => mode >> 3,
                MASK => mode >> 3,
                OTHER => mode,
                _ => continue,
            };
            change(&mut entry.perm, (bits & 7) as u16);
        }
    }

    /// chmod: the owner, mask (or group) and other entries take `mode`'s bits.
    pub(super) fn follow_mode(&mut self, mode: u32) {
        self.each_class(mode, |perm, bits| *perm = bits);
    }

    /// A new entry's access ACL from its directory's default ACL: the owner,
    /// mask (or group) and other entries narrowed to the `mode` asked for.
    fn narrowed_to(&self, mode: u32) -> Acl {
        let mut acl = self.clone();
        acl.each_class(mode, |perm, bits| *perm &= bits);
        acl
    }
}

/// The mode and ACLs of something created with `mode` (type bits and
/// setuid/setgid/sticky kept as given) in a directory whose default ACL is
/// `default` (`None`: no default ACL, and `umask` applies instead). The
/// returned attributes are the ones to add to the new entry's xattrs.
pub(super) fn on_create(
    mode: u32,
    umask: u32,
    default: Option<&Acl>,
    dir: bool,
) -> (u32, BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut xattrs = BTreeMap::new();
    let Some(default) = default else {
        return (mode & !(umask & 0o777), xattrs);
    };
    let access = default.narrowed_to(mode);
    let mode = (mode & !0o777) | access.mode_bits();
    if !access.is_just_the_mode() {
        xattrs.insert(ACCESS.to_vec(), access.to_bytes());
    }
    if dir {
        xattrs.insert(DEFAULT.to_vec(), default.to_bytes());
    }
    (mode, xattrs)
}

/// Whether `name` is one of the two ACL attributes.
pub(super) fn is_acl(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

/// Whether a stored ACL can be handed to the kernel (one from a peer may be
/// anything; a bad one is logged and not shown, so the mode bits rule).
pub(super) fn usable(path: &VPath, name: &[u8], value: &[u8]) -> bool {
    match Acl::parse(value) {
        Ok(_) => true,
        Err(BadAcl(why)) => {
            tracing::warn!(
                "{path}: ignoring a bad {}: {why}",
                String::from_utf8_lossy(name)
            );
            false
        }
    }
}

/// setxattr of an ACL on `current`: checks it and puts it in `xattrs` (an
/// access ACL that says no more than the mode is not kept). Returns the
/// `rwxrwxrwx` bits the mode takes from an access ACL.
pub(super) fn on_set(
    ino: u64,
    current: &Version,
    name: &[u8],
    value: &[u8],
    xattrs: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> VfsResult<Option<u32>> {
    let path = &current.path;
    if name == DEFAULT && current.kind != Kind::Dir {
        return Err(VfsError::new(
            libc::EACCES,
            format!("{path} (inode {ino}): a default ACL is only for directories"),
        ));
    }
    let acl = Acl::parse(value).map_err(|BadAcl(why)| {
        VfsError::new(
            libc::EINVAL,
            format!(
                "{path} (inode {ino}): {}: {why}",
                String::from_utf8_lossy(name)
            ),
        )
    })?;
    if name == DEFAULT {
        xattrs.insert(DEFAULT.to_vec(), acl.to_bytes());
        return Ok(None);
    }
    if acl.is_just_the_mode() {
        xattrs.remove(ACCESS);
    } else {
        xattrs.insert(ACCESS.to_vec(), acl.to_bytes());
    }
    Ok(Some(acl.mode_bits()))
}

/// chmod to `mode`: an access ACL's owner, mask (or group) and other entries
/// follow it.
pub(super) fn follow_chmod(xattrs: &mut BTreeMap<Vec<u8>, Vec<u8>>, mode: u32) {
    let Some(value) = xattrs.get_mut(ACCESS) else {
        return;
    };
    if let Ok(mut acl) = Acl::parse(value) {
        acl.follow_mode(mode);
        *value = acl.to_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id written in entries that name no one (the owner, group, mask, other).
    const NO_ID: u32 = u32::MAX;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
        .to_bytes()
    }

    fn base(owner: u16, group: u16, other: u16) -> Vec<(u16, u16, u32)> {
        vec![
            (USER_OBJ, owner, NO_ID),
            (GROUP_OBJ, group, NO_ID),
            (OTHER, other, NO_ID),
        ]
    }

    #[test]
    fn a_mode_only_acl_is_just_the_mode() {
        let parsed = Acl::parse(&acl(&base(6, 4, 0))).unwrap();
        assert!(parsed.is_just_the_mode());
        assert_eq!(parsed.mode_bits(), 0o640);
        assert_eq!(parsed.to_bytes(), acl(&base(6, 4, 0)));
    }

    #[test]
    fn the_mask_stands_for_the_group_bits() {
        let entries = vec![
            (USER_OBJ, 7, NO_ID),
            (USER, 5, 1000),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 1, NO_ID),
            (OTHER, 0, NO_ID),
        ];
        let mut parsed = Acl::parse(&acl(&entries)).unwrap();
        assert!(!parsed.is_just_the_mode());
        assert_eq!(parsed.mode_bits(), 0o710);
        parsed.follow_mode(0o654);
        // chmod moves the mask, not the group entry; the named user stays.
        assert_eq!(
            parsed.to_bytes(),
            acl(&[
                (USER_OBJ, 6, NO_ID),
                (USER, 5, 1000),
                (GROUP_OBJ, 5, NO_ID),
                (MASK, 5, NO_ID),
                (OTHER, 4, NO_ID),
            ])
        );
    }

    #[test]
    fn bad_acls_are_refused_with_a_reason() {
        assert!(Acl::parse(&[2, 0]).is_err());
        assert!(Acl::parse(&[1, 0, 0, 0]).is_err());
        let mut short = acl(&base(7, 5, 5));
        short.pop();
        assert!(Acl::parse(&short).is_err());
        // Named entries need a mask.
        let no_mask = acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 7, 5),
            (GROUP_OBJ, 5, NO_ID),
            (OTHER, 0, NO_ID),
        ]);
        assert_eq!(
            Acl::parse(&no_mask),
            Err(BadAcl("named entries without a mask"))
        );
        // A user named twice, entries out of order, no other entry, bad perms.
        let twice = acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 7, 5),
            (USER, 1, 5),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 7, NO_ID),
            (OTHER, 0, NO_ID),
        ]);
        assert!(Acl::parse(&twice).is_err());
        let order = acl(&[
            (GROUP_OBJ, 5, NO_ID),
            (USER_OBJ, 7, NO_ID),
            (OTHER, 0, NO_ID),
        ]);
        assert!(Acl::parse(&order).is_err());
        assert!(Acl::parse(&acl(&base(7, 5, 5)[..2])).is_err());
        assert!(Acl::parse(&acl(&base(8, 5, 5))).is_err());
        assert!(Acl::parse(&acl(&[(0x40, 7, NO_ID)])).is_err());
    }

    #[test]
    fn creating_under_a_default_acl_inherits_it_and_ignores_the_umask() {
        let default = Acl::parse(&acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 7, NO_ID),
            (OTHER, 5, NO_ID),
        ]))
        .unwrap();
        // A file asked for as 0666: no x bits; the umask 077 is not applied.
        let (mode, xattrs) = on_create(0o100666, 0o077, Some(&default), false);
        assert_eq!(mode, 0o100666 & !0o777 | 0o664);
        assert_eq!(
            xattrs.get(ACCESS).unwrap(),
            &acl(&[
                (USER_OBJ, 6, NO_ID),
                (USER, 7, 1000),
                (GROUP_OBJ, 5, NO_ID),
                (MASK, 6, NO_ID),
                (OTHER, 4, NO_ID),
            ])
        );
        assert!(!xattrs.contains_key(DEFAULT));
        // A directory keeps the default for its own children.
        let (mode, xattrs) = on_create(0o2755, 0o077, Some(&default), true);
        assert_eq!(mode, 0o2755);
        assert_eq!(xattrs.get(DEFAULT).unwrap(), &default.to_bytes());
        // Without a default ACL the umask applies and nothing is added.
        let (mode, xattrs) = on_create(0o100666, 0o022, None, false);
        assert_eq!((mode, xattrs.len()), (0o100644, 0));
        // A default that says only the mode leaves no access ACL behind.
        let plain = Acl::parse(&acl(&base(7, 5, 0))).unwrap();
        let (mode, xattrs) = on_create(0o644, 0, Some(&plain), false);
        assert_eq!(mode, 0o640);
        assert!(!xattrs.contains_key(ACCESS));
    }
}
