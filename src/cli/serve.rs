//! `settee serve`: its flags (edge limits, users, cookies, design document JavaScript) and
//! the server's life from start to Ctrl-C. Also what a continuous replication needs to run JavaScript
//! workers of its own ([`js_worker_program`]).

use std::time::Duration;

use anyhow::Context;

use super::{print_json, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Serve {
    /// Store directories to serve, each as a database named after its directory.
    stores: Vec<std::path::PathBuf>,
    /// Where `PUT /{db}` creates databases (the stores already in it are served too).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5984")]
    bind: std::net::SocketAddr,
    /// The admin user (password from SETTEE_PASSWORD). Without one every request is an
    /// admin, which is allowed on a loopback address only.
    #[arg(long)]
    admin: Option<String>,
    /// Origins browsers may call from (comma-separated; `*` for any).
    #[arg(long, value_delimiter = ',')]
    cors: Option<Vec<String>>,
    /// Let pages from the origins named in --cors (never `*`) send cookies and
    /// credentials (CouchDB's `[cors] credentials`; off by default).
    #[arg(long, requires = "cors")]
    cors_credentials: bool,
    /// The largest request body accepted, in bytes (attachments excepted).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_body: usize,
    /// The largest attachment accepted, in bytes (CouchDB's `[couchdb]
    /// max_attachment_size`); attachments are streamed, so this bounds disk, not memory.
    #[arg(long, default_value_t = 1 << 30)]
    max_attachment_size: u64,
    /// Slow and idle clients, and the connection cap.
    #[command(flatten)]
    edge: EdgeFlags,
    /// Users, login and cookie settings.
    #[command(flatten)]
    users: UserFlags,
    /// Design document JavaScript.
    #[command(flatten)]
    js: JsFlags,
}

/// `settee serve`'s flags for the HTTP edge: how long a client may take and how many may be
/// connected (`RequestLimits`; the defaults are its defaults).
#[derive(Debug, clap::Args)]
struct EdgeFlags {
    /// Seconds a client has to send a request's headers, counted from when the server
    /// starts waiting for them; a kept-alive connection idle that long is closed too (slow
    /// header clients, "slowloris", are dropped; CouchDB's mochiweb allows 30 s).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_seconds)]
    header_timeout: f64,
    /// Seconds a request body may stop arriving before the request ends with 408 and its
    /// connection is closed (answers, such as feeds, are not bounded by it).
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_seconds)]
    body_idle_timeout: f64,
    /// Client connections open at once; one past it is closed as soon as it is accepted,
    /// before anything of it is read (CouchDB's `[chttpd] server_options` `max`).
    #[arg(long, value_name = "N", default_value = "2048")]
    max_connections: std::num::NonZeroUsize,
}

/// A number of seconds greater than 0 (a zero timeout would close every connection at once).
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && Duration::try_from_secs_f64(v).is_ok() => Ok(v),
        _ => Err(format!("{s} is not a number of seconds greater than 0")),
    }
}

impl EdgeFlags {
    /// `limits` with these flags' values.
    fn apply(&self, limits: settee::server::RequestLimits) -> settee::server::RequestLimits {
        settee::server::RequestLimits {
            // Checked by `positive_seconds`, so the fallback never applies.
            header_timeout: Duration::try_from_secs_f64(self.header_timeout)
                .unwrap_or(limits.header_timeout),
            body_idle_timeout: Duration::try_from_secs_f64(self.body_idle_timeout)
                .unwrap_or(limits.body_idle_timeout),
            max_connections: self.max_connections.get(),
            ..limits
        }
    }
}

/// `settee serve`'s flags for users (`_users`, `--peruser`), the login lockout and the
/// session cookie.
#[derive(Debug, clap::Args)]
struct UserFlags {
    /// Create a private database `userdb-<hex of name>` for each user of `_users`
    /// (CouchDB's `[couch_peruser] enable`).
    #[arg(long)]
    peruser: bool,
    /// With --peruser: delete a user's database when the user is deleted.
    #[arg(long, requires = "peruser")]
    peruser_delete_dbs: bool,
    /// Failed-login lockout (CouchDB's `[chttpd_auth_lockout] mode`).
    #[arg(long, default_value = "enforce", value_parser = ["enforce", "warn", "off"])]
    lockout: String,
    /// Failures after which a name is locked out for the address they came from.
    #[arg(long, default_value_t = 5)]
    lockout_threshold: u32,
    /// How long failures are remembered, in seconds from the first one.
    #[arg(long, default_value_t = 300)]
    lockout_seconds: u64,
    /// The `SameSite` attribute of the `AuthSession` cookie.
    #[arg(long, default_value = "lax", value_parser = ["lax", "strict", "none", "unset"])]
    cookie_same_site: String,
    /// Send the `AuthSession` cookie with `Secure` (behind an HTTPS proxy).
    #[arg(long)]
    cookie_secure: bool,
    /// Let admins change `_users`' security object (CouchDB's `[couchdb]
    /// users_db_security_editable`), e.g. to let users sign up and change their password.
    #[arg(long)]
    users_db_security_editable: bool,
    /// PBKDF2 rounds for passwords written to `_users` (CouchDB's `[chttpd_auth]
    /// iterations`).
    #[arg(long, default_value_t = 600_000)]
    password_iterations: u32,
}

