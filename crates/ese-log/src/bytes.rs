//! Checked little-endian field access for the on-disk structures (no indexing, no panics).

#![deny(clippy::indexing_slicing)]

/// Reads a little-endian `u16` at `off`, or `None` if `buf` is too short.
pub(crate) fn get_u16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// Reads a little-endian `u32` at `off`, or `None` if `buf` is too short.
pub(crate) fn get_u32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Reads a little-endian `u64` at `off`, or `None` if `buf` is too short.
pub(crate) fn get_u64(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Writes `v` at `off`; does nothing if `buf` is too short (callers size their buffers).
pub(crate) fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    if let Some(end) = off.checked_add(v.len())
        && let Some(dst) = buf.get_mut(off..end)
    {
        dst.copy_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffers_give_none() {
        let b = [1u8, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(get_u16(&b, 0), Some(1));
        assert_eq!(get_u32(&b, 4), Some(0));
        assert_eq!(get_u64(&b, 0), Some(1));
        assert_eq!(get_u32(&b, 6), None);
        assert_eq!(get_u64(&b, usize::MAX), None);
        let mut m = [0u8; 4];
        put(&mut m, 2, &[9, 9, 9]);
        assert_eq!(m, [0; 4]);
        put(&mut m, 2, &[9, 9]);
        assert_eq!(m, [0, 0, 9, 9]);
    }
}
