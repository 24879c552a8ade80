//! The catalog and the records of crate `ese`, decoded from the file without crate `ese`.
//!
//! The catalog is tree objid 2 (`docs/format-database.md`, "Index trees"; the record format
//! of a table definition is documented in `crates/ese/src/catalog.rs`), one node per table
//! keyed by `0x01` + the table name in lower case. Records follow the format of
//! `crates/ese/src/record.rs`: a fixed, a variable and a tagged area. This is a second,
//! independent reader of those documented formats: it is lenient (a record that does not
//! decode is shown with its problem and its bytes instead of stopping the dump), it never
//! panics on what it reads, and a change of format that the engine makes without updating the
//! documentation shows up here as a decoding problem in the tests.

#![deny(clippy::indexing_slicing)]

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::output::hex;

/// Catalog tree objid.
pub(crate) const CATALOG_OBJID: u32 = 2;
/// Catalog key prefix of a table definition.
const KEY_TABLE: u8 = 1;
/// The table definition formats this reader knows: 1, and 2, whose index segments carry
/// flags (bit 0 descending, bit 1 a fixed Binary column keyed by its bytes as they are).
const DEF_FORMAT: u8 = 1;
const DEF_FORMAT_SEGMENT_FLAGS: u8 = 2;
/// The record format this reader knows.
const RECORD_FORMAT: u8 = 1;
/// `JET_bitIndexPrimary`.
pub(crate) const INDEX_PRIMARY: u32 = 0x2;
/// Tagged-entry flag of a separated long value.
const TAG_SEPARATED: u8 = 0x1;
/// Bit 15 of a variable offset: the column is null.
const NULL_BIT: u16 = 0x8000;

/// A column definition.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) coltyp: u32,
    pub(crate) cb_max: u32,
    pub(crate) grbit: u32,
    pub(crate) code_page: u16,
    pub(crate) default: Option<Vec<u8>>,
    pub(crate) deleted: bool,
}

/// One key segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub(crate) column: u32,
    pub(crate) descending: bool,
    /// A fixed Binary column whose key segment is its bytes as they are (format 2), not
    /// groups of 8.
    pub(crate) fixed_binary: bool,
}

/// An index definition.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    pub(crate) name: String,
    pub(crate) objid: u32,
    pub(crate) grbit: u32,
    pub(crate) key_most: u16,
    pub(crate) segments: Vec<Segment>,
}

/// A table definition.
#[derive(Clone, Debug)]
pub(crate) struct TableDef {
    pub(crate) name: String,
    pub(crate) objid: u32,
    pub(crate) lv_objid: u32,
    pub(crate) next_ids: [u32; 3],
    pub(crate) columns: Vec<Column>,
    pub(crate) indexes: Vec<Index>,
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (h, t) = self
            .b
            .split_at_checked(n)
            .ok_or_else(|| "truncated".to_owned())?;
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }
}

/// The table name a catalog key names, if it is a table key.
pub(crate) fn table_key_name(key: &[u8]) -> Option<String> {
    match key.split_first() {
        Some((&KEY_TABLE, name)) => Some(String::from_utf8_lossy(name).into_owned()),
        _ => None,
    }
}

