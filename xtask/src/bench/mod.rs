//! `cargo xtask bench`: what a trace costs, side by side with what the
//! kernel itself costs and with the tool users would pick instead.
//!
//! Four workloads ([`workload`]: an open storm, an exec storm, a
//! read/write loop on one file, a build-like mix of short shell commands)
//! run untraced, under the floor (bpftrace counting the gadget's own
//! tracepoints in a map: what any eBPF tracer on those hooks pays), under
//! bpftrace printing every event, and under ours in several
//! configurations ([`tracer`]). The configurations are interleaved within
//! each repetition, and every ratio is to the untraced run of the same
//! repetition, so that a machine that slows down for a while shifts all of
//! them alike. Beside the slowdown it records what was delivered and lost,
//! the tracers' CPU time and peak memory (wait4), the node's CPU time
//! (`/proc/PID/stat`) and memory (`/proc/PID/status`), the time to the
//! first row while a workload runs, and the client's merge-and-render
//! throughput from K simulated nodes ([`merge`]). With `--port-forward` it
//! also starts the end-to-end cluster with its real node on this host
//! ([`cluster`]) and adds ours through the API server's port-forward to
//! the gadget pod, interleaved with the rest. [`report`] writes
//! `docs/benchmarks.md` and `docs/benchmarks.json`.

mod cluster;
mod merge;
mod process;
mod report;
mod tracer;
mod workload;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::demo::{wait_healthy, Node};
use crate::setup;
use crate::util::{cargo, run_checked, target_dir, workspace_root};

pub use workload::run as workload;

use merge::MergeRun;
use tracer::{Running, Tools, Tracer};
use workload::{Config, Workload, WORKLOADS};

const USAGE: &str = "usage: cargo xtask bench [options]

  --opens N         openat+close pairs per open-storm run [default: 500000]
  --execs N         fork+execs per exec-storm run [default: 2000]
  --read-writes N   pwrite+pread pairs per read/write run [default: 200000]
  --mixed N         shell commands per build-like run [default: 200]
  --repetitions N   repetitions of every configuration [default: 5]
  --merge-events N  events per merge-throughput run [default: 1000000]
  --only NAME       only this workload (open, exec, readwrite, mixed); repeatable
  --report DIR      where benchmarks.md and benchmarks.json go [default: docs]
  --port-forward    also trace through the API server's port-forward: starts the
                    end-to-end cluster with its real node on this host (as `cargo
                    xtask e2e --only real-node`; its binaries are built the first
                    time), deploys gadget-node there, and deletes it all at the
                    end; holds /tmp/kgadget-e2e.lock while the cluster is up

Needs root (it loads eBPF programs) and bpftrace (cargo xtask setup installs it).";

/// What to run, from the command line.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    opens: u64,
    execs: u64,
    read_writes: u64,
    mixed: u64,
    repetitions: usize,
    merge_events: u64,
    only: Vec<String>,
    report_dir: PathBuf,
    /// Whether to run the configurations through the end-to-end cluster.
    port_forward: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            opens: 500_000,
            execs: 2_000,
            read_writes: 200_000,
            mixed: 200,
            repetitions: 5,
            merge_events: 1_000_000,
            only: Vec::new(),
            report_dir: workspace_root().join("docs"),
            port_forward: false,
        }
    }
}

impl Options {
    /// Parses the arguments; `None` for `--help`.
    fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            let mut number = || -> Result<u64> {
                let value = value()?;
                value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{arg}: not a positive number: {value}"))
            };
            match arg.as_str() {
                "--opens" => options.opens = number()?,
                "--execs" => options.execs = number()?,
                "--read-writes" => options.read_writes = number()?,
                "--mixed" => options.mixed = number()?,
                "--repetitions" => options.repetitions = usize::try_from(number()?)?,
                "--merge-events" => options.merge_events = number()?,
                "--only" => {
                    let name = value()?;
                    if !WORKLOADS.iter().any(|w| w.name == name) {
                        bail!("--only: no workload {name:?} (open, exec, readwrite, mixed)");
                    }
                    options.only.push(name.clone());
                }
                "--report" => options.report_dir = PathBuf::from(value()?),
                "--port-forward" => options.port_forward = true,
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        if options.merge_events < 100 {
            bail!("--merge-events must be at least 100 (one per simulated node)");
        }
        Ok(Some(options))
    }

