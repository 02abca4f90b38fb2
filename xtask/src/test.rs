//! `cargo xtask test`: everything CI runs, in the order a failure is
//! cheapest to see. `.ci/run` calls exactly this.

use anyhow::Result;

use crate::e2e;
use crate::setup;
use crate::util::{cargo, run_checked};

/// The formatting check, clippy with warnings denied, then (root and BTF
/// required, for the kernel tests) every test and the end-to-end suite on a
/// local cluster; stops at the first failure. Any arguments are ignored.
pub fn run(_args: &[String]) -> Result<()> {
    setup::ensure_build_tools()?;
    run_checked(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel tests load real eBPF programs: root, not skipped.
    setup::require_kernel_access("the test suite")?;
    run_checked(cargo().args(["test", "--workspace"]))?;
    // Against a real API server; a cluster that does not start fails.
    e2e::run_local()
}
