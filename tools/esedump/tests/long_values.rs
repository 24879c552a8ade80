//! `esedump records` on long values written through crate `ese`: values of 0, 100, 5,000 and
//! 200,000 bytes in LongBinary and LongText columns and in a multi-valued long column, read
//! back from the long-value tree and compared with what was written; `--lv-max` cuts; a
//! damaged chunk page shows as an error in its cell with the exit code of a damaged dump;
//! `tables` and `space` name the long-value tree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{PAGE_SIZE, esedump, json, json_of, stderr, stdout};
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, CreateDatabaseGrbit, IndexCreate, IndexGrbit, Instance,
    Prep, TableCreate, TermGrbit,
};
use serde_json::Value;

/// Lengths of the single values written, one row each.
const SIZES: [usize; 4] = [0, 100, 5_000, 200_000];
/// Id of the row with the multi-valued column.
const MULTI_ROW: i32 = 10;
/// Lengths of the multi-values of that row, in itagSequence order.
const MULTI_SIZES: [usize; 3] = [5_000, 100, 200_000];

/// `n` bytes of a pattern that differs per `seed`, so a chunk read at the wrong offset or from
/// another value shows.
fn binary(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8)
        .collect()
}

/// `n` bytes of printable ASCII text.
fn text(n: usize, seed: u8) -> String {
    (0..n)
        .map(|i| char::from(b'a' + ((i + usize::from(seed)) % 26) as u8))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A database (4 KiB pages) with table `Blobs`: `id` (primary), `bin` (LongBinary), `txt`
/// (LongText) and `multi` (LongBinary, tagged, multi-valued); one row per length of
/// [`SIZES`] with `bin` and `txt` of that length, and row [`MULTI_ROW`] with `multi` of
/// [`MULTI_SIZES`]. Shut down cleanly.
fn make_lv_db(dir: &Path) -> PathBuf {
    let _open = common::files_open_guard();
    let inst = Instance::builder("esedump-lv")
        .system_path(dir)
        .log_path(dir.join("logs"))
        .page_size(PAGE_SIZE)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let path = dir.join("blobs.edb");
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "Blobs".into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::Long),
                ColumnDef::new("bin", ColumnType::LongBinary),
                ColumnDef::new("txt", ColumnType::LongText),
                ColumnDef::new("multi", ColumnType::LongBinary)
                    .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
            ],
            indexes: vec![IndexCreate {
                name: "primary".into(),
                key: "+id\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                key_most: 0,
            }],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "Blobs").unwrap();
    let (id, bin, txt, multi) = (
        t.column_id("id").unwrap(),
        t.column_id("bin").unwrap(),
        t.column_id("txt").unwrap(),
        t.column_id("multi").unwrap(),
    );
    s.begin_transaction().unwrap();
    for (i, n) in SIZES.iter().enumerate() {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&i32::try_from(i).unwrap().to_le_bytes()))
            .unwrap();
        t.set_column(bin, Some(&binary(*n, i as u8))).unwrap();
        t.set_column(txt, Some(text(*n, i as u8).as_bytes()))
            .unwrap();
        t.update().unwrap();
    }
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(id, Some(&MULTI_ROW.to_le_bytes())).unwrap();
    for (k, n) in MULTI_SIZES.iter().enumerate() {
        t.set_column_itag(multi, Some(&binary(*n, 100 + k as u8)), 0)
            .unwrap();
    }
    t.update().unwrap();
    s.commit_transaction(ese::CommitGrbit::empty()).unwrap();
    drop(t);
    inst.term(TermGrbit::empty()).unwrap();
    path
}

/// The row of `records` JSON with `id`.
fn row(j: &Value, id: i32) -> &Value {
    j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["values"]["id"] == id)
        .unwrap_or_else(|| panic!("no row {id} in {j}"))
}

/// Checks a cell read whole: the plain value, as a value kept in the record would be.
fn assert_whole(cell: &Value, want: &Value, what: &str) {
    assert_eq!(cell, want, "{what}");
}

/// The plain JSON of a LongBinary value and of a LongText value.
fn bin_json(b: &[u8]) -> Value {
    Value::String(hex(b))
}

