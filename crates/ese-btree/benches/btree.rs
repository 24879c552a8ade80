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

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
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
        eprintln!("{cname}: {:?}", db.cache_stats());
    }
    g.finish();
}

criterion_group!(benches, inserts, reads);
criterion_main!(benches);
