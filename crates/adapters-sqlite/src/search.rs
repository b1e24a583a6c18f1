//! `SqliteSearchIndex`: the search port on SQLite FTS5, in a database file of its own
//! ([`crate::SqliteSettings::search_path`]): the search projection writes documents while its
//! batch holds the main file's write lock, which a second file does not share. `prepare` creates
//! the schema, as a search engine's index would be created. One row per order, replaced only by
//! a higher version; an external-content FTS5 table indexes its `search_text` (product ids,
//! shipping address, tracking number, order id), kept in step by triggers. Ranking is BM25, then
//! newest first, then order id, with keyset pagination on those three values. A rebuild fills
//! `rebuild_order_search` and copies it over the live table in one transaction.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use strata_ports::{
    Generation, IndexFailure, SearchCursor, SearchDocument, SearchError, SearchHit, SearchIndex,
    SearchPage, SearchQuery,
};

use crate::codec::{self, micros};
use crate::error::search_error;
use crate::write::{begin_write, execute_all};

const LIVE: &str = "order_search";
const REBUILD: &str = "rebuild_order_search";

/// The document columns, in the order of [`upsert_sql`]'s values (the copy of a rebuild uses
/// them).
const COLUMNS: &str = "order_id, customer_id, status, product_ids, shipping_address, \
                       tracking_number, total_cents, currency, item_count, placed_at, \
                       updated_at, version, search_text";

/// Scores are rounded to 1/1024: then each is exactly an `f32` (BM25 values are small), so a
/// cursor's score compares equal to the score it came from.
const SCORE_SCALE: f64 = 1024.0;

fn db(error: sqlx::Error) -> SearchError {
    search_error(&error)
}

/// The schema of one generation. `doc_id` is the stable rowid the FTS index refers to (an
/// implicit rowid could change on VACUUM).
fn schema(t: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {t} ( \
                doc_id INTEGER PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, \
                customer_id TEXT NOT NULL, status TEXT NOT NULL, product_ids TEXT NOT NULL, \
                shipping_address TEXT NOT NULL, tracking_number TEXT, \
                total_cents INTEGER NOT NULL, currency TEXT NOT NULL, \
                item_count INTEGER NOT NULL, placed_at INTEGER NOT NULL, \
                updated_at INTEGER NOT NULL, version INTEGER NOT NULL, \
                search_text TEXT NOT NULL)"
        ),
        format!("CREATE INDEX IF NOT EXISTS {t}_by_customer ON {t} (customer_id, placed_at DESC)"),
        format!("CREATE INDEX IF NOT EXISTS {t}_by_placed_at ON {t} (placed_at DESC)"),
        // unicode61 folds case and splits on punctuation: "sku-2" is the tokens "sku" and "2";
        // a query word is searched as the phrase of its tokens, which matches the same text.
        format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS {t}_fts USING fts5( \
                search_text, content = '{t}', content_rowid = 'doc_id', tokenize = 'unicode61')"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {t}_fts_insert AFTER INSERT ON {t} BEGIN \
                INSERT INTO {t}_fts (rowid, search_text) VALUES (new.doc_id, new.search_text); \
             END"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {t}_fts_delete AFTER DELETE ON {t} BEGIN \
                INSERT INTO {t}_fts ({t}_fts, rowid, search_text) \
                VALUES ('delete', old.doc_id, old.search_text); \
             END"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {t}_fts_update AFTER UPDATE ON {t} BEGIN \
                INSERT INTO {t}_fts ({t}_fts, rowid, search_text) \
                VALUES ('delete', old.doc_id, old.search_text); \
                INSERT INTO {t}_fts (rowid, search_text) VALUES (new.doc_id, new.search_text); \
             END"
        ),
    ]
}

fn drop_generation(t: &str) -> Vec<String> {
    // Dropping the table drops its indexes and triggers.
    vec![
        format!("DROP TABLE IF EXISTS {t}_fts"),
        format!("DROP TABLE IF EXISTS {t}"),
    ]
}

/// The upsert of each generation, built once.
static UPSERTS: LazyLock<[String; 2]> = LazyLock::new(|| [upsert_sql(LIVE), upsert_sql(REBUILD)]);

fn upsert(generation: Generation) -> &'static str {
    match generation {
        Generation::Live => &UPSERTS[0],
        Generation::Rebuild => &UPSERTS[1],
    }
}

