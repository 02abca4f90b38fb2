//! Running a trace on many nodes and printing their events as one stream,
//! in timestamp order.
//!
//! Every node's RunGadget stream is read concurrently; events go into one
//! [`MergeWindow`] and come out oldest first once the window has passed
//! them, are rendered into a buffer, and each batch is written to stdout
//! with one write. Status messages go where the [`Renderer`] says (stderr
//! beside human rows, stdout as JSON objects beside JSON rows), and are
//! printed as they arrive, not merged: they carry no timestamp.
//!
//! A node that cannot be reached, refuses the trace or fails in the middle
//! of it is reported with its name, and the others go on.

use std::future::Future;
use std::io::{self, Write};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered, SelectAll, Stream, StreamExt};
use gadget_proto::v1::{self, run_gadget_response, EventBatch, TraceStatus};

use crate::error_line::status_message;
use crate::merge::MergeWindow;
use crate::render::{OutputFormat, Renderer, Row, StatusStream};
use crate::request::TraceRequest;
use crate::row_output::{RowOutput, WriterThread};

/// How long an event is held back so that the events of other nodes that
/// happened before it can catch up. Nodes drain their ring buffers every
/// 50 ms and send a batch per drain, so a node's event reaches the client up
/// to ~50 ms plus the network (and a port-forward through the API server)
/// after it happened; 250 ms covers that with room for clock skew between
/// nodes, while still feeling live.
pub const MERGE_WINDOW: Duration = Duration::from_millis(250);

/// Rows are released once the oldest is this far past its window, each
/// time with every row then due: the timer ticks every millisecond, and
/// releasing at each tick made a write, a wakeup of the writer thread and
/// a turn of the merge loop per millisecond of rows (2,766 writes for
/// 300,000 rows). A row is printed at most this much later.
pub const RELEASE_SLACK: Duration = Duration::from_millis(10);

/// Events buffered at most; beyond it the oldest are printed before their
/// window has passed. At ~500 bytes an event this bounds the client to tens
/// of megabytes when the nodes send faster than the terminal prints.
pub const MERGE_CAPACITY: usize = 100_000;

/// How long, after Ctrl-C, the client waits for the nodes to end their
/// traces with a final status (it asks them with `StopTrace`) before it
/// cancels the calls. A node answers within a drain and a round trip; one
/// without `StopTrace` has sent its changed counters at its last drain
/// (every 50 ms), and they are on their way, through a port-forward of the
/// API server maybe.
pub const FINAL_STATUS_WAIT: Duration = Duration::from_secs(2);

/// How long after a trace's `-t` timeout the client waits for the nodes to
/// end their streams before it stops them itself. Nodes count the timeout
/// from when the gadget is loaded, which can take seconds after the client
/// started.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(30);

/// What happens on one node, as the trace's driver sees it. The stream ends
/// when the node's trace ends.
#[derive(Debug)]
pub enum NodeEvent {
    /// The node answered and its name is known.
    Named(String),
    /// The gadget runs on the node; its responses follow.
    Started,
    /// How to end the node's trace with a final status, when the node can.
    Stoppable(StopTrace),
    /// A message of the node's RunGadget stream.
    Response(v1::RunGadgetResponse),
    /// The node failed, for this reason (one line); nothing more comes
    /// from it.
    Failed(String),
}

/// The events of one node.
pub type NodeEvents = BoxStream<'static, NodeEvent>;

/// Asks a node to end its trace the way a timeout does: its last events and
/// a final status, then the end of its stream.
pub struct StopTrace(Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>);

impl StopTrace {
    /// A stop made by calling `stop` (once).
    pub fn new(stop: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) -> StopTrace {
        StopTrace(Box::new(stop))
    }
}

impl std::fmt::Debug for StopTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopTrace")
    }
}

/// The trace id a node's RunGadget response carries in its
/// [`gadget_proto::TRACE_ID_HEADER`], if it does.
pub fn trace_id<T>(response: &tonic::Response<T>) -> Option<u64> {
    response
        .metadata()
        .get(gadget_proto::TRACE_ID_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Why a trace is stopped before all its nodes have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C: not a failure.
    Interrupted,
    /// The timeout passed long ago and some node is still sending: those
    /// nodes failed.
    Overran(Duration),
}

/// How events are merged.
#[derive(Debug, Clone, Copy)]
pub struct MergeSettings {
    /// See [`MERGE_WINDOW`].
    pub window: Duration,
    /// See [`MERGE_CAPACITY`].
    pub capacity: usize,
    /// See [`FINAL_STATUS_WAIT`].
    pub final_status_wait: Duration,
}

impl Default for MergeSettings {
    fn default() -> MergeSettings {
        MergeSettings {
            window: MERGE_WINDOW,
            capacity: MERGE_CAPACITY,
            final_status_wait: FINAL_STATUS_WAIT,
        }
    }
}

/// How a trace went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSummary {
    /// Every node, by the name it is shown with.
    pub nodes: Vec<String>,
    /// The nodes that failed, in the order of `nodes`.
    pub failed: Vec<String>,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// Whether stdout was closed (e.g. `| head`), which stops the trace.
    pub output_closed: bool,
    /// Events printed out of order because they arrived too late.
    pub out_of_order: u64,
    /// Events printed before their window passed because too many were
    /// waiting.
    pub released_early: u64,
}

