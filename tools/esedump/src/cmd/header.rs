//! `esedump header DB` (eseutil `/mh`): the database header in force and the state of both
//! header copies.

use std::path::PathBuf;

use ese_core::Result;
use serde::Serialize;

use crate::dbfile::{DbFile, Header, state_name};
use crate::output::{JsonError, JsonLgpos, hex, print_fields, print_json};

/// Dump the database header (eseutil /mh).
///
/// Shows the format version, page size, state (JustCreated, DirtyShutdown: recovery needed,
/// CleanShutdown), signatures, log positions, dbtime and last objid, and which of the two
/// header copies is in force.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  esedump header data.edb\n  esedump header data.edb --json")]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SlotJson {
    slot: u32,
    offset: u64,
    valid: bool,
    sequence: Option<u64>,
    error: Option<JsonError>,
}

#[derive(Serialize)]
struct HeaderJson {
    path: String,
    file_size: u64,
    file_pages: u32,
    header_slot: u32,
    slots: Vec<SlotJson>,
    format_version: u32,
    page_size: u32,
    sequence: u64,
    state: &'static str,
    state_value: u32,
    recovery_needed: bool,
    db_signature: String,
    log_signature: String,
    consistent_lgpos: JsonLgpos,
    gen_min_required: u32,
    gen_max_required: u32,
    gen_max_committed: u32,
    last_objid: u32,
    dbtime: u64,
}

fn slots_json(db: &DbFile) -> Vec<SlotJson> {
    db.slots
        .iter()
        .map(|s| SlotJson {
            slot: s.slot,
            offset: s.offset,
            valid: s.header.is_ok(),
            sequence: s.header.as_ref().ok().map(|h| h.sequence),
            error: s.header.as_ref().err().map(JsonError::from),
        })
        .collect()
}

fn to_json(db: &DbFile, h: &Header) -> HeaderJson {
    HeaderJson {
        path: db.path.display().to_string(),
        file_size: db.len,
        file_pages: db.page_count(h.page_size),
        header_slot: h.slot,
        slots: slots_json(db),
        format_version: h.format_version,
        page_size: h.page_size,
        sequence: h.sequence,
        state: state_name(h.state),
        state_value: h.state.value(),
        recovery_needed: h.state == ese_btree::DbState::DirtyShutdown,
        db_signature: hex(&h.db_signature),
        log_signature: hex(&h.log_signature),
        consistent_lgpos: h.consistent_lgpos.into(),
        gen_min_required: h.gen_min_required,
        gen_max_required: h.gen_max_required,
        gen_max_committed: h.gen_max_committed,
        last_objid: h.last_objid,
        dbtime: h.dbtime,
    }
}

fn print_slots(db: &DbFile) {
    for s in &db.slots {
        let what = match &s.header {
            Ok(h) => format!("valid, sequence {}", h.sequence),
            Err(e) => format!("invalid: {e}"),
        };
        outln!("header copy {} (offset {}): {what}", s.slot, s.offset);
    }
}

/// Runs `esedump header`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let db = DbFile::open(&args.db)?;
    let h = match db.header() {
        Ok(h) => h,
        Err(e) => {
            if !args.json {
                print_slots(&db);
            }
            return Err(e);
        }
    };
    let j = to_json(&db, h);
    if args.json {
        return print_json(&j);
    }
    let state = if j.recovery_needed {
        format!("{} ({}): recovery needed", j.state, j.state_value)
    } else {
        format!("{} ({})", j.state, j.state_value)
    };
    print_fields(&[
        ("Database", j.path.clone()),
        (
            "File size",
            format!("{} bytes, {} pages", j.file_size, j.file_pages),
        ),
        ("Format version", j.format_version.to_string()),
        ("Page size", j.page_size.to_string()),
        ("State", state),
        (
            "Header copy used",
            format!("{} (sequence {})", j.header_slot, j.sequence),
        ),
        ("DB signature", j.db_signature.clone()),
        ("Log signature", j.log_signature.clone()),
        ("Consistent LGPOS", h.consistent_lgpos.to_string()),
        ("Gen min required", j.gen_min_required.to_string()),
        ("Gen max required", j.gen_max_required.to_string()),
        ("Gen max committed", j.gen_max_committed.to_string()),
        ("Last objid", j.last_objid.to_string()),
        ("Dbtime", j.dbtime.to_string()),
    ]);
    print_slots(&db);
    if let Some(note) = super::dirty_note(h) {
        eprintln!("esedump: {note}");
    }
    Ok(())
}
