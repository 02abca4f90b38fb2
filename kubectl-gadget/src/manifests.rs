//! The node side's Kubernetes objects: the templates in `manifests/`, embedded
//! in the binary so `deploy` needs no checkout, rendered with the deploy
//! options, parsed into k8s-openapi types and checked.
//!
//! Rendering is plain placeholder substitution, but every value goes in as a
//! double-quoted YAML scalar (JSON string syntax, which YAML accepts), so an
//! option value can never add keys or documents. Parsing is strict: a field
//! the Kubernetes type does not have is an error, not silently dropped.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The templates, in the order their objects are applied: the namespace before
/// what lives in it, the RBAC objects before the pods that use them.
const TEMPLATES: [(&str, &str); 3] = [
    (
        "namespace.yaml",
        include_str!("../../manifests/namespace.yaml"),
    ),
    ("rbac.yaml", include_str!("../../manifests/rbac.yaml")),
    (
        "daemonset.yaml",
        include_str!("../../manifests/daemonset.yaml"),
    ),
];

/// The namespace everything namespaced lives in.
pub const NAMESPACE: &str = "gadget";

/// The name of the DaemonSet, its ServiceAccount, ClusterRole and binding.
pub const NODE_AGENT: &str = "gadget-node";

/// The port `gadget-node serve` listens on, on the pod's loopback; clients
/// reach it through the API server's port-forward.
pub const GRPC_PORT: u16 = 7100;

/// The labels on every object `deploy` creates.
pub const COMMON_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "gadget-node"),
    ("app.kubernetes.io/part-of", "kubectl-gadget"),
    ("app.kubernetes.io/managed-by", "kubectl-gadget"),
];

/// Selects every object `deploy` created; what `undeploy` deletes.
pub const MANAGED_SELECTOR: &str =
    "app.kubernetes.io/managed-by=kubectl-gadget,app.kubernetes.io/part-of=kubectl-gadget";

/// Selects the gadget pods (in [`NAMESPACE`]); what clients connect to.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=gadget-node";

/// The node label every gadget pod is scheduled by: the agent is Linux-only.
pub const OS_LABEL: &str = "kubernetes.io/os";

/// The capabilities the DaemonSet may add back after dropping all; why each
/// one is needed is written next to it in `manifests/daemonset.yaml`.
pub const ALLOWED_CAPABILITIES: [&str; 3] = ["BPF", "PERFMON", "SYS_RESOURCE"];

/// The image `deploy` uses unless `--image` says otherwise: the node built
/// from the same version as this client.
pub fn default_image() -> String {
    format!(
        "ghcr.io/kubectl-gadget/gadget-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

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
}

impl Default for RenderOptions {
    fn default() -> Self {
        let image = default_image();
        RenderOptions {
            image_pull_policy: ImagePullPolicy::default_for(&image),
            image,
            node_selector: BTreeMap::new(),
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

/// A label name segment: at most 63 characters, alphanumeric at both ends,
/// `-`, `_` and `.` inside.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let is_subdomain = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                let bytes = part.as_bytes();
                !bytes.is_empty()
                    && bytes[0].is_ascii_alphanumeric()
                    && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            });
        if !is_subdomain {
            return Err(format!(
                "the key prefix {prefix:?} is not a lower-case DNS subdomain"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "the key name {name:?} must be 1 to 63 characters, alphanumeric at both ends, with -, _ or . inside"
        ));
    }
    Ok(())
}

/// A label value: empty, or a label name segment.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "the value {value:?} must be at most 63 characters, alphanumeric at both ends, with -, _ or . inside"
        ))
    }
}

/// What replaces a placeholder.
enum Substitution {
    /// A double-quoted scalar.
    Scalar(String),
    /// A block mapping of double-quoted keys and values, one level deeper than
    /// the key the placeholder is the value of.
    Mapping(BTreeMap<String, String>),
}

/// Quotes `text` as a YAML double-quoted scalar. JSON string escapes are all
/// valid YAML escapes, so serde_json does the escaping.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialize")
}

