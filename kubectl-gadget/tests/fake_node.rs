//! The real `kubectl-gadget` binary against fake gadget-nodes: in-process
//! tonic servers on unix sockets that play a script of responses. They pin
//! what the client does with several nodes: the merge, a node failing in
//! the middle of a trace, protocol mismatches, Ctrl-C, and what reaches the
//! node from the flags.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use gadget_proto::v1::gadget_node_server::{GadgetNode, GadgetNodeServer};
use gadget_proto::v1::{
    event, run_gadget_request, run_gadget_response, ContainerSelector, Event, EventBatch,
    ExecEvent, GadgetInfo, NodeInfoRequest, NodeInfoResponse, OpenParams, Process, ProcessFilter,
    RunGadgetRequest, RunGadgetResponse, TraceStatus, Workload,
};
use gadget_proto::PROTOCOL_VERSION;
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

const CLIENT: &str = env!("CARGO_BIN_EXE_kubectl-gadget");

/// One step of a fake node's RunGadget stream.
#[derive(Clone)]
enum Step {
    Send(RunGadgetResponse),
    Wait(Duration),
    /// End the stream with this error.
    Fail(Status),
    /// Keep the stream open until the client cancels it.
    Hold,
}

/// What a fake node answers.
#[derive(Clone)]
struct Script {
    name: &'static str,
    protocol_version: u32,
    gadgets: Vec<GadgetInfo>,
    steps: Vec<Step>,
}

impl Script {
    fn new(name: &'static str, steps: Vec<Step>) -> Script {
        Script {
            name,
            protocol_version: PROTOCOL_VERSION,
            gadgets: ["trace_open", "trace_exec"]
                .map(|name| GadgetInfo {
                    name: name.into(),
                    available: true,
                    reason: String::new(),
                })
                .to_vec(),
            steps,
        }
    }
}

/// What a fake node saw.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<RunGadgetRequest>>,
    started: Notify,
    /// Set when the client ended the call (its stream was dropped).
    cancelled: AtomicBool,
}

struct FakeNode {
    script: Script,
    seen: Arc<Seen>,
}

/// Sets `cancelled` when the response stream is dropped before its end.
struct CancelGuard {
    seen: Arc<Seen>,
    finished: bool,
}

impl CancelGuard {
    /// The stream reached its end: the client did not cancel it.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<RunGadgetResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GadgetNode for FakeNode {
    type RunGadgetStream = ResponseStream;

