//! Page buffers: the bytes of one page, on the heap or in a slab of the buffer cache.
//!
//! A cached page's buffer comes from a **slab**: an anonymous mapping of 2 MiB, cut into
//! buffers of the page size; the slabs a background thread prepares ahead of need ask the
//! kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`), the first slab and any slab
//! mapped on demand do not (a small database, a temporary table, does not take a 2 MiB page for
//! a few pages; a thread needing a page does not wait for a huge page's first touch). A point read touches one buffer per tree level, each on a different 4 KiB page of
//! memory: with small pages, nearly every leaf's buffer costs a TLB miss (a page-table walk)
//! before its first cache miss, and `perf` of the point-read phase put 8 % of it on the
//! prefetch of the leaf's header, stalled on that walk. With huge pages the buffers of 256
//! pages (8 KiB each) share one TLB entry (measured: `docs/design.md`, "Page buffers in huge
//! pages"). Where huge pages are off or unavailable the mapping still works with small pages;
//! where the mapping itself fails, buffers come from the heap.
//!
//! Once a cache has filled two slabs it is growing, and the next slabs (up to four) are
//! mapped and touched ahead of need by a short-lived background thread
//! ([`SlabPool::reserve`]): the kernel's first-touch work is then off the thread that fills
//! the cache.
//!
//! Copies made by work units and decoded images stay on the heap ([`PageBuf::heap`]); a
//! buffer goes back to its slab's free list when dropped. Slabs are unmapped when the last
//! buffer and the pool are gone (each buffer holds the pool).

#![expect(
    unsafe_code,
    reason = "page buffers are regions of a mapping handed out once each; each block says why it is sound"
)]

use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::MmapMut;
use parking_lot::Mutex;

/// Bytes of one slab: one huge page on x86-64 and aarch64 with 4 KiB base pages.
const SLAB_BYTES: usize = 2 << 20;

/// The bytes of one page: `len` bytes at `ptr`, owned as `owner` says.
pub(crate) struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
    owner: Owner,
}

enum Owner {
    /// A boxed slice given up with `Box::into_raw`.
    Heap,
    /// A region of one of the pool's slabs.
    Slab(Arc<SlabPool>),
}

// SAFETY: a `PageBuf` owns its bytes exclusively (a box it leaked, or a slab region the pool
// handed out once and takes back only on drop), like a `Box<[u8]>`, which is `Send + Sync`.
unsafe impl Send for PageBuf {}
// SAFETY: as above: shared access is read-only access to bytes no one else writes.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A buffer on the heap holding `bytes`.
    pub(crate) fn heap(bytes: Box<[u8]>) -> PageBuf {
        let len = bytes.len();
        let raw = Box::into_raw(bytes);
        PageBuf {
            // SAFETY: `Box::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(raw.cast::<u8>()) },
            len,
            owner: Owner::Heap,
        }
    }

    /// The buffer's bytes as the box they were given in; `None` for a slab buffer (which
    /// then goes back to its slab).
    pub(crate) fn into_heap(self) -> Option<Box<[u8]>> {
        if !matches!(self.owner, Owner::Heap) {
            return None;
        }
        let this = std::mem::ManuallyDrop::new(self);
        let raw = std::ptr::slice_from_raw_parts_mut(this.ptr.as_ptr(), this.len);
        // SAFETY: a heap buffer's pointer and length come from `Box::into_raw` in `heap`, and
        // `ManuallyDrop` keeps `Drop` from freeing it a second time (its owner holds nothing
        // to drop).
        Some(unsafe { Box::from_raw(raw) })
    }

    /// Whether the buffer lives in a slab.
    pub(crate) fn in_slab(&self) -> bool {
        matches!(self.owner, Owner::Slab(_))
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialized bytes this buffer owns (see the type) for
        // as long as it lives; `&self` keeps them from being changed meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Heap => {
                let raw = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
                // SAFETY: a heap buffer's pointer and length come from `Box::into_raw` in
                // `heap`; this is the only place that frees it.
                drop(unsafe { Box::from_raw(raw) });
            }
            Owner::Slab(pool) => pool.give_back(self.ptr),
        }
    }
}

impl Clone for PageBuf {
    /// A copy on the heap.
    fn clone(&self) -> PageBuf {
        PageBuf::heap(Box::from(&**self))
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuf")
            .field("len", &self.len)
            .field("in_slab", &self.in_slab())
            .finish_non_exhaustive()
    }
}

impl PartialEq for PageBuf {
    fn eq(&self, other: &PageBuf) -> bool {
        **self == **other
    }
}

impl Eq for PageBuf {}

/// The slabs of one buffer cache and the free regions in them.
pub(crate) struct SlabPool {
    page_size: usize,
    state: Mutex<SlabState>,
}

struct SlabState {
    /// Every slab mapped; unmapped when the pool is dropped (after every buffer, which each
    /// hold the pool).
    slabs: Vec<MmapMut>,
    /// Free regions, as addresses (a raw pointer is not `Send`).
    free: Vec<usize>,
    /// Slabs mapped and touched ahead of need by a background thread (see
    /// [`SlabPool::reserve`]), taken oldest first when the free regions run out.
    spares: std::collections::VecDeque<MmapMut>,
    /// Whether that thread is running.
    preparing: bool,
}

