//! The checkpoint file `edb.chk` (ESE's `CHECKPOINT`): the oldest LGPOS recovery must start
//! from, the stream's signature and the upper layer's database list.
//!
//! Crash safety: the file holds **two checksummed copies** (slots) of 4,096 bytes at offsets 0
//! and 4,096. Each write goes to the slot that does not hold the newest valid copy, with a
//! sequence number one higher, and is synced before returning; a reader takes the valid copy
//! with the highest sequence number. A torn write damages only the slot being written, whose
//! previous content was already superseded, so the last acknowledged checkpoint survives.

#![deny(clippy::indexing_slicing)]

use std::path::Path;

use ese_core::checksum::crc32;
use ese_core::fs::{File, FileSystem, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};

use crate::bytes::{get_u16, get_u32, get_u64, put};
use crate::header::{LogSignature, VERSION_MAJOR, now_micros};

/// Bytes of one checkpoint copy.
pub(crate) const SLOT_BYTES: usize = 4096;
/// Largest database list the checkpoint can carry, in bytes (ESE reserves about 2 KiB for
/// the attach information).
pub const MAX_DB_LIST_BYTES: usize = 2048;
const MAGIC: &[u8; 8] = b"ESECHK\0\x1a";
/// File type of a checkpoint (ESE's `filetype` 4).
const FILE_TYPE_CHECKPOINT: u32 = 4;
const DB_LIST_OFFSET: usize = 128;

