//! The node side's Kubernetes objects: the templates in the repository's
//! `manifests/`, embedded in the binary so `deploy` needs no checkout,
//! rendered with the deploy options, parsed into k8s-openapi types and
//! checked.
//!
//! Rendering is plain placeholder substitution, but every value goes in as a
//! double-quoted YAML scalar (JSON string syntax, which YAML accepts), so an
//! option value can never add keys or documents. Parsing is strict: a field
//! the Kubernetes type does not have is an error, not silently dropped.
//!
//! One concern per file: the names the node side is found by ([`NAMESPACE`],
//! [`POD_SELECTOR`], ...), the [`RenderOptions`] a user chooses and their
//! checks, rendering ([`render()`]), strict parsing into [`Manifests`]
//! ([`parse()`]), and the rules the objects must keep ([`Manifests::check`]);
//! [`build`] does all three.

mod error;
mod names;
mod options;
mod parse;
mod policy;
mod render;

pub use error::ManifestError;
pub use names::{
    ALLOWED_CAPABILITIES, COMMON_LABELS, GRPC_PORT, MANAGED_BY, MANAGED_SELECTOR,
    MEMLOCK_CAPABILITY, NAMESPACE, NODE_AGENT, OS_LABEL, POD_SELECTOR, TRACE_USER_ROLE,
    VERSION_LABEL,
};
pub use options::{
    check_image, default_image, node_selector_from_entries, parse_node_selector_entry,
    ImagePullPolicy, RenderOptions,
};
pub use parse::{parse, Manifests};
pub use render::render;

/// Renders, parses and checks the manifests for `options`.
pub fn build(options: &RenderOptions) -> Result<Manifests, ManifestError> {
    let manifests = parse(&render(options)?)?;
    manifests.check()?;
    Ok(manifests)
}
