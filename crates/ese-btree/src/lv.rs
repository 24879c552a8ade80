//! Long values (ESE's LV tree): values up to 2 GiB stored in a tree of kind
//! [`TreeKind::LongValue`], one per table.
//!
//! Keys (big-endian so byte order is numeric order):
//! - LV root: `lid` (8 bytes) → `total length u64 LE, refcount u32 LE` (ESE's `LVROOT`).
//! - chunk: `lid` (8 bytes) + `offset` (4 bytes) → up to `chunk_size` bytes. Chunk *i* covers
//!   bytes `[i * chunk_size, (i + 1) * chunk_size)`; every chunk but the last is full.
//!
//! `chunk_size` is the largest record of the page size minus the 12-byte key, so one chunk
//! fills one page (ESE's `JET_paramLVChunkSizeMost`). Each call changes several nodes, each
//! logged on its own: atomicity of a whole long-value update is the transaction layer's job
//! (its undo), as in ESE.

use ese_core::{Error, ErrorKind, Result};

use crate::cursor::SeekOp;
use crate::db::{TreeKind, key_u32, key_u64};
use crate::tree::{Tree, max_record_len};

/// The longest long value in bytes (ESE: 2 GiB - 1).
pub const LV_MAX_LEN: u64 = i32::MAX as u64;

/// Long values of one long-value tree (ESE `LV*` functions).
#[derive(Clone, Debug)]
pub struct LongValues {
    tree: Tree,
    chunk: u64,
}

fn root_key(lid: u64) -> [u8; 8] {
    key_u64(lid)
}

fn chunk_key(lid: u64, offset: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    let (a, b) = k.split_at_mut(8);
    a.copy_from_slice(&key_u64(lid));
    b.copy_from_slice(&key_u32(offset as u32));
    k
}

fn lv_corrupt(lid: u64, msg: &str) -> Error {
    Error::new(ErrorKind::LVCorrupted).with_message(format!("long value {lid}: {msg}"))
}

impl LongValues {
    /// Long values stored in `tree`.
    ///
    /// # Errors
    /// `InvalidParameter` if `tree` is not a long-value tree.
    pub fn new(tree: Tree) -> Result<LongValues> {
        if tree.kind() != TreeKind::LongValue {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message("not a long-value tree")
            );
        }
        let chunk = (max_record_len(tree.sh.page_size()) - 12) as u64;
        Ok(LongValues { tree, chunk })
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u64 {
        self.chunk
    }

    /// Creates an empty long value `lid` with refcount 1.
    ///
    /// # Errors
    /// `KeyDuplicate` if it exists; as [`Tree::insert`].
    pub fn create(&self, lid: u64) -> Result<()> {
        self.tree.insert(&root_key(lid), &encode_root(0, 1))
    }