/// Renders the manifests as one multi-document YAML text, ready for
/// `kubectl apply -f -`.
pub fn render(options: &RenderOptions) -> Result<String, ManifestError> {
    let image = check_image(&options.image)?;
    let values = BTreeMap::from([
        ("IMAGE", Substitution::Scalar(image)),
        (
            "IMAGE_PULL_POLICY",
            Substitution::Scalar(options.image_pull_policy.as_str().to_string()),
        ),
        (
            "NODE_SELECTOR",
            Substitution::Mapping(options.full_node_selector()?),
        ),
    ]);
    let mut documents = Vec::with_capacity(TEMPLATES.len());
    for (name, template) in TEMPLATES {
        documents.push(render_template(name, template, &values)?);
    }
    Ok(documents.join("---\n"))
}

/// Substitutes `${NAME}` placeholders in one template. A placeholder is only
/// recognised as the whole value of a `key: ${NAME}` line, which is the only
/// place the templates use them.
fn render_template(
    template_name: &'static str,
    template: &str,
    values: &BTreeMap<&str, Substitution>,
) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.lines() {
        let Some(start) = line.find("${") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let unknown = |name: &str| ManifestError::UnknownPlaceholder {
            template: template_name,
            name: name.to_string(),
        };
        let rest = &line[start + 2..];
        let name = rest.strip_suffix('}').ok_or_else(|| unknown(rest))?;
        let prefix = &line[..start];
        if !prefix.trim_end().ends_with(':') {
            return Err(unknown(name));
        }
        match values.get(name).ok_or_else(|| unknown(name))? {
            Substitution::Scalar(value) => {
                out.push_str(prefix);
                out.push_str(&quoted(value));
                out.push('\n');
            }
            Substitution::Mapping(entries) => {
                let key_line = prefix.trim_end();
                let indent = key_line.len() - key_line.trim_start().len();
                out.push_str(key_line);
                out.push('\n');
                for (key, value) in entries {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(&quoted(key));
                    out.push_str(": ");
                    out.push_str(&quoted(value));
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

/// The node side as typed Kubernetes objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// The `gadget` namespace.
    pub namespace: Namespace,
    /// The identity the gadget pods run as.
    pub service_account: ServiceAccount,
    /// Read access to pods.
    pub cluster_role: ClusterRole,
    /// Grants the role to the service account.
    pub cluster_role_binding: ClusterRoleBinding,
    /// One gadget-node per Linux node.
    pub daemon_set: DaemonSet,
}

/// Renders, parses and checks the manifests for `options`.
pub fn build(options: &RenderOptions) -> Result<Manifests, ManifestError> {
    let manifests = parse(&render(options)?)?;
    manifests.check()?;
    Ok(manifests)
}

/// Parses multi-document YAML into the node side's objects: exactly one of
/// each kind, no other kinds, no fields their types do not have.
pub fn parse(yaml: &str) -> Result<Manifests, ManifestError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(ManifestError::Yaml)?;
    let mut namespace = None;
    let mut service_account = None;
    let mut cluster_role = None;
    let mut cluster_role_binding = None;
    let mut daemon_set = None;
    for document in &documents {
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
        match kind {
            "Namespace" => set_once(&mut namespace, typed(document)?)?,
            "ServiceAccount" => set_once(&mut service_account, typed(document)?)?,
            "ClusterRole" => set_once(&mut cluster_role, typed(document)?)?,
            "ClusterRoleBinding" => set_once(&mut cluster_role_binding, typed(document)?)?,
            "DaemonSet" => set_once(&mut daemon_set, typed(document)?)?,
            other => {
                return Err(ManifestError::UnexpectedKind {
                    kind: other.to_string(),
                })
            }
        }
    }
    Ok(Manifests {
        namespace: required(namespace)?,
        service_account: required(service_account)?,
        cluster_role: required(cluster_role)?,
        cluster_role_binding: required(cluster_role_binding)?,
        daemon_set: required(daemon_set)?,
    })
}

fn set_once<K: k8s_openapi::Resource>(
    slot: &mut Option<K>,
    object: K,
) -> Result<(), ManifestError> {
    if slot.replace(object).is_some() {
        return Err(ManifestError::Duplicate { kind: K::KIND });
    }
    Ok(())
}

fn required<K: k8s_openapi::Resource>(slot: Option<K>) -> Result<K, ManifestError> {
    slot.ok_or(ManifestError::Missing { kind: K::KIND })
}

/// Deserializes one document into `K`, then serializes it back: anything the
/// round trip loses or changes is a field `K` does not have as written.
fn typed<K>(document: &Value) -> Result<K, ManifestError>
where
    K: k8s_openapi::Resource + DeserializeOwned + Serialize,
{
    let object: K =
        serde_json::from_value(document.clone()).map_err(|source| ManifestError::Schema {
            kind: K::KIND,
            source,
        })?;
    let round_trip = serde_json::to_value(&object).map_err(|source| ManifestError::Schema {
        kind: K::KIND,
        source,
    })?;
    if let Some(path) = first_lost_field(document, &round_trip, String::new()) {
        return Err(ManifestError::UnknownField {
            kind: K::KIND,
            path,
        });
    }
    Ok(object)
}

/// The path of the first value in `written` that `kept` does not have equal.
fn first_lost_field(written: &Value, kept: &Value, path: String) -> Option<String> {
    match (written, kept) {
        (Value::Object(written), Value::Object(kept)) => written.iter().find_map(|(key, value)| {
            let path = format!("{path}.{key}");
            match kept.get(key) {
                Some(kept) => first_lost_field(value, kept, path),
                None => Some(path),
            }
        }),
        (Value::Array(written), Value::Array(kept)) if written.len() == kept.len() => written
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (written, kept))| {
                first_lost_field(written, kept, format!("{path}[{i}]"))
            }),
        (written, kept) if written == kept => None,
        _ => Some(if path.is_empty() {
            ".".to_string()
        } else {
            path
        }),
    }
}

