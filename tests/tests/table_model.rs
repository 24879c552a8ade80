//! Model test of DDL and DML together: a seeded random sequence of transactions creates,
//! renames and deletes tables, adds and deletes columns of every type (multi-valued tagged
//! columns and defaults included), creates and deletes secondary indexes and inserts, replaces and deletes records with values of
//! every type (long values too), committing or rolling back, with nested levels committed into
//! their parent or rolled back alone. An in-memory model follows every committed change; after
//! every transaction every table is scanned in full, a few records are read by key, and the
//! catalog's table list and each table's columns are compared with the model; a second
//! session holding an older snapshot must keep seeing the model of its snapshot. The run ends
//! with a transaction left open at a crash (`SimFs`, every crash model): recovery must give
//! exactly the model.
//!
//! `ESE_MODEL_STEPS` sets the number of transactions (default 200), `ESE_MODEL_SEED` the
//! seed (default 1).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ese::{
    AttachDatabaseGrbit, ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit,
    DbId, ErrorKind, IndexCreate, IndexGrbit, Instance, Move, Prep, RollbackGrbit, Seek, Session,
    Table, TableCreate,
};
use ese_core::fs::{CrashModel, FileSystem, SimFs};

/// The longest long value (LongBinary, LongText) written: long values over 1 KiB, and the
/// longest ones of a record that would not fit a page, are stored separated in the table's
/// long-value tree, so this is not bounded by the page.
const LV_MOST: usize = 40_000;
/// Records whose in-record values add up to more than this are not written whole (the page
/// bounds a record; a long value counts as the few bytes of its reference, since the engine
/// moves long values out of a record that would not fit): the model test keeps below it and
/// also accepts `RecordTooBig` as a refused update.
const RECORD_BUDGET: usize = 6_000;

const DB: &str = "/data/model.edb";

#[derive(Clone, Debug)]
struct ColModel {
    name: String,
    ty: ColumnType,
    multi: bool,
    /// Maximum size for Binary/Text (0: the type's).
    max: u32,
    default: Option<Vec<u8>>,
}

impl ColModel {
    fn def(&self) -> ColumnDef {
        let mut d = ColumnDef::new(&self.name, self.ty).max_size(self.max);
        if self.multi {
            d = d.grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED);
        }
        if let Some(v) = &self.default {
            d = d.default_value(v);
        }
        d
    }

    fn limit(&self) -> usize {
        match self.ty.fixed_size() {
            Some(n) => n as usize,
            None if self.ty.is_long() => LV_MOST,
            None if self.max == 0 => 255,
            None => self.max as usize,
        }
    }
}

/// A table: its live columns (the key column `k` excluded) and its records by key, each a
/// map column name → values (absent: null).
#[derive(Clone, Debug, Default)]
struct TableModel {
    name: String,
    cols: Vec<ColModel>,
    rows: BTreeMap<i64, BTreeMap<String, Vec<Vec<u8>>>>,
    /// Secondary indexes: (index name, column name), on single-valued columns of short
    /// types, so every record has exactly one entry.
    indexes: Vec<(String, String)>,
}

/// Tables by lower-case name.
type Model = BTreeMap<String, TableModel>;

fn value(rng: &mut fastrand::Rng, c: &ColModel) -> Vec<u8> {
    match c.ty {
        ColumnType::Bit => vec![u8::from(rng.bool())],
        ColumnType::Text | ColumnType::LongText => {
            let n = rng.usize(0..=c.limit());
            (0..n).map(|_| rng.alphanumeric() as u8).collect()
        }
        t => {
            let n = if t.fixed_size().is_some() || rng.u8(0..4) == 0 {
                c.limit()
            } else {
                rng.usize(0..=c.limit().min(64))
            };
            (0..n).map(|_| rng.u8(..)).collect()
        }
    }
}

fn random_column(rng: &mut fastrand::Rng, name: String) -> ColModel {
    let ty = ColumnType::ALL[rng.usize(..ColumnType::ALL.len())];
    let mut c = ColModel {
        name,
        ty,
        multi: rng.u8(0..4) == 0,
        max: if matches!(ty, ColumnType::Binary | ColumnType::Text) && rng.bool() {
            rng.u32(1..=255)
        } else {
            0
        },
        default: None,
    };
    if rng.u8(0..4) == 0 {
        let mut d = value(rng, &c);
        d.truncate(255);
        c.default = Some(d);
    }
    c
}

