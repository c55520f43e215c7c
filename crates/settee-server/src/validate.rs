//! `validate_doc_update`: every design document's validation function runs on each
//! document written through the HTTP API (PUT, POST, DELETE, `_bulk_docs` with
//! `new_edits` true or false, attachment PUT and DELETE, COPY). As in CouchDB, design
//! documents (only admins write them) and `_local` documents are not validated, the
//! function gets `(newDoc, oldDoc, userCtx, secObj)`, and a thrown `{forbidden}` or
//! `{unauthorized}` refuses the write with 403 or 401.

use serde_json::{json, Map, Value};
use settee_revtree::Rev;
use settee_store::{Database, GetOptions};

use crate::auth::users;
use crate::auth::{Need, UserCtx};
use crate::error::HttpError;
use crate::js;
use crate::registry::{OpenDb, USERS_DB};
use settee_js::{Function, Scope};

/// Who writes, as the validation functions see it, and where they run.
#[derive(Clone)]
pub(crate) struct Writer {
    user_ctx: Value,
    sec_obj: Value,
    /// In `_users`: the writer, whether a db admin, and the PBKDF2 rounds.
    users: Option<(UserCtx, bool, u32)>,
    /// The database's name (design document runtimes are per database).
    db_name: String,
    js: js::Js,
}

impl Writer {
    /// The request's user in `open`: `userCtx` is `{db, name, roles}`, `secObj` the
    /// database's security object.
    pub(crate) fn new(open: &OpenDb, user: &UserCtx) -> Writer {
        let security = open.security();
        let users = (open.name == USERS_DB).then(|| {
            let is_db_admin = crate::auth::check(&security, user, Need::Admin).is_ok();
            (user.clone(), is_db_admin, open.password_iterations)
        });
        Writer {
            user_ctx: json!({"db": open.name, "name": user.name, "roles": user.roles}),
            sec_obj: Value::Object(security),
            users,
            db_name: open.name.clone(),
            js: open.js.clone(),
        }
    }

    /// Whether the write goes to `_users` (whose documents the server changes before
    /// storing them: password hashing).
    pub(crate) fn in_users_db(&self) -> bool {
        self.users.is_some()
    }
}

/// The validation functions of a database at one moment: `(design doc id, rev, function)`
/// (the design document is what `require` loads from).
pub(crate) struct Validators(Vec<(String, String, Function)>);

impl Validators {
    /// Whether the database has no `validate_doc_update` function.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads the design documents' `validate_doc_update` members.
    pub(crate) fn load(db: &Database) -> Result<Validators, HttpError> {
        let mut fns = Vec::new();
        for ddoc in js::design_docs(db)? {
            if let (Some(Value::String(id)), Some(Value::String(src))) =
                (ddoc.get("_id"), ddoc.get("validate_doc_update"))
            {
                let rev = ddoc
                    .get("_rev")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let f = Function::new(
                    format!("{id} validate_doc_update"),
                    src.as_str(),
                    &Value::Object(ddoc.clone()),
                );
                fns.push((id.clone(), rev, f));
            }
        }
        Ok(Validators(fns))
    }

    /// Gives a new document without `_id` its id now, when there are functions to run:
    /// CouchDB's functions see the id the document will have. (Without functions the store
    /// assigns it.)
    pub(crate) fn assign_id(&self, doc: &mut Value, new_edits: bool) {
        if self.0.is_empty() || !new_edits {
            return;
        }
        if let Value::Object(m) = doc {
            if !m.contains_key("_id") {
                let bytes: [u8; 16] = rand::random();
                m.insert("_id".into(), Value::String(hex_of(&bytes)));
            }
        }
    }

