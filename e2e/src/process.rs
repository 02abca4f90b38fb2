//! Child processes of the suite: run with a deadline, their output
//! collected while they run, and killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::wait::{poll, Poll};

/// A running child whose stdout lines and stderr are read by threads, so
/// that it never blocks on a full pipe. Killed and reaped when dropped.
pub struct Running {
    command: String,
    child: Child,
    new_lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
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
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {line}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (send, new_lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buffer = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buffer), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&buffer);
                if send.send(text.trim_end_matches('\n').to_string()).is_err() {
                    break;
                }
                buffer.clear();
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Ok(Running {
            command: line,
            child,
            new_lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        })
    }

    /// The lines it has written to stdout so far.
    pub fn stdout_lines(&mut self) -> &[String] {
        self.stdout.extend(self.new_lines.try_iter());
        &self.stdout
    }

    /// Waits until `check` finds what it looks for in the stdout lines so
    /// far; fails when the process exits first or `timeout` passes.
    pub fn wait_for_stdout<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[String]) -> Poll<T>,
    ) -> Result<T> {
        poll(what, timeout, || {
            let exited = self.child.try_wait()?;
            let seen = check(self.stdout_lines());
            match (seen, exited) {
                (Poll::Ready(value), _) => Ok(Poll::Ready(value)),
                (Poll::Pending(seen), Some(status)) => {
                    // The pipe may still hold its last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    if let Poll::Ready(value) = check(self.stdout_lines()) {
                        return Ok(Poll::Ready(value));
                    }
                    let stderr = self.take_stderr();
                    bail!(
                        "{} exited ({status}) before {what}; {seen}\nstderr:\n{}",
                        self.command,
                        indent(&stderr)
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
                let stdout = self.stdout_lines().join("\n");
                bail!(
                    "{err}\nstdout:\n{}\nstderr:\n{}",
                    indent(&stdout),
                    indent(&self.take_stderr())
                );
            }
        };
        // The reader thread ends at EOF, after the last line.
        let stderr = self.take_stderr();
        self.stdout.extend(self.new_lines.iter());
        Ok(Finished {
            command: self.command.clone(),
            status,
            stdout: self.stdout.join("\n"),
            stderr,
        })
    }

    fn take_stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(reader)
                if reader.is_finished() || self.child.try_wait().ok().flatten().is_some() =>
            {
                reader.join().unwrap_or_default()
            }
            Some(reader) => {
                self.stderr = Some(reader);
                "(still running)".to_string()
            }
            None => String::new(),
        }
    }
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
