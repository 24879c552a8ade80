//! Data definition beyond create table and create/delete index: delete and rename a table,
//! add and delete a column, enumerate the catalog; the registry of open cursors (a table in
//! use cannot be deleted, a cursor opened in a rolled-back level is closed); and the deferred
//! freeing of the trees of deleted tables and indexes.
//!
//! Every change is a change of the table's catalog record inside the session's transaction
//! (or an implicit one), so it is versioned, logged and undone like a record: a rolled-back
//! delete leaves the table, a crash before the commit is durable loses the change whole. The
//! trees of a deleted table or index are freed only after the deleting transaction committed
//! and nobody can reach them any more (see [`free_deferred`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ese_core::{Error, ErrorKind, ObjId, Result};
use parking_lot::Mutex;

use crate::catalog::{self, CATALOG_OBJID, TableDef};
use crate::column::{ColumnDef, ColumnGrbit, validate_name};
use crate::database::DbId;
use crate::engine::{Engine, tree_id};
use crate::session::Session;
use crate::table::Table;

/// How many cursors are open on each table (by the table tree's engine-wide id).
#[derive(Debug, Default)]
pub(crate) struct OpenCursors {
    counts: Mutex<HashMap<ObjId, usize>>,
}

impl OpenCursors {
    fn open(&self, table: ObjId) {
        *self.counts.lock().entry(table).or_insert(0) += 1;
    }

    fn close(&self, table: ObjId) {
        let mut c = self.counts.lock();
        if let Some(n) = c.get_mut(&table) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&table);
            }
        }
    }

    /// Cursors open on the table whose tree is `table` (an engine-wide tree id).
    pub(crate) fn count(&self, table: ObjId) -> usize {
        self.counts.lock().get(&table).copied().unwrap_or(0)
    }
}

/// The life of one cursor (ESE's `FUCB` open level): counted in [`OpenCursors`] until it is
/// closed, by drop or by the rollback of the transaction level it was opened in.
#[derive(Debug)]
pub(crate) struct CursorHandle {
    table: ObjId,
    /// The transaction level the cursor belongs to (0: outside any transaction, never closed
    /// by a rollback). Committing a level hands its cursors to the level below.
    level: AtomicU32,
    closed: AtomicBool,
    registry: Arc<OpenCursors>,
}

impl CursorHandle {
    /// Registers a new cursor on table tree `table` opened at transaction level `level`.
    pub(crate) fn open(registry: &Arc<OpenCursors>, table: ObjId, level: u32) -> Arc<Self> {
        registry.open(table);
        Arc::new(CursorHandle {
            table,
            level: AtomicU32::new(level),
            closed: AtomicBool::new(false),
            registry: Arc::clone(registry),
        })
    }

    /// Closes the cursor (once).
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.registry.close(self.table);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn level(&self) -> u32 {
        self.level.load(Ordering::Acquire)
    }
}

/// Trees a transaction made unreachable (a deleted table's, a deleted index's), waiting for
/// the transaction's end.
#[derive(Debug)]
pub(crate) struct PendingFree {
    /// The transaction level of the change: a rollback of that level forgets it.
    level: u32,
    free: DeferredFree,
}

/// Trees of a committed deletion, freed when nobody can reach them any more.
#[derive(Debug)]
pub(crate) struct DeferredFree {
    dbid: u32,
    /// The attachment the trees belong to: after a detach, `dbid` may name another file.
    db: std::sync::Weak<crate::engine::AttachedDb>,
    /// The table tree's engine-wide id (its cursors keep the trees alive).
    table: ObjId,
    /// Objids of the trees to free.
    trees: Vec<ObjId>,
    /// A commit timestamp at or after the deletion's commit.
    ts: u64,
}

/// What the session does with its DDL bookkeeping when a transaction level ends.
pub(crate) enum LevelEnd {
    /// A nested level committed into `into` (the level below).
    Committed { into: u32 },
    /// The transaction committed (level 0) with timestamp `ts`.
    Committed0 { ts: u64 },
    /// Levels above `to` rolled back (`to` 0: the whole transaction).
    RolledBack { to: u32 },
    /// The session ended: every cursor is closed (JetEndSession closes the session's
    /// tables).
    SessionEnded,
}