fn record_size(cols: &[ColModel], row: &BTreeMap<String, Vec<Vec<u8>>>) -> usize {
    row.iter()
        .map(|(name, vals)| {
            let long = cols.iter().any(|c| &c.name == name && c.ty.is_long());
            vals.iter()
                .map(|v| if long { v.len().min(24) } else { v.len() } + 8)
                .sum::<usize>()
        })
        .sum()
}

struct Driver {
    rng: fastrand::Rng,
    s: Session,
    db: DbId,
    model: Model,
    next_name: u32,
}

impl Driver {
    fn open(&self, name: &str) -> Table {
        self.s.open_table(self.db, name).unwrap()
    }

    fn pick_table(&mut self) -> Option<String> {
        let n = self.model.len();
        if n == 0 {
            return None;
        }
        self.model.keys().nth(self.rng.usize(..n)).cloned()
    }

    fn create_table(&mut self) {
        self.next_name += 1;
        let name = format!("T{}", self.next_name);
        let ncols = self.rng.usize(1..6);
        let cols: Vec<ColModel> = (0..ncols)
            .map(|i| random_column(&mut self.rng, format!("c{i}")))
            .collect();
        let mut columns = vec![ColumnDef::new("k", ColumnType::LongLong)];
        columns.extend(cols.iter().map(ColModel::def));
        self.s
            .create_table(
                self.db,
                &TableCreate {
                    name: name.clone(),
                    columns,
                    indexes: vec![IndexCreate {
                        name: "pk".into(),
                        key: "+k\0\0".into(),
                        grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                        key_most: 0,
                    }],
                },
            )
            .unwrap();
        self.model.insert(
            name.to_lowercase(),
            TableModel {
                name,
                cols,
                rows: BTreeMap::new(),
                indexes: Vec::new(),
            },
        );
    }

    fn step(&mut self) {
        if self.model.len() < 2 {
            self.create_table();
            return;
        }
        let Some(key) = self.pick_table() else { return };
        match self.rng.u8(0..100) {
            0..=2 => self.create_table(),
            3..=4 => {
                let name = self.model[&key].name.clone();
                self.s.delete_table(self.db, &name).unwrap();
                self.model.remove(&key);
            }
            5..=6 => {
                self.next_name += 1;
                let new = format!("R{}", self.next_name);
                let name = self.model[&key].name.clone();
                self.s.rename_table(self.db, &name, &new).unwrap();
                let mut tm = self.model.remove(&key).unwrap();
                tm.name.clone_from(&new);
                self.model.insert(new.to_lowercase(), tm);
            }
            7..=9 => {
                self.next_name += 1;
                let c = random_column(&mut self.rng, format!("a{}", self.next_name));
                let mut t = self.open(&self.model[&key].name.clone());
                t.add_column(&c.def()).unwrap();
                self.model.get_mut(&key).unwrap().cols.push(c);
            }
            10..=11 => {
                let tm = &self.model[&key];
                if tm.cols.is_empty() {
                    return;
                }
                let i = self.rng.usize(..tm.cols.len());
                let cname = tm.cols[i].name.clone();
                let mut t = self.open(&tm.name.clone());
                if tm.indexes.iter().any(|(_, c)| *c == cname) {
                    assert_eq!(
                        t.delete_column(&cname).unwrap_err().kind(),
                        ErrorKind::ColumnInUse
                    );
                    return;
                }
                t.delete_column(&cname).unwrap();
                let tm = self.model.get_mut(&key).unwrap();
                tm.cols.remove(i);
                for row in tm.rows.values_mut() {
                    row.remove(&cname);
                }
            }
            12..=13 => {
                // An index on a single-valued column of a short type.
                let tm = &self.model[&key];
                let free: Vec<&ColModel> = tm
                    .cols
                    .iter()
                    .filter(|c| !c.multi && !c.ty.is_long())
                    .filter(|c| !tm.indexes.iter().any(|(_, ic)| *ic == c.name))
                    .collect();
                if free.is_empty() {
                    return;
                }
                let col = free[self.rng.usize(..free.len())].name.clone();
                self.next_name += 1;
                let name = format!("ix{}", self.next_name);
                let dir = if self.rng.bool() { '+' } else { '-' };
                let mut t = self.open(&tm.name.clone());
                t.create_index(&IndexCreate {
                    name: name.clone(),
                    key: format!("{dir}{col}\0\0"),
                    grbit: IndexGrbit::empty(),
                    key_most: 0,
                })
                .unwrap();
                self.model.get_mut(&key).unwrap().indexes.push((name, col));
            }
            14 => {
                let tm = &self.model[&key];
                if tm.indexes.is_empty() {
                    return;
                }
                let i = self.rng.usize(..tm.indexes.len());
                let mut t = self.open(&tm.name.clone());
                t.delete_index(&tm.indexes[i].0).unwrap();
                self.model.get_mut(&key).unwrap().indexes.remove(i);
            }
            _ => self.dml(&key),
        }
    }

