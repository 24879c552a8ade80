//! Page log records: what the page store appends to the [`Wal`](crate::Wal) for every page
//! change, and what redo reads back (ESE's physiological `lrtyp*` page records).
//!
//! Three kinds:
//! - **Node** (one page, one node change: insert, replace, delete, set flags), carrying the
//!   page's dbtime before and after, applied by redo only when the page's dbtime equals the
//!   record's "before".
//! - **Images**: after-images of whole pages. Without a doublewrite file, the first change of
//!   a page after it was last written to disk is logged as an image (torn-page protection);
//!   redo's end logs one of every page it changed.
//! - **Pages**: a multi-page operation (split, merge, new root, page allocation or release)
//!   as ONE record, so it is atomic under recovery (ESE reaches the same with a macro). Each
//!   entry is an image (a page formatted anew by the operation, or whose base on disk may be
//!   torn) or a **delta**: the page's header fields after the change and its node list built
//!   from runs of the nodes it held before and nodes given in full. A split thus logs the new
//!   page's image, but only a few runs and the separator for the page split and its parent.
//!
//! A fourth kind, **annotation-only**, changes no page: it carries only an annotation of the
//! layer above (see below) and is a no-op for redo.
//!
//! Every record may carry an **annotation**: opaque bytes of the transaction layer (undo
//! information, compensation markers) logged in the same record as the page change, so both
//! are redone or lost together ([`Tree::put`](crate::Tree::put), [`record_annotation`]).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | record type: 1 images, 2 node, 3 annotation only, 4 pages |
//! | 1 | 1 | record format version (3; 2 is read too) |
//! | 2 | 4 | dbid (which database of the instance) |
//! | 6 | 1 | 1 if an annotation follows, else 0 (always 1 for type 3) |
//! | 7 | 4 | annotation length (only if annotated; at most [`ANNOTATION_MAX`]) |
//! | 11 | n | annotation bytes |
//!
//! The body follows the header. Images body: count u16, then per page: pgno u32, head length u16, tag length u16, the page's
//! first `head` bytes (header and nodes) and its last `tag` bytes (the tag array); the hole in
//! between is zeros. An image's checksum and page-number fields (its first 8 bytes) are not
//! set by the writer (version 3): the log frame's checksum covers the record, so the page is
//! logged straight from its buffer, and redo sets them before it checks the page (a version-2
//! image has them set already, to the same values). Node body: pgno u32, objid u32, dbtime before u64, dbtime after u64,
//! operation u8, node index u16, then per operation: insert = flags u8, key length u16, key,
//! data length u32, data; replace = data length u32, data; delete = nothing; set flags = u8;
//! rewrite (replace data and set flags) = flags u8, data length u32, data. Annotation-only
//! body: empty. Pages body: count u16, then per page: pgno u32, kind u8, then for kind 1
//! (image) as one page of an images record (head length u16, tag length u16, bytes), for
//! kind 2 (delta): objid before u32, dbtime before u64, dbtime after u64, then the header
//! after: previous u32, next u32, objid u32, flags u32, level u8; tag 0 length u16 and
//! bytes; step count u16 and the steps, each copy = 0 u8, first node u16, count u16 (nodes of
//! the page before the change, in order) or node = 1 u8, flags u8, key length u16, key, data
//! length u16, data. Bytes after the body make the record malformed.

#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;

use ese_core::{DbTime, Error, ErrorKind, ObjId, Pgno, Result};

use crate::page::{LineCmp, NodeFlags, NodeRef, PAGE_HEADER_LEN, Page, PageFlags, TAG_LEN};

const REC_IMAGES: u8 = 1;
const REC_NODE: u8 = 2;
const REC_ANNOTATION: u8 = 3;
const REC_PAGES: u8 = 4;
const ENTRY_IMAGE: u8 = 1;
const ENTRY_DELTA: u8 = 2;
const STEP_COPY: u8 = 0;
const STEP_NODE: u8 = 1;
const REC_VERSION: u8 = 3;
/// The previous record format version, read too: it differs only in that images carry their
/// checksum and page number (which redo sets again, to the same values).
const REC_VERSION_2: u8 = 2;

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

/// One step of a [`Delta`]: where the next nodes of the page after the change come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeltaStep<'a> {
    /// Nodes `first..first + count` of the page before the change, in their order.
    Copy { first: u16, count: u16 },
    /// One node given in full.
    Node(NodeRef<'a>),
}

