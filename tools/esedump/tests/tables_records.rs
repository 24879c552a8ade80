//! `esedump tables` (eseutil /mm) and `esedump records` on databases written by crate `ese`:
//! the catalog with its columns, indexes and trees; rows decoded by column type in primary
//! and secondary index order; limits; a dirty database shown as the file holds it; unknown
//! tables and indexes refused with their JET errors; no file changed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{esedump, json, snapshot, stderr, stdout};
use ese::{
    CodePage, ColumnDef, ColumnGrbit, ColumnType, CreateDatabaseGrbit, IndexCreate, IndexGrbit,
    Instance, Prep, TableCreate, TermGrbit,
};

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A database with table `People` (one column of most types, a primary index on `id` and
/// `by_name` on `+name -born`) holding three rows, and table `Empty`, written through `ese`
/// and shut down cleanly, or (`dirty`) flushed and left in DirtyShutdown as a crash leaves
/// it.
fn make_ese_db(dir: &Path, dirty: bool) -> PathBuf {
    let _open = common::files_open_guard();
    let inst = Instance::builder("esedump-tables")
        .system_path(dir)
        .log_path(dir.join("logs"))
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let path = dir.join("people.edb");
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    let ix = |name: &str, key: &str, grbit| IndexCreate {
        name: name.into(),
        key: key.into(),
        grbit,
        key_most: 0,
    };
    s.create_table(
        db,
        &TableCreate {
            name: "People".into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::Long),
                ColumnDef::new("name", ColumnType::Text).max_size(64),
                ColumnDef::new("wname", ColumnType::Text).code_page(CodePage::Unicode),
                ColumnDef::new("born", ColumnType::DateTime),
                ColumnDef::new("photo", ColumnType::Binary),
                ColumnDef::new("notes", ColumnType::LongText),
                ColumnDef::new("guid", ColumnType::Guid),
                ColumnDef::new("balance", ColumnType::Currency),
                ColumnDef::new("active", ColumnType::Bit),
                ColumnDef::new("tags", ColumnType::Text)
                    .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
                ColumnDef::new("ratio", ColumnType::IEEEDouble),
            ],
            indexes: vec![
                ix(
                    "primary",
                    "+id\0\0",
                    IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                ),
                ix("by_name", "+name\0-born\0\0", IndexGrbit::empty()),
            ],
        },
    )
    .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "Empty".into(),
            columns: vec![ColumnDef::new("x", ColumnType::Long)],
            indexes: vec![],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "People").unwrap();
    let c = |n: &str| t.column_id(n).unwrap();
    let (id, name, wname, born, photo, notes, guid, balance, active, tags, ratio) = (
        c("id"),
        c("name"),
        c("wname"),
        c("born"),
        c("photo"),
        c("notes"),
        c("guid"),
        c("balance"),
        c("active"),
        c("tags"),
        c("ratio"),
    );
    s.begin_transaction().unwrap();
    for (i, n) in [(1i32, "carol"), (2, "Ada"), (3, "bob")] {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&i.to_le_bytes())).unwrap();
        t.set_column(name, Some(n.as_bytes())).unwrap();
        if i == 2 {
            t.set_column(wname, Some(&utf16("Ådä"))).unwrap();
            // 1970-01-01 12:00 UTC as an OLE automation date.
            t.set_column(born, Some(&25_569.5f64.to_le_bytes()))
                .unwrap();
            t.set_column(photo, Some(&[0x00, 0xff, 0x10])).unwrap();
            t.set_column(notes, Some(b"first\nprogrammer")).unwrap();
            let g: Vec<u8> = (1..=16).collect();
            t.set_column(guid, Some(&g)).unwrap();
            t.set_column(balance, Some(&12_345_678i64.to_le_bytes()))
                .unwrap();
            t.set_column(active, Some(&[1])).unwrap();
            t.set_column_itag(tags, Some(b"math"), 0).unwrap();
            t.set_column_itag(tags, Some(b"poetry"), 0).unwrap();
            t.set_column(ratio, Some(&0.25f64.to_le_bytes())).unwrap();
        }
        t.update().unwrap();
    }
    s.commit_transaction(ese::CommitGrbit::empty()).unwrap();
    drop(t);
    let mut e = s.open_table(db, "Empty").unwrap();
    let x = e.column_id("x").unwrap();
    e.prepare_update(Prep::Insert).unwrap();
    e.set_column(x, Some(&7i32.to_le_bytes())).unwrap();
    e.update().unwrap();
    drop(e);
    if dirty {
        inst.checkpoint_now().unwrap();
        let r = inst.term(TermGrbit::DIRTY);
        assert_eq!(r.unwrap_err().kind(), ese::ErrorKind::DirtyShutdown);
    } else {
        inst.term(TermGrbit::empty()).unwrap();
    }
    path
}

