//! Container selection in the kernel and Kubernetes identity on events, with
//! real cgroup v2 directories in the kubelet's layout and real processes in
//! them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cgroups::{container_id, pod_uid, CgroupTree};
use common::{collect_settled, cstr, fork_paused, wait_started, PausedChild};
use gadget_node::cgroup::{CgroupResolver, CgroupResolverConfig};
use gadget_node::identity::IdentityResolver;
use gadget_node::pods::PodIndex;
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;

/// Two pods on a fake node: `shop/web-1` (container `nginx`, app=web) and
/// `other/db-1` (container `postgres`, app=db), each with its container
/// cgroup in the systemd driver's layout.
struct TwoPods {
    tree: CgroupTree,
    pods: Arc<PodIndex>,
    web: String,
    db: String,
}

fn container_path(uid: &str, id: &str) -> String {
    let slice_uid = uid.replace('-', "_");
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/cri-containerd-{id}.scope"
    )
}

impl TwoPods {
    /// A pod `late/<name>` scheduled while a trace runs, and a paused child
    /// placed in its new container's cgroup, which execs /bin/true when
    /// released. Returns the child and the cgroup's id.
    fn start_late_container(&mut self, seed: u32, name: &str) -> (PausedChild, u64) {
        self.start_container_in("late", seed, name)
    }

    /// Like [`start_late_container`](Self::start_late_container), in any
    /// namespace.
    fn start_container_in(&mut self, namespace: &str, seed: u32, name: &str) -> (PausedChild, u64) {
        let (uid, id) = (pod_uid(seed, '_'), container_id(seed.into()));
        self.pods.apply(&common::pods::pod(
            &uid.replace('_', "-"),
            namespace,
            name,
            &[],
            "app",
            &id,
        ));
        let child = fork_paused(exec_true());
        let cgroup_id = self.tree.move_into(&container_path(&uid, &id), child.pid);
        (child, cgroup_id)
    }

    fn new(seed: u32) -> Self {
        let tree = CgroupTree::new();
        let pods = Arc::new(PodIndex::new());
        let (web_uid, db_uid) = (pod_uid(seed, '-'), pod_uid(seed + 1, '-'));
        let (web_id, db_id) = (container_id(seed.into()), container_id(seed as u64 + 1));
        pods.apply(&common::pods::pod(
            &web_uid,
            "shop",
            "web-1",
            &[("app", "web")],
            "nginx",
            &web_id,
        ));
        pods.apply(&common::pods::pod(
            &db_uid,
            "other",
            "db-1",
            &[("app", "db")],
            "postgres",
            &db_id,
        ));
        TwoPods {
            tree,
            pods,
            web: container_path(&web_uid, &web_id),
            db: container_path(&db_uid, &db_id),
        }
    }

    fn identity(&self) -> Arc<IdentityResolver> {
        let cgroups =
            CgroupResolver::with_config(&self.tree.mount, CgroupResolverConfig::default());
        Arc::new(IdentityResolver::new(cgroups, Some(Arc::clone(&self.pods))))
    }

    /// A paused child inside the container cgroup `path`.
    fn child_in(&mut self, path: &str, workload: impl FnOnce() -> i32) -> PausedChild {
        let child = fork_paused(workload);
        self.tree.move_into(path, child.pid);
        child
    }
}

fn request(gadget: &str, selector: v1::ContainerSelector, ring_buffer_bytes: u32) -> TracePlan {
    TracePlan::from_proto(&v1::RunGadgetRequest {
        protocol_version: gadget_proto::PROTOCOL_VERSION,
        gadget: gadget.to_string(),
        selector: Some(selector),
        ring_buffer_bytes,
        ..Default::default()
    })
    .unwrap()
}

fn namespace(ns: &str) -> v1::ContainerSelector {
    v1::ContainerSelector {
        namespaces: vec![ns.to_string()],
        ..Default::default()
    }
}

