//! Every JET error symbol named in the ESE behaviour reference maps to ESE's numeric value.
//!
//! The input is `tests/fixtures/ese_reference_error_codes.txt`, extracted from the reference
//! (not from the engine's table), so a wrong number in the engine fails here.

#![allow(
    clippy::unwrap_used,
    reason = "a malformed fixture line should fail the test loudly"
)]

use ese_core::{Error, ErrorKind};

fn reference() -> Vec<(String, i32)> {
    let text = include_str!("../fixtures/ese_reference_error_codes.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next().unwrap().to_owned();
            let code: i32 = it.next().unwrap().parse().unwrap();
            (name, code)
        })
        .collect()
}

#[test]
fn every_reference_code_has_a_kind_with_that_number() {
    let refs = reference();
    assert!(refs.len() > 150, "fixture too small: {}", refs.len());
    let mut missing = Vec::new();
    for (name, code) in &refs {
        match ErrorKind::from_name(name) {
            Some(kind) => {
                assert_eq!(kind.code(), *code, "{name}");
                assert_eq!(kind.name(), name);
                assert_eq!(Error::new(kind).code(), *code);
                assert_eq!(ErrorKind::from_code(*code), Some(kind));
            }
            None => missing.push(name.clone()),
        }
    }
    assert!(missing.is_empty(), "kinds missing for {missing:?}");
}

#[test]
fn the_session_codes_the_seed_pages_name_are_exact() {
    let cases = [
        (ErrorKind::SessionSharingViolation, -1910),
        (ErrorKind::SessionContextAlreadySet, -1912),
        (ErrorKind::SessionContextNotSetByThisThread, -1913),
        (ErrorKind::SessionInUse, -1914),
        (ErrorKind::InvalidSesid, -1104),
        (ErrorKind::NotInitialized, -1029),
        (ErrorKind::TermInProgress, -1000),
        (ErrorKind::RestoreInProgress, -506),
        (ErrorKind::InstanceUnavailable, -1090),
        (ErrorKind::ClientRequestToStopJetService, -1329),
        (ErrorKind::InvalidParameter, -1003),
        (ErrorKind::OutOfMemory, -1011),
        (ErrorKind::OutOfBuffers, -1014),
    ];
    for (kind, code) in cases {
        assert_eq!(kind.code(), code, "{kind:?}");
    }
}
