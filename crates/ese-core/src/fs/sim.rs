//! [`SimFs`]: an in-memory file system that simulates power loss and I/O faults, for tests.
//!
//! Every crash test of the engine runs through this module, so its semantics are stated here
//! precisely; [`OsFs`](super::OsFs) and `SimFs` pass the same trait test suite.
//!
//! # Model
//! - **Inodes and directory entries are separate.** A directory maps names to inodes (files)
//!   or to other directories. Several names may refer to the same inode (hard links); a
//!   removed file stays readable and writable through the handles still open on it.
//! - **Each inode** holds its *live* bytes (what reads see), its *durable* bytes (what survives
//!   a power loss for sure) and the list of its *pending data operations* (each write with its
//!   offset and bytes, each `set_len`), in the order they were made. [`File::sync_data`] applies
//!   the pending operations to the durable bytes and empties the list.
//! - **Each directory** holds its live entries and its durable entries. Creating a file (an
//!   `open` with `create` on a missing name), [`rename`](FileSystem::rename),
//!   [`remove_file`](FileSystem::remove_file) and [`hard_link`](FileSystem::hard_link) change
//!   only the live entries and append to one global, ordered list of pending directory
//!   changes; [`sync_dir`](FileSystem::sync_dir) makes every pending change of *that*
//!   directory durable. A rename across two directories changes both, and each half becomes
//!   durable with its own directory.
//! - [`create_dir_all`](FileSystem::create_dir_all) follows the trait's contract ("each
//!   durable in its parent") the way [`OsFs`](super::OsFs) implements it: for each missing
//!   directory it performs one `CreateDir` operation and then one `SyncDir` of the parent, both
//!   counted, so a power cut between the two leaves the new directory non-durable.
//! - Paths are sequences of components resolved against the root `/` (a relative path is
//!   relative to `/`); `.` is ignored, `..` goes to the parent (lexically; there are no
//!   symlinks). Directories cannot be renamed or removed.
//! - Files are limited to 4 GiB (`MAX_FILE_LEN`); a write or `set_len` beyond fails with
//!   `DiskFull` and changes nothing.
//!
//! # Locks
//! [`Lock::Exclusive`] conflicts with any other shared or exclusive lock held on the same inode
//! by a live handle, whatever name it was opened through; [`Lock::Shared`] conflicts with an
//! exclusive one. A conflicting open fails with `FileAccessDenied`. Dropping a handle releases
//! its lock.
//!
//! # Operation counting, faults and power cuts
//! Every operation has an [`OpKind`]. [`SimFs::op_counts`] counts attempts per kind (reads
//! included: [`File::read_at`] is a `Read`; `len`, `exists` and `list` are not counted).
//! [`SimFs::op_count`] counts the state-changing kinds only (everything but `Read`); it is the
//! index used by [`SimFs::set_power_cut`], so a test can cut the power at every I/O point in
//! turn. An operation that fails validation (missing file, read-only handle, ...) is not
//! counted; one that fails by an injected [`Fault`] is. All counters live under the same lock
//! as the state, so they are deterministic for a deterministic sequence of calls.
//!
//! - [`SimFs::inject_fault`]: the `nth` operation of a kind (counted from the injection) fails,
//!   once or from then on, with EIO (`DiskIO`) or ENOSPC (`DiskFull`), and changes nothing.
//! - [`SimFs::set_power_cut`]`(Some(k))`: once [`SimFs::op_count`] reaches `k`, every
//!   operation, reads included, fails with an EIO-like error (`DiskIO`) and changes nothing;
//!   [`SimFs::crash`] then sees the state as it was before operation `k`.
//!
//! # Crash models
//! [`SimFs::crash`] builds a new, independent file system from the durable state plus a
//! subset of the pending operations chosen by a [`fastrand::Rng`] seeded with `seed`
//! (deterministic for the same state, model and seed):
//! - [`CrashModel::DropAll`]: every pending data and directory operation is lost.
//! - [`CrashModel::RandomSubset`]: each pending data operation is independently kept or
//!   dropped, and the kept ones are applied in a random order (writes may be reordered); all
//!   pending directory changes survive, in order.
//! - [`CrashModel::TornSectors`]: each pending write is split at absolute 512-byte sector
//!   boundaries of the file; each piece is independently kept, dropped or replaced by random
//!   bytes (within the written range only); each `set_len` is kept or dropped; everything kept
//!   is applied in a random order. All pending directory changes survive.
//! - [`CrashModel::DirOpsLost`]: data as `RandomSubset`; of the pending directory operations,
//!   a random prefix in global order (possibly empty, possibly all) survives and the rest is
//!   undone: a file whose create is undone disappears, an undone rename leaves the file under
//!   its old name, an undone remove brings the file back.
//!
//! The data models apply to every inode that is still reachable after the directory step,
//! including one brought back by an undone remove. Inodes and directories that no surviving
//! entry reaches vanish.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{File, FileSystem, Lock, OpenOptions};
use crate::error::{Error, ErrorKind, Result};

