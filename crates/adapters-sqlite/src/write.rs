//! Write transactions: `BEGIN IMMEDIATE`, after waiting for this process's turn at the file.
//!
//! SQLite has one writer per file. Writers that all waited inside `BEGIN IMMEDIATE` would each
//! hold a pooled connection while they wait, so a writer holding the lock that needs a second
//! connection (a projection batch reads the log while it holds its batch) could find the pool
//! empty and stall every writer until their busy timeouts. Waiting for the turn first, holding
//! no connection, avoids that; other processes sharing the file are still kept apart by
//! SQLite's own lock and busy timeout.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::OwnedMutexGuard;

/// Longest a writer waits for its turn: as long as SQLite's default busy timeout, so a stuck
/// writer makes the others unavailable (retry later) rather than hang. The turn is not
/// re-entrant: a task holding a write transaction of a file must not begin another on it (the
/// search index has its own file for that reason).
const TURN_WAIT: Duration = Duration::from_secs(5);

type Turn = tokio::sync::Mutex<()>;

/// The turn of each open database file in this process.
static TURNS: LazyLock<Mutex<HashMap<PathBuf, Weak<Turn>>>> = LazyLock::new(Mutex::default);

fn turn_of(pool: &SqlitePool) -> Arc<Turn> {
    // Canonical already: `SqliteSettings` names the file by its canonical directory, so
    // `./data/x.db` and `data/x.db` share one turn.
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut turns = TURNS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(turn) = turns.get(&file).and_then(Weak::upgrade) {
        return turn;
    }
    turns.retain(|_, turn| turn.strong_count() > 0);
    let turn = Arc::new(Turn::new(()));
    turns.insert(file, Arc::downgrade(&turn));
    turn
}

/// A write transaction holding this process's turn at its file until it ends: on a pooled
/// connection of its own (`'static`, [`begin_write`]), or on one its caller keeps ([`begin_write_on`]).
pub(crate) struct WriteTx<'c> {
    tx: Transaction<'c, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").finish_non_exhaustive()
    }
}

impl WriteTx<'_> {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl Deref for WriteTx<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Waits for this process's turn at the file, then begins an immediate transaction.
///
/// # Errors
/// [`sqlx::Error::PoolTimedOut`] when the turn does not come within [`TURN_WAIT`]; whatever
/// `BEGIN IMMEDIATE` fails with.
pub(crate) async fn begin_write(pool: &SqlitePool) -> Result<WriteTx<'static>, sqlx::Error> {
    let turn = wait_for(turn_of(pool)).await?;
    let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    Ok(WriteTx { tx, _turn: turn })
}

/// The turn, within [`TURN_WAIT`].
async fn wait_for(turn: Arc<Turn>) -> Result<OwnedMutexGuard<()>, sqlx::Error> {
    tokio::time::timeout(TURN_WAIT, turn.lock_owned())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)
}

/// As [`begin_write`], on the connection its caller keeps in `kept` (taken from `pool` when
/// there is none). A caller that must wait for its turn gives its connection back first, so that
/// the writer holding the turn finds one.
///
/// # Errors
/// As [`begin_write`].
pub(crate) async fn begin_write_on<'c>(
    pool: &SqlitePool,
    kept: &'c mut Option<PoolConnection<Sqlite>>,
) -> Result<WriteTx<'c>, sqlx::Error> {
    let turn = turn_of(pool);
    let turn = match turn.clone().try_lock_owned() {
        Ok(turn) => turn,
        Err(_) => {
            *kept = None;
            wait_for(turn).await?
        }
    };
    let conn = match kept.take() {
        Some(conn) => conn,
        None => pool.acquire().await?,
    };
    let tx = sqlx::Connection::begin_with(&mut **kept.insert(conn), "BEGIN IMMEDIATE").await?;
    Ok(WriteTx { tx, _turn: turn })
}

/// Runs one statement as its own write transaction, in this process's turn.
///
/// # Errors
/// As [`begin_write`], and whatever the statement or the commit fails with.
pub(crate) async fn write_one<'q>(
    pool: &SqlitePool,
    statement: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error> {
    let mut tx = begin_write(pool).await?;
    let result = statement.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(result)
}

/// Runs statements made at run time (schemas, table names of a generation), one after another.
///
/// # Errors
/// The first statement that fails.
pub(crate) async fn execute_all(
    conn: &mut SqliteConnection,
    statements: impl IntoIterator<Item = String>,
) -> Result<(), sqlx::Error> {
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
