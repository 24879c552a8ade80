//! Data definition through the public API: delete and rename a table, add and delete a
//! column, the table/column/index information calls, the catalog enumeration, duplicate
//! cursors and cursors closed by the rollback of the level they were opened in. Each change
//! is transactional (rolled back → as before), conflicts with other transactions, and
//! survives a crash when committed (and vanishes when not).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{code, running_instance};
use ese::{
    AttachDatabaseGrbit, CodePage, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit,
    CreateDatabaseGrbit, DbId, IndexCreate, IndexGrbit, Instance, Move, Prep, RollbackGrbit,
    Session, Table, TableCreate,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

fn ix(name: &str, key: &str, grbit: IndexGrbit) -> IndexCreate {
    IndexCreate {
        name: name.into(),
        key: key.into(),
        grbit,
        key_most: 0,
    }
}

fn items(name: &str) -> TableCreate {
    TableCreate {
        name: name.into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("label", ColumnType::Text).max_size(40),
            ColumnDef::new("n", ColumnType::Short),
        ],
        indexes: vec![
            ix("pk", "+id\0\0", IndexGrbit::PRIMARY | IndexGrbit::UNIQUE),
            ix("by_label", "+label\0-n\0\0", IndexGrbit::empty()),
        ],
    }
}

fn setup(name: &str) -> (Instance, tempfile::TempDir, Session, DbId) {
    let (inst, dir) = running_instance(name);
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("d.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    (inst, dir, s, db)
}

fn insert(t: &mut Table, id: i32, label: &str) {
    let (idc, lc) = (t.column_id("id").unwrap(), t.column_id("label").unwrap());
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(idc, Some(&id.to_le_bytes())).unwrap();
    t.set_column(lc, Some(label.as_bytes())).unwrap();
    t.update().unwrap();
}

fn fill(s: &Session, db: DbId, name: &str, n: i32) {
    let mut t = s.open_table(db, name).unwrap();
    s.begin_transaction().unwrap();
    for i in 0..n {
        insert(&mut t, i, &format!("label {i:05} {}", "x".repeat(20)));
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
}

/// Values of column `col` of every record in primary-key order.
fn scan(t: &mut Table, col: &str) -> Vec<Option<Vec<u8>>> {
    let c = t.column_id(col).unwrap();
    let mut out = Vec::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        out.push(t.retrieve_column(c).unwrap());
        r = t.move_to(Move::Next);
    }
    assert_eq!(r.unwrap_err().code(), -1603);
    out
}

fn free_pages(s: &Session, db: DbId) -> u32 {
    s.check_database(db).unwrap().free_pages
}

#[test]
fn delete_table_is_transactional_and_frees_the_trees_after_commit() {
    let (_inst, dir, s, db) = setup("ddl-delete");
    s.create_table(db, &items("a")).unwrap();
    s.create_table(db, &items("b")).unwrap();
    fill(&s, db, "a", 400);
    assert_eq!(code(s.delete_table(db, "nope")), -1305);
    // Rolled back: the table and its rows are still there.
    s.begin_transaction().unwrap();
    s.delete_table(db, "A").unwrap();
    assert_eq!(code(s.open_table(db, "a")), -1305);
    assert_eq!(s.table_names(db).unwrap(), ["b"]);
    s.rollback(RollbackGrbit::empty()).unwrap();
    let mut t = s.open_table(db, "a").unwrap();
    assert_eq!(scan(&mut t, "id").len(), 400);
    // A cursor of any session keeps it from being deleted.
    assert_eq!(code(s.delete_table(db, "a")), -1304);
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    assert_eq!(code(other.delete_table(odb, "a")), -1304);
    drop(t);
    // A nested level rolled back forgets the delete; the outer commit keeps what is left.
    s.begin_transaction().unwrap();
    s.begin_transaction().unwrap();
    s.delete_table(db, "a").unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["a", "b"]);
    // A reader whose snapshot predates the delete still sees the table and its rows, and the
    // trees stay allocated until it is done.
    other.begin_transaction().unwrap();
    let before = free_pages(&s, db);
    s.delete_table(db, "a").unwrap();
    assert_eq!(code(s.open_table(db, "a")), -1305);
    assert_eq!(free_pages(&s, db), before);
    {
        let mut old = other.open_table(odb, "a").unwrap();
        assert_eq!(scan(&mut old, "id").len(), 400);
    }
    other.commit_transaction(CommitGrbit::empty()).unwrap();
    let after = free_pages(&s, db);
    assert!(after > before + 5, "pages freed: {before} -> {after}");
    // The name is free again; the new table is empty.
    s.create_table(db, &items("a")).unwrap();
    let mut t = s.open_table(db, "a").unwrap();
    assert!(scan(&mut t, "id").is_empty());
    s.check_database(db).unwrap();
}

#[test]
fn delete_index_frees_its_tree_once_the_table_is_closed() {
    let (_inst, _dir, s, db) = setup("ddl-delete-index");
    s.create_table(db, &items("a")).unwrap();
    fill(&s, db, "a", 300);
    let before = free_pages(&s, db);
    let mut t = s.open_table(db, "a").unwrap();
    t.delete_index("by_label").unwrap();
    assert_eq!(t.index_names(), ["pk"]);
    drop(t);
    // Freed at the next level-0 commit.
    s.begin_transaction().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert!(free_pages(&s, db) > before);
    s.check_database(db).unwrap();
}

