//! The workload pods the traces look at, and running commands in their
//! containers.
//!
//! Three pods in two namespaces, spread over the nodes: `xwing` (container
//! `spaceship`), `tiefighter` (`spaceship` and `radio`) and `deathstar`
//! (`reactor`), labelled by `org` and `class`. A round runs `cat <marker>`
//! once in each container, where the marker is a path that names the round
//! and the container, so every exec and open event it causes is known.
//!
//! In the local harness KWOK only pretends to run the pods: the suite gives
//! each container a container id in the pod's status, creates its cgroup v2
//! directory in the kubelet's layout under the pod's real UID, keeps a
//! process in it, and runs the round's commands in it. In a real cluster the
//! kubelet runs them and a round is `kubectl exec`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cgroups::CgroupTree;
use crate::cluster::Cluster;
use crate::events::{Expected, Identity};
use crate::kubectl::Kubectl;
use crate::process::run;

/// How long a workload pod may take to become ready.
const POD_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The two namespaces of the workloads.
#[derive(Debug, Clone)]
pub struct Namespaces {
    /// Of `xwing` and `tiefighter`.
    pub alliance: String,
    /// Of `deathstar`.
    pub empire: String,
}

/// A workload pod to create.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: &'static str,
    /// The node it must run on.
    pub node: String,
    /// Its labels.
    pub labels: &'static [(&'static str, &'static str)],
    /// Its containers' names.
    pub containers: &'static [&'static str],
}

