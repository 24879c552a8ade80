//! Model checking of the gate and the session state machine with shuttle: the real code, with
//! its atomics swapped for shuttle's (feature `shuttle`), under many thread interleavings.
//!
//! Run with `cargo test -p ese-session --features shuttle --test shuttle_model`; CI runs it with
//! a bounded number of iterations (`ESE_SHUTTLE_ITERATIONS`, default 2,000 per property).

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ese_session::{InstanceGate, SessionTable};
use shuttle::thread;

fn iterations() -> usize {
    std::env::var("ESE_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn running() -> (Arc<InstanceGate>, Arc<SessionTable>) {
    let gate = Arc::new(InstanceGate::new());
    gate.begin_init().unwrap().succeed();
    (gate, Arc::new(SessionTable::new(8).unwrap()))
}

/// Three threads race set_context: exactly one wins, the others get -1912.
#[test]
fn set_context_race_one_winner() {
    shuttle::check_pct(
        || {
            let (gate, table) = running();
            let s = table.begin().unwrap();
            let winners = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (1..=3usize)
                .map(|i| {
                    let (s, gate, winners) =
                        (Arc::clone(&s), Arc::clone(&gate), Arc::clone(&winners));
                    thread::spawn(move || match s.set_context(&gate, i) {
                        Ok(()) => {
                            winners.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => assert_eq!(e.code(), -1912),
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(winners.load(Ordering::SeqCst), 1);
        },
        iterations(),
        3,
    );
}

/// Two threads enter the same session: never both inside; the loser gets -1910.
#[test]
fn concurrent_entry_is_exclusive() {
    shuttle::check_random(
        || {
            let (gate, table) = running();
            let s = table.begin().unwrap();
            let inside = Arc::new(AtomicBool::new(false));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (s, gate, inside) =
                        (Arc::clone(&s), Arc::clone(&gate), Arc::clone(&inside));
                    thread::spawn(move || match s.enter(&gate, false) {
                        Ok(call) => {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two threads inside");
                            thread::yield_now();
                            inside.store(false, Ordering::SeqCst);
                            drop(call);
                        }
                        Err(e) => assert_eq!(e.code(), -1910),
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        },
        iterations(),
    );
}

/// A session call racing term: either the call got in before term took the gate (and term
/// waited for it to leave) or it got -1000 (or -1029 after term finished). Term never
/// completes while a call is inside.
#[test]
fn term_never_overlaps_a_session_call() {
    shuttle::check_random(
        || {
            let (gate, table) = running();
            let s = table.begin().unwrap();
            let inside = Arc::new(AtomicBool::new(false));
            let caller = {
                let (s, gate, inside) = (Arc::clone(&s), Arc::clone(&gate), Arc::clone(&inside));
                thread::spawn(move || match s.enter(&gate, false) {
                    Ok(call) => {
                        inside.store(true, Ordering::SeqCst);
                        thread::yield_now();
                        inside.store(false, Ordering::SeqCst);
                        drop(call);
                    }
                    Err(e) => assert!(matches!(e.code(), -1000 | -1029), "{e}"),
                })
            };
            let termer = {
                let (gate, table, inside) =
                    (Arc::clone(&gate), Arc::clone(&table), Arc::clone(&inside));
                thread::spawn(move || {
                    let guard = gate.begin_term(&table).unwrap().unwrap();
                    assert!(!inside.load(Ordering::SeqCst), "term overlapped a call");
                    guard.complete();
                })
            };
            caller.join().unwrap();
            termer.join().unwrap();
        },
        iterations(),
    );
}

/// End session racing set_context: exactly one of them takes the context word.
#[test]
fn end_and_set_context_exclude_each_other() {
    shuttle::check_random(
        || {
            let (gate, table) = running();
            let s = table.begin().unwrap();
            let ender = {
                let (s, gate, table) = (Arc::clone(&s), Arc::clone(&gate), Arc::clone(&table));
                thread::spawn(move || {
                    let call = s.enter(&gate, true)?;
                    call.lock_for_end()?;
                    drop(call);
                    table.remove(&s);
                    Ok::<(), ese_core::Error>(())
                })
            };
            let setter = {
                let (s, gate) = (Arc::clone(&s), Arc::clone(&gate));
                thread::spawn(move || s.set_context(&gate, 11))
            };
            let ended = ender.join().unwrap();
            let set = setter.join().unwrap();
            match (&ended, &set) {
                (Ok(()), Err(e)) => assert!(matches!(e.code(), -1912 | -1104), "{e}"),
                (Err(e), Ok(())) => assert_eq!(e.code(), -1914),
                other => panic!("both or neither won: {other:?}"),
            }
        },
        iterations(),
    );
}
