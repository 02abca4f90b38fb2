//! The node service protocol of kubectl-gadget: the generated messages and
//! service, its version, the gadgets' names on the wire, and what a field's
//! encoding means to both ends (the label selector syntax a selector is
//! sent in, the Kubernetes name rules, the open flags' encoding), and the
//! one rule both read from a node's kernel version (whether the gadget pod
//! needs `CAP_SYS_RESOURCE`).

pub mod k8s_names;
pub mod kernel_version;
pub mod label_selector;
pub mod open_flags;

/// Messages, client and server of the `gadget.v1` node service, generated
/// from `proto/gadget/v1/node.proto` by the build script.
// Generated code: documented only where the proto has comments, and its
// style is tonic's, not ours.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("gadget.v1");
}

/// The field numbers of the proto's oneofs that have one entry per gadget
/// (its parameters, its events), read from the proto by the build script:
/// gadget-node's tests check both ends' gadget registries against them.
pub mod oneof_fields {
    include!(concat!(env!("OUT_DIR"), "/oneof_fields.rs"));
}

/// The version of the node service protocol spoken by this build.
///
/// Compatibility rule: client and node must speak the same version. There is
/// no negotiation and no "compatible range": the client reads the node's
/// version from `NodeInfoResponse.protocol_version` and refuses a node whose
/// version differs (see [`check_protocol`]), and the node refuses a
/// `RunGadgetRequest` whose `protocol_version` differs from its own. Bump it
/// on any change that an older peer would misread (a field's meaning or
/// encoding, not only its number); adding a field that old peers may ignore
/// does not need a bump.
pub const PROTOCOL_VERSION: u32 = 1;

/// The RunGadget response header carrying the trace's id, for `StopTrace`.
/// A node without it (or without `StopTrace`) is stopped by cancelling the
/// call, which loses the counts since its last status.
pub const TRACE_ID_HEADER: &str = "gadget-trace-id";

// The gadgets' names in `RunGadgetRequest.gadget`, one beside each
// gadget's messages. Both ends' registries of gadgets use these, and a test
// in gadget-node checks them against the `oneof`s of the proto.

/// Name of the gadget that traces `open`, `openat` and `openat2`.
pub const TRACE_OPEN: &str = "trace_open";
/// Name of the gadget that traces `execve` and `execveat`.
pub const TRACE_EXEC: &str = "trace_exec";
/// Name of the gadget that follows files through open, read, write and
/// close.
pub const TRACE_FILE: &str = "trace_file";

/// A node speaks another protocol version than this client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node speaks protocol version {node} but this client speaks version {client}; \
     use a kubectl-gadget release that matches the deployed gadget-node"
)]
pub struct ProtocolMismatch {
    /// The version the node reported.
    pub node: u32,
    /// [`PROTOCOL_VERSION`] of this build.
    pub client: u32,
}

/// Checks the protocol version a node reported against [`PROTOCOL_VERSION`].
///
/// # Examples
///
/// ```
/// use gadget_proto::{check_protocol, PROTOCOL_VERSION};
///
/// assert!(check_protocol(PROTOCOL_VERSION).is_ok());
/// let err = check_protocol(PROTOCOL_VERSION + 1).unwrap_err();
/// assert_eq!(err.node, PROTOCOL_VERSION + 1);
/// ```
pub fn check_protocol(node: u32) -> Result<(), ProtocolMismatch> {
    if node == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolMismatch {
            node,
            client: PROTOCOL_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_protocol_version_is_accepted() {
        assert_eq!(check_protocol(PROTOCOL_VERSION), Ok(()));
    }

    #[test]
    fn protocol_mismatch_names_both_versions() {
        let message = check_protocol(7).unwrap_err().to_string();
        assert!(message.contains("version 7"), "{message}");
        assert!(
            message.contains(&format!("version {PROTOCOL_VERSION}")),
            "{message}"
        );
    }

    #[test]
    fn generated_messages_use_shared_bytes() {
        // The build script asks for `Bytes` so the node can slice event data
        // out of one buffer; a `Vec<u8>` here would silently copy.
        let buffer = bytes::Bytes::from_static(b"/etc/passwd\0/etc/shadow");
        let open = v1::OpenEvent {
            path: buffer.slice(0..11),
            ..Default::default()
        };
        assert_eq!(&open.path[..], b"/etc/passwd");
    }
}
