//! End to end on this machine's kernel: a real `gadget-node serve
//! --no-kubernetes` on a unix socket, and the real `kubectl-gadget` traced
//! against it with `--node-address`, watching a child process of the test.
//!
//! Needs root (the node loads eBPF programs), like the node's own kernel
//! tests. The node binary is built by the test (`cargo build -p
//! gadget-node`, a no-op when it is up to date), since `cargo test -p
//! kubectl-gadget` builds only this package's binaries.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CLIENT: &str = env!("CARGO_BIN_EXE_kubectl-gadget");

/// The node's name, as it reports it and the client shows it.
const NODE_NAME: &str = "local-test-node";

/// The `gadget-node` binary next to this package's, built once per run.
fn node_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = Path::new(CLIENT).parent().unwrap();
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-p", "gadget-node"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p gadget-node failed");
        let binary = profile_dir.join("gadget-node");
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// Fails with what to do when the test cannot load eBPF programs.
fn assert_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        effective_uid, "0",
        "these tests load eBPF programs: run them as root"
    );
}

/// A `gadget-node serve` process, stopped when dropped.
struct Node {
    process: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&[])
    }

    /// Starts a node with more `serve` flags.
    fn start_with(flags: &[&str]) -> Node {
        assert_root();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("node.sock");
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let process = Command::new(node_binary())
            .args(["serve", "--no-kubernetes", "--node-name", NODE_NAME])
            .args(flags)
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gadget-node starts");
        let address = format!("unix://{}", socket.display());
        let mut node = Node {
            process,
            dir,
            address,
        };
        node.wait_ready();
        node
    }

    /// Waits until `kubectl gadget version` gets an answer from the node.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("gadget-node exited with {status}; its log:\n{}", self.log());
            }
            let version = Command::new(CLIENT)
                .args(["version", "--node-address", &self.address])
                .output()
                .unwrap();
            if version.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gadget-node did not answer within 30 s; its log:\n{}\nthe client said:\n{}",
                self.log(),
                String::from_utf8_lossy(&version.stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A shell that waits for a line on stdin, then runs `script`: its pid is
/// known before the trace starts, and what it does happens after.
struct Workload {
    child: Child,
    go: Option<ChildStdin>,
}

impl Workload {
    fn start(script: &str, args: &[&str]) -> Workload {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .arg("sh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let go = child.stdin.take();
        Workload { child, go }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn release(&mut self) {
        let mut go = self.go.take().expect("released once");
        go.write_all(b"go\n").unwrap();
    }

    fn wait(&mut self) {
        self.child.wait().unwrap();
    }
}

/// A running client whose stdout and stderr are read line by line.
struct Client {
    child: Child,
    lines: mpsc::Receiver<(Stream, String)>,
    readers: Vec<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut child = Command::new(CLIENT)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, pipe) in [
            (
                Stream::Out,
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
            ),
            (Stream::Err, Box::new(stderr)),
        ] {
            let sender = sender.clone();
            readers.push(std::thread::spawn(move || {
                // Lines are read as bytes: a raw control byte must reach the
                // assertions, not break the reader.
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if sender.send((stream, text)).is_err() {
                        return;
                    }
                    line.clear();
                }
            }));
        }
        Client {
            child,
            lines,
            readers,
        }
    }

    /// Reads lines until one of `stream` contains `text`; returns every line
    /// read so far.
    fn wait_for(&self, stream: Stream, text: &str) -> Vec<(Stream, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((from, line)) => {
                    let found = from == stream && line.contains(text);
                    seen.push((from, line));
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no {text:?} on {stream:?} within 30 s; read: {seen:?}"),
            }
        }
    }

    /// Ctrl-C, as a user stops a trace.
    fn interrupt(&self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the client to exit; returns its exit code, and its stdout
    /// and stderr lines (after those already read).
    fn finish(mut self) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the client did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let (mut out, mut err) = (String::new(), String::new());
        for (stream, line) in self.lines.try_iter() {
            match stream {
                Stream::Out => out.push_str(&line),
                Stream::Err => err.push_str(&line),
            }
        }
        (status.code(), out, err)
    }
}

