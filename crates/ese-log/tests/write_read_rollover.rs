#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Writer and reader on the real file system: append, flush, rollover, reopen, checkpoint,
//! retention and the reader's errors.

use std::sync::Arc;

use ese_core::fs::{FileSystem, OpenOptions, OsFs};
use ese_core::{ErrorKind, Lgpos};
use ese_log::{Checkpoint, Log, LogConfig, LogReader, LogRecord};

fn fs() -> Arc<dyn FileSystem> {
    Arc::new(OsFs::new())
}

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir)
        .file_size_kib(64)
        .lazy_flush_ms(0)
        .reserve_logs(false)
}

fn read_all(fs: &Arc<dyn FileSystem>, dir: &std::path::Path, from: Lgpos) -> Vec<LogRecord> {
    LogReader::open(fs.clone(), dir, "edb", from)
        .unwrap()
        .collect::<ese_core::Result<Vec<_>>>()
        .unwrap()
}

fn payload(i: usize) -> Vec<u8> {
    let len = (i * 37) % 700;
    (0..len)
        .map(|j| (i + j) as u8)
        .chain((i as u64).to_le_bytes())
        .collect()
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
    check::<LogReader>();
    check::<LogConfig>();
    check::<Checkpoint>();
    check::<LogRecord>();
}

#[test]
fn records_round_trip_across_rollovers_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    let mut expect = Vec::new();
    {
        let log = Log::open(fs.clone(), config(dir.path())).unwrap();
        assert_eq!(log.current_generation(), 1);
        for i in 0..400 {
            let p = payload(i);
            let l = log.append(&p).unwrap();
            if i % 7 == 0 {
                log.flush(l).unwrap();
                assert!(log.durable_lgpos() >= l);
            }
            expect.push(LogRecord {
                lgpos: l,
                payload: p,
            });
        }
        log.flush_all().unwrap();
        assert!(
            log.current_generation() >= 3,
            "{}",
            log.current_generation()
        );
    }
    let got = read_all(&fs, dir.path(), Lgpos::MIN);
    assert_eq!(got, expect);
    // Reopen continues in a new generation; old records stay readable.
    let log = Log::open(fs.clone(), config(dir.path())).unwrap();
    let gen_before = log.current_generation();
    let l = log.append_and_flush(b"after reopen").unwrap();
    assert_eq!(l.generation, gen_before);
    assert!(l > expect.last().unwrap().lgpos);
    expect.push(LogRecord {
        lgpos: l,
        payload: b"after reopen".to_vec(),
    });
    assert_eq!(read_all(&fs, dir.path(), Lgpos::MIN), expect);
    // Reading from the middle.
    let mid = expect[200].lgpos;
    assert_eq!(read_all(&fs, dir.path(), mid), expect[200..].to_vec());
}

