//! B+trees (ESE's FDP trees): one per objid, with a fixed root page.
//!
//! Reads descend with latch coupling (the child's read latch is taken before the parent's is
//! released), so a reader sees every page either before or after a structural change. Writes
//! are serialised by the database's writer mutex; a change that fits its leaf (and does not
//! leave it underfull) is applied in place under the leaf's write latch and logged as one node
//! record (or an image, if the page needs one); any other change goes through a work unit
//! (`split.rs`).

use std::sync::Arc;

use ese_core::{Error, ErrorKind, Lgpos, ObjId, Pgno, Result};

use crate::cache::Frame;
use crate::cursor::{Cursor, LeafHint};
use crate::db::{DbShared, TreeKind};
use crate::latch::ReadGuard;
use crate::page::{NODE_OVERHEAD, NodeFlags, NodeRef, Page, PageFlags};
use crate::record::{ANNOTATION_MAX, NodeOp, encode_annotation, encode_images, node_parts};
use crate::split::{
    Change, LeafAt, MAX_DEPTH, Overflowing, Work, capacity, put, share_insert, split_insert,
};

/// The longest key for a page size (ESE: 1000 bytes with 4 KiB pages, 2000 above).
pub(crate) fn max_key_len(page_size: usize) -> usize {
    if page_size <= 4096 { 1000 } else { 2000 }
}

/// The largest key + data of one node for a page size: one node fills a page.
pub(crate) fn max_record_len(page_size: usize) -> usize {
    capacity(page_size) - NODE_OVERHEAD
}

/// Where a descent goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// The leaf whose key range holds the key.
    Key(&'a [u8]),
    /// The rightmost leaf.
    Last,
}

/// A leaf reached by a descent, read-latched.
pub(crate) struct Leaf {
    pub(crate) guard: ReadGuard,
    /// The leaf's parent and its entry there, as the descent found them (`None`: the leaf is
    /// the root, or it was not reached by a descent). Under the tree's writer mutex, held
    /// since before the descent, they stay so.
    pub(crate) parent: Option<(Pgno, usize)>,
}

/// The leaf [`Tree::put_with`] found for a key, for [`Tree::modify_locked`]: its frame, where
/// the key is or goes on it, and its parent entry ([`Leaf::parent`]).
struct Searched {
    frame: Arc<Frame>,
    at: (usize, bool),
    parent: Option<(Pgno, usize)>,
}

/// A handle on one B+tree (ESE's FCB + FDP): cheap to clone, valid while the database is
/// open.
#[derive(Clone)]
pub struct Tree {
    pub(crate) sh: Arc<DbShared>,
    objid: ObjId,
    root: Pgno,
    kind: TreeKind,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("objid", &self.objid)
            .field("root", &self.root)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The annotation buffer of this thread's last [`Tree::put_with`], kept for the next.
    static ANNOTATION: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The thread's annotation buffer, taken out of [`ANNOTATION`] empty and put back when dropped.
struct ScratchAnnotation(Vec<u8>);

impl ScratchAnnotation {
    fn take() -> ScratchAnnotation {
        let mut buf = ANNOTATION.with_borrow_mut(std::mem::take);
        buf.clear();
        ScratchAnnotation(buf)
    }
}

impl Drop for ScratchAnnotation {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // An annotation may hold a before-image of up to a page: a buffer grown past 64 KiB
        // is not kept.
        if buf.capacity() <= 64 << 10 {
            let _ = ANNOTATION.try_with(|a| {
                if let Ok(mut a) = a.try_borrow_mut() {
                    *a = buf;
                }
            });
        }
    }
}

fn corrupt(kind: ErrorKind, pgno: Pgno, msg: impl Into<String>) -> Error {
    Error::new(kind).with_pgno(pgno).with_message(msg)
}

impl Tree {
    pub(crate) fn new(sh: Arc<DbShared>, objid: ObjId, root: Pgno, kind: TreeKind) -> Tree {
        Tree {
            sh,
            objid,
            root,
            kind,
        }
    }

