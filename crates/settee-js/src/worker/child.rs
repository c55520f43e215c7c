//! The worker process's side: [`run`] reads requests from stdin and answers on stdout,
//! running each design document's functions in a QuickJS runtime of its own (a [`Sandbox`]
//! per [`Scope`], the least recently used dropped first). The parent (`pool.rs`) decides
//! when a worker has run too long and kills it; the worker only stops runaway JavaScript
//! with QuickJS's interrupt, and exits on its own if the parent is gone and a call never
//! ends.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::frame::{read_frame, write_frame};
use super::wire::{
    answer_frame, Function, Incoming, Outcome, Scope, Settings, WireError, WireRejection,
};
use crate::error::Error;
use crate::sandbox::{Compiled, Limits, Sandbox};

/// The stack of the thread that runs JavaScript. QuickJS checks its own recursion against
/// a 1 MiB budget; `JSON.stringify` and a few other built-ins recurse without a check, so
/// the thread has room to spare, and going past it kills only this process.
const JS_STACK: usize = 32 << 20;
/// The longest a worker keeps finished answers of a batch before sending them: the parent
/// counts its time limit from the last answer it received.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A sandbox holding more compiled functions than this is replaced by a fresh one.
const MAX_FUNCTIONS: usize = 512;
/// How long past its time limit a call may run before the worker ends itself (the parent
/// normally kills it well before; this is for a parent that died).
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// Runs a worker: answers the requests of the parent process on stdin and stdout until
/// stdin ends. The `settee` binary runs this as its hidden `js-worker` subcommand.
///
/// # Errors
/// An I/O error on stdin or stdout, or a request that is not the protocol's (the parent
/// treats the worker as dead either way).
pub fn run() -> io::Result<()> {
    let js = std::thread::Builder::new()
        .name("js".into())
        .stack_size(JS_STACK)
        .spawn(serve)?;
    js.join()
        .unwrap_or_else(|_| Err(io::Error::other("the JavaScript thread panicked")))
}

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

fn serve() -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let Some(first) = read_frame(&mut input)? else {
        return Ok(());
    };
    let settings = match serde_json::from_slice(&first) {
        Ok(Incoming::Init(s)) => s,
        Ok(_) => return Err(invalid("the first request", "not init")),
        Err(e) => return Err(invalid("the first request", e)),
    };
    limit_address_space(&settings)?;
    let busy = Arc::new(AtomicU64::new(0));
    watch_for_orphaning(busy.clone(), &settings)?;
    let mut worker = Worker {
        limits: Limits {
            timeout: Duration::from_millis(settings.timeout_ms),
            memory: settings.runtime_memory,
        },
        capacity: settings.runtimes.max(1),
        runtimes: Vec::new(),
        busy,
        started: Instant::now(),
    };
    while let Some(frame) = read_frame(&mut input)? {
        let request: Incoming =
            serde_json::from_slice(&frame).map_err(|e| invalid("a request", e))?;
        drop(frame);
        worker.answer(request, &mut out)?;
        out.flush()?;
    }
    Ok(())
}

/// RLIMIT_AS: past it an allocation fails (QuickJS reports out of memory; Rust code
/// aborts the process, which the parent reports and replaces).
#[cfg(unix)]
fn limit_address_space(settings: &Settings) -> io::Result<()> {
    match settings.address_space {
        Some(bytes) => rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn limit_address_space(_: &Settings) -> io::Result<()> {
    Ok(())
}

/// A thread that ends the process when one call has run far past the time limit: the
/// parent kills a worker at the limit, so this only happens when the parent is gone.
fn watch_for_orphaning(busy: Arc<AtomicU64>, settings: &Settings) -> io::Result<()> {
    let limit = Duration::from_millis(settings.timeout_ms) + ORPHAN_GRACE;
    let origin = Instant::now();
    std::thread::Builder::new()
        .name("js-watch".into())
        .stack_size(64 << 10)
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let since = busy.load(Ordering::Relaxed);
            if since != 0 {
                let now = origin.elapsed().as_millis() as u64;
                if now.saturating_sub(since) > limit.as_millis() as u64 {
                    std::process::exit(70);
                }
            }
        })?;
    Ok(())
}

struct Worker {
    limits: Limits,
    capacity: usize,
    /// Least recently used first.
    runtimes: Vec<(Scope, Sandbox)>,
    /// When the call running now started (milliseconds since `started`, at least 1), or 0.
    busy: Arc<AtomicU64>,
    started: Instant,
}

/// What the worker writes for one call: JSON text from the sandbox, or why it failed.
type Answered = Result<String, Error>;

fn raw(text: String) -> Answered {
    Ok(text)
}

impl Worker {
    fn answer(&mut self, request: Incoming, out: &mut impl Write) -> io::Result<()> {
        match request {
            Incoming::Init(_) => send(out, Err(engine("init sent twice")), &[], true),
            Incoming::Check { functions } => {
                let outcome = self.check(&functions).and_then(|()| raw("null".into()));
                send(out, outcome, &[], false)
            }
            Incoming::Map {
                scope,
                function,
                docs,
            } => self.each(out, &scope, &function, &docs, |sandbox, f, doc| {
                raw(sandbox.map_json(f, doc.get())?)
            }),
            Incoming::Filter {
                scope,
                function,
                req,
                docs,
            } => self.each(out, &scope, &function, &docs, |sandbox, f, doc| {
                let keep = sandbox.filter_json(f, doc.get(), req.get())?;
                raw(keep.to_string())
            }),
            Incoming::Validate { functions, args } => self.validate(out, &functions, &args),
            Incoming::Reduce {
                scope,
                function,
                keys,
                values,
                rereduce,
            } => {
                let mut log = Vec::new();
                let outcome = self.with(&scope, &mut log, |sandbox| {
                    let f = compile(sandbox, &function)?;
                    raw(sandbox.reduce_json(&f, keys.get(), values.get(), rereduce)?)
                });
                send(out, outcome, &log, false)
            }
        }
    }

