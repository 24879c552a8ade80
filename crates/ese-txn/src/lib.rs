//! Versioned transactions of the engine, with ESE's semantics.
//!
//! - [`VersionStore`]: the version store and transaction table of an instance (ESE's `VER`):
//!   snapshots, revision control entries, first-writer-wins conflicts, escrow deltas, cleanup
//!   and its byte budget.
//! - [`Transaction`]: one session's transaction: nested levels up to 7, reads through its
//!   snapshot, insert/replace/delete/escrow/lock, commit (durable or lazy) and rollback.
//! - [`RecoveryUndo`]: the undo phase of recovery, through the same undo as a live rollback.
//! - [`TxnStore`]: what this layer needs from the page store; [`TxnRecord`]: the undo
//!   annotations and records it logs; [`TreeStore`]: the implementation over `ese-btree`, and
//!   the log envelope ([`Envelope`]) that lets page, transaction and upper-layer records share
//!   one log stream.

#![deny(unsafe_code)]

mod keymap;
mod record;
mod rollback;
mod store;
mod transaction;
mod tree_store;
mod version_store;

pub use record::{TxnRecord, Undo};
pub use rollback::{RecoveryUndo, UndoStats};
pub use store::{NewState, PhysRef, PhysState, TxnStore};
pub use transaction::{CommitInfo, MAX_LEVEL, Transaction};
pub use tree_store::{
    Envelope, FAMILY_PAGE, FAMILY_TXN, FAMILY_UPPER, FamilyWal, LogWal, TreeStore, node_state,
};
pub use version_store::{ReadView, VersionStore, VersionStoreStats};
