//! Transactions: begin (snapshot), nested levels, reads through the version store, writes with
//! first-writer-wins conflict detection, commit (durable or lazy) and rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ese_btree::LeafHint;
use ese_core::{Error, ErrorKind, Lgpos, ObjId, Result, TrxId};

use crate::keymap::Found;
use crate::record::{TxnRecord, Undo};
use crate::store::{NewState, PhysRef, PhysState};
use crate::version_store::{
    ABORTED, ACTIVE, Before, KeyView, OpRef, Oper, Probe, ReadView, Shard, TrxState, VersionStore,
    apply_delta, reconstruct, undo_state,
};

/// The deepest level (ESE's `levelUserMost`).
pub const MAX_LEVEL: u32 = 7;

/// Most changes of a transaction [`Transaction::holds_version`] scans in its own list.
const OWN_LIST_SCAN: usize = 64;

/// The parts of a change's new RCE, for [`Transaction::record_rce`]: where its key's chain
/// is ([`KeyMap::find`](crate::keymap::KeyMap::find) under the shard lock still held), the
/// change's sequence number and operation, the state before it and the bytes charged for it.
struct NewRce {
    found: Found,
    seq: u32,
    oper: Oper,
    before: Before,
    charge: u64,
}

impl NewRce {
    fn new(found: Found, seq: u32, oper: Oper, before: Before, charge: u64) -> NewRce {
        NewRce {
            found,
            seq,
            oper,
            before,
            charge,
        }
    }
}

/// An open transaction of one session (ESE's transaction state in the `PIB`: `trxBegin0`,
/// level, the session's RCE list).
///
/// It is begun at level 1 by [`VersionStore::begin`]; [`Transaction::begin_level`] nests,
/// [`Transaction::commit_level`] and [`Transaction::rollback_level`] close the innermost
/// level. When the last level closes the transaction is over and [`Transaction::is_open`]
/// turns false.
#[derive(Debug)]
pub struct Transaction {
    vs: Arc<VersionStore>,
    state: Arc<TrxState>,
    level: u32,
    read_only: bool,
    next_seq: u32,
    ops: Vec<OpRef>,
    first_lgpos: Option<Lgpos>,
    /// Changes and locks undone so far (level rollbacks and savepoint rollbacks).
    undone: u64,
}

/// The outcome of a level-0 commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit record's log position (`None` if the transaction wrote nothing, so nothing
    /// was logged).
    pub lgpos: Option<Lgpos>,
    /// The commit timestamp (snapshots at or above it see the transaction).
    pub commit_ts: u64,
}

