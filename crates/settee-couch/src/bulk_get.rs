//! `_bulk_get`, and its fallback for servers without it: one `GET ?open_revs=[...]` per
//! requested revision, reshaped to `_bulk_get`'s answer (PouchDB's `bulkGetShim` does the
//! same). Whether the server has `_bulk_get` is learnt once per [`RemoteDb`]. The request
//! and answer shapes are `settee_wire`'s.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::call::Call;
use crate::docs::{is_missing_doc, json_list};
use crate::{
    BulkGetDoc, BulkGetError, BulkGetOptions, BulkGetRequest, BulkGetResult, Error, RemoteDb,
    Result, Rev,
};

const UNKNOWN: u8 = 0;
const SUPPORTED: u8 = 1;
pub(crate) const UNSUPPORTED: u8 = 2;

/// How many fallback `GET`s run at once (PouchDB's shim uses 6 too: the browser's
/// per-host connection limit).
const FALLBACK_CONCURRENCY: usize = 6;

/// A form `_bulk_get` can hand documents over in.
trait DocForm: Sized + Send + 'static {
    /// One entry of a `_bulk_get` answer's `docs` list.
    type Entry: DeserializeOwned + Send;
    fn entry(e: Self::Entry) -> BulkGetDoc<Self>;
    fn from_value(v: Value) -> Self;
    /// Whether this document is `rev` or descends from it (`None`: it names no revision).
    fn answers(&self, rev: &Rev) -> Option<bool>;
}

impl DocForm for Value {
    type Entry = Value;
    fn entry(e: Value) -> BulkGetDoc<Value> {
        BulkGetDoc::from_json(e)
    }
    fn from_value(v: Value) -> Value {
        v
    }
    fn answers(&self, rev: &Rev) -> Option<bool> {
        DocRevs::deserialize(self).ok()?.answers(rev)
    }
}

/// An entry with its document left as text; the other members are small and parsed.
#[derive(Deserialize)]
struct JsonEntry {
    #[serde(default)]
    ok: Option<Box<RawValue>>,
    #[serde(default)]
    missing: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    reason: Option<Value>,
}

impl DocForm for Box<RawValue> {
    type Entry = JsonEntry;
    fn entry(e: JsonEntry) -> BulkGetDoc<Box<RawValue>> {
        if let Some(doc) = e.ok {
            return BulkGetDoc::Ok(doc);
        }
        let mut rest = serde_json::Map::new();
        for (k, v) in [
            ("missing", e.missing),
            ("error", e.error),
            ("reason", e.reason),
        ] {
            if let Some(v) = v {
                rest.insert(k.into(), v);
            }
        }
        BulkGetDoc::from_json(Value::Object(rest)).map(Self::from_value)
    }
    fn from_value(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).expect("a JSON value always serializes")
    }
    fn answers(&self, rev: &Rev) -> Option<bool> {
        // CouchDB and PouchDB write `_id` then `_rev` first: when the text starts so with the
        // revision asked for, that settles it without reading the rest of the document.
        if leads_with_rev(self.get(), rev) {
            return Some(true);
        }
        // Otherwise the text is read once more, skipping all but the two revision members.
        serde_json::from_str::<DocRevs>(self.get())
            .ok()?
            .answers(rev)
    }
}

/// Whether a result answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// It names the requested revision (or the request named none).
    Exact,
    /// Same id, but no entry says which revision it is about (pouchdb-server's `{}`).
    Unknown,
    /// Another document or another revision.
    Other,
}

