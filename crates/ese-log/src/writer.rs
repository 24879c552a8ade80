//! [`Log`]: the writer side of the log stream — append, group commit, lazy flush, rollover,
//! checkpoint updates and retention.
//!
//! # Group commit
//! Appends copy the framed record into an in-memory buffer under one mutex and return the
//! record's LGPOS. [`Log::flush`] is leader/follower: the first flusher that finds no I/O in
//! progress becomes the leader, takes the **whole** buffer (every record appended so far, by
//! any thread), pads it to a sector boundary, and writes and syncs it with the mutex released.
//! Flushers arriving meanwhile park as followers; when the leader finishes, it wakes exactly
//! those whose records it covered, which return without taking the mutex again, and the one
//! of the rest that waited longest, which leads the next batch: every record appended during
//! the previous sync. One `fdatasync` thus serves all committers that arrived while the
//! previous one ran, and no follower wakes for nothing. A leader never waits for company
//! before its I/O (the next batch gathers while this one syncs); a lone committer makes
//! exactly one write and one `fdatasync` per commit.
//!
//! # Write-behind
//! Every [`LogConfig::lazy_flush_ms`] the background flusher writes the records appended since
//! the last write (padded to a sector, as a flush does) without syncing them, and asks the
//! device to start writing them ([`File::start_writeback`](ese_core::fs::File)), so a commit
//! that follows finds little left to write or to sync, and the disk takes a long
//! transaction's log while it runs. It syncs as well, as a flush does, when a lazy commit asked for durability
//! ([`Log::flush_lazily`]) of a record not yet durable, or when [`SYNC_BEHIND_BYTES`] or more
//! are written and not synced (so that the next commit's sync has at most that much to
//! take). A record nobody asked to be durable (a change of a transaction still open) costs
//! no sync of its own: the commit's sync covers it.
//!
//! # Rollover
//! A record that does not fit in the current generation `g` *seals* it: `g`'s unwritten
//! records are set aside and the record goes to generation `g + 1`, at the first frame offset
//! after the header, in memory. The rollover I/O (`generation.rs`: the rest of `g` written and
//! synced, the header written into the prepared `edbtmp.log` and synced, the archive link, the
//! rename and one directory sync) is done by the next flush leader, before it writes anything
//! of `g + 1`: with the background threads that is the flusher, woken by the sealing append,
//! so a bulk load's appending thread does not wait for it. Without them, and when `g + 1`
//! fills before the pending rollover ran (the log is written faster than the disk takes it),
//! the appending thread does it itself. The files a crash can leave are therefore the same as
//! when every rollover ran on the appending thread: nothing of `g + 1` is written before its
//! file is installed as `edb.log`, and nothing of it is acknowledged before the directory
//! sync. A checkpoint in a generation whose rollover is pending completes the rollover first,
//! so recovery always finds the checkpoint's generation. The preparer thread formats the next
//! `edbtmp.log` (zeros, synced) as soon as a rollover took the previous one.
//!
//! # Fail-stop
//! The first failed write or sync latches the log: that call returns `LogWriteFail` (or
//! `LogDiskFull` for ENOSPC) and every later append, flush or checkpoint returns
//! `LogWriteFail`. Nothing is retried; reopening the stream (recovery) is the way out.

#![deny(clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use ese_core::fs::{File, FileSystem, Lock, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};

use crate::checkpoint::{Checkpoint, MAX_DB_LIST_BYTES};
use crate::config::{LogConfig, SECTOR_SIZE};
use crate::files::StreamFiles;
use crate::generation::{
    ensure_reserves, install, preformat, recycle, remove_if_exists, take_recycled, take_reserve,
};
use crate::header::{FLAG_CIRCULAR, HEADER_BYTES, LogFileHeader, LogSignature, now_micros};
use crate::reader::read_image;
use crate::record::{
    FRAME_HEADER, FrameCursor, KIND_DATA, encode_frame_parts, frame_start, pad_to_sector,
};

/// Largest generation number (ESE's `lGenerationMax`); past it appends fail with
/// `LogSequenceEnd`.
pub const GENERATION_MAX: u32 = 0x7FFF_FA00 - 0x200;

/// Bytes the background flusher leaves written but not synced at most (see the module notes
/// on write-behind): 4 MiB, which a virtual disk here syncs in about 5 to 15 ms, so the
/// commit of a transaction that logged hundreds of megabytes waits no longer than that for
/// its sync, while the transaction itself is not followed by a sync every interval.
pub const SYNC_BEHIND_BYTES: usize = 4 << 20;

struct State {
    generation: u32,
    file: Arc<dyn File>,
    created_micros: u64,
    /// Framed records not yet handed to a leader; its first byte is at `buf_start`.
    buf: Vec<u8>,
    /// File offset of `buf[0]`; always sector-aligned.
    buf_start: usize,
    spare: Vec<u8>,
    last_appended: Lgpos,
    last_durable: Lgpos,
    /// Bytes written by the background flusher's write-behind since the last sync.
    unsynced: usize,
    /// A leader (flush or rollover) is doing I/O with the mutex released.
    io_busy: bool,
    /// The I/O in progress is a rollover (of the generation before `generation`).
    rolling: bool,
    /// A full generation whose rollover I/O has not started yet (see `Shared::seal`):
    /// `generation` is already the next one, whose records gather in `buf` but are written
    /// only after the rollover installed its file. `file` still is the sealed one's.
    sealed: Option<Sealed>,
    failed: Option<Error>,
    /// A reserve log is in use: ordinary appends return `LogDiskFull`.
    disk_full: bool,
    /// Followers parked until the I/O under way ends (see `Shared::follow`).
    followers: Vec<Follower>,
}

impl State {
    /// Whether everything up to `up_to` is durable (or everything appended is).
    fn durable_through(&self, up_to: Lgpos) -> bool {
        up_to <= self.last_durable || self.last_durable >= self.last_appended
    }
}

/// What a rollover needs of the generation it retires (taken from `State` by `Shared::seal`).
struct Sealed {
    generation: u32,
    file: Arc<dyn File>,
    created_micros: u64,
    /// The generation's records not yet written, from file offset `start`.
    data: Vec<u8>,
    start: usize,
    /// Its last record.
    target: Lgpos,
}

