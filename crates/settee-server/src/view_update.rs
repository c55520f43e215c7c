//! Bringing a view's on-disk index (`settee_store::ViewIndex`) up to date: the documents
//! changed since the index's seq are read from the store's changes feed and mapped again,
//! one step at a time, each step one atomic index write that moves the index's seq. A
//! deleted document's rows go; design documents have none. What the index holds and how it
//! is read is the store's (`view_index/`); answering a query from it is `view.rs`'s.
//!
//! Only the changed documents are mapped: after one write to a database of any size, the
//! next query maps one document. A purge since the index was started (the changes feed no
//! longer shows what it removed) or an index ahead of the database (a store replaced under
//! the same name) empties the index, which is then built again from seq 0.

use serde_json::Value;
use settee_js::{Function, Lease};
use settee_store::{ChangesOptions, Database, ViewDocRows, ViewIndex};

use crate::error::HttpError;
use crate::js;
use crate::view_rows::ViewDef;

/// Documents read from the changes feed and written to the index in one step: the unit a
/// crash can lose (it is redone), and what one step holds in memory (the documents and their
/// rows).
const STEP_DOCS: usize = 2_000;
/// Documents sent to a worker in one map request, at most: few enough that a batch is
/// answered while the next is read from the store, many enough that the per-request cost
/// (a pipe round trip) disappears.
const MAP_BATCH_DOCS: usize = 500;
/// Bytes of documents in one map request, at most (a batch of large documents is cut
/// short of `MAP_BATCH_DOCS`).
const MAP_BATCH_BYTES: usize = 4 << 20;

/// Brings `index`, the index of view `view` of `def`, up to date with the database: every
/// document changed since its seq is mapped again. Another query updating the same index
/// at the same time is harmless: the index refuses a step that does not start at its seq,
/// and this one reads the feed again from where the other left it.
///
/// A document the map function throws on has no rows (logged); running out of time or
/// memory, a value too deep, or a failed worker fails the update (CouchDB's
/// `os_process_error`), leaving the index at its last whole step.
pub(crate) fn update(
    db: &Database,
    js: &js::Js,
    view: &str,
    def: &ViewDef,
    index: &ViewIndex,
) -> Result<(), HttpError> {
    let mut mapper: Option<Mapper> = None;
    loop {
        let info = db.info()?;
        let purge_seq = info.purge_seq.unwrap_or(0);
        let state = index.state()?;
        if state.is_clearing() || state.purge_seq != purge_seq || state.seq > info.update_seq {
            index.reset(purge_seq)?;
            continue;
        }
        if state.seq >= info.update_seq {
            return Ok(());
        }
        let changes = db.changes(&ChangesOptions {
            since: state.seq,
            limit: Some(STEP_DOCS),
            include_docs: true,
            // CouchDB's indexer gives map functions `_conflicts`.
            conflicts: true,
            skip_pending: true,
            ..Default::default()
        })?;
        // A page the limit did not cut shows every document written up to the update seq
        // read before it, even when the last of those seqs are stale entries it skips.
        let to_seq = if changes.results.len() < STEP_DOCS {
            changes.last_seq.max(info.update_seq)
        } else {
            changes.last_seq
        };
        let mut docs: Vec<ViewDocRows> = Vec::with_capacity(changes.results.len());
        let mut live: Vec<(String, Value)> = Vec::new();
        for change in changes.results {
            if change.id.starts_with("_design/") {
                continue;
            }
            match change.doc {
                Some(doc) if !change.deleted && !doc.is_null() => live.push((change.id, doc)),
                _ => docs.push((change.id, Vec::new())),
            }
        }
        if !live.is_empty() {
            let m = match &mut mapper {
                Some(m) => m,
                None => mapper.insert(Mapper::new(js, view, def)?),
            };
            m.map_all(def, live, &mut docs)?;
        }
        // `false`: another query moved the index meanwhile; read on from where it is.
        index.update(state.seq, docs, to_seq)?;
    }
}

/// A map function and the worker lease it runs on, for one update.
struct Mapper {
    function: Function,
    lease: Lease,
}

impl Mapper {
    fn new(js: &js::Js, view: &str, def: &ViewDef) -> Result<Mapper, HttpError> {
        Ok(Mapper {
            function: Function::new(
                format!("{} views.{view}.map", def.ddoc_id),
                def.map.as_str(),
                &def.modules,
            ),
            lease: js.lease(&def.scope)?,
        })
    }

    /// Maps `docs` in batches and adds each document's rows to `out`.
    fn map_all(
        &mut self,
        def: &ViewDef,
        docs: Vec<(String, Value)>,
        out: &mut Vec<ViewDocRows>,
    ) -> Result<(), HttpError> {
        let mut ids: Vec<String> = Vec::new();
        let mut batch: Vec<Value> = Vec::new();
        let mut bytes = 0;
        for (id, doc) in docs {
            bytes += json_len(&doc);
            ids.push(id);
            batch.push(doc);
            if batch.len() >= MAP_BATCH_DOCS || bytes >= MAP_BATCH_BYTES {
                self.map_batch(def, &mut ids, &mut batch, out)?;
                bytes = 0;
            }
        }
        self.map_batch(def, &mut ids, &mut batch, out)
    }

    /// Maps one batch (emptying it) and adds its documents' rows.
    fn map_batch(
        &mut self,
        def: &ViewDef,
        ids: &mut Vec<String>,
        batch: &mut Vec<Value>,
        out: &mut Vec<ViewDocRows>,
    ) -> Result<(), HttpError> {
        if batch.is_empty() {
            return Ok(());
        }
        let results = self
            .lease
            .map(&def.scope, &self.function, batch)
            .map_err(js::js_error)?;
        if results.len() != ids.len() {
            return Err(HttpError::internal(format!(
                "a JavaScript worker mapped {} documents of {}",
                results.len(),
                ids.len()
            )));
        }
        for (id, result) in ids.drain(..).zip(results) {
            match result {
                Ok(emitted) => out.push((id, emitted)),
                Err(e) => {
                    tracing::warn!(doc = %id, error = %e, "a map function failed on a document; it has no rows in the view");
                    out.push((id, Vec::new()));
                }
            }
        }
        batch.clear();
        Ok(())
    }
}

/// The length of a value's JSON text (without keeping the text).
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, nor can serialising a `Value`.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}
