//! The second phase of parsing a trace: its raw flags ([`crate::cli`])
//! become a validated [`TraceRequest`].
//!
//! Whatever can be known to be wrong from the command line alone is found
//! here, before a kubeconfig is read or a node is contacted: a bad label
//! selector, an unknown output column, a name Kubernetes would refuse. The
//! only I/O is reading a file a flag names (trace file's `--policy`), so
//! that its mistakes are found as early as the flags' are.

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

    /// What the kernel enforces during this trace, and on whom, as one
    /// line for stderr; `None` when the trace only observes. `run` is the
    /// request as sent (namespaces resolved).
    pub fn enforcement_notice(&self, run: &v1::RunGadgetRequest) -> Option<String> {
        let what = run
            .params
            .as_ref()
            .and_then(|params| self.gadget.enforcement(params))?;
        let selector = run.selector.clone().unwrap_or_default();
        let mut scope = match selector.namespaces.as_slice() {
            [] => "processes of pods in every namespace".to_string(),
            [one] => format!("processes of pods in namespace {one}"),
            many => format!("processes of pods in namespaces {}", many.join(", ")),
        };
        for (name, value) in [
            ("pod", &selector.pod_name),
            ("container", &selector.container_name),
            ("labels", &selector.label_selector),
        ] {
            if !value.is_empty() {
                scope.push_str(&format!(", {name} {value}"));
            }
        }
        let filter = run.filter.unwrap_or_default();
        if let Some(pid) = filter.pid {
            scope.push_str(&format!(", pid {pid}"));
        }
        if let Some(uid) = filter.uid {
            scope.push_str(&format!(", uid {uid}"));
        }
        scope.push_str(if selector.include_host {
            ", and the host's processes"
        } else {
            "; not the host's processes"
        });
        Some(format!(
            "enforcing while this trace runs: {what}, to {scope}"
        ))
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
    /// A path to follow that no resolved path can match, or that cannot be
    /// sent.
    #[error("invalid {what} {path:?}: {problem}")]
    FollowedPath {
        /// Where it was given: a flag (`--prefix`) or a policy field.
        what: &'static str,
        /// The value as given.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A path to follow longer than the node's kernel program keeps.
    #[error(
        "invalid {what} {path:?}: it is {len} bytes long, at most {max} are kept by the kernel"
    )]
    FollowedPathTooLong {
        /// Where it was given: a flag (`--prefix`) or a policy field.
        what: &'static str,
        /// The value as given.
        path: String,
        /// Its length in bytes.
        len: usize,
        /// The most the kernel program keeps.
        max: usize,
    },
    /// More paths to follow than the node's kernel program keeps.
    #[error("too many {what}: {count}, at most {max} in all are kept by the kernel")]
    TooManyFollowedPaths {
        /// What they are: flags (`--prefix and --path values`) or policy
        /// fields.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The most the kernel program keeps.
        max: usize,
    },
    /// Nothing to follow was given to a gadget that follows chosen files.
    #[error("{missing} is required: following every file is not what trace file is for")]
    NothingToFollow {
        /// What is required, e.g. `a --prefix, --path or --policy`.
        missing: &'static str,
    },
    /// A file operation that does not exist.
    #[error("invalid {what} {value:?}: the operations are {valid}")]
    FileOperation {
        /// Where it was given: a flag (`--operations`) or a policy field.
        what: &'static str,
        /// The value as given.
        value: String,
        /// The valid operations, in words.
        valid: &'static str,
    },
    /// An operation list with no operation in it.
    #[error("no operation in {what}: list some of open, read, write and close, or leave it out for all of them")]
    NoFileOperations {
        /// Where it was given: a flag (`--operations`) or a policy field.
        what: &'static str,
    },
    /// An operation the kernel cannot stop a process at.
    #[error("invalid {what} {value:?}: {problem}")]
    KillOn {
        /// Where it was given: a flag (`--kill-on`) or a policy field.
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A kill at an operation that is not reported.
    #[error("{what} {operation} needs {operation} among the {operations}: the kill would not be reported")]
    KillUnreported {
        /// Where it was given: a flag (`--kill-on`) or a policy field.
        what: &'static str,
        /// The operation.
        operation: &'static str,
        /// Where the operations were listed: a flag (`--operations`) or a
        /// policy field.
        operations: &'static str,
    },
    /// `--policy` with a flag that says the same thing.
    #[error("--policy cannot be combined with {flag}: the policy file is the one source of what to follow")]
    PolicyWithFlag {
        /// The flag.
        flag: &'static str,
    },
    /// A `--policy` file that cannot be read.
    #[error("cannot read --policy {file:?}: {reason}")]
    PolicyRead {
        /// The file as given.
        file: String,
        /// Why, as the system says it.
        reason: String,
    },
    /// A `--policy` file that is not a policy: YAML syntax, an unknown
    /// field, a value of the wrong type.
    #[error("invalid --policy {file:?}: {reason}")]
    PolicySyntax {
        /// The file as given.
        file: String,
        /// What the YAML parser says, with the line and column.
        reason: String,
    },
    /// A `--policy` file whose values cannot be used.
    #[error("invalid --policy {file:?}: {problem}")]
    PolicyValue {
        /// The file as given.
        file: String,
        /// What is wrong, naming the field.
        problem: Box<TraceRequestError>,
    },
    /// A limit of 0, which the protocol reads as "the node's default".
    #[error("invalid {flag} 0: it must be at least 1 (leave it out for the node's default)")]
    ZeroLimit {
        /// The flag.
        flag: &'static str,
    },
    /// A limit above what the node's kernel program keeps.
    #[error("invalid {flag} {value}: at most {max} are kept by the kernel")]
    AboveLimit {
        /// The flag.
        flag: &'static str,
        /// The value as given.
        value: u32,
        /// The most the kernel program keeps.
        max: u32,
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
    let number: u64 = number.parse().map_err(|err: std::num::ParseIntError| {
        // More digits than 64 bits hold are still a number, one too large.
        if *err.kind() == std::num::IntErrorKind::PosOverflow {
            bad("it must be less than 4G")
        } else {
            bad("expected bytes, or a number with a K or M suffix, e.g. 512K or 16M")
        }
    })?;
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

#[cfg(test)]
mod properties;
