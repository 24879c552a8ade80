//! Tables and cursors (ESE's `JET_TABLEID`): create and open tables, move on the current
//! index (primary or secondary), make keys and seek, index ranges, prepare/set/update,
//! retrieve, delete — every read through the session's snapshot, every write through its
//! transaction (or an implicit one at level 0), a record and its index entries together.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ese_btree::{Cursor, LeafHint, NodeFlags, SeekOp};
use ese_core::{Error, ErrorKind, ObjId, Result};
use ese_txn::{PhysState, ReadView, Transaction, node_state};

use crate::catalog::{self, CATALOG_OBJID, IndexEntry, TableDef};
use crate::column::{
    ColumnDef, ColumnGrbit, FIRST_FIXED, FIRST_TAGGED, FIRST_VARIABLE, validate_name,
};
use crate::database::DbId;
use crate::engine::{Engine, tree_id};
use crate::grbit::{RetrieveGrbit, SetGrbit};
use crate::index::{
    EntryLayout, INDEXES_MOST, IndexRange, MadeKey, check_index, primary_key, record_keys,
};
pub use crate::index::{IndexCreate, IndexGrbit};
use crate::lv::{LV_INTRINSIC_MOST, LV_KEY_PREFIX, LV_REF_LEN, LvRef, LvTree};
use crate::record::{Record, RecordLayout, RecordRef, TaggedValue};
use crate::session::Session;

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

/// Which value of a column [`Table::set_column_with`] changes, and where (ESE's
/// `JET_SETINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetInfo {
    /// `itagSequence`: the value of a multi-valued column (1-based; 0 appends a value).
    pub itag_sequence: usize,
    /// `ibLongValue`: the byte offset [`SetGrbit::OVERWRITE_LV`] writes at.
    pub ib_long_value: u64,
}

impl Default for SetInfo {
    /// The first value, offset 0.
    fn default() -> SetInfo {
        SetInfo {
            itag_sequence: 1,
            ib_long_value: 0,
        }
    }
}

/// Which value of a column [`Table::retrieve_column_with`] reads, and from where (ESE's
/// `JET_RETINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetInfo {
    /// `itagSequence`: the value of a multi-valued column (1-based).
    pub itag_sequence: usize,
    /// `ibLongValue`: the byte offset to read from (long columns only).
    pub ib_long_value: u64,
}

impl Default for RetInfo {
    /// The first value, offset 0.
    fn default() -> RetInfo {
        RetInfo {
            itag_sequence: 1,
            ib_long_value: 0,
        }
    }
}

/// What [`Table::retrieve_column_with`] read of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrievedColumn {
    /// The bytes from the offset, at most the length asked for.
    pub data: Vec<u8>,
    /// The value's length from the offset in bytes (ESE's `cbActual`; 0 at or past the end).
    pub actual_len: u64,
}

impl RetrievedColumn {
    /// Whether `data` is cut short of `actual_len` (ESE's `JET_wrnBufferTruncated`, 1006).
    pub fn is_truncated(&self) -> bool {
        self.actual_len > self.data.len() as u64
    }
}

/// One column to read with [`Table::retrieve_columns`] and what was read (ESE's
/// `JET_RETRIEVECOLUMN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrieveColumn {
    /// The column id.
    pub column: u32,
    /// `itagSequence`: the value of a multi-valued column (1-based).
    pub itag_sequence: usize,
    /// [`RetrieveGrbit::COPY`] and [`RetrieveGrbit::IGNORE_DEFAULT`].
    pub grbit: RetrieveGrbit,
    /// Out: the value's bytes (empty when null); the buffer is reused by later calls.
    pub data: Vec<u8>,
    /// Out: whether the value is null (ESE's `JET_wrnColumnNull`).
    pub is_null: bool,
}

impl RetrieveColumn {
    /// Value 1 of column `column`, no options, an empty buffer.
    pub fn new(column: u32) -> RetrieveColumn {
        RetrieveColumn {
            column,
            itag_sequence: 1,
            grbit: RetrieveGrbit::empty(),
            data: Vec::new(),
            is_null: true,
        }
    }

    /// The value read: `None` when null.
    pub fn value(&self) -> Option<&[u8]> {
        (!self.is_null).then_some(&self.data[..])
    }
}

/// Seek operators (ESE's `JET_bitSeek*`).
pub use ese_btree::SeekOp as Seek;

/// Whether the node tree cursor `c` is on, as the cursor copied it, is what every view sees,
/// so that the version store need not be asked: `tree` holds no versions
/// ([`ese_txn::VersionStore::may_have_versions`]), or the node's key has none
/// ([`ese_txn::VersionStore::may_have_key_versions`]) and the page has not changed since the
/// cursor read the node ([`Cursor::is_current`]). Asked after the cursor read the node. The
/// page is checked after the key's count: a rollback restores the page, then withdraws its
/// count, so a copy made before the restore (the change being rolled back) can meet a zero
/// count, but no longer an unchanged page.
pub(crate) fn node_settled(engine: &Engine, tree: ObjId, c: &Cursor) -> bool {
    let vs = &engine.vs;
    !vs.may_have_versions(tree) || (!vs.may_have_key_versions(tree, c.key()) && c.is_current())
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
    /// does not exist. Every secondary index gets a B+tree of its own, and the table a
    /// long-value tree for its separated long values.
    ///
    /// # Errors
    /// `InvalidName` (-1002) for a bad table, column or index name; `TableDuplicate` (-1303)
    /// if the table exists; `ColumnDuplicate` (-1508) for two columns with one name; the column
    /// definition errors of [`ColumnDef::validate`]; `ColumnRedundant` (-1510) for a second
    /// auto-increment column; `IndexInvalidDef` (-1406) for a bad key definition, a key
    /// naming an unknown column or a primary index with null-ignoring options; `TooManyKeys`
    /// (-1016) for more than 16 segments; `TooManyIndexes` (-1015) for more than 64 indexes;
    /// `IndexHasPrimary` (-1402) for two primary indexes; `IndexDuplicate` (-1403) for two
    /// indexes with one name; `CannotIndex` (-1071) for an escrow column in a key;
    /// `InvalidGrbit` (-900) for unknown index options; `InvalidDatabaseId` (-1010);
    /// `OutOfDatabaseSpace` (-1012) / disk errors when its trees cannot be allocated;
    /// `TransReadOnly` (-1110) in a read-only transaction; `WriteConflict` (-1102) if another
    /// transaction is creating the same table; the session and instance errors.
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
            def.push_column(c.clone())?;
        }
        if create.indexes.len() > INDEXES_MOST {
            return Err(Error::new(ErrorKind::TooManyIndexes)
                .with_message(format!("at most {INDEXES_MOST} indexes")));
        }
        // The primary index first: secondary indexes size their bookmarks by it.
        let mut ordered: Vec<&IndexCreate> = create.indexes.iter().collect();
        ordered.sort_by_key(|ix| !ix.grbit.contains(IndexGrbit::PRIMARY));
        for ix in ordered {
            if def.index(&ix.name).is_some() {
                return Err(Error::new(ErrorKind::IndexDuplicate).with_message(ix.name.clone()));
            }
            if ix.grbit.contains(IndexGrbit::PRIMARY) {
                if def.primary().is_some() {
                    return Err(Error::new(ErrorKind::IndexHasPrimary));
                }
                check_primary_grbit(ix.grbit)?;
            }
            let entry = check_index(&def, ix, d.db.max_key_len())?;
            def.indexes.push(entry);
        }
        // Keep the caller's order in the catalog.
        def.indexes.sort_by_key(|e| {
            create
                .indexes
                .iter()
                .position(|i| i.name.eq_ignore_ascii_case(&e.name))
        });
        let key = catalog::table_key(&create.name);
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        self.in_transaction(&engine, |t| {
            if t.read(cat, &key)?.is_some() {
                return Err(Error::new(ErrorKind::TableDuplicate).with_message(create.name.clone()));
            }
            // Trees are allocated outside the transaction: a rollback leaves them unused
            // (their pages stay owned), as the catalog never names them.
            let tree = d.db.create_tree(ese_btree::TreeKind::Table)?;
            def.objid = tree.objid();
            engine.store.register(tree_id(d.dbid, tree.objid()), tree);
            let lv = d.db.create_tree(ese_btree::TreeKind::LongValue)?;
            def.lv_objid = lv.objid();
            engine.store.register(tree_id(d.dbid, lv.objid()), lv);
            for ix in &mut def.indexes {
                if ix.is_primary() {
                    ix.objid = def.objid;
                } else {
                    let it = d.db.create_tree(ese_btree::TreeKind::Index)?;
                    ix.objid = it.objid();
                    engine.store.register(tree_id(d.dbid, it.objid()), it);
                }
            }
            engine.catalog_write(|| t.insert(cat, &key, &def.encode()))
        })
    }

    /// Opens a cursor on a table (JetOpenTable). The cursor's current index is the primary
    /// index, and it is before the first record.
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
        let key = catalog::table_key(name);
        let read = || -> Result<Vec<u8>> {
            engine
                .vs
                .read(cat, &key, &self.read_view())?
                .value()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::new(ErrorKind::ObjectNotFound).with_message(name.to_owned()))
        };
        let bytes = read()?;
        let def = TableDef::decode(&bytes)?;
        let tree = tree_id(d.dbid, def.objid);
        // The cursor counts as open before it touches the trees, and the catalog is read
        // again: a deletion whose trees were freed in between shows there (it committed
        // before the freeing), so no cursor reaches a freed tree.
        let handle = self.register_cursor(&engine, tree);
        let ready = (|| {
            let again = TableDef::decode(&read()?)?;
            if again.objid != def.objid {
                return Err(Error::new(ErrorKind::ObjectNotFound).with_message(name.to_owned()));
            }
            register_trees(&engine, d.dbid, &def)?;
            engine.implicit_key_counter(tree)
        })();
        let seq = ready.inspect_err(|_| handle.close())?;
        let cur = CurIndex::primary(&def, tree);
        Ok(Table {
            handle,
            session: self.clone(),
            engine,
            layout: def.layout(),
            def: Arc::new(def),
            def_bytes: bytes,
            def_synced: None,
            tree,
            pad: d.db.max_key_len() + 1,
            cur,
            pos: None,
            current: None,
            off: Off::BeforeFirst(None),
            prepared: None,
            scratch: UpdateScratch::default(),
            seq,
            key: None,
            seek_key: Vec::new(),
            range: None,
            nav: None,
            landed: RecordCache::default(),
            rec_cache: parking_lot::Mutex::new(RecordCache::default()),
            kept_call: None,
        })
    }
}

