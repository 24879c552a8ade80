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
