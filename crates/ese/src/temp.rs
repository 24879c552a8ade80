//! Temporary tables and sorts (ESE's `JetOpenTempTable`): rows sorted by their key columns,
//! private to the session that opened them, never logged and never recovered.
//!
//! # Storage
//! Rows are kept in memory, sorted, while they are small. When the rows in memory pass a
//! quarter of the instance's cache budget (`JET_paramCacheSizeMax`; so a sort never holds
//! much more memory than the cache it competes with), they are written out, in key order, as
//! a *run*: a B+tree in a temporary database file (`tmp-<process>-<n>.edb` in the instance's
//! system path, created on the first spill, with its own cache of a quarter of the budget and
//! no log). More rows fill memory again and make more runs. The first read merges every run
//! and the rows still in memory into one B+tree in key order (ESE materializes a sort the
//! same way); from then on rows go straight into that tree. Closing the table, ending its
//! session or terminating the instance deletes the file; a file left by a killed process is
//! removed by the next init that uses the same system path (it is no longer locked).
//!
//! # Rows
//! A row is a record in the format of `record.rs`. Its node key is the normalized key of the
//! `TT_KEY` columns (as an index key, at most 255 bytes), followed for a table that is not
//! unique by an 8-byte big-endian insertion number, so equal keys keep their insertion order.
//! Long values (LongBinary, LongText) stay in the row (ESE's `JET_bitTTIntrinsicLVsOnly`
//! behaviour): a temporary table has no long-value tree, so a row's values together are
//! limited by what one record holds.

#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bitflags::bitflags;
use ese_btree::{Cursor, Database, DbOptions, MemWal, SeekOp, Tree, TreeKind};
use ese_core::fs::FileSystem;
use ese_core::{Error, ErrorKind, ObjId, Result};
use parking_lot::Mutex;

use crate::catalog::{ColumnEntry, IndexEntry, Segment, TableDef};
use crate::column::{
    ColumnArea, ColumnDef, ColumnGrbit, FIRST_FIXED, FIRST_TAGGED, FIRST_VARIABLE,
};
use crate::index::{
    IndexGrbit, KEY_MOST_LEGACY, MadeKey, MakeKeyGrbit, SeekResult, make_key, record_keys,
};
use crate::record::{Record, RecordLayout, TaggedValue};
use crate::session::Session;
use crate::table::{Move, Prep, Seek};

bitflags! {
    /// Options of a temporary table (ESE's `JET_bitTT*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TempTableGrbit: u32 {
        /// `JET_bitTTIndexed` (0x1): the table can be sought ([`TempTable::seek`]).
        const INDEXED = 0x1;
        /// `JET_bitTTUnique` (0x2): no two rows may have the same key (`KeyDuplicate`).
        const UNIQUE = 0x2;
        /// `JET_bitTTUpdatable` (0x4): rows can be replaced and deleted.
        const UPDATABLE = 0x4;
        /// `JET_bitTTScrollable` (0x8): the table can be read backwards (always true here
        /// unless `FORWARD_ONLY`).
        const SCROLLABLE = 0x8;
        /// `JET_bitTTSortNullsHigh` (0x10): nulls sort after values.
        const SORT_NULLS_HIGH = 0x10;
        /// `JET_bitTTForceMaterialization` (0x20): keep the rows in the temporary database
        /// from the start.
        const FORCE_MATERIALIZATION = 0x20;
        /// `JET_bitTTForwardOnly` (0x40): the table is read forward only (move first and next).
        const FORWARD_ONLY = 0x40;
    }
}

/// Bytes of bookkeeping counted per row kept in memory (map node, two vectors).
const ROW_OVERHEAD: usize = 64;
/// The smallest in-memory budget of a sort (bytes), whatever the cache size.
const MIN_SORT_BYTES: usize = 64 << 10;

/// Number of temporary databases created by this process (names them uniquely).
static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

/// The temporary database of a spilled sort.
struct Disk {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    db: Database,
    /// Sorted runs written so far, not yet merged.
    runs: Vec<Tree>,
    /// The merged tree, once the table was read (or materialized from the start).
    merged: Option<Tree>,
    /// A cursor on the merged tree kept between moves (moving next from where it is costs
    /// no descent).
    nav: Option<Cursor>,
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.nav = None;
        self.runs.clear();
        self.merged = None;
        if let Err(e) = self.fs.remove_file(&self.path) {
            log::warn!(target: "ese", "temporary database {} not removed: {e}", self.path.display());
        }
    }
}

