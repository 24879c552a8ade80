//! `Database::delete_tree` frees every page of a tree in one logged record: the integrity
//! check accounts for every page afterwards, the pages are reused, other trees are untouched,
//! and a power cut at any I/O point recovers to the tree either whole or gone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, LongValues, MemWal, Tree, TreeKind, Wal};
use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{ErrorKind, Lgpos, ObjId};

const PATH: &str = "/d.edb";

fn opts() -> DbOptions {
    DbOptions::new()
        .page_size(4096)
        .cache_bytes(0)
        .extension_pages(8)
}

fn fill(t: &Tree, n: u32, salt: u8) {
    for i in 0..n {
        t.insert(&i.to_le_bytes(), &[salt ^ (i as u8); 100])
            .unwrap();
    }
}

fn contents(t: &Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = t.cursor();
    let mut out = Vec::new();
    let mut more = c.move_first().unwrap();
    while more {
        out.push((c.key().to_vec(), c.data().to_vec()));
        more = c.move_next().unwrap();
    }
    out
}

#[test]
fn deleted_tree_pages_are_freed_and_reused() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let db = Database::create(&fs, Path::new(PATH), opts(), Arc::new(MemWal::new())).unwrap();
    let a = db.create_tree(TreeKind::Table).unwrap();
    let b = db.create_tree(TreeKind::Index).unwrap();
    let lv = LongValues::new(db.create_tree(TreeKind::LongValue).unwrap()).unwrap();
    fill(&a, 3000, 1);
    fill(&b, 300, 2);
    lv.create(1).unwrap();
    lv.append(1, &vec![9u8; 50_000]).unwrap();
    let before = db.check_integrity().unwrap();
    let a_space = before.trees.iter().find(|t| t.objid == a.objid()).unwrap();
    assert!(
        a_space.depth >= 2 && a_space.owned_pages > 50,
        "{a_space:?}"
    );
    let b_before = contents(&b);

    db.delete_tree(a.objid()).unwrap();
    let after = db.check_integrity().unwrap();
    assert!(after.trees.iter().all(|t| t.objid != a.objid()));
    assert_eq!(
        u64::from(after.free_pages),
        u64::from(before.free_pages) + a_space.owned_pages
    );
    assert_eq!(after.pgno_last, before.pgno_last);
    assert_eq!(
        db.open_tree(a.objid()).unwrap_err(),
        ErrorKind::ObjectNotFound
    );
    assert_eq!(
        db.delete_tree(a.objid()).unwrap_err(),
        ErrorKind::ObjectNotFound
    );
    assert_eq!(
        db.delete_tree(ObjId(1)).unwrap_err(),
        ErrorKind::InvalidParameter
    );
    // A stale handle fails cleanly.
    assert!(a.get(&5u32.to_le_bytes()).is_err());
    assert_eq!(contents(&b), b_before);
    let mut buf = vec![0u8; 50_000];
    assert_eq!(lv.read_at(1, 0, &mut buf).unwrap(), 50_000);

    // The freed pages are reused before the file grows.
    let c = db.create_tree(TreeKind::Table).unwrap();
    fill(&c, 2000, 3);
    let reused = db.check_integrity().unwrap();
    assert_eq!(reused.pgno_last, before.pgno_last);
    assert!(reused.free_pages < after.free_pages);

    // Deleting an empty tree and the long-value tree works too.
    let e = db.create_tree(TreeKind::Table).unwrap();
    db.delete_tree(e.objid()).unwrap();
    db.delete_tree(ObjId(4)).unwrap();
    db.check_integrity().unwrap();
}

/// Builds two trees, deletes one; returns the number of records before the delete and the
/// contents of both trees.
fn workload(fs: &SimFs, wal: &Arc<MemWal>) -> Option<usize> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Database::create(
        &fsd,
        Path::new(PATH),
        opts(),
        Arc::clone(wal) as Arc<dyn Wal>,
    )
    .ok()?;
    let a = db.create_tree(TreeKind::Table).ok()?;
    let b = db.create_tree(TreeKind::Table).ok()?;
    for i in 0u32..800 {
        a.insert(&i.to_le_bytes(), &[1; 100]).ok()?;
        b.insert(&i.to_le_bytes(), &[2; 60]).ok()?;
    }
    wal.flush(Lgpos::MAX).ok()?;
    db.flush().ok()?;
    let before = wal.record_count();
    db.delete_tree(a.objid()).ok()?;
    wal.flush(Lgpos::MAX).ok()?;
    db.flush().ok()?;
    Some(before)
}

#[test]
fn delete_tree_is_atomic_under_power_cuts() {
    let fs = SimFs::new();
    let wal = Arc::new(MemWal::new());
    let before = workload(&fs, &wal).unwrap();
    assert_eq!(wal.record_count(), before + 1, "the delete is one record");
    let total = fs.op_count();
    let step = (total / if cfg!(debug_assertions) { 40 } else { 150 }).max(1);
    let (mut gone, mut whole) = (0, 0);
    let mut k = 0;
    while k <= total {
        let fs = SimFs::new();
        let wal = Arc::new(MemWal::new());
        fs.set_power_cut(Some(k));
        let _ = workload(&fs, &wal);
        for model in CrashModel::ALL {
            let img: Arc<dyn FileSystem> = Arc::new(fs.crash(model, k));
            let log = Arc::new(wal.crash());
            let Ok(db) = Database::open(&img, Path::new(PATH), opts(), Arc::clone(&log) as _)
            else {
                continue;
            };
            // Redo everything durable (the checkpoint is never past the first record here).
            for (lg, rec) in log.records() {
                db.redo(lg, &rec).unwrap();
            }
            db.end_redo().unwrap();
            let report = db.check_integrity().unwrap();
            let trees: Vec<u32> = report.trees.iter().map(|t| t.objid.0).collect();
            if !trees.contains(&3) {
                // Cut before both trees existed.
                continue;
            }
            match db.open_tree(ObjId(2)) {
                Ok(a) => {
                    assert_eq!(trees, vec![1, 2, 3]);
                    let n = report.trees[1].nodes;
                    assert_eq!(contents(&a).len() as u64, n);
                    whole += 1;
                }
                Err(e) => {
                    assert_eq!(e, ErrorKind::ObjectNotFound);
                    assert_eq!(trees, vec![1, 3]);
                    gone += 1;
                }
            }
            let b = db.open_tree(ObjId(3)).unwrap();
            assert!(contents(&b).iter().all(|(_, v)| v == &[2; 60]));
        }
        k += step;
    }
    assert!(gone > 0 && whole > 0, "gone {gone}, whole {whole}");
}
