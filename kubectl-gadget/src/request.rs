//! The second phase of parsing: raw flags ([`crate::cli`]) become a validated
//! [`Request`], without any I/O.
//!
//! Whatever can be known to be wrong from the command line alone is found
//! here, before the kubeconfig is read or a node is contacted: a bad label
//! selector, an unknown output column, a node address that is no address.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use gadget_trace::request::{check_dns_subdomain, NamespaceScope, TraceRequest, TraceRequestError};

use crate::cli::{Cli, Command, TargetArgs};
use crate::deploy::{DeployArgs, UndeployArgs};

/// What the command line asks for, validated.
// One per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Request {
    /// `trace <gadget>`.
    Trace {
        /// The nodes to run it on.
        nodes: NodeTargets,
        /// The trace.
        trace: TraceRequest,
    },
    /// `version`.
    Version(VersionRequest),
    /// `deploy`: its flags are validated by clap (see [`DeployArgs`]).
    Deploy {
        /// The cluster to deploy to.
        cluster: ClusterTarget,
        /// The deploy flags.
        args: DeployArgs,
    },
    /// `undeploy`.
    Undeploy {
        /// The cluster to remove gadget-node from.
        cluster: ClusterTarget,
        /// The undeploy flags.
        args: UndeployArgs,
    },
}

impl Request {
    /// Validates the parsed command line.
    pub fn from_cli(cli: Cli) -> Result<Request, RequestError> {
        let nodes = NodeTargets::from_args(&cli.targets)?;
        match cli.command {
            Command::Trace(command) => {
                let without_namespace = match nodes {
                    NodeTargets::Cluster(_) => NamespaceScope::ContextDefault,
                    // No kubeconfig, so no context namespace.
                    NodeTargets::Direct(_) => NamespaceScope::All,
                };
                let trace = TraceRequest::from_command(command, without_namespace)?;
                Ok(Request::Trace { nodes, trace })
            }
            Command::Version(args) => Ok(Request::Version(VersionRequest {
                client_only: args.client,
                nodes,
            })),
            Command::Deploy(args) => Ok(Request::Deploy {
                cluster: whole_cluster("deploy", nodes)?,
                args,
            }),
            Command::Undeploy(args) => Ok(Request::Undeploy {
                cluster: whole_cluster("undeploy", nodes)?,
                args,
            }),
        }
    }
}

/// The cluster of a command that works on every node: `--node-address` and
/// `--node` make no sense there.
fn whole_cluster(command: &'static str, nodes: NodeTargets) -> Result<ClusterTarget, RequestError> {
    match nodes {
        NodeTargets::Cluster(cluster) if cluster.nodes.is_empty() => Ok(cluster),
        NodeTargets::Cluster(_) => Err(RequestError::ClusterOnly {
            command,
            flag: "--node",
        }),
        NodeTargets::Direct(_) => Err(RequestError::ClusterOnly {
            command,
            flag: "--node-address",
        }),
    }
}

/// The `version` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRequest {
    /// Print only the client's version.
    pub client_only: bool,
    /// The nodes to ask for theirs.
    pub nodes: NodeTargets,
}

/// The nodes a command talks to, and how they are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTargets {
    /// The gadget-node pods of the kubeconfig's cluster.
    Cluster(ClusterTarget),
    /// gadget-node processes at these addresses (`--node-address`).
    Direct(Vec<NodeAddress>),
}

impl NodeTargets {
    fn from_args(args: &TargetArgs) -> Result<NodeTargets, RequestError> {
        if !args.node_addresses.is_empty() {
            let addresses = args
                .node_addresses
                .iter()
                .map(|text| text.parse())
                .collect::<Result<_, _>>()?;
            return Ok(NodeTargets::Direct(addresses));
        }
        let mut nodes = Vec::with_capacity(args.nodes.len());
        for node in &args.nodes {
            check_dns_subdomain("node name", node)?;
            if !nodes.contains(node) {
                nodes.push(node.clone());
            }
        }
        Ok(NodeTargets::Cluster(ClusterTarget {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            nodes,
        }))
    }
}

