//! Fuzz target `db_file`: bytes as a database file. The first byte picks the mode (modulo 3):
//!
//! - 0: the rest is the whole file;
//! - 1: the rest patches one page of the reference database: a u16 (little-endian) picks the
//!   page (modulo the file's pages, header slots included), the bytes after it overwrite the
//!   page from its start, and the page's checksum (and page number) is then made valid again,
//!   so the structural checks behind the checksum are reached;
//! - 2: as 1, without fixing the checksum.
//!
//! The file is then opened with the page store alone (open, integrity check, a walk of every
//! tree) and attached by an instance (every known table read through the API). Every step
//! must return results or an error; a panic, a hang or an allocation beyond libFuzzer's limit
//! is a bug.

use ese_core::checksum::crc32_seeded;
use ese_core::fs::{CrashModel, SimFs};

use super::reference::{REF_DB, examine_db, read_tables_on, reference};
use super::{PAGE_SIZE, write_file};

/// Seed of a database header slot's checksum (`docs/format-database.md`).
const HEADER_SEED: u64 = 0x89AB_CDEF;
/// Bytes of a header slot covered by its checksum.
const HEADER_LEN: usize = 4096;

/// Makes the checksum of page `index` of a database file image valid again (index 0 and 1 are
/// the header slots, index `i >= 2` is database page `i - 1`).
pub fn reseal(file: &mut [u8], index: usize) {
    let ps = PAGE_SIZE as usize;
    let Some(page) = file.get_mut(index * ps..(index + 1) * ps) else {
        return;
    };
    let crc = if index < 2 {
        crc32_seeded(HEADER_SEED, &[page.get(4..HEADER_LEN).unwrap_or_default()])
    } else {
        let pgno = (index - 1) as u32;
        if let Some(p) = page.get_mut(4..8) {
            p.copy_from_slice(&pgno.to_le_bytes());
        }
        crc32_seeded(u64::from(pgno), &[page.get(4..).unwrap_or_default()])
    };
    if let Some(c) = page.get_mut(0..4) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

/// The file image an input describes (see the module docs).
pub fn file_for(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    match mode % 3 {
        0 => rest.to_vec(),
        m => {
            let mut file = reference().db_file.clone();
            let pages = file.len() / PAGE_SIZE as usize;
            let (sel, content) = rest.split_at_checked(2).unwrap_or((&[0, 0], rest));
            let index = usize::from(u16::from_le_bytes([
                sel.first().copied().unwrap_or(0),
                sel.get(1).copied().unwrap_or(0),
            ])) % pages.max(1);
            let start = index * PAGE_SIZE as usize;
            let n = content.len().min(PAGE_SIZE as usize);
            if let (Some(dst), Some(src)) = (file.get_mut(start..start + n), content.get(..n)) {
                dst.copy_from_slice(src);
            }
            if m == 1 {
                reseal(&mut file, index);
            }
            file
        }
    }
}

/// Runs one input under a deadline of 120 s (the cargo-fuzz entry point).
pub fn run_db_file(data: &[u8]) {
    let file = file_for(data);
    let _ = super::with_deadline("db_file", 120, move || examine(&file));
}

/// Opens, checks and reads `file` as the reference database: with the page store alone, then
/// through an instance. Returns what each reader made of it.
pub fn examine(file: &[u8]) -> (ese::Result<()>, ese::Result<()>) {
    let alone = SimFs::new();
    let page_store = write_file(&alone, REF_DB, file)
        .and_then(|()| examine_db(&alone, REF_DB))
        .map(|_| ());
    // Header slot 0 decoded on its own, as esedump does.
    let _ = ese_btree::DbHeader::decode(file.get(..HEADER_LEN).unwrap_or(file), 0);
    let with_log = reference().clean.crash(CrashModel::DropAll, 0);
    let api = write_file(&with_log, REF_DB, file)
        .and_then(|()| read_tables_on(&with_log))
        .map(|_| ());
    (page_store, api)
}
