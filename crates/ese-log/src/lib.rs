//! The write-ahead log of the engine.
//!
//! This crate will own: log generations (`edb.log`, `edbXXXXXXXX.log`) with checksummed
//! headers and signatures, record framing and LGPOS, group commit and lazy commit, the
//! checkpoint file (`edb.chk`), the reserve logs for disk-full, circular logging, and the
//! reader that recovery and `esedump log` use. It knows nothing of pages beyond opaque record
//! payloads. All I/O goes through `ese_core::fs::FileSystem`.

#![deny(unsafe_code)]
