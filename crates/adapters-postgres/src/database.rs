//! Creating the database itself, so that `strata-web migrate` works on a fresh server, and
//! `strata-web roles create` makes it its owner's; a connection to the server itself, for roles.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

use strata_ports::ConnectError;

use crate::error::connect_error;
use crate::{PgRoles, PgSettings};

/// SQLSTATE `invalid_catalog_name`: the database named does not exist.
const NO_SUCH_DATABASE: &str = "3D000";
/// SQLSTATE `duplicate_database`: someone created it meanwhile.
const DATABASE_EXISTS: &str = "42P04";

/// Creates the database named in the settings' url unless it exists.
///
/// # Errors
/// [`ConnectError`] when the server cannot be reached or refuses to create the database.
pub async fn create_database_if_missing(settings: &PgSettings) -> Result<(), ConnectError> {
    create(settings, None).await
}

/// Creates the database named in the settings' url, owned by `roles.owner`, unless it exists
/// (an existing database keeps its owner). Run by a role that may create databases and is
/// allowed to give them to that owner.
///
/// # Errors
/// [`ConnectError`] when the server cannot be reached or refuses to create the database.
pub async fn create_database_owned_by(
    settings: &PgSettings,
    roles: &PgRoles,
) -> Result<(), ConnectError> {
    create(settings, Some(&roles.owner)).await
}

async fn create(settings: &PgSettings, owner: Option<&str>) -> Result<(), ConnectError> {
    // Connecting to the database itself needs no right outside it: a service's role that may
    // connect only there starts without ever asking the maintenance database.
    match PgConnection::connect(&settings.url).await {
        Ok(connection) => {
            let _ = connection.close().await;
            return Ok(());
        }
        Err(error) if code_of(&error).as_deref() == Some(NO_SUCH_DATABASE) => {}
        Err(error) => return Err(connect_error(&error)),
    }
    let (options, database) = maintenance(settings)?;
    let mut connection = options.connect().await.map_err(|e| connect_error(&e))?;
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut sql = format!("CREATE DATABASE {}", quote(&database));
    if let Some(owner) = owner {
        sql.push_str(&format!(" OWNER {}", quote(owner)));
    }
    tracing::info!(database, owner, "creating the database");
    let created = sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    match created {
        Ok(_) => Ok(()),
        Err(error) if code_of(&error).as_deref() == Some(DATABASE_EXISTS) => Ok(()),
        Err(error) => Err(connect_error(&error)),
    }
}

/// The options of the server's maintenance database, with the settings' credentials, and the
/// name of the database the settings' url names.
fn maintenance(settings: &PgSettings) -> Result<(PgConnectOptions, String), ConnectError> {
    let options = PgConnectOptions::from_str(&settings.url).map_err(|e| connect_error(&e))?;
    let database = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_owned();
    // As `createdb` does: ask `postgres`, unless that is the one to create.
    let maintenance = if database == "postgres" {
        "template1"
    } else {
        "postgres"
    };
    Ok((options.database(maintenance), database))
}

/// A pool of one connection to the server's maintenance database (`postgres`), with the
/// settings' credentials: for what belongs to the whole cluster (roles), when the database the
/// url names may not exist yet.
///
/// # Errors
/// [`ConnectError`] when the server cannot be reached or refuses the connection.
pub async fn connect_to_server(settings: &PgSettings) -> Result<PgPool, ConnectError> {
    let (options, _) = maintenance(settings)?;
    crate::pool_policy(1, settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| connect_error(&e))
}

fn code_of(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}
