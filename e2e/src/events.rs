//! What a trace printed with `-o json`, and whether it is what was expected.
//!
//! The suite makes every container it runs a command in name a marker file
//! (the command is `cat <marker>`), so each expected exec and open event is
//! told apart by its marker: the marker is an argument of the exec and the
//! path of the open. [`check`] then asks that every expected marker appears
//! exactly once, with the identity of the container that ran it, and that
//! nothing else appears.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of `-o json` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    /// An exec event.
    Exec(Event),
    /// An open event.
    Open(Event),
    /// A node's trace status.
    Status(Status),
}

/// The fields of an event the suite checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// The node the client says it came from.
    pub node: String,
    /// The container of the process; `None` for the host.
    pub k8s: Option<Identity>,
    /// Exec: the arguments (strings, or `{"base64": ...}` for other bytes).
    #[serde(default)]
    pub args: Vec<Value>,
    /// Open: the path.
    #[serde(default)]
    pub path: Option<Value>,
}

/// Which container an event came from, as the node resolved it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct Identity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The container id, without the runtime's `containerd://`.
    pub container_id: String,
}

/// A node's trace status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// The node.
    pub node: String,
    /// Set once the gadget is attached on the node.
    pub started: bool,
    /// Why the trace failed on the node.
    pub error: Option<String>,
}

/// Parses `-o json` output, one object per line.
pub fn parse(stdout: &str) -> Result<Vec<Line>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("not a JSON line of a trace: {line}"))
        })
        .collect()
}

/// The statuses of the output.
pub fn statuses(lines: &[Line]) -> impl Iterator<Item = &Status> {
    lines.iter().filter_map(|line| match line {
        Line::Status(status) => Some(status),
        _ => None,
    })
}

/// The nodes that have said their trace started.
pub fn started_nodes(lines: &[Line]) -> BTreeSet<String> {
    statuses(lines)
        .filter(|status| status.started)
        .map(|status| status.node.clone())
        .collect()
}

/// An event the suite caused and expects exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The marker path the command named.
    pub marker: String,
    /// The node whose agent must report it.
    pub node: String,
    /// The container that ran the command.
    pub identity: Identity,
}

/// How strict [`check`] is about events that carry no marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmarked {
    /// Every event must be an expected one (the local harness, where
    /// nothing but the suite runs in the containers).
    Forbidden,
    /// Allowed when they come from a container the trace selects (a real
    /// cluster, where the runtime may exec its own helpers in a container),
    /// or from a selected pod's sandbox, which has no container name. An
    /// event of one of the pod's containers without its name (sent before
    /// the container's status reached the node) is a problem: the node holds
    /// those until the name comes.
    FromSelected,
}

/// The marker an event carries: an argument of an exec, or the path of an
/// open, that starts with `prefix`.
pub fn marker<'a>(line: &'a Line, prefix: &str) -> Option<&'a str> {
    let marked = |value: &'a Value| value.as_str().filter(|text| text.starts_with(prefix));
    match line {
        Line::Exec(event) => event.args.iter().find_map(marked),
        Line::Open(event) => event.path.as_ref().and_then(marked),
        Line::Status(_) => None,
    }
}

