//! The seed corpus of every target: a few inputs that reach the interesting paths at once
//! (built from the reference files and from hand-written workloads), written to
//! `fuzz/corpus-seeds/<target>/` by `ESE_WRITE_SEEDS=1 cargo test -p ese-tests --test
//! fuzz_replay`.
//!
//! Structured inputs are turned into bytes by the inverse of `arbitrary`'s derived decoding
//! (version 1.5: integers little-endian, `bool` as a byte's low bit, enum variants as a u32
//! scaled to the variant count, `Option` as a bool then the value, the last `Vec` field as a
//! "one more" byte before each element); the replay test checks that decoding gives back the
//! same input.

use super::crash_recovery::{CrashInput, RecoveryCrash};
use super::io_faults::FaultInput;
use super::reference::reference;
use super::workload::Op;

/// Bytes that `arbitrary` decodes into a value.
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) -> &mut Enc {
        self.0.push(v);
        self
    }
    fn bool(&mut self, v: bool) -> &mut Enc {
        self.u8(u8::from(v))
    }
    fn u16(&mut self, v: u16) -> &mut Enc {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Variant `k` of an enum of `n` variants: the smallest u32 `v` with `(v * n) >> 32 == k`.
    fn variant(&mut self, k: u64, n: u64) -> &mut Enc {
        let v = ((k << 32).div_ceil(n)) as u32;
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn op(&mut self, op: &Op) -> &mut Enc {
        const N: u64 = 11;
        match *op {
            Op::Begin { session } => self.variant(0, N).u8(session),
            Op::Insert {
                session,
                table,
                key,
                len,
                fill,
            } => self
                .variant(1, N)
                .u8(session)
                .u8(table)
                .u8(key)
                .u8(len)
                .u8(fill),
            Op::Replace {
                session,
                table,
                key,
                len,
                fill,
            } => self
                .variant(2, N)
                .u8(session)
                .u8(table)
                .u8(key)
                .u8(len)
                .u8(fill),
            Op::Delete {
                session,
                table,
                key,
            } => self.variant(3, N).u8(session).u8(table).u8(key),
            Op::Read {
                session,
                table,
                key,
            } => self.variant(4, N).u8(session).u8(table).u8(key),
            Op::Scan { session, table } => self.variant(5, N).u8(session).u8(table),
            Op::Fill {
                session,
                table,
                start,
                count,
            } => self.variant(6, N).u8(session).u8(table).u8(start).u8(count),
            Op::Commit { session, lazy } => self.variant(7, N).u8(session).bool(lazy),
            Op::Rollback { session, all } => self.variant(8, N).u8(session).bool(all),
            Op::CreateTable { session, table } => self.variant(9, N).u8(session).u8(table),
            Op::Checkpoint => self.variant(10, N),
        }
    }
    fn ops(&mut self, ops: &[Op]) -> &mut Enc {
        for op in ops {
            self.u8(1).op(op);
        }
        self
    }
}

impl CrashInput {
    /// The bytes `arbitrary` decodes into this input (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::new());
        e.bool(self.big_log)
            .u16(self.cut)
            .u8(self.model)
            .u8(self.seed)
            .bool(self.recovery_crash.is_some());
        if let Some(rc) = &self.recovery_crash {
            e.u16(rc.cut).u8(rc.model).u8(rc.seed);
        }
        e.ops(&self.ops);
        e.0
    }
}

impl FaultInput {
    /// The bytes `arbitrary` decodes into this input (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::new());
        e.bool(self.big_log)
            .u8(self.kind)
            .u16(self.nth)
            .bool(self.enospc)
            .bool(self.persistent)
            .bool(self.in_recovery)
            .bool(self.crash_after)
            .ops(&self.ops);
        e.0
    }
}

fn ins(session: u8, table: u8, key: u8, len: u8) -> Op {
    Op::Insert {
        session,
        table,
        key,
        len,
        fill: key.wrapping_mul(3),
    }
}

