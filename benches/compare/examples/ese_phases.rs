//! This engine alone through the harness's first phases (bulk load, individual durable writes,
//! batch writes), with per-commit latencies and, beside the bulk load's and the batch writes'
//! wall time, the CPU time of the thread that ran them (and the batch writes' time spent in
//! their 100 commits, waiting for the log), for profiling one phase under `perf`:
//! `cargo run --release --manifest-path benches/compare/Cargo.toml --example ese_phases -- N`.
//! With `ESE_PHASES_READS=1` it then reads every bulk-loaded key twice in a scattered order
//! (seek + retrieve, one read-only transaction per round), as the harness's read phase, then
//! reads 10-entry ranges from half as many keys (`ESE_PHASES_RANGE_STEPS=N` entries instead).
//! `ESE_PHASES_INDIVIDUAL=N` runs N individual durable writes instead of 1,000 (to profile
//! the commit path). `ESE_PHASES_REMOVE=1` ends with the harness's removal phase (half the
//! bulk-loaded keys, one transaction).
//! `ESE_PHASES_PAUSE_MS=N` sleeps N ms after the bulk load, so that the individual writes can
//! be timed with the bulk load's write-back done (or not). `ESE_PHASES_KEEP=1` keeps the
//! database directory (its path is printed) for `esedump space`. `ESE_PHASES_PAGE_SIZE=N`
//! sets the database page size (bytes; default 8192). `ESE_PHASES_COMPACT=1` ends with the
//! harness's compaction (JetCompact into `compacted.edb` beside the database) and prints both
//! files' sizes. `ESE_PHASES_CACHE_MIB=N` gives the instance a cache of N MiB instead of 1 GiB
//! (a database larger than its cache).
//! To profile one phase alone: `mkfifo ctl; ESE_PERF_CTL=ctl ESE_PERF_PHASE=batch perf record
//! --control fifo:ctl -D -1 -g -- ese_phases N` (phases: bulk, individual, batch, reads, ranges,
//! removals).

mod common;

use std::time::Instant;

use ese::{CommitGrbit, CreateDatabaseGrbit, TermGrbit};