/// The sector size at which [`CrashModel::TornSectors`] tears writes: 512 bytes, the smallest
/// unit that disks write atomically (ESE's log sector size).
const SECTOR: u64 = 512;

/// The largest file [`SimFs`] holds, in bytes (4 GiB). The whole image lives in memory twice
/// (live and durable), so a bound keeps a stray huge offset from exhausting memory; writes
/// beyond fail with `DiskFull`.
const MAX_FILE_LEN: u64 = 1 << 32;

/// The id of the root directory.
const ROOT: u64 = 0;

/// How [`SimFs::crash`] decides what survives a power loss (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashModel {
    /// Nothing that was not made durable survives.
    DropAll,
    /// Each pending data operation is kept or dropped independently, applied in random order;
    /// pending directory operations all survive.
    RandomSubset,
    /// Pending writes land partially, per 512-byte sector, and a torn sector may hold garbage;
    /// pending directory operations all survive.
    TornSectors,
    /// Data as [`CrashModel::RandomSubset`]; only a random prefix of the pending directory
    /// operations survives.
    DirOpsLost,
}

impl CrashModel {
    /// Every model, for tests that sweep them all.
    pub const ALL: [CrashModel; 4] = [
        CrashModel::DropAll,
        CrashModel::RandomSubset,
        CrashModel::TornSectors,
        CrashModel::DirOpsLost,
    ];
}

/// The kind of an operation, for counting ([`OpCounts`]) and fault injection ([`Fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`File::read_at`] (and so each step of [`File::read_exact_at`]).
    Read,
    /// [`File::write_all_at`].
    Write,
    /// [`File::set_len`].
    SetLen,
    /// [`File::sync_data`].
    Sync,
    /// An [`FileSystem::open`] that creates a missing file.
    Create,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::remove_file`].
    Remove,
    /// [`FileSystem::hard_link`].
    Link,
    /// The creation of one directory by [`FileSystem::create_dir_all`].
    CreateDir,
    /// [`FileSystem::sync_dir`], and the parent sync after each directory created by
    /// [`FileSystem::create_dir_all`].
    SyncDir,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 10] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::SetLen,
        OpKind::Sync,
        OpKind::Create,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::Link,
        OpKind::CreateDir,
        OpKind::SyncDir,
    ];
}

/// The error an injected [`Fault`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// An I/O error (EIO), reported as `DiskIO`.
    Eio,
    /// No space left on the device (ENOSPC), reported as `DiskFull`.
    Enospc,
}

impl FaultError {
    fn to_io(self) -> io::Error {
        match self {
            FaultError::Eio => io::Error::other("simulated EIO (injected fault)"),
            FaultError::Enospc => io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated ENOSPC (injected fault)",
            ),
        }
    }
}

/// A fault to inject with [`SimFs::inject_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The kind of operation that fails.
    pub kind: OpKind,
    /// Which operation of that kind fails: 0-based, counted among the operations of `kind`
    /// attempted from the moment of injection.
    pub nth: u64,
    /// The error it fails with.
    pub error: FaultError,
    /// `false`: only that operation fails; `true`: that operation and every later one of the
    /// same kind fail.
    pub persistent: bool,
}

impl Fault {
    /// The `nth` operation of `kind` from now fails with `error`; the next one succeeds.
    pub const fn once(kind: OpKind, nth: u64, error: FaultError) -> Fault {
        Fault {
            kind,
            nth,
            error,
            persistent: false,
        }
    }

    /// The `nth` operation of `kind` from now and every later one fail with `error`.
    pub const fn from_then_on(kind: OpKind, nth: u64, error: FaultError) -> Fault {
        Fault {
            kind,
            nth,
            error,
            persistent: true,
        }
    }
}

/// How many operations of each kind a [`SimFs`] has attempted (see [`SimFs::op_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// [`OpKind::Read`] operations.
    pub reads: u64,
    /// [`OpKind::Write`] operations.
    pub writes: u64,
    /// [`OpKind::SetLen`] operations.
    pub set_lens: u64,
    /// [`OpKind::Sync`] operations.
    pub syncs: u64,
    /// [`OpKind::Create`] operations.
    pub creates: u64,
    /// [`OpKind::Rename`] operations.
    pub renames: u64,
    /// [`OpKind::Remove`] operations.
    pub removes: u64,
    /// [`OpKind::Link`] operations.
    pub links: u64,
    /// [`OpKind::CreateDir`] operations.
    pub create_dirs: u64,
    /// [`OpKind::SyncDir`] operations.
    pub sync_dirs: u64,
}

