//! The worker pool against real worker processes: this test binary is its own worker
//! program (run again with `SETTEE_JS_TEST_WORKER` set, it serves the protocol on stdin and
//! stdout). Each check runs in turn from `main`; a failed check panics, which fails the
//! binary.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use settee_js::{
    Cancel, Error, Function, Lease, Pool, PoolLimits, Rejection, Scope, WorkerProgram,
};

const WORKER_ENV: &str = "SETTEE_JS_TEST_WORKER";

fn pool(limits: PoolLimits) -> Pool {
    Pool::new(
        WorkerProgram {
            program: std::env::current_exe().unwrap(),
            args: Vec::new(),
        },
        limits,
    )
}

fn quick() -> PoolLimits {
    PoolLimits {
        workers: 2,
        timeout: Duration::from_secs(1),
        wait: Duration::from_secs(5),
        ..Default::default()
    }
}

fn map_fn(source: &str) -> Function {
    Function::new("_design/d views.v.map", source, &Value::Null)
}

fn is_alive(pid: u32) -> bool {
    // A killed and reaped worker has no /proc entry (a zombie would still have one).
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn each_function_kind_answers_through_a_worker() {
    let pool = pool(quick());
    let scope = Scope::new("db", "_design/d", "1-a");
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    let (a, b) = (json!({"_id": "a", "n": 1}), json!({"_id": "b"}));
    let rows = lease
        .map(
            &scope,
            &map_fn("function (doc) { if (doc.n) emit(doc._id, doc.n); }"),
            &[&a, &b],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].as_ref().unwrap(), &vec![(json!("a"), json!(1))]);
    assert!(rows[1].as_ref().unwrap().is_empty());
    let throwing = map_fn("function (doc) { if (!doc.n) throw new Error('no n'); emit(1); }");
    let rows = lease.map(&scope, &throwing, &[&b, &a]).unwrap();
    assert!(matches!(&rows[0], Err(Error::Thrown { reason, .. }) if reason.contains("no n")));
    assert_eq!(rows[1].as_ref().unwrap().len(), 1);
    let filter = Function::new(
        "f",
        "function (doc, req) { return doc.n === req.n; }",
        &Value::Null,
    );
    let kept = lease
        .filter(&scope, &filter, &json!({"n": 1}), &[&a, &b])
        .unwrap();
    assert_eq!(
        kept.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [true, false]
    );
    let validate = Function::new(
        "v",
        "function (n, o, u) { if (!n.ok) throw {forbidden: 'no ' + u.name}; }",
        &Value::Null,
    );
    let fns = [(scope.clone(), validate)];
    let user = json!({"name": "bob"});
    assert!(lease
        .validate(&fns, [&json!({"ok": 1}), &Value::Null, &user, &json!({})])
        .is_ok());
    match lease.validate(&fns, [&json!({}), &Value::Null, &user, &json!({})]) {
        Err(Rejection::Forbidden(v)) => assert_eq!(v, json!("no bob")),
        other => panic!("{other:?}"),
    }
    let reduce = Function::new(
        "r",
        "function (k, v, re) { return sum(v) + (re ? 100 : 0); }",
        &Value::Null,
    );
    let keys = [(json!(1), "a".to_owned())];
    assert_eq!(
        lease
            .reduce(&scope, &reduce, &keys, &[json!(2), json!(3)], false)
            .unwrap(),
        json!(5)
    );
    assert_eq!(
        lease
            .reduce(&scope, &reduce, &[], &[json!(5)], true)
            .unwrap(),
        json!(105)
    );
    let bad = map_fn("function (doc {");
    assert!(matches!(
        lease.map(&scope, &bad, &[&a]),
        Err(Error::Compile { .. })
    ));
    assert!(matches!(lease.check(&[bad]), Err(Error::Compile { .. })));
}