    /// Operations per run of `workload`.
    fn count(&self, workload: &Workload) -> u64 {
        match workload.name {
            "open" => self.opens,
            "exec" => self.execs,
            "readwrite" => self.read_writes,
            _ => self.mixed,
        }
    }

    fn runs(&self, workload: &Workload) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == workload.name)
    }

    /// The configurations of `workload` this bench runs: those through the
    /// cluster only with `--port-forward`.
    fn configs<'a>(&self, workload: &'a Workload) -> impl Iterator<Item = &'a Config> {
        let port_forward = self.port_forward;
        workload
            .configs
            .iter()
            .filter(move |config| port_forward || !config.tracer.is_some_and(Tracer::needs_cluster))
    }
}

/// Simulated node counts of the merge throughput.
const MERGE_NODES: [usize; 3] = [1, 10, 100];

/// One workload run under one configuration.
#[derive(Debug, Clone)]
pub struct Run {
    workload: &'static str,
    config: &'static str,
    repetition: usize,
    /// Operations of the run.
    count: u64,
    /// The workload's loop time per operation, as it measured itself.
    ns_per_op: f64,
    /// Events that a tracer printing every event should have printed.
    generated: u64,
    /// What the tracer's output says; `None` untraced.
    output: Option<tracer::Output>,
    /// The tracer process's CPU time and peak memory (the client's, over
    /// gRPC); `None` untraced.
    tracer_usage: Option<process::Usage>,
    /// The node's CPU seconds during the run, over gRPC (the bench's
    /// `gadget-node serve`) and through the port-forward (the gadget pod's).
    node_cpu_seconds: Option<f64>,
    /// Through the port-forward: the CPU seconds that each of
    /// [`cluster::RELAYS`] (the API server, the kubelet and containerd,
    /// which carry the stream on this host) spent during the run.
    relay_cpu_seconds: Option<[f64; cluster::RELAYS.len()]>,
}

/// Time from starting a trace to its first row, while the open storm runs.
#[derive(Debug, Clone, Copy)]
pub struct FirstRow {
    repetition: usize,
    /// "local", "grpc" or "port-forward".
    config: &'static str,
    seconds: f64,
}

/// Memory of the bench's `gadget-node serve`, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeMemory {
    /// Resident once healthy, before any trace.
    idle_rss_kib: u64,
    /// Resident after every trace had ended.
    idle_after_rss_kib: u64,
    /// The peak over the whole bench (VmHWM).
    peak_rss_kib: u64,
}

