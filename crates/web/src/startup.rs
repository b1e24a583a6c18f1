//! Start-up: opens the storage through `strata-wiring` (PostgreSQL, or the embedded SQLite
//! file, created and migrated as needed), wires the application services, builds the router,
//! and serves until told to stop (with the projection workers in-process on SQLite, and in
//! development mode), then, on SQLite, checkpoints and closes the files.

mod projector;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use strata_application::{
    CommandConfig, CommandService, HistoryService, LiveLog, LogFeed, QueryConfig, QueryService,
    Rehydrator, StatusService,
};
use strata_ports::{LogWakeups, RandomIds, SearchIndex, SystemClock};
use strata_wiring::{Backend, Database, Storage, StorageFiles, Stores};
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
use crate::subscriptions::Subscriptions;

use projector::InProcessProjector;

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
    files: StorageFiles,
}

/// Opens the storage the settings name, creating and migrating it as needed.
async fn open(settings: &Settings) -> anyhow::Result<Backend> {
    let elastic = elasticsearch(settings)?;
    let database = Database::open_migrated(&settings.storage, settings.db_max_connections).await?;
    let backend = database.backend(elastic).await?;
    match &settings.storage {
        Storage::Postgres(_) => tracing::info!("storage: PostgreSQL"),
        Storage::Sqlite(path) => tracing::info!(path = %path.display(), "storage: embedded SQLite"),
    }
    Ok(backend)
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
            Ok(Some(strata_wiring::elasticsearch(url.expose(), prefix)?))
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
            files,
        } = open(&settings).await?;
        let with_projector = settings.with_projector;
        let search = stores.search.clone();
        // Readers need the index to exist; the projector creates it too, so an engine that is
        // down now only makes searches answer 503 until it is back.
        if let Err(error) = search.prepare().await {
            tracing::warn!(%error, "the search index is not ready; searches fail until it is");
        }
        let wakeups = workers.wakeups.clone();
        let mut application = Self::wire(settings, stores, wakeups).await?;
        application.files = files;
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
        Self::wire(settings, stores, None).await
    }

    /// [`Application::with_stores`], the live log woken by `wakeups` when given (else it
    /// polls).
    async fn wire(
        settings: Settings,
        stores: Stores,
        wakeups: Option<Arc<dyn LogWakeups>>,
    ) -> anyhow::Result<Self> {
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
        let (closing, stopping) = watch::channel(false);
        let subscriptions = Subscriptions::new(
            Arc::new(LogFeed::new(store.clone())),
            LiveLog::new(
                store.clone(),
                wakeups,
                settings.subscriptions.buffer,
                stopping,
            ),
            settings.subscriptions,
        );
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
            subscriptions,
            closing,
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
            files: StorageFiles::default(),
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
        let state = self.state.clone();
        tokio::spawn(upkeep(self.state, stop));
        // Live streams never end by themselves: they end first, so that the stop waits only
        // for requests.
        let signal = async move {
            signal.await;
            state.closing.send_replace(true);
        };
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
        self.files.close().await;
        served
    }
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
        .merge(routes::events::router())
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
