#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! One test suite for the [`FileSystem`] trait, written once against `&dyn FileSystem` and a
//! base directory, run against the real file system ([`OsFs`] in a temporary directory) and
//! the simulator ([`SimFs`]). Everything the engine can observe must behave identically.

use std::path::{Path, PathBuf};

use ese_core::ErrorKind;
use ese_core::fs::{File, FileSystem, OpenOptions, OsFs, SimFs};

fn at(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

fn kind<T: std::fmt::Debug>(r: ese_core::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

fn read_all(f: &dyn File) -> Vec<u8> {
    let mut buf = vec![0; usize::try_from(f.len().unwrap()).unwrap()];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

fn write_file(fs: &dyn FileSystem, path: &Path, data: &[u8]) {
    let f = fs.open(path, OpenOptions::create()).unwrap();
    f.write_all_at(data, 0).unwrap();
}

fn read_file(fs: &dyn FileSystem, path: &Path) -> Vec<u8> {
    read_all(fs.open(path, OpenOptions::read()).unwrap().as_ref())
}

fn write_with_gaps_reads_zeros(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "gaps");
    let f = fs.open(&path, OpenOptions::create_new()).unwrap();
    assert!(f.is_empty().unwrap());
    f.write_all_at(b"abc", 0).unwrap();
    f.write_all_at(b"xyz", 10).unwrap();
    assert_eq!(f.len().unwrap(), 13);
    assert_eq!(read_all(f.as_ref()), b"abc\0\0\0\0\0\0\0xyz");
    // Overwrite in the middle, and an empty write far away changes nothing.
    f.write_all_at(b"--", 2).unwrap();
    f.write_all_at(b"", 1000).unwrap();
    assert_eq!(read_all(f.as_ref()), b"ab--\0\0\0\0\0\0xyz");
    assert_eq!(f.path(), path.as_path());

    // read_at returns fewer bytes at the end, and 0 past it.
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, 9).unwrap(), 4);
    assert_eq!(&buf[..4], b"\0xyz");
    assert_eq!(f.read_at(&mut buf, 13).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, 1 << 40).unwrap(), 0);
}

fn reopen_sees_data_and_create_keeps_it(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "reopen");
    write_file(fs, &path, b"hello");
    assert_eq!(read_file(fs, &path), b"hello");
    // `create` on an existing file opens it without truncating.
    let f = fs.open(&path, OpenOptions::create()).unwrap();
    assert_eq!(read_all(f.as_ref()), b"hello");
    let f = fs.open(&path, OpenOptions::read_write()).unwrap();
    f.write_all_at(b"J", 0).unwrap();
    assert_eq!(read_file(fs, &path), b"Jello");
}

fn set_len_truncates_and_extends(fs: &dyn FileSystem, base: &Path) {
    let f = fs.open(&at(base, "len"), OpenOptions::create()).unwrap();
    f.write_all_at(b"0123456789", 0).unwrap();
    f.set_len(4).unwrap();
    assert_eq!(f.len().unwrap(), 4);
    assert_eq!(read_all(f.as_ref()), b"0123");
    f.set_len(8).unwrap();
    assert_eq!(read_all(f.as_ref()), b"0123\0\0\0\0");
    f.set_len(0).unwrap();
    assert!(f.is_empty().unwrap());
}

fn rename_replaces_target(fs: &dyn FileSystem, base: &Path) {
    let a = at(base, "a");
    let b = at(base, "b");
    write_file(fs, &a, b"AAA");
    write_file(fs, &b, b"B");
    fs.rename(&a, &b).unwrap();
    assert!(!fs.exists(&a).unwrap());
    assert_eq!(read_file(fs, &b), b"AAA");
    assert_eq!(fs.list(base).unwrap(), ["b"]);
    assert_eq!(kind(fs.rename(&a, &b)), ErrorKind::FileNotFound);
    // Into a subdirectory.
    let sub = at(base, "sub");
    fs.create_dir_all(&sub).unwrap();
    fs.rename(&b, &at(&sub, "moved")).unwrap();
    assert_eq!(read_file(fs, &at(&sub, "moved")), b"AAA");
    assert!(!fs.exists(&b).unwrap());
}

