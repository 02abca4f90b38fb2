//! `cargo xtask bench`: what a trace costs the traced workload.
//!
//! A workload (this binary's hidden `bench-workload` task: a tight loop of
//! openat(2)/close(2), of fork+execve of /bin/true, or of pwrite(2)/pread(2)
//! on one file) runs without a trace,
//! then under `gadget-node trace` (local mode, release build, rows written
//! as JSON to a reader that keeps up) in several configurations: every
//! event delivered, events dropped by an in-kernel filter, and the process
//! not selected at all. It prints the time per operation, its ratio to the
//! untraced run, and how many of the workload's events arrived or were
//! lost. Absolute times on a shared machine are noisy; the ratios within
//! one run are what to compare.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{cargo, run_checked, target_dir};

/// Workload runs per configuration. The fastest is reported: on a shared
/// machine the noise only ever adds time, so the minimum is the closest to
/// what the trace itself costs.
const RUNS: usize = 5;

const USAGE: &str = "usage: cargo xtask bench [--opens N] [--execs N] [--read-writes N]

  --opens N        openat+close pairs per workload run [default: 200000]
  --execs N        fork+exec of /bin/true per workload run [default: 2000]
  --read-writes N  pwrite+pread pairs of 64 bytes on one file per workload run [default: 200000]";

/// One way of running the workload.
struct Config {
    label: &'static str,
    /// `gadget-node trace` arguments; `None`: no trace.
    trace: Option<&'static [&'static str]>,
}

const OPEN_CONFIGS: &[Config] = &[
    Config {
        label: "no trace",
        trace: None,
    },
    Config {
        label: "every open delivered (--host)",
        trace: Some(&["open", "--host"]),
    },
    Config {
        label: "dropped in kernel by --prefix",
        trace: Some(&["open", "--host", "--prefix", "/nonexistent-bench/"]),
    },
    Config {
        label: "host not selected (containers only)",
        trace: Some(&["open"]),
    },
];

const EXEC_CONFIGS: &[Config] = &[
    Config {
        label: "no trace",
        trace: None,
    },
    Config {
        label: "every exec delivered (--host)",
        trace: Some(&["exec", "--host"]),
    },
    Config {
        label: "host not selected (containers only)",
        trace: Some(&["exec"]),
    },
];

/// The file the read/write workload reads and writes, under a directory
/// of its own so `trace file --prefix` can follow it alone.
const READ_WRITE_DIR: &str = "/tmp/gadget-bench-rw";

const READ_WRITE_CONFIGS: &[Config] = &[
    Config {
        label: "no trace",
        trace: None,
    },
    Config {
        label: "trace file, process not selected",
        trace: Some(&["file", "--prefix", "/tmp/gadget-bench-rw/"]),
    },
    Config {
        label: "trace file, file not followed",
        trace: Some(&["file", "--host", "--prefix", "/nonexistent-bench/"]),
    },
    Config {
        label: "trace file, every read/write delivered",
        trace: Some(&["file", "--host", "--prefix", "/tmp/gadget-bench-rw/"]),
    },
];

/// Builds gadget-node (release) and prints the cost table for `--opens N`
/// opens, `--execs N` execs and `--read-writes N` write+read pairs per run
/// (defaults 200 000, 2 000 and 200 000).
pub fn run(args: &[String]) -> Result<()> {
    let mut opens: u64 = 200_000;
    let mut execs: u64 = 2_000;
    let mut read_writes: u64 = 200_000;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = || -> Result<u64> {
            let value = args.next().context(format!("{arg} needs a number"))?;
            value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{arg}: not a positive number: {value}"))
        };
        match arg.as_str() {
            "--opens" => opens = number()?,
            "--execs" => execs = number()?,
            "--read-writes" => read_writes = number()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    setup::ensure_build_tools()?;
    setup::require_kernel_access("the benchmark")?;
    run_checked(cargo().args(["build", "--quiet", "--release", "-p", "gadget-node"]))?;
    let node = target_dir().join("release/gadget-node");

    println!(
        "{:<44} {:>12} {:>8} {:>16} {:>10}",
        "workload / trace", "per op", "ratio", "events (of ops)", "lost k/n"
    );
    for (workload, count, configs) in [
        ("open", opens, OPEN_CONFIGS),
        ("exec", execs, EXEC_CONFIGS),
        ("readwrite", read_writes, READ_WRITE_CONFIGS),
    ] {
        println!("{workload} x {count}");
        let mut baseline = None;
        for config in configs {
            let result = measure(&node, config, workload, count)?;
            let per_op = result.per_op_ns;
            let baseline = *baseline.get_or_insert(per_op);
            let events = match &result.trace {
                Some(trace) => format!("{} ({})", trace.events, count * RUNS as u64),
                None => "-".into(),
            };
            let lost = result
                .trace
                .as_ref()
                .map_or("-".into(), |t| format!("{}/{}", t.lost.0, t.lost.1));
            println!(
                "  {:<42} {:>9.2} µs {:>7.2}x {:>16} {:>10}",
                config.label,
                per_op / 1000.0,
                per_op / baseline,
                events,
                lost
            );
        }
    }
    println!(
        "\nper op: fastest of {RUNS} runs; events: rows of the workload's processes that \
         arrived (open: with each run's own start-up opens; readwrite: two per op, with the \
         file's open and close); lost k/n: the trace's final counts in the kernel (ring buffer full) and in the node (queue full)"
    );
    Ok(())
}

struct Measured {
    per_op_ns: f64,
    trace: Option<TraceCounts>,
}

struct TraceCounts {
    events: u64,
    /// Lost in the kernel (ring buffer full) and in the node (queue full).
    lost: (u64, u64),
}

/// Runs the workload [`RUNS`] times under `config`.
fn measure(node: &Path, config: &Config, workload: &str, count: u64) -> Result<Measured> {
    let trace = config
        .trace
        .map(|args| Trace::start(node, args))
        .transpose()?;
    let mut times = Vec::with_capacity(RUNS);
    let mut pids = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (pid, elapsed) = run_workload(workload, count)?;
        pids.push(pid);
        times.push(elapsed.as_nanos() as f64 / count as f64);
    }
    times.sort_by(f64::total_cmp);
    let trace = trace
        .map(|trace| trace.finish(workload, &pids))
        .transpose()?;
    Ok(Measured {
        per_op_ns: times[0],
        trace,
    })
}

