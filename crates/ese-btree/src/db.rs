//! The database: file, headers, cache, dbtime, the tree directory and the space page.
//!
//! Fixed pages: page 1 is the root of the **tree directory** (objid 1, ESE's database root
//! FDP): a B+tree mapping an objid (4 bytes, big-endian) to its root page (u32) and kind (u8).
//! Page 2 is the **space page**: its external header holds the head of the free-page chain,
//! the number of free pages, the highest page number ever allocated (`pgno_last`) and the last
//! objid handed out. Pages above `pgno_last` up to the end of the file are available
//! extension; free pages form a chain through their `next` field.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ese_core::fs::FileSystem;
use ese_core::{DbTime, Error, ErrorKind, Lgpos, ObjId, Pgno, Result};
use parking_lot::{Mutex, RwLock};

use crate::cache::{BufferCache, CacheStats};
use crate::doublewrite::DoubleWrite;
use crate::header::{DbFile, DbHeader, DbState, PAGE_SIZES};
use crate::page::{Page, PageFlags, PagePool};
use crate::split::Work;
use crate::tree::Tree;
use crate::wal::Wal;

/// Root page of the tree directory.
pub(crate) const DIR_PGNO: Pgno = Pgno(1);
/// The space page.
pub(crate) const SPACE_PGNO: Pgno = Pgno(2);
/// Objid of the tree directory (and of the space page).
pub(crate) const DIR_OBJID: ObjId = ObjId(1);
/// Largest objid (ESE's `objidFDPMax`).
const OBJID_MAX: u32 = 0xFFFF_FF00;

/// What a tree holds; sets the page flags of its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeKind {
    /// A table's clustered (primary) index.
    Table,
    /// A secondary index (pages flagged `fPageIndex`).
    Index,
    /// A long-value tree (pages flagged `fPageLongValue`).
    LongValue,
}

impl TreeKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            TreeKind::Table => 1,
            TreeKind::Index => 2,
            TreeKind::LongValue => 3,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<TreeKind> {
        match c {
            1 => Some(TreeKind::Table),
            2 => Some(TreeKind::Index),
            3 => Some(TreeKind::LongValue),
            _ => None,
        }
    }
    pub(crate) fn page_flags(self) -> PageFlags {
        match self {
            TreeKind::Table => PageFlags(0),
            TreeKind::Index => PageFlags::INDEX,
            TreeKind::LongValue => PageFlags::LONG_VALUE,
        }
    }
}

/// Options of an open database (ESE system parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbOptions {
    pub(crate) page_size: u32,
    pub(crate) cache_bytes: u64,
    pub(crate) extension_pages: u32,
    pub(crate) dbid: u32,
    pub(crate) doublewrite: bool,
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            page_size: 8192,
            cache_bytes: 64 << 20,
            extension_pages: 256,
            dbid: 0,
            doublewrite: true,
        }
    }
}

impl DbOptions {
    /// Default options: 8 KiB pages, a 64 MiB cache, growth by 256 pages, dbid 0, a
    /// doublewrite file.
    pub fn new() -> DbOptions {
        DbOptions::default()
    }

    /// Page size in bytes (`JET_paramDatabasePageSize`): 4096, 8192 (default), 16384 or
    /// 32768. Checked by [`Database::create`] and [`Database::open`] (`InvalidParameter`).
    #[must_use]
    pub fn page_size(mut self, bytes: u32) -> DbOptions {
        self.page_size = bytes;
        self
    }

    /// Cache budget in bytes (`JET_paramCacheSizeMax`, which ESE counts in pages). Default
    /// 64 MiB; at least 64 pages are cached whatever the budget.
    #[must_use]
    pub fn cache_bytes(mut self, bytes: u64) -> DbOptions {
        self.cache_bytes = bytes;
        self
    }

    /// Pages added each time the file grows (`JET_paramDbExtensionSize`). Default 256,
    /// minimum 1. A larger file grows by a sixty-fourth of its size instead, up to 64 MiB at a
    /// time (`docs/format-database.md`).
    #[must_use]
    pub fn extension_pages(mut self, pages: u32) -> DbOptions {
        self.extension_pages = pages.max(1);
        self
    }

    /// The database id written into every page record, so one log can serve several
    /// databases (ESE's `dbid`). Default 0.
    #[must_use]
    pub fn dbid(mut self, dbid: u32) -> DbOptions {
        self.dbid = dbid;
        self
    }

