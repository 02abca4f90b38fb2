//! `gadget-e2e`: runs the end-to-end suite against a cluster. Usually run by
//! `cargo xtask e2e`, which builds what it needs and starts the local
//! cluster; see e2e/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use e2e::suite::{run_suite, Mode, Options};
use e2e::wait::{secs, stop_on_interrupt};

/// Runs the end-to-end suite of kubectl-gadget against a cluster.
#[derive(Parser)]
#[command(name = "gadget-e2e")]
struct Args {
    /// Kubeconfig of a user who may deploy (cluster-admin).
    #[arg(long, env = "GADGET_E2E_KUBECONFIG", value_name = "PATH")]
    kubeconfig: PathBuf,
    /// The kubectl-gadget binary under test.
    #[arg(long, value_name = "PATH")]
    kubectl_gadget: PathBuf,
    /// Local harness: the gadget-node binary to run for each gadget pod.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "existing_cluster"
    )]
    gadget_node: Option<PathBuf>,
    /// Local harness: the directory of the cluster CA's ca.crt and ca.key
    /// [default: pki next to the kubeconfig].
    #[arg(long, value_name = "DIR")]
    cluster_pki: Option<PathBuf>,
    /// Run against a cluster whose kubelets run the pods; skips the steps
    /// that need the local harness.
    #[arg(long, conflicts_with_all = ["gadget_node", "cluster_pki"])]
    existing_cluster: bool,
    /// With --existing-cluster: the gadget-node image to deploy
    /// [default: kubectl gadget deploy's].
    #[arg(long, value_name = "IMAGE", requires = "existing_cluster")]
    image: Option<String>,
    /// With --existing-cluster: the image of the workload pods; it needs
    /// `sleep` and `cat`.
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "busybox:1.36",
        requires = "existing_cluster"
    )]
    workload_image: String,
    /// With --existing-cluster: the name of a node of the cluster whose
    /// kubelet runs on this host (`e2e/node.sh`). Adds the steps that look
    /// at that node from the host: the gadget pod's privileges as the kernel
    /// holds them, each added capability being necessary (they edit the
    /// DaemonSet), and no BPF program left loaded after undeploy.
    #[arg(long, value_name = "NODE", requires = "existing_cluster")]
    real_node_on_this_host: Option<String>,
    /// Keep the work directory (logs, kubeconfigs) even when the suite passes.
    #[arg(long)]
    keep_work_dir: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    stop_on_interrupt();
    let work_dir = match tempfile::Builder::new().prefix("gadget-e2e-").tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("e2e: cannot create a work directory: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mode = match args.gadget_node {
        Some(gadget_node) if !args.existing_cluster => Mode::Local {
            gadget_node,
            pki: args.cluster_pki.unwrap_or_else(|| {
                args.kubeconfig
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("pki")
            }),
        },
        _ => Mode::Existing {
            image: args.image,
            workload_image: args.workload_image,
            real_node: args.real_node_on_this_host,
        },
    };
    let options = Options {
        kubeconfig: args.kubeconfig,
        kubectl_gadget: args.kubectl_gadget,
        work_dir: work_dir.path().to_path_buf(),
        mode,
    };
    let start = Instant::now();
    match run_suite(options) {
        Ok(steps) => {
            eprintln!("e2e: passed in {}:", secs(start.elapsed()));
            for step in &steps {
                match &step.skipped {
                    None => eprintln!("  ok       {:>6}  {}", secs(step.took), step.title),
                    Some(why) => eprintln!("  skipped          {}: {why}", step.title),
                }
            }
            if args.keep_work_dir {
                eprintln!("e2e: work directory kept: {}", work_dir.keep().display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("e2e: FAILED after {}: {err:#}", secs(start.elapsed()));
            eprintln!(
                "e2e: logs and files are kept in {}",
                work_dir.keep().display()
            );
            ExitCode::FAILURE
        }
    }
}
