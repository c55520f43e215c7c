//! What a server is started with: the address, the stores, the data directory for new
//! databases, the admin, CORS, the limits on requests, the session cookie, the login
//! lockout, per-user databases and the JavaScript workers. Plain settings: the code that
//! acts on them imports them from here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// CouchDB 3.5's `[chttpd_auth] iterations` default (read back from a 3.5.0 server).
const DEFAULT_ITERATIONS: u32 = 600_000;

/// How to start a [`crate::Server`]. Fields are public; start from `Default` (loopback
/// port 5984, no stores, no admin).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen (default `127.0.0.1:5984`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// Stores served as databases, each named after its directory's last component.
    pub stores: Vec<PathBuf>,
    /// Stores this process already has open (sled lets one handle hold a store), served
    /// under their directory names like `stores`.
    pub databases: Vec<settee_store::Database>,
    /// Leave an [`settee_store::Advert`] in each served store while serving, so that another
    /// process finding the store in use can reach this one (default false).
    pub advertise: bool,
    /// Without an `admin`, treat every request as an admin (default true; loopback only).
    /// False admits only the advertised owner credential.
    pub admin_party: bool,
    /// Where `PUT /{db}` creates new databases (one store directory each), and whose stores
    /// are served too. Without one, only `stores` are served and creating answers 403.
    pub data_dir: Option<PathBuf>,
    /// The server admin. Without one every request is an admin ("admin party", CouchDB 1's
    /// default), which [`crate::Server::start`] allows only on a loopback address.
    pub admin: Option<Admin>,
    /// Cross-origin requests from browsers; `None` sends no CORS headers.
    pub cors: Option<Cors>,
    /// Bounds on requests.
    pub limits: RequestLimits,
    /// sled's page cache per open database, in bytes (default 32 MiB: a server may hold
    /// many databases open at once).
    pub cache_capacity: u64,
    /// How long a `_session` cookie stays valid (CouchDB's `[chttpd_auth] timeout`,
    /// default 10 minutes); it is renewed when more than half of it has passed.
    pub session_timeout: Duration,
    /// The `SameSite` attribute of the `AuthSession` cookie (default Lax; CouchDB's
    /// `[chttpd_auth] same_site`).
    pub same_site: SameSite,
    /// Send the `AuthSession` cookie with `Secure` (behind an HTTPS proxy; default false).
    pub secure_cookie: bool,
    /// Failed-login lockout (CouchDB's `[chttpd_auth_lockout]`; default: enforce, 5
    /// failures, 5 minutes).
    pub lockout: Lockout,
    /// PBKDF2 rounds for passwords written to `_users` (CouchDB 3.5's `[chttpd_auth]
    /// iterations`, default 600,000).
    pub password_iterations: u32,
    /// A private database for each user of `_users` (CouchDB's `[couch_peruser]`); `None`
    /// (the default) creates none.
    pub peruser: Option<PerUser>,
    /// Let server admins change `_users`' security object (CouchDB's `[couchdb]
    /// users_db_security_editable`, default false: `_users` stays admins-only, so users
    /// cannot sign up or change their own password). Opening it to members (`{"members":
    /// {}}`) lets anyone create a user without roles, and each user read and change their
    /// own document.
    pub users_db_security_editable: bool,
    /// The program that runs design document JavaScript (map, reduce, filter and
    /// `validate_doc_update` functions) in worker processes; `settee serve` runs itself
    /// with `js-worker`. `None` (the default) runs no JavaScript: such a function answers
    /// 500, and design documents are stored without compiling their functions.
    pub js_worker: Option<settee_js::WorkerProgram>,
    /// Bounds on that JavaScript: how many workers, the time limit per call, how long a
    /// request waits for a worker, and each worker's memory.
    pub js_limits: settee_js::PoolLimits,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 5984)),
            stores: Vec::new(),
            databases: Vec::new(),
            advertise: false,
            admin_party: true,
            data_dir: None,
            admin: None,
            cors: None,
            limits: RequestLimits::default(),
            cache_capacity: 32 * 1024 * 1024,
            session_timeout: Duration::from_secs(600),
            same_site: SameSite::default(),
            secure_cookie: false,
            lockout: Lockout::default(),
            password_iterations: DEFAULT_ITERATIONS,
            peruser: None,
            users_db_security_editable: false,
            js_worker: None,
            js_limits: settee_js::PoolLimits::default(),
        }
    }
}

