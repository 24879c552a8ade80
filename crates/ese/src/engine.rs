//! The running part of an instance: the log, the attached databases and the version store,
//! with soft recovery at start, attach/detach, and the clean shutdown.
//!
//! # Upper-layer log records (families 16 and up of the log envelope, see `ese-txn`)
//! | family | record | body |
//! |---|---|---|
//! | 16 | attach (ESE's `lrtypAttachDB`) | dbid u32, path length u16, path (UTF-8) |
//! | 17 | detach (`lrtypDetachDB`) | dbid u32 |
//! | 18 | term (`lrtypTerm2`): a clean shutdown | nothing |
//! | 19 | backup (`lrtypFullBackup` / `lrtypIncBackup`): the end position of an online backup | see `backup.rs` |
//!
//! The checkpoint's database list (ESE's attach info) is: count u16, then per database
//! dbid u32, path length u16, path (UTF-8).

#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_btree::{CompactStats, Database, DbOptions, DbState, MemWal, Wal, record_dbid};
use ese_core::fs::FileSystem;
use ese_core::{Error, ErrorKind, Lgpos, ObjId, Result, TrxId};
use ese_log::{Log, LogConfig, LogReader};
use ese_txn::{
    Envelope, FAMILY_PAGE, FamilyWal, LogWal, RecoveryUndo, TreeStore, TxnRecord, VersionStore,
};
use parking_lot::RwLock;

use crate::instance::Params;

const FAMILY_ATTACH: u8 = 16;
const FAMILY_DETACH: u8 = 17;
const FAMILY_TERM: u8 = 18;
/// Family of the record that marks the end position of an online backup.
pub(crate) const FAMILY_BACKUP: u8 = 19;

/// Most user databases attached at once (ESE's 6 user databases per instance).
pub(crate) const MAX_DATABASES: u32 = 6;

/// Fewest and most pages one checkpointer pass writes back per database (2 MiB and 32 MiB of
/// 8 KiB pages; with the default 50 ms interval 40 MiB/s and 640 MiB/s). See
/// [`Engine::checkpoint_pass`].
const CHECKPOINT_PASS_PAGES_MIN: usize = 256;
const CHECKPOINT_PASS_PAGES_MAX: usize = 4096;

/// Rate of waited log flushes (durable commits, or groups of them sharing a sync) from which
/// the commit load counts as busy and write-back is deferred (see [`Engine::checkpoint_pass`]):
/// 320 per second, 16 per default checkpointer interval.
const BUSY_FLUSHES_PER_SECOND: u64 = 320;

/// Longest the buffer scavenger sleeps between wake-ups (it is woken when an eviction finds a
/// dirty page; the timeout only bounds how long a missed wake-up lasts).
const SCAVENGER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The id of a tree across databases: dbid in the top byte, objid below (ESE's objids stay
/// below 2^24 here).
pub(crate) fn tree_id(dbid: u32, objid: ObjId) -> ObjId {
    ObjId((dbid << 24) | (objid.0 & 0x00FF_FFFF))
}

/// An attached database.
pub(crate) struct AttachedDb {
    pub(crate) dbid: u32,
    pub(crate) path: PathBuf,
    pub(crate) db: Database,
}

/// What recovery did, for the log and for callers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Log records read.
    pub records: u64,
    /// Page records that changed a page.
    pub pages_redone: u64,
    /// Transactions rolled back.
    pub transactions_undone: u64,
    /// Operations rolled back.
    pub operations_undone: u64,
    /// Databases recovered.
    pub databases: u32,
    /// First and last generation replayed.
    pub generations: (u32, u32),
}

/// What hard recovery (restore) replaces in soft recovery: where redo starts and which
/// databases it replays into.
pub(crate) struct HardRecovery {
    /// Where redo starts: the checkpoint of the full backup (instead of the checkpoint file).
    pub(crate) start: Lgpos,
    /// The databases attached at `start`: dbid and the file to replay into.
    pub(crate) dbs: Vec<(u32, PathBuf)>,
    /// Database paths named by attach records, mapped to the file to replay into (the restore
    /// map); a path not listed is replayed in place, as soft recovery does, or skipped with its
    /// operations when the file does not exist (a database that is not in the backup).
    pub(crate) remap: Vec<(PathBuf, PathBuf)>,
}

impl HardRecovery {
    fn target(&self, path: PathBuf) -> PathBuf {
        self.remap
            .iter()
            .find(|(from, _)| *from == path)
            .map_or(path, |(_, to)| to.clone())
    }
}

