//! Building an index: the documents in id order, in batches that each record how far the
//! build got, so that a crash resumes it.

use super::catalog::{indexed_doc, partial_doc, BuildState};
use crate::index_blocks;
use crate::keys::{self, DocHeader};
use crate::{Database, Error, Result};

/// Documents indexed per batch while building: bounds the batch's memory (about 100 bytes an
/// entry) and how long a build holds the writer lock at a time.
const BUILD_BATCH: usize = 10_000;

/// How far an index build is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProgress {
    /// The index's design document.
    pub ddoc: String,
    /// The index's name.
    pub name: String,
    /// Documents read so far.
    pub done: u64,
    /// Documents in the store (live and deleted) when the build started.
    pub total: u64,
}

impl Database {
    /// Builds index `number` to the end (nothing if it is ready), in batches, reporting
    /// progress after each.
    pub(crate) fn build_index(
        &self,
        number: u32,
        progress: &mut dyn FnMut(&IndexProgress),
    ) -> Result<()> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let mut done = 0u64;
        loop {
            let mut guard = inner.lock_writer();
            let catalog = inner.indexes.current();
            // Dropped meanwhile: nothing to build.
            let Some(pos) = catalog.position(number) else {
                return Ok(());
            };
            let entry = &catalog.entries[pos];
            let total = guard.doc_count.saturating_add(guard.doc_del_count);
            let mut report = IndexProgress {
                ddoc: entry.def.ddoc.clone(),
                name: entry.def.name.clone(),
                done,
                total,
            };
            let after = match &entry.state {
                BuildState::Ready => {
                    report.done = report.done.max(total);
                    progress(&report);
                    return Ok(());
                }
                BuildState::Building { after } => after.clone(),
            };
            let start = match &after {
                Some(a) => {
                    let mut k = keys::doc_key(a);
                    k.push(0);
                    k
                }
                None => vec![keys::DOC],
            };
            let names: Option<Vec<&str>> = entry.def.partial_filter_selector.is_none().then(|| {
                entry
                    .def
                    .fields
                    .iter()
                    .filter_map(|f| f.path.segments().first().map(String::as_str))
                    .collect()
            });
            let mut batch = sled::Batch::default();
            let mut entries: Vec<(Vec<u8>, bool)> = Vec::new();
            let mut n = 0;
            let mut last: Option<String> = None;
            for item in inner.tree.range(start..vec![keys::DOC + 1]) {
                let (k, v) = item.map_err(storage)?;
                let id = std::str::from_utf8(&k[1..])
                    .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
                n += 1;
                if !id.starts_with("_design/") {
                    let (header, body) = DocHeader::decode_with_body(id, &v)?;
                    let rev = header.winner.to_string();
                    let doc = match &names {
                        _ if header.deleted => None,
                        Some(names) => partial_doc(id, &rev, &body, names)?,
                        None => indexed_doc(id, false, &rev, &body)?,
                    };
                    if let Some(e) = doc.and_then(|d| entry.entry(id, &d)) {
                        entries.push((e, true));
                    }
                }
                last = Some(id.to_owned());
                if n >= BUILD_BATCH {
                    break;
                }
            }
            index_blocks::apply(&inner.tree, &mut batch, number, entries)?;
            let mut next = (*catalog).clone();
            let state = if n < BUILD_BATCH {
                BuildState::Ready
            } else {
                BuildState::Building { after: last }
            };
            let ready = state == BuildState::Ready;
            next.entries[pos].state = state;
            batch.insert(&keys::index_def_key(number)[..], next.entries[pos].encode());
            inner.indexes.set_pending(next);
            let counters = *guard;
            inner.commit(&mut guard, batch, counters)?;
            drop(guard);
            done += n as u64;
            report.done = if ready { done.max(total) } else { done };
            progress(&report);
            if ready {
                return Ok(());
            }
        }
    }

    /// Builds every index that is not built yet (a replicated design document registers its
    /// indexes; this builds them ahead of the first `find` that needs them).
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; what was built stays built.
    pub fn build_indexes(&self, progress: &mut dyn FnMut(&IndexProgress)) -> Result<()> {
        let pending: Vec<u32> = self
            .inner
            .indexes
            .current()
            .entries
            .iter()
            .filter(|e| e.state != BuildState::Ready)
            .map(|e| e.number)
            .collect();
        for number in pending {
            self.build_index(number, progress)?;
        }
        Ok(())
    }
}
