//! Fuzz target `io_faults`: the workload of [`crash_recovery`](super::crash_recovery) with an
//! injected I/O error (EIO or ENOSPC, once or from then on) instead of a power cut, either in
//! the workload or in the recovery that follows a crash.
//!
//! What must hold: every call returns a result or a typed I/O error (`DiskIO`, `DiskFull`,
//! `LogWriteFail`, `LogDiskFull`, `InstanceUnavailable*`), never a panic and never a hang;
//! after the fault is cleared, term, and a new init (optionally after a crash), recovery
//! succeeds, the integrity check passes, and nothing durably committed is lost (the same
//! check as `crash_recovery`).

use arbitrary::{Arbitrary, Unstructured};
use ese::{RollbackGrbit, TermGrbit};
use ese_core::fs::{CrashModel, Fault, FaultError, OpKind, SimFs};

use super::crash_recovery::{base_image, base_state, log_kib, start, verify_recovered};
use super::workload::{self, Harness, Op};
use super::{instance, is_io_error};

/// The operation kinds a fault may hit (every kind [`SimFs`] counts).
const KINDS: [OpKind; 10] = OpKind::ALL;

/// The input of `io_faults`.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct FaultInput {
    /// Generations of 128 KiB instead of 64 KiB.
    pub big_log: bool,
    /// The kind of operation that fails (modulo 10, in [`OpKind::ALL`] order).
    pub kind: u8,
    /// Which operation of that kind fails (modulo the count of that kind in the run, plus
    /// one: the last value never fires).
    pub nth: u16,
    /// ENOSPC instead of EIO.
    pub enospc: bool,
    /// Every later operation of the kind fails too.
    pub persistent: bool,
    /// The fault hits the recovery after a crash at the end of the workload, instead of the
    /// workload.
    pub in_recovery: bool,
    /// After the failure, the machine also loses power (unsynced writes are lost) before the
    /// new init.
    pub crash_after: bool,
    /// The workload (at most 300 operations are run).
    pub ops: Vec<Op>,
}

/// What one run did, for the replay test's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    /// Whether the fault fired.
    pub fired: bool,
    /// The error the failed call returned (its JET name), if one did.
    pub error: Option<String>,
    /// The error term returned after the failure (its JET name), if it did.
    pub term_error: Option<String>,
    /// Commits recovery kept of those the workload made.
    pub commits_recovered: usize,
    /// Commits the workload made.
    pub commits: usize,
}

/// Decodes `data` as a [`FaultInput`] and runs it (the cargo-fuzz entry point).
pub fn run_io_faults(data: &[u8]) {
    if let Ok(input) = FaultInput::arbitrary_take_rest(Unstructured::new(data)) {
        io_faults(&input);
    }
}

/// Runs one input under a deadline of 300 s; panics when the engine breaks a guarantee.
pub fn io_faults(input: &FaultInput) -> FaultReport {
    let input = input.clone();
    super::with_deadline("io_faults", 300, move || run(&input))
}

fn kind_of(k: u8) -> OpKind {
    KINDS
        .get(usize::from(k) % KINDS.len())
        .copied()
        .unwrap_or(OpKind::Write)
}

fn fault(input: &FaultInput, kind: OpKind, nth: u64) -> Fault {
    let error = if input.enospc {
        FaultError::Enospc
    } else {
        FaultError::Eio
    };
    if input.persistent {
        Fault::from_then_on(kind, nth, error)
    } else {
        Fault::once(kind, nth, error)
    }
}

/// Whether the armed fault has fired: more operations of its kind were attempted since it was
/// armed than its index.
fn fired(fs: &SimFs, kind: OpKind, armed_at: u64, nth: u64) -> bool {
    fs.op_counts().get(kind) > armed_at + nth
}

fn run(input: &FaultInput) -> FaultReport {
    if input.in_recovery {
        in_recovery(input)
    } else {
        in_workload(input)
    }
}

