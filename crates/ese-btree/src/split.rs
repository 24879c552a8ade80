//! Structural changes: splits, merges, new roots, page allocation and release, done as one
//! **work unit** ([`Work`], ESE's macro operation).
//!
//! A work unit copies every page it touches, changes the copies, then commits: it write-latches
//! the changed pages (higher tree levels first, so it never waits for a latch while a reader
//! coupling down from a parent holds it), stamps one new dbtime on all of them, appends ONE
//! pages record and installs the copies. Recovery therefore sees either the whole split or
//! merge or none of it. The record holds an after-image of each page the unit formatted anew
//! (a split's new page) or whose base on disk may be torn (`needs_image`), and a delta of
//! each other page (the page split keeps a run of its nodes, its parent gains a separator:
//! a few dozen bytes instead of two page images). The code that changes a page says how its
//! node list was made when it knows ([`KnownStep`]: a split keeps the first part of its
//! nodes, a parent gains separators, a sibling only gets new links), so the delta is not
//! found by comparing the page with the one before.
//!
//! Fill rules (`cap` = page size - 44 bytes): a leaf that an insert overflows first shares its
//! nodes with the emptier of its siblings under the same parent when both then fit in at most
//! 90% of `cap` each (the two hold about as many bytes, the parent's separator between them
//! changes; no page is allocated). Otherwise, and for internal pages, a page that overflows is
//! split in two at the point that balances the bytes, or, when the new node is appended at the
//! end of the rightmost page (sequential inserts), just before the new node so the left page
//! stays full. Random inserts leave leaves about 80% full this way (69% with splits alone).
//!
//! The structural changes of an insert are not work units in the common cases:
//! [`share_insert`] and [`split_insert`] change the pages in place under their write latches
//! (taken in the work unit's order), make every check and every fallible step (reads, the
//! file's growth, the new page's frame) before the first change, and log one pages record of
//! the deltas they make and, for a split, the new page's image. No page is copied. A work
//! unit still splits a root leaf, a leaf whose parent has no room for the separator (the
//! parent splits too), and a leaf when the free chain holds pages.
//! After a change leaves a non-root page below `cap / 4`, it is merged into an adjacent
//! sibling under the same parent when both fit in one page; an empty non-root page is always
//! removed. A root with a single child absorbs it (the tree gets shallower).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ese_core::{DbTime, Error, ErrorKind, Lgpos, ObjId, Pgno, Result};

use crate::cache::Frame;
use crate::db::{DbShared, SPACE_PGNO, SpaceHeader};
use crate::latch::WriteGuard;
use crate::page::{
    NODE_OVERHEAD, Node, NodeFlags, NodeRef, PAGE_HEADER_LEN, Page, PageFlags, TAG_LEN,
};
use crate::record::{
    KnownStep, PageChange, encode_annotation, encode_pages, known_delta, known_delta_of,
    known_part, page_delta,
};

/// Deepest tree this engine descends (corruption guard): 16 levels of at least 3 children
/// address far more pages than a 32-bit page number.
pub(crate) const MAX_DEPTH: usize = 16;

