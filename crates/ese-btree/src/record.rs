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
//! A third kind, **annotation-only**, changes no page: it carries only an annotation of the
//! layer above (see below) and is a no-op for redo.
//!
//! Every record may carry an **annotation**: opaque bytes of the transaction layer (undo
//! information, compensation markers) logged in the same record as the page change, so both
//! are redone or lost together ([`Tree::put`](crate::Tree::put), [`record_annotation`]).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | record type: 1 images, 2 node, 3 annotation only |
//! | 1 | 1 | record format version (2) |
//! | 2 | 4 | dbid (which database of the instance) |
//! | 6 | 1 | 1 if an annotation follows, else 0 (always 1 for type 3) |
//! | 7 | 4 | annotation length (only if annotated; at most [`ANNOTATION_MAX`]) |
//! | 11 | n | annotation bytes |
//!
//! The body follows the header. Images body: count u16, then per page: pgno u32, head length u16, tag length u16, the page's
//! first `head` bytes (header and nodes) and its last `tag` bytes (the tag array); the hole in
//! between is zeros. Node body: pgno u32, objid u32, dbtime before u64, dbtime after u64,
//! operation u8, node index u16, then per operation: insert = flags u8, key length u16, key,
//! data length u32, data; replace = data length u32, data; delete = nothing; set flags = u8;
//! rewrite (replace data and set flags) = flags u8, data length u32, data. Annotation-only
//! body: empty. Bytes after the body make the record malformed.

#![deny(clippy::indexing_slicing)]

use ese_core::{DbTime, Error, ErrorKind, ObjId, Pgno, Result};

use crate::page::{NodeFlags, PAGE_HEADER_LEN, TAG_LEN};

const REC_IMAGES: u8 = 1;
const REC_NODE: u8 = 2;
const REC_ANNOTATION: u8 = 3;
const REC_VERSION: u8 = 2;

/// The longest annotation a record carries, in bytes (64 KiB): room for the transaction
/// layer's undo information of the largest record (key + data below the 32 KiB page size)
/// with ample margin, while bounding what a damaged length field can make a reader allocate.
pub const ANNOTATION_MAX: usize = 64 << 10;

/// A node change on one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeOp<'a> {
    Insert {
        idx: u16,
        flags: NodeFlags,
        key: &'a [u8],
        data: &'a [u8],
    },
    Replace {
        idx: u16,
        data: &'a [u8],
    },
    Delete {
        idx: u16,
    },
    SetFlags {
        idx: u16,
        flags: NodeFlags,
    },
    /// Replace the data and set the flags in one step.
    Rewrite {
        idx: u16,
        flags: NodeFlags,
        data: &'a [u8],
    },
}

/// A decoded page record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PageRecord<'a> {
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
        op: NodeOp<'a>,
    },
    /// Only an annotation: no page changes.
    Annotation { dbid: u32 },
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
    fn end(&self) -> Result<()> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(bad("bytes after the end of the record"))
        }
    }
}

fn head(kind: u8, dbid: u32, annotation: Option<&[u8]>, body: usize) -> Vec<u8> {
    let alen = annotation.map_or(0, |a| 4 + a.len());
    let mut b = Vec::with_capacity(7 + alen + body);
    b.push(kind);
    b.push(REC_VERSION);
    b.extend_from_slice(&dbid.to_le_bytes());
    match annotation {
        Some(a) => {
            b.push(1);
            b.extend_from_slice(&(a.len() as u32).to_le_bytes());
            b.extend_from_slice(a);
        }
        None => b.push(0),
    }
    b
}

/// Encodes an annotation-only record.
pub(crate) fn encode_annotation(dbid: u32, annotation: &[u8]) -> Vec<u8> {
    head(REC_ANNOTATION, dbid, Some(annotation), 0)
}

