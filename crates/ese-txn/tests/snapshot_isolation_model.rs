//! Model test: random interleavings of several transactions (begin, nested begin, insert,
//! replace, delete, escrow, read, commit, rollback at random levels, cleanup) against a
//! reference model of snapshot isolation with first-writer-wins. Every read must return what
//! the model says, every conflict the model predicts must be reported as `WriteConflict` and
//! no other, and after the run the store must hold exactly the committed state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
#![allow(
    clippy::many_single_char_names,
    clippy::type_complexity,
    clippy::match_same_arms,
    reason = "a model test reads best as one loop over terse state"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::MemStore;
use ese_core::{ErrorKind, ObjId, TrxId};
use ese_txn::{Transaction, VersionStore};

const TREE: ObjId = ObjId(5);
/// Keys 0..PLAIN are plain records; PLAIN..PLAIN+ESCROW hold an i64 counter and only see
/// escrow updates.
const PLAIN: u8 = 6;
const ESCROW: u8 = 2;

#[derive(Clone, Debug, Default)]
struct ModelTrx {
    snapshot: u64,
    /// One map per open level: key -> new value (None = deleted) or escrow delta.
    levels: Vec<HashMap<u8, Option<Vec<u8>>>>,
    deltas: Vec<HashMap<u8, i64>>,
}

#[derive(Default)]
struct Model {
    /// Committed versions per key: (commit ts, value).
    versions: BTreeMap<u8, Vec<(u64, Option<Vec<u8>>)>>,
    ts: u64,
}

impl Model {
    fn committed_at(&self, k: u8, snapshot: u64) -> Option<Vec<u8>> {
        self.versions
            .get(&k)
            .and_then(|v| v.iter().rev().find(|(ts, _)| *ts <= snapshot))
            .and_then(|(_, val)| val.clone())
    }
    fn latest(&self, k: u8) -> Option<Vec<u8>> {
        self.committed_at(k, u64::MAX)
    }
    fn committed_after(&self, k: u8, snapshot: u64) -> bool {
        self.versions
            .get(&k)
            .is_some_and(|v| v.iter().any(|(ts, _)| *ts > snapshot))
    }
}

fn view(m: &Model, t: &ModelTrx, k: u8) -> Option<Vec<u8>> {
    for l in t.levels.iter().rev() {
        if let Some(v) = l.get(&k) {
            return v.clone();
        }
    }
    let base = m.committed_at(k, t.snapshot);
    if k >= PLAIN {
        let d: i64 = t.deltas.iter().filter_map(|l| l.get(&k)).sum();
        return base.map(|b| {
            (i64::from_le_bytes(b[..8].try_into().unwrap()) + d)
                .to_le_bytes()
                .to_vec()
        });
    }
    base
}

fn writes(t: &ModelTrx, k: u8) -> bool {
    t.levels.iter().any(|l| l.contains_key(&k))
}