/// Null-ignoring options make no sense on the index the records are stored in.
fn check_primary_grbit(g: IndexGrbit) -> Result<()> {
    if g.intersects(
        IndexGrbit::IGNORE_NULL | IndexGrbit::IGNORE_ANY_NULL | IndexGrbit::IGNORE_FIRST_NULL,
    ) {
        return Err(Error::new(ErrorKind::IndexInvalidDef)
            .with_message("a primary index cannot ignore null keys"));
    }
    Ok(())
}

/// Makes every tree of a table reachable (they may have been created by a transaction of
/// another session).
pub(crate) fn register_trees(engine: &Engine, dbid: u32, def: &TableDef) -> Result<()> {
    let d = engine.db(dbid)?;
    // A table created before long-value trees existed has `lv_objid` 0 and no such tree.
    let lv = Some(def.lv_objid).filter(|o| o.0 != 0);
    for objid in std::iter::once(def.objid)
        .chain(lv)
        .chain(def.indexes.iter().map(|i| i.objid))
    {
        let id = tree_id(dbid, objid);
        if engine.store.tree(id).is_err() {
            engine.store.register(id, d.db.open_tree(objid)?);
        }
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) prep: Prep,
    pub(crate) record: Record,
    /// The record's bytes when a replace was prepared (`ReplaceNoLock` compares them at
    /// update, as ESE compares a record checksum).
    pub(crate) original: Option<Vec<u8>>,
}

/// The cursor's entry after an update.
pub(crate) enum NewEntry {
    /// The entry is the bookmark (the current index is the primary one).
    Bookmark,
    /// The record's entry in the current (secondary) index, if it has one.
    Entry(Option<EntryPos>),
}

/// What an update leaves for the next one on the same cursor: the record emptied
/// ([`Record::recycle`]), its value buffers, the buffer its encoding was written to, and the
/// buffer a delete copies the current bookmark into.
#[derive(Debug, Default)]
pub(crate) struct UpdateScratch {
    record: Option<Record>,
    bufs: Vec<Vec<u8>>,
    encoded: Vec<u8>,
    bookmark: Vec<u8>,
}

impl UpdateScratch {
    /// Keeps `record`'s allocations for the next update.
    fn keep(&mut self, mut record: Record) {
        record.recycle(&mut self.bufs);
        self.record = Some(record);
    }
}

/// What makes a definition check of [`Table::sync_def`] still valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DefSynced {
    trx: ese_core::TrxId,
    undone: u64,
    catalog_epoch: u64,
    /// The definition was read as committed (under a lock of its own), not from a version
    /// this transaction wrote: while the catalog epoch stays the same, a later transaction
    /// may reuse it.
    committed: bool,
}

/// The current index of a cursor.
#[derive(Clone, Debug)]
pub(crate) struct CurIndex {
    /// Its definition; `None` for the implicit sequential index of a table without primary
    /// index.
    pub(crate) ix: Option<IndexEntry>,
    pub(crate) tree: ObjId,
    pub(crate) layout: EntryLayout,
}

impl CurIndex {
    pub(crate) fn primary(def: &TableDef, tree: ObjId) -> CurIndex {
        CurIndex {
            ix: def.primary().cloned(),
            tree,
            layout: EntryLayout::Primary,
        }
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.layout == EntryLayout::Primary
    }
}

/// Where a cursor is when it is on no entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Off {
    /// Before the first entry; a move next resumes after the node key, if any (where a
    /// backward move stopped at a lower range limit), else from the first entry.
    BeforeFirst(Option<Vec<u8>>),
    /// After the last entry; a move previous resumes before the node key, if any.
    AfterLast(Option<Vec<u8>>),
}

/// What [`Table::step_primary`] did.
enum Step {
    /// Nothing: the kept cursor is not on the current entry (the general path seeks).
    NotTaken,
    /// The step landed on a visible record, now the current entry.
    Done,
    /// The kept cursor stepped (onto a node when `true`), and landing is left to the caller.
    Moved(bool),
}

/// An entry's node key and the length of its secondary-key part.
pub(crate) type EntryPos = (Vec<u8>, usize);

/// Puts `entry` (with a secondary-key part of `seckey_len` bytes) in `pos`, in the buffer it
/// had ([`Table::set_pos`]).
fn put_pos(pos: &mut Option<EntryPos>, entry: &[u8], seckey_len: usize) {
    match pos {
        Some((buf, len)) => {
            buf.clear();
            buf.extend_from_slice(entry);
            *len = seckey_len;
        }
        None => *pos = Some((entry.to_vec(), seckey_len)),
    }
}

/// Puts `bytes` in `slot`, in the buffer it had.
fn put_bytes(slot: &mut Option<Vec<u8>>, bytes: &[u8]) {
    match slot {
        Some(buf) => {
            buf.clear();
            buf.extend_from_slice(bytes);
        }
        None => *slot = Some(bytes.to_vec()),
    }
}

/// The physical state of the node `c` is on, copied from the cursor.
fn cursor_state(c: &Cursor) -> PhysState {
    node_state(Some((c.data().to_vec(), c.flags())))
}

/// A visible entry a tree cursor is on (its node key is the cursor's key).
pub(crate) struct Landed {
    pub(crate) seckey_len: usize,
    /// The bookmark of its record: `None` on the primary index, where it is the node key
    /// (and the record's bytes went to the cursor's [`RecordCache`]).
    pub(crate) bookmark: Option<Vec<u8>>,
}

/// The current record's bytes kept by a cursor, so retrieving columns after a seek or a move
/// needs no second descent of the primary tree.
///
/// The bytes are those of the record with bookmark `bookmark` as the session's view saw it,
/// read after [`ese_txn::VersionStore::change_epoch`] had the value `epoch`. That counter
/// moves after every change or undo any transaction makes and around every commit, so while
/// it keeps that value no view has changed: the session's own view, a snapshot or the latest
/// committed state all still see these bytes (and a view the session switched to since, by
/// beginning or ending a transaction, sees the same committed state). The cache serves a
/// read only when the cursor's current bookmark is `bookmark` and the counter is `epoch`.
///
/// In [`Table::landed`], `at_cursor` says the bytes are not copied here: they are the data of
/// the node the kept tree cursor ([`Table::nav`]) is on, the cursor the move or seek that
/// filled the cache landed with (moves and seeks put their cursor back there, and a cursor
/// put there later was read later, so while the epoch is unchanged its node is the same).
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    bookmark: Vec<u8>,
    bytes: Vec<u8>,
    epoch: u64,
    valid: bool,
    at_cursor: bool,
}

impl RecordCache {
    /// Whether the kept bytes are those of the record with bookmark `bookmark` at change
    /// epoch `epoch` (for a cache whose bytes are kept here).
    fn serves(&self, bookmark: &[u8], epoch: u64) -> bool {
        self.valid && self.epoch == epoch && !self.at_cursor && self.bookmark == bookmark
    }
}

/// The session's read view, taken (under the session's state lock) only when a read needs
/// it: a move over a tree without versions needs none. The session's transaction cannot
/// begin or end during the call that holds it.
pub(crate) struct LazyView<'a> {
    session: &'a Session,
    view: std::cell::OnceCell<ReadView>,
}

