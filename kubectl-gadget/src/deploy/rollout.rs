//! `deploy --wait`: watching the rollout of the gadget pods, with a progress
//! line whenever it changes.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, reflector, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};

use super::api_server::ApiServer;
use super::args::format_duration;
use super::report::{report_not_ready, MAX_PODS_LISTED};
use crate::api_error::ApiError;
use crate::manifests::{NAMESPACE, NODE_AGENT, POD_SELECTOR};
use crate::pod_status::{cannot_start, is_pod_ready, pod_node, pod_state, RolloutStatus};
use crate::terminal::escaped;

/// The progress line: ready/desired, then the state of every pod that is not
/// ready, by node (the first few; the rest counted); escaped for the
/// terminal.
pub fn progress_line<'a>(
    status: &RolloutStatus,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> String {
    let mut waiting: Vec<(String, String)> = pods
        .into_iter()
        .filter(|pod| !is_pod_ready(pod))
        .map(|pod| (escaped(pod_node(pod)), escaped(&pod_state(pod))))
        .collect();
    waiting.sort();
    let mut line = format!(
        "{}/{} gadget pods ready, {} up to date",
        status.ready, status.desired, status.updated
    );
    if !waiting.is_empty() {
        let listed: Vec<String> = waiting
            .iter()
            .take(MAX_PODS_LISTED)
            .map(|(node, state)| format!("{node}: {state}"))
            .collect();
        line.push_str("; waiting for ");
        line.push_str(&listed.join(", "));
        if waiting.len() > MAX_PODS_LISTED {
            line.push_str(&format!(" and {} more", waiting.len() - MAX_PODS_LISTED));
        }
    }
    line
}

/// Whether `pod` was made from the DaemonSet's template of `generation`
/// (the DaemonSet controller labels each pod with it), and is not being
/// deleted.
fn is_of_generation(pod: &Pod, generation: Option<i64>) -> bool {
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("pod-template-generation"));
    pod.metadata.deletion_timestamp.is_none()
        && generation.is_some_and(|generation| label == Some(&generation.to_string()))
}

/// What a watch event means for the rollout wait.
enum WatchUpdate {
    /// The first (or a re-) list of the gadget pods is complete.
    PodsListed,
    /// Anything else: the stores changed.
    Other,
}

