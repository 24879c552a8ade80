//! Search hints of a cached leaf: the first bytes of each node's key past the prefix all its
//! keys share, kept beside the page in memory (never written to disk), so that a search reads
//! one short array instead of a node line per binary-search step.
//!
//! A binary search over a leaf of *n* nodes reads about log2(*n*) keys, each on its own cache
//! line somewhere in the page: on a leaf not in the CPU cache, one miss after the other, as
//! each step needs the key of the one before. With hints, the search compares against the
//! **heads** (4 bytes of each key, after the page's common prefix, as one big-endian integer:
//! an array of at most [`CAP`] integers, one or two cache lines for a typical leaf), then
//! compares whole keys only among nodes whose head equals the search key's (usually one node:
//! the one whose record is read next anyway).
//!
//! - **Order.** The page's keys are sorted and all begin with the common prefix of its first
//!   and last keys, so their heads (zero-padded when a key ends within them) never decrease.
//!   A head smaller than the search key's belongs to a smaller key, a larger head to a larger
//!   key; only equal heads need the keys themselves: [`Hints::candidates`] gives that range of
//!   nodes, and `Page::search` runs its one binary search over the tags inside it (over all
//!   of them without hints), so the answer is the same either way.
//! - **Lifetime.** The hints live in the [`crate::page::Page`] value, so they are guarded by
//!   the page's latch like its bytes. Every mutable access to the page's bytes past its
//!   header resets them (`Page::buf_mut`, the one path to those bytes: a plain store, under
//!   the exclusive latch); the header (dbtime, links, counts) holds no key.
//!   The changes whose effect on the keys is known carry them over: an insert adds its key's
//!   head (when the key begins with the kept prefix and the page stays within [`CAP`]
//!   nodes), a removal drops its head, a change of a node's data or flags keeps them
//!   ([`Hints::take`], then [`Hints::inserted`], [`Hints::removed`] or [`Hints::put_back`]).
//!   `Page::copy_from` and `Page::copy_in` copy them with the bytes; `Clone` starts without.
//! - **When built.** A search of a page without hints marks it as searched; the next search
//!   of that page, unchanged or changed only in the ways above, builds them (reading every
//!   key once: loads that overlap instead of following each other). A page read repeatedly
//!   is built for once. A split builds the hints of its new page as it writes it (its keys
//!   are in the CPU cache then), and the page it splits keeps its own through the removals
//!   and the insert, so the inserts of a load search through hints too. Builders hold the
//!   latch shared: two may build at once, and store the same values. Every field is an
//!   atomic, so that is not a data race; the state is published with `Release` after the
//!   heads.
//! - Leaves of more than [`CAP`] nodes get no hints (their search reads the tags as before).
//!
//! **Internal pages** hold hundreds of separators (a shortest separator is a few bytes), too
//! many for the array kept inline, and a descent searches two or three of them before its
//! leaf: each a binary search of eight or nine steps, a tag and a key line apiece. They keep
//! their heads in a separate allocation instead ([`Hints::wide_candidates`]), sized to the
//! page: the heads of every node but the last (whose key no descent compares: the parent
//! bounds it). Only internal pages have them, about one page in a hundred, so the memory is
//! small. They are built at the second search of an unchanged page as leaves' are, follow a
//! split's separator inserts and removals the same way, and are dropped by any other change.

use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering as Mem};

use ese_core::Pgno;

use crate::page::{NodeRef, child_pgno};

/// Most nodes of a page with hints.
pub(crate) const CAP: usize = 64;
/// Most bytes of common prefix the hints keep (a longer shared prefix is cut here: heads are
/// then taken from within it, still in order, only less telling).
const PREFIX_CAP: usize = 24;

/// No hints; the page has not been searched since its last change.
const EMPTY: u8 = 0;
/// Searched once since its last change, without hints.
const SEEN: u8 = 1;
/// The hints hold for the page as it is.
const READY: u8 = 2;

