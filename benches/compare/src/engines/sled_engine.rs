//! sled: the default tree, batches applied atomically and flushed.

use std::path::{Path, PathBuf};

use sled::{Batch, Db};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size,
};

/// A sled database.
pub struct SledStore {
    db: Db,
    dir: PathBuf,
}

/// How sled is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: "sled 0.34.7".into(),
        mapping: "the default tree; a transaction is a Batch applied with apply_batch".into(),
        durability: "Db::flush after each batch (fsync before the commit returns)".into(),
        cache: format!("Config::cache_capacity {} MiB", cfg.cache_bytes >> 20),
        notes: "count: Tree::len (a scan); compaction: none; sizes: the whole directory".into(),
    }
}

/// Creates the database in `dir`.
///
/// # Errors
/// sled's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<SledStore> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cfg.cache_bytes)
        .open()?;
    Ok(SledStore {
        db,
        dir: dir.to_path_buf(),
    })
}

impl Store for SledStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        Ok(Box::new(SledHandle { db: &self.db }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        self.db.flush()?;
        let total = dir_size(&self.dir)?;
        Ok(Sizes { data: total, total })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        Ok(None)
    }
}

struct SledHandle<'a> {
    db: &'a Db,
}

impl Handle for SledHandle<'_> {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        let mut batch = Batch::default();
        for _ in 0..n {
            next(&mut key, &mut value);
            batch.insert(&key[..], &value[..]);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut batch = Batch::default();
        for _ in 0..n {
            next(&mut key);
            batch.remove(&key[..]);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn count(&mut self) -> Res<u64> {
        Ok(self.db.len() as u64)
    }

    fn begin_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.db.get(key)? {
            Some(v) => {
                sink(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let mut read = 0;
        for item in self.db.range(from..).take(steps) {
            let (_, v) = item?;
            sink(&v);
            read += 1;
        }
        Ok(read)
    }
}
