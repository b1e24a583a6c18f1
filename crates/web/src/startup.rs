//! Start-up: the only place that names concrete adapters. Opens and migrates the storage
//! (PostgreSQL, or the embedded SQLite file), wires the application services, builds the router,
//! and serves until told to stop (with the projection workers in-process on SQLite, and in
//! development mode), then, on SQLite, checkpoints and closes the files; `backup` copies them.

mod projector;
mod roles;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use sqlx::{PgPool, SqlitePool};
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use strata_adapters_postgres::{
    PgEventStore, PgLeases, PgLogWakeups, PgProjectionStore, PgReadModels, PgSearchIndex,
    PgSettings, PgSnapshotStore,
};
use strata_adapters_sqlite::{
    SqliteEventStore, SqliteLeases, SqliteProjectionStore, SqliteReadModels, SqliteSearchIndex,
    SqliteSettings, SqliteSnapshotStore,
};
use strata_application::projection::{ProjectorConfig, WorkerDeps};
use strata_application::{
    CommandConfig, CommandService, HistoryService, QueryConfig, QueryService, Rehydrator,
    StatusService,
};
use strata_ports::{EventStore, RandomIds, ReadModels, SearchIndex, SnapshotStore, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::{JwtKeys, TokenRules};
use crate::error::{PanicProblem, add_request_id};
use crate::limits::{EdgeLimits, InFlight, RateLimiters};
use crate::request_id::{self, MakeRequestUuidV7, REQUEST_ID};
use crate::routes;
use crate::settings::Settings;
use crate::state::{AppState, Services};

use projector::InProcessProjector;
pub use roles::roles;

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The services the router serves, for their upkeep (metrics, rate limits).
    state: AppState,
    /// What one client may take of the server.
    limits: EdgeLimits,
    /// `/metrics` on its own address, when it is not served with the API.
    metrics_server: Option<(TcpListener, Router)>,
    /// The projection workers, when they run in this process (development mode).
    projector: Option<InProcessProjector>,
    /// The SQLite files to checkpoint and close once the server and its workers have stopped.
    sqlite: Vec<SqlitePool>,
}

// Which storage a `DATABASE_URL` names: parsed by the embedded adapter, which owns the default
// (no URL: a file in the data directory), and shared with strata-projector.
pub use strata_adapters_sqlite::{SecretUrl, Storage, StorageError};

/// The storage ports the server reads and writes.
#[derive(Clone)]
pub struct Stores {
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub read_models: Arc<dyn ReadModels>,
    pub search: Arc<dyn SearchIndex>,
    /// How often a command that lost a race to a concurrent writer is tried again.
    pub command_retries: u32,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// The PostgreSQL adapters on one pool (search too: its full-text search).
    pub fn postgres(pool: &PgPool) -> Self {
        Self {
            events: Arc::new(PgEventStore::new(pool.clone())),
            snapshots: Arc::new(PgSnapshotStore::new(pool.clone())),
            read_models: Arc::new(PgReadModels::new(pool.clone())),
            search: Arc::new(PgSearchIndex::new(pool.clone())),
            command_retries: CommandConfig::default().max_retries,
        }
    }

    /// The SQLite adapters: `events` on the main file's pool, and `search` (the embedded index
    /// on its own file, unless Elasticsearch replaces it).
    pub fn sqlite(
        events: &SqliteEventStore,
        pool: &SqlitePool,
        search: Arc<dyn SearchIndex>,
    ) -> Self {
        Self {
            events: Arc::new(events.clone()),
            snapshots: Arc::new(SqliteSnapshotStore::new(pool.clone())),
            read_models: Arc::new(SqliteReadModels::new(pool.clone())),
            search,
            // One writer at a time, and the projection batches take turns with the commands:
            // a burst of commands on one stream needs more rounds to land (measured: 32
            // clients on one order, a tenth ran out of 16 retries; none of 32).
            command_retries: 2 * CommandConfig::default().max_retries,
        }
    }
}

/// An opened storage back-end: the server's stores, and what projection workers run on.
struct Backend {
    stores: Stores,
    workers: WorkerDeps,
    pacing: ProjectorConfig,
    /// The SQLite pools (the main file's, the search index's) to close at the end.
    sqlite: Vec<SqlitePool>,
}

