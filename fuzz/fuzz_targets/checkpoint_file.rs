//! Fuzz target `checkpoint_file`.
//!
//! Bytes as the checkpoint file: reading it and recovering from it return results or
//! errors.
//!
//! The logic lives in `ese_tests::fuzz::checkpoint_file`, shared with the replay test
//! (`tests/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ese_tests::fuzz::checkpoint_file::run_checkpoint_file(data);
});
