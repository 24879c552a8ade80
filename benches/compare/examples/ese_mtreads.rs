//! This engine alone through the harness's threaded read phase, for measuring how point reads
//! scale with threads: `cargo run --release --manifest-path benches/compare/Cargo.toml --example
//! ese_mtreads -- N ROUNDS`. Bulk-loads N records (one transaction), then ROUNDS times reads
//! every loaded key once on 1, 2 and 4 threads (each thread its own session and table cursor,
//! one read-only transaction, a contiguous share of the keys in their load order, which is
//! random), printing each run's time and the rate in reads per second. `ESE_PERF_PHASE=mtreads`
//! profiles the reads alone (see `common::perf_phase`).

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use ese::{
    BeginTransactionGrbit, CommitGrbit, CreateDatabaseGrbit, EndSessionGrbit, RetrieveColumn, Seek,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let dir = common::work_dir()?;
    let instance = common::loading_instance("mtreads", dir.path(), n)?;
    let session = instance.begin_session()?;
    let db_path = dir.path().join("b.edb");
    let db = session.create_database(&db_path, CreateDatabaseGrbit::empty())?;
    common::create_kv_table(&session, db)?;
    let mut keys = Vec::with_capacity(n);
    {
        let mut table = session.open_table(db, "kv")?;
        let cols = (table.column_id("k")?, table.column_id("v")?);
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut key, mut value) = ([0u8; 24], [0u8; 150]);
        let t = Instant::now();
        session.begin_transaction()?;
        for _ in 0..n {
            common::insert_next(&mut table, cols, &mut rng, &mut key, &mut value)?;
            keys.push(key);
        }
        session.commit_transaction(CommitGrbit::empty())?;
        eprintln!("bulk load {n}: {:?}", t.elapsed());
    }
    // Let version cleanup of the load finish before reading, as in the harness (where other
    // phases come between).
    std::thread::sleep(Duration::from_secs(2));
    let v = session.open_table(db, "kv")?.column_id("v")?;
    common::perf_phase("mtreads", true);
    for round in 0..rounds {
        for threads in [1usize, 2, 4] {
            let barrier = Barrier::new(threads + 1);
            let elapsed =
                std::thread::scope(|s| -> Result<Duration, Box<dyn std::error::Error>> {
                    let workers: Vec<_> = (0..threads)
                        .map(|t| {
                            let (barrier, keys, instance) = (&barrier, &keys, &instance);
                            let db_path = &db_path;
                            s.spawn(move || -> Result<u64, ese::Error> {
                                let opened = instance.begin_session().and_then(|session| {
                                    let db = session.open_database(db_path)?;
                                    let table = session.open_table(db, "kv")?;
                                    Ok((session, table))
                                });
                                // Past the barrier before any error returns (the main thread waits
                                // there for every reader).
                                barrier.wait();
                                let (session, mut table) = opened?;
                                let mut out = vec![RetrieveColumn::new(v)];
                                let mut sum = 0u64;
                                session.begin_transaction2(BeginTransactionGrbit::READ_ONLY)?;
                                for k in &keys[t * n / threads..(t + 1) * n / threads] {
                                    table.seek(&[Some(k)], Seek::Eq)?;
                                    table.retrieve_columns(&mut out)?;
                                    sum = sum.wrapping_add(u64::from(out[0].data[0]));
                                }
                                session.commit_transaction(CommitGrbit::empty())?;
                                drop(table);
                                session.end(EndSessionGrbit::empty())?;
                                Ok(sum)
                            })
                        })
                        .collect();
                    barrier.wait();
                    let t = Instant::now();
                    for w in workers {
                        w.join().map_err(|_| "a reader thread panicked")??;
                    }
                    Ok(t.elapsed())
                })?;
            eprintln!(
                "round {round} reads on {threads} thread(s): {elapsed:?} ({:.0}/s)",
                n as f64 / elapsed.as_secs_f64()
            );
        }
    }
    common::perf_phase("mtreads", false);
    drop(session);
    Ok(())
}
