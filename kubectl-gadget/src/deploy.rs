//! `kubectl gadget deploy` and `undeploy`.
//!
//! Deploy is a server-side apply of the objects in [`crate::manifests`] with
//! the field manager [`FIELD_MANAGER`]; undeploy deletes what carries the
//! [`MANAGED_SELECTOR`] labels. Failed API calls become one line each, worded
//! by [`crate::api_error`].

use std::fmt::{Debug, Display};
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, reflector, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::api_error::ApiError;
use crate::manifests::{
    self, ImagePullPolicy, ManifestError, Manifests, RenderOptions, MANAGED_SELECTOR, NAMESPACE,
    NODE_AGENT, POD_SELECTOR,
};
use crate::pod_status::{is_pod_ready, pod_node, pod_state, RolloutStatus};

/// The field manager of every server-side apply: Kubernetes records which
/// fields kubectl-gadget owns under this name.
pub const FIELD_MANAGER: &str = "kubectl-gadget";

/// How many not-ready pods progress lines and reports name before summing up.
const MAX_PODS_LISTED: usize = 8;

/// How many recent events the timeout report shows per object.
const EVENTS_PER_OBJECT: usize = 5;

/// How often undeploy `--wait` looks whether the pods and namespace are gone.
const DELETION_POLL: Duration = Duration::from_secs(1);

/// `kubectl gadget deploy`: install or update the node side.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The gadget-node image.
    #[arg(long, value_name = "IMAGE", default_value_t = manifests::default_image(), value_parser = parse_image)]
    pub image: String,

    /// When the kubelet pulls the image [default: Always for an untagged or
    /// :latest image, IfNotPresent otherwise, as Kubernetes does].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Run gadget pods only on nodes with this label, as key=value
    /// (repeatable, or comma-separated); kubernetes.io/os=linux always
    /// applies.
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_node_selector)]
    pub node_selector: Vec<(String, String)>,

    /// Wait until every scheduled gadget pod is ready, showing progress.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits, like 90s, 5m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Print the manifests that would be applied, with these options, and
    /// change nothing. Needs no cluster.
    #[arg(long, conflicts_with = "wait")]
    pub print_only: bool,
}

impl DeployArgs {
    /// The rendering options these flags ask for.
    pub fn render_options(&self) -> Result<RenderOptions, ManifestError> {
        Ok(RenderOptions {
            image: self.image.clone(),
            image_pull_policy: self
                .image_pull_policy
                .unwrap_or_else(|| ImagePullPolicy::default_for(&self.image)),
            node_selector: manifests::node_selector_from_entries(&self.node_selector)?,
        })
    }
}

/// `kubectl gadget undeploy`: remove everything deploy created.
#[derive(Debug, Clone, clap::Args)]
pub struct UndeployArgs {
    /// Wait until the gadget pods and the namespace are gone.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits, like 90s, 5m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_image(text: &str) -> Result<String, ManifestError> {
    manifests::check_image(text)
}

fn parse_node_selector(text: &str) -> Result<(String, String), ManifestError> {
    manifests::parse_node_selector_entry(text)
}

/// Parses a duration written as numbers with units `h`, `m`, `s` (and `ms`),
/// like `120s`, `5m` or `1m30s`, as kubectl's `--timeout` takes them.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("a duration like 120s, 5m or 1m30s is needed".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?} is not a duration like 120s, 5m or 1m30s"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too long a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            "" => {
                return Err(format!(
                    "{text:?} needs a unit: {text}s, {text}m or {text}h"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?} (use h, m, s or ms)"
                ))
            }
        };
        rest = &rest[unit_len..];
        total = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    if total.is_zero() {
        return Err("the timeout must be above zero".into());
    }
    Ok(total)
}

/// Writes the manifests `args` would apply, as multi-document YAML with the
/// templates' comments, to `out`. Touches no cluster: the CLI calls this for
/// `--print-only` without building a client, so it works with no kubeconfig.
pub fn print_manifests(args: &DeployArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let options = args.render_options()?;
    let yaml = manifests::render(&options)?;
    // The same checks as a real deploy: what is printed is what would apply.
    manifests::parse(&yaml)?.check()?;
    out.write_all(yaml.as_bytes())
        .context("cannot write the manifests")?;
    out.flush().context("cannot write the manifests")
}