impl<'a> LazyView<'a> {
    pub(crate) fn new(session: &'a Session) -> LazyView<'a> {
        LazyView {
            session,
            view: std::cell::OnceCell::new(),
        }
    }

    /// The view, read on first use.
    pub(crate) fn get(&self) -> &ReadView {
        self.view.get_or_init(|| self.session.read_view())
    }
}

/// Where a move ended.
pub(crate) enum Land {
    Found(Landed),
    /// No entry: the end of the index, or (with a node key) a range limit at that node.
    Stopped(Option<Vec<u8>>),
}

/// A cursor on a table (ESE's `JET_TABLEID`). It belongs to the session that opened it:
/// every call enters through that session (so another thread using it concurrently gets
/// `SessionSharingViolation`), reads through its snapshot and writes through its transaction.
///
/// A cursor opened inside a transaction level is closed when that level rolls back (as ESE
/// closes such cursors); every later call on it returns `InvalidTableId` (-1310). Committing
/// the level hands the cursor to the level below; a cursor opened outside a transaction is
/// never closed that way. Dropping the cursor closes it (JetCloseTable).
///
/// A cursor has a current index (the primary index when opened, see
/// [`Table::set_current_index`]), a current entry of that index (and so a current record), a
/// search key being made ([`Table::make_key`]) and optionally an index range
/// ([`Table::set_index_range`]).
pub struct Table {
    pub(crate) session: Session,
    pub(crate) engine: Arc<Engine>,
    pub(crate) def: Arc<TableDef>,
    /// The catalog record `def` was decoded from (to notice definition changes).
    pub(crate) def_bytes: Vec<u8>,
    /// When [`Table::sync_def`] last found `def` current and the catalog record read-locked:
    /// the transaction, its undo count and the engine's catalog epoch then. While all three
    /// stay the same the lock is still held and no DDL wrote the catalog, so `def` is still
    /// the definition the transaction sees.
    pub(crate) def_synced: Option<DefSynced>,
    pub(crate) layout: RecordLayout,
    /// The table's (primary) tree.
    pub(crate) tree: ObjId,
    /// One more than the longest node key: padding a search key with this many 0xFF bytes
    /// makes it greater than every node key it is a prefix of.
    pub(crate) pad: usize,
    pub(crate) cur: CurIndex,
    /// The node key of the current entry in the current index's tree, and the length of its
    /// secondary-key part.
    pub(crate) pos: Option<EntryPos>,
    /// The bookmark (primary key) of the current record.
    pub(crate) current: Option<Vec<u8>>,
    /// Where the cursor is when it has no current entry.
    pub(crate) off: Off,
    pub(crate) prepared: Option<Prepared>,
    /// Buffers one update leaves to the next (ESE's copy buffer is allocated once per cursor).
    scratch: UpdateScratch,
    /// Next implicit key (tables without a primary index).
    seq: Arc<AtomicU64>,
    /// The search key being made.
    pub(crate) key: Option<MadeKey>,
    /// The buffer of the last [`Table::seek`]'s search key, reused by the next one.
    pub(crate) seek_key: Vec<u8>,
    pub(crate) range: Option<IndexRange>,
    /// The tree cursor of the last move or seek, with the tree it is on, kept so moving next
    /// from the entry it is on costs no descent.
    pub(crate) nav: Option<(ObjId, Cursor)>,
    /// The cursor's registration (open cursors per table; closed by a rollback of the level
    /// it was opened in).
    pub(crate) handle: Arc<crate::ddl::CursorHandle>,
    /// The bytes of the record the last move or seek on the primary index landed on, while
    /// no view changed: filled by those calls (which take `&mut self`), read without a lock.
    pub(crate) landed: RecordCache,
    /// The current record's bytes read by a retrieval that [`Table::landed`] could not serve
    /// (reads take `&self`, and another thread's call is refused by the session before it
    /// gets here, so the lock is never contended).
    pub(crate) rec_cache: parking_lot::Mutex<RecordCache>,
    /// The reference count on the session that the cursor's last call held, kept for the next
    /// call ([`Session::enter_kept`]): a call then takes no new count (a locked add and a
    /// locked subtract on a line every handle of the session shares).
    pub(crate) kept_call: Option<Arc<ese_session::SessionCore>>,
}

/// Closing a cursor (JetCloseTable) is dropping it; a prepared update is discarded.
impl Drop for Table {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl Table {
    /// A second cursor on the table, on its primary index, before the first record (see
    /// [`Table::dup_cursor`]).
    pub(crate) fn duplicate(&self) -> Table {
        let handle = self.session.register_cursor(&self.engine, self.tree);
        Table {
            session: self.session.clone(),
            engine: Arc::clone(&self.engine),
            def: Arc::clone(&self.def),
            def_bytes: self.def_bytes.clone(),
            def_synced: None,
            layout: self.layout.clone(),
            tree: self.tree,
            pad: self.pad,
            cur: CurIndex::primary(&self.def, self.tree),
            pos: None,
            current: None,
            off: Off::BeforeFirst(None),
            prepared: None,
            scratch: UpdateScratch::default(),
            seq: Arc::clone(&self.seq),
            key: None,
            seek_key: Vec::new(),
            range: None,
            nav: None,
            handle,
            landed: RecordCache::default(),
            rec_cache: parking_lot::Mutex::new(RecordCache::default()),
            kept_call: None,
        }
    }
}

impl Table {
    /// Runs `f` inside a session call (the check that no other thread is inside a call on
    /// the session) that takes the reference on the session this cursor's last call kept
    /// ([`Table::kept_call`], [`Session::enter_kept`]) and keeps it for the next.
    ///
    /// # Errors
    /// The session errors of [`Session::enter_kept`]; then `f`'s.
    pub(crate) fn in_call<R>(&mut self, f: impl FnOnce(&mut Table) -> Result<R>) -> Result<R> {
        let call = self.session.enter_kept(&mut self.kept_call, false)?;
        let r = f(self);
        self.kept_call = call.finish();
        r
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.def.name)
            .field("index", &self.cur.ix.as_ref().map(|i| &i.name))
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

pub(crate) fn not_found(e: Error) -> Result<bool> {
    if matches!(
        e.kind(),
        ErrorKind::RecordNotFound | ErrorKind::NoCurrentRecord
    ) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Positions `c` on the first node with a key `>= key`; false when there is none.
pub(crate) fn seek_ge(c: &mut Cursor, key: &[u8]) -> Result<bool> {
    c.seek(key, SeekOp::Ge).map(|()| true).or_else(not_found)
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

    /// The names of the table's indexes, the primary index included, in catalog order
    /// (JetGetTableIndexInfo's index list, as this cursor knows the definition).
    pub fn index_names(&self) -> Vec<String> {
        self.def.indexes.iter().map(|i| i.name.clone()).collect()
    }

    pub(crate) fn dbid(&self) -> u32 {
        self.tree.0 >> 24
    }

    /// Installs a newer definition of the table (decoded from `bytes`): the current index is
    /// looked up again by name; if it is gone the cursor falls back to the primary index and
    /// loses its position.
    pub(crate) fn install_def(&mut self, bytes: Vec<u8>) -> Result<()> {
        let def = TableDef::decode(&bytes)?;
        register_trees(&self.engine, self.dbid(), &def)?;
        let name = self.cur.ix.as_ref().map(|i| i.name.clone());
        self.layout = def.layout();
        let found = name
            .as_deref()
            .and_then(|n| def.index(n))
            .filter(|ix| !ix.is_primary())
            .cloned();
        self.cur = if let Some(ix) = found {
            CurIndex {
                tree: tree_id(self.dbid(), ix.objid),
                layout: ix.layout(),
                ix: Some(ix),
            }
        } else {
            if !self.cur.is_primary() {
                self.pos = None;
                self.current = None;
                self.off = Off::BeforeFirst(None);
                self.range = None;
                self.key = None;
            }
            CurIndex::primary(&def, self.tree)
        };
        if self.cur.is_primary()
            && let Some(c) = &self.current
        {
            self.pos = Some((c.clone(), c.len()));
        }
        self.def = Arc::new(def);
        self.def_bytes = bytes;
        self.def_synced = None;
        Ok(())
    }

    /// Brings the definition up to date with the catalog as `view` sees it (outside a
    /// transaction: the latest committed definition).
    pub(crate) fn refresh_def(&mut self, view: &ReadView) -> Result<()> {
        let cat = tree_id(self.dbid(), CATALOG_OBJID);
        let bytes = self
            .engine
            .vs
            .read(cat, &catalog::table_key(&self.def.name), view)?
            .value()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Error::new(ErrorKind::ObjectNotFound).with_message(self.def.name.clone())
            })?;
        if bytes != self.def_bytes {
            self.install_def(bytes)?;
        }
        Ok(())
    }

    /// Makes the definition the one transaction `t` must maintain, and keeps other
    /// transactions from changing it until `t` ends: a read lock on the table's catalog
    /// record, taken once per transaction (DDL replaces that record, so it conflicts with the
    /// lock of every transaction that changed the table, and the other way round).
    ///
    /// The check is made once per transaction: it is skipped while the transaction, its undo
    /// count (a rollback may have released the lock) and the engine's catalog epoch (DDL of
    /// this transaction, through any cursor, writes the catalog) are those of the last check.
    /// Other transactions cannot change the record while the lock is held. A later
    /// transaction only takes the lock, without reading the record, when the last check read
    /// the committed definition and the catalog epoch has not moved since (no catalog write
    /// started or ended in between, see [`Engine::catalog_write`]).
    ///
    /// # Errors
    /// `WriteConflict` (-1102) when another transaction changed the table's definition and
    /// has not committed, or committed after `t` began; `ObjectNotFound` (-1305) if the
    /// table is gone; the page store's errors.
    pub(crate) fn sync_def(&mut self, t: &mut Transaction) -> Result<()> {
        let mut now = DefSynced {
            trx: t.id(),
            undone: t.undone_count(),
            catalog_epoch: self.engine.catalog_epoch(),
            committed: false,
        };
        let last = self.def_synced;
        if last.is_some_and(|d| {
            (d.trx, d.undone, d.catalog_epoch) == (now.trx, now.undone, now.catalog_epoch)
        }) {
            return Ok(());
        }
        let cat = tree_id(self.dbid(), CATALOG_OBJID);
        let key = catalog::table_key(&self.def.name);
        let gone = || Error::new(ErrorKind::ObjectNotFound).with_message(self.def.name.clone());
        if last.is_some_and(|d| d.committed && d.catalog_epoch == now.catalog_epoch) {
            // No catalog write started or ended since the last check read the committed
            // `def_bytes` (this transaction's own DDL would have moved the epoch too): the
            // record is still there and still holds them, so this transaction only takes its
            // lock.
            t.read_lock_unread(cat, &key)?;
            now.committed = true;
            self.def_synced = Some(now);
            return Ok(());
        }
        let own_version = t.holds_version(cat, &key);
        let bytes = if own_version {
            t.read(cat, &key)?.ok_or_else(gone)?
        } else {
            t.lock_and_read(cat, &key, false).map_err(|e| {
                if e.kind() == ErrorKind::RecordNotFound {
                    gone()
                } else {
                    e
                }
            })?
        };
        if bytes != self.def_bytes {
            self.install_def(bytes)?;
        }
        // `now` was taken before the read: a catalog write in between makes it stale, and
        // the next call checks again.
        now.committed = !own_version;
        self.def_synced = Some(now);
        Ok(())
    }

    /// The state of node `key` of `tree` as `view` sees it (`node`: what a tree cursor read
    /// there, used when the tree has no versions).
    pub(crate) fn visible_in(
        &self,
        view: &ReadView,
        tree: ObjId,
        key: &[u8],
        node: Option<(Vec<u8>, NodeFlags)>,
    ) -> Result<Option<Vec<u8>>> {
        let vs = &self.engine.vs;
        // Per tree only: without the cursor's page, the node could not be checked unchanged
        // after a key's count (see `node_settled`).
        let state = if vs.may_have_versions(tree) {
            let t = self.engine.store.tree(tree)?;
            vs.visible_with(tree, key, view, || Ok(node_state(t.get_opt(key)?)))?
        } else {
            node_state(node)
        };
        Ok(state.into_value())
    }

    /// The state of the node the tree cursor `c` of `tree` is on, as `view` sees it: from
    /// the cursor's copy of the node while its page has not changed since the cursor read it
    /// ([`Cursor::is_current`]), else from the node read again. With versions in the tree the
    /// check is made under the key's version-chain lock, as [`Table::visible_in`] reads there,
    /// so a positioned cursor costs no second descent.
    pub(crate) fn visible_at(
        &self,
        view: &ReadView,
        tree: ObjId,
        c: &Cursor,
    ) -> Result<Option<Vec<u8>>> {
        // The key's count first, then the page unchanged since the cursor read the node (see
        // `node_settled`).
        let state = if !self.engine.vs.may_have_key_versions(tree, c.key()) && c.is_current() {
            cursor_state(c)
        } else {
            self.visible_unless_at_cursor(view, tree, c)?
                .unwrap_or_else(|| cursor_state(c))
        };
        Ok(state.into_value())
    }

    /// [`Table::visible_at`] without a copy when none is needed: `None` when the key has no
    /// version chain and the cursor's page has not changed since it read the node (both
    /// checked under the key's chain lock), so the node as the cursor copied it is what `view`
    /// sees (flag-deleted: no record); otherwise the state `view` sees.
    fn visible_unless_at_cursor(
        &self,
        view: &ReadView,
        tree: ObjId,
        c: &Cursor,
    ) -> Result<Option<PhysState>> {
        let key = c.key();
        self.engine.vs.visible_unless_current(
            tree,
            key,
            view,
            || c.is_current(),
            || {
                Ok(if c.is_current() {
                    cursor_state(c)
                } else {
                    node_state(self.engine.store.tree(tree)?.get_opt(key)?)
                })
            },
        )
    }

    /// The length of the secondary-key part of the node `c` is on.
    pub(crate) fn node_seckey_len(&self, c: &Cursor) -> Result<usize> {
        self.cur.layout.seckey_len(c.key(), c.data())
    }

