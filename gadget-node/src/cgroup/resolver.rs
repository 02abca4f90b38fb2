//! From the kernel's cgroup id to the container it belongs to, by walking
//! the cgroup2 tree.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use super::{parse_kubelet_cgroup, CgroupError, ContainerCgroup};

/// How a [`CgroupResolver`] trades freshness against work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupResolverConfig {
    /// The least time between two rescans started by unknown cgroup ids, so
    /// that a flood of events from new host cgroups walks the tree at most
    /// once per interval.
    pub rescan_interval: Duration,
    /// How long a container cgroup stays resolvable after its directory is
    /// gone: events of a short-lived container are often read after it exits.
    pub grace_period: Duration,
    /// How deep below the root to look. kind's nesting
    /// (`/system.slice/docker-<node>.scope/kubelet.slice/kubelet-kubepods.slice/<qos>/<pod>/<container>`)
    /// is 7 levels.
    pub max_depth: usize,
}

impl Default for CgroupResolverConfig {
    fn default() -> Self {
        Self {
            rescan_interval: Duration::from_millis(200),
            grace_period: Duration::from_secs(60),
            max_depth: 10,
        }
    }
}

/// Maps cgroup ids (as `bpf_get_current_cgroup_id()` returns them) to the
/// Kubernetes containers whose cgroups they are.
///
/// Shared by concurrent traces: all methods take `&self`. The tree walk runs
/// without holding the lookup lock, so lookups never wait for a walk.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    config: CgroupResolverConfig,
    state: Mutex<ResolverState>,
    /// Held for the duration of a walk, so that walks do not overlap and a
    /// slow walk cannot overwrite the result of a newer one.
    walking: Mutex<()>,
}

#[derive(Debug, Default)]
struct ResolverState {
    /// Container cgroups found by the last walk.
    live: HashMap<u64, Arc<ContainerCgroup>>,
    /// Container cgroups gone since, with when they were first missed.
    gone: HashMap<u64, (Arc<ContainerCgroup>, Instant)>,
    /// Cgroups known not to be containers (host cgroups seen by the last walk,
    /// ids the last walk did not find); cleared by the next walk.
    not_containers: HashSet<u64>,
    /// When the last walk started, for the rescan rate limit.
    last_walk: Option<Instant>,
    /// Bumped whenever `live` changes.
    generation: u64,
    /// How many walks were done, for diagnostics.
    walks: u64,
}

/// What one walk of the tree found.
struct Walk {
    containers: HashMap<u64, ContainerCgroup>,
    others: HashSet<u64>,
}

