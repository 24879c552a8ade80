//! Indexes a directory tree into a database, the way Windows Search keeps its index in ESE.
//!
//! ```sh
//! cargo run --release --example index_files -- [DIR] [--db PATH] [--workers N] \
//!     [--sessions N] [--batch N] [--find NAME]
//! ```
//!
//! Every file under `DIR` (default `.`) becomes a row of table `files` in `PATH/files.edb`
//! (default `./index_files.db/`, logs in `PATH/logs`). The database directory itself and
//! directories named `target` or `.git` are skipped. A second run is incremental: a file with
//! the same size and modification time is left alone, a changed one is replaced, a vanished
//! one deleted. Then the example queries its secondary indexes: the largest files, the files
//! modified in the last 24 hours, count and bytes per extension, and `--find NAME`.
//!
//! **Sessions and threads.** `--workers` threads (default: the number of cores) read and
//! checksum files, and share `--sessions` sessions (default: half the workers, at least one)
//! the way the JetSetSessionContext remarks describe a COM server doing it: a worker acquires
//! a session by calling `set_context` with that session's own context value (exactly one
//! thread wins; the others get `SessionContextAlreadySet` and try the next session), does its
//! insert or replace, and releases it with `reset_context`. Each session keeps one open
//! transaction of up to `--batch` rows (default 500), begun by one thread and continued and
//! committed durably by others: the transaction is bound to the context value, not to a
//! thread.
//!
//! **Crashes.** Kill the example at any moment: the next run's instance init recovers the
//! database from its log (and says so), every committed batch is there, the open ones are
//! rolled back, and the incremental run redoes the rest.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts become f64 only for rates and percentages on display"
)]

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, Error,
    ErrorKind, IndexCreate, IndexGrbit, IndexRangeGrbit, Instance, MakeKeyGrbit, Move, Prep, Seek,
    Session, Table, TableCreate, TermGrbit,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Index a directory tree into an ESE-style database, incrementally, then query it.
#[derive(Debug, Parser)]
#[command(name = "index_files")]
struct Args {
    /// The directory to index.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Directory of the database and its logs.
    #[arg(long, default_value = "index_files.db")]
    db: PathBuf,
    /// Threads reading files (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Sessions the workers share (default: max(1, workers / 2)).
    #[arg(long)]
    sessions: Option<usize>,
    /// Rows per transaction; each batch is committed durably.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Look files up by name (case-insensitive) through the name index.
    #[arg(long)]
    find: Option<String>,
}

const TABLE: &str = "files";
/// Bytes of a text file's beginning kept in the row.
const HEAD_BYTES: usize = 4096;
/// Days from the OLE automation epoch (1899-12-30) to the Unix epoch.
const OLE_UNIX_EPOCH_DAYS: f64 = 25_569.0;

/// The table's columns, by id.
#[derive(Clone, Copy, Debug)]
struct Cols {
    path_hash: u32,
    path: u32,
    name: u32,
    ext: u32,
    size: u32,
    mtime: u32,
    kind: u32,
    checksum: u32,
    head: u32,
    lines: u32,
}

impl Cols {
    fn of(t: &Table) -> ese::Result<Cols> {
        Ok(Cols {
            path_hash: t.column_id("path_hash")?,
            path: t.column_id("path")?,
            name: t.column_id("name")?,
            ext: t.column_id("ext")?,
            size: t.column_id("size")?,
            mtime: t.column_id("mtime")?,
            kind: t.column_id("kind")?,
            checksum: t.column_id("checksum")?,
            head: t.column_id("head")?,
            lines: t.column_id("lines")?,
        })
    }
}