/// The API server deploy and undeploy talk to: the client, and the URL it
/// was built for (`kube::Client` does not expose it, and errors name it).
#[derive(Clone, Copy)]
struct ApiServer<'a> {
    client: &'a kube::Client,
    url: &'a str,
}

impl<'a> ApiServer<'a> {
    /// Maps the kube error of doing `action` to an [`ApiError`].
    fn error(self, action: impl Display) -> impl FnOnce(kube::Error) -> ApiError + 'a {
        let action = action.to_string();
        move |err| ApiError::from_kube(&err, &action, Some(self.url))
    }
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    fn from_versions(before: Option<&str>, after: Option<&str>) -> Self {
        match before {
            None => ApplyOutcome::Created,
            Some(before) if Some(before) == after => ApplyOutcome::Unchanged,
            Some(_) => ApplyOutcome::Configured,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// `kubectl gadget deploy`: applies the node side with server-side apply and,
/// with `--wait`, watches the rollout until every scheduled gadget pod is
/// ready (progress on stderr), or fails with a report of the pods that are
/// not and why.
///
/// Applies are forced: kubectl-gadget is the only intended owner of these
/// objects, so when another manager (a `kubectl edit`, an older client-side
/// apply) holds one of its fields, deploy takes it back instead of stopping
/// at a conflict the user cannot resolve with deploy's flags. Fields deploy
/// does not set stay with whoever set them. Applying the same manifests
/// again writes nothing (every object reports `unchanged`).
///
/// `server_url` is the URL the client was built for (`kube::Config`'s
/// `cluster_url`); connection errors name it. With `--print-only` this only
/// prints, as [`print_manifests`] does, but the CLI should call that one
/// directly so that printing needs no kubeconfig.
pub async fn deploy(
    client: &kube::Client,
    server_url: &str,
    args: &DeployArgs,
) -> anyhow::Result<()> {
    if args.print_only {
        return print_manifests(args, &mut std::io::stdout().lock());
    }
    let cluster = ApiServer {
        client,
        url: server_url,
    };
    let manifests = manifests::build(&args.render_options()?)?;
    apply_all(cluster, &manifests).await?;
    if args.wait {
        wait_for_rollout(cluster, args.timeout).await?;
    } else {
        println!(
            "the gadget pods are starting; \"kubectl gadget deploy --wait\" waits until they are ready"
        );
    }
    Ok(())
}

async fn apply_all(cluster: ApiServer<'_>, manifests: &Manifests) -> Result<(), ApiError> {
    let client = cluster.client;
    apply(cluster, Api::all(client.clone()), &manifests.namespace).await?;
    apply(
        cluster,
        Api::namespaced(client.clone(), NAMESPACE),
        &manifests.service_account,
    )
    .await?;
    apply(cluster, Api::all(client.clone()), &manifests.cluster_role).await?;
    apply(
        cluster,
        Api::all(client.clone()),
        &manifests.cluster_role_binding,
    )
    .await?;
    apply(
        cluster,
        Api::namespaced(client.clone(), NAMESPACE),
        &manifests.daemon_set,
    )
    .await
}

/// `namespace/gadget`, `daemonset.apps/gadget-node`: kubectl's way of naming
/// objects in its output.
fn object_name<K: Resource<DynamicType = ()>>(name: &str) -> String {
    let kind = K::kind(&()).to_lowercase();
    match K::group(&()).as_ref() {
        "" => format!("{kind}/{name}"),
        group => format!("{kind}.{group}/{name}"),
    }
}

async fn apply<K>(cluster: ApiServer<'_>, api: Api<K>, object: &K) -> Result<(), ApiError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let display = object_name::<K>(&name);
    let action = format!("apply {display}");
    let before = api.get_opt(&name).await.map_err(cluster.error(&action))?;
    // Strict field validation: the API server refuses fields it does not
    // know instead of dropping them (the templates are also checked locally).
    let params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    let after = api
        .patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(cluster.error(&action))?;
    let outcome = ApplyOutcome::from_versions(
        before
            .as_ref()
            .and_then(|b| b.meta().resource_version.as_deref()),
        after.meta().resource_version.as_deref(),
    );
    println!("{display} {}", outcome.as_str());
    Ok(())
}

/// The progress line: ready/desired, then the state of every pod that is not
/// ready, by node (the first few; the rest counted).
pub fn progress_line<'a>(
    status: &RolloutStatus,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> String {
    let mut waiting: Vec<(String, String)> = pods
        .into_iter()
        .filter(|pod| !is_pod_ready(pod))
        .map(|pod| (pod_node(pod).to_string(), pod_state(pod)))
        .collect();
    waiting.sort();
    let mut line = format!(
        "{}/{} gadget pods ready, {} up to date",
        status.ready, status.desired, status.updated
    );
    if !waiting.is_empty() {
        let listed: Vec<String> = waiting
            .iter()
            .take(MAX_PODS_LISTED)
            .map(|(node, state)| format!("{node}: {state}"))
            .collect();
        line.push_str("; waiting for ");
        line.push_str(&listed.join(", "));
        if waiting.len() > MAX_PODS_LISTED {
            line.push_str(&format!(" and {} more", waiting.len() - MAX_PODS_LISTED));
        }
    }
    line
}

/// What a watch event means for the rollout wait.
enum WatchUpdate {
    /// The first (or a re-) list of the gadget pods is complete.
    PodsListed,
    /// Anything else: the stores changed.
    Other,
}

/// Watches the DaemonSet and its pods until the rollout is complete or
/// `timeout` passes; on timeout prints why pods are not ready and fails.
async fn wait_for_rollout(cluster: ApiServer<'_>, timeout: Duration) -> anyhow::Result<()> {
    let client = cluster.client;
    let server = Some(cluster.url);
    let (daemon_sets, daemon_set_writer) = reflector::store::<DaemonSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let daemon_set_events = reflector(
        daemon_set_writer,
        watcher(
            Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().fields(&format!("metadata.name={NODE_AGENT}")),
        ),
    )
    .default_backoff()
    .map(|event| {
        event
            .map(|_| WatchUpdate::Other)
            .map_err(|e| ApiError::from_watch(e, "watch daemonset gadget-node", server))
    });
    let pod_events = reflector(
        pod_writer,
        watcher(
            Api::<Pod>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().labels(POD_SELECTOR),
        ),
    )
    .default_backoff()
    .map(|event| {
        event
            .map(|event| match event {
                watcher::Event::InitDone => WatchUpdate::PodsListed,
                _ => WatchUpdate::Other,
            })
            .map_err(|e| ApiError::from_watch(e, "watch the gadget pods", server))
    });
    let mut events = std::pin::pin!(futures::stream::select(daemon_set_events, pod_events));
    let key = ObjectRef::<DaemonSet>::new(NODE_AGENT).within(NAMESPACE);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut last_line = String::new();
    let mut last_error = String::new();
    // Progress lines wait for the first full list of pods, so the first one
    // already names the nodes that are waiting.
    let mut pods_listed = false;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            event = events.next() => match event {
                Some(Ok(WatchUpdate::PodsListed)) => pods_listed = true,
                Some(Ok(WatchUpdate::Other)) => {}
                Some(Err(err)) if err.is_final() => return Err(err.into()),
                Some(Err(err)) => {
                    // Watches resume by themselves (with backoff); say why
                    // progress stalls, once per distinct error.
                    let message = err.to_string();
                    if message != last_error {
                        eprintln!("{message}; retrying");
                        last_error = message;
                    }
                    continue;
                }
                None => break,
            },
        }
        let Some(daemon_set) = daemon_sets.get(&key) else {
            continue;
        };
        let status = RolloutStatus::of(&daemon_set);
        let current_pods = pods.state();
        let line = progress_line(&status, current_pods.iter().map(|p| p.as_ref()));
        if pods_listed && line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if status.is_complete() {
            if status.desired == 0 {
                eprintln!(
                    "warning: no node matches the gadget-node node selector, so no gadget pod runs"
                );
            }
            println!("gadget-node is ready on {} nodes", status.desired);
            return Ok(());
        }
    }
    let status = daemon_sets.get(&key).map(|ds| RolloutStatus::of(&ds));
    report_not_ready(cluster, &pods.state()).await;
    let summary = match status {
        Some(status) => format!("{}/{} gadget pods ready", status.ready, status.desired),
        None => "the DaemonSet was not seen".into(),
    };
    anyhow::bail!(
        "gadget-node did not become ready within {}: {summary}",
        format_duration(timeout)
    )
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Prints, to stderr, why each not-ready gadget pod is not ready: container
/// states with their messages, failing conditions and recent events, plus
/// the DaemonSet's own warnings (a pod that admission refused never exists,
/// and only the DaemonSet's events say so).
async fn report_not_ready(cluster: ApiServer<'_>, pods: &[std::sync::Arc<Pod>]) {
    let events_api = Api::<Event>::namespaced(cluster.client.clone(), NAMESPACE);
    let mut not_ready: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| !is_pod_ready(p))
        .collect();
    not_ready.sort_by_key(|pod| pod_node(pod).to_string());
    eprintln!("gadget pods that are not ready:");
    if not_ready.is_empty() {
        eprintln!("  (none exists yet)");
    }
    for pod in not_ready.iter().take(MAX_PODS_LISTED) {
        for line in pod_report(pod) {
            eprintln!("  {line}");
        }
        let selector = format!(
            "involvedObject.kind=Pod,involvedObject.name={}",
            pod.name_any()
        );
        for line in recent_events(&events_api, &selector).await {
            eprintln!("    {line}");
        }
    }
    if not_ready.len() > MAX_PODS_LISTED {
        eprintln!("  and {} more", not_ready.len() - MAX_PODS_LISTED);
    }
    let selector = format!("involvedObject.kind=DaemonSet,involvedObject.name={NODE_AGENT}");
    let daemon_set_events = recent_events(&events_api, &selector).await;
    if !daemon_set_events.is_empty() {
        eprintln!("daemonset.apps/{NODE_AGENT} events:");
        for line in daemon_set_events {
            eprintln!("  {line}");
        }
    }
}

