//! The results: a markdown table like redb's README (rows are phases, columns engines), the
//! ratio of this engine to the best peer in each row, per-operation figures, each engine's
//! setup, and the same as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::store::Setup;
use crate::workload::{Measure, Unit};

/// The engine the ratio column is about.
const THIS_ENGINE: &str = "ese";

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available to the process.
    pub cores: usize,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// Directory of the databases, its device and file system.
    pub storage: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    /// What the running machine is.
    pub fn probe(dir: &Path) -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown CPU".to_owned(), |s| s.trim().to_owned());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mounts = read("/proc/mounts");
        let mount = mounts
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?, f.next()?, f.next()?))
            })
            .filter(|(_, point, _)| canonical.starts_with(point))
            .max_by_key(|(_, point, _)| point.len());
        let storage = match mount {
            Some((dev, point, fs)) => {
                format!(
                    "{} on {dev} ({fs}, mounted at {point})",
                    canonical.display()
                )
            }
            None => canonical.display().to_string(),
        };
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            storage,
        }
    }

    /// One line describing the machine.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}, databases in {}",
            self.cores,
            self.cpu,
            self.memory_bytes as f64 / f64::from(1u32 << 30),
            self.kernel,
            self.storage
        )
    }
}

/// One engine's results.
#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    /// Short name (`--engines`).
    pub name: String,
    /// How it was set up.
    pub setup: Setup,
    /// Its figures, in phase order.
    pub measures: Vec<Measure>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Raw 4 KiB write + fdatasync rate in the databases' directory just before this engine
    /// ran (the disk's rate drifts during a run, and the engines run one after another).
    pub fdatasync_before: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// Records of the bulk load.
    pub elements: usize,
    /// The cache budget in bytes.
    pub cache_bytes: u64,
    /// Seconds of each concurrent and mixed run.
    pub concurrent_seconds: f64,
    /// The machine.
    pub machine: Machine,
    /// Raw 4 KiB write + fdatasync rate in the databases' directory, at the start and the end.
    pub fdatasync_per_second: [f64; 2],
    /// Per engine.
    pub engines: Vec<EngineReport>,
}

/// A row: a phase label and which occurrence of it (two runs of the same phase).
type RowKey = (String, usize);

fn row_keys(measures: &[Measure]) -> Vec<(RowKey, &Measure)> {
    let mut out: Vec<(RowKey, &Measure)> = Vec::new();
    for m in measures {
        let nth = out.iter().filter(|((p, _), _)| *p == m.phase).count();
        out.push(((m.phase.clone(), nth), m));
    }
    out
}

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Millis if v >= 100.0 => format!("{v:.0}ms"),
        Unit::Millis if v >= 1.0 => format!("{v:.1}ms"),
        Unit::Millis => format!("{v:.3}ms"),
        Unit::PerSecond => format!("{}/s", thousands(v)),
        Unit::Bytes if v >= f64::from(1u32 << 30) => {
            format!("{:.2} GiB", v / f64::from(1u32 << 30))
        }
        Unit::Bytes => format!("{:.2} MiB", v / f64::from(1u32 << 20)),
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether `a` is better than `b` in `unit`.
fn better(unit: Unit, a: f64, b: f64) -> bool {
    match unit {
        Unit::Millis | Unit::Bytes => a < b,
        Unit::PerSecond => a > b,
    }
}

/// This engine's figure relative to the best peer's: above 1 means this engine is better.
fn ratio(unit: Unit, this: f64, peer: f64) -> Option<f64> {
    let (num, den) = match unit {
        Unit::Millis | Unit::Bytes => (peer, this),
        Unit::PerSecond => (this, peer),
    };
    (den > 0.0).then(|| num / den)
}

impl Report {
    /// The results as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {} elements\n", thousands(self.elements as f64));
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        let _ = writeln!(s, "Machine: {}\n", self.machine.describe());
        let _ = writeln!(
            s,
            "Raw fdatasync rate in the same directory (4 KiB pwrite at offset 0 + fdatasync, 2 s): \
             {}/s at the start, {}/s at the end.\n",
            thousands(self.fdatasync_per_second[0]),
            thousands(self.fdatasync_per_second[1])
        );
        let before: Vec<String> = self
            .engines
            .iter()
            .map(|e| format!("{} {}/s", e.name, thousands(e.fdatasync_before)))
            .collect();
        let _ = writeln!(
            s,
            "The same rate just before each engine ran (engines run one after another): {}.\n",
            before.join(", ")
        );
        let _ = writeln!(
            s,
            "Cache budget: {} MiB for every engine with a cache setting (see Setup). Concurrent \
             and mixed runs last {} s each.\n",
            self.cache_bytes >> 20,
            self.concurrent_seconds
        );

