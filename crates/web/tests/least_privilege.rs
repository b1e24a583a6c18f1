//! Least privilege, proven (issue 20, decision 0006): the roles made by `strata-web roles`, the
//! real `strata-web` and `strata-projector run` serving an order as the service roles, and those
//! roles refused every write to the log but the append functions; the auditor only reads.
//!
//! Needs PostgreSQL at `DATABASE_URL` as a role with CREATEROLE and CREATEDB (the local
//! `postgres` superuser); without them it says why and passes. Roles belong to the whole
//! cluster, so each run takes its own prefix, `strata_lp_<unix seconds>_<random>`, and drops
//! its roles and database at the end; a run that failed leaves them, dropped an hour later by
//! the next run.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use strata_web::auth::{Claims, JwtKeys};
use uuid::Uuid;

const SECRET: &str = "least-privilege-test-secret-0123456789abcdef";
const STEM: &str = "strata_lp_";
/// A run's leftovers younger than this may belong to a run still going.
const STALE_AFTER_SECS: u64 = 3600;
/// SQLSTATE `insufficient_privilege`.
const PERMISSION_DENIED: &str = "42501";

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its user (and password) and database replaced.
fn url_as(url: &str, user: &str, password: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split_once('/').map_or(host, |(host, _)| host);
    format!("{scheme}://{user}:{password}@{host}/{database}")
}

fn admin_url(database: &str) -> String {
    let url = server_url();
    let base = url.rsplit_once('/').expect("a database part").0;
    format!("{base}/{database}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Whether the connecting role may create roles and databases; says why not when it may not.
async fn may_create_roles(admin: &PgPool) -> bool {
    let (may,): (bool,) = sqlx::query_as(
        "SELECT rolsuper OR (rolcreaterole AND rolcreatedb) FROM pg_roles \
         WHERE rolname = current_user",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    if !may {
        eprintln!("skipped: the role of DATABASE_URL lacks CREATEROLE or CREATEDB");
    }
    may
}

/// Drops the databases and roles of runs that ended an hour ago or more.
async fn drop_stale(admin: &PgPool) {
    let stale = |name: &str| {
        name.strip_prefix(STEM)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok())
            .is_some_and(|secs| secs + STALE_AFTER_SECS < now())
    };
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(STEM)
            .fetch_all(admin)
            .await
            .unwrap();
    for name in databases.iter().filter(|name| stale(name)) {
        drop_database(admin, name).await;
    }
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)")
            .bind(STEM)
            .fetch_all(admin)
            .await
            .unwrap();
    for name in roles.iter().filter(|name| stale(name)) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS \"{name}\""
        )))
        .execute(admin)
        .await;
    }
}

/// Names come from this test or from pg_database filtered by the stem, and are quoted.
async fn drop_database(admin: &PgPool, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await;
}

/// A binary of this workspace with `args`, nothing taken from the test's environment.
fn binary(path: &std::path::Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(path);
    command
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("ELASTICSEARCH_URL")
        .env_remove("STRATA_JWT_SECRET")
        .stdin(Stdio::null());
    command
}

fn strata_web(url: &str, args: &[&str]) -> Command {
    binary(env!("CARGO_BIN_EXE_strata-web").as_ref(), url, args)
}

/// `strata-projector`, built into the directory of `strata-web` first: a test of this package
/// alone does not build another package's binary, and an old one there would test old code.
fn strata_projector_binary() -> PathBuf {
    let web = PathBuf::from(env!("CARGO_BIN_EXE_strata-web"));
    let profile_dir = web.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "-p", "strata-projector", "--bin"])
        .arg("strata-projector")
        .env("CARGO_TARGET_DIR", target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
        None => panic!("no profile directory in {}", web.display()),
    }
    assert!(
        build.status().unwrap().success(),
        "cannot build strata-projector"
    );
    profile_dir.join("strata-projector")
}

