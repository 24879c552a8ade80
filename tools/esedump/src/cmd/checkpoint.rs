//! `esedump checkpoint CHK` (eseutil `/mk`): the checkpoint file.

use std::path::{Path, PathBuf};

use ese_core::Result;
use ese_log::{Checkpoint, LogFileHeader};
use serde::Serialize;

use crate::output::{JsonLgpos, hex, iso_time, print_fields, print_json, time_text};
use crate::rofs::ReadOnlyFs;

/// Dump the checkpoint file (eseutil /mk).
///
/// Shows the checkpoint LGPOS (where recovery would start), the log signature, the write
/// sequence, when it was written and the size of the database list. CHK may be the log
/// directory, in which case `<base>.chk` in it is read.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  esedump checkpoint logs/edb.chk\n  esedump checkpoint logs/ --json"
)]
pub(crate) struct Args {
    /// The checkpoint file, or the log directory holding it.
    chk: PathBuf,
    /// Base name of the log stream, used when CHK is a directory.
    #[arg(long, default_value = "edb")]
    base: String,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct CheckpointJson {
    path: String,
    lgpos: JsonLgpos,
    signature: String,
    sequence: u64,
    written_micros: u64,
    written: Option<String>,
    db_list_len: usize,
    db_list: String,
    /// Whether the signature equals the current log's (`<base>.log` beside the file), or null
    /// when there is no readable current log there.
    matches_current_log: Option<bool>,
}

fn current_log_beside(chk: &Path, base: &str) -> Option<PathBuf> {
    let dir = ese_core::fs::parent_dir(chk);
    let stem = chk.file_stem()?.to_str()?;
    let base = if chk.extension().is_some_and(|e| e == "chk") {
        stem
    } else {
        base
    };
    Some(dir.join(format!("{base}.log")))
}

/// Runs `esedump checkpoint`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let path = if args.chk.is_dir() {
        args.chk.join(format!("{}.chk", args.base))
    } else {
        args.chk.clone()
    };
    let c = Checkpoint::read(&ReadOnlyFs, &path)?;
    let matches = current_log_beside(&path, &args.base)
        .and_then(|log| LogFileHeader::read(&ReadOnlyFs, &log).ok())
        .map(|h| h.signature == c.signature);
    let j = CheckpointJson {
        path: path.display().to_string(),
        lgpos: c.lgpos.into(),
        signature: c.signature.to_string(),
        sequence: c.sequence,
        written_micros: c.written_micros,
        written: iso_time(c.written_micros),
        db_list_len: c.db_list.len(),
        db_list: hex(&c.db_list),
        matches_current_log: matches,
    };
    if args.json {
        return print_json(&j);
    }
    print_fields(&[
        ("Checkpoint file", j.path.clone()),
        ("Checkpoint LGPOS", c.lgpos.to_string()),
        ("Log signature", j.signature.clone()),
        ("Sequence", j.sequence.to_string()),
        ("Written", time_text(c.written_micros)),
        ("DB list size", format!("{} bytes", j.db_list_len)),
        (
            "Current log",
            match matches {
                Some(true) => "same stream".to_owned(),
                Some(false) => "ANOTHER stream (signature differs)".to_owned(),
                None => "not found beside the checkpoint".to_owned(),
            },
        ),
    ]);
    Ok(())
}