impl CgroupResolver {
    /// A resolver over the cgroup2 hierarchy mounted at `root`, with the
    /// default configuration. Nothing is read until the first lookup or
    /// [`scan`](Self::scan).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_config(root, CgroupResolverConfig::default())
    }

    /// A resolver over the cgroup2 hierarchy mounted at `root`.
    pub fn with_config(root: impl Into<PathBuf>, config: CgroupResolverConfig) -> Self {
        Self {
            root: root.into(),
            config,
            state: Mutex::new(ResolverState::default()),
            walking: Mutex::new(()),
        }
    }

    /// The cgroup2 root this resolver walks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration this resolver was built with.
    pub fn config(&self) -> &CgroupResolverConfig {
        &self.config
    }

    /// Walks the tree now, whatever the rate limit, and updates the known
    /// containers. Fails only when the root itself cannot be listed; parts of
    /// the tree that vanish during the walk are skipped.
    pub fn scan(&self) -> Result<(), CgroupError> {
        self.scan_at(Instant::now())
    }

    fn scan_at(&self, now: Instant) -> Result<(), CgroupError> {
        let _walking = self.walking.lock().unwrap_or_else(|e| e.into_inner());
        self.lock().last_walk = Some(now);
        let walk = self.walk()?;
        self.lock().merge(walk, now, self.config.grace_period);
        Ok(())
    }

    /// The container whose cgroup has this id, or `None` for a cgroup that is
    /// not a container's (a host process, the pod's own cgroup).
    ///
    /// An unknown id starts a rescan unless one started less than
    /// `rescan_interval` ago; ids that rescan does not find as containers
    /// are remembered as not containers until the next rescan.
    pub fn resolve(&self, cgroup_id: u64) -> Option<Arc<ContainerCgroup>> {
        self.resolve_at(cgroup_id, Instant::now())
    }

    fn resolve_at(&self, cgroup_id: u64, now: Instant) -> Option<Arc<ContainerCgroup>> {
        match self.classify_at(cgroup_id, now) {
            Lookup::Container(container) => Some(container),
            Lookup::NotContainer | Lookup::Unknown => None,
        }
    }

    /// Like [`resolve`](Self::resolve), but tells a cgroup known not to be
    /// a container's apart from one not known yet.
    pub fn classify(&self, cgroup_id: u64) -> Lookup {
        self.classify_at(cgroup_id, Instant::now())
    }

    fn classify_at(&self, cgroup_id: u64, now: Instant) -> Lookup {
        {
            let state = self.lock();
            let known = state.lookup(cgroup_id, now, self.config.grace_period);
            if !matches!(known, Lookup::Unknown) {
                return known;
            }
            let recent = state.last_walk.is_some_and(|last| {
                now.saturating_duration_since(last) < self.config.rescan_interval
            });
            if recent {
                return Lookup::Unknown;
            }
        }
        // Another caller is walking: its result will serve the next event
        // rather than blocking this one.
        let _walking = match self.walking.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Lookup::Unknown,
        };
        {
            let mut state = self.lock();
            // Re-check under the lock: a walk may have ended meanwhile.
            if state.last_walk.is_some_and(|last| {
                now.saturating_duration_since(last) < self.config.rescan_interval
            }) {
                return state.lookup(cgroup_id, now, self.config.grace_period);
            }
            state.last_walk = Some(now);
        }
        let walk = match self.walk() {
            Ok(walk) => walk,
            Err(error) => {
                tracing::warn!(error = %error, "cannot rescan cgroups");
                return Lookup::Unknown;
            }
        };
        let mut state = self.lock();
        state.merge(walk, now, self.config.grace_period);
        match state.lookup(cgroup_id, now, self.config.grace_period) {
            Lookup::Container(container) => Lookup::Container(container),
            _ => {
                state.not_containers.insert(cgroup_id);
                Lookup::NotContainer
            }
        }
    }

    /// The container cgroups that exist now (as of the last walk), by id:
    /// the set a kernel-side cgroup filter should allow. Gone cgroups still
    /// in their grace period are not listed.
    pub fn containers(&self) -> Vec<(u64, Arc<ContainerCgroup>)> {
        self.lock()
            .live
            .iter()
            .map(|(id, container)| (*id, Arc::clone(container)))
            .collect()
    }

    /// The cgroups known not to be containers': the host's, as of the last
    /// walk.
    pub fn not_containers(&self) -> Vec<u64> {
        self.lock().not_containers.iter().copied().collect()
    }

    /// A counter bumped whenever the set listed by
    /// [`containers`](Self::containers) changes.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// How many times the tree was walked, for diagnostics and tests.
    pub fn walks(&self) -> u64 {
        self.lock().walks
    }

    fn lock(&self) -> MutexGuard<'_, ResolverState> {
        // The state is consistent after every statement that changes it, so
        // a panic elsewhere while holding the lock does not poison its data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists every directory below the root up to `max_depth` and parses its
    /// path. The whole tree is walked, not only `kubepods`, because kubepods
    /// can be nested anywhere (kind) and because the ids of host cgroups seen
    /// here are what keeps their events from triggering rescans.
    fn walk(&self) -> Result<Walk, CgroupError> {
        let mut walk = Walk {
            containers: HashMap::new(),
            others: HashSet::new(),
        };
        let root_entries =
            std::fs::read_dir(&self.root).map_err(|source| CgroupError::ReadRoot {
                path: self.root.clone(),
                source,
            })?;
        if let Ok(meta) = std::fs::metadata(&self.root) {
            walk.others.insert(meta.ino());
        }
        let mut pending = vec![(root_entries, String::new(), 1usize)];
        while let Some((entries, relative, depth)) = pending.pop() {
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                // Vanished since listed: a container that just exited.
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let path = format!("{relative}/{}", entry.file_name().to_string_lossy());
                match parse_kubelet_cgroup(&path) {
                    Some(container) => {
                        walk.containers.insert(meta.ino(), container);
                    }
                    None => {
                        walk.others.insert(meta.ino());
                    }
                }
                if depth < self.config.max_depth {
                    if let Ok(children) = std::fs::read_dir(entry.path()) {
                        pending.push((children, path, depth + 1));
                    }
                }
            }
        }
        Ok(walk)
    }
}

