//! `globofs mount`: picks the mount point from the arguments or the spec and
//! hands over to the mount session, [`crate::mount::run`].

use std::path::PathBuf;
use std::time::Duration;

use super::Failure;
use crate::mount::{MountError, Options};
use crate::spec::Spec;

pub fn mount(
    spec: &Spec,
    mountpoint: Option<PathBuf>,
    threads: usize,
    stop_grace: Duration,
) -> Result<(), Failure> {
    let mountpoint_from_spec = mountpoint.is_none();
    let mountpoint = mountpoint
        .or_else(|| spec.mount_path.clone())
        .ok_or_else(|| {
            Failure::input("no mount point: give one or set `mount.path` in the spec")
        })?;
    let options = Options {
        mountpoint,
        mountpoint_from_spec,
        threads,
        stop_grace,
    };
    crate::mount::run(spec, &options).map_err(Failure::from)
}

impl From<MountError> for Failure {
    fn from(err: MountError) -> Failure {
        match err {
            MountError::Input(message) => Failure::input(message),
            MountError::Runtime(message) => Failure::runtime(message),
            MountError::Store(err) => Failure::from(err),
        }
    }
}
