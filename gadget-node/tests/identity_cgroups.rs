//! Identity resolution against real cgroup v2 directories laid out like the
//! kubelet's, with a real process in each container cgroup. Needs root.
//!
//! Every test owns a directory `<cgroup2 mount>/gadget-test-<pid>-<n>` and
//! moves only the `sleep` children it starts, never the test runner, so that
//! a failing test leaves nothing running and (thanks to the drop guard)
//! nothing behind.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gadget_node::cgroup::{find_cgroup2_mount, CgroupResolver, CgroupResolverConfig};
use gadget_node::identity::IdentityResolver;
use gadget_node::pods::PodIndex;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A test-owned subtree of the real cgroup2 hierarchy and the processes
/// placed in it; removes both when dropped.
struct CgroupTree {
    mount: PathBuf,
    /// Path of the top directory relative to the mount, with a leading `/`.
    top: String,
    /// Directories created, in creation order (parents first).
    created: Vec<PathBuf>,
    children: Vec<(PathBuf, Child)>,
}

/// A process placed in a cgroup of a [`CgroupTree`].
struct Placed {
    pid: u32,
    /// The cgroup's inode number, which is what `bpf_get_current_cgroup_id()`
    /// returns for the process.
    cgroup_id: u64,
}

impl CgroupTree {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mount = find_cgroup2_mount().expect("cgroup2 must be mounted for these tests");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let top = format!("/gadget-test-{}-{n}", std::process::id());
        let mut tree = Self {
            mount,
            top: top.clone(),
            created: Vec::new(),
            children: Vec::new(),
        };
        tree.mkdirs("");
        tree
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.mount
            .join(format!("{}{relative}", self.top).trim_start_matches('/'))
    }

    /// Creates `relative` (below the top directory) and its missing parents.
    fn mkdirs(&mut self, relative: &str) -> PathBuf {
        let mut path = self.path("");
        let components = std::iter::once("").chain(relative.split('/').filter(|c| !c.is_empty()));
        for component in components {
            if !component.is_empty() {
                path.push(component);
            }
            match std::fs::create_dir(&path) {
                Ok(()) => self.created.push(path.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create cgroup {}: {e}", path.display()),
            }
        }
        path
    }

    /// Starts `sleep` and moves it (only it) into the cgroup `relative`, which
    /// must be a leaf: cgroup v2 keeps processes out of inner nodes that
    /// delegate controllers.
    fn place(&mut self, relative: &str) -> Placed {
        let leaf = self.mkdirs(relative);
        let mut command = Command::new("sleep");
        command.arg("600").stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the child dies with its parent
        // thread, so a crashed test leaves no sleeper holding the cgroup.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("cannot start sleep");
        let pid = child.id();
        self.children.push((leaf.clone(), child));
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move pid {pid} into {}: {e}", leaf.display()));

        // Cross-check: the kernel's view of the process' cgroup is this
        // directory, and the directory's inode is its kernfs id.
        let expected = format!("{}{relative}", self.top);
        assert_eq!(cgroup_of(pid), expected, "pid {pid}");
        let cgroup_id = std::fs::metadata(&leaf).unwrap().ino();
        assert_eq!(
            kernfs_id(&leaf),
            cgroup_id,
            "inode vs file handle of {}",
            leaf.display()
        );
        Placed { pid, cgroup_id }
    }

    /// Kills the processes in `relative` and removes that directory.
    fn remove(&mut self, relative: &str) {
        let leaf = self.path(relative);
        let (inside, rest): (Vec<_>, Vec<_>) =
            self.children.drain(..).partition(|(path, _)| *path == leaf);
        self.children = rest;
        for (_, child) in inside {
            reap(child);
        }
        rmdir(&leaf).unwrap_or_else(|e| panic!("cannot remove {}: {e}", leaf.display()));
        self.created.retain(|path| *path != leaf);
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for (_, child) in self.children.drain(..) {
            reap(child);
        }
        for path in self.created.iter().rev() {
            if let Err(e) = rmdir(path) {
                eprintln!("cannot clean up cgroup {}: {e}", path.display());
            }
        }
    }
}

fn reap(mut child: Child) {
    let _ = child.kill();
    // A cgroup can be removed only once its processes are gone for good.
    let _ = child.wait();
}

/// Removes an empty cgroup, retrying while the kernel still counts an exited
/// process in it.
fn rmdir(path: &Path) -> io::Result<()> {
    for _ in 0..200 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(path)
}

