//! `PgSearchIndex`: the search port on PostgreSQL full-text search (migration 0004). Words go
//! through `websearch_to_tsquery('simple', …)` against a GIN-indexed tsvector; ranking is
//! `ts_rank`, then newest first, then order id, with keyset pagination on those three values.
//! A rebuild fills a copy of the table in the schema `strata_rebuild_order_search` and swaps it
//! in with `ALTER TABLE … SET SCHEMA` in one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, QueryBuilder, Row};
use strata_ports::{
    Generation, IndexFailure, SearchCursor, SearchDocument, SearchError, SearchHit, SearchIndex,
    SearchPage, SearchQuery,
};

use crate::error::Failure;

const REBUILD_SCHEMA: &str = "strata_rebuild_order_search";
const RETIRED_SCHEMA: &str = "strata_retired_order_search";

fn search_error(error: &sqlx::Error) -> SearchError {
    match Failure::of(error) {
        Failure::Unavailable(message) => SearchError::Unavailable(message),
        _ => SearchError::Backend(error.to_string()),
    }
}

fn db(error: sqlx::Error) -> SearchError {
    search_error(&error)
}

fn to_i64(value: u64, what: &str) -> Result<i64, SearchError> {
    i64::try_from(value).map_err(|_| SearchError::Backend(format!("{what} {value} too large")))
}

/// The order search index on a PostgreSQL pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct PgSearchIndex {
    pool: PgPool,
}