/// A node change requested of a leaf.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    Insert(&'a [u8], NodeFlags),
    Replace(&'a [u8]),
    Delete,
    SetFlags(NodeFlags),
    /// Replace the data and set the flags.
    Rewrite(&'a [u8], NodeFlags),
}

/// Largest single growth of the database file, in bytes. 64 MiB keeps the unused extension
/// of a large file small next to its size (at most about 1.6% past 4 GiB) while a file that
/// grows by gigabytes does so sixteen times per gigabyte, not hundreds.
const MAX_GROWTH_BYTES: u64 = 64 << 20;

/// Pages to add when the file of `pages` database pages is full: the configured extension
/// (`JET_paramDbExtensionSize`) or a sixty-fourth of the file, whichever is larger, capped at
/// [`MAX_GROWTH_BYTES`] (never below the extension). Geometric growth makes the number of
/// growths logarithmic in the size up to the cap (about 45 per doubling, each a `set_len`
/// without a sync); a sixty-fourth bounds the space past `pgno_last` (sparse on Linux: it
/// has a length but no blocks) to about 1.6% of the file.
pub(crate) fn growth_pages(pages: u32, extension_pages: u32, page_size: usize) -> u32 {
    let cap = u32::try_from(MAX_GROWTH_BYTES / page_size.max(1) as u64).unwrap_or(u32::MAX);
    (pages / 64).min(cap).max(extension_pages).max(1)
}

/// The page after `space.pgno_last`, with the file grown by [`growth_pages`] (without a sync)
/// when it does not hold it yet: where an allocation that finds the free chain empty goes.
///
/// # Errors
/// `OutOfDatabaseSpace` when page numbers are exhausted; the file's growth.
fn page_past_last(sh: &DbShared, space: &SpaceHeader) -> Result<Pgno> {
    let p = space.pgno_last.checked_add(1).ok_or_else(|| {
        Error::new(ErrorKind::OutOfDatabaseSpace).with_message("page numbers exhausted")
    })?;
    let pages = sh.cache.file.page_count_for(p)?;
    if p > pages {
        let step = growth_pages(pages, sh.opts.extension_pages, sh.page_size());
        sh.cache
            .file
            .extend_to(p.saturating_add(step.saturating_sub(1)))?;
    }
    Ok(Pgno(p))
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
    /// Pages this unit formats anew (allocated or created): logged as images, since their
    /// content does not derive from what the page held before.
    fresh: BTreeSet<Pgno>,
    /// The node list of a changed page as the change that made it says it (see
    /// [`KnownStep`]): its delta is then built without comparing the page with the one
    /// before. Any later change through [`Work::page_mut`] drops it (the delta is then
    /// found by comparison), so a stale list is never used.
    known: HashMap<Pgno, Vec<KnownStep>>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(sh: &'a DbShared) -> Work<'a> {
        Work {
            sh,
            pages: BTreeMap::new(),
            frames: HashMap::new(),
            levels: HashMap::new(),
            changed: BTreeSet::new(),
            fresh: BTreeSet::new(),
            known: HashMap::new(),
        }
    }

    fn load(&mut self, pgno: Pgno) -> Result<()> {
        if !self.pages.contains_key(&pgno) {
            let f = self.sh.cache.get(pgno)?;
            let p = self.sh.pool.copy(&f.latch.read());
            self.levels.insert(pgno, p.level());
            self.pages.insert(pgno, p);
            self.frames.insert(pgno, f);
        }
        Ok(())
    }

    /// `f` of the page as this unit sees it, without copying it: its copy when the unit has
    /// one, else the cached page read in place under its read latch. Under the writer mutex
    /// no other thread changes a tree page, so what `f` reads stays true until this unit
    /// changes the page itself (through [`Work::page_mut`], which copies it then).
    pub(crate) fn peek<R>(&self, pgno: Pgno, f: impl FnOnce(&Page) -> R) -> Result<R> {
        if let Some(p) = self.pages.get(&pgno) {
            return Ok(f(p));
        }
        let frame = self.sh.cache.get(pgno)?;
        let page = frame.latch.read();
        Ok(f(&page))
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
        if !self.known.is_empty() {
            self.known.remove(&pgno);
        }
        self.pages
            .get_mut(&pgno)
            .ok_or_else(|| internal("page vanished from the work unit"))
    }

    /// The (copy of the) page, for a change of its header fields or tag 0 that keeps every
    /// node where it is (links to siblings, the space header): a page this unit has not
    /// changed before then keeps the node list it had, and its delta is known.
    fn page_mut_keeping_nodes(&mut self, pgno: Pgno) -> Result<&mut Page> {
        self.load(pgno)?;
        let first_change = self.changed.insert(pgno);
        let page = self
            .pages
            .get_mut(&pgno)
            .ok_or_else(|| internal("page vanished from the work unit"))?;
        if first_change && !self.fresh.contains(&pgno) {
            let all = KnownStep::Copy {
                first: 0,
                count: page.count(),
            };
            self.known.insert(pgno, vec![all]);
        }
        Ok(page)
    }

    /// Sets the links of page `pgno` to its siblings (`None`: unchanged), keeping its nodes.
    fn set_links(&mut self, pgno: Pgno, prev: Option<Pgno>, next: Option<Pgno>) -> Result<()> {
        let page = self.page_mut_keeping_nodes(pgno)?;
        if let Some(p) = prev {
            page.set_prev(p);
        }
        if let Some(n) = next {
            page.set_next(n);
        }
        Ok(())
    }

    /// Says how the node list of `pgno`, changed by this unit from the page it held before
    /// the unit (not changed before by the unit), was made (see [`KnownStep`]).
    fn set_known(&mut self, pgno: Pgno, steps: Vec<KnownStep>) {
        self.known.insert(pgno, steps);
    }

    /// Adds a brand-new page (database creation).
    pub(crate) fn put_new(&mut self, page: Page) {
        self.changed.insert(page.pgno());
        self.fresh.insert(page.pgno());
        self.pages.insert(page.pgno(), page);
    }

    pub(crate) fn space(&mut self) -> Result<SpaceHeader> {
        SpaceHeader::decode(self.page(SPACE_PGNO)?)
    }

    pub(crate) fn set_space(&mut self, s: SpaceHeader) -> Result<()> {
        self.page_mut_keeping_nodes(SPACE_PGNO)?
            .set_ext(&s.encode())
    }

    /// Allocates a page (from the free chain, else past `pgno_last`, growing the file by
    /// [`growth_pages`] when needed, without a sync) and formats it empty.
    pub(crate) fn alloc(&mut self, objid: ObjId, flags: PageFlags, level: u8) -> Result<Pgno> {
        let mut s = self.space()?;
        let pgno = if s.free_head == Pgno::NULL {
            let p = page_past_last(self.sh, &s)?;
            s.pgno_last = p.0;
            p
        } else {
            let p = s.free_head;
            let fp = self.page(p)?;
            if !fp.flags().contains(PageFlags::EMPTY) {
                return Err(Error::new(ErrorKind::SPAvailExtCorrupted)
                    .with_pgno(p)
                    .with_message("page on the free chain is not free"));
            }
            s.free_head = fp.next();
            s.free_count = s.free_count.checked_sub(1).ok_or_else(|| {
                Error::new(ErrorKind::SPAvailExtCorrupted).with_message("free count underflow")
            })?;
            p
        };
        self.set_space(s)?;
        self.changed.insert(pgno);
        self.fresh.insert(pgno);
        self.known.remove(&pgno);
        let page = self.sh.pool.blank(pgno, objid, flags, level);
        if let Some(old) = self.pages.insert(pgno, page) {
            self.sh.pool.give(old);
        }
        Ok(pgno)
    }

    /// Releases a page to the free chain.
    pub(crate) fn free(&mut self, pgno: Pgno) -> Result<()> {
        let mut s = self.space()?;
        let mut p = self.sh.pool.blank(pgno, ObjId(0), PageFlags::EMPTY, 0);
        p.set_next(s.free_head);
        s.free_head = pgno;
        s.free_count += 1;
        self.set_space(s)?;
        self.load(pgno)?;
        self.changed.insert(pgno);
        self.known.remove(&pgno);
        if let Some(old) = self.pages.insert(pgno, p) {
            self.sh.pool.give(old);
        }
        Ok(())
    }

    /// Latches, logs (one pages record) and installs every changed page.
    pub(crate) fn commit(self) -> Result<()> {
        self.commit_annotated(None).map(|_| ())
    }

    /// [`Work::commit`] with the layer above's `annotation` in the same record. Returns the
    /// record's position; `None` when nothing changed and there is no annotation (nothing is
    /// logged). With an annotation and no page change, an annotation-only record is logged.
    pub(crate) fn commit_annotated(mut self, annotation: Option<&[u8]>) -> Result<Option<Lgpos>> {
        if self.changed.is_empty() {
            return match annotation {
                Some(a) => {
                    let rec = encode_annotation(self.sh.opts.dbid, a);
                    self.sh.cache.log_change(&rec, &[]).map(Some)
                }
                None => Ok(None),
            };
        }
        let mut entries: Vec<(Arc<Frame>, Page)> = Vec::with_capacity(self.changed.len());
        for pgno in std::mem::take(&mut self.changed) {
            let page = self
                .pages
                .remove(&pgno)
                .ok_or_else(|| internal("changed page missing"))?;
            let frame = match self.frames.remove(&pgno) {
                Some(f) => f,
                None => self.sh.cache.get_or_install(pgno, &page)?,
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
        let mut guards: Vec<_> = entries
            .iter()
            .map(|(f, _)| WriteGuard::new(Arc::clone(f)))
            .collect();
        let dbtime = self.sh.next_dbtime()?;
        for (_, page) in &mut entries {
            page.set_dbtime(dbtime);
        }
        let rec = {
            let mut changes = Vec::with_capacity(entries.len());
            for ((frame, page), g) in entries.iter().zip(&guards) {
                // Read under the write latch, so a write completing meanwhile cannot clear it.
                let image = self.fresh.contains(&frame.pgno) || frame.meta.lock().needs_image;
                let delta = (!image)
                    .then(
                        || match self.known.get(&frame.pgno).map(|k| known_delta(g, page, k)) {
                            Some(Ok(d)) => d,
                            Some(Err(_)) => {
                                debug_assert!(
                                    false,
                                    "known node list does not describe page {}",
                                    frame.pgno
                                );
                                page_delta(g, page)
                            }
                            None => page_delta(g, page),
                        },
                    )
                    .flatten();
                match delta {
                    Some(d) => {
                        #[cfg(debug_assertions)]
                        check_delta(g, page, &d, self.sh.page_size());
                        changes.push(PageChange::Delta(d));
                    }
                    None => {
                        changes.push(PageChange::Image(page.pgno(), Cow::Borrowed(page.bytes())));
                    }
                }
            }
            encode_pages(self.sh.opts.dbid, &changes, annotation)
        };
        let frames: Vec<&Frame> = entries.iter().map(|(f, _)| f.as_ref()).collect();
        let lgpos = self.sh.cache.log_change(&rec, &frames)?;
        for (g, (_, page)) in guards.iter_mut().zip(entries) {
            g.copy_from(&page);
            self.sh.pool.give(page);
        }
        Ok(Some(lgpos))
    }
}

impl Drop for Work<'_> {
    /// Gives the page copies not committed back to the pool (all of them when the unit is
    /// dropped without a commit, after an error).
    fn drop(&mut self) {
        for (_, page) in std::mem::take(&mut self.pages) {
            self.sh.pool.give(page);
        }
    }
}

/// Debug builds check that redo of `d` rebuilds `after` from `before` (header fields, tag 0
/// and nodes; the layout may differ).
#[cfg(debug_assertions)]
fn check_delta(before: &Page, after: &Page, d: &crate::record::Delta<'_>, page_size: usize) {
    let redone = d.apply(before, page_size);
    let same = redone.as_ref().is_ok_and(|r| {
        (
            r.dbtime(),
            r.prev(),
            r.next(),
            r.objid(),
            r.flags(),
            r.level(),
            r.ext(),
        ) == (
            after.dbtime(),
            after.prev(),
            after.next(),
            after.objid(),
            after.flags(),
            after.level(),
            after.ext(),
        ) && r.nodes().eq(after.nodes())
    });
    debug_assert!(same, "page delta does not rebuild page {}", after.pgno());
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

/// Descends from `root` to the leaf for `key`: (page, chosen child index). The pages are
/// read where they are ([`Work::peek`]): only those the change then touches are copied (the
/// leaf, and its parent when the leaf shares or splits), not every level above them.
fn descend(work: &Work<'_>, root: Pgno, objid: ObjId, key: &[u8]) -> Result<Vec<(Pgno, usize)>> {
    /// What the descent reads of one page: its tree, flags and level, and for an internal
    /// page the index and page number of the child that covers the key.
    struct Step {
        objid: ObjId,
        empty: bool,
        level: u8,
        /// `None` on a leaf.
        child: Option<(usize, Option<Pgno>)>,
    }
    let mut path = Vec::new();
    let mut pgno = root;
    let mut expect_level: Option<u8> = None;
    for _ in 0..MAX_DEPTH {
        let p = work.peek(pgno, |p| Step {
            objid: p.objid(),
            empty: p.flags().contains(PageFlags::EMPTY),
            level: p.level(),
            child: (!p.is_leaf()).then(|| {
                let i = p.child_index(key);
                (i, p.child(i))
            }),
        })?;
        if p.objid != objid || p.empty {
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
        let Some((i, child)) = p.child else {
            path.push((pgno, 0));
            return Ok(path);
        };
        let child = child.ok_or_else(|| {
            corrupt(
                ErrorKind::DatabaseCorrupted,
                pgno,
                "internal page without children",
            )
        })?;
        expect_level = Some(p.level.wrapping_sub(1));
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
    change: Change<'_>,
) -> Result<()> {
    let path = descend(work, root, objid, key)?;
    let &(leaf, _) = path.last().ok_or_else(|| internal("empty path"))?;
    let page = work.page_mut(leaf)?;
    let (idx, found) = page.search(key);
    let mut append = false;
    // What does not fit the leaf when the change overflows it (it is split).
    let mut overflow: Option<Overflow> = None;
    let not_found = || Error::new(ErrorKind::RecordNotFound);
    match change {
        Change::Insert(data, flags) => {
            if found {
                return Err(Error::new(ErrorKind::KeyDuplicate));
            }
            append = idx == page.count() && page.next() == Pgno::NULL;
            if !page.insert_node(idx, flags, key, data) {
                let node = Node {
                    flags,
                    key: key.to_vec(),
                    data: data.to_vec(),
                };
                overflow = Some(if append && path.len() > 1 && page.count() > 0 {
                    // Sequential inserts: the full leaf stays as it is, the new node starts
                    // the next leaf (no copy of the leaf's nodes).
                    Overflow::Append(node)
                } else {
                    Overflow::Insert(idx.min(page.count()), node)
                });
            }
        }
        Change::Replace(data) | Change::Rewrite(data, _) => {
            if !found {
                return Err(not_found());
            }
            if page.replace_data(idx, data) {
                if let Change::Rewrite(_, flags) = change {
                    page.set_node_flags(idx, flags);
                }
            } else {
                let mut nodes = page.to_nodes();
                let n = nodes.get_mut(idx).ok_or_else(not_found)?;
                n.data = data.to_vec();
                if let Change::Rewrite(_, flags) = change {
                    n.flags = flags;
                }
                overflow = Some(Overflow::Nodes(nodes));
            }
        }
        Change::Delete => {
            if !found || !page.remove_node(idx) {
                return Err(not_found());
            }
        }
        Change::SetFlags(f) => {
            if !found || !page.set_node_flags(idx, f) {
                return Err(not_found());
            }
        }
    }
    rebalance(work, &path, append, overflow)
}

/// The content of a page that does not fit it.
enum Overflow {
    /// The page's whole content (more than a page).
    Nodes(Vec<Node>),
    /// The page's content (unchanged, in place) followed by this node.
    Append(Node),
    /// The page's content (unchanged, in place) with this node inserted at this index: split
    /// from the page's bytes, without an owned copy of every node.
    Insert(usize, Node),
}

fn rebalance(
    work: &mut Work<'_>,
    path: &[(Pgno, usize)],
    append: bool,
    overflow: Option<Overflow>,
) -> Result<()> {
    let cap = capacity(work.sh.page_size());
    let mut i = path.len() - 1;
    let mut append = append;
    let mut overflow = overflow;
    loop {
        let pgno = path.get(i).ok_or_else(|| internal("path index"))?.0;
        if let Some(ov) = overflow.take() {
            // (A leaf that an insert overflows first tries to share its nodes with a sibling,
            // before the work unit: `share_insert`.)
            overflow = split_page(work, path, i, append, &ov)?;
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
        let used = work.page(pgno)?.used();
        if used < cap / 4 && merge_page(work, path, i)? {
            i -= 1;
            continue;
        }
        return Ok(());
    }
}

/// Fullness (tenths of a page's node capacity) up to which an overflowing leaf and a sibling
/// share their nodes instead of the leaf splitting. Both then end at most this full, so the
/// next inserts find room; leaves filled in random key order stay about 80% full where
/// splits alone leave them about 70% full (ln 2).
const SHARE_TENTHS: usize = 9;

/// The nodes of `page` (page `pgno`) as references into it, with room for one more (the node
/// that overflowed the page).
fn node_refs(page: &Page, pgno: Pgno) -> Result<Vec<NodeRef<'_>>> {
    let mut refs = Vec::with_capacity(page.count() + 1);
    for j in 0..page.count() {
        refs.push(
            page.node(j)
                .ok_or_else(|| corrupt(ErrorKind::NodeCorrupted, pgno, "unreadable node"))?,
        );
    }
    Ok(refs)
}

/// Where the leaf of a key is: its parent, its entry in the parent and its page number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafAt {
    parent: Pgno,
    child: usize,
    leaf: Pgno,
}

/// An insert that overflows its leaf, as [`share_insert`] and [`split_insert`] take it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Overflowing<'a> {
    /// The leaf of the key and its parent entry.
    pub(crate) at: LeafAt,
    /// The new node's index on the leaf (a search of it under the same hold of the writer
    /// mutex: the key is not on it).
    pub(crate) idx: usize,
    /// The tree.
    pub(crate) objid: ObjId,
    /// The node to insert.
    pub(crate) node: NodeRef<'a>,
    /// The layer above's annotation, logged in the same record.
    pub(crate) annotation: Option<&'a [u8]>,
}

impl LeafAt {
    /// The leaf `leaf`, entry `child` of `parent` (found by a descent under the tree's writer
    /// mutex, still held).
    pub(crate) fn new(parent: Pgno, child: usize, leaf: Pgno) -> LeafAt {
        LeafAt {
            parent,
            child,
            leaf,
        }
    }

    /// That `parent` (the parent page, latched) still has the leaf at the entry the descent
    /// found: under the writer mutex it must.
    fn check(self, parent: &Page) -> Result<()> {
        if parent.child(self.child) == Some(self.leaf) {
            Ok(())
        } else {
            Err(internal(
                "a leaf's parent entry moved under the writer mutex",
            ))
        }
    }

    /// The parent, the leaf's entry in it, the leaf.
    fn pages(self) -> (Pgno, usize, Pgno) {
        (self.parent, self.child, self.leaf)
    }
}

/// An insert that overflows its leaf, done by moving nodes from the leaf to the emptier of
/// its siblings under the same parent so that both hold about as many bytes, with the
/// shortest separator between them in the parent (SQLite and the B*-tree balance siblings
/// before splitting too): three pages change, none is allocated.
/// The caller holds the tree's writer mutex.
///
/// The three pages change in place, write-latched (the parent first, then the two leaves by
/// page number, the order of [`Work::commit`]), and are logged as ONE pages record of three
/// deltas (an image for a page whose base on disk may be torn) with `annotation`: no page is
/// copied, and each delta is the one the move makes, not one found by comparing pages.
/// Everything is checked before the first byte changes.
///
/// Returns `None`, with nothing changed, when the new node goes at the end of the rightmost
/// leaf (sequential inserts), when neither sibling leaves both pages at most [`SHARE_TENTHS`]
/// full, or when the parts or the new separator would not fit: the caller then splits the
/// leaf.
///
/// # Errors
/// `BadParentPageLink` when a sibling is not a leaf of the tree; `InternalError` when the
/// parent no longer has the leaf at the entry the descent found; page read errors; the WAL's
/// errors.
pub(crate) fn share_insert(sh: &DbShared, ins: Overflowing<'_>) -> Result<Option<Lgpos>> {
    let (objid, node, annotation, idx) = (ins.objid, ins.node, ins.annotation, ins.idx);
    let ((ppg, c, pgno), cap) = (ins.at.pages(), capacity(sh.page_size()));
    let (parent_f, leaf_f) = (sh.cache.get(ppg)?, sh.cache.get(pgno)?);
    // The sibling, chosen under read latches (under the writer mutex no other thread changes
    // a tree page, so the choice holds once the write latches are taken).
    let Some((s, sib, sib_f)) = ({
        let parent = parent_f.latch.read();
        ins.at.check(&parent)?;
        let own = {
            let leaf = leaf_f.latch.read();
            if idx == leaf.count() && leaf.next() == Pgno::NULL {
                // Sequential inserts: the full leaf stays as it is and the split starts the
                // next one.
                return Ok(None);
            }
            leaf.used() + node.size()
        };
        let n = parent.count();
        let mut best: Option<(usize, Pgno, usize, Arc<Frame>)> = None;
        for s in [c.checked_sub(1), Some(c + 1).filter(|&s| s < n)]
            .into_iter()
            .flatten()
        {
            let child = parent
                .child(s)
                .ok_or_else(|| corrupt(ErrorKind::BadParentPageLink, ppg, "bad child node"))?;
            let frame = sh.cache.get(child)?;
            let (used, leaf, owner) = {
                let p = frame.latch.read();
                (p.used(), p.is_leaf(), p.objid())
            };
            if !leaf || owner != objid || child == pgno {
                return Err(corrupt(
                    ErrorKind::BadParentPageLink,
                    child,
                    "sibling of a leaf is not a leaf of its tree",
                ));
            }
            if best.as_ref().is_none_or(|&(_, _, u, _)| used < u) {
                best = Some((s, child, used, frame));
            }
        }
        best.filter(|&(_, _, used, _)| own + used <= 2 * cap * SHARE_TENTHS / 10)
            .map(|(s, child, _, frame)| (s, child, frame))
    }) else {
        return Ok(None);
    };
    let mut parent = parent_f.latch.write();
    let (mut leaf, mut sibling) = if pgno < sib {
        let l = leaf_f.latch.write();
        (l, sib_f.latch.write())
    } else {
        let r = sib_f.latch.write();
        (leaf_f.latch.write(), r)
    };
    // The plan, from the pages as they are: the leaf's nodes with the new one at `idx`.
    // The sizes come from the tags (the node lines of the sibling are not read); the leaf's
    // own list has the new node at `idx`.
    let own = leaf.count() + 1;
    let own_sizes = (0..own).map(|j| with_new_size(&leaf, idx, node, j));
    let sib_count = sibling.count();
    let sib_sizes = (0..sib_count).map(|j| sibling.node_size(j));
    // Left to right: the page the parent's entry `b` points to, then the next one.
    let leaf_left = s > c;
    let b = if leaf_left { c } else { s };
    let sizes: Vec<usize> = if leaf_left {
        own_sizes.chain(sib_sizes).collect()
    } else {
        sib_sizes.chain(own_sizes).collect()
    };
    let &[cut] = partition_cuts(&sizes, cap, false).as_slice() else {
        return Ok(None);
    };
    // `k`: the leaf's nodes (the new one included) before the cut. They stay when the leaf is
    // on the left, the rest move to the sibling's start; on the right they move to the
    // sibling's end. At least one node moves and one stays, else the leaf splits.
    let k = if leaf_left {
        cut
    } else {
        cut.saturating_sub(sib_count)
    };
    if k == 0 || k >= own {
        return Ok(None);
    }
    // The nodes that move, read from the leaf (and the new one), and the two around the cut.
    let own_ref = |j: usize| with_new_node(&leaf, pgno, idx, node, j);
    let moved_range = if leaf_left { k..own } else { 0..k };
    let moved = nodes_in(moved_range, own_ref)?;
    let (last, first) = (own_ref(k - 1)?, own_ref(k)?);
    let (lb, rb) = sizes.split_at(cut);
    let (l_ext, r_ext) = if leaf_left {
        (leaf.ext().len(), sibling.ext().len())
    } else {
        (sibling.ext().len(), leaf.ext().len())
    };
    if lb.iter().sum::<usize>() + l_ext > cap || rb.iter().sum::<usize>() + r_ext > cap {
        return Ok(None);
    }
    let sep = shortest_separator(last.key, first.key);
    let entry = parent
        .node(b)
        .ok_or_else(|| corrupt(ErrorKind::NodeCorrupted, ppg, "unreadable node"))?;
    if parent.used() + parent.ext().len() - entry.key.len() + sep.len() > cap {
        return Ok(None);
    }
    let (entry_flags, child) = (entry.flags, entry.data.to_vec());
    // Every page fits what it gets: from here on, nothing may fail between the first change
    // and the record (a failure latches the cache as failed, see below).
    let image = [&parent_f, &leaf_f, &sib_f].map(|f| f.meta.lock().needs_image);
    let dbtime = sh.next_dbtime()?;
    #[cfg(debug_assertions)]
    let before_pages = [parent.clone(), leaf.clone(), sibling.clone()];
    let before = [
        (parent.objid(), parent.dbtime(), parent.count()),
        (leaf.objid(), leaf.dbtime(), leaf.count()),
        (sibling.objid(), sibling.dbtime(), sibling.count()),
    ];
    let m = moved.len();
    let base = if leaf_left { 0 } else { sib_count };
    let mut ok = sibling.insert_nodes(base, &moved);
    drop(moved);
    // The leaf's own nodes before the cut, by their index on the page (the new node is not
    // on it).
    let k_orig = if k <= idx { k } else { k - 1 };
    let n_orig = before[1].2;
    let stays = if leaf_left { idx < k } else { idx >= k };
    let at = if leaf_left { idx } else { idx.wrapping_sub(k) };
    ok = ok
        && leaf.remove_nodes(if leaf_left { k_orig..n_orig } else { 0..k_orig })
        && (!stays || leaf.insert_node(at, node.flags, node.key, node.data))
        && parent.remove_node(b)
        && parent.insert_node(b, entry_flags, &sep, &child);
    if !ok {
        return Err(sh.cache.latch_failure(internal("shared nodes did not fit")));
    }
    for p in [&mut *parent, &mut *leaf, &mut *sibling] {
        p.set_dbtime(dbtime);
    }
    let (leaf_steps, sib_steps) = if leaf_left {
        (
            known_part(idx, 0, k),
            vec![
                KnownStep::New { first: 0, count: m },
                KnownStep::Copy {
                    first: 0,
                    count: sib_count,
                },
            ],
        )
    } else {
        (
            known_part(idx, k, own),
            vec![
                KnownStep::Copy {
                    first: 0,
                    count: sib_count,
                },
                KnownStep::New {
                    first: sib_count,
                    count: m,
                },
            ],
        )
    };
    let changed = [
        Changed {
            page: &parent,
            before: before[0],
            steps: replaced_entries(b, 1, before[0].2),
            image: image[0],
        },
        Changed {
            page: &leaf,
            before: before[1],
            steps: leaf_steps,
            image: image[1],
        },
        Changed {
            page: &sibling,
            before: before[2],
            steps: sib_steps,
            image: image[2],
        },
    ];
    // The leaves in page-number order, as a work unit logs them.
    let order = if pgno < sib { [0, 1, 2] } else { [0, 2, 1] };
    let frames = [&*parent_f, &*leaf_f, &*sib_f];
    log_in_place(
        sh,
        &order.map(|j| &changed[j]),
        #[cfg(debug_assertions)]
        &order.map(|j| &before_pages[j]),
        annotation,
        &order.map(|j| frames[j]),
    )
    .map(Some)
}

/// A page a structural change made in place, for its record ([`log_in_place`]).
struct Changed<'p> {
    /// The page after the change.
    page: &'p Page,
    /// Its objid, dbtime and node count before the change.
    before: (ObjId, DbTime, usize),
    /// How its node list was made ([`KnownStep`]); unused for an image.
    steps: Vec<KnownStep>,
    /// Logged as an image (a page formatted anew, or whose base on disk may be torn).
    image: bool,
}

/// Logs the pages of an in-place structural change ([`share_insert`], [`split_insert`]) as
/// ONE pages record, in the order given (the latch order), with `annotation`, and marks
/// `frames` (theirs, in the same order) dirty at its position. The caller holds their write
/// latches and has changed them: a step list that does not describe its page is a bug, and
/// latches the cache as failed (the pages are no longer what the log says). Debug builds
/// redo each delta on the page before (`before_pages`) and compare.
fn log_in_place(
    sh: &DbShared,
    changed: &[&Changed<'_>],
    #[cfg(debug_assertions)] before_pages: &[&Page],
    annotation: Option<&[u8]>,
    frames: &[&Frame],
) -> Result<Lgpos> {
    let mut changes = Vec::with_capacity(changed.len());
    for (j, c) in changed.iter().enumerate() {
        let (objid_before, dbtime_before, count_before) = c.before;
        let delta = if c.image {
            None
        } else {
            known_delta_of(objid_before, dbtime_before, count_before, c.page, &c.steps).map_err(
                |_| {
                    sh.cache.latch_failure(internal(
                        "the node list of a page changed in place does not describe it",
                    ))
                },
            )?
        };
        #[cfg(debug_assertions)]
        if let (Some(d), Some(b)) = (&delta, before_pages.get(j)) {
            check_delta(b, c.page, d, sh.page_size());
        }
        #[cfg(not(debug_assertions))]
        let _ = j;
        changes.push(match delta {
            Some(d) => PageChange::Delta(d),
            None => PageChange::Image(c.page.pgno(), Cow::Borrowed(c.page.bytes())),
        });
    }
    let rec = encode_pages(sh.opts.dbid, &changes, annotation);
    sh.cache.log_change(&rec, frames)
}

/// The nodes `node_at` gives for `range`, in a vector sized once (collecting into a `Result`
/// gives the vector no size hint: it grew three times for a share's dozen nodes).
fn nodes_in<'a>(
    range: std::ops::Range<usize>,
    node_at: impl Fn(usize) -> Result<NodeRef<'a>>,
) -> Result<Vec<NodeRef<'a>>> {
    let mut nodes = Vec::with_capacity(range.len());
    for j in range {
        nodes.push(node_at(j)?);
    }
    Ok(nodes)
}

/// Size of node `j` of `leaf`'s nodes with `node` inserted at `idx` (from the tags).
fn with_new_size(leaf: &Page, idx: usize, node: NodeRef<'_>, j: usize) -> usize {
    match j.cmp(&idx) {
        std::cmp::Ordering::Less => leaf.node_size(j),
        std::cmp::Ordering::Equal => node.size(),
        std::cmp::Ordering::Greater => leaf.node_size(j - 1),
    }
}

/// Node `j` of the nodes of `leaf` (page `pgno`) with `node` inserted at `idx`.
fn with_new_node<'a>(
    leaf: &'a Page,
    pgno: Pgno,
    idx: usize,
    node: NodeRef<'a>,
    j: usize,
) -> Result<NodeRef<'a>> {
    match j.cmp(&idx) {
        std::cmp::Ordering::Less => leaf.node(j),
        std::cmp::Ordering::Equal => Some(node),
        std::cmp::Ordering::Greater => leaf.node(j - 1),
    }
    .ok_or_else(|| corrupt(ErrorKind::NodeCorrupted, pgno, "unreadable node"))
}

