//! The real `gadget-node serve` process, reached by a real gRPC client over
//! its unix socket: health, NodeInfo, traces of forked children, refused
//! requests, concurrent traces, clients that go away, and SIGTERM.
//!
//! Every test starts its own node, so tests running in parallel never see
//! each other's programs: a node's programs are found in its own fd table.

mod common;

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{absorb, cstr, fork_paused, host_request, Collected};
use gadget_proto::v1;
use gadget_proto::v1::gadget_node_client::GadgetNodeClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const NODE: &str = env!("CARGO_BIN_EXE_gadget-node");
const NODE_NAME: &str = "grpc-test-node";

/// A `gadget-node serve` process on a unix socket in its own directory.
struct Node {
    process: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Node {
    /// Starts a node and waits until it reports SERVING.
    async fn start() -> Node {
        Node::start_with(&[]).await
    }

    /// Starts a node with more `serve` flags.
    async fn start_with(flags: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("node.sock");
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let process = Command::new(NODE)
            .args(["serve", "--no-kubernetes", "--node-name", NODE_NAME])
            .args(flags)
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gadget-node starts");
        let node = Node {
            process,
            dir,
            socket,
        };
        node.wait_serving().await;
        node
    }

    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.socket.exists() {
                if let Ok(channel) = connect(&self.socket, None).await {
                    if health(channel, "gadget.v1.GadgetNode").await.ok()
                        == Some(ServingStatus::Serving)
                    {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "node did not serve within 20 s; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> GadgetNodeClient<Channel> {
        GadgetNodeClient::new(connect(&self.socket, None).await.unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Kernel ids of the programs the node process holds open now.
    fn program_ids(&self) -> HashSet<u32> {
        programs_held_by(self.process.id())
    }

    /// The node's resident memory now, KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    fn terminate(&mut self, limit: Duration) -> ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node still running {limit:?} after SIGTERM; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.process.try_wait().ok().flatten().is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- node log ---\n{}", self.log());
        }
    }
}

/// Connections made by [`connect`], kept so a test can cut them under a
/// live client.
type Connections = Arc<Mutex<Vec<OwnedFd>>>;

/// A gRPC channel to the unix socket at `path`, through our own connector
/// (not tonic's): a duplicate of each connection's fd goes to `keep`.
async fn connect(
    path: &Path,
    keep: Option<Connections>,
) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The authority is never dialled; the connector decides where to go.
    Endpoint::from_static("http://gadget-node.invalid")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            let keep = keep.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                if let Some(keep) = keep {
                    keep.lock()
                        .unwrap()
                        .push(stream.as_fd().try_clone_to_owned()?);
                }
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

async fn health(channel: Channel, service: &str) -> Result<ServingStatus, Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Program ids in the `prog_id:` lines of a process's fdinfo: its program
/// fds and its links.
fn programs_held_by(pid: u32) -> HashSet<u32> {
    let mut ids = HashSet::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.insert(id.trim().parse().unwrap());
            }
        }
    }
    ids
}

/// What a stream sent until `done` or `limit`, and how it ended if it did.
async fn collect(
    stream: &mut Streaming<v1::RunGadgetResponse>,
    limit: Duration,
    done: impl Fn(&Collected) -> bool,
) -> (Collected, Option<Result<(), Status>>) {
    let mut got = Collected::default();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return (got, None),
            Ok(Ok(Some(message))) => absorb(&mut got, message),
            Ok(Ok(None)) => return (got, Some(Ok(()))),
            Ok(Err(status)) => return (got, Some(Err(status))),
        }
    }
    (got, None)
}

/// The statuses a stream sends until it ends (or 10 s pass: `None`), and how
/// it ended.
async fn statuses_to_the_end(
    stream: &mut Streaming<v1::RunGadgetResponse>,
) -> (Vec<v1::TraceStatus>, Option<Result<(), Status>>) {
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let end = loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => {
                if let Some(v1::run_gadget_response::Kind::Status(status)) = message.kind {
                    statuses.push(status);
                }
            }
            Ok(Ok(None)) => break Some(Ok(())),
            Ok(Err(status)) => break Some(Err(status)),
            Err(_) => break None,
        }
    };
    (statuses, end)
}

