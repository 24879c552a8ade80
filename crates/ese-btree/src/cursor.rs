//! Cursors (ESE's `FUCB` on a directory): positioned on one node, moving forward and
//! backward, valid across concurrent changes.
//!
//! A cursor holds no latch between calls. It keeps a pin on its current page, the page's
//! dbtime when it read it, the node index and a copy of the node. Moving is cheap while the
//! page is unchanged (same dbtime); otherwise, or at a page boundary, the cursor re-seeks from
//! the root by its remembered key (ESE's re-seek by bookmark). It therefore never holds a leaf
//! while waiting for a sibling, which keeps writers free of deadlocks.

use std::sync::Arc;

use ese_core::{DbTime, Error, ErrorKind, Result};

use crate::cache::Frame;
use crate::page::{Node, NodeFlags};
use crate::tree::{Leaf, Target, Tree};

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
    node: Node,
}

/// A cursor on a [`Tree`]. Not positioned until a seek or move succeeds.
#[derive(Debug)]
pub struct Cursor {
    tree: Tree,
    pos: Option<Pos>,
    /// The key of the last position, kept after moving off the end so `move_prev` can return.
    last_key: Option<Vec<u8>>,
    /// After moving off an end: `Some(true)` past the last node, `Some(false)` before the
    /// first; the next move in the other direction returns to the node at that end.
    off_end: Option<bool>,
}

/// Most leaves a single move visits before giving up (corruption guard against an endless
/// chain of empty leaves, which a valid tree never has).
const MAX_HOPS: usize = 1 << 20;

impl Cursor {
    pub(crate) fn new(tree: Tree) -> Cursor {
        Cursor {
            tree,
            pos: None,
            last_key: None,
            off_end: None,
        }
    }

    fn set(&mut self, leaf: &Leaf, idx: usize) -> bool {
        match leaf.guard.nodes.get(idx) {
            Some(n) => {
                self.off_end = None;
                self.last_key = Some(n.key.clone());
                self.pos = Some(Pos {
                    frame: Arc::clone(&leaf.frame),
                    dbtime: leaf.guard.dbtime,
                    idx,
                    node: n.clone(),
                });
                true
            }
            None => false,
        }
    }

    /// Positions on the first node with key `> key` (or `>=` when `inclusive`).
    fn first_from(&mut self, key: &[u8], inclusive: bool) -> Result<bool> {
        let mut target = key.to_vec();
        let mut inclusive = inclusive;
        for _ in 0..MAX_HOPS {
            let leaf = self.tree.descend(Target::Key(&target))?;
            let (i, found) = leaf.guard.search(&target);
            let i = if found && !inclusive { i + 1 } else { i };
            if self.set(&leaf, i) {
                return Ok(true);
            }
            let Some(u) = leaf.upper.clone() else {
                self.pos = None;
                self.off_end = Some(true);
                return Ok(false);
            };
            target = u;
            inclusive = true;
        }
        Err(Error::new(ErrorKind::DatabaseCorrupted).with_message("endless leaf chain"))
    }

    /// Positions on the last node with key `< key` (or `<=` when `inclusive`).
    fn last_before(&mut self, key: &[u8], inclusive: bool) -> Result<bool> {
        let mut leaf = self.tree.descend(Target::Key(key))?;
        let (i, found) = leaf.guard.search(key);
        let end = if found && inclusive { i + 1 } else { i };
        if end > 0 && self.set(&leaf, end - 1) {
            return Ok(true);
        }
        for _ in 0..MAX_HOPS {
            let Some(lower) = leaf.lower.clone() else {
                self.pos = None;
                self.off_end = Some(false);
                return Ok(false);
            };
            leaf = self.tree.descend(Target::Before(&lower))?;
            let n = leaf.guard.search(&lower).0;
            if n > 0 && self.set(&leaf, n - 1) {
                return Ok(true);
            }
        }
        Err(Error::new(ErrorKind::DatabaseCorrupted).with_message("endless leaf chain"))
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
                    (i, true) => self.set(&leaf, i),
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
        let n = leaf.guard.nodes.len();
        if n > 0 && self.set(&leaf, n - 1) {
            return Ok(true);
        }
        self.pos = None;
        Ok(false)
    }

    /// Moves to the next node (ESE `JET_MoveNext`); returns false past the end. Re-seeks by
    /// key when the page changed since the cursor read it.
    ///
    /// # Errors
    /// `NoCurrentRecord` if the cursor was never positioned; page read errors.
    pub fn move_next(&mut self) -> Result<bool> {
        if let Some(p) = &self.pos {
            let g = p.frame.latch.read();
            if g.dbtime == p.dbtime
                && let Some(n) = g.nodes.get(p.idx + 1)
            {
                let (node, idx) = (n.clone(), p.idx + 1);
                drop(g);
                self.last_key = Some(node.key.clone());
                if let Some(p) = &mut self.pos {
                    p.idx = idx;
                    p.node = node;
                }
                return Ok(true);
            }
        }
        let key = self
            .last_key
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let inclusive = self.off_end == Some(false);
        self.first_from(&key, inclusive)
    }

    /// Moves to the previous node (ESE `JET_MovePrevious`); returns false before the start.
    ///
    /// # Errors
    /// `NoCurrentRecord` if the cursor was never positioned; page read errors.
    pub fn move_prev(&mut self) -> Result<bool> {
        if let Some(p) = &self.pos {
            let g = p.frame.latch.read();
            if g.dbtime == p.dbtime
                && p.idx > 0
                && let Some(n) = g.nodes.get(p.idx - 1)
            {
                let (node, idx) = (n.clone(), p.idx - 1);
                drop(g);
                self.last_key = Some(node.key.clone());
                if let Some(p) = &mut self.pos {
                    p.idx = idx;
                    p.node = node;
                }
                return Ok(true);
            }
        }
        let key = self
            .last_key
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let inclusive = self.off_end == Some(true);
        self.last_before(&key, inclusive)
    }

    /// Whether the cursor is on a node.
    pub fn is_positioned(&self) -> bool {
        self.pos.is_some()
    }

    /// The current node's key (empty when not positioned).
    pub fn key(&self) -> &[u8] {
        self.pos
            .as_ref()
            .map(|p| p.node.key.as_slice())
            .unwrap_or_default()
    }

    /// The current node's data as read when the cursor moved there (empty when not
    /// positioned).
    pub fn data(&self) -> &[u8] {
        self.pos
            .as_ref()
            .map(|p| p.node.data.as_slice())
            .unwrap_or_default()
    }

    /// The current node's flags (flag-deleted, versioned).
    pub fn flags(&self) -> NodeFlags {
        self.pos.as_ref().map(|p| p.node.flags).unwrap_or_default()
    }
}
