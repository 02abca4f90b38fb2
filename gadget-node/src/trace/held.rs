//! Events the node holds until their container is named.
//!
//! A container started during a trace runs its first process (its
//! entrypoint's exec, what a security trace is for) a second or so before
//! the kubelet writes the container's status, where the node learns the
//! container's name. Rather than send those events with the pod but no
//! container, the node holds them (see [`Judgement::hold`]) and sends them
//! once the name has arrived, or after [`STATUS_GRACE`] with what is known.
//! They then reach the client after newer events of other containers, in a
//! batch marked `held` so that it knows they are late on purpose.
//!
//! [`STATUS_GRACE`]: super::verdicts::STATUS_GRACE

use std::collections::{HashMap as StdHashMap, HashSet};

use bytes::Bytes;
use gadget_proto::v1;

use crate::clock::BootToWall;
use crate::gadgets::PreparedGadget;

use super::batch::add_workload;
use super::verdicts::Judgement;

/// Record bytes a trace holds at most. A new container rarely makes more
/// than a few events before it is named; one that makes more has its
/// events sent as they come, unnamed, once this is full.
pub(super) const MAX_HELD_BYTES: usize = 1024 * 1024;

/// The events a trace holds, by cgroup.
pub(super) struct HeldEvents {
    cgroups: StdHashMap<u64, HeldCgroup>,
    /// Record bytes of all the events held.
    bytes: usize,
    /// Cgroups whose events did not fit: not held again.
    overflowed: HashSet<u64>,
    /// [`MAX_HELD_BYTES`], smaller in tests.
    limit: usize,
}

impl Default for HeldEvents {
    fn default() -> Self {
        HeldEvents {
            cgroups: StdHashMap::new(),
            bytes: 0,
            overflowed: HashSet::new(),
            limit: MAX_HELD_BYTES,
        }
    }
}

/// The events held of one cgroup.
#[derive(Default)]
struct HeldCgroup {
    /// Oldest first.
    events: Vec<v1::Event>,
    /// Their records' bytes.
    bytes: usize,
}

