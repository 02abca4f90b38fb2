//! The suite's own access to the cluster, for what a user would not do
//! through kubectl gadget: creating workload pods, writing pod status,
//! KWOK port-forward targets, and looking at what deploy left behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::wait::{poll, Poll};

/// The field manager of the suite's server-side applies.
const FIELD_MANAGER: &str = "gadget-e2e";

/// A client for the cluster under test, used from synchronous code.
pub struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: Client,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// Connects with the kubeconfig's current context.
    pub fn connect(kubeconfig: &Path) -> Result<Cluster> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start an async runtime")?;
        let client = runtime.block_on(async {
            let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
            let config = Config::from_custom_kubeconfig(file, &Default::default()).await?;
            anyhow::Ok(Client::try_from(config)?)
        });
        let client = client
            .with_context(|| format!("cannot use the kubeconfig {}", kubeconfig.display()))?;
        Ok(Cluster {
            runtime,
            client,
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// The kubeconfig it was made from.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs a request to its end.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The API of a namespaced kind.
    pub fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The API of a cluster-scoped kind.
    pub fn cluster_wide<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
    }

    /// The API of a namespaced kind across every namespace.
    pub fn all_namespaces<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
    }

    /// Fetches an object; `None` when there is none.
    pub fn get<K>(&self, api: &Api<K>, name: &str) -> Result<Option<K>>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.block_on(api.get_opt(name))
            .with_context(|| format!("cannot get {name}"))
    }

    /// Lists objects, optionally by label selector.
    pub fn list<K>(&self, api: &Api<K>, labels: Option<&str>) -> Result<Vec<K>>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        let params = match labels {
            Some(selector) => ListParams::default().labels(selector),
            None => ListParams::default(),
        };
        Ok(self
            .block_on(api.list(&params))
            .context("cannot list")?
            .items)
    }

    /// Whether the object a manifest describes (by apiVersion, kind,
    /// namespace and name) exists; `Some("<kind>/<name>")` when it does.
    pub fn manifest_object_exists(&self, manifest: &serde_json::Value) -> Result<Option<String>> {
        let object: DynamicObject =
            serde_json::from_value(manifest.clone()).context("not an object")?;
        let types = object
            .types
            .as_ref()
            .context("a manifest without apiVersion or kind")?;
        let kind = GroupVersionKind::try_from(types).context("a manifest with a bad apiVersion")?;
        let (resource, capabilities) = self
            .block_on(kube::discovery::pinned_kind(&self.client, &kind))
            .with_context(|| format!("the API server does not serve {}", types.kind))?;
        let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let name = object
            .metadata
            .name
            .clone()
            .context("a manifest without a name")?;
        let found = self.get(&api, &name)?;
        Ok(found.map(|_| format!("{}/{name}", types.kind.to_lowercase())))
    }

    /// The names of the nodes that are Ready, sorted.
    pub fn ready_nodes(&self) -> Result<Vec<String>> {
        let nodes: Vec<Node> = self.list(&self.cluster_wide(), None)?;
        let mut ready: Vec<String> = nodes
            .iter()
            .filter(|node| {
                node.status
                    .as_ref()
                    .and_then(|status| status.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            })
            .filter_map(|node| node.metadata.name.clone())
            .collect();
        ready.sort();
        Ok(ready)
    }

    /// Creates a namespace; fails when it exists, since the suite would
    /// then share it with something else.
    pub fn create_namespace(&self, name: &str) -> Result<()> {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    [(
                        "app.kubernetes.io/created-by".to_string(),
                        FIELD_MANAGER.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.block_on(
            self.cluster_wide::<Namespace>()
                .create(&PostParams::default(), &namespace),
        ) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => bail!(
                "namespace {name} already exists (left by an earlier run?): \
                 delete it with \"kubectl delete namespace {name}\" and run again"
            ),
            Err(err) => Err(err).with_context(|| format!("cannot create namespace {name}")),
        }
    }

    /// Starts deleting an object (a namespace: and everything in it),
    /// without waiting; one that is not there is fine.
    pub fn delete<K>(&self, api: &Api<K>, name: &str) -> Result<()>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        match self.block_on(api.delete(name, &DeleteParams::background().grace_period(0))) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(err).with_context(|| format!("cannot delete {name}")),
        }
    }

    /// Waits until the pod is Running and Ready (as its kubelet says), and
    /// returns it.
    pub fn wait_pod_ready(&self, namespace: &str, name: &str, timeout: Duration) -> Result<Pod> {
        let pods: Api<Pod> = self.namespaced(namespace);
        poll(
            &format!("pod {namespace}/{name} to be ready"),
            timeout,
            || {
                let Some(pod) = self.get(&pods, name)? else {
                    return Ok(Poll::Pending("no such pod".into()));
                };
                let status = pod.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    });
                Ok(if ready {
                    Poll::Ready(pod)
                } else {
                    Poll::Pending(format!(
                        "phase {}",
                        status
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_else(|| "unknown".into())
                    ))
                })
            },
        )
    }

    /// Points KWOK's port-forward for `port` of pod `namespace/pod` at
    /// `127.0.0.1:target` (a `PortForward` named like the pod).
    pub fn forward_pod_port(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        target: u16,
    ) -> Result<()> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "PortForward"),
            "portforwards",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let object = serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": pod, "namespace": namespace},
            "spec": {"forwards": [{"ports": [port], "target": {"address": "127.0.0.1", "port": target}}]},
        });
        self.block_on(api.patch(
            pod,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        ))
        .with_context(|| format!("cannot create the KWOK PortForward {namespace}/{pod}"))?;
        Ok(())
    }
}
