//! Sessions: the session table with its quota, concurrent-entry detection, transaction thread
//! binding, session context and the end-session protocol (ESE-REFERENCE §2.3–§2.4).
//!
//! # Thread-affinity rules, as ESE implements them
//! 1. **No concurrent use.** Every session call sets the session's in-call flag
//!    ([`SessionCore::enter`]); a second thread inside the same session gets
//!    `SessionSharingViolation` (-1910).
//! 2. **A transaction is bound to its creator.** The level-0 begin binds the transaction to the
//!    calling thread, or to the session context if one is set. Nested begin, commit and
//!    rollback check the binding: without a context, the caller must be the binding thread;
//!    with a context, the session's context must still be that value **and** have been set by
//!    the calling thread. A mismatch is -1910. Plain DML is not checked per thread. The binding
//!    ends when the transaction returns to level 0.
//! 3. **Session context.** [`SessionCore::set_context`] compare-and-swaps the context from 0
//!    to the value (already set → `SessionContextAlreadySet` -1912; 0 and `usize::MAX` →
//!    `InvalidParameter` -1003) and records the calling thread; [`SessionCore::reset_context`]
//!    requires that thread (`SessionContextNotSetByThisThread` -1913). Setting does not use the
//!    in-call counter, so when many threads race on one session exactly one wins and the
//!    others get -1912: a session pool needs no external state.
//! 4. **End session locks the session with the context word**: it swaps the context from 0 to
//!    a sentinel; a context still set → `SessionInUse` (-1914).

use std::collections::BTreeMap;
use std::sync::Arc;

use ese_core::{Error, ErrorKind, Result};

use crate::gate::InstanceGate;
use crate::sync::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, current_thread_id,
    lock, pause,
};

/// The deepest user transaction level (ESE's `levelUserMost`); a begin at this level fails
/// with `TransTooDeep`.
pub const MAX_TRANSACTION_LEVEL: u32 = 7;

/// The default session quota (ESE's `JET_paramMaxSessions` legacy default).
pub const DEFAULT_MAX_SESSIONS: u32 = 16;

/// The largest session quota ESE accepts (`JET_paramMaxSessions` range 0–30000).
pub const MAX_SESSIONS_LIMIT: u32 = 30_000;

/// Context sentinel while end session holds the session (ESE's `dwPIBSessionContextUnusable`).
const CONTEXT_UNUSABLE: usize = usize::MAX;
/// No context (ESE's `dwPIBSessionContextNull`).
const CONTEXT_NULL: usize = 0;

const BIND_NONE: u8 = 0;
const BIND_THREAD: u8 = 1;
const BIND_CONTEXT: u8 = 2;

/// A session id (ESE's `JET_SESID`): unique for the life of the process, never reused, so a
/// stale handle can never reach another session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sesid(pub u64);

impl std::fmt::Display for Sesid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sesid {}", self.0)
    }
}

/// What a transaction is bound to (ESE's `dwTrxContext`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrxBinding {
    /// No transaction.
    None,
    /// Bound to the thread with this id (no context was set at the level-0 begin).
    Thread(u64),
    /// Bound to this session context value.
    Context(usize),
}

/// The engine-side state of one session (ESE's `PIB`, the parts this layer owns).
///
/// Aligned to a cache line so the hot counters of two sessions used by two threads never
/// share one (false sharing doubled the per-call cost with two threads in the gate benchmark).
#[derive(Debug)]
#[repr(align(128))]
pub struct SessionCore {
    sesid: Sesid,
    /// 1 while a thread is inside a call on this session, else 0 (ESE's `m_cInJetAPI`, which
    /// ESE raises with an atomic increment and lowers again on a conflict; here a
    /// compare-exchange from 0 enters, so leaving is a plain store).
    in_call: AtomicU32,
    ended: AtomicBool,
    /// The session context (ESE's `dwSessionContext`): 0, a user value, or the end sentinel.
    context: AtomicUsize,
    /// The thread that set the context (ESE's `dwSessionContextThreadId`); 0 when none.
    context_thread: AtomicU64,
    /// Current transaction level, 0..=7.
    level: AtomicU32,
    bind_kind: AtomicU8,
    bind_value: AtomicU64,
}

