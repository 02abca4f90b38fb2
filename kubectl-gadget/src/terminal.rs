//! Text from remote parties on its way to the terminal: node names and
//! answers from gadget-node, and messages, events and object names from the
//! API server. Any of them may hold control characters or escape sequences
//! (an event message is whatever a component, or a user allowed to create
//! events, wrote), so each goes through gadget-trace's escaper before it is
//! printed, as events do.
//!
//! Text is escaped once, where it is put into a line for the terminal:
//! errors when `main` prints them ([`error_line`]), report and progress
//! lines where they are composed. Strings kept for other uses (errors
//! passed on, a node's name in JSON output) stay raw, so nothing is escaped
//! twice.

/// `text` with every control, invisible or invalid part escaped (`\x1b`,
/// `\n`, `\u{202e}`...), so that it cannot drive the terminal.
pub use gadget_trace::render::escaped;

/// The line `main` prints for an error that ended the command: `error: `
/// and the error with its causes, escaped, on one line.
pub fn error_line(err: &anyhow::Error) -> String {
    escaped(&format!("error: {err:#}"))
}

/// Hostile strings, for the tests of everything that prints remote text.
#[cfg(test)]
pub(crate) mod fixtures {
    /// Strings that would move the cursor, clear the screen, set the window
    /// title, start a second line, reorder the line, or start a C1 escape.
    pub(crate) const HOSTILE: [&str; 6] = [
        "\x1b[2J\x1b[H",
        "\x1b]0;pwned\x07",
        "line\nfake: second line",
        "back\rspace",
        "\u{202e}txt.exe",
        "\u{9b}31m",
    ];

    /// Fails unless `text` holds no control or direction-changing character.
    pub(crate) fn assert_inert(text: &str) {
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{assert_inert, HOSTILE};
    use super::*;
    use crate::api_error::ApiError;

    #[test]
    fn hostile_strings_are_escaped() {
        assert_eq!(escaped("node-1"), "node-1");
        assert_eq!(escaped("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escaped("a\nb"), "a\\nb");
        for hostile in HOSTILE {
            assert_inert(&escaped(hostile));
        }
    }

    /// Regression: API-server messages were printed raw by `main`.
    #[test]
    fn api_server_messages_in_errors_are_escaped() {
        let status = kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code: 422,
            message: "DaemonSet.apps \"gadget-node\" is invalid: \x1b]0;pwned\x07\x1b[2J".into(),
            reason: "Invalid".into(),
            metadata: None,
            details: None,
        };
        let err = ApiError::from_kube(
            &kube::Error::Api(Box::new(status)),
            "apply daemonset.apps/gadget-node",
            None,
        );
        let line = error_line(&err.into());
        assert_eq!(
            line,
            "error: cannot apply daemonset.apps/gadget-node: DaemonSet.apps \"gadget-node\" \
             is invalid: \\x1b]0;pwned\\x07\\x1b[2J"
        );
    }

    /// Regression: the names of failed nodes (which a node chooses, in
    /// direct mode) were printed raw in the trace's final error.
    #[test]
    fn node_names_in_the_trace_failure_are_escaped() {
        let summary = gadget_trace::print::TraceSummary {
            nodes: vec!["node-a".into(), "evil\x1b[2J\nnode".into()],
            failed: vec!["evil\x1b[2J\nnode".into()],
            ..Default::default()
        };
        let line = error_line(&anyhow::anyhow!(summary.failure().unwrap()));
        assert_eq!(
            line,
            "error: the trace failed on 1 of 2 nodes: evil\\x1b[2J\\nnode"
        );
        assert_inert(&line);
    }
}
