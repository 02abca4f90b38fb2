//! Which cgroups the kernel side lets through: the verdict map a trace keeps
//! in line with its selector, and the node's own judgement of the cgroups
//! the kernel had no verdict for.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::identity::{Identity, IdentityResolver, Workload};
use crate::selector::ContainerSelector;

/// How the kernel side filters by cgroup, derived from the selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CgroupFilter {
    /// Look cgroups up in `cgroup_verdicts` at all (1), or trace every
    /// cgroup (0, the host included).
    pub(super) enabled: u32,
}

impl CgroupFilter {
    pub(super) fn for_selector(selector: &ContainerSelector) -> Self {
        CgroupFilter {
            enabled: u32::from(!(selector.include_host && selector.is_everything())),
        }
    }
}

/// The cgroup verdicts the trace has put into the kernel map.
#[derive(Default)]
pub(super) struct Selection {
    verdicts: StdHashMap<u64, u32>,
    /// Generation of the identity resolver at the last sync.
    generation: u64,
}

impl Selection {
    /// Brings the kernel map in line with what the selector says of every
    /// container known now. Returns a warning when the map is full.
    pub(super) fn sync(
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
    pub(super) fn admit(
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