/// What is known of a cgroup id.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A container's cgroup (or one gone within the grace period).
    Container(Arc<ContainerCgroup>),
    /// A cgroup the last walk saw and that is no container's, or an id
    /// that walk did not find at all.
    NotContainer,
    /// Not seen by any walk yet, and a walk now was not allowed (rate
    /// limit) or failed: ask again later.
    Unknown,
}

impl ResolverState {
    fn lookup(&self, cgroup_id: u64, now: Instant, grace: Duration) -> Lookup {
        if let Some(container) = self.live.get(&cgroup_id) {
            return Lookup::Container(Arc::clone(container));
        }
        if let Some((container, since)) = self.gone.get(&cgroup_id) {
            if now.saturating_duration_since(*since) <= grace {
                return Lookup::Container(Arc::clone(container));
            }
            // Kernfs ids are never reused, so an expired one stays a
            // non-container for good.
            return Lookup::NotContainer;
        }
        if self.not_containers.contains(&cgroup_id) {
            return Lookup::NotContainer;
        }
        Lookup::Unknown
    }

    fn merge(&mut self, walk: Walk, now: Instant, grace: Duration) {
        self.walks += 1;
        let mut changed = false;
        let mut live = HashMap::with_capacity(walk.containers.len());
        for (id, container) in walk.containers {
            // Keep the existing Arc so that callers caching by pointer keep
            // their entries.
            let container = match self.live.remove(&id) {
                Some(known) if *known == container => known,
                _ => {
                    changed = true;
                    Arc::new(container)
                }
            };
            live.insert(id, container);
        }
        for (id, container) in self.live.drain() {
            changed = true;
            self.gone.insert(id, (container, now));
        }
        self.live = live;
        self.gone
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= grace);
        self.not_containers = walk.others;
        if changed {
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{container_path, FakeTree, CONTAINER_ID as ID, POD_UID as UID};

    #[test]
    fn scan_maps_inodes_to_containers() {
        let tree = FakeTree::new();
        let id = tree.mkdir(&container_path(UID, ID));
        let host = tree.mkdir("/system.slice/cron.service");
        let resolver = tree.resolver(CgroupResolverConfig::default());
        resolver.scan().unwrap();
        let expected = ContainerCgroup {
            pod_uid: UID.to_string(),
            container_id: ID.to_string(),
            runtime: None,
        };
        assert_eq!(resolver.resolve(id).as_deref(), Some(&expected));
        assert_eq!(resolver.resolve(host), None);
        let listed = resolver.containers();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, id);
        assert_eq!(resolver.walks(), 1, "known ids need no rescan");
    }