/// The cgroup v2 path of `pid`, from the `0::` line of `/proc/<pid>/cgroup`.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string()
}

/// The kernfs node id of a cgroup directory, from `name_to_handle_at`: the
/// file handle of a kernfs node is its 64-bit id, the same number
/// `bpf_get_current_cgroup_id()` returns (libbpf's selftests read it so).
fn kernfs_id(path: &Path) -> u64 {
    #[repr(C)]
    struct FileHandle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u8; 8],
    }
    let mut handle = FileHandle {
        handle_bytes: 8,
        handle_type: 0,
        f_handle: [0; 8],
    };
    let mut mount_id: libc::c_int = 0;
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: the pointers are valid for the call and the handle has room for
    // the 8 bytes announced in handle_bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    assert_eq!(rc, 0, "name_to_handle_at: {}", io::Error::last_os_error());
    u64::from_ne_bytes(handle.f_handle)
}

/// A container id of 64 hex digits, distinct per `seed`.
fn container_id(seed: u64) -> String {
    format!("{seed:016x}").repeat(4)
}

/// A pod UID, distinct per `seed`, written with `separator`.
fn pod_uid(seed: u32, separator: char) -> String {
    format!("{seed:08x}-1111-2222-3333-444455556666").replace('-', &separator.to_string())
}

fn resolver(tree: &CgroupTree, config: CgroupResolverConfig) -> CgroupResolver {
    CgroupResolver::with_config(&tree.mount, config)
}

/// One kubelet layout: a container cgroup path (below the test's top
/// directory) and what it must resolve to.
struct Layout {
    path: String,
    pod_uid: String,
    container_id: String,
    runtime: Option<&'static str>,
}

fn layouts() -> Vec<Layout> {
    let mut layouts = Vec::new();
    let mut add = |seed: u32, path: &dyn Fn(&str, &str) -> String, sep: char, runtime| {
        let id = container_id(u64::from(seed) * 0x1_0001);
        let uid_in_path = pod_uid(seed, sep);
        layouts.push(Layout {
            path: path(&uid_in_path, &id),
            pod_uid: pod_uid(seed, '-'),
            container_id: id,
            runtime,
        });
    };
    add(
        1,
        &|uid, id| {
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope")
        },
        '_',
        Some("containerd"),
    );
    add(
        2,
        &|uid, id| format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-{id}.scope"),
        '_',
        Some("cri-o"),
    );
    add(
        3,
        &|uid, id| {
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/docker-{id}.scope")
        },
        '_',
        Some("docker"),
    );
    add(
        4,
        &|uid, id| format!("/kubepods/burstable/pod{uid}/{id}"),
        '-',
        None,
    );
    add(5, &|uid, id| format!("/kubepods/pod{uid}/{id}"), '_', None);
    add(
        6,
        &|uid, id| {
            format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid}.slice/cri-containerd-{id}.scope")
        },
        '_',
        Some("containerd"),
    );
    layouts
}

#[test]
fn kubelet_layouts_resolve_to_pod_and_container() {
    let mut tree = CgroupTree::new();
    let layouts = layouts();
    let placed: Vec<Placed> = layouts.iter().map(|l| tree.place(&l.path)).collect();

    // Not containers: CRI-O's monitor next to a container, a process in a
    // host service cgroup.
    let conmon = tree.place(&format!(
        "/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{}.scope",
        pod_uid(2, '_'),
        container_id(2 * 0x1_0001)
    ));
    let service = tree.place("/system.slice/cron.service");
    let pod_level = std::fs::metadata(tree.path(&format!("/kubepods/pod{}", pod_uid(5, '_'))))
        .unwrap()
        .ino();

    let resolver = resolver(&tree, CgroupResolverConfig::default());
    resolver.scan().unwrap();
    for (layout, placed) in layouts.iter().zip(&placed) {
        let container = resolver
            .resolve(placed.cgroup_id)
            .unwrap_or_else(|| panic!("pid {} in {} not resolved", placed.pid, layout.path));
        assert_eq!(container.pod_uid, layout.pod_uid, "{}", layout.path);
        assert_eq!(
            container.container_id, layout.container_id,
            "{}",
            layout.path
        );
        assert_eq!(
            container.runtime.as_deref(),
            layout.runtime,
            "{}",
            layout.path
        );
    }
    assert_eq!(resolver.resolve(conmon.cgroup_id), None);
    assert_eq!(resolver.resolve(service.cgroup_id), None);
    assert_eq!(resolver.resolve(pod_level), None);

    // The test runner itself is a host process.
    let own = tree
        .mount
        .join(cgroup_of(std::process::id()).trim_start_matches('/'));
    assert_eq!(
        resolver.resolve(std::fs::metadata(own).unwrap().ino()),
        None
    );

    let listed: Vec<u64> = resolver
        .containers()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for placed in &placed {
        assert!(listed.contains(&placed.cgroup_id));
    }
    assert!(!listed.contains(&conmon.cgroup_id));
    assert_eq!(
        resolver.walks(),
        1,
        "known ids and host cgroups need no rescan"
    );
}

