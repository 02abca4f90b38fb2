//! `cargo xtask e2e`: the end-to-end suite (the `gadget-e2e` binary of the
//! `e2e` crate) against a real API server.
//!
//! By default against the local control plane of `e2e/`, twice: the
//! cluster binaries are built from the Go module proxy (cached after the
//! first time); then the cluster is started with KWOK nodes whose agents
//! the suite runs on this host, the suite runs, and the cluster is deleted;
//! then it is started again with one real node (a kubelet and containerd on
//! this host, see [`real_node`]) and no KWOK node, and the suite runs there
//! as against a user's cluster. Clusters and the node are deleted whether
//! the suite passed or not. A cluster or node that does not start is a
//! failure, never a skip. With `--existing-cluster` the suite runs against
//! the cluster of `$GADGET_E2E_KUBECONFIG` (or `$KUBECONFIG`) instead and
//! skips what needs the local harness.

mod real_node;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{cargo, display, on_path, run_checked, target_dir, workspace_root};

const USAGE: &str = "usage: cargo xtask e2e [--only kwok|real-node [--keep-cluster]]
       cargo xtask e2e --existing-cluster [--image IMAGE] [--workload-image IMAGE]

Runs the end-to-end suite of kubectl-gadget (see e2e/README.md).

  (no flag)           against the local control plane: builds its binaries with Go
                      (cached), starts it with KWOK nodes, runs the suite, deletes
                      it; then starts it with a real node (kubelet and containerd on
                      this host), runs the suite, deletes both; needs root
  --only kwok|real-node
                      only the KWOK nodes' run, or only the real node's
  --keep-cluster      with --only: leave the cluster (and real node) running
                      afterwards, for a look around (delete them with
                      e2e/node.sh down and e2e/cluster.sh down)
  --existing-cluster  against the cluster of $GADGET_E2E_KUBECONFIG, or else $KUBECONFIG;
                      deploys and undeploys gadget-node there, and skips the steps
                      that need the local harness
  --image IMAGE       with --existing-cluster: the gadget-node image to deploy
  --workload-image IMAGE
                      with --existing-cluster: the workload pods' image, which needs
                      sleep and cat [default: busybox:1.36]";

/// The packages the suite runs: the client, the node agent and the suite.
const PACKAGES: [&str; 6] = ["-p", "kubectl-gadget", "-p", "gadget-node", "-p", "e2e"];

/// Parses the task's flags (see `USAGE`) and runs the suite against the local
/// control plane or, with `--existing-cluster`, the user's cluster.
pub fn run(args: &[String]) -> Result<()> {
    let mut existing = false;
    let mut keep_cluster = false;
    let mut only: Option<Nodes> = None;
    let mut suite_args: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--existing-cluster" => existing = true,
            "--keep-cluster" => keep_cluster = true,
            "--only" => {
                only = Some(match args.next().map(String::as_str) {
                    Some("kwok") => Nodes::Kwok,
                    Some("real-node") => Nodes::Real,
                    _ => bail!("--only takes kwok or real-node\n\n{USAGE}"),
                })
            }
            "--image" | "--workload-image" => {
                let value = args
                    .next()
                    .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))?;
                suite_args.extend([arg.clone(), value.clone()]);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if existing {
        if keep_cluster || only.is_some() {
            bail!("--keep-cluster and --only are for the local cluster\n\n{USAGE}");
        }
        return run_existing(&suite_args);
    }
    if !suite_args.is_empty() {
        bail!("--image and --workload-image go with --existing-cluster\n\n{USAGE}");
    }
    match only {
        None if keep_cluster => {
            bail!("--keep-cluster needs --only: the first cluster is deleted before the second\n\n{USAGE}")
        }
        None => run_local(),
        Some(nodes) => run_local_with(&[nodes], keep_cluster),
    }
}

/// The nodes of a local run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nodes {
    /// KWOK's simulated nodes; the suite runs their agents on this host.
    Kwok,
    /// One real node, a kubelet and containerd on this host.
    Real,
}

/// The suite against the local control plane, with KWOK nodes and then with
/// a real node, as `cargo xtask test` runs it.
pub fn run_local() -> Result<()> {
    run_local_with(&[Nodes::Kwok, Nodes::Real], false)
}

