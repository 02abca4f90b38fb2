//! Which cgroups the kernel side lets through: the verdict map a trace keeps
//! in line with its selector, and the node's own judgement of the cgroups
//! the kernel had no verdict for.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};

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

/// The kernel's `cgroup_verdicts` map as [`Selection`] writes it: cgroup id
/// to 1 (trace its events) or 0 (drop them in the kernel). A trait so that
/// the verdict logic runs in tests without a kernel.
pub(super) trait VerdictMap {
    /// Sets the verdict of `cgroup_id`; fails when the map is full.
    fn set(&mut self, cgroup_id: u64, verdict: u32) -> Result<(), MapError>;
    /// Forgets `cgroup_id`.
    fn remove(&mut self, cgroup_id: u64);
}

impl VerdictMap for BpfHashMap<MapData, u64, u32> {
    fn set(&mut self, cgroup_id: u64, verdict: u32) -> Result<(), MapError> {
        self.insert(cgroup_id, verdict, 0)
    }

    fn remove(&mut self, cgroup_id: u64) {
        // An id the kernel has no entry for fails to be removed, and is
        // forgotten all the same.
        let _ = BpfHashMap::remove(self, &cgroup_id);
    }
}

/// What the node decided for the events of one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judgement {
    /// Kept, with the workload (`None`: the host), or `None`: dropped.
    pub(super) keep: Option<Option<Arc<Workload>>>,
    /// Judged without the identity the selector needs: the cgroup stayed
    /// unknown after a walk (judged as the host's), or the node does not
    /// have its pod or container status yet. Each such event is counted.
    pub(super) unjudged: bool,
    /// Not judged yet: the container is new, its status (which names it)
    /// has not reached the node, and may within [`STATUS_GRACE`]. The
    /// caller holds its events and asks again; `keep` is `None`.
    pub(super) hold: bool,
}

impl Judgement {
    /// Judged on a complete identity.
    pub(super) fn judged(keep: Option<Option<Arc<Workload>>>) -> Self {
        Judgement {
            keep,
            unjudged: false,
            hold: false,
        }
    }

    /// Asked again later: see [`Judgement::hold`].
    pub(super) fn hold() -> Self {
        Judgement {
            keep: None,
            unjudged: false,
            hold: true,
        }
    }
}

/// How long a container whose status has not reached the node yet is left
/// without a kernel verdict. The status (which names the container) comes
/// from the kubelet through the API server once the container runs,
/// usually within a second or two; a cgroup that never gets one (a pod's
/// sandbox) is judged on what is known after this.
pub(super) const STATUS_GRACE: Duration = Duration::from_secs(10);

/// Whether the selector's answer for `workload` can be trusted: not while
/// it names containers and the container's name (from its status) has not
/// reached the node. A pod the node does not know is judged on what is
/// known: its spec reaches the node when it is scheduled, before any of its
/// containers starts, so one still unknown is another node's or not a
/// Kubernetes pod, not one the node will learn of in time.
fn identity_complete(selector: &ContainerSelector, workload: &Workload, names_pods: bool) -> bool {
    !names_pods
        || workload.pod.is_empty()
        || selector.container.is_none()
        || !workload.container.is_empty()
}

/// What the node waits for from a container's status: its name, to judge it
/// (see [`identity_complete`]) or only to show it.
#[derive(Debug, Clone, Copy)]
struct StatusNeeds {
    to_judge: bool,
    to_name: bool,
}

impl StatusNeeds {
    fn of(selector: &ContainerSelector, workload: &Workload, names_pods: bool) -> Self {
        let to_judge = !identity_complete(selector, workload, names_pods);
        StatusNeeds {
            to_judge,
            to_name: to_judge || (names_pods && workload.name_pending),
        }
    }
}

