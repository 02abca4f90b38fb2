//! Child processes of the suite: run with a deadline, their output
//! collected while they run, and killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::wait::{poll, Poll};

/// How long an error message waits for the last output of a child that
/// has exited.
const ERROR_OUTPUT_WAIT: Duration = Duration::from_secs(2);

/// A running child whose stdout and stderr are read line by line by
/// threads, so that it never blocks on a full pipe. Killed and reaped when dropped.
pub struct Running {
    command: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

/// The lines of one of a child's pipes, read by a thread as they come.
struct Lines {
    new_lines: Receiver<String>,
    /// The lines so far, without their newlines.
    lines: Vec<String>,
    /// The bytes so far, as written (lossily UTF-8).
    text: String,
}

impl Lines {
    fn read(pipe: impl Read + Send + 'static) -> Lines {
        let (send, new_lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buffer = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buffer), Ok(n) if n > 0) {
                if send
                    .send(String::from_utf8_lossy(&buffer).into_owned())
                    .is_err()
                {
                    break;
                }
                buffer.clear();
            }
        });
        Lines {
            new_lines,
            lines: Vec::new(),
            text: String::new(),
        }
    }

    fn take(&mut self, line: String) {
        self.lines.push(line.trim_end_matches('\n').to_string());
        self.text.push_str(&line);
    }

    /// The lines read so far.
    fn so_far(&mut self) -> &[String] {
        while let Ok(line) = self.new_lines.try_recv() {
            self.take(line);
        }
        &self.lines
    }

    /// Reads to the end of the pipe: once the child and whatever inherited
    /// the pipe from it have exited.
    fn read_to_end(&mut self) {
        while let Ok(line) = self.new_lines.recv() {
            self.take(line);
        }
    }

    /// Reads to the end of the pipe, or for `limit` at most: for error
    /// messages, which must not hang on a grandchild holding the pipe.
    fn read_to_end_within(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self
            .new_lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.take(line);
        }
    }
}

/// A child that has exited, with everything it wrote.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Running {
    /// Starts `command` with stdout and stderr captured and stdin empty.
    pub fn spawn(command: &mut Command) -> Result<Running> {
        let line = display(command);
        // SAFETY: between fork and exec the child only calls signal(2),
        // which is async-signal-safe, and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // The suite stops what it started with SIGINT, as a user's
                // Ctrl-C would. A shell without job control starts its
                // background jobs with SIGINT ignored, and an ignored
                // signal stays ignored across exec: restore the default.
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {line}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(Running {
            command: line,
            child,
            stdout: Lines::read(stdout),
            stderr: Lines::read(stderr),
        })
    }

    /// The lines it has written to stdout so far.
    pub fn stdout_lines(&mut self) -> &[String] {
        self.stdout.so_far()
    }

    /// The lines it has written to stderr so far.
    pub fn stderr_lines(&mut self) -> &[String] {
        self.stderr.so_far()
    }

    /// Waits until `check` finds what it looks for in the stdout lines so
    /// far; fails when the process exits first or `timeout` passes.
    pub fn wait_for_stdout<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&[String]) -> Poll<T>,
    ) -> Result<T> {
        self.wait_for(Pipe::Stdout, what, timeout, check)
    }

    /// Waits until `check` finds what it looks for in the stderr lines so
    /// far (where `-o compact` and `-o columns` put the nodes' statuses);
    /// fails when the process exits first or `timeout` passes.
    pub fn wait_for_stderr<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&[String]) -> Poll<T>,
    ) -> Result<T> {
        self.wait_for(Pipe::Stderr, what, timeout, check)
    }

    fn wait_for<T>(
        &mut self,
        pipe: Pipe,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[String]) -> Poll<T>,
    ) -> Result<T> {
        poll(what, timeout, || {
            let exited = self.child.try_wait()?;
            let lines = match pipe {
                Pipe::Stdout => self.stdout.so_far(),
                Pipe::Stderr => self.stderr.so_far(),
            };
            match (check(lines), exited) {
                (Poll::Ready(value), _) => Ok(Poll::Ready(value)),
                (Poll::Pending(_), Some(status)) => {
                    // The pipes may still hold its last lines.
                    self.stdout.read_to_end_within(ERROR_OUTPUT_WAIT);
                    self.stderr.read_to_end_within(ERROR_OUTPUT_WAIT);
                    let lines = match pipe {
                        Pipe::Stdout => &self.stdout.lines,
                        Pipe::Stderr => &self.stderr.lines,
                    };
                    let seen = match check(lines) {
                        Poll::Ready(value) => return Ok(Poll::Ready(value)),
                        Poll::Pending(seen) => seen,
                    };
                    bail!(
                        "{} exited ({status}) before {what}; {seen}\nstdout:\n{}\nstderr:\n{}",
                        self.command,
                        indent(&self.stdout.lines.join("\n")),
                        indent(&self.stderr.text)
                    )
                }
                (Poll::Pending(seen), None) => Ok(Poll::Pending(seen)),
            }
        })
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own, not yet reaped, child.
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot interrupt {}", self.command));
        }
        Ok(())
    }

    /// Waits for it to exit; kills it and fails when `timeout` passes first.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let exited = poll(&format!("{} to exit", self.command), timeout, || {
            Ok(match self.child.try_wait()? {
                Some(status) => Poll::Ready(status),
                None => Poll::Pending(String::new()),
            })
        });
        let status = match exited {
            Ok(status) => status,
            Err(err) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.stdout.read_to_end_within(ERROR_OUTPUT_WAIT);
                self.stderr.read_to_end_within(ERROR_OUTPUT_WAIT);
                bail!(
                    "{err}\nstdout:\n{}\nstderr:\n{}",
                    indent(&self.stdout.lines.join("\n")),
                    indent(&self.stderr.text)
                );
            }
        };
        // The reader threads end at EOF, after the last line.
        self.stdout.read_to_end();
        self.stderr.read_to_end();
        Ok(Finished {
            command: self.command.clone(),
            status,
            stdout: self.stdout.lines.join("\n"),
            stderr: std::mem::take(&mut self.stderr.text),
        })
    }
}