impl SessionCore {
    fn new(sesid: Sesid) -> SessionCore {
        SessionCore {
            sesid,
            in_call: AtomicU32::new(0),
            ended: AtomicBool::new(false),
            context: AtomicUsize::new(CONTEXT_NULL),
            context_thread: AtomicU64::new(0),
            level: AtomicU32::new(0),
            bind_kind: AtomicU8::new(BIND_NONE),
            bind_value: AtomicU64::new(0),
        }
    }

    /// The session's id.
    pub fn sesid(&self) -> Sesid {
        self.sesid
    }

    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The current transaction level (0 outside a transaction). Corresponds to the level
    /// reported by `JetGetSessionInfo`.
    pub fn level(&self) -> u32 {
        self.level.load(Ordering::Acquire)
    }

    /// The session context, if a user context is set.
    pub fn context(&self) -> Option<usize> {
        match self.context.load(Ordering::Acquire) {
            CONTEXT_NULL | CONTEXT_UNUSABLE => None,
            c => Some(c),
        }
    }

    /// What the open transaction is bound to.
    pub fn binding(&self) -> TrxBinding {
        let v = self.bind_value.load(Ordering::Acquire);
        match self.bind_kind.load(Ordering::Acquire) {
            BIND_THREAD => TrxBinding::Thread(v),
            BIND_CONTEXT => TrxBinding::Context(v as usize),
            _ => TrxBinding::None,
        }
    }

