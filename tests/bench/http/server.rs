//! What every HTTP workload shares: release `strata-web` with its projector on a fresh storage,
//! an operator token, one `wrk` run and its summary, and the server's `/metrics` afterwards.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use strata_tests::bench_text::{Summary, parse_summary};
use strata_web::auth::{Claims, JwtKeys};
use uuid::Uuid;

use crate::binaries::release_binary;
use crate::storage::Fresh;

/// A running `strata-web`, killed when dropped, and what a client needs to call it.
pub struct Server {
    child: Child,
    wrk: PathBuf,
    base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `strata-web` on `fresh` (with the projection workers in its process if
    /// `projector`), signs an operator token, and waits until the server is ready.
    pub async fn start(fresh: &Fresh, projector: bool) -> anyhow::Result<Self> {
        let wrk = which("wrk").context(
            "the http workloads drive the server with wrk: install it (Debian: apt-get install wrk)",
        )?;
        let binary = release_binary("strata-web")?;
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let secret = format!(
            "bench-{}-{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let child = Command::new(binary)
            .env("DATABASE_URL", &fresh.url)
            .env("STRATA_HTTP_ADDR", addr.to_string())
            .env("STRATA_JWT_SECRET", &secret)
            .env("STRATA_WITH_PROJECTOR", projector.to_string())
            // wrk sends every request with one token: the per-principal limits would measure
            // themselves (the cost of the layers is measured with them on, set high).
            .env("STRATA_RATE_LIMIT_COMMANDS", "1000000")
            .env("STRATA_RATE_LIMIT_QUERIES", "1000000")
            // `/metrics` on the API's own listener (the default), where the harness reads it.
            .env_remove("STRATA_METRICS_ADDR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start strata-web")?;
        let token = JwtKeys::new(secret.as_bytes()).sign(&Claims {
            sub: "bench".to_owned(),
            role: "operator".to_owned(),
            customer_id: None,
            exp: u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp())? + 3_600,
            iat: None,
            iss: None,
            aud: None,
        })?;
        let server = Self {
            child,
            wrk,
            base: format!("http://{addr}"),
            token,
            client: reqwest::Client::new(),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "strata-web did not become ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates what the load works on: POSTs `body` to `path` and returns the answer's `field`.
    pub async fn create(&self, path: &str, body: &Value, field: &str) -> anyhow::Result<String> {
        let answer: Value = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        answer[field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {field} in {answer}"))
    }

    /// The server's metrics, as Prometheus scrapes them (no token).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// A figure of `/proc/PID/status` in MiB (`VmHWM`: peak resident set; `VmRSS`: now).
    pub fn memory_mib(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc status"))?;
        Ok((kib / 1024.0 * 10.0).round() / 10.0)
    }

    /// `wrk -t 2` with `script` against the server, `connections` connections for `seconds`.
    pub async fn wrk(
        &self,
        script: &str,
        connections: usize,
        seconds: u64,
    ) -> anyhow::Result<Summary> {
        let mut file = tempfile::NamedTempFile::new()?;
        file.write_all(script.as_bytes())?;
        eprintln!("  http: wrk, {connections} connections, {seconds} s");
        let output = tokio::task::spawn_blocking({
            let wrk = self.wrk.clone();
            let path = file.path().to_owned();
            let connections = connections.max(2).to_string();
            let duration = format!("{seconds}s");
            let base = self.base.clone();
            move || {
                Command::new(wrk)
                    .args([
                        "-t",
                        "2",
                        "-c",
                        &connections,
                        "-d",
                        &duration,
                        "--latency",
                        "-s",
                    ])
                    .arg(path)
                    .arg(base)
                    .output()
            }
        })
        .await?
        .context("cannot run wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(output.status.success(), "wrk failed: {text}");
        parse_summary(&text).map_err(anyhow::Error::msg)
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}