fn design_documents_do_not_share_globals() {
    let pool = pool(PoolLimits {
        workers: 1,
        ..quick()
    });
    let (a, b) = (
        Scope::new("db-a", "_design/x", "1-a"),
        Scope::new("db-b", "_design/y", "1-b"),
    );
    let doc = json!({"_id": "d"});
    let mut lease = pool.lease(&a, &Cancel::new()).unwrap();
    let evil = map_fn(
        "function (doc) { Object.prototype.x = 'leak'; sum = function () { return 'evil'; }; \
         JSON.stringify = function () { return 'evil'; }; emit(1); }",
    );
    lease.map(&a, &evil, &[&doc]).unwrap();
    let probe =
        map_fn("function (doc) { emit(({}).x || null, [sum([1, 2]), JSON.stringify([1])]); }");
    // The same worker (there is one), another design document: nothing changed.
    let rows = lease.map(&b, &probe, &[&doc]).unwrap();
    assert_eq!(
        rows[0].as_ref().unwrap(),
        &vec![(Value::Null, json!([3, "[1]"]))]
    );
    // The first design document sees what it did to itself.
    let rows = lease.map(&a, &probe, &[&doc]).unwrap();
    assert_eq!(
        rows[0].as_ref().unwrap(),
        &vec![(json!("leak"), json!(["evil", "evil"]))]
    );
}

