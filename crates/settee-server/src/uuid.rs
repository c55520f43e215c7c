//! Random ids of 128 bits written as 32 lowercase hex digits, as CouchDB's `random`
//! uuids: `/_uuids`, the server's instance uuid, the advertised owner's password and the
//! hidden name a deleted store is renamed to.

/// A fresh random id.
pub(crate) fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
