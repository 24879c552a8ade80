//! `Tree::put_with` with a cursor's leaf hint (`Cursor::leaf_hint`): a hint on the leaf that
//! holds the key replaces the descent from the root; any other hint (a leaf without the key,
//! a leaf of another tree, a page freed by a merge since) is ignored and the change descends
//! as without one. Every change lands on the right node either way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{
    Database, DbOptions, LeafHint, MemWal, NodeFlags, NodeState, PutTarget, SeekOp, Tree, TreeKind,
    Wal,
};
use ese_core::fs::{FileSystem, SimFs};

const ROWS: u32 = 3_000;

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn data(i: u32, round: u8) -> Vec<u8> {
    vec![round; 40 + (i % 7) as usize]
}

fn setup() -> (Database, Tree, Tree) {
    let fsd: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let wal = Arc::new(MemWal::new());
    let db = Database::create(
        &fsd,
        Path::new("/h.edb"),
        DbOptions::new().page_size(4096).cache_bytes(1 << 20),
        wal as Arc<dyn Wal>,
    )
    .unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    let other = db.create_tree(TreeKind::Table).unwrap();
    for i in 0..ROWS {
        let d = data(i, 1);
        for tree in [&t, &other] {
            tree.put(
                &key(i),
                NodeState::Present {
                    data: &d,
                    flags: NodeFlags(0),
                },
                &[],
            )
            .unwrap();
        }
    }
    (db, t, other)
}

/// The hint of a cursor of `t` positioned on `k`.
fn hint_at(t: &Tree, k: &[u8]) -> LeafHint {
    let mut c = t.cursor();
    c.seek(k, SeekOp::Eq).unwrap();
    c.leaf_hint().expect("positioned")
}

/// Replaces the data of `k` with `d` through `put_with`, with `hint`; returns the cache look-ups
/// (hits and misses) the change took.
fn replace(db: &Database, t: &Tree, k: &[u8], d: &[u8], hint: Option<&LeafHint>) -> u64 {
    let before = db.cache_stats();
    let lg = t
        .put_with(
            k,
            PutTarget::State(NodeState::Present {
                data: d,
                flags: NodeFlags(0),
            }),
            hint,
            |node, _| {
                assert!(node.is_some(), "the decision sees the node");
                Ok(true)
            },
        )
        .unwrap();
    assert!(lg.is_some(), "the change was logged");
    let after = db.cache_stats();
    (after.hits + after.misses) - (before.hits + before.misses)
}

#[test]
fn a_hint_on_the_keys_leaf_replaces_the_descent() {
    let (db, t, _) = setup();
    let k = key(1234);
    let plain = replace(&db, &t, &k, &data(1234, 2), None);
    assert!(
        plain >= 2,
        "a descent through a tree of {ROWS} rows reads {plain} pages"
    );
    let hint = hint_at(&t, &k);
    let hinted = replace(&db, &t, &k, &data(1234, 3), Some(&hint));
    assert_eq!(hinted, 0, "the hinted change looks up no page");
    assert_eq!(t.get(&k).unwrap().0, data(1234, 3));
    // A flag change through the hint.
    let lg = t
        .put_with(
            &k,
            PutTarget::Flags(NodeFlags::DELETED),
            Some(&hint),
            |_, _| Ok(true),
        )
        .unwrap();
    assert!(lg.is_some());
    let mut c = t.cursor();
    c.seek(&k, SeekOp::Eq).unwrap();
    assert!(c.flags().contains(NodeFlags::DELETED));
    assert_eq!(c.data(), &data(1234, 3)[..]);
    db.check_integrity().unwrap();
}

#[test]
fn a_hint_that_does_not_hold_the_key_is_ignored() {
    let (db, t, other) = setup();
    // A leaf of the same tree far from the key.
    let far = hint_at(&t, &key(5));
    let k = key(2900);
    let n = replace(&db, &t, &k, &data(2900, 4), Some(&far));
    assert!(n >= 2, "the change descended ({n} look-ups)");
    assert_eq!(t.get(&k).unwrap().0, data(2900, 4));
    assert_eq!(
        t.get(&key(5)).unwrap().0,
        data(5, 1),
        "the hinted leaf is unchanged"
    );
    // The same key's leaf in another tree.
    let foreign = hint_at(&other, &k);
    let n = replace(&db, &t, &k, &data(2900, 5), Some(&foreign));
    assert!(n >= 2, "the change descended ({n} look-ups)");
    assert_eq!(t.get(&k).unwrap().0, data(2900, 5));
    assert_eq!(
        other.get(&k).unwrap().0,
        data(2900, 1),
        "the other tree is unchanged"
    );
    db.check_integrity().unwrap();
}

#[test]
fn a_hint_on_a_page_freed_since_is_ignored() {
    let (db, t, _) = setup();
    let stale = hint_at(&t, &key(10));
    // Empty the first third of the tree: its leaves merge and are freed.
    for i in 0..ROWS / 3 {
        t.put(&key(i), NodeState::Absent, &[]).unwrap();
    }
    for i in [10, ROWS / 3, ROWS / 2, ROWS - 1] {
        let k = key(i);
        let d = data(i, 6);
        let r = t.put_with(
            &k,
            PutTarget::State(NodeState::Present {
                data: &d,
                flags: NodeFlags(0),
            }),
            Some(&stale),
            |_, _| Ok(true),
        );
        r.unwrap();
        assert_eq!(t.get(&k).unwrap().0, d, "key {i}");
    }
    let report = db.check_integrity().unwrap();
    assert!(report.free_pages > 0, "the merges freed pages");
}
