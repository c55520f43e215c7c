//! `_changes`: one response (`feed=normal|longpoll`) or a continuous stream parsed line by
//! line. What to do with the changes, and where to resume, is the caller's business.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::call::Call;
use crate::{Change, ChangesStyle, Error, RedactedUrl, RemoteDb, Result, Seq};

/// The longest line a continuous feed may send (a change with `include_docs` and inline
/// attachments can be large). Beyond it the stream fails instead of growing without bound.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// `feed=`: how the server sends changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Feed {
    /// One response with what there is now.
    #[default]
    Normal,
    /// Like `Normal`, but waits (up to `timeout`) until there is at least one change.
    Longpoll,
    /// One line per change, as they happen ([`RemoteDb::changes_stream`]).
    Continuous,
}

/// Which documents the feed reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ChangesFilter {
    /// Every document.
    #[default]
    None,
    /// `filter=_doc_ids` with these ids (sent in a `POST` body).
    DocIds(Vec<String>),
    /// `filter=_selector` with this Mango selector (sent in a `POST` body).
    Selector(Value),
    /// A design document's filter function `ddoc/name`, with its query parameters.
    Named {
        /// `ddoc/name`.
        name: String,
        /// Extra query parameters the filter reads from `req.query`.
        params: BTreeMap<String, String>,
    },
    /// `filter=_view&view=ddoc/view`.
    View(String),
    /// `filter=_design`: design documents only.
    Design,
}

/// The answer of a `normal` or `longpoll` feed: `settee_wire`'s [`Changes`](settee_wire::Changes)
/// with the server's opaque sequences.
pub type ChangesResponse = settee_wire::Changes<Seq>;

/// Options of [`RemoteDb::changes`] and [`RemoteDb::changes_stream`]; each field is the
/// CouchDB query parameter of the same name. The default asks for `style=all_docs`
/// (CouchDB's own default is `main_only`), because a replicator that sees only winners
/// loses conflicts.
///
/// Not the store's `ChangesOptions`, on purpose: this is an HTTP request (feeds,
/// heartbeats, server-side filters, an opaque `since`); the store's is a query it answers
/// from its own index. The `style`, the rows and the answer are `settee_wire`'s, shared.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesOptions {
    /// `normal` or `longpoll` for [`RemoteDb::changes`]; [`RemoteDb::changes_stream`] always
    /// asks for `continuous`.
    pub feed: Feed,
    /// Which revisions to list; default `all_docs`.
    pub style: ChangesStyle,
    /// Start after this sequence (`None`: from the beginning). Sent back exactly as the
    /// server gave it.
    pub since: Option<Seq>,
    /// At most this many changes.
    pub limit: Option<u64>,
    /// Send a newline after this much silence (keeps the connection and the read timeout
    /// alive). The continuous stream uses 10 s when this is `None`, as the replication
    /// protocol recommends.
    pub heartbeat: Option<Duration>,
    /// How long longpoll and continuous feeds wait for changes before ending.
    pub timeout: Option<Duration>,
    /// Compute real sequences only every N rows (CouchDB 2+).
    pub seq_interval: Option<u64>,
    /// Include each changed document.
    pub include_docs: bool,
    /// Include `_conflicts` in the documents (with `include_docs`).
    pub conflicts: bool,
    /// Newest first.
    pub descending: bool,
    /// Which documents to report.
    pub filter: ChangesFilter,
}

impl Default for ChangesOptions {
    fn default() -> ChangesOptions {
        ChangesOptions {
            feed: Feed::default(),
            style: ChangesStyle::AllDocs,
            since: None,
            limit: None,
            heartbeat: None,
            timeout: None,
            seq_interval: None,
            include_docs: false,
            conflicts: false,
            descending: false,
            filter: ChangesFilter::default(),
        }
    }
}

/// An item of a continuous feed.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangesEvent {
    /// A change.
    Change(Change),
    /// The feed ended normally (`limit` or `timeout` reached); resume from this sequence.
    LastSeq(Seq),
}