    /// The tree's object id (ESE `objidFDP`).
    pub fn objid(&self) -> ObjId {
        self.objid
    }

    /// The tree's root page (ESE `pgnoFDP`); it never moves.
    pub fn root(&self) -> Pgno {
        self.root
    }

    /// What the tree holds.
    pub fn kind(&self) -> TreeKind {
        self.kind
    }

    /// A cursor on the tree, not positioned (ESE `JetOpenTable` + `DIROpen`).
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.clone())
    }

    /// Descends to a leaf with latch coupling.
    pub(crate) fn descend(&self, target: Target<'_>) -> Result<Leaf> {
        let mut guard = ReadGuard::new(self.sh.cache.get(self.root)?);
        let mut parent = None;
        for _ in 0..MAX_DEPTH {
            if guard.objid() != self.objid || guard.flags().contains(PageFlags::EMPTY) {
                return Err(corrupt(
                    ErrorKind::BadParentPageLink,
                    guard.frame().pgno,
                    format!("page does not belong to tree {}", self.objid),
                ));
            }
            if guard.is_leaf() {
                return Ok(Leaf { guard, parent });
            }
            let n = guard.count();
            if n == 0 {
                return Err(corrupt(
                    ErrorKind::DatabaseCorrupted,
                    guard.frame().pgno,
                    "internal page without children",
                ));
            }
            let entry = match target {
                Target::Key(k) => guard.child_entry_for(k),
                Target::Last => guard.child(n - 1).map(|child| (n - 1, child)),
            };
            let (entry, child) = entry.ok_or_else(|| {
                corrupt(
                    ErrorKind::NodeCorrupted,
                    guard.frame().pgno,
                    "bad child pointer",
                )
            })?;
            let level = guard.level();
            let cguard = ReadGuard::new(self.sh.cache.get(child)?);
            if cguard.level() + 1 != level {
                return Err(corrupt(
                    ErrorKind::BadParentPageLink,
                    child,
                    "child at the wrong level",
                ));
            }
            parent = Some((guard.frame().pgno, entry));
            guard = cguard;
        }
        Err(corrupt(
            ErrorKind::DatabaseCorrupted,
            self.root,
            format!("tree deeper than {MAX_DEPTH} levels"),
        ))
    }

    /// The data and flags of the node with exactly `key` (ESE `DIRSeek` + `DIRGet`).
    ///
    /// # Errors
    /// `RecordNotFound` if there is no such key; page read errors (`ReadVerifyFailure`, ...).
    pub fn get(&self, key: &[u8]) -> Result<(Vec<u8>, NodeFlags)> {
        self.get_opt(key)?
            .ok_or_else(|| Error::new(ErrorKind::RecordNotFound))
    }

    /// The data and flags of the node with exactly `key`, or `None` when there is none.
    ///
    /// # Errors
    /// Page read errors (`ReadVerifyFailure`, `BadParentPageLink`, ...).
    pub fn get_opt(&self, key: &[u8]) -> Result<Option<(Vec<u8>, NodeFlags)>> {
        self.with_data(key, |data, flags| (data.to_vec(), flags))
    }

    /// Calls `f` with the data and flags of the node with exactly `key`, read in place in the
    /// page (no copy); `None` when there is no such node. `f` runs under the leaf's read latch:
    /// keep it short and do not change the tree from it (writers of that leaf wait meanwhile).
    ///
    /// # Errors
    /// Page read errors (`ReadVerifyFailure`, `BadParentPageLink`, ...).
    pub fn with_data<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8], NodeFlags) -> R,
    ) -> Result<Option<R>> {
        let leaf = self.descend(Target::Key(key))?;
        Ok(match leaf.guard.search(key) {
            (i, true) => leaf.guard.node(i).map(|n| f(n.data, n.flags)),
            _ => None,
        })
    }

    fn check_sizes(&self, key: &[u8], data_len: usize) -> Result<()> {
        let ps = self.sh.page_size();
        let max_key = max_key_len(ps);
        if key.len() > max_key {
            return Err(Error::new(ErrorKind::KeyTooBig).with_message(format!(
                "key of {} bytes, the limit is {max_key}",
                key.len()
            )));
        }
        let max = max_record_len(ps);
        if key.len() + data_len > max {
            return Err(Error::new(ErrorKind::RecordTooBig).with_message(format!(
                "key + data of {} bytes, the limit is {max}",
                key.len() + data_len
            )));
        }
        Ok(())
    }

    /// Inserts a new node (ESE `DIRInsert`).
    ///
    /// # Errors
    /// `KeyDuplicate` if the key exists (flag-deleted or not); `KeyTooBig` over the key limit,
    /// `RecordTooBig` over the record limit (nothing written); `DatabaseUnavailable` after an
    /// earlier write failure; space and page read errors.
    pub fn insert(&self, key: &[u8], data: &[u8]) -> Result<()> {
        self.insert_with_flags(key, data, NodeFlags::default())
    }

    /// [`Tree::insert`] with node flags (e.g. `VERSIONED` for an uncommitted insert).
    ///
    /// # Errors
    /// As [`Tree::insert`]; `InvalidParameter` for undefined flags.
    pub fn insert_with_flags(&self, key: &[u8], data: &[u8], flags: NodeFlags) -> Result<()> {
        check_flags(flags)?;
        self.check_sizes(key, data.len())?;
        self.modify(key, Change::Insert(data, flags))
    }

    /// Replaces the data of an existing node, keeping its flags (ESE `DIRReplace`).
    ///
    /// # Errors
    /// `RecordNotFound` if the key does not exist; `RecordTooBig`; as [`Tree::insert`].
    pub fn replace(&self, key: &[u8], data: &[u8]) -> Result<()> {
        self.check_sizes(key, data.len())?;
        self.modify(key, Change::Replace(data))
    }

    /// Removes a node physically (ESE `DIRDelete` at version cleanup).
    ///
    /// # Errors
    /// `RecordNotFound` if the key does not exist; as [`Tree::insert`].
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.modify(key, Change::Delete)
    }

    /// Sets the node flags of an existing node (ESE flag-delete / version bits).
    ///
    /// # Errors
    /// `RecordNotFound` if the key does not exist; `InvalidParameter` for undefined flags; as
    /// [`Tree::insert`].
    pub fn set_flags(&self, key: &[u8], flags: NodeFlags) -> Result<()> {
        check_flags(flags)?;
        self.modify(key, Change::SetFlags(flags))
    }

    fn modify(&self, key: &[u8], change: Change<'_>) -> Result<()> {
        self.sh.cache.check_failed()?;
        let _w = self.sh.writer.lock();
        self.modify_locked(key, change, None, None).map(|_| ())
    }

    /// Makes the node with `key` be `state` (insert, replace, flag change or delete, whatever
    /// it takes) and logs the change in ONE log record that also carries `annotation` (opaque
    /// bytes of the layer above, e.g. undo information), so both are redone or lost together.
    /// When the node already is in `state`, one annotation-only record is logged (redo treats
    /// it as a no-op for pages). A change that splits or merges pages is one pages record,
    /// and the annotation is in that record. Read it back with
    /// [`record_annotation`](crate::record_annotation).
    ///
    /// Returns the log position of the record.
    ///
    /// # Errors
    /// `InvalidParameter` for an annotation longer than
    /// [`ANNOTATION_MAX`](crate::ANNOTATION_MAX) or undefined node flags; `KeyTooBig`,
    /// `RecordTooBig` over the limits (checked against `state`; nothing written);
    /// `DatabaseUnavailable` after an earlier write failure; the WAL's errors; space and page
    /// read errors. Never `KeyDuplicate` or `RecordNotFound`.
    pub fn put(&self, key: &[u8], state: NodeState<'_>, annotation: &[u8]) -> Result<Lgpos> {
        check_annotation(annotation)?;
        self.put_with(key, PutTarget::State(state), None, |_, buf| {
            buf.extend_from_slice(annotation);
            Ok(true)
        })?
        .ok_or_else(|| Error::new(ErrorKind::InternalError).with_message("put wrote nothing"))
    }

    /// [`Tree::put`] decided from the node's current state, read under the same writer mutex
    /// as the change and with the same descent: `decide` gets the node's data and flags
    /// (`None`: no node) and an empty buffer, appends to the buffer the annotation to log the
    /// change with and returns `true`, or returns `false` to write nothing (then nothing is
    /// logged and this returns `None`). The buffer is reused from one call to the next on a
    /// thread, so a change allocates nothing for its annotation. `target` is the state
    /// to put, or [`PutTarget::Flags`] to keep the node's data and change only its flags.
    /// `hint`, the leaf a cursor on the key was on ([`Cursor::leaf_hint`]), is used instead of
    /// a descent from the root when it still holds the key (ESE's change at the cursor's
    /// current position); any other hint is ignored.
    ///
    /// # Errors
    /// Whatever `decide` returns (nothing written); `RecordNotFound` (-1601) for
    /// [`PutTarget::Flags`] without a node; otherwise as [`Tree::put`].
    pub fn put_with(
        &self,
        key: &[u8],
        target: PutTarget<'_>,
        hint: Option<&LeafHint>,
        decide: impl FnOnce(Option<(&[u8], NodeFlags)>, &mut Vec<u8>) -> Result<bool>,
    ) -> Result<Option<Lgpos>> {
        // Taken out for the call (a call made from `decide` finds an empty one and
        // allocates); put back by `ScratchAnnotation`'s drop, on every return.
        let mut scratch = ScratchAnnotation::take();
        let annotation = &mut scratch.0;
        match target {
            PutTarget::State(NodeState::Present { data, flags }) => {
                check_flags(flags)?;
                self.check_sizes(key, data.len())?;
            }
            PutTarget::State(NodeState::Absent) => self.check_sizes(key, 0)?,
            PutTarget::Flags(flags) => check_flags(flags)?,
        }
        let sh = &self.sh;
        sh.cache.check_failed()?;
        let _w = sh.writer.lock();
        // One descent serves the decision, the comparison and the change: the tree's writer
        // mutex is held from here to the change, so no split or merge can move the key off
        // this leaf. With a hint that holds the key, not even that.
        let (frame, current, annotation) = {
            let (leaf, at) = if let Some((leaf, i)) = hint.and_then(|h| self.hinted_leaf(h, key)) {
                (leaf, (i, true))
            } else {
                let leaf = self.descend(Target::Key(key))?;
                let at = leaf.guard.search(key);
                if let (PutTarget::State(NodeState::Present { data, .. }), (i, false)) =
                    (target, at)
                {
                    leaf.guard.prefetch_insert(i, key.len() + data.len());
                }
                (leaf, at)
            };
            let node = match at {
                (i, true) => leaf.guard.node(i),
                _ => None,
            };
            if !decide(node.as_ref().map(|n| (n.data, n.flags)), annotation)? {
                return Ok(None);
            }
            check_annotation(annotation)?;
            let current = match target {
                PutTarget::State(state) => node.map(|n| (n.flags, n.data == data_of(state))),
                PutTarget::Flags(_) => node.map(|n| (n.flags, true)),
            };
            let parent = leaf.parent;
            (
                Searched {
                    frame: leaf.guard.into_frame(),
                    at,
                    parent,
                },
                current,
                &*annotation,
            )
        };
        let state = match target {
            PutTarget::State(state) => state,
            PutTarget::Flags(flags) => {
                if current.is_none() {
                    return Err(Error::new(ErrorKind::RecordNotFound));
                }
                // Only the flags are compared and changed: the data stays.
                NodeState::Present { data: &[], flags }
            }
        };
        let change = match (state, current) {
            (NodeState::Absent, None) => None,
            (NodeState::Absent, Some(_)) => Some(Change::Delete),
            (NodeState::Present { data, flags }, None) => Some(Change::Insert(data, flags)),
            (NodeState::Present { data, flags }, Some((old_flags, same_data))) => {
                match (old_flags == flags, same_data) {
                    (true, true) => None,
                    (true, false) => Some(Change::Replace(data)),
                    (false, true) => Some(Change::SetFlags(flags)),
                    (false, false) => Some(Change::Rewrite(data, flags)),
                }
            }
        };
        if let Some(c) = change {
            self.modify_locked(key, c, Some(annotation), Some(frame))
                .map(Some)
        } else {
            let rec = encode_annotation(sh.opts.dbid, annotation);
            sh.cache.log_change(&rec, &[]).map(Some)
        }
    }

    /// The hinted leaf, read-latched, if it holds `key`: a live leaf of this tree (a freed
    /// page is flagged empty, and a page never goes to another tree without its objid
    /// changing) on which the key is found is the one leaf a descent would reach, since a key
    /// lives on one leaf only. The caller holds the writer mutex, so no split or merge moves
    /// the key off it before the change; the hint's pin keeps the frame the page's frame (a
    /// pinned frame is never evicted).
    fn hinted_leaf(&self, hint: &LeafHint, key: &[u8]) -> Option<(Leaf, usize)> {
        let guard = ReadGuard::new(Arc::clone(&hint.frame));
        let live = guard.objid() == self.objid
            && guard.is_leaf()
            && !guard.flags().contains(PageFlags::EMPTY);
        // The node the cursor was on first: one comparison while the page is unchanged.
        match guard.search_from(key, (hint.idx, true)) {
            (i, true) if live => Some((
                Leaf {
                    guard,
                    parent: None,
                },
                i,
            )),
            _ => None,
        }
    }

    /// Removes for good the nodes of `keys` (sorted ascending) that are flag-deleted (version
    /// cleanup of committed deletes no snapshot can see, ESE's cleanup of `fNDDeleted` nodes):
    /// under one hold of the writer mutex, with one descent and one write latch for the keys
    /// of each leaf. A key that is absent, or whose node is no longer flag-deleted, is left
    /// alone. Each removal is logged as its own record, as [`Tree::put`] of
    /// [`NodeState::Absent`] with an empty annotation would log it; a removal that would leave
    /// the page under a quarter full takes the general path, which merges or rebalances.
    /// Returns the number of nodes removed.
    ///
    /// # Errors
    /// As [`Tree::put`]; the nodes removed before an error stay removed.
    pub fn remove_flag_deleted(&self, keys: &[&[u8]]) -> Result<usize> {
        let sh = &self.sh;
        sh.cache.check_failed()?;
        let _w = sh.writer.lock();
        let cap = capacity(sh.page_size());
        let mut removed = 0;
        let mut i = 0;
        while let Some(first) = keys.get(i) {
            let frame = self.descend(Target::Key(first))?.guard.into_frame();
            let mut underflow = None;
            {
                let mut page = frame.latch.write();
                let is_root = frame.pgno == self.root;
                let mut routed = true;
                while let Some(key) = keys.get(i) {
                    let (idx, found) = page.search(key);
                    if !found {
                        // The descent led the first key here: it is absent. A later key may
                        // live on another leaf: descend again for it.
                        if routed {
                            i += 1;
                        }
                        break;
                    }
                    routed = false;
                    i += 1;
                    let Some(size) = page
                        .node(idx)
                        .filter(|n| n.flags.contains(NodeFlags::DELETED))
                        .map(|n| n.size())
                    else {
                        continue;
                    };
                    if !delete_stays_in_place(is_root, page.used(), size, cap) {
                        underflow = Some(*key);
                        break;
                    }
                    let idx =
                        u16::try_from(idx).map_err(|_| Error::new(ErrorKind::InternalError))?;
                    self.apply_in_place(&frame, &mut page, &NodeOp::Delete { idx }, Some(&[]))?;
                    removed += 1;
                }
            }
            if let Some(key) = underflow {
                // Still flag-deleted: the writer mutex has been held since the check.
                self.modify_locked(key, Change::Delete, Some(&[]), None)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Applies `change` under the writer mutex (held by the caller); returns the position of
    /// the one record that logged it. `leaf` is the leaf of `key` with the answer of a search
    /// for it made under the same hold of the writer mutex (so no other change moved it; it
    /// is checked all the same, see [`Page::search_from`]); without it, a descent finds it.
    fn modify_locked(
        &self,
        key: &[u8],
        change: Change<'_>,
        annotation: Option<&[u8]>,
        leaf: Option<Searched>,
    ) -> Result<Lgpos> {
        let sh = &self.sh;
        let (frame, at, parent) = if let Some(l) = leaf {
            (l.frame, Some(l.at), l.parent)
        } else {
            let leaf = self.descend(Target::Key(key))?;
            let parent = leaf.parent;
            (leaf.guard.into_frame(), None, parent)
        };
        // Where the key goes on the leaf (for an insert that overflows it, below).
        let idx = {
            let mut page = frame.latch.write();
            let cap = capacity(sh.page_size());
            let is_root = frame.pgno == self.root;
            let (idx, found) = match at {
                Some(at) => page.search_from(key, at),
                None => page.search(key),
            };
            let idx16 = u16::try_from(idx).map_err(|_| Error::new(ErrorKind::InternalError))?;
            let used = page.used();
            let found_size = || {
                page.node(idx)
                    .filter(|_| found)
                    .map(|n| (n.size(), n.data.len()))
                    .ok_or_else(|| Error::new(ErrorKind::RecordNotFound))
            };
            let op = match change {
                Change::Insert(data, flags) => {
                    if found {
                        return Err(Error::new(ErrorKind::KeyDuplicate));
                    }
                    (used + NODE_OVERHEAD + key.len() + data.len() <= cap).then_some(
                        NodeOp::Insert {
                            idx: idx16,
                            flags,
                            key,
                            data,
                        },
                    )
                }
                Change::Replace(data) | Change::Rewrite(data, _) => {
                    let old = found_size()?.1;
                    let new_used = used - old + data.len();
                    (new_used <= cap && (is_root || new_used >= cap / 4)).then_some(match change {
                        Change::Rewrite(_, flags) => NodeOp::Rewrite {
                            idx: idx16,
                            flags,
                            data,
                        },
                        _ => NodeOp::Replace { idx: idx16, data },
                    })
                }
                Change::Delete => {
                    let size = found_size()?.0;
                    delete_stays_in_place(is_root, used, size, cap)
                        .then_some(NodeOp::Delete { idx: idx16 })
                }
                Change::SetFlags(flags) => {
                    found_size()?;
                    Some(NodeOp::SetFlags { idx: idx16, flags })
                }
            };
            if let Some(op) = op {
                return self.apply_in_place(&frame, &mut page, &op, annotation);
            }
            idx
        };
        if let Change::Insert(data, flags) = change {
            // An insert that overflows its leaf shares the leaf's nodes with a sibling when
            // one has room, else splits the leaf, both in place; otherwise (a root leaf, a
            // full parent, pages on the free chain) the work unit below splits it. The parent
            // is the one the descent to the leaf passed through, under the writer mutex held
            // since.
            let node = NodeRef { flags, key, data };
            if let Some((parent, child)) = parent {
                let ins = Overflowing {
                    at: LeafAt::new(parent, child, frame.pgno),
                    idx,
                    objid: self.objid,
                    node,
                    annotation,
                };
                if let Some(lgpos) = share_insert(sh, ins)? {
                    return Ok(lgpos);
                }
                if let Some(lgpos) = split_insert(sh, ins)? {
                    return Ok(lgpos);
                }
            }
        }
        let mut work = Work::new(sh);
        put(&mut work, self.root, self.objid, key, change)?;
        work.commit_annotated(annotation)?.ok_or_else(|| {
            Error::new(ErrorKind::InternalError).with_message("change logged nothing")
        })
    }

    fn apply_in_place(
        &self,
        frame: &Frame,
        page: &mut Page,
        op: &NodeOp<'_>,
        annotation: Option<&[u8]>,
    ) -> Result<Lgpos> {
        let sh = &self.sh;
        let before = page.dbtime();
        let after = sh.next_dbtime()?;
        apply_op(page, op).map_err(|e| e.with_pgno(frame.pgno))?;
        page.set_dbtime(after);
        let needs_image = frame.meta.lock().needs_image;
        if needs_image {
            let rec = encode_images(sh.opts.dbid, &[(frame.pgno, page.bytes())], annotation);
            return sh.cache.log_change(&rec, &[frame]);
        }
        // Logged in pieces: the key and data are framed where they are, not copied into a
        // record first.
        let rec = node_parts(
            sh.opts.dbid,
            frame.pgno,
            self.objid,
            before,
            after,
            op,
            annotation,
        );
        sh.cache.log_change_parts(&rec.parts(), &[frame])
    }
}

/// What [`Tree::put_with`] makes of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutTarget<'a> {
    /// This state.
    State(NodeState<'a>),
    /// The node (which must exist) keeps its data and gets these flags.
    Flags(NodeFlags),
}

/// Whether deleting a node of `size` bytes from a page using `used` of `cap` bytes can be done
/// in place: a root page may empty, any other must stay at least a quarter full (below that
/// the general path merges it, see `split.rs`).
fn delete_stays_in_place(is_root: bool, used: usize, size: usize, cap: usize) -> bool {
    is_root || used - size >= cap / 4
}

/// `InvalidParameter` for an annotation over [`ANNOTATION_MAX`].
fn check_annotation(annotation: &[u8]) -> Result<()> {
    if annotation.len() > ANNOTATION_MAX {
        return Err(
            Error::new(ErrorKind::InvalidParameter).with_message(format!(
                "annotation of {} bytes, the limit is {ANNOTATION_MAX}",
                annotation.len()
            )),
        );
    }
    Ok(())
}

/// The state a leaf node should have ([`Tree::put`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState<'a> {
    /// No node with the key.
    Absent,
    /// A node with this data and these flags (e.g. [`NodeFlags::DELETED`] for a flag-deleted
    /// node whose data is kept until version cleanup).
    Present {
        /// The node's data.
        data: &'a [u8],
        /// The node's flags.
        flags: NodeFlags,
    },
}

fn data_of(state: NodeState<'_>) -> &[u8] {
    match state {
        NodeState::Present { data, .. } => data,
        NodeState::Absent => &[],
    }
}

/// `InvalidParameter` for flags this format does not define (they would make the page corrupt).
fn check_flags(flags: NodeFlags) -> Result<()> {
    if flags.0 & !NodeFlags::ALL.0 != 0 {
        return Err(Error::new(ErrorKind::InvalidParameter)
            .with_message(format!("undefined node flags {:#x}", flags.0)));
    }
    Ok(())
}

/// Applies a node operation to a page (normal operation and redo).
///
/// # Errors
/// `LogOperationInconsistentWithDatabase` if the node index does not exist on the page or
/// the node does not fit (the page is then unchanged).
pub(crate) fn apply_op(page: &mut Page, op: &NodeOp<'_>) -> Result<()> {
    let ok = match *op {
        NodeOp::Insert {
            idx,
            flags,
            key,
            data,
        } => page.insert_node(usize::from(idx), flags, key, data),
        NodeOp::Replace { idx, data } => page.replace_data(usize::from(idx), data),
        NodeOp::Delete { idx } => page.remove_node(usize::from(idx)),
        NodeOp::SetFlags { idx, flags } => page.set_node_flags(usize::from(idx), flags),
        NodeOp::Rewrite { idx, flags, data } => {
            page.replace_data(usize::from(idx), data)
                && page.set_node_flags(usize::from(idx), flags)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::LogOperationInconsistentWithDatabase)
            .with_message("node index not on the page, or the node does not fit"))
    }
}
