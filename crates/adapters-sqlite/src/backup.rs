//! An online backup: a consistent copy of the database file (and of the search index's file
//! beside it), taken with `VACUUM INTO` while servers keep reading and writing the file.
//!
//! `VACUUM INTO` reads one snapshot in a read transaction, so writers go on meanwhile and the
//! copy holds exactly the commits before it began; the copy is a single file in rollback-journal
//! mode, with nothing in a `-wal` beside it.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::SqliteSettings;
use crate::error::{BackupError, is_unavailable};

/// One file a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The database file copied.
    pub source: PathBuf,
    /// The copy (an absolute path).
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The main database's copy.
    pub database: BackupFile,
    /// The search index's copy, when its file exists.
    pub search: Option<BackupFile>,
    /// Events in the copy, when it has an event log.
    pub events: Option<u64>,
    /// The highest global position in the copy (0 when the log is empty).
    pub last_position: Option<u64>,
}

/// Copies the database `settings` names to `to`, and its search index's file, when it exists,
/// beside the copy under the same naming (`backup.db` → `backup-search.db`). Safe while servers
/// use the file. Refuses to overwrite anything: every target is checked before the first is
/// written. Missing directories of `to` are created.
///
/// # Errors
/// [`BackupError::NoDatabase`] when the file does not exist; [`BackupError::InvalidTarget`] for
/// a path SQLite cannot name (not UTF-8, a NUL, no file name); [`BackupError::TargetExists`];
/// [`BackupError::Unavailable`] when the database stays locked; [`BackupError::Failed`] for
/// anything else (I/O, a file that is not a database).
pub async fn backup(settings: &SqliteSettings, to: &Path) -> Result<Backup, BackupError> {
    if !settings.path.is_file() {
        return Err(BackupError::NoDatabase(settings.path.clone()));
    }
    let target = absolute_target(to)?;
    let search_source = settings.search_path();
    let search_target = SqliteSettings::at(&target).search_path();
    let search = search_source.is_file();
    for path in std::iter::once(&target).chain(search.then_some(&search_target)) {
        // A dangling symbolic link counts as existing: writing through it would surprise.
        if path.symlink_metadata().is_ok() {
            return Err(BackupError::TargetExists(path.clone()));
        }
    }
    let database = copy(settings, &settings.path, &target).await?;
    let search = if search {
        Some(copy(settings, &search_source, &search_target).await?)
    } else {
        None
    };
    let (events, last_position) = match count_events(&target).await? {
        Some((count, last)) => (Some(count), Some(last)),
        None => (None, None),
    };
    Ok(Backup {
        database,
        search,
        events,
        last_position,
    })
}

/// `to` with its directory created and made absolute: SQLite takes a name beginning with
/// `file:` as a URI, which an absolute path never does.
fn absolute_target(to: &Path) -> Result<PathBuf, BackupError> {
    let invalid = |reason: &str| BackupError::InvalidTarget(format!("{}: {reason}", to.display()));
    let text = to
        .to_str()
        .ok_or_else(|| invalid("SQLite needs a UTF-8 path"))?;
    if text.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    let name = to.file_name().ok_or_else(|| invalid("no file name"))?;
    let dir = match to.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| invalid(&format!("cannot create its directory: {e}")))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| invalid(&e.to_string()))?;
    Ok(dir.join(name))
}

/// Copies `source` to `target` (absolute, checked absent) with `VACUUM INTO`, then makes the
/// copy durable: SQLite writes it without syncing.
async fn copy(
    settings: &SqliteSettings,
    source: &Path,
    target: &Path,
) -> Result<BackupFile, BackupError> {
    let failed = |e: sqlx::Error| {
        let message = format!("{} → {}: {e}", source.display(), target.display());
        if is_unavailable(&e) && !matches!(e, sqlx::Error::Io(_)) {
            BackupError::Unavailable(message)
        } else {
            BackupError::Failed(message)
        }
    };
    // No journal mode set: the file keeps its own (WAL), and nothing is created.
    let mut conn = SqliteConnectOptions::new()
        .filename(source)
        .create_if_missing(false)
        .busy_timeout(settings.busy_timeout)
        .connect()
        .await
        .map_err(failed)?;
    let text = target
        .to_str()
        .ok_or_else(|| BackupError::InvalidTarget(format!("{}: not UTF-8", target.display())))?;
    // A bound parameter: no quoting of the path, whatever it contains.
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(text)
        .execute(&mut conn)
        .await
        .map_err(failed);
    let closed = conn.close().await.map_err(failed);
    copied?;
    closed?;
    let io = |e: std::io::Error| BackupError::Failed(format!("{}: {e}", target.display()));
    let file = std::fs::File::open(target).map_err(io)?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    sync_directory(target).map_err(io)?;
    Ok(BackupFile {
        source: source.to_path_buf(),
        path: target.to_path_buf(),
        bytes,
    })
}

/// Makes the copy's directory entry durable too.
#[cfg(unix)]
fn sync_directory(file: &Path) -> std::io::Result<()> {
    match file.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn sync_directory(_file: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The number of events in the copy and its highest position; `None` when it has no event log
/// (a file that Strata never migrated).
async fn count_events(copy: &Path) -> Result<Option<(u64, u64)>, BackupError> {
    let failed = |e: sqlx::Error| BackupError::Failed(format!("{}: {e}", copy.display()));
    let mut conn = SqliteConnectOptions::new()
        .filename(copy)
        .read_only(true)
        .connect()
        .await
        .map_err(failed)?;
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(failed)?;
    let counted = match table {
        Some(_) => {
            let (count, last): (i64, i64) =
                sqlx::query_as("SELECT count(*), coalesce(max(global_position), 0) FROM events")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(failed)?;
            Some((
                u64::try_from(count).unwrap_or(0),
                u64::try_from(last).unwrap_or(0),
            ))
        }
        None => None,
    };
    conn.close().await.map_err(failed)?;
    Ok(counted)
}
