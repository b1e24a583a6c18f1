//! The API document judged by third-party tools, as a client's tooling would judge it: a real
//! OpenAPI validator, and a TypeScript client generated from it and compiled strictly. The tools
//! are found on PATH (`.ci/run` installs them); without one a test says how to install it and
//! passes, unless `STRATA_REQUIRE_TOOLS=1` makes a missing tool a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::spawn_app;

const VALIDATOR_INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install \
     openapi-spec-validator==0.9.0, then put .venv/bin on PATH";
const NODE_TOOLS_INSTALL: &str =
    "npm ci --prefix tests/contract, then put tests/contract/node_modules/.bin on PATH";

/// The tool's path on PATH; `None` (with the skip printed) when it is missing and tools are
/// not required.
fn tool(test: &str, name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let required = std::env::var("STRATA_REQUIRE_TOOLS").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "{test}: {name} not installed ({install}); STRATA_REQUIRE_TOOLS=1 requires it"
        );
        eprintln!("{test}: skipped: {name} not installed ({install})");
    }
    found
}

/// The server's `/openapi.json`, written to `dir`.
async fn document_in(dir: &Path) -> PathBuf {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let path = dir.join("openapi.json");
    std::fs::write(&path, response.bytes().await.expect("body read")).expect("document written");
    path
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

/// Fails with everything the tool said, so the failure names what to fix.
#[track_caller]
fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_document_is_valid_openapi_by_an_independent_validator() {
    let test = "contract::the_document_is_valid_openapi_by_an_independent_validator";
    let Some(validator) = tool(test, "openapi-spec-validator", VALIDATOR_INSTALL) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let document = document_in(dir.path()).await;

    // Every error, not only the first, so that one run lists all there is to fix.
    let output = run(Command::new(validator)
        .args(["--validation-errors", "all", "--schema", "3.1"])
        .arg(&document));

    if !output.status.success() {
        // The errors and where they are first; the schemas the tool prints under each follow.
        let text = String::from_utf8_lossy(&output.stdout);
        let errors: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("Validation Error") || line.starts_with("On instance"))
            .collect();
        eprintln!(
            "openapi-spec-validator found these errors:\n{}\n",
            errors.join("\n")
        );
    }
    assert_success("openapi-spec-validator on /openapi.json", &output);
}

#[tokio::test]
async fn types_generated_from_the_document_compile_in_a_strict_client() {
    let test = "contract::types_generated_from_the_document_compile_in_a_strict_client";
    let (Some(generator), Some(tsc)) = (
        tool(test, "openapi-typescript", NODE_TOOLS_INSTALL),
        tool(test, "tsc", NODE_TOOLS_INSTALL),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let document = document_in(dir.path()).await;
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/client.ts");
    std::fs::copy(&client, dir.path().join("client.ts")).expect("client.ts copied");

    // From the file: the generator fetches nothing.
    let generated = run(Command::new(generator)
        .arg(&document)
        .args(["--output", "api.ts"])
        .current_dir(dir.path()));
    assert_success("openapi-typescript on /openapi.json", &generated);
    // Files named on the command line: no tsconfig is read, these flags are the whole setting.
    let compiled = run(Command::new(tsc)
        .args([
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "client.ts",
        ])
        .current_dir(dir.path()));

    assert_success(
        "tsc --noEmit --strict on tests/contract/client.ts with the generated types",
        &compiled,
    );
}
