//! The page format: a 40-byte page header, nodes growing up from the header, and a tag array
//! ("lines") growing down from the end of the page (ESE's `CPAGE`).
//!
//! In memory a page is kept as its raw bytes ([`Page`]), exactly as on disk: it is verified
//! once when read (checksum, then every tag and node header), and afterwards searched in place
//! (binary search over the tag array) and changed in place (a new line goes into the hole
//! between the node area and the tag array; a removed line leaves a zeroed fragment that a
//! later compaction reclaims). Only the checksum is left stale in memory; it is computed when
//! the page is written or logged. Byte tables: `docs/format-database.md`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC-32 of bytes 4..page_size, seeded with the stored page number |
//! | 4 | 4 | page number (so a page read from the wrong place fails) |
//! | 8 | 8 | dbtime of the last change |
//! | 16 | 4 | previous sibling (0 = none) |
//! | 20 | 4 | next sibling (0 = none; next free page on a free page) |
//! | 24 | 4 | objid of the tree |
//! | 28 | 4 | page flags ([`PageFlags`]) |
//! | 32 | 2 | tag count (including tag 0, the external header) |
//! | 34 | 2 | free bytes |
//! | 36 | 2 | end of the node area (`ibMicFree`) |
//! | 38 | 1 | level (0 = leaf) |
//! | 39 | 1 | reserved, 0 |

#![deny(clippy::indexing_slicing)]

use std::sync::Arc;

use crate::hints::Hints;
use crate::pagebuf::{PageBuf, SlabPool};
use ese_core::checksum::crc32_seeded;
use ese_core::hint::prefetch;
use ese_core::{DbTime, Error, ErrorKind, ObjId, Pgno, Result};

/// Size of the page header in bytes.
pub(crate) const PAGE_HEADER_LEN: usize = 40;
/// Size of one tag (cb u16, ib u16).
pub(crate) const TAG_LEN: usize = 4;
/// Per-node header: flags u8, key length u16.
pub(crate) const NODE_HEADER_LEN: usize = 3;
/// Bytes a node costs beyond its key and data: its header and its tag.
pub(crate) const NODE_OVERHEAD: usize = NODE_HEADER_LEN + TAG_LEN;

/// The page flags (ESE's `fPage*` values where ESE has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PageFlags(pub u32);

impl PageFlags {
    /// The root page of a tree (ESE `fPageRoot`).
    pub const ROOT: PageFlags = PageFlags(0x1);
    /// A leaf page (ESE `fPageLeaf`).
    pub const LEAF: PageFlags = PageFlags(0x2);
    /// An internal page whose children are leaves (ESE `fPageParentOfLeaf`).
    pub const PARENT_OF_LEAF: PageFlags = PageFlags(0x4);
    /// A free page on the free-page chain (ESE `fPageEmpty`).
    pub const EMPTY: PageFlags = PageFlags(0x8);
    /// The space page (ESE `fPageSpaceTree`).
    pub const SPACE_TREE: PageFlags = PageFlags(0x20);
    /// A page of a secondary index (ESE `fPageIndex`).
    pub const INDEX: PageFlags = PageFlags(0x40);
    /// A page of a long-value tree (ESE `fPageLongValue`).
    pub const LONG_VALUE: PageFlags = PageFlags(0x80);
    /// Every flag this format defines; others make a page corrupt.
    pub const ALL: PageFlags = PageFlags(0xEF);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set or cleared.
    #[must_use]
    pub const fn with(self, other: PageFlags, on: bool) -> PageFlags {
        if on {
            PageFlags(self.0 | other.0)
        } else {
            PageFlags(self.0 & !other.0)
        }
    }
}

/// Node flags, stored in the node's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodeFlags(pub u8);

impl NodeFlags {
    /// The node is flag-deleted (ESE `fNDDeleted`): a transaction deleted it and version
    /// cleanup will remove it physically.
    pub const DELETED: NodeFlags = NodeFlags(0x1);
    /// The node has versions in the version store (ESE `fNDVersion`).
    pub const VERSIONED: NodeFlags = NodeFlags(0x2);
    /// Every flag this format defines.
    pub const ALL: NodeFlags = NodeFlags(0x3);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: NodeFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One line of a page, owned: flags, key and data. On internal pages the data is the child's
/// page number (4 bytes, little-endian). Used where whole pages are rebuilt (splits, merges).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Node {
    pub(crate) flags: NodeFlags,
    pub(crate) key: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

impl Node {
    /// The node, borrowed.
    pub(crate) fn node_ref(&self) -> NodeRef<'_> {
        NodeRef {
            flags: self.flags,
            key: &self.key,
            data: &self.data,
        }
    }
}

/// One line of a page, borrowed from the page's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeRef<'a> {
    pub(crate) flags: NodeFlags,
    pub(crate) key: &'a [u8],
    pub(crate) data: &'a [u8],
}

impl NodeRef<'_> {
    /// Bytes this node takes on the page, tag included.
    pub(crate) fn size(&self) -> usize {
        NODE_OVERHEAD + self.key.len() + self.data.len()
    }

    pub(crate) fn to_node(self) -> Node {
        Node {
            flags: self.flags,
            key: self.key.to_vec(),
            data: self.data.to_vec(),
        }
    }
}

// Header field offsets (see the table above).
const H_PGNO: usize = 4;
const H_DBTIME: usize = 8;
const H_PREV: usize = 16;
const H_NEXT: usize = 20;
const H_OBJID: usize = 24;
const H_FLAGS: usize = 28;
const H_NTAGS: usize = 32;
const H_FREE: usize = 34;
const H_MIC: usize = 36;
const H_LEVEL: usize = 38;

/// A page held as its raw bytes, exactly as on disk except for the checksum (computed when the
/// page is written or logged). Nodes are read in place through the tag array; mutators keep
/// the invariants `decode` checks (every line inside `[40, ibMicFree)`, the free-bytes field
/// equal to what is free, the hole between the node area and the tag array all zero), so a
/// page built in memory always passes `decode`. Lines may be out of tag order and deleted
/// lines leave fragments; an insert that does not fit the hole compacts the page first.
///
/// The buffer never moves: every change, compaction and rebuild included, rewrites it in
/// place, and [`Page::copy_from`] copies another page's bytes into it. A cached frame's
/// buffer address is therefore fixed for the frame's life (the page table prefetches it).
pub(crate) struct Page {
    pgno: Pgno,
    /// The bytes; changed only through [`Page::buf_mut`], which resets `hints`, or in the
    /// page header through [`Page::bytes_mut`].
    buf: PageBuf,
    hints: Hints,
}

impl Page {
    /// Where the search hints are within a `Page` value, in bytes.
    pub(crate) const HINTS_OFFSET: usize = std::mem::offset_of!(Page, hints);
}

impl Clone for Page {
    /// A copy of the bytes; the copy starts without search hints.
    fn clone(&self) -> Page {
        Page {
            pgno: self.pgno,
            buf: self.buf.clone(),
            hints: Hints::default(),
        }
    }
}

impl PartialEq for Page {
    /// Equal page numbers and bytes (the search hints are not the page's content).
    fn eq(&self, other: &Page) -> bool {
        self.pgno == other.pgno && self.buf == other.buf
    }
}

impl Eq for Page {}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("pgno", &self.pgno)
            .field("dbtime", &self.dbtime())
            .field("objid", &self.objid())
            .field("flags", &self.flags())
            .field("level", &self.level())
            .field("nodes", &self.count())
            .field("free", &self.free())
            .finish_non_exhaustive()
    }
}

fn corrupt(kind: ErrorKind, pgno: Pgno, msg: impl Into<String>) -> Error {
    Error::new(kind).with_pgno(pgno).with_message(msg)
}

fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn rd_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The keys of a page, for binary search: the tag array of the nodes, decoded once into
/// 4-byte entries, and the page bytes.
///
/// Each key costs four length checks (the tag, the line, its node header, the key) and no
/// fallible conversion: a tag is a `[u8; 4]`, its fields are read by destructuring, and the
/// search key's first 8 bytes are decoded once per search ([`Probe`]). The checks
/// stay (a page is verified when read, but the search must not panic whatever the bytes), and
/// a failed one gives an empty key, which only misorders a search of a corrupt page.
struct Keys<'a> {
    buf: &'a [u8],
    /// Tags `ntags - 1` down to 1 (the tag array without tag 0, lowest address first): node
    /// `i` (tag `i + 1`) is entry `count - 1 - i`.
    tags: &'a [[u8; TAG_LEN]],
}

impl<'a> Keys<'a> {
    #[inline]
    fn len(&self) -> usize {
        self.tags.len()
    }

