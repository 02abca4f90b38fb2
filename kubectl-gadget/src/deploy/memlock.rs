//! Whether deploy gives the gadget pods CAP_SYS_RESOURCE. Kernels before
//! Linux 5.11 charge BPF memory to RLIMIT_MEMLOCK, which gadget-node must
//! raise (and raising it needs the capability); from 5.11 on the memory
//! cgroup is charged instead and the capability is unused. An unused
//! capability is more privilege than needed, and a container runtime
//! whose own bounding set lacks it (a sandboxed VM) cannot grant it at all:
//! runc fails the pod with "unable to apply caps". So deploy reads the
//! kernel version each selected node's kubelet reports, and adds the
//! capability when one is older than 5.11 or when it cannot tell.

use std::collections::BTreeMap;

use gadget_proto::kernel_version::{KernelVersion, MEMCG_BPF_ACCOUNTING};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::api_server::ApiServer;
use crate::api_error::ApiError;
use crate::manifests::MEMLOCK_CAPABILITY;
use crate::terminal::escaped;

/// Whether the gadget pods get CAP_SYS_RESOURCE, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemlockCapability {
    /// Added: this node runs a kernel before 5.11.
    OldKernel {
        /// The node's name.
        node: String,
        /// Its kernel release, as its kubelet reports it.
        release: String,
    },
    /// Added: this node's kernel version is missing or not a version (KWOK
    /// nodes report none), so it may be older than 5.11.
    UnknownKernel {
        /// The node's name.
        node: String,
        /// What it reports instead, empty when nothing.
        reported: String,
    },
    /// Added: no node matches the node selector yet; one that joins later
    /// may be older than 5.11.
    NoNodes,
    /// Not added: every selected node runs 5.11 or later.
    NotNeeded {
        /// How many nodes are selected.
        nodes: usize,
    },
}

impl MemlockCapability {
    /// Decides for `nodes`, the nodes the DaemonSet runs on. A node with an
    /// older kernel is named in preference to one whose kernel is unknown.
    pub fn for_nodes(nodes: &[Node]) -> Self {
        if nodes.is_empty() {
            return MemlockCapability::NoNodes;
        }
        let kernels = || {
            nodes.iter().map(|node| {
                let release = node
                    .status
                    .as_ref()
                    .and_then(|status| status.node_info.as_ref())
                    .map_or("", |info| info.kernel_version.as_str());
                (node, release, KernelVersion::parse(release))
            })
        };
        if let Some((node, release, _)) = kernels()
            .find(|(_, _, version)| version.is_some_and(KernelVersion::charges_bpf_to_memlock))
        {
            return MemlockCapability::OldKernel {
                node: node.name_any(),
                release: release.to_string(),
            };
        }
        if let Some((node, reported, _)) = kernels().find(|(_, _, version)| version.is_none()) {
            return MemlockCapability::UnknownKernel {
                node: node.name_any(),
                reported: reported.to_string(),
            };
        }
        MemlockCapability::NotNeeded { nodes: nodes.len() }
    }

    /// Whether the DaemonSet adds the capability.
    pub fn is_added(&self) -> bool {
        !matches!(self, MemlockCapability::NotNeeded { .. })
    }

    /// The line deploy prints about it, with the node's name and kernel
    /// escaped for the terminal (both come from the API server).
    pub fn line(&self) -> String {
        let since = MEMCG_BPF_ACCOUNTING.major_minor();
        let memlock = format!("before Linux {since} BPF memory counts against RLIMIT_MEMLOCK");
        let why = match self {
            MemlockCapability::OldKernel { node, release } => format!(
                "added: node {} runs Linux {}, and {memlock}",
                escaped(node),
                escaped(release)
            ),
            MemlockCapability::UnknownKernel { node, reported } if reported.is_empty() => {
                format!(
                    "added: node {} reports no kernel version, and {memlock}",
                    escaped(node)
                )
            }
            MemlockCapability::UnknownKernel { node, reported } => format!(
                "added: node {} reports the kernel version \"{}\", which is not one, and {memlock}",
                escaped(node),
                escaped(reported)
            ),
            MemlockCapability::NoNodes => format!(
                "added: no node matches the node selector yet, and one that joins may run \
                 Linux before {since}, where BPF memory counts against RLIMIT_MEMLOCK"
            ),
            MemlockCapability::NotNeeded { nodes } => format!(
                "not added: {} Linux {since} or later, which charges BPF memory to the \
                 memory cgroup instead of RLIMIT_MEMLOCK",
                match nodes {
                    1 => "the selected node runs".to_string(),
                    n => format!("all {n} selected nodes run"),
                }
            ),
        };
        format!("CAP_{MEMLOCK_CAPABILITY}: {why}")
    }
}

