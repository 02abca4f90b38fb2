//! Kubernetes identity of kernel events: from the cgroup id an eBPF program
//! records to the namespace, pod and container it came from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::cgroup::{CgroupError, CgroupResolver, ContainerCgroup, Lookup};
use crate::pods::PodIndex;

/// The container an event came from.
///
/// `namespace`, `pod`, `container` and `labels` are empty when the API server
/// is not used (local mode) or does not know the pod yet; `pod_uid` and
/// `container_id`, read from the cgroup path, are always set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name in the pod spec.
    pub container: String,
    /// The pod's `metadata.uid`.
    pub pod_uid: String,
    /// The runtime's container id, without `<runtime>://`.
    pub container_id: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// `container` is empty for now, but its pod has a container that has
    /// not started yet: this may be it, named once its status reaches the
    /// node (see [`PodInfo::awaiting_containers`](crate::pods::PodInfo)).
    pub name_pending: bool,
}

impl Workload {
    /// The workload of a container cgroup, named from `pods` when given and
    /// when it knows the pod.
    pub fn new(container: &ContainerCgroup, pods: Option<&PodIndex>) -> Self {
        let mut workload = Workload {
            pod_uid: container.pod_uid.clone(),
            container_id: container.container_id.clone(),
            ..Default::default()
        };
        if let Some(pod) = pods.and_then(|pods| pods.get(&container.pod_uid)) {
            workload.namespace = pod.namespace.clone();
            workload.pod = pod.name.clone();
            workload.labels = pod.labels.clone();
            // The pod sandbox (pause) has a cgroup but no container status:
            // it keeps an empty container name.
            match pod.container_name(&container.container_id) {
                Some(name) => workload.container = name.to_string(),
                None => workload.name_pending = pod.awaiting_containers,
            }
        }
        workload
    }
}

/// Who a cgroup id belongs to.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A container of a pod.
    Workload(Arc<Workload>),
    /// No container: the host's processes (or a pod's own cgroup).
    Host,
    /// Not known yet: the cgroup is new and the tree could not be walked
    /// again so soon.
    Unknown,
}

/// Resolves cgroup ids to workloads, joining [`CgroupResolver`] (which
/// container) with an optional [`PodIndex`] (what it is called).
///
/// Shared by concurrent traces: all methods take `&self`, and the locks are
/// held only for map lookups, never for a cgroup tree walk.
#[derive(Debug)]
pub struct IdentityResolver {
    cgroups: CgroupResolver,
    pods: Option<Arc<PodIndex>>,
    cache: Mutex<WorkloadCache>,
    changes: watch::Sender<u64>,
}

/// Workloads already built, valid for one pair of cgroup and pod generations
/// so that a renamed or relabelled pod is rebuilt, not served stale.
#[derive(Debug, Default)]
struct WorkloadCache {
    generation: u64,
    workloads: HashMap<u64, Arc<Workload>>,
}

impl IdentityResolver {
    /// A resolver naming containers from `pods`, or only by pod UID and
    /// container id when `pods` is `None` (no API server).
    pub fn new(cgroups: CgroupResolver, pods: Option<Arc<PodIndex>>) -> Self {
        let generation = combined_generation(&cgroups, pods.as_deref());
        Self {
            cgroups,
            pods,
            cache: Mutex::new(WorkloadCache {
                generation,
                workloads: HashMap::new(),
            }),
            changes: watch::Sender::new(generation),
        }
    }

    /// The cgroup resolver underneath.
    pub fn cgroups(&self) -> &CgroupResolver {
        &self.cgroups
    }

    /// The pod index, when the API server is used.
    pub fn pods(&self) -> Option<&Arc<PodIndex>> {
        self.pods.as_ref()
    }

    /// The workload whose container has the cgroup `cgroup_id`, or `None`
    /// for a process outside any container (the host, a pod's own cgroup).
    ///
    /// An unknown id may rescan the cgroup tree (rate-limited, see
    /// [`CgroupResolver::resolve`]).
    pub fn resolve(&self, cgroup_id: u64) -> Option<Arc<Workload>> {
        let container = self.cgroups.resolve(cgroup_id)?;
        Some(self.workload(cgroup_id, &container))
    }

