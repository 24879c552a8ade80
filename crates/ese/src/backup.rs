//! Online backup (ESE's `JetBackupInstance` and the external backup family) and restore
//! (`JetRestoreInstance`, hard recovery).
//!
//! # Backup
//! A *fuzzy* backup, ESE's design: while sessions keep writing, every attached database is
//! copied page by page through the buffer cache (each page checksum-verified as it is read,
//! see `Database::backup_page`), then a mark record is logged and flushed, and the log
//! generations from the checkpoint at the start of the backup to that mark are copied. Pages
//! changed during the copy are fine: the copied logs hold every change from the start
//! checkpoint on, and redo by dbtime brings each page, whatever moment it was copied at, to
//! the state at the mark. Meanwhile the checkpoint is pinned, so neither circular logging nor
//! truncation deletes a generation the backup still needs. The last generation is copied up to
//! the end of the mark record, zeros after it, so a restore of the backup alone ends exactly at
//! the mark.
//!
//! The streaming form ([`Instance::begin_external_backup`] → [`Instance::backup_attach_info`]
//! → [`Instance::open_backup_file`] / [`Instance::read_backup_file`] /
//! [`Instance::close_backup_file`] → [`Instance::backup_log_info`] →
//! [`Instance::truncate_backup_logs`] → [`Instance::end_external_backup`]) hands the same bytes
//! to a caller that stores them itself; [`Instance::backup`] is that sequence writing into a
//! directory, plus the descriptor (`backup.dsc`, `docs/format-backup.md`), written last.
//!
//! # Restore
//! See `restore.rs`.

#![deny(clippy::indexing_slicing)]

mod descriptor;
mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_core::fs::{FileSystem, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};
use ese_log::LogReader;

use crate::engine::{AttachedDb, Engine, FAMILY_BACKUP};
use crate::grbit::{BackupGrbit, EndExternalBackupGrbit};
use crate::instance::{Instance, InstanceInner};

pub use descriptor::BackupKind;
pub(crate) use descriptor::{
    DESCRIPTOR_NAME, DESCRIPTOR_TEMP_NAME, DbEntry, Descriptor, Digest, LogEntry,
};
pub(crate) use restore::restore_mark_path;

/// Bytes of a log record frame's header (`docs/format-log.md`, "Record frame").
const FRAME_HEADER_BYTES: u32 = 12;
/// Bytes each step of [`Instance::backup`] copies (a multiple of every page size).
const COPY_CHUNK: usize = 256 * 1024;

/// How far a backup or a restore has come, for a progress bar (ESE's `JET_SNPROG`, in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done.
    pub phase: ProgressPhase,
    /// Bytes processed so far.
    pub done_bytes: u64,
    /// Bytes to process in all (an estimate until the log range is known; never below
    /// `done_bytes`).
    pub total_bytes: u64,
    /// `done_bytes` in percent of `total_bytes`, 0 to 100; never decreases during one call.
    pub percent: u32,
}

/// The phase a [`Progress`] report belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressPhase {
    /// Reading and checking the backup set (restore).
    Verify,
    /// Copying database files.
    CopyDatabases,
    /// Copying log generations.
    CopyLogs,
    /// Replaying the logs (restore).
    Replay,
    /// Finished (reported once, at 100 %).
    Done,
}

/// Turns byte counts into monotonic [`Progress`] reports.
pub(crate) struct Reporter<'a> {
    callback: &'a mut dyn FnMut(Progress),
    done: u64,
    total: u64,
    percent: u32,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(callback: &'a mut dyn FnMut(Progress), total: u64) -> Reporter<'a> {
        Reporter {
            callback,
            done: 0,
            total: total.max(1),
            percent: 0,
        }
    }

    pub(crate) fn grow_total(&mut self, total: u64) {
        self.total = self.total.max(total);
    }

    pub(crate) fn advance(&mut self, phase: ProgressPhase, bytes: u64) {
        self.done += bytes;
        self.report(phase);
    }

    pub(crate) fn set_done(&mut self, phase: ProgressPhase, done: u64) {
        self.done = self.done.max(done);
        self.report(phase);
    }

    pub(crate) fn done_bytes(&self) -> u64 {
        self.done
    }

    fn report(&mut self, phase: ProgressPhase) {
        self.total = self.total.max(self.done);
        let pct = if phase == ProgressPhase::Done {
            100
        } else {
            (self.done.saturating_mul(100) / self.total).min(99) as u32
        };
        self.percent = self.percent.max(pct);
        (self.callback)(Progress {
            phase,
            done_bytes: self.done,
            total_bytes: self.total,
            percent: self.percent,
        });
    }
}

/// What a finished backup holds (returned by [`Instance::backup`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Full or incremental.
    pub kind: BackupKind,
    /// The databases copied (their paths when attached); empty for an incremental backup.
    pub databases: Vec<PathBuf>,
    /// First and last log generation copied.
    pub generations: (u32, u32),
    /// Where a restore of this backup starts replaying (the checkpoint at the start of a full
    /// backup, the start of the first generation of an incremental one).
    pub start: Lgpos,
    /// The position of the backup's end mark: a restore of this backup alone yields the
    /// databases as of this position (every transaction committed before it, nothing after).
    pub end: Lgpos,
    /// Bytes written into the backup directory.
    pub bytes: u64,
    /// Log generation files deleted by [`BackupGrbit::TRUNCATE_LOGS`].
    pub truncated_logs: u32,
}

