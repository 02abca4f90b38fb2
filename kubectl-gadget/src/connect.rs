//! Reaching the nodes: finding the gadget-node pods of a cluster, opening a
//! gRPC channel to each (through the API server's pod port-forward, or
//! directly to a unix socket or TCP address), and the handshake that checks
//! each node's protocol version.
//!
//! Cluster-wide problems (no kubeconfig, API server unreachable, gadget-node
//! not deployed) are a [`ConnectError`] and end the command; the problems of
//! one node are a [`NodeError`] that fails that node only.

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gadget_proto::v1::gadget_node_client::GadgetNodeClient;
use gadget_proto::v1::{NodeInfoRequest, NodeInfoResponse};
use gadget_proto::ProtocolMismatch;
use gadget_trace::error_line::{error_chain, status_message};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Config};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api_error::ApiError;
use crate::manifests::{
    GRPC_PORT, NAMESPACE, NODE_AGENT, POD_SELECTOR, TRACE_USER_ROLE, VERSION_LABEL,
};
use crate::pod_status::{is_pod_ready, pod_state, target_node, RolloutStatus};
use crate::request::{ClusterTarget, NodeAddress, NodeEndpoint, NodeTargets};

/// How long to wait for a node to accept a connection and answer NodeInfo;
/// a port-forward through the API server and the kubelet takes a few round
/// trips.
pub const NODE_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest message accepted from a node. An event batch holds up to a ring
/// buffer drain of events with their arguments (up to 32 KiB per exec), so
/// tonic's 4 MiB default is too small for a busy node.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How often the client pings each node's HTTP/2 connection, and how long
/// it waits for the answer. A trace's stream is quiet in the client's
/// direction, and a port-forward does not always end when the node behind
/// it dies (KWOK's keeps the stream open until the client writes): without
/// pings, a node killed mid-trace would be noticed only when the trace's
/// timeout had long passed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// tonic needs a URI for requests even when the connector ignores it.
const PLACEHOLDER_URI: &str = "http://[::]:50051";

/// A connection to a Kubernetes cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The API client.
    pub client: kube::Client,
    /// The API server's URL, for messages.
    pub server: String,
}

/// A problem that stops a command before any node is contacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig cannot be read or used.
    #[error("{0}")]
    Kubeconfig(String),
    /// The API server refused or could not be reached.
    #[error("{0}")]
    Api(String),
    /// No gadget-node DaemonSet.
    #[error("gadget-node is not deployed: run \"kubectl gadget deploy\"")]
    NotDeployed,
    /// The DaemonSet exists, but no node matches its node selector.
    #[error(
        "no node runs gadget-node: no Linux node matches its node selector; \
         run \"kubectl gadget deploy\" with a --node-selector that matches nodes"
    )]
    NoNodes,
    /// `--node` names nodes that have no gadget-node pod.
    #[error("no gadget-node pod on {}: {}; gadget-node runs on: {}", plural(.unknown.len(), "node", "nodes"), .unknown.join(", "), if .known.is_empty() { "no node".to_string() } else { .known.join(", ") })]
    UnknownNodes {
        /// The names given that have no pod.
        unknown: Vec<String>,
        /// The nodes that have one.
        known: Vec<String>,
    },
    /// RBAC does not let this user open a port-forward to the gadget pods,
    /// which is how every node is reached.
    #[error(
        "forbidden: this kubeconfig's user may not create pods/portforward in namespace {NAMESPACE}, \
         which reaching gadget-node needs; {hint}",
        hint = grant_hint()
    )]
    PortForwardForbidden,
    /// There are gadget-node pods, but none is ready: `node: state` of each.
    #[error("gadget-node is not ready on any node ({}); run {DEPLOY_WAIT} to see why", .0.join(", "))]
    NoneReady(Vec<String>),
}

