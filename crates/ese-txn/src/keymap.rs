//! The map of one version store shard: each key's chain of RCEs, found by the key's carried
//! hash ([`VKey`]).
//!
//! The keys and chains are held densely, in insertion order, in chunks of [`CHUNK`] entries;
//! the hash table holds only each key's slot: its index into the entries and the low 32 bits
//! of its hash. A new key is therefore an append at the last chunk's end (memory written in
//! order, which the CPU streams) plus 8 bytes written into the table, which is a twelfth of
//! the size of a table holding the entries themselves and so stays in the CPU caches far
//! longer: in a bulk load, writing each new entry into a random bucket of a table of entries
//! missed the cache on most inserts.
//!
//! - **The table is one array of slots** ([`SlotTable`]): open addressing with linear probing,
//!   at most three quarters full, an empty slot all ones. A look-up of an absent key reads the
//!   slots from the key's home to the first empty one (one cache line, mostly), and the insert
//!   that follows writes that empty slot: the line the look-up just read. (A table with a
//!   separate array of control bytes, as hashbrown's, reads the control bytes and then writes
//!   the slot, in another array: two lines missed per new key, and a 500,000-key removal
//!   spent a tenth of its time on the second.)
//! - **The table places a slot by the 32 hash bits it holds**, so growing the table (every
//!   slot moved at each doubling) reads the table only, never the entries, and a look-up
//!   reads an entry only when 32 bits of its hash match the probe's.
//! - **Removal shifts back** the slots after the one removed that may move closer to their
//!   home (no tombstones: a table that churns does not fill up with them).
//! - **The entries grow without copying.** Past the first chunk (which grows as a vector
//!   does, so a small shard stays small), each chunk is allocated at its full size once: a
//!   bulk load's million entries are written once, where one vector doubling its way up
//!   copied them about once more and faulted in twice the memory.
//! - **One probe per change.** [`KeyMap::find`] returns where a key is, or that it is absent;
//!   under the same hold of the shard lock, [`KeyMap::push_at`] adds the change's RCE there
//!   without a second probe.
//! - **Removal** moves the last entry into the hole and re-points its slot.
//! - A shard holds at most `u32::MAX` keys ([`KeyMap::is_full`]): an entry takes at least 64
//!   bytes, so that is 256 GiB of versions in one shard; the version store refuses a new key
//!   there with `VersionStoreOutOfMemory` rather than let an index wrap.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicUsize};

use ese_core::TrxId;
use ese_core::hint::prefetch;

use crate::version_store::{Chain, KeyView, VKey};

/// A slot of the table: an entry's index in the low 32 bits, the low 32 bits of its key's
/// hash in the high 32.
#[derive(Clone, Copy, Debug)]
struct Slot(u64);

impl Slot {
    /// The slot of entry `i` (below `u32::MAX`: see [`KeyMap::is_full`]) whose key's hash is
    /// `hash`.
    fn new(i: usize, hash: u64) -> Slot {
        Slot((i as u64 & u64::from(u32::MAX)) | (hash << 32))
    }

