//! The random steps of a sequence: edits, deletions and conflicting branches on either
//! side, syncs (unfiltered, with a selector, with doc ids), a sync cut short in-process by
//! [`Crashing`], reopening and compacting the store. What holds after each step is
//! `model.rs`'s to check.

#[allow(unused_imports)]
use settee::Documents as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};
use settee::replicate::{DocFailure, Filter, ReplicateOptions, Selector};
use settee::store::Database;
use settee::store::GetOptions;
use settee::Rev;
use settee_testkit::peer::{Wrap, Wrapped};

use crate::model::{Sequence, DOCS};

/// The local store as a peer whose sync-state hook fails after `allow` calls without
/// recording anything: a process that died after the remote took a push, before the store
/// heard back. Every other call is the store's.
#[derive(Clone)]
struct Crashing {
    db: Database,
    allow: Arc<AtomicUsize>,
}

impl Wrap for Crashing {
    type Inner = Database;
    fn inner(&self) -> &Database {
        &self.db
    }
    async fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> settee::replicate::Result<()> {
        let left = self.allow.load(Ordering::SeqCst);
        if left == 0 {
            return Err(settee::replicate::Error::BadRequest {
                reason: "simulated crash".into(),
            });
        }
        self.allow.store(left - 1, Ordering::SeqCst);
        settee::replicate::Peer::record_peer_revs(&self.db, other, held, rejected).await
    }
}

/// A replicated revision's new attachments carry the revision's position as their `revpos`,
/// as a replicator sends them (CouchDB stores a missing one as 0, which makes every later
/// `atts_since` turn the attachment into a stub).
fn set_revpos(doc: &mut Value, pos: u64) {
    if let Some(atts) = doc.get_mut("_attachments").and_then(Value::as_object_mut) {
        for a in atts.values_mut() {
            a["revpos"] = json!(pos);
        }
    }
}

fn parse_rev(v: &Value) -> Rev {
    v.as_str().unwrap().parse().unwrap()
}

impl Sequence {
    pub(crate) fn id(&mut self) -> String {
        format!("d{}", self.rng.gen_range(0..DOCS))
    }

    pub(crate) fn body(&mut self, allow_bad: bool) -> Value {
        let kind = if self.rng.gen_bool(0.5) { "a" } else { "b" };
        let mut body = json!({"kind": kind, "n": self.rng.gen::<u32>()});
        if allow_bad && self.rng.gen_bool(0.2) {
            body["bad"] = json!(true);
        }
        if self.rng.gen_bool(0.15) {
            let bytes: Vec<u8> = (0..self.rng.gen_range(1..300))
                .map(|_| self.rng.gen())
                .collect();
            body["_attachments"] = json!({"f.bin": {"content_type": "application/octet-stream",
                "data": base64::engine::general_purpose::STANDARD.encode(bytes)}});
        }
        body
    }

    pub(crate) fn new_hash(&mut self) -> String {
        self.hash += 1;
        format!("{:016x}{:016x}", self.seed, self.hash)
    }

    /// A new revision of `id` written as if replicated from elsewhere: a child of `parent`
    /// (a new root without one), with a random body, logged as a `side` branch.
    fn branch(&mut self, id: &str, parent: Option<&Rev>, allow_bad: bool, side: &str) -> Value {
        let h = self.new_hash();
        let mut doc = self.body(allow_bad);
        let (start, ids) = match parent {
            Some(p) => (p.pos() + 1, json!([h, p.hash()])),
            None => (1, json!([h])),
        };
        doc["_id"] = json!(id);
        doc["_rev"] = json!(format!("{start}-{h}"));
        doc["_revisions"] = json!({"start": start, "ids": ids});
        set_revpos(&mut doc, start);
        self.log.push(format!("{side} branch {id} {start}-{h}"));
        doc
    }

    pub(crate) async fn sync(&mut self, filter: Filter, crash_after: Option<usize>) -> bool {
        self.filter = filter.clone();
        let opts = ReplicateOptions {
            filter,
            batch_size: self.rng.gen_range(1..8),
            ..Default::default()
        };
        let db = self.db().clone();
        let result = match crash_after {
            None => {
                settee::replicate::sync(db, self.remote.clone(), opts, None, Default::default())
                    .await
            }
            Some(n) => {
                let peer = Wrapped(Crashing {
                    db,
                    allow: Arc::new(AtomicUsize::new(n)),
                });
                settee::replicate::sync(peer, self.remote.clone(), opts, None, Default::default())
                    .await
            }
        };
        match (result, crash_after) {
            (Ok(_), _) => true,
            (Err(e), Some(_)) if settee::replicate::error_chain(&e).contains("simulated crash") => {
                false
            }
            (Err(e), _) => self.fail(format!(
                "sync failed: {}",
                settee::replicate::error_chain(&e)
            )),
        }
    }

