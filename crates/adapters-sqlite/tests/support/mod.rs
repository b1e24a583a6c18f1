//! A fresh database per test: its own directory, removed when the test ends.

use sqlx::SqlitePool;
use strata_adapters_sqlite::SqliteSettings;
use tempfile::TempDir;

#[allow(dead_code)] // each test binary uses a different part
pub struct Fresh {
    /// Kept so that the directory lives as long as the test.
    pub dir: TempDir,
    pub settings: SqliteSettings,
    pub pool: SqlitePool,
}

/// A migrated database in a new temporary directory.
pub async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings::at(dir.path().join("strata.db"));
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();
    strata_adapters_sqlite::migrate(&pool).await.unwrap();
    Fresh {
        dir,
        settings,
        pool,
    }
}
