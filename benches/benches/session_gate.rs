//! The cost of entering the engine: the instance gate plus the session's concurrent-entry and
//! affinity checks, per call (issue target: under 50 ns uncontended).
//!
//! `cargo bench -p ese-benches --bench session_gate`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names,
    missing_docs,
    reason = "benchmark harness"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ese::{CommitGrbit, Instance};
use ese_session::{InstanceGate, SessionTable};

fn gate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("bench")
        .system_path(dir.path())
        .log_path(dir.path())
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();

    let mut g = c.benchmark_group("session_gate");
    // Raw gate: instance check + session entry guard, as every session call does.
    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    let table = SessionTable::new(16).unwrap();
    let core = table.begin().unwrap();
    g.bench_function("enter_leave_uncontended", |b| {
        b.iter(|| {
            let call = core.enter(black_box(&gate), false).unwrap();
            black_box(&call);
        });
    });
    // A full public call through the gate (JetGetSessionInfo's level).
    g.bench_function("transaction_level_uncontended", |b| {
        b.iter(|| black_box(s.transaction_level().unwrap()));
    });
    // Nested begin + commit: the affinity check of the bound transaction on each call.
    s.begin_transaction().unwrap();
    g.bench_function("nested_begin_commit_affinity_checked", |b| {
        b.iter(|| {
            s.begin_transaction().unwrap();
            s.commit_transaction(CommitGrbit::empty()).unwrap();
        });
    });
    s.commit_transaction(CommitGrbit::empty()).unwrap();

    // Two threads, each on its own session: the per-session counters do not share a cache line
    // with each other, the gate flags are read-only.
    g.bench_function("transaction_level_2_threads_own_sessions", |b| {
        b.iter_custom(|iters| {
            let other = inst.begin_session().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let st = Arc::clone(&stop);
            let h = thread::spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    black_box(other.transaction_level().unwrap());
                }
                other.end(ese::EndSessionGrbit::empty()).unwrap();
            });
            let start = Instant::now();
            for _ in 0..iters {
                black_box(s.transaction_level().unwrap());
            }
            let t = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            h.join().unwrap();
            t
        });
    });
    g.finish();
}

criterion_group!(benches, gate);
criterion_main!(benches);
