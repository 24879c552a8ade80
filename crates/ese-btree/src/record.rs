//! Page log records: what the page store appends to the [`Wal`](crate::Wal) for every page
//! change, and what redo reads back (ESE's physiological `lrtyp*` page records).
//!
//! Two kinds:
//! - **Node** (one page, one node change: insert, replace, delete, set flags), carrying the
//!   page's dbtime before and after, applied by redo only when the page's dbtime equals the
//!   record's "before".
//! - **Images**: after-images of one or more whole pages. A multi-page operation (split,
//!   merge, new root, page allocation or release) is ONE images record, so it is atomic under
//!   recovery (ESE reaches the same with a macro). The first change of a page after it was
//!   last written to disk is also logged as an image (torn-page protection).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | record type: 1 images, 2 node |
//! | 1 | 1 | record format version (1) |
//! | 2 | 4 | dbid (which database of the instance) |
//!
//! Images body: count u16, then per page: pgno u32, head length u16, tag length u16, the page's
//! first `head` bytes (header and nodes) and its last `tag` bytes (the tag array); the hole in
//! between is zeros. Node body: pgno u32, objid u32, dbtime before u64, dbtime after u64,
//! operation u8, node index u16, then per operation: insert = flags u8, key length u16, key,
//! data length u32, data; replace = data length u32, data; delete = nothing; set flags = u8.

#![deny(clippy::indexing_slicing)]

use ese_core::{DbTime, Error, ErrorKind, ObjId, Pgno, Result};

use crate::page::{NodeFlags, PAGE_HEADER_LEN, TAG_LEN};

const REC_IMAGES: u8 = 1;
const REC_NODE: u8 = 2;
const REC_VERSION: u8 = 1;

/// A node change on one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeOp {
    Insert {
        idx: u16,
        flags: NodeFlags,
        key: Vec<u8>,
        data: Vec<u8>,
    },
    Replace {
        idx: u16,
        data: Vec<u8>,
    },
    Delete {
        idx: u16,
    },
    SetFlags {
        idx: u16,
        flags: NodeFlags,
    },
}

/// A decoded page record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PageRecord {
    /// Full after-images (encoded pages, `page_size` bytes each).
    Images {
        dbid: u32,
        pages: Vec<(Pgno, Vec<u8>)>,
    },
    /// One node change.
    Node {
        dbid: u32,
        pgno: Pgno,
        objid: ObjId,
        before: DbTime,
        after: DbTime,
        op: NodeOp,
    },
}

fn bad(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidLoggedOperation).with_message(format!("page record: {msg}"))
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| bad("truncated"))?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        self.take(1)?
            .first()
            .copied()
            .ok_or_else(|| bad("truncated"))
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| bad("u16"))?,
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| bad("u32"))?,
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| bad("u64"))?,
        ))
    }
}

fn head(kind: u8, dbid: u32) -> Vec<u8> {
    let mut b = vec![kind, REC_VERSION];
    b.extend_from_slice(&dbid.to_le_bytes());
    b
}

/// Encodes an images record from encoded pages.
pub(crate) fn encode_images(dbid: u32, pages: &[(Pgno, &[u8])]) -> Vec<u8> {
    let mut b = head(REC_IMAGES, dbid);
    b.extend_from_slice(&(pages.len() as u16).to_le_bytes());
    for (pgno, img) in pages {
        let ntags = img
            .get(32..34)
            .and_then(|s| s.try_into().ok())
            .map_or(0, |s| usize::from(u16::from_le_bytes(s)));
        let mic = img
            .get(36..38)
            .and_then(|s| s.try_into().ok())
            .map_or(img.len(), |s| usize::from(u16::from_le_bytes(s)));
        let lo = mic.clamp(PAGE_HEADER_LEN, img.len());
        let hi = (ntags * TAG_LEN).min(img.len() - lo);
        b.extend_from_slice(&pgno.to_bytes());
        b.extend_from_slice(&(lo as u16).to_le_bytes());
        b.extend_from_slice(&(hi as u16).to_le_bytes());
        b.extend_from_slice(img.get(..lo).unwrap_or_default());
        b.extend_from_slice(img.get(img.len() - hi..).unwrap_or_default());
    }
    b
}

