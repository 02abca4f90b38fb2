//! `kubectl gadget trace file` end to end: files followed by the path the
//! kernel resolved, in the containers of the namespace asked for and no
//! other, and `--kill-on write` stopping a selected process before its
//! bytes land while a process the trace does not select writes freely.
//!
//! The alliance's `xwing` and the empire's `deathstar` each run one shell
//! on a file of their own in a directory the trace follows (`--prefix`);
//! the trace selects the alliance's namespace (`-n`), so everything about
//! `deathstar` must be absent from its output, and only `xwing` may be
//! killed.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::events::{self, Identity, Line};
use crate::kubectl::Kubectl;
use crate::process::{indent, Finished, Running};
use crate::traces::{self, join, RunningTrace, TraceCase, END_GRACE, START_TIMEOUT};
use crate::wait::Poll;
use crate::workloads::{shell_quote, Ended, Namespaces, ShellRun, WorkloadContainer, Workloads};

/// What the shells write: `secret` and echo's newline.
const SECRET: &str = "secret";

/// How a node's status line ends that counts events of cgroups it could not
/// identify (`TraceStatus.unjudged`).
const UNJUDGED: &str = "of containers not identified in time for the selection";

/// What the files of the kill step hold before it.
const ORIGINAL: &str = "original\n";

/// What the shells of the kill step try to append.
const APPENDED: &str = "pwned";

/// What the trace file steps need of the suite.
pub struct FileTraceRun<'a> {
    /// The user's kubectl.
    pub kubectl: &'a Kubectl,
    /// The workloads, to run shells in.
    pub workloads: &'a mut Workloads,
    /// The nodes with a gadget pod.
    pub nodes: &'a [String],
    /// The workload namespaces.
    pub namespaces: &'a Namespaces,
    /// `-t` of the trace.
    pub seconds: u32,
    /// Whether nothing but the suite runs in the containers (the local
    /// harness), so that every row of a selected container must be one
    /// the suite caused.
    pub only_ours: bool,
}

/// The two shells of a step: one in a selected container, one not.
struct Pair {
    selected: WorkloadContainer,
    selected_index: usize,
    selected_file: String,
    other: WorkloadContainer,
    other_index: usize,
    other_file: String,
    /// The followed directory, ending with `/`.
    dir: String,
}