impl Manifests {
    /// The objects as JSON values, in apply order (for printing or generic
    /// handling).
    pub fn to_values(&self) -> Vec<Value> {
        [
            serde_json::to_value(&self.namespace),
            serde_json::to_value(&self.service_account),
            serde_json::to_value(&self.cluster_role),
            serde_json::to_value(&self.cluster_role_binding),
            serde_json::to_value(&self.daemon_set),
        ]
        .into_iter()
        .map(|value| value.expect("k8s-openapi objects always serialize"))
        .collect()
    }

    /// Checks the rules the node side and `undeploy` rely on, so an edit to
    /// a template that breaks one fails the build's tests and every deploy,
    /// instead of reaching a cluster.
    pub fn check(&self) -> Result<(), ManifestError> {
        check_meta::<Namespace>(&self.namespace.metadata, None)?;
        if self.namespace.metadata.name.as_deref() != Some(NAMESPACE) {
            return invalid::<Namespace>(format!("its name must be {NAMESPACE}"));
        }
        check_meta::<ServiceAccount>(&self.service_account.metadata, Some(NAMESPACE))?;
        check_meta::<ClusterRole>(&self.cluster_role.metadata, None)?;
        check_meta::<ClusterRoleBinding>(&self.cluster_role_binding.metadata, None)?;
        check_meta::<DaemonSet>(&self.daemon_set.metadata, Some(NAMESPACE))?;
        self.check_role()?;
        self.check_binding()?;
        self.check_daemon_set()
    }

    fn check_role(&self) -> Result<(), ManifestError> {
        for rule in self.cluster_role.rules.iter().flatten() {
            let read_only = rule
                .verbs
                .iter()
                .all(|verb| matches!(verb.as_str(), "get" | "list" | "watch"));
            let pods_only = rule.api_groups.as_deref() == Some(&["".to_string()][..])
                && rule.resources.as_deref() == Some(&["pods".to_string()][..]);
            if !read_only || !pods_only || rule.resource_names.is_some() {
                return invalid::<ClusterRole>("it may only get, list and watch pods".to_string());
            }
        }
        Ok(())
    }

