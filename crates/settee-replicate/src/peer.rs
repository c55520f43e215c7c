//! `Peer`: the one interface the replicator needs from either end of a replication, and the
//! shapes it speaks in (the rows of `_changes` are `settee_wire`'s). The local store and the HTTP client implement it (in
//! `peer_store.rs` and `peer_couch.rs`); the replication loop knows nothing else about them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use settee_revtree::{Rev, RevsDiff, Seq};

use crate::{Result, Selector};

/// What the replicator learns about a peer before it starts.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's current update sequence.
    pub update_seq: Seq,
    /// Number of live documents.
    pub doc_count: u64,
    /// Number of deleted documents.
    pub doc_del_count: u64,
}

/// Which changes a replication reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Filter {
    /// Every document.
    #[default]
    All,
    /// Only these document ids (`filter=_doc_ids`).
    DocIds(Vec<String>),
    /// Documents matching a Mango selector (`filter=_selector`).
    Selector(Selector),
    /// A filter function in a design document (`ddoc/name`) with query parameters; only a
    /// remote source can run it.
    Named {
        /// `ddoc/name`.
        name: String,
        /// Extra query parameters passed to the function.
        query_params: Map<String, Value>,
    },
}

impl Filter {
    /// The filter as JSON (`null` for [`Filter::All`], `{"doc_ids": [...]}`,
    /// `{"selector": ...}`, `{"filter": name, "query_params": {...}}`): how a local store
    /// records the filter it syncs with a remote under.
    pub fn to_json(&self) -> Value {
        match self {
            Filter::All => Value::Null,
            Filter::DocIds(ids) => serde_json::json!({ "doc_ids": ids }),
            Filter::Selector(s) => serde_json::json!({ "selector": s.to_canonical_json() }),
            Filter::Named { name, query_params } => {
                serde_json::json!({ "filter": name, "query_params": query_params })
            }
        }
    }

    /// The filter [`Filter::to_json`] wrote; `None` for JSON it does not write.
    pub fn from_json(value: &Value) -> Option<Filter> {
        if value.is_null() {
            return Some(Filter::All);
        }
        let obj = value.as_object()?;
        if let Some(ids) = obj.get("doc_ids") {
            let ids = ids
                .as_array()?
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()?;
            return Some(Filter::DocIds(ids));
        }
        if let Some(sel) = obj.get("selector") {
            return Selector::parse(sel).ok().map(Filter::Selector);
        }
        let name = obj.get("filter")?.as_str()?.to_owned();
        let query_params = match obj.get("query_params") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        Some(Filter::Named { name, query_params })
    }
}

/// Which end of a replication a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Revisions are read from it.
    Source,
    /// Revisions are written to it.
    Target,
}

/// One request for a batch of changes.
#[derive(Debug, Clone)]
pub struct ChangesRequest {
    /// Read changes after this sequence.
    pub since: Seq,
    /// At most this many rows.
    pub limit: usize,
    /// Which documents.
    pub filter: Filter,
    /// When set and nothing has changed since `since`, wait up to this long for a change
    /// (longpoll) instead of answering at once.
    pub wait: Option<Duration>,
}

/// One row of a changes feed with `style=all_docs`: every leaf revision of a document
/// (`changes`, deleted leaves included) and the revisions the source listed that no [`Rev`]
/// can hold (`invalid_revs`: the replication reports the document as not replicated).
///
/// The client's row ([`settee_wire::Change`] with opaque sequences); a local store's rows
/// are converted to it (their integer sequences become [`Seq`]s). The replicator's rows
/// carry no `doc`: the documents a selector filter reads travel beside them.
pub type Change = settee_wire::Change<Seq>;

/// A page of changes.
#[derive(Debug, Clone)]
pub struct ChangesBatch {
    /// The rows, in feed order.
    pub changes: Vec<Change>,
    /// The sequence to ask from next time.
    pub last_seq: Seq,
    /// How many rows remain after this page, if the peer says.
    pub pending: Option<u64>,
}