/// The lines describing one pod that is not ready: its node and state, each
/// container's waiting or terminated reason with its message, and every
/// condition that is not true.
pub fn pod_report(pod: &Pod) -> Vec<String> {
    let mut lines = vec![format!(
        "pod {} on {}: {}",
        pod.name_any(),
        pod_node(pod),
        pod_state(pod)
    )];
    let status = pod.status.as_ref();
    for container in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        let state = container.state.as_ref();
        let detail = if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            waiting
                .message
                .as_ref()
                .map(|m| format!("{}: {m}", waiting.reason.as_deref().unwrap_or("waiting")))
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            terminated.message.as_ref().map(|m| {
                format!(
                    "{}: {m}",
                    terminated.reason.as_deref().unwrap_or("terminated")
                )
            })
        } else {
            None
        };
        if let Some(detail) = detail {
            lines.push(format!("  container {}: {detail}", container.name));
        }
        let last_exit = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref());
        if let Some(last) = last_exit {
            lines.push(format!(
                "  container {} last exited with code {}{}",
                container.name,
                last.exit_code,
                last.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
    }
    for condition in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if condition.status != "True" {
            let mut line = format!("  condition {}={}", condition.type_, condition.status);
            for part in [&condition.reason, &condition.message]
                .into_iter()
                .flatten()
            {
                line.push_str(": ");
                line.push_str(part);
            }
            lines.push(line);
        }
    }
    lines
}