/// How `result` relates to `req`: an entry answers a revision when it is that revision, or,
/// for a document (`latest=true` can return a newer leaf), when its `_revisions` reach it.
fn answers<D: DocForm>(result: &BulkGetResult<D>, req: &BulkGetRequest) -> Answer {
    if result.id != req.id {
        return Answer::Other;
    }
    let Some(rev) = &req.rev else {
        return Answer::Exact;
    };
    let mut unknown = false;
    for entry in &result.docs {
        let names = match entry {
            BulkGetDoc::Ok(doc) => doc.answers(rev),
            BulkGetDoc::Missing(Some(r)) => Some(r == rev),
            BulkGetDoc::Missing(None) => None,
            BulkGetDoc::Error(e) => e.rev.as_deref().map(|r| r == rev.to_string()),
        };
        match names {
            Some(true) => return Answer::Exact,
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown {
        Answer::Unknown
    } else {
        Answer::Other
    }
}

/// Pairs results with requests when they are not in request order: each request takes the
/// first unused result naming its revision, else the first unused one for its id that names
/// no revision. Results that answer no request (repeats, extras) are dropped.
fn pair_by_revision<D: DocForm>(
    reqs: &[BulkGetRequest],
    results: Vec<BulkGetResult<D>>,
) -> Vec<Option<BulkGetResult<D>>> {
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        by_id.entry(r.id.clone()).or_default().push(i);
    }
    let mut results: Vec<Option<BulkGetResult<D>>> = results.into_iter().map(Some).collect();
    reqs.iter()
        .map(|q| {
            let candidates = by_id.get(&q.id)?;
            let pick = |want: Answer, results: &[Option<BulkGetResult<D>>]| {
                candidates.iter().copied().find(|&i| {
                    results
                        .get(i)
                        .and_then(Option::as_ref)
                        .is_some_and(|r| answers(r, q) == want)
                })
            };
            let i = pick(Answer::Exact, &results).or_else(|| pick(Answer::Unknown, &results))?;
            results.get_mut(i).and_then(Option::take)
        })
        .collect()
}

/// Whether document text starts `{"_id":"…","_rev":"<rev>"` (JSON's escapes respected in
/// the id): a top-level `_rev` equal to `rev`, found without parsing the document.
fn leads_with_rev(text: &str, rev: &Rev) -> bool {
    let Some(rest) = text.strip_prefix("{\"_id\":\"") else {
        return false;
    };
    // The id string ends at the first quote that no backslash escapes.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    let Some(after) = rest.get(i..) else {
        return false;
    };
    let Some(after) = after.strip_prefix("\",\"_rev\":\"") else {
        return false;
    };
    let want = rev.to_string();
    after
        .strip_prefix(want.as_str())
        .is_some_and(|tail| tail.starts_with('"'))
}

/// The revision fields of a document, read without the rest of it.
#[derive(Deserialize)]
struct DocRevs {
    #[serde(rename = "_rev", default)]
    rev: Option<String>,
    #[serde(rename = "_revisions", default)]
    revisions: Option<RevisionsText>,
}

/// `_revisions` as a server sent it (checked only as far as pairing needs).
#[derive(Deserialize)]
struct RevisionsText {
    start: u64,
    ids: Vec<String>,
}

impl DocRevs {
    /// Whether the document is `rev` or descends from it; `None` when it names no revision.
    fn answers(&self, rev: &Rev) -> Option<bool> {
        let own = self.rev.as_deref()?;
        if own == rev.to_string() {
            return Some(true);
        }
        let Some(r) = &self.revisions else {
            return Some(false);
        };
        let reached = r
            .start
            .checked_sub(rev.pos())
            .and_then(|back| usize::try_from(back).ok())
            .and_then(|back| r.ids.get(back))
            .is_some_and(|hash| hash == rev.hash());
        Some(reached)
    }
}

impl RemoteDb {
    /// `POST /{db}/_bulk_get`: the requested revisions, one [`BulkGetResult`] per request
    /// item, in order. The answer is checked against the request: a request item the server
    /// left without a result is asked for again with [`RemoteDb::open_revs`], and one that
    /// still has none comes back with an empty `docs` list.
    ///
    /// Servers without `_bulk_get` (CouchDB 1.x answers 400, 404 or 405) are detected on
    /// the first call; from then on this `RemoteDb` (and its clones) sends one
    /// `GET /{db}/{id}?open_revs=[rev]&revs=true&latest=true` per item instead, 6 at a time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing database; [`Error::Transport`] and other HTTP
    /// errors. A missing revision is a [`BulkGetDoc::Missing`] or [`BulkGetDoc::Error`].
    pub async fn bulk_get(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
    ) -> Result<Vec<BulkGetResult>> {
        self.bulk_get_as(reqs, opts, u64::MAX).await
    }

    /// [`RemoteDb::bulk_get`] with each document left as the JSON text the server sent
    /// (checked to be valid JSON, not parsed into a `Value`): what a replicator passes on
    /// to its target as it is.
    ///
    /// # Errors
    /// As [`RemoteDb::bulk_get`].
    pub async fn bulk_get_json(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
    ) -> Result<Vec<BulkGetResult<Box<RawValue>>>> {
        self.bulk_get_as(reqs, opts, u64::MAX).await
    }

