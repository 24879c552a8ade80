//! [`ReadOnlyFs`]: the file system esedump reads through.
//!
//! It wraps [`OsFs`] so that the engine's own readers (`ese_btree::Database`, which opens its
//! file read-write, and `ese_log`'s readers) can be used on a user's files without any risk of
//! changing them: every open is read-only whatever was asked (an exclusive lock becomes a
//! shared one, so a database in use by a running engine is refused rather than read while it
//! changes), and every mutating operation (write, set_len, sync, remove, rename, link, create)
//! fails loudly with `JET_errFileAccessDenied` instead of happening.

use std::path::Path;

use ese_core::fs::{File, FileSystem, Lock, OpenOptions, OsFs};
use ese_core::{Error, ErrorKind, Result};

/// A [`FileSystem`] over the real one that never writes (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadOnlyFs;

fn denied(path: &Path, what: &str) -> Error {
    Error::new(ErrorKind::FileAccessDenied)
        .with_path(path)
        .with_message(format!("esedump is read-only and refused to {what}"))
}

#[derive(Debug)]
struct ReadOnlyFile {
    inner: Box<dyn File>,
}

impl File for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(denied(self.inner.path(), "write"))
    }

    fn sync_data(&self) -> Result<()> {
        Err(denied(self.inner.path(), "sync"))
    }

    fn set_len(&self, _len: u64) -> Result<()> {
        Err(denied(self.inner.path(), "change the file's length"))
    }

    fn len(&self) -> Result<u64> {
        self.inner.len()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl FileSystem for ReadOnlyFs {
    fn open(&self, path: &Path, options: OpenOptions) -> Result<Box<dyn File>> {
        if options.create_new {
            return Err(denied(path, "create a file"));
        }
        let lock = match options.lock {
            Lock::None => Lock::None,
            Lock::Shared | Lock::Exclusive => Lock::Shared,
        };
        let inner = OsFs::new().open(path, OpenOptions::read().lock(lock))?;
        Ok(Box::new(ReadOnlyFile { inner }))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        Err(denied(path, "remove a file"))
    }

    fn rename(&self, from: &Path, _to: &Path) -> Result<()> {
        Err(denied(from, "rename a file"))
    }

    fn hard_link(&self, _original: &Path, link: &Path) -> Result<()> {
        Err(denied(link, "create a link"))
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        OsFs::new().exists(path)
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        OsFs::new().list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        Err(denied(dir, "create a directory"))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        Err(denied(dir, "sync a directory"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn every_mutation_is_refused_and_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let fs = ReadOnlyFs;
        let f = fs
            .open(&path, OpenOptions::create().lock(Lock::Exclusive))
            .unwrap();
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(f.write_all_at(b"x", 0)), ErrorKind::FileAccessDenied);
        assert_eq!(kind(f.set_len(0)), ErrorKind::FileAccessDenied);
        assert_eq!(kind(f.sync_data()), ErrorKind::FileAccessDenied);
        let mut b = [0u8; 5];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(kind(fs.remove_file(&path)), ErrorKind::FileAccessDenied);
        assert_eq!(
            kind(fs.rename(&path, &dir.path().join("g"))),
            ErrorKind::FileAccessDenied
        );
        assert_eq!(kind(fs.sync_dir(dir.path())), ErrorKind::FileAccessDenied);
        assert_eq!(
            fs.open(&dir.path().join("new"), OpenOptions::create_new())
                .unwrap_err()
                .kind(),
            ErrorKind::FileAccessDenied
        );
        assert_eq!(
            fs.open(&dir.path().join("new"), OpenOptions::create())
                .unwrap_err()
                .kind(),
            ErrorKind::FileNotFound
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }
}
