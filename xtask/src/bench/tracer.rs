//! The tracers a workload runs under: bpftrace (the floor, and printing
//! every event) and ours (local mode, the client over gRPC to
//! `gadget-node serve`, and the client through the end-to-end cluster's
//! port-forward to the gadget pod of its real node). Each writes to files, not to a reader in this
//! process, which would compete with the tracer and the workload for the
//! CPUs; the files are read once the tracer has stopped.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::process::{try_wait_with_usage, Usage};
use super::workload::Workload;

/// How a workload is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracer {
    /// bpftrace counting every hit of the gadget's tracepoints in a map:
    /// what any eBPF tracer on these hooks must pay.
    Floor,
    /// bpftrace printing one line per event to a file.
    BpftracePrint,
    /// `gadget-node trace ARGS` (local mode: gadget and printing in one
    /// process), stdout to a file.
    Local(&'static [&'static str]),
    /// `kubectl-gadget trace ARGS --node-address` talking gRPC to the
    /// bench's `gadget-node serve`, stdout to a file.
    Grpc(&'static [&'static str]),
    /// `kubectl-gadget trace ARGS --kubeconfig` of the end-to-end cluster:
    /// through the API server's port-forward and the real node's kubelet
    /// to its gadget pod, stdout to a file.
    PortForward(&'static [&'static str]),
}

/// Whose output format a tracer's lines are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// bpftrace's `pid=PID ppid=PPID ...` lines.
    Bpftrace,
    /// Our rows (JSON or columns) and statuses.
    Ours,
}

impl Tracer {
    /// Whose output format its lines are in.
    pub fn family(self) -> Family {
        match self {
            Tracer::Floor | Tracer::BpftracePrint => Family::Bpftrace,
            Tracer::Local(_) | Tracer::Grpc(_) | Tracer::PortForward(_) => Family::Ours,
        }
    }

    /// Whether it needs the end-to-end cluster (`--port-forward`).
    pub fn needs_cluster(self) -> bool {
        matches!(self, Tracer::PortForward(_))
    }

    /// Whether it prints every event (so that what it delivered counts).
    pub fn prints_events(self) -> bool {
        self != Tracer::Floor
    }
}

/// The programs the tracers run.
#[derive(Debug, Clone)]
pub struct Tools {
    /// gadget-node (release build).
    pub node: PathBuf,
    /// kubectl-gadget (release build).
    pub client: PathBuf,
    /// The address of the bench's `gadget-node serve`.
    pub node_address: String,
    /// The end-to-end cluster's kubeconfig, with `--port-forward`.
    pub kubeconfig: Option<PathBuf>,
    /// The workspace, whose kernel programs name the floor's tracepoints.
    pub workspace: PathBuf,
}

/// The line bpftrace prints once its probes are attached.
const BPFTRACE_STARTED: &str = "bench: started";

/// How long a tracer may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a tracer may take to stop once interrupted (it writes out what
/// it holds first).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the SIGINT is repeated while the tracer has not stopped.
const INTERRUPT_AGAIN: Duration = Duration::from_secs(2);

/// A tracer that runs.
pub struct Running {
    /// `None` once reaped.
    child: Option<Child>,
    tracer: Tracer,
    stdout: PathBuf,
    stderr: PathBuf,
    spawned: Instant,
}

/// What a tracer wrote and used, once stopped.
pub struct Stopped {
    /// Its CPU time and peak memory.
    pub usage: Usage,
    stdout: PathBuf,
    stderr: PathBuf,
    family: Family,
}

/// What a tracer's output says about one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// Lines that are events of the workload.
    pub delivered: u64,
    /// Events lost in the kernel as reported to the user (our ring buffer
    /// full; bpftrace's perf buffer full).
    pub lost_kernel: u64,
    /// Events our node dropped because the client was too slow.
    pub lost_node: u64,
}

