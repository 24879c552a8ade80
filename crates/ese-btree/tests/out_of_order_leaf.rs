//! Regression: a leaf whose keys are out of order (a corrupt page with a valid checksum: two
//! tags swapped) made a seek past a key land on a node at or before it, so a scan that moves
//! by seeking past its current key (how `ese`'s tables move to the next record) never ended,
//! holding memory for every row it returned (found by the `db_file` fuzz target: out of
//! memory). A seek now checks that the node it lands on lies on the right side of its key and
//! returns `DatabaseCorrupted` otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, MemWal, SeekOp, TreeKind};
use ese_core::checksum::crc32_seeded;
use ese_core::fs::{FileSystem, OpenOptions, SimFs};
use ese_core::{ErrorKind, ObjId};

const PS: usize = 4096;
const PATH: &str = "/disorder.edb";

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

#[test]
fn a_scan_by_seeks_over_a_leaf_with_keys_out_of_order_ends() {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let opts = DbOptions::new().page_size(PS as u32).extension_pages(1);
    let db = Database::create(&fs, Path::new(PATH), opts, Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    let objid: ObjId = t.objid();
    // One leaf (the root) of ten nodes.
    for i in 0u32..10 {
        t.insert(format!("key-{i:02}").as_bytes(), b"value")
            .unwrap();
    }
    db.flush().unwrap();
    drop(t);
    drop(db);

    let f = fs.open(Path::new(PATH), OpenOptions::read_write()).unwrap();
    let mut file = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut file, 0).unwrap();
    let pgno = (1..file.len() / PS - 1)
        .find(|&p| {
            let page = &file[(p + 1) * PS..(p + 2) * PS];
            u32_at(page, 24) == objid.0 && u32_at(page, 28) & 0x2 != 0
        })
        .unwrap();
    // Swap the tags of the third and the fourth node (tag i + 1 sits 4 * (i + 2) bytes
    // before the end of the page): their keys are now out of order, and a seek past the
    // fourth key lands on the third.
    let page = &mut file[(pgno + 1) * PS..(pgno + 2) * PS];
    let (x, y) = (PS - 4 * (2 + 2), PS - 4 * (3 + 2));
    let tx: [u8; 4] = page[x..x + 4].try_into().unwrap();
    let ty: [u8; 4] = page[y..y + 4].try_into().unwrap();
    page[x..x + 4].copy_from_slice(&ty);
    page[y..y + 4].copy_from_slice(&tx);
    let crc = crc32_seeded(pgno as u64, &[&page[4..]]);
    page[..4].copy_from_slice(&crc.to_le_bytes());
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
    let mut r = c.move_first().map(|_| ());
    let mut steps = 0;
    while r.is_ok() {
        steps += 1;
        assert!(steps < 1000, "the scan does not end");
        let key = c.key().to_vec();
        r = c.seek(&key, SeekOp::Gt);
    }
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DatabaseCorrupted, "{e}");
    assert_eq!(
        db.check_integrity().unwrap_err().kind(),
        ErrorKind::DatabaseCorrupted
    );
}
