//! The write-ahead log of the engine (ESE's log manager).
//!
//! - [`Log`]: a log stream open for writing: [`Log::append`] returns a record's [`Lgpos`],
//!   [`Log::flush`] waits until records are durable with group commit, a background flusher
//!   bounds lazy commits, generations roll over at a fixed size, the checkpoint file is
//!   updated with [`Log::write_checkpoint`], and old generations are deleted by circular
//!   logging or [`Log::truncate`].
//! - [`LogReader`]: iterates records from an LGPOS forwards across generations, for recovery
//!   and `esedump log`, telling a clean crash tail from corruption.
//! - [`Checkpoint`]: the content of `edb.chk`.
//!
//! Files, in the log directory (base name `edb`): `edb.log` (current generation),
//! `edbXXXXXXXX.log` (finished generations), `edbtmp.log` (next generation being prepared),
//! `edbres00001.jrs`/`edbres00002.jrs` (reserve logs), `edb.chk` (checkpoint). The byte
//! layout is in `docs/format-log.md`. All I/O goes through [`ese_core::fs::FileSystem`].
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use ese_core::{Lgpos, fs::OsFs};
//! use ese_log::{Log, LogConfig, LogReader};
//!
//! # fn main() -> ese_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let fs = Arc::new(OsFs::new());
//! let config = LogConfig::new(dir.path()).file_size_kib(64);
//! let log = Log::open(fs.clone(), config)?;
//! let a = log.append(b"begin")?;          // lazy: not yet durable
//! let b = log.append_and_flush(b"commit")?; // durable commit: both records are durable
//! assert!(a < b && log.durable_lgpos() >= b);
//! log.write_checkpoint(a, b"db list")?;
//! drop(log);
//!
//! let records: Vec<_> = LogReader::open(fs, dir.path(), "edb", Lgpos::MIN)?
//!     .collect::<ese_core::Result<_>>()?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[1].payload, b"commit");
//! # Ok(())
//! # }
//! ```
//!
//! [`Lgpos`]: ese_core::Lgpos

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod bytes;
mod checkpoint;
mod config;
mod files;
mod generation;
mod header;
mod reader;
mod record;
mod writer;

pub use checkpoint::{Checkpoint, MAX_DB_LIST_BYTES};
pub use config::{
    DEFAULT_FILE_SIZE_KIB, LogConfig, MAX_FILE_SIZE_KIB, MIN_FILE_SIZE_KIB, SECTOR_SIZE,
};
pub use header::{LogFileHeader, LogSignature};
pub use reader::{LogReader, LogRecord};
pub use writer::{GENERATION_MAX, Log, SYNC_BEHIND_BYTES};