/// Workloads that between them use every operation.
pub fn workloads() -> Vec<(&'static str, Vec<Op>)> {
    use Op::{Begin, Checkpoint, Commit, CreateTable, Delete, Fill, Read, Replace, Rollback, Scan};
    vec![
        (
            "durable-and-lazy",
            vec![
                Begin { session: 0 },
                ins(0, 0, 1, 40),
                ins(0, 0, 2, 90),
                Commit {
                    session: 0,
                    lazy: false,
                },
                Begin { session: 1 },
                ins(1, 0, 3, 200),
                Commit {
                    session: 1,
                    lazy: true,
                },
                ins(2, 0, 4, 10),
                Begin { session: 0 },
                Replace {
                    session: 0,
                    table: 0,
                    key: 1,
                    len: 77,
                    fill: 9,
                },
                Delete {
                    session: 0,
                    table: 0,
                    key: 2,
                },
                Commit {
                    session: 0,
                    lazy: true,
                },
                Read {
                    session: 1,
                    table: 0,
                    key: 1,
                },
                Scan {
                    session: 2,
                    table: 0,
                },
            ],
        ),
        (
            "nested-and-rollback",
            vec![
                Begin { session: 0 },
                ins(0, 0, 10, 30),
                Begin { session: 0 },
                ins(0, 0, 11, 30),
                Rollback {
                    session: 0,
                    all: false,
                },
                Begin { session: 0 },
                ins(0, 0, 12, 30),
                Commit {
                    session: 0,
                    lazy: false,
                },
                Commit {
                    session: 0,
                    lazy: false,
                },
                Begin { session: 1 },
                ins(1, 0, 13, 250),
                Rollback {
                    session: 1,
                    all: true,
                },
                Scan {
                    session: 0,
                    table: 0,
                },
            ],
        ),
        (
            "ddl",
            vec![
                Begin { session: 0 },
                CreateTable {
                    session: 0,
                    table: 1,
                },
                ins(0, 1, 5, 60),
                Commit {
                    session: 0,
                    lazy: false,
                },
                Begin { session: 1 },
                CreateTable {
                    session: 1,
                    table: 2,
                },
                ins(1, 2, 6, 60),
                Rollback {
                    session: 1,
                    all: true,
                },
                CreateTable {
                    session: 2,
                    table: 3,
                },
                ins(2, 3, 7, 70),
                Scan {
                    session: 0,
                    table: 3,
                },
            ],
        ),
        (
            "conflicts",
            vec![
                ins(0, 0, 20, 20),
                Begin { session: 0 },
                Begin { session: 1 },
                Replace {
                    session: 0,
                    table: 0,
                    key: 20,
                    len: 21,
                    fill: 1,
                },
                Replace {
                    session: 1,
                    table: 0,
                    key: 20,
                    len: 22,
                    fill: 2,
                },
                ins(1, 0, 21, 5),
                ins(0, 0, 21, 6),
                Commit {
                    session: 0,
                    lazy: false,
                },
                Delete {
                    session: 1,
                    table: 0,
                    key: 20,
                },
                Commit {
                    session: 1,
                    lazy: true,
                },
                Read {
                    session: 2,
                    table: 0,
                    key: 20,
                },
            ],
        ),
        (
            "rollover-and-checkpoints",
            vec![
                Begin { session: 0 },
                Fill {
                    session: 0,
                    table: 0,
                    start: 0,
                    count: 63,
                },
                Commit {
                    session: 0,
                    lazy: true,
                },
                Checkpoint,
                Begin { session: 1 },
                Fill {
                    session: 1,
                    table: 0,
                    start: 64,
                    count: 63,
                },
                Commit {
                    session: 1,
                    lazy: false,
                },
                Fill {
                    session: 2,
                    table: 0,
                    start: 128,
                    count: 63,
                },
                Checkpoint,
                Begin { session: 0 },
                Fill {
                    session: 0,
                    table: 0,
                    start: 32,
                    count: 63,
                },
                Delete {
                    session: 0,
                    table: 0,
                    key: 40,
                },
                Commit {
                    session: 0,
                    lazy: true,
                },
                Begin { session: 1 },
                Fill {
                    session: 1,
                    table: 0,
                    start: 192,
                    count: 63,
                },
            ],
        ),
    ]
}

