//! The end-to-end suite of kubectl-gadget: `kubectl gadget` run as a user
//! runs it, against a real API server.
//!
//! `cargo xtask e2e` builds a local control plane (real etcd, API server,
//! controller-manager and scheduler; KWOK as the kubelet of three nodes),
//! and runs the `gadget-e2e` binary against it. There the suite is also the
//! nodes: it starts a real `gadget-node` on this host for every gadget pod,
//! gives the workload pods real cgroups and processes, and checks what the
//! traces print. With `--existing-cluster` it runs against a cluster of the
//! user's, where the kubelets run the pods, and skips what needs the local
//! harness.
//!
//! One module per job: [`suite`] is the scenario and its checks, [`kubectl`]
//! runs the client as a user, [`traces`] runs traces and checks their
//! output with [`events`], [`file_trace`] runs and checks `trace file`,
//! [`agents`] turns gadget pods into local node agents, [`workloads`] runs
//! the traced pods, [`users`] makes a user without rights, [`cluster`] is
//! the suite's own API access, and [`process`] and [`wait`] run children
//! and wait with deadlines.

pub mod agents;
pub mod cluster;
pub mod events;
pub mod file_trace;
pub mod host;
pub mod kubectl;
pub mod process;
pub mod suite;
pub mod traces;
pub mod users;
pub mod wait;
pub mod workloads;

/// gadget-node's test fixture for cgroup trees, shared rather than copied:
/// a test-owned subtree of the real cgroup v2 hierarchy, removed on drop.
#[path = "../../gadget-node/tests/common/cgroups.rs"]
#[allow(dead_code, missing_docs)]
mod cgroups;
