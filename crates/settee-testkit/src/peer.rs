//! A peer that passes every call on to another: a test wraps a store or a remote database
//! in it and overrides only the calls it watches or breaks (counting `_revs_diff`, failing
//! a checkpoint write, holding a write until the test lets it go). Whether to wrap, and
//! what a wrapper does, is the test's; this module only spares each one the delegations.
//!
//! A wrapper implements [`Wrap`] (its [`Wrap::inner`] peer and the calls it changes; every
//! other call has a default that delegates), and [`Wrapped`] makes it a [`Peer`]. The
//! orphan rule is why there are two: the kit cannot implement `Peer` for every `Wrap`.
//!
//! ```
//! use settee_testkit::peer::{Wrap, Wrapped};
//! use settee_replicate::Peer;
//!
//! /// A store that says it is somewhere else.
//! #[derive(Clone)]
//! struct Elsewhere(settee_store::Database);
//!
//! impl Wrap for Elsewhere {
//!     type Inner = settee_store::Database;
//!     fn inner(&self) -> &settee_store::Database {
//!         &self.0
//!     }
//!     fn describe(&self) -> String {
//!         "elsewhere".into()
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let peer = Wrapped(Elsewhere(settee_store::Database::open(dir.path().join("db"))?));
//! assert_eq!(peer.describe(), "elsewhere");
//! assert_eq!(peer.identity(), Peer::identity(&peer.0 .0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::value::RawValue;
use serde_json::Value;
use settee_replicate::{
    ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer, PeerInfo,
    Result, Role,
};
use settee_revtree::{Rev, RevsDiff, Seq};

/// A test's wrapper around a peer: each method is [`Peer`]'s, and its default passes the
/// call on to [`Wrap::inner`]. Override the ones the test changes; wrap the value in
/// [`Wrapped`] to use it as a peer.
pub trait Wrap: Clone + Send + Sync + 'static {
    /// The peer the calls go to.
    type Inner: Peer;

    /// The wrapped peer.
    fn inner(&self) -> &Self::Inner;

    /// [`Peer::describe`].
    fn describe(&self) -> String {
        self.inner().describe()
    }
    /// [`Peer::identity`].
    fn identity(&self) -> String {
        self.inner().identity()
    }
    /// [`Peer::address`].
    fn address(&self) -> String {
        self.inner().address()
    }
    /// [`Peer::is_local`].
    fn is_local(&self) -> bool {
        self.inner().is_local()
    }
    /// [`Peer::learn_identity`].
    fn learn_identity(&self) -> impl Future<Output = Result<()>> + Send {
        self.inner().learn_identity()
    }
    /// [`Peer::info`].
    fn info(&self) -> impl Future<Output = Result<PeerInfo>> + Send {
        self.inner().info()
    }
    /// [`Peer::probe`].
    fn probe(&self) -> impl Future<Output = Result<()>> + Send {
        self.inner().probe()
    }
    /// [`Peer::create`].
    fn create(&self) -> impl Future<Output = Result<()>> + Send {
        self.inner().create()
    }
    /// [`Peer::changes`].
    fn changes(&self, req: &ChangesRequest) -> impl Future<Output = Result<ChangesBatch>> + Send {
        self.inner().changes(req)
    }
    /// [`Peer::revs_diff`].
    fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, RevsDiff>>> + Send {
        self.inner().revs_diff(revs)
    }
    /// [`Peer::fetch`].
    fn fetch(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<Fetched>>> + Send {
        self.inner().fetch(reqs, max_bytes)
    }
    /// [`Peer::filter_code`].
    fn filter_code(&self, name: &str) -> impl Future<Output = Result<String>> + Send {
        self.inner().filter_code(name)
    }
    /// [`Peer::write`].
    fn write(
        &self,
        docs: Vec<Box<RawValue>>,
        origin: &str,
    ) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.inner().write(docs, origin)
    }
    /// [`Peer::peer_renamed`].
    fn peer_renamed(
        &self,
        other: &str,
        address: &str,
        old_rep_id: &str,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner()
            .peer_renamed(other, address, old_rep_id, rep_id)
    }
    /// [`Peer::track_peer`].
    fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner().track_peer(other, role, filter, rep_id)
    }
    /// [`Peer::record_peer_revs`].
    fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner().record_peer_revs(other, held, rejected)
    }
    /// [`Peer::record_peer_lacks`].
    fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner().record_peer_lacks(other, lacking)
    }
    /// [`Peer::record_failures_from`].
    fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner().record_failures_from(other, listed, failed)
    }
    /// [`Peer::failures_from`].
    fn failures_from(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.inner().failures_from(other)
    }
    /// [`Peer::refused_by`].
    fn refused_by(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.inner().refused_by(other)
    }
    /// [`Peer::not_held_by`].
    fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        self.inner().not_held_by(other, revs)
    }
    /// [`Peer::held_as_ancestors`].
    fn held_as_ancestors(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        self.inner().held_as_ancestors(revs)
    }
    /// [`Peer::peer_holds_nothing`].
    fn peer_holds_nothing(&self, other: &str) -> impl Future<Output = Result<()>> + Send {
        self.inner().peer_holds_nothing(other)
    }
    /// [`Peer::caught_up`].
    fn caught_up(
        &self,
        other: &str,
        role: Role,
        at: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner().caught_up(other, role, at)
    }
    /// [`Peer::commit`].
    fn commit(&self) -> impl Future<Output = Result<()>> + Send {
        self.inner().commit()
    }
    /// [`Peer::get_local`].
    fn get_local(&self, id: &str) -> impl Future<Output = Result<Option<Value>>> + Send {
        self.inner().get_local(id)
    }
    /// [`Peer::put_local`].
    fn put_local(&self, id: &str, doc: Value) -> impl Future<Output = Result<String>> + Send {
        self.inner().put_local(id, doc)
    }
    /// [`Peer::pending_since`].
    fn pending_since(&self, since: &Seq) -> impl Future<Output = Option<u64>> + Send {
        self.inner().pending_since(since)
    }
}

