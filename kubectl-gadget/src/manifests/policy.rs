//! The rules the node side and `undeploy` rely on, checked on the typed
//! objects before anything is applied or printed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    ManifestError, Manifests, ALLOWED_CAPABILITIES, COMMON_LABELS, NAMESPACE, OS_LABEL,
    VERSION_LABEL,
};

/// What the trace users' ClusterRole may grant, as (API group, resource,
/// verbs): finding the gadget pods and opening a port-forward to them.
/// Anything more would be access beyond tracing that a binding made for
/// tracing silently hands out.
const TRACE_USER_GRANTS: [(&str, &str, &[&str]); 3] = [
    ("apps", "daemonsets", &["get"]),
    ("", "pods", &["list"]),
    ("", "pods/portforward", &["get", "create"]),
];

/// The SELinux type the gadget container runs as; why, in
/// `manifests/daemonset.yaml`.
const SELINUX_TYPE: &str = "spc_t";

impl Manifests {
    /// Checks the rules the node side and `undeploy` rely on, so an edit to
    /// a template that breaks one fails the build's tests and every deploy,
    /// instead of reaching a cluster.
    pub fn check(&self) -> Result<(), ManifestError> {
        check_meta::<Namespace>(&self.namespace.metadata, None)?;
        if self.namespace.metadata.name.as_deref() != Some(NAMESPACE) {
            return invalid::<Namespace>(format!("its name must be {NAMESPACE}"));
        }
        check_meta::<ServiceAccount>(&self.service_account.metadata, Some(NAMESPACE))?;
        check_meta::<ClusterRole>(&self.cluster_role.metadata, None)?;
        check_meta::<ClusterRoleBinding>(&self.cluster_role_binding.metadata, None)?;
        check_meta::<DaemonSet>(&self.daemon_set.metadata, Some(NAMESPACE))?;
        check_meta::<ClusterRole>(&self.trace_user_role.metadata, None)?;
        self.check_role()?;
        self.check_trace_user_role()?;
        self.check_binding()?;
        self.check_daemon_set()
    }

    fn check_role(&self) -> Result<(), ManifestError> {
        for rule in self.cluster_role.rules.iter().flatten() {
            let read_only = rule
                .verbs
                .iter()
                .all(|verb| matches!(verb.as_str(), "get" | "list" | "watch"));
            let pods_only = rule.api_groups.as_deref() == Some(&["".to_string()][..])
                && rule.resources.as_deref() == Some(&["pods".to_string()][..]);
            if !read_only || !pods_only || rule.resource_names.is_some() {
                return invalid::<ClusterRole>("it may only get, list and watch pods".to_string());
            }
        }
        Ok(())
    }

    fn check_trace_user_role(&self) -> Result<(), ManifestError> {
        for rule in self.trace_user_role.rules.iter().flatten() {
            let granted = match (rule.api_groups.as_deref(), rule.resources.as_deref()) {
                (Some([group]), Some([resource])) => TRACE_USER_GRANTS
                    .iter()
                    .find(|(g, r, _)| g == group && r == resource),
                _ => None,
            };
            let within = granted.is_some_and(|(_, _, verbs)| {
                rule.verbs.iter().all(|verb| verbs.contains(&verb.as_str()))
            });
            if !within || rule.resource_names.is_some() || rule.non_resource_urls.is_some() {
                return invalid::<ClusterRole>(format!(
                    "the trace users' role may only grant {TRACE_USER_GRANTS:?}"
                ));
            }
        }
        Ok(())
    }

    fn check_binding(&self) -> Result<(), ManifestError> {
        let binding = &self.cluster_role_binding;
        if binding.role_ref.kind != "ClusterRole"
            || Some(&binding.role_ref.name) != self.cluster_role.metadata.name.as_ref()
        {
            return invalid::<ClusterRoleBinding>(
                "it must bind the gadget-node ClusterRole".into(),
            );
        }
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        let binds_the_account = subjects.len() == 1
            && subjects[0].kind == "ServiceAccount"
            && Some(&subjects[0].name) == self.service_account.metadata.name.as_ref()
            && subjects[0].namespace.as_deref() == Some(NAMESPACE);
        if !binds_the_account {
            return invalid::<ClusterRoleBinding>(
                "its only subject must be the gadget-node ServiceAccount".into(),
            );
        }
        Ok(())
    }

