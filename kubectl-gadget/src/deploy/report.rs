//! What deploy and undeploy print when their wait times out: why each gadget
//! pod is not ready (or not gone), with recent events, and why a namespace
//! is still there. Every line is for the terminal, so what the API server
//! says in it (names, reasons, messages, events) is escaped
//! ([`crate::terminal`]).

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::api_server::ApiServer;
use crate::api_error::ApiError;
use crate::manifests::{NAMESPACE, NODE_AGENT};
use crate::pod_status::{is_pod_ready, pod_node, pod_state};
use crate::terminal::escaped;

/// How many not-ready pods progress lines and reports name before summing up.
pub(super) const MAX_PODS_LISTED: usize = 8;

/// How many recent events the timeout report shows per object.
const EVENTS_PER_OBJECT: usize = 5;

/// Prints, to stderr, why each not-ready gadget pod is not ready: container
/// states with their messages, failing conditions and recent events, plus
/// the DaemonSet's own warnings (a pod that admission refused never exists,
/// and only the DaemonSet's events say so).
pub(super) async fn report_not_ready(cluster: ApiServer<'_>, pods: &[std::sync::Arc<Pod>]) {
    let events_api = Api::<Event>::namespaced(cluster.client.clone(), NAMESPACE);
    let mut not_ready: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| !is_pod_ready(p))
        .collect();
    not_ready.sort_by_key(|pod| pod_node(pod).to_string());
    eprintln!("gadget pods that are not ready:");
    if not_ready.is_empty() {
        eprintln!("  (none exists yet)");
    }
    for pod in not_ready.iter().take(MAX_PODS_LISTED) {
        for line in pod_report(pod) {
            eprintln!("  {line}");
        }
        let selector = format!(
            "involvedObject.kind=Pod,involvedObject.name={}",
            pod.name_any()
        );
        for line in recent_events(&events_api, &selector).await {
            eprintln!("    {line}");
        }
    }
    if not_ready.len() > MAX_PODS_LISTED {
        eprintln!("  and {} more", not_ready.len() - MAX_PODS_LISTED);
    }
    let selector = format!("involvedObject.kind=DaemonSet,involvedObject.name={NODE_AGENT}");
    let daemon_set_events = recent_events(&events_api, &selector).await;
    if !daemon_set_events.is_empty() {
        eprintln!("daemonset.apps/{NODE_AGENT} events:");
        for line in daemon_set_events {
            eprintln!("  {line}");
        }
    }
}

/// `pod <name> on <node>: <state>`, the first line about a pod in a report.
pub(super) fn pod_line(pod: &Pod) -> String {
    format!(
        "pod {} on {}: {}",
        escaped(&pod.name_any()),
        escaped(pod_node(pod)),
        escaped(&pod_state(pod))
    )
}

/// The lines describing one pod that is not ready: its node and state, each
/// container's waiting or terminated reason with its message, and every
/// condition that is not true; escaped for the terminal.
pub fn pod_report(pod: &Pod) -> Vec<String> {
    let mut lines = vec![pod_line(pod)];
    let status = pod.status.as_ref();
    for container in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        let state = container.state.as_ref();
        let detail = if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            waiting
                .message
                .as_ref()
                .map(|m| format!("{}: {m}", waiting.reason.as_deref().unwrap_or("waiting")))
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            terminated.message.as_ref().map(|m| {
                format!(
                    "{}: {m}",
                    terminated.reason.as_deref().unwrap_or("terminated")
                )
            })
        } else {
            None
        };
        let name = escaped(&container.name);
        if let Some(detail) = detail {
            lines.push(format!("  container {name}: {}", escaped(&detail)));
        }
        let last_exit = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref());
        if let Some(last) = last_exit {
            lines.push(format!(
                "  container {name} last exited with code {}{}",
                last.exit_code,
                last.reason
                    .as_deref()
                    .map(|r| format!(" ({})", escaped(r)))
                    .unwrap_or_default()
            ));
        }
    }
    for condition in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if condition.status != "True" {
            let mut line = format!(
                "  condition {}={}",
                escaped(&condition.type_),
                escaped(&condition.status)
            );
            for part in [&condition.reason, &condition.message]
                .into_iter()
                .flatten()
            {
                line.push_str(": ");
                line.push_str(&escaped(part));
            }
            lines.push(line);
        }
    }
    lines
}

/// The last few distinct events matching `field_selector`, oldest first,
/// as `<type> <reason>: <message>`. Errors listing them are reported inline:
/// the report is already the failure path.
async fn recent_events(api: &Api<Event>, field_selector: &str) -> Vec<String> {
    let mut events = match api
        .list(&ListParams::default().fields(field_selector))
        .await
    {
        Ok(list) => list.items,
        Err(err) => {
            return vec![format!(
                "(cannot list events: {})",
                escaped(&ApiError::from_kube(&err, "list events", None).to_string())
            )]
        }
    };
    events.sort_by_key(event_time);
    let mut lines: Vec<String> = events.iter().map(event_line).collect();
    // Components record the same failure again and again as new events.
    lines.dedup();
    let skip = lines.len().saturating_sub(EVENTS_PER_OBJECT);
    lines.drain(..skip);
    lines
}

