//! The instance gate: the state of an instance and the checks every call enters through.
//!
//! This follows ESE's `INST` gate (`m_cSessionInJetAPI` and its lock bits, `m_fJetInitialized`,
//! `m_fTermInProgress`, `m_fStopJetService`, `m_errInstanceUnavailable`; ESE-REFERENCE §1.2–§1.4):
//!
//! - **Instance-level calls** (begin session, backup) enter with [`InstanceGate::enter`]:
//!   stop-service → `ClientRequestToStopJetService` (-1329); unavailable → `InstanceUnavailable`
//!   (-1090, or -1092 after a fatal log-disk-full); then one atomic add to the gate word; a lock
//!   bit set → `TermInProgress` (-1000), `RestoreInProgress` (-506) or `NotInitialized` (-1029)
//!   for initializing; not initialized → `NotInitialized`.
//! - **Session-level calls** check the instance with [`InstanceGate::check_session_call`] and
//!   then enter the session itself ([`crate::SessionCore::enter`]), which re-checks term after
//!   its own counter is raised, so term never misses a call in flight.
//! - **Init, term and restore** take the gate exclusively ([`InstanceGate::begin_init`],
//!   [`InstanceGate::begin_term`], [`InstanceGate::begin_restore`]): they set their lock bit
//!   and wait until no instance-level call is inside.
//!
//! # States
//! | state | how | begin session | session calls | init | term |
//! |---|---|---|---|---|---|
//! | created | new, or after term | -1029 | -1029 | runs | succeeds (nothing to do) |
//! | initializing | init running (recovery) | -1029 | -1029 | -1031 | -1029 |
//! | running | init succeeded | ok | ok | -1030 | runs |
//! | restoring | restore running | -506 | -506 | -1030 | -506 |
//! | terminating | term running | -1000 | -1000 | -1030 | -1000 |
//! | stopped (flag) | after stop service | -1329 | -1329 except the exempt list | -1030 | runs |
//! | unavailable (flag) | after a fatal error | -1090/-1092 | -1090/-1092 | -1030 | runs (dirty) |
//! | freed | init failed | -1115 | -1115 | -1115 | -1115 |
//!
//! A failed init leaves the instance freed, as ESE destroys an instance whose `JetInit` fails:
//! the handle is dead and every call on it returns `InvalidInstance` (-1115). Create a new
//! instance to try again.

use ese_core::{Error, ErrorKind, Result};

use crate::sync::{AtomicBool, AtomicU32, Mutex, Ordering, lock, pause};

/// Low 24 bits of the gate word: instance-level calls inside (ESE's `maskAPISessionCount`).
const COUNT_MASK: u32 = 0x00FF_FFFF;
/// Lock bit: init (and recovery) running (ESE's `fAPIInitializing`).
const LOCK_INITIALIZING: u32 = 0x1000_0000;
/// Lock bit: term running (ESE's `fAPITerminating`).
const LOCK_TERMINATING: u32 = 0x2000_0000;
/// Lock bit: restore running (ESE's `fAPIRestoring`).
const LOCK_RESTORING: u32 = 0x4000_0000;
const LOCK_MASK: u32 = LOCK_INITIALIZING | LOCK_TERMINATING | LOCK_RESTORING;

/// Unavailable code: 0 while healthy.
const HEALTHY: u32 = 0;
const UNAVAILABLE: u32 = 1;
const UNAVAILABLE_LOG_DISK_FULL: u32 = 2;

/// The state of an instance, as [`InstanceGate::state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// Created or terminated, not initialized.
    Created,
    /// Init (with soft recovery) is running.
    Initializing,
    /// Initialized and serving calls.
    Running,
    /// A restore is running against the instance.
    Restoring,
    /// Term is running.
    Terminating,
    /// Init failed; the instance is dead (`InvalidInstance` on every call).
    Freed,
}