#[test]
fn container_created_after_the_first_scan_is_found_on_miss() {
    let mut tree = CgroupTree::new();
    let resolver = resolver(
        &tree,
        CgroupResolverConfig {
            rescan_interval: Duration::ZERO,
            ..Default::default()
        },
    );
    resolver.scan().unwrap();
    let generation = resolver.generation();
    let layout = &layouts()[0];
    let placed = tree.place(&layout.path);
    let container = resolver
        .resolve(placed.cgroup_id)
        .expect("found by a rescan");
    assert_eq!(container.container_id, layout.container_id);
    assert_eq!(resolver.walks(), 2);
    assert!(resolver.generation() > generation);
}

#[test]
fn misses_within_the_rescan_interval_do_not_walk() {
    let mut tree = CgroupTree::new();
    let resolver = resolver(
        &tree,
        CgroupResolverConfig {
            rescan_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    resolver.scan().unwrap();
    let layout = &layouts()[3];
    let placed = tree.place(&layout.path);
    for _ in 0..1000 {
        assert_eq!(resolver.resolve(placed.cgroup_id), None);
    }
    assert_eq!(resolver.walks(), 1);
    // A forced scan (the periodic refresh) still finds it.
    resolver.scan().unwrap();
    assert_eq!(
        resolver.resolve(placed.cgroup_id).unwrap().pod_uid,
        layout.pod_uid
    );
}

#[test]
fn deleted_container_stays_resolvable_for_the_grace_period() {
    let mut tree = CgroupTree::new();
    let layout = &layouts()[1];
    let placed = tree.place(&layout.path);
    let within = resolver(
        &tree,
        CgroupResolverConfig {
            grace_period: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let expired = resolver(
        &tree,
        CgroupResolverConfig {
            grace_period: Duration::ZERO,
            ..Default::default()
        },
    );
    within.scan().unwrap();
    expired.scan().unwrap();
    assert!(within.resolve(placed.cgroup_id).is_some());
    let generation = within.generation();

    tree.remove(&layout.path);
    within.scan().unwrap();
    expired.scan().unwrap();
    std::thread::sleep(Duration::from_millis(5));

    let container = within
        .resolve(placed.cgroup_id)
        .expect("still resolvable within the grace period");
    assert_eq!(container.container_id, layout.container_id);
    assert!(within
        .containers()
        .iter()
        .all(|(id, _)| *id != placed.cgroup_id));
    assert!(within.generation() > generation);
    assert_eq!(expired.resolve(placed.cgroup_id), None);
}

#[test]
fn identity_names_real_containers_from_the_pod_index() {
    let mut tree = CgroupTree::new();
    let layout = &layouts()[5];
    let placed = tree.place(&layout.path);
    let pods = Arc::new(PodIndex::new());
    pods.apply(&Pod {
        metadata: ObjectMeta {
            uid: Some(layout.pod_uid.clone()),
            namespace: Some("shop".to_string()),
            name: Some("web-1".to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "nginx".to_string(),
                container_id: Some(format!("containerd://{}", layout.container_id)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let identity =
        IdentityResolver::new(resolver(&tree, CgroupResolverConfig::default()), Some(pods));
    let workload = identity.resolve(placed.cgroup_id).expect("a container");
    assert_eq!(workload.namespace, "shop");
    assert_eq!(workload.pod, "web-1");
    assert_eq!(workload.container, "nginx");
    assert_eq!(workload.labels["app"], "web");
    assert!(identity
        .containers()
        .iter()
        .any(|(id, w)| *id == placed.cgroup_id && w.container == "nginx"));
    let own = tree
        .mount
        .join(cgroup_of(std::process::id()).trim_start_matches('/'));
    assert_eq!(
        identity.resolve(std::fs::metadata(own).unwrap().ino()),
        None
    );
}
