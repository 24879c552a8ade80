//! [`OsFs`]: the real file system.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