impl PodPlan {
    /// Its container `name`, once the pod runs as `uid` and the container
    /// as `id`.
    fn container(&self, name: &str, uid: &str, id: String) -> WorkloadContainer {
        WorkloadContainer {
            identity: Identity {
                namespace: self.namespace.clone(),
                pod: self.name.to_string(),
                container: name.to_string(),
                pod_uid: uid.to_string(),
                container_id: id,
            },
            node: self.node.clone(),
            labels: self
                .labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }
}

/// The pods, spread over `nodes` (one each on the first three; the same
/// node for several when there are fewer).
pub fn plan(namespaces: &Namespaces, nodes: &[String]) -> Vec<PodPlan> {
    let node = |i: usize| nodes[i % nodes.len()].clone();
    vec![
        PodPlan {
            namespace: namespaces.alliance.clone(),
            name: "xwing",
            node: node(0),
            labels: &[("org", "alliance"), ("class", "fighter")],
            containers: &["spaceship"],
        },
        PodPlan {
            namespace: namespaces.alliance.clone(),
            name: "tiefighter",
            node: node(1),
            labels: &[("org", "empire"), ("class", "fighter")],
            containers: &["spaceship", "radio"],
        },
        PodPlan {
            namespace: namespaces.empire.clone(),
            name: "deathstar",
            node: node(2),
            labels: &[("org", "empire"), ("class", "station")],
            containers: &["reactor"],
        },
    ]
}

/// The pod [`Workloads::add_pod`] adds while traces run: one container, in
/// the first namespace, on the first node.
pub fn late_pod(namespaces: &Namespaces, nodes: &[String]) -> PodPlan {
    PodPlan {
        namespace: namespaces.alliance.clone(),
        name: "ywing",
        node: nodes[0].clone(),
        labels: &[("org", "alliance"), ("class", "fighter")],
        containers: &["cockpit"],
    }
}

/// A container of a running workload pod.
#[derive(Debug, Clone)]
pub struct WorkloadContainer {
    /// Who it is, as events must say.
    pub identity: Identity,
    /// Its node.
    pub node: String,
    /// Its pod's labels.
    pub labels: BTreeMap<String, String>,
}

impl WorkloadContainer {
    /// Whether its pod has the label `key=value`.
    pub fn has_label(&self, key: &str, value: &str) -> bool {
        self.labels.get(key).is_some_and(|v| v == value)
    }
}

/// The containers of every other pod of a real cluster that runs (the
/// gadget pods, whose exec probes a trace of all namespaces sees, and on a
/// user's cluster anything else), so that a trace's selection can be
/// checked on them too. Not for the local harness, whose other pods run
/// nothing.
pub fn bystanders(
    cluster: &Cluster,
    workloads: &[WorkloadContainer],
) -> Result<Vec<WorkloadContainer>> {
    let mut bystanders = Vec::new();
    for pod in cluster.list::<Pod>(&cluster.all_namespaces(), None)? {
        let (Some(namespace), Some(name), Some(uid)) = (
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
            pod.metadata.uid.clone(),
        ) else {
            continue;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let statuses = pod.status.and_then(|status| status.container_statuses);
        for status in statuses.into_iter().flatten() {
            let Some(id) = status.container_id else {
                continue;
            };
            let identity = Identity {
                namespace: namespace.clone(),
                pod: name.clone(),
                container: status.name,
                pod_uid: uid.clone(),
                container_id: id
                    .split_once("://")
                    .map_or(id.as_str(), |(_, id)| id)
                    .to_string(),
            };
            if workloads.iter().any(|w| w.identity == identity) {
                continue;
            }
            bystanders.push(WorkloadContainer {
                identity,
                node: node.clone(),
                labels: labels.clone(),
            });
        }
    }
    Ok(bystanders)
}

/// How a command run in a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal ended it.
    Signaled(i32),
}

/// A shell run in a container, once it ended.
#[derive(Debug)]
pub struct ShellRun {
    /// How it ended.
    pub ended: Ended,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it (or `kubectl exec`) wrote to stderr.
    pub stderr: String,
}

/// How commands get into the containers.
enum Runner {
    /// This host: the containers are cgroups of a tree the suite owns.
    Local {
        tree: CgroupTree,
        /// The cgroup of each container, below the tree's top.
        cgroups: Vec<String>,
        /// How many pods there are (their cgroup layouts take turns).
        pods: usize,
        cat: PathBuf,
        sh: PathBuf,
    },
    /// A real cluster: `kubectl exec`.
    Cluster {
        kubectl: Kubectl,
        /// The containers' image.
        image: String,
    },
}

/// The running workloads.
pub struct Workloads {
    /// Every container, in plan order.
    pub containers: Vec<WorkloadContainer>,
    markers: PathBuf,
    runner: Runner,
}

impl Workloads {
    /// Creates the pods in a KWOK cluster and gives their containers real
    /// cgroups and container ids on this host, in `tree` below the
    /// directory of their node (see [`node_cgroup`]).
    pub(crate) fn start_local(
        cluster: &Cluster,
        plan: &[PodPlan],
        markers: &Path,
        tree: CgroupTree,
    ) -> Result<Workloads> {
        let mut workloads = Workloads {
            containers: Vec::new(),
            markers: markers.to_path_buf(),
            runner: Runner::Local {
                tree,
                cgroups: Vec::new(),
                pods: 0,
                cat: find_program("cat")?,
                sh: find_program("sh")?,
            },
        };
        for pod_plan in plan {
            workloads.add_pod(cluster, pod_plan)?;
        }
        Ok(workloads)
    }

    /// Creates the pods in a real cluster, running `image` (which needs
    /// `sleep`, `cat` and `sh`), and waits until they run.
    pub fn start_in_cluster(
        cluster: &Cluster,
        kubectl: &Kubectl,
        plan: &[PodPlan],
        image: &str,
        markers: &Path,
    ) -> Result<Workloads> {
        let mut workloads = Workloads {
            containers: Vec::new(),
            markers: markers.to_path_buf(),
            runner: Runner::Cluster {
                kubectl: kubectl.clone(),
                image: image.to_string(),
            },
        };
        for pod_plan in plan {
            workloads.add_pod(cluster, pod_plan)?;
        }
        Ok(workloads)
    }

    /// The command a new container's first process execs, when containers
    /// run real processes (in a cluster, not in the local harness): a trace
    /// of exec that runs while the container starts must show it.
    pub fn entrypoint(&self) -> Option<&'static [&'static str]> {
        match self.runner {
            Runner::Local { .. } => None,
            Runner::Cluster { .. } => Some(&ENTRYPOINT),
        }
    }

