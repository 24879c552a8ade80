//! The page format: a 40-byte page header, nodes growing up from the header, and a tag array
//! ("lines") growing down from the end of the page (ESE's `CPAGE`).
//!
//! In memory a page is kept decoded ([`Page`]: a header plus a `Vec` of [`Node`]s); it is
//! encoded when written and decoded (and verified) when read. Encoding is compact: the nodes are
//! stored in tag order with no gaps, so the free space of an encoded page is one contiguous
//! hole between the last node and the tag array. Byte tables: `docs/format-database.md`.
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

use ese_core::checksum::crc32_seeded;
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

/// One line of a page: flags, key and data. On internal pages the data is the child's page
/// number (4 bytes, little-endian).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Node {
    pub(crate) flags: NodeFlags,
    pub(crate) key: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

impl Node {
    /// Bytes this node takes on the page, tag included.
    pub(crate) fn size(&self) -> usize {
        NODE_OVERHEAD + self.key.len() + self.data.len()
    }

    /// The child page of an internal node.
    pub(crate) fn child(&self) -> Option<Pgno> {
        let b: [u8; 4] = self.data.as_slice().try_into().ok()?;
        Some(Pgno::from_bytes(b))
    }
}

/// A decoded page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) pgno: Pgno,
    pub(crate) dbtime: DbTime,
    pub(crate) prev: Pgno,
    pub(crate) next: Pgno,
    pub(crate) objid: ObjId,
    pub(crate) flags: PageFlags,
    pub(crate) level: u8,
    /// Tag 0: the external header (space header on the space page; empty on tree pages).
    pub(crate) ext: Vec<u8>,
    pub(crate) nodes: Vec<Node>,
    /// Bytes used by the nodes (tags included), kept up to date by the mutators.
    used: usize,
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

impl Page {
    /// An empty page.
    pub(crate) fn new(pgno: Pgno, objid: ObjId, flags: PageFlags, level: u8) -> Page {
        Page {
            pgno,
            dbtime: DbTime(0),
            prev: Pgno::NULL,
            next: Pgno::NULL,
            objid,
            flags,
            level,
            ext: Vec::new(),
            nodes: Vec::new(),
            used: 0,
        }
    }