/// A problem with one node; the command goes on with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// Its gadget-node pod is not ready, or not scheduled.
    #[error("{0}")]
    NotReady(String),
    /// The connection could not be opened.
    #[error("cannot connect to gadget-node at {address}: {reason}")]
    Connect {
        /// Where it was tried.
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("gadget-node at {address} did not answer within {} seconds", .timeout.as_secs())]
    Timeout {
        /// Where it was tried.
        address: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// NodeInfo failed.
    #[error("node info: {0}")]
    Info(String),
    /// The node speaks another protocol version.
    #[error(transparent)]
    Protocol(#[from] ProtocolMismatch),
    /// The node says it cannot run the gadget.
    #[error("{gadget} is not available on this node: {reason}")]
    GadgetUnavailable {
        /// The gadget.
        gadget: String,
        /// The node's reason.
        reason: String,
    },
}

/// A node to contact.
#[derive(Debug, Clone)]
pub struct NodeTarget {
    label: String,
    /// Whether `label` is the name to show (a Kubernetes node name or one
    /// given with `NAME=ADDRESS`) rather than a stand-in until the node
    /// says its name.
    named: bool,
    dial: Dial,
}

#[derive(Clone)]
enum Dial {
    PortForward {
        pods: Box<Api<Pod>>,
        pod: String,
    },
    Unix(PathBuf),
    Tcp(String),
    /// Known to fail, e.g. a pod that is not ready.
    Unusable(NodeError),
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dial::PortForward { pod, .. } => write!(f, "PortForward({pod})"),
            Dial::Unix(path) => write!(f, "Unix({})", path.display()),
            Dial::Tcp(uri) => write!(f, "Tcp({uri})"),
            Dial::Unusable(err) => write!(f, "Unusable({err})"),
        }
    }
}

/// The nodes to contact, and the kubeconfig context's namespace when a
/// kubeconfig was read.
#[derive(Debug)]
pub struct Targets {
    /// One per node, in a stable order.
    pub nodes: Vec<NodeTarget>,
    /// The namespace of the kubeconfig context, for `-n`'s default.
    pub context_namespace: Option<String>,
    /// The version deploy recorded on the gadget-node DaemonSet, when the
    /// nodes were found through a cluster and it has one.
    pub deployed_version: Option<String>,
}

/// What [`discover`] found: the nodes, and the deployed version.
#[derive(Debug)]
pub struct Deployment {
    /// One per node, in a stable order.
    pub nodes: Vec<NodeTarget>,
    /// The DaemonSet's version label, if it has one.
    pub version: Option<String>,
}

/// Finds the nodes to contact: the gadget-node pods of the cluster, or the
/// `--node-address`es.
pub async fn resolve_targets(targets: &NodeTargets) -> Result<Targets, ConnectError> {
    match targets {
        NodeTargets::Direct(addresses) => Ok(Targets {
            nodes: addresses.iter().map(NodeTarget::direct).collect(),
            context_namespace: None,
            deployed_version: None,
        }),
        NodeTargets::Cluster(cluster_target) => {
            let cluster = cluster_client(cluster_target).await?;
            let deployment = discover(&cluster, &cluster_target.nodes).await?;
            Ok(Targets {
                nodes: deployment.nodes,
                context_namespace: Some(cluster.client.default_namespace().to_string()),
                deployed_version: deployment.version,
            })
        }
    }
}

/// Builds a client for the cluster of the kubeconfig (or, with neither
/// `--kubeconfig` nor `--context`, of the pod this runs in when there is no
/// kubeconfig).
pub async fn cluster_client(target: &ClusterTarget) -> Result<Cluster, ConnectError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|err| kubeconfig_error(&err))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| kubeconfig_error(&err))?
        }
        None if target.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|err| kubeconfig_error(&err))?,
        None => Config::infer().await.map_err(|err| {
            // Without a kubeconfig, kube also tries the in-cluster service
            // account; the kubeconfig's problem is the one users can fix.
            match err
                .source()
                .and_then(|source| source.downcast_ref::<KubeconfigError>())
            {
                Some(kubeconfig) => kubeconfig_error(kubeconfig),
                None => ConnectError::Kubeconfig(error_chain(&err)),
            }
        })?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|err| {
        ConnectError::Kubeconfig(format!(
            "cannot make a client for {server}: {}",
            error_chain(&err)
        ))
    })?;
    Ok(Cluster { client, server })
}

