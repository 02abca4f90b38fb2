//! One trace: a gadget loaded into the kernel for the length of the trace,
//! its ring buffer drained in batches, and the batches handed to whoever
//! asked (the gRPC service, or the local mode).
//!
//! Every trace has its own copy of the gadget's object, maps and programs, so
//! two traces never disturb each other; dropping the trace detaches and frees
//! all of it.

use std::collections::HashMap as StdHashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use bytes::BytesMut;
use gadget_proto::v1;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::clock::BootToWall;
use crate::gadgets::{self, InvalidParams, PreparedGadget};
use crate::identity::{Identity, IdentityResolver, Workload};
use crate::selector::ContainerSelector;

/// Ring buffer size when the request does not say.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 512 * 1024;
/// The largest ring buffer a request may ask for.
pub const MAX_RING_BUFFER_BYTES: u32 = 256 * 1024 * 1024;
/// How often the reader drains the ring buffer when the kernel did not wake
/// it: the kernel submits without a wakeup, so this bounds a row's latency.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// Batches waiting for a slow client before the node drops (and counts).
pub const QUEUE_BATCHES: usize = 64;
/// A batch is sent once it holds this many record bytes, to bound messages.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A request a node cannot run as asked; becomes `INVALID_ARGUMENT`.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    /// The client speaks another protocol version.
    #[error(
        "client speaks protocol version {client}, this node speaks version {node}; \
         use matching kubectl-gadget and gadget-node releases"
    )]
    Protocol {
        /// The client's version.
        client: u32,
        /// This node's version.
        node: u32,
    },
    /// No gadget by that name.
    #[error("unknown gadget {name:?}; this node has: {known}")]
    UnknownGadget {
        /// What was asked for.
        name: String,
        /// What there is.
        known: String,
    },
    /// The gadget's parameters.
    #[error("{gadget}: {source}")]
    Params {
        /// The gadget.
        gadget: String,
        /// What is wrong.
        source: InvalidParams,
    },
    /// The container selector.
    #[error("{0}")]
    Selector(String),
    /// The ring buffer size.
    #[error("ring buffer of {0} bytes is above the limit of {MAX_RING_BUFFER_BYTES}")]
    RingBuffer(u32),
}

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
    #[error("attaching {program} to {category}/{tracepoint}: {source}")]
    Attach {
        /// The program.
        program: &'static str,
        /// Tracepoint category.
        category: &'static str,
        /// Tracepoint.
        tracepoint: &'static str,
        /// What aya said (boxed, see `Load`).
        source: Box<aya::programs::ProgramError>,
    },
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

/// A validated trace request: parsed and checked, nothing loaded yet.
pub struct TracePlan {
    /// The gadget with its parameters.
    pub gadget: Box<dyn PreparedGadget>,
    /// Which containers (and whether the host) to follow.
    pub selector: ContainerSelector,
    /// Only this process (thread group id).
    pub pid: Option<u32>,
    /// Only this user.
    pub uid: Option<u32>,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Stop after this long.
    pub timeout: Option<Duration>,
}

impl TracePlan {
    /// Checks a request as it came over the wire.
    pub fn from_proto(request: &v1::RunGadgetRequest) -> Result<Self, InvalidRequest> {
        if request.protocol_version != gadget_proto::PROTOCOL_VERSION {
            return Err(InvalidRequest::Protocol {
                client: request.protocol_version,
                node: gadget_proto::PROTOCOL_VERSION,
            });
        }
        let gadget =
            gadgets::find(&request.gadget).ok_or_else(|| InvalidRequest::UnknownGadget {
                name: request.gadget.clone(),
                known: gadgets::names().join(", "),
            })?;
        let prepared =
            gadget
                .prepare(request.params.as_ref())
                .map_err(|source| InvalidRequest::Params {
                    gadget: request.gadget.clone(),
                    source,
                })?;
        let selector = ContainerSelector::from_proto(&request.selector.clone().unwrap_or_default())
            .map_err(|err| InvalidRequest::Selector(err.to_string()))?;
        let filter = request.filter.unwrap_or_default();
        Ok(TracePlan {
            gadget: prepared,
            selector,
            pid: filter.pid,
            uid: filter.uid,
            ring_buffer_bytes: ring_buffer_size(request.ring_buffer_bytes)?,
            timeout: (request.timeout_seconds > 0)
                .then(|| Duration::from_secs(request.timeout_seconds.into())),
        })
    }
}

