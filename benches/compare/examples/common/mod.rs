//! What the single-engine examples share: the instance setup and the harness's table (a
//! 24-byte fixed Binary key column under a unique primary index, a 150-byte Binary value column).

#![allow(dead_code, reason = "each example uses a different subset")]

use std::path::Path;

use ese::{
    ColumnDef, ColumnGrbit, ColumnType, DbId, IndexCreate, IndexGrbit, Instance, InstanceBuilder,
    Prep, Session, Table, TableCreate,
};

/// An instance named `name` with its files in `dir` (logs in `dir/logs`), circular logging and
/// a 1 GiB cache, as the harness sets it up, or a cache of `ESE_PHASES_CACHE_MIB` MiB (a
/// database larger than its cache); pages of 8 KiB, or of `ESE_PHASES_PAGE_SIZE` bytes (4096,
/// 8192, 16384 or 32768) for comparing page sizes.
pub fn builder(name: &str, dir: &Path) -> InstanceBuilder {
    Instance::builder(name)
        .system_path(dir)
        .log_path(dir.join("logs"))
        .circular_log(true)
        .cache_size_max_bytes(
            env_number::<u64>("ESE_PHASES_CACHE_MIB").map_or(1 << 30, |m| m << 20),
        )
        .page_size(env_number("ESE_PHASES_PAGE_SIZE").unwrap_or(8192))
}

/// The number the environment variable `name` holds, or `None` when it is unset or not a
/// number of type `T`.
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A new temporary directory for an example's files, under `ESE_PHASES_DIR` (default `/tmp`).
///
/// # Errors
/// The directory cannot be made.
pub fn work_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::tempdir_in(std::env::var("ESE_PHASES_DIR").unwrap_or("/tmp".into()))
}

/// An initialized instance as [`builder`] sets it up, with a version store for a load of `n`
/// rows in one transaction (512 bytes a row, at least 256 MiB).
///
/// # Errors
/// The engine's error.
pub fn loading_instance(name: &str, dir: &Path, n: usize) -> ese::Result<Instance> {
    let instance = builder(name, dir)
        .version_store_bytes((n as u64 * 512).max(256 << 20))
        .create()?;
    instance.init()?;
    Ok(instance)
}

/// Creates table `kv` in `db`.
///
/// # Errors
/// The engine's error.
pub fn create_kv_table(session: &Session, db: DbId) -> ese::Result<()> {
    session.create_table(
        db,
        &TableCreate {
            name: "kv".into(),
            columns: vec![
                ColumnDef::new("k", ColumnType::Binary)
                    .max_size(24)
                    .grbit(ColumnGrbit::FIXED),
                ColumnDef::new("v", ColumnType::Binary).max_size(150),
            ],
            indexes: vec![IndexCreate {
                name: "primary".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE | IndexGrbit::DISALLOW_NULL,
                key_most: 64,
            }],
        },
    )
}

/// Inserts the next pair of `rng` (key, then value, as the harness draws them) through
/// `table`, whose key and value columns are `cols`; `key` and `value` are the buffers drawn
/// into (the caller reads the key from `key`).
///
/// # Errors
/// The engine's error.
pub fn insert_next(
    table: &mut Table,
    cols: (u32, u32),
    rng: &mut fastrand::Rng,
    key: &mut [u8; 24],
    value: &mut [u8; 150],
) -> ese::Result<()> {
    rng.fill(key);
    rng.fill(value);
    table.prepare_update(Prep::Insert)?;
    table.set_column(cols.0, Some(key))?;
    table.set_column(cols.1, Some(value))?;
    table.update()?;
    Ok(())
}

/// Turns `perf record --control fifo:CTL -D -1` on (`on`) or off around the phase named
/// `phase` when `ESE_PERF_CTL` names the control fifo and `ESE_PERF_PHASE` names this phase;
/// does nothing otherwise. Lets a profile hold one phase of a run alone.
pub fn perf_phase(phase: &str, on: bool) {
    let (Some(ctl), Some(want)) = (
        std::env::var_os("ESE_PERF_CTL"),
        std::env::var_os("ESE_PERF_PHASE"),
    ) else {
        return;
    };
    if want != phase {
        return;
    }
    let cmd: &[u8] = if on { b"enable\n" } else { b"disable\n" };
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .open(&ctl)
        .and_then(|mut f| std::io::Write::write_all(&mut f, cmd))
    {
        eprintln!("perf control fifo {}: {e}", ctl.to_string_lossy());
    }
}

/// CPU time the calling thread has used so far (user + system), from `/proc/thread-self/stat`
/// (Linux, in clock ticks of 10 ms); `None` where that file cannot be read. Set beside a
/// phase's wall-clock time it tells work done on the phase's thread from time spent waiting.
pub fn thread_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

/// Prints `what` with its wall time since `start` and, when both readings exist, the CPU time
/// the calling thread used since [`thread_cpu`] read `cpu_at_start`.
pub fn report_phase(
    what: &str,
    start: std::time::Instant,
    cpu_at_start: Option<std::time::Duration>,
) {
    let wall = start.elapsed();
    match (cpu_at_start, thread_cpu()) {
        (Some(a), Some(b)) => {
            eprintln!(
                "{what}: {wall:?} (this thread's CPU {:?})",
                b.saturating_sub(a)
            );
        }
        _ => eprintln!("{what}: {wall:?}"),
    }
}