/// The server admin's credentials.
#[derive(Clone)]
pub struct Admin {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// CORS settings (CouchDB's `[cors]` section).
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins (`https://app.example.com`), or `*` for any.
    pub origins: Vec<String>,
    /// Whether browsers may send cookies and credentials (`Access-Control-Allow-Credentials`)
    /// from the origins listed by name (never from `*`). Off by default, as CouchDB's
    /// `[cors] credentials`.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}

impl Default for Cors {
    fn default() -> Cors {
        Cors {
            origins: vec!["*".into()],
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The largest request body accepted, in bytes (default 64 MiB); larger ones get 413.
    /// Attachment bytes do not count: `max_attachment_size` bounds them.
    pub max_body: usize,
    /// The largest attachment accepted, in bytes (CouchDB's `[couchdb]
    /// max_attachment_size`, whose 3.5 default is 1 GiB); larger ones get 413 and leave
    /// nothing stored. Attachments are streamed into the store, so this bounds disk, not
    /// memory.
    pub max_attachment_size: u64,
    /// The most header bytes hyper buffers for one request (default 64 KiB); more closes
    /// the connection with 431.
    pub max_header_bytes: usize,
    /// The most headers in one request (default 100).
    pub max_headers: usize,
    /// How long a client has to send a request's headers, counted from when the server
    /// starts waiting for them (default 30 s, as CouchDB's `HEADERS_RECV_TIMEOUT`). The
    /// wait for the next request on a kept-alive connection counts too, so an idle
    /// connection is closed after this long. Slow-header clients (slowloris) are dropped.
    pub header_timeout: Duration,
    /// The longest pause while a request body is arriving (default 60 s): a body that
    /// stops arriving for longer ends the request with 408 and closes the connection.
    /// Answers (feeds, heartbeats) are not bounded by it.
    pub body_idle_timeout: Duration,
    /// The most client connections open at once (default 2048, CouchDB's `[chttpd]
    /// server_options` `max`); a connection past it is closed at once.
    pub max_connections: usize,
    /// The largest body read before authentication has decided anything: `POST /_session`
    /// (default 64 KiB; larger get 413 without being read).
    pub max_session_body: usize,
    /// How long `DELETE /{db}` waits for requests still using the database (default 5 s)
    /// before it refuses with 409 and leaves the database as it was.
    pub delete_wait: Duration,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits {
            max_body: 64 * 1024 * 1024,
            max_attachment_size: 1 << 30,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
            max_session_body: 64 * 1024,
            delete_wait: Duration::from_secs(5),
        }
    }
}

/// The cookie's `SameSite` attribute (CouchDB's `[chttpd_auth] same_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their sub-requests (the
    /// default here; CouchDB sends no attribute unless configured, and browsers then
    /// treat the cookie as Lax anyway).
    #[default]
    Lax,
    /// Never sent on requests started by another site.
    Strict,
    /// Sent on every request (browsers require `Secure` with it).
    None,
    /// No attribute (CouchDB's default).
    Unset,
}

/// What the lockout does (CouchDB's `[chttpd_auth_lockout] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockoutMode {
    /// Refuse logins once the threshold is reached (CouchDB's default).
    #[default]
    Enforce,
    /// Only log a warning once the threshold is reached.
    Warn,
    /// Count nothing.
    Off,
}

/// Lockout settings (CouchDB's `[chttpd_auth_lockout]`).
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Enforce, warn or off (default enforce).
    pub mode: LockoutMode,
    /// Failures after which a name is locked for an address (default 5).
    pub threshold: u32,
    /// How long failures are remembered, from the first one (default 5 minutes).
    pub max_lifetime: Duration,
    /// The most (address, name) pairs tracked (default 10,000).
    pub max_objects: usize,
}

impl Default for Lockout {
    fn default() -> Lockout {
        Lockout {
            mode: LockoutMode::Enforce,
            threshold: 5,
            max_lifetime: Duration::from_secs(300),
            max_objects: 10_000,
        }
    }
}

/// Per-user databases (CouchDB's `[couch_peruser]`).
#[derive(Debug, Clone, Default)]
pub struct PerUser {
    /// Delete a user's database when the user is deleted (default false: the user is
    /// only taken off its security object).
    pub delete_dbs: bool,
}
