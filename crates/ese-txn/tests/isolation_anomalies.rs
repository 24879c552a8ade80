//! An Elle-style list-append history check on real threads: transactions append unique
//! elements to lists (read-modify-write of a record) and read lists. Afterwards the history
//! must show no dirty read (no element of an aborted or never-committed transaction is ever
//! read), no lost update (every committed append is in the final list exactly once), every
//! read a prefix of the final list, and no read skew (a transaction that saw one append of
//! another transaction sees all of that transaction's appends to the keys it read).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread;

use common::MemStore;
use ese_core::{ErrorKind, ObjId, TrxId};
use ese_txn::VersionStore;

const TREE: ObjId = ObjId(2);
const KEYS: u8 = 5;

#[derive(Debug, Default)]
struct History {
    /// element -> (key) for every append of a committed transaction
    committed: HashMap<u32, u8>,
    /// elements appended by transactions that did not commit
    aborted: HashSet<u32>,
    /// elements appended together by one committed transaction
    groups: Vec<Vec<(u8, u32)>>,
    /// (reads of one committed transaction: key -> list)
    reads: Vec<HashMap<u8, Vec<u32>>>,
}

fn decode(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn run(seed: u64) {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 8 << 20, TrxId(1)));
    {
        let mut t = vs.begin("setup".into(), false);
        for k in 0..KEYS {
            t.insert(TREE, &[k], &[]).unwrap();
        }
        t.commit_level(false).unwrap();
    }
    let history = Arc::new(Mutex::new(History::default()));
    let threads: Vec<_> = (0..4u32)
        .map(|tid| {
            let (vs, history) = (Arc::clone(&vs), Arc::clone(&history));
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed * 31 + u64::from(tid));
                for n in 0..400u32 {
                    let mut t = vs.begin(format!("thread {tid}"), false);
                    let mut reads = HashMap::new();
                    let mut appends = Vec::new();
                    let mut ok = true;
                    for _ in 0..rng.usize(1..4) {
                        let k = rng.u8(0..KEYS);
                        let cur = decode(&t.read(TREE, &[k]).unwrap().unwrap());
                        if rng.bool() {
                            reads.entry(k).or_insert(cur);
                        } else {
                            let e = (tid << 24) | (n * 8 + appends.len() as u32);
                            let mut v: Vec<u8> = cur.iter().flat_map(|x| x.to_le_bytes()).collect();
                            v.extend_from_slice(&e.to_le_bytes());
                            match t.replace(TREE, &[k], &v) {
                                Ok(()) => appends.push((k, e)),
                                Err(err) => {
                                    assert_eq!(err.kind(), ErrorKind::WriteConflict);
                                    appends.push((k, e));
                                    ok = false;
                                    break;
                                }
                            }
                        }
                    }
                    let commit = ok && rng.u8(0..10) != 0;
                    let mut h = history.lock().unwrap();
                    if commit {
                        t.commit_level(rng.bool()).unwrap();
                        for &(k, e) in &appends {
                            h.committed.insert(e, k);
                        }
                        h.groups.push(appends);
                        h.reads.push(reads);
                    } else {
                        t.rollback_all().unwrap();
                        h.aborted.extend(appends.iter().map(|(_, e)| *e));
                    }
                    drop(h);
                    if rng.u8(0..20) == 0 {
                        vs.cleanup().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let h = history.lock().unwrap();
    let reader = vs.begin("final".into(), true);
    let mut fin = HashMap::new();
    for k in 0..KEYS {
        fin.insert(k, decode(&reader.read(TREE, &[k]).unwrap().unwrap()));
    }
    // No lost update, no aborted element in the final state.
    let mut seen = HashSet::new();
    for (k, list) in &fin {
        for e in list {
            assert!(seen.insert(*e), "element {e} twice");
            assert_eq!(
                h.committed.get(e),
                Some(k),
                "element {e} in key {k} not committed there"
            );
        }
    }
    assert_eq!(seen.len(), h.committed.len(), "lost updates");
    let pos: HashMap<u32, usize> = fin
        .values()
        .flat_map(|l| l.iter().enumerate().map(|(i, e)| (*e, i)))
        .collect();
    let group_of: HashMap<u32, usize> = h
        .groups
        .iter()
        .enumerate()
        .flat_map(|(g, a)| a.iter().map(move |(_, e)| (*e, g)))
        .collect();
    for (own, reads) in h.reads.iter().enumerate() {
        for (k, list) in reads {
            // Every read is a prefix of the final list: no dirty read, no lost write.
            assert_eq!(
                &fin[k][..list.len()],
                &list[..],
                "read of key {k} is not a prefix"
            );
            for e in list {
                assert!(!h.aborted.contains(e), "dirty read of {e}");
            }
        }
        // Read skew: a transaction that saw one element of group g sees every element of g on
        // every key it read.
        let mut groups_seen = HashSet::new();
        for list in reads.values() {
            for e in list {
                groups_seen.insert(group_of[e]);
            }
        }
        groups_seen.remove(&own);
        for g in groups_seen {
            for (k, e) in &h.groups[g] {
                if let Some(list) = reads.get(k) {
                    assert!(
                        list.len() > pos[e] && list[pos[e]] == *e,
                        "read skew: group {g} partly seen on key {k}"
                    );
                }
            }
        }
    }
}

#[test]
fn list_append_histories_are_snapshot_isolated() {
    for seed in 0..4 {
        run(seed);
    }
}
