//! The read path through the public API: a cursor keeps the current record it landed on and
//! serves JetRetrieveColumn / JetRetrieveColumns from it while no view can have changed. These
//! tests change the record behind the cursor's back in every way that matters — another
//! session committing (seen outside a transaction, not seen inside an older snapshot), this
//! session writing through another cursor, a rollback of its own write, a delete by another
//! session — and check each retrieve returns what the session's view sees now; also the copy
//! buffer of a prepared update, separated long values, multi-valued and default values,
//! seeks on a secondary index, and the errors of JetRetrieveColumns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;

use common::code;
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, IndexCreate,
    IndexGrbit, Instance, Prep, RetInfo, RetrieveColumn, RetrieveGrbit, RollbackGrbit, Seek,
    Session, Table, TableCreate,
};
use ese_core::fs::{FileSystem, SimFs};

const DB: &str = "/data/read.edb";
const TABLE: &str = "t";

/// `id` (Long, primary key), `v` (Binary, indexed by `byv`), `lv` (LongBinary), `mv`
/// (multi-valued tagged Binary), `d` (Long with default 7).
fn table() -> TableCreate {
    TableCreate {
        name: TABLE.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("v", ColumnType::Binary),
            ColumnDef::new("lv", ColumnType::LongBinary),
            ColumnDef::new("mv", ColumnType::Binary)
                .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
            ColumnDef::new("d", ColumnType::Long).default_value(&7i32.to_le_bytes()),
        ],
        indexes: vec![
            IndexCreate {
                name: "primary".into(),
                key: "+id\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                key_most: 0,
            },
            IndexCreate {
                name: "byv".into(),
                key: "+v\0\0".into(),
                grbit: IndexGrbit::empty(),
                key_most: 0,
            },
        ],
    }
}

struct Fixture {
    _inst: Instance,
    /// The reading session and a second one that changes records.
    s1: Session,
    s2: Session,
    db: DbId,
}

fn fixture(rows: &[(i32, &[u8])]) -> Fixture {
    let fs = SimFs::new();
    let fsd: Arc<dyn FileSystem> = Arc::new(fs);
    let inst = Instance::builder("read-path")
        .system_path("/sys")
        .log_path("/log")
        .file_system(fsd)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s1 = inst.begin_session().unwrap();
    let db = s1
        .create_database(DB, CreateDatabaseGrbit::empty())
        .unwrap();
    s1.create_table(db, &table()).unwrap();
    let s2 = inst.begin_session().unwrap();
    s2.open_database(DB).unwrap();
    let mut t = s1.open_table(db, TABLE).unwrap();
    for (id, v) in rows {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(col(&t, "id"), Some(&id.to_le_bytes()))
            .unwrap();
        t.set_column(col(&t, "v"), Some(v)).unwrap();
        t.update().unwrap();
    }
    Fixture {
        _inst: inst,
        s1,
        s2,
        db,
    }
}

fn col(t: &Table, name: &str) -> u32 {
    t.column_id(name).unwrap()
}

fn goto(t: &mut Table, id: i32) {
    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
}

fn v_of(t: &Table) -> Option<Vec<u8>> {
    t.retrieve_column(col(t, "v")).unwrap()
}

/// `v` through JetRetrieveColumns.
fn v_via_columns(t: &Table) -> Option<Vec<u8>> {
    let mut c = [RetrieveColumn::new(col(t, "v"))];
    t.retrieve_columns(&mut c).unwrap();
    c[0].value().map(<[u8]>::to_vec)
}