/// An insert that overflows its leaf and that no sibling can take (see
/// [`share_insert`]), done by splitting the leaf in two in place: the leaf keeps the first
/// part of its nodes (all of them when the new node goes at the end of the rightmost leaf,
/// sequential inserts), a page allocated past the last one gets the rest, the parent gains
/// the separator. The caller holds the tree's writer mutex.
///
/// The pages change in place under their write latches (the parent first, then the leaves by
/// page number, then the space page: the order of [`Work::commit`]) and are logged as ONE
/// pages record: the new page's image and the deltas the split makes of the others (images
/// for pages whose base on disk may be torn), with `annotation`. No page is copied but the
/// new one, built before it is installed in the cache. Everything that can fail (reads, the
/// file's growth, the new frame) comes before the first change.
///
/// Returns `None`, with nothing changed, when the parent has no room for the separator, when
/// the nodes do not part in two pages, or when the free chain holds pages (a work unit then
/// splits the leaf, and its parent too if need be).
///
/// # Errors
/// `InternalError` when the parent no longer has the leaf at the entry the descent found;
/// page read errors; the file's growth; the WAL's errors.
pub(crate) fn split_insert(sh: &DbShared, ins: Overflowing<'_>) -> Result<Option<Lgpos>> {
    let (objid, node, annotation, idx) = (ins.objid, ins.node, ins.annotation, ins.idx);
    let ((ppg, c, pgno), cap) = (ins.at.pages(), capacity(sh.page_size()));
    let (parent_f, leaf_f, space_f) = (
        sh.cache.get(ppg)?,
        sh.cache.get(pgno)?,
        sh.cache.get(SPACE_PGNO)?,
    );
    // The plan and the new page, under read latches (under the writer mutex no other thread
    // changes these pages, so the plan holds once the write latches are taken).
    let dbtime = sh.next_dbtime()?;
    let plan = {
        let parent = parent_f.latch.read();
        ins.at.check(&parent)?;
        let leaf = leaf_f.latch.read();
        let own = leaf.count() + 1;
        let append = idx == leaf.count() && leaf.next() == Pgno::NULL;
        let sizes: Vec<usize> = (0..own)
            .map(|j| with_new_size(&leaf, idx, node, j))
            .collect();
        let &[k] = partition_cuts(&sizes, cap, append).as_slice() else {
            return Ok(None);
        };
        let (lb, rb) = sizes.split_at(k);
        if k == 0
            || lb.iter().sum::<usize>() + leaf.ext().len() > cap
            || rb.iter().sum::<usize>() > cap
        {
            return Ok(None);
        }
        let own_ref = |j: usize| with_new_node(&leaf, pgno, idx, node, j);
        let sep = shortest_separator(own_ref(k - 1)?.key, own_ref(k)?.key);
        if parent.used() + parent.ext().len() + NODE_OVERHEAD + sep.len() + 4 > cap {
            return Ok(None);
        }
        let space = SpaceHeader::decode(&space_f.latch.read())?;
        if space.free_head != Pgno::NULL {
            return Ok(None);
        }
        let p = page_past_last(sh, &space)?;
        // Built in a buffer of the cache's, which its frame then takes without a copy.
        let right = nodes_in(k..own, own_ref)?;
        let mut new_page = sh
            .cache
            .build_page((p, objid, leaf.flags(), 0), right.into_iter())?;
        new_page.set_prev(pgno);
        new_page.set_next(leaf.next());
        new_page.set_dbtime(dbtime);
        // Its keys were just written: the next insert into it searches through hints.
        new_page.build_hints();
        (k, sep, p, leaf.next(), space, new_page)
    };
    let (k, sep, new_pgno, old_next, mut space, new_page) = plan;
    // The new page's frame and the leaf's old neighbour: the last steps that may fail. A frame
    // the cache already held for the page number gives `new_page` back, to copy in below.
    let (new_f, new_page) = sh.cache.get_or_install_page(new_page)?;
    let next_f = (old_next != Pgno::NULL)
        .then(|| sh.cache.get(old_next))
        .transpose()?;
    // Write latches: the parent, the leaves by page number, the space page.
    let mut parent = parent_f.latch.write();
    let mut leaves: Vec<&Arc<Frame>> = [Some(&leaf_f), Some(&new_f), next_f.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    leaves.sort_by_key(|f| f.pgno);
    let mut guards: Vec<_> = leaves.iter().map(|f| f.latch.write()).collect();
    let mut space_g = space_f.latch.write();
    let image: Vec<bool> = std::iter::once(&parent_f)
        .chain(leaves.iter().copied())
        .chain(std::iter::once(&space_f))
        .map(|f| f.pgno == new_pgno || f.meta.lock().needs_image)
        .collect();
    #[cfg(debug_assertions)]
    let before_pages: Vec<Page> = std::iter::once((*parent).clone())
        .chain(guards.iter().map(|g| (**g).clone()))
        .chain(std::iter::once((*space_g).clone()))
        .collect();
    let parent_count = parent.count();
    let mut before = vec![(parent.objid(), parent.dbtime(), parent_count)];
    before.extend(guards.iter().map(|g| (g.objid(), g.dbtime(), g.count())));
    before.push((space_g.objid(), space_g.dbtime(), space_g.count()));
    // Every page fits what it gets: from here on, nothing may fail between the first change
    // and the record (a failure latches the cache as failed).
    let mut ok = true;
    let mut leaf_count = 0;
    for (f, g) in leaves.iter().zip(guards.iter_mut()) {
        if f.pgno == pgno {
            let n_orig = g.count();
            let k_orig = if k <= idx { k } else { k - 1 };
            ok = ok
                && g.remove_nodes(k_orig..n_orig)
                && (idx >= k || g.insert_node(idx, node.flags, node.key, node.data));
            g.set_next(new_pgno);
            leaf_count = g.count();
        } else if f.pgno == new_pgno {
            if let Some(page) = &new_page {
                // A frame the cache already held for the page number: it gets the content.
                g.copy_from(page);
            }
        } else {
            g.set_prev(new_pgno);
        }
    }
    drop(new_page);
    ok = ok
        && parent.replace_data(c, &new_pgno.to_bytes())
        && parent.insert_node(c, NodeFlags(0), &sep, &pgno.to_bytes());
    space.pgno_last = new_pgno.0;
    ok = ok && space_g.set_ext(&space.encode()).is_ok();
    if !ok {
        return Err(sh
            .cache
            .latch_failure(internal("a split's parts did not fit")));
    }
    parent.set_dbtime(dbtime);
    for g in &mut guards {
        g.set_dbtime(dbtime);
    }
    space_g.set_dbtime(dbtime);
    debug_assert_eq!(leaf_count, k, "the split leaf keeps the first part");
    // In the latch order: the parent, the leaves by page number, the space page. The parent's
    // entry `c` became the separator and the new page's entry; the leaf kept the first part;
    // the leaf's old neighbour and the space page keep their nodes; the new page is an image.
    let keeps_nodes = |before: (ObjId, DbTime, usize)| {
        vec![KnownStep::Copy {
            first: 0,
            count: before.2,
        }]
    };
    let mut changed = Vec::with_capacity(5);
    changed.push(Changed {
        page: &parent,
        before: before[0],
        steps: replaced_entries(c, 2, parent_count),
        image: image[0],
    });
    for (j, g) in guards.iter().enumerate() {
        let b = before[j + 1];
        changed.push(Changed {
            page: g,
            before: b,
            steps: if g.pgno() == pgno {
                known_part(idx, 0, k)
            } else {
                keeps_nodes(b)
            },
            image: image[j + 1],
        });
    }
    let b = before[guards.len() + 1];
    changed.push(Changed {
        page: &space_g,
        before: b,
        steps: keeps_nodes(b),
        image: image[guards.len() + 1],
    });
    let frames: Vec<&Frame> = std::iter::once(&*parent_f)
        .chain(leaves.iter().map(|f| &***f))
        .chain(std::iter::once(&*space_f))
        .collect();
    let changed: Vec<&Changed<'_>> = changed.iter().collect();
    let lgpos = log_in_place(
        sh,
        &changed,
        #[cfg(debug_assertions)]
        &before_pages.iter().collect::<Vec<_>>(),
        annotation,
        &frames,
    )?;
    Ok(Some(lgpos))
}

/// The steps of a parent page of `n` entries whose entry `c` became `count` entries (the
/// separators a share or a split put there): the entries around them stay.
fn replaced_entries(c: usize, count: usize, n: usize) -> Vec<KnownStep> {
    vec![
        KnownStep::Copy { first: 0, count: c },
        KnownStep::New { first: c, count },
        KnownStep::Copy {
            first: c + 1,
            count: n.saturating_sub(c + 1),
        },
    ]
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

/// Where to cut nodes of `sizes` (bytes each, tag included) into pages of `cap` bytes: the
/// start index of every part after the first. Two parts when they fit: just before the last
/// node for sequential inserts (`append`), else at the point that balances the bytes;
/// otherwise greedy packing (every node fits a page on its own, so this always succeeds).
fn partition_cuts(sizes: &[usize], cap: usize, append: bool) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let n = sizes.len();
    let last = sizes.last().copied().unwrap_or(0);
    if append && n >= 2 && total - last <= cap {
        return vec![n - 1];
    }
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
    if let Some((_, c)) = best {
        return vec![c];
    }
    let mut cuts = Vec::new();
    let mut cur_size = 0;
    for (j, &s) in sizes.iter().enumerate() {
        if cur_size + s > cap && cur_size > 0 {
            cuts.push(j);
            cur_size = 0;
        }
        cur_size += s;
    }
    cuts
}

fn child_node(key: Vec<u8>, child: Pgno) -> Node {
    Node {
        flags: NodeFlags(0),
        key,
        data: child.to_bytes().to_vec(),
    }
}

/// Splits the page at `path[i]`, whose content overflows as `ov`, into pages that fit: the
/// first part stays on the page and the others go to new pages on its right (a root keeps
/// its place and gains a level instead, every part moving to a new child). Returns the
/// parent's whole content when the new separators do not fit it (the parent is split next),
/// else `None` with the parent updated in place.
fn split_page(
    work: &mut Work<'_>,
    path: &[(Pgno, usize)],
    i: usize,
    append: bool,
    ov: &Overflow,
) -> Result<Option<Overflow>> {
    let cap = capacity(work.sh.page_size());
    let pool = &work.sh.pool;
    let pgno = path.get(i).ok_or_else(|| internal("path index"))?.0;
    let root_pgno = path.first().ok_or_else(|| internal("path"))?.0;
    let root_flags = work.page(root_pgno)?.flags();
    let page = work.page(pgno)?;
    let (level, objid, old_next) = (page.level(), page.objid(), page.next());
    let flags = level_flags(root_flags, level);
    let leaf = level == 0;
    let (chain, seps) = if let (Overflow::Append(node), true) = (ov, i > 0) {
        // Sequential inserts: the page stays as it is, the node starts a new page.
        let n = page.count();
        let last = page.key(n.saturating_sub(1));
        let sep = if leaf {
            shortest_separator(last, &node.key)
        } else {
            last.to_vec()
        };
        let c = work.alloc(objid, flags, level)?;
        work.page_mut(c)?
            .rebuild(&[], std::iter::once(node.node_ref()))?;
        (vec![pgno, c], vec![sep])
    } else {
        // The content as node references: the parent's nodes handed up by a split below,
        // or borrowed from a copy of the page, with the new node.
        let ext = page.ext().to_vec();
        let src = (!matches!(ov, Overflow::Nodes(_))).then(|| pool.copy(page));
        let mut refs = match &src {
            Some(src) => node_refs(src, pgno)?,
            None => Vec::new(),
        };
        // Where the new node goes among the page's own nodes (an insert into a leaf), for the
        // node list of the part that stays.
        let inserted = match ov {
            Overflow::Insert(idx, _) => Some((*idx).min(refs.len())),
            Overflow::Nodes(_) | Overflow::Append(_) => None,
        };
        match ov {
            Overflow::Nodes(nodes) => refs.extend(nodes.iter().map(Node::node_ref)),
            Overflow::Append(node) => refs.push(node.node_ref()),
            Overflow::Insert(idx, node) => {
                refs.insert((*idx).min(refs.len()), node.node_ref());
            }
        }
        let sizes: Vec<usize> = refs.iter().map(NodeRef::size).collect();
        let mut cuts = partition_cuts(&sizes, cap, append && leaf);
        cuts.push(refs.len());
        let mut parts = Vec::with_capacity(cuts.len());
        let mut seps = Vec::with_capacity(cuts.len());
        let mut from = 0;
        for &to in &cuts {
            let part = refs.get(from..to).unwrap_or_default();
            // A leaf separator is the shortest key between the neighbours of the cut; an
            // internal one is the left part's last key (the bound its child already has).
            if let (Some(l), Some(r)) = (part.last(), refs.get(to)) {
                seps.push(if leaf {
                    shortest_separator(l.key, r.key)
                } else {
                    l.key.to_vec()
                });
            }
            parts.push(part);
            from = to;
        }
        if i == 0 {
            // The root stays where it is: its content moves to new pages and it gains a
            // level.
            let mut children = Vec::with_capacity(parts.len());
            for part in &parts {
                let c = work.alloc(objid, flags, level)?;
                work.page_mut(c)?.rebuild(&[], part.iter().copied())?;
                children.push(c);
            }
            link_chain(work, &children, Pgno::NULL, Pgno::NULL)?;
            let root_nodes: Vec<Node> = children
                .iter()
                .enumerate()
                .map(|(j, c)| child_node(seps.get(j).cloned().unwrap_or_default(), *c))
                .collect();
            let root = work.page_mut(pgno)?;
            root.set_level(level + 1);
            let root_level_flags = level_flags(root_flags, level + 1);
            root.set_flags(root_level_flags.with(PageFlags::ROOT, true));
            root.set_nodes(&root_nodes)?;
            return Ok(None);
        }
        let mut chain = vec![pgno];
        for (j, part) in parts.iter().enumerate() {
            if j == 0 {
                work.page_mut(pgno)?.rebuild(&ext, part.iter().copied())?;
                if let Some(at) = inserted {
                    // The leaf keeps the first part of its nodes and the new one.
                    work.set_known(pgno, known_part(at, 0, part.len()));
                }
            } else {
                let c = work.alloc(objid, flags, level)?;
                work.page_mut(c)?.rebuild(&[], part.iter().copied())?;
                chain.push(c);
            }
        }
        drop(parts);
        drop(refs);
        if let Some(src) = src {
            pool.give(src);
        }
        (chain, seps)
    };
    let prev = work.page(pgno)?.prev();
    link_chain(work, &chain, prev, old_next)?;
    if old_next != Pgno::NULL {
        let last = chain.last().copied().unwrap_or(pgno);
        work.set_links(old_next, Some(last), None)?;
    }
    // The parent: entry `c` (old key, this page) becomes (seps[0], chain[0]), ...,
    // (old key, last of chain).
    let &(ppg, c) = path.get(i - 1).ok_or_else(|| internal("path index"))?;
    let last = chain.last().copied().unwrap_or(pgno);
    let parent = work.page_mut(ppg)?;
    if c >= parent.count() {
        return Err(corrupt(
            ErrorKind::BadParentPageLink,
            ppg,
            "child index out of range",
        ));
    }
    let grow: usize = seps.iter().map(|k| NODE_OVERHEAD + k.len() + 4).sum();
    if parent.used() + grow <= cap {
        let n = parent.count();
        let ok =
            parent.replace_data(c, &last.to_bytes())
                && chain.iter().zip(&seps).enumerate().all(|(j, (pg, sep))| {
                    parent.insert_node(c + j, NodeFlags(0), sep, &pg.to_bytes())
                });
        if !ok {
            return Err(internal("separator did not fit the parent"));
        }
        // Entry `c` became the separators of the chain and its last page's entry.
        work.set_known(ppg, replaced_entries(c, chain.len(), n));
        return Ok(None);
    }
    let mut pnodes = parent.to_nodes();
    let old = pnodes.remove(c);
    for (j, pg) in chain.iter().enumerate() {
        let key = seps.get(j).cloned().unwrap_or_else(|| old.key.clone());
        pnodes.insert(c + j, child_node(key, *pg));
    }
    Ok(Some(Overflow::Nodes(pnodes)))
}

/// Links `chain` left to right, with `prev` before the first and `next` after the last.
fn link_chain(work: &mut Work<'_>, chain: &[Pgno], prev: Pgno, next: Pgno) -> Result<()> {
    for (j, &p) in chain.iter().enumerate() {
        let before = if j == 0 {
            prev
        } else {
            chain.get(j - 1).copied().unwrap_or(prev)
        };
        let after = chain.get(j + 1).copied().unwrap_or(next);
        work.set_links(p, Some(before), Some(after))?;
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
    let siblings = work.page(ppg)?.count();
    if siblings <= 1 {
        let page = work.page(pgno)?;
        if page.count() > 0 {
            return Ok(false);
        }
        let (prev, next) = (page.prev(), page.next());
        if prev != Pgno::NULL {
            work.set_links(prev, None, Some(next))?;
        }
        if next != Pgno::NULL {
            work.set_links(next, Some(prev), None)?;
        }
        work.free(pgno)?;
        work.page_mut(ppg)?.remove_node(child_idx);
        return Ok(true);
    }
    let li = child_idx.saturating_sub(1);
    let parent = work.page(ppg)?;
    let child_at = |k: usize| {
        parent
            .child(k)
            .ok_or_else(|| corrupt(ErrorKind::BadParentPageLink, ppg, "bad child node"))
    };
    let (l, r) = (child_at(li)?, child_at(li + 1)?);
    let sep = parent.key(li).to_vec();
    let lp = work.page(l)?;
    let (lu, l_level, l_next, l_count) = (lp.used(), lp.level(), lp.next(), lp.count());
    let l_last_key = if l_count > 0 {
        lp.key(l_count - 1).len()
    } else {
        0
    };
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
    let r_next = rp.next();
    let r_nodes = rp.take_nodes();
    let lp = work.page_mut(l)?;
    let mut nodes = lp.take_nodes();
    if l_level > 0
        && let Some(last) = nodes.last_mut()
    {
        last.key = sep;
    }
    nodes.extend(r_nodes);
    lp.set_nodes(&nodes)?;
    lp.set_next(r_next);
    if r_next != Pgno::NULL {
        work.set_links(r_next, Some(l), None)?;
    }
    work.free(r)?;
    let parent = work.page_mut(ppg)?;
    parent.replace_data(li + 1, &l.to_bytes());
    parent.remove_node(li);
    Ok(true)
}

/// A root with one child absorbs it; a root with none becomes an empty leaf.
fn collapse_root(work: &mut Work<'_>, root: Pgno) -> Result<()> {
    for _ in 0..MAX_DEPTH {
        let rp = work.page(root)?;
        if rp.is_leaf() || rp.count() > 1 {
            return Ok(());
        }
        let root_flags = rp.flags();
        let Some(child) = rp.child(0) else {
            let r = work.page_mut(root)?;
            r.set_level(0);
            r.set_flags(level_flags(root_flags, 0).with(PageFlags::ROOT, true));
            return Ok(());
        };
        let cp = work.page_mut(child)?;
        let (level, nodes) = (cp.level(), cp.take_nodes());
        let r = work.page_mut(root)?;
        r.set_level(level);
        r.set_flags(level_flags(root_flags, level).with(PageFlags::ROOT, true));
        r.set_nodes(&nodes)?;
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
    fn growth_is_geometric_and_capped() {
        // Small files grow by the configured extension.
        assert_eq!(growth_pages(256, 256, 8192), 256);
        assert_eq!(growth_pages(0, 1, 8192), 1);
        // Then by a sixty-fourth of the file...
        assert_eq!(growth_pages(16_384, 256, 8192), 256);
        assert_eq!(growth_pages(65_536, 256, 8192), 1024);
        // ...up to 64 MiB at a time.
        assert_eq!(growth_pages(10_000_000, 256, 8192), 8192);
        assert_eq!(growth_pages(10_000_000, 256, 32_768), 2048);
        // A configured extension above the cap wins.
        assert_eq!(growth_pages(10_000_000, 20_000, 8192), 20_000);
    }

    #[test]
    fn separators_are_shortest() {
        assert_eq!(shortest_separator(b"abc", b"abd"), b"abd");
        assert_eq!(shortest_separator(b"abc", b"b"), b"b");
        assert_eq!(shortest_separator(b"a", b"azzz"), b"az");
        assert_eq!(shortest_separator(b"", b"a"), b"a");
    }

    #[test]
    fn partition_fits_big_nodes() {
        // Three nodes that fit no page two by two: one page each.
        assert_eq!(partition_cuts(&[404, 1004, 604], 1020, false), vec![1, 2]);
        // Two parts balanced by bytes.
        assert_eq!(partition_cuts(&[104; 10], 1020, false), vec![5]);
        // Sequential inserts: only the last node moves.
        assert_eq!(partition_cuts(&[104; 10], 1020, true), vec![9]);
    }
}