fn a_backtracking_regex_gets_its_worker_killed_at_the_limit() {
    let pool = pool(quick());
    let scope = Scope::new("db", "_design/re", "1-a");
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    let pid = lease.pid().unwrap();
    let regex = map_fn("function (doc) { emit(/^([a-z0-9]+)*@example\\.com$/.test(doc.s)); }");
    let doc = json!({"s": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"});
    let started = Instant::now();
    let err = lease.map(&scope, &regex, &[&doc]).unwrap_err();
    assert!(matches!(err, Error::WorkerTimeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!is_alive(pid), "the worker {pid} still runs");
    drop(lease);
    // The pool starts another worker.
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    assert_ne!(lease.pid(), Some(pid));
    let rows = lease
        .map(&scope, &map_fn("function (doc) { emit(1); }"), &[&doc])
        .unwrap();
    assert_eq!(rows[0].as_ref().unwrap().len(), 1);
}

/// What a map function that never returns ends with.
fn endless_loop(lease: &mut Lease, scope: &Scope) -> Error {
    lease
        .map(
            scope,
            &map_fn("function (doc) { while (true) {} }"),
            &[&json!({})],
        )
        .unwrap_err()
}

fn an_endless_loop_is_interrupted_without_killing_the_worker() {
    let pool = pool(quick());
    let scope = Scope::new("db", "_design/spin", "1-a");
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    let pid = lease.pid();
    let err = endless_loop(&mut lease, &scope);
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(lease.pid(), pid);
}

fn deep_values_fail_the_call_and_never_the_parent() {
    let pool = pool(quick());
    let scope = Scope::new("db", "_design/deep", "1-a");
    let doc = json!({});
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    let emit_deep = map_fn(
        "function (doc) { var a = []; for (var i = 0; i < 10000; i++) a = [a]; emit(1, a); }",
    );
    let err = lease.map(&scope, &emit_deep, &[&doc]).unwrap_err();
    assert!(matches!(err, Error::TooDeep { .. }), "{err:?}");
    let stringify = map_fn(
        "function (doc) { var a = []; for (var i = 0; i < 100000; i++) a = [a]; emit(JSON.stringify(a).length); }",
    );
    let pid = lease.pid().unwrap();
    match lease.map(&scope, &stringify, &[&doc]) {
        // JSON.stringify checks for cycles against every enclosing level, so this runs
        // for minutes in C, where the interrupt does not reach; deeper still, its
        // unchecked recursion would overflow the stack. Either way only the worker ends.
        Err(Error::WorkerTimeout { .. } | Error::WorkerFailed { .. }) => {
            assert!(!is_alive(pid));
        }
        other => panic!("{other:?}"),
    }
}

fn unbounded_allocation_runs_out_of_memory() {
    let pool = pool(PoolLimits {
        runtime_memory: 32 << 20,
        ..quick()
    });
    let scope = Scope::new("db", "_design/oom", "1-a");
    let mut lease = pool.lease(&scope, &Cancel::new()).unwrap();
    let hog = map_fn("function (doc) { var a = []; for (var i = 0; true; i++) a.push('x'.repeat(1 << 20) + i); }");
    let err = lease.map(&scope, &hog, &[&json!({})]).unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(
        matches!(err, Error::OutOfMemory { .. } | Error::WorkerFailed { .. }),
        "{err:?}"
    );
}

fn a_cancelled_call_gets_its_worker_killed() {
    let pool = pool(PoolLimits {
        timeout: Duration::from_secs(30),
        ..quick()
    });
    let scope = Scope::new("db", "_design/slow", "1-a");
    let cancel = Cancel::new();
    let mut lease = pool.lease(&scope, &cancel).unwrap();
    let pid = lease.pid().unwrap();
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let started = Instant::now();
    let err = endless_loop(&mut lease, &scope);
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!is_alive(pid));
    drop(lease);
    // A caller that has gone away gets no new worker (a bulk write's remaining documents).
    let err = pool.lease(&scope, &cancel).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_eq!(pool.worker_count(), 0);
}

fn callers_past_the_pool_size_wait_then_fail_busy() {
    let pool = pool(PoolLimits {
        workers: 1,
        wait: Duration::from_millis(300),
        ..quick()
    });
    let scope = Scope::new("db", "_design/d", "1-a");
    let held = pool.lease(&scope, &Cancel::new()).unwrap();
    let err = pool.lease(&scope, &Cancel::new()).unwrap_err();
    assert!(matches!(err, Error::Busy { workers: 1, .. }), "{err:?}");
    drop(held);
    assert!(pool.lease(&scope, &Cancel::new()).is_ok());
    assert_eq!(pool.worker_count(), 1);
}

fn main() {
    if std::env::var_os(WORKER_ENV).is_some() {
        settee_js::worker::run().unwrap();
        return;
    }
    // SAFETY-free: the children inherit the variable; this process only reads it above.
    std::env::set_var(WORKER_ENV, "1");
    let checks: [(&str, fn()); 8] = [
        (
            "each_function_kind_answers_through_a_worker",
            each_function_kind_answers_through_a_worker,
        ),
        (
            "design_documents_do_not_share_globals",
            design_documents_do_not_share_globals,
        ),
        (
            "a_backtracking_regex_gets_its_worker_killed_at_the_limit",
            a_backtracking_regex_gets_its_worker_killed_at_the_limit,
        ),
        (
            "an_endless_loop_is_interrupted_without_killing_the_worker",
            an_endless_loop_is_interrupted_without_killing_the_worker,
        ),
        (
            "deep_values_fail_the_call_and_never_the_parent",
            deep_values_fail_the_call_and_never_the_parent,
        ),
        (
            "unbounded_allocation_runs_out_of_memory",
            unbounded_allocation_runs_out_of_memory,
        ),
        (
            "a_cancelled_call_gets_its_worker_killed",
            a_cancelled_call_gets_its_worker_killed,
        ),
        (
            "callers_past_the_pool_size_wait_then_fail_busy",
            callers_past_the_pool_size_wait_then_fail_busy,
        ),
    ];
    // libtest's command line as test runners use it: `--list` (cargo nextest lists the
    // tests with `--list --format terse`, and the ignored ones, none here, with
    // `--ignored`), and `--exact NAME` to run one.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in checks {
                println!("{name}: test");
            }
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filter: Option<&String> = args.iter().find(|a| !a.starts_with('-'));
    let mut passed = 0;
    for (name, check) in checks {
        let chosen = match filter {
            None => true,
            Some(f) if exact => name == f.as_str(),
            Some(f) => name.contains(f.as_str()),
        };
        if !chosen {
            continue;
        }
        println!("test {name} ...");
        check();
        passed += 1;
    }
    println!("{passed} passed, 0 failed");
}
