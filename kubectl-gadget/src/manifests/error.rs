//! What can go wrong rendering, parsing or checking the manifests.

/// Errors rendering, parsing or checking the manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// An image reference that cannot be one.
    #[error("invalid image {image:?}: {reason}")]
    InvalidImage {
        /// The image as given.
        image: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `--node-selector` entry that is not a valid `key=value` label pair.
    #[error("invalid node selector {entry:?}: {reason}")]
    InvalidNodeSelector {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same node label given twice with different values.
    #[error("node selector {key} is given twice, as {first:?} and {second:?}")]
    ConflictingNodeSelector {
        /// The label key.
        key: String,
        /// The first value.
        first: String,
        /// The other value.
        second: String,
    },
    /// A template refers to a placeholder the renderer does not know.
    #[error("template {template} uses the unknown placeholder {name}")]
    UnknownPlaceholder {
        /// The template file.
        template: &'static str,
        /// The placeholder's name.
        name: String,
    },
    /// The rendered text is not YAML.
    #[error("the rendered manifests are not valid YAML")]
    Yaml(#[source] serde_saphyr::Error),
    /// A document without a known `kind`.
    #[error("unexpected manifest of kind {kind:?}")]
    UnexpectedKind {
        /// The document's kind, or empty when it has none.
        kind: String,
    },
    /// An object of a known kind under a name deploy does not make.
    #[error("unexpected {kind} named {name:?}")]
    UnexpectedName {
        /// The document's kind.
        kind: &'static str,
        /// Its name, or empty when it has none.
        name: String,
    },
    /// Two documents of a kind that is expected once.
    #[error("more than one {kind} in the manifests")]
    Duplicate {
        /// The repeated kind.
        kind: &'static str,
    },
    /// A kind that should be there and is not.
    #[error("no {kind} in the manifests")]
    Missing {
        /// The missing kind.
        kind: &'static str,
    },
    /// A document that does not match its Kubernetes type.
    #[error("the {kind} manifest does not match its Kubernetes type")]
    Schema {
        /// The document's kind.
        kind: &'static str,
        /// What serde could not map.
        #[source]
        source: serde_json::Error,
    },
    /// A field the Kubernetes type does not have (a typo), or a value of the
    /// wrong type that only happened to convert.
    #[error("the {kind} manifest has {path} which its Kubernetes type does not keep as written")]
    UnknownField {
        /// The document's kind.
        kind: &'static str,
        /// Where in the document, as `.spec.template...`.
        path: String,
    },
    /// An object that parses but breaks a rule the node side relies on.
    #[error("the {kind} manifest is not as deploy requires: {rule}")]
    Invalid {
        /// The object's kind.
        kind: &'static str,
        /// The rule it breaks.
        rule: String,
    },
}