/// The rows of a temporary table.
struct Store {
    mem: BTreeMap<Vec<u8>, Vec<u8>>,
    mem_bytes: usize,
    disk: Option<Disk>,
}

/// What the session keeps of a temporary table, to close it when the session ends.
pub(crate) struct TempShared {
    store: Mutex<Option<Store>>,
}

impl TempShared {
    /// Closes the table: its rows are dropped and its temporary database deleted.
    pub(crate) fn close(&self) {
        self.store.lock().take();
    }
}

impl std::fmt::Debug for TempShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempShared").finish_non_exhaustive()
    }
}

/// Where a temp table cursor is when it is on no row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Off {
    BeforeFirst,
    AfterLast,
}

/// A temporary table (ESE's `JET_TABLEID` of `JetOpenTempTable`): a sort of rows by their
/// key columns, private to its session.
///
/// # Drop semantics
/// Dropping it closes it (as [`TempTable::close`]); ending the session or terminating the
/// instance closes it too, after which every call returns `InvalidTableId` (-1310) (or the
/// session's `InvalidSesid`).
pub struct TempTable {
    session: Session,
    shared: Arc<TempShared>,
    grbit: TempTableGrbit,
    def: TableDef,
    ix: IndexEntry,
    layout: RecordLayout,
    ids: Vec<u32>,
    sort_bytes: usize,
    page_size: u32,
    cache_bytes: u64,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    seq: u64,
    pos: Option<Vec<u8>>,
    /// The current row's data as read when the cursor moved to it (`None` once deleted).
    row: Option<Vec<u8>>,
    off: Off,
    prepared: Option<(Prep, Record)>,
    key: Option<MadeKey>,
    pad: usize,
}

impl std::fmt::Debug for TempTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempTable")
            .field("grbit", &self.grbit)
            .field("columns", &self.ids)
            .finish_non_exhaustive()
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::InvalidTableId).with_message("the temporary table is closed")
}

fn on_sort(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOnSort).with_message(what.to_owned())
}