/// How long the preparer waits after a failed preparation before trying again (and its
/// longest sleep while a prepared file waits, as a guard against a missed wake-up). A second
/// keeps a full disk from being probed in a loop while a rollover, which reports the failure,
/// stays the path that matters.
const PREPARE_RETRY: Duration = Duration::from_secs(1);

struct Shared {
    fs: Arc<dyn FileSystem>,
    cfg: LogConfig,
    files: StreamFiles,
    signature: LogSignature,
    file_bytes: usize,
    state: Mutex<State>,
    cond: Condvar,
    /// `State::last_durable` as of the last completed I/O, for followers to read without the
    /// state mutex; never ahead of it.
    durable_hint: AtomicU64,
    /// The last record a lazy commit asked to be durable ([`Log::flush_lazily`]), as
    /// [`Lgpos::as_u64`]: the background flusher syncs while it is not.
    lazy_target: AtomicU64,
    /// The next generation's file (`edbtmp.log`), preformatted ahead of need by the
    /// preparer thread. Held locked while that thread formats, and by a rollover from taking
    /// the file until it is renamed into place.
    prepared: Mutex<Option<Box<dyn File>>>,
    /// Wakes the preparer thread when `prepared` was taken (or the log stops).
    prep_cond: Condvar,
    /// Serializes taking and filling the `edbrcyNNNNN.log` slots.
    recycle_lock: Mutex<()>,
    ckpt: Mutex<CheckpointState>,
    stop: AtomicBool,
    /// Flushes that found their records not yet durable and waited (durable commits, mostly,
    /// and the background flush of lazy commits): how busy the log's synchronous path is.
    waited_flushes: AtomicU64,
    bg_lock: Mutex<()>,
    bg_cond: Condvar,
}

/// A follower of a group commit, parked until the I/O under way ends (see `Shared::follow`).
struct Follower {
    /// The position its records end at.
    up_to: Lgpos,
    thread: std::thread::Thread,
    /// Set before the thread is unparked (a park may also end spuriously).
    woken: Arc<AtomicBool>,
}

impl Follower {
    fn wake(self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Wakes `followers` (see `Shared::io_done`).
fn wake(followers: Vec<Follower>) {
    for f in followers {
        f.wake();
    }
}

struct CheckpointState {
    file: Box<dyn File>,
    last: Option<Checkpoint>,
}

/// A log stream open for writing (ESE's log manager, `LOG`): one per instance, shared by all
/// sessions as `Arc<Log>`.
///
/// Opening an existing stream finds the end of valid data of the current generation (the
/// crash tail), syncs it, and continues in a **new generation** whose header records where
/// the old one ends; the unverified tail is never overwritten and never read again.
///
/// # Drop semantics
/// Dropping the log stops the background flusher and makes a best-effort flush of pending
/// records (errors are ignored; call [`Log::flush_all`] to see them).
pub struct Log {
    shared: Arc<Shared>,
    background: Option<JoinHandle<()>>,
    preparer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.cfg.log_dir)
            .field("signature", &self.shared.signature)
            .field("durable", &self.durable_lgpos())
            .finish_non_exhaustive()
    }
}

/// The error a call returns when it hits an I/O failure, and the latched one for later calls.
fn first_failure(e: &Error) -> Error {
    let kind = if matches!(e.kind(), ErrorKind::DiskFull | ErrorKind::LogDiskFull) {
        ErrorKind::LogDiskFull
    } else {
        ErrorKind::LogWriteFail
    };
    Error::new(kind).with_message(format!("log I/O failed: {e}"))
}

fn latched(e: &Error) -> Error {
    Error::new(ErrorKind::LogWriteFail).with_message(format!("an earlier log I/O failed: {e}"))
}

