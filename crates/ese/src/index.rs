//! Indexes (ESE's index `FCB`/`IDB`): key definitions, the entries a record has in an index,
//! how entries are laid out in an index's B+tree, and search keys (JetMakeKey).
//!
//! # Index trees
//! The primary index is the table's own tree: records are keyed by their normalized primary
//! key (the record's bookmark). Every secondary index is a B+tree of its own (its own objid,
//! recorded in the catalog), holding one node per index entry:
//!
//! | index | node key | node data |
//! |---|---|---|
//! | unique | normalized secondary key | primary bookmark |
//! | not unique | normalized secondary key ‖ primary bookmark | primary bookmark |
//!
//! The bookmark in the key of a non-unique index makes entries with equal secondary keys
//! distinct nodes, ordered by bookmark; the data lets a reader split the key. Normalized keys
//! of one index are prefix-free (every segment is self-delimiting, and a truncated key has
//! exactly the index's key-most length), so node order is (secondary key, bookmark) order.
//!
//! Entries are written through the same transaction as their record (same version store, same
//! log), so a rollback undoes them, a snapshot sees the entries of the records it sees, and a
//! unique index conflicts like a record: an entry key another transaction inserted or deleted
//! and has not committed (or committed after the writer's snapshot) is a `WriteConflict`, a
//! visible one a `KeyDuplicate`.

#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;

use bitflags::bitflags;
use ese_core::{Error, ErrorKind, ObjId, Result};

use std::sync::Arc;

use ese_btree::TreeKind;
use ese_txn::Transaction;

use crate::catalog::{self, CATALOG_OBJID, IndexEntry, Segment, TableDef};
use crate::column::ColumnGrbit;
use crate::engine::tree_id;
use crate::key::{SegmentSpec, normalize_prefix, normalize_segment, truncate_key};
use crate::record::Record;
use crate::table::Table;

