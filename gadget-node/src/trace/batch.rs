//! A batch: the records of one drain copied once into one buffer, then
//! decoded into one message whose events slice that buffer.

use std::collections::HashMap as StdHashMap;
use std::ops::Range;

use aya::maps::{MapData, RingBuf};
use bytes::BytesMut;
use gadget_proto::v1;

use crate::clock::BootToWall;
use crate::gadgets::PreparedGadget;
use crate::identity::Workload;

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

    /// Decodes the records into one batch message; counts malformed ones,
    /// and events of cgroups judged without a complete identity in
    /// `unjudged`. `admit` says, once per cgroup of the batch, whether its
    /// events are kept, and with which workload (`None`: the host).
    pub(super) fn finish(
        &mut self,
        gadget: &dyn PreparedGadget,
        mut admit: impl FnMut(u64) -> Judgement,
        malformed: &mut u64,
        unjudged: &mut u64,
    ) -> v1::EventBatch {
        let bytes = self.buffer.split().freeze();
        let clock = BootToWall::now();
        let mut batch = v1::EventBatch {
            workloads: Vec::new(),
            events: Vec::with_capacity(self.records.len()),
        };
        // cgroup id → 1-based index into batch.workloads, 0 for the host,
        // `None` when its events are dropped; and whether it was unjudged.
        let mut workload_index: StdHashMap<u64, (Option<u32>, bool)> = StdHashMap::new();
        for range in self.records.drain(..) {
            let record = bytes.slice(range);
            let mut event = v1::Event::default();
            if gadget.decode(&record, &mut event).is_err() {
                *malformed += 1;
                continue;
            }
            event.timestamp_ns = clock.wall_ns(event.timestamp_ns);
            let cgroup_id = event.process.as_ref().map_or(0, |p| p.cgroup_id);
            let (index, was_unjudged) = *workload_index.entry(cgroup_id).or_insert_with(|| {
                let judgement = admit(cgroup_id);
                let index = judgement.keep.map(|workload| {
                    workload.map_or(0, |workload| {
                        batch.workloads.push(workload_to_proto(&workload));
                        batch.workloads.len() as u32
                    })
                });
                (index, judgement.unjudged)
            });
            *unjudged += u64::from(was_unjudged);
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

#[cfg(test)]
mod properties;
