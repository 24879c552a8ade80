//! This engine alone through the harness's concurrent durable commit workload, for profiling
//! the commit path under `perf`:
//! `cargo run --release --manifest-path benches/compare/Cargo.toml --example ese_commits -- THREADS SECONDS`.
//! Loads `ESE_COMMITS_PRELOAD` rows (default 100,000) in one transaction, then `THREADS`
//! threads (default 16), each with its own session, commit durable one-insert transactions
//! on distinct random keys for `SECONDS` seconds (default 5); prints commits per second.
//! `ESE_PERF_PHASE=commits` with `ESE_PERF_CTL` records the timed window alone (see
//! `ese_phases`).

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use ese::{CommitGrbit, CreateDatabaseGrbit, EndSessionGrbit, TermGrbit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let preload: usize = common::env_number("ESE_COMMITS_PRELOAD").unwrap_or(100_000);
    let dir = common::work_dir()?;
    let instance = common::builder("commits", dir.path())
        .max_sessions(1024)
        .create()?;
    instance.init()?;
    let db_path = dir.path().join("c.edb");
    let session = instance.begin_session()?;
    let db = session.create_database(&db_path, CreateDatabaseGrbit::empty())?;
    common::create_kv_table(&session, db)?;
    {
        let mut table = session.open_table(db, "kv")?;
        let (k, v) = (table.column_id("k")?, table.column_id("v")?);
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut key, mut value) = ([0u8; 24], [0u8; 150]);
        session.begin_transaction()?;
        for _ in 0..preload {
            common::insert_next(&mut table, (k, v), &mut rng, &mut key, &mut value)?;
        }
        session.commit_transaction(CommitGrbit::empty())?;
    }
    session.end(EndSessionGrbit::empty())?;

    let barrier = Barrier::new(threads + 1);
    let run_for = Duration::from_secs(seconds);
    let total = std::thread::scope(|s| -> Result<u64, String> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, instance, db_path) = (&barrier, &instance, &db_path);
                s.spawn(move || -> Result<u64, String> {
                    let run = || -> Result<u64, Box<dyn std::error::Error>> {
                        let mut rng = fastrand::Rng::with_seed(0xC0_0000 + t as u64);
                        let session = instance.begin_session()?;
                        let db = session.open_database(db_path)?;
                        let mut table = session.open_table(db, "kv")?;
                        let (k, v) = (table.column_id("k")?, table.column_id("v")?);
                        let (mut key, mut value) = ([0u8; 24], [0u8; 150]);
                        barrier.wait();
                        let deadline = Instant::now() + run_for;
                        let mut commits = 0;
                        while Instant::now() < deadline {
                            session.begin_transaction()?;
                            common::insert_next(
                                &mut table,
                                (k, v),
                                &mut rng,
                                &mut key,
                                &mut value,
                            )?;
                            session.commit_transaction(CommitGrbit::empty())?;
                            commits += 1;
                        }
                        drop(table);
                        session.end(EndSessionGrbit::empty())?;
                        Ok(commits)
                    };
                    run().map_err(|e| e.to_string())
                })
            })
            .collect();
        barrier.wait();
        common::perf_phase("commits", true);
        let mut total = 0;
        for w in workers {
            total += w.join().map_err(|_| "a writer thread panicked")??;
        }
        common::perf_phase("commits", false);
        Ok(total)
    })?;
    eprintln!(
        "{threads} threads, {seconds} s: {total} commits, {:.0} commits/s",
        total as f64 / seconds as f64
    );
    instance.term(TermGrbit::empty())?;
    Ok(())
}
