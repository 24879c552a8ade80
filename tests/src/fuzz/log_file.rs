//! Fuzz target `log_file`: bytes as log content. The first byte picks the mode (modulo 3):
//!
//! - 0: the rest is the current generation file `edb.log` of the reference crash image;
//! - 1: the rest replaces the frame area (from byte 4096) of that file, and every frame whose
//!   header describes a frame that fits gets a valid checksum, so record payloads reach the
//!   layers that parse them (recovery's envelope, page redo, transaction undo);
//! - 2: the rest is a list of record payloads (each a u16 length, little-endian, then the
//!   bytes) written through the log writer into a new stream, with a checkpoint that names
//!   the reference database (as it was when the power failed) at the first record.
//!
//! Then the log is read record by record (as recovery and `esedump log` read it), and an
//! instance recovers from it, checks the database and reads every table. Every step must
//! return results or an error.

use std::path::Path;
use std::sync::Arc;

use ese_core::Lgpos;
use ese_core::checksum::crc32_seeded;
use ese_core::fs::{CrashModel, FileSystem, SimFs};

use super::reference::{CURRENT_LOG, REF_DB, REF_LOG_KIB, read_log, recover_and_read, reference};
use super::{LOG_DIR, PAGE_SIZE, read_file, write_file};

const SECTOR: usize = 512;
const FRAME_HEADER: usize = 12;
const LOG_HEADER: usize = 4096;

/// Gives every frame of a generation image whose header describes a frame that fits a valid
/// checksum, walking the frames from the start of the frame area (`docs/format-log.md`).
pub fn reseal_frames(file: &mut [u8]) {
    let generation = file
        .get(20..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    let mut off = LOG_HEADER;
    loop {
        // A frame header never starts in the last 11 bytes of a sector.
        let rem = SECTOR - off % SECTOR;
        if rem < FRAME_HEADER {
            off += rem;
        }
        let Some(hdr) = file.get(off..off + FRAME_HEADER) else {
            return;
        };
        let len = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let kind = hdr[8];
        let end = off + FRAME_HEADER + len;
        if !(kind == 1 || kind == 2) || end > file.len() || len == 0 && kind == 1 {
            return;
        }
        let lgpos = Lgpos::new(generation, (off / SECTOR) as u16, (off % SECTOR) as u16);
        let crc = crc32_seeded(
            lgpos.as_u64(),
            &[
                file.get(off + 4..off + FRAME_HEADER).unwrap_or_default(),
                file.get(off + FRAME_HEADER..end).unwrap_or_default(),
            ],
        );
        if let Some(c) = file.get_mut(off..off + 4) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        off = end;
    }
}

/// Splits a mode-2 input into payloads.
fn payloads(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, rest)) = data.split_at_checked(2) {
        let n = usize::from(u16::from_le_bytes([len[0], len[1]])).min(rest.len());
        let (p, rest) = rest.split_at(n);
        out.push(p);
        data = rest;
    }
    out
}

/// Encodes payloads as a mode-2 input (for seeds).
pub fn encode_payloads<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![2u8];
    for p in payloads {
        let n = p.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(p.get(..n).unwrap_or_default());
    }
    out
}

/// The disk an input describes (see the module docs).
///
/// # Errors
/// The file system's or the log writer's errors while building it.
pub fn disk_for(data: &[u8]) -> ese::Result<SimFs> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(reference().crashed.crash(CrashModel::DropAll, 0));
    };
    let r = reference();
    match mode % 3 {
        0 => {
            let fs = r.crashed.crash(CrashModel::DropAll, 0);
            write_file(&fs, CURRENT_LOG, rest)?;
            Ok(fs)
        }
        1 => {
            let fs = r.crashed.crash(CrashModel::DropAll, 0);
            let mut file = read_file(&fs, CURRENT_LOG)?;
            let n = rest.len().min(file.len().saturating_sub(LOG_HEADER));
            if let (Some(dst), Some(src)) =
                (file.get_mut(LOG_HEADER..LOG_HEADER + n), rest.get(..n))
            {
                dst.copy_from_slice(src);
            }
            reseal_frames(&mut file);
            write_file(&fs, CURRENT_LOG, &file)?;
            Ok(fs)
        }
        _ => {
            let fs = SimFs::new();
            write_file(&fs, REF_DB, &read_file(&r.crashed, REF_DB)?)?;
            let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
            let cfg = ese_log::LogConfig::new(LOG_DIR)
                .file_size_kib(REF_LOG_KIB)
                .page_size(PAGE_SIZE)
                .lazy_flush_ms(0);
            let log = ese_log::Log::open(fsd, cfg)?;
            let mut first = None;
            for p in payloads(rest) {
                match log.append(p) {
                    Ok(l) => {
                        first.get_or_insert(l);
                    }
                    // A payload the writer refuses (too long) ends the list.
                    Err(_) => break,
                }
            }
            log.flush_all()?;
            // The checkpoint's database list: count u16, then dbid u32, path length u16,
            // path (crates/ese/src/engine.rs).
            let mut list = 1u16.to_le_bytes().to_vec();
            list.extend_from_slice(&1u32.to_le_bytes());
            list.extend_from_slice(&(REF_DB.len() as u16).to_le_bytes());
            list.extend_from_slice(REF_DB.as_bytes());
            let at = first.unwrap_or_else(|| log.last_lgpos());
            log.write_checkpoint(at, &list)?;
            drop(log);
            Ok(fs)
        }
    }
}

/// Runs one input under a deadline of 120 s (the cargo-fuzz entry point).
pub fn run_log_file(data: &[u8]) {
    let data = data.to_vec();
    let _ = super::with_deadline("log_file", 120, move || examine(&data));
}

/// Reads and recovers the log an input describes. Returns what the reader and recovery made
/// of it.
pub fn examine(data: &[u8]) -> (ese::Result<usize>, ese::Result<()>) {
    let fs = match disk_for(data) {
        Ok(fs) => fs,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let read = read_log(&fs);
    let _ = fs.list(Path::new(LOG_DIR));
    let recovered = recover_and_read(&fs).map(|_| ());
    (read, recovered)
}