        let ok: Vec<&EngineReport> = self.engines.iter().collect();
        let mut rows: Vec<(RowKey, Unit)> = Vec::new();
        for e in &ok {
            for (k, m) in row_keys(&e.measures) {
                if !rows.iter().any(|(r, _)| *r == k) {
                    rows.push((k, m.unit));
                }
            }
        }
        let tables: Vec<Vec<(RowKey, &Measure)>> =
            ok.iter().map(|e| row_keys(&e.measures)).collect();
        let lookup = |i: usize, key: &RowKey| -> Option<&Measure> {
            tables
                .get(i)
                .and_then(|t| t.iter().find(|(k, _)| k == key).map(|(_, m)| *m))
        };
        let this = ok.iter().position(|e| e.name == THIS_ENGINE);

        let _ = write!(s, "| |");
        for e in &ok {
            let _ = write!(s, " {} |", e.name);
        }
        if this.is_some() {
            let _ = write!(s, " {THIS_ENGINE} vs best peer |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &ok {
            let _ = write!(s, "---:|");
        }
        if this.is_some() {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for (key, unit) in &rows {
            let values: Vec<Option<f64>> = (0..ok.len())
                .map(|i| lookup(i, key).and_then(|m| m.value))
                .collect();
            let best = values
                .iter()
                .flatten()
                .copied()
                .reduce(|a, b| if better(*unit, b, a) { b } else { a });
            let _ = write!(s, "| {} |", key.0);
            for (i, v) in values.iter().enumerate() {
                let cell = match (v, ok.get(i).and_then(|e| e.error.as_ref())) {
                    (Some(v), _) if Some(*v) == best && values.iter().flatten().count() > 1 => {
                        format!("**{}**", fmt_value(*unit, *v))
                    }
                    (Some(v), _) => fmt_value(*unit, *v),
                    (None, Some(_)) => "failed".to_owned(),
                    (None, None) => "n/a".to_owned(),
                };
                let _ = write!(s, " {cell} |");
            }
            if let Some(t) = this {
                let peer = values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != t)
                    .filter_map(|(_, v)| *v)
                    .reduce(|a, b| if better(*unit, b, a) { b } else { a });
                let cell = match (values.get(t).copied().flatten(), peer) {
                    (Some(v), Some(p)) => match ratio(*unit, v, p) {
                        Some(r) if r < 0.01 => "<0.01×".to_owned(),
                        Some(r) => format!("{r:.2}×"),
                        None => "–".to_owned(),
                    },
                    _ => "–".to_owned(),
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nTimes are wall-clock milliseconds for the whole phase; bold is the best in the row. \
             \"{THIS_ENGINE} vs best peer\" is the best other engine's figure over this engine's \
             for times and sizes, this engine's over the best other's for rates: above 1.00× \
             this engine is ahead.\n"
        );

        let _ = writeln!(s, "### Per operation\n");
        let _ = write!(s, "| |");
        for e in &ok {
            let _ = write!(s, " {} |", e.name);
        }
        let _ = write!(s, "\n|---|");
        for _ in &ok {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for (key, unit) in &rows {
            if *unit != Unit::Millis {
                continue;
            }
            let _ = write!(s, "| {} |", key.0);
            for i in 0..ok.len() {
                let cell = match lookup(i, key).and_then(|m| Some((m.value?, m.ops?))) {
                    Some((ms, ops)) if ops > 1 => {
                        let us = ms * 1000.0 / ops as f64;
                        format!("{us:.2} µs ({}/s)", thousands(ops as f64 / (ms / 1000.0)))
                    }
                    _ => "–".to_owned(),
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }

        let _ = writeln!(s, "\n### Setup\n");
        for e in &self.engines {
            let _ = writeln!(
                s,
                "- **{}** (`{}`): {}. Durability: {}. Cache: {}. {}.",
                e.setup.engine,
                e.name,
                e.setup.mapping,
                e.setup.durability,
                e.setup.cache,
                e.setup.notes
            );
            if let Some(err) = &e.error {
                let _ = writeln!(s, "  - **FAILED**: {err}");
            }
        }
        s
    }
}