fn run_local_with(runs: &[Nodes], keep_cluster: bool) -> Result<()> {
    let start = Instant::now();
    setup::ensure_e2e_tools()?;
    setup::require_kernel_access("the end-to-end suite")?;
    let e2e_dir = workspace_root().join("e2e");

    let bin = cluster_binaries(&e2e_dir)?;

    run_checked(cargo().arg("build").args(PACKAGES))?;
    let images = if runs.contains(&Nodes::Real) {
        let phase = Instant::now();
        let images = real_node::build_images(&e2e_dir, &bin)?;
        eprintln!(
            "e2e: the real node's images ({:.1}s)",
            phase.elapsed().as_secs_f64()
        );
        images
    } else {
        Vec::new()
    };

    stop_on_interrupt_later();
    let debug = target_dir().join("debug");
    for nodes in runs {
        let phase = Instant::now();
        let cluster = LocalCluster::up(&e2e_dir, &bin, keep_cluster, *nodes)?;
        let mut suite = Command::new(debug.join("gadget-e2e"));
        suite
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--kubectl-gadget")
            .arg(debug.join("kubectl-gadget"));
        let node = match nodes {
            Nodes::Kwok => {
                suite
                    .arg("--gadget-node")
                    .arg(debug.join("gadget-node"))
                    .arg("--cluster-pki")
                    .arg(cluster.pki());
                None
            }
            Nodes::Real => {
                let node = real_node::RealNode::up(&e2e_dir, &bin, &images, keep_cluster)?;
                suite
                    .arg("--existing-cluster")
                    .arg("--image")
                    .arg(real_node::gadget_node_image())
                    .arg("--workload-image")
                    .arg(real_node::WORKLOAD_IMAGE)
                    .arg("--real-node-on-this-host")
                    .arg(&node.name);
                Some(node)
            }
        };
        let what = match nodes {
            Nodes::Kwok => "KWOK nodes",
            Nodes::Real => "a real node",
        };
        eprintln!(
            "e2e: cluster with {what} up ({:.1}s)",
            phase.elapsed().as_secs_f64()
        );
        let phase = Instant::now();
        let result = run_checked(&mut suite);
        eprintln!(
            "e2e: suite with {what} ({:.1}s)",
            phase.elapsed().as_secs_f64()
        );
        // The node goes first: its kubelet still talks to the cluster.
        drop(node);
        drop(cluster);
        result?;
    }
    eprintln!("e2e: total {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The cluster binaries' directory: `build-binaries.sh` builds them the
/// first time and finds them in its cache afterwards.
fn cluster_binaries(e2e_dir: &Path) -> Result<PathBuf> {
    let phase = Instant::now();
    let bin = PathBuf::from(
        last_line(Command::new(e2e_dir.join("build-binaries.sh")))
            .context("cannot build the cluster binaries")?,
    );
    eprintln!(
        "e2e: cluster binaries in {} ({:.1}s)",
        bin.display(),
        phase.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// The local control plane with the real node joined and nothing deployed,
/// for a task other than the suite (the benchmark's port-forward
/// configurations). Deleted when dropped: the node first, since its
/// kubelet still talks to the cluster.
pub struct RealNodeCluster {
    // Fields drop in declaration order.
    node: real_node::RealNode,
    cluster: LocalCluster,
}

impl RealNodeCluster {
    /// Builds (or finds cached) the cluster binaries and the real node's
    /// images, starts the control plane without KWOK nodes, joins the real
    /// node and waits until it is Ready. From here on Ctrl-C stops the
    /// children but not this task, so that dropping this still deletes
    /// the cluster.
    pub fn up() -> Result<RealNodeCluster> {
        setup::ensure_e2e_tools()?;
        let e2e_dir = workspace_root().join("e2e");
        let bin = cluster_binaries(&e2e_dir)?;
        let images = real_node::build_images(&e2e_dir, &bin)?;
        stop_on_interrupt_later();
        let cluster = LocalCluster::up(&e2e_dir, &bin, false, Nodes::Real)?;
        let node = real_node::RealNode::up(&e2e_dir, &bin, &images, false)?;
        Ok(RealNodeCluster { node, cluster })
    }

    /// The cluster admin's kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.cluster.kubeconfig
    }

    /// The real node's name.
    pub fn node_name(&self) -> &str {
        &self.node.name
    }

    /// The gadget-node image imported into the node's containerd, to
    /// deploy.
    pub fn gadget_node_image(&self) -> String {
        real_node::gadget_node_image()
    }
}

/// The suite against a cluster of the user's.
fn run_existing(suite_args: &[String]) -> Result<()> {
    let kubeconfig = match (
        std::env::var_os("GADGET_E2E_KUBECONFIG"),
        std::env::var_os("KUBECONFIG"),
    ) {
        (Some(path), _) | (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
        _ => bail!(
            "--existing-cluster runs against the cluster of $GADGET_E2E_KUBECONFIG or $KUBECONFIG; \
             set one of them to the kubeconfig of a cluster-admin"
        ),
    };
    if kubeconfig.to_string_lossy().contains(':') {
        bail!(
            "{} lists several kubeconfigs; point GADGET_E2E_KUBECONFIG at one file",
            kubeconfig.display()
        );
    }
    if !on_path("kubectl") {
        bail!("{}", setup::KUBECTL_MISSING);
    }
    run_checked(cargo().arg("build").args(PACKAGES))?;
    let debug = target_dir().join("debug");
    run_checked(
        Command::new(debug.join("gadget-e2e"))
            .arg("--existing-cluster")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--kubectl-gadget")
            .arg(debug.join("kubectl-gadget"))
            .args(suite_args),
    )
}

/// The local cluster; deleted when dropped unless kept.
struct LocalCluster {
    script: PathBuf,
    bin: PathBuf,
    kubeconfig: PathBuf,
    keep: bool,
}

impl LocalCluster {
    /// Starts the cluster: with KWOK's three nodes, or with none for the
    /// real node to join.
    fn up(e2e_dir: &Path, bin: &Path, keep: bool, nodes: Nodes) -> Result<LocalCluster> {
        let script = e2e_dir.join("cluster.sh");
        let mut command = Command::new(&script);
        command.arg("up").env("GADGET_E2E_BIN", bin);
        if nodes == Nodes::Real {
            command.env("GADGET_E2E_NODES", "0");
        }
        // cluster.sh deletes what it started when `up` fails.
        let kubeconfig = last_line(command).context("the local cluster did not start")?;
        Ok(LocalCluster {
            script,
            bin: bin.to_path_buf(),
            kubeconfig: PathBuf::from(kubeconfig),
            keep,
        })
    }

    /// The cluster CA's directory (`ca.crt`, `ca.key`).
    fn pki(&self) -> PathBuf {
        self.kubeconfig
            .parent()
            .unwrap_or(Path::new("."))
            .join("pki")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "e2e: the cluster is kept: KUBECONFIG={}; delete it with e2e/node.sh down \
                 (if it has the real node) and e2e/cluster.sh down",
                self.kubeconfig.display()
            );
            return;
        }
        let mut down = Command::new(&self.script);
        down.arg("down").env("GADGET_E2E_BIN", &self.bin);
        if let Err(err) = run_checked(&mut down) {
            eprintln!("e2e: {err:#}");
        }
    }
}

/// Runs `command` (stderr shown) and returns the last line of its stdout.
fn last_line(mut command: Command) -> Result<String> {
    eprintln!("+ {}", display(&command));
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", display(&command)))?;
    if !output.status.success() {
        bail!("{} failed ({})", display(&command), output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(str::to_string)
        .with_context(|| format!("{} printed nothing", display(&command)))
}

/// From here on, Ctrl-C stops the children (they get it from the terminal)
/// but not this task, so that it still deletes the cluster.
fn stop_on_interrupt_later() {
    extern "C" fn ignore(_signal: libc::c_int) {}
    // SAFETY: the handler does nothing, which is async-signal-safe; a
    // handler (unlike SIG_IGN) is reset in the children on exec.
    unsafe {
        libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t);
    }
}