#[test]
fn rename_table() {
    let (_inst, _dir, s, db) = setup("ddl-rename");
    s.create_table(db, &items("a")).unwrap();
    s.create_table(db, &items("b")).unwrap();
    fill(&s, db, "a", 10);
    assert_eq!(code(s.rename_table(db, "a", "B")), -1303);
    assert_eq!(code(s.rename_table(db, "zz", "c")), -1305);
    assert_eq!(code(s.rename_table(db, "a", "bad.name")), -1002);
    assert_eq!(code(s.rename_table(db, "a", "")), -1002);
    let t = s.open_table(db, "a").unwrap();
    assert_eq!(code(s.rename_table(db, "a", "c")), -1304);
    drop(t);
    s.begin_transaction().unwrap();
    s.rename_table(db, "a", "c").unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["b", "c"]);
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["a", "b"]);
    s.rename_table(db, "a", "c").unwrap();
    assert_eq!(code(s.open_table(db, "a")), -1305);
    let mut t = s.open_table(db, "C").unwrap();
    assert_eq!(t.name(), "c");
    assert_eq!(scan(&mut t, "id").len(), 10);
    drop(t);
    // A change of case only.
    s.rename_table(db, "c", "Cee").unwrap();
    s.rename_table(db, "cee", "CEE").unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["b", "CEE"]);
    assert_eq!(s.get_table_info(db, "cee").unwrap().name, "CEE");
}

#[test]
fn add_column_existing_records_read_default_or_null() {
    let (_inst, _dir, s, db) = setup("ddl-add-column");
    s.create_table(db, &items("a")).unwrap();
    fill(&s, db, "a", 5);
    let mut t = s.open_table(db, "a").unwrap();
    assert_eq!(
        code(t.add_column(&ColumnDef::new("LABEL", ColumnType::Long))),
        -1508
    );
    assert_eq!(
        code(t.add_column(&ColumnDef::new("bad!", ColumnType::Long))),
        -1002
    );
    // NotNULL without a default on a table with records.
    let nn = ColumnDef::new("req", ColumnType::Long).grbit(ColumnGrbit::NOT_NULL);
    assert_eq!(code(t.add_column(&nn)), -1504);
    let with_default = ColumnDef::new("score", ColumnType::Long)
        .grbit(ColumnGrbit::NOT_NULL)
        .default_value(&42i32.to_le_bytes());
    let score = t.add_column(&with_default).unwrap();
    assert!((1..128).contains(&score), "fixed column id {score}");
    let note = t
        .add_column(&ColumnDef::new("note", ColumnType::Text))
        .unwrap();
    assert!((128..256).contains(&note), "variable column id {note}");
    let tags = t
        .add_column(
            &ColumnDef::new("tags", ColumnType::Binary)
                .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
        )
        .unwrap();
    assert!(tags >= 256, "tagged column id {tags}");
    assert_eq!(t.column_id("score").unwrap(), score);
    assert_eq!(
        scan(&mut t, "score"),
        vec![Some(42i32.to_le_bytes().to_vec()); 5]
    );
    assert_eq!(scan(&mut t, "note"), vec![None; 5]);
    // New records use the column; an old record can be given a value.
    t.move_to(Move::First).unwrap();
    t.prepare_update(Prep::Replace).unwrap_err();
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(note, Some(b"hello")).unwrap();
    t.set_column_itag(tags, Some(b"x"), 0).unwrap();
    t.set_column_itag(tags, Some(b"y"), 0).unwrap();
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    t.move_to(Move::First).unwrap();
    assert_eq!(t.retrieve_column(note).unwrap().unwrap(), b"hello");
    assert_eq!(t.column_value_count(tags).unwrap(), 2);
    // Another cursor sees the new column after it is opened.
    let other = s.open_table(db, "a").unwrap();
    assert_eq!(other.column_id("note").unwrap(), note);
    // Rolled back: the column is gone.
    s.begin_transaction().unwrap();
    let gone = t
        .add_column(&ColumnDef::new("gone", ColumnType::Long))
        .unwrap();
    assert_eq!(t.column_id("gone").unwrap(), gone);
    s.rollback(RollbackGrbit::empty()).unwrap();
    drop(t);
    let t = s.open_table(db, "a").unwrap();
    assert_eq!(code(t.column_id("gone")), -1507);
    assert_eq!(code(t.column_info("gone")), -1507);
    // NotNULL without default on an empty table is fine.
    s.create_table(db, &items("empty")).unwrap();
    let mut e = s.open_table(db, "empty").unwrap();
    e.add_column(&nn).unwrap();
}

