//! RocksDB (opt-in, cargo feature `rocksdb`): the default column family, transactions as
//! atomic write batches written with `sync`.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteBatch, WriteOptions};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size,
};

/// A RocksDB database.
pub struct RocksStore {
    db: DB,
    dir: PathBuf,
}

/// How RocksDB is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: "RocksDB 11.8.1 (rocksdb 0.25.0)".into(),
        mapping: "the default column family; a transaction is an atomic WriteBatch; LZ4 \
                  compression"
            .into(),
        durability: "WriteOptions::set_sync(true): the WAL is fsynced before the write returns \
                     (concurrent writers share one sync: group commit)"
            .into(),
        cache: format!("LRU block cache {} MiB", cfg.cache_bytes >> 20),
        notes: "count: an iterator scan; compaction: compact_range over everything; sizes: \
                the whole directory"
            .into(),
    }
}

/// Creates the database in `dir`.
///
/// # Errors
/// RocksDB's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<RocksStore> {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(&Cache::new_lru_cache(usize::try_from(cfg.cache_bytes)?));
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&block);
    let db = DB::open(&opts, dir)?;
    Ok(RocksStore {
        db,
        dir: dir.to_path_buf(),
    })
}

impl Store for RocksStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Box::new(RocksHandle { db: &self.db, sync }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        self.db.flush_wal(true)?;
        let total = dir_size(&self.dir)?;
        Ok(Sizes { data: total, total })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        self.db.flush()?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        Ok(Some(self.sizes()?))
    }
}

struct RocksHandle<'a> {
    db: &'a DB,
    sync: WriteOptions,
}

impl Handle for RocksHandle<'_> {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        let mut batch = WriteBatch::default();
        for _ in 0..n {
            next(&mut key, &mut value);
            batch.put(key, value);
        }
        self.db.write_opt(batch, &self.sync)?;
        Ok(())
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut batch = WriteBatch::default();
        for _ in 0..n {
            next(&mut key);
            batch.delete(key);
        }
        self.db.write_opt(batch, &self.sync)?;
        Ok(())
    }

    fn count(&mut self) -> Res<u64> {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    fn begin_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.db.get_pinned(key)? {
            Some(v) => {
                sink(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(from);
        let mut read = 0;
        while read < steps {
            let Some(v) = it.value() else { break };
            sink(v);
            read += 1;
            it.next();
        }
        it.status()?;
        Ok(read)
    }
}