/// Encodes an images record from encoded pages.
pub(crate) fn encode_images(
    dbid: u32,
    pages: &[(Pgno, &[u8])],
    annotation: Option<&[u8]>,
) -> Vec<u8> {
    let body = pages.iter().map(|(_, p)| p.len() / 2 + 8).sum::<usize>() + 2;
    let mut b = head(REC_IMAGES, dbid, annotation, body);
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
    op: &NodeOp<'_>,
    annotation: Option<&[u8]>,
) -> Vec<u8> {
    let body = 40
        + match op {
            NodeOp::Insert { key, data, .. } => key.len() + data.len(),
            NodeOp::Replace { data, .. } | NodeOp::Rewrite { data, .. } => data.len(),
            NodeOp::Delete { .. } | NodeOp::SetFlags { .. } => 0,
        };
    let mut b = head(REC_NODE, dbid, annotation, body);
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
        NodeOp::Rewrite { idx, flags, data } => {
            b.push(5);
            b.extend_from_slice(&idx.to_le_bytes());
            b.push(flags.0);
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
    }
    b
}

/// Reads the common header: (type, dbid, annotation) and leaves the reader at the body.
fn read_head<'a>(r: &mut Reader<'a>) -> Result<(u8, u32, Option<&'a [u8]>)> {
    let kind = r.u8()?;
    let ver = r.u8()?;
    if !matches!(kind, REC_IMAGES | REC_NODE | REC_ANNOTATION) || ver != REC_VERSION {
        return Err(bad("unknown record type or version"));
    }
    let dbid = r.u32()?;
    let annotation = match r.u8()? {
        0 if kind != REC_ANNOTATION => None,
        1 => {
            let n = r.u32()? as usize;
            if n > ANNOTATION_MAX {
                return Err(bad("annotation longer than the maximum"));
            }
            Some(r.take(n)?)
        }
        _ => return Err(bad("bad annotation flag")),
    };
    Ok((kind, dbid, annotation))
}

/// The dbid a page record belongs to, without decoding the rest.
///
/// # Errors
/// `InvalidLoggedOperation` if the bytes are not a page record of this format.
pub fn record_dbid(record: &[u8]) -> Result<u32> {
    let mut r = Reader { b: record, pos: 0 };
    Ok(read_head(&mut r)?.1)
}

/// The annotation carried by a page record ([`Tree::put`](crate::Tree::put)): `Ok(None)` for
/// a record without one. The whole record is checked, as redo checks it (without the page
/// size, which only redo knows), so a record this accepts differs from one redo accepts only
/// by a page image or data larger than the page.
///
/// # Errors
/// `InvalidLoggedOperation` if the bytes are not a well-formed page record of this format.
pub fn record_annotation(record: &[u8]) -> Result<Option<&[u8]>> {
    let mut r = Reader { b: record, pos: 0 };
    let (kind, _, annotation) = read_head(&mut r)?;
    match kind {
        REC_IMAGES => {
            let n = r.u16()?;
            for _ in 0..n {
                r.u32()?;
                let lo = usize::from(r.u16()?);
                let hi = usize::from(r.u16()?);
                r.take(lo)?;
                r.take(hi)?;
            }
        }
        REC_NODE => {
            r.take(24)?;
            read_op(&mut r, usize::MAX)?;
        }
        _ => {}
    }
    r.end()?;
    Ok(annotation)
}

/// Reads a node operation (op byte onwards); data longer than `max_data` is malformed.
fn read_op<'a>(r: &mut Reader<'a>, max_data: usize) -> Result<NodeOp<'a>> {
    let opk = r.u8()?;
    let idx = r.u16()?;
    let data = |r: &mut Reader<'a>| -> Result<&'a [u8]> {
        let dl = r.u32()? as usize;
        if dl > max_data {
            return Err(bad("data larger than the page"));
        }
        r.take(dl)
    };
    Ok(match opk {
        1 => {
            let flags = NodeFlags(r.u8()?);
            let kl = usize::from(r.u16()?);
            let key = r.take(kl)?;
            NodeOp::Insert {
                idx,
                flags,
                key,
                data: data(r)?,
            }
        }
        2 => NodeOp::Replace {
            idx,
            data: data(r)?,
        },
        3 => NodeOp::Delete { idx },
        4 => NodeOp::SetFlags {
            idx,
            flags: NodeFlags(r.u8()?),
        },
        5 => {
            let flags = NodeFlags(r.u8()?);
            NodeOp::Rewrite {
                idx,
                flags,
                data: data(r)?,
            }
        }
        _ => return Err(bad("unknown node operation")),
    })
}