/// The seed inputs of `target`, each with a file name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match target {
        "crash_recovery" => {
            for (i, (name, ops)) in workloads().into_iter().enumerate() {
                for (j, cut) in [0u16, 40, 150, 9000].into_iter().enumerate() {
                    let input = CrashInput {
                        big_log: i % 2 == 1,
                        cut: cut.wrapping_add(i as u16 * 7),
                        model: (i + j) as u8,
                        seed: j as u8,
                        recovery_crash: (j == 2).then_some(RecoveryCrash {
                            cut: 17 + i as u16,
                            model: j as u8 + 1,
                            seed: 3,
                        }),
                        ops: ops.clone(),
                    };
                    out.push((format!("{name}-{j}"), input.encode()));
                }
            }
        }
        "io_faults" => {
            for (i, (name, ops)) in workloads().into_iter().enumerate() {
                for (j, kind) in [1u8, 3, 4, 5, 9].into_iter().enumerate() {
                    let input = FaultInput {
                        big_log: false,
                        kind,
                        nth: (i * 3 + j) as u16,
                        enospc: j % 2 == 1,
                        persistent: i % 2 == 0,
                        in_recovery: j == 4,
                        crash_after: j == 2,
                        ops: ops.clone(),
                    };
                    out.push((format!("{name}-{j}"), input.encode()));
                }
            }
        }
        "db_file" => {
            let r = reference();
            let ps = super::PAGE_SIZE as usize;
            let used = super::reference::allocated_len(&r.clean, super::reference::REF_DB)
                .map_or(6, |len| len / ps);
            // Header slot, directory, space page, the catalog and a spread of tree pages.
            let mut picks = vec![0usize, 2, 3, 4, 5];
            picks.extend((6..used).step_by((used / 6).max(1)));
            for p in picks {
                let Some(page) = r.db_file.get(p * ps..(p + 1) * ps) else {
                    continue;
                };
                for mode in [1u8, 2] {
                    let mut input = vec![mode];
                    input.extend_from_slice(&(p as u16).to_le_bytes());
                    input.extend_from_slice(page);
                    out.push((format!("page-{p}-mode-{mode}"), input));
                }
            }
            // A whole small database (the operation targets' base image), cut after its last
            // allocated page.
            let base = super::crash_recovery::base_image(64);
            if let (Ok(small), Ok(len)) = (
                super::read_file(&base, super::DB),
                super::reference::allocated_len(&base, super::DB),
            ) {
                let mut whole = vec![0u8];
                whole.extend_from_slice(small.get(..len).unwrap_or(&small));
                out.push(("whole-small-file".to_owned(), whole));
            }
        }
        "log_file" => {
            let r = reference();
            if let Some((_, cur)) = r.log_files.iter().find(|(n, _)| n == "edb.log") {
                let mut raw = vec![0u8];
                raw.extend_from_slice(cur);
                out.push(("current-generation".to_owned(), raw));
                let mut frames = vec![1u8];
                frames.extend_from_slice(cur.get(4096..).unwrap_or_default());
                out.push(("frames".to_owned(), frames));
            }
            let mut size = 0;
            let first: Vec<&[u8]> = r
                .log_payloads
                .iter()
                .take_while(|p| {
                    size += p.len() + 2;
                    size < 48 * 1024
                })
                .map(Vec::as_slice)
                .collect();
            out.push((
                "records-first".to_owned(),
                super::log_file::encode_payloads(first),
            ));
            let mut size = 0;
            let mut last: Vec<&[u8]> = r
                .log_payloads
                .iter()
                .rev()
                .take_while(|p| {
                    size += p.len() + 2;
                    size < 48 * 1024
                })
                .map(Vec::as_slice)
                .collect();
            last.reverse();
            out.push((
                "records-last".to_owned(),
                super::log_file::encode_payloads(last),
            ));
        }
        "checkpoint_file" => {
            if let Ok(chk) = super::read_file(&reference().crashed, super::reference::CHECKPOINT) {
                for mode in [0u8, 1] {
                    let mut input = vec![mode];
                    input.extend_from_slice(&chk);
                    out.push((format!("checkpoint-mode-{mode}"), input));
                }
            }
        }
        _ => {}
    }
    out
}