impl Session {
    /// Opens a temporary table (JetOpenTempTable): a sort of rows by the columns flagged
    /// [`ColumnGrbit::TT_KEY`] (in the order given; [`ColumnGrbit::TT_DESCENDING`] for
    /// descending), private to this session. Column ids are assigned as for a table and
    /// returned by [`TempTable::column_ids`], one per column given, in order. Rows stay in
    /// memory while small and spill to a temporary database in the instance's system path
    /// beyond a quarter of the cache budget (see the module docs of `temp`).
    ///
    /// # Errors
    /// `InvalidGrbit` (-900) for unknown bits, or `FORWARD_ONLY` with `SCROLLABLE`;
    /// the column definition errors of [`ColumnDef::validate`]; `ColumnDuplicate` (-1508);
    /// `TooManyKeys` (-1016) for more than 16 key columns; `TooManyColumns` (-1040); the
    /// file-system errors of creating the temporary database with `FORCE_MATERIALIZATION`;
    /// the session and instance errors.
    pub fn open_temp_table(
        &self,
        columns: &[ColumnDef],
        grbit: TempTableGrbit,
    ) -> Result<TempTable> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        if TempTableGrbit::from_bits(grbit.bits()).is_none()
            || grbit.contains(TempTableGrbit::FORWARD_ONLY | TempTableGrbit::SCROLLABLE)
        {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let mut def = TableDef {
            name: "temp".into(),
            objid: ObjId(0),
            lv_objid: ObjId(0),
            next_ids: [FIRST_FIXED, FIRST_VARIABLE, FIRST_TAGGED],
            columns: Vec::new(),
            indexes: Vec::new(),
        };
        let mut ids = Vec::with_capacity(columns.len());
        let mut segments = Vec::new();
        for c in columns {
            let mut c = c.clone();
            let key = c.grbit.contains(ColumnGrbit::TT_KEY);
            let desc = c.grbit.contains(ColumnGrbit::TT_DESCENDING);
            c.grbit
                .remove(ColumnGrbit::TT_KEY | ColumnGrbit::TT_DESCENDING);
            c.validate()?;
            if def
                .columns
                .iter()
                .any(|e| e.def.name.eq_ignore_ascii_case(&c.name))
            {
                return Err(Error::new(ErrorKind::ColumnDuplicate).with_message(c.name.clone()));
            }
            let slot = match c.area() {
                ColumnArea::Fixed => 0,
                ColumnArea::Variable => 1,
                ColumnArea::Tagged => 2,
            };
            let id = def.next_ids.get(slot).copied().unwrap_or(0);
            if id > [127, 255, 65_535].get(slot).copied().unwrap_or(0) {
                return Err(Error::new(ErrorKind::TooManyColumns));
            }
            if let Some(n) = def.next_ids.get_mut(slot) {
                *n += 1;
            }
            if key {
                segments.push(Segment {
                    column: id,
                    descending: desc,
                    fixed_binary: c.is_fixed_binary(),
                });
            }
            ids.push(id);
            def.columns.push(ColumnEntry {
                id,
                def: c,
                deleted: false,
            });
        }
        if segments.len() > crate::index::SEGMENTS_MOST {
            return Err(Error::new(ErrorKind::TooManyKeys));
        }
        let mut ixg = IndexGrbit::PRIMARY;
        if grbit.contains(TempTableGrbit::SORT_NULLS_HIGH) {
            ixg |= IndexGrbit::SORT_NULLS_HIGH;
        }
        let ix = IndexEntry {
            name: "sort".into(),
            objid: ObjId(0),
            grbit: ixg.bits(),
            key_most: KEY_MOST_LEGACY,
            segments,
        };
        let params = &engine.params;
        let shared = Arc::new(TempShared {
            store: Mutex::new(Some(Store {
                mem: BTreeMap::new(),
                mem_bytes: 0,
                disk: None,
            })),
        });
        let t = TempTable {
            session: self.clone(),
            shared: Arc::clone(&shared),
            grbit,
            layout: def.layout(),
            def,
            ix,
            ids,
            sort_bytes: usize::try_from(params.cache_bytes / 4)
                .unwrap_or(usize::MAX)
                .max(MIN_SORT_BYTES),
            page_size: params.page_size,
            cache_bytes: params.cache_bytes,
            dir: params.system_path.clone(),
            fs: Arc::clone(&engine.fs),
            seq: 0,
            pos: None,
            row: None,
            off: Off::BeforeFirst,
            prepared: None,
            key: None,
            pad: usize::from(KEY_MOST_LEGACY) + 9,
        };
        if grbit.contains(TempTableGrbit::FORCE_MATERIALIZATION) {
            let mut g = shared.store.lock();
            let store = g.as_mut().ok_or_else(closed)?;
            t.materialize(store)?;
        }
        let mut st = self.shared.state.lock();
        st.temp_tables.retain(|w| w.strong_count() > 0);
        st.temp_tables
            .push(Arc::downgrade(&shared) as Weak<TempShared>);
        drop(st);
        Ok(t)
    }
}

/// The first node of `c` with a key `>= key` (`>` with `strict`).
fn tree_ge(tree: &Tree, key: &[u8], strict: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut c = tree.cursor();
    let op = if strict { SeekOp::Gt } else { SeekOp::Ge };
    let on = c_seek(&mut c, key, op)?;
    Ok(node_at(&c, on))
}

/// The last node with a key `<= key` (`<` with `strict`).
fn tree_le(tree: &Tree, key: &[u8], strict: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut c = tree.cursor();
    let op = if strict { SeekOp::Lt } else { SeekOp::Le };
    let on = c_seek(&mut c, key, op)?;
    Ok(node_at(&c, on))
}

