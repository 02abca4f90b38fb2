//! The kubectl-gadget node runtime: gadgets loaded into the kernel, Kubernetes
//! identity from cgroups, and the gRPC service.

pub mod agent;
pub mod cgroup;
pub mod clock;
#[cfg(test)]
mod fake_node;
pub mod features;
pub mod gadgets;
pub mod identity;
pub mod listen;
pub mod local;
pub mod memory;
pub mod pods;
pub mod selector;
pub mod server;
pub mod trace;
pub mod tracefs;
