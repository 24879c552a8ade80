//! Crash recovery of the whole engine under the standard workloads: transactions over two
//! tables (multi-table transactions), nested levels rolled back or committed into their
//! parent, full rollbacks, lazy commits followed by durable ones, a long reader holding old
//! versions across many commits, checkpoints, generation rollovers and database growth. On
//! `SimFs` the power is cut at an I/O operation of the workload; every crash image (under each
//! crash model) is recovered by `Instance::init` and must hold exactly the state after some
//! commit at or after the last durable commit that returned, in commit order: lazy commits are
//! present or absent as whole transactions, and never out of order; rolled-back levels and
//! transactions never appear. The integrity check must pass.
//!
//! By default the power is cut at every second I/O operation, one seed per model, with the
//! checkpointer and version cleanup both quiet and racing; `ESE_CRASH_FULL=1` cuts at every
//! operation with three seeds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::sync::Arc;

use ese::{
    AttachDatabaseGrbit, CommitGrbit, CreateDatabaseGrbit, DbId, Instance, RollbackGrbit, Session,
    Table, TermGrbit,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

mod common;

type Model = common::IdRows;
/// The two tables' rows.
type State = [Model; 2];

const DB: &str = "/data/w.edb";
const TABLES: [&str; 2] = ["t", "u"];

fn instance(fs: &SimFs, racing: bool) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let b = Instance::builder("workloads");
    let b = if racing {
        b.checkpoint_depth_bytes(16 * 1024)
            // No deferral while commits run: the checkpointer races them.
            .checkpoint_defer_bytes(0)
            .checkpoint_interval_ms(2)
            .version_cleanup_interval_ms(5)
    } else {
        b.checkpoint_depth_bytes(1 << 40)
            .version_cleanup_interval_ms(0)
    };
    b.system_path("/sys")
        .log_path("/log")
        .page_size(4096)
        .log_file_size_kib(128)
        .cache_size_max_bytes(64 * 4096)
        .file_system(fsd)
        .create()
        .unwrap()
}

fn read_state(s: &Session, db: DbId) -> ese::Result<State> {
    Ok([
        common::read_id_value_rows(s, db, TABLES[0])?,
        common::read_id_value_rows(s, db, TABLES[1])?,
    ])
}

/// Up to `most - 1` random changes to one table on keys `0..600`, applied to `m` too.
fn changes(t: &mut Table, rng: &mut fastrand::Rng, m: &mut Model, most: usize) -> ese::Result<()> {
    let n = rng.usize(1..most);
    common::random_id_value_changes(t, rng, m, n, 600)
}

/// What a run of the workload committed.
struct History {
    /// The state after each commit, in commit order (the first entry: the empty tables the
    /// workload starts from).
    states: Vec<State>,
    /// The index in `states` of the last durable commit that returned: every state before it
    /// is durable too.
    durable: usize,
    /// The state the commit in progress at the cut would make, if a commit was cut.
    in_flight: Option<State>,
    /// The error that ended the workload (the power cut), if it ended early.
    error: Option<ese::Error>,
}

/// The workload. Errors (the power cut) end it.
fn workload(
    inst: &Instance,
    s: &Session,
    (reader, rdb): (&Session, DbId),
    db: DbId,
    seed: u64,
) -> History {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut h = History {
        states: vec![State::default()],
        durable: 0,
        in_flight: None,
        error: None,
    };
    let r = (|| -> ese::Result<()> {
        let mut tabs = [s.open_table(db, TABLES[0])?, s.open_table(db, TABLES[1])?];
        for n in 0..100 {
            if n % 15 == 14 {
                inst.checkpoint_now()?;
            }
            // A long reader: a snapshot open from the 10th to the 70th transaction, which
            // keeps old versions alive across many commits, then lets cleanup drop them.
            if n == 10 {
                reader.begin_transaction2(ese::BeginTransactionGrbit::READ_ONLY)?;
                let _ = common::read_id_value_rows(reader, rdb, TABLES[0])?;
            }
            if n == 70 {
                let _ = common::read_id_value_rows(reader, rdb, TABLES[1])?;
                reader.commit_transaction(CommitGrbit::empty())?;
            }
            let mut mine = h.states.last().cloned().unwrap_or_default();
            s.begin_transaction()?;
            changes(&mut tabs[0], &mut rng, &mut mine[0], 5)?;
            if rng.bool() {
                changes(&mut tabs[1], &mut rng, &mut mine[1], 5)?;
            }
            if rng.u8(0..4) == 0 {
                // A nested level, rolled back alone or committed into its parent.
                let mut inner = mine.clone();
                s.begin_transaction()?;
                let which = rng.usize(0..2);
                changes(&mut tabs[which], &mut rng, &mut inner[which], 4)?;
                if rng.bool() {
                    s.rollback(RollbackGrbit::empty())?;
                } else {
                    s.commit_transaction(CommitGrbit::empty())?;
                    mine = inner;
                }
            }
            match rng.u8(0..6) {
                0 => s.rollback(RollbackGrbit::ALL)?,
                1 | 2 => {
                    // A lazy commit: it may be lost in a crash, but only whole and only
                    // after every earlier commit... until a durable commit follows.
                    if let Err(e) = s.commit_transaction(CommitGrbit::LAZY_FLUSH) {
                        h.in_flight = Some(mine);
                        return Err(e);
                    }
                    h.states.push(mine);
                }
                _ => {
                    if let Err(e) = s.commit_transaction(CommitGrbit::empty()) {
                        h.in_flight = Some(mine);
                        return Err(e);
                    }
                    h.states.push(mine);
                    h.durable = h.states.len() - 1;
                }
            }
        }
        Ok(())
    })();
    h.error = r.err();
    h
}