bitflags! {
    /// Options of an index (ESE's `JET_bitIndex*`; the subset this engine supports).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct IndexGrbit: u32 {
        /// `JET_bitIndexUnique` (0x1): no two records may have the same key.
        const UNIQUE = 0x1;
        /// `JET_bitIndexPrimary` (0x2): the clustered index the table's records are stored in.
        const PRIMARY = 0x2;
        /// `JET_bitIndexDisallowNull` (0x4): a record with a null key column is refused with
        /// `NullKeyDisallowed` (-1053).
        const DISALLOW_NULL = 0x4;
        /// `JET_bitIndexIgnoreNull` (0x8): no entry for a record whose key columns are all
        /// null.
        const IGNORE_NULL = 0x8;
        /// `JET_bitIndexIgnoreAnyNull` (0x20): no entry for a record with any null key
        /// column.
        const IGNORE_ANY_NULL = 0x20;
        /// `JET_bitIndexIgnoreFirstNull` (0x40): no entry for a record whose first key column
        /// is null.
        const IGNORE_FIRST_NULL = 0x40;
        /// `JET_bitIndexSortNullsHigh` (0x400): nulls sort after values.
        const SORT_NULLS_HIGH = 0x400;
        /// `JET_bitIndexDisallowTruncation` (0x10000): a key longer than the key-most is an
        /// error (`KeyTruncated`) instead of being truncated.
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

/// Most segments of an index key (`JET_ccolKeyMost`).
pub(crate) const SEGMENTS_MOST: usize = 16;
/// Most indexes of a table, the primary included (ESE's 64 indexes per table).
pub(crate) const INDEXES_MOST: usize = 64;
/// Largest key of the legacy key limit (`JET_cbKeyMost`).
pub(crate) const KEY_MOST_LEGACY: u16 = 255;
/// Largest key of a table without primary index: its implicit 8-byte sequential key.
const IMPLICIT_KEY_LEN: usize = 8;

/// Parses ESE's key definition string into (column name, descending) pairs.
///
/// # Errors
/// `IndexInvalidDef` (-1406) for an empty segment or a segment without a column name;
/// `TooManyKeys` (-1016) for more than 16 segments.
pub(crate) fn parse_key_def(key: &str) -> Result<Vec<(String, bool)>> {
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
    if out.is_empty() {
        return bad("an index has 1 to 16 segments");
    }
    if out.len() > SEGMENTS_MOST {
        return Err(Error::new(ErrorKind::TooManyKeys)
            .with_message(format!("{} segments, at most {SEGMENTS_MOST}", out.len())));
    }
    Ok(out)
}

/// Checks an index definition against table `def` and returns its catalog entry (objid 0:
/// the caller assigns the tree). `max_key` is the page size's longest node key in bytes.
///
/// # Errors
/// `InvalidName` (-1002); `InvalidGrbit` (-900) for unknown option bits; `IndexInvalidDef`
/// (-1406) for a bad key definition, a key naming an unknown column, a key-most over the
/// page size's limit, or a key-most that leaves no room for the primary bookmark;
/// `TooManyKeys` (-1016); `CannotIndex` (-1071) for an escrow column.
pub(crate) fn check_index(def: &TableDef, ix: &IndexCreate, max_key: usize) -> Result<IndexEntry> {
    crate::column::validate_name(&ix.name)?;
    if IndexGrbit::from_bits(ix.grbit.bits()).is_none() {
        return Err(Error::new(ErrorKind::InvalidGrbit)
            .with_message(format!("index grbit {:#x}", ix.grbit.bits())));
    }
    let mut segments = Vec::new();
    for (name, descending) in parse_key_def(&ix.key)? {
        let col = def
            .columns
            .iter()
            .find(|c| !c.deleted && c.def.name.eq_ignore_ascii_case(&name))
            .ok_or_else(|| {
                Error::new(ErrorKind::IndexInvalidDef).with_message(format!("no column {name:?}"))
            })?;
        if col.def.grbit.contains(ColumnGrbit::ESCROW_UPDATE) {
            return Err(Error::new(ErrorKind::CannotIndex).with_message(name));
        }
        if segments.iter().any(|s: &Segment| s.column == col.id) {
            return Err(Error::new(ErrorKind::IndexInvalidDef)
                .with_message(format!("column {name:?} appears twice in the key")));
        }
        segments.push(Segment {
            column: col.id,
            descending,
            fixed_binary: col.def.is_fixed_binary(),
        });
    }
    let key_most = if ix.key_most == 0 {
        KEY_MOST_LEGACY
    } else {
        ix.key_most
    };
    let max = u16::try_from(max_key).unwrap_or(u16::MAX);
    if key_most > max {
        return Err(Error::new(ErrorKind::IndexInvalidDef)
            .with_message(format!("key most {key_most} is over the page size's {max}")));
    }
    if !ix.grbit.contains(IndexGrbit::PRIMARY) && !ix.grbit.contains(IndexGrbit::UNIQUE) {
        let bookmark = def
            .primary()
            .map_or(IMPLICIT_KEY_LEN, |p| usize::from(p.key_most));
        if usize::from(key_most) + bookmark > max_key {
            return Err(Error::new(ErrorKind::IndexInvalidDef).with_message(format!(
                "key most {key_most} plus the primary bookmark ({bookmark} bytes) is over the page size's key limit {max_key}"
            )));
        }
    }
    Ok(IndexEntry {
        name: ix.name.clone(),
        objid: ObjId(0),
        grbit: ix.grbit.bits(),
        key_most,
        segments,
    })
}

impl IndexEntry {
    pub(crate) fn grbit(&self) -> IndexGrbit {
        IndexGrbit::from_bits_retain(self.grbit)
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.grbit().contains(IndexGrbit::PRIMARY)
    }

    /// How the index's nodes are laid out.
    pub(crate) fn layout(&self) -> EntryLayout {
        let g = self.grbit();
        if g.contains(IndexGrbit::PRIMARY) {
            EntryLayout::Primary
        } else if g.contains(IndexGrbit::UNIQUE) {
            EntryLayout::Unique
        } else {
            EntryLayout::NonUnique
        }
    }

    /// How segment `seg` is normalized.
    pub(crate) fn spec(&self, def: &TableDef, seg: Segment) -> Result<SegmentSpec> {
        let col = def.column(seg.column)?;
        Ok(SegmentSpec {
            coltyp: col.def.coltyp,
            code_page: col.def.code_page,
            descending: seg.descending,
            nulls_high: self.grbit().contains(IndexGrbit::SORT_NULLS_HIGH),
            fixed_binary: (seg.fixed_binary && col.def.is_fixed_binary()).then_some(col.def.cb_max),
        })
    }
}

/// How the nodes of an index tree are laid out (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryLayout {
    /// The table's own tree: key = bookmark, data = the record.
    Primary,
    /// Key = secondary key, data = bookmark.
    Unique,
    /// Key = secondary key ‖ bookmark, data = bookmark.
    NonUnique,
}

impl EntryLayout {
    /// The node key of an entry.
    pub(crate) fn node_key(self, seckey: &[u8], bookmark: &[u8]) -> Vec<u8> {
        match self {
            EntryLayout::Primary | EntryLayout::Unique => seckey.to_vec(),
            EntryLayout::NonUnique => {
                let mut k = Vec::with_capacity(seckey.len() + bookmark.len());
                k.extend_from_slice(seckey);
                k.extend_from_slice(bookmark);
                k
            }
        }
    }