    /// Compiles functions in a fresh runtime that is thrown away afterwards: compiling
    /// evaluates the source, which may run code.
    fn check(&mut self, functions: &[Function]) -> Result<(), Error> {
        let sandbox = Sandbox::new(self.limits)?;
        self.mark_busy();
        let out = functions
            .iter()
            .try_for_each(|f| compile(&sandbox, f).map(drop));
        self.mark_idle();
        out
    }

    /// Runs `call` on each document in `scope`'s runtime, one answer frame each. A
    /// compilation error, or a document's failure that fails the whole call
    /// ([`Error::is_fatal`]), ends the answer early.
    fn each(
        &mut self,
        out: &mut impl Write,
        scope: &Scope,
        function: &Function,
        docs: &[Box<RawValue>],
        call: impl Fn(&Sandbox, &Compiled, &RawValue) -> Answered,
    ) -> io::Result<()> {
        let mut log = Vec::new();
        let busy = self.busy.clone();
        let started = self.started;
        // One runtime lookup and one compilation for the whole batch; the time limit
        // (and the orphan watch) counts per document.
        self.with(scope, &mut log, |sandbox| {
            let f = match compile(sandbox, function) {
                Ok(f) => f,
                Err(e) => return Ok(send(out, Err(e), &sandbox.take_log(), true)),
            };
            let mut last_flush = Instant::now();
            for (i, doc) in docs.iter().enumerate() {
                busy.store(busy_stamp(started), Ordering::Relaxed);
                let outcome = call(sandbox, &f, doc);
                let stop = outcome.as_ref().is_err_and(Error::is_fatal);
                // What the functions logged travels with the batch's last answer.
                let log = if stop || i + 1 == docs.len() {
                    sandbox.take_log()
                } else {
                    Vec::new()
                };
                if let Err(e) = send(out, outcome, &log, stop) {
                    return Ok(Err(e));
                }
                if stop {
                    break;
                }
                if last_flush.elapsed() >= FLUSH_EVERY {
                    if let Err(e) = out.flush() {
                        return Ok(Err(e));
                    }
                    last_flush = Instant::now();
                }
            }
            Ok(Ok(()))
        })
        .unwrap_or_else(|e| send(out, Err(e), &log, true))
    }

    fn validate(
        &mut self,
        out: &mut impl Write,
        functions: &[(Scope, Function)],
        args: &[Box<RawValue>; 4],
    ) -> io::Result<()> {
        let mut log = Vec::new();
        let texts = [args[0].get(), args[1].get(), args[2].get(), args[3].get()];
        for (scope, function) in functions {
            let mut rejection = None;
            let outcome = self.with(scope, &mut log, |sandbox| {
                let f = compile(sandbox, function)?;
                match sandbox.validate_json(&f, texts) {
                    Ok(()) => raw("null".into()),
                    Err(r) => {
                        rejection = Some(WireRejection::from_rejection(r)?);
                        raw("null".into())
                    }
                }
            });
            if let Some(r) = rejection {
                return write_answer(out, Outcome::Rejected(r), &log, false);
            }
            if outcome.is_err() {
                return send(out, outcome, &log, false);
            }
        }
        send(out, raw("null".into()), &log, false)
    }

    /// Runs `f` in the runtime of `scope` (made, or brought to the front, first), then
    /// collects what its functions logged and drops the runtime if it is damaged.
    fn with<T>(
        &mut self,
        scope: &Scope,
        log: &mut Vec<String>,
        f: impl FnOnce(&Sandbox) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let index = match self.runtimes.iter().position(|(s, _)| s == scope) {
            Some(i) => i,
            None => {
                if self.runtimes.len() >= self.capacity {
                    self.runtimes.remove(0);
                }
                let sandbox = Sandbox::new(self.limits)?;
                self.runtimes.push((scope.clone(), sandbox));
                self.runtimes.len() - 1
            }
        };
        let entry = self.runtimes.remove(index);
        self.mark_busy();
        let out = f(&entry.1);
        self.mark_idle();
        log.extend(entry.1.take_log());
        if !entry.1.is_broken() && entry.1.function_count() <= MAX_FUNCTIONS {
            self.runtimes.push(entry);
        }
        out
    }

    fn mark_busy(&self) {
        self.busy.store(busy_stamp(self.started), Ordering::Relaxed);
    }

    fn mark_idle(&self) {
        self.busy.store(0, Ordering::Relaxed);
    }
}

/// The busy mark for a call starting now: milliseconds since `started`, at least 1.
fn busy_stamp(started: Instant) -> u64 {
    (started.elapsed().as_millis() as u64).max(1)
}

fn engine(reason: &str) -> Error {
    Error::Engine {
        reason: reason.to_owned(),
    }
}

fn compile(sandbox: &Sandbox, f: &Function) -> Result<Compiled, Error> {
    sandbox.compile_with_modules(&f.origin, &f.source, &f.modules)
}

fn send(out: &mut impl Write, outcome: Answered, log: &[String], stop: bool) -> io::Result<()> {
    match outcome {
        Ok(text) => write_answer(out, Outcome::Ok(&text), log, stop),
        Err(e) => write_answer(out, Outcome::Error(WireError::from(e)), log, stop),
    }
}

fn write_answer(
    out: &mut impl Write,
    outcome: Outcome<&str>,
    log: &[String],
    stop: bool,
) -> io::Result<()> {
    let bytes = answer_frame(outcome, log, stop).map_err(|e| invalid("an answer", e))?;
    write_frame(out, &bytes)
}
