//! Compressed document bodies (format 9): the winner's body in a `D` record is a zstd frame
//! when that makes it smaller, compressed once when the record is written, with a dictionary
//! trained from the store's own bodies. This module owns the frames (pack, unpack), the
//! dictionaries (training, the `Z` records, loading them at open) and re-encoding the records
//! at `compact` (in `train.rs`, the part that works on an open store); `keys/record.rs` owns
//! where a frame sits in a record.
//!
//! Why a dictionary: a note's JSON is mostly the same field names and phrases as every
//! other note's, and a frame of one ~1 KB body alone learns little before it ends. Measured
//! on the notes of `bench/disk.sh` (docs/benchmarks.md, "Disk"), zstd alone halves a body,
//! with a dictionary trained on the same kind of notes it is a quarter or less.
//!
//! Why a registry: a dictionary's id is derived from its bytes (the first 8 bytes of their
//! MD5), so the same id names the same dictionary in every store, and a record is decoded
//! by any code that holds its bytes, without a handle on the store it came from. Each open
//! store holds its dictionaries ([`Bodies`]); the process-wide registry maps ids to them
//! weakly, so a dictionary lives as long as one open store holds it.
//!
//! Contexts: one zstd compression and one decompression context per thread, reused for
//! every record (a context is costly to make; a digested dictionary is passed per call).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use md5::{Digest, Md5};
use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

use crate::keys;
use crate::{Error, Result};

pub(crate) mod train;

/// Bodies shorter than this stay raw: a frame's header (~10 B) and the dictionary id (8 B)
/// would eat what little zstd saves on them.
pub(crate) const MIN_PACKED: usize = 64;

/// The zstd level. With a dictionary, level 3 packs `bench/disk.sh`'s notes a fifth smaller
/// than level 1 (257 KB against 323 KB for 1,000 notes, 32 KiB dictionary), for about a
/// quarter more compression time; level 2 is no smaller than 1 (docs/benchmarks.md, "Disk").
const LEVEL: i32 = 3;

/// The largest dictionary trained. zstd's own guidance is ~100x smaller than the samples;
/// 32 KiB trains in well under a second from [`SAMPLE_BYTES`] and most of the gain of a
/// 64 KiB one on notes.
const DICT_SIZE: usize = 32 << 10;

/// The store trains its first dictionary once it holds this many documents (live or
/// deleted): fewer are too few samples to learn from, and a small store is small anyway.
pub(crate) const TRAIN_AT: u64 = 1000;

/// The most bodies and bytes a training reads (spread evenly over the store's ids).
const SAMPLE_DOCS: u64 = 4000;
const SAMPLE_BYTES: usize = 4 << 20;

/// Below this many sample bytes no dictionary is trained (zstd needs examples, and a store
/// of tiny bodies has nothing to gain).
const MIN_SAMPLE_BYTES: usize = 32 << 10;

/// A body decoded from a frame may be at most this long: a damaged frame must not make us
/// allocate whatever its header claims. A record's other lengths have the same limit.
const MAX_BODY: u64 = u32::MAX as u64;

/// A trained dictionary, digested for both directions.
pub(crate) struct Dict {
    pub(crate) id: u64,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

/// A body as it is stored packed: the dictionary it was compressed with (0 = none) and the
/// zstd frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    pub(crate) dict: u64,
    pub(crate) frame: Vec<u8>,
}

/// The dictionaries of one open store: the current one (what writes compress with) and
/// every one loaded or trained since the store was opened. An older one stays held until
/// the store closes even once `compact` has removed it from disk, because a reader may
/// still hold a record it compressed.
pub(crate) struct Bodies {
    state: RwLock<State>,
    /// The document count at which to try training, `u64::MAX` once there is a dictionary.
    train_at: AtomicU64,
    /// A training is under way (one at a time).
    training: AtomicBool,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Dict>>,
    held: Vec<Arc<Dict>>,
}

/// Dictionaries by id, of every open store: see the module comment.
static REGISTRY: RwLock<BTreeMap<u64, Weak<Dict>>> = RwLock::new(BTreeMap::new());

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// A dictionary's id: the first 8 bytes of its MD5, big-endian; never 0 (0 means "no
/// dictionary" in a record).
fn dict_id(bytes: &[u8]) -> u64 {
    let digest = Md5::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first).max(1)
}