impl TableDef {
    /// Decodes a table definition record.
    ///
    /// # Errors
    /// A description of the first problem: unknown version, truncation, bad names, trailing
    /// bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<TableDef, String> {
        let mut r = Reader { b: bytes };
        let v = r.u8()?;
        if v != DEF_FORMAT && v != DEF_FORMAT_SEGMENT_FLAGS {
            return Err(format!(
                "table definition format {v} is not known (1 and 2 are)"
            ));
        }
        let name = r.str()?;
        let objid = r.u32()?;
        let lv_objid = r.u32()?;
        let next_ids = [r.u32()?, r.u32()?, r.u32()?];
        let ncol = r.u16()?;
        let mut columns = Vec::new();
        for _ in 0..ncol {
            let id = r.u32()?;
            let cname = r.str()?;
            let coltyp = r.u32()?;
            let cb_max = r.u32()?;
            let grbit = r.u32()?;
            let code_page = r.u16()?;
            let dlen = r.u16()?;
            let default = if dlen == u16::MAX {
                None
            } else {
                Some(r.take(usize::from(dlen))?.to_vec())
            };
            let deleted = r.u8()? != 0;
            columns.push(Column {
                id,
                name: cname,
                coltyp,
                cb_max,
                grbit,
                code_page,
                default,
                deleted,
            });
        }
        let nidx = r.u16()?;
        let mut indexes = Vec::new();
        for _ in 0..nidx {
            let iname = r.str()?;
            let iobj = r.u32()?;
            let grbit = r.u32()?;
            let key_most = r.u16()?;
            let nseg = r.u8()?;
            let mut segments = Vec::new();
            for _ in 0..nseg {
                let column = r.u32()?;
                let f = r.u8()?;
                if v == DEF_FORMAT_SEGMENT_FLAGS && f & !0x3 != 0 {
                    return Err(format!("segment flags {f:#x} are not known"));
                }
                segments.push(Segment {
                    column,
                    descending: if v == DEF_FORMAT {
                        f != 0
                    } else {
                        f & 0x1 != 0
                    },
                    fixed_binary: v == DEF_FORMAT_SEGMENT_FLAGS && f & 0x2 != 0,
                });
            }
            indexes.push(Index {
                name: iname,
                objid: iobj,
                grbit,
                key_most,
                segments,
            });
        }
        if !r.b.is_empty() {
            return Err(format!("{} trailing bytes", r.b.len()));
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

    /// The live column with id `id`.
    pub(crate) fn column(&self, id: u32) -> Option<&Column> {
        self.columns.iter().find(|c| c.id == id && !c.deleted)
    }

    /// The size of every fixed column id, as records lay them out (a deleted fixed column
    /// keeps its slot).
    fn fixed_sizes(&self) -> Vec<usize> {
        let n = self.next_ids[0].saturating_sub(1) as usize;
        let mut sizes = vec![0usize; n.min(127)];
        for c in &self.columns {
            if (1..=127).contains(&c.id)
                && let Some(s) = sizes.get_mut((c.id - 1) as usize)
            {
                *s = fixed_size(c.coltyp).unwrap_or(c.cb_max) as usize;
            }
        }
        sizes
    }

    /// The index named `name` (case-insensitive).
    pub(crate) fn index(&self, name: &str) -> Option<&Index> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }
}

impl Index {
    /// Whether this is the primary (clustered) index.
    pub(crate) fn is_primary(&self) -> bool {
        self.grbit & INDEX_PRIMARY != 0
    }

