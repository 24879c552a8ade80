//! Secondary indexes through the public API: index maintenance inside updates and deletes,
//! rollback, create/delete index over existing rows, make key / seek / index ranges, retrieve
//! key, secondary index bookmarks and retrieve-from-index, the definition errors; a model test
//! of random concurrent transactions on a table with several secondary indexes over every
//! column type; and a race of 8 sessions on a unique index.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{code, running_instance};
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, IndexCreate,
    IndexGrbit, IndexRangeGrbit, MakeKeyGrbit, Move, Prep, RetrieveKeyGrbit, RollbackGrbit, Seek,
    SeekResult, Session, SetCurrentIndexGrbit, Table, TableCreate,
};

fn ix(name: &str, key: &str, grbit: IndexGrbit) -> IndexCreate {
    IndexCreate {
        name: name.into(),
        key: key.into(),
        grbit,
        key_most: 0,
    }
}

fn people() -> TableCreate {
    TableCreate {
        name: "people".into(),
        columns: vec![
            ColumnDef::new("id", ColumnType::Long),
            ColumnDef::new("name", ColumnType::Text).max_size(64),
            ColumnDef::new("age", ColumnType::Short),
            ColumnDef::new("email", ColumnType::Text).max_size(64),
            ColumnDef::new("tags", ColumnType::Text)
                .grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
        ],
        indexes: vec![
            ix("pk", "+id\0\0", IndexGrbit::PRIMARY | IndexGrbit::UNIQUE),
            ix("by_name", "+name\0-age\0\0", IndexGrbit::empty()),
            ix(
                "by_email",
                "+email\0\0",
                IndexGrbit::UNIQUE | IndexGrbit::IGNORE_NULL,
            ),
            ix("by_tag", "+tags\0\0", IndexGrbit::IGNORE_NULL),
        ],
    }
}

fn setup(name: &str) -> (ese::Instance, tempfile::TempDir, Session, DbId) {
    let (inst, dir) = running_instance(name);
    let s = inst.begin_session().unwrap();
    let db = s
        .create_database(dir.path().join("d.edb"), CreateDatabaseGrbit::empty())
        .unwrap();
    (inst, dir, s, db)
}

fn insert(t: &mut Table, id: i32, name: &str, age: i16, email: Option<&str>, tags: &[&str]) {
    try_insert(t, id, name, age, email, tags).unwrap();
}

fn try_insert(
    t: &mut Table,
    id: i32,
    name: &str,
    age: i16,
    email: Option<&str>,
    tags: &[&str],
) -> ese::Result<Vec<u8>> {
    let c = |n: &str| t.column_id(n).unwrap();
    let (ic, nc, ac, ec, tc) = (c("id"), c("name"), c("age"), c("email"), c("tags"));
    t.prepare_update(Prep::Insert)?;
    t.set_column(ic, Some(&id.to_le_bytes()))?;
    t.set_column(nc, Some(name.as_bytes()))?;
    t.set_column(ac, Some(&age.to_le_bytes()))?;
    t.set_column(ec, email.map(str::as_bytes))?;
    for tag in tags {
        t.set_column_itag(tc, Some(tag.as_bytes()), 0)?;
    }
    let r = t.update();
    if r.is_err() {
        t.prepare_update(Prep::Cancel)?;
    }
    r
}

/// The ids of the records, walking the current index from first to last.
fn walk(t: &mut Table) -> Vec<i32> {
    let id = t.column_id("id").unwrap();
    let mut out = Vec::new();
    if t.move_to(Move::First).is_err() {
        return out;
    }
    loop {
        let v = t.retrieve_column(id).unwrap().unwrap();
        out.push(i32::from_le_bytes(v.try_into().unwrap()));
        if t.move_to(Move::Next).is_err() {
            return out;
        }
    }
}

fn walk_back(t: &mut Table) -> Vec<i32> {
    let id = t.column_id("id").unwrap();
    let mut out = Vec::new();
    if t.move_to(Move::Last).is_err() {
        return out;
    }
    loop {
        let v = t.retrieve_column(id).unwrap().unwrap();
        out.push(i32::from_le_bytes(v.try_into().unwrap()));
        if t.move_to(Move::Previous).is_err() {
            return out;
        }
    }
}

/// The ids of `(key, id)` pairs in key order.
fn order<K: Ord>(mut v: Vec<(K, i32)>) -> Vec<i32> {
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

fn cur_id(t: &Table) -> i32 {
    let id = t.column_id("id").unwrap();
    i32::from_le_bytes(t.retrieve_column(id).unwrap().unwrap().try_into().unwrap())
}

#[test]
fn entries_follow_inserts_replaces_deletes_and_rollback() {
    let (_inst, _dir, s, db) = setup("ix-maintain");
    s.create_table(db, &people()).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    s.begin_transaction().unwrap();
    insert(&mut t, 1, "carol", 30, Some("c@x"), &["b", "a"]);
    insert(&mut t, 2, "alice", 40, None, &[]);
    insert(&mut t, 3, "Bob", 20, Some("b@x"), &["a"]);
    insert(&mut t, 4, "alice", 50, Some("a@x"), &["c"]);
    s.commit_transaction(CommitGrbit::empty()).unwrap();

    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(t.current_index(), "by_name");
    // Names ascending (case-insensitive), ages descending.
    assert_eq!(walk(&mut t), [4, 2, 3, 1]);
    assert_eq!(walk_back(&mut t), [1, 3, 2, 4]);
    t.set_current_index(Some("by_email")).unwrap();
    // The null email is left out (IgnoreNull).
    assert_eq!(walk(&mut t), [4, 3, 1]);
    t.set_current_index(Some("BY_TAG")).unwrap();
    // One entry per value of the multi-valued column: a(1), a(3), b(1), c(4).
    assert_eq!(walk(&mut t), [1, 3, 1, 4]);

    // A unique violation fails the whole update: no record, no entry.
    assert_eq!(
        code(try_insert(&mut t, 5, "dave", 1, Some("B@X"), &["z"])),
        -1605
    );
    t.set_current_index(None).unwrap();
    assert_eq!(walk(&mut t), [1, 2, 3, 4]);
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(walk(&mut t), [1, 3, 1, 4]);

    // Replace moves entries; rollback restores them.
    s.begin_transaction().unwrap();
    t.set_current_index(None).unwrap();
    t.seek(&[Some(&1i32.to_le_bytes())], Seek::Eq).unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    let (nc, tc, ec) = (
        t.column_id("name").unwrap(),
        t.column_id("tags").unwrap(),
        t.column_id("email").unwrap(),
    );
    t.set_column(nc, Some(b"aaron")).unwrap();
    t.set_column_itag(tc, None, 1).unwrap(); // drops "b": tags = [a]
    t.set_column(ec, Some(b"new@x")).unwrap();
    t.update().unwrap();
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [1, 4, 2, 3]);
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(walk(&mut t), [1, 3, 4]);
    // The old email is free again inside the transaction, the new one taken.
    assert_eq!(
        code(try_insert(&mut t, 6, "x", 1, Some("new@x"), &[])),
        -1605
    );
    insert(&mut t, 6, "x", 1, Some("c@x"), &[]);
    s.rollback(RollbackGrbit::empty()).unwrap();
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [4, 2, 3, 1]);
    t.set_current_index(Some("by_email")).unwrap();
    assert_eq!(walk(&mut t), [4, 3, 1]);
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(walk(&mut t), [1, 3, 1, 4]);

    // Delete through a secondary index, outside a transaction (implicit one).
    t.set_current_index(Some("by_email")).unwrap();
    t.move_to(Move::First).unwrap();
    assert_eq!(cur_id(&t), 4);
    t.delete().unwrap();
    t.move_to(Move::Next).unwrap();
    assert_eq!(cur_id(&t), 3);
    assert_eq!(walk(&mut t), [3, 1]);
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(walk(&mut t), [1, 3, 1]);
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [2, 3, 1]);
}

#[test]
fn snapshot_readers_see_the_indexes_of_their_snapshot() {
    let (inst, dir, s, db) = setup("ix-snapshot");
    s.create_table(db, &people()).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    insert(&mut t, 1, "a", 1, Some("1"), &[]);
    insert(&mut t, 2, "b", 2, Some("2"), &[]);
    let r = inst.begin_session().unwrap();
    let rdb = r.open_database(dir.path().join("d.edb")).unwrap();
    let mut rt = r.open_table(rdb, "people").unwrap();
    rt.set_current_index(Some("by_name")).unwrap();
    r.begin_transaction().unwrap();
    assert_eq!(walk(&mut rt), [1, 2]);
    // Writer renames 1 to "c" and inserts 3 as "0", committed.
    s.begin_transaction().unwrap();
    t.seek(&[Some(&1i32.to_le_bytes())], Seek::Eq).unwrap();
    t.prepare_update(Prep::Replace).unwrap();
    t.set_column(t.column_id("name").unwrap(), Some(b"c"))
        .unwrap();
    t.update().unwrap();
    insert(&mut t, 3, "0", 3, Some("3"), &[]);
    // Before commit the reader sees nothing new; the writer sees its changes.
    assert_eq!(walk(&mut rt), [1, 2]);
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [3, 2, 1]);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // After commit the reader's snapshot is unchanged, a new transaction sees the new order.
    assert_eq!(walk(&mut rt), [1, 2]);
    r.commit_transaction(CommitGrbit::empty()).unwrap();
    assert_eq!(walk(&mut rt), [3, 2, 1]);
}

