//! Design document functions in worker processes, as CouchDB runs them in `couchjs`: a
//! wall around untrusted JavaScript rather than a fence inside the server's own process.
//!
//! - The parent keeps a bounded [`Pool`] of workers ([`WorkerProgram`], [`PoolLimits`]) and
//!   leases one per call or run of calls ([`Lease`]); a call that runs past the time limit
//!   (a regular expression that backtracks for hours included) gets its worker killed, and
//!   a worker that dies (a stack overflow in a built-in, an allocation past its address
//!   space) fails only its call; the pool starts a new one.
//! - The worker ([`run`]) keeps one QuickJS runtime per design document ([`Scope`]:
//!   database, design document and revision), so globals and built-ins a function changes
//!   reach no other design document, and nothing of one database reaches another's.
//! - Messages are length-prefixed JSON frames on the worker's stdin and stdout (`frame.rs`,
//!   `wire.rs`); documents are sent in batches and answered one frame each.
//!
//! **Boundary:** this module knows nothing of HTTP or stores: callers say what to run and
//! what a [`Cancel`] means.

mod child;
mod frame;
mod pool;
mod process;
mod wire;

pub use child::run;
pub use pool::{Cancel, Lease, Pool, PoolLimits, Rows};
pub use process::WorkerProgram;
pub use wire::{Function, Scope};
