//! Readers racing a writer on one table: each reader's transaction sees one snapshot, whatever
//! the writer does meanwhile. A reader skips the version store for a record whose key has no
//! versions (the per-key slot counts of `VersionStore::may_have_key_versions`), and for every
//! record of a tree that has none; these tests make that decision wrong in every way it could
//! be: the writer changes records in place (the B+tree holds the newest version, committed or
//! not), rolls back some of its transactions, inserts and deletes, while version cleanup runs
//! in the background. A reader that skipped the store for a key it should have looked up
//! would read an uncommitted value (caught: no reader may ever see a value of a transaction
//! that rolled back) or a value committed after its snapshot (caught: every reader reads its
//! keys and a range twice in one transaction and must find the same records both times).
//! The race lasts 1.5 s; `ESE_RACE_SECS=N` makes it last N seconds (a longer campaign).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, IndexCreate, IndexGrbit, Instance,
    Move, Prep, RetrieveColumn, RollbackGrbit, Seek, Session, Table, TableCreate,
};
use ese_core::fs::{FileSystem, SimFs};

const DB: &str = "/data/race.edb";
const TABLE: &str = "t";
/// Rows loaded before the race; the writer also inserts ids from `ROWS` up.
const ROWS: i32 = 3_000;
const READERS: usize = 3;
/// How long the race runs: `ESE_RACE_SECS` seconds, 1.5 s by default.
fn race_time() -> Duration {
    std::env::var("ESE_RACE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_millis(1_500), Duration::from_secs_f64)
}

fn table() -> TableCreate {
    TableCreate {
        name: TABLE.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("v", ColumnType::Binary),
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

/// A value: whether its transaction committed (`C`) or rolled back (`U`), the transaction's
/// number, the row's id.
fn value(committed: bool, txn: u32, id: i32) -> Vec<u8> {
    let mut v = vec![if committed { b'C' } else { b'U' }];
    v.extend_from_slice(&txn.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v
}

fn instance() -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let inst = Instance::builder("readers-beside-writer")
        .system_path("/sys")
        .log_path("/log")
        .file_system(fsd)
        .version_cleanup_interval_ms(5)
        .create()
        .unwrap();
    inst.init().unwrap();
    inst
}

fn cols(t: &Table) -> (u32, u32) {
    (t.column_id("id").unwrap(), t.column_id("v").unwrap())
}

/// Sets row `id` to `v` through `t`: a replace when `replace`, else an insert.
fn put(t: &mut Table, id: i32, v: &[u8], replace: bool) {
    let (idc, vc) = cols(t);
    if replace {
        t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
        t.prepare_update(Prep::Replace).unwrap();
    } else {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(idc, Some(&id.to_le_bytes())).unwrap();
    }
    t.set_column(vc, Some(v)).unwrap();
    t.update().unwrap();
}

/// The current record's (id, v).
fn current(t: &Table) -> (i32, Vec<u8>) {
    let (idc, vc) = cols(t);
    let mut c = [RetrieveColumn::new(idc), RetrieveColumn::new(vc)];
    t.retrieve_columns(&mut c).unwrap();
    let id = i32::from_le_bytes(c[0].value().unwrap().try_into().unwrap());
    (id, c[1].value().unwrap().to_vec())
}

/// What a reader saw: the value of each key it looked up (or none), the (id, value) of each
/// record of its range on the primary index, and of each record of its range on the index of
/// the values.
type Seen = (
    Vec<Option<Vec<u8>>>,
    Vec<(i32, Vec<u8>)>,
    Vec<(i32, Vec<u8>)>,
);

/// Up to 10 records from where cursor `t` is, on its current index.
fn range_from(t: &mut Table) -> Vec<(i32, Vec<u8>)> {
    let mut range = Vec::new();
    for _ in 0..10 {
        range.push(current(t));
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    range
}

/// What one reader's transaction sees: each of `ids` (its value, or none), the records of a
/// 10-step range from `from` on the primary index and from the value `[b'C', by_value]` on
/// the index of the values.
fn look(t: &mut Table, ids: &[i32], from: i32, by_value: [u8; 4]) -> Seen {
    let vc = cols(t).1;
    let points = ids
        .iter()
        .map(|id| match t.seek(&[Some(&id.to_le_bytes())], Seek::Eq) {
            Ok(()) => Some(t.retrieve_column(vc).unwrap().unwrap()),
            Err(e) => {
                assert_eq!(e.code(), -1601, "seek of {id}: {e}");
                None
            }
        })
        .collect();
    let range = match t.seek(&[Some(&from.to_le_bytes())], Seek::Ge) {
        Ok(()) => range_from(t),
        Err(_) => Vec::new(),
    };
    t.set_current_index(Some("byv")).unwrap();
    let start = [&[b'C'][..], &by_value].concat();
    let by_v = match t.seek(&[Some(&start)], Seek::Ge) {
        Ok(()) => range_from(t),
        Err(_) => Vec::new(),
    };
    t.set_current_index(None).unwrap();
    (points, range, by_v)
}

/// One writer and `READERS` readers for [`race_time`]; the writer's transactions change 16 records
/// each (replaces of loaded rows, inserts of new ones, deletes), yielding between changes so
/// that readers run while they are open, and one in three rolls back. Returns the snapshots
/// the readers checked and the writer's transactions.
fn race(s: &Session, db: ese::DbId) -> (u64, u64) {
    let inst = s.instance();
    let checked = AtomicU64::new(0);
    let by_value_read = AtomicU64::new(0);
    let deadline = Instant::now() + race_time();
    let txns = std::thread::scope(|scope| {
        for r in 0..READERS {
            let inst = &inst;
            let checked = &checked;
            let by_value_read = &by_value_read;
            scope.spawn(move || {
                let s = inst.begin_session().unwrap();
                s.open_database(DB).unwrap();
                let mut t = s.open_table(db, TABLE).unwrap();
                let mut rng = fastrand::Rng::with_seed(r as u64 + 1);
                while Instant::now() < deadline {
                    let ids: Vec<i32> = (0..32).map(|_| rng.i32(0..ROWS + 400)).collect();
                    let from = rng.i32(0..ROWS);
                    let by_value = rng.u32(..).to_le_bytes();
                    s.begin_transaction().unwrap();
                    let first = look(&mut t, &ids, from, by_value);
                    std::thread::yield_now();
                    let second = look(&mut t, &ids, from, by_value);
                    s.commit_transaction(CommitGrbit::empty()).unwrap();
                    for v in first
                        .0
                        .iter()
                        .flatten()
                        .chain(first.1.iter().chain(&first.2).map(|(_, v)| v))
                    {
                        assert_eq!(v[0], b'C', "a rolled-back value was read: {v:?}");
                    }
                    // One snapshot, one answer: the first difference, if any.
                    for (i, (a, b)) in first.0.iter().zip(&second.0).enumerate() {
                        assert_eq!(a, b, "key {} read twice in one snapshot", ids[i]);
                    }
                    assert_eq!(first.1, second.1, "range from {from} read twice");
                    assert_eq!(first.2, second.2, "range of values read twice");
                    checked.fetch_add(1, Ordering::Relaxed);
                    by_value_read.fetch_add(first.2.len() as u64, Ordering::Relaxed);
                }
                s.end(ese::EndSessionGrbit::empty()).unwrap();
            });
        }
        let mut t = s.open_table(db, TABLE).unwrap();
        let mut rng = fastrand::Rng::with_seed(99);
        // Rows the writer inserted and has not deleted, beyond the loaded ones.
        let mut extra: BTreeSet<i32> = BTreeSet::new();
        let mut txn = 0u32;
        while Instant::now() < deadline {
            txn += 1;
            let commit = !txn.is_multiple_of(3);
            s.begin_transaction().unwrap();
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for _ in 0..16 {
                match rng.u8(0..8) {
                    0 => {
                        let id = ROWS + rng.i32(0..400);
                        if !extra.contains(&id) && !added.contains(&id) {
                            put(&mut t, id, &value(commit, txn, id), false);
                            added.push(id);
                        }
                    }
                    1 => {
                        if let Some(&id) = extra.iter().nth(rng.usize(0..extra.len().max(1)))
                            && !removed.contains(&id)
                        {
                            t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
                            t.delete().unwrap();
                            removed.push(id);
                        }
                    }
                    _ => {
                        let id = rng.i32(0..ROWS);
                        put(&mut t, id, &value(commit, txn, id), true);
                    }
                }
                std::thread::yield_now();
            }
            if commit {
                s.commit_transaction(CommitGrbit::empty()).unwrap();
                for id in added {
                    extra.insert(id);
                }
                for id in removed {
                    extra.remove(&id);
                }
            } else {
                s.rollback(RollbackGrbit::empty()).unwrap();
            }
        }
        u64::from(txn)
    });
    let (checked, by_value_read) = (checked.into_inner(), by_value_read.into_inner());
    assert!(
        by_value_read >= checked,
        "{by_value_read} records read on the index of the values in {checked} snapshots"
    );
    (checked, txns)
}

#[test]
fn each_reader_sees_one_snapshot_while_a_writer_changes_the_table() {
    let inst = instance();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &table()).unwrap();
    {
        let mut t = s.open_table(db, TABLE).unwrap();
        s.begin_transaction().unwrap();
        for id in 0..ROWS {
            put(&mut t, id, &value(true, 0, id), false);
        }
        s.commit_transaction(CommitGrbit::empty()).unwrap();
    }
    let (checked, txns) = race(&s, db);
    assert!(checked >= READERS as u64, "{checked} snapshots checked");
    assert!(txns >= 3, "{txns} writer transactions");
    // Afterwards every loaded row holds a committed value of its own id.
    let mut t = s.open_table(db, TABLE).unwrap();
    let vc = cols(&t).1;
    for id in 0..ROWS {
        t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
        let v = t.retrieve_column(vc).unwrap().unwrap();
        assert_eq!((v[0], &v[5..]), (b'C', &id.to_le_bytes()[..]), "row {id}");
    }
}
