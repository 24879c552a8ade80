#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Model test: random sequences of appends, flushes, checkpoints and crashes (including a
//! crash during the reopen that follows a crash) against a list of acknowledged records.
//!
//! After every recovery the reader must return every acknowledged record, byte-identical and
//! in order, and only records that were appended.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_core::Lgpos;
use ese_core::fs::{CrashModel, SimFs};
use ese_log::{Log, LogConfig, LogReader};
use proptest::prelude::*;

const DIR: &str = "/log";

#[derive(Clone, Debug)]
enum Op {
    Append(u16),
    Flush,
    Commit(u16),
    Checkpoint,
    /// Power loss under a model with a seed; optionally another one after `n` operations of
    /// the reopen.
    Crash(usize, u64, Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..3000).prop_map(Op::Append),
        2 => Just(Op::Flush),
        4 => (0u16..3000).prop_map(Op::Commit),
        1 => Just(Op::Checkpoint),
        1 => (0usize..4, any::<u64>(), proptest::option::of(0u8..40)).prop_map(|(m, s, c)| Op::Crash(m, s, c)),
    ]
}

fn config() -> LogConfig {
    LogConfig::new(DIR)
        .file_size_kib(64)
        .lazy_flush_ms(0)
        .reserve_logs(false)
}

fn read(fs: &SimFs) -> Vec<(Lgpos, Vec<u8>)> {
    LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", Lgpos::MIN)
        .unwrap()
        .map(|r| r.map(|r| (r.lgpos, r.payload)))
        .collect::<ese_core::Result<_>>()
        .unwrap()
}

/// Reopens after a crash, checks the log against the model and resets the model to it.
fn recover(fs: &SimFs, appended: &mut BTreeMap<Lgpos, Vec<u8>>, acked: &mut Lgpos) -> Log {
    let log = Log::open(Arc::new(fs.clone()), config()).unwrap();
    let got = read(fs);
    for (l, p) in &got {
        assert_eq!(appended.get(l), Some(p), "record {l} was not appended so");
    }
    for l in appended.keys().filter(|l| **l <= *acked) {
        assert!(
            got.iter().any(|(g, _)| g == l),
            "acknowledged record {l} lost"
        );
    }
    *appended = got.into_iter().collect();
    *acked = appended.keys().next_back().copied().unwrap_or(Lgpos::MIN);
    log
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_acknowledged_records(ops in proptest::collection::vec(op(), 1..60)) {
        let mut fs = SimFs::new();
        let mut log = Some(Log::open(Arc::new(fs.clone()), config()).unwrap());
        let mut appended = BTreeMap::new();
        let mut acked = Lgpos::MIN;
        for (n, op) in ops.into_iter().enumerate() {
            let l = log.as_ref().unwrap();
            match op {
                Op::Append(len) | Op::Commit(len) => {
                    let p: Vec<u8> = (0..len).map(|i| (usize::from(i) + n) as u8).collect();
                    let at = l.append(&p).unwrap();
                    appended.insert(at, p);
                    if matches!(op, Op::Commit(_)) {
                        l.flush(at).unwrap();
                        acked = acked.max(at);
                    }
                }
                Op::Flush => {
                    l.flush_all().unwrap();
                    acked = acked.max(l.last_lgpos());
                }
                Op::Checkpoint => {
                    let at = l.durable_lgpos().max(Lgpos::new(l.checkpoint().unwrap().lgpos.generation, 8, 0));
                    l.write_checkpoint(at, b"dbs").unwrap();
                }
                Op::Crash(model, seed, cut) => {
                    fs.set_power_cut(Some(fs.op_count()));
                    drop(log.take());
                    fs = fs.crash(CrashModel::ALL[model], seed);
                    if let Some(k) = cut {
                        // A crash during recovery, then recovery again.
                        fs.set_power_cut(Some(u64::from(k)));
                        let _ = Log::open(Arc::new(fs.clone()), config());
                        fs = fs.crash(CrashModel::ALL[(model + 1) % 4], seed ^ 1);
                    }
                    log = Some(recover(&fs, &mut appended, &mut acked));
                }
            }
        }
        fs.set_power_cut(Some(fs.op_count()));
        drop(log.take());
        let fs = fs.crash(CrashModel::TornSectors, 7);
        drop(recover(&fs, &mut appended, &mut acked));
    }
}
