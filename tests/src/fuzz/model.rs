//! The in-memory model the operation targets check the engine against: tables of rows, the
//! transactions that committed (in commit order, each with how its commit was acknowledged),
//! and the states recovery may legally produce.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A row's value, kept compact: the bytes are a function of it ([`Val::bytes`]), so states
/// clone cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Val {
    /// A number unique to the operation that wrote the value.
    pub(crate) serial: u32,
    /// Length in bytes, 1 to 255.
    pub(crate) len: u8,
    /// The pattern the bytes after the serial follow.
    pub(crate) fill: u8,
}

impl Val {
    pub(crate) fn new(serial: u32, len: u8, fill: u8) -> Val {
        Val {
            serial,
            len: len.max(1),
            fill,
        }
    }

    /// The value's bytes: the serial (little-endian, cut to the length), then `fill`,
    /// `fill + 1`, ...
    pub(crate) fn bytes(self) -> Vec<u8> {
        let mut v: Vec<u8> = self.serial.to_le_bytes().to_vec();
        let mut b = self.fill;
        while v.len() < usize::from(self.len) {
            v.push(b);
            b = b.wrapping_add(1);
        }
        v.truncate(usize::from(self.len));
        v
    }
}

/// The rows of a table by key.
pub(crate) type Rows = BTreeMap<u32, Val>;
/// Every table that exists, by number.
pub(crate) type State = BTreeMap<u8, Rows>;
/// What the engine returned for a state: table number → key → bytes.
pub(crate) type Got = BTreeMap<u8, BTreeMap<u32, Vec<u8>>>;

/// What one write does.
#[derive(Clone, Debug)]
pub(crate) enum Write {
    /// Sets (`Some`) or deletes (`None`) a row.
    Row {
        table: u8,
        key: u32,
        val: Option<Val>,
    },
    /// Creates an empty table.
    Table { table: u8 },
}

/// What a write changes, for conflict detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Target {
    Row(u8, u32),
    Table(u8),
}

impl Write {
    pub(crate) fn target(&self) -> Target {
        match *self {
            Write::Row { table, key, .. } => Target::Row(table, key),
            Write::Table { table } => Target::Table(table),
        }
    }

    pub(crate) fn apply(&self, s: &mut State) {
        match self {
            Write::Row { table, key, val } => {
                if let Some(rows) = s.get_mut(table) {
                    match val {
                        Some(v) => {
                            rows.insert(*key, *v);
                        }
                        None => {
                            rows.remove(key);
                        }
                    }
                }
            }
            Write::Table { table } => {
                s.entry(*table).or_default();
            }
        }
    }
}

/// How a level-0 commit was acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// The durable commit returned: the transaction must survive any crash.
    Durable,
    /// The lazy commit returned: it may be lost, but only whole and only with every later
    /// commit.
    Lazy,
    /// The commit failed part-way (its flush failed): present or absent, whole.
    Unknown,
}

/// One committed transaction.
#[derive(Clone, Debug)]
pub(crate) struct Commit {
    pub(crate) writes: Vec<Write>,
    pub(crate) ack: Ack,
}

/// The starting state and every commit since, in commit order.
#[derive(Clone, Debug)]
pub(crate) struct History {
    pub(crate) base: State,
    pub(crate) commits: Vec<Commit>,
}

/// Whether `got` holds exactly the tables and rows of `want`.
pub(crate) fn same(want: &State, got: &Got) -> bool {
    want.len() == got.len()
        && want.iter().zip(got).all(|((wt, wr), (gt, gr))| {
            wt == gt
                && wr.len() == gr.len()
                && wr
                    .iter()
                    .zip(gr)
                    .all(|((wk, wv), (gk, gv))| wk == gk && wv.bytes() == *gv)
        })
}

fn describe(s: &State) -> String {
    let mut out = String::new();
    for (t, rows) in s {
        let _ = write!(out, "t{t}: {} rows; ", rows.len());
    }
    out
}

fn describe_got(s: &Got) -> String {
    let mut out = String::new();
    for (t, rows) in s {
        let _ = write!(out, "t{t}: {} rows; ", rows.len());
    }
    out
}

impl History {
    /// Checks that `got` is a state recovery may produce: the base plus a prefix of the
    /// commits that holds at least every durable one. Returns the length of the prefix.
    ///
    /// # Errors
    /// A description of the mismatch.
    pub(crate) fn check(&self, got: &Got) -> Result<usize, String> {
        let durable = self
            .commits
            .iter()
            .rposition(|c| c.ack == Ack::Durable)
            .map_or(0, |i| i + 1);
        let mut s = self.base.clone();
        for c in self.commits.iter().take(durable) {
            for w in &c.writes {
                w.apply(&mut s);
            }
        }
        let at_durable = s.clone();
        for j in durable..=self.commits.len() {
            if same(&s, got) {
                return Ok(j);
            }
            if let Some(c) = self.commits.get(j) {
                for w in &c.writes {
                    w.apply(&mut s);
                }
            }
        }
        let mut msg = format!(
            "recovered state matches no allowed prefix: {} commits ({} up to the last durable one); recovered {}; after the durable ones {}",
            self.commits.len(),
            durable,
            describe_got(got),
            describe(&at_durable)
        );
        // Name the first difference with the state after the durable commits.
        for (t, rows) in &at_durable {
            match got.get(t) {
                None => {
                    let _ = write!(msg, "; table t{t} is missing");
                    break;
                }
                Some(g) => {
                    if let Some((k, v)) = rows.iter().find(|(k, v)| g.get(k) != Some(&v.bytes())) {
                        let _ = write!(
                            msg,
                            "; t{t} key {k}: want {} bytes starting {:?}, got {:?}",
                            v.len,
                            v.bytes().get(..8),
                            g.get(k).map(|b| (b.len(), b.get(..8).map(<[u8]>::to_vec)))
                        );
                        break;
                    }
                    if let Some(k) = g.keys().find(|k| !rows.contains_key(k)) {
                        let _ = write!(msg, "; t{t} key {k} present but not committed durably");
                        break;
                    }
                }
            }
        }
        Err(msg)
    }
}
