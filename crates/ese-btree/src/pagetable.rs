//! The buffer cache's page table: the cached frame of each page number, found without a lock.
//!
//! A descent looks up one frame per level, and every thread looks up the root. Behind a lock
//! (even a reader-writer lock taken shared) every lookup writes the lock's cache line, which
//! then bounces between the cores of concurrent readers; a hash table adds a miss on its
//! control bytes before the miss on the entry. This table is a three-level radix tree indexed
//! by the page number (8, 12 and 12 bits): a top array of 256 pointers, middle nodes of 4,096
//! leaf pointers (32 KiB) and leaves of 4,096 slots (64 KiB, 4,096 consecutive pages), the
//! last two allocated when a page of their range is first cached. A small database (a
//! temporary table) costs 98 KiB; a million-row table of 43,000 pages, 11 leaves. A lookup
//! reads three pointers (the upper two stay in the CPU cache) and takes a reference on the
//! frame.
//!
//! - **Prefetch.** A slot holds the frame and the address of the frame's page buffer, which
//!   never moves while the frame lives (see `Page`). A lookup asks the CPU for the page's
//!   header and the end of its tag array before it touches the frame: on a page not in the
//!   CPU cache, the misses on the frame (its reference count and latch), on the page header
//!   and on the tags a search reads first then overlap instead of following one another.
//!
//! - **Ownership.** Each non-null slot owns one strong reference of an `Arc<Frame>`
//!   (`Arc::into_raw`). Middle nodes and leaves live as long as the table.
//! - **Lookup without a lock** ([`PageTable::get`]): inside an epoch pin (crossbeam-epoch),
//!   load the slot, add a strong reference, then check that the slot still holds that frame.
//! - **Removal** ([`PageTable::remove`], [`PageTable::remove_unpinned`]): clear the slot, then
//!   release the slot's reference through the epoch (`Guard::defer`), once every thread
//!   pinned when the slot was cleared has unpinned: a reader that loaded the pointer before
//!   the clear still finds the frame alive when it adds its reference.
//! - **Eviction never loses a pin.** [`PageTable::remove_unpinned`] clears the slot, then
//!   reads the reference count; a reader adds its reference, then re-reads the slot. Both
//!   sides put a sequentially consistent fence between their write and their read, so at
//!   least one of them sees the other: the evictor sees the new reference (and puts the
//!   frame back), or the reader sees the cleared slot (and drops its reference, then takes
//!   the cache mutex and finds the page there or reads it again).
//!
//! Changes (insert, removal) are made under the cache mutex, so they never race each other;
//! each is a compare-and-swap all the same, so that the table stays sound whatever its
//! callers do.

#![expect(
    unsafe_code,
    reason = "slots hold frames as raw `Arc` pointers reclaimed through the epoch; each block says why it is sound"
)]

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering, fence};

use crossbeam_epoch as epoch;
use ese_core::Pgno;
use ese_core::hint::prefetch;

use crate::cache::Frame;

/// Bits of the page number that index a slot within its leaf.
const LEAF_BITS: u32 = 12;
/// Bits that index a leaf within its middle node.
const MID_BITS: u32 = 12;
/// Bits that index a middle node in the top array (the page number is 32 bits).
const TOP_BITS: u32 = 32 - LEAF_BITS - MID_BITS;

/// Pointers, null until set: the array of one node of the radix tree.
type Cells<T> = Box<[AtomicPtr<T>]>;

fn nulls<T>(n: usize) -> Cells<T> {
    (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect()
}

/// The frame of one page, with its page buffer's address (see the module notes).
struct Slot {
    frame: AtomicPtr<Frame>,
    /// [`Frame::page_addr`] of the frame, for prefetching only: set just after the frame is
    /// published, so a reader may see the previous frame's address for an instant (harmless:
    /// a prefetch of any address is).
    page: AtomicUsize,
}

/// A leaf: the slots of 2^12 consecutive pages.
struct Leaf {
    slots: Box<[Slot]>,
}

/// A middle node: the leaves of 2^24 consecutive pages.
struct Mid {
    leaves: Cells<Leaf>,
}

/// The page table (see the module notes).
pub(crate) struct PageTable {
    top: Cells<Mid>,
    len: AtomicUsize,
    /// Bytes per page: where a page's tag array ends.
    page_size: usize,
}

// The table owns `Arc<Frame>`s through raw pointers: it may be shared and sent as long as the
// frames may be.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Arc<Frame>>();
};

