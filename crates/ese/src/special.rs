//! Columns the engine maintains itself (ESE's `JET_bitColumnAutoincrement`,
//! `JET_bitColumnVersion`, `JET_bitColumnEscrowUpdate` with `JET_bitColumnDeleteOnZero`):
//! values assigned when an insert is prepared, the version bumped on every replace, escrow
//! deltas (JetEscrowUpdate) and the deletion of a record whose delete-on-zero column reached
//! zero. The design is in `docs/design.md` (*Special columns*).

use std::sync::Arc;

use ese_core::{Error, ErrorKind, ObjId, Result};
use ese_txn::Transaction;

use crate::catalog::{self, CATALOG_OBJID, TableDef};
use crate::column::{ColumnArea, ColumnDef, ColumnGrbit, area_of};
use crate::engine::tree_id;
use crate::record::{Record, RecordLayout, TaggedValue};
use crate::session::Session;
use crate::table::{Prep, Table, maintain_indexes_of};

/// A record one of whose delete-on-zero columns got an escrow delta: when the transaction
/// ends, the record is deleted if the column's committed value is zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ZeroCheck {
    /// The database id (high byte of tree ids).
    pub(crate) dbid: u32,
    /// The table's name (its definition is read again at check time).
    pub(crate) table: String,
    /// The table's tree.
    pub(crate) tree: ObjId,
    /// The record's bookmark.
    pub(crate) key: Vec<u8>,
    /// The delete-on-zero column.
    pub(crate) column: u32,
}

/// The little-endian signed integer `v` (4 or 8 bytes).
fn int_of(v: &[u8]) -> Option<i64> {
    match v.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(v);
            Some(i64::from(i32::from_le_bytes(a)))
        }
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(v);
            Some(i64::from_le_bytes(a))
        }
        _ => None,
    }
}

/// `n` as a little-endian integer of `width` bytes (4 or 8; 4 keeps the low 32 bits).
fn bytes_of(n: i64, width: usize) -> Vec<u8> {
    if width == 4 {
        (n as i32).to_le_bytes().to_vec()
    } else {
        n.to_le_bytes().to_vec()
    }
}

/// An in-record value.
fn plain(data: Vec<u8>) -> TaggedValue {
    TaggedValue {
        data,
        separated: false,
    }
}

/// The largest value of auto-increment column `column` over every record of `tree` (each
/// node of the tree, committed or not, deleted or not: an upper bound of every value ever
/// handed out that reached the tree), 0 for none. When the column leads the primary index in
/// ascending order the last node holds it; otherwise every record is read.
pub(crate) fn autoinc_max(
    engine: &crate::engine::Engine,
    def: &TableDef,
    tree: ObjId,
    column: u32,
    layout: &RecordLayout,
) -> Result<i64> {
    let t = engine.store.tree(tree)?;
    let mut c = t.cursor();
    let value_of = |data: &[u8]| -> Result<Option<i64>> {
        Ok(Record::decode(data, layout)?
            .get(column, 1)
            .and_then(|v| int_of(&v.data)))
    };
    let leads = def
        .primary()
        .and_then(|ix| ix.segments.first())
        .is_some_and(|s| s.column == column && !s.descending);
    if leads {
        if !c.move_last()? {
            return Ok(0);
        }
        // Every record has a value (it is assigned at insert), so the last one is the
        // largest; a record without one falls through to the scan.
        if let Some(v) = value_of(c.data())? {
            return Ok(v);
        }
    }
    let mut max = 0i64;
    let mut on = c.move_first()?;
    while on {
        if let Some(v) = value_of(c.data())? {
            max = max.max(v);
        }
        on = c.move_next()?;
    }
    Ok(max)
}

/// Refuses JetSetColumn on a column the engine maintains, with ESE's error.
///
/// # Errors
/// `InvalidColumnType` (-1511) for an auto-increment column (always), and for a version or
/// escrow column when a replace is prepared.
pub(crate) fn check_settable(def: &ColumnDef, prep: Prep) -> Result<()> {
    let g = def.grbit;
    if g.contains(ColumnGrbit::AUTOINCREMENT) {
        return Err(Error::new(ErrorKind::InvalidColumnType)
            .with_message(format!("{:?} is an auto-increment column", def.name)));
    }
    if prep != Prep::Insert && g.intersects(ColumnGrbit::VERSION | ColumnGrbit::ESCROW_UPDATE) {
        return Err(
            Error::new(ErrorKind::InvalidColumnType).with_message(format!(
                "{:?} is a version or escrow column: it cannot be set on replace",
                def.name
            )),
        );
    }
    Ok(())
}

