//! Running the `nsparse` binary from the integration tests.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `nsparse args…`.
pub fn nsparse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsparse"))
        .args(args)
        .output()
        .expect("run nsparse")
}

/// Runs `nsparse args…`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = nsparse(args);
    assert!(
        out.status.success(),
        "nsparse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `nsparse args…`, which must fail; its standard error.
pub fn fails(args: &[&str]) -> String {
    let out = nsparse(args);
    assert!(!out.status.success(), "nsparse {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// The folder of a committed fixture model of nsparse-model.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../nsparse-model/tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}
