//! The generation file header (ESE's `LGFILEHDR`) and the log signature (`signLog`).
//!
//! Layout (docs/format-log.md has the full table): a 4,096-byte block at offset 0 of every
//! generation file, little-endian, CRC-32 of bytes 4..4096 in its first 4 bytes.

#![deny(clippy::indexing_slicing)]

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ese_core::checksum::crc32;
use ese_core::{Error, ErrorKind, Result};

use crate::bytes::{get_u16, get_u32, get_u64, put};
use crate::config::SECTOR_SIZE;

/// Bytes of the header block at the start of every generation file (ESE: 4,096).
pub(crate) const HEADER_BYTES: u32 = 4096;
/// Magic at offset 4 of a generation file.
const MAGIC: &[u8; 8] = b"ESELOG\0\x1a";
/// File type of a log file (ESE's `filetype` 3 = log).
pub(crate) const FILE_TYPE_LOG: u32 = 3;
/// Format version written; readers accept the same major version.
pub(crate) const VERSION_MAJOR: u16 = 1;
const VERSION_MINOR: u16 = 0;

/// Header flag: the stream was in circular-logging mode when this generation was created.
pub(crate) const FLAG_CIRCULAR: u32 = 1;

/// Microseconds since the Unix epoch, the unit of every time stamp in the log.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The identity of a log stream (ESE's `signLog`): creation time and a random number, chosen
/// when the stream is created and recorded in every generation header and in the checkpoint.
/// Database headers record it to say which stream they belong to.
///
/// On disk: 16 bytes, `created_micros: u64` then `random: u64`, little-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogSignature {
    /// Creation time of the stream, microseconds since the Unix epoch.
    pub created_micros: u64,
    /// A random number drawn at creation.
    pub random: u64,
}

impl LogSignature {
    /// Size of the on-disk encoding in bytes.
    pub const ENCODED_LEN: usize = 16;

    /// A fresh signature: the current time and a random number.
    pub fn generate() -> LogSignature {
        LogSignature {
            created_micros: now_micros(),
            random: fastrand::u64(..),
        }
    }

    /// The on-disk encoding (16 bytes).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        put(&mut b, 0, &self.created_micros.to_le_bytes());
        put(&mut b, 8, &self.random.to_le_bytes());
        b
    }

    /// Decodes [`LogSignature::to_bytes`]'s encoding.
    pub fn from_bytes(b: [u8; 16]) -> LogSignature {
        LogSignature {
            created_micros: get_u64(&b, 0).unwrap_or(0),
            random: get_u64(&b, 8).unwrap_or(0),
        }
    }
}

impl fmt::Debug for LogSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogSignature({self})")
    }
}

impl fmt::Display for LogSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}-{:016X}", self.created_micros, self.random)
    }
}

/// The decoded header of one generation file (ESE's `LGFILEHDR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogFileHeader {
    /// Generation number (`lGeneration`), 1 for the first generation of a stream.
    pub generation: u32,
    /// Bytes per sector (`cbSec`), always 512.
    pub sector_size: u16,
    /// Sectors occupied by the header (`csecHeader`), always 8.
    pub header_sectors: u16,
    /// Sectors in the whole file including the header (`csecLGFile`).
    pub file_sectors: u32,
    /// Page size of the databases served, bytes (`cbPageSize`).
    pub page_size: u32,
    /// Flags: bit 0 = circular logging was on at creation.
    pub flags: u32,
    /// Creation time of this generation, microseconds since the Unix epoch (`tmCreate`).
    pub created_micros: u64,
    /// Creation time of the previous generation (`tmPrevGen`), 0 for the first; generations
    /// chain through it.
    pub prev_created_micros: u64,
    /// The stream's signature (`signLog`).
    pub signature: LogSignature,
    /// Byte offset in the previous generation's file just past its last record: the reader
    /// stops there (anything after it is an unacknowledged crash tail). 0 for the first
    /// generation.
    pub prev_end_offset: u32,
    /// The checkpoint at the time this generation was created (`lgposCheckpoint`), as
    /// [`ese_core::Lgpos::as_u64`].
    pub checkpoint_at_creation: u64,
}

