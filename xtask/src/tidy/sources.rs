//! Checks on the Rust sources themselves: adapters named only in `strata-wiring` (which hands
//! none of their types on), a `//!` line opening every file, and no `#[ignore]`d tests.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Findings;

/// The binaries' source trees, which name no adapter (their `tests/` may, to arrange and
/// inspect the storage).
const BINARY_SOURCES: &[&str] = &["crates/web/src", "crates/projector/src"];

/// The wiring's source tree: the one place that names adapters.
const WIRING_SOURCES: &str = "crates/wiring/src";

/// `cargo xtask tidy` rule: the binaries' sources never name `strata_adapters_*` (they wire
/// through `strata-wiring`), and the wiring never re-exports an adapter (`pub use`), which
/// would let them name one through it. The dependency rule (`deps.rs`) covers the rest.
pub fn check_adapters_only_in_wiring(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    for dir in BINARY_SOURCES {
        for file in rust_files(&root.join(dir))? {
            for line in lines_naming_adapters(&read(&file)?) {
                findings.problem(format!(
                    "{}:{line} names `strata_adapters_`; only strata-wiring names adapters (use its ports and types)",
                    display(root, &file)
                ));
            }
        }
    }
    for file in rust_files(&root.join(WIRING_SOURCES))? {
        for line in adapter_reexport_lines(&read(&file)?) {
            findings.problem(format!(
                "{}:{line} re-exports an adapter; strata-wiring hands on ports and its own types only",
                display(root, &file)
            ));
        }
    }
    Ok(findings)
}

/// `cargo xtask tidy` rule: every `.rs` file opens with a `//!` line saying what lives there.
pub fn check_module_doc_lines(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    for dir in ["crates", "xtask", "tests"] {
        for file in rust_files(&root.join(dir))? {
            if !starts_with_module_doc(&read(&file)?) {
                findings.problem(format!(
                    "{}: the first line must be a `//!` line saying what lives in the file",
                    display(root, &file)
                ));
            }
        }
    }
    Ok(findings)
}

/// `cargo xtask tidy` rule: never hide a failing test with `#[ignore]`.
pub fn check_no_ignored_tests(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    for dir in ["crates", "tests"] {
        for file in rust_files(&root.join(dir))? {
            for line in ignore_attribute_lines(&read(&file)?) {
                findings.problem(format!(
                    "{}:{line} has #[ignore]; fix or delete the test instead of hiding it",
                    display(root, &file)
                ));
            }
        }
    }
    Ok(findings)
}

/// One-based numbers of code lines (not comments) that name an adapter crate.
fn lines_naming_adapters(text: &str) -> Vec<usize> {
    code_lines(text)
        .filter(|(_, line)| line.contains("strata_adapters_"))
        .map(|(number, _)| number)
        .collect()
}

/// One-based numbers of the lines starting a `pub use` of an adapter crate (also one spread
/// over several lines, or inside braces).
fn adapter_reexport_lines(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    // The statement being read: its first line, and whether it names an adapter so far.
    let mut statement: Option<(usize, bool)> = None;
    for (number, line) in code_lines(text) {
        let code = line.trim_start();
        if statement.is_none() && code.starts_with("pub use ") {
            statement = Some((number, false));
        }
        if let Some((first, named)) = &mut statement {
            *named |= code.contains("strata_adapters_");
            if code.contains(';') {
                if *named {
                    found.push(*first);
                }
                statement = None;
            }
        }
    }
    found
}

/// Whether the very first line (after a byte-order mark, if any) starts with `//!`.
fn starts_with_module_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').starts_with("//!")
}

/// One-based numbers of code lines carrying `#[ignore]`, `#[ignore = "…"]` or a `cfg_attr(…, ignore)`.
fn ignore_attribute_lines(text: &str) -> Vec<usize> {
    code_lines(text)
        .filter(|(_, line)| {
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            has_word_after(&compact, "#[ignore")
                || (compact.contains("#[cfg_attr(")
                    && (has_word_after(&compact, ",ignore") || has_word_after(&compact, "(ignore")))
        })
        .map(|(number, _)| number)
        .collect()
}

/// Whether `needle` occurs in `haystack` not followed by an identifier character.
fn has_word_after(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        haystack[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|next| !(next.is_alphanumeric() || next == '_'))
    })
}

/// Numbered lines that are not line comments (doc comments included).
pub(super) fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

/// All `.rs` files under `dir`, sorted, skipping `target` and hidden directories; none if `dir`
/// does not exist.
pub(super) fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if dir.is_dir() {
        collect(dir, &mut files)?;
    }
    files.sort();
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect(&path, files)?;
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    Ok(())
}

pub(super) fn read(file: &Path) -> anyhow::Result<String> {
    fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub(super) fn display(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_must_be_a_module_doc_line() {
        assert!(starts_with_module_doc(
            "//! The order aggregate.\nuse std::fmt;\n"
        ));
        assert!(starts_with_module_doc(
            "\u{feff}//! With a byte-order mark.\n"
        ));
        assert!(!starts_with_module_doc(
            "#![forbid(unsafe_code)]\n//! Too late.\n"
        ));
        assert!(!starts_with_module_doc(
            "/// An item doc, not a module doc.\n"
        ));
        assert!(!starts_with_module_doc("\n//! After a blank line.\n"));
        assert!(!starts_with_module_doc(" //! Indented.\n"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn every_form_of_ignore_is_found_with_its_line() {
        let text = "//! Tests.\n#[test]\n#[ignore]\nfn a() {}\n#[ignore = \"slow\"]\nfn b() {}\n\
                    #[ cfg_attr(ci, ignore) ]\nfn c() {}\n  #[ignore(reason)]\n";
        assert_eq!(ignore_attribute_lines(text), vec![3, 5, 7, 9]);
    }

    #[test]
    fn comments_and_lookalikes_are_not_ignore_attributes() {
        let text = "//! Never use #[ignore] here.\n// #[ignore]\n/// see #[ignore]\n\
                    #[ignore_this_lint]\n#[cfg_attr(ci, ignored_feature)]\n";
        assert_eq!(ignore_attribute_lines(text), Vec::<usize>::new());
    }

    #[test]
    fn adapter_names_in_code_are_found_but_not_in_comments() {
        let text = "//! Routes; adapters are wired in `strata_adapters_postgres` at start-up.\n\
                    use strata_application::Service;\n\
                    use strata_adapters_postgres::PgEventStore;\n";
        assert_eq!(lines_naming_adapters(text), vec![3]);
    }

    #[test]
    fn the_wiring_may_use_adapters_but_not_re_export_them() {
        let text = "//! Wiring; `pub use strata_adapters_sqlite::Storage` was the hole.\n\
                    use strata_adapters_postgres::PgEventStore;\n\
                    pub use crate::storage::Storage;\n\
                    pub use strata_adapters_sqlite::SqliteSettings;\n\
                    pub use {\n    crate::Stores,\n    strata_adapters_postgres::PgSettings,\n};\n\
                    pub(crate) use strata_adapters_sqlite::SqliteEventStore;\n";
        assert_eq!(adapter_reexport_lines(text), vec![4, 5]);
    }
}
