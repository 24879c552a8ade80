//! Long values (LongBinary, LongText) through the public API: values of every size class
//! round-trip (in the record, separated into chunks, up to 10 MiB); JetSetColumn's
//! append / overwrite-at-offset / size options and retrieval at an offset with a truncated
//! buffer; replace and delete free the old value's chunks; rollback leaves nothing and an older
//! snapshot still reads the old value; crash recovery keeps committed long values and never
//! shows uncommitted ones, also with the power cut at 40 points of a workload of long-value
//! changes under three crash models (the recovered rows are the last commit's, the long-value
//! tree holds exactly the values the records refer to); multi-valued and indexed long
//! columns. The integrity check passes after each test.

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
    AttachDatabaseGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit,
    DbId, IndexCreate, IndexGrbit, Instance, Move, Prep, RetInfo, RetrieveGrbit, RollbackGrbit,
    Seek, Session, SetGrbit, SetInfo, Table, TableCreate, TermGrbit,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

const DB: &str = "/data/lv.edb";
const PAGE: usize = 8192;

fn instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("long-values")
        .system_path("/sys")
        .log_path("/log")
        .page_size(PAGE as u32)
        .version_store_bytes(64 << 20)
        .file_system(fsd)
        .create()
        .unwrap()
}

/// A table `name`: `id` (Long, primary key), `lv` (the long type `coltyp`), `n` (Long,
/// tagged), `mv` (multi-valued LongBinary) and `small` (LongBinary of at most 5000 bytes).
fn lv_table(name: &str, coltyp: ColumnType) -> TableCreate {
    TableCreate {
        name: name.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("lv", coltyp),
            ColumnDef::new("n", ColumnType::Long).grbit(ColumnGrbit::TAGGED),
            ColumnDef::new("mv", ColumnType::LongBinary).grbit(ColumnGrbit::MULTI_VALUED),
            ColumnDef::new("small", ColumnType::LongBinary).max_size(5000),
        ],
        indexes: vec![IndexCreate {
            name: "primary".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
            key_most: 0,
        }],
    }
}

struct Fixture {
    fs: SimFs,
    inst: Instance,
    s: Session,
    db: DbId,
}

fn fixture(tables: &[(&str, ColumnType)]) -> Fixture {
    let fs = SimFs::new();
    let inst = instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    for (name, coltyp) in tables {
        s.create_table(db, &lv_table(name, *coltyp)).unwrap();
    }
    Fixture { fs, inst, s, db }
}

/// Deterministic bytes (printable, so they are valid text too), different per `seed`.
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(seed));
    (0..len).map(|_| rng.u8(b'a'..=b'z')).collect()
}

fn col(t: &Table, name: &str) -> u32 {
    t.column_id(name).unwrap()
}

/// Inserts row `id` with `lv` = `value` (in an implicit transaction).
fn insert(t: &mut Table, id: i32, value: &[u8]) {
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(col(t, "id"), Some(&id.to_le_bytes())).unwrap();
    t.set_column(col(t, "lv"), Some(value)).unwrap();
    t.update().unwrap();
}

fn goto(t: &mut Table, id: i32) {
    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
}

fn lv_of(t: &mut Table, id: i32) -> Option<Vec<u8>> {
    goto(t, id);
    t.retrieve_column(col(t, "lv")).unwrap()
}

