//! What the transaction layer needs from the page store below it.
//!
//! The B+tree always holds the newest version of every record, committed or not (as in ESE):
//! an insert puts the record in the tree, a replace overwrites it, a delete only flags it
//! deleted (so older snapshots can still find it) and version cleanup removes it physically
//! once no snapshot can see it. The transaction layer keeps, in memory, what is needed to
//! reconstruct older versions and to roll back.

use ese_btree::LeafHint;
use ese_core::{Lgpos, ObjId, Result};

/// The physical state of one key in a tree, as the page store holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PhysState {
    /// No node with this key.
    Absent,
    /// A node flag-deleted (ESE's `fDeleted`): the data stays until version cleanup.
    Deleted(Vec<u8>),
    /// A live record with this data.
    Present(Vec<u8>),
}

impl PhysState {
    /// The record's data as a reader sees it: `Some` only for a live record.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            PhysState::Present(v) => Some(v),
            PhysState::Absent | PhysState::Deleted(_) => None,
        }
    }

    /// [`PhysState::value`], taking the data.
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            PhysState::Present(v) => Some(v),
            PhysState::Absent | PhysState::Deleted(_) => None,
        }
    }

    /// Bytes of data held (for the version-store budget).
    pub fn data_len(&self) -> usize {
        match self {
            PhysState::Absent => 0,
            PhysState::Deleted(v) | PhysState::Present(v) => v.len(),
        }
    }
}

/// A [`PhysState`] borrowed from where the page store holds it (the node in its page):
/// what [`TxnStore::write_checked`] hands its decision, which copies the data only when it
/// keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhysRef<'a> {
    /// No node with this key.
    Absent,
    /// A node flag-deleted, with its data.
    Deleted(&'a [u8]),
    /// A live record with this data.
    Present(&'a [u8]),
}

impl<'a> PhysRef<'a> {
    /// The record's data as a reader sees it: `Some` only for a live record.
    pub fn value(&self) -> Option<&'a [u8]> {
        match *self {
            PhysRef::Present(v) => Some(v),
            PhysRef::Absent | PhysRef::Deleted(_) => None,
        }
    }

    /// The state owned (the data copied).
    pub fn to_state(&self) -> PhysState {
        match *self {
            PhysRef::Absent => PhysState::Absent,
            PhysRef::Deleted(d) => PhysState::Deleted(d.to_vec()),
            PhysRef::Present(d) => PhysState::Present(d.to_vec()),
        }
    }
}

impl PhysState {
    /// The state borrowed.
    pub fn as_ref(&self) -> PhysRef<'_> {
        match self {
            PhysState::Absent => PhysRef::Absent,
            PhysState::Deleted(d) => PhysRef::Deleted(d),
            PhysState::Present(d) => PhysRef::Present(d),
        }
    }
}

/// The state [`TxnStore::write_checked`] gives a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewState<'a> {
    /// A live record with this data.
    Present(&'a [u8]),
    /// The record, with the data it has, flag-deleted.
    FlagDeleted,
    /// No record (version cleanup removing a flag-deleted record for good).
    Absent,
}

/// The page store under the transaction layer: reads and writes of physical key states, each
/// write logged with an opaque annotation from this layer (undo information, compensation
/// markers) in the same log record as the page change, so both are redone or lost together.
pub trait TxnStore: Send + Sync {
    /// The current physical state of `key` in `tree`.
    ///
    /// # Errors
    /// The page store's errors (`ReadVerifyFailure`, `DiskIO`, `ObjectNotFound`, ...).
    fn read(&self, tree: ObjId, key: &[u8]) -> Result<PhysState>;

    /// Makes the physical state of `key` in `tree` be `state`, logging the change with
    /// `annotation`; returns the log position of that record.
    ///
    /// # Errors
    /// The page store's and the log's errors; `KeyDuplicate` is never returned (the caller
    /// checked the state under its own lock).
    fn write(&self, tree: ObjId, key: &[u8], state: &PhysState, annotation: &[u8])
    -> Result<Lgpos>;

    /// Reads the physical state of `key` in `tree`, hands it to `decide` borrowed (in place
    /// in its page: `decide` copies what it keeps) and, if that returns
    /// an annotation, makes the state `new` (logged with the annotation): one look-up where
    /// [`TxnStore::read`] then [`TxnStore::write`] take two. The state cannot change between
    /// the read and the write. Returns the log position of the record, or `None` when
    /// `decide` wrote nothing. `hint`: the leaf a cursor on the key was on, which a page
    /// store tries before descending ([`ese_btree::Tree::put_with`]).
    ///
    /// # Errors
    /// Whatever `decide` returns (nothing written); `RecordNotFound` (-1601) for
    /// [`NewState::FlagDeleted`] of an absent key; otherwise as [`TxnStore::write`].
    fn write_checked(
        &self,
        tree: ObjId,
        key: &[u8],
        new: NewState<'_>,
        // A store without pages has no use for a leaf hint.
        _hint: Option<&LeafHint>,
        decide: &mut dyn FnMut(PhysRef<'_>, &mut Vec<u8>) -> Result<bool>,
    ) -> Result<Option<Lgpos>> {
        let phys = self.read(tree, key)?;
        let mut annotation = Vec::new();
        if !decide(phys.as_ref(), &mut annotation)? {
            return Ok(None);
        }
        let state = match (new, phys) {
            (NewState::Present(d), _) => PhysState::Present(d.to_vec()),
            (NewState::FlagDeleted, PhysState::Present(d) | PhysState::Deleted(d)) => {
                PhysState::Deleted(d)
            }
            (NewState::Absent, _) => PhysState::Absent,
            (NewState::FlagDeleted, PhysState::Absent) => {
                return Err(ese_core::Error::new(ese_core::ErrorKind::RecordNotFound));
            }
        };
        self.write(tree, key, &state, &annotation).map(Some)
    }

    /// Removes for good the records of `keys` (sorted ascending) of `tree` that are
    /// flag-deleted, leaving the others alone (version cleanup; the caller made sure no
    /// version of these keys exists). Each removal is logged with an empty annotation.
    ///
    /// # Errors
    /// As [`TxnStore::write`]; `ObjectNotFound` when the tree is gone.
    fn remove_flag_deleted(&self, tree: ObjId, keys: &[&[u8]]) -> Result<()> {
        for key in keys {
            self.write_checked(tree, key, NewState::Absent, None, &mut |phys, _| {
                Ok(matches!(phys, PhysRef::Deleted(_)))
            })?;
        }
        Ok(())
    }

    /// Appends a record of this layer alone (commit, end of rollback) to the log.
    ///
    /// # Errors
    /// The log's errors (`LogWriteFail`, `LogDiskFull`).
    fn log(&self, record: &[u8]) -> Result<Lgpos>;

    /// Waits until every record up to `lgpos` is durable (group commit).
    ///
    /// # Errors
    /// The log's errors.
    fn flush(&self, lgpos: Lgpos) -> Result<()>;

    /// Asks that every record up to `lgpos` become durable soon, without waiting (a lazy
    /// commit; see `Wal::flush_lazily`). The default does nothing: the records become durable
    /// at the next [`TxnStore::flush`].
    fn flush_lazily(&self, lgpos: Lgpos) {
        let _ = lgpos;
    }
}