/// A file of a running external backup, opened with [`Instance::open_backup_file`] (ESE's
/// `JET_HANDLE` of `JetOpenFileInstance`, with the file size it returns).
#[derive(Debug, PartialEq, Eq)]
pub struct BackupFile {
    handle: u64,
    size: u64,
    name: String,
}

impl BackupFile {
    /// The file's size in bytes: [`Instance::read_backup_file`] returns exactly this many.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The name this file has in a backup set ([`Instance::backup`] writes it under this name
    /// and [`Instance::restore`] looks for it there).
    pub fn name(&self) -> &str {
        &self.name
    }
}

struct BackupDb {
    db: Arc<AttachedDb>,
    name: String,
    /// Size and checksum once the file was read completely and in order.
    read: Option<(u64, u32)>,
}

struct BackupLog {
    generation: u32,
    name: String,
    read: Option<(u64, u32)>,
}

struct BackupEnd {
    end: Lgpos,
    end_offset: u32,
    logs: Vec<BackupLog>,
}

enum Source {
    Db {
        idx: usize,
        headers: Vec<u8>,
        page_size: u64,
        /// The block (page index in the file) cached from the last read.
        cached: Option<(u64, Vec<u8>)>,
    },
    Log {
        idx: usize,
        image: Vec<u8>,
    },
}

struct OpenFile {
    handle: u64,
    size: u64,
    pos: u64,
    digest: Digest,
    source: Source,
}

/// The state of the backup running on an instance (ESE's `BACKUP_CONTEXT`).
pub(crate) struct BackupState {
    kind: BackupKind,
    id: [u8; 16],
    start: Lgpos,
    gen_low: u32,
    /// The engine the backup runs on (a term ends the backup).
    engine: Arc<Engine>,
    dbs: Vec<BackupDb>,
    end: Option<BackupEnd>,
    open: Vec<OpenFile>,
    next_handle: u64,
    truncated: u32,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let seed = now_micros() ^ (u64::from(std::process::id()) << 40);
    let mut x = seed | 1;
    for b in &mut id {
        // xorshift64*: the id only has to differ between backups.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
    }
    id
}

/// The body of the backup's mark record (family 19): kind u8, backup id (16 bytes), start
/// LGPOS (8 bytes).
pub(crate) fn mark_body(kind: BackupKind, id: &[u8; 16], start: Lgpos) -> Vec<u8> {
    let mut b = Vec::with_capacity(25);
    b.push(kind.code());
    b.extend_from_slice(id);
    b.extend_from_slice(&start.to_bytes());
    b
}

/// The payload of the mark record as it appears in the log (family byte first).
pub(crate) fn mark_payload(kind: BackupKind, id: &[u8; 16], start: Lgpos) -> Vec<u8> {
    let mut p = vec![FAMILY_BACKUP];
    p.extend_from_slice(&mark_body(kind, id, start));
    p
}

/// The byte offset of `lgpos` in its generation file.
pub(crate) fn lgpos_offset(lgpos: Lgpos) -> u64 {
    u64::from(lgpos.isec) * 512 + u64::from(lgpos.ib)
}

fn no_backup() -> Error {
    Error::new(ErrorKind::NoBackup).with_message("no external backup is running")
}

fn sequence(what: &str) -> Error {
    Error::new(ErrorKind::InvalidBackupSequence).with_message(what.to_owned())
}

/// The file name of `path` (its last component), for the copy in a backup set.
fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map_or_else(|| "database.edb".to_owned(), str::to_owned)
}

impl BackupState {
    fn archive_name(&self, generation: u32) -> String {
        format!("{}{generation:08X}.log", self.engine.params.base_name)
    }

    /// Logs the mark record, verifies the logs from the start to it and fixes the list of
    /// generations to copy (ESE's `JetGetLogInfoInstance`).
    fn finish_pages(&mut self) -> Result<()> {
        if self.end.is_some() {
            return Ok(());
        }
        let payload = mark_payload(self.kind, &self.id, self.start);
        let body = payload.get(1..).unwrap_or_default();
        let end = self.engine.log_backup_mark(body)?;
        let end_offset = lgpos_offset(end) + u64::from(FRAME_HEADER_BYTES) + payload.len() as u64;
        verify_live_logs(&self.engine, self.start, end, &payload)?;
        let base = self.engine.params.base_name.clone();
        let logs = (self.gen_low..=end.generation)
            .map(|g| BackupLog {
                generation: g,
                name: if g == end.generation {
                    format!("{base}.log")
                } else {
                    format!("{base}{g:08X}.log")
                },
                read: None,
            })
            .collect();
        self.end = Some(BackupEnd {
            end,
            end_offset: end_offset as u32,
            logs,
        });
        Ok(())
    }

