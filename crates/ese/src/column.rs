//! Column types, column options and column definitions (JET_COLUMNDEF, JET_coltyp*,
//! JET_bitColumn*), with ESE's limits and rules.

use bitflags::bitflags;
use ese_core::{Error, ErrorKind, Result};

/// A column's data type (ESE's `JET_coltyp*`, with its numeric value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ColumnType {
    /// `JET_coltypBit` (1): a boolean, one byte (0 or non-zero).
    Bit = 1,
    /// `JET_coltypUnsignedByte` (2): u8.
    UnsignedByte = 2,
    /// `JET_coltypShort` (3): i16.
    Short = 3,
    /// `JET_coltypLong` (4): i32.
    Long = 4,
    /// `JET_coltypCurrency` (5): i64 (money in ten-thousandths).
    Currency = 5,
    /// `JET_coltypIEEESingle` (6): f32.
    IEEESingle = 6,
    /// `JET_coltypIEEEDouble` (7): f64.
    IEEEDouble = 7,
    /// `JET_coltypDateTime` (8): an OLE automation date (f64 days since 1899-12-30).
    DateTime = 8,
    /// `JET_coltypBinary` (9): up to 255 bytes.
    Binary = 9,
    /// `JET_coltypText` (10): up to 255 bytes of text, case-insensitive by default.
    Text = 10,
    /// `JET_coltypLongBinary` (11): up to 2 GiB.
    LongBinary = 11,
    /// `JET_coltypLongText` (12): up to 2 GiB of text.
    LongText = 12,
    /// `JET_coltypUnsignedLong` (14): u32.
    UnsignedLong = 14,
    /// `JET_coltypLongLong` (15): i64.
    LongLong = 15,
    /// `JET_coltypGUID` (16): 16 bytes.
    Guid = 16,
    /// `JET_coltypUnsignedShort` (17): u16.
    UnsignedShort = 17,
    /// `JET_coltypUnsignedLongLong` (18): u64.
    UnsignedLongLong = 18,
}

impl ColumnType {
    /// Every type, in JET order.
    pub const ALL: [ColumnType; 17] = [
        ColumnType::Bit,
        ColumnType::UnsignedByte,
        ColumnType::Short,
        ColumnType::Long,
        ColumnType::Currency,
        ColumnType::IEEESingle,
        ColumnType::IEEEDouble,
        ColumnType::DateTime,
        ColumnType::Binary,
        ColumnType::Text,
        ColumnType::LongBinary,
        ColumnType::LongText,
        ColumnType::UnsignedLong,
        ColumnType::LongLong,
        ColumnType::Guid,
        ColumnType::UnsignedShort,
        ColumnType::UnsignedLongLong,
    ];

    /// The type with JET value `v`.
    ///
    /// # Errors
    /// `InvalidColumnType` (-1511) for values that are not a type (0 = Nil, 13 = SLV, 19+).
    pub fn from_u32(v: u32) -> Result<ColumnType> {
        ColumnType::ALL
            .iter()
            .copied()
            .find(|t| *t as u32 == v)
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidColumnType).with_message(format!("column type {v}"))
            })
    }

    /// The size in bytes of a fixed-size type, `None` for Binary/Text/long types.
    pub const fn fixed_size(self) -> Option<u32> {
        match self {
            ColumnType::Bit | ColumnType::UnsignedByte => Some(1),
            ColumnType::Short | ColumnType::UnsignedShort => Some(2),
            ColumnType::Long | ColumnType::UnsignedLong | ColumnType::IEEESingle => Some(4),
            ColumnType::Currency
            | ColumnType::IEEEDouble
            | ColumnType::DateTime
            | ColumnType::LongLong
            | ColumnType::UnsignedLongLong => Some(8),
            ColumnType::Guid => Some(16),
            ColumnType::Binary
            | ColumnType::Text
            | ColumnType::LongBinary
            | ColumnType::LongText => None,
        }
    }

    /// Whether it is a long type (LongBinary, LongText): values may be stored apart from the
    /// record, in the table's long-value tree.
    pub const fn is_long(self) -> bool {
        matches!(self, ColumnType::LongBinary | ColumnType::LongText)
    }

    /// Whether it is a text type.
    pub const fn is_text(self) -> bool {
        matches!(self, ColumnType::Text | ColumnType::LongText)
    }

    /// The largest value in bytes: the fixed size, 255 for Binary/Text (`JET_cbColumnMost`),
    /// 2 GiB - 1 for long types.
    pub const fn max_size(self) -> u32 {
        match self.fixed_size() {
            Some(n) => n,
            None if self.is_long() => 0x7FFF_FFFF,
            None => 255,
        }
    }
}

