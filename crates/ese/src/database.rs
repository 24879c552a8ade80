//! Databases: create, attach, detach, open and close (ESE's database family).

use std::path::Path;

use ese_core::{Error, ErrorKind, Result};

use crate::engine::{AttachedDb, Engine};
use crate::grbit::{AttachDatabaseGrbit, CreateDatabaseGrbit};
use crate::session::Session;

/// A database opened by a session (ESE's `JET_DBID`): valid for that session until
/// [`Session::close_database`], detach, end session or term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbId(pub u32);

impl Session {
    /// Creates a database file, attaches it to the instance and opens it for this session
    /// (JetCreateDatabase). The file is made durable and its attach logged before this returns,
    /// so recovery knows it.
    ///
    /// # Errors
    /// `DatabaseDuplicate` (-1201) if the file exists (unless `OVERWRITE_EXISTING`);
    /// `DatabaseInUse` (-1202) when overwriting a database that is attached;
    /// `TooManyAttachedDatabases` (-1805) with 6 databases attached; `InvalidPath` for a
    /// non-UTF-8 path; I/O errors (`DiskFull`, `FileAccessDenied`, `DiskIO`); the session
    /// and instance errors (`InvalidSesid`, `SessionSharingViolation`, `NotInitialized`, ...).
    pub fn create_database(
        &self,
        path: impl AsRef<Path>,
        grbit: CreateDatabaseGrbit,
    ) -> Result<DbId> {
        let path = path.as_ref();
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        if engine.find(path).is_some() {
            return Err(Error::new(ErrorKind::DatabaseInUse).with_path(path));
        }
        if engine.fs.exists(path)? {
            if !grbit.contains(CreateDatabaseGrbit::OVERWRITE_EXISTING) {
                return Err(Error::new(ErrorKind::DatabaseDuplicate).with_path(path));
            }
            engine.fs.remove_file(path)?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            engine.fs.create_dir_all(parent)?;
        }
        let d = engine
            .create_db(path, |d| crate::catalog::create(d).map(|_| ()))
            .inspect_err(|e| self.check_fatal(e))?;
        Ok(self.register_open(&d))
    }

    /// Attaches a database file to the instance (JetAttachDatabase); it can then be opened by
    /// any session. Attaching an attached database succeeds and does nothing (ESE's
    /// `JET_wrnDatabaseAttached`).
    ///
    /// # Errors
    /// `DatabaseDirtyShutdown` (-550) if the database was not shut down cleanly (run recovery
    /// with its logs first); `DatabaseSharingViolation` (-1215) if another instance or process
    /// has it attached; `PageSizeMismatch` (-1213); `TooManyAttachedDatabases` (-1805);
    /// `FileNotFound` (-1811); `InvalidDatabase` / `ReadVerifyFailure` for a file that is not a
    /// database; the session and instance errors.
    pub fn attach_database(
        &self,
        path: impl AsRef<Path>,
        grbit: AttachDatabaseGrbit,
    ) -> Result<()> {
        let _ = grbit;
        let path = path.as_ref();
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        if engine.find(path).is_some() {
            return Ok(());
        }
        engine
            .attach_db(path)
            .inspect_err(|e| self.check_fatal(e))?;
        Ok(())
    }

    /// Detaches a database (JetDetachDatabase): version cleanup runs first (so the version
    /// store keeps nothing of the database, and records whose delete was committed are
    /// removed), then its pages are flushed, the detach logged and the header written clean,
    /// so the file can be copied, compacted or attached elsewhere.
    ///
    /// # Errors
    /// `DatabaseNotFound` (-1203) if it is not attached; `DatabaseInUse` (-1202) while a
    /// session has it open, or while an open transaction (of any session) still needs
    /// versions of its records: a snapshot older than a committed change to it; I/O errors;
    /// the session and instance errors (stop service is exempt).
    pub fn detach_database(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let _call = self.enter(true)?;
        let engine = self.inst.engine()?;
        let dbid = engine
            .find(path)
            .ok_or_else(|| Error::new(ErrorKind::DatabaseNotFound).with_path(path))?
            .dbid;
        let in_use = self
            .inst
            .session_states
            .lock()
            .values()
            .any(|s| s.state.lock().open_dbs.contains_key(&dbid));
        if in_use {
            return Err(Error::new(ErrorKind::DatabaseInUse)
                .with_path(path)
                .with_message("a session has the database open"));
        }
        engine.detach(dbid).inspect_err(|e| self.check_fatal(e))
    }