/// A cluster and the nodes wanted in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTarget {
    /// `--kubeconfig`; `None` for kubectl's default.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; `None` for the kubeconfig's current context.
    pub context: Option<String>,
    /// `--node`, without duplicates; empty for every node.
    pub nodes: Vec<String>,
}

/// A `--node-address`: where a gadget-node listens, and the name to show
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// The name given with `NAME=ADDRESS`; `None` to use the name the node
    /// reports.
    pub name: Option<String>,
    /// Where it listens.
    pub endpoint: NodeEndpoint,
}

/// Where a gadget-node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEndpoint {
    /// A unix socket (`unix:///path`).
    Unix(PathBuf),
    /// A TCP address (`tcp://host:port`); `host` keeps the brackets of an
    /// IPv6 address.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for NodeEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeEndpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            NodeEndpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl FromStr for NodeAddress {
    type Err = RequestError;

    fn from_str(text: &str) -> Result<NodeAddress, RequestError> {
        let bad = |problem: &'static str| RequestError::NodeAddress {
            address: text.to_string(),
            problem,
        };
        // A name cannot contain "://", so an address that starts with a
        // scheme is unnamed even when its path contains '='.
        let (name, address) = if text.starts_with("unix://") || text.starts_with("tcp://") {
            (None, text)
        } else {
            match text.split_once('=') {
                Some(("", _)) => return Err(bad("the name before '=' is empty")),
                Some((name, address)) => (Some(name.to_string()), address),
                None => (None, text),
            }
        };
        let endpoint = if let Some(path) = address.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a unix socket path must be absolute, as in unix:///run/gadget/node.sock",
                ));
            }
            NodeEndpoint::Unix(PathBuf::from(path))
        } else if let Some(host_port) = address.strip_prefix("tcp://") {
            let (host, port) = host_port
                .rsplit_once(':')
                .ok_or_else(|| bad("expected tcp://HOST:PORT"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
            // A host the client can put in a URI and dial: an IPv6
            // address in brackets, else an IPv4 address or a DNS name.
            let dialable = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => {
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                }
            };
            if port == 0 || !dialable {
                return Err(bad(
                    "expected tcp://HOST:PORT with a port from 1 to 65535 (an IPv6 host in brackets)",
                ));
            }
            NodeEndpoint::Tcp {
                host: host.to_string(),
                port,
            }
        } else {
            return Err(bad(
                "use unix:///PATH or tcp://HOST:PORT, optionally as NAME=ADDRESS",
            ));
        };
        Ok(NodeAddress { name, endpoint })
    }
}

