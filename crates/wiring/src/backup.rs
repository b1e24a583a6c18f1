//! `strata-web backup`: a consistent copy of the embedded SQLite database, through its adapter.

use std::path::Path;

use strata_adapters_sqlite::SqliteSettings;

use crate::error::WiringError;
use crate::storage::Storage;

/// Writes a consistent copy of the embedded SQLite database (and its search index's file,
/// when it exists) to the new file `to`, while servers may be using it; returns what was
/// written, one line per file.
///
/// # Errors
/// PostgreSQL storage (its own tools back it up), a missing database, an existing target, or a
/// failed copy.
pub async fn backup(storage: &Storage, to: &Path) -> Result<String, WiringError> {
    let path = match storage {
        Storage::Postgres(_) => return Err(WiringError::BackupOfPostgres),
        Storage::Sqlite(path) => path,
    };
    let backup = strata_adapters_sqlite::backup(&SqliteSettings::at(path), to)
        .await
        .map_err(|error| WiringError::Backup {
            path: path.clone(),
            source: Box::new(error),
        })?;
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
