//! The traced workloads: what they do (the hidden `bench-workload` task
//! that runs one), and how a tracer's output lines are told apart as theirs.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::tracer::{Family, Tracer};

/// Where the workloads' own files live.
pub const BENCH_DIR: &str = "/tmp/gadget-bench";

/// The file the open storm opens: a path of its own, so that every row
/// that names it is the workload's.
pub const OPEN_TARGET: &str = "/tmp/gadget-bench/open-target";

/// The tiny static program the exec storm runs, built by [`prepare`].
pub const TINY_PROGRAM: &str = "/tmp/gadget-bench/tiny";

/// What the tiny program is: it only looks at its arguments and exits, so
/// an exec costs the kernel's work and the trace's, not a dynamic loader's.
const TINY_SOURCE: &str =
    "int main(int argc, char **argv) { return argc > 8 && argv[8][0] == 'x'; }\n";

/// The exec storm's arguments after the program's name: a few, like a
/// real command line.
const TINY_ARGS: [&str; 4] = ["--mode", "bench", "--input", "/dev/null"];

/// The directory of the file the read/write loop uses, so `trace file
/// --prefix` can follow it alone.
pub const READ_WRITE_DIR: &str = "/tmp/gadget-bench-rw/";

/// Where the build-like workload's shell commands write and read files.
pub const MIXED_DIR: &str = "/tmp/gadget-bench-mixed/";

/// A path no workload opens, for filters that drop everything.
pub const NOWHERE: &str = "/nonexistent-bench/";

/// One way of running a workload.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Short name, in the JSON figures.
    pub id: &'static str,
    /// What it is, in the tables.
    pub label: &'static str,
    /// `None`: no trace.
    pub tracer: Option<Tracer>,
}

/// A workload and the configurations it runs under.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Its name, as `bench-workload` takes it.
    pub name: &'static str,
    /// What one operation is, in the tables.
    pub operation: &'static str,
    /// The gadget whose kernel program (`gadget-ebpf/src/bpf/NAME.bpf.c`)
    /// the floor's tracepoints are read from.
    pub gadget: &'static str,
    /// The bpftrace program that prints one line per event, each starting
    /// with `pid=PID ppid=PPID `; [`super::tracer`] adds its start marker.
    pub bpftrace_print: &'static str,
    /// The configurations, the untraced one first.
    pub configs: &'static [Config],
}

/// The id of the configurations through the end-to-end cluster's
/// port-forward (`--port-forward`).
pub const PORT_FORWARD: &str = "port-forward";

const UNTRACED: Config = Config {
    id: "untraced",
    label: "untraced",
    tracer: None,
};

const FLOOR: Config = Config {
    id: "floor",
    label: "floor: bpftrace counting the gadget's tracepoints in a map",
    tracer: Some(Tracer::Floor),
};

const BPFTRACE_PRINT: Config = Config {
    id: "bpftrace",
    label: "bpftrace printing one line per event to a file",
    tracer: Some(Tracer::BpftracePrint),
};

const OPEN_PRINT: &str = "\
tracepoint:syscalls:sys_enter_open, tracepoint:syscalls:sys_enter_openat,
tracepoint:syscalls:sys_enter_openat2 { @path[tid] = args->filename; }
tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_openat,
tracepoint:syscalls:sys_exit_openat2 /@path[tid]/ {
  printf(\"pid=%d ppid=%d %s %d %s\\n\", pid, curtask->real_parent->tgid, comm,
         args->ret, str(@path[tid]));
  delete(@path[tid]);
}
";