/// The cgroup verdicts the trace has put into the kernel map.
pub(super) struct Selection {
    verdicts: StdHashMap<u64, u32>,
    /// Containers left without a verdict for want of their status, since
    /// when (see [`STATUS_GRACE`]).
    waiting_for_status: StdHashMap<u64, Instant>,
    /// [`STATUS_GRACE`], shorter in tests.
    status_grace: Duration,
    /// Generation of the identity resolver at the last sync.
    generation: u64,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            verdicts: StdHashMap::new(),
            waiting_for_status: StdHashMap::new(),
            status_grace: STATUS_GRACE,
            generation: 0,
        }
    }
}

impl Selection {
    /// Whether the node still waits for the status of `cgroup_id`'s
    /// container, when it `needs` one: until it has waited [`STATUS_GRACE`]
    /// since it first asked.
    fn awaits_status(&mut self, cgroup_id: u64, needs: bool) -> bool {
        if !needs {
            self.waiting_for_status.remove(&cgroup_id);
            return false;
        }
        let since = *self
            .waiting_for_status
            .entry(cgroup_id)
            .or_insert_with(Instant::now);
        since.elapsed() < self.status_grace
    }

    /// Brings the kernel map in line with what the selector says of every
    /// container known now. Returns a warning when the map is full.
    pub(super) fn sync(
        &mut self,
        map: &mut impl VerdictMap,
        selector: &ContainerSelector,
        identity: &IdentityResolver,
    ) -> Option<String> {
        let mut wanted = StdHashMap::new();
        let names_pods = identity.names_pods();
        let containers = identity.containers();
        // A container that exited while its events are held keeps its
        // clock: forgetting it would start its wait again at every sync.
        let grace = self.status_grace;
        self.waiting_for_status.retain(|id, since| {
            since.elapsed() < grace || containers.iter().any(|(present, _)| present == id)
        });
        for (cgroup_id, workload) in containers {
            // No verdict from an incomplete identity: the kernel would
            // drop a new container's events unseen until its status
            // arrives. Without one, they reach admit(), which holds them.
            let needs = StatusNeeds::of(selector, &workload, names_pods);
            let waiting = self.awaits_status(cgroup_id, needs.to_name);
            if !(waiting && needs.to_judge) {
                wanted.insert(cgroup_id, u32::from(selector.matches(&workload)));
            }
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
            map.remove(id);
            self.verdicts.remove(&id);
        }
        let mut failed = 0;
        for (id, verdict) in wanted {
            if self.verdicts.get(&id) != Some(&verdict) {
                if map.set(id, verdict).is_ok() {
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

    /// Whether to keep the events of `cgroup_id`, with its workload (`None`
    /// for the host). A cgroup with a verdict is judged by it; any other was
    /// let through by the kernel for want of one (new since the last sync,
    /// often a container that just started): it is judged here, and the
    /// verdict goes into the kernel map so that its next events are judged
    /// there.
    ///
    /// A container whose status has not reached the node yet is held if
    /// `may_hold` (see [`Judgement::hold`]): when the trace needs its name
    /// to judge it (`-c`), or to show the events it keeps. It is held for
    /// at most [`STATUS_GRACE`], then judged and shown on what is known.
    ///
    /// A cgroup no walk has seen yet is worth one walk of the tree now,
    /// whatever the resolver's rate limit (a new container's first exec is
    /// what a security trace is for), but only if `may_walk`, which the
    /// caller sets once per batch: many new cgroups at once cost one walk
    /// per batch, not one each. One still unknown after that is judged as
    /// the host's and not learned; so is a container whose identity is
    /// incomplete and that is not held judged without a verdict being
    /// stored. Both are marked unjudged, for the caller to count.
    pub(super) fn admit(
        &mut self,
        cgroup_id: u64,
        map: &mut impl VerdictMap,
        selector: &ContainerSelector,
        identity: &IdentityResolver,
        may_walk: &mut bool,
        may_hold: bool,
    ) -> Judgement {
        let names_pods = identity.names_pods();
        if let Some(&verdict) = self.verdicts.get(&cgroup_id) {
            // The verdict now, not the one the kernel had: an event of a
            // cgroup that had none when it happened and was judged
            // since is kept only if it is selected.
            if verdict == 0 {
                return Judgement::judged(None);
            }
            let workload = identity.resolve(cgroup_id);
            let unnamed = workload.as_deref().is_some_and(|workload| {
                let needs = StatusNeeds::of(selector, workload, names_pods);
                self.awaits_status(cgroup_id, needs.to_name)
            });
            if unnamed && may_hold {
                return Judgement::hold();
            }
            return Judgement::judged(Some(workload));
        }
        let mut known = identity.classify(cgroup_id);
        if matches!(known, Identity::Unknown) && std::mem::take(may_walk) {
            if let Err(err) = identity.rescan() {
                tracing::warn!(error = %err, "cannot rescan cgroups");
            }
            known = identity.classify(cgroup_id);
        }
        let (workload, known, waiting_to_judge) = match known {
            Identity::Workload(workload) => {
                let needs = StatusNeeds::of(selector, &workload, names_pods);
                let waiting = self.awaits_status(cgroup_id, needs.to_name);
                let kept = needs.to_judge || selector.accepts(Some(&workload));
                if waiting && may_hold && kept {
                    if !needs.to_judge {
                        // Selected whatever its name: the kernel may pass its
                        // events, which are held here until it is named.
                        self.store(cgroup_id, 1, map);
                    }
                    return Judgement::hold();
                }
                (Some(workload), true, waiting && needs.to_judge)
            }
            Identity::Host => (None, true, false),
            Identity::Unknown => (None, false, false),
        };
        let complete = known && !waiting_to_judge;
        let keep = selector.accepts(workload.as_deref());
        if complete {
            self.store(cgroup_id, u32::from(keep), map);
        }
        Judgement {
            keep: keep.then_some(workload),
            unjudged: !complete,
            hold: false,
        }
    }

    /// [`Selection::admit`] for a trace whose kernel side filters no
    /// cgroup (every container and the host): everything is kept, and a
    /// container waiting for its name is held if `may_hold`.
    pub(super) fn admit_unfiltered(
        &mut self,
        cgroup_id: u64,
        selector: &ContainerSelector,
        identity: &IdentityResolver,
        may_hold: bool,
    ) -> Judgement {
        let workload = identity.resolve(cgroup_id);
        let unnamed = workload.as_deref().is_some_and(|workload| {
            let needs = StatusNeeds::of(selector, workload, identity.names_pods());
            self.awaits_status(cgroup_id, needs.to_name)
        });
        if unnamed && may_hold {
            return Judgement::hold();
        }
        Judgement::judged(Some(workload))
    }

    /// Puts a verdict into the kernel map and remembers it. A full map is
    /// not an error here: events are judged by the node until a sync finds
    /// room.
    fn store(&mut self, cgroup_id: u64, verdict: u32, map: &mut impl VerdictMap) {
        if map.set(cgroup_id, verdict).is_ok() {
            self.verdicts.insert(cgroup_id, verdict);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use aya::sys::SyscallError;

    use super::*;
    use crate::cgroup::CgroupResolverConfig;
    use crate::fake_node::{self, container_path, FakeTree};
    use crate::pods::PodIndex;

    /// The kernel map: a hash map refuses a new key once it holds
    /// `max_entries`, and replaces the value of a key it has.
    struct FakeVerdictMap {
        entries: BTreeMap<u64, u32>,
        capacity: usize,
    }

    impl FakeVerdictMap {
        fn with_capacity(capacity: usize) -> Self {
            Self {
                entries: BTreeMap::new(),
                capacity,
            }
        }
    }

    impl VerdictMap for FakeVerdictMap {
        fn set(&mut self, cgroup_id: u64, verdict: u32) -> Result<(), MapError> {
            if self.entries.len() >= self.capacity && !self.entries.contains_key(&cgroup_id) {
                // What the kernel answers for a full hash map.
                return Err(MapError::SyscallError(SyscallError {
                    call: "bpf_map_update_elem",
                    io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
                }));
            }
            self.entries.insert(cgroup_id, verdict);
            Ok(())
        }

        fn remove(&mut self, cgroup_id: u64) {
            self.entries.remove(&cgroup_id);
        }
    }

    /// A node without a kernel: a host service's cgroup and pods' container
    /// cgroups in a temporary directory, and the pods in a pod index.
    struct FakeNode {
        tree: FakeTree,
        pods: Arc<PodIndex>,
        identity: IdentityResolver,
        host: u64,
    }

    impl FakeNode {
        fn new() -> Self {
            let tree = FakeTree::new();
            let host = tree.mkdir("/system.slice/cron.service");
            let pods = Arc::new(PodIndex::new());
            // Lookups never walk by themselves: each test says when the
            // tree is walked.
            let config = CgroupResolverConfig {
                rescan_interval: Duration::from_secs(3600),
                ..Default::default()
            };
            let identity = IdentityResolver::new(tree.resolver(config), Some(Arc::clone(&pods)));
            FakeNode {
                tree,
                pods,
                identity,
                host,
            }
        }

        /// Schedules pod `namespace/pod-<seed>` labelled `app=<app>` and
        /// creates its container's cgroup; returns the cgroup id.
        fn start(&self, seed: u8, namespace: &str, app: &str) -> u64 {
            self.label(seed, namespace, app);
            self.tree.mkdir(&Self::cgroup(seed))
        }

        /// Gives pod `seed` (in `namespace`) the label `app=<app>`.
        fn label(&self, seed: u8, namespace: &str, app: &str) {
            let (uid, id) = Self::ids(seed);
            let name = format!("pod-{seed}");
            let pod = fake_node::pod(&uid, namespace, &name, &[("app", app)], "main", &id);
            self.pods.apply(&pod);
        }

        /// Removes the container cgroup of pod `seed`, as when it exits.
        fn stop(&self, seed: u8) {
            self.tree.rmdir(&Self::cgroup(seed));
        }

        fn ids(seed: u8) -> (String, String) {
            let uid = format!("{seed:08x}-1111-2222-3333-444455556666");
            (uid, format!("{seed:02x}").repeat(32))
        }

        fn cgroup(seed: u8) -> String {
            let (uid, id) = Self::ids(seed);
            container_path(&uid, &id)
        }
    }

    /// A trace's side of the verdicts: its selector, its [`Selection`] and
    /// the kernel map it writes, on a [`FakeNode`].
    struct FakeTrace {
        node: FakeNode,
        selector: ContainerSelector,
        selection: Selection,
        map: FakeVerdictMap,
    }

    impl FakeTrace {
        /// A trace following namespace `shop`, with room for `capacity`
        /// verdicts in the kernel.
        fn new(node: FakeNode, capacity: usize) -> Self {
            let selector = ContainerSelector {
                namespaces: vec!["shop".to_string()],
                ..Default::default()
            };
            Self::with_selector(node, selector, capacity)
        }

        fn with_selector(node: FakeNode, selector: ContainerSelector, capacity: usize) -> Self {
            FakeTrace {
                node,
                selector,
                selection: Selection::default(),
                map: FakeVerdictMap::with_capacity(capacity),
            }
        }

        /// Walks the tree, as the periodic rescan does, then syncs as the
        /// reader does on the change.
        fn rescan_and_sync(&mut self) -> Option<String> {
            self.node.identity.rescan().unwrap();
            let identity = &self.node.identity;
            self.selection.sync(&mut self.map, &self.selector, identity)
        }

        /// What the node keeps of `cgroup_id`'s events.
        fn admit(&mut self, cgroup_id: u64, may_walk: &mut bool) -> Option<Option<Arc<Workload>>> {
            self.judge(cgroup_id, may_walk).keep
        }

        /// What the node decides for `cgroup_id`'s events when it may not
        /// hold them (its held events overflowed, or the trace ends).
        fn judge(&mut self, cgroup_id: u64, may_walk: &mut bool) -> Judgement {
            self.judge_or_hold(cgroup_id, may_walk, false)
        }

        fn judge_or_hold(
            &mut self,
            cgroup_id: u64,
            may_walk: &mut bool,
            may_hold: bool,
        ) -> Judgement {
            let identity = &self.node.identity;
            let map = &mut self.map;
            self.selection
                .admit(cgroup_id, map, &self.selector, identity, may_walk, may_hold)
        }

        /// The verdict the kernel has for `cgroup_id`.
        fn verdict(&self, cgroup_id: u64) -> Option<u32> {
            self.map.entries.get(&cgroup_id).copied()
        }

        fn walks(&self) -> u64 {
            self.node.identity.cgroups().walks()
        }
    }

    #[test]
    fn sync_learns_selected_containers_as_1_and_others_as_0() {
        let node = FakeNode::new();
        let (web, db, host) = (
            node.start(1, "shop", "web"),
            node.start(2, "other", "db"),
            node.host,
        );
        let mut trace = FakeTrace::new(node, 64);

        assert_eq!(trace.rescan_and_sync(), None);

        assert_eq!(trace.verdict(web), Some(1));
        assert_eq!(trace.verdict(db), Some(0));
        assert_eq!(trace.verdict(host), Some(0), "host not included");
        let learned: BTreeMap<_, _> = trace.selection.verdicts.into_iter().collect();
        assert_eq!(trace.map.entries, learned);
    }

    #[test]
    fn sync_forgets_a_container_that_is_gone() {
        let node = FakeNode::new();
        let (web, db) = (node.start(1, "shop", "web"), node.start(2, "other", "db"));
        let mut trace = FakeTrace::new(node, 64);
        trace.rescan_and_sync();

        trace.node.stop(2);
        trace.rescan_and_sync();

        assert_eq!(trace.verdict(db), None);
        assert!(!trace.selection.verdicts.contains_key(&db));
        assert_eq!(trace.verdict(web), Some(1));
    }

    #[test]
    fn sync_judges_a_container_again_when_its_pod_changes() {
        let node = FakeNode::new();
        let id = node.start(1, "shop", "db");
        let selector = ContainerSelector::from_parts(vec![], "", "", "app=web", false).unwrap();
        let mut trace = FakeTrace::with_selector(node, selector, 64);
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(id), Some(0));

        trace.node.label(1, "shop", "web");
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(id), Some(1), "now selected");

        trace.node.label(1, "shop", "db");
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(id), Some(0), "no longer selected");
    }

    #[test]
    fn events_of_a_new_unselected_container_never_show() {
        // Their events were let through by the kernel before the containers
        // had verdicts; a sync judged them before the events were read.
        let mut trace = FakeTrace::new(FakeNode::new(), 64);
        trace.rescan_and_sync();
        let outsider = trace.node.start(1, "elsewhere", "web");
        let insider = trace.node.start(2, "shop", "web");
        trace.rescan_and_sync();
        let walks = trace.walks();

        let mut may_walk = true;
        assert_eq!(trace.admit(outsider, &mut may_walk), None);
        let kept = trace.admit(insider, &mut may_walk);
        assert_eq!(kept.expect("selected").expect("a container").pod, "pod-2");
        assert_eq!(trace.walks(), walks, "judged by their verdicts, no walk");
    }

    #[test]
    fn admit_walks_for_unknown_cgroups_at_most_once_per_batch() {
        let mut trace = FakeTrace::new(FakeNode::new(), 64);
        trace.rescan_and_sync();
        let walks = trace.walks();

        // One batch: the first unknown cgroup walks the tree and is learned.
        let mut may_walk = true;
        let first = trace.node.start(1, "shop", "web");
        let kept = trace.admit(first, &mut may_walk);
        assert_eq!(kept.expect("selected").expect("a container").pod, "pod-1");
        assert_eq!(trace.verdict(first), Some(1));
        assert_eq!(trace.walks(), walks + 1);
        assert!(!may_walk);
        // The next one in the same batch does not walk: judged as the
        // host's (not followed) and not learned.
        let second = trace.node.start(2, "shop", "web");
        assert_eq!(trace.admit(second, &mut may_walk), None);
        assert_eq!(trace.verdict(second), None);
        assert_eq!(trace.walks(), walks + 1);

        // The next batch may walk again.
        let mut may_walk = true;
        let kept = trace.admit(second, &mut may_walk);
        assert_eq!(kept.expect("selected").expect("a container").pod, "pod-2");
        assert_eq!(trace.verdict(second), Some(1));
        assert_eq!(trace.walks(), walks + 2);
    }

    /// A pod the node does not know (another node's, or not Kubernetes'):
    /// judged on what is known, not left waiting, and judged again when
    /// the pod shows up.
    #[test]
    fn a_container_of_a_pod_the_node_does_not_know_is_judged_on_what_is_known() {
        let mut trace = FakeTrace::new(FakeNode::new(), 64);
        let id = trace.node.tree.mkdir(&FakeNode::cgroup(1));
        assert_eq!(trace.rescan_and_sync(), None);
        assert_eq!(trace.verdict(id), Some(0));
        let judgement = trace.judge(id, &mut true);
        assert_eq!(judgement, Judgement::judged(None));

        trace.node.label(1, "shop", "web");
        trace.rescan_and_sync();
        assert_eq!(
            trace.verdict(id),
            Some(1),
            "judged again once the pod is known"
        );
    }

    /// Regression: under `-c`, a new container whose status (and so whose
    /// name) had not reached the node yet was stored as "not selected".
    #[test]
    fn a_container_without_its_status_yet_gets_no_verdict_under_a_container_selector() {
        let node = FakeNode::new();
        let (uid, id) = FakeNode::ids(1);
        // The pod is known, its status lists another container only.
        let other = "ff".repeat(32);
        let pod = fake_node::pod(&uid, "shop", "pod-1", &[("app", "web")], "main", &other);
        node.pods.apply(&pod);
        let cgroup = node.tree.mkdir(&container_path(&uid, &id));
        let selector = ContainerSelector::from_parts(vec![], "", "main", "", false).unwrap();
        let mut trace = FakeTrace::with_selector(node, selector, 64);
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(cgroup), None);
        // Held while it may still be named; judged unnamed (and counted)
        // when it may not be held.
        assert_eq!(
            trace.judge_or_hold(cgroup, &mut true, true),
            Judgement::hold()
        );
        let judgement = trace.judge(cgroup, &mut true);
        assert_eq!(judgement.keep, None);
        assert!(judgement.unjudged);

        // The status arrives: the container is `main`, selected.
        trace.node.label(1, "shop", "web");
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(cgroup), Some(1));
        assert!(!trace.judge(cgroup, &mut true).unjudged);
        assert!(trace.selection.waiting_for_status.is_empty());
    }

    /// A container whose status never comes (a pod's sandbox) is judged on
    /// what is known once it waited [`STATUS_GRACE`].
    #[test]
    fn a_container_without_a_status_is_judged_after_the_grace() {
        let node = FakeNode::new();
        let (uid, id) = FakeNode::ids(1);
        let other = "ff".repeat(32);
        let pod = fake_node::pod(&uid, "shop", "pod-1", &[("app", "web")], "main", &other);
        node.pods.apply(&pod);
        let cgroup = node.tree.mkdir(&container_path(&uid, &id));
        let selector = ContainerSelector::from_parts(vec![], "", "main", "", false).unwrap();
        let mut trace = FakeTrace::with_selector(node, selector, 64);
        trace.selection.status_grace = Duration::ZERO;
        trace.rescan_and_sync();
        assert_eq!(
            trace.verdict(cgroup),
            Some(0),
            "not `main`, as far as is known"
        );
        assert_eq!(trace.judge(cgroup, &mut true), Judgement::judged(None));
    }

    /// Pod `seed` as the API server lists it while its container `main` is
    /// created: in its spec, not in its status yet.
    fn starting_pod(seed: u8, namespace: &str) -> k8s_openapi::api::core::v1::Pod {
        use k8s_openapi::api::core::v1::{Container, PodSpec};
        let (uid, id) = FakeNode::ids(seed);
        let name = format!("pod-{seed}");
        let mut pod = fake_node::pod(&uid, namespace, &name, &[("app", "web")], "main", &id);
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "main".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod.status.as_mut().unwrap().container_statuses = None;
        pod
    }

    /// A container started during a trace: its first events (its
    /// entrypoint's exec) come before its status names it. They are held,
    /// not sent unnamed, and judged with its name once the status is in.
    #[test]
    fn a_selected_container_is_held_until_its_status_names_it() {
        let node = FakeNode::new();
        node.pods.apply(&starting_pod(1, "shop"));
        let cgroup = node.tree.mkdir(&FakeNode::cgroup(1));
        let mut trace = FakeTrace::new(node, 64);
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(cgroup), Some(1), "selected by its namespace");

        assert_eq!(
            trace.judge_or_hold(cgroup, &mut true, true),
            Judgement::hold()
        );

        trace.node.label(1, "shop", "web");
        trace.rescan_and_sync();
        let judgement = trace.judge_or_hold(cgroup, &mut true, true);
        let workload = judgement.keep.expect("kept").expect("a container");
        assert_eq!(
            (workload.pod.as_str(), workload.container.as_str()),
            ("pod-1", "main")
        );
        assert!(!judgement.unjudged);
        assert!(trace.selection.waiting_for_status.is_empty());
    }

