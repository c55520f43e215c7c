//! Which changes a `_changes` feed lists beyond what the store filters itself
//! (`_doc_ids`): the built-in `_design` and `_selector` filters, design document filter
//! functions (`filter=ddoc/name`, called with the document and a `req` object) and
//! `filter=_view&view=ddoc/name` (a document passes when the view's map function emits a row
//! for it). JavaScript runs on the blocking pool; a function that throws fails the feed, as
//! in CouchDB.

use std::sync::Arc;

use serde_json::Value;
use settee_replicate::Selector;
use settee_store::Change;

use crate::error::HttpError;
use crate::js::{js_error, Js};
use crate::registry::OpenDb;
use settee_js::{Function, Scope};

/// Which changes a feed lists beyond what the store filters itself (`_doc_ids`).
#[derive(Clone)]
pub(crate) enum Filter {
    All,
    Design,
    Selector(Arc<Selector>),
    Js(Arc<JsFilter>),
}

/// A JavaScript filter: a design document's filter function, or a view's map function.
pub(crate) struct JsFilter {
    /// The function (`_design/ddoc filters.name` or `_design/ddoc views.name.map`), with
    /// what `require` loads from (the design document, or its `views.lib`).
    function: Function,
    /// The design document's runtime.
    scope: Scope,
    /// A view's map function: a document passes when it emits a row.
    is_view: bool,
    /// The `req` argument of a filter function.
    req: Value,
    js: Js,
}

impl JsFilter {
    /// Runs the function on a change's document (on the blocking pool). A function that
    /// throws fails the feed, as in CouchDB.
    fn keeps(&self, change: &Change) -> Result<bool, HttpError> {
        let Some(doc) = change.doc.as_ref() else {
            return Ok(false);
        };
        let mut lease = self.js.lease(&self.scope)?;
        let first = if self.is_view {
            lease
                .map(&self.scope, &self.function, &[doc])
                .map_err(js_error)?
                .into_iter()
                .next()
                .map(|rows| rows.map(|rows| !rows.is_empty()))
        } else {
            lease
                .filter(&self.scope, &self.function, &self.req, &[doc])
                .map_err(js_error)?
                .into_iter()
                .next()
        };
        match first {
            Some(result) => result.map_err(js_error),
            None => Err(HttpError::internal("the filter gave no answer")),
        }
    }
}

/// Whether a live feed keeps `change`: JavaScript filters run on the blocking pool (and
/// stop if the feed is dropped meanwhile).
pub(crate) async fn keep(filter: &Filter, change: Change) -> Result<Option<Change>, HttpError> {
    if let Filter::Js(f) = filter {
        let f = f.clone();
        return crate::js::spawn_cancellable(move || Ok(f.keeps(&change)?.then_some(change)))
            .await
            .map_err(|e| HttpError::internal(format!("a changes filter failed: {e}")))?;
    }
    Ok(filter.keeps(&change)?.then_some(change))
}

impl Filter {
    pub(crate) fn needs_docs(&self) -> bool {
        matches!(self, Filter::Selector(_) | Filter::Js(_))
    }

    pub(crate) fn keeps(&self, change: &Change) -> Result<bool, HttpError> {
        Ok(match self {
            Filter::All => true,
            Filter::Design => change.id.starts_with("_design/"),
            Filter::Selector(sel) => change
                .doc
                .as_ref()
                .is_some_and(|d| !change.deleted && sel.matches(d)),
            Filter::Js(f) => return f.keeps(change),
        })
    }
}

/// A filter function or view (`ddoc/name`, under `kind` in the design document), compiled
/// once here so that a broken one fails the request. CouchDB's 404s when the design
/// document or the function is missing.
pub(crate) async fn js_filter(
    open: &OpenDb,
    name: &str,
    kind: &'static str,
    req: Value,
) -> Result<Filter, HttpError> {
    let Some((ddoc, fname)) = name.split_once('/') else {
        return Err(HttpError::bad_request(
            "`filter` must be of the form `designname/filtername`",
        ));
    };
    let ddoc = ddoc.to_owned();
    let fname = fname.to_owned();
    let db_name = open.name.clone();
    let js = open.js.clone();
    let f = open
        .run(move |db| {
            let doc =
                crate::js::design_doc(db, &ddoc)?.ok_or_else(|| HttpError::not_found("missing"))?;
            let path: Vec<&str> = if kind == "views" {
                vec![kind, &fname, "map"]
            } else {
                vec![kind, &fname]
            };
            let ddoc_id = format!("_design/{ddoc}");
            let modules = if kind == "views" {
                crate::js::view_modules(&doc)
            } else {
                doc.clone()
            };
            let source = crate::js::member_source(&doc, &path)?;
            let function = Function::new(format!("{ddoc_id} {}", path.join(".")), source, &modules);
            let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or_default();
            let scope = crate::js::scope(db, &db_name, &ddoc_id, rev);
            // Compiled now, so that a broken function fails the request.
            js.lease(&scope)?
                .check(std::slice::from_ref(&function))
                .map_err(js_error)?;
            Ok(JsFilter {
                function,
                scope,
                is_view: kind == "views",
                req,
                js,
            })
        })
        .await?;
    Ok(Filter::Js(Arc::new(f)))
}
