//! Identifiers shared by every layer, with their on-disk encodings.
//!
//! All encodings are little-endian with explicit widths (docs/format.md):
//!
//! | type | width | encoding |
//! |---|---|---|
//! | [`Lgpos`] | 8 bytes | `ib: u16`, `isec: u16`, `generation: u32` (ESE's `LGPOS` field order) |
//! | [`Pgno`] | 4 bytes | `u32` |
//! | [`DbTime`] | 8 bytes | `u64` |
//! | [`TrxId`] | 8 bytes | `u64` |
//! | [`ObjId`] | 4 bytes | `u32` |

use std::fmt;

/// A position in the log stream (ESE's `LGPOS`): generation, sector within the generation's
/// file and byte within the sector.
///
/// Ordered by generation, then sector, then byte, which is the order of the log. Displayed as
/// ESE displays it: `(generation,isec,ib)` in hex, e.g. `(0000001A,0008,01F0)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lgpos {
    /// Log generation (`lGeneration`); the first generation is 1.
    pub generation: u32,
    /// Sector within the generation's file (`isec`).
    pub isec: u16,
    /// Byte offset within the sector (`ib`).
    pub ib: u16,
}

impl Lgpos {
    /// The smallest position: before every record.
    pub const MIN: Lgpos = Lgpos {
        generation: 0,
        isec: 0,
        ib: 0,
    };
    /// The largest position: after every record.
    pub const MAX: Lgpos = Lgpos {
        generation: u32::MAX,
        isec: u16::MAX,
        ib: u16::MAX,
    };
    /// Size of the on-disk encoding in bytes.
    pub const ENCODED_LEN: usize = 8;

    /// A position from its three parts.
    pub const fn new(generation: u32, isec: u16, ib: u16) -> Lgpos {
        Lgpos {
            generation,
            isec,
            ib,
        }
    }

    /// The position as one ordered integer: `generation << 32 | isec << 16 | ib`.
    pub const fn as_u64(self) -> u64 {
        ((self.generation as u64) << 32) | ((self.isec as u64) << 16) | self.ib as u64
    }

    /// The position from [`Lgpos::as_u64`]'s integer.
    pub const fn from_u64(v: u64) -> Lgpos {
        Lgpos {
            generation: (v >> 32) as u32,
            isec: (v >> 16) as u16,
            ib: v as u16,
        }
    }

    /// The on-disk encoding (8 bytes, little-endian: ib, isec, generation).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.ib.to_le_bytes());
        b[2..4].copy_from_slice(&self.isec.to_le_bytes());
        b[4..8].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    /// Decodes [`Lgpos::to_bytes`]'s encoding.
    pub fn from_bytes(b: [u8; 8]) -> Lgpos {
        let [a0, a1, b0, b1, c0, c1, c2, c3] = b;
        Lgpos {
            ib: u16::from_le_bytes([a0, a1]),
            isec: u16::from_le_bytes([b0, b1]),
            generation: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }
}

impl fmt::Display for Lgpos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({:08X},{:04X},{:04X})",
            self.generation, self.isec, self.ib
        )
    }
}

impl fmt::Debug for Lgpos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lgpos{self}")
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// Size of the on-disk encoding in bytes.
            pub const ENCODED_LEN: usize = $len;

            /// The on-disk encoding (little-endian).
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0.to_le_bytes()
            }

            /// Decodes [`Self::to_bytes`]'s encoding.
            pub const fn from_bytes(b: [u8; $len]) -> Self {
                $name(<$inner>::from_le_bytes(b))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

id_type!(
    /// A database page number (ESE's `PGNO`). Page 1 is the first page after the two header
    /// pages; 0 means "no page" (e.g. no sibling).
    Pgno(u32),
    4
);
id_type!(
    /// The database's logical clock (ESE's `DBTIME`): bumped on every page change and stamped
    /// on the page, so redo can tell whether a logged change is already on the page.
    DbTime(u64),
    8
);
id_type!(
    /// A transaction id (ESE's `TRX`): level-0 begins and commits take increasing values.
    TrxId(u64),
    8
);
id_type!(
    /// The object id of a B+tree (table, index or long-value tree; ESE's `OBJID`).
    ObjId(u32),
    4
);

impl Pgno {
    /// "No page".
    pub const NULL: Pgno = Pgno(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lgpos_orders_and_displays_like_ese() {
        let a = Lgpos::new(1, 8, 0x1f0);
        let b = Lgpos::new(1, 9, 0);
        let c = Lgpos::new(2, 0, 0);
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "(00000001,0008,01F0)");
        assert_eq!(Lgpos::from_u64(a.as_u64()), a);
        assert_eq!(Lgpos::from_bytes(a.to_bytes()), a);
        assert_eq!(a.to_bytes(), [0xf0, 0x01, 8, 0, 1, 0, 0, 0]);
        assert!(a.as_u64() < b.as_u64() && b.as_u64() < c.as_u64());
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(Pgno::from_bytes(Pgno(7).to_bytes()), Pgno(7));
        assert_eq!(
            DbTime::from_bytes(DbTime(u64::MAX).to_bytes()),
            DbTime(u64::MAX)
        );
        assert_eq!(TrxId(3).to_bytes(), [3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ObjId(2).to_string(), "2");
    }
}
