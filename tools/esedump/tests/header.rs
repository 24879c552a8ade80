//! `esedump header` (eseutil /mh) on databases made by `ese-btree`: clean, dirty, with a
//! damaged header copy, and on files that are not databases.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, json, make_db, stderr, stdout};

#[test]
fn clean_database_header_in_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["header", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("CleanShutdown (3)"), "{out}");
    assert!(out.contains("Page size:"), "{out}");
    assert!(!out.contains("recovery needed"), "{out}");
    assert!(stderr(&o).is_empty());

    let j = json(&["header", p]);
    assert_eq!(j["format_version"], 1);
    assert_eq!(j["page_size"], 4096);
    assert_eq!(j["state"], "CleanShutdown");
    assert_eq!(j["state_value"], 3);
    assert_eq!(j["recovery_needed"], false);
    assert!(j["last_objid"].as_u64().unwrap() >= u64::from(db.lv));
    assert!(j["dbtime"].as_u64().unwrap() > 0);
    assert_eq!(j["db_signature"].as_str().unwrap().len(), 64);
    assert_eq!(j["slots"].as_array().unwrap().len(), 2);
    assert!(
        j["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["valid"] == true)
    );
    let used = j["header_slot"].as_u64().unwrap();
    let best = j["slots"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["sequence"].as_u64().unwrap())
        .unwrap();
    assert_eq!(best["slot"].as_u64().unwrap(), used);
    assert_eq!(j["consistent_lgpos"]["generation"], 0);
}

#[test]
fn dirty_database_says_recovery_needed() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), true);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["header", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("DirtyShutdown (2): recovery needed"));
    assert!(stderr(&o).contains("recovery is needed"));
    let j = json(&["header", p]);
    assert_eq!(j["state"], "DirtyShutdown");
    assert_eq!(j["recovery_needed"], true);
}

#[test]
fn damaged_header_copy_falls_back_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let used = json(&["header", p])["header_slot"].as_u64().unwrap();
    let mut bytes = std::fs::read(&db.path).unwrap();
    bytes[used as usize * 4096 + 50] ^= 0xFF;
    std::fs::write(&db.path, bytes).unwrap();
    let j = json(&["header", p]);
    assert_eq!(j["header_slot"].as_u64().unwrap(), 1 - used);
    let bad = &j["slots"][used as usize];
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["error"]["name"], "JET_errReadVerifyFailure");
    assert_eq!(bad["error"]["code"], -1018);
}

#[test]
fn not_a_database_is_an_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.edb");
    std::fs::write(&junk, vec![0x5Au8; 20000]).unwrap();
    let o = esedump(&["header", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("esedump: JET_err"), "{}", stderr(&o));
    let o = esedump(&["header", dir.path().join("none.edb").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("esedump: JET_errFileNotFound"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn help_has_an_example() {
    for cmd in ["header", "checkpoint", "log", "page", "space", "check"] {
        let o = esedump(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Example"), "{cmd}: {}", stdout(&o));
    }
}