impl Running {
    /// Starts `tracer` for `workload`.
    pub fn start(tools: &Tools, tracer: Tracer, workload: &Workload) -> Result<Running> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "gadget-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let stdout = base.with_extension("out");
        let stderr = base.with_extension("err");
        let mut command = match tracer {
            Tracer::Floor | Tracer::BpftracePrint => {
                let program = match tracer {
                    Tracer::Floor => floor_program(&tools.workspace, workload.gadget)?,
                    _ => workload.bpftrace_print.to_string(),
                };
                let mut command = Command::new("bpftrace");
                command.arg("-e").arg(format!(
                    "BEGIN {{ printf(\"{BPFTRACE_STARTED}\\n\"); }}\n{program}"
                ));
                command
            }
            Tracer::Local(args) => {
                let mut command = Command::new(&tools.node);
                command.arg("trace").args(args);
                command
            }
            Tracer::Grpc(args) => {
                let mut command = Command::new(&tools.client);
                command
                    .arg("trace")
                    .args(args)
                    .args(["--node-address", &tools.node_address]);
                command
            }
            Tracer::PortForward(args) => {
                let kubeconfig = tools
                    .kubeconfig
                    .as_ref()
                    .context("a trace through the port-forward needs the cluster")?;
                let mut command = Command::new(&tools.client);
                command
                    .arg("trace")
                    .args(args)
                    .arg("--kubeconfig")
                    .arg(kubeconfig);
                command
            }
        };
        let out =
            File::create(&stdout).with_context(|| format!("cannot create {}", stdout.display()))?;
        let err =
            File::create(&stderr).with_context(|| format!("cannot create {}", stderr.display()))?;
        super::process::reset_own_peak_rss()?;
        let spawned = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {}", crate::util::display(&command)))?;
        Ok(Running {
            child: Some(child),
            tracer,
            stdout,
            stderr,
            spawned,
        })
    }

    /// Waits until the tracer says it traces: our start status, or
    /// bpftrace's BEGIN line (run once its probes are attached).
    pub fn wait_started(&mut self) -> Result<()> {
        self.wait_for("start", |stdout, stderr| {
            stdout.contains(r#""started":true"#)
                || stderr.contains(": trace started")
                || stdout.contains(BPFTRACE_STARTED)
        })?;
        Ok(())
    }

    /// Waits for the first row of an event on stdout, and returns how long
    /// after the tracer's start it came.
    pub fn wait_first_row(&mut self) -> Result<Duration> {
        self.wait_for("first row", |stdout, _| {
            stdout
                .lines()
                .any(|line| line.starts_with('{') && !line.starts_with(r#"{"type":"status""#))
        })
    }

    /// Polls the output files until `done(stdout head, stderr head)`;
    /// returns the time since the start.
    fn wait_for(&mut self, what: &str, done: impl Fn(&str, &str) -> bool) -> Result<Duration> {
        let child = self.child.as_mut().context("the tracer was stopped")?;
        loop {
            let stdout = read_head(&self.stdout)?;
            let stderr = read_head(&self.stderr)?;
            if done(&stdout, &stderr) {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{:?} exited ({status}) before its {what}: {}",
                    self.tracer,
                    stderr.trim()
                );
            }
            if self.spawned.elapsed() > START_TIMEOUT {
                bail!(
                    "{:?}: no {what} within {START_TIMEOUT:?}: {}",
                    self.tracer,
                    stderr.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the tracer with SIGINT (Ctrl-C: it prints what it holds and
    /// exits) and reaps it. The SIGINT is sent again every
    /// [`INTERRUPT_AGAIN`]: bpftrace 0.17 sometimes stays in its event
    /// loop after one, when no event wakes it (seen with the floor).
    pub fn stop(mut self) -> Result<Stopped> {
        let pid = self.child.as_ref().context("the tracer was stopped")?.id();
        let pid = libc::pid_t::try_from(pid)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut interrupted_at: Option<Instant> = None;
        let (status, usage) = loop {
            if interrupted_at.is_none_or(|at| at.elapsed() >= INTERRUPT_AGAIN) {
                // SAFETY: kill(2) takes no pointers; the child is not
                // reaped yet, so the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGINT) };
                interrupted_at = Some(Instant::now());
            }
            let child = self.child.as_ref().context("the tracer was stopped")?;
            if let Some(reaped) = try_wait_with_usage(child)? {
                // Reaped: `Drop` must not kill or wait for it.
                self.child = None;
                break reaped;
            }
            if Instant::now() > deadline {
                bail!(
                    "{:?} did not stop within {STOP_TIMEOUT:?} of SIGINT",
                    self.tracer
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Ours exit 130 on Ctrl-C, bpftrace 0.
        if !status.success() && status.code() != Some(130) {
            bail!(
                "{:?} failed ({status}): {}",
                self.tracer,
                read_head(&self.stderr)?.trim()
            );
        }
        Ok(Stopped {
            usage,
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            family: self.tracer.family(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove(&self.stdout);
        remove(&self.stderr);
    }
}

impl Stopped {
    /// Reads the output: how many of its lines are `workload`'s events (of
    /// runs `pids`), and the losses it reported.
    pub fn output(&self, workload: &Workload, pids: &[u32]) -> Result<Output> {
        let mut output = Output::default();
        let reader = BufReader::with_capacity(1 << 20, File::open(&self.stdout)?);
        for line in reader.split(b'\n') {
            let line = line?;
            let line = String::from_utf8_lossy(&line);
            if line.starts_with(r#"{"type":"status""#) {
                // Counts are cumulative: the last status has the totals.
                let status: serde_json::Value = serde_json::from_str(&line)?;
                let count = |key: &str| status[key].as_u64().unwrap_or(0);
                output.lost_kernel = count("lost_kernel");
                output.lost_node = count("lost_node");
            } else if workload.is_its_event(self.family, &line, pids) {
                output.delivered += 1;
            }
        }
        let stderr = std::fs::read_to_string(&self.stderr)?;
        match self.family {
            Family::Bpftrace => output.lost_kernel = bpftrace_lost(&stderr),
            Family::Ours => {
                if let Some((kernel, node)) = stderr.lines().rev().find_map(status_line_losses) {
                    output.lost_kernel = kernel;
                    output.lost_node = node;
                }
            }
        }
        Ok(output)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        remove(&self.stdout);
        remove(&self.stderr);
    }
}

fn remove(path: &Path) {
    if !path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(path);
    }
}

/// The first 64 KiB of a file that is being written.
fn read_head(path: &Path) -> Result<String> {
    let mut head = Vec::new();
    File::open(path)?.take(64 << 10).read_to_end(&mut head)?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The floor: a bpftrace program that counts the hits of every tracepoint
/// the gadget's kernel program attaches to, read from its source so that
/// the two cannot drift apart. One count for all of them, in a per-CPU map
/// without a key: keyed by the probe's name, each hit would also hash a
/// string, which no minimal program pays.
pub fn floor_program(workspace: &Path, gadget: &str) -> Result<String> {
    let path = workspace.join(format!("gadget-ebpf/src/bpf/{gadget}.bpf.c"));
    let source = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tracepoints = tracepoints_of(&source);
    if tracepoints.is_empty() {
        bail!("{} attaches to no tracepoint", path.display());
    }
    Ok(format!(
        "{} {{ @hits = count(); }}\n",
        tracepoints.join(",\n")
    ))
}

/// The tracepoints of `SEC("tracepoint/CATEGORY/NAME")` in a kernel
/// program's source, as bpftrace names them (`tracepoint:CATEGORY:NAME`).
fn tracepoints_of(source: &str) -> Vec<String> {
    let mut tracepoints: Vec<String> = source
        .split("SEC(\"tracepoint/")
        .skip(1)
        .filter_map(|rest| {
            let (name, _) = rest.split_once('"')?;
            Some(format!("tracepoint:{}", name.replace('/', ":")))
        })
        .collect();
    tracepoints.sort_unstable();
    tracepoints.dedup();
    tracepoints
}

/// The events bpftrace says it lost (`Lost N events` on stderr).
fn bpftrace_lost(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("Lost ")? + "Lost ".len()..];
            let (count, what) = rest.split_once(' ')?;
            what.starts_with("events")
                .then(|| count.parse::<u64>().ok())?
        })
        .sum()
}

/// The losses of one of our human status lines, e.g. `node-1: 42 events
/// lost (ring buffer full), 3 events dropped (client too slow)`: (lost in
/// the kernel, dropped by the node); `None` for a line of no losses.
fn status_line_losses(line: &str) -> Option<(u64, u64)> {
    let (_, counts) = line.split_once(": ")?;
    let mut losses = None;
    for part in counts.split(", ") {
        let (count, what) = part.split_once(' ')?;
        let count: u64 = count.parse().ok()?;
        let (kernel, node) = losses.get_or_insert((0, 0));
        if what.ends_with("lost (ring buffer full)") {
            *kernel = count;
        } else if what.ends_with("dropped (client too slow)") {
            *node = count;
        }
    }
    losses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoints_are_read_from_the_sections() {
        let source = r#"
SEC("tracepoint/syscalls/sys_enter_openat")
int enter(void *ctx) { return 0; }
SEC("tracepoint/sched/sched_process_exec")
int exec(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_openat")
int again(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"#;
        assert_eq!(
            tracepoints_of(source),
            [
                "tracepoint:sched:sched_process_exec",
                "tracepoint:syscalls:sys_enter_openat"
            ]
        );
    }

    #[test]
    fn the_floor_counts_every_tracepoint_of_the_real_programs() {
        let workspace = crate::util::workspace_root();
        let open = floor_program(&workspace, "trace_open").unwrap();
        assert!(
            open.contains("tracepoint:syscalls:sys_enter_openat,"),
            "{open}"
        );
        assert!(
            open.contains("tracepoint:syscalls:sys_exit_openat2"),
            "{open}"
        );
        assert!(open.ends_with("{ @hits = count(); }\n"), "{open}");
        assert!(floor_program(&workspace, "no_such_gadget").is_err());
    }

    #[test]
    fn bpftrace_losses_are_summed() {
        assert_eq!(
            bpftrace_lost("Attaching 3 probes...\nLost 12 events\n\nLost 30 events\n"),
            42
        );
        assert_eq!(bpftrace_lost("ERROR: something else\n"), 0);
    }

    #[test]
    fn status_line_losses_are_parsed() {
        assert_eq!(
            status_line_losses(
                "node-1: 42 events lost (ring buffer full), 3 events dropped (client too slow)"
            ),
            Some((42, 3))
        );
        assert_eq!(
            status_line_losses("node-1: 1 event dropped (client too slow)"),
            Some((0, 1))
        );
        assert_eq!(status_line_losses("node-1: trace started"), None);
        assert_eq!(
            status_line_losses("node-1: warning: kernel lacks openat2"),
            None
        );
    }
}
