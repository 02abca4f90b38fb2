//! The scenario: what a user does with kubectl gadget on a cluster, in
//! order, each step checked.
//!
//! 1. Before deploy, a trace says to run deploy.
//! 2. A user without rights cannot deploy, and is told so in one line.
//! 3. Deploy refuses a namespace of its name that it did not create,
//!    changing nothing, and undeploy leaves that namespace alone, and one
//!    of another name that an earlier version labelled.
//! 4. `deploy --wait` returns once the real controller-manager and scheduler
//!    have put a ready gadget pod on every node.
//! 5. (local harness) A gadget-node per gadget pod, from the pod's own
//!    command line, reached through a KWOK port-forward.
//! 6. `version` reaches every node.
//! 7. A newer deployed version is not downgraded without `--force`.
//! 8. A user who may find the gadget pods but not port-forward to them is
//!    told so in one line; with the shipped trace users' role bound in the
//!    gadget namespace, the same user reaches every node.
//! 9. Workload pods in two namespaces on different nodes, with processes.
//! 10. `trace exec` and `trace open` with `-n`, `-A`, `-p`, `-c`, `-l` and
//!     `--node`: each expected event once, from the right node and container,
//!     nothing else.
//! 11. `trace file` follows a pod's files and nothing of a namespace it
//!     does not select; with `--kill-on write` it kills a selected process
//!     before its bytes land, and no other.
//! 12. (local harness) A node agent killed mid-trace: the error names the
//!     node, the other nodes go on.
//! 13. `undeploy --wait` leaves nothing of deploy's behind, and a trace says
//!     again to run deploy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Namespace, Pod};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kubectl_gadget::manifests::{
    self, RenderOptions, COMMON_LABELS, MANAGED_SELECTOR, NAMESPACE, NODE_AGENT, POD_SELECTOR,
    TRACE_USER_ROLE, VERSION_LABEL,
};

use crate::agents::{agent_command, free_port, CgroupView, NodeAgent};
use crate::cgroups::CgroupTree;
use crate::cluster::Cluster;
use crate::events::{self, Identity, Line, Unmarked};
use crate::file_trace::FileTraceRun;
use crate::host;
use crate::kubectl::Kubectl;
use crate::process::{run, Finished, Running};
use crate::traces::{self, join, RunningTrace, TraceCase};
use crate::users::{self, Unprivileged};
use crate::wait::{check_interrupted, poll, secs, Poll};
use crate::workloads::{self, node_cgroup, Namespaces, PodPlan, WorkloadContainer, Workloads};

/// The client version the plugin under test reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a trace says when gadget-node is not deployed.
const NOT_DEPLOYED: &str = "error: gadget-node is not deployed: run \"kubectl gadget deploy\"";

/// How long deploy and undeploy may wait (their `--timeout`), and the
/// margin the suite gives them on top.
const ROLLOUT_TIMEOUT: &str = "120s";
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(180);

/// `-t` of the trace whose node agent is killed.
const KILL_TRACE_SECONDS: u32 = 40;

/// How long the client may take to notice a killed node agent: its
/// keepalive (5 s pings, 10 s to answer) with room to spare.
const DEAD_NODE_NOTICED: Duration = Duration::from_secs(25);

/// The user without rights.
const NOBODY: &str = "gadget-e2e-nobody";

/// A namespace that an earlier version would have labelled as its own.
const LEGACY_NAMESPACE: &str = "gadget-e2e-legacy";

/// A version newer than any this client will have, faked on the deployed
/// DaemonSet.
const NEWER_VERSION: &str = "99.0.0";

/// How long an RBAC change may take to reach the API server's authorizer.
const RBAC_PROPAGATION: Duration = Duration::from_secs(15);

/// The most heap (`RssAnon`) the real node's gadget-node may hold before
/// any trace; see [`Suite::real_node_allocator`].
const IDLE_HEAP_MAX_KIB: u64 = 8 * 1024;

/// Where the suite runs.
pub enum Mode {
    /// The local control plane: the suite runs the node agents and the
    /// workloads' processes on this host.
    Local {
        /// The gadget-node binary to run for each gadget pod.
        gadget_node: PathBuf,
        /// The cluster's CA (`ca.crt`, `ca.key`), to make a user.
        pki: PathBuf,
    },
    /// A cluster of the user's, whose kubelets run everything.
    Existing {
        /// `deploy --image`; the client's default when `None`.
        image: Option<String>,
        /// The image of the workload pods (needs `sleep`, `cat` and `sh`).
        workload_image: String,
        /// A node whose kubelet runs on this host, to look at from here.
        real_node: Option<String>,
    },
}

/// What the suite is given.
pub struct Options {
    /// The kubeconfig of a user who may deploy.
    pub kubeconfig: PathBuf,
    /// The kubectl-gadget binary under test.
    pub kubectl_gadget: PathBuf,
    /// Where it may write (logs, markers, kubeconfigs).
    pub work_dir: PathBuf,
    /// Where it runs.
    pub mode: Mode,
}

/// How one step went.
pub struct StepReport {
    /// What the step checks.
    pub title: String,
    /// `None` when it passed, else why it was skipped.
    pub skipped: Option<String>,
    /// How long it took.
    pub took: Duration,
}

/// The state of a run; dropping it stops the agents and processes it
/// started and removes what it created that the cluster keeps.
struct Suite {
    options: Options,
    cluster: Cluster,
    kubectl: Kubectl,
    namespaces: Namespaces,
    created_namespaces: Vec<String>,
    /// The nodes with a gadget pod, sorted.
    nodes: Vec<String>,
    plan: Vec<PodPlan>,
    agents: Vec<NodeAgent>,
    /// The local harness's cgroups, until the workloads take them.
    cgroups: Option<CgroupTree>,
    workloads: Option<Workloads>,
    /// Whether deploy ran and undeploy has not.
    deployed: bool,
    /// The user without rights, once made.
    nobody: Option<Unprivileged>,
    steps: Vec<StepReport>,
}

/// The status of a gadget pod's one container.
fn gadget_container_status(pod: &Pod) -> Result<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|all| all.first())
        .context("the gadget pod has no container status")
}

