//! The accounts read model: an account reads back exactly as written, its version guard keeps a
//! replayed or late older write from replacing a newer row, a transaction line is added once,
//! and an account's transactions come in their order page by page.

use uuid::Uuid;

use super::{ACCOUNTS, account, customer, head, transaction};
use crate::projection::Generation;
use crate::read_model::{AccountRow, ProjectionStore, ReadModels, TransactionRow};

/// Writes rows of the accounts projection in one live batch, one position further.
async fn put_accounts(
    store: &dyn ProjectionStore,
    accounts: &[&AccountRow],
    transactions: &[&TransactionRow],
) {
    let mut batch = store.begin(ACCOUNTS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    for row in accounts {
        batch.put_account(row).await.unwrap();
    }
    for row in transactions {
        batch.add_transaction(row).await.unwrap();
    }
    batch.commit(position).await.unwrap();
}

/// Every field of an account, through the batch and through the queries.
pub async fn an_account_reads_back_exactly_as_written(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let open = account(&customer("account-fields"), 1);
    let closed = AccountRow {
        closed: true,
        balance_cents: -250,
        currency: "NOK".to_owned(),
        transaction_count: 12,
        ..account(&customer("account-fields"), 13)
    };

    let mut batch = store.begin(ACCOUNTS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    batch.put_account(&open).await.unwrap();
    batch.put_account(&closed).await.unwrap();
    let inside = batch.account(closed.account_id).await.unwrap();
    let missing = batch.account(Uuid::now_v7()).await.unwrap();
    batch.commit(position).await.unwrap();

    assert_eq!(inside.as_ref(), Some(&closed), "within the batch");
    assert_eq!(missing, None);
    let read = |id| async move { models.account(id).await.unwrap().value };
    assert_eq!(read(open.account_id).await, Some(open));
    assert_eq!(read(closed.account_id).await, Some(closed));
    assert_eq!(read(Uuid::now_v7()).await, None);
}

/// The account's version guard: lower and equal versions are ignored, a higher one replaces.
pub async fn an_account_is_replaced_only_by_a_higher_version(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let opened = account(&customer("account-versions"), 1);
    let version = |version: u64, balance_cents: i64| AccountRow {
        version,
        balance_cents,
        updated_at: opened.updated_at + time::Duration::minutes(i64::try_from(version).unwrap()),
        ..opened.clone()
    };
    let (deposited, replayed, withdrawn) = (version(2, 15_000), version(2, 99), version(3, 7_000));
    put_accounts(store, &[&deposited], &[]).await;

    put_accounts(store, &[&opened, &replayed], &[]).await;
    let after_older = models.account(opened.account_id).await.unwrap().value;
    put_accounts(store, &[&withdrawn, &deposited], &[]).await;
    let after_newer = models.account(opened.account_id).await.unwrap().value;

    assert_eq!(after_older, Some(deposited), "lower and equal versions");
    assert_eq!(
        after_newer,
        Some(withdrawn),
        "a higher version, then a lower one"
    );
}

/// A transaction line already there (same account and version) is kept as it is.
pub async fn a_transaction_line_is_added_once_per_account_and_version(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let owner = account(&customer("transactions-once"), 1);
    let first = transaction(owner.account_id, 1, base + 1);
    let again = TransactionRow {
        amount_cents: 1,
        reference: "replayed".to_owned(),
        ..first.clone()
    };
    put_accounts(store, &[&owner], &[&first, &again]).await;

    put_accounts(store, &[], &[&again]).await;

    let lines = models
        .account_transactions(owner.account_id, None, 10)
        .await
        .unwrap()
        .value;
    assert_eq!(lines, [first]);
}

/// An account's transactions, oldest first; `after` is an exclusive stream version; `limit`
/// caps a page; other accounts' lines never appear.
pub async fn an_accounts_transactions_come_oldest_first_page_by_page_without_other_accounts(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let mine = account(&customer("transactions-pages"), 4);
    let other = account(&customer("transactions-other"), 2);
    let line = |version: u64| transaction(mine.account_id, version, base + version * 2);
    let (t1, t2, t3, t4) = (line(1), line(2), line(3), line(4));
    let others = [
        transaction(other.account_id, 1, base + 1),
        transaction(other.account_id, 2, base + 3),
    ];
    put_accounts(
        store,
        &[&mine, &other],
        &[&t3, &others[0], &t1, &t4, &others[1], &t2],
    )
    .await;
    let page = |after: Option<u64>, limit: usize| async move {
        let rows = models
            .account_transactions(mine.account_id, after, limit)
            .await
            .unwrap();
        rows.value.iter().map(|t| t.version).collect::<Vec<_>>()
    };

    let everything = models
        .account_transactions(mine.account_id, None, 10)
        .await
        .unwrap()
        .value;

    assert_eq!(everything, [t1, t2, t3, t4]);
    assert_eq!(page(None, 2).await, [1, 2]);
    assert_eq!(page(Some(2), 10).await, [3, 4]);
    assert_eq!(page(Some(1), 2).await, [2, 3]);
    assert_eq!(page(Some(4), 10).await, Vec::<u64>::new());
    assert!(
        models
            .account_transactions(Uuid::now_v7(), None, 10)
            .await
            .unwrap()
            .value
            .is_empty()
    );
}