/// A [`Wrap`] as a [`Peer`]. It derefs to the wrapper, so a test reads its counters
/// through it.
#[derive(Debug, Clone)]
pub struct Wrapped<W>(pub W);

impl<W> std::ops::Deref for Wrapped<W> {
    type Target = W;
    fn deref(&self) -> &W {
        &self.0
    }
}

impl<W: Wrap> Peer for Wrapped<W> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn identity(&self) -> String {
        self.0.identity()
    }
    fn address(&self) -> String {
        self.0.address()
    }
    fn is_local(&self) -> bool {
        self.0.is_local()
    }
    fn learn_identity(&self) -> impl Future<Output = Result<()>> + Send {
        self.0.learn_identity()
    }
    fn info(&self) -> impl Future<Output = Result<PeerInfo>> + Send {
        self.0.info()
    }
    fn probe(&self) -> impl Future<Output = Result<()>> + Send {
        self.0.probe()
    }
    fn create(&self) -> impl Future<Output = Result<()>> + Send {
        self.0.create()
    }
    fn changes(&self, req: &ChangesRequest) -> impl Future<Output = Result<ChangesBatch>> + Send {
        self.0.changes(req)
    }
    fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, RevsDiff>>> + Send {
        self.0.revs_diff(revs)
    }
    fn fetch(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<Fetched>>> + Send {
        self.0.fetch(reqs, max_bytes)
    }
    fn filter_code(&self, name: &str) -> impl Future<Output = Result<String>> + Send {
        self.0.filter_code(name)
    }
    fn write(
        &self,
        docs: Vec<Box<RawValue>>,
        origin: &str,
    ) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.0.write(docs, origin)
    }
    fn peer_renamed(
        &self,
        other: &str,
        address: &str,
        old_rep_id: &str,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.peer_renamed(other, address, old_rep_id, rep_id)
    }
    fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.track_peer(other, role, filter, rep_id)
    }
    fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.record_peer_revs(other, held, rejected)
    }
    fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.record_peer_lacks(other, lacking)
    }
    fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.record_failures_from(other, listed, failed)
    }
    fn failures_from(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.0.failures_from(other)
    }
    fn refused_by(&self, other: &str) -> impl Future<Output = Result<Vec<DocFailure>>> + Send {
        self.0.refused_by(other)
    }
    fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        self.0.not_held_by(other, revs)
    }
    fn held_as_ancestors(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<Rev>>>> + Send {
        self.0.held_as_ancestors(revs)
    }
    fn peer_holds_nothing(&self, other: &str) -> impl Future<Output = Result<()>> + Send {
        self.0.peer_holds_nothing(other)
    }
    fn caught_up(
        &self,
        other: &str,
        role: Role,
        at: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        self.0.caught_up(other, role, at)
    }
    fn commit(&self) -> impl Future<Output = Result<()>> + Send {
        self.0.commit()
    }
    fn get_local(&self, id: &str) -> impl Future<Output = Result<Option<Value>>> + Send {
        self.0.get_local(id)
    }
    fn put_local(&self, id: &str, doc: Value) -> impl Future<Output = Result<String>> + Send {
        self.0.put_local(id, doc)
    }
    fn pending_since(&self, since: &Seq) -> impl Future<Output = Option<u64>> + Send {
        self.0.pending_since(since)
    }
}
