//! The map of one version store shard: each key's chain of RCEs, found by the key's carried
//! hash ([`VKey`]).
//!
//! The keys and chains are held densely, in insertion order, in one vector; the hash table
//! holds only each key's index into it. A new key is therefore an append at the vector's end
//! (memory written in order, which the CPU streams) plus an index written into the table,
//! which is a twelfth of the size of a table holding the entries themselves and so stays in
//! the CPU caches far longer: in a bulk load, writing each new entry into a random bucket of
//! a table of entries missed the cache on most inserts. Growth copies the vector once per
//! doubling (no rehash) and rehashes only the indexes. Removal moves the last entry into the
//! hole and re-points its index.

use ese_core::TrxId;
use hashbrown::HashTable;

use crate::version_store::{Chain, KeyView, VKey};

/// Keys and their chains (see the module notes).
#[derive(Debug, Default)]
pub(crate) struct KeyMap {
    /// The index in `entries` of every key, placed by the key's hash.
    table: HashTable<usize>,
    entries: Vec<(VKey, Chain)>,
}

/// Whether the stored key `k` is the key `probe` names.
fn same(k: &VKey, probe: &dyn KeyView) -> bool {
    k.key_hash() == probe.key_hash() && k.tree() == probe.tree() && k.key() == probe.key()
}

impl KeyMap {
    pub(crate) fn new() -> KeyMap {
        KeyMap::default()
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The index of `probe`'s entry.
    fn index_of(&self, probe: &dyn KeyView) -> Option<usize> {
        let entries = &self.entries;
        self.table
            .find(probe.key_hash(), |&i| {
                entries.get(i).is_some_and(|(k, _)| same(k, probe))
            })
            .copied()
    }

    /// The chain of `probe`'s key.
    pub(crate) fn get(&self, probe: &dyn KeyView) -> Option<&Chain> {
        let i = self.index_of(probe)?;
        self.entries.get(i).map(|(_, c)| c)
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

    /// Adds `rce`-holding `chain` to `probe`'s key: pushed onto the chain it has, or made its
    /// chain, with the key `vkey` makes (called only for a new key).
    pub(crate) fn push_or_insert(
        &mut self,
        probe: &dyn KeyView,
        rce: crate::version_store::Rce,
        vkey: impl FnOnce() -> VKey,
    ) {
        if let Some(i) = self.index_of(probe) {
            if let Some((_, chain)) = self.entries.get_mut(i) {
                chain.push(rce);
            }
            return;
        }
        let i = self.entries.len();
        self.entries.push((vkey(), Chain::One(rce)));
        let entries = &self.entries;
        self.table
            .insert_unique(probe.key_hash(), i, |&j| hash_at(entries, j));
    }

    /// Removes `probe`'s key and returns its chain.
    pub(crate) fn remove(&mut self, probe: &dyn KeyView) -> Option<Chain> {
        let entries = &self.entries;
        let Ok(slot) = self.table.find_entry(probe.key_hash(), |&i| {
            entries.get(i).is_some_and(|(k, _)| same(k, probe))
        }) else {
            return None;
        };
        let (i, _) = slot.remove();
        let last = self.entries.len().checked_sub(1)?;
        if i != last {
            // The last entry moves into the hole: its index follows it.
            let moved_hash = self.entries.get(last).map(|(k, _)| k.key_hash())?;
            if let Some(at) = self.table.find_mut(moved_hash, |&j| j == last) {
                *at = i;
            }
        }
        Some(self.entries.swap_remove(i).1)
    }

    /// Whether some key has the hash `hash`.
    pub(crate) fn has_hash(&self, hash: u64) -> bool {
        let entries = &self.entries;
        self.table
            .find(hash, |&i| hash_at(entries, i) == hash)
            .is_some()
    }

    /// Appends to `out` (a copy of) every key whose hash is `hash`: one, but for a collision
    /// of 64-bit hashes.
    pub(crate) fn keys_with_hash(&self, hash: u64, out: &mut Vec<VKey>) {
        for &i in self.table.iter_hash(hash) {
            if let Some((k, _)) = self.entries.get(i)
                && k.key_hash() == hash
            {
                out.push(k.clone());
            }
        }
    }

    /// The key of hash `hash` whose chain holds the entry `seq` of transaction `trx`.
    pub(crate) fn key_of_rce(&self, hash: u64, trx: TrxId, seq: u32) -> Option<VKey> {
        let entries = &self.entries;
        let i = *self.table.find(hash, |&i| {
            entries.get(i).is_some_and(|(k, chain)| {
                k.key_hash() == hash && chain.iter().any(|r| r.trx.id == trx && r.seq == seq)
            })
        })?;
        self.entries.get(i).map(|(k, _)| k.clone())
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
        let gone: Vec<(VKey, Chain)> = self.entries.extract_if(.., |(k, c)| pred(k, c)).collect();
        if !gone.is_empty() {
            self.table.clear();
            if self.entries.capacity() > 4 * self.entries.len().max(16) {
                self.entries.shrink_to_fit();
            }
            self.table
                .shrink_to(self.entries.len(), |&j| hash_at(&self.entries, j));
            let entries = &self.entries;
            for (i, (k, _)) in entries.iter().enumerate() {
                self.table
                    .insert_unique(k.key_hash(), i, |&j| hash_at(entries, j));
            }
        }
        gone
    }
}

/// The hash of the key at `j` (the table's hasher, for its growth: every index it holds is
/// below `entries.len()`).
fn hash_at(entries: &[(VKey, Chain)], j: usize) -> u64 {
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

    /// Every key stays found by its own chain through appends, pushes onto existing chains,
    /// removals from the middle and the end (the last entry moving into the hole) and a pass
    /// that extracts a share of the keys.
    #[test]
    fn keys_stay_found_through_pushes_removals_and_extraction() {
        let state = KeyHashState::new();
        let trx = TrxState::for_test(9);
        let mut map = KeyMap::new();
        for n in 0..5_000u32 {
            let k = key(&state, n);
            map.push_or_insert(&k.clone(), rce(&trx, n), || k);
        }
        // A second entry for every tenth key: pushed onto its chain, no new key.
        for n in (0..5_000u32).step_by(10) {
            let k = key(&state, n);
            map.push_or_insert(&k, rce(&trx, n + 100_000), || k.clone());
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
}
