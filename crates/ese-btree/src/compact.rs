//! Offline compaction (ESE's `JetCompact`, `esentutl /d`): a copy of a database whose trees
//! are rebuilt in key order, so their pages are full and in order.
//!
//! Every tree of the source (tables, indexes, long values; the tree directory is rebuilt by
//! creating them) is created in a new database file **with the same objid**, so whatever the
//! layer above stores about its trees (the catalog names them by objid) stays valid, and its
//! nodes are inserted in key order. Sequential inserts split by appending (`split.rs`): a
//! full leaf stays full and the next node starts a new page, so leaves and internal pages
//! come out full. Nodes flagged deleted (a delete whose cleanup had not run) are left out and
//! the versioned flag is dropped: the source is consistent (shut down cleanly), so no
//! transaction is open and no version is live.
//!
//! The copy is not logged (its log is discarded): the new file becomes durable by being
//! flushed and synced, then its headers are written clean (`CleanShutdown`), last. A crash
//! before that leaves a file that is not a clean database (it does not attach); the source is
//! only read.
//!
//! The new file's dbtime starts above the source's, so a page of the copy is always newer
//! than any logged change of the source: redo skips such a record on a page of the copy
//! instead of applying it to other content.

use std::path::Path;
use std::sync::Arc;

use ese_core::Result;
use ese_core::fs::FileSystem;

use crate::db::{Database, DbOptions};
use crate::header::DbState;
use crate::page::NodeFlags;
use crate::split::Work;
use crate::wal::MemWal;

/// What [`Database::compact_into`] copied, and the sizes before and after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Trees copied (the tree directory not counted).
    pub trees: u64,
    /// Nodes copied (leaf nodes of every tree; flag-deleted nodes are not copied).
    pub nodes: u64,
    /// Flag-deleted nodes left out.
    pub deleted_skipped: u64,
    /// Database pages in the source file (header pages excluded).
    pub source_pages: u32,
    /// Database pages the copy uses (header pages excluded): the copy's file holds these and
    /// its two header pages, no unused extension.
    pub dest_pages: u32,
}

impl Database {
    /// Copies this database into a new file at `dest`, every tree rebuilt in key order (ESE
    /// `JetCompact`; see the module notes). `options` are the new file's (its page size is
    /// this database's whatever `options` say; its cache holds the copy while it is built).
    /// Nothing of the source is changed; the caller makes sure nothing changes it meanwhile
    /// (a database attached for this alone, shut down cleanly).
    ///
    /// On an error the new file is left incomplete, with no valid header: it does not open
    /// as a database; the caller removes it.
    ///
    /// # Errors
    /// `FileAlreadyExists` if `dest` exists; page read errors of the source
    /// (`ReadVerifyFailure`, `BadParentPageLink`, ...): a damaged source is not compacted;
    /// `DiskFull`, `DiskIO` writing the copy.
    pub fn compact_into(
        &self,
        fs: &Arc<dyn FileSystem>,
        dest: &Path,
        options: DbOptions,
    ) -> Result<CompactStats> {
        let options = options.page_size(self.page_size());
        let copy = Database::create(fs, dest, options, Arc::new(MemWal::discarding()))?;
        copy.shared.bump_dbtime(self.dbtime());
        let mut stats = CompactStats {
            source_pages: self.space_header()?.pgno_last,
            ..CompactStats::default()
        };
        for (objid, _, kind) in self.trees()? {
            let to = copy.create_tree_as(kind, Some(objid))?;
            let mut c = self.open_tree(objid)?.cursor();
            let mut more = c.move_first()?;
            while more {
                if c.flags().contains(NodeFlags::DELETED) {
                    stats.deleted_skipped += 1;
                } else {
                    to.insert(c.key(), c.data())?;
                    stats.nodes += 1;
                }
                more = c.move_next()?;
            }
            stats.trees += 1;
        }
        // The objids the source handed out stay handed out (a dropped table's objid is not
        // reused by the copy either).
        let last_objid = self.space_header()?.last_objid;
        {
            let sh = &copy.shared;
            let _w = sh.writer.lock();
            let mut work = Work::new(sh);
            let mut space = work.space()?;
            space.last_objid = space.last_objid.max(last_objid);
            work.set_space(space)?;
            work.commit()?;
        }
        stats.dest_pages = copy.space_header()?.pgno_last;
        // The file ends at its last page: the extension the copy's growth left past it (up to
        // a sixty-fourth of the file, see `split::growth_pages`) is cut, as a compaction is
        // expected to leave no unused space; the file grows again when it needs to.
        copy.shared.cache.file.trim_to(stats.dest_pages)?;
        // Flushes and syncs every page (the sync makes the new length durable), then writes
        // the header (the newer of the two slots, which open takes).
        copy.write_header(|h| h.state = DbState::CleanShutdown)?;
        Ok(stats)
    }
}
