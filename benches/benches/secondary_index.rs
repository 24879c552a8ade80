//! Secondary indexes against the primary index: point seeks (make key + seek + read a
//! column), range scans of 100 entries under an index range, and the time to build an index
//! over every row of a table.
//!
//! `cargo bench -p ese-benches --bench secondary_index` (`ESE_BENCH_ROWS` rows, default
//! 100,000; `ESE_BENCH_ROWS=1000000` for the 1M-row figures).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark harness"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, IndexCreate, IndexGrbit,
    IndexRangeGrbit, Instance, MakeKeyGrbit, Move, Prep, Seek, Session, Table, TableCreate,
};

fn rows() -> u32 {
    std::env::var("ESE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The secondary key of row `id`: a permutation of the ids (a multiplicative hash), so the
/// secondary order differs from the primary one and both keys are unique.
fn k_of(id: u32, n: u32) -> u32 {
    ((u64::from(id) * 2_654_435_761) % u64::from(n)) as u32
}

fn setup(n: u32) -> (Instance, tempfile::TempDir, Session, Table) {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("bench-ix")
        .system_path(dir.path())
        .log_path(dir.path().join("logs"))
        .cache_size_max_bytes(512 << 20)
        .log_file_size_kib(32_768)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("b.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "t".into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::Long),
                ColumnDef::new("k", ColumnType::Long),
                ColumnDef::new("payload", ColumnType::Binary),
            ],
            indexes: vec![
                IndexCreate {
                    name: "pk".into(),
                    key: "+id\0\0".into(),
                    grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                    key_most: 0,
                },
                IndexCreate {
                    name: "by_k".into(),
                    key: "+k\0\0".into(),
                    grbit: IndexGrbit::empty(),
                    key_most: 0,
                },
            ],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (idc, kc, pc) = (
        t.column_id("id").unwrap(),
        t.column_id("k").unwrap(),
        t.column_id("payload").unwrap(),
    );
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        s.begin_transaction().unwrap();
        for &id in chunk {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(idc, Some(&id.to_le_bytes())).unwrap();
            t.set_column(kc, Some(&k_of(id, n).to_le_bytes())).unwrap();
            t.set_column(pc, Some(&[7u8; 32])).unwrap();
            t.update().unwrap();
        }
        s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
    }
    eprintln!(
        "loaded {n} rows with one secondary index in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    (inst, dir, s, t)
}

fn seeks(c: &mut Criterion) {
    let n = rows();
    let (_inst, _dir, _s, mut t) = setup(n);
    let pc = t.column_id("payload").unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % u64::from(n)) as u32
    };
    let mut g = c.benchmark_group("seek_eq");
    g.throughput(Throughput::Elements(1));
    t.set_current_index(None).unwrap();
    g.bench_function("primary", |b| {
        b.iter(|| {
            t.make_key(Some(&next().to_le_bytes()), MakeKeyGrbit::NEW_KEY)
                .unwrap();
            t.seek_key(Seek::Eq).unwrap();
            black_box(t.retrieve_column(pc).unwrap());
        });
    });
    t.set_current_index(Some("by_k")).unwrap();
    g.bench_function("secondary", |b| {
        b.iter(|| {
            t.make_key(Some(&next().to_le_bytes()), MakeKeyGrbit::NEW_KEY)
                .unwrap();
            t.seek_key(Seek::Eq).unwrap();
            black_box(t.retrieve_column(pc).unwrap());
        });
    });
    g.finish();

    let mut g = c.benchmark_group("range_scan_100");
    g.throughput(Throughput::Elements(100));
    for (name, index) in [("primary", None), ("secondary", Some("by_k"))] {
        t.set_current_index(index).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let start = next() % (n - 100);
                t.make_key(Some(&start.to_le_bytes()), MakeKeyGrbit::NEW_KEY)
                    .unwrap();
                t.seek_key(Seek::Ge).unwrap();
                t.make_key(Some(&(start + 99).to_le_bytes()), MakeKeyGrbit::NEW_KEY)
                    .unwrap();
                t.set_index_range(IndexRangeGrbit::UPPER_LIMIT | IndexRangeGrbit::INCLUSIVE)
                    .unwrap();
                let mut seen = 1;
                black_box(t.retrieve_column(pc).unwrap());
                while t.move_to(Move::Next).is_ok() {
                    black_box(t.retrieve_column(pc).unwrap());
                    seen += 1;
                }
                assert_eq!(seen, 100);
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("index_build");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(n)));
    let mut built = 0u32;
    g.bench_function(format!("{n}_rows"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                built += 1;
                let create = IndexCreate {
                    name: format!("build{built}"),
                    key: "-k\0+payload\0\0".into(),
                    grbit: IndexGrbit::empty(),
                    key_most: 0,
                };
                let started = Instant::now();
                t.create_index(&create).unwrap();
                total += started.elapsed();
                t.delete_index(&create.name).unwrap();
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, seeks);
criterion_main!(benches);