    /// Whether page write-back goes through the doublewrite file `<database>.dw` (default
    /// on): each batch of pages is written and synced there before it is written in place,
    /// and opening the database rewrites a torn in-place page from its copy
    /// (`doublewrite.rs`). Then a change to a page needs no full page image in the log. Off,
    /// the first change of a page after it was read or written is logged as a full image
    /// instead (more log, no second write); a database whose pages are never recovered (a
    /// temporary database) or that is only read (an inspection tool) turns it off. Turning it
    /// off on a database that needs recovery after a crash with it on loses its repair.
    #[must_use]
    pub fn doublewrite(mut self, on: bool) -> DbOptions {
        self.doublewrite = on;
        self
    }
}

/// The space header on the space page (tag 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct SpaceHeader {
    pub(crate) free_head: Pgno,
    pub(crate) free_count: u32,
    pub(crate) pgno_last: u32,
    pub(crate) last_objid: u32,
}

impl SpaceHeader {
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.free_head.to_bytes());
        b.extend_from_slice(&self.free_count.to_le_bytes());
        b.extend_from_slice(&self.pgno_last.to_le_bytes());
        b.extend_from_slice(&self.last_objid.to_le_bytes());
        b
    }

    pub(crate) fn decode(page: &Page) -> Result<SpaceHeader> {
        let r = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                page.ext().get(o..o + 4)?.try_into().ok()?,
            ))
        };
        let bad = || {
            Error::new(ErrorKind::SPOwnExtCorrupted)
                .with_pgno(page.pgno())
                .with_message("bad space header")
        };
        if page.ext().len() != 16 || !page.flags().contains(PageFlags::SPACE_TREE) {
            return Err(bad());
        }
        Ok(SpaceHeader {
            free_head: Pgno(r(0).ok_or_else(bad)?),
            free_count: r(4).ok_or_else(bad)?,
            pgno_last: r(8).ok_or_else(bad)?,
            last_objid: r(12).ok_or_else(bad)?,
        })
    }
}

/// State shared by every handle of one open database.
pub(crate) struct DbShared {
    pub(crate) cache: BufferCache,
    /// Serialises page modifications (one writer at a time; readers run concurrently).
    pub(crate) writer: Mutex<()>,
    pub(crate) dbtime: AtomicU64,
    pub(crate) header: Mutex<DbHeader>,
    pub(crate) opts: DbOptions,
    pub(crate) roots: RwLock<HashMap<ObjId, (Pgno, TreeKind)>>,
    /// Buffers for the page copies of work units.
    pub(crate) pool: PagePool,
    /// Pages rewritten from the doublewrite file when the database was opened.
    repaired: Vec<Pgno>,
}

impl DbShared {
    pub(crate) fn page_size(&self) -> usize {
        self.cache.page_size()
    }

    /// The next dbtime (ESE's `DBTIME` counter).
    pub(crate) fn next_dbtime(&self) -> Result<DbTime> {
        let t = self.dbtime.fetch_add(1, Ordering::SeqCst) + 1;
        if t >= u64::MAX - 1 {
            return Err(Error::new(ErrorKind::OutOfDbtimeValues));
        }
        Ok(DbTime(t))
    }

    pub(crate) fn bump_dbtime(&self, t: DbTime) {
        self.dbtime.fetch_max(t.0, Ordering::SeqCst);
    }
}

/// An open database file with its buffer cache (ESE's attached database: `IFMP` and its
/// `FMP`).
///
/// Cheap to clone; every clone is the same database. Page changes are logged through the
/// [`Wal`] given at open.
#[derive(Clone)]
pub struct Database {
    pub(crate) shared: Arc<DbShared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.shared.cache.file.path())
            .finish_non_exhaustive()
    }
}

fn check_page_size(ps: u32) -> Result<()> {
    if PAGE_SIZES.contains(&ps) {
        Ok(())
    } else {
        Err(
            Error::new(ErrorKind::InvalidParameter).with_message(format!(
                "page size {ps}: must be 4096, 8192, 16384 or 32768"
            )),
        )
    }
}

fn random_signature() -> [u8; 32] {
    let mut s = [0u8; 32];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = fastrand::Rng::with_seed(now ^ u64::from(std::process::id()));
    rng.fill(&mut s);
    s
}

