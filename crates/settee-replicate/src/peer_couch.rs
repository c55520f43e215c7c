//! `Peer` for a remote CouchDB database (`settee_couch::RemoteDb`): the replication calls
//! mapped onto CouchDB's endpoints, and which of the client's errors are worth a retry.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;
use settee_couch::{
    BulkGetDoc, BulkGetOptions, BulkGetRequest, ChangesFilter, ChangesOptions, Feed, RemoteDb,
};
use settee_revtree::{Rev, RevsDiff, Seq};

use crate::checkpoint;
use crate::peer::{
    Change, ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer, PeerInfo,
};
use crate::{Error, Result, Selector};

/// Whether a client error may go away on retry: the network, the server's 5xx and 429, a
/// cluster's `nodedown`, a cut feed, or a reply that is not CouchDB's (a proxy's error page
/// while the server restarts). Authentication, permissions and missing databases do not.
pub(crate) fn is_transient(e: &settee_couch::Error) -> bool {
    use settee_couch::Error as E;
    match e {
        E::Transport { .. }
        | E::Connect { .. }
        | E::FeedInterrupted { .. }
        | E::InvalidResponse { .. } => true,
        E::Http(_) => {
            e.status().is_some_and(|s| s == 429 || s == 408 || s >= 500)
                // A CouchDB cluster answers `412 nodedown` ("progress not possible") to a
                // `_changes` whose since names copies on a node that has just gone down, until
                // it maps that since onto other copies; the same request succeeds moments
                // later (issue 24, tests/cluster/changes.rs).
                || e.failure().is_some_and(|f| f.error() == "nodedown")
        }
        _ => false,
    }
}

impl Peer for RemoteDb {
    fn describe(&self) -> String {
        self.url().to_string()
    }

    fn identity(&self) -> String {
        self.server_uuid()
            .and_then(|uuid| identity_of(&uuid, self.name(), self.client().user()))
            .unwrap_or_else(|| Peer::address(self))
    }

    fn address(&self) -> String {
        // The URL without its password and with the user name (as CouchDB's replication ids
        // have it: two users of one database see different documents and get different
        // validation, so they keep separate checkpoints). The user is percent-encoded in the
        // URL's userinfo, so no user name can be spelled as another URL. The query is not
        // part of a database's identity.
        let mut u = self.url().as_url().clone();
        u.set_query(None);
        u.set_fragment(None);
        if let Some(user) = self.client().user() {
            // Fails only for URLs that cannot have a user (not http/https), which a
            // `RemoteDb` never has.
            let _ = u.set_username(user);
        }
        u.to_string().trim_end_matches('/').to_owned()
    }

    async fn learn_identity(&self) -> Result<()> {
        match self.learn_server_uuid().await {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Err(Error::Couch(e)),
            // A server (or a proxy in front of one) that refuses `GET /` to this user:
            // the database keeps its address as identity, as before identities were
            // learned. What was learned before stays.
            Err(e) => {
                tracing::warn!(url = %self.url(), error = %e, "the server did not say its uuid; naming the database by its URL");
                Ok(())
            }
        }
    }

    fn is_local(&self) -> bool {
        false
    }

    async fn info(&self) -> Result<PeerInfo> {
        let info = RemoteDb::info(self).await.map_err(Error::Couch)?;
        Ok(PeerInfo {
            update_seq: info.update_seq,
            doc_count: info.doc_count,
            doc_del_count: info.doc_del_count,
        })
    }

    async fn probe(&self) -> Result<()> {
        // `HEAD /{db}`: the smallest request that proves the server and the database's node
        // answer; a missing database answers too (the retry then reports it). One try: the
        // caller probes again on its own schedule.
        self.with_retry(settee_couch::RetryPolicy::none())
            .exists()
            .await
            .map(|_| ())
            .map_err(Error::Couch)
    }

