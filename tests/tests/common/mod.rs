//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use ese::{Instance, Result};
use ese_session::HoldPoint;

/// A running instance in a fresh temporary directory (kept alive by the returned guard).
pub(crate) fn running_instance(name: &str) -> (Instance, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Instance::builder(name)
        .system_path(dir.path())
        .log_path(dir.path())
        .create()
        .expect("create");
    inst.init().expect("init");
    (inst, dir)
}

/// The numeric JET code of an expected error.
pub(crate) fn code<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").code()
}

/// Holds init, term or restore of `inst` at `point` the next time it passes there: returns a
/// receiver that fires when the operation is held, and a barrier that releases it.
pub(crate) fn hold_at(inst: &Instance, point: HoldPoint) -> (mpsc::Receiver<()>, Arc<Barrier>) {
    let (tx, rx) = mpsc::channel();
    let release = Arc::new(Barrier::new(2));
    let r2 = Arc::clone(&release);
    let fired = std::sync::atomic::AtomicBool::new(false);
    inst.set_hold_hook(Some(Box::new(move |p| {
        if p == point && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tx.send(()).expect("test alive");
            r2.wait();
        }
    })));
    (rx, release)
}

/// Rows of an [`id_value_table`]: id → value.
pub(crate) type IdRows = std::collections::BTreeMap<u32, Vec<u8>>;

/// A table `name` with an `UnsignedLong` primary key column `id` and a `Binary` column `v`:
/// the table of the crash and fault sweeps.
pub(crate) fn id_value_table(name: &str) -> ese::TableCreate {
    ese::TableCreate {
        name: name.into(),
        columns: vec![
            ese::ColumnDef::new("id", ese::ColumnType::UnsignedLong),
            ese::ColumnDef::new("v", ese::ColumnType::Binary),
        ],
        indexes: vec![ese::IndexCreate {
            name: "pk".into(),
            key: "+id\0\0".into(),
            grbit: ese::IndexGrbit::PRIMARY,
            key_most: 0,
        }],
    }
}

/// Every row of the [`id_value_table`] `name`, read by a scan of its primary index.
pub(crate) fn read_id_value_rows(s: &ese::Session, db: ese::DbId, name: &str) -> Result<IdRows> {
    let mut t = s.open_table(db, name)?;
    let (id, v) = (t.column_id("id")?, t.column_id("v")?);
    let mut m = IdRows::new();
    let mut r = t.move_to(ese::Move::First);
    loop {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == ese::ErrorKind::NoCurrentRecord => return Ok(m),
            Err(e) => return Err(e),
        }
        let k = u32::from_le_bytes(
            t.retrieve_column(id)?
                .unwrap_or_default()
                .try_into()
                .unwrap_or_default(),
        );
        m.insert(k, t.retrieve_column(v)?.unwrap_or_default());
        r = t.move_to(ese::Move::Next);
    }
}

/// `n` random changes to an [`id_value_table`] on keys `0..keys`, mirrored in `m`: a delete
/// (one time in three) or a replace of an existing row, an insert of a missing one, with values
/// of 1 to 249 bytes.
pub(crate) fn random_id_value_changes(
    t: &mut ese::Table,
    rng: &mut fastrand::Rng,
    m: &mut IdRows,
    n: usize,
    keys: u32,
) -> Result<()> {
    let (id, v) = (t.column_id("id")?, t.column_id("v")?);
    for _ in 0..n {
        let k = rng.u32(0..keys);
        let val = vec![rng.u8(..); rng.usize(1..250)];
        match t.seek(&[Some(&k.to_le_bytes())], ese::Seek::Eq) {
            Ok(()) if rng.u8(0..3) == 0 => {
                t.delete()?;
                m.remove(&k);
            }
            Ok(()) => {
                t.prepare_update(ese::Prep::Replace)?;
                t.set_column(v, Some(&val))?;
                t.update()?;
                m.insert(k, val);
            }
            Err(e) if e.kind() == ese::ErrorKind::RecordNotFound => {
                t.prepare_update(ese::Prep::Insert)?;
                t.set_column(id, Some(&k.to_le_bytes()))?;
                t.set_column(v, Some(&val))?;
                t.update()?;
                m.insert(k, val);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
