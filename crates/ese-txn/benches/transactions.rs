//! Transactions over the real stack (log on the real file system, page store with a 64 MiB
//! cache, version store with ESE's default 2 MiB budget), on a table pre-loaded with 100,000
//! rows (24-byte keys, 150-byte values):
//!
//! - `update_lazy` / `update_durable`: small update transactions per second — begin, one
//!   replace of a 150-byte value, commit at level 0 — on 1, 2 and 8 threads, each thread on
//!   its own keys (no conflicts), with lazy commit (`JET_bitCommitLazyFlush`: the commit
//!   record is flushed by the log's background flusher within 5 ms) and with durable commit
//!   (the commit waits for group commit). Beside them, `raw_fdatasync`: one 4 KiB write and
//!   `fdatasync` of a preallocated file on the same disk, the ceiling of a lone durable
//!   committer.
//! - `snapshot_read`: random point reads through `Transaction::read` in a long read-only
//!   transaction (renewed every 10,000 reads, so that it does not pin versions until the
//!   budget is full), alone and while 2 writer threads commit updates durably.
//!
//! The version store has no cleanup thread of its own (the engine above it owns the
//! schedule); like ESE's version cleanup task, a background thread here calls
//! `VersionStore::cleanup` every 10 ms.
//!
//! Run: `cargo bench -p ese-txn --bench transactions` (`ESE_BENCH_LOAD=N` instead times a bulk
//! load of N rows in one transaction through this layer, see `load`). After criterion's groups a summary of
//! fixed-duration runs prints transactions/s per thread count, the raw `fdatasync` rate
//! measured right before, and the read rates. `ESE_BENCH_DIR` picks the directory (default:
//! the system temp dir; it must be on a real disk, not tmpfs); `ESE_BENCH_SECS` the length of
//! each summary run (default 2).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_docs,
    reason = "benchmarks fail loudly; rates are approximate floats"
)]

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ese_btree::{Database, DbOptions, MemWal, TreeKind, Wal};
use ese_core::fs::{FileSystem, OsFs};
use ese_core::{ErrorKind, ObjId, TrxId};
use ese_log::{Log, LogConfig};
use ese_txn::{FAMILY_PAGE, FamilyWal, LogWal, TreeStore, VersionStore};

/// Rows of the pre-loaded table; a multiple of every thread count, so that key `i` belongs to
/// thread `i % threads` whatever the wrap-around.
const ROWS: u64 = 100_000;
const THREADS: [usize; 3] = [1, 2, 8];
const KEY_SIZE: usize = 24;
const VALUE_SIZE: usize = 150;
/// ESE's default version store: `JET_paramMaxVerPages` = 64 buckets of 32 KiB.
const VERSION_STORE_BYTES: u64 = 64 * 32 * 1024;
const CACHE_BYTES: u64 = 64 << 20;
/// Reads per read-only transaction in `snapshot_read`.
const READS_PER_SNAPSHOT: u64 = 10_000;
/// Period of the background version cleanup.
const CLEANUP_PERIOD: Duration = Duration::from_millis(10);

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ESE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

