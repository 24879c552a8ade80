//! Restore (ESE's `JetRestoreInstance`, hard recovery) of a full backup, optionally followed by
//! incremental ones, then of any newer logs of the same stream in the instance's log path
//! (point-of-failure recovery).
//!
//! Steps, each on a verified input before anything is changed:
//! 1. Read every descriptor and check that the backups form a chain (one stream, a full
//!    backup first, generation ranges that overlap, the same databases).
//! 2. Verify every log generation of every backup: headers (signature, generation, chaining),
//!    every record up to the backup's end mark, and the checksum the descriptor records.
//! 3. Look at the instance's log path: empty, or holding the same stream (newer logs to replay
//!    after the backup's), or another stream (refused).
//! 4. Mark the log path (`edb.restore`: `init` refuses with `SoftRecoveryOnBackupDatabase`
//!    until a restore finishes), copy each database into `dest_dir` under a staging name
//!    (`NAME.restoring`), verifying every page and the file's checksum, and copy the backup's
//!    generations the log path lacks into it.
//! 5. Hard recovery: the engine's recovery (`Engine::recover`) from the full backup's start
//!    checkpoint, with attach records of the backed-up databases redirected to the staging
//!    files; redo of the backup's logs and the newer ones, undo of unfinished transactions,
//!    clean detach; then a term record and a checkpoint.
//! 6. Rename the staging files to their final names, sync the directory, remove the mark.
//!
//! A restore that fails or crashes leaves no database under its final name that it did not
//! finish; it can be run again (the logs it copied or wrote are part of the same stream and
//! are replayed again from the same start).

#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_btree::{Database, DbHeader};
use ese_core::fs::{FileSystem, Lock, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Pgno, Result};
use ese_log::{Checkpoint, LogFileHeader, LogReader};

use super::{
    BackupKind, COPY_CHUNK, DbEntry, Descriptor, Digest, LogEntry, Progress, ProgressPhase,
    Reporter, mark_payload,
};
use crate::engine::{Engine, HardRecovery, RecoveryStats};
use crate::instance::{Instance, InstanceInner, Params};

/// Suffix of a database file being restored.
const STAGING_SUFFIX: &str = ".restoring";

/// The name of the mark a restore leaves in the log path while it runs.
pub(crate) fn restore_mark_path(params: &Params) -> PathBuf {
    params
        .log_path
        .join(format!("{}.restore", params.base_name))
}

/// One backup of the chain.
struct Set {
    dir: PathBuf,
    desc: Descriptor,
    headers: BTreeMap<u32, LogFileHeader>,
}

/// Where each generation to replay comes from.
struct Source {
    path: PathBuf,
    entry: LogEntry,
    header: LogFileHeader,
}

fn map_log_error(e: Error, last_generation: bool) -> Error {
    let kind = match e.kind() {
        ErrorKind::MissingLogFile
        | ErrorKind::RequiredLogFilesMissing
        | ErrorKind::MissingPreviousLogFile
        | ErrorKind::FileNotFound => ErrorKind::MissingRestoreLogFiles,
        ErrorKind::BadLogSignature => ErrorKind::GivenLogFileHasBadSignature,
        ErrorKind::InvalidLogSequence | ErrorKind::LogGenerationMismatch => {
            ErrorKind::GivenLogFileIsNotContiguous
        }
        ErrorKind::LogFileCorrupt | ErrorKind::LogFileSizeMismatch if last_generation => {
            ErrorKind::LogTornWriteDuringHardRestore
        }
        ErrorKind::LogFileCorrupt | ErrorKind::LogFileSizeMismatch => {
            ErrorKind::LogCorruptDuringHardRestore
        }
        _ => return e,
    };
    let mut out = Error::new(kind).with_message(format!("backup log: {e}"));
    if let Some(p) = e.path() {
        out = out.with_path(p);
    }
    if let Some(l) = e.lgpos() {
        out = out.with_lgpos(l);
    }
    out
}

/// Reads a whole file and returns its size and checksum.
fn digest_file(fs: &dyn FileSystem, path: &Path) -> Result<(u64, u32)> {
    let f = fs.open(path, OpenOptions::read())?;
    let len = f.len()?;
    let mut d = Digest::default();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(COPY_CHUNK as u64)).unwrap_or(COPY_CHUNK);
        let b = buf.get_mut(..n).unwrap_or_default();
        f.read_exact_at(b, off)?;
        d.update(b);
        off += n as u64;
    }
    let (c, l) = d.finish();
    Ok((l, c))
}

