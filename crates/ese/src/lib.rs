//! An embedded, transactional storage engine with the semantics of Microsoft's Extensible
//! Storage Engine (ESE, "JET Blue").
//!
//! Names follow JET in Rust case, and every public item says which JET function it
//! corresponds to. Errors are [`Error`]s whose [`code`](Error::code) is ESE's number.
//!
//! ```
//! use ese::{
//!     ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, IndexCreate, IndexGrbit, Instance,
//!     Move, Prep, Seek, TableCreate, TermGrbit,
//! };
//! # fn main() -> ese::Result<()> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let instance = Instance::builder("demo")
//!     .system_path(dir.path())
//!     .log_path(dir.path().join("logs"))
//!     .create()?;
//! instance.init()?; // runs recovery if the last run crashed
//! let session = instance.begin_session()?;
//! let db = session.create_database(dir.path().join("demo.edb"), CreateDatabaseGrbit::empty())?;
//! session.create_table(db, &TableCreate {
//!     name: "people".into(),
//!     columns: vec![
//!         ColumnDef::new("name", ColumnType::Text).max_size(64),
//!         ColumnDef::new("age", ColumnType::Long),
//!     ],
//!     indexes: vec![IndexCreate {
//!         name: "by_name".into(),
//!         key: "+name\0\0".into(),
//!         grbit: IndexGrbit::PRIMARY,
//!         key_most: 0,
//!     }],
//! })?;
//! let mut people = session.open_table(db, "people")?;
//! let (name, age) = (people.column_id("name")?, people.column_id("age")?);
//!
//! session.begin_transaction()?;
//! for (n, a) in [("Ada", 36i32), ("Alan", 41)] {
//!     people.prepare_update(Prep::Insert)?;
//!     people.set_column(name, Some(n.as_bytes()))?;
//!     people.set_column(age, Some(&a.to_le_bytes()))?;
//!     people.update()?;
//! }
//! session.commit_transaction(CommitGrbit::empty())?; // durable when this returns
//!
//! people.seek(&[Some(b"alan")], Seek::Eq)?; // text keys compare case-insensitively
//! assert_eq!(people.retrieve_column(age)?, Some(41i32.to_le_bytes().to_vec()));
//! people.move_to(Move::First)?;
//! assert_eq!(people.retrieve_column(name)?, Some(b"Ada".to_vec()));
//! drop(people);
//! instance.term(TermGrbit::empty())?;
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod backup;
mod catalog;
mod column;
mod database;
mod ddl;
mod engine;
mod grbit;
mod index;
mod info;
mod instance;
mod key;
mod lv;
mod record;
mod seek;
mod session;
mod special;
mod table;
mod temp;

pub use backup::{BackupFile, BackupKind, BackupSummary, Progress, ProgressPhase};
pub use column::{CodePage, ColumnDef, ColumnGrbit, ColumnType, validate_name};
pub use database::DbId;
pub use engine::RecoveryStats;
pub use ese_btree::{CacheStats, CompactStats, IntegrityReport, TreeSpace};
pub use ese_core::Lgpos;
pub use ese_core::{Error, ErrorKind, Result};
pub use ese_log::LogSignature;
pub use ese_session::{InstanceState, Sesid};
pub use grbit::{
    AttachDatabaseGrbit, BeginTransactionGrbit, CommitGrbit, CreateDatabaseGrbit, EndSessionGrbit,
    RetrieveGrbit, RollbackGrbit, SetGrbit, TermGrbit,
};
pub use grbit::{BackupGrbit, EndExternalBackupGrbit};
pub use index::{
    IndexRangeGrbit, MakeKeyGrbit, RetrieveKeyGrbit, SeekResult, SetCurrentIndexGrbit,
};
pub use info::{ColumnInfo, IndexInfo, IndexSegmentInfo, TableInfo};
pub use instance::{Instance, InstanceBuilder};
pub use key::{SegmentSpec, fold_text, normalize_prefix, normalize_segment, truncate_key};
pub use record::{Record, RecordLayout, TaggedValue};
pub use session::{CommitId, Session};
pub use table::{
    IndexCreate, IndexGrbit, Move, Prep, RetInfo, RetrieveColumn, RetrievedColumn, Seek, SetInfo,
    Table, TableCreate,
};
pub use temp::{TempTable, TempTableGrbit};
