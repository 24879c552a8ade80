//! Side-by-side benchmark of this engine against redb, LMDB (heed), sled, fjall and SQLite
//! (rusqlite, bundled) on redb's `lmdb_benchmark` workload, plus concurrent durable commits
//! and a mixed read/write workload.
//!
//! ```sh
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- \
//!     [--elements N] [--engines a,b,..] [--json FILE]
//! ```

mod engines;
mod report;
mod store;
mod workload;

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::engines::Config;
use crate::report::{EngineReport, Machine, Report};
use crate::store::Res;
use crate::workload::Params;

/// Side-by-side benchmark of the engine against redb, LMDB, sled, fjall and SQLite.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Records of the bulk load (the other phases scale with it).
    #[arg(long, default_value_t = 1_000_000)]
    elements: usize,
    /// Engines to run, comma separated (default: all of this build).
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<String>>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Cache budget in MiB for every engine that has a cache setting.
    #[arg(long, default_value_t = 1024)]
    cache_mib: u64,
    /// Seconds each concurrent-commit and mixed run lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Directory for the databases (default: a new temporary directory); each engine gets a
    /// subdirectory, removed after it ran.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("FAILED: at least one engine failed (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes 4 KiB at offset 0 and fdatasyncs it, repeatedly, for `run_for`; returns the rate.
fn fdatasync_rate(dir: &Path, run_for: Duration) -> Res<f64> {
    let path = dir.join("fdatasync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = [0x5Au8; 4096];
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < run_for {
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn run(args: &Args) -> Res<bool> {
    let names: Vec<String> = match &args.engines {
        Some(list) => list.iter().map(|s| s.trim().to_lowercase()).collect(),
        None => engines::ALL.iter().map(|s| (*s).to_owned()).collect(),
    };
    let cfg = Config {
        elements: args.elements,
        cache_bytes: args.cache_mib << 20,
    };
    for n in &names {
        if engines::setup(n, &cfg).is_none() {
            return Err(format!(
                "unknown engine {n:?}; this build has: {}",
                engines::ALL.join(", ")
            )
            .into());
        }
    }
    if args.elements < 16 {
        return Err("--elements must be at least 16".into());
    }
    let params = Params {
        elements: args.elements,
        run_for: Duration::from_secs_f64(args.seconds),
    };
    let temp;
    let base = if let Some(d) = &args.dir {
        std::fs::create_dir_all(d)?;
        d.clone()
    } else {
        temp = tempfile::Builder::new()
            .prefix("ese-bench-compare")
            .tempdir()?;
        temp.path().to_path_buf()
    };
    let machine = Machine::probe(&base);
    eprintln!("{}", machine.describe());
    eprintln!(
        "computing the expected checksums of {} elements...",
        args.elements
    );
    let expected = workload::expected(&params)?;

    let probe = Duration::from_secs(2);
    let sync_before = fdatasync_rate(&base, probe)?;
    eprintln!("raw fdatasync rate (4 KiB pwrite at offset 0 + fdatasync): {sync_before:.0}/s");

    let mut reports = Vec::new();
    let mut all_ok = true;
    for name in &names {
        let setup = engines::setup(name, &cfg).ok_or("unknown engine")?;
        eprintln!("== {}", setup.engine);
        let sync_here = fdatasync_rate(&base, probe)?;
        eprintln!("   raw fdatasync rate before {name}: {sync_here:.0}/s");
        let dir = base.join(name);
        std::fs::create_dir_all(&dir)?;
        let started = Instant::now();
        let result = engines::open(name, &dir, &cfg)
            .and_then(|mut store| workload::run(name, &mut *store, &params, &expected));
        let (measures, error) = match result {
            Ok(m) => (m, None),
            Err(e) => {
                all_ok = false;
                eprintln!("!! {name} FAILED: {e}");
                (Vec::new(), Some(e.to_string()))
            }
        };
        eprintln!("   ({name}: {:.1} s)", started.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dir)?;
        reports.push(EngineReport {
            name: name.clone(),
            setup,
            measures,
            error,
            fdatasync_before: sync_here,
        });
    }
    let sync_after = fdatasync_rate(&base, probe)?;
    eprintln!("raw fdatasync rate at the end: {sync_after:.0}/s");

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        elements: args.elements,
        cache_bytes: cfg.cache_bytes,
        concurrent_seconds: args.seconds,
        machine,
        fdatasync_per_second: [sync_before, sync_after],
        engines: reports,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(report.markdown().as_bytes())?;
    out.flush()?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(all_ok)
}
