//! Helpers shared by the integration tests: the built `medley` binary, the test media and
//! fixtures (from MEDLEY_TEST_MEDIA and MEDLEY_TEST_FIXTURES), JSON on stdout.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn env_path(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set: run the tests with `cargo xtask test`")),
    )
}

pub fn medley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medley"))
}

pub fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
