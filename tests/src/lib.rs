//! Cross-crate integration tests of the engine live in `tests/tests/`, one file per scenario;
//! `tests/fixtures/` holds their inputs.
//!
//! The library holds what several of them share with the cargo-fuzz targets in `fuzz/`: the
//! logic of every fuzz target ([`fuzz`]), so that `cargo fuzz run` and the replay test
//! (`tests/tests/fuzz_replay.rs`) run exactly the same code on the same inputs.

#![deny(unsafe_code)]

pub mod fuzz;
