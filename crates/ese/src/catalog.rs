//! The catalog (ESE's `MSysObjects` role, in this engine's own format): one B+tree per
//! database, the first tree created in it, holding one record per table keyed by the table's
//! name folded to lower case (names compare case-insensitively, as ESE's do). The record is
//! the whole table definition; DDL changes it through transactions, so a table created in a
//! rolled-back transaction does not exist, and recovery treats the catalog like any table.
//!
//! # Table definition record (all integers little-endian)
//! | field | encoding |
//! |---|---|
//! | version | u8 = 1 |
//! | name | u16 length + UTF-8 |
//! | table tree objid, long-value tree objid | u32, u32 |
//! | next fixed, variable, tagged column id | u32 ×3 |
//! | column count | u16, then per column: id u32, name (u16 + UTF-8), type u32, max size u32, grbit u32, code page u16, default (u16 length, 0xFFFF = none, + bytes), deleted u8 |
//! | index count | u16, then per index: name (u16 + UTF-8), tree objid u32, grbit u32, key most u16, segment count u8, per segment: column id u32, descending u8 |
//!
//! The primary index's tree objid is the table's; every secondary index has a tree of its own
//! (kind `Index`), whose entries are described in `index.rs` and `docs/format-database.md`.

#![deny(clippy::indexing_slicing)]

use ese_core::{Error, ErrorKind, ObjId, Result};

use crate::column::{
    CodePage, ColumnArea, ColumnDef, ColumnGrbit, ColumnType, FIRST_FIXED, area_of,
};
use crate::engine::AttachedDb;
use crate::record::RecordLayout;

/// The catalog tree's objid: the first tree created in a database (objid 1 is the page
/// store's tree directory).
pub(crate) const CATALOG_OBJID: ObjId = ObjId(2);

/// The table definition's format: 1, or 2 when an index segment has flags beyond
/// descending (see [`Segment::fixed_binary`]). A definition without such a segment is written
/// as 1, so an engine that knows only 1 still reads it; one that knows only 1 refuses a 2
/// (`CatalogCorrupted`) instead of reading its segment flags as descending.
const FORMAT: u8 = 1;
const FORMAT_SEGMENT_FLAGS: u8 = 2;
/// Segment flag bits (format 2): descending, and a fixed Binary column normalized as it is.
const SEG_DESCENDING: u8 = 0x1;
const SEG_FIXED_BINARY: u8 = 0x2;
const KEY_TABLE: u8 = 1;

/// Creates the catalog of a new database.
pub(crate) fn create(d: &AttachedDb) -> Result<ObjId> {
    let t = d.db.create_tree(ese_btree::TreeKind::Table)?;
    if t.objid() != CATALOG_OBJID {
        return Err(
            Error::new(ErrorKind::CatalogCorrupted).with_message(format!(
                "the catalog got objid {}, expected {CATALOG_OBJID}",
                t.objid()
            )),
        );
    }
    Ok(t.objid())
}

/// The catalog key of table `name`.
pub(crate) fn table_key(name: &str) -> Vec<u8> {
    let mut k = vec![KEY_TABLE];
    k.extend(name.to_lowercase().into_bytes());
    k
}

/// Whether `key` is the catalog key of a table.
pub(crate) fn is_table_key(key: &[u8]) -> bool {
    key.first() == Some(&KEY_TABLE)
}

/// A column as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnEntry {
    pub(crate) id: u32,
    pub(crate) def: ColumnDef,
    pub(crate) deleted: bool,
}

/// One segment of an index key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) column: u32,
    pub(crate) descending: bool,
    /// The column is a fixed Binary column whose values the key holds as they are, after the
    /// prefix byte (ESE's normalization of a fixed field, `FLDNormalizeBinarySegment` with
    /// `fFixedField`). Set for the indexes created since table format 2; a fixed Binary
    /// segment of an index created before keeps the groups of 8 its entries were written
    /// with (`docs/design.md`, "A fixed Binary key segment is its bytes").
    pub(crate) fixed_binary: bool,
}

/// An index as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) name: String,
    pub(crate) objid: ObjId,
    pub(crate) grbit: u32,
    pub(crate) key_most: u16,
    pub(crate) segments: Vec<Segment>,
}

/// A table definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableDef {
    pub(crate) name: String,
    pub(crate) objid: ObjId,
    pub(crate) lv_objid: ObjId,
    pub(crate) next_ids: [u32; 3],
    pub(crate) columns: Vec<ColumnEntry>,
    pub(crate) indexes: Vec<IndexEntry>,
}