impl LogFileHeader {
    /// Encodes the header as its 4,096-byte block with the checksum filled in.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_BYTES as usize];
        put(&mut b, 4, MAGIC);
        put(&mut b, 12, &FILE_TYPE_LOG.to_le_bytes());
        put(&mut b, 16, &VERSION_MAJOR.to_le_bytes());
        put(&mut b, 18, &VERSION_MINOR.to_le_bytes());
        put(&mut b, 20, &self.generation.to_le_bytes());
        put(&mut b, 24, &self.sector_size.to_le_bytes());
        put(&mut b, 26, &self.header_sectors.to_le_bytes());
        put(&mut b, 28, &self.file_sectors.to_le_bytes());
        put(&mut b, 32, &self.page_size.to_le_bytes());
        put(&mut b, 36, &self.flags.to_le_bytes());
        put(&mut b, 40, &self.created_micros.to_le_bytes());
        put(&mut b, 48, &self.prev_created_micros.to_le_bytes());
        put(&mut b, 56, &self.signature.to_bytes());
        put(&mut b, 72, &self.prev_end_offset.to_le_bytes());
        put(&mut b, 80, &self.checkpoint_at_creation.to_le_bytes());
        let sum = crc32(b.get(4..).unwrap_or_default());
        put(&mut b, 0, &sum.to_le_bytes());
        b
    }

    /// Decodes and verifies a header block.
    ///
    /// # Errors
    /// - `LogFileCorrupt`: the block is short, its checksum fails, or the magic, file type,
    ///   sector size or geometry is wrong.
    /// - `BadLogVersion`: a different major format version.
    pub(crate) fn decode(b: &[u8]) -> Result<LogFileHeader> {
        let corrupt = |m: &str| Error::new(ErrorKind::LogFileCorrupt).with_message(m.to_owned());
        let block = b
            .get(..HEADER_BYTES as usize)
            .ok_or_else(|| corrupt("the log file is shorter than its header"))?;
        let stored = get_u32(block, 0).ok_or_else(|| corrupt("short header"))?;
        if crc32(block.get(4..).unwrap_or_default()) != stored {
            return Err(corrupt("log file header checksum mismatch"));
        }
        if block.get(4..12) != Some(MAGIC.as_slice()) || get_u32(block, 12) != Some(FILE_TYPE_LOG) {
            return Err(corrupt("not a log file (bad magic or file type)"));
        }
        let major = get_u16(block, 16).unwrap_or(0);
        if major != VERSION_MAJOR {
            return Err(Error::new(ErrorKind::BadLogVersion).with_message(format!(
                "log format version {major} (this engine reads {VERSION_MAJOR})"
            )));
        }
        let f16 = |o| get_u16(block, o).unwrap_or(0);
        let f32 = |o| get_u32(block, o).unwrap_or(0);
        let f64 = |o| get_u64(block, o).unwrap_or(0);
        let mut sig = [0u8; 16];
        if let Some(s) = block.get(56..72) {
            sig.copy_from_slice(s);
        }
        let h = LogFileHeader {
            generation: f32(20),
            sector_size: f16(24),
            header_sectors: f16(26),
            file_sectors: f32(28),
            page_size: f32(32),
            flags: f32(36),
            created_micros: f64(40),
            prev_created_micros: f64(48),
            signature: LogSignature::from_bytes(sig),
            prev_end_offset: f32(72),
            checkpoint_at_creation: f64(80),
        };
        let max_sectors = crate::config::MAX_FILE_SIZE_KIB * 2;
        let min_sectors = crate::config::MIN_FILE_SIZE_KIB * 2;
        if u32::from(h.sector_size) != SECTOR_SIZE
            || u32::from(h.header_sectors) * SECTOR_SIZE != HEADER_BYTES
            || !(min_sectors..=max_sectors).contains(&h.file_sectors)
            || h.generation == 0
        {
            return Err(corrupt("log file header has an impossible geometry"));
        }
        Ok(h)
    }

    /// Reads and verifies the header of the generation file at `path` (for `esedump log`).
    ///
    /// # Errors
    /// - `FileNotFound`: no such file.
    /// - `LogFileCorrupt`: the file is shorter than a header or the header does not verify.
    /// - `BadLogVersion`: another format version.
    /// - `LogFileSizeMismatch`: the file's size differs from the size its header records.
    /// - `DiskIO` when reading fails.
    pub fn read(
        fs: &dyn ese_core::fs::FileSystem,
        path: &std::path::Path,
    ) -> Result<LogFileHeader> {
        crate::reader::open_generation(fs, path, ErrorKind::FileNotFound).map(|(_, h)| h)
    }

    /// Size of the whole file in bytes.
    pub fn file_bytes(&self) -> u64 {
        u64::from(self.file_sectors) * u64::from(SECTOR_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LogFileHeader {
        LogFileHeader {
            generation: 7,
            sector_size: 512,
            header_sectors: 8,
            file_sectors: 128,
            page_size: 8192,
            flags: FLAG_CIRCULAR,
            created_micros: 5,
            prev_created_micros: 4,
            signature: LogSignature {
                created_micros: 1,
                random: 2,
            },
            prev_end_offset: 9000,
            checkpoint_at_creation: 3,
        }
    }

    #[test]
    fn round_trip_and_checksum() {
        let h = sample();
        let b = h.encode();
        assert_eq!(LogFileHeader::decode(&b).unwrap(), h);
        for i in (0..b.len()).step_by(7) {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert_eq!(
                LogFileHeader::decode(&c).unwrap_err().kind(),
                ErrorKind::LogFileCorrupt
            );
        }
        assert!(LogFileHeader::decode(&b[..100]).is_err());
    }

    #[test]
    fn other_version_is_bad_log_version() {
        let mut b = sample().encode();
        b[16] = 2;
        let sum = crc32(&b[4..]);
        b[0..4].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            LogFileHeader::decode(&b).unwrap_err().kind(),
            ErrorKind::BadLogVersion
        );
    }
}
