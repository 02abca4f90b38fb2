//! Human lines for a node's trace status, meant for stderr next to the
//! `columns` and `compact` outputs.

use super::escape::write_escaped;
use super::write_number;
use gadget_proto::v1::TraceStatus;

/// Writes a line for each thing the status reports, each starting with the
/// node's name, e.g.
///
/// ```text
/// node-1: 42 events lost (ring buffer full), 3 events dropped (client too slow)
/// node-1: warning: kernel lacks openat2, tracing open and openat only
/// ```
///
/// Counters are cumulative for the trace, as the node sends them. Writes
/// nothing for a status that reports nothing.
pub(crate) fn write_status_lines(out: &mut Vec<u8>, node: &str, status: &TraceStatus) {
    let start_line = |out: &mut Vec<u8>| {
        write_escaped(out, node.as_bytes());
        out.extend_from_slice(b": ");
    };
    if status.started {
        start_line(out);
        out.extend_from_slice(b"trace started\n");
    }
    let losses = [
        (status.lost_kernel, "event", "lost (ring buffer full)"),
        (status.lost_node, "event", "dropped (client too slow)"),
        (status.malformed, "record", "malformed"),
        (
            status.unjudged,
            "event",
            "of containers not identified in time for the selection",
        ),
    ];
    let mut first = true;
    for (count, noun, what) in losses {
        if count == 0 {
            continue;
        }
        if first {
            start_line(out);
        } else {
            out.extend_from_slice(b", ");
        }
        first = false;
        write_number(out, &count);
        out.push(b' ');
        out.extend_from_slice(noun.as_bytes());
        if count != 1 {
            out.push(b's');
        }
        out.push(b' ');
        out.extend_from_slice(what.as_bytes());
    }
    if !first {
        out.push(b'\n');
    }
    for warning in &status.warnings {
        start_line(out);
        out.extend_from_slice(b"warning: ");
        write_escaped(out, warning.as_bytes());
        out.push(b'\n');
    }
    if !status.error.is_empty() {
        start_line(out);
        out.extend_from_slice(b"error: ");
        write_escaped(out, status.error.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(status: &TraceStatus) -> String {
        let mut out = Vec::new();
        write_status_lines(&mut out, "node-1", status);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn losses_on_one_line() {
        let status = TraceStatus {
            lost_kernel: 42,
            lost_node: 3,
            ..TraceStatus::default()
        };
        assert_eq!(
            lines(&status),
            "node-1: 42 events lost (ring buffer full), 3 events dropped (client too slow)\n"
        );
        let status = TraceStatus {
            lost_node: 1,
            malformed: 2,
            ..TraceStatus::default()
        };
        assert_eq!(
            lines(&status),
            "node-1: 1 event dropped (client too slow), 2 records malformed\n"
        );
        let status = TraceStatus {
            unjudged: 7,
            ..TraceStatus::default()
        };
        assert_eq!(
            lines(&status),
            "node-1: 7 events of containers not identified in time for the selection\n"
        );
    }

    #[test]
    fn start_warnings_and_error() {
        let status = TraceStatus {
            started: true,
            warnings: vec!["no BTF, using tracepoints".into()],
            error: "ring buffer map: out of memory".into(),
            ..TraceStatus::default()
        };
        assert_eq!(
            lines(&status),
            "node-1: trace started\n\
             node-1: warning: no BTF, using tracepoints\n\
             node-1: error: ring buffer map: out of memory\n"
        );
    }

    #[test]
    fn empty_status_writes_nothing() {
        assert_eq!(lines(&TraceStatus::default()), "");
    }

    #[test]
    fn messages_cannot_forge_lines() {
        let status = TraceStatus {
            error: "bad\nnode-2: fine\x1b[0m".into(),
            ..TraceStatus::default()
        };
        assert_eq!(
            lines(&status),
            "node-1: error: bad\\nnode-2: fine\\x1b[0m\n"
        );
    }
}
