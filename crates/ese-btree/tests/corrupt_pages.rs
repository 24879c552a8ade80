//! Corrupt-page sweep: single-byte changes across every page of a small database, zeroed
//! pages, swapped pages and damaged headers. Every damaged page read must report a clean
//! error naming the page (never a panic), and a damaged header falls back to its shadow.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::many_single_char_names,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, LongValues, MemWal, TreeKind};
use ese_core::fs::{FileSystem, OpenOptions, SimFs};
use ese_core::{ErrorKind, Pgno};

const PS: usize = 4096;
const PATH: &str = "/c.edb";

fn build() -> (Arc<dyn FileSystem>, u32) {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let opts = DbOptions::new().page_size(PS as u32).extension_pages(1);
    let db = Database::create(&fs, Path::new(PATH), opts, Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0u32..120 {
        t.insert(&i.to_le_bytes(), &[i as u8; 90]).unwrap();
    }
    let lv = LongValues::new(db.create_tree(TreeKind::LongValue).unwrap()).unwrap();
    lv.create(1).unwrap();
    lv.append(1, &[5u8; 9000]).unwrap();
    for i in 0u32..40 {
        t.delete(&(i * 3).to_le_bytes()).unwrap();
    }
    let report = db.check_integrity().unwrap();
    db.flush().unwrap();
    (fs, report.pgno_last)
}

fn raw(fs: &Arc<dyn FileSystem>) -> Vec<u8> {
    let f = fs.open(Path::new(PATH), OpenOptions::read()).unwrap();
    let mut b = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut b, 0).unwrap();
    b
}

fn put(fs: &Arc<dyn FileSystem>, bytes: &[u8]) {
    let f = fs.open(Path::new(PATH), OpenOptions::read_write()).unwrap();
    f.write_all_at(bytes, 0).unwrap();
}

fn open(fs: &Arc<dyn FileSystem>) -> ese_core::Result<Database> {
    Database::open(
        fs,
        Path::new(PATH),
        // Pages damaged on purpose, not torn by a crash: no repair from the doublewrite file
        // (which still holds copies of them) may hide the damage.
        DbOptions::new().page_size(PS as u32).doublewrite(false),
        Arc::new(MemWal::new()),
    )
}

fn off(pgno: u32) -> usize {
    (pgno as usize + 1) * PS
}

#[test]
fn every_single_byte_change_is_detected() {
    let (fs, last) = build();
    let good = raw(&fs);
    let mut damaged_reads = 0u64;
    for pgno in 1..=last {
        // Every 7th byte of the page plus its first 64 bytes: all header fields and a spread
        // of node, gap and tag bytes (every byte of every page takes minutes in debug builds).
        let offsets = (0..64).chain((64..PS).step_by(7));
        for o in offsets {
            let mut b = good.clone();
            b[off(pgno) + o] ^= 0x5A;
            put(&fs, &b);
            let db = open(&fs).unwrap();
            let e = db
                .check_integrity()
                .expect_err("a damaged page went unnoticed");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ReadVerifyFailure | ErrorKind::ReadPgnoVerifyFailure
                ),
                "page {pgno} byte {o}: {e}"
            );
            assert_eq!(e.pgno(), Some(Pgno(pgno)), "{e}");
            damaged_reads += 1;
        }
    }
    put(&fs, &good);
    open(&fs).unwrap().check_integrity().unwrap();
    eprintln!("{damaged_reads} damaged page reads, all reported");
}

#[test]
fn zeroed_and_swapped_pages_are_detected() {
    let (fs, last) = build();
    let good = raw(&fs);
    for pgno in 1..=last {
        let mut b = good.clone();
        b[off(pgno)..off(pgno) + PS].fill(0);
        put(&fs, &b);
        let e = open(&fs).unwrap().check_integrity().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PageNotInitialized, "{e}");
        assert_eq!(e.pgno(), Some(Pgno(pgno)));
    }
    for a in 1..=last {
        let bpg = if a == last { 1 } else { a + 1 };
        let mut b = good.clone();
        let pa = good[off(a)..off(a) + PS].to_vec();
        let pb = good[off(bpg)..off(bpg) + PS].to_vec();
        b[off(a)..off(a) + PS].copy_from_slice(&pb);
        b[off(bpg)..off(bpg) + PS].copy_from_slice(&pa);
        put(&fs, &b);
        let e = open(&fs).unwrap().check_integrity().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadPgnoVerifyFailure, "{e}");
    }
}

#[test]
fn damaged_header_falls_back_to_the_shadow() {
    let (fs, _) = build();
    let good = raw(&fs);
    for o in (0..200).chain([1000, 4000]) {
        let mut b = good.clone();
        b[o] ^= 1;
        put(&fs, &b);
        let db = open(&fs).unwrap();
        db.check_integrity().unwrap();
    }
    let mut b = good.clone();
    b[10] ^= 1;
    b[PS + 10] ^= 1;
    put(&fs, &b);
    assert_eq!(open(&fs).unwrap_err().kind(), ErrorKind::ReadVerifyFailure);
    let mut b = good;
    b[..2 * PS].fill(0);
    put(&fs, &b);
    assert!(open(&fs).is_err());
    let e = Database::open(
        &fs,
        Path::new(PATH),
        DbOptions::new().page_size(8192),
        Arc::new(MemWal::new()),
    );
    assert!(e.is_err());
}

#[test]
fn page_size_mismatch_is_reported() {
    let (fs, _) = build();
    let e = Database::open(
        &fs,
        Path::new(PATH),
        DbOptions::new().page_size(8192),
        Arc::new(MemWal::new()),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PageSizeMismatch);
}
