//! One trace: a gadget loaded into the kernel for the length of the trace,
//! its ring buffer drained in batches, and the batches handed to whoever
//! asked (the gRPC service, or the local mode).
//!
//! Every trace has its own copy of the gadget's object, maps and programs, so
//! two traces never disturb each other; dropping the trace detaches and frees
//! all of it.
//!
//! A trace goes through: [`TracePlan::from_proto`] (the request checked,
//! nothing touched), [`start`] (loaded with its constants, its cgroup
//! verdicts written, its programs attached), then its reader task (the ring
//! buffer drained into batches until the client leaves or time is up).

use std::sync::Arc;

use std::time::Duration;

use gadget_proto::v1;
use tokio::sync::{mpsc, oneshot, watch};

use crate::identity::IdentityResolver;
use crate::memory::ReleaseWhenFreed;

mod attach;
mod batch;
mod held;
mod load;
mod reader;
mod request;
mod verdicts;

pub use attach::{attach_programs, AttachError};
pub use batch::workload_to_proto;
pub use reader::{DRAIN_INTERVAL, FINAL_SEND_TIMEOUT, QUEUE_BATCHES};
pub use request::{InvalidRequest, TracePlan, DEFAULT_RING_BUFFER_BYTES, MAX_RING_BUFFER_BYTES};

use batch::BatchBuilder;
use held::HeldEvents;
use reader::Reader;
use verdicts::{CgroupFilter, Selection};

/// The kernel refused something the trace needs.
#[derive(Debug, thiserror::Error)]
pub enum TraceStartError {
    /// Loading the object (verifier, BTF, maps).
    #[error("loading {gadget}: {source}")]
    Load {
        /// The gadget.
        gadget: &'static str,
        /// What aya said, verifier log included (boxed: aya's errors are
        /// large and every `Result` in the load path would carry them).
        source: Box<aya::EbpfError>,
    },
    /// Loading or attaching one program.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// Tracepoints cannot be found.
    #[error("{0}")]
    Tracefs(String),
    /// A map the runtime expects in every gadget object.
    #[error("{gadget}: map {map}: {reason}")]
    Map {
        /// The gadget.
        gadget: &'static str,
        /// The map.
        map: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// The most memory one trace holds for its events: its ring buffer
/// (`ring_buffer_bytes`, kernel memory), its queue of batches waiting for
/// the client and the events it holds until their container is named
/// (see [`held`]), the last two counted twice: a decoded event (its structs, vectors and
/// strings) weighs about as much again as its record's bytes, which its
/// fields slice. The connection's send buffer and the allocator's slack are
/// left to the room between the node's budget and its memory limit.
pub fn memory_bound(ring_buffer_bytes: u32) -> u64 {
    u64::from(ring_buffer_bytes)
        + (2 * (QUEUE_BATCHES * batch::MAX_BATCH_BYTES + held::MAX_HELD_BYTES)) as u64
}

/// What ends a trace besides its client leaving or its timeout.
pub struct TraceControls {
    /// Turns true when the trace is to stop (its client asked, or the node
    /// stops): it sends its last events and final status, then ends.
    pub stop: watch::Receiver<bool>,
    /// The trace ends when its client takes nothing from its full queue for
    /// this long.
    pub stall_timeout: Duration,
}

impl Default for TraceControls {
    /// Never stopped from outside; a stalled client is given 30 seconds.
    fn default() -> Self {
        // A closed channel never turns true.
        let (_, stop) = watch::channel(false);
        TraceControls {
            stop,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// A running trace: its gadget attached, its events arriving on `events`.
///
/// Dropping the receiver ends the trace (the gadget is detached and freed
/// within one drain interval); so does the timeout.
pub struct Trace {
    /// Batches of events and status updates, in order.
    pub events: mpsc::Receiver<v1::RunGadgetResponse>,
    /// Kernel ids of the trace's programs (tests check they are gone after).
    pub program_ids: Vec<u32>,
    /// The trace's task; ends when the trace does.
    pub task: tokio::task::JoinHandle<()>,
    /// Why the trace ended on its own (a client that stopped reading),
    /// sent before `events` closes; nothing when it ended as asked.
    pub failure: oneshot::Receiver<String>,
    /// Gives the trace's freed memory back to the kernel once this and the
    /// trace's task are both dropped; whoever takes `events` keeps it until
    /// after dropping them (the batches still queued).
    pub release: ReleaseWhenFreed,
}

/// Loads and attaches the gadget of `plan` and starts draining it.
///
/// The kernel filter follows containers as `identity` learns of them: whoever
/// runs traces also runs [`IdentityResolver::refresh_periodically`], since a
/// container the kernel filters out never shows up in a lookup.
pub fn start(plan: TracePlan, identity: Arc<IdentityResolver>) -> Result<Trace, TraceStartError> {
    start_with(plan, identity, TraceControls::default())
}

/// [`start`], ended also as `controls` say.
pub fn start_with(
    plan: TracePlan,
    identity: Arc<IdentityResolver>,
    controls: TraceControls,
) -> Result<Trace, TraceStartError> {
    crate::tracefs::ensure_mounted().map_err(TraceStartError::Tracefs)?;
    let filter = CgroupFilter::for_selector(&plan.selector);
    let mut ebpf = load::load(&plan, filter)?;
    let mut maps = load::common_maps(&mut ebpf, plan.gadget.name(), plan.gadget.loss_counters())?;

    // Fill the allow-set before any program runs, so the first events are
    // already filtered.
    let mut selection = Selection::default();
    let mut warnings = Vec::new();
    if filter.enabled != 0 {
        // Containers created since the last periodic rescan count too.
        if let Err(err) = identity.rescan() {
            warnings.push(format!("cannot list containers: {err}"));
        }
        warnings.extend(selection.sync(&mut maps.verdicts, &plan.selector, &identity));
    }

    let program_ids = attach_programs(&mut ebpf, plan.gadget.attach_points(), &mut warnings)?;

    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let (failure_tx, failure) = oneshot::channel();
    let release = ReleaseWhenFreed::default();
    let reader = Reader {
        _ebpf: ebpf,
        maps,
        gadget: plan.gadget,
        selector: plan.selector,
        cgroup_filter: filter,
        selection,
        identity,
        tx,
        status: v1::TraceStatus {
            started: true,
            warnings,
            ..Default::default()
        },
        status_dirty: true,
        batch: BatchBuilder::default(),
        held: HeldEvents::default(),
        stall_timeout: controls.stall_timeout,
        failure: Some(failure_tx),
        _release: release.clone(),
    };
    let task = tokio::spawn(reader.run(plan.timeout, controls.stop));
    Ok(Trace {
        events: rx,
        program_ids,
        task,
        failure,
        release,
    })
}
