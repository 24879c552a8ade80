//! Corrupt-file sweep: systematic damage to a reference database, its log generations and
//! its checkpoint, each damaged copy opened, read and checked by the engine's own readers.
//!
//! Every outcome is sorted into one of:
//! - **detected**: some step returned an error (counted per JET error);
//! - **harmless**: every step succeeded and returned exactly what the undamaged files give;
//! - **wrong**: every step succeeded but the contents differ (damage that went unnoticed).
//!
//! A panic or a step that does not finish within 60 s fails the test at once. Damage inside
//! a checksummed page, header or checkpoint slot must never be "wrong". Two kinds of damage
//! are counted but not held to that: an older version of a page (valid checksum, right page
//! number: only a lost-flush check could tell) and damage to the acknowledged records of the
//! current log generation (the reader takes the first frame that does not verify for the torn
//! tail of a crash; see the report printed).
//!
//! The database sweep changes one byte per 48 bytes of both header slots, every allocated
//! page and two pages of the unused extension (the offset inside each 48-byte block varies
//! from page to page), flips 300 random bits (fixed seed), zeroes every page, swaps
//! neighbouring pages, puts back older versions of pages and truncates the file; every page is
//! also damaged once under an instance, which attaches the file and reads every table. The log
//! sweep changes one byte per 512 bytes of every generation file (the offset inside each block
//! varies), zeroes every second sector, truncates the current generation, and changes one byte
//! per 32 bytes of the checkpoint, each followed by recovery, the integrity check and a read of
//! every table. `ESE_CORRUPT_FULL=1` uses strides of 16 bytes for the database, 64 bytes and
//! every sector for the log and 4 bytes for the checkpoint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use ese_core::fs::{CrashModel, SimFs};
use ese_tests::fuzz::reference::{
    CHECKPOINT, REF_DB, examine_db, read_tables_on, recover_and_read, reference,
};
use ese_tests::fuzz::{LOG_DIR, with_deadline, write_file};

const PAGE: usize = 4096;

#[derive(Default)]
struct Histogram {
    detected: BTreeMap<&'static str, u64>,
    harmless: u64,
    wrong: u64,
    /// A few examples of wrong outcomes.
    examples: Vec<String>,
}

impl Histogram {
    fn detected_total(&self) -> u64 {
        self.detected.values().sum()
    }

    fn add<T: PartialEq>(&mut self, what: &str, r: ese::Result<T>, want: &T) {
        match r {
            Err(e) => *self.detected.entry(e.kind().name()).or_default() += 1,
            Ok(v) if v == *want => self.harmless += 1,
            Ok(_) => {
                self.wrong += 1;
                if self.examples.len() < 5 {
                    self.examples.push(what.to_owned());
                }
            }
        }
    }

    fn total(&self) -> u64 {
        self.detected_total() + self.harmless + self.wrong
    }
}

impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tried: {} detected, {} harmless, {} wrong",
            self.total(),
            self.detected_total(),
            self.harmless,
            self.wrong
        )?;
        if !self.detected.is_empty() {
            let list: Vec<String> = self
                .detected
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, " [{}]", list.join(", "))?;
        }
        if !self.examples.is_empty() {
            write!(f, "; wrong e.g. {}", self.examples.join("; "))?;
        }
        Ok(())
    }
}

fn full() -> bool {
    std::env::var("ESE_CORRUPT_FULL").is_ok()
}

/// The page store's view of a damaged database file (open, integrity check, every tree).
fn page_store(file: Vec<u8>) -> ese::Result<ese_tests::fuzz::reference::TreeDump> {
    with_deadline("page store", 60, move || {
        let fs = SimFs::new();
        write_file(&fs, REF_DB, &file)?;
        examine_db(&fs, REF_DB)
    })
}

/// An instance's view of a damaged database file (attach, every table through the API).
fn api(file: Vec<u8>) -> ese::Result<ese_tests::fuzz::reference::Tables> {
    with_deadline("instance", 60, move || {
        let fs = reference().clean.crash(CrashModel::DropAll, 0);
        write_file(&fs, REF_DB, &file)?;
        read_tables_on(&fs)
    })
}

