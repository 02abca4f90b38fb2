//! kubectl-gadget: the client that runs gadgets on the nodes of a cluster and prints their events.

pub mod deploy;
pub mod manifests;
pub mod merge;