    /// The entry `c` is on, if `view` sees it. On the primary index the record's bytes are
    /// kept in the cursor's [`RecordCache`] with `epoch`, the change epoch loaded before `c`
    /// read the node.
    fn examine(
        &self,
        view: &LazyView<'_>,
        c: &Cursor,
        epoch: u64,
        cache: &mut RecordCache,
    ) -> Result<Option<Landed>> {
        let node = c.key();
        if self.cur.layout == EntryLayout::Primary {
            // The node was read by the tree cursor after `epoch` was loaded and before
            // `node_settled` is asked (see there).
            cache.valid = false;
            if node_settled(&self.engine, self.cur.tree, c) {
                if c.flags().contains(NodeFlags::DELETED) {
                    return Ok(None);
                }
                // The record is the node as the cursor copied it: no second copy.
                cache.at_cursor = true;
            } else {
                match self.visible_unless_at_cursor(view.get(), self.cur.tree, c)? {
                    // The node as the cursor copied it is what the view sees.
                    None if c.flags().contains(NodeFlags::DELETED) => return Ok(None),
                    None => cache.at_cursor = true,
                    Some(state) => {
                        let Some(data) = state.into_value() else {
                            return Ok(None);
                        };
                        cache.bytes = data;
                        cache.at_cursor = false;
                        cache.bookmark.clear();
                        cache.bookmark.extend_from_slice(node);
                    }
                }
            }
            cache.epoch = epoch;
            cache.valid = true;
            return Ok(Some(Landed {
                seckey_len: node.len(),
                bookmark: None,
            }));
        }
        let Some(data) = self.visible_at(view.get(), self.cur.tree, c)? else {
            return Ok(None);
        };
        let seckey_len = match self.cur.layout {
            EntryLayout::NonUnique => self.cur.layout.seckey_len(node, &data)?,
            _ => node.len(),
        };
        Ok(Some(Landed {
            seckey_len,
            bookmark: Some(data),
        }))
    }

    /// From the node `c` is on (`on`), the first entry in direction `forward` that `view`
    /// sees, stopping at the index range's limit in that direction. `epoch` is the version
    /// store's change epoch loaded before `c` was positioned (see [`RecordCache`]).
    pub(crate) fn land(
        &self,
        c: &mut Cursor,
        mut on: bool,
        forward: bool,
        view: &LazyView<'_>,
        epoch: u64,
        cache: &mut RecordCache,
    ) -> Result<Land> {
        while on {
            if let Some(r) = self.range.as_ref().filter(|r| r.upper == forward) {
                let l = self.node_seckey_len(c)?;
                if !r.contains(c.key().get(..l).unwrap_or_default()) {
                    return Ok(Land::Stopped(Some(c.key().to_vec())));
                }
            }
            if let Some(l) = self.examine(view, c, epoch, cache)? {
                return Ok(Land::Found(l));
            }
            on = if forward {
                c.move_next()?
            } else {
                c.move_prev()?
            };
        }
        Ok(Land::Stopped(None))
    }

    /// [`Table::land`] for a move or seek of this cursor, the session's view read when needed:
    /// the record landed on is kept in [`Table::landed`]. The caller puts `c` back in
    /// [`Table::nav`] (see [`RecordCache`]).
    pub(crate) fn land_current(
        &mut self,
        c: &mut Cursor,
        on: bool,
        forward: bool,
        epoch: u64,
    ) -> Result<Land> {
        let mut cache = std::mem::take(&mut self.landed);
        let land = self.land(
            c,
            on,
            forward,
            &LazyView::new(&self.session),
            epoch,
            &mut cache,
        );
        self.landed = cache;
        land
    }

    /// Makes the entry `c` is on, found by [`Table::land`], the current one (reusing the
    /// buffers of the previous position).
    pub(crate) fn position(&mut self, c: &Cursor, l: Landed) {
        let node = c.key();
        self.set_pos(node, l.seckey_len);
        match l.bookmark {
            Some(b) => self.current = Some(b),
            None => self.set_current(node),
        }
        self.off = Off::BeforeFirst(None);
    }

    /// Makes `entry` (node key, with a secondary-key part of `seckey_len` bytes) the current
    /// entry, in the buffer the last one had.
    fn set_pos(&mut self, entry: &[u8], seckey_len: usize) {
        put_pos(&mut self.pos, entry, seckey_len);
    }

    /// Makes `bookmark` the current record's, in the buffer the last one had.
    fn set_current(&mut self, bookmark: &[u8]) {
        put_bytes(&mut self.current, bookmark);
    }

    /// Applies the end of a move (`c` on the entry found): on an entry, or off the index in
    /// direction `forward`.
    fn finish_move(&mut self, c: &Cursor, land: Land, forward: bool) -> Result<()> {
        match land {
            Land::Found(l) => {
                self.position(c, l);
                Ok(())
            }
            Land::Stopped(at) => {
                self.pos = None;
                self.current = None;
                self.off = if forward {
                    Off::AfterLast(at)
                } else {
                    Off::BeforeFirst(at)
                };
                Err(Error::new(ErrorKind::NoCurrentRecord))
            }
        }
    }

    /// Moves the cursor on its current index (JetMove). A new cursor is before the first
    /// entry; moving past either end (or past the index range's limit) leaves it before the
    /// first or after the last entry, from where the opposite direction (or First/Last)
    /// finds an entry again. First and Last remove the index range.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) when there is no entry there; the session errors.
    pub fn move_to(&mut self, m: Move) -> Result<()> {
        self.in_call(|this| {
            this.check_open()?;
            // Before the tree cursor reads anything (see `RecordCache`).
            let epoch = this.engine.vs.change_epoch();
            let stepped = match m {
                Move::Next | Move::Previous => this.step_primary(matches!(m, Move::Next), epoch)?,
                Move::First | Move::Last => Step::NotTaken,
            };
            if let Step::Done = stepped {
                return Ok(());
            }
            let mut c = this.take_cursor()?;
            let (on, forward) = if let Step::Moved(on) = stepped {
                (on, matches!(m, Move::Next))
            } else {
                match m {
                    Move::First => {
                        this.range = None;
                        (c.move_first()?, true)
                    }
                    Move::Last => {
                        this.range = None;
                        (c.move_last()?, false)
                    }
                    // The kept cursor is not on the current entry (`step_primary` stepped it if it
                    // was): seek from the current entry or from where the cursor left the index on
                    // the side it moves away from (none: from that end). Moving on past the other
                    // end has no current record.
                    Move::Next | Move::Previous => {
                        let forward = matches!(m, Move::Next);
                        let from = match (&this.pos, &this.off, forward) {
                            (Some((k, _)), _, _) => Some(k.clone()),
                            (None, Off::BeforeFirst(k), true)
                            | (None, Off::AfterLast(k), false) => k.clone(),
                            (None, Off::AfterLast(_), true)
                            | (None, Off::BeforeFirst(_), false) => {
                                return Err(Error::new(ErrorKind::NoCurrentRecord));
                            }
                        };
                        let on = match from {
                            Some(k) => {
                                let op = if forward { SeekOp::Gt } else { SeekOp::Lt };
                                c.seek(&k, op).map(|()| true).or_else(not_found)?
                            }
                            None if forward => c.move_first()?,
                            None => c.move_last()?,
                        };
                        (on, forward)
                    }
                }
            };
            let land = this.land_current(&mut c, on, forward, epoch)?;
            let r = this.finish_move(&c, land, forward);
            this.nav = Some((this.cur.tree, c));
            r
        })
    }

    /// The leaf the kept tree cursor is on when it is a cursor of the table's primary tree: a
    /// change of the current record tries it before descending from the root (ESE changes the
    /// record at the cursor's current page).
    pub(crate) fn leaf_hint(&self) -> Option<LeafHint> {
        self.nav
            .as_ref()
            .filter(|(tree, _)| *tree == self.tree)
            .and_then(|(_, c)| c.leaf_hint())
    }

    /// The step of [`Table::move_to`] (Next when `forward`, else Previous) from the entry the
    /// kept tree cursor is on, made in place in [`Table::nav`]. On the primary index of a tree
    /// without versions, outside an index range, the node stepped to is the record, visible
    /// unless flag-deleted (as [`Table::examine`] decides it), and it becomes the current entry
    /// here (`Done`). Otherwise the cursor has stepped (`Moved`, whether it is on a node) and
    /// [`Table::land`] goes on from there, or nothing was done (`NotTaken`: the cursor is not on
    /// the current entry, and the general path seeks).
    fn step_primary(&mut self, forward: bool, epoch: u64) -> Result<Step> {
        let Table {
            nav,
            pos,
            current,
            landed,
            off,
            engine,
            cur,
            range,
            ..
        } = self;
        let (Some((tree, c)), Some((key, _))) = (nav.as_mut(), pos.as_ref()) else {
            return Ok(Step::NotTaken);
        };
        if *tree != cur.tree || !c.is_positioned() || c.key() != &key[..] {
            return Ok(Step::NotTaken);
        }
        let stepped = if forward {
            c.move_next()
        } else {
            c.move_prev()
        };
        let on = match stepped {
            Ok(on) => on,
            Err(e) => {
                // As the general path, which had taken the cursor out of `nav`.
                *nav = None;
                return Err(e);
            }
        };
        // The node was read after `epoch` was loaded and before `node_settled` is asked (see
        // `Table::examine`).
        if !on
            || cur.layout != EntryLayout::Primary
            || range.is_some()
            || c.flags().contains(NodeFlags::DELETED)
            || !node_settled(engine, cur.tree, c)
        {
            return Ok(Step::Moved(on));
        }
        // The record is the node as the cursor copied it (`RecordCache::at_cursor`); the rest
        // is `Table::position` of the node.
        landed.at_cursor = true;
        landed.epoch = epoch;
        landed.valid = true;
        let node = c.key();
        put_pos(pos, node, node.len());
        put_bytes(current, node);
        *off = Off::BeforeFirst(None);
        Ok(Step::Done)
    }

    /// A tree cursor on the current index: the one kept from the last move or seek (which
    /// may still be on the current entry), or a new one.
    pub(crate) fn take_cursor(&mut self) -> Result<Cursor> {
        match self.nav.take() {
            Some((tree, c)) if tree == self.cur.tree => Ok(c),
            _ => Ok(self.engine.store.tree(self.cur.tree)?.cursor()),
        }
    }