    /// Enters a call on this session: the instance checks, then the session's own checks, in
    /// ESE's order (`APICALL_SESID::FEnter`). The returned guard leaves the call when dropped.
    ///
    /// # Errors
    /// The instance errors of [`InstanceGate::check_session_call`]; `InvalidSesid` (-1104)
    /// after the session ended; `SessionSharingViolation` (-1910) if another thread is inside
    /// a call on this session; `TermInProgress` (-1000) if term started meanwhile.
    #[inline]
    pub fn enter<'a>(&'a self, gate: &InstanceGate, exempt_stop: bool) -> Result<SessionCall<'a>> {
        gate.check_session_call(exempt_stop)?;
        if self.ended.load(Ordering::Acquire) {
            return Err(self.invalid());
        }
        // One locked operation per call: a thread that finds the session in a call leaves the
        // counter as it is, so the thread inside can leave with a plain store.
        if self
            .in_call
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return Err(Error::new(ErrorKind::SessionSharingViolation)
                .with_message(format!("{} is in use by another thread", self.sesid)));
        }
        let call = SessionCall { core: self };
        if gate.term_in_progress() {
            return Err(Error::new(ErrorKind::TermInProgress));
        }
        if self.ended.load(Ordering::Acquire) {
            return Err(self.invalid());
        }
        Ok(call)
    }

    /// [`SessionCore::enter`], the call held by reference count ([`OwnedSessionCall`]).
    ///
    /// # Errors
    /// As [`SessionCore::enter`].
    #[inline]
    pub fn enter_owned(
        self: &Arc<Self>,
        gate: &InstanceGate,
        exempt_stop: bool,
    ) -> Result<OwnedSessionCall> {
        Self::enter_with(Arc::clone(self), gate, exempt_stop)
    }

    /// [`SessionCore::enter_owned`] with the reference count given: `core` is a clone of
    /// this session's `Arc` that the caller kept from an earlier call
    /// ([`OwnedSessionCall::finish`]), so that a cursor clones the `Arc` (a locked
    /// read-modify-write of the count, on a line every handle of the session shares) once,
    /// not once per call. On an error, `core` is dropped.
    ///
    /// # Errors
    /// As [`SessionCore::enter`].
    #[inline]
    pub fn enter_with(
        core: Arc<Self>,
        gate: &InstanceGate,
        exempt_stop: bool,
    ) -> Result<OwnedSessionCall> {
        let call = core.enter(gate, exempt_stop)?;
        // The guard's count of the call passes to the owned guard, which gives it back.
        std::mem::forget(call);
        Ok(OwnedSessionCall { core: Some(core) })
    }

    /// Ends the call [`SessionCore::enter`] began (the call guards' drop).
    #[inline]
    fn leave(&self) {
        // Only the thread whose compare-exchange set 1 is inside (`enter`), so no other thread
        // writes the counter meanwhile; the release pairs with term's load in
        // `wait_until_idle`, which then sees everything the call did.
        self.in_call.store(0, Ordering::Release);
    }

    #[cold]
    fn invalid(&self) -> Error {
        Error::new(ErrorKind::InvalidSesid).with_message(format!("{} has ended", self.sesid))
    }

    /// JetSetSessionContext: associates the session with the calling thread under `context`.
    ///
    /// # Errors
    /// The instance errors of [`InstanceGate::check_session_call`] (stop service is not
    /// exempt); `InvalidSesid` after end; `InvalidParameter` (-1003) for 0 or `usize::MAX`;
    /// `SessionContextAlreadySet` (-1912) if a context is set (or end session holds the
    /// session). On failure nothing changes.
    pub fn set_context(&self, gate: &InstanceGate, context: usize) -> Result<()> {
        gate.check_session_call(false)?;
        if self.ended.load(Ordering::Acquire) {
            return Err(self.invalid());
        }
        if context == CONTEXT_NULL || context == CONTEXT_UNUSABLE {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("the session context may not be 0 or -1"));
        }
        // The thread id is published before the context, so whoever observes the new context
        // also observes who set it. Losers of the race never touch context_thread.
        let me = current_thread_id();
        match self.context.compare_exchange(
            CONTEXT_NULL,
            context,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => {
                self.context_thread.store(me, Ordering::SeqCst);
                Ok(())
            }
            Err(_) => Err(Error::new(ErrorKind::SessionContextAlreadySet)),
        }
    }

    /// JetResetSessionContext: disassociates the session from the calling thread.
    ///
    /// # Errors
    /// The instance errors of [`InstanceGate::check_session_call`] (stop service is exempt);
    /// `InvalidSesid` after end; `SessionContextNotSetByThisThread` (-1913) if no context is
    /// set or another thread set it. On failure nothing changes.
    pub fn reset_context(&self, gate: &InstanceGate) -> Result<()> {
        gate.check_session_call(true)?;
        if self.ended.load(Ordering::Acquire) {
            return Err(self.invalid());
        }
        let me = current_thread_id();
        let ctx = self.context.load(Ordering::SeqCst);
        if ctx == CONTEXT_NULL
            || ctx == CONTEXT_UNUSABLE
            || self.context_thread.load(Ordering::SeqCst) != me
        {
            return Err(Error::new(ErrorKind::SessionContextNotSetByThisThread));
        }
        self.context_thread.store(0, Ordering::SeqCst);
        self.context.store(CONTEXT_NULL, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the calling thread may continue the open transaction (ESE's
    /// `FPIBCheckTrxContext`).
    fn trx_context_ok(&self) -> bool {
        let me = current_thread_id();
        match self.binding() {
            TrxBinding::None => true,
            TrxBinding::Thread(t) => t == me,
            TrxBinding::Context(c) => {
                self.context.load(Ordering::SeqCst) == c
                    && self.context_thread.load(Ordering::SeqCst) == me
            }
        }
    }

    fn affinity_error(&self) -> Error {
        Error::new(ErrorKind::SessionSharingViolation).with_message(format!(
            "the transaction of {} is bound to another thread or session context",
            self.sesid
        ))
    }
}

/// A call in progress on a session (see [`SessionCore::enter`]). Transaction-level changes go
/// through it, so only the thread inside the session can make them.
#[derive(Debug)]
pub struct SessionCall<'a> {
    core: &'a SessionCore,
}

impl SessionCall<'_> {
    /// The session.
    pub fn core(&self) -> &SessionCore {
        self.core
    }

    /// Checks a begin transaction: nested begins must come from the bound thread or context.
    ///
    /// # Errors
    /// `SessionSharingViolation` (-1910) on an affinity mismatch; `TransTooDeep` (-1103) at
    /// level 7.
    pub fn check_begin(&self) -> Result<()> {
        let level = self.core.level();
        if level > 0 && !self.core.trx_context_ok() {
            return Err(self.core.affinity_error());
        }
        if level >= MAX_TRANSACTION_LEVEL {
            return Err(Error::new(ErrorKind::TransTooDeep));
        }
        Ok(())
    }

    /// Records a successful begin: level + 1; a level-0 begin binds the transaction to the
    /// session context if one is set, else to the calling thread. Call after
    /// [`SessionCall::check_begin`] and after the transaction layer began the level.
    pub fn push_level(&self) {
        let c = self.core;
        let level = c.level.load(Ordering::Acquire);
        if level == 0 {
            match c.context.load(Ordering::SeqCst) {
                CONTEXT_NULL | CONTEXT_UNUSABLE => {
                    c.bind_value.store(current_thread_id(), Ordering::Release);
                    c.bind_kind.store(BIND_THREAD, Ordering::Release);
                }
                ctx => {
                    c.bind_value.store(ctx as u64, Ordering::Release);
                    c.bind_kind.store(BIND_CONTEXT, Ordering::Release);
                }
            }
        }
        c.level.store(level + 1, Ordering::Release);
    }

    /// Checks a commit or rollback.
    ///
    /// # Errors
    /// `NotInTransaction` (-1054) at level 0; `SessionSharingViolation` (-1910) if the caller
    /// is not the bound thread or context.
    pub fn check_commit_or_rollback(&self) -> Result<()> {
        if self.core.level() == 0 {
            return Err(Error::new(ErrorKind::NotInTransaction));
        }
        if !self.core.trx_context_ok() {
            return Err(self.core.affinity_error());
        }
        Ok(())
    }

    /// Records a level ended by commit or rollback; at level 0 the binding is released.
    pub fn pop_level(&self) {
        let c = self.core;
        let level = c.level.load(Ordering::Acquire).saturating_sub(1);
        c.level.store(level, Ordering::Release);
        if level == 0 {
            c.bind_kind.store(BIND_NONE, Ordering::Release);
            c.bind_value.store(0, Ordering::Release);
        }
    }

    /// First step of JetEndSession: locks the session against set-context and checks that the
    /// open transaction (if any) may be rolled back by the caller. On success the caller rolls
    /// back every level, closes what the session holds, then calls [`SessionTable::remove`];
    /// on failure of that work it calls [`SessionCall::unlock_end`].
    ///
    /// # Errors
    /// `SessionInUse` (-1914) if a session context is set; `SessionSharingViolation` (-1910)
    /// if the open transaction is bound to another thread (a context-bound transaction may be
    /// rolled back from any thread). On error the session is unchanged.
    pub fn lock_for_end(&self) -> Result<()> {
        let c = self.core;
        if c.context
            .compare_exchange(
                CONTEXT_NULL,
                CONTEXT_UNUSABLE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_err()
        {
            return Err(Error::new(ErrorKind::SessionInUse)
                .with_message("reset the session context before ending the session"));
        }
        if c.level() > 0
            && let TrxBinding::Thread(t) = c.binding()
            && t != current_thread_id()
        {
            c.context.store(CONTEXT_NULL, Ordering::SeqCst);
            return Err(c.affinity_error());
        }
        Ok(())
    }

    /// Undoes [`SessionCall::lock_for_end`] after the end-session work failed: the session
    /// stays usable.
    pub fn unlock_end(&self) {
        self.core
            .context
            .compare_exchange(
                CONTEXT_UNUSABLE,
                CONTEXT_NULL,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .ok();
    }
}

impl Drop for SessionCall<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.leave();
    }
}