/// Decodes a page record; images are expanded to `page_size` bytes.
///
/// # Errors
/// `InvalidLoggedOperation` for anything malformed.
pub(crate) fn decode(record: &[u8], page_size: usize) -> Result<PageRecord<'_>> {
    let mut r = Reader { b: record, pos: 0 };
    let (kind, dbid, _) = read_head(&mut r)?;
    let rec = match kind {
        REC_IMAGES => {
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
            PageRecord::Images { dbid, pages }
        }
        REC_NODE => {
            let pgno = Pgno(r.u32()?);
            let objid = ObjId(r.u32()?);
            let before = DbTime(r.u64()?);
            let after = DbTime(r.u64()?);
            let op = read_op(&mut r, page_size)?;
            PageRecord::Node {
                dbid,
                pgno,
                objid,
                before,
                after,
                op,
            }
        }
        _ => PageRecord::Annotation { dbid },
    };
    r.end()?;
    Ok(rec)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::page::{Page, PageFlags};

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let mut p = Page::new(4096, Pgno(3), ObjId(4), PageFlags::LEAF, 0);
        assert!(p.insert_node(0, NodeFlags(0), b"k", b"v"));
        let img = p.sealed();
        let r = encode_images(9, &[(Pgno(3), &img)], None);
        assert!(r.len() < 200);
        assert_eq!(record_annotation(&r).unwrap(), None);
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
            key: b"abc",
            data: &[1; 10],
        };
        let r = encode_node(1, Pgno(3), ObjId(4), DbTime(5), DbTime(6), &op, None);
        assert!(matches!(decode(&r, 4096).unwrap(), PageRecord::Node { op: o, .. } if o == op));
        for n in 0..r.len() {
            assert!(decode(&r[..n], 4096).is_err());
            assert!(record_annotation(&r[..n]).is_err());
        }
        assert!(decode(&[7, 1, 0, 0, 0, 0], 4096).is_err());
        let mut long = r.clone();
        long.push(0);
        assert!(decode(&long, 4096).is_err());
        assert!(record_annotation(&long).is_err());
    }

    #[test]
    fn annotations_ride_in_every_record_kind() {
        let ann: &[u8] = b"undo: restore 17 bytes";
        let img = Page::new(4096, Pgno(3), ObjId(4), PageFlags::LEAF, 0).sealed();
        let ops = [
            NodeOp::Rewrite {
                idx: 1,
                flags: NodeFlags::DELETED,
                data: &[3; 7],
            },
            NodeOp::Delete { idx: 0 },
            NodeOp::SetFlags {
                idx: 4,
                flags: NodeFlags::VERSIONED,
            },
        ];
        let mut recs = vec![
            encode_images(2, &[(Pgno(3), &img), (Pgno(3), &img)], Some(ann)),
            encode_annotation(2, ann),
            encode_annotation(2, b""),
        ];
        for op in &ops {
            recs.push(encode_node(
                2,
                Pgno(3),
                ObjId(4),
                DbTime(5),
                DbTime(6),
                op,
                Some(ann),
            ));
        }
        for (i, r) in recs.iter().enumerate() {
            let want: &[u8] = if i == 2 { b"" } else { ann };
            assert_eq!(record_annotation(r).unwrap(), Some(want));
            assert_eq!(record_dbid(r).unwrap(), 2);
            let d = decode(r, 4096).unwrap();
            if i >= 3 {
                assert!(matches!(d, PageRecord::Node { op, .. } if op == ops[i - 3]));
            }
            for n in 0..r.len() {
                assert!(
                    record_annotation(&r[..n]).is_err(),
                    "prefix {n} of record {i}"
                );
                assert!(decode(&r[..n], 4096).is_err());
            }
        }
        assert_eq!(
            decode(&recs[1], 4096).unwrap(),
            PageRecord::Annotation { dbid: 2 }
        );
        // A length field over the maximum is malformed, not an allocation.
        let mut big = encode_annotation(2, b"x");
        big[7..11].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(record_annotation(&big).is_err());
        // Annotation-only records must be annotated.
        let mut bare = encode_annotation(2, b"");
        bare.truncate(7);
        bare[6] = 0;
        assert!(record_annotation(&bare).is_err());
    }
}
