//! The `gadget.v1.GadgetNode` gRPC service: runs a trace per `RunGadget`
//! call for as long as the client listens, describes the node, and reports
//! its health.
//!
//! A trace lives exactly as long as its response stream: when the client
//! ends the call, or its connection dies, the server drops the stream, the
//! stream drops the trace's receiver, and the trace detaches its gadget
//! (see [`crate::trace::Trace`]). When the node stops, [`RunningTraces`]
//! has every trace send its final status, ends every stream and detaches
//! every gadget before the process exits.
//!
//! A node runs at most [`NodeLimits::max_traces`] traces at once, whose ring
//! buffers and queues fit in [`NodeLimits::memory_budget`]; a trace beyond
//! either is refused with `RESOURCE_EXHAUSTED`.

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
use crate::memory::ReleaseWhenFreed;
use crate::trace::{self, InvalidRequest, TraceControls, TracePlan, TraceStartError};

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

/// Traces a node runs at once by default ([`NodeLimits::max_traces`]).
pub const DEFAULT_MAX_TRACES: usize = 16;

/// The default [`NodeLimits::memory_budget`]: 320 MiB, which leaves 192 MiB
/// of the DaemonSet's 512 MiB memory limit to the process itself (the pod
/// index, BTF parsed at each load, decoded events, gRPC buffers). A trace
/// with the default ring buffer is charged 18.5 MiB, so 16 of them fit, or
/// one with the largest ring buffer (256 MiB) and two default ones.
pub const DEFAULT_TRACE_MEMORY_BUDGET: u64 = 320 * 1024 * 1024;

