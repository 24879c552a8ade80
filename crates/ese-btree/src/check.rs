//! The integrity check (eseutil `/g`) and the space report (eseutil `/ms`).
//!
//! The check reads every page through the cache (so every checksum is verified), walks every
//! tree from the directory checking key order, parent-child key bounds, levels, objids and
//! sibling links, walks the free chain, and requires every page up to `pgno_last` to be
//! accounted for exactly once (a page reached twice is a cycle or a cross-link).

use ese_core::{Error, ErrorKind, ObjId, Pgno, Result};

use crate::db::{
    DIR_OBJID, DIR_PGNO, Database, SPACE_PGNO, SpaceHeader, TreeKind, parse_dir_entry,
};
use crate::page::{Page, PageFlags};
use crate::split::{MAX_DEPTH, level_flags};

/// Space and shape of one tree, as found by the integrity check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeSpace {
    /// The tree's objid.
    pub objid: ObjId,
    /// What the tree holds (the directory, objid 1, reports as `Table`).
    pub kind: TreeKind,
    /// Its root page.
    pub root: Pgno,
    /// Levels (1 = the root is a leaf).
    pub depth: u32,
    /// Pages the tree owns (ESE OwnExt); with one database-wide free chain, every owned page
    /// is in use.
    pub owned_pages: u64,
    /// Owned pages not in use (ESE AvailExt): always 0 in this format.
    pub available_pages: u64,
    /// Leaf pages.
    pub leaf_pages: u64,
    /// Nodes on the leaves (flag-deleted ones included).
    pub nodes: u64,
    /// Bytes of the leaves used by nodes (keys, data and per-node overhead).
    pub leaf_bytes_used: u64,
}

/// What the integrity check found (it returns an error instead on the first problem).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Page size in bytes.
    pub page_size: u32,
    /// Database pages the file holds.
    pub file_pages: u32,
    /// Highest page ever allocated.
    pub pgno_last: u32,
    /// Pages on the free chain (reusable).
    pub free_pages: u32,
    /// Pages past `pgno_last` in the file (available extension).
    pub unused_tail_pages: u32,
    /// Every tree, the directory (objid 1) first.
    pub trees: Vec<TreeSpace>,
}

fn err(kind: ErrorKind, pgno: Pgno, msg: impl Into<String>) -> Error {
    Error::new(kind).with_pgno(pgno).with_message(msg)
}

struct Checker<'a> {
    db: &'a Database,
    seen: Vec<bool>,
    /// Last page seen at each level of the current tree (left to right).
    last_at_level: Vec<Option<Pgno>>,
}

