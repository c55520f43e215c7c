//! `Db`: a database by location, a local store path or a CouchDB URL, with CouchDB-shaped
//! JSON in and out. What the `settee` command needs for its document commands, and what an
//! application can use to treat both kinds alike.

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use settee_replicate::{AnyPeer, Peer, SyncState, SyncStatus};
use settee_revtree::{Rev, Seq};
use settee_store::{AllDocsOptions, ChangesOptions, Database, GetOptions, OpenRevs};

use crate::owned::HeldStore;
use crate::{Error, Result};

/// A database: a local store or a remote CouchDB database.
#[derive(Debug, Clone)]
pub enum Db {
    /// A local store.
    Local(Database),
    /// A CouchDB database over HTTP.
    Remote(settee_couch::RemoteDb),
    /// A local store that another process holds (it advertises itself, see
    /// [`settee_store::Advert`]): documents go through that process over HTTP as to a
    /// server, and the sync-state calls ([`Db::sync_state`], [`Db::unsynced`],
    /// [`Db::sync_status`], [`status`]) are answered by it, as for a store opened here.
    Held(HeldStore),
}

/// Options of [`Db::get`] and [`Db::open_revs`], as the command line gives them.
#[derive(Debug, Clone, Default)]
pub struct GetArgs {
    /// A specific revision.
    pub rev: Option<String>,
    /// Include `_revisions`.
    pub revs: bool,
    /// Include `_conflicts`.
    pub conflicts: bool,
    /// `all` or a JSON array of revs.
    pub open_revs: Option<String>,
    /// Attachments with their data (base64) instead of stubs.
    pub attachments: bool,
}

/// A location with any password removed, for messages.
pub fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.scheme().starts_with("http") => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        _ => location.to_owned(),
    }
}

/// After `store_in_use`: the holder's database over HTTP if it advertises one, else the
/// error.
fn held_elsewhere(location: &str, err: settee_store::Error) -> Result<Db> {
    if matches!(err, settee_store::Error::StoreInUse { .. }) {
        if let Some(advert) = settee_store::Advert::read(std::path::Path::new(location)) {
            tracing::info!(store = location, url = %advert.url, pid = advert.pid,
                "the store is held by another process; talking to it");
            return Ok(Db::Held(HeldStore::new(location, &advert)?));
        }
    }
    Err(err.into())
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    db: &Database,
    f: impl FnOnce(Database) -> settee_store::Result<R> + Send + 'static,
) -> Result<R> {
    let db = db.clone();
    Ok(tokio::task::spawn_blocking(move || f(db))
        .await
        .map_err(|e| Error::Task(e.to_string()))??)
}

fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// The store options of a replication peer (see [`Db::open_for_replication`]).
fn replication_options(location: &str, create: bool) -> settee_store::OpenOptions {
    settee_store::OpenOptions {
        durability: settee_store::Durability::Relaxed {
            flush_every: std::time::Duration::from_secs(1),
        },
        cache_capacity: 16 * 1024 * 1024,
        create,
        ..settee_store::OpenOptions::new(location)
    }
}

/// Opens a local store; without `opts.create`, a path with no store is [`Error::NoStore`].
fn open_local(location: &str, opts: settee_store::OpenOptions) -> Result<Db> {
    let create = opts.create;
    match Database::open_with(opts) {
        Ok(db) => Ok(Db::Local(db)),
        Err(settee_store::Error::NotFound { .. }) if !create => Err(Error::NoStore {
            path: location.to_owned(),
        }),
        Err(e) => held_elsewhere(location, e),
    }
}

fn rev_arg(rev: &str) -> Result<Rev> {
    Ok(rev.parse::<Rev>()?)
}

impl Db {
    /// Opens a location: `http://` or `https://` URLs are remote databases (credentials from
    /// the URL, or the password from `SETTEE_PASSWORD`), anything else a local store path
    /// (created if missing).
    ///
    /// # Errors
    /// A malformed URL, or the store's open errors (`store_in_use`, `not_a_store`...).
    ///
    /// A store another process holds is reached through that process when it advertises
    /// itself (`settee serve`, `settee sync --continuous`: see [`settee_store::Advert`]):
    /// the result is then a [`Db::Held`], reached through its loopback server.
    pub fn open(location: &str) -> Result<Db> {
        if is_url(location) {
            Ok(Db::Remote(settee_couch::RemoteDb::from_url(location)?))
        } else {
            Database::open(location)
                .map(Db::Local)
                .or_else(|e| held_elsewhere(location, e))
        }
    }

