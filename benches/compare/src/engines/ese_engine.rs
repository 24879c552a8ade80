//! This engine through its public API: one table, a fixed Binary primary key column (every
//! key has 24 bytes: `JET_bitColumnFixed`, as an ESE schema declares a fixed-size binary key)
//! and a Binary value column, one session per thread.

use std::path::{Path, PathBuf};

use ese::{
    AttachDatabaseGrbit, BeginTransactionGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit,
    CreateDatabaseGrbit, EndSessionGrbit, ErrorKind, IndexCreate, IndexGrbit, Instance, Move, Prep,
    RetrieveColumn, RollbackGrbit, Seek, Session, Table, TableCreate, TermGrbit,
};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size, file_size,
};

const TABLE: &str = "kv";
/// Longest normalized key: a 24-byte Binary segment is 1 prefix byte and 3 groups of 9.
const KEY_MOST: u16 = 64;

/// The engine's instance and its one database.
pub struct EseStore {
    instance: Instance,
    dir: PathBuf,
    db_path: PathBuf,
}

/// How the instance is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: "ese (this engine)".into(),
        mapping: format!(
            "one table, primary index on a fixed Binary key column ({KEY_LEN} bytes, \
             JET_bitColumnFixed; key_most {KEY_MOST}), a Binary value column (max {VALUE_LEN} bytes); JetPrepareUpdate/JetSetColumn/JetUpdate, \
             JetSeek + JetRetrieveColumns (one reused buffer), JetMove; one session per thread"
        ),
        durability: "CommitGrbit::empty() (durable: the commit returns after the log is \
                     fdatasync'ed; group commit); circular logging"
            .into(),
        cache: format!(
            "cache_size_max_bytes {} MiB, 8 KiB pages; version store {} MiB",
            cfg.cache_bytes >> 20,
            version_store_bytes(cfg) >> 20
        ),
        notes: "count: JetIndexRecordCount from the first entry (ESE walks the index; no stored \
                count); compaction: JetDetachDatabase, JetCompact into a new file that replaces \
                the original, JetAttachDatabase"
            .into(),
    }
}

/// The version store must hold the before-images of the removal phase's one transaction
/// (half the elements, about 200 bytes each).
fn version_store_bytes(cfg: &Config) -> u64 {
    (cfg.elements as u64 * 512).max(256 << 20)
}

/// Creates the instance, the database and the table in `dir`.
///
/// # Errors
/// The engine's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<EseStore> {
    let instance = Instance::builder("bench")
        .system_path(dir)
        .log_path(dir.join("logs"))
        .circular_log(true)
        .cache_size_max_bytes(cfg.cache_bytes)
        .version_store_bytes(version_store_bytes(cfg))
        .max_sessions(1024)
        .create()?;
    instance.init()?;
    let db_path = dir.join("bench.edb");
    let session = instance.begin_session()?;
    let db = session.create_database(&db_path, CreateDatabaseGrbit::empty())?;
    session.create_table(
        db,
        &TableCreate {
            name: TABLE.into(),
            columns: vec![
                ColumnDef::new("k", ColumnType::Binary)
                    .max_size(KEY_LEN as u32)
                    .grbit(ColumnGrbit::FIXED),
                ColumnDef::new("v", ColumnType::Binary).max_size(VALUE_LEN as u32),
            ],
            indexes: vec![IndexCreate {
                name: "primary".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE | IndexGrbit::DISALLOW_NULL,
                key_most: KEY_MOST,
            }],
        },
    )?;
    session.end(EndSessionGrbit::empty())?;
    Ok(EseStore {
        instance,
        dir: dir.to_path_buf(),
        db_path,
    })
}

impl Drop for EseStore {
    fn drop(&mut self) {
        if let Err(e) = self.instance.term(TermGrbit::empty()) {
            eprintln!("ese: term failed: {e}");
        }
    }
}

