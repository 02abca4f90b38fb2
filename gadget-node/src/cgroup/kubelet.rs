//! What the kubelet's cgroup paths say about pods and containers.

/// A container's cgroup as the kubelet lays it out: which pod, which container,
/// and, when the path says so, which runtime made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerCgroup {
    /// The pod UID with `-` separators, as in the pod's `metadata.uid`.
    pub pod_uid: String,
    /// The runtime's container id (64 hex digits), as in the pod status'
    /// `containerID` without its `<runtime>://` scheme.
    pub container_id: String,
    /// `containerd`, `cri-o` or `docker` when the cgroup name says so; the
    /// cgroupfs driver names cgroups by bare id and leaves this `None`.
    pub runtime: Option<String>,
}

/// Parses a cgroup path relative to the cgroup2 root (as in `/proc/<pid>/cgroup`)
/// into the pod and container it belongs to.
///
/// Accepts both kubelet cgroup drivers, wherever the `kubepods` subtree sits
/// (kind nests it under `/kubelet.slice/kubelet-kubepods.slice`):
///
/// - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
///   (also `crio-<id>.scope`, `docker-<id>.scope`, guaranteed pods directly
///   under `kubepods.slice`);
/// - cgroupfs: `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`.
///
/// Cgroups below a container's (made by a process inside it) belong to that
/// container. The pod's own cgroup and CRI-O's `crio-conmon-<id>` monitor
/// cgroup are not containers and give `None`.
pub fn parse_kubelet_cgroup(relative_path: &str) -> Option<ContainerCgroup> {
    let components: Vec<&str> = relative_path.split('/').filter(|c| !c.is_empty()).collect();
    let kubepods = components.iter().position(|c| is_kubepods(c))?;
    // The pod is right under kubepods (guaranteed) or under its QoS class.
    let (pod_index, pod_uid) = components
        .iter()
        .enumerate()
        .skip(kubepods + 1)
        .take(2)
        .find_map(|(i, c)| pod_uid_of(c).map(|uid| (i, uid)))?;
    let (runtime, container_id) = container_of(components.get(pod_index + 1)?)?;
    Some(ContainerCgroup {
        pod_uid,
        container_id: container_id.to_string(),
        runtime: runtime.map(str::to_string),
    })
}

/// Whether a path component is the root of the kubelet's pods: `kubepods`
/// (cgroupfs driver) or a slice with a `kubepods` word (`kubepods.slice`,
/// `kubelet-kubepods.slice`).
fn is_kubepods(component: &str) -> bool {
    component == "kubepods"
        || component
            .strip_suffix(".slice")
            .is_some_and(|stem| stem.split('-').any(|word| word == "kubepods"))
}

/// The pod UID in a pod cgroup name, `pod<uid>` (cgroupfs) or
/// `...-pod<uid>.slice` (systemd, where the kubelet writes `-` as `_` because
/// `-` means nesting in slice names), normalized to `-` separators.
fn pod_uid_of(component: &str) -> Option<String> {
    let uid = match component.strip_suffix(".slice") {
        Some(stem) => &stem[stem.rfind("-pod")? + 4..],
        None => component.strip_prefix("pod")?,
    };
    // A UUID, or the 32-hex-digit hash the kubelet uses for static pods.
    let valid = (32..=36).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    valid.then(|| uid.replace('_', "-").to_ascii_lowercase())
}

