//! The fault loop of the whole engine: on `SimFs`, an I/O error (EIO or ENOSPC) is injected at
//! every I/O operation of a transactional workload, of each kind (read, write, set-length,
//! sync, create, rename, remove, directory create and sync), once and from then on. For each:
//! the workload sees a typed JET error (never a panic, never a hang); after the error the
//! instance either keeps working or refuses with `InstanceUnavailable`; `term` returns; then,
//! with the fault cleared, the next `init` recovers, the integrity check passes, and the table
//! holds every transaction whose durable commit returned (the commit the fault interrupted may
//! be there, whole) and nothing else. The same holds when the process also loses every unsynced
//! write after the fault (a crash right after it).
//!
//! By default the fault point steps so that about 1,000 faulty runs are checked;
//! `ESE_FAULTS_FULL=1` injects at every operation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use ese::{
    AttachDatabaseGrbit, CommitGrbit, CreateDatabaseGrbit, DbId, ErrorKind, Instance, Prep,
    Session, TermGrbit,
};
use ese_core::fs::{CrashModel, Fault, FaultError, FileSystem, OpCounts, OpKind, SimFs};

mod common;

type Model = common::IdRows;

const DB: &str = "/data/t.edb";

/// How long one faulty run may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(120);

fn instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("faults")
        .system_path("/sys")
        .log_path("/log")
        .page_size(4096)
        .log_file_size_kib(64)
        .cache_size_max_bytes(64 * 4096)
        .checkpoint_depth_bytes(1 << 40)
        .version_cleanup_interval_ms(0)
        .file_system(fsd)
        .create()
        .unwrap()
}

/// Why a transaction failed: the error, and the model its commit would have made when the
/// commit itself failed (then the transaction may be durable, whole, or absent).
type Failed = (ese::Error, Option<Model>);

/// One transaction of random inserts, replaces and deletes applied to `model`; commits durably
/// unless `rollback`. Returns the model after it.
fn transaction(
    s: &Session,
    db: DbId,
    rng: &mut fastrand::Rng,
    model: &Model,
    rollback: bool,
) -> Result<Model, Failed> {
    let mut t = s.open_table(db, "t").map_err(|e| (e, None))?;
    s.begin_transaction().map_err(|e| (e, None))?;
    let mut mine = model.clone();
    let n = rng.usize(1..16);
    let r = common::random_id_value_changes(&mut t, rng, &mut mine, n, 3000);
    if let Err(e) = r {
        // The rollback may fail too (the instance is then unavailable); the error that
        // matters is the first.
        let _ = s.rollback(ese::RollbackGrbit::ALL);
        return Err((e, None));
    }
    if rollback {
        s.rollback(ese::RollbackGrbit::ALL).map_err(|e| (e, None))?;
        return Ok(model.clone());
    }
    s.commit_transaction(CommitGrbit::empty())
        .map_err(|e| (e, Some(mine.clone())))?;
    Ok(mine)
}

/// Inserts rows with keys from 100,000 up (never touched by [`transaction`]) in one durable
/// transaction, so the change is the same whatever state the table is in.
fn fresh_rows(s: &Session, db: DbId) -> ese::Result<Model> {
    let mut t = s.open_table(db, "t")?;
    let (id, v) = (t.column_id("id")?, t.column_id("v")?);
    s.begin_transaction()?;
    let mut rows = Model::new();
    let r = (|| -> ese::Result<()> {
        for k in 100_000..100_004u32 {
            let val = k.to_le_bytes().repeat(16);
            t.prepare_update(Prep::Insert)?;
            t.set_column(id, Some(&k.to_le_bytes()))?;
            t.set_column(v, Some(&val))?;
            t.update()?;
            rows.insert(k, val);
        }
        Ok(())
    })();
    if let Err(e) = r {
        let _ = s.rollback(ese::RollbackGrbit::ALL);
        return Err(e);
    }
    s.commit_transaction(CommitGrbit::empty())?;
    Ok(rows)
}

/// The errors an I/O fault may surface as, directly or through fail-stop.
fn is_io_error(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::DiskIO
            | ErrorKind::DiskFull
            | ErrorKind::LogDiskFull
            | ErrorKind::LogWriteFail
            | ErrorKind::InstanceUnavailable
            | ErrorKind::InstanceUnavailableDueToFatalLogDiskFull
    )
}

/// What one run did.
struct Outcome {
    /// The error the fault surfaced as, if it surfaced.
    error: Option<ese::Error>,
    /// After the error: whether the instance kept working (a later durable transaction
    /// committed) or refused.
    kept_working: bool,
    /// Every state the table may be in after recovery.
    candidates: Vec<Model>,
}