    #[test]
    fn miss_rescans_once_per_interval() {
        let tree = FakeTree::new();
        let resolver = tree.resolver(CgroupResolverConfig {
            rescan_interval: Duration::from_secs(10),
            ..Default::default()
        });
        let start = Instant::now();
        resolver.scan_at(start).unwrap();
        let id = tree.mkdir(&container_path(UID, ID));
        // Within the interval: no walk, no answer.
        assert_eq!(
            resolver.resolve_at(id, start + Duration::from_secs(1)),
            None
        );
        assert_eq!(resolver.walks(), 1);
        // After it: one walk finds the new container.
        let later = start + Duration::from_secs(11);
        assert!(resolver.resolve_at(id, later).is_some());
        assert_eq!(resolver.walks(), 2);
    }

    #[test]
    fn unknown_ids_are_remembered_until_the_next_walk() {
        let tree = FakeTree::new();
        let resolver = tree.resolver(CgroupResolverConfig {
            rescan_interval: Duration::ZERO,
            ..Default::default()
        });
        let start = Instant::now();
        // An id that no walk finds (a cgroup deeper than max_depth, say).
        let ghost = u64::MAX - 7;
        assert_eq!(resolver.resolve_at(ghost, start), None);
        assert_eq!(resolver.walks(), 1);
        for i in 0..100 {
            assert_eq!(
                resolver.resolve_at(ghost, start + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(resolver.walks(), 1, "a known non-container must not rescan");
        // A host cgroup seen by a walk is known too.
        let host = tree.mkdir("/user.slice/session-1.scope");
        assert_eq!(resolver.resolve_at(host, start), None);
        assert_eq!(resolver.walks(), 2);
        assert_eq!(resolver.resolve_at(host, start), None);
        assert_eq!(resolver.walks(), 2);
    }

    #[test]
    fn gone_containers_resolve_for_the_grace_period() {
        let tree = FakeTree::new();
        let resolver = tree.resolver(CgroupResolverConfig {
            grace_period: Duration::from_secs(60),
            ..Default::default()
        });
        let path = container_path(UID, ID);
        let id = tree.mkdir(&path);
        let start = Instant::now();
        resolver.scan_at(start).unwrap();
        let generation = resolver.generation();
        tree.rmdir(&path);
        let gone_at = start + Duration::from_secs(1);
        resolver.scan_at(gone_at).unwrap();
        assert!(resolver.containers().is_empty());
        assert!(resolver.generation() > generation);
        assert!(resolver
            .resolve_at(id, gone_at + Duration::from_secs(59))
            .is_some());
        assert_eq!(
            resolver.resolve_at(id, gone_at + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn generation_changes_only_with_the_container_set() {
        let tree = FakeTree::new();
        let resolver = tree.resolver(CgroupResolverConfig::default());
        resolver.scan().unwrap();
        let empty = resolver.generation();
        tree.mkdir("/system.slice/a.service");
        resolver.scan().unwrap();
        assert_eq!(resolver.generation(), empty, "host cgroups do not count");
        tree.mkdir(&container_path(UID, ID));
        resolver.scan().unwrap();
        let one = resolver.generation();
        assert!(one > empty);
        resolver.scan().unwrap();
        assert_eq!(resolver.generation(), one);
    }

    #[test]
    fn walk_is_bounded_in_depth() {
        let tree = FakeTree::new();
        let deep = format!("/a/b/c/d{}", container_path(UID, ID));
        let id = tree.mkdir(&deep);
        let shallow = tree.resolver(CgroupResolverConfig {
            max_depth: 6,
            ..Default::default()
        });
        shallow.scan().unwrap();
        assert!(shallow.containers().is_empty());
        assert_eq!(shallow.resolve(id), None);
        let deeper = tree.resolver(CgroupResolverConfig {
            max_depth: 8,
            ..Default::default()
        });
        deeper.scan().unwrap();
        assert!(deeper.resolve(id).is_some());
    }

    #[test]
    fn missing_root_is_an_error() {
        let resolver = CgroupResolver::new("/nonexistent/cgroup/root");
        let error = resolver.scan().unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot list the cgroup2 root /nonexistent/cgroup/root"
        );
        assert_eq!(resolver.resolve(42), None);
    }
}
