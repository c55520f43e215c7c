//! settee-server's `multipart/related` and `multipart/mixed` reading, gzip-encoded parts
//! included (decoded within the body limit).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| settee_server::fuzzing::multipart(data));
