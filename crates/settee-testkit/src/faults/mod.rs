//! A seeded fault-injecting HTTP proxy between a client (the replicator) and the test
//! server: the network and server failures real deployments meet, on cue or at random.
//!
//! [`FaultProxy`] reads each request (method, path, query, body: the HTTP/1.1 of
//! [`crate::http`]) and either forwards it untouched or applies a [`Fault`]: it refuses
//! connections, answers `503`/`429` (with or without `Retry-After`) itself, cuts an answer
//! at a byte (at byte 0 too, after forwarding: the server did the write and the client never
//! heard), stalls, cuts a `_changes` feed mid-row or lets it go silent, or edits the answer
//! as a broken or clustered server could (see [`Fault`]). A fault is scripted
//! ([`FaultProxy::inject`]: the next N requests to an [`Endpoint`]) or random
//! ([`FaultProxy::random`]: each request with a probability, from a menu).
//!
//! Random decisions come from one seeded generator. The seed is printed on stderr when the
//! proxy starts (a failing test shows it), and `SETTEE_TEST_SEED` replays it. The seed fixes
//! the sequence of decisions; which request meets which decision can still differ between
//! runs when requests run concurrently, so a replay is likely, not certain, to repeat a
//! failure. [`FaultProxy::injected`] lists what was done, in order, for the failure message.
//!
//! Answers to ordinary requests are read whole and sent on with a `Content-Length` (so that
//! they can be cut or edited); a continuous `_changes` feed is streamed, chunked, as it
//! comes. Each answer is the upstream's uncompressed body.

mod answer;
mod edit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::http::{read_request, Request};
use edit::Edit;

/// The environment variable that replays a seed.
pub const SEED_VAR: &str = "SETTEE_TEST_SEED";

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed once the request is read: not forwarded, not answered.
    Close,
    /// Answered by the proxy with this status (`503`, `429`, or `409`/`500` for a checkpoint
    /// write), not forwarded; with `Retry-After: N` seconds when given.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, in seconds.
        retry_after: Option<u32>,
    },
    /// Forwarded, and its answer (head and body) cut after this many bytes, then the
    /// connection closed. `None`: a random byte, 0 included.
    CutAt(Option<usize>),
    /// Forwarded, and its answer cut this many bytes into its body (the status and headers
    /// arrive whole: a `404` or `200` whose body never completes), then the connection
    /// closed.
    CutBodyAt(usize),
    /// Forwarded (in the background: the server acts on it), but the connection stays silent
    /// this long, then closes. Longer than the client's request timeout, it times out.
    Stall(Duration),
    /// A `_changes` answer (continuous feed or longpoll) cut in the middle of its second row
    /// (of its first when it has only one).
    CutFeedMidRow,
    /// A `_changes` feed whose head arrives and then nothing, no heartbeat either, for this
    /// long; then the connection closes.
    SilentFeed(Duration),
    /// One `_bulk_get` result left out (of a document asked for twice, when there is one).
    BulkGetDrop,
    /// One `_bulk_get` result sent twice.
    BulkGetDuplicate,
    /// The `_bulk_get` results in reverse order (and each document's `docs` shuffled).
    BulkGetReorder,
    /// Some `_changes` rows sent again at the end of the page.
    ChangesRepeat,
    /// A `_changes` request answered from an earlier `since` (one this proxy has seen as a
    /// `last_seq`, or `0`), as a clustered CouchDB does after a node restart.
    ChangesRewind,
    /// One document left out of a `_revs_diff` answer.
    RevsDiffOmit,
    /// One row left out of a `_bulk_docs` answer (with `new_edits=false` CouchDB lists only
    /// the refused documents, so a refusal goes unheard).
    BulkDocsDropRow,
}

