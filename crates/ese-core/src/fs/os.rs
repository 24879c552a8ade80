//! [`OsFs`]: the real file system.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
use super::UNBUFFERED_ALIGN;
use super::{File, FileSystem, Lock, OpenOptions};
use crate::error::{Error, ErrorKind, Result};

/// The real file system: positional I/O (`pread`/`pwrite`), `fdatasync` for
/// [`File::sync_data`], directory `fsync` for [`FileSystem::sync_dir`], new files with mode
/// 0600, and `flock` for [`Lock`] (an `flock` lock belongs to the inode, so it also excludes
/// opens through another path or a hard link).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

impl OsFs {
    /// The real file system.
    pub const fn new() -> OsFs {
        OsFs
    }
}

#[derive(Debug)]
struct OsFile {
    file: fs::File,
    path: PathBuf,
    writable: bool,
    /// The writer around the cache of an [`OpenOptions::unbuffered`] file, when the file
    /// system opened one.
    #[cfg(target_os = "linux")]
    direct: Option<Direct>,
}

/// The address alignment, in bytes, of the memory an unbuffered write is made from (a page:
/// as strict as any device's DMA alignment).
#[cfg(target_os = "linux")]
const DIRECT_MEMORY_ALIGN: usize = 4096;

/// The most bytes an unbuffered write copies into its aligned buffer at a time.
#[cfg(target_os = "linux")]
const DIRECT_CHUNK: usize = 1 << 20;

/// A second handle on an unbuffered file, opened with `O_DIRECT`: aligned writes go through
/// it and around the page cache; reads, syncs and the other writes use the first handle
/// (the kernel keeps the two coherent: a direct write writes back and drops the cached pages
/// of its range).
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Direct {
    file: fs::File,
    /// Cleared when the file system refuses a direct write (`EINVAL`: a device whose sectors
    /// are larger than [`UNBUFFERED_ALIGN`]); every later write is buffered.
    usable: std::sync::atomic::AtomicBool,
    /// Aligned copies of the bytes to write (the caller's buffer is rarely page-aligned).
    bounce: parking_lot::Mutex<Vec<u8>>,
}