    /// The line (node header, key, data) of node `i`; empty if out of range.
    #[inline]
    fn line(&self, i: usize) -> &'a [u8] {
        let Some(&[cb0, cb1, ib0, ib1]) = self.tags.get(self.tags.len().wrapping_sub(i + 1)) else {
            return &[];
        };
        let (cb, ib) = (
            usize::from(u16::from_le_bytes([cb0, cb1])),
            usize::from(u16::from_le_bytes([ib0, ib1])),
        );
        self.buf.get(ib..ib + cb).unwrap_or_default()
    }

    /// The child page of internal node `i` (its data: 4 bytes).
    #[inline]
    fn child(&self, i: usize) -> Option<Pgno> {
        let ([_, k0, k1], rest) = self.line(i).split_first_chunk::<NODE_HEADER_LEN>()?;
        let data = rest.get(usize::from(u16::from_le_bytes([*k0, *k1]))..)?;
        child_pgno(data)
    }

    /// Asks the CPU for the start of node `i`'s line (its header and the first bytes of its
    /// key) ahead of a comparison; nothing if `i` is out of range.
    #[inline]
    fn prefetch(&self, i: usize) {
        if let Some(&[_, _, ib0, ib1]) = self.tags.get(self.tags.len().wrapping_sub(i + 1)) {
            let ib = usize::from(u16::from_le_bytes([ib0, ib1]));
            prefetch((self.buf.as_ptr() as usize).wrapping_add(ib));
        }
    }

    /// The order of node `i`'s key relative to a search key whose first 8 bytes are `head`
    /// (big-endian) when those 8 bytes decide it, read as one word straight from the page:
    /// a key shorter than 8 bytes (a separator, mostly) is masked to its length, as
    /// [`Probe::cmp`] pads it. `None` when they do not decide (the node's key has 8 bytes or
    /// more and starts with `head`), or when the node's header and 8 bytes would reach past
    /// the page or its key past its line: the caller then compares the whole key.
    #[inline(always)]
    #[expect(
        clippy::big_endian_bytes,
        reason = "big-endian integers compare like the bytes they are read from"
    )]
    fn head_order(&self, i: usize, head: u64) -> Option<std::cmp::Ordering> {
        /// The bytes a key of `kl < 8` bytes keeps of a big-endian word.
        const MASKS: [u64; 8] = [
            0,
            0xFF00_0000_0000_0000,
            0xFFFF_0000_0000_0000,
            0xFFFF_FF00_0000_0000,
            0xFFFF_FFFF_0000_0000,
            0xFFFF_FFFF_FF00_0000,
            0xFFFF_FFFF_FFFF_0000,
            0xFFFF_FFFF_FFFF_FF00,
        ];
        let &[cb0, cb1, ib0, ib1] = self.tags.get(self.tags.len().wrapping_sub(i + 1))?;
        let cb = usize::from(u16::from_le_bytes([cb0, cb1]));
        let ib = usize::from(u16::from_le_bytes([ib0, ib1]));
        let &[_, k0, k1, h @ ..] = self
            .buf
            .get(ib..)?
            .first_chunk::<{ NODE_HEADER_LEN + 8 }>()?;
        let kl = usize::from(u16::from_le_bytes([k0, k1]));
        if NODE_HEADER_LEN + kl > cb {
            return None;
        }
        let x = u64::from_be_bytes(h);
        match MASKS.get(kl) {
            // Shorter than 8 bytes: zero-padded, and a proper prefix of the search key (the
            // lesser) when the padded words are equal.
            Some(m) => Some((x & m).cmp(&head).then(std::cmp::Ordering::Less)),
            None => (x != head).then(|| x.cmp(&head)),
        }
    }

    /// The key of node `i`.
    #[inline]
    fn key(&self, i: usize) -> &'a [u8] {
        let Some(([_, k0, k1], rest)) = self.line(i).split_first_chunk::<NODE_HEADER_LEN>() else {
            return &[];
        };
        rest.get(..usize::from(u16::from_le_bytes([*k0, *k1])))
            .unwrap_or_default()
    }
}

/// An internal node's data as its child page number (4 bytes), or `None`.
#[inline]
pub(crate) fn child_pgno(data: &[u8]) -> Option<Pgno> {
    Some(Pgno::from_bytes(*<&[u8; 4]>::try_from(data).ok()?))
}

thread_local! {
    /// [`Page::compact`]'s copy of a page's lines in tag order, kept per thread: a page-sized
    /// allocation per compaction made glibc consolidate its small free chunks each time (see
    /// [`PagePool`]).
    static COMPACT_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The binary search of [`Page::search`] over the tag array, among nodes `range` (every
/// node before it has a smaller key, every node after it a greater one).
#[inline]
fn search_keys(keys: &Keys<'_>, key: &[u8], range: std::ops::Range<usize>) -> (usize, bool) {
    let probe = Probe::new(key);
    let (mut lo, mut hi) = (range.start, range.end.min(keys.len()));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // The next probe is the middle of one half or the other: both are asked for
        // before this comparison, so that on a page not in the CPU cache the miss on the
        // next key overlaps this one instead of following it.
        keys.prefetch(lo + (mid - lo) / 2);
        keys.prefetch(mid + 1 + (hi - mid - 1) / 2);
        match probe.cmp(keys.key(mid)) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return (mid, true),
        }
    }
    (lo, false)
}

/// [`Page::child_index`] over decoded keys, among nodes `range` (every node before it has a
/// key no greater than `key`, every node from its end on but the last a greater one).
#[inline]
fn child_index_in(keys: &Keys<'_>, key: &[u8], range: std::ops::Range<usize>) -> usize {
    let probe = Probe::new(key);
    let (mut lo, mut hi) = (range.start, range.end.min(keys.len().saturating_sub(1)));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // As in `Page::search`: both possible next probes are asked for ahead.
        keys.prefetch(lo + (mid - lo) / 2);
        keys.prefetch(mid + 1 + (hi - mid - 1) / 2);
        let order = probe
            .head
            .and_then(|h| keys.head_order(mid, h))
            .unwrap_or_else(|| probe.cmp(keys.key(mid)));
        if order == std::cmp::Ordering::Greater {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// A search key with its first 8 bytes decoded once, for the many comparisons of one binary
/// search. [`Probe::cmp`] is byte-wise key order, comparing the first 8 bytes as one
/// big-endian integer when both keys have them (most comparisons in a search end there,
/// without a call to `memcmp`).
#[derive(Clone, Copy)]
struct Probe<'k> {
    key: &'k [u8],
    head: Option<u64>,
}

impl<'k> Probe<'k> {
    #[inline]
    #[expect(
        clippy::big_endian_bytes,
        reason = "big-endian integers compare like the bytes they are read from"
    )]
    fn new(key: &'k [u8]) -> Probe<'k> {
        Probe {
            key,
            head: key.first_chunk::<8>().map(|h| u64::from_be_bytes(*h)),
        }
    }

    /// The order of `node_key` relative to the search key (`node_key.cmp(key)`).
    #[inline]
    #[expect(
        clippy::big_endian_bytes,
        reason = "big-endian integers compare like the bytes they are read from"
    )]
    fn cmp(&self, node_key: &[u8]) -> std::cmp::Ordering {
        let Some(y) = self.head else {
            return node_key.cmp(self.key);
        };
        if let Some(x) = node_key.first_chunk::<8>() {
            let x = u64::from_be_bytes(*x);
            if x != y {
                return x.cmp(&y);
            }
            return node_key.get(8..).cmp(&self.key.get(8..));
        }
        // A node key shorter than 8 bytes (a separator, mostly) against a search key of 8 or
        // more: zero-padded, it compares as the bytes do, and when the padded words are equal
        // the node key is a proper prefix of the search key, so it is the lesser.
        // Built with shifts: a copy into a zeroed array compiles to a `memcpy` call.
        let padded = node_key
            .iter()
            .zip((0..8).rev())
            .fold(0u64, |acc, (b, i)| acc | u64::from(*b) << (8 * i));
        padded.cmp(&y).then(std::cmp::Ordering::Less)
    }
}

/// `copy_within` that refuses (returns false) instead of panicking on a bad range.
fn move_bytes(buf: &mut [u8], src: std::ops::Range<usize>, dest: usize) -> bool {
    let ok = src.start <= src.end
        && src.end <= buf.len()
        && dest
            .checked_add(src.end - src.start)
            .is_some_and(|e| e <= buf.len());
    if ok {
        buf.copy_within(src, dest);
    }
    ok
}

/// Writes a node line (flags u8, key length u16, key, data) into `line`, which is exactly
/// its length (`NODE_HEADER_LEN + key.len() + data.len()`; the callers check that the key
/// length fits its u16).
fn put_line(line: &mut [u8], flags: NodeFlags, key: &[u8], data: &[u8]) {
    let (head, rest) = line.split_at_mut(NODE_HEADER_LEN);
    head.copy_from_slice(&[flags.0, 0, 0]);
    if let Some(h) = head.get_mut(1..3) {
        h.copy_from_slice(&(key.len() as u16).to_le_bytes());
    }
    let (k, d) = rest.split_at_mut(key.len());
    k.copy_from_slice(key);
    d.copy_from_slice(data);
}

/// Parses a node line (flags u8, key length u16, key, data).
fn parse_line(line: &[u8]) -> Option<NodeRef<'_>> {
    let (&f, rest) = line.split_first()?;
    let kl = usize::from(rd_u16(rest, 0)?);
    let key = rest.get(2..2 + kl)?;
    let data = rest.get(2 + kl..)?;
    Some(NodeRef {
        flags: NodeFlags(f),
        key,
        data,
    })
}

impl Page {
    /// An empty page of `page_size` bytes.
    pub(crate) fn new(
        page_size: usize,
        pgno: Pgno,
        objid: ObjId,
        flags: PageFlags,
        level: u8,
    ) -> Page {
        Page::format(
            vec![0u8; page_size].into_boxed_slice(),
            pgno,
            objid,
            flags,
            level,
        )
    }

    /// An empty page in `buf` (whatever it held; the page size is its length).
    fn format(mut buf: Box<[u8]>, pgno: Pgno, objid: ObjId, flags: PageFlags, level: u8) -> Page {
        buf.fill(0);
        let mut p = Page {
            pgno,
            buf: PageBuf::heap(buf),
            hints: Hints::default(),
        };
        p.format_header(objid, flags, level);
        p
    }

    /// Writes the header and tag 0 of an empty page into a zeroed buffer.
    fn format_header(&mut self, objid: ObjId, flags: PageFlags, level: u8) {
        let page_size = self.buf.len();
        self.wr32(H_PGNO, self.pgno.0);
        self.set_objid(objid);
        self.set_flags(flags);
        self.set_level(level);
        self.wr16(H_NTAGS, 1);
        self.wr16(H_MIC, PAGE_HEADER_LEN as u16);
        self.wr16(H_FREE, (page_size - PAGE_HEADER_LEN - TAG_LEN) as u16);
        self.set_tag(0, 0, PAGE_HEADER_LEN);
    }

    /// A page with no bytes (a test frame's; never looked at).
    #[cfg(test)]
    pub(crate) fn placeholder(pgno: Pgno) -> Page {
        Page {
            pgno,
            buf: PageBuf::heap(Box::new([])),
            hints: Hints::default(),
        }
    }