    /// The length of the secondary-key part of node key `node` whose data is `data`.
    ///
    /// # Errors
    /// `SecondaryIndexCorrupted` (-1414) when the data is not a suffix of the key.
    pub(crate) fn seckey_len(self, node: &[u8], data: &[u8]) -> Result<usize> {
        match self {
            EntryLayout::Primary | EntryLayout::Unique => Ok(node.len()),
            EntryLayout::NonUnique => {
                if node.ends_with(data) {
                    Ok(node.len() - data.len())
                } else {
                    Err(Error::new(ErrorKind::SecondaryIndexCorrupted)
                        .with_message("an index entry's key does not end with its bookmark"))
                }
            }
        }
    }
}

/// The value of column `id` a key segment uses: value `itag` of the record, or the column's
/// default when the record has none.
fn segment_value<'a>(def: &'a TableDef, rec: &'a Record, id: u32, itag: usize) -> Option<&'a [u8]> {
    match rec.value(id, itag) {
        Some(v) => Some(v),
        None if itag <= 1 => def.column(id).ok().and_then(|c| c.def.default.as_deref()),
        None => None,
    }
}

/// The normalized keys record `rec` has in index `ix` of table `def`, sorted and without
/// duplicates: one per value of the index's first multi-valued column (the other columns use
/// their first value, as ESE does without `JET_bitIndexCrossProduct`), none when the index's
/// null options leave the record out. The primary index uses first values only.
///
/// # Errors
/// `NullKeyDisallowed` (-1053) for a null key column in a `DISALLOW_NULL` index;
/// `KeyTruncated` (-346) for a key over the key-most with `DISALLOW_TRUNCATION`;
/// `InvalidBufferSize` (-1047) for a value of the wrong size; `ColumnNotFound` (-1507) for a
/// segment whose column is gone.
pub(crate) fn record_keys(def: &TableDef, ix: &IndexEntry, rec: &Record) -> Result<Vec<Vec<u8>>> {
    let multi = if ix.is_primary() {
        None
    } else {
        ix.segments.iter().position(|s| {
            def.column(s.column)
                .is_ok_and(|c| c.def.grbit.contains(ColumnGrbit::MULTI_VALUED))
        })
    };
    let expansions = match multi.and_then(|i| ix.segments.get(i)) {
        Some(s) => rec.count(s.column).max(1),
        None => 1,
    };
    let mut keys = Vec::with_capacity(expansions);
    for itag in 1..=expansions {
        if let Some(key) = expansion_key(def, ix, rec, multi.map(|i| (i, itag)))? {
            keys.push(key);
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// The primary key of record `rec` ([`record_keys`] of the primary index `ix`, which has one
/// key per record), or `None` when the index's null options leave the record out.
///
/// # Errors
/// As [`record_keys`].
pub(crate) fn primary_key(
    def: &TableDef,
    ix: &IndexEntry,
    rec: &Record,
) -> Result<Option<Vec<u8>>> {
    expansion_key(def, ix, rec, None)
}

/// Bytes reserved for a key being normalized, at most (an index's `key_most` when smaller).
const KEY_RESERVE: usize = 256;

/// The key of one expansion of `rec` in `ix`: every segment's first value, except segment
/// `multi.0` (the first multi-valued column), which takes value `multi.1`. `None` when the
/// index's null options leave it out.
fn expansion_key(
    def: &TableDef,
    ix: &IndexEntry,
    rec: &Record,
    multi: Option<(usize, usize)>,
) -> Result<Option<Vec<u8>>> {
    let g = ix.grbit();
    let value = |i: usize, column: u32| {
        let tag = match multi {
            Some((m, itag)) if m == i => itag,
            _ => 1,
        };
        segment_value(def, rec, column, tag)
    };
    // A first pass for the null options, a second to normalize (looking the values up
    // twice costs less than collecting them).
    let (mut nulls, mut first_null) = (0, None);
    for (i, s) in ix.segments.iter().enumerate() {
        if value(i, s.column).is_none() {
            nulls += 1;
            first_null.get_or_insert(i);
        }
    }
    if let Some(i) = first_null
        && g.contains(IndexGrbit::DISALLOW_NULL)
    {
        let col = ix
            .segments
            .get(i)
            .and_then(|s| def.column(s.column).ok())
            .map(|c| c.def.name.clone())
            .unwrap_or_default();
        return Err(Error::new(ErrorKind::NullKeyDisallowed)
            .with_message(format!("index {:?}, column {col:?}", ix.name)));
    }
    if (nulls > 0 && g.contains(IndexGrbit::IGNORE_ANY_NULL))
        || (nulls == ix.segments.len() && g.contains(IndexGrbit::IGNORE_NULL))
        || (first_null == Some(0) && g.contains(IndexGrbit::IGNORE_FIRST_NULL))
    {
        return Ok(None);
    }
    // One allocation for the usual key (a longer one grows once more).
    let mut key = Vec::with_capacity(usize::from(ix.key_most).min(KEY_RESERVE) + 1);
    for (i, s) in ix.segments.iter().enumerate() {
        normalize_segment(&mut key, ix.spec(def, *s)?, value(i, s.column))?;
    }
    truncate_key(
        &mut key,
        usize::from(ix.key_most),
        g.contains(IndexGrbit::DISALLOW_TRUNCATION),
    )?;
    Ok(Some(key))
}

bitflags! {
    /// Options of [`Table::make_key`](crate::Table::make_key) (ESE's `JetMakeKey` grbits).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MakeKeyGrbit: u32 {
        /// `JET_bitNewKey` (0x1): start a new key with this value as its first column.
        const NEW_KEY = 0x1;
        /// `JET_bitStrLimit` (0x2): the key is complete and compares greater than every key
        /// with these column values, whatever the following columns (the older name of
        /// `FULL_COLUMN_END_LIMIT`).
        const STR_LIMIT = 0x2;
        /// `JET_bitSubStrLimit` (0x4): the value is a prefix of a Binary or Text column; the
        /// key is complete and compares greater than every key whose column starts with it
        /// (the older name of `PARTIAL_COLUMN_END_LIMIT`).
        const SUB_STR_LIMIT = 0x4;
        /// `JET_bitNormalizedKey` (0x8): the value is a whole normalized key, as
        /// [`Table::retrieve_key`](crate::Table::retrieve_key) returns it.
        const NORMALIZED_KEY = 0x8;
        /// `JET_bitKeyDataZeroLength` (0x10): a `None` value is a zero-length value, not null.
        const KEY_DATA_ZERO_LENGTH = 0x10;
        /// `JET_bitFullColumnStartLimit` (0x100): the key is complete; the following columns
        /// are wildcards and the key compares lower than or equal to every key with these
        /// column values.
        const FULL_COLUMN_START_LIMIT = 0x100;
        /// `JET_bitFullColumnEndLimit` (0x200): the key is complete; the following columns are
        /// wildcards and the key compares greater than every key with these column values.
        const FULL_COLUMN_END_LIMIT = 0x200;
        /// `JET_bitPartialColumnStartLimit` (0x400): the value is a prefix of a Binary or Text
        /// column; the key is complete and compares lower than every key whose column starts
        /// with it.
        const PARTIAL_COLUMN_START_LIMIT = 0x400;
        /// `JET_bitPartialColumnEndLimit` (0x800): the value is a prefix of a Binary or Text
        /// column; the key is complete and compares greater than every key whose column
        /// starts with it.
        const PARTIAL_COLUMN_END_LIMIT = 0x800;
    }
}

/// A search key being made on a cursor (ESE's key buffer of the `FUCB`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MadeKey {
    /// The normalized bytes so far.
    pub(crate) bytes: Vec<u8>,
    /// Columns given so far.
    pub(crate) segments: usize,
    /// The key stands for itself followed by the largest possible bytes: it compares greater
    /// than every key it is a prefix of.
    pub(crate) end_limit: bool,
    /// No more columns may be added (a limit or a normalized key was given).
    pub(crate) complete: bool,
}

impl MadeKey {
    /// How an entry's secondary key compares with this search key.
    pub(crate) fn cmp_entry(&self, seckey: &[u8]) -> Ordering {
        if self.end_limit && seckey.starts_with(&self.bytes) {
            Ordering::Less
        } else {
            seckey.cmp(&self.bytes)
        }
    }

    /// Whether an entry matches the key for an equality seek: its key starts with the search
    /// key (a key made from the leading columns matches every entry with those values).
    pub(crate) fn matches(&self, seckey: &[u8]) -> bool {
        seckey.starts_with(&self.bytes)
    }
}

/// Adds a column value to the search key `key` of index `ix` (JetMakeKey).
///
/// # Errors
/// `KeyNotMade` (-1608) without `NEW_KEY` when no key is being made; `KeyIsMade` (-1516) when
/// every column of the index has a value, or a limit or normalized key completed the key;
/// `InvalidGrbit` (-900) for unknown bits or two limit options; `InvalidParameter` (-1003) for
/// a normalized key that is missing or longer than the key-most; `InvalidBufferSize` (-1047)
/// for a value of the wrong size.
pub(crate) fn make_key(
    def: &TableDef,
    ix: &IndexEntry,
    key: &mut Option<MadeKey>,
    value: Option<&[u8]>,
    grbit: MakeKeyGrbit,
) -> Result<()> {
    if MakeKeyGrbit::from_bits(grbit.bits()).is_none() {
        return Err(Error::new(ErrorKind::InvalidGrbit));
    }
    let limits = grbit
        & (MakeKeyGrbit::STR_LIMIT
            | MakeKeyGrbit::SUB_STR_LIMIT
            | MakeKeyGrbit::FULL_COLUMN_START_LIMIT
            | MakeKeyGrbit::FULL_COLUMN_END_LIMIT
            | MakeKeyGrbit::PARTIAL_COLUMN_START_LIMIT
            | MakeKeyGrbit::PARTIAL_COLUMN_END_LIMIT);
    if limits.bits().count_ones() > 1 {
        return Err(Error::new(ErrorKind::InvalidGrbit).with_message("at most one limit option"));
    }
    let mut k = if grbit.contains(MakeKeyGrbit::NEW_KEY) {
        MadeKey {
            // Room for a typical key at once (a key grows segment by segment).
            bytes: Vec::with_capacity(64),
            segments: 0,
            end_limit: false,
            complete: false,
        }
    } else {
        match key.take() {
            Some(k) => k,
            None => return Err(Error::new(ErrorKind::KeyNotMade)),
        }
    };
    let restore = |k: MadeKey, key: &mut Option<MadeKey>| {
        if !grbit.contains(MakeKeyGrbit::NEW_KEY) {
            *key = Some(k);
        }
    };
    if k.complete {
        restore(k, key);
        return Err(Error::new(ErrorKind::KeyIsMade));
    }
    if grbit.contains(MakeKeyGrbit::NORMALIZED_KEY) {
        let Some(v) = value.filter(|v| v.len() <= usize::from(ix.key_most)) else {
            restore(k, key);
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("a normalized key is required, at most the index's key-most"));
        };
        *key = Some(MadeKey {
            bytes: v.to_vec(),
            segments: ix.segments.len(),
            end_limit: false,
            complete: true,
        });
        return Ok(());
    }
    let Some(seg) = ix.segments.get(k.segments) else {
        restore(k, key);
        return Err(Error::new(ErrorKind::KeyIsMade));
    };
    let spec = match ix.spec(def, *seg) {
        Ok(s) => s,
        Err(e) => {
            restore(k, key);
            return Err(e);
        }
    };
    let value = match value {
        None if grbit.contains(MakeKeyGrbit::KEY_DATA_ZERO_LENGTH) => Some(&[][..]),
        v => v,
    };
    let partial = limits.intersects(
        MakeKeyGrbit::SUB_STR_LIMIT
            | MakeKeyGrbit::PARTIAL_COLUMN_START_LIMIT
            | MakeKeyGrbit::PARTIAL_COLUMN_END_LIMIT,
    );
    let before = k.bytes.len();
    let r = match value {
        Some(v) if partial => normalize_prefix(&mut k.bytes, spec, v),
        v => normalize_segment(&mut k.bytes, spec, v),
    };
    if let Err(e) = r {
        k.bytes.truncate(before);
        restore(k, key);
        return Err(e);
    }
    k.segments += 1;
    if !limits.is_empty() {
        k.complete = true;
        k.end_limit = !limits.intersects(
            MakeKeyGrbit::FULL_COLUMN_START_LIMIT | MakeKeyGrbit::PARTIAL_COLUMN_START_LIMIT,
        );
    }
    // A search key longer than the index's keys is cut like them (no error for search keys).
    truncate_key(&mut k.bytes, usize::from(ix.key_most), false)?;
    *key = Some(k);
    Ok(())
}

