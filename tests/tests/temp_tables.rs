//! Temporary tables (JetOpenTempTable) through the public API: sort order of key columns
//! (ascending, descending, nulls), unique, indexed, updatable and forward-only behaviour,
//! closing by end session; and a large sort that spills to the temporary database with a
//! small cache and still returns every row in order (`ESE_TEMP_ROWS`, default 100,000; the
//! 1,000,000-row run is meant for `--release`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{code, running_instance};
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, Instance, MakeKeyGrbit, Move, Prep, Seek, SeekResult,
    TempTable, TempTableGrbit,
};

fn columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new("k", ColumnType::Long).grbit(ColumnGrbit::TT_KEY),
        ColumnDef::new("name", ColumnType::Text)
            .grbit(ColumnGrbit::TT_KEY | ColumnGrbit::TT_DESCENDING),
        ColumnDef::new("payload", ColumnType::Binary),
    ]
}

fn insert(t: &mut TempTable, k: Option<i32>, name: &str, payload: &[u8]) -> ese::Result<()> {
    let ids = t.column_ids().to_vec();
    t.prepare_update(Prep::Insert)?;
    t.set_column(ids[0], k.map(i32::to_le_bytes).as_ref().map(|b| &b[..]))?;
    t.set_column(ids[1], Some(name.as_bytes()))?;
    t.set_column(ids[2], Some(payload))?;
    let r = t.update();
    if r.is_err() {
        t.prepare_update(Prep::Cancel)?;
    }
    r
}

fn rows(t: &mut TempTable) -> Vec<(Option<i32>, String)> {
    let ids = t.column_ids().to_vec();
    let mut out = Vec::new();
    if t.move_to(Move::First).is_err() {
        return out;
    }
    loop {
        let k = t
            .retrieve_column(ids[0])
            .unwrap()
            .map(|v| i32::from_le_bytes(v.try_into().unwrap()));
        let n = String::from_utf8(t.retrieve_column(ids[1]).unwrap().unwrap()).unwrap();
        out.push((k, n));
        if t.move_to(Move::Next).is_err() {
            return out;
        }
    }
}

