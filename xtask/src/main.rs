//! Project tasks, run as `cargo xtask <task>` (an alias in .cargo/config.toml).
//!
//! Each task is a module with a `run(args)`; this file only dispatches.

mod bench;
mod demo;
mod e2e;
mod image;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task> [args]

tasks:
  setup   install what building, testing and the benchmark need (clang, libbpf headers,
          bpftrace), or say what is missing
  bench   what a trace costs, beside the floor and bpftrace; writes docs/benchmarks.md
  demo    run gadget-node on this host and trace it with kubectl-gadget: real rows, no cluster
  e2e     the end-to-end suite against a local Kubernetes control plane, or --existing-cluster
  image   build the gadget-node container image as an OCI archive, without Docker
  test    everything CI runs: formatting, clippy, unit, kernel and end-to-end tests";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "setup" => setup::run(rest),
        "bench" => bench::run(rest),
        "bench-workload" => bench::workload(rest),
        "demo" => demo::run(rest),
        "e2e" => e2e::run(rest),
        "image" => image::run(rest),
        "test" => test::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown task {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {task}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
