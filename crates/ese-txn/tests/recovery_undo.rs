//! Crash recovery of the transaction layer: a random workload of interleaved transactions
//! (nested levels, rollbacks, escrow, lazy and durable commits) is cut at every log position;
//! redo of the prefix followed by the undo pass must leave exactly the transactions whose
//! commit record is in the prefix, and a second crash in the middle of the undo pass followed
//! by another recovery must end in the same state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Entry, MemStore};
use ese_core::{ObjId, TrxId};
use ese_txn::{PhysState, RecoveryUndo, Transaction, TxnRecord, VersionStore};

const TREE: ObjId = ObjId(3);

type State = BTreeMap<(ObjId, Vec<u8>), Vec<u8>>;

fn recover(log: &[Entry]) -> (MemStore, usize) {
    let store = MemStore::replay(log);
    let mut undo = RecoveryUndo::new();
    for e in log {
        let bytes = match e {
            Entry::Write { annotation, .. } if !annotation.is_empty() => annotation,
            Entry::Record(r) => r,
            Entry::Write { .. } => continue,
        };
        undo.observe(TxnRecord::decode(bytes).unwrap());
    }
    let n = undo.unfinished();
    undo.undo_all(&store).unwrap();
    (store, n)
}

fn live(store: &MemStore) -> State {
    store.live()
}

/// Runs a workload and returns the log plus, for each committed transaction in commit order,
/// the log length right after its commit record and the committed state at that point.
fn workload(seed: u64) -> (Vec<Entry>, Vec<(usize, State)>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store.clone(), 1 << 20, TrxId(100)));
    let mut committed: Vec<(usize, State)> = vec![(0, State::new())];
    // The committed state after each commit is read back through a fresh snapshot.
    let mut slots: Vec<Option<Transaction>> = (0..3).map(|_| None).collect();
    for _ in 0..120 {
        let i = rng.usize(0..slots.len());
        if slots[i].is_none() {
            slots[i] = Some(vs.begin(format!("s{i}"), false));
            continue;
        }
        let t = slots[i].as_mut().unwrap();
        match rng.u8(0..100) {
            0..=54 => {
                let k = vec![rng.u8(0..8)];
                let v = vec![rng.u8(..); rng.usize(1..30)];
                let _ = match rng.u8(0..4) {
                    0 => t.insert(TREE, &k, &v),
                    1 => t.replace(TREE, &k, &v),
                    2 => t.delete(TREE, &k),
                    _ => t.escrow(TREE, &k, 0, 4, i64::from(rng.i8(..))).map(|_| ()),
                };
            }
            55..=64 => {
                let _ = t.begin_level();
            }
            65..=74 => {
                t.rollback_level().unwrap();
                if !t.is_open() {
                    slots[i] = None;
                }
            }
            _ => {
                let lazy = rng.bool();
                let info = t.commit_level(lazy).unwrap();
                if info.is_some() {
                    slots[i] = None;
                    // Committed state = what a reader outside any transaction sees now,
                    // restricted to committed data: read every key through a fresh snapshot.
                    let reader = vs.begin("reader".into(), true);
                    let mut st = State::new();
                    for k in 0..8u8 {
                        if let Some(v) = reader.read(TREE, &[k]).unwrap() {
                            st.insert((TREE, vec![k]), v);
                        }
                    }
                    drop(reader);
                    let len = store.inner.lock().log.len();
                    committed.push((len, st));
                }
            }
        }
    }
    let log = store.inner.lock().log.clone();
    (log, committed)
}

#[test]
fn every_log_prefix_recovers_to_the_committed_state() {
    let mut images = 0;
    let mut second_crashes = 0;
    for seed in 0..40 {
        let (log, committed) = workload(seed);
        for cut in 0..=log.len() {
            let expected = &committed
                .iter()
                .rev()
                .find(|(len, _)| *len <= cut)
                .unwrap()
                .1;
            let (store, unfinished) = recover(&log[..cut]);
            assert_eq!(&live(&store), expected, "seed {seed} cut {cut}");
            images += 1;
            // A crash in the middle of the undo pass, then recovery again.
            if unfinished > 0 {
                let after = store.inner.lock().log.clone();
                for cut2 in cut..after.len() {
                    let (again, _) = recover(&after[..cut2]);
                    assert_eq!(
                        &live(&again),
                        expected,
                        "seed {seed} cut {cut} second cut {cut2}"
                    );
                    second_crashes += 1;
                }
            }
        }
    }
    println!("recovery images: {images}, second-crash images: {second_crashes}");
    assert!(images > 1000 && second_crashes > 100);
}

#[test]
fn undo_restores_deleted_and_replaced_records() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store.clone(), 1 << 20, TrxId(1)));
    let mut t = vs.begin("a".into(), false);
    t.insert(TREE, b"k1", b"one").unwrap();
    t.insert(TREE, b"k2", b"two").unwrap();
    t.insert(TREE, b"k4", b"four").unwrap();
    t.commit_level(false).unwrap();
    let mut t = vs.begin("b".into(), false);
    t.replace(TREE, b"k1", b"ONE").unwrap();
    t.delete(TREE, b"k2").unwrap();
    t.insert(TREE, b"k3", b"three").unwrap();
    // Deleted, inserted again with other data and deleted again: undone newest first, each
    // delete by clearing its flag over the data that delete kept.
    t.delete(TREE, b"k4").unwrap();
    t.insert(TREE, b"k4", b"FOUR").unwrap();
    t.delete(TREE, b"k4").unwrap();
    let log = store.inner.lock().log.clone();
    std::mem::forget(t);
    let (rec, n) = recover(&log);
    assert_eq!(n, 1);
    let live = live(&rec);
    assert_eq!(live.get(&(TREE, b"k1".to_vec())).unwrap(), b"one");
    assert_eq!(live.get(&(TREE, b"k2".to_vec())).unwrap(), b"two");
    assert_eq!(live.get(&(TREE, b"k4".to_vec())).unwrap(), b"four");
    assert!(!live.contains_key(&(TREE, b"k3".to_vec())));
    assert!(
        rec.inner
            .lock()
            .data
            .values()
            .all(|s| matches!(s, PhysState::Present(_)))
    );
}