impl TraceSummary {
    /// What to tell the user when some node failed; `None` when none did.
    pub fn failure(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        Some(format!(
            "the trace failed on {} of {} nodes: {}",
            self.failed.len(),
            self.nodes.len(),
            self.failed.join(", ")
        ))
    }
}

/// Says on stderr what the trace enforces, if anything (`run` is the
/// request as the nodes got it), then prints the merged events of `nodes`
/// to stdout until every node has ended, the request's timeout has long
/// passed, or Ctrl-C. The plugin gives it the nodes' gRPC streams;
/// `gadget-node trace` (local mode) an in-process node's.
pub async fn print_trace(
    request: &TraceRequest,
    run: &v1::RunGadgetRequest,
    nodes: Vec<(String, NodeEvents)>,
) -> io::Result<TraceSummary> {
    if let Some(notice) = request.enforcement_notice(run) {
        // Before any row: who can be killed, for as long as the trace runs.
        let mut line = Vec::new();
        crate::render::write_escaped(&mut line, notice.as_bytes());
        line.push(b'\n');
        let _ = io::stderr().write_all(&line);
    }
    let timeout = request.timeout_seconds();
    let stop = async move {
        let overran = async {
            if timeout == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(timeout.into()) + TIMEOUT_GRACE).await;
            Stop::Overran(TIMEOUT_GRACE)
        };
        let interrupted = async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Stop::Interrupted,
                // No SIGINT handler: Ctrl-C kills the process instead.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            stop = interrupted => stop,
            stop = overran => stop,
        }
    };
    let mut renderer = Renderer::new(request.output.clone());
    // Rows are written a batch at a time, on a thread of their own (see
    // `row_output`), and nothing else prints to stdout meanwhile.
    let mut stdout = WriterThread::spawn(io::stdout())?;
    let mut stderr = io::stderr();
    let summary = merge_and_print(
        nodes,
        &mut renderer,
        MergeSettings::default(),
        stop,
        &mut stdout,
        &mut stderr,
    )
    .await;
    // The last rows, written before the trace is over.
    let written = stdout.finish();
    let mut summary = summary?;
    match written {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => summary.output_closed = true,
        Err(err) => return Err(err),
    }
    Ok(summary)
}

/// A node's answer to RunGadget as its events, after `named`: the call's
/// error, or `Started` (and `stop`, if any) and then each response (a
/// broken stream fails the node). Shared by the gRPC client and the
/// in-process local mode.
pub fn gadget_events<S>(
    named: NodeEvent,
    answer: Result<S, tonic::Status>,
    stop: Option<StopTrace>,
) -> NodeEvents
where
    S: Stream<Item = Result<v1::RunGadgetResponse, tonic::Status>> + Send + 'static,
{
    match answer {
        Err(status) => stream::iter([named, NodeEvent::Failed(status_message(&status))]).boxed(),
        Ok(responses) => {
            let events = responses.map(|item| match item {
                Ok(response) => NodeEvent::Response(response),
                Err(status) => NodeEvent::Failed(status_message(&status)),
            });
            let stop = stop.map(NodeEvent::Stoppable);
            stream::iter(
                [Some(named), Some(NodeEvent::Started), stop]
                    .into_iter()
                    .flatten(),
            )
            .chain(events)
            .boxed()
        }
    }
}

/// An event waiting in the merge window: its place in its batch, which
/// stays where it was decoded. Moving each decoded event (a few hundred
/// bytes) into the window and out again was 8.6% of the client's cycles
/// in perf; without it the merge harness runs 4.2% fewer instructions
/// (callgrind of `merge_throughput 1 100000 json`), and
/// holds up to 8 MiB more at its peak, as a batch is freed once its last
/// event is printed.
struct Pending {
    node: usize,
    batch: Arc<EventBatch>,
    index: usize,
}

impl Pending {
    fn event(&self) -> &v1::Event {
        &self.batch.events[self.index]
    }
}

/// What the driver knows about one node.
struct NodeState {
    name: String,
    /// Why it failed, once it has.
    failure: Option<String>,
    ended: bool,
    /// Its latest loss counters (cumulative), for the summary after Ctrl-C.
    losses: TraceStatus,
    /// How to end its trace with a final status, until used.
    stop: Option<StopTrace>,
}

