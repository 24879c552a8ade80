//! The version store (ESE's `VER`): revision control entries (RCEs) for every record a live
//! transaction changed, used for snapshot reads, write-conflict detection and rollback.
//!
//! # Visibility
//! A transaction's snapshot is the commit timestamp of the last transaction committed when it
//! began at level 0. An RCE is visible to a reader if it belongs to the reader's own
//! transaction, or its transaction committed with a timestamp at or below the reader's
//! snapshot. To read a key, start from the physical state in the tree (the newest version)
//! and walk the key's RCEs from newest to oldest, undoing each invisible one (restoring its
//! before-image, or subtracting its escrow delta) until a visible one is met.
//!
//! # Conflicts (ESE's `FVERIWriteConflict`, first writer wins, no waiting)
//! A write conflicts when another transaction holds an *active* RCE on the key: uncommitted,
//! or committed after the writer's snapshot. Escrow deltas commute with escrow deltas and read
//! locks with read locks; every other combination is `WriteConflict` (-1102).
//!
//! # Cleanup and budget
//! An RCE whose transaction committed at or below the oldest live snapshot is visible to every
//! reader and conflicts with no writer: cleanup drops it (and every older RCE of the key), and
//! physically removes a flag-deleted record whose delete it was. The budget counts the bytes
//! of before-images and deltas plus a fixed overhead per entry for replaces, deletes, deltas and
//! locks (ESE's `JET_paramMaxVerPages` role). An insert's entry holds only its key and is not
//! charged, so a bulk load in one transaction does not exhaust the budget; its memory is
//! reported by [`VersionStoreStats::insert_entries`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ese_core::{Error, ErrorKind, ObjId, Result, TrxId};
use parking_lot::{Mutex, MutexGuard};

use crate::keymap::{Found, KeyMap, SlotHint};
use crate::store::{PhysState, TxnStore};

/// `commit_ts` of a transaction still running.
pub(crate) const ACTIVE: u64 = 0;
/// `commit_ts` of a transaction rolled back.
pub(crate) const ABORTED: u64 = u64::MAX;
/// Snapshot that sees every committed transaction (reads outside a transaction).
pub(crate) const LATEST: u64 = u64::MAX - 1;

/// Fixed overhead charged to the budget per non-insert RCE (bytes).
const RCE_OVERHEAD: u64 = 64;

/// Length of a key's chain past which taking a lock first drops the committed locks no one
/// needs (see [`VersionStore::prune_locks`]).
const LOCK_PRUNE_AT: usize = 16;

/// Number of independently locked shards of the key map. A power of two; 64 keeps contention
/// between writers on different keys negligible at the session counts ESE allows by default.
const SHARDS: usize = 64;

/// The state shared by a transaction and its RCEs (ESE's `PIB` fields `trxBegin0` and
/// `trxCommit0`).
#[derive(Debug)]
pub(crate) struct TrxState {
    pub(crate) id: TrxId,
    pub(crate) snapshot: u64,
    pub(crate) commit_ts: AtomicU64,
    /// Who owns the transaction, for `VersionStoreOutOfMemory` reports (ESE's event 623).
    pub(crate) owner: String,
}

impl TrxState {
    pub(crate) fn commit_ts(&self) -> u64 {
        self.commit_ts.load(Ordering::Acquire)
    }

    /// A running transaction `id` at snapshot 1, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64) -> Arc<TrxState> {
        Arc::new(TrxState {
            id: TrxId(id),
            snapshot: 1,
            commit_ts: AtomicU64::new(ACTIVE),
            owner: "test".into(),
        })
    }
}

/// The operation an RCE records (ESE's `m_oper`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Oper {
    Insert,
    Replace,
    Delete,
    Delta,
    WriteLock,
    ReadLock,
}

/// How to reconstruct the state before an RCE.
#[derive(Clone, Debug)]
pub(crate) enum Before {
    State(PhysState),
    /// A delete's: the node was flag-deleted with its data left in place, so the state before
    /// is the state after (`Deleted(data)`) made live again (`Present(data)`). Like `State`,
    /// it fixes the key's state (the walk of a chain stops at a visible one).
    Undeleted,
    Delta {
        offset: u32,
        width: u8,
        delta: i64,
    },
    Unchanged,
}

impl Before {
    /// Whether the entry sets the key's whole state (a before-image or a delete's), as
    /// opposed to an escrow delta or a lock, which commute with other entries.
    pub(crate) fn fixes_state(&self) -> bool {
        matches!(self, Before::State(_) | Before::Undeleted)
    }
}

/// A revision control entry.
#[derive(Debug)]
pub(crate) struct Rce {
    pub(crate) trx: Arc<TrxState>,
    pub(crate) seq: u32,
    pub(crate) oper: Oper,
    pub(crate) before: Before,
    charge: u64,
}

/// The RCEs of one key, oldest first. Most keys have one (an insert, a delete or a change no
/// other transaction touched before cleanup dropped it): it is held inline, so the key's first
/// RCE costs no allocation of its own.
#[derive(Debug)]
pub(crate) enum Chain {
    One(Rce),
    Many(Vec<Rce>),
}

impl Chain {
    /// Appends `rce` (the newest).
    pub(crate) fn push(&mut self, rce: Rce) {
        match self {
            Chain::Many(v) => v.push(rce),
            Chain::One(_) => {
                if let Chain::One(first) = std::mem::replace(self, Chain::Many(Vec::new())) {
                    *self = Chain::Many(vec![first, rce]);
                }
            }
        }
    }

    /// Removes and returns the RCE at `i` (`None` past the end).
    pub(crate) fn remove(&mut self, i: usize) -> Option<Rce> {
        match self {
            Chain::Many(v) => (i < v.len()).then(|| v.remove(i)),
            Chain::One(_) if i == 0 => {
                let Chain::One(r) = std::mem::replace(self, Chain::Many(Vec::new())) else {
                    return None;
                };
                Some(r)
            }
            Chain::One(_) => None,
        }
    }

    /// Removes and returns the oldest `n` RCEs (all of them if there are fewer).
    pub(crate) fn take_front(&mut self, n: usize) -> Vec<Rce> {
        match self {
            Chain::Many(v) => v.drain(..n.min(v.len())).collect(),
            Chain::One(_) if n == 0 => Vec::new(),
            Chain::One(_) => self.remove(0).into_iter().collect(),
        }
    }

    /// Keeps the RCEs `keep` says yes to, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Rce) -> bool) {
        match self {
            Chain::Many(v) => v.retain(keep),
            Chain::One(r) => {
                if !keep(r) {
                    *self = Chain::Many(Vec::new());
                }
            }
        }
    }
}