/// Runs the workload on `fs` (already holding the database) with `fault` armed after attach,
/// then terminates the instance (which must return, with or without an error).
fn run(fs: &SimFs, fault: Option<Fault>, seed: u64) -> Outcome {
    let inst = instance(fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    let mut committed = common::read_id_value_rows(&s, db, "t").unwrap();
    if let Some(f) = fault {
        fs.inject_fault(f);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failure = None;
    for n in 0..60 {
        let r = if n % 20 == 19 {
            inst.checkpoint_now()
                .map(|()| committed.clone())
                .map_err(|e| (e, None))
        } else {
            let rollback = rng.u8(0..5) == 0;
            transaction(&s, db, &mut rng, &committed, rollback)
        };
        match r {
            Ok(m) => committed = m,
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    let mut candidates = vec![committed.clone()];
    let mut kept_working = false;
    let error = match failure {
        None => None,
        Some((e, in_flight)) => {
            candidates.extend(in_flight);
            match fresh_rows(&s, db) {
                Ok(rows) => {
                    kept_working = true;
                    for c in &mut candidates {
                        c.extend(rows.clone());
                    }
                }
                Err(after) => assert!(
                    is_io_error(after.kind()),
                    "after {e}, a new transaction failed with {after}"
                ),
            }
            Some(e)
        }
    };
    drop(s);
    // Term must return; after a fatal error it leaves the databases for recovery.
    let _ = inst.term(TermGrbit::empty());
    drop(inst);
    Outcome {
        error,
        kept_working,
        candidates,
    }
}

/// Recovers `fs` (no fault armed) and checks the table is one of `candidates` and the
/// database's integrity.
fn recover_and_check(fs: &SimFs, candidates: &[Model], what: &str) {
    let inst = instance(fs);
    inst.init()
        .unwrap_or_else(|e| panic!("{what}: init after the fault failed: {e}"));
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty())
        .unwrap_or_else(|e| panic!("{what}: attach failed: {e}"));
    let db = s.open_database(DB).unwrap();
    let got = common::read_id_value_rows(&s, db, "t")
        .unwrap_or_else(|e| panic!("{what}: reading failed: {e}"));
    assert!(
        candidates.contains(&got),
        "{what}: recovered {} rows, committed {}",
        got.len(),
        candidates[0].len()
    );
    s.check_database(db)
        .unwrap_or_else(|e| panic!("{what}: integrity check failed: {e}"));
    s.close_database(db).unwrap();
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
}

/// A base image: database and table created, cleanly terminated.
fn base() -> SimFs {
    let fs = SimFs::new();
    let inst = instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &common::id_value_table("t")).unwrap();
    s.close_database(db).unwrap();
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
    fs.crash(CrashModel::DropAll, 0)
}

fn count(c: &OpCounts, kind: OpKind) -> u64 {
    match kind {
        OpKind::Read => c.reads,
        OpKind::Write => c.writes,
        OpKind::SetLen => c.set_lens,
        OpKind::Sync => c.syncs,
        OpKind::Create => c.creates,
        OpKind::Rename => c.renames,
        OpKind::Remove => c.removes,
        OpKind::Link => c.links,
        OpKind::CreateDir => c.create_dirs,
        OpKind::SyncDir => c.sync_dirs,
    }
}

/// Runs one faulty case on its own thread so a hang is caught and a panic reported with the
/// case that caused it.
fn case(base: &SimFs, fault: Fault, seed: u64) -> (Option<ErrorKind>, bool) {
    let base = base.crash(CrashModel::DropAll, 0);
    let (tx, rx) = mpsc::channel();
    let what = format!("{fault:?}");
    let handle = std::thread::spawn(move || {
        let fs = base;
        let out = run(&fs, Some(fault), seed);
        fs.clear_faults();
        // The process goes on (every write it made stays) ...
        recover_and_check(
            &fs.crash(CrashModel::DropAll, 0),
            &out.candidates,
            &format!("{fault:?}, same process"),
        );
        // ... or dies right after the fault, losing or tearing what was not synced.
        for (n, model) in [CrashModel::DropAll, CrashModel::TornSectors]
            .into_iter()
            .enumerate()
        {
            recover_and_check(
                &fs.crash(model, n as u64 + 1),
                &out.candidates,
                &format!("{fault:?}, then a crash ({model:?})"),
            );
        }
        let _ = tx.send(());
        (out.error.map(|e| e.kind()), out.kept_working)
    });
    match rx.recv_timeout(HANG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {HANG:?}"),
    }
    match handle.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn every_io_fault_gives_a_typed_error_and_loses_nothing_committed() {
    let full = std::env::var("ESE_FAULTS_FULL").is_ok();
    let base = base();
    // Count the operations of a fault-free run, per kind.
    let probe = base.crash(CrashModel::DropAll, 0);
    let before = probe.op_counts();
    let clean = run(&probe, None, 11);
    assert!(
        clean.error.is_none(),
        "fault-free run failed: {:?}",
        clean.error
    );
    let after = probe.op_counts();
    let kinds = [
        OpKind::Read,
        OpKind::Write,
        OpKind::SetLen,
        OpKind::Sync,
        OpKind::Create,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::CreateDir,
        OpKind::SyncDir,
    ];
    let total: u64 = kinds
        .iter()
        .map(|&k| count(&after, k) - count(&before, k))
        .sum();
    // Each point runs 4 variants (EIO/ENOSPC, once/forever).
    let step = if full { 1 } else { (total * 4 / 1_000).max(1) };
    let mut runs = 0u64;
    let mut surfaced = 0u64;
    let mut kept = 0u64;
    let mut by_error: BTreeMap<String, u64> = BTreeMap::new();
    for kind in kinds {
        let n = count(&after, kind) - count(&before, kind);
        let mut nth = 0;
        while nth < n {
            for error in [FaultError::Eio, FaultError::Enospc] {
                for persistent in [false, true] {
                    let fault = Fault {
                        kind,
                        nth,
                        error,
                        persistent,
                    };
                    let (err, kept_working) = case(&base, fault, 11);
                    runs += 1;
                    if let Some(k) = err {
                        surfaced += 1;
                        assert!(is_io_error(k), "{fault:?}: surfaced as {k:?}");
                        *by_error.entry(format!("{k:?}")).or_default() += 1;
                    }
                    kept += u64::from(kept_working);
                }
            }
            nth += step;
        }
    }
    println!(
        "fault loop: {runs} faulty runs over {total} I/O operations (step {step}); \
         {surfaced} surfaced as errors {by_error:?}; the instance kept working after {kept}; \
         3 recoveries checked per run"
    );
    assert!(runs >= 100);
}
