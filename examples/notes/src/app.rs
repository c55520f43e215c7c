//! The running app: the local store, the sync with the remote, the live updates, and the
//! background tasks that connect them. `api.rs` serves it over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use settee::{CancellationToken, Local};
use tokio::sync::Notify;

use crate::live::{watch_store, Hub};
use crate::queries::{self, FacetCache};
use crate::settings::Remote;
use crate::state::Tracker;
use crate::sync::SyncCtl;
use crate::{Error, Result};

/// How the app starts.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// The local store's directory (created if missing).
    pub store: PathBuf,
    /// The server to sync with for this run. Without one, the app uses the server last set
    /// on the page (remembered beside the store), or none.
    pub remote: Option<Remote>,
}

/// The notes app: a cheap handle (`Clone`) shared by every request.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Local,
    /// This app's name for itself in the notes it writes (`device`).
    device: String,
    tracker: Arc<Tracker>,
    facets: Arc<FacetCache>,
    hub: Hub,
    sync: Arc<SyncCtl>,
    /// Fires at shutdown: live update streams end, so that the server can stop.
    closing: CancellationToken,
}

impl App {
    /// Opens the store, starts following its changes, and starts syncing with the remote
    /// (if any). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The store's open errors (`store_in_use` when another app has it open).
    pub async fn start(opts: AppOptions) -> Result<App> {
        // Opening reads the store's files: off the runtime's threads.
        let path = opts.store.clone();
        let store = opts.store.clone();
        let device = tokio::task::spawn_blocking(move || crate::note::device_name(&store))
            .await
            .map_err(Error::task)?;
        let db = tokio::task::spawn_blocking(move || Local::open(path))
            .await
            .map_err(Error::task)??;
        queries::create_indexes(&db).await?;
        let tracker = Tracker::open(db.clone()).await?;
        let since = db.info().await?.update_seq;
        let remembered = Remote::load(&db).await?;
        let tracker = Arc::new(tracker);
        let hub = Hub::default();
        let changed = Arc::new(Notify::new());
        let sync = Arc::new(SyncCtl::new(
            db.clone(),
            tracker.clone(),
            hub.clone(),
            changed.clone(),
        ));
        tokio::spawn(watch_store(
            db.clone(),
            since,
            tracker.clone(),
            hub.clone(),
            changed,
        ));
        tokio::spawn(sync.clone().publish());
        sync.set_remote(opts.remote.or(remembered)).await;
        // The side bar's counts need every note once: read them now, off the page's way.
        let facets = Arc::new(FacetCache::default());
        let (f, d) = (facets.clone(), db.clone());
        tokio::spawn(async move {
            if let Err(e) = f.refresh(&d).await {
                tracing::warn!(error = %e, "reading the notebooks and tags");
            }
        });
        Ok(App {
            inner: Arc::new(Inner {
                db,
                device,
                tracker,
                facets,
                hub,
                sync,
                closing: CancellationToken::new(),
            }),
        })
    }

    /// The local store.
    pub fn db(&self) -> &Local {
        &self.inner.db
    }

    /// The name this app writes in the notes it edits (kept beside the store).
    pub fn device(&self) -> &str {
        &self.inner.device
    }

    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.inner.tracker
    }

    pub(crate) fn facets(&self) -> &FacetCache {
        &self.inner.facets
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub(crate) fn sync(&self) -> &Arc<SyncCtl> {
        &self.inner.sync
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Sets the server to sync with (or none), remembers it beside the store, and restarts the
    /// sync.
    ///
    /// # Errors
    /// The store's errors (nothing changes then).
    pub async fn set_remote(&self, remote: Option<Remote>) -> Result<()> {
        Remote::save(&self.inner.db, remote.as_ref()).await?;
        self.inner.sync.set_remote(remote).await;
        Ok(())
    }

    /// The global sync state now (as `GET /api/sync` gives it).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn sync_view(&self) -> Result<crate::SyncView> {
        self.inner.sync.current().await
    }

    /// "Sync now": a sync waiting to retry or to start again does so at once. Says whether
    /// anything was waiting.
    pub fn sync_now(&self) -> bool {
        self.inner.sync.sync_now()
    }

    /// Ends the live update streams (so that an HTTP server's graceful shutdown can finish).
    pub fn close_streams(&self) {
        self.inner.closing.cancel();
    }

    /// Stops syncing after the final checkpoints, and flushes the store.
    ///
    /// # Errors
    /// The store's flush error.
    pub async fn shutdown(&self) -> Result<()> {
        self.close_streams();
        self.inner.sync.stop().await;
        // Flushes; the store itself closes when the app's last handle is dropped.
        self.inner.db.clone().close().await?;
        Ok(())
    }
}
