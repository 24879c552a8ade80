//! `Session::commit_transaction2` (JetCommitTransaction2): the commit identity it returns and
//! its durable-commit bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{code, id_value_table, running_instance};
use ese::{CommitGrbit, CreateDatabaseGrbit, Prep};

fn insert(t: &mut ese::Table, id: u32) {
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(t.column_id("id").unwrap(), Some(&id.to_le_bytes()))
        .unwrap();
    t.set_column(t.column_id("v").unwrap(), Some(b"value"))
        .unwrap();
    t.update().unwrap();
}

#[test]
fn commit_ids_name_the_log_and_ascend() {
    let (inst, dir) = running_instance("commit-id");
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("c.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(db, &id_value_table("t")).unwrap();
    let mut t = s.open_table(db, "t").unwrap();

    let mut ids = Vec::new();
    for i in 0..20u32 {
        s.begin_transaction().unwrap();
        insert(&mut t, i);
        let grbit = if i % 2 == 0 {
            CommitGrbit::empty()
        } else {
            CommitGrbit::LAZY_FLUSH
        };
        // A bound of 1 ms is below the background flusher's interval: durable on return.
        let id = s.commit_transaction2(grbit, i % 2).unwrap();
        ids.push(id);
    }
    assert!(ids.iter().all(|c| c.log_signature == ids[0].log_signature));
    let positions: Vec<ese::Lgpos> = ids.iter().map(|c| c.lgpos.unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // A nested level's commit logs nothing; the level-0 commit does.
    s.begin_transaction().unwrap();
    s.begin_transaction().unwrap();
    insert(&mut t, 100);
    assert_eq!(
        s.commit_transaction2(CommitGrbit::empty(), 0)
            .unwrap()
            .lgpos,
        None
    );
    let outer = s.commit_transaction2(CommitGrbit::empty(), 0).unwrap();
    assert!(outer.lgpos.unwrap() > positions[19]);

    // A read-only transaction commits without a record.
    s.begin_transaction().unwrap();
    assert_eq!(
        s.commit_transaction2(CommitGrbit::empty(), 0)
            .unwrap()
            .lgpos,
        None
    );

    // A durable-commit bound needs a lazy commit (-1003), and commit needs a transaction.
    s.begin_transaction().unwrap();
    assert_eq!(code(s.commit_transaction2(CommitGrbit::empty(), 10)), -1003);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(code(s.commit_transaction2(CommitGrbit::empty(), 0)), -1054);
    drop(t);
    s.close_database(db).unwrap();
}
