//! Local mode, `gadget-node trace <gadget>`: one gadget on this host, run
//! in this process with no cluster and no server, printed exactly as
//! `kubectl gadget trace` prints (gadget_trace's flags, request validation,
//! merge and renderer, which the plugin uses too), so the two modes cannot
//! drift apart.

use futures::{FutureExt, StreamExt};
use gadget_proto::v1::gadget_node_server::GadgetNode;
use gadget_trace::cli::{TraceCommand, TraceHelp};
use gadget_trace::print::{self, NodeEvent, StopTrace, TraceSummary};
use gadget_trace::request::{NamespaceScope, TraceRequest, TraceRequestError};

use crate::agent::Agent;

/// What `gadget-node trace <gadget> --help` adds: where the gadget runs.
#[derive(Debug)]
pub enum LocalTrace {}

impl TraceHelp for LocalTrace {
    const AFTER_LONG_HELP: &'static str = LOCAL_HELP;
}

/// Shown after `gadget-node trace <gadget> --help`.
const LOCAL_HELP: &str = "\
Local mode:
  The gadget runs on this host, in this process (root, or CAP_BPF and
  CAP_PERFMON, is needed). Processes outside any container are only traced
  with --host. Without --kubeconfig, containers are named by their pod UID
  and container id, and -n, -p, -c and -l match nothing.";

/// Validates the command's flags as the client does; an error here is a
/// usage error.
pub fn request(command: TraceCommand<LocalTrace>) -> Result<TraceRequest, TraceRequestError> {
    // No kubeconfig context: without -n, every namespace (as with the
    // client's --node-address).
    TraceRequest::from_command(command, NamespaceScope::All)
}

/// Runs `request` on `agent` and prints its rows to stdout until it ends
/// (timeout), or Ctrl-C.
pub async fn trace(agent: &Agent, request: &TraceRequest) -> std::io::Result<TraceSummary> {
    let run = request.run_request(None);
    let include_host = run.selector.as_ref().is_some_and(|s| s.include_host);
    if !include_host && !agent.watches_pods {
        eprintln!(
            "note: tracing processes in containers only; add --host to trace this host's too"
        );
    }
    let name = agent.service.describe().node_name;
    let answer = agent
        .service
        .run_gadget(tonic::Request::new(run.clone()))
        .await;
    // Ctrl-C ends the trace as the client's StopTrace would: with its final
    // status.
    let stop = answer.as_ref().ok().and_then(print::trace_id).map(|id| {
        let traces = agent.service.running_traces();
        StopTrace::new(move || {
            traces.stop(id);
            futures::future::ready(()).boxed()
        })
    });
    let answer = answer.map(tonic::Response::into_inner);
    let events = print::gadget_events(NodeEvent::Named(name.clone()), answer, stop);
    print::print_trace(request, &run, vec![(name, events.boxed())]).await
}