impl HeldEvents {
    /// Whether events of `cgroup_id` may be held: not once they overflowed.
    pub(super) fn may_hold(&self, cgroup_id: u64) -> bool {
        !self.overflowed.contains(&cgroup_id)
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// Holds the event of `record`, decoded again from a copy so that it
    /// does not keep its batch's buffer alive. Returns false, holding
    /// nothing, when it does not fit: the caller then sends `cgroup_id`'s
    /// held events (see [`HeldEvents::take`]) and this one at once, and its
    /// later events are not held.
    pub(super) fn hold(
        &mut self,
        cgroup_id: u64,
        record: &[u8],
        gadget: &dyn PreparedGadget,
        clock: &BootToWall,
    ) -> bool {
        if self.bytes + record.len() > self.limit {
            self.overflowed.insert(cgroup_id);
            return false;
        }
        let copy = Bytes::copy_from_slice(record);
        let mut event = v1::Event::default();
        if gadget.decode(&copy, &mut event).is_err() {
            // It decoded from the batch's buffer: the same bytes decode.
            unreachable!("a record that decoded once decodes again");
        }
        event.timestamp_ns = clock.wall_ns(event.timestamp_ns);
        self.bytes += record.len();
        let held = self.cgroups.entry(cgroup_id).or_default();
        held.bytes += record.len();
        held.events.push(event);
        true
    }

    /// Takes `cgroup_id`'s held events, oldest first.
    pub(super) fn take(&mut self, cgroup_id: u64) -> Vec<v1::Event> {
        let held = self.cgroups.remove(&cgroup_id).unwrap_or_default();
        self.bytes -= held.bytes;
        held.events
    }

    /// Judges every held cgroup again, with `admit(cgroup_id, may_hold)`,
    /// and returns the events of those no longer held in one batch marked
    /// `held`. `force` (the trace ends) judges each on what is known now.
    /// Events judged without a complete identity are counted in `unjudged`.
    pub(super) fn release(
        &mut self,
        mut admit: impl FnMut(u64, bool) -> Judgement,
        force: bool,
        unjudged: &mut u64,
    ) -> v1::EventBatch {
        let mut batch = v1::EventBatch {
            held: true,
            ..Default::default()
        };
        let mut cgroups: Vec<u64> = self.cgroups.keys().copied().collect();
        // Oldest first across cgroups too, as far as one batch can.
        cgroups.sort_by_key(|id| self.cgroups[id].events.first().map(|e| e.timestamp_ns));
        for cgroup_id in cgroups {
            let judgement = admit(cgroup_id, !force);
            if judgement.hold {
                continue;
            }
            let events = self.take(cgroup_id);
            if judgement.unjudged {
                *unjudged += events.len() as u64;
            }
            let Some(index) = add_workload(&mut batch, judgement.keep) else {
                continue;
            };
            batch.events.extend(events.into_iter().map(|mut event| {
                event.workload = index;
                event
            }));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gadget_ebpf::ProcessRecord;
    use gadget_proto::v1::event;

    use super::*;
    use crate::gadgets::trace_open::record::{OpenEventHeader, AT_FDCWD};
    use crate::gadgets::{trace_open, KernelGadget};
    use crate::identity::Workload;
    use crate::trace::batch::BatchBuilder;

    const NEW: u64 = 7;
    const OLD: u64 = 8;

    /// An open of `path` by a process of cgroup `cgroup_id`, as the kernel
    /// writes it.
    fn open_record(cgroup_id: u64, boot_ns: u64, path: &str) -> Vec<u8> {
        let header = OpenEventHeader {
            proc: ProcessRecord {
                boot_ns,
                cgroup_id,
                pid: 42,
                ..Default::default()
            },
            ret: 3,
            dirfd: AT_FDCWD,
            path_len: path.len() as u32,
            ..Default::default()
        };
        let mut record = vec![0u8; std::mem::size_of::<OpenEventHeader>()];
        // SAFETY: OpenEventHeader is plain data and the buffer holds
        // exactly one; the write is unaligned.
        unsafe { std::ptr::write_unaligned(record.as_mut_ptr().cast(), header) };
        record.extend_from_slice(path.as_bytes());
        record
    }

    fn path(event: &v1::Event) -> &[u8] {
        match &event.kind {
            Some(event::Kind::Open(open)) => &open.path,
            other => panic!("not an open: {other:?}"),
        }
    }

    fn named(container: &str) -> Judgement {
        Judgement::judged(Some(Some(Arc::new(Workload {
            pod: "web".to_string(),
            container: container.to_string(),
            ..Default::default()
        }))))
    }

    /// One drain of `records` through a batch builder.
    fn drain(
        records: &[Vec<u8>],
        admit: impl FnMut(u64, bool) -> Judgement,
        held: &mut HeldEvents,
    ) -> (v1::EventBatch, u64) {
        let gadget = trace_open::TraceOpen.prepare(None).unwrap();
        let mut builder = BatchBuilder::default();
        builder.push_records(records);
        let (mut malformed, mut unjudged) = (0, 0);
        let batch = builder.finish(gadget.as_ref(), admit, held, &mut malformed, &mut unjudged);
        assert_eq!(malformed, 0);
        (batch, unjudged)
    }

    #[test]
    fn held_events_are_sent_in_order_with_the_name_that_came_later() {
        let records = [
            open_record(NEW, 1, "/etc/first"),
            open_record(OLD, 2, "/tmp/other"),
            open_record(NEW, 3, "/etc/second"),
        ];
        let mut held = HeldEvents::default();
        let admit = |cgroup_id, may_hold: bool| {
            assert!(may_hold);
            if cgroup_id == NEW {
                Judgement::hold()
            } else {
                named("old")
            }
        };
        let (batch, _) = drain(&records, admit, &mut held);
        assert!(!batch.held);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(path(&batch.events[0]), b"/tmp/other");

        // Still waiting: nothing is released.
        let mut unjudged = 0;
        let waiting = held.release(|_, _| Judgement::hold(), false, &mut unjudged);
        assert!(waiting.events.is_empty());
        assert!(!held.is_empty());

        // Named now.
        let released = held.release(|_, _| named("main"), false, &mut unjudged);
        assert!(released.held);
        let paths: Vec<_> = released.events.iter().map(path).collect();
        assert_eq!(paths, [&b"/etc/first"[..], b"/etc/second"]);
        for event in &released.events {
            let workload = &released.workloads[event.workload as usize - 1];
            assert_eq!(workload.container, "main");
        }
        assert!(held.is_empty());
        assert_eq!(unjudged, 0);
    }

    #[test]
    fn the_end_of_a_trace_sends_what_is_held_with_what_is_known() {
        let mut held = HeldEvents::default();
        drain(
            &[open_record(NEW, 1, "/etc/a")],
            |_, _| Judgement::hold(),
            &mut held,
        );
        let mut unjudged = 0;
        let admit = |_, may_hold: bool| {
            if may_hold {
                Judgement::hold()
            } else {
                Judgement {
                    unjudged: true,
                    ..named("")
                }
            }
        };
        let released = held.release(admit, true, &mut unjudged);
        assert_eq!(released.events.len(), 1);
        assert_eq!(unjudged, 1, "sent without the identity it waited for");
        assert!(held.is_empty());
    }

    /// A container that makes more events than fit is not held any more:
    /// what was held is sent first, then its events as they come.
    #[test]
    fn a_container_whose_held_events_overflow_is_sent_unnamed_in_order() {
        let mut held = HeldEvents {
            limit: 2 * open_record(NEW, 0, "/etc/a").len(),
            ..Default::default()
        };
        let records: Vec<_> = (1..=4)
            .map(|i| open_record(NEW, i, &format!("/etc/{i}")))
            .collect();
        let admit = |_, may_hold: bool| {
            if may_hold {
                Judgement::hold()
            } else {
                named("")
            }
        };
        let (batch, _) = drain(&records, admit, &mut held);
        assert!(batch.held, "it carries events that were held");
        let paths: Vec<_> = batch.events.iter().map(path).collect();
        assert_eq!(paths, [&b"/etc/1"[..], b"/etc/2", b"/etc/3", b"/etc/4"]);
        assert!(held.is_empty());
        assert!(!held.may_hold(NEW));
        assert!(held.may_hold(OLD));
    }

    #[test]
    fn held_events_do_not_keep_their_batch_buffer() {
        let gadget = trace_open::TraceOpen.prepare(None).unwrap();
        let mut builder = BatchBuilder::default();
        let record = open_record(NEW, 1, "/etc/a");
        builder.push_records(&[record.clone(), open_record(OLD, 2, "/tmp/b")]);
        let buffer = builder.buffer_range();
        let mut held = HeldEvents::default();
        let admit = |id, _| {
            if id == NEW {
                Judgement::hold()
            } else {
                named("")
            }
        };
        let (mut malformed, mut unjudged) = (0, 0);
        let batch = builder.finish(
            gadget.as_ref(),
            admit,
            &mut held,
            &mut malformed,
            &mut unjudged,
        );
        // The event sent slices the batch's buffer; the one held does not
        // (the copy was made while the buffer was alive, so the two cannot
        // share an address).
        assert!(buffer.contains(&(path(&batch.events[0]).as_ptr() as usize)));
        let kept = path(&held.cgroups[&NEW].events[0]);
        assert_eq!(kept, b"/etc/a");
        assert!(!buffer.contains(&(kept.as_ptr() as usize)));
        assert_eq!(held.bytes, record.len());
    }
}
