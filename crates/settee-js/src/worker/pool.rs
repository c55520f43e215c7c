//! The parent's side: a bounded [`Pool`] of worker processes, the [`Lease`] of one worker
//! for a call (or a run of calls, such as a view build), the time limit per call enforced
//! by killing the worker, and cancellation by the caller ([`Cancel`]).
//!
//! Each worker (`process.rs`) has a thread that reads its answer frames into a channel; the leasing
//! thread waits on the channel in short slices, so that it notices both the deadline and a
//! cancellation within [`POLL`]. A worker whose answer is late, whose caller cancelled,
//! that died or that broke the protocol is killed (SIGKILL) and reaped, and the pool starts
//! a new one on demand.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::process::{describe_exit, scope_key, Worker, WorkerProgram};
use super::wire::{Function, Outcome, Reply, Request, Scope, Settings};
use crate::error::{Error, Rejection, Result};
use crate::reduce::reduce_keys;

/// A request that carries no documents.
type Plain<'a> = Request<'a, Value>;

/// The rows a map function emitted for one document: `(key, value)` pairs in order.
pub type Rows = Vec<(Value, Value)>;

/// How often a waiting caller looks at its deadline and its [`Cancel`].
const POLL: Duration = Duration::from_millis(50);
/// How much longer than the time limit the parent waits for an answer before it kills the
/// worker: QuickJS's interrupt stops ordinary JavaScript at the limit itself (and the
/// worker keeps its runtimes); the kill is for what the interrupt cannot reach (a regular
/// expression, a built-in's loop).
const GRACE: Duration = Duration::from_millis(1000);
/// Bounds on the JavaScript a [`Pool`] runs. All JavaScript together uses at most
/// `workers` x `memory` bytes of address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Worker processes at most (default: the number of cores, at least 2). Callers past
    /// it wait for a worker.
    pub workers: usize,
    /// How long one call (one document through a map, filter or validate function, one
    /// reduce) may run (default 5 s, CouchDB's `os_process_timeout`). QuickJS's interrupt
    /// stops it then; a worker that still has not answered a second later is killed.
    pub timeout: Duration,
    /// How long a caller waits for a free worker before failing with [`Error::Busy`]
    /// (default 30 s).
    pub wait: Duration,
    /// Each worker's address space (RLIMIT_AS) in bytes (default 512 MiB, of which the
    /// program itself takes about a tenth). Unix only.
    pub memory: usize,
    /// QuickJS's heap limit for each design document's runtime, in bytes (default 64 MiB).
    pub runtime_memory: usize,
    /// Design document runtimes each worker keeps (default 16; the least recently used
    /// is dropped first).
    pub runtimes: usize,
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PoolLimits {
            workers: cores.max(2),
            timeout: Duration::from_secs(5),
            wait: Duration::from_secs(30),
            memory: 512 << 20,
            runtime_memory: 64 << 20,
            runtimes: 16,
        }
    }
}

/// Set by a caller that no longer wants its call's answer (its client went away): the
/// worker running the call is killed within the pool's short poll interval. Cheap to
/// clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A bounded pool of JavaScript worker processes. Cheap to clone (an `Arc`); workers
/// start on demand and are killed when the last clone is dropped.
///
/// ```no_run
/// use serde_json::json;
/// use settee_js::{Cancel, Function, Pool, PoolLimits, Scope, WorkerProgram};
/// # fn main() -> Result<(), settee_js::Error> {
/// let pool = Pool::new(
///     WorkerProgram { program: "settee".into(), args: vec!["js-worker".into()] },
///     PoolLimits::default(),
/// );
/// let scope = Scope::new("notes", "_design/app", "1-abc");
/// let map = Function::new("_design/app views.v.map", "function (doc) { emit(doc.n); }", &json!(null));
/// let doc = json!({"_id": "a", "n": 1});
/// let mut lease = pool.lease(&scope, &Cancel::new())?;
/// let rows = lease.map(&scope, &map, &[&doc])?;
/// assert_eq!(rows[0].as_ref().unwrap(), &vec![(json!(1), json!(null))]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("program", &self.shared.program)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

struct Shared {
    program: WorkerProgram,
    limits: PoolLimits,
    state: Mutex<State>,
    /// Signalled when a worker is returned or a slot freed.
    freed: Condvar,
}

struct State {
    /// Workers waiting for a call, the most recently returned last.
    idle: Vec<Worker>,
    /// Workers that exist or are being started (idle and leased).
    live: usize,
}

