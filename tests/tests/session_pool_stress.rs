//! The COM-server pattern of the JetSetSessionContext remarks: 32 threads share a pool of 8
//! sessions, acquiring one with `set_context` (exactly one thread wins a session) and
//! releasing it with `reset_context`, with transactions that migrate between threads (begun on
//! one thread, continued and committed on another). Runs for a bounded time; afterwards there
//! is no unexpected error, every committed increment is present and none is lost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::running_instance;
use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, ErrorKind, IndexCreate, IndexGrbit,
    Prep, RollbackGrbit, Seek, Session, TableCreate,
};

const SESSIONS: usize = 8;
const THREADS: usize = 32;
const ROWS: i32 = 16;

#[test]
fn thirty_two_threads_share_eight_sessions_through_contexts() {
    let (inst, dir) = running_instance("pool");
    let path = dir.path().join("d.edb");
    let admin = inst.begin_session().unwrap();
    let db = admin
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    admin
        .create_table(
            db,
            &TableCreate {
                name: "counters".into(),
                columns: vec![
                    ColumnDef::new("k", ColumnType::Long),
                    ColumnDef::new("n", ColumnType::LongLong),
                ],
                indexes: vec![IndexCreate {
                    name: "pk".into(),
                    key: "+k\0\0".into(),
                    grbit: IndexGrbit::PRIMARY,
                    key_most: 0,
                }],
            },
        )
        .unwrap();
    {
        let mut t = admin.open_table(db, "counters").unwrap();
        let (k, n) = (t.column_id("k").unwrap(), t.column_id("n").unwrap());
        admin.begin_transaction().unwrap();
        for i in 0..ROWS {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(k, Some(&i.to_le_bytes())).unwrap();
            t.set_column(n, Some(&0i64.to_le_bytes())).unwrap();
            t.update().unwrap();
        }
        admin.commit_transaction(CommitGrbit::empty()).unwrap();
    }
    // The pool: each session with its own context value (its slot number + 1).
    let pool: Arc<Vec<Session>> = Arc::new(
        (0..SESSIONS)
            .map(|_| inst.begin_session().unwrap())
            .collect(),
    );
    for s in pool.iter() {
        s.open_database(&path).unwrap();
    }
    let committed = Arc::new(AtomicU64::new(0));
    // Increments made by each session's open transaction, and those that were committed.
    let pending: Arc<Vec<AtomicU64>> = Arc::new((0..SESSIONS).map(|_| AtomicU64::new(0)).collect());
    let committed_increments = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let migrations = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(3);
    let handles: Vec<_> = (0..THREADS)
        .map(|tid| {
            let (pending, committed_increments) =
                (Arc::clone(&pending), Arc::clone(&committed_increments));
            let (pool, committed, conflicts, migrations, stop) = (
                Arc::clone(&pool),
                Arc::clone(&committed),
                Arc::clone(&conflicts),
                Arc::clone(&migrations),
                Arc::clone(&stop),
            );
            let path = path.clone();
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(tid as u64);
                while !stop.load(Ordering::Relaxed) {
                    // Acquire a session: exactly one thread wins each.
                    let slot = rng.usize(0..SESSIONS);
                    let s = &pool[slot];
                    match s.set_context(slot + 1) {
                        Ok(()) => {}
                        Err(e) => {
                            assert_eq!(
                                e.kind(),
                                ErrorKind::SessionContextAlreadySet,
                                "thread {tid}"
                            );
                            thread::yield_now();
                            continue;
                        }
                    }
                    let db = s.open_database(&path).unwrap();
                    if s.transaction_level().unwrap() > 0 {
                        migrations.fetch_add(1, Ordering::Relaxed);
                    } else {
                        s.begin_transaction().unwrap();
                    }
                    let mut t = s.open_table(db, "counters").unwrap();
                    let (kc, nc) = (t.column_id("k").unwrap(), t.column_id("n").unwrap());
                    let key = rng.i32(0..ROWS);
                    let r = (|| -> ese::Result<()> {
                        t.seek(&[Some(&key.to_le_bytes())], Seek::Eq)?;
                        let n =
                            i64::from_le_bytes(t.retrieve_column(nc)?.unwrap().try_into().unwrap());
                        t.prepare_update(Prep::ReplaceNoLock)?;
                        t.set_column(nc, Some(&(n + 1).to_le_bytes()))?;
                        t.update()?;
                        Ok(())
                    })();
                    let _ = kc;
                    match r {
                        Ok(()) => {
                            pending[slot].fetch_add(1, Ordering::SeqCst);
                            // Sometimes leave the transaction open for another thread to finish.
                            if rng.bool() {
                                s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
                                committed.fetch_add(1, Ordering::Relaxed);
                                committed_increments.fetch_add(
                                    pending[slot].swap(0, Ordering::SeqCst),
                                    Ordering::SeqCst,
                                );
                            }
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::WriteConflict, "thread {tid}: {e}");
                            conflicts.fetch_add(1, Ordering::Relaxed);
                            s.rollback(RollbackGrbit::ALL).unwrap();
                            pending[slot].store(0, Ordering::SeqCst);
                        }
                    }
                    drop(t);
                    s.close_database(db).unwrap();
                    s.reset_context().unwrap();
                }
            })
        })
        .collect();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    // Finish open transactions: each commits all its increments.
    for (slot, s) in pool.iter().enumerate() {
        s.set_context(slot + 1).unwrap();
        if s.transaction_level().unwrap() > 0 {
            s.commit_transaction(CommitGrbit::empty()).unwrap();
            committed.fetch_add(1, Ordering::Relaxed);
            committed_increments
                .fetch_add(pending[slot].swap(0, Ordering::SeqCst), Ordering::SeqCst);
        }
        s.reset_context().unwrap();
    }
    let mut t = admin.open_table(db, "counters").unwrap();
    let nc = t.column_id("n").unwrap();
    let mut total = 0i64;
    for i in 0..ROWS {
        t.seek(&[Some(&i.to_le_bytes())], Seek::Eq).unwrap();
        total += i64::from_le_bytes(t.retrieve_column(nc).unwrap().unwrap().try_into().unwrap());
    }
    let committed = committed.load(Ordering::Relaxed);
    println!(
        "committed {committed} transactions ({} continued on another thread), {} write conflicts rolled back, total {total}",
        migrations.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed)
    );
    assert!(committed > 100, "too little work: {committed}");
    // No lost update, no increment of a rolled-back transaction.
    assert_eq!(
        total,
        committed_increments.load(Ordering::SeqCst).cast_signed()
    );
    assert!(
        migrations.load(Ordering::Relaxed) > 10,
        "no migration happened"
    );
}
