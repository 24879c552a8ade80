//! Columns the engine maintains: auto-increment values (assigned when an insert is prepared,
//! unique across sessions, never handed out twice, above every committed value after crash
//! recovery), version columns (bumped on every replace), escrow updates (JetEscrowUpdate:
//! concurrent deltas never conflict, readers see committed deltas by snapshot, rollback and
//! crash recovery keep exactly the committed ones), delete-on-zero, and ESE's errors for each.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit,
    DbId, ErrorKind, IndexCreate, IndexGrbit, Instance, Move, Prep, RollbackGrbit, Seek, Session,
    Table, TableCreate, TermGrbit,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

mod common;

use common::{code, running_instance};

/// `id` auto-increment (Long, primary key), `ver` version, `n` LongLong escrow (default 0),
/// `m` Long escrow (default 0), `name` Text.
fn special_table(name: &str) -> TableCreate {
    TableCreate {
        name: name.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long).grbit(ColumnGrbit::AUTOINCREMENT),
            ColumnDef::new("ver", ColumnType::Long).grbit(ColumnGrbit::VERSION),
            ColumnDef::new("n", ColumnType::LongLong)
                .grbit(ColumnGrbit::ESCROW_UPDATE)
                .default_value(&0i64.to_le_bytes()),
            ColumnDef::new("m", ColumnType::Long)
                .grbit(ColumnGrbit::ESCROW_UPDATE)
                .default_value(&0i32.to_le_bytes()),
            ColumnDef::new("name", ColumnType::Text),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

fn i32_of(v: &[u8]) -> i32 {
    i32::from_le_bytes(v.try_into().unwrap())
}

fn i64_of(v: &[u8]) -> i64 {
    i64::from_le_bytes(v.try_into().unwrap())
}

fn col(t: &Table, name: &str) -> u32 {
    t.column_id(name).unwrap()
}

/// Inserts a record, returning the auto-increment value read from the copy buffer before
/// the update.
fn insert(t: &mut Table, name: &str) -> ese::Result<i32> {
    t.prepare_update(Prep::Insert)?;
    let id = i32_of(
        &t.retrieve_column(col(t, "id"))?
            .expect("assigned at prepare"),
    );
    t.set_column(col(t, "name"), Some(name.as_bytes()))?;
    t.update()?;
    Ok(id)
}

fn seek_id(t: &mut Table, id: i32) -> ese::Result<()> {
    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq)
}

fn all_ids(t: &mut Table) -> Vec<i32> {
    let mut ids = Vec::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        ids.push(i32_of(&t.retrieve_column(col(t, "id")).unwrap().unwrap()));
        r = t.move_to(Move::Next);
    }
    assert_eq!(r.unwrap_err().kind(), ErrorKind::NoCurrentRecord);
    ids
}

#[test]
fn autoincrement_is_unique_across_sessions_and_never_reused_after_rollback() {
    let (inst, dir) = running_instance("autoinc");
    let path = dir.path().join("a.edb");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let start = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let (inst, path, start) = (inst.clone(), path.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let s = inst.begin_session().unwrap();
                let db = s.open_database(&path).unwrap();
                let mut t = s.open_table(db, "t").unwrap();
                let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
                start.wait();
                for i in 0..40 {
                    s.begin_transaction().unwrap();
                    let ids: Vec<i32> = (0..5)
                        .map(|k| insert(&mut t, &format!("w{w} t{i} k{k}")).unwrap())
                        .collect();
                    if i % 3 == 2 {
                        s.rollback(RollbackGrbit::empty()).unwrap();
                        rolled_back.extend(ids);
                    } else {
                        s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
                        committed.extend(ids);
                    }
                }
                (committed, rolled_back)
            })
        })
        .collect();
    let (mut committed, mut handed_out) = (BTreeSet::new(), 0usize);
    let mut everything = BTreeSet::new();
    for h in handles {
        let (c, r) = h.join().unwrap();
        handed_out += c.len() + r.len();
        everything.extend(c.iter().copied().chain(r.iter().copied()));
        committed.extend(c);
    }
    // Every value handed out, committed or rolled back, is distinct.
    assert_eq!(everything.len(), handed_out);
    assert_eq!(handed_out, 4 * 40 * 5);
    let mut t = s.open_table(db, "t").unwrap();
    let ids: BTreeSet<i32> = all_ids(&mut t).into_iter().collect();
    assert_eq!(
        ids, committed,
        "exactly the committed values are in the table"
    );
    // A rolled-back value is never handed out again.
    let next = insert(&mut t, "after").unwrap();
    assert!(next > *everything.last().unwrap(), "{next} reuses a value");
    // The values start at 1.
    assert_eq!(*everything.first().unwrap(), 1);
}

