//! Rendering the templates with the deploy options: plain placeholder
//! substitution, where every value goes in as a double-quoted YAML scalar
//! (JSON string syntax, which YAML accepts), so an option value can never add
//! keys or documents. The one option that is not a value,
//! [`RenderOptions::memlock_capability`], turns the template's
//! `- SYS_RESOURCE` line into a comment.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{check_image, ManifestError, RenderOptions, MEMLOCK_CAPABILITY};

/// The templates, in the order their objects are applied: the namespace before
/// what lives in it, the RBAC objects before the pods that use them.
/// The role for people who trace comes last: nothing the node side needs
/// waits on it.
pub(super) const TEMPLATES: [(&str, &str); 4] = [
    (
        "namespace.yaml",
        include_str!("../../../manifests/namespace.yaml"),
    ),
    ("rbac.yaml", include_str!("../../../manifests/rbac.yaml")),
    (
        "daemonset.yaml",
        include_str!("../../../manifests/daemonset.yaml"),
    ),
    (
        "trace-user-role.yaml",
        include_str!("../../../manifests/trace-user-role.yaml"),
    ),
];

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
        (
            "VERSION",
            Substitution::Scalar(crate::version::CLIENT_VERSION.to_string()),
        ),
    ]);
    let mut documents = Vec::with_capacity(TEMPLATES.len());
    for (name, template) in TEMPLATES {
        let template = if options.memlock_capability {
            Cow::Borrowed(template)
        } else {
            Cow::Owned(without_memlock_capability(template))
        };
        documents.push(render_template(name, &template, &values)?);
    }
    Ok(documents.join("---\n"))
}

/// `template` with its `- SYS_RESOURCE` list entry made a comment that
/// says why, so the comment above it, which explains what it is for, still
/// stands next to it. Only the template's own text is edited: no option
/// value has been substituted yet, so none can match.
fn without_memlock_capability(template: &str) -> String {
    let entry = format!("- {MEMLOCK_CAPABILITY}");
    let mut out = String::with_capacity(template.len() + 128);
    for line in template.lines() {
        if line.trim() == entry {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(indent);
            out.push_str("# SYS_RESOURCE not added: every selected node runs Linux 5.11 or later");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::{build, parse, ImagePullPolicy, Manifests, OS_LABEL};
    use k8s_openapi::api::apps::v1::DaemonSet;

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

    fn container(manifests: &Manifests) -> &k8s_openapi::api::core::v1::Container {
        &pod_spec(manifests).containers[0]
    }

    #[test]
    fn templates_have_no_unrendered_placeholders_after_rendering() {
        let yaml = render(&RenderOptions::default()).unwrap();
        assert!(!yaml.contains("${"), "{yaml}");
    }

    #[test]
    fn default_image_is_this_version() {
        let manifests = build(&RenderOptions::default()).unwrap();
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
            ..RenderOptions::default()
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
                ..RenderOptions::default()
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
            ..RenderOptions::default()
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
            ..RenderOptions::default()
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
            ..RenderOptions::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, ManifestError::ConflictingNodeSelector { .. }),
            "{err}"
        );
        // Saying linux explicitly is fine.
        build(&RenderOptions {
            node_selector: BTreeMap::from([(OS_LABEL.into(), "linux".into())]),
            ..RenderOptions::default()
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
            ..RenderOptions::default()
        })
        .unwrap();
        let manifests = parse(&yaml).unwrap();
        assert_eq!(container(&manifests).image.as_deref(), Some(image));
    }

    fn added_capabilities(daemon_set: &DaemonSet) -> Vec<String> {
        daemon_set
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .security_context
            .clone()
            .unwrap()
            .capabilities
            .unwrap()
            .add
            .unwrap()
    }

    fn without_memlock() -> RenderOptions {
        RenderOptions {
            memlock_capability: false,
            ..RenderOptions::default()
        }
    }

    #[test]
    fn memlock_capability_is_added_by_default() {
        let manifests = build(&RenderOptions::default()).unwrap();
        assert_eq!(
            added_capabilities(&manifests.daemon_set),
            ["BPF", "PERFMON", "SYS_RESOURCE"]
        );
    }

    #[test]
    fn without_memlock_capability_only_bpf_and_perfmon_are_added() {
        // build() runs the policy checks: they pass without it too.
        let manifests = build(&without_memlock()).unwrap();
        assert_eq!(
            added_capabilities(&manifests.daemon_set),
            ["BPF", "PERFMON"]
        );
        // Nothing else changes: the rest of the text is the template's.
        let with = render(&RenderOptions::default()).unwrap();
        let without = render(&without_memlock()).unwrap();
        let changed: Vec<(&str, &str)> = with
            .lines()
            .zip(without.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed,
            [(
                "                - SYS_RESOURCE",
                "                # SYS_RESOURCE not added: every selected node runs Linux 5.11 or later"
            )]
        );
        assert_eq!(with.lines().count(), without.lines().count());
    }

    /// Deploy's server-side apply removes SYS_RESOURCE from a DaemonSet
    /// that an earlier deploy gave it: the schema makes `capabilities.add`
    /// an atomic list (k8s-openapi's merge follows the same schema), so the
    /// applied list replaces the live one instead of being merged into it.
    #[test]
    fn applying_without_memlock_capability_replaces_the_whole_list() {
        use k8s_openapi::DeepMerge;
        let with = || build(&RenderOptions::default()).unwrap().daemon_set;
        let without = || build(&without_memlock()).unwrap().daemon_set;
        let mut live = with();
        live.merge_from(without());
        assert_eq!(added_capabilities(&live), ["BPF", "PERFMON"]);
        // And back, when a node with an older kernel has joined.
        live.merge_from(with());
        assert_eq!(
            added_capabilities(&live),
            ["BPF", "PERFMON", "SYS_RESOURCE"]
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let err = render_template("t.yaml", "image: ${NOPE}\n", &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(err, ManifestError::UnknownPlaceholder { .. }),
            "{err}"
        );
    }
}