fn expected_log_name(desc: &Descriptor, generation: u32) -> String {
    if generation == desc.gen_high {
        format!("{}.log", desc.base_name)
    } else {
        format!("{}{generation:08X}.log", desc.base_name)
    }
}

/// Step 1: the descriptors and the chain they form.
fn read_chain(fs: &dyn FileSystem, dirs: &[PathBuf], params: &Params) -> Result<Vec<Set>> {
    let mut sets = Vec::new();
    for dir in dirs {
        if *dir == params.log_path {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_path(dir)
                .with_message("the instance's log path cannot be a backup directory"));
        }
        let desc = Descriptor::read(fs, dir)?;
        sets.push(Set {
            dir: dir.clone(),
            desc,
            headers: BTreeMap::new(),
        });
    }
    let Some(full) = sets.first() else {
        return Err(
            Error::new(ErrorKind::InvalidParameter).with_message("no backup directory given")
        );
    };
    if full.desc.kind != BackupKind::Full {
        return Err(Error::new(ErrorKind::MissingFullBackup)
            .with_path(&full.dir)
            .with_message("a restore starts from a full backup"));
    }
    for s in &sets {
        let d = &s.desc;
        if d.page_size != params.page_size {
            return Err(Error::new(ErrorKind::PageSizeMismatch)
                .with_path(&s.dir)
                .with_message(format!(
                    "the backup has {}-byte pages, the instance {}",
                    d.page_size, params.page_size
                )));
        }
        if d.log_file_size_kib != params.log_file_size_kib {
            return Err(Error::new(ErrorKind::LogFileSizeMismatch)
                .with_path(&s.dir)
                .with_message(format!(
                    "the backup's log files have {} KiB, the instance's {}",
                    d.log_file_size_kib, params.log_file_size_kib
                )));
        }
        if d.log_signature != full.desc.log_signature {
            return Err(Error::new(ErrorKind::GivenLogFileHasBadSignature)
                .with_path(&s.dir)
                .with_message("the backups belong to different log streams"));
        }
    }
    for pair in sets.windows(2) {
        let [prev, cur] = pair else { continue };
        if cur.desc.kind != BackupKind::Incremental {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_path(&cur.dir)
                .with_message("only the first backup of a chain may be a full backup"));
        }
        if cur.desc.gen_low > prev.desc.gen_high {
            return Err(Error::new(ErrorKind::MissingRestoreLogFiles)
                .with_path(&cur.dir)
                .with_message(format!(
                    "generations {} to {} are in no backup of the chain",
                    prev.desc.gen_high + 1,
                    cur.desc.gen_low - 1
                )));
        }
        if cur.desc.end <= prev.desc.end {
            return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                .with_path(&cur.dir)
                .with_message("the incremental backups are not in the order they were taken"));
        }
    }
    for s in sets.iter().skip(1) {
        for d in &s.desc.dbs {
            let in_full = full
                .desc
                .dbs
                .iter()
                .any(|f| f.dbid == d.dbid && f.signature == d.signature);
            if !in_full {
                return Err(Error::new(ErrorKind::DatabasesNotFromSameSnapshot)
                    .with_path(&d.path)
                    .with_message("the database is not in the full backup"));
            }
        }
    }
    Ok(sets)
}