/// What to run to see why gadget pods are not ready.
const DEPLOY_WAIT: &str = "\"kubectl gadget deploy --wait\"";

/// How a user gets what tracing needs, for the forbidden errors.
fn grant_hint() -> String {
    format!(
        "an admin can grant what tracing needs with \"kubectl create rolebinding NAME \
         --namespace {NAMESPACE} --clusterrole {TRACE_USER_ROLE} --user USER\""
    )
}

/// The check every command that talks to the nodes makes first: is
/// gadget-node deployed, and ready on the nodes asked for? Finds the
/// gadget-node pod of every node (or of the `nodes` named), and fails with
/// what to run when gadget-node is not deployed, runs on no node, or is
/// ready on none.
///
/// Pods that are not ready become targets that fail with the pod's state, so
/// that the command reports them and goes on with the others.
pub async fn discover(cluster: &Cluster, nodes: &[String]) -> Result<Deployment, ConnectError> {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let daemon_set = daemon_sets
        .get_opt(NODE_AGENT)
        .await
        .map_err(|err| discovery_error(&cluster.server, "get daemonset gadget-node", &err))?
        .ok_or(ConnectError::NotDeployed)?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .map_err(|err| discovery_error(&cluster.server, "list the gadget pods", &err))?;
    let rollout = RolloutStatus::of(&daemon_set);
    if list.items.is_empty() {
        return Err(if rollout.observed && rollout.desired == 0 {
            ConnectError::NoNodes
        } else {
            ConnectError::NoneReady(vec!["no gadget pod exists yet".to_string()])
        });
    }
    let found = pods_by_node(&list.items);
    let selected = select_nodes(&found, nodes)?;
    check_port_forward_allowed(cluster).await?;
    let nodes = selected
        .into_iter()
        .map(|pod| NodeTarget {
            label: pod.node.clone(),
            named: true,
            dial: match pod.not_ready_error() {
                Some(err) => Dial::Unusable(err),
                None => Dial::PortForward {
                    pods: Box::new(pods.clone()),
                    pod: pod.pod.clone(),
                },
            },
        })
        .collect();
    Ok(Deployment {
        nodes,
        version: daemon_set
            .metadata
            .labels
            .and_then(|labels| labels.get(VERSION_LABEL).cloned()),
    })
}

/// Asks the API server whether this user may open the port-forwards every
/// node is reached by, so that a user without the right gets one line
/// saying so instead of one failure per node. When the question itself
/// cannot be asked (an API server without the authorization API), the
/// port-forwards will tell.
async fn check_port_forward_allowed(cluster: &Cluster) -> Result<(), ConnectError> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(NAMESPACE.to_string()),
                verb: Some("create".to_string()),
                resource: Some("pods".to_string()),
                subresource: Some("portforward".to_string()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    match reviews.create(&PostParams::default(), &review).await {
        Ok(answer) => port_forward_verdict(answer.status.as_ref()),
        Err(_) => Ok(()),
    }
}

/// The answer of the access review of `create pods/portforward`: refused
/// when the API server says it is not allowed (RBAC says so by having no
/// rule that allows it), not when there is no answer.
fn port_forward_verdict(status: Option<&SubjectAccessReviewStatus>) -> Result<(), ConnectError> {
    match status {
        Some(status) if !status.allowed => Err(ConnectError::PortForwardForbidden),
        _ => Ok(()),
    }
}

/// The pods of the `nodes` asked for (all when none is named); fails when a
/// node named has no gadget pod, or when none of the pods is ready.
fn select_nodes<'a>(
    found: &'a [NodePod],
    nodes: &[String],
) -> Result<Vec<&'a NodePod>, ConnectError> {
    let unknown: Vec<String> = nodes
        .iter()
        .filter(|node| !found.iter().any(|pod| &pod.node == *node))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ConnectError::UnknownNodes {
            unknown,
            known: found
                .iter()
                .filter(|pod| pod.scheduled)
                .map(|pod| pod.node.clone())
                .collect(),
        });
    }
    let selected: Vec<&NodePod> = found
        .iter()
        .filter(|pod| nodes.is_empty() || nodes.contains(&pod.node))
        .collect();
    if selected.iter().all(|pod| pod.not_ready.is_some()) {
        return Err(ConnectError::NoneReady(
            selected
                .iter()
                .filter_map(|pod| Some(format!("{}: {}", pod.node, pod.not_ready.as_ref()?)))
                .collect(),
        ));
    }
    Ok(selected)
}