/// Reads every node's events, merges them by timestamp and prints them to
/// `out` (statuses to `out` or `err`, as the renderer's format says) until
/// every node has ended or `stop` completes. The buffered events are
/// printed in both cases. After an interrupt the nodes are read for
/// [`MergeSettings::final_status_wait`] more (or until they end), then the
/// losses of each node that had any are summed up.
///
/// `nodes` pairs each node's stand-in name (its name, or its address until
/// it says its name) with its events.
pub async fn merge_and_print<O: RowOutput, E: Write>(
    nodes: Vec<(String, NodeEvents)>,
    renderer: &mut Renderer,
    settings: MergeSettings,
    stop: impl Future<Output = Stop>,
    out: &mut O,
    err: &mut E,
) -> io::Result<TraceSummary> {
    let mut printer = Printer {
        renderer,
        header_written: false,
        out: Vec::new(),
        err: Vec::new(),
        nodes: Vec::with_capacity(nodes.len()),
    };
    let mut streams = SelectAll::new();
    for (index, (label, events)) in nodes.into_iter().enumerate() {
        printer.nodes.push(NodeState {
            name: label,
            failure: None,
            ended: false,
            losses: TraceStatus::default(),
            stop: None,
        });
        // A marker after the last event tells the driver the node ended.
        let events = events
            .map(move |event| (index, Some(event)))
            .chain(stream::once(async move { (index, None) }));
        streams.push(events.boxed());
    }
    let mut merge = MergeWindow::new(settings.window, settings.capacity);
    let mut summary = TraceSummary::default();
    let mut stop = pin!(stop);
    let mut stopped = false;
    // Set at Ctrl-C: until then, the nodes end their traces with a final
    // status, or what they sent before it comes in.
    let mut final_wait: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut stop_calls = FuturesUnordered::new();

    loop {
        if printer.flush(out, err).await? == Flushed::OutputClosed {
            summary.output_closed = true;
            break;
        }
        let slack_ns = RELEASE_SLACK.as_nanos() as u64;
        let wait = merge.next_deadline().map(|deadline| {
            let now = now_ns();
            Duration::from_nanos(deadline.saturating_add(slack_ns).saturating_sub(now))
        });
        tokio::select! {
            biased;
            reason = &mut stop, if !stopped => {
                stopped = true;
                match reason {
                    Stop::Interrupted => {
                        summary.interrupted = true;
                        final_wait = Some(Box::pin(tokio::time::sleep(settings.final_status_wait)));
                        for node in &mut printer.nodes {
                            if let Some(StopTrace(stop)) = node.stop.take() {
                                if !node.ended && node.failure.is_none() {
                                    stop_calls.push(stop());
                                }
                            }
                        }
                    }
                    Stop::Overran(grace) => {
                        for index in 0..printer.nodes.len() {
                            let node = &printer.nodes[index];
                            if !node.ended && node.failure.is_none() {
                                printer.fail(index, &overran(grace));
                            }
                        }
                        break;
                    }
                }
            }
            () = wait_for(&mut final_wait) => break,
            Some(()) = stop_calls.next(), if !stop_calls.is_empty() => {}
            next = streams.next() => match next {
                None => break,
                Some((index, Some(event))) => {
                    printer.handle(index, event, &mut merge);
                }
                Some((index, None)) => printer.nodes[index].ended = true,
            },
            () = sleep_for(wait) => {}
        }
        let now = now_ns();
        if merge
            .next_deadline()
            .is_some_and(|deadline| deadline.saturating_add(slack_ns) <= now)
        {
            for pending in merge.pop_ready(now) {
                printer.row(&pending);
            }
        }
    }
    // Cancels the calls that still run, which stops their traces.
    drop(streams);
    for pending in merge.finish() {
        printer.row(&pending);
    }
    if summary.interrupted {
        printer.loss_summary();
    }
    summary.out_of_order = merge.out_of_order();
    summary.released_early = merge.released_early();
    let window_ms = settings.window.as_millis();
    if summary.out_of_order > 0 {
        let _ = writeln!(
            printer.err,
            "warning: {} events arrived more than {window_ms} ms late and were printed out of order",
            summary.out_of_order
        );
    }
    if summary.released_early > 0 {
        let _ = writeln!(
            printer.err,
            "warning: {} events were printed before their {window_ms} ms merge window passed, \
             because more than {} were waiting",
            summary.released_early, settings.capacity
        );
    }
    if !summary.output_closed && printer.flush(out, err).await? == Flushed::OutputClosed {
        summary.output_closed = true;
    }
    summary.nodes = printer.nodes.iter().map(|node| node.name.clone()).collect();
    summary.failed = printer
        .nodes
        .iter()
        .filter(|node| node.failure.is_some())
        .map(|node| node.name.clone())
        .collect();
    Ok(summary)
}