/// The definition of table `files`.
///
/// The primary key is `path_hash`, a 128-bit FNV-1a hash of the path's bytes, not the path:
/// a path may be 4,096 bytes long, while a key is at most 255 bytes by default (a truncated
/// path key would make two long paths with a common prefix collide), and Text keys compare
/// case-insensitively, which would make `README` and `readme` one row on a case-sensitive
/// file system. The path itself is a LongText column (up to 2 GiB, stored in the record while
/// it fits). 128 bits make an accidental collision negligible for any real tree (about
/// 10^-20 for a billion files).
fn table_create() -> TableCreate {
    let idx = |name: &str, key: &str, grbit: IndexGrbit| IndexCreate {
        name: name.into(),
        key: key.into(),
        grbit,
        key_most: 0,
    };
    TableCreate {
        name: TABLE.into(),
        columns: vec![
            ColumnDef::new("path_hash", ColumnType::Binary).max_size(16),
            ColumnDef::new("path", ColumnType::LongText),
            ColumnDef::new("name", ColumnType::Text).max_size(255),
            ColumnDef::new("ext", ColumnType::Text).max_size(255),
            ColumnDef::new("size", ColumnType::LongLong),
            ColumnDef::new("mtime", ColumnType::DateTime),
            ColumnDef::new("kind", ColumnType::Text).max_size(16),
            ColumnDef::new("checksum", ColumnType::Binary).max_size(4),
            ColumnDef::new("head", ColumnType::LongBinary),
            ColumnDef::new("lines", ColumnType::Long),
        ],
        indexes: vec![
            idx(
                "primary",
                "+path_hash\0\0",
                IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
            ),
            idx("by_ext_size", "+ext\0-size\0\0", IndexGrbit::empty()),
            idx("by_mtime", "+mtime\0\0", IndexGrbit::empty()),
            idx("by_name", "+name\0\0", IndexGrbit::empty()),
        ],
    }
}

/// FNV-1a, 128 bits: stable across Rust versions and platforms (unlike std's hasher), which
/// a key stored on disk needs.
fn path_hash(b: &[u8]) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for &x in b {
        h ^= u128::from(x);
        h = h.wrapping_mul(PRIME);
    }
    h.to_le_bytes()
}

/// A modification time as an OLE automation date (ESE's DateTime: f64 days since
/// 1899-12-30).
fn ole_date(t: SystemTime) -> f64 {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    secs / 86_400.0 + OLE_UNIX_EPOCH_DAYS
}

/// An OLE date as `YYYY-MM-DD HH:MM:SS` UTC.
fn ole_text(d: f64) -> String {
    let secs = ((d - OLE_UNIX_EPOCH_DAYS) * 86_400.0).round() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B"))
    }
}

/// What the walk found for one path.
#[derive(Debug)]
struct Job {
    /// The path as stored (relative to the current directory when DIR is `.`).
    path: PathBuf,
    hash: [u8; 16],
    kind: &'static str,
    size: i64,
    mtime: f64,
    /// Whether a row for the path exists (replace) or not (insert).
    replace: bool,
}

/// What reading a file gave.
#[derive(Debug, Default)]
struct Content {
    checksum: Option<u32>,
    head: Option<Vec<u8>>,
    lines: Option<i32>,
}

/// Reads a regular file once: CRC-32 of the whole content; for a text file (no NUL byte and
/// valid UTF-8 in its first 4 KiB) its beginning and its line count. A file that cannot be
/// read (permissions, removed meanwhile) gets no checksum.
fn read_content(path: &Path, head_cap: usize) -> Content {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Content::default();
    };
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut text: Option<bool> = None;
    let mut lines: u64 = 0;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Content::default(),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        crc.update(chunk);
        if head.len() < HEAD_BYTES {
            let want = (HEAD_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(chunk.get(..want).unwrap_or_default());
        }
        if text.is_none() && head.len() >= HEAD_BYTES {
            text = Some(is_text(&head));
        }
        if text != Some(false) {
            #[allow(
                clippy::naive_bytecount,
                reason = "no bytecount dependency; fast enough"
            )]
            let n = chunk.iter().filter(|&&b| b == b'\n').count();
            lines += n as u64;
        }
    }
    let text = text.unwrap_or_else(|| is_text(&head));
    let mut c = Content {
        checksum: Some(crc.finalize()),
        ..Content::default()
    };
    if text {
        head.truncate(head_cap);
        c.head = Some(head);
        c.lines = Some(i32::try_from(lines).unwrap_or(i32::MAX));
    }
    c
}

