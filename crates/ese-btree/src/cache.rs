//! The buffer cache (ESE's BF): pages (raw bytes) in frames, a byte budget, pins and latches, dirty
//! tracking, write-back under the WAL rule and the checkpoint.
//!
//! - **Pin / latch.** A frame is pinned while someone holds an `Arc` to it (pinned frames are
//!   never evicted). Its page sits behind a `parking_lot::RwLock`: readers share it, a writer
//!   takes it exclusively. Lock order: page latch, then the cache mutex, then a frame's meta.
//! - **Hits take no lock.** Frames are found in the page table (`pagetable.rs`), a radix
//!   array by page number read without a lock: a hit writes no shared cache line but the
//!   frame's own, so readers neither wait for each other nor for a writer logging a change
//!   under the cache mutex. The table changes (insert on a miss, removal on eviction) only
//!   under the cache mutex, and an eviction removes a frame only if no reader took a pin on
//!   it meanwhile (`PageTable::remove_unpinned`).
//! - **Eviction: 2Q with CLOCK second chance.** A page read from disk enters the *probation*
//!   FIFO; only a page referenced again while on probation is promoted to the *protected*
//!   CLOCK. A scan touches each page once (cursors keep their current page pinned, so the
//!   many reads of one page during a scan count as one reference), so it cycles through
//!   probation without displacing the hot set. Probation is emptied first while it holds more
//!   than a quarter of the budget (2Q's recommended `Kin` of 25%). Chosen over CLOCK-Pro for
//!   its simplicity (no ghost lists) at a similar scan resistance for B+tree workloads.
//! - **No I/O under the cache mutex.** A miss inserts a *loading* frame whose write latch
//!   the reading thread holds, then reads and verifies the page outside the mutex; other
//!   readers of that page find the frame and wait on its latch (one read per page). Dirty
//!   pages chosen for eviction are written outside the mutex too, then evicted if still
//!   clean and unpinned: a miss whose victim is dirty writes back up to 64 dirty pages from
//!   the cold end with it, in one batch (one log flush, one doublewrite sync).
//! - **WAL rule.** A dirty page is written only after `Wal::flush(last_lgpos)`.
//! - **Checkpoint.** The oldest `first_dirty` position among pages that are dirty or written
//!   but not yet synced; with none, the newest position logged. It only moves forward.
//! - **Torn-page protection.** With a doublewrite file (`doublewrite.rs`, the default) every
//!   write-back batch is copied and synced there before its in-place writes, and a torn page
//!   is rewritten from its copy when the database opens. Without one, a page loaded from
//!   disk, or written since its last change, `needs_image`: its next change is logged as a
//!   full after-image (see `record.rs`).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use ese_core::{Error, ErrorKind, Lgpos, ObjId, Pgno, Result};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::doublewrite::{DoubleWrite, MAX_BATCH_PAGES};
use crate::header::DbFile;
use crate::latch::WriteGuard;
use crate::page::{NodeRef, Page, PageFlags};
use crate::pagebuf::SlabPool;
use crate::pagetable::PageTable;
use crate::wal::Wal;

/// Dirty-tracking state of a frame (protected by its own mutex, changed under the cache mutex).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) dirty: bool,
    pub(crate) first_dirty: Lgpos,
    pub(crate) last_lgpos: Lgpos,
    pub(crate) needs_image: bool,
    /// A write of the page is in flight (at most one at a time: see `write_run`).
    pub(crate) writing: bool,
}

/// The frame's page is being read by the thread that created the frame (which holds its
/// write latch meanwhile, so other readers of the page wait on the latch: one read per page).
const LOADING: u8 = 0;
/// The frame holds a verified page.
const READY: u8 = 1;
/// The read failed; the frame was removed from the map and waiters retry.
const FAILED: u8 = 2;

/// Attempts of [`BufferCache::get`] to find a page another thread failed to read before
/// reading it itself (each retry is caused by a concurrent failed read, so a few suffice).
const MAX_GET_ATTEMPTS: usize = 8;

/// A cached page.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) pgno: Pgno,
    /// The page latch, inline so that a descent finds the pin count, the latch state and
    /// the page's buffer pointer on one cache line (see [`ReadGuard`]).
    pub(crate) latch: RwLock<Page>,
    pub(crate) meta: Mutex<Meta>,
    /// The address of the page's buffer, which never moves while the frame lives (`Page`
    /// rewrites its buffer in place): what the page table prefetches.
    page_addr: usize,
    referenced: AtomicBool,
    hot: AtomicBool,
    state: AtomicU8,
}

#[cfg(test)]
impl Frame {
    /// A ready frame with an empty page.
    pub(crate) fn for_test(pgno: Pgno) -> Arc<Frame> {
        Frame::new(Page::placeholder(pgno), READY)
    }

