//! Records of a 10-column table through the public API: inserts (batches of 1,000 records per
//! transaction, lazy commit) and point retrieval by primary key of every column, on one
//! session and on 4 sessions (threads); the retrieval column by column (JetRetrieveColumn)
//! and in one call (JetRetrieveColumns, buffers reused); and a scan in key order (JetMove
//! Next, then JetRetrieveColumns of every column, per step).
//!
//! The table mixes every storage area: fixed (Long key, LongLong, IEEEDouble, DateTime, Bit),
//! variable (Text, Binary) and tagged (Text, Binary, LongLong) columns.
//!
//! `cargo bench -p ese-benches --bench table_records` (`ESE_BENCH_ROWS` records loaded for
//! the retrieval benchmarks, default 100,000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark harness"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, IndexCreate,
    IndexGrbit, Instance, Move, Prep, RetrieveColumn, Seek, Session, Table, TableCreate,
};

/// Records per insert transaction.
const BATCH: u32 = 1_000;
/// Concurrent sessions of the multi-session benchmarks.
const SESSIONS: usize = 4;
/// Point retrievals per iteration and session.
const LOOKUPS: u32 = 1_000;

fn rows() -> u32 {
    std::env::var("ESE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn table(name: &str) -> TableCreate {
    TableCreate {
        name: name.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("ll", ColumnType::LongLong),
            ColumnDef::new("dbl", ColumnType::IEEEDouble),
            ColumnDef::new("dt", ColumnType::DateTime),
            ColumnDef::new("bit", ColumnType::Bit),
            ColumnDef::new("vtext", ColumnType::Text).max_size(100),
            ColumnDef::new("vbin", ColumnType::Binary).max_size(100),
            ColumnDef::new("ttext", ColumnType::Text).grbit(ColumnGrbit::TAGGED),
            ColumnDef::new("tbin", ColumnType::Binary).grbit(ColumnGrbit::TAGGED),
            ColumnDef::new("tll", ColumnType::LongLong).grbit(ColumnGrbit::TAGGED),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
            key_most: 0,
        }],
    }
}

/// Column ids in table order.
fn columns(t: &Table) -> [u32; 10] {
    let names = [
        "id", "ll", "dbl", "dt", "bit", "vtext", "vbin", "ttext", "tbin", "tll",
    ];
    names.map(|n| t.column_id(n).unwrap())
}

/// Inserts records `first..first + BATCH` in one lazily committed transaction.
fn insert_batch(s: &Session, t: &mut Table, c: &[u32; 10], first: u32) {
    s.begin_transaction().unwrap();
    for id in first..first + BATCH {
        let f = f64::from(id);
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(c[0], Some(&id.to_le_bytes())).unwrap();
        t.set_column(c[1], Some(&(i64::from(id) * 7).to_le_bytes()))
            .unwrap();
        t.set_column(c[2], Some(&(f * 0.5).to_le_bytes())).unwrap();
        t.set_column(c[3], Some(&(45_000.0 + f / 86_400.0).to_le_bytes()))
            .unwrap();
        t.set_column(c[4], Some(&[u8::from(id % 2 == 0)])).unwrap();
        t.set_column(c[5], Some(format!("record number {id}").as_bytes()))
            .unwrap();
        t.set_column(c[6], Some(&[id as u8; 24])).unwrap();
        t.set_column(c[7], Some(b"a tagged text value")).unwrap();
        t.set_column(c[8], Some(&[0xA5; 40])).unwrap();
        t.set_column(c[9], Some(&u64::from(id).to_le_bytes()))
            .unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
}

/// Seeks record `id` and retrieves its 10 columns.
fn retrieve(t: &mut Table, c: &[u32; 10], id: u32) {
    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
    for col in c {
        black_box(t.retrieve_column(*col).unwrap());
    }
}

/// Seeks record `id` and retrieves its 10 columns in one call into `rc`.
fn retrieve_all(t: &mut Table, rc: &mut [RetrieveColumn], id: u32) {
    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
    t.retrieve_columns(rc).unwrap();
    black_box(&*rc);
}

struct Bench {
    _dir: tempfile::TempDir,
    inst: Instance,
    path: std::path::PathBuf,
    s: Session,
    db: DbId,
}

fn setup() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("bench-records")
        .system_path(dir.path())
        .log_path(dir.path().join("logs"))
        .cache_size_max_bytes(512 << 20)
        .log_file_size_kib(32_768)
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let path = dir.path().join("r.edb");
    let db = s
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    Bench {
        _dir: dir,
        inst,
        path,
        s,
        db,
    }
}

/// A session per thread with a cursor on `name`.
fn workers(b: &Bench, name: &str) -> Vec<(Session, Table)> {
    (0..SESSIONS)
        .map(|_| {
            let s = b.inst.begin_session().unwrap();
            let db = s.open_database(&b.path).unwrap();
            let t = s.open_table(db, name).unwrap();
            (s, t)
        })
        .collect()
}