fn is_text(head: &[u8]) -> bool {
    !head.contains(&0)
        && match std::str::from_utf8(head) {
            Ok(_) => true,
            // Cut inside a multi-byte character at the end of the 4 KiB: still text.
            Err(e) => e.error_len().is_none(),
        }
}

/// The rows of the previous run: path hash → (size, mtime bits).
type Known = HashMap<[u8; 16], (i64, u64)>;

fn load_known(t: &mut Table, c: Cols) -> ese::Result<Known> {
    let mut known = Known::new();
    let mut on = first(t)?;
    while on {
        let h = t.retrieve_column(c.path_hash)?.unwrap_or_default();
        let size = le_i64(t.retrieve_column(c.size)?.as_deref());
        let mtime = le_f64(t.retrieve_column(c.mtime)?.as_deref());
        if let Ok(h) = <[u8; 16]>::try_from(h.as_slice()) {
            known.insert(h, (size, mtime.to_bits()));
        }
        on = next(t, Move::Next)?;
    }
    Ok(known)
}

fn le_i64(b: Option<&[u8]>) -> i64 {
    b.and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, i64::from_le_bytes)
}

fn le_f64(b: Option<&[u8]>) -> f64 {
    b.and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0.0, f64::from_le_bytes)
}

/// Moves to the first entry of the current index; false when it is empty.
fn first(t: &mut Table) -> ese::Result<bool> {
    absent_is_false(t.move_to(Move::First))
}

/// Moves next/previous; false at the end (or the end of the index range).
fn next(t: &mut Table, m: Move) -> ese::Result<bool> {
    absent_is_false(t.move_to(m))
}

fn absent_is_false(r: ese::Result<()>) -> ese::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::NoCurrentRecord | ErrorKind::RecordNotFound
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Walks `root` with std::fs (no symlinks followed), skipping `skip_dir` and directories
/// named `target` or `.git`. Returns the jobs to do, the paths seen and the unchanged count.
fn walk(root: &Path, skip_dir: Option<&Path>, known: &Known) -> (Vec<Job>, HashSet<[u8; 16]>, u64) {
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    let mut unchanged = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let name = entry.file_name();
                let skipped = name == "target"
                    || name == ".git"
                    || skip_dir.is_some_and(|s| path.canonicalize().is_ok_and(|p| p == s));
                if !skipped {
                    stack.push(path);
                }
                continue;
            }
            let stored = if root == Path::new(".") {
                path.strip_prefix(".")
                    .map_or(path.clone(), Path::to_path_buf)
            } else {
                path.clone()
            };
            let hash = path_hash(stored.as_os_str().as_encoded_bytes());
            let kind = if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "other"
            };
            let size = i64::try_from(meta.len()).unwrap_or(i64::MAX);
            let mtime = meta.modified().map_or(0.0, ole_date);
            if !seen.insert(hash) {
                continue;
            }
            let replace = match known.get(&hash) {
                Some(&(s, m)) if s == size && m == mtime.to_bits() => {
                    unchanged += 1;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            jobs.push(Job {
                path: stored,
                hash,
                kind,
                size,
                mtime,
                replace,
            });
        }
    }
    (jobs, seen, unchanged)
}

/// One pooled session: its cursor and its open batch. Only the thread that holds the
/// session's context touches it (the mutex is never contended; it makes the sharing safe).
struct Slot {
    session: Session,
    context: usize,
    state: Mutex<SlotState>,
}

struct SlotState {
    table: Table,
    /// Rows in the open transaction.
    pending: usize,
}

/// Counters shared by the workers.
#[derive(Default)]
struct Counts {
    inserted: AtomicU64,
    replaced: AtomicU64,
    transactions: AtomicU64,
    bytes_read: AtomicU64,
}