/// Waits for the first status: the gadget is attached.
async fn wait_started(stream: &mut Streaming<v1::RunGadgetResponse>) {
    let (got, end) = collect(stream, Duration::from_secs(10), |c| c.status.started).await;
    assert!(got.status.started, "trace did not start: {end:?}");
}

/// Collects until `done`, then a while longer so that an event that should
/// not be there has time to arrive (the node drains every 50 ms).
async fn collect_settled(
    stream: &mut Streaming<v1::RunGadgetResponse>,
    done: impl Fn(&Collected) -> bool,
) -> Collected {
    let (mut got, end) = collect(stream, Duration::from_secs(5), done).await;
    assert!(end.is_none(), "stream ended early: {end:?}");
    let (more, _) = collect(stream, Duration::from_millis(300), |_| false).await;
    got.events.extend(more.events);
    got
}

async fn run_gadget(
    client: &mut GadgetNodeClient<Channel>,
    request: v1::RunGadgetRequest,
) -> Streaming<v1::RunGadgetResponse> {
    client
        .run_gadget(request)
        .await
        .expect("trace starts")
        .into_inner()
}

fn open_request(pid: u32) -> v1::RunGadgetRequest {
    host_request(gadget_proto::TRACE_OPEN, None, Some(pid))
}

/// A request that loads a gadget but matches no process: it stays idle.
fn idle_request() -> v1::RunGadgetRequest {
    // pid_max is at most 2^22, so no process has this pid.
    open_request(u32::MAX - 1)
}

