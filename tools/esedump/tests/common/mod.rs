//! Fixtures shared by the esedump integration tests: databases, log streams and checkpoints
//! made with the engine crates' own APIs, and a runner for the built binary.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the fixtures"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::SystemTime;

use ese_btree::{Database, DbOptions, DbState, MemWal, TreeKind, Wal};
use ese_core::fs::{FileSystem, OsFs};
use ese_core::{Lgpos, TrxId};
use ese_log::{Log, LogConfig};
use ese_txn::TxnRecord;

/// Serialises forks against open engine files. A child forked by one test thread holds a
/// copy of every file descriptor another thread has open until it execs; if that thread
/// closes a database meanwhile, the copy keeps the database's `flock` alive and esedump, which
/// takes a shared lock, is refused with `FileAccessDenied`. Fixtures hold the write side
/// while engine files are open; spawning holds the read side until the child has exec'd
/// (`Command::spawn` returns only then).
static FORK_GUARD: RwLock<()> = RwLock::new(());

/// Held while engine files are open in this process (see [`FORK_GUARD`]).
pub(crate) fn files_open_guard() -> RwLockWriteGuard<'static, ()> {
    FORK_GUARD.write().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_esedump"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run esedump")
}

/// Runs the esedump binary with `args`.
pub(crate) fn esedump(args: &[&str]) -> Output {
    let child = {
        let _g = FORK_GUARD.read().unwrap_or_else(PoisonError::into_inner);
        spawn(args)
    };
    child.wait_with_output().expect("wait for esedump")
}

/// Runs esedump while the caller already holds [`files_open_guard`].
pub(crate) fn esedump_holding_guard(args: &[&str]) -> Output {
    spawn(args).wait_with_output().expect("wait for esedump")
}

/// Stdout as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs esedump with `args` plus `--json`, requires success and parses stdout.
pub(crate) fn json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = esedump(&a);
    assert!(o.status.success(), "esedump {a:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("valid JSON")
}

/// Parses the JSON stdout of a run that may have failed.
pub(crate) fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("valid JSON")
}

pub(crate) const PAGE_SIZE: u32 = 4096;

/// Objids of the trees [`make_db`] creates, in creation order: a table, an index and a
/// long-value tree.
pub(crate) struct DbFixture {
    pub(crate) path: PathBuf,
    pub(crate) table: u32,
    pub(crate) index: u32,
    pub(crate) lv: u32,
}

#[expect(
    clippy::big_endian_bytes,
    reason = "keys are big-endian so that byte order is numeric order (docs/format-database.md)"
)]
fn fill(db: &Database) -> (u32, u32, u32) {
    let t = db.create_tree(TreeKind::Table).unwrap();
    let i = db.create_tree(TreeKind::Index).unwrap();
    let lv = db.create_tree(TreeKind::LongValue).unwrap();
    for n in 0u32..400 {
        let key = format!("key{n:05}");
        t.insert(key.as_bytes(), &vec![b'v'; 40 + (n % 7) as usize])
            .unwrap();
        i.insert(&n.to_be_bytes(), key.as_bytes()).unwrap();
    }
    lv.insert(&1u64.to_be_bytes(), &[0u8; 12]).unwrap();
    (t.objid().0, i.objid().0, lv.objid().0)
}

/// A database with three trees (a table of 400 records over several pages, an index, a
/// long-value tree), flushed and shut down cleanly (`dirty` false) or left in
/// `DirtyShutdown` with changes that never reached the file, as a crash leaves it.
pub(crate) fn make_db(dir: &Path, dirty: bool) -> DbFixture {
    let _open = files_open_guard();
    let path = dir.join(if dirty { "dirty.edb" } else { "clean.edb" });
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let wal = Arc::new(MemWal::new());
    let opts = DbOptions::new().page_size(PAGE_SIZE).extension_pages(16);
    let db = Database::create(&fs, &path, opts, wal).unwrap();
    let (table, index, lv) = fill(&db);
    if dirty {
        db.flush().unwrap();
        db.write_header(|h| h.state = DbState::DirtyShutdown)
            .unwrap();
        let t = db.open_tree(ese_core::ObjId(table)).unwrap();
        for n in 0u32..50 {
            t.replace(format!("key{n:05}").as_bytes(), b"changed")
                .unwrap();
        }
        // Dropped without a flush: the crash.
    } else {
        db.write_header(|h| h.state = DbState::CleanShutdown)
            .unwrap();
    }
    drop(db);
    DbFixture {
        path,
        table,
        index,
        lv,
    }
}

