//! Raw, read-only access to a database file through its documented format
//! (`docs/format-database.md`): the two header slots and single pages, decoded leniently so a
//! damaged page can still be shown field by field.
//!
//! Header slots are decoded by `ese_btree::DbHeader::decode`, one slot at a time, so a dump can
//! show which copy was used and why the other was rejected. Pages are decoded here, leniently,
//! because `ese-btree` stops at the first problem and a dump must show the lines of a page whose
//! checksum fails. Every read is bounds-checked: nothing read from disk
//! can make this module panic.

#![deny(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use ese_btree::{DbState, PAGE_SIZES};
use ese_core::checksum::crc32_seeded;
use ese_core::fs::{File, FileSystem, Lock, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Pgno, Result};

use crate::rofs::ReadOnlyFs;

/// Bytes of a header slot covered by its checksum.
const HEADER_LEN: usize = 4096;
/// Bytes of the page header.
pub(crate) const PAGE_HEADER_LEN: usize = 40;
/// Bytes of one tag.
const TAG_LEN: usize = 4;
/// The space page.
pub(crate) const SPACE_PGNO: u32 = 2;

fn le_u16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// A decoded header slot.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub(crate) format_version: u32,
    pub(crate) page_size: u32,
    pub(crate) slot: u32,
    pub(crate) sequence: u64,
    pub(crate) state: DbState,
    pub(crate) db_signature: [u8; 32],
    pub(crate) log_signature: [u8; 32],
    pub(crate) consistent_lgpos: Lgpos,
    pub(crate) gen_min_required: u32,
    pub(crate) gen_max_required: u32,
    pub(crate) gen_max_committed: u32,
    pub(crate) last_objid: u32,
    pub(crate) dbtime: u64,
}

/// ESE's name of a state.
pub(crate) fn state_name(s: DbState) -> &'static str {
    match s {
        DbState::JustCreated => "JustCreated",
        DbState::DirtyShutdown => "DirtyShutdown",
        DbState::CleanShutdown => "CleanShutdown",
    }
}

fn decode_header(b: &[u8], expect_slot: u32) -> Result<Header> {
    let block = b.get(..HEADER_LEN).ok_or_else(|| {
        Error::new(ErrorKind::InvalidDatabase).with_message("the header slot is short")
    })?;
    // A slot never written reads as zeros: say so rather than report a checksum mismatch.
    if block.iter().all(|&x| x == 0) {
        return Err(
            Error::new(ErrorKind::ReadVerifyFailure).with_message("the header slot is all zeros")
        );
    }
    let h = ese_btree::DbHeader::decode(block, expect_slot)?;
    Ok(Header {
        format_version: h.format_version,
        page_size: h.page_size,
        slot: expect_slot,
        sequence: h.sequence,
        state: h.state,
        db_signature: h.db_signature,
        log_signature: h.log_signature,
        consistent_lgpos: h.consistent_lgpos,
        gen_min_required: h.gen_min_required,
        gen_max_required: h.gen_max_required,
        gen_max_committed: h.gen_max_committed,
        last_objid: h.last_objid.0,
        dbtime: h.dbtime.0,
    })
}

/// What was found in one header slot.
#[derive(Debug)]
pub(crate) struct SlotRead {
    pub(crate) slot: u32,
    /// Byte offset the slot was read from (slot 1 sits one page after slot 0).
    pub(crate) offset: u64,
    pub(crate) header: Result<Header>,
}

/// An open database file, read-only, with both header slots examined.
#[derive(Debug)]
pub(crate) struct DbFile {
    pub(crate) path: PathBuf,
    file: Box<dyn File>,
    pub(crate) len: u64,
    pub(crate) slots: [SlotRead; 2],
}

impl DbFile {
    /// Opens `path` read-only and reads both header slots. Succeeds even when neither slot is
    /// valid (see [`DbFile::header`]).
    pub(crate) fn open(path: &Path) -> Result<DbFile> {
        let file = ReadOnlyFs.open(path, OpenOptions::read().lock(Lock::Shared))?;
        let len = file.len()?;
        let mut buf = vec![0u8; HEADER_LEN];
        let mut read = |off: u64, slot: u32| -> Result<Header> {
            file.read_exact_at(&mut buf, off).map_err(|e| {
                if e.kind() == ErrorKind::FileIOBeyondEOF {
                    Error::new(ErrorKind::InvalidDatabase)
                        .with_message("the file ends before this header slot")
                } else {
                    e
                }
            })?;
            decode_header(&buf, slot)
        };
        let slot0 = read(0, 0);
        // Slot 1 is one page further; the page size comes from slot 0 if it is valid, else from
        // the first offset that holds a valid slot 1 (as ese-btree looks for it).
        let slot1 = if let Ok(h) = &slot0 {
            let off = u64::from(h.page_size);
            let header = read(off, 1).and_then(|h1| {
                if u64::from(h1.page_size) == off {
                    Ok(h1)
                } else {
                    Err(Error::new(ErrorKind::InvalidDatabase).with_message(format!(
                        "header slot 1 at offset {off} says the page size is {}",
                        h1.page_size
                    )))
                }
            });
            SlotRead {
                slot: 1,
                offset: off,
                header,
            }
        } else {
            let mut found: Option<SlotRead> = None;
            for ps in PAGE_SIZES {
                let r = read(u64::from(ps), 1);
                let fits = r.as_ref().is_ok_and(|h| h.page_size == ps);
                if fits || found.is_none() {
                    found = Some(SlotRead {
                        slot: 1,
                        offset: u64::from(ps),
                        header: r,
                    });
                }
                if fits {
                    break;
                }
            }
            found.unwrap_or(SlotRead {
                slot: 1,
                offset: 0,
                header: Err(Error::new(ErrorKind::InvalidDatabase)),
            })
        };
        Ok(DbFile {
            path: path.to_path_buf(),
            file,
            len,
            slots: [
                SlotRead {
                    slot: 0,
                    offset: 0,
                    header: slot0,
                },
                slot1,
            ],
        })
    }

