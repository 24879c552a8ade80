//! Model test: random insert / replace / delete / seek / scan sequences on a B+tree, and
//! append / overwrite / truncate / read sequences on long values, against `BTreeMap` models,
//! for every page size, with a small cache (forced evictions); the integrity check passes
//! after every sequence and the data survives a flush and reopen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::many_single_char_names,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use ese_btree::{Database, DbOptions, LongValues, MemWal, SeekOp, TreeKind};
use ese_core::ErrorKind;
use ese_core::fs::{FileSystem, SimFs};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>, usize),
    Replace(Vec<u8>, usize),
    Delete(Vec<u8>),
    Seek(Vec<u8>, u8),
    Scan(Vec<u8>, bool, usize),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(0u8..4, 1..10),
        1 => prop::collection::vec(any::<u8>(), 1..1000),
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..200, 2 => 0usize..3000, 1 => 0usize..40000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), size()).prop_map(|(k, s)| Op::Insert(k, s)),
        2 => (key(), size()).prop_map(|(k, s)| Op::Replace(k, s)),
        3 => key().prop_map(Op::Delete),
        2 => (key(), 0u8..5).prop_map(|(k, o)| Op::Seek(k, o)),
        1 => (key(), any::<bool>(), 0usize..50).prop_map(|(k, f, n)| Op::Scan(k, f, n)),
    ]
}

fn value(k: &[u8], n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ k.first().copied().unwrap_or(0) ^ salt)
        .collect()
}

fn new_db(page_size: u32) -> (Arc<dyn FileSystem>, Database) {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let opts = DbOptions::new()
        .page_size(page_size)
        .cache_bytes(0)
        .extension_pages(16);
    let db = Database::create(&fs, Path::new("/m.edb"), opts, Arc::new(MemWal::new())).unwrap();
    (fs, db)
}

