//! Encoded attachments (CouchDB's gzipped `text/*` and JSON-like ones): decoding them for
//! readers, whole ([`decode_all`]) or streamed ([`Decoded`]), and checking encoded bytes as
//! they are staged ([`Check`]: they decode, to the length the stub says). Which attachment
//! is encoded is its revision's `AttMeta`; where the bytes are is `chunks.rs`'s.

use std::io::{Read, Write};

use crate::keys::AttEncoding as Encoding;
use crate::{Error, Result};

/// Decodes a whole attachment held in memory (the inline `attachments=true` form, whose JSON
/// holds the bytes anyway), checking the decoded length.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes do not decode to `length` bytes.
pub(crate) fn decode_all(
    digest: &str,
    encoding: Encoding,
    length: u64,
    bytes: Vec<u8>,
) -> Result<Vec<u8>> {
    match encoding {
        Encoding::Identity => Ok(bytes),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| Error::corrupt(format!("attachment {digest}: gzip: {e}")))?;
            if out.len() as u64 != length {
                return Err(Error::corrupt(format!(
                    "attachment {digest} decodes to {} bytes, its revision says {length}",
                    out.len()
                )));
            }
            Ok(out)
        }
    }
}

/// The decoded bytes of a reader of encoded ones (gzip over the stored chunks): inflate's
/// state and one buffer of its own beside the chunk being read, whatever the length. The
/// decoded length is checked at the end.
pub(crate) struct Decoded<R: Read> {
    inner: flate2::read::GzDecoder<R>,
    digest: String,
    expected: u64,
    read: u64,
}

impl<R: Read> Decoded<R> {
    pub(crate) fn new(raw: R, digest: String, expected: u64) -> Decoded<R> {
        Decoded {
            inner: flate2::read::GzDecoder::new(raw),
            digest,
            expected,
            read: 0,
        }
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let corrupt = |what: String| std::io::Error::other(Error::corrupt(what));
        if self.read > self.expected || (n == 0 && !buf.is_empty() && self.read != self.expected) {
            return Err(corrupt(format!(
                "attachment {} decodes to {} bytes or more, its revision says {}",
                self.digest, self.read, self.expected
            )));
        }
        Ok(n)
    }
}

/// Checks encoded bytes as they are staged: each piece is decoded and counted (never kept),
/// and [`Check::finish`] says whether they were whole and decoded to the expected length.
/// Decoding stops as soon as the count passes it, so a small body that inflates to far
/// more than its stub says costs no more than the stub's length.
pub(crate) struct Check {
    decoder: flate2::write::GzDecoder<Counter>,
}

/// Counts the bytes written to it, refusing more than `limit`.
struct Counter {
    count: u64,
    limit: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count += buf.len() as u64;
        if self.count > self.limit {
            return Err(std::io::Error::other("longer than announced"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Check {
    /// A check of gzip bytes that must decode to `length` bytes.
    pub(crate) fn gzip(length: u64) -> Check {
        Check {
            decoder: flate2::write::GzDecoder::new(Counter {
                count: 0,
                limit: length,
            }),
        }
    }

    /// Decodes the next piece of the encoded bytes.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when they are not gzip or decode to more than expected.
    pub(crate) fn update(&mut self, piece: &[u8]) -> Result<()> {
        self.decoder.write_all(piece).map_err(bad_gzip)
    }

    /// Ends the check.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the bytes end early or decode to another length.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.decoder.try_finish().map_err(bad_gzip)?;
        let counter = self.decoder.get_ref();
        if counter.count != counter.limit {
            return Err(Error::bad_request(format!(
                "the encoded attachment decodes to {} bytes, its stub says {}",
                counter.count, counter.limit
            )));
        }
        Ok(())
    }
}

fn bad_gzip(e: std::io::Error) -> Error {
    Error::bad_request(format!("the encoded attachment does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn check_takes_the_right_length_and_refuses_others() {
        let data = b"some text ".repeat(1000);
        let gz = gzip(&data);
        for (length, ok) in [(data.len() as u64, true), (10, false), (20_000, false)] {
            let mut c = Check::gzip(length);
            let fed = gz.chunks(7).try_for_each(|p| c.update(p));
            let res = fed.and_then(|()| c.finish());
            assert_eq!(res.is_ok(), ok, "{length}");
        }
        let mut c = Check::gzip(3);
        let res = c.update(b"not gzip at all").and_then(|()| c.finish());
        assert_eq!(res.unwrap_err().name(), "bad_request");
        // Cut short.
        let mut c = Check::gzip(data.len() as u64);
        c.update(&gz[..gz.len() / 2]).unwrap();
        assert!(c.finish().is_err());
    }

    #[test]
    fn decoded_reads_and_checks_the_length() {
        let data = b"abc".repeat(50_000);
        let gz = gzip(&data);
        let mut out = Vec::new();
        Decoded::new(gz.as_slice(), "d".into(), data.len() as u64)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut out = Vec::new();
        let err = Decoded::new(gz.as_slice(), "d".into(), 5)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("decodes to"), "{err}");
        assert_eq!(
            decode_all("d", Encoding::Gzip, data.len() as u64, gz.clone()).unwrap(),
            data
        );
        assert!(decode_all("d", Encoding::Gzip, 1, gz).is_err());
    }
}