/// `event <type> <reason> (xN): <message>`, escaped: events are written by
/// any component, or any user allowed to create them, with any text.
fn event_line(event: &Event) -> String {
    let count = match event.count {
        Some(n) if n > 1 => format!(" (x{n})"),
        _ => String::new(),
    };
    format!(
        "event {} {}{count}: {}",
        escaped(event.type_.as_deref().unwrap_or("Normal")),
        escaped(event.reason.as_deref().unwrap_or("")),
        escaped(event.message.as_deref().unwrap_or("").trim_end())
    )
}

/// When an event last happened, for ordering: core/v1 events carry it in
/// one of three fields depending on who recorded them.
fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
}

/// Why a namespace is still there: its phase and the conditions the
/// namespace controller sets while it cannot finish (finalizers, content it
/// cannot delete).
pub(super) fn namespace_report(namespace: &Namespace) -> Vec<String> {
    let status = namespace.status.as_ref();
    let mut lines = vec![format!(
        "namespace {}: {}",
        escaped(&namespace.name_any()),
        escaped(status.and_then(|s| s.phase.as_deref()).unwrap_or("Active"))
    )];
    for condition in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if condition.status == "True" {
            lines.push(format!(
                "  {}: {}",
                escaped(&condition.type_),
                escaped(condition.message.as_deref().unwrap_or(""))
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_status::fixtures::{pod, waiting, with_container};

    #[test]
    fn pod_report_says_why() {
        let pulling = pod(
            Some("node-b"),
            with_container(
                waiting("ErrImagePull", "failed to pull image \"x\": not found"),
                false,
                0,
            ),
        );
        let report = pod_report(&pulling);
        assert_eq!(report[0], "pod gadget-node-x on node-b: ErrImagePull");
        assert!(
            report.contains(
                &"  container gadget-node: ErrImagePull: failed to pull image \"x\": not found"
                    .to_string()
            ),
            "{report:?}"
        );
        assert!(
            report
                .iter()
                .any(|l| l.starts_with("  condition Ready=False: ContainersNotReady")),
            "{report:?}"
        );
    }

    #[test]
    fn namespace_report_shows_why_deletion_is_stuck() {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some("kubectl-gadget".into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::NamespaceStatus {
                phase: Some("Terminating".into()),
                conditions: Some(vec![k8s_openapi::api::core::v1::NamespaceCondition {
                    type_: "NamespaceFinalizersRemaining".into(),
                    status: "True".into(),
                    message: Some("Some content in the namespace has finalizers remaining".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        };
        assert_eq!(
            namespace_report(&namespace),
            [
                "namespace kubectl-gadget: Terminating",
                "  NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining"
            ]
        );
    }

    /// Regression: messages of container states, conditions and events
    /// from the API server were printed raw in deploy's and undeploy's
    /// reports.
    #[test]
    fn hostile_api_server_text_in_reports_is_escaped() {
        use crate::terminal::fixtures::{assert_inert, HOSTILE};
        use k8s_openapi::api::core::v1::{
            ContainerStateTerminated, ContainerStatus, NamespaceCondition, NamespaceStatus,
        };
        for hostile in HOSTILE {
            let mut status = with_container(waiting(hostile, hostile), false, 0);
            let container: &mut ContainerStatus =
                &mut status.container_statuses.as_mut().unwrap()[0];
            container.name = hostile.to_string();
            container.last_state = Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    reason: Some(hostile.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let condition = &mut status.conditions.as_mut().unwrap()[0];
            condition.reason = Some(hostile.to_string());
            condition.message = Some(hostile.to_string());
            let mut hostile_pod = pod(Some(hostile), status);
            hostile_pod.metadata.name = Some(hostile.to_string());
            let report = pod_report(&hostile_pod);
            assert_eq!(report.len(), 4, "{report:?}");
            for line in report.iter().chain([&pod_line(&hostile_pod)]) {
                assert_inert(line);
            }
            assert!(report[0].contains(&escaped(hostile)), "{report:?}");

            let event = Event {
                type_: Some(hostile.to_string()),
                reason: Some(hostile.to_string()),
                message: Some(hostile.to_string()),
                ..Default::default()
            };
            assert_inert(&event_line(&event));

            let namespace = Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(hostile.to_string()),
                    ..Default::default()
                },
                status: Some(NamespaceStatus {
                    phase: Some(hostile.to_string()),
                    conditions: Some(vec![NamespaceCondition {
                        type_: hostile.to_string(),
                        status: "True".into(),
                        message: Some(hostile.to_string()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            };
            let lines = namespace_report(&namespace);
            assert_eq!(lines.len(), 2);
            for line in &lines {
                assert_inert(line);
            }
        }
        let event = Event {
            type_: Some("Warning".into()),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"x\" is forbidden\x1b[2J".into()),
            count: Some(3),
            ..Default::default()
        };
        assert_eq!(
            event_line(&event),
            "event Warning FailedCreate (x3): pods \"x\" is forbidden\\x1b[2J"
        );
    }
}
