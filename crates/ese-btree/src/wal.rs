//! The write-ahead log as the page store sees it: append a record, make records durable, ask
//! how far they are durable. `ese-log`'s `Log` implements [`Wal`] in the upper layer;
//! [`MemWal`] is an in-memory implementation for tests and benchmarks.

use ese_core::{Lgpos, Result};
use parking_lot::Mutex;

/// The write-ahead log the page store writes its page records to (ESE's `LOG`).
///
/// Positions returned by [`Wal::append`] increase strictly.
pub trait Wal: Send + Sync {
    /// Appends one record (opaque bytes) and returns its position. The record is not durable
    /// yet.
    ///
    /// # Errors
    /// Whatever the log reports: `LogWriteFail`, `LogDiskFull`, `InstanceUnavailable`.
    fn append(&self, record: &[u8]) -> Result<Lgpos>;

    /// Appends the one record made of `parts` in order, as [`Wal::append`] of their
    /// concatenation would (a log that can frame the pieces as they are saves the copy).
    ///
    /// # Errors
    /// As [`Wal::append`].
    fn append_parts(&self, parts: &[&[u8]]) -> Result<Lgpos> {
        self.append(&parts.concat())
    }

    /// Makes every record with a position `<= up_to` durable.
    ///
    /// # Errors
    /// `LogWriteFail` / `DiskIO` when the flush fails.
    fn flush(&self, up_to: Lgpos) -> Result<()>;

    /// Asks that every record with a position `<= up_to` become durable soon, without waiting
    /// (a lazy commit): a log with a background flusher syncs them at its next interval. The
    /// default does nothing: the records become durable at the next [`Wal::flush`].
    fn flush_lazily(&self, up_to: Lgpos) {
        let _ = up_to;
    }

    /// The position up to which (inclusive) records are durable.
    fn durable_lgpos(&self) -> Lgpos;
}

/// An in-memory [`Wal`]: a list of records with a durable mark. A crash is simulated by
/// keeping only the records up to the mark ([`MemWal::durable_records`]).
#[derive(Debug, Default)]
pub struct MemWal {
    inner: Mutex<MemWalInner>,
}

#[derive(Debug, Default)]
struct MemWalInner {
    records: Vec<(Lgpos, Vec<u8>)>,
    durable: usize,
    discard: bool,
    bytes: u64,
}

impl MemWal {
    /// An empty log.
    pub fn new() -> MemWal {
        MemWal::default()
    }

    /// A log that keeps no records (for benchmarks): every record is durable at once and only
    /// counted ([`MemWal::bytes_appended`]).
    pub fn discarding() -> MemWal {
        let w = MemWal::default();
        w.inner.lock().discard = true;
        w
    }

    fn lgpos_of(n: usize) -> Lgpos {
        // One record per (isec, ib) step in generation 1: 2^32 records are enough for a test.
        Lgpos::from_u64((1u64 << 32) | (n as u64 + 1))
    }

    /// All records appended so far, durable or not.
    pub fn records(&self) -> Vec<(Lgpos, Vec<u8>)> {
        self.inner.lock().records.clone()
    }

    /// Number of records appended (kept ones; a discarding log counts none).
    pub fn record_count(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// The records a crash would leave: those up to the durable mark.
    pub fn durable_records(&self) -> Vec<(Lgpos, Vec<u8>)> {
        let g = self.inner.lock();
        g.records.get(..g.durable).unwrap_or_default().to_vec()
    }

    /// A new log holding only the durable records (the log after a crash).
    #[must_use]
    pub fn crash(&self) -> MemWal {
        let recs = self.durable_records();
        let n = recs.len();
        MemWal {
            inner: Mutex::new(MemWalInner {
                records: recs,
                durable: n,
                discard: false,
                bytes: 0,
            }),
        }
    }

    /// Total bytes of records appended.
    pub fn bytes_appended(&self) -> u64 {
        self.inner.lock().bytes
    }
}

impl Wal for MemWal {
    fn append(&self, record: &[u8]) -> Result<Lgpos> {
        let mut g = self.inner.lock();
        g.bytes += record.len() as u64;
        if g.discard {
            let n = g.durable;
            g.durable += 1;
            return Ok(MemWal::lgpos_of(n));
        }
        let lg = MemWal::lgpos_of(g.records.len());
        g.records.push((lg, record.to_vec()));
        Ok(lg)
    }

    fn flush(&self, up_to: Lgpos) -> Result<()> {
        let mut g = self.inner.lock();
        if g.discard {
            return Ok(());
        }
        let n = g.records.partition_point(|(l, _)| *l <= up_to);
        g.durable = g.durable.max(n);
        Ok(())
    }

    fn durable_lgpos(&self) -> Lgpos {
        let g = self.inner.lock();
        if g.durable == 0 {
            Lgpos::MIN
        } else {
            MemWal::lgpos_of(g.durable - 1)
        }
    }
}