/// The page store's records go to the real log under the page family byte (1), as
/// `ese-txn`'s `FamilyWal` does.
struct PageWal(Arc<Log>);

impl Wal for PageWal {
    fn append(&self, record: &[u8]) -> ese_core::Result<Lgpos> {
        let mut p = Vec::with_capacity(record.len() + 1);
        p.push(1);
        p.extend_from_slice(record);
        self.0.append(&p)
    }
    fn flush(&self, up_to: Lgpos) -> ese_core::Result<()> {
        self.0.flush(up_to)
    }
    fn durable_lgpos(&self) -> Lgpos {
        self.0.durable_lgpos()
    }
}

/// What [`make_log`] wrote.
pub(crate) struct LogFixture {
    pub(crate) dir: PathBuf,
    pub(crate) generations: u32,
    pub(crate) commits: u64,
    pub(crate) upper: u64,
}

/// A log stream in `dir/logs` (64 KiB generations) holding a database's page records
/// (family 1), transaction commits (family 2, trx 1000..) and an upper-layer record (family
/// 17), over several generations, with a checkpoint. The database goes to `dir/logged.edb`.
pub(crate) fn make_log(dir: &Path) -> LogFixture {
    let _open = files_open_guard();
    let logs = dir.join("logs");
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let cfg = LogConfig::new(&logs).file_size_kib(64).page_size(PAGE_SIZE);
    let log = Arc::new(Log::open(fs.clone(), cfg).unwrap());
    let first = log.append(&[17, b'a', b't', b't']).unwrap();
    let wal = Arc::new(PageWal(log.clone()));
    let opts = DbOptions::new().page_size(PAGE_SIZE).extension_pages(16);
    let db = Database::create(&fs, &dir.join("logged.edb"), opts, wal).unwrap();
    let t = db.create_tree(TreeKind::Table).unwrap();
    let mut commits = 0u64;
    for n in 0u32..600 {
        t.insert(format!("k{n:05}").as_bytes(), &[7u8; 200])
            .unwrap();
        if n % 10 == 9 {
            let mut p = vec![2u8];
            p.extend(
                TxnRecord::Commit0 {
                    trx: TrxId(1000 + u64::from(n)),
                }
                .encode(),
            );
            log.append_and_flush(&p).unwrap();
            commits += 1;
        }
    }
    db.flush().unwrap();
    log.flush_all().unwrap();
    log.write_checkpoint(first, b"logged.edb").unwrap();
    let generations = log.current_generation();
    drop(db);
    drop(log);
    LogFixture {
        dir: logs,
        generations,
        commits,
        upper: 1,
    }
}

/// The bytes and modification time of every file under `dir`, to prove nothing changed.
pub(crate) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.push((p.clone(), std::fs::read(&p).unwrap(), m));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The first leaf page of tree `objid` in a database file with [`PAGE_SIZE`] pages.
pub(crate) fn leaf_of(path: &Path, objid: u32) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    let ps = PAGE_SIZE as usize;
    let pages = bytes.len() / ps - 2;
    for pgno in 3..=pages {
        let p = &bytes[(pgno + 1) * ps..(pgno + 2) * ps];
        let obj = u32::from_le_bytes(p[24..28].try_into().unwrap());
        let flags = u32::from_le_bytes(p[28..32].try_into().unwrap());
        if obj == objid && flags & 0x2 != 0 && flags & 0x8 == 0 {
            return pgno as u32;
        }
    }
    panic!("no leaf page of tree {objid}");
}

/// Flips one byte in the node area of page `pgno`.
pub(crate) fn flip_byte(path: &Path, pgno: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    let off = (pgno as usize + 1) * PAGE_SIZE as usize + 60;
    bytes[off] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Starts the esedump binary with `args`, stdout and stderr piped (under [`FORK_GUARD`]), for
/// tests that read or close its output themselves.
pub(crate) fn spawn_esedump(args: &[&str]) -> Child {
    let _g = FORK_GUARD.read().unwrap_or_else(PoisonError::into_inner);
    spawn(args)
}
