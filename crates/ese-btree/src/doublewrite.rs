//! The doublewrite file: torn-page protection for page write-back without page images in the
//! log.
//!
//! Every batch of pages the cache writes back goes first to the doublewrite file (one
//! sequential write into the next free slots, then `fdatasync`), and only then to its places
//! in the database file. A crash can tear an in-place write, but not the copy, which was
//! durable before that write began; when the database is opened, [`DoubleWrite::open`]
//! checks the in-place page of every copy and writes the copy back where the in-place page
//! fails its checksum (the newest copy of a page, by dbtime, wins). Redo then starts from
//! valid pages, so a change to a page loaded from the file needs no full image in the log
//! (`cache.rs`, `needs_image`).
//!
//! Slots are reused only after a sync of the database file has made every in-place write of
//! the copies they hold durable: the next batch that does not fit syncs the database file and
//! starts again at slot 0. One mutex covers the copy, its sync and the in-place writes, so no
//! batch reuses a slot whose in-place write is still to be issued.
//!
//! File layout (`<database file>.dw`, little-endian): a header of one page, then `slots`
//! pages, each a sealed page exactly as written in place (its own page number and checksum
//! inside: `page.rs`).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ESEDWB01` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | page size in bytes |
//! | 16 | 4 | slot count |
//! | 20 | 32 | signature of the database the copies belong to |
//! | 52 | 4 | CRC-32 of bytes 0..52 |
//!
//! A file whose header does not match the database (another signature, page size or a bad
//! checksum) holds nothing for it: its copies are ignored and the file is rewritten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_core::checksum::crc32;
use ese_core::fs::{File, FileSystem, OpenOptions, parent_dir};
use ese_core::{Error, ErrorKind, Pgno, Result};
use parking_lot::{Mutex, MutexGuard};

use crate::header::DbFile;
use crate::page::Page;

const MAGIC: &[u8; 8] = b"ESEDWB01";
const VERSION: u32 = 1;
const HEADER_FIELDS: usize = 52;
/// Slots in the file: 4 MiB of 8 KiB pages. A write-back batch is at most
/// [`MAX_BATCH_PAGES`], so a cycle holds several batches between database syncs.
pub(crate) const SLOTS: u32 = 512;
/// Most pages one write-back batch stages at once (1 MiB of 8 KiB pages).
pub(crate) const MAX_BATCH_PAGES: usize = 128;

/// The path of the doublewrite file of the database at `db_path`: the database file's name
/// with `.dw` appended.
pub fn doublewrite_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".dw");
    PathBuf::from(name)
}

/// The open doublewrite file of one database.
pub(crate) struct DoubleWrite {
    file: Box<dyn File>,
    page_size: usize,
    /// The next free slot of the current cycle.
    next: Mutex<u32>,
}

impl std::fmt::Debug for DoubleWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleWrite")
            .field("path", &self.file.path())
            .field("next", &*self.next.lock())
            .finish_non_exhaustive()
    }
}

/// Held from the staging of a batch to the end of its in-place writes.
pub(crate) struct Staged<'a> {
    _slots: MutexGuard<'a, u32>,
}

