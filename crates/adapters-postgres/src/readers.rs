//! The stream readers' connections (decision 0018): a pool of its own, by bb8, because sqlx's
//! pool pings every connection it takes back, from a task it spawns for that — a round trip and
//! two wake-ups after every read, which cost a load of 1,000 events a tenth of its rate. Here a
//! connection goes back as it is, unless its read did not end (an error, or a caller that gave
//! up mid-read): then it is closed, and the next read opens a fresh one.

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
}

/// A connection of the stream readers, with what its last read left it as.
#[derive(Debug)]
pub(crate) struct Reader {
    connection: PgConnection,
    /// Whether its last read ended (rows left unread are drained by the next statement).
    clean: bool,
    /// When its last read ended.
    used: Instant,
}

/// A reader taken from the pool; it goes back when dropped, or is closed if [`Taken::done`]
/// was not called since it was taken.
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
        Ok(Reader {
            connection: PgConnection::connect_with(&self.options).await?,
            clean: true,
            used: Instant::now(),
        })
    }

    /// As the crate's other pools do ([`crate::pool_policy`]): only a connection that has sat
    /// idle (the server may have closed it since) is pinged first.
    async fn is_valid(&self, reader: &mut Reader) -> Result<(), sqlx::Error> {
        if reader.used.elapsed() > crate::PING_WHEN_IDLE_FOR {
            reader.connection.ping().await?;
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
/// one. Starts the pool's reaper: call it inside the runtime.
pub(crate) fn pool(
    options: PgConnectOptions,
    max: u32,
    acquire_timeout: Duration,
) -> bb8::Pool<Readers> {
    bb8::Pool::builder()
        .max_size(max.max(1))
        .min_idle(None)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .max_lifetime(Some(MAX_LIFETIME))
        .connection_timeout(acquire_timeout)
        .retry_connection(false)
        .build_unchecked(Readers { options })
}

/// A reader from `pool`.
///
/// # Errors
/// The driver's error when no connection can be opened; `Unavailable` when none is free within
/// the acquire timeout.
pub(crate) async fn take(pool: &bb8::Pool<Readers>) -> Result<Taken<'_>, EventStoreError> {
    pool.get().await.map_err(|error| match error {
        bb8::RunError::User(error) => event_store_error(&error),
        bb8::RunError::TimedOut => EventStoreError::Unavailable(
            "no connection for a stream read within the acquire timeout".into(),
        ),
    })
}
