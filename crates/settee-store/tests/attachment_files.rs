//! Attachment bytes in files beside sled (format 8, issue 23): a staged attachment is one
//! file under `attachments/`, one per digest; what no revision names goes with `compact`;
//! `verify` finds a missing, short or stray file; [`AttachmentReader::skip_bytes`] skips into
//! files, format 7's chunks and gzipped bytes; a format-7 store opens as format 8 and reads
//! its chunks where they are; and staging and reading back 100 MB costs the process far
//! less memory than 100 MB (sled kept every value it touched, so chunks cost their size).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;
use settee_store::{attachment_digest, AttachmentReader, Database, Encoding, FORMAT_VERSION};

/// The attachment files of the store at `path`, with their lengths, sorted.
fn files(path: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(path.join("attachments")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = entries
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `data` (at most one chunk) as document `c`'s inline attachment `x`, which the store
/// keeps as format 7 kept every attachment (a version-1 head and `C` chunks), then, with
/// plain sled, splits its one chunk in two at `at`: a format-7 blob of two chunks.
fn chunked_store(path: &Path, data: &[u8], at: usize) {
    let db = Database::open(path).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    db.put(json!({"_id": "c", "_attachments": {"x": {"content_type": "a/b", "data": b64}}}))
        .unwrap();
    drop(db);
    let raw = common::raw_sled(path);
    let tree = raw.open_tree("settee").unwrap();
    let hkey = [&b"H"[..], attachment_digest(data).as_bytes()].concat();
    let mut head = tree.get(&hkey).unwrap().unwrap().to_vec();
    assert_eq!(
        (head[0], head.len(), &head[10..14]),
        (1, 22, &1u32.to_be_bytes()[..])
    );
    let chunk = |i: u32| [&b"C"[..], &head[14..22], &i.to_be_bytes()].concat();
    let whole = tree.get(chunk(0)).unwrap().unwrap();
    assert_eq!(&whole[..], data);
    tree.insert(chunk(0), &data[..at]).unwrap();
    tree.insert(chunk(1), &data[at..]).unwrap();
    head[10..14].copy_from_slice(&2u32.to_be_bytes());
    tree.insert(hkey, head).unwrap();
    raw.flush().unwrap();
}

fn read_rest(r: &mut AttachmentReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        out.extend_from_slice(&c);
    }
    out
}

#[test]
fn a_staged_attachment_is_one_file_per_digest_until_no_revision_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    let data = bytes(600_000, 1);
    db.put_attachment_from("a", None, "x.bin", "application/octet-stream", &data[..])
        .unwrap();
    let one = files(&path);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!((one[0].0.len(), one[0].1), (16, 600_000));
    // The same bytes again (another document), and bytes staged then dropped: no new file.
    let rb = db
        .put_attachment_from("b", None, "y.bin", "application/octet-stream", &data[..])
        .unwrap()
        .rev
        .unwrap();
    drop(db.stage_attachment(&bytes(1000, 2)[..]).unwrap());
    assert_eq!(files(&path), one);
    assert_eq!(db.verify().unwrap().staged_attachments, 0);
    assert_eq!(db.attachment("b", None, "y.bin").unwrap().data, data);
    // `a` goes: `b` still names the digest, so the file stays; then `b` goes too.
    let ra = common::get(&db, "a")["_rev"].clone();
    db.put(json!({"_id": "a", "_rev": ra, "_deleted": true}))
        .unwrap();
    db.compact().unwrap();
    assert_eq!(files(&path), one);
    db.put(json!({"_id": "b", "_rev": rb.to_string(), "_deleted": true}))
        .unwrap();
    db.compact().unwrap();
    assert_eq!(files(&path), vec![]);
    db.verify().unwrap();
    // Destroying the store takes the directory with it.
    drop(db);
    Database::destroy(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn verify_finds_a_short_or_stray_file_and_compact_reclaims_a_stray_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    db.put_attachment_from("a", None, "x", "a/b", &bytes(1000, 3)[..])
        .unwrap();
    let (name, _) = files(&path).remove(0);
    let stray = path.join("attachments").join("00000000000000ff");
    std::fs::write(&stray, b"left by an older build").unwrap();
    let err = db.verify().unwrap_err();
    assert!(
        err.to_string().contains("belongs to no attachment"),
        "{err}"
    );
    db.compact().unwrap();
    assert!(!stray.exists());
    db.verify().unwrap();
    // A file cut short: verify and readers say so, never giving other bytes.
    let file = path.join("attachments").join(&name);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(10)
        .unwrap();
    let err = db.verify().unwrap_err();
    assert_eq!(err.name(), "corrupt", "{err}");
    assert!(err.to_string().contains("holds 10 bytes"), "{err}");
    let err = db.attachment_reader("a", None, "x").unwrap_err();
    assert_eq!(err.name(), "corrupt");
    std::fs::remove_file(&file).unwrap();
    let err = db.attachment("a", None, "x").unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn skip_bytes_seeks_a_file_and_reads_through_chunks_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let small = bytes(200_000, 7);
    chunked_store(&path, &small, 70_000);
    let db = common::reopen(&path).unwrap();
    db.verify().unwrap();
    let data = bytes(700_000, 4);
    db.put_attachment_from("f", None, "x", "a/b", &data[..])
        .unwrap();
    // Inline bytes longer than a chunk go to a file too.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data[..600_000]);
    db.put(json!({"_id": "i", "_attachments": {"x": {"content_type": "a/b", "data": b64}}}))
        .unwrap();
    assert_eq!(files(&path).len(), 2);
    db.verify().unwrap();
    for (id, data) in [("f", &data[..]), ("i", &data[..600_000]), ("c", &small[..])] {
        let len = data.len() as u64;
        for at in [0, 1, 69_999, 70_000, 70_001, 262_144, 300_001, len - 1, len] {
            let at = at.min(len);
            let mut r = db.attachment_reader(id, None, "x").unwrap();
            assert_eq!(r.skip_bytes(at).unwrap(), at, "{id} {at}");
            assert_eq!(read_rest(&mut r), &data[at as usize..], "{id} {at}");
        }
        let mut r = db.attachment_reader(id, None, "x").unwrap();
        assert_eq!(r.skip_bytes(800_000).unwrap(), len);
        assert_eq!(r.next_chunk().unwrap(), None);
    }
    let text = b"line of text\n".repeat(50_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    let staged = db
        .stage_attachment_encoded(&gz[..], Encoding::Gzip, text.len() as u64, None)
        .unwrap();
    db.put_staged_attachment("g", None, "t.txt", "text/plain", staged)
        .unwrap();
    let mut r = db.attachment_reader("g", None, "t.txt").unwrap();
    assert_eq!(r.skip_bytes(400_000).unwrap(), 400_000);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &text[400_000..]);
    let mut raw = db.attachment_reader_raw("g", None, "t.txt").unwrap();
    assert_eq!(raw.skip_bytes(5).unwrap(), 5);
    assert_eq!(read_rest(&mut raw), &gz[5..]);
}

#[test]
fn a_format_7_store_opens_as_the_current_format_and_reads_its_chunks_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let data = bytes(250_000, 5);
    chunked_store(&path, &data, 100_000);
    assert_eq!(files(&path), vec![]);
    {
        let raw = common::raw_sled(&path);
        raw.open_tree("settee")
            .unwrap()
            .insert("Mformat", "7")
            .unwrap();
        raw.flush().unwrap();
    }
    let db = common::reopen(&path).unwrap();
    assert_eq!(FORMAT_VERSION, 9);
    assert_eq!(db.info().unwrap().disk_format_version, 9);
    assert_eq!(db.attachment("c", None, "x").unwrap().data, data);
    // New bytes go to a file; the same bytes again dedup against the chunked copy.
    db.put_attachment_from("d", None, "x", "a/b", &data[..])
        .unwrap();
    db.put_attachment_from("e", None, "x", "a/b", &bytes(10, 6)[..])
        .unwrap();
    assert_eq!(files(&path).len(), 1);
    assert_eq!(
        db.attachment_reader("d", None, "x").unwrap().digest(),
        attachment_digest(&data)
    );
    db.verify().unwrap();
}

