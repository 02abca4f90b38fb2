//! How a gadget pod and the gadget-node DaemonSet stand, put into words: for
//! the progress lines and reports of `kubectl gadget deploy --wait`
//! ([`crate::deploy`]), and for the readiness check trace commands make
//! before they start ([`crate::connect::discover`]).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;

/// Where a DaemonSet's rollout stands, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutStatus {
    /// Whether the controller has seen the latest spec (observedGeneration).
    pub observed: bool,
    /// Nodes that should run a gadget pod (desiredNumberScheduled).
    pub desired: i32,
    /// Gadget pods that are ready (numberReady).
    pub ready: i32,
    /// Gadget pods of the current template (updatedNumberScheduled).
    pub updated: i32,
}

impl RolloutStatus {
    /// The rollout state of `daemon_set`.
    pub fn of(daemon_set: &DaemonSet) -> Self {
        let generation = daemon_set.metadata.generation.unwrap_or(0);
        let status = daemon_set.status.as_ref();
        RolloutStatus {
            observed: status
                .and_then(|s| s.observed_generation)
                .is_some_and(|observed| observed >= generation),
            desired: status.map_or(0, |s| s.desired_number_scheduled),
            ready: status.map_or(0, |s| s.number_ready),
            updated: status.and_then(|s| s.updated_number_scheduled).unwrap_or(0),
        }
    }

    /// Every scheduled pod runs the current template and is ready.
    pub fn is_complete(&self) -> bool {
        self.observed && self.updated == self.desired && self.ready == self.desired
    }
}

/// A one-word-or-so account of where a pod is, for progress lines:
/// `ready`, `ContainerCreating`, `CrashLoopBackOff`, `running, not ready`...
pub fn pod_state(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "terminating".into();
    }
    let status = pod.status.as_ref();
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    if !scheduled {
        let unschedulable = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        return match unschedulable.and_then(|c| c.reason.as_deref()) {
            Some(reason) => format!("not scheduled ({reason})"),
            None => "not scheduled".into(),
        };
    }
    let Some(container) = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
    else {
        return status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
    };
    let state = container.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        return waiting.reason.clone().unwrap_or_else(|| "waiting".into());
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        let reason = terminated.reason.as_deref().unwrap_or("terminated");
        return format!("{reason} (exit code {})", terminated.exit_code);
    }
    if container.ready {
        return "ready".into();
    }
    match container.restart_count {
        0 => "running, not ready".into(),
        n => format!("running, not ready (restarted {n} times)"),
    }
}

/// Why a pod's container cannot start, when the kubelet reports a failure
/// that retrying does not change: the runtime refused to create or start
/// it (its security context, a capability the node does not grant, a
/// missing seccomp profile), or the image cannot be had (a bad name, a pull
/// the policy forbids). `None` while it may still come up: pulling,
/// creating, or a crash that the next restart may not repeat.
pub fn cannot_start(pod: &Pod) -> Option<String> {
    const WAITING_FOR_GOOD: &[&str] = &[
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RunContainerError",
    ];
    // containerd's reason, and Docker's, for a process the runtime could
    // not start at all.
    const NEVER_STARTED: &[&str] = &["StartError", "ContainerCannotRun"];
    let container = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let explain = |reason: &str, message: Option<&String>| match message {
        Some(message) if !message.is_empty() => format!("{reason}: {message}"),
        _ => reason.to_string(),
    };
    if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
        if let Some(reason) = waiting.reason.as_deref() {
            if WAITING_FOR_GOOD.contains(&reason) {
                return Some(explain(reason, waiting.message.as_ref()));
            }
        }
    }
    [container.state.as_ref(), container.last_state.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|state| state.terminated.as_ref())
        .find_map(|terminated| {
            let reason = terminated.reason.as_deref()?;
            NEVER_STARTED
                .contains(&reason)
                .then(|| explain(reason, terminated.message.as_ref()))
        })
}

/// Whether a pod is ready and not being deleted.
pub(crate) fn is_pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The node a gadget pod runs on or is meant for, shown as `(no node yet)`
/// when it names none.
pub(crate) fn pod_node(pod: &Pod) -> &str {
    target_node(pod).unwrap_or("(no node yet)")
}

/// The node a gadget pod runs on or is meant for. Before scheduling, a
/// DaemonSet pod names its node only in the node affinity the DaemonSet
/// controller gives it (`metadata.name In [<node>]`).
pub(crate) fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref();
    if let Some(node) = spec.and_then(|s| s.node_name.as_deref()) {
        return Some(node);
    }
    spec.and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flat_map(|selector| &selector.node_selector_terms)
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|field| field.key == "metadata.name" && field.operator == "In")
        .and_then(|field| field.values.as_ref()?.first())
        .map(String::as_str)
}