    /// Like [`resolve`](Self::resolve), but tells the host apart from a
    /// cgroup not known yet.
    pub fn classify(&self, cgroup_id: u64) -> Identity {
        match self.cgroups.classify(cgroup_id) {
            Lookup::Container(container) => {
                Identity::Workload(self.workload(cgroup_id, &container))
            }
            Lookup::NotContainer => Identity::Host,
            Lookup::Unknown => Identity::Unknown,
        }
    }

    /// Whether workloads are named from a pod index (not in local mode):
    /// then a workload without a pod or container name is one whose pod or
    /// container status has not reached the node yet.
    pub fn names_pods(&self) -> bool {
        self.pods.is_some()
    }

    /// The cgroups of processes outside containers, as of the last walk.
    pub fn host_cgroups(&self) -> Vec<u64> {
        self.cgroups.not_containers()
    }

    /// Every container cgroup that exists now, with its workload: the set a
    /// kernel-side cgroup filter chooses from.
    pub fn containers(&self) -> Vec<(u64, Arc<Workload>)> {
        self.cgroups
            .containers()
            .into_iter()
            .map(|(id, container)| (id, self.workload(id, &container)))
            .collect()
    }

    /// A counter that grows whenever containers appear or go, or pods are
    /// added, deleted, renamed or relabelled: when it changes, the result of
    /// [`containers`](Self::containers) and of selectors over it may differ.
    pub fn generation(&self) -> u64 {
        combined_generation(&self.cgroups, self.pods.as_deref())
    }

    /// A receiver woken when [`generation`](Self::generation) changes. Changes
    /// are noticed by [`rescan`](Self::rescan), by
    /// [`refresh_periodically`](Self::refresh_periodically) and by lookups.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Walks the cgroup tree now and wakes subscribers if anything changed.
    pub fn rescan(&self) -> Result<(), CgroupError> {
        self.cgroups.scan()?;
        self.notice_changes();
        Ok(())
    }

    /// Rescans every `period`, and soon after the pod index changes (a pod
    /// with a new container is a sign of a new cgroup), until the task
    /// running it is dropped.
    ///
    /// Needed because a kernel-side filter drops events of containers it was
    /// not told about, so lookups alone would never see them.
    pub async fn refresh_periodically(self: Arc<Self>, period: Duration) {
        let mut pod_changes = self.pods.as_ref().map(|pods| pods.subscribe());
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = next_change(pod_changes.as_mut()) => {}
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.rescan()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(error = %error, "cannot rescan cgroups"),
                Err(error) => tracing::warn!(error = %error, "cgroup rescan task failed"),
            }
            // A burst of pod updates (a node starting, a relist) is served
            // by one walk per rescan interval, not one per update.
            tokio::time::sleep(self.cgroups.config().rescan_interval).await;
        }
    }

    fn workload(&self, cgroup_id: u64, container: &ContainerCgroup) -> Arc<Workload> {
        let generation = self.generation();
        if let Some(workload) = self.cache_for(generation).workloads.get(&cgroup_id) {
            return Arc::clone(workload);
        }
        // Built outside the cache lock: it takes the pod index lock.
        let workload = Arc::new(Workload::new(container, self.pods.as_deref()));
        let mut cache = self.cache_for(generation);
        if cache.generation == generation {
            cache.workloads.insert(cgroup_id, Arc::clone(&workload));
        }
        workload
    }

    /// The cache, emptied first if it was built for another generation, in
    /// which case subscribers are told.
    fn cache_for(&self, generation: u64) -> MutexGuard<'_, WorkloadCache> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation < generation {
            cache.generation = generation;
            cache.workloads.clear();
            self.announce(generation);
        }
        cache
    }

    fn notice_changes(&self) {
        drop(self.cache_for(self.generation()));
    }

    fn announce(&self, generation: u64) {
        self.changes.send_if_modified(|announced| {
            let newer = *announced < generation;
            if newer {
                *announced = generation;
            }
            newer
        });
    }
}