#[test]
fn autoincrement_64_bit_and_one_per_table() {
    let (inst, dir) = running_instance("autoinc64");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("a.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    let mut def = TableCreate {
        name: "c".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Currency).grbit(ColumnGrbit::AUTOINCREMENT),
            ColumnDef::new("v", ColumnType::Long),
        ],
        indexes: vec![],
    };
    s.create_table(db, &def).unwrap();
    let mut t = s.open_table(db, "c").unwrap();
    let id = t.column_id("id").unwrap();
    for want in 1i64..=3 {
        t.prepare_update(Prep::Insert).unwrap();
        let v = t.retrieve_column(id).unwrap().unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(i64_of(&v), want);
        t.update().unwrap();
        assert_eq!(i64_of(&t.retrieve_column(id).unwrap().unwrap()), want);
    }
    // After term and init the counter is derived again from the table (no primary index:
    // a scan of every record); the value of the cancelled insert (4) is handed out again, as
    // the counter is not persisted (docs/design.md).
    t.prepare_update(Prep::Insert).unwrap();
    t.prepare_update(Prep::Cancel).unwrap();
    drop(t);
    let path = dir.path().join("a.edb");
    s.close_database(db).unwrap();
    inst.term(TermGrbit::empty()).unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(&path, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&path).unwrap();
    let mut t = s.open_table(db, "c").unwrap();
    t.prepare_update(Prep::Insert).unwrap();
    assert_eq!(i64_of(&t.retrieve_column(id).unwrap().unwrap()), 4);
    def.name = "two".into();
    def.columns[1] = ColumnDef::new("v", ColumnType::LongLong).grbit(ColumnGrbit::AUTOINCREMENT);
    assert_eq!(code(s.create_table(db, &def)), -1510);
}

#[test]
fn version_column_counts_replaces() {
    let (inst, dir) = running_instance("version");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("v.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (ver, name) = (col(&t, "ver"), col(&t, "name"));
    let id = insert(&mut t, "a").unwrap();
    assert_eq!(i32_of(&t.retrieve_column(ver).unwrap().unwrap()), 0);
    for n in 1..=3 {
        s.begin_transaction().unwrap();
        t.prepare_update(Prep::Replace).unwrap();
        t.set_column(name, Some(format!("a{n}").as_bytes()))
            .unwrap();
        // The version is the user's to read, not to set, on replace.
        assert_eq!(code(t.set_column(ver, Some(&7i32.to_le_bytes()))), -1511);
        t.update().unwrap();
        s.commit_transaction(CommitGrbit::empty()).unwrap();
        assert_eq!(i32_of(&t.retrieve_column(ver).unwrap().unwrap()), n);
    }
    // A rolled-back replace leaves the version as it was.
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::ReplaceNoLock).unwrap();
    t.update().unwrap();
    assert_eq!(i32_of(&t.retrieve_column(ver).unwrap().unwrap()), 4);
    s.rollback(RollbackGrbit::empty()).unwrap();
    seek_id(&mut t, id).unwrap();
    assert_eq!(i32_of(&t.retrieve_column(ver).unwrap().unwrap()), 3);
    // ESE lets an insert set the version's starting value.
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(ver, Some(&i32::MAX.to_le_bytes())).unwrap();
    t.update().unwrap();
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(
        i32_of(&t.retrieve_column(ver).unwrap().unwrap()),
        i32::MIN,
        "the version wraps"
    );
}