#[test]
fn tables_lists_the_catalog_with_columns_indexes_and_trees() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_ese_db(dir.path(), false);
    let p = path.to_str().unwrap();
    let j = json(&["tables", p]);
    assert_eq!(j["recovery_needed"], false);
    assert_eq!(j["catalog_objid"], 2);
    assert!(j["catalog_root"].as_u64().is_some());
    let tables = j["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    // Catalog order: names folded to lower case.
    assert_eq!(names, ["Empty", "People"]);
    let people = &tables[1];
    assert!(people["problem"].is_null());
    assert!(people["root"].as_u64().is_some());
    let cols = people["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 11);
    let col = |n: &str| cols.iter().find(|c| c["name"] == n).unwrap();
    assert_eq!(col("id")["type"], "Long");
    assert_eq!(col("id")["type_value"], 4);
    assert_eq!(col("id")["area"], "fixed");
    assert_eq!(col("name")["type"], "Text");
    assert_eq!(col("name")["max_size"], 64);
    assert_eq!(col("name")["area"], "variable");
    assert_eq!(col("wname")["code_page"], 1200);
    assert_eq!(col("notes")["area"], "tagged");
    assert_eq!(
        col("tags")["grbit_names"],
        serde_json::json!(["Tagged", "MultiValued"])
    );
    assert_eq!(col("guid")["type"], "GUID");
    let idx = people["indexes"].as_array().unwrap();
    assert_eq!(idx[0]["name"], "primary");
    assert_eq!(idx[0]["primary"], true);
    assert_eq!(idx[0]["objid"], people["objid"]);
    assert_eq!(idx[0]["root"], people["root"]);
    assert_eq!(
        idx[0]["grbit_names"],
        serde_json::json!(["Unique", "Primary"])
    );
    assert_eq!(idx[1]["name"], "by_name");
    assert_eq!(idx[1]["key"], "+name -born");
    assert_eq!(idx[1]["segments"][1]["column"], "born");
    assert_eq!(idx[1]["segments"][1]["descending"], true);
    assert_eq!(idx[1]["segments"][0]["descending"], false);
    assert_ne!(idx[1]["objid"], people["objid"]);
    assert!(idx[1]["root"].as_u64().is_some());
    assert_eq!(tables[0]["indexes"].as_array().unwrap().len(), 0);

    let o = esedump(&["tables", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Table People"), "{out}");
    assert!(out.contains("DateTime (8)"), "{out}");
    assert!(out.contains("+name -born"), "{out}");
    assert!(out.contains("Unique,Primary"), "{out}");
    assert!(out.contains("implicit sequence number"), "{out}");
}

#[test]
fn records_decode_values_by_type_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_ese_db(dir.path(), false);
    let p = path.to_str().unwrap();
    let before = snapshot(dir.path());

    let j = json(&["records", p, "people"]);
    assert_eq!(j["table"], "People");
    assert!(j["index"].is_null());
    assert_eq!(j["returned"], 3);
    assert_eq!(j["truncated"], false);
    let rows = j["rows"].as_array().unwrap();
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["values"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let ada = &rows[1]["values"];
    assert!(rows[1]["problem"].is_null());
    assert_eq!(ada["name"], "Ada");
    assert_eq!(ada["wname"], "Ådä");
    assert_eq!(ada["born"], "1970-01-01T12:00:00.000Z");
    assert_eq!(ada["photo"], "00ff10");
    assert_eq!(ada["notes"], "first\nprogrammer");
    assert_eq!(ada["guid"], "04030201-0605-0807-090a-0b0c0d0e0f10");
    assert_eq!(ada["balance"], 12_345_678);
    assert_eq!(ada["active"], true);
    assert_eq!(ada["tags"], serde_json::json!(["math", "poetry"]));
    assert_eq!(ada["ratio"], 0.25);
    // Null columns are absent.
    assert!(rows[0]["values"].get("born").is_none());

    // Secondary index order (text compares case-insensitively), and the limit.
    let j = json(&["records", p, "People", "--index", "BY_NAME", "--limit", "2"]);
    assert_eq!(j["index"], "by_name");
    assert_eq!(j["index_key"], "+name -born");
    let names: Vec<&str> = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ada", "bob"]);
    assert_eq!(j["returned"], 2);
    assert_eq!(j["truncated"], true);

    let o = esedump(&["records", p, "People", "--index", "by_name"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let (a, b, c) = (
        out.find("Ada").unwrap(),
        out.find("bob").unwrap(),
        out.find("carol").unwrap(),
    );
    assert!(a < b && b < c, "{out}");
    assert!(out.contains("1970-01-01T12:00:00.000Z"), "{out}");
    assert!(out.contains("00ff10"), "{out}");
    assert!(out.contains("math | poetry"), "{out}");
    assert!(out.contains("1234.5678"), "{out}");
    assert!(out.contains("first programmer"), "{out}");
    assert!(out.contains("3 row(s)"), "{out}");

    // A table without primary index: records keyed by the implicit sequence number.
    let j = json(&["records", p, "Empty"]);
    assert_eq!(j["returned"], 1);
    assert_eq!(j["rows"][0]["values"]["x"], 7);
    assert_eq!(j["rows"][0]["key"].as_str().unwrap().len(), 16);

    assert_eq!(snapshot(dir.path()), before, "esedump changed a file");
}

#[test]
fn unknown_tables_and_indexes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_ese_db(dir.path(), false);
    let p = path.to_str().unwrap();
    for json_flag in [false, true] {
        let mut args = vec!["records", p, "nobody"];
        if json_flag {
            args.push("--json");
        }
        let o = esedump(&args);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains("JET_errObjectNotFound (-1305)"), "{err}");
        assert!(err.contains("\"nobody\""), "{err}");
        assert!(err.contains("People"), "{err}");
        assert!(o.stdout.is_empty());
    }
    let o = esedump(&["records", p, "People", "--index", "by_age"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("JET_errIndexNotFound (-1404)"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("by_name"), "{}", stderr(&o));
}

#[test]
fn dirty_database_is_shown_as_the_file_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_ese_db(dir.path(), true);
    let p = path.to_str().unwrap();
    let before = snapshot(dir.path());
    let j = json(&["tables", p]);
    assert_eq!(j["recovery_needed"], true);
    assert_eq!(j["state"], "DirtyShutdown");
    assert_eq!(j["tables"].as_array().unwrap().len(), 2);
    let j = json(&["records", p, "People"]);
    assert_eq!(j["recovery_needed"], true);
    assert_eq!(j["returned"], 3);
    for cmd in [vec!["tables", p], vec!["records", p, "People"]] {
        let o = esedump(&cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("recovery is needed"), "{}", stderr(&o));
    }
    assert_eq!(snapshot(dir.path()), before, "esedump changed a file");
}

/// `esedump records DB T | head`: when the reader closes the pipe, esedump ends quietly with
/// exit code 0 instead of panicking on the failed write.
#[test]
fn a_closed_stdout_ends_esedump_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_ese_db(dir.path(), false);
    let p = path.to_str().unwrap();
    for args in [vec!["records", p, "People"], vec!["tables", p, "--json"]] {
        let mut child = common::spawn_esedump(&args);
        // Close the read end before esedump writes its first line.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}