/// Both generations only grow, so their sum grows whenever either does.
fn combined_generation(cgroups: &CgroupResolver, pods: Option<&PodIndex>) -> u64 {
    cgroups.generation() + pods.map_or(0, PodIndex::generation)
}

/// Resolves when the pod index changes; never without one.
async fn next_change(receiver: Option<&mut watch::Receiver<u64>>) {
    if let Some(receiver) = receiver {
        if receiver.changed().await.is_ok() {
            return;
        }
    }
    // No index, or its sender is gone: only the ticks remain.
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CgroupResolverConfig;
    use crate::fake_node::{self, container_path, FakeTree, CONTAINER_ID as ID, POD_UID as UID};
    use k8s_openapi::api::core::v1::Pod;
    use std::os::unix::fs::MetadataExt;

    fn pod(name: &str, app: &str) -> Pod {
        fake_node::pod(UID, "shop", name, &[("app", app)], "nginx", ID)
    }

    /// A fake cgroup tree with one container, and its id.
    fn tree() -> (FakeTree, u64) {
        let tree = FakeTree::new();
        let id = tree.mkdir(&container_path(UID, ID));
        (tree, id)
    }

    fn resolver(root: &std::path::Path, pods: Option<Arc<PodIndex>>) -> IdentityResolver {
        let cgroups = CgroupResolver::with_config(root, CgroupResolverConfig::default());
        IdentityResolver::new(cgroups, pods)
    }

    #[test]
    fn local_mode_has_ids_only() {
        let (dir, id) = tree();
        let identity = resolver(dir.path(), None);
        let workload = identity.resolve(id).unwrap();
        assert_eq!(
            *workload,
            Workload {
                pod_uid: UID.to_string(),
                container_id: ID.to_string(),
                ..Default::default()
            }
        );
        let host = std::fs::metadata(dir.path()).unwrap().ino();
        assert_eq!(identity.resolve(host), None);
    }

    #[test]
    fn names_come_from_the_pod_index() {
        let (dir, id) = tree();
        let pods = Arc::new(PodIndex::new());
        pods.apply(&pod("web-1", "web"));
        let identity = resolver(dir.path(), Some(pods));
        let workload = identity.resolve(id).unwrap();
        assert_eq!(workload.namespace, "shop");
        assert_eq!(workload.pod, "web-1");
        assert_eq!(workload.container, "nginx");
        assert_eq!(workload.labels["app"], "web");
        let listed = identity.containers();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, id);
        assert!(
            Arc::ptr_eq(&listed[0].1, &workload),
            "served from the cache"
        );
    }

    #[test]
    fn pod_changes_rebuild_workloads_and_notify() {
        let (dir, id) = tree();
        let pods = Arc::new(PodIndex::new());
        let identity = resolver(dir.path(), Some(Arc::clone(&pods)));
        let mut changes = identity.subscribe();
        // Not known to the API server yet: ids only.
        assert_eq!(identity.resolve(id).unwrap().pod, "");
        assert!(
            changes.has_changed().unwrap(),
            "the first walk found a container"
        );
        changes.mark_unchanged();
        pods.apply(&pod("web-1", "web"));
        assert_eq!(identity.resolve(id).unwrap().pod, "web-1");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        pods.apply(&pod("web-1", "api"));
        identity.rescan().unwrap();
        assert!(changes.has_changed().unwrap(), "rescan notices pod changes");
        assert_eq!(identity.resolve(id).unwrap().labels["app"], "api");
        assert_eq!(*changes.borrow_and_update(), identity.generation());
    }

    #[tokio::test]
    async fn periodic_refresh_finds_new_containers() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Arc::new(resolver(dir.path(), None));
        let mut changes = identity.subscribe();
        let task =
            tokio::spawn(Arc::clone(&identity).refresh_periodically(Duration::from_millis(20)));
        std::fs::create_dir_all(dir.path().join(format!("kubepods/pod{UID}/{ID}"))).unwrap();
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .expect("refresh should notice the new container")
            .unwrap();
        assert_eq!(identity.containers().len(), 1);
        task.abort();
    }
}
