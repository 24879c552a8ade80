//! The transaction layer's log records and annotations, and their byte encoding.
//!
//! Annotations ride in the page store's log record of the change they describe, so undo
//! information and the change are durable together. All integers little-endian.
//!
//! | tag | record | layout after the tag byte |
//! |---|---|---|
//! | 1 | `Op` | trx u64, seq u32, tree u32, key len u16, key, undo |
//! | 2 | `Clr` (compensation: op `seq` of `trx` is undone) | trx u64, seq u32 |
//! | 3 | `Commit0` | trx u64 |
//! | 4 | `Rollback0` (every op of `trx` is undone) | trx u64 |
//!
//! `undo` is a tag byte: 1 = restore a physical state (state tag 0 absent / 1 deleted /
//! 2 present, then for 1 and 2: len u32 and the data), 2 = subtract an escrow delta (offset
//! u32, width u8 (4 or 8), delta i64), 3 = nothing to undo (a lock), 4 = clear the deleted
//! flag (a flag delete, which kept the record's data on the page: nothing follows).

#![deny(clippy::indexing_slicing)]

use ese_core::{Error, ErrorKind, ObjId, Result, TrxId};

use crate::store::PhysState;

/// How to undo one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undo {
    /// Restore this physical state of the key.
    Restore(PhysState),
    /// Subtract `delta` from the little-endian signed integer of `width` bytes (4 or 8) at
    /// `offset` in the record (escrow update, ESE's `Delta`/`Delta64`).
    Delta {
        /// Byte offset of the escrow field in the record.
        offset: u32,
        /// Width of the field in bytes: 4 or 8.
        width: u8,
        /// The delta that was added.
        delta: i64,
    },
    /// Nothing (a write or read lock).
    Nothing,
    /// Clear the deleted flag of the key's node: the undo of a flag delete, which kept the
    /// record's data on the page, so the before-image need not be logged (ESE's flag delete
    /// is undone the same way).
    Undelete,
}

/// A record of the transaction layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRecord {
    /// Operation `seq` of transaction `trx` on `key` of `tree`, with how to undo it.
    Op {
        /// The transaction.
        trx: TrxId,
        /// The operation's sequence number within the transaction.
        seq: u32,
        /// The tree.
        tree: ObjId,
        /// The key.
        key: Vec<u8>,
        /// How to undo it.
        undo: Undo,
    },
    /// Operation `seq` of `trx` has been undone (a compensation record).
    Clr {
        /// The transaction.
        trx: TrxId,
        /// The undone operation.
        seq: u32,
    },
    /// `trx` committed at level 0 (ESE's `lrtypCommit0`).
    Commit0 {
        /// The transaction.
        trx: TrxId,
    },
    /// Every operation of `trx` has been undone (its level-0 rollback finished).
    Rollback0 {
        /// The transaction.
        trx: TrxId,
    },
}

const TAG_OP: u8 = 1;
const TAG_CLR: u8 = 2;
const TAG_COMMIT0: u8 = 3;
const TAG_ROLLBACK0: u8 = 4;

const UNDO_RESTORE: u8 = 1;
const UNDO_DELTA: u8 = 2;
const UNDO_NOTHING: u8 = 3;
const UNDO_UNDELETE: u8 = 4;

const STATE_ABSENT: u8 = 0;
const STATE_DELETED: u8 = 1;
const STATE_PRESENT: u8 = 2;