/// The header's fields (bytes 0..56; the rest of the header page is zero).
fn header_fields(page_size: usize, signature: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_FIELDS + 4);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(page_size as u32).to_le_bytes());
    h.extend_from_slice(&SLOTS.to_le_bytes());
    h.extend_from_slice(signature);
    let crc = crc32(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The file offset of slot `slot` (the header takes the first page).
fn slot_offset(page_size: usize, slot: u32) -> u64 {
    (1 + u64::from(slot)) * page_size as u64
}

impl DoubleWrite {
    /// Opens (creating it if needed) the doublewrite file of the database `db`, whose
    /// signature is `signature`, and with `repair` (the database was not shut down cleanly, so
    /// a crash may have torn a write) repairs `db`: each in-place page that fails its checks
    /// while the file holds a valid copy of it gets the newest such copy, and the database
    /// file is synced. A cleanly shut down database had every write synced: damage found in
    /// it later is not a torn write and is left for the page checks to report. Then the file
    /// is reset to an empty cycle for this database. Returns the file and the page numbers
    /// repaired.
    ///
    /// # Errors
    /// The file system's errors (`DiskIO`, `DiskFull`, `FileAccessDenied`); read errors of
    /// the database file other than damage.
    pub(crate) fn open(
        fs: &Arc<dyn FileSystem>,
        db: &DbFile,
        signature: &[u8; 32],
        repair: bool,
    ) -> Result<(DoubleWrite, Vec<Pgno>)> {
        let path = doublewrite_path(db.path());
        let existed = fs.exists(&path)?;
        let file = fs.open(&path, OpenOptions::create())?;
        let ps = db.page_size();
        let mut repaired = Vec::new();
        if existed && repair {
            repaired = repair_from(file.as_ref(), db, ps, signature)?;
        }
        let dw = DoubleWrite {
            file,
            page_size: ps,
            next: Mutex::new(0),
        };
        dw.reset(signature)?;
        if !existed {
            fs.sync_dir(parent_dir(&path))?;
        }
        Ok((dw, repaired))
    }

    /// Writes a header for this database and gives the file its full length, durably. Any
    /// copy left in the slots belongs to pages already durable in place.
    fn reset(&self, signature: &[u8; 32]) -> Result<()> {
        let ps = self.page_size;
        let mut header = header_fields(ps, signature);
        header.resize(ps, 0);
        self.file
            .set_len(slot_offset(ps, SLOTS))
            .and_then(|()| self.file.write_all_at(&header, 0))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| e.with_path(self.file.path()))
    }

    /// Stages the sealed pages in `buf` (whole pages, at most [`SLOTS`]): writes them to the
    /// next free slots and syncs the file. When they do not fit, `sync_db` first makes every
    /// earlier in-place write durable and the cycle starts again at slot 0. The returned
    /// guard must be held until the in-place writes of these pages are issued.
    ///
    /// # Errors
    /// `InternalError` for a batch larger than the file; the file system's errors.
    pub(crate) fn stage(
        &self,
        buf: &[u8],
        sync_db: impl FnOnce() -> Result<()>,
    ) -> Result<Staged<'_>> {
        let ps = self.page_size;
        let n = u32::try_from(buf.len() / ps)
            .ok()
            .filter(|&n| n <= SLOTS && buf.len().is_multiple_of(ps))
            .ok_or_else(|| {
                Error::new(ErrorKind::InternalError)
                    .with_message("doublewrite batch larger than the file")
            })?;
        let mut next = self.next.lock();
        if *next + n > SLOTS {
            sync_db()?;
            *next = 0;
        }
        self.file
            .write_all_at(buf, slot_offset(ps, *next))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| e.with_path(self.file.path()))?;
        *next += n;
        Ok(Staged { _slots: next })
    }
}

/// Reads the copies in `file` and writes back, for each page whose in-place image is damaged,
/// its newest valid copy; syncs `db` when anything was written.
fn repair_from(file: &dyn File, db: &DbFile, ps: usize, signature: &[u8; 32]) -> Result<Vec<Pgno>> {
    let mut head = vec![0u8; ps];
    let len = file.len()?;
    if len < ps as u64 || file.read_exact_at(&mut head, 0).is_err() {
        return Ok(Vec::new());
    }
    // Another database's (or page size's) copies, or no valid header: nothing for this one.
    if head.get(..HEADER_FIELDS + 4) != Some(&header_fields(ps, signature)[..]) {
        return Ok(Vec::new());
    }
    let slots = u32::try_from((len / ps as u64).saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(SLOTS);
    // The newest valid copy of each page.
    let mut newest: HashMap<Pgno, Page> = HashMap::new();
    let mut buf = vec![0u8; ps];
    for slot in 0..slots {
        if file.read_exact_at(&mut buf, slot_offset(ps, slot)).is_err() {
            continue;
        }
        let Some(pgno) = buf
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(|b| Pgno(u32::from_le_bytes(b)))
            .filter(|p| *p != Pgno::NULL)
        else {
            continue;
        };
        let Ok(page) = Page::decode(&buf, pgno) else {
            continue;
        };
        if newest.get(&pgno).is_none_or(|p| p.dbtime() < page.dbtime()) {
            newest.insert(pgno, page);
        }
    }
    let mut repaired = Vec::new();
    let mut in_place = vec![0u8; ps];
    let mut pgnos: Vec<Pgno> = newest.keys().copied().collect();
    pgnos.sort_unstable();
    for pgno in pgnos {
        let damaged = match db.read_page(pgno, &mut in_place) {
            Ok(()) => Page::decode(&in_place, pgno).is_err(),
            Err(e) if e.kind() == ErrorKind::FileIOBeyondEOF => true,
            Err(e) => return Err(e),
        };
        if damaged && let Some(copy) = newest.get(&pgno) {
            db.write_page(pgno, &copy.sealed())?;
            repaired.push(pgno);
        }
    }
    if !repaired.is_empty() {
        db.sync()?;
    }
    Ok(repaired)
}
