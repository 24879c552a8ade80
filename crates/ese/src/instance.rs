//! The instance: parameters, init, term, stop service, and the session factory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_core::fs::{FileSystem, OsFs};
use ese_core::{Error, ErrorKind, Result};
use std::collections::HashMap;

use ese_session::{InstanceGate, InstanceState, Sesid, SessionTable};
use parking_lot::{Mutex, RwLock};

use crate::engine::{Engine, RecoveryStats};
use crate::session::SessionShared;

use crate::grbit::TermGrbit;
use crate::session::Session;

/// Smallest and largest log file size in KiB (`JET_paramLogFileSize` range).
const LOG_FILE_SIZE_KIB_RANGE: std::ops::RangeInclusive<u32> = 64..=32_768;

/// The parameters of an instance, fixed when it is created (ESE's `JetSetSystemParameter`
/// values that may not change after init).
#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub(crate) name: String,
    pub(crate) system_path: PathBuf,
    pub(crate) log_path: PathBuf,
    pub(crate) base_name: String,
    pub(crate) page_size: u32,
    pub(crate) max_sessions: u32,
    pub(crate) log_file_size_kib: u32,
    pub(crate) circular_log: bool,
    pub(crate) cache_bytes: u64,
    pub(crate) version_store_bytes: u64,
    pub(crate) checkpoint_depth_bytes: u64,
    pub(crate) checkpoint_defer_bytes: u64,
    pub(crate) checkpoint_interval_ms: u64,
    pub(crate) cleanup_interval_ms: u64,
    pub(crate) lazy_flush_ms: u32,
}

/// Builds an [`Instance`] (JetCreateInstance2 plus the JetSetSystemParameter calls made before
/// JetInit). Every value is checked by [`InstanceBuilder::create`].
#[derive(Clone, Debug)]
#[must_use]
pub struct InstanceBuilder {
    params: Params,
    fs: Option<Arc<dyn FileSystem>>,
}

impl InstanceBuilder {
    /// The instance's system directory (`JET_paramSystemPath`): where temporary databases
    /// (spilled temp tables) are created. Default: the current directory. Unlike ESE, which
    /// keeps the checkpoint file here, this engine keeps `edb.chk` in the log directory
    /// ([`InstanceBuilder::log_path`]) beside the generations it points into (see
    /// `docs/format-log.md`).
    pub fn system_path(mut self, path: impl AsRef<Path>) -> Self {
        self.params.system_path = path.as_ref().to_path_buf();
        self
    }

    /// The directory of the log files (`JET_paramLogFilePath`). Default: the current
    /// directory.
    pub fn log_path(mut self, path: impl AsRef<Path>) -> Self {
        self.params.log_path = path.as_ref().to_path_buf();
        self
    }

    /// The three-character base name of the log, checkpoint and reserve files
    /// (`JET_paramBaseName`). Default `"edb"` (files `edb.log`, `edb.chk`, ...). Must be three
    /// ASCII alphanumeric characters.
    pub fn base_name(mut self, base: &str) -> Self {
        base.clone_into(&mut self.params.base_name);
        self
    }

    /// The database page size in bytes (`JET_paramDatabasePageSize`): 4096, 8192, 16384 or
    /// 32768. Default 8192.
    pub fn page_size(mut self, bytes: u32) -> Self {
        self.params.page_size = bytes;
        self
    }

    /// The most sessions open at once (`JET_paramMaxSessions`): 0 to 30,000. Default 16.
    pub fn max_sessions(mut self, sessions: u32) -> Self {
        self.params.max_sessions = sessions;
        self
    }

    /// The size of each log generation file in KiB (`JET_paramLogFileSize`): 64 to 32,768.
    /// Default 5,120 (5 MiB).
    pub fn log_file_size_kib(mut self, kib: u32) -> Self {
        self.params.log_file_size_kib = kib;
        self
    }

    /// Circular logging (`JET_paramCircularLog`): delete log generations older than the
    /// checkpoint instead of keeping them for backup. Default off.
    pub fn circular_log(mut self, on: bool) -> Self {
        self.params.circular_log = on;
        self
    }

    /// The most memory the database page cache may use, in bytes (`JET_paramCacheSizeMax`,
    /// which ESE counts in pages). Default 64 MiB; at least 64 pages. Page buffers come from
    /// 2 MiB slabs; while a cache grows past its second slab, one more slab is prepared ahead
    /// of need (so a cache may hold up to 2 MiB beyond its pages).
    pub fn cache_size_max_bytes(mut self, bytes: u64) -> Self {
        self.params.cache_bytes = bytes;
        self
    }

