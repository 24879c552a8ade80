//! Cursors (ESE's `FUCB` on a directory): positioned on one node, moving forward and
//! backward, valid across concurrent changes.
//!
//! A cursor holds no latch between calls. It keeps a pin on its current page, the page's
//! dbtime when it read it, the node index and a copy of the node's key and data (in buffers
//! it reuses, so moving allocates nothing). Moving is cheap while the page is unchanged (same
//! dbtime). At the end of a leaf it steps to the sibling leaf with latch coupling, but only
//! with a `try` latch on the sibling: a writer may hold that sibling while it waits for the
//! leaf the cursor holds (writers latch by level and page number, not key order), so on
//! contention the cursor lets go and re-seeks from the root past the leaf's last key. When the
//! page changed since the cursor read it, it first looks for its place on that same page: if
//! the page is still a leaf of the tree and holds nodes on both sides of the remembered key,
//! the neighbour it wants is on the page (a leaf holds a contiguous key range of its tree, so
//! no node of another page lies between two nodes of one page), and it moves there without a
//! descent. Otherwise it re-seeks from the root by its remembered key (ESE's re-seek by
//! bookmark). It therefore never waits for a latch while holding one, except down the tree.

use std::borrow::Cow;
use std::sync::Arc;

use ese_core::{DbTime, Error, ErrorKind, Pgno, Result};

use crate::cache::Frame;
use crate::latch::ReadGuard;
use crate::page::{NodeFlags, NodeRef, Page, PageFlags};
use crate::tree::{Target, Tree};

/// How [`Cursor::seek`] matches a key (ESE's `JET_bitSeek*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeekOp {
    /// The node with exactly this key (`JET_bitSeekEQ`).
    Eq,
    /// The last node with a smaller key (`JET_bitSeekLT`).
    Lt,
    /// The last node with a key smaller or equal (`JET_bitSeekLE`).
    Le,
    /// The first node with a key greater or equal (`JET_bitSeekGE`).
    Ge,
    /// The first node with a greater key (`JET_bitSeekGT`).
    Gt,
}

#[derive(Debug)]
struct Pos {
    frame: Arc<Frame>,
    dbtime: DbTime,
    idx: usize,
}

/// Copies the key and data of node `n` into a cursor's buffers (keeping their allocations).
fn load_node(key: &mut Vec<u8>, data: &mut Vec<u8>, n: NodeRef<'_>) {
    key.clear();
    key.extend_from_slice(n.key);
    data.clear();
    data.extend_from_slice(n.data);
}

/// A leaf page a cursor was on ([`Cursor::leaf_hint`]): where a change of the cursor's node
/// tries first, as ESE's modifications work on the cursor's current page instead of seeking
/// from the root. Only a hint: the change checks under the tree's writer mutex that the page
/// is still a live leaf of the tree holding the key, and descends from the root otherwise.
#[derive(Debug, Clone)]
pub struct LeafHint {
    pub(crate) frame: Arc<Frame>,
    /// The index of the cursor's node on the page when the cursor read it: where the change
    /// looks for its key first ([`Page::search_from`]), which holds while the page did not
    /// change in between.
    pub(crate) idx: usize,
}

/// A cursor on a [`Tree`]. Not positioned until a seek or move succeeds.
#[derive(Debug)]
pub struct Cursor {
    tree: Tree,
    pos: Option<Pos>,
    /// The key of the current node, kept after moving off the end so the cursor can return.
    key: Vec<u8>,
    /// Whether `key` holds a key (the cursor was positioned at least once).
    has_key: bool,
    data: Vec<u8>,
    flags: NodeFlags,
    /// After moving off an end: `Some(true)` past the last node, `Some(false)` before the
    /// first; the next move in the other direction returns to the node at that end.
    off_end: Option<bool>,
}

/// Most leaves a single move visits before giving up (corruption guard against an endless
/// chain of empty leaves, which a valid tree never has).
const MAX_HOPS: usize = 1 << 20;

/// Whether `found` lies after `target` (before it when `!forward`), or equals it when
/// `inclusive`.
fn beyond(found: &[u8], target: &[u8], inclusive: bool, forward: bool) -> bool {
    match found.cmp(target) {
        std::cmp::Ordering::Equal => inclusive,
        std::cmp::Ordering::Greater => forward,
        std::cmp::Ordering::Less => !forward,
    }
}