#[test]
fn delete_column() {
    let (_inst, _dir, s, db) = setup("ddl-delete-column");
    let mut create = items("a");
    create
        .columns
        .push(ColumnDef::new("extra", ColumnType::LongLong));
    create
        .columns
        .push(ColumnDef::new("memo", ColumnType::LongText).grbit(ColumnGrbit::TAGGED));
    s.create_table(db, &create).unwrap();
    let mut t = s.open_table(db, "a").unwrap();
    let (extra, memo) = (t.column_id("extra").unwrap(), t.column_id("memo").unwrap());
    s.begin_transaction().unwrap();
    for i in 0..3 {
        insert(&mut t, i, "l");
        t.move_to(Move::Last).unwrap();
        t.prepare_update(Prep::Replace).unwrap();
        t.set_column(extra, Some(&7i64.to_le_bytes())).unwrap();
        t.set_column(memo, Some(b"memo text")).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(code(t.delete_column("nope")), -1507);
    assert_eq!(code(t.delete_column("id")), -1046);
    assert_eq!(code(t.delete_column("n")), -1046);
    // Rolled back: still there.
    s.begin_transaction().unwrap();
    t.delete_column("extra").unwrap();
    assert_eq!(code(t.column_id("extra")), -1507);
    s.rollback(RollbackGrbit::empty()).unwrap();
    drop(t);
    let mut t = s.open_table(db, "a").unwrap();
    assert_eq!(scan(&mut t, "extra").len(), 3);
    t.delete_column("extra").unwrap();
    t.delete_column("MEMO").unwrap();
    assert_eq!(code(t.column_id("extra")), -1507);
    t.move_to(Move::First).unwrap();
    assert_eq!(code(t.retrieve_column(extra)), -1507);
    // The name can be used again; the new column does not show the old values.
    let extra2 = t
        .add_column(&ColumnDef::new("extra", ColumnType::LongLong))
        .unwrap();
    assert_ne!(extra2, extra);
    assert_eq!(scan(&mut t, "extra"), vec![None; 3]);
    // Records written before the delete still update and read.
    t.move_to(Move::First).unwrap();
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(extra2, Some(&1i64.to_le_bytes())).unwrap();
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(scan(&mut t, "extra")[0], Some(1i64.to_le_bytes().to_vec()));
    let names: Vec<String> = t.columns().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["id", "n", "extra", "label"]);
    s.check_database(db).unwrap();
}

#[test]
fn table_column_and_index_info() {
    let (_inst, dir, s, db) = setup("ddl-info");
    let mut create = items("things");
    create.columns.push(
        ColumnDef::new("name", ColumnType::Text)
            .max_size(100)
            .code_page(CodePage::Unicode)
            .default_value(b"n\0"),
    );
    s.create_table(db, &create).unwrap();
    s.create_table(db, &items("Alpha")).unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["Alpha", "things"]);
    fill(&s, db, "things", 250);
    let info = s.get_table_info(db, "THINGS").unwrap();
    assert_eq!(info.name, "things");
    assert_eq!(info.records, 250);
    assert_eq!(info.columns, 4);
    assert_eq!(info.indexes, 2);
    assert!(!info.template && !info.temporary);
    assert!(info.pages_owned >= 4, "pages owned {}", info.pages_owned);
    assert_eq!(code(s.get_table_info(db, "none")), -1305);
    // A transaction sees its own inserts in the count; another session does not.
    let mut t = s.open_table(db, "things").unwrap();
    s.begin_transaction().unwrap();
    insert(&mut t, 1000, "new");
    assert_eq!(t.table_info().unwrap().records, 251);
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    assert_eq!(other.get_table_info(odb, "things").unwrap().records, 250);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    let c = t.column_info("NAME").unwrap();
    assert_eq!(c.name, "name");
    assert_eq!(c.coltyp, ColumnType::Text);
    assert_eq!(c.max_size, 100);
    assert_eq!(c.code_page, CodePage::Unicode);
    assert_eq!(c.default.as_deref(), Some(&b"n\0"[..]));
    assert_eq!(c.id, t.column_id("name").unwrap());
    let id = t.column_info("id").unwrap();
    assert_eq!((id.coltyp, id.max_size), (ColumnType::Long, 4));
    assert_eq!(code(t.column_info("x")), -1507);
    let cols = t.columns().unwrap();
    assert_eq!(cols.len(), 4);
    assert!(cols.windows(2).all(|w| w[0].id < w[1].id));
    let pk = t.index_info("PK").unwrap();
    assert!(pk.primary && pk.unique);
    assert_eq!(pk.segments.len(), 1);
    assert_eq!(pk.segments[0].column, "id");
    let by = t.index_info("by_label").unwrap();
    assert!(!by.primary && !by.unique);
    assert_eq!(by.key_most, 255);
    let segs: Vec<(&str, bool)> = by
        .segments
        .iter()
        .map(|s| (s.column.as_str(), s.descending))
        .collect();
    assert_eq!(segs, [("label", false), ("n", true)]);
    assert_eq!(code(t.index_info("none")), -1404);
    let names: Vec<String> = t.indexes().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["pk", "by_label"]);
}