impl RemoteDb {
    /// `_changes` with `feed=normal` or `feed=longpoll` (from [`ChangesOptions::feed`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `opts.feed` is `Continuous` (use
    /// [`changes_stream`](Self::changes_stream)); [`Error::BadRequest`] if the server
    /// rejects a parameter or filter;
    /// [`Error::NotFound`]; [`Error::Transport`]; [`Error::InvalidResponse`].
    pub async fn changes(&self, opts: &ChangesOptions) -> Result<ChangesResponse> {
        if opts.feed == Feed::Continuous {
            return Err(Error::InvalidArgument {
                reason: "feed=continuous is read with changes_stream()".into(),
            });
        }
        let call = self.changes_call(opts, opts.feed)?;
        self.client.send_json(call).await
    }

    /// A continuous `_changes` feed as a stream, read line by line: memory holds one line
    /// at a time (at most 64 MiB). The stream ends after [`ChangesEvent::LastSeq`] (when the
    /// server ends the feed because of `limit` or `timeout`); dropping it closes the
    /// connection.
    ///
    /// If the connection drops, the stream yields an error ([`Error::FeedInterrupted`] or
    /// [`Error::Transport`]) and ends; resume with `since` = the `seq` of the last change
    /// received. Changes may then be repeated, never skipped.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// use settee_couch::{ChangesEvent, ChangesOptions, RemoteDb};
    /// # async fn run() -> settee_couch::Result<()> {
    /// let db = RemoteDb::from_url("http://127.0.0.1:5984/notes")?;
    /// let mut feed = Box::pin(db.changes_stream(ChangesOptions::default()));
    /// while let Some(event) = feed.next().await {
    ///     match event? {
    ///         ChangesEvent::Change(change) => println!("{} {:?}", change.id, change.changes),
    ///         ChangesEvent::LastSeq(seq) => println!("ended at {seq}"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Items are `Err` for the same errors as [`changes`](Self::changes), and for
    /// [`Error::FeedInterrupted`] when the feed ends without its `last_seq` line.
    pub fn changes_stream(
        &self,
        opts: ChangesOptions,
    ) -> impl Stream<Item = Result<ChangesEvent>> + Send + 'static {
        let db = self.clone();
        async_stream::try_stream! {
            let mut opts = opts;
            if opts.heartbeat.is_none() {
                opts.heartbeat = Some(Duration::from_secs(10));
            }
            // Uncompressed: a gzip encoder on the server (pouchdb-server's `compression`
            // middleware) buffers the feed's lines and heartbeats until a block fills, so a
            // continuous feed would stall.
            let call = db
                .changes_call(&opts, Feed::Continuous)?
                .header(reqwest::header::ACCEPT_ENCODING, reqwest::header::HeaderValue::from_static("identity"));
            let method = call.method.clone();
            let shown = RedactedUrl::new(&call.url);
            let resp = db.client.send(call).await?;
            let mut body = resp.bytes_stream();
            let mut line: Vec<u8> = Vec::new();
            let mut ended = false;
            'read: while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::transport(&method, &shown, e))?;
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    match rest.iter().position(|&b| b == b'\n') {
                        None => {
                            line.extend_from_slice(rest);
                            rest = &[];
                        }
                        Some(i) => {
                            line.extend_from_slice(&rest[..i]);
                            rest = &rest[i + 1..];
                            if let Some(event) = parse_line(&line, &method, &shown)? {
                                line.clear();
                                let last = matches!(event, ChangesEvent::LastSeq(_));
                                yield event;
                                if last {
                                    ended = true;
                                    break 'read;
                                }
                            }
                            line.clear();
                        }
                    }
                    if line.len() > MAX_LINE {
                        Err(Error::invalid(&method, &shown, "a _changes line is longer than 64 MiB"))?;
                    }
                }
            }
            if !ended {
                // A last line without its newline still counts (some servers end that way).
                match parse_line(&line, &method, &shown)? {
                    Some(ChangesEvent::LastSeq(seq)) => yield ChangesEvent::LastSeq(seq),
                    Some(change) => {
                        yield change;
                        Err(Error::FeedInterrupted { url: shown.clone() })?;
                    }
                    None => Err(Error::FeedInterrupted { url: shown.clone() })?,
                }
            }
        }
    }

    fn changes_call(&self, opts: &ChangesOptions, feed: Feed) -> Result<Call> {
        let mut url = self.join(&["_changes"]);
        let body = changes_query(&mut url, opts, feed);
        Ok(match body {
            None => Call::new(Method::GET, url),
            Some(body) => self
                .client
                .json_call(Method::POST, url, &body)?
                .idempotent(),
        })
    }
}

