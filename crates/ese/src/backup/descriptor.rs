//! The backup descriptor (`backup.dsc`): what a backup set holds, written last so that a
//! backup that did not finish is never taken for a valid one. The byte layout is in
//! `docs/format-backup.md`; every integer is little-endian with an explicit width.

#![deny(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use ese_core::checksum::{crc32, crc32_seeded};
use ese_core::fs::{FileSystem, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};

/// File name of the descriptor inside a backup directory.
pub(crate) const DESCRIPTOR_NAME: &str = "backup.dsc";
/// Name the descriptor is written under before the rename that makes the backup valid.
pub(crate) const DESCRIPTOR_TEMP_NAME: &str = "backup.dsc.tmp";
const MAGIC: &[u8; 8] = b"ESEBKUP\x1a";
const VERSION_MAJOR: u16 = 1;
const VERSION_MINOR: u16 = 0;
/// Bytes of the fixed part before the entries.
const FIXED_BYTES: usize = 128;
/// Largest descriptor accepted, in bytes (6 databases and tens of thousands of generations fit).
const MAX_DESCRIPTOR_BYTES: u64 = 4 << 20;
/// Bytes of one checksum block of a copied file (see [`Digest`]): every file of a backup set
/// is a multiple of it (page sizes and log file sizes are multiples of 1 KiB).
const DIGEST_BLOCK: usize = 1024;

/// Whether a backup copied the databases or only log generations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupKind {
    /// Every attached database, page by page, and the log generations from the backup's start
    /// checkpoint to its end position (`JET_bitBackupIncremental` not set).
    Full,
    /// Only the log generations written since the previous full or incremental backup
    /// (`JET_bitBackupIncremental`).
    Incremental,
}

impl BackupKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            BackupKind::Full => 1,
            BackupKind::Incremental => 2,
        }
    }

    fn from_code(c: u8) -> Option<BackupKind> {
        match c {
            1 => Some(BackupKind::Full),
            2 => Some(BackupKind::Incremental),
            _ => None,
        }
    }
}

/// A database of a backup set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DbEntry {
    pub(crate) dbid: u32,
    /// The database signature (`signDb`).
    pub(crate) signature: [u8; 32],
    /// Where the database was attached when it was backed up.
    pub(crate) path: PathBuf,
    /// The copy's file name in the backup directory; empty in an incremental backup.
    pub(crate) file: String,
    pub(crate) size: u64,
    pub(crate) checksum: u32,
}

/// A log generation of a backup set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub(crate) generation: u32,
    pub(crate) file: String,
    pub(crate) size: u64,
    pub(crate) checksum: u32,
}

/// The content of `backup.dsc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) kind: BackupKind,
    /// Random id of this backup; also inside the backup's mark record at `end`.
    pub(crate) id: [u8; 16],
    pub(crate) log_signature: [u8; 16],
    pub(crate) page_size: u32,
    pub(crate) log_file_size_kib: u32,
    /// The base name of the log files in the backup directory.
    pub(crate) base_name: String,
    /// Where replay starts: the checkpoint when a full backup began; the start of `gen_low`
    /// for an incremental one.
    pub(crate) start: Lgpos,
    /// The position of the backup's mark record: replay of this set alone ends there.
    pub(crate) end: Lgpos,
    /// Byte offset in generation `gen_high` just past the mark record; the copy of that
    /// generation holds zeros from there on.
    pub(crate) end_offset: u32,
    pub(crate) gen_low: u32,
    pub(crate) gen_high: u32,
    /// When the backup ended, µs since the Unix epoch.
    pub(crate) time_micros: u64,
    pub(crate) dbs: Vec<DbEntry>,
    pub(crate) logs: Vec<LogEntry>,
}

/// The checksum of a copied file, independent of how the file was read: CRC-32 chained over
/// 1 KiB blocks (`c = crc32_seeded(c, block)` from `c = 0`), so it can be computed while the
/// bytes stream through reads of any size.
#[derive(Clone, Debug, Default)]
pub(crate) struct Digest {
    crc: u32,
    pending: Vec<u8>,
    len: u64,
}

impl Digest {
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (DIGEST_BLOCK - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() == DIGEST_BLOCK {
                self.crc = crc32_seeded(u64::from(self.crc), &[&self.pending]);
                self.pending.clear();
            }
        }
    }

    /// The checksum and the number of bytes digested.
    pub(crate) fn finish(&self) -> (u32, u64) {
        if self.pending.is_empty() {
            (self.crc, self.len)
        } else {
            (
                crc32_seeded(u64::from(self.crc), &[&self.pending]),
                self.len,
            )
        }
    }
}

fn invalid(dir: &Path, what: impl Into<String>) -> Error {
    Error::new(ErrorKind::RestoreOfNonBackupDatabase)
        .with_path(dir.join(DESCRIPTOR_NAME))
        .with_message(what.into())
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| Error::new(ErrorKind::InvalidPath).with_message("a name over 65535 bytes"))?;
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A checked reader over the descriptor's bytes.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

