//! File names of a log stream (ESE's naming with base name `edb`): `edb.log` (current
//! generation), `edbXXXXXXXX.log` (finished generation, 8 hex digits), `edbtmp.log` (the next
//! generation being prepared), `edbres00001.jrs`/`edbres00002.jrs` (reserve logs),
//! `edbrcy00001.log`... (generations no longer needed, kept with circular logging to become
//! later generations) and `edb.chk` (checkpoint).

#![deny(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

/// Names of the files of one stream in one directory.
#[derive(Clone, Debug)]
pub(crate) struct StreamFiles {
    pub(crate) dir: PathBuf,
    pub(crate) base: String,
}

/// Number of reserve logs (ESE's minimum).
pub(crate) const RESERVE_LOGS: u32 = 2;

/// Most generation files circular logging keeps for reuse (`edbrcyNNNNN.log`).
pub(crate) const RECYCLED_LOGS: u32 = 8;

impl StreamFiles {
    pub(crate) fn new(dir: &Path, base: &str) -> StreamFiles {
        StreamFiles {
            dir: dir.to_path_buf(),
            base: base.to_owned(),
        }
    }

    /// `edb.log`.
    pub(crate) fn current(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.base))
    }

    /// `edbXXXXXXXX.log` for `generation`.
    pub(crate) fn archive(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("{}{generation:08X}.log", self.base))
    }

    /// `edbtmp.log`.
    pub(crate) fn temp(&self) -> PathBuf {
        self.dir.join(format!("{}tmp.log", self.base))
    }

    /// `edbres0000N.jrs` (N from 1).
    pub(crate) fn reserve(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}res{n:05}.jrs", self.base))
    }

    /// `edbrcy0000N.log` (N from 1): a generation file kept for reuse.
    pub(crate) fn recycled(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}rcy{n:05}.log", self.base))
    }

    /// `edb.chk`.
    pub(crate) fn checkpoint(&self) -> PathBuf {
        self.dir.join(format!("{}.chk", self.base))
    }

    /// The generation named by an archive file name (`edbXXXXXXXX.log` or ESE's short
    /// `edbXXXXX.log`), if `name` is one.
    pub(crate) fn parse_archive(&self, name: &str) -> Option<u32> {
        let hex = name
            .strip_prefix(self.base.as_str())?
            .strip_suffix(".log")?;
        if (hex.len() != 8 && hex.len() != 5) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(hex, 16).ok().filter(|g| *g > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ese() {
        let f = StreamFiles::new(Path::new("/l"), "edb");
        assert_eq!(f.current(), Path::new("/l/edb.log"));
        assert_eq!(f.archive(0x1a), Path::new("/l/edb0000001A.log"));
        assert_eq!(f.reserve(2), Path::new("/l/edbres00002.jrs"));
        assert_eq!(f.checkpoint(), Path::new("/l/edb.chk"));
        assert_eq!(f.parse_archive("edb0000001A.log"), Some(0x1a));
        assert_eq!(f.parse_archive("edb0001A.log"), Some(0x1a));
        assert_eq!(f.parse_archive("edbtmp.log"), None);
        assert_eq!(f.recycled(3), Path::new("/l/edbrcy00003.log"));
        assert_eq!(f.parse_archive("edbrcy00003.log"), None);
        assert_eq!(f.parse_archive("edb.log"), None);
        assert_eq!(f.parse_archive("edb00000000.log"), None);
        assert_eq!(f.parse_archive("xyz0000001A.log"), None);
    }
}