#[test]
fn engine_columns_cannot_be_set_where_ese_refuses() {
    let (inst, dir) = running_instance("setrules");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("s.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (id, n, m) = (col(&t, "id"), col(&t, "n"), col(&t, "m"));
    t.prepare_update(Prep::Insert).unwrap();
    assert_eq!(code(t.set_column(id, Some(&5i32.to_le_bytes()))), -1511);
    // An escrow column takes a starting value at insert.
    t.set_column(n, Some(&10i64.to_le_bytes())).unwrap();
    t.update().unwrap();
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 10);
    assert_eq!(i32_of(&t.retrieve_column(m).unwrap().unwrap()), 0);
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    assert_eq!(code(t.set_column(id, Some(&5i32.to_le_bytes()))), -1511);
    assert_eq!(code(t.set_column(n, Some(&1i64.to_le_bytes()))), -1511);
    assert_eq!(code(t.set_column(m, None)), -1511);
    t.prepare_update(Prep::Cancel).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

#[test]
fn escrow_update_errors_follow_ese() {
    let (inst, dir) = running_instance("escrowerr");
    let path = dir.path().join("e.edb");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (ver, n, m, name) = (col(&t, "ver"), col(&t, "n"), col(&t, "m"), col(&t, "name"));
    let id = insert(&mut t, "a").unwrap();
    // JetEscrowUpdate requires a transaction.
    assert_eq!(code(t.escrow_update(n, &1i64.to_le_bytes())), -1054);
    s.begin_transaction().unwrap();
    // The delta has the column's size.
    assert_eq!(code(t.escrow_update(n, &1i32.to_le_bytes())), -1047);
    assert_eq!(code(t.escrow_update(m, &1i64.to_le_bytes())), -1047);
    assert_eq!(code(t.escrow_update(name, &1i32.to_le_bytes())), -1047);
    // A fixed column that is not an escrow column.
    assert_eq!(code(t.escrow_update(ver, &1i32.to_le_bytes())), -1906);
    assert_eq!(code(t.escrow_update(999, &1i32.to_le_bytes())), -1507);
    t.prepare_update(Prep::Replace).unwrap();
    assert_eq!(code(t.escrow_update(n, &1i64.to_le_bytes())), -1607);
    t.prepare_update(Prep::Cancel).unwrap();
    // It returns the value before the update (pvOld).
    assert_eq!(i64_of(&t.escrow_update(n, &5i64.to_le_bytes()).unwrap()), 0);
    assert_eq!(
        i64_of(&t.escrow_update(n, &(-2i64).to_le_bytes()).unwrap()),
        5
    );
    assert_eq!(i32_of(&t.escrow_update(m, &7i32.to_le_bytes()).unwrap()), 0);
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 3);
    s.commit_transaction(CommitGrbit::empty()).unwrap();

    // Another session's pending delta: a replace or a delete of the record is a write
    // conflict; its own escrow update is not.
    let s2 = inst.begin_session().unwrap();
    let db2 = s2.open_database(&path).unwrap();
    let mut t2 = s2.open_table(db2, "t").unwrap();
    seek_id(&mut t2, id).unwrap();
    s.begin_transaction().unwrap();
    s2.begin_transaction().unwrap();
    t.escrow_update(n, &1i64.to_le_bytes()).unwrap();
    assert_eq!(code(t2.prepare_update(Prep::Replace)), -1102);
    t2.prepare_update(Prep::ReplaceNoLock).unwrap();
    assert_eq!(code(t2.update()), -1102);
    t2.prepare_update(Prep::Cancel).unwrap();
    assert_eq!(code(t2.delete()), -1102);
    // The other session's escrow sees its snapshot: 3, not the pending 4.
    assert_eq!(
        i64_of(&t2.escrow_update(n, &10i64.to_le_bytes()).unwrap()),
        3
    );
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    s2.commit_transaction(CommitGrbit::empty()).unwrap();
    seek_id(&mut t, id).unwrap();
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 14);

    // A write lock (prepared replace) keeps escrow updates of others out.
    s.begin_transaction().unwrap();
    s2.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    assert_eq!(code(t2.escrow_update(n, &1i64.to_le_bytes())), -1102);
    t.prepare_update(Prep::Cancel).unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    s2.rollback(RollbackGrbit::empty()).unwrap();
    // Off a record.
    s.begin_transaction().unwrap();
    t.move_to(Move::Last).unwrap();
    assert_eq!(code(t.move_to(Move::Next)), -1603);
    assert_eq!(code(t.escrow_update(n, &1i64.to_le_bytes())), -1603);
    s.rollback(RollbackGrbit::empty()).unwrap();
}

