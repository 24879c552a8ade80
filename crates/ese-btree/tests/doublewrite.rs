//! The doublewrite file: a torn in-place page of a database that was not shut down cleanly is
//! rewritten from its copy at open; a cleanly shut down database, or a file of another
//! database, repairs nothing; with the file a change to a page read from disk is logged as a
//! node record, without it as a full page image.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, DbState, MemWal, TreeKind, doublewrite_path};
use ese_core::fs::{FileSystem, OpenOptions, SimFs};
use ese_core::{ErrorKind, ObjId, Pgno};

const PS: usize = 4096;
const PATH: &str = "/dw.edb";

fn opts(doublewrite: bool) -> DbOptions {
    DbOptions::new()
        .page_size(PS as u32)
        .extension_pages(8)
        .doublewrite(doublewrite)
}

#[expect(
    clippy::big_endian_bytes,
    reason = "big-endian keys sort like the numbers they encode"
)]
fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// A database of 600 rows over several leaves, written back (so the doublewrite file holds a
/// copy of every page), in the given header state. Returns the file system and the number of
/// the last page.
fn build(state: DbState) -> (Arc<dyn FileSystem>, u32) {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let db = Database::create(&fs, Path::new(PATH), opts(true), Arc::new(MemWal::new())).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0..600 {
        t.insert(&key(i), &[i as u8; 40]).unwrap();
    }
    db.flush().unwrap();
    db.write_header(|h| h.state = state).unwrap();
    let last = db.check_integrity().unwrap().pgno_last;
    (fs, last)
}

/// Overwrites 1,000 bytes in the middle of page `pgno` in place, as a torn write leaves it.
fn tear(fs: &Arc<dyn FileSystem>, pgno: u32) {
    let f = fs.open(Path::new(PATH), OpenOptions::read_write()).unwrap();
    let off = (u64::from(pgno) + 1) * PS as u64 + 1500;
    f.write_all_at(&[0xA5; 1000], off).unwrap();
}

fn open(fs: &Arc<dyn FileSystem>, doublewrite: bool) -> Database {
    Database::open(
        fs,
        Path::new(PATH),
        opts(doublewrite),
        Arc::new(MemWal::new()),
    )
    .unwrap()
}

fn rows(db: &Database) -> usize {
    let t = db.open_tree(ObjId(2)).unwrap();
    let mut c = t.cursor();
    let mut n = 0;
    let mut more = c.move_first().unwrap();
    while more {
        assert_eq!(c.key(), key(n as u32), "row {n}");
        n += 1;
        more = c.move_next().unwrap();
    }
    n
}

#[test]
fn torn_pages_of_a_database_not_shut_down_cleanly_are_rewritten_from_their_copies() {
    let (fs, last) = build(DbState::DirtyShutdown);
    assert!(last > 6, "several leaves: {last} pages");
    let torn: Vec<u32> = (3..=last).step_by(2).collect();
    for &p in &torn {
        tear(&fs, p);
    }
    let db = open(&fs, true);
    let repaired: Vec<u32> = db.pages_repaired_at_open().iter().map(|p| p.0).collect();
    assert_eq!(repaired, torn);
    db.check_integrity().unwrap();
    assert_eq!(rows(&db), 600);
    drop(db);
    // The repair was synced: opened again, nothing is left to repair.
    let db = open(&fs, true);
    assert!(db.pages_repaired_at_open().is_empty());
    db.check_integrity().unwrap();
}

#[test]
fn a_cleanly_shut_down_database_is_not_repaired() {
    let (fs, last) = build(DbState::CleanShutdown);
    tear(&fs, last);
    let db = open(&fs, true);
    assert!(db.pages_repaired_at_open().is_empty());
    let e = db.check_integrity().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadVerifyFailure, "{e}");
    assert_eq!(e.pgno(), Some(Pgno(last)));
}

#[test]
fn copies_of_another_database_are_ignored() {
    let (fs, last) = build(DbState::DirtyShutdown);
    // Change one byte of the signature in the doublewrite file's header.
    let dw = fs
        .open(
            &doublewrite_path(Path::new(PATH)),
            OpenOptions::read_write(),
        )
        .unwrap();
    let mut b = [0u8; 1];
    dw.read_exact_at(&mut b, 20).unwrap();
    dw.write_all_at(&[b[0] ^ 1], 20).unwrap();
    drop(dw);
    tear(&fs, last);
    let db = open(&fs, true);
    assert!(db.pages_repaired_at_open().is_empty());
    assert_eq!(
        db.check_integrity().unwrap_err().kind(),
        ErrorKind::ReadVerifyFailure
    );
}

/// The record type of `rec` (first byte: 1 images, 2 node, 3 annotation only).
fn kinds(wal: &MemWal) -> Vec<u8> {
    wal.records().iter().map(|(_, r)| r[0]).collect()
}

#[test]
fn with_the_file_a_change_to_a_page_read_from_disk_logs_no_image() {
    for doublewrite in [true, false] {
        let (fs, _) = build(DbState::DirtyShutdown);
        let wal = Arc::new(MemWal::new());
        let db = Database::open(
            &fs,
            Path::new(PATH),
            opts(doublewrite),
            Arc::clone(&wal) as Arc<dyn ese_btree::Wal>,
        )
        .unwrap();
        let t = db.open_tree(ObjId(2)).unwrap();
        // Replace one row in each of a few leaves, read from disk for this change.
        for i in [5u32, 205, 405] {
            t.replace(&key(i), &[0xEE; 40]).unwrap();
        }
        let expect = if doublewrite { 2 } else { 1 };
        assert_eq!(kinds(&wal), vec![expect; 3], "doublewrite {doublewrite}");
        // Written back and changed again: the same.
        db.flush().unwrap();
        t.replace(&key(5), &[0xEF; 40]).unwrap();
        assert_eq!(
            kinds(&wal).last(),
            Some(&expect),
            "doublewrite {doublewrite}"
        );
        assert_eq!(rows(&db), 600);
    }
}