/// Why a node still tracing long after the trace's timeout failed.
fn overran(grace: Duration) -> String {
    format!(
        "still tracing {} seconds after the trace's timeout; stopped by the client",
        grace.as_secs()
    )
}

/// Completes with `sleep`, or never when there is none.
async fn wait_for(sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `wait`, or forever when there is nothing to wait for.
async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch: the clock of the
/// events' timestamps.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    Ok,
    OutputClosed,
}

/// Renders into two buffers, one per output stream, written out together.
struct Printer<'r> {
    renderer: &'r mut Renderer,
    /// The header is printed once a node has started, or before the first
    /// row: not when every node fails before that.
    header_written: bool,
    out: Vec<u8>,
    err: Vec<u8>,
    nodes: Vec<NodeState>,
}

impl Printer<'_> {
    fn handle(&mut self, index: usize, event: NodeEvent, merge: &mut MergeWindow<Pending>) {
        if self.nodes[index].failure.is_some() {
            return;
        }
        match event {
            NodeEvent::Named(name) => self.nodes[index].name = name,
            NodeEvent::Started => self.header(),
            NodeEvent::Stoppable(stop) => self.nodes[index].stop = Some(stop),
            NodeEvent::Failed(reason) => self.fail(index, &reason),
            NodeEvent::Response(response) => match response.kind {
                Some(run_gadget_response::Kind::Events(batch)) => {
                    let held = batch.held;
                    let batch = Arc::new(batch);
                    for (event_index, event) in batch.events.iter().enumerate() {
                        let timestamp = event.timestamp_ns;
                        let pending = Pending {
                            node: index,
                            batch: batch.clone(),
                            index: event_index,
                        };
                        let early = if held {
                            merge.push_held(index, timestamp, pending)
                        } else {
                            merge.push(index, timestamp, pending)
                        };
                        if let Some(early) = early {
                            self.row(&early);
                        }
                    }
                }
                Some(run_gadget_response::Kind::Status(status)) => {
                    let losses = &mut self.nodes[index].losses;
                    losses.lost_kernel = losses.lost_kernel.max(status.lost_kernel);
                    losses.lost_node = losses.lost_node.max(status.lost_node);
                    losses.malformed = losses.malformed.max(status.malformed);
                    self.status(index, &status);
                    if !status.error.is_empty() {
                        self.nodes[index].failure = Some(status.error);
                    }
                }
                None => {}
            },
        }
    }

    fn header(&mut self) {
        if !self.header_written {
            self.renderer.write_header(&mut self.out);
            self.header_written = true;
        }
    }

    fn row(&mut self, pending: &Pending) {
        self.header();
        // Workload indexes are 1-based; 0 is the host. An index past the
        // batch's workloads is shown as the host rather than dropped.
        let event = pending.event();
        let workload = usize::try_from(event.workload)
            .ok()
            .and_then(|index| index.checked_sub(1))
            .and_then(|index| pending.batch.workloads.get(index));
        let row = Row {
            node: &self.nodes[pending.node].name,
            workload,
            event,
        };
        self.renderer.write_row(&mut self.out, &row);
    }

    fn status(&mut self, index: usize, status: &TraceStatus) {
        let name = &self.nodes[index].name;
        match self.renderer.status_stream() {
            StatusStream::Stdout => {
                self.renderer.write_status(&mut self.out, name, status);
                // An error also goes to the person watching stderr.
                if !status.error.is_empty() {
                    let error_only = TraceStatus {
                        error: status.error.clone(),
                        ..TraceStatus::default()
                    };
                    Renderer::new(OutputFormat::Compact).write_status(
                        &mut self.err,
                        name,
                        &error_only,
                    );
                }
            }
            StatusStream::Stderr => self.renderer.write_status(&mut self.err, name, status),
        }
    }

    /// After Ctrl-C, each node's total losses, one line per node that lost
    /// anything, beside the human formats (JSON readers have the counters
    /// of the last status object).
    fn loss_summary(&mut self) {
        if self.renderer.status_stream() != StatusStream::Stderr {
            return;
        }
        for node in &self.nodes {
            let losses = &node.losses;
            if losses.lost_kernel + losses.lost_node + losses.malformed == 0 {
                continue;
            }
            let label = format!("{}: in total", node.name);
            self.renderer.write_status(&mut self.err, &label, losses);
        }
    }

    /// Reports the node as failed, unless it already reported this error.
    fn fail(&mut self, index: usize, message: &str) {
        let node = &mut self.nodes[index];
        if node.failure.as_deref() == Some(message) {
            return;
        }
        node.failure = Some(message.to_string());
        let status = TraceStatus {
            error: message.to_string(),
            ..TraceStatus::default()
        };
        self.status(index, &status);
    }

    /// Writes what was rendered, each stream in one write.
    async fn flush<O: RowOutput, E: Write>(
        &mut self,
        out: &mut O,
        err: &mut E,
    ) -> io::Result<Flushed> {
        if !self.err.is_empty() {
            // A closed stderr is no reason to stop tracing.
            let _ = err.write_all(&self.err).and_then(|()| err.flush());
            self.err.clear();
        }
        if !self.out.is_empty() {
            match out.write_rows(&mut self.out).await {
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(Flushed::OutputClosed)
                }
                other => other?,
            }
        }
        Ok(Flushed::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use gadget_proto::v1::{event, EventBatch, ExecEvent, Process, RunGadgetResponse, Workload};

    /// The real window: wide enough that the tests' deliberate delays
    /// (tens of ms) stay inside it on a loaded machine.
    const WINDOW: Duration = MERGE_WINDOW;
    /// Short, as the tests that wait it out do so on purpose.
    const FINAL_WAIT: Duration = Duration::from_millis(300);

    fn settings() -> MergeSettings {
        MergeSettings {
            window: WINDOW,
            capacity: 1000,
            final_status_wait: FINAL_WAIT,
        }
    }

    /// An exec event whose pid says which one it is.
    fn exec(pid: u32, timestamp_ns: u64, workload: u32) -> v1::Event {
        v1::Event {
            timestamp_ns,
            process: Some(Process {
                pid,
                ..Process::default()
            }),
            workload,
            kind: Some(event::Kind::Exec(ExecEvent::default())),
        }
    }

    fn batch(events: Vec<v1::Event>) -> NodeEvent {
        NodeEvent::Response(RunGadgetResponse {
            kind: Some(run_gadget_response::Kind::Events(EventBatch {
                workloads: vec![Workload {
                    namespace: "ns".into(),
                    pod: "web".into(),
                    ..Workload::default()
                }],
                events,
                held: false,
            })),
        })
    }

    fn status(status: TraceStatus) -> NodeEvent {
        NodeEvent::Response(RunGadgetResponse {
            kind: Some(run_gadget_response::Kind::Status(status)),
        })
    }

    fn renderer(spec: &str) -> Renderer {
        Renderer::new(OutputFormat::parse(crate::gadgets::trace_exec::GADGET, spec).unwrap())
    }

    /// A node whose events the test sends when it likes.
    fn fake_node() -> (mpsc::UnboundedSender<NodeEvent>, NodeEvents) {
        let (sender, receiver) = mpsc::unbounded();
        (sender, receiver.boxed())
    }

    async fn run(
        nodes: Vec<(String, NodeEvents)>,
        spec: &str,
        stop: impl Future<Output = Stop>,
    ) -> (TraceSummary, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let summary = merge_and_print(
            nodes,
            &mut renderer(spec),
            settings(),
            stop,
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
        (
            summary,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// The whitespace-separated cells of each line.
    fn cells(out: &str) -> Vec<Vec<&str>> {
        out.lines()
            .map(|line| line.split_whitespace().collect())
            .collect()
    }

    fn never() -> impl Future<Output = Stop> {
        std::future::pending()
    }

    #[tokio::test]
    async fn skewed_node_streams_are_printed_in_timestamp_order() {
        let base = now_ns();
        let ms = 1_000_000;
        let (a, a_events) = fake_node();
        let (b, b_events) = fake_node();
        let (c, c_events) = fake_node();
        let feeder = async move {
            a.unbounded_send(NodeEvent::Named("node-a".into())).unwrap();
            b.unbounded_send(NodeEvent::Named("node-b".into())).unwrap();
            c.unbounded_send(NodeEvent::Named("node-c".into())).unwrap();
            // Node a is on time, node b's batch comes 40 ms late with
            // older events, node c sends one event at a time.
            a.unbounded_send(batch(vec![
                exec(10, base + 10 * ms, 1),
                exec(40, base + 40 * ms, 0),
            ]))
            .unwrap();
            c.unbounded_send(batch(vec![exec(30, base + 30 * ms, 0)]))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(40)).await;
            b.unbounded_send(batch(vec![
                exec(5, base + 5 * ms, 0),
                exec(20, base + 20 * ms, 1),
            ]))
            .unwrap();
            c.unbounded_send(batch(vec![exec(35, base + 35 * ms, 1)]))
                .unwrap();
            drop((a, b, c));
        };
        let trace = run(
            vec![
                ("a".into(), a_events),
                ("b".into(), b_events),
                ("c".into(), c_events),
            ],
            "columns=node,pid,pod",
            never(),
        );
        let ((summary, out, err), ()) = tokio::join!(trace, feeder);
        assert_eq!(
            cells(&out),
            [
                vec!["NODE", "PID", "POD"],
                vec!["node-b", "5"],
                vec!["node-a", "10", "web"],
                vec!["node-b", "20", "web"],
                vec!["node-c", "30"],
                vec!["node-c", "35", "web"],
                vec!["node-a", "40"],
            ]
        );
        assert_eq!(err, "");
        assert_eq!(summary.nodes, ["node-a", "node-b", "node-c"]);
        assert!(summary.failed.is_empty());
        assert_eq!(summary.out_of_order, 0);
        assert!(!summary.interrupted);
    }

    fn held(events: Vec<v1::Event>) -> NodeEvent {
        let NodeEvent::Response(mut response) = batch(events) else {
            unreachable!()
        };
        if let Some(run_gadget_response::Kind::Events(batch)) = &mut response.kind {
            batch.held = true;
        }
        NodeEvent::Response(response)
    }

    /// A node sends a new container's first events once it is named, after
    /// newer rows were printed: they are printed, not counted as late.
    /// The same events in a batch not marked held are.
    #[tokio::test]
    async fn a_batch_the_node_held_is_printed_late_without_a_warning() {
        let (a, a_events) = fake_node();
        let trace = run(vec![("a".into(), a_events)], "columns=pid", never());
        let feeder = async move {
            let first = now_ns();
            a.unbounded_send(batch(vec![exec(1, now_ns(), 0)])).unwrap();
            tokio::time::sleep(WINDOW * 2).await;
            a.unbounded_send(held(vec![exec(2, first - 1, 1)])).unwrap();
            a.unbounded_send(batch(vec![exec(3, first - 1, 1)]))
                .unwrap();
            drop(a);
        };
        let ((summary, out, err), ()) = tokio::join!(trace, feeder);
        assert_eq!(out, "PID\n1\n2\n3\n");
        assert_eq!(summary.out_of_order, 1, "only the batch not marked held");
        assert!(err.contains("1 events arrived more than"), "{err}");
    }

    #[tokio::test]
    async fn rows_are_held_for_the_window_then_released_without_waiting_for_the_end() {
        let (a, a_events) = fake_node();
        let (printed_tx, printed_rx) = tokio::sync::oneshot::channel();
        let trace = run(vec![("a".into(), a_events)], "columns=pid", never());
        let feeder = async move {
            a.unbounded_send(batch(vec![exec(1, now_ns(), 0)])).unwrap();
            // The node stays open: the row must come out by the window
            // alone. Wait well past it, then end the node.
            tokio::time::sleep(WINDOW * 3).await;
            printed_tx.send(()).unwrap();
            drop(a);
        };
        let ((summary, out, _), ()) = tokio::join!(trace, feeder);
        printed_rx.await.unwrap();
        assert_eq!(out, "PID\n1\n");
        assert!(summary.failed.is_empty());
    }

    #[tokio::test]
    async fn rows_due_within_the_release_slack_go_out_in_one_write() {
        /// Each write it was given, as text.
        #[derive(Default)]
        struct Writes(Vec<String>);
        impl Write for Writes {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.push(String::from_utf8(bytes.to_vec()).unwrap());
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (a, a_events) = fake_node();
        let mut writes = Writes::default();
        let mut err = Vec::new();
        let mut renderer = renderer("columns=pid");
        let trace = merge_and_print(
            vec![("a".into(), a_events)],
            &mut renderer,
            settings(),
            never(),
            &mut writes,
            &mut err,
        );
        let feeder = async move {
            // Five rows 2 ms apart: each due at its own timer tick, all
            // within the slack of the first.
            let base = now_ns();
            let step = 2_000_000;
            assert!(Duration::from_nanos(4 * step) < RELEASE_SLACK);
            let events = (0..5).map(|i| exec(i + 1, base + u64::from(i) * step, 0));
            a.unbounded_send(batch(events.collect())).unwrap();
            // The node stays open: the rows come out by the window alone.
            tokio::time::sleep(WINDOW * 3).await;
            drop(a);
        };
        let (summary, ()) = tokio::join!(trace, feeder);
        assert!(summary.unwrap().failed.is_empty());
        assert_eq!(writes.0, ["PID\n1\n2\n3\n4\n5\n"]);
    }

    #[tokio::test]
    async fn node_failing_mid_trace_is_named_and_the_others_go_on() {
        let base = now_ns();
        let (a, a_events) = fake_node();
        let (b, b_events) = fake_node();
        a.unbounded_send(NodeEvent::Named("node-a".into())).unwrap();
        b.unbounded_send(NodeEvent::Named("node-b".into())).unwrap();
        a.unbounded_send(batch(vec![exec(1, base + 1, 0)])).unwrap();
        b.unbounded_send(batch(vec![exec(2, base + 2, 0)])).unwrap();
        b.unbounded_send(NodeEvent::Failed("stream broke: connection reset".into()))
            .unwrap();
        // Anything after the failure is ignored.
        b.unbounded_send(batch(vec![exec(99, base + 3, 0)]))
            .unwrap();
        let feeder = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.unbounded_send(batch(vec![exec(4, base + 4, 0)])).unwrap();
            drop((a, b));
        };
        let trace = run(
            vec![("a".into(), a_events), ("b".into(), b_events)],
            "columns=node,pid",
            never(),
        );
        let ((summary, out, err), ()) = tokio::join!(trace, feeder);
        assert_eq!(
            out,
            "NODE             PID\nnode-a           1\nnode-b           2\nnode-a           4\n"
        );
        assert_eq!(err, "node-b: error: stream broke: connection reset\n");
        assert_eq!(summary.failed, ["node-b"]);
    }

    #[tokio::test]
    async fn node_that_never_connects_keeps_its_stand_in_name() {
        let events = stream::iter([NodeEvent::Failed(
            "cannot connect to gadget-node at unix:///run/x.sock: \
             No such file or directory (os error 2)"
                .into(),
        )])
        .boxed();
        let (summary, out, err) = run(
            vec![("unix:///run/x.sock".into(), events)],
            "columns=pid",
            never(),
        )
        .await;
        assert_eq!(out, "", "no header when no node started");
        assert_eq!(
            err,
            "unix:///run/x.sock: error: cannot connect to gadget-node at unix:///run/x.sock: \
             No such file or directory (os error 2)\n"
        );
        assert_eq!(summary.failed, ["unix:///run/x.sock"]);
    }

    #[tokio::test]
    async fn statuses_go_to_stderr_beside_columns_and_stdout_beside_json() {
        let events = || {
            stream::iter([
                NodeEvent::Named("node-a".into()),
                status(TraceStatus {
                    started: true,
                    ..TraceStatus::default()
                }),
                status(TraceStatus {
                    lost_kernel: 3,
                    ..TraceStatus::default()
                }),
            ])
            .boxed()
        };
        let (summary, out, err) = run(vec![("a".into(), events())], "columns=pid", never()).await;
        assert_eq!(out, "", "no header before the node has started");
        assert_eq!(
            err,
            "node-a: trace started\nnode-a: 3 events lost (ring buffer full)\n"
        );
        assert!(summary.failed.is_empty());

        let (_, out, err) = run(vec![("a".into(), events())], "json", never()).await;
        assert_eq!(err, "");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "status");
        assert_eq!(lines[0]["node"], "node-a");
        assert_eq!(lines[1]["lost_kernel"], 3);
    }

    #[tokio::test]
    async fn errors_in_json_mode_go_to_both_streams_once() {
        let events = stream::iter([
            NodeEvent::Named("node-a".into()),
            status(TraceStatus {
                error: "ring buffer: out of memory".into(),
                ..TraceStatus::default()
            }),
            // The stream then ends with the same error.
            NodeEvent::Failed("ring buffer: out of memory".into()),
        ])
        .boxed();
        let (summary, out, err) = run(vec![("a".into(), events)], "json", never()).await;
        assert_eq!(err, "node-a: error: ring buffer: out of memory\n");
        assert_eq!(out.lines().count(), 1, "{out}");
        let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(status["error"], "ring buffer: out of memory");
        assert_eq!(summary.failed, ["node-a"]);
    }

    #[tokio::test]
    async fn interrupt_flushes_the_window() {
        let (a, a_events) = fake_node();
        // Far in the future: only the flush at the end can print it.
        a.unbounded_send(batch(vec![exec(7, now_ns() + 3_600_000_000_000, 0)]))
            .unwrap();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Stop::Interrupted
        };
        let (summary, out, err) = run(vec![("a".into(), a_events)], "columns=pid", stop).await;
        assert_eq!(out, "PID\n7\n");
        assert_eq!(err, "");
        assert!(summary.interrupted);
        assert!(summary.failed.is_empty());
        drop(a);
    }

    #[tokio::test]
    async fn interrupt_waits_for_the_final_status_and_sums_up_the_losses() {
        let (a, a_events) = fake_node();
        let (b, b_events) = fake_node();
        a.unbounded_send(NodeEvent::Named("node-a".into())).unwrap();
        b.unbounded_send(NodeEvent::Named("node-b".into())).unwrap();
        a.unbounded_send(status(TraceStatus {
            lost_kernel: 3,
            ..TraceStatus::default()
        }))
        .unwrap();
        let (interrupted_tx, interrupted_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = interrupted_tx.send(());
            Stop::Interrupted
        };
        // What node a counted just before Ctrl-C arrives just after it.
        let feeder = async move {
            interrupted_rx.await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            a.unbounded_send(status(TraceStatus {
                lost_kernel: 5,
                malformed: 1,
                ..TraceStatus::default()
            }))
            .unwrap();
            // Node b never ends: the wait is bounded.
            (a, b)
        };
        let started = tokio::time::Instant::now();
        let ((summary, _, err), _nodes) = tokio::join!(
            run(
                vec![("a".into(), a_events), ("b".into(), b_events)],
                "columns=pid",
                stop,
            ),
            feeder
        );
        assert!(summary.interrupted);
        assert!(summary.failed.is_empty());
        assert!(
            started.elapsed() < FINAL_WAIT * 3,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err,
            "node-a: 3 events lost (ring buffer full)\n\
             node-a: 5 events lost (ring buffer full), 1 record malformed\n\
             node-a: in total: 5 events lost (ring buffer full), 1 record malformed\n"
        );
    }

    #[tokio::test]
    async fn interrupt_asks_each_node_to_stop_and_takes_its_final_status() {
        let (a, a_events) = fake_node();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        a.unbounded_send(NodeEvent::Named("node-a".into())).unwrap();
        a.unbounded_send(NodeEvent::Stoppable(StopTrace::new(move || {
            let _ = stopped_tx.send(());
            Box::pin(async {})
        })))
        .unwrap();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Stop::Interrupted
        };
        // The node, asked to stop, sends its final status and ends.
        let node = async move {
            stopped_rx.await.expect("the node is asked to stop");
            a.unbounded_send(status(TraceStatus {
                lost_node: 2,
                ..TraceStatus::default()
            }))
            .unwrap();
        };
        let settings = MergeSettings {
            final_status_wait: Duration::from_secs(60),
            ..settings()
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut renderer = renderer("columns=pid");
        let trace = merge_and_print(
            vec![("a".into(), a_events)],
            &mut renderer,
            settings,
            stop,
            &mut out,
            &mut err,
        );
        let (summary, ()) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(trace, node) })
                .await
                .expect("the trace ends with the node's stream, not the final wait");
        assert!(summary.unwrap().interrupted);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "node-a: 2 events dropped (client too slow)\n\
             node-a: in total: 2 events dropped (client too slow)\n"
        );
    }

    #[tokio::test]
    async fn interrupt_ends_as_soon_as_every_node_has_ended() {
        let (a, a_events) = fake_node();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Stop::Interrupted
        };
        let feeder = async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(a);
        };
        let settings = MergeSettings {
            final_status_wait: Duration::from_secs(60),
            ..settings()
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut renderer = renderer("columns=pid");
        let trace = merge_and_print(
            vec![("a".into(), a_events)],
            &mut renderer,
            settings,
            stop,
            &mut out,
            &mut err,
        );
        let (summary, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(trace, feeder)
        })
        .await
        .expect("no wait once the node ended");
        assert!(summary.unwrap().interrupted);
    }

    #[tokio::test]
    async fn nodes_still_running_long_after_the_timeout_fail() {
        let (a, a_events) = fake_node();
        let b_events = stream::iter([NodeEvent::Named("node-b".into())]).boxed();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Stop::Overran(Duration::from_secs(30))
        };
        let (summary, _, err) = run(
            vec![("node-a".into(), a_events), ("b".into(), b_events)],
            "columns=pid",
            stop,
        )
        .await;
        assert_eq!(
            err,
            "node-a: error: still tracing 30 seconds after the trace's timeout; stopped by the client\n"
        );
        assert_eq!(summary.failed, ["node-a"]);
        drop(a);
    }

    #[tokio::test]
    async fn closed_stdout_stops_the_trace_quietly() {
        struct ClosedPipe;
        impl Write for ClosedPipe {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (a, a_events) = fake_node();
        // The node goes on sending; only the closed output ends the trace.
        a.unbounded_send(NodeEvent::Started).unwrap();
        a.unbounded_send(batch(vec![exec(1, 1, 0)])).unwrap();
        let mut err = Vec::new();
        let summary = merge_and_print(
            vec![("a".into(), a_events)],
            &mut renderer("columns=pid"),
            settings(),
            never(),
            &mut ClosedPipe,
            &mut err,
        )
        .await
        .unwrap();
        assert!(summary.output_closed);
        drop(a);
    }

    #[tokio::test]
    async fn workload_index_past_the_batch_is_shown_as_the_host() {
        let events = stream::iter([batch(vec![exec(1, 1, 2), exec(2, 2, 1)])]).boxed();
        let (_, out, _) = run(vec![("a".into(), events)], "columns=pid,pod", never()).await;
        assert_eq!(
            cells(&out),
            [vec!["PID", "POD"], vec!["1"], vec!["2", "web"]]
        );
    }
}