/// Step 2: verifies the logs of one backup (headers, records to the end mark, checksums).
fn verify_set_logs(fs: &Arc<dyn FileSystem>, set: &mut Set) -> Result<()> {
    let d = &set.desc;
    let file_bytes = u64::from(d.log_file_size_kib) * 1024;
    let mut prev: Option<LogFileHeader> = None;
    for e in &d.logs {
        let last = e.generation == d.gen_high;
        let path = set.dir.join(&e.file);
        if e.file != expected_log_name(d, e.generation) {
            return Err(Error::new(ErrorKind::RestoreOfNonBackupDatabase)
                .with_path(&path)
                .with_message("a log file of the backup has an unexpected name"));
        }
        let h = LogFileHeader::read(fs.as_ref(), &path).map_err(|err| map_log_error(err, false))?;
        if h.signature.to_bytes() != d.log_signature {
            return Err(Error::new(ErrorKind::GivenLogFileHasBadSignature)
                .with_path(&path)
                .with_message("the log file belongs to another log stream"));
        }
        if h.generation != e.generation
            || prev.is_some_and(|p| p.created_micros != h.prev_created_micros)
        {
            return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                .with_path(&path)
                .with_message(format!("generation {} does not chain", e.generation)));
        }
        if h.file_bytes() != file_bytes {
            return Err(map_log_error(
                Error::new(ErrorKind::LogFileSizeMismatch).with_path(&path),
                last,
            ));
        }
        prev = Some(h);
        set.headers.insert(e.generation, h);
    }
    let mut reader = LogReader::open(Arc::clone(fs), &set.dir, &d.base_name, d.start)
        .map_err(|e| map_log_error(e, false))?;
    let mut last: Option<(Lgpos, Vec<u8>)> = None;
    loop {
        match reader.next_record() {
            Ok(Some(r)) => last = Some((r.lgpos, r.payload)),
            Ok(None) => break,
            Err(e) => {
                let in_last = e.lgpos().is_some_and(|l| l.generation == d.gen_high);
                return Err(map_log_error(e, in_last));
            }
        }
    }
    let mark = mark_payload(d.kind, &d.id, d.start);
    match last {
        Some((at, p)) if at == d.end && p == mark => {}
        Some((at, _)) if at > d.end => {
            return Err(Error::new(ErrorKind::LogCorruptDuringHardRestore)
                .with_path(&set.dir)
                .with_lgpos(at)
                .with_message("the backup's logs go on past its end mark"));
        }
        other => {
            return Err(Error::new(ErrorKind::LogTornWriteDuringHardRestore)
                .with_path(&set.dir)
                .with_lgpos(other.map_or(d.start, |(at, _)| at))
                .with_message(format!(
                    "the backup's logs end before its end mark at {}",
                    d.end
                )));
        }
    }
    for e in &d.logs {
        let path = set.dir.join(&e.file);
        if digest_file(fs.as_ref(), &path)? != (e.size, e.checksum) {
            return Err(Error::new(ErrorKind::LogCorruptDuringHardRestore)
                .with_path(&path)
                .with_message("the log file differs from the backup's checksum"));
        }
    }
    Ok(())
}

fn parse_archive(base: &str, name: &str) -> Option<u32> {
    let hex = name.strip_prefix(base)?.strip_suffix(".log")?;
    if (hex.len() != 8 && hex.len() != 5) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().filter(|g| *g > 0)
}

/// Step 3: what the log path holds and which backup generations it needs.
struct LogPlan {
    /// Generations to copy from the backups.
    copy: Vec<u32>,
    /// The log path holds no stream: the newest generation copied becomes its current log.
    fresh: bool,
    /// The log path's checkpoint file has no valid copy (a crash during the first checkpoint
    /// write of an earlier restore): it is removed, hard recovery does not need it.
    drop_checkpoint: bool,
}

