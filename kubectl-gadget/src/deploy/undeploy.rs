//! `kubectl gadget undeploy`: deleting what deploy created and, with
//! `--wait`, waiting until it is gone.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::api_server::ApiServer;
use super::args::{format_duration, UndeployArgs};
use super::ownership::{display_name, made_by_deploy};
use super::report::{namespace_report, pod_line};
use crate::api_error::ApiError;
use crate::manifests::{self, RenderOptions, MANAGED_SELECTOR, NAMESPACE, POD_SELECTOR};
use crate::terminal::escaped;

/// How often undeploy `--wait` looks whether the pods and namespace are gone.
const DELETION_POLL: Duration = Duration::from_secs(1);

/// `kubectl gadget undeploy`: deletes the objects deploy creates, each only
/// when it carries deploy's managed-by label (deploy refuses to take over
/// an object without it, so an unlabelled one is someone else's and stays):
/// first the DaemonSet (its pods get SIGTERM and detach their programs
/// while their RBAC still exists), then the namespace (which takes the
/// ServiceAccount with it), the ClusterRoleBinding and the ClusterRoles.
/// Nothing deployed is not an error. With `--wait`, returns once the pods
/// and the namespace are gone. `server_url` is as for
/// [`deploy`](super::deploy()).
///
/// Objects are found by name, not by label alone: an earlier version
/// deployed to the namespace `gadget` (Inspektor Gadget's too) and put its
/// labels on it, so a labelled namespace of another name is named in a note
/// and left alone.
pub async fn undeploy(
    client: &kube::Client,
    server_url: &str,
    args: &UndeployArgs,
) -> anyhow::Result<()> {
    let cluster = ApiServer {
        client,
        url: server_url,
    };
    // Only the objects' names and kinds matter here, which no option changes.
    let objects = manifests::build(&RenderOptions::default())?;
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE);
    let daemon_set_deleted =
        delete_if_made_by_deploy(cluster, &daemon_sets, &objects.daemon_set).await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace_deleted =
        delete_if_made_by_deploy(cluster, &namespaces, &objects.namespace).await?;
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    let binding_deleted =
        delete_if_made_by_deploy(cluster, &bindings, &objects.cluster_role_binding).await?;
    let roles = Api::<ClusterRole>::all(client.clone());
    let mut roles_deleted = false;
    for role in [&objects.cluster_role, &objects.trace_user_role] {
        roles_deleted |= delete_if_made_by_deploy(cluster, &roles, role).await?;
    }
    let legacy = labelled_namespaces(cluster, &namespaces).await?;
    for namespace in legacy.iter().filter(|name| name.as_str() != NAMESPACE) {
        let namespace = escaped(namespace);
        println!(
            "note: namespace {namespace} carries kubectl-gadget's labels from an earlier version, \
             which deployed there; it may also be another tool's (Inspektor Gadget uses gadget), \
             so undeploy leaves it: delete what is yours in it with \
             \"kubectl delete daemonset,serviceaccount -n {namespace} -l {MANAGED_SELECTOR}\""
        );
    }
    if !daemon_set_deleted && !namespace_deleted && !binding_deleted && !roles_deleted {
        println!("nothing to undeploy");
        return Ok(());
    }
    if args.wait && namespace_deleted {
        wait_until_gone(cluster, NAMESPACE, args.timeout).await?;
    }
    Ok(())
}

/// Deletes the object of `object`'s name if it exists and deploy made it;
/// says what it did. Whether it deleted it.
async fn delete_if_made_by_deploy<K>(
    cluster: ApiServer<'_>,
    api: &Api<K>,
    object: &K,
) -> Result<bool, ApiError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let name = object.name_any();
    let display = display_name(object);
    let found = api
        .get_opt(&name)
        .await
        .map_err(cluster.error(format!("get {display}")))?;
    let Some(found) = found else {
        return Ok(false);
    };
    if !made_by_deploy(found.labels()) {
        println!("{display} was not created by kubectl gadget deploy: left as it is");
        return Ok(false);
    }
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {
            println!("{display} deleted");
            Ok(true)
        }
        // Gone already (a concurrent undeploy, or the namespace took it).
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(err) => Err(cluster.error(format!("delete {display}"))(err)),
    }
}

/// The namespaces that carry deploy's labels.
async fn labelled_namespaces(
    cluster: ApiServer<'_>,
    api: &Api<Namespace>,
) -> Result<Vec<String>, ApiError> {
    let list = api
        .list(&ListParams::default().labels(MANAGED_SELECTOR))
        .await
        .map_err(cluster.error("list namespaces"))?;
    Ok(list.items.iter().map(ResourceExt::name_any).collect())
}

/// Polls until no gadget pod is left in `namespace` and the namespace is
/// gone (deleting a namespace finishes after everything in it is deleted).
async fn wait_until_gone(
    cluster: ApiServer<'_>,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = cluster.client;
    let deadline = Instant::now() + timeout;
    let pods_params = ListParams::default().labels(POD_SELECTOR);
    let namespace_api = Api::<Namespace>::all(client.clone());
    let pod_api = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut last_line = String::new();
    loop {
        let pods = pod_api
            .list(&pods_params)
            .await
            .map_err(cluster.error("list the gadget pods"))?
            .items;
        let remaining = namespace_api
            .get_opt(namespace)
            .await
            .map_err(cluster.error(format!("get namespace {namespace}")))?;
        if pods.is_empty() && remaining.is_none() {
            println!("gadget-node is removed");
            return Ok(());
        }
        let line = if pods.is_empty() {
            format!("waiting for namespace {namespace} to be removed")
        } else {
            format!("waiting for {} gadget pods to stop", pods.len())
        };
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if Instant::now() >= deadline {
            for pod in &pods {
                eprintln!("  {}", pod_line(pod));
            }
            for line in remaining.iter().flat_map(namespace_report) {
                eprintln!("  {line}");
            }
            let mut left = Vec::new();
            if !pods.is_empty() {
                left.push(format!("{} gadget pods still stopping", pods.len()));
            }
            if remaining.is_some() {
                left.push(format!("namespace {namespace} still being removed"));
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