/// Everything one bench measured.
pub struct Measurements {
    options: Options,
    runs: Vec<Run>,
    first_rows: Vec<FirstRow>,
    merges: Vec<(usize, &'static str, MergeRun)>,
    node_memory: NodeMemory,
    /// The gadget pod's memory, with `--port-forward`.
    pod_memory: Option<NodeMemory>,
    started: jiff::Timestamp,
    elapsed: Duration,
    command: String,
}

/// `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = Options::parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    setup::ensure_bench_tools()?;
    setup::require_kernel_access("the benchmark")?;
    run_checked(cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "gadget-node",
        "-p",
        "kubectl-gadget",
    ]))?;
    run_checked(cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "gadget-trace",
        "--example",
        "merge_throughput",
    ]))?;
    let release = target_dir().join("release");
    workload::prepare()?;

    let socket_dir = std::env::temp_dir().join(format!("gadget-bench-node-{}", std::process::id()));
    std::fs::create_dir_all(&socket_dir)?;
    let mut tools = Tools {
        node: release.join("gadget-node"),
        client: release.join("kubectl-gadget"),
        node_address: format!("unix://{}", socket_dir.join("gadget.sock").display()),
        kubeconfig: None,
        workspace: workspace_root(),
    };
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let cluster = options
        .port_forward
        .then(|| cluster::Cluster::up(&tools.client))
        .transpose()?;
    let mut pod_memory = None;
    if let Some(cluster) = &cluster {
        tools.kubeconfig = Some(cluster.kubeconfig());
        pod_memory = Some(NodeMemory {
            idle_rss_kib: process::status_kib(cluster.node_pid, "VmRSS")?,
            ..NodeMemory::default()
        });
    }
    let node = start_node(&tools)?;
    let node_pid = node.0.id();
    let mut node_memory = NodeMemory {
        idle_rss_kib: process::status_kib(node_pid, "VmRSS")?,
        ..NodeMemory::default()
    };

    let mut runs = Vec::new();
    let mut first_rows = Vec::new();
    let mut merges = Vec::new();
    for repetition in 0..options.repetitions {
        eprintln!(
            "== repetition {} of {}",
            repetition + 1,
            options.repetitions
        );
        for workload in WORKLOADS.iter().filter(|w| options.runs(w)) {
            for config in options.configs(workload) {
                let run = measure(
                    &tools,
                    node_pid,
                    cluster.as_ref(),
                    workload,
                    config,
                    options.count(workload),
                    repetition,
                )
                .with_context(|| format!("{} under {}", workload.name, config.id))?;
                eprintln!("   {}", run.progress());
                runs.push(run);
            }
        }
        let through_cluster = [(
            workload::PORT_FORWARD,
            Tracer::PortForward(&["open", "--host", "-o", "json"]),
        )];
        for (config, tracer) in [
            ("local", Tracer::Local(&["open", "--host", "-o", "json"])),
            ("grpc", Tracer::Grpc(&["open", "--host", "-o", "json"])),
        ]
        .into_iter()
        .chain(through_cluster.into_iter().filter(|_| cluster.is_some()))
        {
            let seconds = first_row(&tools, tracer)?.as_secs_f64();
            eprintln!("   first row, {config}: {seconds:.3} s");
            first_rows.push(FirstRow {
                repetition,
                config,
                seconds,
            });
        }
        let harness = release.join("examples/merge_throughput");
        for nodes in MERGE_NODES {
            for format in ["json", "columns"] {
                let run = merge::measure(&harness, nodes, options.merge_events, format)?;
                eprintln!(
                    "   merge {nodes} nodes, {format}: {:.0} events per CPU second, {} MiB",
                    run.events as f64 / run.cpu_seconds,
                    run.peak_rss_kib / 1024
                );
                merges.push((repetition, format, run));
            }
        }
        // Memory bounded by the merge window, not by the events: the same
        // with four times the events.
        let run = merge::measure(&harness, 100, 4 * options.merge_events, "json")?;
        merges.push((repetition, "json", run));
    }
    node_memory.idle_after_rss_kib = process::status_kib(node_pid, "VmRSS")?;
    node_memory.peak_rss_kib = process::status_kib(node_pid, "VmHWM")?;
    if let (Some(memory), Some(cluster)) = (&mut pod_memory, &cluster) {
        memory.idle_after_rss_kib = process::status_kib(cluster.node_pid, "VmRSS")?;
        memory.peak_rss_kib = process::status_kib(cluster.node_pid, "VmHWM")?;
    }
    drop(cluster);
    drop(node);
    let _ = std::fs::remove_dir_all(&socket_dir);

    let measurements = Measurements {
        command: std::iter::once("cargo xtask bench".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        options,
        runs,
        first_rows,
        merges,
        node_memory,
        pod_memory,
        started,
        elapsed: clock.elapsed(),
    };
    report::write(&measurements)
}

/// Starts `gadget-node serve` on the bench's socket and waits until it
/// answers.
fn start_node(tools: &Tools) -> Result<Node> {
    let address = &tools.node_address;
    let node = Node(
        Command::new(&tools.node)
            .args(["serve", "--no-kubernetes", "--listen", address])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start gadget-node serve")?,
    );
    wait_healthy(&tools.node, address)?;
    Ok(node)
}

