//! `spawn_app()`: a real `strata-web` on a free port against a fresh database, with the
//! projection workers in-process (so queries see what commands did), and a client that signs
//! real HS256 tokens. The database is PostgreSQL, or a SQLite file in a temporary directory when
//! `STRATA_TEST_STORAGE=sqlite` (`cargo xtask test` runs the suite both ways). Logs stay quiet
//! unless `TEST_LOG` is set.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use strata_adapters_sqlite::SqliteSettings;
use strata_web::auth::{Claims, JwtKeys};
use strata_web::limits::{EdgeLimits, RateLimits};
use strata_web::subscriptions::SubscriptionLimits;
use strata_web::{Application, Settings, Storage};
use tempfile::TempDir;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const TEST_SECRET: &str = "end-to-end-test-secret-0123456789abcdef";

/// Prefix of every database this suite creates; stale ones are dropped at the next run.
const DB_PREFIX: &str = "strata_e2e_";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info").init();
    }
});

static CLEANUP: OnceCell<()> = OnceCell::const_new();

/// True when this run tests the SQLite storage (`STRATA_TEST_STORAGE=sqlite`).
pub fn on_sqlite() -> bool {
    std::env::var("STRATA_TEST_STORAGE").is_ok_and(|storage| storage == "sqlite")
}

/// For the tests that stage what only PostgreSQL can (its row locks, its tables): true, with the
/// reason printed, when this run tests SQLite; the PostgreSQL run has them.
pub fn skipped_on_sqlite(why: &str) -> bool {
    let skip = on_sqlite();
    if skip {
        eprintln!("skipped on SQLite (the PostgreSQL run has it): {why}");
    }
    skip
}

/// The server to test against: PostgreSQL at `DATABASE_URL` (its database part is replaced).
fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database part");
    format!("{base}/{database}")
}

/// Drops databases left by earlier runs (a failed test leaves its database for inspection).
async fn drop_stale_databases() {
    let pool = sqlx::PgPool::connect(&server_url())
        .await
        .expect("PostgreSQL at DATABASE_URL");
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{DB_PREFIX}%"))
            .fetch_all(&pool)
            .await
            .expect("list databases");
    for name in stale {
        // The name comes from pg_database, filtered by our prefix, and is quoted.
        let sql = sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        let _ = sqlx::query(sql).execute(&pool).await;
    }
    pool.close().await;
}

/// A running server and a client for it.
pub struct TestApp {
    pub address: String,
    /// The server's storage: `postgres://…`, or `sqlite://…` for a file in `data`.
    pub database_url: String,
    pub client: reqwest::Client,
    keys: JwtKeys,
    /// The SQLite run's directory, removed once the last handle of the test is gone.
    data: Option<Arc<TempDir>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns a server whose settings `adjust` may change first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (app, _server) = spawn_stoppable_app_with(adjust, std::future::pending()).await;
    app
}

/// Spawns a server that stops serving when `stop` completes; the handle resolves once the
/// server has finished the requests in flight.
pub async fn spawn_stoppable_app_with(
    adjust: impl FnOnce(&mut Settings),
    stop: impl Future<Output = ()> + Send + 'static,
) -> (TestApp, JoinHandle<std::io::Result<()>>) {
    let (database_url, data) = if on_sqlite() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("strata.db").display());
        (url, Some(Arc::new(dir)))
    } else {
        CLEANUP.get_or_init(drop_stale_databases).await;
        let url = with_database(
            &server_url(),
            &format!("{DB_PREFIX}{}", Uuid::new_v4().simple()),
        );
        (url, None)
    };
    let mut settings = test_settings(&database_url);
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let (mut app, server) = start(app, database_url, stop);
    app.data = data;
    (app, server)
}

/// The settings of a test server: a free port, the test secret, the default limits (no rate
/// limits), and the
/// projection workers in-process (development mode: a complete system in one process).
pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().expect("address"),
        storage: Storage::resolve(Some(database_url), Path::new("data")).expect("storage URL"),
        jwt_secret: TEST_SECRET.into(),
        using_development_secret: false,
        body_limit: 1024 * 1024,
        snapshot_every: 100,
        db_max_connections: 8,
        read_wait: Duration::from_secs(5),
        with_projector: true,
        elasticsearch_url: None,
        search_index_prefix: "strata-".to_owned(),
        jwt_previous_secrets: Vec::new(),
        jwt_max_lifetime: Duration::from_secs(86_400),
        jwt_issuer: None,
        jwt_audience: None,
        // The default limits, but for the rate per principal: most tests send bursts with one
        // token; tests/api/limits.rs turns them on.
        limits: EdgeLimits {
            rate: RateLimits {
                commands_per_second: 0,
                queries_per_second: 0,
            },
            ..EdgeLimits::default()
        },
        subscriptions: SubscriptionLimits::default(),
        metrics_addr: None,
        docs: true,
    }
}