#[test]
fn create_and_delete_index_over_existing_rows() {
    let (_inst, _dir, s, db) = setup("ix-ddl");
    let mut def = people();
    def.indexes.truncate(1);
    s.create_table(db, &def).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    for (i, name) in [(1, "m"), (2, "z"), (3, "a"), (4, "m")] {
        insert(&mut t, i, name, i16::try_from(i).unwrap(), Some(name), &[]);
    }
    // A cursor opened before the index exists maintains it afterwards.
    let mut other = s.open_table(db, "people").unwrap();
    t.create_index(&ix("by_name", "+name\0+id\0\0", IndexGrbit::empty()))
        .unwrap();
    assert_eq!(
        code(t.create_index(&ix("BY_NAME", "+age\0\0", IndexGrbit::empty()))),
        -1403
    );
    assert_eq!(
        code(t.create_index(&ix("u", "+email\0\0", IndexGrbit::UNIQUE))),
        -1605
    );
    assert_eq!(
        code(t.create_index(&ix("p", "+age\0\0", IndexGrbit::PRIMARY))),
        -1402
    );
    assert_eq!(
        code(t.create_index(&ix("bad", "+nope\0\0", IndexGrbit::empty()))),
        -1406
    );
    insert(&mut t, 9, "q", 9, None, &[]);
    assert_eq!(
        code(t.create_index(&ix("n", "+email\0\0", IndexGrbit::DISALLOW_NULL))),
        -1053
    );
    insert(&mut other, 5, "b", 5, Some("b"), &[]);
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [3, 5, 1, 4, 9, 2]);
    // Created in a transaction that rolls back: gone.
    s.begin_transaction().unwrap();
    t.create_index(&ix("by_age", "-age\0\0", IndexGrbit::empty()))
        .unwrap();
    t.set_current_index(Some("by_age")).unwrap();
    assert_eq!(walk(&mut t), [9, 5, 4, 3, 2, 1]);
    s.rollback(RollbackGrbit::empty()).unwrap();
    assert_eq!(code(t.set_current_index(Some("by_age"))), -1404);
    // Delete: the primary must stay; an unknown index is not found.
    assert_eq!(code(t.delete_index("pk")), -1405);
    assert_eq!(code(t.delete_index("nope")), -1404);
    t.set_current_index(Some("by_name")).unwrap();
    t.delete_index("by_name").unwrap();
    assert_eq!(t.current_index(), "pk");
    assert_eq!(code(other.set_current_index(Some("by_name"))), -1404);
    assert_eq!(t.index_names(), ["pk"]);
}

#[test]
fn ddl_conflicts_with_concurrent_writers() {
    let (inst, dir, s, db) = setup("ix-ddl-conflict");
    let mut def = people();
    def.indexes.truncate(1);
    s.create_table(db, &def).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    insert(&mut t, 1, "a", 1, None, &[]);
    let w = inst.begin_session().unwrap();
    let wdb = w.open_database(dir.path().join("d.edb")).unwrap();
    let mut wt = w.open_table(wdb, "people").unwrap();
    // An open transaction that changed the table blocks the index creation...
    w.begin_transaction().unwrap();
    insert(&mut wt, 2, "b", 2, None, &[]);
    assert_eq!(
        code(t.create_index(&ix("by_name", "+name\0\0", IndexGrbit::empty()))),
        -1102
    );
    w.commit_transaction(CommitGrbit::empty()).unwrap();
    // ...and an index being created blocks writers until it commits.
    s.begin_transaction().unwrap();
    t.create_index(&ix("by_name", "+name\0\0", IndexGrbit::empty()))
        .unwrap();
    assert_eq!(code(try_insert(&mut wt, 3, "c", 3, None, &[])), -1102);
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    insert(&mut wt, 3, "c", 3, None, &[]);
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(walk(&mut t), [1, 2, 3]);
}

