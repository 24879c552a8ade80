//! The record format: a fixed area, a variable area and a tagged area, as ESE lays records
//! out (ESE-REFERENCE §4.3), in this engine's own byte format.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version (1) |
//! | 1 | 1 | `F`: highest fixed column id present (0–127) |
//! | 2 | 1 | `V`: variable column slots present (ids 128 to 127 + `V`, 0–128) |
//! | 3 | 1 | reserved, 0 |
//! | 4 | ⌈F/8⌉ | fixed null bitmap (bit set = null), column id 1 is bit 0 of byte 0 |
//! | … | Σ sizes | fixed values for ids 1..=F, each of its column's size (zeros when null) |
//! | … | 2·V | variable end offsets (u16, relative to the start of the variable data; bit 15 = null) |
//! | … | … | variable data |
//! | … | 2 | `T`: number of tagged entries (u16); absent when 0 (the record ends with the variable data) |
//! | … | 5·T | tagged entries: column id (u16), flags (u8: bit 0 = separated long value), end offset (u16, relative to the start of the tagged data) |
//! | … | … | tagged data |
//!
//! Tagged entries are sorted by column id; the values of a multi-valued column follow each
//! other in `itagSequence` order. A separated long value's data is its long-value id (u64)
//! and total size in bytes (u64). All integers little-endian.

#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;

use ese_core::{Error, ErrorKind, Result};

use crate::column::{ColumnArea, FIRST_VARIABLE, area_of};

const FORMAT_VERSION: u8 = 1;
const NULL_BIT: u16 = 0x8000;
/// Tagged flag: the value is a reference to a long value stored in the long-value tree.
pub(crate) const TAG_SEPARATED: u8 = 0x1;

/// What decoding needs to know of a table's schema: the size of every fixed column id (a
/// deleted fixed column keeps its slot and size, as in ESE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordLayout {
    /// `fixed_sizes[i]` is the size in bytes of fixed column id `i + 1`.
    pub fixed_sizes: Vec<u32>,
}

/// One value of a tagged column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedValue {
    /// The bytes stored in the record (for a separated long value: its reference).
    pub data: Vec<u8>,
    /// Whether `data` is a reference to a separated long value.
    pub separated: bool,
}

/// A decoded record: every column value present, by column id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Fixed values, index `id - 1`.
    fixed: Vec<Option<Vec<u8>>>,
    /// Variable values, index `id - 128`.
    var: Vec<Option<Vec<u8>>>,
    /// Tagged values by column id, in `itagSequence` order.
    tagged: BTreeMap<u32, Vec<TaggedValue>>,
}

/// How many value buffers [`Record::recycle`] keeps for the next record.
pub(crate) const SPARE_BUFFERS: usize = 64;

/// The largest buffer [`Record::recycle`] keeps, in bytes (a page: larger values are long
/// values, rare enough not to hold their memory for).
pub(crate) const SPARE_BUFFER_BYTES: usize = 8192;

fn corrupt(what: &str) -> Error {
    Error::new(ErrorKind::DatabaseCorrupted).with_message(format!("record: {what}"))
}

fn bad_column(id: u32) -> Error {
    Error::new(ErrorKind::BadColumnId).with_message(format!("column id {id}"))
}

impl Record {
    /// An empty record.
    pub fn new() -> Record {
        Record::default()
    }

    /// The number of values column `id` has (0 when null; more than 1 only for multi-valued
    /// tagged columns).
    pub fn count(&self, id: u32) -> usize {
        match area_of(id) {
            Some(ColumnArea::Fixed) => {
                usize::from(self.fixed.get(id as usize - 1).is_some_and(Option::is_some))
            }
            Some(ColumnArea::Variable) => usize::from(
                self.var
                    .get((id - FIRST_VARIABLE) as usize)
                    .is_some_and(Option::is_some),
            ),
            Some(ColumnArea::Tagged) => self.tagged.get(&id).map_or(0, Vec::len),
            None => 0,
        }
    }

    /// Value `itag` (1-based, `itagSequence`) of column `id`, or `None` when there is none.
    pub fn get(&self, id: u32, itag: usize) -> Option<TaggedValue> {
        match area_of(id)? {
            // A tagged value keeps its separated flag.
            ColumnArea::Tagged => self.tagged.get(&id)?.get(itag.checked_sub(1)?).cloned(),
            _ => self.value(id, itag).map(|data| TaggedValue {
                data: data.to_vec(),
                separated: false,
            }),
        }
    }