/// The ring buffer size the kernel accepts for a requested one: a power of
/// two number of pages.
fn ring_buffer_size(requested: u32) -> Result<u32, InvalidRequest> {
    if requested > MAX_RING_BUFFER_BYTES {
        return Err(InvalidRequest::RingBuffer(requested));
    }
    let requested = if requested == 0 {
        DEFAULT_RING_BUFFER_BYTES
    } else {
        requested
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    Ok(requested.max(page).next_power_of_two())
}

/// How the kernel side filters by cgroup, derived from the selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CgroupFilter {
    /// Look cgroups up in `cgroup_verdicts` at all (1), or trace every
    /// cgroup (0, the host included).
    enabled: u32,
}

impl CgroupFilter {
    fn for_selector(selector: &ContainerSelector) -> Self {
        CgroupFilter {
            enabled: u32::from(!(selector.include_host && selector.is_everything())),
        }
    }
}

/// What every gadget object has in common, found after load.
struct CommonMaps {
    ring: AsyncFd<RingBuf<MapData>>,
    verdicts: BpfHashMap<MapData, u64, u32>,
    lost: PerCpuArray<MapData, u64>,
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
}

/// Loads and attaches the gadget of `request` and starts draining it.
///
/// The kernel filter follows containers as `identity` learns of them: whoever
/// runs traces also runs [`IdentityResolver::refresh_periodically`], since a
/// container the kernel filters out never shows up in a lookup.
pub fn start(
    request: TracePlan,
    identity: Arc<IdentityResolver>,
) -> Result<Trace, TraceStartError> {
    let name = request.gadget.name();
    crate::tracefs::ensure_mounted().map_err(TraceStartError::Tracefs)?;
    let filter = CgroupFilter::for_selector(&request.selector);
    let pid = request.pid.unwrap_or(0);
    let uid = request.uid.unwrap_or(0);
    let filter_pid = u32::from(request.pid.is_some());
    let filter_uid = u32::from(request.uid.is_some());
    // Wake the reader early when a quarter of the buffer is in use, so a
    // burst is drained well before the kernel has to drop.
    let wakeup_bytes = u64::from(request.ring_buffer_bytes / 4);

    let mut loader = EbpfLoader::new();
    loader
        .set_global("targ_filter_pid", &filter_pid, true)
        .set_global("targ_pid", &pid, true)
        .set_global("targ_filter_uid", &filter_uid, true)
        .set_global("targ_uid", &uid, true)
        .set_global("targ_filter_cgroup", &filter.enabled, true)
        .set_global("targ_wakeup_bytes", &wakeup_bytes, true)
        .set_max_entries("events", request.ring_buffer_bytes);
    let mut ebpf = request
        .gadget
        .load(&mut loader)
        .map_err(|source| TraceStartError::Load {
            gadget: name,
            source: Box::new(source),
        })?;
    let mut maps = common_maps(&mut ebpf, name)?;

    // Fill the allow-set before any program runs, so the first events are
    // already filtered.
    let mut selection = Selection::default();
    let mut warnings = Vec::new();
    if filter.enabled != 0 {
        // Containers created since the last periodic rescan count too.
        if let Err(err) = identity.rescan() {
            warnings.push(format!("cannot list containers: {err}"));
        }
        warnings.extend(selection.sync(&mut maps.verdicts, &request.selector, &identity));
    }

    let program_ids = attach(&mut ebpf, request.gadget.as_ref(), &mut warnings)?;

    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let reader = Reader {
        _ebpf: ebpf,
        maps,
        gadget: request.gadget,
        selector: request.selector,
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
    };
    let task = tokio::spawn(reader.run(request.timeout));
    Ok(Trace {
        events: rx,
        program_ids,
        task,
    })
}

