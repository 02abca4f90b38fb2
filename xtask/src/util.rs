//! Running commands from tasks.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts what it builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo` as cargo itself was invoked, so toolchain overrides carry over.
///
/// It runs without the variables `cargo run` set for xtask itself (see
/// [`set_by_cargo_run`]): cargo compares a build script's
/// `rerun-if-env-changed` variables against its own environment, and ring's
/// build script watches `CARGO_MANIFEST_DIR` (and the `CARGO_PKG_*` ones).
/// Inherited, they made every build from xtask rerun ring's build script
/// and rebuild rustls, kube and both binaries after any plain `cargo
/// build` or `cargo test` (and the other way round): the 3.5 minutes
/// `cargo xtask bench` spent building each time.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `cargo run` sets `name` for the program it runs, describing that
/// program's package (rather than configuring cargo, as `CARGO_HOME`,
/// `CARGO_TARGET_DIR` or `CARGO_PROFILE_*` do, which must carry over).
fn set_by_cargo_run(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
    ) || name.starts_with("CARGO_PKG_")
}

/// Runs `command`, echoing it first; fails with its exit status.
pub fn run_checked(command: &mut Command) -> Result<()> {
    eprintln!("+ {}", display(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", display(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", display(command));
    }
    Ok(())
}

/// A command as a shell line, for messages.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: cargo run from xtask inherited `CARGO_MANIFEST_DIR`,
    /// which reran ring's build script and rebuilt everything above it.
    #[test]
    fn nested_cargo_runs_without_the_package_variables_cargo_sets() {
        // `cargo test` sets them for this test binary as `cargo run` does
        // for xtask.
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
            assert!(std::env::var_os(name).is_some(), "{name} is not set");
        }
        let command = cargo();
        let removed: Vec<String> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_PKG_VERSION"] {
            assert!(removed.iter().any(|r| r == name), "{name}: {removed:?}");
        }
        assert!(
            removed.iter().all(|name| set_by_cargo_run(name)),
            "{removed:?}"
        );
    }

    #[test]
    fn cargo_configuration_is_kept() {
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_BUILD_JOBS",
            "CARGO_LOG",
        ] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }
}