fn out_of_order(pgno: Pgno) -> Error {
    Error::new(ErrorKind::DatabaseCorrupted)
        .with_pgno(pgno)
        .with_message("a seek landed on the wrong side of its key: keys out of order")
}

fn endless() -> Error {
    Error::new(ErrorKind::DatabaseCorrupted).with_message("endless leaf chain")
}

/// On a leaf of the tree: the index of the first node with a key `> key` (`>=` when
/// `inclusive`) when that node is certainly the first such node of the whole tree, i.e. when
/// the page also holds a node `<= key` (or `key` itself): the leaf's nodes are then a
/// contiguous part of the tree's order on both sides of `key`. `None` when the answer may lie
/// on another page.
pub(crate) fn successor_on_page(page: &Page, key: &[u8], inclusive: bool) -> Option<usize> {
    let (i, found) = page.search(key);
    let j = if found && !inclusive { i + 1 } else { i };
    (j < page.count() && (found || i > 0)).then_some(j)
}

/// On a leaf of the tree: the index of the last node with a key `< key` (`<=` when
/// `inclusive`) when that node is certainly the last such node of the whole tree (the page
/// also holds a node `>= key`); `None` when the answer may lie on another page.
pub(crate) fn predecessor_on_page(page: &Page, key: &[u8], inclusive: bool) -> Option<usize> {
    let (i, found) = page.search(key);
    if found && inclusive {
        return Some(i);
    }
    (i > 0 && (found || i < page.count())).then(|| i - 1)
}

impl Cursor {
    pub(crate) fn new(tree: Tree) -> Cursor {
        Cursor {
            tree,
            pos: None,
            key: Vec::new(),
            has_key: false,
            data: Vec::new(),
            flags: NodeFlags::default(),
            off_end: None,
        }
    }

    /// Positions on node `idx` of the latched leaf; false if there is no such node.
    fn set(&mut self, guard: &ReadGuard, idx: usize) -> bool {
        let frame = guard.frame();
        let Some(n) = guard.node(idx) else {
            return false;
        };
        self.load_node(n);
        match &mut self.pos {
            Some(p) if Arc::ptr_eq(&p.frame, frame) => {
                p.dbtime = guard.dbtime();
                p.idx = idx;
            }
            _ => {
                self.pos = Some(Pos {
                    frame: Arc::clone(frame),
                    dbtime: guard.dbtime(),
                    idx,
                });
            }
        }
        true
    }

    /// The step of a move to the next (`forward`) or previous node when that node is on the
    /// cursor's page and the page has not changed since the cursor read it: the page is
    /// latched through the cursor's own pin (no second reference on the frame). Returns false,
    /// changing nothing, when the step needs the general path.
    #[inline]
    fn step_on_page(&mut self, forward: bool) -> bool {
        let Some(p) = &mut self.pos else {
            return false;
        };
        let page = p.frame.latch.read();
        if page.dbtime() != p.dbtime {
            return false;
        }
        let idx = if forward {
            p.idx + 1
        } else if let Some(i) = p.idx.checked_sub(1) {
            i
        } else {
            return false;
        };
        let Some(n) = page.node(idx) else {
            return false;
        };
        p.idx = idx;
        // The next step's node, while this one is read (a range scan goes on stepping).
        let after = if forward {
            idx + 1
        } else {
            idx.wrapping_sub(1)
        };
        page.prefetch_node(after);
        // `p` borrows `self.pos`; the node's copy goes to the other fields.
        load_node(&mut self.key, &mut self.data, n);
        self.flags = n.flags;
        self.off_end = None;
        self.has_key = true;
        true
    }

    /// Copies node `n` into the cursor: it is on it.
    fn load_node(&mut self, n: NodeRef<'_>) {
        load_node(&mut self.key, &mut self.data, n);
        self.flags = n.flags;
        self.off_end = None;
        self.has_key = true;
    }

    /// Whether the latched page is a live leaf of this tree (a freed page is flagged empty;
    /// a page is never reused by another tree without its objid changing).
    fn is_own_leaf(&self, guard: &ReadGuard) -> bool {
        guard.objid() == self.tree.objid()
            && guard.is_leaf()
            && !guard.flags().contains(PageFlags::EMPTY)
    }

    fn off(&mut self, past_end: bool) -> bool {
        self.pos = None;
        self.off_end = Some(past_end);
        false
    }

