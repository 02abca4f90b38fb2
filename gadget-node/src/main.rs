//! `gadget-node`: the node agent of kubectl-gadget.
//!
//! Parses the command line, wires the library's parts together, and turns
//! their errors into messages and exit codes; the work lives in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gadget_node::cgroup::{find_cgroup2_mount, CgroupResolver};
use gadget_node::features::{kernel_release, KernelFeatures};
use gadget_node::identity::IdentityResolver;
use gadget_node::listen::{ListenAddress, DEFAULT_LISTEN};
use gadget_node::pods::{watch_node_pods, PodIndex};
use gadget_node::server::{self, NodeDescription, NodeService};
use tokio::signal::unix::{signal, SignalKind};

/// How often the cgroup tree is rescanned for containers that came or went.
const CGROUP_RESCAN_PERIOD: Duration = Duration::from_secs(1);
/// A health check that takes longer than this fails (kubelet's exec probes
/// time out after 1 s by default; they should be given a bit more).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "gadget-node", version, about = "The kubectl-gadget node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the node service: run gadgets for kubectl-gadget clients.
    Serve(ServeArgs),
    /// Check over gRPC health that a node serves (for exec probes); exit 0
    /// when it does, 1 otherwise.
    Health(HealthArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen: unix:///path/to.sock, tcp://127.0.0.1:PORT,
    /// tcp://[::1]:PORT or tcp://localhost:PORT.
    #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_LISTEN)]
    listen: ListenAddress,
    /// Allow a TCP address that is not loopback. The node service has no
    /// authentication: only use this when something else guards the address.
    #[arg(long)]
    allow_non_loopback: bool,
    /// This node's name in Kubernetes [default: the host name].
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    node_name: Option<String>,
    /// The kubeconfig to reach the API server with [default: in-cluster
    /// config, or KUBECONFIG, or ~/.kube/config].
    #[arg(long, value_name = "PATH", conflicts_with = "no_kubernetes")]
    kubeconfig: Option<PathBuf>,
    /// Do not use the API server: events carry pod UIDs and container ids,
    /// but no namespaces, pod names or labels to show or select by.
    #[arg(long)]
    no_kubernetes: bool,
}

#[derive(Args)]
struct HealthArgs {
    /// The address the node listens on, as given to `serve --listen`.
    #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_LISTEN)]
    listen: ListenAddress,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("gadget-node: {}", one_line(&err));
                ExitCode::FAILURE
            }
        },
        Command::Health(args) => match server::check_health(&args.listen, HEALTH_TIMEOUT).await {
            Ok(()) => {
                println!("{} is SERVING at {}", server::SERVICE_NAME, args.listen);
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("gadget-node health: {}", one_line(&err.into()));
                ExitCode::FAILURE
            }
        },
    }
}

/// Logs to stderr, filtered by RUST_LOG (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// An error and its causes on one line. Transport errors repeat their
/// cause in their own message, so a cause already said is left out.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    line
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // First, so that a stop asked for during startup is a clean stop too.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    args.listen.check_exposure(args.allow_non_loopback)?;
    let listener = args.listen.bind().await?;

    let node_name = match args.node_name.filter(|name| !name.is_empty()) {
        Some(name) => name,
        None => host_name()?,
    };
    let pods = if args.no_kubernetes {
        tracing::info!("not using the API server: events will not carry pod names");
        None
    } else {
        kube_client(args.kubeconfig.as_deref())
            .await?
            .map(|client| start_pod_watch(client, node_name.clone()))
    };
    let cgroup_root = find_cgroup2_mount()?;
    let identity = Arc::new(IdentityResolver::new(
        CgroupResolver::new(cgroup_root),
        pods.as_ref().map(|(index, _)| Arc::clone(index)),
    ));
    let refresh = tokio::spawn(Arc::clone(&identity).refresh_periodically(CGROUP_RESCAN_PERIOD));

    let features = tokio::task::spawn_blocking(KernelFeatures::detect).await?;
    let description = NodeDescription {
        node_name,
        kernel_release: kernel_release().context("cannot read the kernel release")?,
        features,
    };
    log_description(&description);

    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    let result = server::serve(listener, NodeService::new(description, identity), stop).await;
    refresh.abort();
    if let Some((_, watch)) = pods {
        watch.abort();
    }
    Ok(result?)
}

/// A client for the API server; `None`, with a warning, when no
/// configuration is found and none was named.
async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<Option<kube::Client>> {
    if let Some(path) = kubeconfig {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .with_context(|| format!("cannot use kubeconfig {}", path.display()))?;
        let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
        return Ok(Some(client));
    }
    match kube::Client::try_default().await {
        Ok(client) => Ok(Some(client)),
        Err(err) => {
            tracing::warn!(
                error = %err,
                "no Kubernetes configuration found: serving without pod names (local mode); \
                 pass --no-kubernetes to silence this"
            );
            Ok(None)
        }
    }
}

/// Starts keeping a pod index of this node up to date.
fn start_pod_watch(
    client: kube::Client,
    node_name: String,
) -> (Arc<PodIndex>, tokio::task::JoinHandle<()>) {
    let index = Arc::new(PodIndex::new());
    let watch = tokio::spawn({
        let index = Arc::clone(&index);
        async move { watch_node_pods(client, &node_name, index).await }
    });
    (index, watch)
}

fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name; pass --node-name")?;
    Ok(name.trim().to_string())
}

fn log_description(description: &NodeDescription) {
    let features: Vec<String> = description
        .features
        .iter()
        .map(|(feature, present)| format!("{feature}={present}"))
        .collect();
    tracing::info!(
        node = description.node_name,
        kernel = description.kernel_release,
        features = features.join(","),
        "node ready"
    );
    for gadget in gadget_node::gadgets::names() {
        if let Err(reason) = description.features.gadget_availability(gadget) {
            tracing::warn!(gadget, reason, "gadget unavailable");
        }
    }
}
