//! What `deploy` lets a user choose about the node side, and the checks on
//! each choice: the image, its pull policy and the node selector; and what
//! deploy chooses from the nodes, whether the pods get `CAP_SYS_RESOURCE`.

use std::collections::BTreeMap;

use gadget_proto::k8s_names::{self, QualifiedNameProblem};

use super::{ManifestError, OS_LABEL};

/// The image `deploy` uses unless `--image` says otherwise: the node built
/// from the same version as this client.
pub fn default_image() -> String {
    format!(
        "ghcr.io/kubectl-gadget/gadget-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// When the kubelet pulls the image: the values of a container's
/// `imagePullPolicy`, spelled as Kubernetes spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImagePullPolicy {
    /// Pull on every pod start.
    #[value(name = "Always", alias = "always")]
    Always,
    /// Pull only when the node does not have the image.
    #[value(
        name = "IfNotPresent",
        alias = "if-not-present",
        alias = "ifnotpresent"
    )]
    IfNotPresent,
    /// Never pull: the image must be on the node already (kind, preloaded).
    #[value(name = "Never", alias = "never")]
    Never,
}

impl ImagePullPolicy {
    /// The value as written in a pod spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }

    /// The policy Kubernetes would default to for `image`: `Always` for an
    /// untagged or `:latest` image, `IfNotPresent` otherwise. Written out
    /// explicitly so `--print-only` shows what the pods will do.
    pub fn default_for(image: &str) -> Self {
        if image.contains('@') {
            return ImagePullPolicy::IfNotPresent;
        }
        // A ':' before the last '/' is a registry port, not a tag.
        let last_component = image.rsplit('/').next().unwrap_or(image);
        match last_component.rsplit_once(':') {
            Some((_, tag)) if tag != "latest" => ImagePullPolicy::IfNotPresent,
            _ => ImagePullPolicy::Always,
        }
    }
}

/// What `deploy` lets a user choose about the node side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// The gadget-node image.
    pub image: String,
    /// When the kubelet pulls it.
    pub image_pull_policy: ImagePullPolicy,
    /// Node labels the pods must match, on top of `kubernetes.io/os: linux`.
    pub node_selector: BTreeMap<String, String>,
    /// Whether the container adds [`MEMLOCK_CAPABILITY`](super::MEMLOCK_CAPABILITY),
    /// which only nodes before Linux 5.11 use. True by default, as the
    /// template has it: only deploy, which reads the nodes' kernel versions,
    /// can tell it is not needed.
    pub memlock_capability: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        let image = default_image();
        RenderOptions {
            image_pull_policy: ImagePullPolicy::default_for(&image),
            image,
            node_selector: BTreeMap::new(),
            memlock_capability: true,
        }
    }
}

impl RenderOptions {
    /// The DaemonSet's node selector: the user's entries and the OS label.
    /// An OS other than linux is refused rather than producing pods that
    /// never schedule.
    pub fn full_node_selector(&self) -> Result<BTreeMap<String, String>, ManifestError> {
        let mut selector = self.node_selector.clone();
        match selector.get(OS_LABEL) {
            Some(os) if os != "linux" => Err(ManifestError::ConflictingNodeSelector {
                key: OS_LABEL.to_string(),
                first: "linux".to_string(),
                second: os.clone(),
            }),
            _ => {
                selector.insert(OS_LABEL.to_string(), "linux".to_string());
                Ok(selector)
            }
        }
    }
}

