//! redb: one table of `&[u8]` keys and values.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
    TableDefinition,
};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size, file_size,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// A read transaction and the table opened in it.
type ReadState = (ReadTransaction, ReadOnlyTable<&'static [u8], &'static [u8]>);

/// A redb database file.
pub struct RedbStore {
    db: Database,
    dir: PathBuf,
    path: PathBuf,
}

/// How redb is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: "redb 4.6.0".into(),
        mapping: "one table, &[u8] keys and values".into(),
        durability: "Durability::Immediate (the default: commit fsyncs before it returns)".into(),
        cache: format!("Builder::set_cache_size {} MiB", cfg.cache_bytes >> 20),
        notes: "count: ReadableTableMetadata::len; compaction: Database::compact".into(),
    }
}

/// Creates the database in `dir`.
///
/// # Errors
/// redb's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<RedbStore> {
    let path = dir.join("bench.redb");
    let db = Database::builder()
        .set_cache_size(usize::try_from(cfg.cache_bytes)?)
        .create(&path)?;
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(RedbStore {
        db,
        dir: dir.to_path_buf(),
        path,
    })
}

impl Store for RedbStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        Ok(Box::new(RedbHandle {
            db: &self.db,
            read: None,
        }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        Ok(Sizes {
            data: file_size(&self.path)?,
            total: dir_size(&self.dir)?,
        })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        self.db.compact()?;
        Ok(Some(self.sizes()?))
    }
}

struct RedbHandle<'a> {
    db: &'a Database,
    read: Option<ReadState>,
}

impl RedbHandle<'_> {
    fn table(&self) -> Res<&ReadOnlyTable<&'static [u8], &'static [u8]>> {
        self.read
            .as_ref()
            .map(|(_, t)| t)
            .ok_or_else(|| "read outside begin_read".into())
    }
}

impl Handle for RedbHandle<'_> {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for _ in 0..n {
                next(&mut key, &mut value);
                table.insert(&key[..], &value[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for _ in 0..n {
                next(&mut key);
                table.remove(&key[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn count(&mut self) -> Res<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(TABLE)?.len()?)
    }

    fn begin_read(&mut self) -> Res<()> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        self.read = Some((txn, table));
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        self.read = None;
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.table()?.get(key)? {
            Some(v) => {
                sink(v.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let mut read = 0;
        for item in self.table()?.range(from..)?.take(steps) {
            let (_, v) = item?;
            sink(v.value());
            read += 1;
        }
        Ok(read)
    }
}