/// How long the workers on SQLite let appends gather before a batch: SQLite has one writer,
/// and a batch per append would keep a burst of commands queueing for the write lock (measured:
/// of 32 clients racing on one order, a third ran out of retries with 20 ms, a tenth with 50 ms).
/// Read-your-writes waits this much longer at most.
pub const SQLITE_LINGER: Duration = Duration::from_millis(50);

fn pg_worker_deps(pool: &PgPool) -> WorkerDeps {
    WorkerDeps {
        events: Arc::new(PgEventStore::new(pool.clone())),
        store: Arc::new(PgProjectionStore::new(pool.clone())),
        leases: Arc::new(PgLeases::new(pool.clone())),
        clock: Arc::new(SystemClock),
        wakeups: Some(Arc::new(PgLogWakeups::new(pool.clone()))),
    }
}

fn sqlite_settings(path: &std::path::Path, max_connections: u32) -> SqliteSettings {
    SqliteSettings {
        max_connections,
        ..SqliteSettings::at(path)
    }
}

/// Opens the storage the settings name, creating and migrating it as needed.
async fn open(settings: &Settings) -> anyhow::Result<Backend> {
    let elastic = elasticsearch(settings)?;
    match &settings.storage {
        Storage::Postgres(url) => {
            migrate(&settings.storage).await?;
            let pool =
                strata_adapters_postgres::connect(&pg_settings(url, settings.db_max_connections))
                    .await
                    .context("cannot connect to PostgreSQL")?;
            tracing::info!("storage: PostgreSQL");
            let mut stores = Stores::postgres(&pool);
            if let Some(elastic) = elastic {
                stores.search = elastic;
            }
            Ok(Backend {
                stores,
                workers: pg_worker_deps(&pool),
                pacing: ProjectorConfig::default(),
                sqlite: Vec::new(),
            })
        }
        Storage::Sqlite(path) => {
            let sqlite = sqlite_settings(path, settings.db_max_connections);
            let pool = open_sqlite(&sqlite).await?;
            let mut files = vec![pool.clone()];
            // The embedded index's file is opened only when it is the one searched.
            let search: Arc<dyn SearchIndex> = match elastic {
                Some(elastic) => elastic,
                None => {
                    let search = strata_adapters_sqlite::connect_search(&sqlite)
                        .await
                        .context("cannot open the search index's SQLite file")?;
                    files.push(search.clone());
                    Arc::new(SqliteSearchIndex::new(search))
                }
            };
            tracing::info!(path = %path.display(), "storage: embedded SQLite");
            let events = SqliteEventStore::new(pool.clone());
            Ok(Backend {
                stores: Stores::sqlite(&events, &pool, search),
                workers: WorkerDeps {
                    events: Arc::new(events.clone()),
                    store: Arc::new(SqliteProjectionStore::new(pool.clone())),
                    leases: Arc::new(SqliteLeases::new(pool)),
                    clock: Arc::new(SystemClock),
                    wakeups: Some(Arc::new(events.wakeups())),
                },
                pacing: ProjectorConfig {
                    linger: SQLITE_LINGER,
                    ..ProjectorConfig::default()
                },
                sqlite: files,
            })
        }
    }
}

/// Opens (creating) and migrates the SQLite file. The search index's file beside it needs no
/// migration: its index is made by `SearchIndex::prepare`.
async fn open_sqlite(settings: &SqliteSettings) -> anyhow::Result<SqlitePool> {
    let path = settings.path.display();
    let pool = strata_adapters_sqlite::connect(settings)
        .await
        .with_context(|| format!("cannot open the SQLite database {path}"))?;
    strata_adapters_sqlite::migrate(&pool)
        .await
        .with_context(|| format!("cannot apply the migrations to {path}"))?;
    Ok(pool)
}

