//! Offline compaction (`Database::compact_into`): the copy holds every tree under its objid
//! with the same live nodes (flag-deleted ones left out, flags cleared), passes the integrity
//! check, is smaller than a source filled in random order and half emptied, opens clean, and
//! takes further changes; a destination that exists is refused and the source is unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, DbState, LongValues, MemWal, NodeFlags, Tree, TreeKind};
use ese_core::ErrorKind;
use ese_core::fs::{FileSystem, SimFs};

const SRC: &str = "src.edb";
const DEST: &str = "compact.edb";

fn opts() -> DbOptions {
    DbOptions::new()
        .page_size(4096)
        .cache_bytes(1 << 20)
        .doublewrite(false)
}

/// Every node of `tree`: key → (data, flags).
fn contents(tree: &Tree) -> BTreeMap<Vec<u8>, (Vec<u8>, NodeFlags)> {
    let mut out = BTreeMap::new();
    let mut c = tree.cursor();
    let mut more = c.move_first().unwrap();
    while more {
        out.insert(c.key().to_vec(), (c.data().to_vec(), c.flags()));
        more = c.move_next().unwrap();
    }
    out
}

/// A scattered permutation of `0..n` (a multiplicative step coprime with `n`).
fn scattered(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| (i * 7919 + 13) % n)
}

#[test]
fn a_compacted_copy_holds_the_live_nodes_of_every_tree_in_fewer_pages() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let src = Database::create(&fs, Path::new(SRC), opts(), Arc::new(MemWal::new())).unwrap();
    let table = src.create_tree(TreeKind::Table).unwrap();
    let dropped = src.create_tree(TreeKind::Table).unwrap();
    let index = src.create_tree(TreeKind::Index).unwrap();
    let lv = LongValues::new(src.create_tree(TreeKind::LongValue).unwrap()).unwrap();
    // Random-order inserts leave leaves about two thirds full; then half the rows go, some
    // only flag-deleted (a committed delete whose cleanup had not run).
    let n = 6_000u64;
    for i in scattered(n) {
        let key = format!("row{i:08}").into_bytes();
        table.insert(&key, &[(i % 251) as u8; 90]).unwrap();
        index.insert(format!("{i:08}").as_bytes(), &key).unwrap();
    }
    for i in (0..n).filter(|i| i % 2 == 0) {
        let key = format!("row{i:08}").into_bytes();
        if i % 6 == 0 {
            table.set_flags(&key, NodeFlags::DELETED).unwrap();
        } else {
            table.delete(&key).unwrap();
        }
    }
    table
        .set_flags(b"row00000001", NodeFlags::VERSIONED)
        .unwrap();
    lv.create(7).unwrap();
    lv.append(7, &vec![3u8; 40_000]).unwrap();
    let dropped_objid = dropped.objid();
    src.delete_tree(dropped_objid).unwrap();
    src.write_header(|h| h.state = DbState::CleanShutdown)
        .unwrap();
    let before: Vec<_> = src
        .trees()
        .unwrap()
        .into_iter()
        .map(|(objid, _, kind)| (objid, kind, contents(&src.open_tree(objid).unwrap())))
        .collect();
    let last_objid = src.header().last_objid;
    let src_dbtime = src.dbtime();

    let stats = src
        .compact_into(&fs, Path::new(DEST), opts().page_size(8192))
        .unwrap();
    assert_eq!(stats.trees, 3, "{stats:?}");
    assert_eq!(stats.deleted_skipped, n / 6, "{stats:?}");
    assert!(
        stats.dest_pages * 10 < stats.source_pages * 7,
        "the copy should need well under 70% of the pages: {stats:?}"
    );

    // The copy's file ends at its last page: no unused extension is left (the test's copy
    // grows past its first extension, so there was one to cut).
    let len = fs
        .open(Path::new(DEST), ese_core::fs::OpenOptions::read())
        .unwrap()
        .len()
        .unwrap();
    assert_eq!(len, (u64::from(stats.dest_pages) + 2) * 4096, "{stats:?}");

    // The source is as it was.
    for (objid, _, nodes) in &before {
        assert_eq!(&contents(&src.open_tree(*objid).unwrap()), nodes);
    }
    drop(src);

    let copy = Database::open(&fs, Path::new(DEST), opts(), Arc::new(MemWal::new())).unwrap();
    let h = copy.header();
    assert_eq!(h.state, DbState::CleanShutdown);
    assert_eq!(h.page_size, 4096, "the source's page size is kept");
    assert_eq!(h.last_objid, last_objid);
    assert!(
        copy.dbtime() > src_dbtime,
        "the copy's dbtime starts above the source's"
    );
    let report = copy.check_integrity().unwrap();
    assert_eq!(report.free_pages, 0);
    let mut copied = 0;
    for (objid, kind, nodes) in &before {
        let tree = copy.open_tree(*objid).unwrap();
        assert_eq!(tree.kind(), *kind);
        let live: BTreeMap<_, _> = nodes
            .iter()
            .filter(|(_, (_, f))| !f.contains(NodeFlags::DELETED))
            .map(|(k, (d, _))| (k.clone(), (d.clone(), NodeFlags::default())))
            .collect();
        copied += live.len() as u64;
        assert_eq!(contents(&tree), live, "tree {objid}");
    }
    assert_eq!(copied, stats.nodes);
    assert_eq!(
        copy.open_tree(dropped_objid).unwrap_err().kind(),
        ErrorKind::ObjectNotFound
    );
    let lv = LongValues::new(copy.open_tree(before[2].0).unwrap()).unwrap();
    let mut buf = vec![0u8; 40_000];
    assert_eq!(lv.read_at(7, 0, &mut buf).unwrap(), 40_000);
    assert!(buf.iter().all(|&b| b == 3));
    // Leaves of the table tree are nearly full: sequential inserts split by appending.
    let t = report
        .trees
        .iter()
        .find(|t| t.objid == before[0].0)
        .unwrap();
    assert!(
        t.leaf_bytes_used * 10 > t.leaf_pages * 4096 * 9,
        "leaves under 90% used: {t:?}"
    );
    // The copy takes new trees (past the last objid) and changes.
    let fresh = copy.create_tree(TreeKind::Table).unwrap();
    assert!(fresh.objid().0 > last_objid.0);
    copy.open_tree(before[0].0)
        .unwrap()
        .insert(b"row00000000", b"back")
        .unwrap();
    copy.check_integrity().unwrap();
}

#[test]
fn compaction_refuses_an_existing_destination() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let src = Database::create(&fs, Path::new(SRC), opts(), Arc::new(MemWal::new())).unwrap();
    src.create_tree(TreeKind::Table)
        .unwrap()
        .insert(b"k", b"v")
        .unwrap();
    let other = Database::create(&fs, Path::new(DEST), opts(), Arc::new(MemWal::new())).unwrap();
    drop(other);
    let e = src.compact_into(&fs, Path::new(DEST), opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileAlreadyExists, "{e}");
}
