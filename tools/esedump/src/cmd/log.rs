//! `esedump log LOGDIR|LOGFILE [--records] [--from LGPOS]` (eseutil `/ml`): generations, their
//! headers and, with `--records`, every record with what can be decoded of it.
//!
//! Every record is always walked and verified, so the end of the log is always reported: a
//! **clean** end (the torn or never-written tail of the newest generation) or **corruption**
//! (a record before the end of a finished generation does not verify), which makes the command
//! fail (non-zero exit) after printing what it read.
//!
//! A directory is read with `ese_log::LogReader`, exactly as recovery reads it. A single file
//! is read frame by frame through the documented frame format (`docs/format-log.md`): its end
//! is verified against the next generation's header when that generation is found beside it;
//! otherwise (the newest generation, or a copy on its own) the first frame that does not
//! verify ends it.

#![deny(clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ese_core::checksum::crc32_seeded;
use ese_core::fs::{FileSystem, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};
use ese_log::{LogFileHeader, LogReader, SECTOR_SIZE};
use serde::Serialize;

use crate::output::{
    JsonError, JsonLgpos, Table, iso_time, parse_lgpos, print_fields, print_json, time_text,
};
use crate::payload::{Decoded, decode};
use crate::rofs::ReadOnlyFs;

/// Dump log generations and records (eseutil /ml).
///
/// Shows each generation's header (generation, creation time, previous generation's time,
/// signature, sizes) and how the log ends: cleanly, or with corruption (then the exit code is
/// non-zero). With --records, each record: LGPOS, length, family (page, txn, upper) and what
/// can be decoded (page record type, dbid, pages and node operation; transaction record kind
/// and transaction id): enough to see what recovery would replay.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  esedump log logs/\n  esedump log logs/ --records --from 3:8:0\n  \
                        esedump log logs/edb00000002.log --records --json"
)]
pub(crate) struct Args {
    /// A log directory (the whole stream) or one generation file.
    path: PathBuf,
    /// List every record.
    #[arg(long)]
    records: bool,
    /// Start at this LGPOS: `(0000001A,0008,0000)` as printed, or `1A:8:0` (hex fields).
    #[arg(long, value_parser = parse_lgpos)]
    from: Option<Lgpos>,
    /// Base name of the log stream in a directory.
    #[arg(long, default_value = "edb")]
    base: String,
    /// Print the documented JSON schema (docs/esedump.md) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Bytes of a frame header.
const FRAME_HEADER: usize = 12;
/// Bytes of the generation header.
const HEADER_BYTES: usize = 4096;
const SECTOR: usize = SECTOR_SIZE as usize;

#[derive(Serialize)]
struct GenJson {
    generation: u32,
    file: Option<String>,
    file_size: u64,
    sector_size: u16,
    header_sectors: u16,
    file_sectors: u32,
    page_size: u32,
    circular: bool,
    created_micros: u64,
    created: Option<String>,
    prev_created_micros: u64,
    prev_created: Option<String>,
    signature: String,
    prev_end_offset: u32,
    checkpoint_at_creation: JsonLgpos,
}

fn gen_json(h: &LogFileHeader, file: Option<String>) -> GenJson {
    GenJson {
        generation: h.generation,
        file,
        file_size: h.file_bytes(),
        sector_size: h.sector_size,
        header_sectors: h.header_sectors,
        file_sectors: h.file_sectors,
        page_size: h.page_size,
        circular: h.flags & 1 != 0,
        created_micros: h.created_micros,
        created: iso_time(h.created_micros),
        prev_created_micros: h.prev_created_micros,
        prev_created: iso_time(h.prev_created_micros),
        signature: h.signature.to_string(),
        prev_end_offset: h.prev_end_offset,
        checkpoint_at_creation: Lgpos::from_u64(h.checkpoint_at_creation).into(),
    }
}

#[derive(Serialize)]
struct RecordJson {
    lgpos: JsonLgpos,
    length: usize,
    #[serde(flatten)]
    decoded: Decoded,
}

#[derive(Serialize, Default)]
struct Families {
    page: u64,
    txn: u64,
    upper: u64,
    unknown: u64,
}

#[derive(Serialize)]
struct EndJson {
    /// `clean`, `corrupt` or `error`.
    status: &'static str,
    /// Clean: just past the last record; corrupt: where the bad frame starts (when known).
    lgpos: Option<JsonLgpos>,
    error: Option<JsonError>,
}

#[derive(Serialize)]
struct LogJson {
    path: String,
    mode: &'static str,
    signature: String,
    from: Option<JsonLgpos>,
    generations: Vec<GenJson>,
    record_count: u64,
    families: Families,
    records: Option<Vec<RecordJson>>,
    end: EndJson,
}

/// Collects records: printed at once in human mode, kept for JSON.
struct Sink<'a> {
    args: &'a Args,
    count: u64,
    families: Families,
    kept: Vec<RecordJson>,
    last_end: Option<Lgpos>,
    header_printed: bool,
}

