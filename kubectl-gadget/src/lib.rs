//! kubectl-gadget: the client that runs gadgets on the nodes of a cluster and prints their events.
//!
//! One module per job: [`cli`] is the command line as clap parses it,
//! [`request`] validates it into a [`request::Request`] without I/O,
//! [`connect`] finds and reaches the nodes, [`trace`] runs a trace on them
//! and prints the merged events ([`merge`] orders them), and [`version`]
//! prints what the nodes run.

#![warn(missing_docs)]

pub mod api_error;
pub mod cli;
pub mod connect;
pub mod deploy;
pub mod manifests;
pub mod merge;
pub mod pod_status;
pub mod request;
pub mod trace;
pub mod version;