/// Watches the DaemonSet and its pods until the rollout is complete or
/// `timeout` passes; on timeout prints why pods are not ready and fails.
pub(super) async fn wait_for_rollout(
    cluster: ApiServer<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = cluster.client;
    let server = Some(cluster.url);
    let (daemon_sets, daemon_set_writer) = reflector::store::<DaemonSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let daemon_set_events = reflector(
        daemon_set_writer,
        watcher(
            Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().fields(&format!("metadata.name={NODE_AGENT}")),
        ),
    )
    .default_backoff()
    .map(|event| {
        event
            .map(|_| WatchUpdate::Other)
            .map_err(|e| ApiError::from_watch(e, "watch daemonset gadget-node", server))
    });
    let pod_events = reflector(
        pod_writer,
        watcher(
            Api::<Pod>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().labels(POD_SELECTOR),
        ),
    )
    .default_backoff()
    .map(|event| {
        event
            .map(|event| match event {
                watcher::Event::InitDone => WatchUpdate::PodsListed,
                _ => WatchUpdate::Other,
            })
            .map_err(|e| ApiError::from_watch(e, "watch the gadget pods", server))
    });
    let mut events = std::pin::pin!(futures::stream::select(daemon_set_events, pod_events));
    let key = ObjectRef::<DaemonSet>::new(NODE_AGENT).within(NAMESPACE);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut last_line = String::new();
    let mut last_error = String::new();
    // Progress lines wait for the first full list of pods, so the first one
    // already names the nodes that are waiting.
    let mut pods_listed = false;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            event = events.next() => match event {
                Some(Ok(WatchUpdate::PodsListed)) => pods_listed = true,
                Some(Ok(WatchUpdate::Other)) => {}
                Some(Err(err)) if err.is_final() => return Err(err.into()),
                Some(Err(err)) => {
                    // Watches resume by themselves (with backoff); say why
                    // progress stalls, once per distinct error.
                    let message = escaped(&err.to_string());
                    if message != last_error {
                        eprintln!("{message}; retrying");
                        last_error = message;
                    }
                    continue;
                }
                None => break,
            },
        }
        let Some(daemon_set) = daemon_sets.get(&key) else {
            continue;
        };
        let status = RolloutStatus::of(&daemon_set);
        let current_pods = pods.state();
        let line = progress_line(&status, current_pods.iter().map(|p| p.as_ref()));
        if pods_listed && line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        // The kubelet retries such a pod for ever: waiting out the timeout
        // would only delay the same answer. Only a pod of the template just
        // applied counts: one of the previous template is being replaced.
        let generation = daemon_set.metadata.generation;
        let stuck = current_pods
            .iter()
            .filter(|pod| is_of_generation(pod, generation))
            .find_map(|pod| Some((pod_node(pod), cannot_start(pod)?)));
        if let Some((node, reason)) = stuck.filter(|_| pods_listed) {
            report_not_ready(cluster, &current_pods).await;
            anyhow::bail!(
                "gadget-node cannot start on node {}: {}",
                escaped(node),
                escaped(&reason)
            );
        }
        if status.is_complete() {
            if status.desired == 0 {
                eprintln!(
                    "warning: no node matches the gadget-node node selector, so no gadget pod runs"
                );
            }
            println!("gadget-node is ready on {} nodes", status.desired);
            return Ok(());
        }
    }
    let status = daemon_sets.get(&key).map(|ds| RolloutStatus::of(&ds));
    report_not_ready(cluster, &pods.state()).await;
    let summary = match status {
        Some(status) => format!("{}/{} gadget pods ready", status.ready, status.desired),
        None => "the DaemonSet was not seen".into(),
    };
    anyhow::bail!(
        "gadget-node did not become ready within {}: {summary}",
        format_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_status::fixtures::{pod, waiting, with_container};
    use k8s_openapi::api::core::v1::{ContainerState, PodStatus};

    #[test]
    fn only_pods_of_the_current_template_count() {
        let mut current = pod(Some("node-a"), PodStatus::default());
        current.metadata.labels =
            Some([("pod-template-generation".to_string(), "3".to_string())].into());
        assert!(is_of_generation(&current, Some(3)));
        assert!(
            !is_of_generation(&current, Some(4)),
            "replaced by generation 4"
        );
        assert!(!is_of_generation(&current, None));
        assert!(!is_of_generation(
            &pod(Some("node-a"), PodStatus::default()),
            Some(3)
        ));
        current.metadata.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-11-30T00:00:00Z")).unwrap());
        assert!(!is_of_generation(&current, Some(3)), "being deleted");
    }

    #[test]
    fn progress_line_names_the_nodes_still_waiting() {
        let status = RolloutStatus {
            observed: true,
            desired: 3,
            ready: 1,
            updated: 3,
        };
        let running = ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        };
        let pods = [
            pod(
                Some("node-c"),
                with_container(waiting("ContainerCreating", ""), false, 0),
            ),
            pod(Some("node-a"), with_container(running, true, 0)),
            pod(
                Some("node-b"),
                with_container(waiting("ImagePullBackOff", "pull failed"), false, 0),
            ),
        ];
        assert_eq!(
            progress_line(&status, &pods),
            "1/3 gadget pods ready, 3 up to date; waiting for node-b: ImagePullBackOff, node-c: ContainerCreating"
        );
    }

    #[test]
    fn progress_line_caps_the_nodes_it_names() {
        let status = RolloutStatus {
            observed: true,
            desired: 20,
            ready: 0,
            updated: 20,
        };
        let pods: Vec<Pod> = (0..20)
            .map(|i| {
                pod(
                    Some(&format!("node-{i:02}")),
                    with_container(waiting("ContainerCreating", ""), false, 0),
                )
            })
            .collect();
        let line = progress_line(&status, &pods);
        assert!(line.ends_with("and 12 more"), "{line}");
    }

    /// Regression: node names and pod states from the API server were
    /// printed raw in the progress lines.
    #[test]
    fn progress_line_escapes_node_names_and_states() {
        let status = RolloutStatus {
            observed: true,
            desired: 1,
            ready: 0,
            updated: 1,
        };
        let pods = [pod(
            Some("node\x1b]0;pwned\x07"),
            with_container(waiting("Bad\nReason", ""), false, 0),
        )];
        let line = progress_line(&status, &pods);
        assert_eq!(
            line,
            "0/1 gadget pods ready, 1 up to date; waiting for node\\x1b]0;pwned\\x07: Bad\\nReason"
        );
        crate::terminal::fixtures::assert_inert(&line);
    }
}