    fn check_daemon_set(&self) -> Result<(), ManifestError> {
        let fail = invalid::<DaemonSet>;
        let Some(spec) = &self.daemon_set.spec else {
            return fail("it has no spec".into());
        };
        let labels = self.daemon_set.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(VERSION_LABEL)).is_none() {
            // Without it a later, older client cannot tell it would downgrade.
            return fail(format!("it must carry the label {VERSION_LABEL}"));
        }
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if !has_common_labels(template_labels) {
            return fail("its pod template must carry the common labels".into());
        }
        let selects_template = spec.selector.match_labels.as_ref().is_some_and(|selector| {
            selector
                .iter()
                .all(|(k, v)| template_labels.and_then(|l| l.get(k)) == Some(v))
        });
        if !selects_template {
            return fail("its selector must match its pod template's labels".into());
        }
        let Some(pod) = &spec.template.spec else {
            return fail("its pod template has no spec".into());
        };
        if pod.host_network == Some(true)
            || pod.host_pid == Some(true)
            || pod.host_ipc == Some(true)
        {
            return fail("its pods must not share the host's network, pid or ipc namespace".into());
        }
        if pod.service_account_name.as_ref() != self.service_account.metadata.name.as_ref() {
            return fail("its pods must run as the gadget-node ServiceAccount".into());
        }
        if pod
            .node_selector
            .as_ref()
            .and_then(|s| s.get(OS_LABEL))
            .map(String::as_str)
            != Some("linux")
        {
            return fail(format!("its pods must select {OS_LABEL}=linux nodes"));
        }
        let host_paths: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|volume| volume.host_path.is_some())
            .map(|volume| volume.name.as_str())
            .collect();
        for container in &pod.containers {
            let security = container.security_context.as_ref();
            if security.and_then(|s| s.privileged) == Some(true) {
                return fail(format!(
                    "container {} must not be privileged",
                    container.name
                ));
            }
            if security.and_then(|s| s.read_only_root_filesystem) != Some(true) {
                return fail(format!(
                    "container {} must have a read-only root filesystem",
                    container.name
                ));
            }
            let selinux = security.and_then(|s| s.se_linux_options.as_ref());
            let selinux_type_only = selinux.is_some_and(|options| {
                options.type_.as_deref() == Some(SELINUX_TYPE)
                    && options.user.is_none()
                    && options.role.is_none()
                    && options.level.is_none()
            });
            if !selinux_type_only {
                return fail(format!(
                    "container {} must set the SELinux type {SELINUX_TYPE} and nothing else of seLinuxOptions",
                    container.name
                ));
            }
            let apparmor = security.and_then(|s| s.app_armor_profile.as_ref());
            if apparmor.map(|profile| profile.type_.as_str()) != Some("Unconfined") {
                return fail(format!(
                    "container {} must have the AppArmor profile Unconfined",
                    container.name
                ));
            }
            let capabilities = security.and_then(|s| s.capabilities.as_ref());
            let drops_all = capabilities
                .and_then(|c| c.drop.as_ref())
                .is_some_and(|drop| drop.iter().any(|c| c == "ALL"));
            if !drops_all {
                return fail(format!(
                    "container {} must drop ALL capabilities",
                    container.name
                ));
            }
            if let Some(extra) = capabilities
                .and_then(|c| c.add.as_ref())
                .into_iter()
                .flatten()
                .find(|c| !ALLOWED_CAPABILITIES.contains(&c.as_str()))
            {
                return fail(format!(
                    "container {} adds {extra}, which is not among {ALLOWED_CAPABILITIES:?}",
                    container.name
                ));
            }
            for mount in container.volume_mounts.iter().flatten() {
                if host_paths.contains(&mount.name.as_str()) && mount.read_only != Some(true) {
                    return fail(format!(
                        "host path volume {} must be mounted read-only",
                        mount.name
                    ));
                }
            }
            let node_name_from_downward_api = container.env.iter().flatten().any(|var| {
                var.name == "NODE_NAME"
                    && var
                        .value_from
                        .as_ref()
                        .and_then(|from| from.field_ref.as_ref())
                        .is_some_and(|field| field.field_path == "spec.nodeName")
            });
            if !node_name_from_downward_api {
                return fail(format!(
                    "container {} must get NODE_NAME from spec.nodeName",
                    container.name
                ));
            }
        }
        Ok(())
    }
}

fn invalid<K: k8s_openapi::Resource>(rule: String) -> Result<(), ManifestError> {
    Err(ManifestError::Invalid {
        kind: K::KIND,
        rule,
    })
}

fn has_common_labels(labels: Option<&BTreeMap<String, String>>) -> bool {
    COMMON_LABELS
        .iter()
        .all(|(key, value)| labels.and_then(|l| l.get(*key)).map(String::as_str) == Some(*value))
}