/// A call in progress on a session, as [`SessionCall`], holding the session by one reference
/// count instead of a borrow: for a cursor's methods, which own a handle to their session and
/// borrow themselves mutably during the call ([`SessionCore::enter_owned`]).
#[derive(Debug)]
pub struct OwnedSessionCall {
    /// The session; `None` only once [`OwnedSessionCall::finish`] took it.
    core: Option<Arc<SessionCore>>,
}

impl OwnedSessionCall {
    /// Ends the call and hands back the reference count it held, for the next call of the
    /// same cursor ([`SessionCore::enter_with`]).
    #[inline]
    pub fn finish(mut self) -> Option<Arc<SessionCore>> {
        self.core.take().inspect(|core| core.leave())
    }
}

impl Drop for OwnedSessionCall {
    #[inline]
    fn drop(&mut self) {
        if let Some(core) = &self.core {
            core.leave();
        }
    }
}

/// The sessions of one instance, with the quota (ESE's PIB pool and `JET_paramMaxSessions`).
#[derive(Debug)]
pub struct SessionTable {
    sessions: Mutex<BTreeMap<Sesid, Arc<SessionCore>>>,
    next: AtomicU64,
    max_sessions: u32,
}

impl SessionTable {
    /// An empty table admitting at most `max_sessions` sessions at once.
    ///
    /// # Errors
    /// `InvalidParameter` if `max_sessions` exceeds 30,000 (ESE's range).
    pub fn new(max_sessions: u32) -> Result<SessionTable> {
        if max_sessions > MAX_SESSIONS_LIMIT {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message(format!(
                    "max sessions {max_sessions} is over {MAX_SESSIONS_LIMIT}"
                )),
            );
        }
        Ok(SessionTable {
            sessions: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            max_sessions,
        })
    }

    /// The quota.
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether there are no live sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a session (JetBeginSession's allocation of a PIB).
    ///
    /// # Errors
    /// `OutOfSessions` (-1101) when the quota is reached.
    pub fn begin(&self) -> Result<Arc<SessionCore>> {
        let mut map = lock(&self.sessions);
        if map.len() >= self.max_sessions as usize {
            return Err(Error::new(ErrorKind::OutOfSessions).with_message(format!(
                "{} sessions are open (the maximum)",
                self.max_sessions
            )));
        }
        let sesid = Sesid(self.next.fetch_add(1, Ordering::Relaxed));
        let core = Arc::new(SessionCore::new(sesid));
        map.insert(sesid, Arc::clone(&core));
        Ok(core)
    }

    /// Ends `core`: marks it ended (every later call gets `InvalidSesid`) and frees its slot.
    pub fn remove(&self, core: &SessionCore) {
        core.ended.store(true, Ordering::SeqCst);
        core.context_thread.store(0, Ordering::SeqCst);
        lock(&self.sessions).remove(&core.sesid);
    }

    /// The live sessions, in sesid order.
    pub fn snapshot(&self) -> Vec<Arc<SessionCore>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Whether any live session has an open transaction (term refuses with
    /// `TooManyActiveUsers` then).
    pub fn any_in_transaction(&self) -> bool {
        lock(&self.sessions).values().any(|s| s.level() > 0)
    }

    /// Waits until no thread is inside a call on any session (term, after setting
    /// term-in-progress; ESE spins on every PIB's `m_cInJetAPI`).
    pub fn wait_until_idle(&self) {
        for s in self.snapshot() {
            while s.in_call.load(Ordering::SeqCst) != 0 {
                pause();
            }
        }
    }
}
