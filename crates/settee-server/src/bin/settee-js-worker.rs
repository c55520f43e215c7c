//! `settee-js-worker`: a JavaScript worker process for a server embedded in another
//! program (and for this crate's tests), serving the protocol of `settee_js::worker` on
//! stdin and stdout. `settee serve` runs `settee js-worker` instead.

use std::process::ExitCode;

fn main() -> ExitCode {
    match settee_server::run_js_worker() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settee-js-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