/// The doublewrite file of `file` when `options` ask for one (`DoubleWrite::open`), with the
/// pages it rewrote when `repair` is set (logged).
fn open_doublewrite(
    fs: &Arc<dyn FileSystem>,
    file: &DbFile,
    header: &DbHeader,
    options: &DbOptions,
    repair: bool,
) -> Result<(Option<DoubleWrite>, Vec<Pgno>)> {
    if !options.doublewrite {
        return Ok((None, Vec::new()));
    }
    let (dw, repaired) = DoubleWrite::open(fs, file, &header.db_signature, repair)?;
    if !repaired.is_empty() {
        log::warn!(
            target: "ese::btree",
            "{}: {} torn page(s) rewritten from the doublewrite file: {:?}",
            file.path().display(),
            repaired.len(),
            repaired
        );
    }
    Ok((Some(dw), repaired))
}

impl Database {
    /// Creates a new database file at `path` (ESE `JetCreateDatabase`): both header pages,
    /// the tree directory (page 1) and the space page (page 2), logged through `wal`, written
    /// and synced.
    ///
    /// # Errors
    /// `InvalidParameter` for a bad page size; `FileAlreadyExists` if the file exists;
    /// `DiskFull`, `DiskIO`, `FileAccessDenied` from the file system; the WAL's errors.
    pub fn create(
        fs: &Arc<dyn FileSystem>,
        path: &Path,
        options: DbOptions,
        wal: Arc<dyn Wal>,
    ) -> Result<Database> {
        check_page_size(options.page_size)?;
        let mut header = DbHeader::new(options.page_size, random_signature());
        header.last_objid = DIR_OBJID;
        let file = DbFile::create(fs, path, options.page_size)?;
        file.grow_to(options.extension_pages.max(2))?;
        let (dw, _) = open_doublewrite(fs, &file, &header, &options, false)?;
        let db = Database::from_parts(file, header.clone(), options, wal, dw, Vec::new());
        {
            let sh = &db.shared;
            let _w = sh.writer.lock();
            let mut work = Work::new(sh);
            let ps = sh.page_size();
            let mut dir = Page::new(
                ps,
                DIR_PGNO,
                DIR_OBJID,
                PageFlags::ROOT.with(PageFlags::LEAF, true),
                0,
            );
            dir.set_dbtime(DbTime(0));
            work.put_new(dir);
            let mut space = Page::new(
                ps,
                SPACE_PGNO,
                DIR_OBJID,
                PageFlags::SPACE_TREE.with(PageFlags::ROOT, true),
                0,
            );
            space.set_ext(
                &SpaceHeader {
                    free_head: Pgno::NULL,
                    free_count: 0,
                    pgno_last: 2,
                    last_objid: DIR_OBJID.0,
                }
                .encode(),
            )?;
            work.put_new(space);
            work.commit()?;
        }
        db.shared.cache.flush_all()?;
        // The headers last: until both are durable the file is not a database.
        db.shared.cache.file.write_header_slot(&header, 0)?;
        db.shared.cache.file.write_header_slot(&header, 1)?;
        header.sequence = 1;
        *db.shared.header.lock() = header;
        Ok(db)
    }

    /// Opens an existing database file (ESE `JetAttachDatabase`). The header is read from the
    /// newest valid of its two copies. If the database was not shut down cleanly the caller
    /// runs redo ([`Database::redo`], [`Database::end_redo`]) before using it.
    ///
    /// # Errors
    /// `PageSizeMismatch` when the file's page size differs from `options`; `InvalidDatabase`,
    /// `InvalidDatabaseVersion`, `ReadVerifyFailure` when neither header copy is usable;
    /// `FileNotFound`, `FileAccessDenied` (the file is locked by another handle), `DiskIO`.
    pub fn open(
        fs: &Arc<dyn FileSystem>,
        path: &Path,
        options: DbOptions,
        wal: Arc<dyn Wal>,
    ) -> Result<Database> {
        check_page_size(options.page_size)?;
        let (file, header) = DbFile::open(fs, path, false)?;
        if header.page_size != options.page_size {
            return Err(Error::new(ErrorKind::PageSizeMismatch)
                .with_path(path)
                .with_message(format!(
                    "the file has {}-byte pages, the instance {}",
                    header.page_size, options.page_size
                )));
        }
        // Not shut down cleanly: a crash may have torn a write-back.
        let repair = header.state != DbState::CleanShutdown;
        let (dw, repaired) = open_doublewrite(fs, &file, &header, &options, repair)?;
        Ok(Database::from_parts(
            file, header, options, wal, dw, repaired,
        ))
    }