#[test]
fn escrow_readers_see_committed_deltas_by_snapshot() {
    let (inst, dir) = running_instance("escrowsnap");
    let path = dir.path().join("e.edb");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let n = col(&t, "n");
    let id = insert(&mut t, "a").unwrap();
    let r = inst.begin_session().unwrap();
    let rdb = r.open_database(&path).unwrap();
    let mut rt = r.open_table(rdb, "t").unwrap();
    seek_id(&mut rt, id).unwrap();
    r.begin_transaction().unwrap();
    assert_eq!(i64_of(&rt.retrieve_column(n).unwrap().unwrap()), 0);
    s.begin_transaction().unwrap();
    t.escrow_update(n, &5i64.to_le_bytes()).unwrap();
    // Uncommitted: invisible to the reader, visible to the writer.
    assert_eq!(i64_of(&rt.retrieve_column(n).unwrap().unwrap()), 0);
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 5);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // Committed after the reader's snapshot: still invisible to it.
    assert_eq!(i64_of(&rt.retrieve_column(n).unwrap().unwrap()), 0);
    r.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(i64_of(&rt.retrieve_column(n).unwrap().unwrap()), 5);
}

/// Runs `threads` sessions, each doing `txns` transactions of 1 to 3 random escrow deltas on
/// both escrow columns of record `id`, rolling back one in four; returns the committed sums
/// (`n`, `m`). Every escrow update must succeed.
fn escrow_storm(inst: &Instance, path: &std::path::Path, id: i32, txns: usize) -> (i64, i32) {
    let start = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|w| {
            let (inst, path, start) = (inst.clone(), path.to_path_buf(), Arc::clone(&start));
            std::thread::spawn(move || {
                let s = inst.begin_session().unwrap();
                let db = s.open_database(&path).unwrap();
                let mut t = s.open_table(db, "t").unwrap();
                let (n, m) = (col(&t, "n"), col(&t, "m"));
                seek_id(&mut t, id).unwrap();
                let mut rng = fastrand::Rng::with_seed(w);
                let (mut sum_n, mut sum_m) = (0i64, 0i32);
                start.wait();
                for _ in 0..txns {
                    s.begin_transaction().unwrap();
                    let (mut dn, mut dm) = (0i64, 0i32);
                    for _ in 0..rng.usize(1..=3) {
                        let a = rng.i64(-1000..=1000);
                        let b = rng.i32(-50..=50);
                        t.escrow_update(n, &a.to_le_bytes())
                            .expect("escrow updates never conflict");
                        t.escrow_update(m, &b.to_le_bytes())
                            .expect("escrow updates never conflict");
                        dn += a;
                        dm += b;
                    }
                    if rng.u8(0..4) == 0 {
                        s.rollback(RollbackGrbit::empty()).unwrap();
                    } else {
                        s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
                        sum_n += dn;
                        sum_m += dm;
                    }
                }
                (sum_n, sum_m)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

#[test]
fn concurrent_escrow_updates_never_conflict_and_sum_the_committed_deltas() {
    let (inst, dir) = running_instance("escrow4");
    let path = dir.path().join("e.edb");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let id = insert(&mut t, "counter").unwrap();
    // A reader in short transactions meanwhile: its snapshot never changes under it.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (inst, path, done) = (inst.clone(), path.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let r = inst.begin_session().unwrap();
            let db = r.open_database(&path).unwrap();
            let mut t = r.open_table(db, "t").unwrap();
            let n = col(&t, "n");
            seek_id(&mut t, id).unwrap();
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                r.begin_transaction().unwrap();
                let first = t.retrieve_column(n).unwrap();
                std::thread::yield_now();
                assert_eq!(t.retrieve_column(n).unwrap(), first, "snapshot changed");
                r.commit_transaction(CommitGrbit::empty()).unwrap();
                reads += 1;
            }
            reads
        })
    };
    let (sum_n, sum_m) = escrow_storm(&inst, &path, id, 200);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    seek_id(&mut t, id).unwrap();
    assert_eq!(
        i64_of(&t.retrieve_column(col(&t, "n")).unwrap().unwrap()),
        sum_n
    );
    assert_eq!(
        i32_of(&t.retrieve_column(col(&t, "m")).unwrap().unwrap()),
        sum_m
    );
}