/// Recovery's view of a damaged crash image (recovery, integrity check, every table).
fn recovered(fs: SimFs) -> ese::Result<ese_tests::fuzz::reference::Tables> {
    with_deadline("recovery", 60, move || recover_and_read(&fs))
}

fn changed(b: u8, off: usize) -> u8 {
    b ^ (1 + (off % 255) as u8)
}

#[test]
fn damaged_database_files_are_detected_or_harmless() {
    let r = reference();
    let start = Instant::now();
    let db = &r.db_file;
    let file_pages = db.len() / PAGE;
    // The header slots, every allocated page, and two pages of the unused extension.
    let fs = SimFs::new();
    write_file(&fs, REF_DB, db).unwrap();
    let report = ese_tests::fuzz::reference::open_db(&fs, REF_DB)
        .unwrap()
        .check_integrity()
        .unwrap();
    let pages = (report.pgno_last as usize + 1 + 2 + 2).min(file_pages);
    let stride = if full() { 16 } else { 48 };
    assert_eq!(page_store(db.clone()).unwrap(), r.trees);
    let mut bytes = Histogram::default();
    let mut bits = Histogram::default();
    let mut zeroed = Histogram::default();
    let mut swapped = Histogram::default();
    let mut older = Histogram::default();
    let mut truncated = Histogram::default();
    let mut via_api = Histogram::default();
    for p in 0..pages {
        let phase = (p * 13) % stride;
        for off in (p * PAGE + phase..(p + 1) * PAGE).step_by(stride) {
            let mut f = db.clone();
            f[off] = changed(f[off], off);
            bytes.add(&format!("byte {off} (page {p})"), page_store(f), &r.trees);
        }
    }
    let mut rng = fastrand::Rng::with_seed(0x00C0_FFEE);
    for _ in 0..300 {
        let off = rng.usize(..pages * PAGE);
        let bit = rng.u8(..8);
        let mut f = db.clone();
        f[off] ^= 1 << bit;
        bits.add(&format!("bit {bit} of byte {off}"), page_store(f), &r.trees);
    }
    for p in 0..pages {
        let mut f = db.clone();
        f[p * PAGE..(p + 1) * PAGE].fill(0);
        zeroed.add(&format!("page {p}"), page_store(f), &r.trees);
        if p + 1 < pages {
            let mut f = db.clone();
            let (a, b) = f.split_at_mut((p + 1) * PAGE);
            a[p * PAGE..].swap_with_slice(&mut b[..PAGE]);
            swapped.add(&format!("pages {p} and {}", p + 1), page_store(f), &r.trees);
        }
        let old = r.db_file_old.get(p * PAGE..(p + 1) * PAGE);
        if let Some(old) = old
            && old != &db[p * PAGE..(p + 1) * PAGE]
            && old.iter().any(|&b| b != 0)
        {
            let mut f = db.clone();
            f[p * PAGE..(p + 1) * PAGE].copy_from_slice(old);
            older.add(&format!("page {p}"), page_store(f), &r.trees);
        }
    }
    let lengths = (0..(pages + 1) * PAGE).step_by(PAGE / 2);
    for len in lengths.chain([1, 100, db.len() - PAGE, db.len() - 1]) {
        truncated.add(
            &format!("{len} bytes"),
            page_store(db[..len].to_vec()),
            &r.trees,
        );
    }
    for p in 0..pages {
        let mut f = db.clone();
        let off = p * PAGE + 40 + (p * 97) % (PAGE - 40);
        f[off] = changed(f[off], off);
        via_api.add(&format!("byte {off} (page {p})"), api(f), &r.tables);
    }
    println!(
        "database: {} bytes, {file_pages} pages of {PAGE} bytes (2 header slots, {} allocated, the rest unused extension); {pages} swept, stride {stride}",
        db.len(),
        report.pgno_last
    );
    println!("  one byte changed per {stride} bytes: {bytes}");
    println!("  single bits flipped (seeded):  {bits}");
    println!("  whole pages zeroed:            {zeroed}");
    println!("  neighbouring pages swapped:    {swapped}");
    println!("  pages put back to an older version: {older}");
    println!("  file truncated:                {truncated}");
    println!("  one byte per page, through an instance: {via_api}");
    println!("  {:.1?}", start.elapsed());
    for (name, h) in [
        ("byte changes", &bytes),
        ("bit flips", &bits),
        ("zeroed pages", &zeroed),
        ("swapped pages", &swapped),
        ("truncations", &truncated),
        ("instance reads", &via_api),
    ] {
        assert_eq!(h.wrong, 0, "{name}: damage went unnoticed: {h}");
    }
    assert!(bytes.total() > 2000 && bytes.detected_total() > 1000);
}