/// Replaces row `id`'s columns in a transaction of its own, with `f` setting them.
fn replace(s: &Session, t: &mut Table, id: i32, f: impl FnOnce(&mut Table)) {
    goto(t, id);
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    f(t);
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

fn check(s: &Session, db: DbId) {
    s.check_database(db).expect("integrity check");
}

#[test]
fn values_of_every_size_round_trip_and_survive_term() {
    let f = fixture(&[
        ("bin", ColumnType::LongBinary),
        ("txt", ColumnType::LongText),
    ]);
    let lens = [0usize, 1, 1024, 1025, PAGE - 1, PAGE + 1, 10 << 20];
    let mut expect = Vec::new();
    for (k, name) in (0u32..).zip(["bin", "txt"]) {
        let mut t = f.s.open_table(f.db, name).unwrap();
        for (i, len) in (0i32..).zip(lens) {
            let v = data(len, k * 10 + i.unsigned_abs());
            insert(&mut t, i, &v);
            expect.push((name, i, v));
        }
        // Values over 1024 bytes are separated; page-size values take two chunks, 10 MiB
        // about 1300.
        let (lids, chunks) = t.long_value_stats().unwrap();
        assert_eq!(lids, 4, "{name}");
        assert!(chunks > (10 << 20) / PAGE as u64, "{name}: {chunks} chunks");
        assert_eq!(
            t.retrieve_column_with(col(&t, "lv"), RetrieveGrbit::empty(), RetInfo::default(), 0)
                .unwrap()
                .unwrap()
                .actual_len,
            10 << 20
        );
    }
    let read_all = |s: &Session, db: DbId| {
        for (name, i, v) in &expect {
            let mut t = s.open_table(db, name).unwrap();
            let got = lv_of(&mut t, *i).unwrap();
            assert_eq!(got.len(), v.len(), "{name} row {i}");
            assert!(got == *v, "{name} row {i}: the value differs");
        }
    };
    read_all(&f.s, f.db);
    check(&f.s, f.db);
    // Term, then init and attach again: the values are in the file.
    f.s.close_database(f.db).unwrap();
    drop(f.s);
    f.inst.term(TermGrbit::empty()).unwrap();
    let fs = f.fs.crash(CrashModel::DropAll, 0);
    let inst = instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    read_all(&s, db);
    check(&s, db);
}

#[test]
fn append_overwrite_size_and_reads_at_an_offset() {
    let f = fixture(&[("t", ColumnType::LongBinary)]);
    let s = &f.s;
    let mut t = s.open_table(f.db, "t").unwrap();
    let lv = col(&t, "lv");
    let a = data(3000, 1);
    insert(&mut t, 1, &a);
    // Append.
    let b = data(5000, 2);
    replace(s, &mut t, 1, |t| {
        t.set_column_with(lv, Some(&b), SetGrbit::APPEND_LV, SetInfo::default())
            .unwrap();
        // The copy buffer shows the appended value before the update.
        let copy = t
            .retrieve_column_with(lv, RetrieveGrbit::COPY, RetInfo::default(), usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(copy.actual_len, 8000);
    });
    let mut want = [a.clone(), b].concat();
    assert_eq!(lv_of(&mut t, 1).unwrap(), want);
    // Overwrite inside, and across the end.
    let c = data(1000, 3);
    let info = |ib: u64| SetInfo {
        itag_sequence: 1,
        ib_long_value: ib,
    };
    replace(s, &mut t, 1, |t| {
        t.set_column_with(lv, Some(&c), SetGrbit::OVERWRITE_LV, info(2500))
            .unwrap();
        t.set_column_with(lv, Some(&c), SetGrbit::OVERWRITE_LV, info(7500))
            .unwrap();
    });
    want[2500..3500].copy_from_slice(&c);
    want.truncate(7500);
    want.extend_from_slice(&c);
    assert_eq!(lv_of(&mut t, 1).unwrap(), want);
    // Reads at an offset, into a short buffer, and past the end.
    let r = t
        .retrieve_column_with(
            lv,
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 1,
                ib_long_value: 8190,
            },
            20,
        )
        .unwrap()
        .unwrap();
    assert_eq!(r.data, want[8190..8210]);
    assert_eq!(r.actual_len, 8500 - 8190);
    assert!(r.is_truncated());
    let whole = t
        .retrieve_column_with(lv, RetrieveGrbit::empty(), RetInfo::default(), 1 << 20)
        .unwrap()
        .unwrap();
    assert!(!whole.is_truncated());
    assert_eq!(whole.data, want);
    let past = t
        .retrieve_column_with(
            lv,
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 1,
                ib_long_value: 9000,
            },
            100,
        )
        .unwrap()
        .unwrap();
    assert!(past.data.is_empty());
    assert_eq!(past.actual_len, 0);
    // Size: grow with zeros, then shrink into the record.
    replace(s, &mut t, 1, |t| {
        t.set_column_with(
            lv,
            Some(&12_000u32.to_le_bytes()),
            SetGrbit::SIZE_LV,
            SetInfo::default(),
        )
        .unwrap();
    });
    want.resize(12_000, 0);
    assert_eq!(lv_of(&mut t, 1).unwrap(), want);
    assert_eq!(t.long_value_stats().unwrap().0, 1);
    replace(s, &mut t, 1, |t| {
        t.set_column_with(
            lv,
            Some(&100u32.to_le_bytes()),
            SetGrbit::SIZE_LV,
            SetInfo::default(),
        )
        .unwrap();
    });
    assert_eq!(lv_of(&mut t, 1).unwrap(), want[..100]);
    assert_eq!(
        t.long_value_stats().unwrap(),
        (0, 0),
        "100 bytes stay in the record"
    );
    // Zero length versus null.
    replace(s, &mut t, 1, |t| {
        t.set_column_with(lv, Some(&[]), SetGrbit::ZERO_LENGTH, SetInfo::default())
            .unwrap();
    });
    assert_eq!(lv_of(&mut t, 1), Some(Vec::new()));
    replace(s, &mut t, 1, |t| {
        t.set_column_with(lv, Some(&[]), SetGrbit::empty(), SetInfo::default())
            .unwrap();
    });
    assert_eq!(lv_of(&mut t, 1), None);
    // Overwrite and resize: the value ends with the data.
    replace(s, &mut t, 1, |t| {
        t.set_column_with(
            lv,
            Some(&data(3000, 6)),
            SetGrbit::empty(),
            SetInfo::default(),
        )
        .unwrap();
        t.set_column_with(
            lv,
            Some(b"xyz"),
            SetGrbit::OVERWRITE_LV | SetGrbit::SIZE_LV,
            info(1500),
        )
        .unwrap();
    });
    let mut cut = data(3000, 6);
    cut.truncate(1500);
    cut.extend_from_slice(b"xyz");
    assert!(lv_of(&mut t, 1).unwrap() == cut);
    // Errors.
    goto(&mut t, 1);
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column_with(lv, Some(&a), SetGrbit::empty(), SetInfo::default())
        .unwrap();
    assert_eq!(
        code(t.set_column_with(lv, Some(b"x"), SetGrbit::OVERWRITE_LV, info(3001))),
        -1502,
        "ibLongValue past the end"
    );
    let n = col(&t, "n");
    assert_eq!(
        code(t.set_column_with(n, Some(&[0; 4]), SetGrbit::APPEND_LV, SetInfo::default())),
        -900,
        "a long-value option on a Long column"
    );
    assert_eq!(
        code(t.set_column_with(
            lv,
            Some(b"x"),
            SetGrbit::APPEND_LV | SetGrbit::OVERWRITE_LV,
            SetInfo::default()
        )),
        -900
    );
    assert_eq!(
        code(t.set_column_with(
            lv,
            Some(&[0; 4]),
            SetGrbit::APPEND_LV | SetGrbit::SIZE_LV,
            SetInfo::default()
        )),
        -900
    );
    assert_eq!(
        code(t.set_column_with(lv, Some(&[1, 2, 3]), SetGrbit::SIZE_LV, SetInfo::default())),
        -1047
    );
    let small = col(&t, "small");
    t.set_column(small, Some(&[7; 4000])).unwrap();
    let e = t
        .set_column_with(
            small,
            Some(&[7; 1001]),
            SetGrbit::APPEND_LV,
            SetInfo::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), -1506);
    assert!(
        e.to_string().contains("5000") && e.to_string().contains("5001"),
        "{e}"
    );
    assert_eq!(code(t.set_column(small, Some(&[0; 5001]))), -1506);
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(
        code(t.retrieve_column_with(
            n,
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 1,
                ib_long_value: 1
            },
            4
        )),
        -1003,
        "ibLongValue on a Long column"
    );
    assert_eq!(
        t.retrieve_column(small).unwrap().unwrap(),
        vec![7; 4000],
        "separated"
    );
    assert_eq!(t.long_value_stats().unwrap().0, 2);
    check(s, f.db);
}