// -- memory ---------------------------------------------------------------------------------

const MEMORY_CHILD: &str = "SETTEE_STORE_ATT_MEMORY_CHILD";
/// The attachment the memory test stages and reads back.
const BIG: u64 = 100 << 20;
/// How much the peak may grow for it: far below its size (sled's chunks cost all of it).
const GROWTH_LIMIT: u64 = 40 << 20;

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Bytes produced as they are read (never held whole).
struct Produced(u64);

impl Read for Produced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = (self.0 as usize).wrapping_sub(i) as u8;
        }
        self.0 -= n as u64;
        Ok(n)
    }
}

/// The child: stages `BIG` bytes, reads them back, reopens and reads them again; prints the
/// peak before and after.
#[test]
fn attachment_memory_child() {
    let Ok(path) = std::env::var(MEMORY_CHILD) else {
        return;
    };
    let path = PathBuf::from(path);
    let db = Database::open(&path).unwrap();
    db.put(json!({"_id": "warm-up"})).unwrap();
    let before = peak_rss();
    db.put_attachment_from(
        "big",
        None,
        "a.bin",
        "application/octet-stream",
        Produced(BIG),
    )
    .unwrap();
    let mut total = 0;
    for _ in 0..2 {
        let mut r = db.attachment_reader("big", None, "a.bin").unwrap();
        total = 0;
        while let Some(c) = r.next_chunk().unwrap() {
            total += c.len() as u64;
        }
    }
    drop(db);
    let db = common::reopen(&path).unwrap();
    let mut r = db.attachment_reader("big", None, "a.bin").unwrap();
    std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    // On a line of its own: the harness prints the test name before it.
    println!("\nmemory {before} {} {total}", peak_rss());
}

#[cfg(target_os = "linux")]
#[test]
fn staging_and_reading_100_mb_grows_the_peak_far_less_than_100_mb() {
    if std::env::var(MEMORY_CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "attachment_memory_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD, dir.path().join("db"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("memory "))
        .unwrap_or_else(|| panic!("no measurement: {stdout}"));
    let n: Vec<u64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
    let (before, after, read) = (n[0], n[1], n[2]);
    eprintln!(
        "peak RSS {} MB before, {} MB after staging and reading {} MB",
        before >> 20,
        after >> 20,
        BIG >> 20
    );
    assert_eq!(read, BIG);
    assert!(
        after - before < GROWTH_LIMIT,
        "peak grew by {} MB for a {} MB attachment",
        (after - before) >> 20,
        BIG >> 20
    );
}
