//! settee-store's JSON member scanner (`json_text.rs`) on any text, checked against
//! serde_json on valid objects.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| settee_store::fuzzing::json_members(data));