/// Applies the end of a transaction level to a session's cursors and pending frees.
pub(crate) fn level_end(
    engine: Option<&Engine>,
    cursors: &mut Vec<std::sync::Weak<CursorHandle>>,
    pending: &mut Vec<PendingFree>,
    end: &LevelEnd,
) {
    cursors.retain(|w| {
        let Some(h) = w.upgrade() else { return false };
        if h.is_closed() {
            return false;
        }
        match *end {
            LevelEnd::Committed { into } => {
                if h.level() > into {
                    h.level.store(into, Ordering::Release);
                }
                true
            }
            LevelEnd::Committed0 { .. } => {
                h.level.store(0, Ordering::Release);
                true
            }
            LevelEnd::RolledBack { to } => {
                if h.level() > to {
                    h.close();
                    false
                } else {
                    true
                }
            }
            LevelEnd::SessionEnded => {
                h.close();
                false
            }
        }
    });
    match *end {
        LevelEnd::Committed { into } => {
            for p in pending.iter_mut() {
                p.level = p.level.min(into);
            }
        }
        LevelEnd::RolledBack { to } => pending.retain(|p| p.level <= to),
        LevelEnd::SessionEnded => pending.clear(),
        LevelEnd::Committed0 { ts } => {
            if let Some(engine) = engine {
                let mut d = engine.deferred.lock();
                for mut p in pending.drain(..) {
                    p.free.ts = ts;
                    d.push(p.free);
                }
            } else {
                pending.clear();
            }
        }
    }
}