    async fn create(&self) -> Result<()> {
        match RemoteDb::create(self).await {
            Ok(()) => Ok(()),
            // Someone created it first: that is what we wanted.
            Err(settee_couch::Error::FileExists(_)) => Ok(()),
            Err(e) => Err(Error::Couch(e)),
        }
    }

    async fn changes(&self, req: &ChangesRequest) -> Result<ChangesBatch> {
        let filter = match &req.filter {
            Filter::All => ChangesFilter::None,
            Filter::DocIds(ids) => ChangesFilter::DocIds(ids.clone()),
            Filter::Selector(s) => {
                if server_has_selector_filter(self).await? {
                    ChangesFilter::Selector(s.to_canonical_json())
                } else {
                    return selector_changes(self, req, s).await;
                }
            }
            Filter::Named { name, query_params } => ChangesFilter::Named {
                name: name.clone(),
                params: query_params
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            },
        };
        Ok(read_changes(self, req, filter, false).await?.0)
    }

    async fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        let diff = RemoteDb::revs_diff(self, &revs)
            .await
            .map_err(Error::Couch)?;
        Ok(diff
            .into_iter()
            .map(|(id, e)| {
                (
                    id,
                    RevsDiff {
                        missing: e.missing,
                        possible_ancestors: e.possible_ancestors,
                    },
                )
            })
            .collect())
    }

    async fn held_as_ancestors(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, Vec<Rev>>> {
        // Every leaf with its `_revisions` (no bodies' attachments): a revision on one of
        // those paths is in the database's tree.
        let opts = BulkGetOptions {
            revs: true,
            latest: false,
            attachments: false,
        };
        let mut held = BTreeMap::new();
        for (id, asked) in revs {
            let req = BulkGetRequest {
                id: id.clone(),
                rev: None,
                atts_since: Vec::new(),
            };
            let leaves = RemoteDb::open_revs(self, &req, &opts)
                .await
                .map_err(Error::Couch)?;
            let mut found = Vec::new();
            for leaf in leaves.docs {
                let BulkGetDoc::Ok(doc) = leaf else { continue };
                for rev in path_of(&doc) {
                    if asked.contains(&rev) && !found.contains(&rev) {
                        found.push(rev);
                    }
                }
            }
            if !found.is_empty() {
                held.insert(id, found);
            }
        }
        Ok(held)
    }

    async fn fetch(&self, reqs: Vec<FetchRequest>, max_bytes: u64) -> Result<Vec<Fetched>> {
        fetch_from(self, reqs, max_bytes, false).await
    }

    async fn fetch_streamed(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> Result<Vec<Fetched>> {
        fetch_from(self, reqs, max_bytes, true).await
    }

    async fn attachment_body(
        &self,
        id: &str,
        rev: &Rev,
        name: &str,
    ) -> Result<settee_couch::AttachmentBody> {
        RemoteDb::attachment_stream(self, id, name, Some(rev))
            .await
            .map_err(Error::Couch)
    }

    async fn pull_streamed(
        &self,
        reqs: Vec<FetchRequest>,
    ) -> Result<Option<settee_couch::MultipartDocs>> {
        let breqs: Vec<BulkGetRequest> = reqs
            .into_iter()
            .map(|r| BulkGetRequest {
                id: r.id,
                rev: Some(r.rev),
                atts_since: r.atts_since,
            })
            .collect();
        let opts = BulkGetOptions {
            attachments: true,
            ..BulkGetOptions::REPLICATION
        };
        RemoteDb::bulk_get_multipart(self, &breqs, &opts)
            .await
            .map_err(Error::Couch)
    }

    fn pulls_streamed(&self) -> bool {
        // Unknown counts as yes: the first pull learns it, and a server that answers JSON
        // is then read as before.
        self.answers_multipart() != Some(false)
    }

    async fn filter_code(&self, name: &str) -> Result<String> {
        let (ddoc, _) = checkpoint::split_filter_name(name)?;
        let id = format!("_design/{ddoc}");
        let doc = match RemoteDb::get(self, &id, &Default::default()).await {
            Ok(doc) => Some(doc),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(Error::Couch(e)),
        };
        checkpoint::filter_code_in(doc.as_ref(), name, &Peer::describe(self))
    }

    async fn write(&self, docs: Vec<Box<RawValue>>, _origin: &str) -> Result<Vec<DocFailure>> {
        let results = RemoteDb::bulk_docs(self, &docs, false)
            .await
            .map_err(Error::Couch)?;
        Ok(DocFailure::refused(results))
    }

    fn takes_streamed(&self) -> bool {
        true
    }

    async fn write_streamed(
        &self,
        doc: Box<RawValue>,
        attachments: Vec<settee_couch::AttachmentUpload>,
        origin: &str,
    ) -> Result<Vec<DocFailure>> {
        let _ = origin;
        let mut value: Value = serde_json::from_str(doc.get()).map_err(|e| Error::BadRequest {
            reason: format!("a fetched document is not JSON: {e}"),
        })?;
        // The bytes go up decoded (identity), so the server computes the digest itself: a
        // source's digest may be that of its gzipped copy (CouchDB keeps `text/*` and JSON
        // gzipped and names them by that), and CouchDB 3.5 fails such a PUT with a 500
        // (`function_clause`) when the digest sent is not the bytes'. What it computes for
        // the same bytes is what the source reported (its gzip is deterministic), so the
        // digests stay exact from one CouchDB to another.
        if let Some(atts) = value.get_mut("_attachments").and_then(Value::as_object_mut) {
            for stub in atts.values_mut().filter_map(Value::as_object_mut) {
                if stub.get("follows").and_then(Value::as_bool) == Some(true) {
                    stub.remove("digest");
                    stub.remove("encoding");
                    stub.remove("encoded_length");
                }
            }
        }
        let id = value
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rev = value.get("_rev").and_then(Value::as_str).map(str::to_owned);
        let attachments = encoded_as_server_keeps(self, attachments).await?;
        // One document per request, as CouchDB's replicator sends a revision with
        // attachments: its refusal is this document's, like a `_bulk_docs` result.
        match RemoteDb::put_multipart(self, &id, &value, attachments, false).await {
            Ok(_) => Ok(Vec::new()),
            Err(e) if is_transient(&e) => Err(Error::Couch(e)),
            // The server's own error and reason, as a `_bulk_docs` result carries them.
            Err(e) => Ok(vec![DocFailure {
                id,
                rev,
                error: e.name().to_owned(),
                reason: e
                    .failure()
                    .map(|f| f.reason().to_owned())
                    .unwrap_or_else(|| e.to_string()),
            }]),
        }
    }

    async fn commit(&self) -> Result<()> {
        RemoteDb::ensure_full_commit(self)
            .await
            .map_err(Error::Couch)
    }

    async fn get_local(&self, id: &str) -> Result<Option<Value>> {
        RemoteDb::get_local(self, id).await.map_err(Error::Couch)
    }

    async fn put_local(&self, id: &str, doc: Value) -> Result<String> {
        let rev = RemoteDb::put_local(self, id, &doc)
            .await
            .map_err(Error::Couch)?;
        Ok(rev.to_string())
    }

    async fn pending_since(&self, _since: &Seq) -> Option<u64> {
        None
    }
}

/// `fetch` and `fetch_streamed`: with `streamed`, `_bulk_get` reads stubs only, and the
/// attachments the target lacks are marked `follows` (`streamed::mark_follows`); their
/// bytes are read one by one, streamed ([`Peer::attachment_body`]).
async fn fetch_from(
    db: &RemoteDb,
    reqs: Vec<FetchRequest>,
    max_bytes: u64,
    streamed: bool,
) -> Result<Vec<Fetched>> {
    // Streamed, the answer must hold stubs only: CouchDB sends the data of every attachment
    // newer than `atts_since` inline whether or not `attachments` is asked for, so the
    // request leaves `atts_since` out and `follows` applies it to the stubs here.
    let breqs: Vec<BulkGetRequest> = reqs
        .iter()
        .map(|r| BulkGetRequest {
            id: r.id.clone(),
            rev: Some(r.rev.clone()),
            atts_since: if streamed {
                Vec::new()
            } else {
                r.atts_since.clone()
            },
        })
        .collect();
    let opts = BulkGetOptions {
        attachments: !streamed,
        ..BulkGetOptions::REPLICATION
    };
    let results = match RemoteDb::bulk_get_json_within(db, &breqs, &opts, max_bytes).await {
        Ok(results) => results,
        Err(settee_couch::Error::ResponseTooLarge { limit, .. }) => {
            return Err(Error::FetchTooLarge {
                peer: db.url().to_string(),
                limit,
            })
        }
        Err(e) => return Err(Error::Couch(e)),
    };
    // The client pairs the answer with the request, one result per request item in
    // order (asking for any the server left out on its own); a request without a
    // revision in its result is still a failure of its own here, never skipped.
    let mut results = results.into_iter();
    let mut out = Vec::with_capacity(reqs.len());
    for req in &reqs {
        let asked = Some(req.rev.to_string());
        let docs = match results.next() {
            Some(r) if r.id == req.id && !r.docs.is_empty() => r.docs,
            _ => {
                out.push(Fetched::Failed(DocFailure {
                    id: req.id.clone(),
                    rev: asked,
                    error: "not_found".into(),
                    reason:
                        "the source's _bulk_get and open_revs answers did not include this revision"
                            .into(),
                }));
                continue;
            }
        };
        for d in docs {
            out.push(match d {
                BulkGetDoc::Ok(doc) if streamed => Fetched::Doc(follows(doc, &req.atts_since)),
                BulkGetDoc::Ok(doc) => Fetched::Doc(doc),
                BulkGetDoc::Missing(rev) => Fetched::Failed(DocFailure {
                    id: req.id.clone(),
                    rev: rev.map(|r| r.to_string()).or_else(|| asked.clone()),
                    error: "not_found".into(),
                    reason: "missing".into(),
                }),
                BulkGetDoc::Error(e) => Fetched::Failed(DocFailure {
                    id: req.id.clone(),
                    rev: e.rev.or_else(|| asked.clone()),
                    error: e.error,
                    reason: e.reason,
                }),
            });
        }
    }
    Ok(out)
}

/// A fetched document with the attachments the target lacks marked `follows`; one without
/// attachments (or that does not parse: the target refuses it) is left as it is.
fn follows(doc: Box<RawValue>, atts_since: &[Rev]) -> Box<RawValue> {
    if !doc.get().contains("\"_attachments\"") {
        return doc;
    }
    let Ok(mut value) = serde_json::from_str::<Value>(doc.get()) else {
        return doc;
    };
    crate::streamed::mark_follows(&mut value, atts_since);
    serde_json::value::to_raw_value(&value).unwrap_or(doc)
}

/// A remote database's identity from its server's `uuid`: `couchdb://[user@]uuid/db`, a
/// URL whose host is the uuid and whose one path segment is the database name, the user
/// and the name percent-encoded (so no name can be spelled as another). Every URL that
/// reaches the same server (127.0.0.1 or localhost, any node of a cluster, through a
/// proxy) gives the same identity. `None` for a uuid that is not letters, digits and `-`
/// (at most 64): the server is named by its URL then.
pub(crate) fn identity_of(uuid: &str, db: &str, user: Option<&str>) -> Option<String> {
    let sane = !uuid.is_empty()
        && uuid.len() <= 64
        && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !sane {
        return None;
    }
    let mut u = url::Url::parse(&format!("couchdb://{uuid}/")).ok()?;
    u.path_segments_mut().ok()?.clear().push(db);
    if let Some(user) = user {
        u.set_username(user).ok()?;
    }
    Some(u.to_string())
}

async fn read_changes(
    db: &RemoteDb,
    req: &ChangesRequest,
    filter: ChangesFilter,
    include_docs: bool,
) -> Result<(ChangesBatch, Vec<Option<Value>>)> {
    let opts = ChangesOptions {
        feed: if req.wait.is_some() {
            Feed::Longpoll
        } else {
            Feed::Normal
        },
        since: (!req.since.is_zero()).then(|| req.since.clone()),
        limit: Some(req.limit as u64),
        timeout: req.wait,
        // Real sequences are needed only at batch ends (CouchDB 2+; others ignore it). Not on
        // a filtered feed: a cluster then leaves the last row's seq null on a full page too,
        // and that page's `last_seq` can be past a matching row it did not send (a selector
        // pull from 3 nodes and 8 shards lost a document about one run in two; issue 24).
        seq_interval: matches!(filter, ChangesFilter::None).then_some(req.limit as u64),
        filter,
        include_docs,
        ..ChangesOptions::default()
    };
    let resp = RemoteDb::changes(db, &opts).await.map_err(Error::Couch)?;
    // Resume after the last row we were given, not after the response's `last_seq`:
    // a server may compute `last_seq` after reading its rows, so a write that landed
    // meanwhile can sit before `last_seq` without being in `results` (pouchdb-server
    // does this under concurrent writes). With `seq_interval` (unfiltered feeds only, see
    // above), CouchDB (3.5) sends a real seq on some rows and null on the others, the last
    // one included; its `last_seq` is then where it stopped sending rows, so that is taken.
    // An empty page also gives `last_seq`, which the reader does not take on trust
    // (`reader.rs`).
    let last_seq = resp
        .results
        .last()
        .map(|c| c.seq.clone())
        .filter(|s| !s.as_json().is_null())
        .unwrap_or(resp.last_seq);
    let docs = resp.results.iter().map(|c| c.doc.clone()).collect();
    let batch = ChangesBatch {
        changes: resp
            .results
            .into_iter()
            .map(|c| Change { doc: None, ..c })
            .collect(),
        last_seq,
        pending: resp.pending,
    };
    Ok((batch, docs))
}

/// What each server (by URL) answered about keeping attachments encoded, learned once per
/// process.
static KEEPS_ENCODINGS: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

/// Encoded uploads (a store's gzipped text, CouchDB's digest) as the server takes them:
/// as they are for a server that keeps them so, Apache CouchDB and `settee serve` (`GET /`
/// says `"couchdb": "Welcome"`; the digest and `encoded_length` then stay the source's);
/// decoded ([`crate::streamed::decoded`], no digest) for one that does not, pouchdb-server
/// (`"express-pouchdb": "Welcome!"`, vendor PouchDB), which would keep the gzip bytes as
/// the attachment. Asks `GET /` once per server, and only when an upload is encoded.
async fn encoded_as_server_keeps(
    db: &RemoteDb,
    uploads: Vec<settee_couch::AttachmentUpload>,
) -> Result<Vec<settee_couch::AttachmentUpload>> {
    if uploads.iter().all(|u| u.encoding.is_none()) {
        return Ok(uploads);
    }
    let key = db.client().url().to_string();
    let known = KEEPS_ENCODINGS
        .lock()
        .ok()
        .and_then(|k| k.iter().find(|(url, _)| *url == key).map(|(_, yes)| *yes));
    let keeps = match known {
        Some(yes) => yes,
        None => {
            // A server that refuses `GET /` to this user gets decoded bytes: right for any
            // server, only the digest is then the server's own.
            let yes = match db.client().server_info().await {
                Ok(info) => {
                    let pouchdb = info
                        .vendor
                        .as_ref()
                        .is_some_and(|v| v.to_string().contains("PouchDB"));
                    info.couchdb.as_deref() == Some("Welcome") && !pouchdb
                }
                Err(e) if is_transient(&e) => return Err(Error::Couch(e)),
                Err(_) => false,
            };
            if let Ok(mut k) = KEEPS_ENCODINGS.lock() {
                k.push((key, yes));
            }
            yes
        }
    };
    Ok(if keeps {
        uploads
    } else {
        uploads.into_iter().map(crate::streamed::decoded).collect()
    })
}

/// What each server (by URL) answered about `filter=_selector`, learned once per process.
static SELECTOR_SUPPORT: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

/// Whether the server evaluates `filter=_selector` itself: Apache CouchDB 2.0 and later.
/// Older servers and pouchdb-server do not (pouchdb-server even crashes when asked, as it
/// looks for a design document named `_selector`), so the selector is evaluated here.
async fn server_has_selector_filter(db: &RemoteDb) -> Result<bool> {
    let key = db.client().url().to_string();
    if let Ok(known) = SELECTOR_SUPPORT.lock() {
        if let Some((_, yes)) = known.iter().find(|(k, _)| *k == key) {
            return Ok(*yes);
        }
    }
    let info = db.client().server_info().await.map_err(Error::Couch)?;
    let major: u32 = info
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let pouchdb = info
        .vendor
        .as_ref()
        .is_some_and(|v| v.to_string().contains("PouchDB"));
    let yes = info.couchdb.is_some() && !pouchdb && major >= 2;
    if !yes {
        tracing::info!(url = %db.url(), "server has no filter=_selector; evaluating the selector locally");
    }
    if let Ok(mut known) = SELECTOR_SUPPORT.lock() {
        known.push((key, yes));
    }
    Ok(yes)
}

/// A page of changes whose winning documents match `selector`, evaluated here: pages are
/// read (with `include_docs`) until `limit` rows match or the feed ends, so a short page
/// still means "nothing more".
async fn selector_changes(
    db: &RemoteDb,
    req: &ChangesRequest,
    selector: &Selector,
) -> Result<ChangesBatch> {
    let mut req = req.clone();
    let mut out = Vec::new();
    loop {
        let (page, docs) = read_changes(db, &req, ChangesFilter::None, true).await?;
        let exhausted = page.changes.len() < req.limit.max(1);
        let pending = page.pending;
        req.since = page.last_seq.clone();
        req.wait = None;
        for (change, doc) in page.changes.into_iter().zip(docs) {
            if doc.as_ref().is_some_and(|d| selector.matches(d)) {
                out.push(change);
            }
        }
        if exhausted || out.len() >= req.limit.max(1) {
            return Ok(ChangesBatch {
                changes: out,
                last_seq: req.since,
                pending,
            });
        }
    }
}

/// The revisions a document's `_revisions` names; none when it has no valid `_revisions`.
fn path_of(doc: &Value) -> Vec<Rev> {
    serde_json::from_value::<settee_revtree::Revisions>(doc["_revisions"].clone())
        .ok()
        .and_then(|r| r.to_path().ok())
        .map(|p| p.revs().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_names_the_server_uuid_the_database_and_the_user() {
        assert_eq!(
            identity_of("f6a00bef94e7412ab0836112d8a4118a", "notes", None).unwrap(),
            "couchdb://f6a00bef94e7412ab0836112d8a4118a/notes"
        );
        assert_eq!(
            identity_of("e42079b8-d761-4f63", "my/notes", Some("al@ice")).unwrap(),
            "couchdb://al%40ice@e42079b8-d761-4f63/my%2Fnotes"
        );
        assert_ne!(
            identity_of("u", "a/b", None),
            identity_of("u", "a", Some("b"))
        );
        for bad in ["", "a/b", "a@b", "a b", &"x".repeat(65)] {
            assert_eq!(identity_of(bad, "db", None), None, "{bad:?}");
        }
    }

    #[test]
    fn a_database_is_named_by_its_url_until_its_server_uuid_is_learned() {
        let db = RemoteDb::from_url("http://admin:pw@localhost:5984/notes?x=1").unwrap();
        assert_eq!(Peer::identity(&db), "http://admin@localhost:5984/notes");
        assert_eq!(Peer::address(&db), Peer::identity(&db));
    }
}
