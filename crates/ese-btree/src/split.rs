//! Structural changes: splits, merges, new roots, page allocation and release, done as one
//! **work unit** ([`Work`], ESE's macro operation).
//!
//! A work unit copies every page it touches, changes the copies, then commits: it write-latches
//! the changed pages (higher tree levels first, so it never waits for a latch while a reader
//! coupling down from a parent holds it), stamps one new dbtime on all of them, appends ONE
//! images record holding their after-images and installs the copies. Recovery therefore sees
//! either the whole split or merge or none of it.
//!
//! Fill rules (`cap` = page size - 44 bytes): a page that overflows is split in two at the
//! point that balances the bytes, or, when the new node is appended at the end of the
//! rightmost page (sequential inserts), just before the new node so the left page stays full.
//! After a change leaves a non-root page below `cap / 4`, it is merged into an adjacent
//! sibling under the same parent when both fit in one page; an empty non-root page is always
//! removed. A root with a single child absorbs it (the tree gets shallower).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ese_core::{Error, ErrorKind, ObjId, Pgno, Result};

use crate::cache::Frame;
use crate::db::{DbShared, SPACE_PGNO, SpaceHeader};
use crate::page::{Node, NodeFlags, PAGE_HEADER_LEN, Page, PageFlags, TAG_LEN};
use crate::record::encode_images;

/// Deepest tree this engine descends (corruption guard): 16 levels of at least 3 children
/// address far more pages than a 32-bit page number.
pub(crate) const MAX_DEPTH: usize = 16;

/// A node change requested of a leaf.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Insert(Vec<u8>, NodeFlags),
    Replace(Vec<u8>),
    Delete,
    SetFlags(NodeFlags),
}

/// Node capacity of a tree page.
pub(crate) fn capacity(page_size: usize) -> usize {
    page_size - PAGE_HEADER_LEN - TAG_LEN
}

