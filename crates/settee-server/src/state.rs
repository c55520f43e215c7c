//! What every request handler shares ([`State`]): the databases, authentication, CORS,
//! the request limits, the shutdown signal and the longpoll feeds' shared followers, made
//! once when the server starts. The server (`server.rs`) owns the socket and the routing;
//! the handlers see only this.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthSettings};
use crate::changes_tail::Tails;
use crate::error::{Error, Result};
use crate::options::{Admin, Cors, RequestLimits, ServerOptions};
use crate::peruser::PerUserDbs;
use crate::registry::Registry;
use crate::uuid::server_uuid;

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) registry: Registry,
    pub(crate) auth: Auth,
    pub(crate) cors: Option<Cors>,
    pub(crate) limits: RequestLimits,
    /// The server's uuid (`GET /`), the same at each start (`uuid::server_uuid`).
    pub(crate) uuid: String,
    /// Cancelled at shutdown: live feeds end.
    pub(crate) shutdown: CancellationToken,
    /// Per-user databases, when asked for.
    pub(crate) peruser: Option<PerUserDbs>,
    /// Whether `_users`' security object may be changed.
    pub(crate) users_db_security_editable: bool,
    /// The followers the longpoll feeds of each database share (`changes_tail.rs`).
    pub(crate) tails: Tails,
}

/// What every request shares, for `registry` (the per-user databases caught up). `owner`
/// is the advertised owner's account, if any.
pub(crate) async fn new_state(
    opts: &ServerOptions,
    registry: Registry,
    owner: Option<Admin>,
    shutdown: CancellationToken,
) -> Result<Arc<State>> {
    let uuid = server_uuid(opts.data_dir.as_deref(), &registry.paths())?;
    let state = Arc::new(State {
        registry,
        auth: Auth::new(AuthSettings {
            admin: opts.admin.clone(),
            owner,
            admin_party: opts.admin_party,
            session_timeout: opts.session_timeout,
            same_site: opts.same_site,
            secure_cookie: opts.secure_cookie,
            lockout: opts.lockout,
        }),
        cors: opts.cors.clone(),
        limits: opts.limits,
        uuid,
        shutdown,
        peruser: opts.peruser.clone().map(PerUserDbs::new),
        users_db_security_editable: opts.users_db_security_editable,
        tails: Tails::default(),
    });
    if let Some(peruser) = &state.peruser {
        peruser
            .catch_up(&state.registry)
            .await
            .map_err(|e| Error::Config {
                reason: format!("creating the per-user databases: {}", e.reason),
            })?;
    }
    Ok(state)
}
