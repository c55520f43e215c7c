//! The QuickJS sandbox: one runtime and context with CouchDB's global helpers
//! (`prelude.js`), the functions compiled in it, and the per-call time limit.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::function::IntoArgs;
use rquickjs::{Context, Ctx, FromJs, Function, Runtime};
use serde_json::Value;

use crate::error::{Error, Rejection, Result};
use crate::reduce::reduce_keys;

/// The helpers and entry points every sandbox starts with.
const PRELUDE: &str = include_str!("prelude.js");

/// The name of the error the prelude throws for a value nested too deeply to stringify.
const TOO_DEEP: &str = "SetteeTooDeep";

/// What one sandbox may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call (one document through a map, filter or validate function, one
    /// reduce) may run before it is interrupted. CouchDB's `os_process_timeout` is 5 s.
    pub timeout: Duration,
    /// Bytes the whole runtime may allocate (compiled functions included).
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            memory: 64 << 20,
        }
    }
}

/// A function compiled in a [`Sandbox`]. It is only meaningful to the sandbox that made it.
#[derive(Debug, Clone)]
pub struct Compiled {
    index: u32,
    origin: Arc<str>,
}

impl Compiled {
    /// The name given at compilation (design document id and member path).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// One QuickJS runtime running design document functions. See the crate docs.
pub struct Sandbox {
    // Field order matters: the context must be dropped before its runtime.
    context: Context,
    runtime: Runtime,
    limits: Limits,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
    compiled: RefCell<HashMap<String, u32>>,
    broken: Cell<bool>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .field("functions", &self.compiled.borrow().len())
            .finish_non_exhaustive()
    }
}

fn engine(e: rquickjs::Error) -> Error {
    Error::Engine {
        reason: e.to_string(),
    }
}

impl Sandbox {
    /// A fresh sandbox with CouchDB's helpers defined.
    pub fn new(limits: Limits) -> Result<Sandbox> {
        let runtime = Runtime::new().map_err(engine)?;
        runtime.set_memory_limit(limits.memory);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        {
            let deadline = deadline.clone();
            let interrupted = interrupted.clone();
            runtime.set_interrupt_handler(Some(Box::new(move || {
                let late = deadline.get().is_some_and(|d| Instant::now() >= d);
                if late {
                    interrupted.set(true);
                }
                late
            })));
        }
        let context = Context::full(&runtime).map_err(engine)?;
        context.with(|ctx| {
            ctx.eval::<(), _>(PRELUDE).map_err(|e| Error::Engine {
                reason: format!("the prelude failed: {}", describe(&ctx, e)),
            })
        })?;
        Ok(Sandbox {
            context,
            runtime,
            limits,
            deadline,
            interrupted,
            compiled: RefCell::new(HashMap::new()),
            broken: Cell::new(false),
        })
    }

    /// The limits this sandbox runs with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many distinct sources are compiled in this sandbox (callers start a new sandbox
    /// when it grows too large).
    pub fn function_count(&self) -> usize {
        self.compiled.borrow().len()
    }

    /// Whether the sandbox ran out of memory: its state may be damaged and it should be
    /// replaced by a new one.
    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// Compiles `source` (a function expression, as design documents hold them) under the
    /// name `origin` (for errors: say which design document and member). The same source
    /// compiled again is not evaluated again.
    pub fn compile(&self, origin: &str, source: &str) -> Result<Compiled> {
        let origin: Arc<str> = Arc::from(origin);
        if let Some(&index) = self.compiled.borrow().get(source) {
            return Ok(Compiled { index, origin });
        }
        // A trailing `;` is common in hand-written design documents.
        let text = source.trim().trim_end_matches(';').to_owned();
        let index: u32 = self
            .call(&origin, "__settee_compile", (text,))
            .map_err(|e| match e {
                Error::Thrown { origin, reason } => Error::Compile { origin, reason },
                other => other,
            })?;
        self.compiled.borrow_mut().insert(source.to_owned(), index);
        Ok(Compiled { index, origin })
    }

    /// Compiles `source` like [`Sandbox::compile`], with a CommonJS `require` that loads
    /// modules from `modules` (CouchDB gives filter and validation functions the whole
    /// design document, map functions `{"views": {"lib": ...}}`). A source that does not
    /// mention `require` is compiled as by [`Sandbox::compile`].
    pub fn compile_with_modules(
        &self,
        origin: &str,
        source: &str,
        modules: &Value,
    ) -> Result<Compiled> {
        if !source.contains("require") || modules.is_null() {
            return self.compile(origin, source);
        }
        let modules = modules.to_string();
        let key = format!("{source}\u{0}{modules}");
        if let Some(&index) = self.compiled.borrow().get(&key) {
            return Ok(Compiled {
                index,
                origin: Arc::from(origin),
            });
        }
        let text = source.trim().trim_end_matches(';').to_owned();
        let index: u32 = self
            .call(origin, "__settee_compile_in", (text, modules))
            .map_err(|e| match e {
                Error::Thrown { origin, reason } => Error::Compile { origin, reason },
                other => other,
            })?;
        self.compiled.borrow_mut().insert(key, index);
        Ok(Compiled {
            index,
            origin: Arc::from(origin),
        })
    }

    /// Runs a map function on `doc`: the `(key, value)` pairs it emitted, in order.
    pub fn map(&self, f: &Compiled, doc: &Value) -> Result<Vec<(Value, Value)>> {
        let text = self.map_json(f, &doc.to_string())?;
        serde_json::from_str(&text).map_err(|e| Error::BadResult {
            origin: f.origin.to_string(),
            reason: format!("emitted rows are not JSON: {e}"),
        })
    }