/// Sets column `name` of row `id` to `value` through cursor `t` of session `s`, in a
/// transaction level of its own (committed: inside an outer transaction the change stays that
/// transaction's).
fn set(s: &Session, t: &mut Table, id: i32, name: &str, value: &[u8]) {
    goto(t, id);
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(col(t, name), Some(value)).unwrap();
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

#[test]
fn another_sessions_commit_is_seen_outside_a_transaction() {
    let f = fixture(&[(1, b"a"), (2, b"b")]);
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    goto(&mut t1, 1);
    assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]));
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    set(&f.s2, &mut t2, 1, "v", b"changed");
    // The cursor did not move: the retrieve still sees the latest committed record.
    assert_eq!(v_of(&t1).as_deref(), Some(&b"changed"[..]));
    assert_eq!(v_via_columns(&t1).as_deref(), Some(&b"changed"[..]));
    // In an explicit transaction of the other session too.
    f.s2.begin_transaction().unwrap();
    set(&f.s2, &mut t2, 1, "v", b"again");
    assert_eq!(
        v_of(&t1).as_deref(),
        Some(&b"changed"[..]),
        "not committed yet"
    );
    f.s2.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(v_of(&t1).as_deref(), Some(&b"again"[..]));
}

#[test]
fn a_snapshot_keeps_its_record_until_the_transaction_ends() {
    let f = fixture(&[(1, b"a")]);
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    f.s1.begin_transaction().unwrap();
    goto(&mut t1, 1);
    assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]));
    set(&f.s2, &mut t2, 1, "v", b"new");
    assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]), "the snapshot");
    assert_eq!(v_via_columns(&t1).as_deref(), Some(&b"a"[..]));
    f.s1.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(
        v_of(&t1).as_deref(),
        Some(&b"new"[..]),
        "latest after the commit"
    );

    // A record read outside a transaction, then another session commits, then this session
    // begins a transaction: its snapshot has the commit.
    set(&f.s2, &mut t2, 1, "v", b"newer");
    assert_eq!(v_of(&t1).as_deref(), Some(&b"newer"[..]));
    set(&f.s2, &mut t2, 1, "v", b"newest");
    f.s1.begin_transaction().unwrap();
    assert_eq!(v_of(&t1).as_deref(), Some(&b"newest"[..]));
    f.s1.rollback(RollbackGrbit::empty()).unwrap();
}

#[test]
fn a_record_read_while_uncommitted_is_reconstructed_after_the_commit() {
    // The cursor lands on a record another session changed and has not committed: the page
    // holds the new value, the view the old one. The commit changes no page, so the cursor's
    // copy of the node stays current; every retrieve after it must still go through the
    // record's versions: outside a transaction the commit is seen, in a snapshot taken before
    // it the old value stays.
    for in_snapshot in [false, true] {
        let f = fixture(&[(1, b"a"), (2, b"b")]);
        let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
        let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
        f.s2.begin_transaction().unwrap();
        set(&f.s2, &mut t2, 1, "v", b"new");
        if in_snapshot {
            f.s1.begin_transaction().unwrap();
        }
        goto(&mut t1, 1);
        assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]), "not committed yet");
        f.s2.commit_transaction(CommitGrbit::empty()).unwrap();
        let want: &[u8] = if in_snapshot { b"a" } else { b"new" };
        assert_eq!(v_of(&t1).as_deref(), Some(want));
        assert_eq!(v_via_columns(&t1).as_deref(), Some(want));
        // Another record changes (on the same page): the copy is no longer current and the
        // record is read again, with the same answer.
        set(&f.s2, &mut t2, 2, "v", b"c");
        assert_eq!(v_of(&t1).as_deref(), Some(want));
        if in_snapshot {
            f.s1.commit_transaction(CommitGrbit::empty()).unwrap();
            assert_eq!(v_of(&t1).as_deref(), Some(&b"new"[..]));
        }
    }
}

