//! `esedump page DB PGNO` (eseutil `/p`): the header fields and the lines of one page, shown
//! even when the page does not verify (the command then fails after printing it).

use std::fmt::Write as _;
use std::path::PathBuf;

use ese_core::Result;
use serde::Serialize;

use crate::dbfile::{self, SPACE_PGNO};
use crate::output::{JsonError, Table, ValueFormat, hex, print_fields, print_json, show_bytes};

/// Bytes of a key or data shown before it is cut (without --full).
const SHOW_BYTES: usize = 32;

/// Dump one database page (eseutil /p).
///
/// Shows the page header (checksum verified?, page number, dbtime, objid, prev/next, flags,
/// level, free space) and every line (tag, offset, size, node flags, key and data). Keys and
/// data are cut to 32 bytes unless --full. A page that does not verify is still shown, then
/// the command fails naming it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  esedump page data.edb 1\n  esedump page data.edb 37 --full --format auto --json"
)]
pub(crate) struct Args {
    /// The database file.
    db: PathBuf,
    /// The page number (1 = the tree directory root, 2 = the space page).
    pgno: u32,
    /// Show keys and data whole instead of cutting them to 32 bytes.
    #[arg(long)]
    full: bool,
    /// How keys and data are shown in the table (JSON always carries hex).
    #[arg(long, value_enum, default_value = "hex")]
    format: ValueFormat,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LineJson {
    tag: u16,
    ib: u16,
    cb: u16,
    flags: Option<u8>,
    deleted: bool,
    versioned: bool,
    key_len: usize,
    key: String,
    data_len: usize,
    data: String,
    truncated: bool,
    problem: Option<String>,
}

#[derive(Serialize)]
struct SpaceJson {
    free_head: u32,
    free_count: u32,
    pgno_last: u32,
    last_objid: u32,
}

#[derive(Serialize)]
struct PageJson {
    path: String,
    pgno: u32,
    page_size: u32,
    checksum_ok: bool,
    verify_error: Option<JsonError>,
    checksum_stored: u32,
    checksum_computed: u32,
    stored_pgno: u32,
    dbtime: u64,
    objid: u32,
    prev: u32,
    next: u32,
    flags: u32,
    flag_names: Vec<String>,
    level: u8,
    tag_count: u16,
    free_bytes: u16,
    ib_mic_free: u16,
    space_header: Option<SpaceJson>,
    lines: Vec<LineJson>,
}

/// Runs `esedump page`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let (db, hdr) = super::open_db(&args.db)?;
    let raw = db.read_page(args.pgno, hdr.page_size)?;
    let verify = dbfile::verify_page(&raw, args.pgno).map_err(|e| e.with_path(&db.path));
    let ph = dbfile::page_header(&raw);
    let lines = dbfile::page_lines(&raw);
    let limit = (!args.full).then_some(SHOW_BYTES);
    let cut = |v: &[u8]| {
        v.get(..limit.unwrap_or(v.len()).min(v.len()))
            .unwrap_or(v)
            .to_vec()
    };
    let space = (args.pgno == SPACE_PGNO)
        .then(|| lines.first().and_then(|l| dbfile::space_header(&l.data)))
        .flatten()
        .map(|s| SpaceJson {
            free_head: s.free_head,
            free_count: s.free_count,
            pgno_last: s.pgno_last,
            last_objid: s.last_objid,
        });
    let j = PageJson {
        path: db.path.display().to_string(),
        pgno: args.pgno,
        page_size: hdr.page_size,
        checksum_ok: verify.is_ok(),
        verify_error: verify.as_ref().err().map(JsonError::from),
        checksum_stored: ph.checksum,
        checksum_computed: dbfile::computed_checksum(&raw),
        stored_pgno: ph.pgno,
        dbtime: ph.dbtime,
        objid: ph.objid,
        prev: ph.prev,
        next: ph.next,
        flags: ph.flags,
        flag_names: dbfile::page_flag_names(ph.flags),
        level: ph.level,
        tag_count: ph.tag_count,
        free_bytes: ph.free_bytes,
        ib_mic_free: ph.ib_mic_free,
        space_header: space,
        lines: lines
            .iter()
            .map(|l| LineJson {
                tag: l.tag,
                ib: l.ib,
                cb: l.cb,
                flags: l.flags,
                deleted: l.flags.is_some_and(|f| f & 0x1 != 0),
                versioned: l.flags.is_some_and(|f| f & 0x2 != 0),
                key_len: l.key.len(),
                key: hex(&cut(&l.key)),
                data_len: l.data.len(),
                data: hex(&cut(&l.data)),
                truncated: limit.is_some_and(|n| l.key.len() > n || l.data.len() > n),
                problem: l.problem.clone(),
            })
            .collect(),
    };
    if args.json {
        print_json(&j)?;
    } else {
        let check = match &verify {
            Ok(()) => format!("ok ({:#010x})", j.checksum_stored),
            Err(e) => format!("BAD: {e}"),
        };
        let mut fields = vec![
            ("Database", j.path.clone()),
            (
                "Page",
                format!("{} (stored page number {})", j.pgno, j.stored_pgno),
            ),
            ("Checksum", check),
            ("Dbtime", j.dbtime.to_string()),
            ("Objid", j.objid.to_string()),
            ("Prev / next", format!("{} / {}", j.prev, j.next)),
            (
                "Flags",
                format!("{:#x} [{}]", j.flags, j.flag_names.join(", ")),
            ),
            ("Level", j.level.to_string()),
            ("Tags", format!("{} (tag 0 = external header)", j.tag_count)),
            ("Free bytes", j.free_bytes.to_string()),
            ("Node area end", j.ib_mic_free.to_string()),
        ];
        if let Some(s) = &j.space_header {
            fields.push((
                "Space header",
                format!(
                    "free head {}, free pages {}, last page {}, last objid {}",
                    s.free_head, s.free_count, s.pgno_last, s.last_objid
                ),
            ));
        }
        print_fields(&fields);
        outln!();
        let mut t = Table::new(&["TAG", "IB", "CB", "FLAGS", "KEY", "DATA"]);
        for l in &lines {
            let flags = match l.flags {
                None => "ext".to_owned(),
                Some(f) => {
                    let mut s = format!("{f:#04x}");
                    if f & 0x1 != 0 {
                        s.push_str(" del");
                    }
                    if f & 0x2 != 0 {
                        s.push_str(" ver");
                    }
                    s
                }
            };
            let mut data = show_bytes(&l.data, args.format, limit);
            if let Some(p) = &l.problem {
                let _ = write!(data, "  (! {p})");
            }
            t.row(vec![
                l.tag.to_string(),
                l.ib.to_string(),
                l.cb.to_string(),
                flags,
                show_bytes(&l.key, args.format, limit),
                data,
            ]);
        }
        t.print();
    }
    if !args.json
        && let Some(n) = super::dirty_note(&hdr)
    {
        eprintln!("esedump: {n}");
    }
    verify
}