/// A xorshift generator of record ids below `n`.
fn ids(seed: u64, n: u32) -> impl FnMut() -> u32 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(n)) as u32
    }
}

fn inserts(c: &mut Criterion) {
    let b = setup();
    b.s.create_table(b.db, &table("ins1")).unwrap();
    b.s.create_table(b.db, &table("ins4")).unwrap();
    let mut g = c.benchmark_group("table_insert_batch_1000");
    g.sample_size(20);

    g.throughput(Throughput::Elements(u64::from(BATCH)));
    let mut t = b.s.open_table(b.db, "ins1").unwrap();
    let cols = columns(&t);
    let mut next = 0u32;
    g.bench_function("1_session", |bn| {
        bn.iter(|| {
            insert_batch(&b.s, &mut t, &cols, next);
            next += BATCH;
        });
    });

    g.throughput(Throughput::Elements(u64::from(BATCH) * SESSIONS as u64));
    let mut ws = workers(&b, "ins4");
    let next = AtomicU32::new(0);
    g.bench_function("4_sessions", |bn| {
        bn.iter(|| {
            std::thread::scope(|sc| {
                for (s, t) in &mut ws {
                    let first = next.fetch_add(BATCH, Ordering::Relaxed);
                    sc.spawn(move || insert_batch(s, t, &cols, first));
                }
            });
        });
    });
    g.finish();
}

fn retrievals(c: &mut Criterion) {
    let n = rows();
    let b = setup();
    b.s.create_table(b.db, &table("r")).unwrap();
    let mut t = b.s.open_table(b.db, "r").unwrap();
    let cols = columns(&t);
    let started = std::time::Instant::now();
    for first in (0..n).step_by(BATCH as usize) {
        insert_batch(&b.s, &mut t, &cols, first);
    }
    eprintln!(
        "loaded {n} records of 10 columns in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let n = n.div_ceil(BATCH) * BATCH;
    let mut g = c.benchmark_group("table_retrieve_10_columns");

    g.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    let mut next = ids(0x9E37_79B9_7F4A_7C15, n);
    g.bench_function("1_session", |bn| {
        bn.iter(|| {
            for _ in 0..LOOKUPS {
                retrieve(&mut t, &cols, next());
            }
        });
    });

    g.throughput(Throughput::Elements(u64::from(LOOKUPS) * SESSIONS as u64));
    let mut ws = workers(&b, "r");
    let mut round = 0u64;
    g.bench_function("4_sessions", |bn| {
        bn.iter(|| {
            round += 1;
            std::thread::scope(|sc| {
                for (w, (_s, t)) in ws.iter_mut().enumerate() {
                    let mut next = ids(round * 31 + w as u64, n);
                    sc.spawn(move || {
                        for _ in 0..LOOKUPS {
                            retrieve(t, &cols, next());
                        }
                    });
                }
            });
        });
    });
    g.finish();

    let mut g = c.benchmark_group("table_retrieve_columns_10");
    g.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    let mut rc = cols.map(RetrieveColumn::new);
    let mut next = ids(0x9E37_79B9_7F4A_7C15, n);
    g.bench_function("1_session", |bn| {
        bn.iter(|| {
            for _ in 0..LOOKUPS {
                retrieve_all(&mut t, &mut rc, next());
            }
        });
    });
    g.throughput(Throughput::Elements(u64::from(LOOKUPS) * SESSIONS as u64));
    g.bench_function("4_sessions", |bn| {
        bn.iter(|| {
            round += 1;
            std::thread::scope(|sc| {
                for (w, (_s, t)) in ws.iter_mut().enumerate() {
                    let mut next = ids(round * 31 + w as u64, n);
                    let mut rc = cols.map(RetrieveColumn::new);
                    sc.spawn(move || {
                        for _ in 0..LOOKUPS {
                            retrieve_all(t, &mut rc, next());
                        }
                    });
                }
            });
        });
    });
    g.finish();

    // Steps of a scan: each step moves to the next record and retrieves every column; at the
    // end of the index the scan starts again at the first record.
    let mut g = c.benchmark_group("table_scan_step_retrieve_columns_10");
    g.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    t.move_to(Move::First).unwrap();
    g.bench_function("1_session", |bn| {
        bn.iter(|| {
            for _ in 0..LOOKUPS {
                match t.move_to(Move::Next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ese::ErrorKind::NoCurrentRecord => {
                        t.move_to(Move::First).unwrap();
                    }
                    Err(e) => panic!("move: {e}"),
                }
                t.retrieve_columns(&mut rc).unwrap();
                black_box(&rc);
            }
        });
    });
    g.finish();
}

criterion_group!(benches, inserts, retrievals);
criterion_main!(benches);