async fn run_ok(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{shown}\n{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process killed when dropped, so a failed assertion leaves no server behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `strata-web` and waits for the address it logs.
fn serve(url: &str) -> (Running, String) {
    let mut child = strata_web(url, &["--http-addr", "127.0.0.1:0"])
        .env("STRATA_JWT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    // The log is read to its end, so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let parsed: Value = serde_json::from_str(&line).unwrap();
                let _ = address_tx.send(parsed["address"].as_str().unwrap().to_owned());
            }
        }
    });
    let running = Running(child);
    let address = address_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("strata-web never listened (did its start-up fail as the service's role?)");
    (running, format!("http://{address}"))
}

fn operator_token() -> String {
    JwtKeys::new(SECRET.as_bytes())
        .sign(&Claims::issued_now(
            "operator-1",
            "operator",
            None,
            Duration::from_secs(600),
        ))
        .unwrap()
}

fn an_append() -> AppendRequest {
    AppendRequest {
        stream_id: StreamId::new("order", Uuid::now_v7()),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Tested".into(),
            schema_version: 1,
            data: json!({}),
            metadata: Metadata::default(),
            recorded_at: time::OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    }
}

/// Runs `sql` as the pool's role; unless it fails with `permission denied`, adds what happened
/// to `wrong` (every check runs, so a broken grant shows all it lets through at once).
async fn expect_refused(pool: &PgPool, who: &str, sql: &str, wrong: &mut Vec<String>) {
    let outcome = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await;
    let code = outcome
        .as_ref()
        .err()
        .and_then(|e| e.as_database_error())
        .and_then(|db| db.code())
        .map(|code| code.into_owned());
    if code.as_deref() != Some(PERMISSION_DENIED) {
        wrong.push(format!("{who} ran {sql}: {outcome:?}"));
    }
}

/// What the service roles must never do to the log, each a statement of its own.
const TAMPERING: &[&str] = &[
    "UPDATE events SET event_type = 'Forged'",
    "DELETE FROM events",
    "TRUNCATE events",
    "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
     schema_version, data, metadata, recorded_at) \
     SELECT position + 100, gen_random_uuid(), 'order-forged', 1, 'Forged', 1, '{}', '{}', \
     now() FROM event_log_head",
    "UPDATE event_log_head SET position = position + 100",
    "INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version, \
     global_position) VALUES ('p', 'k', 'f', 'order-forged', 1, 1)",
    "INSERT INTO streams (stream_id, version) VALUES ('order-forged', 7)",
    "UPDATE streams SET version = version + 1",
];

/// A call of the one-event append function (migration 0011) on a stream that does not exist.
const APPEND_ONE: &str = "SELECT at_position FROM strata_append_one('order-none', 1, \
     gen_random_uuid(), 'Tested', 1, '{}', '{}', now())";