    /// The sibling leaf `pgno` of the latched leaf `from` (whose page is `from_page`),
    /// read-latched without waiting; `None` when the latch is taken (the caller re-seeks).
    fn sibling(
        &self,
        from: Pgno,
        from_page: &Page,
        pgno: Pgno,
        next: bool,
    ) -> Result<Option<ReadGuard>> {
        let Some(frame) = self.tree.sh.cache.try_get(pgno)? else {
            return Ok(None);
        };
        let Some(guard) = ReadGuard::try_new(frame) else {
            return Ok(None);
        };
        let back = if next { guard.prev() } else { guard.next() };
        if guard.objid() != self.tree.objid()
            || !guard.is_leaf()
            || guard.flags().contains(PageFlags::EMPTY)
            || back != from
        {
            return Err(Error::new(ErrorKind::BadPageLink)
                .with_pgno(pgno)
                .with_message(format!("sibling of leaf {from} does not link back")));
        }
        // The sibling's keys lie strictly beyond those of the leaf it is reached from (its
        // last node going forward, its first going backward; not the cursor's remembered key,
        // which after a seek belongs to an earlier position). Otherwise the links form a cycle
        // that passes the back-link check (two leaves linked both ways), and a scan would
        // never end.
        let n = from_page.count();
        if n > 0 && guard.count() > 0 {
            let edge = guard.key(if next { 0 } else { guard.count() - 1 });
            let beyond = if next {
                edge > from_page.key(n - 1)
            } else {
                edge < from_page.key(0)
            };
            if !beyond {
                return Err(Error::new(ErrorKind::BadPageLink)
                    .with_pgno(pgno)
                    .with_message(format!(
                        "sibling of leaf {from} holds keys out of order: cycle or cross-link"
                    )));
            }
        }
        Ok(Some(guard))
    }

    /// Positions on the first node with key `> key` (or `>=` when `inclusive`).
    fn first_from(&mut self, key: &[u8], inclusive: bool) -> Result<bool> {
        let mut target = Cow::Borrowed(key);
        let mut inclusive = inclusive;
        let mut hops = 0;
        while hops < MAX_HOPS {
            let leaf = self.tree.descend(Target::Key(&target))?;
            let mut guard = leaf.guard;
            let (i, found) = guard.search(&target);
            let mut i = if found && !inclusive { i + 1 } else { i };
            loop {
                hops += 1;
                if hops >= MAX_HOPS {
                    return Err(endless());
                }
                if self.set(&guard, i) {
                    // On a sound tree the node found lies after the target. A leaf whose keys
                    // are out of order (a corrupt page with a valid checksum) can answer a key
                    // at or before it, and a scan that seeks past its current key would then
                    // never end.
                    if !beyond(&self.key, &target, inclusive, true) {
                        return Err(out_of_order(guard.frame().pgno));
                    }
                    // A seek for the first key at or after another starts a range scan, as
                    // often as not: its first step finds its node in the CPU cache.
                    guard.prefetch_node(i + 1);
                    return Ok(true);
                }
                let next = guard.next();
                if next == Pgno::NULL {
                    return Ok(self.off(true));
                }
                if let Some(g) = self.sibling(guard.frame().pgno, &guard, next, true)? {
                    (guard, i) = (g, 0);
                    continue;
                }
                // Contended: re-seek past this leaf's last key.
                let n = guard.count();
                if n > 0 {
                    target = Cow::Owned(guard.key(n - 1).to_vec());
                    inclusive = false;
                }
                break;
            }
        }
        Err(endless())
    }

    /// Positions on the last node with key `< key` (or `<=` when `inclusive`).
    fn last_before(&mut self, key: &[u8], inclusive: bool) -> Result<bool> {
        let mut target = Cow::Borrowed(key);
        let mut inclusive = inclusive;
        let mut hops = 0;
        while hops < MAX_HOPS {
            let leaf = self.tree.descend(Target::Key(&target))?;
            let mut guard = leaf.guard;
            let (i, found) = guard.search(&target);
            let mut end = if found && inclusive { i + 1 } else { i };
            loop {
                hops += 1;
                if hops >= MAX_HOPS {
                    return Err(endless());
                }
                if end > 0 && self.set(&guard, end - 1) {
                    if !beyond(&self.key, &target, inclusive, false) {
                        return Err(out_of_order(guard.frame().pgno));
                    }
                    return Ok(true);
                }
                let prev = guard.prev();
                if prev == Pgno::NULL {
                    return Ok(self.off(false));
                }
                if let Some(g) = self.sibling(guard.frame().pgno, &guard, prev, false)? {
                    end = g.count();
                    guard = g;
                    continue;
                }
                // Contended: re-seek before this leaf's first key.
                if guard.count() > 0 {
                    target = Cow::Owned(guard.key(0).to_vec());
                    inclusive = false;
                }
                break;
            }
        }
        Err(endless())
    }

