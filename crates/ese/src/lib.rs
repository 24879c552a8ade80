//! An embedded, transactional storage engine with the semantics of Microsoft's Extensible
//! Storage Engine (ESE, "JET Blue").
//!
//! This crate will be the public API: `Instance` (init with recovery, term, stop service,
//! backup, restore), `Session`, databases, the catalog, tables, typed columns, indexes, cursors
//! and temp tables, with names that follow JET in Rust case. Today it re-exports the error type
//! every call returns.

#![deny(unsafe_code)]

pub use ese_core::{Error, ErrorKind, Result};