#[test]
fn own_writes_through_another_cursor_are_seen_and_rolled_back() {
    let f = fixture(&[(1, b"a"), (2, b"b")]);
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    let mut other = f.s1.open_table(f.db, TABLE).unwrap();
    goto(&mut t1, 1);
    assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]));
    // Outside a transaction (an implicit one).
    set(&f.s1, &mut other, 1, "v", b"x");
    assert_eq!(v_of(&t1).as_deref(), Some(&b"x"[..]));
    // Inside one, then rolled back.
    f.s1.begin_transaction().unwrap();
    assert_eq!(v_of(&t1).as_deref(), Some(&b"x"[..]));
    set(&f.s1, &mut other, 1, "v", b"y");
    assert_eq!(
        v_of(&t1).as_deref(),
        Some(&b"y"[..]),
        "own uncommitted write"
    );
    assert_eq!(v_via_columns(&t1).as_deref(), Some(&b"y"[..]));
    f.s1.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(v_of(&t1).as_deref(), Some(&b"x"[..]), "rolled back");
    // A write and a rollback through the same cursor, in a nested level.
    f.s1.begin_transaction().unwrap();
    set(&f.s1, &mut t1, 1, "v", b"z");
    assert_eq!(v_of(&t1).as_deref(), Some(&b"z"[..]));
    f.s1.begin_transaction().unwrap();
    set(&f.s1, &mut t1, 1, "v", b"w");
    assert_eq!(v_of(&t1).as_deref(), Some(&b"w"[..]));
    f.s1.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(
        v_of(&t1).as_deref(),
        Some(&b"z"[..]),
        "inner level rolled back"
    );
    f.s1.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(v_of(&t1).as_deref(), Some(&b"x"[..]));
    // Another session sees none of it.
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    goto(&mut t2, 1);
    assert_eq!(v_of(&t2).as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_record_deleted_by_another_session_is_reported() {
    let f = fixture(&[(1, b"a"), (2, b"b")]);
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    f.s1.begin_transaction().unwrap();
    goto(&mut t1, 1);
    assert_eq!(v_of(&t1).as_deref(), Some(&b"a"[..]));
    goto(&mut t2, 1);
    t2.delete().unwrap();
    assert_eq!(
        v_of(&t1).as_deref(),
        Some(&b"a"[..]),
        "the snapshot still sees it"
    );
    f.s1.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(code(t1.retrieve_column(col(&t1, "v"))), -1017);
    let mut c = [RetrieveColumn::new(col(&t1, "v"))];
    assert_eq!(code(t1.retrieve_columns(&mut c)), -1017);
    // Deleted through this session's other cursor.
    goto(&mut t1, 2);
    assert_eq!(v_of(&t1).as_deref(), Some(&b"b"[..]));
    let mut other = f.s1.open_table(f.db, TABLE).unwrap();
    goto(&mut other, 2);
    other.delete().unwrap();
    assert_eq!(code(t1.retrieve_column(col(&t1, "v"))), -1017);
}

#[test]
fn the_copy_buffer_of_a_prepared_update() {
    let f = fixture(&[(1, b"a")]);
    let mut t = f.s1.open_table(f.db, TABLE).unwrap();
    goto(&mut t, 1);
    assert_eq!(v_of(&t).as_deref(), Some(&b"a"[..]));
    f.s1.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(col(&t, "v"), Some(b"copy")).unwrap();
    // JetRetrieveColumn without options reads the copy buffer while an update is prepared.
    assert_eq!(v_of(&t).as_deref(), Some(&b"copy"[..]));
    let stored = t
        .retrieve_column_with(
            col(&t, "v"),
            RetrieveGrbit::empty(),
            RetInfo::default(),
            100,
        )
        .unwrap()
        .unwrap();
    assert_eq!(stored.data, b"a");
    let mut c = [
        RetrieveColumn::new(col(&t, "v")),
        RetrieveColumn {
            grbit: RetrieveGrbit::COPY,
            ..RetrieveColumn::new(col(&t, "v"))
        },
    ];
    t.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&b"a"[..]), "the record as stored");
    assert_eq!(c[1].value(), Some(&b"copy"[..]), "the copy buffer");
    t.update().unwrap();
    f.s1.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(v_of(&t).as_deref(), Some(&b"copy"[..]));
    t.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&b"copy"[..]));
    assert_eq!(
        c[1].value(),
        Some(&b"copy"[..]),
        "no update prepared: the record"
    );
}

