//! The page: plain HTML, CSS and JavaScript compiled into the binary (no build step, nothing
//! loaded from the internet). The files are in `web/`; the script is ES modules in
//! `web/js/`, one per concern of the page, served under `/js/`.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::Error;

const INDEX: &str = include_str!("../web/index.html");
const STYLE: &str = include_str!("../web/style.css");

/// The page's modules by file name (`main.js` imports the others).
pub(crate) const SCRIPTS: &[(&str, &str)] = &[
    ("main.js", include_str!("../web/js/main.js")),
    ("core.js", include_str!("../web/js/core.js")),
    ("list.js", include_str!("../web/js/list.js")),
    ("editor.js", include_str!("../web/js/editor.js")),
    ("images.js", include_str!("../web/js/images.js")),
    ("conflicts.js", include_str!("../web/js/conflicts.js")),
    ("sync-status.js", include_str!("../web/js/sync-status.js")),
];

/// Served with `no-cache`: a page reloaded after an upgrade of the app gets the new files.
fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// One of the page's modules (`/js/{file}`), or `not_found`.
pub(crate) async fn script(Path(file): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, text)) => asset("text/javascript; charset=utf-8", text),
        None => Error::NotFound(format!("no script /js/{file}")).into_response(),
    }
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
