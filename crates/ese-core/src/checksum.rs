//! The checksum used by every on-disk structure: CRC-32 (IEEE) through `crc32fast`.
//!
//! Checksums that protect a structure at a known place (a page, a log record) also cover that
//! place (the page number, the record's LGPOS), so a structure read back from the wrong place
//! fails its check even when its own bytes are intact.

/// CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// CRC-32 of `seed` (little-endian) followed by the parts of `parts`, in order. Used to bind a
/// checksum to a location (page number, LGPOS) without copying the data.
pub fn crc32_seeded(seed: u64, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_changes_the_checksum() {
        let data = b"page";
        assert_ne!(crc32_seeded(1, &[data]), crc32_seeded(2, &[data]));
        assert_eq!(crc32_seeded(1, &[b"pa", b"ge"]), crc32_seeded(1, &[data]));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
