//! The engines compared, each behind [`Store`].

use std::path::Path;

use crate::store::{Res, Setup, Store};

pub mod ese_engine;
pub mod fjall_engine;
pub mod lmdb_engine;
pub mod redb_engine;
#[cfg(feature = "rocksdb")]
pub mod rocksdb_engine;
pub mod sled_engine;
pub mod sqlite_engine;

/// Settings shared by every engine.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Records loaded by the bulk load.
    pub elements: usize,
    /// Cache budget in bytes for every engine that has a cache setting.
    pub cache_bytes: u64,
}

/// Every engine this build knows, in table order (this engine first).
pub const ALL: &[&str] = &[
    "ese",
    "redb",
    "lmdb",
    "sled",
    "fjall",
    "sqlite",
    #[cfg(feature = "rocksdb")]
    "rocksdb",
];

/// How engine `name` is set up; `None` for an unknown name.
pub fn setup(name: &str, cfg: &Config) -> Option<Setup> {
    Some(match name {
        "ese" => ese_engine::setup(cfg),
        "redb" => redb_engine::setup(cfg),
        "lmdb" => lmdb_engine::setup(cfg),
        "sled" => sled_engine::setup(cfg),
        "fjall" => fjall_engine::setup(cfg),
        "sqlite" => sqlite_engine::setup(cfg),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => rocksdb_engine::setup(cfg),
        _ => return None,
    })
}

/// Creates engine `name`'s database in the empty directory `dir`.
///
/// # Errors
/// The engine's error; an unknown name.
pub fn open(name: &str, dir: &Path, cfg: &Config) -> Res<Box<dyn Store>> {
    Ok(match name {
        "ese" => Box::new(ese_engine::open(dir, cfg)?),
        "redb" => Box::new(redb_engine::open(dir, cfg)?),
        "lmdb" => Box::new(lmdb_engine::open(dir, cfg)?),
        "sled" => Box::new(sled_engine::open(dir, cfg)?),
        "fjall" => Box::new(fjall_engine::open(dir, cfg)?),
        "sqlite" => Box::new(sqlite_engine::open(dir, cfg)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(rocksdb_engine::open(dir, cfg)?),
        _ => return Err(format!("unknown engine {name:?}").into()),
    })
}
