//! What deploy may touch: only objects it made, found by the managed-by
//! label it puts on all of them, and not a newer deployment without
//! `--force`. Checked for every object before the first apply, so that a
//! refusal changes nothing.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::api_server::{object_name, ApiServer};
use super::version_skew::VersionChange;
use crate::manifests::{Manifests, MANAGED_BY, NAMESPACE, VERSION_LABEL};
use crate::version::CLIENT_VERSION;

/// Why deploy will not apply.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// An object of deploy's name exists that deploy did not make.
    #[error(
        "{object} exists but was not created by kubectl gadget deploy (it lacks the label {}={}); \
         deploy does not take over what it did not create: remove it if it is unused, then deploy again",
        MANAGED_BY.0, MANAGED_BY.1
    )]
    NotMadeByDeploy {
        /// The object, as kubectl names it.
        object: String,
    },
    /// A newer gadget-node is deployed.
    #[error(
        "gadget-node {deployed} is deployed, newer than this client ({CLIENT_VERSION}); \
         deploying would downgrade it: use kubectl-gadget {deployed} or later, or pass --force to downgrade"
    )]
    Downgrade {
        /// The deployed version.
        deployed: String,
    },
    /// The deployed version cannot be compared.
    #[error(
        "the deployed gadget-node has the version label {VERSION_LABEL}={label:?}, which is not a version; \
         pass --force to replace it with {CLIENT_VERSION}"
    )]
    UnknownVersion {
        /// The label's value.
        label: String,
    },
}

/// Whether `labels` mark an object as made by deploy.
pub(super) fn made_by_deploy(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}

