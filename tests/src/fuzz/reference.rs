//! The reference files the file targets and the corrupt-file sweep start from, and the
//! readers that open, read and check them.
//!
//! The reference is built once per process on [`SimFs`]: a database with two tables of
//! different column layouts and a few hundred KiB of rows (so its trees have several levels),
//! written through several log generations with a checkpoint in the middle and an open
//! transaction at the end, then the power fails ([`Reference::crashed`]: recovery has pages
//! to redo and a transaction to undo). Recovering that image and terminating cleanly gives
//! [`Reference::clean`], whose database is what the database targets start from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit,
    ErrorKind, IndexCreate, IndexGrbit, Instance, Move, Prep, Session, TableCreate, TermGrbit,
};
use ese_core::Lgpos;
use ese_core::fs::{CrashModel, FileSystem, SimFs};

use super::{LOG_DIR, PAGE_SIZE, instance, read_file};

/// The reference database's path.
pub const REF_DB: &str = "/data/ref.edb";
/// The current log generation's path.
pub const CURRENT_LOG: &str = "/log/edb.log";
/// The checkpoint's path.
pub const CHECKPOINT: &str = "/log/edb.chk";
/// Generation size of the reference log, in KiB.
pub const REF_LOG_KIB: u32 = 64;

/// Every table's rows in key order, each row's columns in definition order (`None`: null).
pub type Tables = BTreeMap<String, Vec<Vec<Option<Vec<u8>>>>>;
/// Every tree of a database by objid, with its nodes (key, data, node flags) in key order.
pub type TreeDump = BTreeMap<u32, Vec<(Vec<u8>, Vec<u8>, u8)>>;

/// The reference files (see the module docs).
#[derive(Debug)]
pub struct Reference {
    /// The disk after the power failed: the database is dirty, the log holds committed
    /// transactions after the checkpoint and one open transaction.
    pub crashed: SimFs,
    /// The disk after recovery of `crashed` and a clean term.
    pub clean: SimFs,
    /// The bytes of the clean database file.
    pub db_file: Vec<u8>,
    /// The database file as it was on disk at the checkpoint in the middle of the workload:
    /// older versions of its pages.
    pub db_file_old: Vec<u8>,
    /// What the clean database holds, read through the API; recovering `crashed` gives it.
    pub tables: Tables,
    /// What the clean database holds, tree by tree.
    pub trees: TreeDump,
    /// The log files of `crashed` (name in the log directory, bytes), generations first.
    pub log_files: Vec<(String, Vec<u8>)>,
    /// Every record payload of the log of `crashed`, in log order.
    pub log_payloads: Vec<Vec<u8>>,
}

