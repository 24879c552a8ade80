//! Navigation on a cursor's current index: choosing it (JetSetCurrentIndex), search keys and
//! seeks (JetMakeKey, JetSeek), index ranges (JetSetIndexRange), counts (JetIndexRecordCount),
//! keys and secondary-index bookmarks (JetRetrieveKey, JetGetSecondaryIndexBookmark,
//! JetGotoSecondaryIndexBookmark) and retrieving columns from the index.
//!
//! # How a seek finds its entry
//! Entries of an index sort by (normalized key, bookmark), and normalized keys of one index
//! are prefix-free, so "the first entry whose key is `>=` (or `>`) the search key" is found
//! by positioning the tree at the search key and stepping over the few entries whose key is
//! a proper prefix of it; the duplicates of an equal key are jumped over at once by seeking
//! past the key padded with 0xFF bytes. `Le` and `Lt` are the entry before the first `>` /
//! `>=` entry. Entries this session does not see are skipped, in the direction of the seek.

use std::sync::Arc;

use ese_btree::{Cursor, SeekOp};
use ese_core::{Error, ErrorKind, Result};

use crate::engine::tree_id;
use crate::index::{
    EntryLayout, IndexRange, IndexRangeGrbit, MadeKey, MakeKeyGrbit, RetrieveKeyGrbit, SeekResult,
    SetCurrentIndexGrbit, make_key,
};
use crate::key::{Decoded, decode_segment, segment_len};
use crate::table::{CurIndex, Land, LazyView, Off, RecordCache, Seek, Table, seek_ge};