    /// [`Sandbox::map`] on a document's JSON text: the emitted rows as JSON text
    /// (`[[key, value], ...]`), which the worker passes on without parsing.
    pub(crate) fn map_json(&self, f: &Compiled, doc: &str) -> Result<String> {
        self.call(&f.origin, "__settee_map", (f.index, doc.to_owned()))
    }

    /// Runs a filter function: whether `doc` passes (the result's truthiness).
    pub fn filter(&self, f: &Compiled, doc: &Value, req: &Value) -> Result<bool> {
        self.filter_json(f, &doc.to_string(), &req.to_string())
    }

    /// [`Sandbox::filter`] on JSON texts.
    pub(crate) fn filter_json(&self, f: &Compiled, doc: &str, req: &str) -> Result<bool> {
        self.call(
            &f.origin,
            "__settee_filter",
            (f.index, doc.to_owned(), req.to_owned()),
        )
    }

    /// Runs a `validate_doc_update` function. `old` is `null` for a new document.
    pub fn validate(
        &self,
        f: &Compiled,
        new: &Value,
        old: &Value,
        user_ctx: &Value,
        sec_obj: &Value,
    ) -> Result<(), Rejection> {
        self.validate_json(
            f,
            [
                &new.to_string(),
                &old.to_string(),
                &user_ctx.to_string(),
                &sec_obj.to_string(),
            ],
        )
    }

    /// [`Sandbox::validate`] on the JSON texts of `[newDoc, oldDoc, userCtx, secObj]`.
    pub(crate) fn validate_json(&self, f: &Compiled, args: [&str; 4]) -> Result<(), Rejection> {
        let [new, old, user_ctx, sec_obj] = args.map(str::to_owned);
        let thrown: Option<String> = self.call(
            &f.origin,
            "__settee_validate",
            (f.index, new, old, user_ctx, sec_obj),
        )?;
        let Some(thrown) = thrown else {
            return Ok(());
        };
        Err(Rejection::from_thrown(&thrown))
    }

    /// Runs a JavaScript reduce function. Without `rereduce`, `keys` are the rows'
    /// `[key, doc id]` pairs and `values` their values; with it, `keys` is ignored (the
    /// function gets `null`) and `values` are earlier reductions.
    pub fn reduce(
        &self,
        f: &Compiled,
        keys: &[(Value, String)],
        values: &[Value],
        rereduce: bool,
    ) -> Result<Value> {
        let keys = reduce_keys(keys, rereduce);
        let text = self.reduce_json(
            f,
            &keys.to_string(),
            &Value::Array(values.to_vec()).to_string(),
            rereduce,
        )?;
        serde_json::from_str(&text).map_err(|e| Error::BadResult {
            origin: f.origin.to_string(),
            reason: format!("the reduction is not JSON: {e}"),
        })
    }

    /// [`Sandbox::reduce`] on JSON texts (`keys` is `null` on rereduce): the reduction's
    /// JSON text.
    pub(crate) fn reduce_json(
        &self,
        f: &Compiled,
        keys: &str,
        values: &str,
        rereduce: bool,
    ) -> Result<String> {
        self.call(
            &f.origin,
            "__settee_reduce",
            (f.index, keys.to_owned(), values.to_owned(), rereduce),
        )
    }

    /// The messages functions passed to `log()` since the last call (at most 100 kept).
    pub fn take_log(&self) -> Vec<String> {
        self.call::<_, String>("log", "__settee_take_log", ())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Calls the prelude's `entry` with `args` under the time limit.
    fn call<A, R>(&self, origin: &str, entry: &str, args: A) -> Result<R>
    where
        A: for<'js> IntoArgs<'js>,
        R: for<'js> FromJs<'js>,
    {
        self.interrupted.set(false);
        self.deadline
            .set(Some(Instant::now() + self.limits.timeout));
        let out = self.context.with(|ctx| {
            let f: Function = ctx.globals().get(entry).map_err(|e| e.to_string())?;
            f.call::<A, R>(args).map_err(|e| describe(&ctx, e))
        });
        self.deadline.set(None);
        let interrupted = self.interrupted.replace(false);
        out.map_err(|reason| {
            if interrupted {
                Error::Timeout {
                    origin: origin.to_owned(),
                    limit: self.limits.timeout,
                }
            } else if reason.starts_with(TOO_DEEP) {
                Error::TooDeep {
                    origin: origin.to_owned(),
                    reason: reason
                        .strip_prefix(TOO_DEEP)
                        .unwrap_or(&reason)
                        .trim_start_matches(": ")
                        .to_owned(),
                }
            } else if reason.contains("out of memory") {
                self.broken.set(true);
                self.runtime.run_gc();
                Error::OutOfMemory {
                    origin: origin.to_owned(),
                    limit: self.limits.memory,
                }
            } else {
                Error::Thrown {
                    origin: origin.to_owned(),
                    reason,
                }
            }
        })
    }
}

/// A readable account of a failed call: the pending exception (`Name: message` for an
/// `Error`, else its JSON) or the binding's error.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if !matches!(e, rquickjs::Error::Exception) {
        return e.to_string();
    }
    let thrown = ctx.catch();
    if let Some(obj) = thrown.as_object() {
        let name: Option<String> = obj.get("name").ok();
        let message: Option<String> = obj.get("message").ok();
        if let Some(message) = message {
            return match name {
                Some(name) if !name.is_empty() => format!("{name}: {message}"),
                _ => message,
            };
        }
    }
    if let Some(s) = thrown.as_string().and_then(|s| s.to_string().ok()) {
        return s;
    }
    match ctx.json_stringify(thrown) {
        Ok(Some(s)) => s.to_string().unwrap_or_else(|_| "an exception".into()),
        _ => "an exception".into(),
    }
}