    /// ESE's key string: `+col1\0-col2\0\0` shown as `+col1 -col2`.
    pub(crate) fn key_text(&self, def: &TableDef) -> String {
        self.segments
            .iter()
            .map(|s| {
                let name = def
                    .columns
                    .iter()
                    .find(|c| c.id == s.column)
                    .map_or_else(|| format!("#{}", s.column), |c| c.name.clone());
                format!("{}{name}", if s.descending { '-' } else { '+' })
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// ESE's name of a column type (`JET_coltyp*` without the prefix).
pub(crate) fn type_name(coltyp: u32) -> &'static str {
    match coltyp {
        1 => "Bit",
        2 => "UnsignedByte",
        3 => "Short",
        4 => "Long",
        5 => "Currency",
        6 => "IEEESingle",
        7 => "IEEEDouble",
        8 => "DateTime",
        9 => "Binary",
        10 => "Text",
        11 => "LongBinary",
        12 => "LongText",
        14 => "UnsignedLong",
        15 => "LongLong",
        16 => "GUID",
        17 => "UnsignedShort",
        18 => "UnsignedLongLong",
        _ => "unknown",
    }
}

/// The size of a fixed-size type.
fn fixed_size(coltyp: u32) -> Option<u32> {
    match coltyp {
        1 | 2 => Some(1),
        3 | 17 => Some(2),
        4 | 6 | 14 => Some(4),
        5 | 7 | 8 | 15 | 18 => Some(8),
        16 => Some(16),
        _ => None,
    }
}

/// The storage area of a column id.
pub(crate) fn area_name(id: u32) -> &'static str {
    match id {
        1..=127 => "fixed",
        128..=255 => "variable",
        256..=65_535 => "tagged",
        _ => "invalid",
    }
}

/// Names of a column's options (`JET_bitColumn*` without the prefix; unknown bits as hex).
pub(crate) fn column_grbit_names(grbit: u32) -> Vec<String> {
    const NAMES: [(u32, &str); 11] = [
        (0x1, "Fixed"),
        (0x2, "Tagged"),
        (0x4, "NotNULL"),
        (0x8, "Version"),
        (0x10, "Autoincrement"),
        (0x40, "TTKey"),
        (0x80, "TTDescending"),
        (0x400, "MultiValued"),
        (0x800, "EscrowUpdate"),
        (0x2_0000, "DeleteOnZero"),
        (0x4_0000, "Variable"),
    ];
    names(grbit, &NAMES)
}

/// Names of an index's options (`JET_bitIndex*` without the prefix; unknown bits as hex).
pub(crate) fn index_grbit_names(grbit: u32) -> Vec<String> {
    const NAMES: [(u32, &str); 8] = [
        (0x1, "Unique"),
        (0x2, "Primary"),
        (0x4, "DisallowNull"),
        (0x8, "IgnoreNull"),
        (0x20, "IgnoreAnyNull"),
        (0x40, "IgnoreFirstNull"),
        (0x400, "SortNullsHigh"),
        (0x1_0000, "DisallowTruncation"),
    ];
    names(grbit, &NAMES)
}

fn names(grbit: u32, table: &[(u32, &str)]) -> Vec<String> {
    let known: u32 = table.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    let mut v: Vec<String> = table
        .iter()
        .filter(|(b, _)| grbit & b != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    if grbit & !known != 0 {
        v.push(format!("{:#x}", grbit & !known));
    }
    v
}

/// One stored value of a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The bytes in the record.
    Inline(Vec<u8>),
    /// A reference to a separated long value: its id and total size in bytes.
    Separated { lid: u64, size: u64 },
}

/// A decoded record: the values present, by column id, in column id order.
pub(crate) type Values = Vec<(u32, Vec<Stored>)>;

/// Decodes a record of table `def` (the format of `crates/ese/src/record.rs`).
///
/// # Errors
/// A description of the first problem.
pub(crate) fn decode_record(bytes: &[u8], def: &TableDef) -> Result<Values, String> {
    let sizes = def.fixed_sizes();
    let mut r = Reader { b: bytes };
    let v = r.u8()?;
    if v != RECORD_FORMAT {
        return Err(format!("record format {v} is not known (1 is)"));
    }
    let f = usize::from(r.u8()?);
    let nvar = usize::from(r.u8()?);
    let _reserved = r.u8()?;
    if f > 127 || nvar > 128 {
        return Err("area counts out of range".to_owned());
    }
    let bitmap = r.take(f.div_ceil(8))?;
    let mut out: Values = Vec::new();
    for i in 0..f {
        let size = *sizes
            .get(i)
            .ok_or_else(|| format!("fixed column {} is beyond the schema", i + 1))?;
        let d = r.take(size)?;
        let null = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        if !null {
            out.push((i as u32 + 1, vec![Stored::Inline(d.to_vec())]));
        }
    }
    let offs = r.take(nvar * 2)?;
    let words: Vec<u16> = offs
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes(c.try_into().unwrap_or([0; 2])))
        .collect();
    let var_len = words.last().map_or(0, |w| usize::from(w & !NULL_BIT));
    let var_data = r.take(var_len)?;
    let mut start = 0usize;
    for (i, w) in words.iter().enumerate() {
        let end = usize::from(w & !NULL_BIT);
        let d = var_data
            .get(start..end)
            .ok_or_else(|| "variable offsets out of order".to_owned())?;
        if w & NULL_BIT == 0 {
            out.push((128 + i as u32, vec![Stored::Inline(d.to_vec())]));
        }
        start = end;
    }
    // A record without tagged values ends with its variable data (no tagged count).
    let count = if r.b.is_empty() {
        0
    } else {
        usize::from(r.u16()?)
    };
    let entries = r.take(count * 5)?;
    let tag_data = r.b;
    let mut start = 0usize;
    let mut last = 0u32;
    for e in entries.chunks_exact(5) {
        let [i0, i1, flags, e0, e1] =
            <[u8; 5]>::try_from(e).map_err(|_| "tagged entry".to_owned())?;
        let id = u32::from(u16::from_le_bytes([i0, i1]));
        let end = usize::from(u16::from_le_bytes([e0, e1]));
        if id < 256 || id < last {
            return Err("tagged entries out of order".to_owned());
        }
        let d = tag_data
            .get(start..end)
            .ok_or_else(|| "tagged offset past the data".to_owned())?;
        let value = if flags & TAG_SEPARATED != 0 {
            let lid = d.get(..8).and_then(|b| b.try_into().ok());
            let size = d.get(8..16).and_then(|b| b.try_into().ok());
            match (lid, size) {
                (Some(l), Some(s)) => Stored::Separated {
                    lid: u64::from_le_bytes(l),
                    size: u64::from_le_bytes(s),
                },
                _ => return Err("a separated long value reference is short".to_owned()),
            }
        } else {
            Stored::Inline(d.to_vec())
        };
        match out.last_mut() {
            Some((lid, vals)) if *lid == id => vals.push(value),
            _ => out.push((id, vec![value])),
        }
        start = end;
        last = id;
    }
    if start != tag_data.len() {
        return Err("trailing bytes after the tagged data".to_owned());
    }
    Ok(out)
}

fn arr<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.try_into().ok()
}