#[expect(
    clippy::big_endian_bytes,
    reason = "a key, not an on-disk integer: big-endian sorts like the row number"
)]
fn key(i: u64) -> [u8; KEY_SIZE] {
    let mut k = [0u8; KEY_SIZE];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

/// The real stack, pre-loaded, with a background cleanup thread.
struct Stack {
    vs: Arc<VersionStore>,
    tree: ObjId,
    /// Where the next run's updates start, so that runs walk the whole table.
    next: AtomicU64,
    stop: Arc<AtomicBool>,
    cleaner: Option<JoinHandle<()>>,
    // Last: the files go after everything that has them open.
    _log: Arc<Log>,
    _db: Database,
    _dir: tempfile::TempDir,
}

/// The layers under test, built empty: the log, a database with one table tree, and a
/// version store over them.
struct Layers {
    vs: Arc<VersionStore>,
    tree: ObjId,
    // Last: the files go after everything that has them open.
    log: Arc<Log>,
    db: Database,
    dir: tempfile::TempDir,
}

impl Layers {
    /// A page cache of `cache_bytes` and a version store of `vs_bytes`; with `discard_log`
    /// the log records are encoded and dropped (no log I/O) instead of written.
    fn open(cache_bytes: u64, vs_bytes: u64, discard_log: bool) -> Layers {
        let dir = bench_dir();
        let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
        let log = Arc::new(
            Log::open(
                Arc::clone(&fs),
                LogConfig::new(dir.path().join("log")).reserve_logs(false),
            )
            .unwrap(),
        );
        let raw: Arc<dyn Wal> = if discard_log {
            Arc::new(MemWal::discarding())
        } else {
            Arc::new(LogWal(Arc::clone(&log)))
        };
        let page_wal: Arc<dyn Wal> = Arc::new(FamilyWal::new(Arc::clone(&raw), FAMILY_PAGE));
        let db = Database::create(
            &fs,
            &dir.path().join("bench.edb"),
            DbOptions::new().cache_bytes(cache_bytes),
            page_wal,
        )
        .unwrap();
        let tree = db.create_tree(TreeKind::Table).unwrap();
        let id = tree.objid();
        let store = Arc::new(TreeStore::new(raw));
        store.register(id, tree);
        Layers {
            vs: Arc::new(VersionStore::new(store, vs_bytes, TrxId(1))),
            tree: id,
            log,
            db,
            dir,
        }
    }
}

impl Stack {
    fn open() -> Stack {
        let Layers {
            vs,
            tree: id,
            log,
            db,
            dir,
        } = Layers::open(CACHE_BYTES, VERSION_STORE_BYTES, false);

        let mut t = vs.begin("preload".into(), false);
        for i in 0..ROWS {
            t.insert(id, &key(i), &[0u8; VALUE_SIZE]).unwrap();
        }
        t.commit_level(false).unwrap();
        vs.cleanup().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let cleaner = {
            let vs = Arc::clone(&vs);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(CLEANUP_PERIOD);
                    vs.cleanup().unwrap();
                }
            })
        };
        Stack {
            vs,
            tree: id,
            next: AtomicU64::new(0),
            stop,
            cleaner: Some(cleaner),
            _log: log,
            _db: db,
            _dir: dir,
        }
    }

    /// One small update transaction: begin, replace, commit. Returns false (rolled back) when
    /// the version store is full.
    fn update(&self, owner: &str, i: u64, lazy: bool) -> bool {
        let mut t = self.vs.begin(owner.to_owned(), false);
        let value = [i as u8; VALUE_SIZE];
        match t.replace(self.tree, &key(i % ROWS), &value) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::VersionStoreOutOfMemory => return false,
            Err(e) => panic!("update of row {i}: {e}"),
        }
        t.commit_level(lazy).unwrap();
        true
    }

    /// `total` update transactions over `threads` threads on disjoint keys; the wall time.
    fn run_updates(&self, threads: usize, total: u64, lazy: bool) -> Duration {
        let per = total.div_ceil(threads as u64);
        let base = self.next.fetch_add(per, Ordering::Relaxed);
        let worker = |t: usize| {
            let owner = format!("writer {t}");
            for j in 0..per {
                let i = (base + j) * threads as u64 + t as u64;
                while !self.update(&owner, i, lazy) {
                    std::thread::yield_now();
                }
            }
        };
        if threads == 1 {
            // No thread or barrier cost in the measurement of a lone committer.
            let start = Instant::now();
            worker(0);
            return start.elapsed();
        }
        let barrier = Barrier::new(threads + 1);
        std::thread::scope(|s| {
            for t in 0..threads {
                let barrier = &barrier;
                let worker = &worker;
                s.spawn(move || {
                    barrier.wait();
                    worker(t);
                });
            }
            barrier.wait();
            // The scope joins every worker before it returns: elapsed() is taken after that.
            Instant::now()
        })
        .elapsed()
    }

    /// `iters` random point reads through read-only transactions of
    /// [`READS_PER_SNAPSHOT`] reads each; the time taken.
    fn run_reads(&self, iters: u64, rng: &mut fastrand::Rng) -> Duration {
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            let t = self.vs.begin("reader".into(), true);
            let n = READS_PER_SNAPSHOT.min(iters - done);
            for _ in 0..n {
                let v = t.read(self.tree, &key(rng.u64(0..ROWS))).unwrap();
                assert_eq!(black_box(v).as_ref().map(Vec::len), Some(VALUE_SIZE));
            }
            done += n;
        }
        start.elapsed()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.cleaner.take() {
            let _ = h.join();
        }
    }
}