    /// Positions the cursor by key (ESE `JetSeek`). Returns `Ok(())` when positioned.
    ///
    /// # Errors
    /// `RecordNotFound` when no node matches (the cursor is then not positioned); page read
    /// errors (`ReadVerifyFailure`, `BadParentPageLink`, ...).
    pub fn seek(&mut self, key: &[u8], op: SeekOp) -> Result<()> {
        let found = match op {
            SeekOp::Eq => {
                let leaf = self.tree.descend(Target::Key(key))?;
                match leaf.guard.search(key) {
                    (i, true) => self.set(&leaf.guard, i),
                    _ => false,
                }
            }
            SeekOp::Ge => self.first_from(key, true)?,
            SeekOp::Gt => self.first_from(key, false)?,
            SeekOp::Le => self.last_before(key, true)?,
            SeekOp::Lt => self.last_before(key, false)?,
        };
        if found {
            Ok(())
        } else {
            self.pos = None;
            Err(Error::new(ErrorKind::RecordNotFound))
        }
    }

    /// Moves to the first node (ESE `JET_MoveFirst`); returns false if the tree is empty.
    ///
    /// # Errors
    /// Page read errors.
    pub fn move_first(&mut self) -> Result<bool> {
        self.first_from(&[], true)
    }

    /// Moves to the last node (ESE `JET_MoveLast`); returns false if the tree is empty.
    ///
    /// # Errors
    /// Page read errors.
    pub fn move_last(&mut self) -> Result<bool> {
        let leaf = self.tree.descend(Target::Last)?;
        let n = leaf.guard.count();
        if n > 0 && self.set(&leaf.guard, n - 1) {
            return Ok(true);
        }
        drop(leaf);
        // The rightmost leaf is empty only when it is the root: the tree is empty.
        self.pos = None;
        Ok(false)
    }

    /// Moves to the next node (ESE `JET_MoveNext`); returns false past the end. Re-seeks by
    /// key when the page changed since the cursor read it.
    ///
    /// # Errors
    /// `NoCurrentRecord` if the cursor was never positioned; page read errors.
    pub fn move_next(&mut self) -> Result<bool> {
        if self.step_on_page(true) {
            return Ok(true);
        }
        if let Some(p) = &self.pos {
            let (dbtime, idx) = (p.dbtime, p.idx);
            let g = ReadGuard::new(Arc::clone(&p.frame));
            if g.dbtime() == dbtime {
                if self.set(&g, idx + 1) {
                    return Ok(true);
                }
                let next = g.next();
                if next == Pgno::NULL {
                    return Ok(self.off(true));
                }
                if let Some(ng) = self.sibling(g.frame().pgno, &g, next, true)? {
                    drop(g);
                    if self.set(&ng, 0) {
                        return Ok(true);
                    }
                }
            } else if self.is_own_leaf(&g)
                && let Some(i) = successor_on_page(&g, &self.key, false)
                && self.set(&g, i)
            {
                return Ok(true);
            }
        }
        if !self.has_key {
            return Err(Error::new(ErrorKind::NoCurrentRecord));
        }
        let key = self.key.clone();
        let inclusive = self.off_end == Some(false);
        self.first_from(&key, inclusive)
    }

    /// Moves to the previous node (ESE `JET_MovePrevious`); returns false before the start.
    ///
    /// # Errors
    /// `NoCurrentRecord` if the cursor was never positioned; page read errors.
    pub fn move_prev(&mut self) -> Result<bool> {
        if self.step_on_page(false) {
            return Ok(true);
        }
        if let Some(p) = &self.pos {
            let (dbtime, idx) = (p.dbtime, p.idx);
            let g = ReadGuard::new(Arc::clone(&p.frame));
            if g.dbtime() == dbtime {
                if idx > 0 && self.set(&g, idx - 1) {
                    return Ok(true);
                }
                let prev = g.prev();
                if prev == Pgno::NULL {
                    return Ok(self.off(false));
                }
                if let Some(pg) = self.sibling(g.frame().pgno, &g, prev, false)? {
                    drop(g);
                    let n = pg.count();
                    if n > 0 && self.set(&pg, n - 1) {
                        return Ok(true);
                    }
                }
            } else if self.is_own_leaf(&g)
                && let Some(i) = predecessor_on_page(&g, &self.key, false)
                && self.set(&g, i)
            {
                return Ok(true);
            }
        }
        if !self.has_key {
            return Err(Error::new(ErrorKind::NoCurrentRecord));
        }
        let key = self.key.clone();
        let inclusive = self.off_end == Some(true);
        self.last_before(&key, inclusive)
    }