#[test]
fn trace_exec_json_has_exactly_the_workloads_exec() {
    let node = Node::start();
    let mut workload = Workload::start("exec /bin/echo hello 'two words'", &[]);
    let pid = workload.pid().to_string();
    let client = Client::start(&[
        "trace",
        "exec",
        "--node-address",
        &node.address,
        "--host",
        "--pid",
        &pid,
        "-o",
        "json",
        "-t",
        "2",
    ]);
    let before = client.wait_for(Stream::Out, "\"started\":true");
    workload.release();
    workload.wait();
    let (code, out, err) = client.finish();
    assert_eq!(code, Some(0), "stderr: {err}\nnode log:\n{}", node.log());
    assert_eq!(err, "");

    let mut lines: Vec<serde_json::Value> = before
        .iter()
        .map(|(_, line)| line.as_str())
        .chain(out.lines())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let statuses: Vec<serde_json::Value> = lines
        .iter()
        .filter(|line| line["type"] == "status")
        .cloned()
        .collect();
    assert!(statuses.iter().all(|status| status["node"] == NODE_NAME));
    assert!(
        statuses
            .iter()
            .all(|status| status["error"].is_null() || status["error"] == ""),
        "{statuses:?}"
    );
    lines.retain(|line| line["type"] != "status");
    assert_eq!(lines.len(), 1, "exactly one exec: {lines:#?}");
    let mut exec = lines.remove(0);
    // What changes from run to run.
    for volatile in ["timestamp", "timestamp_ns"] {
        assert!(exec[volatile].is_string() || exec[volatile].is_u64());
        exec.as_object_mut().unwrap().remove(volatile);
    }
    let process = exec["process"].as_object_mut().unwrap();
    for volatile in ["mntns", "cgroup", "gid"] {
        assert!(process.remove(volatile).is_some(), "{volatile}");
    }
    let pid: u32 = pid.parse().unwrap();
    assert_eq!(
        exec,
        serde_json::json!({
            "type": "exec",
            "node": NODE_NAME,
            "k8s": null,
            "process": {
                "pid": pid,
                "tid": pid,
                "ppid": std::process::id(),
                "uid": 0,
                "comm": "echo",
            },
            "ret": 0,
            "error": null,
            "exe": "/bin/echo",
            "exe_truncated": false,
            "exe_unreadable": false,
            "args": ["/bin/echo", "hello", "two words"],
            "args_truncated": false,
            "pcomm": exec["pcomm"].clone(),
        })
    );
}

#[test]
fn trace_exec_columns_show_the_workloads_exec() {
    let node = Node::start();
    let mut workload = Workload::start("exec /bin/echo columns", &[]);
    let pid = workload.pid().to_string();
    let client = Client::start(&[
        "trace",
        "exec",
        "--node-address",
        &node.address,
        "--host",
        "--pid",
        &pid,
        "-o",
        "columns=node,pod,pid,ret,exe,args",
        "-t",
        "2",
    ]);
    let before = client.wait_for(Stream::Err, "trace started");
    workload.release();
    workload.wait();
    let (code, out, err) = client.finish();
    assert_eq!(code, Some(0), "stderr: {err}\nnode log:\n{}", node.log());
    let header: String = before
        .iter()
        .filter(|(stream, _)| *stream == Stream::Out)
        .map(|(_, line)| line.as_str())
        .collect();
    let stdout = header + &out;
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NODE", "POD", "PID", "RET", "EXE", "ARGS"],
            // No pod: a host process.
            vec![NODE_NAME, &pid, "0", "/bin/echo", "/bin/echo", "columns"],
        ],
        "{stdout}"
    );
    let stderr: String = before
        .iter()
        .filter(|(stream, _)| *stream == Stream::Err)
        .map(|(_, line)| line.as_str())
        .collect::<String>()
        + &err;
    assert_eq!(stderr, format!("{NODE_NAME}: trace started\n"));
}