/// Writer threads that commit updates durably on their own keys until dropped.
struct Writers {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    full: Arc<AtomicU64>,
    handles: Vec<JoinHandle<()>>,
}

impl Writers {
    fn start(stack: &Arc<Stack>, n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let full = Arc::new(AtomicU64::new(0));
        let handles = (0..n)
            .map(|t| {
                let (stack, stop) = (Arc::clone(stack), Arc::clone(&stop));
                let (commits, full) = (Arc::clone(&commits), Arc::clone(&full));
                std::thread::spawn(move || {
                    let owner = format!("background writer {t}");
                    let mut j = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Keys ≡ t (mod 8): disjoint from each other writer's.
                        if stack.update(&owner, j * 8 + t as u64, false) {
                            commits.fetch_add(1, Ordering::Relaxed);
                            j += 1;
                        } else {
                            full.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            commits,
            full,
            handles,
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A preallocated file for the raw `fdatasync` rate: 4 KiB writes cycle through 16 MiB.
struct RawSync {
    file: std::fs::File,
    next: u64,
    _dir: tempfile::TempDir,
}

const RAW_BYTES: u64 = 16 << 20;

impl RawSync {
    fn new() -> RawSync {
        let dir = bench_dir();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("raw"))
            .unwrap();
        let mib = vec![0u8; 1 << 20];
        for i in 0..RAW_BYTES >> 20 {
            file.write_all_at(&mib, i << 20).unwrap();
        }
        file.sync_all().unwrap();
        RawSync {
            file,
            next: 0,
            _dir: dir,
        }
    }

    fn sync_one(&mut self) {
        self.file.write_all_at(&[0xA5u8; 4096], self.next).unwrap();
        self.file.sync_data().unwrap();
        self.next = (self.next + 4096) % RAW_BYTES;
    }

    /// Syncs per second over `secs`.
    fn rate(&mut self, secs: f64) -> f64 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            self.sync_one();
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    }
}

fn criterion_benches(c: &mut Criterion, stack: &Arc<Stack>) {
    let mut raw = RawSync::new();
    for (name, lazy) in [("update_lazy", true), ("update_durable", false)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        if !lazy {
            g.bench_function("raw_fdatasync", |b| b.iter(|| raw.sync_one()));
        }
        for threads in THREADS {
            g.bench_function(format!("threads_{threads}"), |b| {
                b.iter_custom(|iters| stack.run_updates(threads, iters.max(threads as u64), lazy));
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("snapshot_read");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let mut rng = fastrand::Rng::with_seed(7);
    g.bench_function("no_writers", |b| {
        b.iter_custom(|iters| stack.run_reads(iters, &mut rng));
    });
    let writers = Writers::start(stack, 2);
    g.bench_function("2_durable_writers", |b| {
        b.iter_custom(|iters| stack.run_reads(iters, &mut rng));
    });
    drop(writers);
    g.finish();
}

fn summary(stack: &Arc<Stack>) {
    let secs = std::env::var("ESE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0f64);
    let mut raw = RawSync::new();
    // Sizes a run to about `secs` from a short probe.
    let timed = |threads: usize, lazy: bool| {
        let probe_n = if lazy { 2_000 } else { 200 };
        let probe = stack.run_updates(threads, probe_n, lazy);
        let total = ((probe_n as f64 / probe.as_secs_f64() * secs) as u64).max(threads as u64 * 10);
        let wall = stack.run_updates(threads, total, lazy);
        total.div_ceil(threads as u64) as f64 * threads as f64 / wall.as_secs_f64()
    };
    println!();
    println!(
        "update transactions/s (1 replace of {VALUE_SIZE} bytes each, disjoint keys, \
         {ROWS} rows; raw = 4 KiB write + fdatasync on the same disk, just before)"
    );
    println!("threads   lazy txn/s   durable txn/s   raw fdatasync/s   durable / raw");
    for threads in THREADS {
        let lazy = timed(threads, true);
        let raw_rate = raw.rate(secs / 2.0);
        let durable = timed(threads, false);
        println!(
            "{threads:>7}   {lazy:>10.0}   {durable:>13.0}   {raw_rate:>15.0}   {:>13.2}",
            durable / raw_rate
        );
    }

    let mut rng = fastrand::Rng::with_seed(11);
    let reads = |rng: &mut fastrand::Rng| {
        let probe = stack.run_reads(20_000, rng);
        let n = ((20_000.0 / probe.as_secs_f64() * secs) as u64).max(20_000);
        n as f64 / stack.run_reads(n, rng).as_secs_f64()
    };
    let alone = reads(&mut rng);
    let writers = Writers::start(stack, 2);
    let t = Instant::now();
    let with = reads(&mut rng);
    let elapsed = t.elapsed().as_secs_f64();
    let commits = writers.commits.load(Ordering::Relaxed) as f64 / elapsed;
    let full = writers.full.load(Ordering::Relaxed);
    drop(writers);
    println!();
    println!(
        "snapshot point reads/s (one thread, {READS_PER_SNAPSHOT} reads per read-only transaction)"
    );
    println!("  alone: {alone:.0}");
    println!(
        "  with 2 durable writers: {with:.0} (writers committed {commits:.0} txn/s, \
         {full} version-store-full retries)"
    );
    println!("  version store now: {:?}", stack.vs.stats());
}

/// `ESE_BENCH_LOAD=N`: the harness's bulk load through this layer alone, for comparing the
/// layers' costs (the page store's alone: `ESE_BENCH_FIXED` of `ese-btree`'s `btree` bench;
/// the whole engine: `ese_phases` in `benches/compare`). N rows (24-byte random keys from
/// fastrand seed 3, 150-byte random values) inserted in one transaction over the real log and
/// page store (1 GiB cache, a version store of 512 bytes a row), then a durable commit; prints
/// the wall time and the rows per second. `ESE_BENCH_LOAD_LOG=discard` drops the log records
/// instead of writing them.
fn load(n: u64) {
    let discard = std::env::var("ESE_BENCH_LOAD_LOG").as_deref() == Ok("discard");
    let layers = Layers::open(1 << 30, (n * 512).max(256 << 20), discard);
    let (vs, id) = (&layers.vs, layers.tree);
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut k, mut v) = ([0u8; KEY_SIZE], [0u8; VALUE_SIZE]);
    let start = Instant::now();
    let mut t = vs.begin("load".into(), false);
    for _ in 0..n {
        rng.fill(&mut k);
        rng.fill(&mut v);
        t.insert(id, &k, &v).unwrap();
    }
    t.commit_level(false).unwrap();
    let took = start.elapsed();
    println!(
        "load: {n} rows in one transaction in {took:?} ({:.0} rows/s)",
        n as f64 / took.as_secs_f64()
    );
    drop(t);
    drop(layers);
}

fn main() {
    if let Some(n) = std::env::var("ESE_BENCH_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        load(n);
        return;
    }
    let stack = Arc::new(Stack::open());
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &stack);
    c.final_summary();
    summary(&stack);
}
