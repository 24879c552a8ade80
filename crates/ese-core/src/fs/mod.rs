//! The file-system layer: every byte the engine reads or writes goes through [`FileSystem`].
//!
//! Two implementations:
//! - [`OsFs`]: the real file system (positional I/O, `fdatasync`, directory fsync, files
//!   created with mode 0600, exclusive locks with `flock`).
//! - [`SimFs`]: an in-memory file system for tests that keeps, per file and per directory, the
//!   durable image and the operations not yet synced, and can produce the image a power loss
//!   would leave ([`SimFs::crash`]) or fail a chosen operation ([`SimFs::inject_fault`]).
//!
//! # Durability contract (identical for both implementations)
//! - A file's data (writes and length changes) is durable once [`File::sync_data`] returns.
//! - A directory entry (create, rename, remove, hard link) is durable once
//!   [`FileSystem::sync_dir`] on its directory returns. Creating, renaming or removing a file
//!   does **not** sync its directory: the caller decides when (the log syncs the directory at
//!   rollover, before any record of the new generation is acknowledged).
//! - Reads always see the latest writes, synced or not.
//!
//! # Locks
//! [`Lock::Exclusive`] on open takes an exclusive lock on the file itself (its inode), so a second
//! exclusive or shared open of the same file fails with `FileAccessDenied`, whatever path
//! or hard link it is opened through. The lock is released when the handle is dropped.

mod os;
mod sim;

use std::fmt;
use std::path::Path;

pub use os::OsFs;
pub use sim::{CrashModel, Fault, FaultError, OpCounts, OpKind, SimFs};

use crate::error::{Error, ErrorKind, Result};

/// How a file is locked while a handle is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lock {
    /// No lock.
    #[default]
    None,
    /// A shared lock: other shared opens succeed, exclusive ones fail.
    Shared,
    /// An exclusive lock: every other locked open of the same file fails with
    /// `FileAccessDenied`.
    Exclusive,
}

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for writing as well as reading.
    pub write: bool,
    /// Create the file if it does not exist (implies `write`).
    pub create: bool,
    /// Fail with `FileAlreadyExists` if the file exists (implies `create`).
    pub create_new: bool,
    /// The lock to take on the file.
    pub lock: Lock,
    /// Write around the operating system's cache where the platform allows (ESE opens its log
    /// files unbuffered): a hint for files written once in large sector-aligned stretches
    /// and read back rarely, such as log generations. See [`OpenOptions::unbuffered`].
    pub unbuffered: bool,
}

impl OpenOptions {
    /// Read-only, no lock; the file must exist.
    pub const fn read() -> OpenOptions {
        OpenOptions {
            write: false,
            create: false,
            create_new: false,
            lock: Lock::None,
            unbuffered: false,
        }
    }

    /// Read-write, no lock; the file must exist.
    pub const fn read_write() -> OpenOptions {
        OpenOptions {
            write: true,
            ..OpenOptions::read()
        }
    }

    /// Read-write, created empty if it does not exist.
    pub const fn create() -> OpenOptions {
        OpenOptions {
            write: true,
            create: true,
            ..OpenOptions::read()
        }
    }

    /// Read-write, must not exist yet (`FileAlreadyExists` otherwise).
    pub const fn create_new() -> OpenOptions {
        OpenOptions {
            write: true,
            create: true,
            create_new: true,
            lock: Lock::None,
            unbuffered: false,
        }
    }

    /// The same options with `lock`.
    #[must_use]
    pub const fn lock(self, lock: Lock) -> OpenOptions {
        OpenOptions { lock, ..self }
    }

    /// The same options, with writes that bypass the operating system's cache where they can
    /// (Linux `O_DIRECT`; ESE's `FILE_FLAG_NO_BUFFERING` for log files). Only writes whose
    /// offset and length are multiples of [`UNBUFFERED_ALIGN`] bytes go around the cache, and
    /// only where the file system takes them (a device with larger sectors, or one without
    /// direct I/O such as tmpfs, keeps every write buffered); the others are written
    /// through the cache. Reads and the durability contract are unchanged: a write is durable
    /// after [`File::sync_data`], as any other. A hint: [`SimFs`] ignores it.
    #[must_use]
    pub const fn unbuffered(self) -> OpenOptions {
        OpenOptions {
            unbuffered: true,
            ..self
        }
    }
}

