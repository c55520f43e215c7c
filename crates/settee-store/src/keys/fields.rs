//! The fixed-width fields records share: big-endian u64s, and u32 lengths with the long
//! form (a length that does not fit a short field).

pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> crate::Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        crate::Error::corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A length as u32 big-endian; beyond 4 GiB it is an error naming `what`.
pub(super) fn long_len(len: usize, what: impl FnOnce() -> String) -> crate::Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| crate::Error::bad_request(format!("{} is longer than 4 GiB", what())))
}

/// Reads a u32 big-endian length.
pub(super) fn read_u32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}