/// The open storm, and the build-like workload's opens.
const OPEN_CONFIGS: &[Config] = &[
    UNTRACED,
    FLOOR,
    BPFTRACE_PRINT,
    Config {
        id: "local",
        label: "ours, local mode, every open as JSON to a file",
        tracer: Some(Tracer::Local(&["open", "--host", "-o", "json"])),
    },
    Config {
        id: "local-prefix",
        label: "ours, local mode, dropped in the kernel by `--prefix`",
        tracer: Some(Tracer::Local(&[
            "open", "--host", "--prefix", NOWHERE, "-o", "json",
        ])),
    },
    Config {
        id: "local-not-selected",
        label: "ours, local mode, process not selected (containers only)",
        tracer: Some(Tracer::Local(&["open", "-o", "json"])),
    },
    Config {
        id: "grpc",
        label: "ours, `gadget-node serve` + `kubectl-gadget trace` over gRPC, JSON to a file",
        tracer: Some(Tracer::Grpc(&["open", "--host", "-o", "json"])),
    },
    Config {
        id: "grpc-columns",
        label: "ours, over gRPC, columns to a file",
        tracer: Some(Tracer::Grpc(&["open", "--host", "-o", "columns"])),
    },
    Config {
        id: PORT_FORWARD,
        label: "ours, end-to-end cluster: `kubectl-gadget trace` through the API server's port-forward to the gadget pod, JSON to a file",
        tracer: Some(Tracer::PortForward(&["open", "--host", "-o", "json"])),
    },
];

const MIXED_CONFIGS: &[Config] = &[
    UNTRACED,
    FLOOR,
    BPFTRACE_PRINT,
    Config {
        id: "local",
        label: "ours (trace open), local mode, JSON to a file",
        tracer: Some(Tracer::Local(&["open", "--host", "-o", "json"])),
    },
    Config {
        id: "local-prefix",
        label: "ours (trace open), local mode, dropped in the kernel by `--prefix`",
        tracer: Some(Tracer::Local(&[
            "open", "--host", "--prefix", NOWHERE, "-o", "json",
        ])),
    },
    Config {
        id: "grpc",
        label: "ours (trace open), over gRPC, JSON to a file",
        tracer: Some(Tracer::Grpc(&["open", "--host", "-o", "json"])),
    },
    Config {
        id: PORT_FORWARD,
        label: "ours (trace open), through the port-forward, JSON to a file",
        tracer: Some(Tracer::PortForward(&["open", "--host", "-o", "json"])),
    },
];

const EXEC_CONFIGS: &[Config] = &[
    UNTRACED,
    FLOOR,
    BPFTRACE_PRINT,
    Config {
        id: "local",
        label: "ours, local mode, every exec as JSON to a file",
        tracer: Some(Tracer::Local(&["exec", "--host", "-o", "json"])),
    },
    Config {
        id: "local-not-selected",
        label: "ours, local mode, process not selected (containers only)",
        tracer: Some(Tracer::Local(&["exec", "-o", "json"])),
    },
    Config {
        id: "grpc",
        label: "ours, over gRPC, JSON to a file",
        tracer: Some(Tracer::Grpc(&["exec", "--host", "-o", "json"])),
    },
    Config {
        id: PORT_FORWARD,
        label: "ours, through the port-forward, JSON to a file",
        tracer: Some(Tracer::PortForward(&["exec", "--host", "-o", "json"])),
    },
];

/// `trace file` following the read/write loop's file, from the host, as
/// JSON: the same in every mode that delivers its events.
const FILE_FOLLOWED: &[&str] = &["file", "--host", "--prefix", READ_WRITE_DIR, "-o", "json"];

const READ_WRITE_CONFIGS: &[Config] = &[
    UNTRACED,
    FLOOR,
    Config {
        id: "bpftrace",
        label: "bpftrace printing every pread64/pwrite64 to a file",
        tracer: Some(Tracer::BpftracePrint),
    },
    Config {
        id: "local",
        label: "ours (trace file), local mode, the file followed, every read/write as JSON",
        tracer: Some(Tracer::Local(FILE_FOLLOWED)),
    },
    Config {
        id: "local-not-followed",
        label: "ours (trace file), local mode, the file not followed (`--prefix` elsewhere)",
        tracer: Some(Tracer::Local(&[
            "file", "--host", "--prefix", NOWHERE, "-o", "json",
        ])),
    },
    Config {
        id: "local-not-selected",
        label: "ours (trace file), local mode, process not selected (containers only)",
        tracer: Some(Tracer::Local(&[
            "file",
            "--prefix",
            READ_WRITE_DIR,
            "-o",
            "json",
        ])),
    },
    Config {
        id: "grpc",
        label: "ours (trace file), over gRPC, the file followed, JSON to a file",
        tracer: Some(Tracer::Grpc(FILE_FOLLOWED)),
    },
    Config {
        id: PORT_FORWARD,
        label: "ours (trace file), through the port-forward, the file followed, JSON to a file",
        tracer: Some(Tracer::PortForward(FILE_FOLLOWED)),
    },
];

