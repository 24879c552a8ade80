//! Sessions and the instance gate of the engine, with ESE's semantics.
//!
//! - [`InstanceGate`]: the instance state machine (created, initializing, running, restoring,
//!   terminating, freed; the stop-service and unavailable flags) and the checks every call
//!   enters through, in ESE's order, with ESE's error codes.
//! - [`SessionTable`] and [`SessionCore`]: the session quota, sesids, concurrent-entry
//!   detection, transaction thread binding, session context (set/reset) and the end-session
//!   protocol.
//!
//! The public API in the `ese` crate drives these; the transaction work itself (versions,
//! rollback) belongs to `ese-txn`.

#![deny(unsafe_code)]

mod gate;
mod session;
mod sync;

pub use gate::{
    HoldPoint, InitGuard, InstanceCall, InstanceGate, InstanceState, RestoreGuard, TermGuard,
};
pub use session::{
    DEFAULT_MAX_SESSIONS, MAX_SESSIONS_LIMIT, MAX_TRANSACTION_LEVEL, OwnedSessionCall, Sesid,
    SessionCall, SessionCore, SessionTable, TrxBinding,
};