/// A page change logged as the page's header fields after it and its node list built from
/// the page before it (which must be at dbtime `before`, as for a node record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delta<'a> {
    pub(crate) pgno: Pgno,
    /// The objid the page has before the change (checked by redo).
    pub(crate) objid_before: ObjId,
    pub(crate) before: DbTime,
    pub(crate) after: DbTime,
    pub(crate) prev: Pgno,
    pub(crate) next: Pgno,
    pub(crate) objid: ObjId,
    pub(crate) flags: PageFlags,
    pub(crate) level: u8,
    /// Tag 0 after the change (the space header on the space page, else empty).
    pub(crate) ext: &'a [u8],
    pub(crate) steps: Vec<DeltaStep<'a>>,
}

impl Delta<'_> {
    /// Bytes of this entry in a pages record.
    fn encoded_len(&self) -> usize {
        5 + 4
            + 16
            + 17
            + 2
            + self.ext.len()
            + 2
            + self
                .steps
                .iter()
                .map(|s| match s {
                    DeltaStep::Copy { .. } => 5,
                    DeltaStep::Node(n) => 6 + n.key.len() + n.data.len(),
                })
                .sum::<usize>()
    }

    /// The page after the change, built from `before` (the page at dbtime `before`): a fresh
    /// layout of the same header fields, tag 0 and nodes.
    ///
    /// # Errors
    /// `LogOperationInconsistentWithDatabase` when a copied node is not on `before` or the
    /// nodes do not fit the page.
    pub(crate) fn apply(&self, before: &Page, page_size: usize) -> Result<Page> {
        let inconsistent = |m: &str| {
            Error::new(ErrorKind::LogOperationInconsistentWithDatabase)
                .with_pgno(self.pgno)
                .with_message(format!("page delta: {m}"))
        };
        let mut nodes = Vec::with_capacity(before.count() + self.steps.len());
        for step in &self.steps {
            match *step {
                DeltaStep::Copy { first, count } => {
                    let first = usize::from(first);
                    for i in first..first + usize::from(count) {
                        nodes.push(
                            before
                                .node(i)
                                .ok_or_else(|| inconsistent("copied node not on the page"))?,
                        );
                    }
                }
                DeltaStep::Node(n) => nodes.push(n),
            }
        }
        let mut p = Page::new(page_size, self.pgno, self.objid, self.flags, self.level);
        p.set_prev(self.prev);
        p.set_next(self.next);
        p.rebuild(self.ext, nodes.into_iter())
            .map_err(|_| inconsistent("nodes do not fit the page"))?;
        p.set_dbtime(self.after);
        Ok(p)
    }
}

/// One step of a page's node list after a change, as the change itself knows it (a share
/// of nodes between siblings, a split, a separator put into a parent): what [`page_delta`]
/// would find by comparing the pages, said by the code that moved the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KnownStep {
    /// Nodes `first..first + count` of the page before the change, in their order.
    Copy { first: usize, count: usize },
    /// Nodes `first..first + count` of the page after the change, given in full.
    New { first: usize, count: usize },
}

/// The steps of the nodes `from..to` of the list `before[..at]`, one new node, `before[at..]`
/// (the page's nodes with a node inserted at `at`): the node list of a page that keeps that
/// part of its overflowing content and nothing else.
pub(crate) fn known_part(at: usize, from: usize, to: usize) -> Vec<KnownStep> {
    let mut steps = Vec::with_capacity(3);
    if from < at.min(to) {
        steps.push(KnownStep::Copy {
            first: from,
            count: at.min(to) - from,
        });
    }
    if (from..to).contains(&at) {
        steps.push(KnownStep::New {
            first: at - from,
            count: 1,
        });
    }
    let after_new = from.max(at + 1);
    if after_new < to {
        steps.push(KnownStep::Copy {
            first: after_new - 1,
            count: to - after_new,
        });
    }
    steps
}

/// Known steps that do not describe the page after a change from the page before it (see
/// [`known_delta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotDescribed;