/// Runs the whole scenario; the reports of the steps that ran, or the
/// first failure.
pub fn run_suite(options: Options) -> Result<Vec<StepReport>> {
    let cluster = Cluster::connect(&options.kubeconfig)?;
    let kubectl = Kubectl::new(
        &options.kubeconfig,
        &options.kubectl_gadget,
        &options.work_dir.join("plugin"),
    )?;
    let namespaces = match options.mode {
        Mode::Local { .. } => Namespaces {
            alliance: "default".into(),
            empire: "empire".into(),
        },
        Mode::Existing { .. } => Namespaces {
            alliance: "gadget-e2e-alliance".into(),
            empire: "gadget-e2e-empire".into(),
        },
    };
    let mut suite = Suite {
        options,
        cluster,
        kubectl,
        namespaces,
        created_namespaces: Vec::new(),
        nodes: Vec::new(),
        plan: Vec::new(),
        agents: Vec::new(),
        cgroups: None,
        workloads: None,
        deployed: false,
        nobody: None,
        steps: Vec::new(),
    };
    let local = suite.is_local();
    suite.step(
        "kubectl runs the kubectl-gadget under test",
        Suite::check_setup,
    )?;
    suite.step(
        "a trace before deploy says to run deploy",
        Suite::expect_not_deployed,
    )?;
    suite.step("the workload namespaces", Suite::create_namespaces)?;
    suite.step(
        "deploy by a user without rights fails with one clear line",
        Suite::forbidden_deploy,
    )?;
    suite.step(
        "deploy refuses a namespace it did not create; undeploy leaves it and a labelled one",
        Suite::foreign_namespace,
    )?;
    suite.step(
        "deploy --wait: a ready gadget pod on every node",
        Suite::deploy,
    )?;
    if local {
        suite.step(
            "a gadget-node per gadget pod, from its spec, behind a KWOK port-forward",
            Suite::start_agents,
        )?;
    } else {
        suite.skip(
            "a gadget-node per gadget pod (local harness)",
            "the cluster's kubelets run the gadget pods",
        );
    }
    let real_node = suite.real_node().is_some();
    if real_node {
        suite.step(
            "the real node's gadget pod holds the manifest's privileges and no more",
            Suite::real_node_privileges,
        )?;
        suite.step(
            "the real node's gadget pod allocates with mimalloc, its options set",
            Suite::real_node_allocator,
        )?;
    }
    suite.step("version reaches every node", Suite::version)?;
    suite.step(
        "deploy does not downgrade a newer deployment without --force",
        Suite::version_skew,
    )?;
    suite.step(
        "a user without pods/portforward is told in one line; the trace users' role lets them in",
        Suite::trace_user_access,
    )?;
    suite.step(
        "workload pods in two namespaces, with processes",
        Suite::start_workloads,
    )?;
    suite.step(
        "every node attributes its containers' events",
        Suite::warm_up,
    )?;
    suite.step(
        "trace exec and open select by -n, -A, -p, -c, -l and --node",
        Suite::selection,
    )?;
    suite.step(
        "a pod started during a trace is attributed (by container name once its status is out)",
        Suite::late_pod,
    )?;
    suite.step(
        "trace file follows a pod's files",
        Suite::file_follows_a_pods_files,
    )?;
    suite.step(
        "trace file --kill-on write stops a selected pod's write and nothing else",
        Suite::file_kill_on_write,
    )?;
    if local {
        suite.step(
            "a node agent killed mid-trace: the error names it, the others go on",
            Suite::kill_agent_mid_trace,
        )?;
    } else {
        suite.skip(
            "a node agent killed mid-trace (local harness)",
            "killing the agent of a real node is not something to do to a user's cluster",
        );
    }
    if real_node {
        suite.step(
            "without any one of its added capabilities the gadget pod is not Ready and says why",
            Suite::each_capability_is_necessary,
        )?;
        suite.step(
            "deploy --wait of an image the node may not pull fails at once, naming why",
            Suite::deploy_fails_fast_when_a_pod_cannot_start,
        )?;
        suite.step(
            "undeploy --wait during a trace ends the trace, leaves nothing of deploy's and no BPF program",
            Suite::undeploy_during_trace,
        )?;
    } else {
        suite.step(
            "undeploy --wait leaves nothing of deploy's",
            Suite::undeploy,
        )?;
    }
    suite.step(
        "a trace after undeploy says to run deploy",
        Suite::expect_not_deployed,
    )?;
    Ok(std::mem::take(&mut suite.steps))
}

impl Suite {
    fn is_local(&self) -> bool {
        matches!(self.options.mode, Mode::Local { .. })
    }

    /// The node whose kubelet runs on this host, if any.
    fn real_node(&self) -> Option<String> {
        match &self.options.mode {
            Mode::Existing { real_node, .. } => real_node.clone(),
            Mode::Local { .. } => None,
        }
    }

    /// Runs a step, timing and announcing it.
    fn step(&mut self, title: &str, body: fn(&mut Suite) -> Result<()>) -> Result<()> {
        check_interrupted()?;
        eprintln!("e2e: {title} ...");
        let start = Instant::now();
        body(self).with_context(|| format!("step failed: {title}"))?;
        let took = start.elapsed();
        eprintln!("e2e: {title}: ok ({})", secs(took));
        self.steps.push(StepReport {
            title: title.to_string(),
            skipped: None,
            took,
        });
        Ok(())
    }

    fn skip(&mut self, title: &str, why: &str) {
        eprintln!("e2e: {title}: skipped: {why}");
        self.steps.push(StepReport {
            title: title.to_string(),
            skipped: Some(why.to_string()),
            took: Duration::ZERO,
        });
    }

    /// The plugin on PATH is the one under test, the cluster answers, and
    /// gadget-node is not deployed yet (the suite deploys and undeploys it).
    fn check_setup(&mut self) -> Result<()> {
        self.kubectl.check_plugin(VERSION)?;
        let nodes = self.cluster.ready_nodes()?;
        if nodes.is_empty() {
            bail!("the cluster has no Ready node");
        }
        eprintln!("e2e:   Ready nodes: {}", nodes.join(", "));
        if self
            .cluster
            .get(&self.cluster.cluster_wide::<Namespace>(), NAMESPACE)?
            .is_some()
        {
            bail!(
                "namespace {NAMESPACE} exists: gadget-node is (or was) deployed on this cluster; \
                 the suite deploys and undeploys it itself, so run \"kubectl gadget undeploy --wait\" first"
            );
        }
        Ok(())
    }