    /// An insert, replace or delete on table `key`.
    fn dml(&mut self, key: &str) {
        let tm = self.model[key].clone();
        let mut t = self.open(&tm.name);
        let k = self.rng.i64(-40..40);
        let exists = tm.rows.contains_key(&k);
        match t.seek(&[Some(&k.to_le_bytes())], Seek::Eq) {
            Ok(()) => assert!(exists, "{}: key {k} found but not in the model", tm.name),
            Err(e) if e.kind() == ErrorKind::RecordNotFound => {
                assert!(!exists, "{}: key {k} in the model but not found", tm.name);
            }
            Err(e) => panic!("seek: {e}"),
        }
        if exists && self.rng.u8(0..4) == 0 {
            t.delete().unwrap();
            self.model.get_mut(key).unwrap().rows.remove(&k);
            return;
        }
        let mut row = tm.rows.get(&k).cloned().unwrap_or_default();
        if exists {
            t.prepare_update(Prep::Replace).unwrap();
        } else {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(t.column_id("k").unwrap(), Some(&k.to_le_bytes()))
                .unwrap();
        }
        for c in &tm.cols {
            if self.rng.bool() {
                continue;
            }
            let id = t.column_id(&c.name).unwrap();
            let vals = row.entry(c.name.clone()).or_default();
            if c.multi {
                let n = vals.len();
                match self.rng.u8(0..3) {
                    0 if n > 0 => {
                        let i = self.rng.usize(..n);
                        t.set_column_itag(id, None, i + 1).unwrap();
                        vals.remove(i);
                    }
                    1 if n > 0 => {
                        let i = self.rng.usize(..n);
                        let v = value(&mut self.rng, c);
                        t.set_column_itag(id, Some(&v), i + 1).unwrap();
                        vals[i] = v;
                    }
                    _ => {
                        let v = value(&mut self.rng, c);
                        t.set_column_itag(id, Some(&v), 0).unwrap();
                        vals.push(v);
                    }
                }
            } else if self.rng.u8(0..5) == 0 {
                t.set_column(id, None).unwrap();
                vals.clear();
            } else {
                let v = value(&mut self.rng, c);
                t.set_column(id, Some(&v)).unwrap();
                *vals = vec![v];
            }
            if vals.is_empty() {
                row.remove(&c.name);
            }
        }
        if record_size(&tm.cols, &row) > RECORD_BUDGET {
            t.prepare_update(Prep::Cancel).unwrap();
            return;
        }
        match t.update() {
            Ok(_) => {
                self.model.get_mut(key).unwrap().rows.insert(k, row);
            }
            Err(e) if e.kind() == ErrorKind::RecordTooBig => {
                t.prepare_update(Prep::Cancel).unwrap();
            }
            Err(e) => panic!("update of {} key {k}: {e}", tm.name),
        }
    }
}

/// The values a record shows for column `c`: its own, or the default.
fn shown(c: &ColModel, vals: Option<&Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    match vals {
        Some(v) if !v.is_empty() => v.clone(),
        _ => c.default.iter().cloned().collect(),
    }
}

fn read_values(t: &Table, c: &ColModel) -> Vec<Vec<u8>> {
    let id = t.column_id(&c.name).unwrap();
    let n = t.column_value_count(id).unwrap();
    if !c.multi {
        assert!(n <= 1, "{}: {n} values", c.name);
    }
    (1..=n)
        .map(|i| t.retrieve_column_itag(id, i).unwrap().unwrap())
        .collect()
}

