//! The database file: two header pages (header and shadow) followed by the database pages
//! (ESE's `DBFILEHDR` and its shadow). Page *n* lives at byte `(n - 1 + 2) * page_size`.
//!
//! Header updates alternate between the two slots, each write followed by `sync_data`, with a
//! strictly increasing sequence number: a torn write damages at most the slot being written,
//! and the reader takes the valid slot with the highest sequence.

#![deny(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ese_core::checksum::crc32_seeded;
use ese_core::fs::{File, FileSystem, Lock, OpenOptions};
use ese_core::{DbTime, Error, ErrorKind, Lgpos, ObjId, Pgno, Result};

/// The database magic number (ESE's `ulMagic`).
pub const DB_MAGIC: u32 = 0x89AB_CDEF;
/// The format version this crate writes and reads.
pub const DB_FORMAT_VERSION: u32 = 1;
/// File type of a database file (ESE `filetype` 1).
const FILE_TYPE_DATABASE: u32 = 1;
/// Bytes of a header slot covered by its checksum (the rest of the header page is zero).
const HEADER_LEN: usize = 4096;
/// Seed of the header checksum (ESE's XOR seed, kept for recognisability).
const HEADER_SEED: u64 = 0x89AB_CDEF;

/// The page sizes a database may use, in bytes (`JET_paramDatabasePageSize`).
pub const PAGE_SIZES: [u32; 4] = [4096, 8192, 16384, 32768];

/// The database state (ESE's `JET_dbstate*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbState {
    /// Created, not yet attached for use (`JET_dbstateJustCreated`, 1).
    JustCreated,
    /// Attached, in use or crashed: needs recovery before use (`JET_dbstateDirtyShutdown`, 2).
    DirtyShutdown,
    /// Detached cleanly: consistent without the log (`JET_dbstateCleanShutdown`, 3).
    CleanShutdown,
}

impl DbState {
    /// ESE's numeric value.
    pub const fn value(self) -> u32 {
        match self {
            DbState::JustCreated => 1,
            DbState::DirtyShutdown => 2,
            DbState::CleanShutdown => 3,
        }
    }

    fn from_value(v: u32) -> Option<DbState> {
        match v {
            1 => Some(DbState::JustCreated),
            2 => Some(DbState::DirtyShutdown),
            3 => Some(DbState::CleanShutdown),
            _ => None,
        }
    }
}

/// The database header (ESE's `DBFILEHDR`, our own layout; see `docs/format-database.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbHeader {
    /// Format version (`ulVersion`); [`DB_FORMAT_VERSION`].
    pub format_version: u32,
    /// Page size in bytes (`cbPageSize`): 4096, 8192, 16384 or 32768.
    pub page_size: u32,
    /// Sequence number of this header copy; each update increases it.
    pub sequence: u64,
    /// The database state (`dbstate`).
    pub state: DbState,
    /// The database signature (`signDb`): random, fixed at creation.
    pub db_signature: [u8; 32],
    /// The signature of the log stream the database belongs to (`signLog`), opaque to this
    /// crate and filled by the log layer.
    pub log_signature: [u8; 32],
    /// The log position at which the database was last consistent (`lgposConsistent`; zero
    /// while dirty).
    pub consistent_lgpos: Lgpos,
    /// The lowest log generation recovery needs (`lGenMinRequired`).
    pub gen_min_required: u32,
    /// The highest log generation recovery needs (`lGenMaxRequired`).
    pub gen_max_required: u32,
    /// The highest generation holding a commit that reached this database
    /// (`lGenMaxCommitted`).
    pub gen_max_committed: u32,
    /// The last object id handed out (`objidLast`).
    pub last_objid: ObjId,
    /// The database's dbtime when the header was written (`dbtimeDirtied`).
    pub dbtime: DbTime,
    /// First log generation of the last full backup (`bkinfoFullPrev.genLow`); 0 = none.
    pub full_backup_gen_low: u32,
    /// Last log generation of the last full backup (`bkinfoFullPrev.genHigh`); 0 = none.
    pub full_backup_gen_high: u32,
    /// When the last full backup ended, µs since the Unix epoch (`bkinfoFullPrev.logtimeMark`).
    pub full_backup_micros: u64,
    /// First log generation of the last incremental backup since the last full one
    /// (`bkinfoIncPrev.genLow`); 0 = none.
    pub incremental_backup_gen_low: u32,
    /// Last log generation of that incremental backup (`bkinfoIncPrev.genHigh`); 0 = none.
    pub incremental_backup_gen_high: u32,
    /// When that incremental backup ended, µs since the Unix epoch.
    pub incremental_backup_micros: u64,
}

