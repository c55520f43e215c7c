//! Servers that misbehave on purpose, for client and replicator behaviour that a real server
//! cannot be made to show on demand: [`serve`] answers every request with a handler (a
//! fake server), and [`proxy`] forwards requests to a real server, letting a rule answer
//! some itself or edit the answers (a result left out of `_bulk_get`, a `_local` write
//! refused as a read-only gateway would).
//!
//! Both speak just enough HTTP/1.1 for Settee's client: keep-alive connections, bodies with
//! `Content-Length`, answers with `Content-Length`. They run on the test's tokio runtime and
//! stop with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The path and query, as sent (`/db/_changes?since=3`).
    pub target: String,
    /// The header lines, as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A query parameter's value, percent-decoded (`+` is a space).
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers (`Content-Length` is added; `Content-Type` is JSON unless given).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    /// The body as JSON, if it is.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A boxed future of a [`Reply`].
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Every request a server received, in order.
pub type Log = Arc<Mutex<Vec<Request>>>;

/// Serves each request with `handler` (requests on one connection one after another),
/// recording them. Returns the base URL (`http://127.0.0.1:PORT`) and the log.
///
/// # Panics
/// If no loopback port can be bound.
pub async fn serve<F>(handler: F) -> (String, Log)
where
    F: Fn(Request) -> ReplyFuture + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .expect("a bound listener has an address")
    );
    let log: Log = Arc::default();
    let handler = Arc::new(handler);
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = handler.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut sock, &mut buf).await {
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(req.clone());
                    let reply = handler(req).await;
                    if sock.write_all(&encode(&reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, log)
}

/// What [`proxy`]'s rule does with a request.
pub enum Rule {
    /// Forward it and pass the answer on.
    Forward,
    /// Answer it without forwarding.
    Answer(Reply),
    /// Forward it and pass on the answer as edited.
    Edit(Box<dyn FnOnce(Reply) -> Reply + Send>),
    /// Forward this request instead (the one received, edited: a `since` rewound as a
    /// server may rewind it) and pass on the answer as edited.
    ForwardInstead(Request, Box<dyn FnOnce(Reply) -> Reply + Send>),
}

/// A proxy to `upstream` (a base URL such as the test server's): each request goes through
/// `rule`. Requests are forwarded with their headers (credentials included) and body, asking
/// the upstream for an uncompressed answer so that an edit sees JSON. Returns the proxy's
/// base URL and its log.
///
/// # Panics
/// If no loopback port can be bound.
pub async fn proxy<F>(upstream: &str, rule: F) -> (String, Log)
where
    F: Fn(&Request) -> Rule + Send + Sync + 'static,
{
    let upstream = upstream.trim_end_matches('/').to_owned();
    let client = upstream_client();
    let rule = Arc::new(rule);
    serve(move |req| {
        let action = rule(&req);
        let (client, upstream) = (client.clone(), upstream.clone());
        Box::pin(async move {
            let (req, edit) = match action {
                Rule::Answer(reply) => return reply,
                Rule::Forward => (req, None),
                Rule::Edit(edit) => (req, Some(edit)),
                Rule::ForwardInstead(edited, edit) => (edited, Some(edit)),
            };
            let reply = forward(&client, &upstream, req).await;
            match edit {
                Some(edit) => edit(reply),
                None => reply,
            }
        })
    })
    .await
}

/// The client a proxy forwards with. It asks for uncompressed answers (`no_gzip`), as the
/// client it stands in for may have: pouchdb-server gzips a continuous `_changes` feed when
/// asked to, and its encoder holds the rows back, so a gzipped feed never reaches the client.
pub(crate) fn upstream_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("a client with no TLS settings of its own builds")
}

/// Sends `req` to `upstream` (its headers, minus the hop-by-hop ones and `Accept-Encoding`,
/// so that the answer comes uncompressed) and returns the answer as it starts to arrive.
pub(crate) async fn send_upstream(
    client: &reqwest::Client,
    upstream: &str,
    req: Request,
) -> reqwest::Result<reqwest::Response> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or_default();
    let mut rb = client.request(method, format!("{upstream}{}", req.target));
    for (k, v) in &req.headers {
        let skip = ["host", "content-length", "connection", "accept-encoding"];
        if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            rb = rb.header(k.as_str(), v.as_str());
        }
    }
    rb.body(req.body).send().await
}

/// Forwards `req` and reads the whole answer (a 502 if the upstream cannot be reached).
pub(crate) async fn forward(client: &reqwest::Client, upstream: &str, req: Request) -> Reply {
    let resp = match send_upstream(client, upstream, req).await {
        Ok(resp) => resp,
        Err(e) => {
            return Reply::json(
                502,
                &serde_json::json!({"error": "bad_gateway", "reason": e.to_string()}),
            )
        }
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| *k == reqwest::header::CONTENT_TYPE)
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// Reads one request (head, then a body of `Content-Length` bytes); `None` when the
/// connection ends.
pub(crate) async fn read_request(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 16 * 1024];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 16 * 1024];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

pub(crate) fn encode(reply: &Reply) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
    if !reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        out.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    bytes
}
