//! The names of the projections, and the facts that hang on a name: the read-model tables a
//! projection owns and the row key of its checkpoint, dead letters and lease in a generation.
//! One list for every crate, so adding a projection is one variant here, not a string in each.

use std::fmt;
use std::str::FromStr;

/// Where a batch writes: the live tables, or the fresh ones a rebuild fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Live,
    Rebuild,
}

/// A projection of this service. Its stored name ([`ProjectionName::as_str`]) keys its
/// checkpoint, dead letters and lease: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionName {
    /// Order summaries and customer statistics.
    Orders,
    /// Account balances and transaction lists.
    Accounts,
    /// The order search index, which lives behind the `SearchIndex` port.
    Search,
    /// The log handed on to a broker (the `EventPublisher` port): not a read model, but run,
    /// checkpointed and parked like one.
    Publisher,
}

impl ProjectionName {
    /// Every projection, in the order the status and the CLI list them.
    pub const ALL: [Self; 4] = [Self::Orders, Self::Accounts, Self::Search, Self::Publisher];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Accounts => "accounts",
            Self::Search => "search",
            Self::Publisher => "publisher",
        }
    }

    /// The read-model tables of the projection, in the order a rebuild copies and swaps them.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Orders => &["order_summaries", "customer_stats"],
            Self::Accounts => &["account_summaries", "account_transactions"],
            // The search index lives behind the `SearchIndex` port, the published messages in
            // the broker; only their checkpoints and dead letters are in the read models'
            // storage.
            Self::Search | Self::Publisher => &[],
        }
    }

    /// The row key of the projection's checkpoint, dead letters and lease in `generation`:
    /// its name live, `<name>:rebuild` for a rebuild.
    pub fn key(self, generation: Generation) -> String {
        match generation {
            Generation::Live => self.as_str().to_owned(),
            Generation::Rebuild => format!("{}:rebuild", self.as_str()),
        }
    }
}

impl fmt::Display for ProjectionName {
    /// The stored name, padded as asked (`{:<18}` lines up a table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is not one of [`ProjectionName::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no projection named {name:?} (known: {})", known())]
pub struct UnknownProjection {
    pub name: String,
}

fn known() -> String {
    ProjectionName::ALL.map(ProjectionName::as_str).join(", ")
}

impl FromStr for ProjectionName {
    type Err = UnknownProjection;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownProjection {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_names_and_keys_never_change() {
        let names: Vec<&str> = ProjectionName::ALL.map(ProjectionName::as_str).to_vec();
        assert_eq!(names, ["orders", "accounts", "search", "publisher"]);
        assert_eq!(ProjectionName::Orders.key(Generation::Live), "orders");
        assert_eq!(
            ProjectionName::Search.key(Generation::Rebuild),
            "search:rebuild"
        );
        assert_eq!(ProjectionName::Accounts.to_string(), "accounts");
        assert_eq!(format!("{:<10}|", ProjectionName::Orders), "orders    |");
    }

    #[test]
    fn every_name_parses_back_and_an_unknown_one_says_which_are_known() {
        for name in ProjectionName::ALL {
            assert_eq!(name.as_str().parse(), Ok(name));
        }
        let unknown = "nope".parse::<ProjectionName>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no projection named \"nope\" (known: orders, accounts, search, publisher)"
        );
        assert!("orders:rebuild".parse::<ProjectionName>().is_err());
    }

    #[test]
    fn the_tables_are_listed_in_rebuild_order() {
        assert_eq!(
            ProjectionName::Orders.tables(),
            ["order_summaries", "customer_stats"]
        );
        assert_eq!(
            ProjectionName::Accounts.tables(),
            ["account_summaries", "account_transactions"]
        );
        assert!(ProjectionName::Search.tables().is_empty());
        assert!(ProjectionName::Publisher.tables().is_empty());
    }
}
