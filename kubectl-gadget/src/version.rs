//! The `version` command: this client's version and protocol, the version
//! deploy recorded on the cluster, and what every node says about itself,
//! as a table.

use std::io::{self, Write};

use futures::future::join_all;
use gadget_proto::v1::NodeInfoResponse;
use gadget_proto::{check_protocol, PROTOCOL_VERSION};

use crate::connect::{self, ConnectError, NodeError};
use crate::request::VersionRequest;
use crate::terminal::escaped;

/// The version of this client.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one node answered.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeVersion {
    /// The node's name (or address, when it did not answer).
    pub name: String,
    /// Its NodeInfo, or why there is none.
    pub info: Result<NodeInfoResponse, NodeError>,
}

impl NodeVersion {
    /// Whether the node can be traced: it answered, in this protocol.
    pub fn is_usable(&self) -> bool {
        self.info
            .as_ref()
            .is_ok_and(|info| check_protocol(info.protocol_version).is_ok())
    }
}

/// The line about this client.
pub fn client_line() -> String {
    format!("Client Version: {CLIENT_VERSION} (protocol {PROTOCOL_VERSION})")
}

/// Prints the client's version, then (unless `--client`) asks every node
/// for its NodeInfo, concurrently, and prints a table. Returns the nodes'
/// answers.
pub async fn run(
    request: &VersionRequest,
    out: &mut impl Write,
) -> Result<Vec<NodeVersion>, VersionError> {
    writeln!(out, "{}", client_line())?;
    out.flush()?;
    if request.client_only {
        return Ok(Vec::new());
    }
    let targets = connect::resolve_targets(&request.nodes).await?;
    if let Some(deployed) = &targets.deployed_version {
        writeln!(out, "{}", deployed_line(deployed))?;
    }
    let nodes = join_all(targets.nodes.iter().map(|target| async move {
        let info = target.dial_and_describe().await.map(|(_, info)| info);
        NodeVersion {
            name: target.display_name(info.as_ref().ok()),
            info,
        }
    }))
    .await;
    out.write_all(table(&nodes).as_bytes())?;
    out.flush()?;
    Ok(nodes)
}

/// The line about the version deploy recorded on the DaemonSet, which the
/// next deploy compares with its own (it refuses to downgrade).
pub fn deployed_line(deployed: &str) -> String {
    format!("Deployed Version: {}", escaped(deployed))
}

/// The nodes' answers as a table, one line per node.
pub fn table(nodes: &[NodeVersion]) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["NODE", "VERSION", "PROTOCOL", "KERNEL", "GADGETS", "STATUS"].map(String::from)];
    for node in nodes {
        let name = escaped(&node.name);
        match &node.info {
            Ok(info) => {
                let status = match check_protocol(info.protocol_version) {
                    Ok(()) => "ok".to_string(),
                    Err(mismatch) => format!(
                        "protocol mismatch: node {}, client {}",
                        mismatch.node, mismatch.client
                    ),
                };
                let gadgets = info
                    .gadgets
                    .iter()
                    .map(|gadget| {
                        if gadget.available {
                            escaped(&gadget.name)
                        } else {
                            format!(
                                "{} (unavailable: {})",
                                escaped(&gadget.name),
                                escaped(&gadget.reason)
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                rows.push([
                    name,
                    escaped(&info.version),
                    info.protocol_version.to_string(),
                    escaped(&info.kernel_release),
                    gadgets,
                    status,
                ]);
            }
            Err(err) => rows.push([
                name,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("error: {}", escaped(&err.to_string())),
            ]),
        }
    }
    align(rows)
}

/// Left-aligned columns separated by three spaces, as kubectl prints
/// tables; trailing spaces are cut. tabled measures display width, so wide
/// characters in node names keep the columns straight.
fn align<const N: usize>(rows: Vec<[String; N]>) -> String {
    let mut table = tabled::builder::Builder::from_iter(rows).build();
    table
        .with(tabled::settings::Style::empty())
        .with(tabled::settings::Padding::new(0, 3, 0, 0));
    let mut text = String::new();
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `version` could not ask the nodes.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The nodes could not be found.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Printing failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use gadget_proto::v1::GadgetInfo;

    fn info(protocol_version: u32) -> NodeInfoResponse {
        NodeInfoResponse {
            node_name: "node-1".into(),
            version: "0.1.0".into(),
            protocol_version,
            kernel_release: "6.8.0-45-generic".into(),
            gadgets: vec![
                GadgetInfo {
                    name: "trace_open".into(),
                    available: true,
                    reason: String::new(),
                },
                GadgetInfo {
                    name: "trace_exec".into(),
                    available: false,
                    reason: "no BTF".into(),
                },
            ],
            features: Default::default(),
        }
    }

    #[test]
    fn table_shows_each_node_and_its_problem() {
        let nodes = [
            NodeVersion {
                name: "node-1".into(),
                info: Ok(info(PROTOCOL_VERSION)),
            },
            NodeVersion {
                name: "node-2".into(),
                info: Ok(info(PROTOCOL_VERSION + 1)),
            },
            NodeVersion {
                name: "node-3\x1b[2J".into(),
                info: Err(NodeError::NotReady(
                    "gadget-node pod kubectl-gadget/x is not ready (Pending)".into(),
                )),
            },
        ];
        let text = table(&nodes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].trim_start().starts_with("NODE"), "{text}");
        assert!(lines[1].contains("node-1"), "{text}");
        assert!(lines[1].contains("6.8.0-45-generic"), "{text}");
        assert!(
            lines[1].contains("trace_open, trace_exec (unavailable: no BTF)"),
            "{text}"
        );
        assert!(lines[1].trim_end().ends_with("ok"), "{text}");
        assert!(
            lines[2].contains(&format!(
                "protocol mismatch: node {}, client {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            )),
            "{text}"
        );
        assert!(lines[3].contains("node-3\\x1b[2J"), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(lines[3].contains("error: gadget-node pod kubectl-gadget/x is not ready (Pending)"));
        assert!(nodes[0].is_usable());
        assert!(!nodes[1].is_usable());
        assert!(!nodes[2].is_usable());
    }

    #[test]
    fn deployed_version_line_is_escaped() {
        assert_eq!(deployed_line("0.1.0"), "Deployed Version: 0.1.0");
        assert_eq!(
            deployed_line("0.1.0\x1b[2J"),
            "Deployed Version: 0.1.0\\x1b[2J"
        );
    }

    #[tokio::test]
    async fn client_only_contacts_no_node() {
        let request = VersionRequest {
            client_only: true,
            // Would fail if it were used: nothing listens there.
            nodes: crate::request::NodeTargets::Direct(vec!["unix:///nonexistent/x.sock"
                .parse()
                .unwrap()]),
        };
        let mut out = Vec::new();
        let nodes = run(&request, &mut out).await.unwrap();
        assert!(nodes.is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", client_line())
        );
    }
}