#[test]
fn concurrent_committers_share_syncs_and_all_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    let log = Arc::new(Log::open(fs.clone(), config(dir.path()).file_size_kib(256)).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..100 {
                    let p = format!("t{t}-r{i}").into_bytes();
                    let l = log.append_and_flush(&p).unwrap();
                    assert!(log.durable_lgpos() >= l);
                    mine.push((l, p));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(Lgpos, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    drop(log);
    let got: Vec<_> = read_all(&fs, dir.path(), Lgpos::MIN)
        .into_iter()
        .map(|r| (r.lgpos, r.payload))
        .collect();
    assert_eq!(got, all);
}

#[test]
fn lazy_records_become_durable_through_the_background_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path()).lazy_flush_ms(2)).unwrap();
    let l = log.append(b"lazy").unwrap();
    log.flush_lazily(l);
    let t = std::time::Instant::now();
    while log.durable_lgpos() < l {
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn the_background_flusher_writes_records_behind_and_syncs_those_a_lazy_commit_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    let log = Log::open(fs.clone(), config(dir.path()).lazy_flush_ms(1)).unwrap();
    let start = log.durable_lgpos();
    let open = log.append(b"a change of a transaction still open").unwrap();
    // Written behind: the record reaches the file (a reader of the live log finds it) ...
    let t = std::time::Instant::now();
    while !read_all(&fs, dir.path(), start)
        .iter()
        .any(|r| r.lgpos == open)
    {
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // ... but nobody asked for it to be durable, so it is not synced.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(log.durable_lgpos() < open);
    // A lazy commit asks: the flusher syncs within its interval.
    let commit = log.append(b"commit").unwrap();
    log.flush_lazily(commit);
    while log.durable_lgpos() < commit {
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let got: Vec<Lgpos> = read_all(&fs, dir.path(), start)
        .iter()
        .map(|r| r.lgpos)
        .collect();
    assert_eq!(got, vec![open, commit]);
}

#[test]
fn checkpoint_survives_reopen_and_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    let log = Log::open(fs.clone(), config(dir.path())).unwrap();
    let first = log.checkpoint().unwrap();
    assert_eq!(first.lgpos, Lgpos::new(1, 8, 0));
    assert_eq!(first.signature, log.signature());
    let l = log.append_and_flush(b"x").unwrap();
    log.write_checkpoint(l, b"db-a;db-b").unwrap();
    let e = log.write_checkpoint(l, &[0u8; 2049]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    let e = log.write_checkpoint(Lgpos::new(99, 0, 0), b"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    // A second open of the same stream is refused while the first is open.
    let e = Log::open(fs.clone(), config(dir.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFilePathInUse);
    let sig = log.signature();
    drop(log);
    let c = Checkpoint::read(fs.as_ref(), &dir.path().join("edb.chk")).unwrap();
    assert_eq!(
        (c.lgpos, c.db_list.as_slice(), c.signature),
        (l, &b"db-a;db-b"[..], sig)
    );
    let log = Log::open(fs.clone(), config(dir.path())).unwrap();
    assert_eq!(log.checkpoint().unwrap(), c);
    assert_eq!(log.signature(), sig);
}

fn archives(dir: &std::path::Path) -> Vec<String> {
    OsFs::new()
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("edb0"))
        .collect()
}

#[test]
fn circular_logging_deletes_generations_older_than_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path()).circular(true)).unwrap();
    let mut last = Lgpos::MIN;
    for i in 0..300 {
        last = log.append_and_flush(&payload(i)).unwrap();
    }
    assert!(archives(dir.path()).len() >= 3);
    log.write_checkpoint(last, b"").unwrap();
    assert!(
        archives(dir.path()).is_empty(),
        "{:?}",
        archives(dir.path())
    );
    drop(log);
    let got = read_all(&fs(), dir.path(), last);
    assert_eq!(got.len(), 1);
}

fn recycled(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("edbrcy"))
        .collect()
}

/// With circular logging, the files of generations behind the checkpoint are kept and become
/// later generations; the frames of their old generation never show up as records.
#[test]
fn circular_logging_reuses_the_files_of_old_generations() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path()).circular(true)).unwrap();
    let mut appended = Vec::new();
    let mut seen_recycled = 0;
    // A checkpoint every 100 records, the last one at record 1199.
    for i in 0..1500 {
        let p = payload(i);
        let l = log.append_and_flush(&p).unwrap();
        appended.push((l, p));
        if i % 100 == 99 && i < 1200 {
            log.write_checkpoint(l, b"").unwrap();
            seen_recycled = seen_recycled.max(recycled(dir.path()).len());
        }
    }
    let generations = log.current_generation();
    assert!(generations >= 10, "{generations} generations");
    assert!(seen_recycled > 0, "no generation file was kept for reuse");
    // Kept files are taken again: the directory never holds more than the slots allow.
    assert!(recycled(dir.path()).len() <= 8);
    drop(log);
    // Every record from the last checkpoint on reads back exactly, though the files they are
    // in held other generations' frames before.
    let from = appended[1199].0;
    let got = read_all(&fs(), dir.path(), from);
    let want: Vec<_> = appended.iter().filter(|(l, _)| *l >= from).collect();
    assert_eq!(want.len(), 301);
    assert_eq!(got.len(), want.len());
    for (g, (l, p)) in got.iter().zip(want) {
        assert_eq!((g.lgpos, &g.payload), (*l, p));
    }
    // And after reopening, appends go on where they stopped.
    let log = Log::open(fs(), config(dir.path()).circular(true)).unwrap();
    let l = log.append_and_flush(b"after reopen").unwrap();
    drop(log);
    let got = read_all(&fs(), dir.path(), l);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"after reopen");
}

