//! The pods of this node, as the API server describes them: what a pod UID
//! and container id found in a cgroup path are called, and their labels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;

/// What the index keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Container id (without the `<runtime>://` scheme) to container name, for
    /// regular, init and ephemeral containers, including the previous
    /// instance of restarted containers.
    pub containers: HashMap<String, String>,
    /// Some container of the pod's spec has not started yet, or is about to
    /// start again: a container cgroup of this pod that `containers` does
    /// not name may be it, named once its status reaches the node. When
    /// false, such a cgroup is the pod's sandbox, which never gets a name.
    pub awaiting_containers: bool,
}

impl PodInfo {
    /// What the index keeps of `pod`; `None` for a pod without a UID, which
    /// the API server never sends.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let metadata = &pod.metadata;
        let uid = metadata.uid.clone().filter(|uid| !uid.is_empty())?;
        let mut containers = HashMap::new();
        if let Some(status) = &pod.status {
            let all = [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ];
            for status in all.into_iter().flatten().flatten() {
                for id in container_ids(status) {
                    containers.insert(id.to_string(), status.name.clone());
                }
            }
        }
        Some(Self {
            uid,
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone().unwrap_or_default(),
            labels: metadata.labels.clone().unwrap_or_default(),
            containers,
            awaiting_containers: awaits_containers(pod),
        })
    }

    /// The name of the container with this runtime id, if it is one of this
    /// pod's.
    pub fn container_name(&self, container_id: &str) -> Option<&str> {
        self.containers.get(container_id).map(String::as_str)
    }
}

/// Whether a container of `pod`'s spec may still start: one with no status,
/// no id or a waiting state, or a terminated regular container the kubelet
/// will restart. Init and ephemeral containers that ran are done; a pod that
/// succeeded or failed starts nothing.
fn awaits_containers(pod: &Pod) -> bool {
    let (Some(spec), status) = (&pod.spec, pod.status.as_ref()) else {
        return false;
    };
    let phase = status.and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let listed = |list: fn(&PodStatus) -> &Option<Vec<ContainerStatus>>| -> &[ContainerStatus] {
        status
            .and_then(|status| list(status).as_deref())
            .unwrap_or(&[])
    };
    let regular = listed(|status| &status.container_statuses);
    let init = listed(|status| &status.init_container_statuses);
    let ephemeral = listed(|status| &status.ephemeral_container_statuses);
    let restarts = spec.restart_policy.as_deref() != Some("Never");
    let may_start = |name: &str, statuses: &[ContainerStatus], restarted: bool| {
        let Some(status) = statuses.iter().find(|status| status.name == name) else {
            return true;
        };
        let state = status.state.as_ref();
        let running = state.is_some_and(|state| state.running.is_some());
        let terminated = state.is_some_and(|state| state.terminated.is_some());
        let has_id = status
            .container_id
            .as_deref()
            .is_some_and(|id| !id.is_empty());
        let started = running && has_id;
        let done_for_good = terminated && !restarted;
        !(started || done_for_good)
    };
    spec.containers
        .iter()
        .any(|c| may_start(&c.name, regular, restarts))
        || spec.init_containers.iter().flatten().any(|c| {
            // A sidecar (an init container that restarts) runs for the
            // pod's life; the others run once.
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            may_start(&c.name, init, sidecar)
        })
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| may_start(&c.name, ephemeral, false))
}

/// The ids of a container status: the running instance and, after a restart,
/// the previous one, whose cgroup may still have events in flight.
fn container_ids(status: &ContainerStatus) -> impl Iterator<Item = &str> {
    let previous = status
        .last_state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
        .and_then(|terminated| terminated.container_id.as_deref());
    [status.container_id.as_deref(), previous]
        .into_iter()
        .flatten()
        .map(strip_scheme)
        .filter(|id| !id.is_empty())
}