    /// The same before any sync: the kernel let its first event through for
    /// want of a verdict. It is held, and selected in the kernel at once.
    #[test]
    fn a_new_container_seen_first_in_an_event_is_held_and_selected_in_the_kernel() {
        let mut trace = FakeTrace::new(FakeNode::new(), 64);
        trace.rescan_and_sync();
        trace.node.pods.apply(&starting_pod(1, "shop"));
        let cgroup = trace.node.tree.mkdir(&FakeNode::cgroup(1));

        assert_eq!(
            trace.judge_or_hold(cgroup, &mut true, true),
            Judgement::hold()
        );
        assert_eq!(trace.verdict(cgroup), Some(1));
    }

    /// Not held: a container the trace does not select whatever its name,
    /// and the sandbox of a pod whose containers all run (it is never
    /// named).
    #[test]
    fn only_selected_containers_that_may_still_be_named_are_held() {
        let node = FakeNode::new();
        node.pods.apply(&starting_pod(1, "elsewhere"));
        let outsider = node.tree.mkdir(&FakeNode::cgroup(1));
        let (uid, _) = FakeNode::ids(2);
        node.start(2, "shop", "web");
        let sandbox = node.tree.mkdir(&container_path(&uid, &"5a".repeat(32)));
        let mut trace = FakeTrace::new(node, 64);
        trace.rescan_and_sync();

        assert_eq!(
            trace.judge_or_hold(outsider, &mut true, true),
            Judgement::judged(None)
        );
        let judgement = trace.judge_or_hold(sandbox, &mut true, true);
        let workload = judgement.keep.expect("kept").expect("a container");
        assert_eq!(
            (workload.pod.as_str(), workload.container.as_str()),
            ("pod-2", "")
        );
    }