    /// The header in force: the valid slot with the highest sequence.
    ///
    /// # Errors
    /// The error of slot 0 (naming the file) when neither slot is valid.
    pub(crate) fn header(&self) -> Result<&Header> {
        let valid = self.slots.iter().filter_map(|s| s.header.as_ref().ok());
        valid.max_by_key(|h| h.sequence).ok_or_else(|| {
            let [s0, _] = &self.slots;
            match &s0.header {
                Err(e) => e.clone().with_path(&self.path),
                Ok(_) => Error::new(ErrorKind::InvalidDatabase).with_path(&self.path),
            }
        })
    }

    /// Database pages the file holds (header pages excluded).
    pub(crate) fn page_count(&self, page_size: u32) -> u32 {
        let pages = (self.len / u64::from(page_size)).saturating_sub(2);
        u32::try_from(pages).unwrap_or(u32::MAX)
    }

    /// The raw bytes of page `pgno` (unverified).
    ///
    /// # Errors
    /// `InvalidParameter` for page 0 or a page past the end of the file; I/O errors.
    pub(crate) fn read_page(&self, pgno: u32, page_size: u32) -> Result<Vec<u8>> {
        let count = self.page_count(page_size);
        if pgno == 0 || pgno > count {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_path(&self.path)
                .with_message(format!(
                    "page {pgno} does not exist: the file holds pages 1 to {count}"
                )));
        }
        let mut buf = vec![0u8; page_size as usize];
        let off = (u64::from(pgno) + 1) * u64::from(page_size);
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| e.with_pgno(Pgno(pgno)))?;
        Ok(buf)
    }
}

/// Verifies a raw page's checksum and page number as the engine does on every read.
///
/// # Errors
/// `PageNotInitialized` (all zeros), `ReadVerifyFailure` (checksum), `ReadPgnoVerifyFailure`
/// (another page's content), each naming `pgno`.
pub(crate) fn verify_page(b: &[u8], pgno: u32) -> Result<()> {
    let e = |k: ErrorKind, m: String| Err(Error::new(k).with_pgno(Pgno(pgno)).with_message(m));
    if b.len() < PAGE_HEADER_LEN + TAG_LEN {
        return e(ErrorKind::ReadVerifyFailure, "short page".to_owned());
    }
    if b.iter().all(|&x| x == 0) {
        return e(
            ErrorKind::PageNotInitialized,
            "the page is all zeros".to_owned(),
        );
    }
    let stored_crc = le_u32(b, 0).unwrap_or(0);
    let stored_pgno = le_u32(b, 4).unwrap_or(0);
    let crc = computed_checksum(b);
    if crc != stored_crc {
        return e(
            ErrorKind::ReadVerifyFailure,
            format!("checksum {stored_crc:#010x} stored, {crc:#010x} computed"),
        );
    }
    if stored_pgno != pgno {
        return e(
            ErrorKind::ReadPgnoVerifyFailure,
            format!("the page holds page number {stored_pgno}"),
        );
    }
    Ok(())
}

/// The checksum of a raw page as the engine computes it (seeded with the stored page number).
pub(crate) fn computed_checksum(b: &[u8]) -> u32 {
    let stored_pgno = le_u32(b, 4).unwrap_or(0);
    crc32_seeded(u64::from(stored_pgno), &[b.get(4..).unwrap_or_default()])
}

/// The page header fields.
#[derive(Clone, Debug)]
pub(crate) struct PageHeader {
    pub(crate) checksum: u32,
    pub(crate) pgno: u32,
    pub(crate) dbtime: u64,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) objid: u32,
    pub(crate) flags: u32,
    pub(crate) tag_count: u16,
    pub(crate) free_bytes: u16,
    pub(crate) ib_mic_free: u16,
    pub(crate) level: u8,
}