/// Runs `workload` once under `config`; `node_pid` is the bench's
/// `gadget-node serve`.
fn measure(
    tools: &Tools,
    node_pid: u32,
    cluster: Option<&cluster::Cluster>,
    workload: &'static Workload,
    config: &'static Config,
    count: u64,
    repetition: usize,
) -> Result<Run> {
    let mut running = config
        .tracer
        .map(|tracer| Running::start(tools, tracer, workload))
        .transpose()?;
    if let Some(running) = &mut running {
        running.wait_started()?;
    }
    // The node that serves the trace, and what relays its stream.
    let (node_pid, relay_pids) = match (config.tracer, cluster) {
        (Some(Tracer::Grpc(_)), _) => (Some(node_pid), None),
        (Some(Tracer::PortForward(_)), Some(cluster)) => {
            (Some(cluster.node_pid), Some(cluster.relay_pids))
        }
        _ => (None, None),
    };
    let node_cpu_before = node_pid.map(process::cpu_seconds).transpose()?;
    let relay_cpu_before = relay_pids.map(relay_cpu).transpose()?;
    let (pid, elapsed) = run_workload(workload.name, count)?;
    let (output, tracer_usage) = match running {
        Some(running) => {
            // Lets the last batches drain (the node drains every 50 ms,
            // the client holds rows 250 ms) before the stop.
            std::thread::sleep(Duration::from_millis(400));
            let stopped = running.stop()?;
            let printed = config.tracer.is_some_and(Tracer::prints_events);
            let output = stopped.output(workload, &[pid])?;
            (printed.then_some(output), Some(stopped.usage))
        }
        None => (None, None),
    };
    let node_cpu_seconds = node_pid
        .zip(node_cpu_before)
        .map(|(pid, before)| process::cpu_seconds(pid).map(|after| after - before))
        .transpose()?;
    let relay_cpu_seconds = relay_pids
        .zip(relay_cpu_before)
        .map(|(pids, before)| {
            let after = relay_cpu(pids)?;
            Ok::<_, anyhow::Error>(std::array::from_fn(|i| after[i] - before[i]))
        })
        .transpose()?;
    Ok(Run {
        workload: workload.name,
        config: config.id,
        repetition,
        count,
        ns_per_op: elapsed.as_nanos() as f64 / count as f64,
        generated: workload.generated(count),
        output,
        tracer_usage,
        node_cpu_seconds,
        relay_cpu_seconds,
    })
}

/// The CPU seconds each of the relays `pids` has used.
fn relay_cpu(pids: [u32; cluster::RELAYS.len()]) -> Result<[f64; cluster::RELAYS.len()]> {
    let mut seconds = [0.0; cluster::RELAYS.len()];
    for (pid, seconds) in pids.into_iter().zip(&mut seconds) {
        *seconds = process::cpu_seconds(pid)?;
    }
    Ok(seconds)
}

impl Run {
    /// One line of progress.
    fn progress(&self) -> String {
        let mut line = format!(
            "{:<10} {:<20} {:>9.3} µs/op",
            self.workload,
            self.config,
            self.ns_per_op / 1000.0
        );
        if let Some(output) = &self.output {
            line += &format!(
                "  delivered {}/{}  lost {}/{}",
                output.delivered, self.generated, output.lost_kernel, output.lost_node
            );
        }
        if let Some(usage) = &self.tracer_usage {
            line += &format!("  tracer {:.2} s CPU", usage.cpu_seconds);
        }
        if let Some(node) = self.node_cpu_seconds {
            line += &format!("  node {node:.2} s CPU");
        }
        if let Some(relays) = self.relay_cpu_seconds {
            for (name, seconds) in cluster::RELAYS.into_iter().zip(relays) {
                line += &format!("  {name} {seconds:.2} s CPU");
            }
        }
        line
    }
}

