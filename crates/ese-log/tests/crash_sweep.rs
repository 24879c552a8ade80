#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Power loss at every I/O operation, under every crash model of `SimFs`.
//!
//! A workload of concurrent appends and flushes runs over several generation rollovers and
//! checkpoint updates with the power cut at operation `k`, for every `k` in turn. From each
//! resulting crash image the log must read back every record whose flush returned, byte for
//! byte and in order, nothing that was never appended, and no error but a clean end; it must
//! then reopen, accept a new record and read everything back again.
//!
//! `ESE_LONG_TESTS=1` runs more seeds per model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{ErrorKind, Lgpos};
use ese_log::{Checkpoint, Log, LogConfig, LogReader};

const DIR: &str = "/log";
const THREADS: usize = 3;
const RECORDS_PER_THREAD: usize = 80;

#[derive(Clone, Copy, Debug)]
struct Mode {
    circular: bool,
    /// Run the background flusher (which also prepares the next generation ahead).
    background: bool,
}

fn config(mode: Mode) -> LogConfig {
    LogConfig::new(DIR)
        .file_size_kib(64)
        .lazy_flush_ms(u32::from(mode.background))
        .reserve_logs(true)
        .circular(mode.circular)
}

fn long() -> bool {
    std::env::var_os("ESE_LONG_TESTS").is_some()
}

/// What the workload did before the power went out.
#[derive(Default)]
struct Outcome {
    appended: BTreeMap<Lgpos, Vec<u8>>,
    /// The largest LGPOS a successful flush covered.
    acked: Lgpos,
    /// The last checkpoint whose write returned.
    checkpoint: Option<Lgpos>,
    opened: bool,
}

fn payload(t: usize, i: usize) -> Vec<u8> {
    let len = (t * 131 + i * 397) % 1400;
    let mut p = format!("t{t}i{i}:").into_bytes();
    p.extend((0..len).map(|j| (j * 7 + t + i) as u8));
    p
}

/// Runs the workload on `fs` until it finishes or an operation fails.
fn workload(fs: &SimFs, mode: Mode) -> Outcome {
    let mut out = Outcome::default();
    let Ok(log) = Log::open(Arc::new(fs.clone()), config(mode)) else {
        return out;
    };
    out.opened = true;
    let log = Arc::new(log);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut appended = Vec::new();
                let mut acked = Lgpos::MIN;
                let mut checkpoint = None;
                for i in 0..RECORDS_PER_THREAD {
                    if mode.background && t == 0 && i % 5 == 2 {
                        // Give the background thread time to prepare the next generation.
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    let p = payload(t, i);
                    let Ok(l) = log.append(&p) else { break };
                    appended.push((l, p));
                    if (i + t) % 2 == 0 {
                        if log.flush(l).is_err() {
                            break;
                        }
                        acked = acked.max(l);
                        if t == 0 && i % 8 == 0 {
                            // Checkpoint at a record already durable, lagging a little.
                            let at = appended[appended.len().saturating_sub(5)].0;
                            if log
                                .write_checkpoint(at, format!("db@{i}").as_bytes())
                                .is_err()
                            {
                                break;
                            }
                            checkpoint = Some(at);
                        }
                    }
                }
                (appended, acked, checkpoint)
            })
        })
        .collect();
    for h in handles {
        let (appended, acked, checkpoint) = h.join().unwrap();
        out.appended.extend(appended);
        out.acked = out.acked.max(acked);
        if checkpoint.is_some() {
            out.checkpoint = checkpoint;
        }
    }
    out
}

fn read_all(fs: &SimFs, from: Lgpos) -> ese_core::Result<Vec<(Lgpos, Vec<u8>)>> {
    LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", from)?
        .map(|r| r.map(|r| (r.lgpos, r.payload)))
        .collect()
}