/// The delta of `steps` (see [`KnownStep`]) that turns `before` into `after`, or `None` when
/// an image of `after` is no larger.
///
/// # Errors
/// [`NotDescribed`] when the steps do not describe `after` from `before` (runs out of either
/// page, or not as many nodes as `after` holds); the caller then compares the pages with
/// [`page_delta`].
pub(crate) fn known_delta<'a>(
    before: &Page,
    after: &'a Page,
    known: &[KnownStep],
) -> std::result::Result<Option<Delta<'a>>, NotDescribed> {
    known_delta_of(
        before.objid(),
        before.dbtime(),
        before.count(),
        after,
        known,
    )
}

/// [`known_delta`] from what it reads of the page before the change: its objid, dbtime and
/// node count (for a page changed in place, whose state before is gone).
///
/// # Errors
/// As [`known_delta`].
pub(crate) fn known_delta_of<'a>(
    objid_before: ObjId,
    dbtime_before: DbTime,
    count_before: usize,
    after: &'a Page,
    known: &[KnownStep],
) -> std::result::Result<Option<Delta<'a>>, NotDescribed> {
    let mut steps = Vec::with_capacity(known.len() + 4);
    let mut made = 0usize;
    let u16_of = |n: usize| u16::try_from(n).map_err(|_| NotDescribed);
    for &k in known {
        match k {
            KnownStep::Copy { count: 0, .. } | KnownStep::New { count: 0, .. } => {}
            KnownStep::Copy { first, count } => {
                if first.saturating_add(count) > count_before {
                    return Err(NotDescribed);
                }
                steps.push(DeltaStep::Copy {
                    first: u16_of(first)?,
                    count: u16_of(count)?,
                });
                made += count;
            }
            KnownStep::New { first, count } => {
                if first != made {
                    return Err(NotDescribed);
                }
                for i in first..first.saturating_add(count) {
                    steps.push(DeltaStep::Node(after.node(i).ok_or(NotDescribed)?));
                }
                made += count;
            }
        }
    }
    if made != after.count() {
        return Err(NotDescribed);
    }
    Ok(delta_of(objid_before, dbtime_before, after, steps))
}

/// The delta of `steps` to `after` from the page of objid `objid_before` at dbtime
/// `dbtime_before`, or `None` when an image of `after` is no larger.
fn delta_of<'a>(
    objid_before: ObjId,
    dbtime_before: DbTime,
    after: &'a Page,
    steps: Vec<DeltaStep<'a>>,
) -> Option<Delta<'a>> {
    let d = Delta {
        pgno: after.pgno(),
        objid_before,
        before: dbtime_before,
        after: after.dbtime(),
        prev: after.prev(),
        next: after.next(),
        objid: after.objid(),
        flags: after.flags(),
        level: after.level(),
        ext: after.ext(),
        steps,
    };
    (d.encoded_len() < PAGE_HEADER_LEN + after.used() + after.ext().len()).then_some(d)
}

/// The delta that turns `before` into `after` (see [`Delta`]), or `None` when an image of
/// `after` is no larger. The nodes both pages start and end with (compared as raw lines:
/// a split keeps a prefix, a separator goes into the middle of a parent) become copy runs;
/// between them, both node lists being in key order, one merge walk finds the nodes kept. A
/// node not found (new, changed, or a page out of order) is given in full, which is never
/// wrong, only longer.
pub(crate) fn page_delta<'a>(before: &Page, after: &'a Page) -> Option<Delta<'a>> {
    /// Adds nodes `from..from + n` of the page before to the steps, extending the last copy
    /// run when it ends at `from` (a page holds fewer than 65,536 nodes).
    fn copy_run(steps: &mut Vec<DeltaStep<'_>>, from: usize, n: usize) -> Option<()> {
        if n == 0 {
            return Some(());
        }
        let n16 = u16::try_from(n).ok()?;
        match steps.last_mut() {
            Some(DeltaStep::Copy { first, count })
                if usize::from(*first) + usize::from(*count) == from =>
            {
                *count = count.checked_add(n16)?;
            }
            _ => steps.push(DeltaStep::Copy {
                first: u16::try_from(from).ok()?,
                count: n16,
            }),
        }
        Some(())
    }
    let copy = |steps: &mut Vec<DeltaStep<'_>>, j: usize| copy_run(steps, j, 1);
    let (nb, na) = (before.count(), after.count());
    let mut steps: Vec<DeltaStep<'a>> = Vec::new();
    // Only the header changed (a split's sibling, whose link to its neighbour moved): every
    // node is kept, found with one comparison of the bodies instead of line by line.
    let (pre, suf, lines) = if nb == na && before.same_body(after) {
        (na, 0, None)
    } else {
        let lines = LineCmp::new(before, after);
        let pre = lines.common_prefix();
        (pre, lines.common_suffix(pre), Some(lines))
    };
    copy_run(&mut steps, 0, pre)?;
    let mut j = pre;
    for i in pre..na - suf {
        let a = after.node(i)?;
        while j < nb - suf && before.key(j) < a.key {
            j += 1;
        }
        if j < nb - suf && lines.as_ref().is_some_and(|l| l.eq(j, i)) {
            copy(&mut steps, j)?;
            j += 1;
        } else {
            steps.push(DeltaStep::Node(a));
        }
    }
    copy_run(&mut steps, nb - suf, suf)?;
    delta_of(before.objid(), before.dbtime(), after, steps)
}