fn common_maps(ebpf: &mut Ebpf, gadget: &'static str) -> Result<CommonMaps, TraceStartError> {
    fn take<T>(
        ebpf: &mut Ebpf,
        gadget: &'static str,
        map: &'static str,
        convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
    ) -> Result<T, TraceStartError> {
        let found = ebpf.take_map(map).ok_or_else(|| TraceStartError::Map {
            gadget,
            map,
            reason: "missing from the object".into(),
        })?;
        convert(found).map_err(|err| TraceStartError::Map {
            gadget,
            map,
            reason: err.to_string(),
        })
    }
    let ring = take(ebpf, gadget, "events", RingBuf::try_from)?;
    // SAFETY: the ring buffer owns its map fd, open and unchanged until the
    // AsyncFd (which owns the ring buffer) is dropped.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|err| TraceStartError::Map {
            gadget,
            map: "events",
            reason: format!("cannot poll the ring buffer: {err}"),
        })?;
    Ok(CommonMaps {
        ring,
        verdicts: take(ebpf, gadget, "cgroup_verdicts", BpfHashMap::try_from)?,
        lost: take(ebpf, gadget, "lost_events", PerCpuArray::try_from)?,
    })
}

/// Loads and attaches every program; returns their kernel ids.
fn attach(
    ebpf: &mut Ebpf,
    gadget: &dyn PreparedGadget,
    warnings: &mut Vec<String>,
) -> Result<Vec<u32>, TraceStartError> {
    let mut ids = Vec::new();
    for point in gadget.attach_points() {
        let fail = |source| TraceStartError::Attach {
            program: point.program,
            category: point.category,
            tracepoint: point.name,
            source: Box::new(source),
        };
        let program: &mut TracePoint = ebpf
            .program_mut(point.program)
            .ok_or_else(|| fail(aya::programs::ProgramError::NotLoaded))?
            .try_into()
            .map_err(fail)?;
        program.load().map_err(fail)?;
        if let Err(err) = program.attach(point.category, point.name) {
            if point.required {
                return Err(fail(err));
            }
            warnings.push(format!(
                "{}/{} is not available on this kernel, its events are not traced",
                point.category, point.name
            ));
            continue;
        }
        if let Ok(info) = program.info() {
            ids.push(info.id());
        }
    }
    Ok(ids)
}

/// The cgroup verdicts the trace has put into the kernel map.
#[derive(Default)]
struct Selection {
    verdicts: StdHashMap<u64, u32>,
    /// Generation of the identity resolver at the last sync.
    generation: u64,
}

impl Selection {
    /// Brings the kernel map in line with what the selector says of every
    /// container known now. Returns a warning when the map is full.
    fn sync(
        &mut self,
        map: &mut BpfHashMap<MapData, u64, u32>,
        selector: &ContainerSelector,
        identity: &IdentityResolver,
    ) -> Option<String> {
        let mut wanted = StdHashMap::new();
        for (cgroup_id, workload) in identity.containers() {
            wanted.insert(cgroup_id, u32::from(selector.matches(&workload)));
        }
        // The host's cgroups too: the kernel passes cgroups it has no
        // verdict for to userspace.
        let host = u32::from(selector.include_host);
        for cgroup_id in identity.host_cgroups() {
            wanted.entry(cgroup_id).or_insert(host);
        }
        self.generation = identity.generation();
        let gone: Vec<u64> = self
            .verdicts
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            let _ = map.remove(&id);
            self.verdicts.remove(&id);
        }
        let mut failed = 0;
        for (id, verdict) in wanted {
            if self.verdicts.get(&id) != Some(&verdict) {
                if map.insert(id, verdict, 0).is_ok() {
                    self.verdicts.insert(id, verdict);
                } else {
                    failed += 1;
                }
            }
        }
        (failed > 0).then(|| {
            format!(
                "{failed} cgroups could not be added to the kernel filter: \
                 their events are filtered by the node instead"
            )
        })
    }

    /// Whether to keep an event of `cgroup_id`, with its workload (`None`
    /// for the host), or `None` to drop it. A cgroup with a verdict is
    /// judged by it; any other was let through by the kernel for want of
    /// one (new since the last sync, often a container that just
    /// started): it is judged here, and the verdict goes into the kernel
    /// map so that its next events are judged there.
    ///
    /// A cgroup no walk has seen yet is worth one walk of the tree now,
    /// whatever the resolver's rate limit (a new container's first exec is
    /// what a security trace is for), but only if `may_walk`, which the
    /// caller sets once per batch: many new cgroups at once cost one walk
    /// per batch, not one each. One still unknown after that is judged as
    /// the host's and not learned.
    fn admit(
        &mut self,
        cgroup_id: u64,
        map: &mut BpfHashMap<MapData, u64, u32>,
        selector: &ContainerSelector,
        identity: &IdentityResolver,
        may_walk: &mut bool,
    ) -> Option<Option<Arc<Workload>>> {
        if let Some(&verdict) = self.verdicts.get(&cgroup_id) {
            // The verdict now, not the one the kernel had: an event of a
            // cgroup that had none when it happened and was judged
            // since is kept only if it is selected.
            return (verdict != 0).then(|| identity.resolve(cgroup_id));
        }
        let mut known = identity.classify(cgroup_id);
        if matches!(known, Identity::Unknown) && std::mem::take(may_walk) {
            if let Err(err) = identity.rescan() {
                tracing::warn!(error = %err, "cannot rescan cgroups");
            }
            known = identity.classify(cgroup_id);
        }
        let (workload, learned) = match known {
            Identity::Workload(workload) => (Some(workload), true),
            Identity::Host => (None, true),
            Identity::Unknown => (None, false),
        };
        let keep = selector.accepts(workload.as_deref());
        // A full map is not an error here: events are judged by the node
        // until a sync finds room.
        if learned && map.insert(cgroup_id, u32::from(keep), 0).is_ok() {
            self.verdicts.insert(cgroup_id, u32::from(keep));
        }
        keep.then_some(workload)
    }
}

