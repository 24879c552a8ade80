//! redb's `lmdb_benchmark` workload, reimplemented, plus concurrent durable commits and a
//! mixed read/write workload. Every read phase checks a checksum of the values read against
//! the one computed from the generated data.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use fastrand::Rng;
use serde::Serialize;

use crate::store::{Handle, KEY_LEN, Key, Res, Store, VALUE_LEN, Value};

/// Seed of the PRNG stream every pair comes from (key first, then value).
pub const SEED: u64 = 3;
/// Transactions of one insert in "individual writes".
pub const INDIVIDUAL_WRITES: usize = 1_000;
/// Transactions in "batch writes".
pub const BATCHES: usize = 100;
/// Inserts per transaction in "batch writes".
pub const BATCH_SIZE: usize = 1_000;
/// Records read per range scan.
pub const RANGE_STEPS: usize = 10;
/// Thread counts of the multi-threaded read phase.
pub const READ_THREADS: &[usize] = &[1, 2, 4];
/// Thread counts of the concurrent durable commit workload.
pub const COMMIT_THREADS: &[usize] = &[1, 4, 16, 64];
/// Reader threads of the mixed workload.
pub const MIXED_READERS: usize = 4;
/// Inserts per commit of the mixed workload's writer.
pub const MIXED_BATCH: usize = 100;
/// Point reads per read snapshot in the mixed workload.
pub const MIXED_READS_PER_SNAPSHOT: usize = 1_000;

/// What a figure measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Elapsed milliseconds (lower is better).
    Millis,
    /// Operations per second (higher is better).
    PerSecond,
    /// Bytes on disk (lower is better).
    Bytes,
}

/// One row's figure for one engine.
#[derive(Clone, Debug, Serialize)]
pub struct Measure {
    /// The row label.
    pub phase: String,
    /// The unit of `value`.
    pub unit: Unit,
    /// The figure; `None` when the engine cannot do it (e.g. no compaction).
    pub value: Option<f64>,
    /// Operations the phase did (for per-operation figures).
    pub ops: Option<u64>,
}

/// The workload's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Records of the bulk load.
    pub elements: usize,
    /// Duration of each concurrent and mixed run.
    pub run_for: Duration,
}

impl Params {
    /// Point reads per "random reads" phase.
    pub fn reads(&self) -> usize {
        self.elements
    }

    /// Scans per "random range reads" phase (500k for 1M elements).
    pub fn scans(&self) -> usize {
        self.elements / 2
    }

    /// Records after the three write phases.
    pub fn loaded(&self) -> u64 {
        (self.elements + INDIVIDUAL_WRITES + BATCHES * BATCH_SIZE) as u64
    }
}

/// Fills the next pair of the stream: key first, then value.
pub fn next_pair(rng: &mut Rng, key: &mut Key, value: &mut Value) {
    rng.fill(key);
    rng.fill(value);
}