/// The pod chosen for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodePod {
    /// The node it runs on or is meant for, or `pod/NAME` for a pod that
    /// names no node.
    node: String,
    scheduled: bool,
    pod: String,
    /// The pod's state (see [`pod_state`]) when it is not ready.
    not_ready: Option<String>,
}

impl NodePod {
    /// What a command says for this node when its pod is not ready.
    fn not_ready_error(&self) -> Option<NodeError> {
        let state = self.not_ready.as_ref()?;
        Some(NodeError::NotReady(format!(
            "gadget-node pod {NAMESPACE}/{} is not ready ({state}); run {DEPLOY_WAIT} to see why",
            self.pod
        )))
    }
}

/// One pod per node, sorted by node name: a ready one where there is one
/// (during a rollout a node briefly has an old and a new pod).
fn pods_by_node(pods: &[Pod]) -> Vec<NodePod> {
    let mut chosen: Vec<NodePod> = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let candidate = NodePod {
            node: target_node(pod).map_or_else(|| format!("pod/{name}"), str::to_string),
            scheduled: pod
                .spec
                .as_ref()
                .is_some_and(|spec| spec.node_name.is_some()),
            not_ready: (!is_pod_ready(pod)).then(|| pod_state(pod)),
            pod: name,
        };
        match chosen.iter_mut().find(|known| known.node == candidate.node) {
            Some(known) if known.not_ready.is_some() && candidate.not_ready.is_none() => {
                *known = candidate;
            }
            Some(_) => {}
            None => chosen.push(candidate),
        }
    }
    chosen.sort_by(|a, b| a.node.cmp(&b.node));
    chosen
}

impl NodeTarget {
    /// A `--node-address`.
    pub fn direct(address: &NodeAddress) -> NodeTarget {
        let (label, named) = match &address.name {
            Some(name) => (name.clone(), true),
            None => (address.endpoint.to_string(), false),
        };
        let dial = match &address.endpoint {
            NodeEndpoint::Unix(path) => Dial::Unix(path.clone()),
            NodeEndpoint::Tcp { host, port } => Dial::Tcp(format!("http://{host}:{port}")),
        };
        NodeTarget { label, named, dial }
    }

    /// The node's name, or its address until it says its name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where the node is reached, for messages.
    pub fn address(&self) -> String {
        match &self.dial {
            Dial::PortForward { pod, .. } => {
                format!("pod {NAMESPACE}/{pod} port {GRPC_PORT}")
            }
            Dial::Unix(path) => format!("unix://{}", path.display()),
            Dial::Tcp(uri) => uri.replacen("http://", "tcp://", 1),
            Dial::Unusable(_) => self.label.clone(),
        }
    }

