//! `esedump`: inspection of databases, logs and checkpoints in eseutil's vocabulary.
//!
//! The subcommands (`header`, `checkpoint`, `log`, `space`, `tables`, `records`, `page`,
//! `check`) arrive with the formats they read. Until then the tool only says so, on stderr,
//! and exits with a failure code, so that no script mistakes it for a working dump.

#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("esedump: no subcommands are available yet; see README.md");
    std::process::ExitCode::FAILURE
}