/// Refuses an existing object (`existing`: its labels) that deploy did not
/// make; `object` names it in the message.
pub(super) fn check_made_by_deploy(
    object: &str,
    existing: Option<&BTreeMap<String, String>>,
) -> Result<(), Refusal> {
    match existing {
        Some(labels) if !made_by_deploy(labels) => Err(Refusal::NotMadeByDeploy {
            object: object.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What replacing the deployed DaemonSet (`None` when there is none) would
/// do to its version, refused when it needs `--force` and `force` is not
/// given.
pub(super) fn check_version(
    deployed: Option<&DaemonSet>,
    force: bool,
) -> Result<VersionChange, Refusal> {
    let label = deployed.map(|ds| ds.labels().get(VERSION_LABEL).map(String::as_str));
    let change = VersionChange::between(label, CLIENT_VERSION);
    if change.needs_force() && !force {
        return Err(match change {
            VersionChange::Downgrade { from } => Refusal::Downgrade { deployed: from },
            VersionChange::Unknown { label } => Refusal::UnknownVersion { label },
            _ => unreachable!("only a downgrade or an unknown version needs --force"),
        });
    }
    Ok(change)
}

/// The line deploy prints about versions before it applies.
pub(super) fn version_line(change: &VersionChange) -> String {
    let what = match change {
        VersionChange::Fresh => "not deployed before".to_string(),
        VersionChange::Unlabelled => {
            "replacing a deployment of an earlier version, which did not record it".to_string()
        }
        VersionChange::Same => "the same version is deployed".to_string(),
        VersionChange::Upgrade { from } => format!("upgrading from {from}"),
        VersionChange::Downgrade { from } => format!("downgrading from {from} (--force)"),
        VersionChange::Unknown { label } => {
            format!("replacing version label {label:?} (--force)")
        }
    };
    format!("deploying gadget-node {CLIENT_VERSION}: {what}")
}

/// Reads every object deploy would apply and refuses when one exists that
/// deploy did not make, or when the deployed version is newer and not
/// `force`; returns what the apply does to the version.
pub(super) async fn check_cluster(
    cluster: ApiServer<'_>,
    manifests: &Manifests,
    force: bool,
) -> anyhow::Result<VersionChange> {
    let client = cluster.client;
    existing(
        cluster,
        Api::<Namespace>::all(client.clone()),
        &manifests.namespace,
    )
    .await?;
    existing(
        cluster,
        Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        &manifests.service_account,
    )
    .await?;
    existing(
        cluster,
        Api::<ClusterRole>::all(client.clone()),
        &manifests.cluster_role,
    )
    .await?;
    existing(
        cluster,
        Api::<ClusterRoleBinding>::all(client.clone()),
        &manifests.cluster_role_binding,
    )
    .await?;
    existing(
        cluster,
        Api::<ClusterRole>::all(client.clone()),
        &manifests.trace_user_role,
    )
    .await?;
    let daemon_set = existing(
        cluster,
        Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
        &manifests.daemon_set,
    )
    .await?;
    Ok(check_version(daemon_set.as_ref(), force)?)
}

/// The object of `object`'s name as it is in the cluster, refused when
/// deploy did not make it.
async fn existing<K>(cluster: ApiServer<'_>, api: Api<K>, object: &K) -> anyhow::Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let name = object.name_any();
    let display = display_name(object);
    let found = api
        .get_opt(&name)
        .await
        .map_err(cluster.error(format!("get {display}")))?;
    check_made_by_deploy(&display, found.as_ref().map(|o| o.labels()))?;
    Ok(found)
}

/// `daemonset.apps/gadget-node in namespace kubectl-gadget`, or kubectl's
/// name alone for a cluster-wide object.
pub(super) fn display_name<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let name = object_name::<K>(&object.name_any());
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{name} in namespace {namespace}"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::{build, RenderOptions};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Regression: deploy relabelled and took over an existing namespace
    /// (Inspektor Gadget's `gadget`) with a forced apply.
    #[test]
    fn an_existing_object_without_the_managed_by_label_is_refused_by_name() {
        let err = check_made_by_deploy(
            "namespace/kubectl-gadget",
            Some(&labels(&[("team", "platform")])),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "namespace/kubectl-gadget exists but was not created by kubectl gadget deploy \
             (it lacks the label app.kubernetes.io/managed-by=kubectl-gadget); deploy does not \
             take over what it did not create: remove it if it is unused, then deploy again"
        );
        // Another manager's label value is not deploy's either.
        assert!(check_made_by_deploy(
            "clusterrole.rbac.authorization.k8s.io/gadget-node",
            Some(&labels(&[("app.kubernetes.io/managed-by", "Helm")])),
        )
        .is_err());
    }

    #[test]
    fn an_absent_object_or_one_deploy_made_is_fine() {
        check_made_by_deploy("namespace/kubectl-gadget", None).unwrap();
        check_made_by_deploy(
            "namespace/kubectl-gadget",
            Some(&labels(&[(
                "app.kubernetes.io/managed-by",
                "kubectl-gadget",
            )])),
        )
        .unwrap();
        // Everything deploy applies carries the label it is judged by.
        for value in build(&RenderOptions::default()).unwrap().to_values() {
            let object_labels: BTreeMap<String, String> =
                serde_json::from_value(value["metadata"]["labels"].clone()).unwrap();
            assert!(made_by_deploy(&object_labels), "{value}");
        }
    }

    fn daemon_set_of_version(version: Option<&str>) -> DaemonSet {
        let mut daemon_set = build(&RenderOptions::default()).unwrap().daemon_set;
        let labels = daemon_set.metadata.labels.as_mut().unwrap();
        match version {
            Some(version) => labels.insert(VERSION_LABEL.into(), version.into()),
            None => labels.remove(VERSION_LABEL),
        };
        daemon_set
    }

    /// Regression: an older client silently downgraded the DaemonSet
    /// through its forced apply.
    #[test]
    fn a_newer_deployed_version_is_refused_unless_forced() {
        let newer = daemon_set_of_version(Some("99.0.0"));
        let err = check_version(Some(&newer), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "gadget-node 99.0.0 is deployed, newer than this client ({CLIENT_VERSION}); \
                 deploying would downgrade it: use kubectl-gadget 99.0.0 or later, or pass --force to downgrade"
            )
        );
        let forced = check_version(Some(&newer), true).unwrap();
        assert_eq!(
            version_line(&forced),
            format!("deploying gadget-node {CLIENT_VERSION}: downgrading from 99.0.0 (--force)")
        );
        let garbage = daemon_set_of_version(Some("nightly"));
        assert!(matches!(
            check_version(Some(&garbage), false),
            Err(Refusal::UnknownVersion { .. })
        ));
        check_version(Some(&garbage), true).unwrap();
    }

    #[test]
    fn the_version_line_says_what_deploy_replaces() {
        let line = |daemon_set: Option<DaemonSet>| {
            version_line(&check_version(daemon_set.as_ref(), false).unwrap())
        };
        assert_eq!(
            line(None),
            format!("deploying gadget-node {CLIENT_VERSION}: not deployed before")
        );
        assert_eq!(
            line(Some(daemon_set_of_version(Some(CLIENT_VERSION)))),
            format!("deploying gadget-node {CLIENT_VERSION}: the same version is deployed")
        );
        assert_eq!(
            line(Some(daemon_set_of_version(Some("0.0.1")))),
            format!("deploying gadget-node {CLIENT_VERSION}: upgrading from 0.0.1")
        );
        assert!(line(Some(daemon_set_of_version(None))).contains("did not record it"));
    }

    #[test]
    fn namespaced_objects_are_named_with_their_namespace() {
        let manifests = build(&RenderOptions::default()).unwrap();
        assert_eq!(
            display_name(&manifests.daemon_set),
            "daemonset.apps/gadget-node in namespace kubectl-gadget"
        );
        assert_eq!(
            display_name(&manifests.namespace),
            "namespace/kubectl-gadget"
        );
    }
}
