//! Separated long values (ESE's LV tree, through the version store): a LongBinary or
//! LongText value longer than [`LV_INTRINSIC_MOST`] bytes (or one moved out of a record that
//! would not fit a page) is stored in the table's long-value tree in chunks, every chunk
//! written through the transaction like a record, so rollback, snapshots, crash recovery and
//! version cleanup apply to long values with no mechanism of their own.
//!
//! Layout (see docs/format-database.md):
//! - chunk node key: long-value id (`LID`, u64 big-endian) + byte offset of the chunk in the
//!   value (u32 big-endian); data: the chunk's bytes. Chunk *i* starts at `i * chunk` where
//!   `chunk` is the page's longest record minus the 12-byte key; every chunk but the last is
//!   full, and a separated value has at least one byte (so one chunk).
//! - the record's tagged value (flag `TAG_SEPARATED`): the LID (u64 little-endian) and the
//!   value's length in bytes (u64 little-endian).

use ese_core::{Error, ErrorKind, ObjId, Result};
use ese_txn::{PhysState, ReadView, Transaction, VersionStore};

/// The longest long value kept in the record (intrinsic); longer ones are separated.
pub(crate) const LV_INTRINSIC_MOST: usize = 1024;

/// Bytes of a separated value's reference in the record: LID and length.
pub(crate) const LV_REF_LEN: usize = 16;

/// How many bytes of a separated value index keys are made from: at least four times the
/// longest key (2000 bytes), so the key of the prefix is the key of the whole value
/// (normalization never yields fewer than one key byte per four value bytes).
pub(crate) const LV_KEY_PREFIX: usize = 8000;

/// Bytes of a chunk node key: LID and offset.
const CHUNK_KEY_LEN: usize = 12;

/// A reference to a separated long value, as the record holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LvRef {
    /// The long-value id, unique in the table.
    pub(crate) lid: u64,
    /// The value's length in bytes.
    pub(crate) len: u64,
}

fn lv_corrupt(msg: String) -> Error {
    Error::new(ErrorKind::LVCorrupted).with_message(msg)
}

impl LvRef {
    /// The 16 bytes the record holds.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(LV_REF_LEN);
        v.extend_from_slice(&self.lid.to_le_bytes());
        v.extend_from_slice(&self.len.to_le_bytes());
        v
    }

    /// Decodes a reference.
    ///
    /// # Errors
    /// `LVCorrupted` (-1526) unless `b` is 16 bytes with a non-zero LID and a length of at
    /// least 1 byte and at most 2 GiB - 1.
    pub(crate) fn decode(b: &[u8]) -> Result<LvRef> {
        let arr: [u8; LV_REF_LEN] = b.try_into().map_err(|_| {
            lv_corrupt(format!(
                "a separated value reference of {} bytes (16 expected)",
                b.len()
            ))
        })?;
        let (l, n) = arr.split_at(8);
        let lid = u64::from_le_bytes(l.try_into().unwrap_or_default());
        let len = u64::from_le_bytes(n.try_into().unwrap_or_default());
        if lid == 0 || len == 0 || len > u64::from(crate::column::ColumnType::LongBinary.max_size())
        {
            return Err(lv_corrupt(format!(
                "bad separated value reference (LID {lid}, {len} bytes)"
            )));
        }
        Ok(LvRef { lid, len })
    }
}

/// The node key of the chunk of `lid` starting at byte `offset`.
pub(crate) fn chunk_key(lid: u64, offset: u64) -> [u8; CHUNK_KEY_LEN] {
    let mut k = [0u8; CHUNK_KEY_LEN];
    let (a, b) = k.split_at_mut(8);
    #[expect(clippy::big_endian_bytes, reason = "LV keys sort by LID, then offset")]
    {
        a.copy_from_slice(&lid.to_be_bytes());
        // Offsets are below 2 GiB (the longest long value).
        b.copy_from_slice(&(offset as u32).to_be_bytes());
    }
    k
}

/// The LID of a chunk node key, if it is one.
pub(crate) fn lid_of_key(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(..8)?.try_into().ok()?;
    #[expect(clippy::big_endian_bytes, reason = "LV keys sort by LID, then offset")]
    Some(u64::from_be_bytes(b))
}

/// The long-value tree of one table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LvTree {
    /// The tree's id in the tree store (database id and objid).
    pub(crate) tree: ObjId,
    /// Bytes per chunk.
    pub(crate) chunk: u64,
}