#[test]
fn trace_open_escapes_a_hostile_file_name() {
    let node = Node::start();
    let dir = tempfile::tempdir().unwrap();
    // Clears the screen and forges a line, if printed raw.
    let hostile = dir.path().join("evil\x1b[2J\nnode-x: fake row");
    std::fs::write(&hostile, b"").unwrap();
    let mut workload = Workload::start("exec cat \"$1\"", &[hostile.to_str().unwrap()]);
    let pid = workload.pid().to_string();
    let prefix = format!("{}/", dir.path().display());
    let client = Client::start(&[
        "trace",
        "open",
        "--node-address",
        &node.address,
        "--host",
        "--pid",
        &pid,
        "--prefix",
        &prefix,
        "-o",
        "columns=pid,err,path",
        "-t",
        "2",
    ]);
    let before = client.wait_for(Stream::Err, "trace started");
    workload.release();
    workload.wait();
    let (code, out, err) = client.finish();
    assert_eq!(code, Some(0), "stderr: {err}\nnode log:\n{}", node.log());
    let header: String = before
        .iter()
        .filter(|(stream, _)| *stream == Stream::Out)
        .map(|(_, line)| line.as_str())
        .collect();
    let stdout = header + &out;
    assert!(!stdout.contains('\x1b'), "raw ESC in {stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {stdout:?}");
    // Escaped, and quoted: the name holds spaces.
    let escaped = format!("\"{prefix}evil\\x1b[2J\\nnode-x: fake row\"");
    assert!(lines[1].starts_with(&pid), "{stdout:?}");
    assert!(lines[1].ends_with(&escaped), "{stdout:?}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], pid);
    // A successful open: the error column is empty.
    assert!(cells[1].starts_with("\"/"), "{stdout:?}");
}

#[test]
fn trace_beyond_the_nodes_memory_budget_is_refused_with_the_nodes_name() {
    // 20 MiB: an 8 MiB ring buffer and its 16 MiB queue do not fit.
    let node = Node::start_with(&["--trace-memory-mib", "20"]);
    let pid = std::process::id().to_string();
    let client = Client::start(&[
        "trace",
        "open",
        "--node-address",
        &node.address,
        "--host",
        "--pid",
        &pid,
        "--ring-buffer-size",
        "8M",
        "-t",
        "2",
    ]);
    let (code, out, err) = client.finish();
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert_eq!(out, "", "no header when no node started");
    let prefix = format!("{NODE_NAME}: error: the trace needs 26.0 MiB");
    let line = err
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {err}"));
    assert!(line.contains("--ring-buffer-size"), "{err}");
}

#[test]
fn ctrl_c_prints_each_nodes_final_loss_counts() {
    let node = Node::start();
    // Opens as fast as a shell can, into a one-page ring buffer: the kernel
    // loses events all along.
    let mut workload = Workload::start("while :; do : </dev/null; done", &[]);
    let pid = workload.pid().to_string();
    let client = Client::start(&[
        "trace",
        "open",
        "--node-address",
        &node.address,
        "--host",
        "--pid",
        &pid,
        "--ring-buffer-size",
        "4K",
    ]);
    client.wait_for(Stream::Err, "trace started");
    workload.release();
    client.wait_for(Stream::Err, "events lost (ring buffer full)");
    client.interrupt();
    let (code, _, err) = client.finish();
    let _ = workload.child.kill();
    workload.wait();
    assert_eq!(code, Some(0), "Ctrl-C is no failure; stderr: {err}");
    let total = err
        .lines()
        .filter(|line| line.starts_with(&format!("{NODE_NAME}: in total: ")))
        .collect::<Vec<_>>();
    assert_eq!(total.len(), 1, "one summary line: {err}");
    assert!(total[0].contains("events lost (ring buffer full)"), "{err}");
    assert_eq!(
        err.lines().last(),
        Some(total[0]),
        "the summary comes last: {err}"
    );
    // The client asked the node to end the trace with its final status.
    assert!(
        node.log().contains("stopped=true"),
        "no StopTrace in the node's log:\n{}",
        node.log()
    );
}