fn lgpos_after(l: Lgpos, payload_len: usize) -> Lgpos {
    let off = usize::from(l.isec) * SECTOR + usize::from(l.ib) + FRAME_HEADER + payload_len;
    Lgpos::new(
        l.generation,
        u16::try_from(off / SECTOR).unwrap_or(u16::MAX),
        (off % SECTOR) as u16,
    )
}

fn detail(d: &Decoded) -> String {
    let mut s = String::new();
    if let Some(p) = &d.page {
        let _ = write!(s, "{} dbid {}", p.kind, p.dbid);
        if !p.image_pages.is_empty() {
            let pages: Vec<String> = p.image_pages.iter().map(u32::to_string).collect();
            let _ = write!(s, " pages [{}]", pages.join(","));
        }
        if !p.delta_pages.is_empty() {
            let pages: Vec<String> = p.delta_pages.iter().map(u32::to_string).collect();
            let _ = write!(s, " deltas [{}]", pages.join(","));
        }
        if let Some(n) = &p.node {
            let _ = write!(
                s,
                " {} pgno {} objid {} node {} dbtime {}->{}",
                n.op, n.pgno, n.objid, n.node_index, n.dbtime_before, n.dbtime_after
            );
        }
    }
    if let Some(t) = &d.txn {
        if !s.is_empty() {
            s.push_str("; ");
        }
        let _ = write!(s, "{} trx {}", t.kind, t.trx);
        if let Some(seq) = t.seq {
            let _ = write!(s, " seq {seq}");
        }
        if let Some(tree) = t.tree {
            let _ = write!(s, " tree {tree}");
        }
        if let Some(u) = t.undo {
            let _ = write!(s, " undo {u}");
        }
    }
    if d.family == "upper" {
        let _ = write!(s, "family {}", d.family_byte.unwrap_or(0));
    }
    if let Some(p) = &d.problem {
        let _ = write!(s, " (undecoded: {p})");
    }
    s
}

impl Sink<'_> {
    fn record(&mut self, lgpos: Lgpos, payload: &[u8]) {
        self.count += 1;
        self.last_end = Some(lgpos_after(lgpos, payload.len()));
        let d = decode(payload);
        match d.family {
            "page" => self.families.page += 1,
            "txn" => self.families.txn += 1,
            "upper" => self.families.upper += 1,
            _ => self.families.unknown += 1,
        }
        if !self.args.records {
            return;
        }
        if self.args.json {
            self.kept.push(RecordJson {
                lgpos: lgpos.into(),
                length: payload.len(),
                decoded: d,
            });
        } else {
            if !self.header_printed {
                outln!();
                outln!("{:<22} {:>7}  {:<6} DETAIL", "LGPOS", "LENGTH", "FAMILY");
                self.header_printed = true;
            }
            outln!(
                "{:<22} {:>7}  {:<6} {}",
                lgpos.to_string(),
                payload.len(),
                d.family,
                detail(&d)
            );
        }
    }
}

fn print_generations(gens: &[GenJson], headers: &[LogFileHeader]) {
    let mut t = Table::new(&[
        "GEN",
        "FILE",
        "CREATED",
        "PREV GEN CREATED",
        "SIZE",
        "PAGE",
        "PREV END",
        "CHECKPOINT AT CREATION",
    ]);
    for (g, h) in gens.iter().zip(headers) {
        t.row(vec![
            format!("{:X}", g.generation),
            g.file.clone().unwrap_or_else(|| "-".to_owned()),
            time_text(g.created_micros),
            time_text(g.prev_created_micros),
            g.file_size.to_string(),
            g.page_size.to_string(),
            g.prev_end_offset.to_string(),
            Lgpos::from_u64(h.checkpoint_at_creation).to_string(),
        ]);
    }
    t.print();
}

