//! Fuzz target `crash_recovery`.
//!
//! Operations over three sessions, a power cut and a crash model (decoded with `arbitrary`),
//! then recovery (sometimes cut again and run again) checked against the model.
//!
//! The logic lives in `ese_tests::fuzz::crash_recovery`, shared with the replay test
//! (`tests/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ese_tests::fuzz::crash_recovery::run_crash_recovery(data);
});
