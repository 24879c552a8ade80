#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Each [`CrashModel`] of [`SimFs::crash`] does what its documentation says: what a synced
//! write, an unsynced write, a torn write and an unsynced directory operation become after a
//! simulated power loss. The whole engine's crash tests rely on these semantics.

use std::path::Path;

use ese_core::fs::{CrashModel, FileSystem, OpenOptions, SimFs};

const SECTOR: usize = 512;

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// The file's bytes, or `None` if it does not exist.
fn read(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
    if !fs.exists(p(path)).unwrap() {
        return None;
    }
    let f = fs.open(p(path), OpenOptions::read()).unwrap();
    let mut buf = vec![0; usize::try_from(f.len().unwrap()).unwrap()];
    f.read_exact_at(&mut buf, 0).unwrap();
    Some(buf)
}

/// A file system with `/d/f` holding `data`, its data and its directory entry durable.
fn durable_file(data: &[u8]) -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(p("/d")).unwrap();
    let f = fs.open(p("/d/f"), OpenOptions::create()).unwrap();
    f.write_all_at(data, 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs
}

fn write(fs: &SimFs, path: &str, data: &[u8], offset: u64) {
    let f = fs.open(p(path), OpenOptions::create()).unwrap();
    f.write_all_at(data, offset).unwrap();
}

#[test]
fn synced_write_survives_every_model() {
    let synced: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let fs = durable_file(&synced);
    // Unsynced noise everywhere else: an append, another file, a directory operation.
    write(&fs, "/d/f", &[0xEE; 1500], synced.len() as u64);
    write(&fs, "/d/other", &[1; 600], 0);
    fs.hard_link(p("/d/f"), p("/d/alias")).unwrap();
    for model in CrashModel::ALL {
        for seed in 0..300 {
            let after = fs.crash(model, seed);
            let got = read(&after, "/d/f").expect("a synced file survives");
            assert_eq!(
                got.get(..synced.len()),
                Some(&synced[..]),
                "{model:?} {seed}"
            );
        }
    }
}

#[test]
fn synced_set_len_survives_every_model() {
    let fs = durable_file(&[5; 2048]);
    let f = fs.open(p("/d/f"), OpenOptions::read_write()).unwrap();
    f.set_len(100).unwrap();
    f.sync_data().unwrap();
    for model in CrashModel::ALL {
        for seed in 0..100 {
            assert_eq!(read(&fs.crash(model, seed), "/d/f"), Some(vec![5; 100]));
        }
    }
}

#[test]
fn unsynced_write_never_survives_drop_all() {
    let fs = durable_file(&[0xAA; 1024]);
    write(&fs, "/d/f", &[0x55; 1024], 0);
    write(&fs, "/d/f", &[0x55; 100], 1024);
    let f = fs.open(p("/d/f"), OpenOptions::read_write()).unwrap();
    f.set_len(10).unwrap();
    for seed in 0..1000 {
        assert_eq!(
            read(&fs.crash(CrashModel::DropAll, seed), "/d/f"),
            Some(vec![0xAA; 1024])
        );
    }
}

/// Counts, over 1,000 seeds, how often a one-sector unsynced write is kept whole and lost
/// whole under `model`.
fn kept_and_lost(model: CrashModel) -> (u32, u32) {
    let old = vec![0xAA; SECTOR];
    let new = vec![0x55; SECTOR];
    let fs = durable_file(&old);
    write(&fs, "/d/f", &new, 0);
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..1000 {
        let got = read(&fs.crash(model, seed), "/d/f").unwrap();
        if got == new {
            kept += 1;
        } else if got == old {
            lost += 1;
        }
    }
    (kept, lost)
}

#[test]
fn unsynced_write_is_kept_and_lost_under_random_subset() {
    let (kept, lost) = kept_and_lost(CrashModel::RandomSubset);
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    assert_eq!(kept + lost, 1000, "RandomSubset never tears a write");
}

#[test]
fn unsynced_write_is_kept_and_lost_under_torn_sectors() {
    let (kept, lost) = kept_and_lost(CrashModel::TornSectors);
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    assert!(kept + lost < 1000, "some seeds leave garbage in the sector");
}