    fn from_parts(
        file: DbFile,
        header: DbHeader,
        opts: DbOptions,
        wal: Arc<dyn Wal>,
        dw: Option<DoubleWrite>,
        repaired: Vec<Pgno>,
    ) -> Database {
        let cache = BufferCache::new(file, wal, opts.cache_bytes, dw);
        let pool = PagePool::new(cache.page_size());
        let mut roots = HashMap::new();
        roots.insert(DIR_OBJID, (DIR_PGNO, TreeKind::Table));
        Database {
            shared: Arc::new(DbShared {
                cache,
                writer: Mutex::new(()),
                dbtime: AtomicU64::new(header.dbtime.0),
                header: Mutex::new(header),
                opts,
                roots: RwLock::new(roots),
                pool,
                repaired,
            }),
        }
    }

    /// The pages [`Database::open`] rewrote from the doublewrite file because their in-place
    /// copy was torn (failed its checksum or page checks) after a crash; empty after a clean
    /// shutdown, without a doublewrite file, or when no write was torn.
    pub fn pages_repaired_at_open(&self) -> &[Pgno] {
        &self.shared.repaired
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.shared.page_size() as u32
    }

    /// The longest key a tree accepts, in bytes (ESE's `JET_cbKeyMostMost` for the page
    /// size): 1000 with 4 KiB pages, 2000 with larger pages.
    pub fn max_key_len(&self) -> usize {
        crate::tree::max_key_len(self.shared.page_size())
    }

    /// The largest key plus data a node may hold, in bytes (ESE's record size limit).
    pub fn max_record_len(&self) -> usize {
        crate::tree::max_record_len(self.shared.page_size())
    }

    /// [`Database::max_record_len`] for pages of `page_size` bytes (one of [`PAGE_SIZES`]),
    /// without a database at hand.
    pub fn max_record_len_for(page_size: u32) -> usize {
        crate::tree::max_record_len(page_size as usize)
    }

    /// A copy of the current header (ESE's `DBFILEHDR`).
    pub fn header(&self) -> DbHeader {
        self.shared.header.lock().clone()
    }

    /// The database's current dbtime.
    pub fn dbtime(&self) -> DbTime {
        DbTime(self.shared.dbtime.load(Ordering::SeqCst))
    }

    /// Updates the header with `f`, stamps the current dbtime and last objid, increases the
    /// sequence and writes it to the older of the two header slots, synced (ESE
    /// `ErrUtilWriteAttachedDatabaseHeaders`). Going to `CleanShutdown` first flushes every
    /// dirty page.
    ///
    /// # Errors
    /// `DiskIO`, `DiskFull` from the write or sync; `DatabaseUnavailable` after an earlier
    /// write failure; the flush's errors.
    pub fn write_header(&self, f: impl FnOnce(&mut DbHeader)) -> Result<()> {
        let sh = &self.shared;
        let mut h = sh.header.lock().clone();
        f(&mut h);
        if h.state == DbState::CleanShutdown {
            sh.cache.flush_all()?;
        }
        sh.cache.check_failed()?;
        h.dbtime = self.dbtime();
        if let Ok(space) = self.space_header() {
            h.last_objid = ObjId(space.last_objid);
        }
        h.sequence += 1;
        let slot = (h.sequence % 2) as u32;
        sh.cache.file.write_header_slot(&h, slot)?;
        *sh.header.lock() = h;
        Ok(())
    }

    pub(crate) fn space_header(&self) -> Result<SpaceHeader> {
        let f = self.shared.cache.get(SPACE_PGNO)?;
        let p = f.latch.read();
        SpaceHeader::decode(&p)
    }

    /// Writes every dirty page (each after the log is durable up to its last change) and
    /// syncs the file, so the checkpoint reaches the end of the log.
    ///
    /// # Errors
    /// `DiskIO`, `DiskFull`; WAL flush errors; `DatabaseUnavailable` after an earlier failure.
    pub fn flush(&self) -> Result<()> {
        self.shared.cache.flush_all()
    }

    /// Writes the dirty pages whose first change since they were last written is logged
    /// before `limit` (each after the log is durable up to its last change) and syncs the
    /// file, so this database's checkpoint reaches at least `limit` (ESE's checkpoint-depth
    /// write-back: pages changed more recently stay cached to take further changes).
    ///
    /// # Errors
    /// As [`Database::flush`].
    pub fn flush_older(&self, limit: Lgpos) -> Result<()> {
        self.shared.cache.flush_older(limit)
    }

