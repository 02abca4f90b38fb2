//! Checking a `RunGadget` request as it came over the wire into a
//! [`TracePlan`], with no I/O and nothing loaded.

use std::time::Duration;

use gadget_proto::v1;

use crate::gadgets::{self, InvalidParams, PreparedGadget};
use crate::selector::ContainerSelector;

/// Ring buffer size when the request does not say.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 512 * 1024;
/// The largest ring buffer a request may ask for.
pub const MAX_RING_BUFFER_BYTES: u32 = 256 * 1024 * 1024;

/// A request a node cannot run as asked; becomes `INVALID_ARGUMENT`.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    /// The client speaks another protocol version.
    #[error(
        "client speaks protocol version {client}, this node speaks version {node}; \
         use matching kubectl-gadget and gadget-node releases"
    )]
    Protocol {
        /// The client's version.
        client: u32,
        /// This node's version.
        node: u32,
    },
    /// No gadget by that name.
    #[error("unknown gadget {name:?}; this node has: {known}")]
    UnknownGadget {
        /// What was asked for.
        name: String,
        /// What there is.
        known: String,
    },
    /// The gadget's parameters.
    #[error("{gadget}: {source}")]
    Params {
        /// The gadget.
        gadget: String,
        /// What is wrong.
        source: InvalidParams,
    },
    /// The container selector.
    #[error("{0}")]
    Selector(String),
    /// The ring buffer size.
    #[error("ring buffer of {0} bytes is above the limit of {MAX_RING_BUFFER_BYTES}")]
    RingBuffer(u32),
}

/// A validated trace request: parsed and checked, nothing loaded yet.
pub struct TracePlan {
    /// The gadget with its parameters.
    pub gadget: Box<dyn PreparedGadget>,
    /// Which containers (and whether the host) to follow.
    pub selector: ContainerSelector,
    /// Only this process (thread group id).
    pub pid: Option<u32>,
    /// Only this user.
    pub uid: Option<u32>,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Stop after this long.
    pub timeout: Option<Duration>,
}

impl TracePlan {
    /// Checks a request as it came over the wire.
    pub fn from_proto(request: &v1::RunGadgetRequest) -> Result<Self, InvalidRequest> {
        if request.protocol_version != gadget_proto::PROTOCOL_VERSION {
            return Err(InvalidRequest::Protocol {
                client: request.protocol_version,
                node: gadget_proto::PROTOCOL_VERSION,
            });
        }
        let gadget =
            gadgets::find(&request.gadget).ok_or_else(|| InvalidRequest::UnknownGadget {
                name: request.gadget.clone(),
                known: gadgets::names().join(", "),
            })?;
        let prepared =
            gadget
                .prepare(request.params.as_ref())
                .map_err(|source| InvalidRequest::Params {
                    gadget: request.gadget.clone(),
                    source,
                })?;
        let selector = ContainerSelector::from_proto(&request.selector.clone().unwrap_or_default())
            .map_err(|err| InvalidRequest::Selector(err.to_string()))?;
        let filter = request.filter.unwrap_or_default();
        Ok(TracePlan {
            gadget: prepared,
            selector,
            pid: filter.pid,
            uid: filter.uid,
            ring_buffer_bytes: ring_buffer_size(request.ring_buffer_bytes)?,
            timeout: (request.timeout_seconds > 0)
                .then(|| Duration::from_secs(request.timeout_seconds.into())),
        })
    }
}

/// The ring buffer size the kernel accepts for a requested one: a power of
/// two number of pages.
fn ring_buffer_size(requested: u32) -> Result<u32, InvalidRequest> {
    if requested > MAX_RING_BUFFER_BYTES {
        return Err(InvalidRequest::RingBuffer(requested));
    }
    let requested = if requested == 0 {
        DEFAULT_RING_BUFFER_BYTES
    } else {
        requested
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    Ok(requested.max(page).next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_sizes_are_pages_and_powers_of_two() {
        assert_eq!(ring_buffer_size(0).unwrap(), DEFAULT_RING_BUFFER_BYTES);
        assert_eq!(ring_buffer_size(1).unwrap(), 4096);
        assert_eq!(ring_buffer_size(5000).unwrap(), 8192);
        assert!(ring_buffer_size(MAX_RING_BUFFER_BYTES + 1).is_err());
    }
}