#[test]
fn replace_and_delete_free_the_chunks() {
    let f = fixture(&[("t", ColumnType::LongBinary)]);
    let s = &f.s;
    let mut t = s.open_table(f.db, "t").unwrap();
    let (lv, n) = (col(&t, "lv"), col(&t, "n"));
    for i in 0..3 {
        insert(&mut t, i, &data(20_000, i.unsigned_abs()));
    }
    let per = 20_000u64.div_ceil((PAGE - 200) as u64);
    let (lids, chunks) = t.long_value_stats().unwrap();
    assert_eq!(lids, 3);
    assert!(chunks >= 3 * per, "{chunks}");
    // Another column changes: the long value stays where it is.
    replace(s, &mut t, 0, |t| {
        t.set_column(n, Some(&5i32.to_le_bytes())).unwrap();
    });
    assert_eq!(t.long_value_stats().unwrap(), (lids, chunks));
    assert_eq!(lv_of(&mut t, 0).unwrap(), data(20_000, 0));
    // A new value replaces the old one's chunks.
    replace(s, &mut t, 0, |t| {
        t.set_column(lv, Some(&data(30_000, 9))).unwrap();
    });
    let (lids2, chunks2) = t.long_value_stats().unwrap();
    assert_eq!(lids2, 3);
    assert!(chunks2 > chunks, "{chunks2} > {chunks}");
    assert_eq!(lv_of(&mut t, 0).unwrap(), data(30_000, 9));
    // A short value, null, and deleting the record free theirs.
    replace(s, &mut t, 1, |t| t.set_column(lv, Some(b"short")).unwrap());
    assert_eq!(t.long_value_stats().unwrap().0, 2);
    replace(s, &mut t, 2, |t| t.set_column(lv, None).unwrap());
    assert_eq!(t.long_value_stats().unwrap().0, 1);
    goto(&mut t, 0);
    t.delete().unwrap();
    assert_eq!(t.long_value_stats().unwrap(), (0, 0));
    assert_eq!(lv_of(&mut t, 1).unwrap(), b"short");
    check(s, f.db);
}