impl Pool {
    /// A pool running `program` as its workers within `limits` (no worker starts yet).
    pub fn new(program: WorkerProgram, limits: PoolLimits) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                program,
                limits,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    live: 0,
                }),
                freed: Condvar::new(),
            }),
        }
    }

    /// The limits the pool runs with.
    pub fn limits(&self) -> PoolLimits {
        self.shared.limits
    }

    /// How many workers exist (idle and leased).
    pub fn worker_count(&self) -> usize {
        self.shared.lock().live
    }

    /// A worker for calls about `affinity` (one that already ran that design document's
    /// functions if one is idle), waiting up to [`PoolLimits::wait`] for one to be free.
    ///
    /// # Errors
    /// [`Error::Busy`] when none was free in time, [`Error::Cancelled`] when `cancel` was
    /// set while waiting, [`Error::WorkerFailed`] when a new worker could not be started.
    pub fn lease(&self, affinity: &Scope, cancel: &Cancel) -> Result<Lease> {
        let shared = &self.shared;
        let started = Instant::now();
        let key = scope_key(affinity);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let mut state = shared.lock();
        loop {
            let found = state
                .idle
                .iter()
                .rposition(|w| w.recent.contains(&key))
                .or_else(|| state.idle.len().checked_sub(1));
            if let Some(i) = found {
                let worker = state.idle.remove(i);
                return Ok(Lease::new(shared.clone(), worker, cancel));
            }
            if state.live < shared.limits.workers {
                state.live += 1;
                drop(state);
                return match Worker::start(&shared.program, &settings(&shared.limits)) {
                    Ok(worker) => Ok(Lease::new(shared.clone(), worker, cancel)),
                    Err(e) => {
                        shared.lock().live -= 1;
                        shared.freed.notify_one();
                        Err(e)
                    }
                };
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let waited = started.elapsed();
            if waited >= shared.limits.wait {
                return Err(Error::Busy {
                    workers: shared.limits.workers,
                    waited,
                });
            }
            let slice = (shared.limits.wait - waited).min(POLL);
            state = shared
                .freed
                .wait_timeout(state, slice)
                .map_or_else(|p| p.into_inner().0, |(s, _)| s);
        }
    }
}

