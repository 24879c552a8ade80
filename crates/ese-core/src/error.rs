//! The one error type of the engine: a JET error code plus the context that explains it.
//!
//! Every kind carries ESE's exact numeric value ([`ErrorKind::code`]) and its symbol
//! ([`ErrorKind::name`], e.g. `JET_errSessionContextAlreadySet`). [`Error`] adds the context
//! that makes a report useful (a message, a path, a page number, a log position) and keeps the
//! underlying [`std::io::Error`] as its [`source`](std::error::Error::source).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ids::{Lgpos, Pgno};

macro_rules! jet_errors {
    ($( $name:ident = $code:literal, $msg:literal; )*) => {
        /// A JET error, named as ESE names it without the `JET_err` prefix.
        ///
        /// The numeric value is ESE's (`code()`); new kinds may be added, so the enum is
        /// `#[non_exhaustive]`.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $(
                #[doc = concat!("`JET_err", stringify!($name), "` (", stringify!($code), "): ", $msg, ".")]
                $name,
            )*
        }

        impl ErrorKind {
            /// Every kind, in table order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name,)*];

            /// ESE's numeric value of this error (always negative), e.g. -1912.
            pub const fn code(self) -> i32 {
                match self { $(ErrorKind::$name => $code,)* }
            }

            /// ESE's symbol, e.g. `"JET_errSessionContextAlreadySet"`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorKind::$name => concat!("JET_err", stringify!($name)),)* }
            }

            /// The one-line description of this error.
            pub const fn message(self) -> &'static str {
                match self { $(ErrorKind::$name => $msg,)* }
            }

            /// The kind with ESE's numeric value `code`, if this engine knows it.
            pub const fn from_code(code: i32) -> Option<ErrorKind> {
                match code { $($code => Some(ErrorKind::$name),)* _ => None }
            }
        }
    };
}

include!("error_table.rs");

impl ErrorKind {
    /// Looks a kind up by its symbol, with or without the `JET_err` prefix.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        let bare = name.strip_prefix("JET_err").unwrap_or(name);
        ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.name().get(7..) == Some(bare))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message())
    }
}

/// Context attached to an [`Error`]. Boxed so that `Error` stays two words and the common
/// context-free errors (`RecordNotFound`, `WriteConflict`) cost no allocation.
#[derive(Debug, Default, Clone)]
struct Detail {
    message: Option<String>,
    path: Option<PathBuf>,
    pgno: Option<Pgno>,
    lgpos: Option<Lgpos>,
    source: Option<Arc<io::Error>>,
}

