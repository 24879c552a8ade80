//! Record framing: how an opaque payload is laid out in a generation file, and the checked
//! cursor that walks the frames back.
//!
//! A frame is a 12-byte header followed by the payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC-32 of the frame's LGPOS (8 bytes, `Lgpos::as_u64` LE), bytes 4..12 and the payload |
//! | 4 | 4 | payload length in bytes |
//! | 8 | 1 | kind: 1 = data record, 2 = padding to the end of the sector |
//! | 9 | 3 | reserved, zero |
//!
//! Frames are contiguous and may span sectors, but a frame header never starts in the last
//! 11 bytes of a sector: those bytes are skipped (zero). Every flush ends at a sector boundary
//! (a padding frame or the skip rule fills the rest), so a later flush never rewrites a sector
//! that holds acknowledged records. Because the checksum covers the LGPOS, a stale frame left
//! at another position or in a reused file of another generation never verifies.

#![deny(clippy::indexing_slicing)]

use ese_core::Lgpos;
use ese_core::checksum::crc32_seeded;

use crate::bytes::{get_u32, put};
use crate::config::SECTOR_SIZE;

/// Bytes of a frame header.
pub(crate) const FRAME_HEADER: usize = 12;
/// Frame kind: a record appended by the caller.
pub(crate) const KIND_DATA: u8 = 1;
/// Frame kind: padding up to the next sector boundary at the end of a flush.
pub(crate) const KIND_PAD: u8 = 2;

const SECTOR: usize = SECTOR_SIZE as usize;

/// The LGPOS of byte offset `off` of generation `generation`'s file. Offsets are below the
/// 32 MiB maximum file size, so the sector fits 16 bits.
pub(crate) fn lgpos_at(generation: u32, off: usize) -> Lgpos {
    Lgpos::new(generation, (off / SECTOR) as u16, (off % SECTOR) as u16)
}

/// The byte offset of `lgpos` within its generation's file.
#[cfg(test)]
pub(crate) fn offset_of(lgpos: Lgpos) -> usize {
    usize::from(lgpos.isec) * SECTOR + usize::from(lgpos.ib)
}

/// Where the next frame header may start at or after `off` (skipping a sector tail too short
/// for a frame header).
pub(crate) fn frame_start(off: usize) -> usize {
    let rem = SECTOR - off % SECTOR;
    if rem < FRAME_HEADER && rem != SECTOR {
        off + rem
    } else {
        off
    }
}

fn frame_crc(lgpos: Lgpos, hdr_tail: &[u8], payload: &[u8]) -> u32 {
    crc32_seeded(lgpos.as_u64(), &[hdr_tail, payload])
}

/// [`encode_frame`] of the payload made of `parts` in order (no copy of the whole payload
/// first).
pub(crate) fn encode_frame_parts(
    buf: &mut Vec<u8>,
    generation: u32,
    off: usize,
    kind: u8,
    parts: &[&[u8]],
) -> Lgpos {
    let lgpos = lgpos_at(generation, off);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut hdr = [0u8; FRAME_HEADER];
    put(&mut hdr, 4, &(len as u32).to_le_bytes());
    put(&mut hdr, 8, &[kind]);
    let start = buf.len();
    buf.reserve(FRAME_HEADER + len);
    buf.extend_from_slice(&hdr);
    for p in parts {
        buf.extend_from_slice(p);
    }
    // `frame_crc` of the frame as written: the header after its CRC field and the payload are
    // one run of bytes now, hashed in one piece (hashing the parts one by one costs a call
    // and a slow tail per part).
    let crc = crc32_seeded(lgpos.as_u64(), &[buf.get(start + 4..).unwrap_or_default()]);
    if let Some(field) = buf.get_mut(start..start + 4) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    lgpos
}

/// Appends the frame for `payload` (of `kind`) at file offset `off` to `buf`, whose first
/// byte lies at file offset `off - (buf.len())`: i.e. `off` must equal the current end of the
/// buffer. Returns the frame's LGPOS.
pub(crate) fn encode_frame(
    buf: &mut Vec<u8>,
    generation: u32,
    off: usize,
    kind: u8,
    payload: &[u8],
) -> Lgpos {
    encode_frame_parts(buf, generation, off, kind, &[payload])
}

/// Pads `buf` (whose end is at file offset `end`) to the next sector boundary with a padding
/// frame, or with zeros when the remaining space is shorter than a frame header.
pub(crate) fn pad_to_sector(buf: &mut Vec<u8>, generation: u32, end: usize) {
    let rem = (SECTOR - end % SECTOR) % SECTOR;
    if rem == 0 {
        return;
    }
    if rem < FRAME_HEADER {
        buf.resize(buf.len() + rem, 0);
    } else {
        let zeros = [0u8; SECTOR];
        let pad = zeros.get(..rem - FRAME_HEADER).unwrap_or_default();
        encode_frame(buf, generation, end, KIND_PAD, pad);
    }
}