impl std::ops::Deref for Chain {
    type Target = [Rce];
    fn deref(&self) -> &[Rce] {
        match self {
            Chain::One(r) => std::slice::from_ref(r),
            Chain::Many(v) => v,
        }
    }
}

/// Bytes of a version store key (the objid's 4 and the record key's) held inside the
/// [`VKey`] itself: keys of a few columns fit, so their RCEs allocate nothing for the key.
const VKEY_INLINE: usize = 38;

/// The bytes of a [`VKey`]: the tree's objid (4 bytes little-endian), then the key.
#[derive(Clone, Debug)]
enum KeyBytes {
    /// Up to [`VKEY_INLINE`] bytes, the first `len` of `buf`.
    Inline { len: u8, buf: [u8; VKEY_INLINE] },
    /// A longer key, in one shared allocation.
    Shared(Arc<[u8]>),
}

impl KeyBytes {
    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            KeyBytes::Shared(b) => b,
        }
    }
}

/// A key of the version store: tree and record key. A key of up to [`VKEY_INLINE`] bytes
/// (with the objid) is held inline: making it and dropping it at cleanup touch no allocator
/// (at cleanup, which frees a large transaction's keys on another thread, every free used to
/// contend with the inserting thread's allocations). A longer key is one shared allocation.
/// It carries its hash ([`VersionStore::key_hash`]), computed once when the key is made, so
/// neither a look-up in the key map ([`KeyMap`]) nor the map's growth reads the key's bytes
/// to hash them again.
#[derive(Clone, Debug)]
pub(crate) struct VKey {
    hash: u64,
    bytes: KeyBytes,
}

impl VKey {
    pub(crate) fn new(hash: u64, tree: ObjId, key: &[u8]) -> VKey {
        let len = 4 + key.len();
        let bytes = if len <= VKEY_INLINE {
            let mut buf = [0u8; VKEY_INLINE];
            let (id, rest) = buf.split_at_mut(4);
            id.copy_from_slice(&tree.0.to_le_bytes());
            if let Some(dst) = rest.get_mut(..key.len()) {
                dst.copy_from_slice(key);
            }
            KeyBytes::Inline {
                // At most VKEY_INLINE (38): fits a byte.
                len: len as u8,
                buf,
            }
        } else {
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(&tree.0.to_le_bytes());
            v.extend_from_slice(key);
            KeyBytes::Shared(Arc::from(v))
        };
        VKey { hash, bytes }
    }

    pub(crate) fn tree(&self) -> ObjId {
        let mut id = [0u8; 4];
        if let Some(b) = self.bytes.as_slice().get(..4) {
            id.copy_from_slice(b);
        }
        ObjId(u32::from_le_bytes(id))
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.bytes.as_slice().get(4..).unwrap_or_default()
    }
}

/// A tree and record key, borrowed or owned, with the key's hash: lets the key map be probed
/// with a borrowed key (no allocation per lookup).
pub(crate) trait KeyView {
    fn tree(&self) -> ObjId;
    fn key(&self) -> &[u8];
    /// [`VersionStore::key_hash`] of the tree and key.
    fn key_hash(&self) -> u64;
}

impl KeyView for VKey {
    fn tree(&self) -> ObjId {
        VKey::tree(self)
    }
    fn key(&self) -> &[u8] {
        VKey::key(self)
    }
    fn key_hash(&self) -> u64 {
        self.hash
    }
}

/// A borrowed key of the version store with its hash ([`VersionStore::probe`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe<'a> {
    hash: u64,
    tree: ObjId,
    key: &'a [u8],
}

impl KeyView for Probe<'_> {
    fn tree(&self) -> ObjId {
        self.tree
    }
    fn key(&self) -> &[u8] {
        self.key
    }
    fn key_hash(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for VKey {
    fn eq(&self, other: &Self) -> bool {
        // A shared key compared with itself (cleanup looks up the very key the map holds) is
        // found without reading its bytes, which are far from the map in memory.
        self.hash == other.hash
            && match (&self.bytes, &other.bytes) {
                (KeyBytes::Shared(a), KeyBytes::Shared(b)) => Arc::ptr_eq(a, b) || a == b,
                (a, b) => a.as_slice() == b.as_slice(),
            }
    }
}

impl Eq for VKey {}

/// A fast hasher for version store keys (multiply-rotate per word, murmur3's finalizer),
/// seeded per version store from the standard library's random state so key placement is not
/// predictable from outside. SipHash cost about a tenth of every insert.
#[derive(Clone, Debug)]
pub(crate) struct KeyHashState {
    seed: u64,
}

impl KeyHashState {
    pub(crate) fn new() -> KeyHashState {
        KeyHashState {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64) | 1,
        }
    }
}

impl BuildHasher for KeyHashState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