#[test]
fn records_read_separated_values_whole_with_a_large_lv_max() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_lv_db(dir.path());
    let p = path.to_str().unwrap();
    let j = json(&["records", p, "blobs", "--lv-max", "1000000"]);
    assert_eq!(j["rows"].as_array().unwrap().len(), SIZES.len() + 1);
    assert_eq!(j["damaged_long_values"], 0);
    assert_eq!(j["lv_max"], 1_000_000);
    for (i, n) in SIZES.iter().enumerate() {
        let r = row(&j, i32::try_from(i).unwrap());
        let seed = i as u8;
        assert_whole(
            &r["values"]["bin"],
            &bin_json(&binary(*n, seed)),
            &format!("bin of {n} bytes"),
        );
        assert_whole(
            &r["values"]["txt"],
            &Value::String(text(*n, seed)),
            &format!("txt of {n} bytes"),
        );
        // Values over 1 KiB are separated, shorter ones stay in the record.
        let sep = r["separated"].as_array().unwrap();
        if *n > 1024 {
            assert_eq!(sep.len(), 2, "{r}");
            for s in sep {
                assert_eq!(s["size"], *n as u64);
                assert!(s["lid"].as_u64().unwrap() > 0);
                assert!(s["error"].is_null());
                assert_eq!(s["itag_sequence"], 1);
            }
        } else {
            assert!(sep.is_empty(), "{r}");
        }
    }
    let r = row(&j, MULTI_ROW);
    let want: Vec<Value> = MULTI_SIZES
        .iter()
        .enumerate()
        .map(|(k, n)| bin_json(&binary(*n, 100 + k as u8)))
        .collect();
    assert_eq!(r["values"]["multi"], Value::Array(want));
    let sep = r["separated"].as_array().unwrap();
    let seqs: Vec<u64> = sep
        .iter()
        .map(|s| s["itag_sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 3], "{r}");
    // Every LID is referenced once.
    let mut lids: Vec<u64> = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["separated"].as_array().unwrap().clone())
        .map(|s| s["lid"].as_u64().unwrap())
        .collect();
    let n = lids.len();
    lids.sort_unstable();
    lids.dedup();
    assert_eq!(lids.len(), n);
    assert_eq!(n, 6);
}