    /// Makes a compacted copy of a database file (JetCompact; `esentutl /d`): every B+tree
    /// (tables, indexes, long values, the catalog) is rebuilt in key order in the new file
    /// `dest`, under its objid, so its pages are full and in order; rows deleted but not yet
    /// cleaned up are left out. The source is only read. The copy is written without logging,
    /// flushed and synced, then its header is written clean: it can be attached (to this
    /// instance or another) or take the source's place once this returns. Returns what was
    /// copied and the page counts before and after (`source_pages`, `dest_pages`).
    ///
    /// The source must not be attached to this instance (detach it first) and must have been
    /// shut down cleanly. The copy has the instance's page size and a new database signature
    /// (backups of the source do not apply to it). Corresponds to `JetCompact` without a
    /// status callback or grbits (`JET_bitCompactStats`, `JET_bitCompactRepair` are not
    /// offered).
    ///
    /// # Errors
    /// `DatabaseInUse` (-1202) if `src` or `dest` is attached to this instance;
    /// `DatabaseDuplicate` (-1201) if `dest` exists; `DatabaseDirtyShutdown` (-550) if the
    /// source was not shut down cleanly; `DatabaseSharingViolation` (-1215) if another
    /// instance or process has it attached; `PageSizeMismatch` (-1213); `FileNotFound`
    /// (-1811); `InvalidDatabase`, `ReadVerifyFailure` and the other page errors for a damaged
    /// source (nothing is copied then: the incomplete copy is removed); `DiskFull`, `DiskIO`
    /// writing the copy; the session and instance errors (`InvalidSesid`, `NotInitialized`,
    /// `TermInProgress`, `ClientRequestToStopJetService`, ...).
    pub fn compact_database(
        &self,
        src: impl AsRef<Path>,
        dest: impl AsRef<Path>,
    ) -> Result<ese_btree::CompactStats> {
        let (src, dest) = (src.as_ref(), dest.as_ref());
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        for p in [src, dest] {
            if engine.find(p).is_some() {
                return Err(Error::new(ErrorKind::DatabaseInUse)
                    .with_path(p)
                    .with_message("the database is attached to this instance"));
            }
        }
        if engine.fs.exists(dest)? {
            return Err(Error::new(ErrorKind::DatabaseDuplicate).with_path(dest));
        }
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            engine.fs.create_dir_all(parent)?;
        }
        engine.compact_db(src, dest)
    }

    /// Opens an attached database for this session (JetOpenDatabase).
    ///
    /// # Errors
    /// `DatabaseNotFound` (-1203) if it is not attached; the session and instance errors.
    pub fn open_database(&self, path: impl AsRef<Path>) -> Result<DbId> {
        let path = path.as_ref();
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = engine
            .find(path)
            .ok_or_else(|| Error::new(ErrorKind::DatabaseNotFound).with_path(path))?;
        Ok(self.register_open(&d))
    }

    /// Closes a database this session opened (JetCloseDatabase).
    ///
    /// # Errors
    /// `InvalidDatabaseId` (-1010) if this session has not opened it; the session and instance
    /// errors (stop service is exempt).
    pub fn close_database(&self, db: DbId) -> Result<()> {
        let _call = self.enter(true)?;
        let mut st = self.shared.state.lock();
        match st.open_dbs.get_mut(&db.0) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                st.open_dbs.remove(&db.0);
            }
            None => return Err(Error::new(ErrorKind::InvalidDatabaseId)),
        }
        Ok(())
    }

    /// Checks the physical integrity of an open database (JetDBUtilities with
    /// `JET_DBUTIL_CHECKSUM`, eseutil's `/g` integrity check): every page of every tree is read
    /// and its checksum verified, key order, page links and levels are checked across each
    /// tree, and every page is owned exactly once (a tree, the free chain or the unused tail).
    /// Pages still in the cache are checked as cached. Run it while no transaction changes the
    /// database for a report that matches one moment.
    ///
    /// # Errors
    /// `InvalidDatabaseId` (-1010) if this session has not opened `db`; the first corruption
    /// found, with the page number in the message: `ReadVerifyFailure` (-1018) for a bad
    /// checksum, `BadPageLink` / `BadParentPageLink` for broken links, `DatabaseCorrupted` /
    /// `NodeCorrupted` for bad order or structure, `SPOwnExtCorrupted` / `SPAvailExtCorrupted` /
    /// `DatabaseLeakInSpace` for space that is owned twice or by nobody; I/O errors; the
    /// session and instance errors.
    pub fn check_database(&self, db: DbId) -> Result<ese_btree::IntegrityReport> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        d.db.check_integrity()
    }

    /// The page cache counters of an open database: hits, misses, evictions, pages read and
    /// written since it was attached, and the pages cached and dirty now (ESE's "Database
    /// Cache" performance counters, `% Hit` among them; ESE has no JET function for them).
    ///
    /// # Errors
    /// `InvalidDatabaseId` (-1010) if this session has not opened `db`; the session and
    /// instance errors.
    pub fn database_cache_stats(&self, db: DbId) -> Result<ese_btree::CacheStats> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        Ok(d.db.cache_stats())
    }

    fn register_open(&self, d: &AttachedDb) -> DbId {
        *self.shared.state.lock().open_dbs.entry(d.dbid).or_insert(0) += 1;
        DbId(d.dbid)
    }

    /// The attached database behind an id this session opened.
    pub(crate) fn opened(&self, engine: &Engine, db: DbId) -> Result<std::sync::Arc<AttachedDb>> {
        if !self.shared.state.lock().open_dbs.contains_key(&db.0) {
            return Err(Error::new(ErrorKind::InvalidDatabaseId));
        }
        engine.db(db.0)
    }

    /// Makes the instance unavailable after a failed write or sync.
    pub(crate) fn check_fatal(&self, e: &Error) {
        if crate::session::is_fatal_io(e) {
            self.inst.fatal(e);
        }
    }
}