/// The hasher of [`KeyHashState`].
pub(crate) struct KeyHasher {
    h: u64,
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl KeyHasher {
    fn add(&mut self, w: u64) {
        self.h = (self.h.rotate_left(23) ^ w).wrapping_mul(MIX);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.add(u64::from_le_bytes(a));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut a = [0u8; 8];
            if let Some(d) = a.get_mut(..rest.len()) {
                d.copy_from_slice(rest);
            }
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(a) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// Who is reading: the snapshot, and the reader's own transaction (whose changes it sees).
#[derive(Clone, Copy, Debug)]
pub struct ReadView {
    pub(crate) snapshot: u64,
    pub(crate) own: Option<TrxId>,
}

impl ReadView {
    /// A view that sees every committed transaction and no uncommitted one (a read outside a
    /// transaction).
    pub const fn latest() -> ReadView {
        ReadView {
            snapshot: LATEST,
            own: None,
        }
    }

    fn sees(&self, rce: &Rce) -> bool {
        if Some(rce.trx.id) == self.own {
            return true;
        }
        let ts = rce.trx.commit_ts();
        ts != ACTIVE && ts != ABORTED && ts <= self.snapshot
    }
}

/// Figures of the version store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionStoreStats {
    /// Bytes charged to the budget now.
    pub bytes_used: u64,
    /// The budget in bytes.
    pub budget: u64,
    /// Entries for inserts (key only, not charged).
    pub insert_entries: u64,
    /// Entries of every kind.
    pub entries: u64,
    /// Keys with at least one entry.
    pub keys: u64,
    /// Entries dropped by cleanup so far.
    pub cleaned: u64,
}

/// What a cleanup pass dropped, applied to the shared counters at once
/// ([`VersionStore::settle`]).
#[derive(Default)]
struct Tally {
    charge: u64,
    inserts: u64,
    entries: u64,
    /// Entries dropped per tree (a commit's keys are mostly of one or two trees).
    unpins: Vec<(ObjId, u64)>,
    /// Entries dropped per key, by the key's hash (for its key slot).
    key_unpins: Vec<(u64, u32)>,
}

impl Tally {
    fn add(&mut self, r: &Rce, tree: ObjId) {
        self.charge += r.charge;
        if r.oper == Oper::Insert {
            self.inserts += 1;
        }
        self.entries += 1;
        match self.unpins.iter_mut().find(|(t, _)| *t == tree) {
            Some((_, n)) => *n += 1,
            None => self.unpins.push((tree, 1)),
        }
    }
}

/// One change of a transaction, in its list of changes (which cleanup takes at commit).
#[derive(Debug)]
pub(crate) struct OpRef {
    /// The hash of the changed key ([`VersionStore::key_hash`]): it finds the key's shard and
    /// entry, and among the keys of that hash, the chain holding the change's entry
    /// (`seq`) is the key's. 16 bytes where the key itself would take 48.
    pub(crate) hash: u64,
    pub(crate) seq: u32,
    pub(crate) level: u32,
}

/// What [`VersionStore::clean_chain`] found cleanable in a chain.
enum Cleaned {
    /// Every entry: the chain is left as it was, for the caller to take out of the map whole.
    All,
    /// These entries, removed from the chain (possibly none; possibly all, leaving it empty).
    Part(Chain),
}

/// Changes to clean from which [`VersionStore::cleanup`] walks the shards' maps in place
/// instead of looking each changed key up (`clean_by_scan`)...
const SCAN_MIN: usize = 4096;
/// ... when they are at least one in this many of the entries in the store (the walk reads
/// every entry; a look-up costs several times a step of the walk).
const SCAN_SHARE: usize = 8;

struct Committed {
    ts: u64,
    /// The transaction's changes (their keys; a key changed twice is listed twice).
    ops: Vec<OpRef>,
}

pub(crate) struct Shard {
    pub(crate) map: KeyMap,
}

/// The version store and transaction table of one instance.
pub struct VersionStore {
    pub(crate) store: Arc<dyn TxnStore>,
    pub(crate) next_trx: AtomicU64,
    pub(crate) last_commit: AtomicU64,
    /// Serializes the commit record append with the commit timestamp, so commit timestamps
    /// follow log order.
    pub(crate) commit_lock: Mutex<()>,
    pub(crate) active: Mutex<HashMap<TrxId, Arc<TrxState>>>,
    shards: Box<[Mutex<Shard>]>,
    /// Where each shard's slot table is, for prefetching without its lock (each shard's map
    /// keeps its own up to date).
    hints: Box<[Arc<SlotHint>]>,
    hasher: KeyHashState,
    committed: Mutex<VecDeque<Committed>>,
    budget: u64,
    used: AtomicU64,
    insert_entries: AtomicU64,
    entries: AtomicU64,
    cleaned: AtomicU64,
    /// Serializes cleanup passes.
    cleanup_lock: Mutex<()>,
    /// Set by [`VersionStore::stop_background`].
    stopped: std::sync::atomic::AtomicBool,
    /// First log position of each open transaction that changed something.
    pub(crate) oldest_lgpos: Mutex<HashMap<TrxId, ese_core::Lgpos>>,
    /// (commit record, first change) of committed transactions whose commit record may not be
    /// durable yet: until it is, a crash rolls them back, so recovery must still see their
    /// changes.
    pub(crate) undurable: Mutex<Vec<(ese_core::Lgpos, ese_core::Lgpos)>>,
    /// Entries per tree slot (trees hashed into [`TREE_SLOTS`] slots): lets readers skip the
    /// version store entirely for trees without versions (see [`VersionStore::may_have_versions`]).
    tree_slots: Box<[AtomicU64]>,
    /// Entries per key slot (keys hashed into [`KEY_SLOTS`] slots by their version-store
    /// hash): narrows [`VersionStore::may_have_versions`] to a key, so that a reader of a tree
    /// another session is changing skips the version store for the keys it does not touch
    /// (see [`VersionStore::may_have_key_versions`]).
    key_slots: Box<[AtomicU32]>,
    /// See [`VersionStore::change_epoch`].
    change_epoch: AtomicU64,
}

/// Number of per-tree entry counters; trees that share a slot only cost each other a slower
/// read path, never a wrong one.
const TREE_SLOTS: usize = 256;

fn tree_slot(tree: ObjId) -> usize {
    (tree.0.wrapping_mul(0x9E37_79B9) >> 24) as usize % TREE_SLOTS
}

/// Number of per-key entry counters (512 KiB of them; a counter never overflows: fewer than
/// 2^32 entries, each an allocation of tens of bytes, ever live at once). Keys that share a
/// slot only cost each other the look-up in the version store, never a wrong answer. A
/// writer committing 100 keys a millisecond leaves about 10,000 keys with versions between
/// two cleanup passes (100 ms apart): a key without versions then shares its slot with one
/// of them about one time in thirteen.
const KEY_SLOTS: usize = 1 << 17;

/// The key slot of the key whose version-store hash is `hash` (its low bits: the shard
/// index takes bits 32 and up).
fn key_slot(hash: u64) -> usize {
    (hash as usize) & (KEY_SLOTS - 1)
}

impl std::fmt::Debug for VersionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl VersionStore {
    /// A version store over `store`, with a budget of `budget_bytes`, whose transaction ids
    /// start at `first_trx` (choose a value above every id in the log this store will share,
    /// e.g. from the log generation, so ids never repeat in one log stream).
    pub fn new(store: Arc<dyn TxnStore>, budget_bytes: u64, first_trx: TrxId) -> VersionStore {
        let hasher = KeyHashState::new();
        let hints: Box<[Arc<SlotHint>]> = (0..SHARDS).map(|_| Arc::default()).collect();
        VersionStore {
            store,
            next_trx: AtomicU64::new(first_trx.0.max(1)),
            last_commit: AtomicU64::new(1),
            commit_lock: Mutex::new(()),
            active: Mutex::new(HashMap::new()),
            shards: hints
                .iter()
                .map(|h| {
                    Mutex::new(Shard {
                        map: KeyMap::with_hint(Arc::clone(h)),
                    })
                })
                .collect(),
            hints,
            hasher,
            committed: Mutex::new(VecDeque::new()),
            budget: budget_bytes,
            used: AtomicU64::new(0),
            insert_entries: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            cleaned: AtomicU64::new(0),
            cleanup_lock: Mutex::new(()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            oldest_lgpos: Mutex::new(HashMap::new()),
            undurable: Mutex::new(Vec::new()),
            tree_slots: (0..TREE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            key_slots: (0..KEY_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            change_epoch: AtomicU64::new(0),
        }
    }

    /// The page store below.
    pub fn store(&self) -> &Arc<dyn TxnStore> {
        &self.store
    }

    /// Current figures.
    pub fn stats(&self) -> VersionStoreStats {
        let keys = self.shards.iter().map(|s| s.lock().map.len() as u64).sum();
        VersionStoreStats {
            bytes_used: self.used.load(Ordering::Relaxed),
            budget: self.budget,
            insert_entries: self.insert_entries.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            keys,
            cleaned: self.cleaned.load(Ordering::Relaxed),
        }
    }

    /// The hash of `key` of `tree`: picks the key's shard and its place in the shard's map.
    pub(crate) fn key_hash(&self, tree: ObjId, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        tree.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// The probe for `key` of `tree` (its hash computed once, for the shard and the map).
    pub(crate) fn probe<'a>(&self, tree: ObjId, key: &'a [u8]) -> Probe<'a> {
        Probe {
            hash: self.key_hash(tree, key),
            tree,
            key,
        }
    }

    /// The owned key for the probe `p`.
    pub(crate) fn vkey(p: &Probe<'_>) -> VKey {
        VKey::new(p.hash, p.tree, p.key)
    }

    /// The shard of a key.
    pub(crate) fn shard(&self, k: &dyn KeyView) -> MutexGuard<'_, Shard> {
        self.shard_at(Self::shard_index(k.key_hash()))
    }

    /// The shard of the key whose hash is `hash`.
    pub(crate) fn shard_of_hash(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shard_at(Self::shard_index(hash))
    }

    fn shard_index(hash: u64) -> usize {
        // Bits the maps inside a shard use neither for buckets (low bits) nor for tags (top
        // seven), so the keys of one shard still spread over its map.
        ((hash >> 32) as usize) & (SHARDS - 1)
    }

    fn shard_at(&self, i: usize) -> MutexGuard<'_, Shard> {
        #[expect(
            clippy::indexing_slicing,
            reason = "every index comes from shard_index, masked below SHARDS, the slice length"
        )]
        self.shards[i].lock()
    }

