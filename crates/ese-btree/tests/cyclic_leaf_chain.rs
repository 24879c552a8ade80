//! Regression: two leaves of a corrupt database linked to each other both ways (A.next = B,
//! B.prev = A, B.next = A, A.prev = B) pass the cursor's back-link check, so a scan stepped
//! from one to the other forever, holding memory for every node it returned (found by the
//! `db_file` fuzz target: out of memory after a page with a valid checksum got such links).
//! The cursor now also requires a sibling's keys to lie beyond the leaf it comes from, and
//! the scan ends with `BadPageLink`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, MemWal, TreeKind};
use ese_core::checksum::crc32_seeded;
use ese_core::fs::{FileSystem, OpenOptions, SimFs};
use ese_core::{ErrorKind, ObjId};

const PS: usize = 4096;
const PATH: &str = "/cycle.edb";

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Rewrites the checksum of database page `pgno` (file page `pgno + 1`) after a change.
fn reseal(file: &mut [u8], pgno: u32) {
    let page = &mut file[(pgno as usize + 1) * PS..(pgno as usize + 2) * PS];
    let crc = crc32_seeded(u64::from(pgno), &[&page[4..]]);
    page[..4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_scan_over_leaves_linked_in_a_cycle_ends_with_bad_page_link() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let opts = DbOptions::new().page_size(PS as u32).extension_pages(1);
    let db = Database::create(&fs, Path::new(PATH), opts, Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    let objid: ObjId = t.objid();
    // Two leaves' worth of keys (a root over two leaves).
    for i in 0u32..40 {
        t.insert(format!("key-{i:04}").as_bytes(), &[i as u8; 120])
            .unwrap();
    }
    db.flush().unwrap();
    drop(t);
    drop(db);

    let f = fs.open(Path::new(PATH), OpenOptions::read_write()).unwrap();
    let mut file = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut file, 0).unwrap();
    // The tree's leaves in chain order: flags 0x2 (leaf), the tree's objid.
    let leaves: Vec<(u32, u32, u32)> = (1..file.len() / PS - 1)
        .filter_map(|pgno| {
            let p = &file[(pgno + 1) * PS..(pgno + 2) * PS];
            let is_leaf = u32_at(p, 28) & 0x2 != 0;
            (is_leaf && u32_at(p, 24) == objid.0)
                .then(|| (pgno as u32, u32_at(p, 16), u32_at(p, 20)))
        })
        .collect();
    assert_eq!(
        leaves.len(),
        2,
        "the test needs a tree of exactly two leaves"
    );
    let a = leaves.iter().find(|l| l.1 == 0).unwrap().0;
    let b = leaves.iter().find(|l| l.2 == 0).unwrap().0;
    // B.next = A and A.prev = B: a cycle whose links point back at each other.
    let off_b = (b as usize + 1) * PS;
    file[off_b + 20..off_b + 24].copy_from_slice(&a.to_le_bytes());
    let off_a = (a as usize + 1) * PS;
    file[off_a + 16..off_a + 20].copy_from_slice(&b.to_le_bytes());
    reseal(&mut file, a);
    reseal(&mut file, b);
    f.write_all_at(&file, 0).unwrap();
    drop(f);

    let db = Database::open(
        &fs,
        Path::new(PATH),
        DbOptions::new().page_size(PS as u32),
        Arc::new(MemWal::new()),
    )
    .unwrap();
    let t = db.open_tree(objid).unwrap();
    let mut c = t.cursor();
    let mut steps = 0;
    let mut r = c.move_first();
    while let Ok(true) = r {
        steps += 1;
        assert!(steps < 1000, "the scan does not end");
        r = c.move_next();
    }
    assert_eq!(r.unwrap_err().kind(), ErrorKind::BadPageLink);
    // Backwards too.
    let mut c = t.cursor();
    let mut steps = 0;
    let mut r = c.move_last();
    while let Ok(true) = r {
        steps += 1;
        assert!(steps < 1000, "the backward scan does not end");
        r = c.move_prev();
    }
    assert_eq!(r.unwrap_err().kind(), ErrorKind::BadPageLink);
}