/// Everything of the scenario that runs once the roles and the database are there.
async fn scenario(prefix: &str, url_of: impl Fn(&str) -> String) {
    let owner = url_of("owner");
    run_ok(strata_web(&owner, &["migrate"])).await;
    run_ok(strata_web(&owner, &["roles", "grant", "--prefix", prefix])).await;

    // strata-web as the app role: its start-up finds the migrations applied and creates nothing.
    let (_web, address) = serve(&url_of("app"));
    let projector = strata_projector_binary();
    let _projector = Running(
        binary(&projector, &url_of("projector"), &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let token = operator_token();
    let order = json!({
        "customerId": "c1",
        "currency": "EUR",
        "items": [{"productId": "sku-1", "quantity": 2, "unitPriceCents": 150}],
        "shippingAddress": "1 Main Street",
    });
    // One order through the group function, one through the single append (its key).
    let mut placed = Vec::new();
    for key in [None, Some("order-2")] {
        let mut request = client
            .post(format!("{address}/v1/orders"))
            .bearer_auth(&token)
            .json(&order);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 201, "{:?}", answer.text().await);
        let body: Value = answer.json().await.unwrap();
        placed.push((
            body["orderId"].as_str().unwrap().to_owned(),
            body["position"].as_u64().unwrap(),
        ));
    }
    let last = placed[1].1.to_string();
    let read = |path: String| {
        client
            .get(format!("{address}{path}"))
            .bearer_auth(&token)
            .header("X-Min-Position", &last)
            .send()
    };
    for (id, _) in &placed {
        let answer = read(format!("/v1/orders/{id}")).await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
        let summary: Value = answer.json().await.unwrap();
        assert_eq!(summary["totalCents"], 300, "{summary}");
    }
    let answer = read("/v1/orders/search?q=Main".to_owned()).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let hits: Value = answer.json().await.unwrap();
    assert_eq!(hits["items"].as_array().map(Vec::len), Some(2), "{hits}");

    // The service roles, connected directly: the append path works, nothing else writes.
    let app = PgPool::connect(&url_of("app")).await.unwrap();
    let appended = PgEventStore::new(app.clone()).append(an_append()).await;
    assert!(appended.is_ok(), "{appended:?}");
    // The one-statement route too, called directly: through the store, a refused call is
    // written again by `strata_append`, which would hide a missing grant. Its stream does not
    // exist: nothing is written.
    let one: Result<Option<i64>, _> = sqlx::query_scalar(APPEND_ONE).fetch_one(&app).await;
    assert!(matches!(one, Ok(None)), "{one:?}");
    let projector_role = PgPool::connect(&url_of("projector")).await.unwrap();
    let mut wrong = Vec::new();
    for (who, pool) in [("app", &app), ("projector", &projector_role)] {
        for sql in TAMPERING {
            expect_refused(pool, who, sql, &mut wrong).await;
        }
    }
    let appended = PgEventStore::new(projector_role.clone())
        .append(an_append())
        .await;
    assert!(appended.is_err(), "the projector appended: {appended:?}");
    expect_refused(&projector_role, "projector", APPEND_ONE, &mut wrong).await;

    // The auditor reads the log and the read models, and nothing more.
    let auditor = PgPool::connect(&url_of("auditor")).await.unwrap();
    let (events, summaries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM order_summaries)",
    )
    .fetch_one(&auditor)
    .await
    .unwrap();
    for sql in TAMPERING.iter().chain(&[
        "UPDATE order_summaries SET status = 'Forged'",
        "INSERT INTO projection_checkpoints (projection) VALUES ('forged')",
        "UPDATE snapshots SET state_version = 0",
        "SELECT strata_append_group('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', \
         '{}', '{}', '{}')",
        "SELECT strata_append('s', 0::smallint, 0, '{}', '{}', '{}', '{}', '{}', '{}', \
         NULL, NULL, NULL)",
        APPEND_ONE,
    ]) {
        expect_refused(&auditor, "auditor", sql, &mut wrong).await;
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    // Two orders and the direct append; the auditor's reads worked.
    assert_eq!((events, summaries), (3, 2));

    // A rebuild runs as the owner, and the new tables keep the grants.
    run_ok(binary(&projector, &owner, &["rebuild", "orders"])).await;
    let answer = read(format!("/v1/orders/{}", placed[0].0)).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
    let (rebuilt,): (i64,) = sqlx::query_as("SELECT count(*) FROM order_summaries")
        .fetch_one(&auditor)
        .await
        .unwrap();
    assert_eq!(rebuilt, 2);

    for pool in [app, projector_role, auditor] {
        pool.close().await;
    }
}

#[tokio::test]
async fn the_service_roles_serve_orders_but_cannot_write_the_log_except_through_the_append_functions()
 {
    let admin = PgPool::connect(&server_url()).await.unwrap();
    if !may_create_roles(&admin).await {
        return;
    }
    drop_stale(&admin).await;
    let prefix = format!(
        "{STEM}{}_{}",
        now(),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let database = prefix.clone();
    run_ok(strata_web(
        &admin_url(&database),
        &["roles", "create", "--prefix", &prefix],
    ))
    .await;
    // Passwords, so that the test also runs where the server asks for them.
    let password = Uuid::new_v4().simple().to_string();
    for role in ["owner", "app", "projector", "auditor"] {
        let sql = format!("ALTER ROLE \"{prefix}_{role}\" PASSWORD '{password}'");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }
    let url_of = |role: &str| {
        url_as(
            &server_url(),
            &format!("{prefix}_{role}"),
            &password,
            &database,
        )
    };

    scenario(&prefix, url_of).await;

    drop_database(&admin, &database).await;
    for role in ["owner", "app", "projector", "auditor"] {
        let sql = format!("DROP ROLE \"{prefix}_{role}\"");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
}