bitflags! {
    /// Options of a column (ESE's `JET_bitColumn*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ColumnGrbit: u32 {
        /// `JET_bitColumnFixed` (0x1): stored in the fixed area.
        const FIXED = 0x1;
        /// `JET_bitColumnTagged` (0x2): stored in the tagged area (sparse, may be
        /// multi-valued).
        const TAGGED = 0x2;
        /// `JET_bitColumnNotNULL` (0x4): a value is required.
        const NOT_NULL = 0x4;
        /// `JET_bitColumnVersion` (0x8): an i32 set to 0 at insert and bumped (wrapping) on
        /// every replace; it cannot be set on replace.
        const VERSION = 0x8;
        /// `JET_bitColumnAutoincrement` (0x10): assigned when an insert is prepared, from 1 up
        /// (Long or Currency/LongLong; one per table); it can never be set.
        const AUTOINCREMENT = 0x10;
        /// `JET_bitColumnTTKey` (0x40): a key column of a temporary table
        /// ([`Session::open_temp_table`](crate::Session::open_temp_table)); key columns sort
        /// in the order they are given.
        const TT_KEY = 0x40;
        /// `JET_bitColumnTTDescending` (0x80): with `TT_KEY`, the column sorts descending.
        const TT_DESCENDING = 0x80;
        /// `JET_bitColumnMultiValued` (0x400): several values per record (must be tagged).
        const MULTI_VALUED = 0x400;
        /// `JET_bitColumnEscrowUpdate` (0x800): updated by commuting deltas
        /// ([`Table::escrow_update`](crate::Table::escrow_update); Long or LongLong, with a
        /// default value, which an insert stores); it cannot be set on replace.
        const ESCROW_UPDATE = 0x800;
        /// `JET_bitColumnDeleteOnZero` (0x20000): with escrow, delete the record when the
        /// committed value reaches zero (checked when a transaction with a delta on it ends).
        const DELETE_ON_ZERO = 0x20000;
        /// `JET_bitColumnVariable` (0x40000): stored in the variable area.
        const VARIABLE = 0x4_0000;
    }
}

/// Code page of a text column: ESE knows ASCII (1252) and Unicode (1200, UTF-16LE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CodePage {
    /// Windows-1252 / ASCII text (`1252`).
    #[default]
    Ascii,
    /// UTF-16 little-endian text (`1200`).
    Unicode,
}

impl CodePage {
    /// ESE's numeric code page.
    pub const fn value(self) -> u16 {
        match self {
            CodePage::Ascii => 1252,
            CodePage::Unicode => 1200,
        }
    }

    /// The code page with ESE's value `v`.
    ///
    /// # Errors
    /// `InvalidCodePage` (-1063) for anything but 1252 (or 0, meaning 1252) and 1200.
    pub fn from_value(v: u16) -> Result<CodePage> {
        match v {
            0 | 1252 => Ok(CodePage::Ascii),
            1200 => Ok(CodePage::Unicode),
            _ => Err(Error::new(ErrorKind::InvalidCodePage).with_message(format!("code page {v}"))),
        }
    }
}

/// The storage area of a column, decided by its id range (as in ESE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ColumnArea {
    /// Ids 1..=127.
    Fixed,
    /// Ids 128..=255.
    Variable,
    /// Ids 256..=65535.
    Tagged,
}