/// One document per order, replacing a stored row only with a higher version.
fn upsert_sql(t: &str) -> String {
    format!(
        "INSERT INTO {t} ({COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (order_id) DO UPDATE SET \
            customer_id = excluded.customer_id, status = excluded.status, \
            product_ids = excluded.product_ids, shipping_address = excluded.shipping_address, \
            tracking_number = excluded.tracking_number, total_cents = excluded.total_cents, \
            currency = excluded.currency, item_count = excluded.item_count, \
            placed_at = excluded.placed_at, updated_at = excluded.updated_at, \
            version = excluded.version, search_text = excluded.search_text \
         WHERE {t}.version < excluded.version"
    )
}

/// The FTS5 query of the words: each word a quoted phrase (so no word is read as an operator),
/// all of them required. `None` when there are no words; `Some("")` when the words hold nothing
/// searchable (only punctuation), which matches nothing, as on PostgreSQL.
fn match_expression(query: &SearchQuery) -> Option<String> {
    let text = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())?;
    let phrases: Vec<String> = text
        .split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    Some(phrases.join(" "))
}

/// The matches of every criterion (`with_status`: the facets leave the status out), with their
/// score, as a subquery named `m`.
fn push_matches(
    sql: &mut QueryBuilder<Sqlite>,
    query: &SearchQuery,
    expression: Option<&str>,
    with_status: bool,
) {
    match expression {
        Some(expression) => {
            sql.push(format!(
                "(SELECT s.*, round(-bm25({LIVE}_fts) * {SCORE_SCALE}) / {SCORE_SCALE} AS score \
                 FROM {LIVE}_fts JOIN {LIVE} s ON s.doc_id = {LIVE}_fts.rowid \
                 WHERE {LIVE}_fts MATCH "
            ))
            .push_bind(expression.to_owned());
        }
        None => {
            sql.push(format!("(SELECT s.*, 0.0 AS score FROM {LIVE} s WHERE 1"));
        }
    }
    if let Some(customer) = &query.customer_id {
        sql.push(" AND s.customer_id = ")
            .push_bind(customer.clone());
    }
    if let (true, Some(status)) = (with_status, &query.status) {
        sql.push(" AND s.status = ").push_bind(status.clone());
    }
    if let Some(min) = query.min_total_cents {
        sql.push(" AND s.total_cents >= ").push_bind(min);
    }
    if let Some(max) = query.max_total_cents {
        sql.push(" AND s.total_cents <= ").push_bind(max);
    }
    if let Some(from) = query.placed_from {
        sql.push(" AND s.placed_at >= ").push_bind(micros(from));
    }
    if let Some(to) = query.placed_to {
        sql.push(" AND s.placed_at <= ").push_bind(micros(to));
    }
    sql.push(") AS m");
}

fn document_of(row: &SqliteRow) -> Result<SearchDocument, SearchError> {
    let protocol = |e: String| SearchError::Protocol(e);
    let get = |e: sqlx::Error| SearchError::Protocol(e.to_string());
    let product_ids: String = row.try_get("product_ids").map_err(get)?;
    let order_id: String = row.try_get("order_id").map_err(get)?;
    Ok(SearchDocument {
        order_id: codec::uuid(&order_id).map_err(protocol)?,
        customer_id: row.try_get("customer_id").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        product_ids: serde_json::from_str(&product_ids)
            .map_err(|e| SearchError::Protocol(format!("product ids: {e}")))?,
        shipping_address: row.try_get("shipping_address").map_err(get)?,
        tracking_number: row.try_get("tracking_number").map_err(get)?,
        total_cents: row.try_get("total_cents").map_err(get)?,
        currency: row.try_get("currency").map_err(get)?,
        item_count: codec::to_u64(row.try_get("item_count").map_err(get)?, "item count")
            .map_err(protocol)?,
        placed_at: codec::instant(row.try_get("placed_at").map_err(get)?).map_err(protocol)?,
        updated_at: codec::instant(row.try_get("updated_at").map_err(get)?).map_err(protocol)?,
        version: codec::to_u64(row.try_get("version").map_err(get)?, "version")
            .map_err(protocol)?,
    })
}

/// The order search index on the pool of its own file ([`crate::connect_search`]).
#[derive(Debug, Clone)]
pub struct SqliteSearchIndex {
    pool: SqlitePool,
}