    /// A short-lived container exits while its first events are held: its
    /// wait goes on from when it began, not from the next sync.
    #[test]
    fn a_container_that_exits_while_held_keeps_its_wait() {
        let node = FakeNode::new();
        node.pods.apply(&starting_pod(1, "shop"));
        let cgroup = node.tree.mkdir(&FakeNode::cgroup(1));
        let mut trace = FakeTrace::new(node, 64);
        trace.rescan_and_sync();
        assert_eq!(
            trace.judge_or_hold(cgroup, &mut true, true),
            Judgement::hold()
        );
        let since = trace.selection.waiting_for_status[&cgroup];

        trace.node.stop(1);
        trace.rescan_and_sync();
        assert_eq!(
            trace.selection.waiting_for_status.get(&cgroup),
            Some(&since)
        );
        assert_eq!(
            trace.judge_or_hold(cgroup, &mut true, true),
            Judgement::hold()
        );
        assert_eq!(
            trace.selection.waiting_for_status.get(&cgroup),
            Some(&since)
        );
    }

    /// A container whose name has not come after [`STATUS_GRACE`] is sent
    /// with what is known.
    #[test]
    fn a_container_still_unnamed_after_the_grace_is_not_held() {
        let node = FakeNode::new();
        node.pods.apply(&starting_pod(1, "shop"));
        let cgroup = node.tree.mkdir(&FakeNode::cgroup(1));
        let mut trace = FakeTrace::new(node, 64);
        trace.selection.status_grace = Duration::ZERO;
        trace.rescan_and_sync();

        let judgement = trace.judge_or_hold(cgroup, &mut true, true);
        let workload = judgement.keep.expect("kept").expect("a container");
        assert_eq!(
            (workload.pod.as_str(), workload.container.as_str()),
            ("pod-1", "")
        );
    }

