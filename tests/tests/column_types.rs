//! Every JET column type through the public API: extreme values round-trip (minimum and
//! maximum, NaN and infinities for floating types, shortest, zero-length and longest values
//! for variable types), null, default values, multi-valued order in tagged columns, wrong buffer sizes
//! (`InvalidBufferSize`, -1047) and values over the column's limit (`ColumnTooBig`, -1506);
//! indexes order values of each numeric type numerically, and text compares
//! case-insensitively by default.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{code, running_instance};
use ese::{
    ColumnDef, ColumnGrbit, ColumnType, CommitGrbit, CreateDatabaseGrbit, DbId, IndexCreate,
    IndexGrbit, Move, Prep, Seek, Session, Table, TableCreate,
};

/// The longest long value the tests store: long values stay in the record until separated
/// long values exist, so a record (one page) bounds them.
const LV_MOST: usize = 1_000;

/// Extreme values of a type, as the bytes stored.
fn extremes(t: ColumnType) -> Vec<Vec<u8>> {
    match t {
        ColumnType::Bit => vec![vec![0], vec![1]],
        ColumnType::UnsignedByte => vec![vec![0], vec![u8::MAX]],
        ColumnType::Short => [i16::MIN, -1, 0, i16::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::UnsignedShort => [0, 1, u16::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::Long => [i32::MIN, -1, 0, i32::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::UnsignedLong => [0, 1, u32::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::Currency | ColumnType::LongLong => [i64::MIN, -1, 0, i64::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::UnsignedLongLong => [0, 1, u64::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::IEEESingle => [
            f32::NEG_INFINITY,
            f32::MIN,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
        ]
        .iter()
        .map(|v| v.to_le_bytes().to_vec())
        .collect(),
        ColumnType::IEEEDouble | ColumnType::DateTime => [
            f64::NEG_INFINITY,
            f64::MIN,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ]
        .iter()
        .map(|v| v.to_le_bytes().to_vec())
        .collect(),
        ColumnType::Guid => vec![vec![0; 16], vec![0xFF; 16], (0..16).collect()],
        ColumnType::Binary => vec![vec![0], vec![0xFF; 255], (0..=254).collect()],
        ColumnType::Text => vec![b"a".to_vec(), vec![b'z'; 255]],
        ColumnType::LongBinary => vec![vec![0], vec![0xAB; LV_MOST]],
        ColumnType::LongText => vec![b"x".to_vec(), vec![b'y'; LV_MOST]],
    }
}

/// A value used as the column's default (at most 255 bytes).
fn default_of(t: ColumnType) -> Vec<u8> {
    match t.fixed_size() {
        Some(n) => vec![0x5A; n as usize],
        None => b"the default".to_vec(),
    }
}

fn table_for(t: ColumnType) -> TableCreate {
    TableCreate {
        name: format!("t{}", t as u32),
        columns: vec![
            ColumnDef::new("k", ColumnType::Long),
            ColumnDef::new("v", t),
            ColumnDef::new("mv", t).grbit(ColumnGrbit::TAGGED | ColumnGrbit::MULTI_VALUED),
            ColumnDef::new("d", t).default_value(&default_of(t)),
            ColumnDef::new("small", t).max_size(10),
        ],
        indexes: vec![IndexCreate {
            name: "pk".into(),
            key: "+k\0\0".into(),
            grbit: IndexGrbit::PRIMARY,
            key_most: 0,
        }],
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

fn seek_k(t: &mut Table, k: i32) {
    t.seek(&[Some(&k.to_le_bytes())], Seek::Eq).unwrap();
}

#[test]
fn every_type_round_trips_its_extremes_null_defaults_and_multi_values() {
    let (_inst, _dir, s, db) = setup("coltypes");
    for ty in ColumnType::ALL {
        s.create_table(db, &table_for(ty)).unwrap();
        let mut t = s.open_table(db, &format!("t{}", ty as u32)).unwrap();
        let [k, v, mv, d, small] = ["k", "v", "mv", "d", "small"].map(|c| t.column_id(c).unwrap());
        let values = extremes(ty);
        s.begin_transaction().unwrap();
        for (i, val) in (0i32..).zip(&values) {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(k, Some(&i.to_le_bytes())).unwrap();
            t.set_column(v, Some(val)).unwrap();
            t.update().unwrap();
        }
        // A record with nothing set: null, and the default where there is one.
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(k, Some(&(-1i32).to_le_bytes())).unwrap();
        t.update().unwrap();
        s.commit_transaction(CommitGrbit::empty()).unwrap();
        for (i, val) in (0i32..).zip(&values) {
            seek_k(&mut t, i);
            assert_eq!(
                t.retrieve_column(v).unwrap().as_ref(),
                Some(val),
                "{ty:?} #{i}"
            );
            assert_eq!(t.retrieve_column(d).unwrap(), Some(default_of(ty)));
        }
        seek_k(&mut t, -1);
        assert_eq!(t.retrieve_column(v).unwrap(), None, "{ty:?} null");
        assert_eq!(t.column_value_count(v).unwrap(), 0);
        assert_eq!(t.retrieve_column(mv).unwrap(), None);
        assert_eq!(t.retrieve_column(d).unwrap(), Some(default_of(ty)));
        assert_eq!(t.column_value_count(d).unwrap(), 1);

        // Setting null clears a value; a set value hides the default.
        s.begin_transaction().unwrap();
        seek_k(&mut t, 0);
        t.prepare_update(Prep::Replace).unwrap();
        t.set_column(v, None).unwrap();
        t.set_column(d, Some(&values[0])).unwrap();
        // Multi-valued: values keep the order they were appended in.
        for val in &values {
            t.set_column_itag(mv, Some(val), 0).unwrap();
        }
        t.update().unwrap();
        s.commit_transaction(CommitGrbit::empty()).unwrap();
        seek_k(&mut t, 0);
        assert_eq!(t.retrieve_column(v).unwrap(), None, "{ty:?}");
        assert_eq!(t.retrieve_column(d).unwrap().as_ref(), Some(&values[0]));
        assert_eq!(t.column_value_count(mv).unwrap(), values.len());
        for (i, val) in values.iter().enumerate() {
            assert_eq!(
                t.retrieve_column_itag(mv, i + 1).unwrap().as_ref(),
                Some(val),
                "{ty:?} itag {}",
                i + 1
            );
        }
        assert_eq!(t.retrieve_column_itag(mv, values.len() + 1).unwrap(), None);
        // Replacing value 2 and removing value 1 keep the others in order.
        s.begin_transaction().unwrap();
        t.prepare_update(Prep::Replace).unwrap();
        t.set_column_itag(mv, Some(&values[0]), 2).unwrap();
        t.set_column_itag(mv, None, 1).unwrap();
        assert_eq!(
            code(t.set_column_itag(mv, Some(&values[0]), values.len() + 5)),
            -1518
        );
        t.update().unwrap();
        s.commit_transaction(CommitGrbit::empty()).unwrap();
        seek_k(&mut t, 0);
        let got: Vec<Vec<u8>> = (1..=t.column_value_count(mv).unwrap())
            .map(|i| t.retrieve_column_itag(mv, i).unwrap().unwrap())
            .collect();
        let mut want = values.clone();
        want[1].clone_from(&values[0]);
        want.remove(0);
        assert_eq!(got, want, "{ty:?} multi-values after replace and remove");

        // Wrong sizes and values over the limit.
        t.prepare_update(Prep::Insert).unwrap();
        if let Some(n) = ty.fixed_size() {
            let n = n as usize;
            assert_eq!(code(t.set_column(v, Some(&vec![0; n + 1]))), -1047);
            assert_eq!(code(t.set_column(v, Some(&vec![0; n - 1]))), -1047);
            assert_eq!(code(t.set_column_itag(mv, Some(&vec![0; n + 1]), 0)), -1047);
            // A fixed type ignores the maximum size.
            t.set_column(small, Some(&vec![1; n])).unwrap();
        } else {
            t.set_column(small, Some(&[7; 10])).unwrap();
            assert_eq!(code(t.set_column(small, Some(&[7; 11]))), -1506);
            if !ty.is_long() {
                assert_eq!(code(t.set_column(v, Some(&[1; 256]))), -1506);
                assert_eq!(code(t.set_column_itag(mv, Some(&[1; 256]), 0)), -1506);
            }
        }
        t.prepare_update(Prep::Cancel).unwrap();
        s.check_database(db).unwrap();
    }
}

#[test]
fn definition_limits_per_type() {
    for ty in ColumnType::ALL {
        // A default longer than the column (or the 255-byte limit) is refused.
        let too_long = vec![1u8; 256];
        let def = ColumnDef::new("c", ty).default_value(&too_long);
        assert_eq!(def.validate().unwrap_err().code(), -1524, "{ty:?}");
        // A default of the wrong size for a fixed type is refused.
        if let Some(n) = ty.fixed_size() {
            let wrong = ColumnDef::new("c", ty).default_value(&vec![0; n as usize - 1]);
            assert_eq!(wrong.validate().unwrap_err().code(), -1047, "{ty:?}");
        }
        // A maximum over the type's is refused for variable types.
        if ty.fixed_size().is_none() {
            let over = ColumnDef::new("c", ty).max_size(ty.max_size() + 1);
            assert!(
                ty.is_long() || over.validate().unwrap_err().code() == -1003,
                "{ty:?}"
            );
        }
        // Multi-valued columns must be tagged.
        let area = if ty.is_long() {
            ColumnGrbit::VARIABLE
        } else {
            ColumnGrbit::FIXED
        };
        let mv = ColumnDef::new("c", ty).grbit(area | ColumnGrbit::MULTI_VALUED);
        assert_eq!(mv.validate().unwrap_err().code(), -1509, "{ty:?}");
    }
}

/// The values of `extremes` a numeric index orders, in numeric order (NaN and -0.0 left
/// out: their place is a matter of the normalization, not of the number).
fn ordered(ty: ColumnType) -> Option<Vec<Vec<u8>>> {
    let v = match ty {
        ColumnType::IEEESingle => [f32::NEG_INFINITY, f32::MIN, -1.5, 0.0, 1.5, f32::MAX]
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .collect(),
        ColumnType::IEEEDouble | ColumnType::DateTime => [
            f64::NEG_INFINITY,
            f64::MIN,
            -1.5,
            0.0,
            1.5,
            f64::MAX,
            f64::INFINITY,
        ]
        .iter()
        .map(|v| v.to_le_bytes().to_vec())
        .collect(),
        ColumnType::Bit | ColumnType::Guid | ColumnType::LongBinary | ColumnType::LongText => {
            return None;
        }
        ColumnType::Text => vec![b"Apple".to_vec(), b"banana".to_vec(), b"Cherry".to_vec()],
        ColumnType::Binary => vec![vec![0], (0..=254).collect(), vec![0xFF; 255]],
        _ => extremes(ty),
    };
    Some(v)
}

#[test]
fn indexes_order_each_type_by_value() {
    let (_inst, _dir, s, db) = setup("coltypes-order");
    for ty in ColumnType::ALL {
        let Some(values) = ordered(ty) else { continue };
        let mut create = table_for(ty);
        create.indexes.push(IndexCreate {
            name: "by_v".into(),
            key: "+v\0\0".into(),
            grbit: IndexGrbit::empty(),
            key_most: 0,
        });
        create.indexes.push(IndexCreate {
            name: "by_v_desc".into(),
            key: "-v\0\0".into(),
            grbit: IndexGrbit::empty(),
            key_most: 0,
        });
        s.create_table(db, &create).unwrap();
        let mut t = s.open_table(db, &create.name).unwrap();
        let (k, v) = (t.column_id("k").unwrap(), t.column_id("v").unwrap());
        s.begin_transaction().unwrap();
        // Inserted in reverse so the primary order is not the value order.
        for (i, val) in (0i32..).zip(values.iter().rev()) {
            t.prepare_update(Prep::Insert).unwrap();
            t.set_column(k, Some(&i.to_le_bytes())).unwrap();
            t.set_column(v, Some(val)).unwrap();
            t.update().unwrap();
        }
        s.commit_transaction(CommitGrbit::empty()).unwrap();
        for (index, want) in [
            ("by_v", values.clone()),
            ("by_v_desc", values.iter().rev().cloned().collect()),
        ] {
            t.set_current_index(Some(index)).unwrap();
            let mut got = Vec::new();
            let mut r = t.move_to(Move::First);
            while r.is_ok() {
                got.push(t.retrieve_column(v).unwrap().unwrap());
                r = t.move_to(Move::Next);
            }
            assert_eq!(got, want, "{ty:?} {index}");
        }
    }
}

#[test]
fn text_compares_case_insensitively_in_an_index() {
    let (_inst, _dir, s, db) = setup("coltypes-text");
    s.create_table(
        db,
        &TableCreate {
            name: "words".into(),
            columns: vec![
                ColumnDef::new("w", ColumnType::Text).max_size(50),
                ColumnDef::new("lw", ColumnType::LongText),
            ],
            indexes: vec![
                IndexCreate {
                    name: "pk".into(),
                    key: "+w\0\0".into(),
                    grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE,
                    key_most: 0,
                },
                IndexCreate {
                    name: "by_lw".into(),
                    key: "+lw\0\0".into(),
                    grbit: IndexGrbit::UNIQUE,
                    key_most: 0,
                },
            ],
        },
    )
    .unwrap();
    let mut t = s.open_table(db, "words").unwrap();
    let (w, lw) = (t.column_id("w").unwrap(), t.column_id("lw").unwrap());
    for (a, b) in [("Hello", "World"), ("apple", "Pear")] {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(w, Some(a.as_bytes())).unwrap();
        t.set_column(lw, Some(b.as_bytes())).unwrap();
        t.update().unwrap();
    }
    t.seek(&[Some(b"hELLO")], Seek::Eq).unwrap();
    assert_eq!(t.retrieve_column(w).unwrap().unwrap(), b"Hello");
    // The key is case-insensitive, so another case is a duplicate.
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(w, Some(b"HELLO")).unwrap();
    t.set_column(lw, Some(b"other")).unwrap();
    assert_eq!(code(t.update()), -1605);
    t.set_column(w, Some(b"new")).unwrap();
    t.set_column(lw, Some(b"WORLD")).unwrap();
    assert_eq!(code(t.update()), -1605);
    t.prepare_update(Prep::Cancel).unwrap();
    // Order ignores case: apple < Hello.
    t.move_to(Move::First).unwrap();
    assert_eq!(t.retrieve_column(w).unwrap().unwrap(), b"apple");
    t.set_current_index(Some("by_lw")).unwrap();
    t.seek(&[Some(b"pear")], Seek::Eq).unwrap();
    assert_eq!(t.retrieve_column(w).unwrap().unwrap(), b"apple");
}

#[test]
fn zero_length_values_of_variable_types() {
    let (_inst, _dir, s, db) = setup("coltypes-empty");
    for ty in [
        ColumnType::Binary,
        ColumnType::Text,
        ColumnType::LongBinary,
        ColumnType::LongText,
    ] {
        s.create_table(db, &table_for(ty)).unwrap();
        let mut t = s.open_table(db, &format!("t{}", ty as u32)).unwrap();
        let [k, v, mv, d] = ["k", "v", "mv", "d"].map(|c| t.column_id(c).unwrap());
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(k, Some(&0i32.to_le_bytes())).unwrap();
        t.set_column(v, Some(&[])).unwrap();
        t.set_column_itag(mv, Some(&[]), 0).unwrap();
        t.set_column_itag(mv, Some(b"x"), 0).unwrap();
        t.set_column(d, Some(&[])).unwrap();
        t.update().unwrap();
        seek_k(&mut t, 0);
        // `Some(&[])` is a zero-length value (ESE's `JET_bitSetZeroLength`), not null: it
        // counts as a value and hides the default.
        assert_eq!(t.retrieve_column(v).unwrap(), Some(Vec::new()), "{ty:?}");
        assert_eq!(t.column_value_count(v).unwrap(), 1);
        assert_eq!(t.column_value_count(mv).unwrap(), 2);
        assert_eq!(t.retrieve_column_itag(mv, 1).unwrap(), Some(Vec::new()));
        assert_eq!(t.retrieve_column_itag(mv, 2).unwrap(), Some(b"x".to_vec()));
        assert_eq!(t.retrieve_column(d).unwrap(), Some(Vec::new()));
    }
}

/// A fixed Binary column (`JET_bitColumnFixed`) is keyed by its bytes as they are, as ESE
/// normalizes a fixed field: a 24-byte key is 25 bytes (prefix byte + value) instead of 28
/// (groups of 8 with count bytes). The primary and a descending secondary index order the
/// values bytewise, seeks find them, a prefix limit bounds them, and the column comes back from
/// the index key.
#[test]
fn fixed_binary_keys_are_their_bytes() {
    let (_inst, _dir, s, db) = setup("coltypes-fixed-binary");
    let create = TableCreate {
        name: "fb".into(),
        columns: vec![
            ColumnDef::new("k", ColumnType::Binary)
                .max_size(24)
                .grbit(ColumnGrbit::FIXED),
            ColumnDef::new("v", ColumnType::Long),
        ],
        indexes: vec![
            IndexCreate {
                name: "pk".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY,
                key_most: 0,
            },
            IndexCreate {
                name: "by_k_desc".into(),
                key: "-k\0+v\0\0".into(),
                grbit: IndexGrbit::empty(),
                key_most: 0,
            },
        ],
    };
    s.create_table(db, &create).unwrap();
    let mut t = s.open_table(db, "fb").unwrap();
    let (k, v) = (t.column_id("k").unwrap(), t.column_id("v").unwrap());
    let mut keys: Vec<[u8; 24]> = Vec::new();
    let mut state = 7u64;
    for i in 0..300u32 {
        let mut key = [0u8; 24];
        for b in &mut key {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (state >> 56) as u8;
        }
        // Some keys share long prefixes, and some differ only in their last byte.
        if i % 3 == 0
            && let Some(prev) = keys.last()
        {
            key[..20].copy_from_slice(&prev[..20]);
        }
        keys.push(key);
    }
    keys.sort_unstable();
    keys.dedup();
    s.begin_transaction().unwrap();
    for (i, key) in (0i32..).zip(keys.iter().rev()) {
        t.prepare_update(Prep::Insert).unwrap();
        t.set_column(k, Some(key)).unwrap();
        t.set_column(v, Some(&i.to_le_bytes())).unwrap();
        t.update().unwrap();
    }
    s.commit_transaction(CommitGrbit::empty()).unwrap();
    // The primary index: bytewise order, 25-byte keys, the column back from the key.
    let mut got = Vec::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        assert_eq!(
            t.retrieve_key(ese::RetrieveKeyGrbit::empty())
                .unwrap()
                .len(),
            25
        );
        assert_eq!(
            t.retrieve_column_from_index(k).unwrap(),
            t.retrieve_column(k).unwrap()
        );
        got.push(t.retrieve_column(k).unwrap().unwrap());
        r = t.move_to(Move::Next);
    }
    assert_eq!(got, keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
    // Seeks: equal finds each key.
    for key in keys.iter().step_by(7) {
        t.seek(&[Some(key)], Seek::Eq).unwrap();
        assert_eq!(t.retrieve_column(k).unwrap().unwrap(), key);
    }
    // A prefix limit: the first 20 bytes of a key bound every key that starts with them.
    let probe = keys[keys.len() / 2];
    let want: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| k.starts_with(&probe[..20]))
        .map(|k| k.to_vec())
        .collect();
    t.make_key(
        Some(&probe[..20]),
        ese::MakeKeyGrbit::NEW_KEY | ese::MakeKeyGrbit::PARTIAL_COLUMN_START_LIMIT,
    )
    .unwrap();
    t.seek_key(Seek::Ge).unwrap();
    let mut found = Vec::new();
    loop {
        let c = t.retrieve_column(k).unwrap().unwrap();
        if !c.starts_with(&probe[..20]) {
            break;
        }
        found.push(c);
        if t.move_to(Move::Next).is_err() {
            break;
        }
    }
    assert_eq!(found, want);
    // The descending secondary index: reverse bytewise order.
    t.set_current_index(Some("by_k_desc")).unwrap();
    let mut got = Vec::new();
    let mut r = t.move_to(Move::First);
    while r.is_ok() {
        got.push(t.retrieve_column(k).unwrap().unwrap());
        r = t.move_to(Move::Next);
    }
    let mut want: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    want.reverse();
    assert_eq!(got, want);
    // A value of another size is refused at the update, as for every fixed column.
    t.set_current_index(Some("pk")).unwrap();
    t.prepare_update(Prep::Insert).unwrap();
    t.set_column(k, Some(&[1u8; 10])).unwrap();
    t.set_column(v, Some(&0i32.to_le_bytes())).unwrap();
    assert_eq!(code(t.update()), -1047);
}