    /// Marks the frame as gone (a test's evictor does, after removing it).
    pub(crate) fn mark_gone_for_test(&self) {
        self.state.store(FAILED, Ordering::SeqCst);
    }

    /// Whether [`Frame::mark_gone_for_test`] was called.
    pub(crate) fn is_gone_for_test(&self) -> bool {
        self.state.load(Ordering::SeqCst) == FAILED
    }
}

impl Frame {
    fn new(page: Page, state: u8) -> Arc<Frame> {
        Arc::new(Frame {
            pgno: page.pgno(),
            page_addr: page.buf_addr(),
            latch: RwLock::new(page),
            meta: Mutex::new(Meta {
                dirty: false,
                first_dirty: Lgpos::MIN,
                last_lgpos: Lgpos::MIN,
                needs_image: true,
                writing: false,
            }),
            referenced: AtomicBool::new(false),
            hot: AtomicBool::new(false),
            state: AtomicU8::new(state),
        })
    }

    /// The address of the page's buffer (see the field).
    pub(crate) fn page_addr(&self) -> usize {
        self.page_addr
    }

    /// The address of the page's search hints (`hints.rs`), for prefetching: computed, not
    /// read.
    pub(crate) fn hints_addr(&self) -> usize {
        (self.latch.data_ptr() as usize).wrapping_add(Page::HINTS_OFFSET)
    }

    /// Waits until a loading frame is resolved; whether it holds its page.
    fn wait_ready(&self) -> bool {
        if self.state.load(Ordering::Acquire) == READY {
            return true;
        }
        drop(self.latch.read());
        self.state.load(Ordering::Acquire) == READY
    }
}

/// Counters of the buffer cache (ESE's BF performance counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Page requests satisfied from the cache.
    pub hits: u64,
    /// Page requests that had to read the page from the file.
    pub misses: u64,
    /// Pages removed from the cache to make room.
    pub evictions: u64,
    /// Pages read from the file.
    pub pages_read: u64,
    /// Pages written to the file.
    pub pages_written: u64,
    /// Pages currently cached.
    pub cached_pages: u64,
    /// Pages currently dirty.
    pub dirty_pages: u64,
}

#[derive(Debug, Default)]
struct Inner {
    probation: VecDeque<Pgno>,
    protected: VecDeque<Pgno>,
    dirty: BTreeSet<(Lgpos, Pgno)>,
    /// Page writes under way: (first change of the written state, page, write ticket).
    in_flight: BTreeSet<(Lgpos, Pgno, u64)>,
    /// Page writes done but not yet synced.
    unsynced: BTreeSet<(Lgpos, Pgno, u64)>,
    /// Next write ticket. Two writers may write the same page at once (both hold its read
    /// latch): each write is tracked on its own, so the checkpoint waits for the sync that
    /// follows the later one. A single entry per page once let a sync that finished before the
    /// second write remove the page, and a torn second write was left without a logged image.
    write_seq: u64,
    last_lgpos: Lgpos,
}

/// Stripes of a [`StripedCounter`].
const STRIPES: usize = 16;

/// One stripe, alone on its cache line (128 bytes: adjacent-line prefetch pairs lines).
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter many threads bump at once (cache hits): each thread always bumps the same
/// stripe, so readers on different cores do not contend for one cache line.
#[derive(Default)]
struct StripedCounter([Stripe; STRIPES]);

