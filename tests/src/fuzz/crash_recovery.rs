//! Fuzz target `crash_recovery`: a workload of transactions over three sessions runs on
//! [`SimFs`] until the power is cut at a chosen I/O operation; the image a crash model leaves
//! is recovered (optionally with a second crash in the middle of recovery, then recovery
//! again), and the result is checked against the model.
//!
//! What must hold after the last recovery: `init` succeeds; the database's integrity check
//! passes; the tables hold the base state plus a prefix of the commits, in commit order, that
//! includes every commit whose durable commit returned (so lazy commits are lost only whole
//! and only with every later commit, and nothing uncommitted or rolled back is visible).

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use ese::{AttachDatabaseGrbit, CreateDatabaseGrbit, DbId, Instance, Session, TermGrbit};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

use super::model::{History, State};
use super::workload::{self, Harness, Op};
use super::{DB, PAGE_SIZE, instance};

/// A power cut in the middle of recovery.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct RecoveryCrash {
    /// The recovery's I/O operation at which the power is cut (modulo the operations one
    /// recovery of the image performs, plus one).
    pub cut: u16,
    /// The crash model of the second crash (modulo 4, in [`CrashModel::ALL`] order).
    pub model: u8,
    /// The seed of the second crash.
    pub seed: u8,
}

/// The input of `crash_recovery`.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct CrashInput {
    /// Generations of 128 KiB instead of 64 KiB.
    pub big_log: bool,
    /// The workload's I/O operation at which the power is cut (modulo the operations the
    /// workload performs, plus one: the last value cuts it after the workload).
    pub cut: u16,
    /// The crash model (modulo 4, in [`CrashModel::ALL`] order).
    pub model: u8,
    /// The crash's seed.
    pub seed: u8,
    /// A second crash during recovery.
    pub recovery_crash: Option<RecoveryCrash>,
    /// The workload (at most 300 operations are run).
    pub ops: Vec<Op>,
}

/// What one run did, for the replay test's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// I/O operations of the workload without a crash.
    pub workload_ops: u64,
    /// Where the power was cut (`workload_ops` = after the workload).
    pub cut: u64,
    /// Commits the workload made before the cut.
    pub commits: usize,
    /// Of those, how many recovery kept.
    pub commits_recovered: usize,
    /// Whether recovery itself was cut and run again.
    pub double_crash: bool,
}

/// Decodes `data` as a [`CrashInput`] and runs it (the cargo-fuzz entry point).
pub fn run_crash_recovery(data: &[u8]) {
    if let Ok(input) = CrashInput::arbitrary_take_rest(Unstructured::new(data)) {
        crash_recovery(&input);
    }
}

/// Runs one input under a deadline of 300 s; panics when the engine breaks a guarantee.
pub fn crash_recovery(input: &CrashInput) -> CrashReport {
    let input = input.clone();
    super::with_deadline("crash_recovery", 300, move || run(&input))
}

pub(crate) fn log_kib(big: bool) -> u32 {
    if big { 128 } else { 64 }
}

/// The image every run starts from: an instance initialized, the database created with table
/// `t0`, cleanly terminated. Built once per log size.
pub(crate) fn base_image(log_kib: u32) -> SimFs {
    static SMALL: OnceLock<SimFs> = OnceLock::new();
    static BIG: OnceLock<SimFs> = OnceLock::new();
    let cell = if log_kib == 64 { &SMALL } else { &BIG };
    let fs = cell.get_or_init(|| {
        let fs = SimFs::new();
        let inst = instance(&fs, log_kib);
        let r = (|| {
            inst.init()?;
            let s = inst.begin_session()?;
            let db = s.create_database(DB, CreateDatabaseGrbit::empty())?;
            s.create_table(db, &workload::table_create(0))?;
            s.close_database(db)?;
            s.end(ese::EndSessionGrbit::empty())?;
            inst.term(TermGrbit::empty())
        })();
        if let Err(e) = r {
            panic!("building the base image failed: {e}");
        }
        fs.crash(CrashModel::DropAll, 0)
    });
    fs.crash(CrashModel::DropAll, 0)
}

/// The committed state of the base image.
pub(crate) fn base_state() -> State {
    let mut s = State::new();
    s.insert(0, super::model::Rows::new());
    s
}

/// A running instance on `fs` with [`workload::SESSIONS`] sessions, each with the database
/// open.
pub(crate) fn start(fs: &SimFs, log_kib: u32) -> (Instance, Vec<(Session, DbId)>) {
    let inst = instance(fs, log_kib);
    let r = (|| {
        inst.init()?;
        let mut sessions = Vec::new();
        for i in 0..workload::SESSIONS {
            let s = inst.begin_session()?;
            if i == 0 {
                s.attach_database(DB, AttachDatabaseGrbit::empty())?;
            }
            let db = s.open_database(DB)?;
            sessions.push((s, db));
        }
        Ok::<_, ese::Error>(sessions)
    })();
    match r {
        Ok(sessions) => (inst, sessions),
        Err(e) => panic!("starting on the base image failed: {e}"),
    }
}