#[test]
fn make_key_seek_and_ranges() {
    let (_inst, _dir, s, db) = setup("ix-seek");
    s.create_table(db, &people()).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    for i in 0..40i32 {
        let name = format!("n{:02}", i / 4); // 10 names, 4 records each
        insert(&mut t, i, &name, i16::try_from(i % 4).unwrap(), None, &[]);
    }
    t.set_current_index(Some("by_name")).unwrap();
    assert_eq!(code(t.seek_key(Seek::Eq)), -1608);
    assert_eq!(code(t.make_key(Some(b"n03"), MakeKeyGrbit::empty())), -1608);
    // Eq on a partial key: the first entry with that name (ages descending: age 3).
    t.make_key(Some(b"N03"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(t.seek_key(Seek::Eq).unwrap(), SeekResult::Equal);
    assert_eq!(cur_id(&t), 15);
    // Full key.
    t.make_key(Some(b"n03"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.make_key(Some(&1i16.to_le_bytes()), MakeKeyGrbit::empty())
        .unwrap();
    assert_eq!(
        code(t.make_key(Some(&1i16.to_le_bytes()), MakeKeyGrbit::empty())),
        -1516
    );
    assert_eq!(
        t.retrieve_key(RetrieveKeyGrbit::RETRIEVE_COPY)
            .unwrap()
            .len(),
        1 + 9 + 1 + 2
    );
    assert_eq!(t.seek_key(Seek::Eq).unwrap(), SeekResult::Equal);
    assert_eq!(cur_id(&t), 13);
    // Gt / Lt skip every duplicate of the key; Ge / Le land on the nearest.
    t.make_key(Some(b"n03"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.make_key(Some(&1i16.to_le_bytes()), MakeKeyGrbit::empty())
        .unwrap();
    assert_eq!(t.seek_key(Seek::Gt).unwrap(), SeekResult::NotEqual);
    assert_eq!(cur_id(&t), 12);
    t.make_key(
        Some(b"n03"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_END_LIMIT,
    )
    .unwrap();
    t.seek_key(Seek::Gt).unwrap();
    assert_eq!(cur_id(&t), 19);
    t.make_key(
        Some(b"n03"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_END_LIMIT,
    )
    .unwrap();
    assert_eq!(t.seek_key(Seek::Le).unwrap(), SeekResult::Equal);
    assert_eq!(cur_id(&t), 12);
    t.make_key(Some(b"n03"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(t.seek_key(Seek::Lt).unwrap(), SeekResult::NotEqual);
    assert_eq!(cur_id(&t), 8);
    t.make_key(Some(b"n035"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(t.seek_key(Seek::Ge).unwrap(), SeekResult::NotEqual);
    assert_eq!(cur_id(&t), 19);
    t.make_key(Some(b"n035"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(code(t.seek_key(Seek::Eq)), -1601);
    t.make_key(Some(b"zz"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(code(t.seek_key(Seek::Ge)), -1601);
    t.make_key(Some(b"a"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(code(t.seek_key(Seek::Le)), -1601);
    // A prefix key (SubStrLimit / PartialColumnStartLimit) over "n0*".
    t.make_key(
        Some(b"n0"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::PARTIAL_COLUMN_START_LIMIT,
    )
    .unwrap();
    assert_eq!(t.seek_key(Seek::Ge).unwrap(), SeekResult::Equal);
    assert_eq!(cur_id(&t), 3);
    t.make_key(
        Some(b"n0"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::SUB_STR_LIMIT,
    )
    .unwrap();
    t.set_index_range(IndexRangeGrbit::UPPER_LIMIT).unwrap();
    let mut n = 1;
    while t.move_to(Move::Next).is_ok() {
        n += 1;
    }
    assert_eq!(n, 40);

    // Index range [n02 .. n04] inclusive: 12 records, counted and walked.
    t.make_key(Some(b"n02"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.seek_key(Seek::Ge).unwrap();
    t.make_key(
        Some(b"n04"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::STR_LIMIT,
    )
    .unwrap();
    t.set_index_range(IndexRangeGrbit::UPPER_LIMIT | IndexRangeGrbit::INCLUSIVE)
        .unwrap();
    assert_eq!(t.index_record_count(0).unwrap(), 12);
    assert_eq!(t.index_record_count(5).unwrap(), 5);
    let mut seen = vec![cur_id(&t)];
    while t.move_to(Move::Next).is_ok() {
        seen.push(cur_id(&t));
    }
    assert_eq!(seen, [11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16]);
    assert_eq!(code(t.move_to(Move::Next)), -1603);
    // Back from past the limit: the last entry inside the range.
    t.move_to(Move::Previous).unwrap();
    assert_eq!(cur_id(&t), 16);
    // Exclusive limit at the full key ("n03", 2): stops before it.
    t.make_key(Some(b"n02"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.seek_key(Seek::Ge).unwrap();
    t.make_key(Some(b"n03"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.make_key(Some(&2i16.to_le_bytes()), MakeKeyGrbit::empty())
        .unwrap();
    t.set_index_range(IndexRangeGrbit::UPPER_LIMIT).unwrap();
    assert_eq!(t.index_record_count(0).unwrap(), 5);
    // A limit the current entry is already past: NoCurrentRecord, no range set.
    t.make_key(Some(b"n01"), MakeKeyGrbit::NEW_KEY).unwrap();
    assert_eq!(code(t.set_index_range(IndexRangeGrbit::UPPER_LIMIT)), -1603);
    t.set_index_range(IndexRangeGrbit::REMOVE).unwrap();
    assert_eq!(t.index_record_count(0).unwrap(), 32);
    // A lower limit stops moves backwards.
    t.make_key(Some(b"n05"), MakeKeyGrbit::NEW_KEY).unwrap();
    t.seek_key(Seek::Ge).unwrap();
    t.make_key(
        Some(b"n04"),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::FULL_COLUMN_START_LIMIT,
    )
    .unwrap();
    t.set_index_range(IndexRangeGrbit::INCLUSIVE).unwrap();
    let mut back = 0;
    while t.move_to(Move::Previous).is_ok() {
        back += 1;
    }
    assert_eq!(back, 4);
    // Retrieve key round-trips as a normalized key.
    t.set_index_range(IndexRangeGrbit::REMOVE).unwrap();
    t.move_to(Move::First).unwrap();
    t.move_to(Move::Next).unwrap();
    let k = t.retrieve_key(RetrieveKeyGrbit::empty()).unwrap();
    let here = cur_id(&t);
    t.move_to(Move::Last).unwrap();
    t.make_key(
        Some(&k),
        MakeKeyGrbit::NEW_KEY | MakeKeyGrbit::NORMALIZED_KEY,
    )
    .unwrap();
    t.seek_key(Seek::Eq).unwrap();
    assert_eq!(cur_id(&t), here);
    // The convenience seek works on the current index too.
    t.seek(&[Some(b"n09")], Seek::Eq).unwrap();
    assert_eq!(cur_id(&t), 39);
}

#[test]
fn bookmarks_and_retrieve_from_index() {
    let (_inst, _dir, s, db) = setup("ix-bookmarks");
    s.create_table(db, &people()).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    insert(&mut t, 7, "Zed", -3, Some("z"), &["x", "y"]);
    insert(&mut t, 8, "amy", 12, Some("a"), &["y"]);
    t.set_current_index(Some("by_tag")).unwrap();
    t.move_to(Move::First).unwrap();
    t.move_to(Move::Next).unwrap(); // "y" of 7
    let (sec, prim) = t.secondary_index_bookmark().unwrap();
    assert_eq!(cur_id(&t), 7);
    assert_eq!(t.bookmark().unwrap(), prim);
    t.move_to(Move::Last).unwrap();
    t.goto_secondary_index_bookmark(&sec, &prim).unwrap();
    assert_eq!(cur_id(&t), 7);
    t.move_to(Move::Next).unwrap();
    assert_eq!(cur_id(&t), 8);
    // Retrieve from the index: the multi-valued column's value of this entry.
    let tc = t.column_id("tags").unwrap();
    t.goto_secondary_index_bookmark(&sec, &prim).unwrap();
    // Text is not kept by the key (folded): read from the record (its first value).
    assert_eq!(t.retrieve_column_from_index(tc).unwrap().unwrap(), b"x");
    assert_eq!(
        code(t.retrieve_column_from_index(t.column_id("age").unwrap())),
        -1507
    );
    t.set_current_index(Some("by_name")).unwrap();
    t.move_to(Move::Last).unwrap();
    assert_eq!(
        t.retrieve_column_from_index(t.column_id("age").unwrap())
            .unwrap()
            .unwrap(),
        (-3i16).to_le_bytes()
    );
    t.set_current_index(None).unwrap();
    assert_eq!(code(t.secondary_index_bookmark()), -1515);
    // Goto bookmark positions on the record's entry in the current index.
    t.set_current_index(Some("by_name")).unwrap();
    t.goto_bookmark(&prim).unwrap();
    assert_eq!(code(t.move_to(Move::Next)), -1603);
    t.goto_bookmark(&prim).unwrap();
    t.move_to(Move::Previous).unwrap();
    assert_eq!(cur_id(&t), 8);
    // Keep the record when switching index.
    t.set_current_index2(Some("by_email"), SetCurrentIndexGrbit::NO_MOVE)
        .unwrap();
    assert_eq!(cur_id(&t), 8);
    t.move_to(Move::Next).unwrap();
    assert_eq!(cur_id(&t), 7);
    // A deleted entry's bookmark is gone.
    t.delete().unwrap();
    t.set_current_index(Some("by_tag")).unwrap();
    assert_eq!(code(t.goto_secondary_index_bookmark(&sec, &prim)), -1017);
}

#[test]
fn definition_errors() {
    let (_inst, _dir, s, db) = setup("ix-errors");
    let mut def = people();
    def.indexes
        .push(ix("by_name", "+age\0\0", IndexGrbit::empty()));
    assert_eq!(code(s.create_table(db, &def)), -1403);
    let mut def = people();
    def.indexes.push(ix("p2", "+age\0\0", IndexGrbit::PRIMARY));
    assert_eq!(code(s.create_table(db, &def)), -1402);
    let mut def = people();
    def.indexes
        .push(ix("bad", "+age\0+nope\0\0", IndexGrbit::empty()));
    assert_eq!(code(s.create_table(db, &def)), -1406);
    let mut def = people();
    let seventeen: String = (0..17).map(|_| "+age\0").collect::<String>() + "\0";
    def.indexes
        .push(ix("long", &seventeen, IndexGrbit::empty()));
    assert_eq!(code(s.create_table(db, &def)), -1016);
    let mut def = people();
    def.indexes
        .push(ix("nn", "+email\0\0", IndexGrbit::DISALLOW_NULL));
    s.create_table(db, &def).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    assert_eq!(code(try_insert(&mut t, 1, "a", 1, None, &[])), -1053);
    assert_eq!(walk(&mut t), Vec::<i32>::new());
    assert_eq!(code(t.set_current_index(Some("none"))), -1404);
    // Sixteen segments are fine.
    let mut cols: Vec<ColumnDef> = (0..16)
        .map(|i| ColumnDef::new(&format!("c{i}"), ColumnType::UnsignedByte))
        .collect();
    cols.push(ColumnDef::new("id", ColumnType::Long));
    let key = (0..16)
        .map(|i| format!("-c{i}\0"))
        .collect::<Vec<_>>()
        .concat()
        + "\0";
    s.create_table(
        db,
        &TableCreate {
            name: "wide".into(),
            columns: cols,
            indexes: vec![ix("all", &key, IndexGrbit::UNIQUE)],
        },
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// Model test: random inserts, replaces and deletes in concurrent transactions of three
// sessions on a table with eight secondary indexes (unique and not, multi-valued,
// descending, nullable, with every null option) over every column type. The model keeps the
// committed rows, each open transaction's snapshot and changes, and what every transaction
// touched; it predicts each update's outcome (success, `KeyDuplicate`, `WriteConflict`), and
// after every commit compares every index, walked through the API, with the index computed
// from the model's rows, plus random seeks and index ranges. The expected order is computed
// from the typed values (not from the engine's normalized keys).
// ---------------------------------------------------------------------------------------

mod model {
    use std::cmp::Ordering;
    use std::collections::{BTreeMap, HashSet};

    use ese::{CodePage, ColumnGrbit, ColumnType, IndexGrbit};

    /// The columns: (name, type, code page, options). Column 0 is the primary key.
    pub(crate) const COLS: &[(&str, ColumnType, CodePage, ColumnGrbit)] = &[
        (
            "id",
            ColumnType::Long,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "bit",
            ColumnType::Bit,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "ub",
            ColumnType::UnsignedByte,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "sh",
            ColumnType::Short,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "lg",
            ColumnType::Long,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "cur",
            ColumnType::Currency,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "f32",
            ColumnType::IEEESingle,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "f64",
            ColumnType::IEEEDouble,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "dt",
            ColumnType::DateTime,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "bin",
            ColumnType::Binary,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "txt",
            ColumnType::Text,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "utxt",
            ColumnType::Text,
            CodePage::Unicode,
            ColumnGrbit::TAGGED,
        ),
        (
            "ul",
            ColumnType::UnsignedLong,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "ll",
            ColumnType::LongLong,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "guid",
            ColumnType::Guid,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "us",
            ColumnType::UnsignedShort,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "ull",
            ColumnType::UnsignedLongLong,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "lbin",
            ColumnType::LongBinary,
            CodePage::Ascii,
            ColumnGrbit::empty(),
        ),
        (
            "ltxt",
            ColumnType::LongText,
            CodePage::Unicode,
            ColumnGrbit::empty(),
        ),
        (
            "mv",
            ColumnType::Long,
            CodePage::Ascii,
            ColumnGrbit::TAGGED.union(ColumnGrbit::MULTI_VALUED),
        ),
    ];
    pub(crate) const MV: usize = COLS.len() - 1;

    /// The secondary indexes: (name, segments (column, descending), options).
    /// An index: name, segments (column, descending), options.
    pub(crate) type IndexDef = (&'static str, &'static [(usize, bool)], IndexGrbit);

    pub(crate) const INDEXES: &[IndexDef] = &[
        ("ix_txt", &[(10, false), (3, true)], IndexGrbit::empty()),
        (
            "ix_ull",
            &[(16, false)],
            IndexGrbit::UNIQUE.union(IndexGrbit::IGNORE_NULL),
        ),
        (
            "ix_mv",
            &[(MV, false), (1, true)],
            IndexGrbit::IGNORE_FIRST_NULL,
        ),
        (
            "ix_f64",
            &[(7, true), (1, false), (2, false)],
            IndexGrbit::SORT_NULLS_HIGH,
        ),
        (
            "ix_guid",
            &[(14, false), (8, true), (5, false), (6, false)],
            IndexGrbit::IGNORE_ANY_NULL,
        ),
        (
            "ix_bin",
            &[(9, false), (15, false), (12, true), (13, false), (4, false)],
            IndexGrbit::IGNORE_FIRST_NULL,
        ),
        (
            "ix_long",
            &[(18, false), (17, true), (11, false)],
            IndexGrbit::empty(),
        ),
        (
            "ix_uniq2",
            &[(10, true), (4, false)],
            IndexGrbit::UNIQUE.union(IndexGrbit::IGNORE_ANY_NULL),
        ),
    ];

    pub(crate) type Val = Option<Vec<u8>>;

    /// Unique-index keys (index, canonical segment values).
    pub(crate) type UKeys = HashSet<(usize, Vec<Vec<u8>>)>;

    #[derive(Clone, Debug, PartialEq)]
    pub(crate) struct Row {
        /// Values by column (the multi-valued column's slot unused).
        pub(crate) vals: Vec<Val>,
        pub(crate) mv: Vec<i32>,
    }

    fn f64_of(v: &[u8]) -> f64 {
        f64::from_le_bytes(v.try_into().unwrap())
    }

    fn cmp_float(a: f64, b: f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a.partial_cmp(&b).unwrap(), // -0.0 == +0.0
        }
    }

    fn utf16_lower(v: &[u8]) -> String {
        let units: Vec<u16> = v
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// The typed order of two values of column `col` (ESE's documented collation).
    pub(crate) fn cmp_typed(col: usize, a: &[u8], b: &[u8]) -> Ordering {
        let (_, ty, cp, _) = COLS[col];
        match ty {
            ColumnType::Bit => (a[0] != 0).cmp(&(b[0] != 0)),
            ColumnType::UnsignedByte => a[0].cmp(&b[0]),
            ColumnType::Short => i16::from_le_bytes(a.try_into().unwrap())
                .cmp(&i16::from_le_bytes(b.try_into().unwrap())),
            ColumnType::Long => i32::from_le_bytes(a.try_into().unwrap())
                .cmp(&i32::from_le_bytes(b.try_into().unwrap())),
            ColumnType::Currency | ColumnType::LongLong => {
                i64::from_le_bytes(a.try_into().unwrap())
                    .cmp(&i64::from_le_bytes(b.try_into().unwrap()))
            }
            ColumnType::UnsignedShort => u16::from_le_bytes(a.try_into().unwrap())
                .cmp(&u16::from_le_bytes(b.try_into().unwrap())),
            ColumnType::UnsignedLong => u32::from_le_bytes(a.try_into().unwrap())
                .cmp(&u32::from_le_bytes(b.try_into().unwrap())),
            ColumnType::UnsignedLongLong => u64::from_le_bytes(a.try_into().unwrap())
                .cmp(&u64::from_le_bytes(b.try_into().unwrap())),
            ColumnType::IEEESingle => cmp_float(
                f64::from(f32::from_le_bytes(a.try_into().unwrap())),
                f64::from(f32::from_le_bytes(b.try_into().unwrap())),
            ),
            ColumnType::IEEEDouble | ColumnType::DateTime => cmp_float(f64_of(a), f64_of(b)),
            ColumnType::Binary | ColumnType::LongBinary => a.cmp(b),
            ColumnType::Text | ColumnType::LongText => match cp {
                CodePage::Ascii => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
                CodePage::Unicode => utf16_lower(a).cmp(&utf16_lower(b)),
            },
            ColumnType::Guid => {
                let k = |g: &[u8]| [&g[10..16], &g[8..10], &g[6..8], &g[4..6], &g[0..4]].concat();
                k(a).cmp(&k(b))
            }
        }
    }

    /// An index key as typed values, one per segment.
    pub(crate) type Key = Vec<Val>;

    pub(crate) fn cmp_key(ix: usize, a: &Key, b: &Key) -> Ordering {
        let (_, segs, g) = INDEXES[ix];
        let high = g.contains(IndexGrbit::SORT_NULLS_HIGH);
        for ((col, desc), (x, y)) in segs.iter().zip(a.iter().zip(b)) {
            let o = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) if high => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) if high => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    let o = cmp_typed(*col, x, y);
                    if *desc { o.reverse() } else { o }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// The keys a row has in index `ix`, each with the multi-valued value it came from.
    pub(crate) fn row_keys(ix: usize, row: &Row) -> Vec<(Key, Option<i32>)> {
        let (_, segs, g) = INDEXES[ix];
        let mut expansions: Vec<Option<i32>> = if segs.iter().any(|(c, _)| *c == MV) {
            let mut vs = row.mv.clone();
            vs.sort_unstable();
            vs.dedup();
            if vs.is_empty() {
                vec![None]
            } else {
                vs.into_iter().map(Some).collect()
            }
        } else {
            vec![None]
        };
        let mut out = Vec::new();
        for e in expansions.drain(..) {
            let key: Key = segs
                .iter()
                .map(|(c, _)| {
                    if *c == MV {
                        e.map(|v| v.to_le_bytes().to_vec())
                    } else {
                        row.vals[*c].clone()
                    }
                })
                .collect();
            let nulls = key.iter().filter(|v| v.is_none()).count();
            if (g.contains(IndexGrbit::IGNORE_ANY_NULL) && nulls > 0)
                || (g.contains(IndexGrbit::IGNORE_NULL) && nulls == key.len())
                || (g.contains(IndexGrbit::IGNORE_FIRST_NULL) && key[0].is_none())
            {
                continue;
            }
            out.push((key, e));
        }
        out
    }

    /// Every entry of index `ix` over `rows`, in index order: (key, id, multi-value).
    pub(crate) fn entries(ix: usize, rows: &BTreeMap<i32, Row>) -> Vec<(Key, i32, Option<i32>)> {
        let mut out: Vec<(Key, i32, Option<i32>)> = rows
            .iter()
            .flat_map(|(id, r)| row_keys(ix, r).into_iter().map(move |(k, e)| (k, *id, e)))
            .collect();
        out.sort_by(|a, b| cmp_key(ix, &a.0, &b.0).then(a.1.cmp(&b.1)));
        out
    }

    pub(crate) fn unique(ix: usize) -> bool {
        INDEXES[ix].2.contains(IndexGrbit::UNIQUE)
    }

    /// Canonical forms of a row's unique-index keys (for "touched" bookkeeping).
    pub(crate) fn unique_keys(row: &Row) -> UKeys {
        let canon = |col: usize, v: &Val| -> Vec<u8> {
            let Some(v) = v else { return vec![0xEE] };
            let (_, ty, cp, _) = COLS[col];
            let mut out = vec![1];
            match ty {
                ColumnType::Text if cp == CodePage::Ascii => out.extend(v.to_ascii_lowercase()),
                _ => out.extend(v),
            }
            out
        };
        let mut set = HashSet::new();
        for ix in (0..INDEXES.len()).filter(|&ix| unique(ix)) {
            for (k, _) in row_keys(ix, row) {
                let segs = INDEXES[ix].1;
                set.insert((
                    ix,
                    k.iter().zip(segs).map(|(v, (c, _))| canon(*c, v)).collect(),
                ));
            }
        }
        set
    }
}

mod driver {
    use std::cmp::Ordering;
    use std::collections::{BTreeMap, HashSet};

    use super::model::{
        self, COLS, INDEXES, Key, MV, Row, UKeys, Val, cmp_key, entries, row_keys, unique,
    };
    use ese::{
        CodePage, ColumnDef, ColumnType, CommitGrbit, ErrorKind, IndexCreate, IndexGrbit,
        IndexRangeGrbit, MakeKeyGrbit, Move, Prep, RollbackGrbit, Seek, SeekResult, Session, Table,
        TableCreate,
    };

    pub(crate) fn table() -> TableCreate {
        let columns = COLS
            .iter()
            .map(|(n, ty, cp, g)| {
                let c = ColumnDef::new(n, *ty).grbit(*g).code_page(*cp);
                if matches!(ty, ColumnType::Binary | ColumnType::Text) {
                    c.max_size(64)
                } else {
                    c
                }
            })
            .collect();
        let mut indexes = vec![IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
            key_most: 0,
        }];
        for (name, segs, g) in INDEXES {
            let key = segs
                .iter()
                .map(|(c, d)| format!("{}{}\0", if *d { '-' } else { '+' }, COLS[*c].0))
                .collect::<Vec<_>>()
                .concat()
                + "\0";
            indexes.push(IndexCreate {
                name: (*name).into(),
                key,
                grbit: *g,
                key_most: 0,
            });
        }
        TableCreate {
            name: "m".into(),
            columns,
            indexes,
        }
    }

    fn pick<T: Copy>(rng: &mut fastrand::Rng, xs: &[T]) -> T {
        xs[rng.usize(..xs.len())]
    }

    fn utf16(chars: &[char]) -> Vec<u8> {
        chars
            .iter()
            .collect::<String>()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    pub(crate) fn random_val(rng: &mut fastrand::Rng, col: usize) -> Val {
        if col != 0 && rng.u8(..5) == 0 {
            return None;
        }
        let (_, ty, cp, _) = COLS[col];
        let unicode = ['a', 'Ä', 'ä', 'ß', 'Σ', 'σ', 'ς', '€', '𝄞', 'z'];
        let bytes = [0u8, 1, 0x7F, 0x80, 0xFF];
        Some(match ty {
            ColumnType::Bit => vec![pick(rng, &[0u8, 1, 0xFF])],
            ColumnType::UnsignedByte => vec![pick(rng, &[0u8, 1, 2, 0x7F, 0xFF])],
            ColumnType::Short => pick(rng, &[i16::MIN, -2, -1, 0, 1, 2, i16::MAX])
                .to_le_bytes()
                .to_vec(),
            ColumnType::Long => pick(rng, &[i32::MIN, -1, 0, 1, 2, 3, i32::MAX])
                .to_le_bytes()
                .to_vec(),
            ColumnType::Currency | ColumnType::LongLong => {
                pick(rng, &[i64::MIN, -7, -1, 0, 1, 7, i64::MAX])
                    .to_le_bytes()
                    .to_vec()
            }
            ColumnType::UnsignedShort => pick(rng, &[0u16, 1, 2, 0x7FFF, u16::MAX])
                .to_le_bytes()
                .to_vec(),
            ColumnType::UnsignedLong => pick(rng, &[0u32, 1, 2, 0x8000_0000, u32::MAX])
                .to_le_bytes()
                .to_vec(),
            ColumnType::UnsignedLongLong => {
                if rng.bool() {
                    rng.u64(0..40).to_le_bytes().to_vec()
                } else {
                    pick(rng, &[u64::MAX, u64::MAX / 2, 1 << 63])
                        .to_le_bytes()
                        .to_vec()
                }
            }
            ColumnType::IEEESingle => pick(
                rng,
                &[
                    f32::NEG_INFINITY,
                    f32::MIN,
                    -1.5,
                    -0.0,
                    0.0,
                    1e-45,
                    f32::MIN_POSITIVE,
                    2.5,
                    f32::MAX,
                    f32::INFINITY,
                    f32::NAN,
                ],
            )
            .to_le_bytes()
            .to_vec(),
            ColumnType::IEEEDouble | ColumnType::DateTime => pick(
                rng,
                &[
                    f64::NEG_INFINITY,
                    f64::MIN,
                    -2.25,
                    -0.0,
                    0.0,
                    5e-324,
                    1.0,
                    45_000.5,
                    f64::MAX,
                    f64::INFINITY,
                    f64::NAN,
                    -f64::NAN,
                ],
            )
            .to_le_bytes()
            .to_vec(),
            ColumnType::Binary => (0..rng.usize(0..=12)).map(|_| pick(rng, &bytes)).collect(),
            ColumnType::LongBinary => (0..rng.usize(0..=20)).map(|_| pick(rng, &bytes)).collect(),
            ColumnType::Text | ColumnType::LongText => match cp {
                CodePage::Ascii => (0..rng.usize(0..=6))
                    .map(|_| pick(rng, b"aAbBz 0"))
                    .collect(),
                CodePage::Unicode => {
                    let n = rng.usize(0..=5);
                    let chars: Vec<char> = (0..n).map(|_| pick(rng, &unicode)).collect();
                    utf16(&chars)
                }
            },
            ColumnType::Guid => (0..16).map(|_| pick(rng, &[0u8, 1, 0xFF])).collect(),
        })
    }

    pub(crate) fn random_row(rng: &mut fastrand::Rng) -> Row {
        let mut vals: Vec<Val> = (0..COLS.len()).map(|c| random_val(rng, c)).collect();
        vals[MV] = None;
        let mv = (0..rng.usize(0..4)).map(|_| rng.i32(-3..=3)).collect();
        Row { vals, mv }
    }

    fn id_bytes(id: i32) -> [u8; 4] {
        id.to_le_bytes()
    }

    /// Writes `row`'s columns (those that differ from `old`) into the prepared update.
    fn set_row(t: &mut Table, row: &Row, old: Option<&Row>) -> ese::Result<()> {
        for (c, col) in COLS.iter().enumerate() {
            if c == MV || old.is_some_and(|o| o.vals[c] == row.vals[c]) {
                continue;
            }
            let id = t.column_id(col.0)?;
            t.set_column(id, row.vals[c].as_deref())?;
        }
        if old.is_none_or(|o| o.mv != row.mv) {
            let id = t.column_id("mv")?;
            for _ in 0..old.map_or(0, |o| o.mv.len()) {
                t.set_column_itag(id, None, 1)?;
            }
            for v in &row.mv {
                t.set_column_itag(id, Some(&v.to_le_bytes()), 0)?;
            }
        }
        Ok(())
    }

    /// The row the cursor is on, read column by column.
    fn read_row(t: &Table) -> Row {
        let mut vals = Vec::new();
        for (c, col) in COLS.iter().enumerate() {
            if c == MV {
                vals.push(None);
                continue;
            }
            vals.push(t.retrieve_column(t.column_id(col.0).unwrap()).unwrap());
        }
        let mvid = t.column_id("mv").unwrap();
        let mut mv = Vec::new();
        for i in 1..=t.column_value_count(mvid).unwrap() {
            let v = t.retrieve_column_itag(mvid, i).unwrap().unwrap();
            mv.push(i32::from_le_bytes(v.try_into().unwrap()));
        }
        Row { vals, mv }
    }

    fn cur_id(t: &Table) -> i32 {
        i32::from_le_bytes(
            t.retrieve_column(t.column_id("id").unwrap())
                .unwrap()
                .unwrap()
                .try_into()
                .unwrap(),
        )
    }

    /// What one entry of index `ix` the cursor is on looks like: (id, multi-value).
    fn cur_entry(t: &Table, ix: usize) -> (i32, Option<i32>) {
        let mv = if INDEXES[ix].1.iter().any(|(c, _)| *c == MV) {
            t.retrieve_column_from_index(t.column_id("mv").unwrap())
                .unwrap()
                .map(|v| i32::from_le_bytes(v.try_into().unwrap()))
        } else {
            None
        };
        (cur_id(t), mv)
    }

    /// Checks every index of `t` (as its session sees the table) against `rows`.
    pub(crate) fn check_indexes(t: &mut Table, rows: &BTreeMap<i32, Row>, ctx: &str) {
        t.set_current_index(None).unwrap();
        let mut seen = BTreeMap::new();
        if t.move_to(Move::First).is_ok() {
            loop {
                seen.insert(cur_id(t), read_row(t));
                if t.move_to(Move::Next).is_err() {
                    break;
                }
            }
        }
        assert_eq!(&seen, rows, "{ctx}: records");
        for (ix, def) in INDEXES.iter().enumerate() {
            t.set_current_index(Some(def.0)).unwrap();
            let want: Vec<(i32, Option<i32>)> = entries(ix, rows)
                .into_iter()
                .map(|(_, id, e)| (id, e))
                .collect();
            let mut got = Vec::new();
            if t.move_to(Move::First).is_ok() {
                loop {
                    got.push(cur_entry(t, ix));
                    if t.move_to(Move::Next).is_err() {
                        break;
                    }
                }
            }
            assert_eq!(got, want, "{ctx}: index {}", def.0);
            // Backwards too.
            let mut back = Vec::new();
            if t.move_to(Move::Last).is_ok() {
                loop {
                    back.push(cur_entry(t, ix));
                    if t.move_to(Move::Previous).is_err() {
                        break;
                    }
                }
            }
            back.reverse();
            assert_eq!(back, want, "{ctx}: index {} backwards", def.0);
        }
    }

    fn make_full_key(t: &mut Table, ix: usize, key: &Key, grbit: MakeKeyGrbit) {
        for (i, v) in key.iter().enumerate() {
            let g = if i == 0 {
                MakeKeyGrbit::NEW_KEY
            } else {
                MakeKeyGrbit::empty()
            };
            let g = if i + 1 == key.len() { g | grbit } else { g };
            t.make_key(v.as_deref(), g).unwrap();
        }
        let _ = ix;
    }

    /// Random seeks and index ranges on `t`, checked against `rows`.
    pub(crate) fn check_seeks(
        t: &mut Table,
        rows: &BTreeMap<i32, Row>,
        rng: &mut fastrand::Rng,
        ctx: &str,
    ) {
        for _ in 0..6 {
            let ix = rng.usize(..INDEXES.len());
            t.set_current_index(Some(INDEXES[ix].0)).unwrap();
            let all = entries(ix, rows);
            let key: Key = if !all.is_empty() && rng.bool() {
                all[rng.usize(..all.len())].0.clone()
            } else {
                let row = random_row(rng);
                let mut k: Key = INDEXES[ix]
                    .1
                    .iter()
                    .map(|(c, _)| row.vals[*c].clone())
                    .collect();
                if let Some(i) = INDEXES[ix].1.iter().position(|(c, _)| *c == MV) {
                    k[i] = (rng.u8(..4) != 0).then(|| rng.i32(-4..=4).to_le_bytes().to_vec());
                }
                k
            };
            let op = pick(rng, &[Seek::Eq, Seek::Ge, Seek::Gt, Seek::Le, Seek::Lt]);
            let ord = |e: &(Key, i32, Option<i32>)| cmp_key(ix, &e.0, &key);
            let want = match op {
                Seek::Eq => all.iter().position(|e| ord(e) == Ordering::Equal),
                Seek::Ge => all.iter().position(|e| ord(e) != Ordering::Less),
                Seek::Gt => all.iter().position(|e| ord(e) == Ordering::Greater),
                Seek::Le => all.iter().rposition(|e| ord(e) != Ordering::Greater),
                Seek::Lt => all.iter().rposition(|e| ord(e) == Ordering::Less),
            };
            make_full_key(t, ix, &key, MakeKeyGrbit::empty());
            let r = t.seek_key(op);
            let c = format!("{ctx}: seek {op:?} on {} with {key:?}", INDEXES[ix].0);
            let Some(p) = want else {
                assert_eq!(r.unwrap_err().kind(), ErrorKind::RecordNotFound, "{c}");
                continue;
            };
            let res = r.unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(cur_entry(t, ix), (all[p].1, all[p].2), "{c}");
            let equal = ord(&all[p]) == Ordering::Equal && !matches!(op, Seek::Gt | Seek::Lt);
            assert_eq!(res == SeekResult::Equal, equal, "{c}");
            // An upper range from here to another key, inclusive or not.
            let limit = all[rng.usize(..all.len())].0.clone();
            let inclusive = rng.bool();
            let inside = |e: &(Key, i32, Option<i32>)| match cmp_key(ix, &e.0, &limit) {
                Ordering::Less => true,
                Ordering::Equal => inclusive,
                Ordering::Greater => false,
            };
            make_full_key(t, ix, &limit, MakeKeyGrbit::empty());
            let mut g = IndexRangeGrbit::UPPER_LIMIT;
            if inclusive {
                g |= IndexRangeGrbit::INCLUSIVE;
            }
            let r = t.set_index_range(g);
            if !inside(&all[p]) {
                assert_eq!(
                    r.unwrap_err().kind(),
                    ErrorKind::NoCurrentRecord,
                    "{c}: range"
                );
                continue;
            }
            r.unwrap();
            let n = all[p..].iter().take_while(|e| inside(e)).count();
            assert_eq!(
                t.index_record_count(0).unwrap(),
                n as u64,
                "{c}: range count"
            );
            let mut walked = 1;
            while t.move_to(Move::Next).is_ok() {
                assert_eq!(
                    cur_entry(t, ix),
                    (all[p + walked].1, all[p + walked].2),
                    "{c}"
                );
                walked += 1;
            }
            assert_eq!(walked, n, "{c}: range walk");
        }
    }

    struct Trx {
        snapshot: BTreeMap<i32, Row>,
        own: BTreeMap<i32, Option<Row>>,
        begin: u64,
        ids: HashSet<i32>,
        ukeys: UKeys,
    }

    impl Trx {
        fn view(&self) -> BTreeMap<i32, Row> {
            let mut v = self.snapshot.clone();
            for (id, r) in &self.own {
                match r {
                    Some(r) => v.insert(*id, r.clone()),
                    None => v.remove(id),
                };
            }
            v
        }
    }

    struct World {
        committed: BTreeMap<i32, Row>,
        commits: u64,
        /// (commit number, ids, unique keys) of committed transactions.
        history: Vec<(u64, HashSet<i32>, UKeys)>,
        trx: Vec<Option<Trx>>,
    }

    impl World {
        /// Whether a transaction other than `me` that `me` must not overlap touched `id` or
        /// one of `ukeys`: still open, or committed after `me` began.
        fn conflict(&self, me: usize, id: Option<i32>, ukeys: &UKeys) -> bool {
            let begin = self.trx[me].as_ref().unwrap().begin;
            let hit = |ids: &HashSet<i32>, keys: &UKeys| {
                id.is_some_and(|i| ids.contains(&i)) || !keys.is_disjoint(ukeys)
            };
            self.trx
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != me)
                .filter_map(|(_, t)| t.as_ref())
                .any(|t| hit(&t.ids, &t.ukeys))
                || self
                    .history
                    .iter()
                    .any(|(c, ids, keys)| *c > begin && hit(ids, keys))
        }

        /// The outcome the engine must give writing `new` over `old` (record `id`) in
        /// transaction `me`: checks in the engine's order (record, then each unique index).
        fn predict(
            &self,
            me: usize,
            id: i32,
            old: Option<&Row>,
            new: Option<&Row>,
            lock_held: bool,
        ) -> Result<(), ErrorKind> {
            let trx = self.trx[me].as_ref().unwrap();
            let view = trx.view();
            if !lock_held && self.conflict(me, Some(id), &HashSet::new()) {
                return Err(ErrorKind::WriteConflict);
            }
            if old.is_none() && view.contains_key(&id) {
                return Err(ErrorKind::KeyDuplicate);
            }
            let Some(new) = new else { return Ok(()) };
            for ix in (0..INDEXES.len()).filter(|&ix| unique(ix)) {
                let before: Vec<Key> = old
                    .map(|o| row_keys(ix, o).into_iter().map(|k| k.0).collect())
                    .unwrap_or_default();
                for (k, _) in row_keys(ix, new) {
                    if before.iter().any(|b| cmp_key(ix, b, &k) == Ordering::Equal) {
                        continue;
                    }
                    let probe = Row {
                        vals: new.vals.clone(),
                        mv: new.mv.clone(),
                    };
                    let keys: HashSet<_> = model::unique_keys(&probe)
                        .into_iter()
                        .filter(|(i, _)| *i == ix)
                        .collect();
                    if self.conflict(me, None, &keys) {
                        return Err(ErrorKind::WriteConflict);
                    }
                    let dup = view.iter().any(|(other, r)| {
                        *other != id
                            && row_keys(ix, r)
                                .iter()
                                .any(|(k2, _)| cmp_key(ix, &k, k2) == Ordering::Equal)
                    });
                    if dup {
                        return Err(ErrorKind::KeyDuplicate);
                    }
                }
            }
            Ok(())
        }

        /// Records what a successful write of `new` over `old` touched.
        fn touch(&mut self, me: usize, id: i32, old: Option<&Row>, new: Option<&Row>) {
            let keys = |r: Option<&Row>| r.map(model::unique_keys).unwrap_or_default();
            let (a, b) = (keys(old), keys(new));
            let t = self.trx[me].as_mut().unwrap();
            t.ids.insert(id);
            t.ukeys.extend(a.symmetric_difference(&b).cloned());
            t.own.insert(id, new.cloned());
        }
    }

    fn outcome<T>(r: ese::Result<T>) -> Result<T, ErrorKind> {
        r.map_err(|e| e.kind())
    }

    /// One run of the model: `steps` random steps of three sessions.
    pub(crate) fn run(seed: u64, steps: usize) {
        let (inst, dir) = super::common::running_instance(&format!("ix-model-{seed}"));
        let path = dir.path().join("m.edb");
        let admin = inst.begin_session().unwrap();
        let db = admin
            .create_database(&path, ese::CreateDatabaseGrbit::empty())
            .unwrap();
        admin.create_table(db, &table()).unwrap();
        let mut verifier = admin.open_table(db, "m").unwrap();
        let sessions: Vec<(Session, Table)> = (0..3)
            .map(|_| {
                let s = inst.begin_session().unwrap();
                let d = s.open_database(&path).unwrap();
                let t = s.open_table(d, "m").unwrap();
                (s, t)
            })
            .collect();
        let mut sessions = sessions;
        let mut w = World {
            committed: BTreeMap::new(),
            commits: 0,
            history: Vec::new(),
            trx: (0..3).map(|_| None).collect(),
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut outcomes = [0usize; 3];
        for step in 0..steps {
            let me = rng.usize(..3);
            let ctx = format!("seed {seed} step {step} session {me}");
            let (s, t) = &mut sessions[me];
            if w.trx[me].is_none() {
                s.begin_transaction().unwrap();
                w.trx[me] = Some(Trx {
                    snapshot: w.committed.clone(),
                    own: BTreeMap::new(),
                    begin: w.commits,
                    ids: HashSet::new(),
                    ukeys: HashSet::new(),
                });
                continue;
            }
            let view = w.trx[me].as_ref().unwrap().view();
            match rng.u8(..100) {
                0..35 => {
                    let id = rng.i32(0..40);
                    let mut row = random_row(&mut rng);
                    row.vals[0] = Some(id_bytes(id).to_vec());
                    let want = w.predict(me, id, None, Some(&row), false);
                    t.prepare_update(Prep::Insert).unwrap();
                    set_row(t, &row, None).unwrap();
                    let got = outcome(t.update().map(|_| ()));
                    assert_eq!(got, want, "{ctx}: insert {id}");
                    if got.is_ok() {
                        w.touch(me, id, None, Some(&row));
                        outcomes[0] += 1;
                    } else {
                        t.prepare_update(Prep::Cancel).unwrap();
                        outcomes[1 + usize::from(got == Err(ErrorKind::WriteConflict))] += 1;
                    }
                }
                35..65 if !view.is_empty() => {
                    let ids: Vec<i32> = view.keys().copied().collect();
                    let id = pick(&mut rng, &ids);
                    let old = view[&id].clone();
                    let mut new = old.clone();
                    for c in 1..COLS.len() {
                        if c != MV && rng.u8(..3) == 0 {
                            new.vals[c] = random_val(&mut rng, c);
                        }
                    }
                    if rng.u8(..3) == 0 {
                        new.mv = (0..rng.usize(0..4)).map(|_| rng.i32(-3..=3)).collect();
                    }
                    t.set_current_index(None).unwrap();
                    t.seek(&[Some(&id_bytes(id))], Seek::Eq).unwrap();
                    let no_lock = rng.u8(..4) == 0;
                    let lock = w.predict(me, id, Some(&old), None, false);
                    if no_lock {
                        t.prepare_update(Prep::ReplaceNoLock).unwrap();
                    } else {
                        let got = outcome(t.prepare_update(Prep::Replace));
                        assert_eq!(got, lock, "{ctx}: prepare replace {id}");
                        if got.is_err() {
                            outcomes[2] += 1;
                            continue;
                        }
                        // The write lock is a change of the record's version chain.
                        w.trx[me].as_mut().unwrap().ids.insert(id);
                    }
                    set_row(t, &new, Some(&old)).unwrap();
                    let want = w.predict(me, id, Some(&old), Some(&new), !no_lock);
                    let got = outcome(t.update().map(|_| ()));
                    assert_eq!(got, want, "{ctx}: replace {id}");
                    if got.is_ok() {
                        w.touch(me, id, Some(&old), Some(&new));
                        outcomes[0] += 1;
                    } else {
                        t.prepare_update(Prep::Cancel).unwrap();
                        outcomes[1 + usize::from(got == Err(ErrorKind::WriteConflict))] += 1;
                    }
                }
                65..80 if !view.is_empty() => {
                    let ids: Vec<i32> = view.keys().copied().collect();
                    let id = pick(&mut rng, &ids);
                    let old = view[&id].clone();
                    t.set_current_index(Some(INDEXES[rng.usize(..INDEXES.len())].0))
                        .unwrap();
                    let bm = {
                        t.set_current_index(None).unwrap();
                        t.seek(&[Some(&id_bytes(id))], Seek::Eq).unwrap();
                        t.bookmark().unwrap()
                    };
                    t.goto_bookmark(&bm).unwrap();
                    let want = w.predict(me, id, Some(&old), None, false);
                    let got = outcome(t.delete());
                    assert_eq!(got, want, "{ctx}: delete {id}");
                    if got.is_ok() {
                        w.touch(me, id, Some(&old), None);
                        outcomes[0] += 1;
                    } else {
                        outcomes[2] += 1;
                    }
                }
                80..95 => {
                    s.commit_transaction(CommitGrbit::LAZY_FLUSH).unwrap();
                    let trx = w.trx[me].take().unwrap();
                    w.commits += 1;
                    for (id, r) in trx.own {
                        match r {
                            Some(r) => w.committed.insert(id, r),
                            None => w.committed.remove(&id),
                        };
                    }
                    w.history.push((w.commits, trx.ids, trx.ukeys));
                    check_indexes(&mut verifier, &w.committed, &ctx);
                    check_seeks(&mut verifier, &w.committed, &mut rng, &ctx);
                    // Another session's open transaction still sees its own snapshot.
                    if let Some(o) = (0..3).find(|&o| o != me && w.trx[o].is_some()) {
                        let v = w.trx[o].as_ref().unwrap().view();
                        check_indexes(&mut sessions[o].1, &v, &format!("{ctx}: view of {o}"));
                    }
                }
                _ => {
                    s.rollback(RollbackGrbit::empty()).unwrap();
                    w.trx[me] = None;
                }
            }
        }
        for (me, (s, _)) in sessions.iter().enumerate() {
            if w.trx[me].is_some() {
                s.rollback(RollbackGrbit::empty()).unwrap();
            }
        }
        check_indexes(&mut verifier, &w.committed, &format!("seed {seed} end"));
        // Every outcome happened at least once over the run (successes, duplicates,
        // conflicts), so the run exercised them all.
        assert!(
            outcomes.iter().all(|n| *n > 0),
            "seed {seed}: outcomes {outcomes:?}"
        );
    }
}

#[test]
fn model_random_concurrent_transactions_keep_every_index_exact() {
    let seeds: u64 = std::env::var("ESE_MODEL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let steps: usize = std::env::var("ESE_MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        driver::run(seed, steps);
    }
}

#[test]
fn unique_index_race_has_exactly_one_winner_per_key() {
    use std::sync::{Arc, Barrier};
    const THREADS: i32 = 8;
    const KEYS: i32 = 60;
    let (inst, dir) = running_instance("ix-race");
    let path = dir.path().join("race.edb");
    let admin = inst.begin_session().unwrap();
    let db = admin
        .create_database(&path, CreateDatabaseGrbit::empty())
        .unwrap();
    admin
        .create_table(
            db,
            &TableCreate {
                name: "r".into(),
                columns: vec![
                    ColumnDef::new("id", ColumnType::Long),
                    ColumnDef::new("u", ColumnType::Long),
                ],
                indexes: vec![
                    ix("pk", "+id\0\0", IndexGrbit::PRIMARY | IndexGrbit::UNIQUE),
                    ix("by_u", "+u\0\0", IndexGrbit::UNIQUE),
                ],
            },
        )
        .unwrap();
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|th| {
            let (inst, path, start) = (inst.clone(), path.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let s = inst.begin_session().unwrap();
                let db = s.open_database(&path).unwrap();
                let mut t = s.open_table(db, "r").unwrap();
                let (idc, uc) = (t.column_id("id").unwrap(), t.column_id("u").unwrap());
                let mut rng = fastrand::Rng::with_seed(u64::try_from(th).unwrap());
                let mut results = Vec::new();
                start.wait();
                for k in 0..KEYS {
                    s.begin_transaction().unwrap();
                    t.prepare_update(Prep::Insert).unwrap();
                    t.set_column(idc, Some(&(th * 1000 + k).to_le_bytes()))
                        .unwrap();
                    t.set_column(uc, Some(&k.to_le_bytes())).unwrap();
                    let r = t.update();
                    // Widen the window in which the entry is uncommitted.
                    if rng.bool() {
                        std::thread::yield_now();
                    }
                    match r {
                        Ok(_) => {
                            s.commit_transaction(CommitGrbit::empty()).unwrap();
                            results.push((k, None));
                        }
                        Err(e) => {
                            t.prepare_update(Prep::Cancel).unwrap();
                            s.rollback(RollbackGrbit::empty()).unwrap();
                            results.push((k, Some(e.kind())));
                        }
                    }
                }
                results
            })
        })
        .collect();
    let mut wins = vec![0; KEYS as usize];
    let (mut dup, mut conflict) = (0, 0);
    for h in handles {
        for (k, r) in h.join().unwrap() {
            match r {
                None => wins[usize::try_from(k).unwrap()] += 1,
                Some(ese::ErrorKind::KeyDuplicate) => dup += 1,
                Some(ese::ErrorKind::WriteConflict) => conflict += 1,
                Some(other) => panic!("key {k}: unexpected {other:?}"),
            }
        }
    }
    assert!(wins.iter().all(|w| *w == 1), "wins per key: {wins:?}");
    assert_eq!(dup + conflict, (THREADS - 1) * KEYS);
    // The index holds exactly one entry per key, each pointing at the winning record.
    let mut t = admin.open_table(db, "r").unwrap();
    t.set_current_index(Some("by_u")).unwrap();
    let (idc, uc) = (t.column_id("id").unwrap(), t.column_id("u").unwrap());
    let mut seen = Vec::new();
    t.move_to(Move::First).unwrap();
    loop {
        let u = i32::from_le_bytes(t.retrieve_column(uc).unwrap().unwrap().try_into().unwrap());
        let id = i32::from_le_bytes(t.retrieve_column(idc).unwrap().unwrap().try_into().unwrap());
        assert_eq!(id % 1000, u);
        seen.push(u);
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    assert_eq!(seen, (0..KEYS).collect::<Vec<_>>());
    t.set_current_index(None).unwrap();
    t.move_to(Move::First).unwrap();
    let mut records = 1;
    while t.move_to(Move::Next).is_ok() {
        records += 1;
    }
    assert_eq!(records, KEYS);
    eprintln!("unique race: {dup} KeyDuplicate, {conflict} WriteConflict");
}

/// Indexes are recovered like records: crash images of the file system are taken while a
/// workload (with an index created half-way) runs, after durable commits and in the middle of
/// transactions; after recovery from each image every index holds exactly the entries of the
/// committed rows.
#[test]
fn indexes_recover_after_a_crash() {
    use ese_core::fs::{CrashModel, FileSystem, SimFs};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    type Row = (String, i16, Option<String>, Vec<String>);
    const DB: &str = "/data/p.edb";
    let instance = |fs: &SimFs| {
        let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
        ese::Instance::builder("ix-crash")
            .system_path("/sys")
            .log_path("/log")
            .page_size(4096)
            .log_file_size_kib(128)
            .cache_size_max_bytes(64 * 4096)
            .file_system(fsd)
            .create()
            .unwrap()
    };
    let fs = SimFs::new();
    let inst = instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    s.create_table(db, &people()).unwrap();
    let mut t = s.open_table(db, "people").unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut committed: BTreeMap<i32, Row> = BTreeMap::new();
    let mut images: Vec<(SimFs, BTreeMap<i32, Row>, bool)> = Vec::new();
    let mut with_age = false;
    for round in 0..36 {
        if round == 12 {
            t.create_index(&ix("by_age", "+age\0\0", IndexGrbit::empty()))
                .unwrap();
            with_age = true;
        }
        s.begin_transaction().unwrap();
        let mut mine = committed.clone();
        for _ in 0..rng.usize(1..6) {
            let id = rng.i32(0..60);
            let name = ["ann", "Bob", "bob", "cy", "Dee"][rng.usize(..5)].to_owned();
            let age = rng.i16(-3..4);
            let email = (rng.u8(..4) != 0).then(|| format!("e{}", rng.u8(..40)));
            let tags: Vec<String> = (0..rng.usize(0..3))
                .map(|_| ["x", "Y", "y", "z"][rng.usize(..4)].to_owned())
                .collect();
            let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            match mine.entry(id) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    t.set_current_index(None).unwrap();
                    t.seek(&[Some(&id.to_le_bytes())], Seek::Eq).unwrap();
                    if rng.bool() {
                        t.delete().unwrap();
                        e.remove();
                    } else {
                        t.prepare_update(Prep::Replace).unwrap();
                        t.set_column(t.column_id("age").unwrap(), Some(&age.to_le_bytes()))
                            .unwrap();
                        t.update().unwrap();
                        e.get_mut().1 = age;
                    }
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    match try_insert(&mut t, id, &name, age, email.as_deref(), &tag_refs) {
                        Ok(_) => {
                            v.insert((name, age, email, tags));
                        }
                        Err(e) => assert_eq!(e.kind(), ese::ErrorKind::KeyDuplicate),
                    }
                }
            }
        }
        // A crash in the middle of the transaction: none of it survives.
        images.push((
            fs.crash(CrashModel::ALL[round % CrashModel::ALL.len()], round as u64),
            committed.clone(),
            with_age,
        ));
        if rng.u8(..5) == 0 {
            s.rollback(RollbackGrbit::empty()).unwrap();
        } else {
            s.commit_transaction(CommitGrbit::empty()).unwrap();
            committed = mine;
        }
        images.push((
            fs.crash(
                CrashModel::ALL[(round + 1) % CrashModel::ALL.len()],
                round as u64,
            ),
            committed.clone(),
            with_age,
        ));
    }
    assert!(committed.len() > 10);
    for (n, (img, want, with_age)) in images.into_iter().enumerate() {
        let inst = instance(&img);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        s.attach_database(DB, ese::AttachDatabaseGrbit::empty())
            .unwrap();
        let db = s.open_database(DB).unwrap();
        s.check_database(db)
            .unwrap_or_else(|e| panic!("image {n}: integrity: {e}"));
        let mut t = s.open_table(db, "people").unwrap();
        let lower = |s: &str| s.to_ascii_lowercase();
        assert_eq!(
            walk(&mut t),
            want.keys().copied().collect::<Vec<_>>(),
            "image {n}"
        );
        t.set_current_index(Some("by_name")).unwrap();
        let want_name = order(
            want.iter()
                .map(|(id, r)| ((lower(&r.0), std::cmp::Reverse(r.1)), *id))
                .collect(),
        );
        assert_eq!(walk(&mut t), want_name, "image {n}: by_name");
        t.set_current_index(Some("by_email")).unwrap();
        let want_email = order(
            want.iter()
                .filter_map(|(id, r)| r.2.as_ref().map(|e| (lower(e), *id)))
                .collect(),
        );
        assert_eq!(walk(&mut t), want_email, "image {n}: by_email");
        t.set_current_index(Some("by_tag")).unwrap();
        let want_tag = order(
            want.iter()
                .flat_map(|(id, r)| {
                    let mut tags: Vec<String> = r.3.iter().map(|x| lower(x)).collect();
                    tags.sort();
                    tags.dedup();
                    tags.into_iter().map(move |x| (x, *id))
                })
                .collect(),
        );
        assert_eq!(walk(&mut t), want_tag, "image {n}: by_tag");
        if with_age {
            t.set_current_index(Some("by_age")).unwrap();
            let want_age = order(want.iter().map(|(id, r)| (r.1, *id)).collect());
            assert_eq!(walk(&mut t), want_age, "image {n}: by_age");
        } else {
            assert_eq!(
                code(t.set_current_index(Some("by_age"))),
                -1404,
                "image {n}"
            );
        }
        drop(t);
        s.end(ese::EndSessionGrbit::empty()).unwrap();
        inst.term(ese::TermGrbit::empty()).unwrap();
    }
}

/// Cursors and temporary tables can move to another thread (their session's rules apply
/// there), and can be shared by reference like a session.
#[test]
fn cursor_auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Table>();
    send_sync::<ese::TempTable>();
    send_sync::<SeekResult>();
}