impl Checker<'_> {
    fn mark(&mut self, pgno: Pgno) -> Result<()> {
        let slot = self.seen.get_mut(pgno.0 as usize).ok_or_else(|| {
            err(
                ErrorKind::DatabaseCorrupted,
                pgno,
                "page number beyond the last allocated page",
            )
        })?;
        if pgno == Pgno::NULL || *slot {
            return Err(err(
                ErrorKind::DatabaseCorrupted,
                pgno,
                "page reached twice (cycle or cross-linked page)",
            ));
        }
        *slot = true;
        Ok(())
    }

    fn read(&self, pgno: Pgno) -> Result<Page> {
        let f = self.db.shared.cache.get(pgno)?;
        let p = f.latch.read().clone();
        Ok(p)
    }

    #[allow(clippy::too_many_arguments, reason = "the walk's state, passed down")]
    fn walk(
        &mut self,
        ts: &mut TreeSpace,
        pgno: Pgno,
        level: Option<u8>,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        depth: usize,
        root_flags: PageFlags,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(err(ErrorKind::DatabaseCorrupted, pgno, "tree too deep"));
        }
        self.mark(pgno)?;
        let p = self.read(pgno)?;
        let is_root = depth == 0;
        if p.objid() != ts.objid {
            return Err(err(
                ErrorKind::BadParentPageLink,
                pgno,
                format!("objid {} in tree {}", p.objid(), ts.objid),
            ));
        }
        if level.is_some_and(|l| l != p.level()) {
            return Err(err(
                ErrorKind::BadParentPageLink,
                pgno,
                "child at the wrong level",
            ));
        }
        let want = level_flags(root_flags, p.level()).with(PageFlags::ROOT, is_root);
        if p.flags() != want {
            return Err(err(
                ErrorKind::DatabaseCorrupted,
                pgno,
                format!("page flags {:#x}, expected {:#x}", p.flags().0, want.0),
            ));
        }
        if !is_root && p.count() == 0 {
            return Err(err(
                ErrorKind::DatabaseCorrupted,
                pgno,
                "empty non-root page",
            ));
        }
        ts.depth = ts.depth.max(depth as u32 + 1);
        ts.owned_pages += 1;
        // Sibling links, left to right per level.
        let lvl = usize::from(p.level());
        if self.last_at_level.len() <= lvl {
            self.last_at_level.resize(lvl + 1, None);
        }
        let prev = self.last_at_level.get(lvl).copied().flatten();
        if p.prev() != prev.unwrap_or(Pgno::NULL) {
            return Err(err(
                ErrorKind::BadPageLink,
                pgno,
                format!("prev is {}, expected {:?}", p.prev(), prev),
            ));
        }
        if let Some(pp) = prev {
            let pn = self.read(pp)?.next();
            if pn != pgno {
                return Err(err(
                    ErrorKind::BadPageLink,
                    pp,
                    format!("next is {pn}, expected {pgno}"),
                ));
            }
        }
        if let Some(slot) = self.last_at_level.get_mut(lvl) {
            *slot = Some(pgno);
        }
        // Key order and bounds.
        let n = p.count();
        for i in 0..n {
            let key = p.key(i);
            let last_internal = p.level() > 0 && i + 1 == n;
            if i > 0 && !last_internal && p.key(i - 1) >= key {
                return Err(err(
                    ErrorKind::DatabaseCorrupted,
                    pgno,
                    format!("keys out of order at node {i}"),
                ));
            }
            let routed = p.is_leaf() || i + 1 < n;
            if routed {
                let below = lower.is_some_and(|l| key < l);
                let above = upper.is_some_and(|u| if p.is_leaf() { key >= u } else { key > u });
                if below || above {
                    return Err(err(
                        ErrorKind::DatabaseCorrupted,
                        pgno,
                        format!("key of node {i} outside the bounds its parent gives"),
                    ));
                }
            }
        }
        if p.is_leaf() {
            ts.leaf_pages += 1;
            ts.nodes += n as u64;
            ts.leaf_bytes_used += p.used() as u64;
            return Ok(());
        }
        for i in 0..n {
            let child = p
                .child(i)
                .ok_or_else(|| err(ErrorKind::NodeCorrupted, pgno, "bad child pointer"))?;
            let lo = if i == 0 { lower } else { Some(p.key(i - 1)) };
            let hi = if i + 1 == n { upper } else { Some(p.key(i)) };
            self.walk(
                ts,
                child,
                Some(p.level() - 1),
                lo,
                hi,
                depth + 1,
                root_flags,
            )?;
        }
        Ok(())
    }

    fn check_tree(&mut self, objid: ObjId, root: Pgno, kind: TreeKind) -> Result<TreeSpace> {
        let mut ts = TreeSpace {
            objid,
            kind,
            root,
            depth: 0,
            owned_pages: 0,
            available_pages: 0,
            leaf_pages: 0,
            nodes: 0,
            leaf_bytes_used: 0,
        };
        self.last_at_level.clear();
        let root_flags =
            PageFlags(self.read(root)?.flags().0 & (PageFlags::INDEX.0 | PageFlags::LONG_VALUE.0));
        if root_flags != kind.page_flags() {
            return Err(err(
                ErrorKind::DatabaseCorrupted,
                root,
                "root flags do not match the tree kind",
            ));
        }
        self.walk(&mut ts, root, None, None, None, 0, root_flags)?;
        for (lvl, last) in self.last_at_level.iter().enumerate() {
            if let Some(l) = last {
                let next = self.read(*l)?.next();
                if next != Pgno::NULL {
                    return Err(err(
                        ErrorKind::BadPageLink,
                        *l,
                        format!("last page of level {lvl} has next {next}"),
                    ));
                }
            }
        }
        Ok(ts)
    }
}