/// Checks one crash image against what the workload did; returns a description on failure.
fn check_image(img: &SimFs, out: &Outcome, mode: Mode) -> Result<(), String> {
    let circular = mode.circular;
    let any_acked = out.acked > Lgpos::MIN || out.checkpoint.is_some();
    let has_log = img.exists(&Path::new(DIR).join("edb.log")).unwrap();
    let mut records = Vec::new();
    if has_log {
        // With circular logging, old generations may be gone: read from the checkpoint.
        let from = if circular {
            Checkpoint::read(img, &Path::new(DIR).join("edb.chk")).map_or(Lgpos::MIN, |c| c.lgpos)
        } else {
            Lgpos::MIN
        };
        records = read_all(img, from).map_err(|e| format!("reading: {e}"))?;
        let mut prev = Lgpos::MIN;
        for (l, p) in &records {
            if *l <= prev && prev > Lgpos::MIN {
                return Err(format!("records out of order at {l}"));
            }
            prev = *l;
            match out.appended.get(l) {
                Some(q) if q == p => {}
                Some(_) => return Err(format!("record at {l} differs from what was appended")),
                None => return Err(format!("record at {l} was never appended")),
            }
        }
        let first = records.first().map_or(Lgpos::MAX, |r| r.0);
        for l in out
            .appended
            .keys()
            .filter(|l| **l <= out.acked && **l >= first.min(from))
        {
            if records.binary_search_by_key(l, |r| r.0).is_err() {
                return Err(format!("acknowledged record {l} is missing"));
            }
        }
        if !circular
            && let Some((l, _)) = out.appended.iter().find(|(l, _)| **l <= out.acked)
            && records.first().map(|r| r.0) != Some(*l)
        {
            return Err(format!(
                "the first acknowledged record {l} is not the first read"
            ));
        }
        if let Some(c) = out.checkpoint {
            let got = Checkpoint::read(img, &Path::new(DIR).join("edb.chk"))
                .map_err(|e| format!("checkpoint: {e}"))?;
            if got.lgpos < c {
                return Err(format!("checkpoint went back from {c} to {}", got.lgpos));
            }
            read_all(img, got.lgpos).map_err(|e| format!("reading from the checkpoint: {e}"))?;
        }
    } else if any_acked {
        return Err("edb.log is gone although records were acknowledged".to_owned());
    }
    // Recovery opens the stream again and continues after the tail.
    let log = Log::open(Arc::new(img.clone()), config(mode)).map_err(|e| format!("reopen: {e}"))?;
    let l = log
        .append_and_flush(b"after the crash")
        .map_err(|e| format!("append after reopen: {e}"))?;
    drop(log);
    let from = records.first().map_or(Lgpos::MIN, |r| r.0);
    let again = read_all(img, if has_log { from } else { Lgpos::MIN })
        .map_err(|e| format!("reading after reopen: {e}"))?;
    let mut expect = records;
    expect.push((l, b"after the crash".to_vec()));
    if again != expect {
        return Err(format!(
            "after reopen read {} records, expected {}",
            again.len(),
            expect.len()
        ));
    }
    Ok(())
}

fn sweep(mode: Mode, seeds: u64) -> u64 {
    // Count the operations of a complete run (concurrency varies it a little).
    let total = (0..3)
        .map(|_| {
            let fs = SimFs::new();
            workload(&fs, mode);
            fs.op_count()
        })
        .max()
        .unwrap();
    let mut images = 0u64;
    let mut failures = Vec::new();
    for k in 0..=total + 2 {
        let fs = SimFs::new();
        fs.set_power_cut(Some(k));
        let out = workload(&fs, mode);
        for model in CrashModel::ALL {
            for seed in 0..seeds {
                let img = fs.crash(model, seed ^ (k << 8));
                images += 1;
                if let Err(e) = check_image(&img, &out, mode) {
                    failures.push(format!("cut at op {k}, {model:?}, seed {seed}: {e}"));
                }
            }
        }
        assert!(
            out.opened || k < 60,
            "the log never opened with the cut at {k}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("crash sweep ({mode:?}): {total} ops per run, {images} crash images checked");
    images
}

#[test]
fn crash_at_every_operation_keeps_every_acknowledged_record() {
    let seeds = if long() { 16 } else { 4 };
    sweep(
        Mode {
            circular: false,
            background: false,
        },
        seeds,
    );
}

#[test]
fn crash_at_every_operation_with_circular_logging() {
    let seeds = if long() { 8 } else { 2 };
    sweep(
        Mode {
            circular: true,
            background: false,
        },
        seeds,
    );
}

/// With the background flusher, the next generation is prepared ahead and lazy records are
/// flushed by another thread; the operation order varies from run to run.
#[test]
fn crash_at_every_operation_with_the_background_flusher() {
    let seeds = if long() { 8 } else { 2 };
    sweep(
        Mode {
            circular: false,
            background: true,
        },
        seeds,
    );
}

#[test]
fn workload_completes_without_a_crash() {
    let fs = SimFs::new();
    let mode = Mode {
        circular: false,
        background: false,
    };
    let out = workload(&fs, mode);
    assert_eq!(out.appended.len(), THREADS * RECORDS_PER_THREAD);
    let log = Log::open(Arc::new(fs.clone()), config(mode)).unwrap();
    assert!(
        log.current_generation() >= 4,
        "{}",
        log.current_generation()
    );
    drop(log);
    let all = read_all(&fs, Lgpos::MIN).unwrap();
    assert_eq!(all.len(), THREADS * RECORDS_PER_THREAD);
    let e = Log::open(Arc::new(fs.clone()), config(mode).file_size_kib(128)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFileSizeMismatch);
}