/// The outcome of a seek that found an entry (ESE's `JetSeek` success codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekResult {
    /// The entry's key matches the search key (`JET_errSuccess`).
    Equal,
    /// The entry's key does not match the search key (`JET_wrnSeekNotEqual`, 1039): a `Ge`
    /// or `Le` seek landed on the nearest entry; `Gt` and `Lt` seeks always report this.
    NotEqual,
}

bitflags! {
    /// Options of [`Table::set_index_range`](crate::Table::set_index_range) (ESE's
    /// `JetSetIndexRange` grbits).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct IndexRangeGrbit: u32 {
        /// `JET_bitRangeInclusive` (0x1): entries equal to the limit are inside the range.
        const INCLUSIVE = 0x1;
        /// `JET_bitRangeUpperLimit` (0x2): the limit is above the current entry (it limits
        /// moving next); without it the limit is below (it limits moving previous).
        const UPPER_LIMIT = 0x2;
        /// `JET_bitRangeInstantDuration` (0x4): only check that the current entry is inside
        /// the range; set no range.
        const INSTANT_DURATION = 0x4;
        /// `JET_bitRangeRemove` (0x8): remove the range.
        const REMOVE = 0x8;
    }
}

/// An index range on a cursor (ESE's `JetSetIndexRange`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexRange {
    pub(crate) limit: MadeKey,
    pub(crate) inclusive: bool,
    pub(crate) upper: bool,
}

