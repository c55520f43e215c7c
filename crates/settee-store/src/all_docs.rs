//! `_all_docs`: documents by id. Ids are ordered by their UTF-8 bytes, which is code-point
//! order and the order of CouchDB's raw collation, which `_all_docs` uses (not the ICU
//! collation of views); PouchDB's leveldb adapter orders the same way. Deleted documents are
//! left out unless asked for by `keys`. `_local` docs are never listed (they have their own
//! key prefix).

use std::ops::Bound;

use serde_json::json;

use crate::keys::{self, DocHeader, DocRecord};
use crate::{AllDocs, AllDocsOptions, AllDocsRow, Database, Error, GetOptions, Result};

impl Database {
    /// Every live design document (`_design/...`), whole, in id order.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn design_docs(&self) -> Result<Vec<serde_json::Value>> {
        let all = self.all_docs(&AllDocsOptions {
            startkey: Some("_design/".into()),
            endkey: Some("_design0".into()),
            inclusive_end: false,
            include_docs: true,
            ..Default::default()
        })?;
        Ok(all.rows.into_iter().filter_map(|r| r.doc).collect())
    }

    /// `GET /{db}/_all_docs` with CouchDB's options.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::AllDocsOptions;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.bulk_docs(vec![json!({"_id": "b"}), json!({"_id": "a"}), json!({"_id": "c"})], true)?;
    /// let all = db.all_docs(&AllDocsOptions { startkey: Some("b".into()), ..Default::default() })?;
    /// let ids: Vec<_> = all.rows.iter().map(|r| r.key.as_str()).collect();
    /// assert_eq!(ids, ["b", "c"]);
    /// assert_eq!((all.total_rows, all.offset), (3, Some(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn all_docs(&self, opts: &AllDocsOptions) -> Result<AllDocs> {
        let total_rows = self.info()?.doc_count;
        if let Some(keys) = &opts.keys {
            return self.all_docs_keys(keys, opts, total_rows);
        }
        let inner = &self.inner;
        let end_bound = |key: &str| {
            if opts.inclusive_end {
                Bound::Included(keys::doc_key(key))
            } else {
                Bound::Excluded(keys::doc_key(key))
            }
        };
        let past_docs = Bound::Excluded(vec![keys::DOC + 1]);
        let first_doc = Bound::Included(keys::doc_key(""));
        // Ascending, startkey is the lower bound and endkey the upper; descending, the
        // other way round. `inclusive_end` always applies to endkey.
        let (lo, hi) = if opts.descending {
            (
                opts.endkey.as_deref().map_or(first_doc, end_bound),
                opts.startkey
                    .as_deref()
                    .map_or(past_docs, |k| Bound::Included(keys::doc_key(k))),
            )
        } else {
            (
                opts.startkey
                    .as_deref()
                    .map_or(first_doc, |k| Bound::Included(keys::doc_key(k))),
                opts.endkey.as_deref().map_or(past_docs, end_bound),
            )
        };
        if range_is_empty(&lo, &hi) {
            return Ok(AllDocs {
                total_rows,
                offset: Some(0),
                rows: Vec::new(),
            });
        }
        let range = inner.tree.range::<Vec<u8>, _>((lo, hi));
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if opts.descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
        let limit = opts.limit.unwrap_or(usize::MAX);
        let mut rows = Vec::new();
        let mut skipped = 0usize;
        for item in entries {
            if rows.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let header = DocHeader::decode(id, &v)?;
            if header.deleted {
                continue;
            }
            if skipped < opts.skip {
                skipped += 1;
                continue;
            }
            let doc = if opts.include_docs {
                let rec = DocRecord::decode(id, &v)?;
                let get = GetOptions {
                    conflicts: opts.conflicts,
                    attachments: opts.attachments,
                    ..Default::default()
                };
                self.render_rev(id, &rec, &header.winner, &get)?
            } else {
                None
            };
            rows.push(AllDocsRow {
                id: Some(id.to_owned()),
                key: id.to_owned(),
                value: Some(json!({"rev": header.winner})),
                doc,
                error: None,
            });
        }
        // CouchDB's offset: the live rows that come before the first returned row in walk
        // order (or before the start key, plus those skipped, when no row is returned).
        let offset = match rows.first() {
            Some(first) => self.live_before(&first.key, opts.descending)?,
            None => match opts.startkey.as_deref() {
                Some(start) => {
                    (self.live_before(start, opts.descending)? + skipped as u64).min(total_rows)
                }
                None => (skipped as u64).min(total_rows),
            },
        };
        Ok(AllDocs {
            total_rows,
            offset: Some(offset),
            rows,
        })
    }

    /// Live documents that come before `id` in walk order (below it ascending, above it
    /// descending).
    fn live_before(&self, id: &str, descending: bool) -> Result<u64> {
        let inner = &self.inner;
        let key = keys::doc_key(id);
        let range = if descending {
            inner
                .tree
                .range::<Vec<u8>, _>((Bound::Excluded(key), Bound::Excluded(vec![keys::DOC + 1])))
        } else {
            inner
                .tree
                .range::<Vec<u8>, _>((Bound::Included(keys::doc_key("")), Bound::Excluded(key)))
        };
        let mut n = 0;
        for item in range {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            if !DocHeader::decode(&id, &v)?.deleted {
                n += 1;
            }
        }
        Ok(n)
    }

    fn all_docs_keys(
        &self,
        ids: &[String],
        opts: &AllDocsOptions,
        total_rows: u64,
    ) -> Result<AllDocs> {
        let mut rows = Vec::new();
        let ordered: Box<dyn Iterator<Item = &String>> = if opts.descending {
            Box::new(ids.iter().rev())
        } else {
            Box::new(ids.iter())
        };
        for id in ordered
            .skip(opts.skip)
            .take(opts.limit.unwrap_or(usize::MAX))
        {
            match self.load_doc(id)? {
                None => rows.push(AllDocsRow {
                    id: None,
                    key: id.clone(),
                    value: None,
                    doc: None,
                    error: Some("not_found".into()),
                }),
                Some(rec) => {
                    let leaf = rec.tree.winning_leaf();
                    let value = if leaf.deleted {
                        json!({"rev": leaf.rev, "deleted": true})
                    } else {
                        json!({"rev": leaf.rev})
                    };
                    let doc = if !opts.include_docs {
                        None
                    } else if leaf.deleted {
                        // CouchDB: `"doc": null` for a deleted document.
                        Some(serde_json::Value::Null)
                    } else {
                        let get = GetOptions {
                            conflicts: opts.conflicts,
                            attachments: opts.attachments,
                            ..Default::default()
                        };
                        self.render_rev(id, &rec, &leaf.rev, &get)?
                    };
                    rows.push(AllDocsRow {
                        id: Some(id.clone()),
                        key: id.clone(),
                        value: Some(value),
                        doc,
                        error: None,
                    });
                }
            }
        }
        Ok(AllDocs {
            total_rows,
            offset: Some(0),
            rows,
        })
    }
}

/// sled panics on a range whose start is after its end; CouchDB answers such a query
/// (startkey past endkey) with no rows.
fn range_is_empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