    /// A page of `nodes` (no tag 0 bytes) in a buffer of `slabs` (a cached page's), for a page
    /// built to become a frame's without a copy
    /// ([`crate::cache::BufferCache::get_or_install_page`]). The buffer is not zeroed first:
    /// the header is, and [`Page::rebuild`] writes the lines, the tags and the hole between.
    ///
    /// # Errors
    /// As [`Page::rebuild`].
    pub(crate) fn built_in<'n>(
        slabs: &Arc<SlabPool>,
        head: (Pgno, ObjId, PageFlags, u8),
        nodes: impl Iterator<Item = NodeRef<'n>> + Clone,
    ) -> Result<Page> {
        let (pgno, objid, flags, level) = head;
        let mut p = Page {
            pgno,
            buf: slabs.any(),
            hints: Hints::default(),
        };
        if let Some(h) = p.buf_mut().get_mut(..PAGE_HEADER_LEN) {
            h.fill(0);
        }
        p.format_header(objid, flags, level);
        p.rebuild(&[], nodes)?;
        Ok(p)
    }

    /// A buffer of `slabs` (a cached page's) for page `pgno`, held by a frame while the page
    /// is read into it ([`Page::read_in_place`]); not a valid page until then. Not zeroed: the
    /// read fills every byte or fails (then the frame is dropped unread), and nobody reads
    /// the frame before (its loader holds the write latch).
    pub(crate) fn unread_in(slabs: &Arc<SlabPool>, pgno: Pgno) -> Page {
        Page {
            pgno,
            buf: slabs.any(),
            hints: Hints::default(),
        }
    }

    /// A copy of this page in a buffer of `slabs` (a cached page's), with its search hints.
    pub(crate) fn copy_in(&self, slabs: &Arc<SlabPool>) -> Page {
        let mut p = Page {
            pgno: self.pgno,
            buf: slabs.copy_of(&self.buf),
            hints: Hints::default(),
        };
        p.hints.copy_from(&self.hints);
        p
    }

    /// Builds the page's search hints now (a page just written whole, its keys still in the
    /// CPU cache: see `hints.rs`); nothing for a page of more nodes than hints hold.
    pub(crate) fn build_hints(&self) {
        let keys = self.keys();
        self.hints.build(keys.len(), |i| keys.key(i));
    }

    /// The page's bytes as they are in memory: its checksum and page-number fields are set
    /// only when it is written ([`Page::sealed`], [`Page::seal_into`]); a logged image is
    /// these bytes (see `record.rs`).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The address of the page's buffer (fixed for the page's life; see the type's notes).
    pub(crate) fn buf_addr(&self) -> usize {
        self.buf.as_ptr() as usize
    }

    /// The bytes, to change: the search hints no longer hold (see `hints.rs`).
    #[inline]
    fn buf_mut(&mut self) -> &mut PageBuf {
        self.hints.reset();
        &mut self.buf
    }

    /// Makes this page a copy of `other` (same page number and size), keeping its buffer
    /// where it is.
    pub(crate) fn copy_from(&mut self, other: &Page) {
        debug_assert_eq!(self.buf.len(), other.buf.len(), "pages of one size");
        if self.buf.len() == other.buf.len() {
            self.buf_mut().copy_from_slice(&other.buf);
        } else {
            self.buf_mut().clone_from(&other.buf);
        }
        self.hints.copy_from(&other.hints);
        self.pgno = other.pgno;
    }

    /// Fills the buffer with `read` (the page's bytes as stored) and verifies them as
    /// [`Page::decode`] does, in place.
    ///
    /// # Errors
    /// `read`'s error; as [`Page::decode`].
    pub(crate) fn read_in_place(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        read(self.buf_mut())?;
        verify(&self.buf, self.pgno)?;
        let pgno = self.pgno;
        Page::check(self.buf_mut(), pgno)
    }

    fn rd16(&self, off: usize) -> usize {
        rd_u16(&self.buf, off).map_or(0, usize::from)
    }
    fn rd32(&self, off: usize) -> u32 {
        rd_u32(&self.buf, off).unwrap_or(0)
    }
    fn wr16(&mut self, off: usize, v: u16) {
        if let Some(s) = self.bytes_mut(off..off + 2) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }
    fn wr32(&mut self, off: usize, v: u32) {
        if let Some(s) = self.bytes_mut(off..off + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The bytes at `r`, to change. Within the page header (dbtime, links, counts: no key
    /// lives there) the search hints stay; anywhere else this goes through
    /// [`Page::buf_mut`], which resets them.
    #[inline]
    fn bytes_mut(&mut self, r: std::ops::Range<usize>) -> Option<&mut [u8]> {
        if r.end <= PAGE_HEADER_LEN {
            self.buf.get_mut(r)
        } else {
            self.buf_mut().get_mut(r)
        }
    }

    pub(crate) fn pgno(&self) -> Pgno {
        self.pgno
    }
    pub(crate) fn dbtime(&self) -> DbTime {
        DbTime(rd_u64(&self.buf, H_DBTIME).unwrap_or(0))
    }
    pub(crate) fn set_dbtime(&mut self, t: DbTime) {
        if let Some(s) = self.bytes_mut(H_DBTIME..H_DBTIME + 8) {
            s.copy_from_slice(&t.to_bytes());
        }
    }
    pub(crate) fn prev(&self) -> Pgno {
        Pgno(self.rd32(H_PREV))
    }
    pub(crate) fn set_prev(&mut self, p: Pgno) {
        self.wr32(H_PREV, p.0);
    }
    pub(crate) fn next(&self) -> Pgno {
        Pgno(self.rd32(H_NEXT))
    }
    pub(crate) fn set_next(&mut self, p: Pgno) {
        self.wr32(H_NEXT, p.0);
    }
    pub(crate) fn objid(&self) -> ObjId {
        ObjId(self.rd32(H_OBJID))
    }
    pub(crate) fn set_objid(&mut self, o: ObjId) {
        self.wr32(H_OBJID, o.0);
    }
    pub(crate) fn flags(&self) -> PageFlags {
        PageFlags(self.rd32(H_FLAGS))
    }
    pub(crate) fn set_flags(&mut self, f: PageFlags) {
        self.wr32(H_FLAGS, f.0);
    }
    pub(crate) fn level(&self) -> u8 {
        self.buf.get(H_LEVEL).copied().unwrap_or(0)
    }
    pub(crate) fn set_level(&mut self, l: u8) {
        if let Some([b]) = self.bytes_mut(H_LEVEL..H_LEVEL + 1) {
            *b = l;
        }
    }
    pub(crate) fn is_leaf(&self) -> bool {
        self.level() == 0
    }
    fn ntags(&self) -> usize {
        self.rd16(H_NTAGS)
    }
    /// Number of nodes (tag 0 excluded).
    pub(crate) fn count(&self) -> usize {
        self.ntags().saturating_sub(1)
    }
    fn free(&self) -> usize {
        self.rd16(H_FREE)
    }
    fn mic(&self) -> usize {
        self.rd16(H_MIC)
    }
    fn tag_start(&self) -> usize {
        self.buf.len().saturating_sub(self.ntags() * TAG_LEN)
    }
    /// Contiguous free bytes between the node area and the tag array.
    fn hole(&self) -> usize {
        self.tag_start().saturating_sub(self.mic())
    }
    fn tag_off(&self, t: usize) -> usize {
        self.buf.len().saturating_sub((t + 1) * TAG_LEN)
    }
    /// Tag `t`: (cb, ib).
    fn tag(&self, t: usize) -> (usize, usize) {
        let o = self.tag_off(t);
        (self.rd16(o), self.rd16(o + 2))
    }
    /// Sets tag `t` to (cb, ib), without resetting the search hints: every caller changes the
    /// page's lines through [`Page::buf_mut`] in the same operation (which resets them, or
    /// they were taken before it) or formats a page that has none. A rebuild writes a tag per
    /// node, and a reset per tag was 2 % of a bulk load's instructions.
    fn set_tag(&mut self, t: usize, cb: usize, ib: usize) {
        let o = self.tag_off(t);
        let [c0, c1] = (cb as u16).to_le_bytes();
        let [i0, i1] = (ib as u16).to_le_bytes();
        if let Some(s) = self.buf.get_mut(o..o + TAG_LEN) {
            s.copy_from_slice(&[c0, c1, i0, i1]);
        }
    }
    fn line(&self, t: usize) -> &[u8] {
        let (cb, ib) = self.tag(t);
        self.buf.get(ib..ib + cb).unwrap_or_default()
    }

    /// Tag 0: the external header (space header on the space page; empty on tree pages).
    pub(crate) fn ext(&self) -> &[u8] {
        self.line(0)
    }

    /// Node `i`.
    pub(crate) fn node(&self, i: usize) -> Option<NodeRef<'_>> {
        if i >= self.count() {
            return None;
        }
        parse_line(self.line(i + 1))
    }

    /// Bytes node `i` takes on the page, tag included ([`NodeRef::size`]), read from its tag
    /// alone (the node's line is not read); 0 past the last node.
    pub(crate) fn node_size(&self, i: usize) -> usize {
        if i >= self.count() {
            return 0;
        }
        self.tag(i + 1).0 + TAG_LEN
    }

    /// Asks the CPU for every cache line of node `i` (nothing if there is no such node): a
    /// cursor stepping through a leaf asks for the node after the one it copies, so that the
    /// next step finds it in the cache instead of waiting on memory (nodes lie on a page in
    /// the order they were written, not in key order).
    #[inline]
    pub(crate) fn prefetch_node(&self, i: usize) {
        if i >= self.count() {
            return;
        }
        let (cb, ib) = self.tag(i + 1);
        let start = (self.buf.as_ptr() as usize).wrapping_add(ib);
        // The lines from the one holding the node's first byte to the one holding its last.
        let mut line = start & !63;
        while line < start.wrapping_add(cb.max(1)) {
            prefetch(line);
            line = line.wrapping_add(64);
        }
    }

    /// Asks the CPU for the cache lines an insert of a `cb`-byte node at index `idx` writes:
    /// the end of the node area, where the node goes, and the tags from the new one's place to
    /// the array's low end, which move one slot down. A search reads only a few tags and keys
    /// of a leaf: asked for once the index is known, these lines arrive while the caller
    /// decides and builds its log record, instead of each store waiting on memory as the
    /// insert makes it.
    #[inline]
    pub(crate) fn prefetch_insert(&self, idx: usize, cb: usize) {
        let base = self.buf.as_ptr() as usize;
        let lines = |from: usize, to: usize| {
            let mut line = base.wrapping_add(from) & !63;
            while line < base.wrapping_add(to) {
                prefetch(line);
                line = line.wrapping_add(64);
            }
        };
        let mic = self.mic();
        lines(mic, mic.saturating_add(NODE_HEADER_LEN + cb));
        lines(
            self.tag_start().saturating_sub(TAG_LEN),
            self.tag_off(idx.min(self.count())),
        );
    }

    /// The raw line of node `i` (flags, key length, key, data; empty if there is no such
    /// node): two nodes are equal exactly when their lines are.
    pub(crate) fn node_line(&self, i: usize) -> &[u8] {
        if i >= self.count() {
            return &[];
        }
        self.line(i + 1)
    }

    /// The key of node `i` (empty if there is no such node).
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let line = self.line(i + 1);
        let kl = rd_u16(line, 1).map_or(0, usize::from);
        line.get(3..3 + kl).unwrap_or_default()
    }

    /// The child page of internal node `i`.
    pub(crate) fn child(&self, i: usize) -> Option<Pgno> {
        self.keys().child(i)
    }

    /// On an internal page: the entry that covers `key` and its child page
    /// ([`Page::child_index`] and [`Page::child`] with one decoding of the tag array).
    pub(crate) fn child_entry_for(&self, key: &[u8]) -> Option<(usize, Pgno)> {
        let keys = self.keys();
        // The nodes whose keys a descent compares: all but the last.
        let m = keys.len().saturating_sub(1);
        let i = if let Some(range) = self.hints.wide_candidates(m, key) {
            // Most often an empty range: no key is compared, and the child comes from the
            // hints too.
            let i = child_index_in(&keys, key, range);
            if let Some(child) = self.hints.wide_child(i) {
                return Some((i, child));
            }
            i
        } else {
            let i = child_index_in(&keys, key, 0..m);
            if self.hints.wide_searched() {
                self.hints.build_wide(
                    m,
                    |i| keys.key(i),
                    || (0..=m).map(|i| keys.child(i)).collect(),
                );
            }
            i
        };
        keys.child(i).map(|child| (i, child))
    }

    /// Every node, in key order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = NodeRef<'_>> + Clone + '_ {
        (0..self.count()).filter_map(|i| self.node(i))
    }

    /// Bytes the nodes take (tags included), not counting tag 0.
    pub(crate) fn used(&self) -> usize {
        (self.buf.len().saturating_sub(PAGE_HEADER_LEN + TAG_LEN))
            .saturating_sub(self.ext().len() + self.free())
    }

    /// Index of the first node whose key is `>= key` and whether it is equal: from the search
    /// hints when the page has them, otherwise a binary search over the tag array, in place
    /// (after which the hints may be built: see `hints.rs`).
    pub(crate) fn search(&self, key: &[u8]) -> (usize, bool) {
        let keys = self.keys();
        let n = keys.len();
        if let Some(range) = self.hints.candidates(n, key) {
            // The first candidate's record is read next, when it is the key: asked for whole.
            if range.start < range.end {
                self.prefetch_node(range.start + (range.end - range.start) / 2);
            }
            return search_keys(&keys, key, range);
        }
        let found = search_keys(&keys, key, 0..n);
        if self.hints.searched(n) {
            self.hints.build(n, |i| keys.key(i));
        }
        found
    }

    /// [`Page::search`] without the hints: the binary search over the tag array.
    #[cfg(test)]
    pub(crate) fn search_plain(&self, key: &[u8]) -> (usize, bool) {
        let keys = self.keys();
        search_keys(&keys, key, 0..keys.len())
    }

    /// [`Page::search`] given `at`, an earlier search's answer for `key` on this page that may
    /// still hold: it is checked with at most two key comparisons (the node at it, and for a
    /// key not found the node before it) and the page is searched again only when it does
    /// not hold.
    pub(crate) fn search_from(&self, key: &[u8], at: (usize, bool)) -> (usize, bool) {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let keys = self.keys();
        let probe = Probe::new(key);
        let (idx, found) = at;
        let n = keys.len();
        // `probe.cmp(k)` orders the node key `k` against the probe.
        let holds = if found {
            idx < n && probe.cmp(keys.key(idx)) == Equal
        } else {
            idx <= n
                && (idx == n || probe.cmp(keys.key(idx)) == Greater)
                && (idx == 0 || probe.cmp(keys.key(idx - 1)) == Less)
        };
        if holds { at } else { self.search(key) }
    }

    /// On an internal page: the index of the child that covers `key` (the first node whose
    /// key is greater than `key`; the last node's key is not used: it is bounded by the parent).
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        let keys = self.keys();
        child_index_in(&keys, key, 0..keys.len().saturating_sub(1))
    }

    /// The node keys, read through the tag array.
    #[inline]
    fn keys(&self) -> Keys<'_> {
        // The tag array without tag 0 (the last 4 bytes of the page).
        let start = self.tag_start();
        let end = self.buf.len().saturating_sub(TAG_LEN);
        let tags = self.buf.get(start..end).unwrap_or_default();
        Keys {
            buf: &self.buf,
            tags: tags.as_chunks::<TAG_LEN>().0,
        }
    }

    /// Rewrites the page compactly (lines in tag order, no fragments).
    fn compact(&mut self) {
        COMPACT_SCRATCH.with_borrow_mut(|lines| {
            lines.clear();
            // Each line is gathered before its tag points to its new place (a tag's change
            // moves no byte, so the lines after it are still read where they were).
            let mut pos = PAGE_HEADER_LEN;
            for t in 0..self.ntags() {
                let (cb, _) = self.tag(t);
                let line = self.line(t);
                let len = line.len();
                lines.extend_from_slice(line);
                self.set_tag(t, cb, pos);
                pos += len;
            }
            // Copied back rather than swapped in: the buffer never moves (see the type's
            // notes). The rest, up to the tag array, is the hole: zeros.
            if let Some(d) = self.buf_mut().get_mut(PAGE_HEADER_LEN..pos) {
                d.copy_from_slice(lines);
            }
            let tag_start = self.tag_start();
            if let Some(hole) = self.buf_mut().get_mut(pos..tag_start) {
                hole.fill(0);
            }
            self.wr16(H_MIC, pos as u16);
        });
    }

    /// Inserts a node at `idx`; false (page unchanged) when it does not fit. The search hints
    /// follow the insert (see `hints.rs`).
    pub(crate) fn insert_node(
        &mut self,
        idx: usize,
        flags: NodeFlags,
        key: &[u8],
        data: &[u8],
    ) -> bool {
        let hints = self.hints.take();
        let done = self.insert_line(idx, flags, key, data);
        if done {
            self.hints.inserted(hints, idx, key, data);
        }
        done
    }

    /// [`Page::insert_node`] in the bytes alone.
    fn insert_line(&mut self, idx: usize, flags: NodeFlags, key: &[u8], data: &[u8]) -> bool {
        let n = self.count();
        let cb = NODE_HEADER_LEN + key.len() + data.len();
        if idx > n || self.free() < cb + TAG_LEN || key.len() > usize::from(u16::MAX) {
            return false;
        }
        if self.hole() < cb + TAG_LEN {
            self.compact();
            if self.hole() < cb + TAG_LEN {
                return false;
            }
        }
        let ib = self.mic();
        let Some(line) = self.buf_mut().get_mut(ib..ib + cb) else {
            return false;
        };
        put_line(line, flags, key, data);
        // Tags idx+1.. move one slot down (towards the node area).
        let lo = self.tag_start();
        let hi = self.tag_off(idx);
        if !move_bytes(self.buf_mut(), lo..hi, lo.wrapping_sub(TAG_LEN)) {
            return false;
        }
        let ntags = self.ntags() + 1;
        self.wr16(H_NTAGS, ntags as u16);
        self.set_tag(idx + 1, cb, ib);
        self.wr16(H_MIC, (ib + cb) as u16);
        self.wr16(H_FREE, (self.free() - cb - TAG_LEN) as u16);
        true
    }

    /// Inserts `nodes` as nodes `idx..idx + nodes.len()` in one step (a run of nodes moved in
    /// from a sibling): the lines are written one after the other and the tags after `idx`
    /// move once, where [`Page::insert_node`] per node would move them once per node. False
    /// (page unchanged) when they do not fit. The search hints follow the insert.
    pub(crate) fn insert_nodes(&mut self, idx: usize, nodes: &[NodeRef<'_>]) -> bool {
        let hints = self.hints.take();
        let done = self.insert_lines(idx, nodes);
        if done {
            self.hints.inserted_run(hints, idx, nodes);
        }
        done
    }

    /// [`Page::insert_nodes`] in the bytes alone.
    fn insert_lines(&mut self, idx: usize, nodes: &[NodeRef<'_>]) -> bool {
        let (n, m) = (self.count(), nodes.len());
        let lines: usize = nodes
            .iter()
            .map(|x| NODE_HEADER_LEN + x.key.len() + x.data.len())
            .sum();
        let need = lines + m * TAG_LEN;
        if idx > n
            || self.free() < need
            || self.ntags() + m > usize::from(u16::MAX)
            || nodes.iter().any(|x| x.key.len() > usize::from(u16::MAX))
        {
            return false;
        }
        if self.hole() < need {
            self.compact();
            if self.hole() < need {
                return false;
            }
        }
        // Tags idx+1.. move m slots down (towards the node area), then the lines go into the
        // hole, each with its tag.
        let lo = self.tag_start();
        let hi = self.tag_off(idx);
        if !move_bytes(self.buf_mut(), lo..hi, lo.wrapping_sub(m * TAG_LEN)) {
            return false;
        }
        self.wr16(H_NTAGS, (self.ntags() + m) as u16);
        let mut pos = self.mic();
        for (j, x) in nodes.iter().enumerate() {
            let cb = NODE_HEADER_LEN + x.key.len() + x.data.len();
            if let Some(line) = self.buf_mut().get_mut(pos..pos + cb) {
                put_line(line, x.flags, x.key, x.data);
            }
            self.set_tag(idx + 1 + j, cb, pos);
            pos += cb;
        }
        self.wr16(H_MIC, pos as u16);
        self.wr16(H_FREE, (self.free() - need) as u16);
        true
    }

    /// Removes nodes `range` in one step (a run of nodes moved out to a sibling, or the part
    /// of a split page that goes to the new page): the tags after it move once. False (page
    /// unchanged) when the range is not within the nodes. The search hints follow the removal.
    pub(crate) fn remove_nodes(&mut self, range: std::ops::Range<usize>) -> bool {
        if range.start > range.end || range.end > self.count() {
            return false;
        }
        if range.is_empty() {
            return true;
        }
        let hints = self.hints.take();
        let done = self.remove_lines(range.clone());
        if done {
            self.hints.removed_run(hints, range);
        }
        done
    }

    /// [`Page::remove_nodes`] in the bytes alone (`range` is within the nodes).
    fn remove_lines(&mut self, range: std::ops::Range<usize>) -> bool {
        let m = range.len();
        // Released from the highest line down, so that lines ending the node area shrink it.
        let mut released: Vec<(usize, usize)> = range.clone().map(|i| self.tag(i + 1)).collect();
        released.sort_unstable_by_key(|&(_, ib)| std::cmp::Reverse(ib));
        for (cb, ib) in released {
            self.release_line(cb, ib);
        }
        // Tags of the nodes after the range move m slots up, over the range's.
        let lo = self.tag_start();
        let hi = self.tag_off(range.end);
        if !move_bytes(self.buf_mut(), lo..hi, lo + m * TAG_LEN) {
            return false;
        }
        if let Some(s) = self.buf_mut().get_mut(lo..lo + m * TAG_LEN) {
            s.fill(0);
        }
        self.wr16(H_NTAGS, (self.ntags() - m) as u16);
        self.wr16(H_FREE, (self.free() + m * TAG_LEN) as u16);
        true
    }

    /// Zeroes the line at `ib..ib + cb` and gives it back (shrinking the node area when it
    /// is at its end).
    fn release_line(&mut self, cb: usize, ib: usize) {
        if let Some(s) = self.buf_mut().get_mut(ib..ib + cb) {
            s.fill(0);
        }
        if ib + cb == self.mic() {
            self.wr16(H_MIC, ib as u16);
        }
        self.wr16(H_FREE, (self.free() + cb) as u16);
    }

    /// Removes node `idx`; false if there is no such node. The search hints follow the
    /// removal.
    pub(crate) fn remove_node(&mut self, idx: usize) -> bool {
        let hints = self.hints.take();
        let done = self.remove_line(idx);
        if done {
            self.hints.removed(hints, idx);
        }
        done
    }

    /// [`Page::remove_node`] in the bytes alone.
    fn remove_line(&mut self, idx: usize) -> bool {
        if idx >= self.count() {
            return false;
        }
        let (cb, ib) = self.tag(idx + 1);
        self.release_line(cb, ib);
        let lo = self.tag_start();
        let hi = self.tag_off(idx + 1);
        if !move_bytes(self.buf_mut(), lo..hi, lo + TAG_LEN) {
            return false;
        }
        if let Some(s) = self.buf_mut().get_mut(lo..lo + TAG_LEN) {
            s.fill(0);
        }
        self.wr16(H_NTAGS, (self.ntags() - 1) as u16);
        self.wr16(H_FREE, (self.free() + TAG_LEN) as u16);
        true
    }

    /// Replaces the data of node `idx`; false (page unchanged) if there is no such node or
    /// the new data does not fit. The keys do not change: the search hints stay.
    pub(crate) fn replace_data(&mut self, idx: usize, data: &[u8]) -> bool {
        let hints = self.hints.take();
        let done = self.replace_line_data(idx, data);
        if done {
            self.hints.replaced(hints, idx, data);
        }
        done
    }

    /// [`Page::replace_data`] in the bytes alone.
    fn replace_line_data(&mut self, idx: usize, data: &[u8]) -> bool {
        let Some(node) = self.node(idx) else {
            return false;
        };
        let (flags, kl) = (node.flags, node.key.len());
        let (cb, ib) = self.tag(idx + 1);
        let new_cb = NODE_HEADER_LEN + kl + data.len();
        if new_cb <= cb {
            let at = ib + NODE_HEADER_LEN + kl;
            if let Some(d) = self.buf_mut().get_mut(at..at + data.len()) {
                d.copy_from_slice(data);
            }
            self.set_tag(idx + 1, new_cb, ib);
            self.release_line(cb - new_cb, ib + new_cb);
            return true;
        }
        if self.free() + cb < new_cb {
            return false;
        }
        let hole = self.hole();
        if ib + cb == self.mic() && hole >= new_cb - cb {
            // The last line grows into the hole.
            let at = ib + NODE_HEADER_LEN + kl;
            if let Some(d) = self.buf_mut().get_mut(at..at + data.len()) {
                d.copy_from_slice(data);
            }
            self.set_tag(idx + 1, new_cb, ib);
            self.wr16(H_MIC, (ib + new_cb) as u16);
            self.wr16(H_FREE, (self.free() + cb - new_cb) as u16);
            return true;
        }
        if hole >= new_cb {
            // Move the line to the hole.
            let mic = self.mic();
            if !move_bytes(self.buf_mut(), ib..ib + NODE_HEADER_LEN + kl, mic) {
                return false;
            }
            let at = mic + NODE_HEADER_LEN + kl;
            if let Some(d) = self.buf_mut().get_mut(at..at + data.len()) {
                d.copy_from_slice(data);
            }
            self.set_tag(idx + 1, new_cb, mic);
            self.wr16(H_MIC, (mic + new_cb) as u16);
            self.wr16(H_FREE, (self.free() - new_cb) as u16);
            self.release_line(cb, ib);
            return true;
        }
        // Rare: remove, compact, insert again.
        let key = node.key.to_vec();
        self.remove_node(idx) && self.insert_node(idx, flags, &key, data)
    }

    /// Sets the flags of node `idx`; false if there is no such node. The keys do not change:
    /// the search hints stay.
    pub(crate) fn set_node_flags(&mut self, idx: usize, flags: NodeFlags) -> bool {
        if idx >= self.count() {
            return false;
        }
        let hints = self.hints.take();
        let ib = self.tag(idx + 1).1;
        let done = match self.buf_mut().get_mut(ib) {
            Some(b) => {
                *b = flags.0;
                true
            }
            None => false,
        };
        if done {
            self.hints.put_back(hints);
        }
        done
    }

    /// Rebuilds the page's lines from `ext` and `nodes`, keeping the header fields.
    ///
    /// # Errors
    /// `InternalError` if they do not fit (an engine bug, never bytes from disk).
    pub(crate) fn rebuild<'n>(
        &mut self,
        ext: &[u8],
        nodes: impl Iterator<Item = NodeRef<'n>> + Clone,
    ) -> Result<()> {
        let ps = self.buf.len();
        let (mut count, mut bytes) = (0usize, ext.len());
        for n in nodes.clone() {
            count += 1;
            bytes += NODE_HEADER_LEN + n.key.len() + n.data.len();
        }
        let ntags = count + 1;
        let need = PAGE_HEADER_LEN + bytes + ntags * TAG_LEN;
        if need > ps || ntags > usize::from(u16::MAX) {
            return Err(Error::new(ErrorKind::InternalError)
                .with_pgno(self.pgno)
                .with_message(format!("page content of {need} bytes exceeds the page")));
        }
        // Everything but the header is rewritten, in place (the buffer never moves; `nodes`
        // cannot borrow from it while `self` is borrowed mutably): the lines from the header
        // on, the tags at the end, and the hole between them zeroed.
        self.wr16(H_NTAGS, ntags as u16);
        let mut pos = PAGE_HEADER_LEN;
        if let Some(d) = self.buf_mut().get_mut(pos..pos + ext.len()) {
            d.copy_from_slice(ext);
        }
        self.set_tag(0, ext.len(), pos);
        pos += ext.len();
        for (i, n) in nodes.enumerate() {
            let cb = NODE_HEADER_LEN + n.key.len() + n.data.len();
            if let Some(line) = self.buf_mut().get_mut(pos..pos + cb) {
                put_line(line, n.flags, n.key, n.data);
            }
            self.set_tag(i + 1, cb, pos);
            pos += cb;
        }
        let tag_start = ps - ntags * TAG_LEN;
        if let Some(hole) = self.buf_mut().get_mut(pos..tag_start) {
            hole.fill(0);
        }
        self.wr16(H_MIC, pos as u16);
        self.wr16(H_FREE, (ps - need) as u16);
        Ok(())
    }

    /// Replaces every node with `nodes` (owned), keeping tag 0 and the header.
    ///
    /// # Errors
    /// As [`Page::rebuild`].
    pub(crate) fn set_nodes(&mut self, nodes: &[Node]) -> Result<()> {
        let ext = self.ext().to_vec();
        self.rebuild(&ext, nodes.iter().map(Node::node_ref))
    }

    /// Copies of every node.
    pub(crate) fn to_nodes(&self) -> Vec<Node> {
        self.nodes().map(NodeRef::to_node).collect()
    }

    /// Removes and returns every node.
    pub(crate) fn take_nodes(&mut self) -> Vec<Node> {
        let nodes = self.to_nodes();
        let ext = self.ext().to_vec();
        // An empty node list always fits.
        let _ = self.rebuild(&ext, std::iter::empty());
        nodes
    }

    /// Replaces tag 0 (the external header), keeping the nodes.
    ///
    /// # Errors
    /// As [`Page::rebuild`].
    pub(crate) fn set_ext(&mut self, ext: &[u8]) -> Result<()> {
        // Same length (the space header, rewritten on every allocation): in place.
        let (cb, ib) = self.tag(0);
        if cb == ext.len()
            && let Some(line) = self.buf_mut().get_mut(ib..ib + cb)
        {
            line.copy_from_slice(ext);
            return Ok(());
        }
        let copy = self.clone();
        self.rebuild(ext, copy.nodes())
    }

    /// A sealed copy of the page (page number and checksum written), as written to the file
    /// and logged in images.
    pub(crate) fn sealed(&self) -> Vec<u8> {
        let mut b = self.buf.to_vec();
        seal(&mut b, self.pgno);
        b
    }

    /// Appends the page as written to the file (page number and checksum set) to `out`.
    pub(crate) fn seal_into(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.buf);
        if let Some(b) = out.get_mut(at..) {
            seal(b, self.pgno);
        }
    }

    /// Decodes and verifies a page read from the place of `pgno`.
    ///
    /// # Errors
    /// `PageNotInitialized` for an all-zero page; `ReadVerifyFailure` on a checksum mismatch;
    /// `ReadPgnoVerifyFailure` when the page holds another page number; `BadLineCount`,
    /// `PageTagCorrupted`, `NodeCorrupted` or `DatabaseCorrupted` for impossible offsets,
    /// lengths, counters or flags. Every error names `pgno`.
    pub(crate) fn decode(b: &[u8], pgno: Pgno) -> Result<Page> {
        verify(b, pgno)?;
        let mut buf = b.to_vec().into_boxed_slice();
        Page::check(&mut buf, pgno)?;
        Ok(Page {
            pgno,
            buf: PageBuf::heap(buf),
            hints: Hints::default(),
        })
    }

    /// Structural checks of a page whose checksum is verified; zeroes the hole.
    fn check(b: &mut [u8], pgno: Pgno) -> Result<()> {
        let ps = b.len();
        let bad = |m: &str| corrupt(ErrorKind::DatabaseCorrupted, pgno, m);
        let flags = PageFlags(rd_u32(b, H_FLAGS).ok_or_else(|| bad("short page"))?);
        if flags.0 & !PageFlags::ALL.0 != 0 {
            return Err(bad(&format!("unknown page flags {:#x}", flags.0)));
        }
        let ntags = usize::from(rd_u16(b, H_NTAGS).ok_or_else(|| bad("short page"))?);
        let free = usize::from(rd_u16(b, H_FREE).ok_or_else(|| bad("short page"))?);
        let mic = usize::from(rd_u16(b, H_MIC).ok_or_else(|| bad("short page"))?);
        let level = *b.get(H_LEVEL).ok_or_else(|| bad("short page"))?;
        if ntags == 0 || PAGE_HEADER_LEN + ntags * TAG_LEN > ps {
            return Err(corrupt(
                ErrorKind::BadLineCount,
                pgno,
                format!("{ntags} tags do not fit the page"),
            ));
        }
        let tag_start = ps - ntags * TAG_LEN;
        if mic < PAGE_HEADER_LEN || mic > tag_start {
            return Err(bad(&format!("node area end {mic} out of range")));
        }
        let mut lines = 0usize;
        for i in 0..ntags {
            let t = ps - (i + 1) * TAG_LEN;
            let tag_err = || corrupt(ErrorKind::PageTagCorrupted, pgno, format!("tag {i}"));
            let cb = usize::from(rd_u16(b, t).ok_or_else(tag_err)?);
            let ib = usize::from(rd_u16(b, t + 2).ok_or_else(tag_err)?);
            if ib < PAGE_HEADER_LEN || ib + cb > mic {
                return Err(corrupt(
                    ErrorKind::PageTagCorrupted,
                    pgno,
                    format!("tag {i} (ib {ib}, cb {cb}) outside the node area"),
                ));
            }
            lines += cb;
            if i == 0 {
                continue;
            }
            let line = b.get(ib..ib + cb).ok_or_else(tag_err)?;
            let node_err =
                |m: &str| corrupt(ErrorKind::NodeCorrupted, pgno, format!("node {i}: {m}"));
            let node = parse_line(line).ok_or_else(|| node_err("key longer than the node"))?;
            if node.flags.0 & !NodeFlags::ALL.0 != 0 {
                return Err(node_err("unknown flags"));
            }
            if level > 0 && node.data.len() != 4 {
                return Err(node_err("internal node without a 4-byte child"));
            }
        }
        // Lines cannot overlap if they fit the node area; the free-bytes field must be exact
        // (inserts rely on it).
        if PAGE_HEADER_LEN + lines > mic || free != tag_start - PAGE_HEADER_LEN - lines {
            return Err(bad(&format!("free bytes {free} do not match the lines")));
        }
        if let Some(h) = b.get_mut(mic..tag_start) {
            h.fill(0);
        }
        Ok(())
    }
}