/// A command line that parses but asks for something that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A trace's flags (or a `--node` name, checked by the same rules).
    #[error(transparent)]
    Trace(#[from] TraceRequestError),
    /// A `--node-address` that is not an address.
    #[error("invalid --node-address {address:?}: {problem}")]
    NodeAddress {
        /// The value as given.
        address: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A flag that chooses nodes, given to a command for the whole cluster.
    #[error("{command} works on the whole cluster: {flag} cannot be used with it")]
    ClusterOnly {
        /// The command.
        command: &'static str,
        /// The flag.
        flag: &'static str,
    },
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use clap::Parser;
    use gadget_proto::v1::{self, run_gadget_request};
    use gadget_proto::PROTOCOL_VERSION;
    use gadget_trace::gadgets::{trace_exec, trace_open};
    use gadget_trace::render::OutputFormat;
    use std::ffi::OsString;

    fn request(args: &[&str]) -> Result<Request, RequestError> {
        let cli =
            Cli::try_parse_from(std::iter::once("kubectl-gadget").chain(args.iter().copied()))
                .unwrap_or_else(|err| panic!("{args:?} should parse: {err}"));
        Request::from_cli(cli)
    }

    /// The nodes and the trace of a `trace` command line.
    fn nodes_and_trace(args: &[&str]) -> (NodeTargets, TraceRequest) {
        match request(args) {
            Ok(Request::Trace { nodes, trace }) => (nodes, trace),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn trace(args: &[&str]) -> TraceRequest {
        nodes_and_trace(args).1
    }

    fn error(args: &[&str]) -> String {
        match request(args) {
            Err(err) => err.to_string(),
            Ok(request) => panic!("{args:?} should be refused: {request:?}"),
        }
    }

    fn selector(trace: &TraceRequest) -> v1::ContainerSelector {
        trace.run_request(Some("ctx-ns")).selector.unwrap()
    }

    fn exec_params(trace: &TraceRequest) -> v1::ExecParams {
        match trace.run_request(None).params {
            Some(run_gadget_request::Params::Exec(params)) => params,
            other => panic!("{other:?}"),
        }
    }

    fn open_params(trace: &TraceRequest) -> v1::OpenParams {
        match trace.run_request(None).params {
            Some(run_gadget_request::Params::Open(params)) => params,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_of_a_trace() {
        let (nodes, trace) = nodes_and_trace(&["trace", "exec"]);
        assert_eq!(trace.gadget, trace_exec::GADGET);
        assert_eq!(nodes, NodeTargets::Cluster(ClusterTarget::default()));
        assert_eq!(trace.namespaces, NamespaceScope::ContextDefault);
        assert_eq!(
            trace.output,
            OutputFormat::parse(trace_exec::GADGET, "columns").unwrap()
        );
        let run = trace.run_request(Some("ctx-ns"));
        assert_eq!(run.protocol_version, PROTOCOL_VERSION);
        assert_eq!(run.gadget, "trace_exec");
        assert_eq!(
            run.selector,
            Some(v1::ContainerSelector {
                namespaces: vec!["ctx-ns".into()],
                ..Default::default()
            })
        );
        assert_eq!(run.filter, Some(v1::ProcessFilter::default()));
        assert_eq!(run.timeout_seconds, 0);
        assert_eq!(run.ring_buffer_bytes, 0);
        assert_eq!(exec_params(&trace), v1::ExecParams::default());
    }

    #[test]
    fn trace_open_is_the_open_gadget() {
        let trace = trace(&["trace", "open"]);
        assert_eq!(trace.gadget, trace_open::GADGET);
        assert_eq!(trace.run_request(None).gadget, "trace_open");
        assert_eq!(open_params(&trace), v1::OpenParams::default());
    }

    #[test]
    fn namespace_defaults_to_the_context_then_default() {
        let trace = trace(&["trace", "open"]);
        assert_eq!(selector(&trace).namespaces, ["ctx-ns"]);
        let run = trace.run_request(None);
        assert_eq!(run.selector.unwrap().namespaces, ["default"]);
        let run = trace.run_request(Some(""));
        assert_eq!(run.selector.unwrap().namespaces, ["default"]);
    }

    #[test]
    fn namespace_flag() {
        for flag in ["-n", "--namespace"] {
            let trace = trace(&["trace", "open", flag, "kube-system"]);
            assert_eq!(trace.namespaces, NamespaceScope::Only("kube-system".into()));
            assert_eq!(selector(&trace).namespaces, ["kube-system"]);
        }
        assert_eq!(
            error(&["trace", "open", "-n", "Kube_System"]),
            "invalid namespace \"Kube_System\": only lower-case letters, digits and '-' are allowed"
        );
    }

    #[test]
    fn all_namespaces_flag() {
        for flag in ["-A", "--all-namespaces"] {
            let trace = trace(&["trace", "open", flag]);
            assert_eq!(trace.namespaces, NamespaceScope::All);
            assert!(selector(&trace).namespaces.is_empty());
        }
    }

    #[test]
    fn all_namespaces_conflicts_with_namespace() {
        let err =
            Cli::try_parse_from(["kubectl-gadget", "trace", "open", "-A", "-n", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn direct_mode_traces_every_namespace_unless_n_is_given() {
        let unfiltered = trace(&["trace", "open", "--node-address", "unix:///run/n.sock"]);
        assert_eq!(unfiltered.namespaces, NamespaceScope::All);
        assert!(selector(&unfiltered).namespaces.is_empty());
        let filtered = trace(&[
            "trace",
            "open",
            "--node-address",
            "unix:///run/n.sock",
            "-n",
            "web",
        ]);
        assert_eq!(selector(&filtered).namespaces, ["web"]);
    }

    #[test]
    fn podname_flag() {
        for flag in ["-p", "--podname"] {
            let trace = trace(&["trace", "exec", flag, "web-7d9f-x2x"]);
            assert_eq!(selector(&trace).pod_name, "web-7d9f-x2x");
        }
        assert!(error(&["trace", "exec", "-p", "Web"]).starts_with("invalid pod name \"Web\""));
    }

    #[test]
    fn containername_flag() {
        for flag in ["-c", "--containername"] {
            let trace = trace(&["trace", "exec", flag, "nginx"]);
            assert_eq!(selector(&trace).container_name, "nginx");
        }
        assert_eq!(
            error(&["trace", "exec", "--containername=-nginx-"]),
            "invalid container name \"-nginx-\": it must start and end with a letter or digit"
        );
    }

    #[test]
    fn selector_flag_is_sent_in_canonical_form() {
        for flag in ["-l", "--selector"] {
            let trace = trace(&["trace", "exec", flag, "tier!=db, app in (web,api)"]);
            assert_eq!(selector(&trace).label_selector, "app in (api,web),tier!=db");
        }
    }

    #[test]
    fn bad_selector_is_refused_with_the_parsers_message() {
        let message = error(&["trace", "exec", "-l", "app in (web"]);
        assert_eq!(
            message,
            "invalid label selector \"app in (web\": missing ')'"
        );
    }

    #[test]
    fn host_flag() {
        assert!(!selector(&trace(&["trace", "exec"])).include_host);
        assert!(selector(&trace(&["trace", "exec", "--host"])).include_host);
    }

    #[test]
    fn pid_and_uid_flags() {
        let run = trace(&["trace", "exec", "--pid", "42", "--uid", "0"]).run_request(None);
        assert_eq!(
            run.filter,
            Some(v1::ProcessFilter {
                pid: Some(42),
                uid: Some(0)
            })
        );
        assert_eq!(
            error(&["trace", "exec", "--pid", "0"]),
            "invalid --pid 0: process ids start at 1"
        );
    }

    #[test]
    fn timeout_flag() {
        for flag in ["-t", "--timeout"] {
            let trace = trace(&["trace", "exec", flag, "30"]);
            assert_eq!(trace.run_request(None).timeout_seconds, 30);
            assert_eq!(trace.timeout_seconds(), 30);
        }
    }

    #[test]
    fn output_flag() {
        for flag in ["-o", "--output"] {
            let trace = trace(&["trace", "open", flag, "json"]);
            assert_eq!(trace.output, OutputFormat::Json);
        }
        assert_eq!(
            trace(&["trace", "open", "-o", "compact"]).output,
            OutputFormat::Compact
        );
        assert_eq!(
            trace(&["trace", "open", "-o", "columns=pid,path"]).output,
            OutputFormat::parse(trace_open::GADGET, "columns=pid,path").unwrap()
        );
    }

    #[test]
    fn output_columns_are_checked_against_the_gadget() {
        let message = error(&["trace", "exec", "-o", "columns=pid,path"]);
        assert!(
            message.starts_with("invalid --output: unknown column \"path\" for trace_exec;"),
            "{message}"
        );
        assert_eq!(
            error(&["trace", "exec", "-o", "yaml"]),
            "invalid --output: unknown output format \"yaml\"; use columns, columns=<name,...>, json or compact"
        );
    }

    #[test]
    fn ring_buffer_size_flag() {
        let size = |text: &str| {
            trace(&["trace", "open", "--ring-buffer-size", text])
                .run_request(None)
                .ring_buffer_bytes
        };
        assert_eq!(size("4096"), 4096);
        assert_eq!(size("512K"), 512 * 1024);
        assert_eq!(size("16M"), 16 << 20);
        assert_eq!(size("16MiB"), 16 << 20);
        assert_eq!(size("1Ki"), 1024);
        for bad in ["0", "4096M", "", "1G", "-1", "1.5M", "M"] {
            let message = error(&["trace", "open", &format!("--ring-buffer-size={bad}")]);
            assert!(
                message.starts_with(&format!("invalid --ring-buffer-size {bad:?}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn failed_flag() {
        assert!(open_params(&trace(&["trace", "open", "--failed"])).failed_only);
    }

    #[test]
    fn prefix_flag_is_repeatable_and_takes_any_bytes() {
        use std::os::unix::ffi::OsStringExt as _;
        let cli = Cli::try_parse_from([
            OsString::from("kubectl-gadget"),
            "trace".into(),
            "open".into(),
            "--prefix".into(),
            "/etc/".into(),
            "--prefix".into(),
            OsString::from_vec(b"/tmp/\xff".to_vec()),
        ])
        .unwrap();
        let Ok(Request::Trace { trace, .. }) = Request::from_cli(cli) else {
            panic!("should be a trace");
        };
        assert_eq!(
            open_params(&trace).path_prefixes,
            [
                Bytes::from_static(b"/etc/"),
                Bytes::from_static(b"/tmp/\xff")
            ]
        );
        assert_eq!(
            error(&["trace", "open", "--prefix", ""]),
            "invalid --prefix \"\": an empty prefix would match every path; leave --prefix out instead"
        );
    }

    #[test]
    fn ignore_failed_flag() {
        assert!(exec_params(&trace(&["trace", "exec", "--ignore-failed"])).ignore_failed);
    }

    #[test]
    fn max_args_flags() {
        let params = exec_params(&trace(&[
            "trace",
            "exec",
            "--max-args",
            "5",
            "--max-args-bytes",
            "1024",
        ]));
        assert_eq!((params.max_args, params.max_args_bytes), (5, 1024));
        assert_eq!(
            error(&["trace", "exec", "--max-args", "0"]),
            "invalid --max-args 0: it must be at least 1 (leave it out for the node's default)"
        );
        assert!(error(&["trace", "exec", "--max-args-bytes", "0"])
            .starts_with("invalid --max-args-bytes 0"));
    }

    /// Found by `what_the_front_end_sends_the_node_takes`: limits above the
    /// kernel's were sent, and refused by every node.
    #[test]
    fn max_args_above_the_kernels_are_refused_before_any_node_is_asked() {
        assert_eq!(
            error(&["trace", "exec", "--max-args", "1025"]),
            "invalid --max-args 1025: at most 1024 are kept by the kernel"
        );
        assert_eq!(
            error(&["trace", "exec", "--max-args-bytes", "32769"]),
            "invalid --max-args-bytes 32769: at most 32768 are kept by the kernel"
        );
        let params = exec_params(&trace(&[
            "trace",
            "exec",
            "--max-args=1024",
            "--max-args-bytes=32768",
        ]));
        assert_eq!((params.max_args, params.max_args_bytes), (1024, 32768));
    }

    #[test]
    fn gadget_flags_belong_to_their_gadget() {
        for args in [
            ["trace", "exec", "--failed"],
            ["trace", "open", "--ignore-failed"],
        ] {
            let err =
                Cli::try_parse_from(std::iter::once("kubectl-gadget").chain(args)).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        }
    }

    #[test]
    fn kubeconfig_and_context_flags() {
        let (nodes, _) = nodes_and_trace(&[
            "--kubeconfig",
            "/tmp/kc",
            "trace",
            "exec",
            "--context",
            "prod",
        ]);
        assert_eq!(
            nodes,
            NodeTargets::Cluster(ClusterTarget {
                kubeconfig: Some("/tmp/kc".into()),
                context: Some("prod".into()),
                nodes: vec![],
            })
        );
    }

    #[test]
    fn node_flag_is_repeatable_and_comma_separated() {
        let (nodes, _) = nodes_and_trace(&[
            "trace", "exec", "--node", "a,b", "--node", "c", "--node", "a",
        ]);
        let NodeTargets::Cluster(cluster) = nodes else {
            panic!("cluster mode");
        };
        assert_eq!(cluster.nodes, ["a", "b", "c"]);
        assert_eq!(
            error(&["trace", "exec", "--node", "a,,b"]),
            "invalid node name \"\": it is empty"
        );
    }

    #[test]
    fn node_address_flag() {
        let (nodes, _) = nodes_and_trace(&[
            "trace",
            "exec",
            "--node-address",
            "unix:///run/gadget/node.sock",
            "--node-address",
            "worker-2=tcp://127.0.0.1:7100",
            "--node-address",
            "tcp://[::1]:7101",
        ]);
        assert_eq!(
            nodes,
            NodeTargets::Direct(vec![
                NodeAddress {
                    name: None,
                    endpoint: NodeEndpoint::Unix("/run/gadget/node.sock".into()),
                },
                NodeAddress {
                    name: Some("worker-2".into()),
                    endpoint: NodeEndpoint::Tcp {
                        host: "127.0.0.1".into(),
                        port: 7100
                    },
                },
                NodeAddress {
                    name: None,
                    endpoint: NodeEndpoint::Tcp {
                        host: "[::1]".into(),
                        port: 7101
                    },
                },
            ])
        );
    }

    #[test]
    fn node_address_with_equals_in_its_path_has_no_name() {
        let address: NodeAddress = "unix:///tmp/a=b.sock".parse().unwrap();
        assert_eq!(address.name, None);
        assert_eq!(address.endpoint.to_string(), "unix:///tmp/a=b.sock");
    }

    #[test]
    fn bad_node_addresses() {
        for bad in [
            "127.0.0.1:7100",
            "http://127.0.0.1:7100",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:99999",
            "tcp://:7100",
            "tcp://::1:7100",
            "unix://relative.sock",
            "unix://",
            "=unix:///x.sock",
        ] {
            let message = error(&["version", "--node-address", bad]);
            assert!(
                message.starts_with(&format!("invalid --node-address {bad:?}: ")),
                "{message}"
            );
        }
    }

    /// Found by `anything_reads_back_or_is_refused_in_one_line`: hosts
    /// that make no URI (`%`, a space, an escape sequence, empty brackets)
    /// were accepted, to fail only when dialed.
    #[test]
    fn hosts_that_cannot_be_dialed_are_refused() {
        for bad in [
            "tcp://%:1",
            "tcp://a b:7100",
            "tcp://\x1b[2J:7100",
            "tcp://[]:7100",
            "tcp://[node-1]:7100",
            "tcp://[::1:7100",
        ] {
            let message = error(&["version", "--node-address", bad]);
            assert!(
                message.starts_with(&format!("invalid --node-address {bad:?}: ")),
                "{message}"
            );
        }
        for good in ["tcp://node-1.example_x:7100", "tcp://[fe80::1]:7100"] {
            assert!(good.parse::<NodeAddress>().is_ok(), "{good}");
        }
    }

    #[test]
    fn node_address_conflicts_with_cluster_flags() {
        for flag in [["--context", "x"], ["--kubeconfig", "x"], ["--node", "x"]] {
            let args = ["kubectl-gadget", "version", "--node-address", "unix:///x"];
            let err = Cli::try_parse_from(args.into_iter().chain(flag)).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }

    #[test]
    fn version_flags() {
        let Ok(Request::Version(version)) = request(&["version"]) else {
            panic!("version");
        };
        assert_eq!(
            version,
            VersionRequest {
                client_only: false,
                nodes: NodeTargets::Cluster(ClusterTarget::default()),
            }
        );
        let Ok(Request::Version(version)) = request(&["version", "--client"]) else {
            panic!("version");
        };
        assert!(version.client_only);
    }

    #[test]
    fn deploy_and_undeploy_take_the_cluster_flags() {
        let Ok(Request::Deploy { cluster, .. }) = request(&["deploy", "--context", "prod"]) else {
            panic!("deploy");
        };
        assert_eq!(cluster.context.as_deref(), Some("prod"));
        let Ok(Request::Undeploy { cluster, .. }) =
            request(&["--kubeconfig", "/tmp/kc", "undeploy"])
        else {
            panic!("undeploy");
        };
        assert_eq!(cluster.kubeconfig, Some(PathBuf::from("/tmp/kc")));
    }

    #[test]
    fn deploy_and_undeploy_refuse_node_flags() {
        assert_eq!(
            error(&["deploy", "--node-address", "unix:///n.sock"]),
            "deploy works on the whole cluster: --node-address cannot be used with it"
        );
        assert_eq!(
            error(&["undeploy", "--node", "worker-1"]),
            "undeploy works on the whole cluster: --node cannot be used with it"
        );
    }
}
