//! The key layout of the store's single sled tree, and the encoding of document records
//! and by-sequence chunks. `docs/storage-format.md` describes the same bytes; change both
//! together (and bump [`FORMAT_VERSION`]).
//!
//! Everything lives in one sled tree so that one write call is one `sled::Batch`, which
//! sled applies atomically (all of it or none of it survives a crash, and readers see all
//! of it or none of it). Each record kind has a one-byte prefix:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | `M` + name | meta values (format version, uuid, counters) |
//! | `D` | `D` + id | [`DocRecord`]: seq, flags, winner, rev tree, the winner's body |
//! | `R` | `R` + id + `0x00` + rev (or `x` + hex of a rev holding `0x00`) | the body (JSON) of a revision that is not the winner |
//! | `Q` | `Q` + first seq (u64 big-endian) | a by-seq chunk: the entries (seq, id, leaves) one write call made |
//! | `X` | `X` + seq (u64 big-endian) | marks the entry at seq stale; value: the seq that superseded it |
//! | `A` | `A` + digest | attachment bytes, whole (formats 1-6; read, never written) |
//! | `H` | `H` + digest | [`AttHead`]: an attachment's length, encoding, storage kind (a file, or chunks), blob |
//! | `C` | `C` + blob (u64 big-endian) + chunk index (u32 big-endian) | attachment bytes, one chunk (format 7 wrote them; read, and written for inline attachments of at most one chunk) |
//! | `P` | `P` + blob (u64 big-endian) | a staged blob (file or chunks) no document refers to yet, or one being removed |
//! | `L` | `L` + id without `_local/` | local doc (JSON, with `_rev`) |
//! | `N` | `N` + index number (u32 big-endian) | a Mango index of the catalog: its definition and build state |
//! | `I` | `I` + index number + lower bound (an entry, or nothing) | a block of index entries (collation-encoded key + doc id), ascending |
//! | `U` | `U` + remote number (u32 big-endian) + id | [`Unsynced`]: the document's leaves that remote is not known to hold, and its rejection |
//! | `Z` | `Z` + dictionary id (u64 big-endian) | a zstd dictionary that `D` records' bodies are compressed with (`bodies/`) |
//!
//! Sled's cost is per key, so a document write touches as few keys as it can: a new
//! document is one `D` record (its body inline) plus its entry in the call's one `Q` chunk.
//! An entry goes stale when its document is written again: an entry of the same call's
//! chunk is dropped, a single-entry chunk is deleted, any other gets an `X` marker that
//! readers merge with the chunks (so `_changes` never reads the records), and
//! [`crate::Database::compact`] drops marked entries with their markers.
//!
//! Format 3 added the `N` and `I` kinds (Mango indexes, `index/`); format 2 stores upgrade
//! by registering their query design documents (`migrate.rs`).
//! `Mremotes` lists the remotes the store syncs with (each with its number) and `Msync`
//! counts their `U` entries; `sync_state/` owns both and the `U` entries.
//!
//! Format 1 (before this layout) kept every body under `R` and one `S` + seq key per
//! document; `migrate.rs` upgrades it in place. Format 2 is format 3 without its long forms
//! (a rev text or leaf count too long for the short length fields, a rev holding `0x00`),
//! which revisions written by other CouchDB replicas need; format 2 data reads unchanged.
//! Format 4 adds the sync-state records (`Mremotes`, `Msync`, `U`); a format-3 store has
//! none, which format 4 reads as "no remote registered", so that upgrade is the format key.
//! Format 6 adds a remote's pending intervals in `Mremotes` (and `U` markers); a format-5
//! store has none, so that upgrade is the format key too.
//!
//! Format 7 stores attachments in chunks (`H`, `C`, `P`); format 6's whole `A` values are
//! read as one chunk, so that upgrade is the format key too.
//!
//! Format 9 compresses the winner's body in a `D` record (record version 3, a zstd frame
//! with an optional dictionary, `Z` + `Mbody_dict`); format 8's version-2 records read as
//! they are, and `compact` rewrites them, so that upgrade is the format key too.
//!
//! Files: `att_head.rs` ([`AttHead`]), `layout.rs` (the prefixes, meta names and key builders), `fields.rs` (the
//! fixed-width numbers and lengths records share), `record.rs` ([`DocRecord`]), `seq.rs`
//! (by-seq chunks), `unsynced.rs` ([`Unsynced`]).

mod att_head;
mod fields;
mod layout;
mod record;
mod seq;
mod unsynced;

pub use att_head::Encoding;
pub(crate) use att_head::{AttHead, Encoding as AttEncoding, Storage as AttStorage};
pub(crate) use fields::decode_u64;
pub use layout::FORMAT_VERSION;
pub(crate) use layout::{
    att_chunk_key, att_chunk_prefix, att_head_key, att_key, att_pending_key, blob_of_key,
    body_dict_key, chunk_key, doc_key, index_def_key, index_prefix, legacy_seq_from_key, local_key,
    rev_key, split_unsynced_key, stale_key, unsynced_key, unsynced_prefix, ATT, ATT_CHUNK,
    ATT_HEAD, ATT_PENDING, BODY_DICT, DOC, INDEX_DEF, INDEX_ENTRY, LEGACY_SEQ, META_ALIASES,
    META_BODY_DICT, META_COUNTERS, META_FORMAT, META_NEXT_INDEX, META_REMOTES, META_REVS_LIMIT,
    META_SECURITY, META_SYNC, META_UUID, REV, TREE_NAME, UNSYNCED,
};
// The prefixes only the fuzz targets name from outside this module.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use layout::{CHUNK, LOCAL, STALE};
pub(crate) use record::{DocHeader, DocRecord};
pub(crate) use seq::{decode_chunk, encode_chunk, rewrite_chunk, SeqEntry};
pub(crate) use unsynced::{StoredRejection, Unsynced};