/// The top, middle and leaf index of `pgno`.
fn split(pgno: Pgno) -> (usize, usize, usize) {
    let n = pgno.0 as usize;
    (
        n >> (LEAF_BITS + MID_BITS),
        (n >> LEAF_BITS) & ((1 << MID_BITS) - 1),
        n & ((1 << LEAF_BITS) - 1),
    )
}

/// The node `cell` points to, if any.
fn node<T>(cell: &AtomicPtr<T>) -> Option<&T> {
    let p = cell.load(Ordering::Acquire);
    // SAFETY: a non-null cell of the table holds a pointer from `Box::into_raw` (in
    // `node_or_grow`) that is freed only by the table's `Drop`, which has `&mut` access: the
    // node outlives every shared borrow of the table, hence of `cell`.
    unsafe { p.as_ref() }
}

/// The node `cell` points to, made by `make` and installed first if there is none.
fn node_or_grow<T>(cell: &AtomicPtr<T>, make: impl FnOnce() -> T) -> &T {
    if cell.load(Ordering::Acquire).is_null() {
        let fresh = Box::into_raw(Box::new(make()));
        if cell
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `fresh` was never published (the exchange failed): this is its only
            // pointer.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
    let p = cell.load(Ordering::Acquire);
    // SAFETY: non-null (installed above or by a concurrent grower), from `Box::into_raw` and
    // freed only by the table's `Drop` (see `node`).
    unsafe { &*p }
}

/// Frees the node `cell` owns (the table is being dropped: `&mut` access).
fn take<T>(cell: &mut AtomicPtr<T>) -> Option<Box<T>> {
    let p = std::mem::replace(cell.get_mut(), ptr::null_mut());
    // SAFETY: a non-null cell owns its node, from `Box::into_raw`; `&mut` access means no
    // other reference to it exists.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

impl PageTable {
    /// An empty table for pages of `page_size` bytes.
    pub(crate) fn new(page_size: usize) -> PageTable {
        PageTable {
            top: nulls(1 << TOP_BITS),
            len: AtomicUsize::new(0),
            page_size,
        }
    }

    /// Frames in the table.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn slot(&self, pgno: Pgno) -> Option<&Slot> {
        let (hi, mid, lo) = split(pgno);
        let m = node(self.top.get(hi)?)?;
        node(m.leaves.get(mid)?)?.slots.get(lo)
    }

    fn slot_or_grow(&self, pgno: Pgno) -> Option<&Slot> {
        let (hi, mid, lo) = split(pgno);
        let m = node_or_grow(self.top.get(hi)?, || Mid {
            leaves: nulls(1 << MID_BITS),
        });
        let leaf = node_or_grow(m.leaves.get(mid)?, || Leaf {
            slots: (0..1 << LEAF_BITS)
                .map(|_| Slot {
                    frame: AtomicPtr::new(ptr::null_mut()),
                    page: AtomicUsize::new(0),
                })
                .collect(),
        });
        leaf.slots.get(lo)
    }

    /// The frame of `pgno` with a new strong reference, or `None` when the page has no frame
    /// (or its frame is being removed at this instant: the caller then looks again under the
    /// cache mutex).
    pub(crate) fn get(&self, pgno: Pgno) -> Option<Arc<Frame>> {
        let slot = self.slot(pgno)?;
        let guard = epoch::pin();
        let p = slot.frame.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        let page = slot.page.load(Ordering::Relaxed);
        prefetch(page);
        // The end of the tag array: a search's first tags (a leaf's whole array, up to 32
        // nodes).
        prefetch(page.wrapping_add(self.page_size).wrapping_sub(64));
        prefetch(page.wrapping_add(self.page_size).wrapping_sub(128));
        // SAFETY: as below, `p` points to a live frame while pinned; only the address of its
        // page's search hints is computed, nothing is read.
        let hints = unsafe { (*p).hints_addr() };
        // The hints' state and prefix, and the heads of a leaf of up to 24 nodes.
        prefetch(hints);
        prefetch(hints.wrapping_add(64));
        prefetch(hints.wrapping_add(128));
        // SAFETY: `p` was loaded from the slot while pinned, so it came from `Arc::into_raw`
        // (in `insert`) and the slot's strong reference is released only by a deferred
        // function of a removal that cleared the slot after this load, which cannot run
        // before `guard` is dropped: the frame is alive and its count is at least one.
        let frame = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        // Pairs with the fence in `remove_unpinned` (see the module notes).
        fence(Ordering::SeqCst);
        let still = slot.frame.load(Ordering::Relaxed) == p;
        drop(guard);
        still.then_some(frame)
    }

    /// Installs `frame` as the frame of its page, which must have none; `false` (and the
    /// table unchanged) if it has one.
    pub(crate) fn insert(&self, frame: Arc<Frame>) -> bool {
        let Some(slot) = self.slot_or_grow(frame.pgno) else {
            return false;
        };
        let page = frame.page_addr();
        let p = Arc::into_raw(frame).cast_mut();
        if slot
            .frame
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: `p` was not published: this reference is still ours to release.
            drop(unsafe { Arc::from_raw(p) });
            return false;
        }
        slot.page.store(page, Ordering::Relaxed);
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether `frame` is the frame of its page in the table.
    pub(crate) fn holds(&self, frame: &Arc<Frame>) -> bool {
        self.slot(frame.pgno)
            .is_some_and(|s| ptr::eq(s.frame.load(Ordering::Acquire), Arc::as_ptr(frame)))
    }

    /// Clears the slot of `frame`'s page if it holds `frame`: the slot and the frame's
    /// pointer, whose slot reference the caller now owns (to release or put back).
    fn clear(&self, frame: &Arc<Frame>) -> Option<(&AtomicPtr<Frame>, *mut Frame)> {
        let slot = self.slot(frame.pgno)?;
        let p = Arc::as_ptr(frame).cast_mut();
        slot.frame
            .compare_exchange(p, ptr::null_mut(), Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        Some((&slot.frame, p))
    }

    /// Removes `frame` if it is the frame of its page; whether it was.
    pub(crate) fn remove(&self, frame: &Arc<Frame>) -> bool {
        let Some((_, p)) = self.clear(frame) else {
            return false;
        };
        self.release(p);
        true
    }

    /// Removes `frame` if it is the frame of its page and nobody pins it: its strong count is
    /// `expected` (the table's reference plus those the caller holds). Whether it was removed.
    pub(crate) fn remove_unpinned(&self, frame: &Arc<Frame>, expected: usize) -> bool {
        let Some((slot, p)) = self.clear(frame) else {
            return false;
        };
        // Pairs with the fence in `get` (see the module notes).
        fence(Ordering::SeqCst);
        if Arc::strong_count(frame) == expected
            || slot
                .compare_exchange(ptr::null_mut(), p, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            // Unpinned, or (not under the cache mutex) another frame was installed meanwhile.
            self.release(p);
            return true;
        }
        false
    }

    /// Releases the reference of a slot just cleared, once no pinned reader can still hold
    /// the pointer without its own reference.
    fn release(&self, p: *mut Frame) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `p` came from `Arc::into_raw` in `insert` and the caller just cleared the
        // slot that owned this reference: it is ours to release, once.
        let owned = unsafe { Arc::from_raw(p.cast_const()) };
        let guard = epoch::pin();
        guard.defer(move || drop(owned));
    }

    /// Every frame in the table, each with a new strong reference.
    pub(crate) fn frames(&self) -> Vec<Arc<Frame>> {
        let mut out = Vec::new();
        for (hi, m) in self.top.iter().enumerate() {
            let Some(m) = node(m) else { continue };
            for (mid, leaf) in m.leaves.iter().enumerate() {
                let Some(leaf) = node(leaf) else { continue };
                for lo in 0..leaf.slots.len() {
                    let n = (hi << (LEAF_BITS + MID_BITS)) | (mid << LEAF_BITS) | lo;
                    if let Some(f) = u32::try_from(n).ok().and_then(|n| self.get(Pgno(n))) {
                        out.push(f);
                    }
                }
            }
        }
        out
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        for cell in &mut *self.top {
            let Some(mut m) = take(cell) else { continue };
            for cell in &mut *m.leaves {
                let Some(mut leaf) = take(cell) else { continue };
                for slot in &mut *leaf.slots {
                    let p = std::mem::replace(slot.frame.get_mut(), ptr::null_mut());
                    if !p.is_null() {
                        // SAFETY: a non-null slot owns one reference from `Arc::into_raw`.
                        drop(unsafe { Arc::from_raw(p.cast_const()) });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Frame;

    #[test]
    fn insert_get_remove_keep_counts() {
        let t = PageTable::new(4096);
        let f = Frame::for_test(Pgno(70_000));
        assert!(t.insert(Arc::clone(&f)));
        assert!(
            !t.insert(Frame::for_test(Pgno(70_000))),
            "one frame per page"
        );
        assert_eq!(t.len(), 1);
        let got = t.get(Pgno(70_000)).expect("cached");
        assert!(Arc::ptr_eq(&got, &f));
        assert!(t.get(Pgno(3)).is_none());
        // `f`, `got` and the table: pinned, so not removed.
        assert!(!t.remove_unpinned(&f, 2));
        assert!(t.holds(&f));
        drop(got);
        assert!(t.remove_unpinned(&f, 2));
        assert!(!t.holds(&f));
        assert_eq!(t.len(), 0);
        assert!(t.get(Pgno(70_000)).is_none());
        assert!(!t.remove(&f));
    }

    #[test]
    fn frames_lists_every_page() {
        let t = PageTable::new(4096);
        for n in [1u32, 2, 4095, 4096, 65_536, 1 << 24, u32::MAX] {
            assert!(t.insert(Frame::for_test(Pgno(n))));
        }
        let mut got: Vec<u32> = t.frames().iter().map(|f| f.pgno.0).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 4095, 4096, 65_536, 1 << 24, u32::MAX]);
    }

    #[test]
    fn an_eviction_never_takes_a_frame_a_reader_holds() {
        // Readers take frames and hold them a moment while one thread evicts (marking each
        // frame it removed) and reinstalls them: a reader must never hold a frame whose
        // eviction succeeded. Without the re-check of the slot in `get` this fails within a
        // fraction of a second on two cores.
        let t = Arc::new(PageTable::new(4096));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for n in 0..4 {
            assert!(t.insert(Frame::for_test(Pgno(n))));
        }
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut hits = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for n in 0..4 {
                            if let Some(f) = t.get(Pgno(n)) {
                                assert_eq!(f.pgno, Pgno(n));
                                for _ in 0..16 {
                                    std::hint::spin_loop();
                                }
                                assert!(!f.is_gone_for_test(), "evicted while held");
                                hits += 1;
                            }
                        }
                    }
                    hits
                })
            })
            .collect();
        let mut evicted = 0;
        for round in 0..200_000u32 {
            let n = round % 4;
            if let Some(f) = t.get(Pgno(n))
                && t.remove_unpinned(&f, 2)
            {
                f.mark_gone_for_test();
                evicted += 1;
                assert!(t.insert(Frame::for_test(Pgno(n))));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let hits: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        assert!(evicted > 0 && hits > 0, "evicted {evicted}, hits {hits}");
        assert_eq!(t.len(), 4);
    }
}
