//! Redo of page records (ESE's `LGRIRedoOperations` for page records).
//!
//! Redo is idempotent: a record touches a page only if the page's dbtime is older than the
//! record's "after". An image record is installed whenever the page is older or cannot be read
//! at all (a torn or never-written page); a node record, and a page delta of a pages record,
//! needs the page at exactly its "before" dbtime and is skipped on an unreadable page, which a
//! later image in the log rebuilds (every page written since the checkpoint was logged as an
//! image first; see `cache.rs`). With a doublewrite file a torn page was already rewritten
//! from its copy when the database opened (`doublewrite.rs`), so node records find valid
//! pages; an unreadable page is then one past the durable end of the file, which the record
//! that allocated it (an image) rebuilds.
//!
//! While redo runs, pages it dirtied stay in the cache (their on-disk base may be the only
//! copy of older changes; writing them before an image is logged could leave a torn page that
//! no record rebuilds). [`Database::end_redo`] logs an image of each such page, then flushes.

use std::sync::atomic::Ordering;

use ese_core::{DbTime, Error, ErrorKind, Lgpos, ObjId, Pgno, Result};

use crate::db::Database;
use crate::page::{Page, seal};
use crate::record::{PageChange, PageRecord, decode, encode_images};
use crate::tree::apply_op;

/// Whether a page read error means "the page's bytes are damaged or missing" (so a logged
/// image may replace it) rather than an I/O failure.
fn is_damage(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ReadVerifyFailure
            | ErrorKind::ReadPgnoVerifyFailure
            | ErrorKind::PageNotInitialized
            | ErrorKind::FileIOBeyondEOF
            | ErrorKind::DatabaseCorrupted
            | ErrorKind::BadLineCount
            | ErrorKind::PageTagCorrupted
            | ErrorKind::NodeCorrupted
    )
}

impl Database {
    /// Redoes one page record read from the log at `lgpos` (ESE redo of `lrtypInsert`,
    /// `lrtypSplit`, ...). Returns whether the record changed a page; records of another dbid
    /// and records already on the pages are skipped.
    ///
    /// # Errors
    /// `InvalidLoggedOperation` for a malformed record; `DbTimeTooOld` when the page is older
    /// than the record expects (a record is missing), `DbTimeTooNew` when it is newer than
    /// "before" yet older than "after"; `LogOperationInconsistentWithDatabase` when the node
    /// operation does not fit the page; `DiskIO` and other read errors.
    pub fn redo(&self, lgpos: Lgpos, record: &[u8]) -> Result<bool> {
        let sh = &self.shared;
        sh.cache.recovering.store(true, Ordering::SeqCst);
        let rec = decode(record, sh.page_size()).map_err(|e| e.with_lgpos(lgpos))?;
        let _w = sh.writer.lock();
        match rec {
            // An annotation of the layer above: nothing to do on pages.
            PageRecord::Annotation { .. } => Ok(false),
            PageRecord::Images { dbid, pages } => {
                if dbid != sh.opts.dbid {
                    return Ok(false);
                }
                let mut applied = false;
                for (pgno, mut img) in pages {
                    applied |= self.redo_image(lgpos, pgno, &mut img)?;
                }
                Ok(applied)
            }
            PageRecord::Pages { dbid, pages } => {
                if dbid != sh.opts.dbid {
                    return Ok(false);
                }
                let mut applied = false;
                for change in pages {
                    applied |= match change {
                        PageChange::Image(pgno, img) => {
                            self.redo_image(lgpos, pgno, &mut img.into_owned())?
                        }
                        PageChange::Delta(d) => {
                            let ps = sh.page_size();
                            self.redo_on_page(
                                lgpos,
                                d.pgno,
                                d.objid_before,
                                d.before,
                                d.after,
                                |page| {
                                    let after = d.apply(page, ps)?;
                                    page.copy_from(&after);
                                    Ok(())
                                },
                            )?
                        }
                    };
                }
                Ok(applied)
            }
            PageRecord::Node {
                dbid,
                pgno,
                objid,
                before,
                after,
                op,
            } => {
                if dbid != sh.opts.dbid {
                    return Ok(false);
                }
                self.redo_on_page(lgpos, pgno, objid, before, after, |page| {
                    apply_op(page, &op)?;
                    page.set_dbtime(after);
                    Ok(())
                })
            }
        }
    }