impl FileTraceRun<'_> {
    fn pair(&self, step: &str) -> Result<Pair> {
        let selected_index = self.workloads.index_of("xwing", "spaceship")?;
        let other_index = self.workloads.index_of("deathstar", "reactor")?;
        let selected = self.workloads.containers[selected_index].clone();
        let other = self.workloads.containers[other_index].clone();
        if selected.identity.namespace != self.namespaces.alliance
            || other.identity.namespace == self.namespaces.alliance
        {
            bail!("xwing must be in the alliance's namespace and deathstar not");
        }
        let dir = format!("{}{step}/", self.workloads.marker_prefix());
        Ok(Pair {
            selected_file: format!("{dir}{}", selected.identity.pod),
            other_file: format!("{dir}{}", other.identity.pod),
            selected,
            selected_index,
            other,
            other_index,
            dir,
        })
    }

    /// `trace file -n <alliance> --prefix <dir>/ -o compact`: while it runs,
    /// `xwing` and `deathstar` each write a file of the directory and read
    /// it back. The trace shows `xwing`'s shell, its open, write, read and
    /// close of its file and its exit, and nothing of `deathstar`.
    pub fn follows_a_pods_files(&mut self) -> Result<()> {
        let pair = self.pair("file-follow")?;
        // The directory exists before the trace, so that no mkdir runs
        // while it does.
        for index in [pair.selected_index, pair.other_index] {
            self.workloads.make_dir(index, &pair.dir)?;
        }
        let args = [
            "trace",
            "file",
            "-n",
            &self.namespaces.alliance,
            "--prefix",
            &pair.dir,
            "-o",
            "compact",
            "-t",
            &self.seconds.to_string(),
        ];
        let mut trace = Running::spawn(&mut self.kubectl.gadget(args))?;
        let title = format!("kubectl gadget {}", args.join(" "));
        wait_started_on_stderr(&mut trace, &title, self.nodes)?;

        // dd reads with read(2), GNU's and busybox's alike. cat would not
        // do here: busybox's copies with sendfile(2) and GNU's, to a
        // regular file, with copy_file_range(2), which trace file does not
        // follow (README: what it cannot see).
        let script = |file: &str| {
            let file = shell_quote(file);
            format!("echo {SECRET} > {file}; dd if={file} bs=64 count=1 2>/dev/null")
        };
        let selected_script = script(&pair.selected_file);
        let other_script = script(&pair.other_file);
        for (index, script) in [
            (pair.selected_index, &selected_script),
            (pair.other_index, &other_script),
        ] {
            let ran = self.workloads.run_shell(index, script)?;
            if ran.ended != Ended::Exited(0) || ran.stdout != format!("{SECRET}\n") {
                bail!("sh -c {script:?} should print {SECRET} and exit 0: {ran:?}");
            }
        }
        let finished = trace.finish(Duration::from_secs(self.seconds.into()) + END_GRACE)?;
        let problems = self.follow_problems(&pair, &selected_script, &finished);
        if !problems.is_empty() {
            return traces::report(vec![(
                title,
                problems,
                format!("{}\n{}", finished.stdout, finished.stderr),
            )]);
        }
        eprintln!(
            "e2e:   {} rows of {}/{}, none of {}/{}",
            finished.stdout_lines().count(),
            pair.selected.identity.namespace,
            pair.selected.identity.pod,
            pair.other.identity.namespace,
            pair.other.identity.pod
        );
        Ok(())
    }

    fn follow_problems(&self, pair: &Pair, script: &str, finished: &Finished) -> Vec<String> {
        let mut problems = Vec::new();
        if finished.code() != Some(0) {
            problems.push(format!("exited with {}", finished.status));
        }
        for line in finished.stderr_lines() {
            let status = line
                .split_once(": ")
                .filter(|(node, _)| self.nodes.iter().any(|n| n == node));
            match status {
                Some((_, "trace started")) => {}
                Some((_, rest)) if rest.starts_with("warning: ") => {}
                // The suite's nodes share one kernel, and each node's cgroup
                // view holds only its own pods: the other nodes' containers
                // are cgroups it never finds, whose events it counts.
                Some((_, rest)) if rest.ends_with(UNJUDGED) => {}
                _ => problems.push(format!("stderr: {line}")),
            }
        }
        let rows: Vec<CompactRow> = match finished
            .stdout_lines()
            .filter(|line| !line.trim().is_empty())
            .map(CompactRow::parse)
            .collect()
        {
            Ok(rows) => rows,
            Err(err) => {
                problems.push(err.to_string());
                return problems;
            }
        };
        let mine = place(&pair.selected);
        let theirs = place(&pair.other);
        let file = &pair.selected_file;
        // The script is one argument with spaces: compact output quotes it
        // (it holds no `"`, backslash or control character to escape).
        let quoted = format!("\"{script}\"");
        let exec = rows.iter().find(|row| {
            row.is("🚀", "process", &mine) && row.rest.ends_with(&format!(" -c {quoted}"))
        });
        let shell = match exec {
            Some(row) => row.rest.split(' ').next().unwrap_or_default().to_string(),
            None => {
                problems.push(format!("no row `🚀 process {mine} <sh> -c {quoted}`"));
                String::new()
            }
        };
        let bytes = format!(" {file} {} bytes", SECRET.len() + 1);
        let wanted = [
            ("📬", "open", format!(" {file}")),
            ("📝", "write", bytes.clone()),
            ("📚", "read", bytes),
            ("📪", "close", format!(" {file}")),
        ];
        for (emoji, word, end) in wanted {
            if !rows
                .iter()
                .any(|row| row.is(emoji, word, &mine) && row.rest.ends_with(&end))
            {
                problems.push(format!("no row `{emoji} {word} {mine} <exe>{end}`"));
            }
        }
        if !shell.is_empty()
            && !rows.iter().any(|row| {
                row.is("💥", "exit", &mine)
                    && row.rest.starts_with(&format!("{shell} "))
                    && row.rest.ends_with(" 0")
            })
        {
            problems.push(format!("no row `💥 exit {mine} {shell} ... 0`"));
        }
        for row in &rows {
            let about_theirs = row.place == theirs || row.line.contains(&pair.other_file);
            let about_my_file = row.line.contains(file.as_str());
            let in_namespace = row
                .place
                .starts_with(&format!("{}/", self.namespaces.alliance));
            if about_theirs {
                problems.push(format!(
                    "a row of {theirs}, which -n {} does not select: {}",
                    self.namespaces.alliance, row.line
                ));
            } else if about_my_file && row.place != mine {
                problems.push(format!(
                    "{file} is attributed to {}: {}",
                    row.place, row.line
                ));
            } else if row.emoji == "❌" && about_my_file {
                problems.push(format!("a failed operation: {}", row.line));
            } else if self.only_ours && row.place != mine {
                problems.push(format!("a row the suite did not cause: {}", row.line));
            } else if !in_namespace {
                problems.push(format!("a row outside -n's namespace: {}", row.line));
            }
        }
        problems
    }

    /// `trace file -n <alliance> --prefix <dir>/ --kill-on write -o json`
    /// (which first says on stderr what it enforces, on whom):
    /// `xwing`'s shell appending to its file is SIGKILLed before a byte
    /// lands, and says so (`file_write` with `killed`, `process_exit` with
    /// SIGKILL); `deathstar`'s shell, appending to a followed path but not
    /// selected, is neither killed nor shown, and its bytes land.
    pub fn kill_on_write(&mut self) -> Result<()> {
        let pair = self.pair("file-kill")?;
        for (index, file) in [
            (pair.selected_index, &pair.selected_file),
            (pair.other_index, &pair.other_file),
        ] {
            self.workloads.make_dir(index, &pair.dir)?;
            self.workloads.write_file(index, file, ORIGINAL)?;
        }
        let alliance = self.namespaces.alliance.clone();
        let case = TraceCase::new(
            &[
                "file",
                "-n",
                &alliance,
                "--prefix",
                &pair.dir,
                "--kill-on",
                "write",
            ],
            self.nodes,
            {
                let alliance = alliance.clone();
                move |c| c.identity.namespace == alliance
            },
        );
        let mut trace = RunningTrace::start(self.kubectl, case, self.seconds)?;
        trace.wait_started()?;

        let script =
            |file: &str| format!("echo {APPENDED} >> {}; echo survived", shell_quote(file));
        let selected_script = script(&pair.selected_file);
        let other_script = script(&pair.other_file);
        let killed = self
            .workloads
            .run_shell(pair.selected_index, &selected_script)?;
        let spared = self.workloads.run_shell(pair.other_index, &other_script)?;
        let (case, finished) = trace.finish(self.seconds)?;

        let mut problems = Vec::new();
        if killed.ended != Ended::Signaled(libc::SIGKILL) || killed.stdout.contains("survived") {
            problems.push(format!(
                "sh -c {selected_script:?} in {} should die of SIGKILL before its echo: {}",
                place(&pair.selected),
                show_run(&killed)
            ));
        }
        if spared.ended != Ended::Exited(0) || spared.stdout != "survived\n" {
            problems.push(format!(
                "sh -c {other_script:?} in {}, which the trace does not select, should exit 0 \
                 after its echo: {}",
                place(&pair.other),
                show_run(&spared)
            ));
        }
        let contents = [
            (
                pair.selected_index,
                &pair.selected_file,
                ORIGINAL.to_string(),
            ),
            (
                pair.other_index,
                &pair.other_file,
                format!("{ORIGINAL}{APPENDED}\n"),
            ),
        ];
        for (index, file, wanted) in contents {
            let got = self.workloads.read_file(index, file)?;
            if got != wanted {
                problems.push(format!("{file} holds {got:?}, not {wanted:?}"));
            }
        }
        problems.extend(self.kill_problems(&pair, &selected_script, &finished));
        if !problems.is_empty() {
            return traces::report(vec![(
                case.title(),
                problems,
                format!("{}\n{}", finished.stdout, finished.stderr),
            )]);
        }
        let stderr = if finished.stderr.trim().is_empty() {
            "nothing".to_string()
        } else {
            format!("\n{}", indent(&finished.stderr))
        };
        eprintln!(
            "e2e:   {} killed at its write, {} spared; the client's stderr: {stderr}",
            place(&pair.selected),
            place(&pair.other)
        );
        Ok(())
    }

    fn kill_problems(&self, pair: &Pair, script: &str, finished: &Finished) -> Vec<String> {
        let mut problems = Vec::new();
        if finished.code() != Some(0) {
            problems.push(format!("exited with {}", finished.status));
        }
        // The client says what it enforces and on whom before any row.
        let notice = format!(
            "enforcing while this trace runs: SIGKILL at write of files under {}, \
             to processes of pods in namespace {}; not the host's processes",
            pair.dir, self.namespaces.alliance
        );
        let mut noticed = 0;
        for line in finished
            .stderr_lines()
            .filter(|line| !line.starts_with("warning: "))
        {
            if line == notice {
                noticed += 1;
            } else {
                problems.push(format!("stderr: {line}"));
            }
        }
        if noticed != 1 {
            problems.push(format!(
                "stderr should say once, before the rows: {notice}; it said it {noticed} times"
            ));
        }
        let rows: Vec<JsonRow> = match finished
            .stdout_lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("not a JSON line of a trace: {line}"))
            })
            .collect::<Result<_>>()
        {
            Ok(rows) => rows,
            Err(err) => {
                problems.push(err.to_string());
                return problems;
            }
        };
        let statuses: Vec<Line> = finished
            .stdout_lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let heard: BTreeSet<String> = events::statuses(&statuses)
            .map(|status| status.node.clone())
            .collect();
        let nodes: BTreeSet<String> = self.nodes.iter().cloned().collect();
        if heard != nodes {
            problems.push(format!(
                "statuses came from [{}], not from [{}]",
                join(&heard),
                join(&nodes)
            ));
        }
        for status in events::statuses(&statuses) {
            if let Some(error) = &status.error {
                problems.push(format!("node {} failed: {error}", status.node));
            }
        }
        let me = &pair.selected.identity;
        let mine = |row: &&JsonRow| row.k8s.as_ref() == Some(me) && row.node == pair.selected.node;
        let file = pair.selected_file.as_str();
        if !rows.iter().filter(mine).any(|row| {
            row.kind == "process_exec"
                && row.args.get(1).and_then(Value::as_str) == Some("-c")
                && row.args.get(2).and_then(Value::as_str) == Some(script)
        }) {
            problems.push(format!(
                "no process_exec of sh -c {script:?} by {}",
                place(&pair.selected)
            ));
        }
        let writes: Vec<&JsonRow> = rows
            .iter()
            .filter(|row| row.kind == "file_write" && row.path_is(file))
            .collect();
        match writes.as_slice() {
            [write] if mine(write) && write.killed == Some(true) && write.bytes.is_none() => {}
            _ => problems.push(format!(
                "expected one file_write of {file} by {} on {}, killed, with no bytes; got {}",
                place(&pair.selected),
                pair.selected.node,
                writes.len()
            )),
        }
        if !rows.iter().filter(mine).any(|row| {
            row.kind == "process_exit"
                && row.signal.as_ref().is_some_and(|signal| {
                    signal.number == libc::SIGKILL && signal.name.as_deref() == Some("SIGKILL")
                })
        }) {
            problems.push(format!(
                "no process_exit of {} with signal SIGKILL",
                place(&pair.selected)
            ));
        }
        for row in &rows {
            if row.kind == "status" {
                continue;
            }
            let namespace = row.k8s.as_ref().map(|k8s| k8s.namespace.as_str());
            if row.k8s.as_ref() == Some(&pair.other.identity) || row.path_is(&pair.other_file) {
                problems.push(format!(
                    "a row of {}, which -n {} does not select: {row:?}",
                    place(&pair.other),
                    self.namespaces.alliance
                ));
            } else if self.only_ours && !mine(&row) {
                problems.push(format!("a row the suite did not cause: {row:?}"));
            } else if namespace != Some(self.namespaces.alliance.as_str()) {
                problems.push(format!("a row outside -n's namespace: {row:?}"));
            }
        }
        problems
    }
}

