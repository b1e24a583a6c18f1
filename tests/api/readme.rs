//! The README's walk through the API, run as written: the `sh` blocks between the markers
//! `<!-- walkthrough:begin` and `<!-- walkthrough:end -->` of README.md, read from the file when
//! the test runs (so the README cannot drift from what the server does), run by
//! `bash -euo pipefail` against a server this test starts in development mode, on the storage
//! of the run (PostgreSQL, or SQLite with `STRATA_TEST_STORAGE=sqlite`). One substitution:
//! `localhost:8080`, where `cargo xtask dev` listens, becomes the test server's address.
//! `cargo xtask token` runs as the reader runs it, so the token is signed with the development
//! secret the server accepts.
//!
//! Every command must succeed (the README's `curl --fail-with-body` fails on an error status),
//! and what the script prints must be, line for line, the sample answers the README shows: the
//! comment lines right under a command. Ids, instants and cursors differ from run to run and are
//! compared as such; so are the figures of `GET /v1/projections`, which show how far each
//! projection is at that moment, and on PostgreSQL a search's `score` (the README shows
//! SQLite's, the default).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_web::limits::EdgeLimits;
use strata_web::settings::DEVELOPMENT_JWT_SECRET;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::helpers::{on_sqlite, spawn_app_with};

/// Where `cargo xtask dev` listens, as the README writes it.
const README_ADDRESS: &str = "localhost:8080";

/// Longest the walk may take: it builds `xtask` first if it is not built yet.
const WALK_TIMEOUT: Duration = Duration::from_secs(300);

/// Fields whose values the README's samples cannot predict: where each projection is when
/// asked (`GET /v1/projections`).
const MOMENTARY: [&str; 3] = ["checkpoint", "lagEvents", "state"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// The script: the `sh` blocks between the walkthrough markers, in order.
fn walkthrough(readme: &str) -> String {
    let begin = readme
        .find("<!-- walkthrough:begin")
        .expect("README.md has a <!-- walkthrough:begin --> marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("README.md has a <!-- walkthrough:end --> marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[begin..end].lines() {
        match (in_block, line) {
            (false, "```sh") => in_block = true,
            // A blank line between blocks: the first comment of a block describes, not shows.
            (true, "```") => {
                in_block = false;
                script.push('\n');
            }
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            (false, _) => {}
        }
    }
    script
}

/// The sample answers: the comment lines right under a command (or under another sample); a
/// comment after a blank line or at the start of a block describes what follows instead.
fn samples(script: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut under_command = false;
    for line in script.lines().map(str::trim_start) {
        match line.strip_prefix("# ") {
            Some(sample) if under_command => found.push(sample),
            _ => under_command = !line.is_empty() && !line.starts_with('#'),
        }
    }
    found
}

/// A line as compared: ids, instants and cursors replaced by what they are; in JSON, the
/// momentary fields and, when `score_varies`, the score too.
fn normalized(line: &str, score_varies: bool) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(json) => normalized_json(json, None, score_varies).to_string(),
        Err(_) => line
            .split(' ')
            .map(normalized_word)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn normalized_json(value: Value, key: Option<&str>, score_varies: bool) -> Value {
    let momentary =
        key.is_some_and(|key| MOMENTARY.contains(&key) || (score_varies && key == "score"));
    match value {
        _ if momentary => Value::String("<momentary>".to_owned()),
        Value::String(_) if key == Some("nextCursor") => Value::String("<cursor>".to_owned()),
        Value::String(text) => Value::String(normalized_word(&text)),
        Value::Array(items) => items
            .into_iter()
            .map(|item| normalized_json(item, None, score_varies))
            .collect(),
        Value::Object(fields) => fields
            .into_iter()
            .map(|(key, value)| {
                let value = normalized_json(value, Some(&key), score_varies);
                (key, value)
            })
            .collect(),
        other => other,
    }
}

/// A word of text: an id or an instant (possibly followed by a closing parenthesis) becomes
/// `<id>` or `<instant>`.
fn normalized_word(word: &str) -> String {
    let core = word.trim_end_matches(')');
    let rest = &word[core.len()..];
    if Uuid::parse_str(core).is_ok() {
        format!("<id>{rest}")
    } else if OffsetDateTime::parse(core, &Rfc3339).is_ok() {
        format!("<instant>{rest}")
    } else {
        word.to_owned()
    }
}

/// Whether `curl` and `jq` can be run; when not, the reason.
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["curl", "jq"]
        .into_iter()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(" and ")))
}