    /// Installs a logged after-image of `pgno` unless the page is as new already; a page that
    /// cannot be read (torn, never written) is replaced. The image is logged without its
    /// checksum and page number (the log frame's checksum covers it): they are set here,
    /// before the page's checks.
    fn redo_image(&self, lgpos: Lgpos, pgno: Pgno, img: &mut [u8]) -> Result<bool> {
        let sh = &self.shared;
        seal(img, pgno);
        let page = Page::decode(img, pgno).map_err(|e| {
            Error::new(ErrorKind::InvalidLoggedOperation)
                .with_lgpos(lgpos)
                .with_pgno(pgno)
                .with_message(format!("bad page image: {e}"))
        })?;
        let after = page.dbtime();
        sh.bump_dbtime(after);
        let frame = match sh.cache.get(pgno) {
            Ok(f) => {
                if f.latch.read().dbtime() >= after {
                    return Ok(false);
                }
                f
            }
            Err(e) if is_damage(e.kind()) => sh.cache.get_or_install(pgno, &page)?,
            Err(e) => return Err(e),
        };
        frame.latch.write().copy_from(&page);
        sh.cache.redo_dirty(&[&frame], lgpos);
        Ok(true)
    }

    /// Applies `change` to `pgno` when the page is at exactly dbtime `before` (a node record
    /// or a page delta); skips a page already at `after` or past it, and an unreadable page
    /// (a later image of it rebuilds it). `change` leaves the page at dbtime `after`.
    fn redo_on_page(
        &self,
        lgpos: Lgpos,
        pgno: Pgno,
        objid: ObjId,
        before: DbTime,
        after: DbTime,
        change: impl FnOnce(&mut Page) -> Result<()>,
    ) -> Result<bool> {
        let sh = &self.shared;
        sh.bump_dbtime(after);
        let frame = match sh.cache.get(pgno) {
            Ok(f) => f,
            // Torn or missing: a later image record of this page rebuilds it.
            Err(e) if is_damage(e.kind()) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut page = frame.latch.write();
        if page.dbtime() >= after {
            return Ok(false);
        }
        let ctx = |k: ErrorKind, m: String| {
            Error::new(k)
                .with_pgno(pgno)
                .with_lgpos(lgpos)
                .with_message(m)
        };
        if page.dbtime() < before {
            return Err(ctx(
                ErrorKind::DbTimeTooOld,
                format!(
                    "page dbtime {} older than the record's {}",
                    page.dbtime(),
                    before
                ),
            ));
        }
        if page.dbtime() > before {
            return Err(ctx(
                ErrorKind::DbTimeTooNew,
                format!(
                    "page dbtime {} between the record's {before} and {after}",
                    page.dbtime()
                ),
            ));
        }
        if page.objid() != objid {
            return Err(ctx(
                ErrorKind::LogOperationInconsistentWithDatabase,
                format!(
                    "page belongs to objid {}, the record to {objid}",
                    page.objid()
                ),
            ));
        }
        change(&mut page).map_err(|e| e.with_pgno(pgno).with_lgpos(lgpos))?;
        sh.cache.redo_dirty(&[&frame], lgpos);
        Ok(true)
    }

    /// Ends redo: logs a full image of every page redo changed (so a crash while they are
    /// written can rebuild them), then writes and syncs them. Call once after the last
    /// [`Database::redo`] and before any new change.
    ///
    /// # Errors
    /// WAL append/flush errors; `DiskIO`, `DiskFull` from the writes.
    pub fn end_redo(&self) -> Result<()> {
        let sh = &self.shared;
        {
            let _w = sh.writer.lock();
            for f in sh.cache.dirty_frames() {
                let page = f.latch.write();
                let rec = encode_images(sh.opts.dbid, &[(f.pgno, page.bytes())], None);
                sh.cache.log_change(&rec, &[&f])?;
            }
            sh.roots.write().retain(|o, _| *o == crate::db::DIR_OBJID);
            sh.cache.recovering.store(false, Ordering::SeqCst);
        }
        sh.cache.flush_all()
    }
}