impl TableDef {
    /// Adds column `def` with the next unused id of its area (fixed 1–127, variable 128–255,
    /// tagged 256–65,535; ids are never reused) and returns that id.
    ///
    /// # Errors
    /// `TooManyColumns` (-1040) when the column's area has no id left.
    pub(crate) fn push_column(&mut self, def: ColumnDef) -> Result<u32> {
        let slot = match def.area() {
            ColumnArea::Fixed => 0,
            ColumnArea::Variable => 1,
            ColumnArea::Tagged => 2,
        };
        let id = self.next_ids.get(slot).copied().unwrap_or(0);
        let limit = [127, 255, 65_535].get(slot).copied().unwrap_or(0);
        if id > limit {
            return Err(Error::new(ErrorKind::TooManyColumns));
        }
        if let Some(n) = self.next_ids.get_mut(slot) {
            *n += 1;
        }
        self.columns.push(ColumnEntry {
            id,
            def,
            deleted: false,
        });
        Ok(id)
    }

    /// What decoding a record of this table needs: the size of every fixed column id.
    pub(crate) fn layout(&self) -> RecordLayout {
        let nfixed = self.next_ids[0].saturating_sub(FIRST_FIXED) as usize;
        let mut sizes = vec![0u32; nfixed];
        for c in &self.columns {
            if let Some(ColumnArea::Fixed) = area_of(c.id)
                && let Some(slot) = sizes.get_mut((c.id - FIRST_FIXED) as usize)
            {
                *slot = c.def.coltyp.fixed_size().unwrap_or(c.def.cb_max);
            }
        }
        RecordLayout { fixed_sizes: sizes }
    }

    /// The live column with id `id`.
    ///
    /// # Errors
    /// `ColumnNotFound` (-1507).
    pub(crate) fn column(&self, id: u32) -> Result<&ColumnEntry> {
        self.columns
            .iter()
            .find(|c| c.id == id && !c.deleted)
            .ok_or_else(|| {
                Error::new(ErrorKind::ColumnNotFound).with_message(format!("column id {id}"))
            })
    }

    /// The primary (clustered) index, if the table has one.
    pub(crate) fn primary(&self) -> Option<&IndexEntry> {
        self.indexes.iter().find(|i| i.grbit & PRIMARY_GRBIT != 0)
    }

    /// The index named `name` (case-insensitive).
    pub(crate) fn index(&self, name: &str) -> Option<&IndexEntry> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }
}

/// `JET_bitIndexPrimary`.
const PRIMARY_GRBIT: u32 = 0x2;

