//! The roles of decision 0006 (owner, service roles, auditor) and their grants: the scripts of
//! `sql/`, with the names of a prefix in place, applied or printed.

use sqlx::{AssertSqlSafe, PgPool};

use crate::error::RolesError;

/// Creates the roles if missing (run by a role with CREATEROLE).
const ROLES_SQL: &str = include_str!("../sql/roles.sql");
/// Grants each role its privileges in one database (run by the owner, after the migrations).
const GRANTS_SQL: &str = include_str!("../sql/grants.sql");

/// The longest prefix: PostgreSQL cuts names at 63 bytes, and `_projector` follows.
const MAX_PREFIX: usize = 48;

/// The names of the four roles: `<prefix>_owner`, `<prefix>_app`, `<prefix>_projector` and
/// `<prefix>_auditor`. Roles belong to the whole cluster, so tests (and deployments sharing a
/// server) take a prefix of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRoles {
    /// Owns the tables and functions; migrates, grants, rebuilds.
    pub owner: String,
    /// strata-web.
    pub app: String,
    /// strata-projector.
    pub projector: String,
    /// Reads, and nothing else.
    pub auditor: String,
}

impl PgRoles {
    /// The roles named after `prefix` (`strata` gives the names of decision 0006).
    ///
    /// # Errors
    /// [`RolesError::InvalidPrefix`] unless the prefix is a lowercase letter or `_` followed by
    /// at most 47 lowercase letters, digits or `_`: the names go into statements unquoted by
    /// the server's rules, so only plain identifiers are accepted.
    pub fn with_prefix(prefix: &str) -> Result<Self, RolesError> {
        let mut chars = prefix.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && prefix.len() <= MAX_PREFIX;
        if !plain {
            return Err(RolesError::InvalidPrefix(prefix.to_owned()));
        }
        Ok(Self {
            owner: format!("{prefix}_owner"),
            app: format!("{prefix}_app"),
            projector: format!("{prefix}_projector"),
            auditor: format!("{prefix}_auditor"),
        })
    }

    /// The script that creates the roles missing, with these names.
    pub fn create_sql(&self) -> String {
        self.fill(ROLES_SQL)
    }

    /// The script that grants the roles their privileges, with these names.
    pub fn grant_sql(&self) -> String {
        self.fill(GRANTS_SQL)
    }

    /// `script` with each placeholder replaced by its role's quoted name.
    fn fill(&self, script: &str) -> String {
        let quoted = |name: &str| format!("\"{name}\"");
        script
            .replace("{owner}", &quoted(&self.owner))
            .replace("{app}", &quoted(&self.app))
            .replace("{projector}", &quoted(&self.projector))
            .replace("{auditor}", &quoted(&self.auditor))
    }
}

/// Creates the roles that are missing; existing ones are left as they are. Run by a role with
/// CREATEROLE, on any database of the cluster.
///
/// # Errors
/// [`RolesError::Failed`] when the server refuses (no CREATEROLE, for one).
pub async fn create_roles(pool: &PgPool, roles: &PgRoles) -> Result<(), RolesError> {
    run_script(pool, roles.create_sql()).await
}

/// Grants each role exactly its privileges in the pool's database, taking back anything else
/// they held. Run by the owner of the tables after the migrations, and again after each later
/// `migrate`.
///
/// # Errors
/// [`RolesError::Failed`] when the server refuses (not the tables' owner, a table missing
/// because the migrations have not run, a role missing).
pub async fn grant_roles(pool: &PgPool, roles: &PgRoles) -> Result<(), RolesError> {
    run_script(pool, roles.grant_sql()).await
}

/// Runs a script of several statements in one transaction (the simple query protocol's).
async fn run_script(pool: &PgPool, script: String) -> Result<(), RolesError> {
    // The script is ours, and the names in it are checked plain identifiers.
    let script = format!("BEGIN;\n{script}\nCOMMIT;");
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| RolesError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_prefix_names_the_four_roles_of_decision_0006() {
        let roles = PgRoles::with_prefix("strata").unwrap();
        assert_eq!(roles.owner, "strata_owner");
        assert_eq!(roles.app, "strata_app");
        assert_eq!(roles.projector, "strata_projector");
        assert_eq!(roles.auditor, "strata_auditor");
    }

    #[test]
    fn only_plain_identifiers_are_accepted_as_prefixes() {
        for bad in ["", "Strata", "1abc", "a-b", "a\"b", "a b", &"x".repeat(49)] {
            assert!(PgRoles::with_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(PgRoles::with_prefix(&"x".repeat(48)).is_ok());
    }

    #[test]
    fn the_scripts_name_the_roles_quoted_and_leave_no_placeholder() {
        let roles = PgRoles::with_prefix("t_1").unwrap();
        for script in [roles.create_sql(), roles.grant_sql()] {
            assert!(
                !script.contains("{owner}") && !script.contains("{app}"),
                "{script}"
            );
            assert!(!script.contains("{projector}") && !script.contains("{auditor}"));
        }
        assert!(
            roles
                .create_sql()
                .contains("CREATE ROLE \"t_1_owner\" LOGIN")
        );
        assert!(roles.grant_sql().contains("TO \"t_1_app\""));
    }
}