impl IndexRange {
    /// Whether an entry with secondary key `seckey` is inside the range.
    pub(crate) fn contains(&self, seckey: &[u8]) -> bool {
        let o = self.limit.cmp_entry(seckey);
        match (self.upper, self.inclusive) {
            (true, true) => o != Ordering::Greater,
            (true, false) => o == Ordering::Less,
            (false, true) => o != Ordering::Less,
            (false, false) => o == Ordering::Greater,
        }
    }
}

bitflags! {
    /// Options of [`Table::retrieve_key`](crate::Table::retrieve_key) (ESE's `JetRetrieveKey`
    /// grbits).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RetrieveKeyGrbit: u32 {
        /// `JET_bitRetrieveCopy` (0x1): return the search key being made instead of the
        /// current entry's key.
        const RETRIEVE_COPY = 0x1;
    }
}

bitflags! {
    /// Options of [`Table::set_current_index2`](crate::Table::set_current_index2) (ESE's
    /// `JetSetCurrentIndex2` grbits).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SetCurrentIndexGrbit: u32 {
        /// `JET_bitNoMove` (0x2): stay on the current record (on its entry in the new index);
        /// without it the cursor moves to the first entry of the new index
        /// (`JET_bitMoveFirst`, 0).
        const NO_MOVE = 0x2;
    }
}