/// Writes one row (insert or replace) with the values of `job` and `content`.
fn write_row(t: &mut Table, c: Cols, job: &Job, content: &Content) -> ese::Result<()> {
    if job.replace {
        t.seek(&[Some(&job.hash)], Seek::Eq)?;
        t.prepare_update(Prep::Replace)?;
    } else {
        t.prepare_update(Prep::Insert)?;
        t.set_column(c.path_hash, Some(&job.hash))?;
    }
    let path = job.path.as_os_str().as_encoded_bytes();
    let name = job
        .path
        .file_name()
        .map(std::ffi::OsStr::as_encoded_bytes)
        .unwrap_or_default();
    let ext = job
        .path
        .extension()
        .map(std::ffi::OsStr::as_encoded_bytes)
        .unwrap_or_default();
    t.set_column(c.path, Some(path))?;
    t.set_column(c.name, Some(name).filter(|n| !n.is_empty()))?;
    t.set_column(c.ext, Some(ext).filter(|e| !e.is_empty()))?;
    t.set_column(c.size, Some(&job.size.to_le_bytes()))?;
    t.set_column(c.mtime, Some(&job.mtime.to_le_bytes()))?;
    t.set_column(c.kind, Some(job.kind.as_bytes()))?;
    let crc = content.checksum.map(u32::to_be_bytes);
    t.set_column(c.checksum, crc.as_ref().map(<[u8; 4]>::as_slice))?;
    t.set_column(c.head, content.head.as_deref())?;
    let lines = content.lines.map(i32::to_le_bytes);
    t.set_column(c.lines, lines.as_ref().map(<[u8; 4]>::as_slice))?;
    t.update()?;
    Ok(())
}