fn in_workload(input: &FaultInput) -> FaultReport {
    let log_kib = log_kib(input.big_log);
    let kind = kind_of(input.kind);
    let base = base_image(log_kib);
    // Count the operations of the kind in a run without a fault.
    let count = {
        let fs = base.crash(CrashModel::DropAll, 0);
        let (inst, sessions) = start(&fs, log_kib);
        let before = fs.op_counts().get(kind);
        let never = || false;
        workload::run(
            &Harness {
                inst: &inst,
                sessions: &sessions,
                io_expected: &never,
            },
            base_state(),
            &input.ops,
        );
        let n = fs.op_counts().get(kind) - before;
        fs.set_power_cut(Some(0));
        n
    };
    let nth = u64::from(input.nth) % (count + 1);
    let fs = base.crash(CrashModel::DropAll, 0);
    let (inst, sessions) = start(&fs, log_kib);
    let armed_at = fs.op_counts().get(kind);
    fs.inject_fault(fault(input, kind, nth));
    let has_fired = || fired(&fs, kind, armed_at, nth);
    let outcome = workload::run(
        &Harness {
            inst: &inst,
            sessions: &sessions,
            io_expected: &has_fired,
        },
        base_state(),
        &input.ops,
    );
    let was_fired = has_fired();
    fs.clear_faults();
    // Shut down as an application would: roll back what is open, then term.
    for (s, _) in &sessions {
        let _ = s.rollback(RollbackGrbit::ALL);
    }
    let term = inst.term(TermGrbit::empty());
    if !was_fired && let Err(e) = &term {
        panic!("term failed though no fault fired: {e}");
    }
    if let Err(e) = &term
        && !is_io_error(e)
        && e.kind() != ese::ErrorKind::TooManyActiveUsers
    {
        panic!("term after an I/O fault returned an untyped error: {e} ({e:?})");
    }
    drop(sessions);
    drop(inst);
    let img = if input.crash_after {
        fs.set_power_cut(Some(0));
        fs.crash(CrashModel::DropAll, 0)
    } else {
        fs
    };
    let what = format!(
        "fault {kind:?} #{nth} of {count} ({}, {}), stopped by {:?}, term {:?}",
        if input.enospc { "ENOSPC" } else { "EIO" },
        if input.persistent {
            "from then on"
        } else {
            "once"
        },
        outcome.stopped.as_ref().map(|e| e.kind().name()),
        term.as_ref().err().map(|e| e.kind().name()),
    );
    let kept = verify_recovered(&img, log_kib, &outcome.history, &what);
    FaultReport {
        fired: was_fired,
        error: outcome.stopped.as_ref().map(|e| e.kind().name().to_owned()),
        term_error: term.as_ref().err().map(|e| e.kind().name().to_owned()),
        commits_recovered: kept,
        commits: outcome.history.commits.len(),
    }
}

fn in_recovery(input: &FaultInput) -> FaultReport {
    let log_kib = log_kib(input.big_log);
    let kind = kind_of(input.kind);
    let base = base_image(log_kib);
    // The workload runs to its end; then the power fails.
    let fs = base.crash(CrashModel::DropAll, 0);
    let (inst, sessions) = start(&fs, log_kib);
    let never = || false;
    let outcome = workload::run(
        &Harness {
            inst: &inst,
            sessions: &sessions,
            io_expected: &never,
        },
        base_state(),
        &input.ops,
    );
    fs.set_power_cut(Some(0));
    drop(sessions);
    drop(inst);
    let crashed = fs.crash(CrashModel::DropAll, 0);
    // Count the operations of the kind one recovery performs.
    let count = {
        let probe = crashed.crash(CrashModel::DropAll, 0);
        let before = probe.op_counts().get(kind);
        let inst = instance(&probe, log_kib);
        if inst.init().is_ok() {
            let _ = inst.term(TermGrbit::empty());
        }
        probe.op_counts().get(kind) - before
    };
    let nth = u64::from(input.nth) % (count + 1);
    let img = crashed.crash(CrashModel::DropAll, 0);
    let armed_at = img.op_counts().get(kind);
    img.inject_fault(fault(input, kind, nth));
    let inst = instance(&img, log_kib);
    let init = inst.init();
    let was_fired = fired(&img, kind, armed_at, nth);
    match &init {
        Ok(()) => {
            let _ = inst.term(TermGrbit::empty());
        }
        Err(e) if !was_fired => panic!("recovery failed though no fault fired: {e} ({e:?})"),
        Err(e) if !is_io_error(e) => {
            panic!("recovery under an I/O fault returned an untyped error: {e} ({e:?})")
        }
        Err(_) => {}
    }
    img.clear_faults();
    drop(inst);
    let img = if input.crash_after {
        img.set_power_cut(Some(0));
        img.crash(CrashModel::DropAll, 0)
    } else {
        img
    };
    let what = format!(
        "recovery fault {kind:?} #{nth} of {count} ({}, {}), init {:?}",
        if input.enospc { "ENOSPC" } else { "EIO" },
        if input.persistent {
            "from then on"
        } else {
            "once"
        },
        init.as_ref().err().map(|e| e.kind().name()),
    );
    let kept = verify_recovered(&img, log_kib, &outcome.history, &what);
    FaultReport {
        fired: was_fired,
        error: init.err().map(|e| e.kind().name().to_owned()),
        term_error: None,
        commits_recovered: kept,
        commits: outcome.history.commits.len(),
    }
}
