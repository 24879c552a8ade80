//! The rows of ESE-REFERENCE §1.4 (instance state × API → result) through the public API,
//! each asserting ESE's exact number: created, running, stop service, failed init, and the
//! unavailable state after a failed log write (then term still works, and the next init
//! recovers).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::{code, running_instance};
use ese::{
    ColumnDef, ColumnType, CommitGrbit, CreateDatabaseGrbit, EndSessionGrbit, Instance,
    InstanceState, Prep, RollbackGrbit, TableCreate, TermGrbit,
};
use ese_core::fs::{CrashModel, Fault, FaultError, FileSystem, OpKind, SimFs};

#[test]
fn created_instance() {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::builder("created")
        .log_path(dir.path())
        .create()
        .unwrap();
    assert_eq!(inst.state(), InstanceState::Created);
    assert_eq!(code(inst.begin_session()), -1029);
    assert_eq!(code(inst.stop_service()), -1029);
    // Term of a created, never initialized instance succeeds.
    inst.term(TermGrbit::empty()).unwrap();
    inst.init().unwrap();
    assert_eq!(code(inst.init()), -1030);
    inst.term(TermGrbit::empty()).unwrap();
    assert_eq!(inst.state(), InstanceState::Created);
}

#[test]
fn parameters_are_checked() {
    for b in [
        Instance::builder("x").page_size(1000),
        Instance::builder("x").log_file_size_kib(10),
        Instance::builder("x").base_name("toolong"),
        Instance::builder("x").max_sessions(40_000),
        Instance::builder("x").cache_size_max_bytes(10),
    ] {
        assert_eq!(code(b.create()), -1003);
    }
    assert_eq!(code(Instance::builder("").create()), -1002);
}

#[test]
fn failed_init_leaves_the_instance_dead() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    // The log directory cannot be created under a regular file.
    let inst = Instance::builder("dead")
        .log_path(file.join("logs"))
        .create()
        .unwrap();
    assert!(inst.init().is_err());
    assert_eq!(inst.state(), InstanceState::Freed);
    assert_eq!(code(inst.init()), -1115);
    assert_eq!(code(inst.begin_session()), -1115);
    assert_eq!(code(inst.term(TermGrbit::empty())), -1115);
}

#[test]
fn stop_service_refuses_all_but_the_exempt_calls() {
    let (inst, _d) = running_instance("stopped");
    let s = inst.begin_session().unwrap();
    s.begin_transaction().unwrap();
    inst.stop_service().unwrap();
    assert_eq!(code(inst.begin_session()), -1329);
    assert_eq!(code(s.begin_transaction()), -1329);
    assert_eq!(code(s.commit_transaction(CommitGrbit::empty())), -1329);
    assert_eq!(code(s.set_context(1)), -1329);
    // Exempt: rollback, session info, end session; then term.
    assert_eq!(s.transaction_level().unwrap(), 1);
    s.rollback(RollbackGrbit::empty()).unwrap();
    s.end(EndSessionGrbit::empty()).unwrap();
    inst.term(TermGrbit::empty()).unwrap();
}

#[test]
fn dirty_term_returns_dirty_shutdown_and_the_next_init_recovers() {
    let (inst, dir) = running_instance("dirty");
    let s = inst.begin_session().unwrap();
    let path = dir.path().join("d.edb");
    s.create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    assert_eq!(code(inst.term(TermGrbit::DIRTY)), -1116);
    inst.init().unwrap();
    let st = inst.recovery_stats().unwrap();
    assert_eq!(st.databases, 1, "{st:?}");
    let s = inst.begin_session().unwrap();
    s.attach_database(&path, ese::AttachDatabaseGrbit::empty())
        .unwrap();
}

#[test]
fn failed_log_write_makes_the_instance_unavailable() {
    let sim = SimFs::new();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let build = |fs: Arc<dyn FileSystem>| {
        Instance::builder("unavailable")
            .log_path("/log")
            .system_path("/sys")
            .page_size(4096)
            .log_file_size_kib(128)
            .file_system(fs)
            .create()
            .unwrap()
    };
    let inst = build(fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database("/d/t.edb", CreateDatabaseGrbit::empty())
        .unwrap();
    s.create_table(
        db,
        &TableCreate {
            name: "t".into(),
            columns: vec![ColumnDef::new("v", ColumnType::Long)],
            indexes: vec![],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "t").unwrap();
    let v = t.column_id("v").unwrap();
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(v, Some(&5i32.to_le_bytes())).unwrap();
    t.update().unwrap();
    // Every sync fails from now on: the durable commit cannot complete.
    sim.inject_fault(Fault::from_then_on(OpKind::Sync, 0, FaultError::Eio));
    assert!(s.commit_transaction(CommitGrbit::empty()).is_err());
    // ESE's unavailable state: -1090 on every call, including the exempt ones.
    assert_eq!(code(inst.begin_session()), -1090);
    assert_eq!(code(s.begin_transaction()), -1090);
    assert_eq!(code(s.set_context(1)), -1090);
    assert_eq!(code(s.reset_context()), -1090);
    assert_eq!(code(s.end(EndSessionGrbit::empty())), -1090);
    drop(t);
    // Term still works and leaves the database for recovery.
    inst.term(TermGrbit::empty()).unwrap();
    let img = sim.crash(CrashModel::DropAll, 1);
    let again = build(Arc::new(img));
    again.init().unwrap();
    let s = again.begin_session().unwrap();
    s.attach_database("/d/t.edb", ese::AttachDatabaseGrbit::empty())
        .unwrap();
}