impl OpCounts {
    /// The counter of `kind`.
    pub const fn get(&self, kind: OpKind) -> u64 {
        match kind {
            OpKind::Read => self.reads,
            OpKind::Write => self.writes,
            OpKind::SetLen => self.set_lens,
            OpKind::Sync => self.syncs,
            OpKind::Create => self.creates,
            OpKind::Rename => self.renames,
            OpKind::Remove => self.removes,
            OpKind::Link => self.links,
            OpKind::CreateDir => self.create_dirs,
            OpKind::SyncDir => self.sync_dirs,
        }
    }

    fn slot_mut(&mut self, kind: OpKind) -> &mut u64 {
        match kind {
            OpKind::Read => &mut self.reads,
            OpKind::Write => &mut self.writes,
            OpKind::SetLen => &mut self.set_lens,
            OpKind::Sync => &mut self.syncs,
            OpKind::Create => &mut self.creates,
            OpKind::Rename => &mut self.renames,
            OpKind::Remove => &mut self.removes,
            OpKind::Link => &mut self.links,
            OpKind::CreateDir => &mut self.create_dirs,
            OpKind::SyncDir => &mut self.sync_dirs,
        }
    }
}

/// What a directory entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir(u64),
}

#[derive(Debug, Default, Clone)]
struct Dir {
    live: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
}

/// One pending change of one directory entry; `op` groups the changes of one operation (a
/// rename changes two entries) so that [`CrashModel::DirOpsLost`] keeps or undoes it whole.
#[derive(Debug)]
struct DirChange {
    op: u64,
    dir: u64,
    name: String,
    after: Option<Node>,
}

#[derive(Debug)]
enum DataOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl DataOp {
    /// The file length this operation needs room for.
    fn end(&self) -> u64 {
        match self {
            DataOp::Write { offset, bytes } => offset.saturating_add(bytes.len() as u64),
            DataOp::SetLen(len) => *len,
        }
    }
}

#[derive(Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<DataOp>,
    handles: u64,
    shared_locks: u64,
    exclusive: bool,
}

#[derive(Debug)]
struct ArmedFault {
    fault: Fault,
    /// The kind's counter when the fault was injected.
    base: u64,
}

/// Makes room for `end` bytes in `img` without aborting on allocation failure.
fn reserve(img: &mut Vec<u8>, end: u64) -> bool {
    let Ok(end) = usize::try_from(end) else {
        return false;
    };
    img.try_reserve(end.saturating_sub(img.len())).is_ok()
}

/// Writes `bytes` at `offset`, zero-filling a gap. The caller has reserved room (`reserve`).
fn put(img: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let (Ok(start), Some(end)) = (
        usize::try_from(offset),
        usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(bytes.len())),
    ) else {
        return;
    };
    if end > img.len() {
        img.resize(end, 0);
    }
    if let Some(dst) = img.get_mut(start..end) {
        dst.copy_from_slice(bytes);
    }
}

fn set_len(img: &mut Vec<u8>, len: u64) {
    if let Ok(len) = usize::try_from(len) {
        img.resize(len, 0);
    }
}

fn apply(img: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { offset, bytes } => put(img, *offset, bytes),
        DataOp::SetLen(len) => set_len(img, *len),
    }
}

fn io_at(kind: io::ErrorKind, message: &str, path: &Path) -> Error {
    Error::from_io_at(io::Error::new(kind, message.to_owned()), path)
}

fn not_found(path: &Path) -> Error {
    Error::new(ErrorKind::FileNotFound)
        .with_path(path)
        .with_message("no such file or directory")
}

fn is_a_directory(path: &Path) -> Error {
    Error::new(ErrorKind::FileInvalidType)
        .with_path(path)
        .with_message("is a directory")
}

fn read_only(path: &Path) -> Error {
    Error::new(ErrorKind::FileAccessDenied)
        .with_path(path)
        .with_message("the file is open read-only")
}

fn too_large(path: &Path) -> Error {
    io_at(
        io::ErrorKind::StorageFull,
        "the simulated file would exceed SimFs's 4 GiB limit",
        path,
    )
}

/// Splits `path` into its normal components (see the module docs).
fn components(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => match name.to_str() {
                Some(s) => out.push(s.to_owned()),
                None => {
                    return Err(Error::new(ErrorKind::InvalidPath)
                        .with_path(path)
                        .with_message("SimFs paths must be UTF-8"));
                }
            },
        }
    }
    Ok(out)
}