    /// A trace of every container and the host filters nothing in the
    /// kernel, and holds the same.
    #[test]
    fn a_trace_of_everything_holds_a_container_until_it_is_named() {
        let node = FakeNode::new();
        node.pods.apply(&starting_pod(1, "shop"));
        let cgroup = node.tree.mkdir(&FakeNode::cgroup(1));
        let selector = ContainerSelector::from_parts(vec![], "", "", "", true).unwrap();
        let mut trace = FakeTrace::with_selector(node, selector, 64);
        trace.node.identity.rescan().unwrap();
        let identity = &trace.node.identity;
        let selection = &mut trace.selection;
        assert_eq!(
            selection.admit_unfiltered(cgroup, &trace.selector, identity, true),
            Judgement::hold()
        );
        trace.node.label(1, "shop", "web");
        let identity = &trace.node.identity;
        let judgement = selection.admit_unfiltered(cgroup, &trace.selector, identity, true);
        let workload = judgement.keep.expect("kept").expect("a container");
        assert_eq!(workload.container, "main");
    }

    #[test]
    fn a_selector_without_pod_criteria_judges_a_container_before_its_pod_is_known() {
        let node = FakeNode::new();
        let id = node.tree.mkdir(&FakeNode::cgroup(1));
        // Every container, not the host: the pod's name does not matter.
        let selector = ContainerSelector::default();
        let mut trace = FakeTrace::with_selector(node, selector, 64);
        trace.rescan_and_sync();
        assert_eq!(trace.verdict(id), Some(1));
        assert!(!trace.judge(id, &mut true).unjudged);
    }

