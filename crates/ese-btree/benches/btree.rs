//! Criterion benchmarks of the page store: sequential and random insert of N 24-byte keys
//! with 150-byte values, random point reads and range scans, with the cache larger than the
//! data and 10x smaller. N defaults to 1,000,000 (`ESE_BENCH_N` overrides it). The database
//! lives in a temporary directory on the real file system; the log is a discarding in-memory
//! log, so the figures are the page store's own cost (no log I/O).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::many_single_char_names,
    reason = "benches fail loudly"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use ese_btree::{Database, DbOptions, MemWal, SeekOp, Tree, TreeKind};
use ese_core::fs::{FileSystem, OsFs};

const VALUE_LEN: usize = 150;

fn n() -> u64 {
    std::env::var("ESE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// A 24-byte key: the big-endian number (so numeric and byte order agree) and padding.
fn key(i: u64) -> [u8; 24] {
    let mut k = [0x5Au8; 24];
    for (j, b) in k.iter_mut().take(8).enumerate() {
        *b = (i >> (56 - 8 * j)) as u8;
    }
    k
}

/// A permutation of 0..n (multiplication by a large odd constant modulo a power of two,
/// filtered to the range), so random inserts hit every key once.
fn shuffled(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut rng = fastrand::Rng::with_seed(42);
    rng.shuffle(&mut v);
    v
}

fn data_bytes(n: u64) -> u64 {
    n * (24 + VALUE_LEN as u64 + 7)
}

fn open(dir: &Path, cache: u64, create: bool) -> Database {
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let opts = DbOptions::new().cache_bytes(cache).extension_pages(4096);
    let wal = Arc::new(MemWal::discarding());
    if create {
        Database::create(&fs, &dir.join("b.edb"), opts, wal).unwrap()
    } else {
        Database::open(&fs, &dir.join("b.edb"), opts, wal).unwrap()
    }
}

fn load(tree: &Tree, order: &[u64]) {
    let v = [7u8; VALUE_LEN];
    for &i in order {
        tree.insert(&key(i), &v).unwrap();
    }
}

fn caches(n: u64) -> [(&'static str, u64); 2] {
    let d = data_bytes(n);
    [("cache_2x_data", 2 * d), ("cache_tenth_data", d / 10)]
}

fn inserts(c: &mut Criterion) {
    let n = n();
    let mut g = c.benchmark_group("insert");
    // One load per sample (flat sampling): ten loads of N keys per configuration.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    let seq: Vec<u64> = (0..n).collect();
    let rnd = shuffled(n);
    for (cname, cache) in caches(n) {
        for (oname, order) in [("sequential", &seq), ("random", &rnd)] {
            g.bench_function(BenchmarkId::new(oname, cname), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let db = open(dir.path(), cache, true);
                        let t = db.create_tree(TreeKind::Table).unwrap();
                        let start = Instant::now();
                        load(&t, order);
                        total += start.elapsed();
                    }
                    total
                });
            });
        }
    }
    g.finish();
}

