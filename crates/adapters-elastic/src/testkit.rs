//! For test suites (feature `testkit`): an `osmem-server` per test — a static binary from PyPI
//! that serves the OpenSearch REST API in memory — or a visible message saying why a test that
//! needs one was skipped.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

/// Says a test was skipped, on stderr itself: `eprintln!` would be captured by the test
/// harness and never shown for a passing test.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// A running `osmem-server`; it exits when its stdin closes, and is killed on drop anyway.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    pub url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the `osmem-server` Python package keeps its binary, if it is installed.
fn emulator_binary() -> Option<String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import osmem_server; print(osmem_server.resolve_binary())",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !path.is_empty()).then_some(path)
}

impl Emulator {
    /// Starts an emulator on a free port; `None` (with a visible message naming `test`) when
    /// the package is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = emulator_binary() else {
            skipped(
                test,
                "osmem-server not installed (pip install osmem-server)",
            );
            return None;
        };
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("osmem-server starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("osmem-server prints its address");
        let started: Value = serde_json::from_str(&line).expect("a json line");
        let url = started["url"].as_str().expect("a url").to_owned();
        Some(Self { child, stdin, url })
    }
}
