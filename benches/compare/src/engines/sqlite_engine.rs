//! SQLite (bundled) through rusqlite: a `WITHOUT ROWID` table, cached statements, one
//! connection per thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::engines::Config;
use crate::store::{
    Handle, KEY_LEN, Key, KeySource, PairSource, Res, Setup, Sizes, Store, VALUE_LEN, Value,
    dir_size, file_size,
};

/// A SQLite database file in WAL mode.
pub struct SqliteStore {
    path: PathBuf,
    dir: PathBuf,
    cache_kib: u64,
}

/// How SQLite is set up.
pub fn setup(cfg: &Config) -> Setup {
    Setup {
        engine: format!("SQLite {} (rusqlite 0.43.0, bundled)", rusqlite::version()),
        mapping: "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID; \
                  prepared statements from the statement cache (prepare_cached); \
                  BEGIN IMMEDIATE for writes, BEGIN for read snapshots; one connection per \
                  thread"
            .into(),
        durability: "journal_mode=WAL, synchronous=FULL (the WAL is fsynced at every commit)"
            .into(),
        cache: format!(
            "PRAGMA cache_size -{} (KiB, {} MiB per connection)",
            cfg.cache_bytes >> 10,
            cfg.cache_bytes >> 20
        ),
        notes: "count: SELECT COUNT(*); compaction: VACUUM; sizes after \
                wal_checkpoint(TRUNCATE)"
            .into(),
    }
}

/// Creates the database in `dir`.
///
/// # Errors
/// SQLite's error.
pub fn open(dir: &Path, cfg: &Config) -> Res<SqliteStore> {
    let store = SqliteStore {
        path: dir.join("bench.sqlite"),
        dir: dir.to_path_buf(),
        cache_kib: cfg.cache_bytes >> 10,
    };
    let conn = store.connect()?;
    conn.execute_batch("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;")?;
    Ok(store)
}

impl SqliteStore {
    fn connect(&self) -> Res<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(60))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("SQLite: journal_mode is {mode}, not WAL").into());
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous=FULL; PRAGMA cache_size=-{};",
            self.cache_kib
        ))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    fn checkpoint(&self) -> Res<()> {
        let conn = self.connect()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn measure(&self) -> Res<Sizes> {
        let wal = self.dir.join("bench.sqlite-wal");
        let wal = if wal.exists() { file_size(&wal)? } else { 0 };
        Ok(Sizes {
            data: file_size(&self.path)? + wal,
            total: dir_size(&self.dir)?,
        })
    }
}

impl Store for SqliteStore {
    fn handle(&self) -> Res<Box<dyn Handle + '_>> {
        Ok(Box::new(SqliteHandle {
            conn: self.connect()?,
        }))
    }

    fn sizes(&mut self) -> Res<Sizes> {
        self.checkpoint()?;
        self.measure()
    }

    fn compact(&mut self) -> Res<Option<Sizes>> {
        let conn = self.connect()?;
        conn.execute_batch("VACUUM;")?;
        drop(conn);
        self.checkpoint()?;
        Ok(Some(self.measure()?))
    }
}

struct SqliteHandle {
    conn: Connection,
}

impl SqliteHandle {
    fn exec(&self, sql: &str) -> Res<()> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Runs `f` between BEGIN IMMEDIATE and COMMIT; rolls back if `f` fails.
    fn in_transaction(&mut self, f: impl FnOnce(&Connection) -> Res<()>) -> Res<()> {
        self.exec("BEGIN IMMEDIATE")?;
        match f(&self.conn) {
            Ok(()) => self.exec("COMMIT"),
            Err(e) => {
                self.exec("ROLLBACK")?;
                Err(e)
            }
        }
    }
}

impl Handle for SqliteHandle {
    fn write(&mut self, n: usize, next: PairSource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        let mut value: Value = [0; VALUE_LEN];
        self.in_transaction(|conn| {
            let mut stmt = conn.prepare_cached("INSERT INTO kv (k, v) VALUES (?1, ?2)")?;
            for _ in 0..n {
                next(&mut key, &mut value);
                stmt.execute(params![&key[..], &value[..]])?;
            }
            Ok(())
        })
    }

    fn remove(&mut self, n: usize, next: KeySource<'_>) -> Res<()> {
        let mut key: Key = [0; KEY_LEN];
        self.in_transaction(|conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM kv WHERE k = ?1")?;
            for _ in 0..n {
                next(&mut key);
                stmt.execute(params![&key[..]])?;
            }
            Ok(())
        })
    }

    fn count(&mut self) -> Res<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM kv")?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n)?)
    }

    fn begin_read(&mut self) -> Res<()> {
        self.exec("BEGIN")?;
        // A deferred transaction takes its snapshot at the first read.
        self.conn
            .prepare_cached("SELECT 1 FROM kv LIMIT 1")?
            .query_row([], |_| Ok(()))
            .optional()?;
        Ok(())
    }

    fn end_read(&mut self) -> Res<()> {
        self.exec("COMMIT")
    }

    fn get(&mut self, key: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
        let found = stmt
            .query_row(params![key], |row| {
                sink(row.get_ref(0)?.as_blob()?);
                Ok(())
            })
            .optional()?;
        Ok(found.is_some())
    }

    fn range(&mut self, from: &[u8], steps: usize, sink: &mut dyn FnMut(&[u8])) -> Res<usize> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2")?;
        let mut rows = stmt.query(params![from, i64::try_from(steps)?])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            sink(row.get_ref(0)?.as_blob()?);
            read += 1;
        }
        Ok(read)
    }
}