    fn root(&self, lid: u64) -> Result<(u64, u32)> {
        let (d, _) = self.tree.get(&root_key(lid)).map_err(|e| {
            if e.kind() == ErrorKind::RecordNotFound {
                Error::new(ErrorKind::ColumnNoChunk).with_message(format!("no long value {lid}"))
            } else {
                e
            }
        })?;
        let len = d
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes);
        let rc = d
            .get(8..12)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes);
        match (len, rc) {
            (Some(l), Some(r)) if l <= LV_MAX_LEN => Ok((l, r)),
            _ => Err(lv_corrupt(lid, "bad root")),
        }
    }

    /// The length of long value `lid` in bytes.
    ///
    /// # Errors
    /// `ColumnNoChunk` if it does not exist; `LVCorrupted`; page read errors.
    pub fn len(&self, lid: u64) -> Result<u64> {
        Ok(self.root(lid)?.0)
    }

    /// Appends `data` to long value `lid`.
    ///
    /// # Errors
    /// `ColumnTooBig` past [`LV_MAX_LEN`]; as [`LongValues::write_at`].
    pub fn append(&self, lid: u64, data: &[u8]) -> Result<()> {
        let len = self.len(lid)?;
        self.write_at(lid, len, data)
    }

    /// Writes `data` at `offset`, overwriting and/or extending (ESE `JetSetColumn` with
    /// `JET_bitSetOverwriteLV` / append).
    ///
    /// # Errors
    /// `InvalidParameter` if `offset` is past the end; `ColumnTooBig` past [`LV_MAX_LEN`];
    /// `ColumnNoChunk` if `lid` does not exist; `LVCorrupted` for a missing chunk; as
    /// [`Tree::insert`].
    pub fn write_at(&self, lid: u64, offset: u64, data: &[u8]) -> Result<()> {
        let (len, rc) = self.root(lid)?;
        if offset > len {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message(format!(
                    "offset {offset} past the end ({len}) of long value {lid}"
                )),
            );
        }
        let end = offset + data.len() as u64;
        if end > LV_MAX_LEN {
            return Err(Error::new(ErrorKind::ColumnTooBig).with_message(format!(
                "long value of {end} bytes, the limit is {LV_MAX_LEN}"
            )));
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let c0 = pos - pos % self.chunk;
            let within = (pos - c0) as usize;
            let take = rest.len().min(self.chunk as usize - within);
            let (now, later) = rest.split_at(take);
            let key = chunk_key(lid, c0);
            if c0 < len {
                let (mut old, _) = self
                    .tree
                    .get(&key)
                    .map_err(|_| lv_corrupt(lid, "missing chunk"))?;
                if old.len() < within {
                    return Err(lv_corrupt(lid, "short chunk"));
                }
                let stop = within + take;
                if old.len() < stop {
                    old.resize(stop, 0);
                }
                old.get_mut(within..stop)
                    .ok_or_else(|| lv_corrupt(lid, "chunk"))?
                    .copy_from_slice(now);
                self.tree.replace(&key, &old)?;
            } else {
                self.tree.insert(&key, now)?;
            }
            pos += take as u64;
            rest = later;
        }
        if end > len {
            self.tree.replace(&root_key(lid), &encode_root(end, rc))?;
        }
        Ok(())
    }

    /// Shortens long value `lid` to `new_len` bytes (no-op if it is not longer).
    ///
    /// # Errors
    /// `ColumnNoChunk` if `lid` does not exist; `LVCorrupted`; as [`Tree::delete`].
    pub fn truncate(&self, lid: u64, new_len: u64) -> Result<()> {
        let (len, rc) = self.root(lid)?;
        if new_len >= len {
            return Ok(());
        }
        let keep_chunks = new_len.div_ceil(self.chunk);
        let total_chunks = len.div_ceil(self.chunk);
        for c in (keep_chunks..total_chunks).rev() {
            self.tree.delete(&chunk_key(lid, c * self.chunk))?;
        }
        if !new_len.is_multiple_of(self.chunk) {
            let c0 = new_len - new_len % self.chunk;
            let key = chunk_key(lid, c0);
            let (mut old, _) = self
                .tree
                .get(&key)
                .map_err(|_| lv_corrupt(lid, "missing chunk"))?;
            old.truncate((new_len - c0) as usize);
            self.tree.replace(&key, &old)?;
        }
        self.tree.replace(&root_key(lid), &encode_root(new_len, rc))
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (fewer at the end).
    ///
    /// # Errors
    /// `ColumnNoChunk` if `lid` does not exist; `LVCorrupted` for a missing or short chunk;
    /// page read errors.
    pub fn read_at(&self, lid: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (len, _) = self.root(lid)?;
        if offset >= len {
            return Ok(0);
        }
        let want = buf.len().min((len - offset) as usize);
        let mut done = 0usize;
        let mut cur = self.tree.cursor();
        let c0 = offset - offset % self.chunk;
        cur.seek(&chunk_key(lid, c0), SeekOp::Eq)
            .map_err(|_| lv_corrupt(lid, "missing chunk"))?;
        let mut chunk_start = c0;
        while done < want {
            if cur.key() != chunk_key(lid, chunk_start) {
                return Err(lv_corrupt(lid, "missing chunk"));
            }
            let pos = offset + done as u64;
            let within = (pos - chunk_start) as usize;
            let d = cur.data();
            let avail = d
                .get(within..)
                .ok_or_else(|| lv_corrupt(lid, "short chunk"))?;
            let n = avail.len().min(want - done);
            if n == 0 {
                return Err(lv_corrupt(lid, "short chunk"));
            }
            buf.get_mut(done..done + n)
                .ok_or_else(|| lv_corrupt(lid, "buffer"))?
                .copy_from_slice(avail.get(..n).unwrap_or_default());
            done += n;
            if done < want {
                chunk_start += self.chunk;
                if !cur.move_next()? {
                    return Err(lv_corrupt(lid, "missing chunk"));
                }
            }
        }
        Ok(done)
    }

    /// Deletes long value `lid` and all its chunks.
    ///
    /// # Errors
    /// `ColumnNoChunk` if `lid` does not exist; as [`Tree::delete`].
    pub fn delete(&self, lid: u64) -> Result<()> {
        self.truncate(lid, 0)?;
        self.tree.delete(&root_key(lid))
    }
}

fn encode_root(len: u64, refcount: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&refcount.to_le_bytes());
    v
}
