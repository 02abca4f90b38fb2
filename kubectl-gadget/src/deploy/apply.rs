//! `kubectl gadget deploy`: the server-side apply of the node side, and
//! `--print-only`.

use std::fmt::Debug;
use std::io::Write;

use anyhow::Context;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api_server::ApiServer;
use super::args::DeployArgs;
use super::memlock;
use super::ownership::{check_cluster, check_made_by_deploy, display_name, version_line};
use super::rollout::wait_for_rollout;
use crate::manifests::{self, Manifests, NAMESPACE};

/// The field manager of every server-side apply: Kubernetes records which
/// fields kubectl-gadget owns under this name.
pub const FIELD_MANAGER: &str = "kubectl-gadget";

/// Writes the manifests `args` would apply, as multi-document YAML with the
/// templates' comments, to `out`. Touches no cluster: the CLI calls this for
/// `--print-only` without building a client, so it works with no kubeconfig.
pub fn print_manifests(args: &DeployArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let options = args.render_options()?;
    let yaml = manifests::render(&options)?;
    // The same checks as a real deploy: what is printed is what would apply.
    manifests::parse(&yaml)?.check()?;
    out.write_all(yaml.as_bytes())
        .context("cannot write the manifests")?;
    out.flush().context("cannot write the manifests")
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    fn from_versions(before: Option<&str>, after: Option<&str>) -> Self {
        match before {
            None => ApplyOutcome::Created,
            Some(before) if Some(before) == after => ApplyOutcome::Unchanged,
            Some(_) => ApplyOutcome::Configured,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// `kubectl gadget deploy`: lists the nodes the DaemonSet will run on to
/// decide whether its pods need CAP_SYS_RESOURCE (only for kernels before
/// Linux 5.11; see [`MemlockCapability`](super::MemlockCapability)), then
/// applies the node side with server-side apply and,
/// with `--wait`, watches the rollout until every scheduled gadget pod is
/// ready (progress on stderr), or fails with a report of the pods that are
/// not and why.
///
/// Before the first apply, every object is read: when one exists without
/// deploy's managed-by label (someone else's namespace or ClusterRole of the
/// same name), or the deployed gadget-node is newer than this client and
/// `--force` is not given, deploy refuses and changes nothing. It prints the
/// version it deploys and what it replaces.
///
/// Applies are forced: kubectl-gadget is the only intended owner of these
/// objects, so when another manager (a `kubectl edit`, an older client-side
/// apply) holds one of its fields, deploy takes it back instead of stopping
/// at a conflict the user cannot resolve with deploy's flags. Fields deploy
/// does not set stay with whoever set them. Applying the same manifests
/// again writes nothing (every object reports `unchanged`).
///
/// `server_url` is the URL the client was built for (`kube::Config`'s
/// `cluster_url`); connection errors name it. With `--print-only` this only
/// prints, as [`print_manifests`] does, but the CLI should call that one
/// directly so that printing needs no kubeconfig.
pub async fn deploy(
    client: &kube::Client,
    server_url: &str,
    args: &DeployArgs,
) -> anyhow::Result<()> {
    if args.print_only {
        return print_manifests(args, &mut std::io::stdout().lock());
    }
    let cluster = ApiServer {
        client,
        url: server_url,
    };
    let options = args.render_options()?;
    let memlock = memlock::decide(cluster, &options.full_node_selector()?).await?;
    let manifests = manifests::build(&manifests::RenderOptions {
        memlock_capability: memlock.is_added(),
        ..options
    })?;
    let change = check_cluster(cluster, &manifests, args.force).await?;
    println!("{}", version_line(&change));
    println!("{}", memlock.line());
    apply_all(cluster, &manifests).await?;
    if args.wait {
        wait_for_rollout(cluster, args.timeout).await?;
    } else {
        println!(
            "the gadget pods are starting; \"kubectl gadget deploy --wait\" waits until they are ready"
        );
    }
    Ok(())
}

async fn apply_all(cluster: ApiServer<'_>, manifests: &Manifests) -> anyhow::Result<()> {
    let client = cluster.client;
    apply(cluster, Api::all(client.clone()), &manifests.namespace).await?;
    apply(
        cluster,
        Api::namespaced(client.clone(), NAMESPACE),
        &manifests.service_account,
    )
    .await?;
    apply(cluster, Api::all(client.clone()), &manifests.cluster_role).await?;
    apply(
        cluster,
        Api::all(client.clone()),
        &manifests.cluster_role_binding,
    )
    .await?;
    apply(
        cluster,
        Api::namespaced(client.clone(), NAMESPACE),
        &manifests.daemon_set,
    )
    .await?;
    apply(
        cluster,
        Api::all(client.clone()),
        &manifests.trace_user_role,
    )
    .await
}

async fn apply<K>(cluster: ApiServer<'_>, api: Api<K>, object: &K) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let display = display_name(object);
    let action = format!("apply {display}");
    let before = api.get_opt(&name).await.map_err(cluster.error(&action))?;
    // Checked again right before the apply: the forced apply would take over
    // an object made since the check of every object.
    check_made_by_deploy(&display, before.as_ref().map(|b| b.labels()))?;
    // Strict field validation: the API server refuses fields it does not
    // know instead of dropping them (the templates are also checked locally).
    let params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    let after = api
        .patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(cluster.error(&action))?;
    let outcome = ApplyOutcome::from_versions(
        before
            .as_ref()
            .and_then(|b| b.meta().resource_version.as_deref()),
        after.meta().resource_version.as_deref(),
    );
    println!("{display} {}", outcome.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_outcome_from_resource_versions() {
        assert_eq!(
            ApplyOutcome::from_versions(None, Some("5")),
            ApplyOutcome::Created
        );
        assert_eq!(
            ApplyOutcome::from_versions(Some("5"), Some("5")),
            ApplyOutcome::Unchanged
        );
        assert_eq!(
            ApplyOutcome::from_versions(Some("5"), Some("6")),
            ApplyOutcome::Configured
        );
    }
}
