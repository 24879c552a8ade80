//! Tables and cursors (ESE's `JET_TABLEID`): create and open tables, move, seek on the
//! primary key, prepare/set/update, retrieve, delete — every read through the session's
//! snapshot, every write through its transaction (or an implicit one at level 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bitflags::bitflags;
use ese_btree::{NodeFlags, SeekOp};
use ese_core::{Error, ErrorKind, ObjId, Result};
use ese_txn::{PhysState, ReadView, Transaction, node_state};

use crate::catalog::{self, CATALOG_OBJID, ColumnEntry, IndexEntry, Segment, TableDef};
use crate::column::{
    ColumnArea, ColumnDef, ColumnGrbit, FIRST_FIXED, FIRST_TAGGED, FIRST_VARIABLE, validate_name,
};
use crate::database::DbId;
use crate::engine::{Engine, tree_id};
use crate::key::{SegmentSpec, normalize_segment, truncate_key};
use crate::record::{Record, RecordLayout, TaggedValue};
use crate::session::Session;

bitflags! {
    /// Options of an index (ESE's `JET_bitIndex*`; the subset this engine supports).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct IndexGrbit: u32 {
        /// `JET_bitIndexUnique` (0x1).
        const UNIQUE = 0x1;
        /// `JET_bitIndexPrimary` (0x2): the clustered index the table's records are stored in.
        const PRIMARY = 0x2;
        /// `JET_bitIndexDisallowNull` (0x4).
        const DISALLOW_NULL = 0x4;
        /// `JET_bitIndexSortNullsHigh` (0x400).
        const SORT_NULLS_HIGH = 0x400;
        /// `JET_bitIndexDisallowTruncation` (0x10000).
        const DISALLOW_TRUNCATION = 0x1_0000;
    }
}

/// An index to create (ESE's `JET_INDEXCREATE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexCreate {
    /// The index name (1 to 64 characters).
    pub name: String,
    /// ESE's key definition: `+col1\0-col2\0\0` (`+` ascending, `-` descending, each segment
    /// ends with a NUL, the list with a second NUL); at most 16 segments.
    pub key: String,
    /// Options.
    pub grbit: IndexGrbit,
    /// Longest normalized key in bytes (0 = ESE's legacy 255).
    pub key_most: u16,
}

/// A table to create with its columns and indexes (ESE's `JET_TABLECREATE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCreate {
    /// The table name (1 to 64 characters).
    pub name: String,
    /// The columns, in order; their ids are assigned by area (fixed, variable, tagged).
    pub columns: Vec<ColumnDef>,
    /// The indexes; at most one primary.
    pub indexes: Vec<IndexCreate>,
}

/// Where to move a cursor (ESE's `JetMove` constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// `JET_MoveFirst`.
    First,
    /// `JET_MovePrevious`.
    Previous,
    /// `JET_MoveNext`.
    Next,
    /// `JET_MoveLast`.
    Last,
}

/// The kind of update to prepare (ESE's `JET_prep*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prep {
    /// `JET_prepInsert`: a new record.
    Insert,
    /// `JET_prepReplace`: change the current record; takes the write lock now.
    Replace,
    /// `JET_prepReplaceNoLock`: change the current record; conflicts show at update.
    ReplaceNoLock,
    /// `JET_prepCancel`: drop the prepared update.
    Cancel,
}

/// Seek operators (ESE's `JET_bitSeek*`).
pub use ese_btree::SeekOp as Seek;

/// Largest key of the legacy key limit (`JET_cbKeyMost`).
const KEY_MOST_LEGACY: u16 = 255;