    /// The version store budget in bytes (ESE's `JET_paramMaxVerPages` × the 32 KiB bucket
    /// size). Default 64 buckets = 2 MiB, ESE's default; at least 64 KiB. It covers the
    /// before-images of replaced and deleted records, escrow deltas and locks of open
    /// transactions and of committed ones an open snapshot still needs; inserts are not charged
    /// (their version is only the key), so bulk loads do not exhaust it.
    pub fn version_store_bytes(mut self, bytes: u64) -> Self {
        self.params.version_store_bytes = bytes;
        self
    }

    /// How far the checkpoint may lag behind the end of the log, in bytes
    /// (`JET_paramCheckpointDepthMax`): when the log grows past it, a background thread writes
    /// back the pages first changed more than half the depth before the end of the log and
    /// advances the checkpoint, which bounds recovery time. The checkpoint never passes the
    /// first change of the oldest open transaction, so the log behind a long transaction grows
    /// past the depth until it ends. Default 20 MiB (ESE's); at least 16 KiB.
    pub fn checkpoint_depth_bytes(mut self, bytes: u64) -> Self {
        self.params.checkpoint_depth_bytes = bytes;
        self
    }

    /// How far the checkpoint may lag behind the end of the log while durable commits are
    /// busy, in bytes (no ESE equivalent). While the log's synchronous flushes run at 320 per
    /// second or more, the background checkpointer writes no pages back until the log behind
    /// the checkpoint exceeds this (or the dirty pages fill half the cache), instead of the
    /// checkpoint depth: every commit's log sync shares the device with write-back I/O and
    /// would wait behind it. When the commits pause, write-back catches up to the checkpoint
    /// depth. The price is recovery time and log space: a crash while commits run replays up
    /// to this much log, and circular logging keeps that many bytes of generations. Default
    /// 1 GiB; a value at or below the checkpoint depth turns the deferral off.
    pub fn checkpoint_defer_bytes(mut self, bytes: u64) -> Self {
        self.params.checkpoint_defer_bytes = bytes;
        self
    }

    /// Test hook: how often the background checkpointer looks at the checkpoint depth, in
    /// milliseconds (default 50). Crash tests shorten it to make the checkpointer race the
    /// workload.
    #[doc(hidden)]
    pub fn checkpoint_interval_ms(mut self, ms: u64) -> Self {
        self.params.checkpoint_interval_ms = ms.max(1);
        self
    }

    /// How soon a lazy commit ([`CommitGrbit::LAZY_FLUSH`](crate::CommitGrbit::LAZY_FLUSH))
    /// becomes durable, in milliseconds: the log's background flusher writes the log buffer
    /// at this interval (write-behind, so a commit finds little left to write) and syncs it
    /// when a lazy commit is waiting to be durable or [`ese_log::SYNC_BEHIND_BYTES`] (4 MiB)
    /// are written and not synced; a second thread prepares the next log generation ahead of
    /// need. 0 to 60,000; default 5. 0 turns both threads off: lazy commits become durable at
    /// the next durable commit, when the log buffer fills, at a generation switch or at term,
    /// and every log write happens on the calling thread, so the I/O sequence of a
    /// single-threaded workload is reproducible (the fuzz targets use this). ESE has no
    /// exact counterpart; its log writer flushes lazy commits in the background likewise.
    pub fn lazy_flush_ms(mut self, ms: u32) -> Self {
        self.params.lazy_flush_ms = ms;
        self
    }

    /// Test hook: how often background version cleanup runs, in milliseconds (default 100;
    /// 0 turns it off, leaving cleanup to the moments the version store fills).
    #[doc(hidden)]
    pub fn version_cleanup_interval_ms(mut self, ms: u64) -> Self {
        self.params.cleanup_interval_ms = ms;
        self
    }