/// A set of page copies changed together and committed as one logged record.
pub(crate) struct Work<'a> {
    sh: &'a DbShared,
    pages: BTreeMap<Pgno, Page>,
    frames: HashMap<Pgno, Arc<Frame>>,
    levels: HashMap<Pgno, u8>,
    changed: BTreeSet<Pgno>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(sh: &'a DbShared) -> Work<'a> {
        Work {
            sh,
            pages: BTreeMap::new(),
            frames: HashMap::new(),
            levels: HashMap::new(),
            changed: BTreeSet::new(),
        }
    }

    fn load(&mut self, pgno: Pgno) -> Result<()> {
        if !self.pages.contains_key(&pgno) {
            let f = self.sh.cache.get(pgno)?;
            let p = f.latch.read().clone();
            self.levels.insert(pgno, p.level);
            self.pages.insert(pgno, p);
            self.frames.insert(pgno, f);
        }
        Ok(())
    }

    /// The (copy of the) page, read-only.
    pub(crate) fn page(&mut self, pgno: Pgno) -> Result<&Page> {
        self.load(pgno)?;
        self.pages
            .get(&pgno)
            .ok_or_else(|| internal("page vanished from the work unit"))
    }

    /// The (copy of the) page, to change.
    pub(crate) fn page_mut(&mut self, pgno: Pgno) -> Result<&mut Page> {
        self.load(pgno)?;
        self.changed.insert(pgno);
        self.pages
            .get_mut(&pgno)
            .ok_or_else(|| internal("page vanished from the work unit"))
    }

    /// Adds a brand-new page (database creation).
    pub(crate) fn put_new(&mut self, page: Page) {
        self.changed.insert(page.pgno);
        self.pages.insert(page.pgno, page);
    }

    pub(crate) fn space(&mut self) -> Result<SpaceHeader> {
        SpaceHeader::decode(self.page(SPACE_PGNO)?)
    }

    pub(crate) fn set_space(&mut self, s: SpaceHeader) -> Result<()> {
        self.page_mut(SPACE_PGNO)?.ext = s.encode();
        Ok(())
    }

    /// Allocates a page (from the free chain, else past `pgno_last`, growing the file by the
    /// extension size, durably, when needed) and formats it empty.
    pub(crate) fn alloc(&mut self, objid: ObjId, flags: PageFlags, level: u8) -> Result<Pgno> {
        let mut s = self.space()?;
        let pgno = if s.free_head == Pgno::NULL {
            let p = s.pgno_last.checked_add(1).ok_or_else(|| {
                Error::new(ErrorKind::OutOfDatabaseSpace).with_message("page numbers exhausted")
            })?;
            if p > self.sh.cache.file.page_count()? {
                let ext = self.sh.opts.extension_pages;
                self.sh.cache.file.grow_to(p.saturating_add(ext - 1))?;
            }
            s.pgno_last = p;
            Pgno(p)
        } else {
            let p = s.free_head;
            let fp = self.page(p)?;
            if !fp.flags.contains(PageFlags::EMPTY) {
                return Err(Error::new(ErrorKind::SPAvailExtCorrupted)
                    .with_pgno(p)
                    .with_message("page on the free chain is not free"));
            }
            s.free_head = fp.next;
            s.free_count = s.free_count.checked_sub(1).ok_or_else(|| {
                Error::new(ErrorKind::SPAvailExtCorrupted).with_message("free count underflow")
            })?;
            p
        };
        self.set_space(s)?;
        self.changed.insert(pgno);
        self.pages
            .insert(pgno, Page::new(pgno, objid, flags, level));
        Ok(pgno)
    }

    /// Releases a page to the free chain.
    pub(crate) fn free(&mut self, pgno: Pgno) -> Result<()> {
        let mut s = self.space()?;
        let mut p = Page::new(pgno, ObjId(0), PageFlags::EMPTY, 0);
        p.next = s.free_head;
        s.free_head = pgno;
        s.free_count += 1;
        self.set_space(s)?;
        self.load(pgno)?;
        self.changed.insert(pgno);
        self.pages.insert(pgno, p);
        Ok(())
    }

    /// Latches, logs (one images record) and installs every changed page.
    pub(crate) fn commit(mut self) -> Result<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let ps = self.sh.page_size();
        let mut entries: Vec<(Arc<Frame>, Page)> = Vec::with_capacity(self.changed.len());
        for pgno in std::mem::take(&mut self.changed) {
            let page = self
                .pages
                .remove(&pgno)
                .ok_or_else(|| internal("changed page missing"))?;
            let frame = match self.frames.remove(&pgno) {
                Some(f) => f,
                None => self.sh.cache.get_or_install(pgno, || page.clone())?,
            };
            entries.push((frame, page));
        }
        let levels = &self.levels;
        entries.sort_by_key(|(f, _)| {
            (
                f.pgno == SPACE_PGNO,
                Reverse(levels.get(&f.pgno).copied().unwrap_or(0)),
                f.pgno,
            )
        });
        let mut guards: Vec<_> = entries.iter().map(|(f, _)| f.latch.write_arc()).collect();
        let dbtime = self.sh.next_dbtime()?;
        let mut images = Vec::with_capacity(entries.len());
        for (_, page) in &mut entries {
            page.dbtime = dbtime;
            images.push((page.pgno, page.encode(ps)?));
        }
        let refs: Vec<(Pgno, &[u8])> = images.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let rec = encode_images(self.sh.opts.dbid, &refs);
        let frames: Vec<&Frame> = entries.iter().map(|(f, _)| f.as_ref()).collect();
        self.sh.cache.log_change(&rec, &frames)?;
        for (g, (_, page)) in guards.iter_mut().zip(entries) {
            **g = page;
        }
        Ok(())
    }
}

fn internal(msg: &str) -> Error {
    Error::new(ErrorKind::InternalError).with_message(msg.to_owned())
}

fn corrupt(kind: ErrorKind, pgno: Pgno, msg: impl Into<String>) -> Error {
    Error::new(kind).with_pgno(pgno).with_message(msg)
}

/// Flags of a page at `level` of a tree whose root has `root_flags`.
pub(crate) fn level_flags(root_flags: PageFlags, level: u8) -> PageFlags {
    PageFlags(root_flags.0 & (PageFlags::INDEX.0 | PageFlags::LONG_VALUE.0))
        .with(PageFlags::LEAF, level == 0)
        .with(PageFlags::PARENT_OF_LEAF, level == 1)
}