fn corrupt(what: &str) -> Error {
    Error::new(ErrorKind::CatalogCorrupted).with_message(format!("table definition: {what}"))
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    // Names are at most 64 characters (validated), far below u16::MAX bytes.
    b.extend_from_slice(&(s.len() as u16).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

impl TableDef {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let flags = self
            .indexes
            .iter()
            .flat_map(|i| &i.segments)
            .any(|s| s.fixed_binary);
        let mut b = vec![if flags { FORMAT_SEGMENT_FLAGS } else { FORMAT }];
        put_str(&mut b, &self.name);
        b.extend_from_slice(&self.objid.0.to_le_bytes());
        b.extend_from_slice(&self.lv_objid.0.to_le_bytes());
        for n in self.next_ids {
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.extend_from_slice(&(self.columns.len() as u16).to_le_bytes());
        for c in &self.columns {
            b.extend_from_slice(&c.id.to_le_bytes());
            put_str(&mut b, &c.def.name);
            b.extend_from_slice(&(c.def.coltyp as u32).to_le_bytes());
            b.extend_from_slice(&c.def.cb_max.to_le_bytes());
            b.extend_from_slice(&c.def.grbit.bits().to_le_bytes());
            b.extend_from_slice(&c.def.code_page.value().to_le_bytes());
            match &c.def.default {
                Some(d) => {
                    b.extend_from_slice(&(d.len() as u16).to_le_bytes());
                    b.extend_from_slice(d);
                }
                None => b.extend_from_slice(&u16::MAX.to_le_bytes()),
            }
            b.push(u8::from(c.deleted));
        }
        b.extend_from_slice(&(self.indexes.len() as u16).to_le_bytes());
        for i in &self.indexes {
            put_str(&mut b, &i.name);
            b.extend_from_slice(&i.objid.0.to_le_bytes());
            b.extend_from_slice(&i.grbit.to_le_bytes());
            b.extend_from_slice(&i.key_most.to_le_bytes());
            b.push(i.segments.len() as u8);
            for s in &i.segments {
                b.extend_from_slice(&s.column.to_le_bytes());
                let mut f = 0;
                if s.descending {
                    f |= SEG_DESCENDING;
                }
                if s.fixed_binary {
                    f |= SEG_FIXED_BINARY;
                }
                b.push(f);
            }
        }
        b
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<TableDef> {
        let mut r = Reader { b: bytes };
        let format = r.u8()?;
        if format != FORMAT && format != FORMAT_SEGMENT_FLAGS {
            return Err(corrupt("unknown version"));
        }
        let name = r.str()?;
        let objid = ObjId(r.u32()?);
        let lv_objid = ObjId(r.u32()?);
        let next_ids = [r.u32()?, r.u32()?, r.u32()?];
        let ncol = r.u16()?;
        let mut columns = Vec::with_capacity(usize::from(ncol).min(1024));
        for _ in 0..ncol {
            let id = r.u32()?;
            let cname = r.str()?;
            let coltyp = ColumnType::from_u32(r.u32()?).map_err(|_| corrupt("column type"))?;
            let cb_max = r.u32()?;
            let grbit = ColumnGrbit::from_bits_retain(r.u32()?);
            let code_page = CodePage::from_value(r.u16()?).map_err(|_| corrupt("code page"))?;
            let dlen = r.u16()?;
            let default = if dlen == u16::MAX {
                None
            } else {
                Some(r.take(usize::from(dlen))?.to_vec())
            };
            let deleted = r.u8()? != 0;
            columns.push(ColumnEntry {
                id,
                def: ColumnDef {
                    name: cname,
                    coltyp,
                    cb_max,
                    grbit,
                    code_page,
                    default,
                },
                deleted,
            });
        }
        let nidx = r.u16()?;
        let mut indexes = Vec::with_capacity(usize::from(nidx).min(64));
        for _ in 0..nidx {
            let iname = r.str()?;
            let iobj = ObjId(r.u32()?);
            let grbit = r.u32()?;
            let key_most = r.u16()?;
            let nseg = r.u8()?;
            let mut segments = Vec::with_capacity(usize::from(nseg));
            for _ in 0..nseg {
                let column = r.u32()?;
                let f = r.u8()?;
                let (descending, fixed_binary) = if format == FORMAT {
                    (f != 0, false)
                } else if f & !(SEG_DESCENDING | SEG_FIXED_BINARY) != 0 {
                    return Err(corrupt("segment flags"));
                } else {
                    (f & SEG_DESCENDING != 0, f & SEG_FIXED_BINARY != 0)
                };
                segments.push(Segment {
                    column,
                    descending,
                    fixed_binary,
                });
            }
            indexes.push(IndexEntry {
                name: iname,
                objid: iobj,
                grbit,
                key_most,
                segments,
            });
        }
        if !r.b.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(TableDef {
            name,
            objid,
            lv_objid,
            next_ids,
            columns,
            indexes,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (h, t) = self
            .b
            .split_at_checked(n)
            .ok_or_else(|| corrupt("truncated"))?;
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([
            s.first().copied().unwrap_or(0),
            s.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of one column whose primary index has one descending segment on it.
    fn one_column_table(column: ColumnDef, fixed_binary: bool) -> TableDef {
        TableDef {
            name: "Files".into(),
            objid: ObjId(3),
            lv_objid: ObjId(4),
            next_ids: [2, 129, 257],
            columns: vec![ColumnEntry {
                id: 1,
                def: column,
                deleted: false,
            }],
            indexes: vec![IndexEntry {
                name: "primary".into(),
                objid: ObjId(3),
                grbit: 0x2,
                key_most: 255,
                segments: vec![Segment {
                    column: 1,
                    descending: true,
                    fixed_binary,
                }],
            }],
        }
    }

    #[test]
    fn table_definitions_round_trip_and_reject_garbage() {
        let def = one_column_table(
            ColumnDef::new("size", ColumnType::LongLong).default_value(&0i64.to_le_bytes()),
            false,
        );
        let b = def.encode();
        assert_eq!(TableDef::decode(&b).unwrap(), def);
        for cut in 0..b.len() {
            assert!(TableDef::decode(&b[..cut]).is_err());
        }
        assert_eq!(table_key("FiLeS"), table_key("files"));
    }

    #[test]
    fn segment_flags_take_format_2_and_format_1_reads_as_before() {
        let column = ColumnDef::new("k", ColumnType::Binary)
            .max_size(24)
            .grbit(ColumnGrbit::FIXED);
        let mut def = one_column_table(column, true);
        let b = def.encode();
        assert_eq!(b[0], FORMAT_SEGMENT_FLAGS);
        assert_eq!(TableDef::decode(&b).unwrap(), def);
        // The segment's byte is the last of the record: both flags.
        assert_eq!(b.last(), Some(&(SEG_DESCENDING | SEG_FIXED_BINARY)));
        // An unknown flag bit is damage.
        let mut bad = b.clone();
        *bad.last_mut().unwrap() |= 0x4;
        assert_eq!(TableDef::decode(&bad).unwrap_err().code(), -1220);
        // Without the flag the definition is format 1, as written before format 2 existed, and
        // a format 1 segment byte is only "descending".
        def.indexes[0].segments[0].fixed_binary = false;
        let old = def.encode();
        assert_eq!(old[0], FORMAT);
        assert_eq!(old.last(), Some(&1));
        assert_eq!(TableDef::decode(&old).unwrap(), def);
    }
}
