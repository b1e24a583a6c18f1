//! `strata-web roles create|grant`: the roles of decision 0006 and their privileges, applied
//! through the PostgreSQL adapter (or printed for a DBA to review and run).

use strata_adapters_postgres::{PgRoles, PgSettings};

use crate::database::pg_settings;
use crate::error::WiringError;
use crate::storage::Storage;

/// The two steps of the roles' set-up, each run by another role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolesStep {
    /// Create the roles missing, then the database, owned by the owner role, if it is missing.
    Create,
    /// Grant each role exactly its privileges in the database.
    Grant,
}

/// Runs (or, with `print`, prints) `step` for the roles named `PREFIX_owner`, `PREFIX_app`,
/// `PREFIX_projector` and `PREFIX_auditor`; returns what to show the operator.
///
/// # Errors
/// SQLite storage, an invalid prefix, an unreachable database, or a refused statement.
pub async fn roles(
    storage: &Storage,
    step: RolesStep,
    prefix: &str,
    print: bool,
) -> Result<String, WiringError> {
    let roles =
        PgRoles::with_prefix(prefix).map_err(|error| WiringError::RolePrefix(Box::new(error)))?;
    let sql = match step {
        RolesStep::Create => roles.create_sql(),
        RolesStep::Grant => roles.grant_sql(),
    };
    if print {
        return Ok(sql);
    }
    let Storage::Postgres(url) = storage else {
        return Err(WiringError::RolesOnSqlite);
    };
    let pg = pg_settings(url, 1);
    match step {
        RolesStep::Create => create(&pg, &roles).await,
        RolesStep::Grant => grant(&pg, &roles).await,
    }
}

async fn create(pg: &PgSettings, roles: &PgRoles) -> Result<String, WiringError> {
    // Roles belong to the cluster: any database will do, and the one named may not exist yet.
    let pool = strata_adapters_postgres::connect_to_server(pg)
        .await
        .map_err(WiringError::ConnectPostgres)?;
    strata_adapters_postgres::create_roles(&pool, roles)
        .await
        .map_err(|error| WiringError::CreateRoles(Box::new(error)))?;
    pool.close().await;
    strata_adapters_postgres::create_database_owned_by(pg, roles)
        .await
        .map_err(WiringError::CreateDatabase)?;
    Ok(format!(
        "roles {}, {}, {} and {} exist; the database is there (a new one is {}'s).\n\
         Next: strata-web migrate, then strata-web roles grant, both as {}.\n",
        roles.owner, roles.app, roles.projector, roles.auditor, roles.owner, roles.owner
    ))
}

async fn grant(pg: &PgSettings, roles: &PgRoles) -> Result<String, WiringError> {
    let pool = strata_adapters_postgres::connect(pg)
        .await
        .map_err(WiringError::ConnectPostgres)?;
    strata_adapters_postgres::grant_roles(&pool, roles)
        .await
        .map_err(|error| WiringError::GrantRoles {
            owner: roles.owner.clone(),
            source: Box::new(error),
        })?;
    pool.close().await;
    Ok(format!(
        "granted: {} appends and reads, {} keeps the read models, {} reads\n",
        roles.app, roles.projector, roles.auditor
    ))
}