#[test]
fn rollback_leaves_nothing_and_old_snapshots_read_old_values() {
    let f = fixture(&[("t", ColumnType::LongText)]);
    let s = &f.s;
    let mut t = s.open_table(f.db, "t").unwrap();
    // A transaction that writes long values and rolls back.
    s.begin_transaction().unwrap();
    insert(&mut t, 1, &data(50_000, 1));
    insert(&mut t, 2, &data(3000, 2));
    assert_eq!(t.long_value_stats().unwrap().0, 2, "its own changes");
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(t.long_value_stats().unwrap(), (0, 0));
    assert_eq!(code(t.move_to(Move::First)), -1603);
    // A value committed, read by an older snapshot while a newer transaction changes it.
    let old = data(50_000, 3);
    let new = data(70_000, 4);
    insert(&mut t, 1, &old);
    let reader = f.inst.begin_session().unwrap();
    let rdb = reader.open_database(DB).unwrap();
    let mut rt = reader.open_table(rdb, "t").unwrap();
    reader.begin_transaction().unwrap();
    assert_eq!(lv_of(&mut rt, 1).unwrap(), old);
    // An uncommitted change is not seen, and rolled back leaves the value as it was.
    s.begin_transaction().unwrap();
    replace_in(&mut t, 1, &data(20_000, 8));
    assert_eq!(lv_of(&mut t, 1).unwrap(), data(20_000, 8));
    assert_eq!(lv_of(&mut rt, 1).unwrap(), old);
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(lv_of(&mut t, 1).unwrap(), old);
    replace(s, &mut t, 1, |t| {
        t.set_column_with(
            col(t, "lv"),
            Some(&new[..10]),
            SetGrbit::empty(),
            SetInfo::default(),
        )
        .unwrap();
        t.set_column_with(
            col(t, "lv"),
            Some(&new[10..]),
            SetGrbit::APPEND_LV,
            SetInfo::default(),
        )
        .unwrap();
    });
    assert_eq!(lv_of(&mut t, 1).unwrap(), new);
    assert_eq!(
        lv_of(&mut rt, 1).unwrap(),
        old,
        "the snapshot keeps the old value"
    );
    let part = rt
        .retrieve_column_with(
            col(&rt, "lv"),
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 1,
                ib_long_value: 40_000,
            },
            5,
        )
        .unwrap()
        .unwrap();
    assert_eq!(part.data, old[40_000..40_005]);
    assert_eq!(part.actual_len, 10_000);
    assert_eq!(rt.long_value_stats().unwrap().0, 1);
    reader.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(lv_of(&mut rt, 1).unwrap(), new);
    // A nested level rolled back undoes its long values only.
    goto(&mut t, 1);
    s.begin_transaction().unwrap();
    insert(&mut t, 2, &data(9000, 5));
    s.begin_transaction().unwrap();
    replace_in(&mut t, 1, &data(9000, 6));
    s.rollback(RollbackGrbit::empty()).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(lv_of(&mut t, 1).unwrap(), new);
    assert_eq!(lv_of(&mut t, 2).unwrap(), data(9000, 5));
    assert_eq!(t.long_value_stats().unwrap().0, 2);
    check(s, f.db);
}

/// Replaces row `id`'s `lv` in the session's open transaction.
fn replace_in(t: &mut Table, id: i32, value: &[u8]) {
    goto(t, id);
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(col(t, "lv"), Some(value)).unwrap();
    t.update().unwrap();
}