/// The registry's dictionary for `bytes`, digesting them if no open store holds it yet.
fn register(bytes: &[u8]) -> Result<Arc<Dict>> {
    let id = dict_id(bytes);
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if let Some(live) = map.get(&id).and_then(Weak::upgrade) {
        return Ok(live);
    }
    map.retain(|_, d| d.strong_count() > 0);
    let bad = || Error::corrupt(format!("body dictionary {id:x} does not load"));
    let dict = Arc::new(Dict {
        id,
        cdict: CDict::try_create(bytes, LEVEL).ok_or_else(bad)?,
        ddict: DDict::try_create(bytes).ok_or_else(bad)?,
    });
    map.insert(id, Arc::downgrade(&dict));
    Ok(dict)
}

fn lookup(id: u64) -> Option<Arc<Dict>> {
    let map = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    map.get(&id).and_then(Weak::upgrade)
}

/// `body` as a frame, if it is long enough and the frame is smaller than it.
pub(crate) fn pack(body: &[u8], dict: Option<&Dict>) -> Option<Packed> {
    if body.len() < MIN_PACKED {
        return None;
    }
    let mut frame = Vec::with_capacity(zstd_safe::compress_bound(body.len()));
    let written = CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = CCtx::try_create();
        }
        let cctx = cell.as_mut()?;
        match dict {
            Some(d) => cctx.compress_using_cdict(&mut frame, body, &d.cdict),
            None => cctx.compress(&mut frame, body, LEVEL),
        }
        .ok()
    })?;
    // The dictionary id costs 8 bytes in the record: pack only if the whole is smaller.
    (written + 8 < body.len()).then(|| Packed {
        dict: dict.map_or(0, |d| d.id),
        frame,
    })
}

/// The body a frame holds.
///
/// # Errors
/// [`Error::Corrupt`] naming the document when the frame is damaged or its dictionary is
/// not held by any open store (the store lost its `Z` record).
pub(crate) fn unpack(id: &str, dict: u64, frame: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: &str| Error::corrupt(format!("body of {id:?}: {what}"));
    let dict = match dict {
        0 => None,
        n => Some(lookup(n).ok_or_else(|| bad(&format!("unknown dictionary {n:x}")))?),
    };
    // A zstd block of 4 bytes (an RLE block) holds at most 128 KiB: no frame holds more
    // than that per 4 bytes, whatever its header says.
    let most = (frame.len() as u64 / 4 + 1) << 17;
    let len = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= MAX_BODY && n <= most => n as usize,
        _ => return Err(bad("bad frame header")),
    };
    let mut out = Vec::with_capacity(len);
    DCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = DCtx::try_create();
        }
        let dctx = cell.as_mut().ok_or_else(|| bad("no zstd context"))?;
        let done = match &dict {
            Some(d) => dctx.decompress_using_ddict(&mut out, frame, &d.ddict),
            None => dctx.decompress(&mut out, frame),
        };
        match done {
            Ok(n) if n == len => Ok(()),
            _ => Err(bad("bad frame")),
        }
    })?;
    Ok(out)
}

impl Bodies {
    /// The store's dictionaries (`Z` records) and the current one (`Mbody_dict`), read once
    /// per open.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a dictionary whose bytes do not match its id or do not load,
    /// or a current id with no dictionary; [`Error::Storage`].
    pub(crate) fn load(
        tree: &sled::Tree,
        storage: &dyn Fn(sled::Error) -> Error,
    ) -> Result<Bodies> {
        let mut state = State::default();
        for item in tree.scan_prefix([keys::BODY_DICT]) {
            let (k, v) = item.map_err(storage)?;
            let dict = register(&v)?;
            if keys::body_dict_key(dict.id)[..] != k[..] {
                return Err(Error::corrupt(format!(
                    "body dictionary under {k:?} has id {:x}",
                    dict.id
                )));
            }
            state.held.push(dict);
        }
        if let Some(v) = tree.get(keys::META_BODY_DICT).map_err(storage)? {
            let id = keys::decode_u64(&v, "current body dictionary")?;
            let dict = state.held.iter().find(|d| d.id == id).ok_or_else(|| {
                Error::corrupt(format!("the current body dictionary {id:x} is missing"))
            })?;
            state.current = Some(dict.clone());
        }
        let train_at = if state.current.is_some() {
            u64::MAX
        } else {
            TRAIN_AT
        };
        Ok(Bodies {
            state: RwLock::new(state),
            train_at: AtomicU64::new(train_at),
            training: AtomicBool::new(false),
        })
    }

