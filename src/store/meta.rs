//! The store's `format` file: format version, node id and the nonce made when the
//! store was created (two stores claiming one node id can be told apart by it).

use std::io::Write;
use std::path::Path;

use crate::ids::{NodeId, VersionId};

use super::StoreError;

/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What the `format` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreMeta {
    pub format: u32,
    pub node: NodeId,
    /// 32 lowercase hex digits, random, made once at creation.
    pub nonce: String,
    pub created: VersionId,
}

impl StoreMeta {
    /// A new store's meta for `node`.
    pub fn fresh(node: NodeId) -> StoreMeta {
        StoreMeta {
            format: FORMAT_VERSION,
            node,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            created: VersionId::now(None),
        }
    }

    pub fn to_text(&self) -> String {
        format!(
            "globofs-store {}\nnode {}\nnonce {}\ncreated {}\n",
            self.format, self.node, self.nonce, self.created
        )
    }

    /// Parses a `format` file; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<StoreMeta, StoreError> {
        let bad = |why: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let mut format = None;
        let mut node = None;
        let mut nonce = None;
        let mut created = None;
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "globofs-store" => {
                    format = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| bad(format!("bad format version {value:?}")))?,
                    )
                }
                "node" => node = Some(value.parse::<NodeId>().map_err(bad)?),
                "nonce" => {
                    if value.len() != 32 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(format!("bad nonce {value:?}")));
                    }
                    nonce = Some(value.to_string());
                }
                "created" => created = Some(value.parse::<VersionId>().map_err(bad)?),
                // Later format versions may add keys; unknown keys are ignored.
                _ => {}
            }
        }
        let format = format.ok_or_else(|| bad("no `globofs-store` line".into()))?;
        if format > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        Ok(StoreMeta {
            format,
            node: node.ok_or_else(|| bad("no `node` line".into()))?,
            nonce: nonce.ok_or_else(|| bad("no `nonce` line".into()))?,
            created: created.ok_or_else(|| bad("no `created` line".into()))?,
        })
    }

    pub fn read(path: &Path) -> Result<StoreMeta, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|err| StoreError::io(path, err))?;
        StoreMeta::parse(path, &text)
    }

    /// Writes the file atomically (temp file, fsync, rename) in its directory.
    pub fn write(&self, path: &Path) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|err| StoreError::io(dir, err))?;
        tmp.write_all(self.to_text().as_bytes())
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|err| StoreError::io(path, err))?;
        set_mode(tmp.path(), 0o644)?;
        tmp.persist(path)
            .map_err(|err| StoreError::io(path, err.error))?;
        Ok(())
    }
}

/// Sets permission bits on `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| StoreError::io(path, err))
}
