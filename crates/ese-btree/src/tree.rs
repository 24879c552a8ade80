//! B+trees (ESE's FDP trees): one per objid, with a fixed root page.
//!
//! Reads descend with latch coupling (the child's read latch is taken before the parent's is
//! released), so a reader sees every page either before or after a structural change. Writes
//! are serialised by the database's writer mutex; a change that fits its leaf (and does not
//! leave it underfull) is applied in place under the leaf's write latch and logged as one node
//! record (or an image, if the page needs one); any other change goes through a work unit
//! (`split.rs`).

use std::sync::Arc;

use ese_core::{Error, ErrorKind, ObjId, Pgno, Result};
use parking_lot::RawRwLock;
use parking_lot::lock_api::ArcRwLockReadGuard;

use crate::cache::Frame;
use crate::cursor::Cursor;
use crate::db::{DbShared, TreeKind};
use crate::page::{NODE_OVERHEAD, Node, NodeFlags, Page, PageFlags};
use crate::record::{NodeOp, encode_images, encode_node};
use crate::split::{Change, MAX_DEPTH, Work, capacity, put};

/// The longest key for a page size (ESE: 1000 bytes with 4 KiB pages, 2000 above).
pub(crate) fn max_key_len(page_size: usize) -> usize {
    if page_size <= 4096 { 1000 } else { 2000 }
}

/// The largest key + data of one node for a page size: one node fills a page.
pub(crate) fn max_record_len(page_size: usize) -> usize {
    capacity(page_size) - NODE_OVERHEAD
}

pub(crate) type ReadGuard = ArcRwLockReadGuard<RawRwLock, Page>;

