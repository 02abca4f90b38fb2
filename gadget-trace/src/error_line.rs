//! Errors as the one line a person reads: a chain of causes flattened into
//! `a: b: c`. The one place that does it, for the plugin, the node agent and
//! the streams of a trace.

use std::error::Error;

/// Links of error chains that only say which layer passed the error on.
const UNINFORMATIVE: &[&str] = &["transport error", "client error (Connect)"];

/// An error and its sources on one line, `a: b: c`, leaving out a source
/// whose text its parent already shows, and links that say nothing.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err.to_string();
        let shown = parts.iter().any(|part| part.contains(&text));
        if !text.is_empty() && !shown && !UNINFORMATIVE.contains(&text.as_str()) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// What a failed call to a node says, in one line.
pub fn status_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    if message.is_empty() {
        message = format!("{:?}", status.code());
    }
    // A broken connection carries the transport's reason as the source.
    if let Some(source) = status.source() {
        let cause = error_chain(source);
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_leaves_out_what_the_parent_already_says() {
        #[derive(Debug, thiserror::Error)]
        #[error("service error: {0}")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&err), "service error: connection refused");

        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Plain(#[source] std::io::Error);
        let err = Plain(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&err), "tcp connect error: connection refused");
    }

    #[test]
    fn a_status_without_a_message_says_its_code() {
        let status = tonic::Status::new(tonic::Code::Unavailable, "");
        assert_eq!(status_message(&status), "Unavailable");
    }
}