/// How a write changes a record.
enum Change<'a> {
    Insert(&'a [u8]),
    Replace(&'a [u8]),
    Delete,
    Delta {
        offset: u32,
        width: u8,
        delta: i64,
    },
    /// A lock; `look_up`: the record is looked up (it must be present as the transaction
    /// sees it), else the caller vouches for that.
    Lock {
        write: bool,
        look_up: bool,
    },
}

impl VersionStore {
    /// Begins a transaction at level 0 (JetBeginTransaction at level 0): takes the snapshot
    /// every read of the transaction will use. `owner` names the session for diagnostics
    /// (`VersionStoreOutOfMemory` names the oldest transaction's owner).
    pub fn begin(self: &Arc<Self>, owner: String, read_only: bool) -> Transaction {
        let id = TrxId(self.next_trx.fetch_add(1, Ordering::Relaxed));
        let state = {
            let mut active = self.active.lock();
            let state = Arc::new(TrxState {
                id,
                snapshot: self.last_commit.load(Ordering::Acquire),
                commit_ts: AtomicU64::new(ACTIVE),
                owner,
            });
            active.insert(id, Arc::clone(&state));
            state
        };
        Transaction {
            vs: Arc::clone(self),
            state,
            level: 1,
            read_only,
            next_seq: 0,
            ops: Vec::new(),
            first_lgpos: None,
            undone: 0,
        }
    }

    /// The oldest log position recovery needs for transactions: the first change of every
    /// open transaction, and of every committed one whose commit record lies after `durable`
    /// (the log's durable position; such a commit is lost in a crash, so its changes must be
    /// undone). The checkpoint may not pass it.
    pub fn oldest_needed_lgpos(&self, durable: Lgpos) -> Option<Lgpos> {
        let committing = {
            let mut u = self.undurable.lock();
            u.retain(|(commit, _)| *commit > durable);
            u.iter().map(|(_, first)| *first).min()
        };
        let open = self.oldest_lgpos.lock().values().copied().min();
        open.into_iter().chain(committing).min()
    }
}

impl Transaction {
    /// The transaction id.
    pub fn id(&self) -> TrxId {
        self.state.id
    }

    /// Open levels (1 to 7); 0 once the transaction ended.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Whether the transaction is still open.
    pub fn is_open(&self) -> bool {
        self.level > 0
    }

    /// Whether it is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Number of changes made so far.
    pub fn change_count(&self) -> usize {
        self.ops.len()
    }

    /// Number of changes and locks undone so far by [`Transaction::rollback_level`] and
    /// [`Transaction::rollback_to`]. It only grows: while it stays the same, every version
    /// (change or lock) the transaction took is still held, so a caller may remember that a
    /// lock was taken instead of looking it up again.
    pub fn undone_count(&self) -> u64 {
        self.undone
    }

    /// The view the transaction reads with: its snapshot plus its own changes.
    pub fn read_view(&self) -> ReadView {
        ReadView {
            snapshot: self.state.snapshot,
            own: Some(self.state.id),
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.level == 0 {
            return Err(Error::new(ErrorKind::NotInTransaction));
        }
        Ok(())
    }

    /// Opens a nested level (a savepoint).
    ///
    /// # Errors
    /// `TransTooDeep` (-1103) at level 7; `NotInTransaction` (-1054) once ended.
    pub fn begin_level(&mut self) -> Result<()> {
        self.ensure_open()?;
        if self.level >= MAX_LEVEL {
            return Err(Error::new(ErrorKind::TransTooDeep));
        }
        self.level += 1;
        Ok(())
    }

    /// Reads `key` of `tree` as this transaction sees it.
    ///
    /// # Errors
    /// The page store's errors.
    pub fn read(&self, tree: ObjId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.vs.read(tree, key, &self.read_view())?.into_value())
    }

    /// Inserts a record.
    ///
    /// # Errors
    /// `KeyDuplicate` (-1605) if the transaction sees a record with this key;
    /// `WriteConflict` (-1102) if another transaction changed the key and has not committed,
    /// or committed after this transaction began; `TransReadOnly` (-1110);
    /// `VersionStoreOutOfMemory` (-1069); the page store's errors.
    pub fn insert(&mut self, tree: ObjId, key: &[u8], value: &[u8]) -> Result<()> {
        self.change(tree, key, &Change::Insert(value), None, None)
            .map(|_| ())
    }

    /// Replaces a record's data.
    ///
    /// # Errors
    /// `RecordNotFound` (-1601) if the transaction sees no record with this key; otherwise as
    /// [`Transaction::insert`].
    pub fn replace(&mut self, tree: ObjId, key: &[u8], value: &[u8]) -> Result<()> {
        self.replace_at(tree, key, value, None)
    }

    /// [`Transaction::replace`] of the record a cursor is on: the page store tries the leaf
    /// the cursor was on (`hint`, [`Cursor::leaf_hint`](ese_btree::Cursor::leaf_hint)) before
    /// descending from the root.
    ///
    /// # Errors
    /// As [`Transaction::replace`].
    pub fn replace_at(
        &mut self,
        tree: ObjId,
        key: &[u8],
        value: &[u8],
        hint: Option<&LeafHint>,
    ) -> Result<()> {
        self.change(tree, key, &Change::Replace(value), None, hint)
            .map(|_| ())
    }

    /// Deletes a record (flag-delete; version cleanup removes it once no snapshot sees it).
    ///
    /// # Errors
    /// As [`Transaction::replace`].
    pub fn delete(&mut self, tree: ObjId, key: &[u8]) -> Result<()> {
        self.delete_at(tree, key, None)
    }

    /// [`Transaction::delete`] of the record a cursor is on, trying the cursor's leaf first
    /// (as [`Transaction::replace_at`]).
    ///
    /// # Errors
    /// As [`Transaction::delete`].
    pub fn delete_at(&mut self, tree: ObjId, key: &[u8], hint: Option<&LeafHint>) -> Result<()> {
        self.change(tree, key, &Change::Delete, None, hint)
            .map(|_| ())
    }

    /// Adds `delta` to the little-endian signed integer of `width` bytes (4 or 8) at `offset`
    /// of the record (JetEscrowUpdate); returns the value before the update, as this
    /// transaction saw it. Escrow updates of different transactions do not conflict.
    ///
    /// # Errors
    /// `InvalidParameter` (-1003) for a width other than 4 or 8 or a field outside the
    /// record; otherwise as [`Transaction::replace`] (a non-escrow change by another active
    /// transaction is a `WriteConflict`).
    pub fn escrow(
        &mut self,
        tree: ObjId,
        key: &[u8],
        offset: u32,
        width: u8,
        delta: i64,
    ) -> Result<i64> {
        self.change(
            tree,
            key,
            &Change::Delta {
                offset,
                width,
                delta,
            },
            None,
            None,
        )
    }

    /// Takes a write lock (or a read lock) on a record without changing it (JetGetLock).
    ///
    /// # Errors
    /// As [`Transaction::replace`]; a read lock conflicts only with writes.
    pub fn lock(&mut self, tree: ObjId, key: &[u8], write: bool) -> Result<()> {
        let lock = Change::Lock {
            write,
            look_up: true,
        };
        self.change(tree, key, &lock, None, None).map(|_| ())
    }

    /// [`Transaction::lock`] that also returns the record's data as this transaction sees it
    /// (what [`Transaction::read`] would return right after the lock, without a second
    /// look-up).
    ///
    /// # Errors
    /// As [`Transaction::lock`].
    pub fn lock_and_read(&mut self, tree: ObjId, key: &[u8], write: bool) -> Result<Vec<u8>> {
        let mut seen = Vec::new();
        let lock = Change::Lock {
            write,
            look_up: true,
        };
        self.change(tree, key, &lock, Some(&mut seen), None)?;
        Ok(seen)
    }

    /// A read lock (as [`Transaction::lock`]) on a record the caller knows this transaction
    /// sees, without looking the record up: the caller read it in an earlier transaction and
    /// knows that nothing wrote it since (the table layer's definition lock, when the
    /// catalog epoch has not moved). The lock conflicts as any read lock does.
    ///
    /// # Errors
    /// As [`Transaction::lock`], except `RecordNotFound`: a record that is gone is not
    /// noticed.
    pub fn read_lock_unread(&mut self, tree: ObjId, key: &[u8]) -> Result<()> {
        let lock = Change::Lock {
            write: false,
            look_up: false,
        };
        self.change(tree, key, &lock, None, None).map(|_| ())
    }

    /// A change; for a lock, `seen` (if given) receives the record's data as this
    /// transaction sees it. `hint`: the leaf a cursor on the key was on (record writes only).
    fn change(
        &mut self,
        tree: ObjId,
        key: &[u8],
        change: &Change<'_>,
        seen: Option<&mut Vec<u8>>,
        hint: Option<&LeafHint>,
    ) -> Result<i64> {
        let r = self.change_inner(tree, key, change, seen, hint);
        // After the change (successful or not: a failed change may have written and undone),
        // so a reader that cached this session's view notices it.
        self.vs.bump_change_epoch();
        r
    }

    fn change_inner(
        &mut self,
        tree: ObjId,
        key: &[u8],
        change: &Change<'_>,
        mut seen: Option<&mut Vec<u8>>,
        hint: Option<&LeafHint>,
    ) -> Result<i64> {
        self.ensure_open()?;
        if self.read_only && !matches!(change, Change::Lock { write: false, .. }) {
            return Err(Error::new(ErrorKind::TransReadOnly));
        }
        if let Change::Delta { width, .. } = change
            && *width != 4
            && *width != 8
        {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("escrow width must be 4 or 8 bytes"));
        }
        let oper = match change {
            Change::Insert(_) => Oper::Insert,
            Change::Replace(_) => Oper::Replace,
            Change::Delete => Oper::Delete,
            Change::Delta { .. } => Oper::Delta,
            Change::Lock { write: true, .. } => Oper::WriteLock,
            Change::Lock { write: false, .. } => Oper::ReadLock,
        };
        let new = match change {
            Change::Insert(v) | Change::Replace(v) => Some(NewState::Present(v)),
            Change::Delete => Some(NewState::FlagDeleted),
            Change::Delta { .. } | Change::Lock { .. } => None,
        };
        if let Some(new) = new {
            return self.change_checked(tree, key, oper, new, hint).map(|()| 0);
        }
        // At most two attempts: the second after a cleanup freed budget.
        for attempt in 0..2 {
            let vs = &*self.vs;
            let probe = vs.probe(tree, key);
            let mut shard = vs.shard(&probe);
            if matches!(change, Change::Lock { .. }) {
                vs.prune_locks(&mut shard, &probe);
            }
            let (found, chain) = shard.map.find(&probe as &dyn KeyView);
            VersionStore::check_conflict(chain, &self.state, oper)?;
            if found == Found::ABSENT && shard.map.is_full() {
                return Err(vs.out_of_memory());
            }
            let (phys, mine) = if matches!(change, Change::Lock { look_up: false, .. }) {
                (PhysState::Absent, PhysState::Absent)
            } else {
                let phys = vs.store.read(tree, key)?;
                let mine = match chain {
                    Some(c) => reconstruct(c, phys.clone(), &self.read_view()),
                    None => phys.clone(),
                };
                (phys, mine)
            };
            let mut result = 0i64;
            let (new_phys, before, undo) = match change {
                // Inserts, replaces and deletes returned through `change_checked` above.
                Change::Insert(_) | Change::Replace(_) | Change::Delete => {
                    return Err(Error::new(ErrorKind::InternalError)
                        .with_message("a record write reached the delta and lock path"));
                }
                Change::Delta {
                    offset,
                    width,
                    delta,
                } => {
                    let (Some(seen), PhysState::Present(data)) = (mine.value(), &phys) else {
                        return Err(Error::new(ErrorKind::RecordNotFound));
                    };
                    result = read_int(seen, *offset, *width).ok_or_else(|| {
                        Error::new(ErrorKind::InvalidParameter)
                            .with_message("escrow field outside the record")
                    })?;
                    let mut updated = data.clone();
                    if !apply_delta(&mut updated, *offset, *width, *delta) {
                        return Err(Error::new(ErrorKind::InvalidParameter)
                            .with_message("escrow field outside the record"));
                    }
                    (
                        Some(PhysState::Present(updated)),
                        Before::Delta {
                            offset: *offset,
                            width: *width,
                            delta: *delta,
                        },
                        Undo::Delta {
                            offset: *offset,
                            width: *width,
                            delta: *delta,
                        },
                    )
                }
                Change::Lock { look_up, .. } => {
                    if *look_up {
                        let Some(value) = mine.value() else {
                            return Err(Error::new(ErrorKind::RecordNotFound));
                        };
                        if let Some(seen) = seen.as_deref_mut() {
                            seen.clear();
                            seen.extend_from_slice(value);
                        }
                    }
                    (None, Before::Unchanged, Undo::Nothing)
                }
            };
            let charge = match vs.try_charge(oper, &before) {
                Some(c) => c,
                None if attempt == 0 => {
                    drop(shard);
                    vs.cleanup()?;
                    continue;
                }
                None => return Err(vs.out_of_memory()),
            };
            let seq = self.next_seq;
            // Announce the change before any page sees it: readers that skip the version
            // store for trees and keys without versions must not miss it.
            vs.pin_key(tree, probe.key_hash());
            if new_phys.is_some() && self.first_lgpos.is_none() {
                // Hold the checkpoint back before the first change reaches the log: a
                // checkpoint taken between the write and the registration would otherwise pass
                // this transaction's first record, and recovery would never see its undo
                // information. The real position replaces this after the write.
                vs.oldest_lgpos.lock().insert(self.state.id, Lgpos::MIN);
            }
            if let Some(new_phys) = &new_phys {
                let annotation = TxnRecord::encode_op(self.state.id, seq, tree, key, &undo);
                match vs.store.write(tree, key, new_phys, &annotation) {
                    Ok(lgpos) => {
                        if self.first_lgpos.is_none() {
                            self.first_lgpos = Some(lgpos);
                            vs.oldest_lgpos.lock().insert(self.state.id, lgpos);
                        }
                    }
                    Err(e) => {
                        vs.uncharge(charge);
                        vs.unpin_key(tree, probe.key_hash(), 1);
                        if self.first_lgpos.is_none() {
                            vs.oldest_lgpos.lock().remove(&self.state.id);
                        }
                        return Err(e);
                    }
                }
            }
            let new = NewRce::new(found, seq, oper, before, charge);
            let hash = Self::record_rce(vs, &self.state, shard, &probe, new);
            self.note_change(hash, seq);
            return Ok(result);
        }
        Err(self.vs.out_of_memory())
    }

    /// Adds the RCE `new` describes, of this transaction's change of the key `probe` names,
    /// to the key's chain (in `shard`, whose lock the caller holds and which is let go here);
    /// returns the key's hash, for the transaction's list of changes. `vs` is this
    /// transaction's version store, borrowed rather than its `Arc` cloned (no atomic increment
    /// and decrement of the shared count per change).
    fn record_rce(
        vs: &VersionStore,
        state: &Arc<TrxState>,
        mut shard: parking_lot::MutexGuard<'_, Shard>,
        probe: &Probe<'_>,
        new: NewRce,
    ) -> u64 {
        let rce = VersionStore::new_rce(state, new.seq, new.oper, new.before, new.charge);
        vs.push_rce(&mut shard, probe, new.found, rce);
        probe.key_hash()
    }

    /// Adds change `seq`, of the key whose hash is `hash`, to the transaction's list of
    /// changes.
    fn note_change(&mut self, hash: u64, seq: u32) {
        self.next_seq += 1;
        self.ops.push(OpRef {
            hash,
            seq,
            level: self.level,
        });
    }

    /// An insert, replace or delete: the physical state is read, checked and changed with one
    /// look-up of the page store ([`TxnStore::write_checked`]), under the key's shard lock.
    fn change_checked(
        &mut self,
        tree: ObjId,
        key: &[u8],
        oper: Oper,
        new: NewState<'_>,
        hint: Option<&LeafHint>,
    ) -> Result<()> {
        // At most two attempts: the second after a cleanup freed budget.
        for attempt in 0..2 {
            let vs = &*self.vs;
            let probe = vs.probe(tree, key);
            let shard = vs.shard(&probe);
            let (found, chain) = shard.map.find(&probe as &dyn KeyView);
            VersionStore::check_conflict(chain, &self.state, oper)?;
            if found == Found::ABSENT && shard.map.is_full() {
                return Err(vs.out_of_memory());
            }
            let view = self.read_view();
            let seq = self.next_seq;
            let (trx, first_written) = (self.state.id, self.first_lgpos.is_some());
            // What the decision took: the before-image entry and its charge (to give back if
            // the write fails); whether the budget was short.
            let mut taken: Option<(Before, u64)> = None;
            let mut short = false;
            let written = vs
                .store
                .write_checked(tree, key, new, hint, &mut |phys, annotation| {
                    // Whether this transaction sees a record there (without a version chain, the
                    // page's state as it is: no copy).
                    let mine = match chain {
                        Some(c) => reconstruct(c, phys.to_state(), &view).value().is_some(),
                        None => phys.value().is_some(),
                    };
                    match oper {
                        Oper::Insert if mine || phys.value().is_some() => {
                            return Err(Error::new(ErrorKind::KeyDuplicate));
                        }
                        Oper::Replace if !mine => {
                            return Err(Error::new(ErrorKind::RecordNotFound));
                        }
                        Oper::Delete if !matches!(phys, PhysRef::Present(_)) || !mine => {
                            return Err(Error::new(ErrorKind::RecordNotFound));
                        }
                        _ => {}
                    }
                    // A delete only flags the node (its data stays on the page, checked above to
                    // be present): undone by clearing the flag, and its version keeps no copy of
                    // the record (the state before it is the page's data, unflagged). Otherwise
                    // the state is restored, and the version keeps a copy of it.
                    let (undo, before) = if matches!(oper, Oper::Delete) {
                        (Undo::Undelete, Before::Undeleted)
                    } else {
                        let state = phys.to_state();
                        (Undo::Restore(state.clone()), Before::State(state))
                    };
                    let Some(charge) = vs.try_charge(oper, &before) else {
                        short = true;
                        return Ok(false);
                    };
                    // Announce the change before any page sees it: readers that skip the version
                    // store for trees and keys without versions must not miss it.
                    vs.pin_key(tree, probe.key_hash());
                    if !first_written {
                        // Hold the checkpoint back before the first change reaches the log (see
                        // `change`); the real position replaces this after the write.
                        vs.oldest_lgpos.lock().insert(trx, Lgpos::MIN);
                    }
                    taken = Some((before, charge));
                    TxnRecord::encode_op_into(annotation, trx, seq, tree, key, &undo);
                    Ok(true)
                });
            let lgpos = match written {
                Ok(Some(lgpos)) => lgpos,
                Ok(None) if short && attempt == 0 => {
                    drop(shard);
                    vs.cleanup()?;
                    continue;
                }
                Ok(None) if short => return Err(vs.out_of_memory()),
                Ok(None) => {
                    return Err(Error::new(ErrorKind::InternalError)
                        .with_message("a checked change wrote nothing"));
                }
                Err(e) => {
                    if let Some((_, charge)) = taken {
                        vs.uncharge(charge);
                        vs.unpin_key(tree, probe.key_hash(), 1);
                        if !first_written {
                            vs.oldest_lgpos.lock().remove(&trx);
                        }
                    }
                    return Err(e);
                }
            };
            let Some((before, charge)) = taken else {
                return Err(Error::new(ErrorKind::InternalError)
                    .with_message("a checked change logged without a decision"));
            };
            if self.first_lgpos.is_none() {
                self.first_lgpos = Some(lgpos);
                vs.oldest_lgpos.lock().insert(trx, lgpos);
            }
            let new = NewRce::new(found, seq, oper, before, charge);
            let hash = Self::record_rce(vs, &self.state, shard, &probe, new);
            self.note_change(hash, seq);
            return Ok(());
        }
        Err(self.vs.out_of_memory())
    }

    /// Commits the innermost level (JetCommitTransaction). A nested level merges into its
    /// parent. The last level commits the transaction: its commit record is logged and, unless
    /// `lazy`, made durable before this returns (group commit). Returns the commit's details
    /// when the transaction ended.
    ///
    /// # Errors
    /// `NotInTransaction` (-1054) once ended; the log's errors (`LogWriteFail`, `DiskIO`,
    /// `LogDiskFull`) when the commit record cannot be written or flushed: if appending fails
    /// the transaction is still open; if only the flush fails the commit is done but its
    /// durability unknown (the caller makes the instance unavailable).
    pub fn commit_level(&mut self, lazy: bool) -> Result<Option<CommitInfo>> {
        self.ensure_open()?;
        if self.level > 1 {
            let l = self.level;
            for op in self.ops.iter_mut().rev() {
                if op.level != l {
                    break;
                }
                op.level = l - 1;
            }
            self.level -= 1;
            return Ok(None);
        }
        let vs = Arc::clone(&self.vs);
        let (lgpos, ts) = {
            let _order = vs.commit_lock.lock();
            let lgpos = if self.ops.is_empty() {
                None
            } else {
                Some(
                    vs.store
                        .log(&TxnRecord::Commit0 { trx: self.state.id }.encode())?,
                )
            };
            let ts = vs.last_commit.load(Ordering::Acquire) + 1;
            // The change epoch moves before and after the commit becomes visible: a reader
            // that cached a record in between holds the epoch of the first move, which the
            // second makes stale (see `VersionStore::change_epoch`).
            vs.bump_change_epoch();
            self.state.commit_ts.store(ts, Ordering::Release);
            vs.last_commit.store(ts, Ordering::Release);
            vs.bump_change_epoch();
            (lgpos, ts)
        };
        if let (Some(commit), Some(first)) = (lgpos, self.first_lgpos) {
            // Registered before `finish` forgets the transaction, so no checkpoint taken in
            // between can pass its changes while the commit record is not durable.
            vs.undurable.lock().push((commit, first));
        }
        self.finish();
        // The list moves whole to cleanup (no second list of the keys is built).
        vs.committed(ts, std::mem::take(&mut self.ops));
        self.level = 0;
        match (lgpos, lazy) {
            (Some(l), false) => vs.store.flush(l)?,
            // Durable within the log's lazy flush interval, without waiting for it.
            (Some(l), true) => vs.store.flush_lazily(l),
            (None, _) => {}
        }
        Ok(Some(CommitInfo {
            lgpos,
            commit_ts: ts,
        }))
    }

    fn finish(&self) {
        self.vs.active.lock().remove(&self.state.id);
        self.vs.oldest_lgpos.lock().remove(&self.state.id);
    }

    /// Rolls back the innermost level (JetRollback): every change made in it is undone, in
    /// reverse order, each undo logged with a compensation annotation. Rolling back the last
    /// level ends the transaction.
    ///
    /// # Errors
    /// `NotInTransaction` (-1054) once ended; the page store's or log's errors if an undo
    /// cannot be written (ESE then makes the instance unavailable: the caller must).
    pub fn rollback_level(&mut self) -> Result<()> {
        self.ensure_open()?;
        let l = self.level;
        while let Some(op) = self.ops.last() {
            if op.level != l {
                break;
            }
            self.undo_last()?;
        }
        self.level -= 1;
        if self.level == 0 {
            if self.next_seq > 0 {
                let end = self
                    .vs
                    .store
                    .log(&TxnRecord::Rollback0 { trx: self.state.id }.encode())?;
                // Until the end of the rollback is durable, a crash loses the undo steps while
                // pages may already hold the original changes: recovery must still see this
                // transaction's records to undo them again.
                if let Some(first) = self.first_lgpos {
                    self.vs.undurable.lock().push((end, first));
                }
            }
            self.state.commit_ts.store(ABORTED, Ordering::Release);
            self.finish();
        }
        Ok(())
    }

    /// Undoes every change made after the first `changes` ones ([`Transaction::change_count`]
    /// taken earlier), keeping the transaction open at its level: an internal savepoint, as
    /// ESE uses its internal transaction levels to make one update of a record and its index
    /// entries atomic.
    ///
    /// # Errors
    /// `NotInTransaction` (-1054) once ended; the page store's or log's errors if an undo
    /// cannot be written (the caller then makes the instance unavailable).
    pub fn rollback_to(&mut self, changes: usize) -> Result<()> {
        self.ensure_open()?;
        while self.ops.len() > changes {
            self.undo_last()?;
        }
        Ok(())
    }

    /// Whether this transaction holds a version of `key` of `tree`: a change or a lock it made
    /// and has not rolled back.
    pub fn holds_version(&self, tree: ObjId, key: &[u8]) -> bool {
        // A short transaction that never changed a key of this hash holds no version of it,
        // answered from its own list of changes; otherwise the key's chain answers (in a long
        // transaction a miss in the list would cost more than the chain's look-up).
        let probe = self.vs.probe(tree, key);
        if self.ops.len() <= OWN_LIST_SCAN && !self.ops.iter().any(|o| o.hash == probe.key_hash()) {
            return false;
        }
        self.vs
            .shard(&probe)
            .map
            .get(&probe as &dyn KeyView)
            .is_some_and(|chain| chain.iter().any(|r| r.trx.id == self.state.id))
    }

    /// Rolls back every level.
    ///
    /// # Errors
    /// As [`Transaction::rollback_level`].
    pub fn rollback_all(&mut self) -> Result<()> {
        while self.level > 0 {
            self.rollback_level()?;
        }
        Ok(())
    }

    fn undo_last(&mut self) -> Result<()> {
        let r = self.undo_last_inner();
        self.vs.bump_change_epoch();
        r
    }

    fn undo_last_inner(&mut self) -> Result<()> {
        let Some(op) = self.ops.last() else {
            return Ok(());
        };
        // Counted before anything is undone: a failed undo may have removed the version.
        self.undone += 1;
        let (hash, seq) = (op.hash, op.seq);
        let vs = Arc::clone(&self.vs);
        let mut shard = vs.shard_of_hash(hash);
        // The key is the one whose chain holds this change's entry (the list keeps only the
        // key's hash).
        let Some(vkey) = shard.map.key_of_rce(hash, self.state.id, seq) else {
            self.ops.pop();
            return Ok(());
        };
        let (tree, key) = (vkey.tree(), vkey.key().to_vec());
        let Some(rce) = vs.take_rce(&mut shard, &vkey, self.state.id, seq) else {
            self.ops.pop();
            return Ok(());
        };
        // A flag-deleted record nobody can still see (no entry left on the key) is removed
        // for good instead of being restored as deleted: cleanup would never visit it again.
        let unseen = !shard.map.contains_key(&vkey);
        let restored = match &rce.before {
            Before::Unchanged => None,
            Before::State(PhysState::Deleted(_)) if unseen => Some(PhysState::Absent),
            Before::State(s) => Some(s.clone()),
            // The node is flag-deleted with its data in place: read, then made live again.
            Before::Delta { .. } | Before::Undeleted => {
                let phys = vs.store.read(tree, &key)?;
                Some(undo_state(phys, &rce.before))
            }
        };
        if let Some(state) = restored {
            let clr = TxnRecord::Clr {
                trx: self.state.id,
                seq,
            }
            .encode();
            vs.store.write(tree, &key, &state, &clr)?;
        }
        // The page is as it was before the change: readers may skip the store for the key
        // again (see `take_rce`). After a failed write the count stays, which only keeps
        // readers on the full path.
        vs.unpin_key(tree, hash, 1);
        self.ops.pop();
        Ok(())
    }
}

impl Drop for Transaction {
    /// A transaction dropped while open is rolled back (the session layer ends sessions
    /// through explicit rollback; this is the safety net). Errors cannot be reported here.
    fn drop(&mut self) {
        if self.level > 0 {
            let _ = self.rollback_all();
            if self.level > 0 {
                self.state.commit_ts.store(ABORTED, Ordering::Release);
                self.finish();
            }
        }
    }
}

fn read_int(v: &[u8], offset: u32, width: u8) -> Option<i64> {
    let start = offset as usize;
    let f = v.get(start..start + width as usize)?;
    match width {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(f);
            Some(i64::from(i32::from_le_bytes(a)))
        }
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(f);
            Some(i64::from_le_bytes(a))
        }
        _ => None,
    }
}