/// One revision to fetch from the source.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// Document id.
    pub id: String,
    /// The revision wanted.
    pub rev: Rev,
    /// Revisions the target already has: attachments unchanged since the newest of them on
    /// the fetched revision's own path come back as stubs instead of data.
    pub atts_since: Vec<Rev>,
}

/// A fetched revision, or why it could not be fetched.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The document at the revision, with `_revisions` and inline attachments, as JSON
    /// text: the replicator passes documents from source to target without parsing them.
    Doc(Box<RawValue>),
    /// The source could not give the revision (compacted, purged, forbidden).
    Failed(DocFailure),
}

/// A document the replication could not move, with CouchDB's error name and reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DocFailure {
    /// Document id.
    pub id: String,
    /// The revision, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rev: Option<String>,
    /// CouchDB's error name (`forbidden`, `unauthorized`, `missing_stub`...).
    pub error: String,
    /// The reason given.
    pub reason: String,
}

impl DocFailure {
    /// The documents a `_bulk_docs` answer (either peer's) refused, each with its error.
    pub(crate) fn refused(results: Vec<settee_wire::DocResult>) -> Vec<DocFailure> {
        results
            .into_iter()
            .filter(|r| !r.is_ok())
            .map(|r| DocFailure {
                id: r.id,
                rev: r.rev.map(|r| r.to_string()),
                error: r.error.unwrap_or_default(),
                reason: r.reason.unwrap_or_default(),
            })
            .collect()
    }
}