    /// Whether the cursor is on a node.
    pub fn is_positioned(&self) -> bool {
        self.pos.is_some()
    }

    /// The leaf the cursor is on, for a change of the current node that should not descend
    /// from the root again ([`Tree::put_with`]); `None` when not positioned. The hint pins the
    /// page in the cache while it lives.
    pub fn leaf_hint(&self) -> Option<LeafHint> {
        self.pos.as_ref().map(|p| LeafHint {
            frame: Arc::clone(&p.frame),
            idx: p.idx,
        })
    }

    /// Whether the cursor is on a node and its page has not changed since the cursor read
    /// the node: [`Cursor::key`], [`Cursor::data`] and [`Cursor::flags`] are then what the
    /// page holds at this instant (a change of the page, even of another node, moves its
    /// dbtime). Takes the page's read latch for the check.
    pub fn is_current(&self) -> bool {
        self.pos
            .as_ref()
            .is_some_and(|p| p.frame.latch.read().dbtime() == p.dbtime)
    }

    /// The current node's key (empty when not positioned).
    pub fn key(&self) -> &[u8] {
        if self.pos.is_some() { &self.key } else { &[] }
    }

    /// The current node's data as read when the cursor moved there (empty when not
    /// positioned).
    pub fn data(&self) -> &[u8] {
        if self.pos.is_some() { &self.data } else { &[] }
    }

    /// The current node's flags (flag-deleted, versioned).
    pub fn flags(&self) -> NodeFlags {
        if self.pos.is_some() {
            self.flags
        } else {
            NodeFlags::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use ese_core::{ObjId, Pgno};

    use super::*;

    fn leaf(keys: &[&[u8]]) -> Page {
        let mut p = Page::new(4096, Pgno(3), ObjId(5), PageFlags::LEAF, 0);
        for (i, k) in keys.iter().enumerate() {
            assert!(p.insert_node(i, NodeFlags(0), k, b"v"));
        }
        p
    }

    #[test]
    fn neighbours_on_the_page_only_when_both_sides_are_there() {
        let p = leaf(&[b"b", b"d", b"f"]);
        // Exclusive successor.
        assert_eq!(successor_on_page(&p, b"b", false), Some(1));
        assert_eq!(successor_on_page(&p, b"c", false), Some(1));
        assert_eq!(successor_on_page(&p, b"e", false), Some(2));
        // Below the first key: a smaller key may sit on the previous leaf.
        assert_eq!(successor_on_page(&p, b"a", false), None);
        // At or past the last key: the successor is on the next leaf.
        assert_eq!(successor_on_page(&p, b"f", false), None);
        assert_eq!(successor_on_page(&p, b"g", false), None);
        // Inclusive successor.
        assert_eq!(successor_on_page(&p, b"b", true), Some(0));
        assert_eq!(successor_on_page(&p, b"f", true), Some(2));
        assert_eq!(successor_on_page(&p, b"a", true), None);
        // Exclusive predecessor.
        assert_eq!(predecessor_on_page(&p, b"f", false), Some(1));
        assert_eq!(predecessor_on_page(&p, b"e", false), Some(1));
        assert_eq!(predecessor_on_page(&p, b"c", false), Some(0));
        assert_eq!(predecessor_on_page(&p, b"b", false), None);
        assert_eq!(predecessor_on_page(&p, b"a", false), None);
        assert_eq!(predecessor_on_page(&p, b"g", false), None);
        // Inclusive predecessor.
        assert_eq!(predecessor_on_page(&p, b"f", true), Some(2));
        assert_eq!(predecessor_on_page(&p, b"b", true), Some(0));
        assert_eq!(predecessor_on_page(&p, b"g", true), None);
        // An empty leaf answers nothing.
        let e = leaf(&[]);
        assert_eq!(successor_on_page(&e, b"a", false), None);
        assert_eq!(predecessor_on_page(&e, b"a", true), None);
    }
}
