//! The real `kubectl-gadget` binary: bad command lines end with exit code 2
//! and a clear message before any I/O, and cluster problems (no kubeconfig,
//! unknown context, unreachable or refusing API server, gadget-node not
//! deployed or not ready) with one line each, against a fake API server.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const CLIENT: &str = env!("CARGO_BIN_EXE_kubectl-gadget");

/// Runs the client with a kubeconfig that does not exist, so that nothing
/// on this machine is used by accident.
fn client(args: &[&str]) -> Output {
    client_with_kubeconfig(Path::new("/nonexistent/kubeconfig"), args)
}

fn client_with_kubeconfig(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(CLIENT)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn help_documents_direct_mode() {
    let output = client(&["trace", "exec", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for text in [
        "--node-address <[NAME=]ADDRESS>",
        "unix:///PATH or tcp://HOST:PORT",
        "kubeconfig is not read",
        "-n filters namespaces only when it is given",
        "--kubeconfig <PATH>",
        "--context <NAME>",
        "-A, --all-namespaces",
        "--ignore-failed",
        "--max-args <N>",
    ] {
        assert!(help.contains(text), "{text:?} missing from:\n{help}");
    }
    let help = stdout(&client(&["trace", "open", "--help"]));
    assert!(help.contains("--failed"), "{help}");
    assert!(help.contains("--prefix <PREFIX>"), "{help}");
}

#[test]
fn invalid_values_are_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["trace", "exec", "-l", "app in (web"],
            "error: invalid label selector \"app in (web\": missing ')'",
        ),
        (
            &["trace", "exec", "-l", "app<3"],
            "error: invalid label selector \"app<3\": unsupported operator '<' at offset 3; \
             use =, ==, !=, in, notin, key or !key",
        ),
        (
            &["trace", "exec", "-o", "yaml"],
            "error: invalid --output: unknown output format \"yaml\"; \
             use columns, columns=<name,...>, json or compact",
        ),
        (
            &["trace", "exec", "--node-address", "127.0.0.1:7100"],
            "error: invalid --node-address \"127.0.0.1:7100\": \
             use unix:///PATH or tcp://HOST:PORT, optionally as NAME=ADDRESS",
        ),
        (
            &["version", "--node-address", "unix://node.sock"],
            "error: invalid --node-address \"unix://node.sock\": a unix socket path must be \
             absolute, as in unix:///run/gadget/node.sock",
        ),
        (
            &["trace", "open", "--ring-buffer-size", "lots"],
            "error: invalid --ring-buffer-size \"lots\": expected bytes, or a number with a K \
             or M suffix, e.g. 512K or 16M",
        ),
        (
            &["trace", "open", "-n", "Shop"],
            "error: invalid namespace \"Shop\": only lower-case letters, digits and '-' are allowed",
        ),
        (
            &["trace", "exec", "--max-args", "0"],
            "error: invalid --max-args 0: it must be at least 1 (leave it out for the node's default)",
        ),
        (
            &["trace", "exec", "--pid", "0"],
            "error: invalid --pid 0: process ids start at 1",
        ),
    ];
    for (args, message) in cases {
        let output = client(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&output), format!("{message}\n"), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
    }
    // The output columns depend on the gadget.
    let output = client(&["trace", "exec", "-o", "columns=pid,path"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: invalid --output: unknown column \"path\" for trace_exec;"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn bad_flags_are_refused_by_clap_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["trace", "exec", "-A", "-n", "shop"],
            "error: the argument '--all-namespaces' cannot be used with '--namespace <NAMESPACE>'",
        ),
        (
            &["trace", "exec", "--pid", "abc"],
            "error: invalid value 'abc' for '--pid <PID>': invalid digit found in string",
        ),
        (
            &["trace", "exec", "-t", "soon"],
            "error: invalid value 'soon' for '--timeout <SECONDS>': invalid digit found in string",
        ),
        (
            &["trace", "open", "--max-args", "3"],
            "error: unexpected argument '--max-args' found",
        ),
        (
            &["trace", "exec", "--failed"],
            "error: unexpected argument '--failed' found",
        ),
        (
            &["trace", "exec", "--node-address", "unix:///n.sock", "--context", "prod"],
            "error: the argument '--node-address <[NAME=]ADDRESS>' cannot be used with '--context <NAME>'",
        ),
        (
            &["trace", "exec", "--node", "a", "--node-address", "unix:///n.sock"],
            "error: the argument '--node <NAME>' cannot be used with '--node-address <[NAME=]ADDRESS>'",
        ),
        (&["trace", "tcp"], "error: unrecognized subcommand 'tcp'"),
    ];
    for (args, first_line) in cases {
        let output = client(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(
            message.lines().next(),
            Some(*first_line),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn version_client_needs_no_cluster() {
    let output = client(&["version", "--client"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "Client Version: {} (protocol {})\n",
            env!("CARGO_PKG_VERSION"),
            gadget_proto::PROTOCOL_VERSION
        )
    );
}

#[test]
fn missing_kubeconfig_is_one_line() {
    let output = client(&["trace", "exec"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: cannot read the kubeconfig /nonexistent/kubeconfig: "),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: dev
    namespace: shop
current-context: fake
users:
- name: dev
  user:
    token: secret
"
        ),
    )
    .unwrap();
    path
}

#[test]
fn unknown_context_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:1");
    for args in [
        vec!["trace", "exec", "--context", "prod"],
        vec![
            "trace",
            "exec",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "prod",
        ],
    ] {
        let output = client_with_kubeconfig(&kubeconfig, &args);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            stderr(&output),
            "error: context \"prod\" is not in the kubeconfig\n",
            "{args:?}"
        );
    }
}

#[test]
fn unreachable_api_server_is_one_line() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"));
    let output = client_with_kubeconfig(&kubeconfig, &["trace", "exec"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "error: cannot reach the API server at http://127.0.0.1:{port}/: "
        )),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// A fake API server: answers each request whose path starts with a route's
/// prefix (the first such route) with that route's status and JSON body,
/// 404 otherwise.
struct FakeApi {
    url: String,
    /// The path of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// The path and body of every request with a body (applies, reviews).
    bodies: Arc<Mutex<Vec<(String, String)>>>,
}

/// What a [`FakeApi`] records of the requests it answers.
#[derive(Clone)]
struct Seen {
    paths: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<(String, String)>>>,
}

fn fake_api(routes: Vec<(&'static str, u16, String)>) -> FakeApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen {
        paths: Arc::new(Mutex::new(Vec::new())),
        bodies: Arc::new(Mutex::new(Vec::new())),
    };
    let api = FakeApi {
        url,
        requests: seen.paths.clone(),
        bodies: seen.bodies.clone(),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let routes = routes.clone();
            let seen = seen.clone();
            std::thread::spawn(move || answer(stream, &routes, &seen));
        }
    });
    api
}

