//! The HTTP server loop: the router on hyper's HTTP/1.1 connections, with what `axum::serve`
//! does not expose — a header-read timeout (which also closes idle kept-alive connections: hyper
//! starts it whenever a connection waits for a request's head) and a cap on open connections, so
//! that idle or dripping clients can neither hold the server nor exhaust its file descriptors.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// What one connection may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest a connection may take to send a request's head, counted from when the server
    /// waits for it: on a new connection, and after each response on a kept-alive one (so it is
    /// also the idle keep-alive timeout). The connection is closed when it runs out.
    pub header_read_timeout: Duration,
    /// Most connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `signal` completes, then stops accepting, lets each
/// connection finish its request in flight, and returns once all are closed.
///
/// # Errors
/// Never, today: accept errors (a full file table, a connection reset before accept) are
/// logged and the loop goes on after a short pause.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut signal = pin!(signal);
    // Beyond MAX_PERMITS a semaphore panics; nobody opens that many connections anyway.
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    // Every connection task holds a clone; the loop waits for all of them to drop it.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: pause instead of spinning on the error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; the client sees a reset and can retry.
            metrics::counter!("strata_http_connections_refused_total").increment(1);
            tracing::debug!(%peer, max = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let mut connection = pin!(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
            );
            let stopping = async move {
                // The guard of the value is dropped here, before any await of the connection.
                let _ = stop.wait_for(|stopped| *stopped).await.is_ok();
            };
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stopping => {
                    // Finish the request in flight, then close; an idle connection closes at
                    // once.
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}
