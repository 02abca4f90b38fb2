//! The task that owns a running gadget: it drains the ring buffer into
//! batches, keeps the kernel's cgroup verdicts in line with the containers,
//! and reports the trace's status, until the client leaves or stops
//! reading, time is up, or the node stops.

use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::Ebpf;
use gadget_proto::v1;
use tokio::sync::{mpsc, oneshot, watch};

use crate::gadgets::PreparedGadget;
use crate::identity::IdentityResolver;
use crate::memory::ReleaseWhenFreed;
use crate::selector::ContainerSelector;

use super::batch::BatchBuilder;
use super::held::HeldEvents;
use super::load::CommonMaps;
use super::verdicts::{CgroupFilter, Judgement, Selection};

/// How often the reader drains the ring buffer when the kernel did not wake
/// it: the kernel submits without a wakeup, so this bounds a row's latency.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// Batches waiting for a slow client before the node drops (and counts):
/// 0.4 s of drains, or up to 8 MiB of records (see
/// [`super::memory_bound`], which the node's memory budget charges). The
/// connection's flow-control window holds more in front of them.
pub const QUEUE_BATCHES: usize = 8;
/// How long the final status may wait for room in the queue: a client that
/// stopped reading must not keep the gadget attached after its trace ended.
pub const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The task that owns a running gadget.
pub(super) struct Reader {
    /// Holds the programs and their links: dropping it detaches them.
    pub(super) _ebpf: Ebpf,
    pub(super) maps: CommonMaps,
    pub(super) gadget: Box<dyn PreparedGadget>,
    pub(super) selector: ContainerSelector,
    pub(super) cgroup_filter: CgroupFilter,
    pub(super) selection: Selection,
    pub(super) identity: Arc<IdentityResolver>,
    pub(super) tx: mpsc::Sender<v1::RunGadgetResponse>,
    pub(super) status: v1::TraceStatus,
    pub(super) status_dirty: bool,
    pub(super) batch: BatchBuilder,
    /// Events of new containers waiting for their names.
    pub(super) held: HeldEvents,
    /// The trace ends once its client has taken nothing from a full queue
    /// for this long.
    pub(super) stall_timeout: Duration,
    /// Why the trace ended on its own, told before `tx` closes: its queue
    /// has no room left to say it.
    pub(super) failure: Option<oneshot::Sender<String>>,
    /// Last, so that it is dropped after everything above has been freed.
    pub(super) _release: ReleaseWhenFreed,
}