fn plan_log_path(
    fs: &dyn FileSystem,
    params: &Params,
    sources: &BTreeMap<u32, Source>,
    last: &Descriptor,
    signature: [u8; 16],
) -> Result<LogPlan> {
    let dir = &params.log_path;
    let base = &params.base_name;
    let names = match fs.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::FileNotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let archives: Vec<u32> = names
        .iter()
        .filter_map(|n| parse_archive(base, n))
        .collect();
    let archive_path = |g: u32| dir.join(format!("{base}{g:08X}.log"));
    let current = dir.join(format!("{base}.log"));
    let first = sources.keys().next().copied().unwrap_or(1);
    let high = last.gen_high;
    let foreign = |path: &Path| {
        Error::new(ErrorKind::BadLogSignature)
            .with_path(path)
            .with_message("the log path holds another log stream; restore into an empty log path")
    };
    let ckpt = dir.join(format!("{base}.chk"));
    // An instance running on the log path holds its checkpoint file locked.
    if fs.exists(&ckpt)? {
        match fs.open(&ckpt, OpenOptions::read().lock(Lock::Exclusive)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::FileAccessDenied => {
                return Err(Error::new(ErrorKind::LogFilePathInUse)
                    .with_path(&ckpt)
                    .with_message("an instance is running on the log path"));
            }
            Err(e) => return Err(e),
        }
    }
    let drop_checkpoint = match Checkpoint::read(fs, &ckpt) {
        Ok(c) if c.signature.to_bytes() != signature => {
            return Err(Error::new(ErrorKind::BadCheckpointSignature)
                .with_path(&ckpt)
                .with_message("the log path's checkpoint belongs to another log stream"));
        }
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::CheckpointFileNotFound => false,
        Err(e) if e.kind() == ErrorKind::CheckpointCorrupt => true,
        Err(e) => return Err(e),
    };
    if !fs.exists(&current)? {
        for &g in &archives {
            let p = archive_path(g);
            let h = LogFileHeader::read(fs, &p)?;
            if h.signature.to_bytes() != signature {
                return Err(foreign(&p));
            }
            if g >= high {
                return Err(Error::new(ErrorKind::MissingLogFile)
                    .with_path(&current)
                    .with_message("the log path holds newer generations but no current log"));
            }
        }
        return Ok(LogPlan {
            copy: sources.keys().copied().collect(),
            fresh: true,
            drop_checkpoint,
        });
    }
    let cur = LogFileHeader::read(fs, &current)?;
    if cur.signature.to_bytes() != signature {
        return Err(foreign(&current));
    }
    if cur.generation < high {
        return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
            .with_path(&current)
            .with_message(format!(
                "the log path's current generation {} is older than the backup's last, {high}",
                cur.generation
            )));
    }
    let in_path = |g: u32| g == cur.generation || archives.contains(&g);
    let mut copy = Vec::new();
    for g in first..cur.generation {
        if in_path(g) {
            continue;
        }
        if g <= high {
            copy.push(g);
        } else {
            return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                .with_path(archive_path(g))
                .with_message(
                    "a generation between the backup and the log path's current log is missing",
                ));
        }
    }
    // The log path's own generations from the first one not copied must chain, and chain onto
    // the last one copied.
    let header_of = |g: u32| -> Result<LogFileHeader> {
        if g == cur.generation {
            Ok(cur)
        } else {
            LogFileHeader::read(fs, &archive_path(g))
        }
    };
    let mut prev: Option<LogFileHeader> =
        copy.last().and_then(|g| sources.get(g)).map(|s| s.header);
    let from = copy.last().map_or(first, |g| g + 1);
    for g in from..=cur.generation {
        let h = header_of(g)?;
        if h.signature.to_bytes() != signature {
            return Err(foreign(&archive_path(g)));
        }
        if let Some(p) = prev {
            if h.prev_created_micros != p.created_micros {
                return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                    .with_path(archive_path(g))
                    .with_message(format!("generation {g} does not chain to {}", p.generation)));
            }
            // The copy of the backup's last generation ends at the backup's end mark: the
            // log path must not need more of it.
            if p.generation == high
                && copy.last() == Some(&high)
                && h.prev_end_offset != last.end_offset
            {
                return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                    .with_path(archive_path(g))
                    .with_message(format!(
                        "generation {high} continues after the backup's end in the lost log; \
                         the log path must still hold it"
                    )));
            }
        }
        prev = Some(h);
    }
    Ok(LogPlan {
        copy,
        fresh: false,
        drop_checkpoint,
    })
}