#[test]
fn crash_recovery_keeps_committed_long_values_only() {
    let f = fixture(&[("t", ColumnType::LongBinary)]);
    let (s, db) = (&f.s, f.db);
    let mut t = s.open_table(db, "t").unwrap();
    insert(&mut t, 1, &data(30_000, 1));
    insert(&mut t, 2, &data(200_000, 2));
    insert(&mut t, 3, &data(4000, 3));
    // An uncommitted transaction: a new long value, a replaced one, a deleted one.
    let other = f.inst.begin_session().unwrap();
    let odb = other.open_database(DB).unwrap();
    let mut ot = other.open_table(odb, "t").unwrap();
    other.begin_transaction().unwrap();
    insert(&mut ot, 4, &data(60_000, 4));
    replace_in(&mut ot, 1, &data(40_000, 5));
    goto(&mut ot, 3);
    ot.delete().unwrap();
    // A durable commit afterwards flushes the log with the uncommitted changes in it.
    replace(s, &mut t, 2, |t| {
        t.set_column(col(t, "n"), Some(&1i32.to_le_bytes()))
            .unwrap();
    });
    let img = f.fs.crash(CrashModel::DropAll, 0);
    f.fs.set_power_cut(Some(0));
    drop((ot, other, t));
    drop(f);
    let inst = instance(&img);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    assert_eq!(lv_of(&mut t, 1).unwrap(), data(30_000, 1));
    assert_eq!(lv_of(&mut t, 2).unwrap(), data(200_000, 2));
    assert_eq!(lv_of(&mut t, 3).unwrap(), data(4000, 3));
    assert_eq!(code(t.seek(&[Some(&4i32.to_le_bytes())], Seek::Eq)), -1601);
    assert_eq!(t.long_value_stats().unwrap().0, 3);
    check(&s, db);
    // New long values after recovery get ids of their own.
    insert(&mut t, 4, &data(60_000, 6));
    replace(&s, &mut t, 3, |t| {
        t.set_column(col(t, "lv"), Some(&data(5000, 7))).unwrap();
    });
    assert_eq!(lv_of(&mut t, 4).unwrap(), data(60_000, 6));
    assert_eq!(lv_of(&mut t, 3).unwrap(), data(5000, 7));
    assert_eq!(lv_of(&mut t, 1).unwrap(), data(30_000, 1));
    assert_eq!(t.long_value_stats().unwrap().0, 4);
    check(&s, db);
}

#[test]
fn multi_valued_column_with_separated_values() {
    let f = fixture(&[("t", ColumnType::LongBinary)]);
    let s = &f.s;
    let mut t = s.open_table(f.db, "t").unwrap();
    let mv = col(&t, "mv");
    let vals = [data(5000, 1), data(10, 2), data(7000, 3)];
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(col(&t, "id"), Some(&1i32.to_le_bytes()))
        .unwrap();
    for v in &vals {
        t.set_column_itag(mv, Some(v), 0).unwrap();
    }
    t.update().unwrap();
    goto(&mut t, 1);
    assert_eq!(t.column_value_count(mv).unwrap(), 3);
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(t.retrieve_column_itag(mv, i + 1).unwrap().as_ref(), Some(v));
    }
    assert_eq!(t.long_value_stats().unwrap().0, 2);
    // Value 2 grows past the record's limit by appending; value 1 goes.
    let tail = data(3000, 4);
    replace(s, &mut t, 1, |t| {
        t.set_column_with(
            mv,
            Some(&tail),
            SetGrbit::APPEND_LV,
            SetInfo {
                itag_sequence: 2,
                ib_long_value: 0,
            },
        )
        .unwrap();
        t.set_column_itag(mv, None, 1).unwrap();
    });
    assert_eq!(t.column_value_count(mv).unwrap(), 2);
    assert_eq!(
        t.retrieve_column_itag(mv, 1).unwrap().unwrap(),
        [vals[1].clone(), tail].concat()
    );
    assert_eq!(t.retrieve_column_itag(mv, 2).unwrap().unwrap(), vals[2]);
    let r = t
        .retrieve_column_with(
            mv,
            RetrieveGrbit::empty(),
            RetInfo {
                itag_sequence: 2,
                ib_long_value: 6990,
            },
            100,
        )
        .unwrap()
        .unwrap();
    assert_eq!(r.data, vals[2][6990..]);
    assert_eq!(t.long_value_stats().unwrap().0, 2);
    check(s, f.db);
}