/// Decodes the 40-byte page header (no checks: every field as stored).
pub(crate) fn page_header(b: &[u8]) -> PageHeader {
    PageHeader {
        checksum: le_u32(b, 0).unwrap_or(0),
        pgno: le_u32(b, 4).unwrap_or(0),
        dbtime: le_u64(b, 8).unwrap_or(0),
        prev: le_u32(b, 16).unwrap_or(0),
        next: le_u32(b, 20).unwrap_or(0),
        objid: le_u32(b, 24).unwrap_or(0),
        flags: le_u32(b, 28).unwrap_or(0),
        tag_count: le_u16(b, 32).unwrap_or(0),
        free_bytes: le_u16(b, 34).unwrap_or(0),
        ib_mic_free: le_u16(b, 36).unwrap_or(0),
        level: b.get(38).copied().unwrap_or(0),
    }
}

/// Names of the page flags set in `flags` (unknown bits as hex).
pub(crate) fn page_flag_names(flags: u32) -> Vec<String> {
    const NAMES: [(u32, &str); 7] = [
        (0x1, "root"),
        (0x2, "leaf"),
        (0x4, "parent-of-leaf"),
        (0x8, "empty"),
        (0x20, "space"),
        (0x40, "index"),
        (0x80, "long-value"),
    ];
    let mut v: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let unknown = flags & !0xEF;
    if unknown != 0 {
        v.push(format!("unknown({unknown:#x})"));
    }
    v
}

/// One line (tag) of a page.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) tag: u16,
    pub(crate) ib: u16,
    pub(crate) cb: u16,
    /// Node flags (None for tag 0, the external header).
    pub(crate) flags: Option<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) data: Vec<u8>,
    /// Why the line could not be decoded completely, if so.
    pub(crate) problem: Option<String>,
}

/// Decodes every line of a raw page, leniently: a line that does not decode is returned with
/// its problem, and the tag array is cut where it would leave the page.
pub(crate) fn page_lines(b: &[u8]) -> Vec<Line> {
    let ph = page_header(b);
    let node_area_end = usize::from(ph.ib_mic_free);
    let ps = b.len();
    let max_tags = ps.saturating_sub(PAGE_HEADER_LEN) / TAG_LEN;
    let ntags = usize::from(ph.tag_count).min(max_tags);
    let mut lines = Vec::with_capacity(ntags);
    for i in 0..ntags {
        let t = ps - (i + 1) * TAG_LEN;
        let cb = le_u16(b, t).unwrap_or(0);
        let ib = le_u16(b, t + 2).unwrap_or(0);
        let tag = u16::try_from(i).unwrap_or(u16::MAX);
        let mut line = Line {
            tag,
            ib,
            cb,
            flags: None,
            key: Vec::new(),
            data: Vec::new(),
            problem: None,
        };
        let (ibu, cbu) = (usize::from(ib), usize::from(cb));
        if ibu < PAGE_HEADER_LEN || ibu + cbu > node_area_end {
            line.problem = Some(format!("line (ib {ib}, cb {cb}) outside the node area"));
        }
        let bytes = b.get(ibu..ibu + cbu);
        let Some(bytes) = bytes else {
            line.problem = Some(format!("line (ib {ib}, cb {cb}) outside the page"));
            lines.push(line);
            continue;
        };
        if i == 0 {
            line.data = bytes.to_vec();
            lines.push(line);
            continue;
        }
        match bytes.split_first() {
            None => line.problem = Some("empty node".to_owned()),
            Some((&f, rest)) => {
                line.flags = Some(f);
                if f & !0x3 != 0 {
                    line.problem = Some(format!("unknown node flags {f:#x}"));
                }
                let cb_key = usize::from(le_u16(rest, 0).unwrap_or(0));
                if let Some(k) = rest.get(2..2 + cb_key) {
                    line.key = k.to_vec();
                    line.data = rest.get(2 + cb_key..).unwrap_or_default().to_vec();
                } else {
                    line.problem = Some("key longer than the node".to_owned());
                    line.data = rest.get(2..).unwrap_or_default().to_vec();
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// The space page's external header (tag 0 of page 2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpaceHeader {
    pub(crate) free_head: u32,
    pub(crate) free_count: u32,
    pub(crate) pgno_last: u32,
    pub(crate) last_objid: u32,
}

/// Decodes a space header from tag 0's bytes (16 bytes).
pub(crate) fn space_header(ext: &[u8]) -> Option<SpaceHeader> {
    if ext.len() != 16 {
        return None;
    }
    Some(SpaceHeader {
        free_head: le_u32(ext, 0)?,
        free_count: le_u32(ext, 4)?,
        pgno_last: le_u32(ext, 8)?,
        last_objid: le_u32(ext, 12)?,
    })
}

/// Reads and decodes the space header of a database (page 2), if the page verifies.
pub(crate) fn read_space_header(db: &DbFile, page_size: u32) -> Result<SpaceHeader> {
    let b = db.read_page(SPACE_PGNO, page_size)?;
    verify_page(&b, SPACE_PGNO).map_err(|e| e.with_path(&db.path))?;
    let lines = page_lines(&b);
    lines
        .first()
        .and_then(|l| space_header(&l.data))
        .ok_or_else(|| {
            Error::new(ErrorKind::SPOwnExtCorrupted)
                .with_pgno(Pgno(SPACE_PGNO))
                .with_path(&db.path)
                .with_message("bad space header")
        })
}
