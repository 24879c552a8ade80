//! The operation language of `crash_recovery` and `io_faults`, and the runner that applies
//! operations to the engine and to the model side by side.
//!
//! Every operation's result is predicted from the model before it runs: which records and
//! tables each session sees (its snapshot plus its own changes), which keys another
//! transaction holds (first writer wins) or changed after the snapshot (a write conflict).
//! A result that differs is an engine bug and panics, except an I/O error while the power is
//! cut or a fault has fired, which ends the workload.

use std::collections::HashMap;

use arbitrary::Arbitrary;
use ese::{
    ColumnDef, ColumnType, CommitGrbit, DbId, Error, ErrorKind, IndexCreate, IndexGrbit, Instance,
    Move, Prep, RollbackGrbit, Seek, Session, Table, TableCreate,
};

use super::model::{Ack, Commit, Got, History, Rows, State, Target, Val, Write};

/// Sessions the workload uses.
pub(crate) const SESSIONS: usize = 3;
/// Tables the workload may use: `t0` exists in the base image, `t1`..`t3` are created by
/// [`Op::CreateTable`].
pub(crate) const TABLES: u8 = 4;
/// Most operations run per input (longer inputs are cut), which bounds the time of one run.
pub(crate) const MAX_OPS: usize = 300;
/// Most transaction levels (ESE's 7).
const MAX_LEVELS: usize = 7;
/// Value length of the rows [`Op::Fill`] writes, in bytes.
const FILL_LEN: u8 = 200;

/// One operation of a workload. `session`, `table` and `key` are reduced modulo the number of
/// sessions (3), tables (4) and keys (256).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "the fields are named for what the variant's doc says"
)]
pub enum Op {
    /// JetBeginTransaction: level 0, or a nested level when one is open.
    Begin { session: u8 },
    /// JetPrepareUpdate(Insert) + JetSetColumn + JetUpdate of a row of `len` bytes (an
    /// implicit transaction outside one).
    Insert {
        session: u8,
        table: u8,
        key: u8,
        len: u8,
        fill: u8,
    },
    /// JetSeek + JetPrepareUpdate(Replace) + JetUpdate.
    Replace {
        session: u8,
        table: u8,
        key: u8,
        len: u8,
        fill: u8,
    },
    /// JetSeek + JetDelete.
    Delete { session: u8, table: u8, key: u8 },
    /// JetSeek + JetRetrieveColumn, compared with what the session should see.
    Read { session: u8, table: u8, key: u8 },
    /// JetMove over the whole table, compared with what the session should see.
    Scan { session: u8, table: u8 },
    /// Inserts or replaces `count % 64 + 1` rows of 200 bytes from key `start` on: enough log
    /// to roll over to new generations.
    Fill {
        session: u8,
        table: u8,
        start: u8,
        count: u8,
    },
    /// JetCommitTransaction, durable or with `JET_bitCommitLazyFlush`.
    Commit { session: u8, lazy: bool },
    /// JetRollback of one level or all.
    Rollback { session: u8, all: bool },
    /// JetCreateTableColumnIndex of table `t{table % 4}`.
    CreateTable { session: u8, table: u8 },
    /// Flush every dirty page and write a checkpoint (what the checkpointer does).
    Checkpoint,
}

