//! `esedump page` (eseutil /p): header fields and lines of the directory root, the space page
//! and a table leaf, value formats and truncation, a damaged page and pages that do not exist.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, flip_byte, json, json_of, leaf_of, make_db, stderr, stdout};

#[test]
fn directory_root_and_space_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let j = json(&["page", p, "1"]);
    assert_eq!(j["pgno"], 1);
    assert_eq!(j["stored_pgno"], 1);
    assert_eq!(j["checksum_ok"], true);
    assert!(j["verify_error"].is_null());
    assert_eq!(j["checksum_stored"], j["checksum_computed"]);
    assert_eq!(j["objid"], 1);
    assert!(j["flag_names"].as_array().unwrap().contains(&"root".into()));
    let lines = j["lines"].as_array().unwrap();
    assert_eq!(lines.len() as u64, j["tag_count"].as_u64().unwrap());
    assert!(lines[0]["flags"].is_null(), "tag 0 is the external header");
    // The directory maps objids (4-byte big-endian keys) to roots: one node per tree.
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["key_len"], 4);
    assert_eq!(lines[1]["key"], format!("{:08x}", db.table));

    let s = json(&["page", p, "2"]);
    assert!(
        s["flag_names"]
            .as_array()
            .unwrap()
            .contains(&"space".into())
    );
    let sh = &s["space_header"];
    assert!(sh["pgno_last"].as_u64().unwrap() > 3);
    assert_eq!(sh["last_objid"].as_u64().unwrap(), u64::from(db.lv));

    let o = esedump(&["page", p, "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Checksum:"), "{out}");
    assert!(out.contains("ok (0x"), "{out}");
    assert!(out.contains("TAG"), "{out}");
}

#[test]
fn leaf_lines_are_cut_unless_full_and_shown_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    let leaf = leaf_of(&db.path, db.table).to_string();
    let j = json(&["page", p, &leaf]);
    assert!(j["flag_names"].as_array().unwrap().contains(&"leaf".into()));
    assert_eq!(j["objid"].as_u64().unwrap(), u64::from(db.table));
    let l1 = &j["lines"][1];
    assert_eq!(l1["key_len"], 8);
    assert!(l1["data_len"].as_u64().unwrap() >= 40);
    assert_eq!(l1["truncated"], true);
    assert_eq!(l1["data"].as_str().unwrap().len(), 64, "cut to 32 bytes");
    let full = json(&["page", p, &leaf, "--full"]);
    let f1 = &full["lines"][1];
    assert_eq!(f1["truncated"], false);
    assert_eq!(
        f1["data"].as_str().unwrap().len() as u64,
        2 * f1["data_len"].as_u64().unwrap()
    );
    let key = String::from_utf8(
        (0..f1["key"].as_str().unwrap().len() / 2)
            .map(|i| {
                u8::from_str_radix(&f1["key"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap()
            })
            .collect(),
    )
    .unwrap();
    assert!(key.starts_with("key"), "{key}");

    let auto = stdout(&esedump(&["page", p, &leaf, "--format", "auto"]));
    assert!(auto.contains(&format!("\"{key}\"")), "{auto}");
    assert!(auto.contains("…(+"), "cut marker: {auto}");
    let hex = stdout(&esedump(&["page", p, &leaf, "--full"]));
    assert!(!hex.contains("…(+"), "{hex}");
}

#[test]
fn damaged_page_is_shown_then_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let leaf = leaf_of(&db.path, db.table);
    flip_byte(&db.path, leaf);
    let p = db.path.to_str().unwrap();
    let o = esedump(&["page", p, &leaf.to_string()]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("BAD: JET_errReadVerifyFailure"),
        "{}",
        stdout(&o)
    );
    let err = stderr(&o);
    assert!(
        err.starts_with("esedump: JET_errReadVerifyFailure (-1018)"),
        "{err}"
    );
    assert!(err.contains(&format!("page {leaf}")), "{err}");
    let o = esedump(&["page", p, &leaf.to_string(), "--json"]);
    assert!(!o.status.success());
    let j = json_of(&o);
    assert_eq!(j["checksum_ok"], false);
    assert_eq!(j["verify_error"]["pgno"].as_u64().unwrap(), u64::from(leaf));
    assert_ne!(j["checksum_stored"], j["checksum_computed"]);
}

#[test]
fn pages_outside_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), false);
    let p = db.path.to_str().unwrap();
    for pgno in ["0", "100000"] {
        let o = esedump(&["page", p, pgno]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).starts_with("esedump: JET_errInvalidParameter (-1003)"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn dirty_database_pages_are_shown_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), true);
    let o = esedump(&["page", db.path.to_str().unwrap(), "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("recovery is needed"));
}