    /// [`Database::flush_older`] for at most `max_pages` pages, those whose first change is
    /// oldest: the checkpointer's paced write-back, which leaves the disk to commits between
    /// its passes. The checkpoint then moves only as far as the pages written allow.
    ///
    /// # Errors
    /// As [`Database::flush_older`].
    pub fn flush_oldest(&self, limit: Lgpos, max_pages: usize) -> Result<()> {
        self.shared.cache.flush_oldest(limit, max_pages)
    }

    /// [`Database::flush_oldest`] without its final sync: the pages are written (with a
    /// doublewrite file, staged and synced there first) but the checkpoint passes them only
    /// after a [`Database::sync`]. Lets a caller write in several steps and sync once.
    ///
    /// # Errors
    /// As [`Database::flush_older`].
    pub fn write_oldest(&self, limit: Lgpos, max_pages: usize) -> Result<()> {
        self.shared.cache.write_oldest(limit, max_pages)
    }

    /// One step of buffer scavenging (ESE's background write-back that keeps clean buffers
    /// available for evictions): when the cache is full, writes back up to 64 dirty pages
    /// among those the next evictions take (each after the log is durable up to its last
    /// change; with a doublewrite file, staged and synced there first) and leaves them cached,
    /// clean. The checkpoint passes them after the next [`Database::sync`]. Returns the pages
    /// written: 0 when the cache is not full or those pages are clean, so a background
    /// thread calls it until it returns 0, then waits to be woken
    /// ([`Database::set_scavenger`]).
    ///
    /// # Errors
    /// As [`Database::flush`].
    pub fn scavenge(&self) -> Result<usize> {
        self.shared.cache.scavenge()
    }

    /// Sets the thread an eviction wakes (`Thread::unpark`) when it finds the page it must
    /// evict dirty (and writes that page back itself, with others of the cold end): the
    /// thread that calls [`Database::scavenge`]. `None` clears it.
    pub fn set_scavenger(&self, thread: Option<std::thread::Thread>) {
        self.shared.cache.set_scavenger(thread);
    }

    /// Syncs pages already written by eviction, letting the checkpoint pass them.
    ///
    /// # Errors
    /// `DiskIO`; `DatabaseUnavailable` after an earlier failure.
    pub fn sync(&self) -> Result<()> {
        self.shared.cache.sync()
    }

    /// The checkpoint (ESE's `lgposCheckpoint` contribution of this database): redo must
    /// start at or before this position to rebuild every page not yet durable in the file.
    pub fn checkpoint(&self) -> Lgpos {
        self.shared.cache.checkpoint()
    }

    /// Counters of the buffer cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// Number of database pages the file holds now (header pages excluded); an online backup
    /// copies this many (pages allocated later are rebuilt from their logged images).
    ///
    /// # Errors
    /// `DiskIO` when the file's length cannot be read.
    pub fn file_pages(&self) -> Result<u32> {
        self.shared.cache.file.page_count()
    }

    /// A verified copy of page `pgno` for an online backup (ESE's backup read through the
    /// buffer manager): the cached page if it is cached (taken under its read latch, so a page
    /// being changed is copied whole, before or after the change), otherwise the page read from
    /// the file, checksum-verified and cached. A page that was never written (all zeros, e.g.
    /// the unused extension at the end of the file) comes back as zeros. A page whose checksum
    /// fails is read a second time, in case it was being written; if it fails again the error
    /// is returned, so a damaged page never reaches a backup unverified.
    ///
    /// # Errors
    /// `ReadVerifyFailure`, `ReadPgnoVerifyFailure` and the other page errors for a damaged
    /// page; `FileIOBeyondEOF` past the end of the file; `DiskIO`.
    pub fn backup_page(&self, pgno: Pgno) -> Result<Vec<u8>> {
        let mut last = None;
        for _ in 0..2 {
            match self.shared.cache.get(pgno) {
                Ok(f) => {
                    let page = f.latch.read();
                    return Ok(page.sealed());
                }
                Err(e) if e.kind() == ErrorKind::PageNotInitialized => {
                    return Ok(vec![0; self.shared.page_size()]);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::InternalError)))
    }