/// First column id of each area, and the end of the id space.
pub(crate) const FIRST_FIXED: u32 = 1;
pub(crate) const LAST_FIXED: u32 = 127;
pub(crate) const FIRST_VARIABLE: u32 = 128;
pub(crate) const LAST_VARIABLE: u32 = 255;
pub(crate) const FIRST_TAGGED: u32 = 256;
pub(crate) const LAST_TAGGED: u32 = 65_535;

/// The area a column id belongs to.
pub(crate) fn area_of(id: u32) -> Option<ColumnArea> {
    match id {
        FIRST_FIXED..=LAST_FIXED => Some(ColumnArea::Fixed),
        FIRST_VARIABLE..=LAST_VARIABLE => Some(ColumnArea::Variable),
        FIRST_TAGGED..=LAST_TAGGED => Some(ColumnArea::Tagged),
        _ => None,
    }
}

/// The definition of a column (ESE's `JET_COLUMNDEF` plus its name and default value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column's name: 1 to 64 characters, no control characters, not starting with a
    /// space.
    pub name: String,
    /// The data type.
    pub coltyp: ColumnType,
    /// Maximum size in bytes (0 = the type's maximum); only meaningful for Binary, Text and
    /// long types.
    pub cb_max: u32,
    /// Options.
    pub grbit: ColumnGrbit,
    /// Code page of text columns.
    pub code_page: CodePage,
    /// Default value, used when a record has no value for the column (at most 255 bytes).
    pub default: Option<Vec<u8>>,
}

impl ColumnDef {
    /// A column of `coltyp` named `name` with no options.
    pub fn new(name: &str, coltyp: ColumnType) -> ColumnDef {
        ColumnDef {
            name: name.to_owned(),
            coltyp,
            cb_max: 0,
            grbit: ColumnGrbit::empty(),
            code_page: CodePage::Ascii,
            default: None,
        }
    }

    /// The same definition with options `grbit`.
    #[must_use]
    pub fn grbit(mut self, grbit: ColumnGrbit) -> ColumnDef {
        self.grbit = grbit;
        self
    }

    /// The same definition with maximum size `cb_max` bytes.
    #[must_use]
    pub fn max_size(mut self, cb_max: u32) -> ColumnDef {
        self.cb_max = cb_max;
        self
    }

    /// The same definition with a default value.
    #[must_use]
    pub fn default_value(mut self, value: &[u8]) -> ColumnDef {
        self.default = Some(value.to_vec());
        self
    }

    /// The same definition with a code page (text columns).
    #[must_use]
    pub fn code_page(mut self, cp: CodePage) -> ColumnDef {
        self.code_page = cp;
        self
    }

    /// The effective maximum size of a value in bytes.
    pub fn effective_max(&self) -> u32 {
        let t = self.coltyp.max_size();
        if self.cb_max == 0 || self.coltyp.fixed_size().is_some() {
            t
        } else {
            self.cb_max.min(t)
        }
    }

    /// Whether this is a fixed Binary column (`JET_coltypBinary` with `JET_bitColumnFixed`):
    /// its key segment is its bytes after the prefix byte, as ESE normalizes a fixed field.
    pub(crate) fn is_fixed_binary(&self) -> bool {
        self.coltyp == ColumnType::Binary && self.area() == ColumnArea::Fixed
    }

    /// The area this definition asks for: tagged for tagged, multi-valued and long columns;
    /// fixed for fixed-size types (unless tagged); variable for Binary/Text.
    pub(crate) fn area(&self) -> ColumnArea {
        if self
            .grbit
            .intersects(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED)
            || self.coltyp.is_long()
        {
            ColumnArea::Tagged
        } else if self.coltyp.fixed_size().is_some() || self.grbit.contains(ColumnGrbit::FIXED) {
            ColumnArea::Fixed
        } else {
            ColumnArea::Variable
        }
    }

