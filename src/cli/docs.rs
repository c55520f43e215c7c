//! The document commands: `put`, `get`, `rm`, `all-docs`, `changes`, `conflicts`, `info`
//! and `compact`. Each prints CouchDB-shaped JSON on stdout, one line per item.

use std::io::Read;

use anyhow::Context;
use serde_json::Value;
use settee::{Db, GetArgs};

use super::{existing, parse_seq, print_json, with_location, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Put {
    /// The database.
    db: String,
    /// The document JSON.
    doc: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Get {
    /// The database.
    db: String,
    /// The document id.
    id: String,
    /// A specific revision.
    #[arg(long)]
    rev: Option<String>,
    /// Include `_revisions`.
    #[arg(long)]
    revs: bool,
    /// Include `_conflicts`.
    #[arg(long)]
    conflicts: bool,
    /// `all`, or a JSON array of revs: print every leaf (one JSON line each).
    #[arg(long)]
    open_revs: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Rm {
    /// The database.
    db: String,
    /// The document id.
    id: String,
    /// The revision to delete.
    #[arg(long)]
    rev: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AllDocs {
    /// The database.
    db: String,
    /// Include each document.
    #[arg(long)]
    include_docs: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Changes {
    /// The database.
    db: String,
    /// Start after this sequence.
    #[arg(long)]
    since: Option<String>,
    /// Keep following new changes.
    #[arg(long)]
    follow: bool,
    /// Include each document.
    #[arg(long)]
    include_docs: bool,
}

// The arguments of a command that takes only a database (`conflicts`, `info`, `compact`).
#[derive(Debug, clap::Args)]
pub(crate) struct OneDb {
    /// The database.
    db: String,
}

/// `settee put`: the document from the argument, or from stdin.
pub(crate) async fn put(Put { db, doc }: Put) -> anyhow::Result<Outcome> {
    let doc = match doc {
        Some(d) => d,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the document from stdin")?;
            s
        }
    };
    let doc: Value = serde_json::from_str(&doc).context("the document is not valid JSON")?;
    let res = with_location(&db, Db::open(&db))?.put(doc).await?;
    print_json(&res)?;
    Ok(Outcome::Clean)
}

/// `settee get`: one revision, or every requested leaf with `--open-revs`.
pub(crate) async fn get(
    Get {
        db,
        id,
        rev,
        revs,
        conflicts,
        open_revs,
    }: Get,
) -> anyhow::Result<Outcome> {
    let db = existing(&db)?;
    let args = GetArgs {
        rev,
        revs,
        conflicts,
        open_revs,
        attachments: false,
    };
    match &args.open_revs {
        Some(_) => {
            for leaf in db.open_revs(&id, &args).await? {
                print_json(&leaf)?;
            }
        }
        None => print_json(&db.get(&id, &args).await?)?,
    }
    Ok(Outcome::Clean)
}

/// `settee rm`.
pub(crate) async fn rm(Rm { db, id, rev }: Rm) -> anyhow::Result<Outcome> {
    print_json(&existing(&db)?.delete(&id, rev.as_deref()).await?)?;
    Ok(Outcome::Clean)
}

/// `settee all-docs`.
pub(crate) async fn all_docs(AllDocs { db, include_docs }: AllDocs) -> anyhow::Result<Outcome> {
    for row in existing(&db)?.all_docs(include_docs).await? {
        print_json(&row)?;
    }
    Ok(Outcome::Clean)
}

/// `settee changes`, once or `--follow`ing.
pub(crate) async fn changes(
    Changes {
        db,
        since,
        follow,
        include_docs,
    }: Changes,
) -> anyhow::Result<Outcome> {
    let db = existing(&db)?;
    let mut since = since.map(|s| settee::Seq::from_json(parse_seq(&s)));
    loop {
        let (rows, last) = db.changes(since.clone(), include_docs, follow).await?;
        for row in &rows {
            print_json(row)?;
        }
        since = Some(last);
        if !follow {
            break;
        }
    }
    Ok(Outcome::Clean)
}

/// `settee conflicts`.
pub(crate) async fn conflicts(OneDb { db }: OneDb) -> anyhow::Result<Outcome> {
    for doc in existing(&db)?.conflicts().await? {
        print_json(&doc)?;
    }
    Ok(Outcome::Clean)
}

/// `settee info`.
pub(crate) async fn info(OneDb { db }: OneDb) -> anyhow::Result<Outcome> {
    print_json(&existing(&db)?.info().await?)?;
    Ok(Outcome::Clean)
}

/// `settee compact`.
pub(crate) async fn compact(OneDb { db }: OneDb) -> anyhow::Result<Outcome> {
    print_json(&existing(&db)?.compact().await?)?;
    Ok(Outcome::Clean)
}
