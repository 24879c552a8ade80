//! [`LogReader`]: iterates the records of a log stream from an LGPOS forwards, across
//! generations, for recovery (ESE's redo pass) and `esedump log` (eseutil `/ml`).
//!
//! End of data: in the newest generation (`edb.log`) the first frame that does not verify ends
//! the log cleanly, since it is the torn or never-written tail a crash leaves. In every older
//! generation, the records must verify up to the end recorded in the next generation's header
//! (`prev_end_offset`); a failure before it is `LogFileCorrupt`.
//!
//! # Reading a live stream
//! A reader may run while a [`Log`](crate::Log) appends and rolls over (an online backup
//! verifies and copies the live log). Two facts of the rollover protocol (`generation.rs`)
//! make that consistent without locking the writer and without retrying:
//! - generation `g` gets its archive name `edbXXXXXXXX.log` (the hard link) *before*
//!   `g + 1` is renamed over `edb.log`, and `g`'s file is never written again after that
//!   rename. So whoever finds a later generation than `g` in `edb.log` finds `g` under its
//!   archive name (unless truncation or circular logging deleted it since: then it is
//!   `RequiredLogFilesMissing`, as for any missing generation);
//! - a header and the records after it are read through one open file, which keeps referring
//!   to the same generation whatever renames follow.
//!
//! Hence [`LogReader::open`] lists the directory *before* it reads the header of `edb.log` it
//! keeps (every archive listed is then at most that generation, and an archive linked after
//! the listing is opened by its name), and the current generation is read from `edb.log`
//! unless that holds a later one by then, in which case from its archive
//! ([`LogReader::read_generation`]).

#![deny(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;

use ese_core::fs::{File, FileSystem, OpenOptions};
use ese_core::{Error, ErrorKind, Lgpos, Result};

use crate::files::StreamFiles;
use crate::header::{HEADER_BYTES, LogFileHeader, LogSignature};
use crate::record::{FrameCursor, KIND_DATA, Stop};

/// One log record as the reader returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Where the record starts (its identity and its place in the log order).
    pub lgpos: Lgpos,
    /// The payload exactly as it was appended.
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Generation {
    path: PathBuf,
    header: LogFileHeader,
}

