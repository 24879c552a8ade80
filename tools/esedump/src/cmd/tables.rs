//! `esedump tables DB` (eseutil `/mm`): the catalog. Every table with its columns (id, type,
//! options, area), its indexes (key segments and directions, options, key-most) and the
//! trees behind them (objid and root page).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ese_btree::{Database, NodeFlags, TreeKind};
use ese_core::{Error, ErrorKind, ObjId, Result};
use serde::Serialize;

use crate::catalog::{
    self, CATALOG_OBJID, TableDef, area_name, column_grbit_names, index_grbit_names, type_name,
};
use crate::dbfile::state_name;
use crate::output::{Table, hex, print_json};

/// Dump the catalog: tables, columns, indexes and their trees (eseutil /mm).
///
/// Reads the catalog tree (objid 2) as the file holds it. Never runs recovery: on a dirty
/// database it warns and shows what the file holds, including definitions of transactions
/// that recovery would roll back (marked "versioned").
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  esedump tables data.edb\n  esedump tables data.edb --json")]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// Print the documented JSON schema (docs/esedump.md) instead of tables.
    #[arg(long)]
    json: bool,
}

/// One catalog entry as read from the file.
pub(crate) struct Entry {
    /// The table name from the catalog key.
    pub(crate) key_name: String,
    pub(crate) flags: NodeFlags,
    pub(crate) def: std::result::Result<TableDef, String>,
}

/// Reads every table entry of the catalog, flag-deleted ones included (the caller decides).
///
/// # Errors
/// `CatalogCorrupted` when the catalog tree is missing; page read errors.
pub(crate) fn read_catalog(engine: &Database) -> Result<Vec<Entry>> {
    let tree = engine.open_tree(ObjId(CATALOG_OBJID)).map_err(|e| {
        if e.kind() == ErrorKind::ObjectNotFound {
            Error::new(ErrorKind::CatalogCorrupted)
                .with_message("the database has no catalog (tree objid 2)")
        } else {
            e
        }
    })?;
    let mut c = tree.cursor();
    let mut out = Vec::new();
    let mut on = c.move_first()?;
    while on {
        if let Some(name) = catalog::table_key_name(c.key()) {
            out.push(Entry {
                key_name: name,
                flags: c.flags(),
                def: TableDef::decode(c.data()),
            });
        }
        on = c.move_next()?;
    }
    Ok(out)
}

/// The trees of the database: objid → (root page, kind).
pub(crate) fn tree_roots(engine: &Database) -> Result<BTreeMap<u32, (u32, TreeKind)>> {
    Ok(engine
        .trees()?
        .into_iter()
        .map(|(o, p, k)| (o.0, (p.0, k)))
        .collect())
}

fn flag_names(f: NodeFlags) -> Vec<&'static str> {
    let mut v = Vec::new();
    if f.contains(NodeFlags::DELETED) {
        v.push("deleted");
    }
    if f.contains(NodeFlags::VERSIONED) {
        v.push("versioned");
    }
    v
}

#[derive(Serialize)]
struct ColumnJson {
    id: u32,
    name: String,
    #[serde(rename = "type")]
    coltyp: &'static str,
    type_value: u32,
    area: &'static str,
    max_size: u32,
    grbit: u32,
    grbit_names: Vec<String>,
    code_page: u16,
    default: Option<String>,
    deleted: bool,
}

#[derive(Serialize)]
struct SegmentJson {
    column_id: u32,
    column: Option<String>,
    descending: bool,
    /// The key holds a fixed Binary column's bytes as they are (not groups of 8).
    fixed_binary: bool,
}

#[derive(Serialize)]
struct IndexJson {
    name: String,
    primary: bool,
    objid: u32,
    root: Option<u32>,
    grbit: u32,
    grbit_names: Vec<String>,
    key_most: u16,
    key: String,
    segments: Vec<SegmentJson>,
}

#[derive(Serialize)]
struct TableJson {
    name: String,
    node_flags: Vec<&'static str>,
    problem: Option<String>,
    objid: Option<u32>,
    root: Option<u32>,
    lv_objid: Option<u32>,
    lv_root: Option<u32>,
    next_column_ids: Option<[u32; 3]>,
    columns: Vec<ColumnJson>,
    indexes: Vec<IndexJson>,
}

#[derive(Serialize)]
struct TablesJson {
    path: String,
    state: &'static str,
    recovery_needed: bool,
    catalog_objid: u32,
    catalog_root: Option<u32>,
    tables: Vec<TableJson>,
}