    /// [`RemoteDb::bulk_get_json`] reading at most `limit` bytes of response (each response,
    /// when the answer takes several requests): a replicator bounds the memory its fetches
    /// hold this way, and asks for fewer documents when the answer does not fit.
    ///
    /// # Errors
    /// [`Error::ResponseTooLarge`] when an answer is larger than `limit` (or the client's
    /// `max_response_size`); otherwise as [`RemoteDb::bulk_get`].
    pub async fn bulk_get_json_within(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<Vec<BulkGetResult<Box<RawValue>>>> {
        self.bulk_get_as(reqs, opts, limit).await
    }

    async fn bulk_get_as<D: DocForm>(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<Vec<BulkGetResult<D>>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        if self.bulk_get_support.load(Ordering::Relaxed) != UNSUPPORTED {
            match self.bulk_get_native(reqs, opts, limit).await {
                Ok(results) => {
                    self.bulk_get_support.store(SUPPORTED, Ordering::Relaxed);
                    return self.account(reqs, results, opts, limit).await;
                }
                Err(e)
                    if self.bulk_get_support.load(Ordering::Relaxed) == UNKNOWN
                        && lacks_bulk_get(&e) =>
                {
                    tracing::info!(url = %self.url(), error = %e, "no _bulk_get on this server; using open_revs GETs");
                    self.bulk_get_support.store(UNSUPPORTED, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let all: Vec<usize> = (0..reqs.len()).collect();
        let mut fetched = self.open_revs_each(reqs, &all, opts, limit).await?;
        Ok(fetched.drain(..).map(|(_, r)| r).collect())
    }

    /// Pairs a `_bulk_get` answer with the request, item by item: every request gets the
    /// result for its id *and revision*, in order (a server that answers in request order,
    /// as CouchDB and pouchdb-server do, pairs by position). Two requests can share an id
    /// (two missing leaves of a conflicted document), so a result left out, repeated or
    /// moved would otherwise give one of them the other's answer: that revision would be
    /// neither fetched nor reported. A request left without a result of its own, or with
    /// one that lists no revision, is asked again with a per-document `open_revs` GET.
    async fn account<D: DocForm>(
        &self,
        reqs: &[BulkGetRequest],
        results: Vec<BulkGetResult<D>>,
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<Vec<BulkGetResult<D>>> {
        let in_order = results.len() == reqs.len()
            && results
                .iter()
                .zip(reqs)
                .all(|(r, q)| answers(r, q) != Answer::Other);
        let mut slots: Vec<Option<BulkGetResult<D>>> = if in_order {
            results.into_iter().map(Some).collect()
        } else {
            pair_by_revision(reqs, results)
        };
        let missing: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_none_or(|r| r.docs.is_empty()))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            tracing::warn!(url = %self.url(), missing = missing.len(), first = %reqs[missing[0]].id,
                "the _bulk_get answer left out requested revisions; asking for each with open_revs");
            for (i, r) in self.open_revs_each(reqs, &missing, opts, limit).await? {
                slots[i] = Some(r);
            }
        }
        // INVARIANT: every slot with no result or an empty one is in `missing`, and
        // `open_revs_each` answers each of those.
        Ok(slots
            .into_iter()
            .zip(reqs)
            .map(|(s, q)| {
                s.unwrap_or_else(|| BulkGetResult {
                    id: q.id.clone(),
                    docs: Vec::new(),
                })
            })
            .collect())
    }

    /// One `open_revs` GET for each of `reqs[which]`, `FALLBACK_CONCURRENCY` at a time, each
    /// read up to `limit` bytes; results are paired with their index in `reqs`.
    async fn open_revs_each<D: DocForm>(
        &self,
        reqs: &[BulkGetRequest],
        which: &[usize],
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<Vec<(usize, BulkGetResult<D>)>> {
        // Owned values in each future: a future borrowing `reqs` through a closure is not
        // `Send` for every lifetime, which callers that spawn (the replicator) need.
        let opts = *opts;
        let owned: Vec<(usize, BulkGetRequest)> = which
            .iter()
            .filter_map(|&i| reqs.get(i).map(|r| (i, r.clone())))
            .collect();
        futures::stream::iter(owned.into_iter().map(|(i, r)| {
            let db = self.clone();
            async move {
                let r = db.open_revs_within(&r, &opts, limit).await?;
                Ok((
                    i,
                    BulkGetResult {
                        id: r.id,
                        docs: r.docs.into_iter().map(|d| d.map(D::from_value)).collect(),
                    },
                ))
            }
        }))
        .buffered(FALLBACK_CONCURRENCY)
        .try_collect()
        .await
    }

    async fn bulk_get_native<D: DocForm>(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<Vec<BulkGetResult<D>>> {
        #[derive(Deserialize)]
        #[serde(bound = "")]
        struct Answer<D: DocForm> {
            results: Vec<RawResult<D>>,
        }
        #[derive(Deserialize)]
        #[serde(bound = "")]
        struct RawResult<D: DocForm> {
            id: String,
            docs: Vec<D::Entry>,
        }
        let mut url = self.join(&["_bulk_get"]);
        bool_params(&mut url, opts);
        // Serialized straight from the slice (`json!` would copy every item first).
        #[derive(Serialize)]
        struct Request<'a> {
            docs: &'a [BulkGetRequest],
        }
        let body = Request { docs: reqs };
        let call = self
            .client
            .json_call(Method::POST, url, &body)?
            .idempotent();
        let answer: Answer<D> = self.client.send_json_within(call, limit).await?;
        Ok(answer
            .results
            .into_iter()
            .map(|r| BulkGetResult {
                id: r.id,
                docs: r.docs.into_iter().map(D::entry).collect(),
            })
            .collect())
    }

    /// `GET /{db}/{id}?open_revs=...`: the revision `req.rev`, or every leaf (`open_revs=all`)
    /// when it is `None`, in `_bulk_get`'s result shape. Also the fallback of
    /// [`RemoteDb::bulk_get`] for servers without `_bulk_get`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing database; [`Error::Transport`].
    pub async fn open_revs(
        &self,
        req: &BulkGetRequest,
        opts: &BulkGetOptions,
    ) -> Result<BulkGetResult> {
        self.open_revs_within(req, opts, u64::MAX).await
    }

    async fn open_revs_within(
        &self,
        req: &BulkGetRequest,
        opts: &BulkGetOptions,
        limit: u64,
    ) -> Result<BulkGetResult> {
        let url = open_revs_url(self, req, opts);
        // Without this header CouchDB answers open_revs with multipart/mixed.
        let call = Call::new(Method::GET, url)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        let docs = match self
            .client
            .send_json_within::<Vec<Value>>(call, limit)
            .await
        {
            Ok(docs) => docs.into_iter().map(BulkGetDoc::from_json).collect(),
            // A document that does not exist at all: one entry, like _bulk_get's.
            Err(Error::NotFound(f)) if is_missing_doc(f.reason()) => {
                vec![BulkGetDoc::Error(BulkGetError {
                    id: req.id.clone(),
                    rev: req.rev.as_ref().map(Rev::to_string),
                    error: f.error().to_owned(),
                    reason: f.reason().to_owned(),
                })]
            }
            Err(e) => return Err(e),
        };
        Ok(BulkGetResult {
            id: req.id.clone(),
            docs,
        })
    }
}

/// `GET /{db}/{id}?open_revs=[rev]` (or `all`), with `atts_since` and `opts`.
pub(crate) fn open_revs_url(
    db: &RemoteDb,
    req: &BulkGetRequest,
    opts: &BulkGetOptions,
) -> url::Url {
    let mut url = db.doc_url(&req.id);
    {
        let mut q = url.query_pairs_mut();
        match &req.rev {
            Some(rev) => q.append_pair("open_revs", &json_list(std::slice::from_ref(rev))),
            None => q.append_pair("open_revs", "all"),
        };
        if !req.atts_since.is_empty() {
            q.append_pair("atts_since", &json_list(&req.atts_since));
        }
    }
    bool_params(&mut url, opts);
    url
}

pub(crate) fn bool_params(url: &mut url::Url, opts: &BulkGetOptions) {
    let mut q = url.query_pairs_mut();
    for (name, on) in [
        ("revs", opts.revs),
        ("latest", opts.latest),
        ("attachments", opts.attachments),
    ] {
        if on {
            q.append_pair(name, "true");
        }
    }
    drop(q);
    if url.query() == Some("") {
        url.set_query(None);
    }
}

/// Whether an error from `POST _bulk_get` means the endpoint does not exist: 405, 400, or
/// a 404 that is not about the database (CouchDB 1.x treats `_bulk_get` as a document id).
pub(crate) fn lacks_bulk_get(e: &Error) -> bool {
    match e {
        Error::MethodNotAllowed(_) | Error::BadRequest(_) => true,
        Error::NotFound(f) => !matches!(f.reason(), "no_db_file" | "Database does not exist."),
        _ => false,
    }
}

#[cfg(test)]
mod pairing_tests {
    use super::*;

    #[test]
    fn a_leading_rev_is_read_without_parsing_and_only_at_the_top() {
        let rev: Rev = "2-abc".parse().unwrap();
        assert!(leads_with_rev(r#"{"_id":"x","_rev":"2-abc","a":1}"#, &rev));
        assert!(leads_with_rev(
            r#"{"_id":"q\"uo\\te","_rev":"2-abc"}"#,
            &rev
        ));
        assert!(!leads_with_rev(r#"{"_id":"x","_rev":"2-abcd"}"#, &rev));
        assert!(!leads_with_rev(r#"{"_id":"x","a":{"_rev":"2-abc"}}"#, &rev));
        assert!(!leads_with_rev(r#"{"_id":"x\",\"_rev\":\"2-abc"}"#, &rev));
        assert!(!leads_with_rev(r#"{"a":1,"_id":"x","_rev":"2-abc"}"#, &rev));
        // Not leading: the full parse decides.
        let doc = serde_json::value::to_raw_value(&serde_json::json!(
            {"a": 1, "_id": "x", "_rev": "3-def", "_revisions": {"start": 3, "ids": ["def", "abc"]}}
        ))
        .unwrap();
        assert_eq!(doc.answers(&rev), Some(true));
    }
}