    /// The bytes of value `itag` of column `id` ([`Record::get`] without a copy).
    pub fn value(&self, id: u32, itag: usize) -> Option<&[u8]> {
        if itag == 0 {
            return None;
        }
        match area_of(id)? {
            ColumnArea::Fixed if itag == 1 => self.fixed.get(id as usize - 1)?.as_deref(),
            ColumnArea::Variable if itag == 1 => {
                self.var.get((id - FIRST_VARIABLE) as usize)?.as_deref()
            }
            ColumnArea::Tagged => self
                .tagged
                .get(&id)?
                .get(itag - 1)
                .map(|v| v.data.as_slice()),
            _ => None,
        }
    }

    /// Sets value `itag` of column `id` (ESE's `JetSetColumn` with `itagSequence`): `itag`
    /// 0 or one past the last value appends a value (tagged columns); an existing `itag`
    /// replaces it; `None` removes it (the following values move up). Fixed and variable
    /// columns have exactly one value: `itag` must be 0 or 1.
    ///
    /// # Errors
    /// `BadColumnId` (-1517) for an id outside every area; `BadItagSequence` (-1518) for an
    /// `itag` more than one past the last value, or other than 0/1 on a non-tagged column.
    pub fn set(&mut self, id: u32, itag: usize, value: Option<TaggedValue>) -> Result<()> {
        let area = area_of(id).ok_or_else(|| bad_column(id))?;
        match area {
            ColumnArea::Fixed | ColumnArea::Variable => {
                if itag > 1 {
                    return Err(Error::new(ErrorKind::BadItagSequence));
                }
                let (slots, i) = self.slots(area, id);
                if slots.len() <= i {
                    if value.is_none() {
                        return Ok(());
                    }
                    slots.resize(i + 1, None);
                }
                if let Some(slot) = slots.get_mut(i) {
                    *slot = value.map(|v| v.data);
                }
                while slots.last().is_some_and(Option::is_none) {
                    slots.pop();
                }
            }
            ColumnArea::Tagged => {
                let values = self.tagged.entry(id).or_default();
                let n = values.len();
                match (itag, value) {
                    (0, Some(v)) => values.push(v),
                    (0, None) => {}
                    (i, Some(v)) if i <= n => {
                        if let Some(slot) = values.get_mut(i - 1) {
                            *slot = v;
                        }
                    }
                    (i, Some(v)) if i == n + 1 => values.push(v),
                    (i, None) if i <= n => {
                        values.remove(i - 1);
                    }
                    (i, None) if i == n + 1 => {}
                    _ => return Err(Error::new(ErrorKind::BadItagSequence)),
                }
                if values.is_empty() {
                    self.tagged.remove(&id);
                }
            }
        }
        Ok(())
    }

