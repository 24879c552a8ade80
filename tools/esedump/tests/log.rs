//! `esedump log` (eseutil /ml) on a log stream written by `ese_log::Log`: generations,
//! records with their families decoded, `--from`, a single generation file, a torn tail
//! (clean end) and a damaged finished generation (corruption, non-zero exit).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{esedump, json, json_of, make_log, stderr, stdout};

#[test]
fn generations_and_clean_end_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    assert!(log.generations >= 3, "the fixture spans generations");
    let p = log.dir.to_str().unwrap();
    let j = json(&["log", p]);
    assert_eq!(j["mode"], "directory");
    let gens = j["generations"].as_array().unwrap();
    assert_eq!(gens.len() as u32, log.generations);
    for (i, g) in gens.iter().enumerate() {
        assert_eq!(g["generation"].as_u64().unwrap(), i as u64 + 1);
        assert_eq!(g["file_size"], 65536);
        assert_eq!(g["page_size"], 4096);
        assert_eq!(g["signature"], j["signature"]);
        if i > 0 {
            assert_eq!(g["prev_created_micros"], gens[i - 1]["created_micros"]);
        }
    }
    assert_eq!(gens.last().unwrap()["file"], "edb.log");
    assert_eq!(gens[0]["file"], "edb00000001.log");
    assert_eq!(j["end"]["status"], "clean");
    assert!(j["records"].is_null());
    assert_eq!(j["families"]["txn"].as_u64().unwrap(), log.commits);
    assert_eq!(j["families"]["upper"].as_u64().unwrap(), log.upper);
    assert!(j["families"]["page"].as_u64().unwrap() > 600);
    assert_eq!(j["families"]["unknown"], 0);

    let o = esedump(&["log", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Clean end of log after"), "{out}");
    assert!(out.contains("edb00000001.log"), "{out}");
}

#[test]
fn records_are_decoded_by_family() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let p = log.dir.to_str().unwrap();
    let j = json(&["log", p, "--records"]);
    let recs = j["records"].as_array().unwrap();
    assert_eq!(recs.len() as u64, j["record_count"].as_u64().unwrap());
    assert_eq!(recs[0]["family"], "upper");
    assert_eq!(recs[0]["family_byte"], 17);
    let commit = recs
        .iter()
        .find(|r| r["family"] == "txn")
        .expect("a commit");
    assert_eq!(commit["txn"]["kind"], "commit0");
    assert_eq!(commit["txn"]["trx"], 1009);
    let node = recs
        .iter()
        .find(|r| r["family"] == "page" && r["page"]["kind"] == "node")
        .expect("a node record");
    assert_eq!(node["page"]["dbid"], 0);
    assert_eq!(node["page"]["node"]["op"], "insert");
    assert!(node["page"]["node"]["pgno"].as_u64().unwrap() >= 3);
    // Tree creation formats its pages anew: a pages record of images.
    let pages = recs
        .iter()
        .find(|r| r["page"]["kind"] == "pages")
        .expect("a pages record");
    assert!(!pages["page"]["image_pages"].as_array().unwrap().is_empty());
    assert!(recs.iter().all(|r| r["problem"].is_null()), "all decode");

    let o = esedump(&["log", p, "--records"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("commit0 trx 1009"), "{out}");
    assert!(out.contains("node dbid 0 insert pgno"), "{out}");
}

#[test]
fn from_starts_at_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let p = log.dir.to_str().unwrap();
    let all = json(&["log", p, "--records"]);
    let j = json(&["log", p, "--records", "--from", "2:8:0"]);
    let recs = j["records"].as_array().unwrap();
    assert!(!recs.is_empty());
    assert!(recs.len() < all["records"].as_array().unwrap().len());
    assert_eq!(recs[0]["lgpos"]["generation"], 2);
    assert_eq!(j["from"]["generation"], 2);
    let o = esedump(&["log", p, "--from", "nonsense"]);
    assert!(!o.status.success());
}

#[test]
fn one_generation_file_alone_and_in_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let f = log.dir.join("edb00000001.log");
    let in_stream = json(&["log", f.to_str().unwrap(), "--records"]);
    assert_eq!(in_stream["mode"], "file");
    assert_eq!(in_stream["generations"].as_array().unwrap().len(), 1);
    assert_eq!(in_stream["end"]["status"], "clean");
    let whole = json(&["log", log.dir.to_str().unwrap(), "--records"]);
    let gen1: Vec<_> = whole["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["lgpos"]["generation"] == 1)
        .cloned()
        .collect();
    assert_eq!(in_stream["records"].as_array().unwrap(), &gen1);

    let alone = dir.path().join("copy");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(&f, alone.join("edb00000001.log")).unwrap();
    let o = esedump(&["log", alone.join("edb00000001.log").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no generation 2 beside it"));
}

#[test]
fn torn_tail_of_the_newest_generation_is_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let cur = log.dir.join("edb.log");
    let before = json(&["log", log.dir.to_str().unwrap()]);
    let mut bytes = std::fs::read(&cur).unwrap();
    let n = bytes.len();
    bytes[n - 1024..].fill(0xA5);
    std::fs::write(&cur, bytes).unwrap();
    let after = json(&["log", log.dir.to_str().unwrap()]);
    assert_eq!(after["end"]["status"], "clean");
    assert_eq!(after["record_count"], before["record_count"]);
}

#[test]
fn damaged_finished_generation_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let f = log.dir.join("edb00000001.log");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[4096 + 600] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    for target in [log.dir.clone(), f.clone()] {
        let o = esedump(&["log", target.to_str().unwrap()]);
        assert!(!o.status.success(), "corruption must fail");
        assert!(
            stderr(&o).starts_with("esedump: JET_errLogFileCorrupt (-501)"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).contains("Log ends with corrupt"));
        let o = esedump(&["log", target.to_str().unwrap(), "--json"]);
        assert!(!o.status.success());
        let j = json_of(&o);
        assert_eq!(j["end"]["status"], "corrupt");
        assert_eq!(j["end"]["error"]["code"], -501);
        assert_eq!(j["end"]["lgpos"]["generation"], 1);
    }
}

#[test]
fn missing_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = esedump(&["log", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("esedump: JET_errMissingLogFile (-528)"),
        "{}",
        stderr(&o)
    );
}
