//! Turning one bench's measurements into `docs/benchmarks.md` (medians,
//! spreads, ratios and the targets) and `docs/benchmarks.json` (every raw
//! figure). The notes under [`NOTES_MARKER`] in an existing
//! `benchmarks.md` are written by people (the causes of missed targets)
//! and kept when the tables are regenerated.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::json;

use super::cluster::RELAYS;
use super::workload::{Workload, PORT_FORWARD, WORKLOADS};
use super::{Measurements, Run, MERGE_NODES};

/// Everything after this line of `benchmarks.md` is kept as it is.
pub const NOTES_MARKER: &str = "<!-- notes below are kept by cargo xtask bench -->";

/// The median and the range of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// The spread of `values`; `None` when there are none.
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    };
    Some(Spread {
        median,
        min: values[0],
        max: values[values.len() - 1],
    })
}

impl Spread {
    /// `1.23 (1.20–1.31)`, with `decimals` decimals.
    fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// The runs of one workload, with the ratios to the untraced run of the
/// same repetition.
struct WorkloadRuns<'a> {
    runs: Vec<&'a Run>,
}

impl<'a> WorkloadRuns<'a> {
    fn new(measurements: &'a Measurements, workload: &Workload) -> WorkloadRuns<'a> {
        WorkloadRuns {
            runs: measurements
                .runs
                .iter()
                .filter(|run| run.workload == workload.name)
                .collect(),
        }
    }

    fn of(&self, config: &str) -> impl Iterator<Item = &'a Run> + '_ {
        let config = config.to_string();
        self.runs
            .iter()
            .copied()
            .filter(move |run| run.config == config)
    }

    fn find(&self, config: &str, repetition: usize) -> Option<&'a Run> {
        self.of(config).find(|run| run.repetition == repetition)
    }

    /// Slowdown of each repetition of `config`: its time per operation over
    /// the untraced run's of the same repetition.
    fn ratios(&self, config: &str) -> Vec<f64> {
        self.of(config)
            .filter_map(|run| {
                let untraced = self.find("untraced", run.repetition)?;
                Some(run.ns_per_op / untraced.ns_per_op)
            })
            .collect()
    }

    /// Each repetition's slowdown of `config` minus the floor's.
    fn above_floor(&self, config: &str) -> Vec<f64> {
        self.of(config)
            .filter_map(|run| {
                let untraced = self.find("untraced", run.repetition)?;
                let floor = self.find("floor", run.repetition)?;
                Some((run.ns_per_op - floor.ns_per_op) / untraced.ns_per_op)
            })
            .collect()
    }

    /// (delivered, generated) summed over the repetitions; `None` for a
    /// configuration that prints nothing.
    fn delivered(&self, config: &str) -> Option<(u64, u64)> {
        let mut total = None;
        for run in self.of(config) {
            let output = run.output?;
            let (delivered, generated) = total.get_or_insert((0, 0));
            *delivered += output.delivered;
            *generated += run.generated;
        }
        total
    }

    /// The largest (kernel, node) losses of one repetition.
    fn lost(&self, config: &str) -> Option<(u64, u64)> {
        self.of(config)
            .filter_map(|run| run.output)
            .fold(None, |most, output| {
                let (kernel, node) = most.unwrap_or((0, 0));
                Some((kernel.max(output.lost_kernel), node.max(output.lost_node)))
            })
    }

    /// The tracer's (or, over gRPC, the client's) CPU seconds per million
    /// events of the workload.
    fn tracer_cpu_per_million(&self, config: &str) -> Option<Spread> {
        spread(
            self.of(config)
                .filter_map(|run| Some(run.tracer_usage?.cpu_seconds / run.generated as f64 * 1e6)),
        )
    }

    /// CPU microseconds per event delivered, of one of the processes.
    fn micros_per_delivered(&self, config: &str, process: Process) -> Option<Spread> {
        spread(self.of(config).filter_map(|run| {
            let seconds = match process {
                Process::Tracer => run.tracer_usage?.cpu_seconds,
                Process::Node => run.node_cpu_seconds?,
                Process::Relays => run.relay_cpu_seconds?.iter().sum(),
                Process::Relay(which) => run.relay_cpu_seconds?[which],
            };
            let delivered = run.output?.delivered;
            (delivered > 0).then(|| seconds / delivered as f64 * 1e6)
        }))
    }

    fn peak_rss_mib(&self, config: &str) -> Option<f64> {
        self.of(config)
            .filter_map(|run| run.tracer_usage.map(|u| u.peak_rss_kib as f64 / 1024.0))
            .reduce(f64::max)
    }

