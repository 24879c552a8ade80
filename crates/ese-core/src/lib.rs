//! Foundation of the ESE-style storage engine: the JET error type, the ids every layer shares
//! and the file-system layer with crash simulation.
//!
//! - [`Error`] / [`ErrorKind`]: one error type for the whole engine; every kind carries ESE's
//!   exact numeric code (`JET_errSessionSharingViolation` is -1910).
//! - [`Lgpos`], [`Pgno`], [`DbTime`], [`TrxId`], [`ObjId`]: shared ids with their little-endian
//!   on-disk encodings.
//! - [`fs`]: the [`FileSystem`](fs::FileSystem) trait through which all I/O goes, with the real
//!   [`OsFs`](fs::OsFs) and the crash-simulating [`SimFs`](fs::SimFs).
//! - [`checksum`]: the CRC-32 used by every on-disk checksum.
//! - [`hint`]: cache prefetch hints for the hot paths above.

#![deny(unsafe_code)]

pub mod checksum;
mod error;
pub mod fs;
pub mod hint;
mod ids;

pub use error::{Error, ErrorKind, Result};
pub use ids::{DbTime, Lgpos, ObjId, Pgno, TrxId};
