//! One module per subcommand, each with its clap `Args` and its `run`.

pub(crate) mod check;
pub(crate) mod checkpoint;
pub(crate) mod header;
pub(crate) mod log;
pub(crate) mod page;
pub(crate) mod records;
pub(crate) mod space;
pub(crate) mod tables;

use ese_core::fs::FileSystem;
use ese_core::{Error, ErrorKind, Result};

use crate::dbfile::{DbFile, Header};

/// Opens a database read-only and returns it with its header in force.
pub(crate) fn open_db(path: &std::path::Path) -> Result<(DbFile, Header)> {
    let db = DbFile::open(path)?;
    let h = db.header()?.clone();
    Ok((db, h))
}

/// Opens the database through `ese-btree` for the whole-database walks (`space`, `check`), on
/// the read-only file system: any write the engine attempted would fail with
/// `FileAccessDenied` instead of reaching the file. No redo is run.
pub(crate) fn open_engine(path: &std::path::Path, page_size: u32) -> Result<ese_btree::Database> {
    let fs: std::sync::Arc<dyn FileSystem> = std::sync::Arc::new(crate::rofs::ReadOnlyFs);
    let wal = std::sync::Arc::new(ese_btree::MemWal::new());
    let opts = ese_btree::DbOptions::new()
        .page_size(page_size)
        .cache_bytes(16 << 20)
        // Read only: no doublewrite file is created, read or repaired.
        .doublewrite(false);
    ese_btree::Database::open(&fs, path, opts, wal)
}

/// The note printed (on stderr, in human mode) for a database that needs recovery.
pub(crate) fn dirty_note(h: &Header) -> Option<String> {
    (h.state == ese_btree::DbState::DirtyShutdown).then(|| {
        "warning: the database was not shut down cleanly (DirtyShutdown): recovery is needed; \
         esedump shows the file as it is and never runs recovery"
            .to_owned()
    })
}

/// The error a command returns after reporting a database that needs recovery, when the
/// result cannot be trusted without it.
pub(crate) fn dirty_error(path: &std::path::Path) -> Error {
    Error::new(ErrorKind::DatabaseDirtyShutdown)
        .with_path(path)
        .with_message("recovery is needed before the database can be called consistent")
}