/// One verified frame found by [`FrameCursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The frame's LGPOS.
    pub(crate) lgpos: Lgpos,
    /// [`KIND_DATA`] or [`KIND_PAD`].
    pub(crate) kind: u8,
    /// Payload byte range within the file image.
    pub(crate) payload: (usize, usize),
}

/// Why [`FrameCursor::next`] returned no frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The cursor reached its limit exactly.
    Limit,
    /// The bytes at the cursor are not a valid frame (torn tail, never written, or corrupt).
    Invalid,
}

/// Walks the frames of one generation's file image from `pos` up to `limit`, verifying each.
#[derive(Clone, Debug)]
pub(crate) struct FrameCursor {
    generation: u32,
    /// Offset just past the last valid frame (where the next frame would go).
    pub(crate) pos: usize,
    limit: usize,
}

impl FrameCursor {
    /// A cursor over `generation`'s image starting at `pos` and stopping at `limit`.
    pub(crate) fn new(generation: u32, pos: usize, limit: usize) -> FrameCursor {
        FrameCursor {
            generation,
            pos,
            limit,
        }
    }

    /// The generation whose image the cursor walks.
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// The next valid frame, or why there is none. Never reads outside `image`.
    pub(crate) fn next(&mut self, image: &[u8]) -> Result<Frame, Stop> {
        let start = frame_start(self.pos);
        if start >= self.limit {
            return Err(Stop::Limit);
        }
        let limit = self.limit.min(image.len());
        let hdr_end = start.checked_add(FRAME_HEADER).ok_or(Stop::Invalid)?;
        if hdr_end > limit {
            return Err(Stop::Invalid);
        }
        let hdr = image.get(start..hdr_end).ok_or(Stop::Invalid)?;
        let stored = get_u32(hdr, 0).ok_or(Stop::Invalid)?;
        let len = get_u32(hdr, 4).ok_or(Stop::Invalid)? as usize;
        let kind = hdr.get(8).copied().ok_or(Stop::Invalid)?;
        if (kind != KIND_DATA && kind != KIND_PAD) || hdr.get(9..12) != Some(&[0u8; 3][..]) {
            return Err(Stop::Invalid);
        }
        if len > limit - hdr_end {
            return Err(Stop::Invalid);
        }
        let end = hdr_end + len;
        let payload = image.get(hdr_end..end).ok_or(Stop::Invalid)?;
        let lgpos = lgpos_at(self.generation, start);
        if frame_crc(lgpos, hdr.get(4..).unwrap_or_default(), payload) != stored {
            return Err(Stop::Invalid);
        }
        self.pos = end;
        Ok(Frame {
            lgpos,
            kind,
            payload: (hdr_end, end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_padding() {
        let base = 4096;
        let mut img = vec![0u8; base];
        let mut off = base;
        let mut lg = Vec::new();
        for (i, len) in [0usize, 5, 500, 1200, 3].iter().enumerate() {
            let start = frame_start(off);
            img.resize(start, 0);
            let payload = vec![i as u8; *len];
            lg.push((
                encode_frame(&mut img, 3, start, KIND_DATA, &payload),
                payload,
            ));
            off = img.len();
        }
        pad_to_sector(&mut img, 3, off);
        assert_eq!(img.len() % SECTOR, 0);
        img.resize(img.len() + 2048, 0);
        let mut c = FrameCursor::new(3, base, img.len());
        let mut got = Vec::new();
        loop {
            match c.next(&img) {
                Ok(f) if f.kind == KIND_DATA => {
                    got.push((f.lgpos, img[f.payload.0..f.payload.1].to_vec()));
                }
                Ok(_) => {}
                Err(s) => {
                    assert_eq!(s, Stop::Invalid);
                    break;
                }
            }
        }
        assert_eq!(got, lg);
        assert_eq!(c.pos % SECTOR, 0);
        // The same bytes read as another generation verify nowhere.
        let mut other = FrameCursor::new(4, base, img.len());
        assert_eq!(other.next(&img), Err(Stop::Invalid));
    }

    #[test]
    fn frame_start_skips_short_sector_tails() {
        assert_eq!(frame_start(512), 512);
        assert_eq!(frame_start(500), 500);
        assert_eq!(frame_start(501), 512);
        assert_eq!(frame_start(511), 512);
        assert_eq!(lgpos_at(2, 1030), Lgpos::new(2, 2, 6));
        assert_eq!(offset_of(Lgpos::new(2, 2, 6)), 1030);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let n = rng.usize(0..700);
            let img: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            let mut c = FrameCursor::new(1, rng.usize(0..800), rng.usize(0..900));
            while c.next(&img).is_ok() {}
        }
    }
}