/// Copies a database of the backup to `staging`, verifying every header slot and page and the
/// file's checksum.
fn stage_database(
    fs: &dyn FileSystem,
    src: &Path,
    entry: &DbEntry,
    page_size: u32,
    staging: &Path,
    progress: &mut Reporter<'_>,
) -> Result<()> {
    let input = fs.open(src, OpenOptions::read()).map_err(|e| {
        if e.kind() == ErrorKind::FileNotFound {
            Error::new(ErrorKind::FileNotFound)
                .with_path(src)
                .with_message("a database file of the backup is missing")
        } else {
            e
        }
    })?;
    let len = input.len()?;
    let ps = u64::from(page_size);
    let damaged = |msg: &str| {
        Error::new(ErrorKind::ReadVerifyFailure)
            .with_path(src)
            .with_message(msg.to_owned())
    };
    if len != entry.size || len < 2 * ps || len % ps != 0 {
        return Err(damaged(
            "the database copy's size differs from the backup's record",
        ));
    }
    match fs.remove_file(staging) {
        Err(e) if e.kind() != ErrorKind::FileNotFound => return Err(e),
        _ => {}
    }
    let out = fs.open(staging, OpenOptions::create_new())?;
    let mut digest = Digest::default();
    let pages_per_chunk = (COPY_CHUNK as u64 / ps).max(1);
    let mut buf = vec![0u8; usize::try_from(pages_per_chunk * ps).unwrap_or(COPY_CHUNK)];
    let mut block = 0u64;
    let blocks = len / ps;
    let mut slot0 = None;
    while block < blocks {
        let n = (blocks - block).min(pages_per_chunk);
        let bytes = usize::try_from(n * ps).unwrap_or(0);
        let b = buf.get_mut(..bytes).unwrap_or_default();
        input.read_exact_at(b, block * ps)?;
        for (i, page) in b.chunks(usize::try_from(ps).unwrap_or(4096)).enumerate() {
            let at = block + i as u64;
            match at {
                0 => slot0 = Some(DbHeader::decode(page, 0)),
                1 => {
                    // Both header slots: at least one must verify and name this database.
                    let h0 = slot0
                        .take()
                        .unwrap_or_else(|| Err(damaged("no header slot 0")));
                    let h = match (h0, DbHeader::decode(page, 1)) {
                        (Ok(h), _) | (Err(_), Ok(h)) => h,
                        (Err(e), Err(_)) => return Err(e.with_path(src)),
                    };
                    if h.db_signature != entry.signature {
                        return Err(Error::new(ErrorKind::BadDbSignature)
                            .with_path(src)
                            .with_message(
                                "the database copy is not the database the backup names",
                            ));
                    }
                }
                _ => Database::verify_page_image(page_size, Pgno((at - 1) as u32), page)
                    .map_err(|e| e.with_path(src))?,
            }
        }
        digest.update(b);
        out.write_all_at(b, block * ps)?;
        block += n;
        progress.advance(ProgressPhase::CopyDatabases, n * ps);
    }
    if digest.finish() != (entry.checksum, entry.size) {
        return Err(damaged(
            "the database copy differs from the backup's checksum",
        ));
    }
    out.sync_data()?;
    Ok(())
}

/// Copies a verified log generation into the log path under `name` through a temporary file.
fn install_log(
    fs: &dyn FileSystem,
    src: &Source,
    dir: &Path,
    tmp_name: &str,
    name: &str,
) -> Result<()> {
    let tmp = dir.join(tmp_name);
    match fs.remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::FileNotFound => return Err(e),
        _ => {}
    }
    let input = fs.open(&src.path, OpenOptions::read())?;
    let len = input.len()?;
    let out = fs.open(&tmp, OpenOptions::create_new())?;
    let mut digest = Digest::default();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(COPY_CHUNK as u64)).unwrap_or(COPY_CHUNK);
        let b = buf.get_mut(..n).unwrap_or_default();
        input.read_exact_at(b, off)?;
        digest.update(b);
        out.write_all_at(b, off)?;
        off += n as u64;
    }
    let (c, l) = digest.finish();
    if (l, c) != (src.entry.size, src.entry.checksum) {
        return Err(Error::new(ErrorKind::LogCorruptDuringHardRestore)
            .with_path(&src.path)
            .with_message("the log file changed since it was verified"));
    }
    out.sync_data()?;
    drop(out);
    fs.rename(&tmp, &dir.join(name))
}

fn log_bytes_between(file_bytes: u64, from: Lgpos, to: Lgpos) -> u64 {
    let abs = |l: Lgpos| u64::from(l.generation) * file_bytes + super::lgpos_offset(l);
    abs(to).saturating_sub(abs(from))
}

fn remove_quietly(fs: &dyn FileSystem, path: &Path) {
    if let Err(e) = fs.remove_file(path)
        && e.kind() != ErrorKind::FileNotFound
    {
        log::warn!(target: "ese::restore", "could not remove {}: {e}", path.display());
    }
}