/// The file name of generation `g` in `dir`, as the stream names it (8 or 5 hex digits, or
/// the current log for the newest).
fn gen_file(dir: &Path, base: &str, g: u32, newest: bool) -> Option<String> {
    let names = if newest {
        vec![format!("{base}.log")]
    } else {
        vec![format!("{base}{g:08X}.log"), format!("{base}{g:05X}.log")]
    };
    names.into_iter().find(|n| dir.join(n).is_file())
}

fn end_of(err: Option<&Error>, last: Option<Lgpos>) -> EndJson {
    match err {
        None => EndJson {
            status: "clean",
            lgpos: last.map(Into::into),
            error: None,
        },
        Some(e) => EndJson {
            status: if matches!(
                e.kind(),
                ErrorKind::LogFileCorrupt | ErrorKind::LogCorrupted
            ) {
                "corrupt"
            } else {
                "error"
            },
            lgpos: e.lgpos().map(Into::into),
            error: Some(e.into()),
        },
    }
}

/// Reads a whole directory through `LogReader`.
fn read_dir(args: &Args, sink: &mut Sink<'_>) -> Result<(LogJson, Option<Error>)> {
    let fs: Arc<dyn FileSystem> = Arc::new(ReadOnlyFs);
    let mut reader = LogReader::open(fs, &args.path, &args.base, args.from.unwrap_or(Lgpos::MIN))?;
    let (first, last) = reader.generations();
    let headers: Vec<LogFileHeader> = (first..=last)
        .filter_map(|g| reader.header(g).copied())
        .collect();
    let gens: Vec<GenJson> = headers
        .iter()
        .map(|h| {
            let file = gen_file(&args.path, &args.base, h.generation, h.generation == last);
            gen_json(h, file)
        })
        .collect();
    let signature = reader.signature().to_string();
    if !args.json {
        print_summary(args, "directory", &signature, &gens, &headers);
    }
    let err = loop {
        match reader.next_record() {
            Ok(Some(r)) => sink.record(r.lgpos, &r.payload),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let j = LogJson {
        path: args.path.display().to_string(),
        mode: "directory",
        signature,
        from: args.from.map(Into::into),
        generations: gens,
        record_count: 0,
        families: Families::default(),
        records: None,
        end: end_of(err.as_ref(), sink.last_end),
    };
    Ok((j, err))
}

fn print_summary(
    args: &Args,
    mode: &str,
    signature: &str,
    gens: &[GenJson],
    headers: &[LogFileHeader],
) {
    print_fields(&[
        (
            if mode == "directory" {
                "Log directory"
            } else {
                "Log file"
            },
            args.path.display().to_string(),
        ),
        ("Signature", signature.to_owned()),
        (
            "Generations",
            match (gens.first(), gens.last()) {
                (Some(a), Some(b)) => format!("{:X} to {:X}", a.generation, b.generation),
                _ => "none".to_owned(),
            },
        ),
    ]);
    outln!();
    print_generations(gens, headers);
}

/// Where the next frame header may start at or after `off` (a frame header never starts in
/// the last 11 bytes of a sector).
fn frame_start(off: usize) -> usize {
    let rem = SECTOR - off % SECTOR;
    if rem < FRAME_HEADER && rem != SECTOR {
        off + rem
    } else {
        off
    }
}

/// One verified frame, or `None` when the bytes at `start` are not a valid frame.
fn frame_at(
    image: &[u8],
    generation: u32,
    start: usize,
    limit: usize,
) -> Option<(u8, usize, usize)> {
    let limit = limit.min(image.len());
    let hdr_end = start.checked_add(FRAME_HEADER)?;
    if hdr_end > limit {
        return None;
    }
    let hdr = image.get(start..hdr_end)?;
    let stored = u32::from_le_bytes(hdr.get(0..4)?.try_into().ok()?);
    let len = u32::from_le_bytes(hdr.get(4..8)?.try_into().ok()?) as usize;
    let kind = *hdr.get(8)?;
    if (kind != 1 && kind != 2) || hdr.get(9..12) != Some(&[0u8; 3][..]) || len > limit - hdr_end {
        return None;
    }
    let payload = image.get(hdr_end..hdr_end + len)?;
    let lgpos = Lgpos::new(generation, (start / SECTOR) as u16, (start % SECTOR) as u16);
    (crc32_seeded(lgpos.as_u64(), &[hdr.get(4..)?, payload]) == stored).then_some((
        kind,
        hdr_end,
        hdr_end + len,
    ))
}

/// The header of generation `g + 1` of the same stream beside `path`, if there is one.
fn next_generation(path: &Path, h: &LogFileHeader) -> Option<LogFileHeader> {
    let dir = ese_core::fs::parent_dir(path);
    let names = ReadOnlyFs.list(dir).ok()?;
    names
        .iter()
        .filter(|n| {
            Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("log"))
        })
        .filter_map(|n| LogFileHeader::read(&ReadOnlyFs, &dir.join(n)).ok())
        .find(|n| n.generation == h.generation.wrapping_add(1) && n.signature == h.signature)
}

/// Reads one generation file frame by frame (see the module docs).
fn read_file(args: &Args, sink: &mut Sink<'_>) -> Result<(LogJson, Option<Error>)> {
    let h = LogFileHeader::read(&ReadOnlyFs, &args.path)?;
    let file = ReadOnlyFs.open(&args.path, OpenOptions::read())?;
    let mut image = vec![0u8; usize::try_from(h.file_bytes()).unwrap_or(0)];
    file.read_exact_at(&mut image, 0)?;
    let next = next_generation(&args.path, &h);
    let limit = next.map_or(image.len(), |n| n.prev_end_offset as usize);
    let name = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let gens = vec![gen_json(&h, name)];
    let signature = h.signature.to_string();
    if !args.json {
        print_summary(args, "file", &signature, &gens, &[h]);
        if next.is_none() {
            outln!(
                "(no generation {:X} beside it: the first frame that does not verify is taken \
                 as the end of the log)",
                h.generation.wrapping_add(1)
            );
        }
    }
    let from = args.from.unwrap_or(Lgpos::MIN);
    let mut pos = HEADER_BYTES;
    let err = loop {
        let start = frame_start(pos);
        if start >= limit {
            break None;
        }
        match frame_at(&image, h.generation, start, limit) {
            Some((kind, a, b)) => {
                let lgpos = Lgpos::new(
                    h.generation,
                    (start / SECTOR) as u16,
                    (start % SECTOR) as u16,
                );
                if kind == 1 && lgpos >= from {
                    sink.record(lgpos, image.get(a..b).unwrap_or_default());
                }
                pos = b;
            }
            None if next.is_none() => break None,
            None => {
                let at = Lgpos::new(
                    h.generation,
                    (start / SECTOR) as u16,
                    (start % SECTOR) as u16,
                );
                break Some(
                    Error::new(ErrorKind::LogFileCorrupt)
                        .with_path(&args.path)
                        .with_lgpos(at)
                        .with_message(
                            "a record before the end of a finished generation does not verify",
                        ),
                );
            }
        }
    };
    let j = LogJson {
        path: args.path.display().to_string(),
        mode: "file",
        signature,
        from: args.from.map(Into::into),
        generations: gens,
        record_count: 0,
        families: Families::default(),
        records: None,
        end: end_of(err.as_ref(), sink.last_end),
    };
    Ok((j, err))
}

/// Runs `esedump log`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let mut sink = Sink {
        args,
        count: 0,
        families: Families::default(),
        kept: Vec::new(),
        last_end: None,
        header_printed: false,
    };
    let (mut j, err) = if args.path.is_dir() {
        read_dir(args, &mut sink)?
    } else {
        read_file(args, &mut sink)?
    };
    j.record_count = sink.count;
    j.families = std::mem::take(&mut sink.families);
    if args.records {
        j.records = Some(std::mem::take(&mut sink.kept));
    }
    if args.json {
        print_json(&j)?;
    } else {
        let f = &j.families;
        outln!();
        outln!(
            "{} records (page {}, txn {}, upper {}, unknown {})",
            j.record_count,
            f.page,
            f.txn,
            f.upper,
            f.unknown
        );
        match (&err, sink.last_end) {
            (None, Some(l)) => outln!("Clean end of log after {l}"),
            (None, None) => outln!("Clean end of log (no records)"),
            (Some(e), _) => outln!("Log ends with {}: {e}", j.end.status),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