/// Parses ESE's key definition string into (column name, descending) pairs.
fn parse_key_def(key: &str) -> Result<Vec<(String, bool)>> {
    let bad = |why: &str| {
        Err(Error::new(ErrorKind::IndexInvalidDef).with_message(format!("{key:?}: {why}")))
    };
    let body = key
        .strip_suffix("\0\0")
        .or_else(|| key.strip_suffix('\0'))
        .unwrap_or(key);
    let mut out = Vec::new();
    for seg in body.split('\0') {
        let (desc, name) = match seg.as_bytes().first() {
            Some(b'+') => (false, seg.get(1..).unwrap_or_default()),
            Some(b'-') => (true, seg.get(1..).unwrap_or_default()),
            Some(_) => (false, seg),
            None => return bad("an empty segment"),
        };
        if name.is_empty() {
            return bad("a segment without a column name");
        }
        out.push((name.to_owned(), desc));
    }
    if out.is_empty() || out.len() > 16 {
        return bad("an index has 1 to 16 segments");
    }
    Ok(out)
}

impl TableDef {
    fn layout(&self) -> RecordLayout {
        let nfixed = self.next_ids[0].saturating_sub(FIRST_FIXED) as usize;
        let mut sizes = vec![0u32; nfixed];
        for c in &self.columns {
            if let Some(ColumnArea::Fixed) = crate::column::area_of(c.id)
                && let Some(slot) = sizes.get_mut((c.id - FIRST_FIXED) as usize)
            {
                *slot = c.def.coltyp.fixed_size().unwrap_or(c.def.cb_max);
            }
        }
        RecordLayout { fixed_sizes: sizes }
    }

    fn column(&self, id: u32) -> Result<&ColumnEntry> {
        self.columns
            .iter()
            .find(|c| c.id == id && !c.deleted)
            .ok_or_else(|| {
                Error::new(ErrorKind::ColumnNotFound).with_message(format!("column id {id}"))
            })
    }

    fn primary(&self) -> Option<&IndexEntry> {
        self.indexes
            .iter()
            .find(|i| i.grbit & IndexGrbit::PRIMARY.bits() != 0)
    }
}

