//! `esedump space DB` (eseutil `/ms`): pages owned, available and used per tree, and the free
//! pages of the database.

use std::path::PathBuf;

use ese_btree::TreeKind;
use ese_core::Result;
use serde::Serialize;

use crate::dbfile::state_name;
use crate::output::{Table, print_json};

/// Dump space usage per tree (eseutil /ms).
///
/// For every tree (the tree directory, objid 1, first): kind, root page, depth, pages owned,
/// available and used, leaf pages, nodes and bytes used on the leaves; then the space page,
/// the free pages and the unused tail of the file. Walks every tree, so a damaged database
/// fails with the error that names the page.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  esedump space data.edb\n  esedump space data.edb --json")]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TreeJson {
    objid: u32,
    kind: &'static str,
    root: u32,
    depth: u32,
    owned_pages: u64,
    available_pages: u64,
    used_pages: u64,
    leaf_pages: u64,
    nodes: u64,
    leaf_bytes_used: u64,
}

#[derive(Serialize)]
struct SpaceJson {
    path: String,
    state: &'static str,
    recovery_needed: bool,
    page_size: u32,
    file_pages: u32,
    pgno_last: u32,
    space_pages: u32,
    free_pages: u32,
    unused_tail_pages: u32,
    trees: Vec<TreeJson>,
}

fn kind_name(objid: u32, k: TreeKind) -> &'static str {
    if objid == 1 {
        return "directory";
    }
    match k {
        TreeKind::Table => "table",
        TreeKind::Index => "index",
        TreeKind::LongValue => "long-value",
    }
}

/// Runs `esedump space`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let (_db, h) = super::open_db(&args.db)?;
    if !args.json
        && let Some(n) = super::dirty_note(&h)
    {
        eprintln!("esedump: {n}");
    }
    let engine = super::open_engine(&args.db, h.page_size)?;
    let r = engine.space_report()?;
    let j = SpaceJson {
        path: args.db.display().to_string(),
        state: state_name(h.state),
        recovery_needed: h.state == ese_btree::DbState::DirtyShutdown,
        page_size: r.page_size,
        file_pages: r.file_pages,
        pgno_last: r.pgno_last,
        space_pages: 1,
        free_pages: r.free_pages,
        unused_tail_pages: r.unused_tail_pages,
        trees: r
            .trees
            .iter()
            .map(|t| TreeJson {
                objid: t.objid.0,
                kind: kind_name(t.objid.0, t.kind),
                root: t.root.0,
                depth: t.depth,
                owned_pages: t.owned_pages,
                available_pages: t.available_pages,
                used_pages: t.owned_pages.saturating_sub(t.available_pages),
                leaf_pages: t.leaf_pages,
                nodes: t.nodes,
                leaf_bytes_used: t.leaf_bytes_used,
            })
            .collect(),
    };
    if args.json {
        return print_json(&j);
    }
    let mut t = Table::new(&[
        "OBJID",
        "KIND",
        "ROOT",
        "DEPTH",
        "OWNED",
        "AVAIL",
        "USED",
        "LEAVES",
        "NODES",
        "LEAF BYTES",
    ]);
    for tr in &j.trees {
        t.row(vec![
            tr.objid.to_string(),
            tr.kind.to_owned(),
            tr.root.to_string(),
            tr.depth.to_string(),
            tr.owned_pages.to_string(),
            tr.available_pages.to_string(),
            tr.used_pages.to_string(),
            tr.leaf_pages.to_string(),
            tr.nodes.to_string(),
            tr.leaf_bytes_used.to_string(),
        ]);
    }
    t.print();
    outln!();
    let owned: u64 = j.trees.iter().map(|t| t.owned_pages).sum();
    outln!(
        "{} pages of {} bytes in the file: {} owned by {} trees, {} space page, {} free, {} \
         unused at the end (last allocated page {})",
        j.file_pages,
        j.page_size,
        owned,
        j.trees.len(),
        j.space_pages,
        j.free_pages,
        j.unused_tail_pages,
        j.pgno_last
    );
    Ok(())
}