#[test]
fn dup_cursor_is_on_the_first_record_of_the_clustered_index() {
    let (_inst, _dir, s, db) = setup("ddl-dup");
    s.create_table(db, &items("a")).unwrap();
    s.create_table(db, &items("empty")).unwrap();
    fill(&s, db, "a", 5);
    let mut t = s.open_table(db, "a").unwrap();
    let (id, label) = (t.column_id("id").unwrap(), t.column_id("label").unwrap());
    t.set_current_index(Some("by_label")).unwrap();
    t.move_to(Move::Last).unwrap();
    t.prepare_update(Prep::Insert).unwrap();
    let mut d = t.dup_cursor().unwrap();
    // ESE: the duplicate is on the clustered index, on the first row, with no prepared
    // update and no search key.
    assert_eq!(d.current_index(), "pk");
    assert_eq!(d.retrieve_column(id).unwrap().unwrap(), 0i32.to_le_bytes());
    assert_eq!(code(d.update()), -1609);
    assert_eq!(code(d.seek_key(ese::Seek::Eq)), -1608);
    d.move_to(Move::Next).unwrap();
    assert_eq!(d.retrieve_column(id).unwrap().unwrap(), 1i32.to_le_bytes());
    // The original keeps its index, position and prepared update.
    assert_eq!(t.current_index(), "by_label");
    t.prepare_update(Prep::Cancel).unwrap();
    assert_eq!(
        t.retrieve_column(label).unwrap().unwrap(),
        format!("label {:05} {}", 4, "x".repeat(20)).as_bytes()
    );
    // On an empty table the duplicate is on no record.
    let e = s.open_table(db, "empty").unwrap();
    let mut de = e.dup_cursor().unwrap();
    assert_eq!(code(de.retrieve_column(id)), -1603);
    assert_eq!(code(de.move_to(Move::Next)), -1603);
    drop((t, e, de));
    // The duplicate alone keeps the table in use.
    assert_eq!(code(s.delete_table(db, "a")), -1304);
    drop(d);
    s.delete_table(db, "a").unwrap();
}

#[test]
fn a_cursor_opened_in_a_rolled_back_level_is_closed() {
    let (_inst, dir, s, db) = setup("ddl-cursor-levels");
    s.create_table(db, &items("a")).unwrap();
    fill(&s, db, "a", 3);
    let mut outside = s.open_table(db, "a").unwrap();
    s.begin_transaction().unwrap();
    let mut level1 = s.open_table(db, "a").unwrap();
    s.begin_transaction().unwrap();
    let mut level2 = s.open_table(db, "a").unwrap();
    let dup2 = level1.dup_cursor().unwrap();
    level2.move_to(Move::First).unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(code(level2.move_to(Move::Next)), -1310);
    assert_eq!(code(level2.retrieve_column(1)), -1310);
    assert_eq!(code(level2.prepare_update(Prep::Insert)), -1310);
    assert_eq!(code(dup2.dup_cursor()), -1310);
    assert_eq!(code(dup2.table_info()), -1310);
    level1.move_to(Move::First).unwrap();
    // A level committed into its parent hands its cursors down: they close with the parent.
    s.begin_transaction().unwrap();
    let mut committed_in = s.open_table(db, "a").unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    committed_in.move_to(Move::First).unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(code(committed_in.move_to(Move::First)), -1310);
    assert_eq!(code(level1.move_to(Move::First)), -1310);
    outside.move_to(Move::First).unwrap();
    // A cursor of a committed transaction lives on.
    s.begin_transaction().unwrap();
    let mut kept = s.open_table(db, "a").unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    s.begin_transaction().unwrap();
    s.rollback(RollbackGrbit::empty()).unwrap();
    kept.move_to(Move::First).unwrap();
    // Closed cursors do not keep the table in use; open ones do.
    assert_eq!(code(s.delete_table(db, "a")), -1304);
    drop((outside, kept));
    s.delete_table(db, "a").unwrap();
    drop((level1, level2, dup2, committed_in));
    // Ending a session closes its cursors, opened in a transaction or not.
    s.create_table(db, &items("b")).unwrap();
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    let mut plain = other.open_table(odb, "b").unwrap();
    other.begin_transaction().unwrap();
    let _in_trx = other.open_table(odb, "b").unwrap();
    assert_eq!(code(s.delete_table(db, "b")), -1304);
    other.end(ese::EndSessionGrbit::empty()).unwrap();
    assert_eq!(code(plain.move_to(Move::First)), -1104);
    s.delete_table(db, "b").unwrap();
}

const DB: &str = "/data/ddl.edb";

fn sim_instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("ddl-crash")
        .system_path("/sys")
        .log_path("/log")
        .page_size(4096)
        .log_file_size_kib(128)
        .file_system(fsd)
        .create()
        .unwrap()
}

