//! Offline compaction through the public API (`Session::compact_database`, JetCompact): a
//! database filled in scattered order and half emptied is copied into a smaller file that
//! attaches, holds every committed row (primary index, secondary index, long values), passes
//! the integrity check and takes new rows; the documented errors (source attached, dirty
//! source, destination taken) leave no file behind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;

use common::{code, running_instance};
use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId,
    IndexCreate, IndexGrbit, Move, Prep, Seek, Session, TableCreate,
};

fn table() -> TableCreate {
    TableCreate {
        name: "t".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("name", ColumnType::Text).max_size(64),
            ColumnDef::new("blob", ColumnType::LongBinary),
        ],
        indexes: vec![
            IndexCreate {
                name: "primary".into(),
                key: "+id\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                key_most: 0,
            },
            IndexCreate {
                name: "by_name".into(),
                key: "+name\0\0".into(),
                grbit: IndexGrbit::empty(),
                key_most: 0,
            },
        ],
    }
}

/// The row `id` has: (name, blob); every 50th row has a long value kept out of the record.
fn row(id: i32) -> (String, Vec<u8>) {
    let blob = if id % 50 == 0 {
        vec![id.rem_euclid(251).to_le_bytes()[0]; 20_000]
    } else {
        vec![id.rem_euclid(251).to_le_bytes()[0]; 150]
    };
    (format!("name {:06}", (id * 7) % 10_007), blob)
}

/// Every row by a scan of the primary index: id → (name, blob).
fn rows(s: &Session, db: DbId) -> BTreeMap<i32, (String, Vec<u8>)> {
    let mut t = s.open_table(db, "t").unwrap();
    let (id, name, blob) = (
        t.column_id("id").unwrap(),
        t.column_id("name").unwrap(),
        t.column_id("blob").unwrap(),
    );
    let mut out = BTreeMap::new();
    let mut more = t.move_to(Move::First).is_ok();
    while more {
        let k = i32::from_le_bytes(t.retrieve_column(id).unwrap().unwrap().try_into().unwrap());
        let n = String::from_utf8(t.retrieve_column(name).unwrap().unwrap()).unwrap();
        out.insert(k, (n, t.retrieve_column(blob).unwrap().unwrap_or_default()));
        more = t.move_to(Move::Next).is_ok();
    }
    out
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn a_compacted_database_is_smaller_and_holds_every_committed_row() {
    let (inst, dir) = running_instance("compact");
    let s = inst.begin_session().unwrap();
    let src = dir.path().join("src.edb");
    let dest = dir.path().join("out").join("compact.edb");
    let db = s
        .create_database(&src, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    let n = 6_000;
    {
        let mut t = s.open_table(db, "t").unwrap();
        let (id, name, blob) = (
            t.column_id("id").unwrap(),
            t.column_id("name").unwrap(),
            t.column_id("blob").unwrap(),
        );
        // Transactions of 500 rows: the instance's version store is small.
        for (k, i) in (0..n).map(|i| (i * 4_001 + 17) % n).enumerate() {
            if k % 500 == 0 {
                s.begin_transaction().unwrap();
            }
            let (nm, b) = row(i);
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(id, Some(&i.to_le_bytes())).unwrap();
            t.set_column(name, Some(nm.as_bytes())).unwrap();
            t.set_column(blob, Some(&b)).unwrap();
            t.update().unwrap();
            if k % 500 == 499 {
                s.commit_transaction(CommitGrbit::empty()).unwrap();
            }
        }
        for i in (0..n).filter(|i| i % 2 == 0) {
            if i % 1000 == 0 {
                s.begin_transaction().unwrap();
            }
            t.seek(&[Some(&i.to_le_bytes())], Seek::Eq).unwrap();
            t.delete().unwrap();
            if i % 1000 == 998 {
                s.commit_transaction(CommitGrbit::empty()).unwrap();
            }
        }
    }
    let expected = rows(&s, db);
    assert_eq!(expected.len(), usize::try_from(n / 2).unwrap());

    // Attached: refused, nothing written.
    assert_eq!(code(s.compact_database(&src, &dest)), -1202);
    assert!(!dest.exists());
    s.close_database(db).unwrap();
    s.detach_database(&src).unwrap();

    let stats = s.compact_database(&src, &dest).unwrap();
    assert!(stats.nodes as usize > expected.len(), "{stats:?}");
    assert!(
        stats.dest_pages * 10 < stats.source_pages * 7,
        "the copy should need well under 70% of the pages: {stats:?}"
    );
    assert!(
        file_len(&dest) < file_len(&src),
        "{} >= {}",
        file_len(&dest),
        file_len(&src)
    );
    // The destination is taken now.
    assert_eq!(code(s.compact_database(&src, &dest)), -1201);

    s.attach_database(&dest, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&dest).unwrap();
    assert_eq!(rows(&s, db), expected);
    s.check_database(db).unwrap();
    // The secondary index holds the same rows, in name order.
    {
        let mut t = s.open_table(db, "t").unwrap();
        t.set_current_index(Some("by_name")).unwrap();
        assert_eq!(
            t.index_record_count(u64::MAX).unwrap(),
            expected.len() as u64
        );
        let name = t.column_id("name").unwrap();
        let mut names = Vec::new();
        let mut more = t.move_to(Move::First).is_ok();
        while more {
            names.push(String::from_utf8(t.retrieve_column(name).unwrap().unwrap()).unwrap());
            more = t.move_to(Move::Next).is_ok();
        }
        let mut want: Vec<String> = expected.values().map(|(n, _)| n.clone()).collect();
        want.sort();
        assert_eq!(names, want);
    }
    // The copy takes new rows (long values included) and survives detach and attach.
    {
        let mut t = s.open_table(db, "t").unwrap();
        let (id, name, blob) = (
            t.column_id("id").unwrap(),
            t.column_id("name").unwrap(),
            t.column_id("blob").unwrap(),
        );
        s.begin_transaction().unwrap();
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&0i32.to_le_bytes())).unwrap();
        t.set_column(name, Some(b"back")).unwrap();
        t.set_column(blob, Some(&vec![5u8; 30_000])).unwrap();
        t.update().unwrap();
        s.commit_transaction(CommitGrbit::empty()).unwrap();
    }
    s.close_database(db).unwrap();
    s.detach_database(&dest).unwrap();
    s.attach_database(&dest, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&dest).unwrap();
    let mut after = expected.clone();
    after.insert(0, ("back".into(), vec![5u8; 30_000]));
    assert_eq!(rows(&s, db), after);
    s.check_database(db).unwrap();
}

