//! Index generations behind aliases: creating the live index, starting a rebuild, and swapping
//! the rebuilt index in with one atomic `_aliases` call.

use elasticsearch::Elasticsearch;
use elasticsearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesGetAliasParts, IndicesRefreshParts,
};
use serde_json::{Value, json};
use strata_ports::SearchError;
use uuid::Uuid;

use crate::mapping::index_body;
use crate::transport::Answer;

/// The names of one deployment's aliases and indices.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
    pub live: String,
    pub rebuild: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            live: format!("{prefix}orders"),
            rebuild: format!("{prefix}orders-rebuild"),
        }
    }

    /// A fresh concrete index name; v7 ids sort by creation time.
    fn new_index(&self) -> String {
        format!("{}orders-{}", self.prefix, Uuid::now_v7().simple())
    }
}

/// The indices an alias points to, sorted by name; none when the alias does not exist.
async fn indices_of(client: &Elasticsearch, alias: &str) -> Result<Vec<String>, SearchError> {
    let sent = client
        .indices()
        .get_alias(IndicesGetAliasParts::Name(&[alias]))
        .send()
        .await;
    let answer = Answer::of(sent).await?;
    if answer.status == 404 {
        return Ok(Vec::new());
    }
    let body = answer.json("get alias")?;
    let mut names: Vec<String> = body
        .as_object()
        .ok_or_else(|| SearchError::Protocol(format!("get alias answer: {body}")))?
        .keys()
        .cloned()
        .collect();
    names.sort();
    Ok(names)
}

async fn create_index(client: &Elasticsearch, name: &str, alias: &str) -> Result<(), SearchError> {
    let sent = client
        .indices()
        .create(IndicesCreateParts::Index(name))
        .body(index_body(alias))
        .send()
        .await;
    Answer::of(sent).await?.json("create index")?;
    Ok(())
}

async fn delete_index(client: &Elasticsearch, name: &str) -> Result<(), SearchError> {
    let sent = client
        .indices()
        .delete(IndicesDeleteParts::Index(&[name]))
        .send()
        .await;
    let answer = Answer::of(sent).await?;
    if answer.status == 404 {
        return Ok(());
    }
    answer.json("delete index")?;
    Ok(())
}

async fn update_aliases(client: &Elasticsearch, actions: Vec<Value>) -> Result<(), SearchError> {
    let sent = client
        .indices()
        .update_aliases()
        .body(json!({ "actions": actions }))
        .send()
        .await;
    Answer::of(sent).await?.json("update aliases")?;
    Ok(())
}

pub(crate) async fn prepare(client: &Elasticsearch, names: &Names) -> Result<(), SearchError> {
    if !indices_of(client, &names.live).await?.is_empty() {
        return Ok(());
    }
    create_index(client, &names.new_index(), &names.live).await?;
    // Two processes starting together may both have created an index behind the alias. All
    // of them keep the oldest (smallest v7 name) and drop the others, so they agree.
    let behind = indices_of(client, &names.live).await?;
    for extra in behind.iter().skip(1) {
        tracing::warn!(index = %extra, "dropping a concurrently created search index");
        delete_index(client, extra).await?;
    }
    Ok(())
}

pub(crate) async fn start_rebuild(
    client: &Elasticsearch,
    names: &Names,
) -> Result<(), SearchError> {
    abandon_rebuild(client, names).await?;
    create_index(client, &names.new_index(), &names.rebuild).await
}

/// Drops the indices behind the rebuild alias, except one readers use (only its rebuild alias
/// goes).
pub(crate) async fn abandon_rebuild(
    client: &Elasticsearch,
    names: &Names,
) -> Result<(), SearchError> {
    let live = indices_of(client, &names.live).await?;
    for unfinished in indices_of(client, &names.rebuild).await? {
        if live.contains(&unfinished) {
            // Never delete what readers use: only take the rebuild alias off it.
            update_aliases(
                client,
                vec![json!({ "remove": { "index": unfinished, "alias": names.rebuild } })],
            )
            .await?;
        } else {
            delete_index(client, &unfinished).await?;
        }
    }
    Ok(())
}

pub(crate) async fn finish_rebuild(
    client: &Elasticsearch,
    names: &Names,
) -> Result<(), SearchError> {
    let rebuilt = match indices_of(client, &names.rebuild).await?.as_slice() {
        [one] => one.clone(),
        [] => return Err(SearchError::Backend("no rebuild in progress".to_owned())),
        many => {
            return Err(SearchError::Backend(format!(
                "the rebuild alias points to several indices: {}",
                many.join(", ")
            )));
        }
    };
    let old: Vec<String> = indices_of(client, &names.live)
        .await?
        .into_iter()
        .filter(|index| *index != rebuilt)
        .collect();
    // Rebuild writes do not wait for refreshes: make all of them searchable before the swap.
    let sent = client
        .indices()
        .refresh(IndicesRefreshParts::Index(&[rebuilt.as_str()]))
        .send()
        .await;
    Answer::of(sent).await?.json("refresh")?;

    let mut actions: Vec<Value> = old
        .iter()
        .map(|index| json!({ "remove": { "index": index, "alias": names.live } }))
        .collect();
    actions.push(json!({ "add": { "index": rebuilt, "alias": names.live } }));
    actions.push(json!({ "remove": { "index": rebuilt, "alias": names.rebuild } }));
    update_aliases(client, actions).await?;

    for index in &old {
        // The swap is done and readers already use the new index: a leftover old index costs
        // disk only, so it is reported rather than failing the rebuild.
        if let Err(error) = delete_index(client, index).await {
            tracing::warn!(index = %index, %error, "cannot delete the replaced search index");
        }
    }
    Ok(())
}