    /// Checks the definition against ESE's rules.
    ///
    /// # Errors
    /// `InvalidName` (-1002) for a bad name; `MultiValuedColumnMustBeTagged` (-1509) for a
    /// multi-valued fixed or variable column; `CannotBeTagged` (-1521) for a tagged
    /// auto-increment or version column; `InvalidColumnType` (-1511) for an auto-increment
    /// that is not Long/Currency/LongLong, a version column that is not Long, an escrow column
    /// that is not Long/LongLong, or a fixed long column; `TaggedNotNULL` (-1514) for a tagged
    /// NotNULL column; `DefaultValueTooBig` (-1524) for a default over 255 bytes or over the
    /// column's size; `InvalidParameter` (-1003) for an escrow column without a default or
    /// a delete-on-zero column without escrow; `InvalidColumnType` for a fixed type whose
    /// default has the wrong size.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        let g = self.grbit;
        if g.contains(ColumnGrbit::FIXED) && self.coltyp.is_long() {
            return Err(Error::new(ErrorKind::InvalidColumnType)
                .with_message("a long column cannot be fixed"));
        }
        if g.contains(ColumnGrbit::MULTI_VALUED)
            && (g.contains(ColumnGrbit::FIXED) || g.contains(ColumnGrbit::VARIABLE))
        {
            return Err(Error::new(ErrorKind::MultiValuedColumnMustBeTagged));
        }
        let tagged = self.area() == ColumnArea::Tagged;
        if tagged
            && g.intersects(
                ColumnGrbit::AUTOINCREMENT | ColumnGrbit::VERSION | ColumnGrbit::ESCROW_UPDATE,
            )
        {
            return Err(Error::new(ErrorKind::CannotBeTagged));
        }
        if tagged && g.contains(ColumnGrbit::NOT_NULL) {
            return Err(Error::new(ErrorKind::TaggedNotNULL));
        }
        if g.contains(ColumnGrbit::AUTOINCREMENT)
            && !matches!(
                self.coltyp,
                ColumnType::Long | ColumnType::Currency | ColumnType::LongLong
            )
        {
            return Err(Error::new(ErrorKind::InvalidColumnType)
                .with_message("an auto-increment column is Long, Currency or LongLong"));
        }
        if g.contains(ColumnGrbit::VERSION) && self.coltyp != ColumnType::Long {
            return Err(
                Error::new(ErrorKind::InvalidColumnType).with_message("a version column is Long")
            );
        }
        if g.contains(ColumnGrbit::ESCROW_UPDATE) {
            if !matches!(self.coltyp, ColumnType::Long | ColumnType::LongLong) {
                return Err(Error::new(ErrorKind::InvalidColumnType)
                    .with_message("an escrow column is Long or LongLong"));
            }
            if self.default.is_none() {
                return Err(Error::new(ErrorKind::InvalidParameter)
                    .with_message("an escrow column needs a default value"));
            }
        }
        if g.contains(ColumnGrbit::DELETE_ON_ZERO) && !g.contains(ColumnGrbit::ESCROW_UPDATE) {
            return Err(Error::new(ErrorKind::InvalidParameter)
                .with_message("delete-on-zero needs an escrow column"));
        }
        if let Some(d) = &self.default {
            if d.len() > 255 || d.len() as u32 > self.effective_max() {
                return Err(Error::new(ErrorKind::DefaultValueTooBig)
                    .with_message(format!("default of {} bytes", d.len())));
            }
            if let Some(n) = self.coltyp.fixed_size()
                && d.len() as u32 != n
            {
                return Err(
                    Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
                        "a default of a {:?} column has {n} bytes",
                        self.coltyp
                    )),
                );
            }
        }
        if self.cb_max > self.coltyp.max_size() && self.coltyp.fixed_size().is_none() {
            return Err(
                Error::new(ErrorKind::InvalidParameter).with_message(format!(
                    "maximum size {} bytes is over the type's {}",
                    self.cb_max,
                    self.coltyp.max_size()
                )),
            );
        }
        Ok(())
    }

    /// Checks a value for this column.
    ///
    /// # Errors
    /// `InvalidBufferSize` (-1047) when a fixed-size type gets another size; `ColumnTooBig`
    /// (-1506) when a value is over the column's maximum (the message gives both sizes).
    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        if let Some(n) = self.coltyp.fixed_size() {
            if value.len() as u32 != n {
                return Err(
                    Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
                        "column {:?} of type {:?} takes {n} bytes, got {}",
                        self.name,
                        self.coltyp,
                        value.len()
                    )),
                );
            }
            return Ok(());
        }
        let max = self.effective_max();
        if value.len() as u64 > u64::from(max) {
            return Err(Error::new(ErrorKind::ColumnTooBig).with_message(format!(
                "column {:?} holds at most {max} bytes, got {}",
                self.name,
                value.len()
            )));
        }
        Ok(())
    }
}

