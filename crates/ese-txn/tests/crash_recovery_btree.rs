//! Crash recovery of transactions over the real page store and log on `SimFs`: a workload of
//! interleaved transactions (durable commits, nested levels rolled back, whole rollbacks, one
//! transaction left open) runs until the power is cut at an I/O operation; every crash model
//! then gives an image that must recover (redo of the log, then undo of unfinished
//! transactions) to exactly the transactions whose durable commit returned — no change of an
//! uncommitted or rolled-back transaction visible — with the integrity check passing.
//!
//! The power is cut at every I/O operation, one seed per crash model; `ESE_CRASH_FULL=1` takes
//! four seeds per model.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
#![allow(
    clippy::many_single_char_names,
    reason = "a model test reads best with terse names"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, TreeKind, Wal};
use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{Lgpos, ObjId, Result, TrxId};
use ese_log::{Log, LogConfig, LogReader};
use ese_txn::{
    Envelope, FAMILY_PAGE, FamilyWal, LogWal, PhysState, RecoveryUndo, TreeStore, VersionStore,
};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const DB: &str = "/db/t.edb";
const LOGDIR: &str = "/log";

fn log_config() -> LogConfig {
    LogConfig::new(LOGDIR)
        .file_size_kib(128)
        .page_size(4096)
        .reserve_logs(false)
}

fn options() -> DbOptions {
    DbOptions::new()
        .page_size(4096)
        .cache_bytes(16 * 4096)
        .extension_pages(8)
}

struct Engine {
    log: Arc<Log>,
    db: Database,
    vs: Arc<VersionStore>,
    tree: ObjId,
}

fn open_engine(fs: &SimFs, create: bool, first_trx: TrxId) -> Result<Engine> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    fsd.create_dir_all(Path::new("/db"))?;
    let log = Arc::new(Log::open(fsd.clone(), log_config())?);
    let raw: Arc<dyn Wal> = Arc::new(LogWal(Arc::clone(&log)));
    let page_wal: Arc<dyn Wal> = Arc::new(FamilyWal::new(Arc::clone(&raw), FAMILY_PAGE));
    let (db, tree) = if create {
        let db = Database::create(&fsd, Path::new(DB), options(), page_wal)?;
        let t = db.create_tree(TreeKind::Table)?;
        let id = t.objid();
        (db, id)
    } else {
        let db = Database::open(&fsd, Path::new(DB), options(), page_wal)?;
        let trees = db.trees()?;
        let id = trees
            .iter()
            .find(|(_, _, k)| *k == TreeKind::Table)
            .map(|(o, _, _)| *o)
            .unwrap();
        (db, id)
    };
    let store = Arc::new(TreeStore::new(raw));
    store.register(tree, db.open_tree(tree)?);
    let vs = Arc::new(VersionStore::new(store, 1 << 20, first_trx));
    Ok(Engine { log, db, vs, tree })
}

