//! Crash test on `SimFs`: a workload that splits and merges pages and writes long values, with
//! a cache small enough to force evictions, is cut off at every I/O operation; each power-loss
//! image (all four crash models, several seeds) is recovered by redo from the checkpoint over
//! the durable log, and must equal the model at the last durable log position and pass the
//! integrity check.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::many_single_char_names,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, LongValues, MemWal, NodeFlags, NodeState, TreeKind, Wal};
use ese_core::fs::{CrashModel, FileSystem, SimFs};
use ese_core::{Lgpos, ObjId, Result};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The state after one operation: log records appended so far, the tree change, and the long
/// value (shared until it changes).
struct Snapshot {
    records: usize,
    change: Option<(Vec<u8>, Option<Vec<u8>>)>,
    lv: Arc<Vec<u8>>,
}

fn tree_at(snaps: &[Snapshot], pos: usize) -> Model {
    let mut m = Model::new();
    for s in &snaps[..=pos] {
        match &s.change {
            Some((k, Some(v))) => {
                m.insert(k.clone(), v.clone());
            }
            Some((k, None)) => {
                m.remove(k);
            }
            None => {}
        }
    }
    m
}

const PATH: &str = "/crash.edb";

fn opts(doublewrite: bool) -> DbOptions {
    DbOptions::new()
        .page_size(4096)
        .cache_bytes(0)
        .extension_pages(8)
        .doublewrite(doublewrite)
}

/// Runs the workload; returns the snapshots at operation boundaries and the checkpoints seen.
fn workload(
    doublewrite: bool,
    fs: &SimFs,
    wal: &Arc<MemWal>,
    ops: usize,
) -> (Vec<Snapshot>, Vec<(usize, Lgpos)>, Result<u64>) {
    let mut snaps = Vec::new();
    let mut ckpts = Vec::new();
    let mut tree = Model::new();
    let mut lv = Vec::new();
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let r = (|| -> Result<u64> {
        let db = Database::create(
            &fsd,
            Path::new(PATH),
            opts(doublewrite),
            Arc::clone(wal) as Arc<dyn Wal>,
        )?;
        let t = db.create_tree(TreeKind::Table)?;
        let lvs = LongValues::new(db.create_tree(TreeKind::LongValue)?)?;
        lvs.create(1)?;
        wal.flush(Lgpos::MAX)?;
        let mut lv_arc = Arc::new(lv.clone());
        snaps.push(Snapshot {
            records: wal.record_count(),
            change: None,
            lv: Arc::clone(&lv_arc),
        });
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..ops {
            let k = (rng.u32(0..2000)).to_le_bytes().to_vec();
            let mut change = None;
            let mut again = false;
            match rng.u8(0..10) {
                0..=5 => {
                    let v = vec![i as u8; rng.usize(10..600)];
                    if i % 3 == 0 {
                        // The transaction layer's path: one annotated record per change.
                        let state = NodeState::Present {
                            data: &v,
                            flags: NodeFlags(0),
                        };
                        t.put(&k, state, &(i as u64).to_le_bytes())?;
                        again = i % 6 == 0;
                    } else if tree.contains_key(&k) {
                        t.replace(&k, &v)?;
                    } else {
                        t.insert(&k, &v)?;
                    }
                    tree.insert(k.clone(), v.clone());
                    change = Some((k.clone(), Some(v)));
                }
                6..=8 => {
                    if i % 3 == 0 {
                        t.put(&k, NodeState::Absent, b"delete")?;
                        if tree.remove(&k).is_some() {
                            change = Some((k.clone(), None));
                        }
                    } else if tree.remove(&k).is_some() {
                        t.delete(&k)?;
                        change = Some((k.clone(), None));
                    }
                }
                _ => {
                    let d = vec![i as u8; rng.usize(100..9000)];
                    if lv.len() > 40_000 {
                        lvs.truncate(1, 1000)?;
                        lv.truncate(1000);
                    }
                    lvs.append(1, &d)?;
                    lv.extend_from_slice(&d);
                    lv_arc = Arc::new(lv.clone());
                }
            }
            snaps.push(Snapshot {
                records: wal.record_count(),
                change,
                lv: Arc::clone(&lv_arc),
            });
            if again {
                // Already in that state: an annotation-only record, its own step.
                let v = &tree[&k];
                let state = NodeState::Present {
                    data: v,
                    flags: NodeFlags(0),
                };
                t.put(&k, state, b"again")?;
                snaps.push(Snapshot {
                    records: wal.record_count(),
                    change: None,
                    lv: Arc::clone(&lv_arc),
                });
            }
            if i % 7 == 0 {
                // A commit: the log is durable up to here.
                wal.flush(Lgpos::MAX)?;
            }
            if i % 50 == 49 {
                db.flush()?;
            } else if i % 10 == 0 {
                db.sync()?;
            }
            ckpts.push((snaps.len(), db.checkpoint()));
        }
        Ok(db.cache_stats().evictions)
    })();
    (snaps, ckpts, r)
}