/// Writes the page number and the checksum into an encoded page.
pub(crate) fn seal(b: &mut [u8], pgno: Pgno) {
    if let Some(p) = b.get_mut(4..8) {
        p.copy_from_slice(&pgno.to_bytes());
    }
    let crc = crc32_seeded(u64::from(pgno.0), &[b.get(4..).unwrap_or_default()]);
    if let Some(c) = b.get_mut(0..4) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Verifies the checksum and page number of a raw page.
///
/// # Errors
/// `PageNotInitialized`, `ReadVerifyFailure` or `ReadPgnoVerifyFailure`, naming `pgno`.
pub(crate) fn verify(b: &[u8], pgno: Pgno) -> Result<()> {
    if b.len() < PAGE_HEADER_LEN + TAG_LEN {
        return Err(corrupt(ErrorKind::ReadVerifyFailure, pgno, "short page"));
    }
    if b.iter().all(|&x| x == 0) {
        return Err(corrupt(
            ErrorKind::PageNotInitialized,
            pgno,
            "the page is all zeros",
        ));
    }
    let stored_crc = rd_u32(b, 0).unwrap_or_default();
    let stored_pgno = rd_u32(b, 4).unwrap_or_default();
    let crc = crc32_seeded(u64::from(stored_pgno), &[b.get(4..).unwrap_or_default()]);
    if crc != stored_crc {
        return Err(corrupt(
            ErrorKind::ReadVerifyFailure,
            pgno,
            format!("checksum {stored_crc:#010x} stored, {crc:#010x} computed"),
        ));
    }
    if stored_pgno != pgno.0 {
        return Err(corrupt(
            ErrorKind::ReadPgnoVerifyFailure,
            pgno,
            format!("the page holds page number {stored_pgno}"),
        ));
    }
    Ok(())
}

/// Bytes per block of [`LineCmp`]'s map of the changed bytes.
const CMP_BLOCK: usize = 64;
/// Blocks [`LineCmp`] maps: a 32 KiB page (the largest page size) at most.
const CMP_BLOCKS: usize = 512;

/// Compares the node lines of two versions of one page (`before` and `after` a change made
/// in a copy of it), for a delta ([`crate::record::page_delta`]). A change leaves most lines
/// where they were (an insert adds its line in the hole and shifts tags; a split's parent
/// rewrites one child pointer in place; a sibling changes only its header), so it first maps
/// which 64-byte blocks of the two pages differ; two lines at the same place (equal tags)
/// whose blocks are all the same are then equal without comparing their bytes. One pass over
/// the page instead of one `memcmp` per pair of lines (a parent page has hundreds).
pub(crate) struct LineCmp<'p> {
    before: &'p Page,
    after: &'p Page,
    /// Each page's node tags (tag 0 excluded), last node first, as stored.
    tags: (&'p [u8], &'p [u8]),
    /// Bit `b`: block `b` differs (or lies past the end of either page).
    changed: [u64; CMP_BLOCKS / 64],
}

