//! `Transaction::holds_version` and `Transaction::lock_and_read`: what a transaction holds,
//! for short transactions (answered from the transaction's own list) and long ones (answered
//! from the key's chain), and what a lock reads.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::MemStore;
use ese_core::{ErrorKind, ObjId, TrxId};
use ese_txn::VersionStore;

const TREE: ObjId = ObjId(5);
const OTHER: ObjId = ObjId(6);

/// A version store over an empty store.
fn store() -> Arc<VersionStore> {
    store_over().0
}

/// A version store over an empty store, and the store.
fn store_over() -> (Arc<VersionStore>, Arc<MemStore>) {
    let mem = Arc::new(MemStore::default());
    (
        Arc::new(VersionStore::new(mem.clone(), 64 << 20, TrxId(1))),
        mem,
    )
}

/// After a cleanup with one open transaction holding a change of one key of `TREE`: that
/// entry alone is left, and only `TREE` is announced as versioned.
fn assert_only_the_open_change_left(vs: &VersionStore) {
    let st = vs.stats();
    assert_eq!(
        (st.entries, st.keys, st.insert_entries),
        (1, 1, 0),
        "{st:?}"
    );
    assert!(vs.may_have_versions(TREE));
    assert!(!vs.may_have_versions(OTHER), "every entry of OTHER is gone");
}

/// Nothing left in the version store.
fn assert_empty(vs: &VersionStore) {
    let st = vs.stats();
    assert_eq!((st.entries, st.keys, st.bytes_used), (0, 0, 0), "{st:?}");
    assert!(!vs.may_have_versions(TREE));
}