    /// The definition of the current index (`NoCurrentIndex` for the implicit index of a
    /// table without primary index).
    pub(crate) fn current_ix(&self) -> Result<&IndexEntry> {
        self.cur.ix.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::NoCurrentIndex).with_message(
                "the table has no primary index: its implicit index has no key columns",
            )
        })
    }

    /// The entry record `rec` with bookmark `bm` has in the current index (its first one for
    /// a multi-valued column): (node key, secondary-key length), or `None`.
    /// Separated long values of key columns are read through `view`.
    pub(crate) fn entry_of(
        &self,
        bm: &[u8],
        rec: &Record,
        view: &ReadView,
    ) -> Result<Option<EntryPos>> {
        if self.cur.is_primary() {
            return Ok(Some((bm.to_vec(), bm.len())));
        }
        let ix = self.current_ix()?;
        let rec = self.keyed(rec, view)?;
        Ok(record_keys(&self.def, ix, &rec)?
            .into_iter()
            .next()
            .map(|k| (self.cur.layout.node_key(&k, bm), k.len())))
    }

    /// The record with bookmark `bm` as `view` sees it.
    pub(crate) fn record_at(&self, view: &ReadView, bm: &[u8]) -> Result<Record> {
        let tree = self.engine.store.tree(self.tree)?;
        let node = tree.get_opt(bm)?;
        let bytes = self
            .visible_in(view, self.tree, bm, node)?
            .ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
        Record::decode(&bytes, &self.layout)
    }

    /// Runs `f` on the current record's bytes as the session's view sees them: those the
    /// cursor keeps when still valid (see [`RecordCache`]), else read from the primary tree
    /// (and kept).
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) off a record; `RecordDeleted` (-1017) if the view no longer
    /// sees it; the page store's errors; what `f` returns.
    fn with_current<R>(&self, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        let key = self
            .current
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        // Loaded before the record is read (see `RecordCache`).
        let epoch = self.engine.vs.change_epoch();
        if let Some(bytes) = self.landed_record(key, epoch) {
            return f(bytes);
        }
        let mut cache = self.rec_cache.lock();
        if !cache.serves(key, epoch) {
            cache.valid = false;
            let view = self.session.read_view();
            // The kept tree cursor, when it is on this record of the primary tree, spares a
            // descent while its page is unchanged.
            let kept = self
                .nav
                .as_ref()
                .filter(|(tree, c)| *tree == self.tree && c.key() == key.as_slice())
                .map(|(_, c)| c);
            let visible = if let Some(c) = kept {
                self.visible_at(&view, self.tree, c)?
            } else {
                let node = self.engine.store.tree(self.tree)?.get_opt(key)?;
                self.visible_in(&view, self.tree, key, node)?
            };
            let bytes = visible.ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
            cache.bookmark.clear();
            cache.bookmark.extend_from_slice(key);
            cache.bytes = bytes;
            cache.epoch = epoch;
            cache.valid = true;
        }
        f(&cache.bytes)
    }

    /// The bytes of the record with bookmark `key` kept by the last move or seek
    /// ([`Table::landed`]), if still valid at change epoch `epoch`.
    fn landed_record(&self, key: &[u8], epoch: u64) -> Option<&[u8]> {
        let l = &self.landed;
        if !l.valid || l.epoch != epoch {
            return None;
        }
        if !l.at_cursor {
            return (l.bookmark == key).then_some(&l.bytes[..]);
        }
        let (tree, c) = self.nav.as_ref()?;
        (*tree == self.tree && c.key() == key).then(|| c.data())
    }

    /// The current record's bytes.
    fn current_bytes(&self) -> Result<Vec<u8>> {
        self.with_current(|b| Ok(b.to_vec()))
    }

    /// The current record, decoded.
    fn current_record(&self) -> Result<Record> {
        self.with_current(|b| Record::decode(b, &self.layout))
    }

    /// Retrieves a column of the current record (JetRetrieveColumn, `itagSequence` 1), or of
    /// the prepared update when one is prepared (`JET_bitRetrieveCopy` semantics for the
    /// copy buffer). `None` is a null column (ESE's `JET_wrnColumnNull`); a column without a
    /// value returns its default.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) off a record; `RecordDeleted` (-1017) if the record was
    /// deleted; `ColumnNotFound` (-1507); `LVCorrupted` (-1526) for a separated long value
    /// with a missing or damaged chunk; the session errors.
    pub fn retrieve_column(&self, column: u32) -> Result<Option<Vec<u8>>> {
        self.retrieve_column_itag(column, 1)
    }

    /// Retrieves value `itag` (1-based `itagSequence`) of a column of the current record, or
    /// of the prepared update (JetRetrieveColumn with `JET_RETINFO.itagSequence`): the values
    /// of a multi-valued column in order; `None` past the last value. Value 1 of a column
    /// without values is its default.
    ///
    /// # Errors
    /// As [`Table::retrieve_column`]; `BadItagSequence` (-1518) for `itag` 0.
    pub fn retrieve_column_itag(&self, column: u32, itag: usize) -> Result<Option<Vec<u8>>> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        if itag == 0 {
            return Err(Error::new(ErrorKind::BadItagSequence));
        }
        let col = self.def.column(column)?;
        let value = self.value_of(self.prepared.is_some(), column, itag, |v| {
            Ok(match v {
                Some((d, true)) => {
                    Some(self.read_lv(d, &self.session.read_view(), 0, usize::MAX)?)
                }
                Some((d, false)) => Some(d.to_vec()),
                None => None,
            })
        })?;
        Ok(match value {
            None if itag == 1 => col.def.default.clone(),
            v => v,
        })
    }

    /// Runs `f` on value `itag` of column `column` (its bytes, and whether they are a
    /// separated long value's reference; `None` when there is none): of the prepared update
    /// when `copy`, else of the current record, read in place.
    ///
    /// # Errors
    /// As [`Table::with_current`] when not `copy`; `DatabaseCorrupted` (-1206) for a damaged
    /// record; what `f` returns.
    fn value_of<R>(
        &self,
        copy: bool,
        column: u32,
        itag: usize,
        f: impl FnOnce(Option<(&[u8], bool)>) -> Result<R>,
    ) -> Result<R> {
        if copy && let Some(p) = &self.prepared {
            let v = p.record.get(column, itag);
            return f(v.as_ref().map(|v| (&v.data[..], v.separated)));
        }
        self.with_current(|b| f(RecordRef::value(b, &self.layout, column, itag)?))
    }

    /// Retrieves several columns of the current record, or of the prepared update for those
    /// with [`RetrieveGrbit::COPY`] (JetRetrieveColumns): the record is read once for all of
    /// them, and each value lands in its entry's buffer, which keeps its allocation between
    /// calls. Each entry reads value `itag_sequence` (1-based) of its column; a separated
    /// long value is read whole; a column without a value gives its default for value 1
    /// unless [`RetrieveGrbit::IGNORE_DEFAULT`] is set. A null value (ESE's
    /// `JET_wrnColumnNull`) leaves the buffer empty and sets `is_null`.
    ///
    /// # Errors
    /// The first failing entry fails the call (ESE reports it in that entry's `err`; the
    /// entries after it are left as they were): `InvalidGrbit` (-900) for options other than
    /// `COPY` and `IGNORE_DEFAULT`; `BadItagSequence` (-1518) for `itag_sequence` 0;
    /// `ColumnNotFound` (-1507); `NoCurrentRecord` (-1603) off a record; `RecordDeleted`
    /// (-1017) if the record was deleted; `LVCorrupted` (-1526) for a separated long value
    /// with a missing or damaged chunk; the session errors.
    pub fn retrieve_columns(&self, columns: &mut [RetrieveColumn]) -> Result<()> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        for c in columns.iter() {
            if RetrieveGrbit::from_bits(c.grbit.bits()).is_none() {
                return Err(Error::new(ErrorKind::InvalidGrbit)
                    .with_message(format!("retrieve grbit {:#x}", c.grbit.bits())));
            }
            if c.itag_sequence == 0 {
                return Err(Error::new(ErrorKind::BadItagSequence));
            }
            self.def.column(c.column)?;
        }
        if columns.is_empty() {
            // Nothing to read, not even the current record.
            return Ok(());
        }
        let prepared = self.prepared.is_some();
        let copy = |c: &RetrieveColumn| prepared && c.grbit.contains(RetrieveGrbit::COPY);
        if prepared {
            for c in columns.iter_mut().filter(|c| copy(c)) {
                self.value_of(true, c.column, c.itag_sequence, |v| self.fill(c, v))?;
            }
            if columns.iter().all(copy) {
                return Ok(());
            }
        }
        self.with_current(|b| {
            for c in columns.iter_mut().filter(|c| !copy(c)) {
                self.fill(
                    c,
                    RecordRef::value(b, &self.layout, c.column, c.itag_sequence)?,
                )?;
            }
            Ok(())
        })
    }

    /// Puts value `v` of [`Table::retrieve_columns`]' entry `c` in its buffer: an intrinsic
    /// value is copied here; a separated long value, a null and a default take
    /// [`Table::fill_rare`].
    #[inline]
    fn fill(&self, c: &mut RetrieveColumn, v: Option<(&[u8], bool)>) -> Result<()> {
        c.data.clear();
        c.is_null = false;
        match v {
            Some((d, false)) => {
                c.data.extend_from_slice(d);
                Ok(())
            }
            v => self.fill_rare(c, v),
        }
    }

    /// [`Table::fill`] of a separated long value (read whole), or of a missing value (the
    /// column's default for value 1 unless [`RetrieveGrbit::IGNORE_DEFAULT`], else null).
    #[cold]
    fn fill_rare(&self, c: &mut RetrieveColumn, v: Option<(&[u8], bool)>) -> Result<()> {
        if let Some((d, _)) = v {
            let lv = self.read_lv(d, &self.session.read_view(), 0, usize::MAX)?;
            c.data.extend_from_slice(&lv);
            return Ok(());
        }
        let default =
            self.def.column(c.column)?.def.default.as_ref().filter(|_| {
                c.itag_sequence == 1 && !c.grbit.contains(RetrieveGrbit::IGNORE_DEFAULT)
            });
        match default {
            Some(d) => c.data.extend_from_slice(d),
            None => c.is_null = true,
        }
        Ok(())
    }

    /// Retrieves part of a value of a column (JetRetrieveColumn with `JET_RETINFO`): value
    /// `info.itag_sequence` (1-based), from byte `info.ib_long_value` (long columns only), at
    /// most `max_len` bytes. With [`RetrieveGrbit::COPY`] the prepared update is read (the
    /// current record when none is prepared), without it the current record as stored. A
    /// separated long value is read from the table's long-value tree, only the chunks needed.
    ///
    /// Returns `None` for a null value (`JET_wrnColumnNull`), else the bytes and the value's
    /// length from the offset (ESE's `cbActual`, 0 at or past the end); when that is more
    /// than `max_len` the bytes are cut (`JET_wrnBufferTruncated`,
    /// [`RetrievedColumn::is_truncated`]).
    ///
    /// # Errors
    /// `InvalidGrbit` (-900) for options other than `COPY` and `IGNORE_DEFAULT`;
    /// `InvalidParameter` (-1003) for an `ib_long_value` on a column that is not long;
    /// `BadItagSequence` (-1518) for `itag_sequence` 0; `NoCurrentRecord` (-1603) off a record;
    /// `RecordDeleted` (-1017); `ColumnNotFound` (-1507); `LVCorrupted` (-1526) for a missing
    /// or damaged chunk of a separated value; the session errors.
    pub fn retrieve_column_with(
        &self,
        column: u32,
        grbit: RetrieveGrbit,
        info: RetInfo,
        max_len: usize,
    ) -> Result<Option<RetrievedColumn>> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        if RetrieveGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit)
                .with_message(format!("retrieve grbit {:#x}", grbit.bits())));
        }
        if info.itag_sequence == 0 {
            return Err(Error::new(ErrorKind::BadItagSequence));
        }
        let col = self.def.column(column)?;
        if info.ib_long_value != 0 && !col.def.coltyp.is_long() {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message(format!(
                    "ibLongValue {} on column {:?}, which is not a long column",
                    info.ib_long_value, col.def.name
                )),
            );
        }
        let ib = info.ib_long_value;
        let copy = grbit.contains(RetrieveGrbit::COPY);
        self.value_of(copy, column, info.itag_sequence, |v| {
            let value = match v {
                Some((d, true)) => {
                    let r = LvRef::decode(d)?;
                    let data = self.read_lv(d, &self.session.read_view(), ib, max_len)?;
                    return Ok(Some(RetrievedColumn {
                        data,
                        actual_len: r.len.saturating_sub(ib),
                    }));
                }
                Some((d, false)) => d,
                None if info.itag_sequence == 1
                    && !grbit.contains(RetrieveGrbit::IGNORE_DEFAULT) =>
                {
                    match &col.def.default {
                        Some(d) => &d[..],
                        None => return Ok(None),
                    }
                }
                None => return Ok(None),
            };
            let from = usize::try_from(ib).unwrap_or(usize::MAX).min(value.len());
            let rest = value.get(from..).unwrap_or_default();
            Ok(Some(RetrievedColumn {
                data: rest
                    .get(..max_len.min(rest.len()))
                    .unwrap_or_default()
                    .to_vec(),
                actual_len: rest.len() as u64,
            }))
        })
    }

    /// The table's long-value tree, or `None` for a table created before long-value trees
    /// existed (its long values stay in the record).
    pub(crate) fn lv_tree(&self) -> Result<Option<LvTree>> {
        if self.def.lv_objid.0 == 0 {
            return Ok(None);
        }
        let max = self.engine.db(self.dbid())?.db.max_record_len();
        Ok(Some(LvTree::new(
            tree_id(self.dbid(), self.def.lv_objid),
            max,
        )))
    }

    /// Up to `max` bytes from byte `offset` of the separated value with reference `reference`,
    /// as `view` sees it.
    fn read_lv(
        &self,
        reference: &[u8],
        view: &ReadView,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>> {
        let r = LvRef::decode(reference)?;
        let lv = self.lv_tree()?.ok_or_else(|| {
            Error::new(ErrorKind::LVCorrupted).with_message(format!(
                "table {:?} has a separated value but no long-value tree",
                self.def.name
            ))
        })?;
        lv.read(&self.engine.vs, view, r, offset, max)
    }

    /// `rec` with each separated value of a column some index of the table keys on replaced
    /// by its first bytes ([`LV_KEY_PREFIX`]), read through `view`: what index keys are made
    /// from (they are truncated far below that length).
    pub(crate) fn keyed<'r>(&self, rec: &'r Record, view: &ReadView) -> Result<Cow<'r, Record>> {
        let def = Arc::clone(&self.def);
        self.keyed_in(&def, rec, view)
    }

    /// [`Table::keyed`] for the indexes of definition `def`.
    pub(crate) fn keyed_in<'r>(
        &self,
        def: &TableDef,
        rec: &'r Record,
        view: &ReadView,
    ) -> Result<Cow<'r, Record>> {
        // Only long-value columns hold separated values: without one the record is its own
        // keyed form.
        if !has_long_columns(def) {
            return Ok(Cow::Borrowed(rec));
        }
        let mut out = rec.clone();
        let mut cols: Vec<u32> = def
            .indexes
            .iter()
            .flat_map(|i| i.segments.iter().map(|s| s.column))
            .collect();
        cols.sort_unstable();
        cols.dedup();
        for id in cols {
            for itag in 1..=rec.count(id) {
                if let Some(v) = rec.get(id, itag).filter(|v| v.separated) {
                    let data = self.read_lv(&v.data, view, 0, LV_KEY_PREFIX)?;
                    out.set(
                        id,
                        itag,
                        Some(TaggedValue {
                            data,
                            separated: false,
                        }),
                    )?;
                }
            }
        }
        Ok(Cow::Owned(out))
    }

    /// `rec` as it is stored, in transaction `t`: every value of a long column longer than
    /// [`LV_INTRINSIC_MOST`] bytes is written to the long-value tree and replaced by its
    /// reference; then, while the record is longer than `room` bytes, the longest value of a
    /// long column still in the record (over 16 bytes) moves out too. Values already
    /// separated stay as they are. A value is written in place of the separated value the
    /// same column and `itagSequence` had in `old` (the record it replaces) when `rec` no
    /// longer refers to that one (only its changed chunks are written), else under a new LID.
    fn store_lvs<'r>(
        &self,
        t: &mut Transaction,
        rec: &'r Record,
        old: Option<&Record>,
        room: usize,
    ) -> Result<Cow<'r, Record>> {
        // Only long-value columns (deleted ones included) are ever separated.
        if !has_long_columns(&self.def) {
            return Ok(Cow::Borrowed(rec));
        }
        let Some(lv) = self.lv_tree()? else {
            return Ok(Cow::Borrowed(rec));
        };
        // LIDs of `old` that `rec` does not refer to: each may take one new value in place.
        let mut kept = Vec::new();
        for (_, values) in rec.columns() {
            for v in values.iter().filter(|v| v.separated) {
                kept.push(LvRef::decode(&v.data)?.lid);
            }
        }
        let mut reusable = std::collections::BTreeMap::new();
        if let Some(old) = old {
            for (id, values) in old.columns() {
                for (i, v) in values.iter().enumerate().filter(|(_, v)| v.separated) {
                    let r = LvRef::decode(&v.data)?;
                    if !kept.contains(&r.lid) {
                        reusable.insert((id, i + 1), r);
                    }
                }
            }
        }
        let mut out = rec.clone();
        let mut candidates: Vec<(u32, usize, usize)> = Vec::new();
        for (id, values) in rec.columns() {
            if !self.def.column(id).is_ok_and(|c| c.def.coltyp.is_long()) {
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                if v.separated {
                    continue;
                }
                if v.data.len() > LV_INTRINSIC_MOST {
                    let prev = reusable.remove(&(id, i + 1));
                    self.separate(t, &lv, &mut out, (id, i + 1), &v.data, prev)?;
                } else if v.data.len() > LV_REF_LEN {
                    candidates.push((id, i + 1, v.data.len()));
                }
            }
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.2));
        for (id, itag, _) in candidates {
            if out.encode(&self.layout)?.len() <= room {
                break;
            }
            if let Some(v) = rec.get(id, itag) {
                let prev = reusable.remove(&(id, itag));
                self.separate(t, &lv, &mut out, (id, itag), &v.data, prev)?;
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Writes `data` as a long value (in place of `prev` when given, else under a new LID)
    /// and makes value `itag` of column `id` of `rec` its reference.
    fn separate(
        &self,
        t: &mut Transaction,
        lv: &LvTree,
        rec: &mut Record,
        (id, itag): (u32, usize),
        data: &[u8],
        prev: Option<LvRef>,
    ) -> Result<()> {
        let r = if let Some(prev) = prev {
            lv.rewrite(t, prev, data)?
        } else {
            let lid = self
                .engine
                .lid_counter(lv.tree)?
                .fetch_add(1, Ordering::Relaxed);
            lv.write(t, lid, data)?
        };
        rec.set(
            id,
            itag,
            Some(TaggedValue {
                data: r.encode(),
                separated: true,
            }),
        )
    }

    /// Frees (in transaction `t`) every separated value of `old` that `new` does not keep.
    fn free_lvs(&self, t: &mut Transaction, old: &Record, new: Option<&Record>) -> Result<()> {
        // Only long-value columns (deleted ones included) are ever separated.
        if !has_long_columns(&self.def) {
            return Ok(());
        }
        let refs = |r: &Record| -> Result<Vec<LvRef>> {
            let mut out = Vec::new();
            for (_, values) in r.columns() {
                for v in values.iter().filter(|v| v.separated) {
                    out.push(LvRef::decode(&v.data)?);
                }
            }
            Ok(out)
        };
        let old_refs = refs(old)?;
        if old_refs.is_empty() {
            return Ok(());
        }
        let keep = new.map(refs).transpose()?.unwrap_or_default();
        let lv = self.lv_tree()?.ok_or_else(|| {
            Error::new(ErrorKind::LVCorrupted).with_message(format!(
                "table {:?} has a separated value but no long-value tree",
                self.def.name
            ))
        })?;
        for r in old_refs {
            if !keep.iter().any(|k| k.lid == r.lid) {
                lv.free(t, r)?;
            }
        }
        Ok(())
    }

    /// Counts what the table's long-value tree holds as this session sees it: (separated
    /// long values, chunks). For tests and diagnostics; not a JET function.
    ///
    /// # Errors
    /// The session and page store errors.
    #[doc(hidden)]
    pub fn long_value_stats(&self) -> Result<(u64, u64)> {
        let _call = self.session.enter(false)?;
        let Some(lv) = self.lv_tree()? else {
            return Ok((0, 0));
        };
        let view = self.session.read_view();
        let tree = self.engine.store.tree(lv.tree)?;
        let mut c = tree.cursor();
        let mut on = c.move_first()?;
        let (mut lids, mut chunks, mut last) = (0u64, 0u64, None);
        while on {
            let key = c.key().to_vec();
            if self.visible_at(&view, lv.tree, &c)?.is_some() {
                chunks += 1;
                let lid = crate::lv::lid_of_key(&key);
                if lid != last {
                    lids += 1;
                    last = lid;
                }
            }
            on = c.move_next()?;
        }
        Ok((lids, chunks))
    }

    /// The number of values a column of the current record (or of the prepared update) has:
    /// 0 for null, more than 1 only for a multi-valued column (JetRetrieveColumn with
    /// `itagSequence` 0 counting values).
    ///
    /// # Errors
    /// As [`Table::retrieve_column`].
    pub fn column_value_count(&self, column: u32) -> Result<usize> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let col = self.def.column(column)?;
        let rec = match &self.prepared {
            Some(p) => p.record.clone(),
            None => self.current_record()?,
        };
        Ok(match rec.count(column) {
            0 => usize::from(col.def.default.is_some()),
            n => n,
        })
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

    /// Moves to the record with bookmark `bookmark` (JetGotoBookmark), on its (first) entry
    /// in the current index, and removes the index range.
    ///
    /// # Errors
    /// `RecordDeleted` (-1017) if no visible record has it; `NoCurrentRecord` (-1603) when
    /// the record has no entry in the current secondary index; the session errors.
    pub fn goto_bookmark(&mut self, bookmark: &[u8]) -> Result<()> {
        let _call = self.session.enter_owned(false)?;
        self.check_open()?;
        let view = self.session.read_view();
        let rec = self.record_at(&view, bookmark)?;
        self.range = None;
        let pos = self.entry_of(bookmark, &rec, &view)?;
        self.current = Some(bookmark.to_vec());
        self.off = Off::BeforeFirst(None);
        if pos.is_none() {
            self.pos = None;
            self.current = None;
            return Err(Error::new(ErrorKind::NoCurrentRecord)
                .with_message("the record has no entry in the current index"));
        }
        self.pos = pos;
        Ok(())
    }

    /// Prepares an update (JetPrepareUpdate). An insert gets the engine's column values at
    /// once, as ESE assigns them: the next auto-increment value (readable from the copy
    /// buffer with [`Table::retrieve_column`] before the update, and never handed out again
    /// even if the update is cancelled or rolled back), version 0, and the default of every
    /// escrow column.
    ///
    /// # Errors
    /// `AlreadyPrepared` (-1607) if an update is prepared; `OutOfAutoincrementValues` (-1076)
    /// when a Long auto-increment column passed `i32::MAX`; `NoCurrentRecord` (-1603) for a
    /// replace off a record; `WriteConflict` (-1102) when `Replace` cannot take the write lock
    /// (another transaction changed the record); `NotInTransaction` (-1054) for `Replace`
    /// outside a transaction (the lock needs one); `UpdateNotPrepared` (-1609) to cancel
    /// nothing; the session errors.
    pub fn prepare_update(&mut self, prep: Prep) -> Result<()> {
        self.in_call(|this| {
            this.check_open()?;
            match prep {
                Prep::Cancel => {
                    let p = this
                        .prepared
                        .take()
                        .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
                    this.scratch.keep(p.record);
                    return Ok(());
                }
                _ if this.prepared.is_some() => return Err(Error::new(ErrorKind::AlreadyPrepared)),
                Prep::Insert => {
                    let mut record = this.scratch.record.take().unwrap_or_default();
                    this.init_insert(&mut record)?;
                    this.prepared = Some(Prepared {
                        prep,
                        record,
                        original: None,
                    });
                }
                Prep::Replace | Prep::ReplaceNoLock => {
                    let bytes = this.current_bytes()?;
                    let record = Record::decode(&bytes, &this.layout)?;
                    if prep == Prep::Replace {
                        let key = this.current.clone().unwrap_or_default();
                        let mut st = this.session.shared.state.lock();
                        let t = st
                            .trx
                            .as_mut()
                            .filter(|t| t.is_open())
                            .ok_or_else(|| Error::new(ErrorKind::NotInTransaction))?;
                        t.lock(this.tree, &key, true)?;
                    }
                    this.prepared = Some(Prepared {
                        prep,
                        record,
                        original: Some(bytes),
                    });
                }
            }
            Ok(())
        })
    }

    /// Sets a column of the prepared update (JetSetColumn, `itagSequence` 1): `None` makes it
    /// null.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `ColumnNotFound` (-1507); `InvalidBufferSize` (-1047) /
    /// `ColumnTooBig` (-1506) for a value that does not fit the column; `NullInvalid` (-1504)
    /// for null in a NotNULL column; `InvalidColumnType` (-1511) for an auto-increment column
    /// (always), and for a version or escrow column while a replace is prepared (ESE's
    /// rules: the engine maintains them; an insert may give a version or escrow column its
    /// starting value); the session errors.
    pub fn set_column(&mut self, column: u32, value: Option<&[u8]>) -> Result<()> {
        self.set_column_itag(column, value, 1)
    }

    /// Sets value `itag` of a column of the prepared update (JetSetColumn with
    /// `JET_SETINFO.itagSequence`): on a multi-valued column `itag` 0 (or one past the last
    /// value) appends a value, an existing `itag` replaces its value, and `None` removes it
    /// (the following values move up). A column that is not multi-valued has one value:
    /// `itag` 0 and 1 both set it.
    ///
    /// # Errors
    /// As [`Table::set_column`]; `BadItagSequence` (-1518) for an `itag` more than one past
    /// the last value, or above 1 on a column that is not multi-valued.
    pub fn set_column_itag(
        &mut self,
        column: u32,
        value: Option<&[u8]>,
        itag: usize,
    ) -> Result<()> {
        self.set_column_with(
            column,
            value,
            SetGrbit::ZERO_LENGTH,
            SetInfo {
                itag_sequence: itag,
                ib_long_value: 0,
            },
        )
    }

    /// Sets a value of a column of the prepared update with JetSetColumn's options and
    /// `JET_SETINFO`: value `info.itag_sequence` as in [`Table::set_column_itag`]; on a long
    /// column (LongBinary, LongText) [`SetGrbit::APPEND_LV`] appends `value` to it,
    /// [`SetGrbit::OVERWRITE_LV`] writes `value` over it from byte `info.ib_long_value`
    /// (extending it past its end), [`SetGrbit::SIZE_LV`] makes its length the u32
    /// (little-endian) in `value`, padding with zero bytes or truncating (length 0 leaves a
    /// zero-length value), and `OVERWRITE_LV | SIZE_LV` overwrites and then cuts the value
    /// at the end of the data. Without those options `value` replaces the value; empty data
    /// sets null unless [`SetGrbit::ZERO_LENGTH`] is given (as ESE), `None` sets null. A long
    /// value longer than 1024 bytes is stored apart from the record, in the table's
    /// long-value tree, when the update is written; [`SetGrbit::SEPARATE_LV`] and
    /// [`SetGrbit::INTRINSIC_LV`] are accepted as hints and have no effect.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `ColumnNotFound` (-1507); `InvalidGrbit` (-900) for
    /// unknown options, for `APPEND_LV`/`OVERWRITE_LV`/`SIZE_LV` on a column that is not long,
    /// and for `APPEND_LV` with `OVERWRITE_LV` or `SIZE_LV`; `InvalidBufferSize` (-1047) for
    /// a `SIZE_LV` value that is not 4 bytes, or a fixed-size value of the wrong size;
    /// `ColumnNoChunk` (-1502) for an `ib_long_value` past the end of the value;
    /// `ColumnTooBig` (-1506) when the value would be longer than the column's maximum (the
    /// message gives both lengths); `NullInvalid` (-1504) for null in a NotNULL column;
    /// `BadItagSequence` (-1518) as [`Table::set_column_itag`]; `LVCorrupted` (-1526) when the
    /// value being changed is a damaged separated value; the session errors.
    pub fn set_column_with(
        &mut self,
        column: u32,
        value: Option<&[u8]>,
        grbit: SetGrbit,
        info: SetInfo,
    ) -> Result<()> {
        self.in_call(|this| {
            this.check_open()?;
            if SetGrbit::from_bits(grbit.bits()).is_none() {
                return Err(Error::new(ErrorKind::InvalidGrbit)
                    .with_message(format!("set grbit {:#x}", grbit.bits())));
            }
            // A shared handle on the definition, not a copy of the column's entry.
            let def = Arc::clone(&this.def);
            let col = def.column(column)?;
            let p = this
                .prepared
                .as_ref()
                .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
            crate::special::check_settable(&col.def, p.prep)?;
            let multi = col.def.grbit.contains(ColumnGrbit::MULTI_VALUED);
            let itag = match info.itag_sequence {
                0 if !multi => 1,
                n if n > 1 && !multi => return Err(Error::new(ErrorKind::BadItagSequence)),
                n => n,
            };
            let lv_ops = grbit & (SetGrbit::APPEND_LV | SetGrbit::OVERWRITE_LV | SetGrbit::SIZE_LV);
            if !lv_ops.is_empty() && !col.def.coltyp.is_long() {
                return Err(Error::new(ErrorKind::InvalidGrbit).with_message(format!(
                    "long-value options on column {:?}, which is not a long column",
                    col.def.name
                )));
            }
            if lv_ops.bits().count_ones() > 1
                && lv_ops != SetGrbit::OVERWRITE_LV | SetGrbit::SIZE_LV
            {
                return Err(Error::new(ErrorKind::InvalidGrbit)
                    .with_message("APPEND_LV goes with neither OVERWRITE_LV nor SIZE_LV"));
            }
            let new = if lv_ops.is_empty() {
                match value {
                    Some(v) if !v.is_empty() || grbit.contains(SetGrbit::ZERO_LENGTH) => {
                        Some(Cow::Borrowed(v))
                    }
                    _ => None,
                }
            } else {
                // The value being changed, whole: the update writes back only the chunks whose
                // bytes changed.
                let mut cur = match p.record.get(column, itag) {
                    Some(v) if v.separated => {
                        this.read_lv(&v.data, &this.session.read_view(), 0, usize::MAX)?
                    }
                    Some(v) => v.data,
                    None => Vec::new(),
                };
                let data = value.unwrap_or_default();
                let max = u64::from(col.def.effective_max());
                let too_big = |len: u64| {
                    Error::new(ErrorKind::ColumnTooBig).with_message(format!(
                        "column {:?} holds at most {max} bytes, the value would have {len}",
                        col.def.name
                    ))
                };
                if lv_ops == SetGrbit::SIZE_LV {
                    let n: [u8; 4] = data.try_into().map_err(|_| {
                        Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
                            "SIZE_LV takes the new length as 4 bytes, got {}",
                            data.len()
                        ))
                    })?;
                    let n = u32::from_le_bytes(n);
                    if u64::from(n) > max {
                        return Err(too_big(u64::from(n)));
                    }
                    cur.resize(n as usize, 0);
                } else {
                    let at = if lv_ops.contains(SetGrbit::OVERWRITE_LV) {
                        info.ib_long_value
                    } else {
                        cur.len() as u64
                    };
                    if at > cur.len() as u64 {
                        return Err(Error::new(ErrorKind::ColumnNoChunk).with_message(format!(
                            "ibLongValue {at} is past the end of the value ({} bytes)",
                            cur.len()
                        )));
                    }
                    let end = at + data.len() as u64;
                    if end > max {
                        return Err(too_big(end));
                    }
                    let at = at as usize;
                    let end = end as usize;
                    if cur.len() < end {
                        cur.resize(end, 0);
                    }
                    if let Some(dst) = cur.get_mut(at..end) {
                        dst.copy_from_slice(data);
                    }
                    if lv_ops.contains(SetGrbit::SIZE_LV) {
                        // ESE's overwrite-range-and-resize: the value ends with the data.
                        cur.truncate(end);
                    }
                }
                if cur.is_empty()
                    && p.record.get(column, itag).is_none()
                    && !grbit.contains(SetGrbit::ZERO_LENGTH)
                    && lv_ops != SetGrbit::SIZE_LV
                {
                    // Appending nothing to null leaves null.
                    None
                } else {
                    Some(Cow::Owned(cur))
                }
            };
            let p = this
                .prepared
                .as_mut()
                .ok_or_else(|| Error::new(ErrorKind::UpdateNotPrepared))?;
            if let Some(v) = new {
                col.def.check_value(&v)?;
                match v {
                    // Copied into a buffer the record already has (see `UpdateScratch`).
                    Cow::Borrowed(v) => p.record.set_from(column, itag, v, &mut this.scratch.bufs),
                    Cow::Owned(data) => p.record.set(
                        column,
                        itag,
                        Some(TaggedValue {
                            data,
                            separated: false,
                        }),
                    ),
                }
            } else {
                if col.def.grbit.contains(ColumnGrbit::NOT_NULL) {
                    return Err(
                        Error::new(ErrorKind::NullInvalid).with_message(col.def.name.clone())
                    );
                }
                p.record.set(column, itag, None)
            }
        })
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
        primary_key(&self.def, ix, rec)?.ok_or_else(|| Error::new(ErrorKind::NullKeyDisallowed))
    }

    /// Changes the entries of record `bm` in every secondary index from those of `old` to
    /// those of `new` (`None`: no record).
    fn maintain_indexes(
        &self,
        t: &mut Transaction,
        bm: &[u8],
        old: Option<&Record>,
        new: Option<&Record>,
    ) -> Result<()> {
        maintain_indexes_of(&self.def, self.dbid(), t, bm, old, new)
    }

    /// The update inside transaction `t`: returns the bookmark and the cursor's new entry.
    fn update_in(&mut self, t: &mut Transaction) -> Result<(Vec<u8>, NewEntry)> {
        self.sync_def(t)?;
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
        let insert = p.prep == Prep::Insert;
        let tree = self.tree;
        let view = t.read_view();
        // The record as this transaction sees it (a read changes nothing, so it needs no
        // savepoint).
        let old = if insert {
            None
        } else {
            let cur = self
                .current
                .as_deref()
                .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
            let old_bytes = t
                .read(tree, cur)?
                .ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
            if p.prep == Prep::ReplaceNoLock && p.original.as_ref() != Some(&old_bytes) {
                return Err(Error::new(ErrorKind::WriteConflict).with_message(
                    "the record changed since the update was prepared (replace without lock)",
                ));
            }
            Some(Record::decode(&old_bytes, &self.layout)?)
        };
        let adjusted = match &old {
            Some(o) if self.has_replace_columns() => Some(self.on_replace(&p.record, o)?),
            _ => None,
        };
        let rec = adjusted.as_ref().unwrap_or(&p.record);
        // Keys are made from the first bytes of separated values.
        let new_keyed = self.keyed(rec, &view)?;
        let max = self.engine.db(self.dbid())?.db.max_record_len();
        let key = self.key_of(&new_keyed)?;
        if !insert && self.current.as_deref() != Some(&key[..]) {
            return Err(Error::new(ErrorKind::RecordPrimaryChanged));
        }
        // The change looks the key up in the version store first thing: its memory is
        // fetched while the record is encoded.
        self.engine.vs.prefetch_key(tree, &key);
        // Before `store_lvs`, which may rewrite the old record's long values in place.
        let old_keyed = old.as_ref().map(|o| self.keyed(o, &view)).transpose()?;
        let save = t.change_count();
        let mut encoded = std::mem::take(&mut self.scratch.encoded);
        let r = (|| {
            let stored = self.store_lvs(t, rec, old.as_ref(), max.saturating_sub(key.len()))?;
            stored.encode_into(&self.layout, &mut encoded)?;
            let bytes = &encoded;
            if bytes.len() + key.len() > max {
                return Err(Error::new(ErrorKind::RecordTooBig).with_message(format!(
                    "the record has {} bytes, a page holds at most {max}",
                    bytes.len() + key.len()
                )));
            }
            if insert {
                t.insert(tree, &key, bytes)?;
            } else {
                t.replace_at(tree, &key, bytes, self.leaf_hint().as_ref())?;
            }
            self.maintain_indexes(t, &key, old_keyed.as_deref(), Some(&new_keyed))?;
            if let Some(o) = &old {
                self.free_lvs(t, o, Some(&stored))?;
            }
            Ok(())
        })();
        self.scratch.encoded = encoded;
        if let Err(e) = r {
            t.rollback_to(save)?;
            return Err(e);
        }
        if self.cur.is_primary() {
            return Ok((key, NewEntry::Bookmark));
        }
        let pos = self.entry_of(&key, &new_keyed, &view)?;
        Ok((key, NewEntry::Entry(pos)))
    }

    /// Writes the prepared update (JetUpdate), the record and its entries in every secondary
    /// index together, and returns the record's bookmark (its primary key); the cursor moves
    /// to the record (on its first entry in the current index). A replace adds one to every
    /// version column (wrapping) and keeps every escrow column's current value.
    ///
    /// # Errors
    /// `UpdateNotPrepared` (-1609); `KeyDuplicate` (-1605) for an insert whose primary key
    /// exists, or a key a unique index already holds for another record;
    /// `RecordPrimaryChanged` (-1604) for a replace that changes the primary key;
    /// `NullInvalid` (-1504) for a NotNULL column without a value; `NullKeyDisallowed`
    /// (-1053) for a null key column of a `DISALLOW_NULL` index; `KeyTruncated` (-346) for an
    /// over-long key of a `DISALLOW_TRUNCATION` index; `RecordTooBig` (-1026);
    /// `WriteConflict` (-1102) when another transaction changed the record, an entry key of a
    /// unique index or the table's definition and has not committed (or committed after this
    /// transaction began), and for a replace without lock whose record changed since it was
    /// prepared; `TransReadOnly` (-1110); `VersionStoreOutOfMemory` (-1069) (deleting a
    /// replaced separated long value keeps its chunks' before-images); `LVCorrupted` (-1526)
    /// when a long value the update replaces has a missing chunk; the session errors. On
    /// error nothing is written and the update stays prepared.
    ///
    /// A long value over 1024 bytes (or a shorter one when the record would not fit a page
    /// otherwise) is written to the table's long-value tree in the same transaction; a
    /// changed separated value is rewritten in place (only the chunks whose bytes changed),
    /// and the chunks of separated values the record no longer has are deleted.
    pub fn update(&mut self) -> Result<Vec<u8>> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        if self.prepared.is_none() {
            return Err(Error::new(ErrorKind::UpdateNotPrepared));
        }
        let engine = Arc::clone(&self.engine);
        let (key, entry) = session.in_transaction(&engine, |t| self.update_in(t))?;
        if let Some(p) = self.prepared.take() {
            self.scratch.keep(p.record);
        }
        self.set_current(&key);
        match entry {
            NewEntry::Entry(pos) => self.pos = pos,
            // On the primary index the entry is the bookmark.
            NewEntry::Bookmark => self.set_pos(&key, key.len()),
        }
        self.off = Off::BeforeFirst(None);
        Ok(key)
    }

    /// The delete inside transaction `t`.
    fn delete_in(&mut self, t: &mut Transaction, key: &[u8]) -> Result<()> {
        self.sync_def(t)?;
        let tree = self.tree;
        let save = t.change_count();
        let r = (|| {
            if !has_long_columns(&self.def) && self.def.indexes.iter().all(IndexEntry::is_primary) {
                // Nothing but the record to delete: no index entry, no long value. The delete
                // checks that this transaction sees the record.
                return t.delete_at(tree, key, self.leaf_hint().as_ref());
            }
            let old = t
                .read(tree, key)?
                .ok_or_else(|| Error::new(ErrorKind::RecordNotFound))?;
            let old = Record::decode(&old, &self.layout)?;
            let old_keyed = self.keyed(&old, &t.read_view())?;
            t.delete_at(tree, key, self.leaf_hint().as_ref())?;
            self.maintain_indexes(t, key, Some(&old_keyed), None)?;
            self.free_lvs(t, &old, None)
        })();
        if let Err(e) = r {
            t.rollback_to(save)?;
            return Err(e);
        }
        Ok(())
    }

    /// Deletes the current record and its index entries (JetDelete). The cursor stays where
    /// the record was: moving next or previous goes on from there.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603); `RecordDeleted` (-1017) if it was deleted already;
    /// `WriteConflict` (-1102); `TransReadOnly` (-1110); `LVCorrupted` (-1526) when one of
    /// its separated long values has a missing chunk (nothing is deleted); the session
    /// errors. The chunks of the record's separated long values are deleted with it.
    pub fn delete(&mut self) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        let Some(current) = &self.current else {
            return Err(Error::new(ErrorKind::NoCurrentRecord));
        };
        // A copy: the delete may move the cursor's position (a definition change resets it).
        let mut key = std::mem::take(&mut self.scratch.bookmark);
        key.clear();
        key.extend_from_slice(current);
        let engine = Arc::clone(&self.engine);
        let r = session.in_transaction(&engine, |t| self.delete_in(t, &key));
        self.scratch.bookmark = key;
        r.map_err(|e| {
            if e.kind() == ErrorKind::RecordNotFound {
                Error::new(ErrorKind::RecordDeleted)
            } else {
                e
            }
        })
    }
}

