//! The attachment commands: `attach` streams a file in as a document's attachment (a new
//! revision), `get-attachment` streams one out to a file or stdout. Neither holds the bytes
//! in memory on the way to or from a server; progress shows on a terminal for big files.
//! What an attachment is and how it travels is the library's (`Documents::put_attachment_from`,
//! `Documents::get_attachment`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures::TryStreamExt;
use settee::{Db, Documents, ErrorKind, ReadOptions, Rev};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::{existing, print_json, with_location, Outcome, Ui};

#[derive(Debug, clap::Args)]
pub(crate) struct Attach {
    /// The database.
    db: String,
    /// The document id (created when missing).
    id: String,
    /// The attachment's name in the document.
    name: String,
    /// The file to read.
    file: PathBuf,
    /// Its MIME type (guessed from FILE's extension when omitted; else
    /// application/octet-stream).
    #[arg(long = "type", value_name = "TYPE")]
    content_type: Option<String>,
    /// The revision to write on top of (the document's current one when omitted).
    #[arg(long)]
    rev: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetAttachment {
    /// The database.
    db: String,
    /// The document id.
    id: String,
    /// The attachment's name in the document.
    name: String,
    /// The file to write (replaced only once every byte has arrived), or `-` for stdout.
    file: PathBuf,
    /// Read the attachment of this revision (the current one when omitted).
    #[arg(long)]
    rev: Option<String>,
}

/// Files from this size get a progress bar (on a terminal): smaller ones are done before a
/// bar would tell anything.
const BAR_FROM: u64 = 4 << 20;

/// `settee attach`: FILE streamed in as attachment NAME of document ID; prints
/// `{"ok":true,"id":...,"rev":...}`.
pub(crate) async fn attach(args: Attach, ui: &Ui) -> anyhow::Result<Outcome> {
    let Attach {
        db: location,
        id,
        name,
        file,
        content_type,
        rev,
    } = args;
    let rev = rev.as_deref().map(super::docs::parse_rev).transpose()?;
    let content_type = content_type.unwrap_or_else(|| guess_type(&file).to_owned());
    let reader = tokio::fs::File::open(&file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let length = reader
        .metadata()
        .await
        .with_context(|| format!("reading the size of {}", file.display()))?
        .len();
    let db = with_location(&location, super::open(&location))?;
    let what = || {
        format!(
            "attaching {} as {name:?} to document {id:?} in {}",
            file.display(),
            settee::redact(&location)
        )
    };
    let rev = match rev {
        Some(rev) => Some(rev),
        None => current_rev(&db, &id)
            .await
            .map_err(|e| failed(e, what(), &location, &id))?,
    };
    let bar = bar(ui, Some(length));
    let reader = Counted {
        inner: reader,
        bar: bar.clone(),
    };
    let written = db
        .put_attachment_from(
            &id,
            rev.as_ref(),
            &name,
            &content_type,
            reader,
            Some(length),
        )
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let rev = written.map_err(|e| failed(e, what(), &location, &id))?;
    print_json(&serde_json::json!({"ok": true, "id": id, "rev": rev}))?;
    Ok(Outcome::Clean)
}

/// `settee get-attachment`: attachment NAME of document ID streamed out to FILE (or
/// stdout); with a FILE, prints `{"ok":true,"id":...,"name":...,"length":...}`.
pub(crate) async fn get_attachment(args: GetAttachment, ui: &Ui) -> anyhow::Result<Outcome> {
    let GetAttachment {
        db: location,
        id,
        name,
        file,
        rev,
    } = args;
    let rev = rev.as_deref().map(super::docs::parse_rev).transpose()?;
    let db = existing(&location)?;
    let what = || {
        format!(
            "reading attachment {name:?} of document {id:?} from {}",
            settee::redact(&location)
        )
    };
    let att = db
        .get_attachment(&id, &name, rev.as_ref())
        .await
        .map_err(|e| failed(e, what(), &location, &id))?;
    let to_stdout = file.as_os_str() == "-";
    let bar = bar(ui, att.length);
    let mut body = att.body;
    let mut length = 0u64;
    if to_stdout {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = body.try_next().await.with_context(what)? {
            out.write_all(&chunk)?;
            length += chunk.len() as u64;
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
        }
        out.flush()?;
    } else {
        // Into a file beside FILE, renamed when complete: a broken download never leaves a
        // truncated FILE that looks whole.
        let part = part_path(&file);
        let result: anyhow::Result<()> = async {
            let mut out = tokio::fs::File::create(&part)
                .await
                .with_context(|| format!("creating {}", part.display()))?;
            while let Some(chunk) = body.try_next().await.with_context(what)? {
                out.write_all(&chunk)
                    .await
                    .with_context(|| format!("writing {}", part.display()))?;
                length += chunk.len() as u64;
                if let Some(bar) = &bar {
                    bar.inc(chunk.len() as u64);
                }
            }
            out.sync_all()
                .await
                .with_context(|| format!("writing {}", part.display()))?;
            tokio::fs::rename(&part, &file)
                .await
                .with_context(|| format!("renaming {} to {}", part.display(), file.display()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !to_stdout {
        print_json(&serde_json::json!({
            "ok": true,
            "id": id,
            "name": name,
            "file": file.display().to_string(),
            "length": length,
            "content_type": att.content_type,
        }))?;
    }
    Ok(Outcome::Clean)
}

/// The document's current revision, or `None` when there is no document yet (the
/// attachment then starts it).
async fn current_rev(db: &Db, id: &str) -> settee::Result<Option<Rev>> {
    match db.get(id, &ReadOptions::default()).await {
        Ok(doc) => Ok(doc
            .get("_rev")
            .and_then(serde_json::Value::as_str)
            .and_then(|r| r.parse().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `err` with what failed (`what`: the document, the attachment, the database's redacted
/// location) and, for the errors a user can fix, what to do about it.
fn failed(err: settee::Error, what: String, location: &str, id: &str) -> anyhow::Error {
    let shown = settee::redact(location);
    let advice = match err.kind() {
        ErrorKind::NotFound => {
            format!(" (the document's attachments are listed by `settee get {shown} {id}`)")
        }
        ErrorKind::Conflict => format!(
            " (the document changed meanwhile: give its current --rev from \
             `settee get {shown} {id}`, or leave --rev out)"
        ),
        ErrorKind::Unauthorized => " (check the user in the URL, http://user@host:5984/db, and \
             the password in SETTEE_PASSWORD)"
            .to_owned(),
        ErrorKind::Offline => " (is the server running and reachable? then try again)".to_owned(),
        _ => String::new(),
    };
    anyhow::Error::new(err).context(format!("{what}{advice}"))
}

/// A progress bar on stderr for `length` bytes, when there is a terminal to draw it on and
/// the file is big.
fn bar(ui: &Ui, length: Option<u64>) -> Option<indicatif::ProgressBar> {
    let length = length.filter(|l| ui.bar && *l >= BAR_FROM)?;
    let pb = indicatif::ProgressBar::new(length);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

/// Where a download is written before it is complete: beside `file`, so that the rename
/// stays on one file system.
fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".settee-part");
    file.with_file_name(name)
}

/// A MIME type for a file name's extension: the types notes carry (images, documents,
/// recordings), else `application/octet-stream`. A small table on purpose; `--type` gives
/// any other.
fn guess_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "json" => "application/json",
        "js" => "text/javascript",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

/// A reader that moves a progress bar by what it reads.
struct Counted<R> {
    inner: R,
    bar: Option<indicatif::ProgressBar>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(bar)) = (&polled, &self.bar) {
            bar.inc(buf.filled().len().saturating_sub(before) as u64);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_extension_in_any_case() {
        assert_eq!(guess_type(Path::new("a/photo.JPG")), "image/jpeg");
        assert_eq!(guess_type(Path::new("talk.m4a")), "audio/mp4");
        assert_eq!(guess_type(Path::new("README")), "application/octet-stream");
        assert_eq!(
            guess_type(Path::new("x.unknown")),
            "application/octet-stream"
        );
    }

    #[test]
    fn a_download_is_written_beside_its_file() {
        assert_eq!(
            part_path(Path::new("/tmp/out.bin")),
            Path::new("/tmp/out.bin.settee-part")
        );
        assert_eq!(part_path(Path::new("out")), Path::new("out.settee-part"));
    }
}
