//! Kubeconfigs for users the cluster authenticates but has granted nothing,
//! to see what kubectl gadget says when RBAC forbids what it does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::Subject;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{AuthInfo, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

use crate::cluster::Cluster;
use crate::process::run;

/// A kubeconfig of a user without rights, and the name the API server
/// knows that user by.
pub struct Unprivileged {
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// The user name in the API server's messages.
    pub user: String,
    /// The user as an RBAC binding names it, to grant it something.
    pub subject: Subject,
}

/// A user with a client certificate signed by the cluster's CA (`ca.crt`
/// and `ca.key` in `pki`): authenticated as `name`, in no group, bound to no
/// role.
pub fn certificate_user(admin: &Path, pki: &Path, name: &str, dir: &Path) -> Result<Unprivileged> {
    let key = dir.join(format!("{name}.key"));
    let request = dir.join(format!("{name}.csr"));
    let certificate = dir.join(format!("{name}.crt"));
    let openssl = |what: &str, command: &mut Command| -> Result<()> {
        run(command, Duration::from_secs(30))?
            .success()
            .with_context(|| format!("openssl cannot {what}"))?;
        Ok(())
    };
    let mut request_command = Command::new("openssl");
    request_command
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&request);
    openssl("make a key and certificate request", &mut request_command)?;
    // Extensions make it an X.509 v3 certificate; rustls refuses v1 ones.
    let extensions = dir.join(format!("{name}.ext"));
    std::fs::write(
        &extensions,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )?;
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-days", "1"])
        // A serial of its own rather than a serial file in the cluster's pki.
        .args(["-set_serial", &format!("0x{:x}", std::process::id())])
        .arg("-CA")
        .arg(pki.join("ca.crt"))
        .arg("-CAkey")
        .arg(pki.join("ca.key"))
        .arg("-extfile")
        .arg(&extensions)
        .arg("-in")
        .arg(&request)
        .arg("-out")
        .arg(&certificate);
    openssl(
        &format!("sign a client certificate with the CA in {}", pki.display()),
        &mut sign,
    )?;
    let auth = AuthInfo {
        client_certificate: Some(certificate.display().to_string()),
        client_key: Some(key.display().to_string()),
        ..Default::default()
    };
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    write_kubeconfig(admin, name, auth, &kubeconfig)?;
    Ok(Unprivileged {
        kubeconfig,
        user: name.to_string(),
        subject: Subject {
            kind: "User".into(),
            name: name.to_string(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        },
    })
}

/// A service account `name` in `namespace`, with a short-lived token: works
/// on any cluster, since it needs no CA key. Service accounts get only the
/// discovery rights every authenticated user has.
pub fn service_account_user(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> Result<Unprivileged> {
    let accounts = cluster.namespaced::<ServiceAccount>(namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    cluster
        .block_on(accounts.create(&PostParams::default(), &account))
        .with_context(|| format!("cannot create service account {namespace}/{name}"))?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = cluster
        .block_on(accounts.create_token_request(name, &PostParams::default(), &request))
        .with_context(|| format!("cannot get a token for service account {namespace}/{name}"))?
        .status
        .context("the token request has no status")?
        .token;
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token)
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    let auth = AuthInfo {
        token_file: Some(token_file.display().to_string()),
        ..Default::default()
    };
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    write_kubeconfig(cluster.kubeconfig(), name, auth, &kubeconfig)?;
    Ok(Unprivileged {
        kubeconfig,
        user: format!("system:serviceaccount:{namespace}:{name}"),
        subject: Subject {
            kind: "ServiceAccount".into(),
            name: name.to_string(),
            api_group: None,
            namespace: Some(namespace.to_string()),
        },
    })
}

/// Writes a kubeconfig for the API server of `admin`'s current context, as
/// `user` authenticated by `auth`.
fn write_kubeconfig(admin: &Path, user: &str, auth: AuthInfo, path: &Path) -> Result<()> {
    let config =
        Kubeconfig::read_from(admin).with_context(|| format!("cannot read {}", admin.display()))?;
    let context_name = config
        .current_context
        .clone()
        .context("the kubeconfig has no current context")?;
    let cluster_name = config
        .contexts
        .iter()
        .find(|named| named.name == context_name)
        .and_then(|named| named.context.as_ref())
        .map(|context| context.cluster.clone())
        .with_context(|| format!("context {context_name} is not in {}", admin.display()))?;
    let mut cluster = config
        .clusters
        .iter()
        .find(|named| named.name == cluster_name)
        .and_then(|named| named.cluster.clone())
        .with_context(|| format!("cluster {cluster_name} is not in {}", admin.display()))?;
    // A relative CA path is relative to the kubeconfig it came from.
    if let Some(ca) = &cluster.certificate_authority {
        let base = admin.parent().unwrap_or(Path::new("."));
        cluster.certificate_authority = Some(base.join(ca).display().to_string());
    }
    let written = Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Some(cluster),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.to_string(),
            auth_info: Some(auth),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: user.to_string(),
            context: Some(kube::config::Context {
                cluster: cluster_name,
                user: Some(user.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(user.to_string()),
        kind: Some("Config".to_string()),
        api_version: Some("v1".to_string()),
        ..Default::default()
    };
    // JSON is YAML, and both kubectl and kube read it.
    let text = serde_json::to_string_pretty(&written)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