/// The hints of one page (see the module notes).
pub(crate) struct Hints {
    state: AtomicU8,
    /// Bytes of the common prefix kept (`..=PREFIX_CAP`).
    prefix_len: AtomicU8,
    /// Nodes when built: checked against the page's count at each use.
    count: AtomicU16,
    /// The common prefix, zero-padded, in words of 8 bytes (little-endian).
    prefix: [AtomicU64; PREFIX_CAP / 8],
    heads: [AtomicU32; CAP],
    /// An internal page's heads (see the module notes), built once under the shared latch.
    wide: OnceLock<Box<Wide>>,
    /// An internal page searched without `wide` since its last change.
    wide_seen: AtomicBool,
}

/// Heads in one block of an internal page's heads: one cache line.
const BLOCK: usize = 16;

/// The heads of an internal page's nodes but its last (see the module notes).
///
/// A binary search over a few hundred heads still reads five or six cache lines one after
/// the other. The heads are therefore searched in two steps: `fences` holds the last head of
/// each block of [`BLOCK`] heads (two cache lines for 500 nodes), counted through whole
/// (independent loads, which the CPU overlaps) to find the block, then that block's one
/// line is counted through the same way.
#[derive(Clone)]
struct Wide {
    /// The common prefix of the first and last hinted keys (`..PREFIX_CAP` bytes).
    prefix: [u8; PREFIX_CAP],
    prefix_len: usize,
    heads: Vec<u32>,
    /// The last head of each block of `heads`.
    fences: Vec<u32>,
    /// The child page of every node (the last one's too): a search whose head falls between
    /// two nodes' reads its answer here, without the tag and node lines of the page.
    children: Vec<Pgno>,
}

impl Wide {
    /// The heads of the `m` keys `key_at(0..m)` (`m >= 1`) and the `m + 1` children.
    fn build<'k>(m: usize, key_at: impl Fn(usize) -> &'k [u8], children: Vec<Pgno>) -> Wide {
        let (prefix, p) = kept_prefix(key_at(0), key_at(m.saturating_sub(1)));
        let mut w = Wide {
            prefix,
            prefix_len: p,
            heads: (0..m).map(|i| head(key_at(i), p)).collect(),
            fences: Vec::with_capacity(m.div_ceil(BLOCK)),
            children,
        };
        w.fence_from(0);
        w
    }

    /// Recomputes the fences of the blocks from the one holding head `idx` on.
    fn fence_from(&mut self, idx: usize) {
        let b = idx / BLOCK;
        self.fences.truncate(b);
        self.fences.extend(
            self.heads
                .get(b * BLOCK..)
                .unwrap_or_default()
                .chunks(BLOCK)
                .filter_map(|c| c.last().copied()),
        );
    }

    /// The number of heads below `h` (heads never decrease).
    #[inline]
    fn below(&self, h: u32) -> usize {
        // Counted through whole rather than searched: the loads do not wait on each other.
        let b = self.fences.iter().filter(|&&f| f < h).count();
        let start = (b * BLOCK).min(self.heads.len());
        let block = self
            .heads
            .get(start..(start + BLOCK).min(self.heads.len()))
            .unwrap_or_default();
        start + block.iter().filter(|&&x| x < h).count()
    }

    /// The number of heads equal to `h` from `lo` on.
    #[inline]
    fn equal_from(&self, lo: usize, h: u32) -> usize {
        let rest = self.heads.get(lo..).unwrap_or_default();
        // Usually none or one: stepped through; a long run is searched.
        match rest.iter().take(4).position(|&x| x != h) {
            Some(n) => n,
            None => rest.partition_point(|&x| x == h),
        }
    }

    fn prefix(&self) -> &[u8] {
        self.prefix.get(..self.prefix_len).unwrap_or_default()
    }

    /// With node `idx` (`key`, child in `data`) inserted; `None` when the key does not begin
    /// with the prefix, `idx` is past the hinted keys or `data` is not a page number.
    fn inserted(mut self: Box<Wide>, idx: usize, key: &[u8], data: &[u8]) -> Option<Box<Wide>> {
        let child = child_pgno(data)?;
        if idx > self.heads.len() || !key.starts_with(self.prefix()) {
            return None;
        }
        self.heads.insert(idx, head(key, self.prefix_len));
        self.children.insert(idx, child);
        self.fence_from(idx);
        Some(self)
    }

    /// With the child of node `idx` now in `data`; `None` when that is not a page number.
    fn replaced(mut self: Box<Wide>, idx: usize, data: &[u8]) -> Option<Box<Wide>> {
        let child = child_pgno(data)?;
        *self.children.get_mut(idx)? = child;
        Some(self)
    }

    /// Without the head of node `idx`. The removal of the last node (the one without a head)
    /// makes the node before it the last: its head goes.
    fn removed(mut self: Box<Wide>, idx: usize) -> Option<Box<Wide>> {
        match idx.cmp(&self.heads.len()) {
            std::cmp::Ordering::Less => {
                self.heads.remove(idx);
            }
            std::cmp::Ordering::Equal => {
                self.heads.pop();
            }
            std::cmp::Ordering::Greater => return None,
        }
        self.children.remove(idx);
        self.fence_from(idx.saturating_sub(1));
        (!self.heads.is_empty()).then_some(self)
    }
}

