//! How the fault proxy carries out a decision on the wire: forwarding (whole answers with a
//! `Content-Length`, continuous feeds streamed chunked), answering itself, cutting, stalling,
//! going silent, rewinding `since` and editing answers. Which fault meets which request is
//! `mod.rs`'s decision.

use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{edit, lock, Endpoint, Fault, Shared};
use crate::http::{encode, forward, send_upstream, Reply, Request};

impl Shared {
    /// Answers `req` as `fault` says; `false` when the connection is to be closed.
    pub(super) async fn answer(
        &self,
        sock: &mut TcpStream,
        mut req: Request,
        fault: Option<Fault>,
    ) -> bool {
        let continuous = Endpoint::ContinuousChanges.matches(&req);
        match fault {
            None if continuous => self.stream(sock, req, false).await,
            None => {
                let reply = self.forward(req).await;
                sock.write_all(&encode(&reply)).await.is_ok()
            }
            Some(Fault::Close) => false,
            Some(Fault::Status {
                status,
                retry_after,
            }) => {
                let mut reply = Reply::json(
                    status,
                    &serde_json::json!({"error": "injected", "reason": format!("fault proxy: {status}")}),
                );
                if let Some(s) = retry_after {
                    reply.headers.push(("Retry-After".into(), s.to_string()));
                }
                sock.write_all(&encode(&reply)).await.is_ok()
            }
            Some(Fault::CutAt(at)) => {
                let bytes = encode(&self.forward(req).await);
                let at = at
                    .unwrap_or_else(|| lock(&self.rng).gen_range(0..bytes.len()))
                    .min(bytes.len().saturating_sub(1));
                let _ = sock.write_all(&bytes[..at]).await;
                false
            }
            Some(Fault::Stall(d)) => {
                let (client, upstream) = (self.client.clone(), self.upstream.clone());
                tokio::spawn(async move { forward(&client, &upstream, req).await });
                hold(sock, d).await;
                false
            }
            Some(Fault::CutFeedMidRow) if continuous => self.stream(sock, req, true).await,
            Some(Fault::CutFeedMidRow) => {
                let reply = self.forward(req).await;
                let cut = cut_point(&reply.body).unwrap_or(reply.body.len() / 2);
                cut_body(sock, &reply, cut).await
            }
            Some(Fault::CutBodyAt(n)) => {
                let reply = self.forward(req).await;
                cut_body(sock, &reply, n).await
            }
            Some(Fault::SilentFeed(d)) => {
                let Ok(resp) = send_upstream(&self.client, &self.upstream, req).await else {
                    return false;
                };
                let head = chunked_head(resp.status().as_u16(), content_type(&resp));
                drop(resp);
                if sock.write_all(&head).await.is_ok() {
                    hold(sock, d).await;
                }
                false
            }
            Some(Fault::ChangesRewind) => {
                req.target = self.rewound(&req);
                let reply = self.forward(req).await;
                sock.write_all(&encode(&reply)).await.is_ok()
            }
            Some(f) => {
                let Some(edit) = f.edit() else { return false };
                let shown = req.clone();
                let reply = self.forward(req).await;
                let (reply, note) = edit::apply(edit, reply, &mut lock(&self.rng));
                self.note(&shown, note.as_deref().unwrap_or("nothing to edit"));
                sock.write_all(&encode(&reply)).await.is_ok()
            }
        }
    }