#[test]
fn committed_ddl_survives_a_crash_and_uncommitted_ddl_does_not() {
    let fs = SimFs::new();
    let inst = sim_instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    for n in ["gone", "renamed", "altered", "kept"] {
        s.create_table(db, &items(n)).unwrap();
        fill(&s, db, n, 50);
    }
    // Committed (durably): a delete, a rename, an added and a deleted column.
    s.begin_transaction().unwrap();
    s.delete_table(db, "gone").unwrap();
    s.rename_table(db, "renamed", "moved").unwrap();
    {
        let mut t = s.open_table(db, "altered").unwrap();
        t.add_column(&ColumnDef::new("extra", ColumnType::Long).default_value(&5i32.to_le_bytes()))
            .unwrap();
        t.delete_column("label").unwrap_err();
        t.delete_index("by_label").unwrap();
        t.delete_column("label").unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // Not committed at the crash: a delete, a rename, an added column.
    s.begin_transaction().unwrap();
    s.delete_table(db, "kept").unwrap();
    s.rename_table(db, "moved", "moved2").unwrap();
    {
        let mut t = s.open_table(db, "altered").unwrap();
        t.add_column(&ColumnDef::new("uncommitted", ColumnType::Long))
            .unwrap();
    }
    let img = fs.crash(CrashModel::DropAll, 0);
    fs.set_power_cut(Some(0));
    drop(s);
    drop(inst);

    let inst = sim_instance(&img);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["altered", "kept", "moved"]);
    let mut t = s.open_table(db, "altered").unwrap();
    assert_eq!(code(t.column_id("label")), -1507);
    assert_eq!(code(t.column_id("uncommitted")), -1507);
    assert_eq!(t.index_names(), ["pk"]);
    assert_eq!(
        scan(&mut t, "extra"),
        vec![Some(5i32.to_le_bytes().to_vec()); 50]
    );
    let mut m = s.open_table(db, "moved").unwrap();
    assert_eq!(scan(&mut m, "id").len(), 50);
    assert_eq!(s.get_table_info(db, "kept").unwrap().records, 50);
    s.check_database(db).unwrap();
    // DDL goes on after recovery.
    drop((t, m));
    s.delete_table(db, "moved").unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["altered", "kept"]);
    s.check_database(db).unwrap();
}

#[test]
fn attach_frees_the_trees_no_catalog_record_names() {
    let (_inst, dir, s, db) = setup("ddl-sweep");
    let path = dir.path().join("d.edb");
    s.create_table(db, &items("kept")).unwrap();
    fill(&s, db, "kept", 100);
    let start = free_pages(&s, db);
    // A table (with a secondary index) created and filled in a transaction that rolls back:
    // its trees stay allocated, unnamed.
    s.begin_transaction().unwrap();
    s.create_table(db, &items("rolled_back")).unwrap();
    let mut t = s.open_table(db, "rolled_back").unwrap();
    for i in 0..300 {
        insert(&mut t, i, &format!("{i:05}{}", "y".repeat(30)));
    }
    drop(t);
    s.rollback(RollbackGrbit::empty()).unwrap();
    let trees_before = s.check_database(db).unwrap().trees.len();
    // Attaching again frees them.
    s.close_database(db).unwrap();
    s.detach_database(&path).unwrap();
    s.attach_database(&path, AttachDatabaseGrbit::empty())
        .unwrap();
    let db = s.open_database(&path).unwrap();
    let report = s.check_database(db).unwrap();
    assert_eq!(
        report.trees.len(),
        trees_before - 2,
        "table and index trees"
    );
    assert!(
        report.free_pages > start + 5,
        "free pages {start} -> {}",
        report.free_pages
    );
    let mut t = s.open_table(db, "kept").unwrap();
    assert_eq!(scan(&mut t, "id").len(), 100);
    assert_eq!(t.index_info("by_label").unwrap().segments.len(), 2);
    t.set_current_index(Some("by_label")).unwrap();
    assert_eq!(scan(&mut t, "id").len(), 100);
}

#[test]
fn trees_of_a_deletion_cut_short_by_a_crash_are_freed_at_the_next_attach() {
    let fs = SimFs::new();
    let inst = sim_instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &items("big")).unwrap();
    s.create_table(db, &items("small")).unwrap();
    fill(&s, db, "big", 400);
    fill(&s, db, "small", 3);
    let trees = s.check_database(db).unwrap().trees.len();
    // An old snapshot keeps the deleted table's trees allocated past the commit.
    let reader = inst.begin_session().unwrap();
    reader.begin_transaction().unwrap();
    s.delete_table(db, "big").unwrap();
    assert_eq!(s.check_database(db).unwrap().trees.len(), trees);
    let img = fs.crash(CrashModel::DropAll, 0);
    fs.set_power_cut(Some(0));
    drop((s, reader));
    drop(inst);

    let inst = sim_instance(&img);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
    let db = s.open_database(DB).unwrap();
    assert_eq!(s.table_names(db).unwrap(), ["small"]);
    let report = s.check_database(db).unwrap();
    assert_eq!(report.trees.len(), trees - 2);
    assert!(report.free_pages > 10, "free pages {}", report.free_pages);
    let mut t = s.open_table(db, "small").unwrap();
    assert_eq!(scan(&mut t, "id").len(), 3);
}