#[test]
fn lv_max_cuts_long_values_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_lv_db(dir.path());
    let p = path.to_str().unwrap();
    // The default: 64 KiB.
    let j = json(&["records", p, "blobs"]);
    assert_eq!(j["lv_max"], 65_536);
    let r = row(&j, 3);
    let lv = &r["values"]["bin"]["long_value"];
    assert_eq!(lv["size"], 200_000);
    assert_eq!(lv["truncated"], true);
    assert_eq!(lv["value"], bin_json(&binary(200_000, 3)[..65_536]));
    assert!(lv["lid"].as_u64().unwrap() > 0);
    let lv = &r["values"]["txt"]["long_value"];
    assert_eq!(
        lv["value"],
        Value::String(text(200_000, 3)[..65_536].to_owned())
    );
    // A value not longer than the cut is whole.
    assert_eq!(row(&j, 2)["values"]["bin"], bin_json(&binary(5_000, 2)));

    // A cut inside a chunk and shorter than an intrinsic value: only separated ones are cut.
    let j = json(&["records", p, "blobs", "--lv-max", "3000"]);
    let r = row(&j, 2);
    assert_eq!(
        r["values"]["bin"]["long_value"]["value"],
        bin_json(&binary(5_000, 2)[..3000])
    );
    assert_eq!(r["values"]["bin"]["long_value"]["truncated"], true);
    assert_eq!(row(&j, 1)["values"]["bin"], bin_json(&binary(100, 1)));
    let m = row(&j, MULTI_ROW)["values"]["multi"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(m[1], bin_json(&binary(100, 101)));
    assert_eq!(m[2]["long_value"]["size"], 200_000);

    // The human table shows the values' beginnings, not placeholders.
    let o = esedump(&["records", p, "blobs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("<long value"), "{out}");
    assert!(out.contains(&text(30, 3)), "{out}");
    assert!(out.contains(&hex(&binary(15, 3))), "{out}");
}

/// The leaf pages of tree `objid` in a database file with [`PAGE_SIZE`] pages (the page
/// header's objid at byte 24, flags at 28: leaf 0x2).
fn leaves_of(path: &Path, objid: u32) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let ps = PAGE_SIZE as usize;
    (1..bytes.len() / ps - 1)
        .filter(|&pgno| {
            let p = &bytes[(pgno + 1) * ps..(pgno + 2) * ps];
            let obj = u32::from_le_bytes(p[24..28].try_into().unwrap());
            let flags = u32::from_le_bytes(p[28..32].try_into().unwrap());
            obj == objid && flags & 0x2 != 0 && flags & 0x8 == 0
        })
        .map(|p| p as u32)
        .collect()
}

#[test]
fn damaged_chunk_page_is_an_error_cell_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_lv_db(dir.path());
    let p = path.to_str().unwrap();
    let t = json(&["tables", p]);
    let lv_objid = u32::try_from(t["tables"][0]["lv_objid"].as_u64().unwrap()).unwrap();
    let leaves = leaves_of(&path, lv_objid);
    // 2 x 200,000 + 200,000 + 3 x 5,000 bytes in chunks of about a page.
    assert!(leaves.len() > 100, "{leaves:?}");
    let damaged = leaves[leaves.len() / 2];
    common::flip_byte(&path, damaged);

    let o = esedump(&["records", p, "blobs", "--lv-max", "1000000", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("JET_errLVCorrupted (-1526)"), "{err}");
    // The document is complete: every row, the damaged cells marked.
    let j = json_of(&o);
    assert_eq!(j["rows"].as_array().unwrap().len(), SIZES.len() + 1);
    let bad: Vec<Value> = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["separated"].as_array().unwrap().clone())
        .filter(|s| !s["error"].is_null())
        .collect();
    assert!(!bad.is_empty());
    assert_eq!(j["damaged_long_values"], bad.len() as u64);
    for b in &bad {
        let e = b["error"].as_str().unwrap();
        assert!(e.contains(&format!("LID {}", b["lid"])), "{e}");
        assert!(e.contains("does not read"), "{e}");
        assert!(e.contains(&format!("page {damaged}")), "{e}");
    }
    // Every cell that is not damaged still holds what was written.
    for (i, n) in SIZES.iter().enumerate() {
        let r = row(&j, i32::try_from(i).unwrap());
        for (col, want) in [
            ("bin", bin_json(&binary(*n, i as u8))),
            ("txt", Value::String(text(*n, i as u8))),
        ] {
            let cell = &r["values"][col];
            if let Some(lv) = cell.get("long_value") {
                assert!(lv["error"].as_str().is_some(), "{cell}");
                assert!(
                    bad.iter()
                        .any(|b| b["column"] == col && b["lid"] == lv["lid"])
                );
            } else {
                assert_eq!(cell, &want, "row {i} {col}");
            }
        }
    }

    let o = esedump(&["records", p, "blobs", "--lv-max", "1000000"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(": damaged>"), "{out}");
    assert!(out.contains("damaged long value: row "), "{out}");
    assert!(stderr(&o).contains("JET_errLVCorrupted"));
}

#[test]
fn tables_and_space_name_the_long_value_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_lv_db(dir.path());
    let p = path.to_str().unwrap();
    let t = json(&["tables", p]);
    let blobs = &t["tables"][0];
    let lv_objid = blobs["lv_objid"].as_u64().unwrap();
    let lv_root = blobs["lv_root"].as_u64().unwrap();
    assert_ne!(lv_objid, blobs["objid"].as_u64().unwrap());

    let s = json(&["space", p]);
    let trees = s["trees"].as_array().unwrap();
    let lv = trees.iter().find(|t| t["objid"] == lv_objid).unwrap();
    assert_eq!(lv["kind"], "long-value");
    assert_eq!(lv["use"], "long values");
    assert_eq!(lv["table"], "Blobs");
    assert_eq!(lv["root"], lv_root);
    assert!(lv["owned_pages"].as_u64().unwrap() > 100);
    let rec = trees.iter().find(|t| t["objid"] == blobs["objid"]).unwrap();
    assert_eq!(rec["use"], "records");
    let cat = trees.iter().find(|t| t["objid"] == 2).unwrap();
    assert_eq!(cat["use"], "catalog");
    let ts = s["tables"].as_array().unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0]["name"], "Blobs");
    assert_eq!(ts[0]["long_value_pages"], lv["owned_pages"]);
    assert_eq!(ts[0]["record_pages"], rec["owned_pages"]);
    assert_eq!(
        ts[0]["owned_pages"].as_u64().unwrap(),
        lv["owned_pages"].as_u64().unwrap() + rec["owned_pages"].as_u64().unwrap()
    );

    let o = esedump(&["space", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("long values"), "{out}");
    assert!(out.contains("table Blobs: "), "{out}");
}