/// Runs the script with bash, killing it after [`WALK_TIMEOUT`]: exit success, stdout, stderr.
fn run_walk(script: String) -> (bool, String, String) {
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(workspace_root())
        // `cargo xtask token` signs with STRATA_JWT_SECRET when set; the reader's server in
        // development mode, like this one, accepts the development secret.
        .env_remove("STRATA_JWT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let started = Instant::now();
    while child.try_wait().expect("wait for bash").is_none() {
        if started.elapsed() > WALK_TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("bash's output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written_and_prints_the_answers_it_shows() {
    if let Some(reason) = missing_tools() {
        assert!(
            std::env::var("STRATA_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "STRATA_REQUIRE_TOOLS=1 but {reason}"
        );
        eprintln!("skipped: the README walkthrough needs curl and jq: {reason}");
        return;
    }
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let script = walkthrough(&readme);
    let shown: Vec<String> = samples(&script)
        .into_iter()
        .map(|line| normalized(line, !on_sqlite()))
        .collect();
    assert!(
        shown.len() > 20 && script.contains(README_ADDRESS),
        "the walkthrough markers enclose the walk, its commands and their sample answers:\n{script}"
    );
    // What `cargo xtask dev` runs: development mode (the development secret), the projector in
    // the process, the default limits.
    let app = spawn_app_with(|settings| {
        settings.jwt_secret = DEVELOPMENT_JWT_SECRET.into();
        settings.using_development_secret = true;
        settings.limits = EdgeLimits::default();
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let script = script.replace(README_ADDRESS, &address);

    let (succeeded, stdout, stderr) = tokio::task::spawn_blocking(move || run_walk(script))
        .await
        .expect("the walk ran");

    assert!(
        succeeded,
        "a command of the walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let printed: Vec<String> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| normalized(line, !on_sqlite()))
        .collect();
    assert_eq!(
        printed, shown,
        "what the walkthrough printed (left) is not what README.md shows (right)\nstderr:\n{stderr}"
    );
}

#[test]
fn sample_answers_are_the_comments_right_under_a_command() {
    let script = "# Place an order.\nPLACED=$(curl \\\n  -d '{}')\necho \"$PLACED\"\n\
                  # {\"orderId\":\"x\"}\n# second line\n\n# What follows.\ncurl x\n";

    assert_eq!(samples(script), ["{\"orderId\":\"x\"}", "second line"]);
}

#[test]
fn ids_instants_and_cursors_are_compared_as_such() {
    let id = Uuid::now_v7();
    let line = format!(
        "order {id} did not exist yet at 2026-01-01T00:00:00Z (its first event was recorded at \
         2026-12-06T10:45:26.69714Z)"
    );
    let json =
        format!(r#"{{"orderId":"{id}","nextCursor":"3.8bc9","score":0.5,"state":"running"}}"#);

    assert_eq!(
        normalized(&line, false),
        "order <id> did not exist yet at <instant> (its first event was recorded at <instant>)"
    );
    let compared =
        |score_varies| -> Value { serde_json::from_str(&normalized(&json, score_varies)).unwrap() };
    assert_eq!(
        compared(false),
        serde_json::json!({"orderId": "<id>", "nextCursor": "<cursor>", "score": 0.5, "state": "<momentary>"})
    );
    assert_eq!(compared(true)["score"], "<momentary>");
}