fn run_tree(page_size: u32, ops: &[Op]) {
    let (fs, db) = new_db(page_size);
    let t = db.create_tree(TreeKind::Table).unwrap();
    let max_key = db.max_key_len();
    let max_rec = db.max_record_len();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(k, s) | Op::Replace(k, s) => {
                let k = &k[..k.len().min(max_key)];
                let s = (*s).min(max_rec - k.len());
                let v = value(k, s, n as u8);
                if matches!(op, Op::Insert(..)) {
                    let r = t.insert(k, &v);
                    if model.contains_key(k) {
                        assert_eq!(r.unwrap_err(), ErrorKind::KeyDuplicate);
                    } else {
                        r.unwrap();
                        model.insert(k.to_vec(), v);
                    }
                } else {
                    let r = t.replace(k, &v);
                    if let Some(slot) = model.get_mut(k) {
                        r.unwrap();
                        *slot = v;
                    } else {
                        assert_eq!(r.unwrap_err(), ErrorKind::RecordNotFound);
                    }
                }
            }
            Op::Delete(k) => {
                let r = t.delete(k);
                if model.remove(k.as_slice()).is_some() {
                    r.unwrap();
                } else {
                    assert_eq!(r.unwrap_err(), ErrorKind::RecordNotFound);
                }
            }
            Op::Seek(k, o) => {
                let (sop, expect) = match o {
                    0 => (SeekOp::Eq, model.get_key_value(k.as_slice())),
                    1 => (
                        SeekOp::Lt,
                        model
                            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(k.as_slice())))
                            .next_back(),
                    ),
                    2 => (
                        SeekOp::Le,
                        model
                            .range::<[u8], _>((Bound::Unbounded, Bound::Included(k.as_slice())))
                            .next_back(),
                    ),
                    3 => (
                        SeekOp::Ge,
                        model
                            .range::<[u8], _>((Bound::Included(k.as_slice()), Bound::Unbounded))
                            .next(),
                    ),
                    _ => (
                        SeekOp::Gt,
                        model
                            .range::<[u8], _>((Bound::Excluded(k.as_slice()), Bound::Unbounded))
                            .next(),
                    ),
                };
                let mut c = t.cursor();
                match (c.seek(k, sop), expect) {
                    (Ok(()), Some((ek, ev))) => {
                        assert_eq!(c.key(), ek.as_slice());
                        assert_eq!(c.data(), ev.as_slice());
                    }
                    (Err(e), None) => assert_eq!(e, ErrorKind::RecordNotFound),
                    (r, e) => panic!("seek {sop:?} {k:?}: got {r:?}, model {:?}", e.map(|x| x.0)),
                }
            }
            Op::Scan(k, fwd, count) => {
                let mut c = t.cursor();
                let mut got = Vec::new();
                let expect: Vec<Vec<u8>> = if *fwd {
                    model
                        .range::<[u8], _>((Bound::Included(k.as_slice()), Bound::Unbounded))
                        .take(*count)
                        .map(|x| x.0.clone())
                        .collect()
                } else {
                    model
                        .range::<[u8], _>((Bound::Unbounded, Bound::Included(k.as_slice())))
                        .rev()
                        .take(*count)
                        .map(|x| x.0.clone())
                        .collect()
                };
                let op = if *fwd { SeekOp::Ge } else { SeekOp::Le };
                if c.seek(k, op).is_ok() {
                    while got.len() < *count {
                        got.push(c.key().to_vec());
                        let more = if *fwd {
                            c.move_next().unwrap()
                        } else {
                            c.move_prev().unwrap()
                        };
                        if !more {
                            break;
                        }
                    }
                }
                assert_eq!(got, expect);
            }
        }
    }
    let report = db.check_integrity().unwrap();
    assert_eq!(report.trees[1].nodes, model.len() as u64);
    let objid = t.objid();
    let scan = |db: &Database| {
        let t = db.open_tree(objid).unwrap();
        let mut c = t.cursor();
        let mut all = Vec::new();
        let mut more = c.move_first().unwrap();
        while more {
            all.push((c.key().to_vec(), c.data().to_vec()));
            more = c.move_next().unwrap();
        }
        let mut back = Vec::new();
        let mut more = c.move_last().unwrap();
        while more {
            back.push((c.key().to_vec(), c.data().to_vec()));
            more = c.move_prev().unwrap();
        }
        back.reverse();
        assert_eq!(all, back);
        all
    };
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
    assert_eq!(scan(&db), want);
    db.flush().unwrap();
    drop(t);
    drop(db);
    let opts = DbOptions::new().page_size(page_size).cache_bytes(0);
    let db = Database::open(&fs, Path::new("/m.edb"), opts, Arc::new(MemWal::new())).unwrap();
    db.check_integrity().unwrap();
    assert_eq!(scan(&db), want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model_4k(ops in prop::collection::vec(op(), 1..400)) { run_tree(4096, &ops); }

    #[test]
    fn tree_matches_model_8k(ops in prop::collection::vec(op(), 1..400)) { run_tree(8192, &ops); }

    #[test]
    fn tree_matches_model_16k(ops in prop::collection::vec(op(), 1..400)) { run_tree(16384, &ops); }

    #[test]
    fn tree_matches_model_32k(ops in prop::collection::vec(op(), 1..400)) { run_tree(32768, &ops); }
}

#[derive(Debug, Clone)]
enum LvOp {
    Append(u8, usize),
    Overwrite(u8, u32, usize),
    Truncate(u8, u32),
    Read(u8, u32, usize),
    Delete(u8),
}

fn lv_op() -> impl Strategy<Value = LvOp> {
    let len = prop_oneof![4 => 0usize..5000, 1 => 0usize..200_000];
    prop_oneof![
        4 => (0u8..4, len.clone()).prop_map(|(l, n)| LvOp::Append(l, n)),
        2 => (0u8..4, any::<u32>(), len.clone()).prop_map(|(l, o, n)| LvOp::Overwrite(l, o, n)),
        1 => (0u8..4, any::<u32>()).prop_map(|(l, o)| LvOp::Truncate(l, o)),
        2 => (0u8..4, any::<u32>(), len).prop_map(|(l, o, n)| LvOp::Read(l, o, n)),
        1 => (0u8..4).prop_map(LvOp::Delete),
    ]
}

