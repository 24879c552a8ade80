//! Undo for recovery: after redo has replayed the log, every transaction that began but
//! neither committed nor finished rolling back at level 0 is rolled back, through the same
//! undo the live rollback uses (restore the before-state, or subtract the escrow delta), each
//! step logged with a compensation annotation in the same record as the change. A crash during
//! this undo leaves those compensations in the log, so the next recovery skips what was
//! already undone: recovery is idempotent (ESE: redo everything, then undo transactions
//! without Commit0, between RecoveryUndo and RecoveryQuit).

use std::collections::{BTreeMap, HashMap, HashSet};

use ese_core::{ObjId, Result, TrxId};

use crate::record::{TxnRecord, Undo};
use crate::store::{PhysState, TxnStore};
use crate::version_store::apply_delta;

#[derive(Debug, Default)]
struct Pending {
    ops: BTreeMap<u32, (ObjId, Vec<u8>, Undo)>,
    undone: HashSet<u32>,
}

/// Collects the transaction records seen during redo and rolls back the unfinished
/// transactions.
#[derive(Debug, Default)]
pub struct RecoveryUndo {
    pending: HashMap<TrxId, Pending>,
    finished: HashSet<TrxId>,
    max_trx: Option<TrxId>,
}

/// Figures of one recovery undo pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UndoStats {
    /// Transactions rolled back.
    pub transactions: u64,
    /// Operations undone.
    pub operations: u64,
    /// Transactions seen committed or already rolled back.
    pub finished: u64,
}

impl RecoveryUndo {
    /// An empty collector.
    pub fn new() -> RecoveryUndo {
        RecoveryUndo::default()
    }

    /// Takes note of one record, in log order.
    pub fn observe(&mut self, record: TxnRecord) {
        let trx = match &record {
            TxnRecord::Op { trx, .. }
            | TxnRecord::Clr { trx, .. }
            | TxnRecord::Commit0 { trx }
            | TxnRecord::Rollback0 { trx } => *trx,
        };
        self.max_trx = Some(self.max_trx.map_or(trx, |m| m.max(trx)));
        match record {
            TxnRecord::Op {
                trx,
                seq,
                tree,
                key,
                undo,
            } => {
                if !self.finished.contains(&trx) {
                    self.pending
                        .entry(trx)
                        .or_default()
                        .ops
                        .insert(seq, (tree, key, undo));
                }
            }
            TxnRecord::Clr { trx, seq } => {
                if let Some(p) = self.pending.get_mut(&trx) {
                    p.undone.insert(seq);
                }
            }
            TxnRecord::Commit0 { trx } | TxnRecord::Rollback0 { trx } => {
                self.pending.remove(&trx);
                self.finished.insert(trx);
            }
        }
    }

    /// The largest transaction id seen (new ids must start above it).
    pub fn max_trx(&self) -> Option<TrxId> {
        self.max_trx
    }

    /// Transactions that would be rolled back.
    pub fn unfinished(&self) -> usize {
        self.pending.len()
    }

    /// Rolls back every unfinished transaction through `store`, newest operation first, and
    /// logs the end of each rollback. Does not flush the log.
    ///
    /// # Errors
    /// The page store's and the log's errors; what was undone before the error is logged and
    /// will be skipped by the next recovery.
    pub fn undo_all(self, store: &dyn TxnStore) -> Result<UndoStats> {
        let mut stats = UndoStats {
            finished: self.finished.len() as u64,
            ..UndoStats::default()
        };
        let mut trxs: Vec<_> = self.pending.into_iter().collect();
        trxs.sort_by_key(|(t, _)| *t);
        for (trx, p) in trxs {
            // The first delete of each key by this transaction: a deleted state restored after
            // it is that delete's own (its data is what undoing the delete brings back).
            let mut first_delete: HashMap<(ObjId, Vec<u8>), u32> = HashMap::new();
            for (&seq, (tree, key, undo)) in &p.ops {
                if matches!(undo, Undo::Undelete) && !p.undone.contains(&seq) {
                    first_delete.entry((*tree, key.clone())).or_insert(seq);
                }
            }
            for (seq, (tree, key, undo)) in p.ops.into_iter().rev() {
                if p.undone.contains(&seq) {
                    continue;
                }
                let state = match undo {
                    Undo::Nothing => continue,
                    Undo::Undelete => match store.read(tree, &key)? {
                        PhysState::Deleted(d) => PhysState::Present(d),
                        // The delete is not on the page: nothing to undo.
                        PhysState::Absent | PhysState::Present(_) => continue,
                    },
                    // Deleted by this transaction earlier: restored as it was, for the undo of
                    // that delete to bring the data back.
                    Undo::Restore(PhysState::Deleted(d))
                        if first_delete
                            .get(&(tree, key.clone()))
                            .is_some_and(|&s| s < seq) =>
                    {
                        PhysState::Deleted(d)
                    }
                    // After recovery no snapshot older than the crash exists: a record whose
                    // committed delete is restored is removed for good.
                    Undo::Restore(PhysState::Deleted(_)) => PhysState::Absent,
                    Undo::Restore(s) => s,
                    Undo::Delta {
                        offset,
                        width,
                        delta,
                    } => {
                        let phys = store.read(tree, &key)?;
                        let PhysState::Present(mut v) = phys else {
                            // The record the delta applied to is gone: nothing to subtract from.
                            continue;
                        };
                        apply_delta(&mut v, offset, width, delta.wrapping_neg());
                        PhysState::Present(v)
                    }
                };
                store.write(tree, &key, &state, &TxnRecord::Clr { trx, seq }.encode())?;
                stats.operations += 1;
            }
            store.log(&TxnRecord::Rollback0 { trx }.encode())?;
            stats.transactions += 1;
        }
        Ok(stats)
    }
}