impl SqliteSearchIndex {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl SearchIndex for SqliteSearchIndex {
    async fn prepare(&self) -> Result<(), SearchError> {
        let mut tx = begin_write(&self.pool).await.map_err(db)?;
        execute_all(&mut tx, schema(LIVE)).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn upsert(
        &self,
        generation: Generation,
        documents: &[SearchDocument],
    ) -> Result<Vec<IndexFailure>, SearchError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let statement = upsert(generation);
        let mut tx = begin_write(&self.pool).await.map_err(db)?;
        for d in documents {
            let product_ids = serde_json::to_string(&d.product_ids)
                .map_err(|e| SearchError::Backend(format!("product ids: {e}")))?;
            let too_large = SearchError::Backend;
            sqlx::query(statement)
                .bind(codec::text_id(d.order_id))
                .bind(&d.customer_id)
                .bind(&d.status)
                .bind(product_ids)
                .bind(&d.shipping_address)
                .bind(&d.tracking_number)
                .bind(d.total_cents)
                .bind(&d.currency)
                .bind(codec::to_i64(d.item_count, "item count").map_err(too_large)?)
                .bind(micros(d.placed_at))
                .bind(micros(d.updated_at))
                .bind(codec::to_i64(d.version, "version").map_err(too_large)?)
                .bind(d.search_text())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Vec::new())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        query.check_input()?;
        let expression = match_expression(query);
        if expression.as_deref() == Some("") {
            return Ok(SearchPage {
                hits: Vec::new(),
                next: None,
                status_counts: BTreeMap::new(),
            });
        }
        let mut sql = QueryBuilder::new("SELECT * FROM ");
        push_matches(&mut sql, query, expression.as_deref(), true);
        sql.push(" WHERE 1");
        if let Some(SearchCursor {
            score,
            placed_at,
            order_id,
        }) = query.after
        {
            // After the cursor in (score DESC, placed_at DESC, order_id ASC) order.
            let score = f64::from(score);
            let placed_at = micros(placed_at);
            sql.push(" AND (score < ")
                .push_bind(score)
                .push(" OR (score = ")
                .push_bind(score)
                .push(" AND (placed_at < ")
                .push_bind(placed_at)
                .push(" OR (placed_at = ")
                .push_bind(placed_at)
                .push(" AND order_id > ")
                .push_bind(codec::text_id(order_id))
                .push("))))");
        }
        sql.push(" ORDER BY score DESC, placed_at DESC, order_id ASC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(db)?;
        let hits = rows
            .iter()
            .map(|row| {
                let score: f64 = row
                    .try_get("score")
                    .map_err(|e| SearchError::Protocol(e.to_string()))?;
                Ok(SearchHit {
                    document: document_of(row)?,
                    // Exact: see SCORE_SCALE.
                    #[allow(clippy::cast_possible_truncation)]
                    score: score as f32,
                })
            })
            .collect::<Result<Vec<_>, SearchError>>()?;
        let next = (hits.len() == query.limit && query.limit > 0)
            .then(|| {
                hits.last().map(|h| SearchCursor {
                    score: h.score,
                    placed_at: h.document.placed_at,
                    order_id: h.document.order_id,
                })
            })
            .flatten();

        let mut facets = QueryBuilder::new("SELECT status, count(*) FROM ");
        push_matches(&mut facets, query, expression.as_deref(), false);
        facets.push(" GROUP BY status");
        let counts: Vec<(String, i64)> = facets
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let status_counts = counts
            .into_iter()
            .map(|(status, count)| {
                Ok((
                    status,
                    codec::to_u64(count, "count").map_err(SearchError::Protocol)?,
                ))
            })
            .collect::<Result<_, SearchError>>()?;
        Ok(SearchPage {
            hits,
            next,
            status_counts,
        })
    }

    async fn start_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = begin_write(&self.pool).await.map_err(db)?;
        let mut statements = drop_generation(REBUILD);
        statements.extend(schema(REBUILD));
        execute_all(&mut tx, statements).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn finish_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = begin_write(&self.pool).await.map_err(db)?;
        // Readers (WAL) see the old documents until this commits; the triggers move the index.
        let mut statements = vec![
            format!("DELETE FROM {LIVE}"),
            format!("INSERT INTO {LIVE} ({COLUMNS}) SELECT {COLUMNS} FROM {REBUILD}"),
        ];
        statements.extend(drop_generation(REBUILD));
        execute_all(&mut tx, statements).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn abandon_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = begin_write(&self.pool).await.map_err(db)?;
        execute_all(&mut tx, drop_generation(REBUILD))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Option<String> {
        match_expression(&SearchQuery {
            text: Some(text.to_owned()),
            ..SearchQuery::default()
        })
    }

    #[test]
    fn each_word_is_a_quoted_phrase_so_no_word_is_an_operator() {
        assert_eq!(words("lamp-7 OR"), Some("\"lamp-7\" \"OR\"".to_owned()));
        assert_eq!(
            words("say \"hi\""),
            Some("\"say\" \"\"\"hi\"\"\"".to_owned())
        );
        assert_eq!(words("  "), None);
        assert_eq!(words("- *"), Some(String::new()));
    }
}
