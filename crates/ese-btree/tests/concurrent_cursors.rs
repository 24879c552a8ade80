//! Readers with cursors scan and seek while a writer inserts and deletes through splits and
//! merges, with a cache small enough that pages are evicted and read back concurrently (two
//! readers of one page share one read). The stable keys (even numbers, never touched by the
//! writer) must always be seen, in order, with their values; the writer's keys (odd numbers)
//! come and go. At the end the integrity check passes and the tree equals the writer's model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ese_btree::{Cursor, Database, DbOptions, MemWal, SeekOp, TreeKind};
use ese_core::fs::{FileSystem, SimFs};

const STABLE: u32 = 3000;

#[expect(clippy::big_endian_bytes, reason = "keys compare bytewise")]
fn key(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

#[expect(clippy::big_endian_bytes, reason = "keys compare bytewise")]
fn num(k: &[u8]) -> u32 {
    u32::from_be_bytes(k.try_into().unwrap())
}

fn stable_value(n: u32) -> Vec<u8> {
    vec![(n % 251) as u8; 40 + (n % 50) as usize]
}

/// Checks the cursor's current node against the stable model and returns its number.
fn check_node(c: &Cursor) -> u32 {
    let n = num(c.key());
    if n.is_multiple_of(2) {
        assert_eq!(c.data(), stable_value(n / 2).as_slice(), "stable key {n}");
    } else {
        assert!(
            c.data().iter().all(|&b| b == c.data()[0]),
            "torn value at {n}"
        );
    }
    n
}

/// Scans `steps` nodes forward (or backward) from the cursor's node and checks that no stable
/// key in between is missing.
fn scan(c: &mut Cursor, steps: usize, forward: bool) -> usize {
    let mut last = check_node(c);
    let mut seen = 1;
    for _ in 0..steps {
        let more = if forward {
            c.move_next().unwrap()
        } else {
            c.move_prev().unwrap()
        };
        if !more {
            break;
        }
        let n = check_node(c);
        if forward {
            assert!(n > last, "keys out of order: {last} then {n}");
            // Every stable key between them is present.
            assert!(n - last <= 2, "stable key skipped between {last} and {n}");
        } else {
            assert!(n < last, "keys out of order: {last} then {n}");
            assert!(last - n <= 2, "stable key skipped between {n} and {last}");
        }
        last = n;
        seen += 1;
    }
    seen
}

#[test]
fn readers_see_stable_keys_while_a_writer_splits_and_merges() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let opts = DbOptions::new()
        .page_size(4096)
        .cache_bytes(0)
        .extension_pages(64);
    let db = Database::create(&fs, Path::new("/cc.edb"), opts, Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0..STABLE {
        t.insert(&key(2 * i), &stable_value(i)).unwrap();
    }
    db.flush().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let t = t.clone();
            let done = Arc::clone(&done);
            let reads = Arc::clone(&reads);
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(100 + r);
                let mut c = t.cursor();
                let mut rounds = 0u64;
                while !done.load(Ordering::Acquire) || rounds < 50 {
                    rounds += 1;
                    let s = rng.u32(0..STABLE);
                    match rng.u8(0..5) {
                        0 => {
                            c.seek(&key(2 * s), SeekOp::Eq).unwrap();
                            assert_eq!(c.data(), stable_value(s).as_slice());
                            assert_eq!(
                                t.get(&key(2 * s)).unwrap().0,
                                stable_value(s),
                                "point read"
                            );
                        }
                        1 => {
                            c.seek(&key(2 * s), SeekOp::Ge).unwrap();
                            scan(&mut c, rng.usize(1..300), true);
                        }
                        2 => {
                            c.seek(&key(2 * s + 1), SeekOp::Le).unwrap();
                            scan(&mut c, rng.usize(1..300), false);
                        }
                        3 => {
                            // Just after a stable key: the next stable key at most 2 away.
                            if c.seek(&key(2 * s), SeekOp::Gt).is_ok() {
                                assert!(num(c.key()) <= 2 * s + 2);
                                check_node(&c);
                            }
                        }
                        _ => {
                            // Hold a position across the writer's changes, then move.
                            c.seek(&key(2 * s), SeekOp::Eq).unwrap();
                            std::thread::yield_now();
                            if c.move_next().unwrap() {
                                let n = check_node(&c);
                                assert!(n > 2 * s && n <= 2 * s + 2);
                            }
                            if c.move_prev().unwrap() {
                                assert!(num(c.key()) <= 2 * s + 1);
                            }
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                rounds
            })
        })
        .collect();
    // The writer: odd keys, values large enough to split and merge leaves.
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..6000u32 {
        let k = 2 * rng.u32(0..STABLE) + 1;
        if model.contains_key(&k) && rng.u8(0..3) > 0 {
            t.delete(&key(k)).unwrap();
            model.remove(&k);
        } else {
            let v = vec![(i % 256) as u8; rng.usize(50..900)];
            if model.contains_key(&k) {
                t.replace(&key(k), &v).unwrap();
            } else {
                t.insert(&key(k), &v).unwrap();
            }
            model.insert(k, v);
        }
        if i % 1000 == 999 {
            // Deletes in a burst: leaves fall below the fill and merge.
            let burst: Vec<u32> = model.keys().copied().take(model.len() / 2).collect();
            for k in burst {
                t.delete(&key(k)).unwrap();
                model.remove(&k);
            }
        }
    }
    done.store(true, Ordering::Release);
    let rounds: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(rounds >= 150, "readers ran {rounds} rounds");
    let stats = db.cache_stats();
    assert!(stats.evictions > 100, "{stats:?}");
    let report = db.check_integrity().unwrap();
    assert_eq!(
        report.trees[1].nodes,
        u64::from(STABLE) + model.len() as u64
    );
    for (k, v) in &model {
        assert_eq!(&t.get(&key(*k)).unwrap().0, v);
    }
    for i in 0..STABLE {
        assert_eq!(t.get(&key(2 * i)).unwrap().0, stable_value(i));
    }
}
