//! The HTTP side of a client: the target database parsed from its URL, and [`Conn`], one
//! keep-alive HTTP/1 connection (as a device's), opened again after a failure. Each client
//! has its own, so a thousand clients are a thousand sockets at the server.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a connect may take before it counts as an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the clients go: `http://user:password@host:port/db`.
#[derive(Debug)]
pub struct Target {
    /// `host:port`, for the socket and the `Host` header.
    pub authority: String,
    /// `Basic ...`, when the URL has credentials.
    auth: Option<HeaderValue>,
    /// `/db`, percent-encoded as given.
    pub db_path: String,
}

impl Target {
    /// Parses `http://[user:password@]host:port/db`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| "only http:// URLs are supported".to_string())?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err("the URL names no database".into()),
        };
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let auth = match userinfo {
            Some(u) => {
                let plain = percent_decode(u);
                let value = format!("Basic {}", base64(plain.as_bytes()));
                Some(HeaderValue::from_str(&value).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let db_path = path.trim_end_matches('/').to_string();
        if db_path.len() < 2 {
            return Err("the URL names no database".into());
        }
        Ok(Target {
            authority: host.to_string(),
            auth,
            db_path,
        })
    }
}

/// One connection, opened on first use and again after any failure.
pub struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection not yet opened.
    pub fn new() -> Conn {
        Conn { sender: None }
    }

    /// Sends one request and returns the answer's head (the body streams). A failure drops
    /// the connection, so the next request opens a new one.
    pub async fn send(
        &mut self,
        target: &Target,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, String> {
        let result = self.try_send(target, method, path_and_query, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        target: &Target,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(connect(target).await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err("no connection".into());
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, target.authority.as_str())
            .header("accept", "application/json");
        if let Some(auth) = &target.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let req = match body {
            Some(b) => req
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(b)),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| format!("request: {e}"))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))
    }

    /// Drops the connection (after an answer that leaves it in an unknown state).
    pub fn reset(&mut self) {
        self.sender = None;
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.authority))
        .await
        .map_err(|_| "connect: timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when the connection closes; its error reaches the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Reads a whole body, failing if no byte arrives for `idle` (a live feed's heartbeats
/// keep it under that).
pub async fn read_body(res: Response<Incoming>, idle: Duration) -> Result<Vec<u8>, String> {
    let mut body = res.into_body();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(format!("body: nothing for {}s", idle.as_secs())),
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => return Err(format!("body: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Percent-encodes a query value (sequences may hold any character).
pub fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ABC[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"admin:pw"), "YWRtaW46cHc=");
    }

    #[test]
    fn url_parts() {
        let t = Target::parse("http://a%40b:p@127.0.0.1:5984/notes").unwrap();
        assert_eq!(t.authority, "127.0.0.1:5984");
        assert_eq!(t.db_path, "/notes");
        assert_eq!(
            t.auth.unwrap(),
            format!("Basic {}", base64(b"a@b:p")).as_str()
        );
        assert_eq!(encode_query("1-g1A_x"), "1-g1A_x");
        assert_eq!(encode_query("[1,\"a\"]"), "%5B1%2C%22a%22%5D");
    }
}