impl Session {
    /// Runs `f` in the session's transaction, or in an implicit one when none is open (ESE
    /// wraps a level-0 update in its own transaction, committed durably).
    pub(crate) fn in_transaction<T>(
        &self,
        engine: &Engine,
        f: impl FnOnce(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.shared.state.lock();
        if let Some(t) = st.trx.as_mut().filter(|t| t.is_open()) {
            return f(t).inspect_err(|e| self.check_fatal(e));
        }
        drop(st);
        let mut t = engine
            .vs
            .begin(format!("{} (implicit)", self.sesid()), false);
        match f(&mut t) {
            Ok(v) => {
                t.commit_level(false).inspect_err(|e| self.check_fatal(e))?;
                Ok(v)
            }
            Err(e) => {
                self.check_fatal(&e);
                t.rollback_all().inspect_err(|e2| self.inst.fatal(e2))?;
                Err(e)
            }
        }
    }

    /// The view reads use: the open transaction's snapshot, or the latest committed state.
    pub(crate) fn read_view(&self) -> ReadView {
        match self
            .shared
            .state
            .lock()
            .trx
            .as_ref()
            .filter(|t| t.is_open())
        {
            Some(t) => t.read_view(),
            None => ReadView::latest(),
        }
    }

    /// Creates a table with its columns and indexes (JetCreateTableColumnIndex), in the
    /// session's transaction (or an implicit one): if that transaction rolls back, the table
    /// does not exist.
    ///
    /// # Errors
    /// `InvalidName` (-1002) for a bad table, column or index name; `TableDuplicate` (-1303)
    /// if the table exists; `ColumnDuplicate` (-1508) for two columns with one name; the column
    /// definition errors of [`ColumnDef::validate`]; `ColumnRedundant` (-1510) for a second
    /// auto-increment column; `IndexInvalidDef` (-1406) for a bad key definition or a key
    /// naming an unknown column; `IndexHasPrimary` (-1402) for two primary indexes;
    /// `IndexDuplicate` (-1403) for two indexes with one name; `FeatureNotAvailable` (-1001)
    /// for secondary indexes (not supported yet); `InvalidDatabaseId` (-1010); `TransReadOnly`
    /// (-1110) in a read-only transaction; `WriteConflict` (-1102) if another transaction is
    /// creating the same table; the session and instance errors.
    pub fn create_table(&self, db: DbId, create: &TableCreate) -> Result<()> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        validate_name(&create.name)?;
        let mut def = TableDef {
            name: create.name.clone(),
            objid: ObjId(0),
            lv_objid: ObjId(0),
            next_ids: [FIRST_FIXED, FIRST_VARIABLE, FIRST_TAGGED],
            columns: Vec::new(),
            indexes: Vec::new(),
        };
        let mut autoinc = false;
        for c in &create.columns {
            c.validate()?;
            if def
                .columns
                .iter()
                .any(|e| e.def.name.eq_ignore_ascii_case(&c.name))
            {
                return Err(Error::new(ErrorKind::ColumnDuplicate).with_message(c.name.clone()));
            }
            if c.grbit.contains(ColumnGrbit::AUTOINCREMENT) {
                if autoinc {
                    return Err(Error::new(ErrorKind::ColumnRedundant));
                }
                autoinc = true;
            }
            let slot = match c.area() {
                ColumnArea::Fixed => 0,
                ColumnArea::Variable => 1,
                ColumnArea::Tagged => 2,
            };
            let id = def.next_ids.get(slot).copied().unwrap_or(0);
            let limit = [127, 255, 65_535].get(slot).copied().unwrap_or(0);
            if id > limit {
                return Err(Error::new(ErrorKind::TooManyColumns));
            }
            if let Some(n) = def.next_ids.get_mut(slot) {
                *n += 1;
            }
            def.columns.push(ColumnEntry {
                id,
                def: c.clone(),
                deleted: false,
            });
        }
        for ix in &create.indexes {
            validate_name(&ix.name)?;
            if def
                .indexes
                .iter()
                .any(|e| e.name.eq_ignore_ascii_case(&ix.name))
            {
                return Err(Error::new(ErrorKind::IndexDuplicate).with_message(ix.name.clone()));
            }
            if !ix.grbit.contains(IndexGrbit::PRIMARY) {
                return Err(Error::new(ErrorKind::FeatureNotAvailable)
                    .with_message("secondary indexes are not supported yet"));
            }
            if def.primary().is_some() {
                return Err(Error::new(ErrorKind::IndexHasPrimary));
            }
            let mut segments = Vec::new();
            for (name, descending) in parse_key_def(&ix.key)? {
                let col = def
                    .columns
                    .iter()
                    .find(|c| c.def.name.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| {
                        Error::new(ErrorKind::IndexInvalidDef)
                            .with_message(format!("no column {name:?}"))
                    })?;
                if col.def.grbit.contains(ColumnGrbit::ESCROW_UPDATE) {
                    return Err(Error::new(ErrorKind::CannotIndex));
                }
                segments.push(Segment {
                    column: col.id,
                    descending,
                });
            }
            let max = u16::try_from(d.db.max_key_len()).unwrap_or(u16::MAX);
            let key_most = if ix.key_most == 0 {
                KEY_MOST_LEGACY
            } else {
                ix.key_most
            };
            if key_most > max {
                return Err(Error::new(ErrorKind::IndexInvalidDef)
                    .with_message(format!("key most {key_most} is over the page size's {max}")));
            }
            def.indexes.push(IndexEntry {
                name: ix.name.clone(),
                objid: ObjId(0),
                grbit: ix.grbit.bits(),
                key_most,
                segments,
            });
        }
        let key = catalog::table_key(&create.name);
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        self.in_transaction(&engine, |t| {
            if t.read(cat, &key)?.is_some() {
                return Err(Error::new(ErrorKind::TableDuplicate).with_message(create.name.clone()));
            }
            // The tree is allocated outside the transaction: a rollback leaves it unused (its
            // pages stay owned until the table is dropped), as the catalog never names it.
            let tree = d.db.create_tree(ese_btree::TreeKind::Table)?;
            def.objid = tree.objid();
            for ix in &mut def.indexes {
                ix.objid = tree.objid();
            }
            engine.store.register(tree_id(d.dbid, tree.objid()), tree);
            t.insert(cat, &key, &def.encode())
        })
    }