    /// The two header pages of an online backup copy of this database: the current header,
    /// stamped with the current dbtime (so a restored copy never hands out a dbtime a copied
    /// page already carries), written into both slots. `2 × page size` bytes.
    pub fn backup_header_pages(&self) -> Vec<u8> {
        let mut h = self.header();
        h.dbtime = self.dbtime();
        let ps = self.shared.page_size();
        let mut out = h.encode(0);
        out.resize(ps, 0);
        let mut second = h.encode(1);
        second.resize(ps, 0);
        out.extend_from_slice(&second);
        out
    }

    /// Verifies one page image of a database file copy (restore checks every page of a backup
    /// before using it): an all-zero page (never written) passes, any other page must carry a
    /// valid checksum for `pgno` and a sound layout.
    ///
    /// # Errors
    /// `InvalidParameter` when `image` is not `page_size` bytes or the page size is not one of
    /// [`PAGE_SIZES`]; `ReadVerifyFailure` (checksum), `ReadPgnoVerifyFailure` (a page of
    /// another place) and the page layout errors (`BadLineCount`, `PageTagCorrupted`, ...).
    pub fn verify_page_image(page_size: u32, pgno: Pgno, image: &[u8]) -> Result<()> {
        check_page_size(page_size)?;
        if image.len() != page_size as usize {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message(format!("a page image of {} bytes", image.len())));
        }
        if image.iter().all(|b| *b == 0) {
            return Ok(());
        }
        Page::decode(image, pgno).map(|_| ())
    }

    /// Drops every clean, unpinned page from the cache (so later reads go to the file).
    pub fn drop_clean_pages(&self) {
        self.shared.cache.drop_clean();
    }

    /// Creates a new, empty tree of `kind` with a fresh objid and its own root page (ESE
    /// `ErrDIRCreateDirectory`). Logged as one record.
    ///
    /// # Errors
    /// `OutOfObjectIDs` when objids run out; `OutOfDatabaseSpace`/`DiskFull` when the file
    /// cannot grow; `DatabaseUnavailable` after an earlier write failure; page read errors.
    pub fn create_tree(&self, kind: TreeKind) -> Result<Tree> {
        self.create_tree_as(kind, None)
    }

    /// [`Database::create_tree`] with objid `objid` when given (a compaction keeps every
    /// tree's objid; the last objid handed out becomes at least `objid`), else a fresh one.
    ///
    /// # Errors
    /// As [`Database::create_tree`]; `InvalidParameter` for an objid that is taken, the tree
    /// directory's or past the largest.
    pub(crate) fn create_tree_as(&self, kind: TreeKind, objid: Option<ObjId>) -> Result<Tree> {
        let sh = &self.shared;
        sh.cache.check_failed()?;
        let _w = sh.writer.lock();
        let mut work = Work::new(sh);
        let mut space = work.space()?;
        let objid = if let Some(o) = objid {
            if o.0 <= DIR_OBJID.0 || o.0 > OBJID_MAX || sh.roots.read().contains_key(&o) {
                return Err(Error::new(ErrorKind::InvalidParameter)
                    .with_message(format!("objid {o} cannot be given to a new tree")));
            }
            space.last_objid = space.last_objid.max(o.0);
            o
        } else {
            if space.last_objid >= OBJID_MAX {
                return Err(Error::new(ErrorKind::OutOfObjectIDs));
            }
            space.last_objid += 1;
            ObjId(space.last_objid)
        };
        work.set_space(space)?;
        let root = work.alloc(
            objid,
            kind.page_flags()
                .with(PageFlags::ROOT, true)
                .with(PageFlags::LEAF, true),
            0,
        )?;
        let mut data = root.to_bytes().to_vec();
        data.push(kind.code());
        crate::split::put(
            &mut work,
            DIR_PGNO,
            DIR_OBJID,
            &key_u32(objid.0),
            crate::split::Change::Insert(&data, crate::page::NodeFlags(0)),
        )?;
        work.commit()?;
        sh.roots.write().insert(objid, (root, kind));
        Ok(Tree::new(Arc::clone(sh), objid, root, kind))
    }

    /// Opens the tree `objid`.
    ///
    /// # Errors
    /// `ObjectNotFound` if no such tree exists; `DatabaseCorrupted` for a bad directory
    /// entry; page read errors.
    pub fn open_tree(&self, objid: ObjId) -> Result<Tree> {
        let sh = &self.shared;
        if let Some(&(root, kind)) = sh.roots.read().get(&objid) {
            return Ok(Tree::new(Arc::clone(sh), objid, root, kind));
        }
        let dir = Tree::new(Arc::clone(sh), DIR_OBJID, DIR_PGNO, TreeKind::Table);
        let (data, _) = dir.get(&key_u32(objid.0)).map_err(|e| {
            if e.kind() == ErrorKind::RecordNotFound {
                Error::new(ErrorKind::ObjectNotFound)
                    .with_message(format!("no tree with objid {objid}"))
            } else {
                e
            }
        })?;
        let (root, kind) = parse_dir_entry(&data)?;
        sh.roots.write().insert(objid, (root, kind));
        Ok(Tree::new(Arc::clone(sh), objid, root, kind))
    }

    /// Deletes the tree `objid` (ESE `ErrDIRDeleteDirectory` at table deletion): every page
    /// it owns goes to the free chain and its directory entry is removed, all in ONE logged
    /// pages record, so recovery sees the tree either whole or gone. Handles on the tree
    /// ([`Tree`], cursors, [`LongValues`](crate::LongValues)) fail afterwards
    /// (`ObjectNotFound` on reopen; `BadParentPageLink` from a stale handle).
    ///
    /// The record holds a small image (header and tag array, about 50 bytes) of every freed
    /// page and the work unit a copy of each page, so the cost grows with the tree's size.
    ///
    /// # Errors
    /// `InvalidParameter` for the tree directory (objid 1); `ObjectNotFound` if there is no
    /// such tree; `BadParentPageLink` / `DatabaseCorrupted` when the tree's pages do not
    /// form a tree of that objid (nothing is freed then); `DatabaseUnavailable` after an
    /// earlier write failure; WAL and page read errors.
    pub fn delete_tree(&self, objid: ObjId) -> Result<()> {
        let sh = &self.shared;
        if objid == DIR_OBJID {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("the tree directory cannot be deleted"));
        }
        sh.cache.check_failed()?;
        let _w = sh.writer.lock();
        let dir = Tree::new(Arc::clone(sh), DIR_OBJID, DIR_PGNO, TreeKind::Table);
        let key = key_u32(objid.0);
        let (data, _) = dir.get_opt(&key)?.ok_or_else(|| {
            Error::new(ErrorKind::ObjectNotFound)
                .with_message(format!("no tree with objid {objid}"))
        })?;
        let (root, _) = parse_dir_entry(&data)?;
        let mut work = Work::new(sh);
        let pgno_last = work.space()?.pgno_last;
        // Collect the pages level by level; a page seen twice or a page of another tree is
        // corruption (and bounds the walk).
        let mut seen = std::collections::HashSet::new();
        let mut level = vec![root];
        let mut all = Vec::new();
        for _ in 0..crate::split::MAX_DEPTH {
            let mut below = Vec::new();
            for &p in &level {
                if p == Pgno::NULL || p.0 > pgno_last || !seen.insert(p) {
                    return Err(Error::new(ErrorKind::DatabaseCorrupted)
                        .with_pgno(p)
                        .with_message(format!(
                            "tree {objid} reaches page {p} twice or outside the file"
                        )));
                }
                let page = work.page(p)?;
                if page.objid() != objid || page.flags().contains(PageFlags::EMPTY) {
                    return Err(Error::new(ErrorKind::BadParentPageLink)
                        .with_pgno(p)
                        .with_message(format!("page does not belong to tree {objid}")));
                }
                if !page.is_leaf() {
                    for i in 0..page.count() {
                        below.push(page.child(i).ok_or_else(|| {
                            Error::new(ErrorKind::NodeCorrupted)
                                .with_pgno(p)
                                .with_message("bad child pointer")
                        })?);
                    }
                }
            }
            all.append(&mut level);
            if below.is_empty() {
                break;
            }
            level = below;
        }
        if !level.is_empty() {
            return Err(Error::new(ErrorKind::DatabaseCorrupted)
                .with_pgno(root)
                .with_message(format!("tree {objid} deeper than the maximum")));
        }
        for p in all {
            work.free(p)?;
        }
        crate::split::put(
            &mut work,
            DIR_PGNO,
            DIR_OBJID,
            &key,
            crate::split::Change::Delete,
        )?;
        work.commit()?;
        sh.roots.write().remove(&objid);
        Ok(())
    }

    /// The number of pages tree `objid` owns (ESE's `JET_TblInfoSpaceOwned` of one tree),
    /// counted by walking it level by level under the writer lock, so the count matches one
    /// moment. Pages are read through the cache without copying them.
    ///
    /// # Errors
    /// `ObjectNotFound` if there is no such tree; `BadParentPageLink` / `DatabaseCorrupted`
    /// when its pages do not form a tree of that objid; page read errors.
    pub fn tree_pages(&self, objid: ObjId) -> Result<u64> {
        let sh = &self.shared;
        let _w = sh.writer.lock();
        let dir = Tree::new(Arc::clone(sh), DIR_OBJID, DIR_PGNO, TreeKind::Table);
        let (data, _) = dir.get_opt(&key_u32(objid.0))?.ok_or_else(|| {
            Error::new(ErrorKind::ObjectNotFound)
                .with_message(format!("no tree with objid {objid}"))
        })?;
        let (root, _) = parse_dir_entry(&data)?;
        let mut level = vec![root];
        let mut seen = std::collections::HashSet::new();
        let mut count = 0u64;
        for _ in 0..crate::split::MAX_DEPTH {
            let mut below = Vec::new();
            for &p in &level {
                if p == Pgno::NULL || !seen.insert(p) {
                    return Err(Error::new(ErrorKind::DatabaseCorrupted)
                        .with_pgno(p)
                        .with_message(format!("tree {objid} reaches page {p} twice")));
                }
                let frame = sh.cache.get(p)?;
                let page = frame.latch.read();
                if page.objid() != objid || page.flags().contains(PageFlags::EMPTY) {
                    return Err(Error::new(ErrorKind::BadParentPageLink)
                        .with_pgno(p)
                        .with_message(format!("page does not belong to tree {objid}")));
                }
                if !page.is_leaf() {
                    for i in 0..page.count() {
                        below.push(page.child(i).ok_or_else(|| {
                            Error::new(ErrorKind::NodeCorrupted)
                                .with_pgno(p)
                                .with_message("bad child pointer")
                        })?);
                    }
                }
                count += 1;
            }
            if below.is_empty() {
                return Ok(count);
            }
            level = below;
        }
        Err(Error::new(ErrorKind::DatabaseCorrupted)
            .with_pgno(root)
            .with_message(format!("tree {objid} deeper than the maximum")))
    }

    /// Every tree of the database (objid, root page, kind), in objid order.
    ///
    /// # Errors
    /// Page read errors; `DatabaseCorrupted` for a bad directory entry.
    pub fn trees(&self) -> Result<Vec<(ObjId, Pgno, TreeKind)>> {
        let dir = Tree::new(
            Arc::clone(&self.shared),
            DIR_OBJID,
            DIR_PGNO,
            TreeKind::Table,
        );
        let mut out = Vec::new();
        let mut c = dir.cursor();
        let mut more = c.move_first()?;
        while more {
            let k: [u8; 4] = c.key().try_into().map_err(|_| {
                Error::new(ErrorKind::DatabaseCorrupted).with_message("bad tree directory key")
            })?;
            let (root, kind) = parse_dir_entry(c.data())?;
            out.push((ObjId(key_to_u32(k)), root, kind));
            more = c.move_next()?;
        }
        Ok(out)
    }
}

/// Big-endian encoding of a number inside a key: keys compare bytewise, so numbers in keys
/// are big-endian (ESE's key normalisation does the same).
#[expect(
    clippy::big_endian_bytes,
    reason = "keys compare bytewise; numbers in keys are big-endian"
)]
pub(crate) fn key_u32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Inverse of [`key_u32`].
#[expect(
    clippy::big_endian_bytes,
    reason = "keys compare bytewise; numbers in keys are big-endian"
)]
pub(crate) fn key_to_u32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// Big-endian encoding of a u64 inside a key (see [`key_u32`]).
#[expect(
    clippy::big_endian_bytes,
    reason = "keys compare bytewise; numbers in keys are big-endian"
)]
pub(crate) fn key_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub(crate) fn parse_dir_entry(data: &[u8]) -> Result<(Pgno, TreeKind)> {
    let bad = || Error::new(ErrorKind::DatabaseCorrupted).with_message("bad tree directory entry");
    let root: [u8; 4] = data
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(bad)?;
    let kind = data
        .get(4)
        .copied()
        .and_then(TreeKind::from_code)
        .ok_or_else(bad)?;
    Ok((Pgno::from_bytes(root), kind))
}