impl Log {
    /// Opens the log stream described by `config`, creating it (generation 1, the checkpoint
    /// file and the reserve logs) if the directory holds none.
    ///
    /// # Errors
    /// - `InvalidParameter`: `config` is out of range.
    /// - `PageSizeMismatch`: the stream serves databases of another page size.
    /// - `LogFilePathInUse`: another `Log` has the stream open (the checkpoint file is locked).
    /// - `MissingLogFile`: archived generations or a checkpoint exist but `edb.log` does not.
    /// - `LogFileCorrupt`, `BadLogVersion`: the current log's header is unreadable.
    /// - `LogFileSizeMismatch`: the current log's size differs from `config.file_size_kib`.
    /// - `CheckpointCorrupt`, `BadCheckpointSignature`: the checkpoint is unreadable or
    ///   belongs to another stream.
    /// - `LogDiskFull`, `DiskIO` (or another I/O kind): creating or syncing files failed.
    pub fn open(fs: Arc<dyn FileSystem>, config: LogConfig) -> Result<Log> {
        config.validate()?;
        fs.create_dir_all(&config.log_dir)?;
        let files = StreamFiles::new(&config.log_dir, &config.base_name);
        let file_bytes = config.file_bytes();
        let ckpt_file = fs
            .open(
                &files.checkpoint(),
                OpenOptions::create().lock(Lock::Exclusive),
            )
            .map_err(|e| {
                if e.kind() == ErrorKind::FileAccessDenied {
                    Error::new(ErrorKind::LogFilePathInUse).with_path(files.checkpoint())
                } else {
                    e
                }
            })?;
        let ckpt_read = Checkpoint::read_from(ckpt_file.as_ref());
        let has_archive = fs
            .list(&config.log_dir)?
            .iter()
            .any(|n| files.parse_archive(n).is_some());
        remove_if_exists(fs.as_ref(), &files.temp())?;
        let circular_flag = if config.circular { FLAG_CIRCULAR } else { 0 };
        let (state, signature, ckpt) = if fs.exists(&files.current())? {
            let cur = fs.open(&files.current(), OpenOptions::read_write().unbuffered())?;
            let mut hdr = vec![0u8; HEADER_BYTES as usize];
            if cur.len()? < u64::from(HEADER_BYTES) {
                return Err(Error::new(ErrorKind::LogFileCorrupt)
                    .with_path(files.current())
                    .with_message("the current log is shorter than its header"));
            }
            cur.read_exact_at(&mut hdr, 0)?;
            let h = LogFileHeader::decode(&hdr).map_err(|e| e.with_path(files.current()))?;
            if h.file_bytes() != file_bytes || cur.len()? != file_bytes {
                return Err(Error::new(ErrorKind::LogFileSizeMismatch)
                    .with_path(files.current())
                    .with_message(format!(
                        "the log has {} bytes per generation, the configuration {file_bytes}",
                        h.file_bytes()
                    )));
            }
            if h.page_size != config.page_size {
                return Err(Error::new(ErrorKind::PageSizeMismatch)
                    .with_path(files.current())
                    .with_message(format!(
                        "the log serves {}-byte pages, the configuration says {}",
                        h.page_size, config.page_size
                    )));
            }
            let ckpt = match ckpt_read {
                Ok(c) => Some(c),
                // Creation writes the first checkpoint right after installing generation 1;
                // a crash during that write leaves no valid copy. Only in that window (still
                // generation 1, nothing archived) is the checkpoint rewritten here.
                Err(e)
                    if h.generation == 1
                        && !has_archive
                        && matches!(
                            e.kind(),
                            ErrorKind::CheckpointFileNotFound | ErrorKind::CheckpointCorrupt
                        ) =>
                {
                    let first = Checkpoint::next(
                        None,
                        h.signature,
                        crate::record::lgpos_at(1, HEADER_BYTES as usize),
                        b"",
                    );
                    first.write_to(ckpt_file.as_ref())?;
                    Some(first)
                }
                Err(e) if e.kind() == ErrorKind::CheckpointFileNotFound => None,
                Err(e) => return Err(e),
            };
            if let Some(c) = &ckpt
                && c.signature != h.signature
            {
                return Err(
                    Error::new(ErrorKind::BadCheckpointSignature).with_path(files.checkpoint())
                );
            }
            if h.generation >= GENERATION_MAX {
                return Err(Error::new(ErrorKind::LogSequenceEnd));
            }
            // Find the crash tail: the end of the last verifying frame.
            let image = read_image(cur.as_ref(), &h)?;
            let mut cursor = FrameCursor::new(h.generation, HEADER_BYTES as usize, image.len());
            let mut last = Lgpos::MIN;
            while let Ok(f) = cursor.next(&image) {
                if f.kind == KIND_DATA {
                    last = f.lgpos;
                }
            }
            // What we read may be only in the page cache after a process crash: make it
            // durable before a new generation vouches for it.
            cur.sync_data()?;
            let tmp = preformat(fs.as_ref(), &files.temp(), file_bytes)?;
            let header = LogFileHeader {
                generation: h.generation + 1,
                sector_size: SECTOR_SIZE as u16,
                header_sectors: (HEADER_BYTES / SECTOR_SIZE) as u16,
                file_sectors: h.file_sectors,
                page_size: config.page_size,
                flags: circular_flag,
                created_micros: now_micros().max(h.created_micros + 1),
                prev_created_micros: h.created_micros,
                signature: h.signature,
                prev_end_offset: cursor.pos as u32,
                checkpoint_at_creation: ckpt.as_ref().map_or(0, |c| c.lgpos.as_u64()),
            };
            drop(cur);
            let file = install(&fs, &files, tmp, &header, Some(h.generation))?;
            (new_state(file, &header, last), h.signature, ckpt)
        } else {
            // A valid checkpoint is written only after generation 1 is installed durably.
            if has_archive || ckpt_read.is_ok() {
                return Err(Error::new(ErrorKind::MissingLogFile).with_path(files.current()));
            }
            let signature = LogSignature::generate();
            let tmp = preformat(fs.as_ref(), &files.temp(), file_bytes)?;
            let header = LogFileHeader {
                generation: 1,
                sector_size: SECTOR_SIZE as u16,
                header_sectors: (HEADER_BYTES / SECTOR_SIZE) as u16,
                file_sectors: (file_bytes / u64::from(SECTOR_SIZE)) as u32,
                page_size: config.page_size,
                flags: circular_flag,
                created_micros: now_micros(),
                prev_created_micros: 0,
                signature,
                prev_end_offset: 0,
                checkpoint_at_creation: 0,
            };
            let file = install(&fs, &files, tmp, &header, None)?;
            let first = Checkpoint::next(
                None,
                signature,
                crate::record::lgpos_at(1, HEADER_BYTES as usize),
                b"",
            );
            first.write_to(ckpt_file.as_ref())?;
            fs.sync_dir(&config.log_dir)?;
            (new_state(file, &header, Lgpos::MIN), signature, Some(first))
        };
        if config.reserve_logs {
            ensure_reserves(fs.as_ref(), &files, file_bytes)?;
        }
        let lazy = config.lazy_flush_ms;
        let durable = state.last_durable.as_u64();
        let shared = Arc::new(Shared {
            fs,
            files,
            signature,
            file_bytes: usize::try_from(file_bytes).unwrap_or(usize::MAX),
            state: Mutex::new(state),
            cond: Condvar::new(),
            durable_hint: AtomicU64::new(durable),
            lazy_target: AtomicU64::new(0),
            prepared: Mutex::new(None),
            prep_cond: Condvar::new(),
            recycle_lock: Mutex::new(()),
            ckpt: Mutex::new(CheckpointState {
                file: ckpt_file,
                last: ckpt,
            }),
            stop: AtomicBool::new(false),
            waited_flushes: AtomicU64::new(0),
            bg_lock: Mutex::new(()),
            bg_cond: Condvar::new(),
            cfg: config,
        });
        if shared.cfg.circular {
            shared.delete_old_generations(u32::MAX)?;
        }
        let (background, preparer) = if lazy > 0 {
            let s = Arc::clone(&shared);
            let interval = Duration::from_millis(u64::from(lazy));
            let background = std::thread::Builder::new()
                .name("ese-log-flush".to_owned())
                .spawn(move || s.background(interval))
                .map_err(|e| Error::from_io(e).with_message("cannot start the log flusher"))?;
            let s = Arc::clone(&shared);
            let preparer = std::thread::Builder::new()
                .name("ese-log-prepare".to_owned())
                .spawn(move || s.preparer())
                .map_err(|e| Error::from_io(e).with_message("cannot start the log file preparer"));
            let preparer = match preparer {
                Ok(p) => p,
                Err(e) => {
                    shared.stop_threads();
                    let _ = background.join();
                    return Err(e);
                }
            };
            (Some(background), Some(preparer))
        } else {
            (None, None)
        };
        Ok(Log {
            shared,
            background,
            preparer,
        })
    }

