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

use super::api_server::{object_name, ApiServer};
use super::args::{format_duration, UndeployArgs};
use super::report::{namespace_report, pod_line};
use crate::api_error::ApiError;
use crate::manifests::{MANAGED_SELECTOR, POD_SELECTOR};

/// How often undeploy `--wait` looks whether the pods and namespace are gone.
const DELETION_POLL: Duration = Duration::from_secs(1);

/// `kubectl gadget undeploy`: deletes everything deploy created, found by
/// the [`MANAGED_SELECTOR`] labels: first the DaemonSet (its pods get SIGTERM
/// and detach their programs while their RBAC still exists), then the
/// namespace (which takes the ServiceAccount with it), the ClusterRoleBinding
/// and the ClusterRole. Nothing deployed is not an error. With `--wait`,
/// returns once the pods and the namespace are gone. `server_url` is as for
/// [`deploy`](super::deploy()).
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
                eprintln!("  {}", pod_line(pod));
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