#[test]
fn separated_long_values_follow_changes() {
    let f = fixture(&[(1, b"a")]);
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let big2: Vec<u8> = big.iter().rev().copied().collect();
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    set(&f.s1, &mut t1, 1, "lv", &big);
    let (separated, _) = t1.long_value_stats().unwrap();
    assert!(separated > 0, "the value is separated");
    goto(&mut t1, 1);
    assert_eq!(t1.retrieve_column(col(&t1, "lv")).unwrap().unwrap(), big);
    let mut c = [
        RetrieveColumn::new(col(&t1, "lv")),
        RetrieveColumn::new(col(&t1, "v")),
    ];
    t1.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&big[..]));
    assert_eq!(c[1].value(), Some(&b"a"[..]));
    let part = t1
        .retrieve_column_with(
            col(&t1, "lv"),
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 1,
                ib_long_value: 19_990,
            },
            4,
        )
        .unwrap()
        .unwrap();
    assert_eq!(part.data, &big[19_990..19_994]);
    assert_eq!(part.actual_len, 10);
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    set(&f.s2, &mut t2, 1, "lv", &big2);
    assert_eq!(t1.retrieve_column(col(&t1, "lv")).unwrap().unwrap(), big2);
    t1.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&big2[..]));
}

#[test]
fn multi_valued_default_and_null_values() {
    let f = fixture(&[(1, b"a")]);
    let mut t = f.s1.open_table(f.db, TABLE).unwrap();
    goto(&mut t, 1);
    f.s1.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column_itag(col(&t, "mv"), Some(b"m1"), 0).unwrap();
    t.set_column_itag(col(&t, "mv"), Some(b"m2"), 0).unwrap();
    t.update().unwrap();
    f.s1.commit_transaction(CommitGrbit::empty()).unwrap();
    goto(&mut t, 1);
    let (mv, d, lv) = (col(&t, "mv"), col(&t, "d"), col(&t, "lv"));
    let mut c = [
        RetrieveColumn::new(mv),
        RetrieveColumn {
            itag_sequence: 2,
            ..RetrieveColumn::new(mv)
        },
        RetrieveColumn {
            itag_sequence: 3,
            ..RetrieveColumn::new(mv)
        },
        RetrieveColumn::new(d),
        RetrieveColumn {
            grbit: RetrieveGrbit::IGNORE_DEFAULT,
            ..RetrieveColumn::new(d)
        },
        RetrieveColumn::new(lv),
    ];
    // Stale contents in the buffers are replaced.
    for e in &mut c {
        e.data = b"stale".to_vec();
        e.is_null = false;
    }
    t.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&b"m1"[..]));
    assert_eq!(c[1].value(), Some(&b"m2"[..]));
    assert_eq!(c[2].value(), None, "past the last value");
    assert_eq!(c[3].value(), Some(&7i32.to_le_bytes()[..]), "the default");
    assert_eq!(c[4].value(), None, "no default with IGNORE_DEFAULT");
    assert_eq!(c[5].value(), None, "null");
    assert!(c[5].data.is_empty());
    assert_eq!(
        t.retrieve_column_itag(mv, 2).unwrap().as_deref(),
        Some(&b"m2"[..])
    );
    assert_eq!(
        t.retrieve_column(d).unwrap().as_deref(),
        Some(&7i32.to_le_bytes()[..])
    );
}