/// Serves a built application until `stop` completes.
pub fn start(
    app: Application,
    database_url: String,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (TestApp, JoinHandle<std::io::Result<()>>) {
    LazyLock::force(&TRACING);
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until(stop));
    let app = TestApp {
        address,
        database_url,
        client: reqwest::Client::new(),
        keys: JwtKeys::new(TEST_SECRET.as_bytes()),
        data: None,
    };
    (app, server)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An answer: status, headers and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `position` of a command acknowledgement.
    #[track_caller]
    pub fn position(&self) -> u64 {
        self.body["position"]
            .as_u64()
            .unwrap_or_else(|| panic!("no position in {}", self.body))
    }

    /// The `X-Projection-Position` of a query answer.
    #[track_caller]
    pub fn projection_position(&self) -> u64 {
        self.header("x-projection-position")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Projection-Position on {self:?}"))
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts a problem+json answer with this status.
    #[track_caller]
    pub fn expect_problem(self, status: u16) -> Self {
        let answer = self.expect(status);
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{}",
            answer.body
        );
        assert_eq!(answer.body["status"], status, "{}", answer.body);
        for field in ["type", "title", "detail", "requestId"] {
            assert!(
                answer.body[field].is_string(),
                "problem without {field}: {}",
                answer.body
            );
        }
        answer
    }
}

impl TestApp {
    /// A token signed with the server's secret.
    pub fn token(&self, role: &str, customer_id: Option<&str>) -> String {
        self.sign(Claims::issued_now(
            format!("{role}-{}", customer_id.unwrap_or("staff")),
            role,
            customer_id,
            Duration::from_secs(600),
        ))
    }

    pub fn sign(&self, claims: Claims) -> String {
        self.keys.sign(&claims).expect("sign token")
    }

    pub fn customer(&self, id: &str) -> String {
        self.token("customer", Some(id))
    }

    pub fn operator(&self) -> String {
        self.token("operator", None)
    }

    pub fn auditor(&self) -> String {
        self.token("auditor", None)
    }

    /// Sends a request; `token` and `body` are optional; `headers` are extra header pairs.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn post_empty(&self, path: &str, token: &str) -> Answer {
        self.send(Method::POST, path, Some(token), None, &[]).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    /// A query answered once its projection has processed `position` (read-your-writes); any
    /// text goes into `X-Min-Position`, so that malformed values can be sent too.
    pub async fn get_after(
        &self,
        path: &str,
        token: &str,
        position: impl std::fmt::Display,
    ) -> Answer {
        let position = position.to_string();
        self.send(
            Method::GET,
            path,
            Some(token),
            None,
            &[("x-min-position", &position)],
        )
        .await
    }

    /// Places a one-line EUR order for `customer` and returns its id.
    pub async fn place_order(&self, token: &str, customer: &str) -> String {
        self.place_order_at(token, customer).await.0
    }

    /// Places a one-line EUR order for `customer`; returns its id and the log position of its
    /// event (for `X-Min-Position`).
    pub async fn place_order_at(&self, token: &str, customer: &str) -> (String, u64) {
        let answer = self
            .post("/v1/orders", token, order_body(customer))
            .await
            .expect(201);
        let id = answer.body["orderId"].as_str().expect("orderId").to_owned();
        (id, answer.position())
    }

    /// Opens an EUR account for `customer` and returns its id.
    pub async fn open_account(&self, token: &str, customer: &str) -> String {
        let body = serde_json::json!({"ownerCustomerId": customer, "currency": "EUR"});
        let answer = self.post("/v1/accounts", token, body).await.expect(201);
        answer.body["accountId"]
            .as_str()
            .expect("accountId")
            .to_owned()
    }
}

/// The server's database, for the few tests that look under the API with raw SQL.
pub enum Database {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Database {
    async fn open(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await.expect("SQLite file"))
        } else {
            Self::Postgres(sqlx::PgPool::connect(url).await.expect("PostgreSQL"))
        }
    }

    /// The first column of every row of `sql`, as text.
    pub async fn strings(&self, sql: &'static str) -> Vec<Option<String>> {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .expect("query")
    }

    /// The single number `sql` selects.
    pub async fn number(&self, sql: &'static str) -> i64 {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("query")
    }
}

impl TestApp {
    /// The database of the server's event log and read models.
    pub async fn database(&self) -> Database {
        Database::open(&self.database_url).await
    }

    /// The server's SQLite settings, when it runs on SQLite.
    pub fn sqlite(&self) -> Option<SqliteSettings> {
        match Storage::resolve(Some(&self.database_url), Path::new("data")) {
            Ok(Storage::Sqlite(path)) => Some(SqliteSettings::at(path)),
            _ => None,
        }
    }

    /// The database of the server's own search index: the main one on PostgreSQL, the file
    /// beside it on SQLite.
    pub async fn search_database(&self) -> Database {
        match self.sqlite() {
            Some(sqlite) => {
                Database::open(&format!("sqlite://{}", sqlite.search_path().display())).await
            }
            None => self.database().await,
        }
    }
}

/// A valid order request for `customer`.
pub fn order_body(customer: &str) -> Value {
    serde_json::json!({
        "customerId": customer,
        "currency": "EUR",
        "items": [{"productId": "sku-1", "quantity": 2, "unitPriceCents": 1250}],
        "shippingAddress": "1 Main Street, Springfield",
    })
}

pub fn item(product: &str, quantity: i64, cents: i64) -> Value {
    serde_json::json!({"productId": product, "quantity": quantity, "unitPriceCents": cents})
}

pub fn expired_claims(role: &str, customer_id: Option<&str>) -> Claims {
    Claims {
        sub: "someone".to_owned(),
        role: role.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        exp: now() - 3600,
        iat: Some(now() - 7200),
        iss: None,
        aud: None,
    }
}