fn remove_file_and_not_found(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "gone");
    write_file(fs, &path, b"x");
    assert!(fs.exists(&path).unwrap());
    fs.remove_file(&path).unwrap();
    assert!(!fs.exists(&path).unwrap());
    assert_eq!(kind(fs.remove_file(&path)), ErrorKind::FileNotFound);
    assert_eq!(
        kind(fs.open(&path, OpenOptions::read())),
        ErrorKind::FileNotFound
    );
    assert_eq!(
        kind(fs.open(&path, OpenOptions::read_write())),
        ErrorKind::FileNotFound
    );
}

fn open_handle_survives_remove(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "unlinked");
    let f = fs.open(&path, OpenOptions::create()).unwrap();
    f.write_all_at(b"still here", 0).unwrap();
    fs.remove_file(&path).unwrap();
    f.write_all_at(b"!", 10).unwrap();
    assert_eq!(read_all(f.as_ref()), b"still here!");
    assert!(!fs.exists(&path).unwrap());
}

fn hard_link_shares_data(fs: &dyn FileSystem, base: &Path) {
    let orig = at(base, "orig");
    let link = at(base, "link");
    write_file(fs, &orig, b"one");
    fs.hard_link(&orig, &link).unwrap();
    let f = fs.open(&orig, OpenOptions::read_write()).unwrap();
    f.write_all_at(b"two", 0).unwrap();
    assert_eq!(read_file(fs, &link), b"two");
    fs.remove_file(&orig).unwrap();
    assert_eq!(read_file(fs, &link), b"two");
    assert_eq!(
        kind(fs.hard_link(&orig, &at(base, "x"))),
        ErrorKind::FileNotFound
    );
    write_file(fs, &orig, b"new");
    assert_eq!(
        kind(fs.hard_link(&orig, &link)),
        ErrorKind::FileAlreadyExists
    );
}

fn list_is_sorted_files_only(fs: &dyn FileSystem, base: &Path) {
    let dir = at(base, "listing");
    fs.create_dir_all(&dir).unwrap();
    assert!(fs.list(&dir).unwrap().is_empty());
    for name in ["c.log", "a.log", "b.edb", "B.chk"] {
        write_file(fs, &at(&dir, name), b"");
    }
    fs.create_dir_all(&at(&dir, "subdir")).unwrap();
    assert_eq!(fs.list(&dir).unwrap(), ["B.chk", "a.log", "b.edb", "c.log"]);
    assert_eq!(kind(fs.list(&at(base, "missing"))), ErrorKind::FileNotFound);
}

fn create_dir_all_nested(fs: &dyn FileSystem, base: &Path) {
    let deep = base.join("x").join("y").join("z");
    assert!(!fs.exists(&deep).unwrap());
    fs.create_dir_all(&deep).unwrap();
    assert!(fs.exists(&deep).unwrap());
    assert!(fs.exists(&base.join("x")).unwrap());
    fs.create_dir_all(&deep).unwrap(); // already there: fine
    write_file(fs, &at(&deep, "f"), b"deep");
    assert_eq!(read_file(fs, &deep.join(".").join("f")), b"deep");
    fs.sync_dir(&deep).unwrap();
    assert_eq!(fs.list(&base.join("x")).unwrap(), Vec::<String>::new());
}

fn missing_parent_is_not_found(fs: &dyn FileSystem, base: &Path) {
    let path = base.join("no-such-dir").join("f");
    assert_eq!(
        kind(fs.open(&path, OpenOptions::create())),
        ErrorKind::FileNotFound
    );
    assert_eq!(
        kind(fs.sync_dir(&at(base, "no-such-dir"))),
        ErrorKind::FileNotFound
    );
    assert!(!fs.exists(&path).unwrap());
}

fn create_new_on_existing_is_already_exists(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "twice");
    drop(fs.open(&path, OpenOptions::create_new()).unwrap());
    assert_eq!(
        kind(fs.open(&path, OpenOptions::create_new())),
        ErrorKind::FileAlreadyExists
    );
}