fn people() -> TableCreate {
    TableCreate {
        name: "people".into(),
        columns: vec![
            ColumnDef::new("name", ColumnType::Text).max_size(64),
            ColumnDef::new("age", ColumnType::Long),
            ColumnDef::new("score", ColumnType::IEEEDouble),
            ColumnDef::new("flags", ColumnType::UnsignedByte).default_value(&[7]),
            ColumnDef::new("note", ColumnType::Binary).max_size(255),
            ColumnDef::new("bio", ColumnType::LongText).grbit(ColumnGrbit::TAGGED),
        ],
        indexes: vec![IndexCreate {
            name: "by_name".into(),
            key: "+name\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

fn items() -> TableCreate {
    TableCreate {
        name: "items".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::LongLong),
            ColumnDef::new("data", ColumnType::Binary),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "-id\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

/// The reference tables' definitions.
pub fn table_defs() -> [TableCreate; 2] {
    [people(), items()]
}

fn insert_person(s: &Session, db: ese::DbId, i: u32) -> ese::Result<()> {
    let mut t = s.open_table(db, "people")?;
    let c = |n: &str| t.column_id(n);
    let (name, age, score, note, bio) = (c("name")?, c("age")?, c("score")?, c("note")?, c("bio")?);
    t.prepare_update(Prep::Insert)?;
    t.set_column(name, Some(format!("person-{i:04}").as_bytes()))?;
    t.set_column(age, Some(&(i.cast_signed() % 97).to_le_bytes()))?;
    t.set_column(score, Some(&(f64::from(i) / 7.0).to_le_bytes()))?;
    if !i.is_multiple_of(3) {
        t.set_column(note, Some(&vec![i as u8; (i as usize * 13) % 200 + 1]))?;
    }
    if i.is_multiple_of(5) {
        t.set_column(
            bio,
            Some(
                format!("bio of {i}: ")
                    .repeat(1 + i as usize % 9)
                    .as_bytes(),
            ),
        )?;
    }
    t.update().map(|_| ())
}

fn insert_item(s: &Session, db: ese::DbId, i: i64) -> ese::Result<()> {
    let mut t = s.open_table(db, "items")?;
    let (id, data) = (t.column_id("id")?, t.column_id("data")?);
    t.prepare_update(Prep::Insert)?;
    t.set_column(id, Some(&i.to_le_bytes()))?;
    let len = (i.unsigned_abs() as usize * 37) % 250 + 1;
    t.set_column(data, Some(&vec![i.rem_euclid(251) as u8; len]))?;
    t.update().map(|_| ())
}

fn build_crashed() -> ese::Result<(SimFs, Vec<u8>)> {
    let fs = SimFs::new();
    let inst = instance(&fs, REF_LOG_KIB);
    inst.init()?;
    let s = inst.begin_session()?;
    let db = s.create_database(REF_DB, CreateDatabaseGrbit::empty())?;
    for def in table_defs() {
        s.create_table(db, &def)?;
    }
    let mut old = Vec::new();
    for batch in 0..10u32 {
        s.begin_transaction()?;
        for i in 0..8 {
            insert_person(&s, db, batch * 8 + i)?;
        }
        for i in 0..30 {
            insert_item(&s, db, i64::from(batch) * 30 + i64::from(i))?;
        }
        s.commit_transaction(if batch % 4 == 3 {
            CommitGrbit::LAZY_FLUSH
        } else {
            CommitGrbit::empty()
        })?;
        if batch == 5 {
            inst.checkpoint_now()?;
            old = read_file(&fs, REF_DB)?;
        }
    }
    // Deletes and replaces after the checkpoint, then a rolled-back and an open transaction.
    s.begin_transaction()?;
    let mut t = s.open_table(db, "items")?;
    let data = t.column_id("data")?;
    for i in (0..300i64).step_by(7) {
        t.seek(&[Some(&i.to_le_bytes())], ese::Seek::Eq)?;
        if i % 2 == 0 {
            t.delete()?;
        } else {
            t.prepare_update(Prep::Replace)?;
            t.set_column(data, Some(b"replaced"))?;
            t.update()?;
        }
    }
    s.commit_transaction(CommitGrbit::empty())?;
    s.begin_transaction()?;
    for i in 2000..2020 {
        insert_item(&s, db, i)?;
    }
    s.rollback(ese::RollbackGrbit::ALL)?;
    // Small durable commits, the last records before the open transaction.
    let mut p = s.open_table(db, "people")?;
    let age = p.column_id("age")?;
    for k in 0..6u32 {
        s.begin_transaction()?;
        p.seek(
            &[Some(format!("person-{:04}", k * 11).as_bytes())],
            ese::Seek::Eq,
        )?;
        p.prepare_update(Prep::Replace)?;
        p.set_column(age, Some(&(1000 + k.cast_signed()).to_le_bytes()))?;
        p.update()?;
        s.commit_transaction(CommitGrbit::empty())?;
    }
    drop(p);
    s.begin_transaction()?;
    for i in 3000..3015 {
        insert_item(&s, db, i)?;
    }
    insert_person(&s, db, 9999)?;
    // The power fails with that transaction open.
    fs.set_power_cut(Some(0));
    drop(t);
    drop(s);
    drop(inst);
    Ok((fs.crash(CrashModel::DropAll, 0), old))
}

/// The reference (built on first use, shared by every caller in the process).
pub fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| match build() {
        Ok(r) => r,
        Err(e) => panic!("building the reference files failed: {e}"),
    })
}

fn build() -> ese::Result<Reference> {
    let (crashed, db_file_old) = build_crashed()?;
    let clean = crashed.crash(CrashModel::DropAll, 0);
    let inst = instance(&clean, REF_LOG_KIB);
    inst.init()?;
    inst.term(TermGrbit::empty())?;
    let db_file = read_file(&clean, REF_DB)?;
    let tables = read_tables_on(&clean.crash(CrashModel::DropAll, 0))?;
    let trees = dump_trees(&clean, REF_DB)?;
    let mut log_files = Vec::new();
    for name in crashed.list(Path::new(LOG_DIR))? {
        let is_log = Path::new(&name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("log"));
        if is_log && name != "edbtmp.log" {
            let bytes = read_file(&crashed, &format!("{LOG_DIR}/{name}"))?;
            log_files.push((name, bytes));
        }
    }
    let fsd: Arc<dyn FileSystem> = Arc::new(crashed.crash(CrashModel::DropAll, 0));
    let log_payloads = ese_log::LogReader::open(fsd, Path::new(LOG_DIR), "edb", Lgpos::MIN)?
        .map(|r| r.map(|rec| rec.payload))
        .collect::<ese::Result<Vec<_>>>()?;
    Ok(Reference {
        crashed,
        clean,
        db_file,
        db_file_old,
        tables,
        trees,
        log_files,
        log_payloads,
    })
}

/// Opens the database at `path` with the page store alone (no log, no recovery), as esedump
/// does.
///
/// # Errors
/// The open's errors (`InvalidDatabase`, `ReadVerifyFailure`, `PageSizeMismatch`, ...).
pub fn open_db(fs: &SimFs, path: &str) -> ese::Result<ese_btree::Database> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    ese_btree::Database::open(
        &fsd,
        Path::new(path),
        ese_btree::DbOptions::new()
            .page_size(PAGE_SIZE)
            .cache_bytes(64 * u64::from(PAGE_SIZE)),
        Arc::new(ese_btree::MemWal::new()),
    )
}

/// The length of the part of a database file that holds its header slots and its allocated
/// pages (the rest is unused extension), per the integrity check.
///
/// # Errors
/// As [`open_db`] and the integrity check.
pub fn allocated_len(fs: &SimFs, path: &str) -> ese::Result<usize> {
    let report = open_db(fs, path)?.check_integrity()?;
    Ok((report.pgno_last as usize + 2) * PAGE_SIZE as usize)
}

/// Every node of every tree of an open database.
///
/// # Errors
/// The first read or corruption error.
pub fn dump_open(db: &ese_btree::Database) -> ese::Result<TreeDump> {
    let mut out = TreeDump::new();
    for (objid, _, _) in db.trees()? {
        let tree = db.open_tree(objid)?;
        let mut c = tree.cursor();
        let mut nodes = Vec::new();
        let mut more = c.move_first()?;
        while more {
            nodes.push((c.key().to_vec(), c.data().to_vec(), c.flags().0));
            more = c.move_next()?;
        }
        out.insert(objid.0, nodes);
    }
    Ok(out)
}

/// Opens the database at `path` and dumps every tree.
///
/// # Errors
/// As [`open_db`] and [`dump_open`].
pub fn dump_trees(fs: &SimFs, path: &str) -> ese::Result<TreeDump> {
    dump_open(&open_db(fs, path)?)
}

/// What the page-store reader made of a database: the first error of open, integrity check
/// and the walk of every tree, or the trees.
///
/// # Errors
/// The first error.
pub fn examine_db(fs: &SimFs, path: &str) -> ese::Result<TreeDump> {
    let db = open_db(fs, path)?;
    let check = db.check_integrity();
    let dump = dump_open(&db)?;
    check?;
    Ok(dump)
}

/// Every table a reader looks for: the reference tables and the operation targets' `t0`..`t3`.
fn known_tables() -> Vec<TableCreate> {
    let mut v = table_defs().to_vec();
    v.extend((0..4).map(super::workload::table_create));
    v
}

/// Reads every known table (the reference tables, and the operation targets' tables when the
/// database is theirs) through the API on a running instance's session.
///
/// # Errors
/// The first error.
pub fn read_tables(s: &Session, db: ese::DbId) -> ese::Result<Tables> {
    let mut out = Tables::new();
    for def in known_tables() {
        let mut t = match s.open_table(db, &def.name) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::ObjectNotFound => continue,
            Err(e) => return Err(e),
        };
        let ids = def
            .columns
            .iter()
            .map(|c| t.column_id(&c.name))
            .collect::<ese::Result<Vec<_>>>()?;
        let mut rows = Vec::new();
        let mut r = t.move_to(Move::First);
        loop {
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NoCurrentRecord => break,
                Err(e) => return Err(e),
            }
            let row = ids
                .iter()
                .map(|c| t.retrieve_column(*c))
                .collect::<ese::Result<Vec<_>>>()?;
            rows.push(row);
            r = t.move_to(Move::Next);
        }
        out.insert(def.name.clone(), rows);
    }
    Ok(out)
}