/// File growth on the split path: a sequential load with the default extension size (256
/// pages), so the file grows many times during the load (`ESE_BENCH_GROW_N` rows, default
/// 300,000, about 50 MiB of pages).
fn growth(c: &mut Criterion) {
    let n: u64 = std::env::var("ESE_BENCH_GROW_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let mut g = c.benchmark_group("grow");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(n));
    let seq: Vec<u64> = (0..n).collect();
    g.bench_function("sequential_default_extension", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
                let opts = DbOptions::new().cache_bytes(2 * data_bytes(n));
                let db = Database::create(
                    &fs,
                    &dir.path().join("b.edb"),
                    opts,
                    Arc::new(MemWal::discarding()),
                )
                .unwrap();
                let t = db.create_tree(TreeKind::Table).unwrap();
                let start = Instant::now();
                load(&t, &seq);
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let n = n();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), 2 * data_bytes(n), true);
        let t = db.create_tree(TreeKind::Table).unwrap();
        load(&t, &shuffled(n));
        db.flush().unwrap();
    }
    let mut g = c.benchmark_group("read");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for (cname, cache) in caches(n) {
        let db = open(dir.path(), cache, false);
        let t = db.open_tree(ese_core::ObjId(2)).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        // Warm the cache (and fill the small one) before measuring.
        for _ in 0..n.min(200_000) {
            black_box(t.get(&key(rng.u64(0..n))).unwrap());
        }
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("point", cname), |b| {
            b.iter(|| black_box(t.get(&key(rng.u64(0..n))).unwrap()));
        });
        // Zero-copy: the value is read in place under the leaf's latch.
        g.bench_function(BenchmarkId::new("point_in_place", cname), |b| {
            b.iter(|| {
                black_box(
                    t.with_data(&key(rng.u64(0..n)), |d, _| d.len())
                        .unwrap()
                        .unwrap(),
                )
            });
        });
        for steps in [10u64, 100] {
            g.throughput(Throughput::Elements(steps));
            g.bench_function(BenchmarkId::new(format!("scan_{steps}"), cname), |b| {
                b.iter(|| {
                    let mut cur = t.cursor();
                    cur.seek(&key(rng.u64(0..n)), SeekOp::Ge).unwrap();
                    let mut bytes = 0usize;
                    for _ in 0..steps {
                        bytes += cur.data().len();
                        if !cur.move_next().unwrap() {
                            break;
                        }
                    }
                    black_box(bytes)
                });
            });
        }
        // The same 10 records by a fresh cursor's `seek(Gt)` per step (a caller that does not
        // keep its cursor): what the in-place `move_next` above saves.
        g.throughput(Throughput::Elements(10));
        g.bench_function(BenchmarkId::new("reseek_10", cname), |b| {
            b.iter(|| {
                let mut cur = t.cursor();
                cur.seek(&key(rng.u64(0..n)), SeekOp::Ge).unwrap();
                let mut bytes = 0usize;
                for _ in 0..10 {
                    bytes += cur.data().len();
                    let at = cur.key().to_vec();
                    cur = t.cursor();
                    if cur.seek(&at, SeekOp::Gt).is_err() {
                        break;
                    }
                }
                black_box(bytes)
            });
        });
        eprintln!("{cname}: {:?}", db.cache_stats());
    }
    g.finish();
}

criterion_group!(benches, inserts, growth, reads);

/// A fixed amount of work for instruction counts (`perf stat -e instructions`, callgrind),
/// which a shared machine does not disturb the way it disturbs wall time:
/// `ESE_BENCH_FIXED=point|scan_10|reseek_10|grow ESE_BENCH_OPS=1000000` loads `ESE_BENCH_N` rows
/// in random order, then runs that many operations (0 measures the load alone, to subtract).
/// `reseek_10` walks 10 records by a fresh cursor's `seek(Gt)` per step, as a caller that
/// does not keep its cursor would.
fn fixed(op: &str) {
    let n = n();
    let ops: u64 = std::env::var("ESE_BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    if op == "grow" {
        // The `grow` group's load, once: count its syscalls with
        // `strace -f -c -e trace=ftruncate,fdatasync`.
        let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
        let opts = DbOptions::new().cache_bytes(2 * data_bytes(n));
        let wal = Arc::new(MemWal::discarding());
        let db = Database::create(&fs, &dir.path().join("b.edb"), opts, wal).unwrap();
        let t = db.create_tree(TreeKind::Table).unwrap();
        let start = Instant::now();
        load(&t, &(0..n).collect::<Vec<_>>());
        println!("grow: {n} sequential rows in {:?}", start.elapsed());
        return;
    }
    let db = open(dir.path(), 2 * data_bytes(n), true);
    let t = db.create_tree(TreeKind::Table).unwrap();
    load(&t, &shuffled(n));
    let mut rng = fastrand::Rng::with_seed(1);
    let mut sum = 0usize;
    for _ in 0..ops {
        let k = key(rng.u64(0..n));
        match op {
            "point" => sum += t.get(&k).unwrap().0.len(),
            "scan_10" => {
                let mut cur = t.cursor();
                cur.seek(&k, SeekOp::Ge).unwrap();
                for _ in 0..10 {
                    sum += cur.data().len();
                    if !cur.move_next().unwrap() {
                        break;
                    }
                }
            }
            "reseek_10" => {
                let mut cur = t.cursor();
                cur.seek(&k, SeekOp::Ge).unwrap();
                for _ in 0..10 {
                    sum += cur.data().len();
                    let at = cur.key().to_vec();
                    cur = t.cursor();
                    if cur.seek(&at, SeekOp::Gt).is_err() {
                        break;
                    }
                }
            }
            other => panic!("unknown ESE_BENCH_FIXED {other}"),
        }
    }
    println!("{op}: {ops} operations on {n} rows, {sum} bytes read");
}

fn main() {
    if let Ok(op) = std::env::var("ESE_BENCH_FIXED") {
        fixed(&op);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