/// The last few distinct events matching `field_selector`, oldest first,
/// as `<type> <reason>: <message>`. Errors listing them are reported inline:
/// the report is already the failure path.
async fn recent_events(api: &Api<Event>, field_selector: &str) -> Vec<String> {
    let mut events = match api
        .list(&ListParams::default().fields(field_selector))
        .await
    {
        Ok(list) => list.items,
        Err(err) => {
            return vec![format!(
                "(cannot list events: {})",
                ApiError::from_kube(&err, "list events", None)
            )]
        }
    };
    events.sort_by_key(event_time);
    let mut lines: Vec<String> = events
        .iter()
        .map(|event| {
            let count = match event.count {
                Some(n) if n > 1 => format!(" (x{n})"),
                _ => String::new(),
            };
            format!(
                "event {} {}{count}: {}",
                event.type_.as_deref().unwrap_or("Normal"),
                event.reason.as_deref().unwrap_or(""),
                event.message.as_deref().unwrap_or("").trim_end()
            )
        })
        .collect();
    // Components record the same failure again and again as new events.
    lines.dedup();
    let skip = lines.len().saturating_sub(EVENTS_PER_OBJECT);
    lines.drain(..skip);
    lines
}

/// When an event last happened, for ordering: core/v1 events carry it in
/// one of three fields depending on who recorded them.
fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
}