/// One entry of a pages record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PageChange<'a> {
    /// The page's after-image (`page_size` bytes once decoded): the page's bytes, whose
    /// checksum and page-number fields redo sets (see the module notes).
    Image(Pgno, Cow<'a, [u8]>),
    /// The page's change as a delta from its state before.
    Delta(Delta<'a>),
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
    /// A multi-page change: images and deltas.
    Pages {
        dbid: u32,
        pages: Vec<PageChange<'a>>,
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

/// The common header of a record up to the annotation's bytes (type, version, dbid,
/// annotation flag and length): the bytes and how many of them are used.
fn head_bytes(kind: u8, dbid: u32, annotation: Option<&[u8]>) -> ([u8; 11], usize) {
    let (mut h, mut n) = ([0u8; 11], 0);
    push_into(&mut h, &mut n, &[kind, REC_VERSION]);
    push_into(&mut h, &mut n, &dbid.to_le_bytes());
    match annotation {
        Some(a) => {
            push_into(&mut h, &mut n, &[1]);
            push_into(&mut h, &mut n, &(a.len() as u32).to_le_bytes());
        }
        None => push_into(&mut h, &mut n, &[0]),
    }
    (h, n)
}

/// A record's buffer holding its common header and annotation, with room for `body` bytes.
fn head(kind: u8, dbid: u32, annotation: Option<&[u8]>, body: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(record_len(annotation, body));
    let (h, n) = head_bytes(kind, dbid, annotation);
    b.extend_from_slice(h.get(..n).unwrap_or_default());
    b.extend_from_slice(annotation.unwrap_or_default());
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
    let body = pages.iter().map(|(_, p)| 4 + image_len(p)).sum::<usize>() + 2;
    let mut b = head(REC_IMAGES, dbid, annotation, body);
    b.extend_from_slice(&(pages.len() as u16).to_le_bytes());
    for (pgno, img) in pages {
        b.extend_from_slice(&pgno.to_bytes());
        put_image(&mut b, img);
    }
    debug_assert_eq!(b.len(), record_len(annotation, body), "size computed ahead");
    b
}

/// The head and tag lengths of an encoded page image: the bytes up to the end of the node
/// area and the tag array (the hole between them, all zeros, is left out of the log).
fn image_parts(img: &[u8]) -> (usize, usize) {
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
    (lo, hi)
}

/// Bytes [`put_image`] appends for `img`.
fn image_len(img: &[u8]) -> usize {
    let (lo, hi) = image_parts(img);
    4 + lo + hi
}

/// Appends an encoded page as head length, tag length and those bytes (see [`image_parts`]).
fn put_image(b: &mut Vec<u8>, img: &[u8]) {
    let (lo, hi) = image_parts(img);
    b.extend_from_slice(&(lo as u16).to_le_bytes());
    b.extend_from_slice(&(hi as u16).to_le_bytes());
    b.extend_from_slice(img.get(..lo).unwrap_or_default());
    b.extend_from_slice(img.get(img.len() - hi..).unwrap_or_default());
}

/// Encodes a pages record (images and deltas of one multi-page operation).
pub(crate) fn encode_pages(
    dbid: u32,
    pages: &[PageChange<'_>],
    annotation: Option<&[u8]>,
) -> Vec<u8> {
    let body = pages
        .iter()
        .map(|c| match c {
            PageChange::Image(_, img) => 5 + image_len(img),
            PageChange::Delta(d) => d.encoded_len(),
        })
        .sum::<usize>()
        + 2;
    let mut b = head(REC_PAGES, dbid, annotation, body);
    b.extend_from_slice(&(pages.len() as u16).to_le_bytes());
    for c in pages {
        match c {
            PageChange::Image(pgno, img) => {
                b.extend_from_slice(&pgno.to_bytes());
                b.push(ENTRY_IMAGE);
                put_image(&mut b, img);
            }
            PageChange::Delta(d) => {
                b.extend_from_slice(&d.pgno.to_bytes());
                b.push(ENTRY_DELTA);
                b.extend_from_slice(&d.objid_before.to_bytes());
                b.extend_from_slice(&d.before.to_bytes());
                b.extend_from_slice(&d.after.to_bytes());
                b.extend_from_slice(&d.prev.to_bytes());
                b.extend_from_slice(&d.next.to_bytes());
                b.extend_from_slice(&d.objid.to_bytes());
                b.extend_from_slice(&d.flags.0.to_le_bytes());
                b.push(d.level);
                b.extend_from_slice(&(d.ext.len() as u16).to_le_bytes());
                b.extend_from_slice(d.ext);
                b.extend_from_slice(&(d.steps.len() as u16).to_le_bytes());
                for step in &d.steps {
                    match step {
                        DeltaStep::Copy { first, count } => {
                            b.push(STEP_COPY);
                            b.extend_from_slice(&first.to_le_bytes());
                            b.extend_from_slice(&count.to_le_bytes());
                        }
                        DeltaStep::Node(n) => {
                            b.push(STEP_NODE);
                            b.push(n.flags.0);
                            b.extend_from_slice(&(n.key.len() as u16).to_le_bytes());
                            b.extend_from_slice(n.key);
                            b.extend_from_slice(&(n.data.len() as u16).to_le_bytes());
                            b.extend_from_slice(n.data);
                        }
                    }
                }
            }
        }
    }
    debug_assert_eq!(b.len(), record_len(annotation, body), "size computed ahead");
    b
}

/// Bytes of a record whose body after [`head`] is `body` bytes.
fn record_len(annotation: Option<&[u8]>, body: usize) -> usize {
    7 + annotation.map_or(0, |a| 4 + a.len()) + body
}

/// Encodes a node record (the pieces of [`node_parts`] put together).
#[cfg(test)]
pub(crate) fn encode_node(
    dbid: u32,
    pgno: Pgno,
    objid: ObjId,
    before: DbTime,
    after: DbTime,
    op: &NodeOp<'_>,
    annotation: Option<&[u8]>,
) -> Vec<u8> {
    node_parts(dbid, pgno, objid, before, after, op, annotation)
        .parts()
        .concat()
}

/// A node record in pieces that borrow the annotation, the key and the data, for a log that
/// frames the pieces as they are ([`Wal::append_parts`](crate::wal::Wal::append_parts)): the
/// record is not put together first. The pieces in order are a node record's bytes.
pub(crate) struct NodeParts<'a> {
    /// Type, version, dbid, annotation flag and length.
    head: [u8; 11],
    head_len: usize,
    annotation: &'a [u8],
    /// Page, objid, dbtimes, operation and its fixed fields, up to the key length.
    fixed: [u8; 32],
    fixed_len: usize,
    key: &'a [u8],
    /// The data length, when the operation has data.
    data_len: [u8; 4],
    data_len_len: usize,
    data: &'a [u8],
}

impl NodeParts<'_> {
    /// The pieces, in order (some may be empty).
    pub(crate) fn parts(&self) -> [&[u8]; 6] {
        [
            self.head.get(..self.head_len).unwrap_or_default(),
            self.annotation,
            self.fixed.get(..self.fixed_len).unwrap_or_default(),
            self.key,
            self.data_len.get(..self.data_len_len).unwrap_or_default(),
            self.data,
        ]
    }
}

// The fixed fields of the largest operation (an insert) fit `NodeParts::fixed`.
const _: () = assert!(
    Pgno::ENCODED_LEN + ObjId::ENCODED_LEN + 2 * DbTime::ENCODED_LEN + 6 <= 32,
    "NodeParts::fixed is too small"
);

/// Appends `bytes` to the first `*len` bytes of `buf` (the arrays of [`NodeParts`] and
/// [`head_bytes`] are sized for every record).
fn push_into(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(*len..*len + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    *len += bytes.len();
}

/// A node record (the change `op` of page `pgno` of tree `objid`, from dbtime `before` to
/// `after`) as pieces.
pub(crate) fn node_parts<'a>(
    dbid: u32,
    pgno: Pgno,
    objid: ObjId,
    before: DbTime,
    after: DbTime,
    op: &NodeOp<'a>,
    annotation: Option<&'a [u8]>,
) -> NodeParts<'a> {
    let (head, head_len) = head_bytes(REC_NODE, dbid, annotation);
    let mut n = NodeParts {
        head,
        head_len,
        annotation: annotation.unwrap_or_default(),
        fixed: [0; 32],
        fixed_len: 0,
        key: &[],
        data_len: [0; 4],
        data_len_len: 0,
        data: &[],
    };
    let f = &mut n.fixed;
    let fl = &mut n.fixed_len;
    push_into(f, fl, &pgno.to_bytes());
    push_into(f, fl, &objid.to_bytes());
    push_into(f, fl, &before.to_bytes());
    push_into(f, fl, &after.to_bytes());
    let data = match op {
        NodeOp::Insert {
            idx,
            flags,
            key,
            data,
        } => {
            push_into(f, fl, &[1]);
            push_into(f, fl, &idx.to_le_bytes());
            push_into(f, fl, &[flags.0]);
            push_into(f, fl, &(key.len() as u16).to_le_bytes());
            n.key = key;
            Some(*data)
        }
        NodeOp::Replace { idx, data } => {
            push_into(f, fl, &[2]);
            push_into(f, fl, &idx.to_le_bytes());
            Some(*data)
        }
        NodeOp::Delete { idx } => {
            push_into(f, fl, &[3]);
            push_into(f, fl, &idx.to_le_bytes());
            None
        }
        NodeOp::SetFlags { idx, flags } => {
            push_into(f, fl, &[4]);
            push_into(f, fl, &idx.to_le_bytes());
            push_into(f, fl, &[flags.0]);
            None
        }
        NodeOp::Rewrite { idx, flags, data } => {
            push_into(f, fl, &[5]);
            push_into(f, fl, &idx.to_le_bytes());
            push_into(f, fl, &[flags.0]);
            Some(*data)
        }
    };
    if let Some(d) = data {
        push_into(
            &mut n.data_len,
            &mut n.data_len_len,
            &(d.len() as u32).to_le_bytes(),
        );
        n.data = d;
    }
    n
}

/// Reads the common header: (type, dbid, annotation) and leaves the reader at the body.
fn read_head<'a>(r: &mut Reader<'a>) -> Result<(u8, u32, Option<&'a [u8]>)> {
    let kind = r.u8()?;
    let ver = r.u8()?;
    if !matches!(kind, REC_IMAGES | REC_NODE | REC_ANNOTATION | REC_PAGES)
        || !matches!(ver, REC_VERSION | REC_VERSION_2)
    {
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
        REC_PAGES => {
            read_pages(&mut r, None)?;
        }
        _ => {}
    }
    r.end()?;
    Ok(annotation)
}

