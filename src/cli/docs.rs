//! The document commands: `put`, `get`, `rm`, `all-docs`, `changes`, `conflicts`, `info`
//! and `compact`. Each prints CouchDB-shaped JSON on stdout, one line per item.

use std::io::Read;

use anyhow::Context;
use serde_json::Value;
use settee::{AllDocsOptions, ChangesRequest, Db, Documents, OpenRevs, ReadOptions, Rev};

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
    let res = with_location(&db, super::open(&db))?.put(doc).await?;
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
    let opts = ReadOptions {
        rev: rev.as_deref().map(parse_rev).transpose()?,
        revs,
        conflicts,
        attachments: false,
    };
    match open_revs.as_deref() {
        Some(which) => {
            let which = if which == "all" {
                OpenRevs::All
            } else {
                let list: Vec<String> = serde_json::from_str(which)
                    .context("--open-revs must be `all` or a JSON array of revisions")?;
                OpenRevs::Revs(
                    list.iter()
                        .map(|r| parse_rev(r))
                        .collect::<anyhow::Result<_>>()?,
                )
            };
            for leaf in db.open_revs(&id, &which, &opts).await? {
                print_json(&leaf)?;
            }
        }
        None => print_json(&db.get(&id, &opts).await?)?,
    }
    Ok(Outcome::Clean)
}

/// `settee rm`.
pub(crate) async fn rm(Rm { db, id, rev }: Rm) -> anyhow::Result<Outcome> {
    let rev = rev.as_deref().map(parse_rev).transpose()?;
    print_json(&existing(&db)?.delete(&id, rev.as_ref()).await?)?;
    Ok(Outcome::Clean)
}

/// `settee all-docs`.
pub(crate) async fn all_docs(AllDocs { db, include_docs }: AllDocs) -> anyhow::Result<Outcome> {
    let opts = AllDocsOptions {
        include_docs,
        ..Default::default()
    };
    for row in existing(&db)?.all_docs(&opts).await?.rows {
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
        let req = ChangesRequest {
            since: since.clone(),
            include_docs,
            limit: None,
            wait: follow,
        };
        let page = db.changes(&req).await?;
        for row in &page.results {
            print_json(row)?;
        }
        since = Some(page.last_seq);
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
    match existing(&db)? {
        Db::Local(l) => print_json(&l.info().await?)?,
        Db::Remote(r) => print_json(&r.info().await?)?,
    }
    Ok(Outcome::Clean)
}

/// `settee compact`.
pub(crate) async fn compact(OneDb { db }: OneDb) -> anyhow::Result<Outcome> {
    match existing(&db)? {
        // The rewrite gives the space back; this process holds the only handle.
        Db::Local(l) => drop(l.rewrite().await?),
        Db::Remote(r) => anyhow::bail!(
            "compacting {} is the server's job (POST /db/_compact as an admin); settee compacts local stores",
            r.url()
        ),
    }
    print_json(&serde_json::json!({"ok": true}))?;
    Ok(Outcome::Clean)
}

/// A revision given on the command line.
pub(super) fn parse_rev(rev: &str) -> anyhow::Result<Rev> {
    rev.parse::<Rev>().with_context(|| {
        format!("{rev:?} is not a revision (N-hex, such as 1-967a00dff5e02add41819138abb3284d)")
    })
}
