//! `gadget-node`: the node agent of kubectl-gadget.
//!
//! Parses the command line, wires the library's parts together, and turns
//! their errors into messages and exit codes; the work lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use gadget_node::agent::{Agent, PodSource};
use gadget_node::listen::{ListenAddress, DEFAULT_LISTEN};
use gadget_node::local::{self, LocalTrace};
use gadget_node::memory::AllocatorSetup;
use gadget_node::server::{self, HealthProbe, NodeLimits};
use gadget_trace::cli::TraceCommand;
use gadget_trace::error_line::error_chain;
use gadget_trace::render::escaped;
use tokio::signal::unix::{signal, SignalKind};

/// Exit code of a bad command line, as clap uses.
const USAGE_ERROR: u8 = 2;
/// A health check that takes longer than this fails (kubelet's exec probes
/// time out after 1 s by default; they should be given a bit more).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "gadget-node", version, about = "The kubectl-gadget node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup and matched once: boxing the large variant would
// only add an indirection to the one value that ever exists.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the node service: run gadgets for kubectl-gadget clients.
    Serve(ServeArgs),
    /// Check over gRPC health that a node serves (for exec probes); exit 0
    /// when it does, 1 otherwise.
    Health(HealthArgs),
    /// Run a gadget on this host and print its events (local mode: no
    /// cluster, no server); the flags are those of `kubectl gadget trace`.
    Trace(Box<LocalTraceArgs>),
}

#[derive(Args)]
struct LocalTraceArgs {
    /// The node name shown on rows [default: the host name].
    #[arg(long, value_name = "NAME", env = "NODE_NAME", global = true)]
    node_name: Option<String>,
    /// Name pods through this cluster (the pods of --node-name): namespaces,
    /// pod and container names and labels, which -n, -p, -c and -l select
    /// by [default: no cluster].
    #[arg(long, value_name = "PATH", global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    gadget: TraceCommand<LocalTrace>,
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
    /// Traces this node runs at once; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_TRACES,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    max_traces: usize,
    /// MiB for the ring buffers and queued batches of all traces together
    /// (each trace is charged its ring buffer plus 16 MiB of queue); a trace
    /// that does not fit is refused (RESOURCE_EXHAUSTED). Keep it well
    /// below the pod's memory limit.
    #[arg(long, value_name = "MIB",
          default_value_t = server::DEFAULT_TRACE_MEMORY_BUDGET >> 20,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    trace_memory_mib: u64,
    /// End a trace whose client took nothing from its full queue for this
    /// many seconds (a client that stopped reading).
    #[arg(long, value_name = "SECONDS",
          default_value_t = server::DEFAULT_STALL_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    stall_timeout: u64,
}

#[derive(Args)]
struct HealthArgs {
    /// The address the node listens on, as given to `serve --listen`.
    #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_LISTEN)]
    listen: ListenAddress,
    /// Only check that the server answers (for liveness probes); without
    /// it, that the node can run traces (readiness): not when no gadget can
    /// run on this node.
    #[arg(long)]
    liveness: bool,
}

fn main() -> ExitCode {
    let allocator = gadget_node::memory::tune_allocator();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        // A node runs for weeks: what its traces allocated must not stay
        // with it. Before the runtime's threads exist, as each takes an
        // arena of its own at its first allocation.
        gadget_node::memory::use_one_arena();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gadget-node: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, allocator))
}

async fn run(cli: Cli, allocator: AllocatorSetup) -> ExitCode {
    // Local mode's stdout and stderr are the user's terminal: only what
    // needs their attention.
    init_logging(match cli.command {
        Command::Trace(_) => "warn",
        Command::Serve(_) | Command::Health(_) => "info",
    });
    if matches!(cli.command, Command::Serve(_)) {
        tracing::info!(
            allocator = allocator.allocator,
            options = %allocator.set.join(","),
            "allocator set up"
        );
    }
    for option in &allocator.left_alone {
        tracing::warn!(%option, "allocator option left alone: another mimalloc?");
    }
    match cli.command {
        Command::Trace(args) => trace_locally(*args).await,
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("gadget-node: {}", escaped(&one_line(&err)));
                ExitCode::FAILURE
            }
        },
        Command::Health(args) => health(args).await,
    }
}

async fn health(args: HealthArgs) -> ExitCode {
    let probe = if args.liveness {
        HealthProbe::Liveness
    } else {
        HealthProbe::Readiness
    };
    match server::check_health(&args.listen, probe, HEALTH_TIMEOUT).await {
        Ok(()) => {
            match probe {
                HealthProbe::Readiness => {
                    println!("{} is SERVING at {}", server::SERVICE_NAME, args.listen)
                }
                HealthProbe::Liveness => println!("gadget-node answers at {}", args.listen),
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gadget-node health: {}", one_line(&err.into()));
            ExitCode::FAILURE
        }
    }
}

async fn trace_locally(args: LocalTraceArgs) -> ExitCode {
    let request = match local::request(args.gadget) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let pods = match args.kubeconfig {
        Some(path) => PodSource::Kubeconfig(path),
        None => PodSource::None,
    };
    let agent = match Agent::start(args.node_name, pods).await {
        Ok(agent) => agent,
        Err(err) => {
            eprintln!("gadget-node: {}", escaped(&one_line(&err)));
            return ExitCode::FAILURE;
        }
    };
    match local::trace(&agent, &request).await {
        Ok(summary) => match summary.failure() {
            None => ExitCode::SUCCESS,
            Some(failure) => {
                eprintln!("error: {}", escaped(&failure));
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("error: cannot write the output: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (default `default_level`).
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// An error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    error_chain(err.as_ref())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // First, so that a stop asked for during startup is a clean stop too.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let limits = NodeLimits {
        max_traces: args.max_traces,
        memory_budget: args.trace_memory_mib << 20,
        stall_timeout: Duration::from_secs(args.stall_timeout),
    };
    args.listen.check_exposure(args.allow_non_loopback)?;
    let listener = args.listen.bind().await?;

    let pods = match (args.no_kubernetes, args.kubeconfig) {
        (true, _) => PodSource::None,
        (false, Some(path)) => PodSource::Kubeconfig(path),
        (false, None) => PodSource::Default,
    };
    let agent = Agent::start(args.node_name, pods).await?;

    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    let Agent {
        service,
        background: _running,
        ..
    } = agent;
    Ok(server::serve(listener, service.with_limits(limits), stop).await?)
}