/// Acquires a pooled session for the calling thread: `set_context` with the session's own
/// context value, trying the sessions in turn from `start` (the JetSetSessionContext
/// pattern: the engine lets exactly one thread win a session).
fn acquire(slots: &[Slot], start: usize) -> ese::Result<&Slot> {
    let n = slots.len();
    let mut round = 0u32;
    loop {
        for i in 0..n {
            let slot = slots
                .get((start + i) % n)
                .ok_or_else(|| Error::new(ErrorKind::InternalError))?;
            match slot.session.set_context(slot.context) {
                Ok(()) => return Ok(slot),
                Err(e) if e.kind() == ErrorKind::SessionContextAlreadySet => {}
                Err(e) => return Err(e),
            }
        }
        round += 1;
        if round < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// One worker: takes jobs until none is left, reads each file without a session, then
/// writes its row through a pooled session.
/// What the workers share.
struct Shared<'a> {
    jobs: &'a [Job],
    next_job: &'a AtomicUsize,
    slots: &'a [Slot],
    cols: Cols,
    batch: usize,
    counts: &'a Counts,
    stop: &'a AtomicBool,
    pb: &'a ProgressBar,
}

fn worker(id: usize, sh: &Shared<'_>) -> ese::Result<()> {
    let Shared {
        jobs,
        next_job,
        slots,
        cols,
        batch,
        counts,
        stop,
        pb,
    } = *sh;
    while !stop.load(Ordering::Relaxed) {
        let i = next_job.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else {
            return Ok(());
        };
        // The path and the text's beginning are long-value columns: when the record would not
        // fit a page, the engine stores them apart from it (separated long values).
        let content = if job.kind == "file" {
            read_content(&job.path, HEAD_BYTES)
        } else {
            Content::default()
        };
        if job.kind == "file" {
            counts
                .bytes_read
                .fetch_add(u64::try_from(job.size).unwrap_or(0), Ordering::Relaxed);
        }
        let slot = acquire(slots, id)?;
        let r = (|| -> ese::Result<()> {
            let mut st = slot
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.pending == 0 {
                slot.session.begin_transaction()?;
            }
            write_row(&mut st.table, cols, job, &content)?;
            st.pending += 1;
            if st.pending >= batch {
                slot.session.commit_transaction(CommitGrbit::empty())?;
                st.pending = 0;
                counts.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })();
        // Release the session even after an error, so the main thread can roll it back.
        let released = slot.session.reset_context();
        r.map_err(|e| e.with_path(&job.path))?;
        released?;
        if job.replace {
            counts.replaced.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.inserted.fetch_add(1, Ordering::Relaxed);
        }
        pb.inc(1);
    }
    Ok(())
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} files ({per_sec}, {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message("indexing");
    pb
}

/// Opens (or creates) the database and table; returns the database id.
fn open_or_create(s: &Session, path: &Path) -> ese::Result<DbId> {
    let db = if path.exists() {
        s.attach_database(path, AttachDatabaseGrbit::empty())?;
        s.open_database(path)?
    } else {
        s.create_database(path, CreateDatabaseGrbit::empty())?
    };
    match s.open_table(db, TABLE) {
        Ok(_) => {}
        // A run killed between creating the database and the table leaves no table.
        Err(e) if e.kind() == ErrorKind::ObjectNotFound => s.create_table(db, &table_create())?,
        Err(e) => return Err(e),
    }
    Ok(db)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("index_files: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> ese::Result<()> {
    let started = Instant::now();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let nsessions = args.sessions.unwrap_or((workers / 2).max(1)).max(1);
    let batch = args.batch.max(1);
    std::fs::create_dir_all(&args.db).map_err(|e| {
        Error::new(ErrorKind::FileAccessDenied)
            .with_path(&args.db)
            .with_message(e.to_string())
    })?;
    let db_dir = args.db.canonicalize().ok();
    let db_path = args.db.join("files.edb");
    let log_path = args.db.join("logs");

    let instance = Instance::builder("index_files")
        .system_path(&args.db)
        .log_path(&log_path)
        .max_sessions(u32::try_from(nsessions + 2).unwrap_or(u32::MAX))
        // Logs older than the checkpoint are not kept: there are no backups to feed.
        .circular_log(true)
        // Replaced rows keep their before-image until commit: room for every open batch.
        .version_store_bytes((64u64 << 20).max((nsessions * batch) as u64 * 2 * 8192))
        .create()?;
    let init_started = Instant::now();
    instance.init()?;
    if let Some(r) = instance.recovery_stats().filter(|r| r.databases > 0) {
        println!(
            "Recovery: the previous run did not end cleanly; replayed {} log records \
             (generations {}..={}), {} page changes redone, {} unfinished transactions \
             rolled back ({} operations), {} database(s), in {:.2?}",
            r.records,
            r.generations.0,
            r.generations.1,
            r.pages_redone,
            r.transactions_undone,
            r.operations_undone,
            r.databases,
            init_started.elapsed()
        );
    }
    let admin = instance.begin_session()?;
    let db = open_or_create(&admin, &db_path)?;
    let mut t = admin.open_table(db, TABLE)?;
    let cols = Cols::of(&t)?;
    let known = load_known(&mut t, cols)?;

    println!(
        "Indexing {} into {} ({workers} worker{} sharing {nsessions} session{}, {batch} rows \
         per transaction); skipping the database directory and directories named target/ and \
         .git/",
        args.dir.display(),
        db_path.display(),
        if workers == 1 { "" } else { "s" },
        if nsessions == 1 { "" } else { "s" },
    );
    let index_started = Instant::now();
    let (jobs, seen, unchanged) = walk(&args.dir, db_dir.as_deref(), &known);
    let vanished: Vec<[u8; 16]> = known
        .keys()
        .filter(|h| !seen.contains(*h))
        .copied()
        .collect();
    let pb = progress_bar((jobs.len() + vanished.len()) as u64);

    let mut slots = Vec::with_capacity(nsessions);
    for i in 0..nsessions {
        let session = instance.begin_session()?;
        let sdb = session.open_database(&db_path)?;
        let table = session.open_table(sdb, TABLE)?;
        slots.push(Slot {
            session,
            context: i + 1,
            state: Mutex::new(SlotState { table, pending: 0 }),
        });
    }
    let counts = Counts::default();
    let next_job = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let shared = Shared {
        jobs: &jobs,
        next_job: &next_job,
        slots: &slots,
        cols,
        batch,
        counts: &counts,
        stop: &stop,
        pb: &pb,
    };
    let shared = &shared;
    let results: Vec<ese::Result<()>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers)
            .map(|id| {
                sc.spawn(move || {
                    let r = worker(id, shared);
                    if r.is_err() {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::new(ErrorKind::InternalError).with_message("a worker panicked"))
                })
            })
            .collect()
    });
    let failed = results.into_iter().find_map(Result::err);
    // Finish every session's open batch from this thread: set the session's context, commit
    // (or roll back after a failure), release.
    for slot in &slots {
        slot.session.set_context(slot.context)?;
        let mut st = slot
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.session.transaction_level()? > 0 {
            if failed.is_some() {
                slot.session.rollback(ese::RollbackGrbit::ALL)?;
            } else {
                slot.session.commit_transaction(CommitGrbit::empty())?;
                counts.transactions.fetch_add(1, Ordering::Relaxed);
            }
        }
        st.pending = 0;
        drop(st);
        slot.session.reset_context()?;
    }
    if let Some(e) = failed {
        return Err(e);
    }

    // Vanished files: delete their rows, in batches.
    for chunk in vanished.chunks(batch) {
        admin.begin_transaction()?;
        for h in chunk {
            t.seek(&[Some(h)], Seek::Eq)?;
            t.delete()?;
            pb.inc(1);
        }
        admin.commit_transaction(CommitGrbit::empty())?;
        counts.transactions.fetch_add(1, Ordering::Relaxed);
    }
    pb.finish_and_clear();
    let index_elapsed = index_started.elapsed();
    let walked = jobs.len() as u64 + unchanged;
    let inserted = counts.inserted.load(Ordering::Relaxed);
    let replaced = counts.replaced.load(Ordering::Relaxed);
    let rows = known.len() as u64 + inserted - vanished.len() as u64;
    println!(
        "Indexed {walked} files in {index_elapsed:.2?} ({:.0} files/s, {} of content read): \
         {inserted} inserted, {replaced} replaced, {} deleted, {unchanged} unchanged",
        walked as f64 / index_elapsed.as_secs_f64().max(1e-9),
        bytes_text(counts.bytes_read.load(Ordering::Relaxed)),
        vanished.len()
    );

    queries(&mut t, cols, args.find.as_deref())?;

    let stats = admin.database_cache_stats(db)?;
    let lookups = stats.hits + stats.misses;
    println!();
    println!(
        "Rows: {rows}; transactions: {}; database {} ({}), logs {} ({})",
        counts.transactions.load(Ordering::Relaxed),
        db_path.display(),
        bytes_text(std::fs::metadata(&db_path).map_or(0, |m| m.len())),
        log_path.display(),
        bytes_text(dir_size(&log_path))
    );
    println!(
        "Cache: {:.1}% hits ({} of {} page requests), {} pages read, {} written; elapsed {:.2?}",
        if lookups == 0 {
            100.0
        } else {
            stats.hits as f64 * 100.0 / lookups as f64
        },
        stats.hits,
        lookups,
        stats.pages_read,
        stats.pages_written,
        started.elapsed()
    );
    drop(t);
    drop(slots);
    instance.term(TermGrbit::empty())?;
    Ok(())
}

/// The queries, each through a secondary index.
fn queries(t: &mut Table, c: Cols, find: Option<&str>) -> ese::Result<()> {
    let path_of = |t: &Table| -> ese::Result<String> {
        Ok(String::from_utf8_lossy(&t.retrieve_column(c.path)?.unwrap_or_default()).into_owned())
    };

    // by_ext_size, one extension at a time: an index range over the extension gives its count
    // and bytes (sizes read from the index entries), its first entries are its largest files,
    // and a seek past the extension's end limit lands on the next one.
    t.set_current_index(Some("by_ext_size"))?;
    let mut per_ext: Vec<(String, u64, u64)> = Vec::new();
    let mut largest: Vec<(i64, String)> = Vec::new();
    let mut on = first(t)?;
    while on {
        let ext = t.retrieve_column(c.ext)?;
        t.make_key(
            ext.as_deref(),
            MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::STR_LIMIT,
        )?;
        t.set_index_range(IndexRangeGrbit::UPPER_LIMIT | IndexRangeGrbit::INCLUSIVE)?;
        let (mut n, mut bytes) = (0u64, 0u64);
        loop {
            let size = le_i64(t.retrieve_column_from_index(c.size)?.as_deref());
            if n < 10 {
                largest.push((size, path_of(t)?));
            }
            n += 1;
            bytes += u64::try_from(size).unwrap_or(0);
            if !next(t, Move::Next)? {
                break;
            }
        }
        let name = ext.as_ref().map_or_else(
            || "(none)".to_owned(),
            |e| format!(".{}", String::from_utf8_lossy(e)),
        );
        per_ext.push((name, n, bytes));
        t.make_key(
            ext.as_deref(),
            MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_END_LIMIT,
        )?;
        on = absent_is_false(t.seek_key(Seek::Ge).map(|_| ()))?;
    }
    largest.sort_by_key(|l| std::cmp::Reverse(l.0));
    largest.truncate(10);
    println!("\nThe 10 largest files (index by_ext_size, the first entries of each extension):");
    for (size, path) in &largest {
        println!(
            "  {:>10}  {path}",
            bytes_text(u64::try_from(*size).unwrap_or(0))
        );
    }

    // by_mtime, backwards from the newest entry.
    t.set_current_index(Some("by_mtime"))?;
    let cutoff = ole_date(SystemTime::now()) - 1.0;
    let mut recent = Vec::new();
    let mut count = 0u64;
    on = absent_is_false(t.move_to(Move::Last))?;
    while on {
        let m = le_f64(t.retrieve_column_from_index(c.mtime)?.as_deref());
        if m < cutoff {
            break;
        }
        count += 1;
        if recent.len() < 20 {
            recent.push((m, path_of(t)?));
        }
        on = next(t, Move::Previous)?;
    }
    println!("\nModified in the last 24 hours (index by_mtime): {count} files");
    for (m, p) in &recent {
        println!("  {}  {p}", ole_text(*m));
    }
    if count > recent.len() as u64 {
        println!("  ... and {} more", count - recent.len() as u64);
    }

    per_ext.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    println!(
        "\nFiles per extension (index by_ext_size; top 15 of {}):",
        per_ext.len()
    );
    for (e, n, b) in per_ext.iter().take(15) {
        println!("  {e:<16} {n:>8} files {:>12}", bytes_text(*b));
    }

    if let Some(name) = find {
        t.set_current_index(Some("by_name"))?;
        println!("\nFiles named {name:?} (index by_name, case-insensitive):");
        t.make_key(Some(name.as_bytes()), MakeKeyGrbit::NEW_KEY)?;
        let mut found = absent_is_false(t.seek_key(Seek::Eq).map(|_| ()))?;
        if found {
            t.make_key(
                Some(name.as_bytes()),
                MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::STR_LIMIT,
            )?;
            t.set_index_range(IndexRangeGrbit::UPPER_LIMIT | IndexRangeGrbit::INCLUSIVE)?;
        }
        let mut n = 0;
        while found {
            let size = le_i64(t.retrieve_column(c.size)?.as_deref());
            let m = le_f64(t.retrieve_column(c.mtime)?.as_deref());
            println!(
                "  {:>10}  {}  {}",
                bytes_text(u64::try_from(size).unwrap_or(0)),
                ole_text(m),
                path_of(t)?
            );
            n += 1;
            found = next(t, Move::Next)?;
        }
        println!("  {n} found");
    }
    Ok(())
}