impl LvTree {
    /// The long-value tree `tree` of a database whose longest record is `max_record_len`.
    pub(crate) fn new(tree: ObjId, max_record_len: usize) -> LvTree {
        LvTree {
            tree,
            chunk: max_record_len.saturating_sub(CHUNK_KEY_LEN).max(1) as u64,
        }
    }

    /// The chunk of `r` at `offset`, as `view` sees it, checked for its length.
    fn chunk_at(
        &self,
        vs: &VersionStore,
        view: &ReadView,
        r: LvRef,
        offset: u64,
    ) -> Result<Vec<u8>> {
        let want = self.chunk.min(r.len - offset) as usize;
        match vs.read(self.tree, &chunk_key(r.lid, offset), view)? {
            PhysState::Present(d) if d.len() == want => Ok(d),
            PhysState::Present(d) => Err(lv_corrupt(format!(
                "long value {}: the chunk at {offset} has {} bytes, {want} expected",
                r.lid,
                d.len()
            ))),
            PhysState::Absent | PhysState::Deleted(_) => Err(lv_corrupt(format!(
                "long value {} ({} bytes): no chunk at offset {offset}",
                r.lid, r.len
            ))),
        }
    }

    /// Up to `max` bytes of `r` from byte `offset`, as `view` sees it (fewer at the end;
    /// none at or past the end).
    ///
    /// # Errors
    /// `LVCorrupted` (-1526) for a missing chunk or one of the wrong length; the page store's
    /// errors.
    pub(crate) fn read(
        &self,
        vs: &VersionStore,
        view: &ReadView,
        r: LvRef,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>> {
        if offset >= r.len {
            return Ok(Vec::new());
        }
        let end = r.len.min(offset.saturating_add(max as u64));
        // The length comes from the record: trust it for the capacity only up to 16 chunks.
        let mut out = Vec::with_capacity((end - offset).min(16 * self.chunk) as usize);
        let mut c0 = offset - offset % self.chunk;
        while c0 < end {
            let d = self.chunk_at(vs, view, r, c0)?;
            let from = offset.saturating_sub(c0) as usize;
            let to = ((end - c0) as usize).min(d.len());
            out.extend_from_slice(d.get(from..to).unwrap_or_default());
            c0 += self.chunk;
        }
        Ok(out)
    }

    /// Writes `data` (at least one byte) as the new long value `lid`, in transaction `t`.
    ///
    /// # Errors
    /// `KeyDuplicate` (-1605) if `lid` has chunks; the transaction's errors.
    pub(crate) fn write(&self, t: &mut Transaction, lid: u64, data: &[u8]) -> Result<LvRef> {
        let mut offset = 0u64;
        for c in data.chunks(self.chunk as usize) {
            t.insert(self.tree, &chunk_key(lid, offset), c)?;
            offset += c.len() as u64;
        }
        Ok(LvRef {
            lid,
            len: data.len() as u64,
        })
    }

    /// Makes long value `r` hold `data` (at least one byte) in place, in transaction `t`:
    /// chunks whose bytes do not change are left alone, changed ones replaced, new ones
    /// inserted and those past the new end deleted, so appending to a long value or
    /// overwriting part of it writes (and versions) only the chunks it touches.
    ///
    /// # Errors
    /// `LVCorrupted` (-1526) for a missing chunk or one of the wrong length; the
    /// transaction's errors.
    pub(crate) fn rewrite(&self, t: &mut Transaction, r: LvRef, data: &[u8]) -> Result<LvRef> {
        let new_len = data.len() as u64;
        let mut offset = 0u64;
        while offset < r.len.max(new_len) {
            let key = chunk_key(r.lid, offset);
            let piece = data
                .get(offset as usize..(offset + self.chunk).min(new_len) as usize)
                .unwrap_or_default();
            if offset < r.len {
                let want = self.chunk.min(r.len - offset) as usize;
                let old = t
                    .read(self.tree, &key)?
                    .filter(|d| d.len() == want)
                    .ok_or_else(|| {
                        lv_corrupt(format!(
                            "long value {} ({} bytes): no chunk of {want} bytes at offset {offset}",
                            r.lid, r.len
                        ))
                    })?;
                if piece.is_empty() {
                    t.delete(self.tree, &key)?;
                } else if old != piece {
                    t.replace(self.tree, &key, piece)?;
                }
            } else {
                t.insert(self.tree, &key, piece)?;
            }
            offset += self.chunk;
        }
        Ok(LvRef {
            lid: r.lid,
            len: new_len,
        })
    }

    /// Deletes every chunk of `r`, in transaction `t`.
    ///
    /// # Errors
    /// `LVCorrupted` (-1526) for a missing chunk; the transaction's errors.
    pub(crate) fn free(&self, t: &mut Transaction, r: LvRef) -> Result<()> {
        let mut offset = 0u64;
        while offset < r.len {
            t.delete(self.tree, &chunk_key(r.lid, offset))
                .map_err(|e| {
                    if e.kind() == ErrorKind::RecordNotFound {
                        lv_corrupt(format!(
                            "long value {} ({} bytes): no chunk at offset {offset} to free",
                            r.lid, r.len
                        ))
                    } else {
                        e
                    }
                })?;
            offset += self.chunk;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::{
        ColumnDef, ColumnType, CreateDatabaseGrbit, IndexCreate, IndexGrbit, Instance, Prep, Seek,
        TableCreate,
    };

    #[test]
    fn references_round_trip_and_reject_garbage() {
        let r = LvRef { lid: 7, len: 5000 };
        assert_eq!(LvRef::decode(&r.encode()).unwrap(), r);
        for bad in [
            &[0u8; 15][..],
            &[0u8; 17][..],
            &LvRef { lid: 0, len: 5 }.encode()[..],
            &LvRef { lid: 1, len: 0 }.encode()[..],
            &LvRef {
                lid: 1,
                len: 1 << 31,
            }
            .encode()[..],
        ] {
            assert_eq!(LvRef::decode(bad).unwrap_err().code(), -1526);
        }
        assert!(chunk_key(1, 0) < chunk_key(1, 8000));
        assert!(chunk_key(1, 1 << 30) < chunk_key(2, 0));
        assert_eq!(lid_of_key(&chunk_key(0x0102_0304, 77)), Some(0x0102_0304));
    }

    #[test]
    fn a_missing_or_short_chunk_is_lv_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::builder("lvcorrupt")
            .system_path(dir.path())
            .log_path(dir.path())
            .page_size(4096)
            .create()
            .unwrap();
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        let db = s
            .create_database(dir.path().join("a.edb"), CreateDatabaseGrbit::empty())
            .unwrap();
        s.create_table(
            db,
            &TableCreate {
                name: "t".into(),
                columns: vec![
                    ColumnDef::new("id", ColumnType::Long),
                    ColumnDef::new("lv", ColumnType::LongBinary),
                ],
                indexes: vec![IndexCreate {
                    name: "primary".into(),
                    key: "+id\0\0".into(),
                    grbit: IndexGrbit::PRIMARY,
                    key_most: 0,
                }],
            },
        )
        .unwrap();
        let mut t = s.open_table(db, "t").unwrap();
        for id in [1i32, 2] {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(1, Some(&id.to_le_bytes())).unwrap();
            t.set_column(256, Some(&vec![id.to_le_bytes()[0]; 10_000]))
                .unwrap();
            t.update().unwrap();
        }
        let lv = t.lv_tree().unwrap().unwrap();
        let tree = t.engine.store.tree(lv.tree).unwrap();
        // LIDs 1 and 2: drop the second chunk of the first, cut the last chunk of the second.
        tree.delete(&chunk_key(1, lv.chunk)).unwrap();
        tree.replace(&chunk_key(2, 2 * lv.chunk), b"short").unwrap();
        for id in [1i32, 2] {
            t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
            let e = t.retrieve_column(256).unwrap_err();
            assert_eq!(e.code(), -1526, "{e}");
        }
        // The first chunk is intact: a read of it alone succeeds.
        let part = t
            .retrieve_column_with(
                256,
                crate::RetrieveGrbit::empty(),
                crate::RetInfo::default(),
                10,
            )
            .unwrap()
            .unwrap();
        assert_eq!(part.data, [2; 10]);
        // Freeing a damaged value fails as corruption, and the delete changes nothing.
        t.seek(&[Some(&1i32.to_le_bytes())], Seek::Eq).unwrap();
        assert_eq!(t.delete().unwrap_err().code(), -1526);
        t.seek(&[Some(&1i32.to_le_bytes())], Seek::Eq).unwrap();
        assert_eq!(t.long_value_stats().unwrap().0, 2);
    }
}