/// The whole simulated disk; one mutex around it (a test file system: correctness first).
struct State {
    inodes: BTreeMap<u64, Inode>,
    dirs: BTreeMap<u64, Dir>,
    next_id: u64,
    /// Pending directory changes, in global order.
    dir_log: Vec<DirChange>,
    next_dir_op: u64,
    op_count: u64,
    counts: OpCounts,
    faults: Vec<ArmedFault>,
    power_cut: Option<u64>,
}

impl State {
    fn new() -> State {
        State {
            inodes: BTreeMap::new(),
            dirs: BTreeMap::from([(ROOT, Dir::default())]),
            next_id: ROOT + 1,
            dir_log: Vec::new(),
            next_dir_op: 0,
            op_count: 0,
            counts: OpCounts::default(),
            faults: Vec::new(),
            power_cut: None,
        }
    }

    fn powered_off(&self) -> bool {
        self.power_cut.is_some_and(|at| self.op_count >= at)
    }

    fn check_power(&self, path: &Path) -> Result<()> {
        if self.powered_off() {
            return Err(Error::from_io_at(
                io::Error::other("simulated power loss: the disk is off"),
                path,
            ));
        }
        Ok(())
    }

    /// Starts an operation of `kind`: checks the power, counts it, and fails it if a fault
    /// says so. Nothing may be changed before this returns `Ok`.
    fn begin(&mut self, kind: OpKind, path: &Path) -> Result<()> {
        self.check_power(path)?;
        let slot = self.counts.slot_mut(kind);
        let n = *slot;
        *slot = slot.saturating_add(1);
        if kind != OpKind::Read {
            self.op_count = self.op_count.saturating_add(1);
        }
        for armed in &self.faults {
            let f = armed.fault;
            if f.kind != kind {
                continue;
            }
            if let Some(rel) = n.checked_sub(armed.base)
                && (rel == f.nth || (f.persistent && rel > f.nth))
            {
                return Err(Error::from_io_at(f.error.to_io(), path));
            }
        }
        Ok(())
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    fn entry(&self, dir: u64, name: &str) -> Option<Node> {
        self.dirs.get(&dir)?.live.get(name).copied()
    }

    /// The directory named by `comps` (live entries).
    fn resolve_dir(&self, comps: &[String], path: &Path) -> Result<u64> {
        let mut cur = ROOT;
        for name in comps {
            match self.entry(cur, name) {
                Some(Node::Dir(id)) => cur = id,
                Some(Node::File(_)) => {
                    return Err(io_at(
                        io::ErrorKind::NotADirectory,
                        "a path component is a file",
                        path,
                    ));
                }
                None => return Err(not_found(path)),
            }
        }
        Ok(cur)
    }

    /// The parent directory of `comps` and the last name (`None` for the root).
    fn parent_and_name<'a>(
        &self,
        comps: &'a [String],
        path: &Path,
    ) -> Result<(u64, Option<&'a str>)> {
        match comps.split_last() {
            None => Ok((ROOT, None)),
            Some((last, init)) => Ok((self.resolve_dir(init, path)?, Some(last.as_str()))),
        }
    }

    fn new_dir_op(&mut self) -> u64 {
        let op = self.next_dir_op;
        self.next_dir_op = self.next_dir_op.saturating_add(1);
        op
    }

    /// Changes a live entry and records the change as pending.
    fn set_entry(&mut self, op: u64, dir: u64, name: &str, after: Option<Node>) {
        if let Some(d) = self.dirs.get_mut(&dir) {
            match after {
                Some(node) => {
                    d.live.insert(name.to_owned(), node);
                }
                None => {
                    d.live.remove(name);
                }
            }
        }
        self.dir_log.push(DirChange {
            op,
            dir,
            name: name.to_owned(),
            after,
        });
    }

    fn sync_dir_id(&mut self, id: u64) {
        let mut old = Vec::new();
        if let Some(d) = self.dirs.get_mut(&id) {
            old.extend(d.durable.values().copied());
            d.durable.clone_from(&d.live);
        }
        self.dir_log.retain(|c| c.dir != id);
        self.collect(old.into_iter().filter_map(|n| match n {
            Node::File(ino) => Some(ino),
            Node::Dir(_) => None,
        }));
    }

    /// Forgets the inodes among `candidates` that nothing can reach any more: no live or
    /// durable entry, no pending directory change, no open handle.
    fn collect(&mut self, candidates: impl IntoIterator<Item = u64>) {
        for ino in candidates {
            let node = Some(Node::File(ino));
            let open = self.inodes.get(&ino).is_some_and(|i| i.handles > 0);
            let named = self.dirs.values().any(|d| {
                d.live
                    .values()
                    .chain(d.durable.values())
                    .any(|n| Some(*n) == node)
            }) || self.dir_log.iter().any(|c| c.after == node);
            if !open && !named {
                self.inodes.remove(&ino);
            }
        }
    }