#[test]
fn many_medium_values_in_one_record_are_moved_out_of_it() {
    let f = fixture(&[("t", ColumnType::LongBinary)]);
    let mut t = f.s.open_table(f.db, "t").unwrap();
    let mv = col(&t, "mv");
    // Twenty 1000-byte values: each stays under the 1 KiB threshold, together they pass a
    // page; the longest move out until the record fits.
    let vals: Vec<Vec<u8>> = (0u32..20).map(|i| data(1000 - i as usize, i)).collect();
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(col(&t, "id"), Some(&1i32.to_le_bytes()))
        .unwrap();
    for v in &vals {
        t.set_column_itag(mv, Some(v), 0).unwrap();
    }
    t.update().unwrap();
    goto(&mut t, 1);
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(t.retrieve_column_itag(mv, i + 1).unwrap().as_ref(), Some(v));
    }
    let (lids, _) = t.long_value_stats().unwrap();
    assert!((1..20).contains(&lids), "{lids} values moved out");
    check(&f.s, f.db);
}

#[test]
fn secondary_index_over_a_long_text_column() {
    let f = fixture(&[]);
    let s = &f.s;
    let mut create = lv_table("docs", ColumnType::LongText);
    create.indexes.push(IndexCreate {
        name: "bydoc".into(),
        key: "+lv\0\0".into(),
        grbit: IndexGrbit::empty(),
        key_most: 0,
    });
    s.create_table(f.db, &create).unwrap();
    let mut t = s.open_table(f.db, "docs").unwrap();
    let doc = |first: &str, len: usize, seed: u32| {
        let mut v = first.as_bytes().to_vec();
        v.extend(data(len, seed));
        v
    };
    let (apple, banana) = (doc("apple ", 3000, 1), doc("banana ", 5000, 2));
    insert(&mut t, 1, &apple);
    insert(&mut t, 2, &banana);
    insert(&mut t, 3, b"cherry");
    let order = |t: &mut Table| {
        let mut ids = Vec::new();
        t.set_current_index(Some("bydoc")).unwrap();
        let mut on = t.move_to(Move::First).is_ok();
        while on {
            let id = t.retrieve_column(col(t, "id")).unwrap().unwrap();
            ids.push(i32::from_le_bytes(id.try_into().unwrap()));
            on = t.move_to(Move::Next).is_ok();
        }
        t.set_current_index(None).unwrap();
        ids
    };
    assert_eq!(order(&mut t), [1, 2, 3]);
    t.set_current_index(Some("bydoc")).unwrap();
    t.seek(&[Some(&banana)], Seek::Eq).unwrap();
    assert_eq!(
        t.retrieve_column(col(&t, "id")).unwrap().unwrap(),
        2i32.to_le_bytes()
    );
    t.set_current_index(None).unwrap();
    // The separated value's old key entry goes when it is replaced, and when it is deleted.
    replace(s, &mut t, 2, |t| {
        t.set_column(col(t, "lv"), Some(&doc("aardvark ", 4000, 3)))
            .unwrap();
    });
    assert_eq!(order(&mut t), [2, 1, 3]);
    goto(&mut t, 1);
    t.delete().unwrap();
    assert_eq!(order(&mut t), [2, 3]);
    // An index created over existing separated values.
    t.create_index(&IndexCreate {
        name: "bydoc2".into(),
        key: "-lv\0\0".into(),
        grbit: IndexGrbit::empty(),
        key_most: 0,
    })
    .unwrap();
    t.set_current_index(Some("bydoc2")).unwrap();
    t.move_to(Move::First).unwrap();
    assert_eq!(
        t.retrieve_column(col(&t, "id")).unwrap().unwrap(),
        3i32.to_le_bytes()
    );
    t.move_to(Move::Next).unwrap();
    assert_eq!(
        t.retrieve_column(col(&t, "id")).unwrap().unwrap(),
        2i32.to_le_bytes()
    );
    check(s, f.db);
}

/// Rows of the crash sweep's table: id → `lv` (`None`: null).
type Rows = std::collections::BTreeMap<i32, Option<Vec<u8>>>;

fn sweep_instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("long-values-crash")
        .system_path("/sys")
        .log_path("/log")
        .page_size(4096)
        .log_file_size_kib(128)
        .checkpoint_depth_bytes(64 * 1024)
        // No deferral while commits run: the checkpointer races them.
        .checkpoint_defer_bytes(0)
        .checkpoint_interval_ms(2)
        .version_cleanup_interval_ms(5)
        .file_system(fsd)
        .create()
        .unwrap()
}

