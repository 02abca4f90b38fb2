//! The `gadget.v1.GadgetNode` gRPC service: runs a trace per `RunGadget`
//! call for as long as the client listens, describes the node, and reports
//! its health.
//!
//! A trace lives exactly as long as its response stream: when the client
//! ends the call, or its connection dies, the server drops the stream, the
//! stream drops the trace's receiver, and the trace detaches its gadget
//! (see [`crate::trace::Trace`]). When the node stops, [`RunningTraces`]
//! ends every stream and detaches every gadget before the process exits.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use gadget_proto::v1;
use gadget_proto::v1::gadget_node_server::{GadgetNode, GadgetNodeServer};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::features::KernelFeatures;
use crate::identity::IdentityResolver;
use crate::listen::{ListenAddress, Listener, NodeUnreachable};
use crate::trace::{self, InvalidRequest, TracePlan, TraceStartError};

/// The service name clients and health checks ask for.
pub const SERVICE_NAME: &str = v1::gadget_node_server::SERVICE_NAME;

/// How long a stopping node waits for clients to hang up after their traces
/// ended, before it closes their connections itself.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the server pings an idle connection. A trace that produces no
/// events sends nothing, so without pings a client whose host vanished
/// (no FIN, no RST) would keep its gadget loaded forever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest error message sent in a gRPC status. The message travels in
/// the `grpc-message` header, percent-encoded (up to three times longer),
/// and clients refuse header blocks above 16 KiB; verifier logs are longer.
const MAX_STATUS_MESSAGE: usize = 2048;

/// What `NodeInfo` reports about this node, gathered once at startup.
#[derive(Debug, Clone)]
pub struct NodeDescription {
    /// The Kubernetes node name (or the host name in local mode).
    pub node_name: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// What the kernel can do; decides which gadgets are available.
    pub features: KernelFeatures,
}

/// The node service.
pub struct NodeService {
    description: NodeDescription,
    identity: Arc<IdentityResolver>,
    traces: RunningTraces,
}

impl NodeService {
    /// A service describing itself with `description` and naming event
    /// sources with `identity`.
    ///
    /// Whoever builds it also runs
    /// [`IdentityResolver::refresh_periodically`] on `identity`: kernel-side
    /// container filters only learn of new containers through it.
    pub fn new(description: NodeDescription, identity: Arc<IdentityResolver>) -> Self {
        NodeService {
            description,
            identity,
            traces: RunningTraces::new(),
        }
    }

    /// The traces this service runs, to stop them all on shutdown.
    pub fn running_traces(&self) -> RunningTraces {
        self.traces.clone()
    }

    /// The description `NodeInfo` sends.
    pub fn describe(&self) -> v1::NodeInfoResponse {
        let features = &self.description.features;
        v1::NodeInfoResponse {
            node_name: self.description.node_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: gadget_proto::PROTOCOL_VERSION,
            kernel_release: self.description.kernel_release.clone(),
            gadgets: crate::gadgets::names()
                .into_iter()
                .map(|name| {
                    let availability = features.gadget_availability(name);
                    v1::GadgetInfo {
                        name: name.to_string(),
                        available: availability.is_ok(),
                        reason: availability.err().unwrap_or_default(),
                    }
                })
                .collect(),
            features: features
                .iter()
                .map(|(feature, present)| (feature.name().to_string(), present))
                .collect(),
        }
    }

    /// Validates `request`, loads its gadget and returns its event stream.
    async fn start_trace(
        &self,
        request: &v1::RunGadgetRequest,
    ) -> Result<TraceStream, RunGadgetError> {
        let request = TracePlan::from_proto(request)?;
        let gadget = request.gadget.name();
        self.description
            .features
            .gadget_availability(gadget)
            .map_err(|reason| RunGadgetError::Unavailable { reason })?;
        let identity = Arc::clone(&self.identity);
        // Loading runs the verifier: tens of milliseconds of CPU that must
        // not hold up the runtime's other connections.
        let trace =
            tokio::task::spawn_blocking(move || trace::start(request, identity).map_err(Box::new))
                .await
                .map_err(|err| RunGadgetError::Internal(format!("trace setup failed: {err}")))??;
        let stopping = self.traces.register(trace.task)?;
        Ok(TraceStream {
            gadget,
            events: Some(ReceiverStream::new(trace.events)),
            stopping,
        })
    }
}

#[tonic::async_trait]
impl GadgetNode for NodeService {
    type RunGadgetStream = TraceStream;