/// The label selector of the nodes a DaemonSet with `node_selector` runs
/// on: every node with all those labels (it tolerates every taint).
fn node_label_selector(node_selector: &BTreeMap<String, String>) -> String {
    node_selector
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Lists the nodes a DaemonSet with `node_selector` runs on and decides.
pub(super) async fn decide(
    cluster: ApiServer<'_>,
    node_selector: &BTreeMap<String, String>,
) -> anyhow::Result<MemlockCapability> {
    let params = ListParams::default().labels(&node_label_selector(node_selector));
    let nodes = Api::<Node>::all(cluster.client.clone())
        .list(&params)
        .await
        .map_err(|err| match cluster.error("list nodes")(err) {
            // Listing nodes is the one thing deploy needs beyond the
            // objects it applies: say why.
            forbidden @ ApiError::Forbidden { .. } => anyhow::anyhow!(
                "{forbidden}; deploy lists the nodes to read their kernel versions \
                 (CAP_{MEMLOCK_CAPABILITY} is only for nodes before Linux {})",
                MEMCG_BPF_ACCOUNTING.major_minor()
            ),
            other => other.into(),
        })?;
    Ok(MemlockCapability::for_nodes(&nodes.items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::RenderOptions;
    use crate::terminal::fixtures::{assert_inert, HOSTILE};
    use gadget_proto::label_selector::LabelSelector;
    use k8s_openapi::api::core::v1::{NodeStatus, NodeSystemInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A node as the API server lists it; `kernel` `None` is a node without
    /// `status.nodeInfo` at all.
    fn node(name: &str, kernel: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: kernel.map(|kernel| NodeStatus {
                node_info: Some(NodeSystemInfo {
                    kernel_version: kernel.into(),
                    ..NodeSystemInfo::default()
                }),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn not_added_when_every_node_runs_5_11_or_later() {
        let decision = MemlockCapability::for_nodes(&[
            node("a", Some("6.18.44-fc-v657")),
            node("b", Some("5.11.0-1-generic")),
            node("c", Some("5.15.0-100-generic")),
        ]);
        assert_eq!(decision, MemlockCapability::NotNeeded { nodes: 3 });
        assert!(!decision.is_added());
        assert_eq!(
            decision.line(),
            "CAP_SYS_RESOURCE: not added: all 3 selected nodes run Linux 5.11 or later, \
             which charges BPF memory to the memory cgroup instead of RLIMIT_MEMLOCK"
        );
        assert_eq!(
            MemlockCapability::for_nodes(&[node("a", Some("6.8.0"))]).line(),
            "CAP_SYS_RESOURCE: not added: the selected node runs Linux 5.11 or later, \
             which charges BPF memory to the memory cgroup instead of RLIMIT_MEMLOCK"
        );
    }

    #[test]
    fn added_when_one_node_runs_an_older_kernel() {
        for old in ["5.10.0-1057-aws", "4.18.0-513.el8.x86_64", "5.8.0"] {
            let decision = MemlockCapability::for_nodes(&[
                node("new", Some("6.18.44-fc-v657")),
                node("old", Some(old)),
            ]);
            assert_eq!(
                decision,
                MemlockCapability::OldKernel {
                    node: "old".into(),
                    release: old.into()
                }
            );
            assert!(decision.is_added());
        }
        assert_eq!(
            MemlockCapability::for_nodes(&[node("w-1", Some("5.10.0-1057-aws"))]).line(),
            "CAP_SYS_RESOURCE: added: node w-1 runs Linux 5.10.0-1057-aws, and before \
             Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK"
        );
    }

    #[test]
    fn added_when_a_nodes_kernel_is_unknown() {
        for (kernel, line) in [
            (
                None,
                "CAP_SYS_RESOURCE: added: node kwok-1 reports no kernel version, and before \
                 Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK",
            ),
            (
                Some(""),
                "CAP_SYS_RESOURCE: added: node kwok-1 reports no kernel version, and before \
                 Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK",
            ),
            (
                Some("garbage"),
                "CAP_SYS_RESOURCE: added: node kwok-1 reports the kernel version \"garbage\", \
                 which is not one, and before Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK",
            ),
        ] {
            let decision =
                MemlockCapability::for_nodes(&[node("new", Some("6.1.0")), node("kwok-1", kernel)]);
            assert!(decision.is_added(), "{kernel:?}");
            assert_eq!(decision.line(), line);
        }
    }

    #[test]
    fn an_older_kernel_is_named_before_an_unknown_one() {
        let decision =
            MemlockCapability::for_nodes(&[node("kwok-1", None), node("old", Some("5.10.0"))]);
        assert!(matches!(decision, MemlockCapability::OldKernel { node, .. } if node == "old"));
    }

    /// Nodes may join later, and deploy cannot know their kernels.
    #[test]
    fn added_when_no_node_is_selected() {
        let decision = MemlockCapability::for_nodes(&[]);
        assert_eq!(decision, MemlockCapability::NoNodes);
        assert!(decision.is_added());
        assert_eq!(
            decision.line(),
            "CAP_SYS_RESOURCE: added: no node matches the node selector yet, and one that \
             joins may run Linux before 5.11, where BPF memory counts against RLIMIT_MEMLOCK"
        );
    }

    #[test]
    fn node_names_and_kernels_are_escaped() {
        for hostile in HOSTILE {
            assert_inert(
                &MemlockCapability::OldKernel {
                    node: hostile.into(),
                    release: hostile.into(),
                }
                .line(),
            );
            assert_inert(
                &MemlockCapability::UnknownKernel {
                    node: hostile.into(),
                    reported: hostile.into(),
                }
                .line(),
            );
        }
    }

    /// The nodes listed are the DaemonSet's: those with the OS label and
    /// every `--node-selector` label, as the API server matches the
    /// selector (gadget-proto's parser and matcher follow its rules).
    #[test]
    fn the_nodes_listed_are_those_the_daemon_set_selects() {
        let options = RenderOptions {
            node_selector: BTreeMap::from([
                ("disktype".into(), "ssd".into()),
                ("example.com/pool".into(), String::new()),
            ]),
            ..RenderOptions::default()
        };
        let text = node_label_selector(&options.full_node_selector().unwrap());
        assert_eq!(
            text,
            "disktype=ssd,example.com/pool=,kubernetes.io/os=linux"
        );
        let selector: LabelSelector = text.parse().unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let selected = labels(&[
            ("kubernetes.io/os", "linux"),
            ("disktype", "ssd"),
            ("example.com/pool", ""),
            ("zone", "a"),
        ]);
        assert!(selector.matches(&selected));
        for not_selected in [
            labels(&[("disktype", "ssd"), ("example.com/pool", "")]),
            labels(&[
                ("kubernetes.io/os", "windows"),
                ("disktype", "ssd"),
                ("example.com/pool", ""),
            ]),
            labels(&[("kubernetes.io/os", "linux"), ("example.com/pool", "")]),
        ] {
            assert!(!selector.matches(&not_selected), "{not_selected:?}");
        }
        // Without --node-selector: every Linux node.
        let every_linux_node =
            node_label_selector(&RenderOptions::default().full_node_selector().unwrap());
        assert_eq!(every_linux_node, "kubernetes.io/os=linux");
    }
}
