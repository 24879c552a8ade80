//! esedump never modifies what it reads: after every subcommand, human and JSON, on clean,
//! dirty and damaged databases, a log stream and a checkpoint, every file's bytes and mtime
//! are unchanged. A database held open by the engine (exclusive lock) is refused rather than
//! read while it changes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::{esedump, flip_byte, leaf_of, make_db, make_log, snapshot, stderr};

#[test]
fn no_subcommand_changes_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let clean = make_db(dir.path(), false);
    let dirty = make_db(dir.path(), true);
    let log = make_log(dir.path());
    let damaged = dir.path().join("damaged.edb");
    std::fs::copy(&clean.path, &damaged).unwrap();
    flip_byte(&damaged, leaf_of(&damaged, clean.table));
    // Let any mtime change be visible at the file system's resolution.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(dir.path());
    let logs = log.dir.to_str().unwrap().to_owned();
    let chk = log.dir.join("edb.chk").to_str().unwrap().to_owned();
    let gen1 = log.dir.join("edb00000001.log").to_str().unwrap().to_owned();
    let mut runs: Vec<Vec<String>> = vec![
        vec!["checkpoint".into(), chk],
        vec!["log".into(), logs.clone(), "--records".into()],
        vec!["log".into(), gen1, "--records".into()],
    ];
    for db in [&clean.path, &dirty.path, &damaged] {
        let p = db.to_str().unwrap().to_owned();
        runs.push(vec!["header".into(), p.clone()]);
        runs.push(vec!["page".into(), p.clone(), "1".into()]);
        runs.push(vec!["page".into(), p.clone(), "2".into()]);
        runs.push(vec!["space".into(), p.clone()]);
        runs.push(vec!["check".into(), p.clone()]);
    }
    let mut json_runs: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.push("--json".into());
            r
        })
        .collect();
    runs.append(&mut json_runs);
    for r in &runs {
        let args: Vec<&str> = r.iter().map(String::as_str).collect();
        let o = esedump(&args);
        assert!(
            !stderr(&o).contains("refused to"),
            "esedump {args:?} attempted a write: {}",
            stderr(&o)
        );
    }
    let after = snapshot(dir.path());
    assert_eq!(before.len(), after.len(), "no file created or removed");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0);
        assert!(b.1 == a.1, "{} changed", b.0.display());
        assert_eq!(b.2, a.2, "{} mtime changed", b.0.display());
    }
}

#[test]
fn database_in_use_by_the_engine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let guard = common::files_open_guard();
    let fs: Arc<dyn ese_core::fs::FileSystem> = Arc::new(ese_core::fs::OsFs::new());
    let open = ese_btree::Database::open(
        &fs,
        &db.path,
        ese_btree::DbOptions::new().page_size(common::PAGE_SIZE),
        Arc::new(ese_btree::MemWal::new()),
    )
    .unwrap();
    let o = common::esedump_holding_guard(&["header", db.path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("esedump: JET_errFileAccessDenied (-1032)"),
        "{}",
        stderr(&o)
    );
    drop(open);
    drop(guard);
    assert!(
        esedump(&["header", db.path.to_str().unwrap()])
            .status
            .success()
    );
}