#[test]
fn seeks_on_a_secondary_index_read_the_primary_record() {
    let f = fixture(&[(1, b"k1"), (2, b"k2"), (3, b"k3")]);
    let mut t1 = f.s1.open_table(f.db, TABLE).unwrap();
    t1.set_current_index(Some("byv")).unwrap();
    t1.seek(&[Some(b"k2")], Seek::Eq).unwrap();
    let (id, v) = (col(&t1, "id"), col(&t1, "v"));
    let mut c = [RetrieveColumn::new(id), RetrieveColumn::new(v)];
    t1.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&2i32.to_le_bytes()[..]));
    assert_eq!(c[1].value(), Some(&b"k2"[..]));
    // Another session changes the record the index entry points to: the cursor's record is
    // the same (by bookmark), its values the new ones.
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    set(&f.s2, &mut t2, 2, "d", &99i32.to_le_bytes());
    assert_eq!(
        t1.retrieve_column(col(&t1, "d")).unwrap().as_deref(),
        Some(&99i32.to_le_bytes()[..])
    );
    // Moving on the secondary index gives the next record's values.
    t1.move_to(ese::Move::Next).unwrap();
    t1.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&3i32.to_le_bytes()[..]));
    assert_eq!(c[1].value(), Some(&b"k3"[..]));
    assert_eq!(v_of(&t1).as_deref(), Some(&b"k3"[..]));
}

#[test]
fn moves_on_the_primary_index_read_each_record() {
    let rows: Vec<(i32, Vec<u8>)> = (0..500)
        .map(|i| (i, format!("row{i}").into_bytes()))
        .collect();
    let refs: Vec<(i32, &[u8])> = rows.iter().map(|(i, v)| (*i, &v[..])).collect();
    let f = fixture(&refs);
    let mut t = f.s1.open_table(f.db, TABLE).unwrap();
    let mut c = [
        RetrieveColumn::new(col(&t, "id")),
        RetrieveColumn::new(col(&t, "v")),
    ];
    t.move_to(ese::Move::First).unwrap();
    for (i, v) in &rows {
        t.retrieve_columns(&mut c).unwrap();
        assert_eq!(c[0].value(), Some(&i.to_le_bytes()[..]));
        assert_eq!(c[1].value(), Some(&v[..]));
        assert_eq!(v_of(&t).as_deref(), Some(&v[..]));
        let r = t.move_to(ese::Move::Next);
        if *i == 499 {
            assert_eq!(code(r), -1603);
        } else {
            r.unwrap();
        }
    }
    // Backwards, with a change by another session in the middle of the walk.
    t.move_to(ese::Move::Last).unwrap();
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    set(&f.s2, &mut t2, 498, "v", b"moved");
    t.move_to(ese::Move::Previous).unwrap();
    assert_eq!(v_of(&t).as_deref(), Some(&b"moved"[..]));
}

/// The ids a full walk of cursor `t` finds from First by Next, and from Last by Previous
/// (each record's `id` read through JetRetrieveColumns at every step); both walk off their
/// end, and a turn back from there lands on the end record again.
fn walk_both_ways(t: &mut Table) -> (Vec<i32>, Vec<i32>) {
    let mut c = [RetrieveColumn::new(col(t, "id"))];
    let mut id = |t: &Table| {
        t.retrieve_columns(&mut c).unwrap();
        i32::from_le_bytes(c[0].value().unwrap().try_into().unwrap())
    };
    let mut fwd = Vec::new();
    t.move_to(ese::Move::First).unwrap();
    loop {
        fwd.push(id(t));
        if let Err(e) = t.move_to(ese::Move::Next) {
            assert_eq!(e.code(), -1603);
            break;
        }
    }
    t.move_to(ese::Move::Previous).unwrap();
    assert_eq!(Some(&id(t)), fwd.last(), "back from past the end");
    let mut back = Vec::new();
    t.move_to(ese::Move::Last).unwrap();
    loop {
        back.push(id(t));
        if t.move_to(ese::Move::Previous).is_err() {
            break;
        }
    }
    t.move_to(ese::Move::Next).unwrap();
    assert_eq!(Some(&id(t)), back.last(), "forward from before the start");
    back.reverse();
    (fwd, back)
}