    /// Opens a channel to the node.
    pub async fn dial(&self) -> Result<GadgetNodeClient<Channel>, NodeError> {
        let connect_error = |reason: String| NodeError::Connect {
            address: self.address(),
            reason,
        };
        let channel = match &self.dial {
            Dial::Unusable(err) => return Err(err.clone()),
            Dial::Unix(path) => {
                let path = path.clone();
                let connector = tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                });
                with_keepalive(Endpoint::from_static(PLACEHOLDER_URI))
                    .connect_with_connector(connector)
                    .await
                    .map_err(|err| connect_error(transport_error(&err)))?
            }
            Dial::Tcp(uri) => Endpoint::from_shared(uri.clone())
                .map(with_keepalive)
                .map_err(|err| connect_error(transport_error(&err)))?
                .connect()
                .await
                .map_err(|err| connect_error(transport_error(&err)))?,
            Dial::PortForward { pods, pod } => {
                let port_error = Arc::new(Mutex::new(None));
                let connector =
                    port_forward_connector(pods.as_ref().clone(), pod.clone(), port_error.clone());
                match with_keepalive(Endpoint::from_static(PLACEHOLDER_URI))
                    .connect_with_connector(connector)
                    .await
                {
                    Ok(channel) => channel,
                    Err(err) => {
                        // The kubelet reports why it could not forward (e.g.
                        // nothing listens on the port) on a side channel
                        // that may arrive just after the stream closed.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let reason = match port_error.lock().map(|slot| slot.clone()) {
                            Ok(Some(kubelet)) => kubelet,
                            _ => transport_error(&err),
                        };
                        return Err(connect_error(reason));
                    }
                }
            }
        };
        Ok(GadgetNodeClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Dials the node and asks for its NodeInfo, without checking it.
    pub async fn dial_and_describe(
        &self,
    ) -> Result<(GadgetNodeClient<Channel>, NodeInfoResponse), NodeError> {
        let answer = async {
            let mut client = self.dial().await?;
            let info = client
                .node_info(NodeInfoRequest {})
                .await
                .map_err(|status| NodeError::Info(status_message(&status)))?
                .into_inner();
            Ok((client, info))
        };
        tokio::time::timeout(NODE_ANSWER_TIMEOUT, answer)
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::Timeout {
                    address: self.address(),
                    timeout: NODE_ANSWER_TIMEOUT,
                })
            })
    }

    /// The name the node is shown with once `info` is known.
    pub fn display_name(&self, info: Option<&NodeInfoResponse>) -> String {
        match info {
            Some(info) if !self.named && !info.node_name.is_empty() => info.node_name.clone(),
            _ => self.label.clone(),
        }
    }
}

/// `endpoint`, pinging its connection (see [`KEEPALIVE_INTERVAL`]).
fn with_keepalive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// A tonic connector that opens a fresh port-forward to the pod for every
/// connection; what the kubelet says about a broken forward goes into
/// `port_error`.
fn port_forward_connector(
    pods: Api<Pod>,
    pod: String,
    port_error: Arc<Mutex<Option<String>>>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::io::DuplexStream>,
    Error = BoxError,
    Future = impl Future<Output = Result<TokioIo<tokio::io::DuplexStream>, BoxError>> + Send,
> + Send
       + 'static {
    tower::service_fn(move |_: Uri| {
        let pods = pods.clone();
        let pod = pod.clone();
        let port_error = port_error.clone();
        async move {
            let mut forwarder = match pods.portforward(&pod, &[GRPC_PORT]).await {
                Ok(forwarder) => forwarder,
                Err(err) => {
                    if is_forbidden_upgrade(&err) {
                        // The upgrade's answer has no body worth showing:
                        // say what is missing instead of "403 Forbidden"
                        // under two layers of transport errors.
                        if let Ok(mut slot) = port_error.lock() {
                            *slot = Some(format!(
                                "forbidden: this kubeconfig's user may not open a port-forward \
                                 to pod {NAMESPACE}/{pod} (get and create on pods/portforward); {}",
                                grant_hint()
                            ));
                        }
                    }
                    return Err(err.into());
                }
            };
            let stream = forwarder
                .take_stream(GRPC_PORT)
                .ok_or("the port-forward has no stream for the port")?;
            if let Some(error) = forwarder.take_error(GRPC_PORT) {
                tokio::spawn(async move {
                    if let Some(message) = error.await {
                        if let Ok(mut slot) = port_error.lock() {
                            *slot = Some(message);
                        }
                    }
                });
            }
            // The forwarder's task owns the websocket and keeps running
            // after `forwarder` is dropped, until the stream is closed.
            Ok::<_, BoxError>(TokioIo::new(stream))
        }
    })
}

/// Whether the API server refused a port-forward's upgrade as forbidden.
fn is_forbidden_upgrade(err: &kube::Error) -> bool {
    matches!(
        err,
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(code))
            if code.as_u16() == 403
    )
}

