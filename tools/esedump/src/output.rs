//! Shared output helpers: tables, JSON, times, LGPOS and byte strings.

use std::fmt::Write as _;

use clap::ValueEnum;
use ese_core::{Error, Lgpos};
use serde::Serialize;

/// Writes one line on stdout (the `outln!` macro). When stdout is a pipe whose reader has
/// gone away the process exits with code 0 (nothing is left to report to anyone); any other
/// write error is reported on stderr with exit code 1.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("esedump: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints `value` as pretty JSON on stdout (the `--json` output of every command).
pub(crate) fn print_json<T: Serialize>(value: &T) -> ese_core::Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| {
        Error::new(ese_core::ErrorKind::InternalError).with_message(format!("JSON output: {e}"))
    })?;
    outln!("{s}");
    Ok(())
}

/// A LGPOS in JSON: its three fields, and the text form esedump prints and `--from` accepts.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct JsonLgpos {
    pub(crate) generation: u32,
    pub(crate) isec: u16,
    pub(crate) ib: u16,
}

impl From<Lgpos> for JsonLgpos {
    fn from(l: Lgpos) -> JsonLgpos {
        JsonLgpos {
            generation: l.generation,
            isec: l.isec,
            ib: l.ib,
        }
    }
}

/// An error in JSON: the JET symbol, its code and the full message.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct JsonError {
    pub(crate) name: &'static str,
    pub(crate) code: i32,
    pub(crate) message: String,
    pub(crate) pgno: Option<u32>,
}

impl From<&Error> for JsonError {
    fn from(e: &Error) -> JsonError {
        JsonError {
            name: e.kind().name(),
            code: e.kind().code(),
            message: e.to_string(),
            pgno: e.pgno().map(|p| p.0),
        }
    }
}

/// Parses a LGPOS as esedump prints it: `(0000001A,0008,0000)`, or `1A,8,0` / `1A:8:0`
/// (hexadecimal fields, generation first). A bare generation `1A` means its start.
pub(crate) fn parse_lgpos(s: &str) -> Result<Lgpos, String> {
    let t = s.trim().trim_start_matches('(').trim_end_matches(')');
    let parts: Vec<&str> = t.split([',', ':']).map(str::trim).collect();
    let hex = |p: &str| u64::from_str_radix(p.trim_start_matches("0x"), 16);
    let bad = || format!("`{s}` is not a LGPOS like (0000001A,0008,0000) or 1A:8:0");
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| hex(p))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (g, isec, ib) = match nums.as_slice() {
        [g] => (*g, 0, 0),
        [g, isec, ib] => (*g, *isec, *ib),
        _ => return Err(bad()),
    };
    Ok(Lgpos::new(
        u32::try_from(g).map_err(|_| bad())?,
        u16::try_from(isec).map_err(|_| bad())?,
        u16::try_from(ib).map_err(|_| bad())?,
    ))
}

/// Microseconds since the Unix epoch as ISO 8601 UTC (`2026-05-01T12:34:56.123456Z`); `None`
/// for 0 (no time recorded).
pub(crate) fn iso_time(micros: u64) -> Option<String> {
    if micros == 0 {
        return None;
    }
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// A time for the human tables.
pub(crate) fn time_text(micros: u64) -> String {
    iso_time(micros).unwrap_or_else(|| "-".to_owned())
}

/// Lower-case hex of `b`.
pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// How `page` shows keys and data (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ValueFormat {
    /// Hexadecimal.
    Hex,
    /// Printable ASCII, other bytes as `.`.
    Ascii,
    /// ASCII when every byte is printable, hex otherwise.
    Auto,
}

/// `b` shown as `format`, cut to `limit` bytes (with a `…(+N)` marker) unless `limit` is None.
pub(crate) fn show_bytes(b: &[u8], format: ValueFormat, limit: Option<usize>) -> String {
    let cut = limit.map_or(b.len(), |l| l.min(b.len()));
    let part = b.get(..cut).unwrap_or(b);
    let printable = |x: &u8| x.is_ascii_graphic() || *x == b' ';
    let mut s = match format {
        ValueFormat::Ascii => part
            .iter()
            .map(|x| if printable(x) { char::from(*x) } else { '.' })
            .collect(),
        ValueFormat::Auto if !b.is_empty() && b.iter().all(printable) => {
            format!(
                "\"{}\"",
                part.iter().map(|x| char::from(*x)).collect::<String>()
            )
        }
        ValueFormat::Hex | ValueFormat::Auto => hex(part),
    };
    if cut < b.len() {
        let _ = write!(s, "…(+{})", b.len() - cut);
    }
    s
}

/// A plain text table: a header row and rows, columns padded to their widest cell.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn print(&self) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            outln!("{}", line.trim_end());
        }
    }
}

/// Prints `label: value` lines with the labels aligned.
pub(crate) fn print_fields(fields: &[(&str, String)]) {
    let w = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (l, v) in fields {
        let label = format!("{l}:");
        outln!("{label:<w$} {v}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_utc() {
        assert_eq!(iso_time(0), None);
        assert_eq!(iso_time(1).unwrap(), "1970-01-01T00:00:00.000001Z");
        // 2024-02-29T12:34:56Z = 1709210096 s.
        assert_eq!(
            iso_time(1_709_210_096_000_000).unwrap(),
            "2024-02-29T12:34:56.000000Z"
        );
    }

    #[test]
    fn lgpos_parses_in_every_form() {
        let l = Lgpos::new(0x1a, 8, 0x10);
        assert_eq!(parse_lgpos(&l.to_string()).unwrap(), l);
        assert_eq!(parse_lgpos("1A:8:10").unwrap(), l);
        assert_eq!(parse_lgpos("1a,8,10").unwrap(), l);
        assert_eq!(parse_lgpos("3").unwrap(), Lgpos::new(3, 0, 0));
        assert!(parse_lgpos("x").is_err());
        assert!(parse_lgpos("1:2").is_err());
        assert!(parse_lgpos("1:10000:0").is_err());
    }

    #[test]
    fn bytes_are_cut_and_formatted() {
        assert_eq!(show_bytes(b"abc", ValueFormat::Hex, None), "616263");
        assert_eq!(show_bytes(b"abc", ValueFormat::Hex, Some(2)), "6162…(+1)");
        assert_eq!(show_bytes(b"a\x01", ValueFormat::Ascii, None), "a.");
        assert_eq!(show_bytes(b"ab", ValueFormat::Auto, None), "\"ab\"");
        assert_eq!(show_bytes(b"a\x01", ValueFormat::Auto, None), "6101");
    }
}