    /// [`Record::set`] of a value from borrowed bytes: a fixed or variable column's value is
    /// copied into the buffer its slot already holds, or into one taken from `spare` (buffers
    /// of an earlier record, see [`Record::recycle`]), instead of a new allocation. Tagged
    /// values are set as by [`Record::set`].
    ///
    /// # Errors
    /// As [`Record::set`].
    pub(crate) fn set_from(
        &mut self,
        id: u32,
        itag: usize,
        bytes: &[u8],
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        let area = area_of(id).ok_or_else(|| bad_column(id))?;
        if area == ColumnArea::Tagged {
            let value = TaggedValue {
                data: bytes.to_vec(),
                separated: false,
            };
            return self.set(id, itag, Some(value));
        }
        if itag > 1 {
            return Err(Error::new(ErrorKind::BadItagSequence));
        }
        let (slots, i) = self.slots(area, id);
        if slots.len() <= i {
            slots.resize(i + 1, None);
        }
        if let Some(slot) = slots.get_mut(i) {
            let buf = slot.get_or_insert_with(|| spare.pop().unwrap_or_default());
            buf.clear();
            buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The value slots of `area` (fixed or variable; `id` is in it) and `id`'s index in them.
    fn slots(&mut self, area: ColumnArea, id: u32) -> (&mut Vec<Option<Vec<u8>>>, usize) {
        if area == ColumnArea::Fixed {
            (&mut self.fixed, id as usize - 1)
        } else {
            (&mut self.var, (id - FIRST_VARIABLE) as usize)
        }
    }

    /// Empties the record for reuse by the next update: its fixed and variable values'
    /// buffers go to `spare` (up to [`SPARE_BUFFERS`] of them, each of at most
    /// [`SPARE_BUFFER_BYTES`] capacity), its slot arrays keep their capacity.
    pub(crate) fn recycle(&mut self, spare: &mut Vec<Vec<u8>>) {
        for buf in self.fixed.drain(..).chain(self.var.drain(..)).flatten() {
            if spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_BUFFER_BYTES {
                spare.push(buf);
            }
        }
        self.tagged.clear();
    }

    /// Every (column id, values) pair present, in column id order.
    pub fn columns(&self) -> Vec<(u32, Vec<TaggedValue>)> {
        let mut out = Vec::new();
        for (i, v) in self.fixed.iter().enumerate() {
            if let Some(d) = v {
                out.push((
                    i as u32 + 1,
                    vec![TaggedValue {
                        data: d.clone(),
                        separated: false,
                    }],
                ));
            }
        }
        for (i, v) in self.var.iter().enumerate() {
            if let Some(d) = v {
                out.push((
                    i as u32 + FIRST_VARIABLE,
                    vec![TaggedValue {
                        data: d.clone(),
                        separated: false,
                    }],
                ));
            }
        }
        for (id, vals) in &self.tagged {
            out.push((*id, vals.clone()));
        }
        out
    }

    /// The encoded bytes.
    ///
    /// # Errors
    /// `BadColumnId` (-1517) if a fixed value's column has no size in `layout`;
    /// `InvalidBufferSize` (-1047) if a fixed value has the wrong size; `RecordTooBig`
    /// (-1026) if an area passes 32 KiB (the offsets are 16-bit) — the table layer checks the
    /// page's limit.
    pub fn encode(&self, layout: &RecordLayout) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(layout, &mut out)?;
        Ok(out)
    }

    /// [`Record::encode`] into `out` (cleared first), so that a caller encoding many records
    /// reuses one buffer.
    ///
    /// # Errors
    /// As [`Record::encode`]; `out` is then left empty or partly written.
    pub(crate) fn encode_into(&self, layout: &RecordLayout, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        let f = self.fixed.len();
        let v = self.var.len();
        let mut fixed_len = 0usize;
        for (i, val) in self.fixed.iter().enumerate() {
            let size = *layout
                .fixed_sizes
                .get(i)
                .ok_or_else(|| bad_column(i as u32 + 1))? as usize;
            if let Some(d) = val
                && d.len() != size
            {
                return Err(
                    Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
                        "fixed column {} takes {size} bytes, got {}",
                        i + 1,
                        d.len()
                    )),
                );
            }
            fixed_len += size;
        }
        let var_len: usize = self.var.iter().flatten().map(Vec::len).sum();
        if var_len >= usize::from(NULL_BIT) {
            return Err(
                Error::new(ErrorKind::RecordTooBig).with_message("variable area over 32 KiB")
            );
        }
        let count: usize = self.tagged.values().map(Vec::len).sum();
        let count16 = u16::try_from(count).map_err(|_| {
            Error::new(ErrorKind::RecordTooBig).with_message("too many tagged values")
        })?;
        let tag_len: usize = self.tagged.values().flatten().map(|t| t.data.len()).sum();
        if u16::try_from(tag_len).is_err() {
            return Err(Error::new(ErrorKind::RecordTooBig).with_message("tagged area over 64 KiB"));
        }
        // One buffer of the exact size, written in order: header, null bitmap, fixed values,
        // variable offsets and values, tagged entries and values.
        let bitmap_len = f.div_ceil(8);
        let count_len = if count == 0 { 0 } else { 2 };
        out.reserve(4 + bitmap_len + fixed_len + 2 * v + var_len + count_len + 5 * count + tag_len);
        out.extend_from_slice(&[FORMAT_VERSION, f as u8, v as u8, 0]);
        out.resize(4 + bitmap_len, 0);
        for (i, val) in self.fixed.iter().enumerate() {
            // Checked above: every fixed column has a size.
            let size = layout.fixed_sizes.get(i).copied().unwrap_or(0) as usize;
            if let Some(d) = val {
                out.extend_from_slice(d);
            } else {
                if let Some(b) = out.get_mut(4 + i / 8) {
                    *b |= 1 << (i % 8);
                }
                out.resize(out.len() + size, 0);
            }
        }
        let mut end = 0u16;
        for val in &self.var {
            // Below NULL_BIT: the sum of the lengths was checked above.
            end += val.as_ref().map_or(0, |d| d.len() as u16);
            let word = if val.is_some() { end } else { end | NULL_BIT };
            out.extend_from_slice(&word.to_le_bytes());
        }
        for d in self.var.iter().flatten() {
            out.extend_from_slice(d);
        }
        if count == 0 {
            // No tagged area at all: a record without tagged values ends here.
            return Ok(());
        }
        out.extend_from_slice(&count16.to_le_bytes());
        let mut end = 0u16;
        for (id, vals) in &self.tagged {
            let id16 = u16::try_from(*id).map_err(|_| bad_column(*id))?;
            for val in vals {
                // Fits: the sum of the lengths was checked above.
                end += val.data.len() as u16;
                out.extend_from_slice(&id16.to_le_bytes());
                out.push(if val.separated { TAG_SEPARATED } else { 0 });
                out.extend_from_slice(&end.to_le_bytes());
            }
        }
        for val in self.tagged.values().flatten() {
            out.extend_from_slice(&val.data);
        }
        Ok(())
    }

    /// The byte offset of fixed column `id`'s value in the encoded record `bytes`, when the
    /// record holds a non-null value for it (escrow updates add their delta in place there).
    /// `None` when the column is null, beyond the record's fixed area, or the bytes are not a
    /// well-formed header for `layout`.
    pub(crate) fn fixed_offset(bytes: &[u8], layout: &RecordLayout, id: u32) -> Option<u32> {
        if area_of(id) != Some(ColumnArea::Fixed) || bytes.first() != Some(&FORMAT_VERSION) {
            return None;
        }
        let f = usize::from(*bytes.get(1)?);
        let i = id as usize - 1;
        if i >= f {
            return None;
        }
        if bytes.get(4 + i / 8)? & (1 << (i % 8)) != 0 {
            return None;
        }
        let before: u32 = layout.fixed_sizes.get(..i)?.iter().sum();
        let size = *layout.fixed_sizes.get(i)?;
        let off = 4 + f.div_ceil(8) as u32 + before;
        bytes.get(off as usize..(off + size) as usize)?;
        Some(off)
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// `DatabaseCorrupted` (-1206) if the bytes are not a well-formed record for `layout`.
    pub fn decode(bytes: &[u8], layout: &RecordLayout) -> Result<Record> {
        let (f, v) = header(bytes)?;
        let mut r = Cursor { b: bytes, at: 4 };
        let bitmap = r.take(f.div_ceil(8))?;
        let mut fixed = Vec::with_capacity(f);
        for i in 0..f {
            let size = *layout
                .fixed_sizes
                .get(i)
                .ok_or_else(|| corrupt("fixed column beyond the schema"))?
                as usize;
            let d = r.take(size)?;
            let null = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            fixed.push(if null { None } else { Some(d.to_vec()) });
        }
        let offs = r.take(v * 2)?;
        let var_len = offs.chunks_exact(2).last().map_or(0, |c| {
            usize::from(
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ]) & !NULL_BIT,
            )
        });
        let var_data = r.take(var_len)?;
        let mut var = Vec::with_capacity(v);
        let mut start = 0usize;
        for c in offs.chunks_exact(2) {
            let word = u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ]);
            let end = usize::from(word & !NULL_BIT);
            if end < start {
                return Err(corrupt("variable offsets out of order"));
            }
            let d = var_data
                .get(start..end)
                .ok_or_else(|| corrupt("variable offset past the data"))?;
            var.push(if word & NULL_BIT != 0 {
                None
            } else {
                Some(d.to_vec())
            });
            start = end;
        }
        let count = if r.rest().is_empty() {
            0
        } else {
            usize::from(r.u16()?)
        };
        let entries = r.take(count * 5)?;
        let tag_data = r.rest();
        let mut tagged: BTreeMap<u32, Vec<TaggedValue>> = BTreeMap::new();
        let mut start = 0usize;
        let mut last_id = 0u32;
        for e in entries.chunks_exact(5) {
            let [i0, i1, flags, e0, e1] =
                <[u8; 5]>::try_from(e).map_err(|_| corrupt("tagged entry"))?;
            let id = u32::from(u16::from_le_bytes([i0, i1]));
            let end = usize::from(u16::from_le_bytes([e0, e1]));
            if id < 256 || id < last_id || end < start {
                return Err(corrupt("tagged entries out of order"));
            }
            let d = tag_data
                .get(start..end)
                .ok_or_else(|| corrupt("tagged offset past the data"))?;
            tagged.entry(id).or_default().push(TaggedValue {
                data: d.to_vec(),
                separated: flags & TAG_SEPARATED != 0,
            });
            start = end;
            last_id = id;
        }
        if start != tag_data.len() {
            return Err(corrupt("trailing bytes"));
        }
        while var.last().is_some_and(Option::is_none) {
            var.pop();
        }
        while fixed.last().is_some_and(Option::is_none) {
            fixed.pop();
        }
        Ok(Record { fixed, var, tagged })
    }
}

