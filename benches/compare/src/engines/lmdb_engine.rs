//! LMDB through heed: the unnamed database with byte keys and values.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, CompactionOption, Database, Env, EnvOpenOptions, RoTxn, WithoutTls};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size, file_size,
};

/// Size of the memory map: address space only, the file grows as pages are written.
const MAP_SIZE: usize = 64 << 30;

type Db = Database<'static, Bytes, Bytes>;

/// An LMDB environment.
pub struct LmdbStore {
    env: Env<WithoutTls>,
    db: Db,
    dir: PathBuf,
}

/// How LMDB is set up.
pub fn setup(_cfg: &Config) -> Setup {
    Setup {
        engine: "LMDB 0.9 (mdb.master) via heed 0.23.1".into(),
        mapping: "the unnamed database, Bytes keys and values".into(),
        durability: "default environment flags (no MDB_NOSYNC/MDB_NOMETASYNC): commit \
                     fdatasyncs before it returns"
            .into(),
        cache: "no cache setting: the OS page cache through mmap (map size 64 GiB)".into(),
        notes: "count: mdb_stat entries; compaction: mdb_env_copy2 with MDB_CP_COMPACT into a \
                new file (its size is reported)"
            .into(),
    }
}

/// Creates the environment in `dir`.
///
/// # Errors
/// heed's error.
pub fn open(dir: &Path, _cfg: &Config) -> Res<LmdbStore> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE).max_readers(1024);
    // SAFETY: the directory is new and private to this run, so no other process maps the
    // environment, and it is opened once.
    #[expect(
        unsafe_code,
        reason = "heed's open is unsafe (mmap of a file another process could change)"
    )]
    let env = unsafe { options.open(dir)? };
    let wtxn = env.write_txn()?;
    let db: Db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .create_database::<Bytes, Bytes>(wtxn, None)
                .map(CommitOrAbort::<_, ()>::Commit)
        })?
        .commit()
        .ok_or("LMDB: creating the database aborted")?;
    Ok(LmdbStore {
        env,
        db,
        dir: dir.to_path_buf(),
    })
}

impl Store for LmdbStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        Ok(Box::new(LmdbHandle {
            env: &self.env,
            db: self.db,
            read: None,
        }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        Ok(Sizes {
            data: file_size(&self.dir.join("data.mdb"))?,
            total: dir_size(&self.dir)?,
        })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        let copy = self
            .dir
            .parent()
            .ok_or("LMDB: the directory has no parent")?
            .join("lmdb-compacted.mdb");
        drop(self.env.copy_to_path(&copy, CompactionOption::Enabled)?);
        let size = file_size(&copy)?;
        std::fs::remove_file(&copy)?;
        Ok(Some(Sizes {
            data: size,
            total: size,
        }))
    }
}

struct LmdbHandle<'a> {
    env: &'a Env<WithoutTls>,
    db: Db,
    read: Option<RoTxn<'a, WithoutTls>>,
}

impl LmdbHandle<'_> {
    fn txn(&self) -> Res<&RoTxn<'_, WithoutTls>> {
        self.read
            .as_ref()
            .ok_or_else(|| "read outside begin_read".into())
    }
}

impl Handle for LmdbHandle<'_> {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        let mut txn = self.env.write_txn()?;
        for _ in 0..n {
            next(&mut key, &mut value);
            self.db.put(&mut txn, &key, &value)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut txn = self.env.write_txn()?;
        for _ in 0..n {
            next(&mut key);
            self.db.delete(&mut txn, &key)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn count(&mut self) -> Res<u64> {
        let txn = self.env.read_txn()?;
        Ok(self.db.len(&txn)?)
    }

    fn begin_read(&mut self) -> Res<()> {
        self.read = Some(self.env.read_txn()?);
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        self.read = None;
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.db.get(self.txn()?, key)? {
            Some(v) => {
                sink(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(from), Bound::Unbounded);
        let mut read = 0;
        for item in self.db.range(self.txn()?, &bounds)?.take(steps) {
            let (_, v) = item?;
            sink(v);
            read += 1;
        }
        Ok(read)
    }
}
