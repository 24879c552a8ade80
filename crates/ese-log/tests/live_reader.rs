#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Reading a stream while its `Log` rolls it over (an online backup verifies and copies the
//! live log): the reader's view stays consistent, deterministically. The rollovers are placed
//! in the reader's critical windows by a file system wrapper that runs them from inside the
//! reader's own directory listing or file open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ese_core::fs::{File, FileSystem, OpenOptions, OsFs};
use ese_core::{ErrorKind, Lgpos, Result};
use ese_log::{Log, LogConfig, LogReader, LogRecord};

/// When the hook of a [`HookFs`] runs.
#[derive(Debug)]
enum Trigger {
    /// After the next directory listing, before it is returned.
    AfterList,
    /// After the next open of a file of that name, before it is returned.
    AfterOpen(&'static str),
}

type Hook = Box<dyn FnOnce() + Send>;

/// [`OsFs`] that runs a hook once, at its trigger.
struct HookFs {
    inner: OsFs,
    hook: Mutex<Option<(Trigger, Hook)>>,
}

impl std::fmt::Debug for HookFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFs").finish_non_exhaustive()
    }
}

impl HookFs {
    fn new(trigger: Trigger, hook: impl FnOnce() + Send + 'static) -> Arc<HookFs> {
        Arc::new(HookFs {
            inner: OsFs::new(),
            hook: Mutex::new(Some((trigger, Box::new(hook)))),
        })
    }

    fn fire_if(&self, matches: impl Fn(&Trigger) -> bool) {
        let hook = {
            let mut h = self.hook.lock().unwrap();
            match h.take() {
                Some((t, f)) if matches(&t) => Some(f),
                other => {
                    *h = other;
                    None
                }
            }
        };
        if let Some(f) = hook {
            f();
        }
    }

    fn fired(&self) -> bool {
        self.hook.lock().unwrap().is_none()
    }
}

impl FileSystem for HookFs {
    fn open(&self, path: &Path, options: OpenOptions) -> Result<Box<dyn File>> {
        let r = self.inner.open(path, options);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.fire_if(|t| matches!(t, Trigger::AfterOpen(n) if *n == name));
        r
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        self.inner.hard_link(original, link)
    }
    fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let r = self.inner.list(dir);
        self.fire_if(|t| matches!(t, Trigger::AfterList));
        r
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }
}

/// A log without background threads: every rollover happens inside the `append` that needs it.
fn open_log(dir: &Path) -> Arc<Log> {
    let config = LogConfig::new(dir)
        .file_size_kib(64)
        .lazy_flush_ms(0)
        .reserve_logs(false);
    Arc::new(Log::open(Arc::new(OsFs::new()), config).unwrap())
}

/// Appends `n` small durable records; returns them.
fn small_records(log: &Log, n: u8) -> Vec<LogRecord> {
    (0..n)
        .map(|i| {
            let payload = vec![i; 100 + usize::from(i)];
            LogRecord {
                lgpos: log.append_and_flush(&payload).unwrap(),
                payload,
            }
        })
        .collect()
}

/// Appends a durable record that fills a generation of its own: the log rolls over before it
/// (the current generation holds something already). Returns it.
fn generation_filling_record(log: &Log, byte: u8) -> LogRecord {
    let payload = vec![byte; log.max_payload()];
    LogRecord {
        lgpos: log.append_and_flush(&payload).unwrap(),
        payload,
    }
}

fn archive(dir: &Path, generation: u32) -> PathBuf {
    dir.join(format!("edb{generation:08X}.log"))
}

#[test]
fn the_current_generation_archived_after_the_reader_opened_is_read_from_its_archive() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let expect = small_records(&log, 20);
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let reader = LogReader::open(fs, dir.path(), "edb", Lgpos::MIN).unwrap();
    assert_eq!(reader.generations(), (1, 1));
    // Generation 1 is archived and `edb.log` becomes 2, then 3, before a record is read.
    generation_filling_record(&log, 0xA1);
    generation_filling_record(&log, 0xA2);
    assert_eq!(log.current_generation(), 3);
    let got = reader.collect::<Result<Vec<_>>>().unwrap();
    assert_eq!(got, expect);
}

#[test]
fn rollovers_right_after_the_readers_listing_are_seen_consistently() {
    for from in [Lgpos::MIN, Lgpos::new(1, 0, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let mut expect = small_records(&log, 10);
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (l, t) = (Arc::clone(&log), Arc::clone(&tail));
        let fs = HookFs::new(Trigger::AfterList, move || {
            // Generations 1 and 2 are archived after the listing, `edb.log` holds 3.
            let mut t = t.lock().unwrap();
            t.push(generation_filling_record(&l, 0xB1));
            t.push(generation_filling_record(&l, 0xB2));
        });
        let reader = LogReader::open(fs.clone(), dir.path(), "edb", from).unwrap();
        assert!(fs.fired());
        assert_eq!(reader.generations(), (1, 3), "from {from}");
        expect.extend(tail.lock().unwrap().iter().cloned());
        let got = reader.collect::<Result<Vec<_>>>().unwrap();
        assert_eq!(got, expect, "from {from}");
    }
}

#[test]
fn read_generation_reads_one_generation_whole_across_a_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    small_records(&log, 30);
    assert_eq!(log.current_generation(), 1);
    // `edb.log` is opened while it holds generation 1; the rollover to 2 (and records of 2)
    // come before its header and bytes are read.
    let l = Arc::clone(&log);
    let fs = HookFs::new(Trigger::AfterOpen("edb.log"), move || {
        generation_filling_record(&l, 0xC1);
    });
    let (header, image) = LogReader::read_generation(fs.as_ref(), dir.path(), "edb", 1).unwrap();
    assert!(fs.fired());
    assert_eq!(log.current_generation(), 2);
    assert_eq!(header.generation, 1);
    assert_eq!(image, std::fs::read(archive(dir.path(), 1)).unwrap());

    // An archived generation, while `edb.log` holds a later one.
    let os = OsFs::new();
    let (header, image) = LogReader::read_generation(&os, dir.path(), "edb", 1).unwrap();
    assert_eq!(header.generation, 1);
    assert_eq!(image, std::fs::read(archive(dir.path(), 1)).unwrap());
    // The current generation.
    let (header, image) = LogReader::read_generation(&os, dir.path(), "edb", 2).unwrap();
    assert_eq!(header.generation, 2);
    assert_eq!(image, std::fs::read(dir.path().join("edb.log")).unwrap());
    // One not begun yet, and one deleted.
    let e = LogReader::read_generation(&os, dir.path(), "edb", 3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RequiredLogFilesMissing);
    os.remove_file(&archive(dir.path(), 1)).unwrap();
    let e = LogReader::read_generation(&os, dir.path(), "edb", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RequiredLogFilesMissing);
    assert_eq!(e.lgpos(), Some(Lgpos::new(1, 0, 0)));
}
