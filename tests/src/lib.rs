//! Cross-crate integration tests of the engine live in `tests/tests/`, one file per scenario;
//! `tests/fixtures/` holds their inputs.

#![deny(unsafe_code)]
