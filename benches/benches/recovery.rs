//! Soft recovery speed: the time `Instance::init` takes to recover a dirty shutdown, against
//! the volume of log it replays (criterion reports it as bytes/s of log).
//!
//! The image: a table receives durable transactions of 20 inserts (a 4-byte key and a 200-byte
//! value each) with the checkpointer held off, until the log holds the wanted volume past the
//! checkpoint; the instance then terminates with `TermGrbit::DIRTY`, leaving every change to be
//! redone. Each measured iteration copies that image to a fresh directory (not timed) and
//! initializes an instance on it. The log volume is counted in whole generations (1 MiB each;
//! the last is partly filled, so the rate is a slight overestimate for small volumes).
//!
//! `cargo bench -p ese-benches --bench recovery`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark harness"
)]

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, IndexCreate, IndexGrbit, Instance,
    Prep, TableCreate, TermGrbit,
};

const GENERATION_KIB: u32 = 1024;

fn instance(dir: &Path) -> Instance {
    Instance::builder("recovery-bench")
        .system_path(dir)
        .log_path(dir.join("logs"))
        .log_file_size_kib(GENERATION_KIB)
        .cache_size_max_bytes(512 << 20)
        .checkpoint_depth_bytes(1 << 40)
        .version_cleanup_interval_ms(0)
        .create()
        .unwrap()
}

/// Builds a dirty image with at least `mib` MiB of log past the checkpoint; returns the number
/// of generations recovery replays.
fn dirty_image(dir: &Path, mib: u32) -> u32 {
    let inst = instance(dir);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.join("bench.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "t".into(),
            columns: vec![
                ColumnDef::new("k", ColumnType::UnsignedLong),
                ColumnDef::new("v", ColumnType::Binary),
            ],
            indexes: vec![IndexCreate {
                name: "pk".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY,
                key_most: 0,
            }],
        },
    )
    .unwrap();
    inst.checkpoint_now().unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let (k, v) = (t.column_id("k").unwrap(), t.column_id("v").unwrap());
    let logs = dir.join("logs");
    let log_bytes = |logs: &Path| -> u64 {
        std::fs::read_dir(logs)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .count() as u64
            * u64::from(GENERATION_KIB)
            * 1024
    };
    let mut key = 0u32;
    let value = [0x5au8; 200];
    while log_bytes(&logs) < u64::from(mib) << 20 {
        s.begin_transaction().unwrap();
        for _ in 0..20 {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(k, Some(&key.to_le_bytes())).unwrap();
            t.set_column(v, Some(&value)).unwrap();
            t.update().unwrap();
            key = key.wrapping_mul(2_654_435_761).wrapping_add(1);
        }
        s.commit_transaction(CommitGrbit::empty()).unwrap();
    }
    drop(t);
    drop(s);
    let _ = inst.term(TermGrbit::DIRTY);
    drop(inst);
    // Count what a recovery replays.
    let probe = tempfile::tempdir().unwrap();
    copy_dir(dir, probe.path());
    let inst = instance(probe.path());
    inst.init().unwrap();
    let stats = inst.recovery_stats().expect("the image needs recovery");
    inst.term(TermGrbit::empty()).unwrap();
    assert!(stats.pages_redone > 0, "the image needs redo: {stats:?}");
    eprintln!("recovery of a {mib} MiB image: {stats:?}");
    stats.generations.1 - stats.generations.0 + 1
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn recovery(c: &mut Criterion) {
    let mut group = c.benchmark_group("soft_recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for mib in [8u32, 32] {
        let image = tempfile::tempdir().unwrap();
        let generations = dirty_image(image.path(), mib);
        group.throughput(Throughput::Bytes(
            u64::from(generations) * u64::from(GENERATION_KIB) * 1024,
        ));
        group.bench_function(format!("{generations}_generations"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    copy_dir(image.path(), dir.path());
                    dir
                },
                |dir| {
                    let inst = instance(dir.path());
                    inst.init().unwrap();
                    // Keep term out of the measurement: only recovery counts.
                    (inst, dir)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