/// `kubectl gadget undeploy`: deletes everything deploy created, found by
/// the [`MANAGED_SELECTOR`] labels: first the DaemonSet (its pods get SIGTERM
/// and detach their programs while their RBAC still exists), then the
/// namespace (which takes the ServiceAccount with it), the ClusterRoleBinding
/// and the ClusterRole. Nothing deployed is not an error. With `--wait`,
/// returns once the pods and the namespace are gone. `server_url` is as for
/// [`deploy`].
pub async fn undeploy(
    client: &kube::Client,
    server_url: &str,
    args: &UndeployArgs,
) -> anyhow::Result<()> {
    let cluster = ApiServer {
        client,
        url: server_url,
    };
    let labelled = ListParams::default().labels(MANAGED_SELECTOR);
    let namespaces = list_names(cluster, Api::<Namespace>::all(client.clone()), &labelled).await?;
    let bindings = list_names(
        cluster,
        Api::<ClusterRoleBinding>::all(client.clone()),
        &labelled,
    )
    .await?;
    let roles = list_names(cluster, Api::<ClusterRole>::all(client.clone()), &labelled).await?;
    if namespaces.is_empty() && bindings.is_empty() && roles.is_empty() {
        println!("nothing to undeploy");
        return Ok(());
    }
    for namespace in &namespaces {
        let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), namespace);
        for name in list_names(cluster, daemon_sets.clone(), &labelled).await? {
            delete(cluster, &daemon_sets, &name).await?;
        }
    }
    let namespace_api = Api::<Namespace>::all(client.clone());
    for name in &namespaces {
        delete(cluster, &namespace_api, name).await?;
    }
    let binding_api = Api::<ClusterRoleBinding>::all(client.clone());
    for name in &bindings {
        delete(cluster, &binding_api, name).await?;
    }
    let role_api = Api::<ClusterRole>::all(client.clone());
    for name in &roles {
        delete(cluster, &role_api, name).await?;
    }
    if args.wait {
        wait_until_gone(cluster, &namespaces, args.timeout).await?;
    }
    Ok(())
}

async fn list_names<K>(
    cluster: ApiServer<'_>,
    api: Api<K>,
    params: &ListParams,
) -> Result<Vec<String>, ApiError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let action = format!("list {}", object_name::<K>("").trim_end_matches('/'));
    let list = api.list(params).await.map_err(cluster.error(action))?;
    Ok(list.items.iter().map(ResourceExt::name_any).collect())
}

async fn delete<K>(cluster: ApiServer<'_>, api: &Api<K>, name: &str) -> Result<(), ApiError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let display = object_name::<K>(name);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            println!("{display} deleted");
            Ok(())
        }
        // Gone already (a concurrent undeploy, or the namespace took it).
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(err) => Err(cluster.error(format!("delete {display}"))(err)),
    }
}