impl PgSearchIndex {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One document per order per statement (ON CONFLICT cannot touch a row twice in one statement;
/// the newest of a batch wins anyway), replacing a stored row only with a higher version.
const UPSERT: &str = "\
    INSERT INTO {table} AS s (order_id, customer_id, status, product_ids, shipping_address, \
        tracking_number, total_cents, currency, item_count, placed_at, updated_at, version, \
        search_text) \
    SELECT DISTINCT ON (u.order_id) u.order_id, u.customer_id, u.status, \
           u.product_ids::text[], u.shipping_address, u.tracking_number, u.total_cents, \
           u.currency, u.item_count, u.placed_at, u.updated_at, u.version, u.search_text \
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                $7::bigint[], $8::text[], $9::bigint[], $10::timestamptz[], \
                $11::timestamptz[], $12::bigint[], $13::text[]) \
         AS u(order_id, customer_id, status, product_ids, shipping_address, tracking_number, \
              total_cents, currency, item_count, placed_at, updated_at, version, search_text) \
    ORDER BY u.order_id, u.version DESC \
    ON CONFLICT (order_id) DO UPDATE SET \
        customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, \
        product_ids = EXCLUDED.product_ids, shipping_address = EXCLUDED.shipping_address, \
        tracking_number = EXCLUDED.tracking_number, total_cents = EXCLUDED.total_cents, \
        currency = EXCLUDED.currency, item_count = EXCLUDED.item_count, \
        placed_at = EXCLUDED.placed_at, updated_at = EXCLUDED.updated_at, \
        version = EXCLUDED.version, search_text = EXCLUDED.search_text \
    WHERE s.version < EXCLUDED.version";

/// Product ids travel as one text per document (`unnest` cannot take an array of arrays of
/// different lengths); they contain no spaces (identifiers), so a space joins them.
fn product_ids_literal(ids: &[String]) -> String {
    let quoted: Vec<String> = ids
        .iter()
        .map(|id| format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// The criteria of a query, as SQL, bound in order (`with_status`: the facets leave it out).
fn push_filters(sql: &mut QueryBuilder<sqlx::Postgres>, query: &SearchQuery, with_status: bool) {
    sql.push(" WHERE TRUE");
    if let Some(text) = text_of(query) {
        sql.push(" AND document @@ websearch_to_tsquery('simple', ")
            .push_bind(text.to_owned())
            .push(")");
    }
    if let Some(customer) = &query.customer_id {
        sql.push(" AND customer_id = ").push_bind(customer.clone());
    }
    if let (true, Some(status)) = (with_status, &query.status) {
        sql.push(" AND status = ").push_bind(status.clone());
    }
    if let Some(min) = query.min_total_cents {
        sql.push(" AND total_cents >= ").push_bind(min);
    }
    if let Some(max) = query.max_total_cents {
        sql.push(" AND total_cents <= ").push_bind(max);
    }
    if let Some(from) = query.placed_from {
        sql.push(" AND placed_at >= ").push_bind(from);
    }
    if let Some(to) = query.placed_to {
        sql.push(" AND placed_at <= ").push_bind(to);
    }
}

fn text_of(query: &SearchQuery) -> Option<&str> {
    query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn score_sql(query: &SearchQuery, sql: &mut QueryBuilder<sqlx::Postgres>) {
    match text_of(query) {
        Some(text) => {
            sql.push("ts_rank(document, websearch_to_tsquery('simple', ")
                .push_bind(text.to_owned())
                .push("))::real");
        }
        None => {
            sql.push("0::real");
        }
    }
}

fn document_of(row: &PgRow) -> Result<SearchDocument, SearchError> {
    let get = |e: sqlx::Error| SearchError::Protocol(e.to_string());
    let count: i64 = row.try_get("item_count").map_err(get)?;
    let version: i64 = row.try_get("version").map_err(get)?;
    Ok(SearchDocument {
        order_id: row.try_get("order_id").map_err(get)?,
        customer_id: row.try_get("customer_id").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        product_ids: row.try_get("product_ids").map_err(get)?,
        shipping_address: row.try_get("shipping_address").map_err(get)?,
        tracking_number: row.try_get("tracking_number").map_err(get)?,
        total_cents: row.try_get("total_cents").map_err(get)?,
        currency: row.try_get("currency").map_err(get)?,
        item_count: u64::try_from(count)
            .map_err(|_| SearchError::Protocol(format!("item count {count}")))?,
        placed_at: row.try_get("placed_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        version: u64::try_from(version)
            .map_err(|_| SearchError::Protocol(format!("version {version}")))?,
    })
}

#[async_trait]
impl SearchIndex for PgSearchIndex {
    async fn prepare(&self) -> Result<(), SearchError> {
        // The table comes with the migrations; check that it is there.
        sqlx::query("SELECT 1 FROM order_search LIMIT 0")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn upsert(
        &self,
        generation: Generation,
        documents: &[SearchDocument],
    ) -> Result<Vec<IndexFailure>, SearchError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let table = match generation {
            Generation::Live => "public.order_search".to_owned(),
            Generation::Rebuild => format!("{REBUILD_SCHEMA}.order_search"),
        };
        let mut columns = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for d in documents {
            columns.0.push(d.order_id);
            columns.1.push(d.customer_id.clone());
            columns.2.push(d.status.clone());
            columns.3.push(product_ids_literal(&d.product_ids));
            columns.4.push(d.shipping_address.clone());
            columns.5.push(d.tracking_number.clone());
            columns.6.push(d.total_cents);
            columns.7.push(d.currency.clone());
            columns.8.push(to_i64(d.item_count, "item count")?);
            columns.9.push(d.placed_at);
            columns.10.push(d.updated_at);
            columns.11.push(to_i64(d.version, "version")?);
            columns.12.push(d.search_text());
        }
        let statement = UPSERT.replace("{table}", &table);
        sqlx::query(AssertSqlSafe(statement))
            .bind(columns.0)
            .bind(columns.1)
            .bind(columns.2)
            .bind(columns.3)
            .bind(columns.4)
            .bind(columns.5)
            .bind(columns.6)
            .bind(columns.7)
            .bind(columns.8)
            .bind(columns.9)
            .bind(columns.10)
            .bind(columns.11)
            .bind(columns.12)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(Vec::new())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        query.check_input()?;
        let mut sql = QueryBuilder::new("SELECT * FROM (SELECT *, ");
        score_sql(query, &mut sql);
        sql.push(" AS score FROM public.order_search");
        push_filters(&mut sql, query, true);
        sql.push(") AS matches WHERE TRUE");
        if let Some(SearchCursor {
            score,
            placed_at,
            order_id,
        }) = query.after
        {
            // After the cursor in (score DESC, placed_at DESC, order_id ASC) order.
            sql.push(" AND (score < ")
                .push_bind(score)
                .push(" OR (score = ")
                .push_bind(score)
                .push(" AND (placed_at < ")
                .push_bind(placed_at)
                .push(" OR (placed_at = ")
                .push_bind(placed_at)
                .push(" AND order_id > ")
                .push_bind(order_id)
                .push("))))");
        }
        sql.push(" ORDER BY score DESC, placed_at DESC, order_id ASC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(db)?;
        let hits = rows
            .iter()
            .map(|row| {
                Ok(SearchHit {
                    document: document_of(row)?,
                    score: row
                        .try_get::<f32, _>("score")
                        .map_err(|e| SearchError::Protocol(e.to_string()))?,
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

        let mut facets = QueryBuilder::new("SELECT status, count(*) FROM public.order_search");
        push_filters(&mut facets, query, false);
        facets.push(" GROUP BY status");
        let counts: Vec<(String, i64)> = facets
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let status_counts: BTreeMap<String, u64> = counts
            .into_iter()
            .map(|(status, count)| (status, u64::try_from(count).unwrap_or(0)))
            .collect();
        Ok(SearchPage {
            hits,
            next,
            status_counts,
        })
    }

    async fn start_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        crate::rebuild::execute_all(
            &mut tx,
            [
                "SET LOCAL client_min_messages = warning".to_owned(),
                format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"),
                format!("CREATE SCHEMA {REBUILD_SCHEMA}"),
                format!(
                    "CREATE TABLE {REBUILD_SCHEMA}.order_search \
                 (LIKE public.order_search INCLUDING ALL)"
                ),
            ],
        )
        .await
        .map_err(db)?;
        crate::rebuild::copy_grants(&mut tx, "order_search", REBUILD_SCHEMA)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn finish_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        crate::rebuild::execute_all(
            &mut tx,
            [
                "SET LOCAL client_min_messages = warning".to_owned(),
                "SET LOCAL lock_timeout = '2s'".to_owned(),
                format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"),
                format!("CREATE SCHEMA {RETIRED_SCHEMA}"),
                format!("ALTER TABLE public.order_search SET SCHEMA {RETIRED_SCHEMA}"),
                format!("ALTER TABLE {REBUILD_SCHEMA}.order_search SET SCHEMA public"),
            ],
        )
        .await
        .map_err(db)?;
        crate::rebuild::restore_index_names(&mut tx, RETIRED_SCHEMA, "order_search")
            .await
            .map_err(db)?;
        crate::rebuild::execute_all(
            &mut tx,
            [
                format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE"),
                format!("DROP SCHEMA {REBUILD_SCHEMA} CASCADE"),
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn abandon_rebuild(&self) -> Result<(), SearchError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        crate::rebuild::execute_all(
            &mut tx,
            [
                "SET LOCAL client_min_messages = warning".to_owned(),
                format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"),
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