#[test]
fn moves_step_over_deleted_records_before_and_after_version_cleanup() {
    // Enough rows for several leaves, so that steps cross pages.
    let rows: Vec<(i32, Vec<u8>)> = (0..1200).map(|i| (i, vec![b'x'; 40])).collect();
    let refs: Vec<(i32, &[u8])> = rows.iter().map(|(i, v)| (*i, &v[..])).collect();
    let f = fixture(&refs);
    let mut t = f.s1.open_table(f.db, TABLE).unwrap();
    let all: Vec<i32> = (0..1200).collect();
    assert_eq!(walk_both_ways(&mut t), (all.clone(), all.clone()));
    // Another session deletes every third row and the last 100, uncommitted: this session
    // still sees every row (the deleted nodes have versions).
    let mut t2 = f.s2.open_table(f.db, TABLE).unwrap();
    f.s2.begin_transaction().unwrap();
    let gone = |i: &i32| i % 3 == 1 || *i >= 1100;
    for i in all.iter().filter(|i| gone(i)) {
        goto(&mut t2, *i);
        t2.delete().unwrap();
    }
    assert_eq!(walk_both_ways(&mut t), (all.clone(), all.clone()));
    f.s2.commit_transaction(CommitGrbit::empty()).unwrap();
    let kept: Vec<i32> = all.iter().copied().filter(|i| !gone(i)).collect();
    assert_eq!(walk_both_ways(&mut t), (kept.clone(), kept.clone()));
    // After background cleanup (every 100 ms) has removed the versions: the same rows.
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(walk_both_ways(&mut t), (kept.clone(), kept.clone()));
    // A walk on a fresh cursor, and one turning around in the middle.
    let mut t3 = f.s1.open_table(f.db, TABLE).unwrap();
    assert_eq!(walk_both_ways(&mut t3), (kept.clone(), kept.clone()));
    goto(&mut t3, 600);
    t3.move_to(ese::Move::Next).unwrap();
    t3.move_to(ese::Move::Next).unwrap();
    t3.move_to(ese::Move::Previous).unwrap();
    let mut c = [RetrieveColumn::new(col(&t3, "id"))];
    t3.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&602i32.to_le_bytes()[..]));
}

#[test]
fn retrieve_columns_errors() {
    let f = fixture(&[(1, b"a")]);
    let mut t = f.s1.open_table(f.db, TABLE).unwrap();
    let v = col(&t, "v");
    let mut c = [RetrieveColumn::new(v)];
    assert_eq!(code(t.retrieve_columns(&mut c)), -1603, "off a record");
    let mut none: [RetrieveColumn; 0] = [];
    t.retrieve_columns(&mut none)
        .expect("no column asked: nothing is read, even off a record");
    goto(&mut t, 1);
    // COPY without a prepared update reads the current record.
    let mut c = [
        RetrieveColumn {
            grbit: RetrieveGrbit::COPY,
            ..RetrieveColumn::new(v)
        },
        RetrieveColumn::new(v),
    ];
    t.retrieve_columns(&mut c).unwrap();
    assert_eq!(c[0].value(), Some(&b"a"[..]));
    assert_eq!(c[1].value(), Some(&b"a"[..]));
    let mut c = [RetrieveColumn::new(v)];
    c[0].itag_sequence = 0;
    assert_eq!(code(t.retrieve_columns(&mut c)), -1518);
    let mut c = [RetrieveColumn::new(v), RetrieveColumn::new(9999)];
    assert_eq!(code(t.retrieve_columns(&mut c)), -1507);
    let mut c = [RetrieveColumn {
        grbit: RetrieveGrbit::from_bits_retain(0x1000),
        ..RetrieveColumn::new(v)
    }];
    assert_eq!(code(t.retrieve_columns(&mut c)), -900);
    let mut none: [RetrieveColumn; 0] = [];
    t.retrieve_columns(&mut none).unwrap();
}
