//! Creating and installing generation files: preformatting `edbtmp.log`, the reserve logs,
//! and the rollover protocol that makes a new generation the current `edb.log`.
//!
//! Rollover protocol (new generation `g + 1` while `edb.log` holds `g`):
//! 1. everything of `g` is written and synced (the caller does this first);
//! 2. `edbtmp.log`, preformatted with zeros and synced (or, with circular logging, the file of
//!    a generation no longer needed, see [`recycle`]), receives the new header; sync;
//! 3. `edb.log` is hard-linked as `edb{g:08X}.log`;
//! 4. `edbtmp.log` is renamed over `edb.log`; directory sync.
//!
//! The preformatting of step 2 is done ahead of need by the preparer thread (see `writer.rs`),
//! so a rollover costs the header write and its sync, a link, a rename and one directory sync;
//! with the background threads the flusher does it, while appends go on into `g + 1`'s buffer
//! (`writer.rs`, "Rollover").
//!
//! Why each state a crash can leave is recoverable (directory operations of one directory
//! survive a crash as a prefix in issue order, `docs/format-log.md`, "Assumptions about the
//! medium"): before step 3 is durable, `edb.log` is still `g` and `edbtmp.log` is a leftover
//! that open deletes; with step 3 and not step 4, `g` is both `edb.log` and its archive (the
//! reader skips an archive of the current generation, open replaces it); with both, `g` is
//! reachable by its archive name and `edb.log` is `g + 1`, whose header is durable (step 2)
//! and whose `prev_end` covers only data synced in step 1. Step 4 is never durable without
//! step 3, since step 3 was issued first. No record of `g + 1` is acknowledged before the
//! directory sync of step 4 returns. (Until this version a directory sync also separated
//! steps 3 and 4; it only guarded against a file system that reorders operations within one
//! directory, which the medium assumptions exclude, and it doubled the synchronous metadata
//! work of every rollover.)
//!
//! Readers of the live stream (an online backup) rely on the issue order of steps 3 and 4 as
//! well: once `edb.log` holds `g + 1`, `g` is reachable by its archive name (`reader.rs`,
//! "Reading a live stream").

#![deny(clippy::indexing_slicing)]

use std::sync::Arc;

use ese_core::fs::{File, FileSystem, OpenOptions};
use ese_core::{ErrorKind, Result};

use crate::files::StreamFiles;
use crate::header::LogFileHeader;

/// Size of each zero-filling write when preformatting a file: large enough to stream at disk
/// speed, small enough not to hold a large buffer.
const FORMAT_CHUNK: usize = 256 * 1024;

/// The address alignment of the zeros a generation is formatted with (a page).
const ZEROS_ALIGN: usize = 4096;

