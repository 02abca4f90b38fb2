//! Pods as the API server lists them.
//!
//! Shared with the library's unit tests (`src/fake_node.rs` includes this
//! file), so it uses nothing but k8s-openapi.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A pod as the API server would list it: one running container.
pub fn pod(
    uid: &str,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    container: &str,
    container_id: &str,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            uid: Some(uid.to_string()),
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: container.to_string(),
                container_id: Some(format!("containerd://{container_id}")),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