/// How many slabs a growing pool keeps mapped and touched ahead of need (8 MiB).
const SPARES_AHEAD: usize = 4;

/// Lowers the calling thread's scheduling priority to the least (nice 19, Linux): the thread
/// that touches spare slabs works with what the log and page writers leave of the CPU. Best
/// effort: nothing changes where the call fails or on other systems.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` has no preconditions and returns the calling thread's id.
        let tid = unsafe { libc::gettid() };
        // SAFETY: `setpriority` takes plain integers and changes only the nice value of the
        // thread `tid` (Linux gives each thread its own); a failure is reported, not undefined.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), 19) };
    }
}

/// Maps a slab; `huge` asks for transparent huge pages (advice only: without them the slab
/// works with small pages).
fn map_slab(huge: bool) -> Option<MmapMut> {
    let map = MmapMut::map_anon(SLAB_BYTES).ok()?;
    #[cfg(target_os = "linux")]
    if huge {
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge;
    Some(map)
}

impl SlabPool {
    pub(crate) fn new(page_size: usize) -> Arc<SlabPool> {
        Arc::new(SlabPool {
            page_size,
            state: Mutex::new(SlabState {
                slabs: Vec::new(),
                free: Vec::new(),
                spares: std::collections::VecDeque::new(),
                preparing: false,
            }),
        })
    }

    /// Starts a background thread that maps slabs and touches each of their pages until
    /// [`SPARES_AHEAD`] are ready, so that the kernel's first-touch work (allocating and
    /// zeroing the memory: a huge page's 2 MiB at once) is done off the thread that fills the
    /// cache. A cache that grows (a bulk load installs a new page every few inserts) otherwise
    /// pays it on the inserting thread: `perf` of the bulk load put 12 % of that thread in the
    /// kernel's zeroing with no slab prepared ahead, and 23 % with one (on a VM where a huge
    /// page's first touch costs about 11 ms per MiB, one slab ahead is gone before the next
    /// is ready). The thread runs at the lowest priority ([`lower_priority`]): on two cores,
    /// touching huge pages at full priority took the second core from the log and page
    /// writers while a bulk load ran (`docs/design.md`, "The slab thread yields"). Nothing
    /// when the thread runs or enough spares are ready, or when no thread can be started (the
    /// next slab is then mapped in small pages when needed).
    fn reserve(self: &Arc<SlabPool>, st: &mut SlabState) {
        if st.preparing || st.spares.len() >= SPARES_AHEAD {
            return;
        }
        let pool = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("ese-cache-grow".into())
            .spawn(move || {
                lower_priority();
                loop {
                    let mut map = map_slab(true);
                    if let Some(m) = map.as_mut() {
                        for at in (0..m.len()).step_by(4096) {
                            // A write faults the page in (a read would map the shared zero
                            // page).
                            if let Some(b) = m.get_mut(at) {
                                *b = 0;
                            }
                        }
                    }
                    // A pool dropped meanwhile drops the slab here.
                    let Some(pool) = pool.upgrade() else { return };
                    let mut st = pool.state.lock();
                    let Some(m) = map else {
                        st.preparing = false;
                        return;
                    };
                    st.spares.push_back(m);
                    if st.spares.len() >= SPARES_AHEAD {
                        st.preparing = false;
                        return;
                    }
                }
            });
        if started.is_ok() {
            st.preparing = true;
        }
    }

    /// A buffer of the pool's page size holding `bytes` (of that size), in a slab; on the
    /// heap when no slab can be mapped.
    pub(crate) fn copy_of(self: &Arc<SlabPool>, bytes: &[u8]) -> PageBuf {
        match self.take() {
            Some(mut buf) if bytes.len() == buf.len => {
                buf.copy_from_slice(bytes);
                buf
            }
            _ => PageBuf::heap(Box::from(bytes)),
        }
    }

    /// A buffer of the pool's page size holding any bytes (what a page freed before left
    /// there), for a caller that writes every byte (see [`SlabPool::copy_of`]).
    pub(crate) fn any(self: &Arc<SlabPool>) -> PageBuf {
        self.take()
            .unwrap_or_else(|| PageBuf::heap(vec![0u8; self.page_size].into_boxed_slice()))
    }

    /// A zeroed buffer of the pool's page size (see [`SlabPool::copy_of`]).
    #[cfg(test)]
    pub(crate) fn zeroed(self: &Arc<SlabPool>) -> PageBuf {
        match self.take() {
            Some(mut buf) => {
                buf.fill(0);
                buf
            }
            None => PageBuf::heap(vec![0u8; self.page_size].into_boxed_slice()),
        }
    }

    /// A free region as a buffer (any content), mapping a new slab when none is free; `None`
    /// when the mapping fails or the page size does not divide a slab.
    fn take(self: &Arc<SlabPool>) -> Option<PageBuf> {
        let ps = self.page_size;
        if ps == 0 || !SLAB_BYTES.is_multiple_of(ps) {
            return None;
        }
        let mut st = self.state.lock();
        if st.free.is_empty() {
            // A slab touched in the background, in huge pages; else one in small pages, which
            // this thread faults in as it uses them: a huge page's first touch here would stall
            // it for the whole 2 MiB (17 ms on the VM `reserve` describes). The first slab is
            // always small: a small database (a temporary table) keeps its few pages there.
            let mut map = match st.spares.pop_front() {
                Some(map) => map,
                None => map_slab(false)?,
            };
            let base = map.as_mut_ptr() as usize;
            st.free
                .extend((0..SLAB_BYTES / ps).rev().map(|i| base + i * ps));
            st.slabs.push(map);
            // From the second slab on the cache is growing: the next slabs are prepared while
            // this one fills.
            if st.slabs.len() >= 2 {
                self.reserve(&mut st);
            }
        }
        let addr = st.free.pop()?;
        let ptr = NonNull::new(addr as *mut u8)?;
        Some(PageBuf {
            ptr,
            len: ps,
            owner: Owner::Slab(Arc::clone(self)),
        })
    }

    fn give_back(&self, ptr: NonNull<u8>) {
        self.state.lock().free.push(ptr.as_ptr() as usize);
    }

    /// Slabs mapped so far (bytes: this times 2 MiB).
    #[cfg(test)]
    pub(crate) fn slabs(&self) -> usize {
        self.state.lock().slabs.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// Once a second slab is mapped, the third comes from a spare mapped in the background,
    /// and the pool keeps [`SPARES_AHEAD`] ready while it grows.
    #[test]
    fn a_growing_pool_takes_its_next_slab_from_the_spare() {
        let pool = SlabPool::new(8192);
        let per = SLAB_BYTES / 8192;
        let mut bufs: Vec<PageBuf> = (0..=per).map(|_| pool.zeroed()).collect();
        assert_eq!(pool.slabs(), 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let spare = loop {
            if let Some(m) = pool.state.lock().spares.front() {
                break m.as_ptr() as usize;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no spare slab after 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        bufs.extend((0..per).map(|i| pool.copy_of(&vec![(i % 251) as u8; 8192])));
        {
            let st = pool.state.lock();
            assert_eq!(st.slabs.len(), 3);
            assert_eq!(
                st.slabs[2].as_ptr() as usize,
                spare,
                "the spare became the third slab"
            );
        }
        let last = bufs.last().unwrap();
        assert!(last.in_slab());
        assert!(last.iter().all(|&x| x == ((per - 1) % 251) as u8));
        // The thread goes on until SPARES_AHEAD slabs are ready, then stops.
        loop {
            let st = pool.state.lock();
            if !st.preparing {
                assert_eq!(st.spares.len(), SPARES_AHEAD);
                break;
            }
            drop(st);
            assert!(
                std::time::Instant::now() < deadline,
                "the spares were not ready after 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Taking them starts it again as soon as a slab is taken while growing.
        let more: Vec<PageBuf> = (0..=per).map(|_| pool.zeroed()).collect();
        let st = pool.state.lock();
        assert_eq!(st.slabs.len(), 4);
        assert!(st.preparing || st.spares.len() == SPARES_AHEAD);
        drop(st);
        drop((bufs, more));
    }

    #[test]
    fn slab_buffers_are_distinct_reused_and_copied_to_the_heap() {
        let pool = SlabPool::new(8192);
        let n = SLAB_BYTES / 8192 + 3;
        let mut bufs: Vec<PageBuf> = (0..n)
            .map(|i| pool.copy_of(&vec![(i % 251) as u8; 8192]))
            .collect();
        assert_eq!(pool.slabs(), 2, "a second slab once the first is used up");
        // Every buffer kept its own bytes: no two regions overlap.
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == (i % 251) as u8), "buffer {i}");
        }
        bufs[5].fill(0xAB);
        assert!(bufs[6].iter().all(|&x| x == 6));
        let copy = bufs[5].clone();
        assert!(!copy.in_slab() && bufs[5].in_slab());
        assert_eq!(copy, bufs[5]);
        assert_eq!(copy.into_heap().unwrap().len(), 8192);
        assert!(bufs.pop().unwrap().into_heap().is_none());
        // Dropped buffers go back to the free list and are handed out again.
        bufs.truncate(10);
        let again: Vec<PageBuf> = (0..n - 10).map(|_| pool.zeroed()).collect();
        assert!(again.iter().all(PageBuf::in_slab));
        assert_eq!(pool.slabs(), 2);
        assert!(again.iter().all(|b| b.iter().all(|&x| x == 0)));
        // A page size that does not divide a slab falls back to the heap.
        let odd = SlabPool::new(3000);
        let b = odd.copy_of(&[7u8; 3000]);
        assert!(!b.in_slab());
        assert_eq!(odd.slabs(), 0);
        // The heap buffer round-trips through a box.
        assert_eq!(&*b.into_heap().unwrap(), &[7u8; 3000][..]);
    }
}