impl Fault {
    fn edit(self) -> Option<Edit> {
        Some(match self {
            Fault::BulkGetDrop => Edit::BulkGetDrop,
            Fault::BulkGetDuplicate => Edit::BulkGetDuplicate,
            Fault::BulkGetReorder => Edit::BulkGetReorder,
            Fault::ChangesRepeat => Edit::ChangesRepeat,
            Fault::RevsDiffOmit => Edit::RevsDiffOmit,
            Fault::BulkDocsDropRow => Edit::BulkDocsDropRow,
            _ => return None,
        })
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Every request.
    Any,
    /// `_changes`, any feed.
    Changes,
    /// `_changes?feed=continuous`.
    ContinuousChanges,
    /// `POST _bulk_get`.
    BulkGet,
    /// `POST _bulk_get` with `Accept: multipart/mixed`: revisions read with their
    /// attachments' bytes.
    BulkGetMultipart,
    /// `POST _revs_diff`.
    RevsDiff,
    /// `POST _bulk_docs`.
    BulkDocs,
    /// `PUT {db}/{id}?new_edits=false`: a replicated revision written alone, with its
    /// attachments streamed (`multipart/related`).
    ReplicatedPut,
    /// `PUT _local/...`: a checkpoint write.
    LocalWrite,
    /// `GET _local/...`: a checkpoint read.
    LocalRead,
}

impl Endpoint {
    /// Whether `req` is one of these.
    pub fn matches(self, req: &Request) -> bool {
        let path = req.path();
        match self {
            Endpoint::Any => true,
            Endpoint::Changes => path.ends_with("/_changes"),
            Endpoint::ContinuousChanges => {
                path.ends_with("/_changes") && req.query("feed").as_deref() == Some("continuous")
            }
            Endpoint::BulkGet => req.method == "POST" && path.ends_with("/_bulk_get"),
            Endpoint::BulkGetMultipart => {
                Endpoint::BulkGet.matches(req)
                    && req
                        .header("accept")
                        .is_some_and(|a| a.contains("multipart/mixed"))
            }
            Endpoint::RevsDiff => req.method == "POST" && path.ends_with("/_revs_diff"),
            Endpoint::BulkDocs => req.method == "POST" && path.ends_with("/_bulk_docs"),
            Endpoint::ReplicatedPut => {
                req.method == "PUT" && req.query("new_edits").as_deref() == Some("false")
            }
            Endpoint::LocalWrite => req.method == "PUT" && path.contains("/_local/"),
            Endpoint::LocalRead => req.method == "GET" && path.contains("/_local/"),
        }
    }
}

/// Every fault of the matrix with the endpoint it applies to, for
/// [`FaultProxy::random`]; `stall` is how long a stall and a silent feed last.
pub fn full_menu(stall: Duration) -> Vec<(Endpoint, Fault)> {
    use Endpoint as E;
    use Fault as F;
    let status = |status, retry_after| F::Status {
        status,
        retry_after,
    };
    vec![
        (E::Any, F::Close),
        (E::Any, status(503, None)),
        (E::Any, status(503, Some(1))),
        (E::Any, status(429, None)),
        (E::Any, status(429, Some(1))),
        (E::Any, F::CutAt(None)),
        (E::Any, F::CutAt(Some(0))),
        (E::Any, F::CutBodyAt(10)),
        (E::Any, F::Stall(stall)),
        (E::Changes, F::CutFeedMidRow),
        (E::Changes, F::SilentFeed(stall)),
        (E::Changes, F::ChangesRepeat),
        (E::Changes, F::ChangesRewind),
        (E::BulkGet, F::BulkGetDrop),
        (E::BulkGet, F::BulkGetDuplicate),
        (E::BulkGet, F::BulkGetReorder),
        (E::RevsDiff, F::RevsDiffOmit),
        (E::LocalWrite, status(409, None)),
        (E::LocalWrite, status(500, None)),
        (E::BulkDocs, F::BulkDocsDropRow),
    ]
}

struct Scripted {
    at: Endpoint,
    fault: Fault,
    left: usize,
}

struct Random {
    rate: f64,
    menu: Vec<(Endpoint, Fault)>,
    /// Requests to these never meet a random fault.
    exempt: Vec<Endpoint>,
}

#[derive(Default)]
struct Plan {
    scripted: Vec<Scripted>,
    random: Option<Random>,
    injected: Vec<String>,
    /// [`FaultProxy::fail_every`]'s period (0: off), and requests counted since it was set.
    every: usize,
    counted: usize,
    /// `last_seq`s of `_changes` answers, per path, in the order seen: where a rewind goes.
    seqs: HashMap<String, Vec<String>>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rng: Mutex<StdRng>,
    plan: Mutex<Plan>,
    /// Every request and when it arrived.
    log: Mutex<Vec<(Instant, Request)>>,
    refusing: watch::Sender<bool>,
    /// Bumped by [`FaultProxy::cut`]: every open connection ends.
    cuts: watch::Sender<u64>,
    /// Client connections being served.
    open: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fault-injecting proxy (see the module docs). It runs on the test's tokio runtime and
/// stops with it.
#[derive(Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    seed: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("seed", &self.seed)
            .finish()
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (a base URL such as the test server's), seeded from
    /// `SETTEE_TEST_SEED` or at random. Prints the seed on stderr.
    ///
    /// # Panics
    /// If no loopback port can be bound, or `SETTEE_TEST_SEED` is not a number.
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::with_seed(upstream, seed_from_env().unwrap_or_else(rand::random)).await
    }

