//! The flags of `deploy` and `undeploy`, and the parsers of their values.

use std::time::Duration;

use crate::manifests::{self, ImagePullPolicy, ManifestError, RenderOptions};

/// `kubectl gadget deploy`: install or update the node side.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The gadget-node image.
    #[arg(long, value_name = "IMAGE", default_value_t = manifests::default_image(), value_parser = parse_image)]
    pub image: String,

    /// When the kubelet pulls the image [default: Always for an untagged or
    /// :latest image, IfNotPresent otherwise, as Kubernetes does].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Run gadget pods only on nodes with this label, as key=value
    /// (repeatable, or comma-separated); kubernetes.io/os=linux always
    /// applies.
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_node_selector)]
    pub node_selector: Vec<(String, String)>,

    /// Wait until every scheduled gadget pod is ready, showing progress.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits, like 90s, 5m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Print the manifests that would be applied, with these options, and
    /// change nothing. Needs no cluster, so it sees no node: it keeps
    /// CAP_SYS_RESOURCE, which deploy leaves out when every selected node
    /// runs Linux 5.11 or later.
    #[arg(long, conflicts_with = "wait")]
    pub print_only: bool,

    /// Replace the deployed gadget-node even when it is newer than this
    /// client (a downgrade) or its version is unknown.
    #[arg(long, conflicts_with = "print_only")]
    pub force: bool,
}

impl DeployArgs {
    /// The rendering options these flags ask for. They keep
    /// CAP_SYS_RESOURCE, as `--print-only` does: only [`deploy`](super::deploy())
    /// reads the nodes' kernels, and leaves it out when none needs it.
    pub fn render_options(&self) -> Result<RenderOptions, ManifestError> {
        Ok(RenderOptions {
            image: self.image.clone(),
            image_pull_policy: self
                .image_pull_policy
                .unwrap_or_else(|| ImagePullPolicy::default_for(&self.image)),
            node_selector: manifests::node_selector_from_entries(&self.node_selector)?,
            memlock_capability: true,
        })
    }
}

/// `kubectl gadget undeploy`: remove everything deploy created.
#[derive(Debug, Clone, clap::Args)]
pub struct UndeployArgs {
    /// Wait until the gadget pods and the namespace are gone.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits, like 90s, 5m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_image(text: &str) -> Result<String, ManifestError> {
    manifests::check_image(text)
}

fn parse_node_selector(text: &str) -> Result<(String, String), ManifestError> {
    manifests::parse_node_selector_entry(text)
}

/// Parses a duration written as numbers with units `h`, `m`, `s` (and `ms`),
/// like `120s`, `5m` or `1m30s`, as kubectl's `--timeout` takes them.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("a duration like 120s, 5m or 1m30s is needed".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?} is not a duration like 120s, 5m or 1m30s"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too long a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            "" => {
                return Err(format!(
                    "{text:?} needs a unit: {text}s, {text}m or {text}h"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?} (use h, m, s or ms)"
                ))
            }
        };
        rest = &rest[unit_len..];
        total = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    if total.is_zero() {
        return Err("the timeout must be above zero".into());
    }
    Ok(total)
}