impl Table {
    /// Gives a record being prepared for insert the values of the engine's columns: the next
    /// auto-increment value, version 0, and the default of every escrow column (so the
    /// column is stored in the record and escrow deltas can be applied in place).
    ///
    /// # Errors
    /// `OutOfAutoincrementValues` (-1076) when a Long auto-increment passes `i32::MAX` (or a
    /// 64-bit one `i64::MAX`); the page store's errors from the first scan of the table.
    pub(crate) fn init_insert(&self, rec: &mut Record) -> Result<()> {
        for c in self.def.columns.iter().filter(|c| !c.deleted) {
            let g = c.def.grbit;
            let data = if g.contains(ColumnGrbit::AUTOINCREMENT) {
                let width = c.def.coltyp.fixed_size().unwrap_or(8) as usize;
                let counter = self.engine.autoinc_counter(self.tree, || {
                    autoinc_max(&self.engine, &self.def, self.tree, c.id, &self.layout)
                })?;
                let mut next = counter.lock();
                let v = *next;
                let limit = if width == 4 {
                    i64::from(i32::MAX)
                } else {
                    i64::MAX
                };
                let following = v.checked_add(1).filter(|_| v <= limit).ok_or_else(|| {
                    Error::new(ErrorKind::OutOfAutoincrementValues)
                        .with_message(format!("column {:?}", c.def.name))
                })?;
                *next = following;
                bytes_of(v, width)
            } else if g.contains(ColumnGrbit::VERSION) {
                0i32.to_le_bytes().to_vec()
            } else if g.contains(ColumnGrbit::ESCROW_UPDATE) {
                match &c.def.default {
                    Some(d) => d.clone(),
                    None => continue,
                }
            } else {
                continue;
            };
            rec.set(c.id, 1, Some(plain(data)))?;
        }
        Ok(())
    }

    /// Whether a replace must adjust the copy buffer (the table has a version or an escrow
    /// column).
    pub(crate) fn has_replace_columns(&self) -> bool {
        self.def.columns.iter().any(|c| {
            !c.deleted
                && c.def
                    .grbit
                    .intersects(ColumnGrbit::VERSION | ColumnGrbit::ESCROW_UPDATE)
        })
    }

    /// The record a replace writes: the copy buffer `new` with every version column one more
    /// than in `old` (wrapping at `i32::MAX`, as ESE's unsigned counter wraps) and every
    /// escrow column as in `old` (escrow columns change only through deltas, and the deltas
    /// this transaction made after the prepare must survive).
    pub(crate) fn on_replace(&self, new: &Record, old: &Record) -> Result<Record> {
        let mut rec = new.clone();
        for c in self.def.columns.iter().filter(|c| !c.deleted) {
            let g = c.def.grbit;
            if g.contains(ColumnGrbit::VERSION) {
                let was = old.get(c.id, 1).and_then(|v| int_of(&v.data)).unwrap_or(-1);
                rec.set(c.id, 1, Some(plain(bytes_of(was.wrapping_add(1), 4))))?;
            } else if g.contains(ColumnGrbit::ESCROW_UPDATE)
                && let Some(v) = old.get(c.id, 1)
            {
                rec.set(c.id, 1, Some(v))?;
            }
        }
        Ok(rec)
    }

