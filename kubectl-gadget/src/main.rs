//! `kubectl-gadget`, run by kubectl as `kubectl gadget`: parses the command
//! line, runs the command, and decides the exit code.
//!
//! Exit codes: 0 on success (Ctrl-C ends a trace successfully), 1 when the
//! command failed or any node failed, 2 for a command line that cannot be
//! run (clap's code for usage errors).

use std::process::ExitCode;

use clap::Parser;
use kubectl_gadget::cli::Cli;
use kubectl_gadget::request::Request;
use kubectl_gadget::terminal::error_line;
use kubectl_gadget::{connect, deploy, trace, version};

/// Exit code of a bad command line, as clap uses.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = match Request::from_cli(cli) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    // One thread: with worker threads, the thread that merges and prints
    // rows was woken by the one reading the nodes' connections thousands
    // of times a second, a fifth of the client's CPU per event. Rows are
    // written on a thread of their own (gadget_trace::row_output), so a
    // stalled stdout does not stop the connections.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(request)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", error_line(&err));
            ExitCode::FAILURE
        }
    }
}

async fn run(request: Request) -> anyhow::Result<ExitCode> {
    match request {
        Request::Trace { nodes, trace } => {
            let summary = trace::run(&nodes, &trace).await?;
            match summary.failure() {
                None => Ok(ExitCode::SUCCESS),
                Some(failure) => {
                    // Names the failed nodes, which a node chooses.
                    eprintln!("{}", error_line(&anyhow::anyhow!(failure)));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Request::Deploy { cluster, args } => {
            if args.print_only {
                // Printing needs no cluster, not even a kubeconfig.
                deploy::print_manifests(&args, &mut std::io::stdout().lock())?;
            } else {
                let cluster = connect::cluster_client(&cluster).await?;
                deploy::deploy(&cluster.client, &cluster.server, &args).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Request::Undeploy { cluster, args } => {
            let cluster = connect::cluster_client(&cluster).await?;
            deploy::undeploy(&cluster.client, &cluster.server, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Version(request) => {
            let nodes = version::run(&request, &mut std::io::stdout().lock()).await?;
            if nodes.iter().all(version::NodeVersion::is_usable) {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