/// Polls until no gadget pod is left in `namespaces` and the namespaces are
/// gone (deleting a namespace finishes after everything in it is deleted).
async fn wait_until_gone(
    cluster: ApiServer<'_>,
    namespaces: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = cluster.client;
    let deadline = Instant::now() + timeout;
    let pods_params = ListParams::default().labels(POD_SELECTOR);
    let namespace_api = Api::<Namespace>::all(client.clone());
    let mut last_line = String::new();
    loop {
        let mut pods = Vec::new();
        let mut remaining_namespaces = Vec::new();
        for namespace in namespaces {
            let pod_api = Api::<Pod>::namespaced(client.clone(), namespace);
            let listed = pod_api
                .list(&pods_params)
                .await
                .map_err(cluster.error("list the gadget pods"))?;
            pods.extend(listed.items);
            if let Some(ns) = namespace_api
                .get_opt(namespace)
                .await
                .map_err(cluster.error(format!("get namespace {namespace}")))?
            {
                remaining_namespaces.push(ns);
            }
        }
        if pods.is_empty() && remaining_namespaces.is_empty() {
            println!("gadget-node is removed");
            return Ok(());
        }
        let line = if pods.is_empty() {
            format!(
                "waiting for namespace {} to be removed",
                names(&remaining_namespaces)
            )
        } else {
            format!("waiting for {} gadget pods to stop", pods.len())
        };
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if Instant::now() >= deadline {
            for pod in &pods {
                eprintln!(
                    "  pod {} on {}: {}",
                    pod.name_any(),
                    pod_node(pod),
                    pod_state(pod)
                );
            }
            for namespace in &remaining_namespaces {
                for line in namespace_report(namespace) {
                    eprintln!("  {line}");
                }
            }
            let mut left = Vec::new();
            if !pods.is_empty() {
                left.push(format!("{} gadget pods still stopping", pods.len()));
            }
            if !remaining_namespaces.is_empty() {
                left.push(format!(
                    "namespace {} still being removed",
                    names(&remaining_namespaces)
                ));
            }
            anyhow::bail!(
                "gadget-node was not removed within {}: {}",
                format_duration(timeout),
                left.join(", ")
            );
        }
        tokio::time::sleep(DELETION_POLL.min(deadline - Instant::now())).await;
    }
}