impl Table {
    /// Positions tree cursor `c` on the first node whose secondary key is `>= key` (`>` with
    /// `strict`), by key alone (visibility is the caller's); false when there is none.
    fn find_from(&self, c: &mut Cursor, key: &MadeKey, strict: bool) -> Result<bool> {
        let padded = |k: &[u8]| {
            let mut p = Vec::with_capacity(k.len() + self.pad);
            p.extend_from_slice(k);
            p.resize(k.len() + self.pad, 0xFF);
            p
        };
        let mut on = if key.end_limit {
            seek_ge(c, &padded(&key.bytes))?
        } else {
            seek_ge(c, &key.bytes)?
        };
        while on {
            let l = self.node_seckey_len(c)?;
            let seckey = c.key().get(..l).unwrap_or_default();
            match key.cmp_entry(seckey) {
                std::cmp::Ordering::Less => on = c.move_next()?,
                std::cmp::Ordering::Equal if strict => {
                    if self.cur.layout == EntryLayout::NonUnique {
                        // Jump over every duplicate of this key at once: their node keys are
                        // the key followed by a bookmark, all below the padded key.
                        let target = padded(seckey);
                        on = seek_ge(c, &target)?;
                    } else {
                        on = c.move_next()?;
                    }
                }
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Seeks with a made key on the current index.
    fn seek_made(&mut self, key: &MadeKey, op: Seek) -> Result<SeekResult> {
        self.range = None;
        // Before the tree cursor reads anything (see `RecordCache`).
        let epoch = self.engine.vs.change_epoch();
        // An equality seek on the primary index lands, if anywhere, on the node of the key
        // itself, whose versions `land_current` then looks up (or, first, their count in the
        // key's slot): that memory is fetched while the tree is descended. A change of the
        // record found (a delete) looks the key up again.
        if op == SeekOp::Eq
            && self.cur.layout == EntryLayout::Primary
            && !key.end_limit
            && self.engine.vs.may_have_versions(self.cur.tree)
        {
            self.engine.vs.prefetch_key(self.cur.tree, &key.bytes);
        }
        let mut c = self.take_cursor()?;
        let forward = matches!(op, SeekOp::Eq | SeekOp::Ge | SeekOp::Gt);
        let on = self.find_from(&mut c, key, matches!(op, SeekOp::Gt | SeekOp::Le))?;
        let on = if forward {
            on
        } else if on {
            c.move_prev()?
        } else {
            c.move_last()?
        };
        let land = self.land_current(&mut c, on, forward, epoch)?;
        let Land::Found(l) = land else {
            self.nav = Some((self.cur.tree, c));
            self.pos = None;
            self.current = None;
            self.off = Off::BeforeFirst(None);
            return Err(Error::new(ErrorKind::RecordNotFound));
        };
        let equal = key.matches(c.key().get(..l.seckey_len).unwrap_or_default())
            && !matches!(op, SeekOp::Gt | SeekOp::Lt);
        if op == SeekOp::Eq && !equal {
            self.nav = Some((self.cur.tree, c));
            self.pos = None;
            self.current = None;
            self.off = Off::BeforeFirst(None);
            return Err(Error::new(ErrorKind::RecordNotFound));
        }
        self.position(&c, l);
        self.nav = Some((self.cur.tree, c));
        Ok(if equal {
            SeekResult::Equal
        } else {
            SeekResult::NotEqual
        })
    }

    /// Adds a column value to the cursor's search key for its current index (JetMakeKey).
    /// `value` is in the column type's format (as for set column); `None` is null (or a
    /// zero-length value with [`MakeKeyGrbit::KEY_DATA_ZERO_LENGTH`]). The first call of a
    /// key needs [`MakeKeyGrbit::NEW_KEY`]; each call gives the next key column. With a limit
    /// option the key is complete: the following columns are wildcards (see
    /// [`MakeKeyGrbit`]).
    ///
    /// # Errors
    /// `KeyNotMade` (-1608) without `NEW_KEY` when no key is being made; `KeyIsMade` (-1516)
    /// when the key already has every column or is complete; `NoCurrentIndex` (-1515) on a
    /// table without primary index while its implicit index is current; `InvalidGrbit`
    /// (-900); `InvalidBufferSize` (-1047) for a value of the wrong size; `InvalidParameter`
    /// (-1003) for a bad normalized key; the session errors. On error the key is unchanged.
    pub fn make_key(&mut self, value: Option<&[u8]>, grbit: MakeKeyGrbit) -> Result<()> {
        self.in_call(|this| {
            this.check_open()?;
            let def = Arc::clone(&this.def);
            let ix = this.current_ix()?.clone();
            make_key(&def, &ix, &mut this.key, value, grbit)
        })
    }

    /// Seeks on the current index with the search key made by [`Table::make_key`]
    /// (JetSeek), and removes the index range. An `Eq` seek with a key of fewer columns than
    /// the index finds the first entry whose leading columns match. The search key is used
    /// up.
    ///
    /// Returns [`SeekResult::Equal`] when the entry found matches the key, and
    /// [`SeekResult::NotEqual`] (ESE's `JET_wrnSeekNotEqual`) when a `Ge`/`Le` seek found
    /// the nearest entry instead, and always for `Gt`/`Lt`.
    ///
    /// # Errors
    /// `KeyNotMade` (-1608) without a search key; `RecordNotFound` (-1601) when no entry
    /// matches (the cursor is then before the first entry); the session errors.
    pub fn seek_key(&mut self, op: Seek) -> Result<SeekResult> {
        self.in_call(|this| {
            this.check_open()?;
            let key = this
                .key
                .take()
                .ok_or_else(|| Error::new(ErrorKind::KeyNotMade))?;
            this.seek_made(&key, op)
        })
    }

    /// Seeks on the current index with the values of its leading columns (JetMakeKey for
    /// each value, then JetSeek): a convenience over [`Table::make_key`] and
    /// [`Table::seek_key`] that succeeds whether the entry found matches or is the nearest
    /// one.
    ///
    /// # Errors
    /// `RecordNotFound` (-1601) when no entry matches; `NoCurrentIndex` (-1515) on the
    /// implicit index of a table without primary index; `KeyIsMade` (-1516) for more values
    /// than segments; `InvalidBufferSize` (-1047) for a value of the wrong size; the session
    /// errors.
    pub fn seek(&mut self, values: &[Option<&[u8]>], op: Seek) -> Result<()> {
        self.in_call(|this| {
            this.check_open()?;
            let mut bytes = std::mem::take(&mut this.seek_key);
            bytes.clear();
            // A new key in the buffer of the last seek (JetMakeKey with NewKey, then the other
            // segments).
            let mut key = Some(MadeKey {
                bytes,
                segments: 0,
                end_limit: false,
                complete: false,
            });
            let ix = this.current_ix()?;
            for v in values {
                make_key(&this.def, ix, &mut key, *v, MakeKeyGrbit::empty())?;
            }
            let key = key.unwrap_or(MadeKey {
                bytes: Vec::new(),
                segments: 0,
                end_limit: false,
                complete: false,
            });
            let r = this.seek_made(&key, op).map(|_| ());
            this.seek_key = key.bytes;
            r
        })
    }

    /// Sets an index range on the current index (JetSetIndexRange) with the search key made
    /// by [`Table::make_key`] as its limit: above the current entry with
    /// [`IndexRangeGrbit::UPPER_LIMIT`] (moving next past it gives `NoCurrentRecord`), below
    /// it otherwise (limits moving previous). [`IndexRangeGrbit::REMOVE`] removes the range.
    /// The range goes away with a seek, a move First/Last, a goto bookmark or a change of
    /// current index. The search key is used up.
    ///
    /// # Errors
    /// `KeyNotMade` (-1608) without a search key; `NoCurrentRecord` (-1603) when the cursor
    /// is on no entry or its entry is outside the range (no range is set); `InvalidGrbit`
    /// (-900); the session errors.
    pub fn set_index_range(&mut self, grbit: IndexRangeGrbit) -> Result<()> {
        let _call = self.session.enter_owned(false)?;
        self.check_open()?;
        if IndexRangeGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        if grbit.contains(IndexRangeGrbit::REMOVE) {
            self.range = None;
            return Ok(());
        }
        let limit = self
            .key
            .take()
            .ok_or_else(|| Error::new(ErrorKind::KeyNotMade))?;
        let range = IndexRange {
            limit,
            inclusive: grbit.contains(IndexRangeGrbit::INCLUSIVE),
            upper: grbit.contains(IndexRangeGrbit::UPPER_LIMIT),
        };
        let (node, l) = self
            .pos
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        if !range.contains(node.get(..*l).unwrap_or_default()) {
            return Err(Error::new(ErrorKind::NoCurrentRecord)
                .with_message("the current entry is outside the range"));
        }
        if !grbit.contains(IndexRangeGrbit::INSTANT_DURATION) {
            self.range = Some(range);
        }
        Ok(())
    }

    /// Counts the entries of the current index from the current entry (included) to the end
    /// of the index or of the index range, as this session sees them, stopping at `max`
    /// (0 = no limit) (JetIndexRecordCount). The cursor does not move.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) when the cursor is on no entry; the session errors.
    pub fn index_record_count(&self, max: u64) -> Result<u64> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        let (node, _) = self
            .pos
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let view = LazyView::new(&self.session);
        let epoch = self.engine.vs.change_epoch();
        let tree = self.engine.store.tree(self.cur.tree)?;
        let mut c = tree.cursor();
        let mut on = seek_ge(&mut c, node)?;
        let mut n = 0u64;
        // The records landed on are not kept: the cursor does not move.
        let mut scratch = RecordCache::default();
        while max == 0 || n < max {
            match self.land(&mut c, on, true, &view, epoch, &mut scratch)? {
                Land::Found(_) => n += 1,
                Land::Stopped(_) => break,
            }
            on = c.move_next()?;
        }
        Ok(n)
    }

    /// The normalized key of the current entry of the current index (JetRetrieveKey), or
    /// with [`RetrieveKeyGrbit::RETRIEVE_COPY`] the search key being made. A key returned
    /// here can be given back to [`Table::make_key`] with
    /// [`MakeKeyGrbit::NORMALIZED_KEY`].
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) off an entry; `KeyNotMade` (-1608) for the copy when no key
    /// is being made; `InvalidGrbit` (-900); the session errors.
    pub fn retrieve_key(&self, grbit: RetrieveKeyGrbit) -> Result<Vec<u8>> {
        let _call = self.session.enter(false)?;
        self.check_open()?;
        if RetrieveKeyGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        if grbit.contains(RetrieveKeyGrbit::RETRIEVE_COPY) {
            return self
                .key
                .as_ref()
                .map(|k| k.bytes.clone())
                .ok_or_else(|| Error::new(ErrorKind::KeyNotMade));
        }
        self.pos
            .as_ref()
            .map(|(n, l)| n.get(..*l).unwrap_or_default().to_vec())
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))
    }

    /// Makes index `name` the current index (JetSetCurrentIndex); `None` or `""` is the
    /// primary index (the implicit index of a table without one). The cursor moves to the
    /// first entry of the index (no error when the index is empty), the search key and the
    /// index range are dropped. Setting the index that is already current changes nothing.
    ///
    /// # Errors
    /// As [`Table::set_current_index2`].
    pub fn set_current_index(&mut self, name: Option<&str>) -> Result<()> {
        self.set_current_index2(name, SetCurrentIndexGrbit::empty())
    }

    /// [`Table::set_current_index`] with options (JetSetCurrentIndex2):
    /// [`SetCurrentIndexGrbit::NO_MOVE`] keeps the current record, on its (first) entry in
    /// the new index.
    ///
    /// # Errors
    /// `IndexNotFound` (-1404) for an unknown index; `NoCurrentRecord` (-1603) with `NO_MOVE`
    /// when the current record has no entry in the new index (the cursor is then before the
    /// first entry); `InvalidGrbit` (-900); `ObjectNotFound` (-1305) if the table is gone;
    /// the session errors.
    pub fn set_current_index2(
        &mut self,
        name: Option<&str>,
        grbit: SetCurrentIndexGrbit,
    ) -> Result<()> {
        let _call = self.session.enter_owned(false)?;
        self.check_open()?;
        if SetCurrentIndexGrbit::from_bits(grbit.bits()).is_none() {
            return Err(Error::new(ErrorKind::InvalidGrbit));
        }
        let view = self.session.read_view();
        self.refresh_def(&view)?;
        let name = name.filter(|n| !n.is_empty());
        let target =
            match name {
                None => None,
                Some(n) => Some(self.def.index(n).cloned().ok_or_else(|| {
                    Error::new(ErrorKind::IndexNotFound).with_message(n.to_owned())
                })?),
            };
        let new = match target {
            Some(ix) if !ix.is_primary() => CurIndex {
                tree: tree_id(self.dbid(), ix.objid),
                layout: ix.layout(),
                ix: Some(ix),
            },
            _ => CurIndex::primary(&self.def, self.tree),
        };
        let same = new.tree == self.cur.tree
            && new.ix.as_ref().map(|i| &i.name) == self.cur.ix.as_ref().map(|i| &i.name);
        if same {
            return Ok(());
        }
        self.cur = new;
        self.key = None;
        self.range = None;
        if grbit.contains(SetCurrentIndexGrbit::NO_MOVE) {
            let Some(bm) = self.current.clone() else {
                self.pos = None;
                self.off = Off::BeforeFirst(None);
                return Err(Error::new(ErrorKind::NoCurrentRecord));
            };
            let rec = self.record_at(&view, &bm)?;
            self.pos = self.entry_of(&bm, &rec, &view)?;
            if self.pos.is_none() {
                self.current = None;
                self.off = Off::BeforeFirst(None);
                return Err(Error::new(ErrorKind::NoCurrentRecord)
                    .with_message("the record has no entry in this index"));
            }
            return Ok(());
        }
        let epoch = self.engine.vs.change_epoch();
        let tree = self.engine.store.tree(self.cur.tree)?;
        let mut c = tree.cursor();
        let on = c.move_first()?;
        match self.land_current(&mut c, on, true, epoch)? {
            Land::Found(l) => self.position(&c, l),
            Land::Stopped(_) => {
                self.pos = None;
                self.current = None;
                self.off = Off::BeforeFirst(None);
            }
        }
        // Kept like a move's (the record it landed on may be read from it, see
        // `RecordCache`).
        self.nav = Some((self.cur.tree, c));
        Ok(())
    }

    /// The name of the current index (JetGetCurrentIndex): the primary index's name, or
    /// `""` for the implicit index of a table without primary index.
    pub fn current_index(&self) -> String {
        self.cur
            .ix
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default()
    }

    /// Retrieves a column from the current entry of the current index instead of the record
    /// (JetRetrieveColumn with `JET_bitRetrieveFromIndex`): for a multi-valued column, the
    /// value this entry was made from. The value is decoded from the normalized key when the
    /// normalization keeps it (numbers, GUIDs, Binary; floating-point `-0.0` comes back as
    /// `+0.0`); text (stored folded to lower case) and key columns cut off by key truncation
    /// are read from the record.
    ///
    /// # Errors
    /// `NoCurrentRecord` (-1603) off an entry; `ColumnNotFound` (-1507) for a column that is
    /// not a key column of the current index; `RecordDeleted` (-1017) when the record must be
    /// read and is gone; the session errors.
    pub fn retrieve_column_from_index(&self, column: u32) -> Result<Option<Vec<u8>>> {
        let (node, l) = self
            .pos
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let ix = self.current_ix()?;
        let not_key = || {
            Error::new(ErrorKind::ColumnNotFound).with_message(format!(
                "column {column} is not a key column of index {:?}",
                ix.name
            ))
        };
        let target = ix
            .segments
            .iter()
            .position(|s| s.column == column)
            .ok_or_else(not_key)?;
        let seckey = node.get(..l).unwrap_or_default();
        let mut at = 0usize;
        for (i, seg) in ix.segments.iter().enumerate() {
            let spec = ix.spec(&self.def, *seg)?;
            let rest = seckey.get(at..).unwrap_or_default();
            let Some(len) = segment_len(rest, spec) else {
                break;
            };
            if i == target {
                if let Some(v) = rest.get(..len).and_then(|s| decode_segment(s, spec)) {
                    let _call = self.session.enter(false)?;
                    return Ok(match v {
                        Decoded::Null => None,
                        Decoded::Value(v) => Some(v),
                    });
                }
                break;
            }
            at += len;
        }
        self.retrieve_column(column)
    }

    /// The bookmark of the current entry of the current secondary index
    /// (JetGetSecondaryIndexBookmark): its normalized secondary key and the record's primary
    /// bookmark.
    ///
    /// # Errors
    /// `NoCurrentIndex` (-1515) when the current index is the primary index;
    /// `NoCurrentRecord` (-1603) off an entry.
    pub fn secondary_index_bookmark(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        if self.cur.is_primary() {
            return Err(Error::new(ErrorKind::NoCurrentIndex)
                .with_message("the current index is the primary index"));
        }
        let (node, l) = self
            .pos
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        let bm = self
            .current
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::NoCurrentRecord))?;
        Ok((node.get(..*l).unwrap_or_default().to_vec(), bm))
    }

    /// Moves to an entry of the current secondary index by its bookmark
    /// (JetGotoSecondaryIndexBookmark), as [`Table::secondary_index_bookmark`] returned it,
    /// and removes the index range.
    ///
    /// # Errors
    /// `NoCurrentIndex` (-1515) when the current index is the primary index; `RecordDeleted`
    /// (-1017) if this session sees no such entry; the session errors.
    pub fn goto_secondary_index_bookmark(
        &mut self,
        secondary_key: &[u8],
        primary_bookmark: &[u8],
    ) -> Result<()> {
        let _call = self.session.enter_owned(false)?;
        self.check_open()?;
        if self.cur.is_primary() {
            return Err(Error::new(ErrorKind::NoCurrentIndex)
                .with_message("the current index is the primary index"));
        }
        let view = self.session.read_view();
        let node = self.cur.layout.node_key(secondary_key, primary_bookmark);
        let tree = self.engine.store.tree(self.cur.tree)?;
        let phys = tree.get_opt(&node)?;
        match self.visible_in(&view, self.cur.tree, &node, phys)? {
            Some(bm) if bm == primary_bookmark => {
                self.range = None;
                self.pos = Some((node, secondary_key.len()));
                self.current = Some(bm);
                self.off = Off::BeforeFirst(None);
                Ok(())
            }
            _ => Err(Error::new(ErrorKind::RecordDeleted)),
        }
    }
}
