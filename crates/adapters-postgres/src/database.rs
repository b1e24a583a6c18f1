//! Creating the database itself, so that `strata-web migrate` works on a fresh server.

use sqlx::Postgres;
use sqlx::migrate::MigrateDatabase;

use crate::PgSettings;
use crate::error::ConnectError;

/// Creates the database named in the settings' url unless it exists.
///
/// # Errors
/// [`ConnectError`] when the server cannot be reached or refuses to create the database.
pub async fn create_database_if_missing(settings: &PgSettings) -> Result<(), ConnectError> {
    let exists = Postgres::database_exists(&settings.url)
        .await
        .map_err(|e| crate::error::connect_error(&e))?;
    if !exists {
        tracing::info!("creating the database");
        Postgres::create_database(&settings.url)
            .await
            .map_err(|e| crate::error::connect_error(&e))?;
    }
    Ok(())
}