type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn apply(base: &Model, levels: &[Overlay]) -> Model {
    let mut m = base.clone();
    for l in levels {
        for (k, v) in l {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    m
}

/// Runs the workload until it finishes or the power is cut. Returns the committed state after
/// the last durable commit that returned and, if a level-0 commit failed (the cut hit it), the
/// state it would have committed: after a crash either is acceptable, nothing else.
fn workload(e: &Engine, seed: u64) -> (Model, Option<Model>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut committed = Model::new();
    let mut in_flight = None;
    let mut pending: Vec<Option<(ese_txn::Transaction, Vec<Overlay>)>> =
        (0..3).map(|_| None).collect();
    let mut run = || -> Result<()> {
        for _ in 0..1000 {
            let i = rng.usize(0..pending.len());
            if pending[i].is_none() {
                pending[i] = Some((e.vs.begin(format!("t{i}"), false), vec![Overlay::new()]));
                continue;
            }
            let (t, levels) = pending[i].as_mut().unwrap();
            match rng.u8(0..100) {
                0..=59 => {
                    let k = format!("key{:03}", rng.u32(0..60)).into_bytes();
                    let v = vec![rng.u8(..); rng.usize(10..400)];
                    let delete = rng.u8(0..4) == 0;
                    let r = if delete {
                        t.delete(e.tree, &k)
                    } else if t.read(e.tree, &k)?.is_some() {
                        t.replace(e.tree, &k, &v)
                    } else {
                        t.insert(e.tree, &k, &v)
                    };
                    match r {
                        Ok(()) => {
                            levels.last_mut().unwrap().insert(k, (!delete).then_some(v));
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                ese_core::ErrorKind::WriteConflict
                                    | ese_core::ErrorKind::RecordNotFound
                            ) => {}
                        Err(err) => return Err(err),
                    }
                }
                60..=69 => {
                    if t.begin_level().is_ok() {
                        levels.push(Overlay::new());
                    }
                }
                70..=79 => {
                    t.rollback_level()?;
                    levels.pop();
                    if levels.is_empty() {
                        pending[i] = None;
                    }
                }
                _ => {
                    if levels.len() == 1 {
                        let would = apply(&committed, levels);
                        if let Err(err) = t.commit_level(false) {
                            in_flight = Some(would);
                            return Err(err);
                        }
                        committed = would;
                        pending[i] = None;
                    } else {
                        t.commit_level(false)?;
                        let inner = levels.pop().unwrap();
                        levels.last_mut().unwrap().extend(inner);
                    }
                }
            }
        }
        Ok(())
    };
    let _ = run();
    // Open transactions at the crash are abandoned without rollback.
    for p in &mut pending {
        if let Some((t, _)) = p.take() {
            std::mem::forget(t);
        }
    }
    (committed, in_flight)
}

fn recover(fs: &SimFs) -> Result<Model> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    // Collect the records first (redo needs the database, undo needs the transaction records).
    let mut records = Vec::new();
    let reader = LogReader::open(fsd.clone(), Path::new(LOGDIR), "edb", Lgpos::MIN)?;
    for r in reader {
        let r = r?;
        records.push((r.lgpos, r.payload));
    }
    let mut undo = RecoveryUndo::new();
    let e = open_engine(fs, false, TrxId(1_000_000))?;
    for (lgpos, payload) in &records {
        let env = Envelope::parse(payload)?;
        if let Envelope::Page(p) = env {
            e.db.redo(*lgpos, p)?;
        }
        if let Some(rec) = env.txn_record()? {
            undo.observe(rec);
        }
    }
    e.db.end_redo()?;
    undo.undo_all(e.vs.store().as_ref())?;
    e.log.flush_all()?;
    e.db.check_integrity()?;
    let mut m = Model::new();
    let store = e.vs.store();
    for k in 0..60u32 {
        let key = format!("key{k:03}").into_bytes();
        if let PhysState::Present(v) = store.read(e.tree, &key)? {
            m.insert(key, v);
        }
    }
    Ok(m)
}

#[test]
fn crash_at_io_points_recovers_committed_transactions_only() {
    let full = std::env::var("ESE_CRASH_FULL").is_ok();
    let (step, seeds) = if full { (1, 4) } else { (1, 1) };
    // Count the operations of an uninterrupted run.
    let base = SimFs::new();
    let e = open_engine(&base, true, TrxId(1)).unwrap();
    e.log.flush_all().unwrap();
    // A clean header carries the dbtime, which a later open continues from.
    e.db.write_header(|h| h.state = ese_btree::DbState::CleanShutdown)
        .unwrap();
    let start = base.op_count();
    drop(e);
    let total = {
        let fs = base.crash(CrashModel::DropAll, 0);
        let e = open_engine(&fs, false, TrxId(1)).unwrap();
        let s = fs.op_count();
        workload(&e, 42);
        fs.op_count() - s
    };
    let _ = start;
    let mut images = 0u64;
    let mut k = 0;
    while k < total {
        let fs = base.crash(CrashModel::DropAll, 0);
        let e = open_engine(&fs, false, TrxId(1)).unwrap();
        fs.set_power_cut(Some(fs.op_count() + k));
        let (committed, in_flight) = workload(&e, 42);
        drop(e);
        for model in CrashModel::ALL {
            for seed in 0..seeds {
                let img = fs.crash(model, seed);
                let got = recover(&img).unwrap_or_else(|err| {
                    panic!("op {k} {model:?} seed {seed}: recovery failed: {err}")
                });
                // Every durable commit that returned is present; nothing else (the commit the
                // cut interrupted may be present, whole).
                assert!(
                    got == committed || in_flight.as_ref() == Some(&got),
                    "op {k} {model:?} seed {seed}: recovered {} keys, committed {} keys",
                    got.len(),
                    committed.len()
                );
                images += 1;
            }
        }
        k += step;
    }
    println!("crash images checked: {images} over {total} I/O operations");
    assert!(images > 0);
}
