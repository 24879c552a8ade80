//! Fuzz target `io_faults`.
//!
//! Operations over three sessions with an injected EIO or ENOSPC (decoded with `arbitrary`):
//! typed errors only, and nothing durably committed lost after a new init.
//!
//! The logic lives in `ese_tests::fuzz::io_faults`, shared with the replay test
//! (`tests/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ese_tests::fuzz::io_faults::run_io_faults(data);
});
