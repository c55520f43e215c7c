//! [`IndexHook`]: the write path's part in keeping the indexes in step with the documents.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use settee_query::IndexDef;

use super::catalog::{indexed_doc, Catalog};
use crate::database::Inner;
use crate::index_blocks;
use crate::keys::DocRecord;
use crate::Result;

/// The write path's part in keeping indexes in step: a write call records, per document,
/// the entries it had before the call ([`IndexHook::before_write`]) and, when the batch is
/// finished, replaces them with the entries of the document's new state and applies design
/// document changes to the catalog ([`IndexHook::finish`]).
#[derive(Default)]
pub(crate) struct IndexHook {
    catalog: Arc<Catalog>,
    before: HashMap<String, Vec<(u32, Vec<u8>)>>,
}

impl IndexHook {
    pub(crate) fn new(inner: &Inner) -> IndexHook {
        IndexHook {
            catalog: inner.indexes.current(),
            before: HashMap::new(),
        }
    }

    /// Called before document `id` is written for the first time in the call, with its
    /// record as the call found it.
    pub(crate) fn before_write(&mut self, id: &str, old: Option<&DocRecord>) -> Result<()> {
        if self.catalog.entries.is_empty()
            || id.starts_with("_design/")
            || self.before.contains_key(id)
        {
            return Ok(());
        }
        let keys = match old {
            Some(rec) => self.catalog.keys_for(id, rec)?,
            None => Vec::new(),
        };
        self.before.insert(id.to_owned(), keys);
        Ok(())
    }

    /// Adds the catalog and entry changes of the written documents (`docs`: their final
    /// records, `None` for a removed one) to `batch`.
    pub(crate) fn finish(
        self,
        inner: &Inner,
        batch: &mut sled::Batch,
        docs: &HashMap<String, Option<DocRecord>>,
        written: &HashSet<String>,
    ) -> Result<()> {
        let mut catalog: Option<Catalog> = None;
        for id in written.iter().filter(|id| id.starts_with("_design/")) {
            let defs = match docs.get(id) {
                Some(Some(rec)) => indexed_doc(
                    id,
                    rec.tree.is_deleted(),
                    &rec.tree.winner().to_string(),
                    &rec.body,
                )?
                .map(|d| IndexDef::from_design_doc(&d))
                .unwrap_or_default(),
                _ => Vec::new(),
            };
            let had = self.catalog.entries.iter().any(|e| e.def.ddoc == *id);
            if defs.is_empty() && !had {
                continue;
            }
            let c = catalog.get_or_insert_with(|| (*self.catalog).clone());
            c.set_design_doc(&inner.tree, batch, id, defs)?;
        }
        let now = catalog.as_ref().unwrap_or(&self.catalog);
        if !now.entries.is_empty() {
            let mut changes: HashMap<u32, Vec<(Vec<u8>, bool)>> = HashMap::new();
            for id in written.iter().filter(|id| !id.starts_with("_design/")) {
                let after: Vec<(u32, Vec<u8>)> = match docs.get(id) {
                    Some(Some(rec)) => now.keys_for(id, rec)?,
                    _ => Vec::new(),
                };
                let before: &[(u32, Vec<u8>)] = self.before.get(id).map_or(&[], Vec::as_slice);
                for (n, e) in before.iter().filter(|k| !after.contains(k)) {
                    changes.entry(*n).or_default().push((e.clone(), false));
                }
                for (n, e) in after.iter().filter(|k| !before.contains(k)) {
                    changes.entry(*n).or_default().push((e.clone(), true));
                }
            }
            for (number, list) in changes {
                // An index dropped in this call lost all its blocks already.
                if now.position(number).is_some() {
                    index_blocks::apply(&inner.tree, batch, number, list)?;
                }
            }
        }
        if let Some(c) = catalog {
            inner.indexes.set_pending(c);
        }
        Ok(())
    }
}
