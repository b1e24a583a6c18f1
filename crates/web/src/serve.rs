//! The HTTP server loop: the router on hyper's HTTP/1.1 connections, with what `axum::serve`
//! does not expose — a header-read timeout (which also closes idle kept-alive connections: hyper
//! starts it whenever a connection waits for a request's head), a write-stall timeout (a client
//! that stops reading its responses), a cap on open connections, and a bounded drain at shutdown,
//! so that idle, dripping or non-reading clients can neither hold the server nor exhaust its file
//! descriptors nor delay its stop.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// Longest a connection may go without taking a byte of a response it is sent; it is
    /// closed then (a client that stopped reading would otherwise hold it forever).
    pub write_stall_timeout: Duration,
    /// Longest the shutdown waits for connections to finish their requests; the rest are
    /// dropped.
    pub shutdown_grace: Duration,
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
            metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
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
            let stream = WriteStall::new(stream, limits.write_stall_timeout);
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
    if tokio::time::timeout(limits.shutdown_grace, open_tx.closed())
        .await
        .is_err()
    {
        // Their tasks end with the runtime; what must run after the server (the workers'
        // stop, the SQLite checkpoint) is not held up by them.
        tracing::warn!(
            open = open_tx.receiver_count(),
            "connections still open after the shutdown grace; dropping them"
        );
    }
    Ok(())
}

/// A stream whose writes fail once they have made no progress for `timeout`: hyper waits for
/// a write as long as it takes, so a client that never reads would keep its connection.
#[derive(Debug)]
struct WriteStall<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write waits; reset by any progress.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }

    /// Turns a pending write into an error once the stall has lasted `timeout`.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.deadline = None;
            return polled;
        }
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no byte of its response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stalled(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.stalled(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.stalled(cx, polled)
    }
}
