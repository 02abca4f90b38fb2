//! Identity resolution against real cgroup v2 directories laid out like the
//! kubelet's, with a real process in each container cgroup. Needs root.
//!
//! Every test owns a directory `<cgroup2 mount>/gadget-test-<pid>-<n>` and
//! moves only the `sleep` children it starts, never the test runner, so that
//! a failing test leaves nothing running and (thanks to the drop guard)
//! nothing behind.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use common::cgroups::{cgroup_of, container_id, pod_uid, CgroupTree, Placed};
use gadget_node::cgroup::{CgroupResolver, CgroupResolverConfig};
use gadget_node::identity::IdentityResolver;
use gadget_node::pods::PodIndex;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