/// A 64-bit digest of a value, summed (wrapping) into a phase's checksum.
pub fn digest(v: &[u8]) -> u64 {
    let word = |b: Option<&[u8]>| {
        b.and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let n = v.len();
    let mid = word(v.get(n / 2..n / 2 + 8));
    word(v.get(..8))
        ^ word(v.get(n.saturating_sub(8)..)).rotate_left(21)
        ^ mid.rotate_left(42)
        ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Checksums expected from the generated data, computed before any engine runs.
#[derive(Debug)]
pub struct Expected {
    /// Sum of the digests of the values every range-read phase reads.
    pub range_sum: u64,
    /// Records every range-read phase reads.
    pub range_records: u64,
}

/// Computes the range reads' expected checksum: every loaded pair, sorted by key.
///
/// # Errors
/// Two generated keys equal (the stream would not be a set of distinct keys).
pub fn expected(p: &Params) -> Res<Expected> {
    let total = usize::try_from(p.loaded())?;
    let mut rng = Rng::with_seed(SEED);
    let mut sorted: Vec<(Key, u64)> = Vec::with_capacity(total);
    let (mut key, mut value) = ([0; KEY_LEN], [0; VALUE_LEN]);
    for _ in 0..total {
        next_pair(&mut rng, &mut key, &mut value);
        sorted.push((key, digest(&value)));
    }
    sorted.sort_unstable_by_key(|e| e.0);
    if sorted
        .windows(2)
        .any(|w| w.first().map(|a| a.0) == w.get(1).map(|b| b.0))
    {
        return Err("the generated keys are not distinct".into());
    }
    let mut rng = Rng::with_seed(SEED);
    let (mut range_sum, mut range_records) = (0u64, 0u64);
    for _ in 0..p.scans() {
        next_pair(&mut rng, &mut key, &mut value);
        let start = sorted
            .binary_search_by(|e| e.0.cmp(&key))
            .map_err(|_| "a scan's start key is not loaded")?;
        for e in sorted.iter().skip(start).take(RANGE_STEPS) {
            range_sum = range_sum.wrapping_add(e.1);
            range_records += 1;
        }
    }
    Ok(Expected {
        range_sum,
        range_records,
    })
}

/// A stream positioned after `skip` pairs.
fn stream_at(skip: usize) -> Rng {
    let mut rng = Rng::with_seed(SEED);
    let (mut key, mut value) = ([0; KEY_LEN], [0; VALUE_LEN]);
    for _ in 0..skip {
        next_pair(&mut rng, &mut key, &mut value);
    }
    rng
}

fn check(what: &str, got: u64, want: u64) -> Res<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("CHECK FAILED in {what}: got {got}, expected {want}").into())
    }
}

/// Point reads of `n` keys of `rng`'s stream; returns (checksum read, checksum expected,
/// keys not found).
fn point_reads(h: &mut dyn Handle, rng: &mut Rng, n: usize) -> Res<(u64, u64, u64)> {
    let (mut key, mut value) = ([0; KEY_LEN], [0; VALUE_LEN]);
    let (mut got, mut want, mut missing) = (0u64, 0u64, 0u64);
    for _ in 0..n {
        next_pair(rng, &mut key, &mut value);
        want = want.wrapping_add(digest(&value));
        let found = h.get(&key, &mut |v| got = got.wrapping_add(digest(v)))?;
        missing += u64::from(!found);
    }
    Ok((got, want, missing))
}

/// Records figures and reports progress.
struct Recorder<'a> {
    engine: &'a str,
    out: Vec<Measure>,
}

impl Recorder<'_> {
    fn push(&mut self, phase: &str, unit: Unit, value: Option<f64>, ops: Option<u64>) {
        let shown = match (unit, value) {
            (_, None) => "n/a".to_owned(),
            (Unit::Millis, Some(v)) => format!("{v:.1} ms"),
            (Unit::PerSecond, Some(v)) => format!("{v:.0}/s"),
            (Unit::Bytes, Some(v)) => format!("{:.2} MiB", v / 1_048_576.0),
        };
        eprintln!("  {:<8} {phase:<44} {shown}", self.engine);
        self.out.push(Measure {
            phase: phase.to_owned(),
            unit,
            value,
            ops,
        });
    }

    fn time(&mut self, phase: &str, elapsed: Duration, ops: usize) {
        self.push(
            phase,
            Unit::Millis,
            Some(elapsed.as_secs_f64() * 1000.0),
            Some(ops as u64),
        );
    }
}