#[test]
fn without_circular_logging_generations_stay_until_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path())).unwrap();
    let mut lg = Vec::new();
    for i in 0..300 {
        lg.push(log.append_and_flush(&payload(i)).unwrap());
    }
    let n = archives(dir.path()).len();
    assert!(n >= 3);
    let mid = lg[150];
    log.write_checkpoint(mid, b"").unwrap();
    assert_eq!(archives(dir.path()).len(), n);
    // Truncation never passes the checkpoint.
    let deleted = log.truncate(u32::MAX).unwrap();
    assert_eq!(deleted, mid.generation - 1);
    assert_eq!(log.truncate(u32::MAX).unwrap(), 0);
    drop(log);
    let e = LogReader::open(fs(), dir.path(), "edb", Lgpos::MIN).unwrap();
    assert_eq!(e.generations().0, mid.generation);
    let e = LogReader::open(fs(), dir.path(), "edb", Lgpos::new(1, 8, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingPreviousLogFile);
    assert_eq!(read_all(&fs(), dir.path(), mid).len(), 150);
}

#[test]
fn configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Log::open(fs(), config(dir.path()).file_size_kib(63)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    drop(Log::open(fs(), config(dir.path())).unwrap());
    let e = Log::open(fs(), config(dir.path()).file_size_kib(128)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogFileSizeMismatch);
    let e = Log::open(fs(), config(dir.path()).page_size(4096)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PageSizeMismatch);
}

#[test]
fn record_size_limit_and_lgpos_layout() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path())).unwrap();
    assert_eq!(log.max_payload(), 64 * 1024 - 4096 - 12);
    let e = log.append(&vec![0u8; log.max_payload() + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogBufferTooSmall);
    let a = log.append(b"a").unwrap();
    assert_eq!(a, Lgpos::new(1, 8, 0));
    let big = log.append(&vec![7u8; log.max_payload()]).unwrap();
    assert_eq!(big, Lgpos::new(2, 8, 0));
    log.flush_all().unwrap();
    drop(log);
    let got = read_all(&fs(), dir.path(), Lgpos::MIN);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].payload.len(), 64 * 1024 - 4096 - 12);
}

#[test]
fn missing_current_log_and_missing_middle_generation() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path())).unwrap();
    for i in 0..300 {
        log.append_and_flush(&payload(i)).unwrap();
    }
    drop(log);
    let fs = fs();
    fs.remove_file(&dir.path().join("edb00000002.log")).unwrap();
    let e = LogReader::open(fs.clone(), dir.path(), "edb", Lgpos::MIN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RequiredLogFilesMissing);
    let e = LogReader::open(fs.clone(), dir.path(), "edb", Lgpos::new(1, 8, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RequiredLogFilesMissing);
    fs.remove_file(&dir.path().join("edb.log")).unwrap();
    let e = LogReader::open(fs.clone(), dir.path(), "edb", Lgpos::MIN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingLogFile);
    let e = Log::open(fs, config(dir.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingLogFile);
}

#[test]
fn corruption_before_the_tail_is_log_file_corrupt_and_foreign_generations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path())).unwrap();
    for i in 0..300 {
        log.append_and_flush(&payload(i)).unwrap();
    }
    drop(log);
    let fs = fs();
    let g1 = dir.path().join("edb00000001.log");
    let f = fs.open(&g1, OpenOptions::read_write()).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 4096 + 20).unwrap();
    f.write_all_at(&[b[0] ^ 1], 4096 + 20).unwrap();
    let mut r = LogReader::open(fs.clone(), dir.path(), "edb", Lgpos::MIN).unwrap();
    let e = r.find_map(Result::err).unwrap();
    assert_eq!(e.kind(), ErrorKind::LogFileCorrupt);
    // A generation from another stream.
    let other = tempfile::tempdir().unwrap();
    let log = Log::open(fs.clone(), config(other.path())).unwrap();
    for i in 0..300 {
        log.append_and_flush(&payload(i)).unwrap();
    }
    drop(log);
    std::fs::copy(
        other.path().join("edb00000002.log"),
        dir.path().join("edb00000002.log"),
    )
    .unwrap();
    let e = LogReader::open(fs.clone(), dir.path(), "edb", Lgpos::MIN).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::BadLogSignature | ErrorKind::InvalidLogSequence
        ),
        "{e}"
    );
    // A generation under the wrong name.
    std::fs::copy(
        dir.path().join("edb00000003.log"),
        dir.path().join("edb00000002.log"),
    )
    .unwrap();
    let e = LogReader::open(fs, dir.path(), "edb", Lgpos::MIN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogGenerationMismatch);
}

