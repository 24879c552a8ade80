//! Information about tables, columns and indexes (JetGetTableInfo, JetGetTableColumnInfo,
//! JetGetTableIndexInfo) as typed structures, read from the catalog as the caller's session
//! sees it.

use ese_core::{Error, ErrorKind, ObjId, Result};
use ese_txn::ReadView;

use crate::catalog::{self, CATALOG_OBJID, ColumnEntry, IndexEntry, TableDef};
use crate::column::{CodePage, ColumnGrbit, ColumnType};
use crate::database::DbId;
use crate::engine::{Engine, tree_id};
use crate::index::IndexGrbit;
use crate::session::Session;
use crate::table::{Table, node_settled, register_trees};

/// What JetGetTableInfo reports of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// The table's name, as created or last renamed (`JET_TblInfoName`).
    pub name: String,
    /// The number of records the caller's view holds, counted exactly by a scan of the
    /// primary index (ESE's `JET_TblInfo` `cRecord`, which is an estimate there).
    pub records: u64,
    /// Database pages owned by the table's trees: its records, its secondary indexes and its
    /// long values (`JET_TblInfoSpaceOwned`).
    pub pages_owned: u64,
    /// Live (not deleted) columns.
    pub columns: u32,
    /// Indexes, the primary index included.
    pub indexes: u32,
    /// Whether it is a template table (`JET_bitTableCreateTemplateTable`); always false:
    /// this engine has no template tables.
    pub template: bool,
    /// Whether it is a temporary table; always false for a table of the catalog (temporary
    /// tables are [`TempTable`](crate::TempTable)s).
    pub temporary: bool,
}

/// What JetGetTableColumnInfo reports of a column (ESE's `JET_COLUMNBASE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    /// The column id (`columnid`).
    pub id: u32,
    /// The name.
    pub name: String,
    /// The data type (`coltyp`).
    pub coltyp: ColumnType,
    /// Largest value in bytes (`cbMax`): the fixed size of a fixed-size type, else the
    /// column's maximum (the type's when none was given).
    pub max_size: u32,
    /// Code page of a text column (`cp`).
    pub code_page: CodePage,
    /// Options (`grbit`).
    pub grbit: ColumnGrbit,
    /// The default value, if any.
    pub default: Option<Vec<u8>>,
}

/// One segment of an index key (JetGetTableIndexInfo's key columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSegmentInfo {
    /// The column's name.
    pub column: String,
    /// The column id.
    pub column_id: u32,
    /// Whether the segment sorts descending (`-` in the key definition).
    pub descending: bool,
}

/// What JetGetTableIndexInfo reports of an index (ESE's `JET_INDEXLIST` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    /// The index name.
    pub name: String,
    /// The key segments, in key order.
    pub segments: Vec<IndexSegmentInfo>,
    /// Options.
    pub grbit: IndexGrbit,
    /// Whether no two records may have one key (`JET_bitIndexUnique`).
    pub unique: bool,
    /// Whether it is the clustered index the records are stored in (`JET_bitIndexPrimary`).
    pub primary: bool,
    /// Longest normalized key in bytes.
    pub key_most: u16,
}

fn column_info(c: &ColumnEntry) -> ColumnInfo {
    ColumnInfo {
        id: c.id,
        name: c.def.name.clone(),
        coltyp: c.def.coltyp,
        max_size: c.def.effective_max(),
        code_page: c.def.code_page,
        grbit: c.def.grbit,
        default: c.def.default.clone(),
    }
}

fn index_info(def: &TableDef, ix: &IndexEntry) -> IndexInfo {
    let g = IndexGrbit::from_bits_retain(ix.grbit);
    IndexInfo {
        name: ix.name.clone(),
        segments: ix
            .segments
            .iter()
            .map(|s| IndexSegmentInfo {
                column: def
                    .columns
                    .iter()
                    .find(|c| c.id == s.column)
                    .map(|c| c.def.name.clone())
                    .unwrap_or_default(),
                column_id: s.column,
                descending: s.descending,
            })
            .collect(),
        grbit: g,
        unique: g.intersects(IndexGrbit::UNIQUE | IndexGrbit::PRIMARY),
        primary: g.contains(IndexGrbit::PRIMARY),
        key_most: ix.key_most,
    }
}

/// The table definition `name` of database `dbid` as `view` sees it.
fn read_def(engine: &Engine, dbid: u32, name: &str, view: &ReadView) -> Result<TableDef> {
    let cat = tree_id(dbid, CATALOG_OBJID);
    let state = engine.vs.read(cat, &catalog::table_key(name), view)?;
    let bytes = state
        .value()
        .ok_or_else(|| Error::new(ErrorKind::ObjectNotFound).with_message(name.to_owned()))?;
    TableDef::decode(bytes)
}