/// Encodes a node record.
pub(crate) fn encode_node(
    dbid: u32,
    pgno: Pgno,
    objid: ObjId,
    before: DbTime,
    after: DbTime,
    op: &NodeOp,
) -> Vec<u8> {
    let mut b = head(REC_NODE, dbid);
    b.extend_from_slice(&pgno.to_bytes());
    b.extend_from_slice(&objid.to_bytes());
    b.extend_from_slice(&before.to_bytes());
    b.extend_from_slice(&after.to_bytes());
    match op {
        NodeOp::Insert {
            idx,
            flags,
            key,
            data,
        } => {
            b.push(1);
            b.extend_from_slice(&idx.to_le_bytes());
            b.push(flags.0);
            b.extend_from_slice(&(key.len() as u16).to_le_bytes());
            b.extend_from_slice(key);
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
        NodeOp::Replace { idx, data } => {
            b.push(2);
            b.extend_from_slice(&idx.to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
        NodeOp::Delete { idx } => {
            b.push(3);
            b.extend_from_slice(&idx.to_le_bytes());
        }
        NodeOp::SetFlags { idx, flags } => {
            b.push(4);
            b.extend_from_slice(&idx.to_le_bytes());
            b.push(flags.0);
        }
    }
    b
}

/// The dbid a page record belongs to, without decoding the rest.
///
/// # Errors
/// `InvalidLoggedOperation` if the bytes are not a page record of this format.
pub fn record_dbid(record: &[u8]) -> Result<u32> {
    let mut r = Reader { b: record, pos: 0 };
    let kind = r.u8()?;
    let ver = r.u8()?;
    if !(kind == REC_IMAGES || kind == REC_NODE) || ver != REC_VERSION {
        return Err(bad("unknown record type or version"));
    }
    r.u32()
}

/// Decodes a page record; images are expanded to `page_size` bytes.
///
/// # Errors
/// `InvalidLoggedOperation` for anything malformed.
pub(crate) fn decode(record: &[u8], page_size: usize) -> Result<PageRecord> {
    let dbid = record_dbid(record)?;
    let mut r = Reader { b: record, pos: 6 };
    let kind = record.first().copied().unwrap_or_default();
    if kind == REC_IMAGES {
        let n = r.u16()?;
        let mut pages = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let pgno = Pgno(r.u32()?);
            let lo = usize::from(r.u16()?);
            let hi = usize::from(r.u16()?);
            if lo + hi > page_size {
                return Err(bad("image larger than the page"));
            }
            let mut img = Vec::with_capacity(page_size);
            img.extend_from_slice(r.take(lo)?);
            img.resize(page_size - hi, 0);
            img.extend_from_slice(r.take(hi)?);
            pages.push((pgno, img));
        }
        return Ok(PageRecord::Images { dbid, pages });
    }
    let pgno = Pgno(r.u32()?);
    let objid = ObjId(r.u32()?);
    let before = DbTime(r.u64()?);
    let after = DbTime(r.u64()?);
    let opk = r.u8()?;
    let idx = r.u16()?;
    let op = match opk {
        1 => {
            let flags = NodeFlags(r.u8()?);
            let kl = usize::from(r.u16()?);
            let key = r.take(kl)?.to_vec();
            let dl = r.u32()? as usize;
            if dl > page_size {
                return Err(bad("data larger than the page"));
            }
            let data = r.take(dl)?.to_vec();
            NodeOp::Insert {
                idx,
                flags,
                key,
                data,
            }
        }
        2 => {
            let dl = r.u32()? as usize;
            if dl > page_size {
                return Err(bad("data larger than the page"));
            }
            NodeOp::Replace {
                idx,
                data: r.take(dl)?.to_vec(),
            }
        }
        3 => NodeOp::Delete { idx },
        4 => NodeOp::SetFlags {
            idx,
            flags: NodeFlags(r.u8()?),
        },
        _ => return Err(bad("unknown node operation")),
    };
    Ok(PageRecord::Node {
        dbid,
        pgno,
        objid,
        before,
        after,
        op,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::page::{Node, Page, PageFlags};

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let mut p = Page::new(Pgno(3), ObjId(4), PageFlags::LEAF, 0);
        p.insert_node(
            0,
            Node {
                flags: NodeFlags(0),
                key: b"k".to_vec(),
                data: b"v".to_vec(),
            },
        );
        let img = p.encode(4096).unwrap();
        let r = encode_images(9, &[(Pgno(3), &img)]);
        assert!(r.len() < 200);
        assert_eq!(
            decode(&r, 4096).unwrap(),
            PageRecord::Images {
                dbid: 9,
                pages: vec![(Pgno(3), img)]
            }
        );
        let op = NodeOp::Insert {
            idx: 2,
            flags: NodeFlags::DELETED,
            key: b"abc".to_vec(),
            data: vec![1; 10],
        };
        let r = encode_node(1, Pgno(3), ObjId(4), DbTime(5), DbTime(6), &op);
        assert!(matches!(decode(&r, 4096).unwrap(), PageRecord::Node { op: o, .. } if o == op));
        for n in 0..r.len() {
            let _ = decode(&r[..n], 4096);
        }
        assert!(decode(&[7, 1, 0, 0, 0, 0], 4096).is_err());
    }
}