    fn node_cpu_per_million(&self, config: &str) -> Option<Spread> {
        spread(
            self.of(config)
                .filter_map(|run| Some(run.node_cpu_seconds? / run.generated as f64 * 1e6)),
        )
    }
}

/// Whose CPU time a figure counts.
#[derive(Debug, Clone, Copy)]
enum Process {
    /// The tracer: the client over gRPC and through the port-forward.
    Tracer,
    /// The node agent that served the trace.
    Node,
    /// Through the port-forward: the API server, the kubelet and
    /// containerd together.
    Relays,
    /// One of them, by its index in [`RELAYS`].
    Relay(usize),
}

/// A target and how the run fared against it.
struct Verdict {
    target: String,
    measured: String,
    met: Option<bool>,
}

/// Writes `benchmarks.md` and `benchmarks.json` into the report directory,
/// and prints the tables.
pub fn write(measurements: &Measurements) -> Result<()> {
    let dir = &measurements.options.report_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let markdown_path = dir.join("benchmarks.md");
    let notes = std::fs::read_to_string(&markdown_path)
        .ok()
        .and_then(|old| {
            old.split_once(NOTES_MARKER)
                .map(|(_, notes)| notes.to_string())
        })
        .unwrap_or_else(|| "\n\n## Notes\n\n(none yet)\n".to_string());
    let tables = markdown(measurements);
    println!("{tables}");
    std::fs::write(&markdown_path, format!("{tables}\n{NOTES_MARKER}{notes}"))
        .with_context(|| format!("cannot write {}", markdown_path.display()))?;
    let json_path = dir.join("benchmarks.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&raw(measurements))? + "\n",
    )
    .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!(
        "wrote {} and {}",
        markdown_path.display(),
        json_path.display()
    );
    Ok(())
}

fn optional(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_string())
}