impl DbHeader {
    /// A fresh header for a new database.
    pub fn new(page_size: u32, db_signature: [u8; 32]) -> DbHeader {
        DbHeader {
            format_version: DB_FORMAT_VERSION,
            page_size,
            sequence: 0,
            state: DbState::JustCreated,
            db_signature,
            log_signature: [0; 32],
            consistent_lgpos: Lgpos::MIN,
            gen_min_required: 0,
            gen_max_required: 0,
            gen_max_committed: 0,
            last_objid: ObjId(0),
            dbtime: DbTime(0),
            full_backup_gen_low: 0,
            full_backup_gen_high: 0,
            full_backup_micros: 0,
            incremental_backup_gen_low: 0,
            incremental_backup_gen_high: 0,
            incremental_backup_micros: 0,
        }
    }

    /// Encodes the header into a `HEADER_LEN`-byte slot with its checksum.
    pub(crate) fn encode(&self, slot: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&DB_MAGIC.to_le_bytes());
        b.extend_from_slice(&self.format_version.to_le_bytes());
        b.extend_from_slice(&FILE_TYPE_DATABASE.to_le_bytes());
        b.extend_from_slice(&self.page_size.to_le_bytes());
        b.extend_from_slice(&slot.to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&self.state.value().to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.db_signature);
        b.extend_from_slice(&self.log_signature);
        b.extend_from_slice(&self.consistent_lgpos.to_bytes());
        b.extend_from_slice(&self.gen_min_required.to_le_bytes());
        b.extend_from_slice(&self.gen_max_required.to_le_bytes());
        b.extend_from_slice(&self.gen_max_committed.to_le_bytes());
        b.extend_from_slice(&self.last_objid.to_bytes());
        b.extend_from_slice(&self.dbtime.to_bytes());
        b.extend_from_slice(&self.full_backup_gen_low.to_le_bytes());
        b.extend_from_slice(&self.full_backup_gen_high.to_le_bytes());
        b.extend_from_slice(&self.full_backup_micros.to_le_bytes());
        b.extend_from_slice(&self.incremental_backup_gen_low.to_le_bytes());
        b.extend_from_slice(&self.incremental_backup_gen_high.to_le_bytes());
        b.extend_from_slice(&self.incremental_backup_micros.to_le_bytes());
        b.resize(HEADER_LEN, 0);
        let crc = crc32_seeded(HEADER_SEED, &[b.get(4..).unwrap_or_default()]);
        if let Some(c) = b.get_mut(0..4) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes a header slot; `expect_slot` is the slot it was read from.
    ///
    /// # Errors
    /// `ReadVerifyFailure` on a checksum mismatch; `InvalidDatabase` for a wrong magic or file
    /// type or a slot at the wrong place; `InvalidDatabaseVersion` for another format version;
    /// `DatabaseCorrupted` for an impossible page size or state. Inspection tools (esedump) use
    /// it to show each header copy without opening the database.
    pub fn decode(b: &[u8], expect_slot: u32) -> Result<DbHeader> {
        let r32 = |o: usize| -> u32 {
            b.get(o..o + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let r64 = |o: usize| -> u64 {
            b.get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let arr32 = |o: usize| -> [u8; 32] {
            b.get(o..o + 32)
                .and_then(|s| s.try_into().ok())
                .unwrap_or([0; 32])
        };
        if b.len() < HEADER_LEN {
            return Err(Error::new(ErrorKind::InvalidDatabase).with_message("short header"));
        }
        let crc = crc32_seeded(HEADER_SEED, &[b.get(4..HEADER_LEN).unwrap_or_default()]);
        if crc != r32(0) {
            return Err(
                Error::new(ErrorKind::ReadVerifyFailure).with_message(format!(
                    "database header slot {expect_slot}: checksum mismatch"
                )),
            );
        }
        if r32(4) != DB_MAGIC || r32(12) != FILE_TYPE_DATABASE {
            return Err(Error::new(ErrorKind::InvalidDatabase)
                .with_message("bad magic or file type in the database header"));
        }
        if r32(8) != DB_FORMAT_VERSION {
            return Err(
                Error::new(ErrorKind::InvalidDatabaseVersion).with_message(format!(
                    "format version {} (this engine reads {DB_FORMAT_VERSION})",
                    r32(8)
                )),
            );
        }
        if r32(20) != expect_slot {
            return Err(Error::new(ErrorKind::InvalidDatabase).with_message(format!(
                "header slot {} found at slot {expect_slot}",
                r32(20)
            )));
        }
        let page_size = r32(16);
        if !PAGE_SIZES.contains(&page_size) {
            return Err(Error::new(ErrorKind::DatabaseCorrupted)
                .with_message(format!("impossible page size {page_size} in the header")));
        }
        let state = DbState::from_value(r32(32)).ok_or_else(|| {
            Error::new(ErrorKind::DatabaseCorrupted)
                .with_message(format!("impossible database state {}", r32(32)))
        })?;
        let lg: [u8; 8] = b
            .get(104..112)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 8]);
        Ok(DbHeader {
            format_version: r32(8),
            page_size,
            sequence: r64(24),
            state,
            db_signature: arr32(40),
            log_signature: arr32(72),
            consistent_lgpos: Lgpos::from_bytes(lg),
            gen_min_required: r32(112),
            gen_max_required: r32(116),
            gen_max_committed: r32(120),
            last_objid: ObjId(r32(124)),
            dbtime: DbTime(r64(128)),
            full_backup_gen_low: r32(136),
            full_backup_gen_high: r32(140),
            full_backup_micros: r64(144),
            incremental_backup_gen_low: r32(152),
            incremental_backup_gen_high: r32(156),
            incremental_backup_micros: r64(160),
        })
    }
}

/// The open database file: page-granular positional I/O and the two header slots.
#[derive(Debug)]
pub(crate) struct DbFile {
    file: Box<dyn File>,
    page_size: usize,
    path: PathBuf,
    /// Database pages the file held when its length was last read or set here: a lower
    /// bound (the file only grows while open; a write past the end grows it too), so that
    /// allocating a page already inside the file asks the file system nothing.
    known_pages: AtomicU32,
}

impl DbFile {
    fn page_offset(&self, pgno: Pgno) -> u64 {
        (u64::from(pgno.0) - 1 + 2) * self.page_size as u64
    }

