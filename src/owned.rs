//! A local store held by another process: sled lets one process open a store, and the one
//! that holds it (`settee serve`, `settee sync --live`, an application serving its store)
//! leaves an advertisement ([`settee_store::Advert`]) with a loopback URL and a credential.
//! [`crate::Local::open`] then gives a [`crate::Local`] held elsewhere: documents are read and written
//! through the holder over HTTP, as on a server, and the sync-state questions (which only
//! the store can answer, offline) are asked of the holder through its `/{db}/_settee/...`
//! endpoints (`settee-server`'s `sync_state.rs`), which it answers with the same code as
//! for its own store.

use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use settee_couch::{CouchClient, RemoteDb, RetryPolicy};
use settee_replicate::{PullSince, SyncState, SyncStatus};

use crate::{Error, Result};

/// How long a sync-state question waits for the holder's answer. The holder answers from
/// its local store, on the same machine, in milliseconds; one that does not answer within
/// this (stopped, hung) is reported rather than waited for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to the holder may take (loopback: a refusal is immediate, so this
/// only bounds a host that drops packets).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Rows asked for per page of [`HeldStore::unsynced`].
const UNSYNCED_PAGE: usize = 256;

/// A local store that another process holds, reached through that process.
///
#[derive(Debug, Clone)]
pub(crate) struct HeldStore {
    /// The store's path, as given.
    pub(crate) path: String,
    /// The holder's process id (for messages).
    pub(crate) pid: u32,
    /// The store's database on the holder's server, with the advertised credential.
    pub(crate) owner: RemoteDb,
    /// The same, with short timeouts and no retries: for the sync-state questions, which
    /// must answer or fail at once, never hang on a holder that stopped.
    asked: RemoteDb,
}

impl HeldStore {
    /// The holder of the store at `path`, as its advertisement describes it.
    pub(crate) fn new(path: &str, advert: &settee_store::Advert) -> Result<HeldStore> {
        let owner = RemoteDb::from_url(&advert.url_with_credentials())?;
        // The advertised URL has no credentials: the server's URL and the database name.
        let plain = RemoteDb::from_url(&advert.url)?;
        let asked = CouchClient::builder(plain.client().url().as_str())
            .basic_auth(advert.user.clone(), advert.password.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(ANSWER_TIMEOUT)
            .request_timeout(ANSWER_TIMEOUT)
            .retry(RetryPolicy::none())
            .build()?
            .db(plain.name());
        Ok(HeldStore {
            path: path.to_owned(),
            pid: advert.pid,
            owner,
            asked,
        })
    }

    /// The store's path, as it was given to [`crate::Local::open`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The process id of the holder.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The store's database on the holder's loopback server.
    pub fn owner(&self) -> &RemoteDb {
        &self.owner
    }

    /// The store's database on the holder, for the sync-state questions.
    pub(crate) fn asked(&self) -> &RemoteDb {
        &self.asked
    }

    /// An error of asking the holder, naming it and the store.
    pub(crate) fn failed(&self, source: impl Into<Error>) -> Error {
        Error::Held {
            path: self.path.clone(),
            pid: self.pid,
            source: Box::new(source.into()),
        }
    }

    /// `GET /{db}/_settee/{what}?remote=...&...` on the holder.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        remote: &str,
        params: &[(&str, &str)],
    ) -> Result<T> {
        let mut query = vec![("remote", remote)];
        query.extend_from_slice(params);
        self.asked
            .get_extension(&["_settee", what], &query)
            .await
            .map_err(|e| self.failed(e))
    }

    /// [`settee_replicate::status`] in the holder; `remote` is the remote's identity.
    pub(crate) async fn sync_status(&self, remote: &str) -> Result<SyncStatus> {
        self.ask("sync_status", remote, &[]).await
    }

    /// [`settee_replicate::pull_since_named`] in the holder.
    pub(crate) async fn pull_since(&self, remote: &str) -> Result<PullSince> {
        self.ask("pull_since", remote, &[]).await
    }

    /// [`settee_replicate::sync_state`] in the holder.
    pub(crate) async fn sync_state(&self, remote: &str, id: &str) -> Result<Option<SyncState>> {
        match self
            .asked
            .get_extension::<Value>(
                &["_settee", "sync_state"],
                &[("remote", remote), ("id", id)],
            )
            .await
        {
            Ok(row) => Ok(Some(state_of_row(row).map_err(|e| self.failed(e))?.1)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// [`settee_replicate::unsynced`] in the holder, a page at a time.
    pub(crate) fn unsynced(
        &self,
        remote: String,
    ) -> impl Stream<Item = Result<(String, SyncState)>> + Send + 'static {
        #[derive(Deserialize)]
        struct Page {
            rows: Vec<Value>,
            next: Option<String>,
        }
        let held = self.clone();
        let limit = UNSYNCED_PAGE.to_string();
        // (the next page's start, whether there is one)
        futures::stream::unfold(
            (held, remote, limit, None::<String>, true),
            |(held, remote, limit, after, more)| async move {
                if !more {
                    return None;
                }
                let mut params = vec![("limit", limit.as_str())];
                if let Some(a) = &after {
                    params.push(("after", a.as_str()));
                }
                let page: Result<Page> = held.ask("unsynced", &remote, &params).await;
                let (items, next): (Vec<Result<(String, SyncState)>>, _) = match page {
                    Ok(p) => (
                        p.rows
                            .into_iter()
                            .map(|r| state_of_row(r).map_err(|e| held.failed(e)))
                            .collect(),
                        p.next,
                    ),
                    Err(e) => (vec![Err(e)], None),
                };
                let more = next.is_some();
                Some((
                    futures::stream::iter(items),
                    (held, remote, limit, next, more),
                ))
            },
        )
        .flatten()
    }
}

/// A row `{"id", "state", ...}` as the holder sends it: the id and its state.
fn state_of_row(row: Value) -> Result<(String, SyncState)> {
    let bad =
        |what: &str| Error::BadRequest(format!("the holder sent a bad sync-state row: {what}"));
    let Value::Object(mut m) = row else {
        return Err(bad("not an object"));
    };
    let id = match m.remove("id") {
        Some(Value::String(id)) => id,
        _ => return Err(bad("no id")),
    };
    // The row is the state's own serialized form (its `state` tag and fields) beside the id.
    let parsed = serde_json::from_value::<SyncState>(Value::Object(m)).map_err(|e| e.to_string());
    parsed.map(|s| (id, s)).map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_row() {
        let rev = |s: &str| s.parse::<settee_revtree::Rev>().unwrap();
        for state in [
            SyncState::Synced,
            SyncState::NotReplicated,
            SyncState::Unpushed {
                revs: vec![rev("1-a"), rev("2-b")],
            },
            SyncState::Rejected {
                rev: rev("3-c"),
                error: "forbidden".into(),
                reason: "no".into(),
            },
            SyncState::Conflicted {
                winner: rev("2-b"),
                losers: vec![rev("2-a")],
            },
            SyncState::PullFailed {
                rev: "4-d".into(),
                error: "doc_validation".into(),
                reason: "Bad special document member: _bogus".into(),
            },
        ] {
            let mut row = serde_json::to_value(&state).unwrap();
            row["id"] = Value::from("doc");
            assert_eq!(state_of_row(row).unwrap(), ("doc".to_owned(), state));
        }
        assert!(state_of_row(serde_json::json!({"id": "d", "state": "weird"})).is_err());
        assert!(state_of_row(serde_json::json!({"id": "d", "state": "unpushed"})).is_err());
    }
}