thread_local! {
    /// This thread's stripe.
    static STRIPE: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

impl StripedCounter {
    fn add(&self) {
        let i = STRIPE.with(|s| *s);
        if let Some(s) = self.0.get(i) {
            s.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The buffer cache of one database file.
pub(crate) struct BufferCache {
    pub(crate) file: DbFile,
    wal: Arc<dyn Wal>,
    budget_pages: usize,
    inner: Mutex<Inner>,
    /// Cached frames by page number (see "Hits take no lock" above).
    table: PageTable,
    hits: StripedCounter,
    misses: AtomicU64,
    evictions: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    /// While redo runs, dirty pages are not evicted (see `redo.rs`).
    pub(crate) recovering: AtomicBool,
    failed: Mutex<Option<Error>>,
    /// Set once `failed` holds an error: every change checks it, without the mutex.
    has_failed: AtomicBool,
    /// The doublewrite file every write-back goes through first; `None` without one (then
    /// a page's first change after a read or a write is logged as a full image).
    dw: Option<DoubleWrite>,
    /// The cached pages' buffers (`pagebuf.rs`).
    slabs: Arc<SlabPool>,
    /// The thread that runs [`BufferCache::scavenge`] (ESE's buffer scavenging), woken when
    /// an eviction finds its victim dirty; `None` without one.
    scavenger: Mutex<Option<std::thread::Thread>>,
}

impl std::fmt::Debug for BufferCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferCache")
            .field("budget_pages", &self.budget_pages)
            .finish_non_exhaustive()
    }
}

/// A page write in flight or not yet synced: the page's first change it covers, its page
/// number and a sequence number (the checkpoint cannot pass the first change until it is
/// synced).
type WriteTicket = (Lgpos, Pgno, u64);

/// Fewest pages the cache holds whatever the budget: a split pins the path (at most
/// `MAX_DEPTH` pages), up to three new pages, a sibling and the space page.
pub(crate) const MIN_CACHE_PAGES: usize = 64;

/// Whether `frame`, looked up from the page table for eviction or write-back, is pinned by
/// someone else (two strong references: the table's and `frame`; any more is a pin) or not
/// yet ready: such a frame is neither evicted nor taken into a scavenging batch.
fn busy(frame: &Arc<Frame>) -> bool {
    Arc::strong_count(frame) > 2 || frame.state.load(Ordering::Acquire) != READY
}

/// Most dirty pages one eviction writes back together (see [`BufferCache::choose_victims`]).
const VICTIM_BATCH_PAGES: usize = 64;

/// How far from the cold end [`BufferCache::scavenge`] looks for dirty pages, in each of
/// the two queues (at most a quarter of the cache): 8 MiB of 8 KiB pages.
const SCAVENGE_DEPTH: usize = 1024;

impl BufferCache {
    pub(crate) fn new(
        file: DbFile,
        wal: Arc<dyn Wal>,
        budget_bytes: u64,
        dw: Option<DoubleWrite>,
    ) -> BufferCache {
        let page_size = file.page_size();
        let ps = page_size as u64;
        let table = PageTable::new(page_size);
        let budget_pages = usize::try_from(budget_bytes / ps)
            .unwrap_or(usize::MAX)
            .max(MIN_CACHE_PAGES);
        BufferCache {
            file,
            wal,
            budget_pages,
            inner: Mutex::new(Inner::default()),
            table,
            hits: StripedCounter::default(),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            recovering: AtomicBool::new(false),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            dw,
            slabs: SlabPool::new(page_size),
            scavenger: Mutex::new(None),
        }
    }

    pub(crate) fn page_size(&self) -> usize {
        self.file.page_size()
    }

    /// Fails with `DatabaseUnavailable` after an earlier write or sync failure (fail-stop).
    pub(crate) fn check_failed(&self) -> Result<()> {
        if !self.has_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.failed.lock() {
            Some(e) => Err(Error::new(ErrorKind::DatabaseUnavailable)
                .with_message(format!("an earlier write failed: {e}"))),
            None => Ok(()),
        }
    }

    pub(crate) fn latch_failure(&self, e: Error) -> Error {
        let mut f = self.failed.lock();
        if f.is_none() {
            *f = Some(e.clone());
            self.has_failed.store(true, Ordering::Release);
        }
        e
    }

    /// The frame of `pgno`, read and verified from the file on a miss. The read happens
    /// outside the cache mutex; a second reader of the same page waits for the first.
    pub(crate) fn get(&self, pgno: Pgno) -> Result<Arc<Frame>> {
        self.get_inner(pgno, true)?.ok_or_else(|| {
            Error::new(ErrorKind::InternalError).with_message("waiting page read returned nothing")
        })
    }

    /// [`BufferCache::get`] for a caller that holds a latch it must not wait while holding
    /// (a cursor stepping to a sibling leaf): `None` when another thread is reading the page.
    /// A miss is still read by this thread (a loader never waits for other latches).
    pub(crate) fn try_get(&self, pgno: Pgno) -> Result<Option<Arc<Frame>>> {
        self.get_inner(pgno, false)
    }

    fn get_inner(&self, pgno: Pgno, wait: bool) -> Result<Option<Arc<Frame>>> {
        for _ in 0..MAX_GET_ATTEMPTS {
            let mut hit = self.table.get(pgno);
            if hit.is_none() {
                let mut g = self.inner.lock();
                // Another thread may have installed it meanwhile.
                hit = self.table.get(pgno);
                if hit.is_none() {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let victims = self.choose_victims(&mut g);
                    let frame = Frame::new(Page::unread_in(&self.slabs, pgno), LOADING);
                    let guard = WriteGuard::new(Arc::clone(&frame));
                    self.install(&mut g, &frame)?;
                    drop(g);
                    return self.load(pgno, frame, guard, victims).map(Some);
                }
            }
            if let Some(f) = hit {
                // Written only when clear: every reader of a hot page (the root) writing the
                // flag would bounce its cache line between cores.
                if !f.referenced.load(Ordering::Relaxed) {
                    f.referenced.store(true, Ordering::Relaxed);
                }
                if !wait && f.state.load(Ordering::Acquire) != READY {
                    return Ok(None);
                }
                if f.wait_ready() {
                    self.hits.add();
                    return Ok(Some(f));
                }
            }
        }
        Err(Error::new(ErrorKind::DiskIO)
            .with_pgno(pgno)
            .with_message("page read kept failing in other threads"))
    }

    /// Reads page `pgno` into `frame`, just installed as loading with its write latch held
    /// (`guard`), then writes the victims chosen to make room.
    fn load(
        &self,
        pgno: Pgno,
        frame: Arc<Frame>,
        mut guard: WriteGuard,
        victims: Vec<Arc<Frame>>,
    ) -> Result<Arc<Frame>> {
        let read = guard.read_in_place(|buf| self.file.read_page(pgno, buf));
        match read {
            Ok(()) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                // With a doublewrite file a torn write of this page is repaired from its copy,
                // so the page as read is a sound base for redo: no image needed.
                frame.meta.lock().needs_image = self.dw.is_none();
                frame.state.store(READY, Ordering::Release);
                drop(guard);
                self.evict_victims(victims)?;
                Ok(frame)
            }
            Err(e) => {
                let e = e.with_path(self.file.path());
                frame.state.store(FAILED, Ordering::Release);
                {
                    let _g = self.inner.lock();
                    self.table.remove(&frame);
                }
                drop(guard);
                self.evict_victims(victims)?;
                Err(e)
            }
        }
    }

    /// The frame of `pgno` if cached, otherwise a new frame holding a copy of `content` (for
    /// pages that are about to be overwritten: newly allocated pages, redo of an image).
    pub(crate) fn get_or_install(&self, pgno: Pgno, content: &Page) -> Result<Arc<Frame>> {
        self.get_or_install_by(pgno, content, |c| c.copy_in(&self.slabs))
            .map(|(f, _)| f)
    }

    /// The frame of `pgno` if cached, with `content` handed back; otherwise a new frame
    /// holding the page `make` makes of `content` (called only then, under the cache mutex).
    fn get_or_install_by<T>(
        &self,
        pgno: Pgno,
        content: T,
        make: impl FnOnce(T) -> Page,
    ) -> Result<(Arc<Frame>, Option<T>)> {
        for _ in 0..MAX_GET_ATTEMPTS {
            let mut g = self.inner.lock();
            if let Some(f) = self.table.get(pgno) {
                drop(g);
                if f.wait_ready() {
                    return Ok((f, Some(content)));
                }
                continue;
            }
            let victims = self.choose_victims(&mut g);
            let frame = Frame::new(make(content), READY);
            self.install(&mut g, &frame)?;
            drop(g);
            self.evict_victims(victims)?;
            return Ok((frame, None));
        }
        Err(Error::new(ErrorKind::DiskIO)
            .with_pgno(pgno)
            .with_message("page read kept failing in other threads"))
    }

    /// A page of `nodes` built in a buffer of the cache's own (see [`Page::built_in`] and
    /// [`BufferCache::get_or_install_page`]); `head` is its page number, objid, flags and
    /// level.
    ///
    /// # Errors
    /// `InternalError` when the nodes do not fit a page.
    pub(crate) fn build_page<'n>(
        &self,
        head: (Pgno, ObjId, PageFlags, u8),
        nodes: impl Iterator<Item = NodeRef<'n>> + Clone,
    ) -> Result<Page> {
        Page::built_in(&self.slabs, head, nodes)
    }

    /// [`BufferCache::get_or_install`] for a page built in a buffer of the cache's own
    /// ([`BufferCache::build_page`]): a new frame takes the page itself, without a copy.
    /// When the page is cached already, its frame is returned with `page` (the caller copies
    /// it in).
    ///
    /// # Errors
    /// As [`BufferCache::get_or_install`].
    pub(crate) fn get_or_install_page(&self, page: Page) -> Result<(Arc<Frame>, Option<Page>)> {
        self.get_or_install_by(page.pgno(), page, |p| p)
    }

    /// Installs `frame`, new, as the frame of its page (which the caller, holding the cache
    /// mutex `g`, found without one) on probation.
    fn install(&self, g: &mut Inner, frame: &Arc<Frame>) -> Result<()> {
        if !self.table.insert(Arc::clone(frame)) {
            return Err(Error::new(ErrorKind::InternalError)
                .with_pgno(frame.pgno)
                .with_message("page cached twice"));
        }
        g.probation.push_back(frame.pgno);
        Ok(())
    }

    /// Makes room for one more frame: evicts clean, unpinned frames at once and returns the
    /// dirty ones chosen (pinned by the returned `Arc`s) to be written outside the mutex.
    ///
    /// A dirty victim costs a write-back (a log flush up to its last change, and with the
    /// doublewrite file a staged copy and its sync) on the thread that needs the frame. So when
    /// the first victim is dirty, the scan goes on past the frame it needed for more dirty
    /// pages from the cold end, up to [`BufferCache::victim_batch`] in all, written as one
    /// batch and evicted together: a cache full of dirty pages (a load larger than the cache,
    /// in one transaction the checkpoint cannot pass) then pays one flush and one sync per
    /// batch instead of one per miss, and the next misses find free frames. Clean frames met
    /// while only gathering are put back where they were.
    fn choose_victims(&self, g: &mut Inner) -> Vec<Arc<Frame>> {
        let mut dirty = Vec::new();
        let mut need = (self.table.len() + 1).saturating_sub(self.budget_pages);
        let mut budget = 2 * (g.probation.len() + g.protected.len()) + 2;
        let batch = self.victim_batch();
        // Pops left for gathering once `need` is met, and the clean frames passed over then
        // (with whether they came from probation), put back at the front afterwards.
        let mut gather = 4 * batch;
        let mut passed: Vec<(Pgno, bool)> = Vec::new();
        while budget > 0 {
            if need == 0 {
                if dirty.is_empty() || dirty.len() >= batch || gather == 0 {
                    break;
                }
                gather -= 1;
            }
            budget -= 1;
            let from_probation =
                g.probation.len() * 4 > self.budget_pages || g.protected.is_empty();
            let popped = if from_probation {
                g.probation.pop_front()
            } else {
                g.protected.pop_front()
            };
            let Some(pgno) = popped else {
                break;
            };
            let Some(frame) = self.table.get(pgno) else {
                continue;
            };
            let requeue = |g: &mut Inner, hot: bool| {
                if hot {
                    g.protected.push_back(pgno);
                } else {
                    g.probation.push_back(pgno);
                }
            };
            if busy(&frame) {
                requeue(g, frame.hot.load(Ordering::Relaxed));
                continue;
            }
            if frame.referenced.swap(false, Ordering::Relaxed) {
                frame.hot.store(true, Ordering::Relaxed);
                requeue(g, true);
                continue;
            }
            if frame.meta.lock().dirty {
                if self.recovering.load(Ordering::Relaxed) {
                    requeue(g, frame.hot.load(Ordering::Relaxed));
                    continue;
                }
                dirty.push(frame);
                need = need.saturating_sub(1);
                continue;
            }
            if need == 0 {
                passed.push((pgno, from_probation));
                continue;
            }
            // Two strong references as above, unless a reader pinned it since the check.
            if self.table.remove_unpinned(&frame, 2) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                need -= 1;
            } else {
                requeue(g, frame.hot.load(Ordering::Relaxed));
            }
        }
        for (pgno, probation) in passed.into_iter().rev() {
            if probation {
                g.probation.push_front(pgno);
            } else {
                g.protected.push_front(pgno);
            }
        }
        if !dirty.is_empty()
            && let Some(t) = &*self.scavenger.lock()
        {
            // The cold end is dirty: the scavenger cleans it ahead of the next evictions.
            t.unpark();
        }
        // Everything pinned (or dirty during redo): run over budget rather than fail.
        dirty
    }

    /// Most dirty victims [`BufferCache::choose_victims`] gathers into one write-back: 64
    /// pages (512 KiB of 8 KiB pages), and at most a sixteenth of the cache, so a small cache
    /// is not emptied by one batch.
    fn victim_batch(&self) -> usize {
        (self.budget_pages / 16).clamp(1, VICTIM_BATCH_PAGES)
    }

    /// Sets (or with `None` clears) the thread [`BufferCache::choose_victims`] wakes when an
    /// eviction finds its victim dirty.
    pub(crate) fn set_scavenger(&self, thread: Option<std::thread::Thread>) {
        *self.scavenger.lock() = thread;
    }

    /// One step of buffer scavenging (ESE's background write-back that keeps clean buffers
    /// available): when the cache is full, writes back up to [`BufferCache::victim_batch`]
    /// dirty pages among the next [`SCAVENGE_DEPTH`] each queue's evictions will take (from
    /// the fronts of the probation FIFO and of the protected CLOCK, not counting pinned pages
    /// and pages referenced since their last pass, which stay), as one batch: one log flush up to their
    /// last change (the WAL rule), one doublewrite sync. The pages stay cached, clean, so the
    /// evictions that reach them take them without I/O. Returns the pages written (0: the
    /// cache is not full, or the pages the evictions take next are clean).
    ///
    /// # Errors
    /// As [`BufferCache::flush_all`].
    pub(crate) fn scavenge(&self) -> Result<usize> {
        self.check_failed()?;
        if self.recovering.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let batch = self.victim_batch();
        let frames: Vec<Arc<Frame>> = {
            let g = self.inner.lock();
            if self.table.len() + batch < self.budget_pages {
                return Ok(0);
            }
            let depth = SCAVENGE_DEPTH.min(self.budget_pages / 4).max(batch);
            let mut found = Vec::with_capacity(batch);
            for queue in [&g.probation, &g.protected] {
                // `depth` pages an eviction would take, looked for among at most four times
                // as many entries (the others are pinned or get a second chance).
                let mut candidates = 0;
                for pgno in queue.iter().take(4 * depth) {
                    if found.len() >= batch || candidates >= depth {
                        break;
                    }
                    let Some(f) = self.table.get(*pgno) else {
                        continue;
                    };
                    if busy(&f) || f.referenced.load(Ordering::Relaxed) {
                        continue;
                    }
                    candidates += 1;
                    let m = f.meta.lock();
                    if m.dirty && !m.writing {
                        drop(m);
                        found.push(f);
                    }
                }
            }
            found
        };
        if frames.is_empty() {
            return Ok(0);
        }
        self.write_unwaited(&frames)
    }

    /// Writes the dirty pages among `frames` as one run ([`BufferCache::write_run`]), taking
    /// each page's read latch without waiting: the caller may hold latches (a reader coupling
    /// down the tree, a loading frame other readers wait on), and a writer holding one of these
    /// pages may wait for one of them (or for the writer mutex); a busy page is left out.
    /// Returns the pages written.
    fn write_unwaited(&self, frames: &[Arc<Frame>]) -> Result<usize> {
        let mut run: Vec<(&Frame, RwLockReadGuard<'_, Page>)> = frames
            .iter()
            .filter_map(|f| Some((&**f, f.latch.try_read()?)))
            .collect();
        run.sort_unstable_by_key(|(f, _)| f.pgno);
        self.write_run(run)
    }

    /// Writes the dirty victims (WAL rule first), then evicts those still unpinned and clean.
    fn evict_victims(&self, victims: Vec<Arc<Frame>>) -> Result<()> {
        if victims.is_empty() {
            return Ok(());
        }
        // A busy victim stays cached.
        let result = self.write_unwaited(&victims);
        let mut g = self.inner.lock();
        for f in victims {
            let pgno = f.pgno;
            let ours = self.table.holds(&f);
            // Two strong references: the table's and `f`.
            if ours && !f.meta.lock().dirty && self.table.remove_unpinned(&f, 2) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            } else if ours {
                if f.hot.load(Ordering::Relaxed) {
                    g.protected.push_back(pgno);
                } else {
                    g.probation.push_back(pgno);
                }
            }
        }
        result.map(|_| ())
    }

    /// Writes the dirty pages among `run` (frames in increasing page order, each with its read
    /// latch, which the caller took: no page changes while it is sealed): one log flush up to
    /// the last change of any of them (WAL rule), then [`BufferCache::write_pages`], and moves
    /// them from dirty to unsynced. Returns the pages written (those still dirty and not
    /// being written by another flusher).
    ///
    /// With a doublewrite file the latches are released once the pages are sealed, before any
    /// I/O: writers of these pages do not wait for the copy's sync. A page changed during its
    /// write stays dirty (its last change is not in what was written), and each frame has at
    /// most one write in flight (`Meta::writing`), so an older version can never land after a
    /// newer one. Without a doublewrite file the latches are held until the write is done:
    /// the next change must see `needs_image` set by this write's completion, or a torn write
    /// would be followed by a change logged without the image redo needs.
    ///
    /// Two flushers may try one page at once. The dirty check and the write ticket are taken
    /// together under the cache mutex, where a completed write also marks the page clean: so
    /// a flusher either sees the page dirty and not being written and holds the checkpoint
    /// back with its ticket until its write is synced, or does not write it. (Checking first
    /// and taking the ticket later let a second writer slip in after the first write was
    /// synced and the checkpoint had passed the page: a crash then tore that second, unsynced
    /// write of a page no log record after the checkpoint could rebuild.)
    fn write_run(&self, mut run: Vec<(&Frame, RwLockReadGuard<'_, Page>)>) -> Result<usize> {
        // The read latches keep `last_lgpos` from changing.
        let last = run
            .iter()
            .filter_map(|(f, _)| {
                let m = f.meta.lock();
                m.dirty.then_some(m.last_lgpos)
            })
            .max();
        let Some(last) = last else {
            return Ok(0);
        };
        self.check_failed()?;
        self.wal.flush(last).map_err(|e| self.latch_failure(e))?;
        // Per page written: its ticket and the last change it holds.
        let tickets: Vec<Option<(WriteTicket, Lgpos)>> = {
            let mut g = self.inner.lock();
            run.iter()
                .map(|(f, _)| {
                    let mut m = f.meta.lock();
                    // A page written by another flusher meanwhile is clean, one being written
                    // is left to that write: not written again.
                    (m.dirty && !m.writing).then(|| {
                        m.writing = true;
                        g.write_seq += 1;
                        let t = (m.first_dirty, f.pgno, g.write_seq);
                        g.in_flight.insert(t);
                        (t, m.last_lgpos)
                    })
                })
                .collect()
        };
        let ps = self.page_size();
        let mut buf = Vec::with_capacity(run.len() * ps);
        let mut pgnos = Vec::with_capacity(run.len());
        for ((f, page), t) in run.iter().zip(&tickets) {
            if t.is_some() {
                pgnos.push(f.pgno);
                page.seal_into(&mut buf);
            }
        }
        let frames: Vec<&Frame> = run.iter().map(|(f, _)| *f).collect();
        if self.dw.is_some() {
            run.clear();
        }
        let written = self.write_pages(&pgnos, &buf);
        let mut g = self.inner.lock();
        for (f, t) in frames.iter().zip(&tickets) {
            if let Some((t, _)) = t {
                g.in_flight.remove(t);
                f.meta.lock().writing = false;
            }
        }
        written.map_err(|e| self.latch_failure(e.with_path(self.file.path())))?;
        for (f, t) in frames.iter().zip(&tickets) {
            let Some((t, sealed_last)) = t else { continue };
            self.writes.fetch_add(1, Ordering::Relaxed);
            g.unsynced.insert(*t);
            let mut meta = f.meta.lock();
            // Changed since it was sealed: what was written is not its latest state, and the
            // page stays dirty from its first change (the checkpoint waits for its next write).
            if meta.dirty && meta.last_lgpos == *sealed_last {
                g.dirty.remove(&(t.0, f.pgno));
                meta.dirty = false;
                // Without a doublewrite file this write may tear, and only a full image
                // logged with the next change lets redo rebuild the page.
                meta.needs_image = self.dw.is_none();
            }
        }
        drop(run);
        Ok(pgnos.len())
    }

    /// Writes the sealed pages in `buf` (page `pgnos[i]` at `buf[i * page size..]`, in
    /// increasing page order) in place, one write per stretch of consecutive page numbers;
    /// with a doublewrite file, staged there first, up to [`MAX_BATCH_PAGES`] at a time.
    fn write_pages(&self, pgnos: &[Pgno], buf: &[u8]) -> Result<()> {
        let ps = self.page_size();
        for (pgnos, buf) in pgnos
            .chunks(MAX_BATCH_PAGES)
            .zip(buf.chunks(MAX_BATCH_PAGES * ps))
        {
            let _staged = match &self.dw {
                Some(dw) => Some(dw.stage(buf, || self.file.sync())?),
                None => None,
            };
            let mut at = 0;
            while let Some(&first) = pgnos.get(at) {
                let mut end = at + 1;
                while pgnos
                    .get(end)
                    .is_some_and(|p| first.0.checked_add((end - at) as u32) == Some(p.0))
                {
                    end += 1;
                }
                let stretch = buf.get(at * ps..end * ps).ok_or_else(|| {
                    Error::new(ErrorKind::InternalError)
                        .with_message("write-back buffer shorter than its pages")
                })?;
                self.file.write_page(first, stretch)?;
                at = end;
            }
        }
        Ok(())
    }

    /// Appends `record` to the WAL and marks `frames` dirty at its position, atomically with
    /// respect to the checkpoint. The caller holds the frames' write latches.
    pub(crate) fn log_change(&self, record: &[u8], frames: &[&Frame]) -> Result<Lgpos> {
        self.log_change_parts(&[record], frames)
    }

    /// [`BufferCache::log_change`] of the record made of `parts` in order.
    pub(crate) fn log_change_parts(&self, parts: &[&[u8]], frames: &[&Frame]) -> Result<Lgpos> {
        self.check_failed()?;
        let mut g = self.inner.lock();
        let lgpos = self.wal.append_parts(parts)?;
        Self::mark_dirty(&mut g, frames, lgpos);
        Ok(lgpos)
    }

    /// Marks `frames` dirty at `lgpos` without logging (redo).
    pub(crate) fn redo_dirty(&self, frames: &[&Frame], lgpos: Lgpos) {
        let mut g = self.inner.lock();
        Self::mark_dirty(&mut g, frames, lgpos);
    }

    fn mark_dirty(g: &mut Inner, frames: &[&Frame], lgpos: Lgpos) {
        for f in frames {
            let mut m = f.meta.lock();
            if !m.dirty {
                m.dirty = true;
                m.first_dirty = lgpos;
                g.dirty.insert((lgpos, f.pgno));
            }
            m.last_lgpos = m.last_lgpos.max(lgpos);
            m.needs_image = false;
        }
        g.last_lgpos = g.last_lgpos.max(lgpos);
    }

    /// The checkpoint: the oldest log position redo must start from.
    pub(crate) fn checkpoint(&self) -> Lgpos {
        let inner = self.inner.lock();
        [
            inner.dirty.first().map(|x| x.0),
            inner.in_flight.first().map(|x| x.0),
            inner.unsynced.first().map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(inner.last_lgpos)
    }

    /// Makes written pages durable and lets the checkpoint pass them.
    pub(crate) fn sync(&self) -> Result<()> {
        let snapshot: Vec<(Lgpos, Pgno, u64)> =
            self.inner.lock().unsynced.iter().copied().collect();
        if snapshot.is_empty() {
            return Ok(());
        }
        self.file.sync().map_err(|e| self.latch_failure(e))?;
        let mut g = self.inner.lock();
        for x in &snapshot {
            g.unsynced.remove(x);
        }
        Ok(())
    }

    /// Writes every dirty page (obeying the WAL rule) and syncs the file. Pages are written in
    /// page-number order in batches of up to [`MAX_BATCH_PAGES`] after one log flush, each
    /// batch staged in the doublewrite file with one sync and then written in place with one
    /// write per stretch of neighbours (ESE's checkpoint write-back coalesces the same way), so
    /// writing back a large load is a few sequential writes rather than a write per page.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.flush_older(Lgpos::MAX)
    }

    /// Writes the dirty pages first changed before `limit` (the ones holding the checkpoint
    /// below it), as [`BufferCache::flush_all`] writes, and syncs the file.
    pub(crate) fn flush_older(&self, limit: Lgpos) -> Result<()> {
        self.flush_oldest(limit, usize::MAX)
    }

    /// [`BufferCache::flush_older`] for at most `max_pages` pages: those with the oldest first
    /// changes, which hold the checkpoint furthest back.
    pub(crate) fn flush_oldest(&self, limit: Lgpos, max_pages: usize) -> Result<()> {
        self.write_oldest(limit, max_pages)?;
        self.sync()
    }

    /// [`BufferCache::flush_oldest`] without the final sync.
    pub(crate) fn write_oldest(&self, limit: Lgpos, max_pages: usize) -> Result<()> {
        let mut frames: Vec<Arc<Frame>> = {
            let g = self.inner.lock();
            g.dirty
                .range(..(limit, Pgno::NULL))
                .take(max_pages)
                .filter_map(|(_, p)| self.table.get(*p))
                .collect()
        };
        frames.sort_unstable_by_key(|f| f.pgno);
        // One log flush for them all before any latch is taken: the runs then find the log
        // durable and hold their latches only for the write (a writer waiting for one of them
        // may hold the database's writer mutex).
        let last = frames.iter().map(|f| f.meta.lock().last_lgpos).max();
        if let Some(last) = last {
            self.wal.flush(last).map_err(|e| self.latch_failure(e))?;
        }
        let mut rest = frames.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            // Only the first latch of a batch is waited for; a page whose latch is taken ends
            // the batch (a writer holding it may be waiting for a latch this batch holds) and
            // starts the next one.
            let mut guards = vec![(first, first.latch.read())];
            rest = tail;
            while guards.len() < MAX_BATCH_PAGES {
                let Some((next, tail)) = rest.split_first() else {
                    break;
                };
                let Some(g) = next.latch.try_read() else {
                    break;
                };
                guards.push((next, g));
                rest = tail;
            }
            self.write_run(guards.into_iter().map(|(f, g)| (&**f, g)).collect())?;
        }
        Ok(())
    }

    /// Every dirty frame (for redo's end).
    pub(crate) fn dirty_frames(&self) -> Vec<Arc<Frame>> {
        let g = self.inner.lock();
        g.dirty
            .iter()
            .filter_map(|(_, p)| self.table.get(*p))
            .collect()
    }

    /// Drops every clean, unpinned frame (tests use it to force re-reads).
    pub(crate) fn drop_clean(&self) {
        let _g = self.inner.lock();
        for f in self.table.frames() {
            // Two strong references: the table's and `f`.
            if f.state.load(Ordering::Acquire) == READY && !f.meta.lock().dirty {
                self.table.remove_unpinned(&f, 2);
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            pages_read: self.reads.load(Ordering::Relaxed),
            pages_written: self.writes.load(Ordering::Relaxed),
            cached_pages: self.table.len() as u64,
            dirty_pages: g.dirty.len() as u64,
        }
    }
}