/// Runs every phase on `store`, in order.
///
/// # Errors
/// The engine's error, or a failed check (a checksum or a count that does not match).
pub fn run(engine: &str, store: &mut dyn Store, p: &Params, exp: &Expected) -> Res<Vec<Measure>> {
    let mut rec = Recorder {
        engine,
        out: Vec::new(),
    };
    let (mut key, mut value) = ([0u8; KEY_LEN], [0u8; VALUE_LEN]);
    {
        let store: &dyn Store = store;
        let mut h = store.handle()?;
        let mut rng = Rng::with_seed(SEED);

        let t = Instant::now();
        h.write(p.elements, &mut |k, v| next_pair(&mut rng, k, v))?;
        rec.time("bulk load", t.elapsed(), p.elements);

        let t = Instant::now();
        for _ in 0..INDIVIDUAL_WRITES {
            h.write(1, &mut |k, v| next_pair(&mut rng, k, v))?;
        }
        rec.time("individual writes", t.elapsed(), INDIVIDUAL_WRITES);

        let t = Instant::now();
        for _ in 0..BATCHES {
            h.write(BATCH_SIZE, &mut |k, v| next_pair(&mut rng, k, v))?;
        }
        rec.time("batch writes", t.elapsed(), BATCHES * BATCH_SIZE);

        let t = Instant::now();
        let n = h.count()?;
        rec.time("len()", t.elapsed(), 1);
        check("len()", n, p.loaded())?;

        for _ in 0..2 {
            let mut rng = Rng::with_seed(SEED);
            let t = Instant::now();
            h.begin_read()?;
            let (got, want, missing) = point_reads(&mut *h, &mut rng, p.reads())?;
            h.end_read()?;
            rec.time("random reads", t.elapsed(), p.reads());
            check("random reads (keys not found)", missing, 0)?;
            check("random reads (checksum)", got, want)?;
        }

        for _ in 0..2 {
            let mut rng = Rng::with_seed(SEED);
            let (mut got, mut records) = (0u64, 0u64);
            let t = Instant::now();
            h.begin_read()?;
            for _ in 0..p.scans() {
                next_pair(&mut rng, &mut key, &mut value);
                let n = h.range(&key, RANGE_STEPS, &mut |v| {
                    got = got.wrapping_add(digest(v));
                })?;
                records += n as u64;
            }
            h.end_read()?;
            rec.time("random range reads", t.elapsed(), p.scans());
            check("random range reads (records)", records, exp.range_records)?;
            check("random range reads (checksum)", got, exp.range_sum)?;
        }
        drop(h);

        for &threads in READ_THREADS {
            let elapsed = threaded_reads(store, p.elements, threads)?;
            rec.time(
                &format!("random reads ({threads} thread{})", plural(threads)),
                elapsed,
                p.elements,
            );
        }

        let mut h = store.handle()?;
        let mut rng = Rng::with_seed(SEED);
        let t = Instant::now();
        h.remove(p.elements / 2, &mut |k| next_pair(&mut rng, k, &mut value))?;
        rec.time("removals", t.elapsed(), p.elements / 2);
        let n = h.count()?;
        check(
            "count after removals",
            n,
            p.loaded() - (p.elements / 2) as u64,
        )?;
    }

    let sizes = store.sizes()?;
    rec.push(
        "uncompacted size",
        Unit::Bytes,
        Some(sizes.data as f64),
        None,
    );
    rec.push(
        "uncompacted size, whole directory (logs, journals)",
        Unit::Bytes,
        Some(sizes.total as f64),
        None,
    );
    let compacted = store.compact()?;
    rec.push(
        "compacted size",
        Unit::Bytes,
        compacted.map(|s| s.data as f64),
        None,
    );

    let store: &dyn Store = store;
    let mut inserted = p.loaded() - (p.elements / 2) as u64;
    for &threads in COMMIT_THREADS {
        let (commits, elapsed) = concurrent_commits(store, threads, p.run_for)?;
        inserted += commits;
        rec.push(
            &format!("durable commits, {threads} thread{}", plural(threads)),
            Unit::PerSecond,
            Some(commits as f64 / elapsed.as_secs_f64()),
            Some(commits),
        );
    }

    let mixed = mixed(store, p)?;
    inserted += mixed.commits * MIXED_BATCH as u64;
    rec.push(
        &format!("mixed: point reads/s ({MIXED_READERS} readers)"),
        Unit::PerSecond,
        Some(mixed.reads as f64 / mixed.elapsed.as_secs_f64()),
        Some(mixed.reads),
    );
    rec.push(
        &format!("mixed: commits/s (1 writer, {MIXED_BATCH} inserts each)"),
        Unit::PerSecond,
        Some(mixed.commits as f64 / mixed.elapsed.as_secs_f64()),
        Some(mixed.commits),
    );
    let n = store.handle()?.count()?;
    check("count after the concurrent workloads", n, inserted)?;
    Ok(rec.out)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Every loaded key read once, split over `threads` threads, each with its own handle.
fn threaded_reads(store: &dyn Store, elements: usize, threads: usize) -> Res<Duration> {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || -> Res<()> {
                    let (start, end) = (t * elements / threads, (t + 1) * elements / threads);
                    let mut rng = stream_at(start);
                    let h = store.handle();
                    barrier.wait();
                    let mut h = h?;
                    h.begin_read()?;
                    let (got, want, missing) = point_reads(&mut *h, &mut rng, end - start)?;
                    h.end_read()?;
                    check("threaded reads (keys not found)", missing, 0)?;
                    check("threaded reads (checksum)", got, want)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let mut result = Ok(());
        for w in workers {
            let r = w.join().map_err(|_| "a reader thread panicked")?;
            if result.is_ok() {
                result = r;
            }
        }
        result.map(|()| t.elapsed())
    })
}

