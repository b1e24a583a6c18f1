//! Start-up: the only place that names concrete adapters. Connects and migrates the database,
//! wires the application services, builds the router, and serves until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use strata_adapters_postgres::{PgEventStore, PgSettings, PgSnapshotStore};
use strata_application::{CommandConfig, CommandService, HistoryService, Rehydrator};
use strata_ports::{EventStore, RandomIds, SnapshotStore, SystemClock};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::error::add_request_id;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
}

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
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pg = pg_settings(database_url, 1);
    strata_adapters_postgres::create_database_if_missing(&pg)
        .await
        .context("cannot create the database")?;
    let pool = strata_adapters_postgres::connect(&pg)
        .await
        .context("cannot connect to PostgreSQL")?;
    strata_adapters_postgres::migrate(&pool)
        .await
        .context("cannot apply the migrations")?;
    pool.close().await;
    Ok(())
}

impl Application {
    /// Connects to PostgreSQL (creating and migrating the database as needed), wires the
    /// services and binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    /// When the database is unreachable, a migration fails, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.using_development_secret {
            tracing::warn!(
                "development mode: tokens are signed with the published development secret; \
                 never expose this instance"
            );
        }
        migrate(&settings.database_url).await?;
        let pool = strata_adapters_postgres::connect(&pg_settings(
            &settings.database_url,
            settings.db_max_connections,
        ))
        .await
        .context("cannot connect to PostgreSQL")?;
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
        let snapshots: Arc<dyn SnapshotStore> = Arc::new(PgSnapshotStore::new(pool));
        let config = CommandConfig {
            snapshot_every: settings.snapshot_every,
            ..CommandConfig::default()
        };
        let state = AppState {
            commands: CommandService::new(
                store.clone(),
                snapshots.clone(),
                Arc::new(SystemClock),
                Arc::new(RandomIds),
                config,
            ),
            history: HistoryService::new(Rehydrator::new(store.clone(), snapshots)),
            jwt: JwtKeys::new(settings.jwt_secret.as_bytes()),
            readiness: store,
        };
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router: router(state, settings.body_limit),
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

    /// Serves until `signal` completes, then finishes the requests in flight.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, "strata-web listening; API docs at /docs");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(signal)
            .await
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id)
    });
    Router::new()
        .merge(routes::orders::router())
        .merge(routes::accounts::router())
        .merge(routes::health::router())
        .merge(routes::openapi::router())
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(add_request_id))
        .layer(CatchPanicLayer::new())
        .layer(trace)
        // Outermost: the id exists before anything logs, and is returned on every response.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
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