/// A base image: the database and both tables, cleanly terminated.
fn base() -> SimFs {
    let fs = SimFs::new();
    let inst = instance(&fs, false);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    for t in TABLES {
        s.create_table(db, &common::id_value_table(t)).unwrap();
    }
    s.close_database(db).unwrap();
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
    fs.crash(CrashModel::DropAll, 0)
}

fn run_until_cut(base: &SimFs, cut: Option<u64>, racing: bool) -> (SimFs, History, u64) {
    let fs = base.crash(CrashModel::DropAll, 0);
    let inst = instance(&fs, racing);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let reader = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    let rdb = reader.open_database(DB).unwrap();
    let start = fs.op_count();
    if let Some(k) = cut {
        fs.set_power_cut(Some(start + k));
    }
    let h = workload(&inst, &s, (&reader, rdb), db, 5);
    let used = fs.op_count() - start;
    fs.set_power_cut(Some(0));
    drop(reader);
    drop(s);
    drop(inst);
    (fs, h, used)
}

fn sweep(racing: bool) -> u64 {
    let full = std::env::var("ESE_CRASH_FULL").is_ok();
    let (step, seeds) = if full { (1, 3) } else { (2, 1) };
    let base = base();
    let (_, whole, total) = run_until_cut(&base, None, racing);
    assert!(
        whole.error.is_none(),
        "the workload failed: {:?}",
        whole.error
    );
    assert!(whole.states.len() > 50, "the workload commits");
    let mut images = 0;
    let mut lazy_lost = 0u64;
    let mut k = 0;
    while k < total {
        let (fs, h, _) = run_until_cut(&base, Some(k), racing);
        for model in CrashModel::ALL {
            for seed in 0..seeds {
                let what = format!("racing {racing}, cut {k}/{total} {model:?} seed {seed}");
                let img = fs.crash(model, seed);
                let inst = instance(&img, false);
                inst.init()
                    .unwrap_or_else(|e| panic!("{what}: init failed: {e}"));
                let s = inst.begin_session().unwrap();
                s.attach_database(DB, AttachDatabaseGrbit::empty())
                    .unwrap_or_else(|e| panic!("{what}: attach failed: {e}"));
                let db = s.open_database(DB).unwrap();
                let got = read_state(&s, db)
                    .unwrap_or_else(|e| panic!("{what}: reading after recovery: {e}"));
                let at = h.states[h.durable..]
                    .iter()
                    .rposition(|st| *st == got)
                    .map(|i| i + h.durable);
                match at {
                    Some(i) => lazy_lost += (h.states.len() - 1 - i) as u64,
                    None => assert!(
                        h.in_flight.as_ref() == Some(&got),
                        "{what}: the recovered state is no commit at or after the last \
                         durable one ({} commits, last durable #{})",
                        h.states.len() - 1,
                        h.durable
                    ),
                }
                s.check_database(db)
                    .unwrap_or_else(|e| panic!("{what}: integrity check: {e}"));
                images += 1;
            }
        }
        k += step;
    }
    println!(
        "standard workloads (racing {racing}): {images} crash images over {total} I/O \
         operations, {} commits per run; lazy commits lost in all: {lazy_lost}",
        whole.states.len() - 1
    );
    images
}

#[test]
fn standard_workloads_recover_at_every_crash_point() {
    let images = sweep(false);
    assert!(images > 100);
}

#[test]
fn standard_workloads_with_a_racing_checkpointer_and_cleanup() {
    let images = sweep(true);
    assert!(images > 100);
}
