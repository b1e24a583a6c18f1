//! Keeps the code map true: every file or directory `docs/architecture.md` names (in backticks or
//! as a link) exists, so a room that moves cannot leave the map pointing at nothing.

use std::fs;
use std::path::Path;

use anyhow::Context;

use super::Findings;
use super::sources::read;

/// The map checked.
const ARCHITECTURE: &str = "docs/architecture.md";

/// Top-level directories a name may start from; any other name must end some path of the
/// repository (the map names files inside a crate by their path in it, e.g. `rows/orders.rs`).
const ROOTS: &[&str] = &[
    "crates/",
    "xtask/",
    "tests/",
    "docs/",
    ".ci/",
    ".github/",
    "bench/",
    "examples/",
];

/// Extensions that make a backticked word a file name.
const EXTENSIONS: &[&str] = &[".rs", ".sql", ".toml", ".md", ".json", ".ts", ".yml", ".sh"];

/// `cargo xtask tidy` rule: what `docs/architecture.md` names exists.
pub fn check_architecture_paths(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    let text = read(&root.join(ARCHITECTURE))?;
    let mut paths = Vec::new();
    walk(root, root, &mut paths)?;
    for (line, name) in named_paths(&text) {
        let exists = if let Some(target) = name.strip_prefix("LINK:") {
            root.join("docs").join(target).exists()
        } else if ROOTS.iter().any(|r| name.starts_with(r)) {
            root.join(&name).exists()
        } else {
            let suffix = format!("/{}", name.trim_end_matches('/'));
            paths.iter().any(|p| p.ends_with(&suffix))
        };
        if !exists {
            findings.problem(format!(
                "{ARCHITECTURE}:{line} names `{}`, which does not exist; update the map",
                name.trim_start_matches("LINK:")
            ));
        }
    }
    Ok(findings)
}

/// The file and directory names of the map with their line numbers: backticked words that look
/// like paths, and the targets of relative links (prefixed `LINK:`, relative to `docs/`).
fn named_paths(text: &str) -> Vec<(usize, String)> {
    let mut names = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        for (position, word) in line.split('`').enumerate() {
            if position % 2 == 1 && looks_like_path(word) {
                names.push((number, word.to_owned()));
            }
        }
        for (at, _) in line.match_indices("](") {
            let target: String = line[at + 2..].chars().take_while(|c| *c != ')').collect();
            let target = target.split('#').next().unwrap_or_default();
            if !target.is_empty() && !target.contains("://") {
                names.push((number, format!("LINK:{target}")));
            }
        }
    }
    names
}

/// A word with only path characters that ends in a known extension or names a directory
/// (`dir/`); patterns (`<name>`, `*`) and bare words are not paths.
fn looks_like_path(word: &str) -> bool {
    let path_chars = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'));
    let file = EXTENSIONS.iter().any(|e| word.ends_with(e)) && !word.starts_with('.');
    let directory = word.ends_with('/') && word.len() > 1;
    // `/openapi.json` is a route and `target/` build output, not files of the repository.
    let elsewhere = word.starts_with('/') || word.starts_with("target/");
    path_chars
        && !elsewhere
        && (file || directory || word.starts_with(".ci/") || word.starts_with(".github/"))
}

/// Every file and directory path under `dir`, relative to `root` with a leading `/`, skipping
/// build output and dependencies.
fn walk(root: &Path, dir: &Path, paths: &mut Vec<String>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "target" | ".git" | "node_modules") {
            continue;
        }
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        paths.push(format!("/{}", relative.display()));
        if entry.file_type()?.is_dir() {
            walk(root, &path, paths)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticked_paths_and_relative_links_are_read_but_not_patterns_or_words() {
        let text = "See `crates/ports/src/lib.rs`, `rows/orders.rs` and `migrations/`.\n\
                    Not `<file>-wal`, `strata_rebuild_<name>`, `Order`, `a.b`, `*.rs`, `/`, `/openapi.json` or `target/x/`.\n\
                    [0001](decisions/0001-x.md#why) and [web](https://example.com/a.md).\n";

        let names = named_paths(text);

        assert_eq!(
            names,
            [
                (1, "crates/ports/src/lib.rs".to_owned()),
                (1, "rows/orders.rs".to_owned()),
                (1, "migrations/".to_owned()),
                (3, "LINK:decisions/0001-x.md".to_owned()),
            ]
        );
    }

    #[test]
    fn a_name_that_no_longer_exists_is_reported_with_its_line() {
        let root = std::env::temp_dir().join(format!("tidy-docs-{}", std::process::id()));
        fs::create_dir_all(root.join("docs/decisions")).unwrap();
        fs::create_dir_all(root.join("crates/demo/src/rows")).unwrap();
        fs::write(root.join("crates/demo/src/rows/orders.rs"), "//! Rows.\n").unwrap();
        fs::write(root.join("docs/decisions/0001-x.md"), "# x\n").unwrap();
        fs::write(
            root.join(ARCHITECTURE),
            "`rows/orders.rs`, `crates/demo/src/rows/`, [d](decisions/0001-x.md)\n\
             `read_models.rs` and [gone](decisions/0002-y.md)\n",
        )
        .unwrap();

        let findings = check_architecture_paths(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();

        assert_eq!(
            findings.problems,
            [
                "docs/architecture.md:2 names `read_models.rs`, which does not exist; update the map",
                "docs/architecture.md:2 names `decisions/0002-y.md`, which does not exist; update the map",
            ]
        );
    }
}
