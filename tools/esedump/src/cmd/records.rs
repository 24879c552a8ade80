//! `esedump records DB TABLE [--index NAME] [--limit N]`: the rows of a table, in the order
//! of its primary index or of a secondary index, each value decoded by its column's type.

use std::fmt::Write as _;
use std::path::PathBuf;

use ese_btree::NodeFlags;
use ese_core::{Error, ErrorKind, ObjId, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::{Column, Stored, TableDef, decode_record, type_name, value_json, value_text};
use crate::dbfile::state_name;
use crate::longvalue::{LvRead, LvReader};
use crate::output::{Table, hex, print_json};

/// Dump the rows of a table, values decoded by column type.
///
/// Rows come in the order of the primary index, or of `--index NAME` (a secondary index:
/// each entry's record is read through its bookmark). Text is shown as text, Binary as hex,
/// DateTime as ISO 8601 UTC, numbers as numbers; a long value stored apart from its record
/// is read from the table's long-value tree (at most `--lv-max` bytes) and shown the same way.
/// A separated value that does not read (a chunk missing, short or on a damaged page) is
/// shown as an error in its cell; the dump goes on and then fails with `LVCorrupted`. Flag-deleted entries are not shown (they are counted). Never
/// runs recovery: on a dirty database it warns and shows what the file holds, including
/// changes of transactions that recovery would roll back (marked "versioned").
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  esedump records data.edb files --limit 20\n  \
                  esedump records data.edb files --index by_name --json"
)]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// The table (case-insensitive).
    table: String,
    /// Walk this index instead of the primary index.
    #[arg(long)]
    index: Option<String>,
    /// Show at most N rows.
    #[arg(long)]
    limit: Option<u64>,
    /// Read at most BYTES of each separated long value (the JSON value of a longer one is cut
    /// and marked `truncated`; chunks past BYTES are not read).
    #[arg(long, value_name = "BYTES", default_value_t = LV_MAX_DEFAULT)]
    lv_max: u64,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Default of `--lv-max`: 64 KiB, enough for most values whole while a dump of a table of
/// large values stays readable.
const LV_MAX_DEFAULT: u64 = 64 * 1024;

/// A separated long value of a row: where it is and whether it read.
#[derive(Serialize)]
struct SeparatedJson {
    column: String,
    itag_sequence: u64,
    lid: u64,
    size: u64,
    error: Option<String>,
}

#[derive(Serialize)]
struct ColumnJson {
    id: u32,
    name: String,
    #[serde(rename = "type")]
    coltyp: &'static str,
}

#[derive(Serialize)]
struct RowJson {
    key: String,
    node_flags: Vec<&'static str>,
    values: Map<String, Value>,
    separated: Vec<SeparatedJson>,
    problem: Option<String>,
    raw: Option<String>,
}