/// Whether two blocks hold the same bytes: their 8-byte words XORed and ORed together, which
/// compiles to a few vector instructions (an array `==` calls `memcmp` for each block).
#[inline]
fn block_eq(x: &[u8; CMP_BLOCK], y: &[u8; CMP_BLOCK]) -> bool {
    let diff = x
        .as_chunks::<8>()
        .0
        .iter()
        .zip(y.as_chunks::<8>().0)
        .fold(0u64, |acc, (a, b)| {
            acc | (u64::from_le_bytes(*a) ^ u64::from_le_bytes(*b))
        });
    diff == 0
}

impl<'p> LineCmp<'p> {
    pub(crate) fn new(before: &'p Page, after: &'p Page) -> LineCmp<'p> {
        let mut changed = [u64::MAX; CMP_BLOCKS / 64];
        let blocks = before
            .buf
            .as_chunks::<CMP_BLOCK>()
            .0
            .iter()
            .zip(after.buf.as_chunks::<CMP_BLOCK>().0);
        for (b, (x, y)) in blocks.enumerate().take(CMP_BLOCKS) {
            if block_eq(x, y)
                && let Some(word) = changed.get_mut(b / 64)
            {
                *word &= !(1u64 << (b % 64));
            }
        }
        let node_tags = |p: &'p Page| {
            let end = p.tag_off(0);
            p.buf.get(p.tag_start()..end).unwrap_or_default()
        };
        LineCmp {
            before,
            after,
            tags: (node_tags(before), node_tags(after)),
            changed,
        }
    }

    /// The raw tag of node `i` in `tags` (a page's node tags, last node first).
    #[inline]
    fn raw_tag(tags: &[u8], i: usize) -> Option<&[u8]> {
        let n = tags.len() / TAG_LEN;
        if i >= n {
            return None;
        }
        let at = (n - 1 - i) * TAG_LEN;
        tags.get(at..at + TAG_LEN)
    }

    /// Whether two raw tags, one of each page, are the same place holding unchanged bytes:
    /// then their lines are equal without reading them.
    #[inline]
    fn same_place(&self, before: &[u8], after: &[u8]) -> bool {
        before == after && self.unchanged(rd_u32(before, 0).unwrap_or(0))
    }

    /// Whether node `j` of `before` and node `i` of `after` have equal bytes.
    fn bytes_eq(&self, j: usize, i: usize) -> bool {
        self.before.node_line(j) == self.after.node_line(i)
    }

    /// Whether no byte of the line with raw tag `tag` differs between the pages.
    #[inline]
    fn unchanged(&self, tag: u32) -> bool {
        let (cb, ib) = ((tag & 0xFFFF) as usize, (tag >> 16) as usize);
        if cb == 0 {
            return true;
        }
        let mut b = ib / CMP_BLOCK;
        let last = (ib + cb - 1) / CMP_BLOCK;
        while b <= last {
            match self.changed.get(b / 64) {
                Some(w) if w & (1u64 << (b % 64)) == 0 => b += 1,
                _ => return false,
            }
        }
        true
    }

    /// How many nodes both pages start with (equal lines, in order).
    pub(crate) fn common_prefix(&self) -> usize {
        // Node `k`'s tag is the `k`th from the end of each tag array.
        let (b, a) = self.tags;
        let n = b.len().min(a.len()) / TAG_LEN;
        let (b, a) = (
            b.get(b.len() - n * TAG_LEN..).unwrap_or_default(),
            a.get(a.len() - n * TAG_LEN..).unwrap_or_default(),
        );
        let mut k = 0;
        for (tb, ta) in b.rchunks_exact(TAG_LEN).zip(a.rchunks_exact(TAG_LEN)) {
            if !(self.same_place(tb, ta) || self.bytes_eq(k, k)) {
                break;
            }
            k += 1;
        }
        k
    }

    /// How many nodes both pages end with (equal lines, in order), among the nodes past the
    /// first `skip` of each.
    pub(crate) fn common_suffix(&self, skip: usize) -> usize {
        let (b, a) = self.tags;
        let (nb, na) = (b.len() / TAG_LEN, a.len() / TAG_LEN);
        let n = nb.saturating_sub(skip).min(na.saturating_sub(skip));
        let (b, a) = (
            b.get(..n * TAG_LEN).unwrap_or_default(),
            a.get(..n * TAG_LEN).unwrap_or_default(),
        );
        let mut k = 0;
        for (tb, ta) in b.chunks_exact(TAG_LEN).zip(a.chunks_exact(TAG_LEN)) {
            if !(self.same_place(tb, ta) || self.bytes_eq(nb - 1 - k, na - 1 - k)) {
                break;
            }
            k += 1;
        }
        k
    }

    /// Whether node `j` of `before` and node `i` of `after` have equal lines
    /// ([`Page::node_line`]).
    #[inline]
    pub(crate) fn eq(&self, j: usize, i: usize) -> bool {
        let place = Self::raw_tag(self.tags.0, j).zip(Self::raw_tag(self.tags.1, i));
        place.is_some_and(|(tb, ta)| self.same_place(tb, ta)) || self.bytes_eq(j, i)
    }
}