fn run(seed: u64, steps: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store.clone(), 1 << 20, TrxId(1)));
    let mut model = Model::default();
    // Escrow counters exist from the start, committed at ts 0.
    {
        let mut t = vs.begin("setup".into(), false);
        for k in PLAIN..PLAIN + ESCROW {
            t.insert(TREE, &[k], &0i64.to_le_bytes()).unwrap();
            model
                .versions
                .entry(k)
                .or_default()
                .push((0, Some(0i64.to_le_bytes().to_vec())));
        }
        t.commit_level(false).unwrap();
    }
    let mut slots: Vec<Option<(Transaction, ModelTrx, u64)>> = (0..4).map(|_| None).collect();
    for step in 0..steps {
        let i = rng.usize(0..slots.len());
        let action = rng.u8(0..100);
        if slots[i].is_none() {
            let t = vs.begin(format!("slot {i}"), false);
            // The real snapshot is the last commit timestamp; the model's equals it.
            let snap = model.ts + 1;
            slots[i] = Some((
                t,
                ModelTrx {
                    snapshot: snap,
                    levels: vec![HashMap::new()],
                    deltas: vec![HashMap::new()],
                },
                0,
            ));
            continue;
        }
        let (t, mt, _) = slots[i].as_mut().unwrap();
        let others_write =
            |slots: &Vec<Option<(Transaction, ModelTrx, u64)>>, k: u8, escrow: bool| {
                slots.iter().enumerate().any(|(j, s)| {
                    j != i
                        && s.as_ref().is_some_and(|(_, o, _)| {
                            writes(o, k) || (!escrow && o.deltas.iter().any(|l| l.contains_key(&k)))
                        })
                })
            };
        match action {
            0..=19 => {
                let k = rng.u8(0..PLAIN + ESCROW);
                let got = t.read(TREE, &[k]).unwrap();
                assert_eq!(got, view(&model, mt, k), "seed {seed} step {step} read {k}");
            }
            20..=49 => {
                let k = rng.u8(0..PLAIN);
                let val = vec![rng.u8(..); rng.usize(1..20)];
                let op = rng.u8(0..3);
                let conflict = others_write(&slots, k, false) || {
                    let (_, mt, _) = slots[i].as_ref().unwrap();
                    !writes(mt, k) && model.committed_after(k, mt.snapshot)
                };
                let (t, mt, _) = slots[i].as_mut().unwrap();
                let seen = view(&model, mt, k);
                let r = match op {
                    0 => t.insert(TREE, &[k], &val),
                    1 => t.replace(TREE, &[k], &val),
                    _ => t.delete(TREE, &[k]),
                };
                if conflict {
                    assert_eq!(
                        r.unwrap_err().kind(),
                        ErrorKind::WriteConflict,
                        "seed {seed} step {step}"
                    );
                    continue;
                }
                let expect = match (op, &seen) {
                    (0, Some(_)) => Err(ErrorKind::KeyDuplicate),
                    (0, None) => Ok(Some(val.clone())),
                    (1, Some(_)) => Ok(Some(val.clone())),
                    (_, None) => Err(ErrorKind::RecordNotFound),
                    (_, Some(_)) => Ok(None),
                };
                match expect {
                    Ok(v) => {
                        r.unwrap_or_else(|e| {
                            panic!("seed {seed} step {step} op {op} key {k}: {e}")
                        });
                        mt.levels.last_mut().unwrap().insert(k, v);
                    }
                    Err(kind) => assert_eq!(r.unwrap_err().kind(), kind, "seed {seed} step {step}"),
                }
            }
            50..=59 => {
                let k = rng.u8(PLAIN..PLAIN + ESCROW);
                let d = i64::from(rng.i8(..));
                let conflict = others_write(&slots, k, true);
                let (t, mt, _) = slots[i].as_mut().unwrap();
                let before = view(&model, mt, k);
                let r = t.escrow(TREE, &[k], 0, 8, d);
                if conflict {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::WriteConflict);
                    continue;
                }
                let old = r.unwrap();
                assert_eq!(
                    Some(old.to_le_bytes().to_vec()),
                    before,
                    "seed {seed} step {step} escrow"
                );
                *mt.deltas.last_mut().unwrap().entry(k).or_default() += d;
            }
            60..=69 => {
                if t.begin_level().is_ok() {
                    mt.levels.push(HashMap::new());
                    mt.deltas.push(HashMap::new());
                } else {
                    assert_eq!(mt.levels.len(), 7);
                }
            }
            70..=84 => {
                // Commit one level.
                let lazy = rng.bool();
                t.commit_level(lazy).unwrap();
                if mt.levels.len() > 1 {
                    let top = mt.levels.pop().unwrap();
                    mt.levels.last_mut().unwrap().extend(top);
                    let top = mt.deltas.pop().unwrap();
                    for (k, d) in top {
                        *mt.deltas.last_mut().unwrap().entry(k).or_default() += d;
                    }
                } else {
                    model.ts += 1;
                    let ts = model.ts + 1;
                    for (k, v) in mt.levels.pop().unwrap() {
                        model.versions.entry(k).or_default().push((ts, v));
                    }
                    for (k, d) in mt.deltas.pop().unwrap() {
                        let cur = model.latest(k).unwrap();
                        let n = i64::from_le_bytes(cur[..8].try_into().unwrap()) + d;
                        model
                            .versions
                            .entry(k)
                            .or_default()
                            .push((ts, Some(n.to_le_bytes().to_vec())));
                    }
                    slots[i] = None;
                }
            }
            85..=96 => {
                t.rollback_level().unwrap();
                mt.levels.pop();
                mt.deltas.pop();
                if mt.levels.is_empty() {
                    slots[i] = None;
                }
            }
            _ => {
                vs.cleanup().unwrap();
            }
        }
    }
    for s in &mut slots {
        if let Some((t, _, _)) = s.as_mut() {
            t.rollback_all().unwrap();
        }
    }
    vs.cleanup().unwrap();
    // Nothing open: the physical live records equal the model's latest committed state.
    let live = store.live();
    for k in 0..PLAIN + ESCROW {
        assert_eq!(
            live.get(&(TREE, vec![k])).cloned(),
            model.latest(k),
            "seed {seed} final key {k}"
        );
    }
    assert_eq!(
        vs.stats().entries,
        0,
        "cleanup left entries: {:?}",
        vs.stats()
    );
    // Flag-deleted records were physically removed by cleanup.
    assert!(
        store
            .inner
            .lock()
            .data
            .values()
            .all(|s| matches!(s, ese_txn::PhysState::Present(_)))
    );
}

#[test]
fn interleavings_match_the_snapshot_isolation_model() {
    let seeds: u64 = std::env::var("ESE_MODEL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        run(seed, 400);
    }
}
