//! The page store of the engine.
//!
//! This crate will own: the database file and its two header pages, the page format (slotted
//! pages with a tag array, checksums bound to the page number), the buffer cache with
//! write-back that obeys the WAL rule, B+trees with variable-length keys, splits and merges,
//! long-value trees, space management, redo of logged page operations and the integrity check.

#![deny(unsafe_code)]
