//! The second phase of parsing a trace: its raw flags ([`crate::cli`])
//! become a validated [`TraceRequest`], without any I/O.
//!
//! Whatever can be known to be wrong from the command line alone is found
//! here, before a kubeconfig is read or a node is contacted: a bad label
//! selector, an unknown output column, a name Kubernetes would refuse.

use gadget_proto::k8s_names::{self, NameProblem};
use gadget_proto::label_selector::{LabelSelector, ParseLabelSelectorError};
use gadget_proto::v1;
use gadget_proto::PROTOCOL_VERSION;

use crate::cli::TraceCommand;
use crate::gadgets::Gadget;
use crate::render::{FormatError, OutputFormat};

/// A trace to run on every selected node, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// The gadget.
    pub gadget: Gadget,
    /// Which namespaces to follow; resolved once the kubeconfig is read.
    pub namespaces: NamespaceScope,
    /// How rows are printed.
    pub output: OutputFormat,
    /// The request sent to every node, but with `selector.namespaces` left
    /// empty: see [`TraceRequest::run_request`].
    run: v1::RunGadgetRequest,
}

impl TraceRequest {
    /// Validates a `trace` command. `without_namespace` is what neither `-n`
    /// nor `-A` means: the kubeconfig context's namespace for a cluster,
    /// every namespace where there is no kubeconfig.
    pub fn from_command<H>(
        command: TraceCommand<H>,
        without_namespace: NamespaceScope,
    ) -> Result<TraceRequest, TraceRequestError> {
        let TraceCommand {
            gadget,
            common: args,
            matches,
            ..
        } = command;
        let params = gadget.params(&matches)?;
        let output = OutputFormat::parse(gadget, &args.output)?;
        let namespaces = match (&args.namespace, args.all_namespaces) {
            (Some(namespace), _) => {
                check_dns_label("namespace", namespace)?;
                NamespaceScope::Only(namespace.clone())
            }
            (None, true) => NamespaceScope::All,
            (None, false) => without_namespace,
        };
        if let Some(pod) = &args.podname {
            check_dns_subdomain("pod name", pod)?;
        }
        if let Some(container) = &args.containername {
            check_dns_label("container name", container)?;
        }
        // Sent in the canonical form the node parses back the same way.
        let label_selector = match &args.selector {
            Some(text) => text.parse::<LabelSelector>()?.to_string(),
            None => String::new(),
        };
        if args.pid == Some(0) {
            return Err(TraceRequestError::ZeroPid);
        }
        let ring_buffer_bytes = match &args.ring_buffer_size {
            Some(size) => parse_size(size)?,
            None => 0,
        };
        let run = v1::RunGadgetRequest {
            protocol_version: PROTOCOL_VERSION,
            gadget: gadget.name().to_string(),
            selector: Some(v1::ContainerSelector {
                namespaces: Vec::new(),
                pod_name: args.podname.unwrap_or_default(),
                container_name: args.containername.unwrap_or_default(),
                label_selector,
                include_host: args.host,
            }),
            filter: Some(v1::ProcessFilter {
                pid: args.pid,
                uid: args.uid,
            }),
            params: Some(params),
            timeout_seconds: args.timeout,
            ring_buffer_bytes,
        };
        Ok(TraceRequest {
            gadget,
            namespaces,
            output,
            run,
        })
    }

    /// The request to send to the nodes, with the namespaces resolved
    /// against the kubeconfig context's namespace (`None` when no
    /// kubeconfig was read).
    pub fn run_request(&self, context_namespace: Option<&str>) -> v1::RunGadgetRequest {
        let mut run = self.run.clone();
        if let Some(selector) = &mut run.selector {
            selector.namespaces = self.namespaces.resolve(context_namespace);
        }
        run
    }

    /// The trace's timeout in seconds; 0 for none.
    pub fn timeout_seconds(&self) -> u32 {
        self.run.timeout_seconds
    }
}

/// Which namespaces a trace follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// Every namespace (`-A`, or no `-n` where there is no kubeconfig).
    All,
    /// The one given with `-n`.
    Only(String),
    /// The kubeconfig context's namespace, else `default`: kubectl's rule
    /// when neither `-n` nor `-A` is given.
    ContextDefault,
}

impl NamespaceScope {
    /// The namespaces to put in the request (empty for all of them).
    pub fn resolve(&self, context_namespace: Option<&str>) -> Vec<String> {
        match self {
            NamespaceScope::All => Vec::new(),
            NamespaceScope::Only(namespace) => vec![namespace.clone()],
            NamespaceScope::ContextDefault => {
                vec![context_namespace
                    .filter(|namespace| !namespace.is_empty())
                    .unwrap_or("default")
                    .to_string()]
            }
        }
    }
}

/// Trace flags that parse but ask for something that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceRequestError {
    /// `-o` names no format, or a column the gadget does not have.
    #[error("invalid --output: {0}")]
    Output(#[from] FormatError),
    /// `-l` is not a label selector.
    #[error(transparent)]
    Selector(#[from] ParseLabelSelectorError),
    /// A name that Kubernetes would not accept, so it can match nothing.
    #[error("invalid {what} {value:?}: {problem}")]
    Name {
        /// What kind of name, e.g. "namespace".
        what: &'static str,
        /// The name as given.
        value: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// A `--prefix` that would match everything or cannot be sent.
    #[error("invalid --prefix {prefix:?}: {problem}")]
    Prefix {
        /// The value as given.
        prefix: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `--ring-buffer-size` is not a size.
    #[error("invalid --ring-buffer-size {size:?}: {problem}")]
    RingBufferSize {
        /// The value as given.
        size: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `--pid 0`, which no traced process has.
    #[error("invalid --pid 0: process ids start at 1")]
    ZeroPid,
    /// A limit of 0, which the protocol reads as "the node's default".
    #[error("invalid {flag} 0: it must be at least 1 (leave it out for the node's default)")]
    ZeroLimit {
        /// The flag.
        flag: &'static str,
    },
}

/// Parses `--ring-buffer-size`: bytes, or a number with a K or M suffix
/// (binary: K = 1024), as `Ki`/`KiB` and `Mi`/`MiB` too.
fn parse_size(text: &str) -> Result<u32, TraceRequestError> {
    let bad = |problem: &'static str| TraceRequestError::RingBufferSize {
        size: text.to_string(),
        problem,
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let multiplier: u64 = match suffix {
        "" | "B" => 1,
        "K" | "Ki" | "KiB" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        _ => {
            return Err(bad(
                "expected bytes, or a number with a K or M suffix, e.g. 512K or 16M",
            ))
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| bad("expected bytes, or a number with a K or M suffix, e.g. 512K or 16M"))?;
    if number == 0 {
        return Err(bad(
            "it must be more than 0 (leave it out for the node's default)",
        ));
    }
    number
        .checked_mul(multiplier)
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(|| bad("it must be less than 4G"))
}

/// Checks an RFC 1123 label, the rule for namespaces and container names.
pub fn check_dns_label(what: &'static str, value: &str) -> Result<(), TraceRequestError> {
    k8s_names::check_dns_label(value).map_err(|problem| TraceRequestError::Name {
        what,
        value: value.to_string(),
        problem,
    })
}

/// Checks an RFC 1123 subdomain, the rule for pod and node names.
pub fn check_dns_subdomain(what: &'static str, value: &str) -> Result<(), TraceRequestError> {
    k8s_names::check_dns_subdomain(value).map_err(|problem| TraceRequestError::Name {
        what,
        value: value.to_string(),
        problem,
    })
}
