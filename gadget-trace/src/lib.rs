//! What a trace is to the person who runs it, shared by `kubectl gadget
//! trace` and the node's local mode (`gadget-node trace`), so that both
//! parse, validate, merge and print alike: the gadgets' front ends
//! ([`gadgets`]), the `trace` flags ([`cli`]) and their validation into a
//! request ([`request`]), merging the nodes' streams by time ([`merge`]),
//! printing them ([`mod@print`], [`render`], [`row_output`]) and errors as one line
//! ([`error_line`]).
//!
//! It has no Kubernetes client and no networking: the plugin brings the
//! nodes' gRPC streams, local mode an in-process one.

pub mod cli;
pub mod error_line;
pub mod gadgets;
pub mod merge;
pub mod print;
pub mod render;
pub mod request;
pub mod row_output;