fn read_only_handle_refuses_writes(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "ro");
    write_file(fs, &path, b"data");
    let f = fs.open(&path, OpenOptions::read()).unwrap();
    assert_eq!(kind(f.write_all_at(b"x", 0)), ErrorKind::FileAccessDenied);
    assert_eq!(kind(f.set_len(0)), ErrorKind::FileAccessDenied);
    assert_eq!(read_all(f.as_ref()), b"data");
}

fn read_exact_past_end_is_beyond_eof(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "short");
    write_file(fs, &path, b"12345");
    let f = fs.open(&path, OpenOptions::read()).unwrap();
    let mut buf = [0u8; 4];
    f.read_exact_at(&mut buf, 1).unwrap();
    assert_eq!(&buf, b"2345");
    assert_eq!(
        kind(f.read_exact_at(&mut buf, 2)),
        ErrorKind::FileIOBeyondEOF
    );
    assert_eq!(
        kind(f.read_exact_at(&mut buf, 100)),
        ErrorKind::FileIOBeyondEOF
    );
}

fn syncs_succeed(fs: &dyn FileSystem, base: &Path) {
    let f = fs.open(&at(base, "synced"), OpenOptions::create()).unwrap();
    f.write_all_at(&[7; 4096], 0).unwrap();
    f.sync_data().unwrap();
    f.sync_data().unwrap(); // nothing pending: still fine
    fs.sync_dir(base).unwrap();
    assert_eq!(read_all(f.as_ref()), vec![7; 4096]);
}

fn large_buffers_round_trip(fs: &dyn FileSystem, base: &Path) {
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let f = fs.open(&at(base, "big"), OpenOptions::create()).unwrap();
    for (i, chunk) in data.chunks(64 << 10).enumerate() {
        f.write_all_at(chunk, (i as u64) << 16).unwrap();
    }
    f.sync_data().unwrap();
    assert_eq!(read_all(f.as_ref()), data);
}

/// The writeback hint changes no byte and no length, whatever range it names (past the end,
/// of length zero, beyond `i64::MAX`), and a sync after it still succeeds.
fn writeback_hint_leaves_data_as_written(fs: &dyn FileSystem, base: &Path) {
    let f = fs
        .open(&at(base, "hint"), OpenOptions::create_new())
        .unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    f.write_all_at(&data, 0).unwrap();
    for (offset, len) in [
        (0, 20_000),
        (4096, 8192),
        (0, 0),
        (1 << 30, 4096),
        (u64::MAX, u64::MAX),
    ] {
        f.start_writeback(offset, len);
    }
    f.sync_data().unwrap();
    assert_eq!(f.len().unwrap(), 20_000);
    assert_eq!(read_all(f.as_ref()), data);
    // A read-only handle takes the hint as well.
    let r = fs.open(&at(base, "hint"), OpenOptions::read()).unwrap();
    r.start_writeback(0, 20_000);
    assert_eq!(read_all(r.as_ref()), data);
}

