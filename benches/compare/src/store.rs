//! What the harness asks of every engine: a [`Store`] (one database, shared by every thread)
//! and [`Handle`]s (one per thread: a session, a connection or a plain reference).

use std::path::Path;

/// Any engine's error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A result with any engine's error.
pub type Res<T> = Result<T, BoxError>;

/// Key length in bytes (redb's `lmdb_benchmark`).
pub const KEY_LEN: usize = 24;
/// Value length in bytes (redb's `lmdb_benchmark`).
pub const VALUE_LEN: usize = 150;
/// A key.
pub type Key = [u8; KEY_LEN];
/// A value.
pub type Value = [u8; VALUE_LEN];

/// Fills the next pair to write.
pub type PairSource<'a> = &'a mut dyn FnMut(&mut Key, &mut Value);
/// Fills the next key to remove.
pub type KeySource<'a> = &'a mut dyn FnMut(&mut Key);

/// How an engine is set up, printed with the results so the comparison can be judged.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Setup {
    /// Engine name and version.
    pub engine: String,
    /// How the key/value workload maps onto the engine's data model.
    pub mapping: String,
    /// What a durable commit does.
    pub durability: String,
    /// Cache settings.
    pub cache: String,
    /// How `count` and compaction are done.
    pub notes: String,
}

/// Bytes on disk.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Sizes {
    /// The B-tree (or LSM) data: the database file, or the directory for engines without one.
    pub data: u64,
    /// Everything in the engine's directory (logs, journals, WAL included).
    pub total: u64,
}

/// One open database.
pub trait Store: Sync {
    /// A handle for the calling thread (a session for this engine, a connection for SQLite).
    ///
    /// # Errors
    /// The engine's error.
    fn handle(&self) -> Res<Box<dyn Handle + '_>>;

    /// Makes the files reflect the data (checkpoints a WAL, flushes a journal) and measures
    /// them.
    ///
    /// # Errors
    /// The engine's or the file system's error.
    fn sizes(&mut self) -> Res<Sizes>;

    /// Compacts the database with the engine's own compaction; `Ok(None)` when it has none,
    /// else the sizes after it.
    ///
    /// # Errors
    /// The engine's error.
    fn compact(&mut self) -> Res<Option<Sizes>>;
}

/// One thread's access to a [`Store`].
pub trait Handle {
    /// Inserts `n` pairs from `next` in one transaction, committed durably.
    ///
    /// # Errors
    /// The engine's error.
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()>;

    /// Removes `n` keys from `next` in one transaction, committed durably.
    ///
    /// # Errors
    /// The engine's error.
    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()>;

    /// The number of records.
    ///
    /// # Errors
    /// The engine's error.
    fn count(&mut self) -> Res<u64>;

    /// Starts the read snapshot (read transaction) the following reads use.
    ///
    /// # Errors
    /// The engine's error.
    fn begin_read(&mut self) -> Res<()>;

    /// Ends the read snapshot.
    ///
    /// # Errors
    /// The engine's error.
    fn end_read(&mut self) -> Res<()>;

    /// Looks `key` up; calls `sink` with its value and returns `true` when found.
    ///
    /// # Errors
    /// The engine's error.
    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool>;

    /// Reads up to `steps` records in key order from the first key at or after `from`,
    /// calling `sink` with each value; returns how many it read.
    ///
    /// # Errors
    /// The engine's error.
    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize>;
}

/// The apparent size in bytes of every file under `dir`.
///
/// # Errors
/// The file system's error.
pub fn dir_size(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The size in bytes of one file.
///
/// # Errors
/// The file system's error.
pub fn file_size(path: &Path) -> Res<u64> {
    Ok(std::fs::metadata(path)?.len())
}