    /// The descriptor of the backup, once every file was read completely.
    fn descriptor(&self) -> Result<Descriptor> {
        let end = self
            .end
            .as_ref()
            .ok_or_else(|| sequence("the log information was not read yet"))?;
        let mut dbs = Vec::new();
        for d in &self.dbs {
            let (size, checksum) = match (self.kind, d.read) {
                (BackupKind::Incremental, _) => (0, 0),
                (BackupKind::Full, Some(r)) => r,
                (BackupKind::Full, None) => {
                    return Err(sequence("a database file was not read completely"));
                }
            };
            dbs.push(DbEntry {
                dbid: d.db.dbid,
                signature: d.db.db.header().db_signature,
                path: d.db.path.clone(),
                file: if self.kind == BackupKind::Full {
                    d.name.clone()
                } else {
                    String::new()
                },
                size,
                checksum,
            });
        }
        let mut logs = Vec::new();
        for l in &end.logs {
            let (size, checksum) = l
                .read
                .ok_or_else(|| sequence("a log file was not read completely"))?;
            logs.push(LogEntry {
                generation: l.generation,
                file: l.name.clone(),
                size,
                checksum,
            });
        }
        let p = &self.engine.params;
        Ok(Descriptor {
            kind: self.kind,
            id: self.id,
            log_signature: self.engine.log.signature().to_bytes(),
            page_size: p.page_size,
            log_file_size_kib: p.log_file_size_kib,
            base_name: p.base_name.clone(),
            start: self.start,
            end: end.end,
            end_offset: end.end_offset,
            gen_low: self.gen_low,
            gen_high: end.end.generation,
            time_micros: now_micros(),
            dbs,
            logs,
        })
    }

    /// Records the backup in the headers of the databases still attached (ESE's
    /// `bkinfoFullPrev` / `bkinfoIncPrev`).
    fn update_headers(&self) -> Result<()> {
        let Some(end) = &self.end else {
            return Ok(());
        };
        let (low, high, now) = (self.gen_low, end.end.generation, now_micros());
        for d in &self.dbs {
            let still = self
                .engine
                .db(d.db.dbid)
                .is_ok_and(|cur| Arc::ptr_eq(&cur, &d.db));
            if !still {
                continue;
            }
            d.db.db.write_header(|h| match self.kind {
                BackupKind::Full => {
                    h.full_backup_gen_low = low;
                    h.full_backup_gen_high = high;
                    h.full_backup_micros = now;
                    h.incremental_backup_gen_low = 0;
                    h.incremental_backup_gen_high = 0;
                    h.incremental_backup_micros = 0;
                }
                BackupKind::Incremental => {
                    h.incremental_backup_gen_low = low;
                    h.incremental_backup_gen_high = high;
                    h.incremental_backup_micros = now;
                }
            })?;
        }
        Ok(())
    }
}

/// Reads the live log from `start` to `end` and checks that every record verifies and the
/// last one is the backup's mark (ESE verifies the logs a backup copies).
fn verify_live_logs(engine: &Engine, start: Lgpos, end: Lgpos, mark: &[u8]) -> Result<()> {
    let p = &engine.params;
    let bad = |e: &Error| {
        Error::new(ErrorKind::LogReadVerifyFailure)
            .with_message(format!("a log the backup copies does not verify: {e}"))
    };
    // The writers go on meanwhile: the reader is consistent with their rollovers (ese-log,
    // `reader.rs`, "Reading a live stream").
    let mut reader = LogReader::open(Arc::clone(&engine.fs), &p.log_path, &p.base_name, start)?;
    loop {
        match reader.next_record() {
            Ok(Some(r)) if r.lgpos < end => {}
            Ok(Some(r)) if r.lgpos == end && r.payload == mark => return Ok(()),
            Ok(Some(r)) => {
                return Err(Error::new(ErrorKind::LogReadVerifyFailure)
                    .with_lgpos(r.lgpos)
                    .with_message("the backup's end mark is not where it was logged"));
            }
            Ok(None) => {
                return Err(Error::new(ErrorKind::LogReadVerifyFailure)
                    .with_lgpos(end)
                    .with_message("the log ends before the backup's end mark"));
            }
            Err(e) if e.kind() == ErrorKind::LogFileCorrupt => return Err(bad(&e)),
            Err(e) => return Err(e),
        }
    }
}

/// Reads generation `generation` of the live log for copying: its archive, or the current
/// log while it still is the current generation. Sessions go on writing and rolling the log
/// over meanwhile; `LogReader::read_generation` reads the header and the bytes from one open
/// file and finds a generation archived by a concurrent rollover (ese-log, `reader.rs`,
/// "Reading a live stream"). The bytes up to the backup's mark are durable, so complete.
fn open_live_generation(engine: &Engine, generation: u32) -> Result<Vec<u8>> {
    let p = &engine.params;
    match LogReader::read_generation(engine.fs.as_ref(), &p.log_path, &p.base_name, generation) {
        Ok((_, image)) => Ok(image),
        // The reader names the archive and the generation's position.
        Err(e) if e.kind() == ErrorKind::RequiredLogFilesMissing => {
            let message = format!("a log generation the backup needs is missing: {e}");
            Err(e.with_message(message))
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::LogFileCorrupt
                    | ErrorKind::BadLogVersion
                    | ErrorKind::LogFileSizeMismatch
                    | ErrorKind::LogGenerationMismatch
            ) =>
        {
            Err(Error::new(ErrorKind::LogReadVerifyFailure)
                .with_message(format!("a log the backup copies does not verify: {e}")))
        }
        Err(e) => Err(e),
    }
}

