//! Online backup and restore (hard recovery) through the public API:
//!
//! - a full backup taken while four sessions commit, restored into a fresh instance, gives
//!   the source as of the backup's end: every session's transactions form a prefix of what it
//!   committed (nothing torn, nothing rolled back), at least everything committed before the
//!   backup began and nothing begun after it ended; the integrity check passes;
//! - full + incremental chains, and point-of-failure recovery with the newer logs;
//! - the restoring state seen by other threads while a restore is held by its progress
//!   callback (`RestoreInProgress`, -506; init gets `AlreadyInitialized`, -1030);
//! - a crash at every I/O of a backup (never taken for a valid backup) and of a restore (can be
//!   run again), on `SimFs`;
//! - damaged backups (a flipped byte in a page, a log, the descriptor; a missing or foreign
//!   log) fail with their specific error and leave nothing restored;
//! - the error codes of ESE-REFERENCE §7 around backup (-504, -505, -526, -560, -1001, -1030).
//!
//! The crash sweeps cut the power at about 20 of the I/O operations of the backup and of the
//! restore by default; `ESE_CRASH_FULL=1` cuts at every one, with two seeds per crash model,
//! over a larger database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};

use common::code;
use ese::{
    AttachDatabaseGrbit, BackupGrbit, BackupKind, ColumnDef, ColumnType, CommitGrbit,
    CreateDatabaseGrbit, DbId, EndExternalBackupGrbit, IndexCreate, IndexGrbit, Instance,
    InstanceState, Move, Prep, Progress, ProgressPhase, RollbackGrbit, Session, TableCreate,
    TermGrbit,
};
use ese_core::fs::{CrashModel, FileSystem, OpenOptions, OsFs, SimFs};

type Rows = BTreeMap<u32, Vec<u8>>;

fn table() -> TableCreate {
    TableCreate {
        name: "t".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::UnsignedLong),
            ColumnDef::new("v", ColumnType::Binary),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

/// An instance with small pages and 64 KiB log generations (so backups span several), with
/// its system and log files under `root`.
fn builder(name: &str, root: &Path) -> ese::InstanceBuilder {
    Instance::builder(name)
        .system_path(root.join("sys"))
        .log_path(root.join("log"))
        .page_size(4096)
        .log_file_size_kib(64)
        .cache_size_max_bytes(128 * 4096)
}

fn no_progress() -> impl FnMut(Progress) {
    |_| {}
}

fn read_all(s: &Session, db: DbId) -> Rows {
    let mut t = s.open_table(db, "t").unwrap();
    let (id, v) = (t.column_id("id").unwrap(), t.column_id("v").unwrap());
    let mut m = Rows::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        let k = u32::from_le_bytes(t.retrieve_column(id).unwrap().unwrap().try_into().unwrap());
        m.insert(k, t.retrieve_column(v).unwrap().unwrap_or_default());
        r = t.move_to(Move::Next);
    }
    assert_eq!(r.unwrap_err().kind(), ese::ErrorKind::NoCurrentRecord);
    m
}

/// Inserts `keys` in one transaction, each with a value derived from the key.
fn insert(s: &Session, db: DbId, keys: impl IntoIterator<Item = u32>) {
    let mut t = s.open_table(db, "t").unwrap();
    let (id, v) = (t.column_id("id").unwrap(), t.column_id("v").unwrap());
    s.begin_transaction().unwrap();
    for k in keys {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&k.to_le_bytes())).unwrap();
        t.set_column(v, Some(&value(k))).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

fn value(k: u32) -> Vec<u8> {
    let n = 20 + (k % 180) as usize;
    (0..n).map(|i| (k as usize * 31 + i) as u8).collect()
}

fn expected(keys: impl IntoIterator<Item = u32>) -> Rows {
    keys.into_iter().map(|k| (k, value(k))).collect()
}