    /// Creates one more pod, as the workloads' first ones were, and waits
    /// until it runs; its containers are added to [`Workloads::containers`].
    pub fn add_pod(&mut self, cluster: &Cluster, pod_plan: &PodPlan) -> Result<()> {
        match &mut self.runner {
            Runner::Local {
                tree,
                cgroups,
                pods,
                ..
            } => {
                let pod = create_pod(cluster, pod_plan, &pod_spec(pod_plan, None))?;
                let uid = pod.metadata.uid.clone().context("a pod without uid")?;
                let ids: Vec<String> = pod_plan
                    .containers
                    .iter()
                    .map(|_| random_container_id())
                    .collect::<Result<_>>()?;
                set_container_ids(cluster, pod_plan, &pod, &ids)?;
                for (container, id) in pod_plan.containers.iter().zip(ids) {
                    let cgroup = format!(
                        "{}{}",
                        node_cgroup(&pod_plan.node),
                        kubelet_cgroup(*pods, &uid, &id)
                    );
                    // The container's main process, as the runtime would start it.
                    tree.place(&cgroup);
                    cgroups.push(cgroup);
                    self.containers
                        .push(pod_plan.container(container, &uid, id));
                }
                *pods += 1;
            }
            Runner::Cluster { image, .. } => {
                let pod = create_pod(cluster, pod_plan, &pod_spec(pod_plan, Some(image)))?;
                let uid = pod.metadata.uid.clone().context("a pod without uid")?;
                for container in pod_plan.containers {
                    let status = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|all| all.iter().find(|s| s.name == *container))
                        .and_then(|s| s.container_id.clone())
                        .with_context(|| {
                            format!(
                                "pod {}/{} has no container id for {container}",
                                pod_plan.namespace, pod_plan.name
                            )
                        })?;
                    let id = status
                        .split_once("://")
                        .map_or(status.as_str(), |(_, id)| id)
                        .to_string();
                    self.containers
                        .push(pod_plan.container(container, &uid, id));
                }
            }
        }
        Ok(())
    }

    /// What every marker starts with (for `trace open --prefix`).
    pub fn marker_prefix(&self) -> String {
        format!("{}/", self.markers.display())
    }

    /// The marker of `container` in `round`.
    fn marker(&self, round: &str, container: &WorkloadContainer) -> String {
        let who = &container.identity;
        format!(
            "{}{round}/{}.{}.{}",
            self.marker_prefix(),
            who.namespace,
            who.pod,
            who.container
        )
    }

    /// Runs `cat <marker>` once in each container `run_in` picks, and
    /// returns the event each must cause.
    pub fn run_round(
        &mut self,
        round: &str,
        run_in: impl Fn(&WorkloadContainer) -> bool,
    ) -> Result<Vec<Expected>> {
        let mut expected = Vec::new();
        for index in 0..self.containers.len() {
            let container = &self.containers[index];
            if !run_in(container) {
                continue;
            }
            let marker = self.marker(round, container);
            let who = &container.identity;
            match &mut self.runner {
                Runner::Local {
                    tree, cgroups, cat, ..
                } => {
                    let path = Path::new(&marker);
                    std::fs::create_dir_all(path.parent().expect("a marker has a directory"))?;
                    std::fs::write(path, round)
                        .with_context(|| format!("cannot write {marker}"))?;
                    let output = tree
                        .run_in(&cgroups[index], Command::new(&*cat).arg(&marker))
                        .with_context(|| {
                            format!(
                                "cannot run cat in the cgroup of {}/{}/{}",
                                who.namespace, who.pod, who.container
                            )
                        })?;
                    if !output.status.success() {
                        bail!(
                            "cat {marker} failed ({}): {}",
                            output.status,
                            String::from_utf8_lossy(&output.stderr)
                        );
                    }
                }
                Runner::Cluster { kubectl, .. } => {
                    // The marker does not exist in the container: cat fails
                    // with ENOENT, after the exec and the open the traces see.
                    let finished = run(
                        &mut kubectl.command([
                            "exec",
                            "-n",
                            &who.namespace,
                            &who.pod,
                            "-c",
                            &who.container,
                            "--",
                            "cat",
                            &marker,
                        ]),
                        Duration::from_secs(60),
                    )?;
                    if !matches!(finished.code(), Some(0 | 1)) {
                        bail!("{}", finished.report("kubectl exec failed"));
                    }
                }
            }
            expected.push(Expected {
                marker,
                node: container.node.clone(),
                identity: container.identity.clone(),
            });
        }
        Ok(expected)
    }
}

