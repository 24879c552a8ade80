//! Fuzz target `checkpoint_file`: bytes as the checkpoint `edb.chk` of the reference crash
//! image. The first byte picks the mode (modulo 2):
//!
//! - 0: the rest is the whole file;
//! - 1: the rest overwrites the reference checkpoint from its start, and both 4 KiB slots get
//!   valid checksums, so the fields behind the checksum (sequence, LGPOS, database list) are
//!   parsed and used.
//!
//! Then the checkpoint is read (as `esedump checkpoint` reads it) and an instance recovers
//! from it, checks the database and reads every table. Every step must return results or an
//! error.

use ese_core::checksum::crc32;
use ese_core::fs::{CrashModel, SimFs};

use super::reference::{CHECKPOINT, read_checkpoint, recover_and_read, reference};
use super::{read_file, write_file};

/// Bytes of one checkpoint slot.
const SLOT: usize = 4096;

/// Gives both slots of a checkpoint image valid checksums (`docs/format-log.md`).
pub fn reseal_slots(file: &mut [u8]) {
    for s in 0..2 {
        let Some(slot) = file.get_mut(s * SLOT..(s + 1) * SLOT) else {
            return;
        };
        let crc = crc32(slot.get(4..).unwrap_or_default());
        if let Some(c) = slot.get_mut(0..4) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// The disk an input describes (see the module docs).
///
/// # Errors
/// The file system's errors while building it.
pub fn disk_for(data: &[u8]) -> ese::Result<SimFs> {
    let fs = reference().crashed.crash(CrashModel::DropAll, 0);
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(fs);
    };
    if mode % 2 == 0 {
        write_file(&fs, CHECKPOINT, rest)?;
    } else {
        let mut file = read_file(&fs, CHECKPOINT)?;
        let n = rest.len().min(file.len());
        if let (Some(dst), Some(src)) = (file.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        reseal_slots(&mut file);
        write_file(&fs, CHECKPOINT, &file)?;
    }
    Ok(fs)
}

/// Runs one input under a deadline of 120 s (the cargo-fuzz entry point).
pub fn run_checkpoint_file(data: &[u8]) {
    let data = data.to_vec();
    let _ = super::with_deadline("checkpoint_file", 120, move || examine(&data));
}

/// Reads the checkpoint an input describes and recovers from it. Returns what the reader and
/// recovery made of it.
pub fn examine(data: &[u8]) -> (ese::Result<ese_log::Checkpoint>, ese::Result<()>) {
    let fs = match disk_for(data) {
        Ok(fs) => fs,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let read = read_checkpoint(&fs);
    let recovered = recover_and_read(&fs).map(|_| ());
    (read, recovered)
}