/// Where a descent goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// The leaf whose key range holds the key.
    Key(&'a [u8]),
    /// The leaf holding the largest keys below the key.
    Before(&'a [u8]),
    /// The rightmost leaf.
    Last,
}

/// A leaf reached by a descent, read-latched, with its key bounds from the parents.
pub(crate) struct Leaf {
    pub(crate) frame: Arc<Frame>,
    pub(crate) guard: ReadGuard,
    /// Inclusive lower bound of the leaf's keys (None: no lower bound).
    pub(crate) lower: Option<Vec<u8>>,
    /// Exclusive upper bound of the leaf's keys (None: no upper bound).
    pub(crate) upper: Option<Vec<u8>>,
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
        let mut frame = self.sh.cache.get(self.root)?;
        let mut guard = frame.latch.read_arc();
        let (mut lower, mut upper) = (None, None);
        for _ in 0..MAX_DEPTH {
            if guard.objid != self.objid || guard.flags.contains(PageFlags::EMPTY) {
                return Err(corrupt(
                    ErrorKind::BadParentPageLink,
                    frame.pgno,
                    format!("page does not belong to tree {}", self.objid),
                ));
            }
            if guard.is_leaf() {
                return Ok(Leaf {
                    frame,
                    guard,
                    lower,
                    upper,
                });
            }
            let n = guard.nodes.len();
            if n == 0 {
                return Err(corrupt(
                    ErrorKind::DatabaseCorrupted,
                    frame.pgno,
                    "internal page without children",
                ));
            }
            let i = match target {
                Target::Key(k) => guard.child_index(k),
                Target::Before(k) => guard
                    .nodes
                    .get(..n - 1)
                    .unwrap_or_default()
                    .partition_point(|nd| nd.key.as_slice() < k),
                Target::Last => n - 1,
            };
            if i + 1 < n {
                upper = guard.nodes.get(i).map(|nd| nd.key.clone());
            }
            if i > 0 {
                lower = guard.nodes.get(i - 1).map(|nd| nd.key.clone());
            }
            let child = guard.nodes.get(i).and_then(Node::child).ok_or_else(|| {
                corrupt(ErrorKind::NodeCorrupted, frame.pgno, "bad child pointer")
            })?;
            let level = guard.level;
            let cframe = self.sh.cache.get(child)?;
            let cguard = cframe.latch.read_arc();
            if cguard.level + 1 != level {
                return Err(corrupt(
                    ErrorKind::BadParentPageLink,
                    child,
                    "child at the wrong level",
                ));
            }
            drop(guard);
            frame = cframe;
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
        let leaf = self.descend(Target::Key(key))?;
        match leaf.guard.search(key) {
            (i, true) => leaf
                .guard
                .nodes
                .get(i)
                .map(|n| (n.data.clone(), n.flags))
                .ok_or_else(|| Error::new(ErrorKind::RecordNotFound)),
            _ => Err(Error::new(ErrorKind::RecordNotFound)),
        }
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
    /// As [`Tree::insert`].
    pub fn insert_with_flags(&self, key: &[u8], data: &[u8], flags: NodeFlags) -> Result<()> {
        self.check_sizes(key, data.len())?;
        self.modify(key, Change::Insert(data.to_vec(), flags))
    }

    /// Replaces the data of an existing node, keeping its flags (ESE `DIRReplace`).
    ///
    /// # Errors
    /// `RecordNotFound` if the key does not exist; `RecordTooBig`; as [`Tree::insert`].
    pub fn replace(&self, key: &[u8], data: &[u8]) -> Result<()> {
        self.check_sizes(key, data.len())?;
        self.modify(key, Change::Replace(data.to_vec()))
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
    /// `RecordNotFound` if the key does not exist; as [`Tree::insert`].
    pub fn set_flags(&self, key: &[u8], flags: NodeFlags) -> Result<()> {
        self.modify(key, Change::SetFlags(flags))
    }

    fn modify(&self, key: &[u8], change: Change) -> Result<()> {
        let sh = &self.sh;
        sh.cache.check_failed()?;
        let _w = sh.writer.lock();
        let leaf = self.descend(Target::Key(key))?;
        let frame = leaf.frame;
        drop(leaf.guard);
        {
            let mut page = frame.latch.write();
            let cap = capacity(sh.page_size());
            let is_root = frame.pgno == self.root;
            let (idx, found) = page.search(key);
            let idx16 = u16::try_from(idx).map_err(|_| Error::new(ErrorKind::InternalError))?;
            let used = page.used();
            let op = match &change {
                Change::Insert(data, flags) => {
                    if found {
                        return Err(Error::new(ErrorKind::KeyDuplicate));
                    }
                    (used + NODE_OVERHEAD + key.len() + data.len() <= cap).then(|| NodeOp::Insert {
                        idx: idx16,
                        flags: *flags,
                        key: key.to_vec(),
                        data: data.clone(),
                    })
                }
                Change::Replace(data) => {
                    let old = page
                        .nodes
                        .get(idx)
                        .filter(|_| found)
                        .ok_or_else(|| Error::new(ErrorKind::RecordNotFound))?
                        .data
                        .len();
                    let new_used = used - old + data.len();
                    (new_used <= cap && (is_root || new_used >= cap / 4)).then(|| NodeOp::Replace {
                        idx: idx16,
                        data: data.clone(),
                    })
                }
                Change::Delete => {
                    let size = page
                        .nodes
                        .get(idx)
                        .filter(|_| found)
                        .ok_or_else(|| Error::new(ErrorKind::RecordNotFound))?
                        .size();
                    (is_root || used - size >= cap / 4).then_some(NodeOp::Delete { idx: idx16 })
                }
                Change::SetFlags(flags) => {
                    if !found {
                        return Err(Error::new(ErrorKind::RecordNotFound));
                    }
                    Some(NodeOp::SetFlags {
                        idx: idx16,
                        flags: *flags,
                    })
                }
            };
            if let Some(op) = op {
                return self.apply_in_place(&frame, &mut page, &op);
            }
        }
        let mut work = Work::new(sh);
        put(&mut work, self.root, self.objid, key, change)?;
        work.commit()
    }

    fn apply_in_place(&self, frame: &Frame, page: &mut Page, op: &NodeOp) -> Result<()> {
        let sh = &self.sh;
        let before = page.dbtime;
        let after = sh.next_dbtime()?;
        apply_op(page, op).map_err(|e| e.with_pgno(frame.pgno))?;
        page.dbtime = after;
        let needs_image = frame.meta.lock().needs_image;
        let rec = if needs_image {
            let img = page.encode(sh.page_size())?;
            encode_images(sh.opts.dbid, &[(frame.pgno, &img)])
        } else {
            encode_node(sh.opts.dbid, frame.pgno, self.objid, before, after, op)
        };
        sh.cache.log_change(&rec, &[frame])?;
        Ok(())
    }
}

/// Applies a node operation to a page (normal operation and redo).
///
/// # Errors
/// `LogOperationInconsistentWithDatabase` if the node index does not exist on the page.
pub(crate) fn apply_op(page: &mut Page, op: &NodeOp) -> Result<()> {
    let bad = || {
        Error::new(ErrorKind::LogOperationInconsistentWithDatabase)
            .with_message("node index not on the page")
    };
    match op {
        NodeOp::Insert {
            idx,
            flags,
            key,
            data,
        } => {
            if usize::from(*idx) > page.nodes.len() {
                return Err(bad());
            }
            page.insert_node(
                usize::from(*idx),
                Node {
                    flags: *flags,
                    key: key.clone(),
                    data: data.clone(),
                },
            );
        }
        NodeOp::Replace { idx, data } => {
            if !page.replace_data(usize::from(*idx), data.clone()) {
                return Err(bad());
            }
        }
        NodeOp::Delete { idx } => {
            page.remove_node(usize::from(*idx)).ok_or_else(bad)?;
        }
        NodeOp::SetFlags { idx, flags } => {
            page.nodes.get_mut(usize::from(*idx)).ok_or_else(bad)?.flags = *flags;
        }
    }
    Ok(())
}
