//! Redo is idempotent (a second pass over the same log changes nothing, as after a crash
//! during recovery), and the public types are `Send + Sync`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{
    CacheStats, Cursor, Database, DbHeader, DbOptions, IntegrityReport, LongValues, MemWal,
    NodeState, Tree, TreeKind, Wal,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{Lgpos, ObjId};

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Database>();
    check::<Tree>();
    check::<Cursor>();
    check::<LongValues>();
    check::<MemWal>();
    check::<DbHeader>();
    check::<CacheStats>();
    check::<IntegrityReport>();
    check::<NodeState<'static>>();
}

#[test]
fn redo_twice_gives_the_same_database() {
    let fs = SimFs::new();
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let wal = Arc::new(MemWal::new());
    let opts = || DbOptions::new().page_size(4096).cache_bytes(0);
    let db = Database::create(
        &fsd,
        Path::new("/r.edb"),
        opts(),
        Arc::clone(&wal) as Arc<dyn Wal>,
    )
    .unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0u32..3000 {
        t.insert(&i.to_le_bytes(), &[i as u8; 120]).unwrap();
    }
    for i in (0u32..3000).step_by(3) {
        t.delete(&i.to_le_bytes()).unwrap();
    }
    wal.flush(Lgpos::MAX).unwrap();
    let stats = db.cache_stats();
    assert!(stats.evictions > 0 && stats.pages_written > 0, "{stats:?}");
    let img = fs.crash(CrashModel::TornSectors, 3);
    drop((t, db));
    let fsd: Arc<dyn FileSystem> = Arc::new(img);
    let log = Arc::new(wal.crash());
    let db = Database::open(
        &fsd,
        Path::new("/r.edb"),
        opts(),
        Arc::clone(&log) as Arc<dyn Wal>,
    )
    .unwrap();
    let records = log.records();
    let applied = records
        .iter()
        .filter(|(lg, r)| db.redo(*lg, r).unwrap())
        .count();
    assert!(applied > 0);
    let again = records
        .iter()
        .filter(|(lg, r)| db.redo(*lg, r).unwrap())
        .count();
    assert_eq!(again, 0, "a second redo pass changed pages");
    db.end_redo().unwrap();
    let report = db.check_integrity().unwrap();
    assert_eq!(report.trees[1].nodes, 2000);
    let t = db.open_tree(ObjId(2)).unwrap();
    for i in 0u32..3000 {
        let r = t.get(&i.to_le_bytes());
        assert_eq!(r.is_ok(), i % 3 != 0, "key {i}");
    }
}