/// The prefix that keys from `first` to `last` share, as kept (at most [`PREFIX_CAP`]
/// bytes, zero-padded), and its length.
fn kept_prefix(first: &[u8], last: &[u8]) -> ([u8; PREFIX_CAP], usize) {
    let p = first
        .iter()
        .zip(last)
        .take_while(|(x, y)| x == y)
        .count()
        .min(PREFIX_CAP);
    let mut pre = [0u8; PREFIX_CAP];
    if let (Some(d), Some(s)) = (pre.get_mut(..p), first.get(..p)) {
        d.copy_from_slice(s);
    }
    (pre, p)
}

/// Where `key` falls among `n` keys that all begin with `pre` and whose heads after it are
/// `heads` (non-decreasing): the candidates' range (see [`Hints::candidates`]).
#[inline]
fn candidates_in(
    pre: &[u8],
    n: usize,
    key: &[u8],
    lower_than: impl Fn(u32) -> usize,
    equal_from: impl Fn(usize, u32) -> usize,
) -> Range<usize> {
    // Every key on the page begins with `pre`: a key that does not sorts before all of them
    // or after all of them.
    if key.get(..pre.len()) != Some(pre) {
        let at = if key < pre { 0 } else { n };
        return at..at;
    }
    let h = head(key, pre.len());
    let lo = lower_than(h);
    lo..lo + equal_from(lo, h)
}

impl Default for Hints {
    fn default() -> Hints {
        Hints {
            state: AtomicU8::new(EMPTY),
            prefix_len: AtomicU8::new(0),
            count: AtomicU16::new(0),
            prefix: std::array::from_fn(|_| AtomicU64::new(0)),
            heads: std::array::from_fn(|_| AtomicU32::new(0)),
            wide: OnceLock::new(),
            wide_seen: AtomicBool::new(false),
        }
    }
}