#[derive(Serialize)]
struct RecordsJson {
    path: String,
    state: &'static str,
    recovery_needed: bool,
    table: String,
    index: Option<String>,
    index_key: Option<String>,
    columns: Vec<ColumnJson>,
    rows: Vec<RowJson>,
    returned: u64,
    limit: Option<u64>,
    truncated: bool,
    deleted_entries_skipped: u64,
    lv_max: u64,
    damaged_long_values: u64,
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

/// A row: its primary key, node flags and the record's bytes (or why there are none).
struct RawRow {
    key: Vec<u8>,
    flags: NodeFlags,
    data: std::result::Result<Vec<u8>, String>,
}

/// One value of a row, separated long values read from the long-value tree.
enum Cell {
    /// A value held in the record.
    Inline(Vec<u8>),
    /// A separated long value: its reference and what reading it gave.
    Long {
        lid: u64,
        size: u64,
        read: std::result::Result<LvRead, String>,
    },
}

/// A row with its values resolved, or why its record does not decode.
type Cells = std::result::Result<Vec<(u32, Vec<Cell>)>, String>;

/// Decodes the record of `r` and reads its separated values (at most `lv_max` bytes each).
fn resolve(def: &TableDef, lv: &LvReader, r: &RawRow, lv_max: u64) -> Cells {
    let data = r.data.as_ref().map_err(Clone::clone)?;
    let values = decode_record(data, def)?;
    Ok(values
        .into_iter()
        .map(|(id, vals)| {
            let cells = vals
                .into_iter()
                .map(|v| match v {
                    Stored::Inline(b) => Cell::Inline(b),
                    Stored::Separated { lid, size } => Cell::Long {
                        lid,
                        size,
                        read: lv.read(lid, size, lv_max),
                    },
                })
                .collect();
            (id, cells)
        })
        .collect())
}

/// A cell in JSON: a value read whole is shown as if it were in the record; a cut one and one
/// that does not read as a `long_value` object.
fn cell_json(col: Option<&Column>, c: &Cell) -> Value {
    match c {
        Cell::Inline(b) => value_json(col, b),
        Cell::Long {
            lid,
            size,
            read: Ok(r),
        } => {
            let v = value_json(col, &r.bytes);
            if r.truncated {
                json!({"long_value": {"lid": lid, "size": size, "value": v, "truncated": true}})
            } else {
                v
            }
        }
        Cell::Long {
            lid,
            size,
            read: Err(e),
        } => json!({"long_value": {"lid": lid, "size": size, "error": e}}),
    }
}

fn row_json(def: &TableDef, r: &RawRow, cells: &Cells) -> RowJson {
    let mut row = RowJson {
        key: hex(&r.key),
        node_flags: flag_names(r.flags),
        values: Map::new(),
        separated: Vec::new(),
        problem: None,
        raw: None,
    };
    match cells {
        Ok(values) => {
            for (id, vals) in values {
                let col = def.column(*id);
                let name = col.map_or_else(|| format!("#{id}"), |c| c.name.clone());
                let multi = col.is_some_and(|c| c.grbit & 0x400 != 0) || vals.len() > 1;
                for (n, c) in vals.iter().enumerate() {
                    if let Cell::Long { lid, size, read } = c {
                        row.separated.push(SeparatedJson {
                            column: name.clone(),
                            itag_sequence: n as u64 + 1,
                            lid: *lid,
                            size: *size,
                            error: read.as_ref().err().cloned(),
                        });
                    }
                }
                let v = if multi {
                    Value::Array(vals.iter().map(|v| cell_json(col, v)).collect())
                } else {
                    vals.first().map_or(Value::Null, |v| cell_json(col, v))
                };
                row.values.insert(name, v);
            }
        }
        Err(p) => {
            row.problem = Some(p.clone());
            row.raw = r.data.as_ref().ok().map(|d| hex(d));
        }
    }
    row
}

fn not_found(what: ErrorKind, msg: String) -> Error {
    Error::new(what).with_message(msg)
}

/// Runs `esedump records`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let (_db, h) = super::open_db(&args.db)?;
    if !args.json
        && let Some(n) = super::dirty_note(&h)
    {
        eprintln!("esedump: {n}");
    }
    let engine = super::open_engine(&args.db, h.page_size)?;
    let entries = super::tables::read_catalog(&engine)?;
    let live: Vec<_> = entries
        .iter()
        .filter(|e| !e.flags.contains(NodeFlags::DELETED))
        .collect();
    let entry = live
        .iter()
        // The catalog key is the name folded as the engine folds it.
        .find(|e| e.key_name == args.table.to_lowercase())
        .ok_or_else(|| {
            let names: Vec<&str> = live
                .iter()
                .map(|e| {
                    e.def
                        .as_ref()
                        .map_or(e.key_name.as_str(), |d| d.name.as_str())
                })
                .collect();
            not_found(
                ErrorKind::ObjectNotFound,
                format!(
                    "no table {:?} in the catalog of {} (tables: {})",
                    args.table,
                    args.db.display(),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })?;
    let def = entry.def.as_ref().map_err(|p| {
        Error::new(ErrorKind::CatalogCorrupted)
            .with_path(&args.db)
            .with_message(format!("the definition of table {:?}: {p}", entry.key_name))
    })?;
    let ix = match &args.index {
        None => None,
        Some(n) => Some(def.index(n).ok_or_else(|| {
            let names: Vec<&str> = def.indexes.iter().map(|i| i.name.as_str()).collect();
            not_found(
                ErrorKind::IndexNotFound,
                format!(
                    "no index {n:?} on table {} (indexes: {})",
                    def.name,
                    names.join(", ")
                ),
            )
        })?),
    };
    let table_tree = engine.open_tree(ObjId(def.objid))?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut rows: Vec<RawRow> = Vec::new();
    let mut skipped = 0u64;
    let mut truncated = false;
    match ix.filter(|i| !i.is_primary()) {
        None => {
            let mut c = table_tree.cursor();
            let mut on = c.move_first()?;
            while on {
                if c.flags().contains(NodeFlags::DELETED) {
                    skipped += 1;
                } else if rows.len() as u64 >= limit {
                    truncated = true;
                    break;
                } else {
                    rows.push(RawRow {
                        key: c.key().to_vec(),
                        flags: c.flags(),
                        data: Ok(c.data().to_vec()),
                    });
                }
                on = c.move_next()?;
            }
        }
        Some(i) => {
            let itree = engine.open_tree(ObjId(i.objid))?;
            let mut c = itree.cursor();
            let mut on = c.move_first()?;
            while on {
                if c.flags().contains(NodeFlags::DELETED) {
                    skipped += 1;
                } else if rows.len() as u64 >= limit {
                    truncated = true;
                    break;
                } else {
                    // The entry's data is the record's primary bookmark.
                    let bm = c.data().to_vec();
                    let (data, flags) = match table_tree.get_opt(&bm)? {
                        Some((d, f)) if !f.contains(NodeFlags::DELETED) => (Ok(d), f),
                        Some((_, f)) => (Err("the record is flag-deleted".to_owned()), f),
                        None => (
                            Err("no record with the entry's bookmark".to_owned()),
                            c.flags(),
                        ),
                    };
                    rows.push(RawRow {
                        key: bm,
                        flags,
                        data,
                    });
                }
                on = c.move_next()?;
            }
        }
    }
    let lv_tree = if def.lv_objid == 0 {
        None
    } else {
        match engine.open_tree(ObjId(def.lv_objid)) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == ErrorKind::ObjectNotFound => None,
            Err(e) => return Err(e),
        }
    };
    let lv = LvReader::new(lv_tree, def.lv_objid, h.page_size);
    let cells: Vec<Cells> = rows
        .iter()
        .map(|r| resolve(def, &lv, r, args.lv_max))
        .collect();
    let mut damaged = Vec::new();
    for (n, c) in cells.iter().enumerate() {
        for (id, vals) in c.iter().flatten() {
            for v in vals {
                if let Cell::Long { read: Err(e), .. } = v {
                    let name = def
                        .column(*id)
                        .map_or_else(|| format!("#{id}"), |c| c.name.clone());
                    damaged.push(format!("row {}, column {name}: {e}", n + 1));
                }
            }
        }
    }
    let j = RecordsJson {
        path: args.db.display().to_string(),
        state: state_name(h.state),
        recovery_needed: h.state == ese_btree::DbState::DirtyShutdown,
        table: def.name.clone(),
        index: ix.map(|i| i.name.clone()),
        index_key: ix.map(|i| i.key_text(def)),
        columns: def
            .columns
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| ColumnJson {
                id: c.id,
                name: c.name.clone(),
                coltyp: type_name(c.coltyp),
            })
            .collect(),
        rows: rows
            .iter()
            .zip(&cells)
            .map(|(r, c)| row_json(def, r, c))
            .collect(),
        returned: rows.len() as u64,
        limit: args.limit,
        truncated,
        deleted_entries_skipped: skipped,
        lv_max: args.lv_max,
        damaged_long_values: damaged.len() as u64,
    };
    if args.json {
        print_json(&j)?;
    } else {
        print_human(def, &rows, &cells, &damaged, &j);
    }
    match damaged.first() {
        None => Ok(()),
        Some(first) => Err(Error::new(ErrorKind::LVCorrupted)
            .with_path(&args.db)
            .with_message(format!(
                "{} separated long value(s) of table {} do not read (the dump is otherwise \
                 complete); the first: {first}",
                damaged.len(),
                def.name
            ))),
    }
}

