//! `esedump`: inspection of databases, logs and checkpoints in eseutil's vocabulary.
//!
//! One subcommand per eseutil dump mode (`header` = `/mh`, `checkpoint` = `/mk`, `log` =
//! `/ml`, `page` = `/p`, `space` = `/ms`, `check` = `/g`, `tables` = `/mm`, `records`), each in its own module under
//! `cmd/`. Output is a readable table by default and the stable JSON schema of
//! `docs/esedump.md` with `--json`. Errors go to stderr as
//! `esedump: JET_errXxx (-nnnn): message` with a non-zero exit code.
//!
//! **Read-only.** Nothing here writes: files are opened through [`rofs::ReadOnlyFs`], whose
//! every mutating operation fails with `JET_errFileAccessDenied`, logs are read with
//! `ese_log::LogReader` (never `ese_log::Log`, which writes), and recovery is never run. A
//! database left dirty by a crash is shown as it is, with "recovery needed".

#![deny(unsafe_code)]

/// `println!` for stdout that ends the process quietly when the reader has gone away
/// (`esedump records DB T | head`), as Unix tools do on SIGPIPE, instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

mod catalog;
mod cmd;
mod dbfile;
mod longvalue;
mod output;
mod payload;
mod rofs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect ESE-style databases, logs and checkpoints (eseutil's dump modes). Never modifies
/// what it reads.
#[derive(Debug, Parser)]
#[command(name = "esedump", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  esedump header data.edb\n  esedump log logs/ --records\n  \
                        esedump check data.edb --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Header(cmd::header::Args),
    Checkpoint(cmd::checkpoint::Args),
    Log(cmd::log::Args),
    Page(cmd::page::Args),
    Space(cmd::space::Args),
    Check(cmd::check::Args),
    Tables(cmd::tables::Args),
    Records(cmd::records::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Header(a) => cmd::header::run(a),
        Command::Checkpoint(a) => cmd::checkpoint::run(a),
        Command::Log(a) => cmd::log::run(a),
        Command::Page(a) => cmd::page::run(a),
        Command::Space(a) => cmd::space::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Tables(a) => cmd::tables::run(a),
        Command::Records(a) => cmd::records::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esedump: {e}");
            ExitCode::FAILURE
        }
    }
}