/// Removes `path`, treating "not found" as success.
pub(crate) fn remove_if_exists(fs: &dyn FileSystem, path: &std::path::Path) -> Result<()> {
    match fs.remove_file(path) {
        Err(e) if e.kind() != ErrorKind::FileNotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates `path` (replacing a leftover) filled with `bytes` zeros and synced, so that later
/// writes never grow the file.
pub(crate) fn preformat(
    fs: &dyn FileSystem,
    path: &std::path::Path,
    bytes: u64,
) -> Result<Box<dyn File>> {
    remove_if_exists(fs, path)?;
    let f = fs.open(path, OpenOptions::create_new().unbuffered())?;
    // Zeros at a page-aligned address, so that an unbuffered file writes them as they are
    // (no aligned copy first): `ZEROS_ALIGN` bytes of slack hold the shift.
    let slack = vec![0u8; FORMAT_CHUNK + ZEROS_ALIGN];
    let shift = slack.as_ptr().align_offset(ZEROS_ALIGN).min(ZEROS_ALIGN);
    let zeros = slack.get(shift..shift + FORMAT_CHUNK).unwrap_or(&slack);
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(FORMAT_CHUNK as u64) as usize;
        f.write_all_at(zeros.get(..n).unwrap_or_default(), off)?;
        off += n as u64;
    }
    f.sync_data()?;
    Ok(f)
}

/// Keeps the file of a generation no longer needed (`path`, `bytes` long) for reuse as a
/// later generation: renamed to a free `edbrcyNNNNN.log` slot. Returns whether it was kept;
/// when every slot is taken or the file has another size, the caller deletes it.
///
/// Reuse is safe because a frame's checksum covers its LGPOS: the old generation's frames
/// left in the file never verify as frames of the new one (`record.rs`), so they read as the
/// never-written tail.
pub(crate) fn recycle(
    fs: &dyn FileSystem,
    files: &StreamFiles,
    path: &std::path::Path,
    bytes: u64,
) -> Result<bool> {
    let Some(slot) = (1..=crate::files::RECYCLED_LOGS)
        .map(|n| files.recycled(n))
        .find(|p| !fs.exists(p).unwrap_or(true))
    else {
        return Ok(false);
    };
    if fs.open(path, OpenOptions::read())?.len()? != bytes {
        return Ok(false);
    }
    fs.rename(path, &slot)?;
    Ok(true)
}

/// Moves a kept generation file (see [`recycle`]) into place as `edbtmp.log`, `bytes` long,
/// instead of formatting a new one: its blocks are written already, so later writes neither
/// grow it nor allocate. `None` when none is kept.
pub(crate) fn take_recycled(
    fs: &dyn FileSystem,
    files: &StreamFiles,
    bytes: u64,
) -> Result<Option<Box<dyn File>>> {
    for n in 1..=crate::files::RECYCLED_LOGS {
        let path = files.recycled(n);
        if !fs.exists(&path)? {
            continue;
        }
        remove_if_exists(fs, &files.temp())?;
        fs.rename(&path, &files.temp())?;
        let f = fs.open(&files.temp(), OpenOptions::read_write().unbuffered())?;
        if f.len()? == bytes {
            return Ok(Some(f));
        }
        // Kept under another log file size: of no use.
        drop(f);
        remove_if_exists(fs, &files.temp())?;
    }
    Ok(None)
}

/// Moves reserve log `n` into place as `edbtmp.log`; `None` if it does not exist.
pub(crate) fn take_reserve(
    fs: &dyn FileSystem,
    files: &StreamFiles,
    bytes: u64,
) -> Result<Option<Box<dyn File>>> {
    for n in 1..=crate::files::RESERVE_LOGS {
        let path = files.reserve(n);
        if !fs.exists(&path)? {
            continue;
        }
        let _ = remove_if_exists(fs, &files.temp());
        fs.rename(&path, &files.temp())?;
        let f = fs.open(&files.temp(), OpenOptions::read_write().unbuffered())?;
        if f.len()? != bytes {
            f.set_len(bytes)?;
            f.sync_data()?;
        }
        return Ok(Some(f));
    }
    Ok(None)
}

/// Creates any missing reserve log (or one of the wrong size). Returns whether one was made.
pub(crate) fn ensure_reserves(
    fs: &dyn FileSystem,
    files: &StreamFiles,
    bytes: u64,
) -> Result<bool> {
    let mut made = false;
    for n in 1..=crate::files::RESERVE_LOGS {
        let path = files.reserve(n);
        let ok = fs.exists(&path)? && fs.open(&path, OpenOptions::read())?.len()? == bytes;
        if !ok {
            drop(preformat(fs, &path, bytes)?);
            made = true;
        }
    }
    if made {
        fs.sync_dir(&files.dir)?;
    }
    Ok(made)
}

/// Steps 2–4 of the rollover protocol: writes `header` into the prepared `tmp`, archives the
/// current generation `retiring` (if any) and renames `tmp` over `edb.log`. Returns the new
/// current file.
pub(crate) fn install(
    fs: &Arc<dyn FileSystem>,
    files: &StreamFiles,
    tmp: Box<dyn File>,
    header: &LogFileHeader,
    retiring: Option<u32>,
) -> Result<Box<dyn File>> {
    tmp.write_all_at(&header.encode(), 0)?;
    tmp.sync_data()?;
    if let Some(g) = retiring {
        let archive = files.archive(g);
        remove_if_exists(fs.as_ref(), &archive)?;
        // No directory sync here: the link precedes the rename below in issue order, so no
        // crash keeps the rename without it (module docs).
        fs.hard_link(&files.current(), &archive)?;
    }
    fs.rename(&files.temp(), &files.current())?;
    fs.sync_dir(&files.dir)?;
    Ok(tmp)
}
