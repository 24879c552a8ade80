//! Key normalization: every column type maps to a byte string whose bytewise order is the
//! column's order, so B+trees compare keys with `memcmp` (ESE's normalized keys).
//!
//! # Segment encoding
//! Each index segment is one prefix byte followed by the value's bytes:
//! - prefix `0x00` null (nulls sort first), `0x7F` a value; with `SortNullsHigh` a null is
//!   `0xFF` (nulls sort last). The prefix is never inverted, so null placement is the same
//!   for ascending and descending segments.
//! - a descending segment inverts (bitwise NOT) every value byte after the prefix.
//!
//! # Value encodings
//! | type | bytes |
//! |---|---|
//! | Bit | 1 byte: 0x00 false, 0x01 true |
//! | UnsignedByte, UnsignedShort, UnsignedLong, UnsignedLongLong | big-endian |
//! | Short, Long, LongLong, Currency | big-endian with the sign bit flipped |
//! | IEEESingle, IEEEDouble, DateTime | IEEE bits big-endian; positive values get the sign bit set, negative values are inverted; `-0.0` is encoded as `+0.0` (equal keys); every NaN is one canonical NaN that sorts above `+inf` |
//! | GUID | bytes 10–15, 8–9, 6–7, 4–5, 0–3 of the 16-byte value (the order ESE and SQL Server give GUIDs) |
//! | Binary, LongBinary | groups of 8 bytes, each followed by a count byte: 1–8 = bytes used in a last group (zero-padded), 9 = a full group with more to follow; an empty value is one group of zeros with count 0. This keeps order and makes the encoding prefix-free, so multi-segment keys compare segment by segment |
//! | fixed Binary (`JET_bitColumnFixed`, [`SegmentSpec::fixed_binary`]) | the bytes as they are: every stored value has the column's size, so the encoding is prefix-free without groups (ESE's normalization of a fixed field). A 24-byte value takes 25 bytes instead of 28 |
//! | Text, LongText | the text folded to lower case (ASCII: `A`–`Z`; Unicode code page: Unicode simple lower-case mapping of each character of the UTF-16LE input), as UTF-8, then encoded as Binary. The collation is case-insensitive code-point order; it does not depend on the operating system's locale tables, so an OS upgrade never reorders an index (ESE's `SecondaryIndexCorrupted` after NLS changes cannot happen here) |
//!
//! Long values take part in a key up to the key's length limit, like ESE's.

#![deny(clippy::indexing_slicing)]

use ese_core::{Error, ErrorKind, Result};

use crate::column::{CodePage, ColumnType};

const PREFIX_NULL_LOW: u8 = 0x00;
const PREFIX_VALUE: u8 = 0x7F;
const PREFIX_NULL_HIGH: u8 = 0xFF;

/// Bytes per group of the binary encoding.
const GROUP: usize = 8;
/// Count byte of a full group followed by more.
const MORE: u8 = 9;

/// How one segment of an index key is normalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpec {
    /// The column's type.
    pub coltyp: ColumnType,
    /// The column's code page (text).
    pub code_page: CodePage,
    /// Descending order (`-` in the key definition).
    pub descending: bool,
    /// Nulls sort after values (`JET_bitIndexSortNullsHigh`).
    pub nulls_high: bool,
    /// `Some(size)` for a fixed Binary column of `size` bytes whose segment holds its bytes as
    /// they are (ESE's `FLDNormalizeBinarySegment` with `fFixedField`); `None` for every
    /// other column, and for a fixed Binary segment of an index written with the groups of 8
    /// (before table format 2, `catalog.rs`).
    pub fixed_binary: Option<u32>,
}

impl SegmentSpec {
    /// The size in bytes of a fixed Binary column keyed by its bytes as they are
    /// ([`SegmentSpec::fixed_binary`] of a Binary column), else `None`: the one test of
    /// whether the segment's value bytes are the column's.
    fn raw_fixed_binary(self) -> Option<usize> {
        match (self.coltyp, self.fixed_binary) {
            (ColumnType::Binary, Some(n)) => Some(n as usize),
            _ => None,
        }
    }
}

