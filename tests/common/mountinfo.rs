// Included (`include!`) by the mount and sshfs fixtures, which tests pull in
// separately or together.

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &std::path::Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(want.as_ref()))
}
