//! Sessions (JET_SESID) and their transactions.

use std::collections::BTreeMap;
use std::sync::Arc;

use ese_core::{Error, ErrorKind, Lgpos, Result};
use ese_session::{OwnedSessionCall, SessionCall, SessionCore};
use ese_txn::Transaction;
use parking_lot::Mutex;

use crate::ddl::LevelEnd;
use crate::grbit::{BeginTransactionGrbit, CommitGrbit, EndSessionGrbit, RollbackGrbit};
use crate::instance::{Instance, InstanceInner};

/// The work a session holds: its transaction, its open databases.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    pub(crate) trx: Option<Transaction>,
    /// Open databases: dbid -> number of opens (JetOpenDatabase may be called repeatedly).
    pub(crate) open_dbs: BTreeMap<u32, u32>,
    /// Log position of this session's last level-0 commit (for `WAIT_LAST_LEVEL0_COMMIT`).
    pub(crate) last_commit: Option<Lgpos>,
    /// Temporary tables opened by the session, closed when it ends.
    pub(crate) temp_tables: Vec<std::sync::Weak<crate::temp::TempShared>>,
    /// Records that got escrow deltas on a delete-on-zero column in the open transaction,
    /// checked when it ends.
    pub(crate) zero_checks: Vec<crate::special::ZeroCheck>,
    /// The session's cursors (closed by a rollback of the level they belong to, and all when
    /// the session ends).
    pub(crate) cursors: Vec<std::sync::Weak<crate::ddl::CursorHandle>>,
    /// Trees made unreachable by DDL of the open transaction, freed after its commit.
    pub(crate) ddl_pending: Vec<crate::ddl::PendingFree>,
}

impl SessionState {
    /// Applies the end of a transaction level to the session's cursors and DDL bookkeeping.
    pub(crate) fn level_end(&mut self, engine: Option<&crate::engine::Engine>, end: &LevelEnd) {
        crate::ddl::level_end(engine, &mut self.cursors, &mut self.ddl_pending, end);
    }
}

/// The identity of a commit (ESE's `JET_COMMIT_ID`), returned by
/// [`Session::commit_transaction2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitId {
    /// The signature of the instance's log (`signLog`).
    pub log_signature: ese_log::LogSignature,
    /// Where the commit record is in the log (`commitId`); `None` when the commit logged no
    /// record (a nested level, or a transaction that changed nothing).
    pub lgpos: Option<Lgpos>,
}

/// A session's engine-side parts, shared by every clone of the handle.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) core: Arc<SessionCore>,
    pub(crate) state: Mutex<SessionState>,
}

impl SessionShared {
    pub(crate) fn new(core: Arc<SessionCore>) -> SessionShared {
        SessionShared {
            core,
            state: Mutex::new(SessionState::default()),
        }
    }

    /// Closes everything the session holds (end session, term). An open transaction is
    /// rolled back; temporary tables are closed (their files deleted).
    pub(crate) fn close_all(&self) -> Result<()> {
        let mut st = self.state.lock();
        let r = match st.trx.as_mut() {
            Some(t) => t.rollback_all(),
            None => Ok(()),
        };
        st.trx = None;
        st.zero_checks.clear();
        st.level_end(None, &LevelEnd::SessionEnded);
        st.open_dbs.clear();
        for temp in st.temp_tables.drain(..) {
            if let Some(temp) = temp.upgrade() {
                temp.close();
            }
        }
        r
    }
}

/// A session (ESE's `JET_SESID`): the context in which transactions run.
///
/// A cheap handle: `Clone + Send + Sync`; clones are the same sesid. The engine enforces ESE's
/// rules at run time: a second thread entering while a call is in flight gets
/// `SessionSharingViolation` (-1910); a transaction is bound to the thread that began it, or to
/// the session context ([`Session::set_context`]) if one was set before the level-0 begin;
/// after [`Session::end`] every call on every clone returns `InvalidSesid` (-1104).
///
/// # Drop semantics
/// Dropping handles does not end the session (a sesid is a handle, not an owner): call
/// [`Session::end`], which rolls back open transactions and closes everything the session
/// holds. Term ends every remaining session.
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) inst: Arc<InstanceInner>,
    pub(crate) shared: Arc<SessionShared>,
    core: Arc<SessionCore>,
}

