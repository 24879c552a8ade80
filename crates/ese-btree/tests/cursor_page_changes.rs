//! A cursor whose leaf changed since it read it (its dbtime moved) finds its next or previous
//! node on that same leaf when the leaf still holds nodes on both sides of its key, without a
//! descent from the root (the cache sees no page request); when the leaf no longer covers the
//! neighbour (a split moved it), the cursor re-seeks and still lands on the right node.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, MemWal, SeekOp, TreeKind};
use ese_core::fs::{FileSystem, SimFs};

#[expect(clippy::big_endian_bytes, reason = "keys compare bytewise")]
fn key(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

#[expect(clippy::big_endian_bytes, reason = "keys compare bytewise")]
fn num(k: &[u8]) -> u32 {
    u32::from_be_bytes(k.try_into().unwrap())
}

#[test]
fn moves_after_a_change_of_the_leaf_stay_on_it_and_splits_re_seek() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let db = Database::create(
        &fs,
        Path::new("/c.edb"),
        DbOptions::new(),
        Arc::new(MemWal::new()),
    )
    .unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0..2000 {
        t.insert(&key(2 * i), &[7; 20]).unwrap();
    }
    let hits = || db.cache_stats().hits;
    let mut c = t.cursor();
    c.seek(&key(500), SeekOp::Eq).unwrap();

    // An insert next to the cursor changes its leaf.
    t.insert(&key(501), b"new").unwrap();
    let h = hits();
    assert!(c.move_next().unwrap());
    assert_eq!(num(c.key()), 501);
    assert_eq!(c.data(), b"new");
    assert_eq!(hits(), h, "the move descended from the root");

    // A delete of the next node.
    t.delete(&key(502)).unwrap();
    let h = hits();
    assert!(c.move_next().unwrap());
    assert_eq!(num(c.key()), 504);
    assert_eq!(hits(), h, "the move descended from the root");

    // Backwards over a node inserted meanwhile.
    t.insert(&key(503), b"back").unwrap();
    let h = hits();
    assert!(c.move_prev().unwrap());
    assert_eq!(num(c.key()), 503);
    assert!(c.move_prev().unwrap());
    assert_eq!(num(c.key()), 501);
    assert_eq!(hits(), h, "the move descended from the root");

    // Splits around the cursor: every node after it is still found, in order.
    let mut c = t.cursor();
    c.seek(&key(1000), SeekOp::Eq).unwrap();
    for i in 0..400 {
        t.insert(&key(1001 + 2 * i), &[9; 200]).unwrap();
    }
    for want in 1001..=1500 {
        assert!(c.move_next().unwrap());
        assert_eq!(num(c.key()), want);
    }
    // And back, after more splits behind the cursor.
    for i in 0..300 {
        t.insert(&key(3001 + 2 * i), &[5; 200]).unwrap();
    }
    for want in (1000..1500).rev() {
        assert!(c.move_prev().unwrap());
        assert_eq!(num(c.key()), want);
    }
    db.check_integrity().unwrap();
}