impl Reader {
    /// Runs the trace until the client leaves or stalls, `timeout` is up,
    /// or `stop` turns true.
    pub(super) async fn run(mut self, timeout: Option<Duration>, mut stop: watch::Receiver<bool>) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        // Since when the queue has been full with nothing taken.
        let mut full_since: Option<tokio::time::Instant> = None;
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
                _ = sleep_until(deadline) => return self.finish().await,
                _ = wait_true(&mut stop) => return self.finish().await,
            }
            // Checked before draining: a queue the last drain filled that is
            // still full now had nothing taken since.
            if self.tx.capacity() == 0 {
                let since = *full_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= self.stall_timeout {
                    tracing::warn!(
                        gadget = self.gadget.name(),
                        stalled_for = ?self.stall_timeout,
                        "the client took nothing from the full queue; ending the trace"
                    );
                    if let Some(failure) = self.failure.take() {
                        let _ = failure.send(format!(
                            "the trace ended: the client read nothing for {} s while the \
                             node's queue was full",
                            self.stall_timeout.as_secs()
                        ));
                    }
                    return;
                }
            } else {
                full_since = None;
            }
            // Held events first: they are older than what the ring
            // buffer holds now.
            self.release_held(false);
            self.drain();
            self.update_lost();
            self.flush_status();
        }
    }

    /// The last drain and the final status, which waits for room in the
    /// queue (the counters must arrive) for at most [`FINAL_SEND_TIMEOUT`].
    async fn finish(&mut self) {
        self.release_held(false);
        self.drain();
        self.release_held(true);
        self.update_lost();
        let last = v1::RunGadgetResponse {
            kind: Some(v1::run_gadget_response::Kind::Status(self.status.clone())),
        };
        let sent = tokio::time::timeout(FINAL_SEND_TIMEOUT, self.tx.send(last)).await;
        if sent.is_err() {
            tracing::warn!(
                gadget = self.gadget.name(),
                "the client took nothing for {FINAL_SEND_TIMEOUT:?}; ending the trace without its final status"
            );
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

    /// Sends the held events whose containers are named now, or have
    /// waited long enough (all of them when `force`: the trace ends).
    fn release_held(&mut self, force: bool) {
        if self.held.is_empty() {
            return;
        }
        let before = self.status.unjudged;
        let admit = judge(
            &mut self.selection,
            &mut self.maps.verdicts,
            &self.selector,
            &self.identity,
            self.cgroup_filter,
        );
        let batch = self.held.release(admit, force, &mut self.status.unjudged);
        self.status_dirty |= self.status.unjudged != before;
        self.send(batch);
    }

    /// Empties the ring buffer into batches and queues them.
    fn drain(&mut self) {
        loop {
            let more = self.batch.fill(self.maps.ring.get_mut());
            if self.batch.is_empty() {
                return;
            }
            let before = (self.status.malformed, self.status.unjudged);
            let admit = judge(
                &mut self.selection,
                &mut self.maps.verdicts,
                &self.selector,
                &self.identity,
                self.cgroup_filter,
            );
            let batch = self.batch.finish(
                self.gadget.as_ref(),
                admit,
                &mut self.held,
                &mut self.status.malformed,
                &mut self.status.unjudged,
            );
            self.status_dirty |= (self.status.malformed, self.status.unjudged) != before;
            self.send(batch);
            if !more {
                return;
            }
        }
    }

    /// Queues a batch that has events. Never waits for the client: a slow
    /// client must not stall the ring buffer. What does not fit is counted.
    fn send(&mut self, batch: v1::EventBatch) {
        let events = batch.events.len() as u64;
        if events == 0 {
            return;
        }
        let message = v1::RunGadgetResponse {
            kind: Some(v1::run_gadget_response::Kind::Events(batch)),
        };
        if self.tx.try_send(message).is_err() {
            self.status.lost_node += events;
            self.status_dirty = true;
        }
    }

    /// Reads the kernel's count of records the full ring buffer refused, and
    /// the gadget's own loss counters.
    fn update_lost(&mut self) {
        if let Ok(per_cpu) = self.maps.lost.get(&0, 0) {
            let lost: u64 = per_cpu.iter().sum();
            if lost != self.status.lost_kernel {
                self.status.lost_kernel = lost;
                self.status_dirty = true;
            }
        }
        for (counter, map, reported) in &mut self.maps.gadget_losses {
            let Ok(per_cpu) = map.get(&0, 0) else {
                continue;
            };
            let total: u64 = per_cpu.iter().sum();
            if total != *reported {
                *reported = total;
                self.status
                    .warnings
                    .push(format!("{}: {total} so far", counter.what));
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

/// The judge of one pass over events: `admit(cgroup_id, may_hold)` (see
/// [`Selection::admit`]). One pass walks the cgroup tree at most once.
fn judge<'a>(
    selection: &'a mut Selection,
    verdicts: &'a mut BpfHashMap<MapData, u64, u32>,
    selector: &'a ContainerSelector,
    identity: &'a IdentityResolver,
    filter: CgroupFilter,
) -> impl FnMut(u64, bool) -> Judgement + 'a {
    let mut may_walk = true;
    move |cgroup_id, may_hold| {
        if filter.enabled != 0 {
            selection.admit(
                cgroup_id,
                verdicts,
                selector,
                identity,
                &mut may_walk,
                may_hold,
            )
        } else {
            selection.admit_unfiltered(cgroup_id, selector, identity, may_hold)
        }
    }
}

/// Completes once `flag` is true; never when its sender is gone.
async fn wait_true(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|value| *value).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