/// Initializes `inst`, attaches `db_path`, reads the table and checks the database's integrity.
fn open_and_read(inst: &Instance, db_path: &Path) -> Rows {
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(db_path, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(db_path).unwrap();
    s.check_database(db).unwrap();
    let rows = read_all(&s, db);
    s.close_database(db).unwrap();
    rows
}

// ---------------------------------------------------------------------------------------
// 1. Backup during a concurrent workload.

const COUNTER: u32 = 0xFF00_0000;

/// Transaction `n` of writer `w` inserts row `w << 24 | n` and sets the writer's counter row
/// to `n`; every seventh transaction inserts a row it then rolls back.
/// `commits` receives the log position of each committed transaction's commit record.
fn writer(
    s: &Session,
    db: DbId,
    w: u32,
    committed: &AtomicU32,
    commits: &Mutex<Vec<ese::Lgpos>>,
    stop: &AtomicBool,
    min_txns: u32,
) {
    let mut t = s.open_table(db, "t").unwrap();
    let (id, v) = (t.column_id("id").unwrap(), t.column_id("v").unwrap());
    let mut n = 0u32;
    let mut attempt = 0u32;
    while !stop.load(Ordering::SeqCst) || n < min_txns {
        attempt += 1;
        s.begin_transaction().unwrap();
        if attempt.is_multiple_of(7) {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(id, Some(&((w << 24) | 0x80_0000 | attempt).to_le_bytes()))
                .unwrap();
            t.set_column(v, Some(b"rolled back")).unwrap();
            t.update().unwrap();
            s.rollback(RollbackGrbit::ALL).unwrap();
            continue;
        }
        let key = (w << 24) | n;
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(id, Some(&key.to_le_bytes())).unwrap();
        t.set_column(v, Some(&value(key))).unwrap();
        t.update().unwrap();
        let ck = COUNTER | w;
        if n == 0 {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(id, Some(&ck.to_le_bytes())).unwrap();
        } else {
            t.seek(&[Some(&ck.to_le_bytes())], ese::Seek::Eq).unwrap();
            t.prepare_update(Prep::Replace).unwrap();
        }
        t.set_column(v, Some(&n.to_le_bytes())).unwrap();
        t.update().unwrap();
        let id = s.commit_transaction2(CommitGrbit::empty(), 0).unwrap();
        commits.lock().unwrap().push(
            id.lgpos
                .expect("a transaction that inserted logs its commit"),
        );
        n += 1;
        committed.store(n, Ordering::SeqCst);
    }
}

/// Per writer, the number of transactions the rows show, after checking that they form a
/// prefix, that the counter row agrees and that no rolled-back row is present.
fn writer_prefixes(rows: &Rows, writers: u32) -> Vec<u32> {
    (0..writers)
        .map(|w| {
            let mine: Vec<u32> = rows
                .keys()
                .copied()
                .filter(|k| k >> 24 == w)
                .map(|k| k & 0x00FF_FFFF)
                .collect();
            assert!(
                mine.iter().all(|n| n & 0x80_0000 == 0),
                "a rolled-back row of writer {w} is present"
            );
            let count = mine.len() as u32;
            assert_eq!(
                mine,
                (0..count).collect::<Vec<_>>(),
                "writer {w}: not a prefix"
            );
            for n in 0..count {
                let key = (w << 24) | n;
                assert_eq!(rows[&key], value(key));
            }
            match rows.get(&(COUNTER | w)) {
                Some(c) => assert_eq!(
                    u32::from_le_bytes(c[..].try_into().unwrap()) + 1,
                    count,
                    "writer {w}: counter torn from its rows"
                ),
                None => assert_eq!(count, 0),
            }
            count
        })
        .collect()
}

#[test]
fn backup_during_four_writers_restores_the_state_at_the_backup_end() {
    const WRITERS: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let src_root = dir.path().join("src");
    let db_path = src_root.join("db").join("t.edb");
    let inst = builder("bk-src", &src_root)
        .checkpoint_depth_bytes(64 * 1024)
        // No deferral while commits run: the checkpointer races them.
        .checkpoint_defer_bytes(0)
        .checkpoint_interval_ms(5)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    // Some data before the workload, so the database has many pages to copy.
    for chunk in 0..60u32 {
        insert(&s, db, (0..100).map(|i| 0xF000_0000 | (chunk * 100 + i)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..WRITERS).map(|_| AtomicU32::new(0)).collect());
    let commits: Arc<Vec<Mutex<Vec<ese::Lgpos>>>> =
        Arc::new((0..WRITERS).map(|_| Mutex::new(Vec::new())).collect());
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let ws = inst.begin_session().unwrap();
        let wdb = ws.open_database(&db_path).unwrap();
        let (stop, counts, commits) =
            (Arc::clone(&stop), Arc::clone(&counts), Arc::clone(&commits));
        handles.push(std::thread::spawn(move || {
            let w_ = w as usize;
            writer(&ws, wdb, w, &counts[w_], &commits[w_], &stop, 5);
            ws.close_database(wdb).unwrap();
            ws.end(ese::EndSessionGrbit::empty()).unwrap();
        }));
    }
    // Let the writers get going, then back up while they run.
    while counts.iter().any(|c| c.load(Ordering::SeqCst) < 5) {
        std::thread::yield_now();
    }
    let before: Vec<u32> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let backup_dir = dir.path().join("backup");
    let mut reports = Vec::new();
    let summary = inst
        .backup(&backup_dir, BackupGrbit::empty(), &mut |p| reports.push(p))
        .unwrap();
    let after: Vec<u32> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    // Keep writing after the backup: none of it may appear in the restore.
    while counts
        .iter()
        .zip(&after)
        .any(|(c, a)| c.load(Ordering::SeqCst) < a + 3)
    {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    let source_rows = read_all(&s, db);
    let source_counts = writer_prefixes(&source_rows, WRITERS);
    s.close_database(db).unwrap();
    inst.term(TermGrbit::empty()).unwrap();

    assert_eq!(summary.kind, BackupKind::Full);
    assert_eq!(summary.databases, vec![db_path.clone()]);
    assert!(summary.generations.1 >= summary.generations.0 && summary.end > summary.start);
    assert!(
        before.iter().zip(&after).any(|(b, a)| a > b),
        "the writers committed during the backup"
    );
    assert!(reports.windows(2).all(|w| w[0].percent <= w[1].percent));
    assert_eq!(
        reports.last().map(|p| (p.phase, p.percent)),
        Some((ProgressPhase::Done, 100))
    );

    // Restore into a fresh instance elsewhere.
    let dst_root = dir.path().join("dst");
    let restored = builder("bk-dst", &dst_root).create().unwrap();
    let stats = restored
        .restore(&backup_dir, dst_root.join("db"), &mut no_progress())
        .unwrap();
    assert_eq!(restored.state(), InstanceState::Created);
    assert!(stats.records > 0);
    let rows = open_and_read(&restored, &dst_root.join("db").join("t.edb"));
    let got = writer_prefixes(&rows, WRITERS);
    println!(
        "committed per writer: {before:?} when the backup began, {after:?} when it returned, \
         {got:?} restored, {source_counts:?} at the end; backup {summary:?}"
    );
    // Exactly the transactions whose commit record precedes the backup's end mark.
    let at_end: Vec<u32> = commits
        .iter()
        .map(|c| {
            let c = c.lock().unwrap();
            assert!(c.windows(2).all(|p| p[0] < p[1]), "commit positions ascend");
            c.iter().filter(|l| **l < summary.end).count() as u32
        })
        .collect();
    assert_eq!(
        got, at_end,
        "restored writers' commits != commits before the end mark"
    );
    for w in 0..WRITERS as usize {
        assert!(
            got[w] >= before[w],
            "writer {w}: {} < {}",
            got[w],
            before[w]
        );
        assert!(got[w] < source_counts[w]);
    }
    // The rows before the workload, exactly.
    let preload: Rows = rows
        .iter()
        .filter(|(k, _)| *k >> 24 == 0xF0)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(preload, expected((0..6000).map(|i| 0xF000_0000 | i)));
    assert_eq!(
        rows.len(),
        6000 + got
            .iter()
            .map(|&c| c as usize + usize::from(c > 0))
            .sum::<usize>()
    );
    restored.term(TermGrbit::empty()).unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Full + incremental chains; point-of-failure recovery.

#[test]
fn full_and_incremental_chain_and_point_of_failure_replay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let db_path = root.join("db").join("t.edb");
    let inst = builder("chain", &root).create().unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    let batch = |b: u32| (b * 300)..(b * 300 + 300);
    for i in batch(0).step_by(50) {
        insert(&s, db, i..i + 50);
    }
    assert_eq!(
        code(inst.backup(
            dir.path().join("inc0"),
            BackupGrbit::INCREMENTAL,
            &mut no_progress()
        )),
        -560
    );
    let full = inst
        .backup(
            dir.path().join("full"),
            BackupGrbit::TRUNCATE_LOGS,
            &mut no_progress(),
        )
        .unwrap();
    for i in batch(1).step_by(50) {
        insert(&s, db, i..i + 50);
    }
    let inc1 = inst
        .backup(
            dir.path().join("inc1"),
            BackupGrbit::INCREMENTAL,
            &mut no_progress(),
        )
        .unwrap();
    for i in batch(2).step_by(50) {
        insert(&s, db, i..i + 50);
    }
    let inc2 = inst
        .backup(
            dir.path().join("inc2"),
            BackupGrbit::INCREMENTAL | BackupGrbit::TRUNCATE_LOGS,
            &mut no_progress(),
        )
        .unwrap();
    assert_eq!(inc1.kind, BackupKind::Incremental);
    assert!(inc1.databases.is_empty());
    assert_eq!(
        inc1.generations.0, full.generations.1,
        "an incremental starts where the last backup ended"
    );
    assert_eq!(inc2.generations.0, inc1.generations.1);
    assert!(full.end < inc1.end && inc1.end < inc2.end);
    // Truncation kept the generation the backup ended in, and the log still recovers.
    assert!(
        full.truncated_logs + inc2.truncated_logs > 0,
        "{full:?} {inc2:?}"
    );
    for i in batch(3).step_by(50) {
        insert(&s, db, i..i + 50);
    }
    // The source dies: nothing is shut down, and its database file is lost.
    s.close_database(db).unwrap();
    drop(s);
    drop(inst);
    std::fs::remove_file(&db_path).unwrap();

    let restore_into = |name: &str, chain: &[&str]| -> Rows {
        let r = dir.path().join(name);
        let inst = builder(name, &r).create().unwrap();
        let dirs: Vec<PathBuf> = chain.iter().map(|c| dir.path().join(c)).collect();
        inst.restore_chain(&dirs, r.join("db"), &mut no_progress())
            .unwrap();
        let rows = open_and_read(&inst, &r.join("db").join("t.edb"));
        inst.term(TermGrbit::empty()).unwrap();
        rows
    };
    assert_eq!(restore_into("r-full", &["full"]), expected(batch(0)));
    assert_eq!(
        restore_into("r-inc1", &["full", "inc1"]),
        expected(batch(0).chain(batch(1)))
    );
    assert_eq!(
        restore_into("r-inc2", &["full", "inc1", "inc2"]),
        expected(0..900)
    );

    // Point of failure: restore into the source's own log path, which holds the logs written
    // after the last backup; everything committed is back.
    let inst = builder("chain", &root).create().unwrap();
    // The logs were truncated after the second incremental backup: without it the log path's
    // generations do not chain onto the backups, and nothing is changed.
    let short = [dir.path().join("full"), dir.path().join("inc1")];
    assert_eq!(
        code(inst.restore_chain(&short, root.join("db"), &mut no_progress())),
        -556
    );
    assert!(!db_path.exists());
    let chain = [
        dir.path().join("full"),
        dir.path().join("inc1"),
        dir.path().join("inc2"),
    ];
    let mut phases = Vec::new();
    inst.restore_chain(&chain, root.join("db"), &mut |p| phases.push(p.phase))
        .unwrap();
    for ph in [
        ProgressPhase::Verify,
        ProgressPhase::CopyDatabases,
        ProgressPhase::Replay,
        ProgressPhase::Done,
    ] {
        assert!(phases.contains(&ph), "{ph:?} not reported: {phases:?}");
    }
    assert_eq!(open_and_read(&inst, &db_path), expected(0..1200));
    // A restored database starts a new backup history: an incremental backup needs a new
    // full one.
    assert_eq!(
        code(inst.backup(
            dir.path().join("after-inc"),
            BackupGrbit::INCREMENTAL,
            &mut no_progress()
        )),
        -560
    );
    inst.backup(
        dir.path().join("after-full"),
        BackupGrbit::empty(),
        &mut no_progress(),
    )
    .unwrap();
    // The instance goes on: new commits, a crash, recovery.
    let s = inst.begin_session().unwrap();
    let db = s.open_database(&db_path).unwrap();
    insert(&s, db, 5000..5010);
    s.close_database(db).unwrap();
    drop(s);
    drop(inst);
    let inst = builder("chain", &root).create().unwrap();
    assert_eq!(
        open_and_read(&inst, &db_path),
        expected((0..1200).chain(5000..5010))
    );
    inst.term(TermGrbit::empty()).unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. RestoreInProgress observed for real.

/// A source with a database and a full backup of it in `dir/backup`; returns the rows.
fn source_with_backup(dir: &Path, rows: u32) -> Rows {
    let root = dir.join("src");
    let db_path = root.join("db").join("t.edb");
    let inst = builder("src", &root).create().unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    for i in (0..rows).step_by(40) {
        insert(&s, db, i..(i + 40).min(rows));
    }
    inst.backup(dir.join("backup"), BackupGrbit::empty(), &mut no_progress())
        .unwrap();
    s.close_database(db).unwrap();
    inst.term(TermGrbit::empty()).unwrap();
    expected(0..rows)
}

#[test]
fn restore_in_progress_is_seen_by_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    let want = source_with_backup(dir.path(), 400);
    let root = dir.path().join("r");
    let inst = builder("restoring", &root).create().unwrap();
    // A session from an earlier run of the instance: its calls go through the instance gate.
    inst.init().unwrap();
    let stale = inst.begin_session().unwrap();
    inst.term(TermGrbit::empty()).unwrap();
    // That run left a log stream of its own; a restore needs an empty log path (or the
    // backup's own stream).
    std::fs::remove_dir_all(root.join("log")).unwrap();
    assert_eq!(
        code(inst.restore(
            dir.path().join("nothing"),
            root.join("db"),
            &mut no_progress()
        )),
        -615
    );

    for hold_in in [ProgressPhase::Verify, ProgressPhase::Replay] {
        let (held_tx, held_rx) = mpsc::channel();
        let release = Arc::new(Barrier::new(2));
        let r2 = Arc::clone(&release);
        let inst2 = inst.clone();
        let (bk, dest) = (
            dir.path().join("backup"),
            root.join(format!("db-{hold_in:?}")),
        );
        let t = std::thread::spawn(move || {
            let mut held = false;
            inst2.restore(&bk, &dest, &mut |p: Progress| {
                if p.phase == hold_in && !held {
                    held = true;
                    held_tx.send(p).unwrap();
                    r2.wait();
                }
            })
        });
        let p = held_rx.recv().unwrap();
        assert_eq!(p.phase, hold_in);
        // Held inside the restore: every other call gets RestoreInProgress, init gets
        // AlreadyInitialized.
        assert_eq!(inst.state(), InstanceState::Restoring);
        assert_eq!(code(inst.begin_session()), -506);
        assert_eq!(code(inst.init()), -1030);
        assert_eq!(code(inst.term(TermGrbit::empty())), -506);
        assert_eq!(code(inst.stop_service()), -506);
        assert_eq!(code(inst.checkpoint_now()), -506);
        assert_eq!(
            code(inst.backup(
                dir.path().join("x"),
                BackupGrbit::empty(),
                &mut no_progress()
            )),
            -506
        );
        assert_eq!(code(inst.begin_external_backup(BackupGrbit::empty())), -506);
        assert_eq!(
            code(inst.restore(
                dir.path().join("backup"),
                root.join("db2"),
                &mut no_progress()
            )),
            -1030
        );
        assert_eq!(code(stale.begin_transaction()), -506);
        assert_eq!(code(stale.transaction_level()), -506);
        assert_eq!(
            code(stale.open_database(root.join("db").join("t.edb"))),
            -506
        );
        assert_eq!(code(stale.end(ese::EndSessionGrbit::empty())), -506);
        release.wait();
        t.join().unwrap().unwrap();
        assert_eq!(inst.state(), InstanceState::Created);
    }
    // After the restore, the instance works.
    let rows = open_and_read(&inst, &root.join("db-Replay").join("t.edb"));
    assert_eq!(rows, want);
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // A restore into a running instance: AlreadyInitialized, as ESE.
    assert_eq!(
        code(inst.restore(
            dir.path().join("backup"),
            root.join("db3"),
            &mut no_progress()
        )),
        -1030
    );
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. Crashes at every I/O of a backup and of a restore.

const SIM_DB: &str = "/data/t.edb";

fn sim_instance(fs: &SimFs, log: &str) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("sim")
        .system_path("/sys")
        .log_path(log)
        .page_size(4096)
        .log_file_size_kib(64)
        .cache_size_max_bytes(64 * 4096)
        .checkpoint_depth_bytes(1 << 40)
        .version_cleanup_interval_ms(0)
        .file_system(fsd)
        .create()
        .unwrap()
}

fn sim_read(inst: &Instance, db_path: &str) -> ese::Result<Rows> {
    inst.init()?;
    let s = inst.begin_session()?;
    s.attach_database(db_path, AttachDatabaseGrbit::empty())?;
    let db = s.open_database(db_path)?;
    s.check_database(db)?;
    Ok(read_all(&s, db))
}

/// A clean image with a database of `rows` rows, and the instance still to run on it.
fn sim_base(rows: u32) -> SimFs {
    let fs = SimFs::new();
    let inst = sim_instance(&fs, "/log");
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(SIM_DB, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    for i in (0..rows).step_by(50) {
        insert(&s, db, i..(i + 50).min(rows));
    }
    s.close_database(db).unwrap();
    inst.term(TermGrbit::empty()).unwrap();
    fs.crash(CrashModel::DropAll, 0)
}

/// The keys the crash sweeps commit after the base image: `LATE..AFTER`.
const LATE: u32 = 1_000_000;
const AFTER: u32 = LATE + 500;

/// Runs a backup on a copy of `base` (with a few commits before it, some of them still in the
/// log only), the power cut at operation `cut` of the backup; returns the disk and how many
/// operations the backup used.
fn sim_backup_run(base: &SimFs, cut: Option<u64>) -> (SimFs, u64, ese::Result<ese::BackupSummary>) {
    let fs = base.crash(CrashModel::DropAll, 0);
    let inst = sim_instance(&fs, "/log");
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(SIM_DB, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(SIM_DB).unwrap();
    insert(&s, db, LATE..LATE + 20);
    inst.checkpoint_now().unwrap();
    // Changes after the checkpoint (dirty pages, records only in the log), spanning a log
    // generation boundary, so the backup copies several generations.
    for i in (LATE + 20..AFTER).step_by(40) {
        insert(&s, db, i..(i + 40).min(AFTER));
    }
    let start = fs.op_count();
    if let Some(k) = cut {
        fs.set_power_cut(Some(start + k));
    }
    let r = inst.backup("/backup", BackupGrbit::TRUNCATE_LOGS, &mut no_progress());
    let used = fs.op_count() - start;
    fs.set_power_cut(Some(0));
    drop(s);
    drop(inst);
    (fs, used, r)
}

/// Rows in the database of the crash sweeps: enough for a backup spanning several log
/// generations; more with `ESE_CRASH_FULL=1`.
fn sweep_rows() -> u32 {
    if std::env::var("ESE_CRASH_FULL").is_ok() {
        3000
    } else {
        300
    }
}

/// (step between cuts, seeds per crash model) for a sweep over `ops` operations: every
/// operation with two seeds under `ESE_CRASH_FULL=1`, otherwise about 20 cuts, one seed.
fn sweep_params(ops: u64) -> (u64, u64) {
    if std::env::var("ESE_CRASH_FULL").is_ok() {
        (1, 2)
    } else {
        ((ops / 20).max(1), 1)
    }
}

#[test]
fn a_crashed_backup_is_never_taken_for_a_valid_one() {
    let base = sim_base(sweep_rows());
    let want = expected((0..sweep_rows()).chain(LATE..AFTER));
    let (_, total, r) = sim_backup_run(&base, None);
    let g = r.unwrap().generations;
    println!("the backup copies generations {}..={}", g.0, g.1);
    assert!(g.1 > g.0, "the sweep's backup spans generations");
    let (step, seeds) = sweep_params(total);
    let (mut images, mut valid) = (0, 0);
    let mut k = 0;
    // (The log's background preparation of the next generation makes the operation count
    // vary a little between runs, so a cut near the end may or may not stop the backup.)
    while k <= total {
        let (fs, _, _) = sim_backup_run(&base, Some(k));
        for model in CrashModel::ALL {
            for seed in 0..seeds {
                let img = fs.crash(model, seed);
                // The source recovers whatever the backup left behind.
                let src = sim_instance(&img, "/log");
                assert_eq!(
                    sim_read(&src, SIM_DB)
                        .unwrap_or_else(|e| panic!("cut {k} {model:?}: source: {e}")),
                    want
                );
                src.term(TermGrbit::empty()).unwrap();
                // The backup restores exactly, or is refused as not a backup.
                let img = img.crash(CrashModel::DropAll, 0);
                let inst = sim_instance(&img, "/rlog");
                match inst.restore("/backup", "/restored", &mut no_progress()) {
                    Ok(_) => {
                        valid += 1;
                        assert_eq!(
                            sim_read(&inst, "/restored/t.edb")
                                .unwrap_or_else(|e| panic!("cut {k} {model:?}: {e}")),
                            want,
                            "cut {k} {model:?}"
                        );
                    }
                    Err(e) => assert_eq!(e.code(), -615, "cut {k} {model:?}: {e}"),
                }
                images += 1;
            }
        }
        k += step;
    }
    println!(
        "backup crash images: {images} over {total} I/O operations, {valid} restored a valid backup"
    );
    assert!(images > 40 && valid > 0 && valid < images);
}

/// A disk holding a finished backup of a 300-row database in `/backup`.
fn sim_with_backup() -> SimFs {
    let (fs, _, r) = sim_backup_run(&sim_base(sweep_rows()), None);
    r.unwrap();
    fs.crash(CrashModel::DropAll, 0)
}

#[test]
fn a_crashed_restore_can_be_run_again() {
    let base = sim_with_backup();
    let want = expected((0..sweep_rows()).chain(LATE..AFTER));
    let run = |cut: Option<u64>| -> (SimFs, u64) {
        let fs = base.crash(CrashModel::DropAll, 0);
        let inst = sim_instance(&fs, "/rlog");
        let start = fs.op_count();
        if let Some(k) = cut {
            fs.set_power_cut(Some(start + k));
        }
        let r = inst.restore("/backup", "/restored", &mut no_progress());
        let used = fs.op_count() - start;
        assert!(cut.is_some() || r.is_ok(), "{r:?}");
        fs.set_power_cut(Some(0));
        (fs, used)
    };
    let (_, total) = run(None);
    let (step, seeds) = sweep_params(total);
    let mut images = 0;
    let mut refused_init = 0;
    let mut k = 0;
    while k < total {
        let (fs, _) = run(Some(k));
        for model in CrashModel::ALL {
            for seed in 0..seeds {
                let img = fs.crash(model, seed);
                // Until a restore finishes, init refuses (or, before the restore changed
                // anything, starts an empty instance).
                let probe = sim_instance(&img.crash(CrashModel::DropAll, 0), "/rlog");
                if let Err(e) = probe.init() {
                    assert_eq!(e.code(), -544, "cut {k} {model:?}: {e}");
                    refused_init += 1;
                }
                let inst = sim_instance(&img, "/rlog");
                inst.restore("/backup", "/restored", &mut no_progress())
                    .unwrap_or_else(|e| {
                        panic!("cut {k} {model:?} seed {seed}: restore again: {e}")
                    });
                assert_eq!(
                    sim_read(&inst, "/restored/t.edb")
                        .unwrap_or_else(|e| panic!("cut {k} {model:?}: {e}")),
                    want,
                    "cut {k} {model:?} seed {seed}"
                );
                images += 1;
            }
        }
        k += step;
    }
    println!(
        "restore crash images: {images} over {total} I/O operations; init refused on {refused_init}"
    );
    assert!(images > 40 && refused_init > 0);
}

// ---------------------------------------------------------------------------------------
// 5. Damaged backups.

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn flip(path: &Path, at: u64) {
    let f = OsFs::new().open(path, OpenOptions::read_write()).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5A;
    f.write_all_at(&b, at).unwrap();
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// The finished generations of a backup (archive names), oldest first; the last generation
/// is `edb.log`.
fn archived_logs(dir: &Path) -> Vec<PathBuf> {
    log_files(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "edb.log"))
        .collect()
}

/// The restore of the damaged copy fails with `want`, leaves no database (final or staging)
/// in the destination, and the instance initializes afterwards with nothing attached.
fn assert_refused(dir: &Path, backup: &Path, want: i32, what: &str) {
    let root = dir.join(format!("r-{what}"));
    let inst = builder(what, &root).create().unwrap();
    let e = inst
        .restore(backup, root.join("db"), &mut no_progress())
        .expect_err(what);
    assert_eq!(e.code(), want, "{what}: {e}");
    assert_eq!(inst.state(), InstanceState::Created);
    let left: Vec<_> = std::fs::read_dir(root.join("db"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: left behind {left:?}");
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    assert_eq!(code(s.open_database(root.join("db").join("t.edb"))), -1203);
    assert_eq!(
        code(s.attach_database(root.join("db").join("t.edb"), AttachDatabaseGrbit::empty())),
        -1811
    );
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
}

#[test]
fn damaged_backups_fail_with_their_error_and_restore_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let want = source_with_backup(dir.path(), 1500);
    let good = dir.path().join("backup");
    let logs = archived_logs(&good);
    assert!(logs.len() >= 2, "{logs:?}");
    let damaged = |name: &str, f: &dyn Fn(&Path)| {
        let d = dir.path().join(format!("bad-{name}"));
        copy_dir(&good, &d);
        f(&d);
        d
    };
    // A flipped byte in a database page (page 5: the middle of its bytes).
    let d = damaged("page", &|d| {
        flip(&d.join("t.edb"), (5 - 1 + 2) * 4096 + 2000);
    });
    assert_refused(dir.path(), &d, -1018, "page");
    // In a header slot: the other slot still verifies, the file's checksum does not.
    let d = damaged("header", &|d| flip(&d.join("t.edb"), 100));
    assert_refused(dir.path(), &d, -1018, "header");
    // In a record of a finished log generation.
    let first = logs[0].file_name().unwrap().to_owned();
    let d = damaged("log", &|d| flip(&d.join(&first), 4096 + 700));
    assert_refused(dir.path(), &d, -573, "log");
    // In a log header.
    let d = damaged("log-header", &|d| flip(&d.join(&first), 30));
    assert_refused(dir.path(), &d, -573, "log-header");
    // In the last generation, before the backup's end: a torn backup log.
    let d = damaged("torn", &|d| flip(&d.join("edb.log"), 4096 + 100));
    assert_refused(dir.path(), &d, -570, "torn");
    // In the zeros after the backup's end: only the checksum sees it.
    let d = damaged("tail", &|d| flip(&d.join("edb.log"), 64 * 1024 - 10));
    assert_refused(dir.path(), &d, -573, "tail");
    // The descriptor.
    let d = damaged("descriptor", &|d| flip(&d.join("backup.dsc"), 50));
    assert_refused(dir.path(), &d, -615, "descriptor");
    // A missing log generation; a missing descriptor (a backup that did not finish).
    let d = damaged("missing", &|d| {
        std::fs::remove_file(d.join(&first)).unwrap();
    });
    assert_refused(dir.path(), &d, -557, "missing");
    let d = damaged("unfinished", &|d| {
        std::fs::remove_file(d.join("backup.dsc")).unwrap();
    });
    assert_refused(dir.path(), &d, -615, "unfinished");
    // A generation from another log stream (same workload, same generation numbers).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    source_with_backup(&other, 1500);
    let second = logs[1].file_name().unwrap().to_owned();
    let d = damaged("foreign", &|d| {
        std::fs::copy(other.join("backup").join(&second), d.join(&second)).unwrap();
    });
    assert_refused(dir.path(), &d, -555, "foreign");
    // Chains: an incremental first, or an incremental of another stream.
    let root = dir.path().join("r-chain");
    let inst = builder("chain", &root).create().unwrap();
    let src = builder("src", &dir.path().join("src")).create().unwrap();
    src.init().unwrap();
    let s = src.begin_session().unwrap();
    s.attach_database(
        dir.path().join("src/db/t.edb"),
        AttachDatabaseGrbit::empty(),
    )
    .unwrap();
    src.backup(
        dir.path().join("inc"),
        BackupGrbit::INCREMENTAL,
        &mut no_progress(),
    )
    .unwrap();
    drop(s);
    src.term(TermGrbit::empty()).unwrap();
    let inc = dir.path().join("inc");
    assert_eq!(
        code(inst.restore(&inc, root.join("db"), &mut no_progress())),
        -560
    );
    assert_eq!(
        code(inst.restore_chain(
            &[other.join("backup"), inc.clone()],
            root.join("db"),
            &mut no_progress()
        )),
        -555
    );
    assert_eq!(
        code(inst.restore_chain(
            &[good.clone(), inc.clone(), inc.clone()],
            root.join("db"),
            &mut no_progress()
        )),
        -556
    );
    // The intact backup, and the chain, still restore.
    let r = dir.path().join("r-good");
    let inst = builder("good", &r).create().unwrap();
    inst.restore_chain(&[good, inc], r.join("db"), &mut no_progress())
        .unwrap();
    assert_eq!(open_and_read(&inst, &r.join("db").join("t.edb")), want);
    inst.term(TermGrbit::empty()).unwrap();
}

// ---------------------------------------------------------------------------------------
// Error codes and the streaming form.

#[test]
fn backup_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let created = builder("codes", &root).create().unwrap();
    assert_eq!(
        code(created.backup(
            dir.path().join("b0"),
            BackupGrbit::empty(),
            &mut no_progress()
        )),
        -1029
    );
    assert_eq!(
        code(created.begin_external_backup(BackupGrbit::empty())),
        -1029
    );
    created.init().unwrap();
    let s = created.begin_session().unwrap();
    let db_path = root.join("db").join("t.edb");
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    insert(&s, db, 0..10);
    assert_eq!(
        code(created.backup(
            dir.path().join("b1"),
            BackupGrbit::SNAPSHOT,
            &mut no_progress()
        )),
        -1001
    );
    assert_eq!(
        code(created.backup(
            dir.path().join("b1"),
            BackupGrbit::from_bits_retain(0x400),
            &mut no_progress()
        )),
        -900
    );
    std::fs::create_dir_all(dir.path().join("full")).unwrap();
    std::fs::write(dir.path().join("full").join("x"), b"x").unwrap();
    assert_eq!(
        code(created.backup(
            dir.path().join("full"),
            BackupGrbit::empty(),
            &mut no_progress()
        )),
        -504
    );
    // No external backup running.
    assert_eq!(code(created.backup_attach_info()), -520);
    assert_eq!(
        code(created.end_external_backup(EndExternalBackupGrbit::empty())),
        -520
    );
    // A second backup while one runs; term refuses until it ends, or stops it.
    created.begin_external_backup(BackupGrbit::empty()).unwrap();
    assert_eq!(
        code(created.begin_external_backup(BackupGrbit::empty())),
        -505
    );
    assert_eq!(
        code(created.backup(
            dir.path().join("b2"),
            BackupGrbit::empty(),
            &mut no_progress()
        )),
        -505
    );
    s.close_database(db).unwrap();
    assert_eq!(code(created.term(TermGrbit::empty())), -505);
    assert_eq!(created.state(), InstanceState::Running);
    created.term(TermGrbit::STOP_BACKUP).unwrap();
    // Incremental backups need a full one first, and no circular logging.
    let circ = builder("circ", &dir.path().join("circ"))
        .circular_log(true)
        .create()
        .unwrap();
    circ.init().unwrap();
    let cs = circ.begin_session().unwrap();
    let cdb = cs
        .create_database(
            dir.path().join("circ/db/c.edb"),
            CreateDatabaseGrbit::empty(),
        )
        .unwrap();
    cs.create_table(cdb, &table()).unwrap();
    insert(&cs, cdb, 0..10);
    circ.backup(
        dir.path().join("circ-full"),
        BackupGrbit::empty(),
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(
        code(circ.backup(
            dir.path().join("circ-inc"),
            BackupGrbit::INCREMENTAL,
            &mut no_progress()
        )),
        -526
    );
    drop(cs);
    circ.term(TermGrbit::empty()).unwrap();
    // A full backup with circular logging restores.
    let r = dir.path().join("circ-r");
    let ri = builder("circ-r", &r).circular_log(true).create().unwrap();
    ri.restore(
        dir.path().join("circ-full"),
        r.join("db"),
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(
        open_and_read(&ri, &r.join("db").join("c.edb")),
        expected(0..10)
    );
    ri.term(TermGrbit::empty()).unwrap();
    // Parameters must match the backup's.
    let wrong = builder("wrong", &dir.path().join("wrong"))
        .page_size(8192)
        .log_file_size_kib(128)
        .create()
        .unwrap();
    assert_eq!(
        code(wrong.restore(
            dir.path().join("circ-full"),
            dir.path().join("wrong/db"),
            &mut no_progress()
        )),
        -1213
    );
}

#[test]
fn streaming_backup_to_the_callers_storage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let db_path = root.join("db").join("t.edb");
    let inst = builder("stream", &root).create().unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    insert(&s, db, 0..500);
    let out = dir.path().join("mine");
    std::fs::create_dir_all(&out).unwrap();
    inst.begin_external_backup(BackupGrbit::empty()).unwrap();
    assert_eq!(
        code(
            inst.backup_log_info()
                .and_then(|_| inst.open_backup_file(&db_path))
        ),
        -521
    );
    inst.end_external_backup(EndExternalBackupGrbit::ABORT)
        .unwrap();

    inst.begin_external_backup(BackupGrbit::ATOMIC).unwrap();
    let copy = |path: &Path| {
        let f = inst.open_backup_file(path).unwrap();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 3000]; // not a multiple of anything
        loop {
            let n = inst.read_backup_file(&f, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        assert_eq!(data.len() as u64, f.size());
        std::fs::write(out.join(f.name()), &data).unwrap();
        inst.close_backup_file(f).unwrap();
    };
    let dbs = inst.backup_attach_info().unwrap();
    assert_eq!(dbs, vec![db_path.clone()]);
    assert_eq!(code(inst.external_backup_descriptor()), -521);
    for p in &dbs {
        copy(p);
    }
    // Commits during the backup are fine; those after the log information are not in it.
    insert(&s, db, 500..510);
    // A database created during the backup is not in it.
    let other_path = root.join("db").join("u.edb");
    let udb = s
        .create_database(&other_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(udb, &table()).unwrap();
    insert(&s, udb, 0..20);
    let logs = inst.backup_log_info().unwrap();
    assert!(!logs.is_empty());
    assert_eq!(code(inst.open_backup_file(root.join("nope.log"))), -1003);
    for p in &logs {
        copy(p);
    }
    insert(&s, db, 600..610);
    std::fs::write(
        out.join("backup.dsc"),
        inst.external_backup_descriptor().unwrap(),
    )
    .unwrap();
    inst.truncate_backup_logs().unwrap();
    inst.end_external_backup(EndExternalBackupGrbit::NORMAL)
        .unwrap();
    s.close_database(db).unwrap();
    s.close_database(udb).unwrap();
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
    // As if restoring on another machine: the database that is not in the backup is absent,
    // and its operations in the backup's logs are skipped.
    std::fs::remove_file(&other_path).unwrap();

    let r = dir.path().join("r");
    let ri = builder("stream-r", &r).create().unwrap();
    ri.restore(&out, r.join("db"), &mut no_progress()).unwrap();
    assert_eq!(
        open_and_read(&ri, &r.join("db").join("t.edb")),
        expected(0..510)
    );
    ri.term(TermGrbit::empty()).unwrap();
}

#[test]
fn a_damaged_page_fails_the_backup_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let db_path = root.join("db").join("t.edb");
    let inst = builder("torn", &root).create().unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(&db_path, CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &table()).unwrap();
    for i in (0..800).step_by(50) {
        insert(&s, db, i..i + 50);
    }
    s.close_database(db).unwrap();
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
    // Fresh cache: every page of the backup is read from the file. Page 6 is damaged there.
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(&db_path, AttachDatabaseGrbit::empty())
        .unwrap();
    flip(&db_path, (6 - 1 + 2) * 4096 + 1000);
    let e = inst
        .backup(
            dir.path().join("b"),
            BackupGrbit::empty(),
            &mut no_progress(),
        )
        .unwrap_err();
    assert_eq!(e.code(), -1018, "{e}");
    assert!(!dir.path().join("b").join("backup.dsc").exists());
    // The backup is over (a new one may begin) and the instance is still running.
    inst.begin_external_backup(BackupGrbit::empty()).unwrap();
    inst.end_external_backup(EndExternalBackupGrbit::ABORT)
        .unwrap();
    assert_eq!(inst.state(), InstanceState::Running);
    drop(s);
    inst.term(TermGrbit::empty()).unwrap();
}