impl Workloads {
    /// The index in [`Workloads::containers`] of `pod`'s `container`.
    pub fn index_of(&self, pod: &str, container: &str) -> Result<usize> {
        self.containers
            .iter()
            .position(|c| c.identity.pod == pod && c.identity.container == container)
            .with_context(|| format!("no workload container {pod}/{container}"))
    }

    /// Runs `sh -c <script>` in the container at `index` and waits for it
    /// to end, however it ends. Locally the shell joins the container's
    /// cgroup between fork and exec; in a cluster it is `kubectl exec`,
    /// which reports a command a signal ended as exit code 128 + the
    /// signal, as container runtimes do.
    pub fn run_shell(&mut self, index: usize, script: &str) -> Result<ShellRun> {
        let container = &self.containers[index];
        let who = &container.identity;
        match &mut self.runner {
            Runner::Local {
                tree, cgroups, sh, ..
            } => {
                let output = tree
                    .run_in(&cgroups[index], Command::new(&*sh).args(["-c", script]))
                    .with_context(|| {
                        format!(
                            "cannot run sh in the cgroup of {}/{}/{}",
                            who.namespace, who.pod, who.container
                        )
                    })?;
                let ended = match (output.status.code(), output.status.signal()) {
                    (Some(code), _) => Ended::Exited(code),
                    (None, Some(signal)) => Ended::Signaled(signal),
                    (None, None) => bail!("sh -c {script:?} ended neither by exit nor by signal"),
                };
                Ok(ShellRun {
                    ended,
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                })
            }
            Runner::Cluster { kubectl, .. } => {
                let finished = run(
                    &mut kubectl.command([
                        "exec",
                        "-n",
                        &who.namespace,
                        who.pod.as_str(),
                        "-c",
                        &who.container,
                        "--",
                        "sh",
                        "-c",
                        script,
                    ]),
                    Duration::from_secs(60),
                )?;
                let ended = match finished.code() {
                    Some(code) if (129..=128 + 64).contains(&code) => Ended::Signaled(code - 128),
                    Some(code) => Ended::Exited(code),
                    None => bail!("{}", finished.report("kubectl exec was killed")),
                };
                Ok(ShellRun {
                    ended,
                    // Captured line by line: each line as written, ended
                    // by its newline (a last line without one gains it).
                    stdout: finished
                        .stdout_lines()
                        .map(|line| format!("{line}\n"))
                        .collect(),
                    stderr: finished.stderr,
                })
            }
        }
    }

    /// Creates the directory `dir` and its missing parents, as the
    /// container at `index` sees it: locally on this host (the containers
    /// share its file system), in a cluster with `kubectl exec`.
    pub fn make_dir(&mut self, index: usize, dir: &str) -> Result<()> {
        match &self.runner {
            Runner::Local { .. } => {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))
            }
            Runner::Cluster { .. } => {
                self.run_to_success(index, &format!("mkdir -p {}", shell_quote(dir)))
            }
        }
    }

    /// Makes the file `path` hold `content`, as the container at `index`
    /// sees it (see [`Workloads::make_dir`]); its directory must exist.
    pub fn write_file(&mut self, index: usize, path: &str, content: &str) -> Result<()> {
        match &self.runner {
            Runner::Local { .. } => {
                std::fs::write(path, content).with_context(|| format!("cannot write {path}"))
            }
            Runner::Cluster { .. } => {
                let script = format!("printf %s {} > {}", shell_quote(content), shell_quote(path));
                self.run_to_success(index, &script)
            }
        }
    }

    fn run_to_success(&mut self, index: usize, script: &str) -> Result<()> {
        match self.run_shell(index, script)? {
            ShellRun {
                ended: Ended::Exited(0),
                ..
            } => Ok(()),
            other => bail!("sh -c {script:?} failed in the container: {other:?}"),
        }
    }

    /// What `path` holds, as the container at `index` sees it: locally read
    /// on this host, in a cluster with `kubectl exec ... cat`.
    pub fn read_file(&mut self, index: usize, path: &str) -> Result<String> {
        match &self.runner {
            Runner::Local { .. } => {
                std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
            }
            Runner::Cluster { .. } => {
                let script = format!("cat {}", shell_quote(path));
                match self.run_shell(index, &script)? {
                    ShellRun {
                        ended: Ended::Exited(0),
                        stdout,
                        ..
                    } => Ok(stdout),
                    other => bail!("sh -c {script:?} failed in the container: {other:?}"),
                }
            }
        }
    }
}

