//! Running child processes (mostly cargo) from the workspace root, echoing what runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// A `cargo` command run from the workspace root, using the same cargo that launched xtask.
pub fn cargo(root: &Path) -> Command {
    // `cargo run` sets CARGO to the cargo binary in use, so toolchain overrides carry through.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root);
    command
}

/// Prints the command as a section header, runs it, and fails if it exits unsuccessfully.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = display(command);
    eprintln!("==> {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs the command (echoed as [`run`] does), its stderr shown as it comes, and returns its
/// stdout; fails if it exits unsuccessfully.
pub fn capture(command: &mut Command) -> anyhow::Result<String> {
    let shown = display(command);
    eprintln!("==> {shown}");
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("`{shown}` failed ({}): {stdout}", output.status);
    }
    Ok(stdout)
}

/// `program` as found in a directory of `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The command as a shell-like line, with any environment it sets in front.
fn display(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| {
            let value = value?.to_string_lossy();
            let value = if key == "DATABASE_URL" {
                crate::postgres::redact(&value)
            } else {
                value.into_owned()
            };
            Some(format!("{}={value}", key.to_string_lossy()))
        })
        .collect();
    let program = command.get_program().to_string_lossy();
    // Show `cargo`, not the absolute path cargo exports in CARGO.
    let program = Path::new(program.as_ref()).file_name().map_or_else(
        || program.to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    parts.push(program);
    // A connection URL given as an argument (pgbench's) shows without its password too.
    parts.extend(
        command
            .get_args()
            .map(|arg| crate::postgres::redact(&arg.to_string_lossy())),
    );
    parts.join(" ")
}

/// What the tests of the tasks read back from the commands they build.
#[cfg(test)]
pub mod inspect {
    use std::process::Command;

    /// The command's arguments, as text.
    pub fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    /// What the command does with `key`: `None` leaves it inherited, `Some(None)` removes it.
    pub fn env(command: &Command, key: &str) -> Option<Option<String>> {
        command
            .get_envs()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.map(|v| v.to_string_lossy().into_owned()))
    }
}