    /// Opens a location that must already hold a database: like [`Db::open`], but a local
    /// path without a store is [`Error::NoStore`] and nothing is created there. For
    /// commands that only read (a read of a new empty store would just answer "nothing").
    ///
    /// # Errors
    /// [`Error::NoStore`]; otherwise as [`Db::open`].
    pub fn open_existing(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(
            location,
            settee_store::OpenOptions {
                create: false,
                ..settee_store::OpenOptions::new(location)
            },
        )
    }

    /// Opens a location for replication: like [`Db::open`], but a local store flushes on an
    /// interval instead of on every write, and keeps a smaller page cache (16 MiB: a
    /// replication streams through the store, and a bigger cache measured no faster while
    /// it raised peak memory). That is safe for
    /// replication: the replicator makes the target durable (`Peer::commit`) before every
    /// checkpoint, so a crash loses at most what the next run fetches again.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open_for_replication(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(location, replication_options(location, true))
    }

    /// Opens a replication source: as [`Db::open_for_replication`], but a local path must
    /// hold a store already ([`Error::NoStore`] otherwise; nothing is created).
    ///
    /// # Errors
    /// As [`Db::open_existing`].
    pub fn open_source_for_replication(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(location, replication_options(location, false))
    }

    /// This database as a replication peer.
    pub fn to_peer(&self) -> AnyPeer {
        match self {
            Db::Local(d) => AnyPeer::Local(d.clone()),
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => AnyPeer::Remote(r.clone()),
        }
    }

    /// Database information, as CouchDB's `GET /db`.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn info(&self) -> Result<Value> {
        match self {
            Db::Local(d) => {
                Ok(serde_json::to_value(blocking(d, |d| d.info()).await?).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                Ok(serde_json::to_value(r.info().await?).unwrap_or_default())
            }
        }
    }

    /// Writes a document (`PUT /db/id`, or `POST /db` without `_id`).
    ///
    /// # Errors
    /// `conflict` on a stale `_rev`, validation errors, the peer's errors.
    pub async fn put(&self, doc: Value) -> Result<Value> {
        match self {
            Db::Local(d) => {
                let res = blocking(d, move |d| d.put(doc)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let id = doc
                    .get("_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Error::BadRequest(
                            "the document needs an _id to be written to a remote database".into(),
                        )
                    })?
                    .to_owned();
                let res = r.put(&id, &doc).await?;
                Ok(json!({"ok": true, "id": res.id, "rev": res.rev}))
            }
        }
    }

    /// Reads a document.
    ///
    /// # Errors
    /// `not_found`, a malformed `rev`, the peer's errors.
    pub async fn get(&self, id: &str, args: &GetArgs) -> Result<Value> {
        match self {
            Db::Local(d) => {
                let opts = GetOptions {
                    rev: args.rev.as_deref().map(rev_arg).transpose()?,
                    revs: args.revs,
                    conflicts: args.conflicts,
                    ..Default::default()
                };
                let id = id.to_owned();
                blocking(d, move |d| d.get(&id, &opts)).await
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::GetOptions {
                    rev: args.rev.as_deref().map(rev_arg).transpose()?,
                    revs: args.revs,
                    conflicts: args.conflicts,
                    ..Default::default()
                };
                Ok(r.get(id, &opts).await?)
            }
        }
    }

    /// Every requested leaf (`open_revs=all` or a JSON list), each `{"ok": doc}` or
    /// `{"missing": rev}`, with `_revisions`.
    ///
    /// # Errors
    /// A malformed list, the peer's errors.
    pub async fn open_revs(&self, id: &str, args: &GetArgs) -> Result<Vec<Value>> {
        let which = args.open_revs.as_deref().unwrap_or("all");
        match self {
            Db::Local(d) => {
                let revs = if which == "all" {
                    OpenRevs::All
                } else {
                    let list: Vec<String> = serde_json::from_str(which).map_err(|e| {
                        Error::BadRequest(format!(
                            "open_revs must be `all` or a JSON array of revs: {e}"
                        ))
                    })?;
                    OpenRevs::Revs(list.iter().map(|r| rev_arg(r)).collect::<Result<_>>()?)
                };
                let opts = GetOptions {
                    revs: true,
                    attachments: args.attachments,
                    ..Default::default()
                };
                let id = id.to_owned();
                let res = blocking(d, move |d| d.open_revs(&id, revs, &opts)).await?;
                Ok(res
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                // GET ?open_revs=all (every leaf), or one GET per listed rev.
                let reqs: Vec<settee_couch::BulkGetRequest> = if which == "all" {
                    vec![settee_couch::BulkGetRequest {
                        id: id.to_owned(),
                        ..Default::default()
                    }]
                } else {
                    let list: Vec<String> = serde_json::from_str(which).map_err(|e| {
                        Error::BadRequest(format!(
                            "open_revs must be `all` or a JSON array of revs: {e}"
                        ))
                    })?;
                    list.iter()
                        .map(|r| {
                            Ok(settee_couch::BulkGetRequest {
                                id: id.to_owned(),
                                rev: Some(rev_arg(r)?),
                                atts_since: Vec::new(),
                            })
                        })
                        .collect::<Result<_>>()?
                };
                let opts = settee_couch::BulkGetOptions {
                    revs: true,
                    latest: false,
                    attachments: args.attachments,
                };
                let mut out = Vec::new();
                for req in &reqs {
                    for d in r.open_revs(req, &opts).await?.docs {
                        out.push(match d {
                            settee_couch::BulkGetDoc::Ok(doc) => json!({"ok": doc}),
                            settee_couch::BulkGetDoc::Missing(rev) => json!({"missing": rev}),
                            settee_couch::BulkGetDoc::Error(e) => json!({"error": e}),
                        });
                    }
                }
                Ok(out)
            }
        }
    }

    /// Deletes a document: `rev`, or the current winner when `None`.
    ///
    /// # Errors
    /// `not_found`, `conflict`, the peer's errors.
    pub async fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value> {
        let rev = match rev {
            Some(r) => r.to_owned(),
            None => {
                let doc = self.get(id, &GetArgs::default()).await?;
                doc.get("_rev")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        match self {
            Db::Local(d) => {
                let rev = rev_arg(&rev)?;
                let id = id.to_owned();
                let res = blocking(d, move |d| d.delete(&id, &rev)).await?;
                Ok(serde_json::to_value(res).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let new = r.delete_doc(id, &rev_arg(&rev)?).await?;
                Ok(json!({"ok": true, "id": id, "rev": new}))
            }
        }
    }

    /// `_all_docs` rows.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn all_docs(&self, include_docs: bool) -> Result<Vec<Value>> {
        match self {
            Db::Local(d) => {
                let opts = AllDocsOptions {
                    include_docs,
                    ..Default::default()
                };
                let all = blocking(d, move |d| d.all_docs(&opts)).await?;
                Ok(all
                    .rows
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::AllDocsOptions {
                    include_docs,
                    ..Default::default()
                };
                Ok(r.all_docs(&opts)
                    .await?
                    .rows
                    .into_iter()
                    .map(|row| serde_json::to_value(row).unwrap_or_default())
                    .collect())
            }
        }
    }

    /// One page of `_changes` after `since` (all of it for a local store), and the sequence
    /// to continue from. With `wait`, an empty answer waits for the next change (longpoll).
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn changes(
        &self,
        since: Option<Seq>,
        include_docs: bool,
        wait: bool,
    ) -> Result<(Vec<Value>, Seq)> {
        match self {
            Db::Local(d) => {
                let since = match &since {
                    None => 0,
                    Some(s) => s.as_local().ok_or_else(|| {
                        Error::BadRequest(format!("{s} is not a sequence of a local store"))
                    })?,
                };
                let opts = ChangesOptions {
                    since,
                    include_docs,
                    ..Default::default()
                };
                let mut page = {
                    let o = opts.clone();
                    blocking(d, move |d| d.changes(&o)).await?
                };
                if page.results.is_empty() && wait {
                    use futures::StreamExt;
                    let mut live = Box::pin(d.live_changes(ChangesOptions {
                        since,
                        ..Default::default()
                    }));
                    live.next().await;
                    page = blocking(d, move |d| d.changes(&opts)).await?;
                }
                let last = Seq::from(page.last_seq);
                Ok((
                    page.results
                        .into_iter()
                        .map(|c| serde_json::to_value(c).unwrap_or_default())
                        .collect(),
                    last,
                ))
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::ChangesOptions {
                    feed: if wait {
                        settee_couch::Feed::Longpoll
                    } else {
                        settee_couch::Feed::Normal
                    },
                    style: settee_couch::ChangesStyle::MainOnly,
                    since,
                    include_docs,
                    ..Default::default()
                };
                let resp = r.changes(&opts).await?;
                Ok((
                    resp.results
                        .into_iter()
                        .map(|c| serde_json::to_value(c).unwrap_or_default())
                        .collect(),
                    resp.last_seq,
                ))
            }
        }
    }

    /// Every conflicted document: `{"id", "winner", "conflicts": [...], "leaves": [...]}`
    /// (leaves with their deletion flag), winner first.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn conflicts(&self) -> Result<Vec<Value>> {
        let rows = match self {
            Db::Local(d) => {
                let opts = AllDocsOptions {
                    include_docs: true,
                    conflicts: true,
                    ..Default::default()
                };
                let all = blocking(d, move |d| d.all_docs(&opts)).await?;
                all.rows
                    .into_iter()
                    .filter_map(|r| r.doc)
                    .collect::<Vec<Value>>()
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::AllDocsOptions {
                    include_docs: true,
                    conflicts: true,
                    ..Default::default()
                };
                r.all_docs(&opts)
                    .await?
                    .rows
                    .into_iter()
                    .filter_map(|row| row.doc)
                    .collect()
            }
        };
        let mut out = Vec::new();
        for doc in rows {
            let Some(conflicts) = doc.get("_conflicts").and_then(Value::as_array) else {
                continue;
            };
            if conflicts.is_empty() {
                continue;
            }
            let id = doc["_id"].as_str().unwrap_or_default().to_owned();
            let mut docs: Vec<Value> = self
                .open_revs(&id, &GetArgs::default())
                .await?
                .into_iter()
                .filter_map(|l| l.get("ok").cloned())
                .collect();
            // Winner first, as CouchDB ranks leaves: live before deleted, then by rev.
            docs.sort_by_key(|d| {
                let deleted = d.get("_deleted").and_then(Value::as_bool).unwrap_or(false);
                let rev = d["_rev"].as_str().and_then(|r| r.parse::<Rev>().ok());
                std::cmp::Reverse((!deleted, rev))
            });
            let leaves = docs
                .into_iter()
                .map(|d| json!({"rev": d["_rev"], "deleted": d.get("_deleted").cloned().unwrap_or(Value::Bool(false))}))
                .collect::<Vec<_>>();
            out.push(json!({
                "id": id,
                "winner": doc["_rev"],
                "conflicts": conflicts,
                "leaves": leaves,
            }));
        }
        Ok(out)
    }

    /// Compacts the database.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn compact(&self) -> Result<Value> {
        match self {
            Db::Local(d) => {
                blocking(d, |d| d.compact()).await?;
                Ok(json!({"ok": true}))
            }
            Db::Remote(r) => Err(Error::BadRequest(format!(
                "compacting {} is the server's job (POST /db/_compact as an admin); settee compacts local stores",
                r.url()
            ))),
            Db::Held(h) => Err(Error::BadRequest(format!(
                "the store {} is held by process {}; compact it when that process has stopped",
                h.path(),
                h.pid()
            ))),
        }
    }
}

/// The sync state of a local store with a remote database: what the store keeps per
/// document, read without a network. A store another process holds ([`Db::Held`]) is
/// asked through that process, which answers with the same code.
impl Db {
    /// Where the sync state is: the store, or the process holding it.
    fn sync_side(&self) -> Result<SyncSide<'_>> {
        match self {
            Db::Local(d) => Ok(SyncSide::Store(d)),
            Db::Held(h) => Ok(SyncSide::Held(h)),
            Db::Remote(r) => Err(Error::BadRequest(format!(
                "{} is a remote database; sync state is kept by a local store (ask the local \
                 store about this remote)",
                r.url()
            ))),
        }
    }

    /// Document `id`'s sync state with `remote`: `Synced`, `Unpushed { revs }`,
    /// `Rejected { rev, error, reason }`, `Conflicted { winner, losers }` or `NotReplicated`
    /// (the filter the pair is synced with excludes it); `None` if the store has no such
    /// document. Offline, and O(1).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), settee::Error> {
    /// let notes = settee::Db::open("notes.settee")?;
    /// let server = settee::Db::open("http://127.0.0.1:5984/notes")?;
    /// if let Some(state) = notes.sync_state(&server, "note:1").await? {
    ///     println!("note:1 is {}", state.name());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `bad_request` when `self` is a remote database; the store's errors; for a store held
    /// by another process, [`Error::Held`] when that process does not answer.
    pub async fn sync_state(&self, remote: &Db, id: &str) -> Result<Option<SyncState>> {
        match self.sync_side()? {
            SyncSide::Store(db) => {
                Ok(settee_replicate::sync_state(db, &remote.to_peer(), id).await?)
            }
            SyncSide::Held(h) => h.sync_state(&remote.to_peer().identity(), id).await,
        }
    }

    /// The documents of this store not known to be on `remote` (that the pair's filter
    /// includes), in id order, each with its state. Offline; the cost is in the number of
    /// unsynced documents, not the store's size.
    ///
    /// # Errors
    /// `bad_request` when `self` is a remote database; the stream's items carry the store's
    /// errors (for a store held by another process, [`Error::Held`] when it does not
    /// answer).
    pub fn unsynced(
        &self,
        remote: &Db,
    ) -> Result<impl Stream<Item = Result<(String, SyncState)>> + Send + 'static> {
        Ok(match self.sync_side()? {
            SyncSide::Store(db) => settee_replicate::unsynced(db, &remote.to_peer())
                .map(|r| r.map_err(Error::from))
                .left_stream(),
            SyncSide::Held(h) => h.unsynced(remote.to_peer().identity()).right_stream(),
        })
    }

    /// A live stream of sync-state changes with `remote`, to bind badges to: a document
    /// becomes `Unpushed` when written, `Synced` when a running sync's push confirms it,
    /// `Rejected` with the server's reason. Each item is a document and its current state
    /// (`None` once it is gone); changes that happen before the stream is read are
    /// coalesced. Offline.
    ///
    /// # Errors
    /// `bad_request` when `self` is a remote database, or a store another process holds
    /// (the stream is that process's to watch).
    pub fn sync_state_changes(
        &self,
        remote: &Db,
    ) -> Result<impl Stream<Item = Result<(String, Option<SyncState>)>> + Send + 'static> {
        let db = match self.sync_side()? {
            SyncSide::Store(db) => db,
            SyncSide::Held(h) => {
                return Err(Error::BadRequest(format!(
                    "the store {} is held by process {}; its live sync-state changes are \
                     watched in that process",
                    h.path(),
                    h.pid()
                )))
            }
        };
        Ok(settee_replicate::sync_state_changes(db, &remote.to_peer())
            .map(|r| r.map_err(Error::from)))
    }

    /// The counts of [`status`] that need no network: unpushed, rejected and filtered-out
    /// documents, and the last push and pull.
    ///
    /// # Errors
    /// `bad_request` when `self` is a remote database; the store's errors; for a store held
    /// by another process, [`Error::Held`] when that process does not answer.
    pub async fn sync_status(&self, remote: &Db) -> Result<SyncStatus> {
        match self.sync_side()? {
            SyncSide::Store(db) => Ok(settee_replicate::status(db, &remote.to_peer()).await?),
            SyncSide::Held(h) => h.sync_status(&remote.to_peer().identity()).await,
        }
    }
}