/// Runs one workload process; its pid and how long its loop took (as it
/// measured itself, so process start-up is not counted).
fn run_workload(name: &str, count: u64) -> Result<(u32, Duration)> {
    let output = workload_command(name, count)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the workload")?;
    if !output.status.success() {
        bail!("the {name} workload failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (pid, nanos) = text
        .trim()
        .split_once(' ')
        .context("the workload printed no timing")?;
    Ok((pid.parse()?, Duration::from_nanos(nanos.parse()?)))
}

fn workload_command(name: &str, count: u64) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("xtask knows its own path"));
    command.args(["bench-workload", name, &count.to_string()]);
    command
}

/// Kills the endless workload of a first-row measurement however it ends.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tracer` while the open storm runs, and returns how long its
/// first row took to arrive.
fn first_row(tools: &Tools, tracer: Tracer) -> Result<Duration> {
    let _storm = Background(
        workload_command("open", 0)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the open storm")?,
    );
    let open = WORKLOADS
        .iter()
        .find(|w| w.name == "open")
        .expect("the open storm exists");
    let mut running = Running::start(tools, tracer, open)?;
    let first = running.wait_first_row()?;
    running.stop()?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_default_and_override() {
        let defaults = Options::parse(&[]).unwrap().unwrap();
        assert_eq!(defaults, Options::default());
        let options = Options::parse(&args(&[
            "--opens",
            "10",
            "--repetitions",
            "2",
            "--only",
            "exec",
            "--only",
            "open",
            "--report",
            "/tmp/r",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(options.opens, 10);
        assert_eq!(options.repetitions, 2);
        assert_eq!(options.only, ["exec", "open"]);
        assert_eq!(options.report_dir, PathBuf::from("/tmp/r"));
        let open = &WORKLOADS[0];
        assert!(options.runs(open));
        assert!(!options.runs(WORKLOADS.iter().find(|w| w.name == "mixed").unwrap()));
        assert!(Options::parse(&args(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn port_forward_configurations_run_only_when_asked() {
        let open = WORKLOADS.iter().find(|w| w.name == "open").unwrap();
        let ids = |options: &Options| {
            options
                .configs(open)
                .map(|config| config.id)
                .collect::<Vec<_>>()
        };
        let without = Options::parse(&args(&["--only", "open"])).unwrap().unwrap();
        assert!(!without.port_forward);
        assert!(!ids(&without).contains(&workload::PORT_FORWARD));
        assert!(ids(&without).contains(&"grpc"));

        let with = Options::parse(&args(&["--port-forward", "--opens", "5"]))
            .unwrap()
            .unwrap();
        assert!(with.port_forward);
        assert_eq!(with.opens, 5);
        // Every other configuration still runs, and the port-forward one
        // after them, in the same repetition.
        assert_eq!(ids(&with)[..ids(&without).len()], ids(&without)[..]);
        assert_eq!(ids(&with).last(), Some(&workload::PORT_FORWARD));
        // Each workload with a configuration over gRPC has one through the
        // port-forward, tracing the host as that one does.
        for workload in WORKLOADS {
            let grpc = workload.configs.iter().find(|c| c.id == "grpc");
            let forwarded = workload
                .configs
                .iter()
                .find(|c| c.id == workload::PORT_FORWARD);
            match (
                grpc.and_then(|c| c.tracer),
                forwarded.and_then(|c| c.tracer),
            ) {
                (Some(Tracer::Grpc(grpc)), Some(Tracer::PortForward(forwarded))) => {
                    assert_eq!(grpc, forwarded, "{}", workload.name);
                    assert!(forwarded.contains(&"--host"), "{}", workload.name);
                }
                other => panic!("{}: {other:?}", workload.name),
            }
        }
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        for (bad, reason) in [
            (&["--opens"][..], "--opens needs a value"),
            (&["--opens", "0"], "not a positive number: 0"),
            (&["--execs", "many"], "not a positive number: many"),
            (&["--only", "compile"], "no workload \"compile\""),
            (&["--merge-events", "50"], "at least 100"),
            (&["--fast"], "unknown argument \"--fast\""),
        ] {
            let err = Options::parse(&args(bad)).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }
}
