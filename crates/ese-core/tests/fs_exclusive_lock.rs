#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The same database must not be opened twice: an exclusive lock belongs to the file (its
//! inode), so a second locked open fails with `FileAccessDenied` whatever path or hard link it
//! goes through, on the real file system and on the simulator alike.

use std::path::Path;

use ese_core::ErrorKind;
use ese_core::fs::{FileSystem, Lock, OpenOptions, OsFs, SimFs};

fn exclusive() -> OpenOptions {
    OpenOptions::create().lock(Lock::Exclusive)
}

fn denied(fs: &dyn FileSystem, path: &Path, options: OpenOptions) {
    let e = fs.open(path, options).expect_err("the file is locked");
    assert_eq!(e.kind(), ErrorKind::FileAccessDenied, "{e}");
}

fn exclusive_twice_fails_until_dropped(fs: &dyn FileSystem, base: &Path) {
    let db = base.join("db.edb");
    let first = fs.open(&db, exclusive()).unwrap();
    denied(fs, &db, exclusive());
    denied(fs, &db, OpenOptions::read().lock(Lock::Exclusive));
    denied(fs, &db, OpenOptions::read().lock(Lock::Shared));
    // The same file through another spelling of its path.
    denied(fs, &base.join(".").join("db.edb"), exclusive());
    // An unlocked open is not refused.
    drop(fs.open(&db, OpenOptions::read()).unwrap());
    drop(first);
    let again = fs.open(&db, exclusive()).unwrap();
    drop(again);
}

fn exclusive_through_hard_link_fails(fs: &dyn FileSystem, base: &Path) {
    let db = base.join("db.edb");
    let link = base.join("other-name.edb");
    drop(fs.open(&db, OpenOptions::create()).unwrap());
    fs.hard_link(&db, &link).unwrap();
    let first = fs.open(&db, exclusive()).unwrap();
    denied(fs, &link, OpenOptions::read_write().lock(Lock::Exclusive));
    drop(first);
    let via_link = fs
        .open(&link, OpenOptions::read_write().lock(Lock::Exclusive))
        .unwrap();
    denied(fs, &db, exclusive());
    drop(via_link);
    drop(fs.open(&db, exclusive()).unwrap());
}

fn shared_locks_coexist_but_exclude_exclusive(fs: &dyn FileSystem, base: &Path) {
    let db = base.join("db.edb");
    drop(fs.open(&db, OpenOptions::create()).unwrap());
    let a = fs
        .open(&db, OpenOptions::read().lock(Lock::Shared))
        .unwrap();
    let b = fs
        .open(&db, OpenOptions::read().lock(Lock::Shared))
        .unwrap();
    denied(fs, &db, exclusive());
    drop(a);
    denied(fs, &db, exclusive());
    drop(b);
    drop(fs.open(&db, exclusive()).unwrap());
}

fn lock_follows_the_file_across_rename(fs: &dyn FileSystem, base: &Path) {
    let db = base.join("db.edb");
    let moved = base.join("moved.edb");
    let first = fs.open(&db, exclusive()).unwrap();
    fs.rename(&db, &moved).unwrap();
    denied(fs, &moved, OpenOptions::read().lock(Lock::Exclusive));
    // A new file at the old name is another file.
    drop(fs.open(&db, exclusive()).unwrap());
    drop(first);
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod os_fs {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::OsFs::new(), dir.path());
                }
            )*
        }

        mod sim_fs {
            $(
                #[test]
                fn $name() {
                    let fs = super::SimFs::new();
                    let base = std::path::Path::new("/instance");
                    super::FileSystem::create_dir_all(&fs, base).unwrap();
                    super::$name(&fs, base);
                }
            )*
        }
    };
}

both!(
    exclusive_twice_fails_until_dropped,
    exclusive_through_hard_link_fails,
    shared_locks_coexist_but_exclude_exclusive,
    lock_follows_the_file_across_rename,
);
