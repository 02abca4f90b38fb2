//! The names and labels deploy gives the node side, which the client, the
//! node and `undeploy` find it by.

/// The namespace everything namespaced lives in: this project's own name,
/// not `gadget`, which is Inspektor Gadget's (deploy must never take over,
/// relabel or later delete a namespace another tool owns).
pub const NAMESPACE: &str = "kubectl-gadget";

/// The name of the DaemonSet, its ServiceAccount, ClusterRole and binding.
pub const NODE_AGENT: &str = "gadget-node";

/// The port `gadget-node serve` listens on, on the pod's loopback; clients
/// reach it through the API server's port-forward.
pub const GRPC_PORT: u16 = 7100;

/// The ClusterRole deploy ships for the people who trace (nothing is
/// bound to it): what `kubectl gadget trace` and `version` need, granted in
/// [`NAMESPACE`] by a RoleBinding an admin creates.
pub const TRACE_USER_ROLE: &str = "kubectl-gadget-tracer";

/// The label on the DaemonSet saying which kubectl-gadget version deployed
/// it, so that an older client can refuse to downgrade it.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The label that marks an object as made by `deploy`, and its value: deploy
/// only updates existing objects that carry it and undeploy only deletes
/// those.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubectl-gadget");

/// The labels on every object `deploy` creates.
pub const COMMON_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "gadget-node"),
    ("app.kubernetes.io/part-of", "kubectl-gadget"),
    ("app.kubernetes.io/managed-by", "kubectl-gadget"),
];

/// Selects every object `deploy` created (its labels, as a selector);
/// `undeploy` deletes deploy's objects by name and uses this to find the
/// namespaces an earlier version labelled.
pub const MANAGED_SELECTOR: &str =
    "app.kubernetes.io/managed-by=kubectl-gadget,app.kubernetes.io/part-of=kubectl-gadget";

/// Selects the gadget pods (in [`NAMESPACE`]); what clients connect to.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=gadget-node";

/// The node label every gadget pod is scheduled by: the agent is Linux-only.
pub const OS_LABEL: &str = "kubernetes.io/os";

/// The capabilities the DaemonSet may add back after dropping all; why each
/// one is needed is written next to it in `manifests/daemonset.yaml`.
pub const ALLOWED_CAPABILITIES: [&str; 3] = ["BPF", "PERFMON", MEMLOCK_CAPABILITY];

/// The capability that lets gadget-node raise `RLIMIT_MEMLOCK`, which only
/// kernels before Linux 5.11 charge BPF memory to: the template adds it, and
/// deploy renders it out when no node the DaemonSet runs on needs it
/// ([`RenderOptions::memlock_capability`](super::RenderOptions::memlock_capability)).
pub const MEMLOCK_CAPABILITY: &str = "SYS_RESOURCE";