/// Record bytes of one drain, copied once into one buffer; events slice it.
#[derive(Default)]
struct BatchBuilder {
    buffer: BytesMut,
    records: Vec<Range<usize>>,
}

impl BatchBuilder {
    /// Copies records out of the ring buffer until it is empty or the batch
    /// is full. Returns true when records are left.
    fn fill(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        while self.buffer.len() < MAX_BATCH_BYTES {
            let Some(record) = ring.next() else {
                return false;
            };
            let start = self.buffer.len();
            self.buffer.extend_from_slice(&record);
            self.records.push(start..self.buffer.len());
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Decodes the records into one batch message; counts malformed ones.
    /// `admit` says, once per cgroup of the batch, whether its events are
    /// kept, and with which workload (`None`: the host).
    fn finish(
        &mut self,
        gadget: &dyn PreparedGadget,
        mut admit: impl FnMut(u64) -> Option<Option<Arc<Workload>>>,
        malformed: &mut u64,
    ) -> v1::EventBatch {
        let bytes = self.buffer.split().freeze();
        let clock = BootToWall::now();
        let mut batch = v1::EventBatch {
            workloads: Vec::new(),
            events: Vec::with_capacity(self.records.len()),
        };
        // cgroup id → 1-based index into batch.workloads, 0 for the host;
        // `None` when its events are dropped.
        let mut workload_index: StdHashMap<u64, Option<u32>> = StdHashMap::new();
        for range in self.records.drain(..) {
            let record = bytes.slice(range);
            let mut event = v1::Event::default();
            if gadget.decode(&record, &mut event).is_err() {
                *malformed += 1;
                continue;
            }
            event.timestamp_ns = clock.wall_ns(event.timestamp_ns);
            let cgroup_id = event.process.as_ref().map_or(0, |p| p.cgroup_id);
            let index = *workload_index.entry(cgroup_id).or_insert_with(|| {
                admit(cgroup_id).map(|workload| {
                    workload.map_or(0, |workload| {
                        batch.workloads.push(workload_to_proto(&workload));
                        batch.workloads.len() as u32
                    })
                })
            });
            let Some(index) = index else { continue };
            event.workload = index;
            batch.events.push(event);
        }
        batch
    }
}

/// The wire form of a workload.
pub fn workload_to_proto(w: &Workload) -> v1::Workload {
    v1::Workload {
        namespace: w.namespace.clone(),
        pod: w.pod.clone(),
        container: w.container.clone(),
        pod_uid: w.pod_uid.clone(),
        container_id: w.container_id.clone(),
        labels: w
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The task that owns a running gadget.
struct Reader {
    /// Holds the programs and their links: dropping it detaches them.
    _ebpf: Ebpf,
    maps: CommonMaps,
    gadget: Box<dyn PreparedGadget>,
    selector: ContainerSelector,
    cgroup_filter: CgroupFilter,
    selection: Selection,
    identity: Arc<IdentityResolver>,
    tx: mpsc::Sender<v1::RunGadgetResponse>,
    status: v1::TraceStatus,
    status_dirty: bool,
    batch: BatchBuilder,
}

impl Reader {
    async fn run(mut self, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes: watch::Receiver<u64> = self.identity.subscribe();
        self.flush_status();
        loop {
            tokio::select! {
                ready = self.maps.ring.readable_mut() => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                }
                _ = drain_tick.tick() => {}
                changed = changes.changed(), if self.cgroup_filter.enabled != 0 => {
                    if changed.is_ok() {
                        self.resync();
                    }
                }
                _ = self.tx.closed() => return,
                _ = sleep_until(deadline) => {
                    self.drain();
                    self.update_lost();
                    // The last word waits for room: the counters must arrive.
                    let last = v1::RunGadgetResponse {
                        kind: Some(v1::run_gadget_response::Kind::Status(self.status.clone())),
                    };
                    let _ = self.tx.send(last).await;
                    return;
                }
            }
            self.drain();
            self.update_lost();
            self.flush_status();
        }
    }

    fn resync(&mut self) {
        if let Some(warning) =
            self.selection
                .sync(&mut self.maps.verdicts, &self.selector, &self.identity)
        {
            self.status.warnings.push(warning);
            self.status_dirty = true;
        }
    }

    /// Empties the ring buffer into batches and queues them.
    fn drain(&mut self) {
        loop {
            let more = self.batch.fill(self.maps.ring.get_mut());
            if self.batch.is_empty() {
                return;
            }
            let before = self.status.malformed;
            let (selection, map) = (&mut self.selection, &mut self.maps.verdicts);
            let (selector, identity) = (&self.selector, &self.identity);
            let filtered = self.cgroup_filter.enabled != 0;
            let mut may_walk = true;
            let admit = |cgroup_id| {
                if filtered {
                    selection.admit(cgroup_id, map, selector, identity, &mut may_walk)
                } else {
                    Some(identity.resolve(cgroup_id))
                }
            };
            let batch = self
                .batch
                .finish(self.gadget.as_ref(), admit, &mut self.status.malformed);
            self.status_dirty |= self.status.malformed != before;
            let events = batch.events.len() as u64;
            if events > 0 {
                let message = v1::RunGadgetResponse {
                    kind: Some(v1::run_gadget_response::Kind::Events(batch)),
                };
                // Never wait for the client here: a slow client must not
                // stall the ring buffer. What does not fit is counted.
                if self.tx.try_send(message).is_err() {
                    self.status.lost_node += events;
                    self.status_dirty = true;
                }
            }
            if !more {
                return;
            }
        }
    }

    /// Reads the kernel's count of records the full ring buffer refused.
    fn update_lost(&mut self) {
        if let Ok(per_cpu) = self.maps.lost.get(&0, 0) {
            let lost: u64 = per_cpu.iter().sum();
            if lost != self.status.lost_kernel {
                self.status.lost_kernel = lost;
                self.status_dirty = true;
            }
        }
    }

    /// Sends the status when it changed and the queue has room; otherwise
    /// tries again next time (counters are cumulative, nothing is lost).
    fn flush_status(&mut self) {
        if !self.status_dirty {
            return;
        }
        let message = v1::RunGadgetResponse {
            kind: Some(v1::run_gadget_response::Kind::Status(self.status.clone())),
        };
        if self.tx.try_send(message).is_ok() {
            self.status_dirty = false;
            self.status.warnings.clear();
            self.status.started = false;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_sizes_are_pages_and_powers_of_two() {
        assert_eq!(ring_buffer_size(0).unwrap(), DEFAULT_RING_BUFFER_BYTES);
        assert_eq!(ring_buffer_size(1).unwrap(), 4096);
        assert_eq!(ring_buffer_size(5000).unwrap(), 8192);
        assert!(ring_buffer_size(MAX_RING_BUFFER_BYTES + 1).is_err());
    }
}