/// The whole generated part of `benchmarks.md`.
fn markdown(m: &Measurements) -> String {
    let mut out = String::new();
    let options = &m.options;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `{}` (root) on {} in {:.0} s. Do not edit above the notes; rerun the command.\n",
        m.command,
        m.started.strftime("%Y-%m-%d %H:%M UTC"),
        m.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    for (what, value) in environment() {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    let _ = writeln!(
        out,
        "| repetitions | {} (configurations interleaved within each) |\n",
        options.repetitions
    );
    let _ = writeln!(
        out,
        "Slowdown: the workload's loop time per operation over the untraced loop's in the same \
         repetition; median (min–max) over the repetitions. *Above floor*: the same, minus the \
         floor's slowdown of the same repetition. *Delivered*: rows that are the workload's \
         events, over the events it made, summed over the repetitions. *Lost*: the largest \
         counts one run reported (ours: ring buffer full in the kernel / dropped by the node \
         because the client was slow; bpftrace: `Lost N events`). *CPU*: the tracer process's \
         user+system time (the client's, over gRPC; the node's in its own column) per million \
         of the workload's events, start-up included. Every tracer writes to a file.\n"
    );

    for workload in WORKLOADS {
        let runs = WorkloadRuns::new(m, workload);
        if runs.runs.is_empty() {
            continue;
        }
        let count = runs.runs[0].count;
        let _ = writeln!(
            out,
            "## {}: {count} × {}\n",
            workload.name, workload.operation
        );
        let untraced = spread(runs.of("untraced").map(|run| run.ns_per_op / 1000.0));
        if let Some(untraced) = untraced {
            let _ = writeln!(out, "Untraced: {} µs per operation.\n", untraced.show(3));
        }
        let _ = writeln!(
            out,
            "| configuration | slowdown | above floor | delivered | lost k/n | tracer CPU s/M | node CPU s/M | tracer peak RSS MiB |\n|---|---|---|---|---|---|---|---|"
        );
        // The configurations through the cluster run only with
        // `--port-forward`.
        for config in workload
            .configs
            .iter()
            .filter(|config| runs.of(config.id).next().is_some())
        {
            let slowdown = spread(runs.ratios(config.id)).map(|s| s.show(2));
            let above = (config.id != "untraced" && config.id != "floor")
                .then(|| spread(runs.above_floor(config.id)).map(|s| s.show(2)))
                .flatten();
            let delivered = runs.delivered(config.id).map(|(delivered, generated)| {
                format!(
                    "{:.4} ({delivered}/{generated})",
                    delivered as f64 / generated as f64
                )
            });
            let lost = runs.lost(config.id).map(|(k, n)| format!("{k}/{n}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                config.label,
                optional(slowdown),
                optional(above),
                optional(delivered),
                optional(lost),
                optional(
                    runs.tracer_cpu_per_million(config.id)
                        .map(|s| format!("{:.2}", s.median))
                ),
                optional(
                    runs.node_cpu_per_million(config.id)
                        .map(|s| format!("{:.2}", s.median))
                ),
                optional(runs.peak_rss_mib(config.id).map(|mib| format!("{mib:.0}"))),
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Node and client\n");
    let open = WORKLOADS
        .iter()
        .find(|w| w.name == "open")
        .expect("open storm");
    let runs = WorkloadRuns::new(m, open);
    let first = |config: &str| {
        spread(
            m.first_rows
                .iter()
                .filter(|f| f.config == config)
                .map(|f| f.seconds),
        )
    };
    let memory = &m.node_memory;
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let mut rows = vec![
        (
            "node CPU per event over gRPC, µs (open storm, JSON)",
            runs.micros_per_delivered("grpc", Process::Node)
                .map(|s| s.show(2)),
        ),
        (
            "client CPU per event rendered as JSON, µs",
            runs.micros_per_delivered("grpc", Process::Tracer)
                .map(|s| s.show(2)),
        ),
        (
            "client CPU per event rendered as columns, µs",
            runs.micros_per_delivered("grpc-columns", Process::Tracer)
                .map(|s| s.show(2)),
        ),
        (
            "local mode CPU per event as JSON (node and printing in one process), µs",
            runs.micros_per_delivered("local", Process::Tracer)
                .map(|s| s.show(2)),
        ),
        (
            "node RSS idle, before any trace, MiB",
            Some(mib(memory.idle_rss_kib)),
        ),
        (
            "node RSS idle, after every trace, MiB",
            Some(mib(memory.idle_after_rss_kib)),
        ),
        (
            "node peak RSS over the whole bench, MiB",
            Some(mib(memory.peak_rss_kib)),
        ),
        (
            "client peak RSS (open storm over gRPC, JSON), MiB",
            runs.peak_rss_mib("grpc").map(|v| format!("{v:.1}")),
        ),
        (
            "time to first row, local mode, s",
            first("local").map(|s| s.show(3)),
        ),
        (
            "time to first row, over gRPC, s",
            first("grpc").map(|s| s.show(3)),
        ),
    ];
    if let Some(pod) = &m.pod_memory {
        rows.extend([
            (
                "through the port-forward: gadget pod's CPU per event, µs (open storm, JSON)",
                runs.micros_per_delivered(PORT_FORWARD, Process::Node)
                    .map(|s| s.show(2)),
            ),
            (
                "through the port-forward: client CPU per event as JSON, µs",
                runs.micros_per_delivered(PORT_FORWARD, Process::Tracer)
                    .map(|s| s.show(2)),
            ),
            (
                "through the port-forward: API server + kubelet + containerd CPU per event, µs",
                runs.micros_per_delivered(PORT_FORWARD, Process::Relays)
                    .map(|all| {
                        let each: Vec<String> = RELAYS
                            .iter()
                            .enumerate()
                            .filter_map(|(which, name)| {
                                let one =
                                    runs.micros_per_delivered(PORT_FORWARD, Process::Relay(which))?;
                                Some(format!("{name} {:.2}", one.median))
                            })
                            .collect();
                        format!("{} ({})", all.show(2), each.join(", "))
                    }),
            ),
            (
                "through the port-forward: client peak RSS (open storm, JSON), MiB",
                runs.peak_rss_mib(PORT_FORWARD).map(|v| format!("{v:.1}")),
            ),
            (
                "gadget pod's RSS idle, after deploy and before any trace, MiB",
                Some(mib(pod.idle_rss_kib)),
            ),
            (
                "gadget pod's RSS idle, after every trace, MiB",
                Some(mib(pod.idle_after_rss_kib)),
            ),
            (
                "gadget pod's peak RSS over the whole bench, MiB",
                Some(mib(pod.peak_rss_kib)),
            ),
            (
                "time to first row, through the port-forward, s",
                first(PORT_FORWARD).map(|s| s.show(3)),
            ),
        ]);
    }
    let _ = writeln!(out, "| figure | median (min–max) |\n|---|---|");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {} |", optional(value));
    }
    let _ = writeln!(
        out,
        "\nPer event: the process's CPU time over the run (start-up included) over the rows it \
         delivered. Time to first row: from starting the trace to its first row on stdout, \
         while the open storm runs (local mode loads the programs; over gRPC and through the \
         port-forward the node already runs).\n"
    );

    let _ = writeln!(out, "## Client merge-and-render throughput\n");
    let _ = writeln!(
        out,
        "`gadget-trace/examples/merge_throughput`: K simulated nodes send {} trace_open events \
         in all, in batches of 256 decoded from protobuf and stamped with the current time, \
         through the client's merge (250 ms window, 100,000 events at most) and renderer to \
         /dev/null, on one thread. Events per CPU second of the process.\n",
        m.options.merge_events
    );
    let _ = writeln!(
        out,
        "| nodes | format | events per CPU second | events per second (wall) | peak RSS MiB | released early |\n|---|---|---|---|---|---|"
    );
    for nodes in MERGE_NODES {
        for format in ["json", "columns"] {
            let runs: Vec<_> = m
                .merges
                .iter()
                .filter(|(_, f, run)| {
                    *f == format && run.nodes == nodes && run.events <= m.options.merge_events
                })
                .map(|(_, _, run)| run)
                .collect();
            let per_cpu = spread(runs.iter().map(|r| r.events as f64 / r.cpu_seconds));
            let per_wall = spread(runs.iter().map(|r| r.events as f64 / r.seconds));
            let rss = runs.iter().map(|r| r.peak_rss_kib).max();
            let early = runs.iter().map(|r| r.released_early).max();
            let _ = writeln!(
                out,
                "| {nodes} | {format} | {} | {} | {} | {} |",
                optional(per_cpu.map(|s| s.show(0))),
                optional(per_wall.map(|s| s.show(0))),
                optional(rss.map(mib)),
                optional(early.map(|e| e.to_string())),
            );
        }
    }
    let big: Vec<_> = m
        .merges
        .iter()
        .filter(|(_, _, r)| r.events > m.options.merge_events)
        .map(|(_, _, r)| r)
        .collect();
    if let Some(rss) = big.iter().map(|r| r.peak_rss_kib).max() {
        let _ = writeln!(
            out,
            "\nWith four times the events (100 nodes, JSON): peak RSS {} MiB.\n",
            mib(rss)
        );
    }

    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    for verdict in verdicts(m) {
        let met = match verdict.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", verdict.target, verdict.measured);
    }
    let _ = writeln!(out, "\n{}", port_forward_note(m.pod_memory.is_some()));
    out
}

/// What the report says about the configurations through the
/// port-forward: how they ran, or how to run them.
fn port_forward_note(ran: bool) -> &'static str {
    if ran {
        "Through the port-forward: `kubectl-gadget trace --host` with the kubeconfig of the \
         end-to-end cluster (`--port-forward`), which reaches the gadget pod that `kubectl-gadget \
         deploy` made on the real node (a kubelet and containerd on this host, as `cargo xtask \
         e2e --only real-node`) through the API server, the kubelet and containerd's streaming \
         server. The workloads run on this host outside any pod, which `--host` selects. Here \
         the API server, the kubelet and containerd share this machine's cores with the \
         workload, the client and the node, as they would not on a real cluster for the API \
         server; their CPU per event is in the table above. The cluster is up, idle, during \
         every configuration of the run."
    } else {
        "Not run: ours through the API server's port-forward, from the end-to-end cluster. \
         `cargo xtask bench --port-forward` runs it (it starts that cluster with its real node \
         on this host)."
    }
}

/// The targets of issue 11, against this run.
fn verdicts(m: &Measurements) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let find = |name: &str| WORKLOADS.iter().find(|w| w.name == name).expect("workload");
    let open = WorkloadRuns::new(m, find("open"));
    let exec = WorkloadRuns::new(m, find("exec"));
    let complete = |runs: &WorkloadRuns, config: &str| {
        let delivered = runs.delivered(config)?;
        let lost = runs.lost(config)?;
        Some((
            delivered.0 >= delivered.1 && lost == (0, 0),
            delivered,
            lost,
        ))
    };
    let above = |runs: &WorkloadRuns, config: &str| spread(runs.above_floor(config));

    let port_forward = m.pod_memory.is_some();
    let full_paths = [
        Some(("grpc", "over gRPC")),
        port_forward.then_some((PORT_FORWARD, "through the API server's port-forward")),
    ];
    for (config, how) in full_paths.into_iter().flatten() {
        let full = above(&open, config);
        let whole = complete(&open, config);
        verdicts.push(Verdict {
            target: format!("full path ({how}, JSON), every event delivered, nothing lost: within 0.15 of the floor"),
            measured: match (full, whole) {
                (Some(gap), Some((_, (d, g), (k, n)))) => {
                    format!("{:.2} above the floor; {d}/{g} delivered; lost {k}/{n}", gap.median)
                }
                _ => "–".into(),
            },
            met: full.zip(whole).map(|(gap, (all, _, _))| all && gap.median <= 0.15),
        });
    }
    for (config, what) in [
        ("local-prefix", "dropped in the kernel by `--prefix`"),
        ("local-not-selected", "process not selected"),
    ] {
        let gap = above(&open, config);
        verdicts.push(Verdict {
            target: format!("filtered out in the kernel ({what}): within 0.03 of the floor"),
            measured: optional(gap.map(|g| format!("{:.2} above the floor", g.median))),
            met: gap.map(|g| g.median <= 0.03),
        });
    }
    for (config, what, limit) in [("grpc", "JSON", 0.5), ("grpc-columns", "columns", 1.0)] {
        let micros = open.micros_per_delivered(config, Process::Tracer);
        verdicts.push(Verdict {
            target: format!("client: at most {limit} µs of CPU per event rendered as {what}"),
            measured: optional(micros.map(|s| format!("{:.2} µs", s.median))),
            met: micros.map(|s| s.median <= limit),
        });
    }
    let hundred: Vec<_> = m
        .merges
        .iter()
        .filter(|(_, f, r)| *f == "json" && r.nodes == 100 && r.events <= m.options.merge_events)
        .map(|(_, _, r)| r)
        .collect();
    let rate = spread(hundred.iter().map(|r| r.events as f64 / r.cpu_seconds));
    verdicts.push(Verdict {
        target: "merge from 100 node streams: at least 1,000,000 events per second on one core"
            .into(),
        measured: optional(rate.map(|s| format!("{:.0} events per CPU second (JSON)", s.median))),
        met: rate.map(|s| s.median >= 1e6),
    });
    let small = hundred.iter().map(|r| r.peak_rss_kib).max();
    let big = m
        .merges
        .iter()
        .filter(|(_, _, r)| r.events > m.options.merge_events)
        .map(|(_, _, r)| r.peak_rss_kib)
        .max();
    verdicts.push(Verdict {
        target: "merge memory bounded by the merge window, not by the number of events".into(),
        measured: match (small, big) {
            (Some(small), Some(big)) => format!(
                "peak {:.0} MiB with {} events, {:.0} MiB with 4×",
                small as f64 / 1024.0,
                m.options.merge_events,
                big as f64 / 1024.0
            ),
            _ => "–".into(),
        },
        // Four times the events may not take more than a quarter more memory.
        met: small
            .zip(big)
            .map(|(small, big)| (big as f64) <= 1.25 * small as f64),
    });
    let nodes = [
        Some(("grpc", "", &m.node_memory)),
        m.pod_memory
            .as_ref()
            .map(|memory| (PORT_FORWARD, " (the gadget pod)", memory)),
    ];
    for (config, which, memory) in nodes.into_iter().flatten() {
        let node_cpu = open.node_cpu_per_million(config);
        let node_per_delivered = open.micros_per_delivered(config, Process::Node);
        verdicts.push(Verdict {
            target: format!("node{which}: at most 0.4 s of CPU per million events"),
            measured: optional(
                node_per_delivered.map(|s| format!("{:.2} s per million delivered", s.median)),
            ),
            met: node_per_delivered.or(node_cpu).map(|s| s.median <= 0.4),
        });
        let idle = memory.idle_rss_kib as f64 / 1024.0;
        let idle_after = memory.idle_after_rss_kib as f64 / 1024.0;
        verdicts.push(Verdict {
            target: format!("node{which}: under 16 MiB RSS idle"),
            measured: format!("{idle:.1} MiB before any trace, {idle_after:.1} MiB after"),
            met: Some(idle < 16.0 && idle_after < 16.0),
        });
    }
    let first_rows = [
        Some(("grpc", "over gRPC")),
        Some(("local", "local mode")),
        port_forward.then_some((PORT_FORWARD, "through the port-forward")),
    ];
    for (config, how) in first_rows.into_iter().flatten() {
        let first = spread(
            m.first_rows
                .iter()
                .filter(|f| f.config == config)
                .map(|f| f.seconds),
        );
        verdicts.push(Verdict {
            target: format!("first row under 0.5 s ({how})"),
            measured: optional(first.map(|s| format!("{:.3} s", s.median))),
            met: first.map(|s| s.median < 0.5),
        });
    }
    let exec_configs = [
        Some(("local", "local mode")),
        Some(("grpc", "over gRPC")),
        port_forward.then_some((PORT_FORWARD, "through the port-forward")),
    ];
    for (config, how) in exec_configs.into_iter().flatten() {
        let whole = complete(&exec, config);
        let gap = above(&exec, config);
        // The noise: how far apart the floor's own repetitions are.
        let noise = spread(exec.ratios("floor")).map(|s| s.max - s.min);
        verdicts.push(Verdict {
            target: format!("exec storm ({how}): no loss, slowdown within the noise of the floor"),
            measured: match (whole, gap, noise) {
                (Some((_, (d, g), (k, n))), Some(gap), Some(noise)) => format!(
                    "{d}/{g} delivered, lost {k}/{n}; {:.3} above the floor, floor's own spread {noise:.3}",
                    gap.median
                ),
                _ => "–".into(),
            },
            met: match (whole, gap, noise) {
                (Some((all, _, _)), Some(gap), Some(noise)) => Some(all && gap.median <= noise),
                _ => None,
            },
        });
    }
    verdicts
}

/// The machine, as (what, value) pairs.
fn environment() -> Vec<(&'static str, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let command_output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let commit = command_output(
        "git",
        &[
            "-C",
            &crate::util::workspace_root().display().to_string(),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    vec![
        ("CPU", format!("{cpu}, {cores} cores")),
        ("memory", memory),
        (
            "kernel",
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
        (
            "load average at the end",
            read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("commit", commit),
        ("bpftrace", command_output("bpftrace", &["--version"])),
        ("build", "release (`lto = \"thin\"`)".to_string()),
    ]
}

/// Every raw figure, for `benchmarks.json`.
fn raw(m: &Measurements) -> serde_json::Value {
    let runs: Vec<_> = m
        .runs
        .iter()
        .map(|run| {
            json!({
                "workload": run.workload,
                "config": run.config,
                "repetition": run.repetition,
                "operations": run.count,
                "ns_per_op": run.ns_per_op,
                "generated": run.generated,
                "delivered": run.output.map(|o| o.delivered),
                "lost_kernel": run.output.map(|o| o.lost_kernel),
                "lost_node": run.output.map(|o| o.lost_node),
                "tracer_cpu_seconds": run.tracer_usage.map(|u| u.cpu_seconds),
                "tracer_peak_rss_kib": run.tracer_usage.map(|u| u.peak_rss_kib),
                "node_cpu_seconds": run.node_cpu_seconds,
                "relay_cpu_seconds": run.relay_cpu_seconds.map(|seconds| {
                    RELAYS
                        .iter()
                        .zip(seconds)
                        .map(|(name, seconds)| (name.to_string(), json!(seconds)))
                        .collect::<serde_json::Map<_, _>>()
                }),
            })
        })
        .collect();
    let merges: Vec<_> = m
        .merges
        .iter()
        .map(|(repetition, format, run)| {
            json!({
                "repetition": repetition,
                "nodes": run.nodes,
                "format": format,
                "events": run.events,
                "seconds": run.seconds,
                "cpu_seconds": run.cpu_seconds,
                "peak_rss_kib": run.peak_rss_kib,
                "released_early": run.released_early,
                "out_of_order": run.out_of_order,
            })
        })
        .collect();
    let first_rows: Vec<_> = m
        .first_rows
        .iter()
        .map(|f| json!({"repetition": f.repetition, "config": f.config, "seconds": f.seconds}))
        .collect();
    let environment: serde_json::Map<String, serde_json::Value> = environment()
        .into_iter()
        .map(|(what, value)| (what.to_string(), value.into()))
        .collect();
    json!({
        "command": m.command,
        "started": m.started.to_string(),
        "elapsed_seconds": m.elapsed.as_secs_f64(),
        "environment": environment,
        "repetitions": m.options.repetitions,
        "runs": runs,
        "first_rows": first_rows,
        "merge": merges,
        "node_memory_kib": {
            "idle_before": m.node_memory.idle_rss_kib,
            "idle_after": m.node_memory.idle_after_rss_kib,
            "peak": m.node_memory.peak_rss_kib,
        },
        "pod_memory_kib": m.pod_memory.map(|memory| json!({
            "idle_before": memory.idle_rss_kib,
            "idle_after": memory.idle_after_rss_kib,
            "peak": memory.peak_rss_kib,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::super::process::Usage;
    use super::super::tracer::Output;
    use super::super::{FirstRow, NodeMemory, Options};
    use super::*;

    fn run(config: &'static str, repetition: usize, ns_per_op: f64, delivered: Option<u64>) -> Run {
        Run {
            workload: "open",
            config,
            repetition,
            count: 1000,
            ns_per_op,
            generated: 1000,
            output: delivered.map(|delivered| Output {
                delivered,
                lost_kernel: 0,
                lost_node: 0,
            }),
            tracer_usage: (config != "untraced").then_some(Usage {
                cpu_seconds: 0.002,
                peak_rss_kib: 20 * 1024,
            }),
            node_cpu_seconds: (config == "grpc" || config == PORT_FORWARD).then_some(0.0005),
            relay_cpu_seconds: (config == PORT_FORWARD).then_some([0.002, 0.0006, 0.0004]),
        }
    }

    /// Two repetitions' measurements of `runs`, reported into `dir`.
    fn measurements(
        dir: &std::path::Path,
        runs: Vec<Run>,
        first_rows: Vec<FirstRow>,
        pod_memory: Option<NodeMemory>,
    ) -> Measurements {
        Measurements {
            options: Options {
                repetitions: 2,
                report_dir: dir.to_path_buf(),
                port_forward: pod_memory.is_some(),
                ..Options::default()
            },
            runs,
            first_rows,
            merges: Vec::new(),
            node_memory: NodeMemory {
                idle_rss_kib: 10 * 1024,
                idle_after_rss_kib: 11 * 1024,
                peak_rss_kib: 30 * 1024,
            },
            pod_memory,
            started: jiff::Timestamp::UNIX_EPOCH,
            elapsed: std::time::Duration::from_secs(60),
            command: "cargo xtask bench".into(),
        }
    }

    #[test]
    fn the_report_compares_within_a_repetition_and_keeps_the_notes() {
        let dir = tempfile::tempdir().unwrap();
        let markdown_path = dir.path().join("benchmarks.md");
        std::fs::write(
            &markdown_path,
            format!("old tables\n{NOTES_MARKER}\n\n## Notes\n\nWhy.\n"),
        )
        .unwrap();
        // The second repetition ran on a machine twice as slow: the ratios
        // stay the same.
        let runs = vec![
            run("untraced", 0, 1000.0, None),
            run("floor", 0, 1200.0, None),
            run("grpc", 0, 1500.0, Some(1000)),
            run("untraced", 1, 2000.0, None),
            run("floor", 1, 2400.0, None),
            run("grpc", 1, 3000.0, Some(999)),
        ];
        write(&measurements(dir.path(), runs, Vec::new(), None)).unwrap();
        let markdown = std::fs::read_to_string(&markdown_path).unwrap();
        assert!(!markdown.contains("old tables"), "{markdown}");
        assert!(
            markdown.ends_with(&format!("{NOTES_MARKER}\n\n## Notes\n\nWhy.\n")),
            "{markdown}"
        );
        assert_eq!(markdown.matches(NOTES_MARKER).count(), 1);
        let grpc = markdown
            .lines()
            .find(|line| line.starts_with("| ours, `gadget-node serve`"))
            .unwrap();
        assert!(
            grpc.contains("| 1.50 (1.50–1.50) | 0.30 (0.30–0.30) | 0.9995 (1999/2000) | 0/0 |"),
            "{grpc}"
        );
        // One event short of all: the full-path target is missed.
        let full = markdown
            .lines()
            .find(|line| line.starts_with("| full path"))
            .unwrap();
        assert!(full.ends_with("| **no** |"), "{full}");
        // 0.5 ms of node CPU for ~1000 events: 0.5 s per million.
        assert!(markdown.contains("| node: at most 0.4 s of CPU per million events | 0.50 s per million delivered | **no** |"), "{markdown}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("benchmarks.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["runs"].as_array().unwrap().len(), 6);
        assert_eq!(json["runs"][2]["delivered"], 1000);
        assert_eq!(json["node_memory_kib"]["idle_before"], 10 * 1024);
        // Without --port-forward: one line says how to run it, and no
        // table, figure or target has it.
        assert!(
            markdown.contains(
                "\nNot run: ours through the API server's port-forward, from the end-to-end \
                 cluster. `cargo xtask bench --port-forward` runs it"
            ),
            "{markdown}"
        );
        assert!(!markdown.contains("end-to-end cluster: `kubectl-gadget trace`"));
        assert!(
            !markdown.contains("| through the port-forward:"),
            "{markdown}"
        );
        assert!(!markdown.contains("(through the"), "{markdown}");
        assert!(json["pod_memory_kib"].is_null());
    }

    #[test]
    fn the_port_forward_has_its_row_figures_and_targets() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            run("untraced", 0, 1000.0, None),
            run("floor", 0, 1200.0, None),
            run("grpc", 0, 1500.0, Some(1000)),
            run(PORT_FORWARD, 0, 1300.0, Some(1000)),
            run("untraced", 1, 1000.0, None),
            run("floor", 1, 1200.0, None),
            run("grpc", 1, 1500.0, Some(1000)),
            run(PORT_FORWARD, 1, 1260.0, Some(1000)),
        ];
        let first_rows = [("grpc", 0.3), (PORT_FORWARD, 0.6), (PORT_FORWARD, 0.8)]
            .into_iter()
            .enumerate()
            .map(|(repetition, (config, seconds))| FirstRow {
                repetition,
                config,
                seconds,
            })
            .collect();
        let pod = NodeMemory {
            idle_rss_kib: 5 * 1024,
            idle_after_rss_kib: 20 * 1024,
            peak_rss_kib: 40 * 1024,
        };
        write(&measurements(dir.path(), runs, first_rows, Some(pod))).unwrap();
        let markdown = std::fs::read_to_string(dir.path().join("benchmarks.md")).unwrap();
        let line = |start: &str| {
            markdown
                .lines()
                .find(|line| line.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in {markdown}"))
                .to_string()
        };
        // Ratios 1.3 and 1.26, 0.1 and 0.06 above the floor; every event;
        // 2 ms of client CPU and 0.5 ms of the pod's per 1000 events.
        assert_eq!(
            line("| ours, end-to-end cluster:"),
            "| ours, end-to-end cluster: `kubectl-gadget trace` through the API server's \
             port-forward to the gadget pod, JSON to a file | 1.28 (1.26–1.30) | 0.08 (0.06–0.10) \
             | 1.0000 (2000/2000) | 0/0 | 2.00 | 0.50 | 20 |"
        );
        assert_eq!(
            line("| through the port-forward: API server + kubelet + containerd"),
            "| through the port-forward: API server + kubelet + containerd CPU per event, µs | \
             3.00 (3.00–3.00) (kube-apiserver 2.00, kubelet 0.60, containerd 0.40) |"
        );
        assert!(
            line("| through the port-forward: gadget pod's CPU").ends_with("| 0.50 (0.50–0.50) |")
        );
        assert!(line("| through the port-forward: client CPU").ends_with("| 2.00 (2.00–2.00) |"));
        assert!(line("| gadget pod's RSS idle, after every").ends_with("| 20.0 |"));
        assert!(line("| time to first row, through").ends_with("| 0.700 (0.600–0.800) |"));
        // Within 0.15 of the floor and nothing lost: met; the first row
        // (0.7 s) and the pod's idle memory after the traces (20 MiB) not.
        assert!(
            line("| full path (through the API server's port-forward, JSON)")
                .ends_with("| 0.08 above the floor; 2000/2000 delivered; lost 0/0 | yes |")
        );
        assert!(line("| first row under 0.5 s (through the port-forward)")
            .ends_with("| 0.700 s | **no** |"));
        assert_eq!(
            line("| node (the gadget pod): under 16 MiB RSS idle"),
            "| node (the gadget pod): under 16 MiB RSS idle | 5.0 MiB before any trace, 20.0 MiB after | **no** |"
        );
        assert!(line("| node (the gadget pod): at most 0.4 s")
            .ends_with("| 0.50 s per million delivered | **no** |"));
        assert!(markdown.contains("\nThrough the port-forward: `kubectl-gadget trace --host`"));
        assert!(!markdown.contains("Not run"));
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("benchmarks.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["runs"][3]["config"], PORT_FORWARD);
        assert_eq!(
            json["runs"][3]["relay_cpu_seconds"],
            json!({"kube-apiserver": 0.002, "kubelet": 0.0006, "containerd": 0.0004})
        );
        assert_eq!(json["pod_memory_kib"]["idle_after"], 20 * 1024);
    }

    #[test]
    fn spread_of_odd_and_even_counts() {
        let odd = spread([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = spread([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(spread([]), None);
        // A division by zero does not poison the rest.
        assert_eq!(spread([f64::NAN, 1.0]).unwrap().median, 1.0);
        assert_eq!(
            spread([1.234, 1.0, 2.0]).unwrap().show(2),
            "1.23 (1.00–2.00)"
        );
    }
}