/// The head of `key` after `p` prefix bytes: 4 bytes, zero-padded, big-endian.
#[inline]
#[expect(
    clippy::big_endian_bytes,
    reason = "big-endian integers compare like the bytes they are read from"
)]
fn head(key: &[u8], p: usize) -> u32 {
    let rest = key.get(p..).unwrap_or_default();
    let mut b = [0u8; 4];
    let n = rest.len().min(4);
    if let (Some(d), Some(s)) = (b.get_mut(..n), rest.get(..n)) {
        d.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

/// The hints taken out of a page for a change ([`Hints::take`]).
#[must_use]
pub(crate) struct Taken {
    state: u8,
    wide: Option<Box<Wide>>,
}

impl Hints {
    /// Resets the hints: the page's bytes are about to change (the caller holds the page
    /// exclusively).
    #[inline]
    pub(crate) fn reset(&mut self) {
        *self.state.get_mut() = EMPTY;
        self.reset_wide();
    }

    #[inline]
    fn reset_wide(&mut self) {
        if self.wide.get().is_some() {
            self.wide = OnceLock::new();
        }
        *self.wide_seen.get_mut() = false;
    }

    /// Puts `wide` back (none: the page has none).
    #[inline]
    fn put_wide(&mut self, wide: Option<Box<Wide>>) {
        if let Some(w) = wide {
            self.wide = OnceLock::from(w);
        }
    }

    /// Takes the hints out before a change whose effect on the keys the caller knows (an
    /// insert, a removal, a change of data or flags), to hand them to [`Hints::inserted`],
    /// [`Hints::removed`] or [`Hints::put_back`] once it is made; until then, and if the
    /// change fails, the page has none.
    #[inline]
    pub(crate) fn take(&mut self) -> Taken {
        *self.wide_seen.get_mut() = false;
        Taken {
            state: std::mem::replace(self.state.get_mut(), EMPTY),
            wide: self.wide.take(),
        }
    }

    /// Puts back hints taken before a change that left every key and every node's data in
    /// place (a change of flags or of the header).
    #[inline]
    pub(crate) fn put_back(&mut self, taken: Taken) {
        *self.state.get_mut() = taken.state;
        self.put_wide(taken.wide);
    }

    /// Puts back hints taken before node `idx`'s data became `data` (the keys stay).
    #[inline]
    pub(crate) fn replaced(&mut self, taken: Taken, idx: usize, data: &[u8]) {
        *self.state.get_mut() = taken.state;
        self.put_wide(taken.wide.and_then(|w| w.replaced(idx, data)));
    }

    /// Puts back hints taken before the insert of `key` at `idx`, with its head, when the
    /// page keeps at most [`CAP`] nodes and `key` begins with the kept prefix (otherwise the
    /// page has none).
    pub(crate) fn inserted(&mut self, taken: Taken, idx: usize, key: &[u8], data: &[u8]) {
        self.put_wide(taken.wide.and_then(|w| w.inserted(idx, key, data)));
        if taken.state != READY {
            *self.state.get_mut() = taken.state;
            return;
        }
        let n = usize::from(*self.count.get_mut());
        let p = usize::from(*self.prefix_len.get_mut()).min(PREFIX_CAP);
        if n >= CAP || idx > n || key.get(..p) != self.prefix_bytes().get(..p) {
            return;
        }
        for j in (idx..n).rev() {
            let v = self.heads.get_mut(j).map_or(0, |h| *h.get_mut());
            if let Some(h) = self.heads.get_mut(j + 1) {
                *h.get_mut() = v;
            }
        }
        if let Some(h) = self.heads.get_mut(idx) {
            *h.get_mut() = head(key, p);
        }
        // `n < CAP`: the count fits.
        *self.count.get_mut() = (n + 1) as u16;
        *self.state.get_mut() = READY;
    }

    /// Puts back hints taken before the removal of node `idx`, without its head. (The
    /// remaining keys still share the kept prefix.)
    pub(crate) fn removed(&mut self, taken: Taken, idx: usize) {
        self.put_wide(taken.wide.and_then(|w| w.removed(idx)));
        if taken.state != READY {
            *self.state.get_mut() = taken.state;
            return;
        }
        let n = usize::from(*self.count.get_mut());
        if idx >= n || n == 1 {
            return;
        }
        for j in idx..n - 1 {
            let v = self.heads.get_mut(j + 1).map_or(0, |h| *h.get_mut());
            if let Some(h) = self.heads.get_mut(j) {
                *h.get_mut() = v;
            }
        }
        // `n - 1 < CAP`: the count fits.
        *self.count.get_mut() = (n - 1) as u16;
        *self.state.get_mut() = READY;
    }

    /// [`Hints::inserted`] for a run of nodes inserted at `idx..idx + nodes.len()`
    /// ([`crate::page::Page::insert_nodes`]): their heads go in at once, when the page keeps
    /// at most [`CAP`] nodes and every key begins with the kept prefix (otherwise the page
    /// has none).
    pub(crate) fn inserted_run(&mut self, taken: Taken, idx: usize, nodes: &[NodeRef<'_>]) {
        let mut wide = taken.wide;
        for (j, x) in nodes.iter().enumerate() {
            wide = wide.and_then(|w| w.inserted(idx + j, x.key, x.data));
        }
        self.put_wide(wide);
        if taken.state != READY {
            *self.state.get_mut() = taken.state;
            return;
        }
        let (n, m) = (usize::from(*self.count.get_mut()), nodes.len());
        let p = usize::from(*self.prefix_len.get_mut()).min(PREFIX_CAP);
        let pre = self.prefix_bytes();
        let prefix = pre.get(..p).unwrap_or_default();
        if n + m > CAP || idx > n || nodes.iter().any(|x| !x.key.starts_with(prefix)) {
            return;
        }
        for j in (idx..n).rev() {
            let v = self.heads.get_mut(j).map_or(0, |h| *h.get_mut());
            if let Some(h) = self.heads.get_mut(j + m) {
                *h.get_mut() = v;
            }
        }
        for (j, x) in nodes.iter().enumerate() {
            if let Some(h) = self.heads.get_mut(idx + j) {
                *h.get_mut() = head(x.key, p);
            }
        }
        // `n + m <= CAP`: the count fits.
        *self.count.get_mut() = (n + m) as u16;
        *self.state.get_mut() = READY;
    }

    /// [`Hints::removed`] for the nodes `range` removed at once
    /// ([`crate::page::Page::remove_nodes`]).
    pub(crate) fn removed_run(&mut self, taken: Taken, range: Range<usize>) {
        let mut wide = taken.wide;
        for i in range.clone().rev() {
            wide = wide.and_then(|w| w.removed(i));
        }
        self.put_wide(wide);
        if taken.state != READY {
            *self.state.get_mut() = taken.state;
            return;
        }
        let n = usize::from(*self.count.get_mut());
        let m = range.len();
        if range.end > n || m >= n {
            return;
        }
        for j in range.start..n - m {
            let v = self.heads.get_mut(j + m).map_or(0, |h| *h.get_mut());
            if let Some(h) = self.heads.get_mut(j) {
                *h.get_mut() = v;
            }
        }
        // `n - m < CAP`: the count fits.
        *self.count.get_mut() = (n - m) as u16;
        *self.state.get_mut() = READY;
    }

    /// Makes these hints a copy of `other`'s, for a page whose bytes were just made a copy of
    /// `other`'s page (none if `other` has none).
    pub(crate) fn copy_from(&mut self, other: &Hints) {
        self.reset_wide();
        self.put_wide(other.wide.get().cloned());
        if other.state.load(Mem::Acquire) != READY {
            *self.state.get_mut() = EMPTY;
            return;
        }
        *self.prefix_len.get_mut() = other.prefix_len.load(Mem::Relaxed);
        *self.count.get_mut() = other.count.load(Mem::Relaxed);
        for (d, s) in self.prefix.iter_mut().zip(&other.prefix) {
            *d.get_mut() = s.load(Mem::Relaxed);
        }
        for (d, s) in self.heads.iter_mut().zip(&other.heads) {
            *d.get_mut() = s.load(Mem::Relaxed);
        }
        *self.state.get_mut() = READY;
    }

    /// The kept prefix, zero-padded.
    fn prefix_bytes(&self) -> [u8; PREFIX_CAP] {
        let mut pre = [0u8; PREFIX_CAP];
        for (d, w) in pre.as_chunks_mut::<8>().0.iter_mut().zip(&self.prefix) {
            *d = w.load(Mem::Relaxed).to_le_bytes();
        }
        pre
    }

    /// The nodes among which `key` falls, from the hints: every node before the range has a
    /// smaller key, every node after it a greater one (the caller compares whole keys inside
    /// it, usually one node). An empty range at 0 or at `n` when `key` does not begin with the
    /// page's common prefix. `None` without hints (then the caller searches the tags, and
    /// calls [`Hints::searched`]). `n` is the page's node count.
    #[inline]
    pub(crate) fn candidates(&self, n: usize, key: &[u8]) -> Option<Range<usize>> {
        if self.state.load(Mem::Acquire) != READY || usize::from(self.count.load(Mem::Relaxed)) != n
        {
            return None;
        }
        let p = usize::from(self.prefix_len.load(Mem::Relaxed)).min(PREFIX_CAP);
        let pre = self.prefix_bytes();
        let heads = self.heads.get(..n).unwrap_or_default();
        Some(candidates_in(
            pre.get(..p).unwrap_or_default(),
            n,
            key,
            |h| heads.partition_point(|x| x.load(Mem::Relaxed) < h),
            |lo, h| {
                heads
                    .get(lo..)
                    .unwrap_or_default()
                    .partition_point(|x| x.load(Mem::Relaxed) == h)
            },
        ))
    }

    /// [`Hints::candidates`] on an internal page, among its first `m` nodes (all but the
    /// last): `None` without its heads (then the caller searches the tags, and calls
    /// [`Hints::wide_searched`]).
    #[inline]
    pub(crate) fn wide_candidates(&self, m: usize, key: &[u8]) -> Option<Range<usize>> {
        let w = self.wide.get()?;
        if w.heads.len() != m {
            return None;
        }
        Some(candidates_in(
            w.prefix(),
            m,
            key,
            |h| w.below(h),
            |lo, h| w.equal_from(lo, h),
        ))
    }

    /// [`Hints::searched`] for an internal page: whether its heads should be built now.
    #[inline]
    pub(crate) fn wide_searched(&self) -> bool {
        self.wide_seen.swap(true, Mem::Relaxed)
    }

    /// The child of node `i` of an internal page, from its hints (`None` without them).
    #[inline]
    pub(crate) fn wide_child(&self, i: usize) -> Option<Pgno> {
        self.wide.get()?.children.get(i).copied()
    }

    /// Builds an internal page's heads from its first `m` keys (`key_at(0..m)`) and its
    /// `m + 1` children; the caller holds the page's latch (shared or exclusive). Two
    /// builders store one of the two (equal) results.
    pub(crate) fn build_wide<'k>(
        &self,
        m: usize,
        key_at: impl Fn(usize) -> &'k [u8],
        children: impl FnOnce() -> Option<Vec<Pgno>>,
    ) {
        if m == 0 || self.wide.get().is_some() {
            return;
        }
        // None when a child pointer is unreadable: the page gets no hints (its search reports
        // the bad node).
        if let Some(c) = children().filter(|c| c.len() == m + 1) {
            // A concurrent builder may have stored its equal result first.
            let _ = self.wide.set(Box::new(Wide::build(m, key_at, c)));
        }
    }

    /// Called after a search without hints: whether the hints should be built now (the page
    /// was searched before, unchanged since). Marks the page as searched otherwise.
    #[inline]
    pub(crate) fn searched(&self, n: usize) -> bool {
        if n == 0 || n > CAP {
            return false;
        }
        match self.state.load(Mem::Relaxed) {
            EMPTY => {
                self.state.store(SEEN, Mem::Relaxed);
                false
            }
            SEEN => true,
            _ => false,
        }
    }

    /// Builds the hints of a page of `n` nodes (`1..=CAP`) whose node `i` has the key
    /// `key_at(i)`; the caller holds the page's latch (shared or exclusive).
    pub(crate) fn build<'k>(&self, n: usize, key_at: impl Fn(usize) -> &'k [u8]) {
        if n == 0 || n > CAP {
            return;
        }
        let (pre, p) = kept_prefix(key_at(0), key_at(n - 1));
        for (w, b) in self.prefix.iter().zip(pre.as_chunks::<8>().0) {
            w.store(u64::from_le_bytes(*b), Mem::Relaxed);
        }
        for (i, slot) in self.heads.iter().enumerate().take(n) {
            slot.store(head(key_at(i), p), Mem::Relaxed);
        }
        // `p <= PREFIX_CAP` and `n <= CAP` fit their fields.
        self.prefix_len.store(p as u8, Mem::Relaxed);
        self.count.store(n as u16, Mem::Relaxed);
        self.state.store(READY, Mem::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer of a plain binary search over `keys`: the index of the first key `>= key`
    /// and whether it is equal.
    fn plain(keys: &[Vec<u8>], key: &[u8]) -> (usize, bool) {
        match keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// The answer through the hints: a plain search among the candidates alone.
    fn through_hints(h: &Hints, keys: &[Vec<u8>], key: &[u8]) -> Option<(usize, bool)> {
        let r = h.candidates(keys.len(), key)?;
        let (i, found) = plain(keys.get(r.clone()).unwrap_or_default(), key);
        Some((r.start + i, found))
    }

    #[test]
    fn hinted_answers_equal_plain_binary_search() {
        // Keys over a small alphabet with long shared prefixes, short keys and keys that are
        // prefixes of others (equal heads, prefixes cut at `PREFIX_CAP`), against probes of
        // every length.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut hinted = 0;
        for round in 0..2_000 {
            let shared: Vec<u8> = (0..rng.usize(0..30)).map(|_| rng.u8(0..3)).collect();
            let n = rng.usize(1..=CAP);
            let mut keys: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let mut k = shared.clone();
                    k.extend((0..rng.usize(0..8)).map(|_| rng.u8(0..3)));
                    k
                })
                .collect();
            keys.sort();
            keys.dedup();
            let h = Hints::default();
            let n = keys.len();
            let key_at = |i: usize| keys.get(i).map_or(&[][..], Vec::as_slice);
            assert_eq!(
                through_hints(&h, &keys, b"x"),
                None,
                "no hints before a build"
            );
            assert!(!h.searched(n), "the first search only marks the page");
            assert!(h.searched(n), "the second builds");
            h.build(n, key_at);
            for _ in 0..200 {
                let mut probe = shared.clone();
                probe.truncate(rng.usize(0..=shared.len()));
                probe.extend((0..rng.usize(0..10)).map(|_| rng.u8(0..4)));
                let got = through_hints(&h, &keys, &probe).expect("built");
                assert_eq!(got, plain(&keys, &probe), "round {round}, probe {probe:?}");
                hinted += 1;
            }
            assert_eq!(
                h.candidates(n + 1, b""),
                None,
                "a count that differs is refused"
            );
        }
        assert_eq!(hinted, 400_000);
    }

    #[test]
    fn inserts_and_removals_keep_the_hints() {
        // Keys all beginning with [7, 1]: built once, then kept through inserts and removals
        // (a key outside the prefix drops them; they are built again).
        let mut rng = fastrand::Rng::with_seed(8);
        let mut keys: Vec<Vec<u8>> = vec![vec![7, 1, 0], vec![7, 1, 200]];
        let mut h = Hints::default();
        let mut kept = 0;
        for step in 0..20_000 {
            let key_at = |i: usize| keys.get(i).map_or(&[][..], Vec::as_slice);
            if h.candidates(keys.len(), b"").is_none() {
                h.build(keys.len(), key_at);
            }
            let taken = h.take();
            if rng.bool() && keys.len() < CAP || keys.len() < 2 {
                let mut k = if rng.u8(0..50) == 0 {
                    vec![7, 2]
                } else {
                    vec![7, 1]
                };
                k.extend((0..rng.usize(0..6)).map(|_| rng.u8(0..4)));
                match keys.binary_search(&k) {
                    Ok(_) => h.put_back(taken),
                    Err(i) => {
                        keys.insert(i, k);
                        h.inserted(taken, i, &keys[i], &[]);
                    }
                }
            } else {
                let i = rng.usize(0..keys.len());
                keys.remove(i);
                h.removed(taken, i);
            }
            let Some(_) = h.candidates(keys.len(), b"") else {
                continue;
            };
            kept += 1;
            for _ in 0..20 {
                let mut probe = vec![7, rng.u8(0..3)];
                probe.extend((0..rng.usize(0..7)).map(|_| rng.u8(0..4)));
                let got = through_hints(&h, &keys, &probe);
                assert_eq!(
                    got,
                    Some(plain(&keys, &probe)),
                    "step {step}, probe {probe:?}"
                );
            }
        }
        assert!(kept > 15_000, "hints kept through {kept} of 20,000 changes");
    }

    #[test]
    fn reset_drops_the_hints_and_big_pages_get_none() {
        let keys: Vec<Vec<u8>> = (0u8..10).map(|i| vec![7, 7, i]).collect();
        let key_at = |i: usize| keys.get(i).map_or(&[][..], Vec::as_slice);
        let mut h = Hints::default();
        h.build(10, key_at);
        assert_eq!(through_hints(&h, &keys, &[7, 7, 4]), Some((4, true)));
        assert_eq!(through_hints(&h, &keys, &[7, 6]), Some((0, false)));
        assert_eq!(through_hints(&h, &keys, &[7, 8]), Some((10, false)));
        h.reset();
        assert_eq!(through_hints(&h, &keys, &[7, 7, 4]), None);
        assert!(!h.searched(CAP + 1), "too many nodes: never built");
        assert!(!h.searched(CAP + 1));
    }
}
