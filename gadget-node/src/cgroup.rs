//! Container identity from cgroup v2: where the cgroup2 filesystem is mounted,
//! what the kubelet's cgroup paths say about pods and containers, and a
//! resolver from the kernel's cgroup id to the container it belongs to.
//!
//! `bpf_get_current_cgroup_id()` returns the id of the kernfs node of the
//! task's cgroup v2 directory, which is also that directory's inode number, so
//! walking the cgroup2 tree and reading inode numbers maps kernel ids to paths
//! without any help from the container runtime.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Where the mount table of the calling process is read from.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Errors finding or reading the cgroup v2 hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mount table could not be read.
    #[error("cannot read the mount table {path}")]
    ReadMountInfo {
        /// The file that was read.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// No cgroup2 filesystem is mounted where this process can see it.
    #[error(
        "no cgroup2 filesystem in {path}; cgroup v2 is needed to tell containers apart \
         (on a node agent, mount the host's /sys/fs/cgroup)"
    )]
    NoCgroup2Mount {
        /// The mount table that was searched.
        path: PathBuf,
    },
    /// The root of the cgroup2 hierarchy could not be listed.
    #[error("cannot list the cgroup2 root {path}")]
    ReadRoot {
        /// The cgroup2 root directory.
        path: PathBuf,
        /// Why listing failed.
        #[source]
        source: io::Error,
    },
}

/// Finds the cgroup2 mount point in the text of a `/proc/<pid>/mountinfo`.
///
/// A mount whose root is `/` (the whole hierarchy) is preferred over a bind
/// mount of a subtree, since only the whole hierarchy maps every cgroup id.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        // Fields before " - " are: id, parent id, major:minor, root, mount
        // point, options, then optional fields; after it: fstype, source,
        // super options. Optional fields make the separator the only anchor.
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let mut fields = before.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if root == "/" {
            return Some(mount_point);
        }
        subtree.get_or_insert(mount_point);
    }
    subtree
}

/// Undoes the octal escapes the kernel writes in mountinfo for space, tab,
/// newline and backslash (`\040`, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds the cgroup2 mount point of this process from `/proc/self/mountinfo`.
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let path = PathBuf::from(MOUNTINFO);
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::ReadMountInfo {
        path: path.clone(),
        source,
    })?;
    cgroup2_mount(&text).ok_or(CgroupError::NoCgroup2Mount { path })
}

/// A container's cgroup as the kubelet lays it out: which pod, which container,
/// and, when the path says so, which runtime made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerCgroup {
    /// The pod UID with `-` separators, as in the pod's `metadata.uid`.
    pub pod_uid: String,
    /// The runtime's container id (64 hex digits), as in the pod status'
    /// `containerID` without its `<runtime>://` scheme.
    pub container_id: String,
    /// `containerd`, `cri-o` or `docker` when the cgroup name says so; the
    /// cgroupfs driver names cgroups by bare id and leaves this `None`.
    pub runtime: Option<String>,
}

/// Parses a cgroup path relative to the cgroup2 root (as in `/proc/<pid>/cgroup`)
/// into the pod and container it belongs to.
///
/// Accepts both kubelet cgroup drivers, wherever the `kubepods` subtree sits
/// (kind nests it under `/kubelet.slice/kubelet-kubepods.slice`):
///
/// - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
///   (also `crio-<id>.scope`, `docker-<id>.scope`, guaranteed pods directly
///   under `kubepods.slice`);
/// - cgroupfs: `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`.
///
/// Cgroups below a container's (made by a process inside it) belong to that
/// container. The pod's own cgroup and CRI-O's `crio-conmon-<id>` monitor
/// cgroup are not containers and give `None`.
pub fn parse_kubelet_cgroup(relative_path: &str) -> Option<ContainerCgroup> {
    let components: Vec<&str> = relative_path.split('/').filter(|c| !c.is_empty()).collect();
    let kubepods = components.iter().position(|c| is_kubepods(c))?;
    // The pod is right under kubepods (guaranteed) or under its QoS class.
    let (pod_index, pod_uid) = components
        .iter()
        .enumerate()
        .skip(kubepods + 1)
        .take(2)
        .find_map(|(i, c)| pod_uid_of(c).map(|uid| (i, uid)))?;
    let (runtime, container_id) = container_of(components.get(pod_index + 1)?)?;
    Some(ContainerCgroup {
        pod_uid,
        container_id: container_id.to_string(),
        runtime: runtime.map(str::to_string),
    })
}