/// Checks the events of a trace against what it should show: each of
/// `expected` exactly once, from the right node and container; no other
/// marked event; no event from a container outside `selected`; and no node
/// error. Returns every problem found, empty when there is none.
pub fn check(
    lines: &[Line],
    prefix: &str,
    expected: &[Expected],
    selected: &BTreeSet<Identity>,
    unmarked: Unmarked,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in lines {
        let event = match line {
            Line::Status(status) => {
                if let Some(error) = &status.error {
                    problems.push(format!("node {} failed: {error}", status.node));
                }
                continue;
            }
            Line::Exec(event) | Line::Open(event) => event,
        };
        if let Some(marker) = marker(line, prefix) {
            seen.entry(marker).or_default().push(line);
            continue;
        }
        let from_selected = event.k8s.as_ref().is_some_and(|k8s| {
            let sandbox_of_selected = k8s.container.is_empty()
                && selected.iter().any(|s| {
                    (&s.namespace, &s.pod, &s.pod_uid) == (&k8s.namespace, &k8s.pod, &k8s.pod_uid)
                })
                && !selected.iter().any(|s| s.container_id == k8s.container_id);
            selected.contains(k8s) || sandbox_of_selected
        });
        if unmarked == Unmarked::Forbidden || !from_selected {
            problems.push(format!("unexpected event: {}", describe(line)));
        }
    }
    for want in expected {
        let got = seen.remove(want.marker.as_str()).unwrap_or_default();
        match got.as_slice() {
            [] => problems.push(format!(
                "missing: {} of {} on {}",
                want.marker,
                show_identity(Some(&want.identity)),
                want.node
            )),
            [line] => {
                let event = event_of(line);
                if event.node != want.node || event.k8s.as_ref() != Some(&want.identity) {
                    problems.push(format!(
                        "{} is attributed to {} on {}, not to {} on {}",
                        want.marker,
                        show_identity(event.k8s.as_ref()),
                        event.node,
                        show_identity(Some(&want.identity)),
                        want.node
                    ));
                }
            }
            many => problems.push(format!(
                "{} appears {} times, not once: {}",
                want.marker,
                many.len(),
                many.iter()
                    .map(|line| describe(line))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
    for lines in seen.values() {
        for line in lines {
            problems.push(format!(
                "unexpected event (its container is not selected): {}",
                describe(line)
            ));
        }
    }
    problems
}

fn event_of(line: &Line) -> &Event {
    match line {
        Line::Exec(event) | Line::Open(event) => event,
        Line::Status(_) => unreachable!("statuses carry no marker"),
    }
}

/// `namespace/pod/container (uid, id)`, or `the host`.
fn show_identity(identity: Option<&Identity>) -> String {
    match identity {
        Some(k8s) => format!(
            "{}/{}/{} (pod {}, container {})",
            k8s.namespace,
            k8s.pod,
            k8s.container,
            k8s.pod_uid,
            short(&k8s.container_id)
        ),
        None => "the host".to_string(),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One event in a line, for messages.
pub fn describe(line: &Line) -> String {
    let (kind, event, what) = match line {
        Line::Exec(event) => ("exec", event, format!("{:?}", event.args)),
        Line::Open(event) => ("open", event, format!("{:?}", event.path)),
        Line::Status(status) => return format!("{status:?}"),
    };
    format!(
        "{kind} {what} from {} on {}",
        show_identity(event.k8s.as_ref()),
        event.node
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/tmp/e2e/markers/";

    fn identity(pod: &str, container: &str) -> Identity {
        Identity {
            namespace: "default".into(),
            pod: pod.into(),
            container: container.into(),
            pod_uid: format!("uid-{pod}"),
            container_id: format!("id-{pod}-{container}"),
        }
    }

    fn exec_line(node: &str, who: Option<&Identity>, arg: &str) -> String {
        serde_json::json!({
            "type": "exec", "node": node, "timestamp_ns": 1,
            "k8s": who, "process": {"pid": 1, "comm": "cat"},
            "ret": 0, "error": null, "exe": "/usr/bin/cat",
            "args": ["/usr/bin/cat", arg], "args_truncated": false, "pcomm": "e2e",
        })
        .to_string()
    }

    fn open_line(node: &str, who: Option<&Identity>, path: &str) -> String {
        serde_json::json!({
            "type": "open", "node": node, "k8s": who, "fd": 3, "error": null,
            "flags": 0, "flag_names": [], "mode": 0, "dirfd": null,
            "syscall": "openat", "path": path, "path_truncated": false,
        })
        .to_string()
    }

    fn expected(pod: &str, container: &str, node: &str) -> Expected {
        Expected {
            marker: format!("{PREFIX}r1/default.{pod}.{container}"),
            node: node.into(),
            identity: identity(pod, container),
        }
    }

    fn run_check(output: &[String], want: &[Expected], unmarked: Unmarked) -> Vec<String> {
        let lines = parse(&output.join("\n")).unwrap();
        let selected = want.iter().map(|w| w.identity.clone()).collect();
        check(&lines, PREFIX, want, &selected, unmarked)
    }

    #[test]
    fn each_expected_event_once_is_a_pass() {
        let xwing = expected("xwing", "spaceship", "node-0");
        let output = [
            r#"{"type":"status","node":"node-0","started":true,"error":null}"#.to_string(),
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
        ];
        let none = Vec::<String>::new();
        let want = std::slice::from_ref(&xwing);
        assert_eq!(run_check(&output, want, Unmarked::Forbidden), none);
        let opened = [open_line("node-0", Some(&xwing.identity), &xwing.marker)];
        assert_eq!(run_check(&opened, want, Unmarked::Forbidden), none);
    }

    #[test]
    fn missing_duplicated_and_misattributed_events_are_named() {
        let xwing = expected("xwing", "spaceship", "node-0");
        let tie = expected("tiefighter", "radio", "node-1");
        let deathstar = expected("deathstar", "reactor", "node-2");
        let output = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-2", Some(&tie.identity), &tie.marker),
        ];
        let problems = run_check(&output, &[xwing, tie, deathstar], Unmarked::Forbidden);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].starts_with("/tmp/e2e/markers/r1/default.xwing.spaceship appears 2 times")
        );
        assert_eq!(
            problems[1],
            "/tmp/e2e/markers/r1/default.tiefighter.radio is attributed to default/tiefighter/radio \
             (pod uid-tiefighter, container id-tiefighte) on node-2, not to \
             default/tiefighter/radio (pod uid-tiefighter, container id-tiefighte) on node-1"
        );
        assert_eq!(
            problems[2],
            "missing: /tmp/e2e/markers/r1/default.deathstar.reactor of default/deathstar/reactor \
             (pod uid-deathstar, container id-deathstar) on node-2"
        );
    }

    #[test]
    fn events_of_unselected_containers_fail() {
        let xwing = expected("xwing", "spaceship", "node-0");
        let tie = identity("tiefighter", "spaceship");
        let output = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line(
                "node-1",
                Some(&tie),
                &format!("{PREFIX}r1/default.tiefighter.spaceship"),
            ),
            exec_line("node-1", Some(&tie), "/bin/true"),
            exec_line("node-1", None, "/bin/true"),
        ];
        for unmarked in [Unmarked::Forbidden, Unmarked::FromSelected] {
            let problems = run_check(&output, std::slice::from_ref(&xwing), unmarked);
            assert_eq!(problems.len(), 3, "{problems:#?}");
            assert!(problems
                .iter()
                .any(|p| p.starts_with("unexpected event (its container is not selected): exec")));
        }
    }

    #[test]
    fn unmarked_events_of_selected_containers_pass_only_when_allowed() {
        let xwing = expected("xwing", "spaceship", "node-0");
        let output = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-0", Some(&xwing.identity), "/usr/bin/runc-helper"),
        ];
        assert_eq!(
            run_check(
                &output,
                std::slice::from_ref(&xwing),
                Unmarked::FromSelected
            ),
            Vec::<String>::new()
        );
        assert_eq!(run_check(&output, &[xwing], Unmarked::Forbidden).len(), 1);
    }

    /// A pod sandbox's events carry the pod but no container name; one of
    /// the pod's own containers must carry its name.
    #[test]
    fn unnamed_containers_of_selected_pods_pass_only_when_allowed() {
        let xwing = expected("xwing", "spaceship", "node-0");
        let early = Identity {
            container: String::new(),
            container_id: "id-sandbox".into(),
            ..xwing.identity.clone()
        };
        let other_pod = Identity {
            pod: "tiefighter".into(),
            pod_uid: "uid-tiefighter".into(),
            ..early.clone()
        };
        let output = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-0", Some(&early), "/pause"),
        ];
        let want = std::slice::from_ref(&xwing);
        assert_eq!(
            run_check(&output, want, Unmarked::FromSelected),
            Vec::<String>::new()
        );
        assert_eq!(run_check(&output, want, Unmarked::Forbidden).len(), 1);
        let elsewhere = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-0", Some(&other_pod), "/pause"),
        ];
        assert_eq!(run_check(&elsewhere, want, Unmarked::FromSelected).len(), 1);
        let nameless_container = Identity {
            container: String::new(),
            ..xwing.identity.clone()
        };
        let early = [
            exec_line("node-0", Some(&xwing.identity), &xwing.marker),
            exec_line("node-0", Some(&nameless_container), "/entrypoint"),
        ];
        assert_eq!(run_check(&early, want, Unmarked::FromSelected).len(), 1);
    }

    #[test]
    fn node_errors_are_problems_and_started_nodes_are_listed() {
        let output = [
            r#"{"type":"status","node":"node-0","started":true,"lost_kernel":0,"error":null}"#,
            r#"{"type":"status","node":"node-1","started":false,"error":"connection reset"}"#,
        ];
        let lines = parse(&output.join("\n")).unwrap();
        assert_eq!(
            started_nodes(&lines),
            BTreeSet::from(["node-0".to_string()])
        );
        assert_eq!(
            check(&lines, PREFIX, &[], &BTreeSet::new(), Unmarked::Forbidden),
            ["node node-1 failed: connection reset"]
        );
    }

    #[test]
    fn non_json_output_is_an_error() {
        let err = parse("NODE  NAMESPACE\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a JSON line of a trace: NODE  NAMESPACE"
        );
    }
}