    /// Appends one record and returns its LGPOS without waiting for it to be durable; it
    /// becomes durable at the next flush (the background flusher writes it meanwhile), or
    /// within about [`LogConfig::lazy_flush_ms`] once [`Log::flush_lazily`] asked for it
    /// (ESE's lazy commit). Records are ordered by their LGPOS, which is the order of the
    /// `append` calls. A record never spans generations: if it does not fit in the current
    /// one, the log rolls over first.
    ///
    /// # Errors
    /// - `LogBufferTooSmall`: `payload` is longer than [`Log::max_payload`].
    /// - `LogWriteFail`: an earlier write or sync failed (fail-stop), or this call's rollover
    ///   failed.
    /// - `LogDiskFull`: the disk filled and the log switched to a reserve log (see
    ///   [`Log::append_shutdown`]), or no reserve log was left.
    /// - `LogSequenceEnd`: the generation number reached [`GENERATION_MAX`].
    pub fn append(&self, payload: &[u8]) -> Result<Lgpos> {
        self.shared.append(&[payload], false)
    }

    /// [`Log::append`] of the record made of `parts` in order (one record, as if they had been
    /// concatenated; saves the caller building it).
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append_parts(&self, parts: &[&[u8]]) -> Result<Lgpos> {
        self.shared.append(parts, false)
    }

    /// [`Log::append`] that still succeeds after the disk filled, while a reserve log has
    /// room: for the records the engine writes to shut down cleanly (ESE's use of the reserve
    /// logs).
    ///
    /// # Errors
    /// As [`Log::append`], except that the disk-full state does not refuse the record.
    pub fn append_shutdown(&self, payload: &[u8]) -> Result<Lgpos> {
        self.shared.append(&[payload], true)
    }

    /// Appends one record and waits until it is durable (a durable commit).
    ///
    /// # Errors
    /// As [`Log::append`] and [`Log::flush`].
    pub fn append_and_flush(&self, payload: &[u8]) -> Result<Lgpos> {
        let lgpos = self.append(payload)?;
        self.flush(lgpos)?;
        Ok(lgpos)
    }

    /// Returns once every record with an LGPOS `<= up_to` is durable (ESE's
    /// `ErrLGWaitForWrite`). Concurrent callers share writes and syncs (group commit, see the
    /// module docs). A position past the last record flushes everything appended.
    ///
    /// # Errors
    /// - `LogWriteFail`: this call's write or sync failed, or an earlier one did (fail-stop).
    /// - `LogDiskFull`: this call's write failed with ENOSPC.
    pub fn flush(&self, up_to: Lgpos) -> Result<()> {
        self.shared.flush(up_to)
    }

    /// Asks that every record with an LGPOS `<= up_to` become durable within about
    /// [`LogConfig::lazy_flush_ms`], without waiting (ESE's lazy commit,
    /// `JET_bitCommitLazyFlush`): the background flusher syncs at its next interval. Without
    /// background threads (`lazy_flush_ms` 0) the records become durable at the next flush.
    pub fn flush_lazily(&self, up_to: Lgpos) {
        self.shared
            .lazy_target
            .fetch_max(up_to.as_u64(), Ordering::AcqRel);
    }

    /// How many flushes (durable commits, mostly) found their records not yet durable and
    /// waited for a write and sync, since the log was opened: a monotonic counter for callers
    /// that adapt background I/O to the commit load (the checkpointer defers write-back while
    /// it grows quickly).
    pub fn waited_flushes(&self) -> u64 {
        self.shared.waited_flushes.load(Ordering::Relaxed)
    }

    /// Makes every record appended so far durable.
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn flush_all(&self) -> Result<()> {
        self.shared.flush(Lgpos::MAX)
    }

    /// The LGPOS of the last durable record: every record at or before it is durable.
    /// [`Lgpos::MIN`] if none is.
    pub fn durable_lgpos(&self) -> Lgpos {
        self.shared.state.lock().last_durable
    }

    /// The LGPOS of the last appended record ([`Lgpos::MIN`] if none).
    pub fn last_lgpos(&self) -> Lgpos {
        self.shared.state.lock().last_appended
    }

    /// The current generation (the one `edb.log` holds; while a rollover is pending or under
    /// way, the generation it retires).
    pub fn current_generation(&self) -> u32 {
        Shared::installed_generation(&self.shared.state.lock())
    }

    /// The stream's signature (ESE's `signLog`), for database headers.
    pub fn signature(&self) -> LogSignature {
        self.shared.signature
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.shared.cfg
    }

    /// The largest payload [`Log::append`] accepts, in bytes: a record must fit in one
    /// generation file after the header.
    pub fn max_payload(&self) -> usize {
        self.shared.max_payload()
    }

    /// Whether a write or sync failed and the log refuses everything (fail-stop).
    pub fn is_failed(&self) -> bool {
        self.shared.state.lock().failed.is_some()
    }

    /// Whether the log switched to a reserve log because the disk filled.
    pub fn is_disk_full(&self) -> bool {
        self.shared.state.lock().disk_full
    }

    /// Writes the checkpoint: `lgpos` is the oldest position recovery must start from (it
    /// must not lie after durable data), `db_list` the caller's opaque database list. Durable
    /// when this returns. With circular logging, generations wholly older than `lgpos` are
    /// then deleted.
    ///
    /// # Errors
    /// - `InvalidParameter`: `db_list` is longer than [`MAX_DB_LIST_BYTES`], or `lgpos` lies in
    ///   a generation after the current one.
    /// - `LogWriteFail`: the write or sync failed (the log latches), or an earlier one did.
    pub fn write_checkpoint(&self, lgpos: Lgpos, db_list: &[u8]) -> Result<()> {
        self.shared.write_checkpoint(lgpos, db_list)
    }