/// Whether a path component is the root of the kubelet's pods: `kubepods`
/// (cgroupfs driver) or a slice with a `kubepods` word (`kubepods.slice`,
/// `kubelet-kubepods.slice`).
fn is_kubepods(component: &str) -> bool {
    component == "kubepods"
        || component
            .strip_suffix(".slice")
            .is_some_and(|stem| stem.split('-').any(|word| word == "kubepods"))
}

/// The pod UID in a pod cgroup name, `pod<uid>` (cgroupfs) or
/// `...-pod<uid>.slice` (systemd, where the kubelet writes `-` as `_` because
/// `-` means nesting in slice names), normalized to `-` separators.
fn pod_uid_of(component: &str) -> Option<String> {
    let uid = match component.strip_suffix(".slice") {
        Some(stem) => &stem[stem.rfind("-pod")? + 4..],
        None => component.strip_prefix("pod")?,
    };
    // A UUID, or the 32-hex-digit hash the kubelet uses for static pods.
    let valid = (32..=36).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    valid.then(|| uid.replace('_', "-").to_ascii_lowercase())
}

/// The runtime and container id in a container cgroup name: `<id>` (cgroupfs
/// driver) or `<prefix>-<id>` with an optional `.scope` (systemd driver).
fn container_of(component: &str) -> Option<(Option<&'static str>, &str)> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let (prefix, id) = match name.rsplit_once('-') {
        Some((prefix, id)) => (Some(prefix), id),
        None => (None, name),
    };
    if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let runtime = match prefix {
        None => None,
        Some("cri-containerd") => Some("containerd"),
        Some("crio") => Some("cri-o"),
        Some("docker") => Some("docker"),
        // conmon is CRI-O's monitor process, outside the container.
        Some(p) if p.split('-').any(|word| word == "conmon") => return None,
        Some(_) => None,
    };
    Some((runtime, id))
}

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

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const UID_SYSTEMD: &str = "8f1c2d3e_4b5a_6978_8a9b_0c1d2e3f4a5b";

    fn container(runtime: Option<&str>) -> Option<ContainerCgroup> {
        Some(ContainerCgroup {
            pod_uid: UID.to_string(),
            container_id: ID.to_string(),
            runtime: runtime.map(str::to_string),
        })
    }

    #[test]
    fn mountinfo_finds_cgroup2() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn mountinfo_unescapes_mount_points() {
        let text = "41 31 0:38 / /mnt/my\\040cgroup\\011x\\134y rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/mnt/my cgroup\tx\\y"))
        );
    }

    #[test]
    fn mountinfo_prefers_the_whole_hierarchy() {
        let text = "\
50 40 0:38 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw
51 40 0:38 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
        let only_subtree = "50 40 0:38 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(only_subtree),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn mountinfo_without_cgroup2() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/cgroup2 rw - cgroup cgroup rw,cpu
garbage line
";
        assert_eq!(cgroup2_mount(text), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape_mountinfo("a\\b"), "a\\b");
        assert_eq!(unescape_mountinfo("a\\04"), "a\\04");
        assert_eq!(unescape_mountinfo("a\\999"), "a\\999");
        assert_eq!(unescape_mountinfo("\\040"), " ");
    }

    #[test]
    fn this_host_has_cgroup2() {
        let mount = find_cgroup2_mount().expect("cgroup2 is mounted on test hosts");
        assert!(mount.join("cgroup.procs").exists());
    }

    #[test]
    fn systemd_containerd_burstable() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&path), container(Some("containerd")));
    }

    #[test]
    fn systemd_besteffort_and_guaranteed() {
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&besteffort), container(Some("cri-o")));
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/docker-{ID}.scope");
        assert_eq!(parse_kubelet_cgroup(&guaranteed), container(Some("docker")));
    }

    #[test]
    fn cgroupfs_layouts() {
        let burstable = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&burstable), container(None));
        let guaranteed = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&guaranteed), container(None));
        let crio = format!("/kubepods/besteffort/pod{UID}/crio-{ID}");
        assert_eq!(parse_kubelet_cgroup(&crio), container(Some("cri-o")));
    }

    #[test]
    fn uid_separators_are_normalized() {
        let underscores = format!("/kubepods/pod{UID_SYSTEMD}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&underscores), container(None));
        let dashes = format!("/kubepods.slice/kubepods-pod{UID}.slice/cri-containerd-{ID}.scope");
        // A dash-written uid inside a slice name still parses whole because
        // the uid is taken after the last "-pod".
        assert_eq!(parse_kubelet_cgroup(&dashes), container(Some("containerd")));
    }

    #[test]
    fn static_pod_hash_uid() {
        let hash = "d41d8cd98f00b204e9800998ecf8427e";
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse_kubelet_cgroup(&path).unwrap().pod_uid, hash);
    }

    #[test]
    fn kubepods_nested_under_a_prefix() {
        let kind = format!(
            "/system.slice/docker-{ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&kind), container(Some("containerd")));
        let cgroupfs = format!("/some/agent/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&cgroupfs), container(None));
        // Relative paths without the leading slash parse the same.
        let bare = format!("kubepods/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&bare), container(None));
    }

    #[test]
    fn cgroups_inside_a_container_belong_to_it() {
        let nested = format!("/kubepods/pod{UID}/{ID}/init.scope/inner");
        assert_eq!(parse_kubelet_cgroup(&nested), container(None));
    }

    #[test]
    fn not_containers() {
        let not = [
            "/".to_string(),
            "/system.slice/sshd.service".to_string(),
            "/kubepods.slice".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            // The pod's own cgroup.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice"),
            format!("/kubepods/burstable/pod{UID}"),
            // CRI-O's monitor.
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope"),
            format!("/kubepods/pod{UID}/crio-conmon-{ID}"),
            // Ids that are not 64 lower-case hex digits.
            format!("/kubepods/pod{UID}/{}", &ID[..63]),
            format!("/kubepods/pod{UID}/{}", ID.to_uppercase()),
            format!("/kubepods/pod{UID}/cri-containerd-zz{}.scope", &ID[2..]),
            // No kubepods ancestor.
            format!("/docker/pod{UID}/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            // Pod too deep below kubepods, or not a pod.
            format!("/kubepods/burstable/extra/pod{UID}/{ID}"),
            format!("/kubepods/podnotauid/{ID}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/{ID}"),
        ];
        for path in not {
            assert_eq!(parse_kubelet_cgroup(&path), None, "{path}");
        }
    }

    #[test]
    fn kubepods_detection() {
        assert!(is_kubepods("kubepods"));
        assert!(is_kubepods("kubepods.slice"));
        assert!(is_kubepods("kubelet-kubepods.slice"));
        assert!(!is_kubepods("kubepods-burstable"));
        assert!(!is_kubepods("notkubepods.slice"));
    }

    /// Builds a fake cgroup tree in a temporary directory: inode numbers of
    /// plain directories stand in for cgroup ids.
    struct FakeTree {
        dir: tempfile::TempDir,
    }

    impl FakeTree {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn mkdir(&self, relative: &str) -> u64 {
            let path = self.dir.path().join(relative.trim_start_matches('/'));
            std::fs::create_dir_all(&path).unwrap();
            std::fs::metadata(&path).unwrap().ino()
        }

        fn rmdir(&self, relative: &str) {
            std::fs::remove_dir(self.dir.path().join(relative.trim_start_matches('/'))).unwrap();
        }

        fn resolver(&self, config: CgroupResolverConfig) -> CgroupResolver {
            CgroupResolver::with_config(self.dir.path(), config)
        }
    }

    fn container_path(uid: &str, id: &str) -> String {
        format!("/kubepods/burstable/pod{uid}/{id}")
    }

    #[test]
    fn scan_maps_inodes_to_containers() {
        let tree = FakeTree::new();
        let id = tree.mkdir(&container_path(UID, ID));
        let host = tree.mkdir("/system.slice/cron.service");
        let resolver = tree.resolver(CgroupResolverConfig::default());
        resolver.scan().unwrap();
        assert_eq!(resolver.resolve(id).as_deref(), container(None).as_ref());
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