fn recover_and_check(
    doublewrite: bool,
    img: SimFs,
    wal: &MemWal,
    checkpoint: Lgpos,
    snaps: &[Snapshot],
    repairs: &mut usize,
) -> bool {
    let fsd: Arc<dyn FileSystem> = Arc::new(img);
    let log = Arc::new(wal.crash());
    let durable = log.records();
    let Ok(db) = Database::open(
        &fsd,
        Path::new(PATH),
        opts(doublewrite),
        Arc::clone(&log) as Arc<dyn Wal>,
    ) else {
        // The database file itself was never made durable: nothing to recover.
        assert!(snaps.is_empty(), "lost a created database");
        return false;
    };
    *repairs += db.pages_repaired_at_open().len();
    for (lg, rec) in &durable {
        if *lg >= checkpoint {
            db.redo(*lg, rec)
                .unwrap_or_else(|e| panic!("redo at {lg}: {e}"));
        }
    }
    db.end_redo().unwrap();
    db.check_integrity()
        .unwrap_or_else(|e| panic!("integrity: {e}"));
    let n = durable.len();
    let Some(pos) = snaps.iter().rposition(|s| s.records <= n) else {
        return true;
    };
    let snap = &snaps[pos];
    let t = db.open_tree(ObjId(2)).unwrap();
    let mut c = t.cursor();
    let mut got = Model::new();
    let mut more = c.move_first().unwrap();
    while more {
        got.insert(c.key().to_vec(), c.data().to_vec());
        more = c.move_next().unwrap();
    }
    assert_eq!(
        got,
        tree_at(snaps, pos),
        "tree differs from the model after {n} durable records"
    );
    let at_boundary = snap.records == n;
    if at_boundary {
        let lvs = LongValues::new(db.open_tree(ObjId(3)).unwrap()).unwrap();
        let mut buf = vec![0u8; snap.lv.len() + 10];
        let got = lvs.read_at(1, 0, &mut buf).unwrap();
        assert_eq!(&buf[..got], snap.lv.as_slice());
    }
    true
}

/// With the doublewrite file (the default): torn in-place pages are rewritten from their
/// copies when the database opens, and changes carry no page images.
#[test]
fn crash_at_every_io_point_recovers_to_the_durable_log() {
    crash_at_every_io_point(true);
}

/// Without it: the first change of a page after a read or a write logs a full image, from
/// which redo rebuilds a torn page.
#[test]
fn crash_at_every_io_point_recovers_with_page_images_and_no_doublewrite_file() {
    crash_at_every_io_point(false);
}

fn crash_at_every_io_point(doublewrite: bool) {
    let ops = 2000;
    // A run without a power cut counts the I/O operations.
    let fs = SimFs::new();
    let wal = Arc::new(MemWal::new());
    let (_, _, r) = workload(doublewrite, &fs, &wal, ops);
    let evictions = r.unwrap();
    assert!(
        evictions > 20,
        "the cache must be too small for the data: {evictions} evictions"
    );
    let total = fs.op_count();
    assert!(total > 100, "workload too small: {total} I/O operations");
    let mut images = 0u64;
    let mut recovered = 0u64;
    let mut repairs = 0usize;
    // `ESE_CRASH_FULL=1` cuts at every I/O operation; the default samples ~250 points (~80 in debug builds).
    let step = if std::env::var_os("ESE_CRASH_FULL").is_some() {
        1
    } else {
        (total / if cfg!(debug_assertions) { 80 } else { 250 }).max(1)
    };
    let mut k = 0;
    while k <= total {
        let fs = SimFs::new();
        let wal = Arc::new(MemWal::new());
        fs.set_power_cut(Some(k));
        let (snaps, ckpts, _) = workload(doublewrite, &fs, &wal, ops);
        let checkpoint = ckpts.last().map_or(Lgpos::MIN, |c| c.1);
        for model in CrashModel::ALL {
            for seed in 0..2 {
                let img = fs.crash(model, seed ^ k);
                images += 1;
                if recover_and_check(doublewrite, img, &wal, checkpoint, &snaps, &mut repairs) {
                    recovered += 1;
                }
            }
        }
        k += step;
    }
    eprintln!(
        "doublewrite {doublewrite}: crash images: {images} ({recovered} with a database to \
         recover), I/O ops per run: {total}, torn pages rewritten from the doublewrite file: \
         {repairs}"
    );
    // Torn in-place writes happen in these images; with the doublewrite file their pages are
    // rebuilt from it (redo has no image to rebuild them from), without it never.
    assert_eq!(repairs > 0, doublewrite, "{repairs} pages repaired");
    assert!(recovered > images / 2);
}
