//! The page store of the engine (ESE's database file, buffer manager and B+trees).
//!
//! - [`Database`]: a database file with two header pages ([`DbHeader`]), a buffer cache with a
//!   byte budget and scan-resistant eviction, write-back under the WAL rule, a checkpoint, the
//!   tree directory and space management, redo of page records and the integrity check.
//! - [`Tree`] and [`Cursor`]: B+trees keyed by bytes with splits and merges, seeks
//!   ([`SeekOp`]) and scans that survive concurrent changes; [`Tree::put`] sets a node to a
//!   [`NodeState`] and logs the change together with an annotation of the layer above
//!   ([`record_annotation`] reads it back from the record).
//! - [`LongValues`]: long values (up to 2 GiB) in chunks of a long-value tree.
//! - [`Wal`]: what the page store needs of the log; [`MemWal`] is an in-memory log for tests.
//!
//! Formats are documented byte by byte in `docs/format-database.md`.
//!
//! ```
//! use std::sync::Arc;
//! use ese_btree::{Database, DbOptions, MemWal, TreeKind, SeekOp};
//! use ese_core::fs::{FileSystem, OsFs};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
//! let wal = Arc::new(MemWal::new());
//! let db = Database::create(&fs, &dir.path().join("db.edb"), DbOptions::new(), wal).unwrap();
//! let tree = db.create_tree(TreeKind::Table).unwrap();
//! tree.insert(b"hello", b"world").unwrap();
//! let mut c = tree.cursor();
//! c.seek(b"h", SeekOp::Ge).unwrap();
//! assert_eq!(c.data(), b"world");
//! db.check_integrity().unwrap();
//! ```

#![deny(unsafe_code)]

mod cache;
mod check;
mod compact;
mod cursor;
mod db;
mod doublewrite;
mod header;
mod hints;
mod latch;
mod lv;
mod page;
mod pagebuf;
mod pagetable;
mod record;
mod redo;
mod split;
mod tree;
mod wal;

pub use cache::CacheStats;
pub use check::{IntegrityReport, TreeSpace};
pub use compact::CompactStats;
pub use cursor::{Cursor, LeafHint, SeekOp};
pub use db::{Database, DbOptions, TreeKind};
pub use doublewrite::doublewrite_path;
pub use header::{DB_FORMAT_VERSION, DB_MAGIC, DbHeader, DbState, PAGE_SIZES};
pub use lv::{LV_MAX_LEN, LongValues};
pub use page::{NodeFlags, PageFlags};
pub use record::{ANNOTATION_MAX, record_annotation, record_dbid};
pub use tree::{NodeState, PutTarget, Tree};
pub use wal::{MemWal, Wal};