/// Either end of a replication.
///
/// Every method may be called concurrently from several tasks. Implementations translate
/// their own errors into [`crate::Error`], marking transient ones (network, 5xx, 429) so the
/// replicator knows to retry.
pub trait Peer: Clone + Send + Sync + 'static {
    /// A short description for messages and logs, without credentials.
    fn describe(&self) -> String;

    /// Stable identity for replication ids, checkpoints and the sync state a local store
    /// keeps with the peer: a local store's uuid (`local:<uuid>`); for a remote database,
    /// once [`Peer::learn_identity`] has learned it, its server's uuid with the database
    /// name (and the user name), so that every spelling of the server's URL is the same
    /// remote; before that, or when the server has no uuid, its [`Peer::address`]. Never
    /// contains a password. Needs no network.
    fn identity(&self) -> String;

    /// The name the peer goes by before [`Peer::learn_identity`]: for a remote database,
    /// its URL without credentials (plus the user name), as [`Peer::identity`] was before
    /// identities were learned; for a local store, its identity (the default). Offline
    /// questions about a remote may come with this name: a local store resolves it to the
    /// identity it learned it for (`settee_store::Database::resolve_remote`). Needs no
    /// network.
    fn address(&self) -> String {
        self.identity()
    }

    /// Learns the peer's identity where that needs asking (a remote database asks its
    /// server's uuid, `GET /`); [`Peer::identity`] answers it from then on. A replication
    /// calls it when each session starts, before it reads checkpoints or sync state. A
    /// server that answers `GET /` without a uuid, or refuses it, leaves the identity at the
    /// address. A local store knows its own (the default).
    ///
    /// # Errors
    /// Transient ones only (the network, the server's 5xx), which the replication retries.
    fn learn_identity(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether the peer is a local store (its pending count is known without a network).
    fn is_local(&self) -> bool;

    /// Database information, and the identity used in replication ids.
    fn info(&self) -> impl Future<Output = Result<PeerInfo>> + Send;

    /// Asks cheaply whether the peer answers now (one try, no retries): while a replication
    /// waits to retry after a connection-level failure, it probes about once a second and
    /// retries as soon as this succeeds. An error that is not transient (the peer answers,
    /// but refuses) also ends the wait: the retry then reports it. A local store always
    /// answers (the default).
    fn probe(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Creates the database if it does not exist.
    fn create(&self) -> impl Future<Output = Result<()>> + Send;

    /// A page of changes with `style=all_docs`.
    fn changes(&self, req: &ChangesRequest) -> impl Future<Output = Result<ChangesBatch>> + Send;

    /// `_revs_diff`: which of these revisions the peer lacks.
    fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, RevsDiff>>> + Send;

    /// Fetches revisions with their ancestry (`_bulk_get?revs=true&attachments=true`), at
    /// least one [`Fetched`] per request (more when `latest` finds several leaves after
    /// it), in request order; a revision the peer does not give is a [`Fetched::Failed`],
    /// never left out. Reads at most `max_bytes` of documents: beyond that the call fails
    /// with [`crate::Error::FetchTooLarge`] (the caller asks for fewer).
    fn fetch(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<Fetched>>> + Send;

    /// [`Peer::fetch`] for a target that takes attachments as streams (a remote database's
    /// `multipart/related` write, [`Peer::write_streamed`]): an attachment the target needs
    /// (its `revpos` above the newest of `atts_since` on the revision's path) comes as a
    /// stub with `"follows": true` and its `length`, and its bytes from
    /// [`Peer::attachment_body`], never inline. The default is [`Peer::fetch`] (inline
    /// data), which every target takes.
    fn fetch_streamed(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<Fetched>>> + Send {
        self.fetch(reqs, max_bytes)
    }

    /// The bytes of attachment `name` of revision `rev` of document `id`, as a stream, for
    /// a `follows` stub [`Peer::fetch_streamed`] gave. The default has none.
    ///
    /// # Errors
    /// [`crate::Error::BadRequest`] by default; the peer's own errors.
    fn attachment_body(
        &self,
        id: &str,
        rev: &Rev,
        name: &str,
    ) -> impl Future<Output = Result<settee_couch::AttachmentBody>> + Send {
        let reason = format!("this peer does not stream attachments ({name} of {id} {rev})");
        async move { Err(crate::Error::BadRequest { reason }) }
    }

    /// Reads revisions with the bytes of the attachments each needs (by its `atts_since`)
    /// streamed, as CouchDB's replicator does from a server that answers `_bulk_get` or
    /// `open_revs` in `multipart/mixed`: one response, each document's attachments read in
    /// order ([`settee_couch::MultipartDocs`]). `None` when the peer cannot (the default,
    /// and a server that answers JSON): the caller reads with [`Peer::fetch_streamed`] and
    /// [`Peer::attachment_body`] instead.
    ///
    /// # Errors
    /// The peer's own errors.
    fn pull_streamed(
        &self,
        reqs: Vec<FetchRequest>,
    ) -> impl Future<Output = Result<Option<settee_couch::MultipartDocs>>> + Send {
        let _ = reqs;
        async { Ok(None) }
    }

    /// Whether [`Peer::pull_streamed`] may answer `Some` (as far as the peer knows without
    /// asking): then revisions with attachments are better read that way than inline.
    fn pulls_streamed(&self) -> bool {
        false
    }

    /// Whether [`Peer::write_streamed`] takes documents with `follows` stubs (a remote
    /// database and a local store do; the default does not, and is written with inline
    /// data).
    fn takes_streamed(&self) -> bool {
        false
    }

    /// Writes one revision as it is, whose `follows` stubs' bytes are `attachments` (in any
    /// order, matched by name); returns the refusals, as [`Peer::write`] does (`origin` as
    /// there). The default refuses.
    ///
    /// # Errors
    /// [`crate::Error::BadRequest`] by default; the peer's own errors.
    fn write_streamed(
        &self,
        doc: Box<RawValue>,
        attachments: Vec<settee_couch::AttachmentUpload>,
        origin: &str,
    ) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        let _ = (doc, attachments, origin);
        async {
            Err(crate::Error::BadRequest {
                reason: "this peer does not take streamed attachments".into(),
            })
        }
    }

    /// The source code of the filter function `ddoc/name` (from `_design/ddoc`'s `filters`),
    /// trimmed: it is part of the replication id, so that a changed filter never reuses a
    /// checkpoint that skipped documents the new one selects.
    fn filter_code(&self, name: &str) -> impl Future<Output = Result<String>> + Send;

    /// Writes revisions as they are (`_bulk_docs` with `new_edits=false`); returns the
    /// documents the peer rejected. Each document is JSON text as [`Peer::fetch`] gave it.
    /// `origin` is the identity of the peer they were read from: a local store records them
    /// as held by it, in the same write (see [`Peer::track_peer`]).
    fn write(
        &self,
        docs: Vec<Box<RawValue>>,
        origin: &str,
    ) -> impl Future<Output = Result<Vec<DocFailure>>> + Send;

    /// Called when a replication with the peer whose identity is `other` starts, before its
    /// checkpoints are read (`rep_id` names them; `role` is this peer's end, `filter` the
    /// replication's). A local store registers `other` as a remote it keeps per-document
    /// sync state with, records the filter, and removes its copy of a checkpoint written
    /// before it kept that state (the run then starts from the beginning, once, so that it
    /// confirms every revision `other` already holds). A remote database does nothing.
    fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, role, filter, rep_id);
        async { Ok(()) }
    }

    /// Called when a session starts with the peer whose identity is `other`, which was known
    /// by another name before its identity was learned (`address`, its [`Peer::address`]),
    /// before [`Peer::track_peer`]; `old_rep_id` is the replication's id under the old
    /// names, `rep_id` under the new. A local store records `address` as a name of `other`
    /// for offline questions, moves the sync state it kept under `address` to `other` (one
    /// atomic write; `settee_store::Database::learn_remote_alias`), and renames its
    /// checkpoint `old_rep_id` to `rep_id` when it has none under `rep_id`, so an upgraded
    /// store resumes where it was. A remote database does nothing.
    fn peer_renamed(
        &self,
        other: &str,
        address: &str,
        old_rep_id: &str,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, address, old_rep_id, rep_id);
        async { Ok(()) }
    }

    /// Called after each batch: the peer `other` is known to hold `held` revisions (it
    /// listed them in its changes, found them not missing, or took them), and refused
    /// `rejected` ones. A local store records both in its sync state with `other`; a remote
    /// database does nothing.
    fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, held, rejected);
        async { Ok(()) }
    }

    /// Called when the peer `other` says it lacks `lacking` revisions (its `_revs_diff`
    /// answer, before they are written to it). The remote wins over what was recorded: a
    /// local store makes those that are leaves unsynced with `other` again, even if it had
    /// them as held (`other` was reset or restored); a remote database does nothing.
    fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, lacking);
        async { Ok(()) }
    }

    /// Called after each batch written to this peer from the peer `other` (a pull, for a
    /// local store): `listed` are the documents the batch read from `other` (each with all
    /// its leaves there), `failed` the revisions it could not take (this peer refused them,
    /// or `other` did not give them). A local store keeps the failures in its sync state
    /// with `other`, replacing what it kept for the listed documents, so that `status`
    /// counts and lists them and the next replication tries them again
    /// ([`Peer::failures_from`]); a remote database does nothing.
    fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, listed, failed);
        async { Ok(()) }
    }

    /// The revisions earlier replications from `other` could not write here (see
    /// [`Peer::record_failures_from`]), which a new session asks for again first. A remote
    /// database has none.
    fn failures_from(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        let _ = other;
        async { Ok(Vec::new()) }
    }

    /// The revisions `other` refused when they were replicated from this peer to it (a
    /// local store's rejected documents), which a new session offers `other` again first:
    /// its rules may have changed (a validation function fixed, a remote reset). A remote
    /// database keeps none.
    fn refused_by(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        let _ = other;
        async { Ok(Vec::new()) }
    }

    /// Of `revs`, those this peer does not know `other` to hold (its sync state with
    /// `other`: unpushed or rejected leaves). The replication asks `other` about them once
    /// more when its `_revs_diff` left them out. A remote database keeps no such state and
    /// answers none.
    fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        let _ = (other, revs);
        async { Ok(BTreeMap::new()) }
    }

    /// Of `revs` (revisions this peer's `_revs_diff` calls missing although a write of
    /// them was not refused), those it holds as ancestors of one of its leaves. A PouchDB
    /// database keeps a revision it learned only from a descendant's `_revisions` without a
    /// body: its `_revs_diff` calls it missing for ever, and a replicated write of it is
    /// skipped as already known (`pouchdb-adapter-utils`' `updateDoc`), so the write can
    /// never be confirmed another way. CouchDB's and a local store's `_revs_diff` count
    /// such revisions as held; the default answers none.
    fn held_as_ancestors(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        let _ = revs;
        async { Ok(BTreeMap::new()) }
    }

    /// Called when a replication finds the peer `other` empty (no documents, live or
    /// deleted) as it starts: `other` holds nothing, whatever was recorded (it was dropped
    /// and recreated, or is a new server under the old URL). A local store makes every
    /// document unsynced with it again; a remote database does nothing.
    fn peer_holds_nothing(&self, other: &str) -> impl Future<Output = Result<()>> + Send {
        let _ = other;
        async { Ok(()) }
    }

    /// Called when a replication with `other` (this peer being its `role` end) has written
    /// everything up to the source's current end: at the end of a one-shot run, and each time
    /// a live one catches up. `at` is the time (RFC 3339). A local store records it as its
    /// last successful push to or pull from `other` (what `status` shows even when a run had
    /// nothing to move, and so wrote no checkpoint); a remote database does nothing.
    fn caught_up(
        &self,
        other: &str,
        role: Role,
        at: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (other, role, at);
        async { Ok(()) }
    }

    /// Makes everything written so far durable (the store's flush; CouchDB's
    /// `_ensure_full_commit`).
    fn commit(&self) -> impl Future<Output = Result<()>> + Send;

    /// Reads a `_local` document (id without the prefix); `None` if it does not exist.
    fn get_local(&self, id: &str) -> impl Future<Output = Result<Option<Value>>> + Send;

    /// Writes a `_local` document (id without the prefix; `_rev` in `doc` when updating).
    /// Returns the new `_rev`.
    fn put_local(&self, id: &str, doc: Value) -> impl Future<Output = Result<String>> + Send;

    /// For a local store: how many documents changed after `since` (its own sequence).
    /// `None` for a remote peer. Counting reads the rest of the store's by-seq index.
    fn pending_since(&self, since: &Seq) -> impl Future<Output = Option<u64>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::replication_id;

    #[test]
    fn a_filter_survives_its_json_form_with_the_same_replication_id() {
        let sel = Selector::parse(&serde_json::json!({"type": "note", "n": {"$gt": 2}})).unwrap();
        let filters = [
            Filter::All,
            Filter::DocIds(vec!["b".into(), "a".into()]),
            Filter::Selector(sel),
            Filter::Named {
                name: "app/mine".into(),
                query_params: [("user".to_owned(), Value::from("alice"))]
                    .into_iter()
                    .collect(),
            },
        ];
        for f in filters {
            let back = Filter::from_json(&f.to_json()).unwrap();
            assert_eq!(back, f);
            assert_eq!(
                replication_id("s", "t", &back, None),
                replication_id("s", "t", &f, None)
            );
        }
        assert_eq!(
            Filter::from_json(&serde_json::json!({"doc_ids": [1]})),
            None
        );
        assert_eq!(Filter::from_json(&serde_json::json!("all")), None);
    }
}
