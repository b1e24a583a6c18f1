//! The rule that keeps a crate's rooms in one direction: no two files of a crate import each
//! other through `crate::` paths (a parent and its own child modules, which see each other by
//! `super::`, are one room and not counted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Findings;
use super::sources::{code_lines, display, read, rust_files};

/// The source trees whose files are checked, one crate each.
fn crate_sources(root: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut dirs = vec![root.join("xtask/src")];
    let crates = std::fs::read_dir(root.join("crates"))?;
    for entry in crates {
        let src = entry?.path().join("src");
        if src.is_dir() {
            dirs.push(src);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// `cargo xtask tidy` rule: within a crate, if file A uses `crate::b::…`, file B does not use
/// `crate::a::…` (tests excluded: they may reach anywhere).
pub fn check_no_mutual_imports(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    for src in crate_sources(root)? {
        let mut modules = BTreeMap::new();
        for file in rust_files(&src)? {
            let text = read(&file)?;
            modules.insert(module_path(&src, &file), (file, text));
        }
        let known: BTreeSet<String> = modules.keys().cloned().collect();
        let imports: BTreeMap<&String, BTreeSet<String>> = modules
            .iter()
            .map(|(module, (_, text))| (module, imported_modules(text, &known, module)))
            .collect();
        for (module, targets) in &imports {
            for target in targets {
                let mutual = imports
                    .get(target)
                    .is_some_and(|back| back.contains(module.as_str()));
                if mutual && module.as_str() < target.as_str() {
                    let (file, _) = &modules[*module];
                    let (other, _) = &modules[target];
                    findings.problem(format!(
                        "{} and {} import each other; move what both need into a third module",
                        display(root, file),
                        display(root, other)
                    ));
                }
            }
        }
    }
    Ok(findings)
}

/// The module path of a file (`rows::orders` for `src/rows/orders.rs`, `rows` for
/// `src/rows/mod.rs` or `src/rows.rs`; the crate root is empty).
fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts.join("::")
}

/// The modules (files) of `known` that `text` names through `crate::` outside its tests, each
/// resolved to the longest known prefix of the path, other than the file itself and the root.
fn imported_modules(text: &str, known: &BTreeSet<String>, own: &str) -> BTreeSet<String> {
    let code = outside_tests(text);
    crate_paths(&code)
        .into_iter()
        .filter_map(|path| {
            let parts: Vec<&str> = path.split("::").collect();
            (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| known.contains(candidate))
        })
        .filter(|module| module != own && !module.is_empty())
        .collect()
}

/// The code of `text` without its tests: a `#[cfg(test)] mod x;` declaration is left out alone
/// (the file's imports may follow it); a `#[cfg(test)]` block ends what is read, as test modules
/// close their files.
fn outside_tests(text: &str) -> String {
    let mut code = String::new();
    let mut lines = code_lines(text).map(|(_, line)| line);
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.next() {
                Some(item) if item.trim_end().ends_with(';') => continue,
                _ => break,
            }
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every path written after `crate::`, with grouped imports (`crate::{a::X, b}`) expanded one
/// level deep.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` in macros and identifiers ending in `crate` are not paths of this crate.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = closing_brace(group);
            for item in split_top_level(&group[..end]) {
                paths.push(leading_path(item.trim()));
            }
        } else {
            paths.push(leading_path(rest));
        }
    }
    paths.retain(|path| !path.is_empty());
    paths
}

/// The index of the `}` closing a group that starts just before `text`.
fn closing_brace(text: &str) -> usize {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return index,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// Splits a group's items on the commas outside nested braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The lower-case `a::b::c` path at the start of `text` (module names are lower case; it stops
/// at a type name, a brace or anything else).
fn leading_path(text: &str) -> String {
    let mut segments = Vec::new();
    for segment in text.split("::") {
        let name: String = segment
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        let whole = name.len() == segment.len();
        segments.push(name);
        if !whole {
            break;
        }
    }
    segments.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(modules: &[&str]) -> BTreeSet<String> {
        modules.iter().map(|m| (*m).to_owned()).collect()
    }

    #[test]
    fn paths_are_read_from_uses_groups_and_expressions_but_not_comments_or_tests() {
        let text = "//! Doc naming crate::gone.\n\
                    #[cfg(test)]\n\
                    mod declared_tests;\n\
                    use crate::error::ApiError;\n\
                    use crate::{limits::{Kind, Other}, state, rows::orders::Row};\n\
                    // crate::commented\n\
                    fn f() { crate::metrics::record(); $crate::macro_only::x(); }\n\
                    #[cfg(test)]\n\
                    mod tests { use crate::tested::X; }\n";
        let modules = known(&[
            "error",
            "limits",
            "state",
            "rows",
            "rows::orders",
            "metrics",
            "gone",
            "commented",
            "macro_only",
            "tested",
            "own",
        ]);

        let found = imported_modules(text, &modules, "own");

        assert_eq!(
            found,
            known(&["error", "limits", "metrics", "rows::orders", "state"])
        );
    }

    #[test]
    fn files_map_to_module_paths() {
        let src = Path::new("/x/src");
        assert_eq!(module_path(src, Path::new("/x/src/lib.rs")), "");
        assert_eq!(module_path(src, Path::new("/x/src/rows/mod.rs")), "rows");
        assert_eq!(
            module_path(src, Path::new("/x/src/rows/orders.rs")),
            "rows::orders"
        );
        assert_eq!(module_path(src, Path::new("/x/src/batch.rs")), "batch");
    }

    #[test]
    fn two_files_that_import_each_other_are_named_and_one_way_imports_are_not() {
        let root = std::env::temp_dir().join(format!("tidy-modules-{}", std::process::id()));
        let src = root.join("crates/demo/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("lib.rs"), "//! Demo.\nmod a;\nmod b;\nmod c;\n").unwrap();
        std::fs::write(
            src.join("a.rs"),
            "//! A.\nuse crate::b::B;\nuse crate::c::C;\n",
        )
        .unwrap();
        std::fs::write(src.join("b.rs"), "//! B.\nuse crate::a::A;\n").unwrap();
        std::fs::write(src.join("c.rs"), "//! C.\nuse crate::lib_only;\n").unwrap();

        let findings = check_no_mutual_imports(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();

        assert_eq!(findings.problems.len(), 1, "{:?}", findings.problems);
        assert!(findings.problems[0].starts_with("crates/demo/src/a.rs and crates/demo/src/b.rs"));
    }
}