/// Frees the trees of committed deletions that nobody can reach any more: every live
/// transaction began after the deletion committed (`ts` at or below the version store's
/// horizon, so no snapshot still sees the catalog record naming them) and no cursor is open
/// on the table. Version entries of the trees may remain: no snapshot reads them any more,
/// and version cleanup skips a tree that no longer exists (objids are never reused). Each tree is freed by one logged operation (`Database::delete_tree`); the others
/// wait for a later call. Called after level-0 commits.
///
/// A crash between the commit and the freeing leaves the trees allocated and unnamed, never
/// named and freed; the next attach frees them ([`sweep_unnamed_trees`]).
///
/// # Errors
/// The page store's errors of `delete_tree` (write failures, corruption of the tree).
pub(crate) fn free_deferred(engine: &Engine) -> Result<()> {
    let mut list = engine.deferred.lock();
    if list.is_empty() {
        return Ok(());
    }
    let horizon = engine.vs.horizon();
    let mut i = 0;
    while i < list.len() {
        let Some(f) = list.get(i) else { break };
        let ready = f.ts <= horizon && engine.cursors.count(f.table) == 0;
        if !ready {
            i += 1;
            continue;
        }
        let f = list.swap_remove(i);
        // A database detached since keeps the trees, allocated and unnamed (like the trees of
        // a rolled-back creation; the next attach frees them).
        let Some(d) = f.db.upgrade() else { continue };
        if !engine.db(f.dbid).is_ok_and(|cur| Arc::ptr_eq(&cur, &d)) {
            continue;
        }
        // Version cleanup may be reading a tree it still has entries of: let it finish, and
        // keep it off until the trees are gone (it then finds them unregistered).
        let _no_cleanup = engine.vs.pause_cleanup();
        for objid in f.trees {
            engine.store.unregister(tree_id(f.dbid, objid));
            match d.db.delete_tree(objid) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::ObjectNotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Frees the trees of a database that no catalog record names: those of a table or index
/// created in a transaction that rolled back, and those of a deleted table or index whose
/// freeing a crash or a detach prevented. Runs at attach, before any session can use the
/// database, so no transaction can be creating a tree it has not named yet. Only table and
/// index trees are candidates (objids above the catalog's); the sweep does nothing when the
/// catalog holds a record it does not know (it could name trees). A tree that cannot be freed
/// (damaged) is left as it is; write failures are returned.
///
/// # Errors
/// Page read errors of the catalog and the tree directory; write failures of `delete_tree`.
pub(crate) fn sweep_unnamed_trees(d: &crate::engine::AttachedDb) -> Result<usize> {
    let cat = d.db.open_tree(CATALOG_OBJID)?;
    let mut named = std::collections::HashSet::new();
    let mut c = cat.cursor();
    let mut on = c.move_first()?;
    while on {
        // A flag-deleted record is a committed deletion: the database was not attached, so
        // no transaction has versions in it, and recovery undid every uncommitted change.
        let state = ese_txn::node_state(Some((c.data().to_vec(), c.flags())));
        let Some(bytes) = state.value() else {
            on = c.move_next()?;
            continue;
        };
        let Some(def) = catalog::is_table_key(c.key())
            .then(|| TableDef::decode(bytes).ok())
            .flatten()
        else {
            return Ok(0);
        };
        named.insert(def.objid);
        named.insert(def.lv_objid);
        named.extend(def.indexes.iter().map(|i| i.objid));
        on = c.move_next()?;
    }
    let mut freed = 0;
    for (objid, _, kind) in d.db.trees()? {
        if objid.0 <= CATALOG_OBJID.0
            || named.contains(&objid)
            || !matches!(
                kind,
                ese_btree::TreeKind::Table | ese_btree::TreeKind::Index
            )
        {
            continue;
        }
        match d.db.delete_tree(objid) {
            Ok(()) => freed += 1,
            Err(e) if crate::session::is_fatal_io(&e) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(freed)
}

impl Session {
    /// Whether the session has an open transaction, and its level.
    pub(crate) fn open_level(&self) -> u32 {
        self.shared
            .state
            .lock()
            .trx
            .as_ref()
            .filter(|t| t.is_open())
            .map_or(0, ese_txn::Transaction::level)
    }

    /// Registers a cursor on table tree `table` opened now (at the session's current level).
    pub(crate) fn register_cursor(&self, engine: &Engine, table: ObjId) -> Arc<CursorHandle> {
        let mut st = self.shared.state.lock();
        let level = st
            .trx
            .as_ref()
            .filter(|t| t.is_open())
            .map_or(0, ese_txn::Transaction::level);
        let h = CursorHandle::open(&engine.cursors, table, level);
        if st.cursors.len() >= 64 && st.cursors.len().is_power_of_two() {
            // Dropped cursors leave dead entries; prune them now and then.
            st.cursors
                .retain(|w| w.upgrade().is_some_and(|h| !h.is_closed()));
        }
        st.cursors.push(Arc::downgrade(&h));
        h
    }

    /// Hands trees made unreachable by a DDL change to the transaction: pending until its
    /// level-0 commit when the change ran in the session's transaction (`explicit`), else
    /// (the implicit transaction has committed) queued at once; then frees what it can.
    fn defer_free(&self, engine: &Engine, explicit: bool, level: u32, free: DeferredFree) {
        if explicit {
            self.shared
                .state
                .lock()
                .ddl_pending
                .push(PendingFree { level, free });
        } else {
            let free = DeferredFree {
                ts: engine.vs.last_commit_ts(),
                ..free
            };
            engine.deferred.lock().push(free);
            if let Err(e) = free_deferred(engine) {
                self.check_fatal(&e);
            }
        }
    }

    /// Deletes a table (JetDeleteTable), in the session's transaction (or an implicit one):
    /// its catalog record is deleted, so after a rollback the table is still there. Its trees
    /// (records, secondary indexes, long values) are freed after the commit, once no
    /// transaction that could still see the table is open and no cursor is open on it; a
    /// crash in between leaves them allocated but unnamed.
    ///
    /// `name` compares case-insensitively.
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if no such table exists in this session's view; `TableInUse`
    /// (-1304) while a cursor (of any session) is open on it; `WriteConflict` (-1102) when
    /// another transaction changed the table (or its definition) and has not committed, or
    /// committed after this transaction began; `InvalidDatabaseId` (-1010); `TransReadOnly`
    /// (-1110); the session and instance errors.
    pub fn delete_table(&self, db: DbId, name: &str) -> Result<()> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        let key = catalog::table_key(name);
        let explicit = self.open_level() > 0;
        let (level, free) = self.in_transaction(&engine, |t| {
            let bytes = t.read(cat, &key)?.ok_or_else(|| {
                Error::new(ErrorKind::ObjectNotFound).with_message(name.to_owned())
            })?;
            let def = TableDef::decode(&bytes)?;
            let table = tree_id(d.dbid, def.objid);
            if engine.cursors.count(table) > 0 {
                return Err(Error::new(ErrorKind::TableInUse)
                    .with_message(format!("a cursor is open on table {:?}", def.name)));
            }
            engine.catalog_write(|| t.delete(cat, &key))?;
            let mut trees = vec![def.objid];
            trees.extend(
                def.indexes
                    .iter()
                    .map(|i| i.objid)
                    .filter(|o| *o != def.objid),
            );
            if def.lv_objid.0 != 0 {
                trees.push(def.lv_objid);
            }
            Ok((
                t.level(),
                DeferredFree {
                    dbid: d.dbid,
                    db: Arc::downgrade(&d),
                    table,
                    trees,
                    ts: 0,
                },
            ))
        })?;
        self.defer_free(&engine, explicit, level, free);
        Ok(())
    }

    /// Renames a table (JetRenameTable), in the session's transaction (or an implicit one):
    /// the catalog record moves to the new name, so after a rollback the table has its old
    /// name. A change of case only is a rename too.
    ///
    /// # Errors
    /// `InvalidName` (-1002) for a bad new name; `ObjectNotFound` (-1305) if no table `old`
    /// exists in this session's view; `TableDuplicate` (-1303) if a table named `new` exists;
    /// `TableInUse` (-1304) while a cursor is open on the table (an open cursor knows its
    /// table by name, as an ESE `FCB` does); `WriteConflict` (-1102) when another transaction
    /// changed the table and has not committed (or committed after this transaction began),
    /// or is creating a table named `new`; `InvalidDatabaseId` (-1010); `TransReadOnly`
    /// (-1110); the session and instance errors.
    pub fn rename_table(&self, db: DbId, old: &str, new: &str) -> Result<()> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        validate_name(new)?;
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        let (old_key, new_key) = (catalog::table_key(old), catalog::table_key(new));
        self.in_transaction(&engine, |t| {
            let bytes = t.read(cat, &old_key)?.ok_or_else(|| {
                Error::new(ErrorKind::ObjectNotFound).with_message(old.to_owned())
            })?;
            let mut def = TableDef::decode(&bytes)?;
            if engine.cursors.count(tree_id(d.dbid, def.objid)) > 0 {
                return Err(Error::new(ErrorKind::TableInUse)
                    .with_message(format!("a cursor is open on table {:?}", def.name)));
            }
            new.clone_into(&mut def.name);
            engine.catalog_write(|| {
                if new_key == old_key {
                    return t.replace(cat, &old_key, &def.encode());
                }
                if t.read(cat, &new_key)?.is_some() {
                    return Err(Error::new(ErrorKind::TableDuplicate).with_message(new.to_owned()));
                }
                let save = t.change_count();
                let r = t
                    .delete(cat, &old_key)
                    .and_then(|()| t.insert(cat, &new_key, &def.encode()));
                if let Err(e) = r {
                    t.rollback_to(save)?;
                    return Err(e);
                }
                Ok(())
            })
        })
    }

    /// The names of the tables of a database as this session sees them, in catalog order
    /// (case-insensitive name order) (JetGetObjectInfo / `JetGetTableInfo` enumeration of
    /// the catalog, objects of type table).
    ///
    /// # Errors
    /// `InvalidDatabaseId` (-1010); `CatalogCorrupted` (-1220) for a damaged definition; page
    /// read errors; the session and instance errors.
    pub fn table_names(&self, db: DbId) -> Result<Vec<String>> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        let view = self.read_view();
        let cat = tree_id(d.dbid, CATALOG_OBJID);
        let tree = engine.store.tree(cat)?;
        let mut c = tree.cursor();
        let mut on = c.move_first()?;
        let mut names = Vec::new();
        while on {
            let key = c.key().to_vec();
            let node = Some((c.data().to_vec(), c.flags()));
            let state = if crate::table::node_settled(&engine, cat, &c) {
                ese_txn::node_state(node)
            } else {
                engine.vs.read(cat, &key, &view)?
            };
            if let Some(bytes) = state.value() {
                names.push(TableDef::decode(bytes)?.name);
            }
            on = c.move_next()?;
        }
        Ok(names)
    }
}

impl Table {
    /// The catalog record of this table as transaction `t` sees it, decoded.
    fn def_in(&self, t: &ese_txn::Transaction) -> Result<(Vec<u8>, TableDef)> {
        let cat = tree_id(self.dbid(), CATALOG_OBJID);
        let key = catalog::table_key(&self.def.name);
        let bytes = t.read(cat, &key)?.ok_or_else(|| {
            Error::new(ErrorKind::ObjectNotFound).with_message(self.def.name.clone())
        })?;
        let def = TableDef::decode(&bytes)?;
        Ok((key, def))
    }

    /// Whether the table has a record transaction `t` sees.
    fn has_records(&self, t: &ese_txn::Transaction) -> Result<bool> {
        let view = t.read_view();
        let tree = self.engine.store.tree(self.tree)?;
        let mut c = tree.cursor();
        let mut on = c.move_first()?;
        while on {
            if self.visible_at(&view, self.tree, &c)?.is_some() {
                return Ok(true);
            }
            on = c.move_next()?;
        }
        Ok(false)
    }

    /// Adds a column to the table (JetAddColumn), in the session's transaction (or an
    /// implicit one), and returns its column id. Existing records have no value for it: they
    /// read its default value, or null. Ids are never reused, so a record written before a
    /// column with the same name was deleted never shows its old value.
    ///
    /// # Errors
    /// The definition errors of [`ColumnDef::validate`] (`InvalidName`,
    /// `MultiValuedColumnMustBeTagged`, `CannotBeTagged`, `InvalidColumnType`,
    /// `TaggedNotNULL`, `DefaultValueTooBig`, `InvalidParameter`); `ColumnDuplicate` (-1508)
    /// if a column of that name exists; `ColumnRedundant` (-1510) for a second
    /// auto-increment column; `TooManyColumns` (-1040) when the column's area (fixed 127,
    /// variable 128, tagged) is full; `NullInvalid` (-1504) for a NotNULL column without a
    /// default value on a table that has records this transaction sees (they would break
    /// the constraint; ESE leaves this case undocumented, this engine refuses it);
    /// `WriteConflict` (-1102) when another transaction changed the table and has not
    /// committed, or committed after this transaction began; `ObjectNotFound` (-1305) if the
    /// table was deleted; `TransReadOnly` (-1110); the session errors.
    pub fn add_column(&mut self, column: &ColumnDef) -> Result<u32> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        column.validate()?;
        let engine = Arc::clone(&self.engine);
        session.in_transaction(&engine, |t| {
            let (key, mut def) = self.def_in(t)?;
            let live = || def.columns.iter().filter(|c| !c.deleted);
            if live().any(|c| c.def.name.eq_ignore_ascii_case(&column.name)) {
                return Err(
                    Error::new(ErrorKind::ColumnDuplicate).with_message(column.name.clone())
                );
            }
            if column.grbit.contains(ColumnGrbit::AUTOINCREMENT)
                && live().any(|c| c.def.grbit.contains(ColumnGrbit::AUTOINCREMENT))
            {
                return Err(Error::new(ErrorKind::ColumnRedundant));
            }
            if column.grbit.contains(ColumnGrbit::NOT_NULL)
                && column.default.is_none()
                && self.has_records(t)?
            {
                return Err(Error::new(ErrorKind::NullInvalid).with_message(format!(
                    "NotNULL column {:?} without a default value on a table with records",
                    column.name
                )));
            }
            let id = def.push_column(column.clone())?;
            let cat = tree_id(self.dbid(), CATALOG_OBJID);
            let bytes = def.encode();
            engine.catalog_write(|| t.replace(cat, &key, &bytes))?;
            self.install_def(bytes)?;
            Ok(id)
        })
    }

    /// Deletes a column of the table (JetDeleteColumn), in the session's transaction (or an
    /// implicit one). The column is marked deleted in the catalog: its id is never reused,
    /// values records still hold are no longer visible (a fixed column keeps its slot in
    /// the record layout, as in ESE) and its name can be used again.
    ///
    /// # Errors
    /// `ColumnNotFound` (-1507) if no such column exists; `ColumnInUse` (-1046) if an index
    /// (the primary included) has it in its key; `WriteConflict` (-1102) when another
    /// transaction changed the table and has not committed, or committed after this
    /// transaction began; `ObjectNotFound` (-1305) if the table was deleted; `TransReadOnly`
    /// (-1110); the session errors.
    pub fn delete_column(&mut self, name: &str) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        session.in_transaction(&engine, |t| {
            let (key, mut def) = self.def_in(t)?;
            let col = def
                .columns
                .iter()
                .find(|c| !c.deleted && c.def.name.eq_ignore_ascii_case(name))
                .map(|c| c.id)
                .ok_or_else(|| {
                    Error::new(ErrorKind::ColumnNotFound).with_message(name.to_owned())
                })?;
            if let Some(ix) = def
                .indexes
                .iter()
                .find(|ix| ix.segments.iter().any(|s| s.column == col))
            {
                return Err(Error::new(ErrorKind::ColumnInUse).with_message(format!(
                    "column {name:?} is in the key of index {:?}",
                    ix.name
                )));
            }
            for c in def.columns.iter_mut().filter(|c| c.id == col) {
                c.deleted = true;
            }
            let cat = tree_id(self.dbid(), CATALOG_OBJID);
            let bytes = def.encode();
            engine.catalog_write(|| t.replace(cat, &key, &bytes))?;
            self.install_def(bytes)
        })
    }

    /// Hands the tree of a deleted index to the deferred freeing (see
    /// [`Session::delete_table`]).
    pub(crate) fn defer_index_free(&self, explicit: bool, level: u32, objid: ObjId) {
        let Ok(d) = self.engine.db(self.dbid()) else {
            return;
        };
        let free = DeferredFree {
            dbid: self.dbid(),
            db: Arc::downgrade(&d),
            table: self.tree,
            trees: vec![objid],
            ts: 0,
        };
        self.session.defer_free(&self.engine, explicit, level, free);
    }

    /// A new cursor on the same table (JetDupCursor). As ESE's, the duplicate is on the
    /// clustered (primary) index and on the table's first record (on no record when the
    /// table is empty, as the session sees it); nothing else is copied: no search key, no
    /// index range, no prepared update. It belongs to the same session and counts as open on
    /// the table; made inside a transaction level, it is closed if that level rolls back.
    ///
    /// # Errors
    /// `InvalidTableId` (-1310) if this cursor was closed by a rollback; page read errors;
    /// the session errors.
    pub fn dup_cursor(&self) -> Result<Table> {
        {
            let _call = self.session.enter(false)?;
            self.check_open()?;
        }
        let mut dup = self.duplicate();
        match dup.move_to(crate::table::Move::First) {
            Ok(()) => Ok(dup),
            Err(e) if e.kind() == ErrorKind::NoCurrentRecord => Ok(dup),
            Err(e) => Err(e),
        }
    }

    /// Returns `InvalidTableId` once the cursor was closed (by the rollback of the
    /// transaction level it was opened in, as ESE closes such cursors).
    ///
    /// # Errors
    /// `InvalidTableId` (-1310).
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.handle.is_closed() {
            return Err(Error::new(ErrorKind::InvalidTableId).with_message(format!(
                "the cursor on table {:?} was closed by the rollback of the level it was opened in",
                self.def.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_close_with_their_level() {
        let reg = Arc::new(OpenCursors::default());
        let table = ObjId(7);
        let outer = CursorHandle::open(&reg, table, 1);
        let inner = CursorHandle::open(&reg, table, 2);
        let mut list = vec![Arc::downgrade(&outer), Arc::downgrade(&inner)];
        let mut pending = Vec::new();
        assert_eq!(reg.count(table), 2);
        level_end(
            None,
            &mut list,
            &mut pending,
            &LevelEnd::RolledBack { to: 1 },
        );
        assert!(inner.is_closed() && !outer.is_closed());
        assert_eq!(reg.count(table), 1);
        level_end(
            None,
            &mut list,
            &mut pending,
            &LevelEnd::Committed0 { ts: 1 },
        );
        assert!(!outer.is_closed());
        let to0 = LevelEnd::RolledBack { to: 0 };
        level_end(None, &mut list, &mut pending, &to0);
        assert!(!outer.is_closed(), "committed: it belongs to level 0 now");
        level_end(None, &mut list, &mut pending, &LevelEnd::SessionEnded);
        assert!(outer.is_closed() && list.is_empty());
        outer.close();
        assert_eq!(reg.count(table), 0);
    }
}
