//! The instance: parameters, init, term, stop service, and the session factory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_core::fs::{FileSystem, OsFs};
use ese_core::{Error, ErrorKind, Result};
use ese_session::{InstanceGate, InstanceState, SessionTable};

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
    /// The directory of the checkpoint file (`JET_paramSystemPath`). Default: the current
    /// directory.
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
            }),
        })
    }
}

pub(crate) struct InstanceInner {
    pub(crate) params: Params,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) gate: InstanceGate,
    pub(crate) sessions: SessionTable,
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

    /// Initializes the instance (JetInit): creates the system and log directories if needed and
    /// makes the instance ready for sessions.
    ///
    /// # Errors
    /// `AlreadyInitialized` (-1030) if it is running or a restore runs; `InitInProgress`
    /// (-1031) if another init runs; `InvalidInstance` (-1115) after a failed init; any I/O
    /// error (`DiskIO`, `FileAccessDenied`, `DiskFull`) creating the directories, after which
    /// the instance is dead (as ESE frees an instance whose init fails).
    pub fn init(&self) -> Result<()> {
        let guard = self.inner.gate.begin_init()?;
        let p = &self.inner.params;
        self.inner.fs.create_dir_all(&p.system_path)?;
        self.inner.fs.create_dir_all(&p.log_path)?;
        guard.succeed();
        Ok(())
    }

    /// Terminates the instance (JetTerm2): waits for calls in flight, ends every session and
    /// returns the instance to the created state.
    ///
    /// A term of a created-but-never-initialized instance succeeds and does nothing.
    ///
    /// # Errors
    /// `TooManyActiveUsers` (-1059) while any session has an open transaction (the instance
    /// stays running and usable); `TermInProgress` (-1000) if another term runs;
    /// `RestoreInProgress` (-506) during a restore; `NotInitialized` (-1029) during init;
    /// `InvalidInstance` (-1115) after a failed init; with [`TermGrbit::DIRTY`], success is
    /// reported as `DirtyShutdown` (-1116): the instance is down but its databases need
    /// recovery.
    pub fn term(&self, grbit: TermGrbit) -> Result<()> {
        let inner = &self.inner;
        let Some(guard) = inner.gate.begin_term(&inner.sessions)? else {
            return Ok(());
        };
        if inner.sessions.any_in_transaction() {
            guard.abort();
            return Err(Error::new(ErrorKind::TooManyActiveUsers)
                .with_message("a session still has an open transaction"));
        }
        for core in inner.sessions.snapshot() {
            inner.sessions.remove(&core);
        }
        guard.complete();
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
        Ok(Session::new(Arc::clone(&self.inner), core))
    }

    /// Test hook: holds init, term or restore at a point (see [`ese_session::HoldPoint`]).
    #[doc(hidden)]
    pub fn set_hold_hook(&self, hook: Option<Box<dyn Fn(ese_session::HoldPoint) + Send + Sync>>) {
        self.inner.gate.set_hold_hook(hook);
    }
}