fn path_of(open: &v1::OpenEvent) -> String {
    String::from_utf8_lossy(&open.path).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_and_node_info_describes_the_node() {
    let node = Node::start().await;

    let mode = std::fs::metadata(&node.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket must be root-only");

    let channel = connect(&node.socket, None).await.unwrap();
    assert_eq!(
        health(channel.clone(), "gadget.v1.GadgetNode")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health(channel.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = health(channel.clone(), "gadget.v1.Nope").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let info = node
        .client()
        .await
        .node_info(v1::NodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_name, NODE_NAME);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.protocol_version, gadget_proto::PROTOCOL_VERSION);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info.kernel_release, release.trim());
    let names: Vec<&str> = info.gadgets.iter().map(|g| g.name.as_str()).collect();
    assert!(
        names.contains(&"trace_open") && names.contains(&"trace_exec"),
        "{names:?}"
    );
    // The kernel CI runs on has what every gadget needs.
    for gadget in &info.gadgets {
        assert!(gadget.available && gadget.reason.is_empty(), "{gadget:?}");
    }
    for feature in ["ringbuf", "btf", "bpf_loop"] {
        assert_eq!(
            info.features.get(feature),
            Some(&true),
            "{feature}: {info:?}"
        );
    }
    assert!(info.features.contains_key("lsm"), "{info:?}");

    // The same check, as the DaemonSet's exec probe runs it.
    let probe = Command::new(NODE)
        .args(["health", "--listen"])
        .arg(format!("unix://{}", node.socket.display()))
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    assert!(String::from_utf8_lossy(&probe.stdout).contains("SERVING"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_exec_streams_exactly_the_exec_of_the_traced_child() {
    let node = Node::start().await;
    let program = cstr("/bin/true");
    let args = [cstr("true"), cstr("--from-grpc-test"), cstr("two words")];
    let argv = [
        args[0].as_ptr(),
        args[1].as_ptr(),
        args[2].as_ptr(),
        std::ptr::null(),
    ];
    let env = [std::ptr::null()];
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        libc::execve(program.as_ptr(), argv.as_ptr(), env.as_ptr());
        // Only reached when the exec failed.
        1
    });
    let mut stream = run_gadget(
        &mut node.client().await,
        host_request(gadget_proto::TRACE_EXEC, None, Some(child.pid)),
    )
    .await;
    wait_started(&mut stream).await;
    child.release();
    let pid = child.pid;
    let code = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    assert_eq!(code, 0);

    let got = collect_settled(&mut stream, |c| !c.execs().is_empty()).await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
    assert_eq!(exec.ret, 0);
    assert_eq!(&exec.exe[..], b"/bin/true");
    let args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"true"[..], b"--from-grpc-test", b"two words"]);
    assert!(!exec.args_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_open_streams_exactly_the_opens_of_the_traced_child() {
    let node = Node::start().await;
    let missing = cstr("/nonexistent/grpc-server-test");
    let null = cstr("/dev/null");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        libc::open(missing.as_ptr(), libc::O_RDONLY);
        let fd = libc::open(null.as_ptr(), libc::O_WRONLY);
        libc::close(fd);
        0
    });
    let mut stream = run_gadget(&mut node.client().await, open_request(child.pid)).await;
    wait_started(&mut stream).await;
    child.release();
    let pid = child.pid;
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();

    let got = collect_settled(&mut stream, |c| c.opens().len() >= 2).await;
    let opens = got.opens();
    let paths: Vec<String> = opens.iter().map(|o| path_of(o)).collect();
    assert_eq!(paths, ["/nonexistent/grpc-server-test", "/dev/null"]);
    assert_eq!((opens[0].fd, opens[0].error), (-1, libc::ENOENT));
    assert!(opens[1].fd >= 0 && opens[1].error == 0, "{:?}", opens[1]);
    for (event, _) in &got.events {
        assert_eq!(event.process.as_ref().unwrap().pid, pid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_argument_and_the_node_keeps_serving() {
    let node = Node::start().await;
    let mut client = node.client().await;

    let unknown_gadget = v1::RunGadgetRequest {
        gadget: "trace_tcp".into(),
        ..idle_request()
    };
    let mut bad_selector = idle_request();
    bad_selector.selector = Some(v1::ContainerSelector {
        label_selector: "a in (b".into(),
        ..Default::default()
    });
    let too_many_args = host_request(
        gadget_proto::TRACE_EXEC,
        Some(v1::run_gadget_request::Params::Exec(v1::ExecParams {
            max_args: 1_000_000,
            ..Default::default()
        })),
        Some(u32::MAX - 1),
    );
    let old_protocol = v1::RunGadgetRequest {
        protocol_version: gadget_proto::PROTOCOL_VERSION + 1,
        ..idle_request()
    };
    let cases = [
        (
            "unknown gadget",
            unknown_gadget,
            vec!["trace_tcp", "trace_open", "trace_exec"],
        ),
        ("malformed label selector", bad_selector, vec!["a in (b"]),
        (
            "max_args above the cap",
            too_many_args,
            vec!["max args 1000000", "limit"],
        ),
        (
            "wrong protocol version",
            old_protocol,
            vec!["protocol version"],
        ),
    ];
    for (case, request, words) in cases {
        let status = client.run_gadget(request).await.err().unwrap_or_else(|| {
            panic!("{case}: accepted");
        });
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        for word in words {
            assert!(
                status.message().contains(word),
                "{case}: {word:?} missing from {:?}",
                status.message()
            );
        }
    }

    // Same client, same connection: still served.
    client.node_info(v1::NodeInfoRequest {}).await.unwrap();
    let mut stream = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traces_each_get_their_own_events() {
    const TRACES: usize = 4;
    let node = Node::start().await;
    let paths: Vec<String> = (0..TRACES)
        .map(|i| format!("/nonexistent/grpc-concurrent-{i}"))
        .collect();
    let c_paths: Vec<_> = paths.iter().map(|p| cstr(p)).collect();
    let children: Vec<_> = c_paths
        .iter()
        .map(|path| {
            // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
            fork_paused(|| unsafe {
                libc::open(path.as_ptr(), libc::O_RDONLY);
                0
            })
        })
        .collect();

    // Every trace on its own connection, all started before any child runs.
    let mut streams = Vec::new();
    for child in &children {
        let mut client = node.client().await;
        streams.push(tokio::spawn({
            let request = open_request(child.pid);
            async move {
                let mut stream = run_gadget(&mut client, request).await;
                wait_started(&mut stream).await;
                stream
            }
        }));
    }
    let mut started = Vec::new();
    for stream in streams {
        started.push(stream.await.unwrap());
    }

    for mut child in children {
        child.release();
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
    }
    for (i, mut stream) in started.into_iter().enumerate() {
        let got = collect_settled(&mut stream, |c| !c.opens().is_empty()).await;
        let seen: Vec<String> = got.opens().iter().map(|o| path_of(o)).collect();
        assert_eq!(seen, [paths[i].clone()], "trace {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_ends_its_call_detaches_the_gadget() {
    let node = Node::start().await;
    let mut client = node.client().await;
    let mut stream = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut stream).await;
    let ids = node.program_ids();
    assert!(!ids.is_empty(), "the node holds the trace's programs");

    // Cancels the call (RST_STREAM); the connection stays up.
    drop(stream);
    common::wait_unloaded(&ids).await;
    assert!(node.program_ids().is_empty());
    // The connection and the node still serve.
    client.node_info(v1::NodeInfoRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_whose_connection_dies_detaches_the_gadget() {
    let node = Node::start().await;
    let connections = Connections::default();
    let mut client = GadgetNodeClient::new(
        connect(&node.socket, Some(connections.clone()))
            .await
            .unwrap(),
    );
    let mut stream = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut stream).await;
    let ids = node.program_ids();
    assert!(!ids.is_empty(), "the node holds the trace's programs");

    // The connection dies under a client that still holds its stream: no
    // HTTP/2 goodbye, as when the client's process is killed.
    for fd in connections.lock().unwrap().iter() {
        use std::os::fd::AsRawFd;
        // SAFETY: shutting down a socket fd we own a duplicate of.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
    common::wait_unloaded(&ids).await;
    assert!(node.program_ids().is_empty());
    drop(stream);

    // Others are still served.
    node.client()
        .await
        .node_info(v1::NodeInfoRequest {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_traces_exits_zero_and_removes_the_socket() {
    let mut node = Node::start().await;
    let mut stream = run_gadget(&mut node.client().await, idle_request()).await;
    wait_started(&mut stream).await;
    let ids = node.program_ids();
    assert!(!ids.is_empty());

    let status = tokio::task::block_in_place(|| node.terminate(Duration::from_secs(10)));
    assert_eq!(status.code(), Some(0), "log:\n{}", node.log());
    assert!(!node.socket.exists(), "the socket file is left behind");
    common::wait_unloaded(&ids).await;
    // The final status (its loss counters) comes before the error, even
    // from a trace whose status had not changed.
    let (statuses, end) = statuses_to_the_end(&mut stream).await;
    assert_eq!(statuses.len(), 1, "one final status after SIGTERM");
    match end {
        Some(Err(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(status.message().contains("stopping"), "{status:?}");
        }
        other => panic!("the stream should end with UNAVAILABLE, got {other:?}"),
    }
}

#[test]
fn non_loopback_tcp_is_refused_without_the_flag() {
    let output = Command::new(NODE)
        .args(["serve", "--no-kubernetes", "--listen", "tcp://0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-non-loopback"), "{stderr}");
}

#[test]
fn non_loopback_tcp_is_served_with_a_warning_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("node.log");
    let mut process = Command::new(NODE)
        .args(["serve", "--no-kubernetes", "--allow-non-loopback"])
        // An ephemeral port, and only until the warning is seen.
        .args(["--listen", "tcp://0.0.0.0:0"])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains("serving gadget.v1.GadgetNode") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(process.id() as i32, libc::SIGTERM) };
    assert!(process.wait().unwrap().success(), "{log}");
    assert!(log.contains("non-loopback address"), "{log}");
    assert!(log.contains("address=tcp://0.0.0.0:"), "{log}");
}

#[test]
fn unreadable_kubeconfig_is_an_error_not_local_mode() {
    let output = Command::new(NODE)
        .args(["serve", "--kubeconfig", "/nonexistent/kubeconfig"])
        .args(["--listen", "tcp://127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
}

#[test]
fn health_check_fails_with_one_line_when_no_node_serves() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(NODE)
        .args(["health", "--listen"])
        .arg(format!("unix://{}", dir.path().join("none.sock").display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn socket_file_of_a_killed_node_is_replaced() {
    // A node killed with SIGKILL leaves its socket file; the next one starts.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut first = Node::start().await;
        first.process.kill().unwrap();
        first.process.wait().unwrap();
        assert!(first.socket.exists());
        let process = Command::new(NODE)
            .args(["serve", "--no-kubernetes", "--listen"])
            .arg(format!("unix://{}", first.socket.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let second = Node {
            process,
            dir: tempfile::tempdir().unwrap(),
            socket: first.socket.clone(),
        };
        second.wait_serving().await;
    });
}

/// A child that opens /dev/null as fast as it can until killed: a trace of
/// it fills any queue a client does not read.
fn flooding_child() -> common::PausedChild {
    let null = cstr("/dev/null");
    // SAFETY: the closure runs in the forked child; its libc calls get a C string that outlives them.
    fork_paused(move || unsafe {
        loop {
            let fd = libc::open(null.as_ptr(), libc::O_RDONLY);
            libc::close(fd);
        }
    })
}

/// Waits (at most `limit`) until the node holds none of `ids`; how long.
async fn wait_detached(node: &Node, ids: &HashSet<u32>, limit: Duration) -> Duration {
    let started = Instant::now();
    while node.program_ids().intersection(ids).next().is_some() {
        assert!(
            started.elapsed() < limit,
            "programs still attached after {limit:?}; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_beyond_max_traces_are_resource_exhausted() {
    let node = Node::start_with(&["--max-traces", "1"]).await;
    let mut client = node.client().await;
    let mut first = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut first).await;

    let refused = client.run_gadget(idle_request()).await.err().unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-traces 1"),
        "{}",
        refused.message()
    );
    assert!(node.log().contains("trace refused"), "{}", node.log());

    // Its place is free once it ended.
    let ids = node.program_ids();
    drop(first);
    common::wait_unloaded(&ids).await;
    let mut again = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_buffer_beyond_the_memory_budget_is_resource_exhausted() {
    // 20 MiB: a default trace (18.5 MiB) fits, one with an 8 MiB ring
    // buffer (26 MiB) does not.
    let node = Node::start_with(&["--trace-memory-mib", "20"]).await;
    let mut client = node.client().await;
    let large = v1::RunGadgetRequest {
        ring_buffer_bytes: 8 << 20,
        ..idle_request()
    };
    let refused = client.run_gadget(large).await.err().unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("26.0 MiB")
            && refused.message().contains("20.0 MiB")
            && refused.message().contains("--ring-buffer-size"),
        "{}",
        refused.message()
    );
    assert!(node.program_ids().is_empty(), "nothing was loaded");
    let mut fits = run_gadget(&mut client, idle_request()).await;
    wait_started(&mut fits).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_has_its_trace_ended_after_the_stall_timeout() {
    let node = Node::start_with(&["--stall-timeout", "2"]).await;
    let child = flooding_child();
    let mut client = node.client().await;
    let mut stream = run_gadget(&mut client, open_request(child.pid)).await;
    wait_started(&mut stream).await;
    let ids = node.program_ids();
    assert!(!ids.is_empty());
    // From here on the client holds its stream, and its connection answers
    // pings, but it reads nothing.
    child.release();
    let took = wait_detached(&node, &ids, Duration::from_secs(30)).await;
    eprintln!("stalled client: programs detached {took:?} after the flood began");
    assert!(
        node.log()
            .contains("the client took nothing from the full queue"),
        "{}",
        node.log()
    );
    // A client that reads again learns why its rows stopped: what was
    // queued, then the error.
    let (_, end) = statuses_to_the_end(&mut stream).await;
    match end {
        Some(Err(status)) => {
            assert_eq!(status.code(), Code::Aborted, "{status:?}");
            assert!(
                status.message().contains("read nothing for 2 s"),
                "{status:?}"
            );
        }
        other => panic!("the stream should end with ABORTED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_timeout_with_a_client_that_stops_reading_ends_without_waiting_forever() {
    // A stall timeout far away: only the bound on the final send can end it.
    let node = Node::start_with(&["--stall-timeout", "600"]).await;
    let child = flooding_child();
    let mut client = node.client().await;
    let request = v1::RunGadgetRequest {
        timeout_seconds: 4,
        ..open_request(child.pid)
    };
    let mut stream = run_gadget(&mut client, request).await;
    wait_started(&mut stream).await;
    let ids = node.program_ids();
    child.release();
    // 4 s of trace, then at most FINAL_SEND_TIMEOUT (2 s) for the last status.
    let took = wait_detached(&node, &ids, Duration::from_secs(15)).await;
    eprintln!("stalled client, -t 4: programs detached {took:?} after the flood began");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        node.log().contains("without its final status"),
        "{}",
        node.log()
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_trace_ends_the_stream_with_a_final_status() {
    let node = Node::start().await;
    let mut client = node.client().await;
    let response = client.run_gadget(idle_request()).await.unwrap();
    let trace_id: u64 = response
        .metadata()
        .get(gadget_proto::TRACE_ID_HEADER)
        .expect("the trace id header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = response.into_inner();
    wait_started(&mut stream).await;
    let ids = node.program_ids();

    let stopped = client
        .stop_trace(v1::StopTraceRequest { trace_id })
        .await
        .unwrap()
        .into_inner();
    assert!(stopped.stopped);
    // A final status (though nothing changed), then the end: not an error.
    let (statuses, end) = statuses_to_the_end(&mut stream).await;
    assert!(matches!(end, Some(Ok(()))), "{end:?}");
    assert_eq!(statuses, [v1::TraceStatus::default()]);
    common::wait_unloaded(&ids).await;
    assert!(node.program_ids().is_empty());

    let again = client
        .stop_trace(v1::StopTraceRequest { trace_id })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.stopped, "it ended already");
}

/// Regression: a node that had run a busy trace stayed at the trace's peak
/// memory once it ended (glibc's malloc keeps what is freed; 30 MiB after
/// 300,000 opens against 12 MiB before), far above the 16 MiB an idle node
/// may hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_falls_back_to_idle_once_a_busy_trace_ends() {
    /// What a trace may leave behind: the first trace's one-off
    /// allocations (BTF, the kernel feature probes' results), and pages a
    /// few live allocations keep from being returned.
    const LEFT_BEHIND_KIB: u64 = 4 * 1024;
    let node = Node::start().await;
    let idle = node.rss_kib();
    let flood = flooding_child();
    let mut client = node.client().await;
    let mut stream = run_gadget(&mut client, open_request(flood.pid)).await;
    wait_started(&mut stream).await;
    flood.release();
    let mut events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some(message))) = tokio::time::timeout_at(deadline, stream.message()).await {
        if let Some(v1::run_gadget_response::Kind::Events(batch)) = message.kind {
            events += batch.events.len();
        }
    }
    drop(flood);
    let busy = node.rss_kib();
    assert!(events > 50_000, "the trace was not busy: {events} events");
    assert!(
        busy > idle + 2 * LEFT_BEHIND_KIB,
        "the trace allocated too little to tell: {idle} KiB idle, {busy} KiB during"
    );
    drop(stream);
    drop(client);

    let started = Instant::now();
    let mut after = node.rss_kib();
    while after > idle + LEFT_BEHIND_KIB && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = node.rss_kib();
    }
    assert!(
        after <= idle + LEFT_BEHIND_KIB,
        "{idle} KiB idle, {busy} KiB during a trace of {events} events, {after} KiB 5 s after it ended"
    );
}