    /// Checks one document about to be written (as the client sent it; `new_edits` says
    /// whether it is an edit or a replicated revision). `Err` is the refusal. In `_users`
    /// the document is changed first: a clear `password` becomes its hash.
    pub(crate) fn check(
        &self,
        db: &Database,
        writer: &Writer,
        doc: &mut Value,
        new_edits: bool,
    ) -> Result<(), HttpError> {
        let id = doc
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if id.starts_with("_design/") {
            return check_design(db, writer, doc);
        }
        if let Some((user, is_db_admin, iterations)) = &writer.users {
            if !id.starts_with("_local/") {
                let old = old_doc(db, &id, doc, new_edits)?;
                let rules = users::UsersWriter {
                    user,
                    is_db_admin: *is_db_admin,
                    iterations: *iterations,
                };
                users::before_doc_update(doc, &old, &rules)?;
            }
        }
        let doc: &Value = doc;
        let id = id.as_str();
        if self.0.is_empty() || id.starts_with("_local/") {
            return Ok(());
        }
        let old = old_doc(db, id, doc, new_edits)?;
        let new = as_validated(doc, new_edits);
        let functions: Vec<(Scope, Function)> = self
            .0
            .iter()
            .map(|(ddoc, rev, f)| (js::scope(db, &writer.db_name, ddoc, rev), f.clone()))
            .collect();
        let Some((affinity, _)) = functions.first() else {
            return Ok(());
        };
        writer
            .js
            .lease(affinity)?
            .validate(&functions, [&new, &old, &writer.user_ctx, &writer.sec_obj])
            .map_err(js::rejection_error)
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The revision a write replaces: the one named by `_rev` for an edit, the nearest
/// ancestor the store has for a replicated revision; `null` for a new document.
fn old_doc(db: &Database, id: &str, doc: &Value, new_edits: bool) -> Result<Value, HttpError> {
    if id.is_empty() {
        return Ok(Value::Null);
    }
    let mut candidates: Vec<Rev> = Vec::new();
    if new_edits {
        if let Some(rev) = doc.get("_rev").and_then(Value::as_str) {
            candidates.extend(rev.parse::<Rev>().ok());
        }
    } else if let Some(revs) = doc.get("_revisions") {
        let start = revs.get("start").and_then(Value::as_u64).unwrap_or(0);
        let ids = revs.get("ids").and_then(Value::as_array);
        for (i, h) in ids.into_iter().flatten().enumerate().skip(1) {
            let pos = start.saturating_sub(i as u64);
            if let Some(h) = h.as_str() {
                candidates.extend(format!("{pos}-{h}").parse::<Rev>().ok());
            }
        }
    }
    for rev in candidates {
        let opts = GetOptions {
            rev: Some(rev),
            revs: true,
            ..Default::default()
        };
        match db.get(id, &opts) {
            Ok(found) => return Ok(found),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Value::Null)
}

/// The new document as a validation function sees it: attachments as stubs (their bytes
/// are not the function's business), and for an edit the `_revisions` of the revision it
/// replaces.
fn as_validated(doc: &Value, new_edits: bool) -> Value {
    let mut doc = doc.clone();
    if new_edits {
        let rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok());
        if let (Some(rev), Value::Object(m)) = (rev, &mut doc) {
            let text = rev.to_string();
            let hash = text.split_once('-').map_or("", |(_, h)| h);
            m.insert(
                "_revisions".into(),
                json!({"start": rev.pos(), "ids": [hash]}),
            );
        }
    }
    if let Some(Value::Object(atts)) = doc.get_mut("_attachments") {
        for att in atts.values_mut() {
            if let Value::Object(a) = att {
                let mut stub = Map::new();
                for key in ["content_type", "digest", "length", "revpos", "encoding"] {
                    if let Some(v) = a.get(key) {
                        stub.insert(key.to_owned(), v.clone());
                    }
                }
                stub.insert("stub".into(), Value::Bool(true));
                *a = stub;
            }
        }
    }
    doc
}

/// A design document about to be written: its views' JavaScript must compile (CouchDB
/// refuses a design document whose map or reduce function is broken, with 400
/// `compilation_error`) and a built-in reduce must exist (`invalid_design_doc`). Compiling
/// evaluates the source, so it runs in a worker like any function, in a runtime thrown
/// away afterwards; a server without workers stores design documents unchecked.
fn check_design(db: &Database, writer: &Writer, doc: &Value) -> Result<(), HttpError> {
    if let Value::Object(members) = doc {
        crate::design_doc::check_fields(members)?;
    }
    let Some(Value::Object(views)) = doc.get("views") else {
        return Ok(());
    };
    let lang = doc
        .get("language")
        .and_then(Value::as_str)
        .unwrap_or("javascript");
    if lang != "javascript" {
        return Ok(());
    }
    let id = doc
        .get("_id")
        .and_then(Value::as_str)
        .unwrap_or("_design/?");
    let mut lease = None;
    for (name, view) in views {
        for kind in ["map", "reduce"] {
            let Some(source) = view.get(kind).and_then(Value::as_str) else {
                continue;
            };
            if kind == "reduce" && source.trim_start().starts_with('_') {
                if settee_js::Builtin::parse(source).is_none() {
                    return Err(HttpError::bad_request(format!(
                        "`{}` is not a supported reduce function.",
                        source.trim()
                    ))
                    .named("invalid_design_doc"));
                }
                continue;
            }
            if !writer.js.is_enabled() {
                continue;
            }
            let lease = match &mut lease {
                Some(l) => l,
                None => lease.insert(writer.js.lease(&js::scope(
                    db,
                    &writer.db_name,
                    id,
                    "new",
                ))?),
            };
            let f = Function::new(format!("{id} views.{name}.{kind}"), source, &Value::Null);
            match lease.check(&[f]) {
                Ok(()) => {}
                Err(e @ settee_js::Error::Compile { .. }) => {
                    return Err(HttpError::bad_request(format!(
                        "Compilation of the {kind} function in the '{name}' view failed: {}",
                        e.reason()
                    ))
                    .named("compilation_error"))
                }
                Err(e) => return Err(js::js_error(e)),
            }
        }
    }
    Ok(())
}