fn names<K: Resource>(objects: &[K]) -> String {
    objects
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a namespace is still there: its phase and the conditions the
/// namespace controller sets while it cannot finish (finalizers, content it
/// cannot delete).
fn namespace_report(namespace: &Namespace) -> Vec<String> {
    let status = namespace.status.as_ref();
    let mut lines = vec![format!(
        "namespace {}: {}",
        namespace.name_any(),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("Active")
    )];
    for condition in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if condition.status == "True" {
            lines.push(format!(
                "  {}: {}",
                condition.type_,
                condition.message.as_deref().unwrap_or("")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_status::fixtures::{pod, waiting, with_container};
    use clap::Parser;
    use k8s_openapi::api::core::v1::ContainerState;

    /// The flags as the CLI mounts them.
    #[derive(Debug, Parser)]
    struct DeployCommand {
        #[command(flatten)]
        args: DeployArgs,
    }

    #[derive(Debug, Parser)]
    struct UndeployCommand {
        #[command(flatten)]
        args: UndeployArgs,
    }

    fn deploy_args(flags: &[&str]) -> Result<DeployArgs, clap::Error> {
        DeployCommand::try_parse_from(std::iter::once("deploy").chain(flags.iter().copied()))
            .map(|c| c.args)
    }

    fn printed(flags: &[&str]) -> Manifests {
        let mut out = Vec::new();
        print_manifests(&deploy_args(flags).unwrap(), &mut out).unwrap();
        manifests::parse(std::str::from_utf8(&out).unwrap()).unwrap()
    }

    fn container(manifests: &Manifests) -> k8s_openapi::api::core::v1::Container {
        manifests
            .daemon_set
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .clone()
    }

    #[test]
    fn defaults() {
        let args = deploy_args(&[]).unwrap();
        assert_eq!(args.image, manifests::default_image());
        assert_eq!(args.image_pull_policy, None);
        assert!(args.node_selector.is_empty());
        assert!(!args.wait);
        assert!(!args.print_only);
        assert_eq!(args.timeout, Duration::from_secs(120));
        assert_eq!(args.render_options().unwrap(), RenderOptions::default());
    }

    #[test]
    fn image_flag() {
        let manifests = printed(&["--image", "registry.local/gadget-node:dev"]);
        assert_eq!(
            container(&manifests).image.as_deref(),
            Some("registry.local/gadget-node:dev")
        );
        assert!(deploy_args(&["--image", "has space"]).is_err());
        assert!(deploy_args(&["--image", ""]).is_err());
    }

    #[test]
    fn image_pull_policy_flag() {
        let manifests = printed(&["--image-pull-policy", "Never"]);
        assert_eq!(
            container(&manifests).image_pull_policy.as_deref(),
            Some("Never")
        );
        let args = deploy_args(&["--image-pull-policy", "IfNotPresent"]).unwrap();
        assert_eq!(args.image_pull_policy, Some(ImagePullPolicy::IfNotPresent));
        let args = deploy_args(&["--image-pull-policy", "always"]).unwrap();
        assert_eq!(args.image_pull_policy, Some(ImagePullPolicy::Always));
        assert!(deploy_args(&["--image-pull-policy", "Sometimes"]).is_err());
        // Without the flag, the policy follows the image's tag.
        let manifests = printed(&["--image", "gadget-node:latest"]);
        assert_eq!(
            container(&manifests).image_pull_policy.as_deref(),
            Some("Always")
        );
    }

    #[test]
    fn node_selector_flag() {
        let manifests = printed(&[
            "--node-selector",
            "disktype=ssd",
            "--node-selector",
            "example.com/pool=tracing,zone=a",
        ]);
        let selector = manifests
            .daemon_set
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .node_selector
            .unwrap();
        assert_eq!(
            selector.into_iter().collect::<Vec<_>>(),
            [
                ("disktype".to_string(), "ssd".to_string()),
                ("example.com/pool".to_string(), "tracing".to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("zone".to_string(), "a".to_string()),
            ]
        );
        assert!(deploy_args(&["--node-selector", "novalue"]).is_err());
        let conflicting = deploy_args(&["--node-selector", "a=1,a=2"]).unwrap();
        assert!(conflicting.render_options().is_err());
        let windows = deploy_args(&["--node-selector", "kubernetes.io/os=windows"]).unwrap();
        assert!(print_manifests(&windows, &mut Vec::new()).is_err());
    }

    #[test]
    fn wait_flag() {
        assert!(deploy_args(&["--wait"]).unwrap().wait);
        assert!(
            UndeployCommand::try_parse_from(["undeploy", "--wait"])
                .unwrap()
                .args
                .wait
        );
    }

    #[test]
    fn timeout_flag() {
        let args = deploy_args(&["--timeout", "5m"]).unwrap();
        assert_eq!(args.timeout, Duration::from_secs(300));
        let undeploy = UndeployCommand::try_parse_from(["undeploy", "--timeout", "1m30s"]).unwrap();
        assert_eq!(undeploy.args.timeout, Duration::from_secs(90));
        assert_eq!(
            UndeployCommand::try_parse_from(["undeploy"])
                .unwrap()
                .args
                .timeout,
            Duration::from_secs(120)
        );
        assert!(deploy_args(&["--timeout", "120"]).is_err());
        assert!(deploy_args(&["--timeout", "0s"]).is_err());
    }

    #[test]
    fn print_only_flag() {
        assert!(deploy_args(&["--print-only"]).unwrap().print_only);
        // Printing is not deploying: waiting for it makes no sense.
        assert!(deploy_args(&["--print-only", "--wait"]).is_err());
    }

    #[test]
    fn print_only_output_keeps_the_comments_that_justify_each_capability() {
        let mut out = Vec::new();
        print_manifests(&deploy_args(&[]).unwrap(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for capability in manifests::ALLOWED_CAPABILITIES {
            let line = text
                .lines()
                .position(|l| l.trim() == format!("- {capability}"))
                .unwrap_or_else(|| panic!("{capability} is not added"));
            let previous = text.lines().nth(line - 1).unwrap();
            assert!(
                previous.trim_start().starts_with('#'),
                "{capability} has no comment"
            );
        }
    }

    #[test]
    fn timeouts_parse_like_kubectl() {
        assert_eq!(parse_timeout("120s").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_timeout("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_timeout("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in [
            "",
            "s",
            "10",
            "10d",
            "1.5m",
            "-1s",
            "m10",
            "99999999999999999999s",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert!(parse_timeout("120").unwrap_err().contains("120s"));
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn object_names_are_kubectls() {
        assert_eq!(object_name::<Namespace>("gadget"), "namespace/gadget");
        assert_eq!(
            object_name::<DaemonSet>("gadget-node"),
            "daemonset.apps/gadget-node"
        );
        assert_eq!(
            object_name::<ClusterRole>("gadget-node"),
            "clusterrole.rbac.authorization.k8s.io/gadget-node"
        );
    }

    #[test]
    fn apply_outcome_from_resource_versions() {
        assert_eq!(
            ApplyOutcome::from_versions(None, Some("5")),
            ApplyOutcome::Created
        );
        assert_eq!(
            ApplyOutcome::from_versions(Some("5"), Some("5")),
            ApplyOutcome::Unchanged
        );
        assert_eq!(
            ApplyOutcome::from_versions(Some("5"), Some("6")),
            ApplyOutcome::Configured
        );
    }

    #[test]
    fn progress_line_names_the_nodes_still_waiting() {
        let status = RolloutStatus {
            observed: true,
            desired: 3,
            ready: 1,
            updated: 3,
        };
        let running = ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        };
        let pods = [
            pod(
                Some("node-c"),
                with_container(waiting("ContainerCreating", ""), false, 0),
            ),
            pod(Some("node-a"), with_container(running, true, 0)),
            pod(
                Some("node-b"),
                with_container(waiting("ImagePullBackOff", "pull failed"), false, 0),
            ),
        ];
        assert_eq!(
            progress_line(&status, &pods),
            "1/3 gadget pods ready, 3 up to date; waiting for node-b: ImagePullBackOff, node-c: ContainerCreating"
        );
    }

    #[test]
    fn progress_line_caps_the_nodes_it_names() {
        let status = RolloutStatus {
            observed: true,
            desired: 20,
            ready: 0,
            updated: 20,
        };
        let pods: Vec<Pod> = (0..20)
            .map(|i| {
                pod(
                    Some(&format!("node-{i:02}")),
                    with_container(waiting("ContainerCreating", ""), false, 0),
                )
            })
            .collect();
        let line = progress_line(&status, &pods);
        assert!(line.ends_with("and 12 more"), "{line}");
    }

    #[test]
    fn pod_report_says_why() {
        let pulling = pod(
            Some("node-b"),
            with_container(
                waiting("ErrImagePull", "failed to pull image \"x\": not found"),
                false,
                0,
            ),
        );
        let report = pod_report(&pulling);
        assert_eq!(report[0], "pod gadget-node-x on node-b: ErrImagePull");
        assert!(
            report.contains(
                &"  container gadget-node: ErrImagePull: failed to pull image \"x\": not found"
                    .to_string()
            ),
            "{report:?}"
        );
        assert!(
            report
                .iter()
                .any(|l| l.starts_with("  condition Ready=False: ContainersNotReady")),
            "{report:?}"
        );
    }

    #[test]
    fn namespace_report_shows_why_deletion_is_stuck() {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some("gadget".into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::NamespaceStatus {
                phase: Some("Terminating".into()),
                conditions: Some(vec![k8s_openapi::api::core::v1::NamespaceCondition {
                    type_: "NamespaceFinalizersRemaining".into(),
                    status: "True".into(),
                    message: Some("Some content in the namespace has finalizers remaining".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        };
        assert_eq!(
            namespace_report(&namespace),
            [
                "namespace gadget: Terminating",
                "  NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining"
            ]
        );
    }
}