#[test]
fn unsynced_write_is_kept_and_lost_under_dir_ops_lost() {
    let (kept, lost) = kept_and_lost(CrashModel::DirOpsLost);
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn random_subset_reorders_writes() {
    // Two unsynced writes to the same sector: every combination may be the outcome,
    // including the older write landing last.
    let fs = durable_file(&[0; 8]);
    write(&fs, "/d/f", &[1; 8], 0);
    write(&fs, "/d/f", &[2; 8], 0);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..500 {
        seen.insert(read(&fs.crash(CrashModel::RandomSubset, seed), "/d/f").unwrap()[0]);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
}

#[derive(Default, Debug)]
struct SectorOutcomes {
    old: u32,
    new: u32,
    garbage: u32,
}

/// Classifies `got` (the part of one sector inside the written range) as entirely old,
/// entirely new, or garbage (random bytes: neither, and almost no byte matches either).
fn classify(got: &[u8], old: u8, new: u8, tally: &mut SectorOutcomes, what: &str) {
    if got.iter().all(|b| *b == old) {
        tally.old += 1;
    } else if got.iter().all(|b| *b == new) {
        tally.new += 1;
    } else {
        let matching = got.iter().filter(|b| **b == old || **b == new).count();
        assert!(
            matching * 8 < got.len().max(8),
            "{what}: a mix of old and new bytes ({matching} of {} match)",
            got.len()
        );
        tally.garbage += 1;
    }
}

#[test]
fn torn_write_changes_only_whole_sectors() {
    const OLD: u8 = 0xAA;
    const NEW: u8 = 0x55;
    let old = vec![OLD; 8 * SECTOR];
    let fs = durable_file(&old);
    // Sectors 2..6, aligned.
    write(&fs, "/d/f", &[NEW; 4 * SECTOR], 2 * SECTOR as u64);
    let mut tally = SectorOutcomes::default();
    for seed in 0..1000 {
        let got = read(&fs.crash(CrashModel::TornSectors, seed), "/d/f").unwrap();
        assert_eq!(got.len(), old.len());
        for (i, sector) in got.chunks(SECTOR).enumerate() {
            if (2..6).contains(&i) {
                classify(
                    sector,
                    OLD,
                    NEW,
                    &mut tally,
                    &format!("seed {seed} sector {i}"),
                );
            } else {
                assert_eq!(
                    sector,
                    &old[..SECTOR],
                    "seed {seed}: sector {i} not written"
                );
            }
        }
    }
    assert!(
        tally.old > 0 && tally.new > 0 && tally.garbage > 0,
        "{tally:?}"
    );
}

#[test]
fn torn_unaligned_write_tears_at_absolute_sector_boundaries() {
    const OLD: u8 = 0xAA;
    const NEW: u8 = 0x55;
    let old = vec![OLD; 6 * SECTOR];
    let fs = durable_file(&old);
    // Bytes 700..1900: parts of sectors 1 and 3, all of sector 2.
    let (start, end) = (700usize, 1900usize);
    write(&fs, "/d/f", &vec![NEW; end - start], start as u64);
    let mut tally = SectorOutcomes::default();
    for seed in 0..1000 {
        let got = read(&fs.crash(CrashModel::TornSectors, seed), "/d/f").unwrap();
        assert_eq!(got.len(), old.len());
        assert!(
            got[..start].iter().all(|b| *b == OLD),
            "seed {seed}: before"
        );
        assert!(got[end..].iter().all(|b| *b == OLD), "seed {seed}: after");
        for (lo, hi) in [(700, 1024), (1024, 1536), (1536, 1900)] {
            classify(
                &got[lo..hi],
                OLD,
                NEW,
                &mut tally,
                &format!("seed {seed} {lo}..{hi}"),
            );
        }
    }
    assert!(
        tally.old > 0 && tally.new > 0 && tally.garbage > 0,
        "{tally:?}"
    );
}

#[test]
fn unsynced_rename_is_undone_under_dir_ops_lost_for_some_seed() {
    let fs = durable_file(b"payload");
    fs.rename(p("/d/f"), p("/d/g")).unwrap();
    let (mut undone, mut kept) = (0, 0);
    for seed in 0..500 {
        let after = fs.crash(CrashModel::DirOpsLost, seed);
        match (read(&after, "/d/f"), read(&after, "/d/g")) {
            (Some(f), None) => {
                assert_eq!(f, b"payload");
                undone += 1;
            }
            (None, Some(g)) => {
                assert_eq!(g, b"payload");
                kept += 1;
            }
            other => panic!("seed {seed}: a rename is atomic, got {other:?}"),
        }
    }
    assert!(undone > 0 && kept > 0, "undone {undone}, kept {kept}");
    // DropAll loses it always; the other models keep every directory operation.
    for seed in 0..100 {
        assert!(read(&fs.crash(CrashModel::DropAll, seed), "/d/g").is_none());
        for model in [CrashModel::RandomSubset, CrashModel::TornSectors] {
            let after = fs.crash(model, seed);
            assert_eq!(read(&after, "/d/g").as_deref(), Some(&b"payload"[..]));
            assert!(read(&after, "/d/f").is_none());
        }
    }
}

#[test]
fn rename_is_never_undone_after_sync_dir() {
    let fs = durable_file(b"payload");
    write(&fs, "/d/target", b"replaced", 0);
    fs.sync_dir(p("/d")).unwrap();
    fs.rename(p("/d/f"), p("/d/target")).unwrap();
    fs.sync_dir(p("/d")).unwrap();
    // Later unsynced directory operations do not bring it back either.
    write(&fs, "/d/later", b"x", 0);
    for model in CrashModel::ALL {
        for seed in 0..300 {
            let after = fs.crash(model, seed);
            assert!(read(&after, "/d/f").is_none(), "{model:?} {seed}");
            assert_eq!(
                read(&after, "/d/target").as_deref(),
                Some(&b"payload"[..]),
                "{model:?} {seed}"
            );
        }
    }
}

#[test]
fn dir_ops_lost_keeps_a_prefix_in_order() {
    let fs = durable_file(b"0");
    for name in ["/d/a", "/d/b", "/d/c"] {
        write(&fs, name, b"x", 0);
    }
    let mut prefixes = std::collections::BTreeSet::new();
    for seed in 0..500 {
        let after = fs.crash(CrashModel::DirOpsLost, seed);
        let present: Vec<bool> = ["/d/a", "/d/b", "/d/c"]
            .iter()
            .map(|n| after.exists(p(n)).unwrap())
            .collect();
        let n = present.iter().take_while(|b| **b).count();
        assert!(
            present[n..].iter().all(|b| !b),
            "seed {seed}: {present:?} is no prefix"
        );
        prefixes.insert(n);
    }
    assert_eq!(prefixes.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
}

#[test]
fn data_synced_file_without_dir_sync_can_vanish() {
    let fs = SimFs::new();
    fs.create_dir_all(p("/d")).unwrap();
    let f = fs.open(p("/d/new"), OpenOptions::create_new()).unwrap();
    f.write_all_at(b"synced data", 0).unwrap();
    f.sync_data().unwrap();
    for seed in 0..100 {
        assert!(read(&fs.crash(CrashModel::DropAll, seed), "/d/new").is_none());
    }
    let (mut vanished, mut present) = (0, 0);
    for seed in 0..200 {
        match read(&fs.crash(CrashModel::DirOpsLost, seed), "/d/new") {
            None => vanished += 1,
            Some(data) => {
                assert_eq!(data, b"synced data");
                present += 1;
            }
        }
    }
    assert!(
        vanished > 0 && present > 0,
        "vanished {vanished}, present {present}"
    );
    fs.sync_dir(p("/d")).unwrap();
    for model in CrashModel::ALL {
        assert_eq!(
            read(&fs.crash(model, 7), "/d/new").as_deref(),
            Some(&b"synced data"[..])
        );
    }
}

#[test]
fn unsynced_remove_brings_the_file_back_with_its_durable_data() {
    let fs = durable_file(b"durable");
    write(&fs, "/d/f", b"LIVE!!!", 0);
    fs.remove_file(p("/d/f")).unwrap();
    assert!(!fs.exists(p("/d/f")).unwrap());
    for seed in 0..100 {
        assert_eq!(
            read(&fs.crash(CrashModel::DropAll, seed), "/d/f").as_deref(),
            Some(&b"durable"[..])
        );
    }
    let back = (0..200)
        .filter(|seed| read(&fs.crash(CrashModel::DirOpsLost, *seed), "/d/f").is_some())
        .count();
    assert!(back > 0 && back < 200, "{back}");
    fs.sync_dir(p("/d")).unwrap();
    for model in CrashModel::ALL {
        for seed in 0..50 {
            assert!(read(&fs.crash(model, seed), "/d/f").is_none());
        }
    }
}

#[test]
fn rename_across_directories_needs_both_directory_syncs() {
    let fs = SimFs::new();
    fs.create_dir_all(p("/x")).unwrap();
    fs.create_dir_all(p("/y")).unwrap();
    let f = fs.open(p("/x/f"), OpenOptions::create()).unwrap();
    f.write_all_at(b"moving", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(p("/x")).unwrap();
    fs.rename(p("/x/f"), p("/y/f")).unwrap();
    // Only the destination synced: both names survive a crash (the source half was lost).
    fs.sync_dir(p("/y")).unwrap();
    let after = fs.crash(CrashModel::DropAll, 1);
    assert_eq!(read(&after, "/x/f").as_deref(), Some(&b"moving"[..]));
    assert_eq!(read(&after, "/y/f").as_deref(), Some(&b"moving"[..]));
    fs.sync_dir(p("/x")).unwrap();
    for model in CrashModel::ALL {
        let after = fs.crash(model, 1);
        assert!(read(&after, "/x/f").is_none());
        assert_eq!(read(&after, "/y/f").as_deref(), Some(&b"moving"[..]));
    }
}

#[test]
fn create_dir_all_is_durable_in_its_parent() {
    let fs = SimFs::new();
    fs.create_dir_all(p("/a/b/c")).unwrap();
    let f = fs.open(p("/a/b/c/f"), OpenOptions::create()).unwrap();
    f.write_all_at(b"in a new dir", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(p("/a/b/c")).unwrap();
    for model in CrashModel::ALL {
        for seed in 0..50 {
            let after = fs.crash(model, seed);
            assert_eq!(
                read(&after, "/a/b/c/f").as_deref(),
                Some(&b"in a new dir"[..])
            );
        }
    }
}

#[test]
fn crash_is_deterministic_and_leaves_self_unchanged() {
    let fs = durable_file(&[0xAA; 4 * SECTOR]);
    write(&fs, "/d/f", &[0x55; 3 * SECTOR], 100);
    write(&fs, "/d/g", &[9; 2000], 0);
    fs.rename(p("/d/g"), p("/d/h")).unwrap();
    let count = fs.op_count();
    for model in CrashModel::ALL {
        for seed in 0..50 {
            let a = fs.crash(model, seed);
            let b = fs.crash(model, seed);
            for name in ["/d/f", "/d/g", "/d/h"] {
                assert_eq!(read(&a, name), read(&b, name), "{model:?} {seed} {name}");
            }
        }
    }
    assert_eq!(fs.op_count(), count);
    assert!(read(&fs, "/d/g").is_none());
    assert_eq!(read(&fs, "/d/h"), Some(vec![9; 2000]));
    let f = read(&fs, "/d/f").unwrap();
    assert_eq!(&f[100..100 + 3 * SECTOR], &[0x55; 3 * SECTOR][..]);
}

#[test]
fn crash_image_is_durable_and_independent() {
    let fs = durable_file(b"base");
    write(&fs, "/d/f", b"BASE", 0);
    write(&fs, "/d/g", b"new file", 0);
    let held = fs.open(
        p("/d/f"),
        OpenOptions::read_write().lock(ese_core::fs::Lock::Exclusive),
    );
    let held = held.unwrap();
    for seed in 0..50 {
        let after = fs.crash(CrashModel::RandomSubset, seed);
        // Everything in the image is durable: crashing it again changes nothing.
        let again = after.crash(CrashModel::DropAll, seed);
        for name in ["/d/f", "/d/g"] {
            assert_eq!(read(&after, name), read(&again, name));
        }
        // No locks carried over, counters start at zero, and it is independent of `fs`.
        assert_eq!(after.op_count(), 0);
        let f = after
            .open(
                p("/d/f"),
                OpenOptions::read_write().lock(ese_core::fs::Lock::Exclusive),
            )
            .unwrap();
        f.write_all_at(b"zzzz", 0).unwrap();
        assert_eq!(read(&fs, "/d/f").as_deref(), Some(&b"BASE"[..]));
    }
    drop(held);
}
