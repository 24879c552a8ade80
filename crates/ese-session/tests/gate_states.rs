//! The instance gate's states and the error each gives (ESE-REFERENCE §1.3–§1.4), on the
//! session layer alone. The same rows are checked through the public API in `tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

use ese_core::{Error, ErrorKind};
use ese_session::{HoldPoint, InstanceGate, InstanceState, SessionTable};

fn code<T: std::fmt::Debug>(r: ese_core::Result<T>) -> i32 {
    r.expect_err("expected an error").code()
}

#[test]
fn created_instance_refuses_calls_and_terms_trivially() {
    let gate = InstanceGate::new();
    let table = SessionTable::new(16).unwrap();
    assert_eq!(gate.state(), InstanceState::Created);
    assert_eq!(code(gate.enter().map(|_| ())), -1029);
    assert_eq!(code(gate.check_session_call(false)), -1029);
    assert!(gate.begin_term(&table).unwrap().is_none());
}

#[test]
fn init_twice_is_already_initialized_and_failed_init_frees() {
    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    assert_eq!(gate.state(), InstanceState::Running);
    assert_eq!(code(gate.begin_init().map(|_| ())), -1030);
    assert_eq!(code(gate.begin_restore().map(|_| ())), -1030);

    let failed = InstanceGate::new();
    drop(failed.begin_init().unwrap());
    assert_eq!(failed.state(), InstanceState::Freed);
    assert_eq!(code(failed.enter().map(|_| ())), -1115);
    assert_eq!(code(failed.begin_init().map(|_| ())), -1115);
}

#[test]
fn stop_service_and_exempt_calls() {
    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    gate.stop_service().unwrap();
    assert_eq!(code(gate.enter().map(|_| ())), -1329);
    assert_eq!(code(gate.check_session_call(false)), -1329);
    assert!(gate.check_session_call(true).is_ok());
}

#[test]
fn unavailable_gives_1090_or_1092() {
    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    gate.set_unavailable(&Error::new(ErrorKind::LogDiskFull));
    gate.set_unavailable(&Error::new(ErrorKind::DiskIO));
    assert_eq!(code(gate.enter().map(|_| ())), -1092);
    assert_eq!(code(gate.check_session_call(true)), -1092);
    assert_eq!(gate.fatal_error().unwrap().kind(), ErrorKind::LogDiskFull);

    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    gate.set_unavailable(&Error::new(ErrorKind::LogWriteFail));
    assert_eq!(code(gate.enter().map(|_| ())), -1090);
    // Term is still allowed on an unavailable instance.
    let table = SessionTable::new(4).unwrap();
    gate.begin_term(&table).unwrap().unwrap().complete();
    assert_eq!(gate.state(), InstanceState::Created);
}

/// Term held at its lock point while another thread calls: -1000 for instance and session
/// calls, and term waits for a call already inside a session.
#[test]
fn term_in_progress_is_seen_by_concurrent_calls() {
    let gate = Arc::new(InstanceGate::new());
    gate.begin_init().unwrap().succeed();
    let table = Arc::new(SessionTable::new(16).unwrap());
    let s = table.begin().unwrap();

    let (held_tx, held_rx) = mpsc::channel();
    let release = Arc::new(Barrier::new(2));
    let r2 = Arc::clone(&release);
    gate.set_hold_hook(Some(Box::new(move |p| {
        if p == HoldPoint::TermLocked {
            held_tx.send(()).unwrap();
            r2.wait();
        }
    })));
    let (g, t) = (Arc::clone(&gate), Arc::clone(&table));
    let term = thread::spawn(move || {
        let guard = g.begin_term(&t).unwrap().unwrap();
        guard.complete();
    });
    held_rx.recv().unwrap();
    assert_eq!(gate.state(), InstanceState::Terminating);
    assert_eq!(code(gate.enter().map(|_| ())), -1000);
    assert_eq!(code(s.enter(&gate, false).map(|_| ())), -1000);
    assert_eq!(code(s.set_context(&gate, 3)), -1000);
    assert_eq!(code(gate.begin_term(&table).map(|_| ())), -1000);
    assert_eq!(code(gate.begin_restore().map(|_| ())), -1030);
    release.wait();
    term.join().unwrap();
    assert_eq!(code(s.enter(&gate, false).map(|_| ())), -1029);
}

#[test]
fn restore_in_progress_is_seen_by_concurrent_calls() {
    let gate = Arc::new(InstanceGate::new());
    let table = SessionTable::new(16).unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let release = Arc::new(Barrier::new(2));
    let r2 = Arc::clone(&release);
    gate.set_hold_hook(Some(Box::new(move |p| {
        if p == HoldPoint::RestoreLocked {
            held_tx.send(()).unwrap();
            r2.wait();
        }
    })));
    let g = Arc::clone(&gate);
    let restore = thread::spawn(move || drop(g.begin_restore().unwrap()));
    held_rx.recv().unwrap();
    assert_eq!(gate.state(), InstanceState::Restoring);
    assert_eq!(code(gate.enter().map(|_| ())), -506);
    assert_eq!(code(gate.check_session_call(true)), -506);
    assert_eq!(code(gate.begin_init().map(|_| ())), -1030);
    assert_eq!(code(gate.begin_term(&table).map(|_| ())), -506);
    release.wait();
    restore.join().unwrap();
    assert_eq!(gate.state(), InstanceState::Created);
    gate.set_hold_hook(None);
    gate.begin_init().unwrap().succeed();
    assert!(gate.enter().is_ok());
}

#[test]
fn term_waits_for_a_call_in_flight() {
    let gate = Arc::new(InstanceGate::new());
    gate.begin_init().unwrap().succeed();
    let table = Arc::new(SessionTable::new(16).unwrap());
    let s = table.begin().unwrap();
    let call = s.enter(&gate, false).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g, t, d) = (Arc::clone(&gate), Arc::clone(&table), Arc::clone(&done));
    let term = thread::spawn(move || {
        let guard = g.begin_term(&t).unwrap().unwrap();
        d.store(true, std::sync::atomic::Ordering::SeqCst);
        guard.complete();
    });
    thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "term must wait for the call"
    );
    drop(call);
    term.join().unwrap();
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
}
