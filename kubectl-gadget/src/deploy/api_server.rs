//! The API server deploy and undeploy talk to, and how they name the objects
//! they touch in their output and errors.

use std::fmt::Display;

use kube::Resource;

use crate::api_error::ApiError;

/// The API server deploy and undeploy talk to: the client, and the URL it
/// was built for (`kube::Client` does not expose it, and errors name it).
#[derive(Clone, Copy)]
pub(super) struct ApiServer<'a> {
    pub(super) client: &'a kube::Client,
    pub(super) url: &'a str,
}

impl<'a> ApiServer<'a> {
    /// Maps the kube error of doing `action` to an [`ApiError`].
    pub(super) fn error(self, action: impl Display) -> impl FnOnce(kube::Error) -> ApiError + 'a {
        let action = action.to_string();
        move |err| ApiError::from_kube(&err, &action, Some(self.url))
    }
}

/// `namespace/kubectl-gadget`, `daemonset.apps/gadget-node`: kubectl's way of naming
/// objects in its output.
pub(super) fn object_name<K: Resource<DynamicType = ()>>(name: &str) -> String {
    let kind = K::kind(&()).to_lowercase();
    match K::group(&()).as_ref() {
        "" => format!("{kind}/{name}"),
        group => format!("{kind}.{group}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::ClusterRole;

    #[test]
    fn object_names_are_kubectls() {
        assert_eq!(
            object_name::<Namespace>("kubectl-gadget"),
            "namespace/kubectl-gadget"
        );
        assert_eq!(
            object_name::<DaemonSet>("gadget-node"),
            "daemonset.apps/gadget-node"
        );
        assert_eq!(
            object_name::<ClusterRole>("gadget-node"),
            "clusterrole.rbac.authorization.k8s.io/gadget-node"
        );
    }
}