/// Every workload, in the order they run within a repetition.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "open",
        operation: "openat+close of one file",
        gadget: "trace_open",
        bpftrace_print: OPEN_PRINT,
        configs: OPEN_CONFIGS,
    },
    Workload {
        name: "exec",
        operation: "fork+exec of a tiny static program with 4 arguments",
        gadget: "trace_exec",
        bpftrace_print: "\
tracepoint:syscalls:sys_enter_execve, tracepoint:syscalls:sys_enter_execveat {
  printf(\"pid=%d ppid=%d %s %s\\n\", pid, curtask->real_parent->tgid, comm,
         str(args->filename));
}
",
        configs: EXEC_CONFIGS,
    },
    Workload {
        name: "readwrite",
        operation: "pwrite+pread of 64 bytes on one file",
        gadget: "trace_file",
        bpftrace_print: "\
tracepoint:syscalls:sys_exit_pread64, tracepoint:syscalls:sys_exit_pwrite64 {
  printf(\"pid=%d ppid=%d %s %s %d\\n\", pid, curtask->real_parent->tgid, comm,
         probe, args->ret);
}
",
        configs: READ_WRITE_CONFIGS,
    },
    Workload {
        name: "mixed",
        operation: "`sh -c` writing, reading and removing a file (3 programs)",
        gadget: "trace_open",
        bpftrace_print: OPEN_PRINT,
        configs: MIXED_CONFIGS,
    },
];

impl Workload {
    /// The events one run of `count` operations makes that a tracer
    /// printing every event should deliver.
    pub fn generated(&self, count: u64) -> u64 {
        match self.name {
            // A write and a read per operation; the mixed workload's shell
            // opens its file to write it and cat opens it to read it.
            "readwrite" | "mixed" => 2 * count,
            _ => count,
        }
    }