pub(crate) struct Engine {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) log: Arc<Log>,
    raw: Arc<dyn Wal>,
    pub(crate) store: Arc<TreeStore>,
    pub(crate) vs: Arc<VersionStore>,
    pub(crate) dbs: RwLock<BTreeMap<u32, Arc<AttachedDb>>>,
    pub(crate) params: Params,
    pub(crate) recovery: RecoveryStats,
    /// Held while a checkpoint is computed and written, and for the whole of an attach or a
    /// detach, so a checkpoint never lists a different set of databases than the log
    /// position it names implies.
    ckpt_lock: parking_lot::Mutex<()>,
    /// Held by a write-back over every attached database (the checkpointer's pass, a full
    /// flush) for as long as it holds them, and by detach while it removes a database: once
    /// detach returns, no write-back holds the database, so its file is closed (as ESE's
    /// detach closes it) unless a caller still uses it. Detach takes it inside the checkpoint
    /// lock; a write-back releases it before it takes the checkpoint lock to write the
    /// checkpoint, so the two are never waited for in the other order.
    writeback: parking_lot::Mutex<()>,
    /// Background threads (checkpointer, version cleanup), stopped and joined at shutdown so
    /// nothing holds the log or the databases once term returns.
    background: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
    stopping: std::sync::atomic::AtomicBool,
    /// The buffer scavenger's thread ([`Engine::spawn_scavenger`]), which every database
    /// attached wakes when an eviction finds a dirty page.
    scavenger: parking_lot::Mutex<Option<std::thread::Thread>>,
    /// While an online backup runs, the checkpoint never passes this position, so neither
    /// circular logging nor truncation deletes a generation the backup still has to copy.
    backup_pin: parking_lot::Mutex<Option<Lgpos>>,
    /// The checkpointer's write-back pace: pages per pass and per database, and the log
    /// bytes behind the checkpoint at the previous pass (see [`Engine::checkpoint_pass`]).
    pace: parking_lot::Mutex<(usize, u64)>,
    /// Next implicit key of each table without a primary index, shared by its cursors.
    seqs: parking_lot::Mutex<std::collections::HashMap<ObjId, Arc<std::sync::atomic::AtomicU64>>>,
    /// Next auto-increment value of each table with an auto-increment column, shared by its
    /// cursors (derived from the table's largest value at first use; see `docs/design.md`).
    autoincs: parking_lot::Mutex<std::collections::HashMap<ObjId, AutoincCounter>>,
    /// Open cursors per table (JetDeleteTable refuses a table in use).
    pub(crate) cursors: Arc<crate::ddl::OpenCursors>,
    /// Trees of committed table and index deletions, freed once nobody can reach them.
    pub(crate) deferred: parking_lot::Mutex<Vec<crate::ddl::DeferredFree>>,
    /// Catalog writes so far (every DDL that inserts, replaces or deletes a catalog record
    /// adds one before writing): a cursor that checked its table's definition in a transaction
    /// needs no second look while this and the transaction's undo count stay the same (see
    /// `Table::sync_def`).
    catalog_epoch: std::sync::atomic::AtomicU64,
}

/// The next auto-increment value of a table, taken and advanced under its mutex.
pub(crate) type AutoincCounter = Arc<parking_lot::Mutex<i64>>;

fn db_options(params: &Params, dbid: u32) -> DbOptions {
    DbOptions::new()
        .page_size(params.page_size)
        .cache_bytes(params.cache_bytes)
        .dbid(dbid)
}

/// Opens the database file at `path`, which must have been shut down cleanly (attach,
/// compaction).
///
/// # Errors
/// `DatabaseSharingViolation` when another instance or process has the file open;
/// `DatabaseDirtyShutdown` when it needs recovery; the other errors of `Database::open`.
fn open_clean(
    fs: &Arc<dyn FileSystem>,
    path: &Path,
    opts: DbOptions,
    wal: Arc<dyn Wal>,
) -> Result<Database> {
    let db = Database::open(fs, path, opts, wal).map_err(|e| {
        if e.kind() == ErrorKind::FileAccessDenied {
            Error::new(ErrorKind::DatabaseSharingViolation)
                .with_path(path)
                .with_message("another instance or process has the database attached")
        } else {
            e
        }
    })?;
    if db.header().state != DbState::CleanShutdown {
        return Err(Error::new(ErrorKind::DatabaseDirtyShutdown)
            .with_path(path)
            .with_message("run recovery with its logs first"));
    }
    Ok(db)
}

fn encode_attach(dbid: u32, path: &Path) -> Result<Vec<u8>> {
    let p = path_str(path)?;
    let mut v = Vec::with_capacity(7 + p.len());
    v.push(FAMILY_ATTACH);
    v.extend_from_slice(&dbid.to_le_bytes());
    v.extend_from_slice(&(p.len() as u16).to_le_bytes());
    v.extend_from_slice(p.as_bytes());
    Ok(v)
}

fn path_str(path: &Path) -> Result<&str> {
    let s = path.to_str().ok_or_else(|| {
        Error::new(ErrorKind::InvalidPath).with_message("database paths must be UTF-8")
    })?;
    if s.len() > 1024 {
        return Err(
            Error::new(ErrorKind::InvalidPath).with_message("database path over 1024 bytes")
        );
    }
    Ok(s)
}

fn corrupt(what: &str) -> Error {
    Error::new(ErrorKind::LogCorrupted).with_message(what.to_owned())
}

/// Parses `dbid u32, len u16, path` at the start of `b`; returns it and the rest.
fn parse_db_entry(b: &[u8]) -> Result<((u32, PathBuf), &[u8])> {
    let (id, rest) = b
        .split_at_checked(4)
        .ok_or_else(|| corrupt("truncated database entry"))?;
    let (len, rest) = rest
        .split_at_checked(2)
        .ok_or_else(|| corrupt("truncated database entry"))?;
    let dbid = u32::from_le_bytes(id.try_into().map_err(|_| corrupt("dbid"))?);
    let len = usize::from(u16::from_le_bytes(
        len.try_into().map_err(|_| corrupt("length"))?,
    ));
    let (p, rest) = rest
        .split_at_checked(len)
        .ok_or_else(|| corrupt("truncated path"))?;
    let path = std::str::from_utf8(p).map_err(|_| corrupt("path is not UTF-8"))?;
    if dbid == 0 || dbid > MAX_DATABASES {
        return Err(corrupt("dbid out of range"));
    }
    Ok(((dbid, PathBuf::from(path)), rest))
}