    /// The file system the instance does all its I/O through. Default: the real one
    /// ([`OsFs`]). Tests pass a [`SimFs`](ese_core::fs::SimFs) to simulate crashes.
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Creates the instance, not yet initialized (JetCreateInstance2).
    ///
    /// # Errors
    /// `InvalidParameter` (-1003) when a value is out of range (the message names it);
    /// `InvalidName` (-1002) for an empty name or one over 64 characters.
    pub fn create(self) -> Result<Instance> {
        let p = &self.params;
        let invalid =
            |what: String| Err(Error::new(ErrorKind::InvalidParameter).with_message(what));
        if p.name.is_empty() || p.name.chars().count() > 64 {
            return Err(Error::new(ErrorKind::InvalidName)
                .with_message("an instance name has 1 to 64 characters"));
        }
        if ![4096, 8192, 16_384, 32_768].contains(&p.page_size) {
            return invalid(format!(
                "page size {} bytes: must be 4096, 8192, 16384 or 32768",
                p.page_size
            ));
        }
        if !LOG_FILE_SIZE_KIB_RANGE.contains(&p.log_file_size_kib) {
            return invalid(format!(
                "log file size {} KiB: must be 64 to 32768",
                p.log_file_size_kib
            ));
        }
        if p.cache_bytes < 64 * u64::from(p.page_size) {
            return invalid(format!(
                "cache size {} bytes: at least 64 pages ({} bytes)",
                p.cache_bytes,
                64 * u64::from(p.page_size)
            ));
        }
        if p.lazy_flush_ms > 60_000 {
            return invalid(format!(
                "lazy flush interval {} ms: at most 60000",
                p.lazy_flush_ms
            ));
        }
        if p.checkpoint_depth_bytes < 16 * 1024 {
            return invalid(format!(
                "checkpoint depth {} bytes: at least 16 KiB",
                p.checkpoint_depth_bytes
            ));
        }
        if p.version_store_bytes < 64 * 1024 {
            return invalid(format!(
                "version store {} bytes: at least 64 KiB",
                p.version_store_bytes
            ));
        }
        // A log record (a split logs up to three page images) must fit in one generation.
        if u64::from(p.log_file_size_kib) * 1024 < 16 * u64::from(p.page_size) {
            return invalid(format!(
                "log file size {} KiB is too small for {}-byte pages (at least 16 pages)",
                p.log_file_size_kib, p.page_size
            ));
        }
        if p.base_name.len() != 3 || !p.base_name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return invalid(format!(
                "base name {:?}: must be three ASCII letters or digits",
                p.base_name
            ));
        }
        let sessions = SessionTable::new(p.max_sessions)?;
        let fs = self.fs.unwrap_or_else(|| Arc::new(OsFs::new()));
        Ok(Instance {
            inner: Arc::new(InstanceInner {
                params: self.params,
                fs,
                gate: InstanceGate::new(),
                sessions,
                engine: RwLock::new(None),
                session_states: Mutex::new(HashMap::new()),
                backup: Mutex::new(None),
            }),
        })
    }
}

pub(crate) struct InstanceInner {
    pub(crate) params: Params,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) gate: InstanceGate,
    pub(crate) sessions: SessionTable,
    /// The running engine, present between init and term.
    pub(crate) engine: RwLock<Option<Arc<Engine>>>,
    /// Per-session work (transaction, open databases, cursors), for term and end session.
    pub(crate) session_states: Mutex<HashMap<Sesid, Arc<SessionShared>>>,
    /// The external backup running on the instance, between its begin and end calls.
    pub(crate) backup: Mutex<Option<crate::backup::BackupState>>,
}

impl InstanceInner {
    /// The running engine.
    ///
    /// # Errors
    /// `NotInitialized` (-1029) when the instance is not running.
    pub(crate) fn engine(&self) -> Result<Arc<Engine>> {
        self.engine
            .read()
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NotInitialized))
    }

    /// Records a fatal error: the instance becomes unavailable (-1090 or -1092) until term.
    pub(crate) fn fatal(&self, err: &Error) {
        log::error!(target: "ese", "instance {} is now unavailable: {err}", self.params.name);
        self.gate.set_unavailable(err);
    }
}

impl std::fmt::Debug for InstanceInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.params.name)
            .field("state", &self.gate.state())
            .finish_non_exhaustive()
    }
}

/// An instance of the engine: one log stream, its databases and its sessions (ESE's
/// `JET_INSTANCE`). A cheap handle: clones share the instance.
///
/// # Lifecycle
/// [`Instance::builder`] → [`Instance::create`](InstanceBuilder::create) (created, not
/// initialized) → [`Instance::init`] (runs recovery; running) → [`Instance::term`] (created
/// again; may be initialized anew). A failed `init` leaves the instance dead, as ESE destroys
/// an instance whose `JetInit` fails: every later call returns `InvalidInstance` (-1115).
///
/// # Drop semantics
/// Dropping the last handle of a running instance does not terminate it cleanly: its
/// databases stay dirty, and the next `init` on the same files runs recovery, exactly as after
/// a crash. Call [`Instance::term`] for a clean shutdown.
#[derive(Clone, Debug)]
pub struct Instance {
    pub(crate) inner: Arc<InstanceInner>,
}