const DB: &str = "/data/s.edb";

fn sim_instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("special")
        .system_path("/sys")
        .log_path("/log")
        .page_size(4096)
        .log_file_size_kib(256)
        .cache_size_max_bytes(256 * 4096)
        .file_system(fsd)
        .create()
        .unwrap()
}

fn open_after_recovery(fs: &SimFs) -> (Instance, Session, DbId) {
    let inst = sim_instance(fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    (inst, s, db)
}

#[test]
fn crash_recovery_keeps_committed_escrow_deltas_and_autoincrement_moves_on() {
    let fs = SimFs::new();
    let inst = sim_instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let counter = insert(&mut t, "counter").unwrap();
    let (sum_n, sum_m) = escrow_storm(&inst, std::path::Path::new(DB), counter, 60);
    // Make the lazy commits durable, then leave work open at the crash: uncommitted inserts
    // and an uncommitted delta.
    s.commit_transaction(CommitGrbit::WAIT_ALL_LEVEL0_COMMIT)
        .unwrap();
    s.begin_transaction().unwrap();
    let mut committed = vec![counter];
    for i in 0..20 {
        committed.push(insert(&mut t, &format!("c{i}")).unwrap());
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    s.begin_transaction().unwrap();
    let mut open = Vec::new();
    for i in 0..5 {
        open.push(insert(&mut t, &format!("open{i}")).unwrap());
    }
    seek_id(&mut t, counter).unwrap();
    t.escrow_update(col(&t, "n"), &1_000_000i64.to_le_bytes())
        .unwrap();
    // Another session's durable commit flushes the log, open work included: recovery has
    // to undo it, not merely miss it.
    let s2 = inst.begin_session().unwrap();
    let db2 = s2.open_database(DB).unwrap();
    let mut t2 = s2.open_table(db2, "t").unwrap();
    s2.begin_transaction().unwrap();
    committed.push(insert(&mut t2, "durable").unwrap());
    s2.commit_transaction(CommitGrbit::empty()).unwrap();
    let image = fs.crash(CrashModel::DropAll, 0);
    fs.set_power_cut(Some(0));
    drop((t, t2, s, s2));
    drop(inst);

    let (_inst, s, db) = open_after_recovery(&image);
    let mut t = s.open_table(db, "t").unwrap();
    let ids = all_ids(&mut t);
    assert_eq!(ids, committed, "exactly the committed records survive");
    assert!(open.iter().all(|o| !ids.contains(o)));
    seek_id(&mut t, counter).unwrap();
    assert_eq!(
        i64_of(&t.retrieve_column(col(&t, "n")).unwrap().unwrap()),
        sum_n
    );
    assert_eq!(
        i32_of(&t.retrieve_column(col(&t, "m")).unwrap().unwrap()),
        sum_m
    );
    let next = insert(&mut t, "after").unwrap();
    assert!(
        next > *committed.iter().max().unwrap(),
        "{next} is not above every committed value"
    );
    // Escrow updates work on the recovered record.
    s.begin_transaction().unwrap();
    seek_id(&mut t, counter).unwrap();
    assert_eq!(
        i64_of(&t.escrow_update(col(&t, "n"), &1i64.to_le_bytes()).unwrap()),
        sum_n
    );
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

fn zero_table() -> TableCreate {
    TableCreate {
        name: "z".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("refs", ColumnType::Long)
                .grbit(ColumnGrbit::ESCROW_UPDATE | ColumnGrbit::DELETE_ON_ZERO)
                .default_value(&1i32.to_le_bytes()),
            ColumnDef::new("tag", ColumnType::Long),
        ],
        indexes: vec![
            IndexCreate {
                name: "pk".into(),
                key: "+id\0\0".into(),
                grbit: IndexGrbit::PRIMARY,
                key_most: 0,
            },
            IndexCreate {
                name: "by_tag".into(),
                key: "+tag\0\0".into(),
                grbit: IndexGrbit::empty(),
                key_most: 0,
            },
        ],
    }
}

#[test]
fn delete_on_zero_deletes_the_record_once_the_committed_value_is_zero() {
    let (inst, dir) = running_instance("zero");
    let path = dir.path().join("z.edb");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &zero_table()).unwrap();
    let mut t = s.open_table(db, "z").unwrap();
    let (id, refs, tag) = (col(&t, "id"), col(&t, "refs"), col(&t, "tag"));
    for k in 1i32..=2 {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&k.to_le_bytes())).unwrap();
        t.set_column(tag, Some(&(k * 10).to_le_bytes())).unwrap();
        t.update().unwrap();
    }
    let s2 = inst.begin_session().unwrap();
    let db2 = s2.open_database(&path).unwrap();
    let mut t2 = s2.open_table(db2, "z").unwrap();

    // Record 1: +1 then -2 in one transaction that rolls back: nothing happens.
    seek_id(&mut t, 1).unwrap();
    s.begin_transaction().unwrap();
    t.escrow_update(refs, &1i32.to_le_bytes()).unwrap();
    assert_eq!(
        i32_of(&t.escrow_update(refs, &(-2i32).to_le_bytes()).unwrap()),
        2
    );
    s.rollback(RollbackGrbit::empty()).unwrap();
    seek_id(&mut t, 1).unwrap();
    assert_eq!(i32_of(&t.retrieve_column(refs).unwrap().unwrap()), 1);

    // Record 1 reaches zero while another session still has a pending +1: not deleted at
    // the first commit; deleted when the other transaction rolls back.
    seek_id(&mut t2, 1).unwrap();
    s.begin_transaction().unwrap();
    s2.begin_transaction().unwrap();
    t.escrow_update(refs, &(-1i32).to_le_bytes()).unwrap();
    t2.escrow_update(refs, &1i32.to_le_bytes()).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    seek_id(&mut t, 1).unwrap();
    assert_eq!(i32_of(&t.retrieve_column(refs).unwrap().unwrap()), 0);
    s2.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(code(seek_id(&mut t, 1)), -1601, "deleted at zero");

    // Record 2: one transaction takes it to zero and commits: deleted with its index entry.
    seek_id(&mut t, 2).unwrap();
    s.begin_transaction().unwrap();
    t.escrow_update(refs, &(-1i32).to_le_bytes()).unwrap();
    // Not before the commit.
    seek_id(&mut t2, 2).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(code(seek_id(&mut t, 2)), -1601);
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(
        code(t.move_to(Move::First)),
        -1603,
        "the index entry is gone too"
    );
}

