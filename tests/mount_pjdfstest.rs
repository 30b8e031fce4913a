//! The external POSIX suite pjdfstest (the Rust rewrite, crate `pjdfstest`) over
//! a real mount. The set of failing test cases must be exactly the committed
//! list tests/pjdfstest-expected-failures.txt (docs/POSIX.md says why each group
//! fails): a case that newly fails, or a listed case that now passes, fails the
//! test. Skipped when the binary is not installed.

#[path = "common/mount.rs"]
mod mount;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use mount::Mounted;

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PJDFSTEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/tools/bin/pjdfstest"));
    path.is_file().then_some(path)
}

/// Test case names with their outcome from pjdfstest's output
/// (`NAME   ok`, `NAME   FAILED`, `NAME   skipped`).
fn outcomes(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let outcome = words.last()?;
            (name.contains("::") && !line.starts_with(char::is_whitespace))
                .then(|| (name.to_owned(), outcome.to_owned()))
        })
        .collect()
}

#[test]
fn pjdfstest_fails_exactly_the_expected_cases() {
    let Some(bin) = binary() else {
        println!("skipped: pjdfstest not installed (scripts/test.sh installs it)");
        return;
    };
    let m = Mounted::new();
    // Users for the tests that switch users; both exist on Debian.
    let config = m.dir.path().join("pjdfstest.toml");
    std::fs::write(
        &config,
        "[features]\nutimensat = {}\nutime_now = {}\nrename_ctime = {}\nposix_fallocate = {}\n\
         [settings]\nnaptime = 0.001\nallow_remount = false\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
    )
    .expect("write the pjdfstest config");
    let work = m.path("pjdfstest");
    std::fs::create_dir(&work).expect("a directory for the suite");
    // A second filesystem for the EXDEV cases.
    let secondary = m.dir.path().join("secondary");
    std::fs::create_dir(&secondary).expect("a secondary directory");
    let out = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&work)
        .arg("-s")
        .arg(&secondary)
        .current_dir(&work)
        .env("NO_COLOR", "1")
        .env("CLICOLOR", "0")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pjdfstest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(m.dir.path().join("pjdfstest.log"), stdout.as_bytes()).ok();
    let results = outcomes(&stdout);
    assert!(
        results.len() > 300,
        "pjdfstest ran only {} cases: {stdout}\n{}",
        results.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: BTreeSet<String> = results
        .iter()
        .filter(|(_, outcome)| outcome == "FAILED")
        .map(|(name, _)| name.clone())
        .collect();
    let list = mount::project_file("tests/pjdfstest-expected-failures.txt");
    let expected: BTreeSet<String> = std::fs::read_to_string(&list)
        .expect("read tests/pjdfstest-expected-failures.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let new: Vec<&String> = failed.difference(&expected).collect();
    // Listed cases that ran and passed: the list must shrink with them (a
    // listed case skipped here, for want of a feature, is not counted).
    let fixed: Vec<&String> = results
        .iter()
        .filter(|(name, outcome)| outcome == "ok" && expected.contains(name))
        .map(|(name, _)| name)
        .collect();
    assert!(
        new.is_empty(),
        "pjdfstest cases that newly fail: {new:?}\n(full output in {})",
        m.dir.path().join("pjdfstest.log").display()
    );
    assert!(
        fixed.is_empty(),
        "pjdfstest cases that now pass: remove them from {}: {fixed:?}",
        list.display()
    );
    // The mount still answers after the suite.
    std::fs::read_dir(&m.mnt).expect("the mount survived the suite");
}