    fn index(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    /// The 32 hash bits the slot holds.
    fn bits(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// The 32 bits of `hash` a slot keeps, which place it in the table.
fn bits_of(hash: u64) -> u32 {
    hash as u32
}

/// An unused slot of a [`SlotTable`]: no slot of an entry is all ones, as an entry's index
/// is below `u32::MAX` ([`KeyMap::is_full`]).
const EMPTY: u64 = u64::MAX;

/// Fewest slots of a table that holds any.
const MIN_SLOTS: usize = 16;

/// The slots of a [`KeyMap`] (see the module notes): `slots.len()` is zero or a power of two,
/// and at most three quarters of the slots are used, so every probe ends at an empty one.
#[derive(Debug, Default)]
struct SlotTable {
    slots: Box<[u64]>,
    /// Slots used.
    len: usize,
    /// 64 less the base-2 logarithm of the number of slots: a home is the top bits of a
    /// multiplicative hash of the slot's bits.
    shift: u32,
    /// Where the slots are, for threads without the map's lock; rewritten whenever the
    /// slots move.
    hint: Arc<SlotHint>,
}

/// The home of a slot of `bits` in a table of `2^(64 - shift)` slots: Fibonacci hashing,
/// whose top bits depend on every bit of `bits`.
fn home_of(bits: u32, shift: u32) -> usize {
    (u64::from(bits).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// Where a [`KeyMap`]'s slot table is, for a thread that does not hold the map's lock to
/// prefetch a key's home ([`SlotHint::prefetch`]): the slot array's address and the table's
/// shift, which the table rewrites each time it moves its slots (under the map's lock). A
/// reader may see a stale or half-updated pair; it only prefetches the wrong line then.
#[derive(Debug, Default)]
pub(crate) struct SlotHint {
    base: AtomicUsize,
    shift: AtomicU32,
}

impl SlotHint {
    /// Records that the slots are now at `slots`, placed with `shift`.
    fn publish(&self, slots: &[u64], shift: u32) {
        self.base.store(slots.as_ptr() as usize, Relaxed);
        self.shift.store(shift, Relaxed);
    }

    /// Asks the CPU for the cache line where a look-up of a key of hash `hash` starts
    /// (nothing before the table has slots).
    pub(crate) fn prefetch(&self, hash: u64) {
        let base = self.base.load(Relaxed);
        if base != 0 {
            let home = home_of(bits_of(hash), self.shift.load(Relaxed));
            prefetch(base.wrapping_add(home.wrapping_mul(8)));
        }
    }
}

impl SlotTable {
    /// Where the probe for a slot of `bits` starts.
    fn home(&self, bits: u32) -> usize {
        home_of(bits, self.shift)
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The used slots of the probe sequence that starts at the home of `bits`, with their
    /// positions, up to the first empty slot (every probe meets one: the table is never
    /// full; the bound only keeps a broken invariant from looping).
    fn probe(&self, bits: u32) -> impl Iterator<Item = (usize, Slot)> + '_ {
        let mask = self.mask();
        let mut i = self.home(bits);
        (0..self.slots.len()).map_while(move |_| {
            let at = i;
            i = (i + 1) & mask;
            self.slots
                .get(at)
                .filter(|&&s| s != EMPTY)
                .map(|&s| (at, Slot(s)))
        })
    }

    /// The position and value of the first used slot of `bits` on its probe sequence that
    /// `pred` accepts.
    fn find(&self, bits: u32, mut pred: impl FnMut(Slot) -> bool) -> Option<(usize, Slot)> {
        self.probe(bits).find(|&(_, s)| s.bits() == bits && pred(s))
    }

    /// Every used slot of `bits`, in probe order.
    fn matching(&self, bits: u32) -> impl Iterator<Item = Slot> + '_ {
        self.probe(bits)
            .map(|(_, s)| s)
            .filter(move |s| s.bits() == bits)
    }

    /// Adds `slot` (whose entry has no slot yet), growing the table first when it would be
    /// more than three quarters full.
    fn insert(&mut self, slot: Slot) {
        debug_assert_ne!(slot.0, EMPTY, "an entry index below u32::MAX");
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        self.place(slot);
    }

    /// Writes `slot` into the first empty slot of its probe sequence (there is one: the
    /// table is at most three quarters full).
    fn place(&mut self, slot: Slot) {
        let mask = self.mask();
        let mut i = self.home(slot.bits());
        for _ in 0..self.slots.len() {
            let Some(at) = self.slots.get_mut(i) else {
                return;
            };
            if *at == EMPTY {
                *at = slot.0;
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Replaces the used slot at `pos` (found by [`SlotTable::find`]) with `slot` of the same
    /// bits.
    fn set(&mut self, pos: usize, slot: Slot) {
        if let Some(at) = self.slots.get_mut(pos) {
            debug_assert_eq!(Slot(*at).bits(), slot.bits(), "a slot keeps its home");
            *at = slot.0;
        }
    }

    /// Empties the used slot at `pos` (found by [`SlotTable::find`]), then moves back each
    /// slot after it, up to the next empty one, that may stand closer to its home: every
    /// probe still meets its slot before an empty one.
    fn remove(&mut self, pos: usize) {
        let mask = self.mask();
        let mut hole = pos;
        let mut j = pos;
        for _ in 0..self.slots.len() {
            j = (j + 1) & mask;
            let Some(&s) = self.slots.get(j) else {
                break;
            };
            if s == EMPTY {
                break;
            }
            // The slot at `j` may fill the hole if its home is not between the hole
            // (exclusive) and `j`, cyclically: then the hole lies on its probe sequence.
            let home = self.home(Slot(s).bits());
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = EMPTY;
            self.len -= 1;
        }
    }

    /// Moves every slot into a table of `n` slots (a power of two, more than `len`).
    fn resize(&mut self, n: usize) {
        let old = self.empty_slots(n);
        for s in old.iter().copied().filter(|&s| s != EMPTY) {
            self.place(Slot(s));
        }
    }

    /// Empties the table, sized for `n` slots.
    fn clear_for(&mut self, n: usize) {
        self.empty_slots((n * 4 / 3 + 1).next_power_of_two().max(MIN_SLOTS));
    }

    /// Puts `n` empty slots (a power of two) in place of the table's, and returns those.
    fn empty_slots(&mut self, n: usize) -> Box<[u64]> {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; n].into_boxed_slice());
        self.shift = 64 - n.trailing_zeros();
        self.len = 0;
        self.hint.publish(&self.slots, self.shift);
        old
    }
}

/// Keys and their chains (see the module notes).
#[derive(Debug, Default)]
pub(crate) struct KeyMap {
    /// The slot of every key (see [`SlotTable`]).
    table: SlotTable,
    entries: Entries,
}

/// Entries per chunk of [`Entries`]: 512 entries of about 100 bytes, so a chunk stays below
/// the allocator's threshold for a mapping of its own.
const CHUNK: usize = 512;

/// A key and its chain.
type Entry = (VKey, Chain);

/// The entries of a [`KeyMap`], by index, in chunks of [`CHUNK`] (see the module notes).
/// Every chunk but the last is full, so entry `i` is entry `i % CHUNK` of chunk `i / CHUNK`;
/// the last chunk may be empty (kept so that a shard that shrinks and grows across a chunk's
/// edge does not free and allocate a chunk each time).
#[derive(Debug, Default)]
struct Entries {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl Entries {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Appends `e` as entry `len()`.
    fn push(&mut self, e: Entry) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(e),
            _ => {
                // The first chunk grows as a vector does; the others are made whole.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(e);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        // The next entry's place, while the CPU has time to fetch it: an entry covers about
        // two cache lines, each written first by the next push, whose shard lock release
        // would otherwise wait for those writes' misses.
        if let Some(last) = self.chunks.last()
            && last.len() < last.capacity()
        {
            let next = last.as_ptr().wrapping_add(last.len()) as usize;
            prefetch(next);
            prefetch(next + 64);
        }
    }

    /// Removes entry `i` and returns it; the last entry takes its index.
    fn swap_remove(&mut self, i: usize) -> Option<Entry> {
        if i >= self.len {
            return None;
        }
        if self.chunks.last().is_some_and(Vec::is_empty) {
            self.chunks.pop();
        }
        let tail = self.chunks.last_mut()?.pop()?;
        self.len -= 1;
        if i == self.len {
            return Some(tail);
        }
        // `i` is below the old last index, so entry `i` is still there.
        self.get_mut(i).map(|at| std::mem::replace(at, tail))
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }

    /// Removes and returns the entries `pred` says yes to; the others keep their order but
    /// not, when some go, their indexes.
    fn extract_if(&mut self, mut pred: impl FnMut(&VKey, &mut Chain) -> bool) -> Vec<Entry> {
        let mut gone = Vec::new();
        for chunk in &mut self.chunks {
            gone.extend(chunk.extract_if(.., |(k, c)| pred(k, c)));
        }
        if !gone.is_empty() {
            // Packed again, so that every chunk but the last is full.
            let mut kept = Entries::default();
            for (k, c) in std::mem::take(&mut self.chunks).into_iter().flatten() {
                kept.push((k, c));
            }
            *self = kept;
        }
        gone
    }
}

/// Where [`KeyMap::find`] found a key, or that it did not: valid for [`KeyMap::push_at`]
/// while the map is not changed in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found(Option<usize>);

impl Found {
    /// The key has no chain.
    pub(crate) const ABSENT: Found = Found(None);
}

/// Whether the stored key `k` is the key `probe` names.
fn same(k: &VKey, probe: &dyn KeyView) -> bool {
    k.key_hash() == probe.key_hash() && k.tree() == probe.tree() && k.key() == probe.key()
}

impl KeyMap {
    /// An empty map whose table tells `hint` where its slots are (see [`SlotHint`]).
    pub(crate) fn with_hint(hint: Arc<SlotHint>) -> KeyMap {
        KeyMap {
            table: SlotTable {
                hint,
                ..SlotTable::default()
            },
            entries: Entries::default(),
        }
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map can take no new key (see the module notes).
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= u32::MAX as usize
    }

    /// The index of `probe`'s entry.
    fn index_of(&self, probe: &dyn KeyView) -> Option<usize> {
        let entries = &self.entries;
        let hash = probe.key_hash();
        self.table
            .find(bits_of(hash), |s| {
                entries.get(s.index()).is_some_and(|(k, _)| same(k, probe))
            })
            .map(|(_, s)| s.index())
    }

    /// Where `probe`'s key is, with its chain if it has one.
    pub(crate) fn find(&self, probe: &dyn KeyView) -> (Found, Option<&Chain>) {
        let i = self.index_of(probe);
        (
            Found(i),
            i.and_then(|i| self.entries.get(i)).map(|(_, c)| c),
        )
    }

    /// The chain of `probe`'s key.
    pub(crate) fn get(&self, probe: &dyn KeyView) -> Option<&Chain> {
        self.find(probe).1
    }

    /// The chain of `probe`'s key, to change.
    pub(crate) fn get_mut(&mut self, probe: &dyn KeyView) -> Option<&mut Chain> {
        let i = self.index_of(probe)?;
        self.entries.get_mut(i).map(|(_, c)| c)
    }

    /// Whether `probe`'s key has a chain.
    pub(crate) fn contains_key(&self, probe: &dyn KeyView) -> bool {
        self.index_of(probe).is_some()
    }

    /// Adds `rce` to `probe`'s key: pushed onto the chain it has, or made its chain, with the
    /// key `vkey` makes (called only for a new key). `found` ([`KeyMap::find`] of `probe`,
    /// with no change to the map since) says which: no second probe. The caller checks
    /// [`KeyMap::is_full`] before a new key.
    pub(crate) fn push_at(
        &mut self,
        found: Found,
        probe: &dyn KeyView,
        rce: crate::version_store::Rce,
        vkey: impl FnOnce() -> VKey,
    ) {
        if let Found(Some(i)) = found {
            if let Some((k, chain)) = self.entries.get_mut(i) {
                debug_assert!(same(k, probe), "a stale position");
                chain.push(rce);
            }
            return;
        }
        debug_assert!(self.index_of(probe).is_none(), "a stale absence");
        let i = self.entries.len();
        self.entries.push((vkey(), Chain::One(rce)));
        let hash = probe.key_hash();
        self.table.insert(Slot::new(i, hash));
    }

    /// Removes `probe`'s key and returns its chain.
    pub(crate) fn remove(&mut self, probe: &dyn KeyView) -> Option<Chain> {
        let entries = &self.entries;
        let hash = probe.key_hash();
        let (pos, removed) = self.table.find(bits_of(hash), |s| {
            entries.get(s.index()).is_some_and(|(k, _)| same(k, probe))
        })?;
        self.table.remove(pos);
        let i = removed.index();
        let last = self.entries.len().checked_sub(1)?;
        if i != last {
            // The last entry moves into the hole: its slot follows it.
            let moved_hash = self.entries.get(last).map(|(k, _)| k.key_hash())?;
            if let Some((at, _)) = self.table.find(bits_of(moved_hash), |s| s.index() == last) {
                self.table.set(at, Slot::new(i, moved_hash));
            }
        }
        self.entries.swap_remove(i).map(|(_, c)| c)
    }

    /// Whether some key has the hash `hash`.
    pub(crate) fn has_hash(&self, hash: u64) -> bool {
        let entries = &self.entries;
        self.table
            .find(bits_of(hash), |s| hash_at(entries, s.index()) == hash)
            .is_some()
    }

    /// Appends to `out` (a copy of) every key whose hash is `hash`: one, but for a collision
    /// of 64-bit hashes.
    pub(crate) fn keys_with_hash(&self, hash: u64, out: &mut Vec<VKey>) {
        for s in self.table.matching(bits_of(hash)) {
            if let Some((k, _)) = self.entries.get(s.index())
                && k.key_hash() == hash
            {
                out.push(k.clone());
            }
        }
    }

    /// The key of hash `hash` whose chain holds the entry `seq` of transaction `trx`.
    pub(crate) fn key_of_rce(&self, hash: u64, trx: TrxId, seq: u32) -> Option<VKey> {
        let entries = &self.entries;
        let (_, s) = self.table.find(bits_of(hash), |s| {
            entries.get(s.index()).is_some_and(|(k, chain)| {
                k.key_hash() == hash && chain.iter().any(|r| r.trx.id == trx && r.seq == seq)
            })
        })?;
        self.entries.get(s.index()).map(|(k, _)| k.clone())
    }

    /// The keys, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &VKey> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Removes and returns every entry `pred` says yes to (it may change the chains it keeps).
    /// The table is rebuilt from the entries kept: meant for passes that visit every entry.
    pub(crate) fn extract_if(
        &mut self,
        mut pred: impl FnMut(&VKey, &mut Chain) -> bool,
    ) -> Vec<(VKey, Chain)> {
        let gone = self.entries.extract_if(&mut pred);
        if !gone.is_empty() {
            self.table.clear_for(self.entries.len());
            for (i, (k, _)) in self.entries.iter().enumerate() {
                self.table.insert(Slot::new(i, k.key_hash()));
            }
        }
        gone
    }
}

/// The hash of the key at `j`, if there is one.
fn hash_at(entries: &Entries, j: usize) -> u64 {
    entries.get(j).map_or(0, |(k, _)| k.key_hash())
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash, Hasher};
    use std::sync::Arc;

    use ese_core::ObjId;

    use super::*;
    use crate::version_store::{Before, KeyHashState, Oper, Rce, TrxState, VersionStore};

    fn key(state: &KeyHashState, n: u32) -> VKey {
        let bytes = n.to_le_bytes();
        let mut h = state.build_hasher();
        ObjId(3).hash(&mut h);
        bytes.hash(&mut h);
        VKey::new(h.finish(), ObjId(3), &bytes)
    }

    fn rce(trx: &Arc<TrxState>, seq: u32) -> Rce {
        VersionStore::new_rce(trx, seq, Oper::Insert, Before::Unchanged, 0)
    }

    fn push(map: &mut KeyMap, probe: &VKey, rce: Rce, vkey: VKey) {
        let (found, _) = map.find(probe);
        map.push_at(found, probe, rce, || vkey);
    }

    /// Every key stays found by its own chain through appends, pushes onto existing chains,
    /// removals from the middle and the end (the last entry moving into the hole) and a pass
    /// that extracts a share of the keys.
    #[test]
    fn keys_stay_found_through_pushes_removals_and_extraction() {
        let state = KeyHashState::new();
        let trx = TrxState::for_test(9);
        let mut map = KeyMap::default();
        for n in 0..5_000u32 {
            let k = key(&state, n);
            push(&mut map, &k.clone(), rce(&trx, n), k);
        }
        // A second entry for every tenth key: pushed onto its chain, no new key.
        for n in (0..5_000u32).step_by(10) {
            let k = key(&state, n);
            push(&mut map, &k, rce(&trx, n + 100_000), k.clone());
        }
        assert_eq!(map.len(), 5_000);
        // Remove every third key, which moves entries from the end into the holes.
        for n in (0..5_000u32).step_by(3) {
            let chain = map.remove(&key(&state, n)).map(|c| c.len());
            assert_eq!(chain, Some(if n % 10 == 0 { 2 } else { 1 }), "key {n}");
            assert!(map.remove(&key(&state, n)).is_none());
        }
        let seqs = |map: &KeyMap, n: u32| -> Option<Vec<u32>> {
            map.get(&key(&state, n))
                .map(|c| c.iter().map(|r| r.seq).collect())
        };
        for n in 0..5_000u32 {
            let want = (n % 3 != 0).then(|| {
                let mut v = vec![n];
                if n % 10 == 0 {
                    v.push(n + 100_000);
                }
                v
            });
            assert_eq!(seqs(&map, n), want, "key {n}");
        }
        // Extract the keys divisible by 7 (each chain once; the table is rebuilt).
        let mut visits = 0;
        let gone = map.extract_if(|k, _| {
            visits += 1;
            let mut b = [0u8; 4];
            b.copy_from_slice(k.key());
            u32::from_le_bytes(b) % 7 == 0
        });
        assert_eq!(visits, 5_000 - 5_000usize.div_ceil(3));
        let expect_gone = (0..5_000u32).filter(|n| n % 3 != 0 && n % 7 == 0).count();
        assert_eq!(gone.len(), expect_gone);
        assert_eq!(map.len(), 5_000 - 5_000usize.div_ceil(3) - expect_gone);
        for n in 0..5_000u32 {
            assert_eq!(
                map.contains_key(&key(&state, n)),
                n % 3 != 0 && n % 7 != 0,
                "key {n}"
            );
        }
        assert_eq!(map.keys().count(), map.len());
    }

    /// The slot table against a model (a map from entry index to slot) through random
    /// inserts, removals and re-pointings, with hash bits drawn from a small set so that
    /// probe runs collide, grow long and wrap around the table's end: every slot stays found
    /// from its home, no absent one is, and the count and load stay right.
    #[test]
    fn slot_table_matches_a_model_through_inserts_and_removals() {
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..40 {
            let spread = [3u32, 40, 1_000, u32::MAX][round % 4];
            let mut t = SlotTable::default();
            let mut model = std::collections::BTreeMap::<usize, u64>::new();
            let mut next = 0usize;
            for _ in 0..3_000 {
                let op = rng.u32(0..10);
                if op < 6 || model.is_empty() {
                    let hash = u64::from(rng.u32(0..=spread)) | (u64::from(rng.u32(..)) << 32);
                    t.insert(Slot::new(next, hash));
                    model.insert(next, hash);
                    next += 1;
                } else {
                    let pick = rng.usize(0..model.len());
                    let (&i, &hash) = model.iter().nth(pick).expect("picked within the length");
                    let (pos, s) = t
                        .find(bits_of(hash), |s| s.index() == i)
                        .expect("a slot in the model is found");
                    assert_eq!(s.index(), i);
                    if op < 8 {
                        t.remove(pos);
                        model.remove(&i);
                        assert!(t.find(bits_of(hash), |s| s.index() == i).is_none());
                    } else {
                        // Re-pointed to a fresh index (as a removal of the entries does).
                        t.set(pos, Slot::new(next, hash));
                        model.remove(&i);
                        model.insert(next, hash);
                        next += 1;
                    }
                }
                assert_eq!(t.len, model.len());
                assert!(
                    t.len * 4 <= t.slots.len() * 3,
                    "at most three quarters full"
                );
                // The hint follows the slots wherever growth moved them.
                assert_eq!(t.hint.base.load(Relaxed), t.slots.as_ptr() as usize);
                assert_eq!(t.hint.shift.load(Relaxed), t.shift);
            }
            for (&i, &hash) in &model {
                assert!(
                    t.find(bits_of(hash), |s| s.index() == i).is_some(),
                    "round {round}: index {i}"
                );
                assert!(t.matching(bits_of(hash)).any(|s| s.index() == i));
            }
            let used = t.slots.iter().filter(|&&s| s != EMPTY).count();
            assert_eq!(used, model.len());
            t.clear_for(model.len());
            assert_eq!(t.len, 0);
            assert!(t.slots.iter().all(|&s| s == EMPTY));
            for (&i, &hash) in &model {
                t.insert(Slot::new(i, hash));
            }
            for (&i, &hash) in &model {
                assert!(t.find(bits_of(hash), |s| s.index() == i).is_some());
            }
        }
    }

    /// Keys whose hashes share their low 32 bits (all a slot keeps) land on one probe
    /// sequence and are still told apart, through growth, removal and the rebuild; keys with
    /// one full 64-bit hash are all listed by `keys_with_hash`.
    #[test]
    fn keys_sharing_their_slot_bits_are_told_apart() {
        let trx = TrxState::for_test(4);
        let mut map = KeyMap::default();
        // The low 32 bits are the same for all; the high bits differ, but for keys 190..200,
        // which share one full hash with key 189.
        let hash_of = |n: u32| u64::from(n.min(189)) << 32 | 0x5eed;
        let key = |n: u32| VKey::new(hash_of(n), ObjId(3), &n.to_le_bytes());
        for n in 0..200u32 {
            push(&mut map, &key(n), rce(&trx, n), key(n));
        }
        for n in 0..200u32 {
            let seqs: Vec<u32> = map
                .get(&key(n))
                .map(|c| c.iter().map(|r| r.seq).collect())
                .unwrap_or_default();
            assert_eq!(seqs, [n], "key {n}");
        }
        let mut out = Vec::new();
        map.keys_with_hash(hash_of(189), &mut out);
        assert_eq!(out.len(), 11);
        assert!(map.has_hash(hash_of(7)));
        assert!(!map.has_hash(u64::from(500u32) << 32 | 0x5eed));
        assert_eq!(map.key_of_rce(hash_of(195), TrxId(4), 195), Some(key(195)));
        assert_eq!(map.key_of_rce(hash_of(195), TrxId(4), 194), Some(key(194)));
        assert_eq!(map.key_of_rce(hash_of(7), TrxId(4), 8), None);
        for n in (0..200u32).step_by(2) {
            assert!(map.remove(&key(n)).is_some(), "key {n}");
        }
        let gone = map.extract_if(|k, _| k.key() == 7u32.to_le_bytes());
        assert_eq!(gone.len(), 1);
        for n in 0..200u32 {
            assert_eq!(map.contains_key(&key(n)), n % 2 == 1 && n != 7, "key {n}");
        }
    }

    /// The entries' chunks stay packed (every chunk but the last full, at most one empty
    /// chunk kept) through growth past several chunks, removals that empty the last chunk,
    /// and an extraction; entry `i` is always the one the index says.
    #[test]
    fn entries_stay_packed_in_chunks() {
        let state = KeyHashState::new();
        let trx = TrxState::for_test(9);
        let entry = |n: u32| (key(&state, n), Chain::One(rce(&trx, n)));
        let packed = |e: &Entries| {
            let full = e.chunks.iter().rev().skip(1).all(|c| c.len() == CHUNK);
            let empty = e.chunks.iter().filter(|c| c.is_empty()).count();
            full && empty <= 1 && e.chunks.iter().map(Vec::len).sum::<usize>() == e.len()
        };
        let seq_at = |e: &Entries, i: usize| e.get(i).map(|(_, c)| c.iter().next().map(|r| r.seq));
        let mut e = Entries::default();
        let n = 3 * CHUNK as u32 + 7;
        for i in 0..n {
            e.push(entry(i));
            assert!(packed(&e));
        }
        assert_eq!(e.chunks.len(), 4);
        // Remove from the end past a chunk's edge, and from the middle.
        for _ in 0..10 {
            let last = e.len() - 1;
            assert!(e.swap_remove(last).is_some());
            assert!(packed(&e));
        }
        let moved = seq_at(&e, e.len() - 1);
        let removed = e
            .swap_remove(5)
            .map(|(_, c)| c.iter().next().map(|r| r.seq));
        assert_eq!(removed, Some(Some(5)));
        assert_eq!(seq_at(&e, 5), moved);
        assert!(e.swap_remove(e.len()).is_none());
        assert!(packed(&e));
        // Every other entry goes: the rest are packed again, in their order.
        let before: Vec<u32> = e
            .iter()
            .filter_map(|(_, c)| c.iter().next().map(|r| r.seq))
            .collect();
        let gone = e.extract_if(|_, c| c.iter().next().is_some_and(|r| r.seq % 2 == 0));
        let kept: Vec<u32> = e
            .iter()
            .filter_map(|(_, c)| c.iter().next().map(|r| r.seq))
            .collect();
        assert_eq!(gone.len() + kept.len(), before.len());
        assert_eq!(
            kept,
            before
                .iter()
                .copied()
                .filter(|s| s % 2 == 1)
                .collect::<Vec<_>>()
        );
        assert!(packed(&e));
        for (i, s) in kept.iter().enumerate() {
            assert_eq!(seq_at(&e, i), Some(Some(*s)));
        }
        while e.len() > 0 {
            assert!(e.swap_remove(0).is_some());
            assert!(packed(&e));
        }
        e.push(entry(1));
        assert_eq!(seq_at(&e, 0), Some(Some(1)));
    }
}