/// The Elasticsearch index that replaces the database's own search, when `elasticsearch_url`
/// is set.
///
/// # Errors
/// An Elasticsearch URL or index prefix the client refuses.
fn elasticsearch(settings: &Settings) -> anyhow::Result<Option<Arc<dyn SearchIndex>>> {
    match &settings.elasticsearch_url {
        Some(url) => {
            let prefix = &settings.search_index_prefix;
            tracing::info!(%url, prefix, "search runs on Elasticsearch");
            let index = EsSearchIndex::new(&ElasticSettings::for_cluster(url.expose(), prefix))
                .context("cannot configure the Elasticsearch client")?;
            Ok(Some(Arc::new(index)))
        }
        None => {
            tracing::info!("search runs on the database's full-text search (no ELASTICSEARCH_URL)");
            Ok(None)
        }
    }
}

/// The token verifier the settings describe: the current secret signs, every secret verifies.
fn jwt_keys(settings: &Settings) -> JwtKeys {
    let previous: Vec<&[u8]> = settings
        .jwt_previous_secrets
        .iter()
        .map(|secret| secret.expose().as_bytes())
        .collect();
    JwtKeys::with_rules(
        settings.jwt_secret.expose().as_bytes(),
        &previous,
        TokenRules {
            max_lifetime: settings.jwt_max_lifetime,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
        },
    )
}

/// How often histogram samples are folded in when nobody scrapes `/metrics`.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

fn pg_settings(database_url: &str, max_connections: u32) -> PgSettings {
    PgSettings {
        url: database_url.to_owned(),
        max_connections,
        acquire_timeout: Duration::from_secs(5),
    }
}

/// Creates the database if it is missing and applies the migrations.
///
/// # Errors
/// When the database cannot be reached, created or migrated.
pub async fn migrate(storage: &Storage) -> anyhow::Result<()> {
    match storage {
        Storage::Postgres(url) => {
            let pg = pg_settings(url, 1);
            strata_adapters_postgres::create_database_if_missing(&pg)
                .await
                .context("cannot create the database")?;
            let pool = strata_adapters_postgres::connect(&pg)
                .await
                .context("cannot connect to PostgreSQL")?;
            strata_adapters_postgres::migrate(&pool).await.context(
                "cannot apply the migrations (a role that does not own the tables cannot: \
                     run `strata-web migrate` as their owner first)",
            )?;
            pool.close().await;
        }
        Storage::Sqlite(path) => {
            open_sqlite(&sqlite_settings(path, 1)).await?.close().await;
        }
    }
    Ok(())
}