/// A started trace of the execs in namespace `late`.
async fn trace_late_execs(identity: &Arc<IdentityResolver>) -> trace::Trace {
    let mut trace = trace::start(
        request(gadget_proto::TRACE_EXEC, namespace("late"), 0),
        Arc::clone(identity),
    )
    .unwrap();
    wait_started(&mut trace.events).await;
    trace
}

async fn run_all(children: Vec<PausedChild>) {
    for child in &children {
        child.release();
    }
    for mut child in children {
        let code = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
        assert_eq!(code, 0);
    }
}

fn exec_true() -> impl FnOnce() -> i32 {
    let program = cstr("/bin/true");
    // SAFETY: libc calls in the forked child, with C strings that outlive them.
    move || unsafe {
        let argv = [program.as_ptr(), std::ptr::null()];
        let env = [std::ptr::null()];
        libc::execve(program.as_ptr(), argv.as_ptr(), env.as_ptr());
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_kubernetes_identity_of_their_container() {
    let mut pods = TwoPods::new(0x100);
    let (web, db) = (pods.web.clone(), pods.db.clone());
    let web_child = pods.child_in(&web, exec_true());
    let db_child = pods.child_in(&db, exec_true());
    let web_pid = web_child.pid;
    let identity = pods.identity();
    let mut trace = trace::start(
        request(gadget_proto::TRACE_EXEC, namespace("shop"), 0),
        identity,
    )
    .unwrap();
    wait_started(&mut trace.events).await;
    run_all(vec![web_child, db_child]).await;

    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    assert_eq!(got.events.len(), 1, "only shop's exec: {:#?}", got.events);
    let (event, workload) = &got.events[0];
    assert_eq!(event.process.as_ref().unwrap().pid, web_pid);
    let workload = workload
        .as_ref()
        .expect("a container's event has its workload");
    assert_eq!(
        (
            workload.namespace.as_str(),
            workload.pod.as_str(),
            workload.container.as_str()
        ),
        ("shop", "web-1", "nginx")
    );
    assert_eq!(workload.labels.get("app").map(String::as_str), Some("web"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selector_picks_containers_and_host_can_be_added() {
    let mut pods = TwoPods::new(0x200);
    let (web, db) = (pods.web.clone(), pods.db.clone());
    let web_child = pods.child_in(&web, exec_true());
    let db_child = pods.child_in(&db, exec_true());
    let host_child = fork_paused(exec_true());
    let (db_pid, host_pid) = (db_child.pid, host_child.pid);
    let selector = v1::ContainerSelector {
        label_selector: "app in (db,cache)".into(),
        include_host: true,
        ..Default::default()
    };
    let mut trace = trace::start(
        request(gadget_proto::TRACE_EXEC, selector, 0),
        pods.identity(),
    )
    .unwrap();
    wait_started(&mut trace.events).await;
    run_all(vec![web_child, db_child, host_child]).await;

    let got = collect_settled(&mut trace.events, |_| false).await;
    let ours: Vec<(u32, Option<&str>)> = got
        .events
        .iter()
        .filter_map(|(e, w)| {
            let pid = e.process.as_ref().unwrap().pid;
            [db_pid, host_pid]
                .contains(&pid)
                .then(|| (pid, w.as_ref().map(|w| w.pod.as_str())))
        })
        .collect();
    assert!(ours.contains(&(db_pid, Some("db-1"))), "{ours:?}");
    assert!(ours.contains(&(host_pid, None)), "{ours:?}");
    assert!(
        got.events
            .iter()
            .all(|(_, w)| w.as_ref().is_none_or(|w| w.pod == "db-1")),
        "web-1 is not selected: {:#?}",
        got.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_out_containers_never_reach_the_ring_buffer() {
    const OPENS: usize = 20_000;
    let mut pods = TwoPods::new(0x300);
    let (web, db) = (pods.web.clone(), pods.db.clone());
    let missing = cstr("/nonexistent/filtered-out");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let noisy = pods.child_in(&db, move || unsafe {
        for _ in 0..OPENS {
            libc::openat(libc::AT_FDCWD, missing.as_ptr(), libc::O_RDONLY);
        }
        0
    });
    let hostname = cstr("/etc/hostname");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let quiet = pods.child_in(&web, move || unsafe {
        libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
        0
    });
    // One page of ring buffer: had the 20 000 opens been reserved, most
    // would have been lost.
    let mut trace = trace::start(
        request(gadget_proto::TRACE_OPEN, namespace("shop"), 4096),
        pods.identity(),
    )
    .unwrap();
    wait_started(&mut trace.events).await;
    run_all(vec![noisy]).await;
    run_all(vec![quiet]).await;
    let got = collect_settled(&mut trace.events, |c| !c.opens().is_empty()).await;
    assert_eq!(
        got.status.lost_kernel, 0,
        "nothing was reserved for the other namespace"
    );
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(paths, [&b"/etc/hostname"[..]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_started_after_the_trace_is_followed() {
    let pods = TwoPods::new(0x400);
    let identity = pods.identity();
    let refresh =
        tokio::spawn(Arc::clone(&identity).refresh_periodically(Duration::from_millis(100)));
    let mut trace = trace_late_execs(&identity).await;

    // The pod is scheduled and its container created while the trace runs.
    let mut pods = pods;
    let (child, cgroup_id) = pods.start_late_container(0x4ff, "newcomer");
    let pid = child.pid;
    // Once the periodic rescan has seen it, the trace puts it in the kernel
    // filter on the change notification.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while identity.containers().iter().all(|(id, _)| *id != cgroup_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "rescan never saw the new cgroup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(trace::DRAIN_INTERVAL * 4).await;
    run_all(vec![child]).await;

    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    refresh.abort();
    assert_eq!(got.events.len(), 1, "{:#?}", got.events);
    let (event, workload) = &got.events[0];
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
    assert_eq!(workload.as_ref().map(|w| w.pod.as_str()), Some("newcomer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_containers_first_exec_is_not_lost() {
    // No periodic rescan at all: only the events themselves can make the
    // trace learn of the container, as happens when a container starts
    // and execs its entrypoint at once, between two rescans.
    let pods = TwoPods::new(0x500);
    let identity = pods.identity();
    let mut trace = trace_late_execs(&identity).await;

    // Created and exec'd at once, well within the resolver's rate limit of
    // the walk trace::start made.
    let mut pods = pods;
    let (child, _) = pods.start_late_container(0x5ff, "entrypoint");
    let pid = child.pid;
    run_all(vec![child]).await;

    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    assert_eq!(got.events.len(), 1, "{:#?}", got.events);
    let (event, workload) = &got.events[0];
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
    assert_eq!(
        workload
            .as_ref()
            .map(|w| (w.namespace.as_str(), w.pod.as_str())),
        Some(("late", "entrypoint"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_unselected_container_never_shows() {
    // A new container's events reach the node before it has a verdict. If
    // the node learns the verdict (here: not selected) from a rescan before
    // it reads them, they must still be dropped.
    let pods = TwoPods::new(0x600);
    let identity = pods.identity();
    let mut trace = trace_late_execs(&identity).await;

    let mut pods = pods;
    let (outsider, _) = pods.start_container_in("elsewhere", 0x6f0, "outsider");
    run_all(vec![outsider]).await;
    // Before the next drain: the trace resyncs on the change first.
    identity.rescan().unwrap();
    let (insider, _) = pods.start_late_container(0x6f1, "insider");
    let pid = insider.pid;
    run_all(vec![insider]).await;

    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    let pods_seen: Vec<_> = got
        .events
        .iter()
        .map(|(_, workload)| workload.as_ref().map(|w| w.pod.clone()))
        .collect();
    assert_eq!(
        pods_seen,
        [Some("insider".to_string())],
        "{:#?}",
        got.events
    );
    assert_eq!(got.events[0].0.process.as_ref().unwrap().pid, pid);
}