/// A record read in place: the areas of an encoded record, checked as [`Record::decode`]
/// checks them, from which single values are taken without decoding (and copying) the rest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRef<'a> {
    /// Fixed column count `F`, the null bitmap and the fixed values.
    fixed_count: usize,
    bitmap: &'a [u8],
    fixed_data: &'a [u8],
    /// Variable end offsets (2·V bytes) and the variable data.
    var_offs: &'a [u8],
    var_data: &'a [u8],
    /// Tagged entries (5·T bytes) and the tagged data.
    entries: &'a [u8],
    tag_data: &'a [u8],
}

/// The header of the encoded record `bytes`: its fixed column count `F` and variable slot
/// count `V`, checked (format version, ranges).
///
/// # Errors
/// `DatabaseCorrupted` (-1206) for a short header, another format version or counts out of
/// range.
#[inline]
fn header(bytes: &[u8]) -> Result<(usize, usize)> {
    let Some(&[version, f, v, _reserved]) = bytes.first_chunk::<4>() else {
        return Err(corrupt("truncated"));
    };
    if version != FORMAT_VERSION {
        return Err(corrupt("unknown format version"));
    }
    let (f, v) = (usize::from(f), usize::from(v));
    if f > 127 || v > 128 {
        return Err(corrupt("area counts out of range"));
    }
    Ok((f, v))
}