impl Application {
    /// Connects to PostgreSQL (creating and migrating the database as needed), wires the
    /// services (and, with `with_projector`, the projection workers) and binds the listener
    /// (port 0 picks a free port).
    ///
    /// # Errors
    /// When the database is unreachable, a migration fails, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let Backend {
            stores,
            workers,
            pacing,
            sqlite,
        } = open(&settings).await?;
        let with_projector = settings.with_projector;
        let search = stores.search.clone();
        // Readers need the index to exist; the projector creates it too, so an engine that is
        // down now only makes searches answer 503 until it is back.
        if let Err(error) = search.prepare().await {
            tracing::warn!(%error, "the search index is not ready; searches fail until it is");
        }
        let mut application = Self::with_stores(settings, stores).await?;
        application.sqlite = sqlite;
        if with_projector {
            tracing::info!("the projection workers run in this process");
            application.projector = Some(InProcessProjector::new(workers, search, pacing));
        }
        Ok(application)
    }

    /// Wires the services over the given stores and binds the listener. Nothing is migrated or
    /// probed here, so a store that is down shows in `/health/ready`, not as a start-up error.
    /// No projection worker runs (`with_projector` needs [`Application::build`]).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn with_stores(settings: Settings, stores: Stores) -> anyhow::Result<Self> {
        let Stores {
            events: store,
            snapshots,
            read_models,
            search,
            command_retries,
        } = stores;
        if settings.using_development_secret {
            tracing::warn!(
                "development mode: tokens are signed with the published development secret; \
                 never expose this instance"
            );
            tracing::info!(
                "get a token signed with it: cargo xtask token --role operator \
                 (or --role customer --customer-id alice)"
            );
        }
        let config = CommandConfig {
            snapshot_every: settings.snapshot_every,
            max_retries: command_retries,
            ..CommandConfig::default()
        };
        let state = AppState::new(Services {
            commands: CommandService::new(
                store.clone(),
                snapshots.clone(),
                Arc::new(SystemClock),
                Arc::new(RandomIds),
                config,
            ),
            history: HistoryService::new(Rehydrator::new(store.clone(), snapshots)),
            queries: QueryService::new(
                read_models.clone(),
                search,
                store.clone(),
                QueryConfig {
                    max_wait: settings.read_wait,
                    // Every instance shares the secret, so each accepts the others' cursors.
                    // Only the current secret seals them: a rotation ends the paging in flight.
                    cursor_key: format!("strata-cursor|{}", settings.jwt_secret.expose())
                        .into_bytes(),
                },
            ),
            status: StatusService::new(store.clone(), read_models),
            jwt: jwt_keys(&settings),
            readiness: store,
            metrics: crate::metrics::recorder(),
            rate_limits: RateLimiters::new(settings.limits.rate),
        });
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let metrics_server = match settings.metrics_addr {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for /metrics on {address}"))?;
                let routes = routes::metrics::router().with_state(state.clone());
                Some((listener, with_middleware(routes, 0, &settings.limits)))
            }
            None => None,
        };
        Ok(Self {
            metrics_server,
            listener,
            limits: settings.limits,
            router: router(state.clone(), &settings),
            state,
            projector: None,
            sqlite: Vec::new(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until SIGINT or SIGTERM, then finishes the requests in flight.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then finishes the requests in flight, stops the
    /// in-process projection workers (each finishes or rolls back its batch) and, on SQLite,
    /// checkpoints each file's write-ahead log into it and closes it, so that `strata.db` alone
    /// holds every commit.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let address = self.listener.local_addr()?;
        tracing::info!(%address, "strata-web listening; API docs at http://{address}/docs");
        let (stop_tx, stop) = watch::channel(false);
        let projector = self.projector.map(|p| tokio::spawn(p.run(stop.clone())));
        let metrics_server = self.metrics_server.map(|(listener, router)| {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "/metrics served on its own address");
            }
            let mut stopped = stop.clone();
            let signal = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await.is_ok();
            };
            tokio::spawn(crate::serve::serve(
                listener,
                router,
                self.limits.connections,
                signal,
            ))
        });
        tokio::spawn(upkeep(self.state, stop));
        let served =
            crate::serve::serve(self.listener, self.router, self.limits.connections, signal).await;
        let _ = stop_tx.send(true);
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        if let Some(projector) = projector {
            if let Err(error) = projector.await {
                tracing::error!(%error, "the in-process projector ended abnormally");
            }
            tracing::info!("projection workers stopped");
        }
        close_sqlite(self.sqlite).await;
        served
    }
}

/// Checkpoints and closes the SQLite files. Without it the commits of the last moments stay in
/// `strata.db-wal` when the process exits (its pools are never closed), and a copy of
/// `strata.db` alone misses them.
async fn close_sqlite(pools: Vec<SqlitePool>) {
    for pool in pools {
        // The adapter logs what it did, and warns when another process kept the log in use.
        if let Err(error) = strata_adapters_sqlite::close(&pool).await {
            tracing::error!(%error, "cannot checkpoint the SQLite database; its -wal file stays");
        }
    }
}

/// Writes a consistent copy of the embedded SQLite database (and its search index's file,
/// when it exists) to the new file `to`, while servers may be using it; returns what was
/// written, one line per file.
///
/// # Errors
/// PostgreSQL storage (its own tools back it up), a missing database, an existing target, or a
/// failed copy.
pub async fn backup(storage: &Storage, to: &std::path::Path) -> anyhow::Result<String> {
    let path = match storage {
        Storage::Postgres(_) => anyhow::bail!(
            "strata-web backup copies the embedded SQLite database only: back PostgreSQL up with \
             pg_dump, or with continuous archiving and point-in-time recovery (PITR)"
        ),
        Storage::Sqlite(path) => path,
    };
    let backup = strata_adapters_sqlite::backup(&SqliteSettings::at(path), to)
        .await
        .with_context(|| format!("cannot back up {}", path.display()))?;
    let database = &backup.database;
    let mut report = format!(
        "backed up {} to {} ({} bytes",
        database.source.display(),
        database.path.display(),
        database.bytes
    );
    if let (Some(events), Some(last)) = (backup.events, backup.last_position) {
        report.push_str(&format!(", {events} events, last position {last}"));
    }
    report.push_str(")\n");
    if let Some(search) = &backup.search {
        report.push_str(&format!(
            "backed up the search index {} to {} ({} bytes)\n",
            search.source.display(),
            search.path.display(),
            search.bytes
        ));
    }
    Ok(report)
}