/// Every object carries the common labels (`undeploy` finds them by label)
/// and namespaced ones live in [`NAMESPACE`].
fn check_meta<K: k8s_openapi::Resource>(
    meta: &ObjectMeta,
    namespace: Option<&str>,
) -> Result<(), ManifestError> {
    if !has_common_labels(meta.labels.as_ref()) {
        return invalid::<K>(format!("it must carry the labels {COMMON_LABELS:?}"));
    }
    if meta.namespace.as_deref() != namespace {
        return invalid::<K>(format!("its namespace must be {namespace:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::{build, RenderOptions};

    fn pod_spec_mut(manifests: &mut Manifests) -> &mut k8s_openapi::api::core::v1::PodSpec {
        manifests
            .daemon_set
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
    }

    fn security_context_mut(
        manifests: &mut Manifests,
    ) -> &mut k8s_openapi::api::core::v1::SecurityContext {
        pod_spec_mut(manifests).containers[0]
            .security_context
            .as_mut()
            .unwrap()
    }

    #[test]
    fn checks_refuse_a_privileged_or_host_namespace_pod() {
        let base = build(&RenderOptions::default()).unwrap();
        let mut privileged = base.clone();
        security_context_mut(&mut privileged).privileged = Some(true);
        assert!(privileged.check().is_err());

        let mut host_pid = base.clone();
        pod_spec_mut(&mut host_pid).host_pid = Some(true);
        assert!(host_pid.check().is_err());

        let mut sys_admin = base.clone();
        security_context_mut(&mut sys_admin)
            .capabilities
            .as_mut()
            .unwrap()
            .add
            .as_mut()
            .unwrap()
            .push("SYS_ADMIN".into());
        assert!(sys_admin.check().is_err());

        let mut writable_role = base;
        writable_role.cluster_role.rules.as_mut().unwrap()[0]
            .verbs
            .push("delete".into());
        assert!(writable_role.check().is_err());
    }

    fn rule_error(manifests: &Manifests) -> String {
        match manifests.check() {
            Err(ManifestError::Invalid { rule, .. }) => rule,
            other => panic!("expected a broken rule, got {other:?}"),
        }
    }

    #[test]
    fn shipped_manifests_pass_their_checks() {
        build(&RenderOptions::default()).unwrap().check().unwrap();
    }

    #[test]
    fn checks_require_selinux_type_spc_t_and_nothing_else() {
        let base = build(&RenderOptions::default()).unwrap();
        let options = security_context_mut(&mut base.clone())
            .se_linux_options
            .clone()
            .unwrap();
        assert_eq!(options.type_.as_deref(), Some("spc_t"));

        let mut without = base.clone();
        security_context_mut(&mut without).se_linux_options = None;
        assert!(rule_error(&without).contains("SELinux type spc_t"));

        let mut container_t = base.clone();
        security_context_mut(&mut container_t)
            .se_linux_options
            .as_mut()
            .unwrap()
            .type_ = Some("container_t".into());
        assert!(rule_error(&container_t).contains("SELinux type spc_t"));

        // A level would pin the pod to one MCS category; a user or role
        // would widen it beyond the runtime's: only the type is the pod's.
        let mut with_level = base;
        security_context_mut(&mut with_level)
            .se_linux_options
            .as_mut()
            .unwrap()
            .level = Some("s0:c1,c2".into());
        assert!(rule_error(&with_level).contains("nothing else"));
    }

    #[test]
    fn checks_require_apparmor_unconfined() {
        let base = build(&RenderOptions::default()).unwrap();
        let mut without = base.clone();
        security_context_mut(&mut without).app_armor_profile = None;
        assert!(rule_error(&without).contains("AppArmor profile Unconfined"));

        let mut runtime_default = base;
        security_context_mut(&mut runtime_default)
            .app_armor_profile
            .as_mut()
            .unwrap()
            .type_ = "RuntimeDefault".into();
        assert!(rule_error(&runtime_default).contains("AppArmor profile Unconfined"));
    }

    #[test]
    fn checks_require_the_version_label_on_the_daemon_set() {
        let mut manifests = build(&RenderOptions::default()).unwrap();
        let labels = manifests.daemon_set.metadata.labels.as_mut().unwrap();
        assert_eq!(
            labels.get(VERSION_LABEL).map(String::as_str),
            Some(crate::version::CLIENT_VERSION)
        );
        labels.remove(VERSION_LABEL);
        assert!(rule_error(&manifests).contains(VERSION_LABEL));
    }

    #[test]
    fn trace_user_role_grants_only_finding_and_forwarding_to_gadget_pods() {
        let base = build(&RenderOptions::default()).unwrap();
        let granted: Vec<(String, String, Vec<String>)> = base
            .trace_user_role
            .rules
            .clone()
            .unwrap()
            .into_iter()
            .map(|rule| {
                (
                    rule.api_groups.unwrap().join(","),
                    rule.resources.unwrap().join(","),
                    rule.verbs,
                )
            })
            .collect();
        let expected: Vec<(String, String, Vec<String>)> = TRACE_USER_GRANTS
            .iter()
            .map(|(group, resource, verbs)| {
                (
                    group.to_string(),
                    resource.to_string(),
                    verbs.iter().map(|v| v.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(granted, expected);

        // pods/exec would let a trace user run commands in the gadget pod:
        // root with CAP_BPF on every node.
        let mut exec = base.clone();
        exec.trace_user_role.rules.as_mut().unwrap()[2].resources = Some(vec!["pods/exec".into()]);
        assert!(rule_error(&exec).contains("trace users' role"));

        let mut wildcard = base.clone();
        wildcard.trace_user_role.rules.as_mut().unwrap()[1].verbs = vec!["*".into()];
        assert!(rule_error(&wildcard).contains("trace users' role"));

        let mut two_resources = base;
        two_resources.trace_user_role.rules.as_mut().unwrap()[1].resources =
            Some(vec!["pods".into(), "secrets".into()]);
        assert!(rule_error(&two_resources).contains("trace users' role"));
    }
}