impl InstanceInner {
    fn restore_locked(
        &self,
        dirs: &[PathBuf],
        dest: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RecoveryStats> {
        let fs = Arc::clone(&self.fs);
        let fsr = fs.as_ref();
        let mut params = self.params.clone();
        // Circular logging would delete the copied generations below the log path's own
        // checkpoint before they are replayed; the restore itself never deletes logs.
        params.circular_log = false;
        let mut sets = read_chain(fsr, dirs, &params)?;
        let file_bytes = u64::from(params.log_file_size_kib) * 1024;
        let log_bytes: u64 = sets
            .iter()
            .map(|s| s.desc.logs.len() as u64 * file_bytes)
            .sum();
        let Some(full) = sets.first() else {
            return Err(Error::new(ErrorKind::InvalidParameter));
        };
        let db_bytes: u64 = full.desc.dbs.iter().map(|d| d.size).sum();
        let start = full.desc.start;
        let mut reporter = Reporter::new(progress, 2 * log_bytes + db_bytes + log_bytes);
        reporter.advance(ProgressPhase::Verify, 0);
        for s in &mut sets {
            verify_set_logs(&fs, s)?;
            reporter.advance(ProgressPhase::Verify, s.desc.logs.len() as u64 * file_bytes);
        }
        // The newest copy of every generation, from the full backup's start to the last
        // backup's end; consecutive copies must chain.
        let mut sources: BTreeMap<u32, Source> = BTreeMap::new();
        for s in &sets {
            for e in &s.desc.logs {
                if e.generation < start.generation {
                    continue;
                }
                let Some(h) = s.headers.get(&e.generation) else {
                    continue;
                };
                sources.insert(
                    e.generation,
                    Source {
                        path: s.dir.join(&e.file),
                        entry: e.clone(),
                        header: *h,
                    },
                );
            }
        }
        let (Some(full), Some(last)) = (sets.first(), sets.last()) else {
            return Err(Error::new(ErrorKind::InvalidParameter));
        };
        let mut prev: Option<&LogFileHeader> = None;
        for g in start.generation..=last.desc.gen_high {
            let s = sources.get(&g).ok_or_else(|| {
                Error::new(ErrorKind::MissingRestoreLogFiles)
                    .with_lgpos(Lgpos::new(g, 0, 0))
                    .with_message(format!("generation {g} is in no backup of the chain"))
            })?;
            if prev.is_some_and(|p| p.created_micros != s.header.prev_created_micros) {
                return Err(Error::new(ErrorKind::GivenLogFileIsNotContiguous)
                    .with_path(&s.path)
                    .with_message(format!("generation {g} does not chain across the backups")));
            }
            prev = Some(&s.header);
        }
        let plan = plan_log_path(fsr, &params, &sources, &last.desc, full.desc.log_signature)?;
        // The databases' final and staging names.
        if sets.iter().any(|s| s.dir == dest) {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_path(dest)
                .with_message("the destination cannot be a backup directory"));
        }
        fsr.create_dir_all(dest)?;
        let mut targets = Vec::new();
        for d in &full.desc.dbs {
            let target = dest.join(&d.file);
            let staging = dest.join(format!("{}{STAGING_SUFFIX}", d.file));
            if fsr.exists(&target)? {
                match fsr.open(&target, OpenOptions::read().lock(Lock::Exclusive)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::FileAccessDenied => {
                        return Err(Error::new(ErrorKind::DatabaseSharingViolation)
                            .with_path(&target)
                            .with_message("the database to overwrite is attached somewhere"));
                    }
                    Err(e) => return Err(e),
                }
            }
            targets.push((d, full.dir.join(&d.file), staging, target));
        }
        log::info!(
            target: "ese::restore",
            "restoring {} database(s) from {} backup(s), generations {}..={}, {} copied into the log path",
            targets.len(), sets.len(), start.generation, last.desc.gen_high, plan.copy.len()
        );
        // From here on files change: mark the log path so that init refuses until a restore
        // finishes.
        fsr.create_dir_all(&params.log_path)?;
        let mark = restore_mark_path(&params);
        {
            let f = fsr.open(&mark, OpenOptions::create())?;
            f.write_all_at(&full.desc.id, 0)?;
            f.sync_data()?;
        }
        fsr.sync_dir(&params.log_path)?;
        let mut logs_touched = false;
        let r = (|| -> Result<RecoveryStats> {
            for (d, src, staging, _) in &targets {
                stage_database(fsr, src, d, params.page_size, staging, &mut reporter)?;
            }
            fsr.sync_dir(dest)?;
            let base = &params.base_name;
            let tmp_name = format!("{base}restore.tmp");
            if plan.drop_checkpoint {
                logs_touched = true;
                fsr.remove_file(&params.log_path.join(format!("{base}.chk")))?;
            }
            logs_touched |= !plan.copy.is_empty();
            for g in &plan.copy {
                let Some(src) = sources.get(g) else { continue };
                let is_current = plan.fresh && *g == last.desc.gen_high;
                if is_current {
                    // The archives must be durable before the current log names the stream.
                    fsr.sync_dir(&params.log_path)?;
                }
                let name = if is_current {
                    format!("{base}.log")
                } else {
                    format!("{base}{g:08X}.log")
                };
                install_log(fsr, src, &params.log_path, &tmp_name, &name)?;
                reporter.advance(ProgressPhase::CopyLogs, src.entry.size);
            }
            fsr.sync_dir(&params.log_path)?;
            let hard = HardRecovery {
                start,
                dbs: targets
                    .iter()
                    .map(|(d, _, staging, _)| (d.dbid, staging.clone()))
                    .collect(),
                remap: targets
                    .iter()
                    .map(|(d, _, staging, _)| (d.path.clone(), staging.clone()))
                    .collect(),
            };
            logs_touched = true;
            let replay_base = reporter.done_bytes();
            let newest = fsr
                .list(&params.log_path)?
                .iter()
                .filter_map(|n| parse_archive(base, n))
                .max()
                .unwrap_or(0)
                .max(last.desc.gen_high)
                + 1;
            let replay_total = log_bytes_between(file_bytes, start, Lgpos::new(newest + 1, 0, 0));
            reporter.grow_total(replay_base + replay_total);
            let engine = Engine::recover(
                Arc::clone(&fs),
                params.clone(),
                &mut |_, at| {
                    let done = log_bytes_between(file_bytes, start, at).min(replay_total);
                    reporter.set_done(ProgressPhase::Replay, replay_base + done);
                },
                Some(&hard),
            )?;
            let stats = engine.recovery;
            engine.shutdown()?;
            drop(engine);
            // The restored databases start a new backup history: their next incremental
            // backup needs a full one first.
            for (_, _, staging, _) in &targets {
                let opts = ese_btree::DbOptions::new()
                    .page_size(params.page_size)
                    .cache_bytes(0);
                let db = Database::open(&fs, staging, opts, Arc::new(ese_btree::MemWal::new()))?;
                db.write_header(|h| {
                    h.full_backup_gen_low = 0;
                    h.full_backup_gen_high = 0;
                    h.full_backup_micros = 0;
                    h.incremental_backup_gen_low = 0;
                    h.incremental_backup_gen_high = 0;
                    h.incremental_backup_micros = 0;
                })?;
            }
            for (_, _, staging, target) in &targets {
                // The databases were shut down cleanly: their doublewrite files hold nothing
                // to repair, and a target's old one belongs to the database restored over.
                remove_quietly(fsr, &ese_btree::doublewrite_path(target));
                fsr.rename(staging, target)?;
                remove_quietly(fsr, &ese_btree::doublewrite_path(staging));
            }
            fsr.sync_dir(dest)?;
            Ok(stats)
        })();
        match r {
            Ok(stats) => {
                fsr.remove_file(&mark)?;
                fsr.sync_dir(&params.log_path)?;
                reporter.set_done(ProgressPhase::Done, reporter.done_bytes());
                log::info!(
                    target: "ese::restore",
                    "restore done: {} records replayed from generations {}..={}, {} transactions rolled back",
                    stats.records, stats.generations.0, stats.generations.1, stats.transactions_undone
                );
                Ok(stats)
            }
            Err(e) => {
                for (_, _, staging, _) in &targets {
                    remove_quietly(fsr, staging);
                    remove_quietly(fsr, &ese_btree::doublewrite_path(staging));
                }
                if !logs_touched {
                    remove_quietly(fsr, &mark);
                }
                log::error!(target: "ese::restore", "restore failed: {e}");
                Err(e)
            }
        }
    }
}