/// Descends the copies from `root` to the leaf for `key`: (page, chosen child index).
fn descend(
    work: &mut Work<'_>,
    root: Pgno,
    objid: ObjId,
    key: &[u8],
) -> Result<Vec<(Pgno, usize)>> {
    let mut path = Vec::new();
    let mut pgno = root;
    let mut expect_level: Option<u8> = None;
    for _ in 0..MAX_DEPTH {
        let p = work.page(pgno)?;
        if p.objid != objid || p.flags.contains(PageFlags::EMPTY) {
            return Err(corrupt(
                ErrorKind::BadParentPageLink,
                pgno,
                format!("page does not belong to tree {objid}"),
            ));
        }
        if expect_level.is_some_and(|l| l != p.level) {
            return Err(corrupt(
                ErrorKind::BadParentPageLink,
                pgno,
                "child at the wrong level",
            ));
        }
        if p.is_leaf() {
            path.push((pgno, 0));
            return Ok(path);
        }
        let i = p.child_index(key);
        let child = p.nodes.get(i).and_then(Node::child).ok_or_else(|| {
            corrupt(
                ErrorKind::DatabaseCorrupted,
                pgno,
                "internal page without children",
            )
        })?;
        expect_level = Some(p.level - 1);
        path.push((pgno, i));
        pgno = child;
    }
    Err(corrupt(
        ErrorKind::DatabaseCorrupted,
        root,
        format!("tree deeper than {MAX_DEPTH} levels"),
    ))
}

/// Applies `change` to the leaf holding `key` inside `work`, then splits or merges as needed.
///
/// # Errors
/// `KeyDuplicate` (insert of an existing key), `RecordNotFound` (replace/delete/flags of a
/// missing key), page read and space errors.
pub(crate) fn put(
    work: &mut Work<'_>,
    root: Pgno,
    objid: ObjId,
    key: &[u8],
    change: Change,
) -> Result<()> {
    let path = descend(work, root, objid, key)?;
    let &(leaf, _) = path.last().ok_or_else(|| internal("empty path"))?;
    let page = work.page_mut(leaf)?;
    let (idx, found) = page.search(key);
    let mut append = false;
    match change {
        Change::Insert(data, flags) => {
            if found {
                return Err(Error::new(ErrorKind::KeyDuplicate));
            }
            append = idx == page.nodes.len() && page.next == Pgno::NULL;
            page.insert_node(
                idx,
                Node {
                    flags,
                    key: key.to_vec(),
                    data,
                },
            );
        }
        Change::Replace(data) => {
            if !found {
                return Err(Error::new(ErrorKind::RecordNotFound));
            }
            page.replace_data(idx, data);
        }
        Change::Delete => {
            if !found {
                return Err(Error::new(ErrorKind::RecordNotFound));
            }
            page.remove_node(idx);
        }
        Change::SetFlags(f) => {
            if let Some(n) = page.nodes.get_mut(idx).filter(|_| found) {
                n.flags = f;
            } else {
                return Err(Error::new(ErrorKind::RecordNotFound));
            }
        }
    }
    rebalance(work, &path, append)
}

fn rebalance(work: &mut Work<'_>, path: &[(Pgno, usize)], append: bool) -> Result<()> {
    let cap = capacity(work.sh.page_size());
    let mut i = path.len() - 1;
    let mut append = append;
    loop {
        let pgno = path.get(i).ok_or_else(|| internal("path index"))?.0;
        let used = work.page(pgno)?.used();
        if used > cap {
            split_page(work, path, i, append)?;
            append = false;
            if i == 0 {
                return Ok(());
            }
            i -= 1;
            continue;
        }
        if i == 0 {
            return collapse_root(work, pgno);
        }
        if used < cap / 4 && merge_page(work, path, i)? {
            i -= 1;
            continue;
        }
        return Ok(());
    }
}

/// Shortest key `s` with `left < s <= right` (suffix truncation of separators).
pub(crate) fn shortest_separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    for len in 1..=right.len() {
        let p = right.get(..len).unwrap_or(right);
        if p > left {
            return p.to_vec();
        }
    }
    right.to_vec()
}

