//! settee-query: Mango selectors and `_find` requests parsed, normalised, matched against
//! documents and planned; the index key encoding against the collation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| settee_query::fuzzing::mango(data));