    /// Bytes the nodes take (tags included), not counting tag 0.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.level == 0
    }

    pub(crate) fn insert_node(&mut self, idx: usize, node: Node) {
        self.used += node.size();
        self.nodes.insert(idx.min(self.nodes.len()), node);
    }

    pub(crate) fn remove_node(&mut self, idx: usize) -> Option<Node> {
        if idx >= self.nodes.len() {
            return None;
        }
        let n = self.nodes.remove(idx);
        self.used -= n.size();
        Some(n)
    }

    pub(crate) fn set_nodes(&mut self, nodes: Vec<Node>) {
        self.used = nodes.iter().map(Node::size).sum();
        self.nodes = nodes;
    }

    pub(crate) fn take_nodes(&mut self) -> Vec<Node> {
        self.used = 0;
        std::mem::take(&mut self.nodes)
    }

    /// Replaces the data of node `idx`; returns false if there is no such node.
    pub(crate) fn replace_data(&mut self, idx: usize, data: Vec<u8>) -> bool {
        let Some(n) = self.nodes.get_mut(idx) else {
            return false;
        };
        self.used = self.used - n.data.len() + data.len();
        n.data = data;
        true
    }

    /// Index of the first node whose key is `>= key` and whether it is equal.
    pub(crate) fn search(&self, key: &[u8]) -> (usize, bool) {
        match self.nodes.binary_search_by(|n| n.key.as_slice().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// On an internal page: the index of the child that covers `key` (the first node whose
    /// key is greater than `key`; the last node's key is not used: it is bounded by the parent).
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        let n = self.nodes.len();
        if n == 0 {
            return 0;
        }
        let last = n - 1;
        let slice = self.nodes.get(..last).unwrap_or_default();
        slice.partition_point(|nd| nd.key.as_slice() <= key)
    }

    /// Encodes the page into `page_size` bytes with its checksum.
    ///
    /// # Errors
    /// `InternalError` if the nodes do not fit (an engine bug, never bytes from disk).
    pub(crate) fn encode(&self, page_size: usize) -> Result<Vec<u8>> {
        let ntags = self.nodes.len() + 1;
        let node_bytes: usize = self.ext.len()
            + self
                .nodes
                .iter()
                .map(|n| NODE_HEADER_LEN + n.key.len() + n.data.len())
                .sum::<usize>();
        let need = PAGE_HEADER_LEN + node_bytes + ntags * TAG_LEN;
        if need > page_size || ntags > usize::from(u16::MAX) {
            return Err(Error::new(ErrorKind::InternalError)
                .with_pgno(self.pgno)
                .with_message(format!("page content of {need} bytes exceeds the page")));
        }
        let free = page_size - need;
        let mut b = Vec::with_capacity(page_size);
        b.extend_from_slice(&[0u8; 4]);
        b.extend_from_slice(&self.pgno.to_bytes());
        b.extend_from_slice(&self.dbtime.to_bytes());
        b.extend_from_slice(&self.prev.to_bytes());
        b.extend_from_slice(&self.next.to_bytes());
        b.extend_from_slice(&self.objid.to_bytes());
        b.extend_from_slice(&self.flags.0.to_le_bytes());
        b.extend_from_slice(&(ntags as u16).to_le_bytes());
        b.extend_from_slice(&(free as u16).to_le_bytes());
        b.extend_from_slice(&((PAGE_HEADER_LEN + node_bytes) as u16).to_le_bytes());
        b.push(self.level);
        b.push(0);
        let mut tags: Vec<(u16, u16)> = Vec::with_capacity(ntags);
        tags.push((self.ext.len() as u16, b.len() as u16));
        b.extend_from_slice(&self.ext);
        for n in &self.nodes {
            let ib = b.len() as u16;
            b.push(n.flags.0);
            b.extend_from_slice(&(n.key.len() as u16).to_le_bytes());
            b.extend_from_slice(&n.key);
            b.extend_from_slice(&n.data);
            tags.push(((NODE_HEADER_LEN + n.key.len() + n.data.len()) as u16, ib));
        }
        b.resize(page_size - ntags * TAG_LEN, 0);
        // Tag i sits at page_size - 4 * (i + 1): the array grows down from the end.
        for (cb, ib) in tags.iter().rev() {
            b.extend_from_slice(&cb.to_le_bytes());
            b.extend_from_slice(&ib.to_le_bytes());
        }
        seal(&mut b, self.pgno);
        Ok(b)
    }

    /// Decodes and verifies a page read from the place of `pgno`.
    ///
    /// # Errors
    /// `PageNotInitialized` for an all-zero page; `ReadVerifyFailure` on a checksum mismatch;
    /// `ReadPgnoVerifyFailure` when the page holds another page number; `PageTagCorrupted`,
    /// `NodeCorrupted` or `DatabaseCorrupted` for impossible offsets, lengths or flags. Every
    /// error names `pgno`.
    pub(crate) fn decode(b: &[u8], pgno: Pgno) -> Result<Page> {
        verify(b, pgno)?;
        let ps = b.len();
        let bad = |m: &str| corrupt(ErrorKind::DatabaseCorrupted, pgno, m);
        let hdr = |o| rd_u32(b, o).ok_or_else(|| bad("short page"));
        let dbtime = DbTime(rd_u64(b, 8).ok_or_else(|| bad("short page"))?);
        let prev = Pgno(hdr(16)?);
        let next = Pgno(hdr(20)?);
        let objid = ObjId(hdr(24)?);
        let flags = PageFlags(hdr(28)?);
        if flags.0 & !PageFlags::ALL.0 != 0 {
            return Err(bad(&format!("unknown page flags {:#x}", flags.0)));
        }
        let ntags = usize::from(rd_u16(b, 32).ok_or_else(|| bad("short page"))?);
        let ib_mic_free = usize::from(rd_u16(b, 36).ok_or_else(|| bad("short page"))?);
        let level = *b.get(38).ok_or_else(|| bad("short page"))?;
        if ntags == 0 || PAGE_HEADER_LEN + ntags * TAG_LEN > ps {
            return Err(corrupt(
                ErrorKind::BadLineCount,
                pgno,
                format!("{ntags} tags do not fit the page"),
            ));
        }
        let tag_start = ps - ntags * TAG_LEN;
        if ib_mic_free < PAGE_HEADER_LEN || ib_mic_free > tag_start {
            return Err(bad(&format!("node area end {ib_mic_free} out of range")));
        }
        let mut ext = Vec::new();
        let mut nodes = Vec::with_capacity(ntags - 1);
        let mut used = 0usize;
        for i in 0..ntags {
            let t = ps - (i + 1) * TAG_LEN;
            let tag_err = || corrupt(ErrorKind::PageTagCorrupted, pgno, format!("tag {i}"));
            let cb = usize::from(rd_u16(b, t).ok_or_else(tag_err)?);
            let ib = usize::from(rd_u16(b, t + 2).ok_or_else(tag_err)?);
            if ib < PAGE_HEADER_LEN || ib + cb > ib_mic_free {
                return Err(corrupt(
                    ErrorKind::PageTagCorrupted,
                    pgno,
                    format!("tag {i} (ib {ib}, cb {cb}) outside the node area"),
                ));
            }
            let line = b.get(ib..ib + cb).ok_or_else(tag_err)?;
            if i == 0 {
                ext = line.to_vec();
                continue;
            }
            let node_err =
                |m: &str| corrupt(ErrorKind::NodeCorrupted, pgno, format!("node {i}: {m}"));
            let (&f, rest) = line.split_first().ok_or_else(|| node_err("empty"))?;
            let nflags = NodeFlags(f);
            if nflags.0 & !NodeFlags::ALL.0 != 0 {
                return Err(node_err("unknown flags"));
            }
            let cb_key = usize::from(rd_u16(rest, 0).ok_or_else(|| node_err("short header"))?);
            let key = rest
                .get(2..2 + cb_key)
                .ok_or_else(|| node_err("key longer than the node"))?;
            let data = rest.get(2 + cb_key..).unwrap_or_default();
            if level > 0 && data.len() != 4 {
                return Err(node_err("internal node without a 4-byte child"));
            }
            let node = Node {
                flags: nflags,
                key: key.to_vec(),
                data: data.to_vec(),
            };
            used += node.size();
            nodes.push(node);
        }
        Ok(Page {
            pgno,
            dbtime,
            prev,
            next,
            objid,
            flags,
            level,
            ext,
            nodes,
            used,
        })
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    fn sample(pgno: u32) -> Page {
        let mut p = Page::new(Pgno(pgno), ObjId(7), PageFlags::LEAF, 0);
        p.dbtime = DbTime(99);
        p.next = Pgno(12);
        for i in 0u32..20 {
            p.insert_node(
                i as usize,
                Node {
                    flags: NodeFlags(0),
                    key: crate::db::key_u32(i).to_vec(),
                    data: vec![i as u8; i as usize],
                },
            );
        }
        p
    }

    #[test]
    fn round_trips_every_page_size() {
        for ps in [4096, 8192, 16384, 32768] {
            let p = sample(5);
            let b = p.encode(ps).unwrap();
            assert_eq!(b.len(), ps);
            let q = Page::decode(&b, Pgno(5)).unwrap();
            assert_eq!(p, q);
        }
    }

    #[test]
    fn wrong_place_and_damage_are_detected() {
        let b = sample(5).encode(4096).unwrap();
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
    fn child_index_ignores_last_key() {
        let mut p = Page::new(Pgno(1), ObjId(1), PageFlags::ROOT, 1);
        for (i, k) in [b"d".as_slice(), b"m", b""].iter().enumerate() {
            p.insert_node(
                i,
                Node {
                    flags: NodeFlags(0),
                    key: k.to_vec(),
                    data: vec![0; 4],
                },
            );
        }
        assert_eq!(p.child_index(b"a"), 0);
        assert_eq!(p.child_index(b"d"), 1);
        assert_eq!(p.child_index(b"z"), 2);
    }
}
