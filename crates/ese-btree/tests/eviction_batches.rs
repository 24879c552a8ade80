//! A load larger than the cache, whose pages are all dirty (nothing writes them back before
//! they must leave): each eviction that finds its victim dirty writes back a batch of dirty
//! pages from the cold end with one doublewrite sync, not one sync per page, and every row
//! reads back, through the evictions and after the database is reopened.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, MemWal, Tree, TreeKind};
use ese_core::fs::{FileSystem, SimFs};

const PS: u32 = 4096;
const PATH: &str = "/evict.edb";
/// 256 pages of 4 KiB: the rows below take several times that.
const CACHE_PAGES: u64 = 256;
const ROWS: u32 = 20_000;

fn opts() -> DbOptions {
    DbOptions::new()
        .page_size(PS)
        .cache_bytes(CACHE_PAGES * u64::from(PS))
        .extension_pages(64)
        .doublewrite(true)
}

/// A key in a scattered order (a multiplicative permutation of `i`), so inserts land on
/// random leaves as a random-key load does.
#[expect(
    clippy::big_endian_bytes,
    reason = "big-endian keys sort like the numbers they encode"
)]
fn key(i: u32) -> [u8; 4] {
    i.wrapping_mul(2_654_435_761).to_be_bytes()
}

fn value(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 120]
}

/// A new database on `sim` with one table tree holding the [`ROWS`] rows, inserted in
/// scattered key order: several times the cache, every page of it dirty.
fn loaded(sim: &SimFs) -> (Arc<dyn FileSystem>, Database, Tree) {
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let db = Database::create(&fs, Path::new(PATH), opts(), Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0..ROWS {
        t.insert(&key(i), &value(i)).unwrap();
    }
    (fs, db, t)
}

#[test]
fn dirty_victims_are_written_back_in_batches() {
    let sim = SimFs::new();
    // Counted from before the database is created: its creation's few syncs and page writes
    // count too, which only makes the ratio below harder to reach.
    let syncs_before = sim.op_counts().syncs;
    let (fs, db, t) = loaded(&sim);
    let objid = t.objid();
    let (ops, stats) = (sim.op_counts(), db.cache_stats());
    let written = stats.pages_written;
    let syncs = ops.syncs - syncs_before;
    assert!(
        stats.evictions > 2 * CACHE_PAGES,
        "the load must overflow the cache: {stats:?}"
    );
    assert!(
        written > CACHE_PAGES,
        "dirty pages left the cache: {stats:?}"
    );
    // One doublewrite sync per batch (and a database sync when the doublewrite file cycles);
    // one victim per write-back would make this ratio about 1.
    assert!(
        written >= 8 * syncs,
        "{written} pages written back with {syncs} syncs"
    );
    // Every row, read back through the evictions.
    for i in 0..ROWS {
        assert_eq!(t.get(&key(i)).unwrap().0, value(i), "row {i}");
    }
    db.flush().unwrap();
    let report = db.check_integrity().unwrap();
    assert!(
        u64::from(report.pgno_last) > 2 * CACHE_PAGES,
        "the tree must be larger than the cache: {report:?}"
    );
    drop(t);
    drop(db);
    let db = Database::open(&fs, Path::new(PATH), opts(), Arc::new(MemWal::new())).unwrap();
    let t = db.open_tree(objid).unwrap();
    for i in (0..ROWS).step_by(7) {
        assert_eq!(
            t.get(&key(i)).unwrap().0,
            value(i),
            "row {i} after reopening"
        );
    }
}

#[test]
fn scavenging_cleans_the_pages_the_next_evictions_take() {
    let (_fs, db, t) = loaded(&SimFs::new());
    // The cache is full, and dirty: the load left every page it holds changed.
    let full = db.cache_stats();
    assert!(full.dirty_pages > CACHE_PAGES / 2, "{full:?}");
    let mut scavenged = 0;
    loop {
        let n = db.scavenge().unwrap();
        if n == 0 {
            break;
        }
        scavenged += n;
        assert!(scavenged <= 4 * CACHE_PAGES as usize, "scavenging must end");
    }
    let after = db.cache_stats();
    assert!(scavenged > 0, "nothing scavenged: {after:?}");
    assert_eq!(
        after.pages_written - full.pages_written,
        scavenged as u64,
        "{after:?}"
    );
    assert_eq!(after.evictions, full.evictions, "scavenging evicts nothing");
    assert!(after.dirty_pages < full.dirty_pages, "{after:?}");
    // Misses now evict the clean pages at the cold end, writing nothing.
    let mut i = 0;
    while db.cache_stats().evictions < after.evictions + 16 {
        assert_eq!(t.get(&key(i)).unwrap().0, value(i), "row {i}");
        i += 97;
        assert!(
            i < ROWS,
            "16 evictions from reading the rows: {:?}",
            db.cache_stats()
        );
    }
    let end = db.cache_stats();
    assert_eq!(
        end.pages_written, after.pages_written,
        "the evictions found clean pages: {end:?}"
    );
}
