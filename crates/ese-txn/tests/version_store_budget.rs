//! The version-store budget: a long-running reader pins versions; updates fill the budget and
//! get `VersionStoreOutOfMemory` naming the oldest transaction (ESE's event 623); after that
//! transaction ends, cleanup frees the space and work continues. Bulk inserts are not charged.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::MemStore;
use ese_core::{ErrorKind, ObjId, TrxId};
use ese_txn::VersionStore;

const TREE: ObjId = ObjId(1);

#[test]
fn long_reader_pins_versions_until_it_ends() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 64 * 1024, TrxId(1)));
    let mut setup = vs.begin("setup".into(), false);
    for k in 0..100u32 {
        setup.insert(TREE, &k.to_le_bytes(), &[0u8; 100]).unwrap();
    }
    setup.commit_level(false).unwrap();
    vs.cleanup().unwrap();
    assert_eq!(vs.stats().entries, 0);

    let reader = vs.begin("session 7 (the long reader)".into(), true);
    let mut filled = false;
    for round in 0..1000u32 {
        let mut w = vs.begin(format!("writer round {round}"), false);
        let r = w.replace(TREE, &(round % 100).to_le_bytes(), &[round as u8; 100]);
        match r {
            Ok(()) => {
                w.commit_level(true).unwrap();
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::VersionStoreOutOfMemory);
                assert_eq!(e.code(), -1069);
                let msg = e.to_string();
                assert!(msg.contains("session 7 (the long reader)"), "{msg}");
                w.rollback_level().unwrap();
                filled = true;
                break;
            }
        }
        // The reader still sees the original values: the versions are pinned.
        assert_eq!(
            reader.read(TREE, &0u32.to_le_bytes()).unwrap().unwrap(),
            vec![0u8; 100]
        );
    }
    assert!(filled, "the budget was never exceeded");
    let pinned = vs.stats();
    assert!(pinned.bytes_used > 60 * 1024, "{pinned:?}");
    drop(reader);
    let freed = vs.cleanup().unwrap();
    assert!(freed > 0);
    assert_eq!(vs.stats().bytes_used, 0);
    let mut w = vs.begin("after".into(), false);
    w.replace(TREE, &5u32.to_le_bytes(), b"again").unwrap();
    w.commit_level(false).unwrap();
}

#[test]
fn inserts_are_not_charged_to_the_budget() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 4096, TrxId(1)));
    let mut t = vs.begin("bulk".into(), false);
    for k in 0..20_000u32 {
        t.insert(TREE, &k.to_le_bytes(), &[1u8; 150]).unwrap();
    }
    let s = vs.stats();
    assert_eq!(s.bytes_used, 0);
    assert_eq!(s.insert_entries, 20_000);
    assert!(vs.may_have_versions(TREE));
    t.commit_level(false).unwrap();
    assert!(
        vs.may_have_versions(TREE),
        "committed versions stay until cleanup"
    );
    vs.cleanup().unwrap();
    assert_eq!(vs.stats().entries, 0);
    assert!(
        !vs.may_have_versions(TREE),
        "no versions left: readers may skip the store"
    );
}

#[test]
fn misuse_returns_ese_errors_and_keeps_the_transaction_usable() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 1 << 20, TrxId(1)));
    let mut ro = vs.begin("ro".into(), true);
    assert_eq!(ro.insert(TREE, b"k", b"v").unwrap_err().code(), -1110);
    ro.commit_level(false).unwrap();
    assert_eq!(ro.commit_level(false).unwrap_err().code(), -1054);
    let mut t = vs.begin("t".into(), false);
    for _ in 1..7 {
        t.begin_level().unwrap();
    }
    assert_eq!(t.begin_level().unwrap_err().code(), -1103);
    assert_eq!(t.level(), 7);
    t.insert(TREE, b"k", b"v").unwrap();
    assert_eq!(t.insert(TREE, b"k", b"w").unwrap_err().code(), -1605);
    assert_eq!(t.escrow(TREE, b"k", 0, 3, 1).unwrap_err().code(), -1003);
    t.rollback_all().unwrap();
    assert!(!t.is_open());
}

#[test]
fn background_cleanup_reclaims_versions_without_being_asked() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 1 << 20, TrxId(1)));
    vs.spawn_cleanup(std::time::Duration::from_millis(5), |e| {
        panic!("cleanup failed: {e}")
    })
    .unwrap();
    let mut t = vs.begin("w".into(), false);
    for k in 0..100u32 {
        t.insert(TREE, &k.to_le_bytes(), b"v").unwrap();
    }
    t.commit_level(false).unwrap();
    let mut t = vs.begin("d".into(), false);
    t.delete(TREE, &7u32.to_le_bytes()).unwrap();
    t.commit_level(false).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while vs.stats().entries > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "background cleanup did not run: {:?}",
            vs.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!vs.may_have_versions(TREE));
}

/// A key every transaction locks (as the engine locks a table's catalog record): committed
/// locks no snapshot can conflict with are dropped when the next lock is taken, so the chain
/// stays short between cleanup passes; a lock committed after an open transaction's snapshot
/// is kept and still conflicts with that transaction's write.
#[test]
fn committed_locks_do_not_pile_up_on_a_key_every_transaction_locks() {
    let store = Arc::new(MemStore::default());
    let vs = Arc::new(VersionStore::new(store, 1 << 20, TrxId(1)));
    let key = b"catalog record";
    let mut setup = vs.begin("setup".into(), false);
    setup.insert(TREE, key, b"definition").unwrap();
    setup.commit_level(false).unwrap();
    vs.cleanup().unwrap();
    for i in 0..1000 {
        let mut t = vs.begin(format!("locker {i}"), false);
        t.lock(TREE, key, false).unwrap();
        t.commit_level(true).unwrap();
        // No cleanup pass runs: only the pruning on the next lock keeps the chain short.
        assert!(vs.stats().entries <= 17, "{i}: {:?}", vs.stats());
    }
    // An open transaction with an older snapshot: locks committed after it began stay (they
    // conflict with its write), however many pile up.
    let mut old = vs.begin("old snapshot".into(), false);
    for i in 0..40 {
        let mut t = vs.begin(format!("later locker {i}"), false);
        t.lock(TREE, key, false).unwrap();
        t.commit_level(true).unwrap();
    }
    assert!(vs.stats().entries >= 40, "{:?}", vs.stats());
    let e = old.replace(TREE, key, b"new definition").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WriteConflict);
    old.rollback_level().unwrap();
    vs.cleanup().unwrap();
    assert_eq!(vs.stats().entries, 0);
}