/// A scattered index into `0..n` for the `i`th read (a multiplicative permutation).
fn fastrand_index(i: usize, n: usize, round: usize) -> usize {
    (i.wrapping_mul(2_654_435_761).wrapping_add(round * 7919)) % n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = common::work_dir()?;
    let instance = common::loading_instance("phases", dir.path(), n)?;
    let session = instance.begin_session()?;
    let db = session.create_database(dir.path().join("b.edb"), CreateDatabaseGrbit::empty())?;
    common::create_kv_table(&session, db)?;
    let mut table = session.open_table(db, "kv")?;
    let (k, v) = (table.column_id("k")?, table.column_id("v")?);
    let mut rng = fastrand::Rng::with_seed(3);
    let mut key = [0u8; 24];
    let mut value = [0u8; 150];
    let mut insert = |rng: &mut fastrand::Rng| {
        common::insert_next(&mut table, (k, v), rng, &mut key, &mut value)
    };
    common::perf_phase("bulk", true);
    let cpu = common::thread_cpu();
    let t = Instant::now();
    session.begin_transaction()?;
    for _ in 0..n {
        insert(&mut rng)?;
    }
    session.commit_transaction(CommitGrbit::empty())?;
    common::report_phase(&format!("bulk load {n}"), t, cpu);
    common::perf_phase("bulk", false);
    if let Some(ms) = common::env_number("ESE_PHASES_PAUSE_MS") {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut lat = Vec::with_capacity(1000);
    let t = Instant::now();
    let reps = common::env_number("ESE_PHASES_INDIVIDUAL")
        .unwrap_or(1000usize)
        .max(1);
    common::perf_phase("individual", true);
    for _ in 0..reps {
        let c = Instant::now();
        session.begin_transaction()?;
        insert(&mut rng)?;
        session.commit_transaction(CommitGrbit::empty())?;
        lat.push(c.elapsed().as_micros());
    }
    let total = t.elapsed();
    common::perf_phase("individual", false);
    lat.sort_unstable();
    eprintln!(
        "individual writes {reps}: {total:?}; µs p50 {} p90 {} p99 {} max {}",
        lat[reps / 2],
        lat[reps * 9 / 10],
        lat[reps * 99 / 100],
        lat[reps - 1]
    );
    common::perf_phase("batch", true);
    let cpu = common::thread_cpu();
    let t = Instant::now();
    let mut in_commit = std::time::Duration::ZERO;
    for _ in 0..100 {
        session.begin_transaction()?;
        for _ in 0..1000 {
            insert(&mut rng)?;
        }
        let c = Instant::now();
        session.commit_transaction(CommitGrbit::empty())?;
        in_commit += c.elapsed();
    }
    common::report_phase("batch writes 100x1000", t, cpu);
    eprintln!("batch writes: {in_commit:?} in the 100 commits");
    common::perf_phase("batch", false);
    // Random point reads of the bulk-loaded keys (the same PRNG stream replayed), as the
    // harness's read phase: seek on the primary key, retrieve the columns.
    if std::env::var_os("ESE_PHASES_READS").is_some() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            rng.fill(&mut key);
            rng.fill(&mut value);
            keys.push(key);
        }
        let mut out = vec![ese::RetrieveColumn::new(v)];
        let mut sum = 0u64;
        common::perf_phase("reads", true);
        for round in 0..2 {
            let t = Instant::now();
            session.begin_transaction2(ese::BeginTransactionGrbit::READ_ONLY)?;
            for i in 0..n {
                let k = &keys[fastrand_index(i, n, round)];
                table.seek(&[Some(k)], ese::Seek::Eq)?;
                table.retrieve_columns(&mut out)?;
                sum = sum.wrapping_add(u64::from(out[0].data[0]));
            }
            session.commit_transaction(CommitGrbit::empty())?;
            eprintln!("point reads {n}: {:?} (checksum {sum})", t.elapsed());
        }
        common::perf_phase("reads", false);
        common::perf_phase("ranges", true);
        let steps = common::env_number("ESE_PHASES_RANGE_STEPS")
            .unwrap_or(10usize)
            .max(1);
        let t = Instant::now();
        session.begin_transaction2(ese::BeginTransactionGrbit::READ_ONLY)?;
        for i in 0..n / 2 {
            let k = &keys[fastrand_index(i, n, 2)];
            table.seek(&[Some(k)], ese::Seek::Ge)?;
            for step in 0..steps {
                table.retrieve_columns(&mut out)?;
                sum = sum.wrapping_add(u64::from(out[0].data[0]));
                if step + 1 < steps && table.move_to(ese::Move::Next).is_err() {
                    break;
                }
            }
        }
        session.commit_transaction(CommitGrbit::empty())?;
        eprintln!(
            "range reads {} x {steps}: {:?} (checksum {sum})",
            n / 2,
            t.elapsed()
        );
        common::perf_phase("ranges", false);
    }
    // Removals of the first half of the bulk-loaded keys (the same PRNG stream replayed), in
    // one transaction, as the harness's removal phase: seek on the key, delete.
    if std::env::var_os("ESE_PHASES_REMOVE").is_some() {
        let mut rng = fastrand::Rng::with_seed(3);
        common::perf_phase("removals", true);
        let t = Instant::now();
        session.begin_transaction()?;
        for _ in 0..n / 2 {
            rng.fill(&mut key);
            rng.fill(&mut value);
            table.seek(&[Some(&key)], ese::Seek::Eq)?;
            table.delete()?;
        }
        session.commit_transaction(CommitGrbit::empty())?;
        eprintln!("removals {}: {:?}", n / 2, t.elapsed());
        common::perf_phase("removals", false);
    }
    drop(table);
    if std::env::var_os("ESE_PHASES_COMPACT").is_some() {
        // As the harness's compaction: JetDetachDatabase, then JetCompact into a new file.
        let path = dir.path().join("b.edb");
        let copy = dir.path().join("compacted.edb");
        let before = std::fs::metadata(&path)?.len();
        session.close_database(db)?;
        session.detach_database(&path)?;
        let t = Instant::now();
        session.compact_database(&path, &copy)?;
        let after = std::fs::metadata(&copy)?.len();
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        eprintln!(
            "compaction: {:.2} MiB -> {:.2} MiB in {:?} ({})",
            mib(before),
            mib(after),
            t.elapsed(),
            copy.display()
        );
    }
    session.end(ese::EndSessionGrbit::empty())?;
    instance.term(TermGrbit::empty())?;
    if std::env::var_os("ESE_PHASES_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    Ok(())
}