/// Appends the normalized form of `value` (or of null) for `spec` to `out`.
///
/// # Errors
/// `InvalidBufferSize` (-1047) when a fixed-size type gets a value of the wrong size;
/// `InvalidParameter` (-1003) for Unicode text of odd length.
pub fn normalize_segment(out: &mut Vec<u8>, spec: SegmentSpec, value: Option<&[u8]>) -> Result<()> {
    let Some(v) = value else {
        out.push(if spec.nulls_high {
            PREFIX_NULL_HIGH
        } else {
            PREFIX_NULL_LOW
        });
        return Ok(());
    };
    out.push(PREFIX_VALUE);
    let start = out.len();
    normalize_value(out, spec, v)?;
    if spec.descending {
        for b in out.get_mut(start..).unwrap_or_default() {
            *b = !*b;
        }
    }
    Ok(())
}

fn fixed<const N: usize>(v: &[u8], coltyp: ColumnType) -> Result<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| {
        Error::new(ErrorKind::InvalidBufferSize).with_message(format!(
            "a {coltyp:?} key segment takes {N} bytes, got {}",
            v.len()
        ))
    })
}

#[expect(
    clippy::big_endian_bytes,
    reason = "normalized keys compare bytewise, most significant byte first"
)]
fn normalize_value(out: &mut Vec<u8>, spec: SegmentSpec, v: &[u8]) -> Result<()> {
    let t = spec.coltyp;
    match t {
        ColumnType::Bit => out.push(u8::from(
            fixed::<1>(v, t)?.first().copied().unwrap_or(0) != 0,
        )),
        ColumnType::UnsignedByte => out.extend_from_slice(&fixed::<1>(v, t)?),
        ColumnType::UnsignedShort => {
            out.extend_from_slice(&u16::from_le_bytes(fixed(v, t)?).to_be_bytes());
        }
        ColumnType::UnsignedLong => {
            out.extend_from_slice(&u32::from_le_bytes(fixed(v, t)?).to_be_bytes());
        }
        ColumnType::UnsignedLongLong => {
            out.extend_from_slice(&u64::from_le_bytes(fixed(v, t)?).to_be_bytes());
        }
        ColumnType::Short => {
            out.extend_from_slice(
                &(i16::from_le_bytes(fixed(v, t)?).cast_unsigned() ^ 0x8000).to_be_bytes(),
            );
        }
        ColumnType::Long => {
            out.extend_from_slice(
                &(i32::from_le_bytes(fixed(v, t)?).cast_unsigned() ^ 0x8000_0000).to_be_bytes(),
            );
        }
        ColumnType::LongLong | ColumnType::Currency => {
            out.extend_from_slice(
                &(i64::from_le_bytes(fixed(v, t)?).cast_unsigned() ^ 0x8000_0000_0000_0000)
                    .to_be_bytes(),
            );
        }
        ColumnType::IEEESingle => {
            let f = f32::from_le_bytes(fixed(v, t)?);
            let bits = if f.is_nan() {
                f32::NAN.to_bits() & 0x7FFF_FFFF
            } else if f == 0.0 {
                0
            } else {
                f.to_bits()
            };
            let key = if bits & 0x8000_0000 != 0 {
                !bits
            } else {
                bits | 0x8000_0000
            };
            out.extend_from_slice(&key.to_be_bytes());
        }
        ColumnType::IEEEDouble | ColumnType::DateTime => {
            let f = f64::from_le_bytes(fixed(v, t)?);
            let bits = if f.is_nan() {
                f64::NAN.to_bits() & 0x7FFF_FFFF_FFFF_FFFF
            } else if f == 0.0 {
                0
            } else {
                f.to_bits()
            };
            let key = if bits & 0x8000_0000_0000_0000 != 0 {
                !bits
            } else {
                bits | 0x8000_0000_0000_0000
            };
            out.extend_from_slice(&key.to_be_bytes());
        }
        ColumnType::Guid => {
            let g = fixed::<16>(v, t)?;
            for range in [10..16, 8..10, 6..8, 4..6, 0..4] {
                out.extend_from_slice(g.get(range).unwrap_or_default());
            }
        }
        ColumnType::Binary if spec.raw_fixed_binary().is_some() => out.extend_from_slice(v),
        ColumnType::Binary | ColumnType::LongBinary => encode_groups(out, v),
        ColumnType::Text | ColumnType::LongText => {
            let folded = fold_text(v, spec.code_page)?;
            encode_groups(out, &folded);
        }
    }
    Ok(())
}

