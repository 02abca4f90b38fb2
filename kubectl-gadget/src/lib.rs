//! kubectl-gadget: the client that runs gadgets on the nodes of a cluster and prints their events.
//!
//! One module per job: [`cli`] is the command line as clap parses it,
//! [`request`] validates it into a [`request::Request`] without I/O,
//! [`connect`] finds and reaches the nodes, [`trace`] runs a trace on them
//! (what a trace's flags mean, and merging and printing its events, is
//! `gadget_trace`'s, shared with the node's local mode), [`version`] prints
//! what the nodes run, and [`deploy`] installs them from [`manifests`].
//! Whatever a node or the API server says goes through [`terminal`] on its
//! way to the terminal.

pub mod api_error;
pub mod cli;
pub mod connect;
pub mod deploy;
pub mod manifests;
pub mod pod_status;
pub mod request;
pub mod terminal;
pub mod trace;
pub mod version;
