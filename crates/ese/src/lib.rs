//! An embedded, transactional storage engine with the semantics of Microsoft's Extensible
//! Storage Engine (ESE, "JET Blue").
//!
//! Names follow JET in Rust case, and every public item says which JET function it
//! corresponds to. Errors are [`Error`]s whose [`code`](Error::code) is ESE's number.
//!
//! ```
//! use ese::{Instance, TermGrbit, CommitGrbit, EndSessionGrbit};
//! # fn main() -> ese::Result<()> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let instance = Instance::builder("demo")
//!     .system_path(dir.path())
//!     .log_path(dir.path())
//!     .create()?;
//! instance.init()?;
//! let session = instance.begin_session()?;
//! session.begin_transaction()?;
//! session.commit_transaction(CommitGrbit::empty())?;
//! // Term ends remaining sessions.
//! instance.term(TermGrbit::empty())?;
//! assert_eq!(session.transaction_level().unwrap_err().code(), -1029); // NotInitialized
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

mod catalog;
mod column;
mod database;
mod engine;
mod grbit;
mod instance;
mod key;
mod record;
mod session;
mod table;

pub use column::{CodePage, ColumnDef, ColumnGrbit, ColumnType, validate_name};
pub use database::DbId;
pub use engine::RecoveryStats;
pub use ese_core::{Error, ErrorKind, Result};
pub use ese_session::{InstanceState, Sesid};
pub use grbit::{
    AttachDatabaseGrbit, BeginTransactionGrbit, CommitGrbit, CreateDatabaseGrbit, EndSessionGrbit,
    RollbackGrbit, TermGrbit,
};
pub use instance::{Instance, InstanceBuilder};
pub use key::{SegmentSpec, fold_text, normalize_segment, truncate_key};
pub use record::{Record, RecordLayout, TaggedValue};
pub use session::Session;
pub use table::{IndexCreate, IndexGrbit, Move, Prep, Seek, Table, TableCreate};