/// On a disk with a clean log: init, attach [`REF_DB`], read every reference table, term.
///
/// # Errors
/// The first error.
pub fn read_tables_on(fs: &SimFs) -> ese::Result<Tables> {
    let inst = instance(fs, REF_LOG_KIB);
    inst.init()?;
    let r = attach_and_read(&inst);
    let t = inst.term(TermGrbit::empty());
    let tables = r?;
    t?;
    Ok(tables)
}

fn attach_and_read(inst: &Instance) -> ese::Result<Tables> {
    let s = inst.begin_session()?;
    s.attach_database(REF_DB, AttachDatabaseGrbit::empty())?;
    let db = s.open_database(REF_DB)?;
    let tables = read_tables(&s, db)?;
    s.close_database(db)?;
    s.end(ese::EndSessionGrbit::empty())?;
    Ok(tables)
}

/// On a disk that may need recovery: init (recovery), the page store's integrity check of
/// [`REF_DB`], then attach and read every reference table.
///
/// # Errors
/// The first error.
pub fn recover_and_read(fs: &SimFs) -> ese::Result<Tables> {
    let inst = instance(fs, REF_LOG_KIB);
    inst.init()?;
    let r = examine_db(fs, REF_DB).and_then(|_| attach_and_read(&inst));
    let t = inst.term(TermGrbit::empty());
    let tables = r?;
    t?;
    Ok(tables)
}

/// Reads every record of the log in [`LOG_DIR`] from its oldest generation, as recovery and
/// `esedump log` do. Returns the number of records.
///
/// # Errors
/// The reader's errors.
pub fn read_log(fs: &SimFs) -> ese::Result<usize> {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let mut n = 0;
    for r in ese_log::LogReader::open(fsd, Path::new(LOG_DIR), "edb", Lgpos::MIN)? {
        r?;
        n += 1;
    }
    Ok(n)
}

/// Reads the checkpoint file.
///
/// # Errors
/// `CheckpointFileNotFound`, `CheckpointCorrupt`, `BadLogVersion`, I/O errors.
pub fn read_checkpoint(fs: &SimFs) -> ese::Result<ese_log::Checkpoint> {
    ese_log::Checkpoint::read(fs, Path::new(CHECKPOINT))
}