impl Page {
    /// Whether `other` holds the same bytes after the page header (tags, tag 0 and nodes,
    /// free space included): then only header fields differ.
    pub(crate) fn same_body(&self, other: &Page) -> bool {
        self.buf.get(PAGE_HEADER_LEN..) == other.buf.get(PAGE_HEADER_LEN..)
    }
}

/// Page buffers kept for reuse by work units (`split.rs`), which copy every page they touch
/// and format new ones: without it, each split allocates and frees about ten page-sized
/// buffers, and in glibc's allocator every allocation of that size first consolidates the
/// small chunks freed since the last one (measured: `docs/design.md`, "Work-unit page
/// buffers"). Holds at most [`PagePool::KEEP`] buffers of one page size; a buffer given back
/// beyond that, or of another size, is freed.
#[derive(Debug)]
pub(crate) struct PagePool {
    page_size: usize,
    free: parking_lot::Mutex<Vec<Box<[u8]>>>,
}

impl PagePool {
    /// Buffers kept at most (512 KiB of 8 KiB pages): more than a split or merge touches (a
    /// path of a few levels, the siblings, the space page, the new pages and their images).
    pub(crate) const KEEP: usize = 64;

    pub(crate) fn new(page_size: usize) -> PagePool {
        PagePool {
            page_size,
            free: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// A buffer of the pool's page size, with any content.
    fn take(&self) -> Box<[u8]> {
        self.free
            .lock()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.page_size].into_boxed_slice())
    }