/// Reads the body of a pages record. With `page_size`, images are expanded to whole pages
/// and every length is checked against it; without, images are skipped (empty).
fn read_pages<'a>(r: &mut Reader<'a>, page_size: Option<usize>) -> Result<Vec<PageChange<'a>>> {
    let max = page_size.unwrap_or(usize::from(u16::MAX));
    let n = r.u16()?;
    let mut pages = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let pgno = Pgno(r.u32()?);
        match r.u8()? {
            ENTRY_IMAGE => {
                let lo = usize::from(r.u16()?);
                let hi = usize::from(r.u16()?);
                if lo + hi > max {
                    return Err(bad("image larger than the page"));
                }
                let (head, tags) = (r.take(lo)?, r.take(hi)?);
                let mut img = Vec::new();
                if let Some(ps) = page_size {
                    img.reserve(ps);
                    img.extend_from_slice(head);
                    img.resize(ps - hi, 0);
                    img.extend_from_slice(tags);
                }
                pages.push(PageChange::Image(pgno, Cow::Owned(img)));
            }
            ENTRY_DELTA => {
                let objid_before = ObjId(r.u32()?);
                let before = DbTime(r.u64()?);
                let after = DbTime(r.u64()?);
                let prev = Pgno(r.u32()?);
                let next = Pgno(r.u32()?);
                let objid = ObjId(r.u32()?);
                let flags = PageFlags(r.u32()?);
                let level = r.u8()?;
                let el = usize::from(r.u16()?);
                if el > max {
                    return Err(bad("tag 0 larger than the page"));
                }
                let ext = r.take(el)?;
                let ns = r.u16()?;
                let mut steps = Vec::with_capacity(usize::from(ns).min(512));
                for _ in 0..ns {
                    steps.push(match r.u8()? {
                        STEP_COPY => DeltaStep::Copy {
                            first: r.u16()?,
                            count: r.u16()?,
                        },
                        STEP_NODE => {
                            let flags = NodeFlags(r.u8()?);
                            let kl = usize::from(r.u16()?);
                            let key = r.take(kl)?;
                            let dl = usize::from(r.u16()?);
                            if kl + dl > max {
                                return Err(bad("node larger than the page"));
                            }
                            DeltaStep::Node(NodeRef {
                                flags,
                                key,
                                data: r.take(dl)?,
                            })
                        }
                        _ => return Err(bad("unknown delta step")),
                    });
                }
                pages.push(PageChange::Delta(Delta {
                    pgno,
                    objid_before,
                    before,
                    after,
                    prev,
                    next,
                    objid,
                    flags,
                    level,
                    ext,
                    steps,
                }));
            }
            _ => return Err(bad("unknown page entry kind")),
        }
    }
    Ok(pages)
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
        REC_PAGES => PageRecord::Pages {
            dbid,
            pages: read_pages(&mut r, Some(page_size))?,
        },
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
        assert_eq!(
            decode(&r, 4096).unwrap(),
            PageRecord::Node {
                dbid: 1,
                pgno: Pgno(3),
                objid: ObjId(4),
                before: DbTime(5),
                after: DbTime(6),
                op,
            }
        );
        for n in 0..r.len() {
            assert!(decode(&r[..n], 4096).is_err());
            assert!(record_annotation(&r[..n]).is_err());
        }
        assert!(decode(&[7, 1, 0, 0, 0, 0], 4096).is_err());
        // Version 2 records are read too; other versions are refused.
        let mut v = r.clone();
        v[1] = 2;
        assert!(decode(&v, 4096).is_ok());
        v[1] = 4;
        assert!(decode(&v, 4096).is_err());
        v[1] = 1;
        assert!(decode(&v, 4096).is_err());
        let mut long = r.clone();
        long.push(0);
        assert!(decode(&long, 4096).is_err());
        assert!(record_annotation(&long).is_err());
    }

    #[test]
    fn page_deltas_rebuild_the_page_and_pages_records_round_trip() {
        // A page of 40 nodes; after: the first 25 kept, one replaced, a new one inserted,
        // new sibling link (a split's left page and a parent's separator in one).
        let mut before = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        for i in 0u8..40 {
            assert!(before.insert_node(usize::from(i), NodeFlags(0), &[b'k', i], &[i; 60]));
        }
        before.set_dbtime(DbTime(10));
        let mut after = before.clone();
        for i in (25..40).rev() {
            assert!(after.remove_node(i));
        }
        assert!(after.replace_data(3, b"changed"));
        assert!(after.insert_node(10, NodeFlags::DELETED, &[b'k', 9, 5], b"new"));
        after.set_next(Pgno(99));
        after.set_dbtime(DbTime(11));
        let d = page_delta(&before, &after).unwrap();
        assert_eq!(d.steps.len(), 5, "{:?}", d.steps);
        let redone = d.apply(&before, 4096).unwrap();
        assert!(redone.nodes().eq(after.nodes()));
        assert_eq!((redone.next(), redone.dbtime()), (Pgno(99), DbTime(11)));
        // A fresh page's image and the delta in one record, with an annotation.
        let fresh = Page::new(4096, Pgno(8), ObjId(4), PageFlags::LEAF, 0).sealed();
        let changes = vec![
            PageChange::Image(Pgno(8), Cow::Owned(fresh.clone())),
            PageChange::Delta(d.clone()),
        ];
        let r = encode_pages(3, &changes, Some(b"ann"));
        assert!(r.len() < 300, "{} bytes", r.len());
        assert_eq!(record_annotation(&r).unwrap(), Some(b"ann".as_slice()));
        assert_eq!(
            decode(&r, 4096).unwrap(),
            PageRecord::Pages {
                dbid: 3,
                pages: changes
            }
        );
        for n in 0..r.len() {
            assert!(decode(&r[..n], 4096).is_err());
            assert!(record_annotation(&r[..n]).is_err());
        }
        // Applied to a page without the copied nodes: inconsistent, not a panic.
        let short = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        assert_eq!(
            d.apply(&short, 4096).unwrap_err().kind(),
            ErrorKind::LogOperationInconsistentWithDatabase
        );
        // An unchanged-but-rewritten page whose delta is no smaller than its image: none.
        let mut other = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        assert!(other.insert_node(0, NodeFlags(0), b"z", &[1; 100]));
        assert!(page_delta(&before, &other).is_none());
    }

    #[test]
    fn known_steps_rebuild_the_page_and_wrong_ones_are_refused() {
        // A leaf of 20 nodes overflowed by a new node at 7; it keeps the first 12 of the 21
        // (the new one included), the rest move to a sibling.
        let mut before = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        for i in 0u8..20 {
            let key = [b'k', i * 2];
            assert!(before.insert_node(usize::from(i), NodeFlags(0), &key, &[i; 60]));
        }
        before.set_dbtime(DbTime(10));
        let mut after = before.clone();
        for i in (11..20).rev() {
            assert!(after.remove_node(i));
        }
        assert!(after.insert_node(7, NodeFlags(0), &[b'k', 13], b"new"));
        after.set_dbtime(DbTime(11));
        let steps = known_part(7, 0, 12);
        assert_eq!(
            steps,
            vec![
                KnownStep::Copy { first: 0, count: 7 },
                KnownStep::New { first: 7, count: 1 },
                KnownStep::Copy { first: 7, count: 4 },
            ]
        );
        let d = known_delta(&before, &after, &steps).unwrap().unwrap();
        let redone = d.apply(&before, 4096).unwrap();
        assert!(redone.nodes().eq(after.nodes()));
        assert_eq!(redone.dbtime(), DbTime(11));
        // The right part of the same list: the nodes from 12 on, all of the page's own.
        assert_eq!(
            known_part(7, 12, 21),
            vec![KnownStep::Copy {
                first: 11,
                count: 9
            }]
        );
        // The part that starts with the new node.
        assert_eq!(
            known_part(7, 7, 10),
            vec![
                KnownStep::New { first: 0, count: 1 },
                KnownStep::Copy { first: 7, count: 2 },
            ]
        );
        // Steps that do not add up to the page after, or copy past the page before, are
        // refused (the caller compares the pages instead).
        assert_eq!(
            known_delta(&before, &after, &known_part(7, 0, 11)).unwrap_err(),
            NotDescribed
        );
        let past = [KnownStep::Copy {
            first: 15,
            count: 12,
        }];
        assert!(known_delta(&before, &after, &past).is_err());
        let misplaced = [
            KnownStep::New { first: 3, count: 1 },
            KnownStep::Copy {
                first: 0,
                count: 11,
            },
        ];
        assert!(known_delta(&before, &after, &misplaced).is_err());
    }

    #[test]
    fn a_header_only_change_is_one_copy_run() {
        // A split's sibling: only its link and dbtime change.
        let mut before = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        for i in 0u8..30 {
            assert!(before.insert_node(usize::from(i), NodeFlags(0), &[b'k', i], &[i; 50]));
        }
        before.set_dbtime(DbTime(10));
        let mut after = before.clone();
        after.set_prev(Pgno(41));
        after.set_dbtime(DbTime(12));
        assert!(before.same_body(&after));
        let d = page_delta(&before, &after).unwrap();
        assert_eq!(
            d.steps,
            vec![DeltaStep::Copy {
                first: 0,
                count: 30
            }]
        );
        let redone = d.apply(&before, 4096).unwrap();
        assert!(redone.nodes().eq(after.nodes()));
        assert_eq!((redone.prev(), redone.dbtime()), (Pgno(41), DbTime(12)));
        // One byte of a node changed: the bodies differ, and the general walk finds it.
        let mut changed = after.clone();
        assert!(changed.replace_data(29, &[9; 50]));
        assert!(!before.same_body(&changed));
        let d = page_delta(&before, &changed).unwrap();
        assert!(d.apply(&before, 4096).unwrap().nodes().eq(changed.nodes()));
        assert_eq!(d.steps.len(), 2, "{:?}", d.steps);
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
