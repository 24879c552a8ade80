//! `esedump space` (eseutil /ms): pages owned, available and used per tree, free pages, and
//! the accounting invariant (every page up to the last allocated one is owned exactly once,
//! is the space page, or is free).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, flip_byte, json, leaf_of, make_db, stderr, stdout};

#[test]
fn space_per_tree_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let j = json(&["space", p]);
    assert_eq!(j["page_size"], 4096);
    assert_eq!(j["recovery_needed"], false);
    let trees = j["trees"].as_array().unwrap();
    let kinds: Vec<&str> = trees.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["directory", "table", "index", "long-value"]);
    assert_eq!(trees[1]["objid"].as_u64().unwrap(), u64::from(db.table));
    assert!(trees[1]["owned_pages"].as_u64().unwrap() > 1);
    assert!(trees[1]["depth"].as_u64().unwrap() >= 2);
    assert_eq!(trees[1]["nodes"], 400);
    for t in trees {
        assert_eq!(
            t["used_pages"].as_u64().unwrap(),
            t["owned_pages"].as_u64().unwrap() - t["available_pages"].as_u64().unwrap()
        );
    }
    let owned: u64 = trees
        .iter()
        .map(|t| t["owned_pages"].as_u64().unwrap())
        .sum();
    let free = j["free_pages"].as_u64().unwrap();
    assert_eq!(owned + 1 + free, j["pgno_last"].as_u64().unwrap());
    assert_eq!(
        j["pgno_last"].as_u64().unwrap() + j["unused_tail_pages"].as_u64().unwrap(),
        j["file_pages"].as_u64().unwrap()
    );

    let o = esedump(&["space", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("OWNED"), "{out}");
    assert!(out.contains("long-value"), "{out}");
    assert!(out.contains("space page"), "{out}");
}

#[test]
fn dirty_database_space_is_reported_with_recovery_needed() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), true);
    let p = db.path.to_str().unwrap();
    let j = json(&["space", p]);
    assert_eq!(j["recovery_needed"], true);
    assert_eq!(j["state"], "DirtyShutdown");
    let o = esedump(&["space", p]);
    assert!(stderr(&o).contains("recovery is needed"));
}

#[test]
fn damaged_page_fails_space_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let leaf = leaf_of(&db.path, db.index);
    flip_byte(&db.path, leaf);
    let o = esedump(&["space", db.path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("page {leaf}")),
        "{}",
        stderr(&o)
    );
}