    /// The last checkpoint written or read at open.
    ///
    /// # Errors
    /// `CheckpointFileNotFound` if the stream has none yet.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.shared
            .ckpt
            .lock()
            .last
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::CheckpointFileNotFound))
    }

    /// Deletes archived generations older than both `below_generation` and the checkpoint's
    /// generation (ESE's log truncation after a backup, `JetTruncateLog`). Returns how many
    /// files were deleted.
    ///
    /// # Errors
    /// `LogWriteFail` if the log has failed; otherwise `DiskIO` (or another I/O kind) if
    /// listing or deleting fails, which latches the log.
    pub fn truncate(&self, below_generation: u32) -> Result<u32> {
        self.shared.check_failed()?;
        self.shared.delete_old_generations(below_generation)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shared.stop_threads();
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
        if let Some(h) = self.preparer.take() {
            let _ = h.join();
        }
        let _ = self.shared.flush(Lgpos::MAX);
    }
}

fn new_state(file: Box<dyn File>, header: &LogFileHeader, last: Lgpos) -> State {
    State {
        generation: header.generation,
        file: Arc::from(file),
        created_micros: header.created_micros,
        buf: Vec::new(),
        buf_start: HEADER_BYTES as usize,
        spare: Vec::new(),
        last_appended: last,
        last_durable: last,
        unsynced: 0,
        io_busy: false,
        rolling: false,
        sealed: None,
        failed: None,
        disk_full: false,
        followers: Vec::new(),
    }
}

impl Shared {
    /// Whether the background threads run (`lazy_flush_ms > 0`).
    fn has_background_threads(&self) -> bool {
        self.cfg.lazy_flush_ms > 0
    }

    /// Tells the background threads to end (they are joined by the caller).
    fn stop_threads(&self) {
        self.stop.store(true, Ordering::SeqCst);
        {
            let _g = self.bg_lock.lock();
            self.bg_cond.notify_all();
        }
        // Taken so the preparer is either formatting (it checks `stop` afterwards) or waiting.
        let _p = self.prepared.lock();
        self.prep_cond.notify_all();
    }

    fn max_payload(&self) -> usize {
        self.file_bytes - HEADER_BYTES as usize - FRAME_HEADER
    }

    fn check_failed(&self) -> Result<()> {
        match &self.state.lock().failed {
            Some(e) => Err(latched(e)),
            None => Ok(()),
        }
    }

    /// Latches `e` (fail-stop) and returns the error for the call that hit it.
    fn fail(&self, st: &mut State, e: &Error) -> Error {
        if st.failed.is_none() {
            log::error!("log I/O failed, the log refuses further writes: {e}");
            st.failed = Some(e.clone());
        }
        wake(self.io_done(st));
        first_failure(e)
    }

