#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! EIO and ENOSPC injected at every I/O operation of a workload, one at a time.
//!
//! The call that hits the fault must return an error (or, for ENOSPC while preparing a new
//! generation, the log must switch to a reserve log and say so), and once any call has
//! returned an error, no later flush may report success (fail-stop). Every record whose flush
//! returned must survive a crash right after.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_core::fs::{CrashModel, Fault, FaultError, OpKind, SimFs};
use ese_core::{ErrorKind, Lgpos};
use ese_log::{Log, LogConfig, LogReader};

const DIR: &str = "/log";

fn config() -> LogConfig {
    LogConfig::new(DIR).file_size_kib(64).lazy_flush_ms(0)
}

struct Outcome {
    appended: BTreeMap<Lgpos, Vec<u8>>,
    acked: Lgpos,
    first_error: Option<ErrorKind>,
    flush_ok_after_error: bool,
    disk_full: bool,
}

fn workload(fs: &SimFs) -> Outcome {
    let mut out = Outcome {
        appended: BTreeMap::new(),
        acked: Lgpos::MIN,
        first_error: None,
        flush_ok_after_error: false,
        disk_full: false,
    };
    let log = match Log::open(Arc::new(fs.clone()), config()) {
        Ok(l) => l,
        Err(e) => {
            out.first_error = Some(e.kind());
            return out;
        }
    };
    for i in 0..120usize {
        let p: Vec<u8> = (0..(i * 211) % 1300).map(|j| (i ^ j) as u8).collect();
        match log.append(&p) {
            Ok(l) => {
                out.appended.insert(l, p);
            }
            Err(e) => {
                out.first_error.get_or_insert(e.kind());
            }
        }
        if i % 2 == 1 {
            match log.flush_all() {
                Ok(()) => {
                    if out.first_error.is_some() {
                        out.flush_ok_after_error = true;
                    }
                    out.acked = out.acked.max(log.last_lgpos());
                }
                Err(e) => {
                    out.first_error.get_or_insert(e.kind());
                }
            }
        }
        if i % 16 == 15
            && let Err(e) =
                log.write_checkpoint(log.durable_lgpos().max(Lgpos::new(1, 8, 0)), b"db")
        {
            out.first_error.get_or_insert(e.kind());
        }
    }
    out.disk_full = log.is_disk_full();
    out
}

#[test]
fn every_fault_is_reported_and_latches() {
    let clean = SimFs::new();
    let base = workload(&clean);
    assert!(base.first_error.is_none());
    let counts = clean.op_counts();
    let mut runs = 0;
    let mut problems = Vec::new();
    for kind in OpKind::ALL {
        for nth in 0..counts.get(kind) {
            for (error, persistent) in [
                (FaultError::Eio, false),
                (FaultError::Enospc, false),
                (FaultError::Eio, true),
            ] {
                let fs = SimFs::new();
                fs.inject_fault(Fault {
                    kind,
                    nth,
                    error,
                    persistent,
                });
                let out = workload(&fs);
                runs += 1;
                let what = format!("{error:?} (persistent: {persistent}) on {kind:?} #{nth}");
                let hit = fs.op_counts().get(kind) > nth;
                if hit && out.first_error.is_none() && !out.disk_full {
                    problems.push(format!("{what}: no call reported it"));
                }
                if out.flush_ok_after_error && out.first_error != Some(ErrorKind::LogDiskFull) {
                    problems.push(format!(
                        "{what}: a flush succeeded after {:?}",
                        out.first_error
                    ));
                }
                if out.disk_full && error != FaultError::Enospc {
                    problems.push(format!("{what}: disk-full mode without ENOSPC"));
                }
                // Everything acknowledged survives a power loss now.
                fs.clear_faults();
                let img = fs.crash(CrashModel::TornSectors, nth);
                if out.acked > Lgpos::MIN {
                    let got: BTreeMap<Lgpos, Vec<u8>> =
                        LogReader::open(Arc::new(img.clone()), Path::new(DIR), "edb", Lgpos::MIN)
                            .unwrap()
                            .map(|r| r.map(|r| (r.lgpos, r.payload)))
                            .collect::<ese_core::Result<_>>()
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    for (l, p) in &got {
                        assert_eq!(out.appended.get(l), Some(p), "{what}: record {l}");
                    }
                    for l in out.appended.keys().filter(|l| **l <= out.acked) {
                        assert!(got.contains_key(l), "{what}: acknowledged {l} lost");
                    }
                }
                // And the stream opens again.
                Log::open(Arc::new(img), config())
                    .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!("fault sweep: {runs} faulty runs checked");
}

#[test]
fn enospc_on_a_new_generation_switches_to_a_reserve_log() {
    let fs = SimFs::new();
    let log = Log::open(Arc::new(fs.clone()), config()).unwrap();
    log.append_and_flush(b"before").unwrap();
    // Every create from now on fails with ENOSPC: the next generation must come from a
    // reserve log.
    fs.inject_fault(Fault::from_then_on(OpKind::Create, 0, FaultError::Enospc));
    let mut last = Lgpos::MIN;
    loop {
        match log.append_and_flush(&[1u8; 1000]) {
            Ok(l) => last = l,
            Err(e) => {
                // The append that needed the new generation learns that the disk is full.
                assert_eq!(e.kind(), ErrorKind::LogDiskFull);
                break;
            }
        }
    }
    assert!(log.is_disk_full());
    assert!(!log.is_failed());
    log.flush_all().unwrap();
    let e = log.append(b"ordinary").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogDiskFull);
    let s = log.append_shutdown(b"term").unwrap();
    log.flush(s).unwrap();
    assert!(s > last);
    assert!(!fs.exists(Path::new("/log/edbres00001.jrs")).unwrap());
    // Fill the first reserve; the second one takes over; then the log is out of space.
    let mut err = None;
    for _ in 0..200 {
        if let Err(e) = log.append_shutdown(&[2u8; 1000]) {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("the reserve logs ran out");
    assert_eq!(e.kind(), ErrorKind::LogDiskFull);
    assert!(log.flush_all().is_err());
    drop(log);
    let got: Vec<_> = LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", Lgpos::MIN)
        .unwrap()
        .collect::<ese_core::Result<_>>()
        .unwrap();
    assert!(got.iter().any(|r| r.payload == b"term"));
}

use ese_core::fs::FileSystem as _;
