//! `esedump checkpoint` (eseutil /mk) on a checkpoint written by `ese_log::Log`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, json, make_log, stderr, stdout};

#[test]
fn checkpoint_fields_in_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let chk = log.dir.join("edb.chk");
    let o = esedump(&["checkpoint", chk.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("(00000001,0008,0000)"), "{out}");
    assert!(out.contains("DB list size:"), "{out}");
    assert!(out.contains("same stream"), "{out}");

    let j = json(&["checkpoint", chk.to_str().unwrap()]);
    assert_eq!(j["lgpos"]["generation"], 1);
    assert_eq!(j["lgpos"]["isec"], 8);
    assert_eq!(j["lgpos"]["ib"], 0);
    assert!(j["sequence"].as_u64().unwrap() >= 1);
    assert_eq!(j["db_list_len"], 10);
    assert_eq!(j["db_list"], "6c6f676765642e656462");
    assert_eq!(j["matches_current_log"], true);
    assert!(j["written"].as_str().unwrap().ends_with('Z'));
    let l = json(&["log", log.dir.to_str().unwrap()]);
    assert_eq!(j["signature"], l["signature"]);
    // The log directory names the checkpoint too.
    let d = json(&["checkpoint", log.dir.to_str().unwrap()]);
    assert_eq!(d["sequence"], j["sequence"]);
}

#[test]
fn missing_or_corrupt_checkpoint_fails_with_its_jet_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = esedump(&["checkpoint", dir.path().join("edb.chk").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("esedump: JET_errCheckpointFileNotFound (-542)"),
        "{}",
        stderr(&o)
    );
    let bad = dir.path().join("bad.chk");
    std::fs::write(&bad, vec![1u8; 8192]).unwrap();
    let o = esedump(&["checkpoint", bad.to_str().unwrap(), "--json"]);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).starts_with("esedump: JET_errCheckpointCorrupt (-533)"));
}