/// Compares the database with the model: the table list, every table's columns and every
/// record (full scans), and point reads of random keys.
fn check(s: &Session, db: DbId, model: &Model, rng: &mut fastrand::Rng, what: &str) {
    let names: Vec<String> = model.values().map(|t| t.name.clone()).collect();
    assert_eq!(s.table_names(db).unwrap(), names, "{what}: tables");
    for tm in model.values() {
        let mut t = s.open_table(db, &tm.name).unwrap();
        let cols: Vec<String> = t
            .columns()
            .unwrap()
            .into_iter()
            .filter(|c| c.name != "k")
            .map(|c| c.name)
            .collect();
        let mut want: Vec<String> = tm.cols.iter().map(|c| c.name.clone()).collect();
        let mut got = cols;
        want.sort();
        got.sort();
        assert_eq!(got, want, "{what}: columns of {}", tm.name);
        for c in &tm.cols {
            let info = t.column_info(&c.name).unwrap();
            assert_eq!(
                (info.coltyp, info.default.as_ref()),
                (c.ty, c.default.as_ref()),
                "{what}: {}.{}",
                tm.name,
                c.name
            );
        }
        let kid = t.column_id("k").unwrap();
        let mut keys = Vec::new();
        let mut r = t.move_to(Move::First);
        while r.is_ok() {
            let k =
                i64::from_le_bytes(t.retrieve_column(kid).unwrap().unwrap().try_into().unwrap());
            let row = tm
                .rows
                .get(&k)
                .unwrap_or_else(|| panic!("{what}: {} has key {k}, the model not", tm.name));
            for c in &tm.cols {
                assert_eq!(
                    read_values(&t, c),
                    shown(c, row.get(&c.name)),
                    "{what}: {} key {k} column {} ({:?})",
                    tm.name,
                    c.name,
                    c.ty
                );
            }
            keys.push(k);
            r = t.move_to(Move::Next);
        }
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NoCurrentRecord);
        let want: Vec<i64> = tm.rows.keys().copied().collect();
        assert_eq!(keys, want, "{what}: keys of {}", tm.name);
        for _ in 0..3 {
            let k = rng.i64(-40..40);
            match t.seek(&[Some(&k.to_le_bytes())], Seek::Eq) {
                Ok(()) => {
                    let row = &tm.rows[&k];
                    for c in &tm.cols {
                        assert_eq!(read_values(&t, c), shown(c, row.get(&c.name)));
                    }
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::RecordNotFound);
                    assert!(!tm.rows.contains_key(&k), "{what}: {} key {k}", tm.name);
                }
            }
        }
        assert_eq!(
            t.table_info().unwrap().records,
            tm.rows.len() as u64,
            "{what}: record count of {}",
            tm.name
        );
        // Every secondary index holds one entry per record.
        let mut ixs: Vec<String> = t.indexes().unwrap().into_iter().map(|i| i.name).collect();
        let mut want_ixs: Vec<String> = tm.indexes.iter().map(|(n, _)| n.clone()).collect();
        want_ixs.push("pk".into());
        ixs.sort();
        want_ixs.sort();
        assert_eq!(ixs, want_ixs, "{what}: indexes of {}", tm.name);
        for (ix, _) in &tm.indexes {
            t.set_current_index(Some(ix)).unwrap();
            let mut keys = Vec::new();
            let mut r = t.move_to(Move::First);
            while r.is_ok() {
                keys.push(i64::from_le_bytes(
                    t.retrieve_column(kid).unwrap().unwrap().try_into().unwrap(),
                ));
                r = t.move_to(Move::Next);
            }
            keys.sort_unstable();
            let want: Vec<i64> = tm.rows.keys().copied().collect();
            assert_eq!(keys, want, "{what}: entries of index {ix} of {}", tm.name);
        }
    }
}