/// The definition of workload table `t`: a u32 key and a binary value.
pub(crate) fn table_create(t: u8) -> TableCreate {
    TableCreate {
        name: table_name(t),
        columns: vec![
            ColumnDef::new("id", ColumnType::UnsignedLong),
            ColumnDef::new("v", ColumnType::Binary),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

pub(crate) fn table_name(t: u8) -> String {
    format!("t{t}")
}

/// Reads every workload table through `s` (absent tables are left out).
///
/// # Errors
/// The engine's errors.
pub(crate) fn read_state(s: &Session, db: DbId) -> ese::Result<Got> {
    let mut got = Got::new();
    for t in 0..TABLES {
        match s.open_table(db, &table_name(t)) {
            Ok(mut tb) => {
                got.insert(t, scan(&mut tb)?);
            }
            Err(e) if e.kind() == ErrorKind::ObjectNotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Every row of a workload table, in key order.
fn scan(tb: &mut Table) -> ese::Result<std::collections::BTreeMap<u32, Vec<u8>>> {
    let (id, v) = (tb.column_id("id")?, tb.column_id("v")?);
    let mut rows = std::collections::BTreeMap::new();
    let mut r = tb.move_to(Move::First);
    loop {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NoCurrentRecord => return Ok(rows),
            Err(e) => return Err(e),
        }
        let key = tb.retrieve_column(id)?.unwrap_or_default();
        let key = u32::from_le_bytes(key.try_into().map_err(|_| {
            Error::new(ErrorKind::DatabaseCorrupted).with_message("a key column is not 4 bytes")
        })?);
        rows.insert(key, tb.retrieve_column(v)?.unwrap_or_default());
        r = tb.move_to(Move::Next);
    }
}

/// What the workload runs against.
pub(crate) struct Harness<'a> {
    pub(crate) inst: &'a Instance,
    /// Each session with the database it opened.
    pub(crate) sessions: &'a [(Session, DbId)],
    /// Whether an I/O error is expected now (the power is cut, or the fault fired).
    pub(crate) io_expected: &'a dyn Fn() -> bool,
}

/// How a workload ended.
pub(crate) struct Outcome {
    pub(crate) history: History,
    /// The I/O error that ended it early, if one did.
    pub(crate) stopped: Option<Error>,
}

/// An open transaction in the model.
struct TxnModel {
    /// The committed state when level 0 began.
    snapshot: State,
    /// How many commits had happened then.
    snapshot_seq: usize,
    /// The writes of each open level, oldest level first.
    levels: Vec<Vec<Write>>,
}

impl TxnModel {
    fn writes(&self) -> impl DoubleEndedIterator<Item = &Write> {
        self.levels.iter().flatten()
    }
}

/// The outcome of one operation: `Err` ends the workload with an expected I/O error.
type Step = Result<(), Error>;

struct Runner<'a> {
    h: &'a Harness<'a>,
    cur: State,
    history: History,
    /// For each target, the number (1-based) of the last commit that wrote it.
    last_commit: HashMap<Target, usize>,
    txns: Vec<Option<TxnModel>>,
    serial: u32,
    op_index: usize,
}

/// Runs `ops` (at most [`MAX_OPS`]) starting from `base`, the committed state when the
/// workload starts.
pub(crate) fn run(h: &Harness<'_>, base: State, ops: &[Op]) -> Outcome {
    let mut r = Runner {
        h,
        cur: base.clone(),
        history: History {
            base,
            commits: Vec::new(),
        },
        last_commit: HashMap::new(),
        txns: (0..SESSIONS).map(|_| None).collect(),
        serial: 0,
        op_index: 0,
    };
    let mut stopped = None;
    for (i, op) in ops.iter().take(MAX_OPS).enumerate() {
        r.op_index = i;
        if let Err(e) = r.step(op) {
            stopped = Some(e);
            break;
        }
    }
    Outcome {
        history: r.history,
        stopped,
    }
}

fn sid(session: u8) -> usize {
    usize::from(session) % SESSIONS
}

fn tno(table: u8) -> u8 {
    table % TABLES
}

impl Runner<'_> {
    fn ctx(&self, op: &str) -> String {
        format!("operation {} ({op})", self.op_index)
    }

    /// An error that is not what the model predicts: an I/O error when one is expected ends
    /// the workload; anything else is an engine bug.
    fn unexpected(&self, op: &str, e: Error) -> Error {
        if super::is_io_error(&e) && (self.h.io_expected)() {
            e
        } else {
            panic!("{}: unexpected error {e} ({e:?})", self.ctx(op))
        }
    }

    fn session(&self, s: usize) -> (&Session, DbId) {
        match self.h.sessions.get(s) {
            Some((sess, db)) => (sess, *db),
            None => panic!("the harness has {SESSIONS} sessions"),
        }
    }

    /// The committed state this session reads through (its snapshot, or the latest).
    fn base_of(&self, s: usize) -> &State {
        match self.txns.get(s).and_then(Option::as_ref) {
            Some(t) => &t.snapshot,
            None => &self.cur,
        }
    }

    /// Whether session `s` sees table `t`.
    fn table_visible(&self, s: usize, t: u8) -> bool {
        if let Some(tx) = self.txns.get(s).and_then(Option::as_ref)
            && tx.writes().any(|w| w.target() == Target::Table(t))
        {
            return true;
        }
        self.base_of(s).contains_key(&t)
    }

    /// The row `key` of table `t` as session `s` sees it.
    fn row_visible(&self, s: usize, t: u8, key: u32) -> Option<Val> {
        if let Some(tx) = self.txns.get(s).and_then(Option::as_ref) {
            for w in tx.writes().rev() {
                if let super::model::Write::Row { table, key: k, val } = w
                    && *table == t
                    && *k == key
                {
                    return *val;
                }
            }
        }
        self.base_of(s).get(&t).and_then(|r| r.get(&key)).copied()
    }

    /// Table `t` as session `s` sees it.
    fn table_view(&self, s: usize, t: u8) -> Rows {
        let mut rows = self.base_of(s).get(&t).cloned().unwrap_or_default();
        if let Some(tx) = self.txns.get(s).and_then(Option::as_ref) {
            for w in tx.writes() {
                if let Write::Row { table, key, val } = w
                    && *table == t
                {
                    match val {
                        Some(v) => rows.insert(*key, *v),
                        None => rows.remove(key),
                    };
                }
            }
        }
        rows
    }

    /// Whether a write of `target` by session `s` must meet a write conflict: another open
    /// transaction changed it, or a commit after this session's snapshot did.
    fn contended(&self, s: usize, target: Target) -> bool {
        let others = self
            .txns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != s)
            .filter_map(|(_, t)| t.as_ref())
            .any(|t| t.writes().any(|w| w.target() == target));
        let after_snapshot = match self.txns.get(s).and_then(Option::as_ref) {
            Some(t) => self
                .last_commit
                .get(&target)
                .is_some_and(|n| *n > t.snapshot_seq),
            None => false,
        };
        others || after_snapshot
    }

    fn commit_writes(&mut self, writes: Vec<Write>, ack: Ack) {
        // A transaction that changed nothing logs nothing: its durable commit flushes nothing
        // and promises nothing about earlier lazy commits.
        if writes.is_empty() {
            return;
        }
        for w in &writes {
            w.apply(&mut self.cur);
        }
        let n = self.history.commits.len() + 1;
        for w in &writes {
            self.last_commit.insert(w.target(), n);
        }
        self.history.commits.push(Commit { writes, ack });
    }

    /// Records a successful write: into the open transaction, or as an implicit durable
    /// commit.
    fn record(&mut self, s: usize, w: Write) {
        match self
            .txns
            .get_mut(s)
            .and_then(Option::as_mut)
            .and_then(|t| t.levels.last_mut())
        {
            Some(level) => level.push(w),
            None => self.commit_writes(vec![w], Ack::Durable),
        }
    }

    /// Records a write whose implicit transaction failed part-way: it may or may not have
    /// committed.
    fn record_unknown(&mut self, s: usize, w: Write) {
        if self.txns.get(s).is_some_and(Option::is_none) {
            self.commit_writes(vec![w], Ack::Unknown);
        }
    }

    fn in_txn(&self, s: usize) -> bool {
        self.txns.get(s).is_some_and(Option::is_some)
    }

    fn step(&mut self, op: &Op) -> Step {
        match *op {
            Op::Begin { session } => self.begin(sid(session)),
            Op::Insert {
                session,
                table,
                key,
                len,
                fill,
            } => {
                self.serial += 1;
                let v = Val::new(self.serial, len, fill);
                self.insert(sid(session), tno(table), u32::from(key), v)
            }
            Op::Replace {
                session,
                table,
                key,
                len,
                fill,
            } => {
                self.serial += 1;
                let v = Val::new(self.serial, len, fill);
                self.replace(sid(session), tno(table), u32::from(key), Some(v))
            }
            Op::Delete {
                session,
                table,
                key,
            } => self.replace(sid(session), tno(table), u32::from(key), None),
            Op::Read {
                session,
                table,
                key,
            } => self.read(sid(session), tno(table), u32::from(key)),
            Op::Scan { session, table } => self.scan_check(sid(session), tno(table)),
            Op::Fill {
                session,
                table,
                start,
                count,
            } => {
                let (s, t) = (sid(session), tno(table));
                for i in 0..=u32::from(count % 64) {
                    let key = (u32::from(start) + i) % 256;
                    self.serial += 1;
                    let v = Val::new(self.serial, FILL_LEN, key as u8);
                    if self.row_visible(s, t, key).is_some() {
                        self.replace(s, t, key, Some(v))?;
                    } else {
                        self.insert(s, t, key, v)?;
                    }
                }
                Ok(())
            }
            Op::Commit { session, lazy } => self.commit(sid(session), lazy),
            Op::Rollback { session, all } => self.rollback(sid(session), all),
            Op::CreateTable { session, table } => self.create_table(sid(session), tno(table)),
            Op::Checkpoint => self
                .h
                .inst
                .checkpoint_now()
                .map_err(|e| self.unexpected("checkpoint", e)),
        }
    }

    fn begin(&mut self, s: usize) -> Step {
        let depth = self
            .txns
            .get(s)
            .and_then(Option::as_ref)
            .map_or(0, |t| t.levels.len());
        let (sess, _) = self.session(s);
        match sess.begin_transaction() {
            Ok(()) if depth < MAX_LEVELS => {
                match self.txns.get_mut(s) {
                    Some(Some(t)) => t.levels.push(Vec::new()),
                    Some(slot) => {
                        *slot = Some(TxnModel {
                            snapshot: self.cur.clone(),
                            snapshot_seq: self.history.commits.len(),
                            levels: vec![Vec::new()],
                        });
                    }
                    None => {}
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::TransTooDeep && depth == MAX_LEVELS => Ok(()),
            Ok(()) => panic!("{}: an eighth level began", self.ctx("begin")),
            Err(e) => Err(self.unexpected("begin", e)),
        }
    }

    /// Opens table `t` for session `s`: `None` when the session does not see it (and the
    /// engine agrees).
    fn open(&self, s: usize, t: u8, op: &str) -> Result<Option<Table>, Error> {
        let visible = self.table_visible(s, t);
        let (sess, db) = self.session(s);
        match sess.open_table(db, &table_name(t)) {
            Ok(tb) if visible => Ok(Some(tb)),
            Ok(_) => panic!(
                "{}: table t{t} opened, but the session should not see it",
                self.ctx(op)
            ),
            Err(e) if e.kind() == ErrorKind::ObjectNotFound && !visible => Ok(None),
            Err(e) => Err(self.unexpected(op, e)),
        }
    }

    fn insert(&mut self, s: usize, t: u8, key: u32, v: Val) -> Step {
        let Some(mut tb) = self.open(s, t, "insert")? else {
            return Ok(());
        };
        let exists = self.row_visible(s, t, key).is_some();
        let contended = self.contended(s, Target::Row(t, key));
        let r = (|| {
            let (id, col) = (tb.column_id("id")?, tb.column_id("v")?);
            tb.prepare_update(Prep::Insert)?;
            tb.set_column(id, Some(&key.to_le_bytes()))?;
            tb.set_column(col, Some(&v.bytes()))?;
            tb.update().map(|_| ())
        })();
        match r {
            Ok(()) => {
                assert!(
                    !exists && !contended,
                    "{}: insert of t{t} key {key} succeeded, but the key {}",
                    self.ctx("insert"),
                    if exists {
                        "is visible (KeyDuplicate expected)"
                    } else {
                        "is held by another transaction (WriteConflict expected)"
                    }
                );
                self.record(
                    s,
                    Write::Row {
                        table: t,
                        key,
                        val: Some(v),
                    },
                );
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::KeyDuplicate && (exists || contended) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WriteConflict && contended => Ok(()),
            Err(e) if e.kind() == ErrorKind::VersionStoreOutOfMemory => Ok(()),
            Err(e) => {
                let e = self.unexpected("insert", e);
                self.record_unknown(
                    s,
                    Write::Row {
                        table: t,
                        key,
                        val: Some(v),
                    },
                );
                Err(e)
            }
        }
    }

    /// Seeks `key` and checks the result against the model: `Ok(true)` when the cursor is on
    /// the row.
    fn seek(&self, tb: &mut Table, s: usize, t: u8, key: u32, op: &str) -> Result<bool, Error> {
        let visible = self.row_visible(s, t, key);
        match tb.seek(&[Some(&key.to_le_bytes())], Seek::Eq) {
            Ok(()) if visible.is_some() => Ok(true),
            Err(e) if e.kind() == ErrorKind::RecordNotFound && visible.is_none() => Ok(false),
            Ok(()) => panic!(
                "{}: seek found t{t} key {key}, which the session should not see",
                self.ctx(op)
            ),
            Err(e) if e.kind() == ErrorKind::RecordNotFound => panic!(
                "{}: seek did not find t{t} key {key}, which the session should see",
                self.ctx(op)
            ),
            Err(e) => Err(self.unexpected(op, e)),
        }
    }

    /// Replaces (`Some`) or deletes (`None`) row `key`.
    fn replace(&mut self, s: usize, t: u8, key: u32, v: Option<Val>) -> Step {
        let op = if v.is_some() { "replace" } else { "delete" };
        let Some(mut tb) = self.open(s, t, op)? else {
            return Ok(());
        };
        if !self.seek(&mut tb, s, t, key, op)? {
            return Ok(());
        }
        let contended = self.contended(s, Target::Row(t, key));
        let in_txn = self.in_txn(s);
        let r = (|| match v {
            Some(v) => {
                let col = tb.column_id("v")?;
                tb.prepare_update(if in_txn {
                    Prep::Replace
                } else {
                    Prep::ReplaceNoLock
                })?;
                tb.set_column(col, Some(&v.bytes()))?;
                tb.update().map(|_| ())
            }
            None => tb.delete(),
        })();
        let w = Write::Row {
            table: t,
            key,
            val: v,
        };
        match r {
            Ok(()) => {
                assert!(
                    !contended,
                    "{}: {op} of t{t} key {key} succeeded, but another transaction holds it",
                    self.ctx(op)
                );
                self.record(s, w);
                Ok(())
            }
            Err(e)
                if contended
                    && matches!(
                        e.kind(),
                        ErrorKind::WriteConflict | ErrorKind::RecordDeleted
                    ) =>
            {
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::VersionStoreOutOfMemory => Ok(()),
            Err(e) => {
                let e = self.unexpected(op, e);
                self.record_unknown(s, w);
                Err(e)
            }
        }
    }

    fn read(&self, s: usize, t: u8, key: u32) -> Step {
        let Some(mut tb) = self.open(s, t, "read")? else {
            return Ok(());
        };
        if !self.seek(&mut tb, s, t, key, "read")? {
            return Ok(());
        }
        let got = tb
            .column_id("v")
            .and_then(|c| tb.retrieve_column(c))
            .map_err(|e| self.unexpected("read", e))?;
        let want = self.row_visible(s, t, key).map(Val::bytes);
        assert_eq!(
            got,
            want,
            "{}: t{t} key {key} reads another value than the session should see",
            self.ctx("read")
        );
        Ok(())
    }

    fn scan_check(&self, s: usize, t: u8) -> Step {
        let Some(mut tb) = self.open(s, t, "scan")? else {
            return Ok(());
        };
        let got = scan(&mut tb).map_err(|e| self.unexpected("scan", e))?;
        let want = self.table_view(s, t);
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|((gk, gv), (wk, wv))| gk == wk && *gv == wv.bytes());
        assert!(
            same,
            "{}: a scan of t{t} returned {} rows, the session should see {}",
            self.ctx("scan"),
            got.len(),
            want.len()
        );
        Ok(())
    }

    fn commit(&mut self, s: usize, lazy: bool) -> Step {
        let depth = self
            .txns
            .get(s)
            .and_then(Option::as_ref)
            .map_or(0, |t| t.levels.len());
        let grbit = if lazy {
            CommitGrbit::LAZY_FLUSH
        } else {
            CommitGrbit::empty()
        };
        let (sess, _) = self.session(s);
        let r = sess.commit_transaction(grbit);
        match r {
            Err(e) if depth == 0 && e.kind() == ErrorKind::NotInTransaction => Ok(()),
            Ok(()) if depth == 0 => panic!("{}: commit outside a transaction", self.ctx("commit")),
            Ok(()) if depth > 1 => {
                if let Some(Some(t)) = self.txns.get_mut(s)
                    && let Some(top) = t.levels.pop()
                    && let Some(below) = t.levels.last_mut()
                {
                    below.extend(top);
                }
                Ok(())
            }
            Ok(()) => {
                let writes = self
                    .txns
                    .get_mut(s)
                    .and_then(Option::take)
                    .map(|t| t.levels.into_iter().flatten().collect())
                    .unwrap_or_default();
                self.commit_writes(writes, if lazy { Ack::Lazy } else { Ack::Durable });
                Ok(())
            }
            Err(e) => {
                let e = self.unexpected("commit", e);
                // The level is gone if the commit happened and only its flush failed.
                let level = sess.transaction_level().ok();
                if depth == 1 && level == Some(0) {
                    let writes = self
                        .txns
                        .get_mut(s)
                        .and_then(Option::take)
                        .map(|t| t.levels.into_iter().flatten().collect())
                        .unwrap_or_default();
                    self.commit_writes(writes, Ack::Unknown);
                } else if depth == 1 && level.is_none() {
                    // The session cannot say: the commit record may or may not be written.
                    let writes = self
                        .txns
                        .get(s)
                        .and_then(Option::as_ref)
                        .map(|t| t.writes().cloned().collect())
                        .unwrap_or_default();
                    self.commit_writes(writes, Ack::Unknown);
                }
                Err(e)
            }
        }
    }

    fn rollback(&mut self, s: usize, all: bool) -> Step {
        let depth = self
            .txns
            .get(s)
            .and_then(Option::as_ref)
            .map_or(0, |t| t.levels.len());
        let (sess, _) = self.session(s);
        let grbit = if all {
            RollbackGrbit::ALL
        } else {
            RollbackGrbit::empty()
        };
        match sess.rollback(grbit) {
            Err(e) if depth == 0 && e.kind() == ErrorKind::NotInTransaction => Ok(()),
            Ok(()) if depth == 0 => {
                panic!("{}: rollback outside a transaction", self.ctx("rollback"))
            }
            Ok(()) => {
                if let Some(slot) = self.txns.get_mut(s) {
                    if all || depth == 1 {
                        *slot = None;
                    } else if let Some(t) = slot.as_mut() {
                        t.levels.pop();
                    }
                }
                Ok(())
            }
            Err(e) => Err(self.unexpected("rollback", e)),
        }
    }

    fn create_table(&mut self, s: usize, t: u8) -> Step {
        let visible = self.table_visible(s, t);
        let contended = self.contended(s, Target::Table(t));
        let (sess, db) = self.session(s);
        match sess.create_table(db, &table_create(t)) {
            Ok(()) => {
                assert!(
                    !visible && !contended,
                    "{}: t{t} created, but it {}",
                    self.ctx("create table"),
                    if visible {
                        "exists (TableDuplicate expected)"
                    } else {
                        "is being created by another transaction (WriteConflict expected)"
                    }
                );
                self.record(s, Write::Table { table: t });
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::TableDuplicate && visible => Ok(()),
            Err(e)
                if contended
                    && matches!(
                        e.kind(),
                        ErrorKind::TableDuplicate
                            | ErrorKind::WriteConflict
                            | ErrorKind::KeyDuplicate
                    ) =>
            {
                Ok(())
            }
            Err(e) => {
                let e = self.unexpected("create table", e);
                self.record_unknown(s, Write::Table { table: t });
                Err(e)
            }
        }
    }
}
