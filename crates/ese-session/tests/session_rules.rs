//! The session rules of ESE-REFERENCE §2.3–§2.4 on the session layer alone: entry, affinity,
//! context set/reset, the end-session lock, and the quota.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::{Arc, Barrier};
use std::thread;

use ese_session::{InstanceGate, SessionTable, TrxBinding};

fn running() -> (Arc<InstanceGate>, Arc<SessionTable>) {
    let gate = Arc::new(InstanceGate::new());
    gate.begin_init().unwrap().succeed();
    (gate, Arc::new(SessionTable::new(16).unwrap()))
}

fn code<T: std::fmt::Debug>(r: ese_core::Result<T>) -> i32 {
    r.expect_err("expected an error").code()
}

#[test]
fn concurrent_entry_is_a_sharing_violation() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    let call = s.enter(&gate, false).unwrap();
    let s2 = Arc::clone(&s);
    let g2 = Arc::clone(&gate);
    let r = thread::spawn(move || s2.enter(&g2, false).map(|_| ()))
        .join()
        .unwrap();
    assert_eq!(code(r), -1910);
    drop(call);
    assert!(s.enter(&gate, false).is_ok());
}

#[test]
fn transaction_binds_to_thread_without_context() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    {
        let c = s.enter(&gate, false).unwrap();
        c.check_begin().unwrap();
        c.push_level();
    }
    assert!(matches!(s.binding(), TrxBinding::Thread(_)));
    let (s2, g2) = (Arc::clone(&s), Arc::clone(&gate));
    let (nested, commit) = thread::spawn(move || {
        let c = s2.enter(&g2, false).unwrap();
        (c.check_begin(), c.check_commit_or_rollback())
    })
    .join()
    .unwrap();
    assert_eq!(code(nested), -1910);
    assert_eq!(code(commit), -1910);
    let c = s.enter(&gate, false).unwrap();
    c.check_commit_or_rollback().unwrap();
    c.pop_level();
    assert_eq!(s.binding(), TrxBinding::None);
    assert_eq!(code(c.check_commit_or_rollback()), -1054);
}

#[test]
fn transaction_depth_is_seven() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    let c = s.enter(&gate, false).unwrap();
    for _ in 0..7 {
        c.check_begin().unwrap();
        c.push_level();
    }
    assert_eq!(code(c.check_begin()), -1103);
    assert_eq!(s.level(), 7);
}

#[test]
fn context_migration_between_threads() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    let (sa, ga) = (Arc::clone(&s), Arc::clone(&gate));
    thread::spawn(move || {
        sa.set_context(&ga, 42).unwrap();
        let c = sa.enter(&ga, false).unwrap();
        c.check_begin().unwrap();
        c.push_level();
        drop(c);
        sa.reset_context(&ga).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(s.binding(), TrxBinding::Context(42));
    // Thread B without the context: -1910.
    let (sb, gb) = (Arc::clone(&s), Arc::clone(&gate));
    let r = thread::spawn(move || sb.enter(&gb, false).unwrap().check_commit_or_rollback())
        .join()
        .unwrap();
    assert_eq!(code(r), -1910);
    // Thread B with the same context: commit works.
    let (sb, gb) = (Arc::clone(&s), Arc::clone(&gate));
    thread::spawn(move || {
        sb.set_context(&gb, 42).unwrap();
        let c = sb.enter(&gb, false).unwrap();
        c.check_commit_or_rollback().unwrap();
        c.pop_level();
        drop(c);
        sb.reset_context(&gb).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(s.level(), 0);
}

#[test]
fn context_values_and_owner_checks() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    assert_eq!(code(s.set_context(&gate, 0)), -1003);
    assert_eq!(code(s.set_context(&gate, usize::MAX)), -1003);
    assert_eq!(s.context(), None);
    assert_eq!(code(s.reset_context(&gate)), -1913);
    s.set_context(&gate, 7).unwrap();
    assert_eq!(code(s.set_context(&gate, 8)), -1912);
    assert_eq!(s.context(), Some(7));
    let (s2, g2) = (Arc::clone(&s), Arc::clone(&gate));
    let r = thread::spawn(move || s2.reset_context(&g2)).join().unwrap();
    assert_eq!(code(r), -1913);
    assert_eq!(s.context(), Some(7));
    s.reset_context(&gate).unwrap();
    assert_eq!(s.context(), None);
}

#[test]
fn end_lock_refuses_while_context_set_and_foreign_thread_trx() {
    let (gate, table) = running();
    let s = table.begin().unwrap();
    s.set_context(&gate, 5).unwrap();
    {
        let c = s.enter(&gate, true).unwrap();
        assert_eq!(code(c.lock_for_end()), -1914);
    }
    assert_eq!(s.context(), Some(5));
    s.reset_context(&gate).unwrap();
    // Thread-bound transaction begun here; end from another thread fails, session unchanged.
    {
        let c = s.enter(&gate, false).unwrap();
        c.check_begin().unwrap();
        c.push_level();
    }
    let (s2, g2) = (Arc::clone(&s), Arc::clone(&gate));
    let r = thread::spawn(move || s2.enter(&g2, true).unwrap().lock_for_end())
        .join()
        .unwrap();
    assert_eq!(code(r), -1910);
    assert_eq!(s.level(), 1);
    assert!(s.set_context(&gate, 9).is_ok(), "session still usable");
    s.reset_context(&gate).unwrap();
    let c = s.enter(&gate, true).unwrap();
    c.lock_for_end().unwrap();
    // While end holds the session, set_context loses.
    assert_eq!(code(s.set_context(&gate, 3)), -1912);
    drop(c);
    table.remove(&s);
    assert_eq!(code(s.enter(&gate, false).map(|_| ())), -1104);
    assert_eq!(code(s.set_context(&gate, 3)), -1104);
}

#[test]
fn quota_gives_out_of_sessions() {
    let gate = InstanceGate::new();
    gate.begin_init().unwrap().succeed();
    let table = SessionTable::new(2).unwrap();
    let a = table.begin().unwrap();
    let _b = table.begin().unwrap();
    assert_eq!(code(table.begin()), -1101);
    table.remove(&a);
    assert!(table.begin().is_ok());
    assert_eq!(code(SessionTable::new(30_001)), -1003);
}

#[test]
fn set_context_race_has_exactly_one_winner() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 1000;
    let (gate, table) = running();
    let s = table.begin().unwrap();
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (s, gate, barrier, results) = (
                Arc::clone(&s),
                Arc::clone(&gate),
                Arc::clone(&barrier),
                Arc::clone(&results),
            );
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    let r = s.set_context(&gate, 1000 + i);
                    let won = match r {
                        Ok(()) => true,
                        Err(e) => {
                            assert_eq!(e.code(), -1912, "loser got {e}");
                            false
                        }
                    };
                    results.lock().unwrap().push((round, won));
                    barrier.wait();
                    if won {
                        s.reset_context(&gate).unwrap();
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for _ in 0..ROUNDS {
        barrier.wait();
        barrier.wait();
        barrier.wait();
    }
    for h in handles {
        h.join().unwrap();
    }
    let results = results.lock().unwrap();
    assert_eq!(results.len(), THREADS * ROUNDS);
    for round in 0..ROUNDS {
        let winners = results.iter().filter(|(r, w)| *r == round && *w).count();
        assert_eq!(winners, 1, "round {round}");
    }
}