/// What a new worker is told of `limits`.
fn settings(limits: &PoolLimits) -> Settings {
    Settings {
        runtime_memory: limits.runtime_memory,
        timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
        runtimes: limits.runtimes,
        address_space: Some(limits.memory as u64),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One worker, leased for a call or a run of calls. Returned to the pool when dropped,
/// unless it was killed or left mid-answer.
pub struct Lease {
    shared: Arc<Shared>,
    worker: Option<Worker>,
    cancel: Cancel,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pid", &self.worker.as_ref().map(|w| w.child.id()))
            .finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        match self.worker.take() {
            Some(worker) => state.idle.push(worker),
            None => state.live -= 1,
        }
        drop(state);
        self.shared.freed.notify_one();
    }
}

impl Lease {
    fn new(shared: Arc<Shared>, worker: Worker, cancel: &Cancel) -> Lease {
        Lease {
            shared,
            worker: Some(worker),
            cancel: cancel.clone(),
        }
    }

    /// The worker's process id (`None` once it was killed).
    pub fn pid(&self) -> Option<u32> {
        self.worker.as_ref().map(|w| w.child.id())
    }

    fn worker(&mut self) -> Result<&mut Worker> {
        self.worker.as_mut().ok_or_else(|| Error::WorkerFailed {
            reason: "the worker was killed by an earlier call".into(),
        })
    }

    /// Kills the worker; the lease gives its slot back when dropped.
    fn kill(&mut self) -> Option<ExitStatus> {
        self.worker.take().and_then(|mut w| w.kill())
    }

    fn send<D: Serialize>(&mut self, request: &Request<'_, D>) -> Result<()> {
        let sent = self.worker()?.send(request);
        if let Err(Error::WorkerFailed { reason }) = &sent {
            let exit = self.kill();
            return Err(Error::WorkerFailed {
                reason: format!("{reason}; {}", describe_exit(exit)),
            });
        }
        sent
    }

    /// Waits for the next answer frame, killing the worker at the deadline or on
    /// cancellation.
    fn recv<T: DeserializeOwned>(&mut self) -> Result<Reply<T>> {
        let timeout = self.shared.limits.timeout;
        let deadline = Instant::now() + timeout + GRACE;
        loop {
            if self.cancel.is_cancelled() {
                self.kill();
                return Err(Error::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Err(Error::WorkerTimeout { limit: timeout });
            }
            let received = self
                .worker()?
                .replies
                .recv_timeout((deadline - now).min(POLL));
            let frame = match received {
                Ok(Ok(frame)) => frame,
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(Err(e)) => {
                    let exit = self.kill();
                    return Err(Error::WorkerFailed {
                        reason: format!("reading its answer failed ({e}); {}", describe_exit(exit)),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let exit = self.kill();
                    return Err(Error::WorkerFailed {
                        reason: describe_exit(exit),
                    });
                }
            };
            return match serde_json::from_slice::<Reply<T>>(&frame) {
                Ok(reply) => {
                    for line in &reply.log {
                        tracing::info!(target: "settee::js", "{line}");
                    }
                    Ok(reply)
                }
                // serde_json's nesting limit (128) is above the sandbox's (120 levels
                // for a value leaving it), so only a broken worker gets here; say which.
                Err(e) if e.to_string().contains("recursion limit") => {
                    self.kill();
                    Err(Error::TooDeep {
                        origin: "the worker's answer".into(),
                        reason: format!("it is nested too deeply: {e}"),
                    })
                }
                Err(e) => {
                    self.kill();
                    Err(Error::WorkerFailed {
                        reason: format!("it sent an answer that is not the protocol's: {e}"),
                    })
                }
            };
        }
    }

    fn remember(&mut self, scope: &Scope) {
        let capacity = self.shared.limits.runtimes;
        if let Some(w) = self.worker.as_mut() {
            w.remember(scope, capacity);
        }
    }

    /// Compiles `functions` in a runtime of their own that is dropped afterwards (the
    /// check a design document gets before it is stored).
    ///
    /// # Errors
    /// [`Error::Compile`] for the first that does not compile; the worker errors.
    pub fn check(&mut self, functions: &[Function]) -> Result<()> {
        self.send(&Plain::Check { functions })?;
        let reply = self.recv::<Value>()?;
        outcome(reply.outcome).map(drop)
    }

    /// Runs a map function on each document (in `scope`'s runtime): per document, the
    /// rows it emitted or why it failed.
    ///
    /// # Errors
    /// The call as a whole fails when the function does not compile, when a document's
    /// failure is fatal ([`Error::is_fatal`]: out of time or memory, a value too deep),
    /// or when the worker fails or is cancelled.
    pub fn map<D: Serialize>(
        &mut self,
        scope: &Scope,
        function: &Function,
        docs: &[D],
    ) -> Result<Vec<Result<Rows>>> {
        self.remember(scope);
        self.send(&Request::Map {
            scope,
            function,
            docs,
        })?;
        self.each(docs.len())
    }

    /// Runs a filter function on each document with `req`: per document, whether it
    /// passes or why the function failed.
    ///
    /// # Errors
    /// As [`Lease::map`].
    pub fn filter<D: Serialize>(
        &mut self,
        scope: &Scope,
        function: &Function,
        req: &Value,
        docs: &[D],
    ) -> Result<Vec<Result<bool>>> {
        self.remember(scope);
        self.send(&Request::Filter {
            scope,
            function,
            req,
            docs,
        })?;
        self.each(docs.len())
    }

    fn each<T: DeserializeOwned>(&mut self, n: usize) -> Result<Vec<Result<T>>> {
        let mut results = Vec::with_capacity(n);
        while results.len() < n {
            let reply = self.recv::<T>()?;
            let result = outcome(reply.outcome);
            if reply.stop {
                return Err(result.err().unwrap_or_else(|| Error::WorkerFailed {
                    reason: "it stopped a batch without saying why".into(),
                }));
            }
            results.push(result);
        }
        Ok(results)
    }

    /// Runs `validate_doc_update` functions, each in its design document's runtime, on
    /// `[newDoc, oldDoc, userCtx, secObj]`, stopping at the first refusal.
    ///
    /// # Errors
    /// The refusal, or [`Rejection::Failed`] with the function's or the worker's error.
    pub fn validate(
        &mut self,
        functions: &[(Scope, Function)],
        args: [&Value; 4],
    ) -> Result<(), Rejection> {
        if let Some((scope, _)) = functions.first() {
            self.remember(scope);
        }
        self.send(&Plain::Validate { functions, args })?;
        let reply = self.recv::<Value>()?;
        match reply.outcome {
            Outcome::Rejected(r) => Err(r.into_rejection()),
            other => outcome(other).map(drop).map_err(Rejection::Failed),
        }
    }

    /// Runs a JavaScript reduce function (see [`crate::Sandbox::reduce`]).
    ///
    /// # Errors
    /// The function's error, or the worker's.
    pub fn reduce(
        &mut self,
        scope: &Scope,
        function: &Function,
        keys: &[(Value, String)],
        values: &[Value],
        rereduce: bool,
    ) -> Result<Value> {
        self.remember(scope);
        let keys = reduce_keys(keys, rereduce);
        let values = Value::Array(values.to_vec());
        self.send(&Plain::Reduce {
            scope,
            function,
            keys: &keys,
            values: &values,
            rereduce,
        })?;
        let reply = self.recv::<Value>()?;
        outcome(reply.outcome)
    }
}

/// An answer's outcome as a result.
fn outcome<T>(outcome: Outcome<T>) -> Result<T> {
    match outcome {
        Outcome::Ok(value) => Ok(value),
        Outcome::Error(e) => Err(e.into()),
        Outcome::Rejected(_) => Err(Error::WorkerFailed {
            reason: "it answered with a refusal where none can be".into(),
        }),
    }
}