/// Table information of `def` in database `dbid` as `view` sees it.
fn table_info(engine: &Engine, dbid: u32, def: &TableDef, view: &ReadView) -> Result<TableInfo> {
    register_trees(engine, dbid, def)?;
    let tree = tree_id(dbid, def.objid);
    let t = engine.store.tree(tree)?;
    let mut c = t.cursor();
    let mut on = c.move_first()?;
    let mut records = 0u64;
    while on {
        // Asked of each node after the cursor read it (see `node_settled`): a writer that
        // began after the scan did may have changed the pages read since.
        let state = if node_settled(engine, tree, &c) {
            ese_txn::node_state(Some((c.data().to_vec(), c.flags())))
        } else {
            engine.vs.read(tree, c.key(), view)?
        };
        if state.value().is_some() {
            records += 1;
        }
        on = c.move_next()?;
    }
    let d = engine.db(dbid)?;
    let mut trees: Vec<ObjId> = vec![def.objid];
    trees.extend(
        def.indexes
            .iter()
            .map(|i| i.objid)
            .filter(|o| *o != def.objid),
    );
    if def.lv_objid.0 != 0 {
        trees.push(def.lv_objid);
    }
    let mut pages_owned = 0;
    for o in trees {
        match d.db.tree_pages(o) {
            Ok(n) => pages_owned += n,
            // A long-value tree named but not created yet owns nothing.
            Err(e) if e.kind() == ErrorKind::ObjectNotFound && o == def.lv_objid => {}
            Err(e) => return Err(e),
        }
    }
    Ok(TableInfo {
        name: def.name.clone(),
        records,
        pages_owned,
        columns: def.columns.iter().filter(|c| !c.deleted).count() as u32,
        indexes: def.indexes.len() as u32,
        template: false,
        temporary: false,
    })
}

impl Session {
    /// Information about table `name` (JetGetTableInfo with `JET_TblInfo`,
    /// `JET_TblInfoName`, `JET_TblInfoSpaceOwned`) as this session sees it. Counting the
    /// records scans the table, and counting pages walks its trees.
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if no such table exists in this session's view;
    /// `InvalidDatabaseId` (-1010); `CatalogCorrupted` (-1220); page read errors; the session
    /// and instance errors.
    pub fn get_table_info(&self, db: DbId, name: &str) -> Result<TableInfo> {
        let _call = self.enter(false)?;
        let engine = self.inst.engine()?;
        let d = self.opened(&engine, db)?;
        let view = self.read_view();
        let def = read_def(&engine, d.dbid, name, &view)?;
        table_info(&engine, d.dbid, &def, &view)
    }
}

impl Table {
    /// The table's definition as the session sees it now (another cursor may have changed
    /// it since this cursor last read it).
    fn fresh_def(&self) -> Result<TableDef> {
        read_def(
            &self.engine,
            self.dbid(),
            &self.def.name,
            &self.session.read_view(),
        )
    }

    /// Information about the cursor's table (JetGetTableInfo on a table id); see
    /// [`Session::get_table_info`].
    ///
    /// # Errors
    /// As [`Session::get_table_info`]; `InvalidTableId` (-1310) for a cursor closed by a
    /// rollback.
    pub fn table_info(&self) -> Result<TableInfo> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let def = self.fresh_def()?;
        table_info(&self.engine, self.dbid(), &def, &self.session.read_view())
    }

    /// Information about column `name` (JetGetTableColumnInfo with `JET_ColInfo`), as the
    /// session sees the table's definition.
    ///
    /// # Errors
    /// `ColumnNotFound` (-1507) if the table has no such (live) column; `ObjectNotFound`
    /// (-1305) if the table was deleted; `InvalidTableId` (-1310) for a cursor closed by a
    /// rollback; the session errors.
    pub fn column_info(&self, name: &str) -> Result<ColumnInfo> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let def = self.fresh_def()?;
        def.columns
            .iter()
            .find(|c| !c.deleted && c.def.name.eq_ignore_ascii_case(name))
            .map(column_info)
            .ok_or_else(|| Error::new(ErrorKind::ColumnNotFound).with_message(name.to_owned()))
    }

    /// Every live column of the table in column id order (JetGetTableColumnInfo with
    /// `JET_ColInfoList`).
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if the table was deleted; `InvalidTableId` (-1310) for a
    /// cursor closed by a rollback; the session errors.
    pub fn columns(&self) -> Result<Vec<ColumnInfo>> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let def = self.fresh_def()?;
        let mut v: Vec<ColumnInfo> = def
            .columns
            .iter()
            .filter(|c| !c.deleted)
            .map(column_info)
            .collect();
        v.sort_by_key(|c| c.id);
        Ok(v)
    }

    /// Information about index `name` (JetGetTableIndexInfo with `JET_IdxInfo`).
    ///
    /// # Errors
    /// `IndexNotFound` (-1404) if the table has no such index; `ObjectNotFound` (-1305) if
    /// the table was deleted; `InvalidTableId` (-1310) for a cursor closed by a rollback;
    /// the session errors.
    pub fn index_info(&self, name: &str) -> Result<IndexInfo> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let def = self.fresh_def()?;
        def.index(name)
            .map(|ix| index_info(&def, ix))
            .ok_or_else(|| Error::new(ErrorKind::IndexNotFound).with_message(name.to_owned()))
    }

    /// Every index of the table, the primary included, in catalog order
    /// (JetGetTableIndexInfo with `JET_IdxInfoList`).
    ///
    /// # Errors
    /// `ObjectNotFound` (-1305) if the table was deleted; `InvalidTableId` (-1310) for a
    /// cursor closed by a rollback; the session errors.
    pub fn indexes(&self) -> Result<Vec<IndexInfo>> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let def = self.fresh_def()?;
        Ok(def.indexes.iter().map(|ix| index_info(&def, ix)).collect())
    }
}
