//! The command line as clap parses it: raw flags, checked only for their
//! shape (numbers are numbers, `-A` and `-n` are not both given).
//!
//! Everything else about the flags is checked by [`crate::request`], which
//! turns them into a validated request without doing any I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gadget_trace::cli::{TraceCommand, TraceHelp};

/// Shown after the help of every command: how the client reaches the nodes.
const TARGETS_HELP: &str = "\
Reaching the nodes:
  By default the client uses the cluster of the kubeconfig (--kubeconfig,
  --context): it finds the gadget-node pods (namespace kubectl-gadget,
  DaemonSet gadget-node, one per node) and reaches each through the API
  server's pod port-forward. Install them with \"kubectl gadget deploy\".

  With --node-address the client talks to gadget-node processes directly
  (a node outside any cluster, or one reached through a tunnel): the
  kubeconfig is not read, and -n filters namespaces only when it is given
  (there is no default namespace); without -n every namespace is traced.";

/// `kubectl gadget`: eBPF security observability for Kubernetes.
///
/// The binary is named `kubectl-gadget`, so that kubectl runs it as the
/// plugin `kubectl gadget`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-gadget",
    bin_name = "kubectl gadget",
    version,
    about = "eBPF security observability for Kubernetes: trace what the processes of your pods do",
    long_about = None,
    after_long_help = TARGETS_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Which nodes to talk to, and how.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that choose the nodes and how they are reached; accepted by every
/// command, before or after its name.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, help_heading = "Nodes", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, help_heading = "Nodes", value_name = "NAME")]
    pub context: Option<String>,

    /// Only these Kubernetes nodes; repeatable, or comma-separated.
    #[arg(
        long = "node",
        global = true,
        help_heading = "Nodes",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "node_addresses"
    )]
    pub nodes: Vec<String>,

    /// Talk to a gadget-node directly, without Kubernetes: unix:///PATH or
    /// tcp://HOST:PORT, optionally as NAME=ADDRESS to name the node
    /// (otherwise the node says its name). Repeatable. The kubeconfig is not
    /// read, and without -n every namespace is traced.
    #[arg(
        long = "node-address",
        global = true,
        help_heading = "Nodes",
        value_name = "[NAME=]ADDRESS",
        conflicts_with_all = ["kubeconfig", "context"]
    )]
    pub node_addresses: Vec<String>,
}

/// The commands.
// `Deploy` is far larger than the others (its manifest options), but the
// value is parsed once per run and moved a couple of times: boxing it would
// cost more reading than the bytes it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace events on the nodes and print them as they happen.
    #[command(subcommand)]
    Trace(TraceCommand<ClusterTrace>),
    /// Print the version of this client and of gadget-node on every node.
    Version(VersionArgs),
    /// Install or update gadget-node on the cluster's nodes.
    Deploy(crate::deploy::DeployArgs),
    /// Remove gadget-node and everything deploy created from the cluster.
    Undeploy(crate::deploy::UndeployArgs),
}

/// What `kubectl gadget trace <gadget> --help` adds: how the nodes are
/// reached.
#[derive(Debug)]
pub enum ClusterTrace {}

impl TraceHelp for ClusterTrace {
    const AFTER_LONG_HELP: &'static str = TARGETS_HELP;
}

/// `version`.
#[derive(Debug, Args)]
#[command(after_long_help = TARGETS_HELP)]
pub struct VersionArgs {
    /// Only print the client's version; do not contact the nodes.
    #[arg(long)]
    pub client: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
