//! An in-memory page store for the transaction layer's tests: a map of physical key states and
//! a log of every write (with its annotation) and every record, with a durable mark, so a
//! crash can be simulated by replaying a prefix of the log.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;

use ese_core::{Lgpos, ObjId, Result};
use ese_txn::{PhysState, TxnStore};
use parking_lot::Mutex;

/// One logged entry: a page change with its annotation, or a record of the transaction layer.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Write {
        tree: ObjId,
        key: Vec<u8>,
        state: PhysState,
        annotation: Vec<u8>,
    },
    Record(Vec<u8>),
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) data: BTreeMap<(ObjId, Vec<u8>), PhysState>,
    pub(crate) log: Vec<Entry>,
    pub(crate) durable: usize,
}

#[derive(Debug, Default)]
pub(crate) struct MemStore {
    pub(crate) inner: Mutex<Inner>,
}

fn lgpos(n: usize) -> Lgpos {
    Lgpos::from_u64((1u64 << 32) + n as u64)
}

impl MemStore {
    /// A store rebuilt from the first `n` log entries (redo of a crash image).
    pub(crate) fn replay(log: &[Entry]) -> MemStore {
        let mut inner = Inner::default();
        for e in log {
            if let Entry::Write {
                tree, key, state, ..
            } = e
            {
                match state {
                    PhysState::Absent => {
                        inner.data.remove(&(*tree, key.clone()));
                    }
                    s => {
                        inner.data.insert((*tree, key.clone()), s.clone());
                    }
                }
            }
        }
        inner.log = log.to_vec();
        inner.durable = log.len();
        MemStore {
            inner: Mutex::new(inner),
        }
    }

    /// Live records (flag-deleted ones excluded), as a reader outside a transaction sees them
    /// once no transaction is open.
    pub(crate) fn live(&self) -> BTreeMap<(ObjId, Vec<u8>), Vec<u8>> {
        self.inner
            .lock()
            .data
            .iter()
            .filter_map(|(k, s)| match s {
                PhysState::Present(v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }
}

impl TxnStore for MemStore {
    fn read(&self, tree: ObjId, key: &[u8]) -> Result<PhysState> {
        Ok(self
            .inner
            .lock()
            .data
            .get(&(tree, key.to_vec()))
            .cloned()
            .unwrap_or(PhysState::Absent))
    }

    fn write(
        &self,
        tree: ObjId,
        key: &[u8],
        state: &PhysState,
        annotation: &[u8],
    ) -> Result<Lgpos> {
        let mut g = self.inner.lock();
        match state {
            PhysState::Absent => {
                g.data.remove(&(tree, key.to_vec()));
            }
            s => {
                g.data.insert((tree, key.to_vec()), s.clone());
            }
        }
        g.log.push(Entry::Write {
            tree,
            key: key.to_vec(),
            state: state.clone(),
            annotation: annotation.to_vec(),
        });
        Ok(lgpos(g.log.len()))
    }

    fn log(&self, record: &[u8]) -> Result<Lgpos> {
        let mut g = self.inner.lock();
        g.log.push(Entry::Record(record.to_vec()));
        Ok(lgpos(g.log.len()))
    }

    fn flush(&self, up_to: Lgpos) -> Result<()> {
        let mut g = self.inner.lock();
        let n = (up_to.as_u64() - (1u64 << 32)) as usize;
        g.durable = g.durable.max(n.min(g.log.len()));
        Ok(())
    }
}