fn answer(stream: TcpStream, routes: &[(&'static str, u16, String)], seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // Skip the headers, and the body of a POST.
        let mut body_len = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; body_len];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        seen.paths.lock().unwrap().push(path.clone());
        if !body.is_empty() {
            let body = String::from_utf8_lossy(&body).into_owned();
            seen.bodies.lock().unwrap().push((path.clone(), body));
        }
        let not_found = (
            "",
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#.to_string(),
        );
        let (_, code, body) = routes
            .iter()
            .find(|(prefix, _, _)| path.starts_with(prefix))
            .unwrap_or(&not_found);
        let mut stream = &stream;
        let response = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

const DAEMONSET_PATH: &str = "/apis/apps/v1/namespaces/kubectl-gadget/daemonsets/gadget-node";
const PODS_PATH: &str = "/api/v1/namespaces/kubectl-gadget/pods";

fn daemonset() -> (&'static str, u16, String) {
    (
        DAEMONSET_PATH,
        200,
        r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"gadget-node","namespace":"kubectl-gadget"}}"#
            .to_string(),
    )
}

fn pods(items: &[String]) -> (&'static str, u16, String) {
    (
        PODS_PATH,
        200,
        format!(
            r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        ),
    )
}

fn pending_pod(name: &str, node: &str, reason: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","namespace":"kubectl-gadget"}},
            "spec":{{"nodeName":"{node}","containers":[]}},
            "status":{{"phase":"Pending",
                "conditions":[{{"type":"Ready","status":"False"}}],
                "containerStatuses":[{{"name":"gadget-node","ready":false,"restartCount":0,
                    "image":"gadget-node","imageID":"",
                    "state":{{"waiting":{{"reason":"{reason}"}}}}}}]}}}}"#
    )
}