/// One line for a kubeconfig that cannot be used.
fn kubeconfig_error(err: &KubeconfigError) -> ConnectError {
    let message = match err {
        KubeconfigError::LoadContext(context) => {
            format!("context {context:?} is not in the kubeconfig")
        }
        KubeconfigError::CurrentContextNotSet => {
            "the kubeconfig has no current context; choose one with --context".to_string()
        }
        KubeconfigError::FindPath => {
            "no kubeconfig found: set KUBECONFIG or pass --kubeconfig".to_string()
        }
        KubeconfigError::ReadConfig(io, path) => {
            format!("cannot read the kubeconfig {}: {io}", path.display())
        }
        KubeconfigError::LoadClusterOfContext(cluster) => {
            format!("cluster {cluster:?} of the context is not in the kubeconfig")
        }
        other => format!("kubeconfig: {}", error_chain(other)),
    };
    ConnectError::Kubeconfig(message)
}

/// One line for a failed API call of `action` made to find the gadget pods,
/// worded as every command words it; a refusal also says how to get what
/// the trace users' role grants.
pub(crate) fn discovery_error(server: &str, action: &str, err: &kube::Error) -> ConnectError {
    let api = ApiError::from_kube(err, action, Some(server));
    match api {
        ApiError::Forbidden { .. } => ConnectError::Api(format!("{api}; {}", grant_hint())),
        _ => ConnectError::Api(api.to_string()),
    }
}

/// A tonic transport error with its causes.
fn transport_error(err: &tonic::transport::Error) -> String {
    let chain = error_chain(err);
    if chain.is_empty() {
        err.to_string()
    } else {
        chain
    }
}