impl Session {
    pub(crate) fn new(inst: Arc<InstanceInner>, shared: Arc<SessionShared>) -> Session {
        let core = Arc::clone(&shared.core);
        Session { inst, shared, core }
    }

    /// Enters a session call (the gate, then the session's own checks).
    pub(crate) fn enter(&self, exempt_stop: bool) -> Result<SessionCall<'_>> {
        self.core.enter(&self.inst.gate, exempt_stop)
    }

    /// [`Session::enter`], the call held by reference count: for a cursor's methods, which
    /// borrow the cursor (and the session handle inside it) mutably during the call.
    pub(crate) fn enter_owned(&self, exempt_stop: bool) -> Result<OwnedSessionCall> {
        self.core.enter_owned(&self.inst.gate, exempt_stop)
    }

    /// [`Session::enter_owned`] with the reference count a cursor kept from its last call
    /// (`kept`, taken: the caller puts back what [`OwnedSessionCall::finish`] returns), so
    /// that a cursor's calls do not each clone and drop the session's `Arc`.
    pub(crate) fn enter_kept(
        &self,
        kept: &mut Option<Arc<SessionCore>>,
        exempt_stop: bool,
    ) -> Result<OwnedSessionCall> {
        match kept.take() {
            Some(core) => SessionCore::enter_with(core, &self.inst.gate, exempt_stop),
            None => self.enter_owned(exempt_stop),
        }
    }

    fn owner(&self) -> String {
        match self.core.context() {
            Some(c) => format!("{} (context {c:#x})", self.core.sesid()),
            None => format!("{}", self.core.sesid()),
        }
    }

    /// The session id (ESE's `JET_SESID` value).
    pub fn sesid(&self) -> ese_session::Sesid {
        self.core.sesid()
    }

    /// The instance this session belongs to.
    pub fn instance(&self) -> Instance {
        Instance {
            inner: Arc::clone(&self.inst),
        }
    }

    /// Ends the session (JetEndSession): rolls back every open transaction level, closes
    /// everything the session holds (its cursors included: they no longer keep their tables
    /// in use) and frees it; every later call on any clone returns
    /// `InvalidSesid` (-1104). `grbit` is accepted and ignored, as in ESE.
    ///
    /// # Errors
    /// `SessionInUse` (-1914) while a session context is set (reset it first); the session
    /// stays usable. `SessionSharingViolation` (-1910) if another thread is inside a call on
    /// the session, or if the open transaction is bound to another thread (a transaction bound
    /// to a session context can be rolled back from any thread); the session is unchanged.
    /// `InvalidSesid` (-1104) if it already ended; `NotInitialized` (-1029),
    /// `TermInProgress` (-1000), `RestoreInProgress` (-506), `InstanceUnavailable` (-1090).
    /// Stop service does not block it.
    pub fn end(&self, grbit: EndSessionGrbit) -> Result<()> {
        let _ = grbit;
        let call = self.enter(true)?;
        call.lock_for_end()?;
        if let Err(e) = self.shared.close_all() {
            // A rollback that cannot be written is fatal to the instance, as in ESE.
            self.inst.fatal(&e);
            call.unlock_end();
            return Err(e);
        }
        while self.core.level() > 0 {
            call.pop_level();
        }
        drop(call);
        self.inst.session_states.lock().remove(&self.core.sesid());
        self.inst.sessions.remove(&self.core);
        Ok(())
    }

    /// Begins a new session on the same instance (JetDupSession). Nothing is copied: no
    /// transaction, no open databases.
    ///
    /// # Errors
    /// The session errors of [`Session::end`] (except `SessionInUse`), then those of
    /// [`Instance::begin_session`], including `OutOfSessions` (-1101).
    pub fn dup(&self) -> Result<Session> {
        let _call = self.enter(false)?;
        self.instance().begin_session()
    }

    /// Associates the session with the calling thread under `context` (JetSetSessionContext),
    /// so a transaction begun afterwards may continue on whichever thread sets the same context
    /// next. Thread safe: when many threads race on one session exactly one wins, the others
    /// get `SessionContextAlreadySet`, so a pool of sessions needs no other bookkeeping.
    ///
    /// # Errors
    /// `InvalidParameter` (-1003) for 0 or `usize::MAX`; `SessionContextAlreadySet` (-1912) if
    /// a context is set; `InvalidSesid` (-1104) after end; `NotInitialized` (-1029),
    /// `TermInProgress` (-1000), `RestoreInProgress` (-506), `ClientRequestToStopJetService`
    /// (-1329), `InstanceUnavailable` (-1090). On failure nothing changes.
    pub fn set_context(&self, context: usize) -> Result<()> {
        self.core.set_context(&self.inst.gate, context)
    }

    /// Disassociates the session from the calling thread (JetResetSessionContext).
    ///
    /// # Errors
    /// `SessionContextNotSetByThisThread` (-1913) if no context is set or another thread set
    /// it; `InvalidSesid` (-1104) after end; `NotInitialized` (-1029), `TermInProgress`
    /// (-1000), `RestoreInProgress` (-506), `InstanceUnavailable` (-1090). Stop service does
    /// not block it. On failure nothing changes.
    pub fn reset_context(&self) -> Result<()> {
        self.core.reset_context(&self.inst.gate)
    }

    /// Begins a transaction, or a nested level (JetBeginTransaction).
    ///
    /// # Errors
    /// See [`Session::begin_transaction2`].
    pub fn begin_transaction(&self) -> Result<()> {
        self.begin_transaction2(BeginTransactionGrbit::empty())
    }

    /// Begins a transaction, or a nested level, with options (JetBeginTransaction2). A level-0
    /// begin binds the transaction to the session context if one is set, else to the calling
    /// thread.
    ///
    /// # Errors
    /// `InvalidGrbit` (-900) for unknown bits; `TransTooDeep` (-1103) at level 7;
    /// `SessionSharingViolation` (-1910) for a nested begin from a thread the transaction is
    /// not bound to, or while another thread is inside a call on the session; `InvalidSesid`
    /// (-1104); the instance errors (`NotInitialized`, `TermInProgress`, `RestoreInProgress`,
    /// `ClientRequestToStopJetService`, `InstanceUnavailable`).
    pub fn begin_transaction2(&self, grbit: BeginTransactionGrbit) -> Result<()> {
        if BeginTransactionGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let call = self.enter(false)?;
        call.check_begin()?;
        let mut st = self.shared.state.lock();
        match st.trx.as_mut() {
            Some(t) if t.is_open() => t.begin_level()?,
            _ => {
                let engine = self.inst.engine()?;
                let read_only = grbit.contains(BeginTransactionGrbit::READ_ONLY);
                st.trx = Some(engine.vs.begin(self.owner(), read_only));
            }
        }
        call.push_level();
        Ok(())
    }

    /// Commits the innermost transaction level (JetCommitTransaction). Committing a nested
    /// level merges it into its parent; only the level-0 commit ends the transaction.
    ///
    /// # Errors
    /// `InvalidGrbit` (-900) for unknown bits, or when `WAIT_LAST_LEVEL0_COMMIT`,
    /// `WAIT_ALL_LEVEL0_COMMIT` or `FORCE_NEW_LOG` is combined with another bit;
    /// `NotInTransaction` (-1054) outside a transaction; `SessionSharingViolation` (-1910) from
    /// a thread the transaction is not bound to; `InvalidSesid` (-1104); the instance errors.
    pub fn commit_transaction(&self, grbit: CommitGrbit) -> Result<()> {
        self.commit_inner(grbit).map(|_| ())
    }

    /// Commits the innermost transaction level like [`Session::commit_transaction`] and
    /// returns the commit's identity (JetCommitTransaction2 with its `JET_COMMIT_ID`).
    ///
    /// `durable_commit_ms` is ESE's `cmsecDurableCommit`: with [`CommitGrbit::LAZY_FLUSH`], the
    /// commit returns before it is durable but becomes durable within that many
    /// milliseconds. The log's background flusher makes every lazy commit durable within its
    /// interval (5 ms); a smaller bound, or an instance without the flusher, flushes before
    /// returning. 0 means no bound (a plain lazy commit).
    ///
    /// The returned [`CommitId`] names the log (its signature) and the position of the commit
    /// record in it: commits of one instance are ordered by that position, and a backup or
    /// recovery that replays the log up to position `p` holds exactly the transactions whose
    /// commit position is below `p`. A nested level's commit, and a level-0 commit of a
    /// transaction that changed nothing, log no commit record: their `lgpos` is `None`.
    ///
    /// # Errors
    /// As [`Session::commit_transaction`]; `InvalidParameter` (-1003) for a non-zero
    /// `durable_commit_ms` without `LAZY_FLUSH`.
    pub fn commit_transaction2(
        &self,
        grbit: CommitGrbit,
        durable_commit_ms: u32,
    ) -> Result<CommitId> {
        if durable_commit_ms != 0 && !grbit.contains(CommitGrbit::LAZY_FLUSH) {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("a durable-commit bound needs a lazy commit"));
        }
        let lgpos = self.commit_inner(grbit)?;
        let engine = self.inst.engine()?;
        if let Some(l) = lgpos {
            let interval = engine.log.config().lazy_flush_ms;
            if durable_commit_ms != 0 && (interval == 0 || durable_commit_ms < interval) {
                engine.log.flush(l).inspect_err(|e| self.inst.fatal(e))?;
            }
        }
        Ok(CommitId {
            log_signature: engine.log.signature(),
            lgpos,
        })
    }

    /// The commit: returns the position of the commit record of a level-0 commit that wrote
    /// one.
    fn commit_inner(&self, grbit: CommitGrbit) -> Result<Option<Lgpos>> {
        let alone = CommitGrbit::WAIT_LAST_LEVEL0_COMMIT
            | CommitGrbit::WAIT_ALL_LEVEL0_COMMIT
            | CommitGrbit::FORCE_NEW_LOG;
        if CommitGrbit::from_bits(grbit.bits()).is_none()
            || (grbit.intersects(alone) && grbit.bits().count_ones() != 1)
        {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let call = self.enter(false)?;
        if grbit.intersects(alone) {
            let engine = self.inst.engine()?;
            if grbit.contains(CommitGrbit::FORCE_NEW_LOG) {
                return Err(Error::new(ErrorKind::FeatureNotAvailable)
                    .with_message("forcing a new log generation is not supported"));
            }
            let up_to = if grbit.contains(CommitGrbit::WAIT_LAST_LEVEL0_COMMIT) {
                self.shared.state.lock().last_commit
            } else {
                Some(engine.log.last_lgpos())
            };
            if let Some(l) = up_to {
                engine.log.flush(l).inspect_err(|e| self.inst.fatal(e))?;
            }
            return Ok(None);
        }
        call.check_commit_or_rollback()?;
        let mut st = self.shared.state.lock();
        let Some(t) = st.trx.as_mut() else {
            return Err(Error::new(ErrorKind::NotInTransaction));
        };
        let level_before = t.level();
        match t.commit_level(grbit.contains(CommitGrbit::LAZY_FLUSH)) {
            Ok(info) => {
                let mut lgpos = None;
                let into = t.level();
                if let Some(c) = info {
                    if c.lgpos.is_some() {
                        st.last_commit = c.lgpos;
                    }
                    lgpos = c.lgpos;
                    st.trx = None;
                    let checks = std::mem::take(&mut st.zero_checks);
                    let engine = self.inst.engine().ok();
                    st.level_end(engine.as_deref(), &LevelEnd::Committed0 { ts: c.commit_ts });
                    drop(st);
                    if let Some(engine) = engine
                        && let Err(e) = crate::ddl::free_deferred(&engine)
                    {
                        // The commit is done; a tree that cannot be freed stays allocated.
                        self.check_fatal(&e);
                    }
                    if !checks.is_empty() {
                        crate::special::run_zero_checks(self, checks);
                    }
                } else {
                    st.level_end(None, &LevelEnd::Committed { into });
                }
                call.pop_level();
                Ok(lgpos)
            }
            Err(e) => {
                if t.level() < level_before {
                    // The commit happened but its flush failed: durability is unknown, so the
                    // instance stops (fail-stop), and the transaction is over.
                    st.trx = None;
                    call.pop_level();
                    self.inst.fatal(&e);
                } else if is_fatal_io(&e) {
                    self.inst.fatal(&e);
                }
                Err(e)
            }
        }
    }

    /// Rolls back the innermost transaction level, or every level with
    /// [`RollbackGrbit::ALL`] (JetRollback).
    ///
    /// # Errors
    /// `InvalidGrbit` (-900) for unknown bits; `NotInTransaction` (-1054) outside a
    /// transaction; `SessionSharingViolation` (-1910) from a thread the transaction is not
    /// bound to; `InvalidSesid` (-1104); the instance errors except stop service (rollback is
    /// exempt).
    pub fn rollback(&self, grbit: RollbackGrbit) -> Result<()> {
        if RollbackGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let call = self.enter(true)?;
        call.check_commit_or_rollback()?;
        let mut st = self.shared.state.lock();
        let Some(t) = st.trx.as_mut() else {
            return Err(Error::new(ErrorKind::NotInTransaction));
        };
        let r = if grbit.contains(RollbackGrbit::ALL) {
            t.rollback_all()
        } else {
            t.rollback_level()
        };
        if let Err(e) = r {
            // A rollback that cannot be written leaves the database inconsistent in memory:
            // ESE makes the instance unavailable; recovery at the next init finishes it.
            self.inst.fatal(&e);
            return Err(e);
        }
        let open = t.is_open();
        let target = t.level();
        let mut checks = Vec::new();
        if !open {
            st.trx = None;
            checks = std::mem::take(&mut st.zero_checks);
        }
        st.level_end(None, &LevelEnd::RolledBack { to: target });
        drop(st);
        if !checks.is_empty() {
            crate::special::run_zero_checks(self, checks);
        }
        while self.core.level() > target {
            call.pop_level();
        }
        Ok(())
    }

    /// Test hook: runs `f` while this thread is inside a call on the session, so a test can
    /// observe what a concurrent caller gets (`SessionSharingViolation`).
    ///
    /// # Errors
    /// The errors of entering a session call (see [`Session::begin_transaction2`]).
    #[doc(hidden)]
    pub fn with_call_held(&self, f: impl FnOnce()) -> Result<()> {
        let _call = self.enter(false)?;
        f();
        Ok(())
    }

    /// The current transaction level, 0 outside a transaction (JetGetSessionInfo's level).
    ///
    /// # Errors
    /// `SessionSharingViolation` (-1910) while another thread is inside a call on the session;
    /// `InvalidSesid` (-1104); the instance errors except stop service (exempt).
    pub fn transaction_level(&self) -> Result<u32> {
        let _call = self.enter(true)?;
        Ok(self.core.level())
    }
}

/// Whether an error is a failed write or sync that must stop the instance (fail-stop).
pub(crate) fn is_fatal_io(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::LogWriteFail
            | ErrorKind::LogDiskFull
            | ErrorKind::DiskIO
            | ErrorKind::DiskFull
            | ErrorKind::DatabaseUnavailable
    )
}
