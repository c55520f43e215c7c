//! JSON index definitions: what `_index` creates, how a design document with
//! `"language": "query"` holds it (CouchDB's layout, so that an index made here works on
//! CouchDB and one made on CouchDB or PouchDB works here), and the keys a document has in it.

use serde_json::{json, Map, Value};

use crate::field::{FieldPath, Lookup};
use crate::request::{check_keys, parse_sort_fields};
use crate::{Error, Result, Selector};

/// One column of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexField {
    /// The field name as written (`"a.b"`).
    pub name: String,
    /// The parsed path.
    pub path: FieldPath,
    /// Whether it was declared `"desc"`. CouchDB ignores the direction of index columns
    /// (an index is read either way); it is kept to write the definition back.
    pub descending: bool,
}

/// A JSON index: a design document, a name, its columns and an optional partial filter.
#[derive(Debug, Clone)]
pub struct IndexDef {
    /// The design document's id, `_design/...`.
    pub ddoc: String,
    /// The view name inside it.
    pub name: String,
    /// The columns, in key order.
    pub fields: Vec<IndexField>,
    /// Only documents matching this are indexed.
    pub partial_filter_selector: Option<Selector>,
    /// The partial filter as given (written back into the design document).
    partial_json: Option<Value>,
    /// The `fields` as given (written into `options.def`).
    fields_json: Value,
}

impl PartialEq for IndexDef {
    /// Same place, same columns, same partial filter: the same index.
    fn eq(&self, other: &IndexDef) -> bool {
        self.ddoc == other.ddoc
            && self.name == other.name
            && self.fields == other.fields
            && self
                .partial_filter_selector
                .as_ref()
                .map(Selector::to_canonical_json)
                == other
                    .partial_filter_selector
                    .as_ref()
                    .map(Selector::to_canonical_json)
    }
}

/// What [`IndexDef::add_to_design_doc`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum DesignChange {
    /// The design document already holds this index: nothing to write.
    Exists,
    /// Write this body (with `_id`, and `_rev` when the document existed).
    Write(Value),
}

