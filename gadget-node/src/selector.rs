//! Which containers a trace follows: by namespace, pod name, container name
//! and pod labels, plus whether processes outside containers count.

use gadget_proto::label_selector::{LabelSelector, ParseLabelSelectorError};

use crate::identity::Workload;

/// A container selector given by a client is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerSelectorError {
    /// The label selector text does not parse; the message quotes it and
    /// says what is wrong where.
    #[error(transparent)]
    LabelSelector(#[from] ParseLabelSelectorError),
}

/// Which workloads a trace follows. Every restriction that is set must hold;
/// unset ones match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSelector {
    /// Namespaces to follow; empty means all.
    pub namespaces: Vec<String>,
    /// Only the pod with this name.
    pub pod: Option<String>,
    /// Only containers with this name.
    pub container: Option<String>,
    /// Only pods whose labels match.
    pub labels: LabelSelector,
    /// Also follow processes that run in no container (the host).
    pub include_host: bool,
}

impl ContainerSelector {
    /// A selector from the fields of the protocol's `ContainerSelector`,
    /// where an empty string means unset. Empty entries in `namespaces` are
    /// ignored.
    pub fn from_parts(
        namespaces: Vec<String>,
        pod_name: &str,
        container_name: &str,
        label_selector: &str,
        include_host: bool,
    ) -> Result<Self, ContainerSelectorError> {
        let set = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Self {
            namespaces: namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
            pod: set(pod_name),
            container: set(container_name),
            labels: label_selector.parse()?,
            include_host,
        })
    }

    /// A selector from the protocol message, where an empty string means
    /// unset.
    pub fn from_proto(
        selector: &gadget_proto::v1::ContainerSelector,
    ) -> Result<Self, ContainerSelectorError> {
        Self::from_parts(
            selector.namespaces.clone(),
            &selector.pod_name,
            &selector.container_name,
            &selector.label_selector,
            selector.include_host,
        )
    }

    /// True when the selector restricts nothing about containers: every
    /// container matches. With [`include_host`](Self::include_host) too, the
    /// kernel need not filter by cgroup at all.
    pub fn is_everything(&self) -> bool {
        self.namespaces.is_empty()
            && self.pod.is_none()
            && self.container.is_none()
            && self.labels.is_empty()
    }

    /// True when the container of `workload` is followed.
    ///
    /// Workloads without names (local mode, or a pod the API server has not
    /// reported yet) match only selectors that do not restrict by name,
    /// namespace or label.
    pub fn matches(&self, workload: &Workload) -> bool {
        let equals = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        (self.namespaces.is_empty() || self.namespaces.contains(&workload.namespace))
            && equals(&self.pod, &workload.pod)
            && equals(&self.container, &workload.container)
            && self.labels.matches(&workload.labels)
    }

    /// True when an event with this identity is followed: a container's by
    /// [`matches`](Self::matches), a host process's (`None`) by
    /// [`include_host`](Self::include_host).
    pub fn accepts(&self, workload: Option<&Workload>) -> bool {
        match workload {
            Some(workload) => self.matches(workload),
            None => self.include_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn workload() -> Workload {
        Workload {
            namespace: "shop".to_string(),
            pod: "web-1".to_string(),
            container: "nginx".to_string(),
            pod_uid: "8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b".to_string(),
            container_id: "0123".to_string(),
            labels: BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string()),
            ]),
            name_pending: false,
        }
    }

    fn selector(
        namespaces: &[&str],
        pod: &str,
        container: &str,
        labels: &str,
    ) -> ContainerSelector {
        ContainerSelector::from_parts(
            namespaces.iter().map(|n| n.to_string()).collect(),
            pod,
            container,
            labels,
            false,
        )
        .unwrap()
    }

    #[test]
    fn empty_parts_are_everything() {
        let s = selector(&[], "", "", "");
        assert!(s.is_everything());
        assert!(s.matches(&workload()));
        assert!(s.matches(&Workload::default()));
        assert_eq!(s, ContainerSelector::default());
        assert!(selector(&[""], "", "", " ").is_everything());
    }

    #[test]
    fn each_restriction_is_not_everything() {
        assert!(!selector(&["shop"], "", "", "").is_everything());
        assert!(!selector(&[], "web-1", "", "").is_everything());
        assert!(!selector(&[], "", "nginx", "").is_everything());
        assert!(!selector(&[], "", "", "app").is_everything());
    }

    #[test]
    fn namespaces() {
        assert!(selector(&["other", "shop"], "", "", "").matches(&workload()));
        assert!(!selector(&["other"], "", "", "").matches(&workload()));
    }

    #[test]
    fn pod_and_container_names() {
        assert!(selector(&[], "web-1", "nginx", "").matches(&workload()));
        assert!(!selector(&[], "web-2", "", "").matches(&workload()));
        assert!(!selector(&[], "", "sidecar", "").matches(&workload()));
    }

    #[test]
    fn labels() {
        assert!(selector(&[], "", "", "app=web,tier in (front,back)").matches(&workload()));
        assert!(!selector(&[], "", "", "app=api").matches(&workload()));
        assert!(selector(&[], "", "", "canary!=yes").matches(&workload()));
    }

    #[test]
    fn all_restrictions_must_hold() {
        assert!(selector(&["shop"], "web-1", "nginx", "app=web").matches(&workload()));
        assert!(!selector(&["shop"], "web-1", "nginx", "app=api").matches(&workload()));
        assert!(!selector(&["dev"], "web-1", "nginx", "app=web").matches(&workload()));
    }

    #[test]
    fn unnamed_workloads_match_only_unrestricted_selectors() {
        let local = Workload {
            pod_uid: "u".to_string(),
            container_id: "c".to_string(),
            ..Default::default()
        };
        assert!(selector(&[], "", "", "").matches(&local));
        assert!(selector(&[], "", "", "!app").matches(&local));
        assert!(!selector(&["shop"], "", "", "").matches(&local));
        assert!(!selector(&[], "", "", "app").matches(&local));
    }

    #[test]
    fn host_processes_follow_include_host() {
        let mut s = selector(&["shop"], "", "", "");
        assert!(!s.accepts(None));
        assert!(s.accepts(Some(&workload())));
        s.include_host = true;
        assert!(s.accepts(None));
        assert!(
            !s.is_everything(),
            "include_host is not a container restriction"
        );
    }

    #[test]
    fn from_proto_maps_every_field() {
        let message = gadget_proto::v1::ContainerSelector {
            namespaces: vec!["shop".to_string()],
            pod_name: "web-1".to_string(),
            container_name: String::new(),
            label_selector: "app=web".to_string(),
            include_host: true,
        };
        let s = ContainerSelector::from_proto(&message).unwrap();
        assert_eq!(s.namespaces, ["shop"]);
        assert_eq!(s.pod.as_deref(), Some("web-1"));
        assert_eq!(s.container, None);
        assert_eq!(s.labels.to_string(), "app=web");
        assert!(s.include_host);
        let bad = gadget_proto::v1::ContainerSelector {
            label_selector: "app in".to_string(),
            ..Default::default()
        };
        assert!(ContainerSelector::from_proto(&bad).is_err());
    }

    #[test]
    fn bad_label_selector_is_reported() {
        let error =
            ContainerSelector::from_parts(vec![], "", "", "app in (web", false).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"invalid label selector "app in (web": missing ')'"#
        );
        assert!(matches!(error, ContainerSelectorError::LabelSelector(_)));
    }
}