fn partition(nodes: Vec<Node>, cap: usize, append: bool) -> Vec<Vec<Node>> {
    let sizes: Vec<usize> = nodes.iter().map(Node::size).collect();
    let total: usize = sizes.iter().sum();
    let n = nodes.len();
    let last = sizes.last().copied().unwrap_or(0);
    let mut cut: Option<usize> = None;
    if append && n >= 2 && total - last <= cap {
        cut = Some(n - 1);
    } else {
        let mut left = 0usize;
        let mut best: Option<(usize, usize)> = None;
        for (j, s) in sizes.iter().enumerate().take(n.saturating_sub(1)) {
            left += s;
            let right = total - left;
            if left <= cap && right <= cap {
                let score = left.abs_diff(right);
                if best.is_none_or(|(b, _)| score < b) {
                    best = Some((score, j + 1));
                }
            }
        }
        cut = cut.or(best.map(|b| b.1));
    }
    let mut parts = Vec::new();
    if let Some(c) = cut {
        let mut nodes = nodes;
        let right = nodes.split_off(c);
        parts.push(nodes);
        parts.push(right);
        return parts;
    }
    // Greedy packing: every node fits a page on its own, so this always succeeds.
    let mut cur = Vec::new();
    let mut cur_size = 0;
    for (node, s) in nodes.into_iter().zip(sizes) {
        if cur_size + s > cap && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
            cur_size = 0;
        }
        cur_size += s;
        cur.push(node);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

fn separators(parts: &[Vec<Node>], leaf: bool) -> Vec<Vec<u8>> {
    parts
        .windows(2)
        .map(|w| {
            let (l, r) = (w.first(), w.get(1));
            let lk = l
                .and_then(|p| p.last())
                .map(|n| n.key.as_slice())
                .unwrap_or_default();
            if leaf {
                let rk = r
                    .and_then(|p| p.first())
                    .map(|n| n.key.as_slice())
                    .unwrap_or_default();
                shortest_separator(lk, rk)
            } else {
                lk.to_vec()
            }
        })
        .collect()
}

fn child_node(key: Vec<u8>, child: Pgno) -> Node {
    Node {
        flags: NodeFlags(0),
        key,
        data: child.to_bytes().to_vec(),
    }
}

fn split_page(work: &mut Work<'_>, path: &[(Pgno, usize)], i: usize, append: bool) -> Result<()> {
    let cap = capacity(work.sh.page_size());
    let pgno = path.get(i).ok_or_else(|| internal("path index"))?.0;
    let root_pgno = path.first().ok_or_else(|| internal("path"))?.0;
    let root_flags = work.page(root_pgno)?.flags;
    let page = work.page_mut(pgno)?;
    let (level, objid, old_next) = (page.level, page.objid, page.next);
    let nodes = page.take_nodes();
    let parts = partition(nodes, cap, append && level == 0);
    let seps = separators(&parts, level == 0);
    let flags = level_flags(root_flags, level);
    if i == 0 {
        // The root stays where it is: its content moves to new pages and it gains a level.
        let mut children = Vec::with_capacity(parts.len());
        for part in parts {
            let c = work.alloc(objid, flags, level)?;
            work.page_mut(c)?.set_nodes(part);
            children.push(c);
        }
        link_chain(work, &children, Pgno::NULL, Pgno::NULL)?;
        let mut root_nodes = Vec::with_capacity(children.len());
        for (j, c) in children.iter().enumerate() {
            root_nodes.push(child_node(seps.get(j).cloned().unwrap_or_default(), *c));
        }
        let root = work.page_mut(pgno)?;
        root.level = level + 1;
        root.flags = level_flags(root_flags, level + 1).with(PageFlags::ROOT, true);
        root.set_nodes(root_nodes);
        return Ok(());
    }
    let mut parts = parts.into_iter();
    let first = parts.next().unwrap_or_default();
    work.page_mut(pgno)?.set_nodes(first);
    let mut chain = vec![pgno];
    for part in parts {
        let c = work.alloc(objid, flags, level)?;
        work.page_mut(c)?.set_nodes(part);
        chain.push(c);
    }
    let prev = work.page(pgno)?.prev;
    link_chain(work, &chain, prev, old_next)?;
    if old_next != Pgno::NULL {
        let last = chain.last().copied().unwrap_or(pgno);
        work.page_mut(old_next)?.prev = last;
    }
    let &(ppg, c) = path.get(i - 1).ok_or_else(|| internal("path index"))?;
    let parent = work.page_mut(ppg)?;
    let old = parent.remove_node(c).ok_or_else(|| {
        corrupt(
            ErrorKind::BadParentPageLink,
            ppg,
            "child index out of range",
        )
    })?;
    for (j, pg) in chain.iter().enumerate() {
        let key = seps.get(j).cloned().unwrap_or_else(|| old.key.clone());
        parent.insert_node(c + j, child_node(key, *pg));
    }
    Ok(())
}

/// Links `chain` left to right, with `prev` before the first and `next` after the last.
fn link_chain(work: &mut Work<'_>, chain: &[Pgno], prev: Pgno, next: Pgno) -> Result<()> {
    for (j, &p) in chain.iter().enumerate() {
        let pg = work.page_mut(p)?;
        pg.prev = if j == 0 {
            prev
        } else {
            chain.get(j - 1).copied().unwrap_or(prev)
        };
        pg.next = chain.get(j + 1).copied().unwrap_or(next);
    }
    Ok(())
}

/// Merges the underfull page at `path[i]` with a sibling; returns whether the parent changed.
fn merge_page(work: &mut Work<'_>, path: &[(Pgno, usize)], level_idx: usize) -> Result<bool> {
    let cap = capacity(work.sh.page_size());
    let pgno = path.get(level_idx).ok_or_else(|| internal("path index"))?.0;
    let &(ppg, child_idx) = path
        .get(level_idx - 1)
        .ok_or_else(|| internal("path index"))?;
    let siblings = work.page(ppg)?.nodes.len();
    if siblings <= 1 {
        let page = work.page(pgno)?;
        if !page.nodes.is_empty() {
            return Ok(false);
        }
        let (prev, next) = (page.prev, page.next);
        if prev != Pgno::NULL {
            work.page_mut(prev)?.next = next;
        }
        if next != Pgno::NULL {
            work.page_mut(next)?.prev = prev;
        }
        work.free(pgno)?;
        work.page_mut(ppg)?.remove_node(child_idx);
        return Ok(true);
    }
    let li = child_idx.saturating_sub(1);
    let parent = work.page(ppg)?;
    let child_at = |k: usize| {
        parent
            .nodes
            .get(k)
            .and_then(Node::child)
            .ok_or_else(|| corrupt(ErrorKind::BadParentPageLink, ppg, "bad child node"))
    };
    let (l, r) = (child_at(li)?, child_at(li + 1)?);
    let sep = parent
        .nodes
        .get(li)
        .map(|n| n.key.clone())
        .unwrap_or_default();
    let lp = work.page(l)?;
    let (lu, l_level, l_next) = (lp.used(), lp.level, lp.next);
    let l_last_key = lp.nodes.last().map_or(0, |n| n.key.len());
    let ru = work.page(r)?.used();
    let grow = if l_level > 0 && lu > 0 { sep.len() } else { 0 };
    if lu + ru + grow - if grow > 0 { l_last_key } else { 0 } > cap {
        return Ok(false);
    }
    if l_next != r {
        return Err(corrupt(
            ErrorKind::BadPageLink,
            l,
            format!("next is {l_next}, expected {r}"),
        ));
    }
    let rp = work.page_mut(r)?;
    let r_next = rp.next;
    let r_nodes = rp.take_nodes();
    let lp = work.page_mut(l)?;
    let mut nodes = lp.take_nodes();
    if l_level > 0
        && let Some(last) = nodes.last_mut()
    {
        last.key = sep;
    }
    nodes.extend(r_nodes);
    lp.set_nodes(nodes);
    lp.next = r_next;
    if r_next != Pgno::NULL {
        work.page_mut(r_next)?.prev = l;
    }
    work.free(r)?;
    let parent = work.page_mut(ppg)?;
    parent.replace_data(li + 1, l.to_bytes().to_vec());
    parent.remove_node(li);
    Ok(true)
}

/// A root with one child absorbs it; a root with none becomes an empty leaf.
fn collapse_root(work: &mut Work<'_>, root: Pgno) -> Result<()> {
    for _ in 0..MAX_DEPTH {
        let rp = work.page(root)?;
        if rp.is_leaf() || rp.nodes.len() > 1 {
            return Ok(());
        }
        let root_flags = rp.flags;
        let Some(child) = rp.nodes.first().and_then(Node::child) else {
            let r = work.page_mut(root)?;
            r.level = 0;
            r.flags = level_flags(root_flags, 0).with(PageFlags::ROOT, true);
            return Ok(());
        };
        let cp = work.page_mut(child)?;
        let (level, nodes) = (cp.level, cp.take_nodes());
        let r = work.page_mut(root)?;
        r.level = level;
        r.flags = level_flags(root_flags, level).with(PageFlags::ROOT, true);
        r.set_nodes(nodes);
        work.free(child)?;
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

    #[test]
    fn separators_are_shortest() {
        assert_eq!(shortest_separator(b"abc", b"abd"), b"abd");
        assert_eq!(shortest_separator(b"abc", b"b"), b"b");
        assert_eq!(shortest_separator(b"a", b"azzz"), b"az");
        assert_eq!(shortest_separator(b"", b"a"), b"a");
    }

    #[test]
    fn partition_fits_big_nodes() {
        let mk = |s: usize| Node {
            flags: NodeFlags(0),
            key: vec![1],
            data: vec![0; s],
        };
        let parts = partition(vec![mk(400), mk(1000), mk(600)], 1020, false);
        assert_eq!(parts.len(), 3);
        let parts = partition(vec![mk(100); 10], 1020, true);
        assert_eq!(parts[1].len(), 1);
    }
}