impl IndexDef {
    /// An index from the body of a `POST /{db}/_index` request:
    /// `{"index": {"fields": [...], "partial_filter_selector": {...}}, "ddoc": ..., "name":
    /// ..., "type": "json"}`. Without `ddoc` and `name`, both are derived from the
    /// definition (the same definition gives the same name, so creating it again finds it).
    ///
    /// ```
    /// use serde_json::json;
    /// let idx = settee_query::IndexDef::from_create_request(&json!({
    ///     "index": {"fields": ["type", {"updated_at": "asc"}]}, "ddoc": "by-type"
    /// }))?;
    /// assert_eq!(idx.ddoc, "_design/by-type");
    /// assert_eq!(idx.fields.len(), 2);
    /// # Ok::<(), settee_query::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Request`] naming the bad member: `missing_required_key` (no `index` or no
    /// `fields`), `invalid_key`, `invalid_sort_field` (a bad column or direction),
    /// `unsupported_mixed_sort`, `invalid_empty_string` (empty `name` or `ddoc`),
    /// `invalid_string`; [`Error::InvalidIndex`] for a type other than `json`;
    /// [`Error::Selector`] for a bad `partial_filter_selector`.
    pub fn from_create_request(body: &Value) -> Result<IndexDef> {
        let Value::Object(map) = body else {
            return Err(Error::request(
                "invalid_object",
                format!("the index request must be a JSON object, got {body}"),
            ));
        };
        check_keys(map, &["index", "type", "name", "ddoc", "w", "partitioned"])?;
        let def = map
            .get("index")
            .ok_or_else(|| Error::request("missing_required_key", "Missing required key: index"))?;
        match map.get("type") {
            None => {}
            Some(Value::String(t)) if t == "json" => {}
            Some(other) => {
                return Err(Error::InvalidIndex {
                    reason: format!(
                        "index type {other} is not supported: Settee has JSON indexes only"
                    ),
                })
            }
        }
        let text = |key: &str| -> Result<Option<String>> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Err(Error::request(
                    "invalid_empty_string",
                    "Index name or ddoc cannot be empty string",
                )),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(Error::request(
                    "invalid_string",
                    format!("{key} must be a string, got {other}"),
                )),
            }
        };
        let (name, ddoc) = (text("name")?, text("ddoc")?);
        let Value::Object(def_map) = def else {
            return Err(Error::InvalidIndex {
                reason: format!("the index definition must be an object, got {def}"),
            });
        };
        check_keys(def_map, &["fields", "partial_filter_selector"])?;
        let fields_json = def_map.get("fields").ok_or_else(|| {
            Error::request("missing_required_key", "Missing required key: fields")
        })?;
        let partial = def_map
            .get("partial_filter_selector")
            .filter(|p| !matches!(p, Value::Object(m) if m.is_empty()))
            .cloned();
        let mut idx = IndexDef::new(String::new(), String::new(), fields_json, partial)?;
        // As in CouchDB, a generated name depends on the other options given too: two
        // indexes on the same fields under two names get two design documents.
        let auto = idx.auto_name(name.as_deref(), ddoc.as_deref());
        idx.name = name.unwrap_or_else(|| auto.clone());
        idx.ddoc = match ddoc {
            Some(d) if d.starts_with("_design/") => d,
            Some(d) => format!("_design/{d}"),
            None => format!("_design/{auto}"),
        };
        Ok(idx)
    }

    fn new(
        ddoc: String,
        name: String,
        fields_json: &Value,
        partial_json: Option<Value>,
    ) -> Result<IndexDef> {
        let sort = parse_sort_fields(fields_json)?;
        if sort.is_empty() {
            return Err(Error::InvalidIndex {
                reason: "an index needs at least one field".into(),
            });
        }
        let fields = sort
            .into_iter()
            .map(|(name, path, descending)| IndexField {
                name,
                path,
                descending,
            })
            .collect();
        let partial_filter_selector = partial_json.as_ref().map(Selector::parse).transpose()?;
        Ok(IndexDef {
            ddoc,
            name,
            fields,
            partial_filter_selector,
            partial_json,
            fields_json: fields_json.clone(),
        })
    }

    /// A name derived from the definition: 40 hexadecimal digits, as long as CouchDB's
    /// (whose SHA-1 of an Erlang term cannot be reproduced). Deterministic across runs and
    /// platforms: a 160-bit FNV-1a family hash of the canonical JSON of the definition.
    /// `name` and `ddoc` are the request's, when given.
    fn auto_name(&self, name: Option<&str>, ddoc: Option<&str>) -> String {
        let mut canon = json!({
            "fields": self.fields.iter().map(|f| json!({&f.name: if f.descending { "desc" } else { "asc" }})).collect::<Vec<_>>(),
            "partial_filter_selector": self.partial_filter_selector.as_ref().map(Selector::to_canonical_json),
        });
        if let Some(n) = name {
            canon["name"] = json!(n);
        }
        if let Some(d) = ddoc {
            canon["ddoc"] = json!(d);
        }
        let canon = canon.to_string();
        let mut out = String::with_capacity(40);
        for seed in [
            0xcbf2_9ce4_8422_2325u64,
            0x8422_2325_cbf2_9ce4,
            0x1000_0000_01b3_1234,
        ] {
            let mut h = seed;
            for b in canon.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            out.push_str(&format!("{h:016x}"));
        }
        out.truncate(40);
        out
    }

    /// The JSON indexes a design document defines: none unless it has `"language":
    /// "query"`. Views that are not valid JSON index definitions are skipped, as CouchDB
    /// skips them (a text index, a malformed map). Reads both CouchDB's layout (`map.fields`
    /// an object, `map.partial_filter_selector`) and older ones (`options.def`).
    ///
    /// ```
    /// use serde_json::json;
    /// let ddoc = json!({"_id": "_design/d", "language": "query", "views": {"v": {
    ///     "map": {"fields": {"a": "asc"}, "partial_filter_selector": {}},
    ///     "reduce": "_count", "options": {"def": {"fields": ["a"]}}}}});
    /// let idx = settee_query::IndexDef::from_design_doc(&ddoc);
    /// assert_eq!((idx[0].ddoc.as_str(), idx[0].name.as_str()), ("_design/d", "v"));
    /// ```
    pub fn from_design_doc(ddoc: &Value) -> Vec<IndexDef> {
        let Some(id) = ddoc.get("_id").and_then(Value::as_str) else {
            return Vec::new();
        };
        if ddoc.get("language").and_then(Value::as_str) != Some("query")
            || ddoc.get("_deleted") == Some(&Value::Bool(true))
        {
            return Vec::new();
        }
        let Some(Value::Object(views)) = ddoc.get("views") else {
            return Vec::new();
        };
        views
            .iter()
            .filter_map(|(name, view)| IndexDef::from_view(id, name, view))
            .collect()
    }

    /// The index a design document's view defines (`views.<name>`), or `None` if it is not
    /// a valid JSON index definition.
    pub fn from_view(ddoc: &str, name: &str, view: &Value) -> Option<IndexDef> {
        let map = view.get("map")?;
        let def = view.get("options").and_then(|o| o.get("def"));
        let fields = map
            .get("fields")
            .or_else(|| def.and_then(|d| d.get("fields")))?;
        let fields = match fields {
            // CouchDB's map form: {"a": "asc", "b": "asc"}, in column order.
            Value::Object(cols) => {
                Value::Array(cols.iter().map(|(k, v)| json!({ k: v })).collect())
            }
            other => other.clone(),
        };
        let partial = map
            .get("partial_filter_selector")
            .or_else(|| def.and_then(|d| d.get("partial_filter_selector")))
            .filter(|p| !matches!(p, Value::Object(m) if m.is_empty()))
            .cloned();
        let fields_json = def
            .and_then(|d| d.get("fields"))
            .cloned()
            .unwrap_or_else(|| fields.clone());
        let mut idx = IndexDef::new(ddoc.to_owned(), name.to_owned(), &fields, partial).ok()?;
        idx.fields_json = fields_json;
        Some(idx)
    }

    /// The design document with this index added: `existing` is the current design
    /// document (with `_id` and `_rev`) or `None`. CouchDB's layout:
    /// `views.<name> = {"map": {"fields": {...}, "partial_filter_selector": {...}},
    /// "reduce": "_count", "options": {"def": {...}}}`.
    ///
    /// # Errors
    /// [`Error::Request`] `invalid_ddoc_lang` if the design document exists with another
    /// `language`, or none (JavaScript).
    pub fn add_to_design_doc(&self, existing: Option<&Value>) -> Result<DesignChange> {
        let live = matches!(existing, Some(Value::Object(m)) if m.get("_deleted") != Some(&Value::Bool(true)));
        let mut body = match existing {
            Some(Value::Object(m)) if m.get("_deleted") != Some(&Value::Bool(true)) => m.clone(),
            _ => {
                let mut m = Map::new();
                m.insert("_id".into(), Value::String(self.ddoc.clone()));
                if let Some(rev) = existing.and_then(|e| e.get("_rev")) {
                    m.insert("_rev".into(), rev.clone());
                }
                m
            }
        };
        body.remove("_deleted");
        match body.get("language") {
            None if !live => {
                body.insert("language".into(), json!("query"));
            }
            Some(Value::String(l)) if l == "query" => {}
            // CouchDB's answer, also for an existing design document without a language
            // (JavaScript by default).
            other => {
                return Err(Error::request(
                    "invalid_ddoc_lang",
                    format!(
                        "Existing design doc {} has an invalid language: {}; indexes live in design documents with \"language\": \"query\"",
                        self.ddoc,
                        other.map_or_else(|| "none".to_owned(), Value::to_string)
                    ),
                ))
            }
        }
        let view = self.view_json();
        let views = body
            .entry("views")
            .or_insert_with(|| Value::Object(Map::new()));
        if !views.is_object() {
            *views = Value::Object(Map::new());
        }
        let Value::Object(views) = views else {
            return Err(Error::InvalidIndex {
                reason: format!("{} has a malformed views member", self.ddoc),
            });
        };
        if views.get(&self.name) == Some(&view) {
            return Ok(DesignChange::Exists);
        }
        views.insert(self.name.clone(), view);
        Ok(DesignChange::Write(Value::Object(body)))
    }

    /// The design document without the view `name`: `None` if the view was its last one
    /// (CouchDB then deletes the design document), else the body to write.
    ///
    /// # Errors
    /// [`Error::InvalidIndex`] if the design document has no such view.
    pub fn remove_from_design_doc(ddoc: &Value, name: &str) -> Result<Option<Value>> {
        let mut body = ddoc.as_object().cloned().unwrap_or_default();
        let id = body
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let removed = body
            .get_mut("views")
            .and_then(Value::as_object_mut)
            .and_then(|v| v.remove(name));
        if removed.is_none() {
            return Err(Error::InvalidIndex {
                reason: format!("index {name} not found in {id}"),
            });
        }
        if body
            .get("views")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            body.remove("views");
        }
        let rest: Vec<&String> = body
            .keys()
            .filter(|k| !k.starts_with('_') && *k != "language")
            .collect();
        Ok((!rest.is_empty()).then_some(Value::Object(body)))
    }

    /// The view this index is in its design document (`views.<name>`), CouchDB's layout.
    pub fn view_json(&self) -> Value {
        let cols: Map<String, Value> = self
            .fields
            .iter()
            .map(|f| {
                let dir = if f.descending { "desc" } else { "asc" };
                (f.name.clone(), json!(dir))
            })
            .collect();
        let mut def = Map::new();
        def.insert("fields".into(), self.fields_json.clone());
        if let Some(p) = &self.partial_json {
            def.insert("partial_filter_selector".into(), p.clone());
        }
        json!({
            "map": {
                "fields": cols,
                // Normalized in the map, as given in `options.def` (as CouchDB writes them).
                "partial_filter_selector": self
                    .partial_filter_selector
                    .as_ref()
                    .map_or_else(|| json!({}), Selector::to_canonical_json),
            },
            "reduce": "_count",
            "options": {"def": def},
        })
    }

    /// The index as `GET /{db}/_index` lists it.
    pub fn to_json(&self) -> Value {
        let mut def = Map::new();
        def.insert(
            "fields".into(),
            Value::Array(
                self.fields
                    .iter()
                    .map(|f| json!({&f.name: if f.descending { "desc" } else { "asc" }}))
                    .collect(),
            ),
        );
        // CouchDB lists the partial filter normalized (`{"a": 1}` as `{"a": {"$eq": 1}}`).
        if let Some(p) = &self.partial_filter_selector {
            def.insert("partial_filter_selector".into(), p.to_canonical_json());
        }
        json!({
            "ddoc": self.ddoc,
            "name": self.name,
            "type": "json",
            "partitioned": false,
            "def": def,
        })
    }

    /// The column paths.
    pub fn columns(&self) -> impl Iterator<Item = &FieldPath> {
        self.fields.iter().map(|f| &f.path)
    }

    /// The key `doc` has in this index: one value per column, or `None` when the document
    /// is not in the index (a design document, a column missing, or the partial filter not
    /// matched). Deleted documents are the caller's to leave out.
    ///
    /// ```
    /// use serde_json::json;
    /// let idx = settee_query::IndexDef::from_create_request(&json!({"index": {"fields": ["a", "b.c"]}}))?;
    /// assert_eq!(idx.key_of(&json!({"_id": "x", "a": 1, "b": {"c": null}})), Some(vec![&json!(1), &json!(null)]));
    /// assert_eq!(idx.key_of(&json!({"_id": "x", "a": 1})), None);
    /// # Ok::<(), settee_query::Error>(())
    /// ```
    pub fn key_of<'a>(&self, doc: &'a Value) -> Option<Vec<&'a Value>> {
        if doc
            .get("_id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("_design/"))
        {
            return None;
        }
        if let Some(p) = &self.partial_filter_selector {
            if !p.matches(doc) {
                return None;
            }
        }
        self.fields
            .iter()
            .map(|f| match f.path.lookup(doc) {
                Lookup::Found(v) => Some(v),
                Lookup::NotFound | Lookup::BadPath => None,
            })
            .collect()
    }

    /// Whether `fields` (a projection) can be answered from this index's columns and `_id`
    /// alone (CouchDB's "covering" index; `None` means all fields).
    pub(crate) fn covers(&self, fields: Option<&[FieldPath]>) -> bool {
        let Some(fields) = fields else {
            return false;
        };
        fields
            .iter()
            .all(|f| f.is_id() || self.fields.iter().any(|c| &c.path == f))
    }
}

#[cfg(test)]
mod tests;