    /// Adds `delta` to an escrow column of the current record (JetEscrowUpdate) and returns
    /// the value before the update as this transaction sees it (ESE's `pvOld`), in the
    /// column's size. Escrow deltas of different transactions on one record commute: they
    /// never conflict with each other, each reader sees the deltas committed before its
    /// snapshot (plus its own), a rollback removes the delta, and recovery keeps exactly the
    /// committed ones.
    ///
    /// `delta`: a little-endian i32 for a Long column, i64 for a LongLong column. The sum
    /// wraps on overflow. On a `DELETE_ON_ZERO` column, the record is deleted once the
    /// transaction ended and the committed value is zero (see `docs/design.md`).
    ///
    /// # Errors
    /// `NotInTransaction` (-1054) outside a transaction; `ColumnNotFound` (-1507);
    /// `AlreadyPrepared` (-1607) while an update is prepared on the cursor;
    /// `InvalidBufferSize` (-1047) when `delta` is not the column's size; `InvalidOperation`
    /// (-1906) for a column that is not a fixed escrow column; `NoCurrentRecord` (-1603);
    /// `RecordDeleted` (-1017) if this transaction does not see the record;
    /// `WriteConflict` (-1102) when another transaction replaced, deleted or write-locked
    /// the record and has not committed (or committed after this transaction began);
    /// `TransReadOnly` (-1110); `VersionStoreOutOfMemory` (-1069); `InvalidTableId` (-1310)
    /// for a cursor closed by the rollback of the level it was opened in; the session errors.
    ///
    /// Corresponds to: `JetEscrowUpdate`.
    pub fn escrow_update(&mut self, column: u32, delta: &[u8]) -> Result<Vec<u8>> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        let mut st = session.shared.state.lock();
        let t = st
            .trx
            .as_mut()
            .filter(|t| t.is_open())
            .ok_or_else(|| Error::new(ErrorKind::NotInTransaction))?;
        let col = self.def.column(column)?.clone();
        if self.prepared.is_some() {
            return Err(Error::new(ErrorKind::AlreadyPrepared));
        }
        if delta.len() as u64 != u64::from(col.def.effective_max()) {
            return Err(
                Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
                    "column {:?} takes {} bytes, the delta has {}",
                    col.def.name,
                    col.def.effective_max(),
                    delta.len()
                )),
            );
        }
        if area_of(column) != Some(ColumnArea::Fixed)
            || !col.def.grbit.contains(ColumnGrbit::ESCROW_UPDATE)
        {
            return Err(Error::new(ErrorKind::InvalidOperation)
                .with_message(format!("{:?} is not an escrow column", col.def.name)));
        }
        let d = int_of(delta).ok_or_else(|| {
            Error::new(ErrorKind::InvalidOperation).with_message("an escrow column is 4 or 8 bytes")
        })?;
        let key = self
            .current
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        self.sync_def(t)?;
        let save = t.change_count();
        let r = self.escrow_in(t, &key, &col.def, column, d);
        let old = match r {
            Ok(old) => old,
            Err(e) => {
                session.check_fatal(&e);
                t.rollback_to(save)
                    .inspect_err(|e2| session.inst.fatal(e2))?;
                return Err(if e.kind() == ErrorKind::RecordNotFound {
                    Error::new(ErrorKind::RecordDeleted)
                } else {
                    e
                });
            }
        };
        if col.def.grbit.contains(ColumnGrbit::DELETE_ON_ZERO) {
            let check = ZeroCheck {
                dbid: self.dbid(),
                table: self.def.name.clone(),
                tree: self.tree,
                key,
                column,
            };
            if !st.zero_checks.contains(&check) {
                st.zero_checks.push(check);
            }
        }
        Ok(bytes_of(old, delta.len()))
    }

    /// The escrow update inside `t`: finds the column's bytes in the record (storing the
    /// default first when the record has none, as ESE bursts the default record) and adds
    /// the delta there.
    fn escrow_in(
        &self,
        t: &mut Transaction,
        key: &[u8],
        def: &ColumnDef,
        column: u32,
        delta: i64,
    ) -> Result<i64> {
        let bytes = t
            .read(self.tree, key)?
            .ok_or_else(|| Error::new(ErrorKind::RecordDeleted))?;
        let offset = if let Some(o) = Record::fixed_offset(&bytes, &self.layout, column) {
            o
        } else {
            let mut rec = Record::decode(&bytes, &self.layout)?;
            let default = def
                .default
                .clone()
                .unwrap_or_else(|| vec![0; delta_width(def)]);
            rec.set(column, 1, Some(plain(default)))?;
            let updated = rec.encode(&self.layout)?;
            t.replace(self.tree, key, &updated)?;
            Record::fixed_offset(&updated, &self.layout, column).ok_or_else(|| {
                Error::new(ErrorKind::InternalError)
                    .with_message("escrow column missing from the record just written")
            })?
        };
        t.escrow(self.tree, key, offset, delta_width(def) as u8, delta)
    }
}

fn delta_width(def: &ColumnDef) -> usize {
    def.coltyp.fixed_size().unwrap_or(4) as usize
}

/// Deletes the records of `checks` whose delete-on-zero column is zero in the latest
/// committed state, each in a transaction of its own, durably. Run when a transaction that
/// made escrow deltas on such a column ended (commit or rollback): the last transaction with
/// a delta on a record to end sees every other delta committed or gone. A check that meets
/// another transaction's pending change (`WriteConflict`) is dropped, as that transaction
/// checks again when it ends. Errors are not reported (the user's transaction is over);
/// fatal I/O errors make the instance unavailable as usual.
pub(crate) fn run_zero_checks(session: &Session, checks: Vec<ZeroCheck>) {
    let Ok(engine) = session.inst.engine() else {
        return;
    };
    for check in checks {
        let mut t = engine
            .vs
            .begin(format!("{} (delete on zero)", session.sesid()), false);
        let r = delete_if_zero(&engine, &mut t, &check);
        let r = match r {
            Ok(true) => t.commit_level(false).map(|_| ()),
            Ok(false) => t.rollback_all(),
            Err(e) => {
                session.check_fatal(&e);
                t.rollback_all()
            }
        };
        if let Err(e) = r {
            session.inst.fatal(&e);
            return;
        }
    }
}

/// Deletes the record of `check` in `t` if its column is zero; whether it did.
fn delete_if_zero(
    engine: &Arc<crate::engine::Engine>,
    t: &mut Transaction,
    check: &ZeroCheck,
) -> Result<bool> {
    let cat = tree_id(check.dbid, CATALOG_OBJID);
    let cat_key = catalog::table_key(&check.table);
    // The table's definition cannot change under the delete (as `Table::sync_def`).
    t.lock(cat, &cat_key, false)?;
    let Some(def_bytes) = t.read(cat, &cat_key)? else {
        return Ok(false);
    };
    let def = TableDef::decode(&def_bytes)?;
    if tree_id(check.dbid, def.objid) != check.tree {
        return Ok(false);
    }
    let layout = def.layout();
    let Some(bytes) = t.read(check.tree, &check.key)? else {
        return Ok(false);
    };
    let rec = Record::decode(&bytes, &layout)?;
    if rec.get(check.column, 1).and_then(|v| int_of(&v.data)) != Some(0) {
        return Ok(false);
    }
    crate::table::register_trees(engine, check.dbid, &def)?;
    t.delete(check.tree, &check.key)?;
    maintain_indexes_of(&def, check.dbid, t, &check.key, Some(&rec), None)?;
    Ok(true)
}