/// Where a local store's sync state is read.
enum SyncSide<'a> {
    /// The store, open here.
    Store(&'a Database),
    /// The process that holds it.
    Held(&'a HeldStore),
}

/// What `settee status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The offline part: unpushed, rejected and filtered-out documents, the last syncs.
    #[serde(flatten)]
    pub local: SyncStatus,
    /// Documents the remote has revisions of that the store lacks, after the last pull;
    /// `None` when the remote did not answer.
    pub unpulled: Option<u64>,
    /// Why `unpulled` is missing: the count needs the server, and asking it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpulled_error: Option<String>,
}

/// What is not synced between a local store and a remote database: the exact offline
/// counts, and the remote's unpulled count when the server answers (otherwise
/// `unpulled_error` says why it is unknown). For a store another process holds, that
/// process answers the offline part; this process asks the remote.
///
/// # Errors
/// `bad_request` when `local` is not a local store; the local store's errors; for a store
/// held by another process, [`Error::Held`] when that process does not answer.
pub async fn status(local: &Db, remote: &Db) -> Result<Status> {
    let st = local.sync_status(remote).await?;
    // One attempt: offline, say so at once rather than after the client's retries.
    let remote = match remote {
        Db::Remote(r) => Db::Remote(r.with_retry(settee_couch::RetryPolicy::none())),
        other => other.clone(),
    };
    let counted = match local.sync_side()? {
        SyncSide::Store(db) => settee_replicate::unpulled(db, &remote.to_peer()).await,
        SyncSide::Held(h) => {
            // Where to start is the holder's to say; the changes are the remote's, and
            // which of them the store lacks the holder's again (`_revs_diff`).
            let from = h.pull_since(&remote.to_peer().identity()).await?;
            let store = AnyPeer::Remote(h.asked().clone());
            settee_replicate::unpulled_since(&store, &remote.to_peer(), &from).await
        }
    };
    let (unpulled, unpulled_error) = match counted {
        Ok(n) => (Some(n), None),
        Err(e) => (
            None,
            Some(format!(
                "unknown: counting what the remote has needs the server ({})",
                settee_replicate::error_chain(&e)
            )),
        ),
    };
    Ok(Status {
        local: st,
        unpulled,
        unpulled_error,
    })
}