fn encode_db_list(dbs: &BTreeMap<u32, Arc<AttachedDb>>) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.extend_from_slice(&(dbs.len() as u16).to_le_bytes());
    for d in dbs.values() {
        let p = path_str(&d.path)?;
        v.extend_from_slice(&d.dbid.to_le_bytes());
        v.extend_from_slice(&(p.len() as u16).to_le_bytes());
        v.extend_from_slice(p.as_bytes());
    }
    Ok(v)
}

fn decode_db_list(b: &[u8]) -> Result<Vec<(u32, PathBuf)>> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let (n, mut rest) = b
        .split_at_checked(2)
        .ok_or_else(|| corrupt("database list"))?;
    let n = u16::from_le_bytes(n.try_into().map_err(|_| corrupt("database list"))?);
    let mut out = Vec::new();
    for _ in 0..n {
        let (e, r) = parse_db_entry(rest)?;
        out.push(e);
        rest = r;
    }
    Ok(out)
}

impl Engine {
    /// Runs `write`, a DDL's write of catalog records, with the catalog epoch moved just
    /// before and just after it (whether it succeeds or not). An epoch read before a look-up
    /// of the catalog and still the same later therefore proves that no catalog write took
    /// place in between, not even one that was under way when the look-up ran (see
    /// [`Table::sync_def`](crate::Table)).
    ///
    /// # Errors
    /// What `write` returns.
    pub(crate) fn catalog_write<R>(&self, write: impl FnOnce() -> Result<R>) -> Result<R> {
        self.catalog_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let r = write();
        self.catalog_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        r
    }