/// The LID of the separated value of `column` (itag sequence 1) in row `id` of `records` JSON.
fn lid_of(j: &Value, id: i32, column: &str) -> u64 {
    row(j, id)["separated"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["column"] == column && s["itag_sequence"] == 1)
        .unwrap()["lid"]
        .as_u64()
        .unwrap()
}

#[expect(
    clippy::big_endian_bytes,
    reason = "chunk keys are LID and offset big-endian (docs/format-database.md)"
)]
fn chunk_key(lid: u64, offset: u32) -> Vec<u8> {
    let mut k = lid.to_be_bytes().to_vec();
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

#[test]
fn missing_short_and_deleted_chunks_are_error_cells_naming_lid_and_offset() {
    use std::sync::Arc;

    use ese_btree::{Database, DbOptions, DbState, MemWal, NodeFlags};
    use ese_core::fs::{FileSystem, OsFs};

    let dir = tempfile::tempdir().unwrap();
    let path = make_lv_db(dir.path());
    let p = path.to_str().unwrap();
    let j = json(&["records", p, "blobs", "--lv-max", "1000000"]);
    let lv_objid = json(&["tables", p])["tables"][0]["lv_objid"]
        .as_u64()
        .unwrap();
    let (bin2, txt2, multi) = (
        lid_of(&j, 2, "bin"),
        lid_of(&j, 2, "txt"),
        lid_of(&j, MULTI_ROW, "multi"),
    );
    let chunk = u32::try_from(Database::max_record_len_for(PAGE_SIZE) - 12).unwrap();
    assert!(chunk < 5_000, "a 5,000-byte value has two chunks");
    {
        // Damage the long-value tree with the page store itself, as a bug could.
        let _open = common::files_open_guard();
        let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
        let opts = DbOptions::new().page_size(PAGE_SIZE);
        let db = Database::open(&fs, &path, opts, Arc::new(MemWal::new())).unwrap();
        let lv = db
            .open_tree(ese_core::ObjId(u32::try_from(lv_objid).unwrap()))
            .unwrap();
        lv.delete(&chunk_key(bin2, chunk)).unwrap();
        lv.replace(&chunk_key(txt2, 0), b"short").unwrap();
        lv.set_flags(&chunk_key(multi, 0), NodeFlags::DELETED)
            .unwrap();
        db.flush().unwrap();
        db.write_header(|h| h.state = DbState::CleanShutdown)
            .unwrap();
    }

    let o = esedump(&["records", p, "blobs", "--lv-max", "1000000", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("JET_errLVCorrupted (-1526)"), "{err}");
    assert!(
        err.contains("3 separated long value(s) of table Blobs"),
        "{err}"
    );
    let j = json_of(&o);
    assert_eq!(j["damaged_long_values"], 3);
    let rest = 5_000 - chunk;
    let r = row(&j, 2);
    assert_eq!(
        r["values"]["bin"]["long_value"]["error"],
        format!(
            "LID {bin2} (5000 bytes): the chunk at offset {chunk} is missing ({rest} bytes expected)"
        )
    );
    assert_eq!(r["values"]["bin"]["long_value"]["size"], 5_000);
    assert_eq!(
        r["values"]["txt"]["long_value"]["error"],
        format!("LID {txt2} (5000 bytes): the chunk at offset 0 has 5 bytes, {chunk} expected")
    );
    let m = row(&j, MULTI_ROW)["values"]["multi"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        m[0]["long_value"]["error"],
        format!("LID {multi} (5000 bytes): the chunk at offset 0 is flag-deleted")
    );
    // The other values of the same row and column still read.
    assert_eq!(m[1], bin_json(&binary(100, 101)));
    assert_eq!(m[2], bin_json(&binary(200_000, 102)));
    assert_eq!(row(&j, 3)["values"]["bin"], bin_json(&binary(200_000, 3)));

    // A cut before the missing chunk does not read it: the value shows, cut, and no damage is
    // reported for it.
    let o = esedump(&["records", p, "blobs", "--lv-max", "100", "--json"]);
    let j = json_of(&o);
    let lv = &row(&j, 2)["values"]["bin"]["long_value"];
    assert_eq!(lv["value"], bin_json(&binary(100, 2)));
    assert_eq!(lv["truncated"], true);
    assert_eq!(j["damaged_long_values"], 2);
    assert_eq!(o.status.code(), Some(1));
}