fn read_rows(t: &mut Table) -> ese::Result<Rows> {
    let mut rows = Rows::new();
    let (id_c, lv_c) = (t.column_id("id")?, t.column_id("lv")?);
    let mut on = t.move_to(Move::First).is_ok();
    while on {
        let id = t.retrieve_column(id_c)?.unwrap_or_default();
        let id = i32::from_le_bytes(id.try_into().unwrap());
        rows.insert(id, t.retrieve_column(lv_c)?);
        on = t.move_to(Move::Next).is_ok();
    }
    Ok(rows)
}

/// Committed transactions of random long-value changes (sizes from 10 bytes to 40 KB, so
/// values in the record and separated ones of one to ten chunks: inserts, replaces, appends,
/// overwrites, size changes, deletes, some rolled back), each durable. Returns the state after
/// each commit that returned, the state of the commit in flight when an error (the power cut)
/// ended the run, and that error.
fn lv_workload(s: &Session, db: DbId) -> (Vec<Rows>, Option<Rows>, Option<ese::Error>) {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut states = vec![Rows::new()];
    let mut in_flight = None;
    let sizes = [10usize, 900, 2000, 5000, 12_000, 40_000];
    let r = (|| -> ese::Result<()> {
        let mut t = s.open_table(db, "t")?;
        let (id_c, lv_c) = (t.column_id("id")?, t.column_id("lv")?);
        for round in 0..40u32 {
            let mut mine = states.last().cloned().unwrap_or_default();
            s.begin_transaction()?;
            for k in 0..rng.u32(1..4) {
                let id = rng.i32(0..12);
                let seed = round * 10 + k;
                let len = sizes[rng.usize(..sizes.len())];
                match (mine.get(&id).cloned(), rng.u8(0..4)) {
                    (None, _) => {
                        let v = data(len, seed);
                        t.prepare_update(Prep::Insert)?;
                        t.set_column(id_c, Some(&id.to_le_bytes()))?;
                        t.set_column(lv_c, Some(&v))?;
                        t.update()?;
                        mine.insert(id, Some(v));
                    }
                    (Some(_), 0) => {
                        t.seek(&[Some(&id.to_le_bytes())], Seek::Eq)?;
                        t.delete()?;
                        mine.remove(&id);
                    }
                    (Some(old), op) => {
                        let mut v = old.unwrap_or_default();
                        let add = data(len, seed);
                        t.seek(&[Some(&id.to_le_bytes())], Seek::Eq)?;
                        t.prepare_update(Prep::Replace)?;
                        if op == 1 {
                            t.set_column_with(
                                lv_c,
                                Some(&add),
                                SetGrbit::APPEND_LV,
                                SetInfo::default(),
                            )?;
                            v.extend_from_slice(&add);
                        } else if op == 2 && !v.is_empty() {
                            let at = rng.usize(0..v.len());
                            let info = SetInfo {
                                itag_sequence: 1,
                                ib_long_value: at as u64,
                            };
                            t.set_column_with(lv_c, Some(&add), SetGrbit::OVERWRITE_LV, info)?;
                            if v.len() < at + add.len() {
                                v.resize(at + add.len(), 0);
                            }
                            v[at..at + add.len()].copy_from_slice(&add);
                        } else {
                            let n = rng.u32(0..20_000);
                            t.set_column_with(
                                lv_c,
                                Some(&n.to_le_bytes()),
                                SetGrbit::SIZE_LV,
                                SetInfo::default(),
                            )?;
                            v.resize(n as usize, 0);
                        }
                        t.update()?;
                        mine.insert(id, Some(v));
                    }
                }
            }
            if rng.u8(0..5) == 0 {
                s.rollback(RollbackGrbit::empty())?;
                continue;
            }
            if let Err(e) = s.commit_transaction(CommitGrbit::empty()) {
                in_flight = Some(mine);
                return Err(e);
            }
            states.push(mine);
        }
        Ok(())
    })();
    (states, in_flight, r.err())
}

/// The number of separated values `rows` should have in the long-value tree.
fn separated(rows: &Rows) -> u64 {
    rows.values()
        .filter(|v| v.as_ref().is_some_and(|v| v.len() > 1024))
        .count() as u64
}

