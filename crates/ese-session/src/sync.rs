//! Synchronization primitives, swapped for shuttle's under the `shuttle` feature so the gate
//! and the session state machine can be model-checked with the same code that ships.

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

pub(crate) use std::sync::atomic::Ordering;

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Yields the processor while waiting for calls in flight to drain.
pub(crate) fn pause() {
    #[cfg(feature = "shuttle")]
    shuttle::thread::yield_now();
    #[cfg(not(feature = "shuttle"))]
    std::thread::yield_now();
}

#[cfg(not(feature = "shuttle"))]
mod tid {
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(1);
    std::thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    /// A process-unique, never-zero id of the calling thread (ESE's thread id in
    /// `dwTrxContext`). Cheaper than `std::thread::current().id()`, which clones an `Arc`.
    pub(crate) fn current() -> u64 {
        ID.with(|id| *id)
    }
}

#[cfg(feature = "shuttle")]
mod tid {
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(1);
    shuttle::thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    /// A process-unique, never-zero id of the calling (shuttle) thread.
    pub(crate) fn current() -> u64 {
        ID.with(|id| *id)
    }
}

pub(crate) use tid::current as current_thread_id;