impl Table {
    /// Creates an index on the table (JetCreateIndex), in the session's transaction (or an
    /// implicit one): the catalog record of the table gets the index, a new B+tree is
    /// allocated for it, and every record this transaction sees gets its entries, built in
    /// key order. Other transactions cannot change the table while this one is open (they get
    /// `WriteConflict`), and this one cannot create the index while another has uncommitted
    /// changes to the table, so the index holds exactly the records of the table when the
    /// transaction commits. A primary index can be created only on a table without one that
    /// has no record.
    ///
    /// # Errors
    /// The definition errors of [`Session::create_table`](crate::Session::create_table)
    /// (`InvalidName`, `InvalidGrbit`, `IndexInvalidDef`, `TooManyKeys`, `CannotIndex`);
    /// `IndexDuplicate` (-1403) if the table has an index of that name; `TooManyIndexes`
    /// (-1015); `IndexHasPrimary` (-1402) for a primary index on a table that has one or has
    /// records; `KeyDuplicate` (-1605) when two records have the same key in a unique index;
    /// `NullKeyDisallowed` (-1053) for a record with a null key column in a `DISALLOW_NULL`
    /// index; `KeyTruncated` (-346); `WriteConflict` (-1102) when another transaction changed
    /// the table and has not committed, or committed after this transaction began;
    /// `TransReadOnly` (-1110); space and page errors. On error nothing is created.
    pub fn create_index(&mut self, create: &IndexCreate) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        session.in_transaction(&engine, |t| self.create_index_in(t, create))
    }

    fn create_index_in(&mut self, t: &mut Transaction, create: &IndexCreate) -> Result<()> {
        let dbid = self.dbid();
        let d = self.engine.db(dbid)?;
        let cat = tree_id(dbid, CATALOG_OBJID);
        let key = catalog::table_key(&self.def.name);
        let bytes = t.read(cat, &key)?.ok_or_else(|| {
            Error::new(ErrorKind::ObjectNotFound).with_message(self.def.name.clone())
        })?;
        let mut def = TableDef::decode(&bytes)?;
        if def.index(&create.name).is_some() {
            return Err(Error::new(ErrorKind::IndexDuplicate).with_message(create.name.clone()));
        }
        if def.indexes.len() >= INDEXES_MOST {
            return Err(Error::new(ErrorKind::TooManyIndexes)
                .with_message(format!("at most {INDEXES_MOST} indexes")));
        }
        let mut entry = check_index(&def, create, d.db.max_key_len())?;
        if entry.is_primary() {
            if def.primary().is_some() {
                return Err(Error::new(ErrorKind::IndexHasPrimary));
            }
            if create.grbit.intersects(
                IndexGrbit::IGNORE_NULL
                    | IndexGrbit::IGNORE_ANY_NULL
                    | IndexGrbit::IGNORE_FIRST_NULL,
            ) {
                return Err(Error::new(ErrorKind::IndexInvalidDef)
                    .with_message("a primary index cannot ignore null keys"));
            }
            // Records of a table without primary index are keyed by implicit keys: it can
            // change to a primary key only while it holds no record at all.
            if self.engine.store.tree(self.tree)?.cursor().move_first()? {
                return Err(Error::new(ErrorKind::IndexHasPrimary)
                    .with_message("the table has records keyed by its implicit index"));
            }
            entry.objid = def.objid;
            def.indexes.insert(0, entry);
            self.engine
                .catalog_write(|| t.replace(cat, &key, &def.encode()))?;
        } else {
            // Allocated outside the transaction, like a table's tree: after a rollback the
            // catalog does not name it and it stays unused.
            let tree = d.db.create_tree(TreeKind::Index)?;
            entry.objid = tree.objid();
            self.engine
                .store
                .register(tree_id(dbid, tree.objid()), tree.clone());
            def.indexes.push(entry.clone());
            let save = t.change_count();
            self.engine
                .catalog_write(|| t.replace(cat, &key, &def.encode()))?;
            if let Err(e) = self.build_index(t, &def, &entry, &tree) {
                t.rollback_to(save)?;
                return Err(e);
            }
        }
        self.install_def(def.encode())
    }

    /// Fills the new tree of index `ix` with the entries of every record `t` sees.
    ///
    /// The entries are written without versions: until `t` commits, only `t` knows the index
    /// (its catalog record is `t`'s uncommitted change, and every other transaction that
    /// would change the table conflicts on that record), and if `t` rolls back the tree is
    /// left unnamed. The page changes are logged like any other, so recovery rebuilds them.
    fn build_index(
        &self,
        t: &Transaction,
        def: &TableDef,
        ix: &IndexEntry,
        tree: &ese_btree::Tree,
    ) -> Result<()> {
        let view = t.read_view();
        let layout = def.layout();
        let entry_layout = ix.layout();
        let primary = self.engine.store.tree(self.tree)?;
        let mut c = primary.cursor();
        let mut on = c.move_first()?;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while on {
            let bm = c.key().to_vec();
            if let Some(bytes) = self.visible_at(&view, self.tree, &c)? {
                let decoded = Record::decode(&bytes, &layout)?;
                let rec = self.keyed_in(def, &decoded, &view)?;
                for k in record_keys(def, ix, &rec)? {
                    entries.push((entry_layout.node_key(&k, &bm), bm.clone()));
                }
            }
            on = c.move_next()?;
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if entries.windows(2).any(|w| match w {
            [a, b] => a.0 == b.0,
            _ => false,
        }) {
            return Err(Error::new(ErrorKind::KeyDuplicate).with_message(format!(
                "two records have one key in unique index {:?}",
                ix.name
            )));
        }
        for (k, bm) in &entries {
            tree.insert(k, bm)?;
        }
        Ok(())
    }

    /// Deletes an index of the table (JetDeleteIndex), in the session's transaction (or an
    /// implicit one). A cursor whose current index it was goes back to the primary index.
    /// The index's tree is freed after the commit, once no transaction that could still see
    /// the index is open and no cursor is open on the table (as a deleted table's trees, see
    /// [`Session::delete_table`](crate::Session::delete_table)).
    ///
    /// # Errors
    /// `IndexNotFound` (-1404); `IndexMustStay` (-1405) for the primary (clustered) index;
    /// `WriteConflict` (-1102) when another transaction changed the table and has not
    /// committed, or committed after this transaction began; `TransReadOnly` (-1110); the
    /// session errors.
    pub fn delete_index(&mut self, name: &str) -> Result<()> {
        let session = self.session.clone();
        let _call = session.enter(false)?;
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        let explicit = session.open_level() > 0;
        let (level, objid) = session.in_transaction(&engine, |t| {
            let cat = tree_id(self.dbid(), CATALOG_OBJID);
            let key = catalog::table_key(&self.def.name);
            let bytes = t.read(cat, &key)?.ok_or_else(|| {
                Error::new(ErrorKind::ObjectNotFound).with_message(self.def.name.clone())
            })?;
            let mut def = TableDef::decode(&bytes)?;
            let i = def
                .indexes
                .iter()
                .position(|ix| ix.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::new(ErrorKind::IndexNotFound).with_message(name.to_owned())
                })?;
            if def.indexes.get(i).is_some_and(IndexEntry::is_primary) {
                return Err(Error::new(ErrorKind::IndexMustStay).with_message(name.to_owned()));
            }
            let removed = def.indexes.remove(i);
            engine.catalog_write(|| t.replace(cat, &key, &def.encode()))?;
            self.install_def(def.encode())?;
            Ok((t.level(), removed.objid))
        })?;
        self.defer_index_free(explicit, level, objid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnEntry;
    use crate::column::{ColumnDef, ColumnType};
    use crate::record::TaggedValue;

    fn table() -> TableDef {
        TableDef {
            name: "t".into(),
            objid: ObjId(3),
            lv_objid: ObjId(0),
            next_ids: [3, 129, 257],
            columns: vec![
                ColumnEntry {
                    id: 1,
                    def: ColumnDef::new("id", ColumnType::Long),
                    deleted: false,
                },
                ColumnEntry {
                    id: 2,
                    def: ColumnDef::new("n", ColumnType::Short),
                    deleted: false,
                },
                ColumnEntry {
                    id: 256,
                    def: ColumnDef::new("tags", ColumnType::Text)
                        .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
                    deleted: false,
                },
            ],
            indexes: Vec::new(),
        }
    }

    fn index(def: &TableDef, key: &str, grbit: IndexGrbit) -> IndexEntry {
        check_index(
            def,
            &IndexCreate {
                name: "ix".into(),
                key: key.into(),
                grbit,
                key_most: 0,
            },
            2000,
        )
        .unwrap()
    }

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

    #[test]
    fn key_definitions() {
        assert_eq!(
            parse_key_def("+a\0-b\0\0").unwrap(),
            [("a".to_owned(), false), ("b".to_owned(), true)]
        );
        assert_eq!(parse_key_def("\0\0").unwrap_err().code(), -1406);
        assert_eq!(parse_key_def("+\0\0").unwrap_err().code(), -1406);
        let seventeen = "+c\0".repeat(17) + "\0";
        assert_eq!(parse_key_def(&seventeen).unwrap_err().code(), -1016);
        let def = table();
        let bad = IndexCreate {
            name: "ix".into(),
            key: "+nope\0\0".into(),
            grbit: IndexGrbit::empty(),
            key_most: 0,
        };
        assert_eq!(check_index(&def, &bad, 2000).unwrap_err().code(), -1406);
    }

    #[test]
    fn multi_values_and_null_options() {
        let def = table();
        let mut rec = Record::new();
        rec.set(1, 1, tv(&1i32.to_le_bytes())).unwrap();
        rec.set(256, 0, tv(b"B")).unwrap();
        rec.set(256, 0, tv(b"a")).unwrap();
        rec.set(256, 0, tv(b"b")).unwrap();
        let ix = index(&def, "+tags\0+n\0\0", IndexGrbit::empty());
        // "B" and "b" fold to one key: two entries.
        assert_eq!(record_keys(&def, &ix, &rec).unwrap().len(), 2);
        let ignore_any = index(&def, "+tags\0+n\0\0", IndexGrbit::IGNORE_ANY_NULL);
        assert!(record_keys(&def, &ignore_any, &rec).unwrap().is_empty());
        let ignore_all = index(&def, "+n\0\0", IndexGrbit::IGNORE_NULL);
        assert!(record_keys(&def, &ignore_all, &rec).unwrap().is_empty());
        let first = index(&def, "+n\0+id\0\0", IndexGrbit::IGNORE_FIRST_NULL);
        assert!(record_keys(&def, &first, &rec).unwrap().is_empty());
        let disallow = index(&def, "+n\0\0", IndexGrbit::DISALLOW_NULL);
        assert_eq!(
            record_keys(&def, &disallow, &rec).unwrap_err().code(),
            -1053
        );
        let plain = index(&def, "+n\0\0", IndexGrbit::empty());
        assert_eq!(record_keys(&def, &plain, &rec).unwrap(), [vec![0u8]]);
    }

    #[test]
    fn search_keys() {
        let def = table();
        let ix = index(&def, "+id\0-n\0\0", IndexGrbit::empty());
        let mut k = None;
        assert_eq!(
            make_key(&def, &ix, &mut k, Some(&[0; 4]), MakeKeyGrbit::empty())
                .unwrap_err()
                .code(),
            -1608
        );
        make_key(
            &def,
            &ix,
            &mut k,
            Some(&5i32.to_le_bytes()),
            MakeKeyGrbit::NEW_KEY,
        )
        .unwrap();
        make_key(
            &def,
            &ix,
            &mut k,
            Some(&7i16.to_le_bytes()),
            MakeKeyGrbit::empty(),
        )
        .unwrap();
        assert_eq!(
            make_key(&def, &ix, &mut k, Some(&[0; 2]), MakeKeyGrbit::empty())
                .unwrap_err()
                .code(),
            -1516
        );
        let full = k.clone().unwrap();
        assert_eq!(full.segments, 2);
        make_key(
            &def,
            &ix,
            &mut k,
            Some(&5i32.to_le_bytes()),
            MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_END_LIMIT,
        )
        .unwrap();
        let end = k.clone().unwrap();
        assert!(end.complete && end.end_limit);
        assert_eq!(end.cmp_entry(&full.bytes), Ordering::Less);
        let range = IndexRange {
            limit: end,
            inclusive: false,
            upper: true,
        };
        assert!(range.contains(&full.bytes));
    }
}