    /// The catalog epoch: it moves before and after every catalog write (see
    /// [`Engine::catalog_write`]).
    pub(crate) fn catalog_epoch(&self) -> u64 {
        self.catalog_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Opens the log and runs soft recovery: redo from the checkpoint, re-attaching the
    /// databases the log names, then undo of every unfinished transaction, then a clean
    /// detach of every recovered database and a new checkpoint. `progress` is called with
    /// the number of records replayed so far.
    pub(crate) fn start(
        fs: Arc<dyn FileSystem>,
        params: Params,
        progress: &dyn Fn(u64),
    ) -> Result<Engine> {
        Self::recover(fs, params, &mut |records, _| progress(records), None)
    }

    /// Soft recovery (`hard` is `None`), or hard recovery for a restore: redo starts at
    /// `hard.start` with `hard.dbs` instead of the checkpoint file, and attach records are
    /// redirected through `hard.remap`; everything else (redo, undo, the clean detach) is
    /// the same code. `progress` gets the records replayed so far and the position reached.
    pub(crate) fn recover(
        fs: Arc<dyn FileSystem>,
        params: Params,
        progress: &mut dyn FnMut(u64, Lgpos),
        hard: Option<&HardRecovery>,
    ) -> Result<Engine> {
        fs.create_dir_all(&params.log_path)?;
        let cfg = LogConfig::new(&params.log_path)
            .base_name(params.base_name.clone())
            .file_size_kib(params.log_file_size_kib)
            .page_size(params.page_size)
            .circular(params.circular_log)
            .lazy_flush_ms(params.lazy_flush_ms);
        let log = Arc::new(Log::open(Arc::clone(&fs), cfg)?);
        let raw: Arc<dyn Wal> = Arc::new(LogWal(Arc::clone(&log)));
        let store = Arc::new(TreeStore::new(Arc::clone(&raw)));
        let (start, listed) = match (hard, log.checkpoint()) {
            (Some(h), _) => (h.start, h.dbs.clone()),
            (None, Ok(c)) => (c.lgpos, decode_db_list(&c.db_list)?),
            (None, Err(e)) if e.kind() == ErrorKind::CheckpointFileNotFound => {
                (Lgpos::MIN, Vec::new())
            }
            (None, Err(e)) => return Err(e),
        };
        log::info!(target: "ese::recovery", "recovery starts at {start}, {} database(s) attached at the checkpoint", listed.len());
        let mut stats = RecoveryStats::default();
        let mut dbs: BTreeMap<u32, AttachedDb> = BTreeMap::new();
        for (dbid, path) in listed {
            let db = Self::open_for_redo(&fs, &params, &raw, dbid, &path)?;
            dbs.insert(dbid, db);
        }
        let mut undo = RecoveryUndo::new();
        // Hard recovery: databases named by the log that are neither restored nor present.
        let mut skipped: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
        let mut reader =
            LogReader::open(Arc::clone(&fs), &params.log_path, &params.base_name, start)?;
        stats.generations = reader.generations();
        while let Some(rec) = reader.next_record()? {
            stats.records += 1;
            if stats.records % 4096 == 0 {
                progress(stats.records, rec.lgpos);
            }
            let env = Envelope::parse(&rec.payload)?;
            match env {
                Envelope::Page(p) => {
                    let dbid = record_dbid(p)?;
                    if let Some(d) = dbs.get(&dbid)
                        && d.db.redo(rec.lgpos, p)?
                    {
                        stats.pages_redone += 1;
                    }
                }
                Envelope::Upper(FAMILY_ATTACH, body) => {
                    let ((dbid, path), _) = parse_db_entry(body)?;
                    let path = match hard {
                        Some(h) => h.target(path),
                        None => path,
                    };
                    if hard.is_some() && !dbs.contains_key(&dbid) && !fs.exists(&path)? {
                        log::warn!(target: "ese::recovery", "database {} (dbid {dbid}) is not in the backup and not present: its operations are skipped", path.display());
                        skipped.insert(dbid);
                    } else if let std::collections::btree_map::Entry::Vacant(slot) = dbs.entry(dbid)
                    {
                        slot.insert(Self::open_for_redo(&fs, &params, &raw, dbid, &path)?);
                    }
                }
                Envelope::Upper(FAMILY_DETACH, body) => {
                    let id = body.get(..4).ok_or_else(|| corrupt("detach record"))?;
                    let dbid =
                        u32::from_le_bytes(id.try_into().map_err(|_| corrupt("detach record"))?);
                    skipped.remove(&dbid);
                    if let Some(d) = dbs.remove(&dbid) {
                        // The detach made every page durable before it was logged; finish the
                        // header in case the crash came between the two.
                        d.db.end_redo()?;
                        d.db.flush()?;
                        d.db.write_header(|h| {
                            h.state = DbState::CleanShutdown;
                            h.consistent_lgpos = rec.lgpos;
                        })?;
                    }
                }
                Envelope::Upper(..) | Envelope::Txn(_) => {}
            }
            if let Some(t) = env.txn_record()? {
                let skip =
                    matches!(&t, TxnRecord::Op { tree, .. } if skipped.contains(&(tree.0 >> 24)));
                if !skip {
                    undo.observe(t);
                }
            }
        }
        progress(stats.records, log.last_lgpos());
        for d in dbs.values() {
            d.db.end_redo()?;
            for (objid, _, _) in d.db.trees()? {
                store.register(tree_id(d.dbid, objid), d.db.open_tree(objid)?);
            }
        }
        let first_trx = TrxId(
            (u64::from(log.current_generation()) << 32).max(undo.max_trx().map_or(1, |t| t.0 + 1)),
        );
        let vs = Arc::new(VersionStore::new(
            Arc::clone(&store) as Arc<dyn ese_txn::TxnStore>,
            params.version_store_bytes,
            first_trx,
        ));
        let unfinished = undo.unfinished();
        let u = undo.undo_all(store.as_ref())?;
        stats.transactions_undone = u.transactions;
        stats.operations_undone = u.operations;
        stats.databases = dbs.len() as u32;
        log.flush_all()?;
        // Every recovered database is detached clean, as ESE does at the end of recovery.
        let engine = Engine {
            fs,
            log,
            raw,
            store,
            vs,
            dbs: RwLock::new(BTreeMap::new()),
            params,
            recovery: stats,
            seqs: parking_lot::Mutex::new(std::collections::HashMap::new()),
            autoincs: parking_lot::Mutex::new(std::collections::HashMap::new()),
            cursors: Arc::default(),
            deferred: parking_lot::Mutex::new(Vec::new()),
            backup_pin: parking_lot::Mutex::new(None),
            pace: parking_lot::Mutex::new((CHECKPOINT_PASS_PAGES_MIN, 0)),
            ckpt_lock: parking_lot::Mutex::new(()),
            writeback: parking_lot::Mutex::new(()),
            background: parking_lot::Mutex::new(Vec::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            scavenger: parking_lot::Mutex::new(None),
            catalog_epoch: std::sync::atomic::AtomicU64::new(0),
        };
        for (_, d) in dbs {
            engine.detach_db(&d)?;
        }
        engine.write_checkpoint()?;
        log::info!(
            target: "ese::recovery",
            "recovery done: {} records from generations {}..={}, {} page changes redone, {} of {} unfinished transactions rolled back ({} operations), {} database(s)",
            stats.records, stats.generations.0, stats.generations.1, stats.pages_redone,
            stats.transactions_undone, unfinished, stats.operations_undone, stats.databases
        );
        Ok(engine)
    }

    fn open_for_redo(
        fs: &Arc<dyn FileSystem>,
        params: &Params,
        raw: &Arc<dyn Wal>,
        dbid: u32,
        path: &Path,
    ) -> Result<AttachedDb> {
        let wal: Arc<dyn Wal> = Arc::new(FamilyWal::new(Arc::clone(raw), FAMILY_PAGE));
        let db = Database::open(fs, path, db_options(params, dbid), wal).map_err(|e| {
            if e.kind() == ErrorKind::FileNotFound {
                Error::new(ErrorKind::AttachedDatabaseMismatch)
                    .with_path(path)
                    .with_message("a database the log names is missing")
            } else {
                e
            }
        })?;
        Ok(AttachedDb {
            dbid,
            path: path.to_path_buf(),
            db,
        })
    }

    fn page_wal(&self) -> Arc<dyn Wal> {
        Arc::new(FamilyWal::new(Arc::clone(&self.raw), FAMILY_PAGE))
    }

    fn free_dbid(&self) -> Result<u32> {
        let dbs = self.dbs.read();
        (1..=MAX_DATABASES)
            .find(|id| !dbs.contains_key(id))
            .ok_or_else(|| Error::new(ErrorKind::TooManyAttachedDatabases))
    }

    /// The attached database at `path`, if any.
    pub(crate) fn find(&self, path: &Path) -> Option<Arc<AttachedDb>> {
        self.dbs.read().values().find(|d| d.path == path).cloned()
    }

    /// The attached database `dbid`.
    pub(crate) fn db(&self, dbid: u32) -> Result<Arc<AttachedDb>> {
        self.dbs.read().get(&dbid).cloned().ok_or_else(|| {
            Error::new(ErrorKind::InvalidDatabaseId).with_message(format!("dbid {dbid}"))
        })
    }

    /// Creates a database file and attaches it; `init` runs inside the attach (e.g. creating
    /// the catalog tree).
    pub(crate) fn create_db(
        &self,
        path: &Path,
        init: impl FnOnce(&AttachedDb) -> Result<()>,
    ) -> Result<Arc<AttachedDb>> {
        let dbid = self.free_dbid()?;
        let db = Database::create(
            &self.fs,
            path,
            db_options(&self.params, dbid),
            self.page_wal(),
        )?;
        let d = AttachedDb {
            dbid,
            path: path.to_path_buf(),
            db,
        };
        self.attach_common(d, Some(init))
    }

    /// Attaches an existing database file.
    pub(crate) fn attach_db(&self, path: &Path) -> Result<Arc<AttachedDb>> {
        let dbid = self.free_dbid()?;
        let db = open_clean(
            &self.fs,
            path,
            db_options(&self.params, dbid),
            self.page_wal(),
        )?;
        let d = AttachedDb {
            dbid,
            path: path.to_path_buf(),
            db,
        };
        self.attach_common(
            d,
            Some(|d: &AttachedDb| crate::ddl::sweep_unnamed_trees(d).map(drop)),
        )
    }

    /// Copies the database file `src`, which is not attached, into a new compacted file
    /// `dest` (JetCompact; `Database::compact_into`). The source is opened for this alone,
    /// read only, with half the cache budget; the copy gets the other half.
    pub(crate) fn compact_db(&self, src: &Path, dest: &Path) -> Result<CompactStats> {
        let opts = db_options(&self.params, 0).cache_bytes(self.params.cache_bytes / 2);
        let db = open_clean(
            &self.fs,
            src,
            opts.clone().doublewrite(false),
            Arc::new(MemWal::discarding()),
        )?;
        db.compact_into(&self.fs, dest, opts).inspect_err(|_| {
            // An incomplete copy has no valid header; it is removed, with its doublewrite
            // file, so the name can be used again.
            for p in [dest.to_path_buf(), ese_btree::doublewrite_path(dest)] {
                if self.fs.exists(&p).unwrap_or(false) {
                    let _ = self.fs.remove_file(&p);
                }
            }
        })
    }

    fn attach_common(
        &self,
        d: AttachedDb,
        init: Option<impl FnOnce(&AttachedDb) -> Result<()>>,
    ) -> Result<Arc<AttachedDb>> {
        let rec = encode_attach(d.dbid, &d.path)?;
        self.log.append_and_flush(&rec)?;
        let mut sig = [0u8; 32];
        if let Some(s) = sig.get_mut(..16) {
            s.copy_from_slice(&self.log.signature().to_bytes());
        }
        d.db.write_header(|h| {
            h.state = DbState::DirtyShutdown;
            h.log_signature = sig;
            h.consistent_lgpos = Lgpos::MIN;
        })?;
        if let Some(f) = init {
            f(&d)?;
        }
        for (objid, _, _) in d.db.trees()? {
            self.store
                .register(tree_id(d.dbid, objid), d.db.open_tree(objid)?);
        }
        let d = Arc::new(d);
        self.dbs.write().insert(d.dbid, Arc::clone(&d));
        // Read after the insert: a scavenger started meanwhile registers itself with every
        // database it finds attached, this one included.
        if let Some(t) = &*self.scavenger.lock() {
            d.db.set_scavenger(Some(t.clone()));
        }
        self.write_checkpoint_locked()?;
        Ok(d)
    }

    /// Makes a database consistent and detaches it: pages flushed and synced, a detach
    /// record logged, the header written clean.
    fn detach_db(&self, d: &AttachedDb) -> Result<()> {
        d.db.flush()?;
        let mut rec = vec![FAMILY_DETACH];
        rec.extend_from_slice(&d.dbid.to_le_bytes());
        let lgpos = self.log.append_and_flush(&rec)?;
        d.db.write_header(|h| {
            h.state = DbState::CleanShutdown;
            h.consistent_lgpos = lgpos;
        })?;
        if let Ok(trees) = d.db.trees() {
            for (objid, _, _) in trees {
                self.store.unregister(tree_id(d.dbid, objid));
            }
        }
        // Implicit-key and LID counters belong to this file: another database attached
        // under the same id starts from its own trees.
        self.seqs.lock().retain(|tree, _| tree.0 >> 24 != d.dbid);
        Ok(())
    }

    /// Detaches `dbid` (JetDetachDatabase).
    pub(crate) fn detach(&self, dbid: u32) -> Result<()> {
        let _ckpt = self.ckpt_lock.lock();
        let d = self.db(dbid)?;
        // Versions of the database's trees must not outlive the attachment: trees are known
        // to the version store by dbid and objid, so they would apply to the next file
        // attached under this dbid (a compacted copy keeps every objid). Cleanup drops what no
        // snapshot needs (and removes the flag-deleted records, before the flush below); what
        // is left is needed by an open transaction.
        self.vs.cleanup()?;
        let _no_cleanup = self.vs.pause_cleanup();
        if self.vs.holds_versions_of(|tree| tree.0 >> 24 == dbid) {
            return Err(Error::new(ErrorKind::DatabaseInUse)
                .with_path(&d.path)
                .with_message("an open transaction still needs versions of the database"));
        }
        self.detach_db(&d)?;
        {
            // Waits for a write-back that holds the database to finish with it.
            let _writeback = self.writeback.lock();
            self.dbs.write().remove(&dbid);
        }
        self.write_checkpoint_locked()
    }

    /// Runs `f` over every attached database, holding the write-back lock (see the field):
    /// the databases are let go before the caller writes the checkpoint.
    fn with_attached(&self, f: impl FnOnce(&[Arc<AttachedDb>]) -> Result<()>) -> Result<()> {
        let _writeback = self.writeback.lock();
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        f(&dbs)
    }

    /// Writes the checkpoint: the oldest position recovery needs (dirty pages, open
    /// transactions), with the attached databases.
    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        let _ckpt = self.ckpt_lock.lock();
        self.write_checkpoint_locked()
    }

    fn write_checkpoint_locked(&self) -> Result<()> {
        let dbs = self.dbs.read();
        let mut at = self.log.last_lgpos();
        for d in dbs.values() {
            // MIN: nothing was ever logged through this database's cache (attached and not
            // changed since), so no page of it needs redo.
            let c = d.db.checkpoint();
            if c != Lgpos::MIN {
                at = at.min(c);
            }
        }
        if let Some(t) = self.vs.oldest_needed_lgpos(self.log.durable_lgpos()) {
            at = at.min(t);
        }
        if let Some(pin) = *self.backup_pin.lock() {
            at = at.min(pin);
        }
        let list = encode_db_list(&dbs)?;
        drop(dbs);
        self.log.write_checkpoint(at, &list)
    }

    /// Flushes every database and advances the checkpoint (the background checkpointer's
    /// work, also done at term).
    pub(crate) fn flush(&self) -> Result<()> {
        self.with_attached(|dbs| dbs.iter().try_for_each(|d| d.db.flush()))?;
        self.write_checkpoint()
    }

    /// Starts a full backup: writes a checkpoint now and pins it (the checkpoint will not pass
    /// it until [`Engine::unpin_backup`]); returns it: the position a restore replays from.
    ///
    /// A transaction whose first change is being logged holds the checkpoint at the very start
    /// of the log for that moment; the checkpoint is taken again until no such moment is hit
    /// (for up to two seconds, then `BackupNotAllowedYet`).
    pub(crate) fn pin_checkpoint_for_backup(&self) -> Result<Lgpos> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            {
                let _ckpt = self.ckpt_lock.lock();
                self.write_checkpoint_locked()?;
                let at = self.log.checkpoint()?.lgpos;
                if at.generation != 0 {
                    *self.backup_pin.lock() = Some(at);
                    return Ok(at);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::new(ErrorKind::BackupNotAllowedYet)
                    .with_message("the checkpoint did not settle; try the backup again"));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// One pass of the background checkpointer, run when the log has grown past the checkpoint
    /// depth since the checkpoint `current`: writes back the pages first changed more than
    /// half the depth before the end of the log and advances the checkpoint (ESE's
    /// checkpoint-depth maintenance). The checkpoint can go no further than the first change of
    /// the oldest transaction still open (or whose commit is not durable yet) and a backup's
    /// pin: pages changed after that are not written, and when the checkpoint already stands
    /// there the pass does nothing, so a long transaction is not made to write its pages over
    /// and over while it runs.
    ///
    /// While durable commits are busy (`commits_busy`: the log's waited flushes grew at
    /// [`BUSY_FLUSHES_PER_SECOND`] or more since the last pass, or since this pass began),
    /// write-back is deferred, or the pass ends early, as long as [`Engine::may_defer`]:
    /// every commit's log sync shares the device with write-back I/O and waits behind it, so
    /// write-back catches up when the commits pause (or when a bound is reached) instead.
    fn checkpoint_pass(&self, current: Lgpos, commits_busy: bool) -> Result<()> {
        let last = self.log.last_lgpos();
        if commits_busy && self.may_defer(current, last) {
            return Ok(());
        }
        let mut target = self.lgpos_before(last, self.params.checkpoint_depth_bytes / 2);
        if let Some(t) = self.vs.oldest_needed_lgpos(self.log.durable_lgpos()) {
            target = target.min(t);
        }
        if let Some(pin) = *self.backup_pin.lock() {
            target = target.min(pin);
        }
        if target <= current {
            return Ok(());
        }
        // Paced write-back: while the log behind the checkpoint keeps growing, each pass writes
        // twice as many pages as the last (up to the maximum); once it stops growing, half as
        // many (down to the minimum). A dirty set left by a bulk load then drains over several
        // passes instead of one burst of writes and syncs that every commit's log sync would
        // wait behind, and a steady stream of changes still gets the rate it needs.
        let pages = {
            let lag = self.log_bytes_between(current, last);
            let mut pace = self.pace.lock();
            let (pages, prev_lag) = *pace;
            let pages = if lag > prev_lag {
                (pages * 2).min(CHECKPOINT_PASS_PAGES_MAX)
            } else {
                (pages / 2).max(CHECKPOINT_PASS_PAGES_MIN)
            };
            *pace = (pages, lag);
            pages
        };
        // In steps of the minimum, so a pass that finds the commits busy stops early.
        self.with_attached(|dbs| {
            let (began, flushes) = (std::time::Instant::now(), self.log.waited_flushes());
            let mut left = pages;
            while left > 0 {
                let step = left.min(CHECKPOINT_PASS_PAGES_MIN);
                for d in dbs {
                    d.db.write_oldest(target, step)?;
                }
                left -= step;
                let waited = self.log.waited_flushes().saturating_sub(flushes);
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                if waited >= 2
                    && waited.saturating_mul(1_000_000)
                        >= BUSY_FLUSHES_PER_SECOND.saturating_mul(micros)
                    && self.may_defer(current, last)
                {
                    break;
                }
            }
            dbs.iter().try_for_each(|d| d.db.sync())
        })?;
        self.write_checkpoint()
    }

    /// Whether write-back may wait for busy commits to pause: the log behind the checkpoint
    /// `current` (up to `last`) is under `checkpoint_defer_bytes` and the dirty pages of the
    /// attached databases fill less than half the cache.
    fn may_defer(&self, current: Lgpos, last: Lgpos) -> bool {
        if self.log_bytes_between(current, last) >= self.params.checkpoint_defer_bytes {
            return false;
        }
        let dirty: u64 = self
            .dbs
            .read()
            .values()
            .map(|d| d.db.cache_stats().dirty_pages)
            .sum();
        dirty.saturating_mul(u64::from(self.params.page_size)) < self.params.cache_bytes / 2
    }

    /// The position `bytes` of log before `at` (generations of the configured size), or the
    /// start of the log.
    fn lgpos_before(&self, at: Lgpos, bytes: u64) -> Lgpos {
        let file = self.log_file_bytes();
        let abs = self.log_offset(at).saturating_sub(bytes);
        let rem = abs % file;
        Lgpos::new(
            u32::try_from(abs / file).unwrap_or(u32::MAX),
            u16::try_from(rem / 512).unwrap_or(u16::MAX),
            // Below 512 by the remainder.
            (rem % 512) as u16,
        )
    }

    /// Bytes of one log generation file (at least one sector).
    fn log_file_bytes(&self) -> u64 {
        (u64::from(self.params.log_file_size_kib) * 1024).max(512)
    }

    /// `l` as a byte offset in the log stream, generations counted at the configured size.
    fn log_offset(&self, l: Lgpos) -> u64 {
        u64::from(l.generation) * self.log_file_bytes() + u64::from(l.isec) * 512 + u64::from(l.ib)
    }

    /// Starts an incremental backup: keeps the checkpoint from passing `at` (the start of the
    /// first generation it copies) until [`Engine::unpin_backup`].
    pub(crate) fn pin_for_backup(&self, at: Lgpos) {
        let _ckpt = self.ckpt_lock.lock();
        *self.backup_pin.lock() = Some(at);
    }

    /// Ends a backup: the checkpoint may advance again.
    pub(crate) fn unpin_backup(&self) {
        *self.backup_pin.lock() = None;
    }

    /// Appends the record that marks the end of an online backup and waits until it is
    /// durable; returns its position.
    pub(crate) fn log_backup_mark(&self, body: &[u8]) -> Result<Lgpos> {
        let mut rec = Vec::with_capacity(body.len() + 1);
        rec.push(FAMILY_BACKUP);
        rec.extend_from_slice(body);
        self.log.append_and_flush(&rec)
    }

    /// Bytes of log between `from` and `to` (generations of the configured size).
    fn log_bytes_between(&self, from: Lgpos, to: Lgpos) -> u64 {
        self.log_offset(to).saturating_sub(self.log_offset(from))
    }

    /// Starts the background checkpointer: every interval (50 ms), when the log has grown past the
    /// checkpoint depth since the last checkpoint, it flushes dirty pages and writes a new
    /// checkpoint. It stops when the engine is dropped. A failure makes the instance
    /// unavailable (fail-stop).
    pub(crate) fn spawn_checkpointer(
        engine: &Arc<Engine>,
        inst: std::sync::Weak<crate::instance::InstanceInner>,
    ) {
        let weak = Arc::downgrade(engine);
        let interval_ms = engine.params.checkpoint_interval_ms;
        let interval = std::time::Duration::from_millis(interval_ms);
        let spawned = std::thread::Builder::new()
            .name("ese-checkpoint".into())
            .spawn(move || {
                let mut flushes = 0;
                loop {
                    std::thread::park_timeout(interval);
                    let Some(e) = weak.upgrade() else { return };
                    if e.log.is_failed() || e.stopping.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    let Ok(ckpt) = e.log.checkpoint() else {
                        continue;
                    };
                    let waited = e.log.waited_flushes();
                    let busy = waited.saturating_sub(flushes).saturating_mul(1000)
                        >= BUSY_FLUSHES_PER_SECOND.saturating_mul(interval_ms.max(1));
                    flushes = waited;
                    if e.log_bytes_between(ckpt.lgpos, e.log.last_lgpos())
                        < e.params.checkpoint_depth_bytes
                    {
                        continue;
                    }
                    if let Err(err) = e.checkpoint_pass(ckpt.lgpos, busy) {
                        if let Some(i) = inst.upgrade() {
                            i.fatal(&err);
                        }
                        return;
                    }
                }
            });
        match spawned {
            Ok(h) => engine.background.lock().push(h),
            Err(e) => log::warn!(target: "ese", "no background checkpointer: {e}"),
        }
    }

    /// Starts the buffer scavenger (ESE's background write-back that keeps clean buffers
    /// available): woken by an attached database whose eviction found the page it had to
    /// evict dirty, it writes back the dirty pages the next evictions of each database will
    /// take, a batch at a time ([`ese_btree::Database::scavenge`], under the write-back lock),
    /// until they are clean, so a load larger than the cache (whose pages the checkpoint does
    /// not write while its transaction is open) does not wait for page writes and syncs on
    /// its own thread. It waits for the next wake-up when there is nothing to write, and stops
    /// when the engine is dropped or stopped. A failure makes the instance unavailable
    /// (fail-stop), as a failed checkpoint write does.
    pub(crate) fn spawn_scavenger(
        engine: &Arc<Engine>,
        inst: std::sync::Weak<crate::instance::InstanceInner>,
    ) {
        let weak = Arc::downgrade(engine);
        let spawned = std::thread::Builder::new()
            .name("ese-scavenger".into())
            .spawn(move || {
                loop {
                    std::thread::park_timeout(SCAVENGER_IDLE);
                    loop {
                        let Some(e) = weak.upgrade() else { return };
                        if e.log.is_failed()
                            || e.stopping.load(std::sync::atomic::Ordering::Acquire)
                        {
                            return;
                        }
                        let mut written = 0;
                        let pass = e.with_attached(|dbs| {
                            for d in dbs {
                                written += d.db.scavenge()?;
                            }
                            Ok(())
                        });
                        if let Err(err) = pass {
                            if let Some(i) = inst.upgrade() {
                                i.fatal(&err);
                            }
                            return;
                        }
                        if written == 0 {
                            break;
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => {
                let t = h.thread().clone();
                // Set before the attached databases are read (see `attach_common`).
                *engine.scavenger.lock() = Some(t.clone());
                for d in engine.dbs.read().values() {
                    d.db.set_scavenger(Some(t.clone()));
                }
                engine.background.lock().push(h);
            }
            Err(e) => log::warn!(target: "ese", "no buffer scavenger: {e}"),
        }
    }

    /// Registers a background thread to stop and join at shutdown.
    pub(crate) fn adopt(&self, handle: std::thread::JoinHandle<()>) {
        self.background.lock().push(handle);
    }

    /// Stops the background threads and waits for them, so no thread holds the engine once
    /// this returns (term, also dirty term).
    pub(crate) fn stop_background(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.vs.stop_background();
        let handles: Vec<_> = self.background.lock().drain(..).collect();
        for h in handles {
            h.thread().unpark();
            let _ = h.join();
        }
    }

    /// Clean shutdown: every database detached clean, a term record, a final checkpoint.
    pub(crate) fn shutdown(&self) -> Result<()> {
        self.stop_background();
        let _ckpt = self.ckpt_lock.lock();
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        for d in dbs {
            self.detach_db(&d)?;
            self.dbs.write().remove(&d.dbid);
        }
        self.log.append_and_flush(&[FAMILY_TERM])?;
        self.write_checkpoint_locked()
    }

    /// The next long-value id of long-value tree `tree` (ESE's `lidMax` + 1, kept in the
    /// FCB): one more than the highest LID any chunk of the tree has (flag-deleted and
    /// uncommitted chunks included), 1 for an empty tree, read on first use and then kept for
    /// the life of the engine, so a LID is never handed out twice while the instance runs.
    pub(crate) fn lid_counter(&self, tree: ObjId) -> Result<Arc<std::sync::atomic::AtomicU64>> {
        let mut seqs = self.seqs.lock();
        if let Some(c) = seqs.get(&tree) {
            return Ok(Arc::clone(c));
        }
        let t = self.store.tree(tree)?;
        let mut c = t.cursor();
        let next = if c.move_last()? {
            crate::lv::lid_of_key(c.key()).map_or(1, |l| l.saturating_add(1))
        } else {
            1
        };
        let c = Arc::new(std::sync::atomic::AtomicU64::new(next.max(1)));
        seqs.insert(tree, Arc::clone(&c));
        Ok(c)
    }

    /// The counter of implicit keys of `tree` (tables without a primary index): starts after
    /// the largest key in the tree, committed or not.
    pub(crate) fn implicit_key_counter(
        &self,
        tree: ObjId,
    ) -> Result<Arc<std::sync::atomic::AtomicU64>> {
        let mut seqs = self.seqs.lock();
        if let Some(c) = seqs.get(&tree) {
            return Ok(Arc::clone(c));
        }
        let t = self.store.tree(tree)?;
        let mut c = t.cursor();
        let next = if c.move_last()? {
            c.key().try_into().map_or(0, |b: [u8; 8]| {
                #[expect(
                    clippy::big_endian_bytes,
                    reason = "implicit keys sort in insertion order"
                )]
                let n = u64::from_be_bytes(b);
                n + 1
            })
        } else {
            0
        };
        let c = Arc::new(std::sync::atomic::AtomicU64::new(next));
        seqs.insert(tree, Arc::clone(&c));
        Ok(c)
    }

    /// The auto-increment counter of table tree `tree`; at its first use in this engine its
    /// next value is one more than `max()`, the largest value in the table (computed while
    /// the map is locked, so concurrent first inserts agree).
    ///
    /// # Errors
    /// The errors of `max`.
    pub(crate) fn autoinc_counter(
        &self,
        tree: ObjId,
        max: impl FnOnce() -> Result<i64>,
    ) -> Result<AutoincCounter> {
        let mut map = self.autoincs.lock();
        if let Some(c) = map.get(&tree) {
            return Ok(Arc::clone(c));
        }
        let next = max()?.saturating_add(1).max(1);
        let c = Arc::new(parking_lot::Mutex::new(next));
        map.insert(tree, Arc::clone(&c));
        Ok(c)
    }
}