#[test]
fn ddl_conflicts_with_another_transactions_changes() {
    let (_inst, dir, s, db) = setup("ddl-conflicts");
    s.create_table(db, &items("a")).unwrap();
    fill(&s, db, "a", 3);
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    // Another transaction has an uncommitted insert: DDL on the table conflicts.
    let mut ot = other.open_table(odb, "a").unwrap();
    other.begin_transaction().unwrap();
    insert(&mut ot, 100, "other");
    let mut t = s.open_table(db, "a").unwrap();
    s.begin_transaction().unwrap();
    assert_eq!(
        code(t.add_column(&ColumnDef::new("x", ColumnType::Long))),
        -1102
    );
    assert_eq!(code(t.delete_index("by_label")), -1102);
    s.rollback(RollbackGrbit::empty()).unwrap();
    other.commit_transaction(CommitGrbit::empty()).unwrap();
    drop(ot);
    // The other way round: uncommitted DDL blocks another transaction's writes.
    s.begin_transaction().unwrap();
    t.add_column(&ColumnDef::new("x", ColumnType::Long))
        .unwrap();
    let mut ot = other.open_table(odb, "a").unwrap();
    other.begin_transaction().unwrap();
    ot.prepare_update(Prep::Insert).unwrap();
    ot.set_column(ot.column_id("id").unwrap(), Some(&200i32.to_le_bytes()))
        .unwrap();
    assert_eq!(code(ot.update()), -1102);
    other.rollback(RollbackGrbit::empty()).unwrap();
    drop(ot);
    // A delete of the table conflicts with another transaction's lock on it too.
    drop(t);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    let mut ot = other.open_table(odb, "a").unwrap();
    other.begin_transaction().unwrap();
    insert(&mut ot, 300, "locks the definition");
    drop(ot);
    assert_eq!(code(s.delete_table(db, "a")), -1102);
    assert_eq!(code(s.rename_table(db, "a", "b")), -1102);
    other.commit_transaction(CommitGrbit::empty()).unwrap();
    s.rename_table(db, "a", "b").unwrap();
    s.delete_table(db, "b").unwrap();
    assert!(s.table_names(db).unwrap().is_empty());
}

/// What the crash sweep compares: per table (in catalog order) its name, its columns (name,
/// type), its indexes and its record count.
type Summary = Vec<(String, Vec<(String, ColumnType)>, Vec<String>, u64)>;

fn summary(s: &Session, db: DbId) -> ese::Result<Summary> {
    let mut out = Vec::new();
    for name in s.table_names(db)? {
        let t = s.open_table(db, &name)?;
        let cols = t
            .columns()?
            .into_iter()
            .map(|c| (c.name, c.coltyp))
            .collect();
        let ixs = t.indexes()?.into_iter().map(|i| i.name).collect();
        out.push((name, cols, ixs, t.table_info()?.records));
    }
    Ok(out)
}

/// One step of [`ddl_workload`].
type Step<'a> = dyn Fn(&Session) -> ese::Result<()> + 'a;

/// A DDL workload, one durable commit per step, with checkpoints between. Returns the summary after each commit, the
/// summary the commit in progress at the power cut would have made (if one was), and whether
/// the workload ended early.
fn ddl_workload(s: &Session, db: DbId) -> (Vec<Summary>, Option<Summary>, bool) {
    let mut states = vec![summary(s, db).unwrap()];
    let mut in_flight = None;
    let steps: Vec<Box<Step<'_>>> = vec![
        Box::new(|s| s.create_table(db, &items("t1"))),
        Box::new(|s| {
            let mut t = s.open_table(db, "t1")?;
            for i in 0i32..60 {
                let (idc, lc) = (t.column_id("id")?, t.column_id("label")?);
                t.prepare_update(Prep::Insert)?;
                t.set_column(idc, Some(&i.to_le_bytes()))?;
                t.set_column(lc, Some(format!("row {i} {}", "z".repeat(30)).as_bytes()))?;
                t.update()?;
            }
            Ok(())
        }),
        Box::new(|s| s.create_table(db, &items("t2"))),
        Box::new(|s| {
            let mut t = s.open_table(db, "t1")?;
            t.add_column(&ColumnDef::new("extra", ColumnType::LongLong))
                .map(drop)
        }),
        Box::new(|s| s.rename_table(db, "t2", "t3")),
        Box::new(|s| {
            let mut t = s.open_table(db, "t1")?;
            t.create_index(&ix("by_n", "+n\0+id\0\0", IndexGrbit::empty()))
        }),
        Box::new(|s| s.open_table(db, "t1")?.delete_index("by_label")),
        Box::new(|s| s.open_table(db, "t1")?.delete_column("label")),
        Box::new(|s| s.delete_table(db, "t3")),
        Box::new(|s| s.create_table(db, &items("t4"))),
        Box::new(|s| {
            s.delete_table(db, "t1")?;
            s.begin_transaction()?;
            s.rename_table(db, "t4", "t5")?;
            s.rollback(RollbackGrbit::empty())
        }),
    ];
    for (n, step) in steps.iter().enumerate() {
        let r = (|| {
            if n % 3 == 2 {
                // Pages reach the database file too, not only the log.
                s.instance().checkpoint_now()?;
            }
            s.begin_transaction()?;
            step(s)?;
            // The state this commit makes, read inside the transaction.
            in_flight = Some(summary(s, db)?);
            s.commit_transaction(CommitGrbit::empty())
        })();
        match r {
            Ok(()) => {
                states.push(in_flight.take().unwrap());
            }
            Err(_) => return (states, in_flight, true),
        }
    }
    (states, None, false)
}