fn c_seek(c: &mut Cursor, key: &[u8], op: SeekOp) -> Result<bool> {
    match c.seek(key, op) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::RecordNotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn node_at(c: &Cursor, on: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    on.then(|| (c.key().to_vec(), c.data().to_vec()))
}

impl Store {
    /// The first row with a key `>= key` (`>` with `strict`); the store is merged.
    fn ge(&self, key: &[u8], strict: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(t) = self.disk.as_ref().and_then(|d| d.merged.as_ref()) {
            return tree_ge(t, key, strict);
        }
        let lower = if strict {
            Bound::Excluded(key)
        } else {
            Bound::Included(key)
        };
        Ok(self
            .mem
            .range::<[u8], _>((lower, Bound::Unbounded))
            .next()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    /// The last row with a key `<= key` (`<` with `strict`); the store is merged.
    fn le(&self, key: &[u8], strict: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(t) = self.disk.as_ref().and_then(|d| d.merged.as_ref()) {
            return tree_le(t, key, strict);
        }
        let upper = if strict {
            Bound::Excluded(key)
        } else {
            Bound::Included(key)
        };
        Ok(self
            .mem
            .range::<[u8], _>((Bound::Unbounded, upper))
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    /// The kept cursor on the merged tree, if the store is merged.
    fn nav(&mut self) -> Option<&mut Cursor> {
        let d = self.disk.as_mut()?;
        let tree = d.merged.as_ref()?;
        Some(d.nav.get_or_insert_with(|| tree.cursor()))
    }

    fn first(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(c) = self.nav() {
            let on = c.move_first()?;
            return Ok(node_at(c, on));
        }
        self.ge(&[], false)
    }

    fn last(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(c) = self.nav() {
            let on = c.move_last()?;
            return Ok(node_at(c, on));
        }
        Ok(self
            .mem
            .iter()
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    /// The row after (`forward`) or before the row with key `key`.
    fn step(&mut self, key: &[u8], forward: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(c) = self.nav() {
            let on = if c.is_positioned() && c.key() == key {
                if forward {
                    c.move_next()?
                } else {
                    c.move_prev()?
                }
            } else {
                c_seek(c, key, if forward { SeekOp::Gt } else { SeekOp::Lt })?
            };
            return Ok(node_at(c, on));
        }
        if forward {
            self.ge(key, true)
        } else {
            self.le(key, true)
        }
    }

    /// Whether a row with node key `key` exists anywhere (memory, runs, merged tree).
    fn contains(&self, key: &[u8]) -> Result<bool> {
        if self.mem.contains_key(key) {
            return Ok(true);
        }
        if let Some(d) = &self.disk {
            for t in d.runs.iter().chain(d.merged.as_ref()) {
                if t.get_opt(key)?.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

impl TempTable {
    /// The column ids of the columns given at open, in order (JetOpenTempTable's
    /// `prgcolumnid`).
    pub fn column_ids(&self) -> &[u32] {
        &self.ids
    }

    /// Whether the rows went to the temporary database (the sort spilled, or was
    /// materialized).
    ///
    /// # Errors
    /// `InvalidTableId` (-1310) once closed.
    pub fn is_materialized(&self) -> Result<bool> {
        let g = self.shared.store.lock();
        Ok(g.as_ref().ok_or_else(closed)?.disk.is_some())
    }

    /// The path of the temporary database, once the rows spilled to one.
    ///
    /// # Errors
    /// `InvalidTableId` (-1310) once closed.
    pub fn temp_database_path(&self) -> Result<Option<PathBuf>> {
        let g = self.shared.store.lock();
        Ok(g.as_ref()
            .ok_or_else(closed)?
            .disk
            .as_ref()
            .map(|d| d.path.clone()))
    }

    /// Closes the table (JetCloseTable): its rows are dropped and its temporary database
    /// deleted.
    pub fn close(self) {
        self.shared.close();
    }

    fn new_disk(&self) -> Result<Disk> {
        let n = TEMP_FILES.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("tmp-{}-{n}.edb", std::process::id()));
        if self.fs.exists(&path)? {
            self.fs.remove_file(&path)?;
        }
        self.fs.create_dir_all(&self.dir)?;
        let options = DbOptions::new()
            .page_size(self.page_size)
            .cache_bytes(self.cache_bytes / 4)
            // A temporary database is never recovered: no torn-page protection needed.
            .doublewrite(false);
        let db = Database::create(&self.fs, &path, options, Arc::new(MemWal::discarding()))
            .map_err(|e| {
                Error::new(ErrorKind::TempFileOpenError)
                    .with_path(&path)
                    .with_message(e.to_string())
            })?;
        Ok(Disk {
            fs: Arc::clone(&self.fs),
            path,
            db,
            runs: Vec::new(),
            merged: None,
            nav: None,
        })
    }

    /// Writes the rows in memory as a sorted run in the temporary database.
    fn spill(&self, store: &mut Store) -> Result<()> {
        if store.disk.is_none() {
            store.disk = Some(self.new_disk()?);
        }
        let Some(disk) = store.disk.as_mut() else {
            return Err(Error::new(ErrorKind::InternalError));
        };
        let run = disk.db.create_tree(TreeKind::Table)?;
        for (k, v) in &store.mem {
            run.insert(k, v)?;
        }
        disk.runs.push(run);
        store.mem.clear();
        store.mem_bytes = 0;
        Ok(())
    }

    /// Makes the rows one sorted tree in the temporary database: merges the runs and the
    /// rows in memory (no-op when already merged).
    fn materialize(&self, store: &mut Store) -> Result<()> {
        if store.disk.as_ref().is_some_and(|d| d.merged.is_some()) {
            return Ok(());
        }
        if !store.mem.is_empty() || store.disk.is_none() {
            self.spill(store)?;
        }
        let Some(disk) = store.disk.as_mut() else {
            return Err(Error::new(ErrorKind::InternalError));
        };
        let merged = disk.db.create_tree(TreeKind::Table)?;
        let mut cursors: Vec<Cursor> = Vec::with_capacity(disk.runs.len());
        let mut heap = BinaryHeap::new();
        for (i, r) in disk.runs.iter().enumerate() {
            let mut c = r.cursor();
            if c.move_first()? {
                heap.push(std::cmp::Reverse((c.key().to_vec(), i)));
            }
            cursors.push(c);
        }
        while let Some(std::cmp::Reverse((k, i))) = heap.pop() {
            let Some(c) = cursors.get_mut(i) else {
                return Err(Error::new(ErrorKind::InternalError));
            };
            merged.insert(&k, c.data())?;
            if c.move_next()? {
                heap.push(std::cmp::Reverse((c.key().to_vec(), i)));
            }
        }
        drop(cursors);
        // The runs' pages stay allocated until the file is deleted at close.
        disk.runs.clear();
        disk.merged = Some(merged);
        Ok(())
    }

    /// Runs `f` on the open store, merged first when `merge`.
    fn with_store<T>(
        &self,
        merge: bool,
        f: impl FnOnce(&Self, &mut Store) -> Result<T>,
    ) -> Result<T> {
        let _call = self.session.enter_owned(false)?;
        let shared = Arc::clone(&self.shared);
        let mut g = shared.store.lock();
        let store = g.as_mut().ok_or_else(closed)?;
        if merge && store.disk.is_some() {
            self.materialize(store)?;
        }
        f(self, store)
    }

    /// Prepares a row (JetPrepareUpdate): `Insert` always; `Replace` (of the current row's
    /// non-key columns) only on an `UPDATABLE` table; `Cancel`.
    ///
    /// # Errors
    /// `AlreadyPrepared` (-1607); `UpdateNotPrepared` (-1609) to cancel nothing;
    /// `InvalidOnSort` (-1702) for a replace on a table that is not updatable;
    /// `NoCurrentRecord` (-1603) for a replace off a row; `InvalidTableId` (-1310) once
    /// closed; the session errors.
    pub fn prepare_update(&mut self, prep: Prep) -> Result<()> {
        if prep == Prep::Cancel {
            let _call = self.session.enter(false)?;
            return self
                .prepared
                .take()
                .map(|_| ())
                .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared));
        }
        if self.prepared.is_some() {
            return Err(Error::new(ErrorKind::AlreadyPrepared));
        }
        let rec = if prep == Prep::Insert {
            let _call = self.session.enter(false)?;
            Record::new()
        } else {
            if !self.grbit.contains(TempTableGrbit::UPDATABLE) {
                return Err(on_sort("the temporary table is not updatable"));
            }
            self.current_record()?
        };
        self.prepared = Some((prep, rec));
        Ok(())
    }

    /// Sets a column of the prepared row (JetSetColumn, `itagSequence` 1); `None` is null.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `ColumnNotFound` (-1507); `InvalidBufferSize` (-1047) /
    /// `ColumnTooBig` (-1506); `NullInvalid` (-1504); the session errors.
    pub fn set_column(&mut self, column: u32, value: Option<&[u8]>) -> Result<()> {
        self.set_column_itag(column, value, 1)
    }

    /// Sets value `itag` of a column of the prepared row, as
    /// [`Table::set_column_itag`](crate::Table::set_column_itag).
    ///
    /// # Errors
    /// As [`TempTable::set_column`]; `BadItagSequence` (-1518).
    pub fn set_column_itag(
        &mut self,
        column: u32,
        value: Option<&[u8]>,
        itag: usize,
    ) -> Result<()> {
        let _call = self.session.enter(false)?;
        let col = self.def.column(column)?.clone();
        let (_, rec) = self
            .prepared
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
        let multi = col.def.grbit.contains(ColumnGrbit::MULTI_VALUED);
        let itag = match itag {
            0 if !multi => 1,
            n if n > 1 && !multi => return Err(Error::new(ErrorKind::BadItagSequence)),
            n => n,
        };
        match value {
            Some(v) => {
                col.def.check_value(v)?;
                rec.set(
                    column,
                    itag,
                    Some(TaggedValue {
                        data: v.to_vec(),
                        separated: false,
                    }),
                )
            }
            None if col.def.grbit.contains(ColumnGrbit::NOT_NULL) => {
                Err(Error::new(ErrorKind::NullInvalid).with_message(col.def.name))
            }
            None => rec.set(column, itag, None),
        }
    }

    /// The node key of a row.
    fn node_key(&mut self, rec: &Record) -> Result<Vec<u8>> {
        let mut k = record_keys(&self.def, &self.ix, rec)?
            .into_iter()
            .next()
            .unwrap_or_default();
        if !self.grbit.contains(TempTableGrbit::UNIQUE) {
            #[expect(
                clippy::big_endian_bytes,
                reason = "insertion numbers sort in insertion order"
            )]
            k.extend_from_slice(&self.seq.to_be_bytes());
            self.seq += 1;
        }
        Ok(k)
    }

    /// Writes the prepared row (JetUpdate). An inserted row goes where its key sorts; the
    /// cursor does not move.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `KeyDuplicate` (-1605) for a key a `UNIQUE` table holds;
    /// `RecordPrimaryChanged` (-1604) for a replace that changes the key; `NullInvalid`
    /// (-1504); `RecordTooBig` (-1026); `InvalidTableId` (-1310) once closed; the temporary
    /// database's errors; the session errors. On error the row stays prepared.
    pub fn update(&mut self) -> Result<()> {
        let (prep, rec) = self
            .prepared
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
        for c in &self.def.columns {
            if c.def.grbit.contains(ColumnGrbit::NOT_NULL)
                && rec.count(c.id) == 0
                && c.def.default.is_none()
            {
                return Err(Error::new(ErrorKind::NullInvalid).with_message(c.def.name.clone()));
            }
        }
        let data = rec.encode(&self.layout)?;
        let key = if prep == Prep::Insert {
            self.node_key(&rec)?
        } else {
            let pos = self
                .pos
                .clone()
                .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
            let mut k = record_keys(&self.def, &self.ix, &rec)?
                .into_iter()
                .next()
                .unwrap_or_default();
            if !self.grbit.contains(TempTableGrbit::UNIQUE) {
                k.extend_from_slice(pos.get(pos.len().saturating_sub(8)..).unwrap_or_default());
            }
            if k != pos {
                return Err(Error::new(ErrorKind::RecordPrimaryChanged));
            }
            k
        };
        let max = Database::max_record_len_for(self.page_size);
        if key.len() + data.len() > max {
            return Err(Error::new(ErrorKind::RecordTooBig).with_message(format!(
                "the row has {} bytes, a page holds at most {max}",
                key.len() + data.len()
            )));
        }
        let unique = self.grbit.contains(TempTableGrbit::UNIQUE);
        self.with_store(prep != Prep::Insert, |t, store| {
            if prep == Prep::Insert && unique && store.contains(&key)? {
                return Err(Error::new(ErrorKind::KeyDuplicate));
            }
            match store.disk.as_ref().and_then(|d| d.merged.as_ref()) {
                Some(tree) if prep == Prep::Insert => tree.insert(&key, &data)?,
                Some(tree) => tree.replace(&key, &data)?,
                None => {
                    let size = key.len() + data.len() + ROW_OVERHEAD;
                    if let Some(old) = store.mem.insert(key.clone(), data.clone()) {
                        store.mem_bytes = store
                            .mem_bytes
                            .saturating_sub(old.len() + key.len() + ROW_OVERHEAD);
                    }
                    store.mem_bytes += size;
                    if store.mem_bytes > t.sort_bytes {
                        t.spill(store)?;
                    }
                }
            }
            Ok(())
        })?;
        if prep != Prep::Insert {
            self.row = Some(data);
        }
        self.prepared = None;
        Ok(())
    }

    /// Deletes the current row of an `UPDATABLE` table (JetDelete); the cursor stays where
    /// the row was.
    ///
    /// # Errors
    /// `InvalidOnSort` (-1702) when the table is not updatable; `NoCurrentRecord` (-1603);
    /// `RecordDeleted` (-1017) if it was deleted already; `InvalidTableId` (-1310); the
    /// session errors.
    pub fn delete(&mut self) -> Result<()> {
        self.delete_row()?;
        self.row = None;
        Ok(())
    }

    fn delete_row(&mut self) -> Result<()> {
        if !self.grbit.contains(TempTableGrbit::UPDATABLE) {
            return Err(on_sort("the temporary table is not updatable"));
        }
        let pos = self
            .pos
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        self.with_store(true, |_, store| {
            match store.disk.as_ref().and_then(|d| d.merged.as_ref()) {
                Some(tree) => tree.delete(&pos).map_err(|e| {
                    if e.kind() == ErrorKind::RecordNotFound {
                        Error::new(ErrorKind::RecordDeleted)
                    } else {
                        e
                    }
                }),
                None => match store.mem.remove(&pos) {
                    Some(v) => {
                        store.mem_bytes = store
                            .mem_bytes
                            .saturating_sub(pos.len() + v.len() + ROW_OVERHEAD);
                        Ok(())
                    }
                    None => Err(Error::new(ErrorKind::RecordDeleted)),
                },
            }
        })
    }

    fn land(&mut self, row: Option<(Vec<u8>, Vec<u8>)>, forward: bool) -> Result<()> {
        if let Some((k, d)) = row {
            self.pos = Some(k);
            self.row = Some(d);
            Ok(())
        } else {
            self.pos = None;
            self.off = if forward {
                Off::AfterLast
            } else {
                Off::BeforeFirst
            };
            Err(Error::new(ErrorKind::NoCurrentRecord))
        }
    }

    /// Moves the cursor in key order (JetMove). A `FORWARD_ONLY` table moves only first and
    /// next.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) past either end; `InvalidOnSort` (-1702) for previous or
    /// last on a `FORWARD_ONLY` table; `InvalidTableId` (-1310); the session errors.
    pub fn move_to(&mut self, m: Move) -> Result<()> {
        if self.grbit.contains(TempTableGrbit::FORWARD_ONLY)
            && matches!(m, Move::Previous | Move::Last)
        {
            return Err(on_sort("the temporary table is forward-only"));
        }
        let (pos, off) = (self.pos.clone(), self.off);
        let (row, forward) = self.with_store(true, |_, store| {
            Ok(match (m, &pos) {
                (Move::First, _) => (store.first()?, true),
                (Move::Last, _) => (store.last()?, false),
                (Move::Next, Some(k)) => (store.step(k, true)?, true),
                (Move::Previous, Some(k)) => (store.step(k, false)?, false),
                (Move::Next, None) if off == Off::BeforeFirst => (store.first()?, true),
                (Move::Previous, None) if off == Off::AfterLast => (store.last()?, false),
                (Move::Next, None) => (None, true),
                (Move::Previous, None) => (None, false),
            })
        })?;
        self.land(row, forward)
    }

    fn current_record(&mut self) -> Result<Record> {
        self.with_store(false, |t, _| {
            if t.pos.is_none() {
                return Err(Error::new(ErrorKind::NoCurrentRecord));
            }
            let bytes = t
                .row
                .as_ref()
                .ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
            Record::decode(bytes, &t.layout)
        })
    }

    /// Retrieves a column of the current row (JetRetrieveColumn), or of the prepared row;
    /// `None` is null.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603); `RecordDeleted` (-1017); `ColumnNotFound` (-1507);
    /// `InvalidTableId` (-1310); the session errors.
    pub fn retrieve_column(&mut self, column: u32) -> Result<Option<Vec<u8>>> {
        self.retrieve_column_itag(column, 1)
    }

    /// Retrieves value `itag` (1-based) of a column of the current row, or of the prepared
    /// row.
    ///
    /// # Errors
    /// As [`TempTable::retrieve_column`]; `BadItagSequence` (-1518) for `itag` 0.
    pub fn retrieve_column_itag(&mut self, column: u32, itag: usize) -> Result<Option<Vec<u8>>> {
        if itag == 0 {
            return Err(Error::new(ErrorKind::BadItagSequence));
        }
        let col = self.def.column(column)?.clone();
        let rec = match &self.prepared {
            Some((_, r)) => {
                let _call = self.session.enter(false)?;
                r.clone()
            }
            None => self.current_record()?,
        };
        Ok(match rec.get(column, itag) {
            Some(v) => Some(v.data),
            None if itag == 1 => col.def.default,
            None => None,
        })
    }

    /// Adds a key column value to the search key (JetMakeKey), as
    /// [`Table::make_key`](crate::Table::make_key) on the table's key columns.
    ///
    /// # Errors
    /// As [`Table::make_key`](crate::Table::make_key).
    pub fn make_key(&mut self, value: Option<&[u8]>, grbit: MakeKeyGrbit) -> Result<()> {
        let _call = self.session.enter(false)?;
        make_key(&self.def, &self.ix, &mut self.key, value, grbit)
    }

    /// Seeks with the search key (JetSeek) on an `INDEXED` table, as
    /// [`Table::seek_key`](crate::Table::seek_key).
    ///
    /// # Errors
    /// `InvalidOnSort` (-1702) on a table without `INDEXED`; `KeyNotMade` (-1608);
    /// `RecordNotFound` (-1601); `InvalidTableId` (-1310); the session errors.
    pub fn seek(&mut self, op: Seek) -> Result<SeekResult> {
        if !self.grbit.contains(TempTableGrbit::INDEXED) {
            return Err(on_sort("the temporary table is not indexed"));
        }
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::new(ErrorKind::KeyNotMade))?;
        let unique = self.grbit.contains(TempTableGrbit::UNIQUE);
        let seck = move |k: &[u8]| -> Vec<u8> {
            let n = if unique {
                k.len()
            } else {
                k.len().saturating_sub(8)
            };
            k.get(..n).unwrap_or_default().to_vec()
        };
        let forward = matches!(op, SeekOp::Eq | SeekOp::Ge | SeekOp::Gt);
        let strict = matches!(op, SeekOp::Gt | SeekOp::Le);
        let found = self.with_store(true, |t, store| {
            let padded = |k: &[u8]| {
                let mut p = k.to_vec();
                p.resize(k.len() + t.pad, 0xFF);
                p
            };
            let mut row = if key.end_limit {
                store.ge(&padded(&key.bytes), false)?
            } else {
                store.ge(&key.bytes, false)?
            };
            while let Some((k, _)) = &row {
                let s = seck(k);
                match key.cmp_entry(&s) {
                    std::cmp::Ordering::Less => row = store.ge(k, true)?,
                    std::cmp::Ordering::Equal if strict => row = store.ge(&padded(&s), false)?,
                    _ => break,
                }
            }
            if forward {
                return Ok(row);
            }
            match row {
                Some((k, _)) => store.le(&k, true),
                None => store.last(),
            }
        })?;
        let Some((k, data)) = found else {
            self.pos = None;
            self.off = Off::BeforeFirst;
            return Err(Error::new(ErrorKind::RecordNotFound));
        };
        let equal = key.matches(&seck(&k)) && !matches!(op, SeekOp::Gt | SeekOp::Lt);
        if op == SeekOp::Eq && !equal {
            self.pos = None;
            self.off = Off::BeforeFirst;
            return Err(Error::new(ErrorKind::RecordNotFound));
        }
        self.pos = Some(k);
        self.row = Some(data);
        Ok(if equal {
            SeekResult::Equal
        } else {
            SeekResult::NotEqual
        })
    }
}

impl Drop for TempTable {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Removes temporary databases (`tmp-<process>-<n>.edb`) that a process which ended without
/// closing its temp tables (killed, or crashed) left in `dir`; returns how many. A temporary
/// database in use is locked exclusively by the process using it, so a file whose exclusive
/// lock can be taken belongs to nobody: it is removed while the lock is held. Best effort: a
/// file that cannot be inspected or removed stays (temp databases are never recovered, so a
/// leftover only costs disk space).
pub(crate) fn remove_stale_temp_databases(fs: &dyn FileSystem, dir: &std::path::Path) -> usize {
    let Ok(names) = fs.list(dir) else {
        return 0;
    };
    let mut removed = 0;
    for name in names {
        let Some(middle) = name
            .strip_prefix("tmp-")
            .and_then(|rest| rest.strip_suffix(".edb"))
        else {
            continue;
        };
        let well_formed = middle.split_once('-').is_some_and(|(pid, n)| {
            !pid.is_empty()
                && !n.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !well_formed {
            continue;
        }
        let path = dir.join(&name);
        let options = ese_core::fs::OpenOptions::read_write().lock(ese_core::fs::Lock::Exclusive);
        if let Ok(handle) = fs.open(&path, options) {
            if fs.remove_file(&path).is_ok() {
                removed += 1;
            }
            drop(handle);
        }
    }
    if removed > 0 {
        let _ = fs.sync_dir(dir);
    }
    removed
}