#[test]
fn rows_come_back_sorted_by_the_key_columns() {
    let (inst, _dir) = running_instance("temp-sort");
    let s = inst.begin_session().unwrap();
    let mut t = s
        .open_temp_table(&columns(), TempTableGrbit::SCROLLABLE)
        .unwrap();
    for (k, n) in [
        (Some(2), "b"),
        (Some(1), "a"),
        (None, "x"),
        (Some(2), "C"),
        (Some(1), "a"),
        (Some(-5), "q"),
    ] {
        insert(&mut t, k, n, b"p").unwrap();
    }
    assert_eq!(
        rows(&mut t),
        [
            (None, "x".to_owned()),
            (Some(-5), "q".to_owned()),
            (Some(1), "a".to_owned()),
            (Some(1), "a".to_owned()),
            (Some(2), "C".to_owned()),
            (Some(2), "b".to_owned()),
        ]
    );
    // Backwards.
    t.move_to(Move::Last).unwrap();
    t.move_to(Move::Previous).unwrap();
    let ids = t.column_ids().to_vec();
    assert_eq!(t.retrieve_column(ids[1]).unwrap().unwrap(), b"C");
    assert!(!t.is_materialized().unwrap());
    // Not indexed, not updatable.
    t.make_key(Some(&1i32.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
        .unwrap();
    assert_eq!(code(t.seek(Seek::Eq)), -1702);
    assert_eq!(code(t.delete()), -1702);
    assert_eq!(code(t.prepare_update(Prep::Replace)), -1702);
    t.close();

    // Nulls high; descending first key.
    let cols = vec![
        ColumnDef::new("k", ColumnType::Long)
            .grbit(ColumnGrbit::TT_KEY | ColumnGrbit::TT_DESCENDING),
        ColumnDef::new("name", ColumnType::Text),
        ColumnDef::new("payload", ColumnType::Binary),
    ];
    let mut t = s
        .open_temp_table(&cols, TempTableGrbit::SORT_NULLS_HIGH)
        .unwrap();
    for k in [Some(1), None, Some(3), Some(2)] {
        insert(&mut t, k, "n", b"").unwrap();
    }
    let ks: Vec<Option<i32>> = rows(&mut t).into_iter().map(|r| r.0).collect();
    assert_eq!(ks, [Some(3), Some(2), Some(1), None]);
}

#[test]
fn unique_indexed_updatable_and_forward_only() {
    let (inst, _dir) = running_instance("temp-flags");
    let s = inst.begin_session().unwrap();
    let g = TempTableGrbit::UNIQUE | TempTableGrbit::INDEXED | TempTableGrbit::UPDATABLE;
    let mut t = s.open_temp_table(&columns(), g).unwrap();
    let ids = t.column_ids().to_vec();
    for k in (0..50).rev() {
        insert(&mut t, Some(k), "n", &[u8::try_from(k).unwrap()]).unwrap();
    }
    // Case-insensitive text: "N" is the same key.
    assert_eq!(code(insert(&mut t, Some(7), "N", b"dup")), -1605);
    insert(&mut t, Some(7), "m", b"other").unwrap();
    t.make_key(Some(&7i32.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
        .unwrap();
    assert_eq!(t.seek(Seek::Eq).unwrap(), SeekResult::Equal);
    assert_eq!(t.retrieve_column(ids[1]).unwrap().unwrap(), b"n"); // descending name
    t.make_key(Some(&7i32.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
        .unwrap();
    t.make_key(Some(b"zz"), MakeKeyGrbit::empty()).unwrap();
    assert_eq!(t.seek(Seek::Ge).unwrap(), SeekResult::NotEqual);
    assert_eq!(t.retrieve_column(ids[1]).unwrap().unwrap(), b"n");
    t.make_key(
        Some(&7i32.to_le_bytes()),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_END_LIMIT,
    )
    .unwrap();
    t.seek(Seek::Gt).unwrap();
    assert_eq!(
        t.retrieve_column(ids[0]).unwrap().unwrap(),
        8i32.to_le_bytes()
    );
    t.make_key(Some(&100i32.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
        .unwrap();
    assert_eq!(code(t.seek(Seek::Ge)), -1601);
    assert_eq!(code(t.seek(Seek::Ge)), -1608);
    // Replace a non-key column, delete a row.
    t.make_key(Some(&3i32.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
        .unwrap();
    t.seek(Seek::Eq).unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(ids[2], Some(b"changed")).unwrap();
    t.update().unwrap();
    assert_eq!(t.retrieve_column(ids[2]).unwrap().unwrap(), b"changed");
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(ids[0], Some(&99i32.to_le_bytes())).unwrap();
    assert_eq!(code(t.update()), -1604);
    t.prepare_update(Prep::Cancel).unwrap();
    t.delete().unwrap();
    t.move_to(Move::Next).unwrap();
    assert_eq!(
        t.retrieve_column(ids[0]).unwrap().unwrap(),
        4i32.to_le_bytes()
    );
    assert_eq!(rows(&mut t).len(), 50);

    let mut f = s
        .open_temp_table(&columns(), TempTableGrbit::FORWARD_ONLY)
        .unwrap();
    insert(&mut f, Some(1), "a", b"").unwrap();
    insert(&mut f, Some(0), "a", b"").unwrap();
    f.move_to(Move::First).unwrap();
    f.move_to(Move::Next).unwrap();
    assert_eq!(code(f.move_to(Move::Previous)), -1702);
    assert_eq!(code(f.move_to(Move::Last)), -1702);
    assert_eq!(
        code(s.open_temp_table(
            &columns(),
            TempTableGrbit::FORWARD_ONLY | TempTableGrbit::SCROLLABLE
        )),
        -900
    );
}

#[test]
fn end_session_closes_temp_tables_and_deletes_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("temp-end")
        .system_path(dir.path())
        .log_path(dir.path())
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let mut t = s
        .open_temp_table(&columns(), TempTableGrbit::FORCE_MATERIALIZATION)
        .unwrap();
    insert(&mut t, Some(1), "a", b"x").unwrap();
    assert!(t.is_materialized().unwrap());
    let path = t.temp_database_path().unwrap().unwrap();
    assert!(path.exists());
    assert_eq!(path.parent(), Some(dir.path()));
    s.end(ese::EndSessionGrbit::empty()).unwrap();
    assert!(!path.exists());
    assert_eq!(code(t.move_to(Move::First)), -1104);
    drop(t);
    // Dropping a table closes it too.
    let s = inst.begin_session().unwrap();
    let t = s
        .open_temp_table(&columns(), TempTableGrbit::FORCE_MATERIALIZATION)
        .unwrap();
    let path = t.temp_database_path().unwrap().unwrap();
    drop(t);
    assert!(!path.exists());
}

#[test]
fn large_sort_spills_to_disk_and_returns_rows_in_order() {
    let n: usize = std::env::var("ESE_TEMP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    // The smallest cache the instance accepts (64 pages): sorts keep a quarter in memory.
    let inst = Instance::builder("temp-spill")
        .system_path(dir.path())
        .log_path(dir.path())
        .cache_size_max_bytes(64 * 8192)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let cols = vec![
        ColumnDef::new("k", ColumnType::UnsignedLongLong).grbit(ColumnGrbit::TT_KEY),
        ColumnDef::new("seq", ColumnType::Long),
    ];
    let mut t = s
        .open_temp_table(&cols, TempTableGrbit::SCROLLABLE)
        .unwrap();
    let ids = t.column_ids().to_vec();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut keys = Vec::with_capacity(n);
    let started = std::time::Instant::now();
    for i in 0..n {
        let k = rng.u64(..u64::MAX / 2);
        keys.push((k, i32::try_from(i).unwrap()));
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(ids[0], Some(&k.to_le_bytes())).unwrap();
        t.set_column(ids[1], Some(&i32::try_from(i).unwrap().to_le_bytes()))
            .unwrap();
        t.update().unwrap();
    }
    let inserted = started.elapsed();
    assert!(t.is_materialized().unwrap(), "the sort stayed in memory");
    let path = t.temp_database_path().unwrap().unwrap();
    assert!(path.exists());
    keys.sort_unstable();
    let mut got = 0usize;
    t.move_to(Move::First).unwrap();
    loop {
        let k = u64::from_le_bytes(
            t.retrieve_column(ids[0])
                .unwrap()
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let i = i32::from_le_bytes(
            t.retrieve_column(ids[1])
                .unwrap()
                .unwrap()
                .try_into()
                .unwrap(),
        );
        assert_eq!((k, i), keys[got], "row {got}");
        got += 1;
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    assert_eq!(got, n);
    let total = started.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    t.close();
    assert!(!path.exists());
    eprintln!(
        "temp sort of {n} rows: insert {:.2} s, total {:.2} s, temporary database {} MiB",
        inserted.as_secs_f64(),
        total.as_secs_f64(),
        size >> 20
    );
}

/// Init removes the temporary databases a killed process left in the system path (nobody
/// holds their lock), and keeps one another process still uses (its lock is held) and files
/// that are not temporary databases.
#[test]
fn init_removes_temporary_databases_left_by_a_killed_process() {
    use ese_core::fs::{FileSystem, Lock, OpenOptions, OsFs};
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("tmp-4000001-0.edb");
    let in_use = dir.path().join("tmp-4000002-3.edb");
    let others = [dir.path().join("tmp-x-1.edb"), dir.path().join("data.edb")];
    for p in [&stale, &in_use].into_iter().chain(&others) {
        std::fs::write(p, vec![0u8; 8192]).unwrap();
    }
    let fs = OsFs::new();
    let held = fs
        .open(&in_use, OpenOptions::read_write().lock(Lock::Exclusive))
        .unwrap();
    let inst = ese::Instance::builder("stale-temp")
        .system_path(dir.path())
        .log_path(dir.path().join("logs"))
        .create()
        .unwrap();
    inst.init().unwrap();
    assert!(!stale.exists(), "the unlocked leftover is removed");
    assert!(in_use.exists(), "a temp database in use stays");
    for p in &others {
        assert!(p.exists(), "{} is not a temp database", p.display());
    }
    drop(held);
    inst.term(ese::TermGrbit::empty()).unwrap();
}