/// The offset and length multiple, in bytes, of a write that an [`OpenOptions::unbuffered`]
/// file writes around the operating system's cache (the log's sector).
pub const UNBUFFERED_ALIGN: u64 = 512;

/// An open file. All offsets and lengths are in bytes.
pub trait File: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (fewer only at the
    /// end of the file).
    ///
    /// # Errors
    /// `DiskIO` (with the `io::Error` as source) when the read fails.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed (a gap reads as zeros).
    ///
    /// # Errors
    /// `DiskFull` on ENOSPC, `FileAccessDenied` if the file was opened read-only, `DiskIO`
    /// otherwise.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Makes the file's data and length durable (`fdatasync`).
    ///
    /// # Errors
    /// `DiskIO` when the sync fails; after a failed sync the state of unsynced data is
    /// unknown (the engine treats this as fatal).
    fn sync_data(&self) -> Result<()>;

    /// Asks the device to start writing the bytes `len` bytes from `offset` that writes left
    /// in the operating system's cache, without waiting for them (Linux `sync_file_range`
    /// with `SYNC_FILE_RANGE_WRITE`). A hint only: nothing becomes durable through it, and a
    /// later [`File::sync_data`] still makes (and reports the failure of) every write; it then
    /// waits only for what was not written yet. Where the hint is not available this does
    /// nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

    /// Sets the file's length, truncating or extending with zeros.
    ///
    /// # Errors
    /// `DiskFull`, `FileAccessDenied` or `DiskIO`.
    fn set_len(&self, len: u64) -> Result<()>;

    /// The file's current length.
    ///
    /// # Errors
    /// `DiskIO`.
    fn len(&self) -> Result<u64>;

    /// The path the file was opened with.
    fn path(&self) -> &Path;

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// `FileIOBeyondEOF` if the file ends first; otherwise as [`File::read_at`].
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let n = self.read_at(rest, offset + done as u64)?;
            if n == 0 {
                return Err(Error::new(ErrorKind::FileIOBeyondEOF)
                    .with_path(self.path())
                    .with_message(format!(
                        "wanted {} bytes at offset {offset}, the file ends after {done}",
                        buf.len()
                    )));
            }
            done += n;
        }
        Ok(())
    }

    /// Whether the file is empty.
    ///
    /// # Errors
    /// `DiskIO`.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A file system: files, directories and their durability (see the module docs).
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens (or creates) the file at `path`.
    ///
    /// # Errors
    /// `FileNotFound` if it does not exist and `create` is not set; `FileAlreadyExists` with
    /// `create_new`; `FileAccessDenied` on a permission problem or when the requested lock is
    /// held by another handle; `DiskIO` otherwise.
    fn open(&self, path: &Path, options: OpenOptions) -> Result<Box<dyn File>>;

    /// Removes the file at `path` (durable after [`FileSystem::sync_dir`] of its directory).
    ///
    /// # Errors
    /// `FileNotFound`, `FileAccessDenied`, `DiskIO`.
    fn remove_file(&self, path: &Path) -> Result<()>;

    /// Renames `from` to `to`, replacing `to` if it exists (durable after
    /// [`FileSystem::sync_dir`] of both directories).
    ///
    /// # Errors
    /// `FileNotFound` if `from` does not exist, `FileAccessDenied`, `DiskIO`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Creates `link` as a second name of the file `original` (durable after
    /// [`FileSystem::sync_dir`]).
    ///
    /// # Errors
    /// `FileNotFound` if `original` does not exist, `FileAlreadyExists` if `link` does,
    /// `DiskIO` otherwise.
    fn hard_link(&self, original: &Path, link: &Path) -> Result<()>;

    /// Whether a file or directory exists at `path`.
    ///
    /// # Errors
    /// `DiskIO` when the check itself fails.
    fn exists(&self, path: &Path) -> Result<bool>;

    /// The names of the files in `dir` (not subdirectories), sorted.
    ///
    /// # Errors
    /// `FileNotFound` if `dir` does not exist, `DiskIO` otherwise.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;

    /// Creates `dir` and any missing parents (each durable in its parent).
    ///
    /// # Errors
    /// `FileAccessDenied`, `DiskIO`.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;

    /// Makes the entries of `dir` durable (`fsync` of the directory).
    ///
    /// # Errors
    /// `FileNotFound`, `DiskIO`.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
}

/// The directory that holds `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
