//! Traces as a user runs them (`kubectl gadget trace ... -o json`), run
//! side by side, and what their output must be.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::events::{self, Expected, Identity, Line, Unmarked};
use crate::kubectl::Kubectl;
use crate::process::{indent, Finished, Running};
use crate::wait::Poll;
use crate::workloads::WorkloadContainer;

/// How long a trace may take to start on all its nodes: a port-forward
/// through the API server to each, and loading the programs.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after its `-t` a trace may take to end: the client's own grace
/// for slow nodes is 30 seconds.
pub const END_GRACE: Duration = Duration::from_secs(45);

/// One trace the suite runs and what it must show.
pub struct TraceCase {
    /// `trace` arguments after `trace`: the gadget and its selection flags.
    pub args: Vec<String>,
    /// The nodes the trace runs on.
    pub nodes: BTreeSet<String>,
    /// Which containers it selects.
    pub selects: Box<dyn Fn(&WorkloadContainer) -> bool>,
}

impl TraceCase {
    /// A case of `words` (like `exec -n default -p xwing`) on `nodes`.
    pub fn new(
        words: &[&str],
        nodes: &[String],
        selects: impl Fn(&WorkloadContainer) -> bool + 'static,
    ) -> TraceCase {
        TraceCase {
            args: words.iter().map(|word| word.to_string()).collect(),
            nodes: nodes.iter().cloned().collect(),
            selects: Box::new(selects),
        }
    }

    /// The command line, for messages.
    pub fn title(&self) -> String {
        format!("kubectl gadget trace {}", self.args.join(" "))
    }
}

/// A trace that runs.
pub struct RunningTrace {
    /// Its case.
    pub case: TraceCase,
    /// The process.
    pub process: Running,
}

impl RunningTrace {
    /// Starts `kubectl gadget trace <case> -o json`, for `seconds` (0: until
    /// interrupted).
    pub fn start(kubectl: &Kubectl, case: TraceCase, seconds: u32) -> Result<RunningTrace> {
        let mut args = vec!["trace".to_string()];
        args.extend(case.args.iter().cloned());
        args.extend(["-o".into(), "json".into()]);
        if seconds > 0 {
            args.extend(["-t".into(), seconds.to_string()]);
        }
        let process = Running::spawn(&mut kubectl.gadget(&args))?;
        Ok(RunningTrace { case, process })
    }

    /// Starts every case side by side, then waits until each has started
    /// on all its nodes.
    pub fn start_all(
        kubectl: &Kubectl,
        cases: Vec<TraceCase>,
        seconds: u32,
    ) -> Result<Vec<RunningTrace>> {
        let mut running = Vec::new();
        for case in cases {
            running.push(RunningTrace::start(kubectl, case, seconds)?);
        }
        for trace in &mut running {
            trace.wait_started()?;
        }
        Ok(running)
    }

    /// Waits until every node of the case says its trace started.
    pub fn wait_started(&mut self) -> Result<()> {
        let wanted = self.case.nodes.clone();
        let what = format!("{} to start on {}", self.case.title(), join(&wanted));
        self.process.wait_for_stdout(&what, START_TIMEOUT, |lines| {
            let parsed: Vec<Line> = lines
                .iter()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            let started = events::started_nodes(&parsed);
            if started.is_superset(&wanted) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "started on [{}]; output: {}",
                    join(&started),
                    lines.join(" | ")
                ))
            }
        })
    }

    /// Waits for the trace to end by its `-t` of `seconds`.
    pub fn finish(self, seconds: u32) -> Result<(TraceCase, Finished)> {
        let finished = self
            .process
            .finish(Duration::from_secs(seconds.into()) + END_GRACE)?;
        Ok((self.case, finished))
    }
}

/// What is wrong with a finished trace of `case`, given the events the
/// containers caused: a trace must exit 0 with only warnings on stderr,
/// hear from its nodes only, and show exactly the expected events of the
/// containers it selects. Empty when all is well.
pub fn problems(
    case: &TraceCase,
    finished: &Finished,
    containers: &[WorkloadContainer],
    caused: &[Expected],
    prefix: &str,
    unmarked: Unmarked,
) -> Vec<String> {
    let mut problems = Vec::new();
    if finished.code() != Some(0) {
        problems.push(format!("exited with {}", finished.status));
    }
    for line in finished
        .stderr_lines()
        .filter(|line| !line.starts_with("warning: "))
    {
        problems.push(format!("stderr: {line}"));
    }
    let lines = match events::parse(&finished.stdout) {
        Ok(lines) => lines,
        Err(err) => {
            problems.push(err.to_string());
            return problems;
        }
    };
    let heard: BTreeSet<String> = events::statuses(&lines)
        .map(|status| status.node.clone())
        .collect();
    if heard != case.nodes {
        problems.push(format!(
            "statuses came from [{}], not from [{}]",
            join(&heard),
            join(&case.nodes)
        ));
    }
    let selected: BTreeSet<Identity> = containers
        .iter()
        .filter(|container| (case.selects)(container))
        .map(|container| container.identity.clone())
        .collect();
    let expected: Vec<Expected> = caused
        .iter()
        .filter(|event| selected.contains(&event.identity))
        .cloned()
        .collect();
    problems.extend(events::check(
        &lines, prefix, &expected, &selected, unmarked,
    ));
    problems
}

/// Fails with every problem of every case, each under its command line.
pub fn report(failed: Vec<(String, Vec<String>, String)>) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = failed
        .iter()
        .map(|(title, problems, output)| {
            format!(
                "{title}:\n{}\n  its output:\n{}",
                indent(&problems.join("\n")),
                indent(&indent(output))
            )
        })
        .collect();
    bail!(
        "{} of the traces are wrong:\n{}",
        failed.len(),
        text.join("\n")
    )
}

/// Names, comma-separated.
pub fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}
