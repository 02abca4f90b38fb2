//! Loading a gadget's object with the per-trace constants every gadget
//! shares, and finding the maps every gadget object has.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::{Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;

use super::verdicts::CgroupFilter;
use super::{TracePlan, TraceStartError};
use crate::gadgets::LossCounter;

/// What every gadget object has in common, found after load.
pub(super) struct CommonMaps {
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    pub(super) verdicts: BpfHashMap<MapData, u64, u32>,
    pub(super) lost: PerCpuArray<MapData, u64>,
    /// The gadget's own loss counters, with the total last reported.
    pub(super) gadget_losses: Vec<(LossCounter, PerCpuArray<MapData, u64>, u64)>,
}

/// Sets the per-trace constants every gadget shares (pid, uid and cgroup
/// filters, ring buffer size and wakeup threshold), then lets the gadget set
/// its own and load its object.
pub(super) fn load(plan: &TracePlan, filter: CgroupFilter) -> Result<Ebpf, TraceStartError> {
    let name = plan.gadget.name();
    let pid = plan.pid.unwrap_or(0);
    let uid = plan.uid.unwrap_or(0);
    let filter_pid = u32::from(plan.pid.is_some());
    let filter_uid = u32::from(plan.uid.is_some());
    // Wake the reader early when a quarter of the buffer is in use, so a
    // burst is drained well before the kernel has to drop.
    let wakeup_bytes = u64::from(plan.ring_buffer_bytes / 4);

    let mut loader = EbpfLoader::new();
    loader
        .set_global("targ_filter_pid", &filter_pid, true)
        .set_global("targ_pid", &pid, true)
        .set_global("targ_filter_uid", &filter_uid, true)
        .set_global("targ_uid", &uid, true)
        .set_global("targ_filter_cgroup", &filter.enabled, true)
        .set_global("targ_wakeup_bytes", &wakeup_bytes, true)
        .set_max_entries("events", plan.ring_buffer_bytes);
    plan.gadget
        .load(&mut loader)
        .map_err(|source| TraceStartError::Load {
            gadget: name,
            source: Box::new(source),
        })
}

/// Takes the maps the runtime uses out of a loaded gadget.
pub(super) fn common_maps(
    ebpf: &mut Ebpf,
    gadget: &'static str,
    loss_counters: &[LossCounter],
) -> Result<CommonMaps, TraceStartError> {
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
    let mut gadget_losses = Vec::with_capacity(loss_counters.len());
    for counter in loss_counters {
        let map = take(ebpf, gadget, counter.map, PerCpuArray::try_from)?;
        gadget_losses.push((*counter, map, 0));
    }
    Ok(CommonMaps {
        ring,
        verdicts: take(ebpf, gadget, "cgroup_verdicts", BpfHashMap::try_from)?,
        lost: take(ebpf, gadget, "lost_events", PerCpuArray::try_from)?,
        gadget_losses,
    })
}