/// The runtime and container id in a container cgroup name: `<id>` (cgroupfs
/// driver) or `<prefix>-<id>` with an optional `.scope` (systemd driver).
fn container_of(component: &str) -> Option<(Option<&'static str>, &str)> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let (prefix, id) = match name.rsplit_once('-') {
        Some((prefix, id)) => (Some(prefix), id),
        None => (None, name),
    };
    if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let runtime = match prefix {
        None => None,
        Some("cri-containerd") => Some("containerd"),
        Some("crio") => Some("cri-o"),
        Some("docker") => Some("docker"),
        // conmon is CRI-O's monitor process, outside the container.
        Some(p) if p.split('-').any(|word| word == "conmon") => return None,
        Some(_) => None,
    };
    Some((runtime, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{CONTAINER_ID as ID, POD_UID as UID};

    const UID_SYSTEMD: &str = "8f1c2d3e_4b5a_6978_8a9b_0c1d2e3f4a5b";

    fn container(runtime: Option<&str>) -> Option<ContainerCgroup> {
        Some(ContainerCgroup {
            pod_uid: UID.to_string(),
            container_id: ID.to_string(),
            runtime: runtime.map(str::to_string),
        })
    }

    #[test]
    fn systemd_containerd_burstable() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&path), container(Some("containerd")));
    }

    #[test]
    fn systemd_besteffort_and_guaranteed() {
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&besteffort), container(Some("cri-o")));
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/docker-{ID}.scope");
        assert_eq!(parse_kubelet_cgroup(&guaranteed), container(Some("docker")));
    }

    #[test]
    fn cgroupfs_layouts() {
        let burstable = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&burstable), container(None));
        let guaranteed = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&guaranteed), container(None));
        let crio = format!("/kubepods/besteffort/pod{UID}/crio-{ID}");
        assert_eq!(parse_kubelet_cgroup(&crio), container(Some("cri-o")));
    }

    #[test]
    fn uid_separators_are_normalized() {
        let underscores = format!("/kubepods/pod{UID_SYSTEMD}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&underscores), container(None));
        let dashes = format!("/kubepods.slice/kubepods-pod{UID}.slice/cri-containerd-{ID}.scope");
        // A dash-written uid inside a slice name still parses whole because
        // the uid is taken after the last "-pod".
        assert_eq!(parse_kubelet_cgroup(&dashes), container(Some("containerd")));
    }

    #[test]
    fn static_pod_hash_uid() {
        let hash = "d41d8cd98f00b204e9800998ecf8427e";
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse_kubelet_cgroup(&path).unwrap().pod_uid, hash);
    }

    #[test]
    fn kubepods_nested_under_a_prefix() {
        let kind = format!(
            "/system.slice/docker-{ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_kubelet_cgroup(&kind), container(Some("containerd")));
        let cgroupfs = format!("/some/agent/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&cgroupfs), container(None));
        // Relative paths without the leading slash parse the same.
        let bare = format!("kubepods/pod{UID}/{ID}");
        assert_eq!(parse_kubelet_cgroup(&bare), container(None));
    }

    #[test]
    fn cgroups_inside_a_container_belong_to_it() {
        let nested = format!("/kubepods/pod{UID}/{ID}/init.scope/inner");
        assert_eq!(parse_kubelet_cgroup(&nested), container(None));
    }

    #[test]
    fn not_containers() {
        let not = [
            "/".to_string(),
            "/system.slice/sshd.service".to_string(),
            "/kubepods.slice".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            // The pod's own cgroup.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice"),
            format!("/kubepods/burstable/pod{UID}"),
            // CRI-O's monitor.
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope"),
            format!("/kubepods/pod{UID}/crio-conmon-{ID}"),
            // Ids that are not 64 lower-case hex digits.
            format!("/kubepods/pod{UID}/{}", &ID[..63]),
            format!("/kubepods/pod{UID}/{}", ID.to_uppercase()),
            format!("/kubepods/pod{UID}/cri-containerd-zz{}.scope", &ID[2..]),
            // No kubepods ancestor.
            format!("/docker/pod{UID}/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            // Pod too deep below kubepods, or not a pod.
            format!("/kubepods/burstable/extra/pod{UID}/{ID}"),
            format!("/kubepods/podnotauid/{ID}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/{ID}"),
        ];
        for path in not {
            assert_eq!(parse_kubelet_cgroup(&path), None, "{path}");
        }
    }

    #[test]
    fn kubepods_detection() {
        assert!(is_kubepods("kubepods"));
        assert!(is_kubepods("kubepods.slice"));
        assert!(is_kubepods("kubelet-kubepods.slice"));
        assert!(!is_kubepods("kubepods-burstable"));
        assert!(!is_kubepods("notkubepods.slice"));
    }
}