/// The content of the checkpoint file (ESE's `CHECKPOINT_FIXED`, as `esedump checkpoint`
/// shows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The oldest log position recovery must start from (`lgposCheckpoint`).
    pub lgpos: Lgpos,
    /// Signature of the log stream the checkpoint belongs to (`signLog`).
    pub signature: LogSignature,
    /// Write sequence number: each update increments it (picks the newer of the two copies).
    pub sequence: u64,
    /// When this copy was written, microseconds since the Unix epoch.
    pub written_micros: u64,
    /// Opaque database list supplied by the upper layer (ESE's attach info), at most
    /// [`MAX_DB_LIST_BYTES`] bytes.
    pub db_list: Vec<u8>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SLOT_BYTES];
        put(&mut b, 4, MAGIC);
        put(&mut b, 12, &FILE_TYPE_CHECKPOINT.to_le_bytes());
        put(&mut b, 16, &VERSION_MAJOR.to_le_bytes());
        put(&mut b, 20, &(self.db_list.len() as u32).to_le_bytes());
        put(&mut b, 24, &self.sequence.to_le_bytes());
        put(&mut b, 32, &self.signature.to_bytes());
        put(&mut b, 48, &self.lgpos.to_bytes());
        put(&mut b, 56, &self.written_micros.to_le_bytes());
        put(&mut b, DB_LIST_OFFSET, &self.db_list);
        let sum = crc32(b.get(4..).unwrap_or_default());
        put(&mut b, 0, &sum.to_le_bytes());
        b
    }

    /// Decodes one slot; `None` if it is not a valid copy.
    fn decode_slot(b: &[u8]) -> std::result::Result<Checkpoint, ErrorKind> {
        let b = b.get(..SLOT_BYTES).ok_or(ErrorKind::CheckpointCorrupt)?;
        let stored = get_u32(b, 0).ok_or(ErrorKind::CheckpointCorrupt)?;
        if crc32(b.get(4..).unwrap_or_default()) != stored
            || b.get(4..12) != Some(MAGIC.as_slice())
            || get_u32(b, 12) != Some(FILE_TYPE_CHECKPOINT)
        {
            return Err(ErrorKind::CheckpointCorrupt);
        }
        if get_u16(b, 16) != Some(VERSION_MAJOR) {
            return Err(ErrorKind::BadLogVersion);
        }
        let len = get_u32(b, 20).ok_or(ErrorKind::CheckpointCorrupt)? as usize;
        if len > MAX_DB_LIST_BYTES {
            return Err(ErrorKind::CheckpointCorrupt);
        }
        let db_list = b
            .get(DB_LIST_OFFSET..DB_LIST_OFFSET + len)
            .ok_or(ErrorKind::CheckpointCorrupt)?
            .to_vec();
        let mut sig = [0u8; 16];
        sig.copy_from_slice(b.get(32..48).ok_or(ErrorKind::CheckpointCorrupt)?);
        let mut lg = [0u8; 8];
        lg.copy_from_slice(b.get(48..56).ok_or(ErrorKind::CheckpointCorrupt)?);
        Ok(Checkpoint {
            lgpos: Lgpos::from_bytes(lg),
            signature: LogSignature::from_bytes(sig),
            sequence: get_u64(b, 24).unwrap_or(0),
            written_micros: get_u64(b, 56).unwrap_or(0),
            db_list,
        })
    }

    /// Reads the checkpoint file at `path` (for `esedump checkpoint` and recovery).
    ///
    /// # Errors
    /// - `CheckpointFileNotFound`: the file does not exist or is empty.
    /// - `CheckpointCorrupt`: neither copy verifies.
    /// - `BadLogVersion`: the newest readable copy has another format version.
    /// - `DiskIO` when reading fails.
    pub fn read(fs: &dyn FileSystem, path: &Path) -> Result<Checkpoint> {
        let file = match fs.open(path, OpenOptions::read()) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::FileNotFound => {
                return Err(Error::new(ErrorKind::CheckpointFileNotFound).with_path(path));
            }
            Err(e) => return Err(e),
        };
        Checkpoint::read_from(file.as_ref())
    }

    /// Reads the checkpoint from an open file.
    pub(crate) fn read_from(file: &dyn File) -> Result<Checkpoint> {
        let len = file.len()?;
        if len == 0 {
            return Err(Error::new(ErrorKind::CheckpointFileNotFound).with_path(file.path()));
        }
        let mut buf = vec![0u8; 2 * SLOT_BYTES];
        let want = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
        file.read_exact_at(buf.get_mut(..want).unwrap_or_default(), 0)?;
        let a = Checkpoint::decode_slot(buf.get(..SLOT_BYTES).unwrap_or_default());
        let b = Checkpoint::decode_slot(buf.get(SLOT_BYTES..).unwrap_or_default());
        let best = match (a, b) {
            (Ok(a), Ok(b)) => Ok(if b.sequence > a.sequence { b } else { a }),
            (Ok(c), Err(_)) | (Err(_), Ok(c)) => Ok(c),
            (Err(ErrorKind::BadLogVersion), _) | (_, Err(ErrorKind::BadLogVersion)) => {
                Err(ErrorKind::BadLogVersion)
            }
            (Err(k), Err(_)) => Err(k),
        };
        best.map_err(|k| {
            Error::new(k)
                .with_path(file.path())
                .with_message("no valid checkpoint copy")
        })
    }

    /// Writes `self` with sequence `self.sequence` into its slot (`sequence % 2`) and syncs.
    pub(crate) fn write_to(&self, file: &dyn File) -> Result<()> {
        let slot = (self.sequence % 2) * SLOT_BYTES as u64;
        file.write_all_at(&self.encode(), slot)?;
        file.sync_data()
    }

    /// A new checkpoint following `prev` (or the first one).
    pub(crate) fn next(
        prev: Option<&Checkpoint>,
        signature: LogSignature,
        lgpos: Lgpos,
        db_list: &[u8],
    ) -> Checkpoint {
        Checkpoint {
            lgpos,
            signature,
            sequence: prev.map_or(1, |p| p.sequence + 1),
            written_micros: now_micros(),
            db_list: db_list.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ese_core::fs::OsFs;

    #[test]
    fn newest_valid_copy_wins_and_torn_copy_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs::new();
        let path = dir.path().join("edb.chk");
        let f = fs.open(&path, OpenOptions::create()).unwrap();
        let sig = LogSignature::generate();
        let c1 = Checkpoint::next(None, sig, Lgpos::new(1, 8, 0), b"db1");
        c1.write_to(f.as_ref()).unwrap();
        assert_eq!(Checkpoint::read(&fs, &path).unwrap(), c1);
        let c2 = Checkpoint::next(Some(&c1), sig, Lgpos::new(2, 9, 4), b"db1,db2");
        c2.write_to(f.as_ref()).unwrap();
        assert_eq!(Checkpoint::read(&fs, &path).unwrap(), c2);
        // Tear the newest copy (sequence 2 lives in slot 0): the previous one is returned.
        f.write_all_at(&[0xFF; 100], 200).unwrap();
        assert_eq!(Checkpoint::read(&fs, &path).unwrap(), c1);
        f.write_all_at(&[0xFF; 100], 4096 + 200).unwrap();
        assert_eq!(
            Checkpoint::read(&fs, &path).unwrap_err().kind(),
            ErrorKind::CheckpointCorrupt
        );
        assert_eq!(
            Checkpoint::read(&fs, &dir.path().join("none.chk"))
                .unwrap_err()
                .kind(),
            ErrorKind::CheckpointFileNotFound
        );
    }
}