/// `duration` as `--timeout` takes it, for messages: `45s`, `2m`, `1m30s`.
pub(super) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::print_manifests;
    use crate::manifests::Manifests;
    use clap::Parser;

    /// The flags as the CLI mounts them.
    #[derive(Debug, Parser)]
    struct DeployCommand {
        #[command(flatten)]
        args: DeployArgs,
    }

    #[derive(Debug, Parser)]
    struct UndeployCommand {
        #[command(flatten)]
        args: UndeployArgs,
    }

    fn deploy_args(flags: &[&str]) -> Result<DeployArgs, clap::Error> {
        DeployCommand::try_parse_from(std::iter::once("deploy").chain(flags.iter().copied()))
            .map(|c| c.args)
    }

    fn printed(flags: &[&str]) -> Manifests {
        let mut out = Vec::new();
        print_manifests(&deploy_args(flags).unwrap(), &mut out).unwrap();
        manifests::parse(std::str::from_utf8(&out).unwrap()).unwrap()
    }

    fn container(manifests: &Manifests) -> k8s_openapi::api::core::v1::Container {
        manifests
            .daemon_set
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .clone()
    }

    #[test]
    fn defaults() {
        let args = deploy_args(&[]).unwrap();
        assert_eq!(args.image, manifests::default_image());
        assert_eq!(args.image_pull_policy, None);
        assert!(args.node_selector.is_empty());
        assert!(!args.wait);
        assert!(!args.print_only);
        assert!(!args.force);
        assert_eq!(args.timeout, Duration::from_secs(120));
        assert_eq!(args.render_options().unwrap(), RenderOptions::default());
    }

    #[test]
    fn image_flag() {
        let manifests = printed(&["--image", "registry.local/gadget-node:dev"]);
        assert_eq!(
            container(&manifests).image.as_deref(),
            Some("registry.local/gadget-node:dev")
        );
        assert!(deploy_args(&["--image", "has space"]).is_err());
        assert!(deploy_args(&["--image", ""]).is_err());
    }

    #[test]
    fn image_pull_policy_flag() {
        let manifests = printed(&["--image-pull-policy", "Never"]);
        assert_eq!(
            container(&manifests).image_pull_policy.as_deref(),
            Some("Never")
        );
        let args = deploy_args(&["--image-pull-policy", "IfNotPresent"]).unwrap();
        assert_eq!(args.image_pull_policy, Some(ImagePullPolicy::IfNotPresent));
        let args = deploy_args(&["--image-pull-policy", "always"]).unwrap();
        assert_eq!(args.image_pull_policy, Some(ImagePullPolicy::Always));
        assert!(deploy_args(&["--image-pull-policy", "Sometimes"]).is_err());
        // Without the flag, the policy follows the image's tag.
        let manifests = printed(&["--image", "gadget-node:latest"]);
        assert_eq!(
            container(&manifests).image_pull_policy.as_deref(),
            Some("Always")
        );
    }

    #[test]
    fn node_selector_flag() {
        let manifests = printed(&[
            "--node-selector",
            "disktype=ssd",
            "--node-selector",
            "example.com/pool=tracing,zone=a",
        ]);
        let selector = manifests
            .daemon_set
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .node_selector
            .unwrap();
        assert_eq!(
            selector.into_iter().collect::<Vec<_>>(),
            [
                ("disktype".to_string(), "ssd".to_string()),
                ("example.com/pool".to_string(), "tracing".to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("zone".to_string(), "a".to_string()),
            ]
        );
        assert!(deploy_args(&["--node-selector", "novalue"]).is_err());
        let conflicting = deploy_args(&["--node-selector", "a=1,a=2"]).unwrap();
        assert!(conflicting.render_options().is_err());
        let windows = deploy_args(&["--node-selector", "kubernetes.io/os=windows"]).unwrap();
        assert!(print_manifests(&windows, &mut Vec::new()).is_err());
    }

    #[test]
    fn wait_flag() {
        assert!(deploy_args(&["--wait"]).unwrap().wait);
        assert!(
            UndeployCommand::try_parse_from(["undeploy", "--wait"])
                .unwrap()
                .args
                .wait
        );
    }

    #[test]
    fn timeout_flag() {
        let args = deploy_args(&["--timeout", "5m"]).unwrap();
        assert_eq!(args.timeout, Duration::from_secs(300));
        let undeploy = UndeployCommand::try_parse_from(["undeploy", "--timeout", "1m30s"]).unwrap();
        assert_eq!(undeploy.args.timeout, Duration::from_secs(90));
        assert_eq!(
            UndeployCommand::try_parse_from(["undeploy"])
                .unwrap()
                .args
                .timeout,
            Duration::from_secs(120)
        );
        assert!(deploy_args(&["--timeout", "120"]).is_err());
        assert!(deploy_args(&["--timeout", "0s"]).is_err());
    }

    #[test]
    fn force_flag() {
        assert!(deploy_args(&["--force"]).unwrap().force);
        // Printing replaces nothing, so there is nothing to force.
        assert!(deploy_args(&["--print-only", "--force"]).is_err());
    }

    #[test]
    fn print_only_flag() {
        assert!(deploy_args(&["--print-only"]).unwrap().print_only);
        // Printing is not deploying: waiting for it makes no sense.
        assert!(deploy_args(&["--print-only", "--wait"]).is_err());
    }

    #[test]
    fn print_only_output_keeps_the_comments_that_justify_each_capability() {
        let mut out = Vec::new();
        print_manifests(&deploy_args(&[]).unwrap(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for capability in manifests::ALLOWED_CAPABILITIES {
            let line = text
                .lines()
                .position(|l| l.trim() == format!("- {capability}"))
                .unwrap_or_else(|| panic!("{capability} is not added"));
            let previous = text.lines().nth(line - 1).unwrap();
            assert!(
                previous.trim_start().starts_with('#'),
                "{capability} has no comment"
            );
        }
    }

    #[test]
    fn timeouts_parse_like_kubectl() {
        assert_eq!(parse_timeout("120s").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_timeout("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_timeout("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in [
            "",
            "s",
            "10",
            "10d",
            "1.5m",
            "-1s",
            "m10",
            "99999999999999999999s",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert!(parse_timeout("120").unwrap_err().contains("120s"));
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