/// An OLE automation date (days since 1899-12-30) as ISO 8601 UTC with milliseconds.
pub(crate) fn ole_date_text(d: f64) -> Option<String> {
    if !d.is_finite() || d.abs() > 3_000_000.0 {
        return None;
    }
    let ms = ((d - 25_569.0) * 86_400_000.0).round() as i64;
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = rem / 1000;
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rem % 1000
    ))
}

/// Text of code page `cp`: 1200 is UTF-16LE; 1252 (and anything else) is shown as UTF-8
/// with invalid bytes replaced (the engine stores what the application gave).
fn text(b: &[u8], cp: u16) -> String {
    if cp == 1200 {
        let units = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap_or([0; 2])));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

fn guid_text(g: [u8; 16]) -> String {
    // Windows GUID layout: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE, Data4 bytes.
    let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = g;
    let mut s = format!(
        "{:08x}-{:04x}-{:04x}-",
        u32::from_le_bytes([a0, a1, a2, a3]),
        u16::from_le_bytes([b0, b1]),
        u16::from_le_bytes([c0, c1])
    );
    for (i, x) in rest.iter().enumerate() {
        if i == 2 {
            s.push('-');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn float_json(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

/// A value in JSON, by column type (docs/esedump.md, `records`).
pub(crate) fn value_json(col: Option<&Column>, b: &[u8]) -> Value {
    let Some(col) = col else {
        return Value::String(hex(b));
    };
    let n = match col.coltyp {
        1 => arr::<1>(b).map(|[x]| Value::Bool(x != 0)),
        2 => arr::<1>(b).map(|[x]| json!(x)),
        3 => arr(b).map(|a| json!(i16::from_le_bytes(a))),
        4 => arr(b).map(|a| json!(i32::from_le_bytes(a))),
        5 | 15 => arr(b).map(|a| json!(i64::from_le_bytes(a))),
        6 => arr(b).map(|a| float_json(f64::from(f32::from_le_bytes(a)))),
        7 => arr(b).map(|a| float_json(f64::from_le_bytes(a))),
        8 => arr(b).map(|a| {
            let d = f64::from_le_bytes(a);
            ole_date_text(d).map_or_else(|| float_json(d), Value::String)
        }),
        10 | 12 => Some(Value::String(text(b, col.code_page))),
        14 => arr(b).map(|a| json!(u32::from_le_bytes(a))),
        16 => arr(b).map(|a| Value::String(guid_text(a))),
        17 => arr(b).map(|a| json!(u16::from_le_bytes(a))),
        18 => arr(b).map(|a| json!(u64::from_le_bytes(a))),
        _ => None,
    };
    n.unwrap_or_else(|| Value::String(hex(b)))
}

/// A value for the human table, cut to `limit` characters.
pub(crate) fn value_text(col: Option<&Column>, b: &[u8], limit: usize) -> String {
    let s = match col.map(|c| c.coltyp) {
        Some(5) => match arr::<8>(b) {
            Some(a) => {
                let x = i64::from_le_bytes(a);
                format!(
                    "{}{}.{:04}",
                    if x < 0 { "-" } else { "" },
                    x.unsigned_abs() / 10_000,
                    x.unsigned_abs() % 10_000
                )
            }
            None => hex(b),
        },
        _ => match value_json(col, b) {
            Value::String(s) => s,
            other => other.to_string(),
        },
    };
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() > limit {
        let mut t: String = s.chars().take(limit.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn ole_dates_and_guids_read_like_windows() {
        assert_eq!(ole_date_text(25_569.0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(ole_date_text(2.5).unwrap(), "1900-01-01T12:00:00.000Z");
        assert_eq!(ole_date_text(f64::NAN), None);
        let g = [
            0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(guid_text(g), "12345678-1234-5678-0102-030405060708");
    }

    #[test]
    fn garbage_never_panics() {
        let def = TableDef {
            name: "t".into(),
            objid: 3,
            lv_objid: 0,
            next_ids: [3, 129, 257],
            columns: vec![Column {
                id: 1,
                name: "a".into(),
                coltyp: 4,
                cb_max: 0,
                grbit: 0,
                code_page: 1252,
                default: None,
                deleted: false,
            }],
            indexes: vec![],
        };
        let mut state = 11u64;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|i| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    if i == 0 { 1 } else { (state >> 56) as u8 }
                })
                .collect();
            let _ = decode_record(&junk, &def);
            let _ = TableDef::decode(&junk);
        }
    }
}
