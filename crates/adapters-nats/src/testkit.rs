//! For test suites (feature `testkit`): a `nats-server` with JetStream per test, on a port and
//! in a store directory of its own, or a visible message saying why a test that needs one was
//! skipped.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Says a test was skipped, on stderr itself (the test harness captures `eprintln!`). With
/// `STRATA_REQUIRE_TOOLS=1` (CI) a missing server fails the test instead.
pub fn skipped(test: &str, why: &str) {
    assert!(
        std::env::var("STRATA_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{test}: {why} (STRATA_REQUIRE_TOOLS=1)"
    );
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// A running `nats-server -js`, killed on drop, its store directory removed.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    store: PathBuf,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl NatsServer {
    /// Starts one, or `None` (said on stderr) when `nats-server` is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let store = std::env::temp_dir().join(format!(
            "strata-nats-{}-{}",
            std::process::id(),
            next_number()
        ));
        std::fs::create_dir_all(&store).expect("cannot create the server's store directory");
        let spawn = |program: &str| {
            Command::new(program)
                .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-m", "-1"])
                .arg("-sd")
                .arg(&store)
                .arg("--ports_file_dir")
                .arg(&store)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let spawned = spawn("nats-server").or_else(|_| spawn("/usr/sbin/nats-server"));
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&store);
                skipped(
                    test,
                    &format!("cannot start nats-server ({e}): apt-get install nats-server"),
                );
                return None;
            }
        };
        let ports = store.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Some(url) = std::fs::read_to_string(&ports)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|ports| ports["nats"][0].as_str().map(str::to_owned))
            {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server wrote no ports file in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Some(Self { child, store, url })
    }

    /// Stops the server at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A name part no other server of this process uses.
fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