/// `text` as one word of a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The spec of a workload pod: with `image`, one that runs (`sleep`); without,
/// one for KWOK, whose image is never pulled.
/// What a workload container runs in a cluster: it only has to stay up for
/// the rounds, which `kubectl exec` runs in it.
const ENTRYPOINT: [&str; 2] = ["sleep", "3600"];

fn pod_spec(plan: &PodPlan, image: Option<&str>) -> Pod {
    let containers: Vec<serde_json::Value> = plan
        .containers
        .iter()
        .map(|name| match image {
            Some(image) => json!({"name": name, "image": image, "command": ENTRYPOINT}),
            None => json!({"name": name, "image": format!("registry.invalid/gadget-e2e/{}:1", plan.name)}),
        })
        .collect();
    let labels: BTreeMap<&str, &str> = plan.labels.iter().copied().collect();
    // The scheduler places it on its node by name, as the DaemonSet
    // controller pins gadget pods, whatever the node's taints: the nodes are
    // those gadget pods run on, which tolerate everything.
    let pod = json!({
        "metadata": {"name": plan.name, "namespace": plan.namespace, "labels": labels},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [plan.node]}
                ]}]
            }}},
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "containers": containers,
        },
    });
    serde_json::from_value(pod).expect("the workload pod is a pod")
}

/// Creates the pod and waits until its kubelet (KWOK, or a real one) says
/// it is ready.
fn create_pod(cluster: &Cluster, plan: &PodPlan, pod: &Pod) -> Result<Pod> {
    let pods = cluster.namespaced::<Pod>(&plan.namespace);
    cluster
        .block_on(pods.create(&PostParams::default(), pod))
        .with_context(|| format!("cannot create pod {}/{}", plan.namespace, plan.name))?;
    cluster.wait_pod_ready(&plan.namespace, plan.name, POD_READY_TIMEOUT)
}

/// Writes container ids into a pod's status, as a kubelet would, and reads
/// them back. KWOK writes container statuses without ids when it makes the
/// pod ready and does not touch them afterwards, so the suite waits for
/// that first.
fn set_container_ids(cluster: &Cluster, plan: &PodPlan, pod: &Pod, ids: &[String]) -> Result<()> {
    let mut statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .with_context(|| {
            format!(
                "KWOK wrote no container statuses for {}/{}",
                plan.namespace, plan.name
            )
        })?;
    for (name, id) in plan.containers.iter().zip(ids) {
        let status = statuses
            .iter_mut()
            .find(|s| s.name == *name)
            .with_context(|| {
                format!(
                    "pod {}/{} has no status for container {name}",
                    plan.namespace, plan.name
                )
            })?;
        status.container_id = Some(format!("containerd://{id}"));
    }
    let pods = cluster.namespaced::<Pod>(&plan.namespace);
    let patch = serde_json::json!({"status": {"containerStatuses": statuses}});
    let patched = cluster
        .block_on(pods.patch_status(plan.name, &PatchParams::default(), &Patch::Merge(&patch)))
        .with_context(|| {
            format!(
                "cannot write the container ids of {}/{}",
                plan.namespace, plan.name
            )
        })?;
    let written: Vec<Option<String>> = patched
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.container_id)
        .collect();
    let wanted: Vec<Option<String>> = ids
        .iter()
        .map(|id| Some(format!("containerd://{id}")))
        .collect();
    if written != wanted {
        bail!(
            "the container ids of {}/{} are {written:?} after writing {wanted:?}",
            plan.namespace,
            plan.name
        );
    }
    Ok(())
}