#[test]
fn the_next_generation_is_prepared_ahead_by_the_background_thread() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    let log = Log::open(fs.clone(), config(dir.path()).lazy_flush_ms(1)).unwrap();
    let mut expect = Vec::new();
    for i in 0..40u8 {
        let p = vec![i; 1000];
        expect.push(LogRecord {
            lgpos: log.append(&p).unwrap(),
            payload: p,
        });
    }
    let t = std::time::Instant::now();
    while !fs.exists(&dir.path().join("edbtmp.log")).unwrap() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "nothing prepared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for i in 40..80u8 {
        let p = vec![i; 1000];
        expect.push(LogRecord {
            lgpos: log.append(&p).unwrap(),
            payload: p,
        });
    }
    log.flush_all().unwrap();
    assert_eq!(log.current_generation(), 2);
    drop(log);
    assert_eq!(read_all(&fs, dir.path(), Lgpos::MIN), expect);
}

/// With the background threads, an append that fills a generation seals it and goes on in the
/// next one; the rollover I/O happens on the flusher thread or in the next flush. Records of
/// every generation come back in order, and a checkpoint in a generation whose rollover is
/// still pending (here even at a record not yet durable, which callers do not do) first
/// completes that rollover, so recovery always finds the checkpoint's generation.
#[test]
fn appends_go_on_in_the_next_generation_while_the_rollover_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs();
    // A long flush interval: the rollover runs when the flusher is woken or a flush comes.
    let log = Log::open(fs.clone(), config(dir.path()).lazy_flush_ms(60_000)).unwrap();
    let mut expect = Vec::new();
    let mut mid_checkpoint = None;
    for i in 0..1000 {
        let p = payload(i);
        let l = log.append(&p).unwrap();
        if mid_checkpoint.is_none() && l.generation == 3 {
            // The first record of generation 3: its rollover may not have run yet.
            log.write_checkpoint(l, b"mid").unwrap();
            assert_eq!(log.current_generation(), 3);
            mid_checkpoint = Some(l);
        }
        expect.push(LogRecord {
            lgpos: l,
            payload: p,
        });
    }
    let last = expect.last().unwrap().lgpos;
    assert!(last.generation >= 5, "{last}");
    log.flush_all().unwrap();
    assert_eq!(log.current_generation(), last.generation);
    assert_eq!(log.durable_lgpos(), last);
    drop(log);
    assert_eq!(read_all(&fs, dir.path(), Lgpos::MIN), expect);
    let from = mid_checkpoint.unwrap();
    let c = Checkpoint::read(fs.as_ref(), &dir.path().join("edb.chk")).unwrap();
    assert_eq!(c.lgpos, from);
    let tail: Vec<_> = expect.into_iter().filter(|r| r.lgpos >= from).collect();
    assert_eq!(read_all(&fs, dir.path(), from), tail);
}

#[test]
fn waited_flushes_count_flushes_that_had_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(fs(), config(dir.path())).unwrap();
    let base = log.waited_flushes();
    let l = log.append(b"one").unwrap();
    log.flush(l).unwrap();
    assert_eq!(log.waited_flushes(), base + 1);
    // Already durable: no write, not counted.
    log.flush(l).unwrap();
    log.flush(Lgpos::MIN).unwrap();
    assert_eq!(log.waited_flushes(), base + 1);
    for i in 0..5u8 {
        log.append_and_flush(&[i; 40]).unwrap();
    }
    assert_eq!(log.waited_flushes(), base + 6);
}
