//! Versioned transactions of the engine.
//!
//! This crate will own: transaction ids and levels (nesting to 7), the version store (snapshot
//! isolation, first-writer-wins write conflicts, escrow deltas, rollback), undo for recovery,
//! version cleanup and the version-store budget (`VersionStoreOutOfMemory`).

#![deny(unsafe_code)]
