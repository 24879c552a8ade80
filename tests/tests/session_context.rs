//! Conformance of JetSetSessionContext, JetResetSessionContext and JetEndSession with the
//! reference pages in `shared/seeds/` and ESE-REFERENCE §2: one test per return-code row that
//! applies, each asserting ESE's exact number, plus the success paths and thread migration.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::thread;

use common::{code, hold_at, running_instance};
use ese::{CommitGrbit, EndSessionGrbit, RollbackGrbit, TermGrbit};
use ese_session::HoldPoint;

// ---- JetSetSessionContext ----

#[test]
fn set_context_success_then_reset() {
    let (inst, _d) = running_instance("setctx-ok");
    let s = inst.begin_session().unwrap();
    s.set_context(0x1234).unwrap();
    s.reset_context().unwrap();
    s.set_context(0x1234).unwrap();
    s.reset_context().unwrap();
    s.end(EndSessionGrbit::empty()).unwrap();
}

#[test]
fn set_context_null_or_minus_one_is_invalid_parameter() {
    let (inst, _d) = running_instance("setctx-inval");
    let s = inst.begin_session().unwrap();
    assert_eq!(code(s.set_context(0)), -1003);
    assert_eq!(code(s.set_context(usize::MAX)), -1003);
    // Nothing changed: the session has no context (reset fails, end succeeds).
    assert_eq!(code(s.reset_context()), -1913);
    s.end(EndSessionGrbit::empty()).unwrap();
}

#[test]
fn set_context_when_set_is_already_set() {
    let (inst, _d) = running_instance("setctx-twice");
    let s = inst.begin_session().unwrap();
    s.set_context(1).unwrap();
    assert_eq!(code(s.set_context(2)), -1912);
    let s2 = s.clone();
    assert_eq!(
        code(thread::spawn(move || s2.set_context(3)).join().unwrap()),
        -1912
    );
    // Still associated with the first context and thread: reset works here.
    s.reset_context().unwrap();
}

#[test]
fn set_context_after_stop_service_is_client_request_to_stop() {
    let (inst, _d) = running_instance("setctx-stop");
    let s = inst.begin_session().unwrap();
    inst.stop_service().unwrap();
    assert_eq!(code(s.set_context(5)), -1329);
}

#[test]
fn set_context_after_term_is_not_initialized() {
    let (inst, _d) = running_instance("setctx-term");
    let s = inst.begin_session().unwrap();
    inst.term(TermGrbit::empty()).unwrap();
    assert_eq!(code(s.set_context(5)), -1029);
    assert_eq!(code(s.reset_context()), -1029);
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1029);
}

#[test]
fn calls_during_term_are_term_in_progress() {
    let (inst, _d) = running_instance("setctx-terming");
    let s = inst.begin_session().unwrap();
    let (held, release) = hold_at(&inst, HoldPoint::TermLocked);
    let i2 = inst.clone();
    let term = thread::spawn(move || i2.term(TermGrbit::empty()));
    held.recv().unwrap();
    assert_eq!(code(s.set_context(5)), -1000);
    assert_eq!(code(s.reset_context()), -1000);
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1000);
    assert_eq!(code(s.begin_transaction()), -1000);
    assert_eq!(code(inst.begin_session()), -1000);
    assert_eq!(code(inst.term(TermGrbit::empty())), -1000);
    release.wait();
    term.join().unwrap().unwrap();
    assert_eq!(code(inst.begin_session()), -1029);
}

// ---- JetResetSessionContext ----

#[test]
fn reset_context_from_another_thread_is_not_set_by_this_thread() {
    let (inst, _d) = running_instance("resetctx-other");
    let s = inst.begin_session().unwrap();
    s.set_context(77).unwrap();
    let s2 = s.clone();
    assert_eq!(
        code(thread::spawn(move || s2.reset_context()).join().unwrap()),
        -1913
    );
    // Unchanged: still set by this thread.
    assert_eq!(code(s.set_context(78)), -1912);
    s.reset_context().unwrap();
}

#[test]
fn reset_context_without_context_is_not_set_by_this_thread() {
    let (inst, _d) = running_instance("resetctx-none");
    let s = inst.begin_session().unwrap();
    assert_eq!(code(s.reset_context()), -1913);
}

#[test]
fn reset_context_is_allowed_after_stop_service() {
    let (inst, _d) = running_instance("resetctx-stop");
    let s = inst.begin_session().unwrap();
    s.set_context(9).unwrap();
    inst.stop_service().unwrap();
    s.reset_context().unwrap();
}

// ---- JetEndSession ----

#[test]
fn end_session_with_context_set_is_session_in_use_and_session_stays_usable() {
    let (inst, _d) = running_instance("end-inuse");
    let s = inst.begin_session().unwrap();
    s.set_context(3).unwrap();
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1914);
    s.begin_transaction().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    s.reset_context().unwrap();
    s.end(EndSessionGrbit::FORCE_SESSION_CLOSED).unwrap();
}