/// Checks an image reference enough to keep garbage out of the pod spec; the
/// registry has the last word on whether it exists.
pub fn check_image(image: &str) -> Result<String, ManifestError> {
    let invalid = |reason| ManifestError::InvalidImage {
        image: image.to_string(),
        reason,
    };
    if image.is_empty() {
        return Err(invalid("it is empty"));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    if image.starts_with(['-', ':', '@', '/']) || image.ends_with([':', '@', '/']) {
        return Err(invalid(
            "it is not of the form [registry/]name[:tag][@digest]",
        ));
    }
    Ok(image.to_string())
}

/// Parses one `key=value` node selector entry, with the key and value checked
/// against the Kubernetes label syntax.
pub fn parse_node_selector_entry(entry: &str) -> Result<(String, String), ManifestError> {
    let invalid = |reason: String| ManifestError::InvalidNodeSelector {
        entry: entry.to_string(),
        reason,
    };
    let (key, value) = entry
        .split_once('=')
        .ok_or_else(|| invalid("expected key=value".to_string()))?;
    check_label_key(key).map_err(invalid)?;
    check_label_value(value).map_err(invalid)?;
    Ok((key.to_string(), value.to_string()))
}

/// Merges node selector entries into one map; the same key twice must agree.
pub fn node_selector_from_entries(
    entries: &[(String, String)],
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut selector = BTreeMap::new();
    for (key, value) in entries {
        if let Some(first) = selector.insert(key.clone(), value.clone()) {
            if &first != value {
                return Err(ManifestError::ConflictingNodeSelector {
                    key: key.clone(),
                    first,
                    second: value.clone(),
                });
            }
        }
    }
    Ok(selector)
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = key.split_once('/').unwrap_or(("", key));
    match k8s_names::check_qualified_name(key) {
        Ok(()) => Ok(()),
        Err(QualifiedNameProblem::Prefix(_)) => Err(format!(
            "the key prefix {prefix:?} is not a lower-case DNS subdomain"
        )),
        Err(QualifiedNameProblem::Slashes | QualifiedNameProblem::Name(_)) => Err(format!(
            "the key name {name:?} must be 1 to 63 characters, alphanumeric at both ends, with -, _ or . inside"
        )),
    }
}

/// A label value: empty, or a label name segment.
fn check_label_value(value: &str) -> Result<(), String> {
    k8s_names::check_label_value(value).map_err(|_| {
        format!(
            "the value {value:?} must be at most 63 characters, alphanumeric at both ends, with -, _ or . inside"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_checks() {
        for bad in ["", " ", "a b", "-x", "x:", "x@", "/x", "x/"] {
            assert!(check_image(bad).is_err(), "{bad:?}");
        }
        for good in [
            "gadget-node",
            "ghcr.io/kubectl-gadget/gadget-node:0.1.0",
            "localhost:5000/gadget-node",
            "r.example.com/g@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image(good).unwrap(), good);
        }
    }

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        use ImagePullPolicy::*;
        assert_eq!(ImagePullPolicy::default_for("gadget-node"), Always);
        assert_eq!(ImagePullPolicy::default_for("gadget-node:latest"), Always);
        assert_eq!(
            ImagePullPolicy::default_for("localhost:5000/gadget-node"),
            Always
        );
        assert_eq!(
            ImagePullPolicy::default_for("localhost:5000/gadget-node:1"),
            IfNotPresent
        );
        assert_eq!(ImagePullPolicy::default_for("g@sha256:abcd"), IfNotPresent);
    }

    #[test]
    fn node_selector_entries_are_label_pairs() {
        assert_eq!(
            parse_node_selector_entry("example.com/pool=tracing").unwrap(),
            ("example.com/pool".to_string(), "tracing".to_string())
        );
        assert_eq!(
            parse_node_selector_entry("empty=").unwrap(),
            ("empty".to_string(), String::new())
        );
        for bad in [
            "novalue",
            "=v",
            "k=v w",
            "k=-v",
            "Example.com/k=v",
            "/k=v",
            "k/=v",
            "a..b/k=v",
            &format!("k={}", "v".repeat(64)),
        ] {
            assert!(parse_node_selector_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_selector_entries_say_which_part_is_wrong() {
        let reason = |entry| parse_node_selector_entry(entry).unwrap_err().to_string();
        assert_eq!(
            reason("Example.com/k=v"),
            "invalid node selector \"Example.com/k=v\": the key prefix \"Example.com\" is not a lower-case DNS subdomain"
        );
        assert_eq!(
            reason("a/b/c=v"),
            "invalid node selector \"a/b/c=v\": the key name \"b/c\" must be 1 to 63 characters, alphanumeric at both ends, with -, _ or . inside"
        );
        assert_eq!(
            reason("k=-v"),
            "invalid node selector \"k=-v\": the value \"-v\" must be at most 63 characters, alphanumeric at both ends, with -, _ or . inside"
        );
    }

    #[test]
    fn repeated_node_selector_keys_must_agree() {
        let same = [
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "1".to_string()),
        ];
        assert_eq!(node_selector_from_entries(&same).unwrap().len(), 1);
        let different = [
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        assert!(node_selector_from_entries(&different).is_err());
    }
}
