//! Kill -9 during writes, on the real file system: a child process (this same binary, in child
//! mode) runs two sessions that each commit single-row transactions durably and print the id of
//! every commit that returned; the parent kills it with SIGKILL at a random moment, then
//! recovers the database with `Instance::init` and checks the committed-prefix invariant: for
//! each session the recovered ids are exactly 0..=m with m at least the last id the child
//! reported (a commit that returned is never lost, nothing partial or out of order appears).
//!
//! `ESE_KILL9_ROUNDS` sets the number of kills (default 100).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, IndexCreate,
    IndexGrbit, Instance, Move, Prep, TableCreate,
};

const THREADS: u32 = 2;

fn instance(dir: &Path) -> Instance {
    Instance::builder("kill9")
        .system_path(dir)
        .log_path(dir.join("logs"))
        .log_file_size_kib(256)
        .checkpoint_depth_bytes(64 * 1024)
        // No deferral while commits run: the checkpoint moves while the writer commits.
        .checkpoint_defer_bytes(0)
        .create()
        .unwrap()
}

fn child(dir: &Path) {
    let inst = instance(dir);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let path = dir.join("k.edb");
    if s.attach_database(&path, AttachDatabaseGrbit::empty())
        .is_err()
    {
        let db = s
            .create_database(&path, CreateDatabaseGrbit::empty())
            .unwrap();
        s.create_table(
            db,
            &TableCreate {
                name: "t".into(),
                columns: vec![
                    ColumnDef::new("id", ColumnType::UnsignedLongLong),
                    ColumnDef::new("pad", ColumnType::Binary),
                ],
                indexes: vec![IndexCreate {
                    name: "pk".into(),
                    key: "+id\0\0".into(),
                    grbit: IndexGrbit::PRIMARY,
                    key_most: 0,
                }],
            },
        )
        .unwrap();
    }
    // Continue after the ids already present.
    let start = read_ids(&inst, &path);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let inst = inst.clone();
            let path = path.clone();
            let mut next = start
                .iter()
                .filter(|id| *id >> 32 == u64::from(t))
                .map(|id| (id & 0xFFFF_FFFF) + 1)
                .max()
                .unwrap_or(0);
            std::thread::spawn(move || {
                let s = inst.begin_session().unwrap();
                let db = s.open_database(&path).unwrap();
                let mut tb = s.open_table(db, "t").unwrap();
                let (id, pad) = (tb.column_id("id").unwrap(), tb.column_id("pad").unwrap());
                let out = std::io::stdout();
                loop {
                    let key = (u64::from(t) << 32) | next;
                    s.begin_transaction().unwrap();
                    tb.prepare_update(Prep::Insert).unwrap();
                    tb.set_column(id, Some(&key.to_le_bytes())).unwrap();
                    tb.set_column(pad, Some(&[t as u8; 100])).unwrap();
                    tb.update().unwrap();
                    s.commit_transaction(CommitGrbit::empty()).unwrap();
                    writeln!(out.lock(), "{key}").unwrap();
                    next += 1;
                }
            })
        })
        .collect();
    // The writers run until the parent kills the process.
    drop(handles);
    loop {
        std::thread::park();
    }
}

fn read_ids(inst: &Instance, path: &Path) -> BTreeSet<u64> {
    let s = inst.begin_session().unwrap();
    s.attach_database(path, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(path).unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let id = t.column_id("id").unwrap();
    let mut ids = BTreeSet::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        ids.insert(u64::from_le_bytes(
            t.retrieve_column(id).unwrap().unwrap().try_into().unwrap(),
        ));
        r = t.move_to(Move::Next);
    }
    assert_eq!(r.unwrap_err().kind(), ese::ErrorKind::NoCurrentRecord);
    ids
}

fn main() {
    if let Ok(dir) = std::env::var("ESE_KILL9_CHILD") {
        child(Path::new(&dir));
        return;
    }
    let rounds: u32 = std::env::var("ESE_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    let mut acked: Vec<u64> = vec![0; THREADS as usize];
    let mut any_acked = vec![false; THREADS as usize];
    let mut total_rows = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .env("ESE_KILL9_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = line.trim().parse::<u64>() {
                    seen.push(v);
                }
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(rng.u64(20..150)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child exited by itself: {status}"
        );
        for v in reader.join().unwrap() {
            let t = (v >> 32) as usize;
            acked[t] = acked[t].max(v & 0xFFFF_FFFF);
            any_acked[t] = true;
        }
        // Recover and check the committed-prefix invariant.
        let inst = instance(dir.path());
        inst.init()
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let ids = read_ids(&inst, &dir.path().join("k.edb"));
        for t in 0..THREADS {
            let mine: Vec<u64> = ids
                .iter()
                .filter(|id| *id >> 32 == u64::from(t))
                .map(|id| id & 0xFFFF_FFFF)
                .collect();
            for (i, v) in mine.iter().enumerate() {
                assert_eq!(*v, i as u64, "round {round}, session {t}: ids not a prefix");
            }
            if any_acked[t as usize] {
                assert!(
                    mine.last().copied().unwrap_or(0) >= acked[t as usize] && !mine.is_empty(),
                    "round {round}, session {t}: acknowledged commit {} lost (recovered {})",
                    acked[t as usize],
                    mine.len()
                );
            }
        }
        total_rows = ids.len();
        inst.term(ese::TermGrbit::empty()).unwrap();
    }
    println!(
        "kill -9 rounds: {rounds}, rows at the end: {total_rows}, every acknowledged commit present"
    );
}
