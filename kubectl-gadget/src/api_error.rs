//! One wording for each failed call to the API server, whichever command made
//! it (`deploy`, `undeploy`, or the check trace and version commands make
//! before contacting the nodes): a kube error, the URL of the API server and
//! what was being done become one line a person can act on.

use std::error::Error as _;

use kube::runtime::watcher;

use gadget_trace::error_line::error_chain;

/// A failed call to the API server, as one line a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// RBAC denied the call.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Who cannot do what, from the API server.
        detail: String,
    },
    /// The API server did not accept the credentials.
    #[error("unauthorized: the API server{} rejected the credentials of this kubeconfig context", at(.server))]
    Unauthorized {
        /// The API server's URL, when known.
        server: Option<String>,
    },
    /// No answer from the API server: connection refused, DNS, TLS, timeout.
    #[error("cannot reach the API server{}: {cause}", at(.server))]
    Unreachable {
        /// The API server's URL, when known.
        server: Option<String>,
        /// What failed, without the layers that only pass it on.
        cause: String,
    },
    /// The credentials could not be obtained (exec plugin, token file).
    #[error("cannot authenticate to the API server{}: {cause}", at(.server))]
    Authentication {
        /// The API server's URL, when known.
        server: Option<String>,
        /// What failed.
        cause: String,
    },
    /// Any other refusal or failure, with the API server's message.
    #[error("cannot {action}: {message}")]
    Api {
        /// What was being done, like `apply daemonset.apps/gadget-node`.
        action: String,
        /// The API server's (or client's) explanation.
        message: String,
    },
}

fn at(server: &Option<String>) -> String {
    server
        .as_deref()
        .map(|url| format!(" at {url}"))
        .unwrap_or_default()
}

impl ApiError {
    /// Maps the kube error of doing `action` (like `apply namespace/kubectl-gadget`)
    /// against the API server at `server`.
    pub fn from_kube(err: &kube::Error, action: &str, server: Option<&str>) -> Self {
        let server = server.map(str::to_string);
        match err {
            kube::Error::Api(status) if status.code == 403 => {
                // "pods is forbidden: User "bob" cannot list resource "pods"
                // in API group "" in the namespace "kubectl-gadget"": the part after
                // "forbidden: " already says who cannot do what.
                let detail = status
                    .message
                    .split_once("is forbidden: ")
                    .map(|(_, who_cannot)| who_cannot.to_string())
                    .unwrap_or_else(|| format!("cannot {action}: {}", status.message));
                ApiError::Forbidden { detail }
            }
            kube::Error::Api(status) if status.code == 401 => ApiError::Unauthorized { server },
            kube::Error::Api(status) => ApiError::Api {
                action: action.to_string(),
                message: if status.message.is_empty() {
                    format!("{} ({})", status.reason, status.code)
                } else {
                    status.message.clone()
                },
            },
            kube::Error::Auth(_) => ApiError::Authentication {
                server,
                cause: cause(err),
            },
            kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::RustlsTls(_)
            | kube::Error::UpgradeConnection(_) => ApiError::Unreachable {
                server,
                cause: cause(err),
            },
            _ => ApiError::Api {
                action: action.to_string(),
                message: cause(err),
            },
        }
    }

    /// Maps the error a watch of `action` ended with.
    pub(crate) fn from_watch(err: watcher::Error, action: &str, server: Option<&str>) -> Self {
        match err {
            watcher::Error::InitialListFailed(err)
            | watcher::Error::WatchStartFailed(err)
            | watcher::Error::WatchFailed(err) => ApiError::from_kube(&err, action, server),
            watcher::Error::WatchError(status) => {
                ApiError::from_kube(&kube::Error::Api(status), action, server)
            }
            other @ watcher::Error::NoResourceVersion => ApiError::Api {
                action: action.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// Whether retrying cannot help: the answer was a clear no.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            ApiError::Forbidden { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::Authentication { .. }
        )
    }
}

/// What went wrong under a kube error, on one line: kube's own wrapper
/// (`ServiceError: ...`) only says which layer passed it on.
fn cause(err: &kube::Error) -> String {
    err.source().map_or_else(|| err.to_string(), error_chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code,
            message: message.into(),
            reason: "Forbidden".into(),
            metadata: None,
            details: None,
        }))
    }

    #[test]
    fn forbidden_is_one_line_naming_who_cannot_do_what() {
        let err = ApiError::from_kube(
            &status_error(
                403,
                "clusterroles.rbac.authorization.k8s.io \"gadget-node\" is forbidden: User \"bob\" cannot patch resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
            ),
            "apply clusterrole.rbac.authorization.k8s.io/gadget-node",
            Some("https://127.0.0.1:6443"),
        );
        assert_eq!(
            err.to_string(),
            "forbidden: User \"bob\" cannot patch resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
        );
        assert!(err.is_final());
    }

    #[test]
    fn other_api_errors_name_the_action() {
        let err = ApiError::from_kube(
            &status_error(
                422,
                "DaemonSet.apps \"gadget-node\" is invalid: spec.template: bad",
            ),
            "apply daemonset.apps/gadget-node",
            None,
        );
        assert_eq!(
            err.to_string(),
            "cannot apply daemonset.apps/gadget-node: DaemonSet.apps \"gadget-node\" is invalid: spec.template: bad"
        );
        assert!(!err.is_final());
        let unauthorized = ApiError::from_kube(
            &status_error(401, "Unauthorized"),
            "x",
            Some("https://h:6443"),
        );
        assert_eq!(
            unauthorized.to_string(),
            "unauthorized: the API server at https://h:6443 rejected the credentials of this kubeconfig context"
        );
    }

    #[test]
    fn connection_errors_name_the_server_and_the_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Connect(#[source] std::io::Error);
        let err = kube::Error::Service(Box::new(Connect(refused)));
        let mapped = ApiError::from_kube(
            &err,
            "apply namespace/kubectl-gadget",
            Some("https://127.0.0.1:6443"),
        );
        assert_eq!(
            mapped.to_string(),
            "cannot reach the API server at https://127.0.0.1:6443: Connection refused (os error 111)"
        );
    }

    /// Regression: the check before a trace and `deploy` worded a 401
    /// differently ("the API server ... refused the kubeconfig's
    /// credentials" against "unauthorized: ...").
    #[test]
    fn connect_and_deploy_word_a_401_alike() {
        let server = "https://h:6443";
        let err = status_error(401, "Unauthorized");
        let from_connect =
            crate::connect::discovery_error(server, "get daemonset gadget-node", &err).to_string();
        let from_deploy = ApiError::from_kube(&err, "apply namespace/kubectl-gadget", Some(server));
        assert_eq!(
            from_connect,
            "unauthorized: the API server at https://h:6443 rejected the credentials of this kubeconfig context"
        );
        assert_eq!(
            from_connect,
            format!("{:#}", anyhow::Error::from(from_deploy))
        );
    }
}