    /// Whether `line` of a tracer of `family` is an event of this
    /// workload's runs (`pids`).
    pub fn is_its_event(&self, family: Family, line: &str, pids: &[u32]) -> bool {
        match (self.name, family) {
            ("open", _) => line.contains(OPEN_TARGET),
            ("exec", _) => line.contains(TINY_PROGRAM),
            ("mixed", _) => line.contains(MIXED_DIR),
            // trace file also reports the file's open and close, and the
            // process's exec and exit: only the reads and writes count.
            ("readwrite", Family::Ours) => {
                line.contains(r#""type":"file_read""#) || line.contains(r#""type":"file_write""#)
            }
            // The loop's 64-byte transfers, not what the process read
            // while starting.
            ("readwrite", Family::Bpftrace) => {
                line.ends_with(" 64")
                    && pids.iter().any(|pid| {
                        line.strip_prefix("pid=")
                            .and_then(|rest| rest.strip_prefix(&pid.to_string()))
                            .is_some_and(|rest| rest.starts_with(' '))
                    })
            }
            _ => false,
        }
    }
}

/// Makes what the workloads need: their directories, the open storm's
/// file, and the tiny program, compiled statically with the C compiler
/// that setup installs.
pub fn prepare() -> Result<()> {
    for dir in [BENCH_DIR, READ_WRITE_DIR, MIXED_DIR] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    std::fs::write(OPEN_TARGET, b"bench\n")?;
    let source = Path::new(BENCH_DIR).join("tiny.c");
    std::fs::write(&source, TINY_SOURCE)?;
    let output = Command::new("cc")
        .args(["-static", "-O2", "-o", TINY_PROGRAM])
        .arg(&source)
        .output()
        .context("cannot run cc")?;
    if !output.status.success() {
        bail!(
            "cannot build the exec storm's static program (cc -static needs the C library's \
             static archive, package libc6-dev): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The hidden `bench-workload KIND N` task: runs N operations of the
/// workload KIND (N = 0: until killed) and prints its pid and the loop's
/// duration in nanoseconds.
pub fn run(args: &[String]) -> Result<()> {
    let [kind, count] = args else {
        bail!("usage: bench-workload open|exec|readwrite|mixed N");
    };
    let count: u64 = count.parse().context("N must be a number")?;
    let count = if count == 0 { u64::MAX } else { count };
    let start = Instant::now();
    match kind.as_str() {
        "open" => {
            for _ in 0..count {
                // Opened and closed at once, like most opens of real
                // programs; the same path each time, so the cost measured
                // is the syscall's and the trace's.
                drop(std::fs::File::open(OPEN_TARGET)?);
            }
        }
        "exec" => {
            for _ in 0..count {
                let status = Command::new(TINY_PROGRAM).args(TINY_ARGS).status()?;
                if !status.success() {
                    bail!("{TINY_PROGRAM} failed ({status})");
                }
            }
        }
        "readwrite" => {
            use std::os::unix::fs::FileExt as _;
            // One file, written then read back in place: the cost measured
            // is the syscalls' and the trace's, not the page cache's.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(format!("{READ_WRITE_DIR}data"))?;
            let mut buffer = [0x2au8; 64];
            for _ in 0..count {
                file.write_all_at(&buffer, 0)?;
                file.read_exact_at(&mut buffer, 0)?;
            }
        }
        "mixed" => {
            for i in 0..count {
                // What a build step does in miniature: a shell runs short
                // programs that write, read and remove a file.
                let file = format!("{MIXED_DIR}f{i}");
                let script = format!("echo {i} > {file}; cat {file} > /dev/null; rm {file}");
                let status = Command::new("/bin/sh").args(["-c", &script]).status()?;
                if !status.success() {
                    bail!("sh -c {script:?} failed ({status})");
                }
            }
        }
        other => bail!("unknown workload {other:?}"),
    }
    println!("{} {}", std::process::id(), start.elapsed().as_nanos());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str) -> &'static Workload {
        WORKLOADS.iter().find(|w| w.name == name).unwrap()
    }

    #[test]
    fn every_workload_starts_untraced_and_has_a_floor() {
        for workload in WORKLOADS {
            assert_eq!(workload.configs[0].id, "untraced", "{}", workload.name);
            assert!(workload.configs.iter().any(|c| c.id == "floor"));
            let mut ids: Vec<_> = workload.configs.iter().map(|c| c.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(
                ids.len(),
                workload.configs.len(),
                "{}: ids repeat",
                workload.name
            );
        }
    }

    #[test]
    fn lines_are_told_apart_as_the_workloads() {
        let open = workload("open");
        let row =
            format!(r#"{{"type":"open","process":{{"pid":9,"tid":9}},"path":"{OPEN_TARGET}"}}"#);
        assert!(open.is_its_event(Family::Ours, &row, &[]));
        assert!(!open.is_its_event(Family::Ours, r#"{"type":"open","path":"/etc/passwd"}"#, &[]));

        let readwrite = workload("readwrite");
        assert!(readwrite.is_its_event(
            Family::Bpftrace,
            "pid=42 ppid=1 xtask tracepoint:syscalls:sys_exit_pread64 64",
            &[7, 42]
        ));
        // pid 4 is not pid 42.
        assert!(!readwrite.is_its_event(Family::Bpftrace, "pid=42 ppid=1 xtask x 64", &[4]));
        // A read of another size is the process starting, not the loop.
        assert!(!readwrite.is_its_event(Family::Bpftrace, "pid=42 ppid=1 xtask x 832", &[42]));
        assert!(readwrite.is_its_event(Family::Ours, r#"{"type":"file_write","node":"n"}"#, &[]));
        assert!(!readwrite.is_its_event(Family::Ours, r#"{"type":"file_open","node":"n"}"#, &[]));
    }

    #[test]
    fn generated_events_per_run() {
        assert_eq!(workload("open").generated(10), 10);
        assert_eq!(workload("exec").generated(10), 10);
        assert_eq!(workload("readwrite").generated(10), 20);
        assert_eq!(workload("mixed").generated(10), 20);
    }
}
