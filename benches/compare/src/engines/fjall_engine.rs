//! fjall: one keyspace, transactions as atomic write batches.

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size,
};

/// A fjall database with one keyspace.
pub struct FjallStore {
    db: Database,
    ks: Keyspace,
    dir: PathBuf,
}

/// How fjall is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: "fjall 3.1.13".into(),
        mapping: "one keyspace; a transaction is an atomic WriteBatch".into(),
        durability: "WriteBatch::durability(Some(PersistMode::SyncData)): the journal is \
                     fdatasync'ed before commit returns"
            .into(),
        cache: format!("DatabaseBuilder::cache_size {} MiB", cfg.cache_bytes >> 20),
        notes: "count: Keyspace::len (a scan); compaction: rotate the memtable, then \
                Keyspace::major_compact; sizes: the whole directory"
            .into(),
    }
}

/// Creates the database in `dir`.
///
/// # Errors
/// fjall's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<FjallStore> {
    let db = Database::builder(dir).cache_size(cfg.cache_bytes).open()?;
    let ks = db.keyspace("kv", KeyspaceCreateOptions::default)?;
    Ok(FjallStore {
        db,
        ks,
        dir: dir.to_path_buf(),
    })
}

impl Store for FjallStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        Ok(Box::new(FjallHandle {
            db: &self.db,
            ks: &self.ks,
        }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        self.db.persist(PersistMode::SyncData)?;
        let total = dir_size(&self.dir)?;
        Ok(Sizes { data: total, total })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        self.ks.rotate_memtable_and_wait()?;
        self.ks.major_compact()?;
        Ok(Some(self.sizes()?))
    }
}

struct FjallHandle<'a> {
    db: &'a Database,
    ks: &'a Keyspace,
}

impl Handle for FjallHandle<'_> {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for _ in 0..n {
            next(&mut key, &mut value);
            batch.insert(self.ks, &key[..], &value[..]);
        }
        batch.commit()?;
        Ok(())
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for _ in 0..n {
            next(&mut key);
            batch.remove(self.ks, &key[..]);
        }
        batch.commit()?;
        Ok(())
    }

    fn count(&mut self) -> Res<u64> {
        Ok(self.ks.len()? as u64)
    }

    fn begin_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.ks.get(key)? {
            Some(v) => {
                sink(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let mut read = 0;
        for guard in self.ks.range(from..).take(steps) {
            let (_, v) = guard.into_inner()?;
            sink(&v);
            read += 1;
        }
        Ok(read)
    }
}