impl InstanceInner {
    /// JetBeginExternalBackupInstance without the gate (the caller entered it).
    fn begin_backup(&self, engine: &Arc<Engine>, grbit: BackupGrbit) -> Result<()> {
        check_backup_grbit(grbit)?;
        let mut slot = self.backup.lock();
        if slot.is_some() {
            return Err(Error::new(ErrorKind::BackupInProgress));
        }
        if engine.log.is_failed() {
            return Err(Error::new(ErrorKind::LogWriteFail)
                .with_message("a log write failed; no backup is possible"));
        }
        let kind = if grbit.contains(BackupGrbit::INCREMENTAL) {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        };
        let attached: Vec<Arc<AttachedDb>> = engine.dbs.read().values().cloned().collect();
        let mut names: Vec<String> = Vec::new();
        let mut dbs = Vec::new();
        for db in attached {
            let mut name = file_name(&db.path);
            if names.contains(&name) {
                name = format!("{}-{name}", db.dbid);
            }
            names.push(name.clone());
            dbs.push(BackupDb {
                db,
                name,
                read: None,
            });
        }
        let (start, gen_low) = match kind {
            BackupKind::Full => {
                let s = engine.pin_checkpoint_for_backup()?;
                (s, s.generation.max(1))
            }
            BackupKind::Incremental => {
                if self.params.circular_log {
                    return Err(Error::new(ErrorKind::InvalidBackup));
                }
                let mut low = u32::MAX;
                for d in &dbs {
                    let h = d.db.db.header();
                    if h.full_backup_gen_high == 0 {
                        return Err(Error::new(ErrorKind::MissingFullBackup)
                            .with_path(&d.db.path)
                            .with_message("the database has no full backup"));
                    }
                    low = low.min(h.full_backup_gen_high.max(h.incremental_backup_gen_high));
                }
                if dbs.is_empty() {
                    return Err(Error::new(ErrorKind::MissingFullBackup)
                        .with_message("no database is attached"));
                }
                let s = Lgpos::new(low, 0, 0);
                engine.pin_for_backup(s);
                (s, low)
            }
        };
        log::info!(target: "ese::backup", "{kind:?} backup begins at {start}, {} database(s)", dbs.len());
        *slot = Some(BackupState {
            kind,
            id: random_id(),
            start,
            gen_low,
            engine: Arc::clone(engine),
            dbs,
            end: None,
            open: Vec::new(),
            next_handle: 1,
            truncated: 0,
        });
        Ok(())
    }

    fn with_backup<T>(&self, f: impl FnOnce(&mut BackupState) -> Result<T>) -> Result<T> {
        let mut slot = self.backup.lock();
        let st = slot.as_mut().ok_or_else(no_backup)?;
        f(st)
    }

    fn open_file(&self, path: &Path) -> Result<BackupFile> {
        self.with_backup(|st| {
            let handle = st.next_handle;
            if let Some(idx) = st.dbs.iter().position(|d| d.db.path == path) {
                if st.kind == BackupKind::Incremental {
                    return Err(Error::new(ErrorKind::InvalidParameter)
                        .with_path(path)
                        .with_message("an incremental backup copies no database"));
                }
                if st.end.is_some() {
                    return Err(sequence(
                        "database files must be read before the log information",
                    ));
                }
                let d = st
                    .dbs
                    .get(idx)
                    .ok_or_else(|| Error::new(ErrorKind::InternalError))?;
                let db = &d.db.db;
                let ps = u64::from(db.page_size());
                let pages = u64::from(db.file_pages()?);
                let f = OpenFile {
                    handle,
                    size: (pages + 2) * ps,
                    pos: 0,
                    digest: Digest::default(),
                    source: Source::Db {
                        idx,
                        headers: db.backup_header_pages(),
                        page_size: ps,
                        cached: None,
                    },
                };
                let name = d.name.clone();
                let size = f.size;
                st.open.push(f);
                st.next_handle += 1;
                return Ok(BackupFile { handle, size, name });
            }
            let end = st
                .end
                .as_ref()
                .ok_or_else(|| sequence("the log information was not read yet"))?;
            let (idx, generation) = end
                .logs
                .iter()
                .enumerate()
                .find(|(_, l)| {
                    let live = st
                        .engine
                        .params
                        .log_path
                        .join(st.archive_name(l.generation));
                    live == path
                })
                .map(|(i, l)| (i, l.generation))
                .ok_or_else(|| {
                    Error::new(ErrorKind::InvalidParameter)
                        .with_path(path)
                        .with_message("the file is not part of the running backup")
                })?;
            let mut image = open_live_generation(&st.engine, generation)?;
            if generation == end.end.generation {
                // The backup ends at its mark: what follows in this generation is later work.
                let cut = usize::try_from(end.end_offset).unwrap_or(usize::MAX);
                if let Some(tail) = image.get_mut(cut..) {
                    tail.fill(0);
                }
            }
            let name = end
                .logs
                .get(idx)
                .map(|l| l.name.clone())
                .unwrap_or_default();
            let size = image.len() as u64;
            st.open.push(OpenFile {
                handle,
                size,
                pos: 0,
                digest: Digest::default(),
                source: Source::Log { idx, image },
            });
            st.next_handle += 1;
            Ok(BackupFile { handle, size, name })
        })
    }