impl UserFlags {
    fn apply(self, opts: settee::server::ServerOptions) -> settee::server::ServerOptions {
        use settee::server::{Lockout, LockoutMode, PerUser, SameSite};
        settee::server::ServerOptions {
            peruser: self.peruser.then_some(PerUser {
                delete_dbs: self.peruser_delete_dbs,
            }),
            lockout: Lockout {
                mode: match self.lockout.as_str() {
                    "warn" => LockoutMode::Warn,
                    "off" => LockoutMode::Off,
                    _ => LockoutMode::Enforce,
                },
                threshold: self.lockout_threshold,
                max_lifetime: std::time::Duration::from_secs(self.lockout_seconds),
                ..Default::default()
            },
            same_site: match self.cookie_same_site.as_str() {
                "strict" => SameSite::Strict,
                "none" => SameSite::None,
                "unset" => SameSite::Unset,
                _ => SameSite::Lax,
            },
            secure_cookie: self.cookie_secure,
            users_db_security_editable: self.users_db_security_editable,
            password_iterations: self.password_iterations.max(1),
            ..opts
        }
    }
}

/// `settee serve`'s flags for design document JavaScript (run in `settee js-worker`
/// processes).
#[derive(Debug, clap::Args)]
struct JsFlags {
    /// JavaScript worker processes at most (default: one per core, at least 2); requests
    /// past them wait for one.
    #[arg(long)]
    js_workers: Option<usize>,
    /// Seconds one call of a design document function may run (CouchDB's
    /// `os_process_timeout`); its worker is killed after that.
    #[arg(long, default_value_t = 5.0)]
    js_timeout: f64,
    /// Each JavaScript worker's memory (address space), in MiB.
    #[arg(long, default_value_t = 512)]
    js_memory_mib: usize,
}

impl JsFlags {
    fn limits(&self) -> anyhow::Result<settee::server::PoolLimits> {
        let defaults = settee::server::PoolLimits::default();
        Ok(settee::server::PoolLimits {
            workers: self.js_workers.unwrap_or(defaults.workers).max(1),
            timeout: Duration::try_from_secs_f64(self.js_timeout)
                .context("--js-timeout must be a number of seconds, 0 or more")?,
            memory: self.js_memory_mib.max(64) << 20,
            ..defaults
        })
    }
}

/// This program run as a JavaScript worker (`settee js-worker`).
pub(super) fn js_worker_program() -> Option<settee::server::WorkerProgram> {
    match std::env::current_exe() {
        Ok(program) => Some(settee::server::WorkerProgram {
            program,
            args: vec!["js-worker".into()],
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program to run JavaScript workers; design document functions will fail");
            None
        }
    }
}

/// `settee serve`: prints `{"ok":true,"url":...}` once listening, then serves until Ctrl-C
/// or SIGTERM.
pub(crate) async fn serve(args: Serve) -> anyhow::Result<Outcome> {
    use settee::server::{Admin, Cors, RequestLimits, Server, ServerOptions};
    let Serve {
        stores,
        data_dir,
        bind,
        admin,
        cors,
        cors_credentials,
        max_body,
        max_attachment_size,
        edge,
        users,
        js,
    } = args;
    let cors = cors.map(|origins| Cors {
        origins,
        credentials: cors_credentials,
        ..Default::default()
    });
    let admin = match admin {
        Some(name) => {
            let password = std::env::var("SETTEE_PASSWORD").map_err(|e| {
                anyhow::anyhow!("--admin {name} needs a password in SETTEE_PASSWORD ({e})")
            })?;
            Some(Admin { name, password })
        }
        None => None,
    };
    let server = Server::start(ServerOptions {
        bind,
        stores,
        data_dir,
        admin,
        cors,
        limits: edge.apply(RequestLimits {
            max_body,
            max_attachment_size,
            ..Default::default()
        }),
        advertise: true,
        js_worker: js_worker_program(),
        js_limits: js.limits()?,
        ..users.apply(Default::default())
    })
    .await?;
    print_json(&serde_json::json!({"ok": true, "url": format!("http://{}", server.local_addr())}))?;
    stop_signal().await;
    server.shutdown().await;
    Ok(Outcome::Clean)
}

/// Waits for Ctrl-C, or SIGTERM on Unix (how service managers stop a server).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