    fn check_binding(&self) -> Result<(), ManifestError> {
        let binding = &self.cluster_role_binding;
        if binding.role_ref.kind != "ClusterRole"
            || Some(&binding.role_ref.name) != self.cluster_role.metadata.name.as_ref()
        {
            return invalid::<ClusterRoleBinding>(
                "it must bind the gadget-node ClusterRole".into(),
            );
        }
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        let binds_the_account = subjects.len() == 1
            && subjects[0].kind == "ServiceAccount"
            && Some(&subjects[0].name) == self.service_account.metadata.name.as_ref()
            && subjects[0].namespace.as_deref() == Some(NAMESPACE);
        if !binds_the_account {
            return invalid::<ClusterRoleBinding>(
                "its only subject must be the gadget-node ServiceAccount".into(),
            );
        }
        Ok(())
    }

    fn check_daemon_set(&self) -> Result<(), ManifestError> {
        let fail = invalid::<DaemonSet>;
        let Some(spec) = &self.daemon_set.spec else {
            return fail("it has no spec".into());
        };
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if !has_common_labels(template_labels) {
            return fail("its pod template must carry the common labels".into());
        }
        let selects_template = spec.selector.match_labels.as_ref().is_some_and(|selector| {
            selector
                .iter()
                .all(|(k, v)| template_labels.and_then(|l| l.get(k)) == Some(v))
        });
        if !selects_template {
            return fail("its selector must match its pod template's labels".into());
        }
        let Some(pod) = &spec.template.spec else {
            return fail("its pod template has no spec".into());
        };
        if pod.host_network == Some(true)
            || pod.host_pid == Some(true)
            || pod.host_ipc == Some(true)
        {
            return fail("its pods must not share the host's network, pid or ipc namespace".into());
        }
        if pod.service_account_name.as_ref() != self.service_account.metadata.name.as_ref() {
            return fail("its pods must run as the gadget-node ServiceAccount".into());
        }
        if pod
            .node_selector
            .as_ref()
            .and_then(|s| s.get(OS_LABEL))
            .map(String::as_str)
            != Some("linux")
        {
            return fail(format!("its pods must select {OS_LABEL}=linux nodes"));
        }
        let host_paths: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|volume| volume.host_path.is_some())
            .map(|volume| volume.name.as_str())
            .collect();
        for container in &pod.containers {
            let security = container.security_context.as_ref();
            if security.and_then(|s| s.privileged) == Some(true) {
                return fail(format!(
                    "container {} must not be privileged",
                    container.name
                ));
            }
            if security.and_then(|s| s.read_only_root_filesystem) != Some(true) {
                return fail(format!(
                    "container {} must have a read-only root filesystem",
                    container.name
                ));
            }
            let capabilities = security.and_then(|s| s.capabilities.as_ref());
            let drops_all = capabilities
                .and_then(|c| c.drop.as_ref())
                .is_some_and(|drop| drop.iter().any(|c| c == "ALL"));
            if !drops_all {
                return fail(format!(
                    "container {} must drop ALL capabilities",
                    container.name
                ));
            }
            if let Some(extra) = capabilities
                .and_then(|c| c.add.as_ref())
                .into_iter()
                .flatten()
                .find(|c| !ALLOWED_CAPABILITIES.contains(&c.as_str()))
            {
                return fail(format!(
                    "container {} adds {extra}, which is not among {ALLOWED_CAPABILITIES:?}",
                    container.name
                ));
            }
            for mount in container.volume_mounts.iter().flatten() {
                if host_paths.contains(&mount.name.as_str()) && mount.read_only != Some(true) {
                    return fail(format!(
                        "host path volume {} must be mounted read-only",
                        mount.name
                    ));
                }
            }
            let node_name_from_downward_api = container.env.iter().flatten().any(|var| {
                var.name == "NODE_NAME"
                    && var
                        .value_from
                        .as_ref()
                        .and_then(|from| from.field_ref.as_ref())
                        .is_some_and(|field| field.field_path == "spec.nodeName")
            });
            if !node_name_from_downward_api {
                return fail(format!(
                    "container {} must get NODE_NAME from spec.nodeName",
                    container.name
                ));
            }
        }
        Ok(())
    }
}