    /// The server's winning revision of `id`, `None` when it has none (404, deleted
    /// included). Any other error fails the test with its message: taken for "none", it
    /// made the following edit a 409.
    pub(crate) async fn server_winner(&self, id: &str) -> Option<Value> {
        match self.remote.get(id, &Default::default()).await {
            Ok(doc) => Some(doc),
            Err(e) if e.is_not_found() => None,
            Err(e) => self.fail(format!("reading {id} from the server: {e}")),
        }
    }

    pub(crate) async fn step(&mut self) {
        let op = self.rng.gen_range(0..14);
        self.step_op(op).await;
    }

    /// Step `op`: 0..=8 edit one side (local edits, deletions and branches, then the
    /// server's), 9..=11 sync, 12 a sync cut short in-process, 13 a reopen or compaction.
    pub(crate) async fn step_op(&mut self, op: u32) {
        let id = self.id();
        let local = self.db().get(id.as_str(), &GetOptions::default()).ok();
        match op {
            0..=2 => {
                let mut doc = self.body(true);
                doc["_id"] = json!(id);
                if self.rng.gen_bool(0.3) {
                    // Fix a bad document, or make one.
                    doc["bad"] = json!(self.rng.gen_bool(0.3));
                }
                if let Some(cur) = &local {
                    doc["_rev"] = cur["_rev"].clone();
                }
                self.log.push(format!("local edit {id} {doc}"));
                self.db().put(doc).unwrap();
            }
            3 => {
                if let Some(cur) = local {
                    self.log.push(format!("local delete {id}"));
                    self.db().delete(&id, &parse_rev(&cur["_rev"])).unwrap();
                }
            }
            4 => {
                // A conflicting branch, as if replicated from elsewhere (no origin).
                let leaves = self.local_leaves().get(&id).cloned().unwrap_or_default();
                let doc = self.branch(&id, leaves.first(), true, "local");
                let res = self.db().bulk_docs(vec![doc], false).unwrap();
                assert!(res[0].is_ok(), "{res:?}");
            }
            5..=6 => {
                let mut doc = self.body(false);
                doc["_id"] = json!(id);
                self.log.push(format!("server edit {id}"));
                // A write the previous step's cut-short sync had already sent can land on
                // the server after it ended (an interrupted client's request is still
                // processed), between the read of the winner and this edit: a 409 then
                // means "read it again", as for any client racing another.
                let mut tries = 0;
                loop {
                    match self.server_winner(&id).await {
                        Some(cur) => doc["_rev"] = cur["_rev"].clone(),
                        None => {
                            if let Some(m) = doc.as_object_mut() {
                                m.remove("_rev");
                            }
                        }
                    }
                    match self.remote.put(&id, &doc).await {
                        Ok(_) => break,
                        Err(e) if e.status() == Some(409) && tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        Err(e) => self.fail(format!("server edit of {id}: {e}")),
                    }
                }
            }
            7 => {
                if let Some(cur) = self.server_winner(&id).await {
                    self.log.push(format!("server delete {id}"));
                    self.remote
                        .delete_doc(&id, &parse_rev(&cur["_rev"]))
                        .await
                        .unwrap();
                }
            }
            8 => {
                let parent = self.server_winner(&id).await.map(|d| parse_rev(&d["_rev"]));
                let doc = self.branch(&id, parent.as_ref(), false, "server");
                let res = self.remote.bulk_docs(&[doc], false).await.unwrap();
                assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
            }
            9..=11 => {
                let filter = match self.rng.gen_range(0..10) {
                    0..=5 => Filter::All,
                    6 | 7 => Filter::Selector(Selector::parse(&json!({"kind": "a"})).unwrap()),
                    _ => Filter::DocIds(
                        (0..DOCS)
                            .filter(|_| self.rng.gen_bool(0.5))
                            .map(|i| format!("d{i}"))
                            .collect(),
                    ),
                };
                self.log.push(format!("sync {:?}", filter.to_json()));
                self.sync(filter.clone(), None).await;
                if filter == Filter::All {
                    self.suspect = false;
                }
            }
            12 => {
                let n = self.rng.gen_range(0..3);
                self.log
                    .push(format!("sync that crashes after {n} records, reopen"));
                let completed = self.sync(Filter::All, Some(n)).await;
                // A crash before the end may have lost confirmations: the store may list more
                // than the oracle until the next unfiltered sync.
                self.suspect = !completed;
                self.reopen();
            }
            _ => {
                if self.rng.gen_bool(0.5) {
                    self.log.push("reopen".into());
                    self.reopen();
                } else {
                    self.log.push("compact".into());
                    self.db().compact().unwrap();
                }
            }
        }
    }
}
