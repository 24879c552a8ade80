//! The `index_files` example as a user runs it: the binary is built with cargo (examples have
//! no `CARGO_BIN_EXE_*`), into the target directory this test runs from, and run on
//! temporary trees. Incremental runs count exactly what changed; a run killed with SIGKILL
//! in the middle of indexing is recovered by the next one, which then matches the directory,
//! and `esedump check` passes on the result.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The profile directory this test binary was built into (`<target>/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Builds the example and esedump once per test process, with the same target directory and
/// profile as this test; returns (index_files, esedump).
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let profile = profile_dir();
        let target = profile.parent().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(&workspace)
            .args(["build", "-p", "ese", "--example", "index_files"])
            .args(["-p", "esedump", "--bin", "esedump"])
            .arg("--target-dir")
            .arg(target);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of the example failed");
        (
            profile.join("examples").join("index_files"),
            profile.join("esedump"),
        )
    })
}

fn run_example(dir: &Path, db: &Path, extra: &[&str]) -> Output {
    let o = Command::new(&binaries().0)
        .arg(dir)
        .arg("--db")
        .arg(db)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "index_files failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

/// The counts of the summary line: (inserted, replaced, deleted, unchanged).
fn counts(o: &Output) -> (u64, u64, u64, u64) {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("Indexed "))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    let tail = line.split("): ").nth(1).unwrap();
    let n: Vec<u64> = tail
        .split(", ")
        .map(|part| part.split(' ').next().unwrap().parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn reruns_are_incremental_and_count_exactly_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    for d in ["a", "b/c", "target/debug", ".git/objects"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    let mut files = Vec::new();
    for i in 0..30 {
        let sub = if i % 2 == 0 { "a" } else { "b/c" };
        let p = tree.join(sub).join(format!("file{i}.txt"));
        std::fs::write(&p, format!("line one {i}\nline two\n")).unwrap();
        files.push(p);
    }
    std::fs::write(tree.join("Needle.RS"), b"fn main() {}\n").unwrap();
    // Skipped directories.
    std::fs::write(tree.join("target/debug/skipped.bin"), b"x").unwrap();
    std::fs::write(tree.join(".git/objects/skipped"), b"x").unwrap();
    let db = tmp.path().join("db");

    let first = run_example(&tree, &db, &[]);
    assert_eq!(counts(&first), (31, 0, 0, 0), "{}", stdout(&first));
    assert!(stdout(&first).contains("Rows: 31;"), "{}", stdout(&first));

    let second = run_example(&tree, &db, &["--find", "needle.rs"]);
    assert_eq!(counts(&second), (0, 0, 0, 31), "{}", stdout(&second));
    let out = stdout(&second);
    assert!(out.contains("Needle.RS"), "{out}");
    assert!(out.contains("  1 found"), "{out}");
    assert!(!out.contains("skipped"), "{out}");

    // Touch one file (a new modification time), delete another.
    let touched = std::fs::File::options()
        .write(true)
        .open(&files[3])
        .unwrap();
    touched
        .set_modified(SystemTime::now() - Duration::from_secs(3600 * 48))
        .unwrap();
    drop(touched);
    std::fs::remove_file(&files[4]).unwrap();
    let third = run_example(&tree, &db, &["--workers", "3", "--sessions", "2"]);
    assert_eq!(counts(&third), (0, 1, 1, 29), "{}", stdout(&third));
    assert!(stdout(&third).contains("Rows: 30;"), "{}", stdout(&third));
    // Nothing recovered after clean runs.
    assert!(!stdout(&third).contains("Recovery:"), "{}", stdout(&third));
}

#[cfg(unix)]
#[test]
fn a_run_killed_while_indexing_is_recovered_by_the_next() {
    const FILES: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    for i in 0..FILES {
        let d = tree.join(format!("d{:03}", i % 200));
        if i < 200 {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::fs::write(d.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let db = tmp.path().join("db");
    let (example, esedump) = binaries();
    let mut child = Command::new(example)
        .arg(&tree)
        .arg("--db")
        .arg(&db)
        .args(["--batch", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are committed: the table has rows once the log grew past
    // what creating the table writes. Then kill with SIGKILL.
    let start = Instant::now();
    let edb = db.join("files.edb");
    while !edb.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Long enough for some batches to commit, short enough to land before the end (a debug
    // build indexes about 1,000 small files per second here, a release build ten times more).
    let release = profile_dir().file_name().is_some_and(|n| n == "release");
    std::thread::sleep(Duration::from_millis(if release { 300 } else { 1500 }));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the example finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let rerun = run_example(&tree, &db, &[]);
    let out = stdout(&rerun);
    println!("{out}");
    assert!(
        out.contains("Recovery: the previous run did not end cleanly"),
        "{out}"
    );
    let (ins, rep, del, unch) = counts(&rerun);
    assert_eq!((ins + unch, rep, del), (FILES as u64, 0, 0), "{out}");
    assert!(unch > 0, "nothing was committed before the kill: {out}");
    assert!(out.contains(&format!("Rows: {FILES};")), "{out}");

    // The index matches the directory: a further run finds every file unchanged.
    let again = run_example(&tree, &db, &[]);
    assert_eq!(
        counts(&again),
        (0, 0, 0, FILES as u64),
        "{}",
        stdout(&again)
    );
    assert!(!stdout(&again).contains("Recovery:"));

    let check = Command::new(esedump)
        .args(["check"])
        .arg(&edb)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "esedump check failed: {}\n{}",
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&check.stdout)
    );
}
