//! The running server: the listening socket, one hyper connection task per client (a cap
//! on open connections, bounded headers, a header timeout that also closes idle
//! connections, a timeout on stalled bodies), and the per-request path every request takes: CORS preflight,
//! authentication, routing, CORS and common headers on the way out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::options::{Admin, ServerOptions};
use crate::registry::Registry;
use crate::request;
use crate::route;
use crate::state::{new_state, State};
use crate::uuid::new_uuid;

/// A running `settee serve`: CouchDB's HTTP API over Settee stores.
///
/// ```no_run
/// # async fn demo() -> Result<(), settee_server::Error> {
/// use settee_server::{Server, ServerOptions};
/// let server = Server::start(ServerOptions {
///     bind: "127.0.0.1:0".parse().unwrap(),
///     data_dir: Some("/tmp/settee-data".into()),
///     ..Default::default()
/// })
/// .await?;
/// println!("listening on http://{}", server.local_addr());
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The advertisement files written (removed when the server stops).
    adverts: Vec<std::path::PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl Server {
    /// Opens the stores, binds the address and starts serving on the current tokio
    /// runtime. Returns once the socket listens.
    ///
    /// # Errors
    /// [`Error::Config`] for options that do not make a server (no admin on a non-loopback
    /// address, two stores with one name, an unreadable data directory); [`Error::Store`]
    /// if a store cannot be opened (in use by another process, not a store);
    /// [`Error::Bind`] if the address cannot be bound.
    pub async fn start(opts: ServerOptions) -> Result<Server> {
        if opts.admin.is_none() && opts.admin_party && !is_loopback(&opts.bind) {
            return Err(Error::Config {
                reason: format!(
                    "{} is not a loopback address: give an admin (--admin) before serving on the network",
                    opts.bind
                ),
            });
        }
        if opts.stores.is_empty() && opts.databases.is_empty() && opts.data_dir.is_none() {
            return Err(Error::Config {
                reason: "nothing to serve: give store directories or a data directory".into(),
            });
        }
        let registry = open_registry(&opts).await?;
        let listener = TcpListener::bind(opts.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.bind.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: opts.bind.to_string(),
            source,
        })?;
        let shutdown = CancellationToken::new();
        let owner = opts.advertise.then(|| Admin {
            name: "_owner".into(),
            password: new_uuid(),
        });
        let adverts = match &owner {
            Some(owner) => advertise(&registry, addr, owner),
            None => Vec::new(),
        };
        let state = new_state(&opts, registry, owner, shutdown.clone()).await?;
        tracing::info!(%addr, "settee serve listening");
        let task = tokio::spawn(accept_loop(listener, state, shutdown.clone()));
        Ok(Server {
            addr,
            shutdown,
            task,
            adverts,
        })
    }

    /// The address the server listens on (with the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server stops (it runs until [`Server::shutdown`] or the runtime
    /// ends).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Stops accepting connections, ends live feeds and waits for the accept loop to end.
    /// Requests in progress on open connections finish on their own.
    pub async fn shutdown(mut self) {
        self.remove_adverts();
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
    }

    fn remove_adverts(&mut self) {
        for path in self.adverts.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.remove_adverts();
        self.shutdown.cancel();
    }
}

/// The served databases, opened (and `_users` created in a data directory).
pub(crate) async fn open_registry(opts: &ServerOptions) -> Result<Registry> {
    let registry = Registry::new(opts)?;
    registry.open_all().await?;
    registry.ensure_users_db().await?;
    Ok(registry)
}

/// Writes an advertisement into every served store (see [`settee_store::Advert`]); a store whose file
/// cannot be written is served all the same, and the failure logged.
fn advertise(registry: &Registry, addr: SocketAddr, owner: &Admin) -> Vec<std::path::PathBuf> {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut written = Vec::new();
    for (name, path) in registry.paths() {
        let advert = settee_store::Advert {
            url: format!("http://{host}/{}", crate::location::encode_segment(&name)),
            user: owner.name.clone(),
            password: owner.password.clone(),
            pid: std::process::id(),
        };
        match advert.write(&path) {
            Ok(p) => written.push(p),
            Err(e) => {
                tracing::warn!(store = %path.display(), error = %e, "cannot advertise the store")
            }
        }
    }
    written
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let router = axum::Router::new().fallback({
        let state = state.clone();
        move |req: Request| {
            let state = state.clone();
            async move { handle(state, req).await }
        }
    });
    let connections = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
    loop {
        // Both futures are cancel-safe: `accept` loses no connection when not polled to
        // completion, and a token can be waited on again.
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: log, pause, go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // The cap on open connections: past it a new connection is closed at once, before
        // any byte of it is read (CouchDB's mochiweb refuses past its `max` alike). Slow
        // clients cannot hold their places long: the header timeout below drops them.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(
                max = state.limits.max_connections,
                "too many open connections: one closed at once"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address reaches `handle` (the login lockout counts by address).
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        let limits = state.limits;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // HTTP/1 only, and no upgrades (CouchDB's API has none): hyper's header timer
            // then runs from the first moment the connection waits for a request, so a
            // client that sends nothing, sends headers a byte at a time, or idles between
            // requests is dropped after `header_timeout`.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .max_headers(limits.max_headers);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
}

/// The address a connection comes from.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// Every request: preflight, authentication, routing, and the headers every answer has.
pub(crate) async fn handle(state: Arc<State>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    // A body that stops arriving ends its request (408) instead of holding it forever.
    let body = crate::body::idle_bounded(body, state.limits.body_idle_timeout);
    if let Some(cors) = &state.cors {
        if let Some(res) = cors.preflight(&parts.method, &parts.headers) {
            return res;
        }
    }
    let method = parts.method.clone();
    let path = parts.uri.to_string();
    let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
    let mut renew = None;
    let mut res = match state
        .auth
        .authenticate(&state.registry, &parts.headers, peer)
        .await
    {
        Ok(auth) => {
            renew = auth.renew_cookie;
            let request = request::Request {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers.clone(),
                body,
                user: auth.user,
                peer,
            };
            match route::dispatch(&state, request).await {
                Ok(res) => res,
                Err(e) => e.into_response(),
            }
        }
        Err(e) => {
            drop(body);
            e.into_response()
        }
    };
    let h = res.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("must-revalidate"));
    if let Some(cookie) = renew {
        h.insert(header::SET_COOKIE, cookie);
    }
    if let Some(cors) = &state.cors {
        cors.decorate(&parts.headers, &mut res);
    }
    tracing::debug!(%method, path, status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64, "request");
    res
}

const SERVER_HEADER: &str = concat!("Settee/", env!("CARGO_PKG_VERSION"));

/// Compile-time check: axum needs the request future to be `Send` (a `&Request` held
/// across an `.await` is not, since a body is not `Sync`); this names the culprit.
#[allow(dead_code)]
fn handler_future_is_send(state: Arc<State>, req: Request) {
    fn is_send<T: Send>(_: T) {}
    is_send(handle(state, req));
}
