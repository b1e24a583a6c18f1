//! The stream readers' connections (decision 0018): a pool of its own, by bb8, because sqlx's
//! pool pings every connection it takes back, from a task it spawns for that — a round trip and
//! two wake-ups after every read, which cost a load of 1,000 events a tenth of its rate. Here a
//! connection goes back as it is, unless its read did not end (an error, a visit that stopped
//! early, or a caller that gave up mid-read): then it is closed, and the next read opens a fresh
//! one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use strata_ports::EventStoreError;

use crate::error::event_store_error;

/// A stream reader's connection unused for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream reader's connection is closed once this old, as sqlx's pools close theirs.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Opens the readers' connections, and says which may be handed out.
#[derive(Debug)]
pub(crate) struct Readers {
    options: PgConnectOptions,
    /// The longest a connection may take to open (the pool's acquire timeout).
    connect_timeout: Duration,
}

/// The stream readers' pool, and why it last failed to open a connection.
#[derive(Debug, Clone)]
pub(crate) struct ReaderPool {
    pool: bb8::Pool<Readers>,
    errors: ConnectErrors,
    acquire_timeout: Duration,
}

/// The readers' connect errors (bb8 opens connections in tasks of its own and reports to a
/// read only that none came in time): each logged as it happens, the last one kept.
#[derive(Debug, Clone, Default)]
struct ConnectErrors(Arc<Mutex<Option<(Instant, EventStoreError)>>>);

impl bb8::ErrorSink<sqlx::Error> for ConnectErrors {
    fn sink(&self, error: sqlx::Error) {
        let error = event_store_error(&error);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), error));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<sqlx::Error>> {
        Box::new(self.clone())
    }
}

/// A connection of the stream readers, with what its last read left it as.
#[derive(Debug)]
pub(crate) struct Reader {
    connection: PgConnection,
    /// Whether its last read ended: every row read, nothing left for the next statement.
    clean: bool,
    /// When its last read ended.
    used: Instant,
}

/// A reader taken from the pool; it goes back when dropped, or is closed if [`Reader::done`]
/// was not called since [`Reader::start`].
pub(crate) type Taken<'a> = bb8::PooledConnection<'a, Readers>;

impl Reader {
    /// The connection, for one read: until [`Reader::done`], the reader counts as broken.
    pub(crate) fn start(&mut self) -> &mut PgConnection {
        self.clean = false;
        &mut self.connection
    }

    /// The read ended: the connection may serve the next.
    pub(crate) fn done(&mut self) {
        self.clean = true;
        self.used = Instant::now();
    }
}

impl bb8::ManageConnection for Readers {
    type Connection = Reader;
    type Error = sqlx::Error;

    async fn connect(&self) -> Result<Reader, sqlx::Error> {
        let connect = PgConnection::connect_with(&self.options);
        let connection = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer from the database within the acquire timeout",
                ))
            })??;
        Ok(Reader {
            connection,
            clean: true,
            used: Instant::now(),
        })
    }

    /// As the crate's other pools do ([`crate::pool_policy`]): only a connection that has sat
    /// idle (the server may have closed it since) is pinged first. A ping cut short (bb8 gives
    /// up on a hand-out after its timeout) leaves it broken.
    async fn is_valid(&self, reader: &mut Reader) -> Result<(), sqlx::Error> {
        if reader.used.elapsed() > crate::PING_WHEN_IDLE_FOR {
            reader.clean = false;
            reader.connection.ping().await?;
            reader.clean = true;
            reader.used = Instant::now();
        }
        Ok(())
    }

    fn has_broken(&self, reader: &mut Reader) -> bool {
        !reader.clean
    }
}

/// The readers of a store on `options`, at most `max` connections, each opened when first
/// needed and closed after [`IDLE_TIMEOUT`] unused; a read waits at most `acquire_timeout` for
/// one (retried meanwhile if the database refuses it). The most recently used is handed out
/// first, so that the connections a quieter load no longer needs sit idle and are closed.
/// Starts the pool's reaper: call it inside the runtime.
pub(crate) fn pool(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> ReaderPool {
    // bb8 panics on a zero timeout.
    let acquire_timeout = acquire_timeout.max(Duration::from_millis(1));
    let errors = ConnectErrors::default();
    let pool = bb8::Pool::builder()
        .max_size(max.max(1))
        .min_idle(None)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .max_lifetime(Some(MAX_LIFETIME))
        .connection_timeout(acquire_timeout)
        .queue_strategy(bb8::QueueStrategy::Lifo)
        .error_sink(Box::new(errors.clone()))
        .build_unchecked(Readers {
            options,
            connect_timeout: acquire_timeout,
        });
    ReaderPool {
        pool,
        errors,
        acquire_timeout,
    }
}

/// A reader from `readers`.
///
/// # Errors
/// When none is free or can be opened within the acquire timeout: the last connect error of
/// that time if there was one (a refused login stays a refusal), else `Unavailable`.
pub(crate) async fn take(readers: &ReaderPool) -> Result<Taken<'_>, EventStoreError> {
    let asked = Instant::now();
    readers.pool.get().await.map_err(|error| match error {
        bb8::RunError::User(error) => event_store_error(&error),
        bb8::RunError::TimedOut => {
            let last = readers
                .errors
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            match last {
                Some((at, error)) if at + readers.acquire_timeout >= asked => error,
                _ => EventStoreError::Unavailable(
                    "no connection for a stream read within the acquire timeout".into(),
                ),
            }
        }
    })
}
