//! kubectl-gadget: the client that runs gadgets on the nodes of a cluster and prints their events.

pub mod merge;
