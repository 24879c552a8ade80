//! The transaction layer over the real page store: [`TreeStore`] implements [`TxnStore`] with
//! `ese-btree` trees, and the log envelope that lets one log stream carry page records,
//! transaction records and the upper layers' records.
//!
//! # Log envelope
//! Every log payload starts with a family byte:
//!
//! | byte | family | rest of the payload |
//! |---|---|---|
//! | 1 | page record of `ese-btree` (with the transaction annotation inside, if any) | the page record |
//! | 2 | transaction record ([`TxnRecord`]: commit, end of rollback) | the encoded record |
//! | 16 and up | records of the upper layers (attach, detach, term, ...) | theirs |

use std::collections::HashMap;
use std::sync::Arc;

use ese_btree::{LeafHint, NodeFlags, NodeState, PutTarget, Tree, Wal};
use ese_core::{Error, ErrorKind, Lgpos, ObjId, Result};
use parking_lot::RwLock;

use crate::record::TxnRecord;
use crate::store::{NewState, PhysRef, PhysState, TxnStore};
use crate::version_store::KeyHashState;

/// Family byte of `ese-btree` page records.
pub const FAMILY_PAGE: u8 = 1;
/// Family byte of transaction records.
pub const FAMILY_TXN: u8 = 2;
/// First family byte left to the upper layers.
pub const FAMILY_UPPER: u8 = 16;

/// A [`Wal`] that prefixes every record with a family byte before handing it to the log
/// below: give it to the page store so its records can be told apart in a shared log.
pub struct FamilyWal {
    inner: Arc<dyn Wal>,
    family: u8,
}

impl FamilyWal {
    /// Records appended through this get `family` as their first byte in `inner`.
    pub fn new(inner: Arc<dyn Wal>, family: u8) -> FamilyWal {
        FamilyWal { inner, family }
    }
}

impl std::fmt::Debug for FamilyWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyWal")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl Wal for FamilyWal {
    fn append(&self, record: &[u8]) -> Result<Lgpos> {
        self.inner.append_parts(&[&[self.family], record])
    }

    fn append_parts(&self, parts: &[&[u8]]) -> Result<Lgpos> {
        let family = [self.family];
        // The family byte and up to 7 parts (a node record has 6) without an allocation.
        let mut few: [&[u8]; 8] = [&[]; 8];
        if let Some((first, rest)) = few.split_first_mut()
            && let Some(dst) = rest.get_mut(..parts.len())
        {
            *first = &family;
            dst.copy_from_slice(parts);
            return self
                .inner
                .append_parts(few.get(..=parts.len()).unwrap_or_default());
        }
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&family);
        all.extend_from_slice(parts);
        self.inner.append_parts(&all)
    }

    fn flush(&self, up_to: Lgpos) -> Result<()> {
        self.inner.flush(up_to)
    }

    fn flush_lazily(&self, up_to: Lgpos) {
        self.inner.flush_lazily(up_to);
    }

    fn durable_lgpos(&self) -> Lgpos {
        self.inner.durable_lgpos()
    }
}

/// A log payload split into its family and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A page record of `ese-btree`.
    Page(&'a [u8]),
    /// A transaction record.
    Txn(&'a [u8]),
    /// A record of an upper layer, with its family byte.
    Upper(u8, &'a [u8]),
}

impl<'a> Envelope<'a> {
    /// Splits a log payload.
    ///
    /// # Errors
    /// `LogCorrupted` (-1852) for an empty payload or an unknown family byte below
    /// [`FAMILY_UPPER`].
    pub fn parse(payload: &'a [u8]) -> Result<Envelope<'a>> {
        let (&fam, body) = payload
            .split_first()
            .ok_or_else(|| Error::new(ErrorKind::LogCorrupted).with_message("empty log record"))?;
        match fam {
            FAMILY_PAGE => Ok(Envelope::Page(body)),
            FAMILY_TXN => Ok(Envelope::Txn(body)),
            f if f >= FAMILY_UPPER => Ok(Envelope::Upper(f, body)),
            f => Err(Error::new(ErrorKind::LogCorrupted)
                .with_message(format!("unknown log record family {f}"))),
        }
    }

    /// The transaction record this payload carries, if any: a transaction record, or the
    /// annotation inside a page record.
    ///
    /// # Errors
    /// `LogCorrupted` when the record or annotation is malformed.
    pub fn txn_record(&self) -> Result<Option<TxnRecord>> {
        match self {
            Envelope::Txn(b) => TxnRecord::decode(b).map(Some),
            Envelope::Page(p) => match ese_btree::record_annotation(p)? {
                Some(a) if !a.is_empty() => TxnRecord::decode(a).map(Some),
                _ => Ok(None),
            },
            Envelope::Upper(..) => Ok(None),
        }
    }
}

/// [`TxnStore`] over `ese-btree` trees: physical states map to nodes (a flag-deleted record is
/// a node with [`NodeFlags::DELETED`] and its data), writes go through [`Tree::put`] with the
/// annotation, transaction records go to the log with [`FAMILY_TXN`].
pub struct TreeStore {
    /// Looked up on every change a transaction makes: hashed with the version store's fast
    /// hasher (SipHash cost about a hundred instructions a look-up here).
    trees: RwLock<HashMap<ObjId, Tree, KeyHashState>>,
    wal: Arc<dyn Wal>,
}

impl std::fmt::Debug for TreeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeStore")
            .field("trees", &self.trees.read().len())
            .finish_non_exhaustive()
    }
}

impl TreeStore {
    /// A store writing transaction records to `wal` (the raw log, without a family prefix:
    /// give the page store a [`FamilyWal`] over the same log).
    pub fn new(wal: Arc<dyn Wal>) -> TreeStore {
        TreeStore {
            trees: RwLock::new(HashMap::with_hasher(KeyHashState::new())),
            wal,
        }
    }

    /// Makes `tree` reachable under `id`.
    pub fn register(&self, id: ObjId, tree: Tree) {
        self.trees.write().insert(id, tree);
    }

    /// Forgets the tree registered under `id`.
    pub fn unregister(&self, id: ObjId) {
        self.trees.write().remove(&id);
    }

    /// The tree registered under `id`.
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if none is.
    pub fn tree(&self, id: ObjId) -> Result<Tree> {
        self.trees
            .read()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::ObjectNotFound).with_message(format!("tree {id}")))
    }
}

