//! The names and labels deploy gives the node side, which the client, the
//! node and `undeploy` find it by.

/// The namespace everything namespaced lives in.
pub const NAMESPACE: &str = "gadget";

/// The name of the DaemonSet, its ServiceAccount, ClusterRole and binding.
pub const NODE_AGENT: &str = "gadget-node";

/// The port `gadget-node serve` listens on, on the pod's loopback; clients
/// reach it through the API server's port-forward.
pub const GRPC_PORT: u16 = 7100;

/// The labels on every object `deploy` creates.
pub const COMMON_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "gadget-node"),
    ("app.kubernetes.io/part-of", "kubectl-gadget"),
    ("app.kubernetes.io/managed-by", "kubectl-gadget"),
];

/// Selects every object `deploy` created; what `undeploy` deletes.
pub const MANAGED_SELECTOR: &str =
    "app.kubernetes.io/managed-by=kubectl-gadget,app.kubernetes.io/part-of=kubectl-gadget";

/// Selects the gadget pods (in [`NAMESPACE`]); what clients connect to.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=gadget-node";

/// The node label every gadget pod is scheduled by: the agent is Linux-only.
pub const OS_LABEL: &str = "kubernetes.io/os";

/// The capabilities the DaemonSet may add back after dropping all; why each
/// one is needed is written next to it in `manifests/daemonset.yaml`.
pub const ALLOWED_CAPABILITIES: [&str; 3] = ["BPF", "PERFMON", "SYS_RESOURCE"];
