//! `esedump space DB` (eseutil `/ms`): pages owned, available and used per tree, and the free
//! pages of the database; each tree named by its table and use, and per table the pages of its
//! records, indexes and long values.

use std::path::PathBuf;

use std::collections::BTreeMap;

use ese_btree::{NodeFlags, TreeKind};
use ese_core::Result;
use serde::Serialize;

use crate::catalog;
use crate::dbfile::state_name;
use crate::output::{Table, print_json};

/// Dump space usage per tree (eseutil /ms).
///
/// For every tree (the tree directory, objid 1, first): kind, root page, depth, pages owned,
/// available and used, leaf pages, nodes and bytes used on the leaves, and what the catalog
/// says it is for (its table and use: records, index, long values); then the space page,
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
    table: Option<String>,
    #[serde(rename = "use")]
    role: &'static str,
    index: Option<String>,
}

/// The pages of one table's trees.
#[derive(Serialize)]
struct TableSpaceJson {
    name: String,
    owned_pages: u64,
    record_pages: u64,
    index_pages: u64,
    long_value_pages: u64,
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
    tables: Vec<TableSpaceJson>,
}

/// What a tree is used for: its table, its use and (for a secondary index) the index name.
struct Owner {
    table: Option<String>,
    role: &'static str,
    index: Option<String>,
}

/// The owners of the trees named by the catalog, by objid. A catalog that does not read leaves
/// the map empty (`space` reports pages, not the schema).
fn owners(engine: &ese_btree::Database) -> BTreeMap<u32, Owner> {
    let mut m = BTreeMap::new();
    let Ok(entries) = super::tables::read_catalog(engine) else {
        return m;
    };
    let mut add = |objid: u32, table: &str, role, index: Option<String>| {
        if objid != 0 {
            m.entry(objid).or_insert_with(|| Owner {
                table: Some(table.to_owned()),
                role,
                index,
            });
        }
    };
    for e in entries
        .iter()
        .filter(|e| !e.flags.contains(NodeFlags::DELETED))
    {
        if let Ok(d) = &e.def {
            add(d.objid, &d.name, "records", None);
            add(d.lv_objid, &d.name, "long values", None);
            for i in d.indexes.iter().filter(|i| !i.is_primary()) {
                add(i.objid, &d.name, "index", Some(i.name.clone()));
            }
        }
    }
    m
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
    let own = owners(&engine);
    let trees: Vec<TreeJson> = r
        .trees
        .iter()
        .map(|t| {
            let o = own.get(&t.objid.0);
            TreeJson {
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
                table: o.and_then(|o| o.table.clone()),
                role: match (t.objid.0, o) {
                    (1, _) => "directory",
                    (catalog::CATALOG_OBJID, _) if !own.is_empty() => "catalog",
                    (_, Some(o)) => o.role,
                    (_, None) => "unknown",
                },
                index: o.and_then(|o| o.index.clone()),
            }
        })
        .collect();
    let mut tables: BTreeMap<String, TableSpaceJson> = BTreeMap::new();
    for t in &trees {
        let Some(name) = &t.table else { continue };
        let s = tables
            .entry(name.to_lowercase())
            .or_insert_with(|| TableSpaceJson {
                name: name.clone(),
                owned_pages: 0,
                record_pages: 0,
                index_pages: 0,
                long_value_pages: 0,
            });
        s.owned_pages += t.owned_pages;
        match t.role {
            "records" => s.record_pages += t.owned_pages,
            "index" => s.index_pages += t.owned_pages,
            _ => s.long_value_pages += t.owned_pages,
        }
    }
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
        trees,
        tables: tables.into_values().collect(),
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
        "TABLE",
        "USE",
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
            tr.table.clone().unwrap_or_else(|| "-".to_owned()),
            tr.index
                .as_ref()
                .map_or_else(|| tr.role.to_owned(), |i| format!("{} {i}", tr.role)),
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
    for t in &j.tables {
        outln!(
            "table {}: {} pages owned ({} records, {} indexes, {} long values)",
            t.name,
            t.owned_pages,
            t.record_pages,
            t.index_pages,
            t.long_value_pages
        );
    }
    Ok(())
}