#[inline]
fn le16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([
        b.get(i).copied().unwrap_or(0),
        b.get(i + 1).copied().unwrap_or(0),
    ])
}

/// Where fixed column index `i` (id − 1) is in a fixed area of the columns `sizes` (the
/// record's `F` of them) with null bitmap `bitmap`: (offset, size) in the fixed values, or
/// `None` when the column is null or past `F`.
#[inline]
fn fixed_slot(bitmap: &[u8], sizes: &[u32], i: usize) -> Option<(usize, usize)> {
    let size = *sizes.get(i)? as usize;
    if bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
        return None;
    }
    let at = sizes.get(..i)?.iter().map(|s| *s as usize).sum();
    Some((at, size))
}

/// Where variable slot `i` (id − 128) is in a variable area with end offsets `offs` (2·V
/// bytes): (start, end) in the variable data, or `None` when the slot is null or past `V`.
/// Not checked: `start <= end`.
#[inline]
fn var_slot(offs: &[u8], i: usize) -> Option<(usize, usize)> {
    if 2 * i >= offs.len() {
        return None;
    }
    let word = le16(offs, 2 * i);
    if word & NULL_BIT != 0 {
        return None;
    }
    let start = match i {
        0 => 0,
        _ => usize::from(le16(offs, 2 * i - 2) & !NULL_BIT),
    };
    Some((start, usize::from(word)))
}