#[test]
fn crash_at_many_points_keeps_whole_committed_long_values() {
    let base = SimFs::new();
    {
        let inst = sweep_instance(&base);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
        s.create_table(db, &lv_table("t", ColumnType::LongBinary))
            .unwrap();
        s.close_database(db).unwrap();
        drop(s);
        inst.term(TermGrbit::empty()).unwrap();
    }
    let base = base.crash(CrashModel::DropAll, 0);
    let run = |cut: Option<u64>| {
        let fs = base.crash(CrashModel::DropAll, 0);
        let inst = sweep_instance(&fs);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
        let db = s.open_database(DB).unwrap();
        let start = fs.op_count();
        if let Some(k) = cut {
            fs.set_power_cut(Some(start + k));
        }
        let (states, in_flight, error) = lv_workload(&s, db);
        if cut.is_none() {
            let mut t = s.open_table(db, "t").unwrap();
            assert!(
                read_rows(&mut t).unwrap() == *states.last().unwrap(),
                "model"
            );
        }
        let used = fs.op_count() - start;
        fs.set_power_cut(Some(0));
        drop(s);
        drop(inst);
        (fs, states, in_flight, used, error)
    };
    let (_, whole, _, total, error) = run(None);
    assert!(error.is_none(), "the workload failed: {error:?}");
    assert!(whole.len() > 25, "the workload commits");
    let step = (total / 40).max(1);
    let mut k = 0;
    while k < total {
        let (fs, states, in_flight, _, _) = run(Some(k));
        for model in [
            CrashModel::DropAll,
            CrashModel::RandomSubset,
            CrashModel::TornSectors,
        ] {
            let what = format!("cut {k}/{total} {model:?}");
            let img = fs.crash(model, k);
            let inst = sweep_instance(&img);
            inst.init()
                .unwrap_or_else(|e| panic!("{what}: init failed: {e}"));
            let s = inst.begin_session().unwrap();
            s.attach_database(DB, AttachDatabaseGrbit::empty())
                .unwrap_or_else(|e| panic!("{what}: attach failed: {e}"));
            let db = s.open_database(DB).unwrap();
            let mut t = s.open_table(db, "t").unwrap();
            let got = read_rows(&mut t).unwrap_or_else(|e| panic!("{what}: read: {e}"));
            let last = states.last().unwrap();
            assert!(
                got == *last || in_flight.as_ref() == Some(&got),
                "{what}: the recovered rows are not the last commit's ({} commits)",
                states.len()
            );
            assert_eq!(
                t.long_value_stats().unwrap().0,
                separated(&got),
                "{what}: long values without a record, or records without their value"
            );
            s.check_database(db)
                .unwrap_or_else(|e| panic!("{what}: integrity: {e}"));
        }
        k += step;
    }
}

#[test]
fn appends_to_a_large_value_write_only_the_chunks_they_touch() {
    // The default version store budget (2 MiB): a rewrite of a 3 MiB value would keep more
    // before-images than that; an append versions one chunk.
    let fs = SimFs::new();
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let inst = Instance::builder("long-values-budget")
        .system_path("/sys")
        .log_path("/log")
        .file_system(fsd)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &lv_table("t", ColumnType::LongBinary))
        .unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let lv = col(&t, "lv");
    let mut want = data(3 << 20, 1);
    insert(&mut t, 1, &want);
    let (lids, chunks) = t.long_value_stats().unwrap();
    for round in 0..5 {
        let more = data(5000, 2 + round);
        replace(&s, &mut t, 1, |t| {
            t.set_column_with(lv, Some(&more), SetGrbit::APPEND_LV, SetInfo::default())
                .unwrap();
        });
        want.extend_from_slice(&more);
    }
    let info = SetInfo {
        itag_sequence: 1,
        ib_long_value: 1 << 20,
    };
    replace(&s, &mut t, 1, |t| {
        t.set_column_with(lv, Some(b"in the middle"), SetGrbit::OVERWRITE_LV, info)
            .unwrap();
    });
    want[1 << 20..(1 << 20) + 13].copy_from_slice(b"in the middle");
    assert!(lv_of(&mut t, 1).unwrap() == want);
    let (lids2, chunks2) = t.long_value_stats().unwrap();
    assert_eq!(lids2, lids, "the value kept its place");
    assert!(
        chunks2 > chunks && chunks2 <= chunks + 5,
        "{chunks} -> {chunks2}"
    );
    // Replacing the whole value at once needs the before-images of every chunk.
    let e = (|| {
        goto(&mut t, 1);
        s.begin_transaction()?;
        t.prepare_update(Prep::Replace)?;
        t.set_column(lv, Some(&data(3 << 20, 9)))?;
        t.update()
    })()
    .unwrap_err();
    assert_eq!(e.code(), -1069, "{e}");
    t.prepare_update(Prep::Cancel).unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert!(lv_of(&mut t, 1).unwrap() == want);
    check(&s, db);
}
