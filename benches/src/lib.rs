//! Criterion benchmarks of the engine live in `benches/benches/`; the peer comparison harness
//! will be its own crate beside them.

#![deny(unsafe_code)]
