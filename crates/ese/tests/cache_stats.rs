//! `Session::database_cache_stats`: the page cache counters of an open database move with the
//! work done (reads hit the cache, pages are cached), and a database the session has not
//! opened is refused with `InvalidDatabaseId`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, ErrorKind, IndexCreate,
    IndexGrbit, Instance, Prep, Seek, TableCreate, TermGrbit,
};

#[test]
fn cache_counters_follow_the_work_and_need_an_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("cache-stats")
        .system_path(dir.path())
        .log_path(dir.path().join("logs"))
        .create()
        .unwrap();
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("c.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "t".into(),
            columns: vec![ColumnDef::new("k", ColumnType::Long)],
            indexes: vec![IndexCreate {
                name: "pk".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY,
                key_most: 0,
            }],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let k = t.column_id("k").unwrap();
    s.begin_transaction().unwrap();
    for i in 0..2_000i32 {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(k, Some(&i.to_le_bytes())).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    let before = s.database_cache_stats(db).unwrap();
    assert!(before.cached_pages > 1, "{before:?}");
    for i in (0..2_000i32).step_by(7) {
        t.seek(&[Some(&i.to_le_bytes())], Seek::Eq).unwrap();
    }
    let after = s.database_cache_stats(db).unwrap();
    // 286 seeks, each at least one page request, all from the cache (nothing was evicted).
    assert!(after.hits >= before.hits + 286, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses, "{after:?}");

    let other = inst.begin_session().unwrap();
    assert_eq!(
        other.database_cache_stats(db).unwrap_err().kind(),
        ErrorKind::InvalidDatabaseId
    );
    assert_eq!(
        s.database_cache_stats(DbId(99)).unwrap_err().kind(),
        ErrorKind::InvalidDatabaseId
    );
    drop(t);
    inst.term(TermGrbit::empty()).unwrap();
}