    /// A proxy to `upstream` with this seed (still printed on stderr).
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn with_seed(upstream: &str, seed: u64) -> FaultProxy {
        eprintln!("fault proxy: seed {seed} (replay with {SEED_VAR}={seed})");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (refusing, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: crate::http::upstream_client(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            plan: Mutex::default(),
            log: Mutex::default(),
            refusing,
            cuts: watch::channel(0).0,
            open: AtomicUsize::new(0),
        });
        tokio::spawn(accept_loop(listener, addr, rx, shared.clone()));
        FaultProxy { addr, seed, shared }
    }

    /// The proxy's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The seed of its random decisions.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Applies `fault` to the next `times` requests to `at` (before any random fault).
    pub fn inject(&self, at: Endpoint, fault: Fault, times: usize) {
        lock(&self.shared.plan).scripted.push(Scripted {
            at,
            fault,
            left: times,
        });
    }

    /// From now on, each request meets a fault with probability `rate`, picked from the
    /// entries of `menu` whose endpoint it is (e.g. [`full_menu`]).
    pub fn random(&self, rate: f64, menu: Vec<(Endpoint, Fault)>) {
        lock(&self.shared.plan).random = Some(Random {
            rate,
            menu,
            exempt: Vec::new(),
        });
    }

    /// Spares requests to `at` from random faults (scripted ones still apply): for a test
    /// that must not meet a known bug at random while a matrix case shows it on cue.
    pub fn exempt(&self, at: Endpoint) {
        if let Some(random) = &mut lock(&self.shared.plan).random {
            random.exempt.push(at);
        }
    }

    /// Stops every fault: scripted, random and refusal. Requests are forwarded untouched.
    pub fn calm(&self) {
        let mut plan = lock(&self.shared.plan);
        plan.scripted.clear();
        plan.random = None;
        drop(plan);
        self.set_refusing(false);
    }

    /// While on, the proxy's port is closed: connecting fails with "connection refused",
    /// and open connections are dropped. Off, it listens on the same port again.
    pub fn set_refusing(&self, on: bool) {
        self.shared.refusing.send_replace(on);
    }