/// `one` or `many`, by `count`.
fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };
    use kube::api::ObjectMeta;

    fn pod(name: &str, node: Option<&str>, ready: bool, waiting: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(if ready { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                container_statuses: waiting.map(|reason| {
                    vec![ContainerStatus {
                        name: "gadget-node".into(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(reason.into()),
                                message: None,
                            }),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn one_pod_per_node_preferring_a_ready_one() {
        let pods = [
            pod("gn-b", Some("node-b"), true, None),
            pod("gn-a-old", Some("node-a"), false, Some("CrashLoopBackOff")),
            pod("gn-a-new", Some("node-a"), true, None),
            pod("gn-c", Some("node-c"), false, Some("ImagePullBackOff")),
        ];
        let chosen = pods_by_node(&pods);
        assert_eq!(
            chosen,
            [
                NodePod {
                    node: "node-a".into(),
                    scheduled: true,
                    pod: "gn-a-new".into(),
                    not_ready: None,
                },
                NodePod {
                    node: "node-b".into(),
                    scheduled: true,
                    pod: "gn-b".into(),
                    not_ready: None,
                },
                NodePod {
                    node: "node-c".into(),
                    scheduled: true,
                    pod: "gn-c".into(),
                    not_ready: Some("ImagePullBackOff".into()),
                },
            ]
        );
    }

    #[test]
    fn unscheduled_pod_says_so() {
        let chosen = pods_by_node(&[pod("gn-x", None, false, None)]);
        assert_eq!(chosen[0].node, "pod/gn-x");
        assert!(!chosen[0].scheduled);
        assert_eq!(
            chosen[0].not_ready_error().unwrap().to_string(),
            "gadget-node pod kubectl-gadget/gn-x is not ready (not scheduled); \
             run \"kubectl gadget deploy --wait\" to see why"
        );
    }

    #[test]
    fn not_ready_pods_fail_their_node_unless_no_node_is_ready() {
        let found = pods_by_node(&[
            pod("gn-a", Some("node-a"), true, None),
            pod("gn-b", Some("node-b"), false, Some("CrashLoopBackOff")),
        ]);
        let all = select_nodes(&found, &[]).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].not_ready_error().is_none());
        assert_eq!(
            all[1].not_ready_error().unwrap().to_string(),
            "gadget-node pod kubectl-gadget/gn-b is not ready (CrashLoopBackOff); \
             run \"kubectl gadget deploy --wait\" to see why"
        );
        let err = select_nodes(&found, &["node-b".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gadget-node is not ready on any node (node-b: CrashLoopBackOff); \
             run \"kubectl gadget deploy --wait\" to see why"
        );
        let err = select_nodes(&found, &["ghost".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no gadget-node pod on node: ghost; gadget-node runs on: node-a, node-b"
        );
    }

    #[test]
    fn direct_targets_are_named_by_the_node_unless_given_a_name() {
        let unnamed = NodeTarget::direct(&"unix:///run/n.sock".parse().unwrap());
        assert_eq!(unnamed.label(), "unix:///run/n.sock");
        let info = NodeInfoResponse {
            node_name: "worker-1".into(),
            ..NodeInfoResponse::default()
        };
        assert_eq!(unnamed.display_name(Some(&info)), "worker-1");
        assert_eq!(unnamed.display_name(None), "unix:///run/n.sock");

        let named = NodeTarget::direct(&"edge=tcp://127.0.0.1:7100".parse().unwrap());
        assert_eq!(named.display_name(Some(&info)), "edge");
        assert_eq!(named.address(), "tcp://127.0.0.1:7100");
    }

    #[test]
    fn messages_of_cluster_errors() {
        assert_eq!(
            ConnectError::NotDeployed.to_string(),
            "gadget-node is not deployed: run \"kubectl gadget deploy\""
        );
        assert_eq!(
            ConnectError::NoNodes.to_string(),
            "no node runs gadget-node: no Linux node matches its node selector; \
             run \"kubectl gadget deploy\" with a --node-selector that matches nodes"
        );
        assert_eq!(
            ConnectError::UnknownNodes {
                unknown: vec!["ghost".into()],
                known: vec!["a".into(), "b".into()],
            }
            .to_string(),
            "no gadget-node pod on node: ghost; gadget-node runs on: a, b"
        );
        assert_eq!(
            kubeconfig_error(&KubeconfigError::LoadContext("prod".into())).to_string(),
            "context \"prod\" is not in the kubeconfig"
        );
    }

    #[tokio::test]
    async fn unix_socket_that_nobody_listens_on_fails_with_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        let target = NodeTarget::direct(&NodeAddress {
            name: Some("edge".into()),
            endpoint: NodeEndpoint::Unix(path.clone()),
        });
        let err = target.dial_and_describe().await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot connect to gadget-node at unix://{}: ",
                path.display()
            )),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }

    /// Regression: a user without `pods/portforward` got, per node, a
    /// transport error chain ending in "403 Forbidden", and then a summary.
    #[test]
    fn denied_port_forward_is_one_line_naming_the_permission() {
        let denied = SubjectAccessReviewStatus {
            allowed: false,
            ..SubjectAccessReviewStatus::default()
        };
        let err = port_forward_verdict(Some(&denied)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden: this kubeconfig's user may not create pods/portforward in namespace \
             kubectl-gadget, which reaching gadget-node needs; an admin can grant what tracing \
             needs with \"kubectl create rolebinding NAME --namespace kubectl-gadget \
             --clusterrole kubectl-gadget-tracer --user USER\""
        );
        assert_eq!(err.to_string().lines().count(), 1);
        let allowed = SubjectAccessReviewStatus {
            allowed: true,
            ..SubjectAccessReviewStatus::default()
        };
        port_forward_verdict(Some(&allowed)).unwrap();
        // No answer is no refusal: the port-forward itself will say.
        port_forward_verdict(None).unwrap();
    }

    #[test]
    fn forbidden_upgrade_is_recognised() {
        use kube::client::UpgradeConnectionError;
        let forbidden = kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(
            tonic::codegen::http::StatusCode::FORBIDDEN,
        ));
        assert!(is_forbidden_upgrade(&forbidden));
        let not_found = kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(
            tonic::codegen::http::StatusCode::NOT_FOUND,
        ));
        assert!(!is_forbidden_upgrade(&not_found));
    }

    #[test]
    fn forbidden_discovery_says_how_to_get_access() {
        let status = kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code: 403,
            message: "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"kubectl-gadget\"".into(),
            reason: "Forbidden".into(),
            metadata: None,
            details: None,
        };
        let err = discovery_error(
            "https://h:6443",
            "list the gadget pods",
            &kube::Error::Api(Box::new(status)),
        );
        assert_eq!(
            err.to_string(),
            format!(
                "forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the \
                 namespace \"kubectl-gadget\"; {}",
                grant_hint()
            )
        );
    }
}