#[test]
fn ddl_recovers_at_every_crash_point() {
    let base = SimFs::new();
    {
        let inst = sim_instance(&base);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
        s.close_database(db).unwrap();
        inst.term(ese::TermGrbit::empty()).unwrap();
    }
    let run = |cut: Option<u64>| {
        let fs = base.crash(CrashModel::DropAll, 0);
        let inst = sim_instance(&fs);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
        let db = s.open_database(DB).unwrap();
        let start = fs.op_count();
        if let Some(k) = cut {
            fs.set_power_cut(Some(start + k));
        }
        let (states, in_flight, cut_short) = ddl_workload(&s, db);
        let used = fs.op_count() - start;
        fs.set_power_cut(Some(0));
        drop(s);
        drop(inst);
        (fs, states, in_flight, cut_short, used)
    };
    let (_, whole, _, cut_short, total) = run(None);
    assert!(!cut_short && whole.len() == 12, "the workload runs");
    let step = (total / 60).max(1);
    let mut images = 0;
    let mut k = 0;
    while k < total {
        let (fs, states, in_flight, _, _) = run(Some(k));
        for model in CrashModel::ALL {
            let what = format!("cut {k}/{total} {model:?}");
            let img = fs.crash(model, k);
            let inst = sim_instance(&img);
            inst.init()
                .unwrap_or_else(|e| panic!("{what}: recovery: {e}"));
            let s = inst.begin_session().unwrap();
            s.attach_database(DB, AttachDatabaseGrbit::empty())
                .unwrap_or_else(|e| panic!("{what}: attach: {e}"));
            let db = s.open_database(DB).unwrap();
            let got = summary(&s, db).unwrap_or_else(|e| panic!("{what}: reading: {e}"));
            let last = states.last().unwrap();
            assert!(
                &got == last || in_flight.as_ref() == Some(&got),
                "{what}: recovered {got:?}\nlast commit {last:?}\nin flight {in_flight:?}"
            );
            s.check_database(db)
                .unwrap_or_else(|e| panic!("{what}: integrity: {e}"));
            images += 1;
        }
        k += step;
    }
    println!("DDL crash sweep: {images} crash images over {total} I/O operations");
    assert!(images > 100);
}

#[test]
fn add_column_definition_errors_and_area_limits() {
    let (_inst, _dir, s, db) = setup("ddl-add-limits");
    s.create_table(db, &items("a")).unwrap();
    let mut t = s.open_table(db, "a").unwrap();
    let auto = |n: &str| ColumnDef::new(n, ColumnType::Long).grbit(ColumnGrbit::AUTOINCREMENT);
    t.add_column(&auto("counter")).unwrap();
    assert_eq!(code(t.add_column(&auto("counter2"))), -1510);
    let tagged_nn =
        ColumnDef::new("tn", ColumnType::Binary).grbit(ColumnGrbit::TAGGED | ColumnGrbit::NOT_NULL);
    assert_eq!(code(t.add_column(&tagged_nn)), -1514);
    let mv_fixed = ColumnDef::new("mf", ColumnType::Long)
        .grbit(ColumnGrbit::FIXED | ColumnGrbit::MULTI_VALUED);
    assert_eq!(code(t.add_column(&mv_fixed)), -1509);
    // The fixed area holds ids 1 to 127: the table has 3 fixed columns (id, n, counter).
    for i in 0..124 {
        t.add_column(&ColumnDef::new(&format!("f{i}"), ColumnType::UnsignedByte))
            .unwrap();
    }
    assert_eq!(t.column_id("f123").unwrap(), 127);
    assert_eq!(
        code(t.add_column(&ColumnDef::new("one_more", ColumnType::UnsignedByte))),
        -1040
    );
    // Deleting a column does not give its id back.
    t.delete_column("f0").unwrap();
    assert_eq!(
        code(t.add_column(&ColumnDef::new("one_more", ColumnType::UnsignedByte))),
        -1040
    );
    // Other areas still have room.
    let v = t
        .add_column(&ColumnDef::new("var", ColumnType::Binary))
        .unwrap();
    assert!((128..256).contains(&v));
    // Records with every fixed column still round-trip.
    s.begin_transaction().unwrap();
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(t.column_id("id").unwrap(), Some(&1i32.to_le_bytes()))
        .unwrap();
    t.set_column(127, Some(&[9])).unwrap();
    t.update().unwrap();
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    t.move_to(Move::First).unwrap();
    assert_eq!(t.retrieve_column(127).unwrap(), Some(vec![9]));
    assert_eq!(
        t.retrieve_column(t.column_id("f50").unwrap()).unwrap(),
        None
    );
    assert_eq!(t.columns().unwrap().len(), 3 + 1 + 123 + 1);
}