impl Store for EseStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        let session = self.instance.begin_session()?;
        let db = session.open_database(&self.db_path)?;
        let table = session.open_table(db, TABLE)?;
        let k = table.column_id("k")?;
        let v = table.column_id("v")?;
        Ok(Box::new(EseHandle {
            session,
            table,
            k,
            value: [RetrieveColumn::new(v)],
        }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        Ok(Sizes {
            data: file_size(&self.db_path)?,
            total: dir_size(&self.dir)?,
        })
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        // JetDetachDatabase, JetCompact into a new file, the copy put in the original's place
        // (as `esentutl /d` does), JetAttachDatabase: the later phases run on the copy.
        let session = self.instance.begin_session()?;
        session.detach_database(&self.db_path)?;
        let copy = self.dir.join("bench-compacted.edb");
        session.compact_database(&self.db_path, &copy)?;
        let dw = |p: &Path| {
            let mut name = p.as_os_str().to_owned();
            name.push(".dw");
            PathBuf::from(name)
        };
        std::fs::rename(&copy, &self.db_path)?;
        if dw(&copy).exists() {
            std::fs::rename(dw(&copy), dw(&self.db_path))?;
        }
        session.attach_database(&self.db_path, AttachDatabaseGrbit::empty())?;
        session.end(EndSessionGrbit::empty())?;
        self.sizes().map(Some)
    }
}

struct EseHandle {
    session: Session,
    table: Table,
    k: u32,
    /// The value column, read with JetRetrieveColumns into a buffer kept between reads.
    value: [RetrieveColumn; 1],
}

impl Drop for EseHandle {
    fn drop(&mut self) {
        if let Err(e) = self.session.end(EndSessionGrbit::empty()) {
            eprintln!("ese: end session failed: {e}");
        }
    }
}

impl EseHandle {
    /// Runs `f` in a transaction committed durably; rolls back if `f` fails.
    fn in_transaction(&mut self, f: impl FnOnce(&mut Self) -> Res<()>) -> Res<()> {
        self.session.begin_transaction()?;
        match f(self) {
            Ok(()) => {
                self.session.commit_transaction(CommitGrbit::empty())?;
                Ok(())
            }
            Err(e) => {
                self.session.rollback(RollbackGrbit::ALL)?;
                Err(e)
            }
        }
    }
}

impl Handle for EseHandle {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        self.in_transaction(|h| {
            for _ in 0..n {
                next(&mut key, &mut value);
                h.table.prepare_update(Prep::Insert)?;
                h.table.set_column(h.k, Some(&key))?;
                h.table.set_column(h.value[0].column, Some(&value))?;
                h.table.update()?;
            }
            Ok(())
        })
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        self.in_transaction(|h| {
            for _ in 0..n {
                next(&mut key);
                match h.table.seek(&[Some(&key)], Seek::Eq) {
                    Ok(()) => h.table.delete()?,
                    Err(e) if e.kind() == ErrorKind::RecordNotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
    }

    fn count(&mut self) -> Res<u64> {
        self.begin_read()?;
        // JetMove(JET_MoveFirst) + JetIndexRecordCount: ESE counts by walking the index.
        let n = match self.table.move_to(Move::First) {
            Ok(()) => self.table.index_record_count(0)?,
            Err(e) if e.kind() == ErrorKind::NoCurrentRecord => 0,
            Err(e) => return Err(e.into()),
        };
        self.end_read()?;
        Ok(n)
    }

    fn begin_read(&mut self) -> Res<()> {
        self.session
            .begin_transaction2(BeginTransactionGrbit::READ_ONLY)?;
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        self.session.commit_transaction(CommitGrbit::empty())?;
        Ok(())
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.table.seek(&[Some(key)], Seek::Eq) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::RecordNotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.table.retrieve_columns(&mut self.value)?;
        sink(&self.value[0].data);
        Ok(true)
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        match self.table.seek(&[Some(from)], Seek::Ge) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::RecordNotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        let mut read = 0;
        while read < steps {
            self.table.retrieve_columns(&mut self.value)?;
            sink(&self.value[0].data);
            read += 1;
            if read == steps {
                break;
            }
            match self.table.move_to(Move::Next) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NoCurrentRecord => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(read)
    }
}