/// `threads` threads, each committing durable one-insert transactions for `run_for`; returns
/// (commits, elapsed).
fn concurrent_commits(
    store: &dyn Store,
    threads: usize,
    run_for: Duration,
) -> Res<(u64, Duration)> {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || -> Res<u64> {
                    let mut rng = Rng::with_seed(0xC0_0000 + (threads * 1000 + t) as u64);
                    let h = store.handle();
                    barrier.wait();
                    let mut h = h?;
                    let deadline = Instant::now() + run_for;
                    let mut commits = 0;
                    while Instant::now() < deadline {
                        h.write(1, &mut |k, v| next_pair(&mut rng, k, v))?;
                        commits += 1;
                    }
                    Ok(commits)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let mut total = Ok(0u64);
        for w in workers {
            let r = w.join().map_err(|_| "a writer thread panicked")?;
            total = match (total, r) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        total.map(|n| (n, t.elapsed()))
    })
}

struct Mixed {
    reads: u64,
    commits: u64,
    elapsed: Duration,
}

/// [`MIXED_READERS`] threads doing point reads of keys that were not removed while one
/// writer commits batches of [`MIXED_BATCH`] inserts, for `p.run_for`.
fn mixed(store: &dyn Store, p: &Params) -> Res<Mixed> {
    let barrier = Barrier::new(MIXED_READERS + 2);
    let kept = p.elements / 2..p.elements;
    let share = kept.len() / MIXED_READERS;
    if share == 0 {
        return Err("too few elements for the mixed workload".into());
    }
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..MIXED_READERS)
            .map(|r| {
                let barrier = &barrier;
                let first = kept.start + r * share;
                s.spawn(move || -> Res<u64> {
                    let start = stream_at(first);
                    let mut rng = start.clone();
                    let mut left = share;
                    let h = store.handle();
                    barrier.wait();
                    let mut h = h?;
                    let deadline = Instant::now() + p.run_for;
                    let mut reads = 0u64;
                    while Instant::now() < deadline {
                        let n = MIXED_READS_PER_SNAPSHOT.min(left);
                        h.begin_read()?;
                        let (got, want, missing) = point_reads(&mut *h, &mut rng, n)?;
                        h.end_read()?;
                        check("mixed reads (keys not found)", missing, 0)?;
                        check("mixed reads (checksum)", got, want)?;
                        reads += n as u64;
                        left -= n;
                        if left == 0 {
                            rng = start.clone();
                            left = share;
                        }
                    }
                    Ok(reads)
                })
            })
            .collect();
        let writer = {
            let barrier = &barrier;
            s.spawn(move || -> Res<u64> {
                let mut rng = Rng::with_seed(0xB0B);
                let h = store.handle();
                barrier.wait();
                let mut h = h?;
                let deadline = Instant::now() + p.run_for;
                let mut commits = 0;
                while Instant::now() < deadline {
                    h.write(MIXED_BATCH, &mut |k, v| next_pair(&mut rng, k, v))?;
                    commits += 1;
                }
                Ok(commits)
            })
        };
        barrier.wait();
        let t = Instant::now();
        let mut reads = Ok(0u64);
        for w in readers {
            let r = w.join().map_err(|_| "a reader thread panicked")?;
            reads = match (reads, r) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        let commits = writer.join().map_err(|_| "the writer thread panicked")?;
        let elapsed = t.elapsed();
        Ok(Mixed {
            reads: reads?,
            commits: commits?,
            elapsed,
        })
    })
}
