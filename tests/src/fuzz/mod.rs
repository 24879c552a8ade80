//! The logic of the fuzz targets in `fuzz/`, one module per target, each with one entry point
//! `run_<target>(data: &[u8])` that cargo-fuzz and the replay test call alike.
//!
//! | target | input | what must hold |
//! |---|---|---|
//! | [`crash_recovery`] | operations over three sessions, a crash point and a crash model (structured with `arbitrary`) | recovery succeeds (also after a crash during recovery), the integrity check passes, every durable commit is present, nothing uncommitted is visible, lazy commits survive whole and as a prefix in commit order |
//! | [`io_faults`] | the same operations with an injected EIO or ENOSPC (once or for good) instead of a crash, in the workload or in recovery | every call returns a typed error or succeeds; after term and a new init without the fault nothing durably committed is lost |
//! | [`db_file`] | a whole database file, or one page patched into a valid file (checksum fixed or not) | opening, reading every tree and table and the integrity check return results or clean errors |
//! | [`log_file`] | a log generation, a frame area with valid checksums, or a list of record payloads | reading the log and recovering from it return results or clean errors |
//! | [`checkpoint_file`] | a checkpoint file, raw or with valid slot checksums | reading it and recovering from it return results or clean errors |
//!
//! "Never hang" is checked by running every input under a deadline ([`with_deadline`]);
//! "never allocate beyond a cap" by libFuzzer's `-rss_limit_mb` and `-malloc_limit_mb` (see
//! `docs/fuzzing.md`). Every target runs on [`SimFs`], so no input touches the real disk.

#![allow(
    clippy::missing_panics_doc,
    reason = "the targets panic on purpose when the engine breaks a guarantee"
)]

pub mod checkpoint_file;
pub mod crash_recovery;
pub mod db_file;
pub mod io_faults;
pub mod log_file;
mod model;
pub mod reference;
pub mod seeds;
mod workload;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ese::{ErrorKind, Instance};
use ese_core::fs::{FileSystem, OpenOptions, SimFs};

pub use workload::Op;

/// The names of the fuzz targets, as in `fuzz/Cargo.toml` and the corpus directories.
pub const TARGETS: [&str; 5] = [
    "crash_recovery",
    "io_faults",
    "db_file",
    "log_file",
    "checkpoint_file",
];

/// Runs the fuzz target `target` on `data` (the replay test's dispatcher). Returns `false`
/// for an unknown target name.
pub fn run_target(target: &str, data: &[u8]) -> bool {
    match target {
        "crash_recovery" => crash_recovery::run_crash_recovery(data),
        "io_faults" => io_faults::run_io_faults(data),
        "db_file" => db_file::run_db_file(data),
        "log_file" => log_file::run_log_file(data),
        "checkpoint_file" => checkpoint_file::run_checkpoint_file(data),
        _ => return false,
    }
    true
}

/// The checkpoint file's directory (`JET_paramSystemPath`) of every simulated instance.
pub const SYSTEM_DIR: &str = "/sys";
/// The log directory of every simulated instance; it also holds `edb.chk`.
pub const LOG_DIR: &str = "/log";
/// The database of the operation targets.
pub const DB: &str = "/data/f.edb";
/// Page size of every simulated database, in bytes: the smallest, so that few operations
/// split pages and a small cache evicts.
pub const PAGE_SIZE: u32 = 4096;

/// The instance every target uses on `fs`: 4 KiB pages, generations of `log_kib` KiB, a
/// cache of 64 pages (the minimum, so pages are evicted and written during the workload), the
/// background checkpointer, version cleanup and log flusher out of the way (flushes happen at
/// the workload's checkpoints and commits, on the workload's thread, so the I/O sequence of an
/// input is reproducible).
pub(crate) fn instance(fs: &SimFs, log_kib: u32) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let built = Instance::builder("fuzz")
        .system_path(SYSTEM_DIR)
        .log_path(LOG_DIR)
        .page_size(PAGE_SIZE)
        .log_file_size_kib(log_kib)
        .cache_size_max_bytes(64 * u64::from(PAGE_SIZE))
        .checkpoint_depth_bytes(1 << 40)
        .version_cleanup_interval_ms(0)
        .lazy_flush_ms(0)
        .file_system(fsd)
        .create();
    match built {
        Ok(i) => i,
        Err(e) => panic!("the fuzz instance's parameters are valid, yet create failed: {e}"),
    }
}

/// Whether `e` is what a failed write, sync or read, or the fail-stop state it leaves, is
/// reported as.
pub(crate) fn is_io_error(e: &ese::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::DiskIO
            | ErrorKind::DiskFull
            | ErrorKind::LogWriteFail
            | ErrorKind::LogDiskFull
            | ErrorKind::InstanceUnavailable
            | ErrorKind::InstanceUnavailableDueToFatalLogDiskFull
    )
}

/// Reads the whole file at `path`.
///
/// # Errors
/// The file system's errors (`FileNotFound`, `DiskIO`).
pub fn read_file(fs: &SimFs, path: &str) -> ese::Result<Vec<u8>> {
    let f = fs.open(Path::new(path), OpenOptions::read())?;
    let len = usize::try_from(f.len()?).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces the file at `path` with `bytes`, durably (file synced, directory synced).
///
/// # Errors
/// The file system's errors.
pub fn write_file(fs: &SimFs, path: &str, bytes: &[u8]) -> ese::Result<()> {
    let p = Path::new(path);
    let dir = ese_core::fs::parent_dir(p);
    fs.create_dir_all(dir)?;
    let f = fs.open(p, OpenOptions::create())?;
    f.set_len(0)?;
    if !bytes.is_empty() {
        f.write_all_at(bytes, 0)?;
    }
    f.sync_data()?;
    fs.sync_dir(dir)
}

/// Runs `f` on a thread of its own and waits at most `secs` seconds for it: a panic in `f` is
/// raised again here, and a run that does not end in time is reported as a hang (a panic
/// naming `what`).
pub fn with_deadline<T: Send + 'static>(
    what: &str,
    secs: u64,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{what}"))
        .spawn(move || {
            let r = f();
            // The receiver is gone only after a timeout, which panics anyway.
            let _ = tx.send(());
            r
        });
    let worker = match worker {
        Ok(h) => h,
        Err(e) => panic!("{what}: cannot start the worker thread: {e}"),
    };
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no result after {secs} s: the engine hangs")
        }
    }
}