impl Database {
    /// Checks the whole database (eseutil `/g`): every page's checksum, every tree's key
    /// order, parent-child key bounds, levels and sibling links, the free chain, and that every
    /// page is accounted for exactly once.
    ///
    /// # Errors
    /// The first problem found, naming its page: `ReadVerifyFailure`,
    /// `ReadPgnoVerifyFailure`, `PageNotInitialized`, `BadPageLink`, `BadParentPageLink`,
    /// `DatabaseCorrupted`, `SPAvailExtCorrupted` (free chain), `DatabaseLeakInSpace` (a page
    /// nobody owns); `DiskIO` on a read failure.
    pub fn check_integrity(&self) -> Result<IntegrityReport> {
        let sh = &self.shared;
        let file_pages = sh.cache.file.page_count()?;
        let space = {
            let f = sh.cache.get(SPACE_PGNO)?;
            let p = f.latch.read();
            SpaceHeader::decode(&p)?
        };
        // Pages allocated but past the end of the file are tolerated only below the file
        // length; a pgno_last larger than the file is corruption (and bounds the allocation).
        if space.pgno_last > file_pages.max(2) {
            return Err(err(
                ErrorKind::SPOwnExtCorrupted,
                SPACE_PGNO,
                format!(
                    "last page {} beyond the file's {file_pages} pages",
                    space.pgno_last
                ),
            ));
        }
        let mut ck = Checker {
            db: self,
            seen: vec![false; space.pgno_last as usize + 1],
            last_at_level: Vec::new(),
        };
        ck.mark(SPACE_PGNO)?;
        let mut trees = vec![ck.check_tree(DIR_OBJID, DIR_PGNO, TreeKind::Table)?];
        let dir = self.open_tree(DIR_OBJID)?;
        let mut c = dir.cursor();
        let mut more = c.move_first()?;
        while more {
            let k: [u8; 4] = c
                .key()
                .try_into()
                .map_err(|_| err(ErrorKind::DatabaseCorrupted, DIR_PGNO, "bad directory key"))?;
            let (root, kind) = parse_dir_entry(c.data())?;
            trees.push(ck.check_tree(ObjId(crate::db::key_to_u32(k)), root, kind)?);
            more = c.move_next()?;
        }
        let mut fp = space.free_head;
        let mut count = 0u32;
        while fp != Pgno::NULL {
            ck.mark(fp).map_err(|e| {
                Error::new(ErrorKind::SPAvailExtCorrupted)
                    .with_pgno(fp)
                    .with_message(format!("free chain: {}", e.message().unwrap_or_default()))
            })?;
            let p = ck.read(fp)?;
            if !p.flags().contains(PageFlags::EMPTY) {
                return Err(err(
                    ErrorKind::SPAvailExtCorrupted,
                    fp,
                    "page on the free chain is not free",
                ));
            }
            count += 1;
            fp = p.next();
        }
        if count != space.free_count {
            return Err(err(
                ErrorKind::SPAvailExtCorrupted,
                SPACE_PGNO,
                format!(
                    "free chain has {count} pages, the header says {}",
                    space.free_count
                ),
            ));
        }
        if let Some(p) = ck.seen.iter().skip(1).position(|s| !s) {
            return Err(err(
                ErrorKind::DatabaseLeakInSpace,
                Pgno(p as u32 + 1),
                "page owned by no tree and not free",
            ));
        }
        Ok(IntegrityReport {
            page_size: self.page_size(),
            file_pages,
            pgno_last: space.pgno_last,
            free_pages: count,
            unused_tail_pages: file_pages.saturating_sub(space.pgno_last),
            trees,
        })
    }

    /// The space report (eseutil `/ms`): pages owned, available and used per tree, free pages
    /// and the unused tail of the file. Runs the integrity check.
    ///
    /// # Errors
    /// As [`Database::check_integrity`].
    pub fn space_report(&self) -> Result<IntegrityReport> {
        self.check_integrity()
    }
}