fn invalid<K: k8s_openapi::Resource>(rule: String) -> Result<(), ManifestError> {
    Err(ManifestError::Invalid {
        kind: K::KIND,
        rule,
    })
}

fn has_common_labels(labels: Option<&BTreeMap<String, String>>) -> bool {
    COMMON_LABELS
        .iter()
        .all(|(key, value)| labels.and_then(|l| l.get(*key)).map(String::as_str) == Some(*value))
}

/// Every object carries the common labels (`undeploy` finds them by label)
/// and namespaced ones live in [`NAMESPACE`].
fn check_meta<K: k8s_openapi::Resource>(
    meta: &ObjectMeta,
    namespace: Option<&str>,
) -> Result<(), ManifestError> {
    if !has_common_labels(meta.labels.as_ref()) {
        return invalid::<K>(format!("it must carry the labels {COMMON_LABELS:?}"));
    }
    if meta.namespace.as_deref() != namespace {
        return invalid::<K>(format!("its namespace must be {namespace:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> RenderOptions {
        RenderOptions::default()
    }

    fn pod_spec_mut(manifests: &mut Manifests) -> &mut k8s_openapi::api::core::v1::PodSpec {
        manifests
            .daemon_set
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
    }

    fn security_context_mut(
        manifests: &mut Manifests,
    ) -> &mut k8s_openapi::api::core::v1::SecurityContext {
        pod_spec_mut(manifests).containers[0]
            .security_context
            .as_mut()
            .unwrap()
    }

    fn container(manifests: &Manifests) -> &k8s_openapi::api::core::v1::Container {
        &manifests
            .daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn pod_spec(manifests: &Manifests) -> &k8s_openapi::api::core::v1::PodSpec {
        manifests
            .daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    #[test]
    fn templates_have_no_unrendered_placeholders_after_rendering() {
        let yaml = render(&options()).unwrap();
        assert!(!yaml.contains("${"), "{yaml}");
    }

    #[test]
    fn default_image_is_this_version() {
        let manifests = build(&options()).unwrap();
        assert_eq!(
            container(&manifests).image.as_deref(),
            Some(concat!(
                "ghcr.io/kubectl-gadget/gadget-node:",
                env!("CARGO_PKG_VERSION")
            ))
        );
        assert_eq!(
            container(&manifests).image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
    }

    #[test]
    fn image_option_is_rendered() {
        let manifests = build(&RenderOptions {
            image: "localhost:5000/gadget-node:dev".into(),
            ..options()
        })
        .unwrap();
        assert_eq!(
            container(&manifests).image.as_deref(),
            Some("localhost:5000/gadget-node:dev")
        );
    }

    #[test]
    fn image_pull_policy_option_is_rendered() {
        for policy in [
            ImagePullPolicy::Always,
            ImagePullPolicy::IfNotPresent,
            ImagePullPolicy::Never,
        ] {
            let manifests = build(&RenderOptions {
                image_pull_policy: policy,
                ..options()
            })
            .unwrap();
            assert_eq!(
                container(&manifests).image_pull_policy.as_deref(),
                Some(policy.as_str())
            );
        }
    }

    #[test]
    fn node_selector_option_is_merged_with_the_os_selector() {
        let manifests = build(&RenderOptions {
            node_selector: BTreeMap::from([
                ("disktype".into(), "ssd".into()),
                ("example.com/pool".into(), "tracing".into()),
            ]),
            ..options()
        })
        .unwrap();
        let selector = pod_spec(&manifests).node_selector.clone().unwrap();
        assert_eq!(
            selector,
            BTreeMap::from([
                ("disktype".to_string(), "ssd".to_string()),
                ("example.com/pool".to_string(), "tracing".to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
            ])
        );
    }

    #[test]
    fn node_selector_values_that_look_like_other_yaml_types_stay_strings() {
        let manifests = build(&RenderOptions {
            node_selector: BTreeMap::from([
                ("gpu".into(), "true".into()),
                ("zone".into(), "123".into()),
                ("flag".into(), "null".into()),
                ("empty".into(), String::new()),
            ]),
            ..options()
        })
        .unwrap();
        let selector = pod_spec(&manifests).node_selector.clone().unwrap();
        assert_eq!(selector["gpu"], "true");
        assert_eq!(selector["zone"], "123");
        assert_eq!(selector["flag"], "null");
        assert_eq!(selector["empty"], "");
    }

    #[test]
    fn node_selector_for_another_os_is_refused() {
        let err = render(&RenderOptions {
            node_selector: BTreeMap::from([(OS_LABEL.into(), "windows".into())]),
            ..options()
        })
        .unwrap_err();
        assert!(
            matches!(err, ManifestError::ConflictingNodeSelector { .. }),
            "{err}"
        );
        // Saying linux explicitly is fine.
        build(&RenderOptions {
            node_selector: BTreeMap::from([(OS_LABEL.into(), "linux".into())]),
            ..options()
        })
        .unwrap();
    }

    #[test]
    fn hostile_image_cannot_inject_yaml() {
        // Whitespace is refused outright...
        assert!(check_image("x\n  hostNetwork: true").is_err());
        // ...and whatever passes is quoted, so YAML syntax in it stays text.
        let image = "evil:tag\"#";
        let yaml = render(&RenderOptions {
            image: image.into(),
            ..options()
        })
        .unwrap();
        let manifests = parse(&yaml).unwrap();
        assert_eq!(container(&manifests).image.as_deref(), Some(image));
    }

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

    #[test]
    fn unknown_placeholder_is_an_error() {
        let err = render_template("t.yaml", "image: ${NOPE}\n", &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(err, ManifestError::UnknownPlaceholder { .. }),
            "{err}"
        );
    }

    #[test]
    fn misspelled_field_is_an_error() {
        let yaml = render(&options()).unwrap().replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
        );
        let err = parse(&yaml).unwrap_err();
        match err {
            ManifestError::UnknownField { kind, path } => {
                assert_eq!(kind, "DaemonSet");
                assert!(
                    path.ends_with(".securityContext.readOnlyRootFileSystem"),
                    "{path}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn extra_or_missing_documents_are_errors() {
        let yaml = render(&options()).unwrap();
        let extra = format!("{yaml}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n");
        assert!(matches!(
            parse(&extra),
            Err(ManifestError::UnexpectedKind { .. })
        ));
        let twice = format!("{yaml}---\n{}", TEMPLATES[0].1);
        assert!(matches!(
            parse(&twice),
            Err(ManifestError::Duplicate { kind: "Namespace" })
        ));
        let without_namespace = yaml.split_once("---\n").unwrap().1;
        assert!(matches!(
            parse(without_namespace),
            Err(ManifestError::Missing { kind: "Namespace" })
        ));
    }

    #[test]
    fn checks_refuse_a_privileged_or_host_namespace_pod() {
        let base = build(&options()).unwrap();
        let mut privileged = base.clone();
        security_context_mut(&mut privileged).privileged = Some(true);
        assert!(privileged.check().is_err());

        let mut host_pid = base.clone();
        pod_spec_mut(&mut host_pid).host_pid = Some(true);
        assert!(host_pid.check().is_err());

        let mut sys_admin = base.clone();
        security_context_mut(&mut sys_admin)
            .capabilities
            .as_mut()
            .unwrap()
            .add
            .as_mut()
            .unwrap()
            .push("SYS_ADMIN".into());
        assert!(sys_admin.check().is_err());

        let mut writable_role = base;
        writable_role.cluster_role.rules.as_mut().unwrap()[0]
            .verbs
            .push("delete".into());
        assert!(writable_role.check().is_err());
    }
}
