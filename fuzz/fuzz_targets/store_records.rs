//! settee-store's decoders of its on-disk records (document records, by-seq chunks, sync
//! state, index records, meta records) on damaged bytes: an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| settee_store::fuzzing::store_records(data));