/// The physical state a node (or its absence) represents.
pub fn node_state(node: Option<(Vec<u8>, NodeFlags)>) -> PhysState {
    match node {
        None => PhysState::Absent,
        Some((data, flags)) if flags.contains(NodeFlags::DELETED) => PhysState::Deleted(data),
        Some((data, _)) => PhysState::Present(data),
    }
}

impl TxnStore for TreeStore {
    fn read(&self, tree: ObjId, key: &[u8]) -> Result<PhysState> {
        Ok(node_state(self.tree(tree)?.get_opt(key)?))
    }

    fn write(
        &self,
        tree: ObjId,
        key: &[u8],
        state: &PhysState,
        annotation: &[u8],
    ) -> Result<Lgpos> {
        let t = self.tree(tree)?;
        let node = match state {
            PhysState::Absent => NodeState::Absent,
            PhysState::Deleted(d) => NodeState::Present {
                data: d,
                flags: NodeFlags(NodeFlags::DELETED.0 | NodeFlags::VERSIONED.0),
            },
            PhysState::Present(d) => NodeState::Present {
                data: d,
                flags: NodeFlags::VERSIONED,
            },
        };
        t.put(key, node, annotation)
    }

    fn write_checked(
        &self,
        tree: ObjId,
        key: &[u8],
        new: NewState<'_>,
        hint: Option<&LeafHint>,
        decide: &mut dyn FnMut(PhysRef<'_>, &mut Vec<u8>) -> Result<bool>,
    ) -> Result<Option<Lgpos>> {
        let t = self.tree(tree)?;
        let target = match new {
            NewState::Present(d) => PutTarget::State(NodeState::Present {
                data: d,
                flags: NodeFlags::VERSIONED,
            }),
            NewState::FlagDeleted => {
                PutTarget::Flags(NodeFlags(NodeFlags::DELETED.0 | NodeFlags::VERSIONED.0))
            }
            NewState::Absent => PutTarget::State(NodeState::Absent),
        };
        t.put_with(key, target, hint, |node, annotation| {
            decide(
                match node {
                    None => PhysRef::Absent,
                    Some((d, f)) if f.contains(NodeFlags::DELETED) => PhysRef::Deleted(d),
                    Some((d, _)) => PhysRef::Present(d),
                },
                annotation,
            )
        })
    }

    fn remove_flag_deleted(&self, tree: ObjId, keys: &[&[u8]]) -> Result<()> {
        self.tree(tree)?.remove_flag_deleted(keys).map(|_| ())
    }

    fn log(&self, record: &[u8]) -> Result<Lgpos> {
        self.wal.append_parts(&[&[FAMILY_TXN], record])
    }

    fn flush(&self, lgpos: Lgpos) -> Result<()> {
        self.wal.flush(lgpos)
    }

    fn flush_lazily(&self, lgpos: Lgpos) {
        self.wal.flush_lazily(lgpos);
    }
}

/// The real log as a [`Wal`]: records go to `ese-log` unchanged (wrap it in a [`FamilyWal`]
/// for the page store).
pub struct LogWal(pub Arc<ese_log::Log>);

impl std::fmt::Debug for LogWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogWal").finish_non_exhaustive()
    }
}

impl Wal for LogWal {
    fn append(&self, record: &[u8]) -> Result<Lgpos> {
        self.0.append(record)
    }

    fn append_parts(&self, parts: &[&[u8]]) -> Result<Lgpos> {
        self.0.append_parts(parts)
    }

    fn flush(&self, up_to: Lgpos) -> Result<()> {
        self.0.flush(up_to)
    }

    fn flush_lazily(&self, up_to: Lgpos) {
        self.0.flush_lazily(up_to);
    }

    fn durable_lgpos(&self) -> Lgpos {
        self.0.durable_lgpos()
    }
}
