//! The `compact` output: one short line per event, led by an emoji for its
//! kind, in the spirit of `tetra getevents -o compact`:
//!
//! ```text
//! 🚀 process default/xwing /usr/bin/vi /etc/passwd
//! 📬 open    default/xwing vi /etc/passwd
//! ❌ open    default/xwing vi /etc/shadow EACCES
//! 🚀 process host node-1 /usr/sbin/sshd -D
//! ```
//!
//! The emoji and the word after it say what happened; the word is padded
//! to 7 columns (`process`, the longest) so that what follows lines up.
//! Every gadget uses the same words for the same things: `process` for a
//! program being executed (trace exec, trace file), `open` for a file
//! being opened (trace open, trace file).
//!
//! After the word comes where it ran: `namespace/pod`, or `host <node>`
//! for a process in no container (a host process means little without its
//! node). The container's name is left to the columns and JSON outputs.
//! Then what the gadget shows ([`crate::gadgets::GadgetFrontend::write_compact`]):
//! a `process` line shows the program then its arguments after `argv[0]`;
//! trace open's `open` line the command then the path. A failed call starts
//! with ❌ and ends with its errno's name.

use super::errno::write_errno;
use super::escape::write_escaped;
use super::Row;
use crate::gadgets;

/// Columns the word after the emoji is padded to: `process`, the longest.
const WORD_WIDTH: usize = 7;

/// Writes `row` as one compact line and a newline.
pub(crate) fn write_event(out: &mut Vec<u8>, row: &Row) {
    let gadget = gadgets::of_event(row.event);
    let failure = gadget.and_then(|gadget| gadget.failure(row.event));
    let word = gadget.and_then(|gadget| gadget.compact_word(row.event));
    let emoji = match failure {
        Some(_) => Some("❌"),
        None => gadget.and_then(|gadget| gadget.emoji(row.event)),
    };
    let (emoji, word) = (emoji.unwrap_or("❓"), word.unwrap_or("event"));
    out.extend_from_slice(emoji.as_bytes());
    out.push(b' ');
    out.extend_from_slice(word.as_bytes());
    out.resize(out.len() + WORD_WIDTH.saturating_sub(word.len()), b' ');
    out.push(b' ');
    write_where(out, row);
    let comm = row.event.process.as_ref().map_or(&b""[..], |p| &p.comm[..]);
    match gadget {
        Some(gadget) => gadget.write_compact(out, comm, row.event),
        None => {
            out.push(b' ');
            write_escaped(out, comm);
        }
    }
    if let Some(errno) = failure {
        out.push(b' ');
        write_errno(out, errno);
    }
    out.push(b'\n');
}

fn write_where(out: &mut Vec<u8>, row: &Row) {
    match row.workload {
        Some(workload) => {
            write_name(out, &workload.namespace);
            out.push(b'/');
            write_name(out, &workload.pod);
        }
        None => {
            out.extend_from_slice(b"host ");
            write_name(out, row.node);
        }
    }
}

/// A Kubernetes name, or `?` when the node could not tell it.
fn write_name(out: &mut Vec<u8>, name: &str) {
    if name.is_empty() {
        out.push(b'?');
    } else {
        write_escaped(out, name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{exec_event, open_event, workload};
    use gadget_proto::v1::{event, Workload};

    fn line(row: &Row) -> String {
        let mut out = Vec::new();
        write_event(&mut out, row);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exec_shows_program_then_args_after_argv0() {
        let event = exec_event(b"/usr/bin/vi", &[b"vi", b"/etc/passwd"], 0);
        let workload = workload();
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(
            line(&row),
            "🚀 process default/xwing /usr/bin/vi /etc/passwd\n"
        );
    }

    #[test]
    fn open_shows_command_then_path() {
        let event = open_event(b"/etc/passwd", 3, 0);
        let workload = workload();
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(line(&row), "📬 open    default/xwing vi /etc/passwd\n");
    }

    #[test]
    fn failures_are_marked_and_end_with_the_errno() {
        let workload = workload();
        let event = open_event(b"/etc/shadow", -1, 13);
        let row = Row {
            node: "n",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(
            line(&row),
            "❌ open    default/xwing vi /etc/shadow EACCES\n"
        );
        let event = exec_event(b"/nope", &[b"nope", b"-x"], -2);
        let row = Row {
            node: "n",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(line(&row), "❌ process default/xwing /nope -x ENOENT\n");
    }

    #[test]
    fn host_process_shows_host_and_node() {
        let event = exec_event(b"/usr/sbin/sshd", &[b"sshd", b"-D"], 0);
        let row = Row {
            node: "node-1",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&row), "🚀 process host node-1 /usr/sbin/sshd -D\n");
    }

    /// Regression: a fileless exec (`execveat(fd, "", AT_EMPTY_PATH)`)
    /// showed `argv[0]`, which the caller chooses, as the program.
    #[test]
    fn exec_without_exe_never_shows_argv0_as_the_program() {
        let event = exec_event(b"", &[b"sshd", b"-c", b"true"], -2);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&row), "❌ process host n \"\" -c true ENOENT\n");
        let mut event = exec_event(b"", &[b"sshd"], -14);
        if let Some(event::Kind::Exec(exec)) = &mut event.kind {
            exec.exe_unreadable = true;
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&row), "❌ process host n <unreadable> EFAULT\n");
    }

    #[test]
    fn exec_names_and_arguments_cannot_fake_boundaries_or_cuts() {
        let mut event = exec_event(
            "/tmp/a b…".as_bytes(),
            &[b"a", b"x /etc/shadow", "…".as_bytes()],
            0,
        );
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&row),
            "🚀 process host n \"/tmp/a b…\" \"x /etc/shadow\" \"…\"\n"
        );
        if let Some(event::Kind::Exec(exec)) = &mut event.kind {
            exec.exe_truncated = true;
            exec.args_truncated = true;
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&row),
            "🚀 process host n \"/tmp/a b…\"… \"x /etc/shadow\" \"…\" …\n"
        );
    }

    #[test]
    fn truncation_and_unknown_names_are_visible() {
        let mut event = exec_event(b"/bin/echo", &[b"echo", b"a"], 0);
        if let Some(event::Kind::Exec(exec)) = &mut event.kind {
            exec.args_truncated = true;
        }
        let pending = Workload {
            container_id: "abc".into(),
            ..Workload::default()
        };
        let row = Row {
            node: "n",
            workload: Some(&pending),
            event: &event,
        };
        assert_eq!(line(&row), "🚀 process ?/? /bin/echo a …\n");
    }

    #[test]
    fn hostile_path_and_args_are_escaped() {
        let event = exec_event(b"/tmp/\x1b[2J", &[b"x", b"a\nb", b"\xff\x9b"], 0);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        let line = line(&row);
        assert_eq!(line, "🚀 process host n /tmp/\\x1b[2J a\\nb \\xff\\x9b\n");
        assert!(!line.trim_end_matches('\n').chars().any(char::is_control));
    }
}
