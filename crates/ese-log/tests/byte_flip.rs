#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Parser robustness: flip one byte at a time in a small log file and in the checkpoint; every
//! read must be a clean error or a correct read (records identical to what was written), and
//! nothing may panic.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_core::fs::{CrashModel, FileSystem, OpenOptions, SimFs};
use ese_core::{ErrorKind, Lgpos};
use ese_log::{Checkpoint, Log, LogConfig, LogReader};

const DIR: &str = "/log";

fn config() -> LogConfig {
    LogConfig::new(DIR)
        .file_size_kib(64)
        .lazy_flush_ms(0)
        .reserve_logs(false)
}

/// A stream with two generations of small records and a few checkpoint updates.
fn build() -> (SimFs, BTreeMap<Lgpos, Vec<u8>>, Vec<Checkpoint>) {
    let fs = SimFs::new();
    let log = Log::open(Arc::new(fs.clone()), config()).unwrap();
    let mut records = BTreeMap::new();
    let mut ckpts = vec![log.checkpoint().unwrap()];
    for i in 0..250usize {
        let p: Vec<u8> = (0..(i * 53) % 400).map(|j| (i + j) as u8).collect();
        let l = log.append(&p).unwrap();
        records.insert(l, p);
        if i % 2 == 0 {
            log.flush(l).unwrap();
        }
        if i % 60 == 0 {
            log.write_checkpoint(l, format!("dbs {i}").as_bytes())
                .unwrap();
            ckpts.push(log.checkpoint().unwrap());
        }
    }
    log.flush_all().unwrap();
    assert!(log.current_generation() >= 2);
    drop(log);
    (fs.crash(CrashModel::DropAll, 0), records, ckpts)
}

fn check_read(fs: &SimFs, records: &BTreeMap<Lgpos, Vec<u8>>, what: &str) {
    let Ok(reader) = LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", Lgpos::MIN)
    else {
        return;
    };
    for r in reader {
        match r {
            Ok(r) => assert_eq!(
                records.get(&r.lgpos),
                Some(&r.payload),
                "{what}: {}",
                r.lgpos
            ),
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::LogFileCorrupt | ErrorKind::LogFileSizeMismatch
                    ),
                    "{what}: {e}"
                );
                break;
            }
        }
    }
}

fn flip(fs: &SimFs, path: &Path, off: u64) {
    let f = fs.open(path, OpenOptions::read_write()).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x5A], off).unwrap();
}

fn offsets(len: u64, dense: u64) -> impl Iterator<Item = u64> {
    (0..len).filter(move |o| *o < dense || o % 16 == 0)
}

#[test]
fn flipped_log_bytes_give_clean_errors_or_correct_records() {
    let (fs, records, _) = build();
    let mut flips = 0;
    for name in ["edb00000001.log", "edb.log"] {
        let path = Path::new(DIR).join(name);
        let len = fs.open(&path, OpenOptions::read()).unwrap().len().unwrap();
        for off in offsets(len, 8192) {
            flip(&fs, &path, off);
            check_read(&fs, &records, &format!("{name} byte {off}"));
            if off % 64 == 0 {
                // Opening the stream for writing parses the same bytes.
                let copy = fs.crash(CrashModel::DropAll, 0);
                let _ = Log::open(Arc::new(copy), config());
            }
            flip(&fs, &path, off);
            flips += 1;
        }
    }
    check_read(&fs, &records, "restored");
    println!("byte flips in log files: {flips}");
}

#[test]
fn flipped_checkpoint_bytes_give_a_valid_copy_or_a_clean_error() {
    let (fs, _, ckpts) = build();
    let path = Path::new(DIR).join("edb.chk");
    let newest = ckpts.last().unwrap().clone();
    let previous = ckpts[ckpts.len() - 2].clone();
    for off in 0..8192 {
        flip(&fs, &path, off);
        match Checkpoint::read(&fs, &path) {
            Ok(c) => assert!(c == newest || c == previous, "byte {off}: {c:?}"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::CheckpointCorrupt | ErrorKind::BadLogVersion
                ),
                "byte {off}: {e}"
            ),
        }
        if off % 64 == 0 {
            let copy = fs.crash(CrashModel::DropAll, 0);
            let _ = Log::open(Arc::new(copy), config());
        }
        flip(&fs, &path, off);
    }
    assert_eq!(Checkpoint::read(&fs, &path).unwrap(), newest);
}

#[test]
fn truncated_and_foreign_files_give_their_errors() {
    let (fs, _, _) = build();
    let path = Path::new(DIR).join("edb00000001.log");
    let f = fs.open(&path, OpenOptions::read_write()).unwrap();
    f.set_len(40_000).unwrap();
    let e = LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", Lgpos::MIN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFileSizeMismatch);
    f.set_len(100).unwrap();
    let e = LogReader::open(Arc::new(fs.clone()), Path::new(DIR), "edb", Lgpos::MIN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFileCorrupt);
    let cur = Path::new(DIR).join("edb.log");
    fs.open(&cur, OpenOptions::read_write())
        .unwrap()
        .set_len(10)
        .unwrap();
    let e = Log::open(Arc::new(fs.clone()), config()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFileCorrupt);
}
