//! Group commit on the real file system: durable commits per second with 1, 4, 16 and 64
//! concurrent committers (32-byte records, `append_and_flush` each), next to the raw rate of
//! one preallocated 4 KiB write + `fdatasync` on the same disk, measured in the same run.
//!
//! Run: `cargo bench -p ese-log --bench group_commit`. After criterion's groups, a summary
//! prints commits/s, the ratio to the raw rate and p50/p99 commit latency per level.
//! `ESE_BENCH_DIR` picks the directory (default: the system temp dir).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "benchmarks fail loudly; rates are approximate floats"
)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ese_core::fs::OsFs;
use ese_log::{Log, LogConfig};

const LEVELS: [usize; 4] = [1, 4, 16, 64];
const RECORD: [u8; 32] = [0x5A; 32];

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ESE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A preallocated file for the raw `fdatasync` rate: 4 KiB writes cycle through 16 MiB.
struct Raw {
    _dir: tempfile::TempDir,
    file: std::fs::File,
    next: u64,
}

const RAW_BYTES: u64 = 16 << 20;

impl Raw {
    fn new() -> Raw {
        let dir = bench_dir();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("raw"))
            .unwrap();
        let zeros = vec![0u8; 1 << 20];
        for i in 0..RAW_BYTES >> 20 {
            file.write_all_at(&zeros, i << 20).unwrap();
        }
        file.sync_all().unwrap();
        Raw {
            _dir: dir,
            file,
            next: 0,
        }
    }

    fn commit(&mut self) {
        let page = [0xA5u8; 4096];
        self.file.write_all_at(&page, self.next).unwrap();
        self.file.sync_data().unwrap();
        self.next = (self.next + 4096) % RAW_BYTES;
    }
}

fn open_log() -> (tempfile::TempDir, Arc<Log>) {
    let dir = bench_dir();
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let cfg = LogConfig::new(dir.path())
        .reserve_logs(false)
        .file_size_kib(env("ESE_BENCH_FILE_KIB", 5120))
        .lazy_flush_ms(env("ESE_BENCH_LAZY_MS", 5));
    let log = Log::open(Arc::new(OsFs::new()), cfg).unwrap();
    (dir, Arc::new(log))
}

/// Runs `total` commits spread over `threads` committers; returns the wall time and, if
/// asked, every commit's latency.
fn run(log: &Arc<Log>, threads: usize, total: u64, latencies: bool) -> (Duration, Vec<Duration>) {
    let per = total.div_ceil(threads as u64);
    if threads == 1 && !latencies {
        // No thread or barrier cost in the measurement of a lone committer.
        let start = Instant::now();
        for _ in 0..per {
            log.append_and_flush(&RECORD).unwrap();
        }
        return (start.elapsed(), Vec::new());
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let log = log.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                barrier.wait();
                for _ in 0..per {
                    let t = Instant::now();
                    log.append_and_flush(&RECORD).unwrap();
                    if latencies {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut lat: Vec<Duration> = Vec::new();
    for h in handles {
        lat.extend(h.join().unwrap());
    }
    (start.elapsed(), lat)
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_commit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let mut raw = Raw::new();
    g.bench_function("raw_4k_write_fdatasync", |b| b.iter(|| raw.commit()));
    for threads in LEVELS {
        let (_dir, log) = open_log();
        g.bench_function(format!("committers_{threads}"), |b| {
            b.iter_custom(|iters| run(&log, threads, iters.max(threads as u64), false).0);
        });
    }
    g.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Commits per second of the raw 4 KiB write + `fdatasync` over `secs` seconds.
fn raw_rate(raw: &mut Raw, secs: f64) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        raw.commit();
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Fixed-duration runs that print the acceptance figures. The disk is shared with other
/// work, so the raw rate is measured right before each level and the ratio uses that
/// adjacent measurement.
fn summary() {
    let secs = std::env::var("ESE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0f64);
    let mut raw = Raw::new();
    println!();
    println!(
        "committers  raw/s  commits/s  x raw  p50 us  p99 us  max us  (raw = 4 KiB write + fdatasync)"
    );
    for threads in LEVELS {
        let (_dir, log) = open_log();
        let (probe, _) = run(&log, threads, 200, false);
        let raw_rate = raw_rate(&mut raw, secs / 2.0);
        // Size the run to about `secs` from the probe.
        let total = ((200.0 / probe.as_secs_f64() * secs) as u64).max(threads as u64 * 10);
        let (wall, mut lat) = run(&log, threads, total, true);
        lat.sort_unstable();
        let rate = lat.len() as f64 / wall.as_secs_f64();
        println!(
            "{threads:>10}  {raw_rate:>5.0}  {rate:>9.0}  {:>5.2}  {:>6.0}  {:>6.0}  {:>6.0}",
            rate / raw_rate,
            percentile(&lat, 0.5).as_secs_f64() * 1e6,
            percentile(&lat, 0.99).as_secs_f64() * 1e6,
            percentile(&lat, 1.0).as_secs_f64() * 1e6,
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    summary();
}
