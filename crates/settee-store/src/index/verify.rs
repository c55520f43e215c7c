//! Checking the indexes against the documents (part of `Database::verify`).

use std::collections::{BTreeSet, HashMap};

use settee_query::IndexDef;

use super::catalog::{indexed_doc, Catalog};
use crate::index_blocks;
use crate::keys::{self, DocHeader};
use crate::{Database, Error, Result};

impl Database {
    /// Checks the indexes (part of [`Database::verify`], under the writer lock): the catalog
    /// is what the query design documents define, and each index holds exactly the entries
    /// of the documents it covers (those its build has passed). The number of entries.
    pub(crate) fn verify_indexes(&self) -> Result<u64> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let catalog = inner.indexes.current();
        let stored = Catalog::load(&inner.tree, &storage)?;
        let numbers = |c: &Catalog| {
            c.entries
                .iter()
                .map(|e| e.number)
                .collect::<BTreeSet<u32>>()
        };
        if numbers(&stored) != numbers(&catalog)
            || stored.entries.iter().any(|s| {
                catalog.position(s.number).is_none_or(|i| {
                    catalog.entries[i].def != s.def || catalog.entries[i].state != s.state
                })
            })
        {
            return Err(Error::corrupt(
                "the index catalog in memory differs from the stored one",
            ));
        }
        let mut defined: Vec<IndexDef> = Vec::new();
        for item in inner.tree.scan_prefix(keys::doc_key("_design/")) {
            let (k, v) = item.map_err(storage)?;
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            let (header, body) = DocHeader::decode_with_body(&id, &v)?;
            if let Some(doc) = indexed_doc(&id, header.deleted, &header.winner.to_string(), &body)?
            {
                defined.extend(IndexDef::from_design_doc(&doc));
            }
        }
        for def in &defined {
            if !catalog.entries.iter().any(|e| e.def == *def) {
                return Err(Error::corrupt(format!(
                    "index {}/{} is defined but not in the catalog",
                    def.ddoc, def.name
                )));
            }
        }
        if let Some(e) = catalog.entries.iter().find(|e| !defined.contains(&e.def)) {
            return Err(Error::corrupt(format!(
                "index {}/{} is in the catalog but no design document defines it",
                e.def.ddoc, e.def.name
            )));
        }
        let mut expected: HashMap<u32, BTreeSet<Vec<u8>>> = catalog
            .entries
            .iter()
            .map(|e| (e.number, BTreeSet::new()))
            .collect();
        if !catalog.entries.is_empty() {
            for item in inner.tree.scan_prefix([keys::DOC]) {
                let (k, v) = item.map_err(storage)?;
                let id = String::from_utf8_lossy(&k[1..]).into_owned();
                if id.starts_with("_design/") {
                    continue;
                }
                let (header, body) = DocHeader::decode_with_body(&id, &v)?;
                let Some(doc) =
                    indexed_doc(&id, header.deleted, &header.winner.to_string(), &body)?
                else {
                    continue;
                };
                for e in catalog.entries.iter().filter(|e| e.maintains(&id)) {
                    if let Some(entry) = e.entry(&id, &doc) {
                        expected.entry(e.number).or_default().insert(entry);
                    }
                }
            }
        }
        let mut count = 0u64;
        for (number, want) in &expected {
            let have = index_blocks::all_entries(&inner.tree, *number)?;
            count += have.len() as u64;
            let have: BTreeSet<Vec<u8>> = have.into_iter().collect();
            if let Some(extra) = have.difference(want).next() {
                return Err(Error::corrupt(format!(
                    "index {number} holds the entry {extra:?}, which matches no document's current state"
                )));
            }
            if let Some(missing) = want.difference(&have).next() {
                return Err(Error::corrupt(format!(
                    "index {number} lacks the entry {missing:?} of a document it covers"
                )));
            }
        }
        for item in inner.tree.scan_prefix([keys::INDEX_ENTRY]) {
            let (k, _) = item.map_err(storage)?;
            let number = k
                .get(1..5)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| Error::corrupt(format!("index block {k:?} has a bad key")))?;
            if !expected.contains_key(&number) {
                return Err(Error::corrupt(format!(
                    "index block {k:?} belongs to no index in the catalog"
                )));
            }
        }
        Ok(count)
    }
}