/// Whether the table `def` has a long-value column, deleted ones included: only those hold
/// separated values.
fn has_long_columns(def: &TableDef) -> bool {
    def.columns.iter().any(|c| c.def.coltyp.is_long())
}

/// Changes the entries of record `bm` of the table `def` (in database `dbid`) in every
/// secondary index from those of `old` to those of `new` (`None`: no record), in `t`.
///
/// # Errors
/// `SecondaryIndexCorrupted` (-1414) when an entry to remove is missing; `KeyDuplicate`
/// (-1605) for a unique index; the transaction's errors.
pub(crate) fn maintain_indexes_of(
    def: &TableDef,
    dbid: u32,
    t: &mut Transaction,
    bm: &[u8],
    old: Option<&Record>,
    new: Option<&Record>,
) -> Result<()> {
    for ix in def.indexes.iter().filter(|i| !i.is_primary()) {
        let keys = |r: Option<&Record>| -> Result<Vec<Vec<u8>>> {
            r.map_or_else(|| Ok(Vec::new()), |r| record_keys(def, ix, r))
        };
        let (before, after) = (keys(old)?, keys(new)?);
        let tree = tree_id(dbid, ix.objid);
        let layout = ix.layout();
        for k in before.iter().filter(|k| after.binary_search(k).is_err()) {
            t.delete(tree, &layout.node_key(k, bm)).map_err(|e| {
                if e.kind() == ErrorKind::RecordNotFound {
                    Error::new(ErrorKind::SecondaryIndexCorrupted).with_message(format!(
                        "index {:?} lacks an entry of a record it indexes",
                        ix.name
                    ))
                } else {
                    e
                }
            })?;
        }
        for k in after.iter().filter(|k| before.binary_search(k).is_err()) {
            t.insert(tree, &layout.node_key(k, bm), bm).map_err(|e| {
                if e.kind() == ErrorKind::KeyDuplicate {
                    Error::new(ErrorKind::KeyDuplicate)
                        .with_message(format!("unique index {:?}", ix.name))
                } else {
                    e
                }
            })?;
        }
    }
    Ok(())
}