impl Descriptor {
    /// Encodes the descriptor with its checksum.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut b = Vec::with_capacity(FIXED_BYTES + 64 * (self.dbs.len() + self.logs.len()));
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        b.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        b.extend_from_slice(&[0; 4]); // total length, filled below
        b.push(self.kind.code());
        b.extend_from_slice(&[0; 3]);
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&self.log_signature);
        b.extend_from_slice(&self.page_size.to_le_bytes());
        b.extend_from_slice(&self.log_file_size_kib.to_le_bytes());
        b.extend_from_slice(&self.start.to_bytes());
        b.extend_from_slice(&self.end.to_bytes());
        b.extend_from_slice(&self.end_offset.to_le_bytes());
        b.extend_from_slice(&self.gen_low.to_le_bytes());
        b.extend_from_slice(&self.gen_high.to_le_bytes());
        b.extend_from_slice(&self.time_micros.to_le_bytes());
        b.extend_from_slice(&(self.dbs.len() as u16).to_le_bytes());
        b.extend_from_slice(&(self.logs.len() as u32).to_le_bytes());
        let mut base = [0u8; 4];
        for (d, s) in base.iter_mut().zip(self.base_name.bytes()) {
            *d = s;
        }
        b.extend_from_slice(&base);
        b.resize(FIXED_BYTES, 0);
        for d in &self.dbs {
            b.extend_from_slice(&d.dbid.to_le_bytes());
            b.extend_from_slice(&d.signature);
            b.extend_from_slice(&d.size.to_le_bytes());
            b.extend_from_slice(&d.checksum.to_le_bytes());
            let p = d.path.to_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidPath).with_message("database paths must be UTF-8")
            })?;
            put_str(&mut b, p)?;
            put_str(&mut b, &d.file)?;
        }
        for l in &self.logs {
            b.extend_from_slice(&l.generation.to_le_bytes());
            b.extend_from_slice(&l.size.to_le_bytes());
            b.extend_from_slice(&l.checksum.to_le_bytes());
            put_str(&mut b, &l.file)?;
        }
        let total = b.len() as u32;
        if let Some(t) = b.get_mut(16..20) {
            t.copy_from_slice(&total.to_le_bytes());
        }
        let crc = crc32(b.get(4..).unwrap_or_default());
        if let Some(c) = b.get_mut(0..4) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        Ok(b)
    }

    /// Decodes and verifies a descriptor read from `dir`.
    ///
    /// # Errors
    /// `RestoreOfNonBackupDatabase` (-615) when the bytes are not a complete, intact
    /// descriptor (checksum, magic, version, lengths, names).
    pub(crate) fn decode(b: &[u8], dir: &Path) -> Result<Descriptor> {
        let bad = |what: &str| invalid(dir, format!("the backup descriptor is damaged: {what}"));
        let mut r = Reader { b, pos: 0 };
        let stored = r.u32().ok_or_else(|| bad("too short"))?;
        if crc32(b.get(4..).unwrap_or_default()) != stored {
            return Err(bad("checksum mismatch"));
        }
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(bad("not a backup descriptor (magic)"));
        }
        if r.u16() != Some(VERSION_MAJOR) {
            return Err(Error::new(ErrorKind::BadLogVersion)
                .with_path(dir.join(DESCRIPTOR_NAME))
                .with_message("backup descriptor of another format version"));
        }
        let _minor = r.u16();
        if r.u32().map(|n| n as usize) != Some(b.len()) {
            return Err(bad("length"));
        }
        let kind = r
            .take(4)
            .and_then(|k| k.first().copied())
            .and_then(BackupKind::from_code)
            .ok_or_else(|| bad("kind"))?;
        let fixed = (|| {
            Some((
                r.arr::<16>()?,
                r.arr::<16>()?,
                r.u32()?,
                r.u32()?,
                Lgpos::from_bytes(r.arr::<8>()?),
                Lgpos::from_bytes(r.arr::<8>()?),
                r.u32()?,
                r.u32()?,
                r.u32()?,
                r.u64()?,
                r.u16()?,
                r.u32()?,
                r.arr::<4>()?,
            ))
        })()
        .ok_or_else(|| bad("truncated header"))?;
        let (id, log_signature, page_size, log_kib, start, end, end_offset, gen_low, gen_high) = (
            fixed.0, fixed.1, fixed.2, fixed.3, fixed.4, fixed.5, fixed.6, fixed.7, fixed.8,
        );
        let (time_micros, ndbs, nlogs, base) = (fixed.9, fixed.10, fixed.11, fixed.12);
        let base_name = std::str::from_utf8(base.get(..3).unwrap_or_default())
            .map_err(|_| bad("base name"))?
            .to_owned();
        r.pos = FIXED_BYTES;
        let mut dbs = Vec::new();
        for _ in 0..ndbs {
            let e = (|| {
                Some(DbEntry {
                    dbid: r.u32()?,
                    signature: r.arr::<32>()?,
                    size: r.u64()?,
                    checksum: r.u32()?,
                    path: PathBuf::from(r.string()?),
                    file: r.string()?,
                })
            })()
            .ok_or_else(|| bad("database entry"))?;
            dbs.push(e);
        }
        let mut logs = Vec::new();
        for _ in 0..nlogs {
            let e = (|| {
                Some(LogEntry {
                    generation: r.u32()?,
                    size: r.u64()?,
                    checksum: r.u32()?,
                    file: r.string()?,
                })
            })()
            .ok_or_else(|| bad("log entry"))?;
            logs.push(e);
        }
        if r.pos != b.len() {
            return Err(bad("trailing bytes"));
        }
        let names_ok = dbs
            .iter()
            .map(|d| d.file.as_str())
            .chain(logs.iter().map(|l| l.file.as_str()))
            .all(|f| !f.contains('/') && !f.contains('\\') && f != "." && f != "..");
        let gens_ok = gen_low >= 1
            && gen_low <= gen_high
            && logs.len() as u64 == u64::from(gen_high - gen_low) + 1
            && logs
                .iter()
                .zip(gen_low..)
                .all(|(l, g)| l.generation == g && !l.file.is_empty());
        let dbs_ok = dbs.iter().all(|d| {
            (1..=crate::engine::MAX_DATABASES).contains(&d.dbid)
                && (kind == BackupKind::Incremental || !d.file.is_empty())
        });
        if !names_ok || !gens_ok || !dbs_ok || end.generation != gen_high || start > end {
            return Err(bad("inconsistent entries"));
        }
        Ok(Descriptor {
            kind,
            id,
            log_signature,
            page_size,
            log_file_size_kib: log_kib,
            base_name,
            start,
            end,
            end_offset,
            gen_low,
            gen_high,
            time_micros,
            dbs,
            logs,
        })
    }

    /// Reads and verifies `dir/backup.dsc`.
    ///
    /// # Errors
    /// `RestoreOfNonBackupDatabase` (-615) when the directory holds no descriptor (a backup
    /// that did not finish) or a damaged one; `DiskIO` when reading fails.
    pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Descriptor> {
        let path = dir.join(DESCRIPTOR_NAME);
        let f = match fs.open(&path, OpenOptions::read()) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::FileNotFound => {
                return Err(invalid(
                    dir,
                    "no backup descriptor: not a backup, or a backup that did not finish",
                ));
            }
            Err(e) => return Err(e),
        };
        let len = f.len()?;
        if len > MAX_DESCRIPTOR_BYTES {
            return Err(invalid(dir, "the backup descriptor is too large"));
        }
        let mut b = vec![0u8; usize::try_from(len).unwrap_or(0)];
        f.read_exact_at(&mut b, 0)?;
        Descriptor::decode(&b, dir)
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

    fn sample() -> Descriptor {
        Descriptor {
            kind: BackupKind::Full,
            id: [3; 16],
            log_signature: [4; 16],
            page_size: 8192,
            log_file_size_kib: 128,
            base_name: "edb".into(),
            start: Lgpos::new(2, 8, 0),
            end: Lgpos::new(4, 30, 12),
            end_offset: 30 * 512 + 12 + 40,
            gen_low: 2,
            gen_high: 4,
            time_micros: 123,
            dbs: vec![DbEntry {
                dbid: 1,
                signature: [9; 32],
                path: PathBuf::from("/data/a.edb"),
                file: "a.edb".into(),
                size: 8192 * 40,
                checksum: 77,
            }],
            logs: (2..=4)
                .map(|g| LogEntry {
                    generation: g,
                    file: format!("edb{g:08X}.log"),
                    size: 131_072,
                    checksum: g,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_every_flipped_byte_is_detected() {
        let d = sample();
        let b = d.encode().unwrap();
        assert_eq!(Descriptor::decode(&b, Path::new("/b")).unwrap(), d);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(Descriptor::decode(&c, Path::new("/b")).is_err(), "byte {i}");
        }
        for n in 0..b.len() {
            let e = Descriptor::decode(&b[..n], Path::new("/b")).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::RestoreOfNonBackupDatabase,
                "prefix {n}"
            );
        }
    }

    #[test]
    fn digest_does_not_depend_on_read_sizes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Digest::default();
        whole.update(&data);
        let mut pieces = Digest::default();
        for chunk in data.chunks(333) {
            pieces.update(chunk);
        }
        assert_eq!(whole.finish(), pieces.finish());
        let mut other = data.clone();
        other[5000] ^= 1;
        let mut d = Digest::default();
        d.update(&other);
        assert_ne!(d.finish(), whole.finish());
    }
}