/// A cursor checks its table's definition once per transaction; DDL of the same transaction
/// through another cursor (a new NotNULL column, a new unique index, a deleted index) must
/// still reach its next update.
#[test]
fn ddl_through_another_cursor_reaches_the_next_update_in_the_same_transaction() {
    let (_inst, _dir, s, db) = setup("ddl-sync-def");
    s.create_table(db, &items("t")).unwrap();
    let mut a = s.open_table(db, "t").unwrap();
    let mut b = s.open_table(db, "t").unwrap();
    s.begin_transaction().unwrap();
    // The first update checks (and locks) the definition.
    insert(&mut a, 1, "one");
    // A NotNULL column with a default value, added through `b` (the table has a record,
    // so the column needs the default).
    let must = b
        .add_column(
            &ColumnDef::new("must", ColumnType::Long)
                .grbit(ColumnGrbit::NOT_NULL | ColumnGrbit::FIXED)
                .default_value(&7i32.to_le_bytes()),
        )
        .unwrap();
    // `a` learns of the column at its next update: the record gets the default value.
    insert(&mut a, 2, "two");
    let mc = a.column_id("must").unwrap();
    assert_eq!(mc, must);
    assert_eq!(
        a.retrieve_column(mc).unwrap(),
        Some(7i32.to_le_bytes().to_vec())
    );
    // A unique index created through `b`: an update through `a` maintains it, so a duplicate
    // label is refused and a new one is indexed.
    b.create_index(&ix("u_label", "+label\0\0", IndexGrbit::UNIQUE))
        .unwrap();
    assert_eq!(
        code({
            let (idc, lc) = (a.column_id("id").unwrap(), a.column_id("label").unwrap());
            a.prepare_update(Prep::Insert).unwrap();
            a.set_column(idc, Some(&3i32.to_le_bytes())).unwrap();
            a.set_column(lc, Some(b"two")).unwrap();
            a.update()
        }),
        -1605
    );
    a.prepare_update(Prep::Cancel).unwrap();
    insert(&mut a, 4, "four");
    b.set_current_index(Some("u_label")).unwrap();
    let labels: Vec<_> = scan(&mut b, "label").into_iter().flatten().collect();
    assert_eq!(labels, [b"four".to_vec(), b"one".to_vec(), b"two".to_vec()]);
    // The index deleted through `b`: updates through `a` no longer maintain it (a label that
    // would have been a duplicate is accepted).
    b.set_current_index(None).unwrap();
    b.delete_index("u_label").unwrap();
    insert(&mut a, 5, "four");
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(scan(&mut a, "id").len(), 4);
    s.check_database(db).unwrap();
}

/// The read lock a cursor's first update takes on the table's catalog record is released
/// when the level it was taken in rolls back: the next update must take it again, so other
/// transactions' DDL on the table conflicts until this transaction ends.
#[test]
fn definition_lock_released_by_a_level_rollback_is_taken_again() {
    let (_inst, dir, s, db) = setup("ddl-sync-def-rollback");
    s.create_table(db, &items("t")).unwrap();
    let mut a = s.open_table(db, "t").unwrap();
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    s.begin_transaction().unwrap();
    s.begin_transaction().unwrap();
    insert(&mut a, 1, "one");
    s.rollback(RollbackGrbit::empty()).unwrap();
    // Level 1 again: the lock went with the rolled-back level.
    insert(&mut a, 2, "two");
    let mut ot = other.open_table(odb, "t").unwrap();
    assert_eq!(
        code(ot.add_column(&ColumnDef::new("extra", ColumnType::Long))),
        -1102,
        "DDL of another transaction must conflict with the table's definition lock"
    );
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    ot.add_column(&ColumnDef::new("extra", ColumnType::Long))
        .unwrap();
    assert_eq!(scan(&mut a, "id").len(), 1);
}

/// A cursor's definition check in a later transaction (which may skip reading the catalog
/// record when no catalog write happened since its last check) still sees DDL committed in
/// between by another session, and does not keep a definition that the transaction which
/// wrote it rolled back; and it still takes the lock DDL conflicts with.
#[test]
fn definition_checks_of_later_transactions_see_ddl_in_between() {
    let (_inst, dir, s, db) = setup("ddl-sync-def-later");
    s.create_table(db, &items("t")).unwrap();
    let mut a = s.open_table(db, "t").unwrap();
    let other = s.dup().unwrap();
    let odb = other.open_database(dir.path().join("d.edb")).unwrap();
    s.begin_transaction().unwrap();
    insert(&mut a, 1, "one");
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // No DDL since: the next transaction's check takes the lock, and another session's DDL
    // conflicts with it.
    s.begin_transaction().unwrap();
    insert(&mut a, 2, "two");
    let mut ot = other.open_table(odb, "t").unwrap();
    assert_eq!(
        code(ot.add_column(&ColumnDef::new("late", ColumnType::Long))),
        -1102
    );
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // A column added and committed by another session: the next update through `a` knows it.
    ot.add_column(&ColumnDef::new("extra", ColumnType::Long))
        .unwrap();
    drop(ot);
    s.begin_transaction().unwrap();
    insert(&mut a, 3, "three");
    assert!(a.column_id("extra").is_ok(), "the committed column is seen");
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // A column added through `a` in a transaction that then rolls back: the next
    // transaction's update through `a` no longer has it.
    s.begin_transaction().unwrap();
    a.add_column(&ColumnDef::new("gone", ColumnType::Long))
        .unwrap();
    insert(&mut a, 4, "four");
    assert!(a.column_id("gone").is_ok());
    s.rollback(RollbackGrbit::empty()).unwrap();
    s.begin_transaction().unwrap();
    insert(&mut a, 5, "five");
    assert_eq!(
        code(a.column_id("gone")),
        -1507,
        "the rolled-back column is not kept"
    );
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(scan(&mut a, "id").len(), 4);
}