    async fn run_gadget(
        &self,
        request: Request<v1::RunGadgetRequest>,
    ) -> Result<Response<TraceStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "local".to_string(), |a| a.to_string());
        let gadget = request.get_ref().gadget.clone();
        match self.start_trace(request.get_ref()).await {
            Ok(stream) => {
                tracing::info!(gadget, peer, "trace started");
                Ok(Response::new(stream))
            }
            Err(err) => {
                // The full error, verifier log and all, stays in the node's
                // log; the client gets a summary.
                tracing::warn!(gadget, peer, error = %err, "trace refused");
                Err(err.into())
            }
        }
    }

    async fn node_info(
        &self,
        _request: Request<v1::NodeInfoRequest>,
    ) -> Result<Response<v1::NodeInfoResponse>, Status> {
        Ok(Response::new(self.describe()))
    }
}

/// Why a `RunGadget` call produced no trace, or ended early.
#[derive(Debug, thiserror::Error)]
pub enum RunGadgetError {
    /// The request is wrong; the message says how.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The gadget cannot run on this node's kernel.
    #[error("{reason}")]
    Unavailable {
        /// What is missing.
        reason: String,
    },
    /// The kernel refused the gadget. Boxed: aya's errors are large, and
    /// this error travels through every `Result` of a call.
    #[error(transparent)]
    Trace(#[from] Box<TraceStartError>),
    /// The node is stopping.
    #[error("the node is stopping; run the trace again once it is back")]
    Stopping,
    /// A bug in the node.
    #[error("{0}")]
    Internal(String),
}

/// The one place where the node's errors become gRPC statuses.
impl From<RunGadgetError> for Status {
    fn from(err: RunGadgetError) -> Status {
        let message = summarize(&err.to_string());
        match err {
            RunGadgetError::Invalid(_) => Status::invalid_argument(message),
            RunGadgetError::Unavailable { .. } => Status::failed_precondition(message),
            RunGadgetError::Trace(err) if matches!(*err, TraceStartError::Map { .. }) => {
                Status::internal(message)
            }
            // The verifier, a missing tracepoint or tracefs: this node's
            // kernel or setup, which retrying will not change.
            RunGadgetError::Trace(_) => Status::failed_precondition(message),
            RunGadgetError::Stopping => Status::unavailable(message),
            RunGadgetError::Internal(_) => Status::internal(message),
        }
    }
}

/// `message`, cut in the middle when too long for a status: the start says
/// what failed, and a verifier log says why at its end.
fn summarize(message: &str) -> String {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message.to_string();
    }
    let head_end = floor_char_boundary(message, MAX_STATUS_MESSAGE / 4);
    let tail_start = ceil_char_boundary(message, message.len() - MAX_STATUS_MESSAGE * 3 / 4);
    format!(
        "{} [... {} bytes cut; the node's log has all of it ...] {}",
        &message[..head_end],
        tail_start - head_end,
        &message[tail_start..]
    )
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(s: &str, mut index: usize) -> usize {
    while !s.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// The events of one trace, as the response stream of its `RunGadget` call.
///
/// Ends when the trace does (timeout), or with `UNAVAILABLE` when the node
/// stops. Dropping it ends the trace.
pub struct TraceStream {
    gadget: &'static str,
    /// `None` once the stream has ended.
    events: Option<ReceiverStream<v1::RunGadgetResponse>>,
    stopping: BoxFuture<'static, ()>,
}

impl Stream for TraceStream {
    type Item = Result<v1::RunGadgetResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(events) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        // Checked first, so that a stopping node says so rather than
        // ending the stream as if the trace had simply finished.
        if this.stopping.as_mut().poll(cx).is_ready() {
            this.events = None;
            return Poll::Ready(Some(Err(RunGadgetError::Stopping.into())));
        }
        match Pin::new(events).poll_next(cx) {
            Poll::Ready(Some(message)) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => {
                this.events = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for TraceStream {
    fn drop(&mut self) {
        // Dropped with events still to come: the client went away.
        let client_left = self.events.is_some();
        tracing::info!(gadget = self.gadget, client_left, "trace ended");
    }
}

/// The traces a [`NodeService`] runs, shared with whoever stops the node.
#[derive(Clone)]
pub struct RunningTraces {
    inner: Arc<TracesInner>,
}

struct TracesInner {
    stopping: watch::Sender<bool>,
    /// Tasks of the traces, each owning its loaded gadget. Finished ones are
    /// pruned when a trace starts.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RunningTraces {
    fn new() -> Self {
        RunningTraces {
            inner: Arc::new(TracesInner {
                stopping: watch::Sender::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Traces whose gadget is still loaded.
    pub fn count(&self) -> usize {
        self.tasks().iter().filter(|t| !t.is_finished()).count()
    }

    /// Ends every trace: their streams end with `UNAVAILABLE`, their gadgets
    /// are detached and freed by the time this returns. Traces asked for
    /// afterwards are refused. Returns how many were running.
    pub async fn stop_all(&self) -> usize {
        let tasks = {
            let mut tasks = self.tasks();
            self.inner.stopping.send_replace(true);
            std::mem::take(&mut *tasks)
        };
        let mut stopped = 0;
        for task in tasks {
            if !task.is_finished() {
                stopped += 1;
            }
            // The task owns the gadget: cancelling it drops (detaches) it,
            // whether or not the client's stream is ever polled again.
            task.abort();
            let _ = task.await;
        }
        stopped
    }

    /// Keeps `task` so that [`stop_all`](Self::stop_all) can end it; returns
    /// the future its stream watches for the node stopping.
    fn register(&self, task: JoinHandle<()>) -> Result<BoxFuture<'static, ()>, RunGadgetError> {
        let mut tasks = self.tasks();
        if *self.inner.stopping.borrow() {
            task.abort();
            return Err(RunGadgetError::Stopping);
        }
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        let mut stopping = self.inner.stopping.subscribe();
        Ok(Box::pin(async move {
            // An error means the service is gone: stopping too.
            let _ = stopping.wait_for(|stop| *stop).await;
        }))
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        // The list is consistent after every operation; a panic elsewhere
        // while holding it tells nothing about it.
        self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server stopped for a reason other than being asked to.
#[derive(Debug, thiserror::Error)]
#[error("the gRPC server failed")]
pub struct ServeError(#[from] tonic::transport::Error);

/// Serves `service` and gRPC health on `listener` until `shutdown`
/// completes, then stops: health turns `NOT_SERVING`, no new connections
/// are accepted, every trace ends and its gadget is detached, clients get
/// [`DRAIN_TIMEOUT`] to hang up, and a unix socket file is removed.
pub async fn serve(
    listener: Listener,
    service: NodeService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let address = listener.address();
    let traces = service.running_traces();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GadgetNodeServer<NodeService>>().await;
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(GadgetNodeServer::new(service));

    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let drain = async move {
        let _ = drain_rx.await;
    };
    // Held until the server is done, so that the file goes last.
    let mut socket_file = None;
    let mut serving: BoxFuture<'static, Result<(), tonic::transport::Error>> = match listener {
        Listener::Tcp { listener, .. } => Box::pin(router.serve_with_incoming_shutdown(
            // Rows should not wait for Nagle.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            drain,
        )),
        Listener::Unix {
            listener,
            socket_file: file,
        } => {
            socket_file = Some(file);
            Box::pin(router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), drain))
        }
    };
    tracing::info!(%address, "serving {SERVICE_NAME}");

    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut serving => return result.map_err(ServeError::from),
        () = &mut shutdown => {}
    }

    tracing::info!("stopping: refusing new connections and ending traces");
    health
        .set_not_serving::<GadgetNodeServer<NodeService>>()
        .await;
    let _ = drain_tx.send(());
    let stopped = traces.stop_all().await;
    tracing::info!(traces = stopped, "every gadget is detached");
    match tokio::time::timeout(DRAIN_TIMEOUT, serving).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            "clients still connected {DRAIN_TIMEOUT:?} after the node began stopping; closing"
        ),
    }
    drop(socket_file);
    Ok(())
}

/// What a health check of a node found.
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    /// No connection.
    #[error(transparent)]
    Connect(#[from] NodeUnreachable),
    /// The health call failed.
    #[error("health check of {address} failed: {status}")]
    Call {
        /// Where.
        address: ListenAddress,
        /// The call's status.
        status: Status,
    },
    /// The node answered, but is not serving.
    #[error("{SERVICE_NAME} at {address} is {status}")]
    NotServing {
        /// Where.
        address: ListenAddress,
        /// What it said (`NOT_SERVING`, `UNKNOWN`).
        status: &'static str,
    },
}

/// Asks the node at `address`, over gRPC health, whether the node service
/// is serving; all of it within `timeout`.
pub async fn check_health(
    address: &ListenAddress,
    timeout: Duration,
) -> Result<(), HealthCheckError> {
    let channel = address.connect(timeout).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: SERVICE_NAME.to_string(),
        })
        .await
        .map_err(|status| HealthCheckError::Call {
            address: address.clone(),
            status,
        })?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(HealthCheckError::NotServing {
            address: address.clone(),
            status: other.as_str_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Feature;
    use tonic::Code;

    #[test]
    fn invalid_requests_are_invalid_argument_with_their_message() {
        let request = v1::RunGadgetRequest {
            protocol_version: gadget_proto::PROTOCOL_VERSION,
            gadget: "trace_tcp".into(),
            ..Default::default()
        };
        let err = TracePlan::from_proto(&request).err().unwrap();
        let status = Status::from(RunGadgetError::from(err));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("trace_tcp"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn other_errors_map_to_their_codes() {
        let unavailable = RunGadgetError::Unavailable {
            reason: "this kernel lacks bpf_loop".into(),
        };
        assert_eq!(Status::from(unavailable).code(), Code::FailedPrecondition);
        let tracefs =
            RunGadgetError::from(Box::new(TraceStartError::Tracefs("not mounted".into())));
        assert_eq!(Status::from(tracefs).code(), Code::FailedPrecondition);
        let map = RunGadgetError::from(Box::new(TraceStartError::Map {
            gadget: "trace_open",
            map: "events",
            reason: "missing".into(),
        }));
        assert_eq!(Status::from(map).code(), Code::Internal);
        let stopping = Status::from(RunGadgetError::Stopping);
        assert_eq!(stopping.code(), Code::Unavailable);
        assert!(stopping.message().contains("stopping"));
    }

    #[test]
    fn long_messages_keep_their_start_and_end() {
        let log = format!(
            "loading trace_exec: Verifier output: {}\nR1 invalid mem access 'scalar'",
            "0: (bf) r6 = r1 ; é\n".repeat(2000)
        );
        let summary = summarize(&log);
        assert!(
            summary.len() < MAX_STATUS_MESSAGE + 100,
            "{}",
            summary.len()
        );
        assert!(summary.starts_with("loading trace_exec"));
        assert!(summary.ends_with("R1 invalid mem access 'scalar'"));
        assert!(summary.contains("bytes cut"));
        assert_eq!(summarize("short"), "short");
    }

    fn service(features: &[Feature]) -> NodeService {
        let identity =
            IdentityResolver::new(crate::cgroup::CgroupResolver::new("/nonexistent"), None);
        NodeService::new(
            NodeDescription {
                node_name: "node-1".into(),
                kernel_release: "6.1.0".into(),
                features: KernelFeatures::with(features),
            },
            Arc::new(identity),
        )
    }

    #[test]
    fn node_info_lists_gadgets_with_their_availability() {
        let info = service(&[Feature::RingBuf, Feature::Btf]).describe();
        assert_eq!(info.node_name, "node-1");
        assert_eq!(info.kernel_release, "6.1.0");
        assert_eq!(info.protocol_version, gadget_proto::PROTOCOL_VERSION);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        let open = info
            .gadgets
            .iter()
            .find(|g| g.name == "trace_open")
            .unwrap();
        assert!(open.available && open.reason.is_empty());
        let exec = info
            .gadgets
            .iter()
            .find(|g| g.name == "trace_exec")
            .unwrap();
        assert!(!exec.available);
        assert!(exec.reason.contains("bpf_loop"), "{}", exec.reason);
        assert_eq!(info.features.get("ringbuf"), Some(&true));
        assert_eq!(info.features.get("bpf_loop"), Some(&false));
    }

    #[tokio::test]
    async fn unavailable_gadget_is_refused_before_loading() {
        let service = service(&[Feature::RingBuf, Feature::Btf]);
        let request = v1::RunGadgetRequest {
            protocol_version: gadget_proto::PROTOCOL_VERSION,
            gadget: gadget_proto::TRACE_EXEC.into(),
            ..Default::default()
        };
        let status = service
            .run_gadget(Request::new(request))
            .await
            .err()
            .unwrap();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("bpf_loop"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn stopping_refuses_new_traces_and_ends_registered_ones() {
        let traces = RunningTraces::new();
        let task = tokio::spawn(std::future::pending::<()>());
        let stopping = traces.register(task).ok().unwrap();
        assert_eq!(traces.count(), 1);
        assert_eq!(traces.stop_all().await, 1);
        assert_eq!(traces.count(), 0);
        tokio::time::timeout(Duration::from_secs(1), stopping)
            .await
            .expect("streams are told the node stops");
        let late = tokio::spawn(std::future::pending::<()>());
        assert!(matches!(
            traces.register(late),
            Err(RunGadgetError::Stopping)
        ));
    }
}
