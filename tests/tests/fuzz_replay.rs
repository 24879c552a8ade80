//! Replays the fuzz targets' committed inputs without cargo-fuzz, so `cargo test` guards
//! against regressions on any machine: every seed in `fuzz/corpus-seeds/<target>/` and every
//! crash input kept in `fuzz/regressions/<target>/` runs through the same function the fuzz
//! target calls (`ese_tests::fuzz::run_target`). A bounded loop of random inputs per target
//! follows (`ESE_FUZZ_ITERS`, default 8 per target).
//!
//! `ESE_WRITE_SEEDS=1` first rewrites the seed corpus from `ese_tests::fuzz::seeds`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use ese_tests::fuzz::{self, crash_recovery::CrashInput, io_faults::FaultInput};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The input files under `dir` (sorted; dot files and `README*` skipped).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            p.is_file() && !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    v.sort();
    v
}

fn write_seeds(target: &str) {
    let dir = fuzz_dir().join("corpus-seeds").join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in fuzz::seeds::seeds(target) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn replay(target: &str) {
    if std::env::var("ESE_WRITE_SEEDS").is_ok() {
        write_seeds(target);
    }
    let seeds = inputs(&fuzz_dir().join("corpus-seeds").join(target));
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    assert!(!seeds.is_empty(), "{target}: no committed seed inputs");
    let start = Instant::now();
    for f in seeds.iter().chain(&regressions) {
        let data = std::fs::read(f).unwrap();
        let t = Instant::now();
        let caught = std::panic::catch_unwind(|| fuzz::run_target(target, &data));
        match caught {
            Ok(known) => assert!(known, "unknown target {target}"),
            Err(p) => {
                eprintln!("{target}: input {} failed", f.display());
                std::panic::resume_unwind(p);
            }
        }
        if t.elapsed().as_secs() >= 5 {
            eprintln!("{target}: {} took {:.1?}", f.display(), t.elapsed());
        }
    }
    let iters: u64 = std::env::var("ESE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut rng = fastrand::Rng::with_seed(0x5EED_0000 + target.len() as u64);
    for _ in 0..iters {
        let len = rng.usize(1..2048);
        let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        fuzz::run_target(target, &data);
    }
    println!(
        "{target}: replayed {} seed and {} regression inputs and {iters} random inputs in {:.1?}",
        seeds.len(),
        regressions.len(),
        start.elapsed()
    );
}

#[test]
fn replay_crash_recovery() {
    replay("crash_recovery");
}

#[test]
fn replay_io_faults() {
    replay("io_faults");
}

#[test]
fn replay_db_file() {
    replay("db_file");
}

#[test]
fn replay_log_file() {
    replay("log_file");
}

#[test]
fn replay_checkpoint_file() {
    replay("checkpoint_file");
}

/// The seed encoder is the exact inverse of `arbitrary`'s decoding, so the committed seeds
/// are the workloads they are named after.
#[test]
fn structured_seeds_decode_to_their_inputs() {
    for (name, bytes) in fuzz::seeds::seeds("crash_recovery") {
        let back = CrashInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back.encode(), bytes, "{name}");
        assert!(!back.ops.is_empty(), "{name}");
    }
    for (name, bytes) in fuzz::seeds::seeds("io_faults") {
        let back = FaultInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back.encode(), bytes, "{name}");
    }
    for (name, ops) in fuzz::seeds::workloads() {
        let input = CrashInput {
            big_log: false,
            cut: 3,
            model: 1,
            seed: 2,
            recovery_crash: None,
            ops: ops.clone(),
        };
        let back = CrashInput::arbitrary_take_rest(Unstructured::new(&input.encode())).unwrap();
        assert_eq!(back, input, "{name}");
    }
}

/// The structured seeds do what they are for: their workloads commit, the crash points fall
/// inside the workloads, and faults fire.
#[test]
fn structured_seeds_exercise_commits_crashes_and_faults() {
    let mut inside = 0;
    let mut commits = 0;
    for (name, bytes) in fuzz::seeds::seeds("crash_recovery") {
        let input = CrashInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        let r = fuzz::crash_recovery::crash_recovery(&input);
        println!("crash_recovery {name}: {r:?}");
        commits += r.commits;
        if r.cut < r.workload_ops {
            inside += 1;
        }
    }
    let mut fired = 0;
    for (name, bytes) in fuzz::seeds::seeds("io_faults") {
        let input = FaultInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        let r = fuzz::io_faults::io_faults(&input);
        println!("io_faults {name}: {r:?}");
        fired += usize::from(r.fired);
    }
    println!("{inside} crash points inside the workload, {commits} commits, {fired} faults fired");
    assert!(inside >= 10 && commits >= 50 && fired >= 10);
}

/// An input runs the same I/O sequence every time (the fuzz instance keeps every background
/// thread that does I/O out of the way), so a crash input the fuzzer finds reproduces.
#[test]
fn a_crash_input_replays_the_same_io_sequence() {
    for (name, bytes) in fuzz::seeds::seeds("crash_recovery").into_iter().take(6) {
        let input = CrashInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        let first = fuzz::crash_recovery::crash_recovery(&input);
        let second = fuzz::crash_recovery::crash_recovery(&input);
        assert_eq!(
            first, second,
            "crash_recovery seed {name} ran differently twice"
        );
    }
    for (name, bytes) in fuzz::seeds::seeds("io_faults").into_iter().take(6) {
        let input = FaultInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        let first = fuzz::io_faults::io_faults(&input);
        let second = fuzz::io_faults::io_faults(&input);
        assert_eq!(first, second, "io_faults seed {name} ran differently twice");
    }
}
