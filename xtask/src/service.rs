//! The service on this machine: `db` migrates the PostgreSQL development database, `dev` runs
//! `strata-web` with the projector in-process, on SQLite in `./data` unless `DATABASE_URL` names
//! another storage; `Server` is a built `strata-web` that another task (`contract`) drives.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::postgres::{self, DEV_DATABASE_URL};
use crate::process::{cargo, run};

/// `cargo xtask db`: create the PostgreSQL development database if missing and apply the
/// migrations.
pub fn db(root: &Path) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    run(&mut migrate(root, &url))
}

/// `cargo xtask dev`: serve in development mode until interrupted.
pub fn dev(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    match url.as_deref() {
        Some(url) if url.starts_with("postgres") => postgres::ensure_reachable(url)?,
        Some(_) => {}
        None => eprintln!(
            "no DATABASE_URL: the embedded SQLite database in ./data (STRATA_DATA_DIR) is used"
        ),
    }
    for mut command in dev_commands(root, url.as_deref(), extra) {
        run(&mut command)?;
    }
    Ok(())
}

/// What `dev` runs, in order. Only the server, with the projection workers in-process
/// (`--with-projector`), so one command serves a complete system: its start-up creates the
/// database when it is missing and applies the migrations (`strata_wiring::migrate`,
/// the same code as `strata-web migrate`), so a separate migrate step would only do that work
/// twice. Without a URL the server stores everything in SQLite.
fn dev_commands(root: &Path, url: Option<&str>, extra: &[String]) -> Vec<Command> {
    let mut serve = cargo(root);
    serve
        .args([
            "run",
            "--package",
            "strata-web",
            "--",
            "--dev",
            "--with-projector",
        ])
        .args(extra);
    match url {
        Some(url) => serve.env("DATABASE_URL", url),
        None => serve.env_remove("DATABASE_URL"),
    };
    vec![serve]
}

fn migrate(root: &Path, url: &str) -> Command {
    let mut command = cargo(root);
    command
        .args(["run", "--package", "strata-web", "--", "migrate"])
        .env("DATABASE_URL", url);
    command
}

/// A `strata-web` process on a loopback port with the projector in-process and no rate limits,
/// its output in a log file; killed when dropped, also when the task fails.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `binary` on `database_url` with the JWT `secret`, on a free port.
    pub fn start(
        binary: &Path,
        database_url: &str,
        secret: &str,
        log: &Path,
    ) -> anyhow::Result<Self> {
        // The port is free now; the server binds it a moment later (as the benchmarks do).
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let output =
            File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
        let child = serve_command(binary, database_url, addr, secret)
            .stdout(output.try_clone()?)
            .stderr(output)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        eprintln!("==> strata-web on http://{addr} (log: {})", log.display());
        Ok(Self {
            child,
            addr,
            log: log.to_owned(),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `/health/ready` answers 200; fails early when the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "strata-web exited ({status}) before it was ready; see {}",
                    self.log.display()
                );
            }
            if http_status(self.addr, "/health/ready") == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "strata-web was not ready within {} s; see {}",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's command: settings from the environment, where any inherited `STRATA_*` or
/// `ELASTICSEARCH_URL` is removed first, so the shell a task runs in cannot change what is served.
fn serve_command(binary: &Path, database_url: &str, addr: SocketAddr, secret: &str) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("STRATA_") || name == "ELASTICSEARCH_URL" {
            command.env_remove(&key);
        }
    }
    command
        .env("DATABASE_URL", database_url)
        .env("STRATA_HTTP_ADDR", addr.to_string())
        .env("STRATA_JWT_SECRET", secret)
        .env("STRATA_WITH_PROJECTOR", "true")
        // One principal sends every request of a run: a rate limit would answer 429s that
        // measure the limit, not the contract.
        .env("STRATA_RATE_LIMIT_COMMANDS", "0")
        .env("STRATA_RATE_LIMIT_QUERIES", "0")
        // What a failed run needs from the log: the errors and warnings, not every request.
        .env("RUST_LOG", "warn");
    command
}

/// The status code of `GET path`, or `None` when nothing answers. A few lines over a socket, so
/// that the task runner needs no HTTP client and no async runtime for one readiness probe.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // One write: `write!` on a socket sends each piece of the format on its own.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // "HTTP/1.1 200": the status is the three digits after the version and a space.
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::inspect::{args, env};

    fn database_url(command: &Command) -> Option<Option<String>> {
        env(command, "DATABASE_URL")
    }

    #[test]
    fn dev_runs_the_server_once_with_the_projector_and_no_separate_migration() {
        let extra = vec!["--http-addr".to_owned(), "127.0.0.1:3000".to_owned()];

        let commands = dev_commands(Path::new("."), Some(DEV_DATABASE_URL), &extra);

        let lines: Vec<Vec<String>> = commands.iter().map(args).collect();
        assert_eq!(
            lines,
            vec![vec![
                "run",
                "--package",
                "strata-web",
                "--",
                "--dev",
                "--with-projector",
                "--http-addr",
                "127.0.0.1:3000"
            ]]
        );
        assert_eq!(
            database_url(&commands[0]),
            Some(Some(DEV_DATABASE_URL.to_owned()))
        );
    }

    #[test]
    fn the_served_binary_has_no_rate_limits_and_its_projector_in_process() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();

        let command = serve_command(Path::new("strata-web"), DEV_DATABASE_URL, addr, "s");

        for (key, value) in [
            ("DATABASE_URL", DEV_DATABASE_URL),
            ("STRATA_HTTP_ADDR", "127.0.0.1:4321"),
            ("STRATA_JWT_SECRET", "s"),
            ("STRATA_WITH_PROJECTOR", "true"),
            ("STRATA_RATE_LIMIT_COMMANDS", "0"),
            ("STRATA_RATE_LIMIT_QUERIES", "0"),
        ] {
            assert_eq!(env(&command, key), Some(Some(value.to_owned())), "{key}");
        }
    }

    #[test]
    fn the_readiness_probe_reads_the_status_of_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            // Read the whole head: closing with unread bytes would reset the connection before
            // the client reads the answer.
            let mut request = Vec::new();
            let mut byte = [0_u8; 1];
            while !request.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });

        assert_eq!(http_status(addr, "/health/ready"), Some(503));
        server.join().unwrap();
        // The listener is gone with its thread: nothing answers there now.
        assert_eq!(http_status(addr, "/health/ready"), None);
    }

    #[test]
    fn dev_without_a_url_removes_any_inherited_one_so_the_server_uses_sqlite() {
        let commands = dev_commands(Path::new("."), None, &[]);

        assert_eq!(database_url(&commands[0]), Some(None));
    }
}