    fn append(&self, parts: &[&[u8]], shutdown: bool) -> Result<Lgpos> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_payload() {
            return Err(
                Error::new(ErrorKind::LogBufferTooSmall).with_message(format!(
                    "a {len}-byte record exceeds the maximum of {} bytes",
                    self.max_payload()
                )),
            );
        }
        let mut st = self.state.lock();
        loop {
            if let Some(e) = &st.failed {
                return Err(latched(e));
            }
            if st.disk_full && !shutdown {
                return Err(Error::new(ErrorKind::LogDiskFull).with_message(
                    "the log is on its reserve logs; only shutdown records are accepted",
                ));
            }
            let off = frame_start(st.buf_start + st.buf.len());
            if off + FRAME_HEADER + len > self.file_bytes {
                if st.sealed.is_some() || st.rolling {
                    // The next generation filled before the last rollover finished (the log
                    // is appended to faster than the disk takes it): wait for it, or do it
                    // here if it has not started.
                    self.complete_rollover(&mut st)?;
                    continue;
                }
                if st.generation >= GENERATION_MAX {
                    return Err(Error::new(ErrorKind::LogSequenceEnd));
                }
                Shared::seal(&mut st);
                if self.has_background_threads() {
                    // The flusher thread does the rollover I/O (without holding `bg_lock`,
                    // which it takes before the state: a missed wake-up costs at most one
                    // `lazy_flush_ms` interval).
                    self.bg_cond.notify_one();
                } else {
                    self.complete_rollover(&mut st)?;
                }
                continue;
            }
            let rel = off - st.buf_start;
            st.buf.resize(rel, 0);
            let generation = st.generation;
            let lgpos = encode_frame_parts(&mut st.buf, generation, off, KIND_DATA, parts);
            st.last_appended = lgpos;
            return Ok(lgpos);
        }
    }

    fn flush(&self, up_to: Lgpos) -> Result<()> {
        let st = self.state.lock();
        if st.failed.is_none() && st.durable_through(up_to) {
            // Already durable: not counted as a waited flush (a caller that only checks, the
            // write-back's WAL rule once per batch of pages, is no committer).
            return Ok(());
        }
        self.waited_flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_locked(st, up_to)
    }

    /// Parks the calling flusher, whose records end at `up_to`, until the I/O under way ends
    /// (the state is locked on entry and unlocked on return): as a follower of the group
    /// commit. Returns whether its records are durable then.
    ///
    /// Followers wait here rather than on `cond`: a condition variable's waiters each take the
    /// state mutex again on waking, one after the other (a chain of wake-ups as long as the
    /// batch, with a trip through the scheduler per link), and the ones whose records are not
    /// covered yet wake for nothing. Here the I/O's end wakes exactly the followers whose
    /// records it made durable, which leave without the state mutex, and the oldest of the
    /// others, to lead the next batch (`Shared::take_woken`).
    fn follow(&self, mut st: MutexGuard<'_, State>, up_to: Lgpos) -> bool {
        let woken = Arc::new(AtomicBool::new(false));
        st.followers.push(Follower {
            up_to,
            thread: std::thread::current(),
            woken: Arc::clone(&woken),
        });
        drop(st);
        // An unpark that comes before the park makes the park return at once.
        while !woken.load(Ordering::Acquire) {
            std::thread::park();
        }
        self.durable_hint.load(Ordering::Acquire) >= up_to.as_u64()
    }

    /// Takes the followers to wake now that an I/O ended (called with the state locked, after
    /// `last_durable` or `failed` was set): every one whose records are durable, and the one
    /// waiting longest of the rest, which leads the next batch (or follows again if another
    /// flusher leads already). After a failure, all of them (they return its error).
    fn take_woken(st: &mut State) -> Vec<Follower> {
        if st.failed.is_some() {
            return std::mem::take(&mut st.followers);
        }
        let durable = st.last_durable;
        let (covered, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.followers)
            .into_iter()
            .partition(|f| f.up_to <= durable);
        let mut rest = rest.into_iter();
        // The next leader first, so the next I/O does not wait for the other wake-ups.
        let mut woken: Vec<_> = rest.next().into_iter().collect();
        woken.extend(covered);
        st.followers = rest.collect();
        woken
    }

    /// Ends an I/O (flush, rollover, or its failure; the state is locked and `last_durable` or
    /// `failed` set): wakes the threads waiting on `cond` and returns the followers
    /// `take_woken` picks, for the caller to [`wake`] (with the state unlocked where it can:
    /// a wake-up is a system call, and appends need the mutex meanwhile).
    fn io_done(&self, st: &mut State) -> Vec<Follower> {
        self.cond.notify_all();
        Self::take_woken(st)
    }

    /// Records that everything up to `lgpos` is durable.
    fn set_durable(&self, st: &mut State, lgpos: Lgpos) {
        st.last_durable = st.last_durable.max(lgpos);
        self.durable_hint
            .store(st.last_durable.as_u64(), Ordering::Release);
    }

    /// Group commit, leader/follower (module docs).
    fn flush_locked<'a>(&'a self, mut st: MutexGuard<'a, State>, up_to: Lgpos) -> Result<()> {
        loop {
            if let Some(e) = &st.failed {
                return Err(latched(e));
            }
            if st.durable_through(up_to) {
                return Ok(());
            }
            if st.io_busy {
                // Follow the I/O under way; leave at once if it made these records durable.
                if self.follow(st, up_to) {
                    return Ok(());
                }
                st = self.state.lock();
                continue;
            }
            if st.sealed.is_some() {
                // Records of the next generation wait for its file: roll over first.
                self.rollover(&mut st)?;
                continue;
            }
            // Lead: take everything appended so far.
            let (start, data, file) = Self::take_batch(&mut st);
            let target = st.last_appended;
            let r = MutexGuard::unlocked(&mut st, || {
                file.write_all_at(&data, start as u64)?;
                file.sync_data()
            });
            Self::end_batch(&mut st, data);
            match r {
                Ok(()) => {
                    // Everything written so far is synced, write-behind's too.
                    st.unsynced = 0;
                    self.set_durable(&mut st, target);
                    let woken = self.io_done(&mut st);
                    drop(st);
                    wake(woken);
                    // The leader took every record appended before it flushed, its own too.
                    if self.durable_hint.load(Ordering::Acquire) >= up_to.as_u64() {
                        return Ok(());
                    }
                    st = self.state.lock();
                }
                Err(e) => return Err(self.fail(&mut st, &e)),
            }
        }
    }

    /// Starts an I/O of everything appended and not yet written (the state locked, no I/O
    /// under way, no rollover pending): marks the I/O busy and takes the buffer, padded to a
    /// sector; returns its file offset, the bytes and the file.
    fn take_batch(st: &mut State) -> (usize, Vec<u8>, Arc<dyn File>) {
        st.io_busy = true;
        let generation = st.generation;
        let start = st.buf_start;
        let end = start + st.buf.len();
        let mut data = Self::take_buf(st);
        pad_to_sector(&mut data, generation, end);
        st.buf_start = start + data.len();
        (start, data, Arc::clone(&st.file))
    }

    /// Takes the records appended so far and puts the spare buffer in their place. Its
    /// capacity is that of an earlier batch: a new, empty buffer would grow again by doubling
    /// (each step a reallocation and a copy, on memory faulted in afresh). When the spare is
    /// out (its batch still being written, or set aside by a seal), the new buffer gets the
    /// capacity of the one taken: appends during a rollover's I/O then fill it without
    /// growing (the capacity is reserved, not touched, until records are written into it).
    fn take_buf(st: &mut State) -> Vec<u8> {
        let mut fresh = std::mem::take(&mut st.spare);
        if fresh.capacity() == 0 {
            fresh = Vec::with_capacity(st.buf.capacity());
        }
        std::mem::replace(&mut st.buf, fresh)
    }

    /// Ends the I/O [`Shared::take_batch`] started (the state locked again), keeping its
    /// buffer for the next one.
    fn end_batch(st: &mut State, data: Vec<u8>) {
        st.io_busy = false;
        Self::end_batch_buffer(st, data);
    }

    /// Keeps `data`, a buffer whose bytes were written, as the spare buffer when it is larger.
    fn end_batch_buffer(st: &mut State, mut data: Vec<u8>) {
        data.clear();
        if st.spare.capacity() < data.capacity() {
            st.spare = data;
        }
    }

    /// The background flusher's write-behind (module notes): writes what was appended since
    /// the last write, without a sync. Nothing when an I/O is under way, a rollover is
    /// pending (the next flush does it) or nothing is waiting. Flushers that arrived during
    /// the write are handed the next I/O as after any other.
    ///
    /// # Errors
    /// `LogWriteFail` / `LogDiskFull` when the write fails (latched, as any log I/O failure).
    fn write_behind(&self) -> Result<()> {
        let mut st = self.state.lock();
        if st.failed.is_some() || st.io_busy || st.sealed.is_some() || st.buf.is_empty() {
            return Ok(());
        }
        let (start, data, file) = Self::take_batch(&mut st);
        let len = data.len();
        let r = MutexGuard::unlocked(&mut st, || {
            file.write_all_at(&data, start as u64)?;
            // The device starts on these bytes now, so the sync a commit waits for later
            // finds little left to write (about half the wait of a 1,000-row commit's).
            file.start_writeback(start as u64, len as u64);
            Ok(())
        });
        Self::end_batch(&mut st, data);
        match r {
            Ok(()) => {
                st.unsynced += len;
                let woken = self.io_done(&mut st);
                drop(st);
                wake(woken);
                Ok(())
            }
            Err(e) => Err(self.fail(&mut st, &e)),
        }
    }

    /// Seals the current (full) generation `g`: its unwritten records move to
    /// `State::sealed` and new records go to generation `g + 1`, at the first frame offset
    /// after the header, while the rollover I/O (`Shared::rollover`) is still to come. No
    /// record of `g + 1` reaches a file before that I/O installed `g + 1` as `edb.log`, and
    /// none is acknowledged before its directory sync: what a crash leaves on disk is exactly
    /// what it left when the appending thread did the rollover itself.
    fn seal(st: &mut State) {
        let data = Self::take_buf(st);
        st.sealed = Some(Sealed {
            generation: st.generation,
            file: Arc::clone(&st.file),
            created_micros: st.created_micros,
            data,
            start: st.buf_start,
            target: st.last_appended,
        });
        st.generation += 1;
        st.buf_start = HEADER_BYTES as usize;
    }

    /// Waits for I/O under way, then does the sealed generation's rollover if nobody did.
    fn complete_rollover(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        loop {
            if let Some(e) = &st.failed {
                return Err(latched(e));
            }
            if st.io_busy {
                self.cond.wait(st);
                continue;
            }
            if st.sealed.is_none() {
                return Ok(());
            }
            self.rollover(st)?;
        }
    }

    /// The generation `edb.log` holds: the current one, or the one before while its rollover
    /// is pending or under way.
    fn installed_generation(st: &State) -> u32 {
        if st.sealed.is_some() || st.rolling {
            st.generation - 1
        } else {
            st.generation
        }
    }

    /// The rollover I/O of the sealed generation (see `generation.rs` for the protocol).
    /// Called with the state locked, no I/O under way and `sealed` set; returns with it
    /// locked. Appends go on meanwhile (into the next generation's buffer); flushes wait.
    fn rollover(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        let Some(sealed) = st.sealed.take() else {
            return Ok(());
        };
        st.io_busy = true;
        st.rolling = true;
        let r = MutexGuard::unlocked(st, || -> Result<(Box<dyn File>, LogFileHeader, bool)> {
            if !sealed.data.is_empty() {
                sealed
                    .file
                    .write_all_at(&sealed.data, sealed.start as u64)?;
            }
            sealed.file.sync_data()?;
            // Read with the state unlocked: `write_checkpoint` takes the checkpoint lock and
            // then, on failure, the state lock.
            let checkpoint_at_creation = self
                .ckpt
                .lock()
                .last
                .as_ref()
                .map_or(0, |c| c.lgpos.as_u64());
            // Hold the prepared-file lock until `edbtmp.log` is renamed into place, so the
            // preparer cannot start preparing (and first remove) a new one.
            let mut prepared = self.prepared.lock();
            let (tmp, reserve) = self.next_file(&mut prepared)?;
            let header = LogFileHeader {
                generation: sealed.generation + 1,
                sector_size: SECTOR_SIZE as u16,
                header_sectors: (HEADER_BYTES / SECTOR_SIZE) as u16,
                file_sectors: (self.file_bytes / SECTOR_SIZE as usize) as u32,
                page_size: self.cfg.page_size,
                flags: if self.cfg.circular { FLAG_CIRCULAR } else { 0 },
                created_micros: now_micros().max(sealed.created_micros + 1),
                prev_created_micros: sealed.created_micros,
                signature: self.signature,
                prev_end_offset: (sealed.start + sealed.data.len()) as u32,
                checkpoint_at_creation,
            };
            let f = install(&self.fs, &self.files, tmp, &header, Some(sealed.generation))?;
            // The preparer starts on the file after this one.
            self.prep_cond.notify_all();
            drop(prepared);
            Ok((f, header, reserve))
        });
        st.io_busy = false;
        st.rolling = false;
        let target = sealed.target;
        Self::end_batch_buffer(st, sealed.data);
        match r {
            Ok((f, header, reserve)) => {
                st.file = Arc::from(f);
                st.created_micros = header.created_micros;
                // The sealed generation's file was synced: what write-behind left in it too.
                st.unsynced = 0;
                self.set_durable(st, target);
                if reserve {
                    log::warn!(
                        "log disk full: generation {} uses a reserve log",
                        header.generation
                    );
                    st.disk_full = true;
                }
                wake(self.io_done(st));
                Ok(())
            }
            Err(e) => Err(self.fail(st, &e)),
        }
    }

    /// A generation file kept by circular logging, moved into place as `edbtmp.log`.
    fn take_kept(&self) -> Result<Option<Box<dyn File>>> {
        let _slots = self.recycle_lock.lock();
        take_recycled(self.fs.as_ref(), &self.files, self.file_bytes as u64)
    }

    /// The preformatted file for the next generation: the one prepared ahead, a kept one
    /// (circular logging), a new one, or (on ENOSPC) a reserve log. The flag says whether a
    /// reserve log was used.
    fn next_file(&self, prepared: &mut Option<Box<dyn File>>) -> Result<(Box<dyn File>, bool)> {
        if let Some(f) = prepared.take() {
            return Ok((f, false));
        }
        if let Some(f) = self.take_kept()? {
            return Ok((f, false));
        }
        match preformat(self.fs.as_ref(), &self.files.temp(), self.file_bytes as u64) {
            Ok(f) => Ok((f, false)),
            Err(e) if e.kind() == ErrorKind::DiskFull => {
                let _ = remove_if_exists(self.fs.as_ref(), &self.files.temp());
                match take_reserve(self.fs.as_ref(), &self.files, self.file_bytes as u64)? {
                    Some(f) => Ok((f, true)),
                    None => Err(Error::new(ErrorKind::LogDiskFull)
                        .with_message("the disk is full and no reserve log is left")),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn write_checkpoint(&self, lgpos: Lgpos, db_list: &[u8]) -> Result<()> {
        if db_list.len() > MAX_DB_LIST_BYTES {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message(format!(
                    "a {}-byte database list exceeds the checkpoint's {MAX_DB_LIST_BYTES} bytes",
                    db_list.len()
                )),
            );
        }
        {
            let mut st = self.state.lock();
            if let Some(e) = &st.failed {
                return Err(latched(e));
            }
            if lgpos.generation > st.generation {
                return Err(Error::new(ErrorKind::InvalidParameter)
                    .with_lgpos(lgpos)
                    .with_message("the checkpoint lies after the current generation"));
            }
            if lgpos.generation > Shared::installed_generation(&st) {
                // Recovery must find the checkpoint's generation: finish its rollover first.
                self.complete_rollover(&mut st)?;
            }
        }
        {
            let mut ck = self.ckpt.lock();
            let next = Checkpoint::next(ck.last.as_ref(), self.signature, lgpos, db_list);
            if let Err(e) = next.write_to(ck.file.as_ref()) {
                let mut st = self.state.lock();
                return Err(self.fail(&mut st, &e));
            }
            ck.last = Some(next);
        }
        if self.cfg.circular {
            self.delete_old_generations(u32::MAX)?;
        }
        Ok(())
    }

    /// Deletes archived generations below `below` and below the checkpoint's generation.
    fn delete_old_generations(&self, below: u32) -> Result<u32> {
        let ck_gen = self
            .ckpt
            .lock()
            .last
            .as_ref()
            .map_or(0, |c| c.lgpos.generation);
        let limit = below.min(ck_gen);
        let r = (|| {
            let mut n = 0;
            for name in self.fs.list(&self.files.dir)? {
                if let Some(g) = self.files.parse_archive(&name)
                    && g < limit
                {
                    let path = self.files.dir.join(&name);
                    let kept = self.cfg.circular && {
                        let _slots = self.recycle_lock.lock();
                        recycle(self.fs.as_ref(), &self.files, &path, self.file_bytes as u64)?
                    };
                    if !kept {
                        remove_if_exists(self.fs.as_ref(), &path)?;
                    }
                    n += 1;
                }
            }
            Ok(n)
        })();
        r.map_err(|e: Error| {
            let mut st = self.state.lock();
            self.fail(&mut st, &e)
        })
    }

    fn background(&self, interval: Duration) {
        loop {
            {
                let mut g = self.bg_lock.lock();
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                self.bg_cond.wait_for(&mut g, interval);
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            let (pending, sync, sealed, failed) = {
                let st = self.state.lock();
                let lazy = self.lazy_target.load(Ordering::Acquire) > st.last_durable.as_u64();
                (
                    st.last_appended > st.last_durable,
                    lazy || st.unsynced + st.buf.len() >= SYNC_BEHIND_BYTES,
                    st.sealed.is_some(),
                    st.failed.is_some(),
                )
            };
            if failed {
                continue;
            }
            // Errors are latched and reported to the next caller.
            if pending && sync {
                // Does a pending rollover first.
                let _ = self.flush(Lgpos::MAX);
            } else if sealed {
                let _ = self.complete_rollover(&mut self.state.lock());
            } else if pending {
                let _ = self.write_behind();
            }
        }
    }

    /// The preparer thread (ESE keeps `edbtmp.log` formatted ahead): whenever no prepared file
    /// is waiting, takes a generation file kept by circular logging or formats the next
    /// generation's file (zeros, synced), so that a rollover only
    /// writes the new header and renames. It starts at open and again as soon as a rollover
    /// took the file. A failure is not fatal (the rollover formats, and reports, on its own);
    /// the preparer then waits a while before trying again.
    fn preparer(&self) {
        let mut p = self.prepared.lock();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if p.is_some() || self.state.lock().failed.is_some() {
                self.prep_cond.wait_for(&mut p, PREPARE_RETRY);
                continue;
            }
            if let Ok(Some(f)) = self.take_kept() {
                *p = Some(f);
                continue;
            }
            match preformat(self.fs.as_ref(), &self.files.temp(), self.file_bytes as u64) {
                Ok(f) => *p = Some(f),
                Err(e) => {
                    log::warn!("preparing the next log generation failed: {e}");
                    let _ = remove_if_exists(self.fs.as_ref(), &self.files.temp());
                    if !self.stop.load(Ordering::SeqCst) {
                        self.prep_cond.wait_for(&mut p, PREPARE_RETRY);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::path::Path;

    use ese_core::fs::{FileSystem, OpenOptions, SimFs};

    use super::*;
    use crate::header::LogSignature;

    fn state() -> State {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/logs")).unwrap();
        let file = fs
            .open(Path::new("/logs/edb.log"), OpenOptions::create())
            .unwrap();
        let header = LogFileHeader {
            generation: 7,
            sector_size: 512,
            header_sectors: 8,
            file_sectors: 2048,
            page_size: 8192,
            flags: 0,
            created_micros: 1,
            prev_created_micros: 0,
            signature: LogSignature::generate(),
            prev_end_offset: 0,
            checkpoint_at_creation: 0,
        };
        new_state(file, &header, Lgpos::MIN)
    }

    #[test]
    fn a_buffer_taken_without_a_spare_is_replaced_by_one_as_large() {
        let mut st = state();
        st.buf.reserve(1 << 20);
        st.buf.extend_from_slice(b"records");
        let cap = st.buf.capacity();
        // No spare (its batch is being written, or a seal set it aside): the buffer that takes
        // the appends is as large as the one taken, so they do not grow it by doubling.
        let taken = Shared::take_buf(&mut st);
        assert_eq!(taken, b"records");
        assert!(st.buf.is_empty());
        assert!(st.buf.capacity() >= cap);
        // With a spare, the spare is used (and it is no longer spare).
        st.spare = Vec::with_capacity(4096);
        let spare_ptr = st.spare.as_ptr();
        st.buf.extend_from_slice(b"more");
        let taken = Shared::take_buf(&mut st);
        assert_eq!(taken, b"more");
        assert_eq!(st.buf.as_ptr(), spare_ptr);
        assert_eq!(st.spare.capacity(), 0);
    }
}