/// Gadget pods in the states the tests put into words.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec,
        PodStatus,
    };

    /// A gadget pod on `node` (or not scheduled yet) with `status`.
    pub(crate) fn pod(node: Option<&str>, status: PodStatus) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("gadget-node-x".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    /// A pod status with one container in `state`, and a Ready condition
    /// that says why not when `ready` is false.
    pub(crate) fn with_container(state: ContainerState, ready: bool, restarts: i32) -> PodStatus {
        PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "gadget-node".into(),
                ready,
                restart_count: restarts,
                state: Some(state),
                ..Default::default()
            }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: (!ready).then(|| "ContainersNotReady".into()),
                message: (!ready).then(|| "containers with unready status: [gadget-node]".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    /// A container state waiting for `reason`.
    pub(crate) fn waiting(reason: &str, message: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{pod, waiting, with_container};
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, PodCondition, PodStatus,
    };

    /// What the e2e suite's real node showed when the node would not grant
    /// a capability: runc failed, the kubelet retries for ever.
    #[test]
    fn a_container_the_runtime_will_not_start_is_reported_at_once() {
        let refused =
            "failed to create containerd task: unable to apply caps: operation not permitted";
        let mut status = with_container(waiting("CrashLoopBackOff", "back-off 10s"), false, 1);
        status.container_statuses.as_mut().unwrap()[0].last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some("StartError".into()),
                message: Some(refused.into()),
                exit_code: 128,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            cannot_start(&pod(Some("node-a"), status)),
            Some(format!("StartError: {refused}"))
        );
        let bad_name = with_container(waiting("InvalidImageName", "couldn't parse"), false, 0);
        assert_eq!(
            cannot_start(&pod(Some("node-a"), bad_name)).as_deref(),
            Some("InvalidImageName: couldn't parse")
        );
    }

    #[test]
    fn a_container_that_may_still_come_up_is_waited_for() {
        for state in [
            waiting("ContainerCreating", ""),
            waiting("ImagePullBackOff", "pull failed"),
            waiting("CrashLoopBackOff", "back-off 10s"),
        ] {
            let status = with_container(state, false, 0);
            assert_eq!(cannot_start(&pod(Some("node-a"), status)), None);
        }
        assert_eq!(cannot_start(&pod(None, PodStatus::default())), None);
    }

    fn daemon_set(generation: i64, status: DaemonSetStatus) -> DaemonSet {
        DaemonSet {
            metadata: kube::api::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn rollout_is_complete_only_when_every_pod_is_current_and_ready() {
        let status = |observed, desired, ready, updated| DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            number_ready: ready,
            updated_number_scheduled: Some(updated),
            ..Default::default()
        };
        assert!(RolloutStatus::of(&daemon_set(2, status(2, 3, 3, 3))).is_complete());
        // The controller has not seen the new spec yet.
        assert!(!RolloutStatus::of(&daemon_set(3, status(2, 3, 3, 3))).is_complete());
        // Old pods are ready, new ones not all there.
        assert!(!RolloutStatus::of(&daemon_set(2, status(2, 3, 3, 1))).is_complete());
        assert!(!RolloutStatus::of(&daemon_set(2, status(2, 3, 2, 3))).is_complete());
        // No status at all: just created.
        assert!(!RolloutStatus::of(&DaemonSet::default()).is_complete());
    }

    #[test]
    fn pod_states() {
        let unscheduled = pod(
            None,
            PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        assert_eq!(pod_state(&unscheduled), "not scheduled (Unschedulable)");
        let pulling = pod(
            Some("n1"),
            with_container(waiting("ImagePullBackOff", "no such image"), false, 0),
        );
        assert_eq!(pod_state(&pulling), "ImagePullBackOff");
        let crashed = pod(
            Some("n1"),
            with_container(
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        reason: Some("Error".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                false,
                2,
            ),
        );
        assert_eq!(pod_state(&crashed), "Error (exit code 1)");
        let running = ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        };
        let unready = pod(Some("n1"), with_container(running.clone(), false, 3));
        assert_eq!(
            pod_state(&unready),
            "running, not ready (restarted 3 times)"
        );
        let ready = pod(Some("n1"), with_container(running, true, 0));
        assert_eq!(pod_state(&ready), "ready");
        assert!(is_pod_ready(&ready));
        assert!(!is_pod_ready(&unready));
    }

    #[test]
    fn unscheduled_daemon_set_pod_is_named_by_its_target_node() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        };
        let mut pending = pod(None, PodStatus::default());
        assert_eq!(pod_node(&pending), "(no node yet)");
        pending.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec!["node-a".into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(pod_node(&pending), "node-a");
    }
}