/// Waits until every one of `nodes` says on stderr that its trace started,
/// as `-o compact` and `-o columns` print it (`<node>: trace started`).
pub fn wait_started_on_stderr(trace: &mut Running, title: &str, nodes: &[String]) -> Result<()> {
    let wanted: BTreeSet<String> = nodes.iter().cloned().collect();
    let what = format!("{title} to start on {}", join(&wanted));
    trace.wait_for_stderr(&what, START_TIMEOUT, |lines| {
        let started: BTreeSet<String> = lines
            .iter()
            .filter_map(|line| line.strip_suffix(": trace started"))
            .map(str::to_string)
            .collect();
        if started.is_superset(&wanted) {
            Poll::Ready(())
        } else {
            Poll::Pending(format!(
                "started on [{}]; stderr: {}",
                join(&started),
                lines.join(" | ")
            ))
        }
    })
}

/// `namespace/pod`, as compact rows say where a process ran.
fn place(container: &WorkloadContainer) -> String {
    format!(
        "{}/{}",
        container.identity.namespace, container.identity.pod
    )
}

fn show_run(run: &ShellRun) -> String {
    format!(
        "{:?}, stdout {:?}, stderr {:?}",
        run.ended, run.stdout, run.stderr
    )
}

/// One line of `-o compact`: `<emoji> <word> <where> <rest>`, the word
/// padded to 7 columns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CompactRow {
    emoji: String,
    word: String,
    /// `namespace/pod`, or `host <node>`.
    place: String,
    /// The executable and what follows it.
    rest: String,
    /// The whole line, for messages.
    line: String,
}