    fn read_file(&self, file: &BackupFile, buf: &mut [u8]) -> Result<usize> {
        self.with_backup(|st| {
            let BackupState { open, dbs, .. } = st;
            let f = open
                .iter_mut()
                .find(|f| f.handle == file.handle)
                .ok_or_else(|| {
                    Error::new(ErrorKind::InvalidParameter)
                        .with_message(format!("backup file handle {} is not open", file.handle))
                })?;
            let mut n = 0usize;
            while n < buf.len() && f.pos < f.size {
                let out = buf.get_mut(n..).unwrap_or_default();
                let got = match &mut f.source {
                    Source::Log { image, .. } => {
                        let from = usize::try_from(f.pos).unwrap_or(usize::MAX);
                        let src = image.get(from..).unwrap_or_default();
                        let k = src.len().min(out.len());
                        out.get_mut(..k)
                            .unwrap_or_default()
                            .copy_from_slice(src.get(..k).unwrap_or_default());
                        k
                    }
                    Source::Db {
                        idx,
                        headers,
                        page_size,
                        cached,
                    } => {
                        let block = f.pos / *page_size;
                        let within = usize::try_from(f.pos % *page_size).unwrap_or(0);
                        let bytes: &[u8] = if block < 2 {
                            let from = usize::try_from(f.pos).unwrap_or(usize::MAX);
                            headers.get(from..).unwrap_or_default()
                        } else {
                            if cached.as_ref().is_none_or(|(b, _)| *b != block) {
                                let d = dbs
                                    .get(*idx)
                                    .ok_or_else(|| Error::new(ErrorKind::InternalError))?;
                                let pgno = ese_core::Pgno((block - 1) as u32);
                                let page =
                                    d.db.db
                                        .backup_page(pgno)
                                        .map_err(|e| e.with_path(&d.db.path))?;
                                *cached = Some((block, page));
                            }
                            cached
                                .as_ref()
                                .map(|(_, p)| p.get(within..).unwrap_or_default())
                                .unwrap_or_default()
                        };
                        let k = bytes.len().min(out.len());
                        out.get_mut(..k)
                            .unwrap_or_default()
                            .copy_from_slice(bytes.get(..k).unwrap_or_default());
                        k
                    }
                };
                if got == 0 {
                    break;
                }
                f.digest.update(buf.get(n..n + got).unwrap_or_default());
                f.pos += got as u64;
                n += got;
            }
            Ok(n)
        })
    }

    fn close_file(&self, file: &BackupFile) -> Result<()> {
        self.with_backup(|st| {
            let i = st
                .open
                .iter()
                .position(|f| f.handle == file.handle)
                .ok_or_else(|| {
                    Error::new(ErrorKind::InvalidParameter)
                        .with_message(format!("backup file handle {} is not open", file.handle))
                })?;
            let f = st.open.swap_remove(i);
            let complete = f.pos == f.size;
            let (checksum, len) = f.digest.finish();
            let read = (complete && len == f.size).then_some((f.size, checksum));
            match f.source {
                Source::Db { idx, .. } => {
                    if let Some(d) = st.dbs.get_mut(idx) {
                        d.read = read.or(d.read);
                    }
                }
                Source::Log { idx, .. } => {
                    if let Some(l) = st.end.as_mut().and_then(|e| e.logs.get_mut(idx)) {
                        l.read = read.or(l.read);
                    }
                }
            }
            Ok(())
        })
    }