fn run_lv(page_size: u32, ops: &[LvOp]) {
    let (_fs, db) = new_db(page_size);
    let lvs = LongValues::new(db.create_tree(TreeKind::LongValue).unwrap()).unwrap();
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        let salt = n as u8;
        match *op {
            LvOp::Append(l, len) => {
                let lid = u64::from(l) * 0x0101_0101;
                model.entry(lid).or_insert_with(|| {
                    lvs.create(lid).unwrap();
                    Vec::new()
                });
                let data = value(&[l], len, salt);
                lvs.append(lid, &data).unwrap();
                model.get_mut(&lid).unwrap().extend_from_slice(&data);
            }
            LvOp::Overwrite(l, off, len) => {
                let lid = u64::from(l) * 0x0101_0101;
                let Some(m) = model.get_mut(&lid) else {
                    continue;
                };
                let off = if m.is_empty() {
                    0
                } else {
                    off as usize % (m.len() + 1)
                };
                let data = value(&[l, 1], len, salt);
                lvs.write_at(lid, off as u64, &data).unwrap();
                if m.len() < off + len {
                    m.resize(off + len, 0);
                }
                m[off..off + len].copy_from_slice(&data);
            }
            LvOp::Truncate(l, to) => {
                let lid = u64::from(l) * 0x0101_0101;
                let Some(m) = model.get_mut(&lid) else {
                    continue;
                };
                let to = to as usize % (m.len() + 1);
                lvs.truncate(lid, to as u64).unwrap();
                m.truncate(to);
            }
            LvOp::Read(l, off, len) => {
                let lid = u64::from(l) * 0x0101_0101;
                let Some(m) = model.get(&lid) else {
                    assert_eq!(lvs.len(lid).unwrap_err(), ErrorKind::ColumnNoChunk);
                    continue;
                };
                let off = off as usize % (m.len() + 1);
                let mut buf = vec![0u8; len];
                let got = lvs.read_at(lid, off as u64, &mut buf).unwrap();
                let want = &m[off..(off + len).min(m.len())];
                assert_eq!(&buf[..got], want);
            }
            LvOp::Delete(l) => {
                let lid = u64::from(l) * 0x0101_0101;
                if model.remove(&lid).is_some() {
                    lvs.delete(lid).unwrap();
                }
            }
        }
    }
    for (lid, m) in &model {
        assert_eq!(lvs.len(*lid).unwrap(), m.len() as u64);
        let mut buf = vec![0u8; m.len()];
        assert_eq!(lvs.read_at(*lid, 0, &mut buf).unwrap(), m.len());
        assert_eq!(&buf, m);
    }
    db.check_integrity().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn long_values_match_model(ps in prop::sample::select(vec![4096u32, 8192, 16384, 32768]), ops in prop::collection::vec(lv_op(), 1..60)) {
        run_lv(ps, &ops);
    }
}

#[test]
fn free_pages_are_reused() {
    let (_fs, db) = new_db(4096);
    let t = db.create_tree(TreeKind::Table).unwrap();
    for i in 0u32..3000 {
        t.insert(&i.to_le_bytes(), &[7u8; 100]).unwrap();
    }
    let full = db.check_integrity().unwrap();
    for i in 0u32..3000 {
        t.delete(&i.to_le_bytes()).unwrap();
    }
    let empty = db.check_integrity().unwrap();
    assert!(empty.free_pages > 50, "{empty:?}");
    assert_eq!(empty.trees[1].owned_pages, 1);
    for i in 0u32..3000 {
        t.insert(&i.to_le_bytes(), &[7u8; 100]).unwrap();
    }
    let again = db.check_integrity().unwrap();
    assert_eq!(again.pgno_last, full.pgno_last.max(again.pgno_last));
    assert!(
        again.pgno_last <= full.pgno_last + 2,
        "{again:?} vs {full:?}"
    );
}

#[test]
fn limits_are_enforced_without_writing() {
    let (_fs, db) = new_db(4096);
    let t = db.create_tree(TreeKind::Table).unwrap();
    let e = t.insert(&[1u8; 1001], b"").unwrap_err();
    assert_eq!(e, ErrorKind::KeyTooBig);
    assert!(e.to_string().contains("1000"));
    let e = t.insert(b"k", &vec![0u8; 5000]).unwrap_err();
    assert_eq!(e, ErrorKind::RecordTooBig);
    t.insert(&[1u8; 1000], b"").unwrap();
    t.insert(b"k", &vec![0u8; db.max_record_len() - 1]).unwrap();
    db.check_integrity().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    let e = Database::open(
        &fs,
        Path::new("/none.edb"),
        DbOptions::new(),
        Arc::new(MemWal::new()),
    )
    .unwrap_err();
    assert_eq!(e, ErrorKind::FileNotFound);
}
