//! [`LogConfig`]: where the log stream lives and how it behaves (ESE's logging system
//! parameters).

use std::path::{Path, PathBuf};

use ese_core::{Error, ErrorKind, Result};

/// Bytes in a log sector (`cbSec`). Every flush is padded to a sector boundary, so no sector
/// holding acknowledged records is ever rewritten (docs/format-log.md, "Assumptions about the
/// medium"). 512 is the smallest atomic-write unit any disk we support reports.
pub const SECTOR_SIZE: u32 = 512;

/// Smallest log file size in KiB (`JET_paramLogFileSize` minimum).
pub const MIN_FILE_SIZE_KIB: u32 = 64;
/// Largest log file size in KiB (`JET_paramLogFileSize` maximum). With 512-byte sectors, a
/// 32 MiB file has 65,536 sectors, the most a 16-bit `isec` can address.
pub const MAX_FILE_SIZE_KIB: u32 = 32_768;
/// ESE's default log file size in KiB (5 MiB).
pub const DEFAULT_FILE_SIZE_KIB: u32 = 5_120;

/// Configuration of a log stream (ESE: `JET_paramLogFilePath`, `JET_paramBaseName`,
/// `JET_paramLogFileSize`, `JET_paramCircularLog`, ...).
///
/// Build one with [`LogConfig::new`] and the setters; [`crate::Log::open`] validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Directory that holds the log files and the checkpoint (`JET_paramLogFilePath`; ESE keeps
    /// the checkpoint in the system path, we keep both together).
    pub log_dir: PathBuf,
    /// Base name of every file of the stream (`JET_paramBaseName`): exactly 3 ASCII
    /// alphanumeric characters. Default `"edb"`.
    pub base_name: String,
    /// Size of every generation file in KiB (`JET_paramLogFileSize`). Default 5,120; valid
    /// 64..=32,768.
    pub file_size_kib: u32,
    /// Page size in bytes of the databases this log serves (`JET_paramDatabasePageSize`),
    /// recorded in each generation header. Default 8,192; valid 4,096, 8,192, 16,384, 32,768.
    pub page_size: u32,
    /// Circular logging (`JET_paramCircularLog`): generations wholly older than the checkpoint
    /// are deleted. Default off (generations are kept until [`crate::Log::truncate`]).
    pub circular: bool,
    /// Upper bound in milliseconds on how long a record stays volatile once
    /// [`crate::Log::flush_lazily`] asked for it: a background flusher writes pending records
    /// at this interval, and syncs them when a lazy commit asked or
    /// [`crate::SYNC_BEHIND_BYTES`] are written and not synced (see the writer's notes on
    /// write-behind; ESE's lazy commit, `JET_bitCommitLazyFlush`). 0 disables the background
    /// threads: records become durable only through an explicit flush, and a rollover formats
    /// the next generation's file itself instead of finding it prepared ahead (every I/O then
    /// happens on the calling thread, in a deterministic order). Default 5; valid 0..=60,000.
    pub lazy_flush_ms: u32,
    /// Create the two reserve logs `edbres00001.jrs` and `edbres00002.jrs` at open, used
    /// when the disk fills. Default on.
    pub reserve_logs: bool,
}

impl LogConfig {
    /// The default configuration for a stream in `log_dir`.
    pub fn new(log_dir: impl AsRef<Path>) -> LogConfig {
        LogConfig {
            log_dir: log_dir.as_ref().to_path_buf(),
            base_name: "edb".to_owned(),
            file_size_kib: DEFAULT_FILE_SIZE_KIB,
            page_size: 8192,
            circular: false,
            lazy_flush_ms: 5,
            reserve_logs: true,
        }
    }

    /// Sets [`LogConfig::base_name`].
    #[must_use]
    pub fn base_name(mut self, base: impl Into<String>) -> LogConfig {
        self.base_name = base.into();
        self
    }

    /// Sets [`LogConfig::file_size_kib`] (KiB).
    #[must_use]
    pub fn file_size_kib(mut self, kib: u32) -> LogConfig {
        self.file_size_kib = kib;
        self
    }

    /// Sets [`LogConfig::page_size`] (bytes).
    #[must_use]
    pub fn page_size(mut self, bytes: u32) -> LogConfig {
        self.page_size = bytes;
        self
    }

    /// Sets [`LogConfig::circular`].
    #[must_use]
    pub fn circular(mut self, on: bool) -> LogConfig {
        self.circular = on;
        self
    }

    /// Sets [`LogConfig::lazy_flush_ms`] (milliseconds; 0 = no background flusher).
    #[must_use]
    pub fn lazy_flush_ms(mut self, ms: u32) -> LogConfig {
        self.lazy_flush_ms = ms;
        self
    }

    /// Sets [`LogConfig::reserve_logs`].
    #[must_use]
    pub fn reserve_logs(mut self, on: bool) -> LogConfig {
        self.reserve_logs = on;
        self
    }

    /// Size of one generation file in bytes.
    pub fn file_bytes(&self) -> u64 {
        u64::from(self.file_size_kib) * 1024
    }

    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// `InvalidParameter` naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorKind::InvalidParameter).with_message(m));
        if self.base_name.len() != 3 || !self.base_name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad(format!(
                "base name {:?} must be exactly 3 ASCII letters or digits",
                self.base_name
            ));
        }
        if !(MIN_FILE_SIZE_KIB..=MAX_FILE_SIZE_KIB).contains(&self.file_size_kib) {
            return bad(format!(
                "log file size {} KiB is outside {MIN_FILE_SIZE_KIB}..={MAX_FILE_SIZE_KIB}",
                self.file_size_kib
            ));
        }
        if ![4096, 8192, 16384, 32768].contains(&self.page_size) {
            return bad(format!(
                "page size {} is not one of 4096, 8192, 16384, 32768",
                self.page_size
            ));
        }
        if self.lazy_flush_ms > 60_000 {
            return bad(format!(
                "lazy flush bound {} ms is above 60000",
                self.lazy_flush_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let c = LogConfig::new("/x");
        c.validate().unwrap();
        for k in [63, 32_769, 0] {
            let e = c.clone().file_size_kib(k).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        }
        c.clone().file_size_kib(64).validate().unwrap();
        c.clone().file_size_kib(32_768).validate().unwrap();
        assert!(c.clone().base_name("ed").validate().is_err());
        assert!(c.clone().base_name("ed/").validate().is_err());
        assert!(c.clone().page_size(1000).validate().is_err());
        assert!(c.clone().lazy_flush_ms(60_001).validate().is_err());
    }
}
