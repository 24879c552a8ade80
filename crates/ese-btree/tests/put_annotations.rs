//! `Tree::put` logs every change of a node (insert, replace, flag-delete, rewrite, delete,
//! and no change at all) in exactly one log record that carries the caller's annotation,
//! whatever the path (in place, torn-page image, split or merge), and redo of those records
//! (annotation-only ones included) rebuilds the tree.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{
    ANNOTATION_MAX, Database, DbOptions, MemWal, NodeFlags, NodeState, Tree, TreeKind, Wal,
    record_annotation,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{ErrorKind, Lgpos, ObjId};

fn setup() -> (SimFs, Arc<MemWal>, Database, Tree) {
    let fs = SimFs::new();
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let wal = Arc::new(MemWal::new());
    let db = Database::create(
        &fsd,
        Path::new("/p.edb"),
        DbOptions::new().page_size(4096).cache_bytes(0),
        Arc::clone(&wal) as Arc<dyn Wal>,
    )
    .unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    (fs, wal, db, t)
}

/// The type byte of a record (1 images, 2 node, 3 annotation only, 4 pages) and, for images
/// and pages records, the number of pages (docs/format-database.md, "Page log records").
fn shape(rec: &[u8]) -> (u8, u16) {
    let mut pos = 7;
    if rec[6] == 1 {
        let n = u32::from_le_bytes(rec[7..11].try_into().unwrap()) as usize;
        pos = 11 + n;
    }
    let pages = if rec[0] == 1 || rec[0] == 4 {
        u16::from_le_bytes(rec[pos..pos + 2].try_into().unwrap())
    } else {
        0
    };
    (rec[0], pages)
}

/// Puts `state` with `ann` and checks that exactly one record was logged, at the returned
/// position, carrying `ann`. Returns the record's shape.
fn put_one(wal: &MemWal, t: &Tree, key: &[u8], state: NodeState<'_>, ann: &[u8]) -> (u8, u16) {
    let before = wal.record_count();
    let lg = t.put(key, state, ann).unwrap();
    let recs = wal.records();
    assert_eq!(recs.len(), before + 1, "one record per put");
    let (l, rec) = recs.last().unwrap();
    assert_eq!(*l, lg);
    assert_eq!(record_annotation(rec).unwrap(), Some(ann));
    shape(rec)
}

fn state_of(t: &Tree, key: &[u8]) -> Option<(Vec<u8>, NodeFlags)> {
    t.get_opt(key).unwrap()
}

#[test]
fn every_kind_of_put_logs_one_annotated_record() {
    let (_fs, wal, db, t) = setup();
    let k = b"key".as_slice();
    let present = |data: &'static [u8], flags| NodeState::Present { data, flags };
    // Insert (a fresh page: its first change is an image).
    put_one(&wal, &t, k, present(b"v1", NodeFlags(0)), b"insert");
    assert_eq!(state_of(&t, k), Some((b"v1".to_vec(), NodeFlags(0))));
    // Replace: same flags, new data (a node record now).
    assert_eq!(
        put_one(&wal, &t, k, present(b"v2", NodeFlags(0)), b"replace").0,
        2
    );
    assert_eq!(state_of(&t, k), Some((b"v2".to_vec(), NodeFlags(0))));
    // Flag-delete: data kept, DELETED set.
    put_one(
        &wal,
        &t,
        k,
        present(b"v2", NodeFlags::DELETED),
        b"flag-delete",
    );
    assert_eq!(state_of(&t, k), Some((b"v2".to_vec(), NodeFlags::DELETED)));
    // Rewrite: new data and new flags at once.
    put_one(
        &wal,
        &t,
        k,
        present(b"v3", NodeFlags::VERSIONED),
        b"rewrite",
    );
    assert_eq!(
        state_of(&t, k),
        Some((b"v3".to_vec(), NodeFlags::VERSIONED))
    );
    // No-op: already in that state; an annotation-only record, no page change.
    let dbtime = db.dbtime();
    assert_eq!(
        put_one(&wal, &t, k, present(b"v3", NodeFlags::VERSIONED), b"same"),
        (3, 0)
    );
    assert_eq!(db.dbtime(), dbtime, "a no-op put changed a page");
    // Delete.
    put_one(&wal, &t, k, NodeState::Absent, b"delete");
    assert_eq!(state_of(&t, k), None);
    assert_eq!(t.get(k).unwrap_err(), ErrorKind::RecordNotFound);
    // Delete of an absent key: annotation only.
    assert_eq!(put_one(&wal, &t, k, NodeState::Absent, b"gone").0, 3);
    // An empty annotation is still an annotation.
    put_one(&wal, &t, k, present(b"", NodeFlags(0)), b"");
    // Plain operations carry none.
    t.insert(b"plain", b"x").unwrap();
    let recs = wal.records();
    assert_eq!(record_annotation(&recs.last().unwrap().1).unwrap(), None);
    db.check_integrity().unwrap();
}