impl CompactRow {
    fn parse(line: &str) -> Result<CompactRow> {
        let bad = || anyhow::anyhow!("not a compact line of trace file: {line}");
        let (emoji, after) = line.split_once(' ').ok_or_else(bad)?;
        let (word, after) = after.trim_start().split_once(' ').ok_or_else(bad)?;
        let after = after.trim_start();
        let (place, rest) = match after.strip_prefix("host ") {
            Some(host) => {
                let (node, rest) = host.split_once(' ').ok_or_else(bad)?;
                (format!("host {node}"), rest)
            }
            None => {
                let (place, rest) = after.split_once(' ').ok_or_else(bad)?;
                (place.to_string(), rest)
            }
        };
        Ok(CompactRow {
            emoji: emoji.to_string(),
            word: word.to_string(),
            place,
            rest: rest.to_string(),
            line: line.to_string(),
        })
    }

    fn is(&self, emoji: &str, word: &str, place: &str) -> bool {
        self.emoji == emoji && self.word == word && self.place == place
    }
}

/// The fields of a `-o json` line of trace file the suite checks.
#[derive(Debug, Deserialize)]
struct JsonRow {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    k8s: Option<Identity>,
    #[serde(default)]
    path: Option<Value>,
    #[serde(default)]
    bytes: Option<i64>,
    #[serde(default)]
    killed: Option<bool>,
    #[serde(default)]
    signal: Option<Signal>,
    #[serde(default)]
    args: Vec<Value>,
}

