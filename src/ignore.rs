//! The spec's `ignore` patterns: which volume paths stay local (never queued
//! for peers, never applied from them).
//!
//! The rule, for one pattern (a path is ignored when any pattern matches it):
//!
//! - A pattern that starts with `/` is **anchored** at the volume root. It is
//!   matched against the path written with its leading `/` (`/build/out.o`),
//!   and against each of the path's ancestors, so a pattern naming a directory
//!   keeps everything below it local too (`/secret` covers `/secret/a/b`). In
//!   an anchored pattern `*` and `?` do not match `/`; `**` does
//!   (`/*.txt` is a `.txt` file in the root; `/**/*.txt` is one anywhere).
//! - Any other pattern is matched against the path relative to the root
//!   (`build/out.o`) and against each name in the path, with `*` also matching
//!   `/` (`*.swp` is a swap file anywhere, `cache` any entry named `cache` and
//!   everything below it, `build/**` everything below `/build`).
//! - A pattern `X/**` also matches the directory `X` itself, as a whole path
//!   (`/build/**` and `build/**` cover `/build`, not only what is in it), so
//!   ignoring a tree does not leave its empty directory to be pushed.
//!
//! Names that are not UTF-8 are matched with each invalid byte read as U+FFFD.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::layout::VPath;

/// Compiled `ignore` patterns.
#[derive(Clone, Debug)]
pub struct IgnoreRules {
    /// Patterns without a leading `/`.
    relative: GlobSet,
    /// `X` of relative patterns `X/**`: matched against the whole path only.
    relative_dirs: GlobSet,
    /// Patterns with a leading `/`.
    anchored: GlobSet,
    /// The patterns as the spec gave them.
    patterns: Vec<String>,
}

impl IgnoreRules {
    /// Compiles `patterns`; `None` when there are none. The error names the
    /// first pattern that is not a glob.
    pub fn new(patterns: &[String]) -> Result<Option<IgnoreRules>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut relative = GlobSetBuilder::new();
        let mut relative_dirs = GlobSetBuilder::new();
        let mut anchored = GlobSetBuilder::new();
        for pattern in patterns {
            let (glob, dir) = globs(pattern)?;
            let (set, dirs) = if pattern.starts_with('/') {
                (&mut anchored, None)
            } else {
                (&mut relative, Some(&mut relative_dirs))
            };
            set.add(glob);
            if let Some(dir) = dir {
                dirs.unwrap_or(set).add(dir);
            }
        }
        let build =
            |set: GlobSetBuilder| set.build().map_err(|err| format!("ignore patterns: {err}"));
        Ok(Some(IgnoreRules {
            relative: build(relative)?,
            relative_dirs: build(relative_dirs)?,
            anchored: build(anchored)?,
            patterns: patterns.to_vec(),
        }))
    }

    /// The patterns as the spec gave them.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` stays local.
    pub fn is_match(&self, path: &VPath) -> bool {
        let names: Vec<String> = path
            .names()
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        if names.is_empty() {
            return false;
        }
        if !self.relative.is_empty() {
            let whole = names.join("/");
            if self.relative.is_match(&whole)
                || self.relative_dirs.is_match(&whole)
                || names.iter().any(|name| self.relative.is_match(name))
            {
                return true;
            }
        }
        if !self.anchored.is_empty() {
            let mut prefix = String::new();
            for name in &names {
                prefix.push('/');
                prefix.push_str(name);
                if self.anchored.is_match(&prefix) {
                    return true;
                }
            }
        }
        false
    }
}

/// Checks one pattern as [`IgnoreRules::new`] would compile it (for `validate`).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    globs(pattern).map(|_| ())
}

/// The glob of one pattern and, for `X/**`, the glob of `X`.
fn globs(pattern: &str) -> Result<(Glob, Option<Glob>), String> {
    // Patterns that can never match a volume path are mistakes: say so
    // rather than push what the user meant to keep local.
    if pattern.is_empty() || pattern == "/" {
        return Err(format!("{pattern:?} matches no path"));
    }
    if pattern.contains("//") {
        return Err(format!(
            "{pattern:?} matches no path (a path has no empty names)"
        ));
    }
    if pattern.len() > 1 && pattern.ends_with('/') {
        let dir = pattern.trim_end_matches('/');
        return Err(format!(
            "{pattern:?} matches no path: write {dir:?} (it covers everything below) or \"{dir}/**\""
        ));
    }
    let anchored = pattern.starts_with('/');
    let compile = |text: &str| {
        GlobBuilder::new(text)
            .literal_separator(anchored)
            .build()
            .map_err(|err| format!("{pattern:?} is not a glob: {err}"))
    };
    let dir = match pattern.strip_suffix("/**") {
        Some(dir) if !dir.is_empty() && !dir.ends_with('/') => Some(compile(dir)?),
        _ => None,
    };
    Ok((compile(pattern)?, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> IgnoreRules {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        IgnoreRules::new(&patterns).unwrap().unwrap()
    }

    fn ignored(rules: &IgnoreRules, path: &str) -> bool {
        rules.is_match(&VPath::parse(std::ffi::OsStr::new(path)).unwrap())
    }

    #[test]
    fn anchored_patterns_match_from_the_root_and_cover_subtrees() {
        let r = rules(&["/secret", "/build/**", "/*.txt"]);
        assert!(ignored(&r, "/secret"));
        assert!(ignored(&r, "/secret/a/b"));
        assert!(!ignored(&r, "/x/secret"));
        assert!(ignored(&r, "/build"));
        assert!(ignored(&r, "/build/o"));
        assert!(ignored(&r, "/build/o/p"));
        assert!(!ignored(&r, "/builder"));
        assert!(!ignored(&r, "/x/build/o"));
        assert!(ignored(&r, "/a.txt"));
        assert!(!ignored(&r, "/d/a.txt"));
        assert!(!ignored(&r, "/"));
    }

    #[test]
    fn relative_patterns_match_any_name_or_the_relative_path() {
        let r = rules(&["*.swp", "cache", "out/**"]);
        assert!(ignored(&r, "/a.swp"));
        assert!(ignored(&r, "/d/e/a.swp"));
        assert!(ignored(&r, "/d/cache/x"));
        assert!(ignored(&r, "/out"));
        assert!(ignored(&r, "/out/x/y"));
        assert!(!ignored(&r, "/d/out"));
        assert!(!ignored(&r, "/d/out/x"));
        assert!(!ignored(&r, "/d/a.txt"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = IgnoreRules::new(&["/build/[abc".to_string()]).unwrap_err();
        assert!(err.contains("\"/build/[abc\" is not a glob"), "{err}");
        assert!(check_pattern("/secret").is_ok());
    }

    #[test]
    fn patterns_that_can_never_match_are_refused() {
        for bad in ["", "/", "/secret/", "build/", "/a//b"] {
            let err = check_pattern(bad).unwrap_err();
            assert!(err.contains("matches no path"), "{bad:?}: {err}");
        }
        assert!(
            check_pattern("/secret/")
                .unwrap_err()
                .contains("\"/secret\"")
        );
        for good in ["/secret", "/build/**", "*.swp", "tmp", "/a/*/c"] {
            assert!(check_pattern(good).is_ok(), "{good:?}");
        }
    }
}