/// Widest cell of the human table, in characters.
const CELL_MOST: usize = 40;

/// Node flags are shown only for a dirty database: after a clean shutdown the version store
/// is empty and a leftover `versioned` flag means nothing.
fn print_human(
    def: &TableDef,
    rows: &[RawRow],
    cells: &[Cells],
    damaged: &[String],
    j: &RecordsJson,
) {
    let dirty = j.recovery_needed;
    let cols: Vec<_> = def.columns.iter().filter(|c| !c.deleted).collect();
    let mut header: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    if dirty {
        header.push("FLAGS");
    }
    let mut t = Table::new(&header);
    let mut problems = Vec::new();
    for (n, (r, decoded)) in rows.iter().zip(cells).enumerate() {
        let values = match decoded {
            Ok(v) => v,
            Err(p) => {
                problems.push(format!("row {} (key {}): {p}", n + 1, hex(&r.key)));
                let mut cells = vec!["(does not decode)".to_owned(); cols.len()];
                if dirty {
                    cells.push(flag_names(r.flags).join(","));
                }
                t.row(cells);
                continue;
            }
        };
        let mut row: Vec<String> = cols
            .iter()
            .map(|c| {
                values.iter().find(|(id, _)| *id == c.id).map_or_else(
                    || "-".to_owned(),
                    |(_, vals)| {
                        vals.iter()
                            .map(|v| cell_text(c, v))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    },
                )
            })
            .collect();
        if dirty {
            row.push(flag_names(r.flags).join(","));
        }
        t.row(row);
    }
    outln!(
        "Table {} ({}), {}:",
        j.table,
        j.path,
        j.index.as_ref().map_or_else(
            || "primary order".to_owned(),
            |i| format!("index {i} ({})", j.index_key.as_deref().unwrap_or(""))
        )
    );
    t.print();
    outln!();
    let mut summary = format!("{} row(s)", j.returned);
    if j.truncated {
        let _ = write!(summary, ", limited to {}: more follow", j.returned);
    }
    if j.deleted_entries_skipped > 0 {
        let _ = write!(
            summary,
            ", {} flag-deleted entries not shown",
            j.deleted_entries_skipped
        );
    }
    outln!("{summary}");
    for p in problems {
        outln!("  problem: {p}");
    }
    for d in damaged {
        outln!("  damaged long value: {d}");
    }
}

/// A cell of the human table: a separated value read like one in the record (cut to
/// [`CELL_MOST`] characters as they are), `<LID n: damaged>` for one that does not read.
fn cell_text(c: &Column, v: &Cell) -> String {
    match v {
        Cell::Inline(b) => value_text(Some(c), b, CELL_MOST),
        Cell::Long { read: Ok(r), .. } => {
            let mut s = value_text(Some(c), &r.bytes, CELL_MOST);
            if r.truncated && !s.ends_with('…') {
                s.push('…');
            }
            s
        }
        Cell::Long { lid, .. } => format!("<LID {lid}: damaged>"),
    }
}