impl JsonRow {
    fn path_is(&self, path: &str) -> bool {
        self.path.as_ref().and_then(Value::as_str) == Some(path)
    }
}

/// The signal that ended a process.
#[derive(Debug, Deserialize)]
struct Signal {
    number: i32,
    name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_rows_of_pods_and_hosts() {
        let row =
            CompactRow::parse("📝 write   default/xwing /usr/bin/dash /tmp/m/f 7 bytes").unwrap();
        assert_eq!(
            (row.emoji.as_str(), row.word.as_str(), row.place.as_str()),
            ("📝", "write", "default/xwing")
        );
        assert_eq!(row.rest, "/usr/bin/dash /tmp/m/f 7 bytes");
        assert!(row.is("📝", "write", "default/xwing"));
        let row = CompactRow::parse("🚀 process host node-1 /usr/bin/sh -c echo a > b").unwrap();
        assert_eq!(row.place, "host node-1");
        assert_eq!(row.rest, "/usr/bin/sh -c echo a > b");
        let row = CompactRow::parse("💥 exit    empire/deathstar /bin/busybox SIGKILL").unwrap();
        assert!(row.is("💥", "exit", "empire/deathstar"));
        assert_eq!(row.rest, "/bin/busybox SIGKILL");
    }

    #[test]
    fn lines_that_are_not_compact_rows_are_named() {
        let err = CompactRow::parse("NODE NAMESPACE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a compact line of trace file: NODE NAMESPACE"
        );
    }

    #[test]
    fn json_rows_of_a_killed_write_and_its_exit() {
        let write: JsonRow = serde_json::from_str(
            r#"{"type":"file_write","node":"n","k8s":null,"path":"/tmp/f","bytes":null,
                "killed":true,"error":{"errno":4,"name":"EINTR"}}"#,
        )
        .unwrap();
        assert!(write.path_is("/tmp/f") && write.killed == Some(true) && write.bytes.is_none());
        let exit: JsonRow = serde_json::from_str(
            r#"{"type":"process_exit","node":"n","exit_code":0,
                "signal":{"number":9,"name":"SIGKILL"},"args":[]}"#,
        )
        .unwrap();
        let signal = exit.signal.unwrap();
        assert_eq!(
            (signal.number, signal.name.as_deref()),
            (9, Some("SIGKILL"))
        );
        let status: JsonRow =
            serde_json::from_str(r#"{"type":"status","node":"n","started":true,"error":null}"#)
                .unwrap();
        assert_eq!(status.kind, "status");
    }
}