/// Runs one workload process; its pid and how long its loop took (as it
/// measured itself, so process start-up is not counted).
fn run_workload(workload: &str, count: u64) -> Result<(u32, Duration)> {
    let output = Command::new(std::env::current_exe()?)
        .args(["bench-workload", workload, &count.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the workload")?;
    if !output.status.success() {
        bail!("the {workload} workload failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (pid, nanos) = text
        .trim()
        .split_once(' ')
        .context("the workload printed no timing")?;
    Ok((pid.parse()?, Duration::from_nanos(nanos.parse()?)))
}

/// A `gadget-node trace ... -o json` writing to a file: a reader in this
/// process would compete with the node and the workload for the CPUs.
struct Trace {
    child: Child,
    output: PathBuf,
}

impl Trace {
    /// Starts the trace and waits for its start status.
    fn start(node: &Path, args: &[&str]) -> Result<Trace> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let output = std::env::temp_dir().join(format!(
            "gadget-bench-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let child = Command::new(node)
            .arg("trace")
            .args(args)
            .args(["-o", "json"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start gadget-node")?;
        let mut trace = Trace { child, output };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&trace.output)?;
            if let Some(first) = text.lines().next() {
                if first.contains(r#""started":true"#) {
                    return Ok(trace);
                }
                bail!("the trace did not start: {first}");
            }
            if let Some(status) = trace.child.try_wait()? {
                bail!("gadget-node exited ({status}) before the trace started");
            }
            if Instant::now() > deadline {
                bail!("the trace did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the trace (Ctrl-C), and counts the rows of `pids` and the
    /// events it lost.
    fn finish(mut self, workload: &str, pids: &[u32]) -> Result<TraceCounts> {
        // Lets the last batches drain before the stop.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) takes no pointers, so it cannot break memory
        // safety; the child is not waited for yet, so its pid is still ours.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("gadget-node did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.output)?;
        let lines: Vec<&str> = text.lines().collect();
        // The open workload opens files itself; the exec workload's events
        // are those of its children.
        let markers: Vec<String> = pids
            .iter()
            .map(|pid| match workload {
                "exec" => format!(r#""ppid":{pid},"#),
                _ => format!(r#""process":{{"pid":{pid},"#),
            })
            .collect();
        let events = lines
            .iter()
            .filter(|line| markers.iter().any(|marker| line.contains(marker)))
            .count() as u64;
        // The node sends a status whenever its counts change, so the last
        // one has the final counts; none after the start status means
        // nothing was lost.
        let lost = match lines
            .iter()
            .rev()
            .find(|line| line.starts_with(r#"{"type":"status""#))
        {
            Some(status) => {
                let status: serde_json::Value = serde_json::from_str(status)?;
                let count = |key: &str| status[key].as_u64().unwrap_or(0);
                (count("lost_kernel"), count("lost_node"))
            }
            None => (0, 0),
        };
        Ok(TraceCounts { events, lost })
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}

/// The hidden `bench-workload open|exec|readwrite N` task: runs the loop and prints
/// its pid and the loop's duration in nanoseconds.
pub fn workload(args: &[String]) -> Result<()> {
    let [kind, count] = args else {
        bail!("usage: bench-workload open|exec|readwrite N");
    };
    let count: u64 = count.parse()?;
    let start = Instant::now();
    match kind.as_str() {
        "open" => {
            for _ in 0..count {
                // Opened and closed at once, like most opens of real
                // programs; the path is the same each time, so the cost
                // measured is the syscall's and the trace's.
                drop(std::fs::File::open("/dev/null")?);
            }
        }
        "exec" => {
            for _ in 0..count {
                let status = Command::new("/bin/true").status()?;
                if !status.success() {
                    bail!("/bin/true failed ({status})");
                }
            }
        }
        "readwrite" => {
            use std::os::unix::fs::FileExt as _;
            // One file, written then read back in place: the cost measured
            // is the syscalls' and the trace's, not the page cache's.
            std::fs::create_dir_all(READ_WRITE_DIR)?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(format!("{READ_WRITE_DIR}/data"))?;
            let mut buffer = [0x2au8; 64];
            for _ in 0..count {
                file.write_all_at(&buffer, 0)?;
                file.read_exact_at(&mut buffer, 0)?;
            }
        }
        other => bail!("unknown workload {other:?}"),
    }
    println!("{} {}", std::process::id(), start.elapsed().as_nanos());
    Ok(())
}
