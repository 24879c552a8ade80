//! `esedump check` (eseutil /g): exit 0 only on a clean database; a flipped byte in a data
//! page fails naming the page; a database that needs recovery fails with
//! JET_errDatabaseDirtyShutdown; the progress bar stays off a stderr that is not a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, flip_byte, json, json_of, leaf_of, make_db, stderr, stdout};

#[test]
fn clean_database_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["check", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Integrity check passed"));
    assert!(
        stderr(&o).is_empty(),
        "no progress bar off a terminal: {}",
        stderr(&o)
    );
    let j = json(&["check", p]);
    assert_eq!(j["clean"], true);
    assert_eq!(j["bad_pages"].as_array().unwrap().len(), 0);
    assert_eq!(j["structure"]["ok"], true);
    assert_eq!(j["structure"]["trees"], 4);
    assert_eq!(
        j["pages_verified"].as_u64().unwrap() + j["pages_unused"].as_u64().unwrap(),
        j["file_pages"].as_u64().unwrap()
    );
    assert_eq!(j["pages_verified"], j["pgno_last"]);
}

#[test]
fn flipped_byte_in_a_data_page_fails_naming_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let leaf = leaf_of(&db.path, db.table);
    flip_byte(&db.path, leaf);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["check", p]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("esedump: JET_errReadVerifyFailure (-1018)"),
        "{err}"
    );
    assert!(err.contains(&format!("page {leaf}")), "{err}");
    assert!(stdout(&o).contains("Integrity check FAILED"));
    let o = esedump(&["check", p, "--json"]);
    assert!(!o.status.success());
    let j = json_of(&o);
    assert_eq!(j["clean"], false);
    let bad = j["bad_pages"].as_array().unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["pgno"].as_u64().unwrap(), u64::from(leaf));
    assert_eq!(bad[0]["error"]["name"], "JET_errReadVerifyFailure");
    assert_eq!(j["structure"]["ok"], false);
}

#[test]
fn dirty_database_needs_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), true);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["check", p]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("esedump: JET_errDatabaseDirtyShutdown (-550)"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("recovery needed"));
    let o = esedump(&["check", p, "--json"]);
    let j = json_of(&o);
    assert_eq!(j["recovery_needed"], true);
    assert_eq!(j["clean"], false);
    assert_eq!(j["bad_pages"].as_array().unwrap().len(), 0);
}