/// Which of a child's output pipes.
#[derive(Clone, Copy)]
enum Pipe {
    Stdout,
    Stderr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Finished {
    /// Its stdout, line by line.
    pub fn stdout_lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines()
    }

    /// Its stderr, line by line.
    pub fn stderr_lines(&self) -> impl Iterator<Item = &str> {
        self.stderr.lines()
    }

    /// The exit code; `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails, with everything it wrote, unless it exited with 0.
    pub fn success(self) -> Result<Finished> {
        if !self.status.success() {
            bail!("{}", self.report(&format!("exited with {}", self.status)));
        }
        Ok(self)
    }

    /// `problem`, followed by the command and its output, for an error.
    pub fn report(&self, problem: &str) -> String {
        format!(
            "{}: {problem}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

/// Runs `command` to its end, within `timeout`.
pub fn run(command: &mut Command, timeout: Duration) -> Result<Finished> {
    Running::spawn(command)?.finish(timeout)
}

/// A command as a shell line, for messages.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| {
            let part = part.to_string_lossy();
            if part.is_empty() || part.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("{part:?}")
            } else {
                part.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text indented by four spaces, `(nothing)` when empty.
pub fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (nothing)".to_string();
    }
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_of_a_finished_process() {
        let finished = run(
            Command::new("sh").args(["-c", "echo one; echo two; echo oops >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(finished.stdout_lines().collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(finished.stderr, "oops\n");
        assert_eq!(finished.code(), Some(3));
        let err = finished.success().unwrap_err().to_string();
        assert!(
            err.starts_with("sh -c \"echo one; echo two; echo oops >&2; exit 3\": exited with"),
            "{err}"
        );
    }

    #[test]
    fn waiting_for_a_line_while_it_runs() {
        let mut running =
            Running::spawn(Command::new("sh").args(["-c", "echo ready; exec sleep 30"])).unwrap();
        let line = running
            .wait_for_stdout(
                "the ready line",
                Duration::from_secs(10),
                |lines| match lines.iter().find(|line| *line == "ready") {
                    Some(line) => Poll::Ready(line.clone()),
                    None => Poll::Pending(format!("{} lines", lines.len())),
                },
            )
            .unwrap();
        assert_eq!(line, "ready");
        running.interrupt().unwrap();
        let finished = running.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(finished.code(), None, "SIGINT ends sleep");
    }

    #[test]
    fn waiting_for_a_line_on_stderr() {
        let mut running = Running::spawn(Command::new("sh").args([
            "-c",
            "echo out; echo node-1: trace started >&2; exec sleep 30",
        ]))
        .unwrap();
        running
            .wait_for_stderr("node-1 to start", Duration::from_secs(10), |lines| {
                if lines.iter().any(|line| line == "node-1: trace started") {
                    Poll::Ready(())
                } else {
                    Poll::Pending(lines.join(" | "))
                }
            })
            .unwrap();
        assert_eq!(running.stderr_lines(), ["node-1: trace started"]);
        running.interrupt().unwrap();
        let finished = running.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(finished.stdout, "out");
        assert_eq!(finished.stderr, "node-1: trace started\n");
    }

    #[test]
    fn a_process_that_outlives_its_timeout_is_killed_and_reported() {
        let err = run(
            Command::new("sh").args(["-c", "echo started; exec sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("waiting for sh -c \"echo started; exec sleep 30\" to exit"),
            "{err}"
        );
        assert!(err.contains("    started"), "{err}");
    }

    #[test]
    fn exiting_before_the_line_is_an_error() {
        let mut running = Running::spawn(Command::new("sh").args(["-c", "echo nope >&2"])).unwrap();
        let err = running
            .wait_for_stdout("a line", Duration::from_secs(10), |_| {
                Poll::<()>::Pending("no lines".into())
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited (exit status: 0) before a line; no lines"),
            "{err}"
        );
        assert!(err.contains("    nope"), "{err}");
    }
}
