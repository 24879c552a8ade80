//! Sessions and the instance gate of the engine.
//!
//! This crate will own: the instance state machine (created, initializing, running, restoring,
//! terminating, stopped, unavailable) and the gate every call enters through, in ESE's check
//! order; the session table and quota, sesid handles, concurrent-entry detection, transaction
//! thread binding, session context (set/reset) and end-session cleanup.

#![deny(unsafe_code)]