/// The default [`NodeLimits::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping node waits for its traces to send their final status
/// and end, before it detaches what is left without one. Each trace bounds
/// its own last send by [`trace::FINAL_SEND_TIMEOUT`]; this adds room for
/// the last drain.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// What one node lets its traces use, together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// Traces running (or loading) at once. Each one attaches its own
    /// programs to its syscalls, so this also bounds the cost per syscall.
    pub max_traces: usize,
    /// Bytes for every trace's ring buffer and queued batches (each charged
    /// [`trace::memory_bound`]). Ring buffers are kernel memory charged to
    /// the pod's memory cgroup (Linux 5.11+), batches the process's: both
    /// count against the pod's memory limit.
    pub memory_budget: u64,
    /// A trace whose client takes nothing from its full queue for this long
    /// ends: a client that stopped reading (while its connection still
    /// answers pings) must not keep programs attached forever.
    pub stall_timeout: Duration,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_traces: DEFAULT_MAX_TRACES,
            memory_budget: DEFAULT_TRACE_MEMORY_BUDGET,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

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
    /// One load at a time. A load parses the kernel's BTF (megabytes) on a
    /// blocking thread; concurrent loads each took a thread whose malloc
    /// arena kept that memory afterwards (measured: 16 concurrent loads
    /// left the process at 276 MB, one at a time at 62 MB), and the
    /// verifier's CPU is better spent on one load than shared by many.
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl NodeService {
    /// A service describing itself with `description` and naming event
    /// sources with `identity`.
    ///
    /// Whoever builds it also runs
    /// [`IdentityResolver::refresh_periodically`] on `identity`: kernel-side
    /// container filters only learn of new containers through it.
    ///
    /// It runs traces within the default [`NodeLimits`].
    pub fn new(description: NodeDescription, identity: Arc<IdentityResolver>) -> Self {
        NodeService {
            description,
            identity,
            traces: RunningTraces::new(NodeLimits::default()),
            loading: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The service, running traces within `limits` instead. Call it before
    /// serving: traces already running are not counted against `limits`.
    pub fn with_limits(mut self, limits: NodeLimits) -> Self {
        self.traces = RunningTraces::new(limits);
        self
    }

    /// Whether at least one gadget can run here; a node where none can is
    /// not ready.
    pub fn can_run_a_gadget(&self) -> bool {
        self.description.features.any_gadget_available()
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
        // Before loading: the ring buffer is allocated by the load.
        let (slot, controls) = self
            .traces
            .reserve(trace::memory_bound(request.ring_buffer_bytes))?;
        let identity = Arc::clone(&self.identity);
        let trace_id = slot.id;
        // Loading runs the verifier: tens of milliseconds of CPU that must
        // not hold up the runtime's other connections.
        let loading = Arc::clone(&self.loading).lock_owned().await;
        let trace = tokio::task::spawn_blocking(move || {
            let _loading = loading;
            trace::start_with(request, identity, controls).map_err(Box::new)
        })
        .await
        .map_err(|err| RunGadgetError::Internal(format!("trace setup failed: {err}")))??;
        let stopping = slot.register(trace.task)?;
        Ok(TraceStream {
            gadget,
            trace_id,
            failure: trace.failure,
            events: Some(ReceiverStream::new(trace.events)),
            stopping,
            node_stopping: false,
            _release: trace.release,
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
                let trace_id = stream.trace_id;
                tracing::info!(gadget, peer, trace_id, "trace started");
                let mut response = Response::new(stream);
                response.metadata_mut().insert(
                    gadget_proto::TRACE_ID_HEADER,
                    tonic::metadata::MetadataValue::from(trace_id),
                );
                Ok(response)
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

    async fn stop_trace(
        &self,
        request: Request<v1::StopTraceRequest>,
    ) -> Result<Response<v1::StopTraceResponse>, Status> {
        let trace_id = request.get_ref().trace_id;
        let stopped = self.traces.stop(trace_id);
        tracing::info!(trace_id, stopped, "trace stop asked by a client");
        Ok(Response::new(v1::StopTraceResponse { stopped }))
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
    /// The trace ended on its own; the message says why.
    #[error("{0}")]
    Ended(String),
    /// The node runs as many traces, or as much ring buffer and queue
    /// memory, as it allows; the message says which.
    #[error("{0}")]
    Exhausted(String),
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
            RunGadgetError::Trace(err) => match permission_denied(err.as_ref()) {
                true => Status::permission_denied(format!("{message}; {PERMISSION_HINT}")),
                false => Status::failed_precondition(message),
            },
            RunGadgetError::Stopping => Status::unavailable(message),
            RunGadgetError::Exhausted(_) => Status::resource_exhausted(message),
            // The client's own reading, which a new trace may not repeat.
            RunGadgetError::Ended(_) => Status::aborted(message),
            RunGadgetError::Internal(_) => Status::internal(message),
        }
    }
}

/// What to check when the kernel refuses the node itself.
const PERMISSION_HINT: &str = "the node pod's capabilities (CAP_BPF, CAP_PERFMON), seccomp \
     profile, SELinux or AppArmor policy may deny it";

/// Whether the kernel refused the node rather than the gadget: EPERM from
/// any call, or EACCES from one that is not the verifier's (which rejects
/// a program with EACCES and its log; an LSM refuses before that).
fn permission_denied(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        // Boxed where it is kept (see AttachError), so either type.
        let program_error = err
            .downcast_ref::<aya::programs::ProgramError>()
            .or_else(|| {
                err.downcast_ref::<Box<aya::programs::ProgramError>>()
                    .map(|b| &**b)
            });
        if let Some(aya::programs::ProgramError::LoadError { verifier_log, .. }) = program_error {
            if !verifier_log.to_string().trim().is_empty() {
                return false;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
        }
        next = err.source();
    }
    false
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
/// Ends when the trace does (timeout), or, when the node stops, with the
/// trace's last events and final status and then `UNAVAILABLE`. Dropping it
/// ends the trace.
pub struct TraceStream {
    gadget: &'static str,
    /// What `StopTrace` names it by.
    trace_id: u64,
    /// Why the trace ended on its own, if it did.
    failure: oneshot::Receiver<String>,
    /// `None` once the stream has ended.
    events: Option<ReceiverStream<v1::RunGadgetResponse>>,
    stopping: BoxFuture<'static, ()>,
    /// Set once `stopping` completed: the trace is sending its last words.
    node_stopping: bool,
    /// Last, so that it is dropped after `events`.
    _release: ReleaseWhenFreed,
}

impl Stream for TraceStream {
    type Item = Result<v1::RunGadgetResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(events) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.node_stopping && this.stopping.as_mut().poll(cx).is_ready() {
            // The trace flushes its final status and ends (within
            // STOP_TIMEOUT, or stop_all aborts it): pass that on first.
            this.node_stopping = true;
        }
        match Pin::new(events).poll_next(cx) {
            Poll::Ready(Some(message)) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => {
                this.events = None;
                // A stopping node, or a trace that ended on its own, says
                // so rather than ending the stream as if the trace had
                // simply finished.
                if this.node_stopping {
                    Poll::Ready(Some(Err(RunGadgetError::Stopping.into())))
                } else if let Ok(failure) = this.failure.try_recv() {
                    Poll::Ready(Some(Err(RunGadgetError::Ended(failure).into())))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for TraceStream {
    fn drop(&mut self) {
        // Dropped with events still to come: the client went away.
        let client_left = self.events.is_some();
        tracing::info!(
            gadget = self.gadget,
            trace_id = self.trace_id,
            client_left,
            "trace ended"
        );
    }
}

/// The traces a [`NodeService`] runs, shared with whoever stops the node.
#[derive(Clone)]
pub struct RunningTraces {
    inner: Arc<TracesInner>,
}

struct TracesInner {
    limits: NodeLimits,
    stopping: watch::Sender<bool>,
    slots: Mutex<Slots>,
}

/// The traces being loaded or running, each with the memory it is charged.
#[derive(Default)]
struct Slots {
    next_id: u64,
    /// Finished ones are pruned when a trace is reserved.
    taken: Vec<Slot>,
}

struct Slot {
    id: u64,
    bytes: u64,
    /// Tells the trace to send its final status and end.
    stop: watch::Sender<bool>,
    /// The trace's task, owning its loaded gadget; `None` while loading.
    task: Option<JoinHandle<()>>,
}

impl Slot {
    fn is_running(&self) -> bool {
        self.task.as_ref().is_none_or(|task| !task.is_finished())
    }
}

/// A trace's place within the node's limits, taken before it is loaded and
/// given back when it ends (or when it fails to start: on drop).
struct Reservation {
    traces: RunningTraces,
    /// The trace's id, for `StopTrace`.
    id: u64,
    /// Set once the slot has a task, which then decides when it ends.
    registered: bool,
}

impl RunningTraces {
    fn new(limits: NodeLimits) -> Self {
        // Ids start somewhere new at each start, so that a client's stop
        // meant for a trace of the node's previous run stops nothing.
        let first_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        RunningTraces {
            inner: Arc::new(TracesInner {
                limits,
                stopping: watch::Sender::new(false),
                slots: Mutex::new(Slots {
                    next_id: first_id,
                    taken: Vec::new(),
                }),
            }),
        }
    }

    /// Tells the trace `trace_id` to send its last events and final status,
    /// then end; false when no such trace runs.
    pub fn stop(&self, trace_id: u64) -> bool {
        let slots = self.slots();
        match slots.taken.iter().find(|s| s.id == trace_id) {
            Some(slot) if slot.is_running() => {
                slot.stop.send_replace(true);
                true
            }
            _ => false,
        }
    }

    /// Traces being loaded, or whose gadget is still loaded.
    pub fn count(&self) -> usize {
        self.slots().taken.iter().filter(|s| s.is_running()).count()
    }

    /// Ends every trace: each sends its last events and final status (for
    /// at most [`STOP_TIMEOUT`]), its stream ends with `UNAVAILABLE`, and
    /// its gadget is detached and freed by the time this returns. Traces
    /// asked for afterwards are refused. Returns how many were running.
    pub async fn stop_all(&self) -> usize {
        let slots = {
            let mut slots = self.slots();
            self.inner.stopping.send_replace(true);
            std::mem::take(&mut slots.taken)
        };
        for slot in &slots {
            slot.stop.send_replace(true);
        }
        let mut tasks: Vec<JoinHandle<()>> = slots.into_iter().filter_map(|s| s.task).collect();
        let stopped = tasks.iter().filter(|t| !t.is_finished()).count();
        let all_ended = futures::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(STOP_TIMEOUT, all_ended).await.is_err() {
            tracing::warn!("traces still sending {STOP_TIMEOUT:?} after the node began stopping");
        }
        for task in tasks {
            // The task owns the gadget: cancelling it drops (detaches) it,
            // whether or not the client's stream is ever polled again.
            // (A finished one was awaited already, and awaiting it again
            // would panic.)
            if !task.is_finished() {
                task.abort();
                let _ = task.await;
            }
        }
        stopped
    }

    /// Takes a place for a trace charged `bytes`, with what the trace is to
    /// be started with, or says which limit it would pass.
    fn reserve(&self, bytes: u64) -> Result<(Reservation, TraceControls), RunGadgetError> {
        let mut slots = self.slots();
        if *self.inner.stopping.borrow() {
            return Err(RunGadgetError::Stopping);
        }
        slots.taken.retain(Slot::is_running);
        let limits = &self.inner.limits;
        let running = slots.taken.len();
        if running >= limits.max_traces {
            return Err(RunGadgetError::Exhausted(format!(
                "the node already runs {running} traces, its limit (gadget-node serve \
                 --max-traces {}); try again when one ends",
                limits.max_traces
            )));
        }
        let used: u64 = slots.taken.iter().map(|s| s.bytes).sum();
        if bytes > limits.memory_budget {
            return Err(RunGadgetError::Exhausted(format!(
                "the trace needs {} for its ring buffer and queues, more than the node's \
                 whole trace memory budget of {} (gadget-node serve --trace-memory-mib); \
                 use a smaller --ring-buffer-size",
                show_bytes(bytes),
                show_bytes(limits.memory_budget)
            )));
        }
        if used + bytes > limits.memory_budget {
            return Err(RunGadgetError::Exhausted(format!(
                "the trace needs {} for its ring buffer and queues, and {} of the node's \
                 trace memory budget of {} is free ({running} traces running); use a \
                 smaller --ring-buffer-size, or try again when a trace ends",
                show_bytes(bytes),
                show_bytes(limits.memory_budget - used),
                show_bytes(limits.memory_budget)
            )));
        }
        slots.next_id = slots.next_id.wrapping_add(1);
        let id = slots.next_id;
        let (stop, stop_rx) = watch::channel(false);
        slots.taken.push(Slot {
            id,
            bytes,
            stop,
            task: None,
        });
        let reservation = Reservation {
            traces: self.clone(),
            id,
            registered: false,
        };
        let controls = TraceControls {
            stop: stop_rx,
            stall_timeout: limits.stall_timeout,
        };
        Ok((reservation, controls))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The list is consistent after every operation; a panic elsewhere
        // while holding it tells nothing about it.
        self.inner.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reservation {
    /// Hands the started trace's `task` to the node, so that
    /// [`RunningTraces::stop_all`] can end it and its place is given back
    /// when it ends; returns the future its stream watches for the node
    /// stopping.
    fn register(mut self, task: JoinHandle<()>) -> Result<BoxFuture<'static, ()>, RunGadgetError> {
        let mut slots = self.traces.slots();
        if *self.traces.inner.stopping.borrow() {
            // stop_all has taken the list already; dropping `self` is a
            // no-op then.
            task.abort();
            return Err(RunGadgetError::Stopping);
        }
        let Some(slot) = slots.taken.iter_mut().find(|s| s.id == self.id) else {
            task.abort();
            return Err(RunGadgetError::Internal("trace slot lost".into()));
        };
        slot.task = Some(task);
        drop(slots);
        self.registered = true;
        let mut stopping = self.traces.inner.stopping.subscribe();
        Ok(Box::pin(async move {
            // An error means the service is gone: stopping too.
            let _ = stopping.wait_for(|stop| *stop).await;
        }))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.registered {
            // The trace did not start: its place is free again.
            let id = self.id;
            self.traces.slots().taken.retain(|s| s.id != id);
        }
    }
}

/// `bytes` for people: MiB to one decimal, or KiB below one MiB.
fn show_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
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
    // Readiness asks for the node service, liveness for the server ("",
    // always SERVING while it answers): a node where no gadget can run is
    // not ready, so the rollout shows it, but is not restarted over and over
    // for what a restart does not change.
    if service.can_run_a_gadget() {
        health.set_serving::<GadgetNodeServer<NodeService>>().await;
    } else {
        tracing::error!(
            "no gadget can run on this node (see the reasons above): reporting NOT_SERVING, \
             so the pod is not ready"
        );
        health
            .set_not_serving::<GadgetNodeServer<NodeService>>()
            .await;
    }
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
    #[error("{SERVICE_NAME} at {address} is {status}; the node's log says why")]
    NotServing {
        /// Where.
        address: ListenAddress,
        /// What it said (`NOT_SERVING`, `UNKNOWN`).
        status: &'static str,
    },
}

/// What a health check asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthProbe {
    /// Whether the node can run traces ([`SERVICE_NAME`]): not when no
    /// gadget can run here, nor while stopping.
    Readiness,
    /// Whether the server answers at all (the empty service name).
    Liveness,
}

impl HealthProbe {
    fn service(self) -> &'static str {
        match self {
            HealthProbe::Readiness => SERVICE_NAME,
            HealthProbe::Liveness => "",
        }
    }
}

/// Asks the node at `address`, over gRPC health, what `probe` asks; all of
/// it within `timeout`.
pub async fn check_health(
    address: &ListenAddress,
    probe: HealthProbe,
    timeout: Duration,
) -> Result<(), HealthCheckError> {
    let channel = address.connect(timeout).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: probe.service().to_string(),
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
    fn a_kernel_refusing_the_node_is_permission_denied_with_what_to_check() {
        let refused = |errno| {
            RunGadgetError::from(Box::new(TraceStartError::Attach(trace::AttachError {
                program: "tracepoint__syscalls__sys_enter_openat",
                target: crate::gadgets::AttachTarget::Tracepoint {
                    category: "syscalls",
                    name: "sys_enter_openat",
                },
                source: Box::new(aya::programs::ProgramError::SyscallError(
                    aya::sys::SyscallError {
                        call: "perf_event_open",
                        io_error: std::io::Error::from_raw_os_error(errno),
                    },
                )),
            })))
        };
        for errno in [libc::EPERM, libc::EACCES] {
            let status = Status::from(refused(errno));
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains("perf_event_open"), "{status:?}");
            assert!(
                status.message().contains("SELinux or AppArmor"),
                "{status:?}"
            );
        }
        let other = Status::from(refused(libc::ENOENT));
        assert_eq!(other.code(), Code::FailedPrecondition, "{other:?}");
        assert!(!other.message().contains("SELinux"), "{other:?}");
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
        let info =
            service(&[Feature::TracepointPrograms, Feature::RingBuf, Feature::Btf]).describe();
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
        let service = service(&[Feature::TracepointPrograms, Feature::RingBuf, Feature::Btf]);
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
        let traces = RunningTraces::new(NodeLimits::default());
        // A trace that ignores the stop signal is aborted after STOP_TIMEOUT.
        let task = tokio::spawn(std::future::pending::<()>());
        let stopping = traces
            .reserve(1)
            .ok()
            .unwrap()
            .0
            .register(task)
            .ok()
            .unwrap();
        // One that ends when told, as the reader does after its final status.
        let (reservation, controls) = traces.reserve(1).ok().unwrap();
        let mut told = controls.stop;
        let (flushed_tx, flushed_rx) = oneshot::channel::<()>();
        let obedient = tokio::spawn(async move {
            let _ = told.wait_for(|stop| *stop).await;
            let _ = flushed_tx.send(());
        });
        let _stopping = reservation.register(obedient).ok().unwrap();
        assert_eq!(traces.count(), 2);
        assert_eq!(traces.stop_all().await, 2);
        assert_eq!(traces.count(), 0);
        assert!(
            flushed_rx.await.is_ok(),
            "a trace is told to end, not only aborted"
        );
        tokio::time::timeout(Duration::from_secs(1), stopping)
            .await
            .expect("streams are told the node stops");
        assert!(matches!(traces.reserve(1), Err(RunGadgetError::Stopping)));
    }

    fn limits(max_traces: usize, memory_budget: u64) -> NodeLimits {
        NodeLimits {
            max_traces,
            memory_budget,
            ..NodeLimits::default()
        }
    }

    #[tokio::test]
    async fn traces_beyond_the_limit_are_resource_exhausted_until_one_ends() {
        let traces = RunningTraces::new(limits(1, u64::MAX));
        let (first, _) = traces.reserve(1).ok().unwrap();
        let refused = Status::from(traces.reserve(1).err().unwrap());
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("already runs 1 traces")
                && refused.message().contains("--max-traces 1"),
            "{}",
            refused.message()
        );
        // A trace that failed to load gives its place back at once.
        drop(first);
        let (end_tx, end_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = end_rx.await;
        });
        let _stopping = traces
            .reserve(1)
            .ok()
            .unwrap()
            .0
            .register(task)
            .ok()
            .unwrap();
        assert!(traces.reserve(1).is_err());
        // A running one, once its task ends.
        end_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while traces.count() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert!(traces.reserve(1).is_ok());
    }

    #[tokio::test]
    async fn a_trace_is_told_to_stop_by_its_id_only() {
        let traces = RunningTraces::new(NodeLimits::default());
        let (first, first_controls) = traces.reserve(1).ok().unwrap();
        let (second, second_controls) = traces.reserve(1).ok().unwrap();
        assert_ne!(first.id, second.id);
        assert!(traces.stop(second.id));
        assert!(*second_controls.stop.borrow());
        assert!(!*first_controls.stop.borrow());
        assert!(!traces.stop(second.id.wrapping_add(1000)));
        // Once it is gone, there is nothing to stop.
        let id = first.id;
        drop(first);
        assert!(!traces.stop(id));
    }

    #[test]
    fn ring_buffers_and_queues_beyond_the_budget_are_resource_exhausted() {
        const MIB: u64 = 1024 * 1024;
        let default_trace = trace::memory_bound(trace::DEFAULT_RING_BUFFER_BYTES);
        let largest_trace = trace::memory_bound(trace::MAX_RING_BUFFER_BYTES);
        let traces = RunningTraces::new(limits(100, 2 * default_trace));
        let _one = traces.reserve(default_trace).ok().unwrap();
        let _two = traces.reserve(default_trace).ok().unwrap();
        let full = Status::from(traces.reserve(default_trace).err().unwrap());
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert!(
            full.message()
                .contains("0 KiB of the node's trace memory budget"),
            "{}",
            full.message()
        );
        let never = Status::from(traces.reserve(largest_trace).err().unwrap());
        assert_eq!(never.code(), Code::ResourceExhausted);
        assert!(
            never.message().contains("274.0 MiB") && never.message().contains("--ring-buffer-size"),
            "{}",
            never.message()
        );

        // The defaults fit what they say in the pod's 512 MiB.
        let defaults = NodeLimits::default();
        assert!(defaults.memory_budget <= 320 * MIB);
        assert!(DEFAULT_MAX_TRACES as u64 * default_trace <= defaults.memory_budget);
        assert!(largest_trace + 2 * default_trace <= defaults.memory_budget);
    }

    #[tokio::test]
    async fn health_is_not_serving_when_no_gadget_can_run_but_the_server_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let address: ListenAddress = format!("unix://{}", dir.path().join("n.sock").display())
            .parse()
            .unwrap();
        let service = service(&[]);
        assert!(!service.can_run_a_gadget());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(address.bind().await.unwrap(), service, async {
            let _ = stop_rx.await;
        }));
        let timeout = Duration::from_secs(5);
        let readiness = check_health(&address, HealthProbe::Readiness, timeout).await;
        match readiness {
            Err(HealthCheckError::NotServing { status, .. }) => assert_eq!(status, "NOT_SERVING"),
            other => panic!("a node with no gadget must not be ready: {other:?}"),
        }
        check_health(&address, HealthProbe::Liveness, timeout)
            .await
            .expect("the server itself is live");
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();

        // With the features a gadget needs, the same node is ready.
        let address: ListenAddress = format!("unix://{}", dir.path().join("r.sock").display())
            .parse()
            .unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let service = self::service(&[Feature::TracepointPrograms, Feature::RingBuf, Feature::Btf]);
        let server = tokio::spawn(serve(address.bind().await.unwrap(), service, async {
            let _ = stop_rx.await;
        }));
        check_health(&address, HealthProbe::Readiness, timeout)
            .await
            .unwrap();
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