    /// Opens a cursor on a table (JetOpenTable).
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if the table does not exist in this session's view;
    /// `InvalidDatabaseId` (-1010); `CatalogCorrupted` (-1220) for a damaged definition; the
    /// session and instance errors.
    pub fn open_table(&self, db: DbId, name: &str) -> Result<Table> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        let view = self.read_view();
        let bytes = engine
            .vs
            .read(cat, &catalog::table_key(name), &view)?
            .value()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::new(ErrorKind::ObjectNotFound).with_message(name.to_owned()))?;
        let def = TableDef::decode(&bytes)?;
        let tree = tree_id(d.dbid, def.objid);
        // The tree may have been created by a transaction of another session: make it reachable.
        if engine.store.tree(tree).is_err() {
            engine.store.register(tree, d.db.open_tree(def.objid)?);
        }
        let seq = engine.implicit_key_counter(tree)?;
        Ok(Table {
            session: self.clone(),
            engine,
            layout: def.layout(),
            def: Arc::new(def),
            tree,
            current: None,
            after_last: false,
            prepared: None,
            seq,
        })
    }
}

#[derive(Debug)]
struct Prepared {
    prep: Prep,
    record: Record,
}

/// A cursor on a table (ESE's `JET_TABLEID`). It belongs to the session that opened it:
/// every call enters through that session (so another thread using it concurrently gets
/// `SessionSharingViolation`), reads through its snapshot and writes through its transaction.
pub struct Table {
    session: Session,
    engine: Arc<Engine>,
    def: Arc<TableDef>,
    layout: RecordLayout,
    tree: ObjId,
    /// The primary key of the current record.
    current: Option<Vec<u8>>,
    /// Off a record: whether the cursor is after the last record (else before the first).
    after_last: bool,
    prepared: Option<Prepared>,
    /// Next implicit key (tables without a primary index).
    seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.def.name)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// The id of column `name` (JetGetTableColumnInfo's columnid).
    ///
    /// # Errors
    /// `ColumnNotFound` (-1507).
    pub fn column_id(&self, name: &str) -> Result<u32> {
        self.def
            .columns
            .iter()
            .find(|c| !c.deleted && c.def.name.eq_ignore_ascii_case(name))
            .map(|c| c.id)
            .ok_or_else(|| Error::new(ErrorKind::ColumnNotFound).with_message(name.to_owned()))
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The record with primary key `key` as this session sees it.
    fn visible(&self, key: &[u8], node: Option<(Vec<u8>, NodeFlags)>) -> Result<Option<Vec<u8>>> {
        let view = self.session.read_view();
        let vs = &self.engine.vs;
        let state = if vs.may_have_versions(self.tree) {
            let tree = self.engine.store.tree(self.tree)?;
            vs.visible_with(self.tree, key, &view, || Ok(node_state(tree.get_opt(key)?)))?
        } else {
            node_state(node)
        };
        Ok(match state {
            PhysState::Present(v) => Some(v),
            _ => None,
        })
    }

    /// Positions on the first visible record at or after (`forward`) / before the btree
    /// position `seek`.
    fn scan(&mut self, start: Option<(&[u8], SeekOp)>, forward: bool) -> Result<()> {
        let tree = self.engine.store.tree(self.tree)?;
        let mut c = tree.cursor();
        let mut on = match start {
            Some((k, op)) => match c.seek(k, op) {
                Ok(()) => true,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::RecordNotFound | ErrorKind::NoCurrentRecord
                    ) =>
                {
                    false
                }
                Err(e) => return Err(e),
            },
            None if forward => c.move_first()?,
            None => c.move_last()?,
        };
        while on {
            let key = c.key().to_vec();
            let node = Some((c.data().to_vec(), c.flags()));
            if self.visible(&key, node)?.is_some() {
                self.current = Some(key);
                return Ok(());
            }
            on = if forward {
                c.move_next()?
            } else {
                c.move_prev()?
            };
        }
        self.current = None;
        self.after_last = forward;
        Err(Error::new(ErrorKind::NoCurrentRecord))
    }

    /// Moves the cursor (JetMove). A new cursor is before the first record; moving past
    /// either end leaves it before the first or after the last record, from where only the
    /// opposite direction (or First/Last) finds a record again.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) when there is no record there; the session errors.
    pub fn move_to(&mut self, m: Move) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let cur = self.current.clone();
        match (m, cur) {
            (Move::First, _) => self.scan(None, true),
            (Move::Last, _) => self.scan(None, false),
            (Move::Next, Some(k)) => self.scan(Some((&k, SeekOp::Gt)), true),
            (Move::Previous, Some(k)) => self.scan(Some((&k, SeekOp::Lt)), false),
            (Move::Next, None) if !self.after_last => self.scan(None, true),
            (Move::Previous, None) if self.after_last => self.scan(None, false),
            (Move::Next | Move::Previous, None) => Err(Error::new(ErrorKind::NoCurrentRecord)),
        }
    }

    /// Normalizes values of the primary index's columns into a key.
    fn make_key(&self, values: &[Option<&[u8]>]) -> Result<Vec<u8>> {
        let Some(ix) = self.def.primary() else {
            return Err(Error::new(ErrorKind::NoCurrentIndex));
        };
        if values.len() > ix.segments.len() {
            return Err(Error::new(ErrorKind::KeyIsMade));
        }
        let mut key = Vec::new();
        for (seg, v) in ix.segments.iter().zip(values) {
            let col = self.def.column(seg.column)?;
            let spec = SegmentSpec {
                coltyp: col.def.coltyp,
                code_page: col.def.code_page,
                descending: seg.descending,
                nulls_high: ix.grbit & IndexGrbit::SORT_NULLS_HIGH.bits() != 0,
            };
            normalize_segment(&mut key, spec, *v)?;
        }
        truncate_key(
            &mut key,
            usize::from(ix.key_most),
            ix.grbit & IndexGrbit::DISALLOW_TRUNCATION.bits() != 0,
        )?;
        Ok(key)
    }

    /// Seeks on the primary index (JetMakeKey + JetSeek) with the values of its leading
    /// columns (as their column types' bytes; `None` for null).
    ///
    /// # Errors
    /// `RecordNotFound` (-1601) when no record matches; `NoCurrentIndex` (-1515) for a table
    /// without a primary index; `KeyIsMade` (-1516) for more values than segments;
    /// `InvalidBufferSize` (-1047) for a value of the wrong size; the session errors.
    pub fn seek(&mut self, values: &[Option<&[u8]>], op: Seek) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let key = self.make_key(values)?;
        let forward = matches!(op, SeekOp::Eq | SeekOp::Ge | SeekOp::Gt);
        match self.scan(Some((&key, op)), forward) {
            Err(e) if e.kind() == ErrorKind::NoCurrentRecord => {
                Err(Error::new(ErrorKind::RecordNotFound))
            }
            Ok(()) if op == SeekOp::Eq && self.current.as_deref() != Some(&key[..]) => {
                self.current = None;
                Err(Error::new(ErrorKind::RecordNotFound))
            }
            r => r,
        }
    }

    /// The current record, decoded.
    fn current_record(&self) -> Result<Record> {
        let key = self
            .current
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let tree = self.engine.store.tree(self.tree)?;
        let node = tree.get_opt(key)?;
        let bytes = self
            .visible(key, node)?
            .ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
        Record::decode(&bytes, &self.layout)
    }

    /// Retrieves a column of the current record (JetRetrieveColumn, `itagSequence` 1), or of
    /// the prepared update when one is prepared (`JET_bitRetrieveCopy` semantics for the
    /// copy buffer). `None` is a null column (ESE's `JET_wrnColumnNull`); a column without a
    /// value returns its default.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) off a record; `RecordDeleted` (-1017) if the record was
    /// deleted; `ColumnNotFound` (-1507); the session errors.
    pub fn retrieve_column(&self, column: u32) -> Result<Option<Vec<u8>>> {
        let _call = self.session.enter(false)?;
        let col = self.def.column(column)?;
        let rec = match &self.prepared {
            Some(p) => p.record.clone(),
            None => self.current_record()?,
        };
        Ok(match rec.get(column, 1) {
            Some(v) => Some(v.data),
            None => col.def.default.clone(),
        })
    }

    /// Prepares an update (JetPrepareUpdate).
    ///
    /// # Errors
    /// `AlreadyPrepared` (-1607) if an update is prepared; `NoCurrentRecord` (-1603) for a
    /// replace off a record; `WriteConflict` (-1102) when `Replace` cannot take the write lock
    /// (another transaction changed the record); `NotInTransaction` (-1054) for `Replace`
    /// outside a transaction (the lock needs one); `UpdateNotPrepared` (-1609) to cancel
    /// nothing; the session errors.
    pub fn prepare_update(&mut self, prep: Prep) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        match prep {
            Prep::Cancel => {
                return self
                    .prepared
                    .take()
                    .map(|_| ())
                    .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared));
            }
            _ if self.prepared.is_some() => return Err(Error::new(ErrorKind::AlreadyPrepared)),
            Prep::Insert => {
                self.prepared = Some(Prepared {
                    prep,
                    record: Record::new(),
                });
            }
            Prep::Replace | Prep::ReplaceNoLock => {
                let record = self.current_record()?;
                if prep == Prep::Replace {
                    let key = self.current.clone().unwrap_or_default();
                    let mut st = self.session.shared.state.lock();
                    let t = st
                        .trx
                        .as_mut()
                        .filter(|t| t.is_open())
                        .ok_or_else(|| Error::new(ErrorKind::NotInTransaction))?;
                    t.lock(self.tree, &key, true)?;
                }
                self.prepared = Some(Prepared { prep, record });
            }
        }
        Ok(())
    }

    /// Sets a column of the prepared update (JetSetColumn, `itagSequence` 1): `None` makes it
    /// null.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `ColumnNotFound` (-1507); `InvalidBufferSize` (-1047) /
    /// `ColumnTooBig` (-1506) for a value that does not fit the column; `NullInvalid` (-1504)
    /// for null in a NotNULL column; the session errors.
    pub fn set_column(&mut self, column: u32, value: Option<&[u8]>) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let col = self.def.column(column)?.clone();
        let p = self
            .prepared
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
        if let Some(v) = value {
            col.def.check_value(v)?;
            p.record.set(
                column,
                1,
                Some(TaggedValue {
                    data: v.to_vec(),
                    separated: false,
                }),
            )
        } else {
            if col.def.grbit.contains(ColumnGrbit::NOT_NULL) {
                return Err(Error::new(ErrorKind::NullInvalid).with_message(col.def.name));
            }
            p.record.set(column, 1, None)
        }
    }

    /// The primary key of a record.
    fn key_of(&self, rec: &Record) -> Result<Vec<u8>> {
        let Some(ix) = self.def.primary() else {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            #[expect(
                clippy::big_endian_bytes,
                reason = "implicit keys sort in insertion order"
            )]
            return Ok(n.to_be_bytes().to_vec());
        };
        let values: Vec<Option<Vec<u8>>> = ix
            .segments
            .iter()
            .map(|s| {
                rec.get(s.column, 1).map(|v| v.data).or_else(|| {
                    self.def
                        .column(s.column)
                        .ok()
                        .and_then(|c| c.def.default.clone())
                })
            })
            .collect();
        if ix.grbit & IndexGrbit::DISALLOW_NULL.bits() != 0 && values.iter().any(Option::is_none) {
            return Err(Error::new(ErrorKind::NullKeyDisallowed));
        }
        let refs: Vec<Option<&[u8]>> = values.iter().map(Option::as_deref).collect();
        self.make_key(&refs)
    }

    /// Writes the prepared update (JetUpdate) and returns the record's bookmark (its primary
    /// key); the cursor moves to the record.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `KeyDuplicate` (-1605) for an insert whose primary key
    /// exists; `RecordPrimaryChanged` (-1604) for a replace that changes the primary key;
    /// `NullInvalid` (-1504) for a NotNULL column without a value; `RecordTooBig` (-1026);
    /// `WriteConflict` (-1102); `TransReadOnly` (-1110); `VersionStoreOutOfMemory` (-1069);
    /// the session errors. On error the update stays prepared.
    pub fn update(&mut self) -> Result<Vec<u8>> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let p = self
            .prepared
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
        for c in &self.def.columns {
            if !c.deleted
                && c.def.grbit.contains(ColumnGrbit::NOT_NULL)
                && p.record.count(c.id) == 0
                && c.def.default.is_none()
            {
                return Err(Error::new(ErrorKind::NullInvalid).with_message(c.def.name.clone()));
            }
        }
        let bytes = p.record.encode(&self.layout)?;
        let max = self.engine.db(self.tree.0 >> 24)?.db.max_record_len();
        let key = self.key_of(&p.record)?;
        if bytes.len() + key.len() > max {
            return Err(Error::new(ErrorKind::RecordTooBig).with_message(format!(
                "the record has {} bytes, a page holds at most {max}",
                bytes.len() + key.len()
            )));
        }
        let insert = p.prep == Prep::Insert;
        if !insert && self.current.as_deref() != Some(&key[..]) {
            return Err(Error::new(ErrorKind::RecordPrimaryChanged));
        }
        let tree = self.tree;
        self.session.in_transaction(&self.engine, |t| {
            if insert {
                t.insert(tree, &key, &bytes)
            } else {
                t.replace(tree, &key, &bytes)
            }
        })?;
        self.prepared = None;
        self.current = Some(key.clone());
        Ok(key)
    }

    /// Deletes the current record (JetDelete).
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603); `RecordDeleted` (-1017) if it was deleted already;
    /// `WriteConflict` (-1102); `TransReadOnly` (-1110); the session errors.
    pub fn delete(&mut self) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let key = self
            .current
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let tree = self.tree;
        self.session
            .in_transaction(&self.engine, |t| t.delete(tree, &key))
            .map_err(|e| {
                if e.kind() == ErrorKind::RecordNotFound {
                    Error::new(ErrorKind::RecordDeleted)
                } else {
                    e
                }
            })
    }

    /// Moves to the record with bookmark `bookmark` (JetGotoBookmark).
    ///
    /// # Errors
    /// `RecordDeleted` (-1017) if no visible record has it; the session errors.
    pub fn goto_bookmark(&mut self, bookmark: &[u8]) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        let tree = self.engine.store.tree(self.tree)?;
        let node = tree.get_opt(bookmark)?;
        if self.visible(bookmark, node)?.is_none() {
            return Err(Error::new(ErrorKind::RecordDeleted));
        }
        self.current = Some(bookmark.to_vec());
        Ok(())
    }

    /// The bookmark of the current record (JetGetBookmark): its primary key.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603).
    pub fn bookmark(&self) -> Result<Vec<u8>> {
        self.current
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))
    }
}
