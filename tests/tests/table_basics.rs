//! Tables through the public API: create a database and a table with several column types,
//! insert in a transaction, read back, replace, delete, roll back, then term and init again
//! (the database is attached again and the data is there).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{code, running_instance};
use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit,
    IndexCreate, IndexGrbit, Move, Prep, RollbackGrbit, Seek, TableCreate, TermGrbit,
};

fn files_table() -> TableCreate {
    TableCreate {
        name: "files".into(),
        columns: vec![
            ColumnDef::new("path", ColumnType::Text).max_size(200),
            ColumnDef::new("size", ColumnType::LongLong),
            ColumnDef::new("kind", ColumnType::Text).grbit(ColumnGrbit::TAGGED),
            ColumnDef::new("flags", ColumnType::Long).default_value(&7i32.to_le_bytes()),
        ],
        indexes: vec![IndexCreate {
            name: "primary".into(),
            key: "+path\0\0".into(),
            grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
            key_most: 0,
        }],
    }
}

#[test]
fn insert_read_replace_delete_and_survive_term() {
    let (inst, dir) = running_instance("tables");
    let s = inst.begin_session().unwrap();
    let path = dir.path().join("data.edb");
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &files_table()).unwrap();
    assert_eq!(code(s.create_table(db, &files_table())), -1303);
    let mut t = s.open_table(db, "FILES").unwrap();
    let (path_c, size_c, kind_c, flags_c) = (
        t.column_id("path").unwrap(),
        t.column_id("size").unwrap(),
        t.column_id("kind").unwrap(),
        t.column_id("flags").unwrap(),
    );
    s.begin_transaction().unwrap();
    for (i, name) in (0i64..).zip(["b.txt", "a.txt", "c.rs"]) {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(path_c, Some(name.as_bytes())).unwrap();
        t.set_column(size_c, Some(&(i * 100).to_le_bytes()))
            .unwrap();
        t.set_column(kind_c, Some(b"text")).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // Primary key order, case-insensitive text.
    let mut names = Vec::new();
    t.move_to(Move::First).unwrap();
    loop {
        names.push(String::from_utf8(t.retrieve_column(path_c).unwrap().unwrap()).unwrap());
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    assert_eq!(names, ["a.txt", "b.txt", "c.rs"]);
    assert_eq!(code(t.move_to(Move::Next)), -1603);
    // Seek, default value, duplicate key.
    t.seek(&[Some(b"B.TXT")], Seek::Eq).unwrap();
    assert_eq!(
        t.retrieve_column(size_c).unwrap().unwrap(),
        0i64.to_le_bytes()
    );
    assert_eq!(
        t.retrieve_column(flags_c).unwrap().unwrap(),
        7i32.to_le_bytes()
    );
    assert_eq!(code(t.seek(&[Some(b"zzz")], Seek::Eq)), -1601);
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(path_c, Some(b"a.txt")).unwrap();
    assert_eq!(code(t.update()), -1605);
    t.prepare_update(Prep::Cancel).unwrap();
    // Replace in a transaction that rolls back, then one that commits.
    t.seek(&[Some(b"a.txt")], Seek::Eq).unwrap();
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(size_c, Some(&999i64.to_le_bytes())).unwrap();
    t.update().unwrap();
    assert_eq!(
        t.retrieve_column(size_c).unwrap().unwrap(),
        999i64.to_le_bytes()
    );
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(
        t.retrieve_column(size_c).unwrap().unwrap(),
        100i64.to_le_bytes()
    );
    t.prepare_update(Prep::ReplaceNoLock).unwrap();
    t.set_column(path_c, Some(b"renamed")).unwrap();
    assert_eq!(code(t.update()), -1604);
    t.prepare_update(Prep::Cancel).unwrap();
    // Delete outside a transaction (implicit transaction).
    t.seek(&[Some(b"c.rs")], Seek::Eq).unwrap();
    t.delete().unwrap();
    assert_eq!(code(t.seek(&[Some(b"c.rs")], Seek::Eq)), -1601);
    drop(t);
    s.close_database(db).unwrap();
    inst.term(TermGrbit::empty()).unwrap();

    // Init again: the database is detached clean; attach and read.
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(&path, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&path).unwrap();
    let mut t = s.open_table(db, "files").unwrap();
    let mut n = 0;
    t.move_to(Move::First).unwrap();
    loop {
        n += 1;
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    assert_eq!(n, 2);
    t.seek(&[Some(b"a.txt")], Seek::Eq).unwrap();
    assert_eq!(
        t.retrieve_column(size_c).unwrap().unwrap(),
        100i64.to_le_bytes()
    );
    inst.term(TermGrbit::empty()).unwrap();
}

#[test]
fn table_created_in_a_rolled_back_transaction_does_not_exist() {
    let (inst, dir) = running_instance("ddl-rollback");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("d.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.begin_transaction().unwrap();
    s.create_table(db, &files_table()).unwrap();
    assert!(s.open_table(db, "files").is_ok());
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(code(s.open_table(db, "files")), -1305);
}

#[test]
fn database_errors() {
    let (inst, dir) = running_instance("db-errors");
    let s = inst.begin_session().unwrap();
    let path = dir.path().join("d.edb");
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    assert_eq!(
        code(s.create_database(&path, CreateDatabaseGrbit::empty())),
        -1202
    );
    assert_eq!(code(s.detach_database(&path)), -1202);
    s.close_database(db).unwrap();
    assert_eq!(code(s.close_database(db)), -1010);
    s.detach_database(&path).unwrap();
    assert_eq!(code(s.open_database(&path)), -1203);
    assert_eq!(
        code(s.create_database(&path, CreateDatabaseGrbit::empty())),
        -1201
    );
    s.attach_database(&path, AttachDatabaseGrbit::empty())
        .unwrap();
    // A second instance cannot attach it.
    let dir2 = tempfile::tempdir().unwrap();
    let other = ese::Instance::builder("other")
        .log_path(dir2.path())
        .system_path(dir2.path())
        .create()
        .unwrap();
    other.init().unwrap();
    let s2 = other.begin_session().unwrap();
    assert_eq!(
        code(s2.attach_database(&path, AttachDatabaseGrbit::empty())),
        -1215
    );
}