#[test]
fn ended_session_is_invalid_on_every_clone() {
    let (inst, _d) = running_instance("end-invalid");
    let s = inst.begin_session().unwrap();
    let clone = s.clone();
    s.end(EndSessionGrbit::empty()).unwrap();
    assert_eq!(code(clone.begin_transaction()), -1104);
    assert_eq!(code(clone.set_context(1)), -1104);
    assert_eq!(code(clone.reset_context()), -1104);
    assert_eq!(code(clone.transaction_level()), -1104);
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1104);
}

#[test]
fn end_session_is_allowed_after_stop_service() {
    let (inst, _d) = running_instance("end-stop");
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    inst.stop_service().unwrap();
    assert_eq!(code(s.begin_transaction()), -1329);
    s.end(EndSessionGrbit::empty()).unwrap();
}

#[test]
fn end_session_rolls_back_every_level() {
    let (inst, _d) = running_instance("end-rollback");
    let s = inst.begin_session().unwrap();
    for _ in 0..3 {
        s.begin_transaction().unwrap();
    }
    s.end(EndSessionGrbit::empty()).unwrap();
    // The rolled-back session no longer blocks term.
    inst.term(TermGrbit::empty()).unwrap();
}

#[test]
fn end_session_of_thread_bound_transaction_from_another_thread_is_sharing_violation() {
    let (inst, _d) = running_instance("end-foreign");
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    let s2 = s.clone();
    let r = thread::spawn(move || s2.end(EndSessionGrbit::empty()))
        .join()
        .unwrap();
    assert_eq!(code(r), -1910);
    // Unchanged: the transaction is still open and usable here.
    assert_eq!(s.transaction_level().unwrap(), 1);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    s.end(EndSessionGrbit::empty()).unwrap();
}

#[test]
fn end_session_of_context_bound_transaction_from_any_thread() {
    let (inst, _d) = running_instance("end-ctx");
    let s = inst.begin_session().unwrap();
    s.set_context(0xABC).unwrap();
    s.begin_transaction().unwrap();
    s.reset_context().unwrap();
    let s2 = s.clone();
    thread::spawn(move || s2.end(EndSessionGrbit::empty()))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(code(s.transaction_level()), -1104);
}

// ---- Thread binding and migration ----

#[test]
fn transaction_is_bound_to_its_thread() {
    let (inst, _d) = running_instance("bind-thread");
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    let s2 = s.clone();
    let (nested, commit, rollback) = thread::spawn(move || {
        (
            s2.begin_transaction(),
            s2.commit_transaction(CommitGrbit::empty()),
            s2.rollback(RollbackGrbit::empty()),
        )
    })
    .join()
    .unwrap();
    assert_eq!(code(nested), -1910);
    assert_eq!(code(commit), -1910);
    assert_eq!(code(rollback), -1910);
    s.rollback(RollbackGrbit::empty()).unwrap();
    // Binding released at level 0: another thread may now begin.
    let s3 = s.clone();
    thread::spawn(move || {
        s3.begin_transaction().unwrap();
        s3.commit_transaction(CommitGrbit::empty()).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn context_allows_thread_migration() {
    // ManagedEsent's VerifyJetSetSessionContextAllowsThreadMigration.
    let (inst, _d) = running_instance("migrate");
    let s = inst.begin_session().unwrap();
    let ctx = 0x00C0_FFEE;
    let a = s.clone();
    thread::spawn(move || {
        a.set_context(ctx).unwrap();
        a.begin_transaction().unwrap();
        a.reset_context().unwrap();
    })
    .join()
    .unwrap();
    // Thread B without the context cannot commit.
    let b = s.clone();
    let r = thread::spawn(move || b.commit_transaction(CommitGrbit::empty()))
        .join()
        .unwrap();
    assert_eq!(code(r), -1910);
    // Thread B with the same context commits.
    let b = s.clone();
    thread::spawn(move || {
        b.set_context(ctx).unwrap();
        b.commit_transaction(CommitGrbit::empty()).unwrap();
        b.reset_context().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(s.transaction_level().unwrap(), 0);
}

#[test]
fn context_must_be_set_before_the_begin_to_bind_it() {
    let (inst, _d) = running_instance("ctx-after-begin");
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    s.set_context(5).unwrap();
    s.reset_context().unwrap();
    // The transaction stayed bound to this thread, not to the context.
    let b = s.clone();
    let r = thread::spawn(move || {
        b.set_context(5).unwrap();
        let r = b.commit_transaction(CommitGrbit::empty());
        b.reset_context().unwrap();
        r
    })
    .join()
    .unwrap();
    assert_eq!(code(r), -1910);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

#[test]
fn concurrent_entry_is_session_sharing_violation() {
    let (inst, _d) = running_instance("concurrent");
    let s = inst.begin_session().unwrap();
    let (inside_tx, inside_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = s.clone();
    let t = thread::spawn(move || {
        holder
            .with_call_held(|| {
                inside_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .unwrap();
    });
    inside_rx.recv().unwrap();
    // Another thread is inside a call on this session: every entry is refused, nothing changes.
    assert_eq!(code(s.begin_transaction()), -1910);
    assert_eq!(code(s.transaction_level()), -1910);
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1910);
    release_tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(s.transaction_level().unwrap(), 0);
    s.end(EndSessionGrbit::empty()).unwrap();
}
