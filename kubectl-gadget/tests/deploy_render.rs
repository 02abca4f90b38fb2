//! `kubectl gadget deploy --print-only`: what it prints is valid
//! multi-document YAML that parses into the expected Kubernetes objects,
//! with the fields the node side depends on.

use std::collections::BTreeMap;

use clap::Parser;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kubectl_gadget::deploy::{print_manifests, DeployArgs};
use kubectl_gadget::manifests::{
    self, COMMON_LABELS, GRPC_PORT, NAMESPACE, NODE_AGENT, POD_SELECTOR, TRACE_USER_ROLE,
    VERSION_LABEL,
};
use serde::Deserialize;

/// `deploy` as the CLI mounts it.
#[derive(Parser)]
struct Deploy {
    #[command(flatten)]
    args: DeployArgs,
}

fn print_only(flags: &[&str]) -> String {
    let deploy = Deploy::parse_from(std::iter::once("deploy").chain(flags.iter().copied()));
    let mut out = Vec::new();
    print_manifests(&deploy.args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Each document of the output as its own Kubernetes type, in order,
/// independently of the library's parser.
fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(yaml).expect("valid multi-document YAML")
}

fn typed<T: for<'de> Deserialize<'de>>(value: &serde_json::Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

fn labels_ok(labels: &Option<BTreeMap<String, String>>) {
    let labels = labels.as_ref().expect("labels");
    for (key, value) in COMMON_LABELS {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
}

fn pod_spec(daemon_set: &DaemonSet) -> &PodSpec {
    daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn node_container(daemon_set: &DaemonSet) -> &Container {
    let containers = &pod_spec(daemon_set).containers;
    assert_eq!(containers.len(), 1);
    &containers[0]
}

#[test]
fn print_only_output_is_the_six_expected_objects_in_apply_order() {
    let yaml = print_only(&[]);
    let docs = documents(&yaml);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "ClusterRole"
        ]
    );

    let namespace: Namespace = typed(&docs[0]);
    assert_eq!(namespace.metadata.name.as_deref(), Some(NAMESPACE));
    labels_ok(&namespace.metadata.labels);
    assert_eq!(
        namespace.metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    let account: ServiceAccount = typed(&docs[1]);
    assert_eq!(account.metadata.name.as_deref(), Some(NODE_AGENT));
    assert_eq!(account.metadata.namespace.as_deref(), Some(NAMESPACE));
    labels_ok(&account.metadata.labels);

    let role: ClusterRole = typed(&docs[2]);
    labels_ok(&role.metadata.labels);
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1, "pods only, no nodes");
    assert_eq!(rules[0].api_groups.as_deref(), Some(&["".to_string()][..]));
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "list", "watch"]);

    let binding: ClusterRoleBinding = typed(&docs[3]);
    labels_ok(&binding.metadata.labels);
    assert_eq!(binding.role_ref.name, NODE_AGENT);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", NODE_AGENT, Some(NAMESPACE))
    );

    let daemon_set: DaemonSet = typed(&docs[4]);
    assert_eq!(daemon_set.metadata.name.as_deref(), Some(NODE_AGENT));
    assert_eq!(daemon_set.metadata.namespace.as_deref(), Some(NAMESPACE));
    labels_ok(&daemon_set.metadata.labels);
    labels_ok(
        &daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels,
    );

    assert_eq!(
        daemon_set.metadata.labels.as_ref().unwrap()[VERSION_LABEL],
        env!("CARGO_PKG_VERSION")
    );

    // For people who trace, bound to no one (the only binding is the
    // node's, checked above).
    let trace_user_role: ClusterRole = typed(&docs[5]);
    assert_eq!(
        trace_user_role.metadata.name.as_deref(),
        Some(TRACE_USER_ROLE)
    );
    labels_ok(&trace_user_role.metadata.labels);

    // The library's parser and checks agree with the plain parse above.
    let parsed = manifests::parse(&yaml).unwrap();
    parsed.check().unwrap();
    assert_eq!(parsed.daemon_set, daemon_set);
    assert_eq!(parsed.trace_user_role, trace_user_role);
}