/// Points inside init, term and restore where a test can hold the operation, to observe what
/// concurrent calls get (`TermInProgress`, `RestoreInProgress`, ...).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldPoint {
    /// Term has set term-in-progress and its lock, before it checks for open transactions.
    TermLocked,
    /// Restore has taken the gate, before it copies anything.
    RestoreLocked,
    /// Init has taken the gate, before recovery runs.
    InitLocked,
}

type Hook = Box<dyn Fn(HoldPoint) + Send + Sync>;

/// The gate of one instance. See the module docs for the states and the error each yields.
pub struct InstanceGate {
    word: AtomicU32,
    initialized: AtomicBool,
    term_in_progress: AtomicBool,
    stop_service: AtomicBool,
    unavailable: AtomicU32,
    freed: AtomicBool,
    /// The first fatal error, kept for diagnostics (ESE records it once, never clears it).
    fatal: Mutex<Option<Error>>,
    /// Serializes init, term and restore (ESE's per-instance critical section).
    transition: Mutex<()>,
    hook: Mutex<Option<std::sync::Arc<Hook>>>,
}

impl std::fmt::Debug for InstanceGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceGate")
            .field("state", &self.state())
            .field("stop_service", &self.stop_service.load(Ordering::Relaxed))
            .field("unavailable", &self.unavailable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for InstanceGate {
    fn default() -> Self {
        Self::new()
    }
}

impl InstanceGate {
    /// A gate in the created (not initialized) state.
    pub fn new() -> InstanceGate {
        InstanceGate {
            word: AtomicU32::new(0),
            initialized: AtomicBool::new(false),
            term_in_progress: AtomicBool::new(false),
            stop_service: AtomicBool::new(false),
            unavailable: AtomicU32::new(HEALTHY),
            freed: AtomicBool::new(false),
            fatal: Mutex::new(None),
            transition: Mutex::new(()),
            hook: Mutex::new(None),
        }
    }

    /// The current state.
    pub fn state(&self) -> InstanceState {
        if self.freed.load(Ordering::Acquire) {
            return InstanceState::Freed;
        }
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_RESTORING != 0 {
            InstanceState::Restoring
        } else if w & LOCK_INITIALIZING != 0 {
            InstanceState::Initializing
        } else if w & LOCK_TERMINATING != 0 || self.term_in_progress.load(Ordering::Acquire) {
            InstanceState::Terminating
        } else if self.initialized.load(Ordering::Acquire) {
            InstanceState::Running
        } else {
            InstanceState::Created
        }
    }

    /// Whether stop service was requested.
    pub fn is_stopped(&self) -> bool {
        self.stop_service.load(Ordering::Acquire)
    }

    /// The first fatal error, if the instance is unavailable.
    pub fn fatal_error(&self) -> Option<Error> {
        lock(&self.fatal).clone()
    }

    /// Installs a hook called at each [`HoldPoint`]; tests use it to hold init, term or
    /// restore at a known point while another thread calls in.
    #[doc(hidden)]
    pub fn set_hold_hook(&self, hook: Option<Hook>) {
        *lock(&self.hook) = hook.map(std::sync::Arc::new);
    }

    pub(crate) fn hold(&self, point: HoldPoint) {
        let hook = lock(&self.hook).clone();
        if let Some(h) = hook {
            h(point);
        }
    }

    /// The error of an instance made unavailable by a fatal error, if it was: one load on
    /// every call, the error built out of line.
    #[inline]
    fn unavailable_error(&self) -> Option<Error> {
        match self.unavailable.load(Ordering::Acquire) {
            HEALTHY => None,
            state => Some(Self::unavailable_state_error(state)),
        }
    }

    #[cold]
    fn unavailable_state_error(state: u32) -> Error {
        match state {
            UNAVAILABLE_LOG_DISK_FULL => {
                Error::new(ErrorKind::InstanceUnavailableDueToFatalLogDiskFull)
            }
            _ => Error::new(ErrorKind::InstanceUnavailable),
        }
    }

    fn freed_error() -> Error {
        Error::new(ErrorKind::InvalidInstance)
            .with_message("the instance was freed after a failed init")
    }

    /// The error ESE's gate gives for a lock bit (or for not being initialized).
    fn lock_error(w: u32) -> Error {
        if w & LOCK_TERMINATING != 0 {
            Error::new(ErrorKind::TermInProgress)
        } else if w & LOCK_RESTORING != 0 {
            Error::new(ErrorKind::RestoreInProgress)
        } else {
            Error::new(ErrorKind::NotInitialized)
        }
    }

    /// Records a fatal error (failed log or database write, failed rollback): from now on every
    /// call gets `InstanceUnavailable` (-1090), or `InstanceUnavailableDueToFatalLogDiskFull`
    /// (-1092) when `err` is `LogDiskFull`. Only the first error is kept. Corresponds to ESE's
    /// `INST::SetInstanceUnavailable`.
    pub fn set_unavailable(&self, err: &Error) {
        let code = if err.kind() == ErrorKind::LogDiskFull {
            UNAVAILABLE_LOG_DISK_FULL
        } else {
            UNAVAILABLE
        };
        if self
            .unavailable
            .compare_exchange(HEALTHY, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *lock(&self.fatal) = Some(err.clone());
        }
    }

    /// Requests stop service (JetStopServiceInstance): from now on every call except the
    /// exempt ones gets `ClientRequestToStopJetService` (-1329). Not reversible.
    ///
    /// # Errors
    /// As an instance-level call: `NotInitialized`, `TermInProgress`, `RestoreInProgress`,
    /// `InvalidInstance` (freed). A second stop is accepted.
    pub fn stop_service(&self) -> Result<()> {
        if self.freed.load(Ordering::Acquire) {
            return Err(Self::freed_error());
        }
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_MASK != 0 {
            return Err(Self::lock_error(w));
        }
        if !self.initialized.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::NotInitialized));
        }
        self.stop_service.store(true, Ordering::Release);
        Ok(())
    }

    /// Enters an instance-level call (JetBeginSession, backup): the returned guard keeps the
    /// call counted until dropped, so init, term and restore wait for it.
    ///
    /// # Errors
    /// In ESE's order: `InvalidInstance` (freed), `ClientRequestToStopJetService`,
    /// `InstanceUnavailable` / `InstanceUnavailableDueToFatalLogDiskFull`, then the lock bits:
    /// `TermInProgress`, `RestoreInProgress`, `NotInitialized` (initializing), and finally
    /// `NotInitialized` if the instance is not initialized.
    pub fn enter(&self) -> Result<InstanceCall<'_>> {
        if self.freed.load(Ordering::Acquire) {
            return Err(Self::freed_error());
        }
        if self.stop_service.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::ClientRequestToStopJetService));
        }
        if let Some(e) = self.unavailable_error() {
            return Err(e);
        }
        let w = self.word.fetch_add(1, Ordering::SeqCst);
        if w & LOCK_MASK != 0 {
            self.word.fetch_sub(1, Ordering::SeqCst);
            return Err(Self::lock_error(w));
        }
        if !self.initialized.load(Ordering::SeqCst) {
            self.word.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::new(ErrorKind::NotInitialized));
        }
        Ok(InstanceCall { gate: self })
    }

    /// The instance checks of a session-level call, before the session's own entry
    /// ([`crate::SessionCore::enter`]). `exempt_stop` is true for the calls ESE lets through
    /// after stop service: end session, rollback, close table/database, detach, reset context
    /// and session info.
    ///
    /// # Errors
    /// In order: `InvalidInstance` (freed), `RestoreInProgress` (restoring), `NotInitialized`
    /// (not initialized, or initializing), `TermInProgress`, `ClientRequestToStopJetService`
    /// (unless exempt), `InstanceUnavailable` / `InstanceUnavailableDueToFatalLogDiskFull`.
    #[inline]
    pub fn check_session_call(&self, exempt_stop: bool) -> Result<()> {
        if !self.initialized.load(Ordering::Acquire) || self.freed.load(Ordering::Relaxed) {
            return Err(self.not_running_error());
        }
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_MASK != 0 {
            return Err(Self::lock_error(w));
        }
        if self.term_in_progress.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::TermInProgress));
        }
        if !exempt_stop && self.stop_service.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::ClientRequestToStopJetService));
        }
        if let Some(e) = self.unavailable_error() {
            return Err(e);
        }
        Ok(())
    }

    #[cold]
    fn not_running_error(&self) -> Error {
        if self.freed.load(Ordering::Acquire) {
            return Self::freed_error();
        }
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_RESTORING != 0 {
            Error::new(ErrorKind::RestoreInProgress)
        } else if w & LOCK_TERMINATING != 0 || self.term_in_progress.load(Ordering::Acquire) {
            Error::new(ErrorKind::TermInProgress)
        } else {
            Error::new(ErrorKind::NotInitialized)
        }
    }

    /// Whether term is in progress; sessions re-check it after raising their own counter
    /// (ESE's second `m_fTermInProgress` check in `APICALL_SESID::FEnter`).
    #[inline]
    pub(crate) fn term_in_progress(&self) -> bool {
        self.term_in_progress.load(Ordering::SeqCst)
    }

    /// Sets `bit` in the gate word and waits until no instance-level call is inside (ESE's
    /// `APILock`). Fails if another lock bit is set.
    fn api_lock(&self, bit: u32) -> Result<()> {
        let mut w = self.word.load(Ordering::SeqCst);
        loop {
            if w & LOCK_MASK != 0 {
                return Err(Self::lock_error(w));
            }
            match self
                .word
                .compare_exchange(w, w | bit, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(actual) => w = actual,
            }
        }
        while self.word.load(Ordering::SeqCst) & COUNT_MASK != 0 {
            pause();
        }
        Ok(())
    }

    fn api_unlock(&self, bit: u32) {
        self.word.fetch_and(!bit, Ordering::SeqCst);
    }

    /// Starts init (JetInit): the instance becomes initializing until the returned guard is
    /// [`InitGuard::succeed`]ed (running) or dropped (failed: the instance is freed).
    ///
    /// # Errors
    /// `InvalidInstance` if freed; `AlreadyInitialized` (-1030) if running, restoring or
    /// terminating (ESE marks an instance initialized for the whole restore); `InitInProgress`
    /// (-1031) if another init is running.
    pub fn begin_init(&self) -> Result<InitGuard<'_>> {
        let t = lock(&self.transition);
        if self.freed.load(Ordering::Acquire) {
            return Err(Self::freed_error());
        }
        if self.initialized.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::AlreadyInitialized));
        }
        if self.word.load(Ordering::SeqCst) & LOCK_INITIALIZING != 0 {
            return Err(Error::new(ErrorKind::InitInProgress));
        }
        self.api_lock(LOCK_INITIALIZING)?;
        drop(t);
        self.hold(HoldPoint::InitLocked);
        Ok(InitGuard {
            gate: self,
            done: false,
        })
    }

    /// Starts a restore (JetRestoreInstance) on an instance that is not initialized: until the
    /// guard drops, the instance counts as initialized (so init gets `AlreadyInitialized`) and
    /// every other call gets `RestoreInProgress` (-506). Afterwards the instance is back in
    /// the created state.
    ///
    /// # Errors
    /// `InvalidInstance` if freed; `AlreadyInitialized` (-1030) if the instance is initialized
    /// or another restore runs; `TermInProgress` / `NotInitialized` if term or init holds the
    /// gate.
    pub fn begin_restore(&self) -> Result<RestoreGuard<'_>> {
        let t = lock(&self.transition);
        if self.freed.load(Ordering::Acquire) {
            return Err(Self::freed_error());
        }
        if self.initialized.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::AlreadyInitialized));
        }
        self.api_lock(LOCK_RESTORING)?;
        self.initialized.store(true, Ordering::SeqCst);
        drop(t);
        self.hold(HoldPoint::RestoreLocked);
        Ok(RestoreGuard { gate: self })
    }

    /// Starts term (JetTerm2). Returns `Ok(None)` when there is nothing to terminate (created
    /// but never initialized: ESE just frees it). Otherwise sets term-in-progress (new calls
    /// get `TermInProgress`), waits until every session in `sessions` has left the engine and
    /// no instance-level call is inside, and returns the guard; [`TermGuard::abort`] puts the
    /// instance back to running (e.g. `TooManyActiveUsers`), [`TermGuard::complete`] makes it
    /// created (not initialized) again.
    ///
    /// # Errors
    /// `InvalidInstance` if freed; `TermInProgress` if another term runs; `RestoreInProgress`
    /// while restoring; `NotInitialized` while initializing.
    pub fn begin_term<'a>(
        &'a self,
        sessions: &crate::SessionTable,
    ) -> Result<Option<TermGuard<'a>>> {
        let t = lock(&self.transition);
        if self.freed.load(Ordering::Acquire) {
            return Err(Self::freed_error());
        }
        let w = self.word.load(Ordering::SeqCst);
        if w & LOCK_MASK != 0 {
            return Err(Self::lock_error(w));
        }
        if self.term_in_progress.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::TermInProgress));
        }
        if !self.initialized.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.term_in_progress.store(true, Ordering::SeqCst);
        sessions.wait_until_idle();
        if let Err(e) = self.api_lock(LOCK_TERMINATING) {
            self.term_in_progress.store(false, Ordering::SeqCst);
            return Err(e);
        }
        drop(t);
        self.hold(HoldPoint::TermLocked);
        Ok(Some(TermGuard {
            gate: self,
            done: false,
        }))
    }
}

