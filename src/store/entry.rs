//! What a version is about, beneath the version file itself: its kind and
//! its times (seconds and nanoseconds, negative seconds before 1970), with
//! the one text form both take in version files.

/// What a version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Tombstone,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Tombstone => "tombstone",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "file" => Kind::File,
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            "tombstone" => Kind::Tombstone,
            _ => return None,
        })
    }

    pub fn is_live(self) -> bool {
        self != Kind::Tombstone
    }
}

/// A modification time: seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    pub fn now() -> Mtime {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Mtime {
            secs: since.as_secs() as i64,
            nanos: since.subsec_nanos(),
        }
    }

    pub fn from_system(time: std::time::SystemTime) -> Mtime {
        match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => Mtime {
                secs: since.as_secs() as i64,
                nanos: since.subsec_nanos(),
            },
            Err(before) => {
                let d = before.duration();
                if d.subsec_nanos() == 0 {
                    Mtime {
                        secs: -(d.as_secs() as i64),
                        nanos: 0,
                    }
                } else {
                    Mtime {
                        secs: -(d.as_secs() as i64) - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    pub fn to_system(self) -> std::time::SystemTime {
        let base = std::time::UNIX_EPOCH;
        if self.secs >= 0 {
            base + std::time::Duration::new(self.secs as u64, self.nanos)
        } else {
            base - std::time::Duration::from_secs(self.secs.unsigned_abs())
                + std::time::Duration::from_nanos(u64::from(self.nanos))
        }
    }
}

/// Parses `<seconds>.<9-digit nanoseconds>`.
pub(super) fn parse_mtime(text: &str) -> Option<Mtime> {
    let (secs, nanos) = text.split_once('.')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Mtime {
        secs: secs.parse().ok()?,
        nanos: nanos.parse().ok()?,
    })
}
