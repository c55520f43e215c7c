//! `AnyPeer`: a local store or a remote database, chosen at run time from a path or a URL,
//! so one replication type serves every pair (push, pull, remote to remote, local to local).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;
use settee_couch::RemoteDb;
use settee_revtree::{Rev, RevsDiff, Seq};
use settee_store::Database;

use crate::peer::{
    ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer, PeerInfo, Role,
};
use crate::{Error, Result};

/// Either kind of peer.
#[derive(Debug, Clone)]
pub enum AnyPeer {
    /// A local store.
    Local(Database),
    /// A CouchDB database over HTTP.
    Remote(RemoteDb),
}

impl AnyPeer {
    /// Opens `http://`/`https://` URLs as remote databases and anything else as a local store
    /// path (created if missing).
    ///
    /// # Errors
    /// A malformed URL, or the store's open errors.
    pub fn open(location: &str) -> Result<AnyPeer> {
        if location.starts_with("http://") || location.starts_with("https://") {
            RemoteDb::from_url(location)
                .map(AnyPeer::Remote)
                .map_err(Error::Couch)
        } else {
            Database::open(location)
                .map(AnyPeer::Local)
                .map_err(|source| Error::Store {
                    path: location.to_owned(),
                    source,
                })
        }
    }
}

macro_rules! both {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyPeer::Local($p) => $e,
            AnyPeer::Remote($p) => $e,
        }
    };
}

// The signatures below are the `Peer` trait's own, as every implementer must write them out
// (`duplicates` pairs them with `peer_store.rs`'s, e.g. `track_peer`, `record_peer_revs`); the
// logic they share, picking the peer, is `both!`. Generating the impl with a macro would hide
// the trait's methods from a reader of this file and save no logic, so they stay.
impl Peer for AnyPeer {
    fn describe(&self) -> String {
        both!(self, p => Peer::describe(p))
    }

    fn identity(&self) -> String {
        both!(self, p => Peer::identity(p))
    }

    fn address(&self) -> String {
        both!(self, p => Peer::address(p))
    }

    fn is_local(&self) -> bool {
        matches!(self, AnyPeer::Local(_))
    }

    async fn learn_identity(&self) -> Result<()> {
        both!(self, p => Peer::learn_identity(p).await)
    }

    async fn peer_renamed(
        &self,
        other: &str,
        address: &str,
        old_rep_id: &str,
        rep_id: &str,
    ) -> Result<()> {
        both!(self, p => Peer::peer_renamed(p, other, address, old_rep_id, rep_id).await)
    }

    async fn info(&self) -> Result<PeerInfo> {
        both!(self, p => Peer::info(p).await)
    }

    async fn probe(&self) -> Result<()> {
        both!(self, p => Peer::probe(p).await)
    }

    async fn create(&self) -> Result<()> {
        both!(self, p => Peer::create(p).await)
    }

    async fn changes(&self, req: &ChangesRequest) -> Result<ChangesBatch> {
        both!(self, p => Peer::changes(p, req).await)
    }

    async fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        both!(self, p => Peer::revs_diff(p, revs).await)
    }

    async fn fetch(&self, reqs: Vec<FetchRequest>, max_bytes: u64) -> Result<Vec<Fetched>> {
        both!(self, p => Peer::fetch(p, reqs, max_bytes).await)
    }

    async fn fetch_streamed(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> Result<Vec<Fetched>> {
        both!(self, p => Peer::fetch_streamed(p, reqs, max_bytes).await)
    }

    async fn attachment_body(
        &self,
        id: &str,
        rev: &Rev,
        name: &str,
    ) -> Result<settee_couch::AttachmentBody> {
        both!(self, p => Peer::attachment_body(p, id, rev, name).await)
    }

    async fn pull_streamed(
        &self,
        reqs: Vec<FetchRequest>,
    ) -> Result<Option<settee_couch::MultipartDocs>> {
        both!(self, p => Peer::pull_streamed(p, reqs).await)
    }

    fn pulls_streamed(&self) -> bool {
        both!(self, p => Peer::pulls_streamed(p))
    }

    fn takes_streamed(&self) -> bool {
        both!(self, p => Peer::takes_streamed(p))
    }

    async fn write_streamed(
        &self,
        doc: Box<RawValue>,
        attachments: Vec<settee_couch::AttachmentUpload>,
        origin: &str,
    ) -> Result<Vec<DocFailure>> {
        both!(self, p => Peer::write_streamed(p, doc, attachments, origin).await)
    }

    async fn filter_code(&self, name: &str) -> Result<String> {
        both!(self, p => Peer::filter_code(p, name).await)
    }

    async fn write(&self, docs: Vec<Box<RawValue>>, origin: &str) -> Result<Vec<DocFailure>> {
        both!(self, p => Peer::write(p, docs, origin).await)
    }

    async fn held_as_ancestors(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, Vec<Rev>>> {
        both!(self, p => Peer::held_as_ancestors(p, revs).await)
    }

    async fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> Result<()> {
        both!(self, p => Peer::track_peer(p, other, role, filter, rep_id).await)
    }

    async fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> Result<()> {
        both!(self, p => Peer::record_peer_revs(p, other, held, rejected).await)
    }

    async fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> Result<()> {
        both!(self, p => Peer::record_peer_lacks(p, other, lacking).await)
    }

    async fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> Result<()> {
        both!(self, p => Peer::record_failures_from(p, other, listed, failed).await)
    }

    async fn failures_from(&self, other: &str) -> Result<Vec<DocFailure>> {
        both!(self, p => Peer::failures_from(p, other).await)
    }

    async fn refused_by(&self, other: &str) -> Result<Vec<DocFailure>> {
        both!(self, p => Peer::refused_by(p, other).await)
    }

    async fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, Vec<Rev>>> {
        both!(self, p => Peer::not_held_by(p, other, revs).await)
    }

    async fn peer_holds_nothing(&self, other: &str) -> Result<()> {
        both!(self, p => Peer::peer_holds_nothing(p, other).await)
    }

    async fn caught_up(&self, other: &str, role: Role, at: &str) -> Result<()> {
        both!(self, p => Peer::caught_up(p, other, role, at).await)
    }

    async fn commit(&self) -> Result<()> {
        both!(self, p => Peer::commit(p).await)
    }

    async fn get_local(&self, id: &str) -> Result<Option<Value>> {
        both!(self, p => Peer::get_local(p, id).await)
    }

    async fn put_local(&self, id: &str, doc: Value) -> Result<String> {
        both!(self, p => Peer::put_local(p, id, doc).await)
    }

    async fn pending_since(&self, since: &Seq) -> Option<u64> {
        both!(self, p => Peer::pending_since(p, since).await)
    }
}