/// An instance-level call in progress (see [`InstanceGate::enter`]).
#[derive(Debug)]
pub struct InstanceCall<'a> {
    gate: &'a InstanceGate,
}

impl Drop for InstanceCall<'_> {
    fn drop(&mut self) {
        self.gate.word.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Init in progress (see [`InstanceGate::begin_init`]).
#[derive(Debug)]
pub struct InitGuard<'a> {
    gate: &'a InstanceGate,
    done: bool,
}

impl InitGuard<'_> {
    /// Init succeeded: the instance is running, with a fresh health state.
    pub fn succeed(mut self) {
        let g = self.gate;
        g.stop_service.store(false, Ordering::SeqCst);
        g.unavailable.store(HEALTHY, Ordering::SeqCst);
        *lock(&g.fatal) = None;
        g.initialized.store(true, Ordering::SeqCst);
        g.api_unlock(LOCK_INITIALIZING);
        self.done = true;
    }
}

impl Drop for InitGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A failed init frees the instance, as ESE destroys it (ErrTermAlloc).
            self.gate.freed.store(true, Ordering::SeqCst);
            self.gate.api_unlock(LOCK_INITIALIZING);
        }
    }
}

/// A restore in progress (see [`InstanceGate::begin_restore`]); dropping it ends the restore.
#[derive(Debug)]
pub struct RestoreGuard<'a> {
    gate: &'a InstanceGate,
}

impl Drop for RestoreGuard<'_> {
    fn drop(&mut self) {
        self.gate.initialized.store(false, Ordering::SeqCst);
        self.gate.api_unlock(LOCK_RESTORING);
    }
}

/// Term in progress (see [`InstanceGate::begin_term`]). Dropping it without `complete` or
/// `abort` aborts.
#[derive(Debug)]
pub struct TermGuard<'a> {
    gate: &'a InstanceGate,
    done: bool,
}

impl TermGuard<'_> {
    /// Term failed before its point of no return: the instance keeps running (ESE resets
    /// `m_fTermInProgress`).
    pub fn abort(mut self) {
        self.release(false);
    }

    /// Term finished: the instance is created (not initialized) again; it can be initialized
    /// anew, which runs recovery.
    pub fn complete(mut self) {
        self.release(true);
    }

    fn release(&mut self, completed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let g = self.gate;
        if completed {
            g.initialized.store(false, Ordering::SeqCst);
        }
        g.term_in_progress.store(false, Ordering::SeqCst);
        g.api_unlock(LOCK_TERMINATING);
    }
}

impl Drop for TermGuard<'_> {
    fn drop(&mut self) {
        self.release(false);
    }
}
