//! Mango from the command line: `find` (and `--explain`) and `index create|list|delete`.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use settee::Documents;

use super::{existing, print_json, Outcome, Ui};

#[derive(Debug, clap::Args)]
pub(crate) struct Find {
    /// The database.
    db: String,
    /// The selector (JSON), e.g. '{"notebook": "work"}'.
    selector: String,
    /// Sort by this field, `FIELD` or `FIELD:desc` (repeat for more; one direction).
    #[arg(long)]
    sort: Vec<String>,
    /// At most this many documents.
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// Skip this many matches first.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Only these fields of each document (comma-separated).
    #[arg(long, value_delimiter = ',')]
    fields: Option<Vec<String>>,
    /// Continue after a previous page (the bookmark it printed on stderr).
    #[arg(long)]
    bookmark: Option<String>,
    /// Use this index: `DDOC` or `DDOC/NAME`.
    #[arg(long)]
    use_index: Option<String>,
    /// Print how the query would run (CouchDB's `_explain`) instead of running it.
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum IndexCommand {
    /// Create a JSON index on FIELDS (built over the existing documents of a local store,
    /// with progress on stderr). Prints `{"result": "created"|"exists", "id", "name"}`.
    Create {
        /// The database.
        db: String,
        /// The indexed fields, in order (dotted paths allowed).
        #[arg(required = true)]
        fields: Vec<String>,
        /// The index name (default: derived from the definition).
        #[arg(long)]
        name: Option<String>,
        /// The design document (default: derived from the definition).
        #[arg(long)]
        ddoc: Option<String>,
        /// Only index documents matching this selector (JSON).
        #[arg(long)]
        partial_filter_selector: Option<String>,
    },
    /// List the indexes, one JSON line each (`_all_docs` first).
    List {
        /// The database.
        db: String,
    },
    /// Delete an index.
    Delete {
        /// The database.
        db: String,
        /// Its design document (`_design/` optional).
        ddoc: String,
        /// Its name.
        name: String,
    },
}

/// `settee find`: the matching documents on stdout, the planner's warning and the next
/// page's bookmark on stderr.
pub(crate) async fn find(args: Find) -> anyhow::Result<Outcome> {
    let db = existing(&args.db)?;
    let explain = args.explain;
    let req = find_request(args)?;
    if explain {
        print_json(&db.explain(&req).await?)?;
        return Ok(Outcome::Clean);
    }
    let found = db.find(&req).await?;
    if let Some(w) = &found.warning {
        for line in w.lines() {
            eprintln!("settee: warning: {line}");
        }
    }
    for doc in &found.docs {
        print_json(doc)?;
    }
    if let Some(b) = found.bookmark.as_deref().filter(|b| *b != "nil") {
        if found.docs.len() == req.limit && req.limit > 0 {
            eprintln!("settee: more may follow; for the next page add --bookmark {b}");
        }
    }
    Ok(Outcome::Clean)
}

/// A find request from the command's arguments.
fn find_request(args: Find) -> anyhow::Result<settee::FindRequest> {
    let selector: Value =
        serde_json::from_str(&args.selector).context("the selector is not valid JSON")?;
    let sort: Vec<Value> = args
        .sort
        .iter()
        .map(|s| match s.rsplit_once(':') {
            Some((field, "desc")) => serde_json::json!({ field: "desc" }),
            Some((field, "asc")) => serde_json::json!({ field: "asc" }),
            _ => Value::String(s.clone()),
        })
        .collect();
    let mut body =
        serde_json::json!({"selector": selector, "limit": args.limit, "skip": args.skip});
    if !sort.is_empty() {
        body["sort"] = Value::Array(sort);
    }
    if let Some(f) = args.fields {
        body["fields"] = serde_json::json!(f);
    }
    if let Some(b) = args.bookmark {
        body["bookmark"] = Value::String(b);
    }
    if let Some(u) = args.use_index {
        body["use_index"] = Value::String(u);
    }
    Ok(settee::FindRequest::parse(&body)?)
}

/// `settee index ...`; `create` shows the build's progress on a terminal.
pub(crate) async fn index(command: IndexCommand, ui: &Ui) -> anyhow::Result<Outcome> {
    match command {
        IndexCommand::Create {
            db,
            fields,
            name,
            ddoc,
            partial_filter_selector,
        } => {
            let db = existing(&db)?;
            let mut def = serde_json::json!({"fields": fields});
            if let Some(p) = partial_filter_selector {
                def["partial_filter_selector"] = serde_json::from_str(&p)
                    .context("--partial-filter-selector is not valid JSON")?;
            }
            let mut body = serde_json::json!({"index": def});
            if let Some(n) = name {
                body["name"] = Value::String(n);
            }
            if let Some(d) = ddoc {
                body["ddoc"] = Value::String(d);
            }
            let pb = ui.bar.then(|| {
                let pb = indicatif::ProgressBar::new(0);
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "building {msg} [{bar:30}] {pos}/{len} docs",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                pb
            });
            let bar = pb.clone();
            let res = db
                .create_index_with_progress(&body, move |p| {
                    if let Some(pb) = &bar {
                        pb.set_message(format!("{}/{}", p.ddoc, p.name));
                        pb.set_length(p.total);
                        pb.set_position(p.done);
                    }
                })
                .await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            print_json(&res)?;
            Ok(Outcome::Clean)
        }
        IndexCommand::List { db } => {
            for index in existing(&db)?.get_indexes().await?.indexes {
                print_json(&index)?;
            }
            Ok(Outcome::Clean)
        }
        IndexCommand::Delete { db, ddoc, name } => {
            existing(&db)?.delete_index(&ddoc, &name).await?;
            print_json(&serde_json::json!({"ok": true}))?;
            Ok(Outcome::Clean)
        }
    }
}
