//! JetEndSession rolls back every open transaction level and closes what the session holds:
//! the rows written in the open transaction are gone for every other session afterwards, the
//! session's cursors no longer work, and term is no longer blocked by the transaction.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{code, running_instance};
use ese::{
    ColumnDef, ColumnType, CreateDatabaseGrbit, EndSessionGrbit, IndexCreate, IndexGrbit, Move,
    Prep, Seek, TableCreate, TermGrbit,
};

fn table() -> TableCreate {
    TableCreate {
        name: "t".into(),
        columns: vec![
            ColumnDef::new("k", ColumnType::Long),
            ColumnDef::new("v", ColumnType::Binary),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+k\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

#[test]
fn end_session_rolls_back_rows_and_closes_cursors() {
    let (inst, dir) = running_instance("end-data");
    let path = dir.path().join("d.edb");
    let admin = inst.begin_session().unwrap();
    let db = admin
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    admin.create_table(db, &table()).unwrap();

    let s = inst.begin_session().unwrap();
    let sdb = s.open_database(&path).unwrap();
    let mut t = s.open_table(sdb, "t").unwrap();
    let (k, v) = (t.column_id("k").unwrap(), t.column_id("v").unwrap());
    s.begin_transaction().unwrap();
    for i in 0..10i32 {
        if i == 5 {
            s.begin_transaction().unwrap(); // a nested level too
        }
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(k, Some(&i.to_le_bytes())).unwrap();
        t.set_column(v, Some(b"uncommitted")).unwrap();
        t.update().unwrap();
    }
    assert_eq!(s.transaction_level().unwrap(), 2);
    // Another session does not see the uncommitted rows.
    let mut other = admin.open_table(db, "t").unwrap();
    assert_eq!(code(other.move_to(Move::First)), -1603);
    // Term refuses while the transaction is open.
    assert_eq!(code(inst.term(TermGrbit::empty())), -1059);

    s.end(EndSessionGrbit::empty()).unwrap();

    // The rows are gone, for readers and for writers (the keys are free again).
    assert_eq!(code(other.move_to(Move::First)), -1603);
    assert_eq!(
        code(other.seek(&[Some(&3i32.to_le_bytes())], Seek::Eq)),
        -1601
    );
    other.prepare_update(Prep::Insert).unwrap();
    other.set_column(k, Some(&3i32.to_le_bytes())).unwrap();
    other.update().unwrap();
    // The ended session's cursor is closed.
    assert_eq!(code(t.move_to(Move::First)), -1104);
    assert_eq!(code(t.retrieve_column(k)), -1104);
    drop(other);
    admin.end(EndSessionGrbit::empty()).unwrap();
    inst.term(TermGrbit::empty()).unwrap();
}
