//! `esedump check DB` (eseutil `/g`): the integrity check. Exit code 0 only when the database
//! is clean.
//!
//! Two passes. (1) Every page of the file is read and its checksum and page number verified
//! (a progress bar on stderr, hidden when stderr is not a terminal); every damaged page is
//! listed, not only the first. Pages past the last allocated one may be all zeros (the unused
//! tail of the file). (2) `ese_btree::Database::check_integrity` walks every tree, the free
//! chain and the space accounting, through the read-only file system. No recovery is run: a
//! database that needs it fails the check with `JET_errDatabaseDirtyShutdown`, after the
//! passes have reported what the file holds.

use std::io::IsTerminal;
use std::path::PathBuf;

use ese_core::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::dbfile::{self, state_name};
use crate::output::{JsonError, print_json};

/// Check the database's integrity (eseutil /g); exit 0 only when clean.
///
/// Verifies the checksum of every page, then walks every tree (key order, parent/child
/// bounds, levels, sibling links), the free chain and the space accounting. On a damaged
/// page it fails naming the page. Never runs recovery: a database that needs it fails with
/// JET_errDatabaseDirtyShutdown.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  esedump check data.edb && echo clean\n  esedump check data.edb --json"
)]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// Print the documented JSON schema (docs/esedump.md) instead of a report.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BadPage {
    pgno: u32,
    error: JsonError,
}

#[derive(Serialize)]
struct StructureJson {
    ok: bool,
    error: Option<JsonError>,
    trees: Option<usize>,
    free_pages: Option<u32>,
}

#[derive(Serialize)]
struct CheckJson {
    path: String,
    clean: bool,
    state: &'static str,
    recovery_needed: bool,
    page_size: u32,
    file_pages: u32,
    pgno_last: Option<u32>,
    pages_verified: u32,
    pages_unused: u32,
    bad_pages: Vec<BadPage>,
    structure: StructureJson,
}

fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} pages ({eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message("checksums");
    pb
}

/// Runs `esedump check`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let (db, h) = super::open_db(&args.db)?;
    let ps = h.page_size;
    let file_pages = db.page_count(ps);
    let pgno_last = dbfile::read_space_header(&db, ps).ok().map(|s| s.pgno_last);
    let must_exist = pgno_last.unwrap_or(file_pages);
    let mut bad: Vec<Error> = Vec::new();
    let (mut verified, mut unused) = (0u32, 0u32);
    let pb = progress(u64::from(file_pages));
    for pgno in 1..=file_pages {
        let b = db.read_page(pgno, ps)?;
        if pgno > must_exist && b.iter().all(|&x| x == 0) {
            unused += 1;
        } else {
            match dbfile::verify_page(&b, pgno) {
                Ok(()) => verified += 1,
                Err(e) => {
                    pb.suspend(|| {
                        if !args.json {
                            eprintln!("esedump: page {pgno}: {e}");
                        }
                    });
                    bad.push(e.with_path(&db.path));
                }
            }
        }
        pb.inc(1);
    }
    pb.set_message("trees (walking every tree)");
    let structure = super::open_engine(&args.db, ps).and_then(|e| e.check_integrity());
    pb.finish_and_clear();
    let dirty = h.state == ese_btree::DbState::DirtyShutdown;
    let j = CheckJson {
        path: db.path.display().to_string(),
        clean: bad.is_empty() && structure.is_ok() && !dirty,
        state: state_name(h.state),
        recovery_needed: dirty,
        page_size: ps,
        file_pages,
        pgno_last,
        pages_verified: verified,
        pages_unused: unused,
        bad_pages: bad
            .iter()
            .map(|e| BadPage {
                pgno: e.pgno().map_or(0, |p| p.0),
                error: e.into(),
            })
            .collect(),
        structure: StructureJson {
            ok: structure.is_ok(),
            error: structure.as_ref().err().map(JsonError::from),
            trees: structure.as_ref().ok().map(|r| r.trees.len()),
            free_pages: structure.as_ref().ok().map(|r| r.free_pages),
        },
    };
    if args.json {
        print_json(&j)?;
    } else {
        outln!("Database: {}", j.path);
        outln!(
            "Pages: {} in the file, {} verified, {} unused at the end, {} damaged",
            file_pages,
            verified,
            unused,
            bad.len()
        );
        for e in &bad {
            outln!("  damaged: {e}");
        }
        match &structure {
            Ok(r) => outln!(
                "Trees: {} checked, {} free pages, space accounted for",
                r.trees.len(),
                r.free_pages
            ),
            Err(e) => outln!("Trees: FAILED: {e}"),
        }
        if dirty {
            outln!("State: DirtyShutdown: recovery needed");
        }
        outln!(
            "Integrity check {}",
            if j.clean { "passed" } else { "FAILED" }
        );
    }
    if let Some(e) = bad.into_iter().next() {
        return Err(e);
    }
    structure?;
    if dirty {
        return Err(super::dirty_error(&db.path));
    }
    Ok(())
}
