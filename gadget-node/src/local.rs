//! Local mode, `gadget-node trace open|exec`: one gadget on this host, run
//! in this process with no cluster and no server, printed exactly as
//! `kubectl gadget trace` prints (the client's flags, request validation,
//! merge and renderer), so the two modes cannot drift apart.

use futures::StreamExt;
use gadget_proto::v1::gadget_node_server::GadgetNode;
use kubectl_gadget::cli::TraceCommand;
use kubectl_gadget::request::{NodeTargets, RequestError, TraceRequest};
use kubectl_gadget::trace::{self, NodeEvent, TraceSummary};

use crate::agent::Agent;

/// Shown after `gadget-node trace open|exec --help`, in place of the
/// client's text about reaching cluster nodes.
pub const LOCAL_HELP: &str = "\
Local mode:
  The gadget runs on this host, in this process (root, or CAP_BPF and
  CAP_PERFMON, is needed). Processes outside any container are only traced
  with --host. Without --kubeconfig, containers are named by their pod UID
  and container id, and -n, -p, -c and -l match nothing.";

/// Validates the command's flags as the client does; an error here is a
/// usage error.
pub fn request(command: TraceCommand) -> Result<TraceRequest, RequestError> {
    // No nodes to reach and, without -n, every namespace (as with the
    // client's --node-address).
    TraceRequest::from_command(NodeTargets::Direct(Vec::new()), command)
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
        .run_gadget(tonic::Request::new(run))
        .await
        .map(tonic::Response::into_inner);
    let events = trace::gadget_events(NodeEvent::Named(name.clone()), answer);
    trace::print_trace(request, vec![(name, events.boxed())]).await
}