/// Text folded to lower case, as UTF-8 bytes (the collation described in the module docs).
///
/// # Errors
/// `InvalidParameter` for Unicode text of odd length.
pub fn fold_text(v: &[u8], cp: CodePage) -> Result<Vec<u8>> {
    match cp {
        CodePage::Ascii => Ok(v.iter().map(u8::to_ascii_lowercase).collect()),
        CodePage::Unicode => {
            if !v.len().is_multiple_of(2) {
                return Err(Error::new(ErrorKind::InvalidParameter)
                    .with_message("Unicode text has an even number of bytes (UTF-16LE)"));
            }
            let units = v.chunks_exact(2).map(|c| {
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            });
            let mut s = String::with_capacity(v.len());
            for ch in char::decode_utf16(units) {
                let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
                s.extend(ch.to_lowercase());
            }
            Ok(s.into_bytes())
        }
    }
}

fn encode_groups(out: &mut Vec<u8>, v: &[u8]) {
    if v.is_empty() {
        out.extend_from_slice(&[0; GROUP]);
        out.push(0);
        return;
    }
    // One reservation for every group (each GROUP bytes and a count byte). Each group is
    // built in a fixed-size array from a fixed-size chunk and appended whole: copies of
    // constant length compile to a few moves, where a byte loop or a slice copy per group
    // costs a loop or a call.
    out.reserve(v.len().div_ceil(GROUP) * (GROUP + 1));
    let mut full = v.chunks_exact(GROUP);
    for c in &mut full {
        let mut group = [MORE; GROUP + 1];
        if let (Some((bytes, _)), Ok(c)) = (
            group.split_first_chunk_mut::<GROUP>(),
            <&[u8; GROUP]>::try_from(c),
        ) {
            *bytes = *c;
        }
        out.extend_from_slice(&group);
    }
    let rest = full.remainder();
    if rest.is_empty() {
        // The last group ends the value: it counts its GROUP bytes instead of saying "more".
        if let Some(count) = out.last_mut() {
            *count = GROUP as u8;
        }
    } else {
        let mut group = [0u8; GROUP + 1];
        if let Some(d) = group.get_mut(..rest.len()) {
            d.copy_from_slice(rest);
        }
        if let Some(count) = group.last_mut() {
            // A remainder holds 1..GROUP bytes, so its length fits a byte.
            *count = rest.len() as u8;
        }
        out.extend_from_slice(&group);
    }
}

/// Appends the normalized form of `value` as a *prefix* of a Binary or Text value for `spec`
/// (ESE's `JET_bitPartialColumnStartLimit` / `SubStrLimit`): the prefix byte and the value's
/// bytes (text folded) without the group padding and counts, so every value that starts with
/// `value` has a normalized form that starts with these bytes. Other types get their full
/// normalized form.
///
/// A prefix that ends in zero bytes also matches the shorter values it extends with zeros
/// (the padding of the last group is zeros).
///
/// # Errors
/// As [`normalize_segment`].
pub fn normalize_prefix(out: &mut Vec<u8>, spec: SegmentSpec, value: &[u8]) -> Result<()> {
    let folded;
    let raw = match spec.coltyp {
        ColumnType::Binary | ColumnType::LongBinary => value,
        ColumnType::Text | ColumnType::LongText => {
            folded = fold_text(value, spec.code_page)?;
            &folded
        }
        _ => return normalize_segment(out, spec, Some(value)),
    };
    out.push(PREFIX_VALUE);
    let start = out.len();
    if spec.raw_fixed_binary().is_some() {
        // A fixed Binary segment is the value's bytes: a prefix is a prefix of them.
        out.extend_from_slice(raw);
    } else {
        // The bytes of a value appear in its groups in order, each group of 8 followed by a
        // count byte: a prefix of `n` bytes covers whole groups and a part of the next.
        let mut chunks = raw.chunks(GROUP).peekable();
        while let Some(c) = chunks.next() {
            out.extend_from_slice(c);
            if c.len() == GROUP && chunks.peek().is_some() {
                out.push(MORE);
            }
        }
    }
    if spec.descending {
        for b in out.get_mut(start..).unwrap_or_default() {
            *b = !*b;
        }
    }
    Ok(())
}