#[cfg(target_os = "linux")]
impl Direct {
    fn open(path: &Path) -> Option<Direct> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        Some(Direct {
            file,
            usable: std::sync::atomic::AtomicBool::new(true),
            bounce: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Writes the longest prefix of `buf` that is a multiple of [`UNBUFFERED_ALIGN`] bytes
    /// at `offset` around the cache, and returns its length: 0 when `offset` is not aligned
    /// or the file system refuses direct writes, for the caller to write the rest buffered.
    fn write(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let len = buf.len() - buf.len() % UNBUFFERED_ALIGN as usize;
        let whole = buf.get(..len).unwrap_or_default();
        if !offset.is_multiple_of(UNBUFFERED_ALIGN)
            || len == 0
            || !self.usable.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(0);
        }
        if whole.as_ptr().align_offset(DIRECT_MEMORY_ALIGN) == 0 {
            // Aligned already: written as it is.
            return Ok(if self.write_aligned(whole, offset)? {
                len
            } else {
                0
            });
        }
        let mut bounce = self.bounce.lock();
        let room = len.min(DIRECT_CHUNK) + DIRECT_MEMORY_ALIGN;
        if bounce.len() < room {
            bounce.resize(room, 0);
        }
        let start = bounce.as_ptr().align_offset(DIRECT_MEMORY_ALIGN);
        let mut done = 0usize;
        for chunk in whole.chunks(DIRECT_CHUNK) {
            // `room` leaves `DIRECT_MEMORY_ALIGN` bytes of slack before the aligned start, so
            // the range always lies inside the buffer.
            let aligned = bounce
                .get_mut(start..start + chunk.len())
                .ok_or_else(|| io::Error::other("unbuffered write: bounce buffer too small"))?;
            aligned.copy_from_slice(chunk);
            if !self.write_aligned(aligned, offset + done as u64)? {
                return Ok(done);
            }
            done += chunk.len();
        }
        Ok(done)
    }

    /// One direct write of `bytes` (aligned in memory, offset and length); `false` when the
    /// file system refuses it (`EINVAL`, before any byte is written), after which every write
    /// of the file goes through the cache.
    fn write_aligned(&self, bytes: &[u8], offset: u64) -> io::Result<bool> {
        match self.file.write_all_at(bytes, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.usable
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl File for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from_io_at(e, &self.path)),
            }
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::new(ErrorKind::FileAccessDenied)
                .with_path(&self.path)
                .with_message("the file is open read-only"));
        }
        #[cfg(target_os = "linux")]
        let (buf, offset) = match &self.direct {
            Some(d) => {
                let done = d
                    .write(buf, offset)
                    .map_err(|e| Error::from_io_at(e, &self.path))?;
                (buf.get(done..).unwrap_or_default(), offset + done as u64)
            }
            None => (buf, offset),
        };
        if buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| Error::from_io_at(e, &self.path))
    }

    fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::from_io_at(e, &self.path))
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is this
        // file's, open for as long as `self` is borrowed. Its result is ignored: the call is a
        // hint, and `sync_data` reports any failure of the writes it started.
        #[expect(unsafe_code, reason = "the libc call that starts writeback of a range")]
        let _ = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::new(ErrorKind::FileAccessDenied)
                .with_path(&self.path)
                .with_message("the file is open read-only"));
        }
        self.file
            .set_len(len)
            .map_err(|e| Error::from_io_at(e, &self.path))
    }

    fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::from_io_at(e, &self.path))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSystem for OsFs {
    fn open(&self, path: &Path, options: OpenOptions) -> Result<Box<dyn File>> {
        let writable = options.write || options.create || options.create_new;
        let mut o = fs::OpenOptions::new();
        o.read(true)
            .write(writable)
            .create(options.create && !options.create_new)
            .create_new(options.create_new)
            .mode(0o600);
        let file = o.open(path).map_err(|e| Error::from_io_at(e, path))?;
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(Error::new(ErrorKind::FileInvalidType)
                .with_path(path)
                .with_message("is a directory"));
        }
        let locked = match options.lock {
            Lock::None => Ok(()),
            Lock::Shared => file.try_lock_shared(),
            Lock::Exclusive => file.try_lock(),
        };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::new(ErrorKind::FileAccessDenied)
                    .with_path(path)
                    .with_message("the file is locked by another handle"));
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::from_io_at(e, path)),
        }
        Ok(Box::new(OsFile {
            file,
            path: path.to_path_buf(),
            writable,
            #[cfg(target_os = "linux")]
            direct: if options.unbuffered && writable {
                Direct::open(path)
            } else {
                None
            },
        }))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| Error::from_io_at(e, path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::from_io_at(e, from))
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        fs::hard_link(original, link).map_err(|e| Error::from_io_at(e, link))
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(|e| Error::from_io_at(e, path))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::from_io_at(e, dir))? {
            let entry = entry.map_err(|e| Error::from_io_at(e, dir))?;
            let is_file = entry
                .file_type()
                .map_err(|e| Error::from_io_at(e, entry.path()))?
                .is_file();
            if is_file && let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        // Remember which ancestors are new, so each new entry is made durable in its parent.
        let mut created = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            created.push(d.to_path_buf());
            cur = d.parent();
        }
        fs::create_dir_all(dir).map_err(|e| Error::from_io_at(e, dir))?;
        for d in created.iter().rev() {
            self.sync_dir(super::parent_dir(d))?;
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let d = fs::File::open(dir).map_err(|e| Error::from_io_at(e, dir))?;
        d.sync_all().map_err(|e| Error::from_io_at(e, dir))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// The handles this process holds on `path` (`/proc/self/fd`).
    fn handles_on(path: &Path) -> usize {
        let path = fs::canonicalize(path).unwrap();
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == path)
            .count()
    }

    /// An unbuffered file holds a direct handle beside its own wherever the file system opens
    /// files with `O_DIRECT` (not tmpfs), and only then; a buffered one never does.
    #[test]
    fn unbuffered_files_get_a_direct_handle_where_supported() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        fs::write(&probe, b"").unwrap();
        let supported = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        let path = dir.path().join("log");
        let f = OsFs
            .open(&path, OpenOptions::create_new().unbuffered())
            .unwrap();
        assert_eq!(handles_on(&path), if supported { 2 } else { 1 });
        drop(f);
        assert_eq!(handles_on(&path), 0);
        let f = OsFs.open(&path, OpenOptions::read_write()).unwrap();
        assert_eq!(handles_on(&path), 1);
        drop(f);
        // A read-only open never writes, so it takes no direct handle either.
        let _f = OsFs.open(&path, OpenOptions::read().unbuffered()).unwrap();
        assert_eq!(handles_on(&path), 1);
    }
}