impl TxnRecord {
    /// The encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, trx, seq) = match self {
            TxnRecord::Op {
                trx,
                seq,
                tree,
                key,
                undo,
            } => return TxnRecord::encode_op(*trx, *seq, *tree, key, undo),
            TxnRecord::Clr { trx, seq } => (TAG_CLR, trx, Some(seq)),
            TxnRecord::Commit0 { trx } => (TAG_COMMIT0, trx, None),
            TxnRecord::Rollback0 { trx } => (TAG_ROLLBACK0, trx, None),
        };
        let mut b = Vec::with_capacity(13);
        b.push(tag);
        b.extend_from_slice(&trx.0.to_le_bytes());
        if let Some(seq) = seq {
            b.extend_from_slice(&seq.to_le_bytes());
        }
        b
    }

    /// The encoded bytes of a [`TxnRecord::Op`] with these fields, from a borrowed key (what
    /// `encode` of the record would return, without building it).
    pub fn encode_op(trx: TrxId, seq: u32, tree: ObjId, key: &[u8], undo: &Undo) -> Vec<u8> {
        let mut b = Vec::new();
        TxnRecord::encode_op_into(&mut b, trx, seq, tree, key, undo);
        b
    }

    /// [`TxnRecord::encode_op`] appended to `b` (a buffer the caller reuses).
    pub fn encode_op_into(
        b: &mut Vec<u8>,
        trx: TrxId,
        seq: u32,
        tree: ObjId,
        key: &[u8],
        undo: &Undo,
    ) {
        // Room for the fixed fields plus the key and the before-image: one allocation at most.
        let hint = 32
            + key.len()
            + match undo {
                Undo::Restore(PhysState::Deleted(d) | PhysState::Present(d)) => d.len(),
                _ => 16,
            };
        b.reserve(hint);
        b.push(TAG_OP);
        b.extend_from_slice(&trx.0.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&tree.0.to_le_bytes());
        // Keys are bounded by the page store (2,000 bytes at most), far below u16::MAX.
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key);
        match undo {
            Undo::Restore(state) => {
                b.push(UNDO_RESTORE);
                match state {
                    PhysState::Absent => b.push(STATE_ABSENT),
                    PhysState::Deleted(d) | PhysState::Present(d) => {
                        b.push(if matches!(state, PhysState::Deleted(_)) {
                            STATE_DELETED
                        } else {
                            STATE_PRESENT
                        });
                        b.extend_from_slice(&(d.len() as u32).to_le_bytes());
                        b.extend_from_slice(d);
                    }
                }
            }
            Undo::Delta {
                offset,
                width,
                delta,
            } => {
                b.push(UNDO_DELTA);
                b.extend_from_slice(&offset.to_le_bytes());
                b.push(*width);
                b.extend_from_slice(&delta.to_le_bytes());
            }
            Undo::Nothing => b.push(UNDO_NOTHING),
            Undo::Undelete => b.push(UNDO_UNDELETE),
        }
    }

    /// Decodes [`TxnRecord::encode`]'s bytes.
    ///
    /// # Errors
    /// `LogCorrupted` if the bytes are not a well-formed record.
    pub fn decode(bytes: &[u8]) -> Result<TxnRecord> {
        let mut r = Reader { b: bytes };
        let rec = match r.u8()? {
            TAG_OP => {
                let trx = TrxId(r.u64()?);
                let seq = r.u32()?;
                let tree = ObjId(r.u32()?);
                let klen = r.u16()? as usize;
                let key = r.take(klen)?.to_vec();
                let undo = match r.u8()? {
                    UNDO_RESTORE => Undo::Restore(match r.u8()? {
                        STATE_ABSENT => PhysState::Absent,
                        t @ (STATE_DELETED | STATE_PRESENT) => {
                            let len = r.u32()? as usize;
                            let d = r.take(len)?.to_vec();
                            if t == STATE_DELETED {
                                PhysState::Deleted(d)
                            } else {
                                PhysState::Present(d)
                            }
                        }
                        _ => return Err(corrupt("bad state tag")),
                    }),
                    UNDO_DELTA => {
                        let offset = r.u32()?;
                        let width = r.u8()?;
                        if width != 4 && width != 8 {
                            return Err(corrupt("bad escrow width"));
                        }
                        let delta = r.u64()?.cast_signed();
                        Undo::Delta {
                            offset,
                            width,
                            delta,
                        }
                    }
                    UNDO_NOTHING => Undo::Nothing,
                    UNDO_UNDELETE => Undo::Undelete,
                    _ => return Err(corrupt("bad undo tag")),
                };
                TxnRecord::Op {
                    trx,
                    seq,
                    tree,
                    key,
                    undo,
                }
            }
            TAG_CLR => TxnRecord::Clr {
                trx: TrxId(r.u64()?),
                seq: r.u32()?,
            },
            TAG_COMMIT0 => TxnRecord::Commit0 {
                trx: TrxId(r.u64()?),
            },
            TAG_ROLLBACK0 => TxnRecord::Rollback0 {
                trx: TrxId(r.u64()?),
            },
            _ => return Err(corrupt("unknown record tag")),
        };
        if !r.b.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(rec)
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(ErrorKind::LogCorrupted).with_message(format!("transaction record: {what}"))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(corrupt("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([
            s.first().copied().unwrap_or_default(),
            s.get(1).copied().unwrap_or_default(),
        ]))
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let recs = [
            TxnRecord::Op {
                trx: TrxId(7),
                seq: 3,
                tree: ObjId(9),
                key: b"key".to_vec(),
                undo: Undo::Restore(PhysState::Present(b"v".to_vec())),
            },
            TxnRecord::Op {
                trx: TrxId(7),
                seq: 5,
                tree: ObjId(9),
                key: b"gone".to_vec(),
                undo: Undo::Undelete,
            },
            TxnRecord::Op {
                trx: TrxId(7),
                seq: 4,
                tree: ObjId(9),
                key: vec![],
                undo: Undo::Restore(PhysState::Absent),
            },
            TxnRecord::Op {
                trx: TrxId(7),
                seq: 5,
                tree: ObjId(9),
                key: b"k".to_vec(),
                undo: Undo::Delta {
                    offset: 4,
                    width: 8,
                    delta: -5,
                },
            },
            TxnRecord::Clr {
                trx: TrxId(7),
                seq: 5,
            },
            TxnRecord::Commit0 { trx: TrxId(8) },
            TxnRecord::Rollback0 { trx: TrxId(9) },
        ];
        for r in &recs {
            let b = r.encode();
            assert_eq!(&TxnRecord::decode(&b).unwrap(), r);
            for cut in 0..b.len() {
                assert!(TxnRecord::decode(&b[..cut]).is_err());
            }
        }
        assert!(TxnRecord::decode(&[99]).is_err());
    }
}