#[test]
fn a_database_not_shut_down_cleanly_is_not_compacted() {
    let (inst, dir) = running_instance("compact-dirty");
    let s = inst.begin_session().unwrap();
    let src = dir.path().join("src.edb");
    let copy = dir.path().join("dirty.edb");
    let dest = dir.path().join("compact.edb");
    let db = s
        .create_database(&src, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    // A copy of the file taken while it is attached: its header says dirty shutdown.
    std::fs::copy(&src, &copy).unwrap();
    assert_eq!(code(s.compact_database(&copy, &dest)), -550);
    assert!(!dest.exists());
    assert_eq!(
        code(s.compact_database(dir.path().join("missing.edb"), &dest)),
        -1811
    );
    assert!(!dest.exists());
}

#[test]
fn detach_leaves_no_versions_behind_and_refuses_while_a_transaction_needs_them() {
    let (inst, dir) = running_instance("compact-detach");
    let s = inst.begin_session().unwrap();
    let reader = inst.begin_session().unwrap();
    let src = dir.path().join("src.edb");
    let dest = dir.path().join("compact.edb");
    let db = s
        .create_database(&src, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (id, name) = (t.column_id("id").unwrap(), t.column_id("name").unwrap());
    s.begin_transaction().unwrap();
    for i in 0..100i32 {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&i.to_le_bytes())).unwrap();
        t.set_column(name, Some(b"x")).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // A snapshot older than the delete below: the delete's versions stay needed.
    reader.begin_transaction().unwrap();
    s.begin_transaction().unwrap();
    t.seek(&[Some(&7i32.to_le_bytes())], Seek::Eq).unwrap();
    t.delete().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    drop(t);
    s.close_database(db).unwrap();
    assert_eq!(code(s.detach_database(&src)), -1202);
    // Still attached and usable.
    let db = s.open_database(&src).unwrap();
    assert_eq!(rows(&s, db).len(), 99);
    s.close_database(db).unwrap();
    reader.commit_transaction(CommitGrbit::empty()).unwrap();
    s.detach_database(&src).unwrap();
    // The copy, attached under the dbid the source had, reads as the source committed it.
    s.compact_database(&src, &dest).unwrap();
    s.attach_database(&dest, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&dest).unwrap();
    let got = rows(&s, db);
    assert_eq!(got.len(), 99);
    assert!(!got.contains_key(&7));
    s.check_database(db).unwrap();
}