    async fn run_gadget(
        &self,
        request: Request<RunGadgetRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.seen
            .requests
            .lock()
            .unwrap()
            .push(request.into_inner());
        self.seen.started.notify_one();
        let guard = CancelGuard {
            seen: self.seen.clone(),
            finished: false,
        };
        let steps = self.script.steps.clone().into_iter();
        let stream = futures::stream::unfold((steps, guard), |(mut steps, mut guard)| async move {
            loop {
                match steps.next() {
                    None => {
                        guard.finish();
                        return None;
                    }
                    Some(Step::Send(response)) => return Some((Ok(response), (steps, guard))),
                    Some(Step::Wait(delay)) => tokio::time::sleep(delay).await,
                    Some(Step::Fail(status)) => {
                        guard.finish();
                        return Some((Err(status), (Vec::new().into_iter(), guard)));
                    }
                    Some(Step::Hold) => std::future::pending::<()>().await,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stop_trace(
        &self,
        _: Request<gadget_proto::v1::StopTraceRequest>,
    ) -> Result<Response<gadget_proto::v1::StopTraceResponse>, Status> {
        // Like a node older than StopTrace: the client cancels after waiting.
        Err(Status::unimplemented("StopTrace"))
    }

    async fn node_info(
        &self,
        _: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        Ok(Response::new(NodeInfoResponse {
            node_name: self.script.name.into(),
            version: "9.9.9-fake".into(),
            protocol_version: self.script.protocol_version,
            kernel_release: "6.1.0-fake".into(),
            gadgets: self.script.gadgets.clone(),
            features: Default::default(),
        }))
    }
}

/// Serves `script` on a unix socket in `dir`; returns the `--node-address`
/// and what the node sees.
fn serve(dir: &Path, script: Script) -> (String, Arc<Seen>) {
    let path: PathBuf = dir.join(format!("{}.sock", script.name));
    let listener = UnixListener::bind(&path).unwrap();
    let seen = Arc::new(Seen::default());
    let node = FakeNode {
        script,
        seen: seen.clone(),
    };
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GadgetNodeServer::new(node))
            .serve_with_incoming(incoming),
    );
    (format!("unix://{}", path.display()), seen)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// An exec of `exe` by process `pid` at `timestamp_ns`, in workload 1 of
/// its batch.
fn exec(pid: u32, timestamp_ns: u64, exe: &[u8]) -> Event {
    Event {
        timestamp_ns,
        process: Some(Process {
            pid,
            comm: Bytes::from_static(b"sh"),
            ..Process::default()
        }),
        workload: 1,
        kind: Some(event::Kind::Exec(ExecEvent {
            exe: Bytes::copy_from_slice(exe),
            ..ExecEvent::default()
        })),
    }
}

fn batch(events: Vec<Event>) -> Step {
    Step::Send(RunGadgetResponse {
        kind: Some(run_gadget_response::Kind::Events(EventBatch {
            workloads: vec![Workload {
                namespace: "default".into(),
                pod: "web-1".into(),
                container: "app".into(),
                ..Workload::default()
            }],
            events,
            held: false,
        })),
    })
}

fn status(status: TraceStatus) -> Step {
    Step::Send(RunGadgetResponse {
        kind: Some(run_gadget_response::Kind::Status(status)),
    })
}

async fn client(args: &[&str]) -> Output {
    tokio::process::Command::new(CLIENT)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The whitespace-separated cells of each line.
fn cells(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|line| line.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_failing_mid_trace_is_named_and_the_other_nodes_rows_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let ms = 1_000_000;
    // In the future, so that however long the client takes to start, every
    // event is still in the merge window when the late node's arrive.
    let base = now_ns() + 2_000 * ms;
    let (a, _) = serve(
        dir.path(),
        Script::new(
            "node-a",
            vec![
                batch(vec![
                    exec(1, base + ms, b"/bin/a1"),
                    exec(3, base + 3 * ms, b"/bin/a3"),
                ]),
                Step::Wait(Duration::from_millis(60)),
                batch(vec![exec(5, base + 5 * ms, b"/bin/a5")]),
            ],
        ),
    );
    let (b, _) = serve(
        dir.path(),
        Script::new(
            "node-b",
            vec![
                // Late, and older than node a's first batch.
                Step::Wait(Duration::from_millis(30)),
                batch(vec![
                    exec(2, base + 2 * ms, b"/bin/b2"),
                    exec(4, base + 4 * ms, b"/bin/b4"),
                ]),
                Step::Fail(Status::internal("ring buffer reader stopped")),
            ],
        ),
    );
    let output = client(&[
        "trace",
        "exec",
        "--node-address",
        &a,
        "--node-address",
        &b,
        "-o",
        "columns=node,pod,pid,exe",
    ])
    .await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(
        cells(&stdout),
        [
            vec!["NODE", "POD", "PID", "EXE"],
            vec!["node-a", "web-1", "1", "/bin/a1"],
            vec!["node-b", "web-1", "2", "/bin/b2"],
            vec!["node-a", "web-1", "3", "/bin/a3"],
            vec!["node-b", "web-1", "4", "/bin/b4"],
            vec!["node-a", "web-1", "5", "/bin/a5"],
        ],
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stderr,
        "node-b: error: ring buffer reader stopped\n\
         error: the trace failed on 1 of 2 nodes: node-b\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_mismatch_fails_that_node_only() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = serve(
        dir.path(),
        Script::new(
            "node-good",
            vec![batch(vec![exec(7, now_ns(), b"/bin/true")])],
        ),
    );
    let mut old = Script::new("node-old", vec![]);
    old.protocol_version = PROTOCOL_VERSION + 1;
    let (old, old_seen) = serve(dir.path(), old);
    let output = client(&[
        "trace",
        "exec",
        "--node-address",
        &good,
        "--node-address",
        &old,
        "-o",
        "columns=node,pid",
    ])
    .await;
    assert_eq!(
        cells(&text(&output.stdout)),
        [vec!["NODE", "PID"], vec!["node-good", "7"]]
    );
    assert_eq!(
        text(&output.stderr),
        format!(
            "node-old: error: node speaks protocol version {} but this client speaks version {}; \
             use a kubectl-gadget release that matches the deployed gadget-node\n\
             error: the trace failed on 1 of 2 nodes: node-old\n",
            PROTOCOL_VERSION + 1,
            PROTOCOL_VERSION
        )
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        old_seen.requests.lock().unwrap().is_empty(),
        "no trace is started on a node of another protocol"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_is_named_by_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = serve(
        dir.path(),
        Script::new(
            "node-good",
            vec![batch(vec![exec(7, now_ns(), b"/bin/true")])],
        ),
    );
    let missing = format!("unix://{}/missing.sock", dir.path().display());
    let output = client(&[
        "trace",
        "exec",
        "--node-address",
        &good,
        "--node-address",
        &format!("edge={missing}"),
        "-o",
        "columns=node,pid",
    ])
    .await;
    assert_eq!(
        cells(&text(&output.stdout)),
        [vec!["NODE", "PID"], vec!["node-good", "7"]]
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "edge: error: cannot connect to gadget-node at {missing}: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("error: the trace failed on 1 of 2 nodes: edge\n"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_carries_statuses_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = serve(
        dir.path(),
        Script::new(
            "node-a",
            vec![
                status(TraceStatus {
                    started: true,
                    ..TraceStatus::default()
                }),
                batch(vec![exec(1, now_ns(), b"/bin/x\x1b[2J\ny")]),
                status(TraceStatus {
                    lost_kernel: 5,
                    ..TraceStatus::default()
                }),
            ],
        ),
    );
    let output = client(&["trace", "exec", "--node-address", &node, "-o", "json"]).await;
    assert_eq!(text(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    // Statuses are printed as they come; events after the merge window.
    assert_eq!(lines[0]["type"], "status");
    assert_eq!(lines[0]["started"], true);
    assert_eq!(lines[1]["type"], "status");
    assert_eq!(lines[1]["lost_kernel"], 5);
    assert_eq!(lines[2]["type"], "exec");
    assert_eq!(lines[2]["node"], "node-a");
    assert_eq!(lines[2]["exe"], "/bin/x\u{1b}[2J\ny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_are_escaped_in_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = serve(
        dir.path(),
        Script::new(
            "node-a",
            vec![batch(vec![exec(1, now_ns(), b"/tmp/\x1b[2J\nevil")])],
        ),
    );
    let output = client(&[
        "trace",
        "exec",
        "--node-address",
        &node,
        "-o",
        "columns=pid,exe",
    ])
    .await;
    let stdout = text(&output.stdout);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert_eq!(
        cells(&stdout),
        [vec!["PID", "EXE"], vec!["1", "/tmp/\\x1b[2J\\nevil"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_flushes_the_window_cancels_the_trace_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // An hour ahead: it leaves the merge window only when the client flushes
    // it at the end.
    let future = now_ns() + 3_600_000_000_000;
    let (node, seen) = serve(
        dir.path(),
        Script::new(
            "node-a",
            vec![batch(vec![exec(42, future, b"/bin/sleep")]), Step::Hold],
        ),
    );
    let child = spawn_pid_trace(&node);
    tokio::time::timeout(Duration::from_secs(20), seen.started.notified())
        .await
        .expect("the client starts the trace");
    // Let the batch reach the client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the client exits after Ctrl-C")
        .unwrap();
    assert_eq!(cells(&text(&output.stdout)), [vec!["PID"], vec!["42"]]);
    assert_eq!(text(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
    // The node sees the call end, which is how it knows to stop tracing.
    for _ in 0..100 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.cancelled.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_ends_the_trace_and_cancels_the_call() {
    // Rows are written on a thread of their own: a reader that goes away
    // (`| head`) must still end the trace, through that thread's error.
    let dir = tempfile::tempdir().unwrap();
    // An hour ago: each row leaves the merge window as soon as it arrives.
    let past = now_ns() - 3_600_000_000_000;
    let mut steps = Vec::new();
    for n in 0..400u32 {
        steps.push(batch(vec![exec(n, past + u64::from(n), b"/bin/true")]));
        steps.push(Step::Wait(Duration::from_millis(25)));
    }
    steps.push(Step::Hold);
    let (node, seen) = serve(dir.path(), Script::new("node-a", steps));
    let mut child = spawn_pid_trace(&node);
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut header),
    )
    .await
    .expect("the client prints its header")
    .unwrap();
    assert_eq!(header.trim(), "PID");
    drop(stdout);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the client ends once its stdout is closed, long before the node's 10 s of rows")
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    for _ in 0..100 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.cancelled.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_reach_the_node_as_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let (node, seen) = serve(dir.path(), Script::new("node-a", vec![]));
    let output = client(&[
        "trace",
        "open",
        "--node-address",
        &node,
        "-n",
        "shop",
        "-p",
        "web-1",
        "-c",
        "nginx",
        "-l",
        "app=web,tier notin (db)",
        "--host",
        "--pid",
        "42",
        "--uid",
        "1000",
        "-t",
        "3",
        "--ring-buffer-size",
        "1M",
        "--failed",
        "--prefix",
        "/etc/",
        "--prefix",
        "/root/",
    ])
    .await;
    assert_eq!(text(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
    let requests = seen.requests.lock().unwrap();
    assert_eq!(
        *requests,
        [RunGadgetRequest {
            protocol_version: PROTOCOL_VERSION,
            gadget: "trace_open".into(),
            selector: Some(ContainerSelector {
                namespaces: vec!["shop".into()],
                pod_name: "web-1".into(),
                container_name: "nginx".into(),
                label_selector: "app=web,tier notin (db)".into(),
                include_host: true,
            }),
            filter: Some(ProcessFilter {
                pid: Some(42),
                uid: Some(1000),
            }),
            params: Some(run_gadget_request::Params::Open(OpenParams {
                failed_only: true,
                path_prefixes: vec![Bytes::from_static(b"/etc/"), Bytes::from_static(b"/root/")],
            })),
            timeout_seconds: 3,
            ring_buffer_bytes: 1 << 20,
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_traces_every_namespace_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (node, seen) = serve(dir.path(), Script::new("node-a", vec![]));
    let output = client(&["trace", "exec", "--node-address", &node]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let requests = seen.requests.lock().unwrap();
    let selector = requests[0].selector.as_ref().unwrap();
    assert!(selector.namespaces.is_empty(), "{selector:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gadget_unavailable_on_a_node_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut script = Script::new("node-a", vec![]);
    script.gadgets[1] = GadgetInfo {
        name: "trace_exec".into(),
        available: false,
        reason: "kernel lacks BTF".into(),
    };
    let (node, seen) = serve(dir.path(), script);
    let output = client(&["trace", "exec", "--node-address", &node]).await;
    assert_eq!(
        text(&output.stderr),
        "node-a: error: trace_exec is not available on this node: kernel lacks BTF\n\
         error: the trace failed on 1 of 1 nodes: node-a\n"
    );
    assert_eq!(text(&output.stdout), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(seen.requests.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refusing_the_request_is_reported_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = serve(
        dir.path(),
        Script::new(
            "node-a",
            vec![Step::Fail(Status::invalid_argument(
                "max_args 100 is more than the node keeps (60)",
            ))],
        ),
    );
    let output = client(&[
        "trace",
        "exec",
        "--node-address",
        &node,
        "--max-args",
        "100",
    ])
    .await;
    assert_eq!(
        text(&output.stderr),
        "node-a: error: max_args 100 is more than the node keeps (60)\n\
         error: the trace failed on 1 of 1 nodes: node-a\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_lists_every_node_and_fails_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = serve(dir.path(), Script::new("node-good", vec![]));
    let mut old = Script::new("node-old", vec![]);
    old.protocol_version = PROTOCOL_VERSION + 1;
    let (old, _) = serve(dir.path(), old);
    let output = client(&["version", "--node-address", &good, "--node-address", &old]).await;
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Client Version: {} (protocol {PROTOCOL_VERSION})",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        cells(lines[1]),
        [vec![
            "NODE", "VERSION", "PROTOCOL", "KERNEL", "GADGETS", "STATUS"
        ]]
    );
    assert_eq!(
        cells(lines[2]),
        [vec![
            "node-good",
            "9.9.9-fake",
            &PROTOCOL_VERSION.to_string(),
            "6.1.0-fake",
            "trace_open,",
            "trace_exec",
            "ok"
        ]]
    );
    assert!(lines[3].starts_with("node-old "), "{stdout}");
    assert!(
        lines[3].ends_with(&format!(
            "protocol mismatch: node {}, client {PROTOCOL_VERSION}",
            PROTOCOL_VERSION + 1
        )),
        "{stdout}"
    );
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(output.status.code(), Some(1));

    let output = client(&["version", "--node-address", &good]).await;
    assert_eq!(output.status.code(), Some(0));
}

/// `trace exec -o columns=pid` against `node`, its output piped.
fn spawn_pid_trace(node: &str) -> tokio::process::Child {
    tokio::process::Command::new(CLIENT)
        .args(["trace", "exec", "--node-address", node, "-o", "columns=pid"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