/// Parses one line of a continuous feed; `None` for a heartbeat (empty line).
fn parse_line(line: &[u8], method: &Method, url: &RedactedUrl) -> Result<Option<ChangesEvent>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| Error::invalid(method, url, e))?;
    if let Some(last) = value.get("last_seq") {
        if value.get("id").is_none() {
            return Ok(Some(ChangesEvent::LastSeq(Seq::from_json(last.clone()))));
        }
    }
    if value.get("error").is_some() {
        return Err(Error::invalid(
            method,
            url,
            format!("the feed reported an error: {value}"),
        ));
    }
    let change: Change =
        serde_json::from_value(value).map_err(|e| Error::invalid(method, url, e))?;
    Ok(Some(ChangesEvent::Change(change)))
}

/// Fills the query; returns the `POST` body when the filter needs one.
fn changes_query(url: &mut Url, opts: &ChangesOptions, feed: Feed) -> Option<Value> {
    let mut q = url.query_pairs_mut();
    q.append_pair(
        "feed",
        match feed {
            Feed::Normal => "normal",
            Feed::Longpoll => "longpoll",
            Feed::Continuous => "continuous",
        },
    );
    if opts.style == ChangesStyle::AllDocs {
        q.append_pair("style", ChangesStyle::AllDocs.as_str());
    }
    if let Some(since) = &opts.since {
        q.append_pair("since", &since.to_query());
    }
    if let Some(n) = opts.limit {
        q.append_pair("limit", &n.to_string());
    }
    if let Some(h) = opts.heartbeat {
        q.append_pair("heartbeat", &h.as_millis().max(1).to_string());
    }
    if let Some(t) = opts.timeout {
        q.append_pair("timeout", &t.as_millis().to_string());
    }
    if let Some(n) = opts.seq_interval {
        q.append_pair("seq_interval", &n.to_string());
    }
    for (name, on) in [
        ("include_docs", opts.include_docs),
        ("conflicts", opts.conflicts),
        ("descending", opts.descending),
    ] {
        if on {
            q.append_pair(name, "true");
        }
    }
    match &opts.filter {
        ChangesFilter::None => None,
        ChangesFilter::DocIds(ids) => {
            q.append_pair("filter", "_doc_ids");
            Some(serde_json::json!({ "doc_ids": ids }))
        }
        ChangesFilter::Selector(selector) => {
            q.append_pair("filter", "_selector");
            Some(serde_json::json!({ "selector": selector }))
        }
        ChangesFilter::Named { name, params } => {
            q.append_pair("filter", name);
            for (k, v) in params {
                q.append_pair(k, v);
            }
            None
        }
        ChangesFilter::View(view) => {
            q.append_pair("filter", "_view");
            q.append_pair("view", view);
            None
        }
        ChangesFilter::Design => {
            q.append_pair("filter", "_design");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rev;

    #[test]
    fn rows_parse_with_opaque_seqs() {
        let url = RedactedUrl::new(&Url::parse("http://h/db/_changes").unwrap());
        let line = br#"{"seq":"12-g1AAAA","id":"a","changes":[{"rev":"1-x"},{"rev":"2-y"}],"deleted":true}"#;
        let Some(ChangesEvent::Change(c)) = parse_line(line, &Method::GET, &url).unwrap() else {
            panic!("not a change");
        };
        assert_eq!(c.seq.as_json(), &Value::from("12-g1AAAA"));
        assert_eq!(
            c.changes.iter().map(Rev::to_string).collect::<Vec<_>>(),
            ["1-x", "2-y"]
        );
        assert!(c.deleted);
        let last = parse_line(br#"{"last_seq":7,"pending":0}"#, &Method::GET, &url).unwrap();
        assert_eq!(last, Some(ChangesEvent::LastSeq(Seq::from(7))));
        assert_eq!(parse_line(b"  ", &Method::GET, &url).unwrap(), None);
    }

    #[test]
    fn a_revision_no_rev_can_hold_is_kept_aside_not_an_error() {
        // Apache CouchDB stores `_revisions: {start: -1}` as rev "-1-b", and positions
        // beyond u64; the row (and the feed) must still be read.
        let url = RedactedUrl::new(&Url::parse("http://h/db/_changes").unwrap());
        let line = br#"{"seq":"9-g","id":"odd","changes":[{"rev":"-1-b"},{"rev":"0-"},{"rev":7},{"rev":"99999999999999999999999-x"}]}"#;
        let Some(ChangesEvent::Change(c)) = parse_line(line, &Method::GET, &url).unwrap() else {
            panic!("not a change");
        };
        assert_eq!(c.changes, ["0-".parse::<Rev>().unwrap()]);
        assert_eq!(c.invalid_revs, ["-1-b", "7", "99999999999999999999999-x"]);
        let page: ChangesResponse = serde_json::from_str(
            r#"{"results":[{"seq":1,"id":"a","changes":[{"rev":"1-a"}]},
                {"seq":2,"id":"b","changes":[{"rev":"-1-b"}],"deleted":true},
                {"seq":3,"id":"c","changes":[{"rev":"1-c"}]}],"last_seq":3}"#,
        )
        .unwrap();
        let ids: Vec<&str> = page.results.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(page.results[1].changes.is_empty());
        assert!(page.results[1].deleted);
        // Serialized, the invalid ones are listed apart.
        let v = serde_json::to_value(&page.results[1]).unwrap();
        assert_eq!(v["invalid_revs"], serde_json::json!(["-1-b"]));
    }

    #[test]
    fn doc_ids_filter_goes_in_the_body() {
        let mut url = Url::parse("http://h/db/_changes").unwrap();
        let opts = ChangesOptions {
            since: Some(Seq::from_json(Value::from("3-abc"))),
            filter: ChangesFilter::DocIds(vec!["a".into()]),
            ..Default::default()
        };
        let body = changes_query(&mut url, &opts, Feed::Normal);
        assert_eq!(
            url.query(),
            Some("feed=normal&style=all_docs&since=3-abc&filter=_doc_ids")
        );
        assert_eq!(body, Some(serde_json::json!({"doc_ids": ["a"]})));
    }

    #[test]
    fn selector_goes_in_the_body_and_named_filters_take_query_params() {
        let mut url = Url::parse("http://h/db/_changes").unwrap();
        let opts = ChangesOptions {
            style: ChangesStyle::MainOnly,
            filter: ChangesFilter::Selector(serde_json::json!({"kind": "note"})),
            ..Default::default()
        };
        let body = changes_query(&mut url, &opts, Feed::Longpoll);
        assert_eq!(url.query(), Some("feed=longpoll&filter=_selector"));
        assert_eq!(
            body,
            Some(serde_json::json!({"selector": {"kind": "note"}}))
        );

        let mut url = Url::parse("http://h/db/_changes").unwrap();
        let opts = ChangesOptions {
            limit: Some(5),
            heartbeat: Some(Duration::from_secs(10)),
            timeout: Some(Duration::from_millis(1500)),
            seq_interval: Some(5),
            include_docs: true,
            conflicts: true,
            filter: ChangesFilter::Named {
                name: "app/by_kind".into(),
                params: [("kind".to_owned(), "a b".to_owned())].into(),
            },
            ..Default::default()
        };
        assert_eq!(changes_query(&mut url, &opts, Feed::Continuous), None);
        assert_eq!(
            url.query(),
            Some(
                "feed=continuous&style=all_docs&limit=5&heartbeat=10000&timeout=1500\
                 &seq_interval=5&include_docs=true&conflicts=true&filter=app%2Fby_kind&kind=a+b"
            )
        );
    }
}