/// The longest object name in characters (`JET_cbNameMost`).
pub(crate) const NAME_MOST: usize = 64;

/// Checks an object name (table, column, index) as ESE does: 1 to 64 characters, no control
/// characters, no leading space, none of `!`, `.`, `[`, `]`.
///
/// # Errors
/// `InvalidName` (-1002), with the reason.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(ErrorKind::InvalidName).with_message(format!("{name:?}: {why}")))
    };
    let n = name.chars().count();
    if n == 0 {
        return bad("a name has at least one character");
    }
    if n > NAME_MOST {
        return bad("a name has at most 64 characters");
    }
    if name.starts_with(' ') {
        return bad("a name may not start with a space");
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '!' | '.' | '[' | ']'))
    {
        return bad("a name may not hold control characters or ! . [ ]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_sizes() {
        for t in ColumnType::ALL {
            assert_eq!(ColumnType::from_u32(t as u32).unwrap(), t);
        }
        assert_eq!(ColumnType::from_u32(13).unwrap_err().code(), -1511);
        assert_eq!(ColumnType::from_u32(0).unwrap_err().code(), -1511);
        assert_eq!(ColumnType::Guid.fixed_size(), Some(16));
        assert_eq!(ColumnType::Text.max_size(), 255);
        assert_eq!(ColumnType::LongBinary.max_size(), 0x7FFF_FFFF);
    }

    #[test]
    fn names_follow_ese_rules() {
        assert!(validate_name("files").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        for bad in ["", " x", "a.b", "a!b", "a[b", &"a".repeat(65), "a\u{1}"] {
            assert_eq!(validate_name(bad).unwrap_err().code(), -1002, "{bad:?}");
        }
    }

    #[test]
    fn definitions_follow_ese_rules() {
        let mv_fixed = ColumnDef::new("x", ColumnType::Long)
            .grbit(ColumnGrbit::FIXED | ColumnGrbit::MULTI_VALUED);
        assert_eq!(mv_fixed.validate().unwrap_err().code(), -1509);
        let tagged_auto = ColumnDef::new("x", ColumnType::Long)
            .grbit(ColumnGrbit::TAGGED | ColumnGrbit::AUTOINCREMENT);
        assert_eq!(tagged_auto.validate().unwrap_err().code(), -1521);
        let escrow_no_default =
            ColumnDef::new("x", ColumnType::Long).grbit(ColumnGrbit::ESCROW_UPDATE);
        assert_eq!(escrow_no_default.validate().unwrap_err().code(), -1003);
        let escrow = ColumnDef::new("x", ColumnType::Long)
            .grbit(ColumnGrbit::ESCROW_UPDATE)
            .default_value(&0i32.to_le_bytes());
        assert!(escrow.validate().is_ok());
        let tagged_nn = ColumnDef::new("x", ColumnType::Binary)
            .grbit(ColumnGrbit::TAGGED | ColumnGrbit::NOT_NULL);
        assert_eq!(tagged_nn.validate().unwrap_err().code(), -1514);
        let big_default = ColumnDef::new("x", ColumnType::Binary).default_value(&[0; 256]);
        assert_eq!(big_default.validate().unwrap_err().code(), -1524);
        let c = ColumnDef::new("n", ColumnType::Long);
        assert_eq!(c.check_value(&[1, 2]).unwrap_err().code(), -1047);
        let t = ColumnDef::new("t", ColumnType::Text).max_size(10);
        assert_eq!(t.check_value(&[0; 11]).unwrap_err().code(), -1506);
        assert!(t.check_value(&[0; 10]).is_ok());
    }
}