#[test]
fn rejected_puts_write_nothing() {
    let (_fs, wal, db, t) = setup();
    let n = wal.record_count();
    let big = vec![0u8; ANNOTATION_MAX + 1];
    let e = t.put(b"k", NodeState::Absent, &big).unwrap_err();
    assert_eq!(e, ErrorKind::InvalidParameter);
    let e = t
        .put(
            b"k",
            NodeState::Present {
                data: &vec![0; 5000],
                flags: NodeFlags(0),
            },
            b"a",
        )
        .unwrap_err();
    assert_eq!(e, ErrorKind::RecordTooBig);
    let e = t
        .put(
            &vec![1; db.max_key_len() + 1],
            NodeState::Present {
                data: b"",
                flags: NodeFlags(0),
            },
            b"a",
        )
        .unwrap_err();
    assert_eq!(e, ErrorKind::KeyTooBig);
    let e = t
        .put(
            b"k",
            NodeState::Present {
                data: b"",
                flags: NodeFlags(0x80),
            },
            b"a",
        )
        .unwrap_err();
    assert_eq!(e, ErrorKind::InvalidParameter);
    assert_eq!(wal.record_count(), n);
    // The largest annotation is accepted.
    let max = vec![9u8; ANNOTATION_MAX];
    put_one(&wal, &t, b"k", NodeState::Absent, &max);
}

#[test]
fn splits_and_merges_carry_the_annotation_in_their_one_record() {
    let (fs, wal, db, t) = setup();
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, NodeFlags)> = BTreeMap::new();
    let mut multi_page = 0;
    let mut kinds = [0usize; 5];
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0u32..1500 {
        let k = rng.u32(0..400).to_le_bytes().to_vec();
        let ann = format!("op {i} on {k:?}").into_bytes();
        let shape = match rng.u8(0..10) {
            0..=5 => {
                let data = vec![i as u8; rng.usize(0..700)];
                let flags = if rng.bool() {
                    NodeFlags(0)
                } else {
                    NodeFlags::DELETED
                };
                let s = put_one(
                    &wal,
                    &t,
                    &k,
                    NodeState::Present { data: &data, flags },
                    &ann,
                );
                model.insert(k, (data, flags));
                s
            }
            6 => {
                // Flag change only, when present.
                let flags = NodeFlags::DELETED;
                let data = model.get(&k).map(|v| v.0.clone()).unwrap_or_default();
                let s = put_one(
                    &wal,
                    &t,
                    &k,
                    NodeState::Present { data: &data, flags },
                    &ann,
                );
                model.insert(k, (data, flags));
                s
            }
            _ => {
                let s = put_one(&wal, &t, &k, NodeState::Absent, &ann);
                model.remove(&k);
                s
            }
        };
        kinds[usize::from(shape.0)] += 1;
        if shape.0 == 4 && shape.1 >= 2 {
            multi_page += 1;
        }
    }
    assert!(
        multi_page > 20,
        "the workload must split and merge: {multi_page}"
    );
    assert!(kinds[2] > 100 && kinds[3] > 10, "{kinds:?}");
    let report = db.check_integrity().unwrap();
    assert!(report.trees[1].depth >= 2);
    let check = |t: &Tree| {
        let mut c = t.cursor();
        let mut got = BTreeMap::new();
        let mut more = c.move_first().unwrap();
        while more {
            got.insert(c.key().to_vec(), (c.data().to_vec(), c.flags()));
            more = c.move_next().unwrap();
        }
        assert_eq!(got, model);
    };
    check(&t);
    // Redo of the whole log, annotation-only records included, on the file as the crash
    // left it rebuilds the same tree.
    wal.flush(Lgpos::MAX).unwrap();
    let img = fs.crash(CrashModel::TornSectors, 5);
    drop((t, db));
    let fsd: Arc<dyn FileSystem> = Arc::new(img);
    let log = Arc::new(wal.crash());
    let db = Database::open(
        &fsd,
        Path::new("/p.edb"),
        DbOptions::new().page_size(4096).cache_bytes(0),
        Arc::clone(&log) as Arc<dyn Wal>,
    )
    .unwrap();
    for (lg, rec) in log.records() {
        db.redo(lg, &rec).unwrap();
    }
    db.end_redo().unwrap();
    db.check_integrity().unwrap();
    check(&db.open_tree(ObjId(2)).unwrap());
}
