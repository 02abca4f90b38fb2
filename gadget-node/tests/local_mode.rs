//! Local mode on the real kernel: `gadget-node trace ...` as a user runs it,
//! a known workload, and the exact rows it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const NODE: &str = env!("CARGO_BIN_EXE_gadget-node");
const WAIT: Duration = Duration::from_secs(20);

/// A running `gadget-node trace ...` whose stdout lines arrive on a channel;
/// killed when dropped.
struct LocalTrace {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LocalTrace {
    fn start(args: &[&str]) -> LocalTrace {
        let mut child = Command::new(NODE)
            .arg("trace")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gadget-node starts");
        let lines = forward_lines(child.stdout.take().unwrap());
        LocalTrace { child, lines }
    }

    /// The next line, failing the test after [`WAIT`].
    fn next_line(&self, waiting_for: &str) -> String {
        self.lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no output line while waiting for {waiting_for}"))
    }

    /// Reads JSON lines until one satisfies `wanted`, returning it.
    fn json_until(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let line = self.next_line(what);
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
            if wanted(&value) {
                return value;
            }
        }
        panic!("timed out waiting for {what}");
    }

    /// Ctrl-C, as a user stops a trace, and the exit status.
    fn interrupt(self) -> std::process::ExitStatus {
        self.interrupt_and_read().0
    }

    /// Ctrl-C, the exit status, and the lines printed after it.
    fn interrupt_and_read(mut self) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let exit = self.child.wait().unwrap();
        // The forwarder ends at the end of stdout, which has come.
        let rest = std::iter::from_fn(|| self.lines.recv_timeout(WAIT).ok()).collect();
        (exit, rest)
    }
}

impl Drop for LocalTrace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A workload that exits at once; its pid.
fn run(program: &str, args: &[&str]) -> u32 {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("workload starts");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn marker(name: &str) -> String {
    format!("local-mode-{name}-{}", std::process::id())
}

#[test]
fn exec_rows_as_json_lines_until_ctrl_c() {
    let trace = LocalTrace::start(&["exec", "--host", "-o", "json"]);
    let status = trace.json_until("the start status", |v| v["type"] == "status");
    assert_eq!(status["started"], true, "{status}");
    assert_eq!(status["error"], Value::Null, "{status}");

    let marker = marker("exec");
    let pid = run("/bin/echo", &[&marker, "", "second arg"]);
    let row = trace.json_until("the echo exec", |v| {
        v["type"] == "exec" && v["process"]["pid"] == pid
    });
    assert_eq!(row["process"]["ppid"], std::process::id(), "{row}");
    assert_eq!(row["process"]["comm"], "echo", "{row}");
    assert_eq!(row["k8s"], Value::Null, "host process: {row}");
    let args: Vec<&str> = row["args"]
        .as_array()
        .unwrap_or_else(|| panic!("args: {row}"))
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(args, ["/bin/echo", marker.as_str(), "", "second arg"]);

    // Ctrl-C ends the trace cleanly: a last status, then exit 0.
    let exit = trace.interrupt();
    assert!(exit.success(), "gadget-node exited with {exit}");
}

#[test]
fn ctrl_c_ends_the_trace_with_its_final_status() {
    let trace = LocalTrace::start(&["open", "--host", "--pid", "4194304", "-o", "json"]);
    let status = trace.json_until("the start status", |v| v["type"] == "status");
    assert_eq!(status["started"], true, "{status}");
    let (exit, rest) = trace.interrupt_and_read();
    assert!(exit.success(), "gadget-node exited with {exit}");
    // The trace was asked to stop, not dropped: its final status (with
    // the loss counters) is the last line.
    let last: Value = serde_json::from_str(rest.last().expect("a line after Ctrl-C")).unwrap();
    assert_eq!(last["type"], "status", "{rest:?}");
    assert_eq!(last["started"], false, "{rest:?}");
    assert_eq!(last["lost_kernel"], 0, "{rest:?}");
}

#[test]
fn failed_opens_under_a_prefix_in_columns() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("gadget");
    let present = dir.path().join("gadget-present");
    std::fs::write(&present, b"x").unwrap();
    let missing = dir.path().join("gadget-missing");
    let elsewhere = dir.path().join("other-missing");

    let prefix_arg = prefix.to_str().unwrap();
    let trace = LocalTrace::start(&[
        "open",
        "--host",
        "--failed",
        "--prefix",
        prefix_arg,
        "-o",
        "columns=pid,comm,err,path",
    ]);
    let header = trace.next_line("the header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMM", "ERR", "PATH"]
    );
    // Columns mode says nothing on stdout when the trace starts, so the
    // workload repeats until its row shows that the gadget is attached.
    let deadline = Instant::now() + WAIT;
    let (pid, row) = loop {
        assert!(Instant::now() < deadline, "no row for the failed open");
        run("/bin/cat", &[present.to_str().unwrap()]);
        run("/bin/cat", &[elsewhere.to_str().unwrap()]);
        let pid = run("/bin/cat", &[missing.to_str().unwrap()]);
        if let Ok(row) = trace.lines.recv_timeout(Duration::from_millis(500)) {
            break (pid, row);
        }
    };
    // Only the failed open under the prefix: not the successful one, not
    // the one elsewhere; the first row may be of an earlier round.
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{row}");
    assert_eq!(&fields[1..], ["cat", "ENOENT", missing.to_str().unwrap()]);
    assert!(fields[0].parse::<u32>().unwrap() <= pid, "{row}");
    while let Ok(row) = trace.lines.recv_timeout(Duration::from_millis(600)) {
        assert!(
            row.ends_with(missing.to_str().unwrap()),
            "unexpected row: {row}"
        );
    }
}

#[test]
fn bad_flags_are_usage_errors_before_anything_loads() {
    let output = Command::new(NODE)
        .args(["trace", "exec", "--pid", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--pid"), "{stderr}");

    let output = Command::new(NODE)
        .args(["trace", "open", "-o", "columns=pid,nonsense"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nonsense"), "{stderr}");
}
