//! Revision ids, `_revisions` and sequences as every crate reads them: settee-revtree's
//! `Rev`/`Revisions`/`Seq` (and a tree built from them), the store's `_local` revs, the
//! server's `since=`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    settee_revtree::fuzzing::rev_seq(data);
    settee_store::fuzzing::local_rev(data);
    settee_server::fuzzing::since(data);
});