    fn log_info(&self) -> Result<Vec<PathBuf>> {
        self.with_backup(|st| {
            if st
                .open
                .iter()
                .any(|f| matches!(f.source, Source::Db { .. }))
            {
                return Err(sequence("a database file is still open"));
            }
            st.finish_pages()?;
            let p = &st.engine.params;
            Ok(st
                .end
                .as_ref()
                .map(|e| {
                    e.logs
                        .iter()
                        .map(|l| p.log_path.join(st.archive_name(l.generation)))
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn truncate_logs(&self) -> Result<u32> {
        self.with_backup(|st| {
            let end = st
                .end
                .as_ref()
                .ok_or_else(|| sequence("the log information was not read yet"))?;
            // The backup's generations are copied: let the checkpoint advance (flushing the
            // dirty pages), then delete what lies below both it and the backup's end.
            st.engine.unpin_backup();
            st.engine.flush().inspect_err(|e| {
                if crate::session::is_fatal_io(e) {
                    self.fatal(e);
                }
            })?;
            let n = st.engine.log.truncate(end.end.generation)?;
            st.truncated += n;
            log::info!(target: "ese::backup", "{n} log generation(s) below {} truncated", end.end.generation);
            Ok(n)
        })
    }

    fn end_backup(&self, grbit: EndExternalBackupGrbit) -> Result<()> {
        let known = EndExternalBackupGrbit::all();
        if !known.contains(grbit)
            || grbit.contains(EndExternalBackupGrbit::NORMAL | EndExternalBackupGrbit::ABORT)
        {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let st = self.backup.lock().take().ok_or_else(no_backup)?;
        st.engine.unpin_backup();
        let abort = grbit.contains(EndExternalBackupGrbit::ABORT);
        if abort {
            log::info!(target: "ese::backup", "backup aborted");
            return Ok(());
        }
        if st.end.is_none() {
            return Err(sequence(
                "the backup ended before its log information was read; nothing was recorded",
            ));
        }
        if !grbit.contains(EndExternalBackupGrbit::NO_DB_HEADER_UPDATE) {
            st.update_headers()?;
        }
        Ok(())
    }

    /// Ends a running external backup because the instance terminates (term with
    /// `STOP_BACKUP` or `ABRUPT`): nothing is recorded.
    pub(crate) fn abort_backup_for_term(&self) {
        if let Some(st) = self.backup.lock().take() {
            st.engine.unpin_backup();
            log::warn!(target: "ese::backup", "the running backup was aborted by term");
        }
    }

    pub(crate) fn backup_running(&self) -> bool {
        self.backup.lock().is_some()
    }
}

fn check_backup_grbit(grbit: BackupGrbit) -> Result<()> {
    if !BackupGrbit::all().contains(grbit) {
        return Err(Error::new(ErrorKind::InvalidGrbit));
    }
    if grbit.contains(BackupGrbit::SNAPSHOT) {
        return Err(Error::new(ErrorKind::FeatureNotAvailable)
            .with_message("snapshot backups are not supported"));
    }
    Ok(())
}

/// Copies one file of the running backup into `dir` (created new, synced). Returns its size.
fn copy_out(
    inner: &InstanceInner,
    fs: &dyn FileSystem,
    live: &Path,
    dir: &Path,
    phase: ProgressPhase,
    progress: &mut Reporter<'_>,
) -> Result<u64> {
    let file = inner.open_file(live)?;
    let out = fs.open(&dir.join(file.name()), OpenOptions::create_new())?;
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut off = 0u64;
    loop {
        let n = inner.read_file(&file, &mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all_at(buf.get(..n).unwrap_or_default(), off)?;
        off += n as u64;
        progress.advance(phase, n as u64);
    }
    out.sync_data()?;
    inner.close_file(&file)?;
    Ok(off)
}

impl Instance {
    /// Backs the instance up into `dir` while sessions keep working (JetBackupInstance):
    /// a full backup copies every attached database page by page (each page checksum-verified
    /// as it is read) and then the log generations from the checkpoint at the start of the
    /// backup to its end mark; an incremental one ([`BackupGrbit::INCREMENTAL`]) copies only the
    /// generations written since the last full or incremental backup. Every file is synced,
    /// then the directory, then the descriptor `backup.dsc` is written (through a temporary
    /// name, synced, renamed, directory synced): a backup that did not finish has no
    /// descriptor and is refused by [`Instance::restore`]. Afterwards the databases' headers
    /// record the backup, and with [`BackupGrbit::TRUNCATE_LOGS`] the generations the backup
    /// made unnecessary are deleted. `progress` is called as bytes are copied.
    ///
    /// `dir` is created if needed and must be empty.
    ///
    /// # Errors
    /// `BackupInProgress` (-505) while another backup runs; `InvalidBackup` (-526) for an
    /// incremental backup with circular logging; `MissingFullBackup` (-560) for an incremental
    /// backup of a database never fully backed up; `BackupDirectoryNotEmpty` (-504);
    /// `InvalidGrbit` (-900) for unknown bits, `FeatureNotAvailable` (-1001) for
    /// [`BackupGrbit::SNAPSHOT`]; `ReadVerifyFailure` (-1018) and the other page errors when a
    /// database page is damaged; `LogReadVerifyFailure` (-612) when a log to copy does not
    /// verify; `RequiredLogFilesMissing` when one is missing; `LogWriteFail` (-510) after a log
    /// failure; the instance errors (`NotInitialized`, `TermInProgress`, `RestoreInProgress`,
    /// `ClientRequestToStopJetService`, `InstanceUnavailable`); I/O errors of the backup
    /// directory (`DiskFull`, `DiskIO`, `FileAccessDenied`). On any error the backup is
    /// abandoned: nothing is recorded in the headers and no descriptor is written.
    pub fn backup(
        &self,
        dir: impl AsRef<Path>,
        grbit: BackupGrbit,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<BackupSummary> {
        let dir = dir.as_ref();
        let inner = &self.inner;
        let _call = inner.gate.enter()?;
        let engine = inner.engine()?;
        check_backup_grbit(grbit)?;
        let fs = inner.fs.as_ref();
        if fs.exists(dir)? && !fs.list(dir)?.is_empty() {
            return Err(Error::new(ErrorKind::BackupDirectoryNotEmpty).with_path(dir));
        }
        inner.begin_backup(&engine, grbit)?;
        let r = self.backup_steps(&engine, dir, grbit, progress);
        match r {
            Ok(s) => {
                inner.end_backup(EndExternalBackupGrbit::NORMAL)?;
                log::info!(target: "ese::backup", "{:?} backup done: generations {}..={}, end {}, {} bytes", s.kind, s.generations.0, s.generations.1, s.end, s.bytes);
                Ok(s)
            }
            Err(e) => {
                let _ = inner.end_backup(EndExternalBackupGrbit::ABORT);
                if crate::session::is_fatal_io(&e) && engine.log.is_failed() {
                    inner.fatal(&e);
                }
                Err(e)
            }
        }
    }

    fn backup_steps(
        &self,
        engine: &Arc<Engine>,
        dir: &Path,
        grbit: BackupGrbit,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<BackupSummary> {
        let inner = &self.inner;
        let fs = inner.fs.as_ref();
        fs.create_dir_all(dir)?;
        let dbs = inner.backup_attach_info_locked()?;
        let db_bytes: u64 = dbs
            .iter()
            .filter_map(|p| engine.find(p))
            .map(|d| (u64::from(d.db.file_pages().unwrap_or(0)) + 2) * u64::from(d.db.page_size()))
            .sum();
        let file_bytes = u64::from(engine.params.log_file_size_kib) * 1024;
        let start_gen = inner.with_backup(|st| Ok(st.gen_low))?;
        let est_logs =
            u64::from(engine.log.current_generation().saturating_sub(start_gen) + 1) * file_bytes;
        let mut reporter = Reporter::new(progress, db_bytes + est_logs);
        let mut bytes = 0;
        for p in &dbs {
            bytes += copy_out(
                inner,
                fs,
                p,
                dir,
                ProgressPhase::CopyDatabases,
                &mut reporter,
            )?;
        }
        let logs = inner.log_info()?;
        reporter.grow_total(reporter.done_bytes() + logs.len() as u64 * file_bytes);
        for p in &logs {
            bytes += copy_out(inner, fs, p, dir, ProgressPhase::CopyLogs, &mut reporter)?;
        }
        fs.sync_dir(dir)?;
        let desc = inner.with_backup(|st| st.descriptor())?;
        let encoded = desc.encode()?;
        let tmp = dir.join(DESCRIPTOR_TEMP_NAME);
        {
            let f = fs.open(&tmp, OpenOptions::create_new())?;
            f.write_all_at(&encoded, 0)?;
            f.sync_data()?;
        }
        fs.rename(&tmp, &dir.join(DESCRIPTOR_NAME))?;
        fs.sync_dir(dir)?;
        bytes += encoded.len() as u64;
        let truncated = if grbit.contains(BackupGrbit::TRUNCATE_LOGS) {
            inner.truncate_logs()?
        } else {
            0
        };
        reporter.set_done(ProgressPhase::Done, reporter.done_bytes());
        Ok(BackupSummary {
            kind: desc.kind,
            databases: desc
                .dbs
                .iter()
                .filter(|d| !d.file.is_empty())
                .map(|d| d.path.clone())
                .collect(),
            generations: (desc.gen_low, desc.gen_high),
            start: desc.start,
            end: desc.end,
            bytes,
            truncated_logs: truncated,
        })
    }

    /// Begins a streaming backup (JetBeginExternalBackupInstance): full, or incremental with
    /// [`BackupGrbit::INCREMENTAL`]. Until [`Instance::end_external_backup`] the checkpoint is
    /// held back so the log generations the backup needs stay on disk.
    ///
    /// # Errors
    /// `BackupInProgress` (-505) while a backup runs; `InvalidBackup` (-526): incremental with
    /// circular logging; `MissingFullBackup` (-560): incremental without a full backup;
    /// `InvalidGrbit` (-900); `FeatureNotAvailable` (-1001) for a snapshot; `LogWriteFail`
    /// (-510) after a log failure; the instance errors (`NotInitialized`, `TermInProgress`,
    /// `RestoreInProgress`, `ClientRequestToStopJetService`, `InstanceUnavailable`).
    pub fn begin_external_backup(&self, grbit: BackupGrbit) -> Result<()> {
        let _call = self.inner.gate.enter()?;
        let engine = self.inner.engine()?;
        self.inner.begin_backup(&engine, grbit)
    }

    /// The database files a running backup copies (JetGetAttachInfoInstance): the paths of
    /// the databases attached when it began; empty for an incremental backup.
    ///
    /// # Errors
    /// `NoBackup` (-520) when no external backup runs; the instance errors.
    pub fn backup_attach_info(&self) -> Result<Vec<PathBuf>> {
        let _call = self.inner.gate.enter()?;
        self.inner.backup_attach_info_locked()
    }

    /// Opens a file of the running backup for reading (JetOpenFileInstance): a database path
    /// from [`Instance::backup_attach_info`] (before [`Instance::backup_log_info`]) or a log
    /// path from [`Instance::backup_log_info`]. The returned handle carries the file's size
    /// and its name in a backup set.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidParameter` (-1003) for a path that is not part of the
    /// backup; `InvalidBackupSequence` (-521) for a database file after the log information
    /// was read, or a log before; `RequiredLogFilesMissing` or `LogReadVerifyFailure` (-612)
    /// when a log generation is missing or does not verify; the instance errors.
    pub fn open_backup_file(&self, path: impl AsRef<Path>) -> Result<BackupFile> {
        let _call = self.inner.gate.enter()?;
        self.inner.open_file(path.as_ref())
    }

    /// Reads the next bytes of a backup file into `buf` (JetReadFileInstance); returns how many
    /// (0 at the end). Database pages come through the buffer cache, each checksum-verified.
    /// Read every file from its start to its end in order: the backup's checksum of a file
    /// covers the bytes in that order.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidParameter` for a handle that is not open; `ReadVerifyFailure`
    /// (-1018) and the other page errors for a damaged database page; `DiskIO`; the instance
    /// errors.
    pub fn read_backup_file(&self, file: &BackupFile, buf: &mut [u8]) -> Result<usize> {
        let _call = self.inner.gate.enter()?;
        self.inner.read_file(file, buf)
    }

    /// Closes a backup file (JetCloseFileInstance). A file read completely counts as copied.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidParameter` for a handle that is not open; the instance
    /// errors.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "closing consumes the handle, as JetCloseFileInstance ends it"
    )]
    pub fn close_backup_file(&self, file: BackupFile) -> Result<()> {
        let _call = self.inner.gate.enter()?;
        self.inner.close_file(&file)
    }

    /// Ends the page copy and returns the log generations to copy (JetGetLogInfoInstance):
    /// the backup's end mark is logged and made durable, the logs from the backup's start to
    /// the mark are verified, and their paths (archive names, `edbXXXXXXXX.log`, also for a
    /// generation that is still the current log) are returned.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidBackupSequence` (-521) while a database file is open;
    /// `LogReadVerifyFailure` (-612) when a log does not verify; `RequiredLogFilesMissing` /
    /// `MissingPreviousLogFile` when one is missing; `LogWriteFail`; the instance errors.
    pub fn backup_log_info(&self) -> Result<Vec<PathBuf>> {
        let _call = self.inner.gate.enter()?;
        self.inner.log_info()
    }

    /// Deletes the log generations the running backup made unnecessary
    /// (JetTruncateLogInstance): the checkpoint is released and advanced (dirty pages are
    /// flushed), then the generations older than both the backup's last generation and the
    /// checkpoint are deleted. Call it after every log file was copied. Returns how many files
    /// were deleted.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidBackupSequence` (-521) before [`Instance::backup_log_info`];
    /// `LogWriteFail` or an I/O error when flushing or deleting fails (fatal: the instance
    /// becomes unavailable); the instance errors.
    pub fn truncate_backup_logs(&self) -> Result<u32> {
        let _call = self.inner.gate.enter()?;
        self.inner.truncate_logs()
    }

    /// The descriptor of the running backup (`backup.dsc`, `docs/format-backup.md`), for a
    /// caller that stores the files itself and wants [`Instance::restore`] to read them: write
    /// the files under their [`BackupFile::name`]s, sync them, then write these bytes as
    /// `backup.dsc` last.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidBackupSequence` (-521) until every file was read completely;
    /// the instance errors.
    pub fn external_backup_descriptor(&self) -> Result<Vec<u8>> {
        let _call = self.inner.gate.enter()?;
        self.inner.with_backup(|st| st.descriptor()?.encode())
    }

    /// Ends the running backup (JetEndExternalBackupInstance2). With
    /// [`EndExternalBackupGrbit::ABORT`] nothing is recorded; otherwise (normal end) the
    /// databases still attached record the backup's generation range and time in their headers
    /// (unless [`EndExternalBackupGrbit::NO_DB_HEADER_UPDATE`]). Either way the backup ends.
    ///
    /// # Errors
    /// `NoBackup` (-520); `InvalidGrbit` (-900) for unknown bits or `NORMAL` with `ABORT`;
    /// `InvalidBackupSequence` (-521) for a normal end before [`Instance::backup_log_info`]
    /// (the backup ends anyway, unrecorded); header write errors; the instance errors.
    pub fn end_external_backup(&self, grbit: EndExternalBackupGrbit) -> Result<()> {
        let _call = self.inner.gate.enter()?;
        self.inner.end_backup(grbit)
    }
}

impl InstanceInner {
    fn backup_attach_info_locked(&self) -> Result<Vec<PathBuf>> {
        self.with_backup(|st| {
            Ok(match st.kind {
                BackupKind::Full => st.dbs.iter().map(|d| d.db.path.clone()).collect(),
                BackupKind::Incremental => Vec::new(),
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::{AttachDatabaseGrbit, CreateDatabaseGrbit, TermGrbit};

    fn header(inst: &Instance) -> ese_btree::DbHeader {
        inst.inner.engine().unwrap().db(1).unwrap().db.header()
    }

    #[test]
    fn the_database_header_records_full_and_incremental_backups() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("a.edb");
        let inst = Instance::builder("hdr")
            .system_path(dir.path())
            .log_path(dir.path().join("log"))
            .page_size(4096)
            .log_file_size_kib(64)
            .create()
            .unwrap();
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        let db = s
            .create_database(&db_path, CreateDatabaseGrbit::empty())
            .unwrap();
        let h = header(&inst);
        assert_eq!((h.full_backup_gen_low, h.full_backup_gen_high), (0, 0));
        let full = inst
            .backup(dir.path().join("f"), BackupGrbit::empty(), &mut |_| {})
            .unwrap();
        let h = header(&inst);
        assert_eq!(
            (h.full_backup_gen_low, h.full_backup_gen_high),
            full.generations
        );
        assert!(h.full_backup_micros > 0);
        let inc = inst
            .backup(dir.path().join("i"), BackupGrbit::INCREMENTAL, &mut |_| {})
            .unwrap();
        let h = header(&inst);
        assert_eq!(
            (h.incremental_backup_gen_low, h.incremental_backup_gen_high),
            inc.generations
        );
        assert_eq!(inc.generations.0, full.generations.1);
        // An aborted external backup records nothing.
        inst.begin_external_backup(BackupGrbit::empty()).unwrap();
        inst.backup_log_info().unwrap();
        inst.end_external_backup(EndExternalBackupGrbit::ABORT)
            .unwrap();
        assert_eq!(header(&inst), h);
        // The record survives detach and attach.
        s.close_database(db).unwrap();
        s.detach_database(&db_path).unwrap();
        s.attach_database(&db_path, AttachDatabaseGrbit::empty())
            .unwrap();
        let after = header(&inst);
        assert_eq!(after.full_backup_gen_high, full.generations.1);
        assert_eq!(after.incremental_backup_gen_high, inc.generations.1);
        // A new full backup clears the incremental record.
        inst.backup(dir.path().join("f2"), BackupGrbit::empty(), &mut |_| {})
            .unwrap();
        assert_eq!(header(&inst).incremental_backup_gen_high, 0);
        drop(s);
        inst.term(TermGrbit::empty()).unwrap();
    }

    #[test]
    fn progress_is_monotonic_and_ends_at_100() {
        let mut seen = Vec::new();
        {
            let mut cb = |p: Progress| seen.push(p);
            let mut r = Reporter::new(&mut cb, 1000);
            r.advance(ProgressPhase::CopyDatabases, 600);
            r.grow_total(3000);
            r.advance(ProgressPhase::CopyLogs, 100);
            r.set_done(ProgressPhase::Replay, 5000);
            r.set_done(ProgressPhase::Done, 5000);
        }
        let pct: Vec<u32> = seen.iter().map(|p| p.percent).collect();
        assert_eq!(pct, [60, 60, 99, 100]);
        assert!(seen.iter().all(|p| p.done_bytes <= p.total_bytes));
    }
}
