//! A batch: the records of one drain copied once into one buffer, then
//! decoded into one message whose events slice that buffer.

use std::collections::HashMap as StdHashMap;
use std::ops::Range;
use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use bytes::BytesMut;
use gadget_proto::v1;

use crate::clock::BootToWall;
use crate::gadgets::PreparedGadget;
use crate::identity::Workload;

use super::held::HeldEvents;
use super::verdicts::Judgement;

/// A batch is sent once it holds this many record bytes, to bound messages.
pub(super) const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Record bytes of one drain, copied once into one buffer; events slice it.
#[derive(Default)]
pub(super) struct BatchBuilder {
    buffer: BytesMut,
    records: Vec<Range<usize>>,
}

impl BatchBuilder {
    /// Copies records out of the ring buffer until it is empty or the batch
    /// is full. Returns true when records are left.
    pub(super) fn fill(&mut self, ring: &mut RingBuf<MapData>) -> bool {
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

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds records as [`BatchBuilder::fill`] would copy them.
    #[cfg(test)]
    pub(super) fn push_records(&mut self, records: &[Vec<u8>]) {
        for record in records {
            let start = self.buffer.len();
            self.buffer.extend_from_slice(record);
            self.records.push(start..self.buffer.len());
        }
    }

    /// The addresses of the buffer's bytes.
    #[cfg(test)]
    pub(super) fn buffer_range(&self) -> Range<usize> {
        let start = self.buffer.as_ptr() as usize;
        start..start + self.buffer.len()
    }

    /// Decodes the records into one batch message; counts malformed ones,
    /// and events of cgroups judged without a complete identity in
    /// `unjudged`. `admit(cgroup_id, may_hold)` says, once per cgroup of
    /// the batch, whether its events are kept, and with which workload
    /// (`None`: the host), or held until their container is named: those go
    /// to `held`. A cgroup whose held events overflow is judged again
    /// without holding, and its held events are sent first.
    pub(super) fn finish(
        &mut self,
        gadget: &dyn PreparedGadget,
        mut admit: impl FnMut(u64, bool) -> Judgement,
        held: &mut HeldEvents,
        malformed: &mut u64,
        unjudged: &mut u64,
    ) -> v1::EventBatch {
        let bytes = self.buffer.split().freeze();
        let clock = BootToWall::now();
        let mut batch = v1::EventBatch {
            workloads: Vec::new(),
            events: Vec::with_capacity(self.records.len()),
            held: false,
        };
        // What happens to each cgroup's events in this batch, judged once.
        let mut placements: StdHashMap<u64, Placement> = StdHashMap::new();
        for range in self.records.drain(..) {
            let record = bytes.slice(range);
            let mut event = v1::Event::default();
            if gadget.decode(&record, &mut event).is_err() {
                *malformed += 1;
                continue;
            }
            event.timestamp_ns = clock.wall_ns(event.timestamp_ns);
            let cgroup_id = event.process.as_ref().map_or(0, |p| p.cgroup_id);
            let placement = placements.entry(cgroup_id).or_insert_with(|| {
                let may_hold = held.may_hold(cgroup_id);
                Placement::of(admit(cgroup_id, may_hold), &mut batch)
            });
            if placement.held {
                if held.hold(cgroup_id, &record, gadget, &clock) {
                    continue;
                }
                // Overflowed: what was held goes first, then this event.
                *placement = Placement::of(admit(cgroup_id, false), &mut batch);
                let earlier = held.take(cgroup_id);
                if placement.unjudged {
                    *unjudged += earlier.len() as u64;
                }
                if let Some(index) = placement.index {
                    batch.held = true;
                    batch.events.extend(earlier.into_iter().map(|mut event| {
                        event.workload = index;
                        event
                    }));
                }
            }
            *unjudged += u64::from(placement.unjudged);
            let Some(index) = placement.index else {
                continue;
            };
            event.workload = index;
            batch.events.push(event);
        }
        batch
    }
}

/// What one batch does with the events of one cgroup.
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// Index into the batch's workloads (0: the host), or `None`: dropped.
    index: Option<u32>,
    /// Judged without a complete identity: each event is counted.
    unjudged: bool,
    /// Held until the container is named.
    held: bool,
}

impl Placement {
    fn of(judgement: Judgement, batch: &mut v1::EventBatch) -> Placement {
        Placement {
            index: add_workload(batch, judgement.keep.clone()),
            unjudged: judgement.unjudged,
            held: judgement.hold,
        }
    }
}

/// Adds what `keep` says to `batch`: the workload's index for its events
/// (1-based, 0 for the host), or `None` when they are dropped.
pub(super) fn add_workload(
    batch: &mut v1::EventBatch,
    keep: Option<Option<Arc<Workload>>>,
) -> Option<u32> {
    keep.map(|workload| {
        workload.map_or(0, |workload| {
            batch.workloads.push(workload_to_proto(&workload));
            batch.workloads.len() as u32
        })
    })
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

#[cfg(test)]
mod properties;