/// The length in bytes of the normalized segment at the start of `key` for `spec`, or `None`
/// when the key ends inside it (a truncated key) or does not hold a valid segment.
pub(crate) fn segment_len(key: &[u8], spec: SegmentSpec) -> Option<usize> {
    match *key.first()? {
        PREFIX_NULL_LOW | PREFIX_NULL_HIGH => return Some(1),
        PREFIX_VALUE => {}
        _ => return None,
    }
    if let Some(n) = fixed_key_len(spec.coltyp).or_else(|| spec.raw_fixed_binary()) {
        return (key.len() > n).then_some(n + 1);
    }
    let mut at = 1;
    loop {
        let count = *key.get(at + GROUP)?;
        let count = if spec.descending { !count } else { count };
        at += GROUP + 1;
        if count != MORE {
            return Some(at);
        }
    }
}

/// Bytes of the normalized value of a fixed-size type.
fn fixed_key_len(t: ColumnType) -> Option<usize> {
    match t {
        ColumnType::Bit | ColumnType::UnsignedByte => Some(1),
        ColumnType::Short | ColumnType::UnsignedShort => Some(2),
        ColumnType::Long | ColumnType::UnsignedLong | ColumnType::IEEESingle => Some(4),
        ColumnType::Currency
        | ColumnType::IEEEDouble
        | ColumnType::DateTime
        | ColumnType::LongLong
        | ColumnType::UnsignedLongLong => Some(8),
        ColumnType::Guid => Some(16),
        ColumnType::Binary | ColumnType::Text | ColumnType::LongBinary | ColumnType::LongText => {
            None
        }
    }
}

/// What a normalized segment stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A null column.
    Null,
    /// A value, in the column type's own format.
    Value(Vec<u8>),
}

/// The column value a whole normalized segment stands for (ESE's
/// `JET_bitRetrieveFromIndex`), or `None` when the value cannot be recovered (text is stored
/// folded to lower case). Floating-point values come back as the key holds them: `-0.0` as
/// `+0.0`, every NaN as one NaN.
pub(crate) fn decode_segment(seg: &[u8], spec: SegmentSpec) -> Option<Decoded> {
    let (&prefix, body) = seg.split_first()?;
    if prefix != PREFIX_VALUE {
        return Some(Decoded::Null);
    }
    let v: Vec<u8> = if spec.descending {
        body.iter().map(|b| !b).collect()
    } else {
        body.to_vec()
    };
    let be = |n: usize| -> Option<u64> {
        let b = v.get(..n)?;
        Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    };
    let out = match spec.coltyp {
        ColumnType::Bit | ColumnType::UnsignedByte => vec![*v.first()?],
        ColumnType::UnsignedShort => (be(2)? as u16).to_le_bytes().to_vec(),
        ColumnType::UnsignedLong => (be(4)? as u32).to_le_bytes().to_vec(),
        ColumnType::UnsignedLongLong => be(8)?.to_le_bytes().to_vec(),
        ColumnType::Short => ((be(2)? as u16) ^ 0x8000).to_le_bytes().to_vec(),
        ColumnType::Long => ((be(4)? as u32) ^ 0x8000_0000).to_le_bytes().to_vec(),
        ColumnType::LongLong | ColumnType::Currency => {
            (be(8)? ^ 0x8000_0000_0000_0000).to_le_bytes().to_vec()
        }
        ColumnType::IEEESingle => {
            let k = be(4)? as u32;
            let bits = if k & 0x8000_0000 != 0 {
                k & 0x7FFF_FFFF
            } else {
                !k
            };
            bits.to_le_bytes().to_vec()
        }
        ColumnType::IEEEDouble | ColumnType::DateTime => {
            let k = be(8)?;
            let bits = if k & 0x8000_0000_0000_0000 != 0 {
                k & 0x7FFF_FFFF_FFFF_FFFF
            } else {
                !k
            };
            bits.to_le_bytes().to_vec()
        }
        ColumnType::Guid => {
            let k = v.get(..16)?;
            let mut g = Vec::with_capacity(16);
            for range in [12..16, 10..12, 8..10, 6..8, 0..6] {
                g.extend_from_slice(k.get(range)?);
            }
            g
        }
        ColumnType::Binary if spec.raw_fixed_binary().is_some() => v,
        ColumnType::Binary | ColumnType::LongBinary => {
            let mut out = Vec::new();
            for group in v.chunks(GROUP + 1) {
                let (&count, data) = group.split_last()?;
                if data.len() != GROUP {
                    return None;
                }
                if count == MORE {
                    out.extend_from_slice(data);
                } else {
                    out.extend_from_slice(data.get(..usize::from(count))?);
                    return Some(Decoded::Value(out));
                }
            }
            return None;
        }
        ColumnType::Text | ColumnType::LongText => return None,
    };
    Some(Decoded::Value(out))
}