/// The engine's error: an [`ErrorKind`] (ESE's code) with optional context.
///
/// `Display` reads like
/// `JET_errReadVerifyFailure (-1018): checksum mismatch on a page read, page 4711 of db.edb`.
/// Cloning is cheap (the context is shared), so the engine can remember the first fatal error
/// and hand it to every later caller.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    detail: Option<Box<Detail>>,
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` without context.
    pub const fn new(kind: ErrorKind) -> Error {
        Error { kind, detail: None }
    }

    /// The JET error kind.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// ESE's numeric value of this error, e.g. -1912.
    pub const fn code(&self) -> i32 {
        self.kind.code()
    }

    fn detail_mut(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(Box::default)
    }

    /// Adds a free-text explanation (shown after the kind's message).
    #[cold]
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Error {
        self.detail_mut().message = Some(message.into());
        self
    }

    /// Adds the path of the file concerned.
    #[cold]
    #[must_use]
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Error {
        self.detail_mut().path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Adds the page number concerned.
    #[cold]
    #[must_use]
    pub fn with_pgno(mut self, pgno: Pgno) -> Error {
        self.detail_mut().pgno = Some(pgno);
        self
    }

    /// Adds the log position concerned.
    #[cold]
    #[must_use]
    pub fn with_lgpos(mut self, lgpos: Lgpos) -> Error {
        self.detail_mut().lgpos = Some(lgpos);
        self
    }

    /// Keeps `source` as the underlying cause.
    #[cold]
    #[must_use]
    pub fn with_source(mut self, source: io::Error) -> Error {
        self.detail_mut().source = Some(Arc::new(source));
        self
    }

    /// The free-text explanation, if any.
    pub fn message(&self) -> Option<&str> {
        self.detail.as_ref().and_then(|d| d.message.as_deref())
    }

    /// The path of the file concerned, if any.
    pub fn path(&self) -> Option<&Path> {
        self.detail.as_ref().and_then(|d| d.path.as_deref())
    }

    /// The page number concerned, if any.
    pub fn pgno(&self) -> Option<Pgno> {
        self.detail.as_ref().and_then(|d| d.pgno)
    }

    /// The log position concerned, if any.
    pub fn lgpos(&self) -> Option<Lgpos> {
        self.detail.as_ref().and_then(|d| d.lgpos)
    }

    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.detail.as_ref().and_then(|d| d.source.as_deref())
    }

    /// Maps an I/O error to its JET kind and keeps it as the source: `NotFound` →
    /// `FileNotFound`, `PermissionDenied` → `FileAccessDenied`, `StorageFull` (ENOSPC) →
    /// `DiskFull`, `AlreadyExists` → `FileAlreadyExists`, `UnexpectedEof` → `FileIOBeyondEOF`,
    /// `OutOfMemory` → `OutOfMemory`, anything else → `DiskIO`.
    pub fn from_io(err: io::Error) -> Error {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::FileNotFound,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                ErrorKind::FileAccessDenied
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::DiskFull,
            io::ErrorKind::AlreadyExists => ErrorKind::FileAlreadyExists,
            io::ErrorKind::UnexpectedEof => ErrorKind::FileIOBeyondEOF,
            io::ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
            _ => ErrorKind::DiskIO,
        };
        Error::new(kind).with_source(err)
    }

    /// [`Error::from_io`] with the path of the file concerned.
    pub fn from_io_at(err: io::Error, path: impl AsRef<Path>) -> Error {
        Error::from_io(err).with_path(path)
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::from_io(err)
    }
}

impl PartialEq<ErrorKind> for Error {
    fn eq(&self, other: &ErrorKind) -> bool {
        self.kind == *other
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(d) = &self.detail {
            if let Some(m) = &d.message {
                write!(f, ": {m}")?;
            }
            if let Some(p) = d.pgno {
                write!(f, ", page {p}")?;
            }
            if let Some(path) = &d.path {
                let sep = if d.pgno.is_some() { " of" } else { "," };
                write!(f, "{sep} {}", path.display())?;
            }
            if let Some(l) = d.lgpos {
                write!(f, ", at log position {l}")?;
            }
            if let Some(s) = &d.source {
                write!(f, " ({s})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({self})")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail
            .as_ref()
            .and_then(|d| d.source.as_deref())
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::other(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static_and_small() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
        check::<ErrorKind>();
        assert_eq!(std::mem::size_of::<Error>(), 16);
    }

    #[test]
    fn display_reads_like_ese() {
        let e = Error::new(ErrorKind::SessionContextAlreadySet);
        assert_eq!(
            e.to_string(),
            "JET_errSessionContextAlreadySet (-1912): the session is already associated with a thread"
        );
        let e = Error::new(ErrorKind::ReadVerifyFailure)
            .with_pgno(Pgno(4711))
            .with_path("db.edb");
        assert_eq!(
            e.to_string(),
            "JET_errReadVerifyFailure (-1018): checksum mismatch on a page read, page 4711 of db.edb"
        );
    }

    #[test]
    fn io_errors_map_and_keep_source() {
        use std::error::Error as _;
        let e = Error::from_io(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(e.kind(), ErrorKind::DiskFull);
        assert!(e.source().is_some());
        let e = Error::from_io(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind(), ErrorKind::FileAccessDenied);
        let e = Error::from_io(io::Error::other("boom"));
        assert_eq!(e.kind(), ErrorKind::DiskIO);
        assert!(e.to_string().contains("boom"));
    }

    #[test]
    fn table_is_consistent() {
        let mut codes = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(k.code() < 0, "{k:?}");
            assert!(codes.insert(k.code()), "duplicate code {}", k.code());
            assert_eq!(ErrorKind::from_code(k.code()), Some(*k));
            assert_eq!(ErrorKind::from_name(k.name()), Some(*k));
            assert!(k.name().starts_with("JET_err"));
        }
    }
}