    /// Creates a new, empty file (fails if it exists) with room for the two header slots; the
    /// headers are written last by `Database::create`, so a crash during creation leaves a
    /// file that does not open as a database.
    pub(crate) fn create(fs: &Arc<dyn FileSystem>, path: &Path, page_size: u32) -> Result<DbFile> {
        let file = fs.open(path, OpenOptions::create_new().lock(Lock::Exclusive))?;
        let f = DbFile {
            file,
            page_size: page_size as usize,
            path: path.to_path_buf(),
            known_pages: AtomicU32::new(0),
        };
        f.file.set_len(2 * f.page_size as u64)?;
        fs.sync_dir(ese_core::fs::parent_dir(path))?;
        Ok(f)
    }

    /// Opens an existing file and reads its newest valid header.
    pub(crate) fn open(
        fs: &Arc<dyn FileSystem>,
        path: &Path,
        read_only: bool,
    ) -> Result<(DbFile, DbHeader)> {
        let opts = if read_only {
            OpenOptions::read().lock(Lock::Shared)
        } else {
            OpenOptions::read_write().lock(Lock::Exclusive)
        };
        let file = fs.open(path, opts)?;
        let mut best: Option<DbHeader> = None;
        let mut first_err = None;
        let mut buf = vec![0u8; HEADER_LEN];
        // Slot 0 is at offset 0; slot 1 is one page further, and the page size is only known
        // from a valid header, so try every page size for it.
        let mut candidates = vec![(0u32, 0u64)];
        candidates.extend(PAGE_SIZES.iter().map(|&ps| (1u32, u64::from(ps))));
        for (slot, off) in candidates {
            let r = file
                .read_exact_at(&mut buf, off)
                .and_then(|()| DbHeader::decode(&buf, slot));
            match r {
                Ok(h) if slot == 1 && u64::from(h.page_size) != off => {}
                Ok(h) => {
                    if best.as_ref().is_none_or(|b| h.sequence > b.sequence) {
                        best = Some(h);
                    }
                }
                Err(e) => {
                    if first_err.is_none() && e.kind() != ErrorKind::FileIOBeyondEOF {
                        first_err = Some(e);
                    }
                }
            }
        }
        let header = best.ok_or_else(|| {
            first_err
                .unwrap_or_else(|| Error::new(ErrorKind::InvalidDatabase))
                .with_path(path)
        })?;
        Ok((
            DbFile {
                file,
                page_size: header.page_size as usize,
                path: path.to_path_buf(),
                known_pages: AtomicU32::new(0),
            },
            header,
        ))
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `header` to `slot` and syncs.
    pub(crate) fn write_header_slot(&self, header: &DbHeader, slot: u32) -> Result<()> {
        let mut b = header.encode(slot);
        b.resize(self.page_size, 0);
        self.file
            .write_all_at(&b, u64::from(slot) * self.page_size as u64)?;
        self.file.sync_data()
    }

    /// Number of database pages the file holds (header pages excluded).
    pub(crate) fn page_count(&self) -> Result<u32> {
        let len = self.file.len()?;
        let pages = (len / self.page_size as u64).saturating_sub(2);
        let pages = u32::try_from(pages).unwrap_or(u32::MAX);
        self.known_pages.fetch_max(pages, Ordering::Relaxed);
        Ok(pages)
    }

    /// [`DbFile::page_count`] when it may be below `pgno`; otherwise a number of pages known
    /// to be in the file, at least `pgno` (without asking the file system): for page
    /// allocation, which grows the file only for a page past its end.
    ///
    /// # Errors
    /// As [`DbFile::page_count`].
    pub(crate) fn page_count_for(&self, pgno: u32) -> Result<u32> {
        let known = self.known_pages.load(Ordering::Relaxed);
        if pgno <= known {
            return Ok(known);
        }
        self.page_count()
    }

    /// The file length that holds `pages` database pages after the two header pages.
    fn len_for(&self, pages: u32) -> u64 {
        (u64::from(pages) + 2) * self.page_size as u64
    }

    /// Extends the file to hold `pages` database pages and makes the length durable.
    pub(crate) fn grow_to(&self, pages: u32) -> Result<()> {
        let len = self.len_for(pages);
        if self.file.len()? < len {
            self.file.set_len(len)?;
            self.file.sync_data()?;
        }
        self.known_pages.fetch_max(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Extends the file to hold `pages` database pages **without** syncing the new length:
    /// for growth during normal operation (`split.rs`, `Work::alloc`). Safe because a page
    /// past the durable end is only ever needed by recovery after an image of it was logged:
    /// the checkpoint passes that image only once the page was written and the file synced,
    /// and `fdatasync` also makes the length durable (see `docs/format-database.md`).
    pub(crate) fn extend_to(&self, pages: u32) -> Result<()> {
        let len = self.len_for(pages);
        if self.file.len()? < len {
            self.file.set_len(len)?;
        }
        self.known_pages.fetch_max(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Cuts the file down to `pages` database pages, without a sync (the caller's next
    /// `fdatasync` makes the length durable), when it is longer: for a file that holds no
    /// page past `pages` and never will before it grows again (a finished compacted copy,
    /// whose unused extension would otherwise stay). Nothing when it is not longer.
    pub(crate) fn trim_to(&self, pages: u32) -> Result<()> {
        let len = self.len_for(pages);
        if self.file.len()? > len {
            self.file.set_len(len)?;
        }
        self.known_pages.store(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Reads page `pgno` raw (unverified).
    pub(crate) fn read_page(&self, pgno: Pgno, buf: &mut [u8]) -> Result<()> {
        if pgno == Pgno::NULL {
            return Err(Error::new(ErrorKind::DatabaseCorrupted)
                .with_pgno(pgno)
                .with_message("page 0 does not exist"));
        }
        self.file
            .read_exact_at(buf, self.page_offset(pgno))
            .map_err(|e| e.with_pgno(pgno))
    }

    /// Writes page `pgno` (not synced).
    pub(crate) fn write_page(&self, pgno: Pgno, buf: &[u8]) -> Result<()> {
        self.file
            .write_all_at(buf, self.page_offset(pgno))
            .map_err(|e| e.with_pgno(pgno))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let mut h = DbHeader::new(8192, [7; 32]);
        h.sequence = 5;
        h.consistent_lgpos = Lgpos::new(3, 4, 5);
        h.last_objid = ObjId(9);
        h.state = DbState::CleanShutdown;
        h.full_backup_gen_low = 3;
        h.full_backup_gen_high = 5;
        h.full_backup_micros = 77;
        h.incremental_backup_gen_high = 6;
        let b = h.encode(1);
        assert_eq!(DbHeader::decode(&b, 1).unwrap(), h);
        assert_eq!(
            DbHeader::decode(&b, 0).unwrap_err(),
            ErrorKind::InvalidDatabase
        );
        for i in 0..200 {
            let mut c = b.clone();
            c[i] ^= 1;
            assert!(DbHeader::decode(&c, 1).is_err());
        }
    }
}
