//! Fuzz target `db_file`.
//!
//! Bytes as a database file, or one page patched into a valid one: opening, the integrity
//! check and reading every table return results or errors.
//!
//! The logic lives in `ese_tests::fuzz::db_file`, shared with the replay test
//! (`tests/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ese_tests::fuzz::db_file::run_db_file(data);
});