    /// Forwards `req` and reads the whole answer, noting a `_changes` answer's `last_seq`.
    async fn forward(&self, req: Request) -> Reply {
        let changes = Endpoint::Changes.matches(&req);
        let path = req.path().to_owned();
        let reply = forward(&self.client, &self.upstream, req).await;
        if changes && reply.status == 200 {
            if let Some(seq) = reply
                .body_json()
                .and_then(|b| b.get("last_seq").cloned())
                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned))
            {
                let mut plan = lock(&self.plan);
                let seqs = plan.seqs.entry(path).or_default();
                if !seqs.contains(&seq) {
                    seqs.push(seq);
                }
            }
        }
        reply
    }

    /// `req`'s target with `since` moved back to a `last_seq` seen before the one it asks
    /// from (or to `0`; a request without `since` is left as it is).
    fn rewound(&self, req: &Request) -> String {
        let Some((path, query)) = req.target.split_once('?') else {
            return req.target.clone();
        };
        let since = req.query("since").unwrap_or_default();
        let earlier = {
            let plan = lock(&self.plan);
            // Only sequences before the one asked from: a rewind never skips ahead (a server
            // that answered from a later sequence would lose rows, which no server does).
            // The proxy may read the number CouchDB puts before the `-` (the replicator may
            // not: to it sequences are opaque); seen order is not feed order, as several
            // replications and rewinds read the same feed.
            let number = |s: &str| s.split('-').next().and_then(|n| n.parse::<u64>().ok());
            let asked = number(&since).unwrap_or(0);
            let seen: Vec<String> = plan
                .seqs
                .get(req.path())
                .map(|seen| {
                    seen.iter()
                        .filter(|s| number(s).is_some_and(|n| n < asked))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let mut rng = lock(&self.rng);
            match rng.gen_range(0..=seen.len()) {
                0 => "0".to_owned(),
                i => seen[i - 1].clone(),
            }
        };
        self.note(req, &format!("since rewound to {earlier}"));
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            out.append_pair(&k, if k == "since" { &earlier } else { &v });
        }
        format!("{path}?{}", out.finish())
    }

    /// Streams the answer to `req` chunked, as it comes; with `cut_mid_row`, stops (closing
    /// the connection) inside the second row, once the body read so far has one.
    async fn stream(&self, sock: &mut TcpStream, req: Request, cut_mid_row: bool) -> bool {
        let mut resp = match send_upstream(&self.client, &self.upstream, req).await {
            Ok(resp) => resp,
            Err(_) => return false,
        };
        let head = chunked_head(resp.status().as_u16(), content_type(&resp));
        if sock.write_all(&head).await.is_err() {
            return false;
        }
        let (mut body, mut sent) = (Vec::new(), 0);
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return sock.write_all(b"0\r\n\r\n").await.is_ok(),
                Err(_) => return false,
            };
            body.extend_from_slice(&chunk);
            let cut_at = if cut_mid_row { cut_point(&body) } else { None };
            let end = cut_at.unwrap_or(body.len());
            if end > sent {
                let mut out = format!("{:x}\r\n", end - sent).into_bytes();
                out.extend_from_slice(&body[sent..end]);
                out.extend_from_slice(b"\r\n");
                if sock.write_all(&out).await.is_err() {
                    return false;
                }
                sent = end;
            }
            if cut_at.is_some() {
                return false;
            }
        }
    }
}

/// Sends `reply` with its whole head and its body cut after `at` bytes (at most all but
/// the last byte); `false`: the connection is to be closed.
async fn cut_body(sock: &mut TcpStream, reply: &Reply, at: usize) -> bool {
    let head_len = encode(&Reply {
        body: Vec::new(),
        ..reply.clone()
    })
    .len();
    let at = at.min(reply.body.len().saturating_sub(1));
    let _ = sock.write_all(&encode(reply)[..head_len + at]).await;
    false
}

/// Where to cut a `_changes` body: a few bytes into its second row, once the body read so
/// far has one.
fn cut_point(body: &[u8]) -> Option<usize> {
    const ROW: &[u8] = b"\"seq\"";
    let mut rows = body
        .windows(ROW.len())
        .enumerate()
        .filter(|(_, w)| *w == ROW)
        .map(|(i, _)| i);
    let _first = rows.next()?;
    rows.next().map(|second| second + 3)
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned()
}

fn chunked_head(status: u16, content_type: String) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

/// Keeps the connection open and silent for `d` (or until the client closes it).
async fn hold(sock: &mut TcpStream, d: Duration) {
    let _ = tokio::time::timeout(d, async {
        let mut scratch = [0u8; 4096];
        while matches!(sock.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_is_cut_inside_its_second_row() {
        let body = b"{\"seq\":\"1-a\",\"id\":\"a\"}\n{\"seq\":\"2-b\",\"id\":\"b\"}\n";
        let at = cut_point(body).unwrap();
        assert!(at > body.iter().position(|b| *b == b'\n').unwrap());
        assert!(at < body.len() - 1);
        assert_eq!(cut_point(b"{\"seq\":1}\n\n"), None);
    }
}