    #[test]
    fn a_cgroup_that_stays_unknown_is_counted() {
        let mut trace = FakeTrace::new(FakeNode::new(), 64);
        trace.rescan_and_sync();
        let mut may_walk = false;
        let id = trace.node.start(1, "shop", "web");
        let judgement = trace.judge(id, &mut may_walk);
        assert_eq!(judgement.keep, None, "judged as the host's");
        assert!(judgement.unjudged);
        // A host cgroup the node knows is judged, not counted.
        let host = trace.node.host;
        assert!(!trace.judge(host, &mut may_walk).unjudged);
    }

    #[test]
    fn a_full_map_leaves_cgroups_to_the_node() {
        let node = FakeNode::new();
        let (web, db) = (node.start(1, "shop", "web"), node.start(2, "other", "db"));
        let mut trace = FakeTrace::new(node, 0);

        let warning = trace.rescan_and_sync();
        let identity = &trace.node.identity;
        let cgroups = identity.containers().len() + identity.host_cgroups().len();
        assert_eq!(
            warning.unwrap(),
            format!(
                "{cgroups} cgroups could not be added to the kernel filter: \
                 their events are filtered by the node instead"
            )
        );

        // Judged by the node, event by event, without a walk.
        let walks = trace.walks();
        let mut may_walk = true;
        let kept = trace.admit(web, &mut may_walk);
        assert_eq!(kept.expect("selected").expect("a container").pod, "pod-1");
        assert_eq!(trace.admit(db, &mut may_walk), None);
        assert!(trace.map.entries.is_empty());
        assert!(trace.selection.verdicts.is_empty());
        assert_eq!(trace.walks(), walks);

        // A sync that finds room puts them in the kernel.
        trace.map.capacity = 64;
        assert_eq!(trace.rescan_and_sync(), None);
        assert_eq!(trace.verdict(web), Some(1));
        assert_eq!(trace.verdict(db), Some(0));
    }
}
