//! What `gadget-node serve` and local mode (`gadget-node trace`) start alike:
//! event identity from cgroups (and pods, when there is a cluster) kept
//! fresh in the background, the kernel's features, and the node service
//! that runs gadgets with them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gadget_proto::kernel_version::{KernelVersion, MEMCG_BPF_ACCOUNTING};
use tokio::task::JoinHandle;

use crate::cgroup::{find_cgroup2_mount, CgroupResolver};
use crate::features::{kernel_release, KernelFeatures};
use crate::identity::IdentityResolver;
use crate::pods::{watch_node_pods, PodIndex};
use crate::server::{NodeDescription, NodeService};

/// How often the cgroup tree is rescanned for containers that came or went.
const CGROUP_RESCAN_PERIOD: Duration = Duration::from_secs(1);

/// Where pod names come from.
pub enum PodSource {
    /// No API server: events carry pod UIDs and container ids only.
    None,
    /// The kubeconfig at this path.
    Kubeconfig(std::path::PathBuf),
    /// In-cluster configuration, `KUBECONFIG` or `~/.kube/config`; none
    /// found is a warning, not an error (the node then runs as `None`).
    Default,
}

/// A running node: its service and the background tasks feeding it, which
/// stop when it is dropped.
pub struct Agent {
    /// The node service.
    pub service: NodeService,
    /// Whether pods of this node are watched (events carry pod names).
    pub watches_pods: bool,
    /// Keep it as long as the service is used.
    pub background: Background,
}

/// The tasks that keep an [`Agent`]'s identity fresh; dropping it stops them.
pub struct Background(Vec<JoinHandle<()>>);

impl Agent {
    /// Starts the identity refresh and, unless `pods` says otherwise, the
    /// watch of this node's pods, and describes the node.
    pub async fn start(node_name: Option<String>, pods: PodSource) -> anyhow::Result<Agent> {
        raise_memlock_limit();
        let node_name = match node_name.filter(|name| !name.is_empty()) {
            Some(name) => name,
            None => host_name()?,
        };
        let client = match pods {
            PodSource::None => {
                tracing::info!("not using the API server: events will not carry pod names");
                None
            }
            PodSource::Kubeconfig(path) => Some(kube_client_from(&path).await?),
            PodSource::Default => default_kube_client().await,
        };
        let mut background = Vec::new();
        let pod_index = client.map(|client| {
            let index = Arc::new(PodIndex::new());
            background.push(tokio::spawn({
                let index = Arc::clone(&index);
                let node_name = node_name.clone();
                async move { watch_node_pods(client, &node_name, index).await }
            }));
            index
        });
        let watches_pods = pod_index.is_some();
        let identity = Arc::new(IdentityResolver::new(
            CgroupResolver::new(find_cgroup2_mount()?),
            pod_index,
        ));
        background.push(tokio::spawn(
            Arc::clone(&identity).refresh_periodically(CGROUP_RESCAN_PERIOD),
        ));
        let features = tokio::task::spawn_blocking(KernelFeatures::detect).await?;
        let description = NodeDescription {
            node_name,
            kernel_release: kernel_release().context("cannot read the kernel release")?,
            features,
        };
        log_description(&description);
        Ok(Agent {
            service: NodeService::new(description, identity),
            watches_pods,
            background: Background(background),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Before Linux 5.11 the kernel charges BPF maps (ring buffers included)
/// to RLIMIT_MEMLOCK, whose container default is far below one ring
/// buffer; this is what the DaemonSet's CAP_SYS_RESOURCE is for. From 5.11
/// on memory cgroups account for BPF memory and the limit is not used, so a
/// refusal there is only worth a debug line; before, gadgets will fail to
/// load, and the warning says what to do.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct it is given and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return;
    }
    let error = std::io::Error::last_os_error();
    let release = kernel_release().unwrap_or_default();
    match memlock_refusal_warning(&release) {
        Some(warning) => tracing::warn!(%error, "{warning}"),
        None => tracing::debug!(
            %error,
            "cannot raise RLIMIT_MEMLOCK (not needed on Linux 5.11 and later)"
        ),
    }
}

/// What a refused raise of RLIMIT_MEMLOCK means on the kernel `release`
/// (`uname -r`): `None` when the kernel does not charge BPF memory to it;
/// otherwise, or when the release is not a version, the warning. This node
/// joined after the last deploy, which left the capability out because
/// every node it saw runs 5.11 or later: deploying again adds it.
fn memlock_refusal_warning(release: &str) -> Option<String> {
    let since = MEMCG_BPF_ACCOUNTING.major_minor();
    let kernel = match KernelVersion::parse(release) {
        Some(version) if !version.charges_bpf_to_memlock() => return None,
        Some(_) => format!("this node runs Linux {release}, older than {since}"),
        None => format!(
            "this node's kernel release {release:?} is not a version, so it may be older than {since}"
        ),
    };
    Some(format!(
        "cannot raise RLIMIT_MEMLOCK: {kernel}, where BPF memory counts against that limit, so \
         gadgets may fail to load; the gadget pod needs CAP_SYS_RESOURCE: run \
         \"kubectl gadget deploy\" again, which adds it when a node runs Linux before {since}"
    ))
}

async fn kube_client_from(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("cannot use kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

/// A client for the API server; `None`, with a warning, when no
/// configuration is found.
async fn default_kube_client() -> Option<kube::Client> {
    match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(err) => {
            tracing::warn!(
                error = %err,
                "no Kubernetes configuration found: serving without pod names (local mode); \
                 pass --no-kubernetes to silence this"
            );
            None
        }
    }
}

fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name; pass --node-name")?;
    Ok(name.trim().to_string())
}

fn log_description(description: &NodeDescription) {
    let features: Vec<String> = description
        .features
        .iter()
        .map(|(feature, present)| format!("{feature}={present}"))
        .collect();
    tracing::info!(
        node = description.node_name,
        kernel = description.kernel_release,
        features = features.join(","),
        "node ready"
    );
    for gadget in crate::gadgets::names() {
        if let Err(reason) = description.features.gadget_availability(gadget) {
            tracing::warn!(gadget, reason, "gadget unavailable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_memlock_raise_warns_before_linux_5_11() {
        for release in ["5.10.0-1057-aws", "4.18.0-513.el8.x86_64", "5.8.0"] {
            let warning = memlock_refusal_warning(release).expect(release);
            assert!(
                warning.contains(&format!("this node runs Linux {release}, older than 5.11")),
                "{warning}"
            );
            assert!(warning.contains("CAP_SYS_RESOURCE"), "{warning}");
            assert!(
                warning.contains("run \"kubectl gadget deploy\" again"),
                "{warning}"
            );
        }
    }

    #[test]
    fn a_refused_memlock_raise_is_harmless_from_linux_5_11() {
        for release in ["5.11.0", "6.18.44-fc-v657", "5.15.0-100-generic", "10.0.0"] {
            assert_eq!(memlock_refusal_warning(release), None, "{release}");
        }
    }

    /// A release that is not a version may be an old kernel: warn.
    #[test]
    fn a_refused_memlock_raise_warns_when_the_version_is_unknown() {
        for release in ["", "garbage"] {
            let warning = memlock_refusal_warning(release).expect(release);
            assert!(
                warning.contains(&format!(
                    "kernel release {release:?} is not a version, so it may be older than 5.11"
                )),
                "{warning}"
            );
            assert!(warning.contains("CAP_SYS_RESOURCE"), "{warning}");
        }
    }
}
