//! Closing a database file so that it is complete on its own: the write-ahead log checkpointed
//! into it and truncated, then the pool closed.
//!
//! In WAL mode a commit lands in `<file>-wal`, and only a checkpoint moves it into the file. The
//! last connection to close checkpoints on its way out, but a process that exits without closing
//! its pool (or closes it while another process keeps the file open) leaves the log behind, and a
//! copy of the main file alone then misses the latest commits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{SqliteConnection, SqlitePool};

use crate::error::{CloseError, is_unavailable};

/// How often a checkpoint that other connections keep from completing is tried.
const ATTEMPTS: u32 = 3;

/// How long each attempt waits for other connections' transactions to end. Short: a process
/// being stopped has a few seconds before it is killed, and an incomplete checkpoint loses
/// nothing (the log stays, and the next opening of the file replays it).
const ATTEMPT_WAIT: Duration = Duration::from_secs(1);

/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What [`close`] did to one database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The database file.
    pub path: PathBuf,
    /// Pages the write-ahead log held when the checkpoint began.
    pub wal_pages: u64,
    /// Whether every page reached the file and the log was truncated. False when another
    /// connection (another process) kept reading or writing through every attempt: the file
    /// alone is then not complete, its `-wal` file is still needed.
    pub complete: bool,
    /// The attempts made.
    pub attempts: u32,
}

/// Checkpoints the write-ahead log into the database file and truncates it, then closes the pool
/// (waiting for connections in use to come back). Call it once nothing else uses the pool: its
/// clones fail with a closed pool afterwards. Logs what it did; an incomplete checkpoint (busy
/// after a few tries) is a warning, not an error.
///
/// # Errors
/// [`CloseError::Failed`] when the checkpoint fails for another reason than other connections
/// (I/O, a file that is not a database); the pool is closed all the same.
pub async fn close(pool: &SqlitePool) -> Result<Checkpoint, CloseError> {
    let path = pool.connect_options().get_filename().to_path_buf();
    let checkpointed = checkpoint(pool, &path).await;
    pool.close().await;
    let checkpoint = checkpointed?;
    let file = path.display();
    if checkpoint.complete {
        tracing::info!(
            path = %file,
            pages = checkpoint.wal_pages,
            "checkpointed the write-ahead log into the database file and closed it"
        );
    } else {
        tracing::warn!(
            path = %file,
            pages = checkpoint.wal_pages,
            attempts = checkpoint.attempts,
            "the write-ahead log could not be checkpointed: another connection kept using the \
             database; the file alone is not complete, keep its -wal file with it"
        );
    }
    Ok(checkpoint)
}

async fn checkpoint(pool: &SqlitePool, path: &Path) -> Result<Checkpoint, CloseError> {
    let failed = |e: sqlx::Error| CloseError::Failed(format!("{}: {e}", path.display()));
    let mut conn = pool.acquire().await.map_err(failed)?;
    // The pool is closing: this connection's patience can change for good.
    let wait = format!("PRAGMA busy_timeout = {}", ATTEMPT_WAIT.as_millis());
    sqlx::query(sqlx::AssertSqlSafe(wait))
        .execute(&mut *conn)
        .await
        .map_err(failed)?;
    // TRUNCATE reports no page counts once it has emptied the log; a passive pass first says
    // how many there were (not in WAL mode: -1).
    let (_, wal_pages, _) = run(&mut conn, "PRAGMA wal_checkpoint(PASSIVE)")
        .await
        .map_err(failed)?;
    let wal_pages = u64::try_from(wal_pages).unwrap_or(0);
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        attempts += 1;
        // TRUNCATE waits (the busy timeout) for writers and for readers of older snapshots, then
        // copies every page and empties the log; `busy` is 1 when they outlasted the wait.
        let complete = match run(&mut conn, "PRAGMA wal_checkpoint(TRUNCATE)").await {
            Ok((busy, _, _)) => busy == 0,
            Err(error) if is_unavailable(&error) => false,
            Err(error) => return Err(failed(error)),
        };
        if complete {
            return Ok(Checkpoint {
                path: path.to_path_buf(),
                wal_pages,
                complete,
                attempts,
            });
        }
        tracing::debug!(path = %path.display(), attempts, "checkpoint busy");
        if attempts < ATTEMPTS {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        wal_pages,
        complete: false,
        attempts,
    })
}

/// The row of a `wal_checkpoint` pragma: busy, pages in the log, pages checkpointed.
async fn run(
    conn: &mut SqliteConnection,
    pragma: &'static str,
) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(pragma).fetch_one(conn).await
}