/// Inserts `key` = `value` into `TREE` in a committed transaction of its own.
fn committed(vs: &Arc<VersionStore>, key: &[u8], value: &[u8]) {
    let mut t = vs.begin("setup".into(), false);
    t.insert(TREE, key, value).unwrap();
    t.commit_level(false).unwrap();
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

#[test]
fn holds_version_tracks_changes_locks_and_rollbacks_short_and_long() {
    let vs = store();
    committed(&vs, b"locked", b"v0");

    // 1 change (own list) and 200 changes (beyond the own-list scan: the chain answers).
    for changes in [1u32, 200] {
        let mut t = vs.begin("t".into(), false);
        for i in 0..changes {
            t.insert(TREE, &key(i), b"x").unwrap();
        }
        assert!(t.holds_version(TREE, &key(0)));
        assert!(t.holds_version(TREE, &key(changes - 1)));
        assert!(!t.holds_version(TREE, &key(changes)), "never written");
        assert!(!t.holds_version(OTHER, &key(0)), "same key, other tree");
        assert!(!t.holds_version(TREE, b"locked"));

        // A lock in a nested level is held until that level rolls back.
        t.begin_level().unwrap();
        t.lock(TREE, b"locked", false).unwrap();
        assert!(t.holds_version(TREE, b"locked"));
        t.rollback_level().unwrap();
        assert!(!t.holds_version(TREE, b"locked"));
        assert!(t.holds_version(TREE, &key(0)));

        // Another transaction's versions are not this one's.
        let other = vs.begin("other".into(), false);
        assert!(!other.holds_version(TREE, &key(0)));
        drop(other);
        t.rollback_all().unwrap();
    }
}

#[test]
fn lock_and_read_returns_what_the_transaction_sees() {
    let vs = store();
    committed(&vs, b"a", b"committed");

    let mut t = vs.begin("t".into(), false);
    // A later commit by another transaction, after `t` began.
    committed(&vs, b"b", b"new");

    assert_eq!(t.lock_and_read(TREE, b"a", false).unwrap(), b"committed");
    assert!(t.holds_version(TREE, b"a"));
    assert_eq!(
        t.read(TREE, b"a").unwrap().as_deref(),
        Some(&b"committed"[..])
    );
    // A record committed after `t` began conflicts; one that does not exist is not found.
    let e = t.lock_and_read(TREE, b"b", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WriteConflict);
    assert!(!t.holds_version(TREE, b"b"));
    let e = t.lock_and_read(TREE, b"c", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RecordNotFound);
    assert!(!t.holds_version(TREE, b"c"));

    // Its own change is what it reads.
    t.replace(TREE, b"a", b"mine").unwrap();
    assert_eq!(t.lock_and_read(TREE, b"a", true).unwrap(), b"mine");
    t.commit_level(false).unwrap();
}

#[test]
fn cleanup_settles_the_counters_and_the_tree_announcements() {
    let vs = store();
    let mut t = vs.begin("writer".into(), false);
    for i in 0..100 {
        t.insert(TREE, &key(i), b"v").unwrap();
        t.insert(OTHER, &key(i), b"w").unwrap();
    }
    t.commit_level(false).unwrap();
    // A transaction still open on one key of TREE keeps that key's own entry.
    let mut open = vs.begin("open".into(), false);
    open.replace(TREE, &key(0), b"x").unwrap();
    assert_eq!(vs.stats().entries, 201);
    assert_eq!(vs.cleanup().unwrap(), 200);
    assert_only_the_open_change_left(&vs);
    open.rollback_all().unwrap();
    vs.cleanup().unwrap();
    assert_empty(&vs);
}

#[test]
fn cleanup_of_large_transactions_keeps_only_what_open_transactions_need() {
    // Transactions of more keys than cleanup takes one at a time: their keys are cleaned in
    // groups, shard by shard.
    let (vs, mem) = store_over();
    let mut t = vs.begin("loader".into(), false);
    for i in 0..600 {
        t.insert(TREE, &key(i), b"v").unwrap();
        t.insert(OTHER, &key(i), b"w").unwrap();
    }
    t.commit_level(false).unwrap();
    let mut d = vs.begin("deleter".into(), false);
    for i in (0..600).step_by(2) {
        d.delete(OTHER, &key(i)).unwrap();
    }
    d.commit_level(false).unwrap();
    // Open after both commits: it needs none of their versions, only its own.
    let mut open = vs.begin("open".into(), false);
    open.replace(TREE, &key(7), b"x").unwrap();
    assert_eq!(vs.stats().entries, 1200 + 1 + 300);

    assert_eq!(vs.cleanup().unwrap(), 1500);
    assert_only_the_open_change_left(&vs);
    // The deleted records are gone for good, the rest stay.
    let live = mem.live();
    assert_eq!(mem.inner.lock().data.len(), 900);
    assert_eq!(live.len(), 900);
    for i in 0..600 {
        let other = live.get(&(OTHER, key(i)));
        assert_eq!(other.map(Vec::as_slice), (i % 2 == 1).then_some(&b"w"[..]));
    }
    assert_eq!(
        live.get(&(TREE, key(7))).map(Vec::as_slice),
        Some(&b"x"[..])
    );

    open.rollback_all().unwrap();
    vs.cleanup().unwrap();
    assert_empty(&vs);
    assert_eq!(
        mem.live().get(&(TREE, key(7))).map(Vec::as_slice),
        Some(&b"v"[..])
    );
}

#[test]
fn cleanup_of_a_backlog_walks_the_maps_and_keeps_what_snapshots_and_open_transactions_need() {
    // Transactions of thousands of changes, most of the store's entries: cleanup walks the
    // shards' maps instead of looking each key up. It must drop exactly what the look-ups
    // would: nothing an older snapshot still reads, nothing of an open transaction.
    const N: u32 = 5000;
    let (vs, mem) = store_over();
    let mut t = vs.begin("loader".into(), false);
    for i in 0..N {
        t.insert(TREE, &key(i), b"v").unwrap();
        t.insert(OTHER, &key(i), b"w").unwrap();
    }
    t.commit_level(false).unwrap();
    // A snapshot from before the deletes keeps them from being cleaned.
    let reader = vs.begin("reader".into(), true);
    let mut d = vs.begin("deleter".into(), false);
    for i in (0..N).step_by(2) {
        d.delete(OTHER, &key(i)).unwrap();
        d.delete(TREE, &key(i + 1)).unwrap();
    }
    d.commit_level(false).unwrap();
    let mut open = vs.begin("open".into(), false);
    open.replace(TREE, &key(8), b"x").unwrap();
    assert_eq!(vs.stats().entries, u64::from(2 * N + N + 1));

    // The loader's inserts go; the deletes stay for the reader, who still sees every row.
    assert_eq!(vs.cleanup().unwrap(), u64::from(2 * N));
    assert_eq!(vs.stats().entries, u64::from(N + 1));
    assert_eq!(mem.inner.lock().data.len(), 2 * N as usize);
    for i in (0..N).step_by(97) {
        assert_eq!(
            reader.read(OTHER, &key(i)).unwrap().as_deref(),
            Some(&b"w"[..])
        );
        assert_eq!(
            reader.read(TREE, &key(i)).unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
    drop(reader);

    // Without the reader the deletes go too, and their records with them.
    assert_eq!(vs.cleanup().unwrap(), u64::from(N));
    assert_only_the_open_change_left(&vs);
    let live = mem.live();
    assert_eq!(mem.inner.lock().data.len(), N as usize);
    assert_eq!(live.len(), N as usize);
    for i in 0..N {
        let (tree_kept, other_kept) = (i % 2 == 0, i % 2 == 1);
        let expect = if i == 8 { &b"x"[..] } else { &b"v"[..] };
        assert_eq!(
            live.get(&(TREE, key(i))).map(Vec::as_slice),
            tree_kept.then_some(expect)
        );
        assert_eq!(
            live.get(&(OTHER, key(i))).map(Vec::as_slice),
            other_kept.then_some(&b"w"[..])
        );
    }
    open.rollback_all().unwrap();
    vs.cleanup().unwrap();
    assert_empty(&vs);
}

/// A delete's version holds no copy of the record (the node keeps its data, flag-deleted):
/// its charge is the entry's overhead alone, whatever the record's size. Older snapshots
/// still read the record, the deleter does not, and rolling back (the whole transaction,
/// or a nested level that deleted, re-inserted and deleted again) brings the record back
/// as it was.
#[test]
fn a_delete_version_keeps_no_copy_and_reconstructs_the_record() {
    let vs = store();
    let big = vec![7u8; 3000];
    committed(&vs, b"a", &big);
    committed(&vs, b"b", b"small");

    let before = vs.stats().bytes_used;
    let reader = vs.begin("reader".into(), true);
    let mut t = vs.begin("deleter".into(), false);
    t.delete(TREE, b"a").unwrap();
    let charged = vs.stats().bytes_used - before;
    assert!(
        charged < 200,
        "a delete of a 3,000-byte record charged {charged} bytes"
    );
    assert_eq!(
        t.read(TREE, b"a").unwrap(),
        None,
        "the deleter sees it gone"
    );
    assert_eq!(reader.read(TREE, b"a").unwrap(), Some(big.clone()));
    assert_eq!(
        t.delete(TREE, b"a").unwrap_err().kind(),
        ErrorKind::RecordNotFound
    );

    // Nested: re-insert with other data, delete again, roll the level back.
    t.begin_level().unwrap();
    t.insert(TREE, b"a", b"other").unwrap();
    assert_eq!(t.read(TREE, b"a").unwrap(), Some(b"other".to_vec()));
    t.delete(TREE, b"a").unwrap();
    assert_eq!(t.read(TREE, b"a").unwrap(), None);
    assert_eq!(reader.read(TREE, b"a").unwrap(), Some(big.clone()));
    t.rollback_level().unwrap();
    assert_eq!(t.read(TREE, b"a").unwrap(), None, "the outer delete stands");

    // A delete of the other key, then the whole transaction rolls back.
    t.delete(TREE, b"b").unwrap();
    t.rollback_level().unwrap();
    let after = vs.begin("after".into(), true);
    assert_eq!(after.read(TREE, b"a").unwrap(), Some(big.clone()));
    assert_eq!(after.read(TREE, b"b").unwrap(), Some(b"small".to_vec()));
    assert_eq!(reader.read(TREE, b"a").unwrap(), Some(big));

    // Committed this time: the reader begun before still sees the record, a new one does not.
    let mut t = vs.begin("deleter 2".into(), false);
    t.delete(TREE, b"b").unwrap();
    t.commit_level(false).unwrap();
    assert_eq!(after.read(TREE, b"b").unwrap(), Some(b"small".to_vec()));
    let late = vs.begin("late".into(), true);
    assert_eq!(late.read(TREE, b"b").unwrap(), None);
}

/// `visible_unless_current`: without a version chain on the key, a caller whose copy is
/// current gets `None` (its copy is what every view sees, nothing is read) and one whose copy
/// is stale gets the store's state; with a chain, every caller gets the state its view sees,
/// reconstructed, whatever it holds.
#[test]
fn visible_unless_current_trusts_the_callers_copy_only_without_a_chain() {
    use ese_txn::{PhysState, ReadView};
    let (vs, _mem) = store_over();
    committed(&vs, b"a", b"one");
    vs.cleanup().unwrap();
    let latest = ReadView::latest();
    let unread = || -> ese_core::Result<PhysState> { panic!("read with a current copy") };
    assert_eq!(
        vs.visible_unless_current(TREE, b"a", &latest, || true, unread)
            .unwrap(),
        None
    );
    let read = || Ok(PhysState::Present(b"one".to_vec()));
    assert_eq!(
        vs.visible_unless_current(TREE, b"a", &latest, || false, read)
            .unwrap(),
        Some(PhysState::Present(b"one".to_vec()))
    );
    // An uncommitted replace: another view sees the committed value, not the page's.
    let mut w = vs.begin("writer".into(), false);
    w.replace(TREE, b"a", b"two").unwrap();
    let reader = vs.begin("reader".into(), false);
    let page = || Ok(PhysState::Present(b"two".to_vec()));
    assert_eq!(
        vs.visible_unless_current(TREE, b"a", &reader.read_view(), || true, page)
            .unwrap(),
        Some(PhysState::Present(b"one".to_vec()))
    );
    assert_eq!(
        vs.visible_unless_current(TREE, b"a", &w.read_view(), || true, page)
            .unwrap(),
        Some(PhysState::Present(b"two".to_vec()))
    );
}

/// A key of `TREE` that shows no versions now, from `candidates` (keys share a key slot one
/// time in 2^17, so the first one almost always does).
fn key_without_versions(vs: &VersionStore, candidates: std::ops::Range<u32>) -> Vec<u8> {
    candidates
        .map(key)
        .find(|k| !vs.may_have_key_versions(TREE, k))
        .expect("a key of its own slot")
}

/// A transaction begun now that holds a lock on `key(0)` of `TREE` (committed beforehand):
/// the tree keeps a version while the keys around it are checked, and its snapshot, newer than
/// every earlier commit, holds none of their entries back from cleanup.
fn hold(vs: &Arc<VersionStore>) -> ese_txn::Transaction {
    let mut t = vs.begin("held".into(), false);
    t.lock(TREE, &key(0), false).unwrap();
    t
}

/// `may_have_key_versions` narrows `may_have_versions` to a key: it answers true for a key
/// with an entry from the moment the change is made until the entry is gone (rolled back,
/// cleaned up key by key or by the scan of a large backlog, pruned as a stale lock), and false
/// for the other keys of the tree meanwhile.
#[test]
fn key_versions_follow_each_entry_of_the_key() {
    let vs = store();
    committed(&vs, &key(0), b"v");
    vs.cleanup().unwrap();
    assert!(!vs.may_have_key_versions(TREE, &key(0)));
    let mut held = hold(&vs);
    assert!(vs.may_have_versions(TREE));
    assert!(vs.may_have_key_versions(TREE, &key(0)));
    assert!(!vs.may_have_key_versions(OTHER, &key(0)), "other tree");
    let others = (1..1001)
        .filter(|&i| vs.may_have_key_versions(TREE, &key(i)))
        .count();
    assert!(others <= 3, "{others} of 1,000 other keys show versions");

    // A change rolled back (a nested level, then a whole transaction).
    let k = key_without_versions(&vs, 1..100);
    let mut t = vs.begin("t".into(), false);
    t.begin_level().unwrap();
    t.insert(TREE, &k, b"x").unwrap();
    assert!(vs.may_have_key_versions(TREE, &k));
    t.rollback_level().unwrap();
    assert!(
        !vs.may_have_key_versions(TREE, &k),
        "nested level rolled back"
    );
    t.insert(TREE, &k, b"x").unwrap();
    t.rollback_all().unwrap();
    assert!(
        !vs.may_have_key_versions(TREE, &k),
        "transaction rolled back"
    );

    // Committed: versioned until cleanup drops the entries (key by key).
    let mut t = vs.begin("t".into(), false);
    t.insert(TREE, &k, b"x").unwrap();
    t.replace(TREE, &k, b"y").unwrap();
    t.commit_level(false).unwrap();
    assert!(vs.may_have_key_versions(TREE, &k), "committed, not cleaned");
    held.rollback_all().unwrap();
    let mut held = hold(&vs);
    vs.cleanup().unwrap();
    assert!(!vs.may_have_key_versions(TREE, &k), "cleaned up");

    // A backlog large enough to be cleaned by walking the maps.
    let mut t = vs.begin("bulk".into(), false);
    for i in 10_000..20_000 {
        t.insert(TREE, &key(i), b"b").unwrap();
    }
    t.commit_level(false).unwrap();
    assert!(vs.may_have_key_versions(TREE, &key(10_000)));
    held.rollback_all().unwrap();
    let mut held = hold(&vs);
    assert_eq!(vs.cleanup().unwrap(), 10_000);
    let left = (10_000..20_000)
        .filter(|&i| vs.may_have_key_versions(TREE, &key(i)))
        .count();
    assert!(
        left <= 3,
        "{left} of 10,000 cleaned keys still show versions"
    );

    // Stale locks pruned as later ones are taken, then the rest cleaned.
    let k = key_without_versions(&vs, 100..200);
    held.rollback_all().unwrap();
    committed(&vs, &k, b"record");
    for i in 0..100 {
        let mut t = vs.begin(format!("locker {i}"), false);
        t.lock(TREE, &k, false).unwrap();
        t.commit_level(true).unwrap();
    }
    let mut held = hold(&vs);
    assert!(vs.may_have_key_versions(TREE, &k), "locks not cleaned yet");
    vs.cleanup().unwrap();
    assert!(
        !vs.may_have_key_versions(TREE, &k),
        "locks pruned and cleaned"
    );

    assert!(vs.may_have_key_versions(TREE, &key(0)), "still held");
    held.rollback_all().unwrap();
    assert_empty(&vs);
    assert!(!vs.may_have_key_versions(TREE, &key(0)));
}