/// Folds histogram samples in and forgets idle principals' rate limits regularly, so that
/// memory stays bounded between scrapes and whatever the number of principals seen.
async fn upkeep(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(METRICS_UPKEEP) => {
                state.metrics.run_upkeep();
                state.rate_limits.forget_idle();
            }
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// The whole HTTP surface with its middleware: `/metrics` unless it has its own address, and
/// Swagger UI unless switched off.
pub fn router(state: AppState, settings: &Settings) -> Router {
    let mut routes = Router::new()
        .merge(routes::orders::router())
        .merge(routes::order_queries::router())
        .merge(routes::search::router())
        .merge(routes::accounts::router())
        .merge(routes::account_queries::router())
        .merge(routes::projections::router())
        .merge(routes::health::router())
        .merge(routes::openapi::router(settings.docs));
    if settings.metrics_addr.is_none() {
        routes = routes.merge(routes::metrics::router());
    }
    with_middleware(
        routes.with_state(state),
        settings.body_limit,
        &settings.limits,
    )
}

/// Wraps routes in the middleware every response goes through, outermost first: count and time
/// the request by route template (outside every limit, so their answers count too), vet the
/// client's request id, set one if there is none, return it on the response, open a trace span
/// carrying it, turn every error into a problem quoting it, catch panics (inside the problem
/// layer, so a panic's 500 quotes the id too), shed requests beyond the in-flight cap, bound
/// each request's time (503 problems quoting the id), then one body limit for every route.
pub fn with_middleware(routes: Router, body_limit: usize, limits: &EdgeLimits) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id)
    })
    // Every problem is logged where it is rendered, at the level its cause deserves
    // (`ApiError::log_level`): at ERROR here, each expected 503 would page someone.
    .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG));
    routes.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn(crate::metrics::record_request))
            .layer(axum::middleware::map_request(request_id::drop_unacceptable))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(trace)
            .layer(axum::middleware::from_fn(add_request_id))
            .layer(axum::middleware::from_fn(crate::security::headers))
            .layer(CatchPanicLayer::custom(PanicProblem))
            .layer(axum::middleware::from_fn_with_state(
                InFlight::new(limits.max_in_flight),
                crate::limits::cap_in_flight,
            ))
            .layer(axum::middleware::from_fn_with_state(
                limits.request_timeout,
                crate::limits::request_timeout,
            ))
            // Checked on the declared length before any handler runs, so a route that reads no
            // body refuses an oversized one too; axum's own limit is off to keep one setting.
            .layer(RequestBodyLimitLayer::new(body_limit))
            .layer(DefaultBodyLimit::disable()),
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn panics() -> &'static str {
        panic!("a bug in a handler")
    }

    fn panicking_router() -> Router {
        with_middleware(
            Router::new().route("/panic", get(panics)),
            1024,
            &EdgeLimits::default(),
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json_with_the_request_id() {
        let request = Request::get("/panic")
            .header("x-request-id", "panic-1")
            .body(Body::empty())
            .unwrap();

        let response = panicking_router().oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            crate::error::PROBLEM_JSON
        );
        assert_eq!(response.headers().get("x-request-id").unwrap(), "panic-1");
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 64 * 1024).await.unwrap())
                .unwrap();
        assert_eq!(body["requestId"], "panic-1");
        assert_eq!(body["status"], 500);
        assert_eq!(body["type"], "urn:strata:problem:internal");
        assert!(
            !body["detail"].as_str().unwrap().contains("a bug"),
            "the panic message is logged, not sent: {body}"
        );
    }

    #[tokio::test]
    async fn a_panic_without_a_client_request_id_quotes_the_generated_one() {
        let request = Request::get("/panic").body(Body::empty()).unwrap();

        let response = panicking_router().oneshot(request).await.unwrap();

        let header = response
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 64 * 1024).await.unwrap())
                .unwrap();
        assert_eq!(body["requestId"], header.as_str());
    }
}