/// `containerd://<id>` → `<id>`: the kubelet prefixes the runtime's id with
/// the runtime's name; cgroup paths carry the bare id.
fn strip_scheme(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// The pods of a node by UID, fed by [`watch_node_pods`].
///
/// Deleted pods stay for a grace period so that events read after a pod is
/// gone still carry its names. Shared by concurrent traces: all methods take
/// `&self`.
#[derive(Debug)]
pub struct PodIndex {
    grace_period: Duration,
    pods: Mutex<HashMap<String, Entry>>,
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    /// When the pod was seen deleted.
    deleted: Option<Instant>,
}

impl Default for PodIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl PodIndex {
    /// How long deleted pods stay by default.
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(60);

    /// An empty index keeping deleted pods for the default grace period.
    pub fn new() -> Self {
        Self::with_grace_period(Self::DEFAULT_GRACE_PERIOD)
    }

    /// An empty index keeping deleted pods for `grace_period`.
    pub fn with_grace_period(grace_period: Duration) -> Self {
        Self {
            grace_period,
            pods: Mutex::new(HashMap::new()),
            changes: watch::Sender::new(0),
        }
    }

    /// How long deleted pods stay.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// Adds or updates a pod (a watch `Apply`); a pod seen deleted comes back.
    pub fn apply(&self, pod: &Pod) {
        let Some(info) = PodInfo::from_pod(pod) else {
            return;
        };
        let changed = {
            let mut pods = self.lock();
            match pods.get_mut(&info.uid) {
                // Status updates that change nothing kept here are frequent
                // (conditions, probes): they must not wake subscribers.
                Some(entry) if *entry.pod == info && entry.deleted.is_none() => false,
                Some(entry) => {
                    entry.pod = Arc::new(info);
                    entry.deleted = None;
                    true
                }
                None => {
                    pods.insert(
                        info.uid.clone(),
                        Entry {
                            pod: Arc::new(info),
                            deleted: None,
                        },
                    );
                    true
                }
            }
        };
        if changed {
            self.bump();
        }
    }

    /// Marks a pod deleted (a watch `Delete`); it stays for the grace period.
    pub fn delete(&self, pod: &Pod) {
        self.delete_at(pod, Instant::now());
    }

    fn delete_at(&self, pod: &Pod, now: Instant) {
        let Some(info) = PodInfo::from_pod(pod) else {
            return;
        };
        let mut pods = self.lock();
        let entry = pods.entry(info.uid.clone()).or_insert_with(|| Entry {
            pod: Arc::new(info.clone()),
            deleted: None,
        });
        // The final object may know containers the index has not seen yet.
        if *entry.pod != info {
            entry.pod = Arc::new(info);
        }
        entry.deleted.get_or_insert(now);
        drop(pods);
        self.bump();
    }

    /// Marks deleted every pod whose UID is not in `present`: after a relist,
    /// pods missing from it were deleted while the watch was down.
    pub fn delete_missing(&self, present: &HashSet<String>) {
        self.delete_missing_at(present, Instant::now());
    }

    fn delete_missing_at(&self, present: &HashSet<String>, now: Instant) {
        let mut changed = false;
        for (uid, entry) in self.lock().iter_mut() {
            if entry.deleted.is_none() && !present.contains(uid) {
                entry.deleted = Some(now);
                changed = true;
            }
        }
        if changed {
            self.bump();
        }
    }

    /// Forgets pods deleted longer than the grace period ago.
    pub fn expire(&self) {
        self.expire_at(Instant::now());
    }

    fn expire_at(&self, now: Instant) {
        let removed = {
            let mut pods = self.lock();
            let before = pods.len();
            pods.retain(|_, entry| !self.expired(entry, now));
            before != pods.len()
        };
        if removed {
            self.bump();
        }
    }

    /// The pod with this UID, if it exists or was deleted within the grace
    /// period.
    pub fn get(&self, pod_uid: &str) -> Option<Arc<PodInfo>> {
        self.get_at(pod_uid, Instant::now())
    }

    fn get_at(&self, pod_uid: &str, now: Instant) -> Option<Arc<PodInfo>> {
        let pods = self.lock();
        let entry = pods.get(pod_uid)?;
        (!self.expired(entry, now)).then(|| Arc::clone(&entry.pod))
    }

    /// How many pods the index holds, deleted ones in their grace period
    /// included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the index holds no pod.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A counter bumped whenever a pod is added, deleted, forgotten, or
    /// changes its names, labels or containers.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// A receiver woken whenever [`generation`](Self::generation) changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        entry
            .deleted
            .is_some_and(|deleted| now.saturating_duration_since(deleted) > self.grace_period)
    }

    fn bump(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every update leaves the map consistent, so poisoning carries no
        // information here.
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `index` up to date with the pods scheduled on `node_name`, until the
/// task running it is dropped.
///
/// Watch errors (API server unreachable, RBAC denying `list`/`watch` on pods)
/// are logged and retried with backoff; meanwhile the index keeps what it has.
pub async fn watch_node_pods(client: kube::Client, node_name: &str, index: Arc<PodIndex>) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = pin!(watcher(pods, config).default_backoff());
    // Deleted pods must be forgotten even when no event arrives.
    let mut expiry = tokio::time::interval((index.grace_period() / 2).max(Duration::from_secs(1)));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // UIDs listed since the last `Init`, to find pods deleted while the watch
    // was down.
    let mut relisted: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod))) => index.apply(&pod),
                Some(Ok(watcher::Event::Delete(pod))) => index.delete(&pod),
                Some(Ok(watcher::Event::Init)) => relisted = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let (Some(uids), Some(uid)) = (relisted.as_mut(), pod.metadata.uid.as_ref()) {
                        uids.insert(uid.clone());
                    }
                    index.apply(&pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(uids) = relisted.take() {
                        index.delete_missing(&uids);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(node = node_name, error = %error, "cannot watch the pods of this node; retrying");
                }
                None => return,
            },
            _ = expiry.tick() => index.expire(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const UID: &str = "8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b";

    fn status(name: &str, id: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            container_id: id.map(str::to_string),
            ..Default::default()
        }
    }

    fn pod(uid: &str, containers: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.to_string()),
                namespace: Some("shop".to_string()),
                name: Some("web-1".to_string()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(containers),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn info_from_pod() {
        let mut p = pod(
            UID,
            vec![
                status("nginx", Some("containerd://aaa")),
                status("pending", None),
                status("blank", Some("")),
            ],
        );
        let pod_status = p.status.as_mut().unwrap();
        pod_status.init_container_statuses = Some(vec![status("init-db", Some("docker://bbb"))]);
        pod_status.ephemeral_container_statuses =
            Some(vec![status("debugger", Some("cri-o://ccc"))]);
        let info = PodInfo::from_pod(&p).unwrap();
        assert_eq!(info.uid, UID);
        assert_eq!(info.namespace, "shop");
        assert_eq!(info.name, "web-1");
        assert_eq!(info.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(info.container_name("aaa"), Some("nginx"));
        assert_eq!(info.container_name("bbb"), Some("init-db"));
        assert_eq!(info.container_name("ccc"), Some("debugger"));
        assert_eq!(info.container_name("containerd://aaa"), None);
        assert_eq!(info.containers.len(), 3);
    }

    /// A status in `state`: "running", "waiting" or "terminated".
    fn in_state(name: &str, id: Option<&str>, state: &str) -> ContainerStatus {
        use k8s_openapi::api::core::v1::{ContainerStateRunning, ContainerStateWaiting};
        let state = match state {
            "running" => ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            },
            "waiting" => ContainerState {
                waiting: Some(ContainerStateWaiting::default()),
                ..Default::default()
            },
            "terminated" => ContainerState {
                terminated: Some(ContainerStateTerminated::default()),
                ..Default::default()
            },
            other => panic!("no state {other}"),
        };
        ContainerStatus {
            state: Some(state),
            ..status(name, id)
        }
    }

    /// A pod with containers `main` (and `init`, `debug` when their
    /// statuses are given) in its spec, and these statuses.
    fn spec_pod(
        regular: Vec<ContainerStatus>,
        init: Option<Vec<ContainerStatus>>,
        ephemeral: Option<Vec<ContainerStatus>>,
    ) -> Pod {
        use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
        let container = |name: &str| Container {
            name: name.to_string(),
            ..Default::default()
        };
        let mut p = pod(UID, regular);
        p.spec = Some(PodSpec {
            containers: vec![container("main")],
            init_containers: init.as_ref().map(|_| vec![container("init")]),
            ephemeral_containers: ephemeral.as_ref().map(|_| {
                vec![EphemeralContainer {
                    name: "debug".to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        let pod_status = p.status.as_mut().unwrap();
        pod_status.init_container_statuses = init;
        pod_status.ephemeral_container_statuses = ephemeral;
        p
    }

    fn awaiting(pod: &Pod) -> bool {
        PodInfo::from_pod(pod).unwrap().awaiting_containers
    }

    #[test]
    fn a_pod_awaits_the_containers_that_have_not_started() {
        let running = || vec![in_state("main", Some("containerd://a"), "running")];
        // Created, not yet reported; being created; running.
        assert!(awaiting(&spec_pod(vec![], None, None)));
        assert!(awaiting(&spec_pod(
            vec![in_state("main", None, "waiting")],
            None,
            None
        )));
        assert!(!awaiting(&spec_pod(running(), None, None)));
        // An init container running: main is still to come.
        let init = vec![in_state("init", Some("containerd://i"), "running")];
        let main_waiting = vec![in_state("main", None, "waiting")];
        assert!(awaiting(&spec_pod(main_waiting, Some(init), None)));
        // Init done and main running: the pod's containers all started.
        let init_done = vec![in_state("init", Some("containerd://i"), "terminated")];
        assert!(!awaiting(&spec_pod(running(), Some(init_done), None)));
        // An ephemeral container on its way, and one that ended.
        let debug = |state| Some(vec![in_state("debug", Some("containerd://d"), state)]);
        assert!(awaiting(&spec_pod(running(), None, Some(vec![]))));
        assert!(!awaiting(&spec_pod(running(), None, debug("terminated"))));
    }

    #[test]
    fn a_pod_awaits_a_container_the_kubelet_restarts() {
        let exited = || vec![in_state("main", Some("containerd://a"), "terminated")];
        let mut p = spec_pod(exited(), None, None);
        assert!(awaiting(&p), "restartPolicy Always by default");
        p.spec.as_mut().unwrap().restart_policy = Some("Never".to_string());
        assert!(!awaiting(&p));
        let mut done = spec_pod(exited(), None, None);
        done.status.as_mut().unwrap().phase = Some("Succeeded".to_string());
        assert!(!awaiting(&done));
    }

    /// Without a spec (the tests' pods, or a pod stripped of it), nothing is
    /// awaited: events are never held for it.
    #[test]
    fn a_pod_without_a_spec_awaits_nothing() {
        assert!(!awaiting(&pod(UID, vec![])));
    }

    #[test]
    fn restarted_containers_keep_their_previous_id() {
        let mut s = status("app", Some("containerd://new"));
        s.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some("containerd://old".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let info = PodInfo::from_pod(&pod(UID, vec![s])).unwrap();
        assert_eq!(info.container_name("new"), Some("app"));
        assert_eq!(info.container_name("old"), Some("app"));
    }

    #[test]
    fn pod_without_uid_is_ignored() {
        let mut p = pod(UID, vec![]);
        p.metadata.uid = None;
        assert_eq!(PodInfo::from_pod(&p), None);
        let index = PodIndex::new();
        index.apply(&p);
        index.delete(&p);
        assert!(index.is_empty());
        assert_eq!(index.generation(), 0);
    }

    #[test]
    fn scheme_stripping() {
        assert_eq!(strip_scheme("containerd://abc"), "abc");
        assert_eq!(strip_scheme("abc"), "abc");
        assert_eq!(strip_scheme("cri-o://"), "");
    }

    #[test]
    fn apply_updates_and_bumps_only_on_change() {
        let index = PodIndex::new();
        let mut p = pod(UID, vec![status("nginx", None)]);
        index.apply(&p);
        assert_eq!(index.generation(), 1);
        assert_eq!(index.get(UID).unwrap().container_name("aaa"), None);
        // A status update that changes nothing kept here.
        index.apply(&p);
        assert_eq!(index.generation(), 1);
        // The container started and got an id.
        p.status.as_mut().unwrap().container_statuses =
            Some(vec![status("nginx", Some("containerd://aaa"))]);
        index.apply(&p);
        assert_eq!(index.generation(), 2);
        assert_eq!(index.get(UID).unwrap().container_name("aaa"), Some("nginx"));
        // Relabelled.
        p.metadata.labels = Some(BTreeMap::from([("app".to_string(), "api".to_string())]));
        index.apply(&p);
        assert_eq!(index.generation(), 3);
        assert_eq!(index.get(UID).unwrap().labels["app"], "api");
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn deleted_pods_stay_for_the_grace_period() {
        let index = PodIndex::with_grace_period(Duration::from_secs(60));
        let p = pod(UID, vec![status("nginx", Some("containerd://aaa"))]);
        index.apply(&p);
        let start = Instant::now();
        index.delete_at(&p, start);
        assert_eq!(index.generation(), 2);
        let in_grace = start + Duration::from_secs(59);
        assert_eq!(index.get_at(UID, in_grace).unwrap().name, "web-1");
        index.expire_at(in_grace);
        assert_eq!(index.len(), 1);
        let after = start + Duration::from_secs(61);
        assert_eq!(index.get_at(UID, after), None);
        index.expire_at(after);
        assert!(index.is_empty());
        assert_eq!(index.generation(), 3);
    }

    #[test]
    fn delete_of_an_unseen_pod_is_kept_for_late_events() {
        let index = PodIndex::new();
        index.delete(&pod(UID, vec![status("nginx", Some("containerd://aaa"))]));
        assert_eq!(index.get(UID).unwrap().container_name("aaa"), Some("nginx"));
    }

    #[test]
    fn reapplied_pod_is_no_longer_deleted() {
        let index = PodIndex::with_grace_period(Duration::from_secs(1));
        let p = pod(UID, vec![]);
        let start = Instant::now();
        index.delete_at(&p, start);
        index.apply(&p);
        assert!(index
            .get_at(UID, start + Duration::from_secs(3600))
            .is_some());
    }

    #[test]
    fn relist_deletes_missing_pods() {
        let index = PodIndex::with_grace_period(Duration::from_secs(10));
        let other = "11111111-2222-3333-4444-555555555555";
        index.apply(&pod(UID, vec![]));
        index.apply(&pod(other, vec![]));
        let start = Instant::now();
        index.delete_missing_at(&HashSet::from([UID.to_string()]), start);
        let later = start + Duration::from_secs(11);
        assert!(index.get_at(UID, later).is_some());
        assert_eq!(index.get_at(other, later), None);
        // Nothing else missing: no change.
        let generation = index.generation();
        index.delete_missing_at(&HashSet::from([UID.to_string()]), later);
        assert_eq!(index.generation(), generation);
    }

    #[tokio::test]
    async fn subscribers_are_woken() {
        let index = PodIndex::new();
        let mut changes = index.subscribe();
        index.apply(&pod(UID, vec![]));
        changes.changed().await.unwrap();
        assert_eq!(*changes.borrow_and_update(), 1);
    }
}