/// Runs the workload on a copy of `base` with the power cut `cut` operations after it starts
/// (`None`: at its end). Returns the disk, the history and the workload's operation count.
fn workload_pass(
    base: &SimFs,
    log_kib: u32,
    ops: &[Op],
    cut: Option<u64>,
) -> (SimFs, History, u64) {
    let fs = base.crash(CrashModel::DropAll, 0);
    let (inst, sessions) = start(&fs, log_kib);
    let begin = fs.op_count();
    if let Some(c) = cut {
        fs.set_power_cut(Some(begin + c));
    }
    let powered_off = || fs.is_powered_off();
    let outcome = workload::run(
        &Harness {
            inst: &inst,
            sessions: &sessions,
            io_expected: &powered_off,
        },
        base_state(),
        ops,
    );
    let used = fs.op_count() - begin;
    // The process dies here: nothing more reaches the disk.
    fs.set_power_cut(Some(0));
    drop(sessions);
    drop(inst);
    (fs, outcome.history, used)
}

/// Recovers `fs` as far as it goes (init only), for counting and for cut recoveries.
fn try_recover(fs: &SimFs, log_kib: u32) {
    let inst = instance(fs, log_kib);
    if inst.init().is_ok() {
        let _ = inst.term(TermGrbit::empty());
    }
}

/// The database's own integrity check (eseutil `/g`), on the detached database.
///
/// # Errors
/// What the check finds.
pub(crate) fn check_integrity(fs: &SimFs, path: &str) -> ese::Result<ese_btree::IntegrityReport> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = ese_btree::Database::open(
        &fsd,
        std::path::Path::new(path),
        ese_btree::DbOptions::new()
            .page_size(PAGE_SIZE)
            .cache_bytes(64 * u64::from(PAGE_SIZE)),
        Arc::new(ese_btree::MemWal::new()),
    )?;
    db.check_integrity()
}

/// Recovers `fs` and checks the result against `history`; returns the recovered prefix's
/// length. Panics when recovery fails or the result breaks a guarantee.
pub(crate) fn verify_recovered(fs: &SimFs, log_kib: u32, history: &History, what: &str) -> usize {
    let inst = instance(fs, log_kib);
    if let Err(e) = inst.init() {
        panic!("{what}: recovery failed: {e} ({e:?})");
    }
    if let Err(e) = check_integrity(fs, DB) {
        panic!("{what}: the integrity check after recovery failed: {e}");
    }
    let r = (|| {
        let s = inst.begin_session()?;
        s.attach_database(DB, AttachDatabaseGrbit::empty())?;
        let db = s.open_database(DB)?;
        let got = workload::read_state(&s, db)?;
        s.end(ese::EndSessionGrbit::empty())?;
        Ok::<_, ese::Error>(got)
    })();
    let got = match r {
        Ok(g) => g,
        Err(e) => panic!("{what}: reading after recovery failed: {e}"),
    };
    let n = match history.check(&got) {
        Ok(n) => n,
        Err(msg) => panic!("{what}: {msg}"),
    };
    if let Err(e) = inst.term(TermGrbit::empty()) {
        panic!("{what}: term after recovery failed: {e}");
    }
    n
}

fn pick(model: u8) -> CrashModel {
    let i = usize::from(model) % CrashModel::ALL.len();
    CrashModel::ALL
        .get(i)
        .copied()
        .unwrap_or(CrashModel::DropAll)
}

fn run(input: &CrashInput) -> CrashReport {
    let log_kib = log_kib(input.big_log);
    let base = base_image(log_kib);
    let (_, _, total) = workload_pass(&base, log_kib, &input.ops, None);
    let cut = u64::from(input.cut) % (total + 1);
    let (fs, history, _) = workload_pass(&base, log_kib, &input.ops, Some(cut));
    let model = pick(input.model);
    let mut img = fs.crash(model, u64::from(input.seed));
    let mut what = format!("cut {cut} of {total}, {model:?} seed {}", input.seed);
    if let Some(rc) = &input.recovery_crash {
        let probe = img.crash(CrashModel::DropAll, 0);
        let before = probe.op_count();
        try_recover(&probe, log_kib);
        let rec_ops = probe.op_count() - before;
        let first = img.crash(CrashModel::DropAll, 0);
        let at = u64::from(rc.cut) % (rec_ops + 1);
        first.set_power_cut(Some(first.op_count() + at));
        try_recover(&first, log_kib);
        first.set_power_cut(Some(0));
        let m2 = pick(rc.model);
        img = first.crash(m2, u64::from(rc.seed));
        what = format!(
            "{what}, recovery cut {at} of {rec_ops}, {m2:?} seed {}",
            rc.seed
        );
    }
    let kept = verify_recovered(&img, log_kib, &history, &what);
    CrashReport {
        workload_ops: total,
        cut,
        commits: history.commits.len(),
        commits_recovered: kept,
        double_crash: input.recovery_crash.is_some(),
    }
}