    /// A copy of `page` in a pooled buffer (a plain copy if its size is not the pool's).
    pub(crate) fn copy(&self, page: &Page) -> Page {
        if page.buf.len() != self.page_size {
            return page.clone();
        }
        let mut buf = self.take();
        buf.copy_from_slice(&page.buf);
        Page {
            pgno: page.pgno,
            buf: PageBuf::heap(buf),
            hints: Hints::default(),
        }
    }

    /// [`Page::new`] in a pooled buffer.
    pub(crate) fn blank(&self, pgno: Pgno, objid: ObjId, flags: PageFlags, level: u8) -> Page {
        Page::format(self.take(), pgno, objid, flags, level)
    }

    /// Gives `page`'s buffer back (a heap buffer; a slab's goes back to its slab).
    pub(crate) fn give(&self, page: Page) {
        if let Some(buf) = page.buf.into_heap() {
            self.give_buf(buf);
        }
    }

    /// Gives a buffer back.
    fn give_buf(&self, buf: Box<[u8]>) {
        if buf.len() == self.page_size {
            let mut free = self.free.lock();
            if free.len() < Self::KEEP {
                free.push(buf);
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    fn sample(ps: usize, pgno: u32) -> Page {
        let mut p = Page::new(ps, Pgno(pgno), ObjId(7), PageFlags::LEAF, 0);
        p.set_dbtime(DbTime(99));
        p.set_next(Pgno(12));
        for i in 0u32..20 {
            assert!(p.insert_node(
                i as usize,
                NodeFlags(0),
                &crate::db::key_u32(i),
                &vec![i as u8; i as usize],
            ));
        }
        p
    }

    #[test]
    fn round_trips_every_page_size() {
        for ps in [4096, 8192, 16384, 32768] {
            let p = sample(ps, 5);
            let b = p.sealed();
            assert_eq!(b.len(), ps);
            let q = Page::decode(&b, Pgno(5)).unwrap();
            assert_eq!(p.to_nodes(), q.to_nodes());
            assert_eq!(q.dbtime(), DbTime(99));
            assert_eq!(q.next(), Pgno(12));
            assert_eq!(q.search(&crate::db::key_u32(7)), (7, true));
        }
    }

    #[test]
    fn search_from_any_hint_answers_as_search() {
        let p = sample(4096, 5);
        let mut probes: Vec<Vec<u8>> = (0u32..22).map(|i| crate::db::key_u32(i).to_vec()).collect();
        // Keys between the nodes' keys, and before the first.
        probes.extend((0u32..22).map(|i| {
            let mut k = crate::db::key_u32(i).to_vec();
            k.push(0);
            k
        }));
        probes.push(Vec::new());
        for probe in &probes {
            let want = p.search(probe);
            for idx in 0..=22 {
                for found in [false, true] {
                    assert_eq!(p.search_from(probe, (idx, found)), want, "{probe:?} {idx}");
                }
            }
        }
    }

    /// A leaf changed in every way a page changes (inserts, removals, data and flag changes,
    /// compaction, a copy over it with or without hints), searched after each step: the
    /// answers, from the search hints once built (at the second search of an unchanged page
    /// or with a copy) and kept through inserts and removals, always equal the binary search
    /// over the tags.
    #[test]
    fn hinted_search_answers_as_the_tags_through_changes() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut p = Page::new(4096, Pgno(9), ObjId(7), PageFlags::LEAF, 0);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let key = |rng: &mut fastrand::Rng| -> Vec<u8> {
            let mut k = vec![0x7f, rng.u8(0..2)];
            k.extend((0..rng.usize(0..12)).map(|_| rng.u8(0..4)));
            k
        };
        let mut from_hints = 0;
        for step in 0..6_000 {
            match rng.u8(0..7) {
                5 => {
                    // A run of keys that all go in at one place (moved in from a sibling).
                    let mut run: Vec<Vec<u8>> =
                        (0..rng.usize(1..6)).map(|_| key(&mut rng)).collect();
                    run.sort();
                    run.dedup();
                    let at = keys.binary_search(&run[0]);
                    run.retain(|k| keys.binary_search(k) == at);
                    if let Err(i) = at
                        && keys.len() + run.len() <= crate::hints::CAP
                    {
                        let data = vec![3; rng.usize(0..40)];
                        let refs: Vec<NodeRef<'_>> = run
                            .iter()
                            .map(|k| NodeRef {
                                flags: NodeFlags(0),
                                key: k,
                                data: &data,
                            })
                            .collect();
                        if p.insert_nodes(i, &refs) {
                            keys.splice(i..i, run.iter().cloned());
                        }
                    }
                }
                6 if !keys.is_empty() => {
                    let a = rng.usize(0..keys.len());
                    let b = rng.usize(a..=keys.len().min(a + 6));
                    assert!(p.remove_nodes(a..b));
                    keys.drain(a..b);
                }
                0 | 1 => {
                    let k = key(&mut rng);
                    if keys.len() < crate::hints::CAP
                        && let Err(i) = keys.binary_search(&k)
                        && p.insert_node(i, NodeFlags(0), &k, &vec![1; rng.usize(0..60)])
                    {
                        keys.insert(i, k);
                    }
                }
                2 if !keys.is_empty() => {
                    let i = rng.usize(0..keys.len());
                    assert!(p.remove_node(i));
                    keys.remove(i);
                }
                3 if !keys.is_empty() => {
                    let i = rng.usize(0..keys.len());
                    p.replace_data(i, &vec![2; rng.usize(0..200)]);
                    p.set_node_flags(i, NodeFlags(1));
                    // Header fields: no key changes.
                    p.set_dbtime(DbTime(step));
                    p.set_next(Pgno(step as u32));
                }
                _ => {
                    // A compacted copy, its hints built (or not) and copied with it.
                    let mut q = p.clone();
                    q.compact();
                    if rng.bool() {
                        q.build_hints();
                    }
                    p.copy_from(&q);
                }
            }
            for _ in 0..4 {
                let probe = key(&mut rng);
                let want = p.search_plain(&probe);
                assert_eq!(
                    want,
                    keys.binary_search(&probe)
                        .map_or_else(|i| (i, false), |i| (i, true))
                );
                if p.hints.candidates(p.count(), &probe).is_some() {
                    from_hints += 1;
                }
                assert_eq!(p.search(&probe), want, "step {step}, probe {probe:?}");
                assert_eq!(p.search(&probe), want, "step {step}, probe {probe:?}");
            }
        }
        assert!(
            from_hints > 15_000,
            "{from_hints} searches answered from the hints"
        );
    }

    /// In-place edits against a model: fragments, compaction and regrowth keep the page
    /// valid (it decodes) and equal to the model.
    #[test]
    fn in_place_edits_match_a_model() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut p = Page::new(4096, Pgno(9), ObjId(7), PageFlags::LEAF, 0);
        let mut model: Vec<Node> = Vec::new();
        for step in 0..20_000 {
            let used: usize = model.iter().map(|n| n.node_ref().size()).sum();
            assert_eq!(p.used(), used);
            let i = rng.usize(0..=model.len());
            match rng.u8(0..6) {
                4 => {
                    let run: Vec<Node> = (0..rng.usize(0..5))
                        .map(|_| Node {
                            flags: NodeFlags(rng.u8(0..4)),
                            key: vec![rng.u8(..); rng.usize(0..20)],
                            data: vec![rng.u8(..); rng.usize(0..300)],
                        })
                        .collect();
                    let size: usize = run.iter().map(|n| n.node_ref().size()).sum();
                    let fits = used + size <= 4096 - 44;
                    let refs: Vec<NodeRef<'_>> = run.iter().map(Node::node_ref).collect();
                    assert_eq!(p.insert_nodes(i, &refs), fits);
                    if fits {
                        model.splice(i..i, run);
                    }
                }
                5 => {
                    let j = rng.usize(i..=model.len() + 1);
                    let ok = p.remove_nodes(i..j);
                    assert_eq!(ok, j <= model.len());
                    if ok {
                        model.drain(i..j);
                    }
                }
                0 | 1 => {
                    let key = vec![rng.u8(..); rng.usize(0..20)];
                    let data = vec![rng.u8(..); rng.usize(0..300)];
                    let n = Node {
                        flags: NodeFlags(rng.u8(0..4)),
                        key,
                        data,
                    };
                    let fits = used + n.node_ref().size() <= 4096 - 44;
                    assert_eq!(p.insert_node(i, n.flags, &n.key, &n.data), fits);
                    if fits {
                        model.insert(i, n);
                    }
                }
                2 => {
                    let ok = p.remove_node(i);
                    assert_eq!(ok, i < model.len());
                    if ok {
                        model.remove(i);
                    }
                }
                _ => {
                    let data = vec![rng.u8(..); rng.usize(0..400)];
                    let fits = model
                        .get(i)
                        .is_some_and(|n| used - n.data.len() + data.len() <= 4096 - 44);
                    assert_eq!(p.replace_data(i, &data), fits);
                    if fits {
                        model[i].data = data;
                        if p.set_node_flags(i, NodeFlags(1)) {
                            model[i].flags = NodeFlags(1);
                        }
                    }
                }
            }
            assert_eq!(p.to_nodes(), model, "step {step}");
            if step % 97 == 0 {
                let q = Page::decode(&p.sealed(), Pgno(9)).unwrap();
                assert_eq!(q.sealed(), p.sealed(), "step {step}");
            }
        }
    }

    /// A page built in a reused slab buffer (whatever bytes a page left there) is byte for
    /// byte the page built in a zeroed one.
    #[test]
    fn a_page_built_in_a_reused_buffer_is_the_page_built_fresh() {
        let slabs = crate::pagebuf::SlabPool::new(4096);
        let nodes: Vec<Node> = (0u8..30)
            .map(|i| Node {
                flags: NodeFlags(i % 3),
                key: vec![b'k', i],
                data: vec![i; usize::from(i) * 3],
            })
            .collect();
        for round in 0..4 {
            // Garbage left in the pool's buffers by pages dropped before.
            let dirty: Vec<Page> = (0..3)
                .map(|_| {
                    let mut p = Page {
                        pgno: Pgno(1),
                        buf: slabs.any(),
                        hints: Hints::default(),
                    };
                    p.buf_mut().fill(0xa5 ^ round);
                    p
                })
                .collect();
            drop(dirty);
            let part = nodes.get(..10 * round as usize).unwrap();
            let head = (Pgno(6), ObjId(7), PageFlags::LEAF, 0);
            let built = Page::built_in(&slabs, head, part.iter().map(Node::node_ref)).unwrap();
            let mut fresh = Page::new(4096, Pgno(6), ObjId(7), PageFlags::LEAF, 0);
            fresh.rebuild(&[], part.iter().map(Node::node_ref)).unwrap();
            assert_eq!(built.sealed(), fresh.sealed(), "round {round}");
            assert_eq!(built.to_nodes(), part);
        }
    }

    #[test]
    fn set_ext_keeps_the_nodes_in_place_or_by_rebuild() {
        let mut p = sample(4096, 5);
        let nodes = p.to_nodes();
        p.set_ext(&[1; 40]).unwrap();
        let free = p.free();
        // Same length: rewritten in place, nothing moves.
        p.set_ext(&[2; 40]).unwrap();
        assert_eq!(p.ext(), &[2; 40]);
        assert_eq!(p.free(), free);
        assert_eq!(p.to_nodes(), nodes);
        // Another length: rebuilt.
        p.set_ext(&[3; 8]).unwrap();
        assert_eq!(p.ext(), &[3; 8]);
        assert_eq!(p.free(), free + 32);
        assert_eq!(p.to_nodes(), nodes);
        let q = Page::decode(&p.sealed(), Pgno(5)).unwrap();
        assert_eq!(q.ext(), &[3; 8]);
    }

    #[test]
    fn wrong_place_and_damage_are_detected() {
        let b = sample(4096, 5).sealed();
        assert_eq!(
            Page::decode(&b, Pgno(6)).unwrap_err(),
            ErrorKind::ReadPgnoVerifyFailure
        );
        assert_eq!(
            Page::decode(&vec![0; 4096], Pgno(6)).unwrap_err(),
            ErrorKind::PageNotInitialized
        );
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            let e = Page::decode(&c, Pgno(5)).unwrap_err();
            assert_eq!(e.pgno(), Some(Pgno(5)));
        }
    }

