//! CI and the README agree on one test command: `.ci/run` is executable and runs
//! `cargo xtask test`, which the README documents.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::Findings;

/// The README's test command, which CI must run literally.
const TEST_COMMAND: &str = "cargo xtask test";

/// `cargo xtask tidy` rule: `.ci/run` exists, is executable (on disk and in git) and runs the
/// README's test command; the README mentions it.
pub fn check(root: &Path) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    check_ci_script(root, &mut findings);
    match fs::read_to_string(root.join("README.md")) {
        Ok(readme) if readme.contains(TEST_COMMAND) => {}
        Ok(_) => findings.problem(format!("README.md does not mention `{TEST_COMMAND}`")),
        Err(_) => findings.warning(format!(
            "README.md does not exist yet; it must document `{TEST_COMMAND}`"
        )),
    }
    Ok(findings)
}

fn check_ci_script(root: &Path, findings: &mut Findings) {
    let script = root.join(".ci/run");
    let Ok(metadata) = fs::metadata(&script) else {
        findings.problem(".ci/run does not exist");
        return;
    };
    if metadata.permissions().mode() & 0o111 == 0 {
        findings.problem(".ci/run is not executable (chmod +x .ci/run)");
    }
    match fs::read_to_string(&script) {
        Ok(text) if script_runs_test_command(&text) => {}
        Ok(_) => findings.problem(format!(".ci/run does not run `{TEST_COMMAND}`")),
        Err(error) => findings.problem(format!("cannot read .ci/run: {error}")),
    }
    // A fresh clone takes the mode from git, not from this working tree.
    match git_mode(root, ".ci/run").as_deref() {
        Some("100755") => {}
        Some(mode) => findings.problem(format!(
            ".ci/run has mode {mode} in git; run `git update-index --chmod=+x .ci/run`"
        )),
        None => {
            findings.warning(".ci/run is not in git (or git is unavailable); commit it executable")
        }
    }
}

/// Whether some line of the shell script, not a comment, has the test command.
fn script_runs_test_command(text: &str) -> bool {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .any(|line| line.contains(TEST_COMMAND))
}

/// The mode git records for `path` (e.g. `100755`), if it is tracked.
fn git_mode(root: &Path, path: &str) -> Option<String> {
    let output = Command::new("git")
        .args(["ls-files", "--stage", "--", path])
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    listing.split_whitespace().next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_must_run_the_test_command_outside_comments() {
        assert!(script_runs_test_command("set -e\ncargo xtask test\n"));
        assert!(script_runs_test_command(
            "  cargo xtask test -- --nocapture\n"
        ));
        assert!(!script_runs_test_command(
            "# later: cargo xtask test\ncargo test\n"
        ));
        assert!(!script_runs_test_command("cargo test --workspace\n"));
    }
}
