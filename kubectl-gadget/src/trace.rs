//! Running a trace on the nodes of a cluster (or at `--node-address`es):
//! each node's RunGadget stream, reached as [`crate::connect`] says, is
//! handed to [`gadget_trace::print`], which merges and prints them.

use std::io;

use futures::stream::{self, StreamExt};
use futures::FutureExt;
use gadget_proto::check_protocol;
use gadget_proto::v1;
use gadget_trace::print::{
    gadget_events, print_trace, trace_id, NodeEvent, NodeEvents, StopTrace, TraceSummary,
};
use gadget_trace::request::TraceRequest;

use crate::connect::{self, ConnectError, NodeError, NodeTarget};
use crate::request::NodeTargets;

/// A trace that could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The nodes could not be found.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Printing failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

/// Runs the trace on every node of `nodes` and prints its events to stdout
/// (statuses as the output format says), until every node has ended, or
/// Ctrl-C.
pub async fn run(nodes: &NodeTargets, request: &TraceRequest) -> Result<TraceSummary, TraceError> {
    let targets = connect::resolve_targets(nodes).await?;
    let run_request = request.run_request(targets.context_namespace.as_deref());
    let nodes = targets
        .nodes
        .into_iter()
        .map(|target| {
            let label = target.label().to_string();
            (label, run_on_node(target, run_request.clone()))
        })
        .collect();
    Ok(print_trace(request, &run_request, nodes).await?)
}

/// The events of a trace on one node: connect and check the node, start
/// the gadget, then its RunGadget stream. Dropping the stream cancels the
/// call, which stops the trace on the node.
pub fn run_on_node(target: NodeTarget, request: v1::RunGadgetRequest) -> NodeEvents {
    let failed = |err: NodeError| NodeEvent::Failed(err.to_string());
    stream::once(async move {
        let (client, info) = match target.dial_and_describe().await {
            Ok(answer) => answer,
            Err(err) => return stream::iter([failed(err)]).boxed(),
        };
        let named = NodeEvent::Named(target.display_name(Some(&info)));
        if let Err(mismatch) = check_protocol(info.protocol_version) {
            return stream::iter([named, failed(mismatch.into())]).boxed();
        }
        let unavailable = info
            .gadgets
            .iter()
            .find(|gadget| gadget.name == request.gadget && !gadget.available);
        if let Some(gadget) = unavailable {
            let err = NodeError::GadgetUnavailable {
                gadget: gadget.name.clone(),
                reason: gadget.reason.clone(),
            };
            return stream::iter([named, failed(err)]).boxed();
        }
        let answer = client.clone().run_gadget(request).await;
        // Ctrl-C asks the node for the trace's final status through the
        // same connection (a port-forward, maybe) before cancelling it.
        let stop = answer.as_ref().ok().and_then(trace_id).map(|trace_id| {
            let mut client = client.clone();
            StopTrace::new(move || {
                async move {
                    let _ = client.stop_trace(v1::StopTraceRequest { trace_id }).await;
                }
                .boxed()
            })
        });
        let answer = answer.map(|response| {
            response.into_inner().map(move |item| {
                // The channel lives as long as the stream reads from it.
                let _channel = &client;
                item
            })
        });
        gadget_events(named, answer, stop)
    })
    .flatten()
    .boxed()
}
