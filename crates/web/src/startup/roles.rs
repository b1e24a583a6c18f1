//! `strata-web roles create|grant`: the roles of decision 0006 and their privileges, applied
//! through the PostgreSQL adapter (or printed for a DBA to review and run).

use anyhow::Context;
use strata_adapters_postgres::{PgRoles, PgSettings};

use super::{Storage, pg_settings};
use crate::settings::RolesAction;

/// Runs (or prints) the step `action` asks for; returns what to show the operator.
///
/// # Errors
/// SQLite storage, an invalid prefix, an unreachable database, or a refused statement.
pub async fn roles(storage: &Storage, action: &RolesAction) -> anyhow::Result<String> {
    let (RolesAction::Create(args) | RolesAction::Grant(args)) = action;
    let roles = PgRoles::with_prefix(&args.prefix)?;
    let sql = match action {
        RolesAction::Create(_) => roles.create_sql(),
        RolesAction::Grant(_) => roles.grant_sql(),
    };
    if args.print {
        return Ok(sql);
    }
    let Storage::Postgres(url) = storage else {
        anyhow::bail!("roles are PostgreSQL's: set DATABASE_URL to a postgres:// URL");
    };
    let pg = pg_settings(url, 1);
    match action {
        RolesAction::Create(_) => create(&pg, &roles).await,
        RolesAction::Grant(_) => grant(&pg, &roles).await,
    }
}

async fn create(pg: &PgSettings, roles: &PgRoles) -> anyhow::Result<String> {
    // Roles belong to the cluster: any database will do, and the one named may not exist yet.
    let pool = strata_adapters_postgres::connect_to_server(pg)
        .await
        .context("cannot connect to PostgreSQL")?;
    strata_adapters_postgres::create_roles(&pool, roles)
        .await
        .context("cannot create the roles")?;
    pool.close().await;
    strata_adapters_postgres::create_database_owned_by(pg, roles)
        .await
        .context("cannot create the database")?;
    Ok(format!(
        "roles {}, {}, {} and {} exist; the database is there (a new one is {}'s).\n\
         Next: strata-web migrate, then strata-web roles grant, both as {}.\n",
        roles.owner, roles.app, roles.projector, roles.auditor, roles.owner, roles.owner
    ))
}

async fn grant(pg: &PgSettings, roles: &PgRoles) -> anyhow::Result<String> {
    let pool = strata_adapters_postgres::connect(pg)
        .await
        .context("cannot connect to PostgreSQL")?;
    strata_adapters_postgres::grant_roles(&pool, roles)
        .await
        .with_context(|| {
            format!(
                "cannot grant the privileges (run it as {}, after strata-web migrate)",
                roles.owner
            )
        })?;
    pool.close().await;
    Ok(format!(
        "granted: {} appends and reads, {} keeps the read models, {} reads\n",
        roles.app, roles.projector, roles.auditor
    ))
}