    /// Drops every open connection, as a network that fails for a moment does (new ones
    /// are accepted at once); returns how many there were.
    pub fn cut(&self) -> usize {
        let open = self.shared.open.load(Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
        open
    }

    /// From now on, closes the connection of every `n`-th request (counted from now, any
    /// endpoint; 0: none) without forwarding it, noted as [`Fault::Close`], before any other
    /// fault. [`FaultProxy::injected_count`] counts them.
    pub fn fail_every(&self, n: usize) {
        let mut plan = lock(&self.shared.plan);
        plan.every = n;
        plan.counted = 0;
    }

    /// What was injected so far, one line per fault (`METHOD path: what`).
    pub fn injected(&self) -> Vec<String> {
        lock(&self.shared.plan).injected.clone()
    }

    /// How many faults were injected so far.
    pub fn injected_count(&self) -> usize {
        lock(&self.shared.plan).injected.len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Every request received, in order, with the time it arrived (to check that a client
    /// waited as long as `Retry-After` asked).
    pub fn requests_at(&self) -> Vec<(Instant, Request)> {
        lock(&self.shared.log).clone()
    }

    /// A summary for a failure message: the seed and the faults injected.
    pub fn report(&self) -> String {
        let injected = self.injected();
        format!(
            "fault proxy seed {} ({SEED_VAR}={}), {} faults injected:\n  {}",
            self.seed,
            self.seed,
            injected.len(),
            injected.join("\n  ")
        )
    }
}

fn seed_from_env() -> Option<u64> {
    let v = std::env::var(SEED_VAR).ok().filter(|v| !v.is_empty())?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v} is not an unsigned integer")),
    )
}

/// Accepts connections; while refusing, holds no listener at all, so connecting is refused
/// by the kernel, then binds the same address again.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    mut refusing: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut listener = Some(listener);
    loop {
        if *refusing.borrow_and_update() {
            listener = None;
            if refusing.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => listener.insert(l),
                Err(e) => {
                    eprintln!("fault proxy: cannot listen on {addr} again: {e}");
                    return;
                }
            },
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                let shared = shared.clone();
                let mut refusing = refusing.clone();
                let mut cuts = shared.cuts.subscribe();
                tokio::spawn(async move {
                    shared.open.fetch_add(1, Ordering::SeqCst);
                    tokio::select! {
                        () = connection(sock, shared.clone()) => {}
                        _ = refusing.wait_for(|on| *on) => {}
                        _ = cuts.changed() => {}
                    }
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            changed = refusing.changed() => if changed.is_err() { return },
        }
    }
}

/// Serves one client connection, a request at a time, until a fault or the client ends it.
async fn connection(mut sock: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        lock(&shared.log).push((Instant::now(), req.clone()));
        let fault = shared.decide(&req);
        if !shared.answer(&mut sock, req, fault).await {
            return;
        }
    }
}

impl Shared {
    /// The fault for `req`, if any, noted in the plan's log.
    fn decide(&self, req: &Request) -> Option<Fault> {
        let mut plan = lock(&self.plan);
        let mut fault = None;
        if plan.every > 0 {
            plan.counted += 1;
        }
        if plan.every > 0 && plan.counted % plan.every == 0 {
            fault = Some(Fault::Close);
        } else if let Some(s) = plan
            .scripted
            .iter_mut()
            .find(|s| s.left > 0 && s.at.matches(req))
        {
            s.left -= 1;
            fault = Some(s.fault);
        } else if let Some(random) = plan
            .random
            .as_ref()
            .filter(|r| !r.exempt.iter().any(|at| at.matches(req)))
        {
            let mut rng = lock(&self.rng);
            if rng.gen_bool(random.rate.clamp(0.0, 1.0)) {
                let fits: Vec<Fault> = random
                    .menu
                    .iter()
                    .filter(|(at, _)| at.matches(req))
                    .map(|(_, f)| *f)
                    .collect();
                if !fits.is_empty() {
                    fault = Some(fits[rng.gen_range(0..fits.len())]);
                }
            }
        }
        if let Some(f) = fault {
            plan.injected
                .push(format!("{} {}: {f:?}", req.method, req.target));
        }
        fault
    }

    fn note(&self, req: &Request, what: &str) {
        lock(&self.plan)
            .injected
            .push(format!("{} {}:   {what}", req.method, req.target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_by_method_and_path() {
        let req = |method: &str, target: &str| Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert!(Endpoint::LocalWrite.matches(&req("PUT", "/db/_local/abc")));
        assert!(!Endpoint::LocalWrite.matches(&req("GET", "/db/_local/abc")));
        assert!(Endpoint::ContinuousChanges
            .matches(&req("GET", "/db/_changes?feed=continuous&since=0")));
        assert!(!Endpoint::ContinuousChanges.matches(&req("GET", "/db/_changes?feed=longpoll")));
        assert!(Endpoint::BulkGet.matches(&req("POST", "/db/_bulk_get?revs=true")));
        assert!(!Endpoint::BulkGetMultipart.matches(&req("POST", "/db/_bulk_get?revs=true")));
        let mut mixed = req("POST", "/db/_bulk_get?revs=true");
        mixed
            .headers
            .push(("Accept".into(), "multipart/mixed".into()));
        assert!(Endpoint::BulkGetMultipart.matches(&mixed));
        assert!(Endpoint::ReplicatedPut.matches(&req("PUT", "/db/a?new_edits=false")));
        assert!(!Endpoint::ReplicatedPut.matches(&req("PUT", "/db/a")));
    }
}