#[test]
fn daemon_set_is_least_privilege() {
    let daemon_set: DaemonSet = typed(&documents(&print_only(&[]))[4]);
    let pod = pod_spec(&daemon_set);
    assert_eq!(pod.host_network, Some(false));
    assert_eq!(pod.host_pid, Some(false));
    assert_eq!(pod.host_ipc, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some(NODE_AGENT));
    assert_eq!(pod.priority_class_name, None);

    let security = node_container(&daemon_set)
        .security_context
        .clone()
        .unwrap();
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_user, Some(0));
    let capabilities = security.capabilities.unwrap();
    assert_eq!(capabilities.drop.unwrap(), ["ALL"]);
    // --print-only sees no node, so it keeps SYS_RESOURCE; deploy leaves
    // it out when every selected node runs Linux 5.11 or later.
    assert_eq!(
        capabilities.add.unwrap(),
        ["BPF", "PERFMON", "SYS_RESOURCE"]
    );
    assert_eq!(security.seccomp_profile.unwrap().type_, "Unconfined");
    // SELinux and AppArmor nodes confine a default container more than
    // bpf(2), perf_event_open(2) and tracefs allow (daemonset.yaml says why).
    let selinux = security.se_linux_options.unwrap();
    assert_eq!(
        (
            selinux.type_.as_deref(),
            selinux.user,
            selinux.role,
            selinux.level
        ),
        (Some("spc_t"), None, None, None)
    );
    assert_eq!(security.app_armor_profile.unwrap().type_, "Unconfined");

    // Read-only host mounts of exactly cgroup2, BTF and tracefs, each at the
    // path the node looks for it.
    let mounts: Vec<(String, String, Option<bool>)> = node_container(&daemon_set)
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "cgroup".to_string(),
                "/sys/fs/cgroup".to_string(),
                Some(true)
            ),
            ("btf".to_string(), "/sys/kernel/btf".to_string(), Some(true)),
            (
                "tracefs".to_string(),
                "/sys/kernel/tracing".to_string(),
                Some(true)
            ),
        ]
    );
    let host_paths: Vec<String> = pod
        .volumes
        .clone()
        .unwrap()
        .into_iter()
        .map(|v| v.host_path.expect("only host paths").path)
        .collect();
    assert_eq!(
        host_paths,
        ["/sys/fs/cgroup", "/sys/kernel/btf", "/sys/kernel/tracing"]
    );
}

#[test]
fn daemon_set_runs_the_node_with_its_identity_probes_and_limits() {
    let daemon_set: DaemonSet = typed(&documents(&print_only(&[]))[4]);
    let pod = pod_spec(&daemon_set);
    let container = node_container(&daemon_set);
    let listen = format!("tcp://127.0.0.1:{GRPC_PORT}");

    assert_eq!(
        container.command.as_deref(),
        Some(&["/usr/bin/gadget-node".to_string()][..])
    );
    assert_eq!(
        container.args.clone().unwrap(),
        ["serve", "--listen", listen.as_str()]
    );

    let env = container.env.clone().unwrap();
    let node_name = env.iter().find(|v| v.name == "NODE_NAME").unwrap();
    assert_eq!(
        node_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );

    let port = &container.ports.clone().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("grpc"), i32::from(GRPC_PORT))
    );

    let health = [
        "/usr/bin/gadget-node",
        "health",
        "--listen",
        listen.as_str(),
    ];
    let liveness = [&health[..], &["--liveness"]].concat();
    for (probe, expected) in [
        (&container.readiness_probe, &health[..]),
        (&container.liveness_probe, &liveness[..]),
    ] {
        let command = probe
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap()
            .command
            .clone()
            .unwrap();
        assert_eq!(command, expected);
    }

    let resources = container.resources.clone().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().unwrap().contains_key(key),
            "request {key}"
        );
        assert!(
            resources.limits.as_ref().unwrap().contains_key(key),
            "limit {key}"
        );
    }

    assert_eq!(
        pod.tolerations.clone().unwrap()[0].operator.as_deref(),
        Some("Exists")
    );
    assert_eq!(
        pod.node_selector.clone().unwrap()["kubernetes.io/os"],
        "linux"
    );
    assert!(pod.termination_grace_period_seconds.unwrap() >= 10);

    // Clients find the pods by POD_SELECTOR: the template must carry it.
    let (key, value) = POD_SELECTOR.split_once('=').unwrap();
    let template_labels = daemon_set
        .spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(template_labels[key], value);
}

#[test]
fn print_only_renders_every_option() {
    let yaml = print_only(&[
        "--image",
        "registry.example.com:5000/gadget-node:test",
        "--image-pull-policy",
        "Never",
        "--node-selector",
        "pool=tracing",
        "--node-selector",
        "example.com/gpu=true",
    ]);
    let daemon_set: DaemonSet = typed(&documents(&yaml)[4]);
    let container = node_container(&daemon_set);
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example.com:5000/gadget-node:test")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod_spec(&daemon_set).node_selector.clone().unwrap(),
        BTreeMap::from([
            ("example.com/gpu".to_string(), "true".to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("pool".to_string(), "tracing".to_string()),
        ])
    );
}