    fn expect_not_deployed(&mut self) -> Result<()> {
        let finished = self
            .kubectl
            .run_gadget(&["trace", "exec", "-A", "-t", "1"])?;
        if finished.code() != Some(1)
            || finished.stderr.trim_end() != NOT_DEPLOYED
            || !finished.stdout.is_empty()
        {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1, no output and only {NOT_DEPLOYED:?} on stderr"
                ))
            );
        }
        Ok(())
    }

    fn create_namespaces(&mut self) -> Result<()> {
        for name in [
            self.namespaces.alliance.clone(),
            self.namespaces.empire.clone(),
        ] {
            if name == "default" {
                continue;
            }
            self.cluster.create_namespace(&name)?;
            self.created_namespaces.push(name);
        }
        Ok(())
    }

    fn forbidden_deploy(&mut self) -> Result<()> {
        let dir = self.options.work_dir.join("users");
        std::fs::create_dir_all(&dir)?;
        let nobody = match &self.options.mode {
            Mode::Local { pki, .. } => {
                users::certificate_user(&self.options.kubeconfig, pki, NOBODY, &dir)?
            }
            Mode::Existing { .. } => {
                users::service_account_user(&self.cluster, &self.namespaces.alliance, NOBODY, &dir)?
            }
        };
        let user = nobody.user.clone();
        let finished = self
            .kubectl
            .with_kubeconfig(&nobody.kubeconfig)
            .run_gadget(&["deploy"])?;
        self.nobody = Some(nobody);
        let stderr: Vec<&str> = finished.stderr_lines().collect();
        let start = format!("error: forbidden: User \"{user}\" cannot ");
        let one_clear_line = stderr.len() == 1
            && stderr[0].starts_with(&start)
            && !["{", "Api(", "Error", "\\\""]
                .iter()
                .any(|noise| stderr[0].contains(noise));
        if finished.code() != Some(1) || !finished.stdout.is_empty() || !one_clear_line {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1, no output, and one line {start}..."
                ))
            );
        }
        if self
            .cluster
            .get(&self.cluster.cluster_wide::<Namespace>(), NAMESPACE)?
            .is_some()
        {
            bail!("namespace {NAMESPACE} exists after the forbidden deploy");
        }
        eprintln!("e2e:   {}", stderr[0]);
        Ok(())
    }

    /// `deploy` with the image under test and `extra` flags.
    fn deploy_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["deploy"];
        if let Mode::Existing {
            image: Some(image), ..
        } = &self.options.mode
        {
            args.extend(["--image", image.as_str()]);
        }
        args.extend(extra);
        args
    }

    /// A namespace of deploy's name that someone else made: deploy refuses
    /// it in one line naming it and changes nothing; undeploy says it leaves
    /// it, and does.
    fn foreign_namespace(&mut self) -> Result<()> {
        let namespaces = self.cluster.cluster_wide::<Namespace>();
        self.cluster.create_namespace(NAMESPACE)?;
        self.created_namespaces.push(NAMESPACE.to_string());
        let labels_before = self
            .cluster
            .get(&namespaces, NAMESPACE)?
            .context("the namespace just made is not there")?
            .metadata
            .labels;

        let finished = self.kubectl.run_gadget(&self.deploy_args(&[]))?;
        let expected = format!(
            "error: namespace/{NAMESPACE} exists but was not created by kubectl gadget deploy \
             (it lacks the label app.kubernetes.io/managed-by=kubectl-gadget); deploy does not \
             take over what it did not create: remove it if it is unused, then deploy again"
        );
        if finished.code() != Some(1)
            || !finished.stdout.is_empty()
            || finished.stderr.trim_end() != expected
        {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1, no output and only {expected:?} on stderr"
                ))
            );
        }
        let namespace = self.cluster.get(&namespaces, NAMESPACE)?;
        if namespace.as_ref().map(|ns| &ns.metadata.labels) != Some(&labels_before) {
            bail!("the refused deploy changed namespace {NAMESPACE}: {namespace:?}");
        }
        let role = self
            .cluster
            .get(&self.cluster.cluster_wide::<ClusterRole>(), NODE_AGENT)?;
        let daemon_set = self
            .cluster
            .get(&self.cluster.namespaced::<DaemonSet>(NAMESPACE), NODE_AGENT)?;
        if role.is_some() || daemon_set.is_some() {
            bail!("the refused deploy created objects (ClusterRole or DaemonSet {NODE_AGENT})");
        }
        eprintln!("e2e:   {}", finished.stderr.trim_end());

        // What an earlier version left: a namespace of another name that it
        // labelled as its own (it deployed to `gadget`, Inspektor Gadget's).
        let legacy = Namespace {
            metadata: ObjectMeta {
                name: Some(LEGACY_NAMESPACE.into()),
                labels: Some(
                    COMMON_LABELS
                        .iter()
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        self.cluster
            .block_on(namespaces.create(&PostParams::default(), &legacy))
            .with_context(|| format!("cannot create namespace {LEGACY_NAMESPACE}"))?;
        self.created_namespaces.push(LEGACY_NAMESPACE.to_string());

        let finished = self.kubectl.run_gadget(&["undeploy"])?.success()?;
        let left_alone = format!(
            "namespace/{NAMESPACE} was not created by kubectl gadget deploy: left as it is"
        );
        let note = format!(
            "note: namespace {LEGACY_NAMESPACE} carries kubectl-gadget's labels from an earlier version"
        );
        let lines: Vec<&str> = finished.stdout_lines().collect();
        let as_expected = lines.len() == 3
            && lines[0] == left_alone
            && lines[1].starts_with(&note)
            && lines[2] == "nothing to undeploy";
        if !as_expected {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected {left_alone:?}, {note:?}... and \"nothing to undeploy\" on stdout"
                ))
            );
        }
        let legacy = self.cluster.get(&namespaces, LEGACY_NAMESPACE)?;
        if legacy.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()) {
            bail!("undeploy deleted namespace {LEGACY_NAMESPACE}, which it only labelled");
        }
        eprintln!("e2e:   {}", lines[1]);
        let namespace = self.cluster.get(&namespaces, NAMESPACE)?;
        if namespace
            .as_ref()
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
        {
            bail!("undeploy deleted namespace {NAMESPACE}, which deploy did not create");
        }

        self.cluster.delete(&namespaces, NAMESPACE)?;
        poll(
            &format!("namespace {NAMESPACE} to be gone"),
            Duration::from_secs(60),
            || {
                Ok(match self.cluster.get(&namespaces, NAMESPACE)? {
                    None => Poll::Ready(()),
                    Some(_) => Poll::Pending("still there".into()),
                })
            },
        )?;
        self.cluster.delete(&namespaces, LEGACY_NAMESPACE)?;
        self.created_namespaces
            .retain(|name| name != NAMESPACE && name != LEGACY_NAMESPACE);
        Ok(())
    }

    fn deploy(&mut self) -> Result<()> {
        self.deployed = true;
        let args = self.deploy_args(&["--wait", "--timeout", ROLLOUT_TIMEOUT]);
        let finished = run(&mut self.kubectl.gadget(&args), ROLLOUT_DEADLINE)?.success()?;
        let pods = self
            .cluster
            .list::<Pod>(&self.cluster.namespaced(NAMESPACE), Some(POD_SELECTOR))?;
        let mut nodes = Vec::new();
        for pod in &pods {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.controller == Some(true));
            if owner.map(|o| (o.kind.as_str(), o.name.as_str())) != Some(("DaemonSet", NODE_AGENT))
            {
                bail!("gadget pod {name} is not controlled by DaemonSet {NODE_AGENT}");
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            match node {
                Some(node) if ready => nodes.push(node),
                _ => bail!("gadget pod {name} is not ready on a node after deploy --wait returned"),
            }
        }
        nodes.sort();
        let distinct: BTreeSet<&String> = nodes.iter().collect();
        if distinct.len() != nodes.len() {
            bail!("more than one gadget pod on a node: {nodes:?}");
        }
        if self.is_local() && nodes != self.cluster.ready_nodes()? {
            bail!("gadget pods are on {nodes:?}, not on every node");
        }
        let summary = format!("gadget-node is ready on {} nodes", nodes.len());
        if finished.stdout_lines().last() != Some(summary.as_str()) {
            bail!(
                "{}",
                finished.report(&format!("expected {summary:?} last on stdout"))
            );
        }
        eprintln!("e2e:   {summary}: {}", nodes.join(", "));
        self.nodes = nodes;
        Ok(())
    }

    fn start_agents(&mut self) -> Result<()> {
        let Mode::Local { gadget_node, .. } = &self.options.mode else {
            bail!("node agents are started only by the local harness");
        };
        let logs = self.options.work_dir.join("agents");
        std::fs::create_dir_all(&logs)?;
        let pods = self
            .cluster
            .list::<Pod>(&self.cluster.namespaced(NAMESPACE), Some(POD_SELECTOR))?;
        let tree = self.cgroups.insert(CgroupTree::new());
        for pod in &pods {
            let command = agent_command(pod, gadget_node, free_port()?, &self.options.kubeconfig)?;
            let view = CgroupView {
                mount: tree.mount.clone(),
                subtree: tree.mkdirs(&node_cgroup(&command.node)),
                staging: logs.join(format!("{}.cgroup", command.node)),
            };
            self.cluster.forward_pod_port(
                NAMESPACE,
                &command.pod,
                command.pod_port,
                command.host_port,
            )?;
            eprintln!(
                "e2e:   {}: pod {} port {} -> {}",
                command.node,
                command.pod,
                command.pod_port,
                command.argv.join(" ")
            );
            let agent = NodeAgent::start(command, &view, &logs, Duration::from_secs(60))?;
            self.agents.push(agent);
        }
        Ok(())
    }

    fn version(&mut self) -> Result<()> {
        let finished = self.kubectl.run_gadget(&["version"])?.success()?;
        let deployed = format!("Deployed Version: {VERSION}");
        if !finished.stdout_lines().any(|line| line == deployed) {
            bail!(
                "{}",
                finished.report(&format!("expected a line {deployed:?}"))
            );
        }
        for node in &self.nodes {
            let ok = finished.stdout_lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first() == Some(&node.as_str())
                    && words.get(1) == Some(&VERSION)
                    && words.last() == Some(&"ok")
            });
            if !ok {
                bail!(
                    "{}",
                    finished.report(&format!("no line says {node} runs {VERSION} and is ok"))
                );
            }
        }
        Ok(())
    }

    /// The deployed DaemonSet's version label.
    fn deployed_version(&self) -> Result<Option<String>> {
        let daemon_set = self
            .cluster
            .get(&self.cluster.namespaced::<DaemonSet>(NAMESPACE), NODE_AGENT)?
            .context("the DaemonSet is not there")?;
        Ok(daemon_set
            .metadata
            .labels
            .and_then(|labels| labels.get(VERSION_LABEL).cloned()))
    }

    /// With a newer version faked on the DaemonSet, deploy refuses in one
    /// line and changes nothing; `--force` replaces it and says so; then
    /// deploy again is a no-op that says the same version is deployed.
    fn version_skew(&mut self) -> Result<()> {
        if self.deployed_version()?.as_deref() != Some(VERSION) {
            bail!("deploy did not label the DaemonSet {VERSION_LABEL}={VERSION}");
        }
        let daemon_sets = self.cluster.namespaced::<DaemonSet>(NAMESPACE);
        let newer = serde_json::json!({"metadata": {"labels": {VERSION_LABEL: NEWER_VERSION}}});
        self.cluster
            .block_on(daemon_sets.patch(NODE_AGENT, &PatchParams::default(), &Patch::Merge(&newer)))
            .context("cannot fake a newer version on the DaemonSet")?;

        let finished = self.kubectl.run_gadget(&self.deploy_args(&[]))?;
        let expected = format!(
            "error: gadget-node {NEWER_VERSION} is deployed, newer than this client ({VERSION}); \
             deploying would downgrade it: use kubectl-gadget {NEWER_VERSION} or later, or pass \
             --force to downgrade"
        );
        if finished.code() != Some(1)
            || !finished.stdout.is_empty()
            || finished.stderr.trim_end() != expected
        {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1, no output and only {expected:?} on stderr"
                ))
            );
        }
        if self.deployed_version()?.as_deref() != Some(NEWER_VERSION) {
            bail!("the refused deploy changed the DaemonSet's version label");
        }
        eprintln!("e2e:   {}", finished.stderr.trim_end());

        let finished = self
            .kubectl
            .run_gadget(&self.deploy_args(&["--force"]))?
            .success()?;
        let downgrading =
            format!("deploying gadget-node {VERSION}: downgrading from {NEWER_VERSION} (--force)");
        if finished.stdout_lines().next() != Some(downgrading.as_str()) {
            bail!(
                "{}",
                finished.report(&format!("expected {downgrading:?} first on stdout"))
            );
        }
        if self.deployed_version()?.as_deref() != Some(VERSION) {
            bail!("deploy --force did not put back {VERSION_LABEL}={VERSION}");
        }
        eprintln!("e2e:   {downgrading}");

        let finished = self.kubectl.run_gadget(&self.deploy_args(&[]))?.success()?;
        let same = format!("deploying gadget-node {VERSION}: the same version is deployed");
        let unchanged = format!("daemonset.apps/{NODE_AGENT} in namespace {NAMESPACE} unchanged");
        let lines: Vec<&str> = finished.stdout_lines().collect();
        if lines.first() != Some(&same.as_str()) || !lines.contains(&unchanged.as_str()) {
            bail!(
                "{}",
                finished.report(&format!("expected {same:?} and {unchanged:?} on stdout"))
            );
        }
        Ok(())
    }

    /// The user without rights: told in one line that they may not find
    /// the gadget pods; allowed to find them but not to port-forward, told
    /// that in one line (not once per node); with the shipped trace users'
    /// role bound in the gadget namespace, reaches every node.
    fn trace_user_access(&mut self) -> Result<()> {
        let nobody = self
            .nobody
            .as_ref()
            .context("the user without rights was not made")?;
        let as_nobody = self.kubectl.with_kubeconfig(&nobody.kubeconfig);
        let grant_hint = "an admin can grant what tracing needs with \"kubectl create rolebinding \
                          NAME --namespace kubectl-gadget --clusterrole kubectl-gadget-tracer \
                          --user USER\"";
        let trace = ["trace", "exec", "-A", "-t", "1"];

        let finished = as_nobody.run_gadget(&trace)?;
        let start = format!(
            "error: forbidden: User \"{}\" cannot get resource \"daemonsets\"",
            nobody.user
        );
        let stderr: Vec<&str> = finished.stderr_lines().collect();
        if finished.code() != Some(1)
            || stderr.len() != 1
            || !stderr[0].starts_with(&start)
            || !stderr[0].ends_with(grant_hint)
        {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1 and one line {start}...{grant_hint}"
                ))
            );
        }
        eprintln!("e2e:   {}", stderr[0]);

        // Finding the gadget pods, and nothing more.
        let find_pods = Role {
            metadata: ObjectMeta {
                name: Some("gadget-e2e-find-pods".into()),
                ..Default::default()
            },
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec!["apps".into()]),
                    resources: Some(vec!["daemonsets".into()]),
                    verbs: vec!["get".into()],
                    ..Default::default()
                },
                PolicyRule {
                    api_groups: Some(vec!["".into()]),
                    resources: Some(vec!["pods".into()]),
                    verbs: vec!["list".into()],
                    ..Default::default()
                },
            ]),
        };
        let roles = self.cluster.namespaced::<Role>(NAMESPACE);
        self.cluster
            .block_on(roles.create(&PostParams::default(), &find_pods))
            .context("cannot create the role that finds the gadget pods")?;
        self.bind(&nobody.subject, "Role", "gadget-e2e-find-pods")?;
        let expected = format!(
            "error: forbidden: this kubeconfig's user may not create pods/portforward in \
             namespace {NAMESPACE}, which reaching gadget-node needs; {grant_hint}"
        );
        let finished = poll("the role to take effect", RBAC_PROPAGATION, || {
            let finished = as_nobody.run_gadget(&trace)?;
            Ok(if finished.stderr.contains("cannot get resource") {
                Poll::Pending(finished.stderr)
            } else {
                Poll::Ready(finished)
            })
        })?;
        if finished.code() != Some(1)
            || !finished.stdout.is_empty()
            || finished.stderr.trim_end() != expected
        {
            bail!(
                "{}",
                finished.report(&format!(
                    "expected exit code 1, no output and only {expected:?} on stderr"
                ))
            );
        }
        eprintln!("e2e:   {expected}");

        // The role deploy ships for people who trace.
        self.bind(&nobody.subject, "ClusterRole", TRACE_USER_ROLE)?;
        let finished = poll(
            "the trace users' role to take effect",
            RBAC_PROPAGATION,
            || {
                let finished = as_nobody.run_gadget(&["version"])?;
                Ok(if finished.code() == Some(0) {
                    Poll::Ready(finished)
                } else {
                    Poll::Pending(format!("{}{}", finished.stdout, finished.stderr))
                })
            },
        )?;
        for node in &self.nodes {
            let ok = finished.stdout_lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first() == Some(&node.as_str()) && words.last() == Some(&"ok")
            });
            if !ok {
                bail!(
                    "{}",
                    finished.report(&format!("as {}: no line says {node} is ok", nobody.user))
                );
            }
        }
        eprintln!(
            "e2e:   with {TRACE_USER_ROLE} bound in {NAMESPACE}, {} reaches {} nodes",
            nobody.user,
            self.nodes.len()
        );
        Ok(())
    }

    /// Binds `subject` to the role `kind`/`name` in the gadget namespace
    /// (which undeploy deletes, and the binding with it).
    fn bind(
        &self,
        subject: &k8s_openapi::api::rbac::v1::Subject,
        kind: &str,
        name: &str,
    ) -> Result<()> {
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("gadget-e2e-{name}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: kind.into(),
                name: name.into(),
            },
            subjects: Some(vec![subject.clone()]),
        };
        self.cluster
            .block_on(
                self.cluster
                    .namespaced::<RoleBinding>(NAMESPACE)
                    .create(&PostParams::default(), &binding),
            )
            .with_context(|| format!("cannot bind {kind} {name}"))?;
        Ok(())
    }

    fn start_workloads(&mut self) -> Result<()> {
        self.plan = workloads::plan(&self.namespaces, &self.nodes);
        let markers = self.options.work_dir.join("markers");
        let workloads = match &self.options.mode {
            Mode::Local { .. } => {
                let tree = self
                    .cgroups
                    .take()
                    .context("the node agents' cgroups are not there")?;
                Workloads::start_local(&self.cluster, &self.plan, &markers, tree)?
            }
            Mode::Existing { workload_image, .. } => Workloads::start_in_cluster(
                &self.cluster,
                &self.kubectl,
                &self.plan,
                workload_image,
                &markers,
            )?,
        };
        for container in &workloads.containers {
            let who = &container.identity;
            eprintln!(
                "e2e:   {}/{}/{} on {} (pod {}, container {})",
                who.namespace,
                who.pod,
                who.container,
                container.node,
                who.pod_uid,
                who.container_id
            );
        }
        self.workloads = Some(workloads);
        Ok(())
    }

    fn workloads(&mut self) -> Result<&mut Workloads> {
        self.workloads.as_mut().context("no workloads yet")
    }

    /// Node agents learn about pods and cgroups asynchronously (a pod watch,
    /// a cgroup rescan). Before the exact checks, one trace on every node
    /// runs until each container's commands are seen with their identity.
    fn warm_up(&mut self) -> Result<()> {
        let case = TraceCase::new(&["exec", "-A"], &self.nodes, |_| true);
        let mut trace = RunningTrace::start(&self.kubectl, case, 0)?;
        trace.wait_started()?;
        let workloads = self.workloads.as_mut().context("no workloads yet")?;
        let prefix = format!("{}warmup-", workloads.marker_prefix());
        let mut round = 0;
        poll(
            "every container's exec to be seen with its identity",
            Duration::from_secs(90),
            || {
                round += 1;
                workloads.run_round(&format!("warmup-{round}"), |_| true)?;
                let lines: Vec<Line> = trace
                    .process
                    .stdout_lines()
                    .iter()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect();
                let missing: Vec<String> = workloads
                    .containers
                    .iter()
                    .filter(|container| {
                        let who = &container.identity;
                        let suffix = format!("/{}.{}.{}", who.namespace, who.pod, who.container);
                        !lines.iter().any(|line| {
                            let Line::Exec(event) = line else {
                                return false;
                            };
                            let marked =
                                events::marker(line, &prefix).is_some_and(|m| m.ends_with(&suffix));
                            marked
                                && event.node == container.node
                                && event.k8s.as_ref() == Some(who)
                        })
                    })
                    .map(|container| {
                        format!(
                            "{}/{} on {}",
                            container.identity.pod, container.identity.container, container.node
                        )
                    })
                    .collect();
                Ok(if missing.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("not yet seen: {}", missing.join(", ")))
                })
            },
        )?;
        trace.process.interrupt()?;
        let (_, finished) = trace.finish(0)?;
        if finished.code() != Some(0) {
            bail!(
                "{}",
                finished.report("Ctrl-C should end a trace with exit code 0")
            );
        }
        Ok(())
    }

    /// The selection cases, started side by side, and one round of commands
    /// in every container while they all run.
    fn selection(&mut self) -> Result<()> {
        let seconds = self.trace_seconds();
        let cases = self.selection_cases();
        let running = RunningTrace::start_all(&self.kubectl, cases, seconds)?;
        let unmarked = self.unmarked();
        let workloads = self.workloads()?;
        let caused = workloads.run_round("selection", |_| true)?;
        let prefix = workloads.marker_prefix();
        let containers = workloads.containers.clone();
        let containers = self.with_bystanders(containers)?;
        let mut failed = Vec::new();
        for trace in running {
            let (case, finished) = trace.finish(seconds)?;
            let problems =
                traces::problems(&case, &finished, &containers, &caused, &prefix, unmarked);
            if problems.is_empty() {
                let events = finished
                    .stdout_lines()
                    .filter(|line| line.contains(&prefix))
                    .count();
                eprintln!("e2e:   {}: {events} events, as expected", case.title());
            } else {
                failed.push((
                    case.title(),
                    problems,
                    format!("{}\n{}", finished.stdout, finished.stderr),
                ));
            }
        }
        traces::report(failed)
    }

    fn selection_cases(&self) -> Vec<TraceCase> {
        let alliance = self.namespaces.alliance.clone();
        let empire = self.namespaces.empire.clone();
        let prefix = self
            .workloads
            .as_ref()
            .map(Workloads::marker_prefix)
            .unwrap_or_default();
        let all = &self.nodes;
        let node_of = |pod: &str| {
            self.plan
                .iter()
                .find(|plan| plan.name == pod)
                .map(|plan| plan.node.clone())
                .unwrap_or_default()
        };
        let tie_node = node_of("tiefighter");
        let far_nodes: Vec<String> = BTreeSet::from([node_of("xwing"), node_of("deathstar")])
            .into_iter()
            .collect();
        let far_flag = far_nodes.join(",");
        let ns = alliance.clone();
        let ns2 = alliance.clone();
        let ns3 = empire.clone();
        vec![
            TraceCase::new(&["exec", "-n", &alliance], all, move |c| {
                c.identity.namespace == ns
            }),
            TraceCase::new(&["exec", "-A"], all, |_| true),
            TraceCase::new(&["exec", "-n", &alliance, "-p", "xwing"], all, |c| {
                c.identity.pod == "xwing"
            }),
            TraceCase::new(
                &["exec", "-n", &alliance, "-c", "spaceship"],
                all,
                move |c| c.identity.namespace == ns2 && c.identity.container == "spaceship",
            ),
            TraceCase::new(&["exec", "-A", "-l", "org=empire"], all, |c| {
                c.has_label("org", "empire")
            }),
            TraceCase::new(
                &["exec", "-A", "--node", &tie_node],
                std::slice::from_ref(&tie_node),
                {
                    let node = tie_node.clone();
                    move |c| c.node == node
                },
            ),
            TraceCase::new(
                &["open", "-n", &empire, "--prefix", &prefix],
                all,
                move |c| c.identity.namespace == ns3,
            ),
            TraceCase::new(
                &[
                    "open",
                    "-A",
                    "-l",
                    "class=fighter,org!=empire",
                    "--prefix",
                    &prefix,
                ],
                all,
                |c| c.has_label("class", "fighter") && !c.has_label("org", "empire"),
            ),
            TraceCase::new(
                &[
                    "open",
                    "-n",
                    &alliance,
                    "-p",
                    "tiefighter",
                    "-c",
                    "radio",
                    "--prefix",
                    &prefix,
                ],
                all,
                |c| c.identity.pod == "tiefighter" && c.identity.container == "radio",
            ),
            TraceCase::new(
                &["open", "-A", "--node", &far_flag, "--prefix", &prefix],
                &far_nodes,
                {
                    let nodes = far_nodes.clone();
                    move |c| nodes.contains(&c.node)
                },
            ),
        ]
    }

    /// What the trace file steps need.
    fn file_trace_run(&mut self) -> Result<FileTraceRun<'_>> {
        let seconds = self.trace_seconds();
        let only_ours = self.is_local();
        Ok(FileTraceRun {
            kubectl: &self.kubectl,
            workloads: self.workloads.as_mut().context("no workloads yet")?,
            nodes: &self.nodes,
            namespaces: &self.namespaces,
            seconds,
            only_ours,
        })
    }

    fn file_follows_a_pods_files(&mut self) -> Result<()> {
        self.file_trace_run()?.follows_a_pods_files()
    }

    fn file_kill_on_write(&mut self) -> Result<()> {
        self.file_trace_run()?.kill_on_write()
    }

    /// A trace with `-A` on every node; the agent of the node of `deathstar`
    /// is killed once it runs, then commands run in every container.
    fn kill_agent_mid_trace(&mut self) -> Result<()> {
        // Long enough for the client to notice the dead node (its keepalive:
        // up to 15 s) and for a round on the others after that.
        let seconds = KILL_TRACE_SECONDS;
        let victim = self
            .plan
            .iter()
            .find(|plan| plan.name == "deathstar")
            .map(|plan| plan.node.clone())
            .context("no deathstar pod")?;
        let others: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| **node != victim)
            .cloned()
            .collect();
        let mut trace = RunningTrace::start(
            &self.kubectl,
            TraceCase::new(&["exec", "-A"], &self.nodes, |_| true),
            seconds,
        )?;
        trace.wait_started()?;
        let agent = self
            .agents
            .iter_mut()
            .find(|agent| agent.command.node == victim)
            .with_context(|| format!("no agent runs for {victim}"))?;
        agent.kill()?;
        let noticed = Instant::now();
        let what = format!("the trace to report that {victim} failed");
        let error = trace
            .process
            .wait_for_stdout(&what, DEAD_NODE_NOTICED, |lines| {
                let parsed: Vec<Line> = lines
                    .iter()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect();
                let error = events::statuses(&parsed)
                    .find(|status| status.node == victim && status.error.is_some())
                    .and_then(|status| status.error.clone());
                match error {
                    Some(error) => Poll::Ready(error),
                    None => Poll::Pending(lines.join(" | ")),
                }
            })?;
        eprintln!(
            "e2e:   {victim} failed after {}: {error}",
            secs(noticed.elapsed())
        );
        let workloads = self.workloads()?;
        // Commands run in every container, those of the dead node's pods too:
        // the other nodes see them in the shared kernel, and must not show them.
        let caused = workloads.run_round("after-kill", |_| true)?;
        let prefix = workloads.marker_prefix();
        let containers = workloads.containers.clone();
        let (case, finished) = trace.finish(seconds)?;

        let mut problems = Vec::new();
        if finished.code() != Some(1) {
            problems.push(format!("exited with {}, not 1", finished.status));
        }
        let last = finished
            .stderr_lines()
            .filter(|line| !line.trim().is_empty())
            .last()
            .unwrap_or_default();
        if !(last.starts_with("error: ")
            && last.contains(&victim)
            && !others.iter().any(|node| last.contains(node.as_str())))
        {
            problems.push(format!(
                "the last line on stderr does not name {victim}, and only it: {last:?}"
            ));
        }
        let lines = events::parse(&finished.stdout)?;
        let (victim_lines, rest): (Vec<Line>, Vec<Line>) = lines
            .into_iter()
            .partition(|line| matches!(line, Line::Status(status) if status.node == victim));
        if !victim_lines
            .iter()
            .any(|line| matches!(line, Line::Status(s) if s.error.is_some()))
        {
            problems.push(format!("no status of {victim} carries an error"));
        }
        let selected: BTreeSet<_> = containers
            .iter()
            .filter(|container| container.node != victim)
            .map(|container| container.identity.clone())
            .collect();
        let expected: Vec<_> = caused
            .into_iter()
            .filter(|event| event.node != victim)
            .collect();
        problems.extend(events::check(
            &rest,
            &prefix,
            &expected,
            &selected,
            Unmarked::Forbidden,
        ));
        if !problems.is_empty() {
            return traces::report(vec![(
                case.title(),
                problems,
                format!("{}\n{}", finished.stdout, finished.stderr),
            )]);
        }
        eprintln!(
            "e2e:   {last}; events of {} arrived",
            join(&others.into_iter().collect())
        );
        Ok(())
    }

    fn undeploy(&mut self) -> Result<()> {
        run(
            &mut self
                .kubectl
                .gadget(["undeploy", "--wait", "--timeout", ROLLOUT_TIMEOUT]),
            ROLLOUT_DEADLINE,
        )?
        .success()?;
        self.deployed = false;
        let cluster = &self.cluster;
        let mut left = Vec::new();
        // Every object deploy applies, whatever the manifests hold...
        for object in manifests::build(&RenderOptions::default())?.to_values() {
            if let Some(name) = cluster.manifest_object_exists(&object)? {
                left.push(name);
            }
        }
        // ...and anything else carrying deploy's labels.
        let name = |kind: &str, meta: &kube::api::ObjectMeta| {
            format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
        };
        for role in cluster.list(
            &cluster.cluster_wide::<ClusterRole>(),
            Some(MANAGED_SELECTOR),
        )? {
            left.push(name("clusterrole", &role.metadata));
        }
        for binding in cluster.list(
            &cluster.cluster_wide::<ClusterRoleBinding>(),
            Some(MANAGED_SELECTOR),
        )? {
            left.push(name("clusterrolebinding", &binding.metadata));
        }
        for pod in cluster.list(&cluster.namespaced::<Pod>(NAMESPACE), Some(POD_SELECTOR))? {
            left.push(name("pod", &pod.metadata));
        }
        left.sort();
        left.dedup();
        if !left.is_empty() {
            bail!(
                "undeploy --wait returned, but these remain: {}",
                left.join(", ")
            );
        }
        // The node agents' pods are gone; so are they.
        self.agents.clear();
        Ok(())
    }

    /// A pod created while traces of its namespace run: its container did
    /// not exist when the traces started, and every event of it must carry
    /// its namespace, pod and container, its entrypoint's exec (which runs
    /// before the container's status reaches the node) included. Only its
    /// sandbox's carry no container name; their count is printed.
    fn late_pod(&mut self) -> Result<()> {
        let plan = workloads::late_pod(&self.namespaces, &self.nodes);
        // Long enough for the pod to start (the image is on the node) and a
        // round to run in it.
        let seconds = self.trace_seconds() + 30;
        let alliance = self.namespaces.alliance.clone();
        let prefix = self
            .workloads
            .as_ref()
            .map(Workloads::marker_prefix)
            .context("no workloads yet")?;
        let (ns, ns2) = (alliance.clone(), alliance.clone());
        let cases = vec![
            TraceCase::new(&["exec", "-n", &alliance], &self.nodes, move |c| {
                c.identity.namespace == ns
            }),
            TraceCase::new(
                &["open", "-n", &alliance, "--prefix", &prefix],
                &self.nodes,
                move |c| c.identity.namespace == ns2,
            ),
        ];
        let running = RunningTrace::start_all(&self.kubectl, cases, seconds)?;
        let unmarked = self.unmarked();
        let workloads = self.workloads.as_mut().context("no workloads yet")?;
        workloads.add_pod(&self.cluster, &plan)?;
        let caused = workloads.run_round("late", |c| c.identity.pod == plan.name)?;
        let entrypoint = workloads.entrypoint();
        let containers = workloads.containers.clone();
        let late: Vec<Identity> = containers
            .iter()
            .filter(|c| c.identity.pod == plan.name)
            .map(|c| c.identity.clone())
            .collect();
        let containers = self.with_bystanders(containers)?;
        let mut failed = Vec::new();
        for trace in running {
            let (case, finished) = trace.finish(seconds)?;
            let mut problems =
                traces::problems(&case, &finished, &containers, &caused, &prefix, unmarked);
            if let (Some(entrypoint), "exec") = (entrypoint, case.args[0].as_str()) {
                // Its first exec, before the kubelet wrote the container's
                // status: shown, and named (the node held it for the name).
                let lines = events::parse(&finished.stdout)?;
                for identity in &late {
                    let seen = lines.iter().any(|line| match line {
                        Line::Exec(event) => {
                            event.k8s.as_ref() == Some(identity)
                                && event
                                    .args
                                    .iter()
                                    .map(serde_json::Value::as_str)
                                    .eq(entrypoint.iter().map(|word| Some(*word)))
                        }
                        _ => false,
                    });
                    if !seen {
                        problems.push(format!(
                            "no exec of {entrypoint:?} from {}/{}: a container's first \
                             exec must be shown with its name",
                            identity.pod, identity.container
                        ));
                    }
                }
            }
            if problems.is_empty() {
                // The pod's containers' unnamed events are problems (see
                // Unmarked::FromSelected): these are its sandbox's.
                let sandbox = events::parse(&finished.stdout)?
                    .iter()
                    .filter(|line| match line {
                        Line::Exec(event) | Line::Open(event) => event
                            .k8s
                            .as_ref()
                            .is_some_and(|k8s| k8s.pod == plan.name && k8s.container.is_empty()),
                        Line::Status(_) => false,
                    })
                    .count();
                eprintln!(
                    "e2e:   {}: {}/{} attributed ({sandbox} events of the pod's sandbox, which \
                     has no container name)",
                    case.title(),
                    plan.name,
                    plan.containers.join(",")
                );
            } else {
                failed.push((
                    case.title(),
                    problems,
                    format!("{}\n{}", finished.stdout, finished.stderr),
                ));
            }
        }
        self.plan.push(plan);
        traces::report(failed)
    }

    /// `containers` and, in a real cluster, the containers of every other
    /// pod, which traces may see too (the gadget pods' exec probes).
    fn with_bystanders(
        &self,
        mut containers: Vec<WorkloadContainer>,
    ) -> Result<Vec<WorkloadContainer>> {
        if !self.is_local() {
            let others = workloads::bystanders(&self.cluster, &containers)?;
            containers.extend(others);
        }
        Ok(containers)
    }

    /// The gadget pod on `node` that is not being deleted.
    /// `kubectl logs` of the gadget pod `name`.
    fn gadget_pod_log(&mut self, name: &str) -> Result<Finished> {
        run(
            &mut self.kubectl.command(["logs", "-n", NAMESPACE, name]),
            Duration::from_secs(30),
        )
    }

    fn gadget_pod_on(&self, node: &str) -> Result<Option<Pod>> {
        let pods = self
            .cluster
            .list::<Pod>(&self.cluster.namespaced(NAMESPACE), Some(POD_SELECTOR))?;
        Ok(pods.into_iter().find(|pod| {
            pod.metadata.deletion_timestamp.is_none()
                && pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        }))
    }

    /// The gadget container's spec in the deployed DaemonSet.
    fn gadget_container_spec(&self) -> Result<k8s_openapi::api::core::v1::Container> {
        let daemon_set = self
            .cluster
            .get(&self.cluster.namespaced::<DaemonSet>(NAMESPACE), NODE_AGENT)?
            .context("the DaemonSet is not there")?;
        daemon_set
            .spec
            .and_then(|spec| spec.template.spec)
            .and_then(|spec| spec.containers.into_iter().next())
            .context("the DaemonSet has no container")
    }

    /// The capabilities the deployed DaemonSet adds back.
    fn added_capabilities(&self) -> Result<Vec<String>> {
        Ok(self
            .gadget_container_spec()?
            .security_context
            .and_then(|context| context.capabilities)
            .and_then(|capabilities| capabilities.add)
            .unwrap_or_default())
    }

    /// The gadget-node process of the real node's gadget pod, as the kernel
    /// holds it: exactly the capabilities the DaemonSet adds (effective,
    /// permitted and bounding; none ambient), no_new_privs, the seccomp mode
    /// of its profile, and a read-only root.
    /// The image's static build allocates with mimalloc and sets two of
    /// its options at start-up, by index (gadget-node's `memory.rs`): the
    /// pod's log says which, and names none left alone, as one would be if
    /// its index had moved in another mimalloc.
    fn real_node_allocator(&mut self) -> Result<()> {
        let node = self.real_node().context("no real node")?;
        let pod = self
            .gadget_pod_on(&node)?
            .with_context(|| format!("no gadget pod on {node}"))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let finished = self.gadget_pod_log(&name)?;
        if let Some(line) = finished
            .stdout_lines()
            .find(|line| line.contains("allocator option left alone"))
        {
            bail!("pod {name}: {line}");
        }
        let line = finished
            .stdout_lines()
            .find(|line| line.contains("allocator set up"))
            .with_context(|| {
                format!(
                    "pod {name}'s log does not say how its allocator is set up: {}",
                    finished.stdout.trim()
                )
            })?;
        for wanted in [
            "allocator=\"mimalloc\"",
            "purge_delay=0",
            "arena_eager_commit=0",
        ] {
            if !line.contains(wanted) {
                bail!("pod {name}'s allocator line lacks {wanted}: {line}");
            }
        }
        eprintln!("e2e:   {line}");
        // The options take effect only if they are set before the first
        // allocation. Set after it (the log lines were written between
        // two), the idle pod held 13.2 MiB of heap rather than 2.6 (this
        // step, both builds). No trace has run yet: this is the idle heap.
        let container_id = gadget_container_status(&pod)?
            .container_id
            .clone()
            .context("the gadget container has no id")?;
        let pid = host::container_process(&container_id, "gadget-node", "serve")?;
        let heap_kib = host::status_kib(pid, "RssAnon")?;
        eprintln!("e2e:   idle heap (RssAnon) {heap_kib} KiB");
        if heap_kib > IDLE_HEAP_MAX_KIB {
            bail!(
                "pod {name}'s gadget-node holds {heap_kib} KiB of heap before any trace, more \
                 than {IDLE_HEAP_MAX_KIB}: are its allocator options set before its first \
                 allocation?"
            );
        }
        Ok(())
    }

    fn real_node_privileges(&mut self) -> Result<()> {
        let node = self.real_node().context("no real node")?;
        let pod = self
            .gadget_pod_on(&node)?
            .with_context(|| format!("no gadget pod on {node}"))?;
        let status = gadget_container_status(&pod)?;
        let container_id = status
            .container_id
            .clone()
            .context("the gadget container has no id")?;
        if let Mode::Existing {
            image: Some(image), ..
        } = &self.options.mode
        {
            if !status.image.ends_with(image.as_str()) {
                bail!("the gadget container runs {}, not {image}", status.image);
            }
        }
        let spec = self.gadget_container_spec()?;
        let added = self.added_capabilities()?;
        let unconfined = spec
            .security_context
            .as_ref()
            .and_then(|context| context.seccomp_profile.as_ref())
            .is_some_and(|profile| profile.type_ == "Unconfined");
        let pid = host::container_process(&container_id, "gadget-node", "serve")?;
        let held = host::ProcessPrivileges::of(pid)?;
        let wanted = host::capability_mask(&added)?;
        let mut problems = Vec::new();
        for (set, mask) in [
            ("effective", held.effective),
            ("permitted", held.permitted),
            ("bounding", held.bounding),
        ] {
            if mask != wanted {
                problems.push(format!(
                    "its {set} capabilities are {mask:#x}, not {wanted:#x} ({added:?})"
                ));
            }
        }
        if held.ambient != 0 {
            problems.push(format!("it has ambient capabilities {:#x}", held.ambient));
        }
        if !held.no_new_privs {
            problems.push("no_new_privs is not set (allowPrivilegeEscalation: false)".into());
        }
        let wanted_seccomp = if unconfined { 0 } else { 2 };
        if held.seccomp != wanted_seccomp {
            problems.push(format!(
                "its seccomp mode is {}, not {wanted_seccomp}",
                held.seccomp
            ));
        }
        if !held.read_only_root {
            problems.push("its root file system is writable".into());
        }
        if !problems.is_empty() {
            bail!("gadget-node (pid {pid}) on {node}: {}", problems.join("; "));
        }
        eprintln!(
            "e2e:   gadget-node (host pid {pid}) holds exactly {added:?} (CapEff {:#x}), \
             no_new_privs, seccomp mode {}, a read-only root",
            held.effective, held.seccomp
        );
        Ok(())
    }

    /// For each capability the DaemonSet adds, the DaemonSet without it: the
    /// new gadget pod starts, logs which call the kernel refused, and does
    /// not become Ready. Then deploy puts the manifest back, as a user would.
    fn each_capability_is_necessary(&mut self) -> Result<()> {
        let node = self.real_node().context("no real node")?;
        let added = self.added_capabilities()?;
        if added.is_empty() {
            bail!("the DaemonSet adds no capability");
        }
        let daemon_sets = self.cluster.namespaced::<DaemonSet>(NAMESPACE);
        for capability in &added {
            let others: Vec<&String> = added.iter().filter(|c| *c != capability).collect();
            // A strategic merge patch replaces the list (it has no merge key).
            let without = serde_json::json!({"spec": {"template": {"spec": {"containers": [
                {"name": NODE_AGENT, "securityContext": {"capabilities": {"add": others}}}
            ]}}}});
            let old_uid = self
                .gadget_pod_on(&node)?
                .and_then(|pod| pod.metadata.uid)
                .unwrap_or_default();
            self.cluster
                .block_on(daemon_sets.patch(
                    NODE_AGENT,
                    &PatchParams::default(),
                    &Patch::Strategic(&without),
                ))
                .with_context(|| format!("cannot remove {capability} from the DaemonSet"))?;
            let pod = poll(
                &format!("a gadget pod without {capability} to run on {node}"),
                Duration::from_secs(120),
                || {
                    let pod = self.gadget_pod_on(&node)?;
                    let running = pod.as_ref().is_some_and(|pod| {
                        pod.metadata.uid.as_deref() != Some(old_uid.as_str())
                            && pod
                                .status
                                .as_ref()
                                .and_then(|s| s.container_statuses.as_ref())
                                .and_then(|all| all.first())
                                .and_then(|c| c.state.as_ref())
                                .is_some_and(|state| state.running.is_some())
                    });
                    Ok(match pod {
                        Some(pod) if running => Poll::Ready(pod),
                        _ => Poll::Pending("not running yet".into()),
                    })
                },
            )?;
            let name = pod.metadata.name.clone().unwrap_or_default();
            let refused = poll(
                &format!("pod {name}'s log to say what the kernel refused"),
                Duration::from_secs(60),
                || {
                    let finished = self.gadget_pod_log(&name)?;
                    let line = finished
                        .stdout_lines()
                        .find(|line| {
                            line.contains("gadget unavailable")
                                && line.contains("permission denied")
                        })
                        .map(str::to_string);
                    Ok(match line {
                        Some(line) => Poll::Ready(line),
                        None => Poll::Pending(format!("log: {}", finished.stdout.trim())),
                    })
                },
            )?;
            // Three periods of its readiness probe without becoming Ready
            // is the probe saying no, not a slow start.
            let period = pod
                .spec
                .as_ref()
                .and_then(|spec| spec.containers.first())
                .and_then(|c| c.readiness_probe.as_ref())
                .and_then(|probe| probe.period_seconds)
                .with_context(|| format!("pod {name} has no readiness probe period"))?;
            std::thread::sleep(Duration::from_secs(3 * u64::try_from(period)?));
            let pod = self
                .gadget_pod_on(&node)?
                .with_context(|| format!("pod {name} is gone"))?;
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                bail!("without {capability}, pod {name} became Ready; its log says: {refused}");
            }
            eprintln!("e2e:   without {capability}: not Ready; {refused}");
            // As a user would: deploy again puts the manifest back.
            run(
                &mut self.kubectl.gadget(self.deploy_args(&[
                    "--wait",
                    "--timeout",
                    ROLLOUT_TIMEOUT,
                ])),
                ROLLOUT_DEADLINE,
            )?
            .success()?;
            if self.added_capabilities()? != added {
                bail!("deploy did not put back the capabilities {added:?}");
            }
        }
        Ok(())
    }

    /// A pod the kubelet will never start (an image that is not on the
    /// node, with pull policy Never): `deploy --wait` says so as soon as the
    /// kubelet does, with its reason, instead of waiting out `--timeout`.
    /// Deploy with the right image puts the node back.
    fn deploy_fails_fast_when_a_pod_cannot_start(&mut self) -> Result<()> {
        let node = self.real_node().context("no real node")?;
        let started = Instant::now();
        let args = [
            "deploy",
            "--image",
            "registry.invalid/gadget-e2e/not-on-the-node:1",
            "--image-pull-policy",
            "Never",
            "--wait",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ];
        let finished = run(&mut self.kubectl.gadget(args), ROLLOUT_DEADLINE)?;
        let took = started.elapsed();
        let expected = format!("gadget-node cannot start on node {node}: ErrImageNeverPull");
        if finished.status.success() || !finished.stderr.contains(&expected) {
            bail!(
                "deploy --wait of a missing image: want a failure with {expected:?}, got {}:\n{}",
                finished.status,
                finished.stderr
            );
        }
        // Well inside the 120 s timeout: the kubelet reports it within
        // seconds.
        if took > Duration::from_secs(60) {
            bail!("deploy --wait took {} s to give up", took.as_secs());
        }
        eprintln!(
            "e2e:   failed after {:.1} s: {}",
            took.as_secs_f64(),
            finished.stderr.lines().last().unwrap_or_default()
        );
        run(
            &mut self
                .kubectl
                .gadget(self.deploy_args(&["--wait", "--timeout", ROLLOUT_TIMEOUT])),
            ROLLOUT_DEADLINE,
        )?
        .success()?;
        Ok(())
    }

    /// Undeploy while a trace runs on the real node: the trace ends by
    /// itself (the node ends it as its pod stops), everything deploy made is
    /// gone, and so is every BPF program the trace had loaded.
    fn undeploy_during_trace(&mut self) -> Result<()> {
        let before = host::loaded_programs()?;
        let case = TraceCase::new(&["open", "-A"], &self.nodes, |_| true);
        let mut trace = RunningTrace::start(&self.kubectl, case, 0)?;
        trace.wait_started()?;
        let ours: BTreeMap<u32, String> = host::loaded_programs()?
            .into_iter()
            .filter(|(id, _)| !before.contains_key(id))
            .collect();
        if ours.is_empty() {
            bail!("bpftool shows no new BPF program while the trace runs");
        }
        self.undeploy()?;
        let finished = trace
            .process
            .finish(Duration::from_secs(30))
            .context("the trace did not end within 30 s of undeploy removing its node's pod")?;
        let left: Vec<String> = host::loaded_programs()?
            .into_iter()
            .filter(|(id, _)| ours.contains_key(id))
            .map(|(id, name)| format!("{id} {name}"))
            .collect();
        if !left.is_empty() {
            bail!(
                "after undeploy these BPF programs of the trace are still loaded: {}",
                left.join(", ")
            );
        }
        let names: BTreeSet<&str> = ours.values().map(String::as_str).collect();
        eprintln!(
            "e2e:   the trace had loaded {} programs ({}); none is left; it ended ({}) with: {}",
            ours.len(),
            names.into_iter().collect::<Vec<_>>().join(", "),
            finished.status,
            finished.stderr.lines().last().unwrap_or_default()
        );
        Ok(())
    }

    /// `-t` of the traces: long enough to start everywhere and run a round.
    fn trace_seconds(&self) -> u32 {
        if self.is_local() {
            15
        } else {
            // A round is a kubectl exec per container.
            30
        }
    }

    fn unmarked(&self) -> Unmarked {
        if self.is_local() {
            Unmarked::Forbidden
        } else {
            Unmarked::FromSelected
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        // Agents first: they hold their nodes' cgroups mounted.
        self.agents.clear();
        self.workloads = None;
        self.cgroups = None;
        if self.deployed {
            eprintln!("e2e: cleaning up: kubectl gadget undeploy");
            if let Ok(mut undeploy) = Running::spawn(&mut self.kubectl.gadget(["undeploy"])) {
                let _ = undeploy.stdout_lines();
                let _ = undeploy.finish(Duration::from_secs(60));
            }
        }
        let cluster = &self.cluster;
        // Pods in namespaces the suite did not create (default) one by one.
        for pod in self
            .plan
            .iter()
            .filter(|pod| !self.created_namespaces.contains(&pod.namespace))
        {
            if let Err(err) = cluster.delete(&cluster.namespaced::<Pod>(&pod.namespace), pod.name) {
                eprintln!("e2e: cleaning up: {err:#}");
            }
        }
        for namespace in &self.created_namespaces {
            if let Err(err) = cluster.delete(&cluster.cluster_wide::<Namespace>(), namespace) {
                eprintln!("e2e: cleaning up: {err:#}");
            }
        }
    }
}
