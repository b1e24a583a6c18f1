//! What the fault tests stand on: a fresh database on the shared server, and a `strata-web`
//! process that can be killed and started again on the same port and database.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use strata_web::auth::{Claims, JwtKeys};
use tempfile::TempDir;
use uuid::Uuid;

pub const SECRET: &str = "fault-test-secret-0123456789abcdefghijkl";

/// Prefix of the databases these tests create on the shared server; stale ones are dropped.
const DB_PREFIX: &str = "strata_faults_";

/// The servers' request deadline (`STRATA_REQUEST_TIMEOUT_MS`), shorter than the default so
/// that hang detection stays quick; the read-your-writes wait must be shorter still.
const REQUEST_TIMEOUT_MS: &str = "5000";
const READ_WAIT_MS: &str = "2000";

/// Longest a client waits for an answer: the server's request deadline plus a generous margin.
/// A request still unanswered then hung, which the server's own deadline must prevent.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5 + 10);

/// A fresh database on the shared test server (`DATABASE_URL`), dropped by [`Self::drop_it`].
#[derive(Debug)]
pub struct FreshDatabase {
    pub url: String,
    server: String,
    name: String,
}

impl FreshDatabase {
    pub async fn create() -> Self {
        let server = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = PgPool::connect(&server)
            .await
            .expect("PostgreSQL at DATABASE_URL");
        // Without FORCE: a database some live run still uses is left alone.
        let stale: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                .bind(format!("{DB_PREFIX}%"))
                .fetch_all(&admin)
                .await
                .expect("list databases");
        for name in stale {
            let sql = sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\""));
            let _ = sqlx::query(sql).execute(&admin).await;
        }
        let name = format!("{DB_PREFIX}{}", Uuid::new_v4().simple());
        let sql = sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""));
        sqlx::query(sql)
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let (base, _) = server
            .rsplit_once('/')
            .expect("DATABASE_URL has a database part");
        Self {
            url: format!("{base}/{name}"),
            server,
            name,
        }
    }

    /// Drops the database once the test passed (a failed one is left for inspection).
    pub async fn drop_it(self) {
        let admin = PgPool::connect(&self.server).await.expect("PostgreSQL");
        let sql = sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
        sqlx::query(sql)
            .execute(&admin)
            .await
            .expect("drop database");
        admin.close().await;
    }
}

/// A free port on loopback (another process could take it before the server does: unlikely).
pub fn free_address() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("local address")
}

/// A `strata-web` process, killed (SIGKILL) when dropped; its log goes to a file.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub address: SocketAddr,
    database_url: String,
    log_dir: TempDir,
    starts: usize,
}

impl Server {
    /// Starts `strata-web` on `database_url` with its projection workers in-process, and waits
    /// until it is ready.
    pub async fn start(database_url: &str) -> Self {
        let mut server = Self {
            child: None,
            address: free_address(),
            database_url: database_url.to_owned(),
            log_dir: tempfile::tempdir().expect("log directory"),
            starts: 0,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = self
            .log_dir
            .path()
            .join(format!("start-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata-web"));
        command
            .env("DATABASE_URL", &self.database_url)
            .env("STRATA_HTTP_ADDR", self.address.to_string())
            .env("STRATA_JWT_SECRET", SECRET)
            .env("STRATA_WITH_PROJECTOR", "true")
            .env("STRATA_RATE_LIMIT_COMMANDS", "0")
            .env("STRATA_RATE_LIMIT_QUERIES", "0")
            .env("STRATA_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS)
            .env("STRATA_READ_WAIT_MS", READ_WAIT_MS)
            .env("RUST_LOG", "info")
            .env_remove("ELASTICSEARCH_URL")
            .env_remove("STRATA_DEV")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        self.child = Some(command.spawn().expect("start strata-web"));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/health/ready", self.address);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(&url).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("strata-web exited at start-up ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "strata-web not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no shutdown, no draining, requests in flight cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address and database.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every log line of every start, for failure messages.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let path = self.log_dir.path().join(format!("start-{n}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("--- start {n}\n{text}")
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An operator's token signed with the servers' secret.
pub fn operator_token() -> String {
    JwtKeys::new(SECRET.as_bytes())
        .sign(&Claims::issued_now(
            "fault-operator",
            "operator",
            None,
            Duration::from_secs(600),
        ))
        .expect("sign token")
}
