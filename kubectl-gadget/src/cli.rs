//! The command line as clap parses it: raw flags, checked only for their
//! shape (numbers are numbers, `-A` and `-n` are not both given).
//!
//! Everything else about the flags is checked by [`crate::request`], which
//! turns them into a validated request without doing any I/O.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Shown after the help of every command: how the client reaches the nodes.
const TARGETS_HELP: &str = "\
Reaching the nodes:
  By default the client uses the cluster of the kubeconfig (--kubeconfig,
  --context): it finds the gadget-node pods (namespace gadget, DaemonSet
  gadget-node, one per node) and reaches each through the API server's pod
  port-forward. Install them with \"kubectl gadget deploy\".

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
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace events on the nodes and print them as they happen.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Print the version of this client and of gadget-node on every node.
    Version(VersionArgs),
    /// Install or update gadget-node on the cluster's nodes.
    Deploy(crate::deploy::DeployArgs),
    /// Remove gadget-node and everything deploy created from the cluster.
    Undeploy(crate::deploy::UndeployArgs),
}

/// The gadgets `trace` runs.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Trace files being opened (open, openat, openat2).
    Open(OpenArgs),
    /// Trace programs being executed (execve, execveat).
    Exec(ExecArgs),
}

/// `trace open`.
#[derive(Debug, Args)]
#[command(after_long_help = TARGETS_HELP)]
pub struct OpenArgs {
    /// Flags every trace takes.
    #[command(flatten)]
    pub common: TraceArgs,

    /// Only show opens that failed.
    #[arg(long)]
    pub failed: bool,

    /// Only show paths that start with PREFIX, as passed to the syscall
    /// (a relative path is not made absolute); repeatable.
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<OsString>,
}

/// `trace exec`.
#[derive(Debug, Args)]
#[command(after_long_help = TARGETS_HELP)]
pub struct ExecArgs {
    /// Flags every trace takes.
    #[command(flatten)]
    pub common: TraceArgs,

    /// Do not show execs that failed.
    #[arg(long)]
    pub ignore_failed: bool,

    /// Keep at most N arguments of each exec (default: the node's).
    #[arg(long, value_name = "N")]
    pub max_args: Option<u32>,

    /// Keep at most BYTES bytes of arguments of each exec (default: the
    /// node's).
    #[arg(long, value_name = "BYTES")]
    pub max_args_bytes: Option<u32>,
}

/// Flags every trace takes: which processes, for how long, printed how.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Only pods in this namespace (default: the kubeconfig context's
    /// namespace, else "default"; with --node-address: every namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Pods in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Only the pod with this name.
    #[arg(short = 'p', long, value_name = "POD")]
    pub podname: Option<String>,

    /// Only containers with this name.
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub containername: Option<String>,

    /// Only pods whose labels match this selector, e.g. 'app=web,tier!=db'
    /// or 'env in (prod,staging)'.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Also trace processes that run in no container (the host's).
    #[arg(long)]
    pub host: bool,

    /// Only the process with this id (as seen from the host).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only processes of this user id (as seen from the host).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,

    /// Stop after this many seconds; 0 traces until Ctrl-C.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: u32,

    /// Output format: columns, columns=NAME,NAME,... (see the column names in
    /// an error for a wrong one), json (one object per line) or compact.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "columns")]
    pub output: String,

    /// Size of each node's ring buffer, in bytes or with a K or M suffix
    /// (powers of 1024), e.g. 512K or 16M; the node rounds it up to a power
    /// of two (default: the node's).
    #[arg(long, value_name = "SIZE")]
    pub ring_buffer_size: Option<String>,
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