/// Writes `data` at `offset` through `f` and into `model`, the bytes the file should hold.
fn write_model(model: &mut Vec<u8>, f: &dyn File, data: &[u8], offset: usize) {
    f.write_all_at(data, offset as u64).unwrap();
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

/// An unbuffered file reads back exactly what was written, whichever way each write went:
/// aligned stretches larger than the copy chunk from memory that is not aligned, a stretch
/// whose tail is not a whole sector, writes at unaligned offsets, and aligned writes over
/// bytes written through the cache before (the two paths stay coherent).
fn unbuffered_writes_read_back_as_written(fs: &dyn FileSystem, base: &Path) {
    let path = at(base, "unbuffered");
    let f = fs
        .open(&path, OpenOptions::create_new().unbuffered())
        .unwrap();
    let mut model = vec![0u8; 3 << 20];
    // 3 MiB of zeros first (a log generation's preformat), from a buffer one byte off.
    let zeros = vec![0u8; (3 << 20) + 1];
    write_model(&mut model, f.as_ref(), &zeros[1..], 0);
    // A sector-aligned stretch of 2 MiB + 3 sectors, misaligned in memory.
    let data: Vec<u8> = (0..(2u32 << 20) + 1536 + 7)
        .map(|i| (i % 253) as u8)
        .collect();
    write_model(&mut model, f.as_ref(), &data[7..], 4096);
    // The same from a page-aligned address (written without a copy where unbuffered).
    let slack = vec![0x5au8; (1 << 20) + 8192];
    let shift = slack.as_ptr().align_offset(4096);
    write_model(
        &mut model,
        f.as_ref(),
        &slack[shift..shift + (1 << 20) + 512],
        1 << 20,
    );
    // Whole sectors and a partial tail; an unaligned offset; an unaligned short write.
    let odd: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
    write_model(&mut model, f.as_ref(), &odd, 512 * 9);
    write_model(&mut model, f.as_ref(), &odd, 100_003);
    write_model(&mut model, f.as_ref(), b"xyz", 512 * 3 + 5);
    // An aligned write over bytes just written through the cache.
    let over: Vec<u8> = (0..1024u32).map(|i| (i * 31 + 1) as u8).collect();
    write_model(&mut model, f.as_ref(), &over, 99_840);
    // Past the end: the file grows.
    write_model(&mut model, f.as_ref(), &over, 3 << 20);
    f.sync_data().unwrap();
    assert_eq!(f.len().unwrap(), model.len() as u64);
    assert_eq!(read_all(f.as_ref()), model);
    // Another handle (buffered) sees the same bytes.
    assert_eq!(read_file(fs, &path), model);
    // Reopened unbuffered for writing, it keeps them and takes more.
    drop(f);
    let g = fs
        .open(&path, OpenOptions::read_write().unbuffered())
        .unwrap();
    write_model(&mut model, g.as_ref(), &odd[..512], 0);
    assert_eq!(read_all(g.as_ref()), model);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod os_fs {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&ese_core::fs::OsFs::new(), dir.path());
                }
            )*
        }

        mod sim_fs {
            $(
                #[test]
                fn $name() {
                    let fs = ese_core::fs::SimFs::new();
                    let base = std::path::Path::new("/suite/base");
                    ese_core::fs::FileSystem::create_dir_all(&fs, base).unwrap();
                    super::$name(&fs, base);
                }
            )*
        }
    };
}

suite!(
    write_with_gaps_reads_zeros,
    reopen_sees_data_and_create_keeps_it,
    set_len_truncates_and_extends,
    rename_replaces_target,
    remove_file_and_not_found,
    open_handle_survives_remove,
    hard_link_shares_data,
    list_is_sorted_files_only,
    create_dir_all_nested,
    missing_parent_is_not_found,
    create_new_on_existing_is_already_exists,
    read_only_handle_refuses_writes,
    read_exact_past_end_is_beyond_eof,
    syncs_succeed,
    large_buffers_round_trip,
    writeback_hint_leaves_data_as_written,
    unbuffered_writes_read_back_as_written,
);

#[test]
fn sim_fs_resolves_relative_paths_against_root() {
    let fs = SimFs::new();
    write_file(&fs, Path::new("rel.txt"), b"r");
    assert_eq!(read_file(&fs, Path::new("/rel.txt")), b"r");
    assert_eq!(read_file(&fs, Path::new("./rel.txt")), b"r");
    assert_eq!(fs.list(Path::new(".")).unwrap(), ["rel.txt"]);
    fs.sync_dir(Path::new(".")).unwrap();
    // The whole suite also passes with a relative base directory.
    fs.create_dir_all(Path::new("relative/base")).unwrap();
    syncs_succeed(&fs, Path::new("relative/base"));
    list_is_sorted_files_only(&fs, Path::new("relative/base"));
}

#[test]
fn both_file_systems_are_send_sync() {
    fn check<T: FileSystem + Send + Sync + Clone + 'static>() {}
    check::<OsFs>();
    check::<SimFs>();
}