#[test]
fn damaged_logs_and_checkpoints_are_detected_or_harmless() {
    let r = reference();
    let start = Instant::now();
    // About 640 damaged bytes over the log (at most one per 512), however long it is.
    let log_bytes: usize = r.log_files.iter().map(|(_, f)| f.len()).sum();
    let stride = if full() {
        64
    } else {
        (log_bytes / 640).clamp(64, 512)
    };
    let want = &r.tables;
    assert_eq!(
        &recovered(r.crashed.crash(CrashModel::DropAll, 0)).unwrap(),
        want
    );
    let mut archived = Histogram::default();
    let mut current = Histogram::default();
    let mut sectors = Histogram::default();
    let mut truncated = Histogram::default();
    let mut checkpoint = Histogram::default();
    for (name, file) in &r.log_files {
        let path = format!("{LOG_DIR}/{name}");
        let is_current = name == "edb.log";
        for off in (0..file.len()).step_by(stride) {
            let off = (off + (off / stride * 67) % stride).min(file.len() - 1);
            let mut f = file.clone();
            f[off] = changed(f[off], off);
            let fs = r.crashed.crash(CrashModel::DropAll, 0);
            write_file(&fs, &path, &f).unwrap();
            let h = if is_current {
                &mut current
            } else {
                &mut archived
            };
            h.add(&format!("{name} byte {off}"), recovered(fs), want);
        }
        for s in (0..file.len()).step_by(if full() { 512 } else { 1024 }) {
            let mut f = file.clone();
            f[s..s + 512].fill(0);
            let fs = r.crashed.crash(CrashModel::DropAll, 0);
            write_file(&fs, &path, &f).unwrap();
            sectors.add(&format!("{name} sector {}", s / 512), recovered(fs), want);
        }
        if is_current {
            for len in (0..file.len()).step_by(4096).chain([file.len() - 1]) {
                let fs = r.crashed.crash(CrashModel::DropAll, 0);
                write_file(&fs, &path, &file[..len]).unwrap();
                truncated.add(&format!("{name} to {len} bytes"), recovered(fs), want);
            }
        }
    }
    let chk = ese_tests::fuzz::read_file(&r.crashed, CHECKPOINT).unwrap();
    let chk_stride = if full() { 4 } else { 32 };
    for off in (0..chk.len()).step_by(chk_stride) {
        let mut f = chk.clone();
        f[off] = changed(f[off], off);
        let fs = r.crashed.crash(CrashModel::DropAll, 0);
        write_file(&fs, CHECKPOINT, &f).unwrap();
        checkpoint.add(&format!("checkpoint byte {off}"), recovered(fs), want);
    }
    let names: Vec<&str> = r.log_files.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "log: generations {names:?}, {} KiB each, stride {stride}",
        r.log_files[0].1.len() / 1024
    );
    println!("  finished generations, one byte per {stride}: {archived}");
    println!("  current generation, one byte per {stride}:   {current}");
    println!("  sectors zeroed (every generation): {sectors}");
    println!("  current generation truncated:      {truncated}");
    println!("  checkpoint, one byte per {chk_stride}:          {checkpoint}");
    println!("  {:.1?}", start.elapsed());
    assert_eq!(archived.wrong, 0, "finished generations: {archived}");
    assert_eq!(checkpoint.wrong, 0, "checkpoint: {checkpoint}");
    assert_eq!(truncated.wrong, 0, "truncation: {truncated}");
    assert!(archived.total() + current.total() > 500);
}