/// Reads a log stream forwards from a position (see the module docs).
///
/// Also an [`Iterator`] of `Result<LogRecord>`; after the first error it ends.
pub struct LogReader {
    fs: Arc<dyn FileSystem>,
    files: StreamFiles,
    gens: Vec<Generation>,
    idx: usize,
    image: Vec<u8>,
    cursor: Option<FrameCursor>,
    from: Lgpos,
    done: bool,
    signature: LogSignature,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("generations", &self.generations())
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Opens `path` for reading and verifies its header; `FileNotFound` becomes `missing`.
pub(crate) fn open_generation(
    fs: &dyn FileSystem,
    path: &std::path::Path,
    missing: ErrorKind,
) -> Result<(Box<dyn File>, LogFileHeader)> {
    let file = fs.open(path, OpenOptions::read()).map_err(|e| {
        if e.kind() == ErrorKind::FileNotFound {
            Error::new(missing).with_path(path)
        } else {
            e
        }
    })?;
    let mut hdr = vec![0u8; HEADER_BYTES as usize];
    let len = file.len()?;
    if len < u64::from(HEADER_BYTES) {
        return Err(Error::new(ErrorKind::LogFileCorrupt)
            .with_path(path)
            .with_message("the log file is shorter than its header"));
    }
    file.read_exact_at(&mut hdr, 0)?;
    let header = LogFileHeader::decode(&hdr).map_err(|e| e.with_path(path))?;
    if header.file_bytes() != len {
        return Err(Error::new(ErrorKind::LogFileSizeMismatch)
            .with_path(path)
            .with_message(format!(
                "the header says {} bytes, the file has {len}",
                header.file_bytes()
            )));
    }
    Ok((file, header))
}

/// Reads a whole generation file (its size was checked against the header, at most 32 MiB).
pub(crate) fn read_image(file: &dyn File, header: &LogFileHeader) -> Result<Vec<u8>> {
    let mut image = vec![0u8; usize::try_from(header.file_bytes()).unwrap_or(0)];
    file.read_exact_at(&mut image, 0)?;
    Ok(image)
}

/// Opens generation `generation` of a stream that a [`Log`](crate::Log) may be rolling over
/// meanwhile (module docs, "Reading a live stream"): `edb.log` if it holds that generation,
/// else its archive, which exists once `edb.log` holds a later one. The returned header was
/// read from the returned file, and is `generation`'s.
fn open_current_or_archive(
    fs: &dyn FileSystem,
    files: &StreamFiles,
    generation: u32,
) -> Result<(Box<dyn File>, LogFileHeader, PathBuf)> {
    let current = files.current();
    match open_generation(fs, &current, ErrorKind::FileNotFound) {
        Ok((file, header)) if header.generation == generation => {
            return Ok((file, header, current));
        }
        Ok((_, header)) if header.generation < generation => {
            return Err(Error::new(ErrorKind::RequiredLogFilesMissing)
                .with_path(files.archive(generation))
                .with_lgpos(Lgpos::new(generation, 0, 0))
                .with_message(format!(
                    "the current log holds generation {}, older than {generation}",
                    header.generation
                )));
        }
        // A later generation: `generation` was archived before it was installed.
        Ok(_) => {}
        // No current log: only the archive can hold the generation.
        Err(e) if e.kind() == ErrorKind::FileNotFound => {}
        Err(e) => return Err(e),
    }
    let path = files.archive(generation);
    let (file, header) = open_generation(fs, &path, ErrorKind::RequiredLogFilesMissing)
        .map_err(|e| missing_at(e, generation))?;
    if header.generation != generation {
        return Err(Error::new(ErrorKind::LogGenerationMismatch)
            .with_path(&path)
            .with_message(format!(
                "the header says generation {}, expected {generation}",
                header.generation
            )));
    }
    Ok((file, header, path))
}

/// `e`, with the position of `generation` if it says that generation is missing.
fn missing_at(e: Error, generation: u32) -> Error {
    if e.kind() == ErrorKind::RequiredLogFilesMissing {
        e.with_lgpos(Lgpos::new(generation, 0, 0))
    } else {
        e
    }
}

impl LogReader {
    /// Opens the stream `base_name` in `dir` for reading from `from` (use [`Lgpos::MIN`] to
    /// read from the oldest generation present).
    ///
    /// # Errors
    /// - `MissingLogFile`: the current log `edb.log` does not exist.
    /// - `MissingPreviousLogFile`: the generation of `from` is older than every log present.
    /// - `RequiredLogFilesMissing`: a generation between `from` and the current log is
    ///   missing, or `from` lies after the current generation.
    /// - `LogFileCorrupt`: a header does not verify.
    /// - `BadLogVersion`: a log was written in another format version.
    /// - `LogFileSizeMismatch`: a file's size differs from its header or from the current log.
    /// - `LogGenerationMismatch`: a header's generation differs from its file name.
    /// - `InvalidLogSequence`: a generation's previous-generation time does not chain.
    /// - `BadLogSignature`: a generation belongs to another stream.
    /// - `DiskIO` when reading fails.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &std::path::Path,
        base_name: &str,
        from: Lgpos,
    ) -> Result<LogReader> {
        let files = StreamFiles::new(dir, base_name);
        // The current generation before the listing: the oldest one present if nothing is
        // archived (a rollover may archive it before the second read below).
        let (_, first) = open_generation(fs.as_ref(), &files.current(), ErrorKind::MissingLogFile)?;
        let names = match fs.list(dir) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::FileNotFound => {
                return Err(Error::new(ErrorKind::MissingLogFile).with_path(dir));
            }
            Err(e) => return Err(e),
        };
        // Read after the listing, so that no archive listed is newer, even while a `Log`
        // rolls the stream over (module docs, "Reading a live stream").
        let (_, current) =
            open_generation(fs.as_ref(), &files.current(), ErrorKind::MissingLogFile)?;
        let cur_gen = current.generation;
        let mut archived: Vec<u32> = Vec::new();
        for name in &names {
            if let Some(g) = files.parse_archive(name) {
                if g > cur_gen {
                    return Err(Error::new(ErrorKind::LogGenerationMismatch)
                        .with_path(dir.join(name))
                        .with_message(format!(
                            "generation {g} is newer than the current log's {cur_gen}"
                        )));
                }
                if g < cur_gen {
                    archived.push(g);
                }
            }
        }
        archived.sort_unstable();
        archived.dedup();
        let lowest = archived
            .first()
            .copied()
            .unwrap_or(cur_gen)
            .min(first.generation);
        let start = if from.generation == 0 {
            lowest
        } else {
            from.generation
        };
        let lg = Lgpos::new(start, 0, 0);
        if start > cur_gen {
            return Err(Error::new(ErrorKind::RequiredLogFilesMissing)
                .with_lgpos(from)
                .with_message(format!("the newest generation is {cur_gen}")));
        }
        if start < lowest {
            return Err(Error::new(ErrorKind::MissingPreviousLogFile)
                .with_lgpos(lg)
                .with_path(files.archive(start)));
        }
        let mut gens = Vec::new();
        for g in start..cur_gen {
            // Opened by name even if not listed: it may have been archived after the listing.
            let path = files.archive(g);
            let (_, header) =
                open_generation(fs.as_ref(), &path, ErrorKind::RequiredLogFilesMissing)
                    .map_err(|e| missing_at(e, g))?;
            gens.push(Generation { path, header });
        }
        gens.push(Generation {
            path: files.current(),
            header: current,
        });
        let mut prev: Option<&Generation> = None;
        for (g, expect) in gens.iter().zip(start..) {
            let h = &g.header;
            let err =
                |k: ErrorKind, m: String| Err(Error::new(k).with_path(&g.path).with_message(m));
            if h.generation != expect {
                return err(
                    ErrorKind::LogGenerationMismatch,
                    format!(
                        "the header says generation {}, expected {expect}",
                        h.generation
                    ),
                );
            }
            if h.signature != current.signature {
                return err(
                    ErrorKind::BadLogSignature,
                    format!(
                        "signature {} is not the stream's {}",
                        h.signature, current.signature
                    ),
                );
            }
            if h.file_sectors != current.file_sectors {
                return err(
                    ErrorKind::LogFileSizeMismatch,
                    "generations of one stream differ in size".to_owned(),
                );
            }
            if let Some(p) = prev {
                if h.prev_created_micros != p.header.created_micros {
                    return err(
                        ErrorKind::InvalidLogSequence,
                        format!(
                            "generation {} does not chain to {}",
                            h.generation, p.header.generation
                        ),
                    );
                }
                if u64::from(h.prev_end_offset) < u64::from(HEADER_BYTES)
                    || u64::from(h.prev_end_offset) > p.header.file_bytes()
                {
                    return err(
                        ErrorKind::LogFileCorrupt,
                        "the previous generation's end offset is out of range".to_owned(),
                    );
                }
            }
            prev = Some(g);
        }
        Ok(LogReader {
            fs,
            files,
            gens,
            idx: 0,
            image: Vec::new(),
            cursor: None,
            from,
            done: false,
            signature: current.signature,
        })
    }

    /// Reads generation `generation` of the stream `base_name` in `dir` whole: its header and
    /// its file's bytes (every sector, the unwritten tail included), both from one open file.
    /// The generation is found under its archive name or, while it is current, as `edb.log`;
    /// a [`Log`](crate::Log) may be appending and rolling over meanwhile (see the module
    /// docs): the bytes are those of `generation`'s file, complete up to what was durable when
    /// the call began.
    ///
    /// # Errors
    /// - `RequiredLogFilesMissing`: the generation is neither archived nor current (deleted,
    ///   or not begun yet).
    /// - `LogFileCorrupt`, `BadLogVersion`: its header does not verify.
    /// - `LogFileSizeMismatch`: the file's size differs from its header.
    /// - `LogGenerationMismatch`: the archive of `generation` holds another generation.
    /// - `DiskIO` (or another I/O kind) when reading fails.
    pub fn read_generation(
        fs: &dyn FileSystem,
        dir: &std::path::Path,
        base_name: &str,
        generation: u32,
    ) -> Result<(LogFileHeader, Vec<u8>)> {
        let files = StreamFiles::new(dir, base_name);
        let (file, header, _) = open_current_or_archive(fs, &files, generation)?;
        let image = read_image(file.as_ref(), &header)?;
        Ok((header, image))
    }

    /// The signature of the stream being read.
    pub fn signature(&self) -> LogSignature {
        self.signature
    }

    /// The first and last generation the reader covers.
    pub fn generations(&self) -> (u32, u32) {
        let first = self.gens.first().map_or(0, |g| g.header.generation);
        let last = self.gens.last().map_or(0, |g| g.header.generation);
        (first, last)
    }

    /// The header of `generation`, if the reader covers it.
    pub fn header(&self, generation: u32) -> Option<&LogFileHeader> {
        self.gens
            .iter()
            .map(|g| &g.header)
            .find(|h| h.generation == generation)
    }

    /// The next record at or after the start position, or `None` at the clean end of the log.
    ///
    /// # Errors
    /// - `LogFileCorrupt`: a record before the end of a finished generation does not verify.
    /// - `DiskIO` (or another I/O kind) when reading a file fails; `RequiredLogFilesMissing` if
    ///   a generation disappeared since [`LogReader::open`].
    pub fn next_record(&mut self) -> Result<Option<LogRecord>> {
        let r = self.advance();
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// Loads generation `self.idx` and positions the cursor after its header. The limit is
    /// the end recorded by the next generation, or the file's end for the newest one.
    fn load(&mut self) -> Result<()> {
        let Some(g) = self.gens.get(self.idx) else {
            return Ok(());
        };
        let (f, h) = if self.idx + 1 == self.gens.len() {
            // The generation that was current at `open`: a rollover since then may have
            // archived it (module docs, "Reading a live stream").
            let (f, h, _) =
                open_current_or_archive(self.fs.as_ref(), &self.files, g.header.generation)?;
            (f, h)
        } else {
            open_generation(
                self.fs.as_ref(),
                &g.path,
                ErrorKind::RequiredLogFilesMissing,
            )?
        };
        if h != g.header {
            return Err(Error::new(ErrorKind::LogGenerationMismatch)
                .with_path(&g.path)
                .with_message("the file changed while being read"));
        }
        self.image = read_image(f.as_ref(), &h)?;
        let limit = match self.gens.get(self.idx + 1) {
            Some(next) => next.header.prev_end_offset as usize,
            None => self.image.len(),
        };
        self.cursor = Some(FrameCursor::new(h.generation, HEADER_BYTES as usize, limit));
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<LogRecord>> {
        loop {
            if self.done || self.idx >= self.gens.len() {
                self.done = true;
                return Ok(None);
            }
            if self.cursor.is_none() {
                self.load()?;
            }
            let is_last = self.idx + 1 == self.gens.len();
            let Some(cursor) = self.cursor.as_mut() else {
                self.done = true;
                return Ok(None);
            };
            match cursor.next(&self.image) {
                Ok(f) => {
                    if f.kind == KIND_DATA && f.lgpos >= self.from {
                        let payload = self
                            .image
                            .get(f.payload.0..f.payload.1)
                            .unwrap_or_default()
                            .to_vec();
                        return Ok(Some(LogRecord {
                            lgpos: f.lgpos,
                            payload,
                        }));
                    }
                }
                Err(Stop::Limit) => {
                    self.idx += 1;
                    self.cursor = None;
                }
                Err(Stop::Invalid) if is_last => {
                    self.done = true;
                }
                Err(Stop::Invalid) => {
                    let at = crate::record::lgpos_at(cursor.generation(), cursor.pos);
                    let path = self
                        .gens
                        .get(self.idx)
                        .map(|g| g.path.clone())
                        .unwrap_or_default();
                    return Err(Error::new(ErrorKind::LogFileCorrupt)
                        .with_path(path)
                        .with_lgpos(at)
                        .with_message(
                            "a record before the end of a finished generation does not verify",
                        ));
                }
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<LogRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