    #[test]
    fn line_comparison_matches_byte_comparison() {
        let mut before = Page::new(4096, Pgno(7), ObjId(4), PageFlags::LEAF, 0);
        for i in 0u8..30 {
            assert!(before.insert_node(usize::from(i), NodeFlags(0), &[b'k', i], &[i; 50]));
        }
        before.set_dbtime(DbTime(10));
        // Changes that keep lines in place, move them, rewrite them in place with the same
        // length (same tag, other bytes) and add lines.
        let changes: [&dyn Fn(&mut Page); 5] = [
            &|p| assert!(p.insert_node(12, NodeFlags(0), b"k\x0b\x01", b"new")),
            &|p| assert!(p.replace_data(5, &[0xEE; 50])),
            &|p| assert!(p.replace_data(20, b"short")),
            &|p| {
                for i in (15..30).rev() {
                    assert!(p.remove_node(i));
                }
            },
            &|p| {
                p.set_dbtime(DbTime(11));
                p.set_next(Pgno(9));
            },
        ];
        for mask in 0u32..(1 << changes.len()) {
            let mut after = before.clone();
            for (b, change) in changes.iter().enumerate() {
                if mask & (1 << b) != 0 {
                    change(&mut after);
                }
            }
            let lines = LineCmp::new(&before, &after);
            let (nb, na) = (before.count(), after.count());
            let pre = (0..nb.min(na))
                .take_while(|&k| before.node_line(k) == after.node_line(k))
                .count();
            assert_eq!(lines.common_prefix(), pre, "changes {mask:#b}");
            for skip in 0..=nb.min(na) {
                let suf = (0..(nb - skip).min(na - skip))
                    .take_while(|&k| before.node_line(nb - 1 - k) == after.node_line(na - 1 - k))
                    .count();
                assert_eq!(
                    lines.common_suffix(skip),
                    suf,
                    "changes {mask:#b}, skip {skip}"
                );
            }
            for j in 0..=before.count() {
                for i in 0..=after.count() {
                    assert_eq!(
                        lines.eq(j, i),
                        before.node_line(j) == after.node_line(i),
                        "changes {mask:#b}, node {j} before, node {i} after"
                    );
                }
            }
        }
    }

    #[test]
    fn probe_order_is_byte_order() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..100_000 {
            let a: Vec<u8> = (0..rng.usize(0..12)).map(|_| rng.u8(0..3)).collect();
            let b: Vec<u8> = (0..rng.usize(0..12)).map(|_| rng.u8(0..3)).collect();
            assert_eq!(Probe::new(&b).cmp(&a), a.cmp(&b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn head_order_agrees_with_byte_order() {
        // Keys of 0 to 20 bytes over a small alphabet (many shared prefixes and equal heads),
        // on pages filled to the end, against search keys of 8 to 20 bytes.
        let mut rng = fastrand::Rng::with_seed(9);
        let mut decided = 0;
        for round in 0..200 {
            let mut p = Page::new(512, Pgno(1), ObjId(1), PageFlags::ROOT, 1);
            let mut i = 0;
            loop {
                let k: Vec<u8> = (0..rng.usize(0..20)).map(|_| rng.u8(0..3)).collect();
                let d = vec![0; rng.usize(0..3)];
                if !p.insert_node(i, NodeFlags(0), &k, &d) {
                    break;
                }
                i += 1;
            }
            let keys = p.keys();
            for _ in 0..200 {
                let b: Vec<u8> = (0..rng.usize(8..20)).map(|_| rng.u8(0..3)).collect();
                let head = Probe::new(&b).head.expect("8 bytes or more");
                for j in 0..p.count() {
                    if let Some(o) = keys.head_order(j, head) {
                        decided += 1;
                        assert_eq!(
                            o,
                            p.key(j).cmp(&b),
                            "round {round}, node {j} {:?}, search key {b:?}",
                            p.key(j)
                        );
                    }
                }
            }
        }
        assert!(decided > 100_000, "the word decided {decided} comparisons");
    }

    /// The child a descent takes, as the tags and keys alone give it.
    fn plain_child(p: &Page, key: &[u8]) -> Option<(usize, Pgno)> {
        let keys = p.keys();
        let i = child_index_in(&keys, key, 0..keys.len().saturating_sub(1));
        keys.child(i).map(|c| (i, c))
    }

    #[test]
    fn internal_hints_answer_as_the_tags_through_changes() {
        // An internal page of short separators sharing a prefix, changed as splits and
        // merges change one (separator inserts, child replacements, removals, the last node's
        // removal, a separator outside the prefix, header writes, a copy), searched after
        // each step through its hints (once built) and through the tags alone.
        let mut rng = fastrand::Rng::with_seed(11);
        let mut p = Page::new(8192, Pgno(3), ObjId(9), PageFlags(0), 1);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let sep = |rng: &mut fastrand::Rng| {
            let mut k = vec![0x7f, 3];
            k.extend((0..rng.usize(0..5)).map(|_| rng.u8(..)));
            k
        };
        while keys.len() < 300 {
            let k = sep(&mut rng);
            if let Err(i) = keys.binary_search(&k) {
                keys.insert(i, k);
            }
        }
        for (i, k) in keys.iter().enumerate() {
            assert!(p.insert_node(i, NodeFlags(0), k, &(i as u32 + 100).to_le_bytes()));
        }
        assert!(p.insert_node(keys.len(), NodeFlags(0), b"", &7u32.to_le_bytes()));
        let mut hinted = 0;
        for step in 0..4_000 {
            let n = p.count();
            match rng.u8(0..20) {
                0..=7 if n < 400 => {
                    let k = if rng.u8(0..40) == 0 {
                        vec![0x7e]
                    } else {
                        sep(&mut rng)
                    };
                    let at = p.search(&k);
                    if !at.1 && at.0 < n {
                        let child = rng.u32(..).to_le_bytes();
                        assert!(p.insert_node(at.0, NodeFlags(0), &k, &child));
                    }
                }
                8..=12 => {
                    let i = rng.usize(0..n);
                    assert!(p.replace_data(i, &rng.u32(..).to_le_bytes()));
                }
                13..=16 if n > 2 => {
                    // Mostly a separator; now and then the last node.
                    let i = if rng.u8(0..30) == 0 {
                        n - 1
                    } else {
                        rng.usize(0..n - 1)
                    };
                    assert!(p.remove_node(i));
                }
                17 => p.set_dbtime(DbTime(step)),
                18 => {
                    let mut q = Page::new(8192, Pgno(3), ObjId(9), PageFlags(0), 1);
                    q.copy_from(&p);
                    p = q;
                }
                _ => {}
            }
            for _ in 0..20 {
                let mut probe = vec![0x7f, rng.u8(2..5)];
                probe.extend((0..rng.usize(0..6)).map(|_| rng.u8(..)));
                if rng.u8(0..10) == 0 {
                    probe = vec![rng.u8(..)];
                }
                let m = p.count() - 1;
                if p.hints.wide_candidates(m, &probe).is_some() {
                    hinted += 1;
                }
                assert_eq!(
                    p.child_entry_for(&probe),
                    plain_child(&p, &probe),
                    "step {step}, probe {probe:?}"
                );
            }
        }
        assert!(
            hinted > 50_000,
            "{hinted} of 80,000 searches through the hints"
        );
    }

    #[test]
    fn child_index_ignores_last_key() {
        let mut p = Page::new(4096, Pgno(1), ObjId(1), PageFlags::ROOT, 1);
        for (i, k) in [b"d".as_slice(), b"m", b""].iter().enumerate() {
            assert!(p.insert_node(i, NodeFlags(0), k, &[0; 4]));
        }
        assert_eq!(p.child_index(b"a"), 0);
        assert_eq!(p.child_index(b"d"), 1);
        assert_eq!(p.child_index(b"z"), 2);
    }
}
