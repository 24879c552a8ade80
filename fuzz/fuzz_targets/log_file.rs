//! Fuzz target `log_file`.
//!
//! Bytes as a log generation, a frame area or a list of record payloads: reading the log and
//! recovering from it return results or errors.
//!
//! The logic lives in `ese_tests::fuzz::log_file`, shared with the replay test
//! (`tests/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ese_tests::fuzz::log_file::run_log_file(data);
});
