//! `Tree::remove_flag_deleted` (version cleanup's removal of flag-deleted records): exactly the
//! flag-deleted nodes among the keys go, across many leaves and with merges when pages fall
//! under a quarter full; live and absent keys are left alone; the tree stays sound; and redo of
//! the log on the file as a crash left it rebuilds the same tree.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, MemWal, NodeFlags, NodeState, Tree, TreeKind, Wal};
use ese_core::Lgpos;
use ese_core::fs::{CrashModel, FileSystem, SimFs};

fn contents(t: &Tree) -> BTreeMap<Vec<u8>, (Vec<u8>, NodeFlags)> {
    let mut c = t.cursor();
    let mut got = BTreeMap::new();
    let mut more = c.move_first().unwrap();
    while more {
        got.insert(c.key().to_vec(), (c.data().to_vec(), c.flags()));
        more = c.move_next().unwrap();
    }
    got
}

#[test]
fn removes_exactly_the_flag_deleted_nodes_and_redo_rebuilds_the_tree() {
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
    // Big-endian, so key order is numeric order.
    let key = |i: u32| {
        #[expect(clippy::big_endian_bytes, reason = "keys sort in numeric order")]
        i.to_be_bytes().to_vec()
    };
    let data = |i: u32| vec![i as u8; 100];
    let mut model = BTreeMap::new();
    for i in 0..2000u32 {
        let d = data(i);
        t.put(
            &key(i),
            NodeState::Present {
                data: &d,
                flags: NodeFlags(0),
            },
            b"",
        )
        .unwrap();
        model.insert(key(i), (d, NodeFlags(0)));
    }
    // Two thirds flag-deleted, in runs long enough to empty whole leaves.
    let deleted = |i: u32| !i.is_multiple_of(3) || (500..900).contains(&i);
    for i in (0..2000u32).filter(|i| deleted(*i)) {
        let d = data(i);
        t.put(
            &key(i),
            NodeState::Present {
                data: &d,
                flags: NodeFlags::DELETED,
            },
            b"",
        )
        .unwrap();
        model.remove(&key(i));
    }
    // Every key, live and absent ones too (2000..2100 never existed), in key order.
    let all: Vec<Vec<u8>> = (0..2100u32).map(key).collect();
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    let removed = t.remove_flag_deleted(&refs).unwrap();
    assert_eq!(removed, (0..2000u32).filter(|i| deleted(*i)).count());
    assert_eq!(contents(&t), model);
    db.check_integrity().unwrap();
    // Nothing is left to remove.
    assert_eq!(t.remove_flag_deleted(&refs).unwrap(), 0);

    // Redo of the whole log on the file as a crash left it.
    wal.flush(Lgpos::MAX).unwrap();
    let img = fs.crash(CrashModel::TornSectors, 7);
    let objid = t.objid();
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
    for (lg, rec) in log.records() {
        db.redo(lg, &rec).unwrap();
    }
    db.end_redo().unwrap();
    db.check_integrity().unwrap();
    assert_eq!(contents(&db.open_tree(objid).unwrap()), model);
}