    /// The dictionary writes compress with, if the store has one.
    pub(crate) fn current(&self) -> Option<Arc<Dict>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.current.clone()
    }

    /// Makes `dict` current (its `Z` record and `Mbody_dict` are already applied).
    fn set_current(&self, dict: Arc<Dict>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if !state.held.iter().any(|d| d.id == dict.id) {
            state.held.push(dict.clone());
        }
        state.current = Some(dict);
        self.train_at.store(u64::MAX, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DocRecord;
    use crate::{ChangesOptions, Database, GetOptions};
    use serde_json::{json, Value};

    /// A note of about 1 KB: the same fields as every other note, text from a small
    /// vocabulary (as `bench/disk.sh`'s notes).
    pub(crate) fn note(i: usize) -> Value {
        const WORDS: &[&str] = &[
            "meeting", "project", "tomorrow", "review", "the", "a", "notes", "budget", "call",
            "design", "and", "with", "team", "draft", "ship", "weekly", "plan", "ideas",
        ];
        let mut x = i as u64 * 2_654_435_761 + 7;
        let mut text = String::new();
        while text.len() < 900 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            text.push(' ');
        }
        json!({"_id": format!("note-{i:06}"), "type": "note", "title": format!("Note {i}"),
               "tags": ["work", "todo"], "created": 1_700_000_000 + i, "text": text})
    }

    fn raw_records(db: &Database) -> Vec<(String, Vec<u8>)> {
        db.inner
            .tree
            .scan_prefix([keys::DOC])
            .map(|item| {
                let (k, v) = item.unwrap();
                (String::from_utf8(k[1..].to_vec()).unwrap(), v.to_vec())
            })
            .collect()
    }

    fn packed_with(bytes: &[u8]) -> Option<u64> {
        DocRecord::decode("x", bytes)
            .unwrap()
            .packed
            .map(|p| p.dict)
    }

    #[test]
    fn a_body_packs_and_unpacks_with_and_without_a_dictionary() {
        let bodies: Vec<Vec<u8>> = (0..300)
            .map(|i| serde_json::to_vec(&note(i)).unwrap())
            .collect();
        let plain = pack(&bodies[0], None).unwrap();
        assert_eq!(plain.dict, 0);
        assert!(
            plain.frame.len() * 3 < bodies[0].len() * 2,
            "{}",
            plain.frame.len()
        );
        assert_eq!(unpack("x", 0, &plain.frame).unwrap(), bodies[0]);

        let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
        let dict_bytes = zstd::dict::from_continuous(&bodies.concat(), &sizes, DICT_SIZE).unwrap();
        let dict = register(&dict_bytes).unwrap();
        let packed = pack(&bodies[1], Some(&dict)).unwrap();
        assert_eq!(packed.dict, dict.id);
        assert!(packed.frame.len() < plain.frame.len());
        assert_eq!(unpack("x", dict.id, &packed.frame).unwrap(), bodies[1]);
        // The same bytes are the same dictionary: one registry entry.
        assert!(Arc::ptr_eq(&register(&dict_bytes).unwrap(), &dict));
        // A dictionary no open store holds is an error, not garbage.
        assert!(unpack("x", dict.id ^ 1, &packed.frame).is_err());
        assert!(unpack("x", 0, &packed.frame[..packed.frame.len() - 1]).is_err());
        // Short bodies, and bodies that do not shrink, stay raw.
        assert_eq!(pack(br#"{"a":1}"#, None), None);
        let random: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(pack(&random, None), None);
    }

    #[test]
    fn a_store_trains_a_dictionary_and_every_read_path_decodes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::open(&path).unwrap();
        let n = TRAIN_AT as usize + 300;
        // Bulk loads of 600: the first two reach the threshold, the last is compressed with
        // the dictionary they trained.
        for chunk in (0..n).collect::<Vec<_>>().chunks(600) {
            db.bulk_docs(chunk.iter().map(|&i| note(i)).collect(), true)
                .unwrap();
        }
        let dict = db.inner.bodies.current().expect("a dictionary was trained");
        let records = raw_records(&db);
        assert_eq!(records[0].1[0], DocRecord::VERSION);
        assert_eq!(packed_with(&records[0].1), Some(0));
        assert_eq!(packed_with(&records[n - 1].1), Some(dict.id));
        let stored: usize = records.iter().map(|(_, v)| v.len()).sum();
        let json: usize = (0..n)
            .map(|i| serde_json::to_vec(&note(i)).unwrap().len())
            .sum();
        assert!(
            stored * 2 < json,
            "{stored} bytes of records for {json} of JSON"
        );

        let check = |db: &Database| {
            for i in [0, 1, n / 2, n - 1] {
                let mut doc = db
                    .get(&format!("note-{i:06}"), &GetOptions::default())
                    .unwrap();
                doc.as_object_mut().unwrap().remove("_rev");
                assert_eq!(doc, note(i));
            }
            let all = db
                .all_docs(&crate::AllDocsOptions {
                    include_docs: true,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(all.rows.len(), n);
            assert_eq!(
                all.rows[n - 1].doc.as_ref().unwrap()["text"],
                note(n - 1)["text"]
            );
            let changes = db
                .changes(&ChangesOptions {
                    include_docs: true,
                    ..Default::default()
                })
                .unwrap();
            let last_id = format!("note-{:06}", n - 1);
            let last = changes.results.iter().find(|c| c.id == last_id).unwrap();
            assert_eq!(last.doc.as_ref().unwrap()["text"], note(n - 1)["text"]);
            let found = db
                .find(
                    &crate::FindRequest::parse(&json!({"selector": {"title": "Note 7"}})).unwrap(),
                )
                .unwrap();
            assert_eq!(found.docs.len(), 1);
            assert_eq!(found.docs[0]["text"], note(7)["text"]);
        };
        check(&db);
        // An update keeps reading the old body's neighbours; a conflict keeps the winner's
        // packed body as it was.
        let doc = db.get("note-000005", &GetOptions::default()).unwrap();
        let mut edit = note(5);
        edit["_rev"] = doc["_rev"].clone();
        edit["title"] = json!("edited");
        db.put(edit).unwrap();
        assert_eq!(
            db.get("note-000005", &GetOptions::default()).unwrap()["title"],
            "edited"
        );
        drop(db);

        let db = Database::open(&path).unwrap();
        assert_eq!(db.inner.bodies.current().unwrap().id, dict.id);
        drop(dict);
        check(&db);
        // Compact re-encodes the records written before the dictionary existed.
        db.compact().unwrap();
        let current = db.inner.bodies.current().unwrap().id;
        assert!(raw_records(&db)
            .iter()
            .all(|(_, v)| packed_with(v) == Some(current)));
        let dicts = db.inner.tree.scan_prefix([keys::BODY_DICT]).count();
        assert_eq!(dicts, 1);
        check(&db);
        db.verify().unwrap();
    }

    #[test]
    fn a_format_8_store_reads_its_raw_records_and_compact_packs_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 300;
        {
            let db = Database::open(&path).unwrap();
            db.bulk_docs((0..n).map(note).collect(), true).unwrap();
            db.put(json!({"_id": "small", "a": 1})).unwrap();
            // Rewrite the store as format 8 wrote it: version-2 records with raw bodies,
            // no dictionary.
            let tree = &db.inner.tree;
            for (id, v) in raw_records(&db) {
                let mut rec = DocRecord::decode(&id, &v).unwrap();
                rec.packed = None;
                let mut bytes = rec.encode().unwrap();
                bytes[0] = 2; // format 8's record version
                tree.insert(keys::doc_key(&id), bytes).unwrap();
            }
            for item in tree.scan_prefix([keys::BODY_DICT]) {
                tree.remove(item.unwrap().0).unwrap();
            }
            tree.remove(keys::META_BODY_DICT).unwrap();
            tree.insert(keys::META_FORMAT, "8").unwrap();
            tree.flush().unwrap();
        }
        let db = Database::open(&path).unwrap();
        assert_eq!(db.info().unwrap().disk_format_version, 9);
        let before = raw_records(&db);
        assert!(before.iter().all(|(_, v)| v[0] == 2));
        for i in 0..n {
            let mut doc = db
                .get(&format!("note-{i:06}"), &GetOptions::default())
                .unwrap();
            doc.as_object_mut().unwrap().remove("_rev");
            assert_eq!(doc, note(i));
        }
        db.compact().unwrap();
        let after = raw_records(&db);
        assert!(after.iter().all(|(_, v)| v[0] == DocRecord::VERSION));
        let small = &after.iter().find(|(id, _)| id == "small").unwrap().1;
        assert_eq!(packed_with(small), None);
        let size = |r: &[(String, Vec<u8>)]| r.iter().map(|(_, v)| v.len()).sum::<usize>();
        assert!(
            size(&after) * 2 < size(&before),
            "{} -> {}",
            size(&before),
            size(&after)
        );
        for i in 0..n {
            let doc = db
                .get(&format!("note-{i:06}"), &GetOptions::default())
                .unwrap();
            assert_eq!(doc["text"], note(i)["text"]);
        }
        assert_eq!(db.get("small", &GetOptions::default()).unwrap()["a"], 1);
        db.verify().unwrap();
    }
}