    fn inode(&self, ino: u64, path: &Path) -> Result<&Inode> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| io_at(io::ErrorKind::NotFound, "stale SimFs handle", path))
    }

    fn inode_mut(&mut self, ino: u64, path: &Path) -> Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io_at(io::ErrorKind::NotFound, "stale SimFs handle", path))
    }

    /// The state a power loss would leave (see the module docs).
    fn crash_image(&self, model: CrashModel, seed: u64) -> State {
        let mut rng = fastrand::Rng::with_seed(seed);

        // 1. Directory entries: durable ones plus the surviving prefix of pending changes.
        let mut entries: BTreeMap<u64, BTreeMap<String, Node>> = self
            .dirs
            .iter()
            .map(|(id, d)| (*id, d.durable.clone()))
            .collect();
        let pending_ops = {
            let mut ops: Vec<u64> = self.dir_log.iter().map(|c| c.op).collect();
            ops.dedup();
            ops.len()
        };
        let keep_ops = match model {
            CrashModel::DropAll => 0,
            CrashModel::RandomSubset | CrashModel::TornSectors => pending_ops,
            CrashModel::DirOpsLost => rng.usize(0..=pending_ops),
        };
        let mut taken = 0usize;
        let mut last_op = None;
        for c in &self.dir_log {
            if last_op != Some(c.op) {
                if taken == keep_ops {
                    break;
                }
                taken += 1;
                last_op = Some(c.op);
            }
            if let Some(d) = entries.get_mut(&c.dir) {
                match c.after {
                    Some(node) => {
                        d.insert(c.name.clone(), node);
                    }
                    None => {
                        d.remove(&c.name);
                    }
                }
            }
        }

        // 2. What the surviving entries still reach from the root.
        let mut dirs_seen = BTreeSet::from([ROOT]);
        let mut files_seen = BTreeSet::new();
        let mut todo = vec![ROOT];
        while let Some(id) = todo.pop() {
            for node in entries.get(&id).into_iter().flat_map(BTreeMap::values) {
                match *node {
                    Node::File(ino) => {
                        files_seen.insert(ino);
                    }
                    Node::Dir(d) => {
                        if dirs_seen.insert(d) {
                            todo.push(d);
                        }
                    }
                }
            }
        }

        // 3. The data of every surviving inode.
        let mut inodes = BTreeMap::new();
        for (ino, inode) in &self.inodes {
            if files_seen.contains(ino) {
                let image = crash_data(inode, model, &mut rng);
                inodes.insert(
                    *ino,
                    Inode {
                        live: image.clone(),
                        durable: image,
                        ..Inode::default()
                    },
                );
            }
        }
        let dirs = entries
            .into_iter()
            .filter(|(id, _)| dirs_seen.contains(id))
            .map(|(id, e)| {
                (
                    id,
                    Dir {
                        live: e.clone(),
                        durable: e,
                    },
                )
            })
            .collect();
        State {
            inodes,
            dirs,
            next_id: self.next_id,
            ..State::new()
        }
    }
}

/// One piece of a pending data operation as it lands on the disk.
enum Piece<'a> {
    Bytes(u64, Cow<'a, [u8]>),
    SetLen(u64),
}

/// The bytes of `inode` after a power loss under `model`.
fn crash_data(inode: &Inode, model: CrashModel, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    match model {
        CrashModel::DropAll => {}
        CrashModel::RandomSubset | CrashModel::DirOpsLost => {
            for op in &inode.pending {
                if rng.bool() {
                    pieces.push(match op {
                        DataOp::Write { offset, bytes } => {
                            Piece::Bytes(*offset, Cow::Borrowed(bytes.as_slice()))
                        }
                        DataOp::SetLen(len) => Piece::SetLen(*len),
                    });
                }
            }
        }
        CrashModel::TornSectors => {
            for op in &inode.pending {
                match op {
                    DataOp::Write { offset, bytes } => {
                        let mut rest: &[u8] = bytes;
                        let mut at = *offset;
                        while !rest.is_empty() {
                            let to_boundary = SECTOR - at % SECTOR;
                            let n = usize::try_from(to_boundary)
                                .unwrap_or(usize::MAX)
                                .min(rest.len());
                            let (piece, tail) = rest.split_at_checked(n).unwrap_or((rest, &[]));
                            match rng.u8(0..3) {
                                0 => pieces.push(Piece::Bytes(at, Cow::Borrowed(piece))),
                                1 => {}
                                _ => {
                                    let mut garbage = vec![0u8; piece.len()];
                                    rng.fill(&mut garbage);
                                    pieces.push(Piece::Bytes(at, Cow::Owned(garbage)));
                                }
                            }
                            at = at.saturating_add(piece.len() as u64);
                            rest = tail;
                        }
                    }
                    DataOp::SetLen(len) => {
                        if rng.bool() {
                            pieces.push(Piece::SetLen(*len));
                        }
                    }
                }
            }
        }
    }
    rng.shuffle(&mut pieces);

    let mut img = inode.durable.clone();
    let end = pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(offset, bytes) => offset.saturating_add(bytes.len() as u64),
            Piece::SetLen(len) => *len,
        })
        .max()
        .unwrap_or(0);
    if !reserve(&mut img, end) {
        // Only when out of memory (every piece lies within MAX_FILE_LEN): keep the durable
        // bytes, which is one of the outcomes a power loss may produce anyway.
        return img;
    }
    for p in &pieces {
        match p {
            Piece::Bytes(offset, bytes) => put(&mut img, *offset, bytes),
            Piece::SetLen(len) => set_len(&mut img, *len),
        }
    }
    img
}