impl<'a> RecordRef<'a> {
    /// Checks `bytes` as a record of `layout` and finds its areas.
    ///
    /// # Errors
    /// `DatabaseCorrupted` (-1206) where [`Record::decode`] returns it.
    pub(crate) fn parse(bytes: &'a [u8], layout: &RecordLayout) -> Result<RecordRef<'a>> {
        #[inline]
        fn split(b: &[u8], n: usize) -> Result<(&[u8], &[u8])> {
            b.split_at_checked(n).ok_or_else(|| corrupt("truncated"))
        }
        let (f, v) = header(bytes)?;
        let (_, r) = split(bytes, 4)?;
        let (bitmap, r) = split(r, f.div_ceil(8))?;
        let fixed_len: usize = if f == 0 {
            0
        } else {
            let sizes = layout.fixed_sizes.get(..f);
            let sizes = sizes.ok_or_else(|| corrupt("fixed column beyond the schema"))?;
            sizes.iter().map(|s| *s as usize).sum()
        };
        let (fixed_data, r) = split(r, fixed_len)?;
        let (var_offs, r) = split(r, v * 2)?;
        let mut start = 0usize;
        for w in var_offs.chunks_exact(2) {
            let end = usize::from(le16(w, 0) & !NULL_BIT);
            if end < start {
                return Err(corrupt("variable offsets out of order"));
            }
            start = end;
        }
        let (var_data, r) = split(r, start)?;
        // No tagged count: no tagged area (see the format table).
        let (count, r): (&[u8], &[u8]) = if r.is_empty() { (&[], r) } else { split(r, 2)? };
        let (entries, tag_data) = split(r, usize::from(le16(count, 0)) * 5)?;
        let mut start = 0usize;
        let mut last_id = 0u32;
        for e in entries.chunks_exact(5) {
            let id = u32::from(le16(e, 0));
            let end = usize::from(le16(e, 3));
            if id < 256 || id < last_id || end < start {
                return Err(corrupt("tagged entries out of order"));
            }
            start = end;
            last_id = id;
        }
        if start != tag_data.len() {
            return Err(if start > tag_data.len() {
                corrupt("tagged offset past the data")
            } else {
                corrupt("trailing bytes")
            });
        }
        Ok(RecordRef {
            fixed_count: f,
            bitmap,
            fixed_data,
            var_offs,
            var_data,
            entries,
            tag_data,
        })
    }

    /// Value `itag` (1-based) of column `id` of the record `bytes` and whether it is a
    /// separated long value's reference, as `RecordRef::parse(bytes, layout)?.get(..)` gives
    /// it for a well-formed record, reading only what leads to the value: for a fixed or
    /// variable column the header, the fixed area's sizes and the variable offsets, not the
    /// tagged entries (a tagged column takes the full parse). A cursor's retrieval of one or
    /// two columns of each record it steps to spends most of its time here.
    ///
    /// # Errors
    /// `DatabaseCorrupted` (-1206) when the bytes read are not a well-formed record header
    /// for `layout`, the areas before the value overrun the record, or the value's offsets
    /// are out of order or past the variable data.
    pub(crate) fn value(
        bytes: &'a [u8],
        layout: &RecordLayout,
        id: u32,
        itag: usize,
    ) -> Result<Option<(&'a [u8], bool)>> {
        let area = match area_of(id) {
            Some(a @ (ColumnArea::Fixed | ColumnArea::Variable)) if itag == 1 => a,
            _ => return Ok(RecordRef::parse(bytes, layout)?.get(layout, id, itag)),
        };
        let (f, v) = header(bytes)?;
        let sizes = layout
            .fixed_sizes
            .get(..f)
            .ok_or_else(|| corrupt("fixed column beyond the schema"))?;
        let fixed_at = 4 + f.div_ceil(8);
        if area == ColumnArea::Fixed {
            let bitmap = bytes.get(4..fixed_at).unwrap_or_default();
            let Some((at, size)) = fixed_slot(bitmap, sizes, id as usize - 1) else {
                return Ok(None);
            };
            let value = bytes
                .get(fixed_at + at..fixed_at + at + size)
                .ok_or_else(|| corrupt("truncated"))?;
            return Ok(Some((value, false)));
        }
        let offs_at = fixed_at + sizes.iter().sum::<u32>() as usize;
        let data_at = offs_at + 2 * v;
        let offs = bytes
            .get(offs_at..data_at)
            .ok_or_else(|| corrupt("truncated"))?;
        let var_len = match v {
            0 => 0,
            _ => usize::from(le16(offs, 2 * v - 2) & !NULL_BIT),
        };
        if bytes.len() < data_at + var_len {
            return Err(corrupt("truncated"));
        }
        let Some((start, end)) = var_slot(offs, (id - FIRST_VARIABLE) as usize) else {
            return Ok(None);
        };
        if start > end || end > var_len {
            return Err(corrupt("variable offsets out of order"));
        }
        let value = bytes
            .get(data_at + start..data_at + end)
            .ok_or_else(|| corrupt("truncated"))?;
        Ok(Some((value, false)))
    }

    /// Value `itag` (1-based) of column `id` and whether it is a separated long value's
    /// reference, as [`Record::get`] gives it; `layout` is the one the record was parsed with.
    pub(crate) fn get(
        &self,
        layout: &RecordLayout,
        id: u32,
        itag: usize,
    ) -> Option<(&'a [u8], bool)> {
        if itag == 0 {
            return None;
        }
        match area_of(id)? {
            ColumnArea::Fixed => {
                if itag != 1 {
                    return None;
                }
                let sizes = layout.fixed_sizes.get(..self.fixed_count)?;
                let (at, size) = fixed_slot(self.bitmap, sizes, id as usize - 1)?;
                Some((self.fixed_data.get(at..at + size)?, false))
            }
            ColumnArea::Variable => {
                if itag != 1 {
                    return None;
                }
                let (start, end) = var_slot(self.var_offs, (id - FIRST_VARIABLE) as usize)?;
                Some((self.var_data.get(start..end)?, false))
            }
            ColumnArea::Tagged => {
                let mut start = 0usize;
                let mut seen = 0usize;
                for e in self.entries.chunks_exact(5) {
                    let eid = u32::from(le16(e, 0));
                    let end = usize::from(le16(e, 3));
                    if eid == id {
                        seen += 1;
                        if seen == itag {
                            let sep = e.get(2).is_some_and(|f| f & TAG_SEPARATED != 0);
                            return Some((self.tag_data.get(start..end)?, sep));
                        }
                    } else if eid > id {
                        return None;
                    }
                    start = end;
                }
                None
            }
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| corrupt("truncated"))?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([
            s.first().copied().unwrap_or(0),
            s.get(1).copied().unwrap_or(0),
        ]))
    }
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(
        clippy::unnecessary_wraps,
        reason = "reads like the Option that set() takes"
    )]
    fn tv(d: &[u8]) -> Option<TaggedValue> {
        Some(TaggedValue {
            data: d.to_vec(),
            separated: false,
        })
    }

    /// A recycled record (the buffers of one update reused by the next) is empty, and the
    /// values set into it from borrowed bytes encode as a fresh record's do.
    #[test]
    fn a_recycled_record_encodes_as_a_fresh_one() {
        let layout = RecordLayout {
            fixed_sizes: vec![4, 8],
        };
        let mut spare = Vec::new();
        let mut r = Record::new();
        r.set_from(1, 1, &1i32.to_le_bytes(), &mut spare).unwrap();
        r.set_from(2, 0, &2i64.to_le_bytes(), &mut spare).unwrap();
        r.set_from(129, 1, b"a longer first value", &mut spare)
            .unwrap();
        r.set_from(256, 0, b"tagged", &mut spare).unwrap();
        r.recycle(&mut spare);
        assert_eq!(spare.len(), 3, "the fixed and variable buffers are kept");
        for id in [1, 2, 129, 256] {
            assert_eq!(r.count(id), 0, "column {id} after recycle");
        }
        assert_eq!(
            r.encode(&layout).unwrap(),
            Record::new().encode(&layout).unwrap()
        );
        // Set again: a shorter variable value, a column not set before, one fixed left null.
        r.set_from(2, 1, &9i64.to_le_bytes(), &mut spare).unwrap();
        r.set_from(128, 1, b"x", &mut spare).unwrap();
        r.set_from(129, 1, b"b", &mut spare).unwrap();
        let mut fresh = Record::new();
        fresh.set(2, 1, tv(&9i64.to_le_bytes())).unwrap();
        fresh.set(128, 1, tv(b"x")).unwrap();
        fresh.set(129, 1, tv(b"b")).unwrap();
        assert_eq!(r, fresh);
        assert_eq!(r.encode(&layout).unwrap(), fresh.encode(&layout).unwrap());
        assert_eq!(spare.len(), 0, "every kept buffer was used again");
        // The same errors as `set`.
        assert_eq!(
            r.set_from(1, 2, b"1234", &mut spare).unwrap_err().kind(),
            ErrorKind::BadItagSequence
        );
        assert_eq!(
            r.set_from(0, 1, b"1234", &mut spare).unwrap_err().kind(),
            ErrorKind::BadColumnId
        );
    }

    #[test]
    fn fixed_offset_finds_values_in_place() {
        let layout = RecordLayout {
            fixed_sizes: vec![4, 8, 1, 8],
        };
        let mut r = Record::new();
        r.set(1, 1, tv(&7i32.to_le_bytes())).unwrap();
        r.set(2, 1, tv(&(-3i64).to_le_bytes())).unwrap();
        r.set(128, 1, tv(b"x")).unwrap();
        let b = r.encode(&layout).unwrap();
        let off = Record::fixed_offset(&b, &layout, 2).unwrap() as usize;
        assert_eq!(b[off..off + 8], (-3i64).to_le_bytes());
        let off = Record::fixed_offset(&b, &layout, 1).unwrap() as usize;
        assert_eq!(b[off..off + 4], 7i32.to_le_bytes());
        // Beyond the record's fixed area, a null value, a non-fixed id, damaged bytes.
        assert_eq!(Record::fixed_offset(&b, &layout, 4), None);
        r.set(3, 1, None).unwrap();
        r.set(4, 1, tv(&[0; 8])).unwrap();
        let b = r.encode(&layout).unwrap();
        assert_eq!(Record::fixed_offset(&b, &layout, 3), None);
        assert!(Record::fixed_offset(&b, &layout, 4).is_some());
        assert_eq!(Record::fixed_offset(&b, &layout, 128), None);
        assert_eq!(Record::fixed_offset(&b[..6], &layout, 4), None);
        assert_eq!(Record::fixed_offset(&[], &layout, 1), None);
    }

    #[test]
    fn round_trip_all_areas() {
        let layout = RecordLayout {
            fixed_sizes: vec![4, 8, 1],
        };
        let mut r = Record::new();
        r.set(1, 1, tv(&7i32.to_le_bytes())).unwrap();
        r.set(3, 0, tv(&[1])).unwrap();
        r.set(128, 1, tv(b"hello")).unwrap();
        r.set(130, 1, tv(b"")).unwrap();
        r.set(256, 0, tv(b"a")).unwrap();
        r.set(256, 0, tv(b"bb")).unwrap();
        r.set(
            300,
            0,
            Some(TaggedValue {
                data: vec![9; 16],
                separated: true,
            }),
        )
        .unwrap();
        let bytes = r.encode(&layout).unwrap();
        let back = Record::decode(&bytes, &layout).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.get(2, 1), None);
        assert_eq!(back.get(129, 1), None);
        assert_eq!(back.get(130, 1).unwrap().data, b"");
        assert_eq!(back.count(256), 2);
        assert_eq!(back.get(256, 2).unwrap().data, b"bb");
        assert!(back.get(300, 1).unwrap().separated);
        // Read in place, every value is the decoded record's.
        let rr = RecordRef::parse(&bytes, &layout).unwrap();
        for id in (0..=4).chain(127..=131).chain(255..=301) {
            for itag in 0..=3 {
                assert_eq!(
                    rr.get(&layout, id, itag),
                    back.get(id, itag)
                        .as_ref()
                        .map(|v| (&v.data[..], v.separated)),
                    "column {id} itag {itag}"
                );
                // Read alone, every value is the same.
                assert_eq!(
                    RecordRef::value(&bytes, &layout, id, itag).unwrap(),
                    rr.get(&layout, id, itag),
                    "column {id} itag {itag} alone"
                );
            }
        }
    }

    #[test]
    fn a_record_without_tagged_values_has_no_tagged_count() {
        let layout = RecordLayout {
            fixed_sizes: vec![4],
        };
        let mut r = Record::new();
        r.set(1, 1, tv(&7i32.to_le_bytes())).unwrap();
        r.set(128, 1, tv(b"key")).unwrap();
        r.set(129, 1, tv(b"value")).unwrap();
        let bytes = r.encode(&layout).unwrap();
        // Header 4, bitmap 1, fixed 4, two offsets 4, data 8: nothing after the data.
        assert_eq!(bytes.len(), 4 + 1 + 4 + 4 + 8);
        assert_eq!(&bytes[bytes.len() - 5..], b"value");
        // A record written with an explicit count of 0 reads the same.
        let mut counted = bytes.clone();
        counted.extend_from_slice(&[0, 0]);
        assert_eq!(Record::decode(&counted, &layout).unwrap(), r);
        assert_eq!(Record::decode(&bytes, &layout).unwrap(), r);
        for b in [&bytes, &counted] {
            let rr = RecordRef::parse(b, &layout).unwrap();
            assert_eq!(rr.get(&layout, 129, 1), Some((&b"value"[..], false)));
            assert_eq!(rr.get(&layout, 256, 1), None);
            let v = RecordRef::value(b, &layout, 128, 1).unwrap();
            assert_eq!(v, Some((&b"key"[..], false)));
        }
        // One byte where the count would be is a truncated count.
        counted.pop();
        assert_eq!(Record::decode(&counted, &layout).unwrap_err().code(), -1206);
        assert_eq!(
            RecordRef::parse(&counted, &layout).unwrap_err().code(),
            -1206
        );
    }

    #[test]
    fn multi_value_itag_rules() {
        let mut r = Record::new();
        r.set(256, 1, tv(b"x")).unwrap();
        r.set(256, 2, tv(b"y")).unwrap();
        r.set(256, 1, tv(b"X")).unwrap();
        assert_eq!(r.set(256, 4, tv(b"z")).unwrap_err().code(), -1518);
        r.set(256, 1, None).unwrap();
        assert_eq!(r.get(256, 1).unwrap().data, b"y");
        assert_eq!(r.set(1, 2, tv(b"1234")).unwrap_err().code(), -1518);
        assert_eq!(r.set(0, 1, tv(b"1")).unwrap_err().code(), -1517);
    }

    #[test]
    fn corrupt_bytes_are_errors_never_panics() {
        let layout = RecordLayout {
            fixed_sizes: vec![4, 8],
        };
        let mut r = Record::new();
        r.set(1, 1, tv(&[1, 2, 3, 4])).unwrap();
        r.set(129, 1, tv(b"abc")).unwrap();
        r.set(400, 0, tv(b"zz")).unwrap();
        let bytes = r.encode(&layout).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // Read in place, the same bytes are refused exactly when decoding refuses
                // them, and the values found are the decoded ones.
                match (Record::decode(&b, &layout), RecordRef::parse(&b, &layout)) {
                    (Ok(d), Ok(rr)) => {
                        for id in [1, 2, 3, 128, 129, 130, 256, 400, 401] {
                            let want = d.get(id, 1);
                            let want = want.as_ref().map(|v| (&v.data[..], v.separated));
                            assert_eq!(rr.get(&layout, id, 1), want);
                            // A single value read from a well-formed record is the same.
                            assert_eq!(RecordRef::value(&b, &layout, id, 1).unwrap(), want);
                        }
                    }
                    (Err(e1), Err(e2)) => {
                        assert_eq!(e1.code(), e2.code());
                        // A single value is the decoded record's or an error, never a panic.
                        for id in [1, 2, 3, 128, 129, 130, 256, 400, 401] {
                            if let Err(e) = RecordRef::value(&b, &layout, id, 1) {
                                assert_eq!(e.code(), e1.code());
                            }
                        }
                    }
                    (d, rr) => panic!("decode {:?}, in place {:?}", d.is_ok(), rr.is_ok()),
                }
            }
            assert_eq!(
                Record::decode(&bytes[..i], &layout).is_ok(),
                RecordRef::parse(&bytes[..i], &layout).is_ok()
            );
            // A truncated record: its values up to the cut, or an error, never a panic.
            for id in [1, 2, 3, 128, 129, 130, 256, 400, 401] {
                if let Ok(Some((v, _))) = RecordRef::value(&bytes[..i], &layout, id, 1) {
                    let full = RecordRef::value(&bytes, &layout, id, 1).unwrap();
                    assert_eq!(Some(v), full.map(|(v, _)| v));
                }
            }
        }
    }
}