    /// The oldest snapshot any live transaction reads at; versions committed at or below it
    /// are visible to everyone (and a change committed at or below it is seen by every
    /// transaction, so what it made unreachable can be freed).
    pub fn horizon(&self) -> u64 {
        let active = self.active.lock();
        let latest = self.last_commit.load(Ordering::Acquire);
        active
            .values()
            .map(|t| t.snapshot)
            .min()
            .unwrap_or(latest)
            .min(latest)
    }

    /// The newest commit timestamp handed out (every committed transaction has a timestamp at
    /// or below it).
    pub fn last_commit_ts(&self) -> u64 {
        self.last_commit.load(Ordering::Acquire)
    }

    /// A counter that moves whenever what some view sees may have changed: after every change
    /// a transaction makes (which its own view sees) and every undo of one, and both before
    /// and after a commit becomes visible to other views. A reader that loads it *before*
    /// reading a record may keep the record and serve it again for as long as the counter
    /// still has that value: no view has changed since. (Version cleanup removes only what
    /// no view sees, so it does not move the counter.)
    pub fn change_epoch(&self) -> u64 {
        self.change_epoch.load(Ordering::SeqCst)
    }

    /// Moves [`VersionStore::change_epoch`].
    pub(crate) fn bump_change_epoch(&self) {
        self.change_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The state of `key` of `tree` as `view` sees it. `read_phys` reads the physical state
    /// from the page store; it runs while the key's version chain is locked, so no writer can
    /// change or roll back the key between the physical read and the reconstruction (reading
    /// an uncommitted value and then missing its version entry would be a dirty read).
    ///
    /// # Errors
    /// Whatever `read_phys` returns.
    pub fn visible_with(
        &self,
        tree: ObjId,
        key: &[u8],
        view: &ReadView,
        read_phys: impl FnOnce() -> Result<PhysState>,
    ) -> Result<PhysState> {
        let probe = self.probe(tree, key);
        let shard = self.shard(&probe);
        let phys = read_phys()?;
        Ok(match shard.map.get(&probe as &dyn KeyView) {
            None => phys,
            Some(chain) => reconstruct(chain, phys, view),
        })
    }

    /// [`VersionStore::visible_with`] for a caller that holds a copy of the key's physical
    /// state (a cursor on its node): `None` when the key has no version chain and
    /// `holds_current` (asked under the chain's lock, so no writer can change or roll back the
    /// key meanwhile) says the copy is still what the page holds, so that the copy is what
    /// every view sees, with nothing read or copied; otherwise the state `view` sees, from
    /// `read_phys` run under the lock as in `visible_with`.
    ///
    /// # Errors
    /// Whatever `read_phys` returns.
    pub fn visible_unless_current(
        &self,
        tree: ObjId,
        key: &[u8],
        view: &ReadView,
        holds_current: impl FnOnce() -> bool,
        read_phys: impl FnOnce() -> Result<PhysState>,
    ) -> Result<Option<PhysState>> {
        let probe = self.probe(tree, key);
        let shard = self.shard(&probe);
        match shard.map.get(&probe as &dyn KeyView) {
            None if holds_current() => Ok(None),
            None => read_phys().map(Some),
            Some(chain) => Ok(Some(reconstruct(chain, read_phys()?, view))),
        }
    }

    /// The state of `key` of `tree` as `view` sees it, read from the page store below.
    ///
    /// # Errors
    /// The page store's errors.
    pub fn read(&self, tree: ObjId, key: &[u8], view: &ReadView) -> Result<PhysState> {
        self.visible_with(tree, key, view, || self.store.read(tree, key))
    }

    /// Whether `tree` may hold versions. `false` guarantees that every record of the tree as
    /// the page store holds it is committed and visible to every snapshot, so a reader may use
    /// it directly — provided it read the record *before* calling this: writers announce
    /// themselves here before changing a page, so a reader that saw a changed page also sees
    /// the announcement.
    pub fn may_have_versions(&self, tree: ObjId) -> bool {
        self.tree_slots
            .get(tree_slot(tree))
            .is_some_and(|c| c.load(Ordering::SeqCst) != 0)
    }

    /// Whether `key` of `tree` may have versions: [`VersionStore::may_have_versions`] of the
    /// tree, narrowed to the key's slot (one hash of the key, and only when the tree may hold
    /// versions). `false` tells a caller that read the record *before* calling this that the
    /// record as it read it is committed and visible to every snapshot — provided that the
    /// page it read has not changed since, checked *after* this answer: a writer counts its
    /// entry in the key's slot before the change reaches a page, and the count drops once the
    /// entry is gone, but a rollback restores the page before it withdraws the count, so a
    /// copy made before the restore (of the change rolled back) can meet a zero count.
    pub fn may_have_key_versions(&self, tree: ObjId, key: &[u8]) -> bool {
        self.may_have_versions(tree)
            && self
                .key_slots
                .get(key_slot(self.key_hash(tree, key)))
                .is_some_and(|c| c.load(Ordering::SeqCst) != 0)
    }

    /// Announces a change to the key of `tree` whose hash is `hash` before it reaches a page
    /// (see [`VersionStore::may_have_versions`] and [`VersionStore::may_have_key_versions`]):
    /// one count for the entry the change adds, in the tree's slot and in the key's.
    pub(crate) fn pin_key(&self, tree: ObjId, hash: u64) {
        if let Some(c) = self.key_slots.get(key_slot(hash)) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(c) = self.tree_slots.get(tree_slot(tree)) {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Withdraws `n` announcements of [`VersionStore::pin_key`] for the key of `tree` whose
    /// hash is `hash` (entries of it that are gone).
    pub(crate) fn unpin_key(&self, tree: ObjId, hash: u64, n: u32) {
        self.unpin_key_slot(hash, n);
        self.unpin_tree_slot(tree, u64::from(n));
    }

    /// Withdraws `n` counts of the key slot of `hash`.
    fn unpin_key_slot(&self, hash: u64, n: u32) {
        if let Some(c) = self.key_slots.get(key_slot(hash)) {
            c.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Withdraws `n` counts of the slot of `tree`.
    fn unpin_tree_slot(&self, tree: ObjId, n: u64) {
        if let Some(c) = self.tree_slots.get(tree_slot(tree)) {
            c.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Whether any entry (committed or not, of any kind) is held for a tree `of` selects: a
    /// scan of every shard, for detach, which must not leave versions of a database's trees
    /// behind.
    pub fn holds_versions_of(&self, of: impl Fn(ObjId) -> bool) -> bool {
        self.shards
            .iter()
            .any(|s| s.lock().map.keys().any(|k| of(k.tree())))
    }

    /// Whether any transaction holds versions of `key` (a cheap check before
    /// [`VersionStore::visible`]).
    pub fn has_versions(&self, tree: ObjId, key: &[u8]) -> bool {
        let probe = self.probe(tree, key);
        self.shard(&probe).map.contains_key(&probe as &dyn KeyView)
    }

    /// Checks that `trx` may perform `oper` on the key whose chain is `chain`.
    pub(crate) fn check_conflict(chain: Option<&Chain>, me: &TrxState, oper: Oper) -> Result<()> {
        let Some(chain) = chain else { return Ok(()) };
        for r in chain.iter().rev() {
            if r.trx.id == me.id {
                continue;
            }
            let ts = r.trx.commit_ts();
            let active = ts == ACTIVE || (ts != ABORTED && ts > me.snapshot);
            if !active {
                continue;
            }
            let commutes = matches!(
                (r.oper, oper),
                (Oper::Delta, Oper::Delta) | (Oper::ReadLock, Oper::ReadLock)
            );
            if !commutes {
                return Err(Error::new(ErrorKind::WriteConflict).with_message(format!(
                    "the record is being modified by transaction {} ({})",
                    r.trx.id.0, r.trx.owner
                )));
            }
        }
        Ok(())
    }

    /// Charges an RCE to the budget; `None` if it does not fit.
    pub(crate) fn try_charge(&self, oper: Oper, before: &Before) -> Option<u64> {
        if oper == Oper::Insert {
            return Some(0);
        }
        let bytes = RCE_OVERHEAD
            + match before {
                Before::State(s) => s.data_len() as u64,
                Before::Delta { .. } | Before::Unchanged | Before::Undeleted => 0,
            };
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + bytes > self.budget {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(bytes),
                Err(u) => used = u,
            }
        }
    }

    /// Returns a charge taken by [`VersionStore::try_charge`] for an RCE never added.
    pub(crate) fn uncharge(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn out_of_memory(&self) -> Error {
        let oldest = self
            .active
            .lock()
            .values()
            .min_by_key(|t| (t.snapshot, t.id))
            .map(|t| {
                format!(
                    "the oldest transaction is {} ({}), begun at snapshot {}",
                    t.id.0, t.owner, t.snapshot
                )
            });
        Error::new(ErrorKind::VersionStoreOutOfMemory).with_message(format!(
            "the version store is full ({} of {} bytes); {}",
            self.used.load(Ordering::Relaxed),
            self.budget,
            oldest.unwrap_or_else(|| "no transaction is open".to_owned())
        ))
    }

    /// Adds an RCE to the chain of `probe`'s key (the caller holds the shard lock), which
    /// `found` ([`KeyMap::find`] under the same hold of that lock) says it has or not.
    pub(crate) fn push_rce(&self, shard: &mut Shard, probe: &Probe<'_>, found: Found, rce: Rce) {
        if rce.oper == Oper::Insert {
            self.insert_entries.fetch_add(1, Ordering::Relaxed);
        }
        self.entries.fetch_add(1, Ordering::Relaxed);
        shard.map.push_at(found, probe, rce, || Self::vkey(probe));
    }

    /// Asks the CPU for the memory where a look-up of `key` of `tree` in the version store
    /// starts, and for the key's slot count, ahead of the look-up: a caller that will change
    /// or read the key's versions after other work (a descent of the tree, encoding a record)
    /// overlaps the look-up's likely cache misses with that work. Changes nothing; costs one
    /// hash of the key.
    pub fn prefetch_key(&self, tree: ObjId, key: &[u8]) {
        let hash = self.key_hash(tree, key);
        if let Some(h) = self.hints.get(Self::shard_index(hash)) {
            h.prefetch(hash);
        }
        if let Some(c) = self.key_slots.get(key_slot(hash)) {
            ese_core::hint::prefetch(c.as_ptr() as usize);
        }
    }

    pub(crate) fn new_rce(
        trx: &Arc<TrxState>,
        seq: u32,
        oper: Oper,
        before: Before,
        charge: u64,
    ) -> Rce {
        Rce {
            trx: Arc::clone(trx),
            seq,
            oper,
            before,
            charge,
        }
    }

    /// Drops the locks of `vkey`'s chain that cleanup would drop (committed at or below the
    /// horizon: they conflict with no writer), when the chain has grown past
    /// [`LOCK_PRUNE_AT`] entries. Locks change no state, so no reader's reconstruction depends
    /// on them. A key every transaction locks (a table's catalog record) otherwise collects one
    /// entry per commit between two cleanup passes, and each new transaction walks them all
    /// (the caller holds the shard lock).
    pub(crate) fn prune_locks(&self, shard: &mut Shard, probe: &Probe<'_>) {
        let tree = probe.tree;
        let Some(chain) = shard.map.get_mut(probe as &dyn KeyView) else {
            return;
        };
        if chain.len() <= LOCK_PRUNE_AT {
            return;
        }
        let horizon = self.horizon();
        let before = chain.len();
        chain.retain(|r| {
            let ts = r.trx.commit_ts();
            let drop = matches!(r.oper, Oper::ReadLock | Oper::WriteLock)
                && ts != ACTIVE
                && ts != ABORTED
                && ts <= horizon;
            if drop {
                self.release(r, 1);
            }
            !drop
        });
        let dropped = before - chain.len();
        if chain.is_empty() {
            shard.map.remove(probe as &dyn KeyView);
        }
        if dropped > 0 {
            // At most the chain's length: far below 2^32 (see `KEY_SLOTS`).
            self.unpin_key(tree, probe.hash, u32::try_from(dropped).unwrap_or(u32::MAX));
        }
        self.cleaned.fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Removes the RCE `(trx, seq)` of `vkey` and returns it (rollback). Its count in the
    /// key's and the tree's slots stays: the caller withdraws it ([`VersionStore::unpin_key`])
    /// once the page shows the state before the change again. Withdrawn here, a reader that
    /// skips the version store on a zero count could read the page still changed in between:
    /// an insert being rolled back, or a delete's flag not yet cleared.
    pub(crate) fn take_rce(
        &self,
        shard: &mut Shard,
        vkey: &VKey,
        trx: TrxId,
        seq: u32,
    ) -> Option<Rce> {
        let chain = shard.map.get_mut(vkey)?;
        let pos = chain
            .iter()
            .rposition(|r| r.trx.id == trx && r.seq == seq)?;
        let rce = chain.remove(pos)?;
        if chain.is_empty() {
            shard.map.remove(vkey);
        }
        self.release(&rce, 1);
        Some(rce)
    }

    fn release(&self, rce: &Rce, n: u64) {
        self.used.fetch_sub(rce.charge, Ordering::Relaxed);
        if rce.oper == Oper::Insert {
            self.insert_entries.fetch_sub(1, Ordering::Relaxed);
        }
        self.entries.fetch_sub(n, Ordering::Relaxed);
    }

    /// Applies what a cleanup pass over one commit's keys dropped to the shared counters, at
    /// once: the writers update the same counters (and the tree's announcement count) for
    /// every change, so one update per entry from the cleanup thread would pull their cache
    /// lines back and forth between the cores. Withdrawing the trees' announcements after the
    /// entries are gone, not as each goes, only keeps `may_have_versions` true a moment longer.
    fn settle(&self, tally: Tally) {
        self.used.fetch_sub(tally.charge, Ordering::Relaxed);
        self.insert_entries
            .fetch_sub(tally.inserts, Ordering::Relaxed);
        self.entries.fetch_sub(tally.entries, Ordering::Relaxed);
        for (hash, n) in tally.key_unpins {
            self.unpin_key_slot(hash, n);
        }
        for (tree, n) in tally.unpins {
            self.unpin_tree_slot(tree, n);
        }
    }

    /// Records a level-0 commit's keys for cleanup.
    pub(crate) fn committed(&self, ts: u64, ops: Vec<OpRef>) {
        if !ops.is_empty() {
            self.committed.lock().push_back(Committed { ts, ops });
        }
    }

    /// Starts the background version cleanup (ESE's version-store cleanup task): every
    /// `interval` it runs [`VersionStore::cleanup`], so versions no live snapshot needs are
    /// reclaimed without waiting for the budget to fill. The thread holds only a weak
    /// reference and stops when the store is dropped, or after the first error, which it
    /// reports to `on_error` (a failed page write: the caller makes the instance unavailable).
    ///
    /// Returns the thread's handle: after [`VersionStore::stop_background`], unpark and join it
    /// to be sure it let go of the store.
    ///
    /// # Errors
    /// The `io::Error` of spawning the thread.
    pub fn spawn_cleanup(
        self: &Arc<Self>,
        interval: std::time::Duration,
        on_error: impl Fn(&Error) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ese-version-cleanup".into())
            .spawn(move || {
                loop {
                    std::thread::park_timeout(interval);
                    let Some(vs) = weak.upgrade() else { return };
                    if vs.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    if vs.entries.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    if let Err(e) = vs.cleanup() {
                        on_error(&e);
                        return;
                    }
                }
            })
    }

    /// Stops the background cleanup for good and waits for a pass in progress to finish (term
    /// calls it before writing the databases clean, so no cleanup write follows).
    pub fn stop_background(&self) {
        self.stopped.store(true, Ordering::Release);
        drop(self.cleanup_lock.lock());
    }

    /// Holds off cleanup (background or inline) while the guard lives: detach uses it so no
    /// cleanup write reaches a database being made clean.
    pub fn pause_cleanup(&self) -> impl Drop + '_ {
        self.cleanup_lock.lock()
    }

    /// Drops every version no live snapshot needs and physically removes records whose
    /// committed delete no snapshot can still see (ESE's RCE cleanup). Runs in the background
    /// and when the budget is exceeded. Returns the number of entries dropped.
    ///
    /// # Errors
    /// The page store's errors while removing flag-deleted records; the entries dropped so far
    /// stay dropped.
    pub fn cleanup(&self) -> Result<u64> {
        let _one = self.cleanup_lock.lock();
        if self.stopped.load(Ordering::Acquire) {
            return Ok(0);
        }
        let horizon = self.horizon();
        let mut dropped = 0;
        let mut doomed = Vec::new();
        // Every transaction committed at or below the horizon: what it changed is cleanable.
        let batches: Vec<Committed> = {
            let mut q = self.committed.lock();
            let n = q.iter().take_while(|c| c.ts <= horizon).count();
            q.drain(..n).collect()
        };
        let ops: usize = batches.iter().map(|b| b.ops.len()).sum();
        let entries = usize::try_from(self.entries.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if ops >= SCAN_MIN && ops.saturating_mul(SCAN_SHARE) >= entries {
            dropped = self.clean_by_scan(horizon, &mut doomed);
        } else {
            // What cleanup drops, freed after each shard lock is released.
            let mut freed = Vec::new();
            for batch in &batches {
                let mut tally = Tally::default();
                dropped +=
                    self.clean_keys(&batch.ops, horizon, &mut doomed, &mut tally, &mut freed);
                self.settle(tally);
            }
        }
        drop(batches);
        self.cleaned.fetch_add(dropped, Ordering::Relaxed);
        self.remove_doomed(doomed)?;
        Ok(dropped)
    }

    /// Removes the flag-deleted records whose last version cleanup dropped, in key order, a
    /// few keys at a time: the shard locks of the keys are taken (in shard order, so two
    /// holders never wait for each other), keys that gained a version meanwhile are skipped,
    /// and the page store removes the rest with one descent per leaf
    /// ([`TxnStore::remove_flag_deleted`]).
    fn remove_doomed(&self, mut doomed: Vec<VKey>) -> Result<()> {
        /// Keys per batch: enough to share descents among the keys of a leaf, few enough that
        /// the shard locks held meanwhile keep writers waiting only briefly.
        const BATCH: usize = 32;
        doomed.sort_unstable_by(|a, b| (a.tree(), a.key()).cmp(&(b.tree(), b.key())));
        doomed.dedup();
        let mut rest = doomed.as_slice();
        while let Some(first) = rest.first() {
            let tree = first.tree();
            let n = rest
                .iter()
                .take(BATCH)
                .take_while(|k| k.tree() == tree)
                .count();
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let of_key: Vec<usize> = chunk.iter().map(|k| Self::shard_index(k.hash)).collect();
            let mut indexes = of_key.clone();
            indexes.sort_unstable();
            indexes.dedup();
            let guards: Vec<_> = indexes.iter().map(|i| (*i, self.shard_at(*i))).collect();
            let keys: Vec<&[u8]> = chunk
                .iter()
                .zip(&of_key)
                .filter(|(k, i)| {
                    guards
                        .iter()
                        .find(|(j, _)| j == *i)
                        .is_some_and(|(_, g)| !g.map.contains_key(*k))
                })
                .map(|(k, _)| k.key())
                .collect();
            match self.store.remove_flag_deleted(tree, &keys) {
                // A tree freed since (its table or index was deleted, and every snapshot that
                // could see it is gone) has nothing left to clean.
                Err(e) if e.kind() == ErrorKind::ObjectNotFound => {}
                r => r?,
            }
            drop(guards);
        }
        Ok(())
    }

    /// Cleans the keys of one committed transaction ([`VersionStore::clean_key`] each);
    /// returns the number of entries dropped. `freed` is scratch space for the dropped entries,
    /// freed after each hold of a shard lock.
    ///
    /// A large transaction's keys are taken shard by shard (in commit order within a shard),
    /// 16 keys at a time: each key of a group is first looked up alone, so the cache
    /// misses of the group's look-ups (a map far larger than the cache, and each key's bytes)
    /// overlap, then each is cleaned from the cache. One key after another, every key waited
    /// for its misses in turn (about 40% more time per key). A shard's lock is held for one
    /// group (a few microseconds), so writers of the shard wait briefly.
    fn clean_keys(
        &self,
        ops: &[OpRef],
        horizon: u64,
        doomed: &mut Vec<VKey>,
        tally: &mut Tally,
        freed: &mut Vec<Chain>,
    ) -> u64 {
        const SWEEP_MIN: usize = 256;
        const GROUP: usize = 16;
        let mut dropped = 0;
        // The keys of one hash (almost always one), reused from key to key.
        let mut keys = Vec::new();
        let mut clean_hash = |shard: &mut Shard,
                              hash: u64,
                              doomed: &mut Vec<VKey>,
                              tally: &mut Tally,
                              freed: &mut Vec<Chain>| {
            shard.map.keys_with_hash(hash, &mut keys);
            let mut n = 0;
            for vkey in keys.drain(..) {
                n += Self::clean_key(shard, &vkey, horizon, doomed, tally, freed);
            }
            n
        };
        if ops.len() < SWEEP_MIN {
            for op in ops {
                let mut shard = self.shard_of_hash(op.hash);
                dropped += clean_hash(&mut shard, op.hash, doomed, tally, freed);
                drop(shard);
                freed.clear();
            }
            return dropped;
        }
        let mut by_shard: [Vec<u64>; SHARDS] = std::array::from_fn(|_| Vec::new());
        for op in ops {
            if let Some(v) = by_shard.get_mut(Self::shard_index(op.hash)) {
                v.push(op.hash);
            }
        }
        for (s, run) in by_shard.iter().enumerate() {
            for group in run.chunks(GROUP) {
                let mut shard = self.shard_at(s);
                for &hash in group {
                    std::hint::black_box(shard.map.has_hash(hash));
                }
                for &hash in group {
                    dropped += clean_hash(&mut shard, hash, doomed, tally, freed);
                }
                drop(shard);
                freed.clear();
            }
        }
        dropped
    }

    /// Drops the versions of `vkey` (in `shard`, its shard, locked) no one needs; returns how
    /// many. When the key is left without versions and its last was a delete, the key joins
    /// `doomed`: its flag-deleted record is removed for good after the pass. The dropped
    /// entries go to `freed`, for the caller to free once the shard lock is released.
    fn clean_key(
        shard: &mut Shard,
        vkey: &VKey,
        horizon: u64,
        doomed: &mut Vec<VKey>,
        tally: &mut Tally,
        freed: &mut Vec<Chain>,
    ) -> u64 {
        let Some(chain) = shard.map.get_mut(vkey) else {
            return 0;
        };
        let (removed, now_empty) = match Self::clean_chain(chain, horizon) {
            // The whole chain goes (a committed insert or change nobody else touched, the
            // common case): the map gives it up, nothing is copied or allocated.
            Cleaned::All => (
                shard.map.remove(vkey).unwrap_or(Chain::Many(Vec::new())),
                true,
            ),
            Cleaned::Part(removed) => {
                let now_empty = chain.is_empty();
                if now_empty {
                    shard.map.remove(vkey);
                }
                (removed, now_empty)
            }
        };
        let n = Self::account(&removed, vkey, now_empty, doomed, tally);
        if !removed.is_empty() {
            freed.push(removed);
        }
        n
    }

    /// What of `chain` no one needs at `horizon`: all of it (left in place for the caller to
    /// take whole), or the entries removed from it (none, some, or all, leaving it empty).
    fn clean_chain(chain: &mut Chain, horizon: u64) -> Cleaned {
        let clean = |r: &Rce| {
            let ts = r.trx.commit_ts();
            ts != ACTIVE && ts != ABORTED && ts <= horizon
        };
        // Everything older than the newest cleanable before-image entry is needed by no one
        // (conflict rules leave no active entry under a committed non-escrow change); of the
        // rest, cleanable escrow deltas and locks go one by one, since an older active delta
        // of another transaction may sit under a committed one.
        let cut = chain
            .iter()
            .rposition(|r| clean(r) && r.before.fixes_state())
            .map_or(0, |i| i + 1);
        if cut == chain.len() {
            return Cleaned::All;
        }
        let mut removed = chain.take_front(cut);
        let mut i = 0;
        while i < chain.len() {
            if chain.get(i).is_some_and(&clean) {
                removed.extend(chain.remove(i));
            } else {
                i += 1;
            }
        }
        Cleaned::Part(Chain::Many(removed))
    }

    /// Counts the entries `removed` from the chain of `vkey` into `tally` and returns how many;
    /// when the key is left without versions (`now_empty`) and its last was a delete, the key
    /// joins `doomed`: its flag-deleted record is removed for good after the pass.
    fn account(
        removed: &Chain,
        vkey: &VKey,
        now_empty: bool,
        doomed: &mut Vec<VKey>,
        tally: &mut Tally,
    ) -> u64 {
        let tree = vkey.tree();
        let mut n = 0;
        for r in removed.iter() {
            tally.add(r, tree);
            n += 1;
        }
        if n > 0 {
            // Fewer than 2^32 entries ever live at once (each is an allocation of tens of
            // bytes), so neither a chain's count nor a slot's overflows.
            tally
                .key_unpins
                .push((vkey.hash, u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let last_was_delete = removed
            .iter()
            .rev()
            .find(|r| r.before.fixes_state())
            .is_some_and(|r| r.oper == Oper::Delete);
        if n > 0 && now_empty && last_was_delete {
            doomed.push(vkey.clone());
        }
        n
    }

    /// Cleanup of a large backlog (a big transaction's changes): each shard's map is walked in
    /// place, every chain cleaned as [`VersionStore::clean_key`] cleans it, instead of looking
    /// up each changed key (a cache miss per key in a map much larger than the CPU's caches;
    /// the walk reads the map in order). The result is the same: every entry committed at or
    /// below `horizon` is committed by a transaction taken off the queue in this pass or an
    /// earlier one, and the walk drops exactly the entries the look-ups would. One shard lock
    /// is held at a time; what the walk drops is freed after it is released. Returns the
    /// number of entries dropped.
    fn clean_by_scan(&self, horizon: u64, doomed: &mut Vec<VKey>) -> u64 {
        let mut dropped = 0;
        for s in 0..SHARDS {
            let mut tally = Tally::default();
            let mut parts: Vec<Chain> = Vec::new();
            let gone: Vec<(VKey, Chain)> = {
                let mut shard = self.shard_at(s);
                shard
                    .map
                    .extract_if(|vkey, chain| match Self::clean_chain(chain, horizon) {
                        Cleaned::All => true,
                        Cleaned::Part(removed) => {
                            let now_empty = chain.is_empty();
                            dropped += Self::account(&removed, vkey, now_empty, doomed, &mut tally);
                            if !removed.is_empty() {
                                parts.push(removed);
                            }
                            now_empty
                        }
                    })
            };
            for (vkey, chain) in &gone {
                dropped += Self::account(chain, vkey, true, doomed, &mut tally);
            }
            self.settle(tally);
            // `gone` and `parts` are freed here, the shard's lock long released.
        }
        dropped
    }
}

/// The state a view sees, from the physical state and the key's chain (oldest first).
pub(crate) fn reconstruct(chain: &[Rce], phys: PhysState, view: &ReadView) -> PhysState {
    // Newest first: undo every invisible entry. A visible before-image entry fixes the state
    // (older entries no longer matter); visible escrow deltas commute with invisible ones, so
    // the walk goes on past them.
    let mut state = phys;
    for r in chain.iter().rev() {
        if view.sees(r) {
            if r.before.fixes_state() {
                break;
            }
            continue;
        }
        state = undo_state(state, &r.before);
    }
    state
}

/// The state before an RCE, given the state after it.
pub(crate) fn undo_state(after: PhysState, before: &Before) -> PhysState {
    match before {
        Before::State(s) => s.clone(),
        Before::Undeleted => match after {
            PhysState::Deleted(d) => PhysState::Present(d),
            // A delete's entry always sits under a flag-deleted node or a newer entry that
            // restores one; anything else is left as it is.
            other => other,
        },
        Before::Unchanged => after,
        Before::Delta {
            offset,
            width,
            delta,
        } => match after {
            PhysState::Present(mut v) => {
                apply_delta(&mut v, *offset, *width, delta.wrapping_neg());
                PhysState::Present(v)
            }
            other => other,
        },
    }
}

/// Adds `delta` to the little-endian integer of `width` bytes at `offset`; out-of-range
/// fields are left alone (the caller validated them when the delta was applied).
pub(crate) fn apply_delta(v: &mut [u8], offset: u32, width: u8, delta: i64) -> bool {
    let start = offset as usize;
    let Some(field) = v.get_mut(start..start + width as usize) else {
        return false;
    };
    match width {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(field);
            let n = i32::from_le_bytes(a).wrapping_add(delta as i32);
            field.copy_from_slice(&n.to_le_bytes());
            true
        }
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(field);
            let n = i64::from_le_bytes(a).wrapping_add(delta);
            field.copy_from_slice(&n.to_le_bytes());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys on both sides of the inline limit keep their tree and bytes, compare equal only to
    /// the same tree and key, and are found in a key map by a borrowed probe.
    #[test]
    fn inline_and_shared_keys_round_trip_and_are_found_by_probe() {
        let state = KeyHashState::new();
        let hash = |tree: ObjId, key: &[u8]| {
            let mut h = state.build_hasher();
            tree.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        let trx = TrxState::for_test(1);
        let mut map = KeyMap::default();
        let keys: Vec<(ObjId, Vec<u8>)> = (0..=80usize)
            .map(|n| {
                let tree = ObjId(7 + (n as u32 % 3));
                (tree, (0..n).map(|i| (i * 31 + n) as u8).collect())
            })
            .collect();
        for (i, (tree, key)) in keys.iter().enumerate() {
            let k = VKey::new(hash(*tree, key), *tree, key);
            assert_eq!(
                matches!(k.bytes, KeyBytes::Inline { .. }),
                4 + key.len() <= VKEY_INLINE,
                "key of {} bytes",
                key.len()
            );
            assert_eq!(k.tree(), *tree);
            assert_eq!(k.key(), &key[..]);
            assert_eq!(k.clone(), k);
            let rce = VersionStore::new_rce(&trx, i as u32, Oper::Insert, Before::Unchanged, 0);
            let (found, _) = map.find(&k);
            map.push_at(found, &k.clone(), rce, || k);
        }
        assert_eq!(map.len(), keys.len());
        for (i, (tree, key)) in keys.iter().enumerate() {
            let probe = Probe {
                hash: hash(*tree, key),
                tree: *tree,
                key,
            };
            let seqs: Vec<u32> = map
                .get(&probe as &dyn KeyView)
                .map(|c| c.iter().map(|r| r.seq).collect())
                .unwrap_or_default();
            assert_eq!(seqs, [i as u32]);
            // Another tree with the same key bytes is another key.
            let other = ObjId(tree.0 + 100);
            let miss = Probe {
                hash: hash(other, key),
                tree: other,
                key,
            };
            assert!(map.get(&miss as &dyn KeyView).is_none());
        }
    }
}