/// Truncates a normalized key to `key_most` bytes as ESE does (ESE's `JET_cbKeyMost` and
/// `JET_bitIndexKeyMost`); with `disallow_truncation` an over-long key is an error instead.
///
/// # Errors
/// `KeyTruncated` (-346) when the key is longer and truncation is disallowed (the message
/// gives both lengths).
pub fn truncate_key(key: &mut Vec<u8>, key_most: usize, disallow_truncation: bool) -> Result<bool> {
    if key.len() <= key_most {
        return Ok(false);
    }
    if disallow_truncation {
        return Err(Error::new(ErrorKind::KeyTruncated).with_message(format!(
            "the key has {} bytes, the index allows {key_most}",
            key.len()
        )));
    }
    key.truncate(key_most);
    Ok(true)
}

#[cfg(test)]
#[allow(
    clippy::many_single_char_names,
    reason = "property tests name their random inputs"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn spec(coltyp: ColumnType) -> SegmentSpec {
        SegmentSpec {
            coltyp,
            code_page: CodePage::Ascii,
            descending: false,
            nulls_high: false,
            fixed_binary: None,
        }
    }

    fn key(s: SegmentSpec, v: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        normalize_segment(&mut out, s, v).unwrap();
        out
    }

    fn check_order<T: PartialOrd + Copy + std::fmt::Debug>(
        t: ColumnType,
        a: T,
        b: T,
        enc: impl Fn(T) -> Vec<u8>,
    ) {
        let s = spec(t);
        let (ka, kb) = (key(s, Some(&enc(a))), key(s, Some(&enc(b))));
        if let Some(o) = a.partial_cmp(&b) {
            assert_eq!(ka.cmp(&kb), o, "{t:?} {a:?} {b:?}");
        }
        let d = SegmentSpec {
            descending: true,
            ..s
        };
        let (da, db) = (key(d, Some(&enc(a))), key(d, Some(&enc(b))));
        if let Some(o) = a.partial_cmp(&b) {
            assert_eq!(da.cmp(&db), o.reverse(), "desc {t:?} {a:?} {b:?}");
        }
    }

    proptest! {
        #[test]
        fn integers_sort_like_values(a: i64, b: i64, c: i32, d: i32, e: i16, f: i16, g: u64, h: u64) {
            check_order(ColumnType::LongLong, a, b, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::Currency, a, b, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::Long, c, d, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::Short, e, f, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::UnsignedLongLong, g, h, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::UnsignedLong, g as u32, h as u32, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::UnsignedShort, g as u16, h as u16, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::UnsignedByte, g as u8, h as u8, |x| vec![x]);
        }

        #[test]
        fn floats_sort_like_values(a: f64, b: f64, c: f32, d: f32) {
            check_order(ColumnType::IEEEDouble, a, b, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::DateTime, a, b, |x| x.to_le_bytes().to_vec());
            check_order(ColumnType::IEEESingle, c, d, |x| x.to_le_bytes().to_vec());
        }

        #[test]
        fn binary_sorts_bytewise_and_is_prefix_free(a: Vec<u8>, b: Vec<u8>, x: Vec<u8>, y: Vec<u8>) {
            check_order(ColumnType::Binary, &a[..], &b[..], <[u8]>::to_vec);
            // Two-segment keys compare by the first segment, then the second.
            let s = spec(ColumnType::Binary);
            let mut k1 = key(s, Some(&a));
            k1.extend(key(s, Some(&x)));
            let mut k2 = key(s, Some(&b));
            k2.extend(key(s, Some(&y)));
            prop_assert_eq!(k1.cmp(&k2), (a.as_slice(), x.as_slice()).cmp(&(b.as_slice(), y.as_slice())));
        }

        #[test]
        fn text_sorts_case_insensitively(a in "[a-zA-Z0-9 ]{0,20}", b in "[a-zA-Z0-9 ]{0,20}") {
            let s = spec(ColumnType::Text);
            let (ka, kb) = (key(s, Some(a.as_bytes())), key(s, Some(b.as_bytes())));
            prop_assert_eq!(ka.cmp(&kb), a.to_lowercase().cmp(&b.to_lowercase()));
        }
    }

    /// ESE's GUID order: bytes 10–15, then 8–9, 6–7, 4–5, 0–3, each group bytewise.
    fn guid_order(g: &[u8; 16]) -> [&[u8]; 5] {
        [&g[10..16], &g[8..10], &g[6..8], &g[4..6], &g[0..4]]
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    proptest! {
        #[test]
        fn bit_and_guid_sort_like_values(a: u8, b: u8, g: [u8; 16], h: [u8; 16]) {
            // Any non-zero byte is true.
            let s = spec(ColumnType::Bit);
            prop_assert_eq!(key(s, Some(&[a])).cmp(&key(s, Some(&[b]))), (a != 0).cmp(&(b != 0)));
            let s = spec(ColumnType::Guid);
            prop_assert_eq!(key(s, Some(&g)).cmp(&key(s, Some(&h))), guid_order(&g).cmp(&guid_order(&h)));
        }

        #[test]
        fn long_types_sort_like_short_ones(a: Vec<u8>, b: Vec<u8>, x in "[a-zA-Z ]{0,40}", y in "[a-zA-Z ]{0,40}") {
            check_order(ColumnType::LongBinary, &a[..], &b[..], <[u8]>::to_vec);
            let s = spec(ColumnType::LongText);
            prop_assert_eq!(
                key(s, Some(x.as_bytes())).cmp(&key(s, Some(y.as_bytes()))),
                x.to_lowercase().cmp(&y.to_lowercase())
            );
        }

        #[test]
        fn unicode_text_sorts_by_lower_case_code_points(a in "\\PC{0,12}", b in "\\PC{0,12}", desc: bool) {
            let s = SegmentSpec { code_page: CodePage::Unicode, descending: desc, ..spec(ColumnType::Text) };
            let o = key(s, Some(&utf16(&a))).cmp(&key(s, Some(&utf16(&b))));
            // Character by character (Unicode's simple mapping, no final-sigma context).
            let lower = |x: &str| x.chars().flat_map(char::to_lowercase).collect::<String>();
            let want = lower(&a).cmp(&lower(&b));
            prop_assert_eq!(o, if desc { want.reverse() } else { want });
        }

        #[test]
        fn prefix_keys_bound_every_value_that_starts_with_them(p in proptest::collection::vec(1u8.., 0..20), rest: Vec<u8>, other: Vec<u8>, desc: bool) {
            let s = SegmentSpec { descending: desc, ..spec(ColumnType::Binary) };
            let mut start = Vec::new();
            normalize_prefix(&mut start, s, &p).unwrap();
            let mut v = p.clone();
            v.extend(&rest);
            let full = key(s, Some(&v));
            prop_assert!(full.starts_with(&start));
            let o = key(s, Some(&other));
            prop_assert_eq!(o.starts_with(&start), other.starts_with(&p));
        }

        #[test]
        fn fixed_binary_segments_are_the_bytes_in_order(a: [u8; 24], b: [u8; 24], cut in 0usize..=24, next: u32, desc: bool) {
            let s = SegmentSpec { descending: desc, fixed_binary: Some(24), ..spec(ColumnType::Binary) };
            let (ka, kb) = (key(s, Some(&a)), key(s, Some(&b)));
            // The prefix byte and the 24 bytes (inverted when descending), no groups.
            prop_assert_eq!(ka.len(), 25);
            let body: Vec<u8> = if desc { a.iter().map(|x| !x).collect() } else { a.to_vec() };
            prop_assert_eq!(&ka[1..], &body[..]);
            let want = a.cmp(&b);
            prop_assert_eq!(ka.cmp(&kb), if desc { want.reverse() } else { want });
            // Prefix-free: a second segment after it does not change the order of the first.
            let next_spec = spec(ColumnType::UnsignedLong);
            let mut ka2 = ka.clone();
            normalize_segment(&mut ka2, next_spec, Some(&next.to_le_bytes())).unwrap();
            if a != b {
                prop_assert_eq!(ka2.cmp(&kb), ka.cmp(&kb));
            }
            // Its length and value come back from the key.
            prop_assert_eq!(segment_len(&ka2, s), Some(25));
            prop_assert_eq!(segment_len(&ka[..24], s), None);
            prop_assert_eq!(decode_segment(&ka, s), Some(Decoded::Value(a.to_vec())));
            // A prefix of the value is a prefix of its key, and of no key of another start.
            let mut start = Vec::new();
            normalize_prefix(&mut start, s, &a[..cut]).unwrap();
            prop_assert!(ka.starts_with(&start));
            prop_assert_eq!(kb.starts_with(&start), b.starts_with(&a[..cut]));
            // The same column in an index written with groups keeps them.
            let groups = SegmentSpec { fixed_binary: None, ..s };
            prop_assert_eq!(key(groups, Some(&a)).len(), 28);
        }

        #[test]
        fn decoding_gives_the_value_back(a: i64, b: u32, f: f64, g: [u8; 16], v: Vec<u8>, desc: bool) {
            for (t, bytes) in [
                (ColumnType::LongLong, a.to_le_bytes().to_vec()),
                (ColumnType::Currency, a.to_le_bytes().to_vec()),
                (ColumnType::Long, (a as i32).to_le_bytes().to_vec()),
                (ColumnType::Short, (a as i16).to_le_bytes().to_vec()),
                (ColumnType::UnsignedLong, b.to_le_bytes().to_vec()),
                (ColumnType::UnsignedShort, (b as u16).to_le_bytes().to_vec()),
                (ColumnType::UnsignedByte, vec![b as u8]),
                (ColumnType::Guid, g.to_vec()),
                (ColumnType::Binary, v.clone()),
                (ColumnType::IEEEDouble, if f.is_nan() || f == 0.0 { 1.5f64 } else { f }.to_le_bytes().to_vec()),
            ] {
                let s = SegmentSpec { descending: desc, ..spec(t) };
                let k = key(s, Some(&bytes));
                prop_assert_eq!(segment_len(&k, s), Some(k.len()));
                prop_assert_eq!(decode_segment(&k, s), Some(Decoded::Value(bytes)));
            }
            let s = spec(ColumnType::Text);
            let k = key(s, Some(b"Abc"));
            prop_assert_eq!(segment_len(&k, s), Some(k.len()));
            prop_assert_eq!(decode_segment(&k, s), None);
            prop_assert_eq!(decode_segment(&key(s, None), s), Some(Decoded::Null));
        }
    }

    #[test]
    fn extremes_of_every_fixed_type_sort_in_order() {
        let cases: Vec<(ColumnType, Vec<Vec<u8>>)> = vec![
            (
                ColumnType::Short,
                [i16::MIN, -1, 0, 1, i16::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::Long,
                [i32::MIN, -1, 0, 1, i32::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::LongLong,
                [i64::MIN, -1, 0, 1, i64::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::Currency,
                [i64::MIN, -1, 0, 1, i64::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::UnsignedShort,
                [0, 1, u16::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::UnsignedLong,
                [0, 1, u32::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (
                ColumnType::UnsignedLongLong,
                [0, 1, u64::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec())
                    .collect(),
            ),
            (ColumnType::UnsignedByte, vec![vec![0], vec![1], vec![255]]),
            (ColumnType::Bit, vec![vec![0], vec![1]]),
            (
                ColumnType::IEEESingle,
                [
                    f32::NEG_INFINITY,
                    f32::MIN,
                    -1.0,
                    -f32::MIN_POSITIVE,
                    -1e-45,
                    0.0,
                    1e-45,
                    f32::MIN_POSITIVE,
                    1.0,
                    f32::MAX,
                    f32::INFINITY,
                    f32::NAN,
                ]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect(),
            ),
            (
                ColumnType::DateTime,
                [
                    f64::NEG_INFINITY,
                    f64::MIN,
                    -1.0,
                    -5e-324,
                    0.0,
                    5e-324,
                    1.0,
                    f64::MAX,
                    f64::INFINITY,
                    f64::NAN,
                ]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect(),
            ),
            (
                ColumnType::Binary,
                vec![
                    vec![],
                    vec![0],
                    vec![0, 0],
                    vec![0, 1],
                    vec![1],
                    vec![0xFF; 8],
                    vec![0xFF; 9],
                    vec![0xFF; 255],
                ],
            ),
        ];
        for (t, values) in cases {
            for desc in [false, true] {
                let s = SegmentSpec {
                    descending: desc,
                    ..spec(t)
                };
                let keys: Vec<Vec<u8>> = values.iter().map(|v| key(s, Some(v))).collect();
                for w in keys.windows(2) {
                    assert_eq!(
                        w[0].cmp(&w[1]),
                        if desc {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        },
                        "{t:?} desc {desc}"
                    );
                }
                // Null sorts first either way (last with SortNullsHigh).
                assert!(key(s, None) < keys[0].clone().min(keys[keys.len() - 1].clone()));
                let h = SegmentSpec {
                    nulls_high: true,
                    ..s
                };
                assert!(
                    key(h, None)
                        > key(h, Some(&values[0])).max(key(h, Some(&values[values.len() - 1])))
                );
            }
        }
    }

    #[test]
    fn float_extremes() {
        let s = spec(ColumnType::IEEEDouble);
        let k = |f: f64| key(s, Some(&f.to_le_bytes()));
        assert_eq!(k(0.0), k(-0.0));
        assert!(k(f64::NEG_INFINITY) < k(-1.0));
        assert!(k(f64::MAX) < k(f64::INFINITY));
        assert!(k(f64::INFINITY) < k(f64::NAN));
        assert_eq!(k(f64::NAN), k(-f64::NAN));
    }

    #[test]
    fn nulls_low_or_high_in_both_directions() {
        for desc in [false, true] {
            let s = SegmentSpec {
                descending: desc,
                ..spec(ColumnType::Long)
            };
            let v = key(s, Some(&i32::MIN.to_le_bytes()));
            assert!(key(s, None) < v);
            let h = SegmentSpec {
                nulls_high: true,
                ..s
            };
            assert!(key(h, None) > key(h, Some(&i32::MAX.to_le_bytes())));
        }
    }

    #[test]
    fn unicode_text_folds_case() {
        let s = SegmentSpec {
            code_page: CodePage::Unicode,
            ..spec(ColumnType::Text)
        };
        let utf16 = |t: &str| {
            t.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        assert_eq!(key(s, Some(&utf16("ÉCOLE"))), key(s, Some(&utf16("école"))));
        assert!(key(s, Some(&utf16("abc"))) < key(s, Some(&utf16("ABD"))));
        let mut out = Vec::new();
        assert_eq!(
            normalize_segment(&mut out, s, Some(&[1, 2, 3]))
                .unwrap_err()
                .code(),
            -1003
        );
    }

    #[test]
    fn guid_order_and_sizes() {
        let s = spec(ColumnType::Guid);
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a[0] = 0xFF; // least significant in ESE's GUID order
        b[15] = 0x01; // most significant
        assert!(key(s, Some(&a)) < key(s, Some(&b)));
        let mut out = Vec::new();
        assert_eq!(
            normalize_segment(&mut out, spec(ColumnType::Long), Some(&[1]))
                .unwrap_err()
                .code(),
            -1047
        );
    }

    #[test]
    fn truncation() {
        let mut k = vec![1u8; 300];
        assert!(truncate_key(&mut k, 255, false).unwrap());
        assert_eq!(k.len(), 255);
        let mut k = vec![1u8; 300];
        assert_eq!(truncate_key(&mut k, 255, true).unwrap_err().code(), -346);
        assert_eq!(k.len(), 300);
    }
}
