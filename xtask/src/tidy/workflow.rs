//! CI has one entry point: the GitHub workflow runs `.ci/run` on the toolchain that
//! `rust-toolchain.toml` pins, and repeats none of the script's steps.

use std::fs;
use std::path::Path;

use super::Findings;

/// The workflow GitHub runs on every push.
const WORKFLOW: &str = ".github/workflows/ci.yml";

/// Commands that belong in `.ci/run` alone: a workflow that runs them repeats the script's
/// steps, and the two drift apart (the workflow once installed its tools otherwise).
const CI_STEPS: &[&str] = &[
    "cargo test",
    "cargo clippy",
    "cargo fmt",
    "cargo xtask",
    "pip install",
    "npm ci",
    "npm install",
];

/// `cargo xtask tidy` rule: the workflow runs `.ci/run`, nothing that duplicates it, on the
/// toolchain `rust-toolchain.toml` pins.
pub fn check(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    let pinned = fs::read_to_string(root.join("rust-toolchain.toml")).unwrap_or_default();
    let channel = toolchain_channel(&pinned);
    if channel.is_none() {
        findings.problem("rust-toolchain.toml is missing or names no channel");
    }
    match fs::read_to_string(root.join(WORKFLOW)) {
        Ok(workflow) => {
            for problem in workflow_problems(&workflow, channel) {
                findings.problem(format!("{WORKFLOW}: {problem}"));
            }
        }
        Err(error) => findings.problem(format!("cannot read {WORKFLOW}: {error}")),
    }
    Ok(findings)
}

/// What is wrong with the workflow's text: it must run `.ci/run`, run none of the commands the
/// script runs itself, and name no toolchain but `channel`. The YAML is read as lines, comments
/// left out; a step's command is what follows `run:` or a line of a `run: |` block.
fn workflow_problems(workflow: &str, channel: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut runs_script = false;
    for (n, line) in workflow.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let command = line
            .trim_start_matches("- ")
            .trim_start_matches("run:")
            .trim();
        runs_script |= ["bash .ci/run", ".ci/run", "./.ci/run"]
            .iter()
            .any(|entry| command.starts_with(entry));
        if let Some(step) = CI_STEPS.iter().find(|step| line.contains(*step)) {
            problems.push(format!(
                "line {} runs `{step}`, a step of .ci/run: change the script, not the workflow",
                n + 1
            ));
        }
        if let Some(named) = toolchain_named(line)
            && Some(named) != channel
        {
            problems.push(format!(
                "line {} names the toolchain {named}, not the channel of rust-toolchain.toml ({})",
                n + 1,
                channel.unwrap_or("none")
            ));
        }
    }
    if !runs_script {
        problems.push("no step runs `bash .ci/run`, CI's one entry point".to_owned());
    }
    problems
}

/// The toolchain a workflow line names: a `toolchain:` input, or the reference of
/// `dtolnay/rust-toolchain@REF` other than `master` (which takes the input).
fn toolchain_named(line: &str) -> Option<&str> {
    let named = match line.split_once("rust-toolchain@") {
        Some((_, "master")) => return None,
        Some((_, reference)) => reference,
        None => line.strip_prefix("toolchain:")?,
    };
    Some(named.trim().trim_matches(['"', '\'']))
}

/// The `channel` of a `rust-toolchain.toml`.
fn toolchain_channel(toml: &str) -> Option<&str> {
    toml.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "channel").then(|| value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
jobs:
  check:
    steps:
      - uses: actions/checkout@v4
      # The pinned channel.
      - uses: dtolnay/rust-toolchain@master
        with:
          toolchain: 1.95.0
          components: rustfmt, clippy
      - name: .ci/run
        run: bash .ci/run
";

    const PINNED: Option<&str> = Some("1.95.0");

    #[test]
    fn a_workflow_that_runs_the_ci_script_on_the_pinned_toolchain_passes() {
        assert_eq!(workflow_problems(GOOD, PINNED), Vec::<String>::new());
        let block = "steps:\n  - run: |\n      set -e\n      bash .ci/run\n";
        assert_eq!(workflow_problems(block, PINNED), Vec::<String>::new());
    }

    #[test]
    fn a_workflow_that_does_not_run_the_ci_script_is_refused() {
        let named_only = GOOD.replace("run: bash .ci/run", "run: echo later");

        let problems = workflow_problems(&named_only, PINNED);

        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("no step runs"), "{problems:?}");
    }

    #[test]
    fn a_workflow_that_repeats_a_step_of_the_ci_script_is_refused() {
        for step in [
            "cargo test --workspace",
            "cargo clippy --workspace --all-targets -- -D warnings",
            "cargo xtask test",
            "python3 -m pip install osmem-server",
        ] {
            let repeated = format!("{GOOD}      - run: {step}\n");

            let problems = workflow_problems(&repeated, PINNED);

            assert_eq!(problems.len(), 1, "{step}: {problems:?}");
            assert!(problems[0].contains("a step of .ci/run"), "{problems:?}");
        }
    }

    #[test]
    fn a_comment_may_name_a_step_of_the_ci_script() {
        let commented =
            format!("{GOOD}# not cargo test here\n      - run: bash .ci/run # cargo test\n");

        assert_eq!(workflow_problems(&commented, PINNED), Vec::<String>::new());
    }

    #[test]
    fn a_workflow_on_another_toolchain_than_the_pinned_one_is_refused() {
        let floating = GOOD.replace("rust-toolchain@master", "rust-toolchain@stable");
        let other = GOOD.replace("toolchain: 1.95.0", "toolchain: \"1.96.0\"");

        for workflow in [floating, other] {
            let problems = workflow_problems(&workflow, PINNED);

            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].contains("not the channel of rust-toolchain.toml (1.95.0)"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn the_channel_is_read_from_rust_toolchain_toml() {
        let toml = "# pinned\n[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"clippy\"]\n";

        assert_eq!(toolchain_channel(toml), Some("1.95.0"));
        assert_eq!(toolchain_channel("[toolchain]\n"), None);
    }
}