fn instance(fs: &SimFs) -> Instance {
    let fsd: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Instance::builder("model")
        .system_path("/sys")
        .log_path("/log")
        .log_file_size_kib(256)
        .file_system(fsd)
        .create()
        .unwrap()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_ddl_and_dml_match_the_model_and_survive_a_crash() {
    let steps = env_u64("ESE_MODEL_STEPS", 200);
    let seed = env_u64("ESE_MODEL_SEED", 1);
    let fs = SimFs::new();
    let inst = instance(&fs);
    inst.init().unwrap();
    let s = inst.begin_session().unwrap();
    let db = s.create_database(DB, CreateDatabaseGrbit::empty()).unwrap();
    let mut d = Driver {
        rng: fastrand::Rng::with_seed(seed),
        s: s.clone(),
        db,
        model: Model::new(),
        next_name: 0,
    };
    let mut check_rng = fastrand::Rng::with_seed(seed ^ 0x5EED);
    let (mut commits, mut rollbacks, mut nested) = (0, 0, 0);
    // A second session holding a snapshot across several of the writer's transactions: it
    // must keep seeing the tables, columns and records of its snapshot (the trees of tables
    // deleted since are not freed under it).
    let reader = inst.begin_session().unwrap();
    let rdb = reader.open_database(DB).unwrap();
    let mut snapshot: Option<Model> = None;
    let mut snapshot_checks = 0;
    for n in 0..steps {
        match &snapshot {
            None if d.rng.u8(0..8) == 0 => {
                reader.begin_transaction().unwrap();
                snapshot = Some(d.model.clone());
            }
            Some(m) if d.rng.u8(0..3) == 0 => {
                check(&reader, rdb, m, &mut check_rng, &format!("snapshot at {n}"));
                snapshot_checks += 1;
                if d.rng.bool() {
                    reader.commit_transaction(CommitGrbit::empty()).unwrap();
                    snapshot = None;
                }
            }
            _ => {}
        }
        let saved = d.model.clone();
        s.begin_transaction().unwrap();
        for _ in 0..d.rng.usize(1..8) {
            d.step();
        }
        if d.rng.u8(0..3) == 0 {
            // A nested level: committed into its parent or rolled back alone (twice deep
            // sometimes).
            nested += 1;
            let inner_saved = d.model.clone();
            s.begin_transaction().unwrap();
            for _ in 0..d.rng.usize(1..5) {
                d.step();
            }
            if d.rng.bool() {
                let deeper = d.model.clone();
                s.begin_transaction().unwrap();
                d.step();
                s.rollback(RollbackGrbit::empty()).unwrap();
                d.model = deeper;
            }
            if d.rng.bool() {
                s.commit_transaction(CommitGrbit::empty()).unwrap();
            } else {
                s.rollback(RollbackGrbit::empty()).unwrap();
                d.model = inner_saved;
            }
        }
        if d.rng.u8(0..4) == 0 {
            s.rollback(RollbackGrbit::empty()).unwrap();
            d.model = saved;
            rollbacks += 1;
        } else {
            s.commit_transaction(CommitGrbit::empty()).unwrap();
            commits += 1;
        }
        assert_eq!(s.transaction_level().unwrap(), 0);
        check(
            &s,
            db,
            &d.model,
            &mut check_rng,
            &format!("after transaction {n}"),
        );
    }
    if snapshot.is_some() {
        reader.commit_transaction(CommitGrbit::empty()).unwrap();
    }
    s.check_database(db).unwrap();
    // A transaction open at the crash: recovery undoes it.
    s.begin_transaction().unwrap();
    let committed = d.model.clone();
    for _ in 0..10 {
        d.step();
    }
    let images: Vec<(CrashModel, SimFs)> = CrashModel::ALL
        .iter()
        .map(|m| (*m, fs.crash(*m, seed)))
        .collect();
    fs.set_power_cut(Some(0));
    drop(d);
    drop((s, reader));
    drop(inst);

    for (model, image) in images {
        let what = format!("after a crash ({model:?})");
        let inst = instance(&image);
        inst.init().unwrap();
        let s = inst.begin_session().unwrap();
        s.attach_database(DB, AttachDatabaseGrbit::empty()).unwrap();
        let db = s.open_database(DB).unwrap();
        check(&s, db, &committed, &mut check_rng, &what);
        s.check_database(db).unwrap();
    }
    // Long values over 1 KiB are stored separated: the run must have some at the end.
    let separated = committed
        .values()
        .flat_map(|t| {
            t.rows.values().flat_map(move |row| {
                row.iter()
                    .filter(|(name, _)| t.cols.iter().any(|c| &c.name == *name && c.ty.is_long()))
                    .flat_map(|(_, vals)| vals.iter().filter(|v| v.len() > 1024))
            })
        })
        .count();
    println!(
        "model: {steps} transactions ({commits} committed, {rollbacks} rolled back, {nested} \
         with a nested level), {snapshot_checks} checks of an older snapshot, {} tables, {} \
         records, {separated} long values over 1 KiB and {} secondary indexes at the end",
        committed.len(),
        committed.values().map(|t| t.rows.len()).sum::<usize>(),
        committed.values().map(|t| t.indexes.len()).sum::<usize>()
    );
    assert!(separated > 0, "the run wrote no long value over 1 KiB");
}