fn run_against(api: &FakeApi, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &api.url);
    client_with_kubeconfig(&kubeconfig, args)
}

#[test]
fn missing_daemonset_says_what_to_run() {
    let api = fake_api(vec![]);
    for args in [["trace", "exec"], ["trace", "open"]] {
        let output = run_against(&api, &args);
        assert_eq!(
            stderr(&output),
            "error: gadget-node is not deployed: run \"kubectl gadget deploy\"\n"
        );
        assert_eq!(output.status.code(), Some(1));
    }
    let output = run_against(&api, &["version"]);
    assert_eq!(
        stderr(&output),
        "error: gadget-node is not deployed: run \"kubectl gadget deploy\"\n"
    );
    assert!(stdout(&output).starts_with("Client Version: "));
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn daemonset_without_pods_says_what_to_run() {
    let api = fake_api(vec![daemonset(), pods(&[])]);
    let output = run_against(&api, &["trace", "exec"]);
    assert_eq!(
        stderr(&output),
        "error: gadget-node is not ready on any node (no gadget pod exists yet); \
         run \"kubectl gadget deploy --wait\" to see why\n"
    );
    assert_eq!(output.status.code(), Some(1));
    let requests = api.requests.lock().unwrap();
    assert!(
        requests.iter().any(|path| path.starts_with(PODS_PATH)
            && path.contains("labelSelector=app.kubernetes.io%2Fname%3Dgadget-node")),
        "{requests:?}"
    );
}

#[test]
fn daemonset_on_no_node_says_to_choose_nodes() {
    let daemonset = r#"{"apiVersion":"apps/v1","kind":"DaemonSet",
        "metadata":{"name":"gadget-node","namespace":"kubectl-gadget","generation":1},
        "status":{"observedGeneration":1,"desiredNumberScheduled":0,"currentNumberScheduled":0,
            "numberMisscheduled":0,"numberReady":0}}"#;
    let api = fake_api(vec![
        (DAEMONSET_PATH, 200, daemonset.to_string()),
        pods(&[]),
    ]);
    let output = run_against(&api, &["trace", "exec"]);
    assert_eq!(
        stderr(&output),
        "error: no node runs gadget-node: no Linux node matches its node selector; \
         run \"kubectl gadget deploy\" with a --node-selector that matches nodes\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn forbidden_says_who_cannot_do_what_on_one_line() {
    let message = r#"daemonsets.apps \"gadget-node\" is forbidden: User \"dev\" cannot get resource \"daemonsets\" in API group \"apps\" in the namespace \"kubectl-gadget\""#;
    let api = fake_api(vec![(
        DAEMONSET_PATH,
        403,
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}","reason":"Forbidden","code":403}}"#
        ),
    )]);
    let output = run_against(&api, &["trace", "exec"]);
    assert_eq!(
        stderr(&output),
        "error: forbidden: User \"dev\" cannot get resource \"daemonsets\" in API group \"apps\" \
         in the namespace \"kubectl-gadget\"; an admin can grant what tracing needs with \
         \"kubectl create rolebinding NAME --namespace kubectl-gadget --clusterrole \
         kubectl-gadget-tracer --user USER\"\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

/// Regression: a user allowed to find the gadget pods but not to open a
/// port-forward to them got a transport error per node ("403 Forbidden"
/// under two layers of wrapping), then a summary.
#[test]
fn forbidden_port_forward_is_one_line_naming_the_permission() {
    let ready_pod = r#"{"metadata":{"name":"gn-1","namespace":"kubectl-gadget"},
        "spec":{"nodeName":"node-1","containers":[]},
        "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    let review = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
        "spec":{"resourceAttributes":{"namespace":"kubectl-gadget","verb":"create",
            "resource":"pods","subresource":"portforward"}},
        "status":{"allowed":false}}"#;
    let api = fake_api(vec![
        daemonset(),
        pods(&[ready_pod.to_string()]),
        (
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            201,
            review.to_string(),
        ),
    ]);
    for command in [&["trace", "exec"][..], &["version"]] {
        let output = run_against(&api, command);
        assert_eq!(
            stderr(&output),
            "error: forbidden: this kubeconfig's user may not create pods/portforward in \
             namespace kubectl-gadget, which reaching gadget-node needs; an admin can grant \
             what tracing needs with \"kubectl create rolebinding NAME --namespace \
             kubectl-gadget --clusterrole kubectl-gadget-tracer --user USER\"\n",
            "{command:?}"
        );
        assert_eq!(output.status.code(), Some(1), "{command:?}");
    }
    // No port-forward was tried.
    assert!(!api
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|path| path.contains("portforward")));
}

