//! Strict parsing of the rendered manifests into typed Kubernetes objects:
//! a field the Kubernetes type does not have is an error, not silently
//! dropped.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::Resource as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{ManifestError, NODE_AGENT, TRACE_USER_ROLE};

/// The node side as typed Kubernetes objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// The namespace of the node side.
    pub namespace: Namespace,
    /// The identity the gadget pods run as.
    pub service_account: ServiceAccount,
    /// Read access to pods.
    pub cluster_role: ClusterRole,
    /// Grants the role to the service account.
    pub cluster_role_binding: ClusterRoleBinding,
    /// One gadget-node per Linux node.
    pub daemon_set: DaemonSet,
    /// What people who trace need, bound to no one
    /// ([`TRACE_USER_ROLE`](super::TRACE_USER_ROLE)).
    pub trace_user_role: ClusterRole,
}

/// Parses multi-document YAML into the node side's objects: exactly one of
/// each kind (the two ClusterRoles told apart by name), no other kinds, no
/// fields their types do not have.
pub fn parse(yaml: &str) -> Result<Manifests, ManifestError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(ManifestError::Yaml)?;
    let mut namespace = None;
    let mut service_account = None;
    let mut cluster_role = None;
    let mut cluster_role_binding = None;
    let mut daemon_set = None;
    let mut trace_user_role = None;
    for document in &documents {
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
        match kind {
            "Namespace" => set_once(&mut namespace, typed(document)?)?,
            "ServiceAccount" => set_once(&mut service_account, typed(document)?)?,
            "ClusterRole" => {
                let role: ClusterRole = typed(document)?;
                match role.metadata.name.as_deref() {
                    Some(NODE_AGENT) => set_once(&mut cluster_role, role)?,
                    Some(TRACE_USER_ROLE) => set_once(&mut trace_user_role, role)?,
                    other => {
                        return Err(ManifestError::UnexpectedName {
                            kind: ClusterRole::KIND,
                            name: other.unwrap_or_default().to_string(),
                        })
                    }
                }
            }
            "ClusterRoleBinding" => set_once(&mut cluster_role_binding, typed(document)?)?,
            "DaemonSet" => set_once(&mut daemon_set, typed(document)?)?,
            other => {
                return Err(ManifestError::UnexpectedKind {
                    kind: other.to_string(),
                })
            }
        }
    }
    Ok(Manifests {
        namespace: required(namespace)?,
        service_account: required(service_account)?,
        cluster_role: required(cluster_role)?,
        cluster_role_binding: required(cluster_role_binding)?,
        daemon_set: required(daemon_set)?,
        trace_user_role: required(trace_user_role)?,
    })
}

fn set_once<K: k8s_openapi::Resource>(
    slot: &mut Option<K>,
    object: K,
) -> Result<(), ManifestError> {
    if slot.replace(object).is_some() {
        return Err(ManifestError::Duplicate { kind: K::KIND });
    }
    Ok(())
}

fn required<K: k8s_openapi::Resource>(slot: Option<K>) -> Result<K, ManifestError> {
    slot.ok_or(ManifestError::Missing { kind: K::KIND })
}

/// Deserializes one document into `K`, then serializes it back: anything the
/// round trip loses or changes is a field `K` does not have as written.
fn typed<K>(document: &Value) -> Result<K, ManifestError>
where
    K: k8s_openapi::Resource + DeserializeOwned + Serialize,
{
    let object: K =
        serde_json::from_value(document.clone()).map_err(|source| ManifestError::Schema {
            kind: K::KIND,
            source,
        })?;
    let round_trip = serde_json::to_value(&object).map_err(|source| ManifestError::Schema {
        kind: K::KIND,
        source,
    })?;
    if let Some(path) = first_lost_field(document, &round_trip, String::new()) {
        return Err(ManifestError::UnknownField {
            kind: K::KIND,
            path,
        });
    }
    Ok(object)
}

/// The path of the first value in `written` that `kept` does not have equal.
fn first_lost_field(written: &Value, kept: &Value, path: String) -> Option<String> {
    match (written, kept) {
        (Value::Object(written), Value::Object(kept)) => written.iter().find_map(|(key, value)| {
            let path = format!("{path}.{key}");
            match kept.get(key) {
                Some(kept) => first_lost_field(value, kept, path),
                None => Some(path),
            }
        }),
        (Value::Array(written), Value::Array(kept)) if written.len() == kept.len() => written
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (written, kept))| {
                first_lost_field(written, kept, format!("{path}[{i}]"))
            }),
        (written, kept) if written == kept => None,
        _ => Some(if path.is_empty() {
            ".".to_string()
        } else {
            path
        }),
    }
}

impl Manifests {
    /// The objects as JSON values, in apply order (for printing or generic
    /// handling).
    pub fn to_values(&self) -> Vec<Value> {
        [
            serde_json::to_value(&self.namespace),
            serde_json::to_value(&self.service_account),
            serde_json::to_value(&self.cluster_role),
            serde_json::to_value(&self.cluster_role_binding),
            serde_json::to_value(&self.daemon_set),
            serde_json::to_value(&self.trace_user_role),
        ]
        .into_iter()
        .map(|value| value.expect("k8s-openapi objects always serialize"))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::render::{render, TEMPLATES};
    use crate::manifests::RenderOptions;

    #[test]
    fn misspelled_field_is_an_error() {
        let yaml = render(&RenderOptions::default()).unwrap().replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
        );
        let err = parse(&yaml).unwrap_err();
        match err {
            ManifestError::UnknownField { kind, path } => {
                assert_eq!(kind, "DaemonSet");
                assert!(
                    path.ends_with(".securityContext.readOnlyRootFileSystem"),
                    "{path}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn extra_or_missing_documents_are_errors() {
        let yaml = render(&RenderOptions::default()).unwrap();
        let extra = format!("{yaml}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n");
        assert!(matches!(
            parse(&extra),
            Err(ManifestError::UnexpectedKind { .. })
        ));
        let twice = format!("{yaml}---\n{}", TEMPLATES[0].1);
        assert!(matches!(
            parse(&twice),
            Err(ManifestError::Duplicate { kind: "Namespace" })
        ));
        let without_namespace = yaml.split_once("---\n").unwrap().1;
        assert!(matches!(
            parse(without_namespace),
            Err(ManifestError::Missing { kind: "Namespace" })
        ));
    }

    #[test]
    fn a_cluster_role_of_another_name_is_an_error() {
        let yaml = render(&RenderOptions::default())
            .unwrap()
            .replace("name: kubectl-gadget-tracer", "name: cluster-admin-ish");
        match parse(&yaml).unwrap_err() {
            ManifestError::UnexpectedName { kind, name } => {
                assert_eq!((kind, name.as_str()), ("ClusterRole", "cluster-admin-ish"));
            }
            other => panic!("{other}"),
        }
    }
}