fn table_json(e: &Entry, roots: &BTreeMap<u32, (u32, TreeKind)>) -> TableJson {
    let root = |o: u32| roots.get(&o).map(|r| r.0);
    let mut t = TableJson {
        name: e.key_name.clone(),
        node_flags: flag_names(e.flags),
        problem: None,
        objid: None,
        root: None,
        lv_objid: None,
        lv_root: None,
        next_column_ids: None,
        columns: Vec::new(),
        indexes: Vec::new(),
    };
    let d = match &e.def {
        Ok(d) => d,
        Err(p) => {
            t.problem = Some(p.clone());
            return t;
        }
    };
    t.name.clone_from(&d.name);
    t.objid = Some(d.objid);
    t.root = root(d.objid);
    t.lv_objid = (d.lv_objid != 0).then_some(d.lv_objid);
    t.lv_root = t.lv_objid.and_then(root);
    t.next_column_ids = Some(d.next_ids);
    t.columns = d
        .columns
        .iter()
        .map(|c| ColumnJson {
            id: c.id,
            name: c.name.clone(),
            coltyp: type_name(c.coltyp),
            type_value: c.coltyp,
            area: area_name(c.id),
            max_size: c.cb_max,
            grbit: c.grbit,
            grbit_names: column_grbit_names(c.grbit),
            code_page: c.code_page,
            default: c.default.as_deref().map(hex),
            deleted: c.deleted,
        })
        .collect();
    t.indexes = d
        .indexes
        .iter()
        .map(|i| IndexJson {
            name: i.name.clone(),
            primary: i.is_primary(),
            objid: i.objid,
            root: root(i.objid),
            grbit: i.grbit,
            grbit_names: index_grbit_names(i.grbit),
            key_most: i.key_most,
            key: i.key_text(d),
            segments: i
                .segments
                .iter()
                .map(|s| SegmentJson {
                    column_id: s.column,
                    column: d
                        .columns
                        .iter()
                        .find(|c| c.id == s.column)
                        .map(|c| c.name.clone()),
                    descending: s.descending,
                    fixed_binary: s.fixed_binary,
                })
                .collect(),
        })
        .collect();
    t
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

/// Runs `esedump tables`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let (_db, h) = super::open_db(&args.db)?;
    if !args.json
        && let Some(n) = super::dirty_note(&h)
    {
        eprintln!("esedump: {n}");
    }
    let engine = super::open_engine(&args.db, h.page_size)?;
    let roots = tree_roots(&engine)?;
    let entries = read_catalog(&engine)?;
    let j = TablesJson {
        path: args.db.display().to_string(),
        state: state_name(h.state),
        recovery_needed: h.state == ese_btree::DbState::DirtyShutdown,
        catalog_objid: CATALOG_OBJID,
        catalog_root: roots.get(&CATALOG_OBJID).map(|r| r.0),
        tables: entries.iter().map(|e| table_json(e, &roots)).collect(),
    };
    if args.json {
        return print_json(&j);
    }
    outln!(
        "Database: {} ({}); catalog: tree {} root page {}; {} table(s)",
        j.path,
        j.state,
        j.catalog_objid,
        opt(j.catalog_root),
        j.tables.len()
    );
    for t in &j.tables {
        outln!();
        // Node flags mean something only in a dirty database: after a clean shutdown the
        // version store is empty.
        let flags = if t.node_flags.is_empty() || !j.recovery_needed {
            String::new()
        } else {
            format!(" [{}]", t.node_flags.join(", "))
        };
        outln!(
            "Table {}{flags}: tree {} (root page {}), long values: {}",
            t.name,
            opt(t.objid),
            opt(t.root),
            t.lv_objid.map_or_else(
                || "none".to_owned(),
                |o| format!("tree {o} (root page {})", opt(t.lv_root))
            )
        );
        if let Some(p) = &t.problem {
            outln!("  the definition does not decode: {p}");
            continue;
        }
        let mut ct = Table::new(&["  ID", "COLUMN", "TYPE", "AREA", "MAX", "CP", "OPTIONS"]);
        for c in &t.columns {
            let mut opts = c.grbit_names.join(",");
            if c.default.is_some() {
                opts.push_str(if opts.is_empty() {
                    "default"
                } else {
                    ",default"
                });
            }
            if c.deleted {
                opts.push_str(if opts.is_empty() {
                    "DELETED"
                } else {
                    ",DELETED"
                });
            }
            ct.row(vec![
                format!("  {}", c.id),
                c.name.clone(),
                format!("{} ({})", c.coltyp, c.type_value),
                c.area.to_owned(),
                c.max_size.to_string(),
                c.code_page.to_string(),
                opts,
            ]);
        }
        ct.print();
        let mut it = Table::new(&["  INDEX", "KEY", "TREE", "ROOT", "KEY MOST", "OPTIONS"]);
        for i in &t.indexes {
            it.row(vec![
                format!("  {}", i.name),
                i.key.clone(),
                i.objid.to_string(),
                opt(i.root),
                i.key_most.to_string(),
                i.grbit_names.join(","),
            ]);
        }
        if t.indexes.is_empty() {
            outln!("  (no index: records are keyed by an implicit sequence number)");
        } else {
            it.print();
        }
    }
    Ok(())
}
