//! Latch guards that own a pin on their frame: what a descent, a cursor and a loading read
//! hold across calls. The latch is a `parking_lot::RwLock` inline in the frame; a guard takes
//! it, forgets parking_lot's borrowing guard, and releases it when dropped. parking_lot's own
//! owning guards (`ArcRwLockReadGuard`) need the latch in an `Arc` of its own: one more
//! allocation, and one more dependent cache miss on every level of every descent (measured:
//! see `docs/design.md`, "Buffer cache frames").

#![expect(
    unsafe_code,
    reason = "an owning latch guard over a latch inline in its frame; each block says why it is sound"
)]

use std::sync::Arc;

use crate::cache::Frame;
use crate::page::Page;

/// Checks, in debug builds, that the page's buffer is where it was when its frame was made:
/// a buffer never moves while its frame lives (the page table prefetches it).
fn debug_check_buffer(frame: &Frame, page: &Page) {
    debug_assert_eq!(
        frame.page_addr(),
        page.buf_addr(),
        "page {} changed buffers",
        frame.pgno
    );
}

/// A frame's page, read-latched, owning a pin on the frame (an `Arc`).
pub(crate) struct ReadGuard {
    frame: Arc<Frame>,
}

impl ReadGuard {
    /// Waits for the read latch of `frame`.
    pub(crate) fn new(frame: Arc<Frame>) -> ReadGuard {
        // The guard is forgotten: the latch stays held (shared) until `Drop` releases it.
        std::mem::forget(frame.latch.read());
        ReadGuard { frame }
    }

    /// The read latch of `frame` if no writer holds or waits for it.
    pub(crate) fn try_new(frame: Arc<Frame>) -> Option<ReadGuard> {
        std::mem::forget(frame.latch.try_read()?);
        Some(ReadGuard { frame })
    }

    /// The latched frame.
    pub(crate) fn frame(&self) -> &Arc<Frame> {
        &self.frame
    }

    /// Releases the latch and keeps the pin.
    pub(crate) fn into_frame(self) -> Arc<Frame> {
        let frame = Arc::clone(&self.frame);
        drop(self);
        frame
    }
}

impl std::ops::Deref for ReadGuard {
    type Target = Page;

    fn deref(&self) -> &Page {
        // SAFETY: this guard holds the latch shared from its creation to its drop (the
        // read guard taken in `new`/`try_new` was forgotten), so no writer can hold it and
        // the page is not changed while the reference lives; the `Arc` keeps the frame.
        unsafe { &*self.frame.latch.data_ptr() }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        debug_check_buffer(&self.frame, self);
        // SAFETY: the latch is held shared by this guard (see `new`/`try_new`), and no
        // reference obtained through `deref` outlives the guard.
        unsafe { self.frame.latch.force_unlock_read() }
    }
}

/// A frame's page, write-latched, owning a pin on the frame (see [`ReadGuard`]).
pub(crate) struct WriteGuard {
    frame: Arc<Frame>,
}

impl WriteGuard {
    /// Waits for the write latch of `frame`.
    pub(crate) fn new(frame: Arc<Frame>) -> WriteGuard {
        // The guard is forgotten: the latch stays held (exclusive) until `Drop` releases it.
        std::mem::forget(frame.latch.write());
        WriteGuard { frame }
    }
}

impl std::ops::Deref for WriteGuard {
    type Target = Page;

    fn deref(&self) -> &Page {
        // SAFETY: this guard holds the latch exclusively from `new` to its drop.
        unsafe { &*self.frame.latch.data_ptr() }
    }
}

impl std::ops::DerefMut for WriteGuard {
    fn deref_mut(&mut self) -> &mut Page {
        // SAFETY: this guard holds the latch exclusively from `new` to its drop, and the
        // `&mut self` borrow makes this the only reference to the page through the guard.
        unsafe { &mut *self.frame.latch.data_ptr() }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        debug_check_buffer(&self.frame, self);
        // SAFETY: the latch is held exclusively by this guard (see `new`), and no reference
        // obtained through `deref`/`deref_mut` outlives the guard.
        unsafe { self.frame.latch.force_unlock_write() }
    }
}
