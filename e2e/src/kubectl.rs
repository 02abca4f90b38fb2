//! Running `kubectl gadget` the way a user does: kubectl finds the plugin
//! `kubectl-gadget` on PATH and runs it with the flags that follow its name.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{run, Finished};

/// How long a kubectl command that is not a trace may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `kubectl`, with a kubeconfig and a PATH on which `kubectl-gadget` is the
/// binary under test.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    path: OsString,
}

impl Kubectl {
    /// Makes `plugin_dir` hold only a link `kubectl-gadget` to `plugin`, and
    /// puts it first on PATH, ahead of any other kubectl-gadget installed.
    pub fn new(kubeconfig: &Path, plugin: &Path, plugin_dir: &Path) -> Result<Kubectl> {
        let link = plugin_dir.join("kubectl-gadget");
        std::fs::create_dir_all(plugin_dir)
            .with_context(|| format!("cannot create {}", plugin_dir.display()))?;
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(plugin, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), plugin.display()))?;
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(plugin_dir.to_path_buf()).chain(std::env::split_paths(&inherited)),
        )
        .context("PATH cannot hold the plugin directory")?;
        Ok(Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            path,
        })
    }

    /// The same kubectl with another kubeconfig (another user).
    pub fn with_kubeconfig(&self, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            path: self.path.clone(),
        }
    }

    /// `kubectl --kubeconfig <kubeconfig> <args>`.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.bare();
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        command
    }

    /// `kubectl gadget --kubeconfig <kubeconfig> <args>`: kubectl takes no
    /// flag before a plugin's name, and passes the ones after it to the
    /// plugin.
    pub fn gadget<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.bare();
        command
            .arg("gadget")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        command
    }

    fn bare(&self) -> Command {
        let mut command = Command::new("kubectl");
        command
            .env("PATH", &self.path)
            // The kubeconfig is given on the command line; a KUBECONFIG of the
            // environment must not change which cluster is used.
            .env_remove("KUBECONFIG");
        command
    }

    /// Runs `kubectl gadget <args>` to its end.
    pub fn run_gadget(&self, args: &[&str]) -> Result<Finished> {
        run(&mut self.gadget(args), COMMAND_TIMEOUT)
    }

    /// Checks that `kubectl gadget` runs the plugin under test, by its
    /// client version.
    pub fn check_plugin(&self, version: &str) -> Result<()> {
        let finished = self.run_gadget(&["version", "--client"])?.success()?;
        let wanted = format!("Client Version: {version}");
        if !finished.stdout.contains(&wanted) {
            bail!(
                "{}",
                finished.report(&format!(
                    "kubectl runs another kubectl-gadget: expected {wanted:?}"
                ))
            );
        }
        Ok(())
    }
}
