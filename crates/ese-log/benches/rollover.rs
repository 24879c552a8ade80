//! Generation rollover on the real file system: how long an appending thread takes to write
//! `ESE_BENCH_ROLL_MIB` MiB of log (default 32) in 1 MiB generations, as a bulk load does
//! (4,000-byte records appended lazily, the background flusher and generation preparation
//! running as in the engine), and how long its longest single `append` stalled (a rollover
//! done inline by the appender shows up there).
//!
//! - `lazy`: appends only, one `flush_all` at the end (a bulk load in one transaction); the
//!   appender is much faster than the disk, so this measures the log's own throughput.
//! - `lazy_paced`: the same with 100 µs of computation before each record (40 MB/s offered,
//!   like a bulk load whose B+tree work produces the log): the time above the pacing is what
//!   the log makes the appender wait.
//! - `commit_every_64`: a durable flush after every 64 records (256 KiB), as batch commits.
//!
//! Run: `cargo bench -p ese-log --bench rollover`. After criterion's groups a summary prints,
//! per variant, the time per MiB of log and the longest append stall. `ESE_BENCH_DIR` picks the
//! directory (default: the system temp dir). `ESE_BENCH_ROLL_ONCE=<variant>` makes one run
//! and exits, for counting the appending thread's syscalls with `strace -f`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "benchmarks fail loudly; rates are approximate floats"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use ese_core::fs::OsFs;
use ese_log::{Log, LogConfig};

const RECORD: [u8; 4000] = [0x3C; 4000];
const FILE_KIB: u32 = 1024;

fn total_mib() -> u64 {
    std::env::var("ESE_BENCH_ROLL_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ESE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Writes `total_mib()` MiB of records into a fresh stream; returns the wall time (open
/// excluded) and the longest single `append`.
fn run((commit_every, pace): (Option<usize>, Duration)) -> (Duration, Duration) {
    let dir = bench_dir();
    let cfg = LogConfig::new(dir.path())
        .reserve_logs(false)
        .file_size_kib(FILE_KIB);
    let log = Log::open(Arc::new(OsFs::new()), cfg).unwrap();
    let records = (total_mib() << 20) / RECORD.len() as u64;
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    for i in 0..records {
        let busy = Instant::now();
        while busy.elapsed() < pace {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        let l = log.append(&RECORD).unwrap();
        worst = worst.max(t.elapsed());
        if let Some(n) = commit_every
            && (i + 1) % n as u64 == 0
        {
            log.flush(l).unwrap();
        }
    }
    log.flush_all().unwrap();
    let took = start.elapsed();
    drop(log);
    (took, worst)
}

const PACE: Duration = Duration::from_micros(100);

const VARIANTS: [(&str, (Option<usize>, Duration)); 3] = [
    ("lazy", (None, Duration::ZERO)),
    ("lazy_paced", (None, PACE)),
    ("commit_every_64", (Some(64), Duration::ZERO)),
];

fn main() {
    if let Ok(name) = std::env::var("ESE_BENCH_ROLL_ONCE") {
        // One run on the main thread, for `strace -f -e trace=fdatasync,fsync`: the syncs the
        // appending thread makes itself are the lines of the process's own id.
        let (_, v) = VARIANTS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("unknown variant");
        let (took, worst) = run(*v);
        println!("{name}: {took:?}, longest append {worst:?}");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("rollover_1mib_generations");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(10));
        g.throughput(Throughput::Bytes(total_mib() << 20));
        for (name, every) in VARIANTS {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(every).0).sum());
            });
        }
        g.finish();
    }
    c.final_summary();
    println!();
    println!("variant           ms/MiB  longest append ms  (5 runs each, median)");
    for (name, every) in VARIANTS {
        let mut runs: Vec<(Duration, Duration)> = (0..5).map(|_| run(every)).collect();
        runs.sort_unstable();
        let (took, _) = runs[2];
        let mut stalls: Vec<Duration> = runs.iter().map(|r| r.1).collect();
        stalls.sort_unstable();
        println!(
            "{name:<16} {:>7.2}  {:>17.2}",
            took.as_secs_f64() * 1e3 / total_mib() as f64,
            stalls[2].as_secs_f64() * 1e3,
        );
    }
}