#[test]
fn pods_that_are_not_ready_are_named() {
    let api = fake_api(vec![
        daemonset(),
        pods(&[pending_pod("gn-1", "node-1", "ImagePullBackOff")]),
    ]);
    let output = run_against(&api, &["trace", "exec"]);
    assert_eq!(
        stderr(&output),
        "error: gadget-node is not ready on any node (node-1: ImagePullBackOff); \
         run \"kubectl gadget deploy --wait\" to see why\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn unknown_node_names_are_listed() {
    let api = fake_api(vec![
        daemonset(),
        pods(&[pending_pod("gn-1", "node-1", "ContainerCreating")]),
    ]);
    let output = run_against(
        &api,
        &[
            "trace",
            "exec",
            "--node",
            "ghost,node-1",
            "--node",
            "phantom",
        ],
    );
    assert_eq!(
        stderr(&output),
        "error: no gadget-node pod on nodes: ghost, phantom; gadget-node runs on: node-1\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn deploy_print_only_needs_no_cluster() {
    let output = client(&["deploy", "--print-only"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("kind: DaemonSet"));
}

#[test]
fn deploy_and_undeploy_need_a_cluster() {
    for command in ["deploy", "undeploy"] {
        let output = client(&[command]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let message = stderr(&output);
        assert!(
            message.starts_with("error: cannot read the kubeconfig /nonexistent/kubeconfig: "),
            "{command}: {message}"
        );
        assert_eq!(message.lines().count(), 1, "{command}: {message}");

        let output = client(&[command, "--node-address", "unix:///n.sock"]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert_eq!(
            stderr(&output),
            format!("error: {command} works on the whole cluster: --node-address cannot be used with it\n")
        );
    }
}

/// The objects deploy applies, as a fake API server answers both the read
/// before the apply and the apply: made by deploy (its label), the
/// DaemonSet without a version label (deployed by an earlier version).
/// The namespace comes last: its path is a prefix of the others'.
fn deployed_objects() -> Vec<(&'static str, u16, String)> {
    let meta = |name: &str| {
        format!(
            r#""metadata":{{"name":"{name}","labels":{{"app.kubernetes.io/managed-by":"kubectl-gadget"}}}}"#
        )
    };
    vec![
        (
            "/api/v1/namespaces/kubectl-gadget/serviceaccounts/gadget-node",
            200,
            format!(
                r#"{{"apiVersion":"v1","kind":"ServiceAccount",{}}}"#,
                meta("gadget-node")
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/gadget-node",
            200,
            format!(
                r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",{}}}"#,
                meta("gadget-node")
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-gadget-tracer",
            200,
            format!(
                r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",{}}}"#,
                meta("kubectl-gadget-tracer")
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/gadget-node",
            200,
            format!(
                r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",{},
                    "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"gadget-node"}}}}"#,
                meta("gadget-node")
            ),
        ),
        (
            DAEMONSET_PATH,
            200,
            format!(
                r#"{{"apiVersion":"apps/v1","kind":"DaemonSet",{}}}"#,
                meta("gadget-node")
            ),
        ),
        (
            "/api/v1/namespaces/kubectl-gadget",
            200,
            format!(
                r#"{{"apiVersion":"v1","kind":"Namespace",{}}}"#,
                meta("kubectl-gadget")
            ),
        ),
    ]
}

const NODES_PATH: &str = "/api/v1/nodes";

/// The node list the API server returns, of (name, kernel version) pairs.
fn nodes(kernels: &[(&str, &str)]) -> (&'static str, u16, String) {
    let items: Vec<String> = kernels
        .iter()
        .map(|(name, kernel)| {
            format!(
                r#"{{"metadata":{{"name":"{name}"}},"status":{{"nodeInfo":{{
                    "kernelVersion":"{kernel}","architecture":"amd64","bootID":"",
                    "containerRuntimeVersion":"","kubeProxyVersion":"","kubeletVersion":"",
                    "machineID":"","operatingSystem":"linux","osImage":"","systemUUID":""}}}}}}"#
            )
        })
        .collect();
    (
        NODES_PATH,
        200,
        format!(
            r#"{{"apiVersion":"v1","kind":"NodeList","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        ),
    )
}

/// Runs `deploy` with `flags` against a fake API server with these nodes
/// and deploy's objects; returns its output, the capabilities the applied
/// DaemonSet adds and the node list requests.
fn deploy_on_nodes(kernels: &[(&str, &str)], flags: &[&str]) -> (Output, Vec<String>, Vec<String>) {
    let mut routes = vec![nodes(kernels)];
    routes.extend(deployed_objects());
    let api = fake_api(routes);
    let args: Vec<&str> = std::iter::once("deploy")
        .chain(flags.iter().copied())
        .collect();
    let output = run_against(&api, &args);
    let bodies = api.bodies.lock().unwrap();
    let applied: serde_json::Value = bodies
        .iter()
        .find(|(path, _)| path.starts_with(DAEMONSET_PATH))
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .unwrap_or_else(|| panic!("no DaemonSet applied: {}", stderr(&output)));
    let capabilities = applied["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        ["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let node_lists = api
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|path| path.starts_with(NODES_PATH))
        .cloned()
        .collect();
    (output, capabilities, node_lists)
}

#[test]
fn deploy_leaves_out_sys_resource_when_every_selected_node_runs_5_11_or_later() {
    let (output, capabilities, node_lists) = deploy_on_nodes(
        &[
            ("node-1", "6.18.44-fc-v657"),
            ("node-2", "5.15.0-100-generic"),
        ],
        &["--node-selector", "disktype=ssd"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = stdout(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("deploying gadget-node "), "{stdout}");
    assert_eq!(
        lines[1],
        "CAP_SYS_RESOURCE: not added: all 2 selected nodes run Linux 5.11 or later, which \
         charges BPF memory to the memory cgroup instead of RLIMIT_MEMLOCK"
    );
    assert_eq!(capabilities, ["BPF", "PERFMON"]);
    // Only the nodes the DaemonSet selects are read.
    assert_eq!(
        node_lists,
        ["/api/v1/nodes?&labelSelector=disktype%3Dssd%2Ckubernetes.io%2Fos%3Dlinux"]
    );
}

#[test]
fn deploy_adds_sys_resource_for_a_node_before_5_11() {
    let (output, capabilities, _) = deploy_on_nodes(
        &[
            ("node-1", "6.18.44-fc-v657"),
            ("old\\u001b[2J", "5.10.0-1057-aws"),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).lines().any(|line| line
            == "CAP_SYS_RESOURCE: added: node old\\x1b[2J runs Linux 5.10.0-1057-aws, and \
                before Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK"),
        "{}",
        stdout(&output)
    );
    assert_eq!(capabilities, ["BPF", "PERFMON", "SYS_RESOURCE"]);
}

/// KWOK nodes report no kernel version; a node may join the selector later.
#[test]
fn deploy_adds_sys_resource_when_it_cannot_tell() {
    for kernels in [&[("kwok-1", "")][..], &[]] {
        let (output, capabilities, _) = deploy_on_nodes(kernels, &[]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(
            stdout(&output)
                .lines()
                .any(|line| line.starts_with("CAP_SYS_RESOURCE: added: ")),
            "{}",
            stdout(&output)
        );
        assert_eq!(capabilities, ["BPF", "PERFMON", "SYS_RESOURCE"]);
    }
}

#[test]
fn deploy_without_the_right_to_list_nodes_is_one_line_and_changes_nothing() {
    let message = r#"nodes is forbidden: User \"dev\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"#;
    let mut routes = vec![(
        NODES_PATH,
        403,
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}","reason":"Forbidden","code":403}}"#
        ),
    )];
    routes.extend(deployed_objects());
    let api = fake_api(routes);
    let output = run_against(&api, &["deploy"]);
    assert_eq!(
        stderr(&output),
        "error: forbidden: User \"dev\" cannot list resource \"nodes\" in API group \"\" at \
         the cluster scope; deploy lists the nodes to read their kernel versions \
         (CAP_SYS_RESOURCE is only for nodes before Linux 5.11)\n"
    );
    assert_eq!(stdout(&output), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(api.bodies.lock().unwrap().is_empty(), "nothing is applied");
}