impl Instance {
    /// Starts building an instance named `name` (JetCreateInstance2's name), with ESE's
    /// defaults for every parameter.
    pub fn builder(name: &str) -> InstanceBuilder {
        InstanceBuilder {
            params: Params {
                name: name.to_owned(),
                system_path: PathBuf::from("."),
                log_path: PathBuf::from("."),
                base_name: "edb".to_owned(),
                page_size: 8192,
                max_sessions: ese_session::DEFAULT_MAX_SESSIONS,
                log_file_size_kib: 5120,
                circular_log: false,
                cache_bytes: 64 << 20,
                version_store_bytes: 64 * 32 * 1024,
                checkpoint_depth_bytes: 20 << 20,
                checkpoint_defer_bytes: 1 << 30,
                checkpoint_interval_ms: 50,
                cleanup_interval_ms: 100,
                lazy_flush_ms: 5,
            },
            fs: None,
        }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.inner.params.name
    }

    /// The instance's state.
    pub fn state(&self) -> InstanceState {
        self.inner.gate.state()
    }

    /// Initializes the instance (JetInit): creates the log directory if needed, opens the log
    /// stream and runs soft recovery when the last run did not end cleanly (redo from the
    /// checkpoint, re-attaching the databases the log names, then undo of every unfinished
    /// transaction; recovered databases are left detached and clean, as ESE leaves them).
    /// Recovery reports through the `log` facade (target `ese::recovery`).
    ///
    /// # Errors
    /// `AlreadyInitialized` (-1030) if it is running or a restore runs; `InitInProgress`
    /// (-1031) if another init runs; `InvalidInstance` (-1115) after a failed init; the log's
    /// errors (`LogFilePathInUse`, `MissingLogFile`, `LogFileCorrupt`, `BadLogSignature`,
    /// `RequiredLogFilesMissing`, `CheckpointCorrupt`, ...); `AttachedDatabaseMismatch` when a
    /// database the log names is missing; `SoftRecoveryOnBackupDatabase` (-544) when a restore
    /// into the log path started changing it and did not finish (run the restore again); the
    /// page store's errors during redo; I/O errors. After a failed init the instance is dead (as
    /// ESE frees an instance whose init fails).
    pub fn init(&self) -> Result<()> {
        self.init_with_progress(&|_| {})
    }

    /// [`Instance::init`] with a progress callback (ESE's status callback during recovery):
    /// called with the number of log records replayed so far.
    ///
    /// # Errors
    /// As [`Instance::init`].
    pub fn init_with_progress(&self, progress: &dyn Fn(u64)) -> Result<()> {
        let guard = self.inner.gate.begin_init()?;
        let p = &self.inner.params;
        if self.inner.fs.exists(&crate::backup::restore_mark_path(p))? {
            return Err(Error::new(ErrorKind::SoftRecoveryOnBackupDatabase)
                .with_path(crate::backup::restore_mark_path(p))
                .with_message(
                    "a restore into this log path did not finish; run the restore again",
                ));
        }
        self.inner.fs.create_dir_all(&p.system_path)?;
        crate::temp::remove_stale_temp_databases(self.inner.fs.as_ref(), &p.system_path);
        let engine = Arc::new(Engine::start(
            Arc::clone(&self.inner.fs),
            p.clone(),
            progress,
        )?);
        Engine::spawn_checkpointer(&engine, Arc::downgrade(&self.inner));
        Engine::spawn_scavenger(&engine, Arc::downgrade(&self.inner));
        if p.cleanup_interval_ms > 0 {
            let weak = Arc::downgrade(&self.inner);
            let cleanup = engine.vs.spawn_cleanup(
                std::time::Duration::from_millis(p.cleanup_interval_ms),
                move |e| {
                    if let Some(i) = weak.upgrade() {
                        i.fatal(e);
                    }
                },
            );
            match cleanup {
                Ok(h) => engine.adopt(h),
                Err(e) => log::warn!(target: "ese", "no background version cleanup: {e}"),
            }
        }
        *self.inner.engine.write() = Some(engine);
        guard.succeed();
        Ok(())
    }

    /// Test hook: flushes every dirty page and writes a checkpoint now (what the background
    /// checkpointer does when the log passes the checkpoint depth).
    ///
    /// # Errors
    /// `NotInitialized` when not running; the flush's I/O errors (which make the instance
    /// unavailable).
    #[doc(hidden)]
    pub fn checkpoint_now(&self) -> Result<()> {
        let _call = self.inner.gate.enter()?;
        let e = self.inner.engine()?;
        e.flush().inspect_err(|err| self.inner.fatal(err))
    }