/// The directory of a node's cgroups in the suite's tree: what the node's
/// agent sees as the cgroup2 root.
pub fn node_cgroup(node: &str) -> String {
    format!("/{node}")
}

/// The cgroup of a container in one of the kubelet's layouts (one per pod,
/// so both cgroup drivers are covered): systemd's
/// `kubepods-<qos>-pod<uid with _>.slice/cri-containerd-<id>.scope`, or
/// cgroupfs's `kubepods/<qos>/pod<uid>/<id>`.
fn kubelet_cgroup(pod_index: usize, uid: &str, id: &str) -> String {
    let systemd_uid = uid.replace('-', "_");
    match pod_index % 3 {
        0 => format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/cri-containerd-{id}.scope"),
        1 => format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{id}.scope"),
        _ => format!("/kubepods/besteffort/pod{uid}/{id}"),
    }
}

/// 64 random hex digits, like a containerd container id.
fn random_container_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The absolute path of `program` on PATH. Commands in the containers are
/// started by path: a search of PATH would make failed execs, which the
/// exec traces would show.
fn find_program(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
        .with_context(|| format!("{program} is not on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    fn namespaces() -> Namespaces {
        Namespaces {
            alliance: "default".into(),
            empire: "empire".into(),
        }
    }

    #[test]
    fn pods_are_spread_over_the_nodes() {
        let placed: Vec<String> = plan(&namespaces(), &nodes(3))
            .into_iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(placed, ["node-0", "node-1", "node-2"]);
        let placed: Vec<String> = plan(&namespaces(), &nodes(1))
            .into_iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(placed, ["node-0", "node-0", "node-0"]);
    }

    #[test]
    fn cgroup_layouts_of_both_drivers() {
        let uid = "0c5f2a4e-1111-2222-3333-444455556666";
        assert_eq!(
            kubelet_cgroup(0, uid, "abc"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0c5f2a4e_1111_2222_3333_444455556666.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            kubelet_cgroup(2, uid, "abc"),
            format!("/kubepods/besteffort/pod{uid}/abc")
        );
        for index in 0..3 {
            let parsed = gadget_node::cgroup::parse_kubelet_cgroup(&kubelet_cgroup(
                index,
                uid,
                &"ab".repeat(32),
            ))
            .unwrap_or_else(|| panic!("layout {index} is not the kubelet's"));
            assert_eq!(parsed.pod_uid, uid);
        }
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        let quoted = shell_quote("it's $HOME");
        let echoed = Command::new("sh")
            .args(["-c", &format!("printf %s {quoted}")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(echoed.stdout).unwrap(), "it's $HOME");
    }

    #[test]
    fn container_ids_are_64_hex_digits() {
        let id = random_container_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_container_id().unwrap());
    }

    #[test]
    fn kwok_pods_are_never_pulled_real_ones_sleep() {
        let pod_plan = &plan(&namespaces(), &nodes(3))[1];
        let kwok = pod_spec(pod_plan, None);
        let spec = kwok.spec.unwrap();
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(
            spec.containers[1].image.as_deref(),
            Some("registry.invalid/gadget-e2e/tiefighter:1")
        );
        let affinity = serde_json::to_value(&spec.affinity).unwrap();
        let terms = &affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(
            terms,
            &serde_json::json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}])
        );
        let real = pod_spec(pod_plan, Some("busybox:1.36"));
        assert_eq!(
            real.spec.unwrap().containers[0].command.as_deref(),
            Some(&["sleep".to_string(), "3600".to_string()][..])
        );
    }
}