impl Instance {
    /// Restores a full backup made by [`Instance::backup`] (JetRestoreInstance): see
    /// [`Instance::restore_chain`], with a chain of one backup.
    ///
    /// # Errors
    /// As [`Instance::restore_chain`].
    pub fn restore(
        &self,
        backup_dir: impl AsRef<Path>,
        dest_dir: impl AsRef<Path>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RecoveryStats> {
        self.restore_chain(&[backup_dir.as_ref()], dest_dir, progress)
    }

    /// Restores a full backup followed by incremental ones, in the order they were taken
    /// (JetRestoreInstance with the incremental logs added to the full backup's), into an
    /// instance that is not initialized: hard recovery.
    ///
    /// While it runs the instance is in the restoring state: it counts as initialized (so
    /// `init` gets `AlreadyInitialized`, -1030) and every other call gets
    /// `RestoreInProgress` (-506). The databases are copied into `dest_dir` under their backed-up
    /// file names (through a staging name, `NAME.restoring`, renamed at the end), every page
    /// and every file checksum-verified; the backups' logs are replayed and then any newer logs
    /// of the same stream found in the instance's log path (point-of-failure recovery: nothing
    /// committed after the backup is lost when those logs exist); unfinished transactions are
    /// rolled back; the databases are left clean and detached, and the log path holds the
    /// continued stream, so that [`Instance::init`] then starts normally. Afterwards the
    /// instance is back in the created state. `progress` reports percent of bytes: verifying,
    /// copying, replaying.
    ///
    /// Without newer logs the databases come back exactly as of the last backup's end mark
    /// ([`BackupSummary::end`](crate::BackupSummary::end)). A restore that fails or crashes
    /// leaves no database under its final name and can be run again; until one finishes,
    /// `init` refuses with `SoftRecoveryOnBackupDatabase` (-544) when it had already started
    /// changing the log path.
    ///
    /// # Errors
    /// - `AlreadyInitialized` (-1030): the instance is initialized (or another restore runs);
    ///   `TermInProgress` / `NotInitialized` while term or init runs; `InvalidInstance`
    ///   (-1115) after a failed init.
    /// - `RestoreOfNonBackupDatabase` (-615): a directory holds no valid descriptor (not a
    ///   backup, a backup that did not finish, or a damaged descriptor).
    /// - `MissingFullBackup` (-560): the chain does not start with a full backup;
    ///   `MissingRestoreLogFiles` (-557): a log generation is missing; `GivenLogFileIsNotContiguous`
    ///   (-556): generations do not chain (within or across backups, or with the log path's);
    ///   `GivenLogFileHasBadSignature` (-555): a log of another stream; `DatabasesNotFromSameSnapshot`
    ///   (-580): an incremental backup names a database the full one lacks.
    /// - `LogTornWriteDuringHardRestore` (-570): a backup's last log ends before the backup's end
    ///   mark; `LogCorruptDuringHardRestore` (-573): any other damage in a backup log.
    /// - `ReadVerifyFailure` (-1018), `ReadPgnoVerifyFailure` and the page errors: a damaged
    ///   database copy; `BadDbSignature` (-531): a copy of another database; `FileNotFound`
    ///   (-1811): a database copy is missing.
    /// - `BadLogSignature` (-530) / `BadCheckpointSignature` (-532): the log path holds another
    ///   log stream; `MissingLogFile` (-528): it holds newer generations without a current log.
    /// - `LogFilePathInUse` (-1084): an instance is running on the log path.
    /// - `PageSizeMismatch` (-1213), `LogFileSizeMismatch` (-541): the instance's parameters
    ///   differ from the backup's; `DatabaseSharingViolation` (-1215): a database to replace is
    ///   attached elsewhere; `InvalidParameter` (-1003): no directory, a full backup after the
    ///   first, or the log path or `dest_dir` being a backup directory.
    /// - Replay errors of recovery and I/O errors (`DiskFull`, `DiskIO`, ...).
    pub fn restore_chain<P: AsRef<Path>>(
        &self,
        backup_dirs: &[P],
        dest_dir: impl AsRef<Path>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RecoveryStats> {
        let dirs: Vec<PathBuf> = backup_dirs
            .iter()
            .map(|d| d.as_ref().to_path_buf())
            .collect();
        let guard = self.inner.gate.begin_restore()?;
        let r = self
            .inner
            .restore_locked(&dirs, dest_dir.as_ref(), progress);
        drop(guard);
        r
    }
}