    /// What the last init's recovery did (`None` before init).
    pub fn recovery_stats(&self) -> Option<RecoveryStats> {
        self.inner.engine.read().as_ref().map(|e| e.recovery)
    }

    /// Terminates the instance (JetTerm2): waits for calls in flight, ends every session and
    /// returns the instance to the created state.
    ///
    /// A term of a created-but-never-initialized instance succeeds and does nothing.
    ///
    /// # Errors
    /// `TooManyActiveUsers` (-1059) while any session has an open transaction, or
    /// `BackupInProgress` (-505) while an external backup runs without
    /// [`TermGrbit::STOP_BACKUP`] or [`TermGrbit::ABRUPT`], which abort it (the instance stays
    /// running and usable); `TermInProgress` (-1000) if another term runs;
    /// `RestoreInProgress` (-506) during a restore; `NotInitialized` (-1029) during init;
    /// `InvalidInstance` (-1115) after a failed init; with [`TermGrbit::DIRTY`], success is
    /// reported as `DirtyShutdown` (-1116): the instance is down but its databases need
    /// recovery.
    pub fn term(&self, grbit: TermGrbit) -> Result<()> {
        let inner = &self.inner;
        let Some(guard) = inner.gate.begin_term(&inner.sessions)? else {
            return Ok(());
        };
        if inner.backup_running() {
            if grbit.intersects(TermGrbit::STOP_BACKUP | TermGrbit::ABRUPT) {
                inner.abort_backup_for_term();
            } else {
                guard.abort();
                return Err(Error::new(ErrorKind::BackupInProgress).with_message(
                    "an external backup is running; end it or term with STOP_BACKUP",
                ));
            }
        }
        if inner.sessions.any_in_transaction() {
            guard.abort();
            return Err(Error::new(ErrorKind::TooManyActiveUsers)
                .with_message("a session still has an open transaction"));
        }
        // End every remaining session: close what it holds (no transaction is open).
        let states: Vec<_> = inner
            .session_states
            .lock()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for st in states {
            if let Err(e) = st.close_all() {
                inner.fatal(&e);
            }
        }
        for core in inner.sessions.snapshot() {
            inner.sessions.remove(&core);
        }
        let engine = inner.engine.write().take();
        let dirty = grbit.contains(TermGrbit::DIRTY) || inner.gate.fatal_error().is_some();
        let result = match engine {
            Some(e) if !dirty => e.shutdown(),
            // Dirty: the databases stay dirty and the next init recovers them.
            Some(e) => {
                e.stop_background();
                Ok(())
            }
            None => Ok(()),
        };
        guard.complete();
        result?;
        if grbit.contains(TermGrbit::DIRTY) {
            return Err(Error::new(ErrorKind::DirtyShutdown));
        }
        Ok(())
    }

    /// Stops the service (JetStopServiceInstance): from now on every call except end session,
    /// rollback, close table/database, detach, reset context and session info returns
    /// `ClientRequestToStopJetService` (-1329). Not reversible; term still works.
    ///
    /// # Errors
    /// `NotInitialized` (-1029), `TermInProgress` (-1000), `RestoreInProgress` (-506),
    /// `InvalidInstance` (-1115) when the instance is not running.
    pub fn stop_service(&self) -> Result<()> {
        self.inner.gate.stop_service()
    }

    /// Begins a session (JetBeginSession).
    ///
    /// # Errors
    /// `NotInitialized` (-1029) before init or after term; `TermInProgress` (-1000);
    /// `RestoreInProgress` (-506); `ClientRequestToStopJetService` (-1329);
    /// `InstanceUnavailable` (-1090) or `InstanceUnavailableDueToFatalLogDiskFull` (-1092)
    /// after a fatal error; `InvalidInstance` (-1115) after a failed init; `OutOfSessions`
    /// (-1101) when `max_sessions` sessions are open.
    pub fn begin_session(&self) -> Result<Session> {
        let _call = self.inner.gate.enter()?;
        let core = self.inner.sessions.begin()?;
        let shared = Arc::new(SessionShared::new(core));
        self.inner
            .session_states
            .lock()
            .insert(shared.core.sesid(), Arc::clone(&shared));
        Ok(Session::new(Arc::clone(&self.inner), shared))
    }

    /// Test hook: holds init, term or restore at a point (see [`ese_session::HoldPoint`]).
    #[doc(hidden)]
    pub fn set_hold_hook(&self, hook: Option<Box<dyn Fn(ese_session::HoldPoint) + Send + Sync>>) {
        self.inner.gate.set_hold_hook(hook);
    }
}
