//! `cargo xtask tidy`: the architecture and house rules, each check a function that names offenders.

mod ci_files;
mod deps;
mod docs;
mod modules;
mod sources;
mod workflow;

use std::path::Path;

use anyhow::bail;

/// What one check found: problems fail tidy, warnings are only printed.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Findings {
    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn warning(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

type Check = fn(&Path) -> anyhow::Result<Findings>;

const CHECKS: &[(&str, Check)] = &[
    ("dependency rule", deps::check),
    (
        "adapters named only in strata-wiring",
        sources::check_adapters_only_in_wiring,
    ),
    (
        "files start with a //! line",
        sources::check_module_doc_lines,
    ),
    ("no #[ignore]d tests", sources::check_no_ignored_tests),
    (
        "no two files of a crate import each other",
        modules::check_no_mutual_imports,
    ),
    (
        "docs/architecture.md names only what exists",
        docs::check_architecture_paths,
    ),
    ("CI runs the README's test command", ci_files::check),
    (
        "the GitHub workflow runs .ci/run on the pinned toolchain",
        workflow::check,
    ),
];

/// Runs every check, prints what each found, and fails if any found a problem.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut failed = 0;
    for (name, check) in CHECKS {
        let findings = check(root).unwrap_or_else(|error| Findings {
            problems: vec![format!("could not run this check: {error:#}")],
            warnings: Vec::new(),
        });
        for warning in &findings.warnings {
            eprintln!("warning: {name}: {warning}");
        }
        if findings.problems.is_empty() {
            eprintln!("tidy: {name}: ok");
        } else {
            failed += 1;
            for problem in &findings.problems {
                eprintln!("error: {name}: {problem}");
            }
        }
    }
    if failed > 0 {
        bail!("tidy: {failed} of {} checks failed", CHECKS.len());
    }
    Ok(())
}
