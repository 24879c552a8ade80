//! Separated long values of crate `ese`, read from a table's long-value tree without crate
//! `ese` (format: `docs/format-database.md`, "Long values").
//!
//! A chunk node is keyed by the LID (u64 big-endian) and the chunk's byte offset in the value
//! (u32 big-endian); chunk *i* starts at `i * chunk`, where `chunk` is the longest node data
//! beside a 12-byte key (`ese_btree::Database::max_record_len_for(page size) - 12`), and every
//! chunk but the last is full. This reader asks for each chunk by its exact key, in offset
//! order, so a missing chunk, a chunk of the wrong length, a flag-deleted chunk or a page that
//! does not read is reported for that value with the LID and the offset, never as a panic and
//! never as the end of the dump.

#![deny(clippy::indexing_slicing)]

use ese_btree::{NodeFlags, Tree};

/// Bytes of a chunk node key: LID and offset.
const CHUNK_KEY_LEN: usize = 12;

/// The longest value a reference may announce: 2 GiB - 1 (LongBinary's maximum).
const LV_SIZE_MOST: u64 = (1 << 31) - 1;

/// The most bytes reserved for a value before its chunks are read: 1 MiB.
const PREALLOC_MOST: u64 = 1 << 20;

/// The node key of the chunk of `lid` that starts at byte `offset` (below 2 GiB).
fn chunk_key(lid: u64, offset: u64) -> [u8; CHUNK_KEY_LEN] {
    let mut k = [0u8; CHUNK_KEY_LEN];
    let (a, b) = k.split_at_mut(8);
    #[expect(clippy::big_endian_bytes, reason = "LV keys sort by LID, then offset")]
    {
        a.copy_from_slice(&lid.to_be_bytes());
        b.copy_from_slice(&(offset.min(u64::from(u32::MAX)) as u32).to_be_bytes());
    }
    k
}

/// The bytes read of one separated value.
#[derive(Debug)]
pub(crate) struct LvRead {
    /// The first bytes of the value: all of it, or the first `max` bytes asked for.
    pub(crate) bytes: Vec<u8>,
    /// Whether `bytes` is shorter than the value.
    pub(crate) truncated: bool,
}

/// The long-value tree of one table, or its absence.
pub(crate) struct LvReader {
    tree: Option<Tree>,
    /// The tree's objid (0: the table has none).
    objid: u32,
    /// Bytes per chunk.
    chunk: u64,
}

impl LvReader {
    /// The reader of long-value tree `tree` (objid `objid`, `None` when the table has none or
    /// the tree directory does not know it) of a database with pages of `page_size` bytes.
    pub(crate) fn new(tree: Option<Tree>, objid: u32, page_size: u32) -> LvReader {
        let max = ese_btree::Database::max_record_len_for(page_size);
        LvReader {
            tree,
            objid,
            chunk: max.saturating_sub(CHUNK_KEY_LEN).max(1) as u64,
        }
    }

    /// Reads the first `max` bytes (all of them when the value is not longer) of the
    /// separated value `lid` of `size` bytes.
    ///
    /// # Errors
    /// A description naming the LID and what is wrong: a bad reference (LID 0, size 0 or over
    /// 2 GiB - 1), no long-value tree, a missing, flag-deleted or wrongly sized chunk (with its
    /// offset and the lengths), or the JET error of a page that does not read.
    pub(crate) fn read(&self, lid: u64, size: u64, max: u64) -> Result<LvRead, String> {
        if lid == 0 || size == 0 || size > LV_SIZE_MOST {
            return Err(format!(
                "bad separated value reference (LID {lid}, {size} bytes)"
            ));
        }
        let tree = self.tree.as_ref().ok_or_else(|| {
            if self.objid == 0 {
                format!("LID {lid}: the table has no long-value tree")
            } else {
                format!(
                    "LID {lid}: the long-value tree {} is not in the tree directory",
                    self.objid
                )
            }
        })?;
        let want = size.min(max);
        // Grown as chunks read: a damaged reference may announce 2 GiB that are not there.
        let mut bytes = Vec::with_capacity(usize::try_from(want.min(PREALLOC_MOST)).unwrap_or(0));
        let mut offset = 0u64;
        while offset < want {
            let expect = self.chunk.min(size - offset);
            let at = |what: String| {
                format!("LID {lid} ({size} bytes): the chunk at offset {offset} {what}")
            };
            let (data, flags) = tree
                .get_opt(&chunk_key(lid, offset))
                .map_err(|e| at(format!("does not read: {e}")))?
                .ok_or_else(|| at(format!("is missing ({expect} bytes expected)")))?;
            if flags.contains(NodeFlags::DELETED) {
                return Err(at("is flag-deleted".to_owned()));
            }
            if data.len() as u64 != expect {
                return Err(at(format!("has {} bytes, {expect} expected", data.len())));
            }
            let take = usize::try_from((want - offset).min(expect)).unwrap_or(data.len());
            bytes.extend_from_slice(data.get(..take).unwrap_or(&data));
            offset += expect;
        }
        Ok(LvRead {
            bytes,
            truncated: want < size,
        })
    }
}
