//! settee-server's whole per-request path in-process (authentication, routing, query
//! strings, headers, bodies, every handler) on a data directory made once per process.
#![no_main]

use std::sync::OnceLock;

use settee_server::fuzzing::Http;

struct Harness {
    runtime: tokio::runtime::Runtime,
    http: Http,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let http = runtime
            .block_on(Http::start(dir.path()))
            .expect("the server starts");
        Harness {
            runtime,
            http,
            _dir: dir,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.runtime.block_on(h.http.request(data));
});
