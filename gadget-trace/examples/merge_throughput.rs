//! Bench-only harness run by `cargo xtask bench`: the client's cost of
//! merging and rendering the event streams of many nodes, without the
//! network.
//!
//! `merge_throughput NODES EVENTS FORMAT` simulates NODES nodes that send
//! EVENTS trace_open events in all, in batches of [`BATCH`], as fast as the
//! client takes them. Each batch is decoded from protobuf bytes, as the
//! client decodes a node's gRPC message, and stamped with the current time,
//! as a node stamps its events; the client's real [`merge_and_print`] (the
//! default merge window and capacity) merges them by time and renders them
//! as FORMAT (an `-o` value: json, columns, compact) to stdout. At the end
//! it prints one JSON object to stderr: the events printed, the wall-clock
//! seconds the merge took, and the merge's out-of-order and released-early
//! counts. CPU time and peak memory are measured by the caller, from the
//! process's resource usage.

use std::io::{self, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use gadget_proto::v1::{
    event, run_gadget_response, Event, EventBatch, OpenEvent, OpenSyscall, Process,
    RunGadgetResponse, Workload,
};
use gadget_trace::gadgets;
use gadget_trace::print::{merge_and_print, MergeSettings, NodeEvent, NodeEvents, Stop};
use gadget_trace::render::{OutputFormat, Renderer};
use prost::Message;

/// Events per batch: a node under load sends what it drained from its ring
/// buffer every 50 ms, hundreds of events at a time.
const BATCH: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [nodes, events, format] = args.as_slice() else {
        return Err("usage: merge_throughput NODES EVENTS FORMAT".into());
    };
    let nodes: usize = nodes.parse()?;
    let events: usize = events.parse()?;
    if nodes == 0 || events < nodes {
        return Err("NODES must be positive and EVENTS at least NODES".into());
    }
    let trace_open = gadgets::find(gadget_proto::TRACE_OPEN).ok_or("no trace_open gadget")?;
    let mut renderer = Renderer::new(OutputFormat::parse(trace_open, format)?);
    let encoded = bytes::Bytes::from(sample_batch().encode_to_vec());

    let streams: Vec<(String, NodeEvents)> = (0..nodes)
        .map(|node| {
            let name = format!("node-{node}");
            let batches = node_batches(encoded.clone(), events / nodes, node);
            let events = stream::iter([NodeEvent::Named(name.clone()), NodeEvent::Started])
                .chain(batches)
                .boxed();
            (name, events)
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr();
    let start = Instant::now();
    let summary = runtime.block_on(merge_and_print(
        streams,
        &mut renderer,
        MergeSettings::default(),
        std::future::pending::<Stop>(),
        &mut stdout,
        &mut stderr,
    ))?;
    let seconds = start.elapsed().as_secs_f64();
    stdout.flush()?;
    let printed = events / nodes * nodes;
    writeln!(
        stderr,
        r#"{{"events":{printed},"seconds":{seconds},"out_of_order":{},"released_early":{}}}"#,
        summary.out_of_order, summary.released_early
    )?;
    Ok(())
}

/// `count` events of one node, in batches decoded from `encoded` and
/// stamped with the time they are made.
fn node_batches(
    encoded: bytes::Bytes,
    count: usize,
    node: usize,
) -> impl futures::Stream<Item = NodeEvent> {
    stream::unfold(0usize, move |sent| {
        let encoded = encoded.clone();
        async move {
            if sent >= count {
                return None;
            }
            let mut batch = EventBatch::decode(encoded).expect("the sample batch decodes");
            batch.events.truncate(count - sent);
            let now = now_ns();
            let first_pid = u32::try_from(node).unwrap_or(u32::MAX);
            for (offset, event) in (0u64..).zip(&mut batch.events) {
                event.timestamp_ns = now + offset;
                if let Some(process) = &mut event.process {
                    process.pid = first_pid;
                }
            }
            let sent = sent + batch.events.len();
            let response = RunGadgetResponse {
                kind: Some(run_gadget_response::Kind::Events(batch)),
            };
            Some((NodeEvent::Response(response), sent))
        }
    })
}

/// A batch of [`BATCH`] opens of one container, with paths and names of a
/// typical length.
fn sample_batch() -> EventBatch {
    let workload = Workload {
        namespace: "shop".into(),
        pod: "checkout-7d9f8b6c5d-x2x4q".into(),
        container: "server".into(),
        pod_uid: "0b1d3c52-6a43-4c1e-9b7a-2f4c0e8d9a11".into(),
        container_id: "containerd://4f0c6e2b9d1a".into(),
        labels: Default::default(),
    };
    let event = Event {
        timestamp_ns: 0,
        process: Some(Process {
            pid: 4242,
            tid: 4242,
            ppid: 4200,
            uid: 1000,
            gid: 1000,
            comm: bytes::Bytes::from_static(b"checkout-server"),
            mntns_id: 4_026_532_200,
            cgroup_id: 12_345,
        }),
        workload: 1,
        kind: Some(event::Kind::Open(OpenEvent {
            fd: 7,
            error: 0,
            flags: 0o2_000_000,
            mode: 0,
            path: bytes::Bytes::from_static(
                b"/usr/lib/python3.11/site-packages/checkout/handlers.py",
            ),
            path_truncated: false,
            dirfd: None,
            syscall: OpenSyscall::Openat.into(),
        })),
    };
    EventBatch {
        workloads: vec![workload],
        events: vec![event; BATCH],
        held: false,
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch, the clock of the
/// events' timestamps.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}
