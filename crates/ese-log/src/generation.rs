//! Creating and installing generation files: preformatting `edbtmp.log`, the reserve logs,
//! and the rollover protocol that makes a new generation the current `edb.log`.
//!
//! Rollover protocol (new generation `g + 1` while `edb.log` holds `g`):
//! 1. everything of `g` is written and synced (the caller does this first);
//! 2. `edbtmp.log`, preformatted with zeros and synced, receives the new header; sync;
//! 3. `edb.log` is hard-linked as `edb{g:08X}.log`; directory sync;
//! 4. `edbtmp.log` is renamed over `edb.log`; directory sync.
//!
//! After step 3 the old generation has its archive name durably, so whichever of the two
//! renames a crash keeps, every acknowledged record stays reachable; no record of `g + 1` is
//! acknowledged before step 4 returns.

#![deny(clippy::indexing_slicing)]

use std::sync::Arc;

use ese_core::fs::{File, FileSystem, OpenOptions};
use ese_core::{ErrorKind, Result};

use crate::files::StreamFiles;
use crate::header::LogFileHeader;

/// Size of each zero-filling write when preformatting a file: large enough to stream at disk
/// speed, small enough not to hold a large buffer.
const FORMAT_CHUNK: usize = 256 * 1024;

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
    let f = fs.open(path, OpenOptions::create_new())?;
    let zeros = vec![0u8; FORMAT_CHUNK];
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(FORMAT_CHUNK as u64) as usize;
        f.write_all_at(zeros.get(..n).unwrap_or_default(), off)?;
        off += n as u64;
    }
    f.sync_data()?;
    Ok(f)
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
        let f = fs.open(&files.temp(), OpenOptions::read_write())?;
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
        fs.hard_link(&files.current(), &archive)?;
        fs.sync_dir(&files.dir)?;
    }
    fs.rename(&files.temp(), &files.current())?;
    fs.sync_dir(&files.dir)?;
    Ok(tmp)
}