#[test]
fn escrow_deltas_follow_nested_levels_and_own_inserts() {
    let (inst, dir) = running_instance("escrownest");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("e.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &special_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let n = col(&t, "n");
    s.begin_transaction().unwrap();
    // A record this transaction inserted takes deltas before it commits.
    let id = insert(&mut t, "new").unwrap();
    t.escrow_update(n, &10i64.to_le_bytes()).unwrap();
    s.begin_transaction().unwrap();
    t.escrow_update(n, &5i64.to_le_bytes()).unwrap();
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 15);
    // Rolling back the inner level removes its delta only.
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 10);
    s.begin_transaction().unwrap();
    t.escrow_update(n, &7i64.to_le_bytes()).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // A replace prepared (on another cursor) before a delta keeps the delta: the escrow
    // value of its copy buffer is stale, the record's is used.
    let mut t2 = s.open_table(db, "t").unwrap();
    seek_id(&mut t2, id).unwrap();
    t2.prepare_update(Prep::Replace).unwrap();
    assert_eq!(i64_of(&t2.retrieve_column(n).unwrap().unwrap()), 17);
    t.escrow_update(n, &100i64.to_le_bytes()).unwrap();
    t2.set_column(col(&t2, "name"), Some(b"renamed")).unwrap();
    t2.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    seek_id(&mut t, id).unwrap();
    assert_eq!(i64_of(&t.retrieve_column(n).unwrap().unwrap()), 117);
    assert_eq!(
        t.retrieve_column(col(&t, "name")).unwrap().unwrap(),
        b"renamed"
    );
}