/// An in-memory file system that keeps durable and pending state apart, so tests can produce
/// the image a power loss would leave ([`SimFs::crash`]) and fail chosen operations
/// ([`SimFs::inject_fault`], [`SimFs::set_power_cut`]). See the module docs for the exact
/// semantics.
///
/// Cloning gives another handle to the same simulated disk.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> SimFs {
        SimFs::new()
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SimFs")
            .field("files", &st.inodes.len())
            .field("dirs", &st.dirs.len())
            .field("pending_dir_changes", &st.dir_log.len())
            .field("op_count", &st.op_count)
            .field("power_cut", &st.power_cut)
            .finish_non_exhaustive()
    }
}

impl SimFs {
    /// An empty disk whose only directory is the root `/`.
    pub fn new() -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    /// A new, independent file system holding the image a power loss now would leave under
    /// `model`, chosen with a random generator seeded with `seed` (the same state, model and
    /// seed always give the same image). In the new file system everything is durable, and
    /// there are no pending operations, faults, locks, open handles or power cut; its counters
    /// start at zero. `self` is not changed. If the power is cut, the image reflects the state
    /// before the cut.
    #[must_use]
    pub fn crash(&self, model: CrashModel, seed: u64) -> SimFs {
        let image = self.state.lock().crash_image(model, seed);
        SimFs {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Arms `fault`: its `nth` is counted among the operations of `fault.kind` attempted from
    /// now on. Several faults may be armed at once.
    pub fn inject_fault(&self, fault: Fault) {
        let mut st = self.state.lock();
        let base = st.counts.get(fault.kind);
        st.faults.push(ArmedFault { fault, base });
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Cuts the power when [`SimFs::op_count`] reaches `at`: the operation with 0-based index
    /// `at` and every later operation, reads included, fail with `DiskIO` and change nothing.
    /// The file system is powered off exactly while `op_count() >= at`, so `None` (or a later
    /// `at`) restores the power without losing anything.
    pub fn set_power_cut(&self, at: Option<u64>) {
        self.state.lock().power_cut = at;
    }

    /// The number of state-changing operations attempted so far (every [`OpKind`] but
    /// `Read`), including those failed by an injected fault.
    pub fn op_count(&self) -> u64 {
        self.state.lock().op_count
    }

    /// The number of operations attempted so far, per kind (reads included).
    pub fn op_counts(&self) -> OpCounts {
        self.state.lock().counts
    }

    /// Whether the power is cut (see [`SimFs::set_power_cut`]).
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().powered_off()
    }
}

/// A handle on a [`SimFs`] file.
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    path: PathBuf,
    writable: bool,
    lock: Lock,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("inode", &self.ino)
            .field("writable", &self.writable)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if let Some(inode) = st.inodes.get_mut(&self.ino) {
            inode.handles = inode.handles.saturating_sub(1);
            match self.lock {
                Lock::None => {}
                Lock::Shared => inode.shared_locks = inode.shared_locks.saturating_sub(1),
                Lock::Exclusive => inode.exclusive = false,
            }
        }
        st.collect([self.ino]);
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut st = self.state.lock();
        st.begin(OpKind::Read, &self.path)?;
        let live = &st.inode(self.ino, &self.path)?.live;
        let Some(avail) = usize::try_from(offset).ok().and_then(|o| live.get(o..)) else {
            return Ok(0);
        };
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(&self.path)?;
        if !self.writable {
            return Err(read_only(&self.path));
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= MAX_FILE_LEN)
            .ok_or_else(|| too_large(&self.path))?;
        st.inode(self.ino, &self.path)?;
        st.begin(OpKind::Write, &self.path)?;
        if buf.is_empty() {
            return Ok(());
        }
        let inode = st.inode_mut(self.ino, &self.path)?;
        if !reserve(&mut inode.live, end) {
            return Err(too_large(&self.path));
        }
        put(&mut inode.live, offset, buf);
        inode.pending.push(DataOp::Write {
            offset,
            bytes: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(&self.path)?;
        st.inode(self.ino, &self.path)?;
        st.begin(OpKind::Sync, &self.path)?;
        let inode = st.inode_mut(self.ino, &self.path)?;
        let end = inode.pending.iter().map(DataOp::end).max().unwrap_or(0);
        if !reserve(&mut inode.durable, end) {
            return Err(io_at(
                io::ErrorKind::OutOfMemory,
                "no memory for the durable image",
                &self.path,
            ));
        }
        let pending = std::mem::take(&mut inode.pending);
        for op in &pending {
            apply(&mut inode.durable, op);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(&self.path)?;
        if !self.writable {
            return Err(read_only(&self.path));
        }
        if len > MAX_FILE_LEN {
            return Err(too_large(&self.path));
        }
        st.inode(self.ino, &self.path)?;
        st.begin(OpKind::SetLen, &self.path)?;
        let inode = st.inode_mut(self.ino, &self.path)?;
        if !reserve(&mut inode.live, len) {
            return Err(too_large(&self.path));
        }
        set_len(&mut inode.live, len);
        inode.pending.push(DataOp::SetLen(len));
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        let st = self.state.lock();
        st.check_power(&self.path)?;
        Ok(st.inode(self.ino, &self.path)?.live.len() as u64)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, options: OpenOptions) -> Result<Box<dyn File>> {
        let writable = options.write || options.create || options.create_new;
        let mut st = self.state.lock();
        st.check_power(path)?;
        let comps = components(path)?;
        let (parent, name) = st.parent_and_name(&comps, path)?;
        let Some(name) = name else {
            return Err(is_a_directory(path));
        };
        let ino = match st.entry(parent, name) {
            Some(_) if options.create_new => {
                return Err(Error::new(ErrorKind::FileAlreadyExists).with_path(path));
            }
            Some(Node::Dir(_)) => return Err(is_a_directory(path)),
            Some(Node::File(ino)) => ino,
            None if options.create || options.create_new => {
                st.begin(OpKind::Create, path)?;
                let ino = st.alloc_id();
                st.inodes.insert(ino, Inode::default());
                let op = st.new_dir_op();
                st.set_entry(op, parent, name, Some(Node::File(ino)));
                ino
            }
            None => return Err(not_found(path)),
        };
        let inode = st.inode_mut(ino, path)?;
        let conflict = match options.lock {
            Lock::None => false,
            Lock::Shared => inode.exclusive,
            Lock::Exclusive => inode.exclusive || inode.shared_locks > 0,
        };
        if conflict {
            return Err(Error::new(ErrorKind::FileAccessDenied)
                .with_path(path)
                .with_message("the file is locked by another handle"));
        }
        match options.lock {
            Lock::None => {}
            Lock::Shared => inode.shared_locks = inode.shared_locks.saturating_add(1),
            Lock::Exclusive => inode.exclusive = true,
        }
        inode.handles = inode.handles.saturating_add(1);
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
            path: path.to_path_buf(),
            writable,
            lock: options.lock,
        }))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(path)?;
        let comps = components(path)?;
        let (parent, name) = st.parent_and_name(&comps, path)?;
        let Some(name) = name else {
            return Err(is_a_directory(path));
        };
        let ino = match st.entry(parent, name) {
            None => return Err(not_found(path)),
            Some(Node::Dir(_)) => return Err(is_a_directory(path)),
            Some(Node::File(ino)) => ino,
        };
        st.begin(OpKind::Remove, path)?;
        let op = st.new_dir_op();
        st.set_entry(op, parent, name, None);
        st.collect([ino]);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(from)?;
        let from_comps = components(from)?;
        let to_comps = components(to)?;
        let (from_dir, from_name) = st.parent_and_name(&from_comps, from)?;
        let (to_dir, to_name) = st.parent_and_name(&to_comps, to)?;
        let (Some(from_name), Some(to_name)) = (from_name, to_name) else {
            return Err(is_a_directory(from));
        };
        let ino = match st.entry(from_dir, from_name) {
            None => return Err(not_found(from)),
            Some(Node::Dir(_)) => {
                return Err(is_a_directory(from).with_message("SimFs does not rename directories"));
            }
            Some(Node::File(ino)) => ino,
        };
        let replaced = match st.entry(to_dir, to_name) {
            Some(Node::Dir(_)) => return Err(is_a_directory(to)),
            Some(Node::File(old)) => Some(old),
            None => None,
        };
        st.begin(OpKind::Rename, from)?;
        if replaced == Some(ino) {
            // POSIX: renaming a name onto another name of the same file does nothing.
            return Ok(());
        }
        let op = st.new_dir_op();
        st.set_entry(op, to_dir, to_name, Some(Node::File(ino)));
        st.set_entry(op, from_dir, from_name, None);
        st.collect(replaced);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(link)?;
        let orig_comps = components(original)?;
        let link_comps = components(link)?;
        let (orig_dir, orig_name) = st.parent_and_name(&orig_comps, original)?;
        let ino = match orig_name.and_then(|n| st.entry(orig_dir, n)) {
            None if orig_name.is_some() => return Err(not_found(original)),
            Some(Node::File(ino)) => ino,
            _ => {
                return Err(io_at(
                    io::ErrorKind::PermissionDenied,
                    "cannot hard-link a directory",
                    original,
                ));
            }
        };
        let (link_dir, link_name) = st.parent_and_name(&link_comps, link)?;
        let Some(link_name) = link_name.filter(|n| st.entry(link_dir, n).is_none()) else {
            return Err(Error::new(ErrorKind::FileAlreadyExists).with_path(link));
        };
        st.begin(OpKind::Link, link)?;
        let op = st.new_dir_op();
        st.set_entry(op, link_dir, link_name, Some(Node::File(ino)));
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let st = self.state.lock();
        st.check_power(path)?;
        let comps = components(path)?;
        match st.parent_and_name(&comps, path) {
            Ok((_, None)) => Ok(true),
            Ok((dir, Some(name))) => Ok(st.entry(dir, name).is_some()),
            Err(e) if e.kind() == ErrorKind::FileNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let st = self.state.lock();
        st.check_power(dir)?;
        let comps = components(dir)?;
        let id = st.resolve_dir(&comps, dir)?;
        Ok(st
            .dirs
            .get(&id)
            .into_iter()
            .flat_map(|d| d.live.iter())
            .filter(|(_, node)| matches!(node, Node::File(_)))
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(dir)?;
        let comps = components(dir)?;
        let mut cur = ROOT;
        for (i, name) in comps.iter().enumerate() {
            match st.entry(cur, name) {
                Some(Node::Dir(id)) => cur = id,
                Some(Node::File(_)) if i + 1 == comps.len() => {
                    return Err(Error::new(ErrorKind::FileAlreadyExists)
                        .with_path(dir)
                        .with_message("a file of that name exists"));
                }
                Some(Node::File(_)) => {
                    return Err(io_at(
                        io::ErrorKind::NotADirectory,
                        "a path component is a file",
                        dir,
                    ));
                }
                None => {
                    st.begin(OpKind::CreateDir, dir)?;
                    let id = st.alloc_id();
                    st.dirs.insert(id, Dir::default());
                    let op = st.new_dir_op();
                    st.set_entry(op, cur, name, Some(Node::Dir(id)));
                    // Durable in its parent, as the trait promises (and OsFs does).
                    st.begin(OpKind::SyncDir, dir)?;
                    st.sync_dir_id(cur);
                    cur = id;
                }
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_power(dir)?;
        let comps = components(dir)?;
        let id = st.resolve_dir(&comps, dir)?;
        st.begin(OpKind::SyncDir, dir)?;
        st.sync_dir_id(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SimFs>();
        check::<SimFile>();
        check::<CrashModel>();
        check::<Fault>();
        check::<OpCounts>();
    }

    #[test]
    fn torn_pieces_follow_sector_boundaries() {
        let inode = Inode {
            pending: vec![DataOp::Write {
                offset: 500,
                bytes: vec![1; 600],
            }],
            ..Inode::default()
        };
        for seed in 0..200 {
            let img = crash_data(
                &inode,
                CrashModel::TornSectors,
                &mut fastrand::Rng::with_seed(seed),
            );
            // Bytes [500, 512) form one piece, [512, 1024) another, [1024, 1100) a third.
            for range in [500..512, 512..1024, 1024..1100] {
                let Some(piece) = img.get(range) else {
                    continue;
                };
                let first = piece.first().copied();
                let uniform = piece.iter().all(|b| Some(*b) == first);
                let ones = piece.iter().all(|b| *b == 1);
                let zeros = piece.iter().all(|b| *b == 0);
                // Kept (all ones), dropped (zeros) or garbage (random: almost never uniform).
                assert!(ones || zeros || !uniform, "seed {seed}");
            }
        }
    }

    #[test]
    fn sync_dir_forgets_unreachable_inodes() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), OpenOptions::create()).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        drop(f);
        fs.sync_dir(Path::new("/")).unwrap();
        fs.remove_file(Path::new("/a")).unwrap();
        assert_eq!(fs.state.lock().inodes.len(), 1, "still durable");
        fs.sync_dir(Path::new("/")).unwrap();
        assert!(fs.state.lock().inodes.is_empty());
    }
}
